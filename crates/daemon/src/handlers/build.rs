//! `POST /build`: docker's classic builder endpoint. The context is the
//! request body (a tar, maybe compressed; chunked); the steps stream back
//! as `{"stream": ...}` lines, the image as `{"aux": {"ID": ...}}`, a
//! failure as `{"errorDetail": ..., "error": ...}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use crate::{ApiError, Call, Daemon, Reply};

/// A JSON map parameter (`buildargs`, `labels`); a null value is an arg
/// without one.
fn map_param(q: &crate::query::Query, key: &str) -> Result<Vec<(String, String)>, ApiError> {
    match q.get(key) {
        None | Some("") => Ok(Vec::new()),
        Some(text) => {
            let m: BTreeMap<String, Option<String>> = serde_json::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("invalid {key} {text:?}: {e}")))?;
            Ok(m.into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect())
        }
    }
}

pub(super) async fn build(d: &Arc<Daemon>, call: Call) -> Reply {
    let q = call.query.clone();
    if q.get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::not_implemented("a build from a remote context"));
    }
    let tags: Vec<String> = q
        .all("t")
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| t.to_string())
        .collect();
    let build_args = map_param(&q, "buildargs")?;
    let labels = map_param(&q, "labels")?;
    let quiet = q.bool("q");
    let network = match q.get("networkmode").unwrap_or("") {
        "" | "default" | "host" | "bridge" => "host".to_string(),
        "none" => "none".to_string(),
        other => {
            return Err(ApiError::bad_request(format!(
                "network mode {other:?} is not available to builds: use default, host or none"
            )))
        }
    };
    let dockerfile_name = q.get("dockerfile").unwrap_or("").to_string();
    let target = q.get("target").filter(|t| !t.is_empty()).map(String::from);
    let platform = q
        .get("platform")
        .filter(|p| !p.is_empty())
        .map(String::from);
    let no_cache = q.bool("nocache");
    let always_pull = q.bool("pull");
    let permit = d.stream_permit()?;
    let reader = crate::bridge::BodyReader::new(call.req.into_body());
    let (tx, body) = crate::Body::channel();
    let paths = d.paths.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let out = crate::progress::JsonProgress::new(tx);
        let r = (|| -> Result<berth_service::build::BuildResult, ApiError> {
            let ctx = berth_builder::context::from_reader(&paths.root, reader)
                .map_err(|e| ApiError::bad_request(format!("the build context: {e}")))?;
            let dockerfile =
                berth_service::build::dockerfile_in_context(&ctx, Some(dockerfile_name.as_str()))?;
            let req = berth_service::build::BuildRequest {
                context: ctx.path(),
                dockerfile,
                dockerfile_name: if dockerfile_name.is_empty() {
                    "Dockerfile".into()
                } else {
                    dockerfile_name.clone()
                },
                tags,
                build_args,
                labels,
                target,
                no_cache,
                network,
                source_date_epoch: None,
                quiet,
                always_pull,
                allow: Vec::new(),
                secrets: Vec::new(),
                platform,
            };
            let steps = |e: &berth_builder::progress::Event<'_>| {
                if !quiet {
                    out.send(&json!({"stream": String::from_utf8_lossy(&e.text())}));
                }
            };
            let built = berth_service::build::build(&paths, &req, &steps, &out)?;
            drop(ctx);
            Ok(built)
        })();
        match r {
            Ok(built) => {
                // With -q the CLI takes the whole stream as the id.
                if quiet {
                    out.send(&json!({"stream": format!("{}\n", built.id)}));
                    return;
                }
                for w in &built.warnings {
                    out.send(&json!({"stream": format!("{w}\n")}));
                }
                out.send(&json!({"aux": {"ID": built.id.to_string()}}));
                out.send(
                    &json!({"stream": format!("Successfully built {}\n", &built.id.hex()[..12])}),
                );
                for t in &built.tags {
                    out.send(&json!({"stream": format!("Successfully tagged {}\n", t.familiar())}));
                }
            }
            Err(e) => out.error(&e.message),
        }
    });
    Ok(hyper::Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .body(body)
        .expect("a valid response"))
}
