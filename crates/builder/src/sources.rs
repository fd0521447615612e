//! COPY and ADD sources: patterns resolved in a source root (the build
//! context, or another stage's or image's file system), the entries they
//! select, a content hash of them for the cache key (file digests kept in
//! a stat-indexed table, so an unchanged context is never read again), and
//! the tar stream that lands them in the destination.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_dockerfile::ignore::Matcher;
use sha2::{Digest as _, Sha256};

use crate::fsutil;
use crate::BuildError;

/// Where sources are read from.
pub struct SourceRoot {
    pub dir: PathBuf,
    /// `dir` with its symlinks resolved.
    canon: PathBuf,
    fd: OwnedFd,
    /// `.dockerignore` (context only).
    pub ignore: Option<Matcher>,
    /// Owners of the files are kept (another stage or image) or become
    /// root's (the context), unless --chown says otherwise.
    pub keep_owners: bool,
}

impl SourceRoot {
    pub fn new(
        dir: &Path,
        ignore: Option<Matcher>,
        keep_owners: bool,
    ) -> Result<SourceRoot, BuildError> {
        let fd = fsutil::open_root(dir)?;
        let canon = std::fs::read_link(fsutil::fd_path(&fd)).unwrap_or_else(|_| dir.to_path_buf());
        Ok(SourceRoot {
            dir: dir.to_path_buf(),
            canon,
            fd,
            ignore,
            keep_owners,
        })
    }

    /// Where an opened source really is, relative to the root (symlinks
    /// resolved): what `.dockerignore` is matched against.
    fn resolved_rel(&self, fd: &OwnedFd) -> Option<String> {
        let real = std::fs::read_link(fsutil::fd_path(fd)).ok()?;
        let rel = real.strip_prefix(&self.canon).ok()?;
        Some(rel.to_string_lossy().into_owned())
    }
}

/// One selected file, directory or link.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Where it is read: a path through an fd of the source root.
    pub full: PathBuf,
    /// Its path relative to the source root (for .dockerignore and errors).
    pub rel: String,
    /// Its name under the landing directory.
    pub name: String,
    pub md: fs::Metadata,
    /// ADD: a local archive, unpacked into the destination instead.
    pub archive: bool,
    /// Named by a source pattern itself (not found inside a directory).
    pub top: bool,
}

/// What a set of source patterns selected.
pub struct Selection {
    pub entries: Vec<Entry>,
    /// Fds keeping the opened sources alive (their `/proc/self/fd` paths).
    _fds: Vec<OwnedFd>,
    /// A single file source: it may land as the destination itself.
    pub single_file: Option<String>,
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The matches of `pattern` (cleaned, relative) in the root: every
/// component may be a glob.
fn glob(root: &SourceRoot, pattern: &str) -> Result<Vec<String>, BuildError> {
    let mut found = vec![String::new()];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        let matcher = has_meta(comp).then(|| component_matcher(comp)).flatten();
        for base in &found {
            if !has_meta(comp) {
                next.push(join(base, comp));
                continue;
            }
            let Ok(fd) = fsutil::open_in_root(&root.fd, base) else {
                continue;
            };
            let dir = fsutil::fd_path(&fd);
            let Ok(rd) = fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| matcher.as_ref().is_some_and(|m| m.matches_exact(n)))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| join(base, &n)));
        }
        found = next;
    }
    Ok(found
        .into_iter()
        .filter(|p| fsutil::open_in_root_nofollow(&root.fd, p).is_ok())
        .collect())
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// Go's `filepath.Match` for one path component: the `.dockerignore`
/// matcher, given the component as its only pattern (a leading `!` is
/// escaped, so it stays a character). A malformed pattern matches nothing.
fn component_matcher(pattern: &str) -> Option<Matcher> {
    let p = match pattern.strip_prefix('!') {
        Some(rest) => format!("\\!{rest}"),
        None => pattern.to_string(),
    };
    Matcher::new(&[p]).ok()
}

/// Selects what `patterns` name. `dest_is_dir`: the destination is a
/// directory (ends in `/`, or several sources); then each file lands under
/// its own name and each directory's contents merge into it.
impl Selection {
    /// Adds a file made elsewhere (a here-document, a download), named
    /// `name` under the landing directory.
    pub fn add_file(
        &mut self,
        full: PathBuf,
        name: String,
        archive: bool,
    ) -> Result<(), BuildError> {
        let md = fs::symlink_metadata(&full)
            .map_err(|e| BuildError::io(format!("stat {}", full.display()), e))?;
        self.single_file = Some(name.clone());
        self.entries.push(Entry {
            rel: name.clone(),
            full,
            name,
            md,
            archive,
            // Downloads and here-documents are never unpacked.
            top: false,
        });
        Ok(())
    }
}

/// Whether a file is a tar archive, plain or compressed (gzip, zstd).
pub fn is_archive(p: &Path) -> bool {
    let Ok(f) = fs::File::open(p) else {
        return false;
    };
    let Ok(mut r) = berth_image::layer::decompress(io::BufReader::new(f)) else {
        return false;
    };
    let mut head = [0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return false,
        }
    }
    if got < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" {
        return true;
    }
    // A v7 tar: the header's checksum field matches its bytes.
    let field = String::from_utf8_lossy(&head[148..156]);
    let Ok(want) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u32 = head
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == want && head[0] != 0
}

/// Selects what `patterns` name. With `parents`, each source keeps its
/// path (below a `/./` in the pattern, or all of it) under the
/// destination, its parent directories included.
pub fn select(
    root: &SourceRoot,
    patterns: &[String],
    excludes: &[String],
    parents: bool,
) -> Result<Selection, BuildError> {
    let mut seen_parents = std::collections::HashSet::new();
    let mut entries = Vec::new();
    let mut fds = Vec::new();
    let mut single_file = None;
    let exclude = if excludes.is_empty() {
        None
    } else {
        Some(Matcher::new(excludes).map_err(|e| BuildError::Invalid(format!("--exclude: {e}")))?)
    };
    let mut total = 0;
    for raw in patterns {
        let cleaned = fsutil::clean(raw);
        let matches = if has_meta(&cleaned) {
            let m = glob(root, &cleaned)?;
            if m.is_empty() {
                return Err(BuildError::Invalid(format!(
                    "no source files were specified: {raw} matches nothing"
                )));
            }
            m
        } else {
            vec![cleaned]
        };
        for rel in matches {
            if let Some(ig) = &root.ignore {
                if !rel.is_empty() && ig.matches(&rel) {
                    if has_meta(raw) {
                        continue;
                    }
                    return Err(BuildError::Invalid(format!(
                        "{raw}: not found: it is excluded by .dockerignore"
                    )));
                }
            }
            let fd = fsutil::open_in_root(&root.fd, &rel).map_err(|e| {
                if e == rustix::io::Errno::NOENT {
                    BuildError::Invalid(format!(
                        "{raw}: not found in the {}",
                        if root.keep_owners {
                            "source stage or image"
                        } else {
                            "build context"
                        }
                    ))
                } else {
                    BuildError::io(format!("open {raw}"), e.into())
                }
            })?;
            // A link is matched where it leads: an ignored directory
            // cannot be reached through a link to it.
            let rel = match root.resolved_rel(&fd) {
                Some(r) => {
                    if let Some(ig) = &root.ignore {
                        if !r.is_empty() && ig.matches(&r) {
                            if has_meta(raw) {
                                continue;
                            }
                            return Err(BuildError::Invalid(format!(
                                "{raw}: not found: it is excluded by .dockerignore"
                            )));
                        }
                    }
                    r
                }
                None => rel,
            };
            if let (Some(ex), true) = (exclude.as_ref(), has_meta(raw)) {
                let base = rel.rsplit('/').next().unwrap_or(&rel);
                if ex.matches(&rel) || ex.matches(base) {
                    continue;
                }
            }
            let full = fsutil::fd_path(&fd);
            let md = fs::metadata(&full).map_err(|e| BuildError::io(format!("stat {raw}"), e))?;
            total += 1;
            // --parents keeps the path below a `/./` (or all of it).
            let kept = if parents {
                let prefix = raw
                    .find("/./")
                    .map(|i| fsutil::clean(&raw[..i]))
                    .unwrap_or_default();
                let kept = if prefix.is_empty() {
                    rel.clone()
                } else {
                    rel.strip_prefix(&prefix)
                        .map(|r| r.trim_start_matches('/').to_string())
                        .unwrap_or_else(|| rel.clone())
                };
                // The directories between the prefix and the source.
                let base_len = rel.len() - kept.len();
                let comps: Vec<&str> = kept.split('/').collect();
                let mut cur = String::new();
                for c in &comps[..comps.len().saturating_sub(1)] {
                    cur = join(&cur, c);
                    let full_rel = join(rel[..base_len].trim_end_matches('/'), &cur);
                    if !seen_parents.insert(full_rel.clone()) {
                        continue;
                    }
                    let pfd = fsutil::open_in_root(&root.fd, &full_rel)
                        .map_err(|e| BuildError::io(format!("open {full_rel}"), e.into()))?;
                    let pfull = fsutil::fd_path(&pfd);
                    let pmd = fs::metadata(&pfull)
                        .map_err(|e| BuildError::io(format!("stat {full_rel}"), e))?;
                    entries.push(Entry {
                        full: pfull,
                        rel: full_rel,
                        name: cur.clone(),
                        md: pmd,
                        archive: false,
                        top: false,
                    });
                    fds.push(pfd);
                }
                Some(kept)
            } else {
                None
            };
            if md.is_dir() {
                let name = kept.clone().unwrap_or_default();
                if !name.is_empty() {
                    entries.push(Entry {
                        full: full.clone(),
                        rel: rel.clone(),
                        name: name.clone(),
                        md: md.clone(),
                        archive: false,
                        top: false,
                    });
                }
                walk(root, exclude.as_ref(), &full, &rel, &name, &mut entries)?;
            } else {
                let base = kept
                    .clone()
                    .unwrap_or_else(|| rel.rsplit('/').next().unwrap_or(&rel).to_string());
                single_file = Some(base.clone());
                entries.push(Entry {
                    full: full.clone(),
                    rel: rel.clone(),
                    name: base,
                    md,
                    archive: false,
                    top: true,
                });
            }
            fds.push(fd);
        }
    }
    if total != 1 || entries.len() != 1 || parents {
        single_file = None;
    }
    Ok(Selection {
        entries,
        _fds: fds,
        single_file,
    })
}

fn walk(
    root: &SourceRoot,
    exclude: Option<&Matcher>,
    dir: &Path,
    rel: &str,
    name: &str,
    out: &mut Vec<Entry>,
) -> Result<(), BuildError> {
    let mut names: Vec<std::ffi::OsString> = fs::read_dir(dir)
        .map_err(|e| BuildError::io(format!("read /{rel}"), e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(|e| BuildError::io(format!("read /{rel}"), e))?;
    names.sort();
    for n in names {
        let s = n.to_string_lossy().into_owned();
        let child_rel = join(rel, &s);
        let child_name = join(name, &s);
        let full = dir.join(&n);
        let md = fs::symlink_metadata(&full)
            .map_err(|e| BuildError::io(format!("stat {child_rel}"), e))?;
        let ignored = root.ignore.as_ref().is_some_and(|m| m.matches(&child_rel))
            || exclude.is_some_and(|m| m.matches(&child_name));
        if ignored {
            let skip = !md.is_dir()
                || (root
                    .ignore
                    .as_ref()
                    .is_none_or(|m| m.can_skip_dir(&child_rel))
                    && exclude.is_none_or(|m| m.can_skip_dir(&child_name)));
            if skip {
                continue;
            }
        }
        if md.file_type().is_socket() {
            continue;
        }
        let is_dir = md.is_dir();
        if !ignored {
            out.push(Entry {
                full: full.clone(),
                rel: child_rel.clone(),
                name: child_name.clone(),
                md,
                archive: false,
                top: false,
            });
        }
        if is_dir {
            walk(root, exclude, &full, &child_rel, &child_name, out)?;
        }
    }
    Ok(())
}

/// Owner and mode changes COPY applies.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta {
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<u32>,
    pub keep_owners: bool,
}

impl Meta {
    fn owner(&self, md: &fs::Metadata) -> (u32, u32) {
        match (self.owner, self.keep_owners) {
            (Some(o), _) => o,
            (None, true) => (md.uid(), md.gid()),
            (None, false) => (0, 0),
        }
    }
    fn mode(&self, md: &fs::Metadata) -> u32 {
        match self.chmod {
            Some(m) if !md.file_type().is_symlink() => m,
            _ => md.mode() & 0o7777,
        }
    }
}

/// Digests of file contents by path and stat, so that an unchanged file is
/// not read again (in the store's database).
pub struct HashCache {
    db: Option<rusqlite::Connection>,
    memo: HashMap<PathBuf, String>,
    /// Digests computed, to be recorded.
    pending: Vec<(String, [i64; 5], String)>,
}

impl HashCache {
    pub fn open(root: &Path) -> HashCache {
        let db = rusqlite::Connection::open(root.join("berth.db"))
            .ok()
            .and_then(|db| {
                db.busy_timeout(std::time::Duration::from_secs(30)).ok()?;
                db.execute_batch(
                    "CREATE TABLE IF NOT EXISTS build_file_hashes(
                    path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER,
                    mtime INTEGER, ctime INTEGER, digest TEXT NOT NULL)",
                )
                .ok()?;
                Some(db)
            });
        HashCache {
            db,
            memo: HashMap::new(),
            pending: Vec::new(),
        }
    }

    fn stat_key(md: &fs::Metadata) -> [i64; 5] {
        [
            md.dev() as i64,
            md.ino() as i64,
            md.size() as i64,
            md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            md.ctime() * 1_000_000_000 + md.ctime_nsec(),
        ]
    }

    /// The sha256 of a regular file's content; `stable` is its real path
    /// (the cache's key), when it has one that stays the same across builds.
    fn digest(
        &mut self,
        full: &Path,
        stable: Option<&Path>,
        md: &fs::Metadata,
    ) -> Result<String, BuildError> {
        let key = stable.map(Path::to_path_buf);
        let stat = Self::stat_key(md);
        if let (Some(k), Some(db)) = (&key, &self.db) {
            if let Some(d) = self.memo.get(k) {
                return Ok(d.clone());
            }
            let row: Option<(i64, i64, i64, i64, i64, String)> = db
                .query_row(
                    "SELECT dev, ino, size, mtime, ctime, digest FROM build_file_hashes WHERE path = ?1",
                    [k.to_string_lossy()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .ok();
            if let Some((a, b, c, d, e, digest)) = row {
                if [a, b, c, d, e] == stat {
                    return Ok(digest);
                }
            }
        }
        let mut f = fs::File::open(full)
            .map_err(|e| BuildError::io(format!("read {}", full.display()), e))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| BuildError::io(format!("read {}", full.display()), e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let digest = hex::encode(h.finalize());
        if let Some(k) = &key {
            self.pending
                .push((k.to_string_lossy().into_owned(), stat, digest.clone()));
            self.memo.insert(k.clone(), digest.clone());
        }
        Ok(digest)
    }

    /// Runs `f`, then records the digests it computed in one short
    /// transaction (the database is never locked while files are read).
    pub fn batch<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let out = f(self);
        let pending = std::mem::take(&mut self.pending);
        if let (Some(db), false) = (&mut self.db, pending.is_empty()) {
            if let Ok(tx) = db.transaction() {
                for (path, stat, digest) in &pending {
                    let _ = tx.execute(
                        "INSERT INTO build_file_hashes(path, dev, ino, size, mtime, ctime, digest)
                         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT(path) DO UPDATE SET dev = excluded.dev, ino = excluded.ino,
                           size = excluded.size, mtime = excluded.mtime, ctime = excluded.ctime,
                           digest = excluded.digest",
                        rusqlite::params![
                            path, stat[0], stat[1], stat[2], stat[3], stat[4], digest
                        ],
                    );
                }
                let _ = tx.commit();
            }
        }
        out
    }
}

/// The content hash of a selection: names, types, modes, owners, link
/// targets and file contents; not times.
pub fn content_hash(
    root: &SourceRoot,
    sel: &Selection,
    meta: &Meta,
    cache: &mut HashCache,
) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    cache.batch(|cache| -> Result<(), BuildError> {
        for e in &sel.entries {
            let ft = e.md.file_type();
            let (uid, gid) = meta.owner(&e.md);
            let kind = if ft.is_dir() {
                "d".to_string()
            } else if ft.is_symlink() {
                format!(
                    "l{}",
                    fs::read_link(&e.full)
                        .map_err(|err| BuildError::io(format!("readlink {}", e.rel), err))?
                        .to_string_lossy()
                )
            } else if ft.is_file() {
                let stable = (!root.keep_owners).then(|| root.dir.join(&e.rel));
                format!("f{}", cache.digest(&e.full, stable.as_deref(), &e.md)?)
            } else {
                format!("o{}:{}", ft.is_fifo(), e.md.rdev())
            };
            h.update(
                format!("{}\0{:o}\0{uid}:{gid}\0{kind}\0", e.name, meta.mode(&e.md)).as_bytes(),
            );
        }
        Ok(())
    })?;
    if let Some(s) = &sel.single_file {
        h.update(format!("single:{s}").as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

/// Writes the selection as a tar, each entry named `prefix/name` (or the
/// single file as `single_name`), with COPY's owners and modes.
pub fn write_tar(
    sel: &Selection,
    meta: &Meta,
    single_name: Option<&str>,
    out: impl Write,
) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    for e in sel.entries.iter().filter(|e| !e.archive) {
        let name = match single_name {
            Some(n) => n.to_string(),
            None => e.name.clone(),
        };
        let ft = e.md.file_type();
        let mut h = tar::Header::new_gnu();
        let (uid, gid) = meta.owner(&e.md);
        h.set_uid(uid as u64);
        h.set_gid(gid as u64);
        h.set_mode(meta.mode(&e.md));
        h.set_mtime(e.md.mtime().max(0) as u64);
        h.set_size(0);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, format!("{name}/"), io::empty())?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(&e.full)?;
            b.append_link(&mut h, &name, target)?;
        } else if ft.is_file() {
            if e.md.nlink() > 1 {
                if let Some(first) = links.get(&(e.md.dev(), e.md.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    b.append_link(&mut h, &name, first)?;
                    continue;
                }
                links.insert((e.md.dev(), e.md.ino()), name.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            let len = e.md.len();
            h.set_size(len);
            let body = io::Read::take(
                io::Read::chain(io::Read::take(fs::File::open(&e.full)?, len), io::repeat(0)),
                len,
            );
            b.append_data(&mut h, &name, body)?;
        } else if ft.is_fifo() {
            h.set_entry_type(tar::EntryType::Fifo);
            b.append_data(&mut h, &name, io::empty())?;
        } else if ft.is_char_device() || ft.is_block_device() {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            h.set_device_major(rustix::fs::major(e.md.rdev()))?;
            h.set_device_minor(rustix::fs::minor(e.md.rdev()))?;
            b.append_data(&mut h, &name, io::empty())?;
        }
    }
    b.into_inner()?.flush()
}
