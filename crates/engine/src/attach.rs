//! `berth attach`: the caller's terminal joined to a running container's
//! stdio, through the socket its monitor serves. Output arrives framed as
//! Docker's multiplexed stream (raw with a terminal); what the caller types
//! goes to the container's stdin (when it was started with `-i`).

use std::io::Write;
use std::os::unix::net::UnixStream;

use crate::db::State;
use crate::Engine;
use crate::EngineError;

/// Docker's default detach keys: ctrl-p ctrl-q.
pub const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

#[derive(Debug, Clone)]
pub struct AttachConfig {
    /// Send our stdin to the container (`--no-stdin` turns it off).
    pub stdin: bool,
    /// Forward the signals we get to the container (not with a terminal,
    /// where keys become signals in the container's pty).
    pub sig_proxy: bool,
    /// The key sequence that detaches (with a terminal).
    pub detach_keys: Vec<u8>,
}

impl Default for AttachConfig {
    fn default() -> Self {
        AttachConfig {
            stdin: true,
            sig_proxy: true,
            detach_keys: DETACH_KEYS.to_vec(),
        }
    }
}

/// Parses docker's `--detach-keys` ("ctrl-p,ctrl-q", "a,ctrl-x").
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, EngineError> {
    s.split(',')
        .map(|k| {
            if let Some(c) = k.strip_prefix("ctrl-") {
                let c = c.as_bytes();
                match c {
                    [b @ b'a'..=b'z'] => Ok(b - b'a' + 1),
                    [b'@'] => Ok(0),
                    [b'['] => Ok(27),
                    [b'\\'] => Ok(28),
                    [b']'] => Ok(29),
                    [b'^'] => Ok(30),
                    [b'_'] => Ok(31),
                    _ => Err(()),
                }
            } else if k.len() == 1 {
                Ok(k.as_bytes()[0])
            } else {
                Err(())
            }
        })
        .collect::<Result<Vec<u8>, ()>>()
        .map_err(|()| {
            EngineError::Invalid(format!(
                "invalid detach keys {s:?}: use comma-separated letters or ctrl-<letter>, such as ctrl-p,ctrl-q"
            ))
        })
}

/// Attaches until the container exits (returns its exit code) or the
/// detach keys are typed (returns None).
pub fn attach(
    eng: &mut Engine,
    key: &str,
    cfg: &AttachConfig,
    caller: &mut crate::io::Caller<'_>,
) -> Result<Option<i32>, EngineError> {
    let rec = eng.get(key)?;
    match rec.state {
        State::Running => {}
        State::Paused => {
            return Err(EngineError::Conflict(
                "You cannot attach to a paused container, unpause it first".into(),
            ))
        }
        _ => {
            return Err(EngineError::Conflict(
                "You cannot attach to a stopped container, start it first".into(),
            ))
        }
    }
    let path = eng.attach_socket(&rec.id);
    let sock = UnixStream::connect(&path).map_err(|e| {
        EngineError::io(
            format!(
                "attach to container {}: its monitor's socket {}",
                rec.id,
                path.display()
            ),
            e,
        )
    })?;
    let tty = rec.config.tty;
    let use_stdin = cfg.stdin && rec.config.interactive;
    let sigfd = crate::io::signal_fd(cfg.sig_proxy && !tty)?;
    let rt = eng.paths.runtime();
    let raw = (tty && use_stdin).then(|| caller.raw()).flatten();
    let detached = relay(
        &sock,
        &sigfd,
        tty,
        use_stdin,
        &cfg.detach_keys,
        caller,
        |sig| {
            let _ = berth_runtime::container::kill(&rt, &rec.id, sig);
        },
    );
    drop(raw);
    if detached {
        return Ok(None);
    }
    match eng.wait_code(&rec.id, Some(std::time::Duration::from_secs(10))) {
        Ok(Some(c)) => Ok(Some(c)),
        Ok(None) => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

/// Copies until the socket closes; true if the detach keys ended it.
fn relay(
    sock: &UnixStream,
    sigfd: &std::os::fd::OwnedFd,
    tty: bool,
    use_stdin: bool,
    keys: &[u8],
    caller: &mut crate::io::Caller<'_>,
    mut forward: impl FnMut(i32),
) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let stdin = caller.stdin.filter(|_| use_stdin);
    let mut stdin_open = stdin.is_some();
    let mut buf = vec![0u8; 64 * 1024];
    // Frames may arrive split: what is not yet a whole frame waits here.
    let mut frames = crate::stream::Deframer::default();
    let mut matched = 0usize;
    loop {
        let mut fds = vec![
            PollFd::new(sock, PollFlags::IN),
            PollFd::new(sigfd, PollFlags::IN),
        ];
        if let (true, Some(fd)) = (stdin_open, stdin.as_ref()) {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[1] {
            let mut sbuf = [0u8; 128 * 4];
            if let Ok(n) = rustix::io::read(sigfd, &mut sbuf) {
                for chunk in sbuf[..n].chunks_exact(128) {
                    let sig = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as i32;
                    if sig != libc::SIGCHLD && sig != libc::SIGWINCH {
                        forward(sig);
                    }
                }
            }
        }
        if ready[0] {
            let n = match rustix::io::read(sock, &mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            if tty {
                let _ = caller
                    .stdout
                    .write_all(&buf[..n])
                    .and_then(|()| caller.stdout.flush());
            } else {
                frames.push(&buf[..n], |stream, data| {
                    let w = if stream == crate::stream::Stream::Stderr {
                        &mut *caller.stderr
                    } else {
                        &mut *caller.stdout
                    };
                    let _ = w.write_all(data).and_then(|()| w.flush());
                });
            }
        }
        if ready.get(2).copied().unwrap_or(false) {
            let Some(fd) = stdin else { continue };
            let n = match rustix::io::read(fd, &mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    let _ = sock.shutdown(std::net::Shutdown::Write);
                    continue;
                }
                Ok(n) => n,
            };
            if tty && !keys.is_empty() {
                for &b in &buf[..n] {
                    if b == keys[matched] {
                        matched += 1;
                        if matched == keys.len() {
                            return true;
                        }
                    } else {
                        matched = usize::from(b == keys[0]);
                    }
                }
            }
            let mut w = sock;
            if w.write_all(&buf[..n]).is_err() {
                stdin_open = false;
            }
        }
    }
}
