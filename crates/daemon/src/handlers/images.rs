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

/// `POST /build/prune`: the build cache dropped.
pub(super) async fn prune_build_cache(d: &Arc<Daemon>) -> Reply {
    let report = d
        .engine(move |eng| {
            let paths = eng.paths.clone();
            Ok(berth_service::images::prune_build_cache(
                &paths,
                &mut eng.store,
            )?)
        })
        .await?;
    Ok(json(
        200,
        &json!({"CachesDeleted": [], "SpaceReclaimed": report.space_reclaimed}),
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
        ImageOp::Push => {
            let auth = registry_auth(&call.req)?;
            push(d, name, &q, auth).await
        }
        ImageOp::Get => save(d, vec![name]).await,
    }
}

/// `POST /images/create?fromImage=&tag=`: a pull, its progress streamed
/// as JSON lines.
pub(super) async fn create(d: &Arc<Daemon>, call: Call) -> Reply {
    let q = &call.query;
    let Some(from) = q.get("fromImage").filter(|f| !f.is_empty()) else {
        return match q.get("fromSrc") {
            Some("-") => import(d, call).await,
            Some(_) => Err(crate::ApiError::not_implemented(
                "an import from a URL (fromSrc other than -)",
            )),
            None => Err(ApiError::bad_request("fromImage or fromSrc is required")),
        };
    };
    let name = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.contains(':') => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_string(),
    };
    let reference = berth_image::reference::Reference::parse(&name)
        .map_err(|e| ApiError::bad_request(format!("invalid reference format: {e}")))?;
    let auth = registry_auth(&call.req)?;
    let permit = d.stream_permit()?;
    let (tx, body) = crate::Body::channel();
    let paths = d.paths.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let progress = crate::progress::JsonProgress::new(tx);
        let r = (|| -> Result<(), ApiError> {
            let mut store = berth_image::store::Store::open(&paths.root)?;
            berth_service::images::pull_as(&paths, &mut store, &reference, &progress, auth)?;
            Ok(())
        })();
        match r {
            Ok(()) => progress.send(&json!({
                "status": format!("Status: Downloaded newer image for {}", reference.familiar())
            })),
            Err(e) => progress.error(&e.message),
        }
    });
    Ok(streamed(body))
}

fn streamed(body: crate::Body) -> hyper::Response<crate::Body> {
    hyper::Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .body(body)
        .expect("a valid response")
}

/// The client's registry credentials (`X-Registry-Auth`), if it sent
/// any.
fn registry_auth(
    req: &hyper::Request<hyper::body::Incoming>,
) -> Result<Option<berth_service::images::RegistryAuth>, ApiError> {
    match req.headers().get("X-Registry-Auth") {
        None => Ok(None),
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ApiError::bad_request("X-Registry-Auth is not text"))?;
            Ok(berth_service::images::RegistryAuth::from_header(v)?)
        }
    }
}

/// `POST /images/{name}/push?tag=`.
async fn push(
    d: &Arc<Daemon>,
    name: String,
    q: &crate::query::Query,
    auth: Option<berth_service::images::RegistryAuth>,
) -> Reply {
    let name = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name,
    };
    let target = berth_image::reference::Reference::parse(&name)
        .map_err(|e| ApiError::bad_request(format!("invalid reference format: {e}")))?;
    // An image not here is a 404 before the stream starts.
    d.engine({
        let name = name.clone();
        move |eng| Ok(eng.store.resolve(&name).map(|_| ())?)
    })
    .await?;
    let permit = d.stream_permit()?;
    let (tx, body) = crate::Body::channel();
    let paths = d.paths.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let progress = crate::progress::JsonProgress::new(tx);
        let r = (|| -> Result<(), ApiError> {
            let mut store = berth_image::store::Store::open(&paths.root)?;
            berth_service::images::push_as(&paths, &mut store, &name, &target, &progress, auth)?;
            Ok(())
        })();
        if let Err(e) = r {
            progress.error(&e.message);
        }
    });
    Ok(streamed(body))
}

/// `GET /images/get?names=` and `GET /images/{name}/get`: a
/// docker-archive of the images, streamed.
pub(super) async fn save(d: &Arc<Daemon>, names: Vec<String>) -> Reply {
    use berth_image::reference::Reference;
    if names.is_empty() {
        return Err(ApiError::bad_request("no images named: ?names=IMAGE"));
    }
    // Every name is resolved before the stream starts (404 for a
    // missing one).
    let images = d
        .engine(move |eng| {
            let mut out = Vec::new();
            for name in &names {
                let image = eng.store.resolve(name)?;
                let named = Reference::parse(name).ok().filter(|r| {
                    r.digest().is_none()
                        && eng.store.tag_target(r).ok().flatten().as_ref() == Some(&image.id)
                });
                out.push((image, named));
            }
            Ok(out)
        })
        .await?;
    crate::tar_stream(d, "save".into(), move |paths, w| {
        let store = berth_image::store::Store::open(&paths.root).map_err(|e| e.to_string())?;
        berth_image::save::save_to_writer(
            &store,
            &images,
            berth_image::save::Format::DockerArchive,
            std::io::BufWriter::new(w),
        )
        .map(drop)
        .map_err(|e| e.to_string())
    })
}

/// `POST /images/load`: a docker-archive or OCI archive in the body
/// (chunked); what was loaded, as JSON lines.
pub(super) async fn load(d: &Arc<Daemon>, call: Call) -> Reply {
    // `quiet` only silences progress, which a load here has none of: the
    // loaded names are always told, as docker's daemon tells them.
    let permit = d.stream_permit()?;
    let reader = crate::bridge::BodyReader::new(call.req.into_body());
    let paths = d.paths.clone();
    let loaded = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let _permit = permit;
        let mut store = berth_image::store::Store::open(&paths.root)?;
        Ok(berth_service::images::load(
            &paths,
            &mut store,
            berth_image::load::Input::Reader(Box::new(reader)),
        )?)
    })
    .await
    .map_err(|e| ApiError::new(500, e.to_string()))??;
    let mut out = Vec::new();
    let mut say = |text: String| {
        out.extend(serde_json::to_vec(&json!({ "stream": text })).unwrap_or_default());
        out.push(b'\n');
    };
    for img in loaded {
        if img.tags.is_empty() {
            say(format!("Loaded image ID: {}\n", img.id));
        }
        for t in &img.tags {
            say(format!("Loaded image: {}\n", t.familiar()));
        }
    }
    Ok(hyper::Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .body(crate::Body::full(out))
        .expect("a valid response"))
}

/// `POST /images/create?fromSrc=-`: `docker import` of the body's tar as a
/// one-layer image.
async fn import(d: &Arc<Daemon>, call: Call) -> Reply {
    let q = call.query.clone();
    let reference = match q.get("repo").filter(|r| !r.is_empty()) {
        Some(repo) => {
            let name = match q.get("tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{repo}:{t}"),
                None => repo.to_string(),
            };
            Some(
                berth_image::reference::Reference::parse(&name)
                    .map_err(|e| ApiError::bad_request(format!("invalid reference format: {e}")))?,
            )
        }
        None => None,
    };
    let opts = berth_image::import::Options {
        changes: q.all("changes").iter().map(|c| c.to_string()).collect(),
        message: q.get("message").filter(|m| !m.is_empty()).map(String::from),
        platform: q
            .get("platform")
            .filter(|p| !p.is_empty())
            .map(String::from),
    };
    let permit = d.stream_permit()?;
    let reader = crate::bridge::BodyReader::new(call.req.into_body());
    let paths = d.paths.clone();
    let id = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let _permit = permit;
        let mut store = berth_image::store::Store::open(&paths.root)?;
        berth_image::import::import(&mut store, reader, reference.as_ref(), &opts)
            .map_err(|e| ApiError::from(berth_service::Error::from(e)))
    })
    .await
    .map_err(|e| ApiError::new(500, e.to_string()))??;
    Ok(json(200, &json!({"status": id.to_string()})))
}

/// `POST /commit?container=&repo=&tag=`: a container's changes as a new
/// image.
pub(super) async fn commit(d: &Arc<Daemon>, call: Call) -> Reply {
    let q = call.query.clone();
    let container = q
        .get("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("container is required: ?container="))?
        .to_string();
    let reference = q.get("repo").filter(|r| !r.is_empty()).map(|repo| {
        match q.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => format!("{repo}:{t}"),
            None => repo.to_string(),
        }
    });
    let cfg = berth_engine::changes::CommitConfig {
        changes: q.all("changes").iter().map(|c| c.to_string()).collect(),
        message: q.get("comment").filter(|m| !m.is_empty()).map(String::from),
        author: q.get("author").filter(|m| !m.is_empty()).map(String::from),
        // docker pauses unless asked not to.
        pause: q.get("pause").is_none_or(|_| q.bool("pause")),
    };
    let id = d
        .engine(move |eng| {
            Ok(berth_engine::changes::commit(
                eng,
                &container,
                reference.as_deref(),
                &cfg,
            )?)
        })
        .await?;
    Ok(json(201, &json!({"Id": id.to_string()})))
}
