//! A created container's saved state as the lifecycle commands read it:
//! its config (hooks), its cgroups, and the OCI state hooks are given.

use std::fs;
use std::io;
use std::path::Path;

use oci_spec::runtime::Spec;

use super::error::ContainerError;
use super::options::CreateOptions;
use crate::state::{self, Saved};

/// The OCI state handed to hooks while the container is being created.
pub(super) fn creating_state(spec: &Spec, opts: &CreateOptions, pid: i32) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.2.0",
        "id": opts.id,
        "status": "creating",
        "pid": pid,
        "bundle": opts.bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    })
}

/// The saved config of a container (hooks for start and delete).
pub(super) fn saved_spec(root: &Path, id: &str) -> Option<Spec> {
    let raw = fs::read(state::dir(root, id).ok()?.join("config.json")).ok()?;
    serde_json::from_slice(&raw).ok()
}

pub(super) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("berth-tmp");
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}

pub(super) fn cgroup_of(
    saved: &Saved,
) -> Result<Box<dyn crate::cgroups::CgroupManager>, ContainerError> {
    Ok(crate::cgroups::manager(
        saved.cgroups_path.as_deref(),
        &saved.id,
    )?)
}
