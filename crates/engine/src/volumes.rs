//! Volumes, as Docker's `local` driver keeps them: a directory
//! `ROOT/volumes/NAME/_data` that outlives containers, recorded in
//! berth.db. Named (`-v NAME:/path`, `berth volume create`) or anonymous
//! (`-v /path`, the image's VOLUME), which `rm -v` and `--rm` remove with
//! their container. A new volume mounted over a directory of the image
//! starts as a copy of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::EngineError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    pub name: String,
    pub created: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub anonymous: bool,
}

pub use crate::config::VolumeMount;

/// Where volume `name`'s data lives.
pub fn data_dir(root: &Path, name: &str) -> PathBuf {
    root.join("volumes").join(name).join("_data")
}

fn valid_name(name: &str) -> bool {
    crate::names::valid(name)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Volume> {
    let labels: String = r.get(2)?;
    let options: String = r.get(3)?;
    Ok(Volume {
        name: r.get(0)?,
        created: r.get(1)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        options: serde_json::from_str(&options).unwrap_or_default(),
        anonymous: r.get(4)?,
    })
}

/// The volumes of a store: their table and their directories.
pub struct Volumes<'a> {
    pub(crate) db: &'a crate::db::Db,
    pub(crate) paths: &'a crate::Paths,
}

impl Volumes<'_> {
    fn event(&self, action: &str, name: &str) {
        let attrs = BTreeMap::from([("driver".to_string(), "local".to_string())]);
        crate::events::emit(
            &self.paths.runroot,
            &crate::events::Event::new("volume", action, name, attrs),
        );
    }

    /// `berth volume create`: an existing volume of that name is returned
    /// as it is (docker's behaviour).
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<Volume, EngineError> {
        let (name, anonymous) = match name {
            Some(n) => {
                if !valid_name(n) {
                    return Err(EngineError::Invalid(format!(
                        "create {n}: \"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
                    )));
                }
                (n.to_string(), false)
            }
            None => (crate::new_id(), true),
        };
        if let Some(v) = self.get(&name)? {
            return Ok(v);
        }
        if let Some(k) = options.keys().next() {
            return Err(EngineError::Invalid(format!(
                "create {name}: the local driver's option {k:?} is not supported by berth (it keeps volumes as plain directories)"
            )));
        }
        let dir = data_dir(&self.paths.root, &name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| EngineError::io(format!("create {}", dir.display()), e))?;
        let v = Volume {
            name,
            created: crate::clock::now(),
            labels,
            options,
            anonymous,
        };
        self.db.conn().execute(
            "INSERT OR IGNORE INTO volumes (name, created, labels, options, anonymous) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                v.name,
                v.created,
                serde_json::to_string(&v.labels).expect("serializes"),
                serde_json::to_string(&v.options).expect("serializes"),
                v.anonymous
            ],
        )?;
        self.event("create", &v.name);
        Ok(v)
    }

    pub fn get(&self, name: &str) -> Result<Option<Volume>, EngineError> {
        Ok(self
            .db
            .conn()
            .query_row(
                "SELECT name, created, labels, options, anonymous FROM volumes WHERE name = ?1",
                [name],
                row,
            )
            .optional()?)
    }

    pub fn list(&self) -> Result<Vec<Volume>, EngineError> {
        let mut stmt = self.db.conn().prepare(
            "SELECT name, created, labels, options, anonymous FROM volumes ORDER BY name",
        )?;
        let v = stmt.query_map([], row)?.collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// The containers that use volume `name`.
    pub fn users(&self, name: &str) -> Result<Vec<String>, EngineError> {
        Ok(self
            .db
            .list()?
            .into_iter()
            .filter(|r| r.config.volume_mounts.iter().any(|m| m.name == name))
            .map(|r| r.id)
            .collect())
    }

    /// `berth volume rm`: refused while a container uses it (even stopped,
    /// as docker does).
    pub fn remove(&self, name: &str, force: bool) -> Result<(), EngineError> {
        if self.get(name)?.is_none() {
            if force {
                return Ok(());
            }
            return Err(EngineError::NoSuchVolume(name.to_string()));
        }
        let users = self.users(name)?;
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        self.delete(name)
    }

    pub(crate) fn delete(&self, name: &str) -> Result<(), EngineError> {
        self.db
            .conn()
            .execute("DELETE FROM volumes WHERE name = ?1", [name])?;
        let dir = self.paths.root.join("volumes").join(name);
        match berth_image::layer::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io(format!("remove {}", dir.display()), e)),
        }
        self.event("destroy", name);
        Ok(())
    }

    /// `berth volume prune`: unused anonymous volumes, or every unused
    /// volume with `all`. Returns the names removed and the bytes freed.
    pub fn prune(&self, all: bool) -> Result<(Vec<String>, u64), EngineError> {
        let mut removed = Vec::new();
        let mut freed = 0;
        for v in self.list()? {
            if (all || v.anonymous) && self.users(&v.name)?.is_empty() {
                let dir = data_dir(&self.paths.root, &v.name);
                freed += berth_image::layer::tree_size(&dir).unwrap_or(0);
                self.delete(&v.name)?;
                removed.push(v.name);
            }
        }
        Ok((removed, freed))
    }

    /// After a container is gone: its anonymous volumes, if no other
    /// container uses them.
    pub fn remove_anonymous(&self, mounts: &[VolumeMount]) -> Result<(), EngineError> {
        for m in mounts.iter().filter(|m| m.anonymous) {
            if self.users(&m.name)?.is_empty() {
                self.delete(&m.name)?;
            }
        }
        Ok(())
    }
}

/// Splits `-v`/`--mount` entries into bind mounts (kept as they are) and
/// volumes (named, anonymous, or the image's VOLUMEs not otherwise
/// mounted), creating the volumes that do not exist yet. Returns the
/// volume mounts and the anonymous volumes created (to undo on failure).
pub(crate) fn resolve(
    vols: &Volumes<'_>,
    volumes: &mut Vec<String>,
    mounts: &mut Vec<crate::options::Mount>,
    image_volumes: &[String],
) -> Result<(Vec<VolumeMount>, Vec<String>), EngineError> {
    use crate::options::{Mount, MountType};
    let mut out = Vec::new();
    let mut binds = Vec::new();
    let mut bind_targets = Vec::new();
    let as_volume = |m: &Mount| VolumeMount {
        name: m.source.clone(),
        target: m.target.clone(),
        readonly: m.read_only,
        nocopy: m.volume_options.as_ref().is_some_and(|o| o.no_copy),
        anonymous: m.source.is_empty(),
    };
    for v in volumes.drain(..) {
        let m = Mount::parse_volume_flag(&v)?;
        if m.typ == MountType::Bind {
            bind_targets.push(m.target);
            binds.push(v);
        } else {
            out.push(as_volume(&m));
        }
    }
    *volumes = binds;
    let mut rest = Vec::new();
    for m in mounts.drain(..) {
        if m.typ == MountType::Volume {
            out.push(as_volume(&m));
        } else {
            rest.push(m);
        }
    }
    *mounts = rest;
    // The image's VOLUMEs not covered by a mount get anonymous volumes.
    for path in image_volumes {
        let covered = out.iter().any(|m| &m.target == path)
            || bind_targets.contains(path)
            || mounts.iter().any(|m| &m.target == path);
        if !covered {
            out.push(VolumeMount {
                target: path.clone(),
                anonymous: true,
                ..Default::default()
            });
        }
    }
    let mut created: Vec<String> = Vec::new();
    for m in &mut out {
        let existed = !m.anonymous && vols.get(&m.name)?.is_some();
        let v = match vols.create(
            (!m.anonymous).then_some(m.name.as_str()),
            BTreeMap::new(),
            BTreeMap::new(),
        ) {
            Ok(v) => v,
            Err(e) => {
                for n in &created {
                    let _ = vols.delete(n);
                }
                return Err(e);
            }
        };
        m.name = v.name.clone();
        if !existed {
            created.push(v.name);
        }
    }
    Ok((out, created))
}

/// A volume mounted for the first time over a directory of the image
/// starts as a copy of that directory (unless `nocopy`), as with Docker.
pub(crate) fn fill_from_image(
    root: &Path,
    rootfs: &Path,
    m: &VolumeMount,
) -> Result<(), EngineError> {
    if m.nocopy {
        return Ok(());
    }
    let data = data_dir(root, &m.name);
    let empty = std::fs::read_dir(&data)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !empty {
        return Ok(());
    }
    // The image's directory, resolved inside the rootfs.
    let rel = m.target.trim_start_matches('/');
    let Some(fd) = crate::users::open_dir_in_root(rootfs, rel) else {
        return Ok(());
    };
    let src = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ));
    let (reader, writer) = std::io::pipe().map_err(|e| EngineError::io("pipe", e))?;
    let src2 = src.clone();
    let t = std::thread::spawn(move || {
        berth_image::diff::write_path_tar(&src2, None, true, None, writer)
    });
    let applied = berth_image::layer::apply_with(
        reader,
        &data,
        None,
        berth_image::layer::ApplyOptions::ARCHIVE,
    );
    let written = t.join().expect("the tar writer does not panic");
    applied.map_err(|e| {
        EngineError::Invalid(format!("copying {} into volume {}: {e}", m.target, m.name))
    })?;
    written.map_err(|e| EngineError::io(format!("reading {} of the image", m.target), e))?;
    drop(fd);
    Ok(())
}
