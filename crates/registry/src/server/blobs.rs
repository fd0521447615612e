//! Blobs: HEAD and GET with ranges, streamed from the storage; DELETE.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_image::digest::Digest;
use bytes::Bytes;

use super::http::{error, internal, parse_digest};
use super::Registry;
use crate::storage::{BlobSource, Storage};

/// `bytes=START-END` (END optional, inclusive), or `bytes=-N` (the last N
/// bytes, RFC 9110's suffix range).
pub(super) fn parse_range(h: &HeaderMap, size: u64) -> Option<Result<(u64, u64), ()>> {
    let v = h.get(header::RANGE)?.to_str().ok()?;
    let spec = v.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return Some(Err(()));
        }
        return Some(Ok((size - n.min(size), size - 1)));
    }
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() {
        size.saturating_sub(1)
    } else {
        b.parse().ok()?
    };
    if start > end || start >= size {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(size - 1))))
}

/// A blob's bytes `start..start+len` as a body: a local file mapped into
/// memory, so the server sends straight from the page cache without
/// copying through a buffer; another source streamed.
pub(super) async fn blob_body(
    storage: Arc<dyn Storage>,
    d: Digest,
    start: u64,
    len: u64,
) -> std::io::Result<Body> {
    if len == 0 {
        return Ok(Body::empty());
    }
    let source = tokio::task::spawn_blocking(move || storage.open_blob(&d))
        .await
        .map_err(std::io::Error::other)??;
    match source {
        BlobSource::File(f) => tokio::task::spawn_blocking(move || {
            Ok(Body::from(crate::sendfile::file_bytes(
                f,
                start,
                len as usize,
            )?))
        })
        .await
        .map_err(std::io::Error::other)?,
        BlobSource::Reader(mut r) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
            tokio::task::spawn_blocking(move || {
                let mut skip = std::io::Read::take(&mut r, start);
                if let Err(e) = std::io::copy(&mut skip, &mut std::io::sink()) {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
                let mut left = len;
                while left > 0 {
                    let mut buf = vec![0u8; left.min(256 << 10) as usize];
                    match std::io::Read::read(&mut r, &mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            buf.truncate(n);
                            left -= n as u64;
                            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
            });
            Ok(Body::from_stream(tokio_stream_from(rx)))
        }
    }
}

/// A stream over a channel's receiver.
pub(super) fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

pub(super) async fn blobs(
    reg: &Registry,
    method: &Method,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
) -> Response {
    let d = match parse_digest(digest) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match *method {
        Method::GET | Method::HEAD => {
            let Some(size) = reg.storage.blob_size(name, &d) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "BLOB_UNKNOWN",
                    format!("blob {d} is unknown to repository {name}"),
                );
            };
            let (status, start, len) = match parse_range(headers, size) {
                None => (StatusCode::OK, 0, size),
                Some(Ok((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
                Some(Err(())) => {
                    return (
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                    )
                        .into_response()
                }
            };
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if let Ok(v) = HeaderValue::from_str(&d.to_string()) {
                h.insert("docker-content-digest", v);
            }
            if status == StatusCode::PARTIAL_CONTENT {
                if let Ok(v) =
                    HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
                {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            if *method == Method::HEAD {
                // A client that finds the blob here skips its upload and
                // will push a manifest naming it: the collection's grace
                // period starts now.
                reg.storage.touch_blob(&d);
                return (status, h).into_response();
            }
            match blob_body(reg.storage.clone(), d, start, len).await {
                Ok(body) => (status, h, body).into_response(),
                Err(e) => internal(e),
            }
        }
        Method::DELETE => match reg.storage.delete_blob(name, &d) {
            Ok(true) => StatusCode::ACCEPTED.into_response(),
            Ok(false) => error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                format!("blob {d} is unknown to repository {name}"),
            ),
            Err(e) => internal(e),
        },
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "use GET, HEAD or DELETE on a blob",
        ),
    }
}
