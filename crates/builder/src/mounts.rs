//! `RUN --mount=...`: cache directories that outlive builds, bind mounts of
//! the context or of another stage or image, tmpfs, and secrets, made
//! ready on the host before the step and handed to the step runner as
//! docker run's `--mount` values. Their contents are never part of the
//! layer (the runner removes the mount points it had to create).

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::BuildError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    Cache {
        id: String,
        sharing: Sharing,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Bind {
        rw: bool,
    },
    Tmpfs {
        size: Option<String>,
    },
    Secret {
        id: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        env: Option<String>,
    },
}

/// One `--mount` of a RUN, its values expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    pub kind: MountKind,
    pub target: String,
    /// `from=`: a stage or image whose files are mounted (bind, cache).
    pub from: Option<String>,
    /// `source=`: the path in the context or in `from`.
    pub source: String,
    pub readonly: bool,
}

fn bad(spec: &str, why: &str) -> BuildError {
    BuildError::Invalid(format!("--mount={spec}: {why}"))
}

fn octal(spec: &str, v: &str) -> Result<u32, BuildError> {
    u32::from_str_radix(v, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| bad(spec, &format!("mode {v:?} is not an octal mode")))
}

fn number(spec: &str, k: &str, v: &str) -> Result<u32, BuildError> {
    v.parse()
        .map_err(|_| bad(spec, &format!("{k}={v} is not a number")))
}

fn boolean(spec: &str, k: &str, v: &str) -> Result<bool, BuildError> {
    match v {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(bad(spec, &format!("{k}={v}: expected true or false"))),
    }
}

/// Parses one `--mount` value (BuildKit's CSV of key=value fields).
pub fn parse(spec: &str) -> Result<RunMount, BuildError> {
    let mut typ = "bind".to_string();
    let mut target = None;
    let mut from = None;
    let mut source = None;
    let mut id = None;
    let mut rw = false;
    let mut ro = None;
    let mut sharing = Sharing::Shared;
    let mut mode = None;
    let mut uid = 0;
    let mut gid = 0;
    let mut size = None;
    let mut required = false;
    let mut env = None;
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        let v = v.trim_matches('"');
        match k.to_ascii_lowercase().as_str() {
            "type" => typ = v.to_ascii_lowercase(),
            "target" | "dst" | "destination" => target = Some(v.to_string()),
            "from" => from = Some(v.to_string()),
            "source" | "src" => source = Some(v.to_string()),
            "id" => id = Some(v.to_string()),
            "rw" | "readwrite" => rw = boolean(spec, k, v)?,
            "ro" | "readonly" => ro = Some(boolean(spec, k, v)?),
            "sharing" => {
                sharing = match v {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(bad(spec, "sharing must be shared, private or locked")),
                }
            }
            "mode" => mode = Some(octal(spec, v)?),
            "uid" => uid = number(spec, k, v)?,
            "gid" => gid = number(spec, k, v)?,
            "size" => size = Some(v.to_string()),
            "required" => required = boolean(spec, k, v)?,
            "env" => env = Some(v.to_string()),
            other => return Err(bad(spec, &format!("unknown field {other:?}"))),
        }
    }
    let kind = match typ.as_str() {
        "cache" => MountKind::Cache {
            id: id.clone().or_else(|| target.clone()).unwrap_or_default(),
            sharing,
            mode: mode.unwrap_or(0o755),
            uid,
            gid,
        },
        "bind" => MountKind::Bind { rw },
        "tmpfs" => MountKind::Tmpfs { size },
        "secret" => {
            let id = id
                .clone()
                .or_else(|| {
                    target
                        .as_deref()
                        .and_then(|t| t.rsplit('/').next())
                        .map(str::to_string)
                })
                .ok_or_else(|| bad(spec, "a secret needs id= (or a target to name it)"))?;
            if target.is_none() && env.is_none() {
                target = Some(format!("/run/secrets/{id}"));
            }
            MountKind::Secret {
                id,
                required,
                mode: mode.unwrap_or(0o400),
                uid,
                gid,
                env,
            }
        }
        "ssh" => {
            return Err(bad(
                spec,
                "type=ssh is not supported by berth (no SSH agent forwarding yet)",
            ))
        }
        other => {
            return Err(bad(
                spec,
                &format!("unknown type {other:?}: use cache, bind, tmpfs or secret"),
            ))
        }
    };
    let secret_env_only =
        matches!(&kind, MountKind::Secret { env: Some(_), .. }) && target.is_none();
    let target = match target {
        Some(t) if t.starts_with('/') || secret_env_only => t,
        Some(t) => return Err(bad(spec, &format!("target {t:?} must be an absolute path"))),
        None if secret_env_only => String::new(),
        None => return Err(bad(spec, "target= is required")),
    };
    let readonly = match &kind {
        MountKind::Bind { rw } => !rw,
        MountKind::Secret { .. } => true,
        _ => ro.unwrap_or(false),
    };
    Ok(RunMount {
        kind,
        target,
        from,
        source: source.unwrap_or_default(),
        readonly,
    })
}

/// Where a cache mount's directory lives in the store.
pub fn cache_dir(root: &Path, id: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    root.join("build-mounts")
        .join("cache")
        .join(&hex::encode(h.finalize())[..32])
}

/// Makes a cache mount's directory (mode and owner on first use).
pub fn ensure_cache_dir(dir: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)
        .map_err(|e| BuildError::io(format!("create {}", parent.display()), e))?;
    // What cache mounts keep (set-id files included) is root's alone.
    if let Some(top) = parent.parent() {
        crate::private_dir(top)?;
    }
    // A name of its own: stages building at once may make it together.
    let tmp = parent.join(format!(".new-{}", &berth_engine::new_id()[..16]));
    std::fs::create_dir(&tmp)
        .map_err(|e| BuildError::io(format!("create {}", tmp.display()), e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| BuildError::io("chmod a cache mount", e))?;
    std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))
        .map_err(|e| BuildError::io("chown a cache mount", e))?;
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // Another build made it first.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir(&tmp);
            Ok(())
        }
        Err(e) => Err(BuildError::io(format!("create {}", dir.display()), e)),
    }
}

/// Parses `--secret id=ID[,src=FILE|,env=VAR]` (src defaults to env ID
/// then... as docker: with neither, the env variable named ID).
pub fn parse_secret_flag(s: &str) -> Result<(String, Vec<u8>), String> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut typ = None;
    for field in s.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" => typ = Some(v.to_string()),
            other => {
                return Err(format!(
                    "--secret {s}: unknown field {other:?} (use id=ID,src=FILE or id=ID,env=VAR)"
                ))
            }
        }
    }
    let id = id
        .or_else(|| {
            src.as_deref()
                .and_then(|p| p.rsplit('/').next())
                .map(str::to_string)
        })
        .ok_or_else(|| format!("--secret {s}: id= is required"))?;
    let data = match (typ.as_deref(), src, env) {
        (Some("env"), Some(v), None) | (_, None, Some(v)) => std::env::var(&v)
            .map_err(|_| format!("--secret {s}: the environment variable {v} is not set"))?
            .into_bytes(),
        (_, Some(p), None) => {
            std::fs::read(&p).map_err(|e| format!("--secret {s}: cannot read {p}: {e}"))?
        }
        (_, None, None) => match std::env::var(&id) {
            Ok(v) => v.into_bytes(),
            Err(_) => return Err(format!("--secret {s}: give src=FILE or env=VAR")),
        },
        (_, Some(_), Some(_)) => return Err(format!("--secret {s}: src and env are exclusive")),
    };
    Ok((id, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_mount_forms() {
        let m = parse("type=cache,target=/root/.cache,sharing=locked,id=pip").unwrap();
        assert_eq!(m.target, "/root/.cache");
        assert!(
            matches!(m.kind, MountKind::Cache { ref id, sharing: Sharing::Locked, mode: 0o755, .. } if id == "pip")
        );
        let m = parse("type=cache,target=/c").unwrap();
        assert!(matches!(m.kind, MountKind::Cache { ref id, .. } if id == "/c"));
        let m = parse("target=/src,source=app,rw").unwrap();
        assert_eq!(m.kind, MountKind::Bind { rw: true });
        assert!(!m.readonly);
        assert_eq!(m.source, "app");
        let m = parse("type=secret,id=tok").unwrap();
        assert_eq!(m.target, "/run/secrets/tok");
        assert!(m.readonly);
        let m = parse("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!(m.target, "");
        let m = parse("type=tmpfs,target=/t,size=10m").unwrap();
        assert_eq!(
            m.kind,
            MountKind::Tmpfs {
                size: Some("10m".into())
            }
        );
        for bad in [
            "type=cache",
            "type=bogus,target=/x",
            "type=bind,target=relative",
            "type=cache,target=/x,sharing=sometimes",
            "type=cache,target=/x,mode=999",
            "type=bind,target=/x,color=blue",
            "type=ssh",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
