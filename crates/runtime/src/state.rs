//! Containers' persisted state under the runtime's root directory
//! (`ROOT/ID/state.json`), and their live status.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors about stored containers.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.' only")]
    InvalidId(String),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("cannot access container state {path:?}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt container state {path:?}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The OCI states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What berth records about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    /// Init's pid in the runtime's pid namespace.
    pub pid: i32,
    /// Init's start time (field 22 of /proc/PID/stat), so that a reused pid
    /// is never taken for the container.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub paused: bool,
    /// The cgroups path the container was created with.
    #[serde(default)]
    pub cgroups_path: Option<PathBuf>,
}

pub fn check_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

/// A container's directory under the runtime root.
pub fn dir(root: &Path, id: &str) -> Result<PathBuf, StateError> {
    check_id(id)?;
    Ok(root.join(id))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Saved {
    pub fn load(root: &Path, id: &str) -> Result<Saved, StateError> {
        let path = dir(root, id)?.join("state.json");
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        serde_json::from_slice(&raw).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Writes state.json atomically.
    pub fn save(&self, root: &Path) -> Result<(), StateError> {
        let d = dir(root, &self.id)?;
        let tmp = d.join("state.json.tmp");
        let data = serde_json::to_vec(self).expect("state serializes");
        fs::write(&tmp, data).map_err(io_err(&tmp))?;
        fs::rename(&tmp, d.join("state.json")).map_err(io_err(&tmp))
    }

    /// Every container under `root`, by id.
    pub fn list(root: &Path) -> Result<Vec<Saved>, StateError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(root)(e)),
        };
        for e in entries {
            let e = e.map_err(io_err(root))?;
            let id = e.file_name().to_string_lossy().into_owned();
            if let Ok(s) = Saved::load(root, &id) {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Whether init is still the process we started (alive, not a zombie,
    /// same start time).
    pub fn alive(&self) -> bool {
        match proc_stat(self.pid) {
            Some((state, start)) => start == self.start_time && state != 'Z' && state != 'X',
            None => false,
        }
    }

    /// The live status.
    pub fn status(&self, root: &Path) -> Status {
        if !self.alive() {
            return Status::Stopped;
        }
        if self.paused {
            return Status::Paused;
        }
        match dir(root, &self.id) {
            Ok(d) if d.join("exec.fifo").exists() => Status::Created,
            _ => Status::Running,
        }
    }

    /// The OCI state document (with runc's extra fields).
    pub fn oci_state(&self, root: &Path) -> serde_json::Value {
        let status = self.status(root);
        serde_json::json!({
            "ociVersion": "1.2.0",
            "id": self.id,
            "pid": if status == Status::Stopped { 0 } else { self.pid },
            "status": status.to_string(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": "",
            "annotations": self.annotations,
        })
    }
}

/// State letter and start time (clock ticks since boot) of a process.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall is index 19 after "pid (comm) ".
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        for ok in ["a", "abc-1.2_x+y", "0123456789abcdef"] {
            check_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let pid = std::process::id() as i32;
        let (state, start) = proc_stat(pid).unwrap();
        assert_ne!(state, 'Z');
        let s = Saved {
            id: "x".into(),
            pid,
            start_time: start,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: String::new(),
            annotations: HashMap::new(),
            paused: false,
            cgroups_path: None,
        };
        assert!(s.alive());
        let reused = Saved {
            start_time: start + 1,
            ..s
        };
        assert!(!reused.alive(), "a different start time means a reused pid");
    }
}
