//! Image removal and garbage collection of unreferenced blobs and
//! snapshots.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use crate::digest::Digest;
use crate::layer;
use crate::reference::Reference;
use crate::store::{ImageRecord, Store, StoreError};

/// What a collection removed.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub blobs: usize,
    pub snapshots: usize,
    /// Bytes freed (blob sizes plus snapshot content sizes).
    pub bytes: u64,
}

/// One line of `berth rmi` output, as docker prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
    Deleted(Digest),
}

/// Removes what `input` names, as `docker rmi` does: a tag of an image with
/// other tags is only untagged; the last tag (or an ID) deletes the image.
/// An image used by a container, or an ID naming an image with several
/// tags, is refused unless `force`.
pub fn remove_image(
    store: &mut Store,
    input: &str,
    force: bool,
) -> Result<Vec<Removed>, StoreError> {
    let image = store.resolve(input)?;
    let by_tag = Reference::parse(input).ok().filter(|r| {
        r.digest().is_none() && store.tag_target(r).ok().flatten().as_ref() == Some(&image.id)
    });
    let mut out = Vec::new();
    if let Some(tag) = &by_tag {
        if image.tags.len() > 1 {
            store.untag(tag)?;
            out.push(Removed::Untagged(tag.familiar()));
            return Ok(out);
        }
    } else if image.tags.len() > 1 && !force {
        return Err(StoreError::MultipleTags {
            image: input.to_string(),
        });
    }
    let holders = store.lease_holders(&image.id)?;
    if !holders.is_empty() && !force {
        return Err(StoreError::InUse {
            image: input.to_string(),
            holder: holders.join(", "),
        });
    }
    out.extend(delete_image(store, &image)?);
    Ok(out)
}

/// Deletes an image's record and tags, then collects what it alone used.
pub fn delete_image(store: &mut Store, image: &ImageRecord) -> Result<Vec<Removed>, StoreError> {
    let _lock = store.lock_exclusive()?;
    let out = delete_records(store, image)?;
    collect_locked(store)?;
    Ok(out)
}

fn delete_records(store: &mut Store, image: &ImageRecord) -> Result<Vec<Removed>, StoreError> {
    let mut out: Vec<Removed> = image
        .tags
        .iter()
        .map(|t| Removed::Untagged(t.familiar()))
        .collect();
    {
        let tx = store.write_tx()?;
        let id = image.id.to_string();
        tx.execute("DELETE FROM leases WHERE image_id = ?1", [&id])?;
        tx.execute("DELETE FROM tags WHERE image_id = ?1", [&id])?;
        tx.execute("DELETE FROM image_layers WHERE image_id = ?1", [&id])?;
        tx.execute("DELETE FROM images WHERE id = ?1", [&id])?;
        tx.commit()?;
    }
    out.push(Removed::Deleted(image.id.clone()));
    Ok(out)
}

/// Removes blobs and snapshots no image references, leftovers of crashed
/// writers, and stale temporary files. Waits for writers to finish.
pub fn collect(store: &mut Store) -> Result<GcReport, StoreError> {
    let _lock = store.lock_exclusive()?;
    collect_locked(store)
}

fn collect_locked(store: &mut Store) -> Result<GcReport, StoreError> {
    let mut report = GcReport::default();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };

    // Snapshots: rows no layer names, then directories no row uses (a
    // directory may be shared by the rows of one diff under several
    // chains).
    let dead: Vec<(i64, i64)> = {
        let mut stmt = store.db().prepare(
            "SELECT COALESCE(dir, id), size FROM snapshots WHERE chain_id NOT IN
                (SELECT chain_id FROM image_layers UNION SELECT chain_id FROM layer_refs)",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        rows
    };
    {
        let tx = store.write_tx()?;
        tx.execute(
            "DELETE FROM snapshots WHERE chain_id NOT IN
                (SELECT chain_id FROM image_layers UNION SELECT chain_id FROM layer_refs)",
            [],
        )?;
        tx.commit()?;
    }
    let live: HashSet<String> = {
        let mut stmt = store
            .db()
            .prepare("SELECT DISTINCT COALESCE(dir, id) FROM snapshots")?;
        let rows = stmt
            .query_map([], |r| Ok(r.get::<_, i64>(0)?.to_string()))?
            .collect::<Result<_, _>>()?;
        rows
    };
    let sizes: HashMap<String, u64> = dead
        .into_iter()
        .map(|(dir, size)| (dir.to_string(), size as u64))
        .collect();
    let snap_root = store.root().join("snapshots");
    for ent in fs::read_dir(&snap_root).map_err(io(&snap_root))? {
        let ent = ent.map_err(io(&snap_root))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if !live.contains(&name) {
            layer::remove_dir_all(&ent.path()).map_err(io(&ent.path()))?;
            report.snapshots += 1;
            report.bytes += sizes.get(&name).copied().unwrap_or(0);
        }
    }

    // Blobs: configs, manifests and layers of every image.
    let referenced: HashSet<String> = {
        let mut stmt = store.db().prepare(
            "SELECT id FROM images UNION SELECT manifest_digest FROM images
             UNION SELECT blob_digest FROM image_layers UNION SELECT blob_digest FROM layer_refs",
        )?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        rows
    };
    for alg in ["sha256", "sha512"] {
        let dir = store.root().join("blobs").join(alg);
        for ent in fs::read_dir(&dir).map_err(io(&dir))? {
            let ent = ent.map_err(io(&dir))?;
            let digest = format!("{alg}:{}", ent.file_name().to_string_lossy());
            if !referenced.contains(&digest) {
                let len = ent.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(ent.path()).map_err(io(&ent.path()))?;
                report.blobs += 1;
                report.bytes += len;
            }
        }
    }

    // Staging left by killed writers (no writer runs while we hold the lock).
    let tmp = store.root().join("tmp");
    for ent in fs::read_dir(&tmp).map_err(io(&tmp))? {
        let ent = ent.map_err(io(&tmp))?;
        let p = ent.path();
        report.bytes += tree_size(&p);
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            layer::remove_dir_all(&p).map_err(io(&p))?;
        } else {
            fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    Ok(report)
}

/// Which images `berth image prune` removes: dangling ones (no tag), or
/// with `all` every image, in both cases only those no container uses.
pub fn prune_images(store: &mut Store, all: bool) -> Result<(Vec<Removed>, GcReport), StoreError> {
    let _lock = store.lock_exclusive()?;
    let mut removed = Vec::new();
    for image in store.images()? {
        if (!all && !image.tags.is_empty()) || !store.lease_holders(&image.id)?.is_empty() {
            continue;
        }
        removed.extend(delete_records(store, &image)?);
    }
    let report = collect_locked(store)?;
    Ok((removed, report))
}

/// What `berth system df` reports of the store.
#[derive(Debug, Default, Clone)]
pub struct DiskUsage {
    pub images: usize,
    pub active_images: usize,
    /// Unpacked size of the snapshots images use (each counted once),
    /// of orphans gc will remove, and of staging dead loads left.
    pub images_size: u64,
    /// Of `images_size`, what no image in use needs.
    pub reclaimable: u64,
    /// Unpacked size of the snapshots only the build cache holds (what
    /// `builder prune` gives back).
    pub build_cache_size: u64,
    pub blobs: usize,
    pub blobs_size: u64,
}

pub fn disk_usage(store: &Store) -> Result<DiskUsage, StoreError> {
    let db = store.db();
    let mut u = DiskUsage {
        images: db.query_row("SELECT COUNT(*) FROM images", [], |r| r.get::<_, i64>(0))? as usize,
        active_images: db.query_row("SELECT COUNT(DISTINCT image_id) FROM leases", [], |r| {
            r.get::<_, i64>(0)
        })? as usize,
        ..DiskUsage::default()
    };
    // Snapshots sharing a directory are one group, sized once: by whether
    // an image uses one of them, an image in use does, or only the build
    // cache holds them.
    let mut stmt = db.prepare(
        "SELECT MAX(size),
                SUM(chain_id IN (SELECT chain_id FROM image_layers)),
                SUM(chain_id IN (SELECT l.chain_id FROM image_layers l
                                 JOIN leases ON leases.image_id = l.image_id)),
                SUM(chain_id IN (SELECT chain_id FROM layer_refs))
         FROM snapshots GROUP BY COALESCE(dir, id)",
    )?;
    let groups = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            r.get::<_, i64>(1)? > 0,
            r.get::<_, i64>(2)? > 0,
            r.get::<_, i64>(3)? > 0,
        ))
    })?;
    for g in groups {
        let (size, imaged, in_use, cached) = g?;
        if !imaged && cached {
            u.build_cache_size += size;
            continue;
        }
        u.images_size += size;
        if !in_use {
            u.reclaimable += size;
        }
    }
    for alg in ["sha256", "sha512"] {
        let dir = store.root().join("blobs").join(alg);
        for ent in fs::read_dir(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })? {
            let Ok(ent) = ent else { continue };
            u.blobs += 1;
            u.blobs_size += ent.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    // Staging a killed load or pull left (its pid, the name's first part,
    // is gone): counted with the images, all of it reclaimable (gc
    // removes it).
    let tmp = store.root().join("tmp");
    for ent in fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let pid: i32 = name
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if pid > 0 && Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let n = tree_size(&ent.path());
        u.images_size += n;
        u.reclaimable += n;
    }
    Ok(u)
}

/// Bytes of the files under `p` (not following links), or of `p` itself.
fn tree_size(p: &Path) -> u64 {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => crate::layer::tree_size(p).unwrap_or(0),
        Ok(md) if md.is_file() => md.len(),
        _ => 0,
    }
}
