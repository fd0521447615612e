//! Loading and checking a bundle's `config.json`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};

/// Why a bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path:?} is not a valid OCI runtime config")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("config.json: {field}: {what}")]
    Invalid { field: String, what: String },
}

fn invalid(field: impl Into<String>, what: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        what: what.into(),
    }
}

/// Mount types berth knows how to set up.
pub const MOUNT_TYPES: &[&str] = &[
    "bind", "rbind", "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "overlay",
    "none",
];

/// Reads and checks `BUNDLE/config.json`. The returned spec's root path is
/// made absolute (relative to the bundle).
/// The rlimit types Linux has (`process.rlimits[].type`).
const RLIMITS: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// An error naming the rlimit types of `raw` that Linux does not have.
fn unknown_rlimits(raw: &[u8]) -> Option<SpecError> {
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let unknown: Vec<String> = v
        .pointer("/process/rlimits")?
        .as_array()?
        .iter()
        .filter_map(|r| r.get("type")?.as_str())
        .filter(|t| !RLIMITS.contains(t))
        .map(|t| format!("{t:?}"))
        .collect();
    (!unknown.is_empty()).then(|| {
        invalid(
            "process.rlimits",
            format!(
                "unknown rlimit type {}: Linux has {}",
                unknown.join(", "),
                RLIMITS.join(", ")
            ),
        )
    })
}

/// SemVer 2.0: MAJOR.MINOR.PATCH (numbers without leading zeros), then an
/// optional `-pre.release` and `+build` of dot-separated [0-9A-Za-z-]
/// identifiers.
fn is_semver(v: &str) -> bool {
    let (v, build) = match v.split_once('+') {
        Some((v, b)) => (v, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let ident =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let numeric = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && pre.is_none_or(|p| {
            p.split('.')
                .all(|i| ident(i) && (!i.bytes().all(|b| b.is_ascii_digit()) || numeric(i)))
        })
        && build.is_none_or(|b| b.split('.').all(ident))
}

pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    let path = bundle.join("config.json");
    let raw = std::fs::read(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    let mut spec: Spec = serde_json::from_slice(&raw).map_err(|source| {
        // Name what the typed parse would only call a bad variant.
        if let Some(e) = unknown_rlimits(&raw) {
            return e;
        }
        SpecError::Parse {
            path: path.clone(),
            source,
        }
    })?;
    if !is_semver(spec.version()) {
        return Err(invalid(
            "ociVersion",
            format!(
                "{:?} is not a SemVer 2.0 version (such as \"1.0.2\"), as the runtime spec requires",
                spec.version()
            ),
        ));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing: the container needs a root filesystem"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    if !rootfs.is_dir() {
        return Err(invalid(
            "root.path",
            format!("{} does not exist or is not a directory", rootfs.display()),
        ));
    }
    let mut root = root.clone();
    root.set_path(rootfs);
    spec.set_root(Some(root));
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing: nothing to run"))?;
    if process.args().as_ref().is_none_or(Vec::is_empty) {
        return Err(invalid("process.args", "empty: nothing to run"));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(
            "process.cwd",
            format!("{:?} is not an absolute path", process.cwd()),
        ));
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        check_mount(i, m)?;
    }
    // This host has neither AppArmor nor SELinux enforcing for berth: say so
    // rather than pretend the profile applies.
    if let Some(p) = process.apparmor_profile() {
        tracing::warn!(profile = %p, "process.apparmorProfile ignored: AppArmor is not supported by berth-runc on this host");
    }
    if let Some(l) = process.selinux_label() {
        tracing::warn!(label = %l, "process.selinuxLabel ignored: SELinux is not supported by berth-runc");
    }
    Ok(spec)
}

fn check_mount(i: usize, m: &Mount) -> Result<(), SpecError> {
    let field = format!("mounts[{i}]");
    if !m.destination().is_absolute() {
        return Err(invalid(
            format!("{field}.destination"),
            format!("{:?} is not an absolute path", m.destination()),
        ));
    }
    let is_bind = m
        .options()
        .iter()
        .flatten()
        .any(|o| o == "bind" || o == "rbind");
    match m.typ().as_deref() {
        None if is_bind => Ok(()),
        None => Err(invalid(
            format!("{field}.type"),
            format!("missing for {:?} (and no bind option)", m.destination()),
        )),
        Some(t) if MOUNT_TYPES.contains(&t) || is_bind => Ok(()),
        Some(t) => Err(invalid(
            format!("{field}.type"),
            format!(
                "unknown mount type {t:?} for {:?} (berth supports {})",
                m.destination(),
                MOUNT_TYPES.join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::is_semver;

    #[test]
    fn oci_version_must_be_semver() {
        for ok in [
            "1.0.0",
            "1.0.2-dev",
            "1.2.0",
            "1.0.0-rc.1+build.5",
            "10.20.30",
        ] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in [
            "invalid", "1.0", "1.0.0.0", "01.0.0", "1.0.0-", "1.0.0-01", "1.0.0+", "", "v1.0.0",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
    }
}
