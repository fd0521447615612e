//! Store behaviour below the CLI: leases keep images in use, and garbage
//! collection removes what crashed writers leave without touching images.

use std::fs;
use std::path::{Path, PathBuf};

use berth_image::gc;
use berth_image::load::{load, Input};
use berth_image::store::{Store, StoreError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = e.path().strip_prefix(root).unwrap().display().to_string();
            if name.starts_with("berth.db") || name == "lock" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(name);
        }
    }
    out.sort();
    out
}

#[test]
fn leased_images_are_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let loaded = load(&mut store, Input::Path(&fixture("busybox-1.35"))).unwrap();
    let id = loaded[0].id.clone();
    store.add_lease("container-1", &id).unwrap();

    let err = gc::remove_image(&mut store, id.hex(), false).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("container-1"), "{err}");
    let (removed, _) = gc::prune_images(&mut store, true).unwrap();
    assert!(removed.is_empty(), "prune -a removed a leased image");
    assert!(store.image(&id).unwrap().is_some());

    store.remove_lease("container-1").unwrap();
    store.add_lease("container-2", &id).unwrap();
    let removed = gc::remove_image(&mut store, id.hex(), true).unwrap();
    assert_eq!(removed, vec![gc::Removed::Deleted(id.clone())]);
    assert!(store.images().unwrap().is_empty());
    assert!(store.lease_holders(&id).unwrap().is_empty());
}

#[test]
fn gc_removes_crash_leftovers_and_keeps_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    load(&mut store, Input::Path(&fixture("busybox-1.35"))).unwrap();
    let before = listing(dir.path());

    // What a writer killed at each step leaves behind: a staging dir, a
    // blob renamed in but never committed, a snapshot directory without
    // its row.
    fs::create_dir_all(dir.path().join("tmp/1234-5-0/snapshot-1/bin")).unwrap();
    let orphan = dir.path().join(format!("blobs/sha256/{}", "ab".repeat(32)));
    fs::write(&orphan, b"orphan").unwrap();
    fs::create_dir_all(dir.path().join("snapshots/99/etc")).unwrap();

    let report = gc::collect(&mut store).unwrap();
    assert_eq!(report.blobs, 1);
    assert_eq!(report.snapshots, 1);
    assert_eq!(
        listing(dir.path()),
        before,
        "gc must leave exactly the image's data"
    );
    assert_eq!(store.images().unwrap().len(), 1);

    // A new snapshot id never reuses a directory name left by a crash.
    fs::create_dir_all(dir.path().join("snapshots/2/leftover")).unwrap();
    let loaded = load(&mut store, Input::Path(&fixture("sample-app"))).unwrap();
    let snaps = store.image_snapshots(&loaded[0].id).unwrap();
    for s in &snaps {
        assert!(
            !s.path.join("leftover").exists(),
            "snapshot {} reused a stale directory",
            s.id
        );
    }
}

/// A store made before snapshots could share directories (no `dir`
/// column) opens, keeps its images, and shares from then on.
#[test]
fn stores_from_before_shared_snapshot_directories_open_and_keep_their_images() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        load(&mut store, Input::Path(&fixture("busybox-1.35"))).unwrap();
    }
    {
        let db = rusqlite::Connection::open(dir.path().join("berth.db")).unwrap();
        db.execute_batch("DROP INDEX snapshots_diff; ALTER TABLE snapshots DROP COLUMN dir;")
            .unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    let images = store.images().unwrap();
    assert_eq!(images.len(), 1);
    let snaps = store.image_snapshots(&images[0].id).unwrap();
    assert!(snaps[0].path.join("bin/busybox").exists());
    assert_eq!(gc::collect(&mut store).unwrap().snapshots, 0);
    assert!(snaps[0].path.join("bin/busybox").exists());
}
