//! containerd 1.6 (Debian) drives berth-runc: `ctr run --runc-binary`.
//! The test starts its own containerd with private root, state and socket.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const RUNC: &str = env!("CARGO_BIN_EXE_berth-runc");

fn need(bin: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "peer `{bin}` is not installed: run scripts/install-deps.sh (as root)"
    );
}

struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Containerd {
    fn start() -> Containerd {
        need("containerd");
        need("ctr");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let config = format!(
            "version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\n[grpc]\n  address = \"{r}/containerd.sock\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_cgroup = true\n",
            r = p.display()
        );
        fs::write(p.join("config.toml"), config).unwrap();
        let log = fs::File::create(p.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(p.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd { dir, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shims and mounts left under our private root.
        let root = self.dir.path().display().to_string();
        let _ = Command::new("pkill").args(["-9", "-f", &root]).status();
        if let Ok(mounts) = fs::read_to_string("/proc/self/mounts") {
            let mut ours: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(1))
                .filter(|m| m.starts_with(&root))
                .collect();
            ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in ours {
                let _ = Command::new("umount").args(["-l", m]).status();
            }
        }
    }
}

fn busybox_tar(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/busybox-1.35");
    let tar = dir.join("busybox.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&fixture)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    tar
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn ctr_runs_busybox_with_berth_runc() {
    let c = Containerd::start();
    let tar = busybox_tar(c.dir.path());
    let imp = c.ctr(&[
        "image",
        "import",
        "--base-name",
        "docker.io/library/busybox",
        tar.to_str().unwrap(),
    ]);
    assert!(imp.status.success(), "{}", text(&imp));
    let image = "docker.io/library/busybox:1.35";

    let out = c.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        RUNC,
        image,
        "t1",
        "sh",
        "-c",
        "echo hello from ctr; echo pid=$$; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}\n{}", text(&out), c.log());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from ctr\npid=1\n"
    );

    // Detached, then exec, ps, kill, delete through containerd's shim.
    let out = c.ctr(&[
        "run",
        "-d",
        "--runc-binary",
        RUNC,
        image,
        "t2",
        "sh",
        "-c",
        "echo up > /dev/shm/up; exec sleep 100",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(300));
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "t2",
        "cat",
        "/dev/shm/up",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "up\n");
    let ps = c.ctr(&["task", "ps", "t2"]);
    assert!(ps.status.success(), "{}", text(&ps));
    assert!(c
        .ctr(&["task", "kill", "-s", "KILL", "t2"])
        .status
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ls = String::from_utf8_lossy(&c.ctr(&["task", "ls"]).stdout).into_owned();
        if ls.contains("STOPPED") {
            break;
        }
        assert!(Instant::now() < deadline, "task did not stop: {ls}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let del = c.ctr(&["task", "delete", "t2"]);
    assert!(del.status.success(), "{}", text(&del));
    assert!(c.ctr(&["container", "delete", "t2"]).status.success());
}
