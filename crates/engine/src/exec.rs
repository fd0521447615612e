//! `berth exec`: another process in a running container. It joins every
//! namespace and the cgroup of the container's init and gets the
//! container's seccomp filter, capabilities, user, environment and working
//! directory, each overridable as with `docker exec`. Its output goes to the
//! caller only (never to the container's log), as with Docker.

use oci_spec::runtime::{Process, User};
use serde::{Deserialize, Serialize};

use crate::db::State;
use crate::helper::Reporter;
use crate::io::{relay, signal_fd, Wiring};
use crate::Engine;
use crate::EngineError;

/// `docker exec`'s options.
#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    /// `-e`: added to (or replacing in) the container's environment.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub privileged: bool,
}

/// The process to run, from the container's own with `cfg` applied.
fn process(
    eng: &Engine,
    id: &str,
    cfg: &ExecConfig,
    size: Option<(u16, u16)>,
) -> Result<Process, EngineError> {
    if cfg.cmd.is_empty() {
        return Err(EngineError::Invalid(
            "exec needs a command to run: berth exec CONTAINER COMMAND [ARG...]".into(),
        ));
    }
    let rt = eng.paths.runtime();
    let mut p = berth_runtime::container::exec_base(&rt, id)?;
    let mut env = p.env().clone().unwrap_or_default();
    let mut set = |kv: &str| {
        let key = kv.split_once('=').map_or(kv, |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv.to_string());
    };
    if cfg.tty {
        set("TERM=xterm");
    }
    for e in &cfg.env {
        set(e);
    }
    p.set_env(Some(env));
    p.set_args(Some(cfg.cmd.clone()));
    p.set_terminal(Some(cfg.tty));
    p.set_console_size(None);
    if cfg.tty {
        if let Some((rows, cols)) = size {
            p.set_console_size(Some(crate::spec::console_size(rows, cols)));
        }
    }
    if let Some(w) = &cfg.workdir {
        if !w.starts_with('/') {
            return Err(EngineError::Invalid(format!(
                "the working directory {w:?} is invalid: it needs to be an absolute path"
            )));
        }
        p.set_cwd(w.into());
    }
    if let Some(u) = &cfg.user {
        let user = crate::users::resolve(&eng.layout(id).merged(), u)?;
        let mut ou = User::default();
        ou.set_uid(user.uid);
        ou.set_gid(user.gid);
        if !user.additional_gids.is_empty() {
            ou.set_additional_gids(Some(user.additional_gids));
        }
        p.set_user(ou);
    }
    if cfg.privileged {
        let all = crate::spec::capabilities(&crate::config::ContainerConfig {
            privileged: true,
            ..Default::default()
        })?;
        p.set_capabilities(Some(crate::spec::capability_sets(&all)?));
    }
    Ok(p)
}

/// The running container `key` and the process `cfg` asks for in it.
fn prepare(
    eng: &mut Engine,
    key: &str,
    cfg: &ExecConfig,
    size: Option<(u16, u16)>,
) -> Result<(String, Process), EngineError> {
    let rec = eng.get(key)?;
    match rec.state {
        State::Running => {}
        State::Paused => {
            return Err(EngineError::Conflict(format!(
                "container {} is paused, unpause the container before exec",
                rec.id
            )))
        }
        _ => {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                rec.id
            )))
        }
    }
    let process = process(eng, &rec.id, cfg, size)?;
    Ok((rec.id, process))
}

/// A new exec instance of container `id`, recorded (Docker's exec id).
fn record(eng: &Engine, id: &str, process: &Process) -> Result<String, EngineError> {
    record_with(eng, id, process, false)
}

fn record_with(
    eng: &Engine,
    id: &str,
    process: &Process,
    open_stdin: bool,
) -> Result<String, EngineError> {
    let exec_id = crate::new_id();
    eng.db.insert_exec(&crate::db::ExecRecord {
        id: exec_id.clone(),
        container: id.to_string(),
        config: serde_json::to_string(process).expect("a process serializes"),
        running: false,
        pid: 0,
        exit_code: None,
        open_stdin,
    })?;
    Ok(exec_id)
}

/// The Engine API's exec create: an exec instance of `cfg` in the running
/// container `key`, made now and started later (`start_attached`,
/// `start_detached`). Returns its id.
pub fn create(eng: &mut Engine, key: &str, cfg: &ExecConfig) -> Result<String, EngineError> {
    let (id, process) = prepare(eng, key, cfg, None)?;
    record_with(eng, &id, &process, cfg.interactive)
}

/// An exec instance that may still be started.
fn startable(eng: &mut Engine, exec_id: &str) -> Result<crate::db::ExecRecord, EngineError> {
    let e = eng
        .db
        .get_exec(exec_id)?
        .ok_or_else(|| EngineError::NoSuchExec(exec_id.to_string()))?;
    let rec = eng.get(&e.container)?;
    if rec.state != State::Running {
        return Err(EngineError::Conflict(format!(
            "container {} is not running",
            rec.id
        )));
    }
    if !eng.db.claim_exec(exec_id)? {
        return Err(EngineError::Conflict(format!(
            "exec {exec_id} has been started already"
        )));
    }
    Ok(e)
}

/// Where an attached exec's keeper serves its process's streams.
fn exec_socket(eng: &Engine, exec_id: &str) -> std::path::PathBuf {
    eng.paths
        .runroot
        .join("attach")
        .join(format!("exec-{}.sock", &exec_id[..exec_id.len().min(16)]))
}

/// Starts a created exec whose caller stays attached: its keeper serves
/// the process's output and input on a socket (Docker's stream format)
/// and waits for the connection made here, given to `hand_over`, before
/// it starts the process. The exit code is recorded before the keeper
/// closes the connection. `size` is a terminal's rows and columns.
pub fn start_attached(
    eng: &mut Engine,
    exec_id: &str,
    size: Option<(u16, u16)>,
    hand_over: impl FnOnce(Option<std::os::unix::net::UnixStream>),
) -> Result<(), EngineError> {
    let e = startable(eng, exec_id)?;
    let mut process: Process = serde_json::from_str(&e.config)
        .map_err(|err| EngineError::Invalid(format!("exec {exec_id}: its process: {err}")))?;
    if let (Some(true), Some((rows, cols))) = (process.terminal(), size) {
        process.set_console_size(Some(crate::spec::console_size(rows, cols)));
    }
    let socket = exec_socket(eng, exec_id);
    let _ = std::fs::remove_file(&socket);
    let mut child = crate::helper::spawn_with_request(
        "exec",
        &eng.paths,
        &KeeperRequest {
            exec_id: exec_id.to_string(),
            container: e.container.clone(),
            process,
            attach: Some(AttachRequest {
                socket: socket.clone(),
                stdin: e.open_stdin,
            }),
        },
    )?;
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stream = loop {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(s) => break Some(s),
            Err(_) if std::time::Instant::now() < end => {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break None;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(_) => break None,
        }
    };
    hand_over(stream);
    crate::helper::report(&mut child, "the exec keeper")?;
    crate::helper::reap_later(child);
    Ok(())
}

/// Starts a created exec with nobody attached (`Detach`).
pub fn start_detached(eng: &mut Engine, exec_id: &str) -> Result<(), EngineError> {
    let e = startable(eng, exec_id)?;
    let mut process: Process = serde_json::from_str(&e.config)
        .map_err(|err| EngineError::Invalid(format!("exec {exec_id}: its process: {err}")))?;
    process.set_terminal(Some(false));
    process.set_console_size(None);
    let mut child = crate::helper::spawn_with_request(
        "exec",
        &eng.paths,
        &KeeperRequest {
            exec_id: exec_id.to_string(),
            container: e.container,
            process,
            attach: None,
        },
    )?;
    crate::helper::report(&mut child, "the exec keeper")?;
    crate::helper::reap_later(child);
    Ok(())
}

fn options(
    eng: &Engine,
    id: &str,
    process: Process,
    stdio: [std::os::fd::RawFd; 3],
    console_fd: Option<std::os::fd::RawFd>,
) -> berth_runtime::container::ExecOptions {
    berth_runtime::container::ExecOptions {
        root: eng.paths.runtime(),
        id: id.to_string(),
        process,
        detach: true,
        pid_file: None,
        console_socket: None,
        preserve_fds: 0,
        stdio: Some(stdio),
        console_fd,
    }
}

/// Runs `cfg.cmd` in container `key` in the foreground: relays its stdio
/// to and from `caller` (and the signals we get to it) and returns its
/// exit code, which is recorded with the exec.
pub fn exec(
    eng: &mut Engine,
    key: &str,
    cfg: &ExecConfig,
    caller: &mut crate::io::Caller<'_>,
) -> Result<i32, EngineError> {
    let (id, process) = prepare(eng, key, cfg, caller.size())?;
    let exec_id = record(eng, &id, &process)?;
    let sigfd = signal_fd(true)?;
    let wiring = Wiring::new(cfg.tty, cfg.interactive)?;
    let opts = options(eng, &id, process, wiring.stdio(), wiring.console_fd());
    let pid = match berth_runtime::container::spawn(&opts) {
        Ok(pid) => pid,
        Err(e) => {
            let e = exec_error(e);
            eng.db.exec_exited(&exec_id, Some(e.exit_code().into()))?;
            return Err(e);
        }
    };
    eng.db.exec_started(&exec_id, pid)?;
    let mut running = wiring.started(pid)?;
    let raw = (cfg.tty && cfg.interactive).then(|| caller.raw()).flatten();
    let code = relay(
        &mut running,
        &sigfd,
        crate::io::RelayOpts {
            caller: Some(&mut *caller),
            ..Default::default()
        },
    );
    drop(raw);
    eng.db.exec_exited(&exec_id, Some(code))?;
    Ok(code)
}

/// What the exec keeper is asked to run.
#[derive(Serialize, Deserialize)]
struct KeeperRequest {
    exec_id: String,
    container: String,
    process: Process,
    /// Serve the process's streams to one attached client.
    #[serde(default)]
    attach: Option<AttachRequest>,
}

#[derive(Serialize, Deserialize)]
struct AttachRequest {
    socket: std::path::PathBuf,
    /// The client's input is the process's stdin.
    stdin: bool,
}

/// `exec -d`: returns the exec's id once its process runs. A keeper (helper
/// role `exec`, in its own session) starts it, waits for it (so that it is
/// reaped, whatever the host's init does with orphans) and records its
/// exit code. Nobody reads a detached process's output (as with Docker).
pub fn exec_detached(eng: &mut Engine, key: &str, cfg: &ExecConfig) -> Result<String, EngineError> {
    let (id, mut process) = prepare(eng, key, cfg, None)?;
    process.set_terminal(Some(false));
    process.set_console_size(None);
    let exec_id = record(eng, &id, &process)?;
    let mut child = crate::helper::spawn_with_request(
        "exec",
        &eng.paths,
        &KeeperRequest {
            exec_id: exec_id.clone(),
            container: id,
            process,
            attach: None,
        },
    )?;
    crate::helper::report(&mut child, "the exec keeper")?;
    crate::helper::reap_later(child);
    Ok(exec_id)
}

/// The exec keeper's life (helper role `exec`).
pub(crate) fn keeper_main(paths: &crate::Paths, reporter: &mut Reporter) -> i32 {
    let req: KeeperRequest = match crate::helper::read_request() {
        Ok(r) => r,
        Err(e) => {
            reporter.fail(&e);
            return 1;
        }
    };
    if let Some(a) = req.attach.as_ref() {
        let a = AttachRequest {
            socket: a.socket.clone(),
            stdin: a.stdin,
        };
        return match keep_attached(paths, &req, &a, reporter) {
            Ok(()) => 0,
            Err(e) => {
                reporter.fail(&e);
                1
            }
        };
    }
    let run = move || -> Result<(Engine, KeeperRequest, i32), EngineError> {
        let eng = Engine::open(paths)?;
        let null = crate::io::dev_null()?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&null);
        let opts = options(&eng, &req.container, req.process.clone(), [fd; 3], None);
        match berth_runtime::container::spawn(&opts) {
            Ok(pid) => {
                eng.db.exec_started(&req.exec_id, pid)?;
                Ok((eng, req, pid))
            }
            Err(e) => {
                let e = exec_error(e);
                let _ = eng.db.exec_exited(&req.exec_id, Some(e.exit_code().into()));
                Err(e)
            }
        }
    };
    match run() {
        Ok((eng, req, pid)) => {
            reporter.ok();
            let mut status = 0;
            // SAFETY: pid is our child; status is a valid out-parameter.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            let code = berth_runtime::signal::exit_code(status);
            let _ = eng.db.exec_exited(&req.exec_id, Some(code));
            0
        }
        Err(e) => {
            reporter.fail(&e);
            1
        }
    }
}

/// An attached exec's keeper: serves the process's streams on the
/// socket (to the one client its caller connects before the start),
/// relays until the process exits, records the exit code, and only then
/// closes the client's connection.
fn keep_attached(
    paths: &crate::Paths,
    req: &KeeperRequest,
    a: &AttachRequest,
    reporter: &mut Reporter,
) -> Result<(), EngineError> {
    let eng = Engine::open(paths)?;
    let tty = req.process.terminal().unwrap_or(false);
    let mut server = crate::io::AttachServer::bind(&a.socket, tty, true)?;
    server.wait_for_clients(1, std::time::Duration::from_secs(10));
    let sigfd = signal_fd(false)?;
    let wiring = Wiring::new(tty, a.stdin)?;
    let opts = options(
        &eng,
        &req.container,
        req.process.clone(),
        wiring.stdio(),
        wiring.console_fd(),
    );
    let pid = match berth_runtime::container::spawn(&opts) {
        Ok(pid) => pid,
        Err(e) => {
            let e = exec_error(e);
            eng.db
                .exec_exited(&req.exec_id, Some(e.exit_code().into()))?;
            return Err(e);
        }
    };
    eng.db.exec_started(&req.exec_id, pid)?;
    let mut running = wiring.started(pid)?;
    reporter.ok();
    let code = relay(
        &mut running,
        &sigfd,
        crate::io::RelayOpts {
            attach: Some(&mut server),
            ..Default::default()
        },
    );
    eng.db.exec_exited(&req.exec_id, Some(code))?;
    drop(server);
    Ok(())
}

fn exec_error(e: berth_runtime::container::ContainerError) -> EngineError {
    crate::monitor::command_error(e, "OCI runtime exec failed")
}
