//! The engine's tables in the store's SQLite database (`berth.db`, WAL),
//! beside the image store's: containers, their exec instances and
//! volumes. This module owns their schema.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::EngineError;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL,
    image TEXT NOT NULL,
    created TEXT NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    monitor_pid INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    started_at TEXT NOT NULL DEFAULT '',
    finished_at TEXT NOT NULL DEFAULT '',
    restart_count INTEGER NOT NULL DEFAULT 0,
    health TEXT NOT NULL DEFAULT '',
    monitor_start INTEGER NOT NULL DEFAULT 0,
    stop_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS execs (
    id TEXT PRIMARY KEY,
    container TEXT NOT NULL,
    config TEXT NOT NULL,
    running INTEGER NOT NULL DEFAULT 0,
    pid INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER
);
CREATE INDEX IF NOT EXISTS execs_container ON execs (container);
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}',
    anonymous INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    subnet TEXT NOT NULL,
    gateway TEXT NOT NULL,
    ip_range TEXT NOT NULL DEFAULT '',
    internal INTEGER NOT NULL DEFAULT 0,
    bridge TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    network TEXT NOT NULL,
    container TEXT NOT NULL,
    ip TEXT NOT NULL,
    PRIMARY KEY (network, container),
    UNIQUE (network, ip)
);
"#;

/// One process run in a container by `exec` (Docker's exec instance): what
/// it runs, whether it runs, and its exit code once it has exited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecRecord {
    pub id: String,
    pub container: String,
    /// The OCI process it runs (JSON).
    pub config: String,
    pub running: bool,
    pub pid: i32,
    pub exit_code: Option<i32>,
    /// Its stdin is open for an attached client (`exec -i`).
    #[serde(default)]
    pub open_stdin: bool,
}

/// A container's lifecycle state, as docker names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Restarting => "restarting",
            State::Exited => "exited",
            State::Dead => "dead",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "created" => State::Created,
            "running" => State::Running,
            "paused" => State::Paused,
            "restarting" => State::Restarting,
            "exited" => State::Exited,
            _ => State::Dead,
        }
    }
}

/// One container as recorded.
#[derive(Debug, Clone)]
pub struct Record {
    /// 64 hex digits.
    pub id: String,
    /// Without docker's leading slash.
    pub name: String,
    pub image_id: String,
    /// The image as the user named it.
    pub image: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    pub config: crate::config::ContainerConfig,
    pub state: State,
    /// Init's host pid while running.
    pub pid: i32,
    /// The monitor process's pid while one runs.
    pub monitor_pid: i32,
    pub exit_code: i32,
    /// Why the last start failed, or why the exit code is not the process's.
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub restart_count: i64,
    /// The health-check state as JSON (docker's State.Health), "" when
    /// the container has no health check.
    pub health: String,
    /// The monitor's start time (clock ticks since boot), so a reused pid
    /// is never taken for it.
    pub monitor_start: u64,
    /// `stop` was asked for: no restart policy applies to this exit.
    pub stop_requested: bool,
    /// The kernel's OOM killer killed a process of the last run.
    pub oom_killed: bool,
}

/// A connection to the container table.
pub struct Db {
    conn: Connection,
}

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let config: String = row.get(5)?;
    let state: String = row.get(6)?;
    Ok(Record {
        id: row.get(0)?,
        name: row.get(1)?,
        image_id: row.get(2)?,
        image: row.get(3)?,
        created: row.get(4)?,
        config: serde_json::from_str(&config).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
        })?,
        state: State::parse(&state),
        pid: row.get(7)?,
        monitor_pid: row.get(8)?,
        exit_code: row.get(9)?,
        error: row.get(10)?,
        started_at: row.get(11)?,
        finished_at: row.get(12)?,
        restart_count: row.get(13)?,
        health: row.get(14)?,
        monitor_start: row.get::<_, i64>(15)? as u64,
        stop_requested: row.get(16)?,
        oom_killed: row.get(17)?,
    })
}

const COLUMNS: &str = "id, name, image_id, image, created, config, state, pid, monitor_pid, \
                       exit_code, error, started_at, finished_at, restart_count, health, \
                       monitor_start, stop_requested, oom_killed";

/// Adds a column to a table of an older store (a concurrent opener may
/// have added it first).
fn add_column(conn: &Connection, table: &str, column: &str, decl: &str) -> Result<(), EngineError> {
    let has = conn
        .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists([table, column])?;
    if has {
        return Ok(());
    }
    match conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}")) {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("duplicate column") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Db {
    /// Gives back the memory the connection's page cache holds.
    pub fn release_memory(&self) {
        let _ = self.conn.execute_batch("PRAGMA shrink_memory");
    }

    /// Opens the table in `root/berth.db` (the image store creates the file).
    pub fn open(root: &Path) -> Result<Db, EngineError> {
        let mut conn = Connection::open(root.join("berth.db"))?;
        berth_image::store::busy_wait(&mut conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        // Stores made before these were recorded get the columns.
        add_column(
            &conn,
            "containers",
            "oom_killed",
            "INTEGER NOT NULL DEFAULT 0",
        )?;
        add_column(&conn, "execs", "open_stdin", "INTEGER NOT NULL DEFAULT 0")?;
        Ok(Db { conn })
    }

    pub fn insert(&self, r: &Record) -> Result<(), EngineError> {
        let config = serde_json::to_string(&r.config).expect("config serializes");
        let res = self.conn.execute(
            &format!("INSERT INTO containers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"),
            params![
                r.id, r.name, r.image_id, r.image, r.created, config, r.state.as_str(), r.pid,
                r.monitor_pid, r.exit_code, r.error, r.started_at, r.finished_at, r.restart_count,
                r.health, r.monitor_start as i64, r.stop_requested, r.oom_killed
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let holder = self.get(&r.name)?.map(|o| o.id).unwrap_or_default();
                Err(EngineError::NameInUse {
                    name: r.name.clone(),
                    id: holder,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every field but id, name, created, config, health and
    /// stop_requested (each of those changes only through its own setter,
    /// so that a monitor's update from an older copy cannot undo it).
    pub fn update(&self, r: &Record) -> Result<(), EngineError> {
        self.conn.execute(
            "UPDATE containers SET state = ?2, pid = ?3, monitor_pid = ?4, \
             exit_code = ?5, error = ?6, started_at = ?7, finished_at = ?8, restart_count = ?9, \
             monitor_start = ?10, oom_killed = ?11 WHERE id = ?1",
            params![
                r.id,
                r.state.as_str(),
                r.pid,
                r.monitor_pid,
                r.exit_code,
                r.error,
                r.started_at,
                r.finished_at,
                r.restart_count,
                r.monitor_start as i64,
                r.oom_killed
            ],
        )?;
        Ok(())
    }

    /// Takes over a container whose monitor died, once: true only for the
    /// one caller that finds the row still running under monitor `from`
    /// (pid and start time), which becomes `to` (the caller, while it
    /// takes over; `(0, 0)` once it gives up). A caller that read the row
    /// before the monitor recorded the exit (or removed the container)
    /// gets false.
    pub fn claim_orphan(
        &self,
        id: &str,
        from: (i32, u64),
        to: (i32, u64),
    ) -> Result<bool, EngineError> {
        let n = self.conn.execute(
            "UPDATE containers SET monitor_pid = ?4, monitor_start = ?5 \
             WHERE id = ?1 AND monitor_pid = ?2 AND monitor_start = ?3 \
             AND state IN ('running', 'paused', 'restarting')",
            params![id, from.0, from.1 as i64, to.0, to.1 as i64],
        )?;
        Ok(n == 1)
    }

    /// The container's options (`update`).
    pub fn set_config(
        &self,
        id: &str,
        config: &crate::config::ContainerConfig,
    ) -> Result<(), EngineError> {
        let config = serde_json::to_string(config).expect("config serializes");
        self.conn.execute(
            "UPDATE containers SET config = ?2 WHERE id = ?1",
            params![id, config],
        )?;
        Ok(())
    }

    /// Moves the container from state `from` to `to`; false if it was not
    /// in `from` (its monitor changed it meanwhile).
    pub fn set_state_if(&self, id: &str, from: State, to: State) -> Result<bool, EngineError> {
        let n = self.conn.execute(
            "UPDATE containers SET state = ?3 WHERE id = ?1 AND state = ?2",
            params![id, from.as_str(), to.as_str()],
        )?;
        Ok(n == 1)
    }

    /// Marks a stop asked for by the user (no restart policy applies).
    pub fn set_stop_requested(&self, id: &str, v: bool) -> Result<(), EngineError> {
        self.conn.execute(
            "UPDATE containers SET stop_requested = ?2 WHERE id = ?1",
            params![id, v],
        )?;
        Ok(())
    }

    /// The health-check state (JSON, "" for none).
    pub fn set_health(&self, id: &str, health: &str) -> Result<(), EngineError> {
        self.conn.execute(
            "UPDATE containers SET health = ?2 WHERE id = ?1",
            params![id, health],
        )?;
        Ok(())
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Gives container `id` the name `name` (unique, as at insert).
    pub fn rename(&self, id: &str, name: &str) -> Result<(), EngineError> {
        match self.conn.execute(
            "UPDATE containers SET name = ?2 WHERE id = ?1",
            params![id, name],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let holder = self.get(name)?.map(|o| o.id).unwrap_or_default();
                Err(EngineError::NameInUse {
                    name: name.to_string(),
                    id: holder,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn delete(&self, id: &str) -> Result<(), EngineError> {
        self.conn
            .execute("DELETE FROM containers WHERE id = ?1", [id])?;
        self.conn
            .execute("DELETE FROM execs WHERE container = ?1", [id])?;
        Ok(())
    }

    pub fn insert_exec(&self, e: &ExecRecord) -> Result<(), EngineError> {
        self.conn.execute(
            "INSERT INTO execs (id, container, config, running, pid, exit_code, open_stdin) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                e.id,
                e.container,
                e.config,
                e.running,
                e.pid,
                e.exit_code,
                e.open_stdin
            ],
        )?;
        Ok(())
    }

    /// Claims a created exec for its one start (its pid set to -1 until
    /// the process runs): false if it was started or claimed already, so
    /// two racing starts run it once.
    pub fn claim_exec(&self, id: &str) -> Result<bool, EngineError> {
        let n = self.conn.execute(
            "UPDATE execs SET pid = -1 WHERE id = ?1 AND running = 0 AND pid = 0 \
             AND exit_code IS NULL",
            [id],
        )?;
        Ok(n == 1)
    }

    /// The exec's process runs as `pid`.
    pub fn exec_started(&self, id: &str, pid: i32) -> Result<(), EngineError> {
        self.conn.execute(
            "UPDATE execs SET running = 1, pid = ?2 WHERE id = ?1",
            params![id, pid],
        )?;
        Ok(())
    }

    /// The exec's process exited with `code` (None: it never ran).
    pub fn exec_exited(&self, id: &str, code: Option<i32>) -> Result<(), EngineError> {
        self.conn.execute(
            "UPDATE execs SET running = 0, exit_code = ?2 WHERE id = ?1",
            params![id, code],
        )?;
        Ok(())
    }

    pub fn get_exec(&self, id: &str) -> Result<Option<ExecRecord>, EngineError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, container, config, running, pid, exit_code, open_stdin \
                 FROM execs WHERE id = ?1",
                [id],
                |r| {
                    Ok(ExecRecord {
                        id: r.get(0)?,
                        container: r.get(1)?,
                        config: r.get(2)?,
                        running: r.get(3)?,
                        pid: r.get(4)?,
                        exit_code: r.get(5)?,
                        open_stdin: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    /// The ids of container `id`'s execs, oldest first.
    pub fn execs_of(&self, id: &str) -> Result<Vec<String>, EngineError> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM execs WHERE container = ?1 ORDER BY rowid")?;
        let ids = st
            .query_map([id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    /// Finds a container the way docker does: full id, exact name, or a
    /// unique id prefix.
    pub fn get(&self, key: &str) -> Result<Option<Record>, EngineError> {
        let key = key.strip_prefix('/').unwrap_or(key);
        let exact = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE id = ?1 OR name = ?1"),
                [key],
                record,
            )
            .optional()?;
        if exact.is_some() {
            return Ok(exact);
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM containers WHERE id LIKE ?1 || '%'"
        ))?;
        let found: Vec<Record> = stmt
            .query_map([key.to_ascii_lowercase()], record)?
            .collect::<Result<_, _>>()?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.into_iter().next()),
            _ => Err(EngineError::Ambiguous(key.to_string())),
        }
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<Record>, EngineError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM containers ORDER BY created DESC"
        ))?;
        let v = stmt.query_map([], record)?.collect::<Result<_, _>>()?;
        Ok(v)
    }
}
