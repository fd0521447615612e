//! COPY and ADD: sources from the context, a stage, an image or a URL,
//! copied through the safe extractor into the step's layer.

use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_dockerfile::instructions::{Copy, Instruction};

use super::dirs::{mount_ro, set_mode, Cleanup};
use super::fetch::{fetch, url_file_name};
use super::{sha, Builder};
use crate::sources::{self, Meta, SourceRoot};
use crate::state::State;
use crate::{fsutil, BuildError};

impl<'a, 'o> Builder<'a, 'o> {
    pub(super) fn context_root(&mut self) -> Result<&SourceRoot, BuildError> {
        if self.context.is_none() {
            let ignore = match crate::context::read_in_context(&self.opts.context, ".dockerignore")
            {
                Ok(Some(text)) => {
                    let patterns = berth_dockerfile::ignore::read_dockerignore(&text);
                    Some(
                        berth_dockerfile::ignore::Matcher::new(&patterns)
                            .map_err(|e| BuildError::Invalid(format!(".dockerignore: {e}")))?,
                    )
                }
                Ok(None) => None,
                Err(e) => return Err(e),
            };
            self.context = Some(SourceRoot::new(&self.opts.context, ignore, false)?);
        }
        Ok(self.context.as_ref().expect("set"))
    }

    pub(super) fn copy_step(
        &mut self,
        stage: usize,
        ins: &Instruction,
        c: &Copy,
        state: &mut State,
        key: &mut String,
        vars: &[(String, Option<String>)],
    ) -> Result<bool, BuildError> {
        let what = if c.add { "ADD" } else { "COPY" };
        if c.from.is_some() && c.sources.iter().any(|s| s.contains("://")) {
            return Err(BuildError::Invalid(format!(
                "{what} --from cannot fetch URLs"
            )));
        }
        let line = ins.line;
        // Sources: paths (context or --from), here-documents, and (ADD) URLs.
        let mut srcs = Vec::new();
        let mut heredocs = c.heredocs.iter();
        let mut extras: Vec<(String, Vec<u8>)> = Vec::new();
        let mut urls = Vec::new();
        for s in &c.sources {
            if s.starts_with("<<") {
                if let Some(h) = heredocs.next() {
                    let content = if h.expand {
                        self.expand_heredoc(&h.content, vars, line)?
                    } else {
                        h.content.clone()
                    };
                    extras.push((h.name.clone(), content.into_bytes()));
                    continue;
                }
            }
            let e = self.expand(s, vars, line)?;
            if c.add && (e.starts_with("http://") || e.starts_with("https://")) {
                urls.push(e);
            } else if e.contains("://") || e.starts_with("git@") {
                return Err(BuildError::Invalid(format!(
                    "{what} {e}: only http(s) URLs can be fetched{}",
                    if c.add { "" } else { " (and only by ADD)" }
                )));
            } else {
                srcs.push(e);
            }
        }
        if c.checksum.is_some() && (urls.len() != 1 || !srcs.is_empty() || !extras.is_empty()) {
            return Err(BuildError::Invalid(
                "ADD --checksum needs exactly one URL source".into(),
            ));
        }
        let n_sources = srcs.len() + extras.len() + urls.len();
        let dest_raw = self.expand(&c.dest, vars, line)?;
        let chown = match &c.chown {
            Some(s) => Some(self.expand(s, vars, line)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|v| *v <= 0o7777)
                    .ok_or_else(|| {
                        BuildError::Invalid(format!("--chmod={m}: use an octal mode such as 0755"))
                    })?,
            ),
            None => None,
        };
        let workdir = state.str_field("WorkingDir");
        let dest_dir_form = dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".";
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{}", workdir.trim_end_matches('/'), dest_raw)
        };
        let dest = fsutil::clean(&dest);
        if n_sources > 1 && !dest_dir_form {
            return Err(BuildError::Invalid(format!(
                "When using {what} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        // The source root: the context, or a stage's or image's files
        // (mounted read-only for the copy).
        let mut mounted: Option<PathBuf> = None;
        let mut source_key = String::new();
        let from_state = match &c.from {
            Some(f) => {
                let f = self.expand(f, &self.global_args.clone(), line)?;
                match self.stage_ref(&f, stage, line)? {
                    Some(j) => Some(self.results.get(&j).cloned().ok_or_else(|| {
                        BuildError::Invalid(format!(
                            "--from={f}: that stage is not built before this step"
                        ))
                    })?),
                    None => Some(self.image_state(&f, line)?),
                }
            }
            None => None,
        };
        let root_dir = match &from_state {
            Some((s, k)) => {
                source_key = k.clone();
                let dir = self.step_dir()?;
                let src = dir.join("src");
                std::fs::create_dir_all(&src)
                    .map_err(|e| BuildError::io("create a mount point", e))?;
                let lowers = self.lowers(s)?;
                if !lowers.is_empty() {
                    mount_ro(&src, &lowers)?;
                }
                mounted = Some(dir);
                src
            }
            None => self.opts.context.clone(),
        };
        let result = (|| -> Result<bool, BuildError> {
            let root = match &from_state {
                Some(_) => SourceRoot::new(&root_dir, None, true)?,
                None => {
                    self.context_root()?;
                    SourceRoot::new(
                        &root_dir,
                        self.context.as_ref().and_then(|c| c.ignore.clone()),
                        false,
                    )?
                }
            };
            let mut sel = sources::select(&root, &srcs, &c.excludes, c.parents)?;
            // Here-documents and fetched URLs, as files in the step's
            // staging directory.
            let staging = self.step_dir()?;
            let _staging = Cleanup(staging.clone());
            let mut extra_hash = Vec::new();
            for (name, data) in &extras {
                let f = staging.join(format!("heredoc-{}", extra_hash.len()));
                std::fs::write(&f, data).map_err(|e| BuildError::io("write a here-document", e))?;
                set_mode(&f, 0o644)?;
                extra_hash.push(format!(
                    "heredoc:{name}:{}",
                    sha(&[&String::from_utf8_lossy(data)])
                ));
                sel.add_file(f, name.clone(), false)?;
            }
            for u in &urls {
                // Named after the URL: a destination that is not an
                // existing directory renames it (the single-file rule).
                let name = url_file_name(u);
                let f = staging.join(format!("url-{}", extra_hash.len()));
                let digest = fetch(u, &f, c.checksum.as_deref())?;
                extra_hash.push(format!("url:{u}:{digest}"));
                sel.add_file(f, name, false)?;
            }
            if n_sources != 1 {
                sel.single_file = None;
            }
            // ADD unpacks local tar archives into the destination.
            if c.add && c.unpack != Some(false) && from_state.is_none() {
                // Only the sources named themselves, never archives found
                // inside a copied directory.
                for e in sel.entries.iter_mut() {
                    if e.top && e.md.is_file() && sources::is_archive(&e.full) {
                        e.archive = true;
                    }
                }
                if sel.entries.iter().any(|e| e.archive) {
                    sel.single_file = None;
                }
            }
            let meta = Meta {
                owner: None,
                chmod,
                keep_owners: root.keep_owners,
            };
            let hashing = Instant::now();
            let content = if from_state.is_some() {
                sha(&[
                    &source_key,
                    &srcs.join("\n"),
                    &c.parents.to_string(),
                    &extra_hash.join("\n"),
                ])
            } else {
                let h = sources::content_hash(&root, &sel, &meta, &mut self.hashes)?;
                sha(&[&h, &extra_hash.join("\n")])
            };
            let step_key = sha(&[
                key,
                what,
                &content,
                &dest,
                &dest_dir_form.to_string(),
                chown.as_deref().unwrap_or(""),
                &format!("{chmod:?}"),
                &c.excludes.join("\n"),
                &format!(
                    "link={} parents={} unpack={:?}",
                    c.link, c.parents, c.unpack
                ),
            ]);
            *key = step_key.clone();
            tracing::debug!(
                entries = sel.entries.len(),
                ms = hashing.elapsed().as_millis() as u64,
                "COPY sources selected and hashed"
            );
            if !self.opts.no_cache {
                if let Some(s) = self.cache.get(&self.store, &step_key)? {
                    *state = s;
                    return Ok(true);
                }
            }
            let dir = self.step_dir()?;
            let copying = Instant::now();
            let res = self.copy_into(
                &dir,
                state,
                &sel,
                meta,
                chown.as_deref(),
                &dest,
                dest_dir_form,
                c.link,
            );
            tracing::debug!(ms = copying.elapsed().as_millis() as u64, "COPY landed");
            let res = res.and_then(|()| {
                let mut shown: Vec<String> = srcs.clone();
                shown.extend(extras.iter().map(|(n, _)| format!("<<{n}")));
                shown.extend(urls.iter().cloned());
                let link = if c.link { "--link " } else { "" };
                let created_by = format!("{what} {link}{} /{dest} # berth", shown.join(" "));
                self.commit_layer(&dir, state, &step_key, created_by)
            });
            let _ = berth_image::layer::remove_dir_all(&dir);
            res.map(|()| false)
        })();
        if let Some(dir) = mounted {
            let _ = rustix::mount::unmount(dir.join("src"), rustix::mount::UnmountFlags::DETACH);
            let _ = berth_image::layer::remove_dir_all(&dir);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_into(
        &mut self,
        dir: &Path,
        state: &State,
        sel: &sources::Selection,
        mut meta: Meta,
        chown: Option<&str>,
        dest: &str,
        dest_dir_form: bool,
        link: bool,
    ) -> Result<(), BuildError> {
        // --link: a layer of its own, made over nothing.
        let lowers = if link {
            Vec::new()
        } else {
            self.lowers(state)?
        };
        let layout = berth_engine::rootfs::Layout {
            dir: dir.to_path_buf(),
        };
        berth_engine::rootfs::prepare(
            &layout,
            &berth_engine::rootfs::EtcFiles::plain("buildkitsandbox", true),
        )?;
        berth_engine::rootfs::mount(&layout, &lowers, true)?;
        let res = (|| -> Result<(), BuildError> {
            let merged = layout.merged();
            if let Some(spec) = chown {
                let u = berth_engine::users::resolve(&merged, spec)?;
                meta.owner = Some((u.uid, u.gid));
            }
            let root = fsutil::open_root(&merged)?;
            let owner = meta.owner.unwrap_or((0, 0));
            let (landing, single_name) = match &sel.single_file {
                Some(base) if !dest_dir_form && !fsutil::is_dir_in_root(&root, dest) => {
                    let (parent, name) = match dest.rsplit_once('/') {
                        Some((p, n)) => (p.to_string(), n.to_string()),
                        None => (String::new(), dest.to_string()),
                    };
                    let name = if name.is_empty() { base.clone() } else { name };
                    (parent, Some(name))
                }
                _ => (dest.to_string(), None),
            };
            let (fd, made) = fsutil::mkdir_all_in_root(&root, &landing, owner)?;
            // --chmod applies to what this COPY makes, never to an existing
            // directory it lands in.
            if let (Some(m), None, true) = (meta.chmod, &single_name, made) {
                let d = fsutil::reopen_dir(&fd)?;
                let _ = rustix::fs::fchmod(&d, rustix::fs::Mode::from_raw_mode(m));
            }
            let target = fsutil::fd_path(&fd);
            let (reader, writer) = std::io::pipe().map_err(|e| BuildError::io("pipe", e))?;
            let applied = std::thread::scope(|s| {
                let w = s.spawn(move || {
                    let writer = writer;
                    sources::write_tar(
                        sel,
                        &meta,
                        single_name.as_deref(),
                        std::io::BufWriter::new(writer),
                    )
                });
                let applied = berth_image::layer::apply_with(
                    std::io::BufReader::with_capacity(256 << 10, reader),
                    &target,
                    None,
                    berth_image::layer::ApplyOptions::ARCHIVE,
                );
                let written = w.join().expect("the tar writer does not panic");
                (applied, written)
            });
            match applied {
                (Err(e), _) => return Err(BuildError::Invalid(format!("copying to /{dest}: {e}"))),
                (Ok(_), Err(e)) => return Err(BuildError::io("reading the sources", e)),
                (Ok(_), Ok(())) => {}
            }
            for e in sel.entries.iter().filter(|e| e.archive) {
                let f = std::fs::File::open(&e.full)
                    .map_err(|err| BuildError::io(format!("open {}", e.rel), err))?;
                let input = berth_image::layer::decompress(std::io::BufReader::new(f))
                    .map_err(|err| BuildError::io(format!("unpack {}", e.rel), err))?;
                berth_image::layer::apply_with(
                    input,
                    &target,
                    None,
                    berth_image::layer::ApplyOptions::ARCHIVE,
                )
                .map_err(|err| {
                    BuildError::Invalid(format!("unpacking {} into /{dest}: {err}", e.rel))
                })?;
            }
            Ok(())
        })();
        let un = berth_engine::rootfs::unmount(&layout);
        res?;
        un?;
        Ok(())
    }
}
