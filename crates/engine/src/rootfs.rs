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

/// What a container's /etc/hosts, /etc/hostname and /etc/resolv.conf say.
#[derive(Debug, Clone, Default)]
pub struct EtcFiles<'a> {
    pub hostname: &'a str,
    pub domainname: Option<&'a str>,
    /// The host's network: its own hosts and resolv.conf.
    pub network_host: bool,
    /// `--add-host` entries, checked (`NAME:IP`).
    pub extra_hosts: &'a [String],
    pub dns: &'a [String],
    pub dns_search: &'a [String],
    pub dns_options: &'a [String],
}

impl<'a> EtcFiles<'a> {
    /// A container's, from its options.
    pub fn of(c: &'a crate::config::ContainerConfig, hostname: &'a str) -> EtcFiles<'a> {
        EtcFiles {
            hostname,
            domainname: c.domainname.as_deref().filter(|d| !d.is_empty()),
            network_host: c.network == "host",
            extra_hosts: &c.extra_hosts,
            dns: &c.dns,
            dns_search: &c.dns_search,
            dns_options: &c.dns_options,
        }
    }

    /// Only a name and the network's kind (build steps, copies).
    pub fn plain(hostname: &'a str, network_host: bool) -> EtcFiles<'a> {
        EtcFiles {
            hostname,
            network_host,
            ..Default::default()
        }
    }

    /// /etc/hosts: localhost, the IPv6 names, the container's own name
    /// (`HOST.DOMAIN HOST` with a domain), then each `--add-host` as
    /// `IP NAME`; with the host's network, the host's file and the extra
    /// entries.
    pub fn hosts(&self, host_file: Option<&str>) -> String {
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        match (self.network_host, host_file) {
            (true, Some(f)) => {
                hosts = f.to_string();
                if !hosts.is_empty() && !hosts.ends_with('\n') {
                    hosts.push('\n');
                }
            }
            (true, None) => {}
            (false, _) => {
                let names = match self.domainname {
                    Some(d) => format!("{}.{d}\t{}", self.hostname, self.hostname),
                    None => self.hostname.to_string(),
                };
                hosts.push_str(&format!("127.0.1.1\t{names}\n"));
            }
        }
        for e in self.extra_hosts {
            if let Ok((name, ip)) = crate::options::parse_extra_host(e) {
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
        }
        hosts
    }

    /// /etc/resolv.conf from the host's: loopback nameservers left out
    /// (unreachable from a private network namespace) with Google's as
    /// the fallback, as Docker does; `--dns`, `--dns-search` and
    /// `--dns-option` each replace their part.
    pub fn resolv(&self, host: &str) -> String {
        let mut servers: Vec<String> = Vec::new();
        let mut search: Vec<String> = Vec::new();
        let mut options: Vec<String> = Vec::new();
        let mut other = String::new();
        for line in host.lines() {
            let t = line.trim();
            let mut words = t.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(a) = words.next() {
                        let loopback = a.starts_with("127.") || a == "::1";
                        if self.network_host || !loopback {
                            servers.push(a.to_string());
                        }
                    }
                }
                Some("search") | Some("domain") => {
                    search = words.map(String::from).collect();
                }
                Some("options") => options.extend(words.map(String::from)),
                _ => {
                    other.push_str(line);
                    other.push('\n');
                }
            }
        }
        if !self.dns.is_empty() {
            servers = self.dns.to_vec();
        } else if servers.is_empty() && !self.network_host {
            servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
        }
        if !self.dns_search.is_empty() {
            search = self
                .dns_search
                .iter()
                .filter(|d| d.as_str() != ".")
                .cloned()
                .collect();
        }
        if !self.dns_options.is_empty() {
            options = self.dns_options.to_vec();
        }
        let mut out = other;
        if !search.is_empty() {
            out.push_str(&format!("search {}\n", search.join(" ")));
        }
        for s in &servers {
            out.push_str(&format!("nameserver {s}\n"));
        }
        if !options.is_empty() {
            out.push_str(&format!("options {}\n", options.join(" ")));
        }
        out
    }
}

/// Creates the container's directories and /etc files.
pub fn prepare(layout: &Layout, etc: &EtcFiles<'_>) -> Result<(), EngineError> {
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
    write("hostname", format!("{}\n", etc.hostname))?;
    let host_hosts = fs::read_to_string("/etc/hosts").ok();
    write("hosts", etc.hosts(host_hosts.as_deref()))?;
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    write("resolv.conf", etc.resolv(&host_resolv))?;
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

#[cfg(test)]
mod tests {
    use super::EtcFiles;

    #[test]
    fn resolv_conf_keeps_the_hosts_reachable_servers_and_takes_the_flags() {
        let host =
            "# generated\nnameserver 127.0.0.53\nnameserver 10.9.9.9\nsearch lan\noptions edns0\n";
        let plain = EtcFiles::plain("h", false).resolv(host);
        assert_eq!(
            plain,
            "# generated\nsearch lan\nnameserver 10.9.9.9\noptions edns0\n"
        );
        // Only loopback servers: Google's, as docker.
        let only_local = EtcFiles::plain("h", false).resolv("nameserver 127.0.0.53\n");
        assert_eq!(only_local, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        // The host's network keeps them.
        assert!(EtcFiles::plain("h", true)
            .resolv(host)
            .contains("nameserver 127.0.0.53"));
        let dns = ["1.1.1.1".to_string()];
        let search = ["a.example".to_string(), "b.example".to_string()];
        let opts = ["ndots:3".to_string()];
        let f = EtcFiles {
            dns: &dns,
            dns_search: &search,
            dns_options: &opts,
            ..EtcFiles::plain("h", false)
        };
        assert_eq!(
            f.resolv(host),
            "# generated\nsearch a.example b.example\nnameserver 1.1.1.1\noptions ndots:3\n"
        );
    }

    #[test]
    fn hosts_name_the_container_and_the_extra_hosts() {
        let extra = ["db:10.0.0.5".to_string(), "v6=[::1]".to_string()];
        let f = EtcFiles {
            domainname: Some("example.org"),
            extra_hosts: &extra,
            ..EtcFiles::plain("web", false)
        };
        let hosts = f.hosts(Some("10.0.0.1 the-host\n"));
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
        assert!(
            hosts.ends_with("127.0.1.1\tweb.example.org\tweb\n10.0.0.5\tdb\n::1\tv6\n"),
            "{hosts}"
        );
        let host_net = EtcFiles {
            extra_hosts: &extra,
            ..EtcFiles::plain("web", true)
        };
        assert_eq!(
            host_net.hosts(Some("10.0.0.1 the-host")),
            "10.0.0.1 the-host\n10.0.0.5\tdb\n::1\tv6\n"
        );
    }
}
