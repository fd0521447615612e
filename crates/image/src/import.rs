//! `berth import`: a root filesystem tar becomes a one-layer image, as
//! `docker import` does, with `--change` Dockerfile instructions applied to
//! its config.

use std::io::Read;

use serde_json::{json, Map, Value};

use crate::digest::{Algorithm, Digest};
use crate::load::{LoadError, Stage};
use crate::reference::Reference;
use crate::store::Store;

#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Dockerfile instructions such as `CMD ["sh"]` or `ENV A=1`.
    pub changes: Vec<String>,
    /// The history comment (docker's default is "Imported from -").
    pub message: Option<String>,
    /// `os/arch`, default linux/amd64.
    pub platform: Option<String>,
}

/// Why a `--change` was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("invalid --change {0:?}: expected INSTRUCTION ARGUMENTS")]
    Empty(String),
    #[error("invalid --change {change:?}: {instruction} is not supported (use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR)")]
    Unsupported { change: String, instruction: String },
    #[error("invalid --change {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// Imports `input` as a new image; returns its ID.
pub fn import(
    store: &mut Store,
    input: impl Read + Send,
    reference: Option<&Reference>,
    opts: &Options,
) -> Result<Digest, LoadError> {
    let mut config = Map::new();
    for c in &opts.changes {
        apply_change(&mut config, c).map_err(|e| LoadError::Invalid {
            file: "--change".into(),
            what: e.to_string(),
        })?;
    }
    let (os, arch) = match opts.platform.as_deref() {
        None | Some("") => ("linux".to_string(), "amd64".to_string()),
        Some(p) => {
            let mut parts = p.split('/');
            let (Some(os), Some(arch)) = (parts.next(), parts.next()) else {
                return Err(LoadError::Invalid {
                    file: "--platform".into(),
                    what: format!("{p:?} is not OS/ARCH such as linux/amd64"),
                });
            };
            (os.to_string(), arch.to_string())
        }
    };
    let _lock = store.lock_shared()?;
    let tmp = store.temp_dir()?;
    let mut stage = Stage::new(store, &tmp);
    let layer = stage.layer_from_reader(input, None, None, None, None, None)?;
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut doc = json!({
        "architecture": arch,
        "os": os,
        "created": created,
        "config": Value::Object(config),
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id.to_string()] },
        "history": [{
            "created": created,
            "comment": opts.message.clone().unwrap_or_else(|| "Imported from -".into()),
        }],
    });
    if doc["config"].as_object().is_some_and(Map::is_empty) {
        doc.as_object_mut().expect("object").remove("config");
    }
    let bytes = serde_json::to_vec(&doc).expect("config serializes");
    let id = stage.blob_bytes(&bytes, Algorithm::Sha256)?;
    let tags = reference.into_iter().cloned().collect();
    stage.add_image(
        id.clone(),
        bytes.len() as u64,
        Some(created),
        vec![layer],
        None,
        tags,
    )?;
    stage.commit()?;
    Ok(id)
}

/// Exec form (`["a","b"]`) or shell form (`a b` → `/bin/sh -c "a b"`).
fn command(args: &str) -> Value {
    match serde_json::from_str::<Vec<String>>(args) {
        Ok(v) => json!(v),
        Err(_) => json!(["/bin/sh", "-c", args]),
    }
}

/// `k=v k2="v 2"` pairs, or the legacy `k v` single pair.
fn pairs(args: &str, change: &str) -> Result<Vec<(String, String)>, ChangeError> {
    if !args.contains('=') {
        let (k, v) = args
            .split_once(char::is_whitespace)
            .ok_or(ChangeError::Invalid(change.into(), "expected KEY=VALUE"))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quote = None;
        for c in chars.by_ref() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, c) => word.push(c),
            }
        }
        let (k, v) = word
            .split_once('=')
            .ok_or(ChangeError::Invalid(change.into(), "expected KEY=VALUE"))?;
        if k.is_empty() {
            return Err(ChangeError::Invalid(change.into(), "empty key"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

pub fn apply_change(config: &mut Map<String, Value>, change: &str) -> Result<(), ChangeError> {
    let change_t = change.trim();
    let (instr, args) = change_t
        .split_once(char::is_whitespace)
        .map(|(i, a)| (i, a.trim()))
        .ok_or_else(|| ChangeError::Empty(change.to_string()))?;
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), command(args));
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), command(args));
        }
        "ENV" => {
            let env = config.entry("Env").or_insert_with(|| json!([]));
            let list = env.as_array_mut().expect("Env is a list");
            for (k, v) in pairs(args, change)? {
                list.retain(|e| {
                    e.as_str().and_then(|s| s.split_once('=')).map(|(ek, _)| ek) != Some(&k)
                });
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            for (k, v) in pairs(args, change)? {
                labels[k] = json!(v);
            }
        }
        "EXPOSE" => {
            let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            for p in args.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                ports[p] = json!({});
            }
        }
        "VOLUME" => {
            let vols = config.entry("Volumes").or_insert_with(|| json!({}));
            let list = serde_json::from_str::<Vec<String>>(args)
                .unwrap_or_else(|_| args.split_whitespace().map(str::to_string).collect());
            for v in list {
                vols[v] = json!({});
            }
        }
        "USER" => {
            config.insert("User".into(), json!(args));
        }
        "WORKDIR" => {
            if !args.starts_with('/') {
                return Err(ChangeError::Invalid(
                    change.into(),
                    "WORKDIR must be an absolute path",
                ));
            }
            config.insert("WorkingDir".into(), json!(args));
        }
        "STOPSIGNAL" => {
            config.insert("StopSignal".into(), json!(args));
        }
        "ONBUILD" => {
            let list = config.entry("OnBuild").or_insert_with(|| json!([]));
            list.as_array_mut()
                .expect("OnBuild is a list")
                .push(json!(args));
        }
        other => {
            return Err(ChangeError::Unsupported {
                change: change.to_string(),
                instruction: other.to_string(),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_shape_the_config() {
        let mut c = Map::new();
        for ch in [
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/run --fast",
            "ENV A=1 B=\"two words\"",
            "ENV A 3",
            "EXPOSE 80 53/udp",
            "LABEL org.example=yes",
            "USER app",
            "WORKDIR /srv",
            "STOPSIGNAL SIGINT",
        ] {
            apply_change(&mut c, ch).unwrap();
        }
        let v = Value::Object(c);
        assert_eq!(v["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(v["Entrypoint"], json!(["/bin/sh", "-c", "/bin/run --fast"]));
        assert_eq!(v["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(v["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(v["Labels"]["org.example"], "yes");
        assert_eq!(v["WorkingDir"], "/srv");
        assert!(apply_change(&mut Map::new(), "RUN rm -rf /").is_err());
        assert!(apply_change(&mut Map::new(), "WORKDIR rel").is_err());
        assert!(apply_change(&mut Map::new(), "CMD").is_err());
    }
}

/// What `berth commit` makes its image from, besides the layer.
#[derive(Debug, Default, Clone)]
pub struct CommitOptions {
    /// The container's config in Docker's form (Env, Cmd, Entrypoint,
    /// WorkingDir, User, Labels...), before `changes`.
    pub config: Map<String, Value>,
    /// `--change` Dockerfile instructions.
    pub changes: Vec<String>,
    /// `--message`: the history comment.
    pub message: Option<String>,
    /// `--author`.
    pub author: Option<String>,
    /// The history's created_by: the container's command.
    pub created_by: String,
    /// The container's id, recorded as Docker records it.
    pub container: String,
}

/// `berth commit`: a new image of `parent`'s layers plus the layer tar at
/// `layer_tar` (a file in `tmp`, moved into the store), with `opts`'
/// config. Nothing is visible until everything is in place.
pub fn commit(
    store: &mut Store,
    parent: &Digest,
    layer_tar: &std::path::Path,
    reference: Option<&Reference>,
    opts: &CommitOptions,
) -> Result<Digest, LoadError> {
    let mut config = opts.config.clone();
    for c in &opts.changes {
        apply_change(&mut config, c).map_err(|e| LoadError::Invalid {
            file: "--change".into(),
            what: e.to_string(),
        })?;
    }
    let _lock = store.lock_shared()?;
    let parent_bytes = store.read_blob(parent, 4 << 20)?;
    let mut doc: Value =
        serde_json::from_slice(&parent_bytes).map_err(|source| LoadError::Json {
            file: format!("image config {parent}"),
            what: "an image config",
            source,
        })?;
    let mut layers = store.layers(parent)?;
    let tmp = store.temp_dir()?;
    let mut stage = Stage::new(store, &tmp);
    let input = std::fs::File::open(layer_tar).map_err(|source| LoadError::Open {
        path: layer_tar.to_path_buf(),
        source,
    })?;
    let layer = stage.layer_from_reader(
        input,
        Some(layer_tar.to_path_buf()),
        None,
        None,
        None,
        layers.last().map(|l| &l.chain_id),
    )?;
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let obj = doc.as_object_mut().ok_or_else(|| LoadError::Invalid {
        file: format!("image config {parent}"),
        what: "not a JSON object".into(),
    })?;
    obj.insert("created".into(), json!(created));
    obj.insert("config".into(), Value::Object(config));
    obj.insert("container".into(), json!(opts.container));
    match &opts.author {
        Some(a) => obj.insert("author".into(), json!(a)),
        None => obj.remove("author"),
    };
    let mut entry = json!({"created": created, "created_by": opts.created_by});
    if let Some(a) = &opts.author {
        entry["author"] = json!(a);
    }
    if let Some(m) = &opts.message {
        entry["comment"] = json!(m);
    }
    let history = obj
        .entry("history")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .map(|h| h.push(entry));
    if history.is_none() {
        obj.insert("history".into(), json!([]));
    }
    let diff_ids = obj
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| LoadError::Invalid {
            file: format!("image config {parent}"),
            what: "no rootfs.diff_ids".into(),
        })?;
    diff_ids.push(json!(layer.diff_id.to_string()));
    let bytes = serde_json::to_vec(&doc).expect("config serializes");
    let id = stage.blob_bytes(&bytes, Algorithm::Sha256)?;
    layers.push(layer);
    let tags = reference.into_iter().cloned().collect();
    stage.add_image(
        id.clone(),
        bytes.len() as u64,
        Some(created),
        layers,
        None,
        tags,
    )?;
    stage.commit()?;
    Ok(id)
}
