//! `berth registry serve --config FILE`: the registry's settings as JSON
//! (kebab-case keys, as docker's daemon.json). Flags given on the command
//! line win over the file.
//!
//! ```json
//! {
//!   "addr": "0.0.0.0:5000",
//!   "storage": "/var/lib/berth/registry",
//!   "tls": {"cert": "/etc/berth/registry.crt", "key": "/etc/berth/registry.key"},
//!   "auth": {
//!     "htpasswd": "/etc/berth/htpasswd",
//!     "public": ["library/*"],
//!     "access": [{"repos": ["{user}/*"], "users": ["*"], "actions": ["pull", "push"]}],
//!     "token": {"issuer": "berth-registry", "service": "berth-registry", "lifetime": "5m"}
//!   },
//!   "uploads": {"ttl": "24h"},
//!   "gc": {"interval": "1h", "grace": "1h"},
//!   "notifications": [{"url": "http://hooks.local/registry", "events": ["push", "pull", "delete"]}]
//! }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub addr: Option<String>,
    pub storage: Option<PathBuf>,
    pub tls: Option<Tls>,
    pub auth: AuthConfig,
    pub uploads: Uploads,
    pub gc: Gc,
    pub notifications: Vec<Endpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthConfig {
    pub htpasswd: Option<PathBuf>,
    pub public: Vec<String>,
    pub access: Vec<crate::auth::Rule>,
    pub token: Option<TokenConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TokenConfig {
    /// The `iss` of tokens.
    pub issuer: String,
    /// The `aud` of tokens and the challenge's `service`; the issuer if
    /// unset.
    pub service: Option<String>,
    /// The token endpoint clients are sent to; this server's `/token` if
    /// unset.
    pub realm: Option<String>,
    /// The PKCS#8 P-256 signing key; `STORAGE/token.key` (made on first
    /// use) if unset.
    pub key: Option<PathBuf>,
    /// How long a token is good for (default 5m).
    pub lifetime: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Uploads {
    /// Uploads left untouched this long are removed (default 24h).
    pub ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Gc {
    /// Collect garbage this often while serving (default: never; `berth
    /// registry gc` runs it once).
    pub interval: Option<String>,
    /// Unreferenced blobs younger than this are kept (default 1h): a
    /// client that checked a blob exists has this long to push the
    /// manifest that references it.
    pub grace: Option<String>,
}

/// A webhook: events are POSTed as JSON, retried with backoff.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Endpoint {
    pub url: String,
    /// push, pull, delete (default: all).
    #[serde(default)]
    pub events: Vec<String>,
    /// Extra request headers, such as Authorization.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-attempt timeout (default 5s).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Attempts before an event is dropped (default 5).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// The first retry's delay, doubling after (default 1s).
    #[serde(default)]
    pub backoff: Option<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}:{}:{}: {e} (see `berth registry serve --help` for the format)",
                path.display(),
                e.line(),
                e.column()
            )
        })
    }
}

/// A duration setting, with its name in the error.
pub fn duration(what: &str, v: Option<&str>, default: Duration) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(s) => berth_image::duration::parse(s).map_err(|e| format!("{what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_and_typos_do_not() {
        let doc = include_str!("config.rs");
        let json: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```json"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        let c: Config = serde_json::from_str(&json).unwrap();
        assert_eq!(c.auth.access.len(), 1);
        assert_eq!(c.notifications[0].events.len(), 3);
        assert_eq!(c.auth.token.unwrap().issuer, "berth-registry");
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("c.json");
        std::fs::write(&f, "{\"adr\": \"x\"}").unwrap();
        let e = Config::load(&f).unwrap_err();
        assert!(
            e.contains("unknown field `adr`") && e.contains(":1:"),
            "{e}"
        );
    }
}
