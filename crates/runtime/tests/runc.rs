//! berth-runc through its command line, with real containers made from the
//! busybox fixture, checked from inside the container.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

const RUNC: &str = env!("CARGO_BIN_EXE_berth-runc");

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    /// A bundle with the busybox rootfs and `berth-runc spec`'s config,
    /// adjusted by `edit`.
    fn new(edit: impl FnOnce(&mut Value)) -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("bundle/rootfs");
        fs::create_dir_all(&rootfs).unwrap();
        let layer = Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../../tests/fixtures/busybox-1.35/blobs/sha256/e524c65fa47c8a51ff3bb6c4851f16014cad18c3e1a473a994ac26bff03dacc6",
        );
        berth_image::layer::apply(fs::File::open(layer).unwrap(), &rootfs, None).unwrap();
        let b = Bundle { dir };
        let out = b.runc(&["spec", "--bundle", b.bundle().to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        let mut config: Value = serde_json::from_slice(&fs::read(b.config()).unwrap()).unwrap();
        config["process"]["terminal"] = json!(false);
        edit(&mut config);
        fs::write(b.config(), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        b
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn config(&self) -> PathBuf {
        self.bundle().join("config.json")
    }

    fn state_root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(RUNC);
        c.arg("--root")
            .arg(self.state_root())
            .args(args)
            .current_dir(self.bundle());
        c.stdin(Stdio::null());
        c
    }

    /// Runs berth-runc with stdout and stderr in files, not pipes: a
    /// created container's init keeps its stdio open, so waiting for pipe
    /// EOF would wait for the container.
    fn runc(&self, args: &[&str]) -> Output {
        let stamp = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let out_path = self.dir.path().join(format!("out-{stamp}"));
        let err_path = self.dir.path().join(format!("err-{stamp}"));
        let status = self
            .cmd(args)
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: fs::read(&out_path).unwrap(),
            stderr: fs::read(&err_path).unwrap(),
        }
    }

    /// `run` of a shell script; returns (exit code, stdout, stderr).
    fn sh(&self, id: &str) -> (i32, String, String) {
        let out = self.runc(&["run", id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn leftovers(&self) -> Vec<String> {
        match fs::read_dir(self.state_root()) {
            Ok(d) => d
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Makes `fd` available as `target` without close-on-exec (dup2 is a no-op
/// when they are equal, so the flag is cleared explicitly).
fn inheritable_at(fd: i32, target: i32) -> std::io::Result<()> {
    // SAFETY: plain fd syscalls on fds the caller owns.
    unsafe {
        if fd != target && libc::dup2(fd, target) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::fcntl(target, libc::F_SETFD, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn script(s: &str) -> impl FnOnce(&mut Value) + '_ {
    move |c| c["process"]["args"] = json!(["sh", "-c", s])
}

#[test]
fn run_gives_an_isolated_pid_1_and_its_exit_code() {
    let b = Bundle::new(|c| {
        c["hostname"] = json!("inside");
        c["process"]["env"] = json!(["PATH=/bin", "GREETING=hi there"]);
        c["process"]["cwd"] = json!("/tmp/work");
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "echo $GREETING; hostname; echo pid=$$; pwd; id -u; readlink /proc/1/exe; ls /; exit 7"
        ]);
    });
    let (code, out, err) = b.sh("t-run");
    assert_eq!(code, 7, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..6],
        [
            "hi there",
            "inside",
            "pid=1",
            "/tmp/work",
            "0",
            "/bin/busybox"
        ],
        "{out}"
    );
    assert!(lines.contains(&"proc") && lines.contains(&"dev"), "{out}");
    assert!(
        b.leftovers().is_empty(),
        "run leaves no state: {:?}",
        b.leftovers()
    );
}

#[test]
fn create_start_state_kill_delete() {
    let b = Bundle::new(script("echo started; exec sleep 60"));
    let pid_file = b.dir.path().join("pid");
    let out = b.runc(&["create", "--pid-file", pid_file.to_str().unwrap(), "c1"]);
    assert!(out.status.success(), "{out:?}");
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let state =
        |b: &Bundle| -> Value { serde_json::from_slice(&b.runc(&["state", "c1"]).stdout).unwrap() };
    let s = state(&b);
    assert_eq!(s["status"], "created");
    assert_eq!(s["pid"], pid);
    assert_eq!(s["id"], "c1");
    assert_eq!(s["ociVersion"], "1.2.0");
    assert_eq!(
        s["bundle"],
        b.bundle().canonicalize().unwrap().to_str().unwrap()
    );

    assert!(b.runc(&["start", "c1"]).status.success());
    assert_eq!(state(&b)["status"], "running");
    let again = b.runc(&["start", "c1"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("running"),
        "{again:?}"
    );

    let del = b.runc(&["delete", "c1"]);
    assert!(
        !del.status.success(),
        "delete of a running container needs --force"
    );
    assert!(String::from_utf8_lossy(&del.stderr).contains("--force"));

    let list = String::from_utf8_lossy(&b.runc(&["list", "-q"]).stdout).into_owned();
    assert_eq!(list.trim(), "c1");

    assert!(b.runc(&["kill", "c1", "KILL"]).status.success());
    for _ in 0..200 {
        if state(&b)["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(state(&b)["status"], "stopped");
    let k = b.runc(&["kill", "c1", "9"]);
    assert!(!k.status.success(), "kill of a stopped container fails");
    assert!(b.runc(&["delete", "c1"]).status.success());
    assert!(b.leftovers().is_empty());
    let gone = b.runc(&["state", "c1"]);
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("does not exist"),
        "{gone:?}"
    );
}

#[test]
fn delete_force_kills_a_running_container() {
    let b = Bundle::new(script("exec sleep 60"));
    assert!(b.runc(&["run", "-d", "f1"]).status.success());
    let pid: i32 = serde_json::from_slice::<Value>(&b.runc(&["state", "f1"]).stdout).unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;
    assert!(b.runc(&["delete", "--force", "f1"]).status.success());
    let alive = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false);
    assert!(!alive, "init survived delete --force");
    assert!(b.leftovers().is_empty());
}

/// CVE-2024-21626 class: no fd of the runtime reaches the container.
#[test]
fn no_host_fd_leaks_into_the_container() {
    let b = Bundle::new(script("ls /proc/self/fd | tr '\\n' ' '"));
    let host_dir = fs::File::open("/").unwrap();
    let mut c = b.cmd(&["run", "fdleak"]);
    let raw = std::os::fd::AsRawFd::as_raw_fd(&host_dir);
    // SAFETY: dup2 in the child between fork and exec, on fds we own.
    unsafe {
        c.pre_exec(move || {
            // An inheritable fd 9 pointing at the host's "/".
            inheritable_at(raw, 9)
        });
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    drop(host_dir);
    let fds: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    // 0-2 and the fd ls uses to read the directory.
    assert!(fds.len() <= 4, "unexpected fds in the container: {fds:?}");
    assert!(
        !fds.contains(&"9".to_string()),
        "the host's fd 9 leaked: {fds:?}"
    );
}

/// CVE-2019-5736 class: the container can never execute (and so never
/// reach) the host's runtime binary through /proc/self/exe.
#[test]
fn container_cannot_exec_the_runtime_binary() {
    let b = Bundle::new(|c| c["process"]["args"] = json!(["/proc/self/exe", "--version"]));
    let (code, out, err) = b.sh("exe");
    assert_ne!(code, 0);
    assert!(
        !out.contains("berth-runc"),
        "the host binary ran inside: {out}"
    );
    assert!(err.contains("host's runtime binary"), "{err}");
    assert!(b.leftovers().is_empty());
}

#[test]
fn preserved_fds_reach_the_process() {
    let b = Bundle::new(script("cat <&3"));
    let mut c = b.cmd(&["run", "--preserve-fds", "1", "pfd"]);
    let (r, mut w) = std::io::pipe().unwrap();
    std::io::Write::write_all(&mut w, b"through fd 3\n").unwrap();
    drop(w);
    let raw = std::os::fd::AsRawFd::as_raw_fd(&r);
    // SAFETY: dup2 between fork and exec on an fd we own.
    unsafe {
        c.pre_exec(move || inheritable_at(raw, 3));
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through fd 3\n");
}

#[test]
fn exit_codes_for_missing_and_non_executable_programs() {
    let b = Bundle::new(|c| c["process"]["args"] = json!(["/nonexistent"]));
    let (code, _, err) = b.sh("missing");
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent"), "{err}");
    let b = Bundle::new(|c| c["process"]["args"] = json!(["/etc/passwd"]));
    fs::create_dir_all(b.bundle().join("rootfs/etc")).unwrap();
    fs::write(
        b.bundle().join("rootfs/etc/passwd"),
        "root:x:0:0::/:/bin/sh\n",
    )
    .unwrap();
    let (code, _, _) = b.sh("noexec");
    assert_eq!(code, 126);
}

#[test]
fn bad_bundles_are_refused_clearly_without_leftovers() {
    type Break = Box<dyn Fn(&Bundle)>;
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "missing config",
            Box::new(|b: &Bundle| fs::remove_file(b.config()).unwrap()),
            "config.json",
        ),
        (
            "malformed",
            Box::new(|b: &Bundle| fs::write(b.config(), "{\"ociVersion\": ").unwrap()),
            "not a valid OCI runtime config",
        ),
        (
            "unknown namespace",
            Box::new(|b: &Bundle| {
                let mut c: Value = serde_json::from_slice(&fs::read(b.config()).unwrap()).unwrap();
                c["linux"]["namespaces"] = json!([{"type": "bogus"}]);
                fs::write(b.config(), serde_json::to_vec(&c).unwrap()).unwrap();
            }),
            "bogus",
        ),
        (
            "unknown mount type",
            Box::new(|b: &Bundle| {
                let mut c: Value = serde_json::from_slice(&fs::read(b.config()).unwrap()).unwrap();
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"destination": "/x", "type": "weirdfs", "source": "x"}));
                fs::write(b.config(), serde_json::to_vec(&c).unwrap()).unwrap();
            }),
            "weirdfs",
        ),
        (
            "missing rootfs",
            Box::new(|b: &Bundle| fs::remove_dir_all(b.bundle().join("rootfs")).unwrap()),
            "root.path",
        ),
    ];
    for (name, break_it, needle) in cases {
        let b = Bundle::new(script("true"));
        break_it(&b);
        let out = b.runc(&["create", "bad"]);
        assert!(!out.status.success(), "{name}: accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle),
            "{name}: {err:?} does not mention {needle:?}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
        assert!(b.leftovers().is_empty(), "{name}: left {:?}", b.leftovers());
    }
    // A duplicate id.
    let b = Bundle::new(script("exec sleep 60"));
    assert!(b.runc(&["create", "dup"]).status.success());
    let out = b.runc(&["create", "dup"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"dup\" already exists"),
        "{out:?}"
    );
    assert!(b.runc(&["delete", "--force", "dup"]).status.success());
    let bad_id = b.runc(&["create", "../evil"]);
    assert!(
        String::from_utf8_lossy(&bad_id.stderr).contains("invalid container id"),
        "{bad_id:?}"
    );
    let sd = b.runc(&["--systemd-cgroup", "list"]);
    assert!(String::from_utf8_lossy(&sd.stderr).contains("not supported"));
}

/// The default spec's capabilities (AUDIT_WRITE, KILL, NET_BIND_SERVICE)
/// are what the process has; CAP_SYS_ADMIN is gone, so it cannot mount.
#[test]
fn capabilities_are_limited_to_the_spec() {
    let b = Bundle::new(|c| {
        c["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network"}]);
        c["process"]["args"] = json!(["sh", "-c",
            "grep -E '^Cap(Eff|Bnd|Prm)' /proc/self/status; grep NoNewPrivs /proc/self/status; mount -t tmpfs x /dev/shm 2>&1 && echo MOUNTED; true"]);
    });
    let (code, out, err) = b.sh("caps");
    assert_eq!(code, 0, "{err}");
    // AUDIT_WRITE (29), KILL (5), NET_BIND_SERVICE (10).
    let want = format!("{:016x}", (1u64 << 29) | (1 << 5) | (1 << 10));
    for set in ["CapEff", "CapBnd", "CapPrm"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(set))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(line.ends_with(&want), "{line} (want {want})");
    }
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(
        !out.contains("MOUNTED"),
        "mounted without CAP_SYS_ADMIN: {out}"
    );
    assert!(
        out.contains("permission denied") || out.contains("not permitted"),
        "{out}"
    );
}

/// Docker's default seccomp profile loads and denies what it should.
#[test]
fn dockers_default_seccomp_profile_works() {
    let profile: Value = serde_json::from_slice(
        &fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/docker-default-seccomp.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let b = Bundle::new(move |c| {
        c["linux"]["seccomp"] = profile;
        c["process"]["args"] = json!(["sh", "-c",
            "echo ok > /dev/shm/f && cat /dev/shm/f; unshare -U true 2>&1 || echo DENIED; grep Seccomp: /proc/self/status"]);
    });
    let (code, out, err) = b.sh("seccomp");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok\n"), "{out}");
    assert!(out.contains("DENIED"), "unshare -U was allowed: {out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
}

/// Resources land in the container's cgroup (read from inside through
/// /proc/self/cgroup and the host's cgroupfs), and the cgroup goes with the
/// container.
#[test]
fn cgroup_limits_apply_and_are_removed() {
    let id = format!("cg-{}", std::process::id());
    let b = Bundle::new(|c| {
        c["linux"]["cgroupsPath"] = json!(format!("/berth-test/{id}"));
        c["linux"]["resources"]["memory"] = json!({"limit": 67108864});
        c["linux"]["resources"]["pids"] = json!({"limit": 16});
        c["process"]["args"] = json!(["sh", "-c", "exec sleep 60"]);
    });
    assert!(b.runc(&["run", "-d", &id]).status.success());
    let mem = fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/berth-test/{id}/memory.limit_in_bytes"
    ))
    .or_else(|_| fs::read_to_string(format!("/sys/fs/cgroup/berth-test/{id}/memory.max")))
    .unwrap();
    assert_eq!(mem.trim(), "67108864");
    let pids: Vec<i32> =
        serde_json::from_slice(&b.runc(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert_eq!(pids.len(), 1, "{pids:?}");

    // update: new limits land in the same cgroup.
    let up = b.runc(&["update", "--memory", "128m", "--pids-limit", "32", &id]);
    assert!(up.status.success(), "{up:?}");
    let mem = fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/berth-test/{id}/memory.limit_in_bytes"
    ))
    .or_else(|_| fs::read_to_string(format!("/sys/fs/cgroup/berth-test/{id}/memory.max")))
    .unwrap();
    assert_eq!(mem.trim(), "134217728");
    let pids_max = fs::read_to_string(format!("/sys/fs/cgroup/pids/berth-test/{id}/pids.max"))
        .or_else(|_| fs::read_to_string(format!("/sys/fs/cgroup/berth-test/{id}/pids.max")))
        .unwrap();
    assert_eq!(pids_max.trim(), "32");

    assert!(b.runc(&["pause", &id]).status.success());
    let st: Value = serde_json::from_slice(&b.runc(&["state", &id]).stdout).unwrap();
    assert_eq!(st["status"], "paused");
    assert!(b.runc(&["resume", &id]).status.success());
    let st: Value = serde_json::from_slice(&b.runc(&["state", &id]).stdout).unwrap();
    assert_eq!(st["status"], "running");

    assert!(b.runc(&["kill", "--all", &id, "KILL"]).status.success());
    for _ in 0..200 {
        let st: Value = serde_json::from_slice(&b.runc(&["state", &id]).stdout).unwrap();
        if st["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(b.runc(&["delete", &id]).status.success());
    assert!(
        !Path::new(&format!("/sys/fs/cgroup/memory/berth-test/{id}")).exists(),
        "cgroup left behind"
    );
    assert!(
        !Path::new(&format!("/sys/fs/cgroup/pids/berth-test/{id}")).exists(),
        "cgroup left behind"
    );
}

/// A config that denies every device (as `runc spec` writes) still gets
/// working default devices, and other devices stay denied.
#[test]
fn deny_all_devices_keeps_the_default_devices() {
    let b = Bundle::new(|c| {
        c["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_MKNOD"], "effective": ["CAP_MKNOD"], "permitted": ["CAP_MKNOD"],
        });
        c["process"]["args"] = json!(["sh", "-c",
            "echo x > /dev/null && head -c 4 /dev/zero | wc -c; mknod /dev/shm/sda b 8 0 2>&1 || echo MKNOD-DENIED; true"]);
    });
    let (code, out, err) = b.sh("devices");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("4\n"), "{out}");
    assert!(
        out.contains("MKNOD-DENIED"),
        "a block device was created: {out}"
    );
}

#[test]
fn hooks_run_at_each_stage_with_the_state() {
    let out_dir = tempfile::tempdir().unwrap();
    let o = out_dir.path().to_str().unwrap().to_string();
    let host_hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {o}/{name}.json")]});
    let hooks = json!({
        "prestart": [host_hook("prestart")],
        "createRuntime": [host_hook("createRuntime")],
        "createContainer": [host_hook("createContainer")],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /dev/shm/startContainer.json"]}],
        "poststart": [host_hook("poststart")],
        "poststop": [host_hook("poststop")],
    });
    let b = Bundle::new(move |c| {
        c["hooks"] = hooks;
        c["process"]["args"] = json!(["sh", "-c", "cat /dev/shm/startContainer.json"]);
    });
    let (code, out, err) = b.sh("hooked");
    assert_eq!(code, 0, "{err}");
    let inside: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(inside["id"], "hooked");
    for stage in [
        "prestart",
        "createRuntime",
        "createContainer",
        "poststart",
        "poststop",
    ] {
        let raw = fs::read(out_dir.path().join(format!("{stage}.json")))
            .unwrap_or_else(|e| panic!("{stage}: {e}"));
        let st: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(st["id"], "hooked", "{stage}");
        assert!(
            st["pid"].as_i64().unwrap() > 0 || stage == "poststop",
            "{stage}: {st}"
        );
        let want = match stage {
            "poststart" => "running",
            "poststop" => "stopped",
            _ => "creating",
        };
        assert_eq!(st["status"], want, "{stage}");
    }
}

#[test]
fn a_failing_or_slow_prestart_hook_aborts_creation() {
    for (hook, needle) in [
        (
            json!({"path": "/bin/sh", "args": ["sh", "-c", "echo no network >&2; exit 3"]}),
            "no network",
        ),
        (
            json!({"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}),
            "timed out",
        ),
    ] {
        let id = format!("hookfail-{}", std::process::id());
        let b = Bundle::new(|c| {
            c["hooks"] = json!({"prestart": [hook]});
            c["linux"]["cgroupsPath"] = json!(format!("/berth-test/{id}"));
        });
        let out = b.runc(&["create", &id]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("prestart") && err.contains(needle), "{err}");
        assert!(b.leftovers().is_empty(), "{:?}", b.leftovers());
        assert!(
            !Path::new(&format!("/sys/fs/cgroup/pids/berth-test/{id}")).exists(),
            "cgroup left behind"
        );
    }
}

/// `process.terminal` with `--console-socket`: the pty master arrives over
/// the socket, the process sees a real terminal of the requested size.
#[test]
fn terminal_through_the_console_socket() {
    use std::io::Read;
    use std::mem::MaybeUninit;
    use std::os::unix::net::UnixListener;

    let b = Bundle::new(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 33, "width": 101});
        c["process"]["args"] = json!(["sh", "-c", "tty; stty size; echo done"]);
    });
    let sock_path = b.dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let out = b.runc(&[
        "create",
        "--console-socket",
        sock_path.to_str().unwrap(),
        "tty1",
    ]);
    assert!(out.status.success(), "{out:?}");
    let (conn, _) = listener.accept().unwrap();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 64];
    let got = rustix::net::recvmsg(
        &conn,
        &mut [std::io::IoSliceMut::new(&mut name)],
        &mut control,
        rustix::net::RecvFlags::empty(),
    )
    .unwrap();
    assert_eq!(&name[..got.bytes], b"/dev/ptmx");
    let master = control
        .drain()
        .find_map(|m| match m {
            rustix::net::RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        })
        .expect("a pty master fd");
    assert!(b.runc(&["start", "tty1"]).status.success());
    let mut f = fs::File::from(master);
    let mut text = Vec::new();
    let mut buf = [0u8; 256];
    // Read until "done" (EIO once the slave side is closed).
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&text).contains("done") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("/dev/pts/0\r\n"), "{text:?}");
    assert!(text.contains("33 101\r\n"), "{text:?}");
    for _ in 0..200 {
        let st: Value = serde_json::from_slice(&b.runc(&["state", "tty1"]).stdout).unwrap();
        if st["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(b.runc(&["delete", "tty1"]).status.success());

    // terminal without a console socket is refused clearly.
    let out = b.runc(&["create", "tty2"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--console-socket"),
        "{out:?}"
    );
    assert!(b.leftovers().is_empty());
}

#[test]
fn features_and_json_logs() {
    let b = Bundle::new(script("true"));
    let f: Value = serde_json::from_slice(&b.runc(&["features"]).stdout).unwrap();
    assert_eq!(f["ociVersionMax"], "1.2.0");
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("pid")));
    assert!(f["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("CAP_SYS_ADMIN")));
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert_eq!(f["linux"]["cgroup"]["systemd"], false);

    // Errors land in --log as JSON lines when asked (containerd reads them).
    let log = b.dir.path().join("runc.log");
    let out = b.runc(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nosuch",
    ]);
    assert!(!out.status.success());
    let line = fs::read_to_string(&log).unwrap();
    let v: Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("does not exist"), "{v}");
}

#[test]
fn exec_joins_the_container() {
    let b = Bundle::new(|c| {
        c["hostname"] = json!("box");
        c["process"]["args"] = json!(["sh", "-c", "echo marker > /dev/shm/m; exec sleep 60"]);
    });
    assert!(b.runc(&["run", "-d", "ex"]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(50));
    let out = b.runc(&["exec", "ex", "sh", "-c",
        "cat /dev/shm/m; echo pid=$$; hostname; grep CapEff /proc/self/status; grep -c . /proc/1/cmdline; exit 4"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "marker", "same mount namespace: {text}");
    assert_ne!(lines[1], "pid=1", "{text}");
    assert!(
        lines[1].parse::<String>().unwrap().starts_with("pid="),
        "{text}"
    );
    assert!(
        lines[1].trim_start_matches("pid=").parse::<i32>().unwrap() < 100,
        "same pid namespace: {text}"
    );
    assert_eq!(lines[2], "box", "same uts namespace: {text}");
    let want = format!("{:016x}", (1u64 << 29) | (1 << 5) | (1 << 10));
    assert!(
        lines[3].ends_with(&want),
        "the container's capabilities: {text}"
    );

    let out = b.runc(&[
        "exec",
        "-e",
        "FOO=bar",
        "--cwd",
        "/dev",
        "--user",
        "1000:1000",
        "ex",
        "sh",
        "-c",
        "echo $FOO; pwd; id -u; id -g",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bar\n/dev\n1000\n1000\n"
    );

    // --process FILE and --detach with --pid-file.
    let mut p: Value = serde_json::from_slice(&fs::read(b.config()).unwrap()).unwrap();
    let mut process = p["process"].take();
    process["args"] = json!(["sh", "-c", "echo detached > /dev/shm/d; sleep 1"]);
    let pfile = b.dir.path().join("process.json");
    fs::write(&pfile, serde_json::to_vec(&process).unwrap()).unwrap();
    let pid_file = b.dir.path().join("exec.pid");
    let out = b.runc(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--process",
        pfile.to_str().unwrap(),
        "ex",
    ]);
    assert!(out.status.success(), "{out:?}");
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid > 0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let out = b.runc(&["exec", "ex", "cat", "/dev/shm/d"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "detached\n");

    let out = b.runc(&["exec", "ex", "/nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nope"),
        "{out:?}"
    );
    assert!(b.runc(&["kill", "ex", "KILL"]).status.success());
    for _ in 0..200 {
        let st: Value = serde_json::from_slice(&b.runc(&["state", "ex"]).stdout).unwrap();
        if st["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = b.runc(&["exec", "ex", "true"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not running"),
        "{out:?}"
    );
    assert!(b.runc(&["delete", "ex"]).status.success());
}

/// Init running as a non-root user (as `USER app` images do) still gets
/// released by start, with only its own credentials.
#[test]
fn non_root_process_user() {
    let b = Bundle::new(|c| {
        c["process"]["user"] = json!({"uid": 1234, "gid": 1234, "additionalGids": [1234, 5]});
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "id -u; id -g; id -G; grep CapEff /proc/self/status"
        ]);
    });
    let (code, out, err) = b.sh("nonroot");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["1234", "1234", "1234 5"], "{out}");
    // As runc: the spec's effective set, kept across the switch to uid 1234.
    assert!(lines[3].ends_with("0000000020000420"), "{out}");
}

/// A "cgroup" mount shows the container its own cgroups (here: the v1
/// memory limit) and nothing of the host's tree.
#[test]
fn cgroup_mount_shows_only_the_containers_cgroups() {
    let id = format!("cgm-{}", std::process::id());
    let b = Bundle::new(|c| {
        c["linux"]["cgroupsPath"] = json!(format!("/berth-test/{id}"));
        c["linux"]["resources"]["memory"] = json!({"limit": 67108864});
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
        mounts.push(
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                           "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        );
        c["process"]["args"] = json!(["sh", "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
             ls /sys/fs/cgroup/memory | grep -c berth-test; touch /sys/fs/cgroup/x 2>&1 || echo READONLY"]);
    });
    let (code, out, err) = b.sh(&id);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "67108864", "{out}");
    assert_eq!(lines[1], "0", "the host's cgroup tree is visible: {out}");
    assert!(out.contains("READONLY"), "{out}");
}

/// A symlink in the rootfs cannot redirect a mount outside it: targets are
/// resolved inside the rootfs (openat2 RESOLVE_IN_ROOT) and mounted by fd.
#[test]
fn mount_targets_cannot_escape_through_symlinks() {
    let host = tempfile::tempdir().unwrap();
    let host_path = host.path().to_str().unwrap().to_string();
    let b = Bundle::new(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/abs/mnt", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(json!({"destination": "/rel/mnt", "type": "tmpfs", "source": "tmpfs"}));
        c["root"]["readonly"] = json!(false);
        // Inside, both links lead to the same place under the rootfs.
        c["process"]["args"] = json!([
            "sh",
            "-c",
            format!("grep -c ' {host_path}/mnt ' /proc/self/mountinfo")
        ]);
    });
    let rootfs = b.bundle().join("rootfs");
    // An absolute link to a host directory, and a relative one climbing out.
    std::os::unix::fs::symlink(&host_path, rootfs.join("abs")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../..".to_string() + &host_path,
        rootfs.join("rel"),
    )
    .unwrap();
    let (code, out, err) = b.sh("escape");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "2",
        "both mounts exist inside the container, stacked: {out}"
    );
    assert!(
        !host.path().join("mnt").exists(),
        "a mount point was created on the host"
    );
    // The targets were created inside the rootfs, where the links point
    // when resolved as if the rootfs were "/".
    assert!(rootfs
        .join(host.path().strip_prefix("/").unwrap())
        .join("mnt")
        .is_dir());
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!("{host_path}/mnt")),
        "a mount landed on the host"
    );
}

/// A new user namespace: container root is host uid 100000, files owned by
/// 100000 appear as root's, devices still work (bound from the host).
#[test]
fn user_namespace_maps_ids() {
    let b = Bundle::new(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["process"]["args"] = json!(["sh", "-c",
            "cat /proc/self/uid_map | tr -s ' '; id -u; stat -c %u /bin/busybox; echo x > /dev/null && echo devnull-ok; exec sleep 60"]);
    });
    // The image's files belong to the mapped root.
    fn chown_tree(p: &Path, id: u32) {
        std::os::unix::fs::lchown(p, Some(id), Some(id)).unwrap();
        if fs::symlink_metadata(p).unwrap().is_dir() {
            for e in fs::read_dir(p).unwrap() {
                chown_tree(&e.unwrap().path(), id);
            }
        }
    }
    chown_tree(&b.bundle().join("rootfs"), 100000);
    let out_file = b.dir.path().join("userns.out");
    let err_file = b.dir.path().join("userns.err");
    let status = b
        .cmd(&["run", "-d", "uns"])
        .stdout(fs::File::create(&out_file).unwrap())
        .stderr(fs::File::create(&err_file).unwrap())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{}",
        fs::read_to_string(&err_file).unwrap()
    );
    // The detached container writes its four lines when it gets to them
    // (a busy host is slow): read until they are there, or 20 s pass.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let text = fs::read_to_string(&out_file).unwrap();
        if text.lines().count() >= 4 || std::time::Instant::now() > end {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() >= 4,
        "{text}{}",
        fs::read_to_string(&err_file).unwrap_or_default()
    );
    assert_eq!(
        lines.first().map(|l| l.trim()),
        Some("0 100000 65536"),
        "{text}"
    );
    assert_eq!(&lines[1..4], ["0", "0", "devnull-ok"], "{text}");
    let st: Value = serde_json::from_slice(&b.runc(&["state", "uns"]).stdout).unwrap();
    let status = fs::read_to_string(format!("/proc/{}/status", st["pid"])).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().nth(1) == Some("100000"),
        "host view: {uid_line}"
    );
    assert!(b.runc(&["delete", "--force", "uns"]).status.success());

    // Without mappings a new user namespace is refused clearly.
    let b = Bundle::new(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
    });
    let out = b.runc(&["create", "nomap"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("uidMappings"),
        "{out:?}"
    );
    assert!(b.leftovers().is_empty());
}

/// Namespaces joined by path: a second container shares the first one's
/// network, uts and ipc namespaces (as a Kubernetes pod's containers do).
#[test]
fn namespaces_joined_by_path() {
    let a = Bundle::new(|c| {
        c["hostname"] = json!("pod-host");
        c["process"]["args"] = json!(["sh", "-c", "exec sleep 60"]);
    });
    assert!(a.runc(&["run", "-d", "pod-a"]).status.success());
    let st: Value = serde_json::from_slice(&a.runc(&["state", "pod-a"]).stdout).unwrap();
    let pid = st["pid"].as_i64().unwrap();
    let b = Bundle::new(move |c| {
        c["linux"]["namespaces"] = json!([
            {"type": "pid"}, {"type": "mount"},
            {"type": "uts", "path": format!("/proc/{pid}/ns/uts")},
            {"type": "ipc", "path": format!("/proc/{pid}/ns/ipc")},
            {"type": "network", "path": format!("/proc/{pid}/ns/net")},
        ]);
        c["process"]["args"] = json!(["sh", "-c", "hostname; readlink /proc/self/ns/net"]);
    });
    let (code, out, err) = b.sh("pod-b");
    assert_eq!(code, 0, "{err}");
    let a_net = fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(out, format!("pod-host\n{}\n", a_net.display()));
    assert!(a.runc(&["delete", "--force", "pod-a"]).status.success());
}

/// A cgroup namespace is rooted at the container's own cgroup (init joins
/// the cgroup first, then unshares), so /proc/self/cgroup shows "/".
#[test]
fn cgroup_namespace_is_rooted_at_the_containers_cgroup() {
    for with_ns in [true, false] {
        let id = format!("cgns-{}-{with_ns}", std::process::id());
        let b = Bundle::new(|c| {
            c["linux"]["cgroupsPath"] = json!(format!("/berth-test/{id}"));
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "cgroup");
            if with_ns {
                ns.push(json!({"type": "cgroup"}));
            }
            c["process"]["args"] = json!(["sh", "-c", "grep ':memory:' /proc/self/cgroup"]);
        });
        let (code, out, err) = b.sh(&id);
        assert_eq!(code, 0, "{err}");
        let want = if with_ns {
            ":memory:/".to_string()
        } else {
            format!(":memory:/berth-test/{id}")
        };
        assert!(out.trim().ends_with(&want), "cgroupns={with_ns}: {out}");
    }
}

/// Between fork and exec: a private mount namespace where /sys/fs/cgroup
/// is the cgroup2 hierarchy alone, so berth-runc sees a v2-only host.
fn pure_cgroup_v2_view() -> std::io::Result<()> {
    let none = std::ptr::null();
    let check = |r: i32| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: plain syscalls with NUL-terminated constant strings; only
    // async-signal-safe calls, as pre_exec requires.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::umount2(c"/sys/fs/cgroup".as_ptr(), libc::MNT_DETACH))?;
        check(libc::mount(
            c"cgroup2".as_ptr(),
            c"/sys/fs/cgroup".as_ptr(),
            c"cgroup2".as_ptr(),
            0,
            std::ptr::null(),
        ))
    }
}

/// The pure cgroup v2 paths, on this hybrid host: berth-runc runs in a
/// private mount namespace where /sys/fs/cgroup is the cgroup2 hierarchy
/// alone (the unified hierarchy, which holds hugetlb here), so it sees a
/// v2-only host. Checked from inside: a hugetlb limit, the device rules as
/// an eBPF program (default devices work, mknod of a block device is
/// denied), and a cgroup mount without a cgroup namespace that shows the
/// container's own cgroup directory only. The cgroup is removed afterwards.
#[test]
fn pure_cgroup_v2_host() {
    use std::os::unix::process::CommandExt as _;
    if !Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        panic!("no cgroup2 hierarchy on this host");
    }
    let id = format!("v2-{}", std::process::id());
    let b = Bundle::new(|c| {
        c["linux"]["cgroupsPath"] = json!(format!("/berth-test/{id}"));
        c["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4194304}]);
        c["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
        c["linux"]["namespaces"] = json!([
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}
        ]);
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_MKNOD"], "effective": ["CAP_MKNOD"], "permitted": ["CAP_MKNOD"],
        });
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
        mounts.push(
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                           "options": ["nosuid", "noexec", "nodev", "ro"]}),
        );
        c["process"]["args"] = json!(["sh", "-c",
            "cat /sys/fs/cgroup/hugetlb.2MB.max; \
             echo procs $(grep -c '^1$' /sys/fs/cgroup/cgroup.procs) $(grep -c '^0$' /sys/fs/cgroup/cgroup.procs); \
             ls /sys/fs/cgroup | grep -c berth-test; \
             echo x > /dev/null && echo NULL-OK; \
             mknod /dev/shm/sda b 8 0 2>&1 || echo MKNOD-DENIED"]);
    });
    let mut cmd = b.cmd(&["run", &id]);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(pure_cgroup_v2_view);
    }
    let out_path = b.dir.path().join("v2-out");
    let err_path = b.dir.path().join("v2-err");
    let status = cmd
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    let out = fs::read_to_string(&out_path).unwrap();
    let err = fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "{status:?} {out} {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "4194304", "hugetlb limit: {out}");
    assert_eq!(
        lines[1], "procs 1 0",
        "/sys/fs/cgroup is not the container's own cgroup: {out}"
    );
    assert_eq!(lines[2], "0", "the host's cgroup tree is visible: {out}");
    assert_eq!(lines[3], "NULL-OK", "{out}");
    assert!(
        out.contains("MKNOD-DENIED"),
        "the eBPF device filter let a block device be created: {out}"
    );
    let host = if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        format!("/sys/fs/cgroup/unified/berth-test/{id}")
    } else {
        format!("/sys/fs/cgroup/berth-test/{id}")
    };
    assert!(!Path::new(&host).exists(), "{host} left behind");
}

/// Init prepares its rootfs while the parent sets up its cgroups; when the
/// cgroup side fails (an impossible cpuset here), init is killed, and
/// neither state nor cgroup directories remain.
#[test]
fn a_failing_cgroup_setup_aborts_creation_cleanly() {
    let id = format!("cgfail-{}", std::process::id());
    let b = Bundle::new(|c| {
        c["linux"]["cgroupsPath"] = json!(format!("/berth-test/{id}"));
        c["linux"]["resources"]["cpu"] = json!({"cpus": "4095"});
        c["process"]["args"] = json!(["true"]);
    });
    let out = b.runc(&["run", &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cpuset"), "{err}");
    assert!(b.leftovers().is_empty(), "{:?}", b.leftovers());
    for h in ["cpuset", "memory", "pids", "unified"] {
        let d = format!("/sys/fs/cgroup/{h}/berth-test/{id}");
        assert!(!Path::new(&d).exists(), "{d} left behind");
    }
}

/// Runs `b` as container `id`, optionally on the pure cgroup v2 setup of
/// `pure_cgroup_v2_host`, with the host's "/" open (inheritable) at fds 5,
/// 9 and 40 of berth-runc, as a careless caller would leave them; returns
/// (success, stdout, stderr).
fn run_with_host_fds(b: &Bundle, id: &str, v2: bool) -> (bool, String, String) {
    let host_dir = fs::File::open("/").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&host_dir);
    let mut c = b.cmd(&["run", id]);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            for fd in [5, 9, 40] {
                inheritable_at(raw, fd)?;
            }
            if v2 {
                pure_cgroup_v2_view()?;
            }
            Ok(())
        });
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// CVE-2024-21626: a cwd of /proc/self/fd/N, for every N from 3 to 64,
/// never gives the process a working directory on the host (through the
/// cgroup2 directory fd clone3 uses, or any fd the caller left open): the
/// container is refused before its process runs, on this host's hybrid
/// cgroups and on a pure cgroup v2 host.
fn cwd_through_a_leaked_fd_is_refused(v2: bool) {
    for n in 3..=64 {
        let id = format!("cwdfd-{}-{n}-{v2}", std::process::id());
        let b = Bundle::new(|c| {
            c["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
            c["linux"]["cgroupsPath"] = json!(format!("/berth-test/{id}"));
            c["process"]["args"] = json!(["sh", "-c", "echo RAN; ls; cat etc/hostname"]);
        });
        let (ok, out, err) = run_with_host_fds(&b, &id, v2);
        assert!(
            !ok && !out.contains("RAN"),
            "cwd /proc/self/fd/{n}: the process ran: {out} {err}"
        );
        assert!(err.contains("/proc/self/fd"), "fd {n}: {err}");
        assert!(b.leftovers().is_empty(), "fd {n}: state left");
    }
}

#[test]
fn cwd_through_a_leaked_fd_is_refused_on_hybrid_cgroups() {
    cwd_through_a_leaked_fd_is_refused(false);
}

#[test]
fn cwd_through_a_leaked_fd_is_refused_on_pure_cgroup_v2() {
    cwd_through_a_leaked_fd_is_refused(true);
}

/// The same through a link in the image: /w -> /proc/self/fd/N is
/// followed inside the root, where a magic link is refused, and the check
/// after chdir holds. `exec -w` goes the same way.
#[test]
fn cwd_through_a_link_to_proc_fd_is_refused_and_exec_too() {
    let id = format!("cwdlink-{}", std::process::id());
    let b = Bundle::new(|c| {
        c["process"]["cwd"] = json!("/w");
        c["process"]["args"] = json!(["sh", "-c", "echo RAN"]);
    });
    std::os::unix::fs::symlink("/proc/self/fd/9", b.bundle().join("rootfs/w")).unwrap();
    let (ok, out, err) = run_with_host_fds(&b, &id, false);
    assert!(!ok && !out.contains("RAN"), "{out} {err}");
    assert!(err.contains("\"/w\""), "{err}");
    // exec: a long-running container, then exec with the cwd set.
    let b = Bundle::new(|c| c["process"]["args"] = json!(["sleep", "30"]));
    let id = format!("cwdexec-{}", std::process::id());
    let out = b.runc(&["run", "-d", &id]);
    assert!(out.status.success(), "{out:?}");
    let host_dir = fs::File::open("/").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&host_dir);
    for n in 3..=64 {
        let mut c = b.cmd(&[
            "exec",
            "--cwd",
            &format!("/proc/self/fd/{n}"),
            &id,
            "sh",
            "-c",
            "echo RAN; ls",
        ]);
        // SAFETY: dup2 between fork and exec on an fd we own.
        unsafe { c.pre_exec(move || inheritable_at(raw, 9)) };
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && !stdout.contains("RAN"),
            "exec --cwd /proc/self/fd/{n}: {stdout}"
        );
    }
    let out = b.runc(&["delete", "-f", &id]);
    assert!(out.status.success(), "{out:?}");
}

/// The exec stub of the CVE-2019-5736 defence, on a copy of berth-runc:
/// whatever route the container takes to /proc/self/exe while its program
/// is loaded (a `#!` interpreter, an ELF's PT_INTERP, argv), it reaches
/// the sealed stub, which refuses, and the host binary is never run inside
/// nor changed.
#[test]
fn host_runtime_binary_is_unreachable_by_every_exec_route() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("berth-runc");
    fs::copy(RUNC, &copy).unwrap();
    let before = fs::read(&copy).unwrap();
    let run_copy = |b: &Bundle, id: &str, args: Value| -> (i32, String, String) {
        let mut config: Value = serde_json::from_slice(&fs::read(b.config()).unwrap()).unwrap();
        config["process"]["args"] = args;
        fs::write(b.config(), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let out = Command::new(&copy)
            .arg("--root")
            .arg(b.state_root())
            .args(["run", id])
            .current_dir(b.bundle())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let b = Bundle::new(|_| {});
    let rootfs = b.bundle().join("rootfs");
    // A script whose interpreter is /proc/self/exe.
    fs::write(rootfs.join("evil.sh"), "#!/proc/self/exe --help\n").unwrap();
    fs::set_permissions(
        rootfs.join("evil.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (code, out, err) = run_copy(&b, "shebang", json!(["/evil.sh"]));
    assert_eq!(code, 126, "{out} {err}");
    assert!(
        !out.contains("berth-runc") && !out.contains("Usage"),
        "the host binary ran: {out}"
    );
    assert!(err.contains("refusing"), "{err}");
    // An ELF whose program interpreter (PT_INTERP) is /proc/self/exe.
    let src = dir.path().join("interp.c");
    fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let elf = rootfs.join("interp");
    let cc = Command::new("cc")
        .arg("-o")
        .arg(&elf)
        .arg(&src)
        .arg("-Wl,--dynamic-linker=/proc/self/exe")
        .status()
        .expect("cc (gcc) is needed to build the PT_INTERP attack");
    assert!(cc.success());
    let (code, out, err) = run_copy(&b, "ptinterp", json!(["/interp", "--help"]));
    assert_eq!(code, 126, "{out} {err}");
    assert!(
        !out.contains("berth-runc") && !out.contains("Usage"),
        "the host binary ran: {out}"
    );
    // Directly, as the program: refused before exec.
    let (code, out, err) = run_copy(&b, "argv", json!(["/proc/self/exe", "--help"]));
    assert_ne!(code, 0, "{out} {err}");
    assert!(!out.contains("Usage"), "the host binary ran: {out}");
    assert_eq!(
        fs::read(&copy).unwrap(),
        before,
        "the host binary was changed"
    );
}

/// runtime-tools' `linux_devices`: a fifo (type `p`) in `linux.devices` is
/// made in the container, also under a deny-all device cgroup (a fifo is
/// no device to it).
#[test]
fn fifo_devices_are_made() {
    let b = Bundle::new(|c| {
        c["linux"]["devices"] =
            json!([{"path": "/dev/myfifo", "type": "p", "major": 0, "minor": 0, "fileMode": 432}]);
        c["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
        c["process"]["args"] = json!(["sh", "-c", "test -p /dev/myfifo && echo FIFO"]);
    });
    let (code, out, err) = b.sh("fifo");
    assert_eq!((code, out.as_str()), (0, "FIFO\n"), "{err}");
}

/// An rlimit type Linux does not have is an error naming it, not a parse
/// failure of the whole config.
#[test]
fn unknown_rlimit_types_are_named() {
    let b = Bundle::new(|c| {
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024},
            {"type": "RLIMIT_TEA", "soft": 1, "hard": 1}
        ]);
    });
    let (code, _, err) = b.sh("rlim");
    assert_ne!(code, 0);
    assert!(err.contains("unknown rlimit type \"RLIMIT_TEA\""), "{err}");
    assert!(b.leftovers().is_empty());
}

/// A seccomp profile that has neither openat2 nor getcwd (runtime-tools'
/// default profile has no openat2): the cwd is entered before the filter,
/// so the container still starts, in its cwd.
#[test]
fn a_seccomp_profile_without_openat2_or_getcwd_still_enters_the_cwd() {
    let b = Bundle::new(|c| {
        c["process"]["cwd"] = json!("/tmp");
        c["process"]["args"] = json!(["sh", "-c", "echo ran; ls -d ../tmp"]);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["openat2", "getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}],
        });
    });
    let (code, out, err) = b.sh("no-openat2");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "ran\n../tmp\n");
}

/// rootfsPropagation shared, rshared and unbindable: pivot_root needs the rootfs's
/// parent mount private (EINVAL otherwise), the rootfs's bind mount a
/// bindable "/"; the propagation is then that of the container's "/", and
/// nothing propagates back to the host.
#[test]
fn rootfs_propagation_shared_rshared_and_unbindable() {
    for p in ["shared", "rshared", "slave", "private", "unbindable"] {
        let b = Bundle::new(|c| {
            c["linux"]["rootfsPropagation"] = json!(p);
            c["process"]["args"] = json!(["sh", "-c", "awk '$5 == \"/\"' /proc/self/mountinfo"]);
        });
        let (code, out, err) = b.sh(&format!("prop-{p}"));
        assert_eq!(code, 0, "{p}: {err}");
        let shared = out.contains(" shared:");
        assert_eq!(shared, p.ends_with("shared"), "{p}: {out}");
        assert_eq!(out.contains(" unbindable"), p == "unbindable", "{p}: {out}");
    }
    // The host's mount of the bundles is as it was.
    let host = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        host.lines().all(|l| !l.contains("/bundle/rootfs")),
        "a rootfs mount reached the host: {host}"
    );
}

/// Without a mount namespace of its own (none at all, or one joined by
/// path) and with no /proc mounted in the container, init still reaches
/// start: the exec fifo is opened by name through its directory, not
/// through /proc/self/fd.
#[test]
fn containers_without_their_own_mount_namespace_or_proc_get_to_start() {
    let keeper = Bundle::new(script("exec sleep 60"));
    assert!(keeper.runc(&["run", "-d", "mnt-keeper"]).status.success());
    let st: Value = serde_json::from_slice(&keeper.runc(&["state", "mnt-keeper"]).stdout).unwrap();
    let pid = st["pid"].as_i64().unwrap();
    let cases: Vec<(&str, Value, bool)> = vec![
        ("no-namespaces", json!([]), false),
        (
            "joined-mount",
            json!([{"type": "pid"}, {"type": "mount", "path": format!("/proc/{pid}/ns/mnt")}]),
            false,
        ),
        ("no-proc", json!([{"type": "pid"}, {"type": "mount"}]), true),
    ];
    for (name, namespaces, drop_proc) in cases {
        let b = Bundle::new(|c| {
            c["linux"]["namespaces"] = namespaces;
            c["process"]["args"] = json!(["/bin/echo", "started"]);
            if drop_proc {
                let mounts: Vec<Value> = c["mounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["destination"] != "/proc")
                    .cloned()
                    .collect();
                c["mounts"] = json!(mounts);
                // Masked and read-only paths are under /proc.
                c["linux"]["maskedPaths"] = json!([]);
                c["linux"]["readonlyPaths"] = json!([]);
            }
        });
        let out = b.runc(&["create", name]);
        assert!(out.status.success(), "{name}: {out:?}");
        let st: Value = serde_json::from_slice(&b.runc(&["state", name]).stdout).unwrap();
        assert_eq!(st["status"], "created", "{name}: {st}");
        assert!(st["pid"].as_i64().unwrap() > 0, "{name}: {st}");
        let out = b.runc(&["start", name]);
        assert!(out.status.success(), "{name}: {out:?}");
        assert!(b.runc(&["delete", "--force", name]).status.success());
    }
    assert!(keeper
        .runc(&["delete", "--force", "mnt-keeper"])
        .status
        .success());
}

/// A failing poststart or poststop hook is a warning, and the hooks after
/// it still run (the runtime spec: "the remaining hooks and lifecycle
/// continue"); poststart sees the process already executed (its
/// /proc/PID/exe is the program, not the runtime or its stub).
#[test]
fn failing_poststart_and_poststop_hooks_do_not_stop_the_others() {
    let out_dir = tempfile::tempdir().unwrap();
    let o = out_dir.path().to_str().unwrap().to_string();
    let exe_of_pid = format!(
        "pid=$(grep -o '\"pid\":[0-9]*' | cut -d: -f2); readlink /proc/$pid/exe > {o}/poststart"
    );
    let hooks = json!({
        "poststart": [
            {"path": "/bin/false"},
            {"path": "/bin/sh", "args": ["sh", "-c", exe_of_pid]},
        ],
        "poststop": [
            {"path": "/bin/false"},
            {"path": "/bin/sh", "args": ["sh", "-c", format!("echo done > {o}/poststop")]},
        ],
    });
    let b = Bundle::new(move |c| {
        c["hooks"] = hooks;
        c["process"]["args"] = json!(["sleep", "5"]);
    });
    assert!(b.runc(&["create", "hooks-fail"]).status.success());
    let out = b.runc(&["start", "hooks-fail"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("poststart hook"),
        "{out:?}"
    );
    let exe = fs::read_to_string(out_dir.path().join("poststart")).unwrap();
    assert!(
        exe.trim_end().ends_with("/bin/busybox"),
        "poststart ran before the exec: {exe:?}"
    );
    let out = b.runc(&["delete", "--force", "hooks-fail"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fs::read_to_string(out_dir.path().join("poststop")).unwrap(),
        "done\n"
    );
}

/// ociVersion must be a SemVer version (misc_props of runtime-tools).
#[test]
fn an_oci_version_that_is_not_semver_is_refused() {
    let b = Bundle::new(|c| c["ociVersion"] = json!("invalid"));
    let out = b.runc(&["create", "badversion"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ociVersion") && err.contains("SemVer"),
        "{err}"
    );
    assert!(b.leftovers().is_empty(), "{:?}", b.leftovers());
}
