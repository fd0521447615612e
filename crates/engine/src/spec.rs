//! The OCI runtime config of a container, derived from the image config and
//! the user's options the way Docker derives it (moby's `oci/defaults.go`
//! and `daemon/oci_linux.go`): default capabilities, mounts, masked and
//! read-only paths, the default seccomp profile, device rules.

use std::path::Path;

use oci_spec::runtime::{
    Linux, LinuxCapabilities, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, LinuxResources, LinuxSeccomp, Mount, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User,
};
use serde_json::Value;

use crate::config::{process_args, process_env, ContainerConfig, ImageConfig};
use crate::EngineError;

const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's default capability set (moby's `oci/caps.DefaultCapabilities`).
pub const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Everything the spec needs besides the options.
pub struct Inputs<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub rootfs: &'a Path,
    /// The container directory, holding hosts, hostname and resolv.conf.
    pub dir: &'a Path,
    pub image: &'a ImageConfig,
    pub user: &'a crate::users::User,
    /// The store root, where volumes live.
    pub store_root: &'a Path,
    /// `--network container:NAME`: that container's network namespace.
    pub join_net: Option<&'a Path>,
}

/// `--cap-add`/`--cap-drop` names as docker takes them: case-insensitive,
/// with or without `CAP_`, and `ALL`.
fn cap_name(s: &str) -> String {
    let up = s.to_ascii_uppercase();
    if up == "ALL" || up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

pub fn capabilities(opts: &ContainerConfig) -> Result<Vec<String>, EngineError> {
    let known = berth_runtime::caps::known();
    // "All" is every capability berth itself holds (its bounding set): a
    // host may withhold some (this one has no CAP_SYS_RESOURCE), and a
    // process cannot grant what it lacks. known() is in number order.
    let all: Vec<String> = known
        .iter()
        .enumerate()
        // SAFETY: prctl with integer arguments.
        .filter(|(n, _)| unsafe { libc::prctl(libc::PR_CAPBSET_READ, *n as libc::c_ulong, 0, 0, 0) } == 1)
        .map(|(_, s)| s.to_string())
        .collect();
    if opts.privileged {
        return Ok(all);
    }
    let mut caps: Vec<String> = DOCKER_DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let check = |c: &String| {
        if c == "ALL" || known.contains(c) {
            Ok(())
        } else {
            Err(EngineError::Invalid(format!(
                "unknown capability: {c:?}: see capabilities(7) for the names"
            )))
        }
    };
    let adds: Vec<String> = opts.cap_add.iter().map(|c| cap_name(c)).collect();
    let drops: Vec<String> = opts.cap_drop.iter().map(|c| cap_name(c)).collect();
    for c in adds.iter().chain(&drops) {
        check(c)?;
    }
    if drops.iter().any(|c| c == "ALL") {
        caps.clear();
    } else {
        caps.retain(|c| !drops.contains(c));
    }
    if adds.iter().any(|c| c == "ALL") {
        caps = all.clone();
    } else {
        for c in adds {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    Ok(caps)
}

/// The checks `create` makes so that a bad flag fails before anything
/// exists (and `derive` again at start); returns the capabilities.
pub fn check(opts: &ContainerConfig) -> Result<Vec<String>, EngineError> {
    match opts.log_driver.as_str() {
        "" | "json-file" => {
            crate::logs::Rotation::from_opts(&opts.log_opts)?;
        }
        "none" if opts.log_opts.is_empty() => {}
        "none" => {
            return Err(EngineError::Invalid(
                "the none log driver takes no --log-opt".into(),
            ))
        }
        other => {
            return Err(EngineError::Invalid(format!(
                "logging driver {other:?} is not available: berth has json-file and none"
            )))
        }
    }
    for h in &opts.extra_hosts {
        crate::options::parse_extra_host(h)?;
    }
    // Words written into /etc/hosts and /etc/resolv.conf and set as UTS
    // names: one word each, no line breaks, within the kernel's limits.
    let words = [
        ("--hostname", opts.hostname.iter().collect::<Vec<_>>(), 64),
        ("--domainname", opts.domainname.iter().collect(), 64),
        ("--dns-search", opts.dns_search.iter().collect(), 253),
        ("--dns-option", opts.dns_options.iter().collect(), 253),
    ];
    for (flag, values, max) in words {
        for v in values {
            if v.is_empty() && flag != "--domainname"
                || v.len() > max
                || v.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(EngineError::Invalid(format!(
                    "invalid argument {v:?} for \"{flag}\" flag: one word of at most {max} characters, without spaces or line breaks"
                )));
            }
        }
    }
    if let Some(c) = opts.cpus {
        // SAFETY: sysconf with a constant name.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as f64;
        if !(0.01..=online).contains(&c) {
            return Err(EngineError::Invalid(format!(
                "range of CPUs is from 0.01 to {online:.2}, as there are only {online} CPUs available"
            )));
        }
    }
    for d in &opts.dns {
        crate::options::check_dns_server(d)?;
    }
    if opts.memory.is_some_and(|m| m < 6 << 20) {
        return Err(EngineError::Invalid(
            "Minimum memory limit allowed is 6MB".into(),
        ));
    }
    capabilities(opts)
}

/// An OCI mount.
fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into());
    m.set_typ(Some(typ.into()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// What every container gets: /proc, /dev, /sys and the rest, as Docker
/// mounts them.
fn base_mounts(privileged: bool) -> Vec<Mount> {
    let sys = if privileged { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
        ),
    ]
}

/// A user's mount (`--mount`, a `-v` bind, `--tmpfs`) as the runtime
/// takes it. A missing `-v` source directory is created, as Docker does;
/// a missing `--mount` bind source is an error, as Docker's.
fn user_mount(m: &crate::options::Mount, from_flag: bool) -> Result<Mount, EngineError> {
    use crate::options::MountType;
    let rw = if m.read_only { "ro" } else { "rw" };
    match m.typ {
        MountType::Bind => {
            if !Path::new(&m.source).exists() {
                if from_flag {
                    return Err(EngineError::Invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        m.source
                    )));
                }
                std::fs::create_dir_all(&m.source).map_err(|e| {
                    EngineError::io(format!("creating volume source {}", m.source), e)
                })?;
            }
            let propagation = m.propagation().map_or("rprivate", |p| p.as_str());
            Ok(mount(
                &m.target,
                "bind",
                &m.source,
                &["rbind", propagation, rw],
            ))
        }
        MountType::Tmpfs => {
            let mut o = vec!["nosuid".to_string(), "nodev".into(), "noexec".into()];
            if let Some(t) = &m.tmpfs_options {
                if let Some(s) = t.size_bytes {
                    o.push(format!("size={s}"));
                }
                if let Some(md) = t.mode {
                    o.push(format!("mode={md:o}"));
                }
                o.extend(t.options.iter().cloned());
            }
            if m.read_only {
                o.push("ro".into());
            }
            let o: Vec<&str> = o.iter().map(String::as_str).collect();
            Ok(mount(&m.target, "tmpfs", "tmpfs", &o))
        }
        MountType::Volume => Err(EngineError::Invalid(format!(
            "the volume mount at {} was not resolved at create (a bug)",
            m.target
        ))),
    }
}

/// Every mount of the container, in the order the runtime makes them.
fn mounts(opts: &ContainerConfig, i: &Inputs<'_>) -> Result<Vec<Mount>, EngineError> {
    use crate::options::Mount as M;
    let mut out = base_mounts(opts.privileged);
    let dir = i.dir.to_string_lossy();
    for f in ["resolv.conf", "hostname", "hosts"] {
        out.push(mount(
            &format!("/etc/{f}"),
            "bind",
            &format!("{dir}/{f}"),
            &["rbind", "rprivate"],
        ));
    }
    for t in &opts.tmpfs {
        out.push(user_mount(&M::parse_tmpfs_flag(t)?, false)?);
    }
    for v in &opts.volumes {
        let m = M::parse_volume_flag(v)?;
        if m.typ != crate::options::MountType::Bind {
            return Err(EngineError::Invalid(format!(
                "invalid volume {v:?}: a named volume here is a bug: volumes are resolved at create"
            )));
        }
        out.push(user_mount(&m, false)?);
    }
    for v in &opts.volume_mounts {
        let src = crate::volumes::data_dir(i.store_root, &v.name);
        out.push(mount(
            &v.target,
            "bind",
            &src.to_string_lossy(),
            &["rbind", "rprivate", if v.readonly { "ro" } else { "rw" }],
        ));
    }
    for m in &opts.mounts {
        out.push(user_mount(m, true)?);
    }
    Ok(out)
}

fn namespace(typ: LinuxNamespaceType) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns
}

/// The namespaces of a container: its own of each but the network with
/// `--network host` (and the cgroup's on a cgroup v1 host, as Docker).
fn namespaces(
    opts: &ContainerConfig,
    join_net: Option<&Path>,
) -> Result<Vec<LinuxNamespace>, EngineError> {
    use LinuxNamespaceType as T;
    let mut out = vec![
        namespace(T::Pid),
        namespace(T::Ipc),
        namespace(T::Uts),
        namespace(T::Mount),
    ];
    match opts.network.as_str() {
        "host" => {}
        "" | "none" => out.push(namespace(T::Network)),
        n if n.starts_with("container:") => {
            let path = join_net.ok_or_else(|| {
                EngineError::Invalid(format!("network {n:?}: the container to join is not running"))
            })?;
            let mut ns = namespace(T::Network);
            ns.set_path(Some(path.to_path_buf()));
            out.push(ns);
        }
        "default" | "bridge" => {
            return Err(EngineError::Invalid(format!(
                "network {:?} is not available yet: berth has no bridge networking; use --network none \
                 (a private namespace with loopback, the default) or --network host",
                opts.network
            )))
        }
        other => {
            return Err(EngineError::Invalid(format!(
                "network {other:?} not found: berth has none, host and container:NAME (bridge networks come later)"
            )))
        }
    }
    if berth_runtime::cgroups::host_mode() == "v2" {
        // Docker's default on cgroup v2 hosts: a private cgroup namespace.
        out.push(namespace(T::Cgroup));
    }
    Ok(out)
}

/// Device access (all denied but the runtime's defaults, all allowed when
/// privileged), memory, CPU and pids limits.
fn resources(opts: &ContainerConfig) -> Result<LinuxResources, EngineError> {
    let mut r = LinuxResources::default();
    let mut devices = LinuxDeviceCgroup::default();
    devices.set_allow(opts.privileged);
    devices.set_access(Some("rwm".into()));
    r.set_devices(Some(vec![devices]));
    if let Some(m) = opts.memory {
        let mut mem = LinuxMemory::default();
        mem.set_limit(Some(m));
        r.set_memory(Some(mem));
    }
    if let Some(c) = opts.cpus {
        if c <= 0.0 {
            return Err(EngineError::Invalid(format!(
                "invalid --cpus {c}: it must be above 0"
            )));
        }
        let period = 100_000u64;
        let mut cpu = LinuxCpu::default();
        cpu.set_quota(Some((c * period as f64) as i64));
        cpu.set_period(Some(period));
        r.set_cpu(Some(cpu));
    }
    if let Some(p) = opts.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(if p <= 0 { -1 } else { p });
        r.set_pids(Some(pids));
    }
    Ok(r)
}

/// `--ulimit`s as the runtime sets them.
fn rlimits(opts: &ContainerConfig) -> Result<Vec<PosixRlimit>, EngineError> {
    opts.ulimits
        .iter()
        .map(|u| {
            u.check()?;
            let typ: PosixRlimitType =
                serde_json::from_value(Value::String(format!("RLIMIT_{}", u.name.to_uppercase())))
                    .map_err(|_| EngineError::Invalid(format!("invalid ulimit {u}")))?;
            let (soft, hard) = u.values();
            Ok(PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft)
                .hard(hard)
                .build()
                .expect("an rlimit has every field"))
        })
        .collect()
}

/// The seccomp filter: Docker's default profile, the user's, or none
/// (unconfined, or privileged without a profile).
fn seccomp(
    opts: &ContainerConfig,
    sec: &crate::options::SecurityOptions,
    caps: &[String],
) -> Result<Option<LinuxSeccomp>, EngineError> {
    use crate::options::Seccomp;
    match &sec.seccomp {
        Seccomp::Unconfined => Ok(None),
        Seccomp::Default if opts.privileged => Ok(None),
        Seccomp::Default => crate::seccomp::from_docker_profile(
            crate::seccomp::DOCKER_DEFAULT_PROFILE,
            caps,
            "amd64",
        )
        .map(Some)
        .map_err(|e| EngineError::Invalid(format!("default seccomp profile: {e}"))),
        Seccomp::Profile(path) => {
            let profile = std::fs::read(path)
                .map_err(|e| EngineError::io(format!("reading seccomp profile {path}"), e))?;
            crate::seccomp::from_docker_profile(&profile, caps, "amd64")
                .map(Some)
                .map_err(|e| EngineError::Invalid(format!("seccomp profile {path}: {e}")))
        }
    }
}

/// The same set as bounding, effective and permitted (none inheritable or
/// ambient), as Docker gives them.
pub fn capability_sets(caps: &[String]) -> Result<LinuxCapabilities, EngineError> {
    let set = caps
        .iter()
        .map(|c| {
            berth_runtime::caps::by_name(c)
                .ok_or_else(|| EngineError::Invalid(format!("unknown capability: {c:?}")))
        })
        .collect::<Result<oci_spec::runtime::Capabilities, _>>()?;
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(set.clone()));
    c.set_effective(Some(set.clone()));
    c.set_permitted(Some(set));
    c.set_inheritable(None);
    c.set_ambient(None);
    Ok(c)
}

/// A pty's size.
pub fn console_size(rows: u16, cols: u16) -> oci_spec::runtime::Box {
    oci_spec::runtime::BoxBuilder::default()
        .height(u32::from(rows))
        .width(u32::from(cols))
        .build()
        .expect("a console size has every field")
}

/// The container's process: what runs, as whom, where, with what.
fn process(
    opts: &ContainerConfig,
    i: &Inputs<'_>,
    caps: &[String],
    sec: &crate::options::SecurityOptions,
) -> Result<Process, EngineError> {
    let args = process_args(opts, i.image);
    if args.is_empty() {
        return Err(EngineError::Invalid(
            "no command specified: the image has no Cmd or Entrypoint; give one after the image name".into(),
        ));
    }
    let mut env = process_env(opts, i.image, i.hostname);
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            if i.user.home.is_empty() {
                "/"
            } else {
                &i.user.home
            }
        ));
    }
    let cwd = opts
        .workdir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| Some(i.image.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(EngineError::Invalid(format!(
            "the working directory {cwd:?} is invalid: it needs to be an absolute path"
        )));
    }
    let mut user = User::default();
    user.set_uid(i.user.uid);
    user.set_gid(i.user.gid);
    user.set_additional_gids(
        (!i.user.additional_gids.is_empty()).then(|| i.user.additional_gids.clone()),
    );
    let rlimits = rlimits(opts)?;
    let mut p = Process::default();
    p.set_terminal(Some(opts.tty));
    p.set_console_size(None);
    p.set_user(user);
    p.set_args(Some(args));
    p.set_env(Some(env));
    p.set_cwd(cwd.into());
    p.set_capabilities(Some(capability_sets(caps)?));
    p.set_no_new_privileges(Some(sec.no_new_privileges));
    p.set_rlimits((!rlimits.is_empty()).then_some(rlimits));
    p.set_oom_score_adj(Some(0));
    p.set_apparmor_profile(None);
    p.set_selinux_label(None);
    Ok(p)
}

/// The whole OCI config, from the parts above.
pub fn derive(opts: &ContainerConfig, i: &Inputs<'_>) -> Result<Spec, EngineError> {
    let caps = check(opts)?;
    let sec = crate::options::SecurityOptions::parse(&opts.security_opt)?;
    let process = process(opts, i, &caps, &sec)?;
    let mounts = mounts(opts, i)?;
    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces(opts, i.join_net)?));
    linux.set_cgroups_path(Some(format!("/berth/{}", i.id).into()));
    linux.set_resources(Some(resources(opts)?));
    linux.set_masked_paths(
        (!opts.privileged).then(|| MASKED.iter().map(|s| s.to_string()).collect()),
    );
    linux.set_readonly_paths(
        (!opts.privileged).then(|| READONLY.iter().map(|s| s.to_string()).collect()),
    );
    linux.set_seccomp(seccomp(opts, &sec, &caps)?);
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_sysctl(None);
    linux.set_devices(None);
    let mut root = Root::default();
    root.set_path(i.rootfs.to_path_buf());
    root.set_readonly(Some(opts.read_only));
    let mut spec = Spec::default();
    spec.set_version("1.2.0".into());
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_hostname(Some(i.hostname.to_string()));
    if let Some(d) = opts.domainname.as_deref().filter(|d| !d.is_empty()) {
        spec.set_domainname(Some(d.to_string()));
    }
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    spec.set_annotations(Some(
        opts.labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_add_and_drop() {
        let o = ContainerConfig {
            cap_add: vec!["sys_admin".into()],
            cap_drop: vec!["CAP_CHOWN".into(), "net_raw".into()],
            ..Default::default()
        };
        let c = capabilities(&o).unwrap();
        assert!(c.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        assert!(!c.contains(&"CAP_NET_RAW".to_string()));
        let o = ContainerConfig {
            cap_drop: vec!["all".into()],
            cap_add: vec!["kill".into()],
            ..Default::default()
        };
        assert_eq!(capabilities(&o).unwrap(), ["CAP_KILL"]);
        let o = ContainerConfig {
            cap_add: vec!["FLY".into()],
            ..Default::default()
        };
        assert!(capabilities(&o)
            .unwrap_err()
            .to_string()
            .contains("CAP_FLY"));
    }

    #[test]
    fn ulimits() {
        let o = ContainerConfig {
            ulimits: vec!["nofile=1024:2048".parse().unwrap()],
            ..Default::default()
        };
        let l = rlimits(&o).unwrap();
        assert_eq!(
            serde_json::to_value(&l).unwrap(),
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}])
        );
    }

    #[test]
    fn volumes() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().to_str().unwrap();
        let v = crate::options::Mount::parse_volume_flag(&format!("{src}:/data:ro")).unwrap();
        let m = user_mount(&v, false).unwrap();
        assert_eq!(
            m.options().clone().unwrap(),
            ["rbind", "rprivate", "ro"].map(String::from)
        );
        let missing =
            crate::options::Mount::parse_flag("type=bind,source=/nonexistent/x,target=/x").unwrap();
        let e = user_mount(&missing, true).unwrap_err();
        assert!(
            e.to_string().contains("bind source path does not exist"),
            "{e}"
        );
    }

    /// oci-spec's types come with defaults of their own (runc's sample
    /// config: inheritable capabilities, a nofile limit, a user
    /// namespace...); none may reach a container.
    #[test]
    fn the_spec_carries_only_what_docker_gives() {
        let d = tempfile::tempdir().unwrap();
        let image = ImageConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        let user = crate::users::User {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/root".into(),
        };
        let spec = derive(
            &ContainerConfig::default(),
            &Inputs {
                id: "abc",
                hostname: "abc",
                rootfs: &d.path().join("merged"),
                dir: d.path(),
                image: &image,
                user: &user,
                store_root: d.path(),
                join_net: None,
            },
        )
        .unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        let p = &v["process"];
        assert!(p.get("rlimits").is_none(), "{p}");
        assert!(p["capabilities"].get("inheritable").is_none(), "{p}");
        assert!(p["capabilities"].get("ambient").is_none(), "{p}");
        assert_eq!(p["noNewPrivileges"], false);
        assert_eq!(p["args"], serde_json::json!(["sh"]));
        assert_eq!(
            p["capabilities"]["bounding"].as_array().unwrap().len(),
            DOCKER_DEFAULT_CAPS.len()
        );
        let l = &v["linux"];
        let ns: Vec<&str> = l["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(!ns.contains(&"user"), "{ns:?}");
        assert!(ns.contains(&"network"), "{ns:?}");
        assert_eq!(l["maskedPaths"], serde_json::json!(MASKED));
        assert!(
            l.get("uidMappings").is_none() && l.get("sysctl").is_none(),
            "{l}"
        );
        assert!(l["seccomp"]["syscalls"].is_array());
        assert_eq!(v["root"]["readonly"], false);
        assert_eq!(v["ociVersion"], "1.2.0");
        assert_eq!(v["mounts"].as_array().unwrap().len(), 10);
    }
}
