//! cgroup v2 (the unified hierarchy).
//!
//! [`CgroupManager::apply`] creates the cgroup and, as runc, enables every
//! controller the parent offers in each ancestor's `cgroup.subtree_control`
//! (ancestors that hold processes refuse; that is ignored here, and a limit
//! needing a controller that did not reach the cgroup fails in
//! [`CgroupManager::set`] with [`CgroupError::ControllerMissing`]).
//!
//! OCI resources are written in their v2 form, with runc's conversions:
//! shares become `cpu.weight`, memory+swap becomes `memory.swap.max`, blkio
//! weights become `io.weight` (or `io.bfq.weight` unchanged). Device rules
//! become an eBPF program ([`super::devices`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use super::{devices, fs, CgroupError, CgroupManager};

/// The cgroup v2 manager.
///
/// It takes the cgroup2 root as a parameter so that tests can point it at a
/// temporary directory laid out like cgroup2: a hybrid test host has no
/// cgroup2 mount with the memory, cpu, io or pids controllers, and mounting
/// one in a private mount namespace would need those controllers moved off
/// v1. The value conversions are therefore tested against plain files; the
/// rest (create, join, freeze, pids, device filter, destroy) also runs
/// against the host's real cgroup2 mount when it has one.
#[derive(Debug, Clone)]
pub struct V2Manager {
    root: PathBuf,
    rel: PathBuf,
}

impl V2Manager {
    /// The manager for the cgroup `rel` below the cgroup2 mount `root`.
    pub(crate) fn new(root: PathBuf, rel: PathBuf) -> V2Manager {
        V2Manager { root, rel }
    }

    /// The container's cgroup directory.
    pub(crate) fn dir(&self) -> PathBuf {
        self.root.join(&self.rel)
    }

    /// Whether the container's cgroup has `controller` (its parent enables
    /// it).
    pub(crate) fn has_controller(&self, controller: &str) -> bool {
        has_controller(&self.dir(), controller)
    }

    /// The cgroup directory if it has `controller`.
    fn require(
        &self,
        controller: &'static str,
        needed_for: &'static str,
    ) -> Result<PathBuf, CgroupError> {
        let dir = self.dir();
        if has_controller(&dir, controller) {
            Ok(dir)
        } else {
            Err(CgroupError::ControllerMissing {
                controller: controller.to_owned(),
                path: dir,
                needed_for,
            })
        }
    }
}

fn has_controller(dir: &Path, controller: &str) -> bool {
    fs::read(dir, "cgroup.controllers").is_ok_and(|c| c.split_whitespace().any(|c| c == controller))
}

/// Enables in `dir`'s `cgroup.subtree_control` every controller `dir` has
/// that is not enabled yet. Best effort, as runc: a cgroup with processes
/// refuses, and some controllers may be refused alone.
fn enable_controllers(dir: &Path) {
    let Ok(available) = fs::read(dir, "cgroup.controllers") else {
        return;
    };
    let enabled = fs::read(dir, "cgroup.subtree_control").unwrap_or_default();
    let missing: Vec<String> = available
        .split_whitespace()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() || fs::write(dir, "cgroup.subtree_control", &missing.join(" ")).is_ok() {
        return;
    }
    for c in missing {
        if let Err(e) = fs::write(dir, "cgroup.subtree_control", &c) {
            tracing::debug!(
                error = &e as &dyn std::error::Error,
                "controller not enabled"
            );
        }
    }
}

/// A cgroup2 directory, opened for CLONE_INTO_CGROUP.
pub(crate) fn open_dir(dir: &Path) -> Result<std::os::fd::OwnedFd, CgroupError> {
    rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| CgroupError::Read {
        path: dir.to_path_buf(),
        source: e.into(),
    })
}

impl V2Manager {
    /// Creates the directory (and its parents, enabling the controllers
    /// they pass down); returns what it made.
    pub(crate) fn create(&self) -> Result<Vec<PathBuf>, CgroupError> {
        fs::create(&self.root, &self.rel, |parent, _| {
            enable_controllers(parent);
            Ok(())
        })
    }
}

impl CgroupManager for V2Manager {
    fn container_dirs(&self) -> Vec<(String, PathBuf)> {
        vec![("unified".to_string(), self.dir())]
    }

    fn prepare_self_join(&self) -> Result<Option<super::SelfJoin>, CgroupError> {
        let created = self.create()?;
        match open_dir(&self.dir()) {
            Ok(fd) => Ok(Some(super::SelfJoin {
                tasks: Vec::new(),
                v2_dir: Some(fd),
            })),
            Err(e) => {
                fs::remove_created(&created);
                Err(e)
            }
        }
    }

    fn apply(&self, pid: i32) -> Result<(), CgroupError> {
        let created = self.create()?;
        if let Err(e) = fs::join(&self.dir(), pid) {
            // One write: the process is still where it was.
            fs::remove_created(&created);
            return Err(e);
        }
        Ok(())
    }

    fn set(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(p) = r.pids() {
            super::set_pids(&self.require("pids", "the pids limit")?, p)?;
        }
        if let Some(m) = r.memory() {
            if super::memory_requested(m) {
                set_memory(&self.require("memory", "memory limits")?, m)?;
            }
        }
        if let Some(c) = r.cpu() {
            if super::cpu_requested(c) {
                set_cpu(&self.require("cpu", "cpu limits")?, c)?;
            }
            if super::cpuset_requested(c) {
                let dir = self.require("cpuset", "cpus and mems")?;
                super::set_cpuset(&dir, c.cpus().as_ref(), c.mems().as_ref())?;
            }
        }
        if let Some(b) = r.block_io() {
            if super::blkio_requested(b) {
                set_io(&self.require("io", "block I/O limits")?, b)?;
            }
        }
        if let Some(h) = r.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
            set_hugetlb(&self.require("hugetlb", "hugepage limits")?, h)?;
        }
        if super::rdma_requested(r) {
            let dir = self.require("rdma", "rdma limits")?;
            super::set_rdma(&dir, r.rdma().as_ref().expect("requested"))?;
        }
        if let Some(n) = r.network() {
            if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(CgroupError::Unsupported {
                    what: "linux.resources.network (net_cls, net_prio)",
                    version: "v2",
                });
            }
        }
        if let Some(rules) = r.devices().as_ref().filter(|d| !d.is_empty()) {
            devices::set_v2(&self.dir(), rules)?;
        }
        if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            set_unified(&self.dir(), u)?;
        }
        Ok(())
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        fs::procs_recursive(&self.dir())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let dir = self.dir();
        fs::write(&dir, "cgroup.freeze", "1")?;
        if wait_frozen(&dir, true)? {
            return Ok(());
        }
        let _ = fs::write(&dir, "cgroup.freeze", "0");
        Err(CgroupError::FreezeTimeout {
            path: dir,
            state: "frozen",
        })
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        let dir = self.dir();
        fs::write(&dir, "cgroup.freeze", "0")?;
        if wait_frozen(&dir, false)? {
            Ok(())
        } else {
            Err(CgroupError::FreezeTimeout {
                path: dir,
                state: "thawed",
            })
        }
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        fs::remove_tree(&self.dir())
    }

    fn oom_kills(&self) -> u64 {
        super::oom_kill_count(&self.dir().join("memory.events"))
    }

    fn memory_limit(&self) -> Result<Option<i64>, CgroupError> {
        read_memory_max(&self.require("memory", "reading the memory limit")?)
    }
}

/// Waits until `cgroup.events` says `frozen 1` (or `frozen 0`) in `dir`
/// and every cgroup below it: the kernel sets a cgroup's flag from its own
/// processes, so a nested cgroup can still be freezing when its parent
/// already reports `frozen 1`.
fn wait_frozen(dir: &Path, frozen: bool) -> Result<bool, CgroupError> {
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    fs::poll(fs::FREEZE_TIMEOUT, |_| all_in_state(dir, want, true))
}

fn all_in_state(dir: &Path, want: &str, top: bool) -> Result<bool, CgroupError> {
    match fs::read(dir, "cgroup.events") {
        Ok(events) if !events.lines().any(|l| l.trim() == want) => return Ok(false),
        Ok(_) => {}
        // A nested cgroup removed meanwhile.
        Err(CgroupError::Read { source, .. })
            if !top && source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(true)
        }
        Err(e) => return Err(e),
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && !all_in_state(&entry.path(), want, false)?
            {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// `memory.max` as a limit (None for `max`).
pub(crate) fn read_memory_max(dir: &Path) -> Result<Option<i64>, CgroupError> {
    let v = fs::read(dir, "memory.max")?;
    if v.trim() == "max" {
        return Ok(None);
    }
    v.trim().parse().map(Some).map_err(|_| CgroupError::Parse {
        path: dir.join("memory.max"),
        content: v,
    })
}

/// A v2 limit: negative means `max`.
fn limit(v: i64) -> String {
    if v < 0 {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

/// The OCI swap value (memory+swap) as `memory.swap.max` (swap alone), as
/// runc: 0 is unset, -1 is `max`.
pub(crate) fn swap_to_v2(swap: i64, memory: i64) -> Result<i64, CgroupError> {
    // Unlimited memory and no swap setting: both unlimited, as on v1.
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    let invalid = |reason: String| CgroupError::InvalidValue {
        what: "memory swap limit",
        value: swap.to_string(),
        reason,
    };
    if memory <= 0 {
        return Err(invalid("a swap limit needs a memory limit".into()));
    }
    if swap < memory {
        return Err(invalid(format!(
            "memory+swap must be at least the memory limit {memory}"
        )));
    }
    Ok(swap - memory)
}

/// Writes `memory.swap.max`, `memory.max` and `memory.low`.
pub(crate) fn set_memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let mem = m.limit().unwrap_or(0);
    let swap = swap_to_v2(m.swap().unwrap_or(0), mem)?;
    if m.check_before_update() == Some(true) && mem > 0 {
        let usage = fs::read_i64(dir, "memory.current")?;
        if mem < usage {
            return Err(CgroupError::InvalidValue {
                what: "memory limit",
                value: mem.to_string(),
                reason: format!("below the current usage {usage}"),
            });
        }
    }
    if swap != 0 {
        if fs::exists(dir, "memory.swap.max") {
            fs::write(dir, "memory.swap.max", &limit(swap))?;
        } else if swap > 0 {
            tracing::warn!(
                swap,
                "swap accounting is not enabled on this host; ignoring the swap limit"
            );
        }
    }
    if mem != 0 {
        fs::write(dir, "memory.max", &limit(mem))?;
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        fs::write(dir, "memory.low", &limit(r))?;
    }
    if let Some(t) = m.kernel_tcp().filter(|t| *t != 0) {
        tracing::warn!(
            kernel_tcp = t,
            "ignoring the kernel TCP memory limit: cgroup v2 has none"
        );
    }
    if let Some(s) = super::swappiness(m)? {
        tracing::warn!(
            swappiness = s,
            "ignoring memory swappiness: cgroup v2 has none"
        );
    }
    if m.disable_oom_killer() == Some(true) {
        tracing::warn!("ignoring disableOOMKiller: cgroup v2 cannot disable the OOM killer");
    }
    Ok(())
}

/// v1 `cpu.shares` (2..=262144) as v2 `cpu.weight` (1..=10000), runc's
/// conversion; 0 stays unset.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// Writes `cpu.weight`, `cpu.max`, `cpu.max.burst` and `cpu.idle`.
pub(crate) fn set_cpu(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if c.realtime_runtime().is_some_and(|r| r != 0) || c.realtime_period().is_some_and(|p| p != 0) {
        return Err(CgroupError::Unsupported {
            what: "realtime cpu scheduling (cpu.realtimeRuntime, cpu.realtimePeriod)",
            version: "v2",
        });
    }
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        fs::write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        let mut max = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_owned()
        };
        if period != 0 {
            max.push_str(&format!(" {period}"));
        }
        fs::write(dir, "cpu.max", &max)?;
    }
    if let Some(b) = c.burst() {
        fs::write(dir, "cpu.max.burst", &b.to_string())?;
    }
    if let Some(i) = c.idle() {
        fs::write(dir, "cpu.idle", &i.to_string())?;
    }
    Ok(())
}

/// v1 blkio weight (10..=1000) as v2 `io.weight` (1..=10000), runc's
/// conversion.
pub(crate) fn blkio_weight_to_io(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// Writes `io.weight` (or `io.bfq.weight`) and `io.max`.
pub(crate) fn set_io(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // With BFQ the weight file takes blkio's scale as is.
    let bfq = fs::exists(dir, "io.bfq.weight");
    let weight = |w: u16| {
        if bfq {
            ("io.bfq.weight", u64::from(w))
        } else {
            ("io.weight", blkio_weight_to_io(w))
        }
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        let (file, v) = weight(w);
        fs::write(dir, file, &v.to_string())?;
    }
    if b.leaf_weight().is_some_and(|w| w != 0)
        || b.weight_device()
            .iter()
            .flatten()
            .any(|d| d.leaf_weight().is_some())
    {
        tracing::warn!("ignoring blkio leaf weights: cgroup v2 has none");
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let dev = super::device_number(d.major(), d.minor())?;
            let (file, v) = weight(w);
            fs::write(dir, file, &format!("{dev} {v}"))?;
        }
    }
    for (key, list) in [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ] {
        for t in list.iter().flatten() {
            let dev = super::device_number(t.major(), t.minor())?;
            // 0 removes a v1 throttle; "max" is v2's way to say that.
            let rate = if t.rate() == 0 {
                "max".to_owned()
            } else {
                t.rate().to_string()
            };
            fs::write(dir, "io.max", &format!("{dev} {key}={rate}"))?;
        }
    }
    Ok(())
}

/// Writes `hugetlb.<size>.max` (and `.rsvd.max` when the kernel has it).
pub(crate) fn set_hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for l in limits {
        super::check_page_size(l.page_size())?;
        let file = format!("hugetlb.{}.max", l.page_size());
        if !fs::exists(dir, &file) {
            return Err(super::unsupported_page_size(l.page_size()));
        }
        let value = limit(l.limit());
        fs::write(dir, &file, &value)?;
        let rsvd = format!("hugetlb.{}.rsvd.max", l.page_size());
        if fs::exists(dir, &rsvd) {
            fs::write(dir, &rsvd, &value)?;
        }
    }
    Ok(())
}

/// Writes `linux.resources.unified`: file name to value, line by line.
pub(crate) fn set_unified(dir: &Path, files: &HashMap<String, String>) -> Result<(), CgroupError> {
    let mut keys: Vec<&String> = files.keys().collect();
    keys.sort();
    for key in keys {
        let bad = |reason: &str| CgroupError::InvalidValue {
            what: "unified resource name",
            value: key.clone(),
            reason: reason.to_owned(),
        };
        let Some((controller, _)) = key.split_once('.') else {
            return Err(bad("expected CONTROLLER.PARAMETER"));
        };
        if key.contains('/') || key.contains('\0') || controller.is_empty() {
            return Err(bad("expected a file name of the form CONTROLLER.PARAMETER"));
        }
        if controller != "cgroup" && !has_controller(dir, controller) {
            return Err(CgroupError::ControllerMissing {
                controller: controller.to_owned(),
                path: dir.to_owned(),
                needed_for: "a unified resource",
            });
        }
        let value = &files[key];
        if value.is_empty() {
            fs::write(dir, key, value)?;
        }
        for line in value.lines() {
            fs::write(dir, key, line)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::super::mounts;
    use super::super::testutil::{self, Guard};
    use super::super::v1::tests::{device_probe, probe};
    use super::*;

    const ALL: &str = "cpuset cpu io memory hugetlb pids rdma";

    fn resources(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    /// A temporary directory laid out like a cgroup2 mount with the cgroup
    /// `c1` (plain files: each write replaces the content, so a test reads
    /// back the last write to a file).
    fn fake(controllers: &str) -> (tempfile::TempDir, V2Manager) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("cgroup.controllers"), controllers).unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        let leaf = root.join("c1");
        std::fs::create_dir(&leaf).unwrap();
        std::fs::write(leaf.join("cgroup.controllers"), controllers).unwrap();
        for f in [
            "cgroup.procs",
            "cgroup.subtree_control",
            "memory.max",
            "memory.low",
            "memory.high",
            "memory.swap.max",
            "memory.current",
            "cpu.weight",
            "cpu.max",
            "cpu.max.burst",
            "cpu.idle",
            "cpuset.cpus",
            "cpuset.mems",
            "pids.max",
            "io.weight",
            "io.max",
            "hugetlb.2MB.max",
            "hugetlb.2MB.rsvd.max",
            "hugetlb.1GB.max",
            "rdma.max",
        ] {
            std::fs::write(leaf.join(f), "").unwrap();
        }
        let m = V2Manager::new(root.to_owned(), "c1".into());
        (tmp, m)
    }

    #[test]
    fn conversions() {
        for (shares, weight) in [
            (0, 0),
            (1, 1),
            (2, 1),
            (1024, 39),
            (262_144, 10_000),
            (1 << 40, 10_000),
        ] {
            assert_eq!(shares_to_weight(shares), weight, "shares {shares}");
        }
        for (blkio, io) in [(1, 1), (10, 1), (500, 4950), (1000, 10_000)] {
            assert_eq!(blkio_weight_to_io(blkio), io, "blkio weight {blkio}");
        }
        // (OCI memory+swap, memory) -> memory.swap.max; -1 is "max".
        for (swap, mem, want) in [
            (0, 0, 0),
            (0, -1, -1),
            (-1, 100, -1),
            (0, 100, 0),
            (300, 100, 200),
            (100, 100, 0),
        ] {
            assert_eq!(
                swap_to_v2(swap, mem).unwrap(),
                want,
                "swap {swap} memory {mem}"
            );
        }
        for (swap, mem) in [(50, 100), (100, 0), (100, -1)] {
            assert!(swap_to_v2(swap, mem).is_err(), "swap {swap} memory {mem}");
        }
    }

    #[test]
    fn writes_v2_files() {
        let (_tmp, m) = fake(ALL);
        let d = m.dir();
        m.set(&resources(serde_json::json!({
            "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 0},
            "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}, {"pageSize": "1GB", "limit": -1}],
            "rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 1000}},
            "unified": {"memory.high": "50000000"},
        })))
        .unwrap();
        let read = |f| testutil::read(&d, f);
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("memory.swap.max"), (32 << 20).to_string());
        assert_eq!(read("memory.low"), "33554432");
        assert_eq!(read("memory.high"), "50000000");
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("cpu.max.burst"), "1000");
        assert_eq!(read("cpuset.cpus"), "0-1");
        assert_eq!(read("cpuset.mems"), "0");
        assert_eq!(read("pids.max"), "max");
        assert_eq!(read("io.weight"), "4950");
        assert_eq!(read("io.max"), "8:0 rbps=1048576");
        assert_eq!(read("hugetlb.2MB.max"), "4194304");
        assert_eq!(read("hugetlb.2MB.rsvd.max"), "4194304");
        assert_eq!(read("hugetlb.1GB.max"), "max");
        assert_eq!(read("rdma.max"), "mlx5_0 hca_handle=3 hca_object=1000");

        // Updates: only what is given is written.
        m.set(&resources(serde_json::json!({
            "memory": {"limit": -1},
            "cpu": {"period": 200000},
            "pids": {"limit": 20},
            "blockIO": {"throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}]},
        })))
        .unwrap();
        assert_eq!(read("memory.max"), "max");
        assert_eq!(read("memory.swap.max"), "max");
        assert_eq!(read("memory.low"), "33554432");
        assert_eq!(read("cpu.max"), "max 200000");
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("pids.max"), "20");
        assert_eq!(read("io.max"), "8:16 wiops=max");
        m.set(&resources(serde_json::json!({"cpu": {"quota": 20000}})))
            .unwrap();
        assert_eq!(read("cpu.max"), "20000");
        assert_eq!(m.memory_limit().unwrap(), None);
        std::fs::write(d.join("memory.max"), "1048576\n").unwrap();
        assert_eq!(m.memory_limit().unwrap(), Some(1 << 20));

        // With BFQ, blkio weights go to io.bfq.weight unchanged.
        std::fs::write(d.join("io.bfq.weight"), "").unwrap();
        m.set(&resources(serde_json::json!({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 200}]}})))
            .unwrap();
        assert_eq!(read("io.bfq.weight"), "8:0 200");
        assert_eq!(read("io.weight"), "4950", "untouched");

        // Nothing asked, nothing needed.
        m.set(&resources(
            serde_json::json!({"memory": {}, "cpu": {}, "blockIO": {}, "hugepageLimits": []}),
        ))
        .unwrap();
    }

    #[test]
    fn refuses_what_v2_cannot_do() {
        let (_tmp, m) = fake("cpu memory pids");
        let err = |json| m.set(&resources(json)).unwrap_err();
        let e = err(serde_json::json!({"blockIO": {"weight": 100}}));
        assert!(
            matches!(&e, CgroupError::ControllerMissing { controller, .. } if controller == "io"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("cgroup controller io is not available for"),
            "{e}"
        );
        let e = err(serde_json::json!({"cpu": {"realtimeRuntime": 1000}}));
        assert!(
            matches!(e, CgroupError::Unsupported { version: "v2", .. }),
            "{e}"
        );
        let e = err(serde_json::json!({"network": {"classID": 1}}));
        assert!(
            matches!(e, CgroupError::Unsupported { version: "v2", .. }),
            "{e}"
        );
        let e = err(serde_json::json!({"memory": {"limit": 100, "swap": 50}}));
        assert!(matches!(e, CgroupError::InvalidValue { .. }), "{e}");
        std::fs::write(m.dir().join("memory.current"), "4096\n").unwrap();
        let e = err(serde_json::json!({"memory": {"limit": 100, "checkBeforeUpdate": true}}));
        assert!(
            e.to_string().contains("below the current usage 4096"),
            "{e}"
        );
        m.set(&resources(
            serde_json::json!({"memory": {"limit": 8192, "checkBeforeUpdate": true}}),
        ))
        .unwrap();
        for key in ["../x.max", "nodot", ".max", "io/x.max"] {
            let e = err(serde_json::json!({"unified": {key: "1"}}));
            assert!(matches!(e, CgroupError::InvalidValue { .. }), "{key}: {e}");
        }
        let e = err(serde_json::json!({"unified": {"io.max": "8:0 rbps=1"}}));
        assert!(
            matches!(&e, CgroupError::ControllerMissing { controller, .. } if controller == "io"),
            "{e}"
        );
        let e = err(serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}));
        assert!(matches!(e, CgroupError::ControllerMissing { .. }), "{e}");
    }

    /// apply creates the path, enables the parent's controllers for it and
    /// removes what it created when the join fails.
    #[test]
    fn apply_on_fake_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory").unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "memory").unwrap();
        let m = V2Manager::new(root.to_owned(), "a/b".into());
        // Plain directories have no cgroup.procs: the join fails.
        let e = m.apply(4242).unwrap_err();
        assert!(matches!(e, CgroupError::Join { pid: 4242, .. }), "{e}");
        assert!(!root.join("a").exists());
        assert_eq!(testutil::read(root, "cgroup.subtree_control"), "+cpu");

        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/cgroup.controllers"), "cpu").unwrap();
        std::fs::write(root.join("a/cgroup.subtree_control"), "").unwrap();
        std::fs::write(root.join("a/b/cgroup.procs"), "").unwrap();
        m.apply(4242).unwrap();
        assert_eq!(testutil::read(&root.join("a/b"), "cgroup.procs"), "4242");
        assert_eq!(
            testutil::read(&root.join("a"), "cgroup.subtree_control"),
            "+cpu"
        );
    }

    /// Everything that does not need a particular controller, against the
    /// host's real cgroup2 mount (on a hybrid host, the unified hierarchy).
    #[test]
    fn live_on_this_hosts_cgroup2() {
        if !testutil::live() {
            return;
        }
        let Some(mount) = mounts::cgroup_mounts().unwrap().v2 else {
            crate::skip("live_on_this_hosts_cgroup2", "no cgroup2 mount");
            return;
        };
        let name = testutil::name();
        let m = V2Manager::new(mount.mount_point.clone(), name.clone().into());
        let dir = m.dir();
        let mut g = Guard::new(Box::new(m.clone()));
        let pid = g.spawn(&mut device_probe(4));
        g.mgr.apply(pid).unwrap();
        assert_eq!(g.mgr.pids().unwrap(), [pid]);
        assert_eq!(
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .unwrap()
                .lines()
                .find(|l| l.starts_with("0::"))
                .unwrap(),
            format!("0::/{name}")
        );

        // Device rules as an eBPF program (on a hybrid host the program on
        // the cgroup2 cgroup applies besides the v1 devices cgroup).
        let deny = serde_json::json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        ]});
        g.mgr.set(&resources(deny.clone())).unwrap();
        assert_eq!(probe(&mut g), "zero-denied null-ok");
        // Replacing the program: the old one is detached.
        g.mgr.set(&resources(deny)).unwrap();
        g.mgr
            .set(&resources(
                serde_json::json!({"devices": [{"allow": true, "type": "c", "access": "rw"}]}),
            ))
            .unwrap();
        let cgroup = std::fs::File::open(&dir).unwrap();
        assert_eq!(devices::query(&cgroup).unwrap().len(), 1);
        assert_eq!(probe(&mut g), "zero-ok null-ok");
        g.mgr
            .set(&resources(serde_json::json!({"devices": [{"allow": false, "type": "c", "major": 1, "minor": 5, "access": "r"}]})))
            .unwrap();
        assert_eq!(probe(&mut g), "zero-denied null-ok");

        if m.has_controller("hugetlb") && fs::exists(&dir, "hugetlb.2MB.max") {
            g.mgr
                .set(&resources(
                    serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}]}),
                ))
                .unwrap();
            assert_eq!(
                testutil::read(&dir, "hugetlb.2MB.max"),
                (2 << 20).to_string()
            );
        }

        // A nested cgroup, as a container with cgroupns might make.
        let nested = dir.join("inner");
        std::fs::create_dir(&nested).unwrap();
        let sleeper = g.spawn(Command::new("sleep").arg("30"));
        fs::join(&nested, sleeper).unwrap();
        let mut pids = g.mgr.pids().unwrap();
        pids.sort();
        assert_eq!(pids, [pid.min(sleeper), pid.max(sleeper)]);

        g.mgr.freeze().unwrap();
        assert!(testutil::read(&dir, "cgroup.events").contains("frozen 1"));
        assert!(testutil::read(&nested, "cgroup.events").contains("frozen 1"));
        g.mgr.thaw().unwrap();
        assert!(testutil::read(&dir, "cgroup.events").contains("frozen 0"));

        g.kill_children();
        g.mgr.destroy().unwrap();
        assert!(!dir.exists());
    }
}
