//! Manifests and tags: stored byte-exact, references checked, tags with
//! pagination, referrers, deletes.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_image::digest::Digest;
use serde_json::json;

use super::http::{error, internal, parse_digest, read_limited, write_lock};
use super::{Registry, MANIFEST_TYPES, MAX_MANIFEST};
use crate::storage::valid_tag;

pub(super) fn tags(reg: &Registry, name: &str, q: &HashMap<String, String>) -> Response {
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

/// A tag or digest reference to a manifest digest of repository `name`.
pub(super) fn resolve(reg: &Registry, name: &str, reference: &str) -> Result<Digest, Response> {
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

/// The blobs and manifests a manifest refers to must be in the
/// repository already.
pub(super) fn check_references(
    reg: &Registry,
    name: &str,
    doc: &serde_json::Value,
) -> Result<(), Response> {
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
pub(super) fn non_distributable(desc: &serde_json::Value) -> bool {
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
pub(super) fn referrers(
    reg: &Registry,
    name: &str,
    digest: &str,
    q: &HashMap<String, String>,
) -> Response {
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

pub(super) async fn manifests(
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
