//! The router: `/v2/` and the token endpoint, and the dispatch of
//! `/v2/<name>/...` paths (names have slashes) to their handlers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

use super::access::{gate, token_endpoint};
use super::blobs::blobs;
use super::http::{error, name_invalid};
use super::manifests::{manifests, referrers, tags};
use super::uploads::uploads;
use super::Registry;
use crate::storage::valid_name;

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

pub(super) async fn base_gated(State(reg): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&reg, None, &headers) {
        return r;
    }
    base().await
}

pub(super) async fn base() -> Response {
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

pub(super) async fn dispatch(
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
