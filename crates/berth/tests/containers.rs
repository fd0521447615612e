//! `berth run` and the container commands, through the binary, as root,
//! with real images (the busybox fixture and the docker-built sample app),
//! checked from inside the containers.

mod util;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use util::*;

/// A store with busybox:1.35 (and, if asked, sample/app:1.0) loaded.
fn berth(sample: bool) -> Berth {
    let b = Berth::with_busybox();
    if sample {
        b.ok(&[
            "load",
            "-i",
            fixture("sample-app.docker-save.tar").to_str().unwrap(),
        ]);
    }
    b
}

/// Mounts under this store (none may outlive their containers).
fn mounts_under(b: &Berth) -> Vec<String> {
    let root = b.root.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&root))
        .map(str::to_string)
        .collect()
}

fn containers_dir(b: &Berth) -> Vec<String> {
    match fs::read_dir(b.root.join("containers")) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn the_sample_app_prints_what_it_prints_under_docker() {
    let b = berth(true);
    let out = b.ok(&["run", "--rm", "sample/app:1.0"]);
    assert_eq!(out, "built\n1234\n/app\nprod\n");
    assert!(
        containers_dir(&b).is_empty(),
        "--rm left {:?}",
        containers_dir(&b)
    );
    assert!(mounts_under(&b).is_empty(), "{:?}", mounts_under(&b));
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

#[test]
fn exit_codes_follow_docker() {
    let b = berth(false);
    let r = b.run(&["run", "--rm", "busybox:1.35", "sh", "-c", "exit 3"]);
    assert_eq!(r.code, Some(3), "{r}");
    let r = b.run(&["run", "--rm", "busybox:1.35", "nosuchcommand"]);
    assert_eq!(r.code, Some(127), "{r}");
    assert!(r.stderr.contains("executable file not found"), "{r}");
    // Not executable (procfs is mounted noexec): 126.
    let r = b.run(&["run", "--rm", "busybox:1.35", "/proc/cpuinfo"]);
    assert_eq!(r.code, Some(126), "{r}");
    let r = b.run(&["run", "--rm", "nosuch/image"]);
    assert_eq!(r.code, Some(125), "{r}");
    r.one_error_line(&["Unable to find image 'nosuch/image:latest' locally"]);
    assert!(containers_dir(&b).is_empty());
    assert!(mounts_under(&b).is_empty());
}

#[test]
fn bad_flags_are_engine_errors_and_leave_nothing() {
    let b = berth(false);
    for (args, needle) in [
        (vec!["--memory", "12q"], "invalid size"),
        (vec!["-p", "8080:80"], "bridge networking"),
        (
            vec!["--mount", "type=bind,source=/nonexistent/berth,target=/x"],
            "bind source path does not exist",
        ),
        (vec!["--cap-add", "FLY"], "unknown capability"),
        (vec!["--restart", "sometimes"], "invalid restart policy"),
        (
            vec!["--ulimit", "nofile=10:5"],
            "soft limit is above the hard limit",
        ),
        (
            vec!["--network", "bridge0"],
            "network \"bridge0\" not found",
        ),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend(args);
        a.extend(["busybox:1.35", "true"]);
        let r = b.run(&a);
        assert_eq!(r.code, Some(125), "{r}");
        r.one_error_line(&[needle]);
    }
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert!(containers_dir(&b).is_empty(), "{:?}", containers_dir(&b));
    assert!(mounts_under(&b).is_empty());
}

#[test]
fn stdin_is_piped_with_interactive() {
    let b = berth(false);
    let mut child = b
        .command(&["run", "-i", "--rm", "busybox:1.35", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    // Without -i the container's stdin is empty.
    let out = b.ok(&["run", "--rm", "busybox:1.35", "sh", "-c", "cat; echo done"]);
    assert_eq!(out, "done\n");
    // A process that writes more than it reads while its input streams in
    // (a full output pipe must not stall its input, nor the reverse).
    let input = b.path("big");
    fs::write(&input, vec![b'x'; 1 << 20]).unwrap();
    let r = b.run_with_stdin(
        &["run", "-i", "--rm", "busybox:1.35", "od", "-v", "-x"],
        fs::File::open(&input).unwrap(),
    );
    assert_eq!(r.code, Some(0));
    assert_eq!(r.stdout.lines().count(), (1 << 20) / 16 + 1);
}

#[test]
fn process_flags_env_workdir_user_hostname_entrypoint() {
    let b = berth(false);
    let env_file = b.path("env");
    fs::write(&env_file, "# comment\nFROM_FILE=yes\nB=file\n").unwrap();
    let out = b.ok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "--env-file",
        env_file.to_str().unwrap(),
        "-e",
        "B=flag",
        "-w",
        "/tmp/made",
        "-u",
        "1000:1000",
        "-h",
        "box",
        "--entrypoint",
        "sh",
        "busybox:1.35",
        "-c",
        "echo $A $B $FROM_FILE; pwd; id -u; id -g; hostname; echo $HOSTNAME; echo $PATH",
    ]);
    assert_eq!(
        out,
        "1 flag yes\n/tmp/made\n1000\n1000\nbox\nbox\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    // USER and WORKDIR of the image, and /etc/hosts with the hostname.
    let b = berth(true);
    let out = b.ok(&[
        "run",
        "--rm",
        "sample/app:1.0",
        "sh",
        "-c",
        "id -un; pwd; grep -c $(hostname) /etc/hosts",
    ]);
    assert_eq!(out, "app\n/app\n1\n");
    // A user missing from the image's /etc/passwd.
    let r = b.run(&["run", "--rm", "-u", "nobody-here", "sample/app:1.0", "true"]);
    assert_eq!(r.code, Some(125), "{r}");
    r.one_error_line(&["unable to find user nobody-here"]);
}

#[test]
fn docker_default_security_and_its_flags() {
    let b = berth(false);
    let status = |extra: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend(extra);
        a.extend(["busybox:1.35", "cat", "/proc/self/status"]);
        let out = b.ok(&a);
        let get = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("{k} missing in {out}"))
                .trim()
                .to_string()
        };
        (
            get("CapBnd:"),
            get("Seccomp:"),
            get("SigIgn:"),
            get("SigBlk:"),
            get("NoNewPrivs:"),
        )
    };
    // Docker's default capability set and seccomp filter; no signal
    // ignored or blocked (berth blocks the ones it forwards).
    assert_eq!(
        status(&[]),
        (
            "00000000a80425fb".into(),
            "2".into(),
            "0000000000000000".into(),
            "0000000000000000".into(),
            "0".into()
        )
    );
    let (cap, sc, ..) = status(&[
        "--cap-drop",
        "ALL",
        "--cap-add",
        "kill",
        "--security-opt",
        "no-new-privileges",
    ]);
    assert_eq!(cap, "0000000000000020");
    assert_eq!(sc, "2");
    assert_eq!(status(&["--security-opt", "no-new-privileges"]).4, "1");
    let (cap, sc, ..) = status(&["--privileged"]);
    assert_ne!(cap, "00000000a80425fb");
    assert_eq!(sc, "0");
    assert_eq!(status(&["--security-opt", "seccomp=unconfined"]).1, "0");
    // Masked and read-only paths.
    let out = b.ok(&[
        "run",
        "--rm",
        "busybox:1.35",
        "sh",
        "-c",
        "wc -c < /proc/keys; echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo RO",
    ]);
    assert_eq!(out, "0\nRO\n");
    // --read-only with a --tmpfs.
    let out = b.ok(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "busybox:1.35",
        "sh",
        "-c",
        "touch /x 2>/dev/null || echo RO; touch /scratch/y && echo TMPFS",
    ]);
    assert_eq!(out, "RO\nTMPFS\n");
}

#[test]
fn bind_mounts_and_limits() {
    let b = berth(false);
    let host = b.path("shared");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("in"), "from host\n").unwrap();
    let vol = format!("{}:/data", host.display());
    let out = b.ok(&[
        "run",
        "--rm",
        "-v",
        &vol,
        "busybox:1.35",
        "sh",
        "-c",
        "cat /data/in; echo from container > /data/out",
    ]);
    assert_eq!(out, "from host\n");
    assert_eq!(
        fs::read_to_string(host.join("out")).unwrap(),
        "from container\n"
    );
    let ro = format!("{}:/data:ro", host.display());
    let out = b.ok(&[
        "run",
        "--rm",
        "-v",
        &ro,
        "busybox:1.35",
        "sh",
        "-c",
        "touch /data/z 2>/dev/null || echo RO",
    ]);
    assert_eq!(out, "RO\n");
    let out = b.ok(&[
        "run",
        "--rm",
        "-m",
        "64m",
        "--pids-limit",
        "20",
        "busybox:1.35",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
         cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
    ]);
    assert_eq!(out, "67108864\n20\n");
}

fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out");
}

#[test]
fn detached_containers_logs_stop_kill_rm_wait() {
    let b = berth(false);
    let id = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "ticker",
            "-l",
            "role=test",
            "busybox:1.35",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo started; echo oops >&2; while true; do sleep 0.05; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    wait_for(|| b.ok(&["logs", "ticker"]).contains("started"));
    let r = b.run(&["logs", "ticker"]);
    assert_eq!(r.stdout, "started\n");
    assert_eq!(r.stderr, "oops\n");
    let ps = b.ok(&["ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(
        ps.contains(&id[..12]) && ps.contains("Up ") && ps.contains("ticker"),
        "{ps}"
    );
    assert_eq!(
        b.ok(&["ps", "-q", "--filter", "label=role=test"]).trim(),
        &id[..12]
    );
    assert_eq!(b.ok(&["ps", "-q", "--filter", "status=exited"]), "");
    let js: serde_json::Value =
        serde_json::from_str(b.ok(&["ps", "--format", "json"]).trim()).unwrap();
    assert_eq!(js["State"], "running");
    assert_eq!(js["Names"], "ticker");
    // rm of a running container needs -f.
    let r = b.run(&["rm", "ticker"]);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr
            .contains("Stop the container before attempting removal"),
        "{r}"
    );
    // stop: the trap runs, the exit code is recorded, the log has it.
    assert_eq!(b.ok(&["stop", "ticker"]), "ticker\n");
    let st = b.ok(&[
        "container",
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        "ticker",
    ]);
    assert_eq!(st, "exited 7\n");
    assert_eq!(b.ok(&["wait", "ticker"]), "7\n");
    assert!(b
        .ok(&["logs", "--tail", "1", "ticker"])
        .contains("got TERM"));
    assert!(b.ok(&["ps", "-a"]).contains("Exited (7)"));
    assert!(mounts_under(&b).is_empty(), "{:?}", mounts_under(&b));
    // start again (detached), then kill.
    assert_eq!(b.ok(&["start", "ticker"]), "ticker\n");
    wait_for(|| b.ok(&["logs", "ticker"]).matches("started").count() == 2);
    b.ok(&["kill", "ticker"]);
    assert_eq!(b.ok(&["wait", "ticker"]), "137\n");
    b.ok(&["rm", "ticker"]);
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert!(containers_dir(&b).is_empty());
    // rm -f of a running one.
    b.ok(&["run", "-d", "--name", "xx", "busybox:1.35", "sleep", "100"]);
    b.ok(&["rm", "-f", "xx"]);
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert!(mounts_under(&b).is_empty());
}

#[test]
fn a_killed_monitor_leaves_an_honest_exit_and_no_leftovers() {
    let b = berth(false);
    let id = b
        .ok(&["run", "-d", "busybox:1.35", "sleep", "100"])
        .trim()
        .to_string();
    let pid: i32 = b
        .ok(&["container", "inspect", "--format", "{{.State.Pid}}", &id])
        .trim()
        .parse()
        .unwrap();
    // The monitor is init's parent.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: i32 = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    Command::new("kill")
        .args(["-9", &ppid.to_string()])
        .status()
        .unwrap();
    wait_for(|| !Path::new(&format!("/proc/{ppid}")).exists());
    let ps = b.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (137)"), "{ps}");
    // The container's process is gone (at most a zombie of the host's
    // init, which reaps it in its own time).
    let state = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s[s.rfind(')').unwrap() + 2..].chars().next().unwrap())
        .unwrap_or('X');
    assert!(
        matches!(state, 'X' | 'Z'),
        "container process state {state}"
    );
    assert!(mounts_under(&b).is_empty(), "{:?}", mounts_under(&b));
    let err = b.ok(&["container", "inspect", "--format", "{{.State.Error}}", &id]);
    assert!(err.contains("monitor"), "{err}");
    assert!(!Path::new(&format!("/sys/fs/cgroup/memory/berth/{id}")).exists());
    // Its death is in the event log although its monitor never said so.
    let died = b.ok(&[
        "events",
        "--until",
        "0s",
        "--filter",
        "event=die",
        "--format",
        "{{index .Actor.Attributes \"exitCode\"}}",
    ]);
    assert_eq!(died, "137\n");
    // `restart` of the exited container says so after its start, in
    // docker's order.
    b.ok(&["restart", "-t", "0", &id]);
    let order = b.ok(&[
        "events",
        "--until",
        "0s",
        "--filter",
        &format!("container={id}"),
        "--format",
        "{{.Action}}",
    ]);
    assert!(order.ends_with("die\nstart\nrestart\n"), "{order}");
    b.ok(&["rm", "-f", &id]);
}

#[test]
fn restart_on_failure_retries_then_gives_up() {
    let b = berth(false);
    let id = b
        .ok(&[
            "run",
            "-d",
            "--restart",
            "on-failure:2",
            "busybox:1.35",
            "sh",
            "-c",
            "echo run; exit 5",
        ])
        .trim()
        .to_string();
    assert_eq!(b.ok(&["wait", &id]).trim(), "5");
    wait_for(|| {
        b.ok(&[
            "container",
            "inspect",
            "--format",
            "{{.RestartCount}} {{.State.Status}}",
            &id,
        ]) == "2 exited\n"
    });
    assert_eq!(b.ok(&["logs", &id]), "run\nrun\nrun\n");
}

#[test]
fn tty_gives_a_real_terminal_with_the_callers_window_size() {
    let b = berth(false);
    let cmd = b.command(&[
        "run",
        "--rm",
        "-it",
        "busybox:1.35",
        "sh",
        "-c",
        "tty; stty size; echo $TERM; exit 3",
    ]);
    let r = run_on_pty(cmd, 27, 91, "", b"");
    assert_eq!(r.output, "/dev/pts/0\r\n27 91\r\nxterm\r\n", "{}", r.output);
    assert_eq!(r.code, Some(3));
    // Keys typed go to an interactive shell in the container.
    let cmd = b.command(&["run", "--rm", "-it", "busybox:1.35", "sh"]);
    let r = run_on_pty(cmd, 24, 80, "# ", b"echo $((6*7))\rexit 5\r");
    assert!(r.output.contains("\r\n42\r\n"), "{:?}", r.output);
    assert_eq!(r.code, Some(5), "{:?}", r.output);
    // Detached with -t: the output, merged onto the pty, is logged.
    b.ok(&[
        "run",
        "-dt",
        "--name",
        "withtty",
        "busybox:1.35",
        "sh",
        "-c",
        "tty; echo err >&2; sleep 30",
    ]);
    wait_for(|| b.ok(&["logs", "withtty"]).contains("err"));
    assert_eq!(b.ok(&["logs", "withtty"]), "/dev/pts/0\r\nerr\r\n");
    b.ok(&["rm", "-f", "withtty"]);
    assert!(mounts_under(&b).is_empty());
}

#[test]
fn exec_runs_inside_the_running_container() {
    let b = berth(false);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "target",
        "-h",
        "box",
        "-e",
        "FROM_RUN=1",
        "busybox:1.35",
        "sh",
        "-c",
        "echo main; sleep 60; echo never",
    ]);
    // Same namespaces: hostname, pid 1 is the container's command, the
    // container's environment plus -e.
    let out = b.ok(&[
        "exec",
        "-e",
        "FROM_EXEC=2",
        "target",
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $FROM_RUN $FROM_EXEC; pwd; id -u",
    ]);
    assert_eq!(
        out,
        "box\nsh -c echo main; sleep 60; echo never \n1 2\n/\n0\n"
    );
    // -u and -w.
    let out = b.ok(&[
        "exec", "-u", "1234:55", "-w", "/dev", "target", "sh", "-c", "id; pwd",
    ]);
    // Docker lists the primary group among the groups too.
    assert_eq!(out, "uid=1234 gid=55 groups=55\n/dev\n");
    // The same capabilities as the container (Docker's default set).
    let out = b.ok(&["exec", "target", "grep", "CapEff", "/proc/self/status"]);
    assert!(out.contains("00000000a80425fb"), "{out}");
    // Exit codes: the command's own, 127 not found, 126 not executable.
    assert_eq!(
        b.run(&["exec", "target", "sh", "-c", "exit 9"]).code,
        Some(9)
    );
    let r = b.run(&["exec", "target", "nosuchcmd"]);
    assert_eq!(r.code, Some(127), "{r}");
    r.one_error_line(&["executable file not found"]);
    let r = b.run(&["exec", "target", "/proc/cpuinfo"]);
    assert_eq!(r.code, Some(126), "{r}");
    // Piped stdin with -i.
    let r = b.run_with_stdin(&["exec", "-i", "target", "cat"], {
        let p = b.path("in.txt");
        fs::write(&p, "through exec\n").unwrap();
        fs::File::open(p).unwrap()
    });
    assert_eq!(r.stdout, "through exec\n", "{r}");
    // exec -it on a terminal.
    let cmd = b.command(&["exec", "-it", "target", "sh", "-c", "tty; stty size"]);
    let r = run_on_pty(cmd, 30, 100, "", b"");
    assert_eq!(r.output, "/dev/pts/0\r\n30 100\r\n");
    // -d: started in the background, visible in top.
    b.ok(&["exec", "-d", "target", "sleep", "41"]);
    let top = b.ok(&["top", "target"]);
    assert!(top.starts_with("UID") && top.contains("PID"), "{top}");
    assert!(
        top.contains("sleep 41") && top.contains("sleep 60"),
        "{top}"
    );
    // exec output never reaches the container's log.
    assert_eq!(b.ok(&["logs", "target"]), "main\n");
    // Not running: a clear error.
    b.ok(&["stop", "-t", "0", "target"]);
    let r = b.run(&["exec", "target", "true"]);
    assert_eq!(r.code, Some(1), "{r}");
    r.one_error_line(&["is not running"]);
    b.ok(&["rm", "target"]);
}

#[test]
fn pause_unpause_rename_restart_top() {
    let b = berth(false);
    let id = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "counter",
            "busybox:1.35",
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.02; done",
        ])
        .trim()
        .to_string();
    let count_file = b.root.join("containers").join(&id).join("upper/count");
    let count = || -> u64 {
        fs::read_to_string(&count_file)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0)
    };
    wait_for(|| count() > 2);
    b.ok(&["pause", "counter"]);
    let ps = b.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(ps.contains("(Paused)"), "{ps}");
    assert_eq!(b.inspect_container("counter")["State"]["Status"], "paused");
    let frozen = count();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(), frozen, "a paused container kept running");
    let r = b.run(&["exec", "counter", "true"]);
    r.one_error_line(&["is paused"]);
    let r = b.run(&["pause", "counter"]);
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("already paused"), "{r}");
    b.ok(&["unpause", "counter"]);
    wait_for(|| count() > frozen);
    // rename: the new name works, the old one is gone, a taken name is
    // refused.
    b.ok(&["rename", "counter", "tally"]);
    assert_eq!(b.ok(&["ps", "--format", "{{.Names}}"]), "tally\n");
    assert_ne!(b.run(&["top", "counter"]).code, Some(0));
    b.ok(&["create", "--name", "other", "busybox:1.35", "true"]);
    let r = b.run(&["rename", "tally", "other"]);
    r.one_error_line(&["is already in use"]);
    // top lists the container's processes with ps's columns.
    let pid = b.inspect_container("tally")["State"]["Pid"]
        .as_i64()
        .unwrap();
    let top = b.ok(&["top", "tally", "-o", "pid,comm"]);
    let mut lines = top.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    assert!(top.contains(&format!("{pid} sh")), "{top}");
    // restart: a new process, the same container.
    b.ok(&["restart", "-t", "1", "tally"]);
    let pid2 = b.inspect_container("tally")["State"]["Pid"]
        .as_i64()
        .unwrap();
    assert_ne!(pid, pid2);
    assert_eq!(b.inspect_container("tally")["State"]["Status"], "running");
    b.ok(&["pause", "tally"]);
    // A paused container can still be removed with -f.
    b.ok(&["rm", "-f", "tally", "other"]);
    assert!(mounts_under(&b).is_empty());
    assert!(containers_dir(&b).is_empty());
}

#[test]
fn diff_and_commit_carry_additions_changes_and_deletions() {
    let b = berth(true);
    // The sample app's /app is a directory of the image: replacing it
    // makes an opaque directory; /bin/vi and /var/empty are deleted.
    b.ok(&[
        "run",
        "--name",
        "changed",
        "-u",
        "0",
        "sample/app:1.0",
        "sh",
        "-c",
        "rm /bin/vi; rm -rf /var/empty; echo more >> /etc/passwd; mkdir /new; echo n > /new/f; ln /new/f /new/hl; ln -s f /new/sl; rm -rf /app; mkdir /app; echo only > /app/only",
    ]);
    let diff = b.ok(&["diff", "changed"]);
    let lines: Vec<&str> = diff.lines().collect();
    for want in [
        "C /app",
        "A /app/only",
        "C /bin",
        "D /bin/vi",
        "C /etc",
        "C /etc/passwd",
        "A /new",
        "A /new/f",
        "A /new/hl",
        "A /new/sl",
        "C /var",
        "D /var/empty",
    ] {
        assert!(lines.contains(&want), "{want:?} missing from diff:\n{diff}");
    }
    // Mount points berth adds (init layer) never show.
    assert!(
        !diff.contains("/etc/hosts") && !diff.contains("/proc"),
        "{diff}"
    );
    let id = b
        .ok(&[
            "commit",
            "-m",
            "trimmed",
            "-a",
            "tester",
            "-c",
            "ENV STAGE=committed",
            "changed",
            "sample/app:changed",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let img = b.inspect("sample/app:changed");
    assert_eq!(img["Id"], id.as_str());
    assert_eq!(img["Author"], "tester");
    assert_eq!(img["Config"]["User"], "0");
    let env = img["Config"]["Env"].to_string();
    assert!(
        env.contains("STAGE=committed") && env.contains("APP_MODE=prod"),
        "{env}"
    );
    let hist = b.ok(&["history", "--no-trunc", "sample/app:changed"]);
    assert!(hist.lines().nth(1).unwrap().contains("trimmed"), "{hist}");
    // The new image shows exactly the changed view.
    let view = b.ok(&[
        "run",
        "--rm",
        "sample/app:changed",
        "sh",
        "-c",
        "ls /app; ls /bin/vi /var/empty 2>&1; tail -1 /etc/passwd; cat /new/hl; readlink /new/sl; stat -c %h /new/f; echo $STAGE",
    ]);
    assert_eq!(
        view,
        "only\nls: /bin/vi: No such file or directory\nls: /var/empty: No such file or directory\nmore\nn\nf\n2\ncommitted\n"
    );
    // Its layer is an OCI layer: whiteouts as .wh. files, the opaque
    // marker in /app.
    let out = b.path("changed.tar");
    b.ok(&["save", "-o", out.to_str().unwrap(), "sample/app:changed"]);
    let manifest_dir = b.path("saved");
    fs::create_dir(&manifest_dir).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&out)
        .arg("-C")
        .arg(&manifest_dir)
        .status()
        .unwrap();
    assert!(st.success());
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(manifest_dir.join("manifest.json")).unwrap()).unwrap();
    let top = m[0]["Layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap();
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(manifest_dir.join(top))
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    for want in [
        "bin/.wh.vi",
        "var/.wh.empty",
        "app/.wh..wh..opq",
        "app/only",
        "new/hl",
    ] {
        assert!(
            names.lines().any(|l| l == want),
            "{want} not in the layer:\n{names}"
        );
    }
    b.ok(&["rm", "changed"]);
}

#[test]
fn cp_both_ways_running_and_stopped_and_never_outside() {
    let b = berth(false);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "busybox:1.35",
        "sh",
        "-c",
        "mkdir -p /d/sub; echo a > /d/a; echo b > /d/sub/b; ln -s a /d/link; chown 5:6 /d/a; ln -s / /escape; touch /ready; sleep 60",
    ]);
    let ready = || b.run(&["exec", "box", "test", "-e", "/ready"]).code == Some(0);
    wait_for(ready);
    let host = b.path("host");
    fs::create_dir(&host).unwrap();
    let h = |p: &str| host.join(p).to_str().unwrap().to_string();
    // Out: a file to a new name, a directory to a new name, into an
    // existing directory, its contents only (/.), a symlink as is and
    // followed (-L); owners become the caller's.
    b.ok(&["cp", "box:/d/a", &h("a.txt")]);
    assert_eq!(fs::read_to_string(host.join("a.txt")).unwrap(), "a\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(host.join("a.txt")).unwrap().uid(), 0);
    b.ok(&["cp", "box:/d", &h("copy")]);
    assert_eq!(fs::read_to_string(host.join("copy/sub/b")).unwrap(), "b\n");
    fs::create_dir(host.join("into")).unwrap();
    b.ok(&["cp", "box:/d", &h("into")]);
    assert!(host.join("into/d/sub/b").exists());
    fs::create_dir(host.join("merge")).unwrap();
    b.ok(&["cp", "box:/d/.", &h("merge")]);
    assert!(host.join("merge/sub/b").exists() && !host.join("merge/d").exists());
    b.ok(&["cp", "box:/d/link", &h("link")]);
    assert_eq!(fs::read_link(host.join("link")).unwrap(), Path::new("a"));
    b.ok(&["cp", "-L", "box:/d/link", &h("followed")]);
    assert_eq!(fs::read_to_string(host.join("followed")).unwrap(), "a\n");
    // In: root owns what is copied unless -a; into a directory, to a new
    // name, and a tar stream from stdin.
    fs::write(host.join("in.txt"), "in\n").unwrap();
    rustix::fs::chown(
        host.join("in.txt").as_path(),
        Some(rustix::fs::Uid::from_raw(7)),
        Some(rustix::fs::Gid::from_raw(8)),
    )
    .unwrap();
    b.ok(&["cp", &h("in.txt"), "box:/d/sub/"]);
    b.ok(&["cp", "-a", &h("in.txt"), "box:/d/kept.txt"]);
    assert_eq!(
        b.ok(&[
            "exec",
            "box",
            "stat",
            "-c",
            "%n %u:%g",
            "/d/sub/in.txt",
            "/d/kept.txt"
        ]),
        "/d/sub/in.txt 0:0\n/d/kept.txt 7:8\n"
    );
    let tar = b.path("stream.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&host)
        .arg("in.txt")
        .status()
        .unwrap();
    assert!(st.success());
    let r = b.run_with_stdin(&["cp", "-", "box:/d/sub"], fs::File::open(&tar).unwrap());
    assert_eq!(r.code, Some(0), "{r}");
    // A tar stream out.
    let out = b.command(&["cp", "box:/d/sub", "-"]).output().unwrap();
    let listed = Command::new("tar")
        .arg("-t")
        .stdin({
            fs::write(b.path("out.tar"), &out.stdout).unwrap();
            fs::File::open(b.path("out.tar")).unwrap()
        })
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "sub/\nsub/b\nsub/in.txt\n"
    );
    // Errors, as docker words them; nothing written.
    let r = b.run(&["cp", "box:/nope", &h("x")]);
    r.one_error_line(&["Could not find the file /nope in container box"]);
    let r = b.run(&["cp", "box:/d/a", &h("missing/")]);
    r.one_error_line(&["must exist"]);
    let r = b.run(&["cp", &host.to_string_lossy(), "box:/d/a"]);
    r.one_error_line(&["cannot copy a directory to a file"]);
    // A symlink to / inside the container stays inside it.
    b.ok(&["cp", &h("in.txt"), "box:/escape/d/"]);
    assert!(!Path::new("/d/in.txt").exists());
    assert_eq!(b.ok(&["exec", "box", "cat", "/d/in.txt"]), "in\n");
    // What lands on the host is data: no set-id bits, no device nodes;
    // whiteout-like names are plain files; a relative link may climb.
    b.ok(&[
        "exec", "box", "sh", "-c",
        "mkdir /odd && cp /bin/busybox /odd/suid && chmod 4755 /odd/suid && echo w > /odd/.wh.keep && mknod /odd/null c 1 3 && ln -s ../d/a /odd/up",
    ]);
    b.ok(&["cp", "box:/odd", &h("odd")]);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(host.join("odd/suid"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "{mode:o}");
    assert_eq!(
        fs::read_to_string(host.join("odd/.wh.keep")).unwrap(),
        "w\n"
    );
    assert!(!host.join("odd/null").exists());
    assert_eq!(
        fs::read_link(host.join("odd/up")).unwrap(),
        Path::new("../d/a")
    );
    // A file never replaces a directory.
    fs::create_dir_all(host.join("clash/a")).unwrap();
    let r = b.run(&["cp", "box:/d/.", &h("clash")]);
    r.one_error_line(&["cannot overwrite directory with non-directory"]);
    // A stopped container, both ways.
    b.ok(&["stop", "-t", "0", "box"]);
    b.ok(&["cp", &h("in.txt"), "box:/while-stopped"]);
    b.ok(&["cp", "box:/d/sub/b", &h("b-stopped")]);
    assert_eq!(fs::read_to_string(host.join("b-stopped")).unwrap(), "b\n");
    assert!(mounts_under(&b).is_empty(), "{:?}", mounts_under(&b));
    b.ok(&["start", "box"]);
    assert_eq!(b.ok(&["exec", "box", "cat", "/while-stopped"]), "in\n");
    b.ok(&["rm", "-f", "box"]);
}

#[test]
fn named_and_anonymous_volumes() {
    let b = berth(false);
    assert_eq!(
        b.ok(&["volume", "create", "--label", "k=v", "data"]),
        "data\n"
    );
    // Data outlives the container; :ro is enforced.
    b.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        "busybox:1.35",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    let r = b.run(&[
        "run",
        "--rm",
        "-v",
        "data:/data:ro",
        "busybox:1.35",
        "sh",
        "-c",
        "cat /data/f; echo no > /data/g",
    ]);
    assert_eq!(r.stdout, "kept\n");
    assert!(r.stderr.contains("Read-only file system"), "{r}");
    // A new volume over a directory of the image starts as its copy, and
    // only once (the volume's own content wins afterwards).
    let n = b.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,source=bins,target=/bin",
        "busybox:1.35",
        "sh",
        "-c",
        "rm /bin/vi; ls /bin | wc -l",
    ]);
    let again = b.ok(&[
        "run",
        "--rm",
        "-v",
        "bins:/bin",
        "busybox:1.35",
        "sh",
        "-c",
        "ls /bin | wc -l",
    ]);
    assert_eq!(n, again);
    assert!(n.trim().parse::<u32>().unwrap() > 200, "{n}");
    // ls, filters, inspect.
    let ls = b.ok(&["volume", "ls"]);
    assert!(
        ls.starts_with("DRIVER") && ls.contains("data") && ls.contains("bins"),
        "{ls}"
    );
    assert_eq!(
        b.ok(&["volume", "ls", "-q", "--filter", "label=k=v"]),
        "data\n"
    );
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["volume", "inspect", "data"])).unwrap();
    assert_eq!(v[0]["Name"], "data");
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(v[0]["Labels"]["k"], "v");
    assert!(v[0]["Mountpoint"]
        .as_str()
        .unwrap()
        .ends_with("volumes/data/_data"));
    // In use: rm refused, even for a stopped container.
    b.ok(&[
        "create",
        "--name",
        "user",
        "-v",
        "data:/data",
        "busybox:1.35",
        "true",
    ]);
    let r = b.run(&["volume", "rm", "data"]);
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("volume is in use"), "{r}");
    assert_eq!(
        b.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]),
        "bins\n"
    );
    // `berth inspect` finds containers, images and volumes; Mounts lists
    // the volume.
    let c: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "user"])).unwrap();
    assert_eq!(c[0]["Name"], "/user");
    assert_eq!(c[0]["Mounts"][0]["Type"], "volume");
    assert_eq!(c[0]["Mounts"][0]["Name"], "data");
    assert_eq!(c[0]["Mounts"][0]["Destination"], "/data");
    let i: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "busybox:1.35"])).unwrap();
    assert!(i[0]["RootFS"].is_object(), "{i}");
    assert_eq!(
        b.ok(&[
            "inspect",
            "--type",
            "volume",
            "--format",
            "{{.Name}}",
            "data"
        ]),
        "data\n"
    );
    let r = b.run(&["inspect", "--type", "image", "user"]);
    r.one_error_line(&["No such object: user"]);
    b.ok(&["rm", "user"]);
    // Anonymous volumes: -v /path; removed by rm -v and by --rm, kept by
    // plain rm until prune.
    b.ok(&[
        "run",
        "--name",
        "anon",
        "-v",
        "/scratch",
        "busybox:1.35",
        "true",
    ]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]).lines().count(), 3);
    b.ok(&["rm", "-v", "anon"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]).lines().count(), 2);
    b.ok(&["run", "--rm", "-v", "/scratch", "busybox:1.35", "true"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]).lines().count(), 2);
    b.ok(&[
        "run",
        "--name",
        "anon2",
        "-v",
        "/scratch",
        "busybox:1.35",
        "true",
    ]);
    b.ok(&["rm", "anon2"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]).lines().count(), 3);
    let pruned = b.ok(&["volume", "prune", "-f"]);
    assert!(pruned.starts_with("Deleted Volumes:"), "{pruned}");
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "bins\ndata\n");
    b.ok(&["volume", "prune", "-af"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "");
    assert!(!b.root.join("volumes/data").exists());
    // Bad names and drivers.
    let r = b.run(&["volume", "create", "a/b"]);
    r.one_error_line(&["invalid characters for a local volume name"]);
    let r = b.run(&["volume", "create", "-d", "nfs", "x1"]);
    r.one_error_line(&["local driver only"]);
}

#[test]
fn init_reaps_orphans_and_forwards_signals() {
    let b = berth(false);
    // An orphan (the subshell's sleep) is reparented to pid 1: with --init
    // it is reaped; with sleep itself as pid 1 it stays a zombie.
    let cmd = "(sleep 0.05 &); exec sleep 60";
    b.ok(&[
        "run",
        "-d",
        "--name",
        "with",
        "--init",
        "busybox:1.35",
        "sh",
        "-c",
        cmd,
    ]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "without",
        "busybox:1.35",
        "sh",
        "-c",
        cmd,
    ]);
    std::thread::sleep(Duration::from_millis(400));
    let with = b.ok(&["exec", "with", "ps", "-o", "pid,stat,comm"]);
    let without = b.ok(&["exec", "without", "ps", "-o", "pid,stat,comm"]);
    assert!(with.contains("    1 S    init"), "{with}");
    assert!(!with.contains(" Z "), "{with}");
    assert!(without.contains(" Z "), "{without}");
    // SIGTERM reaches the command (no longer pid 1, so it dies of it): the
    // stop is quick and the exit is 143, as under docker --init.
    let t = std::time::Instant::now();
    b.ok(&["stop", "with"]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(b.inspect_container("with")["State"]["ExitCode"], 143);
    // The command's exit code and 127 pass through.
    let r = b.run(&[
        "run",
        "--rm",
        "--init",
        "busybox:1.35",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(r.code, Some(7));
    let r = b.run(&["run", "--rm", "--init", "busybox:1.35", "nosuchcmd"]);
    assert_eq!(r.code, Some(127), "{r}");
    b.ok(&["rm", "-f", "with", "without"]);
}

#[test]
fn health_checks_from_the_image_and_the_flags() {
    let b = berth(true);
    // The sample image's HEALTHCHECK (test -f /app/artifact), checked more
    // often than its 5 s.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "fine",
        "--health-interval",
        "100ms",
        "sample/app:1.0",
        "sleep",
        "60",
    ]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "sick",
        "--health-cmd",
        "echo failing; exit 1",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "busybox:1.35",
        "sleep",
        "60",
    ]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-timeout",
        "150ms",
        "--health-interval",
        "100ms",
        "--health-retries",
        "1",
        "busybox:1.35",
        "sleep",
        "60",
    ]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "none",
        "--no-healthcheck",
        "sample/app:1.0",
        "sleep",
        "60",
    ]);
    let status = |n: &str| {
        b.ok(&[
            "ps",
            "--filter",
            &format!("name={n}"),
            "--format",
            "{{.Status}}",
        ])
    };
    wait_for(|| status("fine").contains("(healthy)"));
    wait_for(|| status("sick").contains("(unhealthy)"));
    wait_for(|| status("slow").contains("(unhealthy)"));
    assert!(!status("none").contains("health"), "{}", status("none"));
    assert_eq!(
        b.ok(&[
            "ps",
            "--filter",
            "health=unhealthy",
            "--format",
            "{{.Names}}"
        ]),
        "slow\nsick\n"
    );
    let h = &b.inspect_container("sick")["State"]["Health"];
    assert_eq!(h["Status"], "unhealthy");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    let log = h["Log"].as_array().unwrap();
    assert!(!log.is_empty() && log.len() <= 5, "{h}");
    assert_eq!(log[0]["ExitCode"], 1);
    assert_eq!(log[0]["Output"], "failing\n");
    let h = &b.inspect_container("slow")["State"]["Health"];
    assert_eq!(
        h["Log"][0]["Output"], "Health check exceeded timeout (150ms)",
        "{h}"
    );
    assert!(b.inspect_container("none")["State"]["Health"].is_null());
    let r = b.run(&["run", "--health-interval", "5", "busybox:1.35", "true"]);
    assert_eq!(r.code, Some(125));
    r.one_error_line(&["--health-interval"]);
    b.ok(&["rm", "-f", "fine", "sick", "slow", "none"]);
}

#[test]
fn json_file_logs_rotate_and_none_keeps_no_log() {
    let b = berth(false);
    let id = b
        .ok(&[
            "run",
            "--name",
            "chatty",
            "--log-opt",
            "max-size=2k",
            "--log-opt",
            "max-file=3",
            "busybox:1.35",
            "sh",
            "-c",
            "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done",
        ])
        .lines()
        .count();
    assert_eq!(id, 300, "the foreground output is complete");
    let dir = b
        .root
        .join("containers")
        .join(b.inspect_container("chatty")["Id"].as_str().unwrap());
    for f in ["container.log", "container.log.1", "container.log.2"] {
        let len = fs::metadata(dir.join(f)).unwrap().len();
        assert!(len > 0 && len <= 2048, "{f}: {len}");
    }
    assert!(!dir.join("container.log.3").exists());
    let logs = b.ok(&["logs", "chatty"]);
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(*lines.last().unwrap(), "line 299");
    assert!(lines.len() < 300 && lines.len() > 30, "{}", lines.len());
    // In order, with no gaps, from the oldest kept line.
    let first: usize = lines[0].strip_prefix("line ").unwrap().parse().unwrap();
    for (k, l) in lines.iter().enumerate() {
        assert_eq!(*l, format!("line {}", first + k));
    }
    assert_eq!(
        b.ok(&["logs", "--tail", "2", "chatty"]),
        "line 298\nline 299\n"
    );
    // --log-driver none: output still reaches the terminal, no log kept.
    let out = b.ok(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "busybox:1.35",
        "echo",
        "hi",
    ]);
    assert_eq!(out, "hi\n");
    let r = b.run(&["logs", "quiet"]);
    r.one_error_line(&["does not support reading"]);
    let r = b.run(&["run", "--log-opt", "max-size=0", "busybox:1.35", "true"]);
    assert_eq!(r.code, Some(125));
    let r = b.run(&["run", "--log-driver", "syslog", "busybox:1.35", "true"]);
    r.one_error_line(&["logging driver \"syslog\" is not available"]);
    b.ok(&["rm", "chatty", "quiet"]);
}

#[test]
fn attach_to_detached_containers() {
    let b = berth(false);
    // Output as it comes, stdout and stderr apart; the container's exit
    // code at the end.
    b.ok(&[
        "run", "-d", "--name", "talker", "busybox:1.35", "sh", "-c",
        "sleep 0.3; i=0; while [ $i -lt 3 ]; do echo out $i; echo err $i >&2; i=$((i+1)); sleep 0.1; done; exit 3",
    ]);
    let r = b.run(&["attach", "talker"]);
    assert_eq!(r.code, Some(3), "{r}");
    assert_eq!(r.stdout, "out 0\nout 1\nout 2\n");
    assert_eq!(r.stderr, "err 0\nerr 1\nerr 2\n");
    // -i keeps stdin open for whoever attaches.
    b.ok(&[
        "run",
        "-di",
        "--name",
        "reader",
        "busybox:1.35",
        "sh",
        "-c",
        "while read l; do echo got $l; [ \"$l\" = quit ] && exit 4; done",
    ]);
    let input = b.path("input");
    fs::write(&input, "hello\nquit\n").unwrap();
    let r = b.run_with_stdin(&["attach", "reader"], fs::File::open(&input).unwrap());
    assert_eq!(r.code, Some(4), "{r}");
    assert_eq!(r.stdout, "got hello\ngot quit\n");
    // With a terminal: typed keys reach the shell; ctrl-p ctrl-q detaches
    // and leaves it running.
    b.ok(&["run", "-dit", "--name", "shell", "busybox:1.35", "sh"]);
    let cmd = b.command(&["attach", "shell"]);
    let r = run_on_pty_steps(
        cmd,
        24,
        80,
        &[("", b"echo $((6*7))\r"), ("42", b"\x10\x11")],
    );
    assert!(r.output.contains("42"), "{:?}", r.output);
    assert_eq!(r.code, Some(0), "{:?}", r.output);
    assert_eq!(b.inspect_container("shell")["State"]["Status"], "running");
    // Not running: a clear error.
    b.ok(&["stop", "-t", "0", "shell"]);
    let r = b.run(&["attach", "shell"]);
    r.one_error_line(&["You cannot attach to a stopped container, start it first"]);
    b.ok(&["rm", "talker", "reader", "shell"]);
}

#[test]
fn restart_policies_stop_signal_timeout_cpus_and_start_attach() {
    let b = berth(false);
    let restarts = |n: &str| b.inspect_container(n)["RestartCount"].as_i64().unwrap_or(0);
    // always (even after exit 0) and unless-stopped restart until stopped;
    // a stop ends it for good.
    for policy in ["always", "unless-stopped"] {
        b.ok(&[
            "run",
            "-d",
            "--name",
            policy,
            "--restart",
            policy,
            "busybox:1.35",
            "sh",
            "-c",
            "echo run; exit 0",
        ]);
        wait_for(|| restarts(policy) >= 2);
        // A start while its monitor restarts it: nothing new, no second
        // monitor.
        assert_eq!(b.ok(&["start", policy]), format!("{policy}\n"));
        let root = b.root.to_string_lossy().into_owned();
        let starters = fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&root) && c.contains(" start "))
            .count();
        assert_eq!(starters, 0, "a second monitor stayed");
        b.ok(&["stop", "-t", "1", policy]);
        let after = restarts(policy);
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(restarts(policy), after, "{policy} restarted after stop");
        assert_eq!(b.inspect_container(policy)["State"]["Status"], "exited");
        assert!(b.ok(&["logs", policy]).lines().count() >= 3);
    }
    // --stop-signal: stop sends it (here the container exits 0 on USR1).
    b.ok(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "USR1",
        "busybox:1.35",
        "sh",
        "-c",
        "trap 'echo got USR1; exit 0' USR1; echo ready; while true; do sleep 0.05; done",
    ]);
    wait_for(|| b.ok(&["logs", "usr1"]).contains("ready"));
    b.ok(&["stop", "usr1"]);
    assert_eq!(b.ok(&["logs", "usr1"]), "ready\ngot USR1\n");
    assert_eq!(b.inspect_container("usr1")["State"]["ExitCode"], 0);
    // --stop-timeout: a process that ignores SIGTERM is killed after it.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "--stop-timeout",
        "1",
        "busybox:1.35",
        "sh",
        "-c",
        "trap '' TERM; echo ready; while true; do sleep 0.05; done",
    ]);
    wait_for(|| b.ok(&["logs", "stubborn"]).contains("ready"));
    let t = std::time::Instant::now();
    b.ok(&["stop", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(b.inspect_container("stubborn")["State"]["ExitCode"], 137);
    // --cpus: the CFS quota the container sees.
    let out = b.ok(&[
        "run", "--rm", "--cpus", "0.5", "busybox:1.35", "sh", "-c",
        "cat /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max",
    ]);
    assert_eq!(out, "50000\n");
    // start -a -i on a created container: attached, stdin through.
    b.ok(&[
        "create",
        "-i",
        "--name",
        "later",
        "busybox:1.35",
        "sh",
        "-c",
        "cat; exit 6",
    ]);
    let input = b.path("in");
    fs::write(&input, "through start\n").unwrap();
    let r = b.run_with_stdin(&["start", "-ai", "later"], fs::File::open(&input).unwrap());
    assert_eq!(r.code, Some(6), "{r}");
    assert_eq!(r.stdout, "through start\n");
    b.ok(&[
        "rm",
        "always",
        "unless-stopped",
        "usr1",
        "stubborn",
        "later",
    ]);
}

#[test]
fn rm_containers_answer_stop_wait_and_attach() {
    let b = berth(false);
    // stop of a --rm container: it stops, is removed, and stop succeeds.
    b.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "gone",
        "busybox:1.35",
        "sleep",
        "60",
    ]);
    assert_eq!(b.ok(&["stop", "-t", "0", "gone"]), "gone\n");
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    // wait and attach get the exit code of a --rm container.
    let id = b
        .ok(&[
            "run",
            "-d",
            "--rm",
            "busybox:1.35",
            "sh",
            "-c",
            "sleep 0.3; exit 5",
        ])
        .trim()
        .to_string();
    let r = b.run(&["wait", &id]);
    assert_eq!(r.stdout, "5\n", "{r}");
    b.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "att",
        "busybox:1.35",
        "sh",
        "-c",
        "sleep 0.3; echo bye; exit 6",
    ]);
    let r = b.run(&["attach", "att"]);
    assert_eq!(r.code, Some(6), "{r}");
    assert_eq!(r.stdout, "bye\n");
    // stop -t -1 waits for as long as it takes (here, the trap's exit).
    b.ok(&[
        "run",
        "-d",
        "--name",
        "slowstop",
        "busybox:1.35",
        "sh",
        "-c",
        "trap 'sleep 1; exit 0' TERM; echo ready; while true; do sleep 0.05; done",
    ]);
    wait_for(|| b.ok(&["logs", "slowstop"]).contains("ready"));
    b.ok(&["stop", "-t", "-1", "slowstop"]);
    assert_eq!(b.inspect_container("slowstop")["State"]["ExitCode"], 0);
    b.ok(&["rm", "slowstop"]);
}

/// Loopback is up in a container's own network namespace, as Docker has
/// it in every mode (`--network none` included): 127.0.0.1 answers.
#[test]
fn network_none_has_loopback_up() {
    let b = berth(false);
    for net in [None, Some("none")] {
        let mut args = vec!["run", "--rm"];
        if let Some(n) = net {
            args.extend(["--network", n]);
        }
        args.extend([
            "busybox:1.35",
            "sh",
            "-c",
            "cat /sys/class/net/lo/flags; ping -c 1 -W 2 127.0.0.1 >/dev/null && echo PING-OK",
        ]);
        let out = b.ok(&args);
        let flags =
            u32::from_str_radix(out.lines().next().unwrap().trim_start_matches("0x"), 16).unwrap();
        assert_eq!(flags & 1, 1, "{net:?}: lo is down: {out}");
        assert!(out.contains("PING-OK"), "{net:?}: {out}");
    }
}

/// `--network bridge` (and docker's `default`) is refused with exit 125
/// until berth has bridge networking, rather than silently meaning none.
#[test]
fn network_bridge_is_refused_until_it_exists() {
    let b = berth(false);
    for net in ["bridge", "default"] {
        let r = b.run(&["run", "--rm", "--network", net, "busybox:1.35", "true"]);
        assert_eq!(r.code, Some(125), "{r}");
        r.one_error_line(&["not available yet"]);
    }
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert!(containers_dir(&b).is_empty());
}

/// A container the kernel's OOM killer ends shows `OOMKilled: true` (read
/// from its memory cgroup at exit); one that exits on its own does not.
#[test]
fn oom_killed_is_read_from_the_cgroup() {
    let b = berth(false);
    // A shell variable doubled until the 16 MiB limit is hit.
    let r = b.run(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "busybox:1.35",
        "sh",
        "-c",
        "x=xxxxxxxxxxxxxxxx; while true; do x=$x$x; done",
    ]);
    assert_eq!(r.code, Some(137), "{r}");
    assert_eq!(
        b.ok(&["inspect", "--format", "{{.State.OOMKilled}}", "hog"])
            .trim(),
        "true"
    );
    b.ok(&["run", "--name", "calm", "-m", "16m", "busybox:1.35", "true"]);
    assert_eq!(
        b.ok(&["inspect", "--format", "{{.State.OOMKilled}}", "calm"])
            .trim(),
        "false"
    );
    // The event log has the OOM kill before the death, for the hog only.
    let events = |name: &str, format: &str, extra: &[&str]| {
        let filter = format!("container={name}");
        let mut args = vec![
            "events", "--until", "0s", "--filter", &filter, "--format", format,
        ];
        args.extend(extra);
        b.ok(&args)
    };
    assert_eq!(
        events("hog", "{{.Action}}", &[]),
        "create\nstart\noom\ndie\n"
    );
    assert_eq!(events("calm", "{{.Action}}", &[]), "create\nstart\ndie\n");
    let code = "{{index .Actor.Attributes \"exitCode\"}}";
    assert_eq!(events("hog", code, &["--filter", "event=die"]), "137\n");
    assert_eq!(events("calm", code, &["--filter", "event=die"]), "0\n");
    b.ok(&["rm", "hog", "calm"]);
}

/// `berth events`: containers' create, start, die, destroy (with docker's
/// attributes), images' tag, untag and delete, volumes' create and
/// destroy; filters by type, event and container; `--since`; JSON lines;
/// and followed live until the reader goes away.
#[test]
fn events_record_what_happened_and_follow_new_ones() {
    let b = berth(false);
    let since = chrono_now(&b);
    b.ok(&[
        "run",
        "--rm",
        "--name",
        "brief",
        "-l",
        "team=x",
        "busybox:1.35",
        "true",
    ]);
    b.ok(&["tag", "busybox:1.35", "mine:1"]);
    b.ok(&["rmi", "mine:1"]);
    b.ok(&["volume", "create", "vol1"]);
    b.ok(&["volume", "rm", "vol1"]);
    let all = b.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    assert_eq!(
        all,
        "container create\ncontainer start\ncontainer die\ncontainer destroy\n\
         image tag\nimage untag\nvolume create\nvolume destroy\n"
    );
    let js = b.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "event=start",
        "--format",
        "json",
    ]);
    let e: serde_json::Value = serde_json::from_str(js.trim()).unwrap();
    assert_eq!(e["Type"], "container");
    assert_eq!(e["status"], "start");
    assert_eq!(e["from"], "busybox:1.35");
    assert_eq!(e["Actor"]["Attributes"]["name"], "brief");
    assert_eq!(e["Actor"]["Attributes"]["team"], "x");
    assert_eq!(e["id"].as_str().unwrap().len(), 64);
    let plain = b.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "type=volume",
    ]);
    assert!(
        plain
            .lines()
            .next()
            .unwrap()
            .ends_with(" volume create vol1 (driver=local)"),
        "{plain}"
    );
    // Docker's Go field names in templates, and image filters with or
    // without the tag.
    let go = b.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "event=create",
        "--filter",
        "type=container",
        "--format",
        "Type={{.Type}} Status={{.Status}} From={{.From}}",
    ]);
    assert_eq!(go, "Type=container Status=create From=busybox:1.35\n");
    let by_image = b.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "image=busybox",
        "--filter",
        "event=start",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    assert_eq!(by_image, "brief\n");
    let r = b.run(&["events", "--filter", "colour=red", "--until", "0s"]);
    assert!(!r.success(), "{r}");
    // Followed: a new start reaches a reader that is waiting.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut follower = Reaped(
        b.command(&[
            "events",
            "--filter",
            "event=start",
            "--format",
            "{{.Actor.Attributes.name}}",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    b.ok(&["run", "--rm", "--name", "later", "busybox:1.35", "true"]);
    // Only what happened after it started (no --since): "later", not "brief".
    let mut line = String::new();
    let mut out = std::io::BufReader::new(follower.0.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "later\n");
}

/// Now, as `--since` takes it (Unix seconds and nanoseconds).
fn chrono_now(_b: &Berth) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

/// Runs `berth ARGS` and waits at most `limit`; None if it had to be
/// killed (it hung).
fn run_within(b: &Berth, args: &[&str], limit: Duration) -> Option<std::process::ExitStatus> {
    let mut child = b
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `berth commit` killed with SIGKILL at random moments (while it has
/// the container frozen, often) never leaves the container frozen: the
/// next command thaws a freeze whose maker is gone, so exec works, and
/// stop returns. 24 trials with delays spread over the commit.
#[test]
fn a_killed_commit_never_leaves_the_container_frozen() {
    let b = berth(false);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "frozen",
        "busybox:1.35",
        "sh",
        "-c",
        "dd if=/dev/zero of=/big bs=1M count=150 2>/dev/null; echo ready > /ready; sleep 600",
    ]);
    for _ in 0..100 {
        if b.run(&["exec", "frozen", "cat", "/ready"]).stdout == "ready\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut frozen_seen = 0;
    for trial in 0..24u64 {
        let mut commit = b
            .command(&["commit", "frozen", &format!("snap:{trial}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread over the commit (which takes a few hundred ms here).
        std::thread::sleep(Duration::from_millis(20 + (trial * 37) % 400));
        let _ = commit.kill();
        let _ = commit.wait();
        if fs::read_dir(b.root.with_file_name("run").join("freezes"))
            .map(|d| d.count() > 0)
            .unwrap_or(false)
        {
            frozen_seen += 1;
        }
        let st = run_within(&b, &["exec", "frozen", "true"], Duration::from_secs(10));
        assert!(
            st.is_some_and(|s| s.success()),
            "trial {trial}: exec after a killed commit: {st:?}"
        );
        let state = b.ok(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.Paused}}",
            "frozen",
        ]);
        assert_eq!(state.trim(), "running false", "trial {trial}");
    }
    assert!(
        frozen_seen > 0,
        "no trial killed a commit while it had the container frozen"
    );
    let st = run_within(&b, &["stop", "-t", "1", "frozen"], Duration::from_secs(40));
    assert!(st.is_some_and(|s| s.success()), "stop: {st:?}");
    b.ok(&["rm", "frozen"]);
}

/// A `--rm` container whose foreground `berth run` is killed is removed
/// (the next command finds its monitor gone), as docker removes it.
#[test]
fn rm_container_is_removed_when_its_foreground_cli_is_killed() {
    let b = berth(false);
    let mut cli = b
        .command(&["run", "--rm", "--name", "fg", "busybox:1.35", "sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if b.ok(&["ps", "-q"]).lines().count() == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = cli.kill();
    let _ = cli.wait();
    assert_eq!(
        b.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]),
        ""
    );
    assert!(containers_dir(&b).is_empty(), "{:?}", containers_dir(&b));
    assert!(mounts_under(&b).is_empty());
}

/// During a restart policy's backoff, ps says `Restarting (CODE) ...` as
/// docker does (not `Exited`), and stop ends the backoff at once.
#[test]
fn restarting_containers_show_as_restarting_and_stop_at_once() {
    let b = berth(false);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "flap",
        "--restart",
        "always",
        "busybox:1.35",
        "sh",
        "-c",
        "exit 3",
    ]);
    let mut seen = false;
    for _ in 0..100 {
        let st = b.ok(&["ps", "-a", "--format", "{{.Status}}"]);
        if st.starts_with("Restarting (3) ") {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen, "never shown as Restarting");
    let t = std::time::Instant::now();
    b.ok(&["stop", "flap"]);
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "stop took {:?}",
        t.elapsed()
    );
    let st = b.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(st.starts_with("Exited (3)"), "{st}");
    b.ok(&["rm", "flap"]);
}

/// `ps --filter`: values of one key are alternatives, different keys all
/// apply (docker's rule); an unknown key names the ones berth knows.
#[test]
fn ps_filters_of_one_key_are_alternatives() {
    let b = Berth::with_busybox();
    b.ok(&[
        "create",
        "--name",
        "made",
        "-l",
        "k=v",
        "busybox:1.35",
        "true",
    ]);
    b.ok(&["run", "--name", "ran", "-l", "k=v", "busybox:1.35", "true"]);
    b.ok(&["create", "--name", "other", "busybox:1.35", "true"]);
    let names = |filters: &[&str]| {
        let mut args = vec!["ps", "-a", "--format", "{{.Names}}"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        let mut v: Vec<String> = b.ok(&args).lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&["status=created", "status=exited"]),
        ["made", "other", "ran"]
    );
    assert_eq!(
        names(&["status=created", "status=exited", "label=k=v"]),
        ["made", "ran"]
    );
    assert_eq!(names(&["status=exited", "label=k"]), ["ran"]);
    let r = b.run(&["ps", "--filter", "colour=red"]);
    assert!(!r.success());
    r.one_error_line(&["colour", "status", "label"]);
}

/// `run --pull never` with an image the store lacks: exit 125, the image
/// named, nothing pulled or created; a bad policy is a usage error.
#[test]
fn run_pull_never_refuses_a_missing_image() {
    let b = Berth::with_busybox();
    let r = b.run(&["run", "--pull", "never", "127.0.0.1:1/none/such:1", "true"]);
    assert_eq!(r.code, Some(125), "{r}");
    r.one_error_line(&["No such image", "none/such"]);
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--pull",
            "never",
            "busybox:1.35",
            "echo",
            "ok"
        ]),
        "ok\n"
    );
    let r = b.run(&["run", "--pull", "sometimes", "busybox:1.35", "true"]);
    assert_eq!(r.code, Some(125), "{r}");
    assert!(r.stderr.contains("sometimes"), "{r}");
}

/// `run -d` (and `start`) of a program that is missing or cannot be
/// executed used to report success and leave an exited container; like
/// docker's, the start fails (127, 126) and the container stays created.
#[test]
fn a_detached_run_of_a_missing_program_fails_at_the_start() {
    let b = Berth::with_busybox();
    let r = b.fail(&[
        "run",
        "-d",
        "--name",
        "gone",
        "busybox:1.35",
        "/no/such/program",
    ]);
    assert_eq!(r.code, Some(127), "{r}");
    r.one_error_line(&["/no/such/program", "no such file or directory"]);
    let st = &b.inspect_container("gone")["State"];
    assert_eq!(st["Status"], "created", "{st}");
    assert_eq!(st["ExitCode"], 127, "{st}");
    let r = b.fail(&["start", "gone"]);
    assert_ne!(r.code, Some(0), "{r}");
    let r = b.fail(&["run", "-d", "busybox:1.35", "/etc/hostname"]);
    assert_eq!(r.code, Some(126), "{r}");
    r.one_error_line(&["/etc/hostname", "permission denied"]);
}

/// `berth update`: limits written to the running container's cgroup and
/// kept for its next start, the restart policy taken by its monitor at
/// the next exit; a limit the kernel or docker refuses changes nothing.
#[test]
fn update_changes_a_containers_limits_live_and_for_later() {
    let b = berth(false);
    let limits = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
                  cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max";
    b.ok(&[
        "run",
        "-d",
        "--name",
        "upd",
        "-m",
        "64m",
        "--stop-timeout",
        "1",
        "busybox:1.35",
        "sleep",
        "1000",
    ]);
    assert_eq!(
        b.ok(&["exec", "upd", "sh", "-c", limits]),
        "67108864\nmax\n"
    );
    assert_eq!(
        b.ok(&[
            "update",
            "-m",
            "128m",
            "--pids-limit",
            "50",
            "--restart",
            "on-failure:2",
            "upd"
        ]),
        "upd\n"
    );
    assert_eq!(
        b.ok(&["exec", "upd", "sh", "-c", limits]),
        "134217728\n50\n"
    );
    let c = b.inspect_container("upd");
    assert_eq!(c["HostConfig"]["Memory"], 134217728);
    assert_eq!(c["HostConfig"]["PidsLimit"], 50);
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(c["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    // Refused: nothing changes.
    let r = b.fail(&["update", "-m", "1m", "upd"]);
    assert!(r.stderr.contains("Minimum memory limit"), "{}", r.stderr);
    let r = b.fail(&["update", "upd"]);
    assert!(r.stderr.contains("one or more flags"), "{}", r.stderr);
    assert_eq!(
        b.inspect_container("upd")["HostConfig"]["Memory"],
        134217728
    );
    // Kept for the next start.
    b.ok(&["stop", "upd"]);
    b.ok(&["update", "--pids-limit", "7", "upd"]);
    b.ok(&["start", "upd"]);
    assert_eq!(b.ok(&["exec", "upd", "sh", "-c", limits]), "134217728\n7\n");
    // The monitor restarts on the policy given after the container
    // started: a failure brings it back.
    b.ok(&["update", "--restart", "always", "upd"]);
    let pid = b.inspect_container("upd")["State"]["Pid"].as_i64().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    wait_for(|| b.inspect_container("upd")["RestartCount"].as_i64() == Some(1));
    b.ok(&["rm", "-f", "upd"]);
    // --rm and a restart policy do not go together.
    b.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "gone",
        "busybox:1.35",
        "sleep",
        "1000",
    ]);
    let r = b.fail(&["update", "--restart", "always", "gone"]);
    assert!(r.stderr.contains("AutoRemove"), "{}", r.stderr);
    b.ok(&["rm", "-f", "gone"]);
}

/// `berth export`: the container's own file system (image and changes),
/// not its volumes, running or stopped, to a file or a pipe; a missing
/// container leaves no file.
#[test]
fn export_writes_the_containers_file_system() {
    let b = berth(false);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "exp",
        "-v",
        "/data",
        "--stop-timeout",
        "1",
        "busybox:1.35",
        "sh",
        "-c",
        "echo made > /made; echo vol > /data/v; rm /bin/ls; sleep 1000",
    ]);
    wait_for(|| b.run(&["exec", "exp", "test", "-e", "/data/v"]).success());
    let names = |tar: &[u8]| -> Vec<String> {
        let mut ar = tar::Archive::new(tar);
        ar.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let check = |tar: &[u8]| {
        let n = names(tar);
        assert!(n.contains(&"made".to_string()), "{n:?}");
        assert!(n.contains(&"bin/busybox".to_string()), "{n:?}");
        assert!(
            !n.contains(&"bin/ls".to_string()),
            "a deleted file is not exported"
        );
        assert!(
            !n.iter().any(|p| p.starts_with("data/v")),
            "volumes are not exported: {n:?}"
        );
        assert!(
            !n.iter().any(|p| p.starts_with("proc/") && p.len() > 5),
            "{n:?}"
        );
        assert!(
            !n.iter().any(|p| p.starts_with('/') || p.contains("..")),
            "{n:?}"
        );
    };
    let out = b.command(&["export", "exp"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    check(&out.stdout);
    b.ok(&["stop", "exp"]);
    let file = b.path("x.tar");
    b.ok(&["export", "-o", file.to_str().unwrap(), "exp"]);
    check(&fs::read(&file).unwrap());
    assert!(
        mounts_under(&b).is_empty(),
        "the stopped container's export unmounted its root"
    );
    let missing = b.path("missing.tar");
    b.fail(&["export", "-o", missing.to_str().unwrap(), "nosuch"]);
    assert!(!missing.exists());
    let left: Vec<_> = fs::read_dir(missing.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("missing"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    b.ok(&["rm", "exp"]);
}

/// `--add-host`, `--dns`, `--dns-search`, `--dns-option`, `--hostname`
/// and `--domainname` shape /etc/hosts, /etc/resolv.conf and the UTS
/// names as docker's do; a bad address is a flag error (125) that leaves
/// nothing.
#[test]
fn add_host_dns_and_domainname_shape_the_etc_files() {
    let b = berth(false);
    let out = b.ok(&[
        "run", "--rm", "-h", "web", "--domainname", "example.org",
        "--add-host", "db:10.1.2.3", "--add-host", "v6=[2001:db8::1]",
        "--dns", "10.0.0.53", "--dns", "10.0.0.54", "--dns-search", "corp.example",
        "--dns-option", "ndots:2", "busybox:1.35", "sh", "-c",
        "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; hostname; cat /proc/sys/kernel/domainname",
    ]);
    let parts: Vec<&str> = out.split("---\n").collect();
    let hosts: Vec<&str> = parts[0].lines().collect();
    assert!(
        hosts.contains(&"127.0.1.1\tweb.example.org\tweb"),
        "{hosts:?}"
    );
    assert!(hosts.contains(&"10.1.2.3\tdb"), "{hosts:?}");
    assert!(hosts.contains(&"2001:db8::1\tv6"), "{hosts:?}");
    let resolv: Vec<&str> = parts[1].lines().collect();
    assert!(resolv.contains(&"search corp.example"), "{resolv:?}");
    assert!(resolv.contains(&"options ndots:2"), "{resolv:?}");
    let servers: Vec<&&str> = resolv
        .iter()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    assert_eq!(servers, [&"nameserver 10.0.0.53", &"nameserver 10.0.0.54"]);
    assert_eq!(parts[2], "web\nexample.org\n");
    // `--dns-search .`: no search domains at all.
    let out = b.ok(&[
        "run",
        "--rm",
        "--dns-search",
        ".",
        "busybox:1.35",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(!out.lines().any(|l| l.starts_with("search")), "{out}");
    // The host's network: its own files, with the extra hosts added.
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "--add-host",
        "db:10.1.2.3",
        "busybox:1.35",
        "cat",
        "/etc/hosts",
    ]);
    assert!(out.lines().any(|l| l == "10.1.2.3\tdb"), "{out}");
    let before = containers_dir(&b);
    for bad in [
        &["--add-host", "db:not-an-ip"][..],
        &["--add-host", "nocolon"],
        &["--add-host", "db:host-gateway"],
        &["--dns", "resolver.example"],
        // A line break would write a line of its own into the files.
        &["--dns-search", "corp.example\nnameserver 6.6.6.6"],
        &["--dns-option", "ndots:1 rotate"],
        &["--hostname", "web\n10.0.0.9 db"],
        &["--domainname", "a b"],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(bad);
        args.extend_from_slice(&["busybox:1.35", "true"]);
        let r = b.run(&args);
        assert_eq!(r.code, Some(125), "{bad:?}: {}", r.stderr);
        assert!(r.stderr.contains(bad[0]), "{bad:?}: {}", r.stderr);
    }
    // CPUs: docker's range, not a limit so small it is none.
    for cpus in ["0.001", "100000"] {
        let r = b.run(&["run", "--rm", "--cpus", cpus, "busybox:1.35", "true"]);
        assert_eq!(r.code, Some(125), "{cpus}: {}", r.stderr);
        assert!(r.stderr.contains("range of CPUs"), "{cpus}: {}", r.stderr);
    }
    assert_eq!(containers_dir(&b), before);
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

/// `--network container:NAME` joins a running container's network
/// namespace (its loopback services are reachable, its host name and
/// /etc files are shared), kept by that container's id; a missing or
/// stopped container, or a host name of its own, is refused (125).
#[test]
fn network_container_joins_another_containers_namespace() {
    let b = berth(false);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "-h",
        "srvhost",
        "--stop-timeout",
        "1",
        "busybox:1.35",
        "sh",
        "-c",
        "echo hello > /i; exec httpd -p 127.0.0.1:8080 -h / -f",
    ]);
    let srv = b.inspect_container("srv")["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = b.ok(&[
        "run", "--rm", "--network", "container:srv", "busybox:1.35", "sh", "-c",
        "for i in $(seq 50); do wget -qO- http://127.0.0.1:8080/i && break; sleep 0.1; done; hostname; \
         readlink /proc/self/ns/net",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["hello", "srvhost"], "{out}");
    let srv_pid = b.inspect_container("srv")["State"]["Pid"].as_i64().unwrap();
    let srv_ns = std::fs::read_link(format!("/proc/{srv_pid}/ns/net")).unwrap();
    assert_eq!(lines[2], srv_ns.to_string_lossy());
    let id = b.ok(&[
        "create",
        "--network",
        "container:srv",
        "busybox:1.35",
        "true",
    ]);
    let c = b.inspect_container(id.trim());
    assert_eq!(c["HostConfig"]["NetworkMode"], format!("container:{srv}"));
    assert_eq!(c["NetworkSettings"]["Networks"], serde_json::json!({}));
    b.ok(&["rm", id.trim()]);
    for (args, says) in [
        (&["--network", "container:nosuch"][..], "No such container"),
        (
            &["--network", "container:srv", "-h", "x"],
            "conflicting options: hostname",
        ),
        (
            &["--network", "container:srv", "--dns", "1.1.1.1"],
            "conflicting options: dns",
        ),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox:1.35", "true"]);
        let r = b.run(&a);
        assert_eq!(r.code, Some(125), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    b.ok(&["stop", "srv"]);
    let r = b.run(&[
        "run",
        "--rm",
        "--network",
        "container:srv",
        "busybox:1.35",
        "true",
    ]);
    assert_eq!(r.code, Some(125), "{}", r.stderr);
    assert!(r.stderr.contains("non running container"), "{}", r.stderr);
    b.ok(&["rm", "srv"]);
}
