//! `--init`: init stays pid 1, runs the process as its child, forwards
//! signals and reaps orphans.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;

/// `--init`: pid 1 forks the process, then forwards every signal it gets
/// to it and reaps every child (orphans included) until the process has
/// exited; exits with its code, or 128+N if signal N killed it.
pub(super) fn reaper(
    stub: &std::os::fd::OwnedFd,
    exe: &CString,
    args: &[CString],
    env: &[CString],
    fifo: fs::File,
) -> ! {
    // SAFETY: sigset manipulation on a local set; sigprocmask on this
    // single-threaded process.
    let all = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    // SAFETY: single-threaded; the child only resets its mask and execs.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // With a terminal, the process gets the foreground process group
        // of its own: the keys that make signals (ctrl-c) reach it once,
        // not the reaper as well (which would forward a second copy).
        // SAFETY: setpgid/tcsetpgrp on our own process and terminal;
        // SIGTTOU is still blocked here, so tcsetpgrp cannot stop us.
        unsafe {
            if libc::isatty(0) == 1 {
                libc::setpgid(0, 0);
                libc::tcsetpgrp(0, libc::getpid());
            }
        }
        // SAFETY: an empty set for sigprocmask.
        unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        }
        let e = crate::confine::exec_through(
            stub,
            crate::confine::StubFd::Hold(fifo.as_raw_fd()),
            exe,
            args,
            env,
        );
        eprintln!("berth-init: exec {:?}: {e}", exe);
        let code = if e.raw_os_error() == Some(libc::ENOENT) {
            127
        } else {
            126
        };
        // SAFETY: see create().
        unsafe { libc::_exit(code) };
    }
    if child < 0 {
        eprintln!("berth-init: fork: {}", io::Error::last_os_error());
        // SAFETY: see create().
        unsafe { libc::_exit(126) };
    }
    // The child's exec closes its copy: that is the process executed.
    drop(fifo);
    // The reaper never execs: close every fd the runtime's caller left
    // (marked close-on-exec for the process) so that none stays open for
    // the container's life. Stdio stays: the process shares it.
    // SAFETY: close_range on our own fd table; prctl with a constant name.
    let closed = unsafe {
        libc::prctl(libc::PR_SET_NAME, c"init".as_ptr(), 0, 0, 0);
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32)
    };
    if closed != 0 {
        // No close_range (before Linux 5.9, or a seccomp profile without
        // it): one by one, from /proc/self/fd.
        let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .filter(|fd| *fd > 2)
                    .collect()
            })
            .unwrap_or_default();
        for fd in fds {
            // SAFETY: closing fds of our own table that nothing here uses.
            unsafe { libc::close(fd) };
        }
    }
    loop {
        // SAFETY: `all` is a valid set; info is a valid out-parameter.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(&all, &mut info)
        };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: kill of our own child.
            unsafe { libc::kill(child, sig) };
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: reaps any child of ours; status is a valid pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                // SAFETY: see create().
                unsafe { libc::_exit(crate::signal::exit_code(status)) };
            }
        }
    }
}
