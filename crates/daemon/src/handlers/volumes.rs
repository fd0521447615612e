//! `/volumes/...`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use crate::{empty, json, ApiError, Call, Daemon, Reply};

pub(super) async fn list(d: &Arc<Daemon>, call: Call) -> Reply {
    let filters = call.query.filters()?;
    let vols = d
        .engine(move |eng| Ok(berth_service::volumes::list(eng, &filters)?))
        .await?;
    Ok(json(200, &json!({"Volumes": vols, "Warnings": []})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct CreateBody {
    name: String,
    driver: String,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

pub(super) async fn create(d: &Arc<Daemon>, call: Call) -> Reply {
    let body: CreateBody = crate::read_json(call.req, 1 << 20).await?;
    let opts = berth_service::volumes::CreateOptions {
        name: (!body.name.is_empty()).then_some(body.name),
        driver: body.driver,
        labels: body.labels.unwrap_or_default(),
        options: body.driver_opts.unwrap_or_default(),
    };
    let v = d
        .engine(move |eng| Ok(berth_service::volumes::create(eng, &opts)?))
        .await?;
    Ok(json(201, &v))
}

pub(super) async fn prune(d: &Arc<Daemon>, call: Call) -> Reply {
    // API 1.42 and later prune anonymous volumes unless all=true.
    let filters = call.query.filters()?;
    let all = filters
        .iter()
        .any(|(k, v)| k == "all" && v.iter().any(|x| x == "true" || x == "1"));
    let report = d
        .engine(move |eng| Ok(berth_service::volumes::prune(eng, all)?))
        .await?;
    Ok(json(200, &report))
}

pub(super) async fn one(d: &Arc<Daemon>, name: String, delete: bool, call: Call) -> Reply {
    if delete {
        let force = call.query.bool("force");
        d.engine(move |eng| Ok(eng.volumes().remove(&name, force)?))
            .await?;
        return Ok(empty(204));
    }
    let v = d
        .engine(move |eng| match eng.volumes().get(&name)? {
            Some(v) => Ok(berth_service::volumes::view(eng, &v)),
            None => Err(ApiError::not_found(format!("get {name}: no such volume"))),
        })
        .await?;
    Ok(json(200, &v))
}
