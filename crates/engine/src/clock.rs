//! Timestamps as Docker writes them (RFC 3339, nanoseconds, UTC).

/// Now, as Docker's records and logs write it.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
