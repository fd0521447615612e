//! Container logs in Docker's json-file format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"RFC3339Nano"}`, a line cut at
//! 16 KiB as Docker cuts it (the pieces without the newline).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Docker's maximum log line before it is split.
const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends a stream's output to the log, line by line, rotating it as
/// Docker's json-file driver does (`max-size`, `max-file`): the full file
/// becomes `NAME.1`, `NAME.1` becomes `NAME.2`, and so on.
pub struct Writer {
    file: File,
    path: PathBuf,
    /// Partial lines, per stream (0 stdout, 1 stderr).
    pending: [Vec<u8>; 2],
    size: u64,
    rotation: Rotation,
}

/// `--log-opt max-size=..., max-file=...`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rotation {
    /// Bytes; None keeps one growing file.
    pub max_size: Option<u64>,
    /// Files kept, the current one included (at least 1).
    pub max_files: u32,
}

impl Rotation {
    /// From json-file's options; unknown options are refused.
    pub fn from_opts(
        opts: &std::collections::BTreeMap<String, String>,
    ) -> Result<Rotation, crate::EngineError> {
        let mut r = Rotation {
            max_size: None,
            max_files: 1,
        };
        for (k, v) in opts {
            match k.as_str() {
                "max-size" => {
                    let n = crate::options::parse_size(v)?;
                    if n <= 0 {
                        return Err(crate::EngineError::Invalid(format!(
                            "invalid log option max-size={v}: must be a positive size"
                        )));
                    }
                    r.max_size = Some(n as u64);
                }
                "max-file" => {
                    r.max_files = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        crate::EngineError::Invalid(format!(
                            "invalid log option max-file={v}: must be a positive number"
                        ))
                    })?;
                }
                "compress" | "labels" | "env" | "tag" => {}
                other => {
                    return Err(crate::EngineError::Invalid(format!(
                        "unknown log opt '{other}' for json-file log driver"
                    )))
                }
            }
        }
        if r.max_files > 1 && r.max_size.is_none() {
            return Err(crate::EngineError::Invalid(
                "max-file cannot be used without max-size: give --log-opt max-size too".into(),
            ));
        }
        Ok(r)
    }
}

/// The rotated file `n` of `path` (`n` = 0 is the current file).
fn rotated(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

use crate::clock::now;

impl Writer {
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<Writer> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            file,
            path: path.to_path_buf(),
            pending: [Vec::new(), Vec::new()],
            size,
            rotation,
        })
    }

    /// Appends complete entries, rotating first when they would overflow
    /// max-size.
    fn append(&mut self, out: &[u8]) {
        let Some(max) = self.rotation.max_size else {
            self.write_out(out);
            return;
        };
        // Whole entries per file: cut the batch where the file would
        // overflow.
        let mut start = 0;
        let mut end = 0;
        for line in out.split_inclusive(|b| *b == b'\n') {
            let pending = (end - start) as u64;
            if self.size + pending + line.len() as u64 > max && self.size + pending > 0 {
                self.write_out(&out[start..end]);
                self.rotate();
                start = end;
            }
            end += line.len();
        }
        self.write_out(&out[start..end]);
    }

    fn write_out(&mut self, data: &[u8]) {
        if !data.is_empty() && self.file.write_all(data).is_ok() {
            self.size += data.len() as u64;
        }
    }

    fn rotate(&mut self) {
        let keep = self.rotation.max_files;
        if keep <= 1 {
            let _ = self.file.set_len(0);
            self.size = 0;
            return;
        }
        let _ = std::fs::remove_file(rotated(&self.path, keep - 1));
        for n in (1..keep - 1).rev() {
            let _ = std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
        }
        let _ = std::fs::rename(&self.path, rotated(&self.path, 1));
        if let Ok(f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            self.file = f;
            self.size = 0;
        }
    }

    /// Records `data` read from stream 0 (stdout) or 1 (stderr).
    pub fn write(&mut self, stream: usize, data: &[u8]) {
        let mut buf = std::mem::take(&mut self.pending[stream]);
        buf.extend_from_slice(data);
        let mut start = 0;
        let mut out = Vec::new();
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos + 1;
            for chunk in buf[start..end].chunks(MAX_LINE) {
                Self::line(&mut out, stream, chunk);
            }
            start = end;
        }
        let rest = buf.split_off(start);
        // A long line without its newline yet: flush whole 16 KiB pieces.
        let mut rest = rest;
        while rest.len() >= MAX_LINE {
            let tail = rest.split_off(MAX_LINE);
            Self::line(&mut out, stream, &rest);
            rest = tail;
        }
        self.pending[stream] = rest;
        if !out.is_empty() {
            self.append(&out);
        }
    }

    fn line(out: &mut Vec<u8>, stream: usize, text: &[u8]) {
        let e = Entry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream: if stream == 0 { "stdout" } else { "stderr" }.into(),
            time: now(),
        };
        serde_json::to_writer(&mut *out, &e).expect("serializes");
        out.push(b'\n');
    }

    /// Writes out partial lines (at exit).
    pub fn flush(&mut self) {
        let mut out = Vec::new();
        for stream in 0..2 {
            let rest = std::mem::take(&mut self.pending[stream]);
            if !rest.is_empty() {
                Self::line(&mut out, stream, &rest);
            }
        }
        if !out.is_empty() {
            self.append(&out);
        }
    }
}

fn parse_lines(data: &[u8]) -> impl Iterator<Item = Entry> + '_ {
    data.split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
}

/// Reads every entry of a log and its rotated files, oldest first, and
/// returns a follower positioned at the end. Lines that do not parse (a
/// torn last write) are skipped.
pub fn read(path: &Path) -> (Vec<Entry>, Follower) {
    let mut out = Vec::new();
    let mut n = 1;
    while rotated(path, n).exists() {
        n += 1;
    }
    for k in (1..n).rev() {
        if let Ok(data) = std::fs::read(rotated(path, k)) {
            out.extend(parse_lines(&data));
        }
    }
    let mut f = Follower {
        path: path.to_path_buf(),
        file: None,
        partial: Vec::new(),
    };
    out.extend(f.poll());
    (out, f)
}

/// Reads what is appended to a log, across rotations.
pub struct Follower {
    path: PathBuf,
    file: Option<(File, u64)>,
    partial: Vec<u8>,
}

impl Follower {
    fn inode(path: &Path) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| m.ino())
    }

    /// New complete entries since the last call.
    pub fn poll(&mut self) -> Vec<Entry> {
        let mut out = Vec::new();
        loop {
            if self.file.is_none() {
                let Ok(f) = File::open(&self.path) else {
                    return out;
                };
                let ino = Self::inode(&self.path).unwrap_or(0);
                self.file = Some((f, ino));
                self.partial.clear();
            }
            let (f, ino) = self.file.as_mut().expect("opened above");
            // Truncated in place (max-file=1): start again from its top.
            let pos = std::io::Seek::stream_position(f).unwrap_or(0);
            if f.metadata().map(|m| m.len() < pos).unwrap_or(false) {
                let _ = std::io::Seek::seek(f, std::io::SeekFrom::Start(0));
                self.partial.clear();
            }
            let mut data = std::mem::take(&mut self.partial);
            let _ = std::io::Read::read_to_end(f, &mut data);
            let cut = data.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            out.extend(parse_lines(&data[..cut]));
            self.partial = data[cut..].to_vec();
            // Rotated away: the rest of the old file is read; go on with
            // the new one.
            if Self::inode(&self.path) != Some(*ino) {
                self.file = None;
                continue;
            }
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_partials() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut w = Writer::open(&p, Rotation::default()).unwrap();
        w.write(0, b"hel");
        w.write(1, b"err\n");
        w.write(0, b"lo\nwor");
        w.write(0, b"ld\n");
        w.write(0, b"tail");
        w.flush();
        let (e, _) = read(&p);
        let got: Vec<(&str, &str)> = e
            .iter()
            .map(|e| (e.stream.as_str(), e.log.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("stderr", "err\n"),
                ("stdout", "hello\n"),
                ("stdout", "world\n"),
                ("stdout", "tail")
            ]
        );
        assert!(e[0].time.ends_with('Z'));
        let big = vec![b'x'; MAX_LINE * 2 + 5];
        w.write(0, &big);
        w.write(0, b"\n");
        let (e, _) = read(&p);
        assert_eq!(e.len(), 7);
        assert_eq!(e[4].log.len(), MAX_LINE);
        assert_eq!(e[6].log.len(), 6);
    }

    #[test]
    fn rotation_keeps_max_file_files_and_reads_in_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let rot = Rotation {
            max_size: Some(300),
            max_files: 3,
        };
        let mut w = Writer::open(&p, rot).unwrap();
        let (_, mut follower) = read(&p);
        let mut followed = Vec::new();
        for i in 0..40 {
            w.write(0, format!("line {i}\n").as_bytes());
            followed.extend(follower.poll().into_iter().map(|e| e.log));
        }
        assert!(rotated(&p, 1).exists() && rotated(&p, 2).exists());
        assert!(!rotated(&p, 3).exists());
        for n in 0..3 {
            assert!(std::fs::metadata(rotated(&p, n)).unwrap().len() <= 300);
        }
        let (all, _) = read(&p);
        let logs: Vec<String> = all.iter().map(|e| e.log.clone()).collect();
        // The newest lines, in order, up to line 39; the oldest dropped.
        assert_eq!(logs.last().unwrap(), "line 39\n");
        assert!(!logs.contains(&"line 0\n".to_string()));
        let first: usize = logs[0]
            .trim()
            .strip_prefix("line ")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(logs.len(), 40 - first);
        // A follower saw every line once, across the rotations.
        assert_eq!(followed.len(), 40, "{followed:?}");
        assert_eq!(followed[0], "line 0\n");
        let keep_one = Rotation {
            max_size: Some(100),
            max_files: 1,
        };
        let p1 = d.path().join("one");
        let mut w = Writer::open(&p1, keep_one).unwrap();
        for i in 0..30 {
            w.write(1, format!("e{i}\n").as_bytes());
        }
        assert!(std::fs::metadata(&p1).unwrap().len() <= 100);
        assert!(!rotated(&p1, 1).exists());
    }
}
