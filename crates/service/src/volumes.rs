//! Volumes as the Engine API shows them, with Docker's list filters.

use std::collections::BTreeMap;

use berth_engine::volumes::Volume;
use berth_engine::Engine;
use serde::Serialize;

use crate::filters::Filters;
use crate::{Error, Result};

/// A volume (the Engine API's `Volume`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeView {
    pub created_at: String,
    pub driver: String,
    /// null when there are none, as docker shows it.
    pub labels: Option<BTreeMap<String, String>>,
    pub mountpoint: String,
    pub name: String,
    pub options: Option<BTreeMap<String, String>>,
    pub scope: String,
    /// What the volume holds and how many containers use it (`system
    /// df`; the Engine API leaves it out elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_data: Option<UsageData>,
}

/// The Engine API's `VolumeUsageData`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UsageData {
    pub size: u64,
    pub ref_count: u64,
}

pub fn view(eng: &Engine, v: &Volume) -> VolumeView {
    let non_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
    VolumeView {
        created_at: v.created.clone(),
        driver: "local".into(),
        labels: non_empty(&v.labels),
        mountpoint: berth_engine::volumes::data_dir(&eng.paths.root, &v.name)
            .display()
            .to_string(),
        name: v.name.clone(),
        options: non_empty(&v.options),
        scope: "local".into(),
        usage_data: None,
    }
}

/// What `volume create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

pub fn create(eng: &mut Engine, o: &CreateOptions) -> Result<VolumeView> {
    if o.driver != "local" && !o.driver.is_empty() {
        return Err(Error::invalid(format!(
            "create: volume driver {:?} is not available: berth has the local driver only",
            o.driver
        )));
    }
    let v = eng
        .volumes()
        .create(o.name.as_deref(), o.labels.clone(), o.options.clone())?;
    Ok(view(eng, &v))
}

const FILTERS: &[&str] = &["name", "dangling", "label", "driver"];

fn matches(eng: &mut Engine, v: &Volume, k: &str, want: &str) -> Result<bool> {
    Ok(match k {
        "name" => v.name.contains(want),
        "dangling" => {
            let dangling = eng.volumes().users(&v.name)?.is_empty();
            match want {
                "true" | "1" => dangling,
                "false" | "0" => !dangling,
                _ => {
                    return Err(Error::invalid(format!(
                        "invalid filter 'dangling={want}': use true or false"
                    )))
                }
            }
        }
        "label" => match want.split_once('=') {
            Some((lk, lv)) => v.labels.get(lk).is_some_and(|x| x == lv),
            None => v.labels.contains_key(want),
        },
        "driver" => want == "local",
        _ => unreachable!("keys are checked first"),
    })
}

pub fn list(eng: &mut Engine, filters: &Filters) -> Result<Vec<VolumeView>> {
    filters.check_keys(FILTERS, "berth volume ls")?;
    let mut out = Vec::new();
    for v in eng.volumes().list()? {
        if filters.matches(|k, want| matches(eng, &v, k, want))? {
            out.push(view(eng, &v));
        }
    }
    Ok(out)
}

/// What `volume prune` removed (the Engine API's `VolumePruneResponse`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PruneReport {
    pub volumes_deleted: Vec<String>,
    pub space_reclaimed: u64,
}

/// Removes unused anonymous volumes (every unused one with `all`).
pub fn prune(eng: &mut Engine, all: bool) -> Result<PruneReport> {
    let (removed, freed) = eng.volumes().prune(all)?;
    Ok(PruneReport {
        volumes_deleted: removed,
        space_reclaimed: freed,
    })
}
