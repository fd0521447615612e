//! Opening paths inside a root directory that may hold hostile symlinks
//! (an image's root file system, a layer being extracted, a build
//! context): the kernel resolves every component with
//! `openat2(RESOLVE_IN_ROOT)`, so no symlink or `..` leads outside the
//! root, and `RESOLVE_NO_MAGICLINKS` refuses `/proc/*/fd`-style links.
//!
//! Written once for the runtime, the image store, the engine and the
//! builder; it imports nothing of berth, so the runtime stays a library
//! of its own.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// How many times an `openat2` that answered EAGAIN is tried again.
const RETRIES: usize = 100;

/// `openat2`, retried while the kernel answers EAGAIN: with
/// `RESOLVE_IN_ROOT` or `RESOLVE_BENEATH` it gives up when a rename or a
/// mount anywhere raced the lookup, and asks the caller to try again.
pub fn openat2_retry<Fd: AsFd, P: rustix::path::Arg + Copy>(
    dirfd: Fd,
    path: P,
    oflags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> rustix::io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(&dirfd, path, oflags, mode, resolve) {
            Err(Errno::AGAIN) if tries < RETRIES => tries += 1,
            r => return r,
        }
    }
}

/// Opens the directory `path` (host path) as the root of later lookups:
/// an `O_PATH` fd.
pub fn open_root(path: impl AsRef<Path>) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path.as_ref(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens `rel` inside `root` as if `root` were `/` (a leading `/` is
/// ignored, an empty path is the root itself), with `oflags` and
/// `O_CLOEXEC`; symlinks are followed inside the root (add
/// `OFlags::NOFOLLOW` for the last component), magic links refused.
pub fn open_in_root(
    root: impl AsFd,
    rel: impl AsRef<Path>,
    oflags: OFlags,
) -> Result<OwnedFd, Errno> {
    let bytes = rel.as_ref().as_os_str().as_bytes();
    let start = bytes.iter().take_while(|&&b| b == b'/').count();
    let rel = match &bytes[start..] {
        [] => Path::new("."),
        rest => Path::new(std::ffi::OsStr::from_bytes(rest)),
    };
    openat2_retry(
        root,
        rel,
        oflags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// The path through which an fd's file can be reached
/// (`/proc/self/fd/N`), for the calls that take only paths.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_dotdot_stay_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/secret"), "inside").unwrap();
        // An absolute link and a climbing one both name the host's file
        // from outside; inside the root they resolve to the root's own.
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("abs")).unwrap();
        let climb = format!("../../../../..{}/secret", outside.path().display());
        std::os::unix::fs::symlink(&climb, root.path().join("climb")).unwrap();
        std::os::unix::fs::symlink("/etc/secret", root.path().join("inner")).unwrap();
        let dir =
            rustix::fs::open(root.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let read = |rel: &str| {
            open_in_root(&dir, rel, OFlags::RDONLY)
                .map(|fd| std::fs::read_to_string(fd_path(&fd)).unwrap())
        };
        assert_eq!(read("inner").unwrap(), "inside");
        assert_eq!(read("/etc/../etc/secret").unwrap(), "inside");
        assert_eq!(read("abs"), Err(Errno::NOENT));
        assert_eq!(read("climb"), Err(Errno::NOENT));
        assert_eq!(read("../../secret"), Err(Errno::NOENT));
        // The root itself, by an empty path or "/".
        for r in ["", "/", "//"] {
            let fd = open_in_root(&dir, r, OFlags::PATH | OFlags::DIRECTORY).unwrap();
            assert_eq!(std::fs::read_link(fd_path(&fd)).unwrap(), root.path());
        }
        // NOFOLLOW opens the link itself.
        let fd = open_in_root(&dir, "abs", OFlags::PATH | OFlags::NOFOLLOW).unwrap();
        let st = rustix::fs::fstat(&fd).unwrap();
        assert_eq!(st.st_mode & 0o170000, 0o120000);
    }

    #[test]
    fn magic_links_are_refused() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/proc/self/root", root.path().join("escape")).unwrap();
        let dir =
            rustix::fs::open(root.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        // Inside the root /proc does not exist; a /proc link in a real
        // rootfs with /proc mounted would be refused by NO_MAGICLINKS.
        assert!(open_in_root(&dir, "escape/etc/passwd", OFlags::RDONLY).is_err());
        let proc =
            rustix::fs::open("/proc", OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let e = open_in_root(&proc, "self/root/etc/passwd", OFlags::RDONLY).unwrap_err();
        assert!(matches!(e, Errno::LOOP | Errno::XDEV), "{e}");
    }
}
