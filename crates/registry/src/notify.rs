//! Webhook notifications: when a manifest is pushed, pulled or deleted,
//! an event in distribution's envelope (`{"events":[...]}`, media type
//! `application/vnd.docker.distribution.events.v1+json`) is POSTed to each
//! configured endpoint, so that tools written for Docker's registry work
//! unchanged.
//!
//! A request never waits for a webhook: events go into a bounded queue
//! per endpoint (dropped, with a warning, when an endpoint is so far
//! behind that the queue is full), and a thread per endpoint delivers them
//! in order, retrying with a doubling backoff.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::Duration;

use crate::config::Endpoint;

/// How many events wait per endpoint before new ones are dropped.
const QUEUE: usize = 1024;

pub const MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// What happened.
pub struct Event {
    pub action: &'static str,
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub tag: Option<String>,
    /// The registry's own URL base (`http://host:port`), from the request.
    pub base: String,
    pub method: String,
    pub user_agent: String,
    pub actor: Option<String>,
}

struct Target {
    tx: SyncSender<String>,
    url: String,
    events: Vec<String>,
}

/// The endpoints and their delivery threads.
pub struct Notifier {
    targets: Vec<Target>,
    instance: String,
}

impl Notifier {
    /// Starts a delivery thread per endpoint.
    pub fn start(endpoints: Vec<Endpoint>) -> Result<Notifier, String> {
        let mut targets = Vec::new();
        for e in endpoints {
            for a in &e.events {
                if !matches!(a.as_str(), "push" | "pull" | "delete") {
                    return Err(format!(
                        "notification {}: unknown event {a:?} (use push, pull or delete)",
                        e.url
                    ));
                }
            }
            if !(e.url.starts_with("http://") || e.url.starts_with("https://")) {
                return Err(format!(
                    "notification {:?}: the URL must start with http:// or https://",
                    e.url
                ));
            }
            let timeout = crate::config::duration(
                "notification timeout",
                e.timeout.as_deref(),
                Duration::from_secs(5),
            )?;
            let backoff = crate::config::duration(
                "notification backoff",
                e.backoff.as_deref(),
                Duration::from_secs(1),
            )?;
            let attempts = e.attempts.unwrap_or(5).max(1);
            let (tx, rx) = sync_channel::<String>(QUEUE);
            let url = e.url.clone();
            let headers = e.headers.clone();
            std::thread::Builder::new()
                .name("webhook".into())
                .spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(timeout))
                        .build()
                        .into();
                    for body in rx {
                        deliver(&agent, &url, &headers, &body, attempts, backoff);
                    }
                })
                .map_err(|e| format!("starting a webhook thread: {e}"))?;
            targets.push(Target {
                tx,
                url: e.url,
                events: e.events,
            });
        }
        Ok(Notifier {
            targets,
            instance: crate::storage::random_id(),
        })
    }

    /// Queues an event for every endpoint that wants it; never blocks.
    pub fn send(&self, e: &Event) {
        let wanted: Vec<&Target> = self
            .targets
            .iter()
            .filter(|t| t.events.is_empty() || t.events.iter().any(|a| a == e.action))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let body = self.envelope(e);
        for t in wanted {
            match t.tx.try_send(body.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => tracing::warn!(
                    url = %t.url,
                    "webhook queue full: event dropped (the endpoint is not keeping up)"
                ),
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }

    fn envelope(&self, e: &Event) -> String {
        let id = crate::storage::random_id();
        let mut target = serde_json::json!({
            "mediaType": e.media_type,
            "size": e.size,
            "length": e.size,
            "digest": e.digest,
            "repository": e.repository,
            "url": format!("{}/v2/{}/manifests/{}", e.base, e.repository, e.digest),
        });
        if let Some(t) = &e.tag {
            target["tag"] = t.clone().into();
        }
        serde_json::json!({"events": [{
            "id": id,
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "action": e.action,
            "target": target,
            "request": {
                "id": id,
                "host": e.base.split("://").nth(1).unwrap_or(""),
                "method": e.method,
                "useragent": e.user_agent,
            },
            "actor": {"name": e.actor.clone().unwrap_or_default()},
            "source": {"instanceID": self.instance},
        }]})
        .to_string()
    }
}

/// POSTs one envelope, retrying failures (a transport error or any status
/// but 2xx) after `backoff`, doubled each time.
fn deliver(
    agent: &ureq::Agent,
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    body: &str,
    attempts: u32,
    backoff: Duration,
) {
    let mut wait = backoff;
    for attempt in 1..=attempts {
        let mut req = agent.post(url).header("Content-Type", MEDIA_TYPE);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let why = match req.send(body.as_bytes()) {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => format!("status {}", r.status()),
            Err(e) => e.to_string(),
        };
        if attempt == attempts {
            tracing::warn!(url, error = %why, attempts, "webhook failed: event dropped");
            return;
        }
        tracing::debug!(url, error = %why, attempt, "webhook failed; retrying");
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(300));
    }
}
