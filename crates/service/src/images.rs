//! Images as the Engine API shows them: summaries (`GET /images/json`,
//! `images`) with Docker's filters, and prune.

use std::collections::BTreeMap;

use berth_image::gc::{self, Removed};
use berth_image::store::{ImageRecord, Store};
use serde::Serialize;
use serde_json::Value;

use crate::filters::{glob_match, Filters};
use crate::{Error, Result};

/// One image of a list (the Engine API's `ImageSummary`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    pub id: String,
    /// `repository:tag`, familiar (as docker shows them); with a
    /// `reference` filter, only the tags it matched.
    pub repo_tags: Vec<String>,
    /// `repository@digest`, as pulled or pushed.
    pub repo_digests: Vec<String>,
    /// Unix seconds (0 when the config has none).
    pub created: i64,
    pub size: u64,
    pub shared_size: i64,
    pub labels: BTreeMap<String, String>,
    pub containers: i64,
    /// The creation time as the image config gives it (RFC 3339).
    #[serde(skip)]
    pub created_at: Option<String>,
    /// The tags, as references.
    #[serde(skip)]
    pub tags: Vec<berth_image::reference::Reference>,
}

/// Keys `images --filter` knows.
const FILTERS: &[&str] = &["dangling", "reference", "label", "before", "since"];

fn labels(store: &Store, image: &ImageRecord) -> Result<BTreeMap<String, String>> {
    let cfg = berth_image::inspect::config_json(store, image)?;
    Ok(cfg
        .pointer("/config/Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default())
}

fn image_matches(
    store: &Store,
    image: &ImageRecord,
    labels: &BTreeMap<String, String>,
    k: &str,
    v: &str,
) -> Result<bool> {
    Ok(match k {
        "dangling" => {
            let want = match v {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(Error::invalid(format!(
                        "invalid filter 'dangling={v}': use true or false"
                    )))
                }
            };
            image.tags.is_empty() == want
        }
        "label" => match v.split_once('=') {
            Some((lk, lv)) => labels.get(lk).is_some_and(|x| x == lv),
            None => labels.contains_key(v),
        },
        "before" | "since" => {
            let other = store.resolve(v)?;
            if k == "before" {
                image.created < other.created
            } else {
                image.created > other.created
            }
        }
        // Applied to each tag below.
        "reference" => true,
        _ => unreachable!("keys are checked first"),
    })
}

/// The images `filters` selects, as the store lists them.
pub fn list(store: &Store, filters: &Filters) -> Result<Vec<ImageSummary>> {
    filters.check_keys(FILTERS, "berth images")?;
    let references: Vec<&String> = filters
        .iter()
        .filter(|(k, _)| *k == "reference")
        .flat_map(|(_, v)| v)
        .collect();
    for p in &references {
        glob_match(p, "")?;
    }
    let mut out = Vec::new();
    for image in store.images()? {
        // An image whose config cannot be read is still listed (inspect
        // says what is wrong with it).
        let labels = labels(store, &image).unwrap_or_default();
        if !filters.matches(|k, v| image_matches(store, &image, &labels, k, v))? {
            continue;
        }
        let tags: Vec<_> = image
            .tags
            .iter()
            .filter(|t| {
                references.is_empty()
                    || references.iter().any(|p| {
                        glob_match(p, &t.familiar_name()).unwrap_or(false)
                            || glob_match(p, &t.familiar()).unwrap_or(false)
                    })
            })
            .cloned()
            .collect();
        if !references.is_empty() && tags.is_empty() {
            continue;
        }
        out.push(ImageSummary {
            id: image.id.to_string(),
            repo_tags: tags.iter().map(|t| t.familiar()).collect(),
            repo_digests: store.repo_digests(&image.id).unwrap_or_default(),
            created: image
                .created
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map(|t| t.timestamp())
                .unwrap_or(0),
            size: image.size,
            shared_size: -1,
            labels,
            containers: -1,
            created_at: image.created.clone(),
            tags,
        });
    }
    Ok(out)
}

/// What `image prune` removed (the Engine API's `ImagePruneResponse`).
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub images_deleted: Vec<Removed>,
    pub space_reclaimed: u64,
}

/// Removes dangling images (every unused one with `all`), after sweeping
/// what killed builds left (their steps' processes, mounts, cgroups).
pub fn prune(paths: &berth_engine::Paths, store: &mut Store, all: bool) -> Result<PruneReport> {
    berth_builder::sweep_leftovers(paths, store);
    let (removed, report) = gc::prune_images(store, all)?;
    Ok(PruneReport {
        images_deleted: removed,
        space_reclaimed: report.bytes,
    })
}

/// What `builder prune` removed.
#[derive(Debug, Clone, Default)]
pub struct BuildCachePruneReport {
    pub caches_deleted: usize,
    pub space_reclaimed: u64,
}

/// Drops the build cache and whatever killed builds left.
pub fn prune_build_cache(
    paths: &berth_engine::Paths,
    store: &mut Store,
) -> Result<BuildCachePruneReport> {
    berth_builder::sweep_leftovers(paths, store);
    let cache = berth_builder::cache::Cache::open(store.root())?;
    let (steps, report) = cache.prune(store)?;
    Ok(BuildCachePruneReport {
        caches_deleted: steps,
        space_reclaimed: report.bytes,
    })
}

fn image_event(paths: &berth_engine::Paths, action: &str, id: &str, name: Option<&str>) {
    let attrs = name
        .map(|n| std::collections::BTreeMap::from([("name".to_string(), n.to_string())]))
        .unwrap_or_default();
    berth_engine::events::emit(
        &paths.runroot,
        &berth_engine::events::Event::new("image", action, id, attrs),
    );
}

/// `tag`: `target` names the image `source` names.
pub fn tag(
    paths: &berth_engine::Paths,
    store: &mut Store,
    source: &str,
    target: &str,
) -> Result<()> {
    let image = store.resolve(source)?;
    let target = berth_image::reference::Reference::parse(target)?;
    if target.digest().is_some() {
        return Err(Error::invalid(format!(
            "refusing to create a tag with a digest reference: {}",
            target.familiar()
        )));
    }
    store.tag(&target, &image.id)?;
    image_event(
        paths,
        "tag",
        &image.id.to_string(),
        Some(&target.familiar()),
    );
    Ok(())
}

/// `rmi`: untags, and deletes the image with its last tag (or by id).
pub fn remove(
    paths: &berth_engine::Paths,
    store: &mut Store,
    name: &str,
    force: bool,
) -> Result<Vec<Removed>> {
    let id = store.resolve(name).ok().map(|i| i.id.to_string());
    let removed = gc::remove_image(store, name, force)?;
    for r in &removed {
        match r {
            Removed::Untagged(t) => {
                image_event(paths, "untag", id.as_deref().unwrap_or(t), Some(t))
            }
            Removed::Deleted(d) => image_event(paths, "delete", &d.to_string(), None),
        }
    }
    Ok(removed)
}

/// `pull`: the image `reference` names, from its registry.
pub fn pull(
    paths: &berth_engine::Paths,
    store: &mut Store,
    reference: &berth_image::reference::Reference,
    progress: &dyn berth_registry_client::progress::Progress,
) -> Result<()> {
    pull_as(paths, store, reference, progress, None)
}

/// `pull` with the caller's registry credentials (the Engine API's
/// `X-Registry-Auth`) instead of berth's own logins.
pub fn pull_as(
    paths: &berth_engine::Paths,
    store: &mut Store,
    reference: &berth_image::reference::Reference,
    progress: &dyn berth_registry_client::progress::Progress,
    auth: Option<RegistryAuth>,
) -> Result<()> {
    berth_registry_client::pull_as(store, reference, progress, auth.map(|a| a.basic))?;
    image_event(
        paths,
        "pull",
        &reference.familiar(),
        Some(&reference.familiar_name()),
    );
    Ok(())
}

/// `push`: the image `name` names, to the registry `target` names.
pub fn push(
    paths: &berth_engine::Paths,
    store: &mut Store,
    name: &str,
    target: &berth_image::reference::Reference,
    progress: &dyn berth_registry_client::progress::Progress,
) -> Result<()> {
    push_as(paths, store, name, target, progress, None)
}

/// `push` with the caller's registry credentials.
pub fn push_as(
    paths: &berth_engine::Paths,
    store: &mut Store,
    name: &str,
    target: &berth_image::reference::Reference,
    progress: &dyn berth_registry_client::progress::Progress,
    auth: Option<RegistryAuth>,
) -> Result<()> {
    berth_registry_client::push_as(store, name, target, progress, auth.map(|a| a.basic))?;
    image_event(
        paths,
        "push",
        &target.familiar(),
        Some(&target.familiar_name()),
    );
    Ok(())
}

/// `load`: the images of an archive or layout.
pub fn load(
    paths: &berth_engine::Paths,
    store: &mut Store,
    input: berth_image::load::Input<'_>,
) -> Result<Vec<berth_image::load::Loaded>> {
    let loaded = berth_image::load::load(store, input)?;
    for img in &loaded {
        let name = img.tags.first().map(|t| t.familiar());
        image_event(
            paths,
            "load",
            name.as_deref().unwrap_or(&img.id.to_string()),
            name.as_deref(),
        );
    }
    Ok(loaded)
}

/// A client's registry credentials, as the Engine API's `X-Registry-Auth`
/// header carries them: base64url JSON (`username`/`password`, or an
/// `auth` already encoded).
#[derive(Debug, Clone)]
pub struct RegistryAuth {
    /// base64 `user:password`.
    pub basic: String,
}

impl RegistryAuth {
    /// The header's credentials; None for an empty one (`e30=`, `{}`).
    pub fn from_header(value: &str) -> Result<Option<RegistryAuth>> {
        use base64::Engine as _;
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(value))
            .map_err(|e| Error::invalid(format!("X-Registry-Auth is not base64: {e}")))?;
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Header {
            username: String,
            password: String,
            auth: String,
        }
        let h: Header = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("X-Registry-Auth is not JSON: {e}")))?;
        let basic = if !h.username.is_empty() {
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", h.username, h.password))
        } else if !h.auth.is_empty() {
            h.auth
        } else {
            return Ok(None);
        };
        Ok(Some(RegistryAuth { basic }))
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn the_registry_auth_header_as_docker_clients_send_it() {
        assert!(RegistryAuth::from_header("e30=").unwrap().is_none());
        assert!(RegistryAuth::from_header("").unwrap().is_none());
        let json = r#"{"username":"alice","password":"s3cret","serveraddress":"r:5000"}"#;
        let url = base64::engine::general_purpose::URL_SAFE.encode(json);
        let a = RegistryAuth::from_header(&url).unwrap().unwrap();
        assert_eq!(
            a.basic,
            base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
        );
        let std = base64::engine::general_purpose::STANDARD.encode(json);
        assert_eq!(
            RegistryAuth::from_header(&std).unwrap().unwrap().basic,
            a.basic
        );
        assert!(RegistryAuth::from_header("!!!").is_err());
    }
}
