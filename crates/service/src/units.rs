//! Docker's human units: sizes (`units.HumanSize`) and durations
//! (`units.HumanDuration`), as its status texts and tables word them.

/// docker's `units.HumanSize`: decimal units, three significant digits.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", three_significant(v), UNITS[i])
}

/// Go's `%.3g` for the values human_size produces (0 ≤ v < 1000).
fn three_significant(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// docker's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let minutes = s / 60;
    let hours = s / 3600;
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

/// "N units ago" for an RFC 3339 time, as docker's CREATED column.
pub fn ago(rfc3339: Option<&str>) -> String {
    let Some(t) = rfc3339.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "N/A".into();
    };
    let secs = chrono::Utc::now().signed_duration_since(t).num_seconds();
    format!("{} ago", human_duration(secs))
}
