//! `events` (`GET /events`): the engine's event log, filtered, and
//! followed until a time or for as long as the caller wants.

use berth_engine::events::Event;

use crate::filters::Filters;
use crate::{Error, Result};

#[derive(Debug, Clone, Default)]
pub struct EventsOptions {
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Without it, events are followed until the sink says stop.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub filters: Filters,
}

const FILTERS: &[&str] = &["container", "image", "event", "type", "label", "volume"];

fn matches(e: &Event, k: &str, v: &str) -> bool {
    let attr = |name: &str| e.actor.attributes.get(name).map(String::as_str);
    // moby's fuzzy match: a prefix of the id or of the name.
    let fuzzy =
        |v: &str| e.actor.id.starts_with(v) || attr("name").is_some_and(|n| n.starts_with(v));
    // An image named with or without its tag.
    let image_is =
        |name: Option<&str>| name.is_some_and(|n| n == v || strip_tag(n) == v || n == strip_tag(v));
    match k {
        "container" => e.typ == "container" && fuzzy(v),
        "image" => {
            image_is(attr("image"))
                || (e.typ == "image" && (e.actor.id == v || image_is(attr("name"))))
        }
        "event" => e.action == v,
        "type" => e.typ == v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => attr(lk) == Some(lv),
            None => attr(v).is_some(),
        },
        "volume" => e.typ == "volume" && fuzzy(v),
        _ => false,
    }
}

/// `name:tag` without its tag (a registry's port is not a tag).
fn strip_tag(name: &str) -> &str {
    match name.rsplit_once(':') {
        Some((n, tag)) if !tag.contains('/') && !name.contains('@') => n,
        _ => name,
    }
}

fn in_window(e: &Event, opts: &EventsOptions) -> bool {
    let t = e.time_nano;
    let nanos = |d: &chrono::DateTime<chrono::Utc>| d.timestamp_nanos_opt().unwrap_or(i64::MAX);
    opts.since.as_ref().is_none_or(|s| t >= nanos(s))
        && opts.until.as_ref().is_none_or(|u| t <= nanos(u))
}

/// Gives `sink` the events of the log `opts` selects, oldest first (none
/// of the past without `since` or `until`, as docker); then follows the
/// log (until `until`, or while `sink` returns true).
/// Whether `opts` can be served: known filter keys, a window in order.
pub fn check(_paths: &berth_engine::Paths, opts: &EventsOptions) -> Result<()> {
    opts.filters.check_keys(FILTERS, "berth events")?;
    if let (Some(s), Some(u)) = (&opts.since, &opts.until) {
        if s > u {
            return Err(Error::invalid("--since must be before --until"));
        }
    }
    Ok(())
}

pub fn events(
    paths: &berth_engine::Paths,
    opts: &EventsOptions,
    sink: &mut dyn FnMut(&Event) -> bool,
) -> Result<()> {
    events_while(paths, opts, sink, &|| true)
}

/// `events`, also ended (within a second) once `alive` says the reader
/// is gone, though no event comes to tell (the daemon's clients).
pub fn events_while(
    paths: &berth_engine::Paths,
    opts: &EventsOptions,
    sink: &mut dyn FnMut(&Event) -> bool,
    alive: &dyn Fn() -> bool,
) -> Result<()> {
    check(paths, opts)?;
    let keep = |e: &Event| {
        in_window(e, opts)
            && opts
                .filters
                .matches(|k, v| Ok(matches(e, k, v)))
                .unwrap_or(false)
    };
    let (past, mut follower) = berth_engine::events::read(&paths.runroot);
    // Without --since or --until only new events, as docker.
    let replay = opts.since.is_some() || opts.until.is_some();
    for e in past.iter().filter(|e| replay && keep(e)) {
        if !sink(e) {
            return Ok(());
        }
    }
    loop {
        if opts.until.is_some_and(|u| chrono::Utc::now() > u) {
            // What was written up to `until` is read once more.
            for e in follower.poll().iter().filter(|e| keep(e)) {
                if !sink(e) {
                    break;
                }
            }
            return Ok(());
        }
        // Woken by the next write to the log (or at `until`).
        let mut wait = std::time::Duration::from_secs(1);
        if let Some(u) = opts.until {
            let left = (u - chrono::Utc::now()).to_std().unwrap_or_default();
            wait = wait.min(left + std::time::Duration::from_millis(1));
        }
        for e in follower.wait(wait, None).iter().filter(|e| keep(e)) {
            if !sink(e) {
                return Ok(());
            }
        }
        if !alive() {
            return Ok(());
        }
    }
}

/// What `--format` templates see: the JSON fields and Docker's Go field
/// names (`.Status`, `.ID`, `.From`, `.Scope`, `.Time`, `.TimeNano`).
pub fn template_context(e: &Event) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        for (go, json) in [
            ("Status", "status"),
            ("ID", "id"),
            ("From", "from"),
            ("Scope", "scope"),
            ("Time", "time"),
            ("TimeNano", "timeNano"),
        ] {
            let x = m
                .get(json)
                .cloned()
                .unwrap_or(serde_json::Value::String(String::new()));
            m.insert(go.to_string(), x);
        }
    }
    v
}

/// docker events' line: `TIME TYPE ACTION ID (k=v, ...)`, the time in
/// the local zone (`Z` for UTC, as Go's RFC 3339).
pub fn line(e: &Event) -> String {
    let local = chrono::DateTime::from_timestamp_nanos(e.time_nano).with_timezone(&chrono::Local);
    let t = if local.offset().local_minus_utc() == 0 {
        local.format("%Y-%m-%dT%H:%M:%S%.9fZ")
    } else {
        local.format("%Y-%m-%dT%H:%M:%S%.9f%:z")
    };
    let attrs: Vec<String> = e
        .actor
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if attrs.is_empty() {
        format!("{t} {} {} {}", e.typ, e.action, e.actor.id)
    } else {
        format!(
            "{t} {} {} {} ({})",
            e.typ,
            e.action,
            e.actor.id,
            attrs.join(", ")
        )
    }
}
