//! Docker-shaped views of an image: `docker image inspect` JSON and
//! `docker history` rows.

use serde_json::{json, Map, Value};

use crate::store::{ImageRecord, Store, StoreError, CONFIG_LIMIT};

/// The fields docker always shows in an image's `Config`, with their empty
/// values.
type MakeValue = fn() -> Value;

const CONFIG_DEFAULTS: &[(&str, MakeValue)] = &[
    ("Hostname", || json!("")),
    ("Domainname", || json!("")),
    ("User", || json!("")),
    ("AttachStdin", || json!(false)),
    ("AttachStdout", || json!(false)),
    ("AttachStderr", || json!(false)),
    ("Tty", || json!(false)),
    ("OpenStdin", || json!(false)),
    ("StdinOnce", || json!(false)),
    ("Env", || Value::Null),
    ("Cmd", || Value::Null),
    ("Image", || json!("")),
    ("Volumes", || Value::Null),
    ("WorkingDir", || json!("")),
    ("Entrypoint", || Value::Null),
    ("OnBuild", || Value::Null),
    ("Labels", || Value::Null),
];

/// Keys a legacy (docker build) config may carry that belong to containers,
/// not images; see docker's deprecation of them in image inspect (API 1.50).
const CONTAINER_ONLY: &[&str] = &[
    "Hostname",
    "Domainname",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Image",
    "NetworkDisabled",
    "MacAddress",
];

/// The image's config blob as JSON.
pub fn config_json(store: &Store, image: &ImageRecord) -> Result<Value, StoreError> {
    let raw = store.read_blob(&image.id, CONFIG_LIMIT)?;
    serde_json::from_slice(&raw).map_err(|e| StoreError::Io {
        path: store.blob_path(&image.id),
        source: e.into(),
    })
}

/// `docker image inspect` output for one image.
pub fn inspect(store: &Store, image: &ImageRecord) -> Result<Value, StoreError> {
    let config = config_json(store, image)?;
    let mut cfg: Map<String, Value> = config
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // Fields of a container's config that are no part of an image config
    // (the legacy builder left values in some, e.g. "Image"): docker shows
    // them empty or not at all, never the stored value.
    for k in CONTAINER_ONLY {
        cfg.remove(*k);
    }
    for (k, v) in CONFIG_DEFAULTS {
        cfg.entry(k.to_string()).or_insert_with(v);
    }
    let str_of = |k: &str| {
        config
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let snapshots = store.image_snapshots(&image.id)?;
    let lower: Vec<String> =
        crate::store::overlay_lowers(snapshots.iter().rev().map(|s| s.path.clone()))
            .iter()
            .map(|p| p.display().to_string())
            .collect();
    // Digests a registry knows the image by, from pulls and pushes
    // (docker shows [] for loaded images too).
    let repo_digests = store.repo_digests(&image.id)?;
    let diff_ids: Vec<String> = store
        .layers(&image.id)?
        .iter()
        .map(|l| l.diff_id.to_string())
        .collect();
    let mut out = json!({
        "Id": image.id.to_string(),
        "RepoTags": image.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": history_comment(&config),
        "Created": str_of("created"),
        "DockerVersion": str_of("docker_version"),
        "Author": str_of("author"),
        "Config": Value::Object(cfg),
        "Architecture": str_of("architecture"),
        "Os": str_of("os"),
        "Size": image.size,
        "GraphDriver": {
            "Name": "overlay",
            "Data": { "LowerDir": lower.join(":") },
        },
        "RootFS": { "Type": "layers", "Layers": diff_ids },
        "Metadata": { "LastTagTime": chrono::DateTime::from_timestamp(image.added, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .unwrap_or_default() },
    });
    if let Some(v) = config
        .get("variant")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    {
        out["Variant"] = v.clone();
    }
    Ok(out)
}

fn history_comment(config: &Value) -> String {
    config
        .get("history")
        .and_then(Value::as_array)
        .and_then(|h| h.last())
        .and_then(|h| h.get("comment"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// One row of `docker history`, newest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRow {
    /// The image ID on the top row, `<missing>` below (as docker shows for
    /// layers of pulled or loaded images).
    pub id: String,
    pub created: Option<String>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
    pub empty_layer: bool,
}

pub fn history(store: &Store, image: &ImageRecord) -> Result<Vec<HistoryRow>, StoreError> {
    let config = config_json(store, image)?;
    let snapshots = store.image_snapshots(&image.id)?;
    let mut sizes = snapshots.iter().map(|s| s.size);
    let mut rows = Vec::new();
    let entries = config
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for h in &entries {
        let empty = h
            .get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        rows.push(HistoryRow {
            id: "<missing>".into(),
            created: h.get("created").and_then(Value::as_str).map(str::to_string),
            created_by: h
                .get("created_by")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            size: if empty { 0 } else { sizes.next().unwrap_or(0) },
            comment: h
                .get("comment")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            empty_layer: empty,
        });
    }
    // Layers the history does not describe (configs without history).
    for size in sizes {
        rows.push(HistoryRow {
            id: "<missing>".into(),
            created: None,
            created_by: String::new(),
            size,
            comment: String::new(),
            empty_layer: false,
        });
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = image.id.to_string();
    }
    Ok(rows)
}
