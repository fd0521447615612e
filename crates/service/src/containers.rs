//! Containers as the Engine API shows them: summaries (`GET
//! /containers/json`, `ps`), inspect views, status texts, list filters,
//! logs and prune; and the image a new container needs, by pull policy.

use std::collections::BTreeMap;

use berth_engine::config::ContainerConfig;
use berth_engine::{Engine, Record, State};
use serde::Serialize;
use serde_json::Value;

use crate::filters::Filters;
use crate::pull::PullPolicy;
use crate::units::human_duration;
use crate::{Error, Result};

/// One container of a list (the Engine API's `ContainerSummary`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    pub id: String,
    /// With docker's leading slash.
    pub names: Vec<String>,
    /// As the user named it.
    pub image: String,
    #[serde(rename = "ImageID")]
    pub image_id: String,
    /// The process and its arguments, as one string.
    pub command: String,
    /// Unix seconds.
    pub created: i64,
    pub state: String,
    /// docker ps's STATUS: "Up 5 minutes (healthy)", "Exited (0) 2 hours ago".
    pub status: String,
    pub ports: Vec<Value>,
    pub labels: BTreeMap<String, String>,
    pub mounts: Vec<MountPoint>,
    pub host_config: SummaryHostConfig,
    pub network_settings: SummaryNetworks,
    /// Bytes the container wrote to its own layer (with `size`, and in
    /// `system df`).
    #[serde(rename = "SizeRw", skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<u64>,
    /// Its layer and the image's together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_root_fs: Option<u64>,
    /// The creation time as recorded (RFC 3339 with nanoseconds), for
    /// front ends that show it as such.
    #[serde(skip)]
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryHostConfig {
    pub network_mode: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryNetworks {
    pub networks: BTreeMap<String, Value>,
}

/// A mount of a container (the Engine API's `MountPoint`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub typ: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub source: String,
    pub destination: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
}

/// What to list (`ps`, `GET /containers/json`).
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Stopped and created ones too.
    pub all: bool,
    /// The newest N (any state, as docker's `--last`).
    pub limit: Option<usize>,
    pub filters: Filters,
}

/// Keys `ps --filter` knows.
const FILTERS: &[&str] = &[
    "id", "name", "status", "exited", "label", "ancestor", "health", "volume",
];

fn secs_since(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
        .unwrap_or(0)
}

fn unix(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// docker ps's STATUS text.
pub fn status_text(r: &Record) -> String {
    match r.state {
        State::Created => "Created".into(),
        State::Running | State::Paused => {
            let up = human_duration(secs_since(&r.started_at));
            let mut s = format!("Up {up}");
            if r.state == State::Paused {
                s.push_str(" (Paused)");
            }
            match berth_engine::health::status_of(&r.health).as_str() {
                "" => {}
                "starting" => s.push_str(" (health: starting)"),
                h => s.push_str(&format!(" ({h})")),
            }
            s
        }
        State::Restarting => format!(
            "Restarting ({}) {} ago",
            r.exit_code,
            human_duration(secs_since(&r.finished_at))
        ),
        State::Exited => format!(
            "Exited ({}) {} ago",
            r.exit_code,
            human_duration(secs_since(&r.finished_at))
        ),
        State::Dead => "Dead".into(),
    }
}

fn network_mode(c: &ContainerConfig) -> String {
    if c.network.is_empty() {
        "none".into()
    } else {
        c.network.clone()
    }
}

/// The summary of one container.
pub fn summary(eng: &Engine, r: &Record) -> ContainerSummary {
    let mut parts = vec![r.config.path.clone()];
    parts.extend(r.config.args.iter().cloned());
    let net = network_mode(&r.config);
    ContainerSummary {
        id: r.id.clone(),
        names: vec![format!("/{}", r.name)],
        image: r.image.clone(),
        image_id: r.image_id.clone(),
        command: parts.join(" "),
        created: unix(&r.created),
        state: r.state.as_str().to_string(),
        status: status_text(r),
        ports: Vec::new(),
        labels: r.config.labels.clone(),
        mounts: mounts(eng, &r.config),
        host_config: SummaryHostConfig {
            network_mode: net.clone(),
        },
        network_settings: SummaryNetworks {
            // A joined namespace is the other container's: no network of
            // its own, as docker shows it.
            networks: if net.starts_with("container:") {
                BTreeMap::new()
            } else {
                BTreeMap::from([(net, Value::Object(Default::default()))])
            },
        },
        size_rw: None,
        size_root_fs: None,
        created_at: r.created.clone(),
    }
}

fn matches(r: &Record, k: &str, v: &str) -> Result<bool> {
    Ok(match k {
        "id" => r.id.starts_with(v),
        "name" => r.name.contains(v),
        "status" => r.state.as_str() == v,
        "exited" => r.state == State::Exited && r.exit_code.to_string() == v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => r.config.labels.get(lk).is_some_and(|x| x == lv),
            None => r.config.labels.contains_key(v),
        },
        "ancestor" => r.image == v || r.image_id.contains(v),
        "health" => {
            let h = berth_engine::health::status_of(&r.health);
            let running = matches!(r.state, State::Running | State::Paused);
            match v {
                "none" => h.is_empty(),
                "starting" | "healthy" | "unhealthy" => running && h == v,
                _ => {
                    return Err(Error::invalid(format!(
                        "invalid filter 'health={v}': use starting, healthy, unhealthy or none"
                    )))
                }
            }
        }
        "volume" => r
            .config
            .volume_mounts
            .iter()
            .any(|m| m.name == v || m.target == v),
        _ => unreachable!("keys are checked first"),
    })
}

/// The containers `opts` asks for, newest first.
pub fn list(eng: &mut Engine, opts: &ListOptions) -> Result<Vec<ContainerSummary>> {
    opts.filters.check_keys(FILTERS, "berth ps")?;
    let mut recs = eng.list()?;
    if !opts.all && opts.limit.is_none() {
        recs.retain(|r| matches!(r.state, State::Running | State::Paused | State::Restarting));
    }
    let mut kept = Vec::new();
    for r in recs {
        if opts.filters.matches(|k, v| matches(&r, k, v))? {
            kept.push(r);
        }
    }
    if let Some(n) = opts.limit {
        kept.truncate(n);
    }
    Ok(kept.iter().map(|r| summary(eng, r)).collect())
}

/// Docker's Mounts: volumes, then binds.
pub fn mounts(eng: &Engine, c: &ContainerConfig) -> Vec<MountPoint> {
    let mut out = Vec::new();
    for m in &c.volume_mounts {
        out.push(MountPoint {
            typ: "volume".into(),
            name: Some(m.name.clone()),
            source: berth_engine::volumes::data_dir(&eng.paths.root, &m.name)
                .display()
                .to_string(),
            destination: m.target.clone(),
            driver: Some("local".into()),
            mode: if m.readonly { "ro" } else { "z" }.into(),
            rw: !m.readonly,
            propagation: String::new(),
        });
    }
    use berth_engine::options::{Mount, MountType};
    let binds = c.volumes.iter().filter_map(|v| {
        let m = Mount::parse_volume_flag(v).ok()?;
        let mode = v.splitn(3, ':').nth(2).unwrap_or_default().to_string();
        Some((m, mode))
    });
    let flags = c.mounts.iter().map(|m| (m.clone(), String::new()));
    for (m, mode) in binds.chain(flags) {
        if m.typ != MountType::Bind {
            continue;
        }
        out.push(MountPoint {
            typ: "bind".into(),
            name: None,
            propagation: m.propagation().map_or("rprivate", |p| p.as_str()).into(),
            source: m.source,
            destination: m.target,
            driver: None,
            mode,
            rw: !m.read_only,
        });
    }
    out
}

/// A container as `inspect` shows it (the Engine API's
/// `ContainerInspectResponse`, the fields berth has).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    pub mounts: Vec<MountPoint>,
    pub id: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub state: ContainerState,
    pub image: String,
    pub resolv_conf_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    pub log_path: String,
    pub name: String,
    pub restart_count: i64,
    pub driver: String,
    pub platform: String,
    pub host_config: HostConfig,
    pub graph_driver: GraphDriver,
    pub config: Config,
    pub network_settings: NetworkSettings,
}

/// The Engine API's `NetworkSettings` (berth's modes have no addresses
/// yet: one entry, the mode, with empty endpoint settings).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    pub bridge: String,
    #[serde(rename = "SandboxID")]
    pub sandbox_id: String,
    pub sandbox_key: String,
    pub ports: BTreeMap<String, Value>,
    pub networks: BTreeMap<String, EndpointSettings>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    pub aliases: Option<Vec<String>>,
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    pub ip_prefix_len: u32,
    pub mac_address: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    /// Docker's State.Health as the health checker records it.
    pub health: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub typ: String,
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    pub binds: Vec<String>,
    pub network_mode: String,
    pub restart_policy: berth_engine::options::RestartPolicy,
    pub auto_remove: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub security_opt: Vec<String>,
    pub memory: i64,
    pub nano_cpus: i64,
    pub pids_limit: Option<i64>,
    /// Path to mount options, as the Engine API has it.
    pub tmpfs: BTreeMap<String, String>,
    pub log_config: LogConfig,
    pub init: bool,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    pub name: String,
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub image: String,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
}

fn time_or_zero(t: &str) -> String {
    if t.is_empty() {
        "0001-01-01T00:00:00Z".into()
    } else {
        t.to_string()
    }
}

/// The inspect view of one container.
pub fn inspect(eng: &Engine, r: &Record) -> ContainerInspect {
    let layout = eng.layout(&r.id);
    let c = &r.config;
    let path = |p: std::path::PathBuf| p.display().to_string();
    ContainerInspect {
        mounts: mounts(eng, c),
        id: r.id.clone(),
        created: r.created.clone(),
        path: c.path.clone(),
        args: c.args.clone(),
        state: ContainerState {
            status: r.state.as_str().into(),
            running: matches!(r.state, State::Running | State::Paused),
            paused: r.state == State::Paused,
            restarting: r.state == State::Restarting,
            oom_killed: r.oom_killed,
            dead: r.state == State::Dead,
            pid: r.pid,
            exit_code: r.exit_code,
            error: r.error.clone(),
            started_at: time_or_zero(&r.started_at),
            finished_at: time_or_zero(&r.finished_at),
            health: serde_json::from_str::<Value>(&r.health).ok(),
        },
        image: r.image_id.clone(),
        resolv_conf_path: path(layout.dir.join("resolv.conf")),
        hostname_path: path(layout.dir.join("hostname")),
        hosts_path: path(layout.dir.join("hosts")),
        log_path: path(layout.log()),
        name: format!("/{}", r.name),
        restart_count: r.restart_count,
        driver: "overlay2".into(),
        platform: "linux".into(),
        host_config: HostConfig {
            binds: c.volumes.clone(),
            network_mode: if c.network.is_empty() {
                "default".into()
            } else {
                c.network.clone()
            },
            restart_policy: c.restart.clone(),
            auto_remove: c.auto_remove,
            cap_add: c.cap_add.clone(),
            cap_drop: c.cap_drop.clone(),
            extra_hosts: c.extra_hosts.clone(),
            dns: c.dns.clone(),
            dns_search: c.dns_search.clone(),
            dns_options: c.dns_options.clone(),
            privileged: c.privileged,
            readonly_rootfs: c.read_only,
            security_opt: c.security_opt.clone(),
            memory: c.memory.unwrap_or(0),
            nano_cpus: c.cpus.map(|x| (x * 1e9) as i64).unwrap_or(0),
            pids_limit: c.pids_limit,
            tmpfs: c
                .tmpfs
                .iter()
                .map(|t| {
                    let (p, o) = t.split_once(':').unwrap_or((t.as_str(), ""));
                    (p.to_string(), o.to_string())
                })
                .collect(),
            log_config: LogConfig {
                typ: if c.log_driver.is_empty() {
                    "json-file".into()
                } else {
                    c.log_driver.clone()
                },
                config: c.log_opts.clone(),
            },
            init: c.init,
        },
        network_settings: {
            let net = network_mode(c);
            NetworkSettings {
                bridge: String::new(),
                sandbox_id: String::new(),
                sandbox_key: if r.pid > 0 {
                    format!("/proc/{}/ns/net", r.pid)
                } else {
                    String::new()
                },
                ports: BTreeMap::new(),
                networks: if net.starts_with("container:") {
                    BTreeMap::new()
                } else {
                    BTreeMap::from([(
                        net.clone(),
                        EndpointSettings {
                            network_id: net,
                            ..Default::default()
                        },
                    )])
                },
            }
        },
        graph_driver: GraphDriver {
            name: "overlay2".into(),
            data: BTreeMap::from([
                ("UpperDir".to_string(), path(layout.upper())),
                ("WorkDir".to_string(), path(layout.work())),
                ("MergedDir".to_string(), path(layout.merged())),
            ]),
        },
        config: Config {
            hostname: c.hostname.clone().unwrap_or_else(|| r.id[..12].to_string()),
            domainname: c.domainname.clone().unwrap_or_default(),
            user: c.user.clone().unwrap_or_default(),
            tty: c.tty,
            open_stdin: c.interactive,
            env: c.env.clone(),
            cmd: c.cmd.clone(),
            image: r.image.clone(),
            working_dir: c.workdir.clone().unwrap_or_default(),
            entrypoint: c.entrypoint.clone(),
            labels: c.labels.clone(),
            stop_signal: c.stop_signal.clone(),
            stop_timeout: c.stop_timeout,
        },
    }
}

/// What `container prune` removed (the Engine API's `ContainerPruneResponse`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PruneReport {
    pub containers_deleted: Vec<String>,
    pub space_reclaimed: u64,
}

/// Removes every container that is not running.
pub fn prune(eng: &mut Engine) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    for r in eng.list()? {
        if matches!(r.state, State::Exited | State::Created | State::Dead) {
            eng.remove(&r.id, false, false)?;
            report.containers_deleted.push(r.id);
        }
    }
    Ok(report)
}

/// Which log lines to give (`logs`, `GET /containers/{id}/logs`).
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// The last N lines only.
    pub tail: Option<usize>,
    /// Then new lines until the container stops.
    pub follow: bool,
}

/// `--since`/`--until`: RFC 3339, Unix seconds, or a duration back from
/// now (`10m`, `1h30m`, `45s`).
pub fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    // Unix seconds, with up to nine decimals (docker's `1733347200.123`).
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if !secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 9
        && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let nanos: u32 = format!("{frac:0<9}").parse().unwrap_or(0);
        return secs
            .parse::<i64>()
            .ok()
            .and_then(|n| chrono::DateTime::from_timestamp(n, nanos))
            .ok_or_else(|| Error::invalid(format!("invalid time {s:?}: timestamp out of range")));
    }
    let mut total = 0i64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num
            .parse()
            .map_err(|_| Error::invalid(format!("invalid time {s:?}")))?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => {
                return Err(Error::invalid(format!(
                    "invalid time {s:?}: use RFC 3339, Unix seconds, or a duration like 10m"
                )))
            }
        };
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| Error::invalid(format!("invalid time {s:?}: out of range")))?;
    }
    if !num.is_empty() {
        return Err(Error::invalid(format!(
            "invalid time {s:?}: a duration needs a unit (s, m, h)"
        )));
    }
    chrono::TimeDelta::try_seconds(total)
        .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
        .ok_or_else(|| Error::invalid(format!("invalid time {s:?}: out of range")))
}

/// `--tail`: a number, or "all".
pub fn parse_tail(s: &str) -> Result<Option<usize>> {
    match s {
        "all" | "-1" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| Error::invalid(format!("invalid --tail {n:?}: a number or \"all\""))),
    }
}

/// The container whose logs `logs` would read, or why they cannot be
/// read (no such container, a logging driver that keeps none).
pub fn logs_of(eng: &mut Engine, container: &str) -> Result<Record> {
    let rec = eng.get(container)?;
    if rec.config.log_driver == "none" {
        return Err(Error::invalid(
            "configured logging driver does not support reading",
        ));
    }
    Ok(rec)
}

/// Gives the container's log entries `opts` selects to `sink`, in order;
/// with `follow`, new ones until the container is no longer running.
/// `sink` returns false to stop (its reader went away).
pub fn logs(
    eng: &mut Engine,
    container: &str,
    opts: &LogsOptions,
    sink: &mut dyn FnMut(&berth_engine::logs::Entry) -> bool,
) -> Result<()> {
    logs_while(eng, container, opts, sink, &|| true)
}

/// `logs`, also ended once `alive` says the reader is gone, though no
/// entry comes to tell (a follow of a quiet container by a daemon's
/// client).
pub fn logs_while(
    eng: &mut Engine,
    container: &str,
    opts: &LogsOptions,
    sink: &mut dyn FnMut(&berth_engine::logs::Entry) -> bool,
    alive: &dyn Fn() -> bool,
) -> Result<()> {
    let rec = logs_of(eng, container)?;
    let path = eng.layout(&rec.id).log();
    let keep = |e: &berth_engine::logs::Entry| {
        let t = chrono::DateTime::parse_from_rfc3339(&e.time)
            .map(|t| t.with_timezone(&chrono::Utc))
            .ok();
        opts.since.is_none_or(|s| t.is_some_and(|t| t >= s))
            && opts.until.is_none_or(|u| t.is_some_and(|t| t < u))
    };
    let (all, mut follower) = berth_engine::logs::read(&path);
    let entries: Vec<_> = all.into_iter().filter(|e| keep(e)).collect();
    let skip = opts
        .tail
        .map(|n| entries.len().saturating_sub(n))
        .unwrap_or(0);
    for e in &entries[skip..] {
        if !sink(e) {
            return Ok(());
        }
    }
    if opts.follow {
        loop {
            let running = matches!(
                eng.get(&rec.id).map(|r| r.state),
                Ok(State::Running | State::Paused | State::Restarting)
            );
            for e in follower.poll().iter().filter(|e| keep(e)) {
                if !sink(e) {
                    return Ok(());
                }
            }
            if !running || !alive() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Makes sure the store has `image` as `policy` says, pulling it
/// (progress to `progress`; "Unable to find image ... locally" first, as
/// docker says it) when it is missing or `Always`.
pub fn ensure_image(
    eng: &mut Engine,
    image: &str,
    policy: PullPolicy,
    progress: &dyn berth_registry_client::progress::Progress,
) -> Result<()> {
    let present = eng.store.resolve(image).is_ok();
    let pull = match policy {
        PullPolicy::Never => false,
        PullPolicy::Missing => !present,
        PullPolicy::Always => true,
    };
    let Ok(r) = berth_image::reference::Reference::parse(image) else {
        // Not a name (an id prefix): create reports it missing.
        return Ok(());
    };
    if !pull {
        if !present {
            return Err(Error::not_found(format!("No such image: {}", r.familiar())));
        }
        return Ok(());
    }
    if let Err(e) = berth_registry_client::Client::for_reference(&r, "pull") {
        return Err(Error::new(
            crate::ErrorKind::NotFound,
            format!(
                "Unable to find image '{}' locally, and it cannot be pulled: {e}",
                r.familiar()
            ),
        ));
    }
    if !present {
        progress.line(&format!("Unable to find image '{}' locally", r.familiar()));
    }
    let paths = eng.paths.clone();
    crate::images::pull(&paths, &mut eng.store, &r, progress)
}

/// `restart`: stops the container (its stop signal, or `signal`, then
/// SIGKILL after `timeout`), starts it again, and records `restart` after
/// its `start`, as docker does.
pub fn restart(
    mut eng: Engine,
    key: &str,
    timeout: Option<i64>,
    signal: Option<i32>,
) -> Result<()> {
    let rec = eng.stop(key, timeout, signal)?;
    let runroot = eng.paths.runroot.clone();
    berth_engine::monitor::start_detached(eng, &rec.id)?;
    let mut attrs = rec.config.labels.clone();
    attrs.insert("image".into(), rec.image.clone());
    attrs.insert("name".into(), rec.name.clone());
    berth_engine::events::emit(
        &runroot,
        &berth_engine::events::Event::new("container", "restart", &rec.id, attrs),
    );
    Ok(())
}

pub use berth_engine::wait::WaitCondition;

/// The Engine API's answer to a wait (`ContainerWaitResponse`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitResponse {
    pub status_code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<WaitError>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitError {
    pub message: String,
}

/// Subscribes to container `key`'s exits and removal, before anything
/// else happens to it: `wait_on` then sees an exit however soon it comes
/// (the daemon answers the wait's headers in between).
pub fn waiter(eng: &mut Engine, key: &str) -> Result<berth_engine::wait::Waiter> {
    Ok(eng.waiter(key)?)
}

/// Blocks until `condition` holds for the container `w` follows.
pub fn wait_on(
    eng: &mut Engine,
    w: berth_engine::wait::Waiter,
    condition: WaitCondition,
) -> Result<WaitResponse> {
    wait_on_while(eng, w, condition, &|| true)?
        .ok_or_else(|| Error::new(crate::ErrorKind::Internal, "the wait ended early"))
}

/// `wait_on`, also ended (None, within a second) once `alive` says the
/// caller is gone (a daemon's client that dropped its wait).
pub fn wait_on_while(
    eng: &mut Engine,
    mut w: berth_engine::wait::Waiter,
    condition: WaitCondition,
    alive: &dyn Fn() -> bool,
) -> Result<Option<WaitResponse>> {
    let code = loop {
        match w.wait(eng, condition, Some(std::time::Duration::from_secs(1)))? {
            Some(o) => break Some(o.exit_code),
            None if !alive() => return Ok(None),
            None => {}
        }
    };
    let record = eng.db.get(w.id()).ok().flatten();
    Ok(Some(WaitResponse {
        status_code: code.unwrap_or(0).into(),
        error: record
            .filter(|r| !r.error.is_empty())
            .map(|r| WaitError { message: r.error }),
    }))
}

/// `wait`: blocks until `condition` holds for container `key` and returns
/// its exit code. A container `--rm` has removed is answered from the code
/// kept for it.
pub fn wait(eng: &mut Engine, key: &str, condition: WaitCondition) -> Result<WaitResponse> {
    match eng.waiter(key) {
        Ok(w) => wait_on(eng, w, condition),
        Err(berth_engine::EngineError::NoSuchContainer(_))
            if condition == WaitCondition::NotRunning =>
        {
            Ok(WaitResponse {
                status_code: eng.wait_code(key, None)?.unwrap_or(0).into(),
                error: None,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// `start` for callers that attached before it (the Engine API's attach
/// of a created container): `hand_over` gets one connection to the
/// container's output and input per caller before the container starts.
pub fn start_attached(
    mut eng: Engine,
    key: &str,
    clients: usize,
    hand_over: impl FnOnce(Vec<std::os::unix::net::UnixStream>),
) -> Result<()> {
    let rec = eng.get(key)?;
    if matches!(rec.state, State::Running | State::Paused) {
        return Ok(());
    }
    match berth_engine::monitor::start_detached_attached(eng, &rec.id, clients, hand_over) {
        Err(berth_engine::EngineError::Conflict(_)) => Ok(()),
        r => r.map_err(Into::into),
    }
}

/// `start`: starts each stopped container with its own monitor; one that
/// runs already (or whose monitor is restarting it) is left as it is, as
/// docker does.
pub fn start(eng: Engine, key: &str) -> Result<()> {
    let mut eng = eng;
    let rec = eng.get(key)?;
    if matches!(rec.state, State::Running | State::Paused) {
        return Ok(());
    }
    match berth_engine::monitor::start_detached(eng, &rec.id) {
        // Its monitor holds it (a restart backoff, or another start just
        // now): started already.
        Err(berth_engine::EngineError::Conflict(_)) => Ok(()),
        r => r.map_err(Into::into),
    }
}

/// What `create` asks for (`berth create`/`run`, `POST
/// /containers/create`): the image, an optional name, the options.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub image: String,
    pub name: Option<String>,
    pub config: ContainerConfig,
    pub pull: PullPolicy,
}

/// The options' rules that are not a matter of one value's syntax, as
/// docker's daemon checks them: conflicts between options, and the
/// options kept as text (binds, tmpfs, security options, health
/// durations) well formed.
pub fn validate(c: &ContainerConfig) -> Result<()> {
    use berth_engine::options::{Mount, RestartName, SecurityOptions};
    if c.auto_remove && c.restart.name != RestartName::No {
        return Err(Error::invalid(
            "conflicting options: cannot specify both --restart and --rm",
        ));
    }
    if c.network.starts_with("container:") {
        let conflicts = [
            ("hostname", c.hostname.is_some()),
            ("dns", !c.dns.is_empty()),
            ("custom host-to-IP mapping", !c.extra_hosts.is_empty()),
        ];
        if let Some((what, _)) = conflicts.iter().find(|(_, set)| *set) {
            return Err(Error::invalid(format!(
                "conflicting options: {what} and the network mode"
            )));
        }
        if c.network == "container:" {
            return Err(Error::invalid(
                "--network container: needs a container: container:NAME",
            ));
        }
    }
    if c.health.disabled && c.health.cmd.is_some() {
        return Err(Error::invalid(
            "--no-healthcheck conflicts with --health-* options",
        ));
    }
    for (what, v) in [
        ("--health-interval", &c.health.interval),
        ("--health-timeout", &c.health.timeout),
        ("--health-start-period", &c.health.start_period),
    ] {
        if let Some(v) = v {
            berth_engine::health::parse_duration(v).map_err(|e| {
                Error::invalid(format!("invalid argument {v:?} for \"{what}\" flag: {e}"))
            })?;
        }
    }
    for v in &c.volumes {
        Mount::parse_volume_flag(v)?;
    }
    for t in &c.tmpfs {
        Mount::parse_tmpfs_flag(t)?;
    }
    SecurityOptions::parse(&c.security_opt)?;
    Ok(())
}

/// Whether a daemon starting up starts this stopped container again, as
/// dockerd's restore does: `always`, `unless-stopped` unless stopped by
/// hand, `on-failure` after a failure it was not stopped by hand from.
pub fn starts_with_daemon(rec: &Record) -> bool {
    use berth_engine::options::RestartName;
    if !matches!(rec.state, State::Exited | State::Created) || rec.started_at.is_empty() {
        return false;
    }
    match rec.config.restart.name {
        RestartName::Always => true,
        RestartName::UnlessStopped => !rec.stop_requested,
        RestartName::OnFailure => {
            !rec.stop_requested
                && rec
                    .config
                    .restart
                    .restarts(rec.exit_code, rec.restart_count)
        }
        RestartName::No => false,
    }
}

/// What a daemon does as it starts: the stopped containers its restart
/// policies bring back are started. Returns each one tried, with the
/// outcome.
pub fn restore(paths: &berth_engine::Paths) -> Result<Vec<(String, Result<()>)>> {
    let mut eng = Engine::open(paths)?;
    let ids: Vec<String> = eng
        .list()?
        .into_iter()
        .filter(starts_with_daemon)
        .map(|r| r.id)
        .collect();
    Ok(ids
        .into_iter()
        .map(|id| {
            let r = Engine::open(paths)
                .map_err(Error::from)
                .and_then(|e| start(e, &id));
            (id, r)
        })
        .collect())
}

/// `create`: checks the options, makes sure the image is there as the
/// pull policy says (pull progress to `progress`), and creates the
/// container.
pub fn create(
    eng: &mut Engine,
    req: CreateRequest,
    progress: &dyn berth_registry_client::progress::Progress,
) -> Result<Record> {
    let mut req = req;
    validate(&req.config)?;
    // The container whose network is joined is kept by its id.
    if let Some(other) = req.config.network.strip_prefix("container:") {
        let o = eng.get(other)?;
        req.config.network = format!("container:{}", o.id);
    }
    ensure_image(eng, &req.image, req.pull, progress)?;
    Ok(eng.create(&req.image, req.name.as_deref(), req.config)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_daemon_starting_restarts_what_the_policies_say() {
        let rec = |policy: &str, code: i32, restarts: i64, by_hand: bool| Record {
            id: "x".repeat(64),
            name: "n".into(),
            image_id: String::new(),
            image: String::new(),
            created: String::new(),
            config: ContainerConfig {
                restart: policy.parse().unwrap(),
                ..Default::default()
            },
            state: State::Exited,
            pid: 0,
            monitor_pid: 0,
            exit_code: code,
            error: String::new(),
            started_at: "2026-12-07T00:00:00Z".into(),
            finished_at: String::new(),
            restart_count: restarts,
            health: String::new(),
            monitor_start: 0,
            stop_requested: by_hand,
            oom_killed: false,
        };
        assert!(starts_with_daemon(&rec("always", 0, 0, true)));
        assert!(starts_with_daemon(&rec("unless-stopped", 0, 0, false)));
        assert!(!starts_with_daemon(&rec("unless-stopped", 0, 0, true)));
        assert!(starts_with_daemon(&rec("on-failure", 1, 0, false)));
        assert!(!starts_with_daemon(&rec("on-failure", 0, 0, false)));
        // Its retries used up: not again.
        assert!(starts_with_daemon(&rec("on-failure:3", 1, 2, false)));
        assert!(!starts_with_daemon(&rec("on-failure:3", 1, 3, false)));
        assert!(!starts_with_daemon(&rec("no", 1, 0, false)));
        // Never started: left as created.
        let mut never = rec("always", 0, 0, false);
        never.started_at.clear();
        assert!(!starts_with_daemon(&never));
    }

    fn invalid(c: ContainerConfig) -> String {
        let e = validate(&c).expect_err("rejected");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(e.kind().run_exit_code(), 125);
        e.to_string()
    }

    #[test]
    fn create_options_are_checked_as_dockers_daemon_checks_them() {
        assert!(validate(&ContainerConfig::default()).is_ok());
        let e = invalid(ContainerConfig {
            auto_remove: true,
            restart: "always".parse().unwrap(),
            ..Default::default()
        });
        assert!(e.contains("--restart and --rm"), "{e}");
        let mut c = ContainerConfig::default();
        c.health.disabled = true;
        c.health.cmd = Some("true".into());
        assert!(invalid(c).contains("--no-healthcheck"));
        let mut c = ContainerConfig::default();
        c.health.interval = Some("5 parsecs".into());
        assert!(invalid(c).contains("--health-interval"));
        let e = invalid(ContainerConfig {
            volumes: vec!["/a:relative/dest".into()],
            ..Default::default()
        });
        assert!(e.contains("relative"), "{e}");
        invalid(ContainerConfig {
            tmpfs: vec!["relative".into()],
            ..Default::default()
        });
        invalid(ContainerConfig {
            security_opt: vec!["seccomp".into()],
            ..Default::default()
        });
        assert!(validate(&ContainerConfig {
            restart: "on-failure:3".parse().unwrap(),
            volumes: vec!["/src:/dst:ro".into()],
            tmpfs: vec!["/run:size=1m".into()],
            security_opt: vec!["no-new-privileges".into()],
            ..Default::default()
        })
        .is_ok());
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    /// A huge duration or timestamp from a client is an invalid argument,
    /// not an overflow (the daemon aborts on a panic).
    #[test]
    fn times_out_of_range_are_refused_not_overflowed() {
        for t in [
            "300000000000000s",
            "9223372036854775807h",
            "99999999999999999999",
            "9223372036854775807",
            "9223372036854775807.999999999",
            "1h9223372036854775807s",
        ] {
            let e = parse_time(t).expect_err(t);
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{t}");
        }
        assert!(parse_time("10m").is_ok());
        assert!(parse_time("1733347200.5").is_ok());
    }
}
