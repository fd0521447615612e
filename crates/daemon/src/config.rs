//! `/etc/berth/daemon.json`: dockerd's configuration file, with the keys
//! that apply to berth. A key dockerd knows but berth does not apply is
//! a warning; a key nobody knows is an error, as dockerd makes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_engine::options::Ulimit;
use serde::Deserialize;

/// Where the file is looked for when no `--config-file` is given.
pub const DEFAULT_PATH: &str = "/etc/berth/daemon.json";

/// One `default-ulimits` entry: `{"Name": "nofile", "Soft": 1024, "Hard": 2048}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UlimitEntry {
    #[serde(default)]
    name: Option<String>,
    soft: i64,
    hard: i64,
}

/// The file's keys berth applies.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct DaemonConfig {
    pub hosts: Vec<String>,
    pub data_root: Option<PathBuf>,
    pub exec_root: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    pub log_driver: Option<String>,
    pub log_opts: BTreeMap<String, String>,
    default_ulimits: BTreeMap<String, UlimitEntry>,
    /// Containers keep running while the daemon is down (berth's way:
    /// each has its own monitor); `false` stops them when it stops.
    pub live_restore: Option<bool>,
    pub tls: Option<bool>,
    pub tlsverify: Option<bool>,
    pub tlscacert: Option<PathBuf>,
    pub tlscert: Option<PathBuf>,
    pub tlskey: Option<PathBuf>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// dockerd's keys that berth does not apply (yet); the file may hold
/// them.
const NOT_APPLIED: &[&str] = &[
    "allow-nondistributable-artifacts",
    "api-cors-header",
    "bip",
    "bridge",
    "builder",
    "containerd",
    "debug",
    "containerd-namespace",
    "containerd-plugin-namespace",
    "cpu-rt-period",
    "cpu-rt-runtime",
    "default-address-pools",
    "default-cgroupns-mode",
    "default-gateway",
    "default-gateway-v6",
    "default-ipc-mode",
    "default-runtime",
    "default-shm-size",
    "dns",
    "dns-opts",
    "dns-search",
    "exec-opts",
    "experimental",
    "features",
    "fixed-cidr",
    "fixed-cidr-v6",
    "group",
    "init",
    "init-path",
    "ip",
    "ip-forward",
    "ip-masq",
    "ip6tables",
    "iptables",
    "ipv6",
    "labels",
    "log-level",
    "max-concurrent-downloads",
    "max-concurrent-uploads",
    "max-download-attempts",
    "metrics-addr",
    "mtu",
    "node-generic-resources",
    "oom-score-adjust",
    "raw-logs",
    "runtimes",
    "shutdown-timeout",
    "storage-driver",
    "storage-opts",
    "swarm-default-advertise-addr",
    "userland-proxy",
    "userland-proxy-path",
];

/// dockerd's security settings: a file that sets one to anything but its
/// default is refused (berth does not apply them, and starting without
/// them would silently weaken what the file asked for).
const SECURITY: &[(&str, &str)] = &[
    ("authorization-plugins", "[]"),
    ("cgroup-parent", "\"\""),
    ("icc", "true"),
    ("no-new-privileges", "false"),
    ("seccomp-profile", "\"\""),
    ("selinux-enabled", "false"),
    ("userns-remap", "\"\""),
];

impl DaemonConfig {
    /// Reads `path`. A missing file is no configuration unless it was
    /// asked for by name (`explicit`). Returns the warnings to show.
    pub fn load(path: &Path, explicit: bool) -> Result<(DaemonConfig, Vec<String>), String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok((DaemonConfig::default(), Vec::new()))
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        DaemonConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The file's text read; the warnings for keys berth does not apply.
    pub fn parse(text: &str) -> Result<(DaemonConfig, Vec<String>), String> {
        if text.trim().is_empty() {
            return Ok((DaemonConfig::default(), Vec::new()));
        }
        let c: DaemonConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (key, default) in SECURITY {
            if let Some(v) = c.other.get(*key) {
                let default: serde_json::Value =
                    serde_json::from_str(default).expect("a JSON default");
                if *v != default && !v.is_null() {
                    return Err(format!(
                        "{key} is set to {v}, and berth does not apply it: remove it, or run dockerd for it"
                    ));
                }
            }
        }
        let unknown: Vec<&str> = c
            .other
            .keys()
            .map(String::as_str)
            .filter(|k| !NOT_APPLIED.contains(k) && !SECURITY.iter().any(|(s, _)| s == k))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "the following directives don't match any configuration option: {}",
                unknown.join(", ")
            ));
        }
        let warnings = c
            .other
            .keys()
            .map(|k| format!("daemon configuration key {k:?} is not applied by berth"))
            .collect();
        for (k, u) in &c.default_ulimits {
            if u.name.as_deref().is_some_and(|n| n != k) {
                return Err(format!(
                    "default-ulimits: the entry {k:?} names another limit ({:?})",
                    u.name.as_deref().unwrap_or("")
                ));
            }
        }
        Ok((c, warnings))
    }

    /// `default-ulimits` as the options keep them.
    pub fn ulimits(&self) -> Vec<Ulimit> {
        self.default_ulimits
            .iter()
            .map(|(name, u)| Ulimit {
                name: name.clone(),
                soft: u.soft,
                hard: u.hard,
            })
            .collect()
    }
}

/// dockerd's refusal of a setting given twice: as a flag and in the
/// file. `both` lists `(key, flag's value, file's value)` of each such
/// setting.
pub fn conflicts(both: &[(&str, String, String)]) -> Result<(), String> {
    if both.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = both
        .iter()
        .map(|(k, flag, file)| format!("{k}: (from flag: {flag}, from file: {file})"))
        .collect();
    Err(format!(
        "the following directives are specified both as a flag and in the configuration file: {}",
        parts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerds_keys_are_read_and_unknown_ones_refused() {
        let (c, warnings) = DaemonConfig::parse(
            r#"{"hosts": ["unix:///tmp/x.sock"], "data-root": "/srv/berth",
                "insecure-registries": ["reg:5000"], "registry-mirrors": ["http://127.0.0.1:5001"],
                "log-driver": "json-file", "log-opts": {"max-size": "10m"},
                "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 2048}},
                "live-restore": false, "storage-driver": "overlay2"}"#,
        )
        .unwrap();
        assert_eq!(c.hosts, ["unix:///tmp/x.sock"]);
        assert_eq!(c.data_root.as_deref(), Some(Path::new("/srv/berth")));
        assert_eq!(c.registry_mirrors, ["http://127.0.0.1:5001"]);
        assert_eq!(c.log_opts["max-size"], "10m");
        assert_eq!(
            c.ulimits(),
            [Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048
            }]
        );
        assert_eq!(c.live_restore, Some(false));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("storage-driver"), "{warnings:?}");

        for refused in [
            r#"{"userns-remap": "default"}"#,
            r#"{"authorization-plugins": ["authz"]}"#,
            r#"{"no-new-privileges": true}"#,
            r#"{"icc": false}"#,
        ] {
            let e = DaemonConfig::parse(refused).unwrap_err();
            assert!(e.contains("berth does not apply it"), "{e}");
        }
        assert!(DaemonConfig::parse(r#"{"icc": true, "userns-remap": ""}"#).is_ok());
        let e = DaemonConfig::parse(r#"{"hostz": []}"#).unwrap_err();
        assert!(
            e.contains("don't match any configuration option: hostz"),
            "{e}"
        );
        let e = DaemonConfig::parse(r#"{"hosts": "unix:///x"}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        let e = DaemonConfig::parse(
            r#"{"default-ulimits": {"nofile": {"Name": "nproc", "Soft": 1, "Hard": 1}}}"#,
        )
        .unwrap_err();
        assert!(e.contains("names another limit"), "{e}");
        assert!(DaemonConfig::parse("  \n").is_ok());
    }

    #[test]
    fn a_missing_file_matters_only_when_named() {
        let p = Path::new("/nonexistent/berth/daemon.json");
        assert!(DaemonConfig::load(p, false).is_ok());
        assert!(DaemonConfig::load(p, true)
            .unwrap_err()
            .contains("cannot read"));
    }

    #[test]
    fn a_setting_given_twice_is_refused() {
        assert!(conflicts(&[]).is_ok());
        let e = conflicts(&[("hosts", "[a]".into(), "[b]".into())]).unwrap_err();
        assert!(e.contains("hosts: (from flag: [a], from file: [b])"), "{e}");
    }
}
