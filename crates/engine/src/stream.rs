//! Docker's multiplexed stream (attach, logs and exec without a
//! terminal): each frame is a header of 8 bytes (the stream: 0 stdin,
//! 1 stdout, 2 stderr; three zeros; the length, big-endian u32) and the
//! data. Written once here, for the monitor's attach socket, the attach
//! client and the daemon's hijacked connections.

/// Which stream a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
}

/// One frame of `data` on `stream` (data longer than u32::MAX bytes is
/// the caller's to split).
pub fn frame(stream: Stream, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(data.len() + 8);
    f.extend_from_slice(&[stream as u8, 0, 0, 0]);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// Reassembles frames from bytes as they arrive (a frame may come split
/// across reads, or several in one).
#[derive(Debug, Default)]
pub struct Deframer {
    pending: Vec<u8>,
}

impl Deframer {
    /// Adds `bytes` and calls `each` for every frame now complete. A
    /// stream byte other than 0, 1 or 2 is taken as stdout, as docker's
    /// client does.
    pub fn push(&mut self, bytes: &[u8], mut each: impl FnMut(Stream, &[u8])) {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        while self.pending.len() - at >= 8 {
            let h = &self.pending[at..at + 8];
            let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
            if self.pending.len() - at - 8 < len {
                break;
            }
            let stream = match h[0] {
                0 => Stream::Stdin,
                2 => Stream::Stderr,
                _ => Stream::Stdout,
            };
            each(stream, &self.pending[at + 8..at + 8 + len]);
            at += 8 + len;
        }
        self.pending.drain(..at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split() {
        let mut wire = frame(Stream::Stdout, b"hello ");
        wire.extend(frame(Stream::Stderr, b"oops"));
        wire.extend(frame(Stream::Stdout, b""));
        wire.extend(frame(Stream::Stdout, b"world"));
        assert_eq!(&wire[..8], &[1, 0, 0, 0, 0, 0, 0, 6]);
        for chunk in 1..wire.len() {
            let mut d = Deframer::default();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                d.push(piece, |s, b| got.push((s, b.to_vec())));
            }
            assert_eq!(
                got,
                [
                    (Stream::Stdout, b"hello ".to_vec()),
                    (Stream::Stderr, b"oops".to_vec()),
                    (Stream::Stdout, Vec::new()),
                    (Stream::Stdout, b"world".to_vec()),
                ],
                "chunks of {chunk}"
            );
        }
    }
}
