//! The OCI runtime as the engine uses it, behind a trait: berth's runtime
//! library in-process (`Oci`) for every container, and a fake in the
//! engine's tests (processes on the host, no namespaces), so restart
//! policies, reconcile, `--rm` and stop/remove races are tested fast.

use std::path::Path;
use std::sync::Arc;

use berth_runtime::container::{ContainerError, CreateOptions};
use berth_runtime::state::Status;

/// What the engine asks of a runtime, by container id under `root` (the
/// runtime's state directory).
pub trait Runtime: Send + Sync {
    /// Creates the container of `opts.bundle` and returns its init's pid;
    /// init waits for `start`.
    fn create(&self, opts: &CreateOptions) -> Result<i32, ContainerError>;
    /// Lets init execute the container's program.
    fn start(&self, root: &Path, id: &str) -> Result<(), ContainerError>;
    fn kill(&self, root: &Path, id: &str, signal: i32) -> Result<(), ContainerError>;
    /// Removes the container's runtime state (`force`: killing it first).
    fn delete(&self, root: &Path, id: &str, force: bool) -> Result<(), ContainerError>;
    /// Changes the resource limits of a live container.
    fn update(
        &self,
        root: &Path,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), ContainerError> {
        berth_runtime::container::update(root, id, resources)
    }
    /// Freezes or thaws every process of the container.
    fn set_paused(&self, root: &Path, id: &str, paused: bool) -> Result<(), ContainerError>;
    /// Thaws a container frozen by a process that is gone.
    fn force_thaw(&self, root: &Path, id: &str) -> Result<(), ContainerError>;
    /// The container's status, None if the runtime has no state of it.
    fn status(&self, root: &Path, id: &str) -> Option<Status>;
    /// Whether the kernel's OOM killer killed a process of the container.
    fn oom_killed(&self, root: &Path, id: &str) -> bool;
}

/// berth's runtime library, in this process.
pub struct Oci;

impl Runtime for Oci {
    fn create(&self, opts: &CreateOptions) -> Result<i32, ContainerError> {
        berth_runtime::container::create(opts)
    }

    fn start(&self, root: &Path, id: &str) -> Result<(), ContainerError> {
        berth_runtime::container::start(root, id)
    }

    fn kill(&self, root: &Path, id: &str, signal: i32) -> Result<(), ContainerError> {
        berth_runtime::container::kill(root, id, signal)
    }

    fn delete(&self, root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
        berth_runtime::container::delete(root, id, force)
    }

    fn set_paused(&self, root: &Path, id: &str, paused: bool) -> Result<(), ContainerError> {
        berth_runtime::container::set_paused(root, id, paused)
    }

    fn force_thaw(&self, root: &Path, id: &str) -> Result<(), ContainerError> {
        berth_runtime::container::force_thaw(root, id)
    }

    fn status(&self, root: &Path, id: &str) -> Option<Status> {
        berth_runtime::state::Saved::load(root, id)
            .ok()
            .map(|s| s.status(root))
    }

    fn oom_killed(&self, root: &Path, id: &str) -> bool {
        berth_runtime::container::oom_killed(root, id)
    }
}

/// The runtime an engine opened with `Engine::open` uses.
pub fn default() -> Arc<dyn Runtime> {
    Arc::new(Oci)
}
