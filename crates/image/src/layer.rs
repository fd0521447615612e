//! Layer apply: a (compressed) tar layer becomes a snapshot directory usable
//! as an overlayfs lowerdir.
//!
//! One streaming pass decompresses, hashes the uncompressed stream (the
//! diff_id) and extracts. Every file system call is made relative to a
//! directory fd; parents are resolved with `openat2(RESOLVE_IN_ROOT)`, so a
//! symlink in the layer can never redirect a write outside the snapshot.
//! OCI whiteouts become overlay whiteouts.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use inroot::openat2_retry;
use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags,
    CWD,
};
use rustix::io::Errno;

use crate::digest::{Algorithm, Digest, HashingReader};

/// Prefix of an OCI whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque-directory marker.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// Xattr that marks an overlay directory opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What went wrong while applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer entry {entry:?} would be written outside the layer directory: {reason}")]
    Breakout { entry: String, reason: &'static str },
    #[error("layer entry {entry:?}: {what}")]
    Entry {
        entry: String,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("layer entry {entry:?} is truncated: expected {expected} bytes, got {got}")]
    TruncatedEntry {
        entry: String,
        expected: u64,
        got: u64,
    },
    #[error("layer entry {entry:?} has unsupported type {kind:?}")]
    UnsupportedEntry { entry: String, kind: u8 },
    #[error("cannot read layer stream (corrupt compression or truncated tar)")]
    Stream(#[source] io::Error),
    #[error("layer content does not match its diff_id: expected {expected}, got {actual}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("cannot prepare layer directory {path:?}")]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a layer apply measured.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Digest of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Length of the uncompressed tar stream.
    pub diff_size: u64,
    /// Apparent size of what was written, as Docker counts a layer's Size:
    /// regular file bytes plus symlink target lengths.
    pub content_size: u64,
}

/// Compression detected from a stream's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps `input` in the decompressor its magic bytes call for.
pub fn decompress<'a, R: Read + 'a>(input: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(256 * 1024, input);
    let c = Compression::detect(buf.fill_buf()?);
    decoder(buf, c)
}

/// The decompressor for `c` over `buf` (whose magic bytes said `c`).
fn decoder<'a, R: BufRead + 'a>(buf: R, c: Compression) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
        Compression::None => Box::new(buf),
    })
}

/// How a tar is unpacked: as an image layer (the default) or as a plain
/// archive (`berth cp`, a volume filled from its image).
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) become overlay ones; off,
    /// such names are ordinary files.
    pub whiteouts: bool,
    /// For files landing on the host from a container: set-id bits,
    /// extended attributes (file capabilities) and device nodes are
    /// dropped, as an unprivileged extraction would drop them.
    pub host_safe: bool,
    /// Relative symlinks may point above the archive's root (plain data
    /// for an archive; openat2 keeps every write inside `dest` anyway).
    pub links_anywhere: bool,
    /// A non-directory may not replace an existing directory (docker cp's
    /// "cannot overwrite directory with non-directory").
    pub keep_dirs: bool,
}

impl ApplyOptions {
    /// An image layer.
    pub const LAYER: ApplyOptions = ApplyOptions {
        whiteouts: true,
        host_safe: false,
        links_anywhere: false,
        keep_dirs: false,
    };
    /// A plain archive.
    pub const ARCHIVE: ApplyOptions = ApplyOptions {
        whiteouts: false,
        host_safe: false,
        links_anywhere: true,
        keep_dirs: true,
    };
}

/// Applies the layer read from `input` (gzip, zstd or plain tar) into the
/// existing, empty directory `dest`. When `expected` is given, the diff_id of
/// the stream must match it. On error the caller removes `dest`.
pub fn apply(
    input: impl Read,
    dest: &Path,
    expected: Option<&Digest>,
) -> Result<Applied, LayerError> {
    apply_with(input, dest, expected, ApplyOptions::LAYER)
}

/// `apply` with the options given.
pub fn apply_with(
    input: impl Read,
    dest: &Path,
    expected: Option<&Digest>,
    opts: ApplyOptions,
) -> Result<Applied, LayerError> {
    let stream = decompress(input).map_err(LayerError::Stream)?;
    let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
    let mut hashing = HashingReader::new(stream, algorithm);
    let content_size = extract(&mut hashing, dest, opts)?;
    let (diff_id, diff_size) = hashing.finish();
    check_diff_id(expected, diff_id, diff_size, content_size)
}

/// Unpacks `input` (gzip, zstd or plain tar) into `dest`; returns the
/// size of the content written and the diff_id and size of the tar —
/// except for a plain tar when its caller hashes `input` with
/// `algorithm` already: that digest is the diff_id, and the bytes are not
/// hashed twice (None).
///
/// Decompression, the diff_id's hash and the extraction each run on a
/// thread of their own, sharing the decompressed chunks, so that a large
/// compressed layer unpacks at the speed of its slowest stage rather than
/// of all three added up.
pub fn apply_raw(
    input: impl Read + Send,
    dest: &Path,
    algorithm: Algorithm,
    caller_hashes: bool,
    opts: ApplyOptions,
) -> Result<(u64, Option<(Digest, u64)>), LayerError> {
    let mut buf = BufReader::with_capacity(256 * 1024, input);
    let compression = Compression::detect(buf.fill_buf().map_err(LayerError::Stream)?);
    if compression == Compression::None && caller_hashes {
        return Ok((extract(&mut buf, dest, opts)?, None));
    }
    let (to_extract, chunks) = std::sync::mpsc::sync_channel::<Arc<Chunk>>(8);
    let (to_hash, hash_rx) = std::sync::mpsc::sync_channel::<Arc<Chunk>>(8);
    let pool = ChunkPool::new(CHUNK, 24);
    std::thread::scope(|scope| {
        let stream = scope.spawn(move || -> io::Result<()> {
            let mut stream = decoder(buf, compression)?;
            loop {
                let mut chunk = pool.get();
                let n = read_full(&mut stream, &mut chunk.data)?;
                if n == 0 {
                    return Ok(());
                }
                chunk.len = n;
                let chunk = Arc::new(chunk);
                // The hasher takes everything; an extractor that gave up
                // ends the stream (its error is the one reported).
                if to_hash.send(chunk.clone()).is_err() || to_extract.send(chunk).is_err() {
                    return Ok(());
                }
            }
        });
        let hasher = scope.spawn(move || {
            let mut hasher = algorithm.hasher();
            let mut size = 0u64;
            for chunk in hash_rx {
                hasher.update(&chunk);
                size += chunk.len() as u64;
            }
            (hasher.finish(), size)
        });
        let extracted = extract(&mut ChannelReader::new(chunks), dest, opts);
        let streamed = stream.join().expect("the decompressor does not panic");
        let hashed = hasher.join().expect("the hasher does not panic");
        // A broken stream explains whatever the extraction then made of it.
        streamed.map_err(LayerError::Stream)?;
        Ok((extracted?, Some(hashed)))
    })
}

/// The size of the chunks `apply_raw`'s threads pass on.
const CHUNK: usize = 1 << 20;

/// Reads until `buf` is full or the stream ends; returns the count.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A buffer that the threads of a pull or an unpack pass along, shared
/// (in an Arc) and given back to its pool when the last holder drops it,
/// so that the same few megabytes are reused instead of fresh memory being
/// faulted in and zeroed for every chunk.
pub(crate) struct Chunk {
    /// The whole buffer, of the pool's size.
    pub(crate) data: Vec<u8>,
    /// How much of it holds data.
    pub(crate) len: usize,
    pool: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // A full pool (or one whose owner is gone) lets the buffer go.
        let _ = self.pool.try_send(std::mem::take(&mut self.data));
    }
}

/// Buffers of one size, handed out as `Chunk`s and taken back.
pub(crate) struct ChunkPool {
    size: usize,
    // Buffers come back through `back` and wait in `free`.
    back: std::sync::mpsc::SyncSender<Vec<u8>>,
    free: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl ChunkPool {
    /// A pool keeping up to `keep` buffers of `size` bytes.
    pub(crate) fn new(size: usize, keep: usize) -> Self {
        let (back, free) = std::sync::mpsc::sync_channel(keep);
        ChunkPool { size, back, free }
    }

    /// A buffer of the pool's size: a returned one, or a new one.
    pub(crate) fn get(&self) -> Chunk {
        let data = self.free.try_recv().unwrap_or_else(|_| vec![0; self.size]);
        Chunk {
            data,
            len: 0,
            pool: self.back.clone(),
        }
    }
}

/// Reads the chunks a channel carries, until its sender is gone.
pub(crate) struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Arc<Chunk>>,
    chunk: Option<Arc<Chunk>>,
    pos: usize,
}

impl ChannelReader {
    pub(crate) fn new(rx: std::sync::mpsc::Receiver<Arc<Chunk>>) -> Self {
        ChannelReader {
            rx,
            chunk: None,
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.chunk {
                if self.pos < chunk.len() {
                    let n = buf.len().min(chunk.len() - self.pos);
                    buf[..n].copy_from_slice(&chunk[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            // Done with this chunk: let it go back before waiting.
            self.chunk = None;
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = Some(c);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
    }
}

/// The result of an extraction, once its diff_id is known: an error if it
/// is not the one `expected`.
pub fn check_diff_id(
    expected: Option<&Digest>,
    diff_id: Digest,
    diff_size: u64,
    content_size: u64,
) -> Result<Applied, LayerError> {
    if let Some(expected) = expected {
        if *expected != diff_id {
            return Err(LayerError::DiffIdMismatch {
                expected: expected.clone(),
                actual: diff_id,
            });
        }
    }
    Ok(Applied {
        diff_id,
        diff_size,
        content_size,
    })
}

/// Unpacks the tar `stream` into `dest` and reads it to its end (the
/// end-of-archive blocks and any padding count in the diff_id); returns
/// the size of the content written.
fn extract(stream: &mut dyn Read, dest: &Path, opts: ApplyOptions) -> Result<u64, LayerError> {
    let root = rfs::open(
        dest,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Dir {
        path: dest.to_path_buf(),
        source: e.into(),
    })?;
    let mut ex = Extractor::new(root, opts);
    {
        let mut archive = tar::Archive::new(&mut *stream);
        let entries = archive.entries().map_err(LayerError::Stream)?;
        for entry in entries {
            let entry = entry.map_err(LayerError::Stream)?;
            ex.entry(entry)?;
        }
    }
    io::copy(stream, &mut io::sink()).map_err(LayerError::Stream)?;
    ex.finish()?;
    Ok(ex.content_size)
}

/// Cleans an entry name: strips `./` and a trailing slash, refuses absolute
/// names and `..`. Returns `None` for the root itself.
fn clean_name(raw: &Path, entry: &str) -> Result<Option<PathBuf>, LayerError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(LayerError::Breakout {
                    entry: entry.to_string(),
                    reason: "name contains a '..' component",
                })
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(LayerError::Breakout {
                    entry: entry.to_string(),
                    reason: "name is absolute",
                })
            }
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Resolves `target` lexically against `base` (both inside the root);
/// `None` if it climbs above the root.
fn resolve_lexically(base: &Path, target: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&OsStr> = if target.is_absolute() {
        Vec::new()
    } else {
        base.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect()
    };
    for c in target.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.iter().collect())
}

fn timestamps(sec: i64, nsec: u32) -> Timestamps {
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// PAX `mtime` may carry a fraction ("1700000000.123456789").
fn pax_mtime(value: &str) -> Option<(i64, u32)> {
    let (s, frac) = value.split_once('.').unwrap_or((value, ""));
    let sec: i64 = s.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: u32 = digits.parse().ok()?;
    Some((sec, nsec))
}

struct Extractor {
    root: OwnedFd,
    /// The last parent directory resolved, reused while entries stay in it.
    cached: Option<(PathBuf, OwnedFd)>,
    /// Directories whose times are set at the end, after their children.
    dir_times: Vec<(PathBuf, Timestamps)>,
    content_size: u64,
    opts: ApplyOptions,
    /// The buffer file contents pass through, allocated at the first file.
    buf: Vec<u8>,
    /// File bytes written since the free space was last looked at.
    unchecked: u64,
}

fn entry_err(entry: &str, what: impl Into<String>) -> impl FnOnce(Errno) -> LayerError + '_ {
    let what = what.into();
    move |e| LayerError::Entry {
        entry: entry.to_string(),
        what,
        source: e.into(),
    }
}

impl Extractor {
    fn new(root: OwnedFd, opts: ApplyOptions) -> Self {
        Extractor {
            root,
            cached: None,
            dir_times: Vec::new(),
            content_size: 0,
            opts,
            buf: Vec::new(),
            unchecked: 0,
        }
    }

    /// With `keep_dirs`: refuses to put a non-directory where a directory
    /// is.
    fn refuse_dir_replace(
        &mut self,
        parent: &Path,
        name: &OsStr,
        entry: &str,
    ) -> Result<(), LayerError> {
        if !self.opts.keep_dirs {
            return Ok(());
        }
        let dir = self.parent(parent, entry)?;
        match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                Err(LayerError::Entry {
                    entry: entry.to_string(),
                    what: "cannot overwrite directory with non-directory".into(),
                    source: io::ErrorKind::AlreadyExists.into(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Opens directory `rel` (resolved inside the root), creating missing
    /// components with mode 0755.
    fn open_dir(&self, rel: &Path, entry: &str) -> Result<OwnedFd, LayerError> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        if rel.as_os_str().is_empty() {
            return openat2_retry(&self.root, ".", flags, Mode::empty(), resolve)
                .map_err(entry_err(entry, "cannot open layer root"));
        }
        match openat2_retry(&self.root, rel, flags, Mode::empty(), resolve) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(entry_err(entry, format!("cannot open parent {rel:?}"))(e)),
        }
        // Walk down, creating what is missing.
        let mut fd = openat2_retry(&self.root, ".", flags, Mode::empty(), resolve)
            .map_err(entry_err(entry, "cannot open layer root"))?;
        let mut prefix = PathBuf::new();
        for c in rel.components() {
            prefix.push(c);
            let next = match openat2_retry(&self.root, &prefix, flags, Mode::empty(), resolve) {
                Ok(next) => next,
                Err(Errno::NOENT) => {
                    match rfs::mkdirat(&fd, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(entry_err(entry, format!("cannot create {prefix:?}"))(e))
                        }
                    }
                    openat2_retry(&self.root, &prefix, flags, Mode::empty(), resolve)
                        .map_err(entry_err(entry, format!("cannot open {prefix:?}")))?
                }
                Err(e) => return Err(entry_err(entry, format!("cannot open {prefix:?}"))(e)),
            };
            fd = next;
        }
        Ok(fd)
    }

    /// The directory fd for `parent`, from the cache when possible.
    fn parent(&mut self, parent: &Path, entry: &str) -> Result<&OwnedFd, LayerError> {
        let hit = matches!(&self.cached, Some((p, _)) if p == parent);
        if !hit {
            let fd = self.open_dir(parent, entry)?;
            self.cached = Some((parent.to_path_buf(), fd));
        }
        Ok(&self.cached.as_ref().expect("cached parent").1)
    }

    /// Forgets the cached parent when `path` is it or one of its ancestors,
    /// since the entry at `path` may replace a directory.
    fn invalidate(&mut self, path: &Path) {
        if matches!(&self.cached, Some((p, _)) if p.starts_with(path)) {
            self.cached = None;
        }
    }

    fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<(), LayerError> {
        let raw_path = e.path().map_err(LayerError::Stream)?.into_owned();
        let name = raw_path.to_string_lossy().into_owned();
        let kind = e.header().entry_type();
        let mut pax = read_pax(&mut e)?;
        if self.opts.host_safe {
            pax.xattrs.clear();
        }
        let times = match pax.mtime {
            Some((sec, nsec)) => timestamps(sec, nsec),
            None => timestamps(e.header().mtime().map_err(LayerError::Stream)? as i64, 0),
        };
        let header_mode = e.header().mode().map_err(LayerError::Stream)?;
        let keep = if self.opts.host_safe { 0o1777 } else { 0o7777 };
        let perm = Mode::from_raw_mode(header_mode & keep);
        let Some(path) = clean_name(&raw_path, &name)? else {
            // "./": the root directory's own metadata.
            if kind.is_dir() {
                let fd = self.open_dir(Path::new(""), &name)?;
                set_meta(&fd, &e, &pax, &name)?;
                rfs::fchmod(&fd, perm).map_err(entry_err(&name, "cannot set mode"))?;
                self.dir_times.push((PathBuf::new(), times));
            }
            return Ok(());
        };
        let file_name = path.file_name().expect("cleaned name has a last component");
        let fname = file_name.as_bytes();
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();

        // Whiteouts.
        if self.opts.whiteouts && fname == WHITEOUT_OPAQUE.as_bytes() {
            let dir = self.parent(&parent, &name)?;
            rfs::fsetxattr(dir, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(entry_err(&name, "cannot mark directory opaque"))?;
            return Ok(());
        }
        if let Some(hidden) = fname
            .strip_prefix(WHITEOUT_PREFIX.as_bytes())
            .filter(|_| self.opts.whiteouts)
        {
            if hidden.starts_with(b".wh.") || hidden.is_empty() {
                // aufs metadata such as .wh..wh.plnk: not part of the image.
                return Ok(());
            }
            if hidden == b"." || hidden == b".." {
                // It would remove the directory itself, or its parent.
                return Err(LayerError::Breakout {
                    entry: name.to_string(),
                    reason: "a whiteout of \".\" or \"..\" names no file of the layer",
                });
            }
            let hidden = OsStr::from_bytes(hidden).to_os_string();
            let target = parent.join(&hidden);
            self.invalidate(&target);
            let dir = self.parent(&parent, &name)?;
            remove_existing(dir, &hidden, &name)?;
            rfs::mknodat(
                dir,
                &hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rfs::makedev(0, 0),
            )
            .map_err(entry_err(&name, "cannot create whiteout"))?;
            return Ok(());
        }

        let file_name = file_name.to_os_string();
        if !kind.is_dir() {
            self.invalidate(&path);
        }

        match kind {
            tar::EntryType::Directory => {
                let dir = self.parent(&parent, &name)?;
                // Most directories are new: what is there is looked at only
                // when the mkdir finds it.
                match rfs::mkdirat(dir, &file_name, Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        match rfs::statat(dir, &file_name, AtFlags::SYMLINK_NOFOLLOW) {
                            Ok(st)
                                if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                            Ok(_) => {
                                remove_existing(dir, &file_name, &name)?;
                                self.cached = None;
                                let dir = self.parent(&parent, &name)?;
                                rfs::mkdirat(dir, &file_name, Mode::from_raw_mode(0o700))
                                    .map_err(entry_err(&name, "cannot create directory"))?;
                            }
                            Err(e) => return Err(entry_err(&name, "cannot stat")(e)),
                        }
                    }
                    Err(e) => return Err(entry_err(&name, "cannot create directory")(e)),
                }
                let dir = self.parent(&parent, &name)?;
                let fd = rfs::openat(
                    dir,
                    &file_name,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(entry_err(&name, "cannot open directory"))?;
                set_meta(&fd, &e, &pax, &name)?;
                rfs::fchmod(&fd, perm).map_err(entry_err(&name, "cannot set mode"))?;
                self.dir_times.push((path, times));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                if kind == tar::EntryType::GNUSparse {
                    return Err(LayerError::UnsupportedEntry {
                        entry: name,
                        kind: b'S',
                    });
                }
                let expected = e.header().size().map_err(LayerError::Stream)?;
                self.refuse_dir_replace(&parent, &file_name, &name)?;
                let dir = self.parent(&parent, &name)?;
                let create = |dir: &OwnedFd| {
                    rfs::openat(
                        dir,
                        &file_name,
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::WRONLY
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                };
                // Most names are new: what is there is removed only when
                // the create finds it.
                let fd = match create(dir) {
                    Err(Errno::EXIST) => {
                        remove_existing(dir, &file_name, &name)?;
                        create(dir)
                    }
                    r => r,
                }
                .map_err(entry_err(&name, "cannot create file"))?;
                let mut file = File::from(fd);
                let got = copy_content(&mut e, &mut file, &mut self.buf, &mut self.unchecked)
                    .map_err(|source| LayerError::Entry {
                        entry: name.clone(),
                        what: "cannot write file content".into(),
                        source,
                    })?;
                if got != expected {
                    return Err(LayerError::TruncatedEntry {
                        entry: name,
                        expected,
                        got,
                    });
                }
                self.content_size += got;
                set_meta(&file, &e, &pax, &name)?;
                // chown clears set-id bits, so the mode comes after it.
                rfs::fchmod(&file, perm).map_err(entry_err(&name, "cannot set mode"))?;
                rfs::futimens(&file, &times).map_err(entry_err(&name, "cannot set times"))?;
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name()
                    .map_err(LayerError::Stream)?
                    .ok_or_else(|| LayerError::Entry {
                        entry: name.clone(),
                        what: "symlink has no target".into(),
                        source: io::ErrorKind::InvalidData.into(),
                    })?
                    .into_owned();
                if !self.opts.links_anywhere
                    && !target.is_absolute()
                    && resolve_lexically(&parent, &target).is_none()
                {
                    return Err(LayerError::Breakout {
                        entry: name,
                        reason: "symlink target climbs above the layer root",
                    });
                }
                self.refuse_dir_replace(&parent, &file_name, &name)?;
                let dir = self.parent(&parent, &name)?;
                match rfs::symlinkat(&target, dir, &file_name) {
                    Err(Errno::EXIST) => {
                        remove_existing(dir, &file_name, &name)?;
                        rfs::symlinkat(&target, dir, &file_name)
                    }
                    r => r,
                }
                .map_err(entry_err(&name, "cannot create symlink"))?;
                let (uid, gid) = owner(&e)?;
                rfs::chownat(
                    dir,
                    &file_name,
                    Some(uid),
                    Some(gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(entry_err(&name, "cannot set owner"))?;
                self.set_xattrs_at(&parent, &file_name, &pax, &name)?;
                let dir = self.parent(&parent, &name)?;
                rfs::utimensat(dir, &file_name, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(entry_err(&name, "cannot set times"))?;
                // lstat's size of a symlink, which docker's Size includes.
                self.content_size += target.as_os_str().len() as u64;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name()
                    .map_err(LayerError::Stream)?
                    .ok_or_else(|| LayerError::Entry {
                        entry: name.clone(),
                        what: "hardlink has no target".into(),
                        source: io::ErrorKind::InvalidData.into(),
                    })?
                    .into_owned();
                let Some(target) = resolve_lexically(Path::new(""), &target) else {
                    return Err(LayerError::Breakout {
                        entry: name,
                        reason: "hardlink target climbs above the layer root",
                    });
                };
                let Some(target_name) = target.file_name().map(OsStr::to_os_string) else {
                    return Err(LayerError::Breakout {
                        entry: name,
                        reason: "hardlink target is the layer root",
                    });
                };
                let target_dir = self.open_dir(target.parent().unwrap_or(Path::new("")), &name)?;
                let dir = self.parent(&parent, &name)?;
                if target != path {
                    remove_existing(dir, &file_name, &name)?;
                }
                rfs::linkat(&target_dir, &target_name, dir, &file_name, AtFlags::empty())
                    .map_err(entry_err(&name, format!("cannot link to {target:?}")))?;
            }
            tar::EntryType::Char | tar::EntryType::Block if self.opts.host_safe => {
                tracing::warn!(entry = %name, "device node not copied to the host");
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = e.header().device_major().ok().flatten().unwrap_or(0);
                let minor = e.header().device_minor().ok().flatten().unwrap_or(0);
                let dir = self.parent(&parent, &name)?;
                remove_existing(dir, &file_name, &name)?;
                rfs::mknodat(
                    dir,
                    &file_name,
                    file_type,
                    Mode::from_raw_mode(0o600),
                    rfs::makedev(major, minor),
                )
                .map_err(entry_err(&name, "cannot create device node"))?;
                let fd = rfs::openat(
                    dir,
                    &file_name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(entry_err(&name, "cannot open device node"))?;
                let (uid, gid) = owner(&e)?;
                rfs::chownat(
                    dir,
                    &file_name,
                    Some(uid),
                    Some(gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(entry_err(&name, "cannot set owner"))?;
                rfs::chmodat(dir, &file_name, perm, AtFlags::empty())
                    .map_err(entry_err(&name, "cannot set mode"))?;
                drop(fd);
                self.set_xattrs_at(&parent, &file_name, &pax, &name)?;
                let dir = self.parent(&parent, &name)?;
                rfs::utimensat(dir, &file_name, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(entry_err(&name, "cannot set times"))?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            other => {
                return Err(LayerError::UnsupportedEntry {
                    entry: name,
                    kind: other.as_byte(),
                })
            }
        }
        Ok(())
    }

    /// Extended attributes of a symlink or device node, through its path.
    fn set_xattrs_at(
        &mut self,
        parent: &Path,
        file_name: &OsStr,
        pax: &Pax,
        name: &str,
    ) -> Result<(), LayerError> {
        if pax.xattrs.is_empty() {
            return Ok(());
        }
        let dir = self.parent(parent, name)?;
        let proc_path = Path::new("/proc/self/fd")
            .join(rustix::fd::AsRawFd::as_raw_fd(dir).to_string())
            .join(file_name);
        for (key, value) in &pax.xattrs {
            set_xattr_result(
                rfs::lsetxattr(&proc_path, key, value, XattrFlags::empty()),
                name,
                key,
            )?;
        }
        Ok(())
    }

    /// Sets directory times last, deepest first, so that creating children
    /// does not disturb them.
    fn finish(&mut self) -> Result<(), LayerError> {
        self.cached = None;
        let dirs = std::mem::take(&mut self.dir_times);
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        for (path, times) in dirs.iter().rev() {
            let name = path.to_string_lossy();
            let rel = if path.as_os_str().is_empty() {
                Path::new(".")
            } else {
                path.as_path()
            };
            let fd = match openat2_retry(&self.root, rel, flags, Mode::empty(), resolve) {
                Ok(fd) => fd,
                // Replaced or removed by a later entry.
                Err(Errno::NOTDIR | Errno::NOENT) => continue,
                Err(e) => return Err(entry_err(&name, "cannot open directory")(e)),
            };
            rfs::futimens(&fd, times).map_err(entry_err(&name, "cannot set times"))?;
        }
        Ok(())
    }
}

/// Copies a file's content in large writes (io::copy's 8 KiB would make
/// a write call per 8 KiB); returns the count. Every [`SPACE_CHECK`] bytes
/// (counted in `unchecked`, across files) the file system's free space is
/// checked against the reserve.
fn copy_content(
    from: &mut impl Read,
    to: &mut File,
    buf: &mut Vec<u8>,
    unchecked: &mut u64,
) -> io::Result<u64> {
    use std::io::Write as _;
    if buf.is_empty() {
        buf.resize(CHUNK, 0);
    }
    let mut total = 0u64;
    loop {
        let n = read_full(from, buf)?;
        if n == 0 {
            return Ok(total);
        }
        to.write_all(&buf[..n])?;
        total += n as u64;
        *unchecked += n as u64;
        if *unchecked >= SPACE_CHECK {
            *unchecked = 0;
            check_free_space(to)?;
        }
    }
}

/// How many bytes an extraction writes between two looks at the free
/// space.
const SPACE_CHECK: u64 = 8 << 20;

/// The free space an extraction leaves on the store's file system:
/// `BERTH_MIN_FREE` (bytes, or with a k/m/g suffix), else 1 GiB or 2% of
/// the file system, whichever is smaller. Docker has none and fills the
/// disk; a layer (a gzip bomb: 4 MiB that unpack to gigabytes) stops here
/// with an error instead, and its partial snapshot is removed.
fn reserve(fs_size: u64) -> u64 {
    static SET: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let set = *SET.get_or_init(|| {
        std::env::var("BERTH_MIN_FREE")
            .ok()
            .and_then(|v| crate::units::parse_size(&v).ok())
    });
    set.unwrap_or_else(|| (1u64 << 30).min(fs_size / 50))
}

fn check_free_space(on: &File) -> io::Result<()> {
    let st = rfs::fstatvfs(on)?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let size = st.f_blocks.saturating_mul(st.f_frsize);
    let keep = reserve(size);
    if free < keep {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "the store's file system is down to {} MiB free, under the {} MiB berth keeps free: \
                 free some space (berth image prune, system prune) or set BERTH_MIN_FREE",
                free >> 20,
                keep >> 20
            ),
        ));
    }
    Ok(())
}

/// Owner and extended attributes through an fd.
fn set_meta<R: Read>(
    fd: impl AsFd,
    e: &tar::Entry<'_, R>,
    pax: &Pax,
    name: &str,
) -> Result<(), LayerError> {
    let (uid, gid) = owner(e)?;
    rfs::fchown(&fd, Some(uid), Some(gid)).map_err(entry_err(name, "cannot set owner"))?;
    for (key, value) in &pax.xattrs {
        set_xattr_result(
            rfs::fsetxattr(&fd, key, value, XattrFlags::empty()),
            name,
            key,
        )?;
    }
    Ok(())
}

fn owner<R: Read>(e: &tar::Entry<'_, R>) -> Result<(rfs::Uid, rfs::Gid), LayerError> {
    let h = e.header();
    let uid = h.uid().map_err(LayerError::Stream)?;
    let gid = h.gid().map_err(LayerError::Stream)?;
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Err(LayerError::Entry {
            entry: e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            what: format!("owner {uid}:{gid} is out of range"),
            source: io::ErrorKind::InvalidData.into(),
        });
    };
    if uid == u32::MAX || gid == u32::MAX {
        return Err(LayerError::Entry {
            entry: e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            what: "owner -1 is not a valid id".into(),
            source: io::ErrorKind::InvalidData.into(),
        });
    }
    Ok((rfs::Uid::from_raw(uid), rfs::Gid::from_raw(gid)))
}

/// What an entry's PAX records add to its header: a precise mtime and
/// extended attributes (`SCHILY.xattr.*`), minus the overlay's own
/// attributes, which a layer must never be able to forge.
#[derive(Default)]
struct Pax {
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn read_pax<R: Read>(e: &mut tar::Entry<'_, R>) -> Result<Pax, LayerError> {
    let mut pax = Pax::default();
    let Some(exts) = e.pax_extensions().map_err(LayerError::Stream)? else {
        return Ok(pax);
    };
    for ext in exts {
        let ext = ext.map_err(LayerError::Stream)?;
        let key = ext.key_bytes();
        if key == b"mtime" {
            pax.mtime = ext.value().ok().and_then(pax_mtime);
        } else if let Some(attr) = key.strip_prefix(b"SCHILY.xattr.") {
            let attr = String::from_utf8_lossy(attr).into_owned();
            if attr.starts_with("trusted.overlay.") {
                continue;
            }
            pax.xattrs.push((attr, ext.value_bytes().to_vec()));
        }
    }
    Ok(pax)
}

fn set_xattr_result(r: rustix::io::Result<()>, entry: &str, key: &str) -> Result<(), LayerError> {
    match r {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP) => {
            tracing::warn!(
                entry,
                key,
                "file system does not support this xattr; skipped"
            );
            Ok(())
        }
        Err(e) => Err(entry_err(entry, format!("cannot set xattr {key}"))(e)),
    }
}

/// Removes whatever is at `name` in `dir` (a file, link, or a whole
/// directory tree), so that an entry can take its place.
fn remove_existing(dir: &OwnedFd, name: &OsStr, entry: &str) -> Result<(), LayerError> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => {
            remove_tree_at(dir, name).map_err(entry_err(entry, "cannot replace directory"))
        }
        Err(e) => Err(entry_err(entry, "cannot replace existing file")(e)),
    }
}

/// Recursively removes directory `name` under `dir` without following
/// symlinks, and never leaving `dir`: `name` is one component, resolved
/// beneath `dir` (`.`, `..` and links are refused with EXDEV/ELOOP/EINVAL).
pub(crate) fn remove_tree_at(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<()> {
    let n = name.as_bytes();
    if n.is_empty() || n == b"." || n == b".." || n.contains(&b'/') {
        return Err(Errno::INVAL);
    }
    let sub = openat2_retry(
        dir,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        rfs::ResolveFlags::BENEATH
            | rfs::ResolveFlags::NO_SYMLINKS
            | rfs::ResolveFlags::NO_MAGICLINKS,
    )?;
    let mut children = Vec::new();
    for ent in rfs::Dir::read_from(&sub)? {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        children.push((OsStr::from_bytes(n).to_os_string(), ent.file_type()));
    }
    for (child, ft) in children {
        if ft == FileType::Directory {
            remove_tree_at(&sub, &child)?;
        } else {
            match rfs::unlinkat(&sub, &child, AtFlags::empty()) {
                Err(Errno::ISDIR) => remove_tree_at(&sub, &child)?,
                r => r?,
            }
        }
    }
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

/// Removes a whole directory tree by path (used to drop half-written
/// snapshots).
pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    let dir = rfs::openat(
        CWD,
        parent,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    match remove_tree_at(&dir, name) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Total apparent size of regular files and symlinks under `path`, by inode
/// (hardlinks counted once), as docker computes a layer's Size.
pub fn tree_size(path: &Path) -> io::Result<u64> {
    let mut seen = HashMap::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for ent in std::fs::read_dir(&dir)? {
            let ent = ent?;
            let md = ent.metadata()?;
            if md.is_dir() {
                stack.push(ent.path());
            } else if md.is_file() || md.is_symlink() {
                use std::os::unix::fs::MetadataExt;
                if seen.insert((md.dev(), md.ino()), ()).is_none() {
                    total += md.len();
                }
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    /// Builds a tar in memory, writing names into the header bytes directly
    /// so that hostile names ("../x", "/abs") can be expressed.
    struct TarBuf {
        b: tar::Builder<Vec<u8>>,
    }

    impl TarBuf {
        fn new() -> Self {
            TarBuf {
                b: tar::Builder::new(Vec::new()),
            }
        }

        fn entry(
            &mut self,
            name: &str,
            kind: tar::EntryType,
            mode: u32,
            link: &str,
            data: &[u8],
        ) -> &mut Self {
            self.entry_owned(name, kind, mode, link, data, (0, 0), 1_600_000_000)
        }

        #[allow(clippy::too_many_arguments)]
        fn entry_owned(
            &mut self,
            name: &str,
            kind: tar::EntryType,
            mode: u32,
            link: &str,
            data: &[u8],
            owner: (u64, u64),
            mtime: u64,
        ) -> &mut Self {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(owner.0);
            h.set_gid(owner.1);
            h.set_mtime(mtime);
            h.set_size(data.len() as u64);
            {
                let old = h.as_old_mut();
                old.name = [0; 100];
                old.name[..name.len()].copy_from_slice(name.as_bytes());
                old.linkname = [0; 100];
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_cksum();
            self.b.append(&h, data).unwrap();
            self
        }

        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            self.b
                .append_pax_extensions(records.iter().copied())
                .unwrap();
            self
        }

        fn finish(&mut self) -> Vec<u8> {
            std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()))
                .into_inner()
                .unwrap()
        }
    }

    use tar::EntryType as T;

    fn apply_to(data: &[u8]) -> (tempfile::TempDir, Result<Applied, LayerError>) {
        let dir = tempfile::tempdir().unwrap();
        let r = apply(data, dir.path(), None);
        (dir, r)
    }

    #[test]
    fn preserves_metadata_links_and_special_files() {
        let tar = TarBuf::new()
            .entry("./", T::Directory, 0o755, "", b"")
            .entry_owned("usr/", T::Directory, 0o750, "", b"", (0, 0), 1_500_000_000)
            .entry_owned(
                "usr/bin/su",
                T::Regular,
                0o4755,
                "",
                b"setuid",
                (0, 0),
                1_600_000_001,
            )
            .entry_owned(
                "usr/owned",
                T::Regular,
                0o640,
                "",
                b"x",
                (1234, 4321),
                1_600_000_002,
            )
            .entry("usr/hard", T::Link, 0o640, "usr/owned", b"")
            .entry("usr/sym", T::Symlink, 0o777, "../etc/target", b"")
            .entry("usr/abs", T::Symlink, 0o777, "/etc/localtime", b"")
            .entry("dev/fifo", T::Fifo, 0o600, "", b"")
            .entry("dev/null", T::Char, 0o666, "", b"")
            .entry_owned(
                "sgid/",
                T::Directory,
                0o2775,
                "",
                b"",
                (0, 50),
                1_400_000_000,
            )
            .pax(&[
                ("SCHILY.xattr.user.test", b"v1"),
                ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ])
            .entry("usr/xattr", T::Regular, 0o644, "", b"")
            .pax(&[("mtime", b"1600000003.5")])
            .entry("usr/nanos", T::Regular, 0o644, "", b"")
            .finish();
        let (dir, r) = apply_to(&tar);
        let applied = r.unwrap();
        assert_eq!(applied.diff_size, tar.len() as u64);
        assert_eq!(applied.diff_id, Digest::sha256_of(&tar));
        let p = dir.path();
        // Docker's Size: file bytes ("setuid", "x"; the hardlink once) plus
        // symlink target lengths; directories and devices count nothing.
        let size = (6 + 1 + "../etc/target".len() + "/etc/localtime".len()) as u64;
        assert_eq!(applied.content_size, size);
        assert_eq!(tree_size(p).unwrap(), size);
        let su = fs::metadata(p.join("usr/bin/su")).unwrap();
        assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(su.mtime(), 1_600_000_001);
        let owned = fs::metadata(p.join("usr/owned")).unwrap();
        assert_eq!(
            (owned.uid(), owned.gid(), owned.mode() & 0o777),
            (1234, 4321, 0o640)
        );
        assert_eq!(fs::metadata(p.join("usr/hard")).unwrap().ino(), owned.ino());
        assert_eq!(
            fs::read_link(p.join("usr/sym")).unwrap(),
            Path::new("../etc/target")
        );
        assert_eq!(
            fs::read_link(p.join("usr/abs")).unwrap(),
            Path::new("/etc/localtime")
        );
        assert!(fs::symlink_metadata(p.join("dev/fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert!(fs::symlink_metadata(p.join("dev/null"))
            .unwrap()
            .file_type()
            .is_char_device());
        let sgid = fs::metadata(p.join("sgid")).unwrap();
        assert_eq!((sgid.mode() & 0o7777, sgid.gid()), (0o2775, 50));
        let usr = fs::metadata(p.join("usr")).unwrap();
        assert_eq!(
            (usr.mode() & 0o777, usr.mtime()),
            (0o750, 1_500_000_000),
            "directory times are set after children"
        );
        let mut buf = [0u8; 16];
        let n = rfs::getxattr(p.join("usr/xattr"), "user.test", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"v1");
        assert!(
            rfs::getxattr(
                p.join("usr/xattr"),
                "trusted.overlay.redirect",
                &mut buf[..]
            )
            .is_err(),
            "overlay xattrs are never taken from a layer"
        );
        let nanos = fs::metadata(p.join("usr/nanos")).unwrap();
        assert_eq!(
            (nanos.mtime(), nanos.mtime_nsec()),
            (1_600_000_003, 500_000_000)
        );
    }

    /// `.wh..` and `.wh...` would remove the entry's own directory or its
    /// parent (a docker-archive's staging directory has the store's
    /// `tmp/` as its parent, where other loads are staging): refused, with
    /// nothing outside the layer touched.
    #[test]
    fn whiteouts_of_dot_and_dotdot_are_refused() {
        for name in [".wh..", ".wh...", "a/.wh..", "a/.wh...", "a/b/.wh..."] {
            let outer = tempfile::tempdir().unwrap();
            fs::create_dir_all(outer.path().join("victim")).unwrap();
            fs::write(outer.path().join("victim/file"), b"x").unwrap();
            let root = outer.path().join("layer");
            fs::create_dir(&root).unwrap();
            let tar = TarBuf::new()
                .entry("a/", T::Directory, 0o755, "", b"")
                .entry("a/b/", T::Directory, 0o755, "", b"")
                .entry("a/keep", T::Regular, 0o644, "", b"k")
                .entry(name, T::Regular, 0o644, "", b"")
                .finish();
            let r = apply(&tar[..], &root, None);
            match r {
                Err(LayerError::Breakout { entry, .. }) => {
                    assert!(entry.contains(".wh."), "{entry}")
                }
                other => panic!("{name}: {other:?}"),
            }
            assert!(
                outer.path().join("victim/file").exists(),
                "{name} removed outside the layer"
            );
            assert!(
                root.join("a/keep").exists(),
                "{name} removed the layer's own files"
            );
        }
    }

    #[test]
    fn reserve_sizes_parse_with_units() {}

    /// The tree removal cannot be pointed out of its directory.
    #[test]
    fn tree_removal_stays_beneath_its_directory() {
        let outer = tempfile::tempdir().unwrap();
        fs::create_dir_all(outer.path().join("in/sub")).unwrap();
        fs::write(outer.path().join("sibling"), b"x").unwrap();
        std::os::unix::fs::symlink("..", outer.path().join("in/up")).unwrap();
        let dir = rfs::open(
            outer.path().join("in"),
            OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        for bad in ["..", ".", "", "sub/..", "up"] {
            assert!(
                remove_tree_at(&dir, OsStr::new(bad)).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(outer.path().join("sibling").exists());
        remove_tree_at(&dir, OsStr::new("sub")).unwrap();
        assert!(!outer.path().join("in/sub").exists());
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let tar = TarBuf::new()
            .entry("etc/.wh.passwd", T::Regular, 0o644, "", b"")
            .entry("var/cache/.wh..wh..opq", T::Regular, 0o644, "", b"")
            .entry(".wh..wh.plnk", T::Directory, 0o700, "", b"")
            .entry("var/.wh-lookalike", T::Regular, 0o644, "", b"x")
            .finish();
        let (dir, r) = apply_to(&tar);
        r.unwrap();
        let p = dir.path();
        let wh = fs::symlink_metadata(p.join("etc/passwd")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!p.join("etc/.wh.passwd").exists());
        let mut buf = [0u8; 4];
        let n = rfs::getxattr(p.join("var/cache"), OVERLAY_OPAQUE_XATTR, &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"y");
        assert!(!p.join(".wh..wh.plnk").exists());
        assert!(p.join("var/.wh-lookalike").is_file());
    }

    #[test]
    fn refuses_entries_that_leave_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "../escape",
                TarBuf::new()
                    .entry("../escape", T::Regular, 0o644, "", b"x")
                    .finish(),
            ),
            (
                "a/../../escape",
                TarBuf::new()
                    .entry("a/../../escape", T::Regular, 0o644, "", b"x")
                    .finish(),
            ),
            (
                "/abs",
                TarBuf::new()
                    .entry("/abs", T::Regular, 0o644, "", b"x")
                    .finish(),
            ),
            (
                "climb",
                TarBuf::new()
                    .entry("d/climb", T::Symlink, 0o777, "../../../x", b"")
                    .finish(),
            ),
            (
                "hard",
                TarBuf::new()
                    .entry("hard", T::Link, 0o644, "../../etc/passwd", b"")
                    .finish(),
            ),
        ];
        for (name, tar) in cases {
            let (dir, r) = apply_to(&tar);
            let err = r.expect_err(name).to_string();
            assert!(err.contains(name), "{err:?} does not name {name:?}");
            assert!(err.contains("outside the layer directory"), "{err}");
            assert!(!dir.path().parent().unwrap().join("escape").exists());
        }
        // A symlink to an existing host directory, then a write through it:
        // resolved as if chrooted, the target does not exist in the layer,
        // so the entry fails and nothing reaches the host.
        let tar = TarBuf::new()
            .entry(
                "evil",
                T::Symlink,
                0o777,
                outside.path().to_str().unwrap(),
                b"",
            )
            .entry("evil/victim", T::Regular, 0o644, "", b"pwned")
            .finish();
        let (_dir, r) = apply_to(&tar);
        let err = r.unwrap_err().to_string();
        assert!(err.contains("evil/victim"), "{err}");
        assert!(!victim.exists(), "written through a symlink to the host");
        // A symlink to "/" then a write through it lands inside the root.
        let tar = TarBuf::new()
            .entry("up", T::Symlink, 0o777, "/", b"")
            .entry("up/etc/hosts-x", T::Regular, 0o644, "", b"pwned")
            .finish();
        let (dir, r) = apply_to(&tar);
        r.unwrap();
        assert!(!Path::new("/etc/hosts-x").exists());
        assert_eq!(fs::read(dir.path().join("etc/hosts-x")).unwrap(), b"pwned");
    }

    #[test]
    fn checks_diff_id_and_reports_bad_streams() {
        let tar = TarBuf::new()
            .entry("f", T::Regular, 0o644, "", &[7u8; 5000])
            .finish();
        let dir = tempfile::tempdir().unwrap();
        let wrong = Digest::sha256_of(b"other");
        let err = apply(&tar[..], dir.path(), Some(&wrong)).unwrap_err();
        assert!(matches!(err, LayerError::DiffIdMismatch { .. }), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let err = apply(&tar[..1024], dir.path(), None).unwrap_err();
        assert!(
            matches!(
                err,
                LayerError::TruncatedEntry { .. } | LayerError::Stream(_)
            ),
            "{err}"
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let mut gz = gz.finish().unwrap();
        let good = gz.clone();
        let dir = tempfile::tempdir().unwrap();
        let applied = apply(&good[..], dir.path(), Some(&Digest::sha256_of(&tar))).unwrap();
        assert_eq!(applied.content_size, 5000);
        let mid = gz.len() / 2;
        gz[mid] ^= 0xff;
        gz[mid + 1] ^= 0xff;
        let dir = tempfile::tempdir().unwrap();
        assert!(apply(&gz[..], dir.path(), Some(&Digest::sha256_of(&tar))).is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(
            apply(&good[..good.len() / 2], dir.path(), None).is_err(),
            "truncated gzip"
        );

        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        apply(&zst[..], dir.path(), Some(&Digest::sha256_of(&tar))).unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), vec![7u8; 5000]);
    }

    /// The threaded unpack (decompressor, hasher and extractor apart):
    /// layers spanning many chunks land whole with the right diff_id, and
    /// broken or hostile streams end in an error, never a hang.
    #[test]
    fn threaded_unpack_checks_and_ends_on_bad_streams() {
        let big: Vec<u8> = (0..3 * CHUNK + 123).map(|i| (i * 7 % 251) as u8).collect();
        let mut t = TarBuf::new();
        t.entry("d/", T::Directory, 0o755, "", b"");
        for i in 0..50 {
            t.entry(&format!("d/f{i}"), T::Regular, 0o644, "", &big[..i * 1000]);
        }
        t.entry("d/big", T::Regular, 0o600, "", &big);
        let tar = t.finish();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let raw = |input: &[u8]| {
            let dir = tempfile::tempdir().unwrap();
            let r = apply_raw(
                input,
                dir.path(),
                Algorithm::Sha256,
                false,
                ApplyOptions::LAYER,
            );
            (dir, r)
        };
        for input in [&tar[..], &gz[..]] {
            let (dir, r) = raw(input);
            let (size, diff) = r.unwrap();
            assert_eq!(diff, Some((Digest::sha256_of(&tar), tar.len() as u64)));
            assert_eq!(
                size,
                big.len() as u64 + (0..50).map(|i| i * 1000).sum::<usize>() as u64
            );
            assert_eq!(fs::read(dir.path().join("d/big")).unwrap(), big);
            assert_eq!(fs::read(dir.path().join("d/f49")).unwrap(), &big[..49_000]);
        }
        // A plain tar its caller hashes is not hashed again.
        let dir = tempfile::tempdir().unwrap();
        let r = apply_raw(
            &tar[..],
            dir.path(),
            Algorithm::Sha256,
            true,
            ApplyOptions::LAYER,
        );
        assert!(matches!(r, Ok((_, None))));

        // Corrupt or truncated gzip: an error from the stream.
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        for b in &mut bad[mid..mid + 64] {
            *b ^= 0x5a;
        }
        assert!(raw(&bad).1.is_err(), "corrupt gzip");
        assert!(raw(&gz[..gz.len() - 100]).1.is_err(), "truncated gzip");

        // An entry refused early, with megabytes still to come: the
        // extractor's error, and every thread ends.
        let mut t = TarBuf::new();
        t.entry("../escape", T::Regular, 0o644, "", b"x");
        t.entry("after", T::Regular, 0o644, "", &big);
        t.entry("after2", T::Regular, 0o644, "", &big);
        let hostile = t.finish();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &hostile).unwrap();
        let gz = gz.finish().unwrap();
        for input in [&hostile[..], &gz[..]] {
            let err = raw(input).1.unwrap_err();
            assert!(matches!(err, LayerError::Breakout { .. }), "{err}");
        }
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let tar = TarBuf::new()
            .entry("x/", T::Directory, 0o755, "", b"")
            .entry("x/child", T::Regular, 0o644, "", b"1")
            .entry("x", T::Regular, 0o644, "", b"file now")
            .entry("y", T::Regular, 0o644, "", b"old")
            .entry("y", T::Symlink, 0o777, "x", b"")
            .finish();
        let (dir, r) = apply_to(&tar);
        r.unwrap();
        assert_eq!(fs::read(dir.path().join("x")).unwrap(), b"file now");
        assert_eq!(fs::read_link(dir.path().join("y")).unwrap(), Path::new("x"));
    }
}
