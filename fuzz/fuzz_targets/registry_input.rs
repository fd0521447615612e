#![no_main]
//! What a registry and its clients read from strangers: scopes, bearer
//! tokens, basic credentials, form bodies and WWW-Authenticate headers.
//! Any input parses or fails cleanly; a token never verifies unless this
//! key signed it.

use std::sync::LazyLock;

use berth_registry::token::{parse_scope, Tokens};
use libfuzzer_sys::fuzz_target;

static TOKENS: LazyLock<(tempfile::TempDir, Tokens)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let t = Tokens::open(
        &dir.path().join("key"),
        "fuzz".into(),
        "fuzz".into(),
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    (dir, t)
});

static AUTH: LazyLock<(tempfile::TempDir, berth_registry::auth::Auth)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("htpasswd");
    let line = format!("alice:{}", bcrypt_hash());
    std::fs::write(&f, line).unwrap();
    let a = berth_registry::auth::Auth::from_htpasswd(&f, vec!["pub/*".into()]).unwrap();
    (dir, a)
});

/// A hash no password matches (not valid bcrypt: its check fails at once,
/// where a real one would make every run slow on purpose).
fn bcrypt_hash() -> String {
    "$2b$04$not-a-valid-bcrypt-hash".to_string()
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(a) = parse_scope(s) {
        assert!(!a.kind.is_empty() && !a.name.is_empty());
    }
    assert!(TOKENS.1.verify(s).is_err(), "a token this key did not sign verified");
    let _ = AUTH.1.user(Some(s));
    let _ = AUTH.1.check(Some((s, "pull")), Some(s));
    let _ = berth_registry::server::form_pairs(s);
    let _ = berth_registry::client::parse_challenge(s);
});
