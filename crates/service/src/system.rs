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
