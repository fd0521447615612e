//! Container logs in Docker's json-file format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"RFC3339Nano"}`, a line cut at
//! 16 KiB as Docker cuts it (the pieces without the newline).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Docker's maximum log line before it is split.
const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends a stream's output to the log, line by line.
pub struct Writer {
    file: File,
    /// Partial lines, per stream (0 stdout, 1 stderr).
    pending: [Vec<u8>; 2],
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl Writer {
    pub fn open(path: &Path) -> std::io::Result<Writer> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Writer {
            file,
            pending: [Vec::new(), Vec::new()],
        })
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
            let _ = self.file.write_all(&out);
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
            let _ = self.file.write_all(&out);
        }
    }
}

/// Reads every entry of a log file (a missing file has none). Lines that
/// do not parse (a torn last write) are skipped.
pub fn read(path: &Path) -> Vec<Entry> {
    let Ok(f) = File::open(path) else {
        return Vec::new();
    };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_partials() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut w = Writer::open(&p).unwrap();
        w.write(0, b"hel");
        w.write(1, b"err\n");
        w.write(0, b"lo\nwor");
        w.write(0, b"ld\n");
        w.write(0, b"tail");
        w.flush();
        let e = read(&p);
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
        let e = read(&p);
        assert_eq!(e.len(), 7);
        assert_eq!(e[4].log.len(), MAX_LINE);
        assert_eq!(e[6].log.len(), 6);
    }
}
