//! Who may do what: users from an htpasswd file (bcrypt, as `htpasswd -B`
//! writes it), HTTP basic auth, and public repositories that anyone may
//! pull. Without an htpasswd file the registry is open.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: expected USER:BCRYPT-HASH (make one with `berth registry htpasswd USER`)"
    )]
    Line { path: String, line: usize },
}

/// The access rules of a registry.
#[derive(Debug, Default)]
pub struct Auth {
    /// user → bcrypt hash; empty: no authentication.
    users: HashMap<String, String>,
    /// Repositories anyone may pull: exact names, or prefixes ending in
    /// `/*`.
    public: Vec<String>,
    /// Credentials already checked (bcrypt is slow on purpose): the
    /// base64 of a header that verified, and its user.
    verified: Mutex<HashMap<String, String>>,
}

impl Auth {
    /// No authentication: everyone may pull and push.
    pub fn open() -> Auth {
        Auth::default()
    }

    /// Users from `htpasswd` (bcrypt entries only; `#` comments and blank
    /// lines skipped); `public` repositories pull anonymously.
    pub fn from_htpasswd(htpasswd: &Path, public: Vec<String>) -> Result<Auth, AuthError> {
        let path = htpasswd.display().to_string();
        let text = std::fs::read_to_string(htpasswd).map_err(|source| AuthError::Read {
            path: path.clone(),
            source,
        })?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            match l.split_once(':') {
                Some((u, h)) if !u.is_empty() && h.starts_with("$2") => {
                    users.insert(u.to_string(), h.to_string());
                }
                _ => return Err(AuthError::Line { path, line: i + 1 }),
            }
        }
        Ok(Auth {
            users,
            public,
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.users.is_empty()
    }

    fn is_public(&self, repo: &str) -> bool {
        self.public.iter().any(|p| match p.strip_suffix("/*") {
            Some(prefix) => repo.starts_with(&format!("{prefix}/")),
            None => p == repo,
        })
    }

    /// The user an `Authorization: Basic ...` header names, if its
    /// password is right.
    pub fn user(&self, authorization: Option<&str>) -> Option<String> {
        let b64 = authorization?.strip_prefix("Basic ")?.trim();
        if let Some(u) = self.verified.lock().ok()?.get(b64) {
            return Some(u.clone());
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (user, password) = raw.split_once(':')?;
        let hash = self.users.get(user)?;
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return None;
        }
        if let Ok(mut v) = self.verified.lock() {
            v.insert(b64.to_string(), user.to_string());
        }
        Some(user.to_string())
    }

    /// Whether a request may go on: anything with valid credentials,
    /// reads of public repositories without, everything when open.
    /// `repo` is None for `/v2/` itself.
    pub fn allows(&self, repo: Option<&str>, write: bool, authorization: Option<&str>) -> bool {
        if !self.enabled() {
            return true;
        }
        if !write && repo.is_some_and(|r| self.is_public(r)) {
            return true;
        }
        self.user(authorization).is_some()
    }
}

/// An htpasswd line for `user` (bcrypt, cost 10).
pub fn htpasswd_line(user: &str, password: &str) -> Result<String, bcrypt::BcryptError> {
    Ok(format!("{user}:{}", bcrypt::hash(password, 10)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_public_repos_and_the_cache() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("htpasswd");
        let line = htpasswd_line("alice", "s3cret").unwrap();
        std::fs::write(&f, format!("# users\n{line}\n")).unwrap();
        let a = Auth::from_htpasswd(&f, vec!["pub/*".into(), "open".into()]).unwrap();
        let basic = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        let good = basic("alice", "s3cret");
        assert_eq!(a.user(Some(&good)).as_deref(), Some("alice"));
        assert_eq!(a.user(Some(&good)).as_deref(), Some("alice"), "cached");
        assert!(a.user(Some(&basic("alice", "wrong"))).is_none());
        assert!(a.user(Some(&basic("bob", "s3cret"))).is_none());
        assert!(a.user(None).is_none());
        assert!(a.allows(Some("pub/x"), false, None));
        assert!(a.allows(Some("open"), false, None));
        assert!(!a.allows(Some("pub/x"), true, None));
        assert!(!a.allows(Some("private"), false, None));
        assert!(a.allows(Some("private"), true, Some(&good)));
        std::fs::write(&f, "alice:plain\n").unwrap();
        assert!(Auth::from_htpasswd(&f, vec![]).is_err());
    }
}
