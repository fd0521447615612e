//! Waiting without polling: a file that another process appends to (the
//! event log, a container's log), watched with inotify on its directory
//! (so that a rotation, a new file under the same name, is seen too), and
//! a process's exit, seen through its pidfd.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::fs::inotify;

/// Changes to one name in one directory.
pub struct Watch {
    /// Always Some but in `drop`.
    fd: Option<OwnedFd>,
    name: OsString,
}

impl Watch {
    /// Watches `path` (its directory must exist; the file need not).
    pub fn new(path: &Path) -> std::io::Result<Watch> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path.file_name().map(OsString::from).unwrap_or_default();
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        inotify::add_watch(
            &fd,
            dir,
            inotify::WatchFlags::MODIFY
                | inotify::WatchFlags::CREATE
                | inotify::WatchFlags::MOVED_TO
                | inotify::WatchFlags::CLOSE_WRITE,
        )?;
        Ok(Watch { fd: Some(fd), name })
    }

    /// Blocks until the file changed (since the last wait), `also` is
    /// readable (a pidfd: its process exited) or `timeout` passed; returns
    /// whether something happened.
    fn fd(&self) -> &OwnedFd {
        self.fd.as_ref().expect("the inotify fd until drop")
    }

    pub fn wait(&self, timeout: Duration, also: Option<BorrowedFd<'_>>) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut fds = vec![PollFd::new(self.fd(), PollFlags::IN)];
            if let Some(a) = also.as_ref() {
                fds.push(PollFd::new(a, PollFlags::IN));
            }
            let ts = Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as i64,
            };
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return false,
            }
            let other = fds.get(1).is_some_and(|f| !f.revents().is_empty());
            drop(fds);
            if self.drain() || other {
                return true;
            }
            if left.is_zero() {
                return false;
            }
        }
    }

    /// Reads the queued inotify events; whether one was about our name.
    fn drain(&self) -> bool {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(self.fd().as_fd(), &mut buf);
        let mut ours = false;
        while let Ok(ev) = reader.next() {
            // An overflowed queue may have lost ours.
            if ev.events().contains(inotify::ReadFlags::QUEUE_OVERFLOW)
                || ev
                    .file_name()
                    .is_some_and(|n| n.to_bytes() == self.name.as_encoded_bytes())
            {
                ours = true;
            }
        }
        ours
    }
}

/// Whether watches are closed on a thread of their own (see `Drop`).
static CLOSE_IN_BACKGROUND: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Makes every later `Watch` close on a thread of its own: for a process
/// that answers others (the daemon), which is multi-threaded anyway. A
/// process that may clone a container must stay single-threaded and
/// does not call this.
pub fn close_in_background() {
    CLOSE_IN_BACKGROUND.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Closing an inotify instance waits for the kernel's SRCU grace period
/// (8 to 14 ms seen here): where `close_in_background` was asked for, a
/// waiter that ends does not make its caller's answer wait for that.
impl Drop for Watch {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        if !CLOSE_IN_BACKGROUND.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let closer = std::thread::Builder::new()
            .name("inotify-close".into())
            .spawn(move || drop(fd));
        // No thread to be had: closed here, slowly.
        drop(closer);
    }
}

/// A pidfd for process `pid` if it is still the one that started at
/// `start` (clock ticks since boot, as /proc/PID/stat says): readable once
/// it exits.
pub fn pidfd(pid: i32, start: u64) -> Option<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid)?;
    let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()?;
    // Checked after the open: the fd names this process for good.
    alive(pid, start).then_some(fd)
}

/// Whether `pid` is still the process that started at `start` (clock ticks
/// since boot, from /proc/PID/stat).
pub(crate) fn alive(pid: i32, start: u64) -> bool {
    pid > 0
        && berth_runtime::state::proc_stat(pid)
            .is_some_and(|(state, t)| t == start && state != 'Z' && state != 'X')
}
