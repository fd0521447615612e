//! `info`, `version` and `system df`, as the Engine API's `/info`,
//! `/version` and `/system/df` give them (the fields berth has).

use serde::Serialize;

use crate::Result;

/// The Engine API's `SystemInfo` (berth's part of it).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    pub images: usize,
    pub driver: String,
    pub docker_root_dir: String,
    pub run_root: String,
    /// "2", "1", or "1 (hybrid)" (v1 controllers with a cgroup2 mount).
    pub cgroup_version: String,
    pub kernel_version: String,
    pub operating_system: String,
    pub architecture: String,
    #[serde(rename = "NCPU")]
    pub ncpu: usize,
    pub server_version: String,
}

fn cgroup_version() -> &'static str {
    let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let hybrid = std::path::Path::new("/sys/fs/cgroup/unified").exists();
    match (unified, hybrid) {
        (true, _) => "2",
        (false, true) => "1 (hybrid)",
        _ => "1",
    }
}

/// The host's name for itself and its kernel's release.
fn os_and_kernel() -> (String, String) {
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    (os, kernel)
}

pub fn info(paths: &berth_engine::Paths, store: &berth_image::store::Store) -> Result<Info> {
    let (os, kernel) = os_and_kernel();
    Ok(Info {
        images: store.images()?.len(),
        driver: "overlay".into(),
        docker_root_dir: paths.root.display().to_string(),
        run_root: paths.runroot.display().to_string(),
        cgroup_version: cgroup_version().into(),
        kernel_version: kernel,
        operating_system: os,
        architecture: std::env::consts::ARCH.into(),
        ncpu: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        server_version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// The client part of `version`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    pub version: String,
    pub os: String,
    pub arch: String,
}

pub fn version() -> Version {
    Version {
        version: env!("CARGO_PKG_VERSION").into(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
    }
}

/// The Engine API's `SystemDataUsageResponse` (`GET /system/df`), with
/// the store's own accounting for the totals `system df` shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskUsage {
    /// The unpacked layers images use, each counted once.
    pub layers_size: u64,
    pub images: Vec<crate::images::ImageSummary>,
    pub containers: Vec<crate::containers::ContainerSummary>,
    pub volumes: Vec<crate::volumes::VolumeView>,
    pub build_cache: Vec<BuildCacheRecord>,
    #[serde(skip)]
    store: berth_image::gc::DiskUsage,
}

/// The Engine API's `BuildCache` record: one cached build step.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BuildCacheRecord {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Type")]
    pub typ: String,
    pub description: String,
    pub in_use: bool,
    /// Its layer is also an image's.
    pub shared: bool,
    /// The bytes of the step's own layer (0 when it added none, or when
    /// another step's record already counts that layer).
    pub size: u64,
    /// RFC 3339.
    pub created_at: String,
    pub last_used_at: String,
    pub usage_count: u64,
}

/// One row of `system df`: a kind of object and what it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// docker's TYPE: "Images", "Containers", "Local Volumes", "Build
    /// Cache"; and berth's "Blobs" (the compressed layers kept for push).
    pub kind: &'static str,
    pub total: usize,
    pub active: usize,
    pub size: u64,
    pub reclaimable: u64,
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What the store, the containers, the volumes and the build cache take.
pub fn df(eng: &mut berth_engine::Engine) -> Result<DiskUsage> {
    let store_usage = berth_image::gc::disk_usage(&eng.store)?;
    let records = eng.list()?;

    let mut images = crate::images::list(&eng.store, &crate::Filters::default())?;
    for img in &mut images {
        img.containers = records.iter().filter(|r| r.image_id == img.id).count() as i64;
        img.shared_size = 0;
    }

    let mut containers = Vec::new();
    for r in &records {
        let mut s = crate::containers::summary(eng, r);
        let rw = berth_image::layer::tree_size(
            &berth_engine::rootfs::Layout::new(&eng.paths.root, &r.id).upper(),
        )
        .unwrap_or(0);
        let image = images
            .iter()
            .find(|i| i.id == r.image_id)
            .map_or(0, |i| i.size);
        s.size_rw = Some(rw);
        s.size_root_fs = Some(rw + image);
        containers.push(s);
    }

    let mut volumes = Vec::new();
    for v in eng.volumes().list()? {
        let mut view = crate::volumes::view(eng, &v);
        let size = berth_image::layer::tree_size(&berth_engine::volumes::data_dir(
            &eng.paths.root,
            &v.name,
        ))
        .unwrap_or(0);
        view.usage_data = Some(crate::volumes::UsageData {
            size,
            ref_count: eng.volumes().users(&v.name)?.len() as u64,
        });
        volumes.push(view);
    }

    let cache = berth_builder::cache::Cache::open(eng.store.root())?;
    let mut counted = std::collections::HashSet::new();
    let mut build_cache = Vec::new();
    for e in cache.entries()? {
        let (mut size, mut shared) = (0, false);
        if let Some(chain) = e.top.as_deref().and_then(|c| c.parse().ok()) {
            shared = eng.store.image_uses_chain(&chain)?;
            if counted.insert(chain.to_string()) {
                size = eng.store.snapshot(&chain)?.map_or(0, |s| s.size);
            }
        }
        build_cache.push(BuildCacheRecord {
            id: e.key.chars().take(25).collect(),
            typ: "regular".into(),
            description: String::new(),
            in_use: false,
            shared,
            size,
            created_at: rfc3339(e.created),
            last_used_at: rfc3339(e.last_used),
            usage_count: 0,
        });
    }

    Ok(DiskUsage {
        layers_size: store_usage.images_size,
        images,
        containers,
        volumes,
        build_cache,
        store: store_usage,
    })
}

impl DiskUsage {
    /// `system df`'s rows, in docker's order.
    pub fn rows(&self) -> Vec<UsageRow> {
        let running = |c: &&crate::containers::ContainerSummary| {
            matches!(c.state.as_str(), "running" | "paused" | "restarting")
        };
        let rw = |c: &crate::containers::ContainerSummary| c.size_rw.unwrap_or(0);
        let vol_size = |v: &crate::volumes::VolumeView| v.usage_data.as_ref().map_or(0, |u| u.size);
        let used = |v: &&crate::volumes::VolumeView| {
            v.usage_data.as_ref().is_some_and(|u| u.ref_count > 0)
        };
        vec![
            UsageRow {
                kind: "Images",
                total: self.store.images,
                active: self.store.active_images,
                size: self.store.images_size,
                reclaimable: self.store.reclaimable,
            },
            UsageRow {
                kind: "Containers",
                total: self.containers.len(),
                active: self.containers.iter().filter(running).count(),
                size: self.containers.iter().map(rw).sum(),
                reclaimable: self.containers.iter().filter(|c| !running(c)).map(rw).sum(),
            },
            UsageRow {
                kind: "Local Volumes",
                total: self.volumes.len(),
                active: self.volumes.iter().filter(used).count(),
                size: self.volumes.iter().map(vol_size).sum(),
                reclaimable: self.volumes.iter().filter(|v| !used(v)).map(vol_size).sum(),
            },
            UsageRow {
                kind: "Build Cache",
                total: self.build_cache.len(),
                active: 0,
                size: self.store.build_cache_size,
                reclaimable: self.store.build_cache_size,
            },
            UsageRow {
                kind: "Blobs",
                total: self.store.blobs,
                active: self.store.blobs,
                size: self.store.blobs_size,
                reclaimable: 0,
            },
        ]
    }
}
