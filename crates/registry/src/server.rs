//! The OCI Distribution API over HTTP (axum on tokio): blobs, uploads
//! (monolithic, chunked with 416 for an out-of-order chunk, resumable
//! with status, cancel), cross-repository mounts, manifests stored
//! byte-exact, tags with pagination, deletes. Bodies stream to and from
//! disk; blob digests are checked before anything is stored.

// Helpers return a finished HTTP response as their error: it is built only
// on the error path, where its size does not matter.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
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

use crate::storage::{valid_name, valid_tag, BlobSource, Storage};

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
    pub storage: Arc<dyn Storage>,
    pub auth: crate::auth::Auth,
    /// Served over TLS (for the token realm's scheme).
    pub tls: bool,
    /// Webhooks.
    pub notify: Option<crate::notify::Notifier>,
}

impl Registry {
    pub fn new(storage: Arc<dyn Storage>, auth: crate::auth::Auth) -> Registry {
        Registry {
            storage,
            auth,
            tls: false,
            notify: None,
        }
    }

    /// Tells the webhooks about a manifest event (when there are any).
    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        action: &'static str,
        headers: &HeaderMap,
        name: &str,
        d: &Digest,
        media_type: &str,
        size: usize,
        tag: Option<&str>,
        method: &Method,
    ) {
        let Some(n) = &self.notify else { return };
        let h = |k: header::HeaderName| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let scheme = if self.tls { "https" } else { "http" };
        n.send(&crate::notify::Event {
            action,
            repository: name.to_string(),
            digest: d.to_string(),
            media_type: media_type.to_string(),
            size: size as u64,
            tag: tag.map(str::to_string),
            base: format!("{scheme}://{}", h(header::HOST)),
            method: method.to_string(),
            user_agent: h(header::USER_AGENT),
            actor: self.auth.actor(authorization(headers)),
        });
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Runs `f` where it may block (a bcrypt check takes tens of milliseconds
/// on purpose) without stalling the runtime's other requests, when there
/// are basic credentials to check.
fn blocking_if_basic<T>(authorization: Option<&str>, f: impl FnOnce() -> T) -> T {
    let basic = authorization.is_some_and(|a| a.starts_with("Basic"));
    match tokio::runtime::Handle::try_current() {
        Ok(h) if basic && h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// None if the request may go on; else the answer Docker clients expect:
/// 401 with a challenge (basic, or bearer naming the token endpoint and
/// the scope to ask for), or 403 DENIED for a signed-in user without the
/// right.
fn gate(reg: &Registry, need: Option<(&str, &str)>, headers: &HeaderMap) -> Option<Response> {
    use crate::auth::Refusal;
    let authz = authorization(headers);
    let refusal = blocking_if_basic(authz, || reg.auth.check(need, authz)).err()?;
    let Some(tokens) = &reg.auth.tokens else {
        if refusal == Refusal::Denied {
            let (repo, action) = need.unwrap_or_default();
            return Some(error(
                StatusCode::FORBIDDEN,
                "DENIED",
                format!("requested access to the resource is denied: no {action} right on {repo}"),
            ));
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
        return Some(r);
    };
    let realm = reg.auth.realm.clone().unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        format!("{}://{host}/token", if reg.tls { "https" } else { "http" })
    });
    let mut challenge = format!("Bearer realm=\"{realm}\",service=\"{}\"", tokens.service);
    if let Some((repo, action)) = need {
        let actions = if action == crate::auth::PUSH {
            "pull,push"
        } else {
            action
        };
        challenge.push_str(&format!(",scope=\"repository:{repo}:{actions}\""));
    }
    let (code, message) = match &refusal {
        Refusal::Denied => {
            challenge.push_str(",error=\"insufficient_scope\"");
            (
                "DENIED",
                "requested access to the resource is denied: the token does not grant it (sign in with berth login, as a user with the right)".to_string(),
            )
        }
        Refusal::Unauthenticated { error: Some(e) } => {
            challenge.push_str(",error=\"invalid_token\"");
            ("UNAUTHORIZED", e.clone())
        }
        Refusal::Unauthenticated { error: None } => (
            "UNAUTHORIZED",
            "authentication required: get a token from the realm (berth login or docker login)"
                .to_string(),
        ),
    };
    let mut r = error(StatusCode::UNAUTHORIZED, code, message);
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    Some(r)
}

/// The router: `/v2/` and everything below it, and `/token` when the
/// registry issues tokens.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(base_gated))
        .route("/v2/", any(base_gated))
        .route("/v2/{*rest}", any(dispatch))
        .route("/token", any(token_endpoint))
        .with_state(registry)
}

async fn base_gated(State(reg): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&reg, None, &headers) {
        return r;
    }
    base().await
}

/// Percent-decoding of a form or query value (`+` is a space).
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `key=value` pairs of a query string or form body, decoded.
pub fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

/// The token endpoint: `GET /token?service=S&scope=repository:R:pull,push`
/// with optional basic auth (Docker's flow), or `POST /token` with an
/// OAuth2 password grant (containerd's). Scopes may repeat, or be
/// space-separated.
async fn token_endpoint(
    State(reg): State<Arc<Registry>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(tokens) = &reg.auth.tokens else {
        return error(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            "this registry does not issue tokens",
        );
    };
    let oauth_error = |status: StatusCode, code: &str, message: &str| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"error": code, "error_description": message}).to_string(),
        )
            .into_response()
    };
    let mut params = form_pairs(uri.query().unwrap_or(""));
    let post = method == Method::POST;
    if post {
        match read_limited(body, 64 << 10).await {
            Ok(b) => params.extend(form_pairs(&String::from_utf8_lossy(&b))),
            Err(r) => return r,
        }
    } else if method != Method::GET {
        return oauth_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "the token endpoint takes GET or POST",
        );
    }
    let get = |k: &str| params.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
    if let Some(service) = get("service") {
        if service != tokens.service {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!(
                    "this endpoint issues tokens for service {:?}",
                    tokens.service
                ),
            );
        }
    }
    let scopes: Vec<crate::token::Access> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter_map(crate::token::parse_scope)
        .collect();
    let issued = if post {
        match get("grant_type") {
            Some("password") => blocking_if_basic(Some("Basic"), || {
                reg.auth.token_with_password(
                    get("username").unwrap_or(""),
                    get("password").unwrap_or(""),
                    &scopes,
                )
            }),
            _ => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "only the password grant is supported; or use GET with basic auth",
                )
            }
        }
    } else {
        let authz = authorization(&headers);
        blocking_if_basic(authz, || reg.auth.token(authz, &scopes))
    };
    let Ok(token) = issued else {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "wrong user name or password",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"berth registry\""),
        );
        return r;
    };
    let issued_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let scope: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({
            "token": token,
            "access_token": token,
            "expires_in": tokens.lifetime.as_secs(),
            "issued_at": issued_at,
            "scope": scope.join(" "),
        })
        .to_string(),
    )
        .into_response()
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
        if let Some(r) = gate(&reg, None, &headers) {
            return r;
        }
        return base().await;
    }
    // The repository a request is about, and what it does there, for
    // access control. Everything about an upload is a push.
    let action = match method {
        Method::GET | Method::HEAD => crate::auth::PULL,
        Method::DELETE => crate::auth::DELETE,
        _ => crate::auth::PUSH,
    };
    let need = rest
        .strip_suffix("/tags/list")
        .or_else(|| rest.rsplit_once("/referrers/").map(|(n, _)| n))
        .or_else(|| rest.rsplit_once("/manifests/").map(|(n, _)| n))
        .map(|n| (n, action))
        .or_else(|| {
            rest.split_once("/blobs/uploads")
                .map(|(n, _)| (n, crate::auth::PUSH))
        })
        .or_else(|| rest.rsplit_once("/blobs/").map(|(n, _)| (n, action)));
    if let Some(r) = gate(&reg, need, &headers) {
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

/// `bytes=START-END` (END optional, inclusive), or `bytes=-N` (the last N
/// bytes, RFC 9110's suffix range).
fn parse_range(h: &HeaderMap, size: u64) -> Option<Result<(u64, u64), ()>> {
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
async fn blob_body(
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
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
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

/// Appends the request body to an upload file; returns its new size.
/// Appends a request's body to upload `id`; returns the upload's size
/// and, when the upload started empty and `alg` is given, the digest of
/// its content, computed as the bytes streamed in.
async fn append(
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
async fn upload_digest(reg: &Registry, id: &str, alg: Algorithm) -> std::io::Result<Digest> {
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

/// Verifies the finished upload `id` against `digest` (with the digest
/// computed as it streamed in, when there is one) and commits it.
async fn finish_upload(
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

/// The shared side of the garbage-collection lock, waited for while a
/// collection sweeps (briefly) without blocking the runtime.
async fn write_lock(reg: &Registry) -> Result<crate::storage::WriteLock, Response> {
    loop {
        match reg.storage.try_write_lock() {
            Ok(Some(l)) => return Ok(l),
            Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
            Err(e) => return Err(internal(e)),
        }
    }
}

/// Exclusive use of upload `id` for this request (two requests writing one
/// upload at once could change what the other verified).
fn lock_upload(
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
fn check_chunk_range(
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
fn chunk_mismatch(reg: &Registry, id: &str) -> Response {
    reg.storage.remove_upload(id);
    error(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
        "the chunk's length does not match its Content-Range: start the upload again",
    )
}

/// Who may use upload sessions made by this request: the repository and
/// the signed-in user (empty when anonymous).
fn upload_owner(reg: &Registry, name: &str, headers: &HeaderMap) -> String {
    let user = blocking_if_basic(authorization(headers), || {
        reg.auth.identity(authorization(headers))
    });
    format!("{name}\n{}", user.unwrap_or_default())
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

/// A tag or digest reference to a manifest digest of repository `name`.
fn resolve(reg: &Registry, name: &str, reference: &str) -> Result<Digest, Response> {
    if reference.contains(':') {
        return parse_digest(reference);
    }
    // A name that cannot be a tag names no manifest: 404, as the
    // distribution spec and its conformance suite want for a GET or HEAD
    // (it never reaches the storage's paths).
    let found = valid_tag(reference)
        .then(|| reg.storage.tag(name, reference))
        .flatten();
    found.ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("manifest {name}:{reference} is unknown"),
        )
    })
}

/// Reads a body of at most `limit` bytes; 413 above it.
/// How long a request body may send nothing before the request is
/// dropped (`Settings::body_idle`; 30 s until `serve` sets it).
static BODY_IDLE: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();

fn body_idle() -> std::time::Duration {
    *BODY_IDLE.get_or_init(|| std::time::Duration::from_secs(30))
}

fn body_timeout() -> Response {
    error(
        StatusCode::REQUEST_TIMEOUT,
        "BLOB_UPLOAD_INVALID",
        format!(
            "the request body sent nothing for {} s: send it at a steady pace",
            body_idle().as_secs_f64()
        ),
    )
}

async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, Response> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    loop {
        let Ok(next) = tokio::time::timeout(body_idle(), stream.next()).await else {
            return Err(body_timeout());
        };
        let Some(chunk) = next else { break };
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
    for (i, desc) in std::iter::once(config).chain(layers.iter()).enumerate() {
        let d = digest_of(desc)?;
        if i > 0 && non_distributable(desc) {
            // A layer pulled from its `urls`, never pushed: not expected
            // here.
            continue;
        }
        // Touched: fresh for a collection that starts now.
        if reg.storage.blob_size(name, &d).is_none() || !reg.storage.touch_blob(&d) {
            return Err(missing("blob", &d.to_string()));
        }
    }
    Ok(())
}

/// A layer a registry is not expected to hold, as distribution decides
/// it: a non-distributable (OCI) or foreign (Docker) media type with
/// `urls` to fetch it from. Without urls it must be here like any other.
fn non_distributable(desc: &serde_json::Value) -> bool {
    let media = desc.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    (media.starts_with("application/vnd.oci.image.layer.nondistributable.")
        || media.starts_with("application/vnd.docker.image.rootfs.foreign."))
        && desc
            .get("urls")
            .and_then(|u| u.as_array())
            .is_some_and(|u| !u.is_empty())
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
            let tag = (!reference.contains(':')).then_some(reference);
            reg.event("pull", headers, name, &d, &media, bytes.len(), tag, method);
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
            // From the check that the blobs exist to the manifest's store,
            // no collection sweeps.
            let _lock = match write_lock(reg).await {
                Ok(l) => l,
                Err(r) => return r,
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
            reg.event("push", headers, name, &d, &media, bytes.len(), tag, method);
            (StatusCode::CREATED, h).into_response()
        }
        Method::DELETE => {
            if !reference.contains(':') && !valid_tag(reference) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "TAG_INVALID",
                    format!("invalid tag {reference:?}"),
                );
            }
            let target = resolve(reg, name, reference)
                .ok()
                .and_then(|d| Some((reg.storage.manifest(name, &d)?, d)));
            let res = if reference.contains(':') {
                match parse_digest(reference) {
                    Ok(d) => reg.storage.delete_manifest(name, &d),
                    Err(r) => return r,
                }
            } else {
                reg.storage.delete_tag(name, reference)
            };
            match res {
                Ok(true) => {
                    if let Some(((bytes, media), d)) = target {
                        let tag = (!reference.contains(':')).then_some(reference);
                        reg.event(
                            "delete",
                            headers,
                            name,
                            &d,
                            &media,
                            bytes.len(),
                            tag,
                            method,
                        );
                    }
                    StatusCode::ACCEPTED.into_response()
                }
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

/// What `serve` needs.
pub struct Settings {
    pub addr: String,
    pub storage: Arc<dyn Storage>,
    pub auth: crate::auth::Auth,
    /// Uploads left untouched this long are removed.
    pub upload_ttl: std::time::Duration,
    /// Serve HTTPS with this.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Collect garbage every `.0`, with grace period `.1`.
    pub gc: Option<(std::time::Duration, std::time::Duration)>,
    /// Webhooks.
    pub notify: Option<crate::notify::Notifier>,
    /// A request body that sends nothing this long is dropped.
    pub body_idle: std::time::Duration,
    /// Connections one client address may hold at once (more are closed
    /// at accept).
    pub max_client_conns: usize,
    /// Told the address actually bound (port 0 picks a free one) and
    /// whether it serves HTTPS, once the registry listens.
    pub on_listening: Option<Box<dyn FnOnce(std::net::SocketAddr, bool) + Send>>,
}

/// File descriptors kept free for new clients, the store and the
/// runtime: connections beyond the fd limit less this are closed at
/// accept, so a crowd of slow clients cannot take the last fds.
const FD_HEADROOM: usize = 64;

/// Counts one connection of a client address while it lives.
struct ConnSlot {
    per_client: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
    total: Arc<std::sync::atomic::AtomicUsize>,
    ip: std::net::IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.total.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut m) = self.per_client.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

/// A slot for a new connection from `ip`, or None when the client holds
/// `cap` already or the process is near its fd limit.
fn conn_slot(
    per_client: &Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
    total: &Arc<std::sync::atomic::AtomicUsize>,
    ip: std::net::IpAddr,
    cap: usize,
    max_total: usize,
) -> Option<ConnSlot> {
    let mut m = per_client.lock().ok()?;
    let n = m.entry(ip).or_insert(0);
    if *n >= cap || total.load(std::sync::atomic::Ordering::SeqCst) >= max_total {
        return None;
    }
    *n += 1;
    total.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Some(ConnSlot {
        per_client: per_client.clone(),
        total: total.clone(),
        ip,
    })
}

/// A rustls server config from PEM files: the certificate chain and its
/// private key.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no CERTIFICATE in the file",
            cert.display()
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("TLS certificate and key: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Serves the registry until ctrl-c or SIGTERM; uploads left untouched
/// for `upload_ttl` are removed.
pub async fn serve(settings: Settings) -> std::io::Result<()> {
    let Settings {
        addr,
        storage,
        auth,
        upload_ttl,
        tls,
        gc,
        notify,
        body_idle,
        max_client_conns,
        on_listening,
    } = settings;
    let _ = BODY_IDLE.set(body_idle);
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
        .min(1 << 20) as usize;
    let max_total = nofile.saturating_sub(FD_HEADROOM).max(1);
    let per_client = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    if let Some((every, grace)) = gc {
        let s = storage.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let s = s.clone();
                match tokio::task::spawn_blocking(move || s.gc(grace, false)).await {
                    Ok(Ok(r)) => tracing::info!(
                        removed = r.removed,
                        bytes = r.bytes,
                        kept = r.kept,
                        "garbage collected"
                    ),
                    Ok(Err(e)) => tracing::warn!(error = %e, "garbage collection failed"),
                    Err(_) => {}
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(&addr).await?;
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
    let mut registry = Registry::new(storage, auth);
    registry.tls = tls.is_some();
    registry.notify = notify;
    let app = router(Arc::new(registry));
    if let Some(f) = on_listening {
        f(listener.local_addr()?, tls.is_some());
    }
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(c) => c,
                // Out of fds and the like: wait, do not spin.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some(slot) = conn_slot(&per_client, &total, peer.ip(), max_client_conns, max_total)
        else {
            // Closed at once: this client holds its share, or the fds
            // left are kept for others.
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper_util::service::TowerToHyperService::new(app);
            let mut http = hyper::server::conn::http1::Builder::new();
            // A client that does not finish its request head in time is
            // dropped (slow clients cannot hold connections forever).
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30));
            match acceptor {
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(tcp),
                    );
                    let Ok(Ok(stream)) = handshake.await else {
                        return;
                    };
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
                // Plain HTTP: blobs go out by sendfile.
                None => {
                    let io = crate::sendfile::SendfileStream(tcp);
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                        .await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{FsStorage, GcReport, UploadSink, WriteLock};

    /// A store whose blobs come as streams, as an object store's would:
    /// everything else is the filesystem's.
    struct Streaming(FsStorage);

    impl Storage for Streaming {
        fn blob_size(&self, repo: &str, d: &Digest) -> Option<u64> {
            self.0.blob_size(repo, d)
        }
        fn open_blob(&self, d: &Digest) -> std::io::Result<BlobSource> {
            match self.0.open_blob(d)? {
                BlobSource::File(f) => Ok(BlobSource::Reader(Box::new(f))),
                other => Ok(other),
            }
        }
        fn link_blob(&self, repo: &str, d: &Digest) -> std::io::Result<()> {
            self.0.link_blob(repo, d)
        }
        fn delete_blob(&self, repo: &str, d: &Digest) -> std::io::Result<bool> {
            self.0.delete_blob(repo, d)
        }
        fn touch_blob(&self, d: &Digest) -> bool {
            self.0.touch_blob(d)
        }
        fn new_upload(&self, owner: &str) -> std::io::Result<String> {
            self.0.new_upload(owner)
        }
        fn upload_owner(&self, id: &str) -> Option<String> {
            self.0.upload_owner(id)
        }
        fn upload_size(&self, id: &str) -> Option<u64> {
            self.0.upload_size(id)
        }
        fn lock_upload(&self, id: &str) -> std::io::Result<Option<WriteLock>> {
            self.0.lock_upload(id)
        }
        fn append_upload(&self, id: &str) -> std::io::Result<Box<dyn UploadSink>> {
            self.0.append_upload(id)
        }
        fn read_upload(&self, id: &str) -> std::io::Result<Box<dyn std::io::Read + Send>> {
            self.0.read_upload(id)
        }
        fn commit_upload(&self, id: &str, d: &Digest) -> std::io::Result<()> {
            self.0.commit_upload(id, d)
        }
        fn remove_upload(&self, id: &str) {
            self.0.remove_upload(id)
        }
        fn expire_uploads(&self, ttl: std::time::Duration) -> usize {
            self.0.expire_uploads(ttl)
        }
        fn put_manifest(
            &self,
            name: &str,
            d: &Digest,
            media_type: &str,
            bytes: &[u8],
            tag: Option<&str>,
        ) -> std::io::Result<()> {
            self.0.put_manifest(name, d, media_type, bytes, tag)
        }
        fn manifest(&self, name: &str, d: &Digest) -> Option<(Vec<u8>, String)> {
            self.0.manifest(name, d)
        }
        fn delete_manifest(&self, name: &str, d: &Digest) -> std::io::Result<bool> {
            self.0.delete_manifest(name, d)
        }
        fn tag(&self, name: &str, tag: &str) -> Option<Digest> {
            self.0.tag(name, tag)
        }
        fn tags(&self, name: &str) -> Vec<String> {
            self.0.tags(name)
        }
        fn delete_tag(&self, name: &str, tag: &str) -> std::io::Result<bool> {
            self.0.delete_tag(name, tag)
        }
        fn repo_exists(&self, name: &str) -> bool {
            self.0.repo_exists(name)
        }
        fn add_referrer(
            &self,
            name: &str,
            subject: &Digest,
            d: &Digest,
            descriptor: &serde_json::Value,
        ) -> std::io::Result<()> {
            self.0.add_referrer(name, subject, d, descriptor)
        }
        fn referrers(&self, name: &str, subject: &Digest) -> Vec<serde_json::Value> {
            self.0.referrers(name, subject)
        }
        fn try_write_lock(&self) -> std::io::Result<Option<WriteLock>> {
            self.0.try_write_lock()
        }
        fn gc(&self, grace: std::time::Duration, dry_run: bool) -> std::io::Result<GcReport> {
            self.0.gc(grace, dry_run)
        }
    }

    #[test]
    fn a_streaming_store_serves_blobs_and_ranges() {
        let t = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(Streaming(FsStorage::open(t.path()).unwrap()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(Arc::new(Registry::new(storage, crate::auth::Auth::open())));
        rt.spawn(async move { axum::serve(listener, app).await });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        // 1 MiB of varied bytes, pushed in one request.
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
        let d = Digest::sha256_of(&data);
        let r = agent
            .post(format!("http://{addr}/v2/s/blobs/uploads/?digest={d}"))
            .send(&data[..])
            .unwrap();
        assert_eq!(r.status(), 201);
        let mut r = agent
            .get(format!("http://{addr}/v2/s/blobs/{d}"))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r
            .body_mut()
            .with_config()
            .limit(2 << 20)
            .read_to_vec()
            .unwrap();
        assert!(body == data, "the whole blob, streamed");
        let mut r = agent
            .get(format!("http://{addr}/v2/s/blobs/{d}"))
            .header("Range", "bytes=1000-299999")
            .call()
            .unwrap();
        assert_eq!(r.status(), 206);
        let body = r.body_mut().read_to_vec().unwrap();
        assert!(body == data[1000..300000], "a range from the middle");
    }
}
