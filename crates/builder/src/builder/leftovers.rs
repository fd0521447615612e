//! What a killed build leaves behind: its leases on images, step
//! directories and mounts, swept by the next build.

use std::path::{Path, PathBuf};

use berth_engine::Paths;
use berth_image::store::Store;

/// The lease a build holds on the images it uses.
pub(super) fn lease_holder() -> String {
    format!("build:{}", std::process::id())
}

/// Drops the build's leases when it ends, however it ends.
pub(super) struct LeaseGuard {
    pub(super) root: PathBuf,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Ok(mut store) = Store::open(&self.root) {
            let _ = store.remove_lease(&lease_holder());
        }
    }
}

pub(super) fn pid_alive(pid: i32) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// What builds that died left: their step directories (mounts undone
/// first, and a directory with a mount that will not go is left alone),
/// their runtime state, their secrets and their leases.
/// Removes what builds that died left (a killed `berth build`): each
/// step's processes and cgroups, its mounts, its directory under
/// `ROOT/builds/`, its runtime state and secrets, and the leases on base
/// images. Run by every build and by the prune commands.
pub fn sweep_leftovers(paths: &Paths, store: &mut Store) {
    sweep(paths, store)
}

pub(super) fn sweep(paths: &Paths, store: &mut Store) {
    let builds = paths.root.join("builds");
    let Ok(entries) = std::fs::read_dir(&builds) else {
        return;
    };
    let rt = paths.runtime();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid: i32 = name
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if pid_alive(pid) {
            continue;
        }
        let _ = berth_runtime::container::delete(&rt, &name, true);
        // Killed before the runtime recorded the step, its cgroups are
        // known only by the step's name: any process in them is killed
        // and they are removed.
        if let Ok(cg) =
            berth_runtime::cgroups::manager(Some(Path::new(&format!("/berth/{name}"))), &name)
        {
            for _ in 0..50 {
                let pids = cg.pids().unwrap_or_default();
                if pids.is_empty() {
                    break;
                }
                for p in pids {
                    // SAFETY: kill of a pid in the dead build's cgroup.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = cg.destroy();
        }
        let dir = e.path();
        let prefix = format!("{}/", dir.display());
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        let mut stuck = false;
        for m in &mounts {
            if rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH).is_err() {
                stuck = true;
            }
        }
        if !stuck {
            let _ = berth_image::layer::remove_dir_all(&dir);
        }
        let _ = std::fs::remove_dir_all(paths.runroot.join("build-secrets").join(&name));
    }
    if let Ok(holders) = berth_image::built::lease_holders_with_prefix(store, "build:") {
        for h in holders {
            let pid: i32 = h.trim_start_matches("build:").parse().unwrap_or(0);
            if !pid_alive(pid) {
                let _ = store.remove_lease(&h);
            }
        }
    }
}
