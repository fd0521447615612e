//! Blobs sent with sendfile(2) over plain HTTP. A blob's body is a memory
//! map of its file, registered here by address; when hyper hands bytes
//! from such a map to a [`SendfileStream`] to write, the stream sends the
//! same range from the file instead. The bytes never pass through user
//! space (nor the page tables: the map is never touched), which is most
//! of what serving a blob costs. Anything else is written as usual.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

struct Region {
    end: usize,
    file: Arc<std::fs::File>,
    offset: u64,
}

/// Live maps by start address.
static REGIONS: LazyLock<Mutex<BTreeMap<usize, Region>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// A mapped range of a blob file, registered while it lives.
struct Mapped {
    map: memmap2::Mmap,
    start: usize,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // Unregistered before the map goes, so that an address reused by
        // a later map is never taken for this one.
        if let Ok(mut r) = REGIONS.lock() {
            r.remove(&self.start);
        }
    }
}

/// Bytes `offset..offset+len` of `file` as a body: mapped, and sent
/// from the file by a [`SendfileStream`].
///
/// The file must never change while mapped (blobs are written once and
/// renamed into place).
pub fn file_bytes(file: std::fs::File, offset: u64, len: usize) -> io::Result<Bytes> {
    // SAFETY: blobs are written once and renamed into place, never
    // modified or truncated afterwards (a deleted blob's pages stay valid
    // while mapped), so the mapping cannot change under us.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(&file)?
    };
    let _ = map.advise(memmap2::Advice::Sequential);
    let start = map.as_ptr() as usize;
    if let Ok(mut r) = REGIONS.lock() {
        r.insert(
            start,
            Region {
                end: start + len,
                file: Arc::new(file),
                offset,
            },
        );
    }
    Ok(Bytes::from_owner(Mapped { map, start }))
}

/// The file and offset `buf` was mapped from, if it lies within a
/// registered map.
fn lookup(buf: &[u8]) -> Option<(Arc<std::fs::File>, u64)> {
    if buf.is_empty() {
        return None;
    }
    let p = buf.as_ptr() as usize;
    let regions = REGIONS.lock().ok()?;
    let (start, r) = regions.range(..=p).next_back()?;
    (p + buf.len() <= r.end).then(|| (r.file.clone(), r.offset + (p - start) as u64))
}

/// A TCP stream that writes registered maps with sendfile.
pub struct SendfileStream(pub TcpStream);

impl SendfileStream {
    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            let sock = &self.0;
            let r = sock.try_io(Interest::WRITABLE, || {
                let mut off = offset;
                rustix::fs::sendfile(sock.as_fd(), file.as_fd(), Some(&mut off), len)
                    .map_err(io::Error::from)
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some((file, offset)) = lookup(buf) {
            return self.poll_sendfile(cx, &file, offset, buf.len());
        }
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Plain slices up to the first mapped one go out together; a
        // mapped one goes alone, by sendfile.
        let first = bufs.iter().position(|b| lookup(b).is_some());
        match first {
            Some(0) => {
                let (file, offset) = lookup(&bufs[0]).expect("just found");
                self.poll_sendfile(cx, &file, offset, bufs[0].len())
            }
            Some(i) => Pin::new(&mut self.0).poll_write_vectored(cx, &bufs[..i]),
            None => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
