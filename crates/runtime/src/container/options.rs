//! What `create` and `exec` take besides the bundle.

use std::path::PathBuf;

/// What `create` needs besides the bundle.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    /// The runtime's state root (runc's `--root`).
    pub root: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    /// Extra fds (3, 4, ...) passed to the container's process.
    pub preserve_fds: u32,
    /// The container's stdin, stdout and stderr, when they are not the
    /// caller's own (`berth run` passes pipes or a terminal).
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// A connected socket to send the pty master to, instead of
    /// `console_socket`'s path (an in-process caller's socketpair end).
    pub console_fd: Option<std::os::fd::RawFd>,
    /// `--init`: init stays as the container's pid 1, a reaper that runs
    /// the process as its child, forwards signals to it, reaps every
    /// orphan and exits with the process's status. Nothing is added to the
    /// container's filesystem.
    pub reaper: bool,
    /// Brings the loopback interface of a new network namespace up (as
    /// Docker's and Podman's network setup do; runc leaves it down).
    pub loopback: bool,
    /// Init is killed (SIGKILL) when the thread that created it dies: a
    /// build's RUN step must not outlive a killed build.
    pub die_with_parent: bool,
}

/// What `exec` runs in an existing container.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub root: PathBuf,
    pub id: String,
    pub process: oci_spec::runtime::Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// The process's stdin, stdout and stderr, when not the caller's own.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// A connected socket for the pty master (see `CreateOptions`).
    pub console_fd: Option<std::os::fd::RawFd>,
}
