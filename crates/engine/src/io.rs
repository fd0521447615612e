//! A container process's stdio as the monitor sees it: pipes or a pty,
//! wired before the runtime starts the process, then relayed (to the log,
//! to the caller's terminal, from its stdin) until the process exits.

use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::EngineError;

/// Signals a foreground monitor forwards to the container's process.
const FORWARDED: &[i32] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), EngineError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| EngineError::io("pipe", e.into()))
}

pub(crate) fn dev_null() -> Result<OwnedFd, EngineError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| EngineError::io("open /dev/null", e))
}

/// A started process and the monitor's ends of its stdio. With a terminal,
/// `stdout` and `stdin` are the pty master (stderr is merged into it).
pub(crate) struct Running {
    pub pid: i32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
    /// The pty master, kept for window-size changes.
    pub tty: Option<OwnedFd>,
}

/// The stdio of a process about to be started: the runtime's ends
/// (`theirs`, `console`) and ours.
pub(crate) struct Wiring {
    theirs: [OwnedFd; 3],
    console: Option<(UnixStream, UnixStream)>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    stdin_pipe: bool,
}

impl Wiring {
    /// Pipes for stdout and stderr (and stdin when `stdin_pipe`), or a pty
    /// when `tty`: the runtime sends its master over a socketpair.
    pub fn new(tty: bool, stdin_pipe: bool) -> Result<Wiring, EngineError> {
        if tty {
            let pair = UnixStream::pair().map_err(|e| EngineError::io("socketpair", e))?;
            return Ok(Wiring {
                theirs: [dev_null()?, dev_null()?, dev_null()?],
                console: Some(pair),
                stdout: None,
                stderr: None,
                stdin: None,
                stdin_pipe,
            });
        }
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (stdin, in_theirs) = if stdin_pipe {
            let (r, w) = pipe()?;
            (Some(w), r)
        } else {
            (None, dev_null()?)
        };
        Ok(Wiring {
            theirs: [in_theirs, out_w, err_w],
            console: None,
            stdout: Some(out_r),
            stderr: Some(err_r),
            stdin,
            stdin_pipe,
        })
    }

    /// The fds the runtime gives the process as 0, 1 and 2.
    pub fn stdio(&self) -> [RawFd; 3] {
        [
            self.theirs[0].as_raw_fd(),
            self.theirs[1].as_raw_fd(),
            self.theirs[2].as_raw_fd(),
        ]
    }

    /// The socket the runtime sends the pty master to.
    pub fn console_fd(&self) -> Option<RawFd> {
        self.console.as_ref().map(|(_, theirs)| theirs.as_raw_fd())
    }

    /// After the runtime started `pid`: closes the process's ends and, with
    /// a terminal, receives its master.
    pub fn started(self, pid: i32) -> Result<Running, EngineError> {
        let Wiring {
            theirs,
            console,
            mut stdout,
            stderr,
            mut stdin,
            stdin_pipe,
        } = self;
        drop(theirs);
        let mut tty = None;
        if let Some((ours, theirs)) = console {
            drop(theirs);
            let master = berth_runtime::console::receive(&ours)
                .map_err(|e| EngineError::io("receive the container's terminal", e))?;
            let dup = |f: &OwnedFd| {
                rustix::io::fcntl_dupfd_cloexec(f, 3)
                    .map_err(|e| EngineError::io("dup the terminal", e.into()))
            };
            if stdin_pipe {
                stdin = Some(dup(&master)?);
            }
            stdout = Some(dup(&master)?);
            tty = Some(master);
        }
        Ok(Running {
            pid,
            stdout,
            stderr,
            stdin,
            tty,
        })
    }
}

/// The caller of a foreground process (`berth run` without `-d`, `berth
/// exec`, `berth attach`): the streams its stdio is relayed to and from,
/// given by the front end, which owns the terminal (raw mode included).
pub struct Caller<'a> {
    /// Read for the process's stdin (`-i`); polled, so an fd.
    pub stdin: Option<BorrowedFd<'a>>,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
    /// The caller's terminal, for the size of the process's own (`-t`),
    /// read again at each SIGWINCH.
    pub terminal: Option<&'a dyn Terminal>,
}

/// The caller's terminal, as its front end handles it: the engine says
/// when (a process's pty follows its size; `-it` wants raw keys), the
/// front end how.
pub trait Terminal {
    /// Rows and columns, if known.
    fn size(&self) -> Option<(u16, u16)>;
    /// Raw mode (keys unprocessed) until the returned guard is dropped;
    /// None if the terminal cannot.
    fn raw(&self) -> Option<Box<dyn std::any::Any>>;
}

impl Caller<'_> {
    pub(crate) fn size(&self) -> Option<(u16, u16)> {
        self.terminal.and_then(|t| t.size())
    }

    pub(crate) fn raw(&self) -> Option<Box<dyn std::any::Any>> {
        self.terminal.and_then(|t| t.raw())
    }
}

fn resize(master: &OwnedFd, size: Option<(u16, u16)>) {
    if let Some((rows, cols)) = size {
        let _ = rustix::termios::tcsetwinsize(
            master,
            rustix::termios::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        );
    }
}

/// Blocks SIGCHLD (and, when `forward`, the forwarded signals and
/// SIGWINCH) and returns a signalfd for them. The runtime resets the
/// container process's mask.
pub(crate) fn signal_fd(forward: bool) -> Result<OwnedFd, EngineError> {
    // SAFETY: sigset manipulation on a local set, then sigprocmask and
    // signalfd with valid pointers; the new fd is owned below.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        if forward {
            for s in FORWARDED {
                libc::sigaddset(&mut set, *s);
            }
            libc::sigaddset(&mut set, libc::SIGWINCH);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(EngineError::io("signalfd", std::io::Error::last_os_error()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Reads signals from the signalfd; returns their numbers.
fn read_signals(fd: &OwnedFd) -> Vec<i32> {
    let mut out = Vec::new();
    let mut buf = [0u8; 128 * 4];
    // siginfo is 128 bytes; ssi_signo is its first u32.
    if let Ok(n) = rustix::io::read(fd, &mut buf) {
        for chunk in buf[..n].chunks_exact(128) {
            out.push(u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as i32);
        }
    }
    out
}

/// Work the relay does on a schedule (health checks).
pub(crate) struct Ticker {
    pub every: std::time::Duration,
    pub next: std::time::Instant,
    pub run: Box<dyn FnMut()>,
}

/// Reaps every child that has exited (health checkers too); returns the
/// exit code of `pid` if it was one of them.
fn reap_children(pid: i32) -> Option<i32> {
    let mut code = None;
    loop {
        let mut status = 0;
        // SAFETY: reaps our own children; status is a valid pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r <= 0 {
            return code;
        }
        if r == pid {
            code = Some(berth_runtime::signal::exit_code(status));
        }
    }
}

pub(crate) fn try_wait(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: pid is our child; status is a valid out-parameter.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (r == pid).then(|| berth_runtime::signal::exit_code(status))
}

/// Writes what the process's (non-blocking) stdin takes now; drops its
/// stdin if it is gone.
fn feed(running: &mut Running, pending: &mut Vec<u8>) {
    let Some(f) = running.stdin.as_ref() else {
        pending.clear();
        return;
    };
    while !pending.is_empty() {
        match rustix::io::write(f, pending) {
            Ok(k) => {
                pending.drain(..k);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => return,
            Err(_) => {
                running.stdin = None;
                pending.clear();
                return;
            }
        }
    }
}

/// Clients attached to a container (`berth attach`), served by its
/// monitor on a unix socket: each gets the output as it comes (framed as
/// Docker's multiplexed stream, raw with a terminal) and may write the
/// container's stdin.
pub(crate) struct AttachServer {
    listener: std::os::unix::net::UnixListener,
    path: std::path::PathBuf,
    /// None once gone (removed after each round, so indices hold within
    /// one).
    clients: Vec<Option<Client>>,
    tty: bool,
    /// The container's stdin closes when a client's input ends.
    stdin_once: bool,
}

struct Client {
    sock: UnixStream,
    /// False once the client has shut down its side: it still gets output.
    reading: bool,
}

impl AttachServer {
    /// Listens at `path` (replacing a stale socket).
    pub fn bind(
        path: &std::path::Path,
        tty: bool,
        stdin_once: bool,
    ) -> Result<AttachServer, EngineError> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| EngineError::io(format!("create {}", d.display()), e))?;
        }
        let _ = std::fs::remove_file(path);
        let listener = std::os::unix::net::UnixListener::bind(path)
            .map_err(|e| EngineError::io(format!("listen on {}", path.display()), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| EngineError::io("attach socket", e))?;
        Ok(AttachServer {
            listener,
            path: path.to_path_buf(),
            clients: Vec::new(),
            tty,
            stdin_once,
        })
    }

    /// Waits (at most `limit`) until `n` clients are connected: a start
    /// whose callers attached before it, so they see all its output.
    pub fn wait_for_clients(&mut self, n: usize, limit: std::time::Duration) {
        use rustix::event::{poll, PollFd, PollFlags};
        let end = std::time::Instant::now() + limit;
        loop {
            self.accept();
            let left = end.saturating_duration_since(std::time::Instant::now());
            if self.clients.len() >= n || left.is_zero() {
                return;
            }
            let ts = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as i64,
            };
            let mut fds = [PollFd::new(&self.listener, PollFlags::IN)];
            if let Err(e) = poll(&mut fds, Some(&ts)) {
                if e != rustix::io::Errno::INTR {
                    return;
                }
            }
        }
    }

    fn accept(&mut self) {
        while let Ok((c, _)) = self.listener.accept() {
            // A client that stops reading is dropped, not waited for.
            let _ = c.set_write_timeout(Some(std::time::Duration::from_secs(2)));
            self.clients.push(Some(Client {
                sock: c,
                reading: true,
            }));
        }
    }

    fn send(&mut self, stream: usize, data: &[u8]) {
        use crate::stream::{frame, Stream};
        let frame = if self.tty {
            data.to_vec()
        } else {
            frame(
                if stream == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                },
                data,
            )
        };
        for slot in &mut self.clients {
            if slot
                .as_mut()
                .is_some_and(|c| c.sock.write_all(&frame).is_err())
            {
                *slot = None;
            }
        }
    }
}

impl Drop for AttachServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a relay does besides waiting for the process.
#[derive(Default)]
pub(crate) struct RelayOpts<'a, 'b> {
    /// The container's json-file log (not for exec).
    pub log: Option<&'a mut crate::logs::Writer>,
    /// The foreground caller: output written to it, its stdin read.
    pub caller: Option<&'a mut Caller<'b>>,
    pub ticker: Option<&'a mut Ticker>,
    pub attach: Option<&'a mut AttachServer>,
}

/// Relays until the process has exited and its output is drained; returns
/// the exit code.
pub(crate) fn relay(running: &mut Running, sigfd: &OwnedFd, o: RelayOpts<'_, '_>) -> i32 {
    use rustix::event::{poll, PollFd, PollFlags};
    let RelayOpts {
        mut log,
        mut caller,
        mut ticker,
        mut attach,
    } = o;
    let mut code: Option<i32> = None;
    let stdin = caller.as_ref().and_then(|c| c.stdin);
    let mut stdin_open = stdin.is_some() && running.stdin.is_some();
    let mut buf = vec![0u8; 64 * 1024];
    // Input not yet taken by the process. Its stdin is non-blocking and
    // written only when it can take more, so a process that writes more
    // than it reads can never block the relay (and itself) on a full pipe.
    let mut pending: Vec<u8> = Vec::new();
    // Our stdin ended: close the process's once `pending` is written.
    let mut close_after = false;
    if let Some(f) = &running.stdin {
        let _ = rustix::io::ioctl_fionbio(f, true);
    }
    loop {
        if code.is_some() && running.stdout.is_none() && running.stderr.is_none() {
            break;
        }
        if running.stdin.is_none() {
            pending.clear();
        } else if close_after && pending.is_empty() {
            running.stdin = None;
        }
        let taking = pending.is_empty();
        let mut fds: Vec<PollFd<'_>> = Vec::new();
        let mut which: Vec<(u8, usize)> = Vec::new();
        let own_stdin = stdin;
        fds.push(PollFd::new(sigfd, PollFlags::IN));
        which.push((b's', 0));
        if let Some(f) = &running.stdout {
            fds.push(PollFd::new(f, PollFlags::IN));
            which.push((b'o', 0));
        }
        if let Some(f) = &running.stderr {
            fds.push(PollFd::new(f, PollFlags::IN));
            which.push((b'e', 0));
        }
        if let (true, true, Some(fd)) = (stdin_open, taking, own_stdin.as_ref()) {
            fds.push(PollFd::new(fd, PollFlags::IN));
            which.push((b'i', 0));
        }
        if let (false, Some(f)) = (pending.is_empty(), &running.stdin) {
            fds.push(PollFd::new(f, PollFlags::OUT));
            which.push((b'w', 0));
        }
        if let Some(a) = attach.as_deref() {
            fds.push(PollFd::new(&a.listener, PollFlags::IN));
            which.push((b'l', 0));
            for (k, c) in a.clients.iter().enumerate() {
                if let Some(c) = c.as_ref().filter(|c| c.reading && taking) {
                    fds.push(PollFd::new(&c.sock, PollFlags::IN));
                    which.push((b'c', k));
                }
            }
        }
        // After the exit, output still buffered is drained; a pipe held
        // open by an escaped process does not hold us for long.
        let wait = if code.is_some() {
            Some(std::time::Duration::from_millis(200))
        } else if running.stdout.is_none() && running.stderr.is_none() {
            // Its output is closed and its exit not seen yet: SIGCHLD may
            // go to another thread of a threaded caller, so look again.
            Some(std::time::Duration::from_millis(20))
        } else {
            ticker
                .as_ref()
                .map(|t| t.next.saturating_duration_since(std::time::Instant::now()))
        };
        let ts = wait.map(|d| rustix::event::Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos() as i64,
        });
        let polled = poll(&mut fds, ts.as_ref());
        if code.is_none() {
            if let Some(t) = ticker.as_deref_mut() {
                let now = std::time::Instant::now();
                if now >= t.next {
                    (t.run)();
                    t.next = now + t.every;
                }
            }
        }
        match polled {
            Ok(0) if code.is_none() => {
                code = try_wait(running.pid);
                continue;
            }
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<(u8, usize)> = fds
            .iter()
            .zip(&which)
            .filter(|(f, _)| !f.revents().is_empty())
            .map(|(_, w)| *w)
            .collect();
        drop(fds);
        for (w, k) in ready {
            match w {
                b's' => {
                    for sig in read_signals(sigfd) {
                        if sig == libc::SIGCHLD {
                            if let Some(c) = reap_children(running.pid) {
                                code = Some(c);
                            }
                        } else if sig == libc::SIGWINCH {
                            if let Some(t) = &running.tty {
                                resize(t, caller.as_ref().and_then(|c| c.size()));
                            }
                        } else {
                            // SAFETY: the process is our child (not yet reaped).
                            unsafe { libc::kill(running.pid, sig) };
                        }
                    }
                }
                b'o' | b'e' => {
                    let slot = if w == b'o' {
                        &mut running.stdout
                    } else {
                        &mut running.stderr
                    };
                    // A pty master reads EIO once the last slave closes.
                    let n = match slot.as_ref().map(|f| rustix::io::read(f, &mut buf)) {
                        Some(Ok(n)) => n,
                        Some(Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN)) => continue,
                        _ => 0,
                    };
                    if n == 0 {
                        *slot = None;
                        continue;
                    }
                    let stream = if w == b'o' { 0 } else { 1 };
                    if let Some(l) = log.as_deref_mut() {
                        l.write(stream, &buf[..n]);
                    }
                    if let Some(a) = attach.as_deref_mut() {
                        a.send(stream, &buf[..n]);
                    }
                    if let Some(c) = caller.as_deref_mut() {
                        let w = if stream == 0 {
                            &mut *c.stdout
                        } else {
                            &mut *c.stderr
                        };
                        let _ = w.write_all(&buf[..n]).and_then(|()| w.flush());
                    }
                }
                b'i' => {
                    let n = match own_stdin.map(|fd| rustix::io::read(fd, &mut buf)) {
                        Some(Ok(n)) => n,
                        Some(Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN)) => continue,
                        _ => 0,
                    };
                    if n == 0 {
                        // EOF: the process sees its stdin close once it
                        // has what came before (with a pty, the master
                        // stays open for the output).
                        stdin_open = false;
                        close_after = true;
                        continue;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    feed(running, &mut pending);
                }
                b'w' => feed(running, &mut pending),
                b'l' => {
                    if let Some(a) = attach.as_deref_mut() {
                        a.accept();
                    }
                }
                b'c' => {
                    let Some(a) = attach.as_deref_mut() else {
                        continue;
                    };
                    // A client's bytes are the container's stdin; its EOF
                    // ends only its input (stdin stays open for others).
                    let Some(c) = a.clients[k].as_mut() else {
                        continue;
                    };
                    match rustix::io::read(&c.sock, &mut buf) {
                        Ok(0) => {
                            c.reading = false;
                            // Not with a tty, as docker: the shell stays
                            // for the next attach.
                            if a.stdin_once && running.tty.is_none() {
                                close_after = true;
                            }
                        }
                        Err(_) => a.clients[k] = None,
                        Ok(n) => {
                            if running.stdin.is_some() {
                                pending.extend_from_slice(&buf[..n]);
                                feed(running, &mut pending);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(a) = attach.as_deref_mut() {
            a.clients.retain(Option::is_some);
        }
        if code.is_none() {
            code = try_wait(running.pid);
        }
    }
    match code {
        Some(c) => c,
        None => {
            let mut status = 0;
            // SAFETY: pid is our child.
            unsafe { libc::waitpid(running.pid, &mut status, 0) };
            berth_runtime::signal::exit_code(status)
        }
    }
}
