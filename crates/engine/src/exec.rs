//! `berth exec`: another process in a running container. It joins every
//! namespace and the cgroup of the container's init and gets the
//! container's seccomp filter, capabilities, user, environment and working
//! directory, each overridable as with `docker exec`. Its output goes to the
//! caller only (never to the container's log), as with Docker.

use std::io::Write;

use oci_spec::runtime::{Box as ConsoleBox, Process, User};

use crate::db::State;
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
    pub detach: bool,
    pub privileged: bool,
}

/// The process to run, from the container's own with `cfg` applied.
fn process(eng: &Engine, id: &str, cfg: &ExecConfig) -> Result<Process, EngineError> {
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
        if let Some((rows, cols)) = crate::io::own_size() {
            let b: ConsoleBox = serde_json::from_value(serde_json::json!(
                {"height": rows, "width": cols}
            ))
            .expect("a valid console size");
            p.set_console_size(Some(b));
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
        let caps = serde_json::from_value(serde_json::json!(
            {"bounding": all, "effective": all, "permitted": all}
        ))
        .map_err(|e| EngineError::Invalid(format!("capabilities: {e}")))?;
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// Runs `cfg.cmd` in container `key`. In the foreground, relays its stdio
/// (and signals) and returns its exit code; detached (`-d`), returns 0 once
/// it runs, and a keeper process waits for it.
pub fn exec(eng: &mut Engine, key: &str, cfg: &ExecConfig) -> Result<i32, EngineError> {
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
    let mut process = process(eng, &rec.id, cfg)?;
    if cfg.detach {
        // Nobody reads a detached process's output (as with Docker).
        process.set_terminal(Some(false));
    }
    let opts = |stdio, console_fd| berth_runtime::container::ExecOptions {
        root: eng.paths.runtime(),
        id: rec.id.clone(),
        process: process.clone(),
        detach: true,
        pid_file: None,
        console_socket: None,
        preserve_fds: 0,
        stdio,
        console_fd,
    };
    if cfg.detach {
        let null = crate::io::dev_null()?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&null);
        return detached(&opts(Some([fd, fd, fd]), None)).map(|()| 0);
    }
    let sigfd = signal_fd(true)?;
    let wiring = Wiring::new(cfg.tty, cfg.interactive)?;
    let pid = berth_runtime::container::spawn(&opts(Some(wiring.stdio()), wiring.console_fd()))
        .map_err(exec_error)?;
    let mut running = wiring.started(pid)?;
    let raw = (cfg.tty && cfg.interactive)
        .then(crate::io::RawMode::enter)
        .flatten();
    let code = relay(
        &mut running,
        &sigfd,
        crate::io::RelayOpts {
            echo: true,
            stdin: cfg.interactive.then_some(0),
            ..Default::default()
        },
    );
    drop(raw);
    Ok(code)
}

/// `exec -d`: a keeper process in its own session starts the process,
/// reports, and waits for it (so that it is reaped, whatever the host's
/// init does with orphans).
fn detached(opts: &berth_runtime::container::ExecOptions) -> Result<(), EngineError> {
    crate::io::fork_helper("the exec keeper", |mut report| {
        match berth_runtime::container::spawn(opts) {
            Ok(child) => {
                let _ = report.write_all(b"ok");
                drop(report);
                // SAFETY: reap our own child.
                unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
                0
            }
            Err(e) => {
                let e = exec_error(e);
                let _ = report.write_all(format!("{} {e}", e.exit_code()).as_bytes());
                1
            }
        }
    })
}

fn exec_error(e: berth_runtime::container::ContainerError) -> EngineError {
    crate::monitor::command_error(e, "OCI runtime exec failed")
}
