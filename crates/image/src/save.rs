//! `berth save`: images out of the store as a docker-archive (what
//! `docker load` reads), an OCI archive, or an OCI layout directory.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use serde_json::json;

use crate::digest::{Digest, VerifyingReader};
use crate::layer;
use crate::reference::Reference;
use crate::store::{ImageRecord, Store, StoreError, MANIFEST_LIMIT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DockerArchive,
    OciArchive,
    OciDir,
}

/// An image to save, with the tag it was named by (if any).
pub type Named = (ImageRecord, Option<Reference>);

/// Where archive members go: a tar stream or a directory.
trait Sink {
    fn file(&mut self, name: &str, size: u64, data: &mut dyn Read) -> io::Result<()>;
}

struct TarSink<W: Write> {
    tar: tar::Builder<W>,
    dirs: HashSet<String>,
}

impl<W: Write> Sink for TarSink<W> {
    fn file(&mut self, name: &str, size: u64, data: &mut dyn Read) -> io::Result<()> {
        // Parent directories first, as docker writes them.
        let mut prefix = String::new();
        for part in name
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            prefix.push_str(part);
            prefix.push('/');
            if self.dirs.insert(prefix.clone()) {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_mtime(0);
                h.set_uid(0);
                h.set_gid(0);
                self.tar.append_data(&mut h, &prefix, io::empty())?;
            }
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        let mut exact = ExactReader {
            inner: data,
            remaining: size,
        };
        self.tar.append_data(&mut h, name, &mut exact)?;
        if exact.remaining != 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: content shorter than recorded"),
            ));
        }
        Ok(())
    }
}

/// Yields exactly `remaining` bytes, erroring if the source has more. The
/// source is read to its end (so a verifying reader checks its digest).
struct ExactReader<'a> {
    inner: &'a mut dyn Read,
    remaining: u64,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "content longer than recorded",
                ));
            }
            return Ok(0);
        }
        let max = buf.len().min(self.remaining as usize);
        let n = self.inner.read(&mut buf[..max])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

struct DirSink<'a> {
    dir: &'a Path,
}

impl Sink for DirSink<'_> {
    fn file(&mut self, name: &str, _size: u64, data: &mut dyn Read) -> io::Result<()> {
        let path = self.dir.join(name);
        if let Some(p) = path.parent() {
            fs::create_dir_all(p)?;
        }
        let tmp = path.with_extension("tmp-berth");
        let mut f = File::create(&tmp)?;
        io::copy(data, &mut f)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    }
}

/// Saves to `path`: archives are written beside it and renamed into place
/// when complete; `OciDir` adds to (or creates) a layout directory.
pub fn save_to_path(
    store: &Store,
    images: &[Named],
    format: Format,
    path: &Path,
) -> Result<(), StoreError> {
    let io_err = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    if format == Format::OciDir {
        fs::create_dir_all(path).map_err(io_err)?;
        return oci(store, images, &mut DirSink { dir: path }, Some(path));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.berth-tmp-{}", std::process::id()));
    let result = (|| {
        let f = File::create(&tmp).map_err(io_err)?;
        let f = save_to_writer(store, images, format, io::BufWriter::new(f))?;
        f.sync_all().map_err(io_err)?;
        fs::rename(&tmp, path).map_err(io_err)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes an archive to `w` and returns it.
pub fn save_to_writer<W: Write>(
    store: &Store,
    images: &[Named],
    format: Format,
    w: io::BufWriter<W>,
) -> Result<W, StoreError> {
    let mut sink = TarSink {
        tar: tar::Builder::new(w),
        dirs: HashSet::new(),
    };
    match format {
        Format::DockerArchive => docker(store, images, &mut sink)?,
        Format::OciArchive | Format::OciDir => oci(store, images, &mut sink, None)?,
    }
    let io_err = |source| StoreError::Io {
        path: "<archive>".into(),
        source,
    };
    let w = sink.tar.into_inner().map_err(io_err)?;
    w.into_inner().map_err(|e| io_err(e.into_error()))
}

fn blob_to(
    store: &Store,
    sink: &mut dyn Sink,
    d: &Digest,
    written: &mut HashSet<Digest>,
) -> Result<(), StoreError> {
    if !written.insert(d.clone()) {
        return Ok(());
    }
    let f = store.open_blob(d)?;
    let size = f.metadata().map_err(|source| StoreError::Io {
        path: store.blob_path(d),
        source,
    })?;
    let name = format!("blobs/{}/{}", d.algorithm().as_str(), d.hex());
    sink.file(&name, size.len(), &mut VerifyingReader::new(f, d))
        .map_err(|source| StoreError::Io {
            path: name.into(),
            source,
        })
}

fn oci(
    store: &Store,
    images: &[Named],
    sink: &mut dyn Sink,
    existing: Option<&Path>,
) -> Result<(), StoreError> {
    let mut written = HashSet::new();
    let mut manifests = Vec::new();
    // Keep what an existing layout directory already lists.
    if let Some(dir) = existing {
        if let Ok(raw) = fs::read(dir.join("index.json")) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw) {
                if let Some(list) = v.get("manifests").and_then(|m| m.as_array()) {
                    manifests.extend(list.iter().cloned());
                }
            }
        }
    }
    for (image, named) in images {
        blob_to(store, sink, &image.manifest_digest, &mut written)?;
        blob_to(store, sink, &image.id, &mut written)?;
        for l in store.layers(&image.id)? {
            blob_to(store, sink, &l.blob_digest, &mut written)?;
        }
        let size = store
            .read_blob(&image.manifest_digest, MANIFEST_LIMIT)?
            .len();
        let mut desc = json!({
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest.to_string(),
            "size": size,
        });
        let tags: Vec<&Reference> = match named {
            Some(r) => vec![r],
            None => image.tags.iter().collect(),
        };
        if tags.is_empty() {
            manifests.push(desc.clone());
        }
        for t in tags {
            desc["annotations"] = json!({
                "io.containerd.image.name": t.to_string(),
                "org.opencontainers.image.ref.name": t.tag().unwrap_or("latest"),
            });
            manifests.retain(|m| {
                m.pointer("/annotations/io.containerd.image.name")
                    != desc.pointer("/annotations/io.containerd.image.name")
            });
            manifests.push(desc.clone());
        }
    }
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .expect("index serializes");
    let io_err = |source| StoreError::Io {
        path: "index.json".into(),
        source,
    };
    sink.file("oci-layout", layout.len() as u64, &mut &layout[..])
        .map_err(io_err)?;
    sink.file("index.json", index.len() as u64, &mut &index[..])
        .map_err(io_err)?;
    Ok(())
}

fn docker(store: &Store, images: &[Named], sink: &mut dyn Sink) -> Result<(), StoreError> {
    let mut written: HashSet<String> = HashSet::new();
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (image, named) in images {
        let config_name = format!("{}.json", image.id.hex());
        if written.insert(config_name.clone()) {
            let f = store.open_blob(&image.id)?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            sink.file(&config_name, len, &mut VerifyingReader::new(f, &image.id))
                .map_err(|source| StoreError::Io {
                    path: config_name.clone().into(),
                    source,
                })?;
        }
        let mut layer_names = Vec::new();
        for l in store.layers(&image.id)? {
            let snap = store
                .snapshot(&l.chain_id)?
                .ok_or_else(|| StoreError::MissingBlob(l.chain_id.clone()))?;
            let name = format!("{}/layer.tar", l.diff_id.hex());
            if written.insert(name.clone()) {
                let blob = store.open_blob(&l.blob_digest)?;
                let plain = layer::decompress(VerifyingReader::new(blob, &l.blob_digest)).map_err(
                    |source| StoreError::Io {
                        path: store.blob_path(&l.blob_digest),
                        source,
                    },
                )?;
                let mut plain = VerifyingReader::new(plain, &l.diff_id);
                sink.file(&name, snap.diff_size, &mut plain)
                    .map_err(|source| StoreError::Io {
                        path: name.clone().into(),
                        source,
                    })?;
            }
            layer_names.push(name);
        }
        let tags: Vec<&Reference> = match named {
            Some(r) => vec![r],
            None => Vec::new(),
        };
        if let (Some(top), false) = (layer_names.last(), tags.is_empty()) {
            let top = top.trim_end_matches("/layer.tar").to_string();
            for t in &tags {
                repositories
                    .entry(t.familiar_name())
                    .or_default()
                    .insert(t.tag().unwrap_or("latest").to_string(), top.clone());
            }
        }
        manifest.push(json!({
            "Config": config_name,
            "RepoTags": if tags.is_empty() { serde_json::Value::Null } else {
                json!(tags.iter().map(|t| t.familiar()).collect::<Vec<_>>())
            },
            "Layers": layer_names,
        }));
    }
    let io_err = |source| StoreError::Io {
        path: "manifest.json".into(),
        source,
    };
    let m = serde_json::to_vec(&manifest).expect("manifest serializes");
    sink.file("manifest.json", m.len() as u64, &mut &m[..])
        .map_err(io_err)?;
    if !repositories.is_empty() {
        let r = serde_json::to_vec(&repositories).expect("repositories serializes");
        sink.file("repositories", r.len() as u64, &mut &r[..])
            .map_err(io_err)?;
    }
    Ok(())
}
