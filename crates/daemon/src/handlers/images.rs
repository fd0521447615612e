//! `/images/...`.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::route::ImageOp;
use crate::{empty, json, ApiError, Call, Daemon, Reply};

pub(super) async fn list(d: &Arc<Daemon>, call: Call) -> Reply {
    let filters = call.query.filters()?;
    let images = d
        .engine(move |eng| Ok(berth_service::images::list(&eng.store, &filters)?))
        .await?;
    Ok(json(200, &images))
}

pub(super) async fn prune(d: &Arc<Daemon>, call: Call) -> Reply {
    // docker prunes dangling images unless dangling=false is asked.
    let filters = call.query.filters()?;
    let all = filters
        .iter()
        .any(|(k, v)| k == "dangling" && v.iter().any(|x| x == "false" || x == "0"));
    let report = d
        .engine(move |eng| {
            let paths = eng.paths.clone();
            Ok(berth_service::images::prune(&paths, &mut eng.store, all)?)
        })
        .await?;
    let deleted: Vec<Value> = report.images_deleted.iter().map(removed).collect();
    Ok(json(
        200,
        &json!({"ImagesDeleted": deleted, "SpaceReclaimed": report.space_reclaimed}),
    ))
}

/// Docker's `ImageDeleteResponseItem`.
fn removed(r: &berth_image::gc::Removed) -> Value {
    match r {
        berth_image::gc::Removed::Untagged(t) => json!({"Untagged": t}),
        berth_image::gc::Removed::Deleted(d) => json!({"Deleted": d.to_string()}),
    }
}

pub(super) async fn op(d: &Arc<Daemon>, name: String, op: ImageOp, call: Call) -> Reply {
    let q = call.query.clone();
    match op {
        ImageOp::Inspect => {
            let v = d
                .engine(move |eng| {
                    let img = eng.store.resolve(&name)?;
                    Ok(berth_image::inspect::inspect(&eng.store, &img)?)
                })
                .await?;
            Ok(json(200, &v))
        }
        ImageOp::History => {
            let rows = d
                .engine(move |eng| {
                    let img = eng.store.resolve(&name)?;
                    Ok(berth_image::inspect::history(&eng.store, &img)?)
                })
                .await?;
            // Newest first, as docker lists them.
            let v: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "Id": r.id,
                        "Created": r.created.as_deref()
                            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                            .map_or(0, |t| t.timestamp()),
                        "CreatedBy": r.created_by,
                        "Tags": Value::Null,
                        "Size": r.size,
                        "Comment": r.comment,
                    })
                })
                .collect();
            Ok(json(200, &v))
        }
        ImageOp::Tag => {
            let repo = q
                .get("repo")
                .filter(|r| !r.is_empty())
                .ok_or_else(|| ApiError::bad_request("tag needs a repository: ?repo="))?;
            let target = match q.get("tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{repo}:{t}"),
                None => repo.to_string(),
            };
            d.engine(move |eng| {
                let paths = eng.paths.clone();
                Ok(berth_service::images::tag(
                    &paths,
                    &mut eng.store,
                    &name,
                    &target,
                )?)
            })
            .await?;
            Ok(empty(201))
        }
        ImageOp::Delete => {
            let force = q.bool("force");
            let removed = d
                .engine(move |eng| {
                    let paths = eng.paths.clone();
                    Ok(berth_service::images::remove(
                        &paths,
                        &mut eng.store,
                        &name,
                        force,
                    )?)
                })
                .await?;
            let v: Vec<Value> = removed.iter().map(self::removed).collect();
            Ok(json(200, &v))
        }
        other => Err(crate::unserved(&crate::route::Route::Image(name, other))),
    }
}
