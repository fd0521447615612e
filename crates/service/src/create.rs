//! `POST /containers/create`'s body (the Engine API's `Config` with its
//! `HostConfig` and `NetworkingConfig`) read into berth's options: what
//! docker's daemon takes from each field, unknown fields ignored as it
//! ignores them.

use std::collections::BTreeMap;

use berth_engine::config::{ContainerConfig, HealthFlags};
use berth_engine::options::{Mount, RestartPolicy, Ulimit};
use serde::Deserialize;
use serde_json::Value;

use crate::containers::CreateRequest;
use crate::{Error, Result};

/// A list that Go clients send as a list, a string, or null.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum StrList {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl StrList {
    fn into_vec(self) -> Option<Vec<String>> {
        match self {
            StrList::None => None,
            StrList::One(s) => Some(vec![s]),
            StrList::Many(v) => Some(v),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HealthConfig {
    pub test: Option<Vec<String>>,
    /// Nanoseconds; 0 inherits.
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub retries: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub typ: String,
    pub config: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HostConfigBody {
    pub binds: Option<Vec<String>>,
    pub mounts: Option<Vec<Mount>>,
    pub tmpfs: Option<BTreeMap<String, String>>,
    pub memory: i64,
    pub nano_cpus: i64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
    pub pids_limit: Option<i64>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub privileged: bool,
    pub security_opt: Option<Vec<String>>,
    pub init: Option<bool>,
    pub ulimits: Option<Vec<Ulimit>>,
    pub restart_policy: Option<RestartPolicy>,
    pub network_mode: String,
    pub auto_remove: bool,
    pub log_config: Option<LogConfig>,
    pub readonly_rootfs: bool,
    pub port_bindings: Option<BTreeMap<String, Value>>,
    pub publish_all_ports: bool,
    pub extra_hosts: Option<Vec<String>>,
    pub dns: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
}

/// The body of `POST /containers/create`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CreateBody {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    /// `[rows, columns]`.
    pub console_size: Option<Vec<u64>>,
    pub env: Option<Vec<String>>,
    pub cmd: StrList,
    pub entrypoint: StrList,
    pub image: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub working_dir: String,
    pub stop_signal: String,
    pub stop_timeout: Option<i64>,
    pub healthcheck: Option<HealthConfig>,
    /// Anonymous volumes: `{"/data": {}}`.
    pub volumes: Option<BTreeMap<String, Value>>,
    pub network_disabled: bool,
    pub host_config: Option<HostConfigBody>,
}

/// CPUs from `NanoCpus`, else from `CpuQuota` over `CpuPeriod`.
pub fn cpus_of(nano_cpus: i64, quota: i64, period: i64) -> Option<f64> {
    if nano_cpus > 0 {
        Some(nano_cpus as f64 / 1e9)
    } else if quota > 0 {
        let period = if period > 0 { period } else { 100_000 };
        Some(quota as f64 / period as f64)
    } else {
        None
    }
}

/// The body of `POST /containers/{id}/update`: the resources and restart
/// policy to change; a zero (or absent) field is left as it is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct UpdateBody {
    pub memory: i64,
    pub nano_cpus: i64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
    pub pids_limit: Option<i64>,
    /// An empty name (what the docker CLI sends when `--restart` is not
    /// given) leaves the policy as it is.
    pub restart_policy: Option<UpdateRestart>,
    pub cpu_shares: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub blkio_weight: i64,
    pub memory_reservation: i64,
    pub memory_swap: i64,
    pub kernel_memory: i64,
    pub cpu_realtime_period: i64,
    pub cpu_realtime_runtime: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct UpdateRestart {
    pub name: String,
    pub maximum_retry_count: u32,
}

impl UpdateRestart {
    fn policy(self) -> Result<Option<RestartPolicy>> {
        if self.name.is_empty() {
            return Ok(None);
        }
        serde_json::from_value(serde_json::json!({
            "Name": self.name,
            "MaximumRetryCount": self.maximum_retry_count
        }))
        .map(Some)
        .map_err(|_| {
            Error::invalid(format!(
                "invalid restart policy {:?}: use no, always, unless-stopped or on-failure",
                self.name
            ))
        })
    }
}

impl UpdateBody {
    /// The engine's update; a setting berth cannot apply is refused, not
    /// ignored.
    pub fn into_update(self) -> Result<berth_engine::update::Update> {
        let unsupported = [
            ("CpuShares (--cpu-shares)", self.cpu_shares != 0),
            ("CpusetCpus (--cpuset-cpus)", !self.cpuset_cpus.is_empty()),
            ("CpusetMems (--cpuset-mems)", !self.cpuset_mems.is_empty()),
            ("BlkioWeight (--blkio-weight)", self.blkio_weight != 0),
            (
                "MemoryReservation (--memory-reservation)",
                self.memory_reservation != 0,
            ),
            ("MemorySwap (--memory-swap)", self.memory_swap > 0),
            ("KernelMemory (--kernel-memory)", self.kernel_memory != 0),
            (
                "CpuRealtimePeriod (--cpu-rt-period)",
                self.cpu_realtime_period != 0,
            ),
            (
                "CpuRealtimeRuntime (--cpu-rt-runtime)",
                self.cpu_realtime_runtime != 0,
            ),
        ];
        let named: Vec<&str> = unsupported
            .iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| *n)
            .collect();
        if !named.is_empty() {
            return Err(Error::invalid(format!(
                "berth cannot update {}: it updates memory, cpus, pids-limit and the restart policy",
                named.join(", ")
            )));
        }
        if self.memory < 0 {
            return Err(Error::invalid("Memory must not be negative"));
        }
        Ok(berth_engine::update::Update {
            memory: (self.memory > 0).then_some(self.memory),
            cpus: cpus_of(self.nano_cpus, self.cpu_quota, self.cpu_period),
            pids_limit: self.pids_limit.filter(|p| *p != 0),
            restart: match self.restart_policy {
                Some(r) => r.policy()?,
                None => None,
            },
        })
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Nanoseconds as a duration text the options keep; 0 inherits.
fn nanos(n: i64, field: &str) -> Result<Option<String>> {
    match n {
        0 => Ok(None),
        n if n < 0 => Err(Error::invalid(format!(
            "Healthcheck.{field} must not be negative"
        ))),
        n => Ok(Some(format!("{n}ns"))),
    }
}

/// What a daemon's configuration gives containers that do not say
/// (dockerd's `log-driver`, `log-opts` and `default-ulimits`).
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// The log driver of a container whose `LogConfig.Type` is empty.
    pub log_driver: String,
    /// Its options, when the container gives none.
    pub log_opts: BTreeMap<String, String>,
    /// Limits a container has unless it sets the same one itself.
    pub ulimits: Vec<Ulimit>,
}

impl Defaults {
    /// Defaults every container could be created with: a log driver
    /// berth has, its options, limits the kernel knows.
    pub fn check(&self) -> Result<()> {
        for u in &self.ulimits {
            u.check()?;
        }
        let c = ContainerConfig {
            log_driver: if self.log_driver == "json-file" {
                String::new()
            } else {
                self.log_driver.clone()
            },
            log_opts: self.log_opts.clone(),
            ..Default::default()
        };
        berth_engine::spec::check(&c)?;
        Ok(())
    }

    /// The container's log configuration: its own, or the defaults'.
    fn log(&self, own: LogConfig) -> LogConfig {
        if !own.typ.is_empty() {
            return own;
        }
        LogConfig {
            typ: self.log_driver.clone(),
            config: match own.config {
                Some(c) if !c.is_empty() => Some(c),
                _ => Some(self.log_opts.clone()),
            },
        }
    }

    /// The container's limits with the defaults it does not override.
    fn ulimits(&self, own: Vec<Ulimit>) -> Vec<Ulimit> {
        let mut all: Vec<Ulimit> = self
            .ulimits
            .iter()
            .filter(|d| !own.iter().any(|u| u.name == d.name))
            .cloned()
            .collect();
        all.extend(own);
        all
    }
}

impl CreateBody {
    /// The request this body makes, for a container named `name`.
    pub fn into_request(self, name: Option<String>) -> Result<CreateRequest> {
        self.into_request_with(name, &Defaults::default())
    }

    /// `into_request` with a daemon's defaults for what the body leaves
    /// out.
    pub fn into_request_with(
        self,
        name: Option<String>,
        defaults: &Defaults,
    ) -> Result<CreateRequest> {
        if self.image.is_empty() {
            return Err(Error::invalid("no image given: Config.Image is empty"));
        }
        let h = self.host_config.unwrap_or_default();
        if h.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) || h.publish_all_ports {
            return Err(Error::invalid(
                "published ports need bridge networking, which berth does not have yet; use NetworkMode \"host\" to reach the container's ports",
            ));
        }
        let network = match h.network_mode.as_str() {
            _ if self.network_disabled => "none".to_string(),
            // docker's "default" is its bridge; berth's default is a
            // private namespace (the bridge comes with networking).
            "" | "default" | "bridge" => String::new(),
            "host" | "none" => h.network_mode.clone(),
            n if n.starts_with("container:") => n.to_string(),
            other => {
                return Err(Error::invalid(format!(
                    "network {other} not found: berth has host and none (user networks come with bridge networking)"
                )))
            }
        };
        let cpus = cpus_of(h.nano_cpus, h.cpu_quota, h.cpu_period);
        let mut health = HealthFlags::default();
        if let Some(hc) = self.healthcheck {
            if hc
                .test
                .as_deref()
                .and_then(|t| t.first())
                .map(String::as_str)
                == Some("NONE")
            {
                health.disabled = true;
            } else {
                health.test = hc.test.filter(|t| !t.is_empty());
            }
            health.interval = nanos(hc.interval, "Interval")?;
            health.timeout = nanos(hc.timeout, "Timeout")?;
            health.start_period = nanos(hc.start_period, "StartPeriod")?;
            if hc.retries < 0 {
                return Err(Error::invalid("Healthcheck.Retries must not be negative"));
            }
            health.retries = (hc.retries > 0).then_some(hc.retries as u32);
        }
        let mounts = h.mounts.unwrap_or_default();
        let binds = h.binds.unwrap_or_default();
        // Config.Volumes: anonymous volumes at these paths, unless a bind
        // or mount covers the path.
        let mut volumes = binds.clone();
        for path in self.volumes.unwrap_or_default().into_keys() {
            let covered = mounts.iter().any(|m| m.target == path)
                || binds.iter().any(|b| {
                    let mut parts = b.split(':');
                    parts.next();
                    parts.next() == Some(path.as_str())
                });
            if !covered {
                volumes.push(path);
            }
        }
        for m in &mounts {
            if !m.target.starts_with('/') {
                return Err(Error::invalid(format!(
                    "invalid mount config: the mount target {:?} is not an absolute path",
                    m.target
                )));
            }
        }
        let tmpfs: Vec<String> = h
            .tmpfs
            .unwrap_or_default()
            .into_iter()
            .map(|(p, o)| if o.is_empty() { p } else { format!("{p}:{o}") })
            .collect();
        let log = defaults.log(h.log_config.unwrap_or_default());
        let config = ContainerConfig {
            cmd: self.cmd.into_vec().unwrap_or_default(),
            entrypoint: self.entrypoint.into_vec(),
            env: self.env.unwrap_or_default(),
            workdir: non_empty(self.working_dir),
            user: non_empty(self.user),
            hostname: non_empty(self.hostname),
            domainname: non_empty(self.domainname),
            extra_hosts: h.extra_hosts.unwrap_or_default(),
            dns: h.dns.unwrap_or_default(),
            dns_search: h.dns_search.unwrap_or_default(),
            dns_options: h.dns_options.unwrap_or_default(),
            labels: self.labels.unwrap_or_default(),
            tty: self.tty,
            interactive: self.open_stdin,
            stdin_once: self.stdin_once,
            console_size: match self.console_size.as_deref() {
                Some([h, w]) if *h > 0 && *w > 0 => Some((
                    (*h).min(u16::MAX as u64) as u16,
                    (*w).min(u16::MAX as u64) as u16,
                )),
                _ => None,
            },
            read_only: h.readonly_rootfs,
            tmpfs,
            volumes,
            mounts,
            memory: (h.memory > 0).then_some(h.memory),
            cpus,
            pids_limit: h.pids_limit.filter(|n| *n != 0),
            cap_add: h.cap_add.unwrap_or_default(),
            cap_drop: h.cap_drop.unwrap_or_default(),
            privileged: h.privileged,
            security_opt: h.security_opt.unwrap_or_default(),
            init: h.init.unwrap_or(false),
            ulimits: defaults.ulimits(h.ulimits.unwrap_or_default()),
            stop_signal: non_empty(self.stop_signal),
            stop_timeout: self.stop_timeout,
            restart: h.restart_policy.unwrap_or_default(),
            network,
            auto_remove: h.auto_remove,
            log_driver: if log.typ == "json-file" {
                String::new()
            } else {
                log.typ
            },
            log_opts: log.config.unwrap_or_default(),
            health,
            ..Default::default()
        };
        Ok(CreateRequest {
            image: self.image,
            name,
            config,
            pull: crate::pull::PullPolicy::Never,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(host: serde_json::Value) -> CreateBody {
        serde_json::from_value(serde_json::json!({"Image": "busybox", "HostConfig": host})).unwrap()
    }

    #[test]
    fn a_daemons_defaults_fill_what_the_request_leaves_out() {
        let d = Defaults {
            log_driver: "json-file".into(),
            log_opts: [("max-size".to_string(), "1k".to_string())].into(),
            ulimits: vec![
                "nofile=100:200".parse().unwrap(),
                "nproc=10:20".parse().unwrap(),
            ],
        };
        let c = body(serde_json::json!({"Ulimits": [{"Name": "nofile", "Soft": 5, "Hard": 6}]}))
            .into_request_with(None, &d)
            .unwrap()
            .config;
        assert_eq!(c.log_driver, "");
        assert_eq!(c.log_opts["max-size"], "1k");
        let mut u: Vec<String> = c.ulimits.iter().map(|u| u.to_string()).collect();
        u.sort();
        assert_eq!(u, ["nofile=5:6", "nproc=10:20"]);
        // A container's own driver keeps its own options, none of the
        // defaults'.
        let c = body(serde_json::json!({"LogConfig": {"Type": "none"}}))
            .into_request_with(None, &d)
            .unwrap()
            .config;
        assert_eq!(c.log_driver, "none");
        assert!(c.log_opts.is_empty());
        assert!(d.check().is_ok());
        let bad = Defaults {
            log_driver: "splunk".into(),
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("splunk"));
        let bad = Defaults {
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 10,
                hard: 5,
            }],
            ..Default::default()
        };
        assert!(bad.check().is_err());
    }
}
