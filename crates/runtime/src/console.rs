//! The container's terminal: init opens a pty inside the container's devpts
//! and sends the master to the console socket (SCM_RIGHTS), as runc does.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::pty::OpenptFlags;

/// Connects to the console socket (a host path, so before pivot_root).
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    UnixStream::connect(path)
        .map_err(|e| io::Error::new(e.kind(), format!("console socket {}: {e}", path.display())))
}

/// The console socket: `fd` (a connected socket the caller passed, dup'ed
/// so the caller's stays its own) or else a connection to `path`.
pub fn open(path: Option<&Path>, fd: Option<RawFd>) -> io::Result<UnixStream> {
    if let Some(fd) = fd {
        // SAFETY: the caller keeps fd open for the duration of this call.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let owned = rustix::io::fcntl_dupfd_cloexec(borrowed, 3)?;
        return Ok(UnixStream::from(owned));
    }
    match path {
        Some(p) => connect(p),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a terminal was asked for but no console socket was given",
        )),
    }
}

/// The caller's side: receives the pty master that `setup` sent.
pub fn receive(socket: &UnixStream) -> io::Result<OwnedFd> {
    let mut name = [0u8; 64];
    receive_fd(socket, &mut name).map(|(fd, _)| fd)
}

/// Receives one fd sent with [`send_fd`], and the bytes sent with it into
/// `payload`; returns the fd and how many bytes came.
pub fn receive_fd(socket: &UnixStream, payload: &mut [u8]) -> io::Result<(OwnedFd, usize)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(payload)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok((fd, got.bytes));
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "no file descriptor was sent",
    ))
}

/// Sends `fd` over `socket` with `payload` (which must not be empty) in
/// one message.
pub fn send_fd(socket: &UnixStream, fd: BorrowedFd<'_>, payload: &[u8]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let sent = rustix::net::sendmsg(
        socket,
        &[IoSlice::new(payload)],
        &mut control,
        SendFlags::empty(),
    )?;
    if sent != payload.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "a file descriptor's message was cut short",
        ));
    }
    Ok(())
}

/// In the container, after pivot_root: allocates a pty from the container's
/// /dev/ptmx, makes its slave the controlling terminal and stdio, and sends
/// the master through `socket`.
pub fn setup(socket: &UnixStream, size: Option<(u16, u16)>) -> io::Result<()> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    // The slave through the master (TIOCGPTPEER), never by a path the
    // container could have replaced.
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    if let Some((height, width)) = size {
        rustix::termios::tcsetwinsize(
            &slave,
            rustix::termios::Winsize {
                ws_row: height,
                ws_col: width,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )?;
    }
    rustix::process::setsid()?;
    rustix::process::ioctl_tiocsctty(&slave)?;
    for target in 0..3 {
        // SAFETY: dup2 of an fd we own onto the stdio numbers.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    send_fd(socket, master.as_fd(), b"/dev/ptmx")
}
