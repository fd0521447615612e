//! `berth load`: OCI image layouts (directories or tars) and docker-archive
//! tars (what `docker save` writes) into the store.
//!
//! Everything is staged under the store's `tmp/` and checked (every digest,
//! every diff_id) before one commit makes it visible; a failed load leaves
//! the store as it was.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use rusqlite::params;
use rustix::fs::{self as rfs, Mode, OFlags};

use crate::digest::{Algorithm, Digest, HashingReader};
use crate::layer::{self, Compression, LayerError};
use crate::reference::Reference;
use crate::store::{self, chain_id, now_unix, LayerRecord, Store, StoreError, TempDir};

/// Why a load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot open {path:?}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot unpack the archive")]
    Archive(#[source] LayerError),
    /// The archive's own tar stream cannot be read. The parser's message is
    /// left out: it quotes the damaged header bytes.
    #[error("the input is not a readable tar archive ({0})")]
    NotTar(&'static str),
    #[error("not an image archive: found neither manifest.json (docker-archive) nor index.json (OCI layout)")]
    UnknownFormat,
    #[error("{file} in the archive: {what}")]
    Invalid { file: String, what: String },
    #[error("{file} in the archive is missing")]
    Missing {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error("{file} in the archive is not valid JSON for {what}")]
    Json {
        file: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file} in the archive is not valid as {what}")]
    Spec {
        file: String,
        what: &'static str,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("{file} in the archive does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        file: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("unsupported media type {media_type:?} for {what}")]
    MediaType {
        media_type: String,
        what: &'static str,
    },
    #[error("layer {index} ({file})")]
    Layer {
        index: usize,
        file: String,
        #[source]
        source: LayerError,
    },
    #[error("the index lists no image for linux/amd64")]
    NoPlatform,
    #[error("the archive holds no image")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One image a load added, with the tags it now carries.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub id: Digest,
    pub tags: Vec<Reference>,
}

/// The most layers an image may have: what overlayfs stacks in one mount
/// of a container's root, as Docker's limit (128). An image with more
/// could never run; it is refused before anything is unpacked.
pub const MAX_LAYERS: usize = 128;

fn check_layer_count(file: &str, n: usize) -> Result<(), LoadError> {
    if n > MAX_LAYERS {
        return Err(LoadError::Invalid {
            file: file.to_string(),
            what: format!(
                "the image has {n} layers, more than the {MAX_LAYERS} a container's root can stack: \
                 rebuild it with fewer layers (or flatten it: export and import)"
            ),
        });
    }
    Ok(())
}

/// Passes exactly `size` bytes on: a byte past it, or an end before it,
/// is an error at that byte (a descriptor's size is part of what it
/// promises, and bounds what a blob may cost).
pub struct SizedReader<R> {
    inner: R,
    size: u64,
    read: u64,
}

impl<R: Read> SizedReader<R> {
    pub fn new(inner: R, size: u64) -> Self {
        SizedReader {
            inner,
            size,
            read: 0,
        }
    }
}

impl<R: Read> Read for SizedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte more than is left is asked for, to see a longer blob.
        let want = buf.len().min((self.size - self.read + 1) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 && self.read < self.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the blob ends at byte {} but its descriptor's size is {}",
                    self.read, self.size
                ),
            ));
        }
        if self.read + n as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the blob is longer than its descriptor's size of {} bytes",
                    self.size
                ),
            ));
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// Where a load reads from.
pub enum Input<'a> {
    /// A tar file (possibly compressed) or an OCI layout directory.
    Path(&'a Path),
    /// A tar stream, such as standard input.
    Reader(Box<dyn Read + 'a>),
}

/// Loads every image in `input` into `store`.
pub fn load(store: &mut Store, input: Input<'_>) -> Result<Vec<Loaded>, LoadError> {
    let _lock = store.lock_shared()?;
    let staging = store.temp_dir()?;
    let (source_dir, _unpacked) = match input {
        Input::Path(p) if p.is_dir() => (p.to_path_buf(), None),
        Input::Path(p) => {
            let f = File::open(p).map_err(|source| LoadError::Open {
                path: p.to_path_buf(),
                source,
            })?;
            let dir = unpack_archive(store, f)?;
            (dir.path().to_path_buf(), Some(dir))
        }
        Input::Reader(r) => {
            let dir = unpack_archive(store, r)?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    let mut source = Source::open(&source_dir)?;
    source.owned = _unpacked.is_some();
    let mut stage = Stage::new(store, &staging);
    if source.exists("manifest.json") {
        docker_archive(&source, &mut stage)?;
    } else if source.exists("index.json") {
        oci_layout(&source, &mut stage)?;
    } else {
        return Err(LoadError::UnknownFormat);
    }
    if stage.images.is_empty() {
        return Err(LoadError::Empty);
    }
    Ok(stage.commit()?)
}

/// Unpacks an archive tar into a fresh temporary directory, with the same
/// safety rules as a layer.
fn unpack_archive(store: &Store, input: impl Read) -> Result<TempDir, LoadError> {
    let dir = store.temp_dir()?;
    layer::apply(input, dir.path(), None).map_err(|e| match e {
        LayerError::Stream(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            LoadError::NotTar("it ends early: truncated?")
        }
        LayerError::Stream(_) => LoadError::NotTar("corrupt data, or not a tar file"),
        other => LoadError::Archive(other),
    })?;
    Ok(dir)
}

/// Read access to an archive's files, resolved inside its directory.
struct Source {
    root: OwnedFd,
    /// Whether the directory is our own staging (an unpacked archive), whose
    /// files may be moved rather than copied.
    owned: bool,
}

impl Source {
    fn open(dir: &Path) -> Result<Source, LoadError> {
        let root = rfs::open(
            dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| LoadError::Open {
            path: dir.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Source { root, owned: false })
    }

    /// The real path of `file` when it lives in our own staging and is a
    /// single link (a hardlinked or symlinked layer shared by two images in
    /// a docker-archive is copied instead).
    fn owned_path(&self, file: &File) -> Option<PathBuf> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        if !self.owned || file.metadata().ok()?.nlink() != 1 {
            return None;
        }
        std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
    }

    fn file(&self, rel: &str) -> Result<File, LoadError> {
        let clean: PathBuf = Path::new(rel)
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        if clean.as_os_str().is_empty() {
            return Err(LoadError::Invalid {
                file: rel.to_string(),
                what: "empty file name".into(),
            });
        }
        let fd = inroot::open_in_root(&self.root, &clean, OFlags::RDONLY).map_err(|e| {
            LoadError::Missing {
                file: rel.to_string(),
                source: e.into(),
            }
        })?;
        let f = File::from(fd);
        match f.metadata() {
            Ok(m) if m.is_file() => Ok(f),
            _ => Err(LoadError::Invalid {
                file: rel.to_string(),
                what: "is not a regular file".into(),
            }),
        }
    }

    /// The path, relative to the archive's root, of the file `rel` leads
    /// to (its links followed, inside the root only); `rel` itself when it
    /// leads nowhere (the error comes when it is opened).
    fn canonical(&self, rel: &str) -> String {
        let resolved = (|| {
            let fd = inroot::open_in_root(&self.root, rel, OFlags::PATH).ok()?;
            let root = std::fs::read_link(inroot::fd_path(&self.root)).ok()?;
            let real = std::fs::read_link(inroot::fd_path(&fd)).ok()?;
            Some(
                real.strip_prefix(&root)
                    .ok()?
                    .to_string_lossy()
                    .into_owned(),
            )
        })();
        resolved
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| rel.to_string())
    }

    fn exists(&self, rel: &str) -> bool {
        self.file(rel).is_ok()
    }

    /// Reads a small JSON file whole.
    fn small(&self, rel: &str, limit: u64) -> Result<Vec<u8>, LoadError> {
        let mut buf = Vec::new();
        self.file(rel)?
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|source| LoadError::Missing {
                file: rel.to_string(),
                source,
            })?;
        if buf.len() as u64 > limit {
            return Err(LoadError::Invalid {
                file: rel.to_string(),
                what: format!("larger than the {limit}-byte limit"),
            });
        }
        Ok(buf)
    }

    /// Reads a blob of an OCI layout and checks its digest.
    fn blob(&self, d: &Digest, limit: u64) -> Result<Vec<u8>, LoadError> {
        let name = blob_name(d);
        let data = self.small(&name, limit)?;
        let actual = Digest::of(d.algorithm(), &data);
        if actual != *d {
            return Err(LoadError::DigestMismatch {
                file: name,
                expected: d.clone(),
                actual,
            });
        }
        Ok(data)
    }
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

fn parse_digest(file: &str, s: &str) -> Result<Digest, LoadError> {
    s.parse()
        .map_err(|e: crate::digest::DigestError| LoadError::Invalid {
            file: file.to_string(),
            what: e.to_string(),
        })
}

// ---- docker-archive -------------------------------------------------------

#[derive(serde::Deserialize)]
struct ArchiveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn docker_archive(source: &Source, stage: &mut Stage<'_>) -> Result<(), LoadError> {
    let raw = source.small("manifest.json", store::MANIFEST_LIMIT)?;
    let entries: Vec<ArchiveEntry> =
        serde_json::from_slice(&raw).map_err(|source| LoadError::Json {
            file: "manifest.json".into(),
            what: "a docker-archive manifest",
            source,
        })?;
    // `docker save` of images sharing a layer writes the later copies as
    // links (`ID/layer.tar -> ../OTHER/layer.tar`): every name becomes the
    // file it leads to inside the archive, found before any layer file is
    // moved into the store, so each shared file is used once and found by
    // every image.
    let canonical: Vec<Vec<String>> = entries
        .iter()
        .map(|e| e.layers.iter().map(|l| source.canonical(l)).collect())
        .collect();
    for (entry, layer_files) in entries.into_iter().zip(canonical) {
        let config = source.small(&entry.config, store::CONFIG_LIMIT)?;
        let config_digest = Digest::sha256_of(&config);
        let mut tags = Vec::new();
        for t in entry.repo_tags.unwrap_or_default() {
            tags.push(Reference::parse(&t).map_err(|e| LoadError::Invalid {
                file: "manifest.json".into(),
                what: e.to_string(),
            })?);
        }
        let layers = layer_files
            .into_iter()
            .map(|file| SourceLayer {
                file,
                digest: None,
                media_type: None,
            })
            .collect();
        stage.image(
            source,
            &entry.config,
            config,
            config_digest,
            layers,
            None,
            tags,
        )?;
    }
    Ok(())
}

// ---- OCI image layout ----------------------------------------------------

fn oci_layout(source: &Source, stage: &mut Stage<'_>) -> Result<(), LoadError> {
    if let Ok(layout) = source.small("oci-layout", 4096) {
        let v: serde_json::Value =
            serde_json::from_slice(&layout).map_err(|source| LoadError::Json {
                file: "oci-layout".into(),
                what: "an OCI layout header",
                source,
            })?;
        if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(LoadError::Invalid {
                file: "oci-layout".into(),
                what: "imageLayoutVersion is not 1.0.0".into(),
            });
        }
    }
    let raw = source.small("index.json", store::MANIFEST_LIMIT)?;
    let index = ImageIndex::from_reader(&raw[..]).map_err(|source| LoadError::Spec {
        file: "index.json".into(),
        what: "an OCI image index",
        source,
    })?;
    for desc in index.manifests() {
        let tags = descriptor_tags(desc)?;
        let Some((manifest_desc, manifest)) = resolve_manifest(source, desc, 0)? else {
            continue;
        };
        let (mbytes, mdigest, mtype) = manifest;
        let m = ImageManifest::from_reader(&mbytes[..]).map_err(|source| LoadError::Spec {
            file: blob_name(&mdigest),
            what: "an image manifest",
            source,
        })?;
        let _ = manifest_desc;
        check_config_type(m.config().media_type())?;
        let config_digest = parse_digest("manifest", m.config().digest().as_ref())?;
        let config = source.blob(&config_digest, store::CONFIG_LIMIT)?;
        let layers = m
            .layers()
            .iter()
            .map(|l| {
                let d = parse_digest("manifest", l.digest().as_ref())?;
                check_layer_type(l.media_type())?;
                Ok(SourceLayer {
                    file: blob_name(&d),
                    digest: Some((d, l.size())),
                    media_type: Some(l.media_type().to_string()),
                })
            })
            .collect::<Result<Vec<_>, LoadError>>()?;
        let name = blob_name(&config_digest);
        stage.image(
            source,
            &name,
            config,
            config_digest,
            layers,
            Some((mbytes, mdigest, mtype)),
            tags,
        )?;
    }
    Ok(())
}

type ManifestBytes = (Vec<u8>, Digest, String);

/// Follows a descriptor to an image manifest, choosing linux/amd64 in
/// indexes. `None` for descriptors of other platforms.
fn resolve_manifest(
    source: &Source,
    desc: &Descriptor,
    depth: u32,
) -> Result<Option<(Descriptor, ManifestBytes)>, LoadError> {
    if depth > 4 {
        return Err(LoadError::Invalid {
            file: "index.json".into(),
            what: "indexes nested too deeply".into(),
        });
    }
    let d = parse_digest("index.json", desc.digest().as_ref())?;
    let bytes = source.blob(&d, store::MANIFEST_LIMIT)?;
    match desc.media_type() {
        MediaType::ImageManifest => Ok(Some((
            desc.clone(),
            (bytes, d, desc.media_type().to_string()),
        ))),
        MediaType::Other(t) if t == DOCKER_MANIFEST => {
            Ok(Some((desc.clone(), (bytes, d, t.clone()))))
        }
        MediaType::ImageIndex => nested_index(source, &bytes, &d, depth),
        MediaType::Other(t) if t == DOCKER_MANIFEST_LIST => nested_index(source, &bytes, &d, depth),
        other => Err(LoadError::MediaType {
            media_type: other.to_string(),
            what: "an index entry",
        }),
    }
}

fn nested_index(
    source: &Source,
    bytes: &[u8],
    d: &Digest,
    depth: u32,
) -> Result<Option<(Descriptor, ManifestBytes)>, LoadError> {
    let index = ImageIndex::from_reader(bytes).map_err(|source| LoadError::Spec {
        file: blob_name(d),
        what: "an image index",
        source,
    })?;
    let mut any = false;
    for m in index.manifests() {
        let fits = match m.platform() {
            Some(p) => p.os().to_string() == "linux" && p.architecture().to_string() == "amd64",
            None => true,
        };
        if !fits {
            continue;
        }
        any = true;
        if let Some(found) = resolve_manifest(source, m, depth + 1)? {
            return Ok(Some(found));
        }
    }
    if any {
        Ok(None)
    } else {
        Err(LoadError::NoPlatform)
    }
}

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

fn check_config_type(t: &MediaType) -> Result<(), LoadError> {
    match t {
        MediaType::ImageConfig => Ok(()),
        MediaType::Other(s) if s == DOCKER_CONFIG => Ok(()),
        other => Err(LoadError::MediaType {
            media_type: other.to_string(),
            what: "an image config",
        }),
    }
}

fn check_layer_type(t: &MediaType) -> Result<(), LoadError> {
    match t {
        MediaType::ImageLayer
        | MediaType::ImageLayerGzip
        | MediaType::ImageLayerZstd
        | MediaType::ImageLayerNonDistributable
        | MediaType::ImageLayerNonDistributableGzip
        | MediaType::ImageLayerNonDistributableZstd => Ok(()),
        MediaType::Other(s)
            if s.starts_with("application/vnd.docker.image.rootfs.")
                && (s.ends_with("diff.tar.gzip") || s.ends_with("diff.tar")) =>
        {
            Ok(())
        }
        other => Err(LoadError::MediaType {
            media_type: other.to_string(),
            what: "a layer",
        }),
    }
}

/// Tags named by an index entry's annotations: `io.containerd.image.name`
/// (a full reference), else `org.opencontainers.image.ref.name` when it is a
/// whole reference rather than a bare tag.
fn descriptor_tags(desc: &Descriptor) -> Result<Vec<Reference>, LoadError> {
    let Some(ann) = desc.annotations() else {
        return Ok(Vec::new());
    };
    let name = ann.get("io.containerd.image.name").or_else(|| {
        ann.get("org.opencontainers.image.ref.name")
            .filter(|n| n.contains('/') || n.contains(':'))
    });
    match name {
        Some(n) => Ok(vec![Reference::parse(n).map_err(|e| {
            LoadError::Invalid {
                file: "index.json".into(),
                what: e.to_string(),
            }
        })?]),
        None => Ok(Vec::new()),
    }
}

// ---- staging and commit --------------------------------------------------

struct SourceLayer {
    file: String,
    /// Digest and size from a manifest, when there is one.
    digest: Option<(Digest, u64)>,
    media_type: Option<String>,
}

struct StagedSnapshot {
    chain_id: Digest,
    parent: Option<Digest>,
    diff_id: Digest,
    diff_size: u64,
    size: u64,
    dir: StagedDir,
}

/// Where a staged snapshot's files are.
enum StagedDir {
    /// Unpacked here, to become the snapshot's own directory.
    Unpacked(PathBuf),
    /// In the directory of the diff already unpacked (in the store, or
    /// earlier in this stage): a diff is unpacked once however many chains
    /// it appears in.
    Shared,
}

struct StagedImage {
    id: Digest,
    manifest_digest: Digest,
    manifest_media_type: String,
    created: Option<String>,
    size: u64,
    layers: Vec<LayerRecord>,
    tags: Vec<Reference>,
}

/// Work in progress: files under a temporary directory and the rows that
/// will describe them.
pub(crate) struct Stage<'s> {
    store: &'s mut Store,
    dir: PathBuf,
    counter: u64,
    blobs: HashMap<Digest, PathBuf>,
    /// Archive files already staged, by the blob they became.
    files_done: HashMap<String, Digest>,
    snapshots: Vec<StagedSnapshot>,
    images: Vec<StagedImage>,
    /// (blob, diff_id) pairs this stage unpacked and checked.
    verified: HashSet<(Digest, Digest)>,
}

impl<'s> Stage<'s> {
    pub(crate) fn new(store: &'s mut Store, tmp: &TempDir) -> Self {
        Stage {
            store,
            dir: tmp.path().to_path_buf(),
            counter: 0,
            blobs: HashMap::new(),
            files_done: HashMap::new(),
            snapshots: Vec::new(),
            images: Vec::new(),
            verified: HashSet::new(),
        }
    }

    fn next_path(&mut self, what: &str) -> PathBuf {
        self.counter += 1;
        self.dir.join(format!("{what}-{}", self.counter))
    }

    fn has_blob(&self, d: &Digest) -> bool {
        self.blobs.contains_key(d) || self.store.has_blob(d)
    }

    /// Stages small content already in memory.
    pub(crate) fn blob_bytes(&mut self, data: &[u8], alg: Algorithm) -> Result<Digest, LoadError> {
        let d = Digest::of(alg, data);
        if !self.has_blob(&d) {
            let path = self.next_path("blob");
            store::write_verified(data, &path, Some(&d))?;
            self.blobs.insert(d.clone(), path);
        }
        Ok(d)
    }

    fn snapshot_known(&self, chain: &Digest) -> Result<bool, LoadError> {
        Ok(self.snapshots.iter().any(|s| &s.chain_id == chain)
            || self.store.snapshot(chain)?.is_some())
    }

    /// The tar and content sizes of diff `diff_id` when it is already
    /// unpacked, in the store or in this stage.
    fn diff_unpacked(&self, diff_id: &Digest) -> Result<Option<(u64, u64)>, LoadError> {
        if let Some(s) = self
            .snapshots
            .iter()
            .find(|s| &s.diff_id == diff_id && matches!(s.dir, StagedDir::Unpacked(_)))
        {
            return Ok(Some((s.diff_size, s.size)));
        }
        Ok(self.store.diff_dir(diff_id)?.map(|(_, d, s)| (d, s)))
    }

    /// Records a layer without reading its blob when the store or this
    /// stage has it: the blob is present and either its chain is unpacked,
    /// or its diff is unpacked under another chain and the blob is known to
    /// be that diff (a pair some earlier unpack checked, never the config's
    /// word alone), whose directory the new chain then shares.
    pub(crate) fn reuse(
        &mut self,
        blob: &Digest,
        media_type: String,
        blob_size: u64,
        diff_id: &Digest,
        chain: &Digest,
        parent: Option<&Digest>,
    ) -> Result<Option<LayerRecord>, LoadError> {
        if !self.has_blob(blob) {
            return Ok(None);
        }
        if !self.snapshot_known(chain)? {
            let paired = self.verified.contains(&(blob.clone(), diff_id.clone()))
                || self.store.verified_pair(blob, diff_id)?;
            let Some((diff_size, size)) = paired
                .then(|| self.diff_unpacked(diff_id))
                .transpose()?
                .flatten()
            else {
                return Ok(None);
            };
            self.snapshots.push(StagedSnapshot {
                chain_id: chain.clone(),
                parent: parent.cloned(),
                diff_id: diff_id.clone(),
                diff_size,
                size,
                dir: StagedDir::Shared,
            });
        }
        Ok(Some(LayerRecord {
            blob_digest: blob.clone(),
            media_type,
            blob_size,
            diff_id: diff_id.clone(),
            chain_id: chain.clone(),
        }))
    }

    /// Stages one image: its config, each layer (copied and unpacked in one
    /// pass, every digest checked) and a manifest (given, or made in OCI
    /// form).
    #[allow(clippy::too_many_arguments)]
    fn image(
        &mut self,
        source: &Source,
        config_file: &str,
        config: Vec<u8>,
        config_digest: Digest,
        layers: Vec<SourceLayer>,
        manifest: Option<ManifestBytes>,
        tags: Vec<Reference>,
    ) -> Result<(), LoadError> {
        let parsed =
            ImageConfiguration::from_reader(&config[..]).map_err(|source| LoadError::Spec {
                file: config_file.to_string(),
                what: "an image config",
                source,
            })?;
        check_layer_count(config_file, layers.len())?;
        let diff_ids = parsed
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| parse_digest(config_file, d))
            .collect::<Result<Vec<_>, _>>()?;
        if diff_ids.len() != layers.len() {
            return Err(LoadError::Invalid {
                file: config_file.to_string(),
                what: format!(
                    "config lists {} layers (rootfs.diff_ids) but the manifest has {}",
                    diff_ids.len(),
                    layers.len()
                ),
            });
        }
        self.blob_bytes(&config, config_digest.algorithm())?;

        let mut records = Vec::new();
        let mut parent: Option<Digest> = None;
        for (index, (l, diff_id)) in layers.into_iter().zip(diff_ids).enumerate() {
            let chain = chain_id(parent.as_ref(), &diff_id);
            let record = self.layer(source, index, &l, &diff_id, &chain, parent.as_ref())?;
            records.push(record);
            parent = Some(chain);
        }
        self.add_image(
            config_digest,
            config.len() as u64,
            parsed.created().clone(),
            records,
            manifest,
            tags,
        )
    }

    fn layer(
        &mut self,
        source: &Source,
        index: usize,
        l: &SourceLayer,
        diff_id: &Digest,
        chain: &Digest,
        parent: Option<&Digest>,
    ) -> Result<LayerRecord, LoadError> {
        if let Some((d, size)) = &l.digest {
            let media_type = l.media_type.clone().unwrap_or_default();
            if let Some(r) = self.reuse(d, media_type, *size, diff_id, chain, parent)? {
                return Ok(r);
            }
        }
        // A layer file an earlier image of this archive already used may
        // have been moved into staging: read it from there.
        let (file, owned) = match self.files_done.get(&l.file) {
            Some(d) => {
                let path = self
                    .blobs
                    .get(d)
                    .cloned()
                    .unwrap_or_else(|| self.store.blob_path(d));
                let f = File::open(&path).map_err(|e| StoreError::Io { path, source: e })?;
                (f, None)
            }
            None => {
                let f = source.file(&l.file)?;
                let owned = source.owned_path(&f);
                (f, owned)
            }
        };
        let expected = l.digest.as_ref().map(|(d, _)| d);
        let file: Box<dyn Read + Send> = match &l.digest {
            Some((_, size)) => Box::new(SizedReader::new(file, *size)),
            None => Box::new(file),
        };
        let record = self.layer_from_reader(
            file,
            owned,
            expected,
            l.media_type.clone(),
            Some(diff_id),
            parent,
        );
        if let Ok(r) = &record {
            self.files_done
                .insert(l.file.clone(), r.blob_digest.clone());
        }
        record.map_err(|e| match e {
            LoadError::Layer { source, .. } => LoadError::Layer {
                index,
                file: l.file.clone(),
                source,
            },
            LoadError::DigestMismatch {
                expected, actual, ..
            } => LoadError::DigestMismatch {
                file: l.file.clone(),
                expected,
                actual,
            },
            other => other,
        })
    }

    /// Copies a layer blob from `input` into staging while unpacking it, in
    /// one pass, checking the blob digest (when `expected`) and the diff_id
    /// (when `diff_id`). When `owned` names the file `input` reads (a file
    /// in our own staging), it is moved into place instead of copied.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn layer_from_reader(
        &mut self,
        input: impl Read + Send,
        owned: Option<PathBuf>,
        expected: Option<&Digest>,
        media_type: Option<String>,
        diff_id: Option<&Digest>,
        parent: Option<&Digest>,
    ) -> Result<LayerRecord, LoadError> {
        let layer_err = |source| LoadError::Layer {
            index: 0,
            file: "-".into(),
            source,
        };
        let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        let blob_path = self.next_path("blob");
        let copy = match owned {
            Some(_) => None,
            None => {
                let f = File::create_new(&blob_path).map_err(|e| StoreError::Io {
                    path: blob_path.clone(),
                    source: e,
                })?;
                Some(io::BufWriter::with_capacity(
                    256 * 1024,
                    Writeback {
                        file: f,
                        written: 0,
                        started: 0,
                    },
                ))
            }
        };
        let snap_dir = self.next_path("snapshot");
        std::fs::create_dir(&snap_dir).map_err(|e| StoreError::Io {
            path: snap_dir.clone(),
            source: e,
        })?;
        // Three threads here: one reads the blob and hashes it; one writes
        // the store's copy; one unpacks it (apply_raw, which decompresses,
        // hashes the diff_id unless that is the blob's own digest, and
        // extracts on threads of its own). The chunks are shared, not
        // copied, and go back to their pool when done with.
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::sync::Arc<layer::Chunk>>(16);
        let (to_copy, copy_rx) = std::sync::mpsc::sync_channel::<std::sync::Arc<layer::Chunk>>(16);
        let pool = layer::ChunkPool::new(256 << 10, 40);
        let (produced, extracted, copied) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> io::Result<_> {
                let Some(mut copy) = copy else {
                    return Ok(None);
                };
                for chunk in copy_rx {
                    copy.write_all(&chunk)?;
                }
                Ok(Some(copy))
            });
            let copying = owned.is_none();
            let producer = scope.spawn(move || -> io::Result<_> {
                let mut hashing = HashingReader::new(
                    Tee::<_, io::Sink> {
                        inner: input,
                        copy: None,
                        head: Vec::new(),
                    },
                    algorithm,
                );
                let mut tx = Some(tx);
                let mut to_copy = copying.then_some(to_copy);
                loop {
                    let mut chunk = pool.get();
                    let n = loop {
                        match hashing.read(&mut chunk.data) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            r => break r?,
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    chunk.len = n;
                    let chunk = std::sync::Arc::new(chunk);
                    // A writer that failed says why when joined.
                    if to_copy
                        .as_ref()
                        .is_some_and(|t| t.send(chunk.clone()).is_err())
                    {
                        to_copy = None;
                    }
                    // The unpacker gave up: read on to the end anyway, for
                    // the digest that tells a wrong blob from a bad one.
                    if tx.as_ref().is_some_and(|t| t.send(chunk).is_err()) {
                        tx = None;
                    }
                }
                let (digest, size) = hashing.digest();
                let Tee { head, .. } = hashing.into_inner();
                Ok((digest, size, head))
            });
            let extracted = layer::apply_raw(
                layer::ChannelReader::new(rx),
                &snap_dir,
                diff_id.map_or(algorithm, Digest::algorithm),
                diff_id.is_none_or(|d| d.algorithm() == algorithm),
                layer::ApplyOptions::LAYER,
            );
            (
                producer.join().expect("the blob reader does not panic"),
                extracted,
                writer.join().expect("the blob writer does not panic"),
            )
        });
        let copy = copied.map_err(|e| StoreError::Io {
            path: blob_path.clone(),
            source: e,
        })?;
        let (blob_digest, blob_size, head) =
            produced.map_err(|e| layer_err(LayerError::Stream(e)))?;
        let extracted = extracted.and_then(|(content, diff)| {
            let (d, size) = diff.unwrap_or((blob_digest.clone(), blob_size));
            layer::check_diff_id(diff_id, d, size, content)
        });
        let applied = match extracted {
            Ok(a) => a,
            Err(e) => {
                // A blob that is not the one the manifest names is reported
                // as a digest mismatch, not as whatever its wrong bytes broke
                // first (gzip, tar headers, diff_id).
                if let Some(expected) = expected.filter(|x| **x != blob_digest) {
                    return Err(LoadError::DigestMismatch {
                        file: "-".into(),
                        expected: expected.clone(),
                        actual: blob_digest,
                    });
                }
                return Err(layer_err(e));
            }
        };
        let blob_file = match (copy, owned) {
            (Some(copy), _) => {
                copy.into_inner()
                    .map_err(|e| StoreError::Io {
                        path: blob_path.clone(),
                        source: e.into_error(),
                    })?
                    .file
            }
            (None, Some(path)) => {
                let io_err = |e| StoreError::Io {
                    path: path.clone(),
                    source: e,
                };
                crate::store::seal_blob(&path).map_err(io_err)?;
                std::fs::rename(&path, &blob_path).map_err(io_err)?;
                File::open(&blob_path).map_err(io_err)?
            }
            (None, None) => unreachable!("a blob is either copied or moved"),
        };
        blob_file.sync_all().map_err(|e| StoreError::Io {
            path: blob_path.clone(),
            source: e,
        })?;
        if let Some(expected) = expected {
            if *expected != blob_digest {
                return Err(LoadError::DigestMismatch {
                    file: "-".into(),
                    expected: expected.clone(),
                    actual: blob_digest,
                });
            }
        }
        let media_type = media_type.unwrap_or_else(|| {
            match Compression::detect(&head) {
                Compression::Gzip => MediaType::ImageLayerGzip,
                Compression::Zstd => MediaType::ImageLayerZstd,
                Compression::None => MediaType::ImageLayer,
            }
            .to_string()
        });
        if !self.has_blob(&blob_digest) {
            self.blobs.insert(blob_digest.clone(), blob_path);
        }
        self.verified
            .insert((blob_digest.clone(), applied.diff_id.clone()));
        let chain = chain_id(parent, &applied.diff_id);
        if !self.snapshot_known(&chain)? {
            // A diff already unpacked keeps its one directory; this copy
            // goes with the staging directory.
            let dir = match self.diff_unpacked(&applied.diff_id)? {
                Some(_) => StagedDir::Shared,
                None => StagedDir::Unpacked(snap_dir),
            };
            self.snapshots.push(StagedSnapshot {
                chain_id: chain.clone(),
                parent: parent.cloned(),
                diff_id: applied.diff_id.clone(),
                diff_size: applied.diff_size,
                size: applied.content_size,
                dir,
            });
        }
        Ok(LayerRecord {
            blob_digest,
            media_type,
            blob_size,
            diff_id: applied.diff_id,
            chain_id: chain,
        })
    }

    /// Stages an image record over layers already staged.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_image(
        &mut self,
        id: Digest,
        config_len: u64,
        created: Option<String>,
        records: Vec<LayerRecord>,
        manifest: Option<ManifestBytes>,
        tags: Vec<Reference>,
    ) -> Result<(), LoadError> {
        let mut size = 0;
        for r in &records {
            size += match self.snapshots.iter().find(|s| s.chain_id == r.chain_id) {
                Some(s) => s.size,
                None => self.store.snapshot(&r.chain_id)?.map_or(0, |s| s.size),
            };
        }
        let (manifest_digest, manifest_media_type) = match manifest {
            Some((bytes, d, t)) => {
                if !self.has_blob(&d) {
                    let path = self.next_path("blob");
                    store::write_verified(&bytes[..], &path, Some(&d))?;
                    self.blobs.insert(d.clone(), path);
                }
                (d, t)
            }
            None => {
                let bytes = synthesize_manifest(&id, config_len, &records)?;
                (
                    self.blob_bytes(&bytes, Algorithm::Sha256)?,
                    MediaType::ImageManifest.to_string(),
                )
            }
        };
        self.images.push(StagedImage {
            id,
            manifest_digest,
            manifest_media_type,
            created,
            size,
            layers: records,
            tags,
        });
        Ok(())
    }

    /// Makes everything staged visible at once.
    pub(crate) fn commit(self) -> Result<Vec<Loaded>, StoreError> {
        let Stage {
            store,
            blobs,
            snapshots,
            images,
            ..
        } = self;
        let mut moved: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for (d, path) in &blobs {
                if store.commit_blob_file(path, d)? {
                    moved.push(store.blob_path(d));
                }
            }
            for alg in ["sha256", "sha512"] {
                store::sync_dir(&store.root().join("blobs").join(alg))?;
            }
            let snap_root = store.root().join("snapshots");
            let root = store.root().to_path_buf();
            let tx = store.write_tx()?;
            let now = now_unix();
            for s in &snapshots {
                // A shared diff's directory: unpacked earlier in this stage
                // (inserted above) or already in the store.
                let dir = match &s.dir {
                    StagedDir::Unpacked(_) => None,
                    StagedDir::Shared => {
                        let found = store::diff_dir_in(&tx, &s.diff_id)?;
                        Some(found.map(|(dir, ..)| dir).ok_or_else(|| {
                            StoreError::NoSuchImage(format!(
                                "layer {} was removed while this load used it: retry",
                                s.diff_id
                            ))
                        })?)
                    }
                };
                let inserted = tx.execute(
                    "INSERT INTO snapshots(chain_id, parent, diff_id, diff_size, size, added, dir)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(chain_id) DO NOTHING",
                    params![
                        s.chain_id.to_string(),
                        s.parent.as_ref().map(|p| p.to_string()),
                        s.diff_id.to_string(),
                        s.diff_size as i64,
                        s.size as i64,
                        now,
                        dir
                    ],
                )?;
                if let (1, StagedDir::Unpacked(src)) = (inserted, &s.dir) {
                    let id = tx.last_insert_rowid();
                    let dest = snap_root.join(id.to_string());
                    if dest.exists() {
                        // Left by a crash between rename and commit.
                        layer::remove_dir_all(&dest).map_err(|e| StoreError::Io {
                            path: dest.clone(),
                            source: e,
                        })?;
                    }
                    std::fs::rename(src, &dest).map_err(|e| StoreError::Io {
                        path: dest.clone(),
                        source: e,
                    })?;
                }
            }
            let mut loaded = Vec::new();
            for img in &images {
                let id = img.id.to_string();
                tx.execute(
                    "INSERT INTO images(id, manifest_digest, manifest_media_type, created, size, added)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(id) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                        manifest_media_type = excluded.manifest_media_type",
                    params![
                        id,
                        img.manifest_digest.to_string(),
                        img.manifest_media_type,
                        img.created,
                        img.size as i64,
                        now
                    ],
                )?;
                tx.execute("DELETE FROM image_layers WHERE image_id = ?1", [&id])?;
                for (idx, l) in img.layers.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO image_layers(image_id, idx, blob_digest, media_type, blob_size, diff_id, chain_id)
                         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            id,
                            idx as i64,
                            l.blob_digest.to_string(),
                            l.media_type,
                            l.blob_size as i64,
                            l.diff_id.to_string(),
                            l.chain_id.to_string()
                        ],
                    )?;
                }
                let mut seen = HashSet::new();
                for t in &img.tags {
                    if seen.insert(t.to_string()) {
                        tx.execute(
                            "INSERT INTO tags(name, image_id, added) VALUES(?1, ?2, ?3)
                             ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, added = excluded.added",
                            params![t.to_string(), id, now],
                        )?;
                    }
                }
                loaded.push(Loaded {
                    id: img.id.clone(),
                    tags: img.tags.clone(),
                });
            }
            tx.commit()?;
            store::sync_dir(&root.join("snapshots"))?;
            Ok(loaded)
        })();
        if result.is_err() {
            for p in moved {
                let _ = std::fs::remove_file(p);
            }
        }
        result
    }
}

/// An OCI manifest for an image that arrived without one.
pub(crate) fn synthesize_manifest(
    config: &Digest,
    config_size: u64,
    layers: &[LayerRecord],
) -> Result<Vec<u8>, LoadError> {
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest.to_string(),
        "config": {
            "mediaType": MediaType::ImageConfig.to_string(),
            "digest": config.to_string(),
            "size": config_size,
        },
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type,
            "digest": l.blob_digest.to_string(),
            "size": l.blob_size,
        })).collect::<Vec<_>>(),
    });
    Ok(serde_json::to_vec(&m).expect("manifest serializes"))
}

/// Copies everything read into a second writer (the staged blob) and
/// keeps the first bytes for compression detection.
struct Tee<R, W> {
    inner: R,
    copy: Option<W>,
    head: Vec<u8>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(copy) = &mut self.copy {
            copy.write_all(&buf[..n])?;
        }
        if self.head.len() < 8 {
            let take = (8 - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..take]);
        }
        Ok(n)
    }
}

/// A file being written that the kernel starts writing to disk every few
/// megabytes, so that the fsync which ends it has little left to wait for.
pub(crate) struct Writeback {
    pub(crate) file: File,
    pub(crate) written: u64,
    pub(crate) started: u64,
}

impl Write for Writeback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= 8 << 20 {
            use std::os::fd::AsRawFd as _;
            // SAFETY: sync_file_range only reads its arguments; the fd is
            // open for as long as `self.file` lives.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.started as libc::off64_t,
                    (self.written - self.started) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.started = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A layer of an image being pulled: its blob digest, size and media type.
#[derive(Debug, Clone)]
pub struct PulledLayer {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// Adds an image fetched from a registry: the manifest (exact bytes), the
/// config, and each layer read from `fetch` (only those the store does not
/// have unpacked already), every digest and diff_id checked while the
/// bytes stream in. Nothing is visible until all of it is in place; on any
/// error the store is as it was. Returns the image id.
pub fn add_pulled<'a>(
    store: &mut Store,
    manifest: (Vec<u8>, Digest, String),
    config: Vec<u8>,
    config_digest: Digest,
    layers: Vec<PulledLayer>,
    fetch: &mut dyn FnMut(&PulledLayer) -> io::Result<Box<dyn Read + Send + 'a>>,
    tags: Vec<Reference>,
) -> Result<Digest, LoadError> {
    let file = "the pulled config".to_string();
    if Digest::of(config_digest.algorithm(), &config) != config_digest {
        return Err(LoadError::DigestMismatch {
            file,
            expected: config_digest.clone(),
            actual: Digest::of(config_digest.algorithm(), &config),
        });
    }
    let parsed =
        ImageConfiguration::from_reader(&config[..]).map_err(|source| LoadError::Spec {
            file: file.clone(),
            what: "an image config",
            source,
        })?;
    check_layer_count("the pulled manifest", layers.len())?;
    let diff_ids = parsed
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| parse_digest(&file, d))
        .collect::<Result<Vec<_>, _>>()?;
    if diff_ids.len() != layers.len() {
        return Err(LoadError::Invalid {
            file,
            what: format!(
                "config lists {} layers but the manifest has {}",
                diff_ids.len(),
                layers.len()
            ),
        });
    }
    let _lock = store.lock_shared()?;
    let tmp = store.temp_dir()?;
    let mut stage = Stage::new(store, &tmp);
    stage.blob_bytes(&config, config_digest.algorithm())?;
    let mut records = Vec::new();
    let mut parent: Option<Digest> = None;
    for (index, (l, diff_id)) in layers.iter().zip(diff_ids).enumerate() {
        let chain = chain_id(parent.as_ref(), &diff_id);
        let reused = stage.reuse(
            &l.digest,
            l.media_type.clone(),
            l.size,
            &diff_id,
            &chain,
            parent.as_ref(),
        )?;
        let record = if let Some(r) = reused {
            r
        } else {
            let input = SizedReader::new(
                fetch(l).map_err(|e| LoadError::Layer {
                    index,
                    file: l.digest.to_string(),
                    source: LayerError::Stream(e),
                })?,
                l.size,
            );
            stage
                .layer_from_reader(
                    input,
                    None,
                    Some(&l.digest),
                    Some(l.media_type.clone()),
                    Some(&diff_id),
                    parent.as_ref(),
                )
                .map_err(|e| match e {
                    LoadError::Layer { source, .. } => LoadError::Layer {
                        index,
                        file: l.digest.to_string(),
                        source,
                    },
                    other => other,
                })?
        };
        records.push(record);
        parent = Some(chain);
    }
    stage.add_image(
        config_digest.clone(),
        config.len() as u64,
        parsed.created().clone(),
        records,
        Some(manifest),
        tags,
    )?;
    stage.commit()?;
    Ok(config_digest)
}
