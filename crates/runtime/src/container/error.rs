//! The lifecycle's errors, and an error's causes on one line.

use std::io;

use crate::spec::SpecError;
use crate::state::{StateError, Status};

/// Errors of the lifecycle commands.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("container init failed: {0}")]
    Init(String),
    #[error("exec failed: {0}")]
    Exec(String),
    /// The process's program could not be run: not found (127) or not
    /// executable (126).
    #[error("{}: {message}", if *exec { "exec failed" } else { "container init failed" })]
    Command {
        exec: bool,
        failure: Failure,
        message: String,
    },
    #[error("container {id:?} is {status}: {what}")]
    WrongState {
        id: String,
        status: Status,
        what: &'static str,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error("linux.seccomp")]
    Seccomp(#[from] crate::seccomp::SeccompError),
}

pub(super) fn sys(what: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Sys { what, source }
}

/// An error and its causes on one line, each cause once.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Why a container's process could not be started, as init or an exec
/// process tells the runtime (`sync::Message::Failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Setting the process up failed (namespaces, mounts, credentials...).
    Setup,
    /// The program does not exist (docker's 127).
    NotFound,
    /// The program exists but cannot be executed (docker's 126).
    NotExecutable,
}

impl Failure {
    pub(super) fn byte(self) -> u8 {
        match self {
            Failure::Setup => b's',
            Failure::NotFound => b'n',
            Failure::NotExecutable => b'x',
        }
    }

    pub(super) fn from_byte(b: u8) -> Option<Failure> {
        Some(match b {
            b's' => Failure::Setup,
            b'n' => Failure::NotFound,
            b'x' => Failure::NotExecutable,
            _ => return None,
        })
    }

    /// What a failed execve's errno means.
    pub fn of_errno(errno: i32) -> Failure {
        match errno {
            libc::ENOENT | libc::ENOTDIR => Failure::NotFound,
            libc::EACCES | libc::ENOEXEC | libc::EISDIR => Failure::NotExecutable,
            _ => Failure::Setup,
        }
    }
}
