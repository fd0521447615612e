//! berth's containers: records in SQLite, overlay root filesystems, OCI
//! configs derived from images as Docker derives them, and the monitor that
//! owns a running container (its stdio, its logs, its exit code).

/// What a container is made of: run options and the image config.
pub mod attach;
pub mod changes;
/// Timestamps as Docker writes them.
pub mod clock;
pub mod config;
pub mod cp;
/// Container records.
pub mod db;
/// `Engine`: the container lifecycle: create, start (through the
/// monitor), stop, kill, remove, wait.
pub mod engine;
pub mod events;
pub mod exec;
pub mod health;
/// The helper processes: the berth binary executed again in a hidden mode.
pub mod helper;
/// A helper process's entry: `dispatch` from a front end's `main`.
pub mod helper_main;
mod io;
/// Docker's json-file logs.
pub mod logs;
/// The per-container monitor process and the foreground relay.
pub mod monitor;
/// Random container names.
pub mod names;
pub mod net;
/// Container options as types (mounts, restart policy, ulimits, security).
pub mod options;
/// A terminal's size, set from outside its monitor.
pub mod resize;
/// Overlay root filesystems and the /etc files.
pub mod rootfs;
/// The OCI runtime behind a trait (the library, or a fake in tests).
pub mod runtime;
/// Docker's seccomp profiles, turned into OCI's.
pub mod seccomp;
/// The OCI config derived from image and options.
pub mod spec;
/// Resource use of a running container (`docker stats`).
pub mod stats;
/// One process of a build step (RUN).
pub mod step;
/// `stop` and `rm`.
pub mod stop;
/// Docker's multiplexed stream framing.
pub mod stream;
pub mod update;
/// Users and groups from the image.
pub mod users;
pub mod volumes;
/// `wait` and its conditions.
pub mod wait;
/// Waiting on files and processes without polling.
pub mod watch;

use std::path::{Path, PathBuf};

pub use db::{Record, State};
pub use engine::{parse_signal, Engine};
pub use io::{Caller, Terminal};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Invalid(String),
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    /// A path a copy wants is not in the container (the message says it).
    #[error("{0}")]
    NoSuchPath(String),
    /// The image is not in the store (a front end decides whether to pull).
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("multiple containers match {0:?}: give more of the id")]
    Ambiguous(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Image(#[from] berth_image::store::StoreError),
    #[error(transparent)]
    Runtime(#[from] berth_runtime::container::ContainerError),
    /// The container's command could not be started: docker's 126/127.
    #[error("{message}")]
    Exec { code: u8, message: String },
    /// What a helper process (the monitor, the exec keeper) reported that
    /// is none of the kinds above.
    #[error("{0}")]
    Helper(String),
}

impl EngineError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> EngineError {
        EngineError::Io {
            what: what.into(),
            source,
        }
    }

    /// The exit code docker gives this error from `run`/`start`: 126 and 127
    /// for a command that cannot be executed or is not found, else 125.
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::Exec { code, .. } => *code,
            _ => 125,
        }
    }
}

/// Where berth keeps things: `root` (images, containers, database) and
/// `runroot` (runtime state, gone at reboot).
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub runroot: PathBuf,
}

impl Paths {
    pub fn new(root: &Path, runroot: &Path) -> Paths {
        Paths {
            root: root.to_path_buf(),
            runroot: runroot.to_path_buf(),
        }
    }

    /// The OCI runtime's state root.
    pub fn runtime(&self) -> PathBuf {
        self.runroot.join("runtime")
    }
}

/// 64 random hex digits.
pub fn new_id() -> String {
    berth_image::units::random_hex(32)
}
