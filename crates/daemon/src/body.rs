//! Response bodies: whole, or streamed from a channel (JSON lines of a
//! pull, a build, events, logs; a wait's one answer sent when it comes,
//! after the status line went out at once).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::mpsc;

/// Chunks a stream holds before its producer waits: a client that stops
/// reading holds back its producer, never the daemon's memory.
pub const STREAM_DEPTH: usize = 64;

pub enum Body {
    Full(Option<Bytes>),
    /// Chunks until the senders are gone; then, if the flag is set, an
    /// error, so the client sees the stream broken off rather than ended
    /// (a half-written archive must not look whole).
    Stream(mpsc::Receiver<Bytes>, Option<Arc<AtomicBool>>),
}

/// A stream that was broken off by its producer.
#[derive(Debug)]
pub struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the response stream was broken off")
    }
}

impl std::error::Error for Aborted {}

impl Body {
    pub fn empty() -> Body {
        Body::Full(None)
    }

    pub fn full(b: impl Into<Bytes>) -> Body {
        Body::Full(Some(b.into()))
    }

    /// A streamed body and the sender that feeds it (dropped: the end).
    pub fn channel() -> (mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = mpsc::channel(STREAM_DEPTH);
        (tx, Body::Stream(rx, None))
    }

    /// A streamed body that its producer can break off: set the flag,
    /// then drop the last sender.
    pub fn abortable() -> (mpsc::Sender<Bytes>, Arc<AtomicBool>, Body) {
        let (tx, rx) = mpsc::channel(STREAM_DEPTH);
        let flag = Arc::new(AtomicBool::new(false));
        (tx, flag.clone(), Body::Stream(rx, Some(flag)))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx, flag) => match rx.poll_recv(cx) {
                Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(None) if flag.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) => {
                    Poll::Ready(Some(Err(Aborted)))
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(..) => SizeHint::default(),
        }
    }
}
