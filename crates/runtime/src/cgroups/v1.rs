//! cgroup v1, including hybrid hosts.
//!
//! Every mounted v1 hierarchy (named ones such as `name=systemd` too, as
//! runc) gets a directory for the container, and the process joins all of
//! them. On a hybrid host the process also joins the cgroup2 hierarchy (best
//! effort), and controllers that only live there (hugetlb on some hosts) are
//! set through it with the [`super::v2`] code.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxResources,
};

use super::mounts::{Mount, Mounts, ProcCgroups};
use super::v2::{self, V2Manager};
use super::{devices, fs, CgroupError, CgroupManager, CgroupPath};

/// One v1 hierarchy and the container's directory in it.
#[derive(Debug, Clone)]
struct Hierarchy {
    /// Sorted controllers (`name=systemd` for a named hierarchy).
    controllers: Vec<String>,
    /// Where the hierarchy is mounted.
    mount_point: PathBuf,
    /// Which cgroup appears at the mount point.
    mount_root: PathBuf,
    /// The container's cgroup below the mount point.
    rel: PathBuf,
}

impl Hierarchy {
    fn dir(&self) -> PathBuf {
        self.mount_point.join(&self.rel)
    }
}

/// Where a controller's files are.
enum Target {
    V1(PathBuf),
    V2(PathBuf),
}

/// The cgroup v1 (and hybrid) manager.
#[derive(Debug)]
pub struct V1Manager {
    hierarchies: Vec<Hierarchy>,
    /// The cgroup2 hierarchy of a hybrid host.
    unified: Option<V2Manager>,
}

impl V1Manager {
    /// The manager for `path` on these mounts; `own` is the caller's
    /// `/proc/self/cgroup`, the base of relative paths.
    pub(crate) fn new(mounts: &Mounts, own: &ProcCgroups, path: &CgroupPath) -> V1Manager {
        let hierarchies = mounts
            .v1
            .iter()
            .map(|m: &Mount| Hierarchy {
                controllers: m.controllers.clone(),
                mount_point: m.mount_point.clone(),
                mount_root: m.root.clone(),
                rel: path.under(m, own.v1_path(&m.controllers)),
            })
            .collect();
        let unified = mounts
            .v2
            .as_ref()
            .map(|m| V2Manager::new(m.mount_point.clone(), path.under(m, own.v2.as_deref())));
        V1Manager {
            hierarchies,
            unified,
        }
    }

    /// The container's directory in the v1 hierarchy holding `controller`.
    fn v1_dir(&self, controller: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(Hierarchy::dir)
    }

    /// Where to set `controller`: its v1 hierarchy, else the cgroup2
    /// hierarchy if it offers the controller there.
    fn target(
        &self,
        controller: &'static str,
        needed_for: &'static str,
    ) -> Result<Target, CgroupError> {
        if let Some(dir) = self.v1_dir(controller) {
            return Ok(Target::V1(dir));
        }
        if let Some(u) = &self.unified {
            if u.has_controller(controller) {
                return Ok(Target::V2(u.dir()));
            }
        }
        let path = match (&self.unified, self.hierarchies.first()) {
            (Some(u), _) => u.dir(),
            (None, Some(h)) => h.mount_point.parent().unwrap_or(&h.mount_point).to_owned(),
            (None, None) => PathBuf::from("/sys/fs/cgroup"),
        };
        Err(CgroupError::ControllerMissing {
            controller: controller.to_owned(),
            path,
            needed_for,
        })
    }

    /// Creates the container's directory in every hierarchy (cpuset gets
    /// its parent's cpus and mems, without which no task may join);
    /// returns what each made. On error, nothing made is left.
    fn create_all(&self) -> Result<Vec<Vec<PathBuf>>, CgroupError> {
        let mut created: Vec<Vec<PathBuf>> = Vec::new();
        for h in &self.hierarchies {
            let cpuset = h.controllers.iter().any(|c| c == "cpuset");
            let res = fs::create(&h.mount_point, &h.rel, |parent, dir| {
                if cpuset {
                    copy_cpuset(parent, dir)
                } else {
                    Ok(())
                }
            });
            match res {
                Ok(c) => created.push(c),
                Err(e) => {
                    for c in created.iter().rev() {
                        fs::remove_created(c);
                    }
                    return Err(e);
                }
            }
        }
        Ok(created)
    }

    /// Moves `pid` back to where it was before [`CgroupManager::apply`], in
    /// the first `n` hierarchies.
    fn move_back(&self, pid: i32, before: &ProcCgroups, n: usize) {
        for h in &self.hierarchies[..n] {
            let Some(path) = before.v1_path(&h.controllers) else {
                continue;
            };
            let path = Path::new(path);
            let rel = path.strip_prefix(&h.mount_root).unwrap_or(path);
            let rel = rel.strip_prefix("/").unwrap_or(rel);
            if let Err(e) = fs::join(&h.mount_point.join(rel), pid) {
                tracing::debug!(
                    error = &e as &dyn std::error::Error,
                    "moving back on rollback"
                );
            }
        }
    }
}

impl CgroupManager for V1Manager {
    fn container_dirs(&self) -> Vec<(String, PathBuf)> {
        let mut out: Vec<(String, PathBuf)> = self
            .hierarchies
            .iter()
            .filter_map(|h| {
                let name = h.mount_point.file_name()?.to_string_lossy().into_owned();
                Some((name, h.dir()))
            })
            .collect();
        if let Some(u) = &self.unified {
            out.push(("unified".to_string(), u.dir()));
        }
        out
    }

    fn prepare_self_join(&self) -> Result<Option<super::SelfJoin>, CgroupError> {
        let created = self.create_all()?;
        let rollback = |created: &[Vec<PathBuf>]| {
            for c in created.iter().rev() {
                fs::remove_created(c);
            }
        };
        let mut join = super::SelfJoin::default();
        for h in &self.hierarchies {
            let tasks = h.dir().join("tasks");
            match rustix::fs::open(
                &tasks,
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                Ok(fd) => join.tasks.push(fd),
                Err(e) => {
                    rollback(&created);
                    return Err(CgroupError::Read {
                        path: tasks,
                        source: e.into(),
                    });
                }
            }
        }
        if let Some(u) = &self.unified {
            // Best effort, as in `apply`: the cgroup2 side of a hybrid host.
            match u.create().and_then(|_| super::v2::open_dir(&u.dir())) {
                Ok(fd) => join.v2_dir = Some(fd),
                Err(e) => tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "not joining the cgroup2 hierarchy of this hybrid host"
                ),
            }
        }
        Ok(Some(join))
    }

    fn apply(&self, pid: i32) -> Result<(), CgroupError> {
        let before = super::mounts::proc_cgroups(&PathBuf::from(format!("/proc/{pid}/cgroup")))
            .unwrap_or_default();
        let rollback = |created: &[Vec<PathBuf>]| {
            for c in created.iter().rev() {
                fs::remove_created(c);
            }
        };
        let created = self.create_all()?;
        for (i, h) in self.hierarchies.iter().enumerate() {
            if let Err(e) = fs::join(&h.dir(), pid) {
                self.move_back(pid, &before, i);
                rollback(&created);
                return Err(e);
            }
        }
        if let Some(u) = &self.unified {
            if let Err(e) = u.apply(pid) {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "not joining the cgroup2 hierarchy of this hybrid host"
                );
            }
        }
        Ok(())
    }

    fn set(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(p) = r.pids() {
            let (Target::V1(d) | Target::V2(d)) = self.target("pids", "the pids limit")?;
            super::set_pids(&d, p)?;
        }
        if let Some(m) = r.memory() {
            if super::memory_requested(m) {
                match self.target("memory", "memory limits")? {
                    Target::V1(d) => set_memory(&d, m)?,
                    Target::V2(d) => v2::set_memory(&d, m)?,
                }
            }
        }
        if let Some(c) = r.cpu() {
            if super::cpu_requested(c) {
                match self.target("cpu", "cpu limits")? {
                    Target::V1(d) => set_cpu(&d, c)?,
                    Target::V2(d) => v2::set_cpu(&d, c)?,
                }
            }
            if super::cpuset_requested(c) {
                let (Target::V1(d) | Target::V2(d)) = self.target("cpuset", "cpus and mems")?;
                super::set_cpuset(&d, c.cpus().as_ref(), c.mems().as_ref())?;
            }
        }
        if let Some(b) = r.block_io() {
            if super::blkio_requested(b) {
                if let Some(d) = self.v1_dir("blkio") {
                    set_blkio(&d, b)?;
                } else {
                    match self.target("io", "block I/O limits")? {
                        Target::V1(d) | Target::V2(d) => v2::set_io(&d, b)?,
                    }
                }
            }
        }
        if let Some(h) = r.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
            match self.target("hugetlb", "hugepage limits")? {
                Target::V1(d) => set_hugetlb(&d, h)?,
                Target::V2(d) => v2::set_hugetlb(&d, h)?,
            }
        }
        if super::rdma_requested(r) {
            let (Target::V1(d) | Target::V2(d)) = self.target("rdma", "rdma limits")?;
            super::set_rdma(&d, r.rdma().as_ref().expect("requested"))?;
        }
        if let Some(n) = r.network() {
            set_network(self, n)?;
        }
        if let Some(rules) = r.devices().as_ref().filter(|d| !d.is_empty()) {
            match (self.v1_dir("devices"), &self.unified) {
                (Some(d), _) => devices::set_v1(&d, rules)?,
                (None, Some(u)) => devices::set_v2(&u.dir(), rules)?,
                (None, None) => {
                    return Err(CgroupError::ControllerMissing {
                        controller: "devices".into(),
                        path: PathBuf::from("/sys/fs/cgroup"),
                        needed_for: "device rules",
                    })
                }
            }
        }
        if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            match &self.unified {
                Some(m) => v2::set_unified(&m.dir(), u)?,
                None => {
                    return Err(CgroupError::Unsupported {
                        what: "linux.resources.unified",
                        version: "v1",
                    })
                }
            }
        }
        Ok(())
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        for c in ["pids", "freezer", "memory", "cpu", "devices"] {
            if let Some(d) = self.v1_dir(c) {
                return fs::procs_recursive(&d);
            }
        }
        match (self.hierarchies.first(), &self.unified) {
            (Some(h), _) => fs::procs_recursive(&h.dir()),
            (None, Some(u)) => u.pids(),
            (None, None) => Ok(Vec::new()),
        }
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        match (self.v1_dir("freezer"), &self.unified) {
            (Some(d), _) => freeze(&d),
            (None, Some(u)) => u.freeze(),
            (None, None) => Err(self.no_freezer()),
        }
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        match (self.v1_dir("freezer"), &self.unified) {
            (Some(d), _) => thaw(&d),
            (None, Some(u)) => u.thaw(),
            (None, None) => Err(self.no_freezer()),
        }
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for h in &self.hierarchies {
            if let Err(e) = fs::remove_tree(&h.dir()) {
                first.get_or_insert(e);
            }
        }
        if let Some(u) = &self.unified {
            if let Err(e) = u.destroy() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn oom_kills(&self) -> u64 {
        match self.target("memory", "reading the OOM kill count") {
            Ok(Target::V1(d)) => super::oom_kill_count(&d.join("memory.oom_control")),
            Ok(Target::V2(d)) => super::oom_kill_count(&d.join("memory.events")),
            Err(_) => 0,
        }
    }

    fn memory_limit(&self) -> Result<Option<i64>, CgroupError> {
        match self.target("memory", "reading the memory limit")? {
            Target::V1(d) => {
                let v = fs::read_i64(&d, "memory.limit_in_bytes")?;
                // "Unlimited" is the page counter's maximum, rounded to pages.
                Ok((v < UNLIMITED).then_some(v))
            }
            Target::V2(d) => v2::read_memory_max(&d),
        }
    }
}

/// Values at or above this in `memory.limit_in_bytes` mean no limit
/// (`PAGE_COUNTER_MAX` in bytes, less than a page rounding).
const UNLIMITED: i64 = 0x7FFF_FFFF_FFF0_0000;

impl V1Manager {
    fn no_freezer(&self) -> CgroupError {
        CgroupError::ControllerMissing {
            controller: "freezer".into(),
            path: PathBuf::from("/sys/fs/cgroup"),
            needed_for: "pause and resume",
        }
    }
}

/// A new cpuset cgroup has empty `cpuset.cpus` and `cpuset.mems`, and no
/// task can join it until they are set: copy them from the parent.
fn copy_cpuset(parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if fs::read(dir, file)?.trim().is_empty() {
            let value = fs::read(parent, file)?;
            fs::write(dir, file, value.trim())?;
        }
    }
    Ok(())
}

/// Writes the memory settings (as runc's v1 memory controller).
pub(crate) fn set_memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    // 0 means unset, -1 unlimited.
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    let has_memsw = fs::exists(dir, "memory.memsw.limit_in_bytes");
    if limit == -1 && swap == 0 && has_memsw {
        // Unlimited memory means unlimited memory+swap too.
        swap = -1;
    }
    if swap != 0 && !has_memsw {
        tracing::warn!(
            swap,
            "swap accounting is not enabled on this host; ignoring the swap limit"
        );
        swap = 0;
    }
    if limit > 0 && swap > 0 && swap < limit {
        return Err(CgroupError::InvalidValue {
            what: "memory swap limit",
            value: swap.to_string(),
            reason: format!("memory+swap must be at least the memory limit {limit}"),
        });
    }
    if m.check_before_update() == Some(true) && limit > 0 {
        let usage = fs::read_i64(dir, "memory.usage_in_bytes")?;
        if limit < usage {
            return Err(CgroupError::InvalidValue {
                what: "memory limit",
                value: limit.to_string(),
                reason: format!("below the current usage {usage}"),
            });
        }
    }
    let (mem_file, swap_file) = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes");
    if limit != 0 && swap != 0 {
        // memory.memsw.limit_in_bytes may never be below
        // memory.limit_in_bytes: order the writes so that holds throughout.
        let current = fs::read_i64(dir, mem_file)?;
        if swap == -1 || current < swap {
            fs::write(dir, swap_file, &swap.to_string())?;
            fs::write(dir, mem_file, &limit.to_string())?;
        } else {
            fs::write(dir, mem_file, &limit.to_string())?;
            fs::write(dir, swap_file, &swap.to_string())?;
        }
    } else if limit != 0 {
        fs::write(dir, mem_file, &limit.to_string())?;
    } else if swap != 0 {
        fs::write(dir, swap_file, &swap.to_string())?;
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        fs::write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    if let Some(t) = m.kernel_tcp().filter(|t| *t != 0) {
        if fs::exists(dir, "memory.kmem.tcp.limit_in_bytes") {
            fs::write(dir, "memory.kmem.tcp.limit_in_bytes", &t.to_string())?;
        } else {
            tracing::warn!(
                kernel_tcp = t,
                "ignoring the kernel TCP memory limit: not supported by this kernel"
            );
        }
    }
    if let Some(s) = super::swappiness(m)? {
        fs::write(dir, "memory.swappiness", &s.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        fs::write(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

/// Writes the cpu controller settings (shares, CFS quota, realtime).
pub(crate) fn set_cpu(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(shares) = c.shares().filter(|s| *s != 0) {
        fs::write(dir, "cpu.shares", &shares.to_string())?;
        // The kernel clamps out-of-range values silently; say so instead.
        let got = fs::read_i64(dir, "cpu.shares")?;
        if u64::try_from(got).ok() != Some(shares) {
            return Err(CgroupError::InvalidValue {
                what: "cpu shares",
                value: shares.to_string(),
                reason: format!("the kernel accepts 2 to 262144 (it set {got})"),
            });
        }
    }
    let quota = c.quota().unwrap_or(0);
    let mut period = c.period().unwrap_or(0);
    if period != 0 {
        match fs::write(dir, "cpu.cfs_period_us", &period.to_string()) {
            Ok(()) => period = 0,
            // A shorter period can exceed the parent's quota until the new
            // quota is in: retry after writing it.
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota != 0 => {}
            Err(e) => return Err(e),
        }
    }
    if quota != 0 {
        fs::write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
        if period != 0 {
            fs::write(dir, "cpu.cfs_period_us", &period.to_string())?;
        }
    }
    if let Some(b) = c.burst() {
        fs::write(dir, "cpu.cfs_burst_us", &b.to_string())?;
    }
    if let Some(i) = c.idle() {
        fs::write(dir, "cpu.idle", &i.to_string())?;
    }
    if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
        fs::write(dir, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
        fs::write(dir, "cpu.rt_runtime_us", &r.to_string())?;
    }
    Ok(())
}

/// Writes the blkio settings. Kernels without CFQ have BFQ's files
/// (`blkio.bfq.weight`); the weights go wherever the host has them.
pub(crate) fn set_blkio(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let (weight, weight_device) = if fs::exists(dir, "blkio.weight") {
        ("blkio.weight", "blkio.weight_device")
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        fs::write(dir, weight, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        leaf_weight(dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for d in b.weight_device().iter().flatten() {
        let dev = super::device_number(d.major(), d.minor())?;
        if let Some(w) = d.weight() {
            fs::write(dir, weight_device, &format!("{dev} {w}"))?;
        }
        if let Some(w) = d.leaf_weight() {
            leaf_weight(dir, "blkio.leaf_weight_device", &format!("{dev} {w}"))?;
        }
    }
    for (file, list) in [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ] {
        for t in list.iter().flatten() {
            let dev = super::device_number(t.major(), t.minor())?;
            fs::write(dir, file, &format!("{dev} {}", t.rate()))?;
        }
    }
    Ok(())
}

/// Leaf weights exist only with CFQ (gone since Linux 5.0).
fn leaf_weight(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    if fs::exists(dir, file) {
        fs::write(dir, file, value)
    } else {
        tracing::warn!(
            file,
            value,
            "ignoring the blkio leaf weight: not supported by this kernel"
        );
        Ok(())
    }
}

/// Writes `hugetlb.<size>.limit_in_bytes` (and the reservation limit when
/// the kernel has it).
pub(crate) fn set_hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for l in limits {
        super::check_page_size(l.page_size())?;
        let file = format!("hugetlb.{}.limit_in_bytes", l.page_size());
        if !fs::exists(dir, &file) {
            return Err(super::unsupported_page_size(l.page_size()));
        }
        let value = if l.limit() < 0 {
            "-1".to_owned()
        } else {
            l.limit().to_string()
        };
        fs::write(dir, &file, &value)?;
        let rsvd = format!("hugetlb.{}.rsvd.limit_in_bytes", l.page_size());
        if fs::exists(dir, &rsvd) {
            fs::write(dir, &rsvd, &value)?;
        }
    }
    Ok(())
}

/// Writes `net_cls.classid` and `net_prio.ifpriomap` (v1 only).
fn set_network(m: &V1Manager, n: &LinuxNetwork) -> Result<(), CgroupError> {
    if let Some(id) = n.class_id() {
        match m.target("net_cls", "the network class id")? {
            Target::V1(d) => fs::write(&d, "net_cls.classid", &id.to_string())?,
            Target::V2(_) => unreachable!("net_cls is v1 only"),
        }
    }
    if let Some(prios) = n.priorities().as_ref().filter(|p| !p.is_empty()) {
        match m.target("net_prio", "network interface priorities")? {
            Target::V1(d) => {
                for p in prios {
                    if p.name().is_empty() || p.name().contains(char::is_whitespace) {
                        return Err(CgroupError::InvalidValue {
                            what: "network interface name",
                            value: p.name().clone(),
                            reason: "empty or contains white space".into(),
                        });
                    }
                    fs::write(
                        &d,
                        "net_prio.ifpriomap",
                        &format!("{} {}", p.name(), p.priority()),
                    )?;
                }
            }
            Target::V2(_) => unreachable!("net_prio is v1 only"),
        }
    }
    Ok(())
}

/// Freezes the v1 cgroup `dir`, as runc: re-request FROZEN until the kernel
/// reports it, thawing now and then so forking processes cannot starve it.
pub(crate) fn freeze(dir: &Path) -> Result<(), CgroupError> {
    let done = fs::poll(fs::FREEZE_TIMEOUT, |round| {
        if round % 50 == 49 {
            fs::write(dir, "freezer.state", "THAWED")?;
        }
        fs::write(dir, "freezer.state", "FROZEN")?;
        Ok(fs::read(dir, "freezer.state")? == "FROZEN")
    })?;
    if done {
        return Ok(());
    }
    let _ = fs::write(dir, "freezer.state", "THAWED");
    Err(CgroupError::FreezeTimeout {
        path: dir.to_owned(),
        state: "frozen",
    })
}

/// Thaws the v1 cgroup `dir`.
pub(crate) fn thaw(dir: &Path) -> Result<(), CgroupError> {
    fs::write(dir, "freezer.state", "THAWED")?;
    let done = fs::poll(fs::FREEZE_TIMEOUT, |_| {
        Ok(fs::read(dir, "freezer.state")? == "THAWED")
    })?;
    if done {
        Ok(())
    } else {
        Err(CgroupError::FreezeTimeout {
            path: dir.to_owned(),
            state: "thawed",
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    use super::super::testutil::{self, Guard};
    use super::super::{host_mode, manager, mounts};
    use super::*;

    fn resources(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    /// A shell that, for each line on stdin, reports whether it may read
    /// /dev/zero and write /dev/null.
    pub(crate) fn device_probe(rounds: usize) -> Command {
        // A literal list: the shell forks nothing while it waits.
        let rounds: Vec<String> = (1..=rounds).map(|i| i.to_string()).collect();
        let rounds = rounds.join(" ");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "for i in {rounds}; do read x || exit; \
                 if head -c1 /dev/zero >/dev/null 2>&1; then z=zero-ok; else z=zero-denied; fi; \
                 if echo >/dev/null 2>/dev/null; then n=null-ok; else n=null-denied; fi; \
                 echo $z $n; done"
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        cmd
    }

    /// Lets the probe run one round and returns its answer.
    pub(crate) fn probe(g: &mut Guard) -> String {
        let child = g.children.last_mut().unwrap();
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim().to_owned()
    }

    #[test]
    fn v1_controllers_on_this_host() {
        if !testutil::live() || host_mode() == "v2" {
            return;
        }
        let name = testutil::name();
        let mut g = Guard::new(manager(Some(Path::new(&name)), "unused").unwrap());
        let pid = g.spawn(&mut device_probe(2));
        g.mgr.apply(pid).unwrap();
        let dirs = testutil::cgroup_dirs(pid);
        let dir = |c| testutil::dir_of(&dirs, c);

        // The new cpuset got its parent's cpus and mems (or the join fails).
        let cpuset = dir("cpuset");
        assert!(cpuset.ends_with(&name));
        let parent = cpuset.parent().unwrap();
        assert_eq!(
            testutil::read(&cpuset, "cpuset.cpus"),
            testutil::read(parent, "cpuset.cpus")
        );
        assert_eq!(
            testutil::read(&cpuset, "cpuset.mems"),
            testutil::read(parent, "cpuset.mems")
        );

        let memsw = fs::exists(&dir("memory"), "memory.memsw.limit_in_bytes");
        // hugetlb lives on v1 or, on some hybrid hosts, only on cgroup2.
        let hugetlb = if dirs.iter().any(|(c, _)| c.iter().any(|c| c == "hugetlb")) {
            Some((dir("hugetlb"), "hugetlb.2MB.limit_in_bytes"))
        } else {
            dirs.iter()
                .find(|(c, d)| c.is_empty() && d.ends_with(&name))
                .filter(|(_, d)| {
                    fs::read(d, "cgroup.controllers").is_ok_and(|c| c.contains("hugetlb"))
                })
                .map(|(_, d)| (d.clone(), "hugetlb.2MB.max"))
        };
        g.mgr
            .set(&resources(serde_json::json!({
                "devices": [
                    {"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
                ],
                "cpu": {"shares": 512, "cpus": "0", "mems": "0"},
                "memory": {"limit": 32 << 20, "swap": 64 << 20, "reservation": 16 << 20},
            })))
            .unwrap();
        assert_eq!(testutil::read(&dir("devices"), "devices.list"), "c 1:3 rwm");
        assert_eq!(testutil::read(&dir("cpu"), "cpu.shares"), "512");
        assert_eq!(testutil::read(&cpuset, "cpuset.cpus"), "0");
        let mem = dir("memory");
        assert_eq!(
            testutil::read(&mem, "memory.limit_in_bytes"),
            (32 << 20).to_string()
        );
        assert_eq!(
            testutil::read(&mem, "memory.soft_limit_in_bytes"),
            (16 << 20).to_string()
        );
        if memsw {
            assert_eq!(
                testutil::read(&mem, "memory.memsw.limit_in_bytes"),
                (64 << 20).to_string()
            );
        }
        assert_eq!(probe(&mut g), "zero-denied null-ok");

        // Raising and lowering memory with swap needs the writes in the
        // right order (the kernel refuses memsw below memory).
        for (limit, swap) in [(128 << 20, 256 << 20), (16 << 20, 16 << 20), (32 << 20, -1)] {
            g.mgr
                .set(&resources(
                    serde_json::json!({"memory": {"limit": limit, "swap": swap}}),
                ))
                .unwrap();
            assert_eq!(g.mgr.memory_limit().unwrap(), Some(limit));
            if memsw && swap > 0 {
                assert_eq!(
                    testutil::read(&mem, "memory.memsw.limit_in_bytes"),
                    swap.to_string()
                );
            }
        }
        g.mgr
            .set(&resources(serde_json::json!({"memory": {"limit": -1}})))
            .unwrap();
        assert_eq!(g.mgr.memory_limit().unwrap(), None);

        // Allowing everything again, in the same cgroup.
        g.mgr
            .set(&resources(
                serde_json::json!({"devices": [{"allow": true, "access": "rwm"}]}),
            ))
            .unwrap();
        assert_eq!(testutil::read(&dir("devices"), "devices.list"), "a *:* rwm");
        assert_eq!(probe(&mut g), "zero-ok null-ok");

        // The kernel would clamp 1 to 2 silently.
        let e = g
            .mgr
            .set(&resources(serde_json::json!({"cpu": {"shares": 1}})))
            .unwrap_err();
        assert!(
            matches!(
                e,
                CgroupError::InvalidValue {
                    what: "cpu shares",
                    ..
                }
            ),
            "{e}"
        );
        let e = g
            .mgr
            .set(&resources(
                serde_json::json!({"memory": {"limit": 64 << 20, "swap": 32 << 20}}),
            ))
            .unwrap_err();
        assert!(matches!(e, CgroupError::InvalidValue { .. }), "{e}");

        if let Some((d, file)) = hugetlb.filter(|(d, f)| fs::exists(d, f)) {
            g.mgr
                .set(&resources(
                    serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]}),
                ))
                .unwrap();
            assert_eq!(testutil::read(&d, file), (4 << 20).to_string());
            let e = g
                .mgr
                .set(&resources(
                    serde_json::json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}),
                ))
                .unwrap_err();
            assert!(e.to_string().contains("no such hugepage size"), "{e}");
        } else {
            crate::skip(
                "the v1 hugetlb limits",
                "no 2MB hugetlb controller on this host",
            );
        }
        // A controller this host lacks is an error naming it.
        let m = mounts::cgroup_mounts().unwrap();
        if !m
            .v1
            .iter()
            .any(|m| m.controllers.iter().any(|c| c == "net_cls"))
        {
            let e = g
                .mgr
                .set(&resources(serde_json::json!({"network": {"classID": 7}})))
                .unwrap_err();
            assert!(
                matches!(&e, CgroupError::ControllerMissing { controller, .. } if controller == "net_cls"),
                "{e}"
            );
        }
    }

    /// The blkio writes against plain files laid out like both kinds of v1
    /// blkio directory (CFQ's `blkio.weight`, BFQ's `blkio.bfq.weight`).
    #[test]
    fn blkio_files() {
        let b: LinuxBlockIo = serde_json::from_value(serde_json::json!({
            "weight": 500,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 300}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
        }))
        .unwrap();
        for (weight, device) in [
            ("blkio.weight", "blkio.weight_device"),
            ("blkio.bfq.weight", "blkio.bfq.weight_device"),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let d = tmp.path();
            for f in [
                weight,
                device,
                "blkio.throttle.read_bps_device",
                "blkio.throttle.write_bps_device",
                "blkio.throttle.read_iops_device",
                "blkio.throttle.write_iops_device",
            ] {
                std::fs::write(d.join(f), "").unwrap();
            }
            set_blkio(d, &b).unwrap();
            assert_eq!(testutil::read(d, weight), "500");
            assert_eq!(testutil::read(d, device), "8:0 300");
            assert_eq!(
                testutil::read(d, "blkio.throttle.read_bps_device"),
                "8:0 1048576"
            );
            assert_eq!(
                testutil::read(d, "blkio.throttle.write_iops_device"),
                "8:16 100"
            );
            assert_eq!(testutil::read(d, "blkio.throttle.write_bps_device"), "");
        }
    }
}
