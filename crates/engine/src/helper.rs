//! berth's helper processes: the container monitor, the exec keeper, the
//! health checker and the copy helper. Each is the berth binary executed
//! again in a hidden mode (`berth --berth-helper ROLE ...`, as conmon and
//! containerd-shim are programs of their own), never a fork of the caller:
//! a multi-threaded caller (the daemon) starts them as safely as the CLI.
//!
//! A helper gets its request in its arguments or as JSON on its stdin, and
//! reports once, as one JSON line on its stdout ([`Report`]), whether it
//! did what it was started for; after that its stdio is /dev/null, so a
//! caller reading the report to its end does not wait for the helper.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::{EngineError, Paths};

/// The first argument that makes the berth binary a helper.
pub const FLAG: &str = "--berth-helper";

static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// The program helpers are started from: the running binary unless a
/// front end says otherwise (it must call `helper_main::dispatch` first
/// thing).
pub fn set_program(path: PathBuf) {
    let _ = PROGRAM.set(path);
}

fn program() -> PathBuf {
    PROGRAM
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

/// What a helper says once: it did what it was started for, or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    Ok,
    Failed(Failure),
}

/// An engine error as it crosses a process boundary: its kind and its
/// message, so the caller gets the same error back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Invalid,
    NoSuchContainer,
    NoSuchImage,
    Conflict,
    /// The command could not be executed (126) or was not found (127).
    Exec(u8),
    /// Everything else: I/O, database, store, runtime.
    Internal,
}

impl From<&EngineError> for Failure {
    fn from(e: &EngineError) -> Failure {
        let kind = match e {
            EngineError::Invalid(_) | EngineError::Ambiguous(_) => FailureKind::Invalid,
            EngineError::NoSuchContainer(_) => FailureKind::NoSuchContainer,
            EngineError::NoSuchImage(_) => FailureKind::NoSuchImage,
            EngineError::NameInUse { .. } | EngineError::Conflict(_) => FailureKind::Conflict,
            EngineError::Exec { code, .. } => FailureKind::Exec(*code),
            _ => FailureKind::Internal,
        };
        let message = match e {
            EngineError::NoSuchContainer(n) | EngineError::NoSuchImage(n) => n.clone(),
            e => berth_runtime::container::chain(e),
        };
        Failure { kind, message }
    }
}

impl From<Failure> for EngineError {
    fn from(f: Failure) -> EngineError {
        match f.kind {
            FailureKind::Invalid => EngineError::Invalid(f.message),
            FailureKind::NoSuchContainer => EngineError::NoSuchContainer(f.message),
            FailureKind::NoSuchImage => EngineError::NoSuchImage(f.message),
            FailureKind::Conflict => EngineError::Conflict(f.message),
            FailureKind::Exec(code) => EngineError::Exec {
                code,
                message: f.message,
            },
            FailureKind::Internal => EngineError::Helper(f.message),
        }
    }
}

/// A helper's end of the report: written once, then closed.
pub(crate) struct Reporter(Option<std::fs::File>);

impl Reporter {
    /// A reporter for a monitor that is its caller's own process.
    pub fn none() -> Reporter {
        Reporter(None)
    }

    pub fn send(&mut self, r: &Report) {
        if let Some(mut f) = self.0.take() {
            let mut line = serde_json::to_vec(r).expect("a report serializes");
            line.push(b'\n');
            let _ = f.write_all(&line);
        }
    }

    pub fn ok(&mut self) {
        self.send(&Report::Ok);
    }

    pub fn fail(&mut self, e: &EngineError) {
        self.send(&Report::Failed(e.into()));
    }
}

/// Starts helper `role` with `args`; its stdin is `stdin`, its stdout the
/// report pipe, its stderr /dev/null.
pub(crate) fn spawn(
    role: &str,
    paths: &Paths,
    args: &[&OsStr],
    stdin: Stdio,
) -> Result<Child, EngineError> {
    Command::new(program())
        .arg(FLAG)
        .arg(role)
        .arg(&paths.root)
        .arg(&paths.runroot)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| EngineError::io(format!("start the {role} helper"), e))
}

/// Reads the one report of `child` (`what`: "the container's monitor");
/// a helper that ended without one is an error, and is reaped.
pub(crate) fn report(child: &mut Child, what: &str) -> Result<(), EngineError> {
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    match serde_json::from_str::<Report>(text.trim_end()) {
        Ok(Report::Ok) => Ok(()),
        Ok(Report::Failed(f)) => {
            let _ = child.wait();
            Err(f.into())
        }
        Err(_) => {
            let status = child.wait();
            Err(EngineError::Helper(format!(
                "{what} exited before reporting ({})",
                status.map_or_else(|e| e.to_string(), |s| s.to_string())
            )))
        }
    }
}

/// Reaps a helper that outlives its report, from a thread of its own, so
/// that a long-lived caller (the daemon) keeps no zombie; a caller that
/// exits first leaves it to init.
pub(crate) fn reap_later(mut child: Child) {
    let _ = std::thread::Builder::new()
        .name("berth-reap".into())
        .spawn(move || {
            let _ = child.wait();
        });
}

/// The report pipe (our stdout), with /dev/null put in its place so that
/// nothing else the helper runs writes into it or holds it open.
pub(crate) fn take_stdout() -> Reporter {
    // SAFETY: fcntl F_DUPFD_CLOEXEC on fd 1 returns a new fd that only this
    // OwnedFd owns (or -1, checked).
    let dup = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Reporter(None);
    }
    // SAFETY: `dup` is a fresh fd owned by nobody else.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(dup) });
    null_stdio(&[1]);
    Reporter(Some(file))
}

/// /dev/null onto the given standard fds.
pub(crate) fn null_stdio(fds: &[i32]) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for &fd in fds {
            // SAFETY: dup2 onto a standard fd of our own process.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
        }
    }
}

/// A helper that outlives its caller (monitor, exec keeper): a session of
/// its own, so that the caller's terminal and process group (a Ctrl-C in
/// it) do not reach it.
pub(crate) fn detach() {
    let _ = rustix::process::setsid();
}

/// The request on our stdin (JSON), read to its end; stdin is /dev/null
/// after.
pub(crate) fn read_request<T: serde::de::DeserializeOwned>() -> Result<T, EngineError> {
    let mut text = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut text)
        .map_err(|e| EngineError::io("read the helper's request", e))?;
    null_stdio(&[0]);
    serde_json::from_slice(&text)
        .map_err(|e| EngineError::Helper(format!("the helper's request: {e}")))
}

/// Starts helper `role` with `request` as JSON on its stdin.
pub(crate) fn spawn_with_request(
    role: &str,
    paths: &Paths,
    request: &impl Serialize,
) -> Result<Child, EngineError> {
    let mut child = spawn(role, paths, &[], Stdio::piped())?;
    let body = serde_json::to_vec(request).expect("a request serializes");
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that died at once is reported by `report`.
        let _ = stdin.write_all(&body);
    }
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_crosses_the_process_boundary_with_its_kind() {
        for e in [
            EngineError::Invalid("bad".into()),
            EngineError::NoSuchContainer("web".into()),
            EngineError::NoSuchImage("alpine".into()),
            EngineError::Conflict("running".into()),
            EngineError::Exec {
                code: 127,
                message: "not found".into(),
            },
        ] {
            let line = serde_json::to_string(&Report::Failed((&e).into())).unwrap();
            let Report::Failed(f) = serde_json::from_str(&line).unwrap() else {
                panic!("{line}");
            };
            let back = EngineError::from(f);
            assert_eq!(back.to_string(), e.to_string(), "{line}");
            assert_eq!(back.exit_code(), e.exit_code());
        }
        let io = EngineError::io("open x", std::io::Error::other("denied"));
        let back = EngineError::from(Failure::from(&io));
        assert!(matches!(back, EngineError::Helper(_)));
        assert_eq!(back.to_string(), "open x: denied");
    }
}
