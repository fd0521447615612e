//! What `berth build` adds to the store: layers made from directories (a
//! RUN or COPY step's overlay upper directory, which is already in the
//! snapshot format, so it is moved in, never unpacked again) and images
//! over such layers. A layer's user (the build cache) holds it by name in
//! `layer_refs`, so that garbage collection keeps it until the holder
//! lets go.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use rusqlite::params;

use crate::digest::{Algorithm, Digest, HashingWriter};
use crate::load::{LoadError, Stage};
use crate::reference::Reference;
use crate::store::{self, chain_id, now_unix, LayerRecord, Store, StoreError};
use oci_spec::image::MediaType;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes a layer of `dir` (overlay form: whiteouts as 0/0 character
/// devices, opaque directories by xattr) over the layer chain `parent`:
/// its uncompressed tar becomes the blob (so the blob digest is the
/// diff_id) and `dir` itself becomes the snapshot (moved, or removed when
/// the store has that chain or that diff already). `clamp` caps modification times in
/// the tar (`SOURCE_DATE_EPOCH`). The new layer is held by `holder`.
pub fn layer_from_dir(
    store: &mut Store,
    dir: &Path,
    parent: Option<&Digest>,
    clamp: Option<u64>,
    holder: &str,
) -> Result<LayerRecord, StoreError> {
    let _lock = store.lock_shared()?;
    let tmp = store.temp_dir()?;
    let tar_path = tmp.path().join("layer.tar");
    let file = File::create_new(&tar_path).map_err(io_err(&tar_path))?;
    // The kernel starts writing every few megabytes, so the fsync at the
    // end has little left to wait for.
    let file = crate::load::Writeback {
        file,
        written: 0,
        started: 0,
    };
    let mut w = HashingWriter::new(
        io::BufWriter::with_capacity(256 << 10, file),
        Algorithm::Sha256,
    );
    let content = crate::diff::write_layer_tar(dir, &mut w, clamp).map_err(io_err(dir))?;
    w.flush().map_err(io_err(&tar_path))?;
    let (buf, diff_id, tar_size) = w.finish();
    let file = buf
        .into_inner()
        .map_err(|e| io_err(&tar_path)(e.into_error()))?
        .file;
    file.sync_all().map_err(io_err(&tar_path))?;
    drop(file);
    // The directory becomes the snapshot as it is: its files must be on
    // disk before the database says the layer exists (a build step's
    // overlay was volatile, so nothing synced them yet).
    {
        let d = File::open(dir).map_err(io_err(dir))?;
        rustix::fs::syncfs(&d).map_err(|e| io_err(dir)(e.into()))?;
    }
    let chain = chain_id(parent, &diff_id);
    store.commit_blob_file(&tar_path, &diff_id)?;
    store::sync_dir(&store.root().join("blobs").join("sha256"))?;
    let snap_root = store.root().join("snapshots");
    {
        let tx = store.write_tx()?;
        // The same diff made before (under another parent) keeps its one
        // directory, which this chain shares.
        let shared = store::diff_dir_in(&tx, &diff_id)?.map(|(dir, ..)| dir);
        let inserted = tx.execute(
            "INSERT INTO snapshots(chain_id, parent, diff_id, diff_size, size, added, dir)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(chain_id) DO NOTHING",
            params![
                chain.to_string(),
                parent.map(|p| p.to_string()),
                diff_id.to_string(),
                tar_size as i64,
                content as i64,
                now_unix(),
                shared
            ],
        )?;
        if inserted == 1 && shared.is_none() {
            let dest = snap_root.join(tx.last_insert_rowid().to_string());
            if dest.exists() {
                crate::layer::remove_dir_all(&dest).map_err(io_err(&dest))?;
            }
            std::fs::rename(dir, &dest).map_err(io_err(&dest))?;
        }
        tx.execute(
            "INSERT INTO layer_refs(holder, chain_id, blob_digest) VALUES(?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![holder, chain.to_string(), diff_id.to_string()],
        )?;
        tx.commit()?;
    }
    store::sync_dir(&snap_root)?;
    if dir.exists() {
        crate::layer::remove_dir_all(dir).map_err(io_err(dir))?;
    }
    Ok(LayerRecord {
        blob_digest: diff_id.clone(),
        media_type: MediaType::ImageLayer.to_string(),
        blob_size: tar_size,
        diff_id,
        chain_id: chain,
    })
}

/// Holds `layers` (their snapshots and blobs) for `holder`.
pub fn hold_layers(
    store: &mut Store,
    holder: &str,
    layers: &[LayerRecord],
) -> Result<(), StoreError> {
    let tx = store.write_tx()?;
    for l in layers {
        tx.execute(
            "INSERT INTO layer_refs(holder, chain_id, blob_digest) VALUES(?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![holder, l.chain_id.to_string(), l.blob_digest.to_string()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Lets go of everything held by holders whose name starts with `prefix`;
/// returns how many holders there were. Run `gc::collect` after to free
/// the space.
pub fn release_layers(store: &mut Store, prefix: &str) -> Result<usize, StoreError> {
    let tx = store.write_tx()?;
    let pattern = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
    let n: i64 = tx.query_row(
        "SELECT COUNT(DISTINCT holder) FROM layer_refs WHERE holder LIKE ?1 ESCAPE '\\'",
        [&pattern],
        |r| r.get(0),
    )?;
    tx.execute(
        "DELETE FROM layer_refs WHERE holder LIKE ?1 ESCAPE '\\'",
        [&pattern],
    )?;
    tx.commit()?;
    Ok(n as usize)
}

/// The unpacked directory of a layer chain, if the store has it.
pub fn snapshot_dir(
    store: &Store,
    chain: &Digest,
) -> Result<Option<std::path::PathBuf>, StoreError> {
    Ok(store.snapshot(chain)?.map(|s| s.path))
}

/// Records an image: `config` (the image config JSON, stored byte for
/// byte; its digest is the image id) over `layers`, which the store has
/// already, with an OCI manifest made for it, tagged with `tags`.
pub fn add_image(
    store: &mut Store,
    config: &[u8],
    created: Option<String>,
    layers: Vec<LayerRecord>,
    tags: Vec<Reference>,
) -> Result<Digest, LoadError> {
    let _lock = store.lock_shared()?;
    let tmp = store.temp_dir()?;
    let mut stage = Stage::new(store, &tmp);
    let id = stage.blob_bytes(config, Algorithm::Sha256)?;
    stage.add_image(id.clone(), config.len() as u64, created, layers, None, tags)?;
    stage.commit()?;
    Ok(id)
}

/// Lease holders whose name starts with `prefix` (`build:PID` leases, for
/// sweeping those of builds that died).
pub fn lease_holders_with_prefix(store: &Store, prefix: &str) -> Result<Vec<String>, StoreError> {
    let pattern = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
    let mut stmt = store
        .db()
        .prepare("SELECT DISTINCT holder FROM leases WHERE holder LIKE ?1 ESCAPE '\\'")?;
    let rows = stmt
        .query_map([pattern], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
