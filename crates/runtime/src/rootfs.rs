//! Root filesystem setup inside the container's mount namespace: mounts
//! (targets resolved inside the rootfs with openat2 and mounted through
//! `/proc/self/fd`), devices, pivot_root, masked and read-only paths.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use inroot::openat2_retry;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxNamespaceType, Mount, Spec};
use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};

/// Why the root filesystem could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("mount of {destination:?}: {what}")]
    Mount { destination: PathBuf, what: String },
}

fn sys(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> RootfsError {
    let what = what.into();
    move |e| RootfsError::Sys {
        what,
        source: e.into(),
    }
}

/// Flags and data of a mount's options, as mount(8) reads them.
#[derive(Debug, Default, Clone)]
pub struct MountOptions {
    pub flags: libc::c_ulong,
    pub clear: libc::c_ulong,
    pub propagation: libc::c_ulong,
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
}

pub fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    for opt in options {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match opt.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                (0, 0)
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                (0, 0)
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                o.propagation |= propagation_flag(opt).unwrap_or(0);
                (0, 0)
            }
            _ => {
                o.data.push(opt.clone());
                (0, 0)
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.clear |= clear;
    }
    o
}

pub fn propagation_flag(name: &str) -> Option<libc::c_ulong> {
    Some(match name {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// mount(2) with optional strings.
fn mount_raw(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(cstr);
    let target = cstr(target);
    let fstype = fstype.map(cstr);
    let data = data.map(cstr);
    // SAFETY: every pointer is either null or a NUL-terminated string that
    // lives until the call returns.
    let r = unsafe {
        libc::mount(
            source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Cleans a path inside the container: no `..` can climb above its root.
pub(crate) fn inside(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Opens (creating if missing) the mount target `dest` inside `root`, as a
/// directory or as a file. Symlinks met on the way are followed as if the
/// rootfs were `/` (like runc's securejoin), so missing directories are
/// created where the link points inside the rootfs; nothing is ever
/// resolved or created outside it.
pub(crate) fn open_target(root: &OwnedFd, dest: &Path, dir: bool) -> Result<OwnedFd, RootfsError> {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let open_dir = |rel: &Path| {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        openat2_retry(
            root,
            rel,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
    };
    // Most targets exist already: one resolution in the kernel, with the
    // same semantics as the walk below (links followed inside the root).
    match openat2_retry(
        root,
        inside(dest).as_path(),
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    ) {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(sys(format!("cannot open {}", dest.display()))(e)),
    }
    let mut pending: VecDeque<OsString> = inside(dest)
        .components()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let last = pending.is_empty();
        let parent = open_dir(&resolved)
            .map_err(sys(format!("cannot open the parent of {}", dest.display())))?;
        match rfs::statat(&parent, &name, rfs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink => {
                links += 1;
                if links > 40 {
                    return Err(sys(format!("too many symlinks under {}", dest.display()))(
                        rustix::io::Errno::LOOP,
                    ));
                }
                let target = rfs::readlinkat(&parent, &name, Vec::new())
                    .map_err(sys(format!("cannot read a link under {}", dest.display())))?;
                let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push_front(n.to_os_string()),
                        Component::ParentDir => pending.push_front("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(_) => resolved.push(&name),
            Err(rustix::io::Errno::NOENT) => {
                if last && !dir {
                    match rfs::openat(
                        &parent,
                        &name,
                        OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    ) {
                        Ok(_) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(sys(format!("cannot create {}", dest.display()))(e)),
                    }
                } else {
                    match rfs::mkdirat(&parent, &name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(sys(format!("cannot create {}", dest.display()))(e)),
                    }
                }
                resolved.push(&name);
            }
            Err(e) => return Err(sys(format!("cannot open {}", dest.display()))(e)),
        }
    }
    let rel = if resolved.as_os_str().is_empty() {
        Path::new(".")
    } else {
        resolved.as_path()
    };
    openat2_retry(
        root,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )
    .map_err(sys(format!("cannot open {}", dest.display())))
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Mounts one entry of `mounts` under the rootfs (before pivot_root).
/// `cgroupns`: the container has a cgroup namespace of its own (new or
/// joined); without one, a cgroup2 mount would show the host's tree.
fn mount_one(
    root: &OwnedFd,
    m: &Mount,
    cgroups: &[(String, PathBuf)],
    cgroupns: bool,
) -> Result<(), RootfsError> {
    let dest = m.destination();
    let o = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("none");
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned());
    let err = |what: String| RootfsError::Mount {
        destination: dest.clone(),
        what,
    };
    if o.bind || typ == "bind" || typ == "rbind" {
        let src = source.ok_or_else(|| err("bind mount without a source".into()))?;
        let src_is_dir = std::fs::metadata(&src)
            .map_err(|e| err(format!("source {src:?}: {e}")))?
            .is_dir();
        let target = open_target(root, dest, src_is_dir)?;
        let recursive = o.recursive || typ == "rbind";
        let mut flags = libc::MS_BIND;
        if recursive {
            flags |= libc::MS_REC;
        }
        mount_raw(Some(&src), &fd_path(&target), None, flags, None)
            .map_err(|e| err(format!("bind {src:?}: {e}")))?;
        // Bind mounts take the other flags only on a remount.
        let extra = o.flags & !(libc::MS_REMOUNT);
        if extra != 0 {
            let target = open_target(root, dest, src_is_dir)?;
            mount_raw(
                None,
                &fd_path(&target),
                None,
                extra | libc::MS_BIND | libc::MS_REMOUNT,
                None,
            )
            .map_err(|e| err(format!("remount with options: {e}")))?;
        }
        if o.propagation != 0 {
            let target = open_target(root, dest, src_is_dir)?;
            mount_raw(None, &fd_path(&target), None, o.propagation, None)
                .map_err(|e| err(format!("propagation: {e}")))?;
        }
        return Ok(());
    }
    if typ == "cgroup" || typ == "cgroup2" {
        if crate::cgroups::host_mode() != "v2" && typ == "cgroup" {
            return mount_cgroup_v1(root, m, &o, cgroups);
        }
        if !cgroupns {
            // No cgroup namespace: a cgroup2 mount would show the host's
            // whole tree; bind the container's own directory instead.
            return mount_own_cgroup2(root, m, &o, cgroups);
        }
    }
    let target = open_target(root, dest, true)?;
    let data = o.data.join(",");
    // A "cgroup" mount is served by the unified hierarchy (mountable on v2
    // and hybrid hosts alike); per-controller v1 views are not mounted yet.
    let fstype = if typ == "cgroup" { "cgroup2" } else { typ };
    let src = source.as_deref().unwrap_or(fstype);
    mount_raw(
        Some(src),
        &fd_path(&target),
        Some(fstype),
        o.flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(|e| err(format!("{fstype} mount: {e}")))?;
    if o.propagation != 0 {
        let target = open_target(root, dest, true)?;
        mount_raw(None, &fd_path(&target), None, o.propagation, None)
            .map_err(|e| err(format!("propagation: {e}")))?;
    }
    Ok(())
}

/// `/sys/fs/cgroup` on a v2 host without a cgroup namespace: the
/// container's own cgroup directory, bound read-only if asked (as runc).
fn mount_own_cgroup2(
    root: &OwnedFd,
    m: &Mount,
    o: &MountOptions,
    dirs: &[(String, PathBuf)],
) -> Result<(), RootfsError> {
    let dest = m.destination();
    let err = |what: String| RootfsError::Mount {
        destination: dest.clone(),
        what,
    };
    let Some((_, dir)) = dirs.iter().find(|(n, _)| n == "unified") else {
        return Err(err("no cgroup2 hierarchy on this host".into()));
    };
    let src = dir.to_string_lossy();
    let t = open_target(root, dest, true)?;
    mount_raw(
        Some(&src),
        &fd_path(&t),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(|e| err(format!("bind {src}: {e}")))?;
    let flags = (o.flags & libc::MS_RDONLY) | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let t = open_target(root, dest, true)?;
    mount_raw(
        None,
        &fd_path(&t),
        None,
        flags | libc::MS_BIND | libc::MS_REMOUNT,
        None,
    )
    .map_err(|e| err(format!("remount: {e}")))
}

/// `/sys/fs/cgroup` for a v1 or hybrid host, as runc makes it: a tmpfs
/// holding, for each hierarchy, a bind mount of the container's own cgroup
/// directory (init has already been moved into its cgroups), so the
/// container sees its limits and nothing of the host's tree.
fn mount_cgroup_v1(
    root: &OwnedFd,
    m: &Mount,
    o: &MountOptions,
    dirs: &[(String, PathBuf)],
) -> Result<(), RootfsError> {
    let dest = m.destination();
    let err = |what: String| RootfsError::Mount {
        destination: dest.clone(),
        what,
    };
    if dirs.is_empty() {
        return Err(err("cannot find the container's cgroups".into()));
    }
    let target = open_target(root, dest, true)?;
    mount_raw(
        Some("tmpfs"),
        &fd_path(&target),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(|e| err(format!("tmpfs: {e}")))?;
    let flags = (o.flags & (libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC))
        | libc::MS_NOSUID
        | libc::MS_NODEV
        | libc::MS_NOEXEC;
    for (name, host_dir) in dirs {
        let sub = dest.join(name);
        let t = open_target(root, &sub, true)?;
        let src = host_dir.to_string_lossy();
        mount_raw(
            Some(&src),
            &fd_path(&t),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(|e| err(format!("bind {src}: {e}")))?;
        let t = open_target(root, &sub, true)?;
        mount_raw(
            None,
            &fd_path(&t),
            None,
            flags | libc::MS_BIND | libc::MS_REMOUNT,
            None,
        )
        .map_err(|e| err(format!("remount {name}: {e}")))?;
    }
    // Combined hierarchies are also reachable by each controller's name
    // (cpu,cpuacct -> cpu and cpuacct), as on the host.
    let parent = openat2_retry(
        root,
        inside(dest).as_path(),
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(sys(format!("cannot open {}", dest.display())))?;
    for (name, _) in dirs {
        if name.contains(',') {
            for part in name.split(',') {
                let _ = rfs::symlinkat(name.as_str(), &parent, part);
            }
        }
    }
    if o.flags & libc::MS_RDONLY != 0 {
        let t = open_target(root, dest, true)?;
        mount_raw(
            None,
            &fd_path(&t),
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some("mode=755"),
        )
        .map_err(|e| err(format!("read-only: {e}")))?;
    }
    Ok(())
}

/// The devices every container gets (runtime spec "Default Devices").
fn default_devices() -> Vec<(&'static str, u32, u32)> {
    vec![
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    root: &OwnedFd,
    path: &Path,
    kind: LinuxDeviceType,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), RootfsError> {
    let rel = inside(path);
    let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
    let name = rel
        .file_name()
        .ok_or_else(|| RootfsError::Mount {
            destination: path.to_path_buf(),
            what: "device path has no name".into(),
        })?
        .to_os_string();
    if !parent_rel.as_os_str().is_empty() {
        open_target(root, &Path::new("/").join(&parent_rel), true)?;
    }
    let parent = openat2_retry(
        root,
        if parent_rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent_rel.as_path()
        },
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(sys(format!("cannot open parent of {}", path.display())))?;
    let ft = match kind {
        LinuxDeviceType::B => rfs::FileType::BlockDevice,
        LinuxDeviceType::P => rfs::FileType::Fifo,
        _ => rfs::FileType::CharacterDevice,
    };
    let _ = rfs::unlinkat(&parent, &name, rfs::AtFlags::empty());
    match rfs::mknodat(
        &parent,
        &name,
        ft,
        Mode::from_raw_mode(mode & 0o7777),
        rfs::makedev(major as u32, minor as u32),
    ) {
        Ok(()) => {}
        Err(rustix::io::Errno::PERM) => {
            // In a user namespace mknod is not allowed: bind the host's
            // node of the same path over an empty file, as runc does.
            let f = rfs::openat(
                &parent,
                &name,
                OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map_err(sys(format!("cannot create {}", path.display())))?;
            drop(f);
            let target = open_target(root, path, false)?;
            let host = path.to_string_lossy();
            mount_raw(Some(&host), &fd_path(&target), None, libc::MS_BIND, None).map_err(|e| {
                RootfsError::Sys {
                    what: format!("cannot bind device {host}"),
                    source: e,
                }
            })?;
            return Ok(());
        }
        Err(e) => return Err(sys(format!("cannot create device {}", path.display()))(e)),
    }
    rfs::chownat(
        &parent,
        &name,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
        rfs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(sys(format!("cannot chown device {}", path.display())))?;
    rfs::chmodat(
        &parent,
        &name,
        Mode::from_raw_mode(mode & 0o7777),
        rfs::AtFlags::empty(),
    )
    .map_err(sys(format!("cannot chmod device {}", path.display())))?;
    Ok(())
}

fn symlink_in(root: &OwnedFd, target: &str, link: &str) -> Result<(), RootfsError> {
    let dev = openat2_retry(
        root,
        "dev",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(sys("cannot open /dev"))?;
    match rfs::symlinkat(target, &dev, link) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(sys(format!("cannot create /dev/{link}"))(e)),
    }
}

/// Prepares the rootfs before pivot_root: makes the mount tree private (or
/// as rootfsPropagation says), bind-mounts the rootfs onto itself, performs
/// the config's mounts and creates the devices.
/// `cgroups` are the container's own cgroup directories (from
/// `CgroupManager::container_dirs`); `cgroups_ready` is called before the
/// first cgroup mount and returns once they exist and hold the process.
pub fn prepare(
    spec: &Spec,
    rootfs: &Path,
    cgroups: &[(String, PathBuf)],
    cgroups_ready: &mut dyn FnMut(),
) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    // An unbindable "/" would refuse the rootfs's bind mount: it is set
    // after the pivot only (`finish`), with rslave until then.
    let propagation = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flag)
        .filter(|p| p & libc::MS_UNBINDABLE == 0)
        .unwrap_or(libc::MS_SLAVE | libc::MS_REC);
    mount_raw(None, "/", None, propagation, None).map_err(|e| RootfsError::Sys {
        what: "cannot set the propagation of /".into(),
        source: e,
    })?;
    // pivot_root refuses a new root whose parent mount is shared (EINVAL),
    // and the rootfs's bind mount must not propagate anywhere: its parent
    // mount becomes private (rootfsPropagation applies to "/" after the
    // pivot, as runc does).
    parent_mount_private(rootfs)?;
    let rootfs_s = rootfs.to_string_lossy();
    mount_raw(
        Some(&rootfs_s),
        &rootfs_s,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(|e| RootfsError::Sys {
        what: format!("cannot bind-mount the rootfs {rootfs_s}"),
        source: e,
    })?;
    let root = rfs::open(
        rootfs,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys(format!("cannot open rootfs {rootfs_s}")))?;
    let cgroupns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|v| v.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
    let mut dev_is_tmpfs = false;
    for m in spec.mounts().iter().flatten() {
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            dev_is_tmpfs = true;
        }
        if matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            cgroups_ready();
        }
        mount_one(&root, m, cgroups, cgroupns)?;
    }
    if dev_is_tmpfs {
        for (name, major, minor) in default_devices() {
            make_device(
                &root,
                &Path::new("/dev").join(name),
                LinuxDeviceType::C,
                major.into(),
                minor.into(),
                0o666,
                0,
                0,
            )?;
        }
        for (target, link) in [
            ("/proc/self/fd", "fd"),
            ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"),
            ("/proc/self/fd/2", "stderr"),
            ("pts/ptmx", "ptmx"),
        ] {
            symlink_in(&root, target, link)?;
        }
        if std::path::Path::new("/proc/kcore").exists() {
            symlink_in(&root, "/proc/kcore", "core")?;
        }
    }
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        device(&root, d)?;
    }
    Ok(())
}

fn device(root: &OwnedFd, d: &LinuxDevice) -> Result<(), RootfsError> {
    make_device(
        root,
        d.path(),
        d.typ(),
        d.major(),
        d.minor(),
        d.file_mode().unwrap_or(0o666),
        d.uid().unwrap_or(0),
        d.gid().unwrap_or(0),
    )
}

/// The mount point `path` is on (from /proc/self/mountinfo) made private
/// when it is shared.
fn parent_mount_private(path: &Path) -> Result<(), RootfsError> {
    let path = std::fs::canonicalize(path).map_err(|e| RootfsError::Sys {
        what: format!("cannot resolve the rootfs {}", path.display()),
        source: e,
    })?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| RootfsError::Sys {
        what: "cannot read /proc/self/mountinfo".into(),
        source: e,
    })?;
    // Fields: id parent major:minor root mount-point options [optional...]
    // - fstype source super-options. The last entry for a mount point is
    // the one on top.
    let mut best: Option<(PathBuf, bool)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mp), Some(dash)) = (fields.get(4), fields.iter().position(|f| *f == "-")) else {
            continue;
        };
        let mp = PathBuf::from(unescape_mountinfo(mp));
        if !path.starts_with(&mp) {
            continue;
        }
        let shared = fields[6.min(dash)..dash]
            .iter()
            .any(|f| f.starts_with("shared:"));
        if best
            .as_ref()
            .is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len())
        {
            best = Some((mp, shared));
        }
    }
    if let Some((mp, true)) = best {
        mount_raw(None, &mp.to_string_lossy(), None, libc::MS_PRIVATE, None).map_err(|e| {
            RootfsError::Sys {
                what: format!("cannot make {} private", mp.display()),
                source: e,
            }
        })?;
    }
    Ok(())
}

/// mountinfo's octal escapes (`\040` for a space) decoded.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// pivot_root into `rootfs` and detach the old root (or chroot when
/// `no_pivot`).
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    rustix::process::chdir(rootfs).map_err(sys(format!("cannot chdir to {}", rootfs.display())))?;
    if no_pivot {
        let dot = rootfs.to_string_lossy();
        mount_raw(Some(&dot), "/", None, libc::MS_MOVE, None).map_err(|e| RootfsError::Sys {
            what: "cannot move the rootfs to /".into(),
            source: e,
        })?;
        rustix::process::chroot(".").map_err(sys("chroot"))?;
    } else {
        rustix::process::pivot_root(".", ".").map_err(sys("pivot_root"))?;
        // The old root is now stacked under the new one at "/": make it a
        // slave so the detach does not propagate to the host, then detach.
        mount_raw(None, ".", None, libc::MS_SLAVE | libc::MS_REC, None).map_err(|e| {
            RootfsError::Sys {
                what: "cannot make the old root a slave".into(),
                source: e,
            }
        })?;
        rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
            .map_err(sys("cannot detach the old root"))?;
    }
    rustix::process::chdir("/").map_err(sys("chdir /"))?;
    Ok(())
}

/// After pivot_root: the root's propagation, masked paths, read-only
/// paths, a read-only root.
pub fn finish(spec: &Spec) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    if let Some(p) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flag)
    {
        mount_raw(None, "/", None, p, None).map_err(|e| RootfsError::Sys {
            what: "cannot set rootfsPropagation on /".into(),
            source: e,
        })?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        let s = p.as_str();
        match mount_raw(Some(s), s, None, libc::MS_BIND | libc::MS_REC, None) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => {
                return Err(RootfsError::Sys {
                    what: format!("cannot bind read-only path {s}"),
                    source: e,
                })
            }
        }
        mount_raw(
            None,
            s,
            None,
            libc::MS_BIND
                | libc::MS_REMOUNT
                | libc::MS_RDONLY
                | libc::MS_REC
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC,
            None,
        )
        .map_err(|e| RootfsError::Sys {
            what: format!("cannot make {s} read-only"),
            source: e,
        })?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        let s = p.as_str();
        let md = match std::fs::metadata(s) {
            Ok(md) => md,
            Err(_) => continue,
        };
        let r = if md.is_dir() {
            mount_raw(
                Some("tmpfs"),
                s,
                Some("tmpfs"),
                libc::MS_RDONLY,
                Some("size=0k"),
            )
        } else {
            mount_raw(Some("/dev/null"), s, None, libc::MS_BIND, None)
        };
        r.map_err(|e| RootfsError::Sys {
            what: format!("cannot mask {s}"),
            source: e,
        })?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        mount_raw(
            None,
            "/",
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        )
        .map_err(|e| RootfsError::Sys {
            what: "cannot make the root read-only".into(),
            source: e,
        })?;
    }
    Ok(())
}

/// Writes the config's sysctls under /proc/sys.
pub fn sysctls(spec: &Spec) -> Result<(), RootfsError> {
    for (k, v) in spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        if k.contains("..") || k.contains('/') && k.contains('.') {
            return Err(RootfsError::Sys {
                what: format!("invalid sysctl name {k:?}"),
                source: io::ErrorKind::InvalidInput.into(),
            });
        }
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, v).map_err(|e| RootfsError::Sys {
            what: format!("cannot set sysctl {k}={v}"),
            source: e,
        })?;
    }
    Ok(())
}
