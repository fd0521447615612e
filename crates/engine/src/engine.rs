//! The engine: containers created from images, and what can be done to
//! them. Starting is in `monitor`: the process that starts a container's
//! init is its parent for life and records its exit.

use berth_image::store::{Store, CONFIG_LIMIT};

use crate::config::{ContainerConfig, ImageConfig};
use crate::db::{Db, Record, State};
use crate::rootfs::Layout;
use crate::{EngineError, Paths};

pub struct Engine {
    pub paths: Paths,
    pub store: Store,
    pub db: Db,
    /// The OCI runtime containers are run with.
    pub(crate) runtime: std::sync::Arc<dyn crate::runtime::Runtime>,
}

/// A freeze in progress (see `Engine::mark_freeze`); the mark goes when
/// dropped.
pub(crate) struct FreezeMark {
    path: std::path::PathBuf,
}

impl Drop for FreezeMark {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Engine {
    pub fn open(paths: &Paths) -> Result<Engine, EngineError> {
        Engine::open_with(paths, crate::runtime::default())
    }

    /// An engine whose containers run through `runtime` (a fake in tests).
    pub fn open_with(
        paths: &Paths,
        runtime: std::sync::Arc<dyn crate::runtime::Runtime>,
    ) -> Result<Engine, EngineError> {
        let store = Store::open(&paths.root)?;
        let db = Db::open(&paths.root)?;
        // The runroot holds attach sockets and runtime state: root's only.
        if let Err(e) = std::fs::create_dir_all(&paths.runroot)
            .and_then(|()| berth_image::store::private_dirs(&paths.runroot, &["runtime", "attach"]))
        {
            return Err(EngineError::io(
                format!("runroot {}", paths.runroot.display()),
                e,
            ));
        }
        Ok(Engine {
            paths: paths.clone(),
            store,
            db,
            runtime,
        })
    }

    /// The store's volumes.
    pub fn volumes(&self) -> crate::volumes::Volumes<'_> {
        crate::volumes::Volumes {
            db: &self.db,
            paths: &self.paths,
        }
    }

    pub fn layout(&self, id: &str) -> Layout {
        Layout::new(&self.paths.root, id)
    }

    /// Where a running container's monitor serves `attach` (short enough
    /// for a unix socket path).
    pub fn attach_socket(&self, id: &str) -> std::path::PathBuf {
        self.paths
            .runroot
            .join("attach")
            .join(format!("{}.sock", &id[..id.len().min(16)]))
    }

    /// The unpacked layers of an image, top first (overlay's lowerdir
    /// order).
    pub fn image_lowers(&self, image_id: &str) -> Result<Vec<std::path::PathBuf>, EngineError> {
        let digest = image_id
            .parse()
            .map_err(|_| EngineError::Invalid(format!("bad image id {image_id}")))?;
        let snapshots = self.store.image_snapshots(&digest)?;
        Ok(berth_image::store::overlay_lowers(
            snapshots.into_iter().rev().map(|s| s.path),
        ))
    }

    /// The image's config (its `config` object).
    pub fn image_config(&self, image_id: &str) -> Result<ImageConfig, EngineError> {
        let d = image_id
            .parse()
            .map_err(|_| EngineError::Invalid(format!("bad image id {image_id}")))?;
        ImageConfig::parse(&self.store.read_blob(&d, CONFIG_LIMIT)?)
    }

    /// `berth create`: records a container of `image` (a reference or id),
    /// with its directory; nothing runs yet.
    pub fn create(
        &mut self,
        image: &str,
        name: Option<&str>,
        config: ContainerConfig,
    ) -> Result<Record, EngineError> {
        let img = match self.store.resolve(image) {
            Ok(i) => i,
            Err(berth_image::store::StoreError::NoSuchImage(_)) => {
                return Err(EngineError::NoSuchImage(
                    berth_image::reference::Reference::parse(image)
                        .map(|r| r.familiar())
                        .unwrap_or_else(|_| image.to_string()),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(n) = name {
            if !crate::names::valid(n) {
                return Err(EngineError::Invalid(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
        }
        // Checked now so that a bad flag fails `create`, not a later start.
        crate::spec::check(&config)?;
        let id = crate::new_id();
        let name = match name {
            Some(n) => n.to_string(),
            None => crate::names::random(|c| self.db.get(c).ok().flatten().is_some()),
        };
        let image_cfg = self.image_config(&img.id.to_string())?;
        let mut config = config;
        let image_volumes: Vec<String> = image_cfg
            .volumes
            .as_ref()
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default();
        let (volume_mounts, new_volumes) = crate::volumes::resolve(
            &self.volumes(),
            &mut config.volumes,
            &mut config.mounts,
            &image_volumes,
        )?;
        config.volume_mounts = volume_mounts;
        let args = crate::config::process_args(&config, &image_cfg);
        config.path = args.first().cloned().unwrap_or_default();
        config.args = args.iter().skip(1).cloned().collect();
        let rec = Record {
            id: id.clone(),
            name,
            image_id: img.id.to_string(),
            image: image.to_string(),
            created: crate::clock::now(),
            config,
            state: State::Created,
            pid: 0,
            monitor_pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: String::new(),
            finished_at: String::new(),
            restart_count: 0,
            health: String::new(),
            monitor_start: 0,
            stop_requested: false,
            oom_killed: false,
        };
        if let Err(e) = self.db.insert(&rec) {
            let _ = self.volumes().remove_anonymous(&rec.config.volume_mounts);
            for v in &new_volumes {
                let _ = self.volumes().remove(v, true);
            }
            return Err(e);
        }
        let layout = self.layout(&id);
        let made = std::fs::create_dir_all(&layout.dir)
            .map_err(|e| EngineError::io(format!("create {}", layout.dir.display()), e))
            .and_then(|()| {
                self.store
                    .add_lease(&format!("container:{id}"), &img.id)
                    .map_err(Into::into)
            });
        if let Err(e) = made {
            let _ = self.db.delete(&id);
            let _ = std::fs::remove_dir_all(&layout.dir);
            for v in &new_volumes {
                let _ = self.volumes().remove(v, true);
            }
            return Err(e);
        }
        self.container_event(&rec, "create", &[]);
        Ok(rec)
    }

    /// A container by id, name or unique id prefix, with its state made
    /// true (see `reconcile`).
    pub fn get(&mut self, key: &str) -> Result<Record, EngineError> {
        let rec = self
            .db
            .get(key)?
            .ok_or_else(|| EngineError::NoSuchContainer(key.to_string()))?;
        self.reconcile(rec)
    }

    /// Every container, newest first, states made true.
    pub fn list(&mut self) -> Result<Vec<Record>, EngineError> {
        let recs = self.db.list()?;
        let mut out = Vec::with_capacity(recs.len());
        for r in recs {
            match self.reconcile(r) {
                Ok(r) => out.push(r),
                // A `--rm` container whose monitor died: removed now.
                Err(EngineError::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A running container whose monitor is gone (killed with SIGKILL, or
    /// the machine's process table lost it) cannot have its exit recorded:
    /// its process is killed, its rootfs unmounted and its runtime state
    /// removed, and it is marked exited, with 137 if berth killed it here
    /// and 255 if its real exit code was lost.
    pub fn reconcile(&mut self, rec: Record) -> Result<Record, EngineError> {
        self.thaw_orphaned_freeze(&rec);
        if !matches!(
            rec.state,
            State::Running | State::Paused | State::Restarting
        ) || crate::watch::alive(rec.monitor_pid, rec.monitor_start)
        {
            return Ok(rec);
        }
        // This record may be older than the monitor's last word: it may
        // have recorded the exit, or removed the container (`--rm`), just
        // before it ended. Only a record still running under the dead
        // monitor is taken over, by one caller only.
        // The claim names this process as the container's monitor while
        // it works, so that every other caller sees a live monitor and
        // leaves the record alone (and, should this process die midway,
        // the next one takes over from it).
        let me = std::process::id() as i32;
        let me_start = berth_runtime::state::proc_stat(me).map_or(0, |(_, t)| t);
        if !self.db.claim_orphan(
            &rec.id,
            (rec.monitor_pid, rec.monitor_start),
            (me, me_start),
        )? {
            return match self.db.get(&rec.id)? {
                Some(now) => Ok(now),
                None => Err(EngineError::NoSuchContainer(rec.name.clone())),
            };
        }
        let id = rec.id.clone();
        let taken = self.take_over(rec);
        if taken.is_err() {
            // Let the next caller try again.
            let _ = self.db.claim_orphan(&id, (me, me_start), (0, 0));
        }
        taken
    }

    /// What `reconcile` does once it holds a container whose monitor died.
    fn take_over(&mut self, mut rec: Record) -> Result<Record, EngineError> {
        let rt = self.paths.runtime();
        let was_alive = matches!(
            self.runtime.status(&rt, &rec.id),
            Some(
                berth_runtime::state::Status::Running
                    | berth_runtime::state::Status::Paused
                    | berth_runtime::state::Status::Created
            )
        );
        let _ = self.runtime.delete(&rt, &rec.id, true);
        let _ = crate::rootfs::unmount(&self.layout(&rec.id));
        rec.state = State::Exited;
        rec.pid = 0;
        rec.monitor_pid = 0;
        rec.finished_at = crate::clock::now();
        if was_alive {
            rec.exit_code = 137;
            rec.error = "the container's monitor process died; berth killed the container".into();
        } else {
            rec.exit_code = 255;
            rec.error = "the container's monitor process died; its exit code was lost".into();
        }
        // The monitor that would have said so is gone.
        let die = [("exitCode", rec.exit_code.to_string())];
        if rec.config.auto_remove {
            // `--rm` (its foreground `berth run` was killed, say): removed,
            // as docker does, with its code kept for whoever waits.
            let exit = self.exit_file(&rec.id);
            if let Some(d) = exit.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            let _ = std::fs::write(&exit, rec.exit_code.to_string());
            self.container_event(&rec, "die", &die);
            self.purge(&rec.id)?;
            self.volumes().remove_anonymous(&rec.config.volume_mounts)?;
            return Err(EngineError::NoSuchContainer(rec.name.clone()));
        }
        self.db.update(&rec)?;
        self.container_event(&rec, "die", &die);
        Ok(rec)
    }

    fn freeze_mark(&self, id: &str) -> std::path::PathBuf {
        self.paths.runroot.join("freezes").join(id)
    }

    /// Records that this process is about to freeze container `id` (for
    /// commit's pause), until the returned mark is dropped.
    pub(crate) fn mark_freeze(&self, id: &str) -> Result<FreezeMark, EngineError> {
        let path = self.freeze_mark(id);
        let me = std::process::id() as i32;
        let start = berth_runtime::state::proc_stat(me)
            .map(|(_, t)| t)
            .unwrap_or(0);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().expect("has a parent"))?;
            let tmp = path.with_extension(format!("tmp-{me}"));
            std::fs::write(&tmp, format!("{me} {start}"))?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| EngineError::io(format!("write {}", path.display()), e))?;
        Ok(FreezeMark { path })
    }

    /// A freeze whose maker is gone (a `commit` killed while the container
    /// was frozen) is undone: otherwise the container stays frozen for
    /// good while its record says running, and exec, kill and stop hang
    /// or do nothing.
    fn thaw_orphaned_freeze(&self, rec: &Record) {
        let path = self.freeze_mark(&rec.id);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        let mut it = text
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        let (pid, start) = (it.next().unwrap_or(0) as i32, it.next().unwrap_or(0));
        if crate::watch::alive(pid, start) {
            return;
        }
        if rec.state != State::Paused {
            let _ = self.runtime.force_thaw(&self.paths.runtime(), &rec.id);
        }
        let _ = std::fs::remove_file(&path);
    }

    /// The signal `stop` sends: `--stop-signal`, else the image's
    /// STOPSIGNAL, else SIGTERM.
    pub fn stop_signal(&self, rec: &Record) -> Result<i32, EngineError> {
        let name = match &rec.config.stop_signal {
            Some(s) => s.clone(),
            None => self
                .image_config(&rec.image_id)
                .map(|c| c.stop_signal)
                .unwrap_or_default(),
        };
        if name.is_empty() {
            return Ok(libc::SIGTERM);
        }
        parse_signal(&name)
    }

    /// Records a container event with Docker's attributes: the labels,
    /// `image`, `name`, and `extra`.
    pub fn container_event(&self, rec: &Record, action: &str, extra: &[(&str, String)]) {
        let mut attrs = rec.config.labels.clone();
        attrs.insert("image".into(), rec.image.clone());
        attrs.insert("name".into(), rec.name.clone());
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.clone());
        }
        crate::events::emit(
            &self.paths.runroot,
            &crate::events::Event::new("container", action, &rec.id, attrs),
        );
    }

    /// Records an event about something other than a container.
    pub fn event(&self, typ: &str, action: &str, id: &str, attrs: &[(&str, String)]) {
        let attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        crate::events::emit(
            &self.paths.runroot,
            &crate::events::Event::new(typ, action, id, attrs),
        );
    }

    /// Sends `signal` to the container's init.
    pub fn kill(&mut self, key: &str, signal: i32) -> Result<Record, EngineError> {
        let rec = self.get(key)?;
        if !matches!(rec.state, State::Running | State::Paused) {
            return Err(EngineError::Conflict(format!(
                "Cannot kill container: {}: Container {} is not running",
                key, rec.id
            )));
        }
        let rt = self.paths.runtime();
        self.runtime.kill(&rt, &rec.id, signal)?;
        if rec.state == State::Paused && signal == libc::SIGKILL {
            // A frozen process dies only once thawed.
            let _ = self.runtime.set_paused(&rt, &rec.id, false);
        }
        self.container_event(&rec, "kill", &[("signal", signal.to_string())]);
        Ok(rec)
    }

    /// `berth pause`/`unpause`: freezes or thaws every process of the
    /// container (the cgroup freezer).
    pub fn set_paused(&mut self, key: &str, paused: bool) -> Result<Record, EngineError> {
        let mut rec = self.get(key)?;
        match (rec.state, paused) {
            (State::Running, true) | (State::Paused, false) => {}
            (State::Paused, true) => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is already paused",
                    rec.id
                )))
            }
            (State::Running, false) => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is not paused",
                    rec.id
                )))
            }
            _ => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is not running",
                    rec.id
                )))
            }
        }
        self.runtime
            .set_paused(&self.paths.runtime(), &rec.id, paused)?;
        let (from, to) = if paused {
            (State::Running, State::Paused)
        } else {
            (State::Paused, State::Running)
        };
        // Only the state, and only if the monitor has not recorded an exit
        // meanwhile.
        if !self.db.set_state_if(&rec.id, from, to)? {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        rec.state = to;
        self.container_event(&rec, if paused { "pause" } else { "unpause" }, &[]);
        Ok(rec)
    }

    /// `berth rename`.
    pub fn rename(&mut self, key: &str, name: &str) -> Result<Record, EngineError> {
        let name = name.strip_prefix('/').unwrap_or(name);
        let mut rec = self.get(key)?;
        if !crate::names::valid(name) {
            return Err(EngineError::Invalid(format!(
                "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if rec.name == name {
            return Err(EngineError::Invalid(format!(
                "Renaming a container with the same name as its current name: {name}"
            )));
        }
        self.db.rename(&rec.id, name)?;
        let old = std::mem::replace(&mut rec.name, name.to_string());
        self.container_event(&rec, "rename", &[("oldName", format!("/{old}"))]);
        Ok(rec)
    }

    /// `berth top`: `ps` (with `ps_args`, default `-ef`) on the host,
    /// limited to the container's processes, as Docker does. Returns the
    /// header and the rows.
    pub fn top(
        &mut self,
        key: &str,
        ps_args: &[String],
    ) -> Result<(String, Vec<String>), EngineError> {
        let rec = self.get(key)?;
        if !matches!(rec.state, State::Running | State::Paused) {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        let pids = berth_runtime::container::pids(&self.paths.runtime(), &rec.id)?;
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.to_vec()
        };
        let out = std::process::Command::new("ps")
            .args(&args)
            .output()
            .map_err(|e| EngineError::io("run ps (procps) on the host", e))?;
        if !out.status.success() {
            return Err(EngineError::Invalid(format!(
                "ps {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default().to_string();
        let col = header
            .split_whitespace()
            .position(|h| h == "PID")
            .ok_or_else(|| {
                EngineError::Invalid(format!(
                    "Couldn't find PID field in ps output for the options {:?}",
                    args.join(" ")
                ))
            })?;
        let rows = lines
            .filter(|l| {
                l.split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|p| pids.contains(&p))
            })
            .map(str::to_string)
            .collect();
        Ok((header, rows))
    }

    /// Where the exit code of a `--rm` container is kept after it is gone
    /// (for `wait` and `attach`, as the daemon keeps it for docker's).
    pub(crate) fn exit_file(&self, id: &str) -> std::path::PathBuf {
        self.paths.runroot.join("exits").join(id)
    }

    /// Removes every trace of a stopped container.
    pub(crate) fn purge(&mut self, id: &str) -> Result<(), EngineError> {
        let rec = self.db.get(id)?;
        let _ = self.runtime.delete(&self.paths.runtime(), id, true);
        crate::rootfs::remove(&self.layout(id))?;
        self.store.remove_lease(&format!("container:{id}"))?;
        self.db.delete(id)?;
        if let Some(rec) = rec {
            self.container_event(&rec, "destroy", &[]);
        }
        Ok(())
    }
}

/// `SIGTERM`, `TERM`, `15`.
pub fn parse_signal(s: &str) -> Result<i32, EngineError> {
    berth_runtime::signal::parse(s).ok_or_else(|| {
        EngineError::Invalid(format!(
            "invalid signal: {s}: use a name (SIGTERM, KILL) or a number"
        ))
    })
}
