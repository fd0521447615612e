//! Paths inside a root directory that may hold hostile symlinks (an image's
//! root file system, a build context): every lookup is done by the kernel
//! with `openat2(RESOLVE_IN_ROOT)`, so no link can lead outside the root.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::BuildError;

pub use inroot::fd_path;

pub fn open_root(root: &Path) -> Result<OwnedFd, BuildError> {
    inroot::open_root(root).map_err(|e| BuildError::io(format!("open {}", root.display()), e))
}

/// Opens `rel` (symlinks followed, inside the root) as an O_PATH fd.
pub fn open_in_root(root: &OwnedFd, rel: &str) -> Result<OwnedFd, rustix::io::Errno> {
    inroot::open_in_root(root, rel, OFlags::PATH)
}

/// Opens `rel` without following a symlink in its last component.
pub fn open_in_root_nofollow(root: &OwnedFd, rel: &str) -> Result<OwnedFd, rustix::io::Errno> {
    inroot::open_in_root(root, rel, OFlags::PATH | OFlags::NOFOLLOW)
}

/// Makes directory `rel` and its missing parents inside the root (links
/// followed inside it), new ones owned by `owner`; returns it opened, and
/// whether this call made it.
pub fn mkdir_all_in_root(
    root: &OwnedFd,
    rel: &str,
    owner: (u32, u32),
) -> Result<(OwnedFd, bool), BuildError> {
    let mut made = false;
    let mut cur = String::new();
    let mut fd = open_in_root(root, ".")
        .map_err(|e| BuildError::io("open the root".to_string(), e.into()))?;
    for comp in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(comp);
        match open_in_root(root, &cur) {
            Ok(next) => {
                let st = rustix::fs::fstat(&next)
                    .map_err(|e| BuildError::io(format!("stat /{cur}"), e.into()))?;
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    != rustix::fs::FileType::Directory
                {
                    return Err(BuildError::Invalid(format!(
                        "/{cur} exists and is not a directory"
                    )));
                }
                fd = next;
                made = false;
            }
            Err(rustix::io::Errno::NOENT) => {
                let parent = reopen_dir(&fd)?;
                match rustix::fs::mkdirat(&parent, comp, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(BuildError::io(format!("mkdir /{cur}"), e.into())),
                }
                let next = open_in_root(root, &cur)
                    .map_err(|e| BuildError::io(format!("open /{cur}"), e.into()))?;
                let dir = reopen_dir(&next)?;
                rustix::fs::fchown(
                    &dir,
                    Some(rustix::fs::Uid::from_raw(owner.0)),
                    Some(rustix::fs::Gid::from_raw(owner.1)),
                )
                .map_err(|e| BuildError::io(format!("chown /{cur}"), e.into()))?;
                fd = next;
                made = true;
            }
            Err(e) => return Err(BuildError::io(format!("open /{cur}"), e.into())),
        }
    }
    Ok((fd, made))
}

/// An O_PATH fd of a directory, opened for real (to create in or list).
pub fn reopen_dir(fd: &OwnedFd) -> Result<OwnedFd, BuildError> {
    rustix::fs::openat(
        fd.as_fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| BuildError::io("open a directory".to_string(), e.into()))
}

/// Whether `rel` is a directory inside the root (links followed inside it).
pub fn is_dir_in_root(root: &OwnedFd, rel: &str) -> bool {
    open_in_root(root, rel)
        .ok()
        .and_then(|fd| rustix::fs::fstat(&fd).ok())
        .is_some_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        })
}

/// Cleans a slash path: no empty or `.` components, `..` resolved
/// lexically (never above the root).
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}
