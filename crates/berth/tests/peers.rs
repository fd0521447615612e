//! Interop with the peers berth claims to be compatible with: skopeo reads
//! what `berth save` writes and berth reads what skopeo writes; a private
//! dockerd loads and runs berth's docker-archive, and berth loads what
//! `docker save` writes, with the same image IDs on both sides.
//!
//! The peers come from `scripts/install-deps.sh`; a missing peer fails the
//! test (it does not skip). The dockerd test needs root.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

/// What `docker run --rm sample/app:1.0` prints.
const SAMPLE_APP_OUTPUT: &str = "built\n1234\n/app\nprod\n";
/// Upper bound for any one peer or berth command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Upper bound for dockerd to start answering on its socket.
const DOCKERD_START_TIMEOUT: Duration = Duration::from_secs(60);

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures"))
}

/// The path of a peer binary; fails the test when it is not installed.
fn peer(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .unwrap_or_else(|| {
            panic!(
                "peer `{name}` is not installed (not in PATH nor /usr/sbin): \
                 run scripts/install-deps.sh (as root) to install the test peers"
            )
        })
}

/// The docker client: the docker.io package's own (same release as its
/// dockerd) when present, else whatever `docker` is in PATH (a newer client
/// negotiates the API version down to the daemon's).
fn docker_client() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/docker");
    if debian.is_file() {
        debian
    } else {
        peer("docker")
    }
}

/// A finished command's status and output.
struct Output {
    what: String,
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Output {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics, with the command's output, unless it succeeded.
    fn ok(self) -> Self {
        assert!(
            self.status.success(),
            "`{}` failed ({})\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.status,
            self.stdout(),
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}` did not print JSON ({e}):\n{}",
                self.what,
                self.stdout()
            )
        })
    }
}

/// Runs `cmd` to completion (killing it after [`COMMAND_TIMEOUT`]), its
/// output collected in anonymous files so a chatty command cannot block.
fn run(cmd: &mut Command) -> Output {
    let what = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut out = tempfile::tempfile().expect("temp file");
    let mut err = tempfile::tempfile().expect("temp file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |f: &mut File| {
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(0)).expect("seek");
        f.read_to_end(&mut buf).expect("read output");
        buf
    };
    let stdout = read(&mut out);
    let stderr = String::from_utf8_lossy(&read(&mut err)).into_owned();
    Output {
        what,
        status,
        stdout,
        stderr,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_json(path: &Path) -> Value {
    let raw = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// The bytes of `digest` ("sha256:HEX") in an OCI layout directory.
fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let (alg, hex) = digest
        .split_once(':')
        .unwrap_or_else(|| panic!("bad digest {digest:?}"));
    let path = layout.join("blobs").join(alg).join(hex);
    fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Unpacks a tar archive into a new directory `into`.
fn untar(archive: &Path, into: &Path) {
    fs::create_dir_all(into).expect("mkdir");
    let f = File::open(archive).unwrap_or_else(|e| panic!("open {}: {e}", archive.display()));
    tar::Archive::new(f)
        .unpack(into)
        .unwrap_or_else(|e| panic!("unpack {}: {e}", archive.display()));
}

/// The only manifest descriptor of an OCI layout's index.json.
fn only_manifest(layout: &Path) -> Value {
    let index = read_json(&layout.join("index.json"));
    let manifests = index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("index.json has no manifests: {index}"));
    assert_eq!(manifests.len(), 1, "one image expected in {index}");
    manifests[0].clone()
}

/// A berth store in a temp directory.
struct Berth {
    dir: TempDir,
}

impl Berth {
    fn new() -> Self {
        Berth {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A scratch path beside the store, removed with it.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(Command::new(env!("CARGO_BIN_EXE_berth"))
            .env_remove("BERTH_ROOT")
            .env_remove("BERTH_RUNROOT")
            .arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("run"))
            .args(args))
    }

    fn ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd(args).ok()
    }

    /// `berth load -i ARCHIVE`, checking that it reports `name`.
    fn load(&self, archive: &Path, name: &str) {
        let out = self.ok([OsStr::new("load"), "-i".as_ref(), archive.as_os_str()]);
        let want = format!("Loaded image: {name}");
        assert!(
            out.stdout().lines().any(|l| l == want),
            "`{}` should print {want:?}, printed:\n{}",
            out.what,
            out.stdout()
        );
    }

    /// `berth image inspect NAME`, the one object.
    fn inspect(&self, name: &str) -> Value {
        let v = self.ok(["image", "inspect", name]).json();
        let list = v.as_array().expect("inspect prints an array");
        assert_eq!(list.len(), 1, "one object expected: {v}");
        list[0].clone()
    }
}

/// Loads the docker-save fixture (sample/app:1.0) into a new store.
fn berth_with_sample_app() -> Berth {
    let b = Berth::new();
    b.load(
        &fixtures().join("sample-app.docker-save.tar"),
        "sample/app:1.0",
    );
    b
}

fn skopeo<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    // Local transports only: no signature policy involved.
    run(Command::new(peer("skopeo"))
        .arg("--insecure-policy")
        .args(args))
}

/// What `skopeo inspect` reports must agree with berth's own view.
fn check_skopeo_inspect(si: &Value, berth: &Value, manifest_digest: &str, manifest: &Value) {
    assert_eq!(si["Digest"], manifest_digest, "skopeo inspect: {si}");
    let layers = si["Layers"].as_array().expect("Layers");
    let berth_layers = berth["RootFS"]["Layers"].as_array().expect("RootFS");
    assert_eq!(layers.len(), berth_layers.len(), "skopeo inspect: {si}");
    assert_eq!(layers.len(), 3, "skopeo inspect: {si}");
    let manifest_layers: Vec<&Value> = manifest["layers"]
        .as_array()
        .expect("manifest layers")
        .iter()
        .map(|l| &l["digest"])
        .collect();
    assert_eq!(
        layers.iter().collect::<Vec<_>>(),
        manifest_layers,
        "skopeo's Layers are the manifest's"
    );
    assert_eq!(si["Env"], berth["Config"]["Env"], "skopeo inspect: {si}");
    assert!(
        si["Env"]
            .as_array()
            .expect("Env")
            .iter()
            .any(|e| e == "APP_MODE=prod"),
        "Env: {}",
        si["Env"]
    );
    assert_eq!(si["Labels"], berth["Config"]["Labels"]);
    assert_eq!(si["Architecture"], berth["Architecture"]);
    assert_eq!(si["Os"], berth["Os"]);
}

#[test]
fn skopeo_reads_berth_oci_archive() {
    let b = berth_with_sample_app();
    let berth = b.inspect("sample/app:1.0");
    let archive = b.path("app.oci.tar");
    b.ok([
        OsStr::new("save"),
        "--format".as_ref(),
        "oci-archive".as_ref(),
        "-o".as_ref(),
        archive.as_os_str(),
        "sample/app:1.0".as_ref(),
    ]);
    let layout = b.path("layout");
    untar(&archive, &layout);
    let desc = only_manifest(&layout);
    let digest = desc["digest"].as_str().expect("digest").to_string();
    let manifest: Value =
        serde_json::from_slice(&layout_blob(&layout, &digest)).expect("manifest JSON");

    let transport = format!("oci-archive:{}", archive.display());
    let si = skopeo(["inspect", &transport]).ok().json();
    check_skopeo_inspect(&si, &berth, &digest, &manifest);

    // The manifest skopeo reads is byte for byte the one index.json names.
    let raw = skopeo(["inspect", "--raw", &transport]).ok().stdout;
    assert_eq!(format!("sha256:{}", sha256_hex(&raw)), digest);
    assert_eq!(Some(raw.len() as u64), desc["size"].as_u64(), "{desc}");
    // And its config is the image berth has (ID = config digest).
    let config = skopeo(["inspect", "--config", "--raw", &transport])
        .ok()
        .stdout;
    assert_eq!(
        Value::from(format!("sha256:{}", sha256_hex(&config))),
        berth["Id"]
    );

    // A full copy verifies every blob against its digest and size.
    let copy = format!("dir:{}", b.path("copy").display());
    skopeo(["copy", "--quiet", &transport, &copy]).ok();
}

#[test]
fn skopeo_reads_berth_oci_dir() {
    let b = berth_with_sample_app();
    let berth = b.inspect("sample/app:1.0");
    let dir = b.path("layout");
    b.ok([
        OsStr::new("save"),
        "--format".as_ref(),
        "oci-dir".as_ref(),
        "-o".as_ref(),
        dir.as_os_str(),
        "sample/app:1.0".as_ref(),
    ]);
    let desc = only_manifest(&dir);
    let digest = desc["digest"].as_str().expect("digest").to_string();
    let manifest: Value =
        serde_json::from_slice(&layout_blob(&dir, &digest)).expect("manifest JSON");

    // skopeo's oci: transport selects by org.opencontainers.image.ref.name,
    // which berth (like containerd and docker's OCI export) sets to the tag.
    let transport = format!("oci:{}:1.0", dir.display());
    let si = skopeo(["inspect", &transport]).ok().json();
    check_skopeo_inspect(&si, &berth, &digest, &manifest);
    let raw = skopeo(["inspect", "--raw", &transport]).ok().stdout;
    assert_eq!(format!("sha256:{}", sha256_hex(&raw)), digest);
    let copy = format!("dir:{}", b.path("copy").display());
    skopeo(["copy", "--quiet", &transport, &copy]).ok();

    // Saving another name into the same directory adds to its index; both
    // stay addressable.
    b.ok(["tag", "sample/app:1.0", "other/app:2.0"]);
    b.ok([
        OsStr::new("save"),
        "--format".as_ref(),
        "oci-dir".as_ref(),
        "-o".as_ref(),
        dir.as_os_str(),
        "other/app:2.0".as_ref(),
    ]);
    let index = read_json(&dir.join("index.json"));
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(2),
        "{index}"
    );
    for tag in ["1.0", "2.0"] {
        let si = skopeo(["inspect", &format!("oci:{}:{tag}", dir.display())])
            .ok()
            .json();
        assert_eq!(si["Digest"], digest.as_str(), "oci:…:{tag}: {si}");
    }
}

#[test]
fn berth_loads_skopeo_docker_archive() {
    let b = Berth::new();
    let fixture = fixtures().join("sample-app");
    let archive = b.path("x.tar");
    skopeo([
        "copy".to_string(),
        "--quiet".to_string(),
        format!("oci:{}:1.0", fixture.display()),
        format!("docker-archive:{}:sample/x:1", archive.display()),
    ])
    .ok();
    b.load(&archive, "sample/x:1");

    let desc = only_manifest(&fixture);
    let manifest: Value =
        serde_json::from_slice(&layout_blob(&fixture, desc["digest"].as_str().unwrap()))
            .expect("manifest JSON");
    let config_digest = manifest["config"]["digest"].as_str().expect("config");
    let config: Value =
        serde_json::from_slice(&layout_blob(&fixture, config_digest)).expect("config JSON");

    let berth = b.inspect("sample/x:1");
    assert_eq!(berth["RootFS"]["Type"], "layers");
    assert_eq!(
        berth["RootFS"]["Layers"], config["rootfs"]["diff_ids"],
        "berth's RootFS.Layers are the config's diff_ids"
    );
    // skopeo keeps the config as is, so the image ID is its digest.
    assert_eq!(berth["Id"], config_digest);
    assert_eq!(berth["RepoTags"], serde_json::json!(["sample/x:1"]));
    assert_eq!(berth["Config"]["Env"], config["config"]["Env"]);
    assert_eq!(berth["Config"]["Cmd"], config["config"]["Cmd"]);
}

/// A private dockerd in a temp directory: its own data and exec roots,
/// socket, config file and containerd namespace, no networking set up.
/// Dropping it stops the daemon, kills what it left running and unmounts
/// whatever it left mounted under its directory.
struct Dockerd {
    // Drop::drop runs before the fields drop: the TempDir is removed only
    // after the daemon is gone and its mounts are undone.
    child: Option<Child>,
    dir: TempDir,
    client: PathBuf,
    driver: &'static str,
}

impl Dockerd {
    fn start() -> Dockerd {
        Dockerd::start_with(&[])
    }

    /// Started with extra daemon flags (such as `--add-runtime`).
    fn start_with(extra: &[String]) -> Dockerd {
        let dockerd = peer("dockerd");
        // dockerd starts its own containerd, which starts runc.
        peer("containerd");
        peer("containerd-shim-runc-v2");
        peer("runc");
        let client = docker_client();
        let mut logs = String::new();
        for driver in ["overlay2", "vfs"] {
            match Dockerd::try_start(&dockerd, &client, driver, extra) {
                Ok(d) => return d,
                Err(log) => {
                    logs.push_str(&format!("--- dockerd --storage-driver={driver}:\n{log}\n"))
                }
            }
        }
        panic!("dockerd did not start with overlay2 nor vfs:\n{logs}");
    }

    fn try_start(
        dockerd: &Path,
        client: &Path,
        driver: &'static str,
        extra: &[String],
    ) -> Result<Dockerd, String> {
        let dir = tempfile::Builder::new()
            .prefix("berth-dockerd")
            .tempdir()
            .expect("temp dir");
        let p = |name: &str| dir.path().join(name);
        let sock = p("docker.sock");
        assert!(
            sock.as_os_str().len() < 100,
            "socket path too long for AF_UNIX: {}",
            sock.display()
        );
        // Our own config file, so the host's daemon.json (hosts, storage
        // driver, ...) cannot interfere; it puts the trust key in our
        // directory rather than /etc/docker/key.json.
        let config = serde_json::json!({ "deprecated-key-path": p("key.json") });
        fs::write(p("daemon.json"), config.to_string()).expect("write daemon.json");
        let log = File::create(p("dockerd.log")).expect("log file");
        let ns = format!("berth-test-{}", std::process::id());
        let child = Command::new(dockerd)
            .arg("--config-file")
            .arg(p("daemon.json"))
            .arg("--data-root")
            .arg(p("data"))
            .arg("--exec-root")
            .arg(p("exec"))
            .arg("--pidfile")
            .arg(p("pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .arg(format!("--storage-driver={driver}"))
            // Kept apart from a system dockerd if one shares a containerd.
            .arg(format!("--containerd-namespace={ns}"))
            .arg(format!("--containerd-plugins-namespace={ns}-plugins"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", dockerd.display()));
        let mut d = Dockerd {
            child: Some(child),
            dir,
            client: client.to_path_buf(),
            driver,
        };
        let start = Instant::now();
        loop {
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                d.child = None;
                return Err(format!("exited with {status}:\n{}", d.log()));
            }
            if sock.exists() {
                let v = d.docker(["version", "--format", "{{.Server.Version}}"]);
                if v.status.success() {
                    return Ok(d);
                }
            }
            if start.elapsed() > DOCKERD_START_TIMEOUT {
                let log = d.log();
                drop(d);
                panic!("dockerd did not answer within {DOCKERD_START_TIMEOUT:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn docker<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let sock = self.dir.path().join("docker.sock");
        run(Command::new(&self.client)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_API_VERSION")
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(args))
    }

    /// A docker command that must succeed; the daemon log is in the panic.
    fn ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.docker(args);
        if !out.status.success() {
            panic!(
                "`{}` failed ({}) [storage driver {}]\nstdout:\n{}\nstderr:\n{}\ndockerd log (tail):\n{}",
                out.what,
                out.status,
                self.driver,
                out.stdout(),
                out.stderr,
                tail(&self.log(), 40)
            );
        }
        out
    }

    fn inspect(&self, name: &str) -> Value {
        let v = self.ok(["image", "inspect", name]).json();
        v.as_array()
            .and_then(|l| l.first())
            .cloned()
            .expect("inspect object")
    }

    /// Processes (other than dockerd) whose command line names our
    /// directory: containerd, its shims. Found by id, killed by id.
    fn leftover_pids(&self) -> Vec<u32> {
        let needle = self.dir.path().as_os_str().as_encoded_bytes().to_vec();
        let me = std::process::id();
        let Ok(procs) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != me)
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| c.windows(needle.len()).any(|w| w == needle))
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Mount points at or under our directory, deepest first.
    fn mounts(&self) -> Vec<String> {
        let root = self.dir.path().to_string_lossy().into_owned();
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<String> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|p| {
                p.replace("\\040", " ")
                    .replace("\\011", "\t")
                    .replace("\\012", "\n")
                    .replace("\\134", "\\")
            })
            .filter(|p| p == &root || p.starts_with(&format!("{root}/")))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        points.dedup();
        points
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: dockerd stops its containers and containerd and
            // unmounts its data root; SIGKILL if it takes too long.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let start = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(40)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in self.leftover_pids() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        for point in self.mounts() {
            let _ = Command::new("umount")
                .args(["-R", "-l"])
                .arg(&point)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Asserts two listings are equal, showing only the lines that differ.
#[track_caller]
fn assert_same_lines(left: &str, right: &str, what: &str) {
    let l: Vec<&str> = left.lines().collect();
    let r: Vec<&str> = right.lines().collect();
    let only_l: Vec<&&str> = l.iter().filter(|x| !r.contains(x)).collect();
    let only_r: Vec<&&str> = r.iter().filter(|x| !l.contains(x)).collect();
    assert!(
        only_l.is_empty() && only_r.is_empty() && l.len() == r.len(),
        "{what}: only in the first: {only_l:?}; only in the second: {only_r:?}"
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The fields of `docker image inspect` that berth's must reproduce for an
/// image that came from docker (or went to it).
const SHARED_INSPECT_FIELDS: &[&str] = &[
    "Id",
    "RepoTags",
    "Created",
    "Author",
    "Comment",
    "DockerVersion",
    "Architecture",
    "Os",
    "Config",
    "RootFS",
    "Size",
];

/// Keys of `.Config` that belong to a container's config, not an image's:
/// dockerd 20.10 echoes what the legacy builder stored there (notably
/// "Image"); Docker deprecated them in API 1.46 and blanks or omits them
/// since (API 1.50), as berth does. Compared with these left out.
const CONTAINER_ONLY_CONFIG: &[&str] = &[
    "Hostname",
    "Domainname",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Image",
    "NetworkDisabled",
    "MacAddress",
];

fn without_container_only(config: &Value) -> Value {
    let mut config = config.clone();
    if let Some(map) = config.as_object_mut() {
        for k in CONTAINER_ONLY_CONFIG {
            map.remove(*k);
        }
    }
    config
}

impl Dockerd {
    fn assert_same_inspect(&self, docker: &Value, berth: &Value, what: &str) {
        for &field in SHARED_INSPECT_FIELDS {
            // Docker's own Size depends on its storage driver: overlay2 (the
            // default, and berth's model) counts regular files and symlink
            // targets; vfs counts regular files only.
            if field == "Size" && self.driver != "overlay2" {
                continue;
            }
            let (docker, berth) = if field == "Config" {
                (
                    without_container_only(&docker[field]),
                    without_container_only(&berth[field]),
                )
            } else {
                (docker[field].clone(), berth[field].clone())
            };
            assert_eq!(
                docker, berth,
                "{what}: image inspect .{field} differs (left: docker with {}, right: berth)",
                self.driver
            );
        }
    }
}

#[test]
fn dockerd_loads_runs_and_saves_for_berth() {
    let b = berth_with_sample_app();
    let archive = b.path("app.tar");
    b.ok([
        OsStr::new("save"),
        "-o".as_ref(),
        archive.as_os_str(),
        "sample/app:1.0".as_ref(),
    ]);

    let d = Dockerd::start();

    // docker loads berth's docker-archive, names it and runs it.
    let out = d.ok([OsStr::new("load"), "-i".as_ref(), archive.as_os_str()]);
    assert!(
        out.stdout()
            .lines()
            .any(|l| l == "Loaded image: sample/app:1.0"),
        "docker load printed:\n{}",
        out.stdout()
    );
    let out = d.ok(["run", "--rm", "--network", "none", "sample/app:1.0"]);
    assert_eq!(out.stdout(), SAMPLE_APP_OUTPUT, "stderr:\n{}", out.stderr);
    let docker = d.inspect("sample/app:1.0");
    let berth = b.inspect("sample/app:1.0");
    assert_eq!(docker["Id"], berth["Id"]);
    d.assert_same_inspect(&docker, &berth, "sample/app:1.0 loaded into docker");

    // berth loads what docker saves, into a fresh store: same image.
    let b2 = Berth::new();
    let saved = b2.path("docker-save.tar");
    d.ok([
        OsStr::new("save"),
        "-o".as_ref(),
        saved.as_os_str(),
        "sample/app:1.0".as_ref(),
    ]);
    b2.load(&saved, "sample/app:1.0");
    let berth2 = b2.inspect("sample/app:1.0");
    assert_eq!(docker["Id"], berth2["Id"]);
    d.assert_same_inspect(&docker, &berth2, "docker save of sample/app:1.0");

    // An image docker made itself, with a new file and a deleted one (a
    // whiteout in the committed layer).
    d.ok([
        "run",
        "--name",
        "berth-mod",
        "--user",
        "0",
        "--network",
        "none",
        "sample/app:1.0",
        "sh",
        "-c",
        "echo hi > /app/new && rm /app/link",
    ]);
    d.ok(["commit", "berth-mod", "sample/app:mod"]);
    d.ok(["rm", "berth-mod"]);
    let saved = b2.path("docker-save-mod.tar");
    d.ok([
        OsStr::new("save"),
        "-o".as_ref(),
        saved.as_os_str(),
        "sample/app:mod".as_ref(),
    ]);
    b2.load(&saved, "sample/app:mod");
    let docker = d.inspect("sample/app:mod");
    let berth2 = b2.inspect("sample/app:mod");
    d.assert_same_inspect(&docker, &berth2, "docker commit sample/app:mod");
    // Its top snapshot holds the new file and the deletion as an overlay
    // whiteout (a 0/0 character device).
    let lower = berth2["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .expect("LowerDir");
    let top = Path::new(lower.split(':').next().expect("a snapshot"));
    assert_eq!(
        fs::read_to_string(top.join("app/new")).expect("app/new in the top snapshot"),
        "hi\n"
    );
    let wh = fs::symlink_metadata(top.join("app/link")).expect("app/link whiteout");
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "app/link should be a 0/0 whiteout, is {:?} rdev {}",
        wh.file_type(),
        wh.rdev()
    );

    // `docker save` of two images sharing layers writes the later copies
    // of a shared layer as links to the first; berth loads both images.
    let multi = b2.path("docker-save-multi.tar");
    d.ok([
        OsStr::new("save"),
        "-o".as_ref(),
        multi.as_os_str(),
        "sample/app:1.0".as_ref(),
        "sample/app:mod".as_ref(),
    ]);
    let listing = run(Command::new("tar").arg("-tvf").arg(&multi));
    let links = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|l| l.starts_with('l') && l.contains("layer.tar -> ../"))
        .count();
    assert!(
        links > 0,
        "docker save wrote no shared layer as a link:\n{}",
        String::from_utf8_lossy(&listing.stdout)
    );
    let b3 = Berth::new();
    b3.ok([OsStr::new("load"), "-i".as_ref(), multi.as_os_str()]);
    for name in ["sample/app:1.0", "sample/app:mod"] {
        assert_eq!(d.inspect(name)["Id"], b3.inspect(name)["Id"], "{name}");
    }
    assert_eq!(
        b3.ok(["run", "--rm", "sample/app:mod", "cat", "/app/new"])
            .stdout(),
        "hi\n"
    );

    // The same files, modes and owners under Docker and under `berth run`:
    // an image docker committed with deleted files, a deleted directory
    // and a replaced (opaque) one, and one berth committed the same way.
    const CHANGES: &str = "rm /bin/vi; rm -rf /var/empty; rm -rf /app; mkdir /app; echo only > /app/only; mkdir -p /new/d; echo n > /new/f; ln /new/f /new/hl";
    const VIEW: &str =
        "find / -xdev ! -path /.dockerenv ! -path /proc ! -path /sys -exec stat -c '%n %a %u %g %F %h' {} + | sort";
    d.ok([
        "run",
        "--name",
        "berth-wh",
        "--user",
        "0",
        "--network",
        "none",
        "sample/app:1.0",
        "sh",
        "-c",
        CHANGES,
    ]);
    d.ok(["commit", "berth-wh", "sample/app:wh"]);
    d.ok(["rm", "berth-wh"]);
    let saved = b2.path("docker-save-wh.tar");
    d.ok([
        OsStr::new("save"),
        "-o".as_ref(),
        saved.as_os_str(),
        "sample/app:wh".as_ref(),
    ]);
    b2.load(&saved, "sample/app:wh");
    let under_docker = d
        .ok([
            "run",
            "--rm",
            "--network",
            "none",
            "sample/app:wh",
            "sh",
            "-c",
            VIEW,
        ])
        .stdout();
    let under_berth = b2
        .ok(["run", "--rm", "sample/app:wh", "sh", "-c", VIEW])
        .stdout();
    assert!(under_docker.contains("/app/only 644"), "{under_docker}");
    assert_same_lines(
        &under_berth,
        &under_docker,
        "docker's whiteout image seen by berth run",
    );

    b2.ok([
        "run",
        "--name",
        "berth-wh",
        "--user",
        "0",
        "sample/app:1.0",
        "sh",
        "-c",
        CHANGES,
    ]);
    b2.ok(["commit", "berth-wh", "sample/app:bwh"]);
    let saved = b2.path("berth-save-bwh.tar");
    b2.ok([
        OsStr::new("save"),
        "-o".as_ref(),
        saved.as_os_str(),
        "sample/app:bwh".as_ref(),
    ]);
    d.ok([OsStr::new("load"), "-i".as_ref(), saved.as_os_str()]);
    let docker_view = d
        .ok([
            "run",
            "--rm",
            "--network",
            "none",
            "sample/app:bwh",
            "sh",
            "-c",
            VIEW,
        ])
        .stdout();
    assert_same_lines(
        &docker_view,
        &under_docker,
        "berth's committed image run by docker",
    );
    let berth_view = b2
        .ok(["run", "--rm", "sample/app:bwh", "sh", "-c", VIEW])
        .stdout();
    assert_same_lines(
        &berth_view,
        &under_docker,
        "berth's committed image run by berth",
    );

    // Docker pulls what berth pushed to berth's registry, and runs it.
    let mut registry = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["registry", "serve", "--addr", "127.0.0.1:0", "--storage"])
        .arg(b.path("registry"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start berth registry");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(registry.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("the registry's address");
    let addr = line
        .trim()
        .strip_prefix("berth registry listening on ")
        .expect("berth registry listening on ADDR")
        .to_string();
    let pushed = format!("{addr}/sample/app:pushed");
    b.ok(["tag", "sample/app:1.0", &pushed]);
    b.ok(["push", &pushed]);
    d.ok(["pull", &pushed]);
    let out = d.ok(["run", "--rm", "--network", "none", &pushed]);
    assert_eq!(out.stdout(), SAMPLE_APP_OUTPUT, "stderr:\n{}", out.stderr);
    let _ = registry.kill();
    let _ = registry.wait();
    drop(d);
}

/// dockerd 20.10 runs containers with berth-runc (`--add-runtime`): the
/// sample image's output, detached with exec and stop, and a terminal.
#[test]
fn dockerd_runs_containers_with_berth_runc() {
    let runc = Path::new(env!("CARGO_BIN_EXE_berth")).with_file_name("berth-runc");
    assert!(
        runc.is_file(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        runc.display()
    );
    let d = Dockerd::start_with(&[format!("--add-runtime=berth={}", runc.display())]);
    d.ok([
        "load",
        "-i",
        &fixtures()
            .join("sample-app.docker-save.tar")
            .display()
            .to_string(),
    ]);
    let out = d.ok([
        "run",
        "--rm",
        "--runtime",
        "berth",
        "--network",
        "none",
        "sample/app:1.0",
    ]);
    assert_eq!(out.stdout(), SAMPLE_APP_OUTPUT, "stderr:\n{}", out.stderr);

    let id = d.ok([
        "run",
        "-d",
        "--runtime",
        "berth",
        "--network",
        "none",
        "--name",
        "bg",
        "sample/app:1.0",
        "sh",
        "-c",
        "echo started; exec sleep 100",
    ]);
    assert!(!id.stdout().trim().is_empty());
    let exec = d.ok([
        "exec",
        "bg",
        "sh",
        "-c",
        "id -u; cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert_eq!(exec.stdout(), "1234\nsleep 100 ");
    let inspect = d.ok([
        "inspect",
        "--format",
        "{{.HostConfig.Runtime}} {{.State.Running}}",
        "bg",
    ]);
    assert_eq!(inspect.stdout().trim(), "berth true");
    d.ok(["stop", "-t", "1", "bg"]);
    let state = d.ok([
        "inspect",
        "--format",
        "{{.State.Running}} {{.State.ExitCode}}",
        "bg",
    ]);
    assert_eq!(
        state.stdout().trim(),
        "false 137",
        "sleep as pid 1 ignores SIGTERM: docker kills it"
    );
    d.ok(["rm", "bg"]);
    let logs_gone = d.docker(["logs", "bg"]);
    assert!(!logs_gone.status.success());

    // -m 64m, checked from inside the container.
    let out = d.ok([
        "run",
        "--rm",
        "--runtime",
        "berth",
        "--network",
        "none",
        "-m",
        "64m",
        "sample/app:1.0",
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(out.stdout().trim(), "67108864");

    // -it: a pty through the console socket, under `script` for a terminal.
    let sock = d.dir.path().join("docker.sock");
    let cmd = format!(
        "{} -H unix://{} run --rm -it --runtime berth --network none sample/app:1.0 sh -c 'tty; echo it-ok'",
        d.client.display(),
        sock.display()
    );
    let out = run(Command::new(peer("script")).args(["-qc", &cmd, "/dev/null"]));
    let text = out.stdout();
    assert!(
        text.contains("/dev/pts/0") && text.contains("it-ok"),
        "{text:?} {}",
        out.stderr
    );
}

/// A Dockerfile whose layers need every kind of entry: files and
/// directories deleted by a later RUN (whiteouts, an opaque directory),
/// hard links, symlinks (one dangling), set-id bits, owners, USER and
/// WORKDIR.
const LAYERS_DOCKERFILE: &str = r#"FROM busybox:1.35
RUN mkdir -p /d/sub /opq /keep && echo a > /d/sub/f && echo b > /file && ln /file /hard && ln -s /file /soft && ln -s /nowhere /dangling && cp /bin/busybox /suid && chmod 4755 /suid && chmod 2750 /d && echo old > /opq/old && touch /keep/k
RUN rm -rf /d/sub /file /opq && mkdir /opq && echo new > /opq/new && rm /bin/ls && mkdir -p /home/u && chown 1000:1000 /home/u
USER 1000:1000
WORKDIR /home/u
RUN echo hi > mine && ln mine mine2 && ln -s mine mylink && id -u > whoami
USER 0
RUN chmod 700 /home/u/mine && rm /keep/k
"#;

/// What a container of that image shows: every path with its type, mode,
/// owner and link count, link targets and small files' contents.
const LAYERS_VIEW: &str = r#"pwd; cd / && busybox find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./etc/hosts -o -path ./etc/hostname -o -path ./etc/resolv.conf -o -path ./.dockerenv \) -prune -o -print | busybox sort | while read -r p; do busybox stat -c '%n %F %a %u:%g %h' "$p"; [ -L "$p" ] && echo "  -> $(busybox readlink "$p")"; case "$p" in ./hard|./opq/*|./home/u/*) [ -f "$p" ] && [ ! -L "$p" ] && echo "  = $(busybox cat "$p")";; esac; done; id"#;

impl Dockerd {
    /// `docker build` with the classic builder.
    fn build_classic(&self, dir: &Path, tag: &str) -> Output {
        let sock = self.dir.path().join("docker.sock");
        run(Command::new(&self.client)
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(["build", "-q", "-t", tag])
            .arg(dir))
    }
}

#[test]
fn berth_builds_layers_as_dockers_classic_builder_does() {
    let b = Berth::new();
    b.ok([
        OsStr::new("load"),
        "-i".as_ref(),
        fixtures().join("busybox-1.35").as_os_str(),
    ]);
    b.ok([
        "tag",
        "sha256:34bf58e478a3177ce60c5882e166493671b970307c68cf12ad89a04d67df3f23",
        "busybox:1.35",
    ]);
    let ctx = b.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), LAYERS_DOCKERFILE).unwrap();
    b.ok([
        OsStr::new("build"),
        "-q".as_ref(),
        "-t".as_ref(),
        "layers:berth".as_ref(),
        ctx.as_os_str(),
    ]);
    let view = [
        "run",
        "--rm",
        "-u",
        "0",
        "--entrypoint",
        "sh",
        "layers:berth",
        "-c",
        LAYERS_VIEW,
    ];
    let berth_view = b.ok(view).stdout();
    assert!(berth_view.starts_with("/home/u\n"), "WORKDIR: {berth_view}");
    // What the view must show, whoever built the image.
    for want in [
        // /file went in a later layer; the lower layer's inode keeps its
        // two links (as in docker's overlay2).
        "./hard regular file 644 0:0 2\n  = b\n",
        "./soft symbolic link 777 0:0 1\n  -> /file\n",
        "./dangling symbolic link 777 0:0 1\n  -> /nowhere\n",
        "./suid regular file 4755 0:0 1\n",
        "./d directory 2750 0:0",
        "./opq/new regular file 644 0:0 1\n  = new\n",
        "./home/u directory 755 1000:1000",
        // The chmod copied `mine` up, away from its hard link.
        "./home/u/mine regular file 700 1000:1000 1\n  = hi\n",
        "./home/u/mine2 regular file 644 1000:1000 2\n  = hi\n",
        "./home/u/mylink symbolic link 777 1000:1000 1\n  -> mine\n",
        "./home/u/whoami regular file 644 1000:1000 1\n  = 1000\n",
        "./keep directory",
        "uid=0 gid=0 groups=0",
    ] {
        assert!(
            berth_view.contains(want),
            "{want:?} missing from berth's image:\n{berth_view}"
        );
    }
    for gone in ["./d/sub", "./file ", "./opq/old", "./bin/ls ", "./keep/k"] {
        assert!(
            !berth_view.contains(gone),
            "{gone:?} should be deleted:\n{berth_view}"
        );
    }

    // Docker's classic builder, from the same Dockerfile and base image.
    let d = Dockerd::start();
    let base = b.path("busybox.tar");
    b.ok([
        OsStr::new("save"),
        "-o".as_ref(),
        base.as_os_str(),
        "busybox:1.35".as_ref(),
    ]);
    d.ok([OsStr::new("load"), "-i".as_ref(), base.as_os_str()]);
    let built = d.build_classic(&ctx, "layers:docker");
    assert!(
        built.status.success(),
        "docker build failed:\n{}",
        built.stderr
    );
    let docker_view = d
        .ok(view.map(|a| {
            if a == "layers:berth" {
                "layers:docker"
            } else {
                a
            }
        }))
        .stdout();
    assert_same_lines(
        &docker_view,
        &berth_view,
        "the image built by docker (left) and by berth (right)",
    );

    // And berth's image, loaded into docker, shows the same.
    let saved = b.path("layers.tar");
    b.ok([
        OsStr::new("save"),
        "-o".as_ref(),
        saved.as_os_str(),
        "layers:berth".as_ref(),
    ]);
    d.ok([OsStr::new("load"), "-i".as_ref(), saved.as_os_str()]);
    let loaded_view = d.ok(view).stdout();
    assert_same_lines(
        &loaded_view,
        &berth_view,
        "berth's image run by docker (left) and by berth (right)",
    );
    let dc = d.inspect("layers:docker");
    let bc = b.inspect("layers:berth");
    for k in ["User", "WorkingDir", "Env", "Cmd", "Entrypoint"] {
        assert_eq!(dc["Config"][k], bc["Config"][k], "Config.{k}");
    }
    assert_eq!(
        dc["RootFS"]["Layers"].as_array().map(Vec::len),
        bc["RootFS"]["Layers"].as_array().map(Vec::len),
        "one layer per RUN, as docker"
    );
}
