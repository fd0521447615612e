//! `berth diff` and `berth commit`: a container's changes, read from its
//! overlay upper directory.

use serde_json::{json, Map, Value};

use crate::db::{Record, State};
use crate::Engine;
use crate::EngineError;

/// `docker commit`'s options.
#[derive(Debug, Clone, Default)]
pub struct CommitConfig {
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    /// Freeze the container while its changes are read (docker's default).
    pub pause: bool,
}

/// `berth diff`: the container's changes, A/C/D, sorted by path.
pub fn diff(eng: &mut Engine, key: &str) -> Result<Vec<berth_image::diff::Change>, EngineError> {
    let rec = eng.get(key)?;
    let layout = eng.layout(&rec.id);
    let mut lowers = vec![layout.init()];
    lowers.extend(eng.image_lowers(&rec.image_id)?);
    let upper = layout.upper();
    if !upper.exists() {
        // Never started: nothing changed.
        return Ok(Vec::new());
    }
    berth_image::diff::changes(&upper, &lowers)
        .map_err(|e| EngineError::io(format!("read the changes in {}", upper.display()), e))
}

/// The container's config as the new image's config: the image's, with
/// what `run` changed (command, entrypoint, env, workdir, user, labels).
fn image_config_for(eng: &Engine, rec: &Record) -> Result<Map<String, Value>, EngineError> {
    let digest: berth_image::digest::Digest = rec
        .image_id
        .parse()
        .map_err(|_| EngineError::Invalid(format!("bad image id {}", rec.image_id)))?;
    let blob = eng.store.read_blob(&digest, 4 << 20)?;
    let doc: Value = serde_json::from_slice(&blob)
        .map_err(|e| EngineError::Invalid(format!("image config: {e}")))?;
    let mut cfg = doc
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let image = eng.image_config(&rec.image_id)?;
    let c = &rec.config;
    let no_tty = crate::config::ContainerConfig {
        tty: false,
        ..c.clone()
    };
    let env: Vec<String> = crate::config::process_env(&no_tty, &image, "")
        .into_iter()
        .filter(|e| !e.starts_with("HOSTNAME="))
        .collect();
    cfg.insert("Env".into(), json!(env));
    if let Some(e) = &c.entrypoint {
        let ep = if e.iter().all(|s| s.is_empty()) {
            json!(null)
        } else {
            json!(e)
        };
        cfg.insert("Entrypoint".into(), ep);
        let cmd = if c.cmd.is_empty() {
            json!(null)
        } else {
            json!(c.cmd)
        };
        cfg.insert("Cmd".into(), cmd);
    } else if !c.cmd.is_empty() {
        cfg.insert("Cmd".into(), json!(c.cmd));
    }
    if let Some(w) = &c.workdir {
        cfg.insert("WorkingDir".into(), json!(w));
    }
    if let Some(u) = &c.user {
        cfg.insert("User".into(), json!(u));
    }
    if !c.labels.is_empty() {
        let mut labels = cfg
            .get("Labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (k, v) in &c.labels {
            labels.insert(k.clone(), json!(v));
        }
        cfg.insert("Labels".into(), Value::Object(labels));
    }
    if let Some(s) = &c.stop_signal {
        cfg.insert("StopSignal".into(), json!(s));
    }
    Ok(cfg)
}

/// `berth commit`: a new image of the container's image plus one layer of
/// its changes (whiteouts in OCI form), tagged `reference` if given.
pub fn commit(
    eng: &mut Engine,
    key: &str,
    reference: Option<&str>,
    opts: &CommitConfig,
) -> Result<berth_image::digest::Digest, EngineError> {
    let rec = eng.get(key)?;
    let reference = match reference {
        Some(r) => Some(
            berth_image::reference::Reference::parse(r)
                .map_err(|e| EngineError::Invalid(format!("invalid reference format: {e}")))?,
        ),
        None => None,
    };
    let config = image_config_for(eng, &rec)?;
    let parent: berth_image::digest::Digest = rec
        .image_id
        .parse()
        .map_err(|_| EngineError::Invalid(format!("bad image id {}", rec.image_id)))?;
    let layout = eng.layout(&rec.id);
    let upper = layout.upper();
    let tmp = eng.store.temp_dir()?;
    let tar_path = tmp.path().join("layer.tar");
    let rt = eng.paths.runtime();
    let freeze = opts.pause && rec.state == State::Running;
    // Recorded before the freeze: if this process dies while the container
    // is frozen, the next command that looks at it thaws it.
    let _freeze = if freeze {
        let mark = eng.mark_freeze(&rec.id)?;
        eng.runtime.set_paused(&rt, &rec.id, true)?;
        Some(mark)
    } else {
        None
    };
    let written = (|| -> std::io::Result<()> {
        let f = std::fs::File::create_new(&tar_path)?;
        let mut w = std::io::BufWriter::new(f);
        if upper.exists() {
            berth_image::diff::write_tar(&upper, &mut w)?;
        } else {
            // An empty tar: its end-of-archive blocks.
            std::io::Write::write_all(&mut w, &[0u8; 1024])?;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    })();
    if freeze {
        let _ = eng.runtime.set_paused(&rt, &rec.id, false);
    }
    drop(_freeze);
    written.map_err(|e| EngineError::io(format!("read the changes in {}", upper.display()), e))?;
    let created_by = std::iter::once(rec.config.path.as_str())
        .chain(rec.config.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let id = berth_image::import::commit(
        &mut eng.store,
        &parent,
        &tar_path,
        reference.as_ref(),
        &berth_image::import::CommitOptions {
            config,
            changes: opts.changes.clone(),
            message: opts.message.clone(),
            author: opts.author.clone(),
            created_by,
            container: rec.id.clone(),
        },
    )
    .map_err(|e| EngineError::Invalid(format!("commit: {e}")))?;
    drop(tmp);
    Ok(id)
}
