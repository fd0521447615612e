//! Control groups: one [`CgroupManager`] trait over cgroup v1 and v2.
//!
//! [`manager`] looks at the host's cgroup mounts (`/proc/self/mountinfo`):
//!
//! - **v1** (every controller on its own `cgroup` mount) and **hybrid** (v1
//!   controllers plus a `cgroup2` mount, usually `/sys/fs/cgroup/unified`)
//!   get the [`v1`] manager. On a hybrid host each controller is used where it
//!   lives: v1 controllers through their v1 hierarchy, and controllers that
//!   are only on the cgroup2 mount (hugetlb on some hosts) through it. The
//!   process also joins the cgroup2 hierarchy, as runc does; that join is best
//!   effort. crun refuses hybrid hosts; berth does not.
//! - **v2** (`/sys/fs/cgroup` is `cgroup2` and no v1 controller is mounted)
//!   gets the [`v2`] manager. Device rules are enforced there with an eBPF
//!   `BPF_PROG_TYPE_CGROUP_DEVICE` program (see [`devices`]).
//!
//! Managers keep no state besides their paths: a manager built again from
//! the same `cgroupsPath` (in a later `kill` or `delete`) finds the same
//! directories. A relative `cgroupsPath` is resolved against the calling
//! process's own cgroup, so callers that need the same directories later
//! should build the manager from a process in the same cgroup (as runc, which
//! stores the resolved paths).
//!
//! A requested limit whose controller is not available is an error naming
//! the controller; nothing is silently ignored except the kernel memory limit
//! (removed from Linux), which is logged.

pub mod devices;
mod fs;
mod mounts;
pub mod v1;
pub mod v2;

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

/// Errors from cgroup operations.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The OCI `cgroupsPath` is in systemd's `slice:prefix:name` form.
    #[error("systemd cgroup driver is not supported; use cgroupfs (cgroups path {path:?})")]
    Systemd {
        /// The path as given.
        path: String,
    },
    /// The OCI `cgroupsPath` or the container ID cannot name a cgroup.
    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Neither a cgroup v1 controller nor a cgroup2 file system is mounted.
    #[error("no cgroup file system is mounted")]
    NotMounted,
    /// A limit was requested for a controller this host does not offer.
    #[error(
        "cgroup controller {controller} is not available for {path} (needed for {needed_for})"
    )]
    ControllerMissing {
        /// The controller, such as `memory`.
        controller: String,
        /// The cgroup that lacks it.
        path: PathBuf,
        /// The setting that needs it.
        needed_for: &'static str,
    },
    /// A resource value that cannot be written.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidValue {
        /// The setting, such as `memory swap limit`.
        what: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting that this cgroup version cannot express.
    #[error("{what} is not supported on cgroup {version}")]
    Unsupported {
        /// The setting.
        what: &'static str,
        /// `v1` or `v2`.
        version: &'static str,
    },
    /// Reading a cgroup or proc file failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file had content that could not be parsed.
    #[error("parsing {path}: unexpected {content:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The offending content.
        content: String,
    },
    /// Writing a value to a cgroup file failed.
    #[error("writing {value:?} to {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The value written.
        value: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Creating a cgroup directory failed.
    #[error("creating cgroup {path}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Moving a process into a cgroup failed.
    #[error("moving process {pid} into cgroup {path}")]
    Join {
        /// The process.
        pid: i32,
        /// The cgroup directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Removing a cgroup directory failed (processes may still be in it).
    #[error("removing cgroup {path}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The cgroup did not reach the frozen (or thawed) state in time.
    #[error("timed out waiting for cgroup {path} to become {state}")]
    FreezeTimeout {
        /// The cgroup directory.
        path: PathBuf,
        /// `frozen` or `thawed`.
        state: &'static str,
    },
    /// Loading or attaching the cgroup v2 device filter failed.
    #[error("{step} (eBPF device filter for cgroup {path})")]
    DeviceFilter {
        /// What was being done, such as `loading the program`.
        step: &'static str,
        /// The cgroup directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Puts processes into a container's cgroup(s) and sets their limits.
/// What a process needs to move itself into the container's cgroups
/// cheaply, made by [`CgroupManager::prepare_self_join`] before it exists.
#[derive(Debug, Default)]
pub struct SelfJoin {
    /// Each v1 hierarchy's `tasks` file, opened by the runtime (so the
    /// write is checked against its credentials, not the process's). A
    /// single-threaded process writing "0" there moves itself without the
    /// kernel's global migration lock, which after a quiet spell waits for
    /// an RCU grace period (5 to 30 ms).
    pub tasks: Vec<std::os::fd::OwnedFd>,
    /// The cgroup2 directory, for clone3's CLONE_INTO_CGROUP (the process
    /// is born there).
    pub v2_dir: Option<std::os::fd::OwnedFd>,
}

impl SelfJoin {
    /// In the new process: moves it into every v1 hierarchy.
    pub fn join_self(&self) -> std::io::Result<()> {
        for fd in &self.tasks {
            rustix::io::write(fd, b"0")?;
        }
        Ok(())
    }
}

pub trait CgroupManager: std::fmt::Debug {
    /// Creates the cgroup(s) if needed and moves `pid` in.
    ///
    /// On error, the directories this call created are removed again.
    fn apply(&self, pid: i32) -> Result<(), CgroupError>;
    /// Creates the cgroup(s) if needed, moving no one, and opens what a
    /// new process needs to join them itself (see [`SelfJoin`]). None if
    /// this manager cannot (the caller then uses `apply`).
    fn prepare_self_join(&self) -> Result<Option<SelfJoin>, CgroupError> {
        Ok(None)
    }
    /// Writes the resource limits.
    ///
    /// Memory (limit, reservation, swap, swappiness, OOM killer; the kernel
    /// memory limit is ignored with a warning), CPU (shares or weight,
    /// quota/period, burst, idle, realtime on v1), cpuset, pids, block I/O
    /// (v1 blkio, v2 io), hugetlb, rdma, network (v1 only), device rules (v1
    /// `devices.allow`/`deny`, v2 an eBPF program) and `unified` (v2 files).
    fn set(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// PIDs of every process in the cgroup and its descendants (for `ps`,
    /// `kill --all`). Empty if the cgroup does not exist.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// Freezes every process, returning once the kernel reports the cgroup
    /// frozen.
    fn freeze(&self) -> Result<(), CgroupError>;
    /// Thaws a frozen cgroup.
    fn thaw(&self) -> Result<(), CgroupError>;
    /// Removes the cgroup directories, including nested ones (processes must
    /// be gone; retries briefly while the kernel reports them busy). Missing
    /// directories are not an error.
    fn destroy(&self) -> Result<(), CgroupError>;
    /// The memory limit in effect, for tests and `berth stats` (None if
    /// unlimited).
    fn memory_limit(&self) -> Result<Option<i64>, CgroupError>;
    /// How many processes the kernel's OOM killer has killed in the
    /// cgroup (v1 `memory.oom_control`, v2 `memory.events`: `oom_kill`);
    /// 0 when the memory controller or the counter is not there.
    fn oom_kills(&self) -> u64 {
        0
    }
    /// The container's directory in each hierarchy it joins, named as the
    /// hierarchy appears under `/sys/fs/cgroup` (`memory`, `cpu,cpuacct`,
    /// `systemd`, ...; `unified` for cgroup2), known before `apply` runs:
    /// what a container's cgroup mount shows.
    fn container_dirs(&self) -> Vec<(String, PathBuf)>;
}

/// Picks the v1 (incl. hybrid) or v2 manager from the host's mounts.
///
/// `cgroups_path` is the OCI `linux.cgroupsPath`: absolute paths are relative
/// to the cgroup root(s); relative paths are relative to the calling
/// process's own cgroup (as runc); `None` means `/berth/<container_id>`.
/// `..` components are resolved lexically and cannot climb above either
/// base (as runc). systemd's `slice:prefix:name` form is refused with
/// [`CgroupError::Systemd`].
pub fn manager(
    cgroups_path: Option<&Path>,
    container_id: &str,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let path = resolve_path(cgroups_path, container_id)?;
    let mounts = mounts::cgroup_mounts()?;
    let own = mounts::proc_cgroups(Path::new("/proc/self/cgroup"))?;
    if mounts.has_v1_controllers() {
        Ok(Box::new(v1::V1Manager::new(&mounts, &own, &path)))
    } else if let Some(m) = &mounts.v2 {
        let rel = path.under(m, own.v2.as_deref());
        Ok(Box::new(v2::V2Manager::new(m.mount_point.clone(), rel)))
    } else {
        Err(CgroupError::NotMounted)
    }
}

/// `"v1"`, `"v2"` or `"hybrid"` as detected (for `berth info` and
/// `features`); `"none"` if no cgroup file system is mounted.
pub fn host_mode() -> &'static str {
    static MODE: OnceLock<&'static str> = OnceLock::new();
    MODE.get_or_init(|| match mounts::cgroup_mounts() {
        Ok(m) => m.mode(),
        Err(e) => {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "cannot detect cgroup mounts"
            );
            "none"
        }
    })
}

/// A cleaned `cgroupsPath`: normal components only, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupPath {
    /// Relative to the caller's own cgroup rather than to the root.
    pub(crate) relative_to_own: bool,
    /// The components, as a relative path.
    pub(crate) path: PathBuf,
}

impl CgroupPath {
    /// The directory below `mount`'s mount point, given the caller's own
    /// cgroup in that hierarchy (as `/proc/self/cgroup` shows it).
    pub(crate) fn under(&self, mount: &mounts::Mount, own: Option<&str>) -> PathBuf {
        if !self.relative_to_own {
            return self.path.clone();
        }
        let own = Path::new(own.unwrap_or("/"));
        // /proc/self/cgroup shows paths from the hierarchy's root; the mount
        // may show only a subtree of it (a container's /sys/fs/cgroup).
        let base = own.strip_prefix(&mount.root).unwrap_or(own);
        let base: PathBuf = base
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        base.join(&self.path)
    }
}

/// Validates and cleans `cgroups_path` (see [`manager`]).
pub(crate) fn resolve_path(
    cgroups_path: Option<&Path>,
    container_id: &str,
) -> Result<CgroupPath, CgroupError> {
    let Some(given) = cgroups_path else {
        let mut c = Path::new(container_id).components();
        return match (c.next(), c.next()) {
            (Some(Component::Normal(_)), None) => Ok(CgroupPath {
                relative_to_own: false,
                path: Path::new("berth").join(container_id),
            }),
            _ => Err(CgroupError::InvalidPath {
                path: PathBuf::from(container_id),
                reason: "the container id is not a single path component",
            }),
        };
    };
    let text = given.to_str().ok_or_else(|| CgroupError::InvalidPath {
        path: given.to_owned(),
        reason: "not valid UTF-8",
    })?;
    if !text.starts_with('/') && text.split(':').count() == 3 {
        return Err(CgroupError::Systemd {
            path: text.to_owned(),
        });
    }
    if text.contains('\n') {
        return Err(CgroupError::InvalidPath {
            path: given.to_owned(),
            reason: "contains a newline",
        });
    }
    let mut clean = Vec::new();
    for c in given.components() {
        match c {
            Component::Normal(n) => clean.push(n),
            Component::ParentDir => {
                clean.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if clean.is_empty() {
        return Err(CgroupError::InvalidPath {
            path: given.to_owned(),
            reason: "it names the cgroup root or the runtime's own cgroup",
        });
    }
    Ok(CgroupPath {
        relative_to_own: !given.is_absolute(),
        path: clean.iter().collect(),
    })
}

/// Whether `m` asks for anything besides the kernel memory limit, which
/// Linux no longer has (logged here and otherwise ignored).
fn memory_requested(m: &LinuxMemory) -> bool {
    if let Some(k) = m.kernel().filter(|k| *k != 0) {
        tracing::warn!(
            kernel = k,
            "ignoring the kernel memory limit: not supported by Linux any more"
        );
    }
    m.limit().is_some_and(|v| v != 0)
        || m.reservation().is_some_and(|v| v != 0)
        || m.swap().is_some_and(|v| v != 0)
        || m.kernel_tcp().is_some_and(|v| v != 0)
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true)
}

/// The swappiness to write: None for unset or -1 (as a u64), an error above
/// 100.
fn swappiness(m: &LinuxMemory) -> Result<Option<u64>, CgroupError> {
    match m.swappiness() {
        None | Some(u64::MAX) => Ok(None),
        Some(s) if s <= 100 => Ok(Some(s)),
        Some(s) => Err(CgroupError::InvalidValue {
            what: "memory swappiness",
            value: s.to_string(),
            reason: "expected 0 to 100".into(),
        }),
    }
}

/// Whether `c` asks for anything from the cpu controller.
fn cpu_requested(c: &LinuxCpu) -> bool {
    c.shares().is_some_and(|v| v != 0)
        || c.quota().is_some_and(|v| v != 0)
        || c.period().is_some_and(|v| v != 0)
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_runtime().is_some_and(|v| v != 0)
        || c.realtime_period().is_some_and(|v| v != 0)
}

/// Whether `c` asks for anything from the cpuset controller.
fn cpuset_requested(c: &LinuxCpu) -> bool {
    c.cpus().as_ref().is_some_and(|v| !v.is_empty())
        || c.mems().as_ref().is_some_and(|v| !v.is_empty())
}

/// Whether `b` asks for anything.
fn blkio_requested(b: &LinuxBlockIo) -> bool {
    b.weight().is_some_and(|v| v != 0)
        || b.leaf_weight().is_some_and(|v| v != 0)
        || [
            b.throttle_read_bps_device(),
            b.throttle_write_bps_device(),
            b.throttle_read_iops_device(),
            b.throttle_write_iops_device(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
        || b.weight_device().as_ref().is_some_and(|l| !l.is_empty())
}

/// `major:minor` of a block device in a limit.
fn device_number(major: i64, minor: i64) -> Result<String, CgroupError> {
    if major < 0 || minor < 0 || major > i64::from(u32::MAX) || minor > i64::from(u32::MAX) {
        return Err(CgroupError::InvalidValue {
            what: "block device number",
            value: format!("{major}:{minor}"),
            reason: "out of range".into(),
        });
    }
    Ok(format!("{major}:{minor}"))
}

/// The error for a hugepage size the host does not have.
fn unsupported_page_size(size: &str) -> CgroupError {
    CgroupError::InvalidValue {
        what: "hugepage size",
        value: size.to_owned(),
        reason: "this host has no such hugepage size".into(),
    }
}

/// Writes `pids.max` (v1 and v2 alike): 0 or below means no limit.
fn set_pids(dir: &Path, p: &LinuxPids) -> Result<(), CgroupError> {
    let value = if p.limit() > 0 {
        p.limit().to_string()
    } else {
        "max".to_owned()
    };
    fs::write(dir, "pids.max", &value)
}

/// Writes `cpuset.cpus` and `cpuset.mems` (v1 and v2 alike).
fn set_cpuset(dir: &Path, cpus: Option<&String>, mems: Option<&String>) -> Result<(), CgroupError> {
    if let Some(cpus) = cpus.filter(|c| !c.is_empty()) {
        fs::write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = mems.filter(|m| !m.is_empty()) {
        fs::write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

/// Writes `rdma.max` lines (v1 and v2 alike).
fn set_rdma(
    dir: &Path,
    rdma: &std::collections::HashMap<String, oci_spec::runtime::LinuxRdma>,
) -> Result<(), CgroupError> {
    for (device, limits) in rdma {
        if device.is_empty() || device.contains(char::is_whitespace) {
            return Err(CgroupError::InvalidValue {
                what: "rdma device name",
                value: device.clone(),
                reason: "empty or contains white space".into(),
            });
        }
        let mut line = device.clone();
        if let Some(h) = limits.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = limits.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        fs::write(dir, "rdma.max", &line)?;
    }
    Ok(())
}

/// Whether `resources.rdma` asks for anything.
fn rdma_requested(r: &LinuxResources) -> bool {
    r.rdma().as_ref().is_some_and(|m| !m.is_empty())
}

/// Checks an OCI hugepage size ("2MB", "1GB", "64KB") before it becomes part
/// of a file name.
fn check_page_size(size: &str) -> Result<(), CgroupError> {
    let digits = size.trim_end_matches(['K', 'M', 'G', 'T', 'P', 'B']);
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(
            &size[digits.len()..],
            "B" | "KB" | "MB" | "GB" | "TB" | "PB"
        );
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidValue {
            what: "hugepage size",
            value: size.to_owned(),
            reason: "expected a number and a unit such as 2MB".into(),
        })
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Live tests run as root against the host's cgroups. Each uses its own
    //! cgroup `berth-test-<pid>-<n>`, removed by a [`Guard`] even when the
    //! test fails.

    use std::path::PathBuf;
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::mounts;
    use super::CgroupManager;

    /// Whether live tests can run (root, cgroups mounted); says why not.
    /// A test that cannot run is counted as a skip (`crate::skip`).
    #[track_caller]
    pub(crate) fn live() -> bool {
        let test = std::panic::Location::caller().to_string();
        if !rustix::process::geteuid().is_root() {
            crate::skip(&test, "live cgroup tests need root");
            return false;
        }
        if super::host_mode() == "none" {
            crate::skip(&test, "no cgroups are mounted");
            return false;
        }
        true
    }

    /// A fresh test cgroup name.
    pub(crate) fn name() -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        format!(
            "berth-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Owns a manager and the test's children: on drop it thaws, kills and
    /// reaps them, and destroys the cgroup.
    pub(crate) struct Guard {
        pub(crate) mgr: Box<dyn CgroupManager>,
        pub(crate) children: Vec<Child>,
    }

    impl Guard {
        pub(crate) fn new(mgr: Box<dyn CgroupManager>) -> Guard {
            Guard {
                mgr,
                children: Vec::new(),
            }
        }

        /// Spawns a child and returns its pid.
        pub(crate) fn spawn(&mut self, cmd: &mut Command) -> i32 {
            let child = cmd.spawn().expect("spawn test child");
            let pid = child.id() as i32;
            self.children.push(child);
            pid
        }

        /// Kills and reaps the children.
        pub(crate) fn kill_children(&mut self) {
            for c in &mut self.children {
                let _ = c.kill();
                let _ = c.wait();
            }
            self.children.clear();
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            // A frozen process cannot die.
            let _ = self.mgr.thaw();
            self.kill_children();
            if let Err(e) = self.mgr.destroy() {
                eprintln!("test cleanup: {e}: {:?}", std::error::Error::source(&e));
            }
        }
    }

    /// The cgroup directories `pid` is in, read from `/proc/<pid>/cgroup`:
    /// (sorted v1 controllers, or empty for cgroup2; directory).
    pub(crate) fn cgroup_dirs(pid: i32) -> Vec<(Vec<String>, PathBuf)> {
        let m = mounts::cgroup_mounts().unwrap();
        let p = mounts::proc_cgroups(&PathBuf::from(format!("/proc/{pid}/cgroup"))).unwrap();
        let join = |mount: &mounts::Mount, path: &str| {
            let path = std::path::Path::new(path);
            let rel = path.strip_prefix(&mount.root).unwrap_or(path);
            mount.mount_point.join(rel.strip_prefix("/").unwrap_or(rel))
        };
        let mut out = Vec::new();
        for mount in &m.v1 {
            if let Some(path) = p.v1_path(&mount.controllers) {
                out.push((mount.controllers.clone(), join(mount, path)));
            }
        }
        if let (Some(mount), Some(path)) = (&m.v2, &p.v2) {
            out.push((Vec::new(), join(mount, path)));
        }
        out
    }

    /// The directory of `controller` (`""` for cgroup2) among `dirs`.
    pub(crate) fn dir_of(dirs: &[(Vec<String>, PathBuf)], controller: &str) -> PathBuf {
        dirs.iter()
            .find(|(c, _)| {
                if controller.is_empty() {
                    c.is_empty()
                } else {
                    c.iter().any(|c| c == controller)
                }
            })
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("no {controller:?} cgroup in {dirs:?}"))
    }

    /// Reads a cgroup file, trimmed.
    pub(crate) fn read(dir: &std::path::Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
            .trim()
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::testutil::{self, Guard};
    use super::*;

    fn resolve(p: Option<&str>) -> Result<CgroupPath, CgroupError> {
        resolve_path(p.map(Path::new), "ctr1")
    }

    #[test]
    fn path_resolution() {
        let abs = resolve(Some("/a/b")).unwrap();
        assert!(!abs.relative_to_own);
        assert_eq!(abs.path, Path::new("a/b"));
        let rel = resolve(Some("a/./b")).unwrap();
        assert!(rel.relative_to_own);
        assert_eq!(rel.path, Path::new("a/b"));
        let none = resolve(None).unwrap();
        assert!(!none.relative_to_own);
        assert_eq!(none.path, Path::new("berth/ctr1"));
        // ".." cannot climb above the base (runc cleans paths the same way).
        assert_eq!(resolve(Some("/../../x/../y")).unwrap().path, Path::new("y"));
        assert_eq!(resolve(Some("../../z")).unwrap().path, Path::new("z"));

        for systemd in ["system.slice:berth:abc", ":berth:abc", "machine.slice:x:"] {
            let e = resolve(Some(systemd)).unwrap_err();
            assert!(matches!(e, CgroupError::Systemd { .. }), "{systemd}: {e}");
            assert!(e
                .to_string()
                .starts_with("systemd cgroup driver is not supported; use cgroupfs"));
        }
        // A colon elsewhere is just part of a name.
        assert_eq!(resolve(Some("/a:b:c")).unwrap().path, Path::new("a:b:c"));
        assert_eq!(resolve(Some("a:b")).unwrap().path, Path::new("a:b"));

        for bad in ["/", "", ".", "/..", "a/.."] {
            let e = resolve(Some(bad)).unwrap_err();
            assert!(matches!(e, CgroupError::InvalidPath { .. }), "{bad:?}: {e}");
        }
        for id in ["", "a/b", "..", "."] {
            let e = resolve_path(None, id).unwrap_err();
            assert!(matches!(e, CgroupError::InvalidPath { .. }), "{id:?}: {e}");
        }
    }

    #[test]
    fn paths_below_mounts() {
        let whole = mounts::Mount {
            mount_point: "/sys/fs/cgroup/memory".into(),
            root: "/".into(),
            controllers: vec!["memory".into()],
        };
        // A container's view: only /docker/abc of the hierarchy is mounted.
        let sub = mounts::Mount {
            root: "/docker/abc".into(),
            ..whole.clone()
        };
        let abs = resolve(Some("/x/y")).unwrap();
        let rel = resolve(Some("x/y")).unwrap();
        assert_eq!(abs.under(&whole, Some("/user/1")), Path::new("x/y"));
        assert_eq!(rel.under(&whole, Some("/user/1")), Path::new("user/1/x/y"));
        assert_eq!(rel.under(&whole, None), Path::new("x/y"));
        assert_eq!(
            rel.under(&sub, Some("/docker/abc/init")),
            Path::new("init/x/y")
        );
        assert_eq!(abs.under(&sub, Some("/docker/abc/init")), Path::new("x/y"));
    }

    #[test]
    fn host_mode_is_known() {
        assert!(["v1", "v2", "hybrid", "none"].contains(&host_mode()));
    }

    #[test]
    fn checks_values() {
        for ok in ["2MB", "1GB", "64KB", "16GB"] {
            check_page_size(ok).unwrap();
        }
        for bad in ["", "MB", "2mb", "2", "../2MB", "2MB/x", "2 MB", "2XB"] {
            assert!(check_page_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(device_number(8, 16).unwrap(), "8:16");
        assert!(device_number(-1, 0).is_err());
        let m: LinuxMemory = serde_json::from_str(r#"{"swappiness": 101}"#).unwrap();
        assert!(matches!(
            swappiness(&m),
            Err(CgroupError::InvalidValue { .. })
        ));
        let m: LinuxMemory =
            serde_json::from_str(r#"{"swappiness": 18446744073709551615}"#).unwrap();
        assert_eq!(swappiness(&m).unwrap(), None);
        let m: LinuxMemory = serde_json::from_str(r#"{"kernel": 1000000}"#).unwrap();
        assert!(
            !memory_requested(&m),
            "the kernel limit alone is only logged"
        );
    }

    /// The whole lifecycle through [`manager`] on this host, whatever its
    /// mode, checked through `/proc/<pid>/cgroup` and the cgroup files.
    #[test]
    fn lifecycle_on_this_host() {
        if !testutil::live() {
            return;
        }
        let name = testutil::name();
        // Relative: below this process's own cgroups.
        let mut g = Guard::new(manager(Some(Path::new(&name)), "unused").unwrap());
        let pid = g.spawn(Command::new("sleep").arg("30"));
        g.mgr.apply(pid).unwrap();
        let dirs: Vec<_> = testutil::cgroup_dirs(pid)
            .into_iter()
            .filter(|(_, d)| d.ends_with(&name))
            .collect();
        assert!(!dirs.is_empty(), "{pid} joined nothing");
        eprintln!("cgroups of the child: {dirs:?}");

        let res: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 64 << 20},
            "pids": {"limit": 20},
            "cpu": {"quota": 50000, "period": 100000},
        }))
        .unwrap();
        g.mgr.set(&res).unwrap();
        assert_eq!(g.mgr.memory_limit().unwrap(), Some(64 << 20));
        let v2 = host_mode() == "v2";
        let (mem, pids, cpu) = (
            testutil::dir_of(&dirs, if v2 { "" } else { "memory" }),
            testutil::dir_of(&dirs, if v2 { "" } else { "pids" }),
            testutil::dir_of(&dirs, if v2 { "" } else { "cpu" }),
        );
        if v2 {
            assert_eq!(testutil::read(&mem, "memory.max"), "67108864");
            assert_eq!(testutil::read(&cpu, "cpu.max"), "50000 100000");
        } else {
            assert_eq!(testutil::read(&mem, "memory.limit_in_bytes"), "67108864");
            assert_eq!(testutil::read(&cpu, "cpu.cfs_quota_us"), "50000");
            assert_eq!(testutil::read(&cpu, "cpu.cfs_period_us"), "100000");
        }
        assert_eq!(testutil::read(&pids, "pids.max"), "20");
        assert!(g.mgr.pids().unwrap().contains(&pid));

        g.mgr.freeze().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let state = status.lines().find(|l| l.starts_with("State:")).unwrap();
        eprintln!("frozen child: {state}");
        if v2 {
            assert!(testutil::read(&mem, "cgroup.events").contains("frozen 1"));
        } else {
            let freezer = testutil::dir_of(&dirs, "freezer");
            assert_eq!(testutil::read(&freezer, "freezer.state"), "FROZEN");
        }
        g.mgr.thaw().unwrap();
        if !v2 {
            let freezer = testutil::dir_of(&dirs, "freezer");
            assert_eq!(testutil::read(&freezer, "freezer.state"), "THAWED");
        }

        g.kill_children();
        g.mgr.destroy().unwrap();
        for (_, d) in &dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
        // Destroying twice is fine.
        g.mgr.destroy().unwrap();
        assert!(g.mgr.pids().unwrap().is_empty());
    }

    /// A failing apply leaves no directories behind, intermediate ones
    /// included.
    #[test]
    fn failed_apply_cleans_up() {
        if !testutil::live() {
            return;
        }
        let name = testutil::name();
        let path = format!("/{name}/inner");
        let g = Guard::new(manager(Some(Path::new(&path)), "unused").unwrap());
        // No such process: the first join fails after every directory exists.
        let e = g.mgr.apply(i32::MAX).unwrap_err();
        assert!(matches!(e, CgroupError::Join { pid: i32::MAX, .. }), "{e}");
        let m = mounts::cgroup_mounts().unwrap();
        for mount in m.v1.iter().chain(&m.v2) {
            let d = mount.mount_point.join(&name);
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}

/// The `oom_kill N` line of a memory controller's file (v1
/// `memory.oom_control`, v2 `memory.events`).
pub(crate) fn oom_kill_count(file: &std::path::Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}
