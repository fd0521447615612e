//! Docker's event log: what happened to containers, images and volumes,
//! as JSON lines (the Engine API's event messages) appended to
//! `RUNROOT/events.log`, where any process can read and follow it: the
//! CLI's `berth events` and the daemon's `/events`. Like Docker's, the log
//! does not outlive a reboot; it is bounded (the file is rotated to
//! `events.log.1` past 1 MiB, one old file kept).
//!
//! Each event is one `write` on an O_APPEND file, so concurrent writers
//! (the CLI, monitors, the daemon) never interleave within a line.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Seek, Write};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Past this size the log is rotated.
const MAX_LOG: u64 = 1 << 20;

/// The object an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// One event (the Engine API's `EventMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// container, image, volume, network.
    #[serde(rename = "Type")]
    pub typ: String,
    /// create, start, die, oom, kill, stop, pause, unpause, rename,
    /// destroy; pull, push, tag, untag, delete, load, import; ...
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    /// Unix seconds.
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// The older API's fields (containers and images).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from: Option<String>,
}

impl Event {
    pub fn new(typ: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Event {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or(0);
        let legacy = matches!(typ, "container" | "image");
        Event {
            typ: typ.into(),
            action: action.into(),
            scope: "local".into(),
            time: now.timestamp(),
            time_nano: nanos,
            status: legacy.then(|| action.to_string()),
            id: legacy.then(|| id.to_string()),
            from: (typ == "container")
                .then(|| attributes.get("image").cloned())
                .flatten(),
            actor: Actor {
                id: id.into(),
                attributes,
            },
        }
    }
}

/// The log under `runroot`.
pub fn log_path(runroot: &Path) -> PathBuf {
    runroot.join("events.log")
}

fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// Appends `event` to the log. Failing to record an event never fails
/// the operation it describes: it is logged and dropped.
pub fn emit(runroot: &Path, event: &Event) {
    let path = log_path(runroot);
    let mut line = match serde_json::to_vec(event) {
        Ok(l) => l,
        Err(_) => return,
    };
    line.push(b'\n');
    let res = (|| -> std::io::Result<()> {
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_LOG) {
            rotate(runroot, &path)?;
        }
        let mut f = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A runroot not made yet (after a reboot, before any
                // container): made as the engine makes it.
                std::fs::create_dir_all(runroot)?;
                berth_image::store::private_dirs(runroot, &[])?;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?
            }
            r => r?,
        };
        f.write_all(&line)
    })();
    if let Err(e) = res {
        tracing::debug!(path = %path.display(), error = %e, "cannot record an event");
    }
}

/// Rotates a full log, one writer at a time (under `events.lock`), and
/// only if it is still the full file once the lock is held.
fn rotate(runroot: &Path, path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(runroot.join("events.lock"))?;
    rustix::fs::flock(lock.as_fd(), rustix::fs::FlockOperation::LockExclusive)?;
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_LOG) {
        std::fs::rename(path, rotated(path))?;
    }
    Ok(())
}

/// Every event the log holds, oldest first, and a follower for new ones.
pub fn read(runroot: &Path) -> (Vec<Event>, Follower) {
    let path = log_path(runroot);
    // The current file first: a rotation meanwhile leaves it as the old
    // one, read whole from the open file either way.
    let mut follower = Follower::new(runroot);
    follower.open();
    let mut out = Vec::new();
    if let Ok(f) = std::fs::File::open(rotated(&path)) {
        use std::os::unix::fs::MetadataExt;
        let same = match (&follower.file, f.metadata()) {
            (Some(cur), Ok(old)) => cur.metadata().is_ok_and(|c| c.ino() == old.ino()),
            _ => false,
        };
        if !same {
            out.extend(parse(std::io::BufReader::new(f)));
        }
    }
    out.extend(follower.poll());
    (out, follower)
}

fn parse(r: impl BufRead) -> Vec<Event> {
    r.split(b'\n')
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_slice(&l).ok())
        .collect()
}

/// Reads what is appended to the log after what it has read, across
/// rotations: the file it has open is read to its end before it moves to
/// the new one (as `tail -F`).
pub struct Follower {
    path: PathBuf,
    file: Option<std::fs::File>,
    offset: u64,
    partial: Vec<u8>,
    /// Set up before anything is read, so no write after the read is
    /// missed; None where inotify is not to be had (then `wait` sleeps).
    watch: Option<crate::watch::Watch>,
}

impl Follower {
    fn new(runroot: &Path) -> Follower {
        let path = log_path(runroot);
        Follower {
            watch: crate::watch::Watch::new(&path).ok(),
            path,
            file: None,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// A follower of what is written from now on (nothing of the past is
    /// read).
    pub fn from_now(runroot: &Path) -> Follower {
        let mut f = Follower::new(runroot);
        f.open();
        if let Some(file) = f.file.as_ref() {
            f.offset = file.metadata().map(|m| m.len()).unwrap_or(0);
        }
        f
    }

    /// The events appended since the last call, waiting up to `timeout`
    /// for one (or for `also`, a pidfd, to say its process exited).
    pub fn wait(
        &mut self,
        timeout: std::time::Duration,
        also: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Vec<Event> {
        let now = self.poll();
        if !now.is_empty() {
            return now;
        }
        match &self.watch {
            Some(w) => {
                w.wait(timeout, also);
            }
            None => std::thread::sleep(timeout.min(std::time::Duration::from_millis(50))),
        }
        self.poll()
    }

    fn open(&mut self) {
        self.file = std::fs::File::open(&self.path).ok();
        self.offset = 0;
    }

    /// Whether the log's path now names another file than the open one.
    fn rotated(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(now) = std::fs::metadata(&self.path) else {
            return false;
        };
        match &self.file {
            Some(f) => f.metadata().is_ok_and(|m| m.ino() != now.ino()),
            None => true,
        }
    }

    /// Everything appended to the open file since the last read.
    fn drain(&mut self) -> Vec<Event> {
        let Some(f) = self.file.as_mut() else {
            return Vec::new();
        };
        if f.seek(std::io::SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = std::mem::take(&mut self.partial);
        let start = buf.len();
        let _ = f.read_to_end(&mut buf);
        // What was read counts, whether or not the read ended in an error.
        self.offset += (buf.len() - start) as u64;
        // A line still being written stays for the next poll.
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.partial = buf.split_off(complete);
        parse(&buf[..])
    }

    /// The events appended since the last call.
    pub fn poll(&mut self) -> Vec<Event> {
        let rotated = self.rotated();
        let mut out = self.drain();
        if rotated {
            // The old file's last line, if any, was complete or is lost
            // with its writer.
            self.partial.clear();
            self.open();
            out.extend(self.drain());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_appended_read_and_followed_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let attrs = BTreeMap::from([("name".to_string(), "web".to_string())]);
        emit(
            dir.path(),
            &Event::new("container", "create", "abc", attrs.clone()),
        );
        let (all, mut f) = read(dir.path());
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].action, "create");
        assert_eq!(all[0].status.as_deref(), Some("create"));
        assert!(f.poll().is_empty());
        emit(
            dir.path(),
            &Event::new("container", "start", "abc", attrs.clone()),
        );
        assert_eq!(f.poll()[0].action, "start");
        // Appended to the old file, then rotated, then one more in the
        // new file: the follower gets both, in order. (Losing what the
        // old file got after the last read was the bug.)
        emit(
            dir.path(),
            &Event::new("container", "die", "abc", attrs.clone()),
        );
        std::fs::rename(log_path(dir.path()), rotated(&log_path(dir.path()))).unwrap();
        emit(
            dir.path(),
            &Event::new("volume", "create", "v", BTreeMap::new()),
        );
        let new = f.poll();
        let actions: Vec<_> = new.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["die", "create"]);
        assert_eq!(new[1].typ, "volume");
        assert_eq!(new[1].id, None);
        let (all, _) = read(dir.path());
        assert_eq!(all.len(), 4);
        // A torn last line waits for its end.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(log_path(dir.path()))
            .unwrap();
        let line =
            serde_json::to_string(&Event::new("image", "tag", "i", BTreeMap::new())).unwrap();
        file.write_all(&line.as_bytes()[..10]).unwrap();
        assert!(f.poll().is_empty());
        file.write_all(&line.as_bytes()[10..]).unwrap();
        file.write_all(b"\n").unwrap();
        assert_eq!(f.poll()[0].action, "tag");
    }

    /// Writers racing to rotate a full log rotate it once: no history is
    /// renamed over by a second rotation of a fresh file.
    #[test]
    fn concurrent_writers_rotate_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path());
        let attrs = BTreeMap::from([("pad".to_string(), "x".repeat(200))]);
        while std::fs::metadata(&path).map_or(0, |m| m.len()) <= MAX_LOG {
            emit(
                dir.path(),
                &Event::new("image", "tag", "fill", attrs.clone()),
            );
        }
        let before = std::fs::metadata(&path).unwrap().len();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    emit(
                        dir.path(),
                        &Event::new("image", "tag", "race", BTreeMap::new()),
                    )
                });
            }
        });
        assert!(std::fs::metadata(rotated(&path)).unwrap().len() >= before);
        let (all, _) = read(dir.path());
        assert_eq!(all.iter().filter(|e| e.actor.id == "race").count(), 4);
    }
}
