//! Container options as types, in the Engine API's JSON shape where the
//! API has one (HostConfig's `Mounts`, `RestartPolicy`, `Ulimits`), parsed
//! once at the edges: from docker run's flags here (`Mount::parse_flag`,
//! `RestartPolicy::from_str`, ...), from the API's JSON by serde. Records
//! written before these types held strings (the flags as given); those
//! still load.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::EngineError;

/// What a mount is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    #[default]
    Volume,
    Tmpfs,
}

/// A bind mount's propagation (`bind-propagation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    Private,
    Rprivate,
    Shared,
    Rshared,
    Slave,
    Rslave,
}

impl Propagation {
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Private => "private",
            Propagation::Rprivate => "rprivate",
            Propagation::Shared => "shared",
            Propagation::Rshared => "rshared",
            Propagation::Slave => "slave",
            Propagation::Rslave => "rslave",
        }
    }

    fn parse(s: &str) -> Option<Propagation> {
        Some(match s {
            "private" => Propagation::Private,
            "rprivate" => Propagation::Rprivate,
            "shared" => Propagation::Shared,
            "rshared" => Propagation::Rshared,
            "slave" => Propagation::Slave,
            "rslave" => Propagation::Rslave,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<Propagation>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeOptions {
    #[serde(default)]
    pub no_copy: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TmpfsOptions {
    /// Bytes; none: the kernel's default (half the memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// The root directory's permission bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Further mount options (`--tmpfs /run:exec,uid=1000`), as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// One mount of a container (HostConfig's `Mounts` entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    #[serde(rename = "Type")]
    pub typ: MountType,
    /// A host path (bind), a volume name ("" for an anonymous one), or
    /// nothing (tmpfs).
    #[serde(default)]
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
}

fn truth(v: &str) -> Option<bool> {
    match v {
        "" | "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn invalid(flag: &str, value: &str, why: impl fmt::Display) -> EngineError {
    EngineError::Invalid(format!("invalid {flag} {value:?}: {why}"))
}

impl Mount {
    /// `--mount type=bind|volume|tmpfs,source=...,target=...,...`.
    pub fn parse_flag(m: &str) -> Result<Mount, EngineError> {
        let bad = |why: String| invalid("--mount", m, why);
        let mut out = Mount::default();
        let mut propagation = None;
        let mut nocopy = None;
        let mut tmpfs = TmpfsOptions::default();
        for kv in m.split(',') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "type" => {
                    out.typ = match v {
                        "bind" => MountType::Bind,
                        "volume" => MountType::Volume,
                        "tmpfs" => MountType::Tmpfs,
                        other => {
                            return Err(bad(format!(
                                "type {other:?} is not supported (bind, volume, tmpfs)"
                            )))
                        }
                    }
                }
                "source" | "src" => out.source = v.to_string(),
                "destination" | "dst" | "target" => out.target = v.to_string(),
                "readonly" | "ro" => {
                    out.read_only =
                        truth(v).ok_or_else(|| bad(format!("readonly={v:?} is not a boolean")))?
                }
                "bind-propagation" => {
                    propagation = Some(
                        Propagation::parse(v)
                            .ok_or_else(|| bad(format!("unknown bind-propagation {v:?}")))?,
                    )
                }
                "volume-nocopy" => {
                    nocopy = Some(
                        truth(v)
                            .ok_or_else(|| bad(format!("volume-nocopy={v:?} is not a boolean")))?,
                    )
                }
                "tmpfs-size" => tmpfs.size_bytes = Some(parse_size(v)? as u64),
                "tmpfs-mode" => {
                    tmpfs.mode = Some(
                        u32::from_str_radix(v, 8)
                            .map_err(|_| bad(format!("tmpfs-mode {v:?} is not octal")))?,
                    )
                }
                _ => return Err(bad(format!("unknown field {k:?}"))),
            }
        }
        if out.target.is_empty() {
            return Err(bad("target is required".into()));
        }
        if !out.target.starts_with('/') {
            return Err(bad("the target must be an absolute path".into()));
        }
        match out.typ {
            MountType::Bind => {
                if out.source.is_empty() {
                    return Err(bad("source is required".into()));
                }
                out.bind_options = propagation.map(|p| BindOptions {
                    propagation: Some(p),
                });
            }
            MountType::Volume => {
                out.volume_options = nocopy.map(|n| VolumeOptions { no_copy: n });
            }
            MountType::Tmpfs => {
                if !out.source.is_empty() {
                    return Err(bad("a tmpfs mount takes no source".into()));
                }
                out.tmpfs_options = Some(tmpfs);
            }
        }
        if out.typ != MountType::Tmpfs && out.tmpfs_options.is_none() && m.contains("tmpfs-") {
            return Err(bad("tmpfs-size and tmpfs-mode are for type=tmpfs".into()));
        }
        Ok(out)
    }

    /// `-v SRC:DST[:OPTS]` (a bind when SRC is absolute, else a named
    /// volume) or `-v DST` (an anonymous volume).
    pub fn parse_volume_flag(v: &str) -> Result<Mount, EngineError> {
        let bad = |why: &str| invalid("volume", v, why);
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, opts) = match parts.as_slice() {
            [d] => ("", *d, ""),
            [s, d] => (*s, *d, ""),
            [s, d, o] => (*s, *d, *o),
            _ => return Err(bad("use SRC:DST[:OPTIONS], NAME:DST[:OPTIONS] or DST")),
        };
        if !dst.starts_with('/') {
            return Err(bad("the container path must be absolute"));
        }
        let bind = src.starts_with('/');
        let mut out = Mount {
            typ: if bind {
                MountType::Bind
            } else {
                MountType::Volume
            },
            source: src.to_string(),
            target: dst.to_string(),
            ..Default::default()
        };
        for o in opts.split(',').filter(|s| !s.is_empty()) {
            match o {
                "ro" | "readonly" => out.read_only = true,
                "rw" => out.read_only = false,
                "nocopy" if !bind => out.volume_options = Some(VolumeOptions { no_copy: true }),
                "z" | "Z" | "nocopy" | "consistent" | "cached" | "delegated" => {}
                p if bind && Propagation::parse(p).is_some() => {
                    out.bind_options = Some(BindOptions {
                        propagation: Propagation::parse(p),
                    })
                }
                other => return Err(bad(&format!("unknown option {other:?}"))),
            }
        }
        Ok(out)
    }

    /// `--tmpfs PATH[:OPTIONS]`.
    pub fn parse_tmpfs_flag(t: &str) -> Result<Mount, EngineError> {
        let (dst, o) = t.split_once(':').unwrap_or((t, ""));
        if !dst.starts_with('/') {
            return Err(invalid("--tmpfs", t, "the path must be absolute"));
        }
        Ok(Mount {
            typ: MountType::Tmpfs,
            target: dst.to_string(),
            tmpfs_options: Some(TmpfsOptions {
                options: o
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// A bind mount of `source` at `target`.
    pub fn bind(source: impl Into<String>, target: impl Into<String>, read_only: bool) -> Mount {
        Mount {
            typ: MountType::Bind,
            source: source.into(),
            target: target.into(),
            read_only,
            ..Default::default()
        }
    }

    pub fn propagation(&self) -> Option<Propagation> {
        self.bind_options.as_ref().and_then(|b| b.propagation)
    }
}

/// Mounts as stored: records written before the type held `--mount`
/// strings.
pub(crate) fn de_mounts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Mount>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Typed(Mount),
        Flag(String),
    }
    Vec::<Stored>::deserialize(d)?
        .into_iter()
        .map(|s| match s {
            Stored::Typed(m) => Ok(m),
            Stored::Flag(f) => Mount::parse_flag(&f).map_err(serde::de::Error::custom),
        })
        .collect()
}

/// Docker's restart policies (HostConfig's `RestartPolicy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// "no" (also ""), "always", "unless-stopped", "on-failure".
    pub name: RestartName,
    /// on-failure's limit; 0: no limit.
    #[serde(default)]
    pub maximum_retry_count: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartName {
    #[default]
    #[serde(rename = "no", alias = "")]
    No,
    #[serde(rename = "always")]
    Always,
    #[serde(rename = "unless-stopped")]
    UnlessStopped,
    #[serde(rename = "on-failure")]
    OnFailure,
}

impl RestartPolicy {
    /// Whether the policy restarts after an exit with `code`, the
    /// container having been restarted `restarts` times already. A stop
    /// asked for by the user is never restarted (the caller checks).
    pub fn restarts(&self, code: i32, restarts: i64) -> bool {
        match self.name {
            RestartName::No => false,
            RestartName::Always | RestartName::UnlessStopped => true,
            RestartName::OnFailure => {
                code != 0
                    && (self.maximum_retry_count == 0
                        || restarts < i64::from(self.maximum_retry_count))
            }
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = EngineError;

    /// `--restart no|always|unless-stopped|on-failure[:N]`.
    fn from_str(p: &str) -> Result<RestartPolicy, EngineError> {
        let bad = || {
            EngineError::Invalid(format!(
                "invalid restart policy {p:?}: use no, always, unless-stopped or on-failure[:max-retries]"
            ))
        };
        let (name, max) = match p.split_once(':') {
            None => (p, None),
            Some(("on-failure", n)) => (p.split(':').next().unwrap_or_default(), Some(n)),
            Some(_) => return Err(bad()),
        };
        let name = match name {
            "" | "no" => RestartName::No,
            "always" => RestartName::Always,
            "unless-stopped" => RestartName::UnlessStopped,
            "on-failure" => RestartName::OnFailure,
            _ => return Err(bad()),
        };
        let maximum_retry_count = match max {
            Some(n) => n.parse().map_err(|_| bad())?,
            None => 0,
        };
        Ok(RestartPolicy {
            name,
            maximum_retry_count,
        })
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.name {
            RestartName::No => "no",
            RestartName::Always => "always",
            RestartName::UnlessStopped => "unless-stopped",
            RestartName::OnFailure => "on-failure",
        };
        f.write_str(name)?;
        if self.name == RestartName::OnFailure && self.maximum_retry_count > 0 {
            write!(f, ":{}", self.maximum_retry_count)?;
        }
        Ok(())
    }
}

/// The policy as stored: records written before the type held the flag.
pub(crate) fn de_restart<'de, D: Deserializer<'de>>(d: D) -> Result<RestartPolicy, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Typed(RestartPolicy),
        Flag(String),
    }
    match Stored::deserialize(d)? {
        Stored::Typed(p) => Ok(p),
        Stored::Flag(f) => f.parse().map_err(serde::de::Error::custom),
    }
}

/// The resource limits a container's process may set (setrlimit(2)).
pub const ULIMITS: &[&str] = &[
    "as",
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
];

/// One `--ulimit` (HostConfig's `Ulimits` entry). -1 is unlimited, as in
/// the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

impl Ulimit {
    /// The limits as setrlimit takes them (unlimited: u64::MAX).
    pub fn values(&self) -> (u64, u64) {
        let v = |x: i64| if x < 0 { u64::MAX } else { x as u64 };
        (v(self.soft), v(self.hard))
    }

    /// A limit the kernel knows, with soft <= hard.
    pub fn check(&self) -> Result<(), EngineError> {
        if !ULIMITS.contains(&self.name.as_str()) {
            return Err(EngineError::Invalid(format!(
                "invalid ulimit {:?}: no such limit; use one of {}",
                self.name,
                ULIMITS.join(", ")
            )));
        }
        let (s, h) = self.values();
        if s > h {
            return Err(EngineError::Invalid(format!(
                "invalid ulimit {}: the soft limit is above the hard limit",
                self
            )));
        }
        Ok(())
    }
}

impl FromStr for Ulimit {
    type Err = EngineError;

    /// `NAME=SOFT[:HARD]`.
    fn from_str(spec: &str) -> Result<Ulimit, EngineError> {
        let bad = || {
            EngineError::Invalid(format!(
                "invalid ulimit {spec:?}: use NAME=SOFT[:HARD], e.g. nofile=1024:2048"
            ))
        };
        let (name, vals) = spec.split_once('=').ok_or_else(bad)?;
        let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
        let parse = |v: &str| -> Result<i64, EngineError> {
            match v {
                "-1" | "unlimited" => Ok(-1),
                v => v
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| i64::try_from(n).ok())
                    .ok_or_else(bad),
            }
        };
        let u = Ulimit {
            name: name.to_string(),
            soft: parse(soft)?,
            hard: parse(hard)?,
        };
        u.check()?;
        Ok(u)
    }
}

impl fmt::Display for Ulimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}:{}", self.name, self.soft, self.hard)
    }
}

/// An entrypoint as kept: a list, or (records before lists) one string.
pub(crate) fn de_entrypoint<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Many(Vec<String>),
        One(String),
    }
    Ok(Option::<Stored>::deserialize(d)?.map(|s| match s {
        Stored::Many(v) => v,
        Stored::One(e) => vec![e],
    }))
}

pub(crate) fn de_ulimits<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ulimit>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Typed(Ulimit),
        Flag(String),
    }
    Vec::<Stored>::deserialize(d)?
        .into_iter()
        .map(|s| match s {
            Stored::Typed(u) => Ok(u),
            Stored::Flag(f) => f.parse().map_err(serde::de::Error::custom),
        })
        .collect()
}

/// The seccomp filter a container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seccomp {
    /// Docker's default profile (none for a privileged container).
    #[default]
    Default,
    Unconfined,
    /// A profile in Docker's JSON format, read from this path.
    Profile(String),
}

/// `--security-opt` values (HostConfig's `SecurityOpt`, strings in the
/// API too), as types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityOptions {
    pub no_new_privileges: bool,
    pub seccomp: Seccomp,
}

impl SecurityOptions {
    pub fn parse(opts: &[String]) -> Result<SecurityOptions, EngineError> {
        let mut out = SecurityOptions::default();
        for o in opts {
            let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
            match k {
                "no-new-privileges" => {
                    out.no_new_privileges = truth(v).ok_or_else(|| {
                        invalid("--security-opt", o, "no-new-privileges takes true or false")
                    })?
                }
                "seccomp" if v == "unconfined" => out.seccomp = Seccomp::Unconfined,
                "seccomp" if v.is_empty() => {
                    return Err(invalid(
                        "--security-opt",
                        o,
                        "give a profile: seccomp=PROFILE.json or seccomp=unconfined",
                    ))
                }
                "seccomp" => out.seccomp = Seccomp::Profile(v.to_string()),
                "apparmor" | "label" => {
                    tracing::warn!(option = %o, "security option ignored: AppArmor/SELinux are not supported by berth");
                }
                _ => {
                    return Err(invalid(
                        "--security-opt",
                        o,
                        "use seccomp=PROFILE|unconfined or no-new-privileges",
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// `512m`, `1g`, `100k`, `1024` (bytes): docker's sizes (powers of 1024;
/// a trailing `b` allowed).
/// `--add-host NAME:IP` (or `NAME=IP`; an IPv6 address may be written in
/// brackets): the name and the address. `host-gateway` names the bridge's
/// gateway, which needs bridge networking.
pub fn parse_extra_host(s: &str) -> Result<(String, std::net::IpAddr), EngineError> {
    let bad = |why: &str| {
        EngineError::Invalid(format!(
            "invalid argument {s:?} for \"--add-host\" flag: {why}; use NAME:IP, e.g. db:10.0.0.5"
        ))
    };
    let (name, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| bad("no address"))?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(bad("not a host name"));
    }
    let ip = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    if ip == "host-gateway" {
        return Err(bad(
            "host-gateway is the bridge network's gateway, and berth has no bridge networking yet",
        ));
    }
    let addr = ip.parse().map_err(|_| bad("not an IP address"))?;
    Ok((name.to_string(), addr))
}

/// A `--dns` server: an IP address.
pub fn check_dns_server(s: &str) -> Result<(), EngineError> {
    s.parse::<std::net::IpAddr>().map(|_| ()).map_err(|_| {
        EngineError::Invalid(format!(
            "invalid argument {s:?} for \"--dns\" flag: not an IP address"
        ))
    })
}

pub fn parse_size(s: &str) -> Result<i64, EngineError> {
    let n = berth_image::units::parse_size(s).map_err(EngineError::Invalid)?;
    i64::try_from(n).map_err(|_| EngineError::Invalid(format!("invalid size: {s:?}: too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_flags_parse_to_the_api_shape() {
        let m =
            Mount::parse_flag("type=bind,src=/srv,dst=/data,ro,bind-propagation=rshared").unwrap();
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"Type": "bind", "Source": "/srv", "Target": "/data",
                "ReadOnly": true, "BindOptions": {"Propagation": "rshared"}})
        );
        let t = Mount::parse_flag("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        let o = t.tmpfs_options.unwrap();
        assert_eq!((o.size_bytes, o.mode), (Some(64 << 20), Some(0o1770)));
        for bad in [
            "type=bind,target=/x",
            "type=bind,src=/a",
            "type=nfs,target=/x",
            "type=bind,src=/a,target=rel",
            "type=bind,src=/a,target=/x,bind-propagation=sideways",
            "type=volume,target=/x,bogus=1",
        ] {
            assert!(Mount::parse_flag(bad).is_err(), "{bad}");
        }
        let v = Mount::parse_volume_flag("/srv:/data:ro,rslave").unwrap();
        assert_eq!(
            (v.typ, v.read_only, v.propagation()),
            (MountType::Bind, true, Some(Propagation::Rslave))
        );
        let v = Mount::parse_volume_flag("cache:/c:nocopy").unwrap();
        assert_eq!(v.typ, MountType::Volume);
        assert!(v.volume_options.unwrap().no_copy);
        assert_eq!(Mount::parse_volume_flag("/anon").unwrap().source, "");
        assert!(Mount::parse_volume_flag("a:b:c:d").is_err());
        assert!(Mount::parse_volume_flag("/srv:rel").is_err());
    }

    #[test]
    fn stored_strings_still_load() {
        #[derive(Deserialize)]
        struct C {
            #[serde(deserialize_with = "de_mounts")]
            mounts: Vec<Mount>,
            #[serde(deserialize_with = "de_restart")]
            restart: RestartPolicy,
            #[serde(deserialize_with = "de_ulimits")]
            ulimits: Vec<Ulimit>,
        }
        let old: C = serde_json::from_value(serde_json::json!({
            "mounts": ["type=tmpfs,target=/t"],
            "restart": "on-failure:3",
            "ulimits": ["nofile=10:20"],
        }))
        .unwrap();
        assert_eq!(old.mounts[0].typ, MountType::Tmpfs);
        assert_eq!(old.restart.to_string(), "on-failure:3");
        assert_eq!(old.ulimits[0].values(), (10, 20));
        let new: C = serde_json::from_value(serde_json::json!({
            "mounts": [serde_json::to_value(&old.mounts[0]).unwrap()],
            "restart": serde_json::to_value(&old.restart).unwrap(),
            "ulimits": serde_json::to_value(&old.ulimits).unwrap(),
        }))
        .unwrap();
        assert_eq!(new.mounts, old.mounts);
        assert_eq!(new.restart, old.restart);
        assert_eq!(new.ulimits, old.ulimits);
    }

    #[test]
    fn restart_policies_and_ulimits() {
        let p: RestartPolicy = "on-failure:2".parse().unwrap();
        assert!(p.restarts(1, 1));
        assert!(!p.restarts(1, 2));
        assert!(!p.restarts(0, 0));
        assert!("always".parse::<RestartPolicy>().unwrap().restarts(0, 99));
        assert!(!"".parse::<RestartPolicy>().unwrap().restarts(1, 0));
        for bad in ["sometimes", "always:3", "on-failure:x", "on-failure:-1"] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 2})
        );
        let u: Ulimit = "nofile=1024:2048".parse().unwrap();
        assert_eq!(u.values(), (1024, 2048));
        assert_eq!(
            "core=-1".parse::<Ulimit>().unwrap().values(),
            (u64::MAX, u64::MAX)
        );
        for bad in ["nofile=10:5", "bogus=1", "nofile", "nofile=x"] {
            assert!(bad.parse::<Ulimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn security_options() {
        let s = SecurityOptions::parse(&["no-new-privileges".into(), "seccomp=unconfined".into()])
            .unwrap();
        assert!(s.no_new_privileges);
        assert_eq!(s.seccomp, Seccomp::Unconfined);
        let s = SecurityOptions::parse(&["seccomp:/p.json".into()]).unwrap();
        assert_eq!(s.seccomp, Seccomp::Profile("/p.json".into()));
        assert!(SecurityOptions::parse(&["bogus".into()]).is_err());
        assert!(SecurityOptions::parse(&["no-new-privileges=maybe".into()]).is_err());
    }
}
