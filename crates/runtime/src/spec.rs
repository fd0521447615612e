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
