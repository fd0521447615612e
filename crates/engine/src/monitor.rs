//! The process that owns a running container, as conmon does for Podman:
//! it starts init (through the runtime library, in-process), is its parent,
//! reads its stdout and stderr into the json-file log, records its exit
//! code and time, unmounts its rootfs, and applies the restart policy.
//!
//! Detached (`run -d`, `start`), the monitor is a process of its own (the
//! berth binary as a helper, in its own session), which outlives its
//! caller. In the foreground (`berth run` without `-d`) the caller is the
//! monitor, through the same code, and also relays the output to the
//! caller's streams, their input to the container (`-i`) and the signals it
//! gets (SIGINT, SIGTERM, ...); no restart policy applies there.

use std::os::fd::OwnedFd;
use std::time::Duration;

use crate::db::{Record, State};
use crate::helper::Reporter;
use crate::io::{relay, signal_fd, Running, Wiring};
use crate::Engine;
use crate::EngineError;

/// Mounts the rootfs, writes the OCI config and starts init.
fn launch(
    eng: &mut Engine,
    rec: &mut Record,
    stdin_pipe: bool,
    size: Option<(u16, u16)>,
) -> Result<Running, EngineError> {
    let layout = eng.layout(&rec.id);
    let joined = joined_network(eng, rec)?;
    let hostname = match &joined {
        // The other container's name, hosts and resolvers, as docker.
        Some(j) => j.hostname.clone(),
        None => rec
            .config
            .hostname
            .clone()
            .unwrap_or_else(|| rec.id[..12].to_string()),
    };
    crate::rootfs::prepare(
        &layout,
        &crate::rootfs::EtcFiles::of(&rec.config, &hostname),
    )?;
    if let Some(j) = &joined {
        for f in ["hosts", "resolv.conf"] {
            let (from, to) = (j.dir.join(f), layout.dir.join(f));
            std::fs::copy(&from, &to).map_err(|e| {
                EngineError::io(format!("copy {} to {}", from.display(), to.display()), e)
            })?;
        }
    }
    if !crate::rootfs::is_mounted(&layout) {
        let lowers = eng.image_lowers(&rec.image_id)?;
        crate::rootfs::mount(&layout, &lowers, rec.config.auto_remove)?;
    }
    let result = launch_mounted(
        eng,
        rec,
        &layout,
        joined.as_ref(),
        &hostname,
        stdin_pipe,
        size,
    );
    if result.is_err() {
        let _ = crate::rootfs::unmount(&layout);
    }
    result
}

/// The container whose network namespace `--network container:NAME`
/// joins: where its namespace and /etc files are, and its host name.
struct Joined {
    net: std::path::PathBuf,
    /// A pidfd of its init, held until the runtime has joined: the pid in
    /// `net` cannot be given to another process meanwhile.
    _pin: std::os::fd::OwnedFd,
    dir: std::path::PathBuf,
    hostname: String,
}

fn joined_network(eng: &mut Engine, rec: &Record) -> Result<Option<Joined>, EngineError> {
    let Some(other) = rec.config.network.strip_prefix("container:") else {
        return Ok(None);
    };
    let o = eng.get(other)?;
    if !matches!(o.state, State::Running | State::Paused) || o.pid <= 0 {
        return Err(EngineError::Conflict(format!(
            "cannot join network of a non running container: {}",
            o.name
        )));
    }
    // The runtime's record of its init (pid and start time), checked
    // alive through a pidfd that keeps the pid from being reused.
    let not_running = || {
        EngineError::Conflict(format!(
            "cannot join network of a non running container: {}",
            o.name
        ))
    };
    let saved = berth_runtime::state::Saved::load(&eng.paths.runtime(), &o.id)
        .map_err(|_| not_running())?;
    let pin = crate::watch::pidfd(saved.pid, saved.start_time).ok_or_else(not_running)?;
    Ok(Some(Joined {
        net: std::path::PathBuf::from(format!("/proc/{}/ns/net", saved.pid)),
        _pin: pin,
        dir: eng.layout(&o.id).dir,
        hostname: o
            .config
            .hostname
            .clone()
            .unwrap_or_else(|| o.id[..12].to_string()),
    }))
}

fn launch_mounted(
    eng: &mut Engine,
    rec: &mut Record,
    layout: &crate::rootfs::Layout,
    joined: Option<&Joined>,
    hostname: &str,
    stdin_pipe: bool,
    size: Option<(u16, u16)>,
) -> Result<Running, EngineError> {
    let image = eng.image_config(&rec.image_id)?;
    let user_spec = rec
        .config
        .user
        .clone()
        .unwrap_or_else(|| image.user.clone());
    let user = crate::users::resolve(&layout.merged(), &user_spec)?;
    for m in &rec.config.volume_mounts {
        crate::volumes::fill_from_image(&eng.paths.root, &layout.merged(), m)?;
    }
    let mut spec = crate::spec::derive(
        &rec.config,
        &crate::spec::Inputs {
            id: &rec.id,
            hostname,
            rootfs: &layout.merged(),
            dir: &layout.dir,
            image: &image,
            user: &user,
            store_root: &eng.paths.root,
            join_net: joined.map(|j| j.net.as_path()),
        },
    )?;
    if let (true, Some((rows, cols)), Some(p)) = (rec.config.tty, size, spec.process_mut()) {
        p.set_console_size(Some(crate::spec::console_size(rows, cols)));
    }
    let cfg = layout.dir.join("config.json");
    std::fs::write(&cfg, serde_json::to_vec(&spec).expect("serializes"))
        .map_err(|e| EngineError::io(format!("write {}", cfg.display()), e))?;

    let wiring = Wiring::new(rec.config.tty, stdin_pipe)?;
    let rt = eng.paths.runtime();
    // A leftover runtime state of this id (a crash between start and
    // record) would block the create.
    let _ = eng.runtime.delete(&rt, &rec.id, true);
    let opts = berth_runtime::container::CreateOptions {
        id: rec.id.clone(),
        bundle: layout.dir.clone(),
        root: rt.clone(),
        pid_file: None,
        console_socket: None,
        no_pivot: false,
        preserve_fds: 0,
        stdio: Some(wiring.stdio()),
        console_fd: wiring.console_fd(),
        reaper: rec.config.init,
        // A joined namespace is the other container's to set up.
        loopback: joined.is_none(),
        die_with_parent: false,
    };
    let pid = eng.runtime.create(&opts).map_err(exec_error)?;
    let running = match wiring.started(pid) {
        Ok(r) => r,
        Err(e) => {
            let _ = eng.runtime.delete(&rt, &rec.id, true);
            return Err(e);
        }
    };
    if let Err(e) = eng.runtime.start(&rt, &rec.id) {
        let _ = eng.runtime.delete(&rt, &rec.id, true);
        return Err(e.into());
    }
    rec.state = State::Running;
    rec.oom_killed = false;
    rec.pid = pid;
    rec.monitor_pid = std::process::id() as i32;
    rec.monitor_start = berth_runtime::state::proc_stat(rec.monitor_pid)
        .map(|(_, t)| t)
        .unwrap_or(0);
    rec.started_at = crate::clock::now();
    rec.error.clear();
    rec.exit_code = 0;
    eng.db.update(rec)?;
    eng.container_event(rec, "start", &[]);
    Ok(running)
}

/// Docker's exit codes for a command that cannot run: 127 not found, 126
/// not executable; the message as docker words it.
pub(crate) fn exec_error(e: berth_runtime::container::ContainerError) -> EngineError {
    command_error(e, "failed to create task")
}

/// `exec_error` with docker's wording for `what` ("failed to create task"
/// for run, "OCI runtime exec failed" for exec).
pub(crate) fn command_error(
    e: berth_runtime::container::ContainerError,
    what: &str,
) -> EngineError {
    use berth_runtime::container::{ContainerError as E, Failure};
    // The runtime says which: the program is missing (127) or cannot be
    // executed (126); no message is read for it.
    if let E::Command {
        failure, message, ..
    } = &e
    {
        return EngineError::Exec {
            code: if *failure == Failure::NotFound {
                127
            } else {
                126
            },
            message: format!("{what}: {message}"),
        };
    }
    EngineError::Runtime(e)
}

/// Records an exit and tidies up; removes the container with `--rm`.
/// Returns whether the container still exists. The exit is recorded
/// before its die event is written: whoever wakes for the event (`wait`)
/// finds it. A detached monitor (`may_restart`) whose policy restarts the
/// container records it as restarting at once, never exited in between:
/// a `not-running` wait woken by the die event must not take a restart
/// for the end.
fn finish(
    eng: &mut Engine,
    rec: &mut Record,
    code: i32,
    may_restart: bool,
) -> Result<bool, EngineError> {
    // Read before delete removes the cgroup that counts it.
    let oom_killed = eng.runtime.oom_killed(&eng.paths.runtime(), &rec.id);
    let _ = eng.runtime.delete(&eng.paths.runtime(), &rec.id, true);
    let _ = crate::rootfs::unmount(&eng.layout(&rec.id));
    let died = |eng: &Engine, rec: &Record| {
        if oom_killed {
            eng.container_event(rec, "oom", &[]);
        }
        eng.container_event(rec, "die", &[("exitCode", code.to_string())]);
    };
    if rec.config.auto_remove {
        // Gone at once: no exited state to record first, only the code
        // for whoever waits.
        let exit = eng.exit_file(&rec.id);
        if let Some(d) = exit.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let _ = std::fs::write(&exit, code.to_string());
        died(eng, rec);
        eng.purge(&rec.id)?;
        eng.volumes().remove_anonymous(&rec.config.volume_mounts)?;
        return Ok(false);
    }
    // Re-read: `stop` may have marked the container meanwhile, and
    // `update` changed its restart policy or limits.
    if let Some(now) = eng.db.get(&rec.id)? {
        rec.stop_requested = now.stop_requested;
        rec.restart_count = now.restart_count;
        rec.config = now.config;
    } else {
        died(eng, rec);
        return Ok(false);
    }
    rec.exit_code = code;
    rec.oom_killed = oom_killed;
    rec.pid = 0;
    rec.finished_at = crate::clock::now();
    if may_restart && should_restart(rec, code) {
        // The monitor stays with it through the backoff.
        rec.state = State::Restarting;
    } else {
        rec.state = State::Exited;
        rec.monitor_pid = 0;
        rec.monitor_start = 0;
    }
    eng.db.update(rec)?;
    died(eng, rec);
    Ok(true)
}

/// Docker's restart policies, decided after an exit: never after a stop
/// the user asked for.
fn should_restart(rec: &Record, code: i32) -> bool {
    !rec.stop_requested && rec.config.restart.restarts(code, rec.restart_count)
}

/// The monitor's claim on a container, held for its whole life (restart
/// backoffs included): a second monitor for the same container, from a
/// racing `start` or a `start` during a backoff, is refused.
pub(crate) fn claim(eng: &Engine, id: &str) -> Result<Option<OwnedFd>, EngineError> {
    let path = eng.layout(id).dir.join("monitor.lock");
    let fd = rustix::fs::open(
        &path,
        rustix::fs::OFlags::CREATE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .map_err(|e| EngineError::io(format!("open {}", path.display()), e.into()))?;
    match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(fd)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(EngineError::io(
            format!("lock {}", path.display()),
            e.into(),
        )),
    }
}

/// The container's json-file log with its rotation; none with
/// `--log-driver none`.
fn open_log(eng: &Engine, rec: &Record) -> Result<Option<crate::logs::Writer>, EngineError> {
    if rec.config.log_driver == "none" {
        return Ok(None);
    }
    let rotation = crate::logs::Rotation::from_opts(&rec.config.log_opts)?;
    crate::logs::Writer::open(&eng.layout(&rec.id).log(), rotation)
        .map(Some)
        .map_err(|e| EngineError::io("open the container log", e))
}

/// The container's health check, scheduled in the relay: each run starts
/// a checker (helper role `health`, one at a time) that runs the test and
/// records the result. The state starts as "starting".
fn health_ticker(eng: &Engine, rec: &Record) -> Result<Option<crate::io::Ticker>, EngineError> {
    let check = crate::health::check_of(eng, &rec.config, &rec.image_id)?;
    crate::health::reset(eng, &rec.id, &rec.health, check.as_ref())?;
    let Some(check) = check else {
        return Ok(None);
    };
    let paths = eng.paths.clone();
    let id = rec.id.clone();
    let started = std::time::Instant::now();
    let every = check.interval;
    let mut checker: Option<std::process::Child> = None;
    Ok(Some(crate::io::Ticker {
        every,
        next: started + every,
        run: Box::new(move || {
            // The previous checker is reaped by the relay (it reaps every
            // child); while it runs its pid is ours.
            if let Some(c) = &checker {
                // SAFETY: signal 0 only checks whether the process exists.
                if unsafe { libc::kill(c.id() as i32, 0) } == 0 {
                    return;
                }
            }
            let in_start_period = check.start_period.saturating_sub(started.elapsed());
            let arg = in_start_period.as_millis().to_string();
            checker = crate::helper::spawn(
                "health",
                &paths,
                &[std::ffi::OsStr::new(&id), std::ffi::OsStr::new(&arg)],
                std::process::Stdio::null(),
            )
            .ok();
        }),
    }))
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
        let _ = eng.volumes().remove_anonymous(&rec.config.volume_mounts);
    }
    e
}

/// `berth run`/`start -a` in the foreground: the calling process is the
/// monitor, through the same code as a detached one, relaying to and from
/// `caller`, and forwarding the signals it gets to the container. It
/// applies no restart policy. Returns the container's exit code.
pub fn run_foreground(
    eng: &mut Engine,
    id: &str,
    caller: &mut crate::io::Caller<'_>,
) -> Result<i32, EngineError> {
    serve(eng, id, Some(caller), 0, &mut Reporter::none())
}

/// `berth start`/`run -d`: starts the container's monitor, a process of
/// its own (the berth binary as a helper) that starts the container and
/// stays with it; returns once the container runs, or with why it could
/// not start.
pub fn start_detached(eng: Engine, id: &str) -> Result<(), EngineError> {
    let paths = eng.paths.clone();
    drop(eng);
    let mut child = crate::helper::spawn(
        "monitor",
        &paths,
        &[std::ffi::OsStr::new(id)],
        std::process::Stdio::null(),
    )?;
    crate::helper::report(&mut child, "the container's monitor")?;
    crate::helper::reap_later(child);
    Ok(())
}

/// How long a start waits for the callers that attached before it.
const ATTACH_WAIT: Duration = Duration::from_secs(10);

/// `start` for callers attached before it (the Engine API's attach, then
/// start): the monitor binds its attach socket and, before the container
/// starts, waits for `clients` connections, which are made here and
/// given to `hand_over`; then returns as `start_detached` does. A
/// connection not made (the monitor failed first) is not given.
pub fn start_detached_attached(
    eng: Engine,
    id: &str,
    clients: usize,
    hand_over: impl FnOnce(Vec<std::os::unix::net::UnixStream>),
) -> Result<(), EngineError> {
    let paths = eng.paths.clone();
    let socket = eng.attach_socket(id);
    let running = eng
        .db
        .get(id)?
        .is_some_and(|r| matches!(r.state, State::Running | State::Paused | State::Restarting));
    if !running {
        // A socket left by the last monitor must not take the connections
        // (a restarting container's monitor is alive and keeps its own).
        let _ = std::fs::remove_file(&socket);
    }
    drop(eng);
    let n = clients.to_string();
    let mut child = crate::helper::spawn(
        "monitor",
        &paths,
        &[std::ffi::OsStr::new(id), std::ffi::OsStr::new(&n)],
        std::process::Stdio::null(),
    )?;
    let mut streams = Vec::new();
    let end = std::time::Instant::now() + ATTACH_WAIT;
    while streams.len() < clients && std::time::Instant::now() < end {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(s) => streams.push(s),
            Err(_) => {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    hand_over(streams);
    crate::helper::report(&mut child, "the container's monitor")?;
    crate::helper::reap_later(child);
    Ok(())
}

/// The detached monitor's life (helper role `monitor`): start, report,
/// relay to the log, record the exit, restart as the policy says.
pub(crate) fn monitor_main(
    paths: &crate::Paths,
    id: &str,
    await_clients: usize,
    reporter: &mut Reporter,
) -> i32 {
    let mut eng = match Engine::open(paths) {
        Ok(e) => e,
        Err(e) => {
            reporter.fail(&e);
            return 1;
        }
    };
    match serve(&mut eng, id, None, await_clients, reporter) {
        Ok(_) => 0,
        Err(e) => {
            // Reported already if it came before the start.
            reporter.fail(&e);
            1
        }
    }
}

/// A detached monitor's whole life in this process (what the `monitor`
/// helper runs): returns the last exit code once no restart follows.
pub fn serve_detached(eng: &mut Engine, id: &str) -> Result<i32, EngineError> {
    serve(eng, id, None, 0, &mut Reporter::none())
}

/// One monitor, foreground (`caller`) or detached: claims the container,
/// starts it, reports the start (or why not), relays until it exits,
/// records the exit; detached, restarts it as its policy says.
fn serve(
    eng: &mut Engine,
    id: &str,
    mut caller: Option<&mut crate::io::Caller<'_>>,
    await_clients: usize,
    reporter: &mut Reporter,
) -> Result<i32, EngineError> {
    let first = eng.get(id)?;
    if matches!(first.state, State::Running | State::Paused) {
        return Err(EngineError::Conflict(format!(
            "container {} is already running",
            first.id
        )));
    }
    let id = first.id.clone();
    // A monitor that has just recorded its container's exit may still be
    // on its way out (`restart` right after `stop`): give it a moment.
    let mut tries = 0;
    let _claim = loop {
        match claim(eng, &id)? {
            Some(c) => break c,
            None if tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            None => {
                return Err(EngineError::Conflict(format!(
                    "container {id} is already running or restarting"
                )))
            }
        }
    };
    // A start by the user: restart policies apply again.
    if first.stop_requested {
        eng.db.set_stop_requested(&id, false)?;
    }
    let sigfd = signal_fd(caller.is_some())?;
    // Served from before the start is reported, so that an attach right
    // after `run -d` finds it, and across restarts.
    let mut attach = crate::io::AttachServer::bind(
        &eng.attach_socket(&id),
        first.config.tty,
        first.config.stdin_once,
    )
    .ok();
    if let Some(a) = attach.as_mut().filter(|_| await_clients > 0) {
        a.wait_for_clients(await_clients, ATTACH_WAIT);
    }
    let mut delay = Duration::from_millis(100);
    loop {
        let mut rec = eng.get(&id)?;
        // Detached with `-i`, the container's stdin stays open for attach.
        let stdin_pipe = match caller.as_deref() {
            Some(c) => c.stdin.is_some(),
            None => rec.config.interactive,
        };
        // The caller's terminal, or the size the API's create gave.
        let size = caller
            .as_deref()
            .and_then(|c| c.size())
            .or(rec.config.console_size);
        let mut log = match open_log(eng, &rec) {
            Ok(l) => l,
            Err(e) => return Err(fail(eng, &mut rec, e)),
        };
        let mut running = match launch(eng, &mut rec, stdin_pipe, size) {
            Ok(r) => r,
            Err(e) => return Err(fail(eng, &mut rec, e)),
        };
        reporter.ok();
        // `-it` on a terminal: keys go to the container's pty as typed.
        let raw = caller
            .as_deref()
            .filter(|c| rec.config.tty && c.stdin.is_some())
            .and_then(|c| c.raw());
        let mut ticker = health_ticker(eng, &rec).unwrap_or_default();
        // A detached monitor per container: what starting it took (the
        // database's page caches, parsed configs) is given back for the
        // container's life.
        if caller.is_none() {
            eng.db.release_memory();
            eng.store.release_memory();
            // SAFETY: malloc_trim only returns free pages to the kernel.
            unsafe { libc::malloc_trim(0) };
        }
        let code = relay(
            &mut running,
            &sigfd,
            crate::io::RelayOpts {
                log: log.as_mut(),
                caller: caller.as_deref_mut(),
                ticker: ticker.as_mut(),
                attach: attach.as_mut(),
            },
        );
        drop(raw);
        if let Some(l) = log.as_mut() {
            l.flush();
        }
        if !finish(eng, &mut rec, code, caller.is_none())?
            || caller.is_some()
            || !should_restart(&rec, code)
        {
            return Ok(code);
        }
        if !backoff(eng, &id, delay)? {
            return Ok(code);
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// Between an exit and the restart the policy asks for: "Restarting" for
/// the whole backoff, as docker shows it ("Restarting (1) 2 seconds ago"),
/// with this monitor as its owner. False when the container was stopped
/// or removed meanwhile (it stays exited).
fn backoff(eng: &mut Engine, id: &str, delay: Duration) -> Result<bool, EngineError> {
    match eng.db.get(id)? {
        Some(mut r) if !r.stop_requested => {
            r.state = State::Restarting;
            r.monitor_pid = std::process::id() as i32;
            r.monitor_start = berth_runtime::state::proc_stat(r.monitor_pid)
                .map(|(_, t)| t)
                .unwrap_or(0);
            eng.db.update(&r)?;
        }
        Some(mut r) => {
            // A stop came between the exit and the backoff: exited.
            r.state = State::Exited;
            r.monitor_pid = 0;
            r.monitor_start = 0;
            eng.db.update(&r)?;
            return Ok(false);
        }
        None => return Ok(false),
    }
    // The backoff ends early when a stop is asked for.
    let until = std::time::Instant::now() + delay;
    let stopped = loop {
        match eng.db.get(id)? {
            Some(r) if !r.stop_requested => {}
            Some(_) => break true,
            None => return Ok(false),
        }
        let now = std::time::Instant::now();
        if now >= until {
            break false;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    };
    match eng.db.get(id)? {
        Some(mut r) if !stopped && !r.stop_requested => {
            r.restart_count += 1;
            eng.db.update(&r)?;
            Ok(true)
        }
        Some(mut r) => {
            // Stopped during the backoff: exited, as it was.
            r.state = State::Exited;
            r.monitor_pid = 0;
            r.monitor_start = 0;
            eng.db.update(&r)?;
            Ok(false)
        }
        None => Ok(false),
    }
}
