//! File operations shared by the v1 and v2 managers.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupError;

/// Writes `value` to `dir/file` in one `write(2)` (cgroup files take one
/// command per write).
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    let res = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| CgroupError::Write {
        path,
        value: value.to_owned(),
        source,
    })
}

/// Reads `dir/file`, without the trailing newline.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(mut s) => {
            s.truncate(s.trim_end_matches('\n').len());
            Ok(s)
        }
        Err(source) => Err(CgroupError::Read { path, source }),
    }
}

/// Reads `dir/file` as an integer.
pub(crate) fn read_i64(dir: &Path, file: &str) -> Result<i64, CgroupError> {
    let s = read(dir, file)?;
    s.trim().parse().map_err(|_| CgroupError::Parse {
        path: dir.join(file),
        content: s,
    })
}

/// Whether `dir/file` exists.
pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// Creates `rel` below `base` (which must exist), one level at a time,
/// calling `each(parent, dir)` after each level exists. Returns the
/// directories it created, outermost first; on error it removes them again.
pub(crate) fn create(
    base: &Path,
    rel: &Path,
    mut each: impl FnMut(&Path, &Path) -> Result<(), CgroupError>,
) -> Result<Vec<PathBuf>, CgroupError> {
    let mut attempt = 0;
    'again: loop {
        let mut created = Vec::new();
        let mut cur = base.to_path_buf();
        for c in rel.components() {
            let dir = cur.join(c);
            match std::fs::create_dir(&dir) {
                Ok(()) => created.push(dir.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                // A concurrent rollback removed a parent we did not create.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 3 => {
                    remove_created(&created);
                    attempt += 1;
                    continue 'again;
                }
                Err(source) => {
                    remove_created(&created);
                    return Err(CgroupError::Create { path: dir, source });
                }
            }
            if let Err(e) = each(&cur, &dir) {
                remove_created(&created);
                return Err(e);
            }
            cur = dir;
        }
        return Ok(created);
    }
}

/// Removes directories [`create`] made, innermost first. Best effort: a
/// parent another container uses stays (EBUSY).
pub(crate) fn remove_created(created: &[PathBuf]) {
    for dir in created.iter().rev() {
        if let Err(e) = std::fs::remove_dir(dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::debug!(path = %dir.display(), error = %e, "cgroup not removed on rollback");
            }
        }
    }
}

/// Removes `dir` and every cgroup below it. Missing is fine.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    // A container's cgroup is usually a leaf: one rmdir, no listing.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Remove {
                path: dir.to_owned(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    // The kernel may still be tearing down exited processes.
    let mut delay = Duration::from_millis(10);
    for attempt in 0.. {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 6 => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
    unreachable!("the loop returns")
}

/// Moves `pid` (all its threads) into the cgroup `dir`.
pub(crate) fn join(dir: &Path, pid: i32) -> Result<(), CgroupError> {
    let res = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .and_then(|mut f| f.write_all(pid.to_string().as_bytes()));
    res.map_err(|source| CgroupError::Join {
        pid,
        path: dir.to_owned(),
        source,
    })
}

/// PIDs in `dir` and every cgroup below it; empty if `dir` is missing.
pub(crate) fn procs_recursive(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut out = Vec::new();
    collect_procs(dir, &mut out, true)?;
    Ok(out)
}

fn collect_procs(dir: &Path, out: &mut Vec<i32>, top: bool) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.procs");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        // Gone (or going) while we looked.
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || (!top && e.raw_os_error() == Some(libc::ENODEV)) =>
        {
            return Ok(())
        }
        Err(source) => return Err(CgroupError::Read { path, source }),
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        out.push(line.trim().parse().map_err(|_| CgroupError::Parse {
            path: path.clone(),
            content: line.to_owned(),
        })?);
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_procs(&entry.path(), out, false)?;
            }
        }
    }
    Ok(())
}

/// Polls `done` until it returns true or `timeout` passes; returns whether
/// it finished.
pub(crate) fn poll(
    timeout: Duration,
    mut done: impl FnMut(u32) -> Result<bool, CgroupError>,
) -> Result<bool, CgroupError> {
    let start = Instant::now();
    let mut delay = Duration::from_micros(100);
    for round in 0.. {
        if done(round)? {
            return Ok(true);
        }
        if start.elapsed() > timeout {
            return Ok(false);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
    unreachable!("the loop returns")
}

/// How long freezing or thawing may take.
pub(crate) const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
