//! The on-disk store: content-addressed blobs, unpacked layer snapshots and
//! image metadata in SQLite.
//!
//! Layout under the root directory:
//!
//! ```text
//! berth.db            image metadata (SQLite, WAL)
//! blobs/sha256/HEX    content, written to tmp/, verified, fsynced, renamed
//! snapshots/ID/       one unpacked diff, an overlayfs lowerdir (shared by
//!                     every chain with that diff)
//! tmp/                staging for work in progress
//! lock                flock: shared while writing, exclusive for gc
//! ```
//!
//! Writers stage everything under `tmp/`, then commit: blobs and snapshot
//! directories are renamed into place and the rows inserted in one SQLite
//! transaction. Anything renamed in but never committed is unreferenced and
//! removed by the next garbage collection.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use rustix::fs::{self as rfs, FlockOperation};

use crate::digest::{Algorithm, Digest, DigestError, HashingWriter};
use crate::reference::Reference;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use store directory {path:?}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store database error")]
    Db(#[from] rusqlite::Error),
    #[error("store i/o error on {path:?}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("content of {digest} is larger than the {limit}-byte limit for this kind of object")]
    TooLarge { digest: Digest, limit: u64 },
    #[error("blob {0} is not in the store")]
    MissingBlob(Digest),
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("image reference {input:?} is ambiguous: it matches {count} images")]
    Ambiguous { input: String, count: usize },
    #[error("corrupt store record")]
    Corrupt(#[from] DigestError),
    #[error(
        "conflict: unable to remove image {image} (must be forced) - image is being used by {holder}"
    )]
    InUse { image: String, holder: String },
    #[error(
        "conflict: unable to delete {image} (must be forced) - image is referenced in multiple repositories"
    )]
    MultipleTags { image: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS images(
    id TEXT PRIMARY KEY,              -- config digest
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    created TEXT,                     -- from the config
    size INTEGER NOT NULL,            -- unpacked size of all layers
    added INTEGER NOT NULL            -- unix seconds
);
CREATE TABLE IF NOT EXISTS image_layers(
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    blob_digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    diff_id TEXT NOT NULL,
    chain_id TEXT NOT NULL,
    PRIMARY KEY(image_id, idx)
);
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
CREATE TABLE IF NOT EXISTS tags(
    name TEXT PRIMARY KEY,            -- full reference, docker.io/library/busybox:latest
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    added INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS snapshots(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chain_id TEXT NOT NULL UNIQUE,
    parent TEXT,
    diff_id TEXT NOT NULL,
    diff_size INTEGER NOT NULL,       -- length of the uncompressed tar
    size INTEGER NOT NULL,            -- bytes of file content
    added INTEGER NOT NULL,
    -- The snapshot whose directory holds this one's files (a diff unpacked
    -- once is shared by every chain it appears in); NULL: its own.
    dir INTEGER
);
-- Users of images (containers, builds): an image with a lease is in use.
CREATE TABLE IF NOT EXISTS repo_digests(
    name TEXT PRIMARY KEY,            -- repository@manifest-digest, as pulled or pushed
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS repo_digests_image ON repo_digests(image_id);
-- Layers held by something other than an image (the build cache): gc
-- keeps their snapshots and blobs.
CREATE TABLE IF NOT EXISTS layer_refs(
    holder TEXT NOT NULL,
    chain_id TEXT NOT NULL,
    blob_digest TEXT NOT NULL,
    PRIMARY KEY(holder, chain_id)
);
CREATE INDEX IF NOT EXISTS layer_refs_chain ON layer_refs(chain_id);
CREATE TABLE IF NOT EXISTS leases(
    holder TEXT NOT NULL,
    image_id TEXT NOT NULL REFERENCES images(id),
    PRIMARY KEY(holder, image_id)
);
"#;

/// One image as the store records it.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub created: Option<String>,
    pub size: u64,
    pub added: i64,
    pub tags: Vec<Reference>,
}

/// One layer of an image.
#[derive(Debug, Clone)]
pub struct LayerRecord {
    pub blob_digest: Digest,
    pub media_type: String,
    pub blob_size: u64,
    pub diff_id: Digest,
    pub chain_id: Digest,
}

/// One unpacked layer.
#[derive(Debug, Clone)]
pub struct SnapshotRecord {
    pub id: i64,
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub diff_size: u64,
    pub size: u64,
    pub path: PathBuf,
}

/// A held `flock` on the store's lock file.
pub struct StoreLock {
    _file: File,
}

/// The store rooted at one directory. Several processes may open the same
/// root at once.
pub struct Store {
    root: PathBuf,
    db: Connection,
}

/// Limit for manifests and indexes read into memory (as distribution).
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// Limit for image configs read into memory.
pub const CONFIG_LIMIT: u64 = 16 << 20;

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// ChainID of a layer per the OCI image spec.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
    }
}

pub(crate) fn diff_dir_in(
    db: &Connection,
    diff_id: &Digest,
) -> Result<Option<(i64, u64, u64)>, StoreError> {
    Ok(db
        .query_row(
            "SELECT COALESCE(dir, id), diff_size, size FROM snapshots WHERE diff_id = ?1 LIMIT 1",
            [diff_id.to_string()],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            },
        )
        .optional()?)
}

/// Overlay lower directories, top first, from an image's snapshot
/// directories top first: a directory that appears again below its first
/// (topmost) place is left out, since overlayfs refuses a lower layer listed
/// twice (ELOOP). The merged view is the same: every path a repeated diff
/// sets, its topmost copy sets again over whatever lies between.
pub fn overlay_lowers(dirs: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    dirs.into_iter()
        .filter(|d| seen.insert(d.clone()))
        .collect()
}

/// Makes `root` and those of `subs` that exist private to the store's
/// user (0700), as Docker keeps /var/lib/docker: what the store holds
/// (set-id programs and device nodes of images, containers' roots and
/// volumes) must not be reachable by other users of the host. An existing
/// store with looser modes is tightened.
pub fn private_dirs(root: &Path, subs: &[&str]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for dir in std::iter::once(root.to_path_buf()).chain(subs.iter().map(|s| root.join(s))) {
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() && m.permissions().mode() & 0o077 != 0 => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A blob file as the store keeps it: owned by the store's user, mode
/// 0644, whatever owner and mode (set-id bits, world write) it came with.
pub(crate) fn seal_blob(path: &Path) -> io::Result<()> {
    // Through one fd of the file itself: a link swapped in is not followed.
    let fd = rfs::open(
        path,
        rfs::OFlags::RDONLY | rfs::OFlags::NOFOLLOW | rfs::OFlags::CLOEXEC,
        rfs::Mode::empty(),
    )?;
    rfs::fchown(
        &fd,
        Some(rustix::process::geteuid()),
        Some(rustix::process::getegid()),
    )?;
    rfs::fchmod(&fd, rfs::Mode::from_raw_mode(0o644))?;
    Ok(())
}

/// How long a store operation waits for another process's database lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a connection waits for a lock another process holds: short sleeps
/// (0.1 ms, doubling to 2 ms) for about 30 s. SQLite's own busy timeout
/// sleeps 1, 2, 5, 10, 15, 20, 25 ms and on, so a lock held for a
/// millisecond (a container's exit recorded) cost a waiter 10 ms or more.
pub fn busy_wait(conn: &mut Connection) -> rusqlite::Result<()> {
    fn handler(tries: i32) -> bool {
        const MAX: u64 = 2_000;
        let micros = (100u64 << tries.clamp(0, 5)).min(MAX);
        std::thread::sleep(Duration::from_micros(micros));
        // After the first steps every wait is MAX: this many of them
        // make BUSY_TIMEOUT.
        (tries as u64) < BUSY_TIMEOUT.as_micros() as u64 / MAX
    }
    conn.busy_handler(Some(handler))
}

/// Settings and schema of a store database connection.
fn init_db(db: &Connection) -> rusqlite::Result<()> {
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.pragma_update(None, "foreign_keys", "ON")?;
    db.execute_batch(SCHEMA)?;
    // Stores made before snapshots could share a directory.
    let has_dir = db
        .prepare("SELECT 1 FROM pragma_table_info('snapshots') WHERE name = 'dir'")?
        .exists([])?;
    if !has_dir {
        db.execute("ALTER TABLE snapshots ADD COLUMN dir INTEGER", [])?;
    }
    db.execute_batch("CREATE INDEX IF NOT EXISTS snapshots_diff ON snapshots(diff_id)")
}

impl Store {
    /// Gives back the memory the database connection holds for its page
    /// cache (a long-lived process that rarely reads, a monitor).
    pub fn release_memory(&self) {
        let _ = self.db.execute_batch("PRAGMA shrink_memory");
    }

    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let root_err = |source| StoreError::Root {
            path: root.to_path_buf(),
            source,
        };
        for sub in ["blobs/sha256", "blobs/sha512", "snapshots", "tmp"] {
            fs::create_dir_all(root.join(sub)).map_err(root_err)?;
        }
        // The root alone keeps out what is made under it later
        // (containers, volumes, builds); these are made here.
        private_dirs(root, &["blobs", "snapshots", "tmp"]).map_err(root_err)?;
        let mut db = Connection::open(root.join("berth.db"))?;
        busy_wait(&mut db)?;
        // Two processes creating the database at once both hold a read lock
        // on the new (rollback-journal) file and want to upgrade it to
        // switch to WAL: SQLite breaks that deadlock by failing one with
        // SQLITE_BUSY at once, without waiting. Retry until the other is
        // done; every step is idempotent.
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            match init_db(&db) {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Store {
            root: root.to_path_buf(),
            db,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn db(&self) -> &Connection {
        &self.db
    }

    fn lock(&self, op: FlockOperation) -> Result<StoreLock, StoreError> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        rfs::flock(file.as_fd(), op).map_err(|e| io_err(&path)(e.into()))?;
        Ok(StoreLock { _file: file })
    }

    /// Held by every writer for the whole of its work; excludes gc.
    pub fn lock_shared(&self) -> Result<StoreLock, StoreError> {
        self.lock(FlockOperation::LockShared)
    }

    /// Held by gc; waits for writers to finish.
    pub fn lock_exclusive(&self) -> Result<StoreLock, StoreError> {
        self.lock(FlockOperation::LockExclusive)
    }

    /// A new private directory under `tmp/`, removed when dropped.
    pub fn temp_dir(&self) -> Result<TempDir, StoreError> {
        let base = self.root.join("tmp");
        for attempt in 0..100u32 {
            let name = format!(
                "{}-{}-{}",
                std::process::id(),
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0),
                attempt
            );
            let path = base.join(name);
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Err(io_err(&base)(io::ErrorKind::AlreadyExists.into()))
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(d);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob(d.clone()),
            _ => io_err(&path)(e),
        })
    }

    /// Reads a small blob (manifest, config) whole, refusing more than
    /// `limit` bytes.
    pub fn read_blob(&self, d: &Digest, limit: u64) -> Result<Vec<u8>, StoreError> {
        let f = self.open_blob(d)?;
        read_limited(f, d, limit).map_err(|e| match e {
            ReadLimited::TooLarge => StoreError::TooLarge {
                digest: d.clone(),
                limit,
            },
            ReadLimited::Io(source) => io_err(&self.blob_path(d))(source),
        })
    }

    /// Streams `input` into the store. The content is hashed while it is
    /// written to a temporary file; only when the digest matches `expected`
    /// (if given) and the file is fsynced is it renamed to its digest's
    /// name. Returns the digest and length.
    pub fn ingest(
        &self,
        input: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), StoreError> {
        let tmp = self.temp_dir()?;
        let path = tmp.path().join("blob");
        let (digest, size) = write_verified(input, &path, expected)?;
        self.commit_blob_file(&path, &digest)?;
        Ok((digest, size))
    }

    /// Puts a verified, fsynced file in place as blob `digest`, owned by
    /// the store's user with mode 0644 whatever it had (an archive's
    /// member keeps the owner and mode its header gave until then).
    pub(crate) fn commit_blob_file(
        &self,
        path: &Path,
        digest: &Digest,
    ) -> Result<bool, StoreError> {
        let dest = self.blob_path(digest);
        if dest.exists() {
            return Ok(false);
        }
        seal_blob(path).map_err(io_err(path))?;
        fs::rename(path, &dest).map_err(io_err(&dest))?;
        Ok(true)
    }

    // ---- metadata -------------------------------------------------------

    fn image_from_row(
        &self,
        row: &rusqlite::Row<'_>,
    ) -> rusqlite::Result<(String, String, String, Option<String>, i64, i64)> {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        ))
    }

    fn finish_image(
        &self,
        raw: (String, String, String, Option<String>, i64, i64),
    ) -> Result<ImageRecord, StoreError> {
        let (id, manifest_digest, manifest_media_type, created, size, added) = raw;
        let mut stmt = self
            .db
            .prepare_cached("SELECT name FROM tags WHERE image_id = ?1 ORDER BY added, name")?;
        let tags = stmt
            .query_map([&id], |r| r.get::<_, String>(0))?
            .filter_map(|t| t.ok().and_then(|t| Reference::parse(&t).ok()))
            .collect();
        Ok(ImageRecord {
            id: id.parse()?,
            manifest_digest: manifest_digest.parse()?,
            manifest_media_type,
            created,
            size: size as u64,
            added,
            tags,
        })
    }

    /// Every image, newest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let mut stmt = self.db.prepare(
            "SELECT id, manifest_digest, manifest_media_type, created, size, added FROM images ORDER BY added DESC, created DESC, id",
        )?;
        let raws: Vec<_> = stmt
            .query_map([], |r| self.image_from_row(r))?
            .collect::<Result<_, _>>()?;
        raws.into_iter().map(|r| self.finish_image(r)).collect()
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>, StoreError> {
        let raw = self
            .db
            .query_row(
                "SELECT id, manifest_digest, manifest_media_type, created, size, added FROM images WHERE id = ?1",
                [id.to_string()],
                |r| self.image_from_row(r),
            )
            .optional()?;
        raw.map(|r| self.finish_image(r)).transpose()
    }

    /// Finds an image the way docker does: a reference (tag, or
    /// name@digest matching the manifest digest), a full image ID, or a
    /// unique ID prefix.
    pub fn resolve(&self, input: &str) -> Result<ImageRecord, StoreError> {
        if let Ok(r) = Reference::parse(input) {
            if let Some(d) = r.digest() {
                let found: Option<String> = self
                    .db
                    .query_row(
                        "SELECT id FROM images WHERE manifest_digest = ?1 OR id = ?1
                         UNION SELECT image_id FROM repo_digests WHERE name = ?2",
                        [d.to_string(), format!("{}/{}@{d}", r.domain(), r.path())],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(id) = found {
                    return self
                        .image(&id.parse()?)?
                        .ok_or_else(|| StoreError::NoSuchImage(input.to_string()));
                }
            } else if let Some(id) = self.tag_target(&r)? {
                return self
                    .image(&id)?
                    .ok_or_else(|| StoreError::NoSuchImage(input.to_string()));
            }
        }
        let hex = input.strip_prefix("sha256:").unwrap_or(input);
        if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let pattern = format!("sha256:{}%", hex.to_ascii_lowercase());
            let mut stmt = self.db.prepare("SELECT id FROM images WHERE id LIKE ?1")?;
            let ids: Vec<String> = stmt
                .query_map([pattern], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            match ids.len() {
                0 => {}
                1 => {
                    return self
                        .image(&ids[0].parse()?)?
                        .ok_or_else(|| StoreError::NoSuchImage(input.to_string()))
                }
                n => {
                    return Err(StoreError::Ambiguous {
                        input: input.to_string(),
                        count: n,
                    })
                }
            }
        }
        Err(StoreError::NoSuchImage(input.to_string()))
    }

    pub fn tag_target(&self, r: &Reference) -> Result<Option<Digest>, StoreError> {
        let id: Option<String> = self
            .db
            .query_row(
                "SELECT image_id FROM tags WHERE name = ?1",
                [r.to_string()],
                |row| row.get(0),
            )
            .optional()?;
        Ok(id.map(|s| s.parse()).transpose()?)
    }

    /// Points tag `r` at image `id`, moving it if it pointed elsewhere.
    pub fn tag(&mut self, r: &Reference, id: &Digest) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO tags(name, image_id, added) VALUES(?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, added = excluded.added",
            params![r.to_string(), id.to_string(), now_unix()],
        )?;
        Ok(())
    }

    /// Records that repository `repo` (a reference without tag or digest)
    /// knows image `id` by its manifest digest `manifest`, as a pull or a
    /// push tells.
    pub fn add_repo_digest(
        &mut self,
        repo: &Reference,
        manifest: &Digest,
        id: &Digest,
    ) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO repo_digests(name, image_id) VALUES(?1, ?2)
             ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
            params![
                format!("{}/{}@{manifest}", repo.domain(), repo.path()),
                id.to_string()
            ],
        )?;
        Ok(())
    }

    /// The `repository@digest` names of an image, docker's familiar form
    /// (`busybox@sha256:...`), sorted.
    pub fn repo_digests(&self, id: &Digest) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT name FROM repo_digests WHERE image_id = ?1 ORDER BY name")?;
        let names = stmt
            .query_map([id.to_string()], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(names
            .into_iter()
            .map(|n| Reference::parse(&n).map_or(n, |r| r.familiar()))
            .collect())
    }

    /// Removes tag `r`; returns whether it existed.
    pub fn untag(&mut self, r: &Reference) -> Result<bool, StoreError> {
        Ok(self
            .db
            .execute("DELETE FROM tags WHERE name = ?1", [r.to_string()])?
            > 0)
    }

    pub fn layers(&self, id: &Digest) -> Result<Vec<LayerRecord>, StoreError> {
        let mut stmt = self.db.prepare_cached(
            "SELECT blob_digest, media_type, blob_size, diff_id, chain_id FROM image_layers WHERE image_id = ?1 ORDER BY idx",
        )?;
        let rows: Vec<(String, String, i64, String, String)> = stmt
            .query_map([id.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(b, m, s, d, c)| {
                Ok(LayerRecord {
                    blob_digest: b.parse()?,
                    media_type: m,
                    blob_size: s as u64,
                    diff_id: d.parse()?,
                    chain_id: c.parse()?,
                })
            })
            .collect()
    }

    /// Whether some image has the layer chain `chain`.
    pub fn image_uses_chain(&self, chain: &Digest) -> Result<bool, StoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT 1 FROM image_layers WHERE chain_id = ?1 LIMIT 1",
                [chain.to_string()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn snapshot(&self, chain: &Digest) -> Result<Option<SnapshotRecord>, StoreError> {
        let row: Option<(i64, String, i64, i64, i64)> = self
            .db
            .query_row(
                "SELECT id, diff_id, diff_size, size, COALESCE(dir, id) FROM snapshots
                 WHERE chain_id = ?1",
                [chain.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        row.map(|(id, diff_id, diff_size, size, dir)| {
            Ok(SnapshotRecord {
                id,
                chain_id: chain.clone(),
                diff_id: diff_id.parse()?,
                diff_size: diff_size as u64,
                size: size as u64,
                path: self.snapshot_path(dir),
            })
        })
        .transpose()
    }

    /// The directory (its snapshot id) that holds diff `diff_id` unpacked,
    /// under whichever chain it was first unpacked.
    /// With the diff's tar size and content size.
    pub(crate) fn diff_dir(&self, diff_id: &Digest) -> Result<Option<(i64, u64, u64)>, StoreError> {
        diff_dir_in(&self.db, diff_id)
    }

    /// Whether blob `blob` is known to unpack to diff `diff_id`: an image
    /// or the build cache recorded the pair when it unpacked or made it.
    pub(crate) fn verified_pair(
        &self,
        blob: &Digest,
        diff_id: &Digest,
    ) -> Result<bool, StoreError> {
        Ok(self
            .db
            .prepare_cached(
                "SELECT 1 FROM image_layers WHERE blob_digest = ?1 AND diff_id = ?2
                 UNION ALL
                 SELECT 1 FROM layer_refs r JOIN snapshots s ON s.chain_id = r.chain_id
                  WHERE r.blob_digest = ?1 AND s.diff_id = ?2
                 LIMIT 1",
            )?
            .exists(params![blob.to_string(), diff_id.to_string()])?)
    }

    pub fn snapshot_path(&self, id: i64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// Snapshot records of an image, bottom layer first. A diff repeated in
    /// the image has one directory: see [`overlay_lowers`] before mounting.
    pub fn image_snapshots(&self, id: &Digest) -> Result<Vec<SnapshotRecord>, StoreError> {
        self.layers(id)?
            .iter()
            .map(|l| {
                self.snapshot(&l.chain_id)?.ok_or_else(|| {
                    StoreError::NoSuchImage(format!("{id} (layer {} missing)", l.chain_id))
                })
            })
            .collect()
    }

    /// Records that `holder` (a container, a build) uses image `id`.
    pub fn add_lease(&mut self, holder: &str, id: &Digest) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR IGNORE INTO leases(holder, image_id) VALUES(?1, ?2)",
            params![holder, id.to_string()],
        )?;
        Ok(())
    }

    pub fn remove_lease(&mut self, holder: &str) -> Result<(), StoreError> {
        self.db
            .execute("DELETE FROM leases WHERE holder = ?1", [holder])?;
        Ok(())
    }

    pub fn lease_holders(&self, id: &Digest) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT holder FROM leases WHERE image_id = ?1 ORDER BY holder")?;
        let v = stmt
            .query_map([id.to_string()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Begins a write transaction that takes the SQLite write lock at once.
    pub(crate) fn write_tx(&mut self) -> Result<rusqlite::Transaction<'_>, StoreError> {
        Ok(self
            .db
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

/// A directory removed (with its contents) when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = crate::layer::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove temporary directory");
        }
    }
}

pub(crate) enum ReadLimited {
    TooLarge,
    Io(io::Error),
}

/// Reads at most `limit` bytes and checks them against digest `d`.
pub(crate) fn read_limited(r: impl Read, _d: &Digest, limit: u64) -> Result<Vec<u8>, ReadLimited> {
    let mut buf = Vec::new();
    r.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(ReadLimited::Io)?;
    if buf.len() as u64 > limit {
        return Err(ReadLimited::TooLarge);
    }
    Ok(buf)
}

/// Copies `input` to a new file at `path`, hashing as it goes; fsyncs it and
/// checks the digest against `expected`. Leaves no file behind on error.
pub(crate) fn write_verified(
    input: impl Read,
    path: &Path,
    expected: Option<&Digest>,
) -> Result<(Digest, u64), StoreError> {
    let result = (|| {
        let file = File::create_new(path).map_err(io_err(path))?;
        let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        let mut w = HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, file), algorithm);
        let mut input = input;
        io::copy(&mut input, &mut w).map_err(io_err(path))?;
        let (buf, digest, size) = w.finish();
        let file = buf.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        file.sync_all().map_err(io_err(path))?;
        Ok((digest, size))
    })();
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// fsyncs a directory so that renames into it are durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}
