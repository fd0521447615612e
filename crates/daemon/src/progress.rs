//! Push and pull progress as the Engine API streams it: one JSON object
//! a line (`status`, `id`, `progressDetail`, `progress`), and a failure
//! as `{"errorDetail": {"message"}, "error"}`.

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc::Sender;

/// A progress sink that writes JSON lines into a streamed body; called
/// from the blocking pool.
pub struct JsonProgress {
    tx: Sender<Bytes>,
}

impl JsonProgress {
    pub fn new(tx: Sender<Bytes>) -> JsonProgress {
        JsonProgress { tx }
    }

    pub fn send(&self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap_or_default();
        line.push(b'\n');
        let _ = self.tx.blocking_send(Bytes::from(line));
    }

    /// A failure after the stream began.
    pub fn error(&self, message: &str) {
        self.send(&json!({"errorDetail": {"message": message}, "error": message}));
    }
}

/// docker's progress bar text: `[==>   ] 1.2MB/3.4MB`.
fn bar(done: u64, total: u64) -> String {
    let width = 50u64;
    let filled = (done.min(total) * width).checked_div(total).unwrap_or(0);
    let mut s = String::from("[");
    for i in 0..width {
        s.push(match i.cmp(&filled) {
            std::cmp::Ordering::Less => '=',
            std::cmp::Ordering::Equal => '>',
            std::cmp::Ordering::Greater => ' ',
        });
    }
    s.push_str("] ");
    s.push_str(&format!(
        "{}/{}",
        berth_service::units::human_size(done),
        berth_service::units::human_size(total)
    ));
    s
}

impl berth_registry_client::progress::Progress for JsonProgress {
    fn line(&self, text: &str) {
        self.send(&json!({"status": text}));
    }
    fn layer(&self, id: &str, status: &str) {
        self.send(&json!({"status": status, "progressDetail": {}, "id": id}));
    }
    fn bytes(&self, id: &str, verb: &str, done: u64, total: u64) {
        self.send(&json!({
            "status": verb,
            "progressDetail": {"current": done, "total": total},
            "progress": bar(done, total),
            "id": id,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_as_docker_draws_them() {
        let b = bar(1, 2);
        assert!(b.starts_with("[=========================>"), "{b}");
        assert!(b.ends_with("] 1B/2B"), "{b}");
        assert!(bar(0, 0).starts_with("[>"));
    }
}
