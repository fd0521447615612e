//! What push and pull report while they work: a sink (`Progress`) the
//! front end renders (the CLI's terminal bars live in the CLI); plain
//! lines, one per change of a layer's state, on any writer; with
//! `--quiet`, nothing.

use std::io::Write;
use std::sync::Mutex;

/// Where push and pull report.
pub trait Progress: Send + Sync {
    /// A line of its own ("Pulling from", "Digest: ...").
    fn line(&self, text: &str);
    /// A layer's state changed ("Pulling fs layer", "Pull complete").
    fn layer(&self, id: &str, status: &str);
    /// Bytes moved for a layer ("Downloading", "Pushing").
    fn bytes(&self, id: &str, verb: &str, done: u64, total: u64);
}

/// `--quiet`.
pub struct Quiet;

impl Progress for Quiet {
    fn line(&self, _: &str) {}
    fn layer(&self, _: &str, _: &str) {}
    fn bytes(&self, _: &str, _: &str, _: u64, _: u64) {}
}

/// Plain lines on a writer (stdout not a terminal, or stderr for `run`).
pub struct Lines<W: Write + Send>(pub Mutex<W>);

impl<W: Write + Send> Progress for Lines<W> {
    fn line(&self, text: &str) {
        if let Ok(mut w) = self.0.lock() {
            let _ = writeln!(w, "{text}");
        }
    }
    fn layer(&self, id: &str, status: &str) {
        self.line(&format!("{id}: {status}"));
    }
    fn bytes(&self, _: &str, _: &str, _: u64, _: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let l = Lines(Mutex::new(Vec::new()));
        l.layer("abc", "Pull complete");
        l.bytes("abc", "Downloading", 1, 2);
        l.line("Digest: x");
        assert_eq!(
            String::from_utf8(l.0.into_inner().unwrap()).unwrap(),
            "abc: Pull complete\nDigest: x\n"
        );
    }
}
