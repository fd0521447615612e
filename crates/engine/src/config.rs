//! What a container is made of: the user's options (docker run's flags) and
//! the image's config, merged the way Docker merges them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// The options of `berth create`/`run`, kept with the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ContainerConfig {
    /// The command after the image name (replaces the image's Cmd).
    pub cmd: Vec<String>,
    /// `--entrypoint` (`[""]` clears the image's; none or `[]` keeps it).
    #[serde(deserialize_with = "crate::options::de_entrypoint")]
    pub entrypoint: Option<Vec<String>>,
    /// `-e` and `--env-file` entries, in order.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// `--domainname`: the UTS domain name, and the host's name in
    /// /etc/hosts is `HOSTNAME.DOMAIN`.
    #[serde(default)]
    pub domainname: Option<String>,
    /// `--add-host NAME:IP`, as given.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// `--dns`: the nameservers of /etc/resolv.conf instead of the host's.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--dns-search`: its search domains ("." for none).
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// `--dns-option`: its options.
    #[serde(default)]
    pub dns_options: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub tty: bool,
    pub interactive: bool,
    /// The Engine API's `StdinOnce`: the container's stdin closes when
    /// the first attached client that wrote to it closes its side.
    pub stdin_once: bool,
    /// The Engine API's `ConsoleSize`: rows and columns of a tty before
    /// the first resize.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_size: Option<(u16, u16)>,
    pub read_only: bool,
    /// `--tmpfs PATH[:OPTIONS]`, as given (HostConfig's `Tmpfs`).
    pub tmpfs: Vec<String>,
    /// `-v SRC:DST[:OPTS]` binds, as given (HostConfig's `Binds`, shown
    /// by inspect); their mounts are in `mounts`.
    pub volumes: Vec<String>,
    /// Bind and tmpfs mounts (`--mount`, `-v` binds, `--tmpfs`); volumes
    /// are resolved at create into `volume_mounts`.
    #[serde(deserialize_with = "crate::options::de_mounts")]
    pub mounts: Vec<crate::options::Mount>,
    /// Bytes.
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security_opt: Vec<String>,
    pub init: bool,
    #[serde(deserialize_with = "crate::options::de_ulimits")]
    pub ulimits: Vec<crate::options::Ulimit>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    #[serde(deserialize_with = "crate::options::de_restart")]
    pub restart: crate::options::RestartPolicy,
    /// "none", "host" or "" (a private namespace with loopback).
    pub network: String,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--log-driver`: "json-file" (also "") or "none".
    pub log_driver: String,
    /// `--log-opt` (json-file's max-size, max-file).
    pub log_opts: BTreeMap<String, String>,
    /// `--health-*` and `--no-healthcheck`.
    pub health: HealthFlags,
    /// Volumes (named and anonymous) resolved at create.
    pub volume_mounts: Vec<VolumeMount>,
    /// The resolved process, for inspect: entrypoint + cmd as run.
    pub path: String,
    pub args: Vec<String>,
}

/// `--health-*` flags as given (each overrides the image's field).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HealthFlags {
    pub cmd: Option<String>,
    /// The Engine API's `Test` (`["CMD", ...]`, `["CMD-SHELL", cmd]`,
    /// `["NONE"]`), over `cmd` and the image's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub retries: Option<u32>,
    pub disabled: bool,
}

/// A volume mounted in a container (kept in its config).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VolumeMount {
    pub name: String,
    pub target: String,
    pub readonly: bool,
    /// `nocopy`: do not fill a new volume from the image.
    pub nocopy: bool,
    pub anonymous: bool,
}

/// The parts of an image config `berth run` uses, including Docker's
/// extensions (Healthcheck, Shell) that the OCI config type lacks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ImageConfig {
    pub user: String,
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub stop_signal: String,
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    pub healthcheck: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ImageFile {
    config: Option<ImageConfig>,
}

impl ImageConfig {
    /// The `config` object of an image config blob.
    pub fn parse(blob: &[u8]) -> Result<ImageConfig, EngineError> {
        let f: ImageFile = serde_json::from_slice(blob)
            .map_err(|e| EngineError::Invalid(format!("image config: {e}")))?;
        Ok(f.config.unwrap_or_default())
    }
}

/// Docker's rule: `--entrypoint` replaces the image's entrypoint and then
/// also drops the image's Cmd; a command given replaces Cmd.
pub fn process_args(opts: &ContainerConfig, image: &ImageConfig) -> Vec<String> {
    let (entrypoint, image_cmd): (Vec<String>, Vec<String>) = match &opts.entrypoint {
        Some(e) if e.len() == 1 && e[0].is_empty() => (Vec::new(), Vec::new()),
        Some(e) if !e.is_empty() => (e.clone(), Vec::new()),
        _ => (
            image.entrypoint.clone().unwrap_or_default(),
            image.cmd.clone().unwrap_or_default(),
        ),
    };
    let cmd = if opts.cmd.is_empty() {
        image_cmd
    } else {
        opts.cmd.clone()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// The default PATH Docker sets when neither the image nor the user does.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process environment: PATH default, HOSTNAME, TERM with a tty, the
/// image's env, then the user's (later entries win, per variable).
pub fn process_env(opts: &ContainerConfig, image: &ImageConfig, hostname: &str) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |entry: &str| {
        let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
        match out.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => out.push((k.to_string(), v.to_string())),
        }
    };
    set(&format!("PATH={DEFAULT_PATH}"));
    set(&format!("HOSTNAME={hostname}"));
    if opts.tty {
        set("TERM=xterm");
    }
    for e in &image.env {
        set(e);
    }
    for e in &opts.env {
        set(e);
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Parses docker's `-m` sizes: `64m`, `1g`, `512k`, `1024` (bytes); b, k, m,
/// g, t, with an optional trailing "b".
pub use crate::options::parse_size;

#[cfg(test)]
mod tests {
    use super::*;

    fn image(ep: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        ImageConfig {
            entrypoint: ep.map(|v| v.iter().map(|s| s.to_string()).collect()),
            cmd: cmd.map(|v| v.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn opts(ep: Option<&str>, cmd: &[&str]) -> ContainerConfig {
        ContainerConfig {
            entrypoint: ep.map(|e| vec![e.to_string()]),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_rules() {
        let img = image(Some(&["/ep", "-x"]), Some(&["a", "b"]));
        assert_eq!(
            process_args(&opts(None, &[]), &img),
            ["/ep", "-x", "a", "b"]
        );
        assert_eq!(process_args(&opts(None, &["c"]), &img), ["/ep", "-x", "c"]);
        // --entrypoint drops the image's Cmd too.
        assert_eq!(process_args(&opts(Some("sh"), &[]), &img), ["sh"]);
        assert_eq!(
            process_args(&opts(Some("sh"), &["-c", "x"]), &img),
            ["sh", "-c", "x"]
        );
        assert_eq!(process_args(&opts(Some(""), &["ls"]), &img), ["ls"]);
        let img = image(None, Some(&["sh"]));
        assert_eq!(process_args(&opts(None, &[]), &img), ["sh"]);
        assert_eq!(process_args(&opts(None, &["true"]), &img), ["true"]);
        // The API's list form; an empty list keeps the image's.
        let img = image(Some(&["/ep"]), Some(&["a"]));
        let list = ContainerConfig {
            entrypoint: Some(vec!["sh".into(), "-c".into()]),
            cmd: vec!["echo hi".into()],
            ..Default::default()
        };
        assert_eq!(process_args(&list, &img), ["sh", "-c", "echo hi"]);
        let empty = ContainerConfig {
            entrypoint: Some(Vec::new()),
            ..Default::default()
        };
        assert_eq!(process_args(&empty, &img), ["/ep", "a"]);
    }

    /// Records written when the entrypoint was one string still load.
    #[test]
    fn an_entrypoint_kept_as_one_string_loads_as_a_list() {
        let old: ContainerConfig =
            serde_json::from_str(r#"{"entrypoint": "", "cmd": ["ls"]}"#).unwrap();
        assert_eq!(old.entrypoint, Some(vec![String::new()]));
        let old: ContainerConfig = serde_json::from_str(r#"{"entrypoint": "/bin/sh"}"#).unwrap();
        assert_eq!(old.entrypoint, Some(vec!["/bin/sh".to_string()]));
        let none: ContainerConfig = serde_json::from_str(r#"{"entrypoint": null}"#).unwrap();
        assert_eq!(none.entrypoint, None);
        let absent: ContainerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.entrypoint, None);
    }

    #[test]
    fn env_merge() {
        let img = ImageConfig {
            env: vec!["PATH=/img".into(), "A=1".into(), "B=2".into()],
            ..Default::default()
        };
        let o = ContainerConfig {
            env: vec!["B=3".into(), "C=".into()],
            tty: true,
            ..Default::default()
        };
        assert_eq!(
            process_env(&o, &img, "h"),
            ["PATH=/img", "HOSTNAME=h", "TERM=xterm", "A=1", "B=3", "C="]
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512KB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        for bad in ["12q", "", "m", "-1m", "abc"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
