//! The build cache: a step's key (from its parent's key, the instruction
//! with its values expanded, the build args in scope, and for COPY the
//! content hash of what it copies) names the stage state after the step.
//! The layers of a cached state are held in the image store under
//! `build:KEY`, so image removal and gc keep them.

use berth_image::store::Store;
use rusqlite::{params, OptionalExtension};

use crate::state::State;
use crate::BuildError;

pub struct Cache {
    db: rusqlite::Connection,
}

/// One cached step.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    /// Unix seconds.
    pub created: i64,
    pub last_used: i64,
    /// The chain id of the state's last layer (none for a state of no
    /// layers, such as `FROM scratch` and `ENV`).
    pub top: Option<String>,
}

pub const HOLDER_PREFIX: &str = "build:";

impl Cache {
    pub fn open(root: &std::path::Path) -> Result<Cache, BuildError> {
        let db = rusqlite::Connection::open(root.join("berth.db"))?;
        db.busy_timeout(std::time::Duration::from_secs(30))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS build_cache(
                key TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                created INTEGER NOT NULL,
                used INTEGER NOT NULL
            )",
        )?;
        Ok(Cache { db })
    }

    /// The state cached under `key`, if its layers are all still there.
    pub fn get(&self, store: &Store, key: &str) -> Result<Option<State>, BuildError> {
        let row: Option<String> = self
            .db
            .query_row("SELECT state FROM build_cache WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(text) = row else {
            return Ok(None);
        };
        let Ok(state) = serde_json::from_str::<State>(&text) else {
            return Ok(None);
        };
        for l in &state.layers {
            if store.snapshot(&l.chain_id()?)?.is_none() {
                return Ok(None);
            }
        }
        let _ = self.db.execute(
            "UPDATE build_cache SET used = ?2 WHERE key = ?1",
            params![key, berth_image::store::now_unix()],
        );
        Ok(Some(state))
    }

    /// Records `state` under `key`, holding its layers.
    pub fn put(&self, store: &mut Store, key: &str, state: &State) -> Result<(), BuildError> {
        let layers = state.layer_records()?;
        berth_image::built::hold_layers(store, &format!("{HOLDER_PREFIX}{key}"), &layers)?;
        let now = berth_image::store::now_unix();
        self.db.execute(
            "INSERT INTO build_cache(key, state, created, used) VALUES(?1, ?2, ?3, ?3)
             ON CONFLICT(key) DO UPDATE SET state = excluded.state, used = excluded.used",
            params![key, serde_json::to_string(state).expect("serializes"), now],
        )?;
        Ok(())
    }

    /// Every cached step, oldest first.
    pub fn entries(&self) -> Result<Vec<Entry>, BuildError> {
        let mut stmt = self
            .db
            .prepare("SELECT key, state, created, used FROM build_cache ORDER BY created, key")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, state, created, used) = row?;
            let top = serde_json::from_str::<State>(&state)
                .ok()
                .and_then(|s| s.layers.last().map(|l| l.chain_id.clone()));
            out.push(Entry {
                key,
                created,
                last_used: used,
                top,
            });
        }
        Ok(out)
    }

    /// `berth builder prune`: forgets every cached step and frees what only
    /// the cache held. Returns the number of steps forgotten.
    pub fn prune(
        &self,
        store: &mut Store,
    ) -> Result<(usize, berth_image::gc::GcReport), BuildError> {
        let n = self.db.execute("DELETE FROM build_cache", [])?;
        berth_image::built::release_layers(store, HOLDER_PREFIX)?;
        let _ = self.db.execute("DELETE FROM build_file_hashes", []);
        let report = berth_image::gc::collect(store)?;
        Ok((n, report))
    }
}
