//! Files and directories the steps share: a path as a mount source, file
//! modes, a read-only overlay of the layers, removal on drop.

use std::path::{Path, PathBuf};

use crate::BuildError;

/// A path as it may go into a `--mount` value (comma-separated
/// key=value fields): one holding a comma is refused, never split.
/// A mount path as the runtime's config holds it (UTF-8).
pub(super) fn mount_path(p: &Path) -> Result<String, BuildError> {
    p.to_str().map(str::to_string).ok_or_else(|| {
        BuildError::Invalid(format!(
            "the mount path {} is not UTF-8: use a store root and mount targets that are",
            p.display()
        ))
    })
}

/// A directory removed when dropped.
pub(super) struct Cleanup(pub(super) PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = berth_image::layer::remove_dir_all(&self.0);
    }
}

pub(super) fn set_mode(p: &Path, mode: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| BuildError::io(format!("chmod {}", p.display()), e))
}

/// Mounts `lowers` (top first) read-only at `target`.
pub(super) fn mount_ro(target: &Path, lowers: &[PathBuf]) -> Result<(), BuildError> {
    let data = if lowers.len() == 1 {
        // One layer needs no overlay: a read-only bind.
        rustix::mount::mount_bind(&lowers[0], target)
            .map_err(|e| BuildError::io("bind the source layer", e.into()))?;
        // Read-only, or not at all: a writable view of a store snapshot
        // must never be left where cleanup could remove through it.
        if let Err(e) = rustix::mount::mount_remount(
            target,
            rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY,
            "",
        ) {
            let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
            return Err(BuildError::io("make the source layer read-only", e.into()));
        }
        return Ok(());
    } else {
        format!(
            "lowerdir={}",
            lowers
                .iter()
                .map(|p| berth_engine::rootfs::escape(&p.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(":")
        )
    };
    let data = std::ffi::CString::new(data)
        .map_err(|_| BuildError::Invalid("a store path contains NUL".into()))?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        Some(data.as_c_str()),
    )
    .map_err(|e| BuildError::io("mount the source stage", e.into()))
}
