//! What init (or an exec child) and the runtime tell each other on
//! their socketpair: one typed `Message` per exchange, a tag byte on the
//! wire. A failure is the sender's last message and keeps its kind
//! (setup, 127 not found, 126 not executable).

use std::io::{self, Read, Write};

use super::error::{ContainerError, Failure};

/// One exchange on the sync socket.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Message {
    /// Runtime to child: the user namespace's id maps are written (or
    /// there are none), or the hooks have run: go on.
    Go,
    /// Runtime to init: init's cgroups are set.
    CgroupsSet,
    /// Init to runtime: its namespaces and mounts exist, before
    /// pivot_root: run the prestart and createRuntime hooks, then `Go`.
    RunHooks,
    /// Init to runtime: ready; it now waits on the exec fifo for `start`.
    Ready,
    /// Init or an exec child to runtime, its last message: what failed.
    Failed(Failed),
    /// The exec stub to runtime, its last message: its own execve failed
    /// with this errno (written by the stub in C: `X` and the errno's
    /// four little-endian bytes).
    StubExecFailed(i32),
}

impl Message {
    fn tag(&self) -> u8 {
        match self {
            Message::Go => b'G',
            Message::CgroupsSet => b'C',
            Message::RunHooks => b'H',
            Message::Ready => b'R',
            Message::Failed(_) => b'E',
            Message::StubExecFailed(_) => b'X',
        }
    }

    /// Writes the message. The messages without a payload are written
    /// from the stack: a child of a threaded caller must not allocate.
    pub(super) fn send(&self, w: &mut impl Write) -> io::Result<()> {
        match self {
            Message::Failed(f) => {
                let mut v = vec![self.tag(), f.kind.byte()];
                v.extend_from_slice(f.msg.as_bytes());
                w.write_all(&v)
            }
            Message::StubExecFailed(errno) => {
                let mut b = [self.tag(); 5];
                b[1..].copy_from_slice(&errno.to_le_bytes());
                w.write_all(&b)
            }
            _ => w.write_all(&[self.tag()]),
        }
    }

    /// Reads one message: `None` when the peer closed without one (an
    /// exec child whose execve succeeded closes its close-on-exec end).
    /// A failure is read to the end of the stream. Reading a message with
    /// no payload does not allocate.
    pub(super) fn recv(r: &mut impl Read) -> io::Result<Option<Message>> {
        let mut tag = [0u8; 1];
        loop {
            match r.read(&mut tag) {
                Ok(0) => return Ok(None),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(match tag[0] {
            b'G' => Message::Go,
            b'C' => Message::CgroupsSet,
            b'H' => Message::RunHooks,
            b'R' => Message::Ready,
            b'E' => {
                let mut rest = Vec::new();
                r.read_to_end(&mut rest)?;
                Message::Failed(Failed::decode(&rest))
            }
            b'X' => {
                let mut errno = [0u8; 4];
                r.read_exact(&mut errno)?;
                Message::StubExecFailed(i32::from_le_bytes(errno))
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected message {other:#x} on the sync socket"),
                ))
            }
        }))
    }
}

/// A failure and its message, as init and exec send it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Failed {
    pub(super) kind: Failure,
    pub(super) msg: String,
}

impl From<String> for Failed {
    fn from(msg: String) -> Failed {
        Failed {
            kind: Failure::Setup,
            msg,
        }
    }
}

impl Failed {
    /// A failure's payload (its kind's byte, then the message); one
    /// without a known kind byte is a setup failure.
    fn decode(msg: &[u8]) -> Failed {
        let typed = msg
            .split_first()
            .and_then(|(b, rest)| Some((Failure::from_byte(*b)?, rest)));
        let (kind, rest) = typed.unwrap_or((Failure::Setup, msg));
        Failed {
            kind,
            msg: String::from_utf8_lossy(rest).into_owned(),
        }
    }

    /// The error of this failure of init (`exec == false`) or of an exec
    /// process.
    pub(super) fn into_error(self, exec: bool) -> ContainerError {
        match (self.kind, exec) {
            (Failure::Setup, false) => ContainerError::Init(self.msg),
            (Failure::Setup, true) => ContainerError::Exec(self.msg),
            (failure, exec) => ContainerError::Command {
                exec,
                failure,
                message: self.msg,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: &Message) -> Option<Message> {
        let mut wire = Vec::new();
        m.send(&mut wire).unwrap();
        Message::recv(&mut wire.as_slice()).unwrap()
    }

    /// Init's and exec's failures reach the runtime typed: whether the
    /// program is missing or cannot be executed is a kind, not a phrase
    /// of the message (a setup error that says "no such file or
    /// directory" is not a missing program).
    #[test]
    fn failures_travel_with_their_kind() {
        for kind in [Failure::Setup, Failure::NotFound, Failure::NotExecutable] {
            let f = Failed {
                kind,
                msg: "mount /x: no such file or directory".into(),
            };
            let got = round_trip(&Message::Failed(f));
            assert_eq!(
                got,
                Some(Message::Failed(Failed {
                    kind,
                    msg: "mount /x: no such file or directory".into()
                }))
            );
        }
        assert!(matches!(
            Failed::from("no such file or directory".to_string()).into_error(false),
            ContainerError::Init(_)
        ));
        let e = Failed {
            kind: Failure::NotFound,
            msg: "exec: \"x\": not found".into(),
        }
        .into_error(true);
        assert_eq!(e.to_string(), "exec failed: exec: \"x\": not found");
        assert_eq!(Failure::of_errno(libc::ENOENT), Failure::NotFound);
        assert_eq!(Failure::of_errno(libc::EACCES), Failure::NotExecutable);
        assert_eq!(Failure::of_errno(libc::ENOEXEC), Failure::NotExecutable);
        assert_eq!(Failure::of_errno(libc::E2BIG), Failure::Setup);
        // A payload without a kind byte is a setup failure.
        assert_eq!(Failed::decode(b"plain").kind, Failure::Setup);
    }

    #[test]
    fn every_message_round_trips_and_a_close_is_none() {
        for m in [
            Message::Go,
            Message::CgroupsSet,
            Message::RunHooks,
            Message::Ready,
            Message::StubExecFailed(libc::ENOENT),
        ] {
            assert_eq!(round_trip(&m).as_ref(), Some(&m));
        }
        assert_eq!(Message::recv(&mut &b""[..]).unwrap(), None);
        assert!(Message::recv(&mut &b"?"[..]).is_err());
        // Messages follow each other on one stream.
        let mut wire = Vec::new();
        Message::RunHooks.send(&mut wire).unwrap();
        Message::Ready.send(&mut wire).unwrap();
        let mut r = wire.as_slice();
        assert_eq!(Message::recv(&mut r).unwrap(), Some(Message::RunHooks));
        assert_eq!(Message::recv(&mut r).unwrap(), Some(Message::Ready));
    }
}
