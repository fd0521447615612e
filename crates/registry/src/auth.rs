//! Who may do what, as on Docker Hub: repositories are public (anyone
//! pulls) or private; users come from an htpasswd file (bcrypt, as
//! `htpasswd -B` writes it); rules grant users pull, push and delete per
//! repository. Clients prove who they are with HTTP basic auth on every
//! request, or, with a token issuer configured, once at the token endpoint
//! in exchange for a signed bearer token naming what they may do. Without
//! users or a token issuer the registry is open.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use serde::Deserialize;

use crate::token::{Access, TokenError, Tokens};

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
    #[error("access rule {0}: unknown action {1:?} (use pull, push, delete or *)")]
    Action(usize, String),
}

/// What a request does to a repository.
pub const PULL: &str = "pull";
pub const PUSH: &str = "push";
pub const DELETE: &str = "delete";

/// A rule of the registry's config: `users` (names, or `*` for any
/// signed-in user) may do `actions` on `repos` (names, or prefixes ending
/// in `/*`; `{user}` stands for the user's own name, so
/// `{"repos":["{user}/*"],"users":["*"],"actions":["pull","push"]}` gives
/// everyone a namespace of their own, as Docker Hub does).
#[derive(Debug, Clone, Deserialize)]
pub struct Rule {
    pub repos: Vec<String>,
    pub users: Vec<String>,
    pub actions: Vec<String>,
}

/// The access rules of a registry.
#[derive(Default)]
pub struct Auth {
    /// user → bcrypt hash.
    users: HashMap<String, String>,
    /// Repositories anyone may pull: exact names, or prefixes ending in
    /// `/*`.
    public: Vec<String>,
    /// Empty: every user may pull, push and delete everywhere.
    rules: Vec<Rule>,
    /// The bearer-token flow, when configured.
    pub tokens: Option<Tokens>,
    /// The token endpoint clients are sent to; None: this server's
    /// `/token`.
    pub realm: Option<String>,
    /// Credentials already checked (bcrypt is slow on purpose): the
    /// base64 of a header that verified, and its user.
    verified: Mutex<HashMap<String, String>>,
    /// What an unknown user's password is checked against (see
    /// `check_password`).
    decoy: std::sync::OnceLock<String>,
}

/// The token endpoint's refusal: the credentials are wrong, or there is
/// no token issuer.
#[derive(Debug, PartialEq, Eq)]
pub struct BadCredentials;

/// Why a request may not go on.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No (valid) credentials: answer 401 with a challenge. `error` is
    /// the bearer challenge's error (`invalid_token`), if any.
    Unauthenticated { error: Option<String> },
    /// Signed in, without the right: 403 DENIED with basic auth, 401
    /// `insufficient_scope` with a token (the client may ask for one
    /// with more).
    Denied,
}

fn matches(pattern: &str, repo: &str, user: Option<&str>) -> bool {
    let pattern = match user {
        Some(u) => pattern.replace("{user}", u),
        None if pattern.contains("{user}") => return false,
        None => pattern.to_string(),
    };
    match pattern.strip_suffix("/*") {
        Some(prefix) => repo.starts_with(&format!("{prefix}/")),
        None => pattern == "*" || pattern == repo,
    }
}

impl Auth {
    /// No authentication: everyone may pull and push.
    pub fn open() -> Auth {
        Auth::default()
    }

    /// Users from `htpasswd` (bcrypt entries only; `#` comments and blank
    /// lines skipped), or none; `public` repositories pull anonymously;
    /// `rules` grant per repository (none: users may do anything).
    pub fn new(
        htpasswd: Option<&Path>,
        public: Vec<String>,
        rules: Vec<Rule>,
    ) -> Result<Auth, AuthError> {
        let mut users = HashMap::new();
        if let Some(htpasswd) = htpasswd {
            let path = htpasswd.display().to_string();
            let text = std::fs::read_to_string(htpasswd).map_err(|source| AuthError::Read {
                path: path.clone(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                let l = line.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                match l.split_once(':') {
                    Some((u, h)) if !u.is_empty() && h.starts_with("$2") => {
                        users.insert(u.to_string(), h.to_string());
                    }
                    _ => {
                        return Err(AuthError::Line {
                            path: path.clone(),
                            line: i + 1,
                        })
                    }
                }
            }
        }
        for (i, r) in rules.iter().enumerate() {
            if let Some(a) = r
                .actions
                .iter()
                .find(|a| !matches!(a.as_str(), PULL | PUSH | DELETE | "*"))
            {
                return Err(AuthError::Action(i + 1, a.clone()));
            }
        }
        Ok(Auth {
            users,
            public,
            rules,
            ..Auth::default()
        })
    }

    /// Users from `htpasswd`, no rules.
    pub fn from_htpasswd(htpasswd: &Path, public: Vec<String>) -> Result<Auth, AuthError> {
        Auth::new(Some(htpasswd), public, Vec::new())
    }

    pub fn enabled(&self) -> bool {
        !self.users.is_empty() || self.tokens.is_some()
    }

    fn is_public(&self, repo: &str) -> bool {
        self.public.iter().any(|p| matches(p, repo, None))
    }

    /// The user a `Basic ...` credential names, if its password is right.
    pub fn user(&self, authorization: Option<&str>) -> Option<String> {
        let b64 = authorization?.strip_prefix("Basic ")?.trim();
        if let Some(u) = self.verified.lock().ok()?.get(b64) {
            return Some(u.clone());
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (user, password) = raw.split_once(':')?;
        self.check_password(user, password)?;
        if let Ok(mut v) = self.verified.lock() {
            v.insert(b64.to_string(), user.to_string());
        }
        Some(user.to_string())
    }

    /// Whether `password` is `user`'s. An unknown user costs a bcrypt
    /// check too (against a hash of the same cost), so the answer's timing
    /// does not tell which user names exist.
    fn check_password(&self, user: &str, password: &str) -> Option<()> {
        let Some(hash) = self.users.get(user) else {
            let _ = bcrypt::verify(password, self.decoy());
            return None;
        };
        bcrypt::verify(password, hash)
            .unwrap_or(false)
            .then_some(())
    }

    /// A bcrypt hash of nothing anyone knows, at the cost the users'
    /// hashes have (made once).
    fn decoy(&self) -> &str {
        self.decoy.get_or_init(|| {
            let cost = self
                .users
                .values()
                .filter_map(|h| h.split('$').nth(2)?.parse::<u32>().ok())
                .filter(|c| (4..=31).contains(c))
                .max()
                .unwrap_or(bcrypt::DEFAULT_COST);
            let mut secret = [0u8; 18];
            let _ = rustix::rand::getrandom(&mut secret, rustix::rand::GetRandomFlags::empty());
            bcrypt::hash(secret, cost)
                .or_else(|_| bcrypt::hash(secret, bcrypt::DEFAULT_COST))
                .expect("bcrypt hashes at its default cost")
        })
    }

    /// Who the request is: the basic-auth user whose password checks, or
    /// a bearer token's subject; None when anonymous or not valid.
    pub fn identity(&self, authorization: Option<&str>) -> Option<String> {
        if let Some(tokens) = &self.tokens {
            let tok = authorization?.strip_prefix("Bearer")?.trim();
            return tokens.verify(tok).ok().map(|c| c.sub);
        }
        self.user(authorization)
    }

    /// What `user` (None: anonymous) may do to `repo`.
    pub fn grants(&self, user: Option<&str>, repo: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.enabled() {
            return vec![PULL, PUSH, DELETE];
        }
        if self.is_public(repo) {
            out.push(PULL);
        }
        let Some(u) = user else { return out };
        if self.rules.is_empty() {
            return vec![PULL, PUSH, DELETE];
        }
        for r in &self.rules {
            let who = r.users.iter().any(|x| x == "*" || x == u);
            if !who || !r.repos.iter().any(|p| matches(p, repo, Some(u))) {
                continue;
            }
            for a in &r.actions {
                for x in [PULL, PUSH, DELETE] {
                    if (a == x || a == "*") && !out.contains(&x) {
                        out.push(x);
                    }
                }
            }
        }
        out
    }

    /// Whether a request may go on. `need` is the repository and action,
    /// None for `/v2/` itself (which needs valid credentials only).
    pub fn check(
        &self,
        need: Option<(&str, &str)>,
        authorization: Option<&str>,
    ) -> Result<(), Refusal> {
        if !self.enabled() {
            return Ok(());
        }
        if let Some(tokens) = &self.tokens {
            let Some(tok) = authorization.and_then(|a| a.strip_prefix("Bearer")) else {
                return Err(Refusal::Unauthenticated { error: None });
            };
            let claims = tokens
                .verify(tok.trim())
                .map_err(|e| Refusal::Unauthenticated {
                    error: Some(match e {
                        TokenError::Expired => "invalid_token: the token has expired".into(),
                        e => format!("invalid_token: {e}"),
                    }),
                })?;
            let Some((repo, action)) = need else {
                return Ok(());
            };
            let granted = claims.access.iter().any(|a| {
                a.kind == "repository"
                    && a.name == repo
                    && a.actions.iter().any(|x| x == action || x == "*")
            });
            return if granted {
                Ok(())
            } else {
                Err(Refusal::Denied)
            };
        }
        let user = self.user(authorization);
        if let Some((repo, action)) = need {
            if self.grants(user.as_deref(), repo).contains(&action) {
                return Ok(());
            }
        }
        match user {
            None => Err(Refusal::Unauthenticated { error: None }),
            Some(_) if need.is_none() => Ok(()),
            Some(_) => Err(Refusal::Denied),
        }
    }

    /// Who sent a request, for the record: the basic-auth user or the
    /// token's subject.
    pub fn actor(&self, authorization: Option<&str>) -> Option<String> {
        let a = authorization?;
        match (&self.tokens, a.strip_prefix("Bearer")) {
            (Some(t), Some(tok)) => t.verify(tok.trim()).ok().map(|c| c.sub),
            _ => self.user(Some(a)),
        }
    }

    /// The token endpoint: a token granting what `user` may do of what
    /// `scopes` ask. `Err` when basic credentials were given and are
    /// wrong (clients must learn that at `docker login`, not later).
    pub fn token(
        &self,
        authorization: Option<&str>,
        scopes: &[Access],
    ) -> Result<String, BadCredentials> {
        let tokens = self.tokens.as_ref().ok_or(BadCredentials)?;
        let user = match authorization {
            Some(a) if a.starts_with("Basic ") => Some(self.user(Some(a)).ok_or(BadCredentials)?),
            _ => None,
        };
        Ok(self.token_for(tokens, user.as_deref(), scopes))
    }

    /// The OAuth2 password grant (`POST /token`), as containerd uses it.
    pub fn token_with_password(
        &self,
        user: &str,
        password: &str,
        scopes: &[Access],
    ) -> Result<String, BadCredentials> {
        let tokens = self.tokens.as_ref().ok_or(BadCredentials)?;
        self.check_password(user, password).ok_or(BadCredentials)?;
        Ok(self.token_for(tokens, Some(user), scopes))
    }

    fn token_for(&self, tokens: &Tokens, user: Option<&str>, scopes: &[Access]) -> String {
        let access = scopes
            .iter()
            .filter(|s| s.kind == "repository" && crate::storage::valid_name(&s.name))
            .map(|s| {
                let may = self.grants(user, &s.name);
                Access {
                    kind: s.kind.clone(),
                    name: s.name.clone(),
                    actions: s
                        .actions
                        .iter()
                        .filter(|a| a.as_str() == "*" || may.contains(&a.as_str()))
                        .flat_map(|a| {
                            if a == "*" {
                                may.iter().map(|m| m.to_string()).collect()
                            } else {
                                vec![a.clone()]
                            }
                        })
                        .collect(),
                }
            })
            .filter(|a| !a.actions.is_empty())
            .collect();
        tokens.issue(user.unwrap_or(""), access)
    }
}

/// An htpasswd line for `user` (bcrypt, cost 10).
pub fn htpasswd_line(user: &str, password: &str) -> Result<String, bcrypt::BcryptError> {
    Ok(format!("{user}:{}", bcrypt::hash(password, 10)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    }

    fn users(dir: &Path) -> std::path::PathBuf {
        let f = dir.join("htpasswd");
        let a = htpasswd_line("alice", "s3cret").unwrap();
        let b = htpasswd_line("bob", "hunter2").unwrap();
        std::fs::write(&f, format!("# users\n{a}\n{b}\n")).unwrap();
        f
    }

    #[test]
    fn users_public_repos_and_the_cache() {
        let t = tempfile::tempdir().unwrap();
        let f = users(t.path());
        let a = Auth::from_htpasswd(&f, vec!["pub/*".into(), "open".into()]).unwrap();
        let good = basic("alice", "s3cret");
        assert_eq!(a.user(Some(&good)).as_deref(), Some("alice"));
        assert_eq!(a.user(Some(&good)).as_deref(), Some("alice"), "cached");
        assert!(a.user(Some(&basic("alice", "wrong"))).is_none());
        assert!(a.user(Some(&basic("carol", "s3cret"))).is_none());
        assert!(a.user(None).is_none());
        assert_eq!(a.check(Some(("pub/x", PULL)), None), Ok(()));
        assert_eq!(a.check(Some(("open", PULL)), None), Ok(()));
        let anon = Err(Refusal::Unauthenticated { error: None });
        assert_eq!(a.check(Some(("pub/x", PUSH)), None), anon);
        assert_eq!(a.check(Some(("private", PULL)), None), anon);
        assert_eq!(a.check(None, None), anon);
        assert_eq!(a.check(None, Some(&good)), Ok(()));
        assert_eq!(a.check(Some(("private", PUSH)), Some(&good)), Ok(()));
        std::fs::write(&f, "alice:plain\n").unwrap();
        assert!(Auth::from_htpasswd(&f, vec![]).is_err());
    }

    #[test]
    fn rules_grant_per_repository() {
        let t = tempfile::tempdir().unwrap();
        let f = users(t.path());
        let rules: Vec<Rule> = serde_json::from_str(
            r#"[{"repos":["{user}/*"],"users":["*"],"actions":["pull","push"]},
                {"repos":["team/*"],"users":["alice"],"actions":["*"]},
                {"repos":["team/*"],"users":["bob"],"actions":["pull"]}]"#,
        )
        .unwrap();
        let a = Auth::new(Some(&f), vec![], rules).unwrap();
        assert_eq!(a.grants(Some("bob"), "bob/app"), [PULL, PUSH]);
        assert!(a.grants(Some("bob"), "alice/app").is_empty());
        assert_eq!(a.grants(Some("alice"), "team/x"), [PULL, PUSH, DELETE]);
        assert_eq!(a.grants(Some("bob"), "team/x"), [PULL]);
        let bob = basic("bob", "hunter2");
        assert_eq!(
            a.check(Some(("team/x", PUSH)), Some(&bob)),
            Err(Refusal::Denied)
        );
        assert_eq!(a.check(Some(("team/x", PULL)), Some(&bob)), Ok(()));
        let bad: Vec<Rule> =
            serde_json::from_str(r#"[{"repos":["a"],"users":["*"],"actions":["write"]}]"#).unwrap();
        assert!(matches!(
            Auth::new(Some(&f), vec![], bad),
            Err(AuthError::Action(1, _))
        ));
    }

    #[test]
    fn tokens_carry_only_what_is_granted() {
        let t = tempfile::tempdir().unwrap();
        let f = users(t.path());
        let rules: Vec<Rule> = serde_json::from_str(
            r#"[{"repos":["team/*"],"users":["bob"],"actions":["pull"]},
                {"repos":["team/*"],"users":["alice"],"actions":["pull","push"]}]"#,
        )
        .unwrap();
        let mut a = Auth::new(Some(&f), vec!["pub/*".into()], rules).unwrap();
        a.tokens = Some(
            Tokens::open(
                &t.path().join("key"),
                "berth".into(),
                "reg".into(),
                std::time::Duration::from_secs(60),
            )
            .unwrap(),
        );
        let scope = |s: &str| vec![crate::token::parse_scope(s).unwrap()];
        let bearer = |t: String| format!("Bearer {t}");
        let bob = a
            .token(
                Some(&basic("bob", "hunter2")),
                &scope("repository:team/x:pull,push"),
            )
            .unwrap();
        assert_eq!(
            a.check(Some(("team/x", PULL)), Some(&bearer(bob.clone()))),
            Ok(())
        );
        assert_eq!(
            a.check(Some(("team/x", PUSH)), Some(&bearer(bob.clone()))),
            Err(Refusal::Denied)
        );
        assert_eq!(
            a.check(Some(("team/y", PULL)), Some(&bearer(bob))),
            Err(Refusal::Denied),
            "a token is good for the repositories it names only"
        );
        let alice = a
            .token(
                Some(&basic("alice", "s3cret")),
                &scope("repository:team/x:*"),
            )
            .unwrap();
        assert_eq!(
            a.check(Some(("team/x", PUSH)), Some(&bearer(alice))),
            Ok(())
        );
        assert!(a.token(Some(&basic("alice", "nope")), &[]).is_err());
        let anon = a.token(None, &scope("repository:pub/x:pull,push")).unwrap();
        assert_eq!(
            a.check(Some(("pub/x", PULL)), Some(&bearer(anon.clone()))),
            Ok(())
        );
        assert_eq!(
            a.check(Some(("pub/x", PUSH)), Some(&bearer(anon))),
            Err(Refusal::Denied)
        );
        assert!(matches!(
            a.check(Some(("pub/x", PULL)), Some("Bearer garbage")),
            Err(Refusal::Unauthenticated { error: Some(_) })
        ));
        assert_eq!(
            a.check(None, None),
            Err(Refusal::Unauthenticated { error: None })
        );
        assert!(a.token_with_password("alice", "s3cret", &[]).is_ok());
        assert!(a.token_with_password("alice", "x", &[]).is_err());
    }
}
