//! A container's root filesystem: overlayfs over the image's unpacked
//! layers (the store's `snapshots/N`, whose short names keep deep images
//! within the mount-option size limit) plus the container's own upper dir,
//! and the /etc files Docker bind-mounts (hosts, hostname, resolv.conf).

use std::fs;
use std::path::{Path, PathBuf};

use crate::EngineError;

/// The directories of one container under `ROOT/containers/ID`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(root: &Path, id: &str) -> Layout {
        Layout {
            dir: root.join("containers").join(id),
        }
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }
    /// The init layer: the mount points berth itself adds (Docker's
    /// "-init" layer), so that they never show in diff or commit. The same
    /// for every container, so one per store, made once.
    pub fn init(&self) -> PathBuf {
        self.dir
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"))
            .join("init-layer")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    pub fn bundle(&self) -> &Path {
        &self.dir
    }
}

/// Docker's init layer: directories and empty files for the mounts of
/// every container, and /etc/mtab.
fn make_init_layer(dir: &Path) -> Result<(), EngineError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| EngineError::io(format!("create {}", p.display()), e)
    };
    // Made aside and renamed into place: concurrent starts may race to
    // make it, and the first rename wins.
    // Unique per caller: threads of one process (a build's stages) race too.
    let tmp = dir.with_file_name(format!("init-layer.{}", &crate::new_id()[..16]));
    let _ = fs::remove_dir_all(&tmp);
    for d in ["", "dev", "dev/pts", "dev/shm", "proc", "sys", "etc"] {
        let p = tmp.join(d);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&p)
            .map_err(io(&p))?;
    }
    for f in [
        "dev/console",
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
    ] {
        let p = tmp.join(f);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&p)
            .map_err(io(&p))?;
    }
    let mtab = tmp.join("etc/mtab");
    std::os::unix::fs::symlink("/proc/mounts", &mtab).map_err(io(&mtab))?;
    match fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => Err(io(dir)(e)),
    }
}

/// Creates the container's directories and /etc files.
pub fn prepare(layout: &Layout, hostname: &str, network_host: bool) -> Result<(), EngineError> {
    for d in [layout.upper(), layout.work(), layout.merged()] {
        fs::create_dir_all(&d)
            .map_err(|e| EngineError::io(format!("create {}", d.display()), e))?;
    }
    if !layout.init().exists() {
        make_init_layer(&layout.init())?;
    }
    let write = |name: &str, text: String| {
        let p = layout.dir.join(name);
        fs::write(&p, text).map_err(|e| EngineError::io(format!("write {}", p.display()), e))
    };
    write("hostname", format!("{hostname}\n"))?;
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if network_host {
        hosts = fs::read_to_string("/etc/hosts").unwrap_or(hosts);
    } else {
        hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    write("hosts", hosts)?;
    // The host's resolvers, without loopback ones (unreachable from a
    // private network namespace), as Docker does; Google's as the fallback.
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = if network_host {
        host
    } else {
        let mut out = String::new();
        let mut servers = 0;
        for line in host.lines() {
            let t = line.trim();
            if let Some(addr) = t.strip_prefix("nameserver") {
                let addr = addr.trim();
                if addr.starts_with("127.") || addr == "::1" {
                    continue;
                }
                servers += 1;
            }
            out.push_str(line);
            out.push('\n');
        }
        if servers == 0 {
            out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        }
        out
    };
    write("resolv.conf", resolv)?;
    Ok(())
}

/// Mounts the overlay at `merged`: the init layer over `lowers` (the
/// image's layers, top first). `volatile` (for `--rm` containers, whose
/// changes die with them): overlayfs skips syncing the upper dir, at
/// unmount too.
pub fn mount(layout: &Layout, lowers: &[PathBuf], volatile: bool) -> Result<(), EngineError> {
    let lowers: Vec<String> = std::iter::once(&layout.init())
        .chain(lowers)
        .map(|p| escape(&p.to_string_lossy()))
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={},index=off",
        lowers.join(":"),
        escape(&layout.upper().to_string_lossy()),
        escape(&layout.work().to_string_lossy()),
    );
    // The kernel takes one page of mount options.
    if data.len() >= 4095 {
        return Err(EngineError::Invalid(format!(
            "the image has too many layers ({}) for one overlay mount of this store root; use a shorter --root",
            lowers.len()
        )));
    }
    let target = layout.merged();
    let mount = |data: &str| {
        let data = std::ffi::CString::new(data)
            .map_err(|_| EngineError::Invalid("a store path contains a NUL byte".into()))?;
        rustix::mount::mount(
            "overlay",
            &target,
            "overlay",
            rustix::mount::MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(|e| {
            EngineError::io(
                format!("mount the overlay at {}", target.display()),
                e.into(),
            )
        })
    };
    // The upper dir must hold whole files and real directories (it becomes
    // a layer, by commit or by a build step): no metacopy-only inodes, no
    // redirects, whatever the module's defaults are. Kernels that do not
    // know an option refuse it; then the mount goes on without.
    let full = format!("{data},redirect_dir=off,metacopy=off");
    if volatile && mount(&format!("{full},volatile")).is_ok() {
        return Ok(());
    }
    if mount(&full).is_ok() {
        return Ok(());
    }
    if volatile && mount(&format!("{data},volatile")).is_ok() {
        return Ok(());
    }
    // Without volatile (kernels before 5.10 do not know it).
    mount(&data)
}

/// Overlay option values escape `\`, `,` and `:` with a backslash.
pub fn escape(p: &str) -> String {
    p.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}

/// Unmounts the overlay if mounted.
pub fn unmount(layout: &Layout) -> Result<(), EngineError> {
    let target = layout.merged();
    match rustix::mount::unmount(&target, rustix::mount::UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH)
                .map_err(|e| EngineError::io(format!("unmount {}", target.display()), e.into()))
        }
        Err(e) => Err(EngineError::io(
            format!("unmount {}", target.display()),
            e.into(),
        )),
    }
}

/// Whether the overlay is mounted (merged is a different mount than its
/// parent directory).
pub fn is_mounted(layout: &Layout) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(layout.merged()), fs::metadata(&layout.dir)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Removes the container's directory (after unmounting).
pub fn remove(layout: &Layout) -> Result<(), EngineError> {
    unmount(layout)?;
    match fs::remove_dir_all(&layout.dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::io(
            format!("remove {}", layout.dir.display()),
            e,
        )),
    }
}
