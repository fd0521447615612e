//! Where the cgroup hierarchies are mounted (`/proc/self/mountinfo`) and
//! which cgroup a process is in (`/proc/<pid>/cgroup`).

use std::path::{Path, PathBuf};

use super::CgroupError;

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Where it is mounted.
    pub(crate) mount_point: PathBuf,
    /// Which cgroup of the hierarchy appears at the mount point (`/` unless
    /// only a subtree is mounted, as in many containers).
    pub(crate) root: PathBuf,
    /// v1: the controllers bound to it, sorted, with named hierarchies as
    /// `name=systemd`. Empty for cgroup2.
    pub(crate) controllers: Vec<String>,
}

/// The cgroup mounts of this host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Mounts {
    /// v1 hierarchies, one mount each (named ones included).
    pub(crate) v1: Vec<Mount>,
    /// The cgroup2 mount, if any.
    pub(crate) v2: Option<Mount>,
}

impl Mounts {
    /// Whether any real controller (not just a named hierarchy) is on v1.
    pub(crate) fn has_v1_controllers(&self) -> bool {
        self.v1
            .iter()
            .any(|m| m.controllers.iter().any(|c| !c.starts_with("name=")))
    }

    /// `"v1"`, `"v2"`, `"hybrid"` or `"none"`.
    pub(crate) fn mode(&self) -> &'static str {
        match (self.has_v1_controllers(), self.v2.is_some()) {
            (true, true) => "hybrid",
            (true, false) => "v1",
            (false, true) => "v2",
            (false, false) => "none",
        }
    }
}

/// Reads this process's mount table.
///
/// Read once per process: hosts do not remount their cgroup hierarchies
/// under a running engine, and a container start would otherwise parse
/// mountinfo several times.
pub(crate) fn cgroup_mounts() -> Result<Mounts, CgroupError> {
    static CACHE: std::sync::OnceLock<Mounts> = std::sync::OnceLock::new();
    if let Some(m) = CACHE.get() {
        return Ok(m.clone());
    }
    let m = read_cgroup_mounts()?;
    Ok(CACHE.get_or_init(|| m).clone())
}

fn read_cgroup_mounts() -> Result<Mounts, CgroupError> {
    let info = read("/proc/self/mountinfo")?;
    // Controller names the kernel knows, to tell them from mount options.
    let known: Vec<String> = match std::fs::read_to_string("/proc/cgroups") {
        Ok(t) => t
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect(),
        Err(_) => KNOWN_CONTROLLERS.iter().map(|s| (*s).to_owned()).collect(),
    };
    Ok(parse_mountinfo(&info, &known))
}

/// v1 controllers, for kernels without `/proc/cgroups`.
const KNOWN_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// Parses mountinfo text; `known` lists controller names (from
/// `/proc/cgroups`).
pub(crate) fn parse_mountinfo(text: &str, known: &[String]) -> Mounts {
    let mut mounts = Mounts::default();
    for line in text.lines() {
        // id parent major:minor root mount_point options [optional...] - fstype source super_options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.is_empty() {
            continue;
        }
        let root = PathBuf::from(unescape(left[3]));
        let mount_point = PathBuf::from(unescape(left[4]));
        match right[0] {
            "cgroup2" => {
                let m = Mount {
                    mount_point,
                    root,
                    controllers: Vec::new(),
                };
                // Prefer the conventional places, then a mount of the whole
                // hierarchy, then the first.
                let better = match &mounts.v2 {
                    None => true,
                    Some(old) => rank(&m) < rank(old),
                };
                if better {
                    mounts.v2 = Some(m);
                }
            }
            "cgroup" => {
                let opts = right.get(2).copied().unwrap_or("");
                let mut controllers: Vec<String> = opts
                    .split(',')
                    .filter(|o| o.starts_with("name=") || known.iter().any(|k| k == o))
                    .map(str::to_owned)
                    .collect();
                if controllers.is_empty() {
                    continue;
                }
                controllers.sort();
                let m = Mount {
                    mount_point,
                    root,
                    controllers,
                };
                // The same hierarchy may be mounted twice; keep the mount of
                // its root if there is one, else the first.
                match mounts
                    .v1
                    .iter_mut()
                    .find(|o| o.controllers == m.controllers)
                {
                    Some(old) => {
                        if old.root != Path::new("/") && m.root == Path::new("/") {
                            *old = m;
                        }
                    }
                    None => mounts.v1.push(m),
                }
            }
            _ => {}
        }
    }
    mounts
}

/// Lower is better: which cgroup2 mount to use.
fn rank(m: &Mount) -> u8 {
    let whole = u8::from(m.root != Path::new("/"));
    if m.mount_point == Path::new("/sys/fs/cgroup") {
        whole
    } else if m.mount_point == Path::new("/sys/fs/cgroup/unified") {
        2 + whole
    } else {
        4 + whole
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A process's cgroups, from `/proc/<pid>/cgroup`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroups {
    /// v1: (sorted controllers, path) per hierarchy.
    pub(crate) v1: Vec<(Vec<String>, String)>,
    /// The `0::` line's path.
    pub(crate) v2: Option<String>,
}

impl ProcCgroups {
    /// The path in the v1 hierarchy with exactly these (sorted) controllers.
    pub(crate) fn v1_path(&self, controllers: &[String]) -> Option<&str> {
        self.v1
            .iter()
            .find(|(c, _)| c == controllers)
            .map(|(_, p)| p.as_str())
    }
}

/// Reads `/proc/<pid>/cgroup` (or `/proc/self/cgroup`).
pub(crate) fn proc_cgroups(path: &Path) -> Result<ProcCgroups, CgroupError> {
    Ok(parse_proc_cgroups(&read(path)?))
}

/// Parses `/proc/<pid>/cgroup` text.
pub(crate) fn parse_proc_cgroups(text: &str) -> ProcCgroups {
    let mut out = ProcCgroups::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            out.v2 = Some(path.to_owned());
        } else {
            let mut c: Vec<String> = ctrls.split(',').map(str::to_owned).collect();
            c.sort();
            out.v1.push((c, path.to_owned()));
        }
    }
    out
}

fn read(path: impl AsRef<Path>) -> Result<String, CgroupError> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        KNOWN_CONTROLLERS.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn hybrid_mountinfo() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
        let m = parse_mountinfo(text, &known());
        assert_eq!(m.mode(), "hybrid");
        assert_eq!(m.v1.len(), 4);
        assert_eq!(m.v1[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(m.v1[1].controllers, ["cpuset"]);
        assert_eq!(m.v1[3].controllers, ["name=systemd"]);
        assert_eq!(
            m.v2.unwrap().mount_point,
            Path::new("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn v2_and_subtree_mounts() {
        let text = "\
25 23 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate
26 23 0:22 /sub /mnt/my\\040cg rw - cgroup2 cgroup2 rw
27 23 0:40 / /legacy/systemd rw - cgroup cgroup rw,name=systemd
";
        let m = parse_mountinfo(text, &known());
        assert_eq!(m.mode(), "v2");
        assert!(!m.has_v1_controllers());
        assert_eq!(m.v2.unwrap().mount_point, Path::new("/sys/fs/cgroup"));
        // The subtree mount alone is used, with its root and unescaped name.
        let m = parse_mountinfo(text.lines().nth(1).unwrap(), &known());
        let v2 = m.v2.unwrap();
        assert_eq!(v2.mount_point, Path::new("/mnt/my cg"));
        assert_eq!(v2.root, Path::new("/sub"));
        assert_eq!(parse_mountinfo("", &known()).mode(), "none");
    }

    #[test]
    fn proc_cgroup_lines() {
        let p = parse_proc_cgroups("4:memory:/a/b\n1:cpuacct,cpu:/\n9:name=systemd:/x\n0::/c\n");
        assert_eq!(p.v2.as_deref(), Some("/c"));
        assert_eq!(p.v1_path(&["memory".into()]), Some("/a/b"));
        assert_eq!(p.v1_path(&["cpu".into(), "cpuacct".into()]), Some("/"));
        assert_eq!(p.v1_path(&["name=systemd".into()]), Some("/x"));
        assert_eq!(p.v1_path(&["pids".into()]), None);
    }
}
