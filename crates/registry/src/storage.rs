//! Where a registry keeps its content. The filesystem layout (the embedded
//! default) is designed so that several registry processes may share one
//! store: every state change is a file created or renamed atomically, no
//! state lives only in one process's memory.
//!
//! ```text
//! DIR/blobs/<alg>/<hex>                        content, written once, renamed in
//! DIR/uploads/<id>/data                        an upload in progress
//! DIR/repos/<name>/_blobs/<alg>/<hex>          the blob is part of the repository
//! DIR/repos/<name>/_manifests/<alg>/<hex>      a manifest of it (content: media type)
//! DIR/repos/<name>/_tags/<tag>                 a tag (content: the manifest digest)
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use berth_image::digest::Digest;

/// Repository names as the distribution spec allows them:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
/// at most 255 characters.
pub fn valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    name.split('/').all(|comp| {
        let b = comp.as_bytes();
        if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if is_alnum(b[i]) {
                i += 1;
                continue;
            }
            // A separator: ".", "_", "__" or one or more "-".
            let start = i;
            while i < b.len() && !is_alnum(b[i]) {
                i += 1;
            }
            let sep = &comp[start..i];
            let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|c| c == b'-');
            if !ok {
                return false;
            }
        }
        true
    })
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Tags: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// The filesystem store.
#[derive(Debug, Clone)]
pub struct FsStorage {
    dir: PathBuf,
}

/// Writes `data` to `path` through a temporary file renamed into place.
fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("store paths have parents");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", random_id()));
    let mut f = fs::File::create_new(&tmp)?;
    f.write_all(data)?;
    drop(f);
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// 32 random hex digits.
/// An flock on a lock file, released when dropped (the fd closes).
pub struct Lock(#[allow(dead_code)] fs::File);

impl Lock {
    fn take(path: &Path, exclusive: bool, wait: bool) -> io::Result<Option<Lock>> {
        use rustix::fs::FlockOperation as F;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        let op = match (exclusive, wait) {
            (true, true) => F::LockExclusive,
            (true, false) => F::NonBlockingLockExclusive,
            (false, true) => F::LockShared,
            (false, false) => F::NonBlockingLockShared,
        };
        loop {
            match rustix::fs::flock(&f, op) {
                Ok(()) => return Ok(Some(Lock(f))),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Sets a file's mtime to now.
fn touch(path: &Path) -> io::Result<()> {
    let f = fs::File::options().write(true).open(path)?;
    f.set_modified(std::time::SystemTime::now())
}

/// 32 random hex digits.
pub fn random_id() -> String {
    berth_image::units::random_hex(16)
}

impl FsStorage {
    pub fn open(dir: &Path) -> io::Result<FsStorage> {
        for d in ["blobs", "uploads", "repos"] {
            fs::create_dir_all(dir.join(d))?;
        }
        // Private repositories' content is not for the host's other users.
        berth_image::store::private_dirs(dir, &["blobs", "uploads", "repos"])?;
        Ok(FsStorage {
            dir: dir.to_path_buf(),
        })
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// A repository's directory. Names reach here checked by the server;
    /// an invalid one maps to a path that never exists rather than
    /// anywhere else.
    fn repo(&self, name: &str) -> PathBuf {
        if !valid_name(name) {
            return self.dir.join("repos").join("_invalid");
        }
        self.dir.join("repos").join(name)
    }

    /// A tag's file, or None for a name that is not a valid tag (so that
    /// no tag can name a path outside `_tags`).
    fn tag_path(&self, name: &str, tag: &str) -> Option<PathBuf> {
        valid_tag(tag).then(|| self.repo(name).join("_tags").join(tag))
    }

    fn link(&self, name: &str, kind: &str, d: &Digest) -> PathBuf {
        self.repo(name)
            .join(kind)
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// Whether the store holds the blob at all (any repository).
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    /// Moves a verified upload file into the blob store (a blob that is
    /// already there is kept; the content is the same).
    fn commit_blob(&self, file: &Path, d: &Digest) -> io::Result<()> {
        let dest = self.blob_path(d);
        fs::create_dir_all(dest.parent().expect("has parent"))?;
        // Fresh, so that garbage collection leaves it to the manifest
        // that will reference it.
        if self.touch_blob(d) {
            return fs::remove_file(file);
        }
        touch(file)?;
        fs::rename(file, &dest)
    }

    /// The shared side of the garbage-collection lock: held by a writer
    /// from the moment it checks that blobs exist to the moment the
    /// manifest or link naming them is stored, so that a collection never
    /// sweeps in between. None while a collection sweeps (a brief time):
    /// try again.
    fn flock_shared(&self) -> io::Result<Option<Lock>> {
        Lock::take(&self.dir.join("gc.lock"), false, false)
    }

    /// The exclusive side, taken by a collection to sweep.
    pub fn sweep_lock(&self) -> io::Result<Lock> {
        Ok(Lock::take(&self.dir.join("gc.lock"), true, true)?.expect("a blocking lock is taken"))
    }

    /// A new upload: its id and its data file.
    fn create_upload(&self) -> io::Result<(String, PathBuf)> {
        let id = random_id();
        let dir = self.dir.join("uploads").join(&id);
        fs::create_dir_all(&dir)?;
        let data = dir.join("data");
        fs::File::create_new(&data)?;
        Ok((id, data))
    }

    /// The data file of upload `id`, if it exists (ids are checked: hex).
    fn upload(&self, id: &str) -> Option<PathBuf> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let p = self.dir.join("uploads").join(id).join("data");
        p.exists().then_some(p)
    }
}

/// What a garbage collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub manifests: usize,
    pub kept: usize,
    pub removed: usize,
    pub bytes: u64,
}

impl FsStorage {
    /// Every repository: (name, its directory).
    fn repos(&self) -> io::Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        let mut stack = vec![(String::new(), self.dir.join("repos"))];
        while let Some((name, dir)) = stack.pop() {
            for e in read_dir_or_empty(&dir)? {
                let e = e?;
                let fname = e.file_name().to_string_lossy().into_owned();
                if !e.file_type()?.is_dir() {
                    continue;
                }
                if fname == "_manifests" || fname == "_blobs" {
                    if out.last().is_none_or(|(n, _)| n != &name) {
                        out.push((name.clone(), dir.clone()));
                    }
                } else if !fname.starts_with('_') && !fname.starts_with('.') {
                    let child = if name.is_empty() {
                        fname
                    } else {
                        format!("{name}/{fname}")
                    };
                    stack.push((child, e.path()));
                }
            }
        }
        Ok(out)
    }

    /// Digests under `dir/ALG/HEX`.
    fn digests_in(dir: &Path) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in read_dir_or_empty(dir)? {
            let alg = alg?;
            let a = alg.file_name().to_string_lossy().into_owned();
            for f in read_dir_or_empty(&alg.path())? {
                let h = f?.file_name().to_string_lossy().into_owned();
                if let Ok(d) = format!("{a}:{h}").parse() {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Marks every manifest of every repository and what it references.
    /// Manifests already marked are not read again. Any error ends the
    /// collection: what could not be read might reference anything.
    fn mark(&self, marked: &mut std::collections::HashSet<Digest>) -> io::Result<usize> {
        let mut manifests = 0;
        for (name, dir) in self.repos()? {
            for d in Self::digests_in(&dir.join("_manifests"))? {
                manifests += 1;
                if marked.contains(&d) {
                    continue;
                }
                let bytes = match fs::read(self.blob_path(&d)) {
                    Ok(b) => b,
                    // A link to bytes that are gone references nothing.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                let doc = serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("manifest {d} of {name} is not JSON ({e}): nothing collected"),
                    )
                })?;
                let descriptors = doc["layers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(doc["manifests"].as_array().into_iter().flatten())
                    .chain(doc["blobs"].as_array().into_iter().flatten())
                    .chain([&doc["config"]]);
                for desc in descriptors {
                    if let Some(Ok(x)) = desc["digest"].as_str().map(str::parse::<Digest>) {
                        marked.insert(x);
                    }
                }
                marked.insert(d);
            }
        }
        Ok(manifests)
    }
}

/// A directory's entries; none if it does not exist (yet).
fn read_dir_or_empty(dir: &Path) -> io::Result<Vec<io::Result<fs::DirEntry>>> {
    match fs::read_dir(dir) {
        Ok(d) => Ok(d.collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Where a blob's bytes come from.
pub enum BlobSource {
    /// A local file, served from a memory map.
    File(fs::File),
    /// A stream (an object store's GET, say).
    Reader(Box<dyn io::Read + Send>),
}

/// The bytes one request appends to an upload.
pub trait UploadSink: io::Write + Send {
    /// Keeps what was written; returns the upload's size.
    fn finish(self: Box<Self>) -> io::Result<u64>;
    /// Drops what this request wrote: the upload is as before it.
    fn abort(self: Box<Self>);
}

/// Held by a writer between its check that blobs exist and the store of
/// what names them; released when dropped.
pub type WriteLock = Box<dyn Send>;

/// What the registry keeps, and where: blobs (content-addressed),
/// uploads in progress, and per repository its blob links, manifests,
/// tags and referrers. Implementations must stay correct when several
/// registry processes share one store: no state only in one process's
/// memory, every change atomic. [`FsStorage`] is the embedded default; an
/// object store (S3) fits behind the same trait: blobs and manifests as
/// objects, uploads as multipart uploads, `open_blob` a ranged GET, the
/// write lock a lease.
pub trait Storage: Send + Sync {
    /// A blob's size, if repository `repo` has it (linked, or a manifest).
    fn blob_size(&self, repo: &str, d: &Digest) -> Option<u64>;
    /// A blob's bytes.
    fn open_blob(&self, d: &Digest) -> io::Result<BlobSource>;
    /// Makes a blob the store has part of `repo` (after an upload, or a
    /// cross-repository mount).
    fn link_blob(&self, repo: &str, d: &Digest) -> io::Result<()>;
    /// Removes a blob from `repo`; false if it was not there.
    fn delete_blob(&self, repo: &str, d: &Digest) -> io::Result<bool>;
    /// Marks a blob as just used (garbage collection keeps it for its
    /// grace period); false if the store does not have it.
    fn touch_blob(&self, d: &Digest) -> bool;

    /// A new, empty upload belonging to `owner` (repository and user);
    /// returns its id.
    fn new_upload(&self, owner: &str) -> io::Result<String>;
    /// Who upload `id` belongs to; None if there is no such upload.
    fn upload_owner(&self, id: &str) -> Option<String>;
    /// The bytes an upload holds so far; None if there is no such upload.
    fn upload_size(&self, id: &str) -> Option<u64>;
    /// Exclusive use of an upload for one request, from its first byte
    /// appended to its commit: None while another request has it.
    fn lock_upload(&self, id: &str) -> io::Result<Option<WriteLock>>;
    /// Appends to an upload (under its lock).
    fn append_upload(&self, id: &str) -> io::Result<Box<dyn UploadSink>>;
    /// Reads an upload from its start (to verify its digest).
    fn read_upload(&self, id: &str) -> io::Result<Box<dyn io::Read + Send>>;
    /// Makes a verified upload the blob `d` (fresh for garbage
    /// collection) and removes the upload.
    fn commit_upload(&self, id: &str, d: &Digest) -> io::Result<()>;
    fn remove_upload(&self, id: &str);
    /// Removes uploads untouched for `ttl`; returns how many.
    fn expire_uploads(&self, ttl: std::time::Duration) -> usize;

    /// Stores a manifest's exact bytes and media type, and tags it.
    fn put_manifest(
        &self,
        name: &str,
        d: &Digest,
        media_type: &str,
        bytes: &[u8],
        tag: Option<&str>,
    ) -> io::Result<()>;
    fn manifest(&self, name: &str, d: &Digest) -> Option<(Vec<u8>, String)>;
    /// Removes a manifest and the tags pointing at it.
    fn delete_manifest(&self, name: &str, d: &Digest) -> io::Result<bool>;
    fn tag(&self, name: &str, tag: &str) -> Option<Digest>;
    /// Tags in lexical order.
    fn tags(&self, name: &str) -> Vec<String>;
    fn delete_tag(&self, name: &str, tag: &str) -> io::Result<bool>;
    fn repo_exists(&self, name: &str) -> bool;
    /// Records that manifest `d` (described by `descriptor`) has subject
    /// `subject`.
    fn add_referrer(
        &self,
        name: &str,
        subject: &Digest,
        d: &Digest,
        descriptor: &serde_json::Value,
    ) -> io::Result<()>;
    /// The descriptors of the manifests whose subject is `subject`.
    fn referrers(&self, name: &str, subject: &Digest) -> Vec<serde_json::Value>;

    /// The shared side of the garbage-collection lock; None while a
    /// collection sweeps (briefly): try again.
    fn try_write_lock(&self) -> io::Result<Option<WriteLock>>;
    /// Online garbage collection (see [`FsStorage`]'s).
    fn gc(&self, grace: std::time::Duration, dry_run: bool) -> io::Result<GcReport>;
}

/// An upload file opened for appending, with its size before.
struct FileSink {
    file: fs::File,
    start: u64,
}

impl io::Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl UploadSink for FileSink {
    fn finish(self: Box<Self>) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn abort(self: Box<Self>) {
        let _ = self.file.set_len(self.start);
    }
}

impl Storage for FsStorage {
    fn open_blob(&self, d: &Digest) -> io::Result<BlobSource> {
        fs::File::open(self.blob_path(d)).map(BlobSource::File)
    }

    fn new_upload(&self, owner: &str) -> io::Result<String> {
        let (id, data) = self.create_upload()?;
        write_atomic(&data.with_file_name("owner"), owner.as_bytes())?;
        Ok(id)
    }

    fn upload_owner(&self, id: &str) -> Option<String> {
        let data = self.upload(id)?;
        fs::read_to_string(data.with_file_name("owner")).ok()
    }

    fn upload_size(&self, id: &str) -> Option<u64> {
        fs::metadata(self.upload(id)?).ok().map(|m| m.len())
    }

    fn lock_upload(&self, id: &str) -> io::Result<Option<WriteLock>> {
        let path = self
            .upload(id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such upload"))?;
        Ok(Lock::take(&path, true, false)?.map(|l| Box::new(l) as WriteLock))
    }

    fn append_upload(&self, id: &str) -> io::Result<Box<dyn UploadSink>> {
        let path = self
            .upload(id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such upload"))?;
        let file = fs::OpenOptions::new().append(true).open(path)?;
        let start = file.metadata()?.len();
        Ok(Box::new(FileSink { file, start }))
    }

    fn read_upload(&self, id: &str) -> io::Result<Box<dyn io::Read + Send>> {
        let path = self
            .upload(id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such upload"))?;
        Ok(Box::new(fs::File::open(path)?))
    }

    fn commit_upload(&self, id: &str, d: &Digest) -> io::Result<()> {
        let path = self
            .upload(id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such upload"))?;
        let r = self.commit_blob(&path, d);
        Storage::remove_upload(self, id);
        r
    }

    fn try_write_lock(&self) -> io::Result<Option<WriteLock>> {
        Ok(self.flock_shared()?.map(|l| Box::new(l) as WriteLock))
    }

    /// The blob's size, if repository `name` has it.
    fn blob_size(&self, name: &str, d: &Digest) -> Option<u64> {
        if !self.link(name, "_blobs", d).exists() && !self.link(name, "_manifests", d).exists() {
            return None;
        }
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    /// Makes blob `d` part of repository `name`.
    fn link_blob(&self, name: &str, d: &Digest) -> io::Result<()> {
        write_atomic(&self.link(name, "_blobs", d), b"")
    }

    /// Marks a blob as just used (its mtime is now), so that garbage
    /// collection keeps it for its grace period; false if it is not here.
    fn touch_blob(&self, d: &Digest) -> bool {
        touch(&self.blob_path(d)).is_ok()
    }

    /// Removes uploads untouched for `ttl` (abandoned by their clients);
    /// returns how many.
    fn expire_uploads(&self, ttl: std::time::Duration) -> usize {
        let Ok(dir) = fs::read_dir(self.dir.join("uploads")) else {
            return 0;
        };
        let mut n = 0;
        for e in dir.flatten() {
            let data = e.path().join("data");
            let age = fs::metadata(&data)
                .or_else(|_| e.metadata())
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if age.is_some_and(|a| a > ttl) && fs::remove_dir_all(e.path()).is_ok() {
                n += 1;
            }
        }
        n
    }

    fn remove_upload(&self, id: &str) {
        // The whole directory, whether or not its data is still there (a
        // commit has moved it): no empty directory waits for the TTL.
        if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            let _ = fs::remove_dir_all(self.dir.join("uploads").join(id));
        }
    }

    /// Stores a manifest's exact bytes as a blob of repository `name`, with
    /// its media type; tags it when `tag` is given.
    fn put_manifest(
        &self,
        name: &str,
        d: &Digest,
        media_type: &str,
        bytes: &[u8],
        tag: Option<&str>,
    ) -> io::Result<()> {
        let blob = self.blob_path(d);
        if !blob.exists() {
            write_atomic(&blob, bytes)?;
        }
        write_atomic(&self.link(name, "_manifests", d), media_type.as_bytes())?;
        if let Some(t) = tag {
            let path = self.tag_path(name, t).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("invalid tag {t:?}"))
            })?;
            write_atomic(&path, d.to_string().as_bytes())?;
        }
        Ok(())
    }

    /// Records manifest `d` (its descriptor) as a referrer of `subject`.
    fn add_referrer(
        &self,
        name: &str,
        subject: &Digest,
        d: &Digest,
        descriptor: &serde_json::Value,
    ) -> io::Result<()> {
        let path = self
            .repo(name)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex())
            .join(format!("{}-{}", d.algorithm().as_str(), d.hex()));
        write_atomic(&path, descriptor.to_string().as_bytes())
    }

    /// The descriptors of the manifests that name `subject`, still in the
    /// repository.
    fn referrers(&self, name: &str, subject: &Digest) -> Vec<serde_json::Value> {
        let dir = self
            .repo(name)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex());
        let mut out: Vec<(String, serde_json::Value)> = fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| {
                    let e = e.ok()?;
                    let fname = e.file_name().into_string().ok()?;
                    let (alg, hex) = fname.split_once('-')?;
                    let digest: Digest = format!("{alg}:{hex}").parse().ok()?;
                    // Deleted since: no longer a referrer.
                    if !self.link(name, "_manifests", &digest).exists() {
                        return None;
                    }
                    let v = serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
                    Some((fname, v))
                })
                .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// The digest a tag points to.
    fn tag(&self, name: &str, tag: &str) -> Option<Digest> {
        fs::read_to_string(self.tag_path(name, tag)?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A manifest of repository `name`: its bytes and media type.
    fn manifest(&self, name: &str, d: &Digest) -> Option<(Vec<u8>, String)> {
        let media = fs::read_to_string(self.link(name, "_manifests", d)).ok()?;
        let bytes = fs::read(self.blob_path(d)).ok()?;
        Some((bytes, media))
    }

    /// Removes a manifest from the repository, with the tags pointing to
    /// it; false if it was not there.
    fn delete_manifest(&self, name: &str, d: &Digest) -> io::Result<bool> {
        let link = self.link(name, "_manifests", d);
        if !link.exists() {
            return Ok(false);
        }
        for t in self.tags(name) {
            if self.tag(name, &t).as_ref() == Some(d) {
                let _ = fs::remove_file(self.repo(name).join("_tags").join(&t));
            }
        }
        fs::remove_file(link)?;
        Ok(true)
    }

    /// Removes a tag; false if it was not there.
    fn delete_tag(&self, name: &str, tag: &str) -> io::Result<bool> {
        let Some(path) = self.tag_path(name, tag) else {
            return Ok(false);
        };
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Unlinks a blob from the repository; false if it was not there.
    fn delete_blob(&self, name: &str, d: &Digest) -> io::Result<bool> {
        match fs::remove_file(self.link(name, "_blobs", d)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The repository's tags, sorted.
    fn tags(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(self.repo(name).join("_tags"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| !n.starts_with(".tmp-"))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    fn repo_exists(&self, name: &str) -> bool {
        self.repo(name).is_dir()
    }

    /// Online garbage collection: removes blobs that no manifest of any
    /// repository references and that nobody used for `grace` (a client
    /// that found a blob present has that long to push the manifest
    /// naming it). Safe while the registry serves pushes, from this or
    /// other processes:
    ///
    /// 1. it marks from every manifest without holding anything up;
    /// 2. under the exclusive lock, which waits for writers between their
    ///    check that blobs exist and the store of the manifest naming
    ///    them, it marks manifests that arrived meanwhile and sweeps
    ///    unmarked blobs older than the start minus `grace`. A blob
    ///    uploaded or mounted after the start is fresh (commits touch
    ///    it), and uploads in progress are not blobs yet.
    ///
    /// Then repository links to removed blobs go. With `dry_run`, only
    /// counts.
    fn gc(&self, grace: std::time::Duration, dry_run: bool) -> io::Result<GcReport> {
        let start = std::time::SystemTime::now();
        let cutoff = start.checked_sub(grace).unwrap_or(std::time::UNIX_EPOCH);
        let mut marked = std::collections::HashSet::new();
        self.mark(&mut marked)?;
        let mut report = GcReport::default();
        let _sweep = self.sweep_lock()?;
        report.manifests = self.mark(&mut marked)?;
        let mut removed = Vec::new();
        for d in Self::digests_in(&self.dir.join("blobs"))? {
            let path = self.blob_path(&d);
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            let old = meta.modified().is_ok_and(|m| m < cutoff);
            if marked.contains(&d) || !old {
                report.kept += 1;
                continue;
            }
            if dry_run || fs::remove_file(&path).is_ok() {
                report.removed += 1;
                report.bytes += meta.len();
                removed.push(d);
            }
        }
        if !dry_run {
            // Leftovers of writes that crashed between create and rename.
            for alg in read_dir_or_empty(&self.dir.join("blobs"))?
                .into_iter()
                .flatten()
            {
                for f in read_dir_or_empty(&alg.path())?.into_iter().flatten() {
                    let stale = f
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|m| m < cutoff);
                    if stale && f.file_name().to_string_lossy().starts_with(".tmp-") {
                        let _ = fs::remove_file(f.path());
                    }
                }
            }
            // Repository links to what went, still under the lock: a push
            // of the same blob after it would link it again.
            for (name, _) in self.repos()? {
                for d in &removed {
                    let _ = fs::remove_file(self.link(&name, "_blobs", d));
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Private repositories' blobs are not for the host's other users: the
    /// storage is 0700, and an existing one with looser modes is tightened.
    #[test]
    fn storage_is_private_to_its_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("reg");
        fs::create_dir_all(root.join("blobs")).unwrap();
        for d in ["", "blobs"] {
            fs::set_permissions(root.join(d), fs::Permissions::from_mode(0o755)).unwrap();
        }
        FsStorage::open(&root).unwrap();
        for d in ["", "blobs", "uploads", "repos"] {
            let mode = fs::metadata(root.join(d)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{d:?}: {mode:o}");
        }
    }

    #[test]
    fn names_and_tags() {
        for ok in ["a", "library/busybox", "a.b_c__d-e---f/g0", "x/y/z"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "a/.b", "a b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name(&"a".repeat(255)) && !valid_name(&"a".repeat(256)));
        assert!(valid_tag("1.0") && valid_tag("_x") && valid_tag("Latest-2"));
        assert!(!valid_tag(".x") && !valid_tag("-x") && !valid_tag("a/b") && !valid_tag(""));
        assert!(!valid_tag(&"a".repeat(129)));
    }

    #[test]
    fn manifests_tags_and_links() {
        let t = tempfile::tempdir().unwrap();
        let s = FsStorage::open(t.path()).unwrap();
        let m = br#"{"schemaVersion":2}"#;
        let d = Digest::sha256_of(m);
        s.put_manifest(
            "a/b",
            &d,
            "application/vnd.oci.image.manifest.v1+json",
            m,
            Some("1.0"),
        )
        .unwrap();
        assert_eq!(s.tag("a/b", "1.0"), Some(d.clone()));
        let (bytes, media) = s.manifest("a/b", &d).unwrap();
        assert_eq!(bytes, m);
        assert_eq!(media, "application/vnd.oci.image.manifest.v1+json");
        assert!(
            s.manifest("other", &d).is_none(),
            "not linked to another repository"
        );
        assert_eq!(s.tags("a/b"), ["1.0"]);
        assert!(s.delete_manifest("a/b", &d).unwrap());
        assert!(s.tags("a/b").is_empty());
        assert!(s.manifest("a/b", &d).is_none());
    }
}
