//! Uploads: monolithic, chunked (416 for an out-of-order chunk),
//! resumable with status, cancel; cross-repository mounts; the digest
//! checked before anything is stored.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_image::digest::{Algorithm, Digest};
use futures_util::StreamExt;

use super::access::{authorization, blocking_if_basic};
use super::http::{body_idle, body_timeout, error, internal, parse_digest, write_lock};
use super::Registry;
use crate::storage::valid_name;

/// Appends a request's body to upload `id`; returns the upload's size
/// and, when the upload started empty and `alg` is given, the digest of
/// its content, computed as the bytes streamed in.
pub(super) async fn append(
    reg: &Registry,
    id: &str,
    body: Body,
    alg: Option<Algorithm>,
) -> Result<(u64, Option<Digest>), Response> {
    let start = reg
        .storage
        .upload_size(id)
        .ok_or_else(|| upload_unknown(id))?;
    let mut sink = reg.storage.append_upload(id).map_err(internal)?;
    let mut hasher = alg.filter(|_| start == 0).map(|a| a.hasher());
    let mut stream = body.into_data_stream();
    loop {
        let Ok(next) = tokio::time::timeout(body_idle(), stream.next()).await else {
            sink.abort();
            return Err(body_timeout());
        };
        let Some(chunk) = next else { break };
        // A client that goes away mid-body leaves the upload where it
        // was: the part of this request already written is cut off.
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                sink.abort();
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "BLOB_UPLOAD_INVALID",
                    format!("the request body ended early: {e}"),
                ));
            }
        };
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        // Into the page cache: a write here does not wait for the disk.
        if let Err(e) = std::io::Write::write_all(&mut sink, &chunk) {
            sink.abort();
            return Err(internal(e));
        }
    }
    let size = sink.finish().map_err(internal)?;
    Ok((size, hasher.map(|h| h.finish())))
}

/// The digest of an upload's content, read once.
pub(super) async fn upload_digest(
    reg: &Registry,
    id: &str,
    alg: Algorithm,
) -> std::io::Result<Digest> {
    let storage = reg.storage.clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || {
        let mut f = storage.read_upload(&id)?;
        let mut h = alg.hasher();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf)?;
            if n == 0 {
                return Ok(h.finish());
            }
            h.update(&buf[..n]);
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

pub(super) fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

pub(super) fn upload_progress(status: StatusCode, name: &str, id: &str, size: u64) -> Response {
    let range = format!("0-{}", size.saturating_sub(1));
    (
        status,
        [
            (header::LOCATION, upload_location(name, id)),
            (header::RANGE, range),
            (header::CONTENT_LENGTH, "0".to_string()),
            (
                header::HeaderName::from_static("docker-upload-uuid"),
                id.to_string(),
            ),
        ],
    )
        .into_response()
}

pub(super) fn blob_created(name: &str, d: &Digest) -> Response {
    (
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/v2/{name}/blobs/{d}")),
            (
                header::HeaderName::from_static("docker-content-digest"),
                d.to_string(),
            ),
            (header::CONTENT_LENGTH, "0".to_string()),
        ],
    )
        .into_response()
}

/// Verifies the finished upload `id` against `digest` (with the digest
/// computed as it streamed in, when there is one) and commits it.
pub(super) async fn finish_upload(
    reg: &Registry,
    name: &str,
    id: &str,
    digest: &str,
    streamed: Option<Digest>,
) -> Response {
    let d = match parse_digest(digest) {
        Ok(d) => d,
        Err(r) => {
            reg.storage.remove_upload(id);
            return r;
        }
    };
    if reg.storage.upload_size(id).is_none() {
        return upload_unknown(id);
    }
    let actual = match streamed.filter(|s| s.algorithm() == d.algorithm()) {
        Some(a) => a,
        None => match upload_digest(reg, id, d.algorithm()).await {
            Ok(a) => a,
            Err(e) => return internal(e),
        },
    };
    if actual != d {
        reg.storage.remove_upload(id);
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("the upload's content has digest {actual}, not {d}"),
        );
    }
    let _lock = match write_lock(reg).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let done = reg
        .storage
        .commit_upload(id, &d)
        .and_then(|()| reg.storage.link_blob(name, &d));
    match done {
        Ok(()) => blob_created(name, &d),
        Err(e) => internal(e),
    }
}

/// Exclusive use of upload `id` for this request (two requests writing one
/// upload at once could change what the other verified).
pub(super) fn lock_upload(
    reg: &Registry,
    name: &str,
    id: &str,
) -> Result<crate::storage::WriteLock, Response> {
    match reg.storage.lock_upload(id) {
        Ok(Some(l)) => Ok(l),
        Ok(None) => {
            let size = reg.storage.upload_size(id).unwrap_or(0);
            let mut r = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                "another request is writing this upload: wait for it, then ask where it is",
            );
            if let Ok(v) = HeaderValue::from_str(&upload_location(name, id)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("0-{}", size.saturating_sub(1))) {
                r.headers_mut().insert(header::RANGE, v);
            }
            Err(r)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(upload_unknown(id)),
        Err(e) => Err(internal(e)),
    }
}

/// An upload chunk's `Content-Range: START-END` (inclusive; "bytes "
/// prefixed or not), checked to start where the upload ends: anything
/// else (`0--1`, `5-2`, a gap, an overlap) is 416 with where it stands.
/// Returns the upload's size once the chunk is in (END + 1), to be checked
/// after it (a chunked body has no Content-Length to check first).
pub(super) fn check_chunk_range(
    headers: &HeaderMap,
    name: &str,
    id: &str,
    size: u64,
) -> Result<Option<u64>, Response> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let parsed = v.to_str().ok().and_then(|range| {
        let r = range.trim().trim_start_matches("bytes ").trim();
        let (a, b) = r.split_once('-')?;
        let (a, b) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
        (b >= a).then_some((a, b))
    });
    let in_order = parsed.is_some_and(|(start, end)| {
        start == size
            && headers
                .get(header::CONTENT_LENGTH)
                .and_then(|l| l.to_str().ok()?.parse::<u64>().ok())
                .is_none_or(|len| len == end - start + 1)
    });
    if in_order {
        return Ok(parsed.map(|(_, end)| end + 1));
    }
    Err((
        StatusCode::RANGE_NOT_SATISFIABLE,
        [
            (header::LOCATION, upload_location(name, id)),
            (header::RANGE, format!("0-{}", size.saturating_sub(1))),
        ],
    )
        .into_response())
}

/// A chunk longer or shorter than its Content-Range said: the upload no
/// longer holds what the client thinks, so it is dropped.
pub(super) fn chunk_mismatch(reg: &Registry, id: &str) -> Response {
    reg.storage.remove_upload(id);
    error(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
        "the chunk's length does not match its Content-Range: start the upload again",
    )
}

/// Who may use upload sessions made by this request: the repository and
/// the signed-in user (empty when anonymous).
pub(super) fn upload_owner(reg: &Registry, name: &str, headers: &HeaderMap) -> String {
    let user = blocking_if_basic(authorization(headers), || {
        reg.auth.identity(authorization(headers))
    });
    format!("{name}\n{}", user.unwrap_or_default())
}

pub(super) fn upload_unknown(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        format!("upload {id:?} is unknown: it was finished, cancelled or never started"),
    )
}

pub(super) async fn uploads(
    reg: &Registry,
    method: &Method,
    name: &str,
    id: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    // An upload belongs to the repository and the user that opened it:
    // through another repository's URL, or as someone else, it is unknown
    // (a push right elsewhere must not reach it).
    if !id.is_empty()
        && reg.storage.upload_owner(id).as_deref()
            != Some(upload_owner(reg, name, headers).as_str())
    {
        return upload_unknown(id);
    }
    match (method.clone(), id.is_empty()) {
        (Method::POST, true) => {
            // Cross-repository mount: the blob is linked, nothing moves.
            if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
                if let Ok(d) = mount.parse::<Digest>() {
                    // Only from a repository the client may pull.
                    let may = reg
                        .auth
                        .check(Some((from, crate::auth::PULL)), authorization(headers))
                        .is_ok();
                    let _lock = match write_lock(reg).await {
                        Ok(l) => l,
                        Err(r) => return r,
                    };
                    if may
                        && valid_name(from)
                        && reg.storage.blob_size(from, &d).is_some()
                        && reg.storage.touch_blob(&d)
                    {
                        return match reg.storage.link_blob(name, &d) {
                            Ok(()) => blob_created(name, &d),
                            Err(e) => internal(e),
                        };
                    }
                }
            }
            let new_id = match reg.storage.new_upload(&upload_owner(reg, name, headers)) {
                Ok(u) => u,
                Err(e) => return internal(e),
            };
            if let Some(digest) = q.get("digest") {
                // Monolithic: the whole blob in this request, its digest
                // computed as it streams in.
                let alg = digest.parse::<Digest>().ok().map(|d| d.algorithm());
                let streamed = match append(reg, &new_id, body, alg).await {
                    Ok((_, streamed)) => streamed,
                    Err(r) => {
                        reg.storage.remove_upload(&new_id);
                        return r;
                    }
                };
                return finish_upload(reg, name, &new_id, digest, streamed).await;
            }
            upload_progress(StatusCode::ACCEPTED, name, &new_id, 0)
        }
        (Method::PATCH, false) => {
            let _lock = match lock_upload(reg, name, id) {
                Ok(l) => l,
                Err(r) => return r,
            };
            let Some(size) = reg.storage.upload_size(id) else {
                return upload_unknown(id);
            };
            let expected = match check_chunk_range(headers, name, id, size) {
                Ok(e) => e,
                Err(r) => return r,
            };
            match append(reg, id, body, None).await {
                Ok((size, _)) if expected.is_some_and(|e| e != size) => chunk_mismatch(reg, id),
                Ok((size, _)) => upload_progress(StatusCode::ACCEPTED, name, id, size),
                Err(r) => r,
            }
        }
        (Method::PUT, false) => {
            // Held from the last bytes through the digest check to the
            // commit.
            let _lock = match lock_upload(reg, name, id) {
                Ok(l) => l,
                Err(r) => return r,
            };
            let Some(digest) = q.get("digest") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    "closing an upload needs ?digest=",
                );
            };
            // A final chunk must start where the upload ends, as a PATCH.
            let Some(size) = reg.storage.upload_size(id) else {
                return upload_unknown(id);
            };
            let expected = match check_chunk_range(headers, name, id, size) {
                Ok(e) => e,
                Err(r) => return r,
            };
            let alg = digest.parse::<Digest>().ok().map(|d| d.algorithm());
            match append(reg, id, body, alg).await {
                Ok((size, _)) if expected.is_some_and(|e| e != size) => chunk_mismatch(reg, id),
                Ok((_, streamed)) => finish_upload(reg, name, id, digest, streamed).await,
                Err(r) => r,
            }
        }
        (Method::GET, false) => match reg.storage.upload_size(id) {
            Some(size) => upload_progress(StatusCode::NO_CONTENT, name, id, size),
            None => upload_unknown(id),
        },
        (Method::DELETE, false) => {
            let _lock = match lock_upload(reg, name, id) {
                Ok(l) => l,
                Err(r) => return r,
            };
            reg.storage.remove_upload(id);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "uploads take POST, PATCH, PUT, GET and DELETE",
        ),
    }
}
