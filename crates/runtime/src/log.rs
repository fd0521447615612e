//! A small `tracing` subscriber that writes logrus-style lines, the format
//! runc writes and containerd's go-runc reads back from `--log`:
//! text `time="…" level=warning msg="…" key=value`, or JSON
//! `{"level":"error","msg":"…","time":"…",…}`.
//!
//! Our own rather than tracing-subscriber: the latter's regex-based filter
//! alone was a quarter of berth-runc's code, and every page of the binary
//! that a start touches counts against its memory footprint.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::PathBuf;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Where and how log lines are written.
pub struct Logger {
    level: Level,
    json: bool,
    path: Option<PathBuf>,
}

impl Logger {
    /// `path`: append to this file (created if missing); stderr without
    /// one, or when it cannot be opened.
    pub fn new(level: Level, json: bool, path: Option<PathBuf>) -> Self {
        Self { level, json, path }
    }

    /// Installs this logger as the process-wide subscriber (once).
    pub fn install(self) {
        let _ = tracing::subscriber::set_global_default(self);
    }

    fn line(&self, event: &Event<'_>) -> String {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = logrus_level(event.metadata().level());
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        if self.json {
            let mut map = serde_json::Map::new();
            for (k, v) in fields.rest {
                map.insert(k, serde_json::Value::String(v));
            }
            map.insert("level".into(), level.into());
            map.insert("msg".into(), fields.message.into());
            map.insert("time".into(), time.into());
            let mut s = serde_json::Value::Object(map).to_string();
            s.push('\n');
            s
        } else {
            let mut s = format!(
                "time=\"{time}\" level={level} msg={}",
                quote(&fields.message)
            );
            for (k, v) in &fields.rest {
                let _ = write!(s, " {k}={}", quote(v));
            }
            s.push('\n');
            s
        }
    }
}

fn logrus_level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// logrus quotes a value only when it needs quoting.
fn quote(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | '@' | '^' | '+')
        });
    if plain {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.rest.push((field.name().to_string(), value));
        }
    }
}

impl Subscriber for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.level
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::from_level(self.level))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let line = self.line(event);
        let file = self.path.as_ref().and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        // One write per line, so concurrent writers do not interleave.
        let _ = match file {
            Some(mut f) => f.write_all(line.as_bytes()),
            None => std::io::stderr().write_all(line.as_bytes()),
        };
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_logrus_shaped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let logger = Logger::new(Level::WARN, true, Some(path.clone()));
        tracing::subscriber::with_default(logger, || {
            tracing::debug!("hidden");
            tracing::warn!(cap = "CAP_X", "careful here");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "warning");
        assert_eq!(v["msg"], "careful here");
        assert_eq!(v["cap"], "CAP_X");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));

        let path = dir.path().join("log.txt");
        let logger = Logger::new(Level::DEBUG, false, Some(path.clone()));
        tracing::subscriber::with_default(logger, || {
            tracing::debug!(path = "/a b", "two words");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#"level=debug msg="two words" path="/a b""#),
            "{text}"
        );
        assert!(text.starts_with("time=\""), "{text}");
    }
}
