//! Access: the Authorization header (basic or bearer), the gate every
//! request passes, and the token endpoint.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::http::{error, read_limited};
use super::Registry;

pub(super) fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Runs `f` where it may block (a bcrypt check takes tens of milliseconds
/// on purpose) without stalling the runtime's other requests, when there
/// are basic credentials to check.
pub(super) fn blocking_if_basic<T>(authorization: Option<&str>, f: impl FnOnce() -> T) -> T {
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
pub(super) fn gate(
    reg: &Registry,
    need: Option<(&str, &str)>,
    headers: &HeaderMap,
) -> Option<Response> {
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

/// Percent-decoding of a form or query value (`+` is a space).
pub(super) fn form_decode(s: &str) -> String {
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
pub(super) async fn token_endpoint(
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
