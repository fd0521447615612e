#![no_main]
//! What the daemon reads from any client before the engine sees it: the
//! method and path (routes, version prefixes, percent escapes, image names
//! with slashes), the query (booleans, integers, JSON filters) and a
//! create body. Any input routes or fails cleanly, never a panic (the
//! shipped daemon aborts on one).

use berth_daemon::query::Query;
use berth_daemon::route::route;
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 5] = ["GET", "POST", "DELETE", "HEAD", "PUT"];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, '\n');
    let path = parts.next().unwrap_or("");
    let query = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");
    let _ = route(METHODS[m as usize % METHODS.len()], path);
    let q = Query::parse(Some(query));
    for k in ["all", "force", "t", "limit", "filters", "name"] {
        let _ = q.bool(k);
        let _ = q.int(k);
        let _ = q.get(k);
    }
    let _ = q.filters();
    if let Ok(b) = serde_json::from_str::<berth_service::create::CreateBody>(body) {
        let _ = b.into_request(Some("x".into()));
    }
});
