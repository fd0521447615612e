//! RUN: the step's container (its mounts, secrets, caches, here-documents
//! and environment) through the engine's step runner, and its layer.

use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_dockerfile::instructions::{self, CommandLine, Instruction};
use berth_engine::options::Mount;

use super::dirs::{mount_path, mount_ro, set_mode};
use super::{sha, Builder, PROXY_ARGS};
use crate::progress::Event;
use crate::sources::{self, Meta, SourceRoot};
use crate::state::{Layer, State};
use crate::{fsutil, BuildError};

/// What RUN's mounts hold while the step runs; undone when dropped.
#[derive(Default)]
pub(super) struct Prepared {
    mounts: Vec<Mount>,
    env: Vec<String>,
    locks: Vec<std::fs::File>,
    unmount: Vec<PathBuf>,
    remove: Vec<PathBuf>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for m in self.unmount.iter().rev() {
            let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
        }
        for d in &self.remove {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The process a RUN runs: exec form as is; shell form through the
/// stage's SHELL; here-documents appended for the shell to read.
pub(super) fn run_args(
    state: &State,
    cmd: &CommandLine,
    heredocs: &[berth_dockerfile::parse::Heredoc],
) -> Vec<String> {
    if !cmd.shell_form {
        return cmd.args.clone();
    }
    let mut script = cmd.args.first().cloned().unwrap_or_default();
    let bare = heredocs.len() == 1 && {
        let t = script.trim();
        t.starts_with("<<") && t.split_whitespace().count() == 1
    };
    if bare {
        let h = &heredocs[0];
        if h.content.starts_with("#!") {
            // A script with its own interpreter: the step mounts it at
            // /dev/pipes/NAME (outside the layer) and runs it, as BuildKit.
            return vec![heredoc_script_path(&h.name)];
        } else {
            script = h.content.clone();
        }
    } else {
        for h in heredocs {
            script.push('\n');
            script.push_str(&h.content);
            script.push_str(&h.name);
        }
    }
    let mut v = state.shell();
    v.push(script);
    v
}

/// Where a RUN's `#!` here-document is mounted to be run.
pub(super) fn heredoc_script_path(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("/dev/pipes/{safe}")
}

impl<'a, 'o> Builder<'a, 'o> {
    pub(super) fn lowers(&self, state: &State) -> Result<Vec<PathBuf>, BuildError> {
        let mut out = Vec::new();
        for l in state.layers.iter().rev() {
            let snap = self.store.snapshot(&l.chain_id()?)?.ok_or_else(|| {
                BuildError::Invalid(format!(
                    "layer {} is missing from the store: reload the base image",
                    l.diff_id
                ))
            })?;
            out.push(snap.path);
        }
        Ok(berth_image::store::overlay_lowers(out))
    }

    pub(super) fn step_dir(&self) -> Result<PathBuf, BuildError> {
        let builds = crate::private_dir(&self.paths.root.join("builds"))?;
        let dir = builds.join(format!(
            "{}-{}",
            std::process::id(),
            &berth_engine::new_id()[..16]
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| BuildError::io(format!("create {}", dir.display()), e))?;
        Ok(dir)
    }

    /// Keeps a new layer (the step's upper dir) and records the state.
    pub(super) fn commit_layer(
        &mut self,
        dir: &Path,
        state: &mut State,
        key: &str,
        created_by: String,
    ) -> Result<(), BuildError> {
        let parent = match state.layers.last() {
            Some(l) => Some(l.chain_id()?),
            None => None,
        };
        let committing = Instant::now();
        let record = berth_image::built::layer_from_dir(
            &mut self.store,
            &dir.join("upper"),
            parent.as_ref(),
            self.opts.source_date_epoch,
            &format!("{}{key}", crate::cache::HOLDER_PREFIX),
        )?;
        tracing::debug!(ms = committing.elapsed().as_millis() as u64, diff_id = %record.diff_id, "layer committed");
        state.layers.push(Layer::from_record(&record));
        self.history(state, created_by, false);
        self.cache.put(&mut self.store, key, state)?;
        Ok(())
    }

    pub(super) fn run_step(
        &mut self,
        ins: &Instruction,
        r: &instructions::Run,
        state: &mut State,
        key: &mut String,
        args: &[(String, Option<String>)],
    ) -> Result<bool, BuildError> {
        let vars = Self::vars(state, args);
        let mut mounts = Vec::new();
        for m in &r.mounts {
            let expanded = self.expand(m, &vars, ins.line)?;
            mounts.push(crate::mounts::parse(&expanded)?);
        }
        // `berth build --network none` is a ceiling a Dockerfile cannot lift.
        let network = match (r.network.as_deref(), self.opts.network.as_str()) {
            (_, "none") | (Some("none"), _) => "none".to_string(),
            (None | Some("default"), n) => n.to_string(),
            (Some("host"), _) => "host".to_string(),
            (Some(other), _) => {
                return Err(BuildError::Invalid(format!(
                    "RUN --network={other}: use none, host or default"
                )))
            }
        };
        let insecure = match r.security.as_deref() {
            None | Some("sandbox") => false,
            Some("insecure") if self.opts.allow_insecure => true,
            Some("insecure") => {
                return Err(BuildError::Invalid(
                    "RUN --security=insecure runs the step privileged: allow it with berth build --allow security.insecure".into(),
                ))
            }
            Some(other) => {
                return Err(BuildError::Invalid(format!(
                    "RUN --security={other}: use sandbox or insecure"
                )))
            }
        };
        let argv = run_args(state, &r.cmd, &r.heredocs);
        // The environment: ENV, then the build args in scope that ENV
        // does not set, then proxy args.
        let env_pairs = state.env();
        let mut env: Vec<String> = env_pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut arg_desc = Vec::new();
        for (k, v) in args {
            if let Some(v) = v {
                arg_desc.push(format!("{k}={v}"));
                if !env_pairs.iter().any(|(ek, _)| ek == k) {
                    env.push(format!("{k}={v}"));
                }
            }
        }
        for p in PROXY_ARGS {
            if let Some(v) = self.build_arg(p) {
                env.push(format!("{p}={v}"));
            }
        }
        let user = state.str_field("User");
        let workdir = state.str_field("WorkingDir");
        let mut mount_desc = Vec::new();
        for m in &mounts {
            mount_desc.push(self.mount_key(m, ins.line)?);
        }
        let step_key = sha(&[
            key,
            "RUN",
            &serde_json::to_string(&argv).expect("serializes"),
            &arg_desc.join("\n"),
            &network,
            &format!("insecure={insecure}"),
            &serde_json::to_string(&state.config).expect("serializes"),
            &mount_desc.join("\n"),
            &r.heredocs
                .iter()
                .map(|h| format!("{}\0{}", h.name, h.content))
                .collect::<Vec<_>>()
                .join("\0"),
        ]);
        *key = step_key.clone();
        if !self.opts.no_cache {
            if let Some(s) = self.cache.get(&self.store, &step_key)? {
                *state = s;
                return Ok(true);
            }
        }
        let lowers = self.lowers(state)?;
        let dir = self.step_dir()?;
        let prepared = match self.prepare_mounts(&mounts, &dir, ins.line) {
            Ok(p) => p,
            Err(e) => {
                let _ = berth_image::layer::remove_dir_all(&dir);
                return Err(e);
            }
        };
        env.extend(prepared.env.iter().cloned());
        let mut prepared = prepared;
        // A `#!` here-document run as a program of its own.
        if let [h] = r.heredocs.as_slice() {
            if argv.len() == 1 && argv[0] == heredoc_script_path(&h.name) {
                let f = dir.join("heredoc-script");
                std::fs::write(&f, &h.content)
                    .map_err(|e| BuildError::io("write a here-document", e))?;
                set_mode(&f, 0o755)?;
                prepared
                    .mounts
                    .push(Mount::bind(mount_path(&f)?, argv[0].clone(), true));
            }
        }
        let mut tail: Vec<u8> = Vec::new();
        let progress = self.progress;
        let code = {
            let mut sink = |b: &[u8]| {
                progress.event(&Event::Output(b));
                tail.extend_from_slice(b);
                if tail.len() > 64 << 10 {
                    tail.drain(..tail.len() - (32 << 10));
                }
            };
            berth_engine::step::run(
                &self.paths,
                &berth_engine::step::Step {
                    dir: &dir,
                    lowers: &lowers,
                    args: &argv,
                    env: &env,
                    user: &user,
                    workdir: &workdir,
                    network: &network,
                    mounts: prepared.mounts.clone(),
                    tmpfs: Vec::new(),
                    privileged: insecure,
                },
                &mut sink,
            )
        };
        drop(prepared);
        let code = match code {
            Ok(c) => c,
            Err(e) => {
                let _ = berth_image::layer::remove_dir_all(&dir);
                return Err(e.into());
            }
        };
        if code != 0 {
            let _ = berth_image::layer::remove_dir_all(&dir);
            let text = String::from_utf8_lossy(&tail);
            let last: Vec<&str> = text.lines().rev().take(10).collect();
            let tail = if last.is_empty() {
                String::new()
            } else {
                format!(
                    "; its last output:\n{}",
                    last.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            };
            return Err(BuildError::RunFailed {
                line: ins.line,
                instruction: ins.original.clone(),
                code,
                tail,
            });
        }
        let mut shown = String::new();
        if !arg_desc.is_empty() {
            shown = format!("|{} {} ", arg_desc.len(), arg_desc.join(" "));
        }
        let created_by = format!("RUN {shown}{} # berth", argv.join(" "));
        let res = self.commit_layer(&dir, state, &step_key, created_by);
        let _ = berth_image::layer::remove_dir_all(&dir);
        res.map(|()| false)
    }

    /// What a RUN mount adds to the step's cache key: a bind's content
    /// (the context files it shows, or its stage's key); cache, tmpfs and
    /// secret mounts only by their settings, never their contents.
    pub(super) fn mount_key(
        &mut self,
        m: &crate::mounts::RunMount,
        line: usize,
    ) -> Result<String, BuildError> {
        use crate::mounts::MountKind;
        let base = format!("{:?}|{}|{}|{:?}", m.kind, m.target, m.source, m.from);
        let MountKind::Bind { .. } = m.kind else {
            return Ok(base);
        };
        let content = match &m.from {
            Some(f) => self.source_state(f, line)?.1,
            None => {
                let root = self.context_root()?;
                let root = SourceRoot::new(&root.dir.clone(), root.ignore.clone(), false)?;
                let src = if m.source.is_empty() {
                    ".".to_string()
                } else {
                    m.source.clone()
                };
                let sel = sources::select(&root, &[src], &[], false)?;
                sources::content_hash(&root, &sel, &Meta::default(), &mut self.hashes)?
            }
        };
        Ok(format!("{base}|{content}"))
    }

    /// A stage (before the current one) or an image, by a `--from` name.
    pub(super) fn source_state(
        &mut self,
        name: &str,
        line: usize,
    ) -> Result<(State, String), BuildError> {
        let f = self.expand(name, &self.global_args.clone(), line)?;
        match self.df.stage_by_name(&f) {
            Some(j) => self.results.get(&j).cloned().ok_or_else(|| BuildError::Dockerfile {
                line,
                message: format!("stage {f:?} is not built before this step: a step can only use stages before its own"),
            }),
            None => self.image_state(&f, line),
        }
    }

    /// Makes RUN's mounts ready on the host: docker run `--mount` values for
    /// the step, environment variables for `env=` secrets, and what must
    /// outlive the step (locks, mounts, secret files).
    pub(super) fn prepare_mounts(
        &mut self,
        mounts: &[crate::mounts::RunMount],
        dir: &Path,
        line: usize,
    ) -> Result<Prepared, BuildError> {
        use crate::mounts::{MountKind, Sharing};
        let mut p = Prepared::default();
        for (n, m) in mounts.iter().enumerate() {
            let ro = m.readonly;
            match &m.kind {
                MountKind::Cache {
                    id,
                    sharing,
                    mode,
                    uid,
                    gid,
                } => {
                    if m.from.is_some() {
                        return Err(BuildError::Invalid(
                            "--mount=type=cache,from=... is not supported by berth yet".into(),
                        ));
                    }
                    let cdir = crate::mounts::cache_dir(&self.paths.root, id);
                    crate::mounts::ensure_cache_dir(&cdir, *mode, *uid, *gid)?;
                    if *sharing == Sharing::Locked {
                        let lock = std::fs::OpenOptions::new()
                            .create(true)
                            .truncate(false)
                            .write(true)
                            .open(cdir.with_extension("lock"))
                            .map_err(|e| BuildError::io("open a cache mount's lock", e))?;
                        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
                            .map_err(|e| BuildError::io("lock a cache mount", e.into()))?;
                        p.locks.push(lock);
                    }
                    p.mounts.push(Mount::bind(
                        mount_path(&cdir)?,
                        mount_path(Path::new(&m.target))?,
                        ro,
                    ));
                }
                MountKind::Tmpfs { size } => {
                    let size_bytes =
                        match size.as_deref() {
                            Some(s) => Some(berth_engine::options::parse_size(s).map_err(|e| {
                                BuildError::Invalid(format!("--mount=type=tmpfs: {e}"))
                            })? as u64),
                            None => None,
                        };
                    p.mounts.push(Mount {
                        typ: berth_engine::options::MountType::Tmpfs,
                        target: mount_path(Path::new(&m.target))?,
                        tmpfs_options: Some(berth_engine::options::TmpfsOptions {
                            size_bytes,
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                }
                MountKind::Secret {
                    id,
                    required,
                    mode,
                    uid,
                    gid,
                    env,
                } => {
                    let Some((_, data)) = self.opts.secrets.iter().rev().find(|(k, _)| k == id)
                    else {
                        if *required {
                            return Err(BuildError::Invalid(format!(
                                "secret {id} is required but was not given: pass --secret id={id},src=FILE"
                            )));
                        }
                        continue;
                    };
                    if let Some(name) = env {
                        p.env
                            .push(format!("{name}={}", String::from_utf8_lossy(data)));
                    }
                    if !m.target.is_empty() {
                        use std::os::unix::fs::PermissionsExt;
                        let sdir = self.paths.runroot.join("build-secrets").join(
                            dir.file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                        );
                        std::fs::create_dir_all(&sdir)
                            .map_err(|e| BuildError::io("create the secrets directory", e))?;
                        let _ =
                            std::fs::set_permissions(&sdir, std::fs::Permissions::from_mode(0o700));
                        let f = sdir.join(n.to_string());
                        std::fs::write(&f, data)
                            .map_err(|e| BuildError::io("write a secret", e))?;
                        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode))
                            .map_err(|e| BuildError::io("chmod a secret", e))?;
                        std::os::unix::fs::chown(&f, Some(*uid), Some(*gid))
                            .map_err(|e| BuildError::io("chown a secret", e))?;
                        p.mounts.push(Mount::bind(
                            mount_path(&f)?,
                            mount_path(Path::new(&m.target))?,
                            true,
                        ));
                        p.remove.push(sdir);
                    }
                }
                MountKind::Bind { rw } => {
                    let src_root = match &m.from {
                        Some(f) => {
                            let (s, _) = self.source_state(f, line)?;
                            let mp = dir.join(format!("from-{n}"));
                            std::fs::create_dir_all(&mp)
                                .map_err(|e| BuildError::io("create a mount point", e))?;
                            let lowers = self.lowers(&s)?;
                            if !lowers.is_empty() {
                                mount_ro(&mp, &lowers)?;
                                p.unmount.push(mp.clone());
                            }
                            mp
                        }
                        None => self.opts.context.clone(),
                    };
                    let b = dir.join(format!("bind-{n}"));
                    std::fs::create_dir_all(&b)
                        .map_err(|e| BuildError::io("create a mount point", e))?;
                    // A context with a .dockerignore shows only what it
                    // sends: a filtered copy when anything below is ignored.
                    let filtered = match (&m.from, self.context_root()?.ignore.clone()) {
                        (None, Some(ig)) => {
                            let root = SourceRoot::new(&src_root, Some(ig), false)?;
                            let src = if m.source.is_empty() {
                                ".".to_string()
                            } else {
                                m.source.clone()
                            };
                            let all = sources::select(
                                &SourceRoot::new(&src_root, None, false)?,
                                std::slice::from_ref(&src),
                                &[],
                                false,
                            )?;
                            let sel = sources::select(&root, &[src], &[], false)?;
                            if sel.entries.len() != all.entries.len() && sel.single_file.is_none() {
                                let f = b.join("filtered");
                                std::fs::create_dir_all(&f)
                                    .map_err(|e| BuildError::io("create a filtered copy", e))?;
                                let meta = Meta {
                                    keep_owners: true,
                                    ..Meta::default()
                                };
                                let mut tar = Vec::new();
                                sources::write_tar(&sel, &meta, None, &mut tar).map_err(|e| {
                                    BuildError::io("copy the bind mount's source", e)
                                })?;
                                berth_image::layer::apply_with(
                                    &tar[..],
                                    &f,
                                    None,
                                    berth_image::layer::ApplyOptions::ARCHIVE,
                                )
                                .map_err(|e| {
                                    BuildError::Invalid(format!(
                                        "copy the bind mount's source: {e}"
                                    ))
                                })?;
                                Some(f)
                            } else {
                                None
                            }
                        }
                        _ => None,
                    };
                    let (root, source) = match &filtered {
                        Some(f) => (fsutil::open_root(f)?, ".".to_string()),
                        None => (fsutil::open_root(&src_root)?, m.source.clone()),
                    };
                    let fd = fsutil::open_in_root(&root, &source).map_err(|e| {
                        BuildError::Invalid(format!(
                            "--mount source {:?}: {}",
                            m.source,
                            std::io::Error::from(e)
                        ))
                    })?;
                    // The source (resolved inside its root) is bound onto a
                    // path of ours: no host path is ever spelled out to the
                    // runtime, whatever the context's names hold.
                    let is_dir =
                        std::fs::metadata(fsutil::fd_path(&fd)).is_ok_and(|md| md.is_dir());
                    let point = b.join("src");
                    if is_dir {
                        std::fs::create_dir_all(&point)
                    } else {
                        std::fs::write(&point, b"")
                    }
                    .map_err(|e| BuildError::io("create a mount point", e))?;
                    rustix::mount::mount_bind(fsutil::fd_path(&fd), &point)
                        .map_err(|e| BuildError::io("bind the mount's source", e.into()))?;
                    p.unmount.push(point.clone());
                    let src = match (*rw, is_dir) {
                        (false, _) => point,
                        (true, true) => {
                            // Writes land in a scratch upper dir and are dropped.
                            for d in ["u", "w", "m"] {
                                std::fs::create_dir_all(b.join(d))
                                    .map_err(|e| BuildError::io("create a mount point", e))?;
                            }
                            let data = format!(
                                "lowerdir={},upperdir={},workdir={}",
                                berth_engine::rootfs::escape(&point.to_string_lossy()),
                                berth_engine::rootfs::escape(&b.join("u").to_string_lossy()),
                                berth_engine::rootfs::escape(&b.join("w").to_string_lossy())
                            );
                            let data = std::ffi::CString::new(data)
                                .map_err(|_| BuildError::Invalid("a path contains NUL".into()))?;
                            rustix::mount::mount(
                                "overlay",
                                b.join("m"),
                                "overlay",
                                rustix::mount::MountFlags::empty(),
                                Some(data.as_c_str()),
                            )
                            .map_err(|e| BuildError::io("mount a read-write bind", e.into()))?;
                            p.unmount.push(b.join("m"));
                            b.join("m")
                        }
                        (true, false) => {
                            // A file: a scratch copy takes the writes.
                            let c = b.join("copy");
                            std::fs::copy(&point, &c)
                                .map_err(|e| BuildError::io("copy a read-write bind", e))?;
                            c
                        }
                    };
                    p.mounts.push(Mount::bind(
                        mount_path(&src)?,
                        mount_path(Path::new(&m.target))?,
                        ro,
                    ));
                }
            }
        }
        Ok(p)
    }

    /// A here-document's content with variables expanded (quotes and
    /// escapes kept, as BuildKit does for heredoc files).
    pub(super) fn expand_heredoc(
        &self,
        text: &str,
        vars: &[(String, Option<String>)],
        line: usize,
    ) -> Result<String, BuildError> {
        let mut lex = self.lexer.clone();
        lex.raw_quotes = true;
        lex.raw_escapes = true;
        let lookup = |k: &str| {
            vars.iter()
                .rev()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.clone())
        };
        lex.process_word(text, &lookup)
            .map_err(|e| BuildError::Dockerfile {
                line,
                message: format!("{e} (in a here-document)"),
            })
    }
}
