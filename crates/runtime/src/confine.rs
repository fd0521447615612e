//! What keeps a process that is about to become the container's from
//! reaching the host: the fds it may hold, and its working directory
//! (CVE-2024-21626 class: an fd of the host's left open while the process
//! changes into `/proc/self/fd/N` gives it a cwd outside the container).
//!
//! Every fd the runtime opens is close-on-exec from the start; that alone
//! does not help here, since the cwd is entered before the exec. So the
//! process closes every fd it does not need before anything in the
//! container is resolved, the cwd is opened inside the root with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (no magic link of
//! /proc can be followed), `/proc/*/fd/*` paths are refused by name, and
//! the cwd is checked to be under the root once entered.

use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use inroot::openat2_retry;

/// Closes every fd of this process but those in `keep` (stdio is not kept
/// unless listed). Called in a forked, single-threaded child.
pub fn close_all_except(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|fd| **fd >= 0)
        .map(|fd| *fd as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 0u32;
    let mut ranges = Vec::with_capacity(keep.len() + 1);
    for k in keep.iter().copied() {
        if k > from {
            ranges.push((from, k - 1));
        }
        from = k + 1;
    }
    ranges.push((from, u32::MAX));
    for (lo, hi) in ranges {
        // SAFETY: close_range on this process's own fd table; nothing of
        // this process uses the closed fds afterwards (the caller lists
        // every fd it still needs in `keep`).
        let r = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0u32) };
        if r != 0 {
            // No close_range (before Linux 5.9, or filtered): one by one.
            let open: Vec<u32> = match std::fs::read_dir("/proc/self/fd") {
                Ok(d) => d
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect(),
                // No /proc either: every number up to the fd limit.
                Err(_) => {
                    let mut lim = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    // SAFETY: lim is a valid out-parameter.
                    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
                    let top = (lim.rlim_cur.min(1 << 20) as u32).min(hi.saturating_add(1));
                    (lo..top).collect()
                }
            };
            for fd in open.into_iter().filter(|fd| (lo..=hi).contains(fd)) {
                // SAFETY: as above, one fd at a time (the read_dir fd is
                // closed already and may be among them: EBADF is harmless).
                unsafe { libc::close(fd as i32) };
            }
        }
    }
}

/// In a process about to become a container's (init, or exec's child):
/// closes every fd but stdio, the `preserve_fds` after them, and the
/// runtime's own sockets (`sockets`).
pub fn close_inherited(preserve_fds: u32, sockets: &[RawFd]) {
    let mut keep = vec![0, 1, 2];
    keep.extend(3..3 + preserve_fds as RawFd);
    keep.extend_from_slice(sockets);
    close_all_except(&keep);
}

/// Lexically normalised `cwd` (`.` and `..` resolved, as the kernel would
/// for a path without links).
fn normalise(cwd: &Path) -> PathBuf {
    Path::new("/").join(crate::rootfs::inside(cwd))
}

/// Refuses a cwd that names a process's fd table, cwd, root or exe in
/// /proc: each is a magic link to wherever the fd or process points, the
/// host included.
pub fn check_cwd(cwd: &Path) -> Result<(), String> {
    if !cwd.is_absolute() {
        return Err(format!("cwd {cwd:?} is not an absolute path"));
    }
    let n = normalise(cwd);
    let parts: Vec<&str> = n.iter().skip(1).filter_map(|c| c.to_str()).collect();
    if parts.first() == Some(&"proc") && parts.len() >= 3 {
        let who = parts[1];
        let is_proc =
            who == "self" || who == "thread-self" || who.bytes().all(|b| b.is_ascii_digit());
        let what = if parts.len() >= 4 && parts[2] == "task" {
            parts[4.min(parts.len() - 1)]
        } else {
            parts[2]
        };
        if is_proc && matches!(what, "fd" | "cwd" | "root" | "exe" | "map_files" | "fdinfo") {
            return Err(format!(
                "cwd {cwd:?} is a path through a process's fds in /proc: refusing a working \
                 directory that can lead outside the container (set a directory of the image)"
            ));
        }
    }
    Ok(())
}

fn in_root<'a>(what: &str, cwd: &'a Path) -> impl FnOnce(rustix::io::Errno) -> String + 'a {
    let what = what.to_string();
    move |e| {
        let e = io::Error::from(e);
        if e.raw_os_error() == Some(libc::ELOOP) {
            format!("{what} {cwd:?}: it leads through a link that may leave the container ({e})")
        } else {
            format!("{what} {cwd:?}: {e}")
        }
    }
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// This process's root, for resolving the cwd inside it.
fn open_root(cwd: &Path) -> Result<std::os::fd::OwnedFd, String> {
    rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(in_root("opening the root for cwd", cwd))
}

/// Creates the missing directories of `cwd` under this process's root
/// (as runc does, before a read-only root is set), through the rootfs's
/// mount-target walk: links are followed inside the root, and nothing is
/// created outside it.
pub fn make_cwd(cwd: &Path) -> Result<(), String> {
    check_cwd(cwd)?;
    let root = open_root(cwd)?;
    crate::rootfs::open_target(&root, cwd, true)
        .map(drop)
        .map_err(|e| match std::error::Error::source(&e) {
            Some(s) => format!("creating cwd {cwd:?}: {e}: {s}"),
            None => format!("creating cwd {cwd:?}: {e}"),
        })
}

/// Makes `cwd`, resolved inside this process's root, the working
/// directory, and checks that it is under the root. Runs while still
/// privileged and before a seccomp filter is loaded (a profile may not
/// allow openat2 or getcwd), as runc changes directory before it sets the
/// user: a cwd only the container's user may enter (a volume owned by it
/// on a root-squashing file system) is refused to root with EACCES, and
/// then `Some` directory is returned for [`enter_cwd_as_user`].
pub fn enter_cwd(cwd: &Path) -> Result<Option<std::os::fd::OwnedFd>, String> {
    check_cwd(cwd)?;
    let root = open_root(cwd)?;
    let dir = openat2_retry(
        &root,
        cwd,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    )
    .map_err(in_root(
        "chdir to cwd set in config.json failed: cannot open",
        cwd,
    ))?;
    match rustix::process::fchdir(&dir) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::ACCESS || e == rustix::io::Errno::PERM => {
            return Ok(Some(dir));
        }
        Err(e) => return Err(in_root("chdir to cwd set in config.json failed", cwd)(e)),
    }
    check_cwd_inside(cwd, true)?;
    Ok(None)
}

/// The second try of [`enter_cwd`], as the container's user (after
/// setuid, maybe under a seccomp filter).
pub fn enter_cwd_as_user(dir: &std::os::fd::OwnedFd, cwd: &Path) -> Result<(), String> {
    rustix::process::fchdir(dir).map_err(in_root("chdir to cwd set in config.json failed", cwd))?;
    check_cwd_inside(cwd, false)
}

/// The kernel prefixes "(unreachable)" (glibc: ENOENT) when the cwd is
/// not under the process's root. A getcwd a seccomp filter refuses (any
/// other error) proves nothing either way: it counts only when `strict`
/// (no filter yet); the directory was opened inside the root regardless.
fn check_cwd_inside(cwd: &Path, strict: bool) -> Result<(), String> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: buf is writable for its whole length.
    let p = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    let unreachable = if p.is_null() {
        strict || io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT)
    } else {
        buf[0] != b'/'
    };
    if unreachable {
        return Err(format!(
            "cwd {cwd:?} is outside of the container's root: possible container breakout, refused"
        ));
    }
    Ok(())
}

/// Sets `lo` up in this process's network namespace (SIOCSIFFLAGS).
pub fn loopback_up() -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket() returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned here alone.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The exec stub (`stub/exec-stub.c`, built by build.rs).
static STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/exec-stub"));

/// A sealed memfd holding the exec stub, close-on-exec. Made before any
/// seccomp filter is loaded (a profile may not allow memfd_create).
pub fn stub_fd() -> io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    // MFD_EXEC (Linux 6.3): executable even where vm.memfd_noexec makes
    // memfds non-executable by default.
    const MFD_EXEC: u32 = 0x10;
    let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let exec_flags = base | MemfdFlags::from_bits_retain(MFD_EXEC);
    let fd = match rustix::fs::memfd_create("berth-exec", exec_flags) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create("berth-exec", base),
        r => r,
    }
    .map_err(stub_error)?;
    let mut rest = STUB;
    while !rest.is_empty() {
        let n = rustix::io::write(&fd, rest)?;
        rest = &rest[n..];
    }
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    Ok(fd)
}

/// Why the exec stub's memfd could not be made.
fn stub_error(e: rustix::io::Errno) -> io::Error {
    let why = if e == rustix::io::Errno::ACCESS {
        let v = std::fs::read_to_string("/proc/sys/vm/memfd_noexec").unwrap_or_default();
        format!(
            "{e}: this host forbids executable memfds (vm.memfd_noexec = {}); \
             set it to 0 or 1",
            v.trim()
        )
    } else {
        e.to_string()
    };
    io::Error::new(
        io::Error::from(e).kind(),
        format!("creating the exec stub: {why}"),
    )
}

/// An fd the exec stub holds open until its own execve (then closed).
#[derive(Clone, Copy, Debug)]
pub enum StubFd {
    /// None.
    None,
    /// Told of a failed execve ('X' and errno).
    Report(RawFd),
    /// Only held: its other end sees it close when the program is
    /// executed (or the process dies).
    Hold(RawFd),
}

/// Execs `exe` (argv `args`, environment `env`) through the stub in
/// `stub`: while the kernel loads `exe`, and whatever it names as its
/// interpreter, /proc/self/exe is the sealed stub, never the host's
/// runtime binary. A failure of the stub's own execve is reported to a
/// `StubFd::Report` fd when given, else described on stderr; the stub then
/// exits 127 (not found) or 126. Returns only if the stub could not be
/// exec'd.
pub fn exec_through(
    stub: &std::os::fd::OwnedFd,
    fd: StubFd,
    exe: &std::ffi::CStr,
    args: &[std::ffi::CString],
    env: &[std::ffi::CString],
) -> io::Error {
    use std::os::fd::AsRawFd;
    let (report_arg, report) = match fd {
        StubFd::None => ("-".to_string(), None),
        StubFd::Report(fd) => (fd.to_string(), Some(fd)),
        StubFd::Hold(fd) => (format!("c{fd}"), Some(fd)),
    };
    let report_arg = std::ffi::CString::new(report_arg).expect("no NUL in a number");
    let mut argv: Vec<*const libc::c_char> =
        vec![c"berth-exec".as_ptr(), report_arg.as_ptr(), exe.as_ptr()];
    argv.extend(args.iter().map(|a| a.as_ptr()));
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    if let Some(fd) = report {
        // SAFETY: fcntl on an fd number; the stub makes it close-on-exec
        // again before its own execve.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    // SAFETY: argv and envp are NULL-terminated arrays of pointers to
    // NUL-terminated strings that outlive the call; "" with AT_EMPTY_PATH
    // execs the memfd itself.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            stub.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    let mut e = io::Error::last_os_error();
    if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
        // A seccomp profile without execveat: the same memfd by its path.
        let path =
            std::ffi::CString::new(format!("/proc/self/fd/{}", stub.as_raw_fd())).expect("no NUL");
        // SAFETY: as above.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        e = io::Error::last_os_error();
    }
    if let Some(fd) = report {
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    e
}

/// The error message of the stub's failed execve of `exe` (as given),
/// from the errno it reported.
pub fn stub_message(errno: i32, exe: &str) -> String {
    if errno == libc::ENOENT {
        format!("exec {exe:?}: no such file or directory")
    } else {
        format!("exec {exe:?}: {}", io::Error::from_raw_os_error(errno))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fd_paths_are_refused_in_every_spelling() {
        for bad in [
            "/proc/self/fd/3",
            "/proc/self/fd/64/..",
            "/proc/thread-self/fd/7",
            "/proc/1/fd/4",
            "/proc//self/./fd/5",
            "/tmp/../proc/self/fd/9",
            "/proc/self/cwd",
            "/proc/self/root/etc",
            "/proc/self/task/1/fd/3",
        ] {
            assert!(check_cwd(Path::new(bad)).is_err(), "{bad} accepted");
        }
        for good in ["/", "/proc", "/proc/sys", "/work/proc/self/fd/3", "/tmp"] {
            assert!(check_cwd(Path::new(good)).is_ok(), "{good} refused");
        }
    }
}
