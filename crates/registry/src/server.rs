//! The OCI Distribution API over HTTP (axum on tokio): blobs, uploads
//! (monolithic, chunked with 416 for an out-of-order chunk, resumable
//! with status, cancel), cross-repository mounts, manifests stored
//! byte-exact, tags with pagination, deletes. Bodies stream to and from
//! disk; blob digests are checked before anything is stored.

// Helpers return a finished HTTP response as their error: it is built only
// on the error path, where its size does not matter.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use berth_image::digest::{Algorithm, Digest};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::storage::{valid_name, valid_tag, FsStorage};

/// The largest manifest accepted (the spec asks for at least 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;

/// The media types a manifest may have.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

pub struct Registry {
    pub storage: FsStorage,
    pub auth: crate::auth::Auth,
}

/// 401 with the challenge Docker clients answer with basic auth, unless
/// the request may go on.
fn gate(
    reg: &Registry,
    repo: Option<&str>,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Response> {
    let write = !matches!(*method, Method::GET | Method::HEAD);
    let authz = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if reg.auth.allows(repo, write, authz) {
        return None;
    }
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required: berth login (or docker login) to this registry",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"berth registry\""),
    );
    Some(r)
}

/// The router: `/v2/` and everything below it.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(base_gated))
        .route("/v2/", any(base_gated))
        .route("/v2/{*rest}", any(dispatch))
        .with_state(registry)
}

async fn base_gated(
    State(reg): State<Arc<Registry>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&reg, None, &method, &headers) {
        return r;
    }
    base().await
}

async fn base() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::HeaderName::from_static("docker-distribution-api-version"),
                "registry/2.0",
            ),
        ],
        "{}",
    )
        .into_response()
}

/// The spec's error body: `{"errors":[{"code","message","detail"}]}`.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"errors": [{"code": code, "message": message.into(), "detail": null}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "storage error");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        format!("storage error: {e}"),
    )
}

fn name_invalid(name: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
        format!("invalid repository name {name:?}"),
    )
}

fn parse_digest(s: &str) -> Result<Digest, Response> {
    s.parse().map_err(|e: berth_image::digest::DigestError| {
        error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string())
    })
}

async fn dispatch(
    State(reg): State<Arc<Registry>>,
    method: Method,
    Path(rest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        if let Some(r) = gate(&reg, None, &method, &headers) {
            return r;
        }
        return base().await;
    }
    // The repository a request is about, for access control.
    let repo = rest
        .strip_suffix("/tags/list")
        .or_else(|| rest.rsplit_once("/referrers/").map(|(n, _)| n))
        .or_else(|| rest.rsplit_once("/manifests/").map(|(n, _)| n))
        .or_else(|| rest.split_once("/blobs/uploads").map(|(n, _)| n))
        .or_else(|| rest.rsplit_once("/blobs/").map(|(n, _)| n));
    if let Some(r) = gate(&reg, repo, &method, &headers) {
        return r;
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        if !valid_name(name) {
            return name_invalid(name);
        }
        return tags(&reg, name, &q);
    }
    if let Some((name, digest)) = rest.rsplit_once("/referrers/") {
        if !valid_name(name) {
            return name_invalid(name);
        }
        return referrers(&reg, name, digest, &q);
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        if !valid_name(name) {
            return name_invalid(name);
        }
        return manifests(&reg, &method, name, reference, &headers, body).await;
    }
    if let Some((name, id)) = rest.split_once("/blobs/uploads") {
        if !valid_name(name) {
            return name_invalid(name);
        }
        return uploads(
            &reg,
            &method,
            name,
            id.trim_start_matches('/'),
            &q,
            &headers,
            body,
        )
        .await;
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        if !valid_name(name) {
            return name_invalid(name);
        }
        return blobs(&reg, &method, name, digest, &headers).await;
    }
    error(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        format!("no route for /v2/{rest}"),
    )
}

fn tags(reg: &Registry, name: &str, q: &HashMap<String, String>) -> Response {
    if !reg.storage.repo_exists(name) {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("repository {name} is not known to this registry"),
        );
    }
    let mut all = reg.storage.tags(name);
    if let Some(last) = q.get("last") {
        all.retain(|t| t.as_str() > last.as_str());
    }
    let n = q.get("n").and_then(|n| n.parse::<usize>().ok());
    let mut headers = HeaderMap::new();
    let page: Vec<String> = match n {
        Some(n) if all.len() > n => {
            let page = all[..n].to_vec();
            if let Some(last) = page.last() {
                let link = format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\"");
                if let Ok(v) = HeaderValue::from_str(&link) {
                    headers.insert(header::LINK, v);
                }
            }
            page
        }
        _ => all,
    };
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (
        StatusCode::OK,
        headers,
        json!({"name": name, "tags": page}).to_string(),
    )
        .into_response()
}

/// `bytes=START-END` (END optional, inclusive).
fn parse_range(h: &HeaderMap, size: u64) -> Option<Result<(u64, u64), ()>> {
    let v = h.get(header::RANGE)?.to_str().ok()?;
    let spec = v.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
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

/// A blob's bytes `start..start+len` as a body: the file mapped into
/// memory, so the server sends straight from the page cache without
/// copying through a buffer.
async fn file_body(path: PathBuf, start: u64, len: u64) -> std::io::Result<Body> {
    if len == 0 {
        return Ok(Body::empty());
    }
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path)?;
        // SAFETY: blobs are written once and renamed into place, never
        // modified or truncated afterwards (a deleted blob's pages stay
        // valid while mapped), so the mapping cannot change under us.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(start)
                .len(len as usize)
                .map(&f)?
        };
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(Body::from(Bytes::from_owner(map)))
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn blobs(
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
                return (status, h).into_response();
            }
            match file_body(reg.storage.blob_path(&d), start, len).await {
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

/// Appends the request body to an upload file; returns its new size.
async fn append(path: &std::path::Path, body: Body) -> Result<u64, Response> {
    let mut f = tokio::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .await
        .map_err(internal)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        // A client that goes away mid-body leaves the upload where it
        // was; the chunk it was sending is not counted.
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("the request body ended early: {e}"),
            )
        })?;
        f.write_all(&chunk).await.map_err(internal)?;
    }
    f.flush().await.map_err(internal)?;
    let len = f.metadata().await.map_err(internal)?.len();
    Ok(len)
}

/// The digest of a file, read once.
async fn file_digest(path: PathBuf, alg: Algorithm) -> std::io::Result<Digest> {
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path)?;
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

fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn upload_progress(status: StatusCode, name: &str, id: &str, size: u64) -> Response {
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

fn blob_created(name: &str, d: &Digest) -> Response {
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

/// Verifies the finished upload `id` against `digest` and commits it.
async fn finish_upload(reg: &Registry, name: &str, id: &str, digest: &str) -> Response {
    let d = match parse_digest(digest) {
        Ok(d) => d,
        Err(r) => {
            reg.storage.remove_upload(id);
            return r;
        }
    };
    let Some(path) = reg.storage.upload(id) else {
        return upload_unknown(id);
    };
    let actual = match file_digest(path.clone(), d.algorithm()).await {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    if actual != d {
        reg.storage.remove_upload(id);
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("the upload's content has digest {actual}, not {d}"),
        );
    }
    let done = reg
        .storage
        .commit_blob(&path, &d)
        .and_then(|()| reg.storage.link_blob(name, &d));
    reg.storage.remove_upload(id);
    match done {
        Ok(()) => blob_created(name, &d),
        Err(e) => internal(e),
    }
}

fn upload_unknown(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        format!("upload {id:?} is unknown: it was finished, cancelled or never started"),
    )
}

async fn uploads(
    reg: &Registry,
    method: &Method,
    name: &str,
    id: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    match (method.clone(), id.is_empty()) {
        (Method::POST, true) => {
            // Cross-repository mount: the blob is linked, nothing moves.
            if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
                if let Ok(d) = mount.parse::<Digest>() {
                    if valid_name(from) && reg.storage.blob_size(from, &d).is_some() {
                        return match reg.storage.link_blob(name, &d) {
                            Ok(()) => blob_created(name, &d),
                            Err(e) => internal(e),
                        };
                    }
                }
            }
            let (new_id, path) = match reg.storage.new_upload() {
                Ok(u) => u,
                Err(e) => return internal(e),
            };
            if let Some(digest) = q.get("digest") {
                // Monolithic: the whole blob in this request.
                if let Err(r) = append(&path, body).await {
                    reg.storage.remove_upload(&new_id);
                    return r;
                }
                return finish_upload(reg, name, &new_id, digest).await;
            }
            upload_progress(StatusCode::ACCEPTED, name, &new_id, 0)
        }
        (Method::PATCH, false) => {
            let Some(path) = reg.storage.upload(id) else {
                return upload_unknown(id);
            };
            let size = match tokio::fs::metadata(&path).await {
                Ok(m) => m.len(),
                Err(e) => return internal(e),
            };
            if let Some(range) = headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
            {
                let start = range
                    .trim_start_matches("bytes ")
                    .split('-')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok());
                if start != Some(size) {
                    return (
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        [
                            (header::LOCATION, upload_location(name, id)),
                            (header::RANGE, format!("0-{}", size.saturating_sub(1))),
                        ],
                    )
                        .into_response();
                }
            }
            match append(&path, body).await {
                Ok(size) => upload_progress(StatusCode::ACCEPTED, name, id, size),
                Err(r) => r,
            }
        }
        (Method::PUT, false) => {
            let Some(path) = reg.storage.upload(id) else {
                return upload_unknown(id);
            };
            let Some(digest) = q.get("digest") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    "closing an upload needs ?digest=",
                );
            };
            if let Err(r) = append(&path, body).await {
                return r;
            }
            finish_upload(reg, name, id, digest).await
        }
        (Method::GET, false) => {
            let Some(path) = reg.storage.upload(id) else {
                return upload_unknown(id);
            };
            match tokio::fs::metadata(&path).await {
                Ok(m) => upload_progress(StatusCode::NO_CONTENT, name, id, m.len()),
                Err(e) => internal(e),
            }
        }
        (Method::DELETE, false) => {
            if reg.storage.upload(id).is_none() {
                return upload_unknown(id);
            }
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

/// A tag or digest reference to a manifest digest of repository `name`.
fn resolve(reg: &Registry, name: &str, reference: &str) -> Result<Digest, Response> {
    if reference.contains(':') {
        return parse_digest(reference);
    }
    if !valid_tag(reference) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
            format!("invalid tag {reference:?}"),
        ));
    }
    reg.storage.tag(name, reference).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("manifest {name}:{reference} is unknown"),
        )
    })
}

/// Reads a body of at most `limit` bytes; 413 above it.
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, Response> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                format!("the request body ended early: {e}"),
            )
        })?;
        if out.len() + chunk.len() > limit {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!("manifests are limited to {limit} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The blobs and manifests a manifest refers to must be in the
/// repository already.
fn check_references(reg: &Registry, name: &str, doc: &serde_json::Value) -> Result<(), Response> {
    let missing = |what: &str, d: &str| {
        error(
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
            format!("{what} {d} is not in repository {name}: push it first"),
        )
    };
    let digest_of = |v: &serde_json::Value| -> Result<Digest, Response> {
        let s = v.get("digest").and_then(|d| d.as_str()).unwrap_or("");
        s.parse().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                format!("invalid descriptor digest {s:?}"),
            )
        })
    };
    if let Some(children) = doc.get("manifests").and_then(|m| m.as_array()) {
        for c in children {
            let d = digest_of(c)?;
            if reg.storage.manifest(name, &d).is_none() {
                return Err(missing("manifest", &d.to_string()));
            }
        }
        return Ok(());
    }
    let config = doc.get("config").ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
            "an image manifest needs a config descriptor",
        )
    })?;
    let layers = doc
        .get("layers")
        .and_then(|l| l.as_array())
        .cloned()
        .unwrap_or_default();
    for desc in std::iter::once(config).chain(layers.iter()) {
        let d = digest_of(desc)?;
        if reg.storage.blob_size(name, &d).is_none() {
            return Err(missing("blob", &d.to_string()));
        }
    }
    Ok(())
}

/// The referrers API: an image index of the manifests whose subject is
/// `digest`, filtered by `artifactType`; never 404.
fn referrers(reg: &Registry, name: &str, digest: &str, q: &HashMap<String, String>) -> Response {
    let d = match parse_digest(digest) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut list = reg.storage.referrers(name, &d);
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
    );
    if let Some(t) = q.get("artifactType") {
        list.retain(|r| r.get("artifactType").and_then(|a| a.as_str()) == Some(t.as_str()));
        h.insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    let body = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": list,
    });
    (StatusCode::OK, h, body.to_string()).into_response()
}

async fn manifests(
    reg: &Registry,
    method: &Method,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    match *method {
        Method::GET | Method::HEAD => {
            let d = match resolve(reg, name, reference) {
                Ok(d) => d,
                Err(r) => return r,
            };
            let Some((bytes, media)) = reg.storage.manifest(name, &d) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    format!("manifest {name}@{d} is unknown"),
                );
            };
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&media) {
                h.insert(header::CONTENT_TYPE, v);
            }
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            if let Ok(v) = HeaderValue::from_str(&d.to_string()) {
                h.insert("docker-content-digest", v);
            }
            if *method == Method::HEAD {
                return (StatusCode::OK, h).into_response();
            }
            (StatusCode::OK, h, bytes).into_response()
        }
        Method::PUT => {
            let bytes = match read_limited(body, MAX_MANIFEST).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let doc: serde_json::Value = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "MANIFEST_INVALID",
                        format!("the manifest is not JSON: {e}"),
                    )
                }
            };
            let media = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(';').next().unwrap_or(s).trim().to_string())
                .filter(|s| MANIFEST_TYPES.contains(&s.as_str()))
                .or_else(|| {
                    doc.get("mediaType")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| MANIFEST_TYPES[0].to_string());
            if !MANIFEST_TYPES.contains(&media.as_str()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_INVALID",
                    format!("unsupported manifest media type {media:?}"),
                );
            }
            let (tag, d) = if reference.contains(':') {
                let want = match parse_digest(reference) {
                    Ok(d) => d,
                    Err(r) => return r,
                };
                let got = Digest::of(want.algorithm(), &bytes);
                if got != want {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "DIGEST_INVALID",
                        format!("the manifest's digest is {got}, not {want}"),
                    );
                }
                (None, want)
            } else {
                if !valid_tag(reference) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "MANIFEST_INVALID",
                        format!("invalid tag {reference:?}"),
                    );
                }
                (Some(reference), Digest::sha256_of(&bytes))
            };
            if let Err(r) = check_references(reg, name, &doc) {
                return r;
            }
            if let Err(e) = reg.storage.put_manifest(name, &d, &media, &bytes, tag) {
                return internal(e);
            }
            let subject = doc
                .get("subject")
                .and_then(|s| s.get("digest"))
                .and_then(|d| d.as_str())
                .and_then(|s| s.parse::<Digest>().ok());
            if let Some(subject) = &subject {
                // The descriptor the referrers API lists: an artifact's
                // type, else its config's media type (the spec's rule).
                let artifact_type = doc
                    .get("artifactType")
                    .cloned()
                    .or_else(|| doc.get("config").and_then(|c| c.get("mediaType")).cloned())
                    .unwrap_or(serde_json::Value::Null);
                let mut desc = json!({
                    "mediaType": media,
                    "digest": d.to_string(),
                    "size": bytes.len(),
                    "artifactType": artifact_type,
                });
                if let Some(a) = doc.get("annotations") {
                    desc["annotations"] = a.clone();
                }
                if let Err(e) = reg.storage.add_referrer(name, subject, &d, &desc) {
                    return internal(e);
                }
            }
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("/v2/{name}/manifests/{d}")) {
                h.insert(header::LOCATION, v);
            }
            if let Ok(v) = HeaderValue::from_str(&d.to_string()) {
                h.insert("docker-content-digest", v);
            }
            if let Some(subject) = doc
                .get("subject")
                .and_then(|s| s.get("digest"))
                .and_then(|d| d.as_str())
            {
                if let Ok(v) = HeaderValue::from_str(subject) {
                    h.insert("oci-subject", v);
                }
            }
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            (StatusCode::CREATED, h).into_response()
        }
        Method::DELETE => {
            let res = if reference.contains(':') {
                match parse_digest(reference) {
                    Ok(d) => reg.storage.delete_manifest(name, &d),
                    Err(r) => return r,
                }
            } else {
                reg.storage.delete_tag(name, reference)
            };
            match res {
                Ok(true) => StatusCode::ACCEPTED.into_response(),
                Ok(false) => error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    format!("manifest {name}:{reference} is unknown"),
                ),
                Err(e) => internal(e),
            }
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "manifests take GET, HEAD, PUT and DELETE",
        ),
    }
}

/// Serves the registry on `addr` until ctrl-c or SIGTERM; uploads left
/// untouched for `upload_ttl` are removed.
pub async fn serve(
    addr: &str,
    storage: FsStorage,
    auth: crate::auth::Auth,
    upload_ttl: std::time::Duration,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let sweeper = storage.clone();
    tokio::spawn(async move {
        let every = (upload_ttl / 4).clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(600),
        );
        loop {
            let s = sweeper.clone();
            let _ = tokio::task::spawn_blocking(move || s.expire_uploads(upload_ttl)).await;
            tokio::time::sleep(every).await;
        }
    });
    // The address actually bound (port 0 picks a free one), for the
    // caller to read.
    println!("berth registry listening on {}", listener.local_addr()?);
    let app = router(Arc::new(Registry { storage, auth }));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await
}
