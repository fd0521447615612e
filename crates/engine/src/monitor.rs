//! The process that owns a running container, as conmon does for Podman:
//! it starts init (through the runtime library, in-process), is its parent,
//! reads its stdout and stderr into the json-file log, records its exit
//! code and time, unmounts its rootfs, and applies the restart policy.
//!
//! In the foreground (`berth run` without `-d`) the CLI process is the
//! monitor and also relays the output to its own stdout/stderr, its stdin
//! to the container (`-i`) and the signals it gets (SIGINT, SIGTERM, ...).
//! Detached, a forked monitor in its own session does the same without a
//! terminal, and outlives the CLI.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::db::{Record, State};
use crate::lifecycle::Engine;
use crate::EngineError;

/// A started container's process and the monitor's ends of its stdio.
struct Running {
    pid: i32,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
}

/// Signals the foreground monitor forwards to the container.
const FORWARDED: &[i32] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn pipe() -> Result<(OwnedFd, OwnedFd), EngineError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| EngineError::io("pipe", e.into()))
}

/// Mounts the rootfs, writes the OCI config and starts init.
fn launch(eng: &mut Engine, rec: &mut Record, stdin_pipe: bool) -> Result<Running, EngineError> {
    let layout = eng.layout(&rec.id);
    let hostname = rec
        .config
        .hostname
        .clone()
        .unwrap_or_else(|| rec.id[..12].to_string());
    crate::rootfs::prepare(&layout, &hostname, rec.config.network == "host")?;
    if !crate::rootfs::is_mounted(&layout) {
        let digest = rec
            .image_id
            .parse()
            .map_err(|_| EngineError::Invalid(format!("bad image id {}", rec.image_id)))?;
        let mut lowers: Vec<_> = eng
            .store
            .image_snapshots(&digest)?
            .into_iter()
            .map(|s| eng.store.snapshot_path(s.id))
            .collect();
        lowers.reverse();
        crate::rootfs::mount(&layout, &lowers)?;
    }
    let result = launch_mounted(eng, rec, &layout, &hostname, stdin_pipe);
    if result.is_err() {
        let _ = crate::rootfs::unmount(&layout);
    }
    result
}

fn launch_mounted(
    eng: &mut Engine,
    rec: &mut Record,
    layout: &crate::rootfs::Layout,
    hostname: &str,
    stdin_pipe: bool,
) -> Result<Running, EngineError> {
    let image = eng.image_config(&rec.image_id)?;
    let user_spec = rec
        .config
        .user
        .clone()
        .unwrap_or_else(|| image.user.clone());
    let user = crate::users::resolve(&layout.merged(), &user_spec)?;
    let spec = crate::spec::derive(
        &rec.config,
        &crate::spec::Inputs {
            id: &rec.id,
            hostname,
            rootfs: &layout.merged(),
            dir: &layout.dir,
            image: &image,
            user: &user,
        },
    )?;
    let cfg = layout.dir.join("config.json");
    std::fs::write(&cfg, serde_json::to_vec(&spec).expect("serializes"))
        .map_err(|e| EngineError::io(format!("write {}", cfg.display()), e))?;

    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (in_ours, in_theirs): (Option<OwnedFd>, OwnedFd) = if stdin_pipe {
        let (r, w) = pipe()?;
        (Some(w), r)
    } else {
        let null =
            std::fs::File::open("/dev/null").map_err(|e| EngineError::io("open /dev/null", e))?;
        (None, OwnedFd::from(null))
    };
    let rt = eng.paths.runtime();
    // A leftover runtime state of this id (a crash between start and
    // record) would block the create.
    let _ = berth_runtime::container::delete(&rt, &rec.id, true);
    let opts = berth_runtime::container::CreateOptions {
        id: rec.id.clone(),
        bundle: layout.dir.clone(),
        root: rt.clone(),
        pid_file: None,
        console_socket: None,
        no_pivot: false,
        preserve_fds: 0,
        stdio: Some([in_theirs.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()]),
    };
    let pid = berth_runtime::container::create(&opts).map_err(exec_error)?;
    drop((in_theirs, out_w, err_w));
    if let Err(e) = berth_runtime::container::start(&rt, &rec.id) {
        let _ = berth_runtime::container::delete(&rt, &rec.id, true);
        return Err(e.into());
    }
    rec.state = State::Running;
    rec.pid = pid;
    rec.monitor_pid = std::process::id() as i32;
    rec.monitor_start = berth_runtime::state::proc_stat(rec.monitor_pid)
        .map(|(_, t)| t)
        .unwrap_or(0);
    rec.started_at = crate::logs::now();
    rec.error.clear();
    rec.exit_code = 0;
    eng.db.update(rec)?;
    Ok(Running {
        pid,
        stdout: Some(out_r),
        stderr: Some(err_r),
        stdin: in_ours,
    })
}

/// Docker's exit codes for a command that cannot run: 127 not found, 126
/// not executable; the message as docker words it.
fn exec_error(e: berth_runtime::container::ContainerError) -> EngineError {
    if let berth_runtime::container::ContainerError::Init(m) = &e {
        if m.contains("executable file not found") || m.contains("no such file or directory") {
            return EngineError::Exec {
                code: 127,
                message: format!("failed to create task: {m}"),
            };
        }
        if m.contains("ermission denied") || m.contains("exec format error") {
            return EngineError::Exec {
                code: 126,
                message: format!("failed to create task: {m}"),
            };
        }
    }
    EngineError::Runtime(e)
}

/// Blocks the forwarded signals and SIGCHLD, and returns a signalfd for
/// them (the container's init resets its own mask).
fn signal_fd(forward: bool) -> Result<OwnedFd, EngineError> {
    // SAFETY: sigset manipulation on a local set, then sigprocmask and
    // signalfd with valid pointers; the new fd is owned below.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        if forward {
            for s in FORWARDED {
                libc::sigaddset(&mut set, *s);
            }
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(EngineError::io("signalfd", std::io::Error::last_os_error()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Reads signals from the signalfd; returns their numbers.
fn read_signals(fd: &OwnedFd) -> Vec<i32> {
    let mut out = Vec::new();
    let mut buf = [0u8; 128 * 4];
    // siginfo is 128 bytes; ssi_signo is its first u32.
    if let Ok(n) = rustix::io::read(fd, &mut buf) {
        for chunk in buf[..n].chunks_exact(128) {
            out.push(u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as i32);
        }
    }
    out
}

fn try_wait(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: pid is our child; status is a valid out-parameter.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (r == pid).then(|| berth_runtime::signal::exit_code(status))
}

/// Relays until init has exited and its output is drained; returns the
/// exit code. `echo`: also write the output to our stdout/stderr.
fn relay(
    running: &mut Running,
    log: &mut crate::logs::Writer,
    sigfd: &OwnedFd,
    echo: bool,
    stdin: Option<RawFd>,
) -> i32 {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut code: Option<i32> = None;
    let mut stdin_open = stdin.is_some() && running.stdin.is_some();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if code.is_some() && running.stdout.is_none() && running.stderr.is_none() {
            break;
        }
        let mut fds: Vec<PollFd<'_>> = Vec::new();
        let mut which: Vec<u8> = Vec::new();
        let own_stdin = stdin.map(|fd| {
            // SAFETY: our stdin stays open for the whole relay.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
        });
        fds.push(PollFd::new(sigfd, PollFlags::IN));
        which.push(b's');
        if let Some(f) = &running.stdout {
            fds.push(PollFd::new(f, PollFlags::IN));
            which.push(b'o');
        }
        if let Some(f) = &running.stderr {
            fds.push(PollFd::new(f, PollFlags::IN));
            which.push(b'e');
        }
        if let (true, Some(fd)) = (stdin_open, own_stdin.as_ref()) {
            fds.push(PollFd::new(fd, PollFlags::IN));
            which.push(b'i');
        }
        // After init's exit, output still buffered is drained; a pipe
        // held open by an escaped process does not hold us for long.
        let timeout = if code.is_some() {
            Some(&rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 200_000_000,
            })
        } else {
            None
        };
        match poll(&mut fds, timeout) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<(u8, bool)> = fds
            .iter()
            .zip(&which)
            .map(|(f, w)| (*w, !f.revents().is_empty()))
            .collect();
        drop(fds);
        for (w, is_ready) in ready {
            if !is_ready {
                continue;
            }
            match w {
                b's' => {
                    for sig in read_signals(sigfd) {
                        if sig == libc::SIGCHLD {
                            if let Some(c) = try_wait(running.pid) {
                                code = Some(c);
                            }
                        } else {
                            // SAFETY: init is our child (not yet reaped).
                            unsafe { libc::kill(running.pid, sig) };
                        }
                    }
                }
                b'o' | b'e' => {
                    let slot = if w == b'o' {
                        &mut running.stdout
                    } else {
                        &mut running.stderr
                    };
                    let n = match slot.as_ref().map(|f| rustix::io::read(f, &mut buf)) {
                        Some(Ok(n)) => n,
                        Some(Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN)) => continue,
                        _ => 0,
                    };
                    if n == 0 {
                        *slot = None;
                        continue;
                    }
                    let stream = if w == b'o' { 0 } else { 1 };
                    log.write(stream, &buf[..n]);
                    if echo {
                        let _ = if stream == 0 {
                            std::io::stdout()
                                .write_all(&buf[..n])
                                .and_then(|()| std::io::stdout().flush())
                        } else {
                            std::io::stderr().write_all(&buf[..n])
                        };
                    }
                }
                b'i' => {
                    let n = match own_stdin.map(|fd| rustix::io::read(fd, &mut buf)) {
                        Some(Ok(n)) => n,
                        Some(Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN)) => continue,
                        _ => 0,
                    };
                    if n == 0 {
                        // EOF: the container sees its stdin close.
                        stdin_open = false;
                        running.stdin = None;
                        continue;
                    }
                    let ok = running.stdin.as_ref().is_some_and(|f| {
                        let mut rest = &buf[..n];
                        while !rest.is_empty() {
                            match rustix::io::write(f, rest) {
                                Ok(k) => rest = &rest[k..],
                                Err(rustix::io::Errno::INTR) => {}
                                Err(_) => return false,
                            }
                        }
                        true
                    });
                    if !ok {
                        stdin_open = false;
                        running.stdin = None;
                    }
                }
                _ => {}
            }
        }
        if code.is_none() {
            code = try_wait(running.pid);
        }
    }
    match code {
        Some(c) => c,
        None => {
            let mut status = 0;
            // SAFETY: pid is our child.
            unsafe { libc::waitpid(running.pid, &mut status, 0) };
            berth_runtime::signal::exit_code(status)
        }
    }
}

/// Records an exit and tidies up; removes the container with `--rm`.
/// Returns whether the container still exists.
fn finish(eng: &mut Engine, rec: &mut Record, code: i32) -> Result<bool, EngineError> {
    let _ = berth_runtime::container::delete(&eng.paths.runtime(), &rec.id, true);
    let _ = crate::rootfs::unmount(&eng.layout(&rec.id));
    // Re-read: `stop` may have marked the container meanwhile.
    if let Some(now) = eng.db.get(&rec.id)? {
        rec.stop_requested = now.stop_requested;
        rec.restart_count = now.restart_count;
    } else {
        return Ok(false);
    }
    rec.state = State::Exited;
    rec.exit_code = code;
    rec.pid = 0;
    rec.monitor_pid = 0;
    rec.monitor_start = 0;
    rec.finished_at = crate::logs::now();
    eng.db.update(rec)?;
    if rec.config.auto_remove {
        eng.purge(&rec.id)?;
        return Ok(false);
    }
    Ok(true)
}

/// Docker's restart policies, decided after an exit.
fn should_restart(rec: &Record, code: i32) -> bool {
    if rec.stop_requested {
        return false;
    }
    let p = rec.config.restart.as_str();
    match p
        .split_once(':')
        .map(|(a, b)| (a, Some(b)))
        .unwrap_or((p, None))
    {
        ("always", _) | ("unless-stopped", _) => true,
        ("on-failure", max) => {
            code != 0
                && max
                    .and_then(|m| m.parse::<i64>().ok())
                    .is_none_or(|m| rec.restart_count < m)
        }
        _ => false,
    }
}

/// Validates a `--restart` value.
pub fn check_restart_policy(p: &str) -> Result<(), EngineError> {
    let ok = match p.split_once(':') {
        None => matches!(p, "" | "no" | "always" | "unless-stopped" | "on-failure"),
        Some(("on-failure", n)) => n.parse::<u32>().is_ok(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(EngineError::Invalid(format!(
            "invalid restart policy {p:?}: use no, always, unless-stopped or on-failure[:max-retries]"
        )))
    }
}

/// `berth run`/`start -a` in the foreground: the calling process is the
/// monitor. Returns the container's exit code.
pub fn run_foreground(eng: &mut Engine, id: &str, interactive: bool) -> Result<i32, EngineError> {
    let mut rec = eng.get(id)?;
    if matches!(rec.state, State::Running | State::Paused) {
        return Err(EngineError::Conflict(format!(
            "container {} is already running",
            rec.id
        )));
    }
    let sigfd = signal_fd(true)?;
    let mut running = match launch(eng, &mut rec, interactive) {
        Ok(r) => r,
        Err(e) => return Err(fail(eng, &mut rec, e)),
    };
    let mut log = crate::logs::Writer::open(&eng.layout(&rec.id).log())
        .map_err(|e| EngineError::io("open the container log", e))?;
    let stdin = interactive.then_some(0);
    let code = relay(&mut running, &mut log, &sigfd, true, stdin);
    log.flush();
    finish(eng, &mut rec, code)?;
    Ok(code)
}

/// A failed start: the error recorded (as docker shows it in inspect), the
/// rootfs unmounted; with `--rm` the container removed.
fn fail(eng: &mut Engine, rec: &mut Record, e: EngineError) -> EngineError {
    rec.state = State::Created;
    rec.error = e.to_string();
    rec.exit_code = e.exit_code() as i32;
    let _ = eng.db.update(rec);
    if rec.config.auto_remove {
        let _ = eng.purge(&rec.id);
    }
    e
}

/// `berth start`/`run -d`: forks the monitor, which starts the container
/// and stays with it; returns once the container runs (or failed to).
pub fn start_detached(eng: Engine, id: &str) -> Result<(), EngineError> {
    let paths = eng.paths.clone();
    // The database connection must not cross the fork.
    drop(eng);
    let (report_r, report_w) = pipe()?;
    // SAFETY: berth's CLI is single-threaded here, so the child may run
    // arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(EngineError::io(
            "fork the monitor",
            std::io::Error::last_os_error(),
        ));
    }
    if pid == 0 {
        drop(report_r);
        let code = monitor_main(&paths, id, report_w);
        // SAFETY: the monitor ends here without unwinding into the CLI.
        unsafe { libc::_exit(code) };
    }
    drop(report_w);
    let mut report = String::new();
    let _ = std::fs::File::from(report_r).read_to_string(&mut report);
    // Reap the monitor only if it already ended (a failed start).
    let mut status = 0;
    // SAFETY: pid is our child.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match report.split_once(' ') {
        _ if report == "ok" => Ok(()),
        Some((code, msg)) => Err(match code.parse::<u8>() {
            Ok(c @ (126 | 127)) => EngineError::Exec {
                code: c,
                message: msg.to_string(),
            },
            _ => EngineError::Invalid(msg.to_string()),
        }),
        None => Err(EngineError::Invalid(
            "the container's monitor exited before reporting".into(),
        )),
    }
}

/// The detached monitor's life: a new session, stdio on /dev/null, then
/// start, report, relay to the log, record the exit, restart if the policy
/// says so.
fn monitor_main(paths: &crate::Paths, id: &str, report: OwnedFd) -> i32 {
    // SAFETY: setsid and dup2 onto stdio in our own process.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    let mut report = Some(std::fs::File::from(report));
    let say = |report: &mut Option<std::fs::File>, msg: String| {
        if let Some(mut f) = report.take() {
            let _ = f.write_all(msg.as_bytes());
        }
    };
    let mut eng = match Engine::open(paths) {
        Ok(e) => e,
        Err(e) => {
            say(&mut report, format!("125 {e}"));
            return 1;
        }
    };
    let sigfd = match signal_fd(false) {
        Ok(f) => f,
        Err(e) => {
            say(&mut report, format!("125 {e}"));
            return 1;
        }
    };
    let mut delay = Duration::from_millis(100);
    loop {
        let mut rec = match eng.get(id) {
            Ok(r) => r,
            Err(e) => {
                say(&mut report, format!("125 {e}"));
                return 1;
            }
        };
        let mut running = match launch(&mut eng, &mut rec, false) {
            Ok(r) => r,
            Err(e) => {
                let code = e.exit_code();
                let e = fail(&mut eng, &mut rec, e);
                say(&mut report, format!("{code} {e}"));
                return 1;
            }
        };
        say(&mut report, "ok".into());
        let mut log = match crate::logs::Writer::open(&eng.layout(&rec.id).log()) {
            Ok(l) => l,
            Err(_) => return 1,
        };
        let code = relay(&mut running, &mut log, &sigfd, false, None);
        log.flush();
        match finish(&mut eng, &mut rec, code) {
            Ok(true) => {}
            _ => return 0,
        }
        if !should_restart(&rec, code) {
            return 0;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(60));
        match eng.db.get(id) {
            Ok(Some(mut r)) if !r.stop_requested => {
                r.restart_count += 1;
                r.state = State::Restarting;
                r.monitor_pid = std::process::id() as i32;
                r.monitor_start = berth_runtime::state::proc_stat(r.monitor_pid)
                    .map(|(_, t)| t)
                    .unwrap_or(0);
                if eng.db.update(&r).is_err() {
                    return 1;
                }
            }
            _ => return 0,
        }
    }
}
