//! The OCI runtime config of a container, derived from the image config and
//! the user's options the way Docker derives it (moby's `oci/defaults.go`
//! and `daemon/oci_linux.go`): default capabilities, mounts, masked and
//! read-only paths, the default seccomp profile, device rules.

use std::path::Path;

use serde_json::{json, Value};

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
    let mut caps: Vec<String> = berth_runtime::caps::DOCKER_DEFAULT
        .iter()
        .map(|s| s.to_string())
        .collect();
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
    if opts.memory.is_some_and(|m| m < 6 << 20) {
        return Err(EngineError::Invalid(
            "Minimum memory limit allowed is 6MB".into(),
        ));
    }
    capabilities(opts)
}

fn rlimit(spec: &str) -> Result<Value, EngineError> {
    let bad = || {
        EngineError::Invalid(format!(
            "invalid ulimit {spec:?}: use NAME=SOFT[:HARD], e.g. nofile=1024:2048"
        ))
    };
    let (name, vals) = spec.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = match vals.split_once(':') {
        Some((s, h)) => (s, h),
        None => (vals, vals),
    };
    let parse = |v: &str| -> Result<u64, EngineError> {
        if v == "-1" || v == "unlimited" {
            Ok(u64::MAX)
        } else {
            v.parse().map_err(|_| bad())
        }
    };
    let known = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    if !known.contains(&name) {
        return Err(bad());
    }
    let (soft, hard) = (parse(soft)?, parse(hard)?);
    if soft > hard {
        return Err(EngineError::Invalid(format!(
            "invalid ulimit {spec:?}: the soft limit is above the hard limit"
        )));
    }
    Ok(json!({"type": format!("RLIMIT_{}", name.to_ascii_uppercase()), "soft": soft, "hard": hard}))
}

/// Parses `-v SRC:DST[:OPTS]` for bind mounts (absolute SRC) into an OCI
/// mount. Named and anonymous volumes are resolved at create
/// (`volumes::resolve`) and never reach here.
fn bind_volume(v: &str) -> Result<Value, EngineError> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(EngineError::Invalid(format!(
                "invalid volume {v:?}: use SRC:DST[:OPTIONS]"
            )))
        }
    };
    if !src.starts_with('/') {
        return Err(EngineError::Invalid(format!(
            "invalid volume {v:?}: a named volume here is a bug: volumes are resolved at create"
        )));
    }
    if !dst.starts_with('/') {
        return Err(EngineError::Invalid(format!(
            "invalid volume {v:?}: the container path must be absolute"
        )));
    }
    if !Path::new(src).exists() {
        // Docker creates a missing -v source directory.
        std::fs::create_dir_all(src)
            .map_err(|e| EngineError::io(format!("creating volume source {src}"), e))?;
    }
    let mut o = vec!["rbind".to_string()];
    let mut rw = "rw";
    for opt in opts.split(',').filter(|s| !s.is_empty()) {
        match opt {
            "ro" | "readonly" => rw = "ro",
            "rw" => rw = "rw",
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                o.push(opt.to_string())
            }
            "z" | "Z" | "nocopy" | "consistent" | "cached" | "delegated" => {}
            other => {
                return Err(EngineError::Invalid(format!(
                    "invalid volume {v:?}: unknown option {other:?}"
                )))
            }
        }
    }
    if !o
        .iter()
        .any(|x| x.contains("private") || x.contains("shared") || x.contains("slave"))
    {
        o.push("rprivate".into());
    }
    o.push(rw.to_string());
    Ok(json!({"destination": dst, "type": "bind", "source": src, "options": o}))
}

/// `--mount type=bind|tmpfs,...`.
fn mount_flag(m: &str) -> Result<Value, EngineError> {
    let mut typ = "volume";
    let (mut src, mut dst, mut ro) = (None, None, false);
    let mut size = None;
    let mut mode = None;
    let mut propagation = None;
    for kv in m.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => typ = v,
            "source" | "src" => src = Some(v),
            "destination" | "dst" | "target" => dst = Some(v),
            "readonly" | "ro" => ro = v.is_empty() || v == "true" || v == "1",
            "bind-propagation" => propagation = Some(v),
            "tmpfs-size" => size = Some(v),
            "tmpfs-mode" => mode = Some(v),
            _ => {
                return Err(EngineError::Invalid(format!(
                    "invalid --mount {m:?}: unknown field {k:?}"
                )))
            }
        }
    }
    let dst = dst.ok_or_else(|| {
        EngineError::Invalid(format!("invalid --mount {m:?}: target is required"))
    })?;
    match typ {
        "bind" => {
            let src = src.ok_or_else(|| {
                EngineError::Invalid(format!("invalid --mount {m:?}: source is required"))
            })?;
            if !Path::new(src).exists() {
                return Err(EngineError::Invalid(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {src}"
                )));
            }
            let mut o = vec![
                "rbind".to_string(),
                propagation.unwrap_or("rprivate").to_string(),
            ];
            o.push(if ro { "ro" } else { "rw" }.into());
            Ok(json!({"destination": dst, "type": "bind", "source": src, "options": o}))
        }
        "tmpfs" => {
            let mut o = vec!["nosuid".to_string(), "nodev".into(), "noexec".into()];
            if let Some(s) = size {
                o.push(format!("size={}", crate::config::parse_size(s)?));
            }
            if let Some(md) = mode {
                o.push(format!("mode={md}"));
            }
            if ro {
                o.push("ro".into());
            }
            Ok(json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": o}))
        }
        other => Err(EngineError::Invalid(format!(
            "invalid --mount {m:?}: type {other:?} is not supported (bind, volume, tmpfs)"
        ))),
    }
}

/// The whole OCI config.
pub fn derive(opts: &ContainerConfig, i: &Inputs<'_>) -> Result<Value, EngineError> {
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
    let caps = check(opts)?;
    let mut no_new_privs = false;
    let mut seccomp: Option<Value> = None;
    let mut seccomp_set = false;
    for o in &opts.security_opt {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
        match k {
            "no-new-privileges" => no_new_privs = v.is_empty() || v == "true",
            "seccomp" if v == "unconfined" => seccomp_set = true,
            "seccomp" => {
                let profile = std::fs::read(v)
                    .map_err(|e| EngineError::io(format!("reading seccomp profile {v}"), e))?;
                let sc = berth_runtime::seccomp::from_docker_profile(&profile, &caps, "amd64")
                    .map_err(|e| EngineError::Invalid(format!("seccomp profile {v}: {e}")))?;
                seccomp = Some(serde_json::to_value(sc).expect("serializes"));
                seccomp_set = true;
            }
            "apparmor" | "label" => {
                tracing::warn!(option = %o, "security option ignored: AppArmor/SELinux are not supported by berth");
            }
            _ => {
                return Err(EngineError::Invalid(format!(
                "invalid --security-opt {o:?}: use seccomp=PROFILE|unconfined or no-new-privileges"
            )))
            }
        }
    }
    if !seccomp_set && !opts.privileged {
        let sc = berth_runtime::seccomp::from_docker_profile(
            berth_runtime::seccomp::DOCKER_DEFAULT_PROFILE,
            &caps,
            "amd64",
        )
        .map_err(|e| EngineError::Invalid(format!("default seccomp profile: {e}")))?;
        seccomp = Some(serde_json::to_value(sc).expect("serializes"));
    }

    let dir = i.dir.to_string_lossy();
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if opts.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if opts.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
    ];
    for f in ["resolv.conf", "hostname", "hosts"] {
        mounts.push(json!({"destination": format!("/etc/{f}"), "type": "bind",
            "source": format!("{dir}/{f}"), "options": ["rbind", "rprivate"]}));
    }
    for t in &opts.tmpfs {
        let (dst, o) = t.split_once(':').unwrap_or((t.as_str(), ""));
        if !dst.starts_with('/') {
            return Err(EngineError::Invalid(format!(
                "invalid --tmpfs {t:?}: the path must be absolute"
            )));
        }
        let mut options = vec!["nosuid".to_string(), "nodev".into(), "noexec".into()];
        options.extend(o.split(',').filter(|s| !s.is_empty()).map(str::to_string));
        mounts.push(
            json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": options}),
        );
    }
    for v in &opts.volumes {
        mounts.push(bind_volume(v)?);
    }
    for v in &opts.volume_mounts {
        let src = crate::volumes::data_dir(i.store_root, &v.name);
        mounts.push(json!({"destination": v.target, "type": "bind",
            "source": src.to_string_lossy(),
            "options": ["rbind", "rprivate", if v.readonly { "ro" } else { "rw" }]}));
    }
    for m in &opts.mounts {
        mounts.push(mount_flag(m)?);
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match opts.network.as_str() {
        "host" => {}
        "" | "none" => namespaces.push(json!({"type": "network"})),
        "default" | "bridge" => {
            return Err(EngineError::Invalid(format!(
                "network {:?} is not available yet: berth has no bridge networking; use --network none \
                 (a private namespace with loopback, the default) or --network host",
                opts.network
            )))
        }
        other => {
            return Err(EngineError::Invalid(format!(
                "network {other:?} not found: berth has none, host (bridge networks come later)"
            )))
        }
    }
    if berth_runtime::cgroups::host_mode() == "v2" {
        // Docker's default on cgroup v2 hosts: a private cgroup namespace.
        namespaces.push(json!({"type": "cgroup"}));
    }

    let mut resources = json!({
        "devices": [{"allow": false, "access": "rwm"}],
    });
    if opts.privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    if let Some(m) = opts.memory {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(c) = opts.cpus {
        if c <= 0.0 {
            return Err(EngineError::Invalid(format!(
                "invalid --cpus {c}: it must be above 0"
            )));
        }
        let period = 100_000u64;
        resources["cpu"] = json!({"quota": (c * period as f64) as i64, "period": period});
    }
    if let Some(p) = opts.pids_limit {
        resources["pids"] = json!({"limit": if p <= 0 { -1 } else { p }});
    }

    let rlimits = opts
        .ulimits
        .iter()
        .map(|u| rlimit(u))
        .collect::<Result<Vec<_>, _>>()?;

    let caps_v: Vec<Value> = caps.iter().map(|c| json!(c)).collect();
    let mut process = json!({
        "terminal": opts.tty,
        "user": {"uid": i.user.uid, "gid": i.user.gid},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps_v, "effective": caps_v, "permitted": caps_v},
        "noNewPrivileges": no_new_privs,
        "oomScoreAdj": 0,
    });
    if !i.user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(i.user.additional_gids);
    }
    if !rlimits.is_empty() {
        process["rlimits"] = json!(rlimits);
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": format!("/berth/{}", i.id),
        "resources": resources,
    });
    if !opts.privileged {
        linux["maskedPaths"] = json!(MASKED);
        linux["readonlyPaths"] = json!(READONLY);
    }
    if let Some(sc) = seccomp {
        linux["seccomp"] = sc;
    }
    let mut annotations = serde_json::Map::new();
    for (k, v) in &opts.labels {
        annotations.insert(k.clone(), json!(v));
    }
    Ok(json!({
        "ociVersion": "1.2.0",
        "process": process,
        "root": {"path": i.rootfs.to_string_lossy(), "readonly": opts.read_only},
        "hostname": i.hostname,
        "mounts": mounts,
        "linux": linux,
        "annotations": annotations,
    }))
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
        assert_eq!(
            rlimit("nofile=1024:2048").unwrap(),
            json!({"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048})
        );
        assert!(rlimit("nofile=10:5").is_err());
        assert!(rlimit("bogus=1").is_err());
        assert!(rlimit("nofile").is_err());
    }

    #[test]
    fn volumes() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().to_str().unwrap();
        let v = bind_volume(&format!("{src}:/data:ro")).unwrap();
        assert_eq!(v["options"], json!(["rbind", "rprivate", "ro"]));
        assert!(bind_volume("name:/data").is_err());
        assert!(bind_volume(&format!("{src}:rel")).is_err());
        let e = mount_flag("type=bind,source=/nonexistent/x,target=/x").unwrap_err();
        assert!(
            e.to_string().contains("bind source path does not exist"),
            "{e}"
        );
    }
}
