//! What every handler shares: error responses in the Distribution
//! API's JSON shape, digests from paths, bounded bodies with an idle
//! timeout, and the storage's write lock.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_image::digest::Digest;
use futures_util::StreamExt;
use serde_json::json;

use super::Registry;

/// The spec's error body: `{"errors":[{"code","message","detail"}]}`.
pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"errors": [{"code": code, "message": message.into(), "detail": null}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn internal(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "storage error");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        format!("storage error: {e}"),
    )
}

pub(super) fn name_invalid(name: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
        format!("invalid repository name {name:?}"),
    )
}

pub(super) fn parse_digest(s: &str) -> Result<Digest, Response> {
    s.parse().map_err(|e: berth_image::digest::DigestError| {
        error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string())
    })
}

/// The shared side of the garbage-collection lock, waited for while a
/// collection sweeps (briefly) without blocking the runtime.
pub(super) async fn write_lock(reg: &Registry) -> Result<crate::storage::WriteLock, Response> {
    loop {
        match reg.storage.try_write_lock() {
            Ok(Some(l)) => return Ok(l),
            Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
            Err(e) => return Err(internal(e)),
        }
    }
}

/// Reads a body of at most `limit` bytes; 413 above it.
/// How long a request body may send nothing before the request is
/// dropped (`Settings::body_idle`; 30 s until `serve` sets it).
pub(super) static BODY_IDLE: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();

pub(super) fn body_idle() -> std::time::Duration {
    *BODY_IDLE.get_or_init(|| std::time::Duration::from_secs(30))
}

pub(super) fn body_timeout() -> Response {
    error(
        StatusCode::REQUEST_TIMEOUT,
        "BLOB_UPLOAD_INVALID",
        format!(
            "the request body sent nothing for {} s: send it at a steady pace",
            body_idle().as_secs_f64()
        ),
    )
}

pub(super) async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, Response> {
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
