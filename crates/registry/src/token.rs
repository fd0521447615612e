//! Bearer tokens as Docker's token authentication describes them: a JWT
//! signed with ES256 (ECDSA P-256, SHA-256) whose `access` claim lists
//! the repositories and actions granted, issued by the token endpoint to
//! a client that proved who it is with basic auth (or to anyone, for
//! public repositories) and checked by the registry on every request.
//!
//! The signing key is a PKCS#8 file. Several registry processes sharing
//! one storage directory share its key, so a token one issued is good at
//! all of them.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// One grant: `{"type":"repository","name":"a/b","actions":["pull"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Access>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is not valid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYet,
    #[error("the token was issued by {0:?}, not this registry's issuer")]
    Issuer(String),
    #[error("the token is for service {0:?}, not this registry")]
    Audience(String),
}

/// The token issuer and checker: a key and the names tokens carry.
pub struct Tokens {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The key's id in token headers (RFC 7638 thumbprint).
    kid: String,
    pub issuer: String,
    pub service: String,
    pub lifetime: Duration,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tokens {
    /// Loads the PKCS#8 key at `path` (DER, or PEM "PRIVATE KEY"), making
    /// one if there is none. Two processes starting at once agree on one
    /// key: the file is created with a no-replace link.
    pub fn open(
        path: &Path,
        issuer: String,
        service: String,
        lifetime: Duration,
    ) -> std::io::Result<Tokens> {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng)
                    .map_err(|_| std::io::Error::other("cannot generate a P-256 key"))?;
                write_new(path, doc.as_ref())?;
                std::fs::read(path)?
            }
            Err(e) => return Err(e),
        };
        let der = pem_private_key(&bytes).unwrap_or(bytes);
        let key = EcdsaKeyPair::from_pkcs8(alg, &der, &rng).map_err(|e| {
            std::io::Error::other(format!(
                "{}: not a PKCS#8 P-256 private key ({e})",
                path.display()
            ))
        })?;
        let kid = thumbprint(key.public_key().as_ref());
        Ok(Tokens {
            key,
            rng,
            kid,
            issuer,
            service,
            lifetime,
        })
    }

    /// A signed token for `sub` with `access`.
    pub fn issue(&self, sub: &str, access: Vec<Access>) -> String {
        let iat = now();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": self.kid});
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: sub.to_string(),
            aud: self.service.clone(),
            exp: iat + self.lifetime.as_secs().max(1),
            nbf: iat.saturating_sub(1),
            iat,
            jti: crate::storage::random_id(),
            access,
        };
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(serde_json::to_vec(&claims).expect("claims serialize"))
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ECDSA signing does not fail with a valid key");
        format!("{signing_input}.{}", B64.encode(sig.as_ref()))
    }

    /// Checks a token's signature, issuer, audience and times.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: serde_json::Value = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header["alg"] != "ES256" {
            return Err(TokenError::Signature);
        }
        let sig = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        )
        .verify(&token.as_bytes()[..h.len() + 1 + c.len()], &sig)
        .map_err(|_| TokenError::Signature)?;
        let claims: Claims = B64
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::Issuer(claims.iss));
        }
        if claims.aud != self.service {
            return Err(TokenError::Audience(claims.aud));
        }
        let t = now();
        if t >= claims.exp {
            return Err(TokenError::Expired);
        }
        if t + 1 < claims.nbf {
            return Err(TokenError::NotYet);
        }
        Ok(claims)
    }
}

/// Parses a `scope` parameter: `repository:NAME:pull,push` (the name may
/// hold colons only before the last one, as in a registry with a port).
pub fn parse_scope(scope: &str) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    Some(Access {
        kind: kind.to_string(),
        name: name.to_string(),
        actions: actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

fn write_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".key-{}", crate::storage::random_id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    // A hard link does not replace: if another process made the key
    // first, keep theirs.
    let r = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// The DER inside a PEM "PRIVATE KEY" block.
fn pem_private_key(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let body = text
        .split("-----BEGIN PRIVATE KEY-----")
        .nth(1)?
        .split("-----END PRIVATE KEY-----")
        .next()?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// RFC 7638 thumbprint of an uncompressed P-256 point.
fn thumbprint(point: &[u8]) -> String {
    use sha2::Digest as _;
    let (x, y) = point[1..].split_at(32);
    let jwk = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        B64.encode(x),
        B64.encode(y)
    );
    B64.encode(sha2::Sha256::digest(jwk.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(dir: &Path, lifetime: u64) -> Tokens {
        Tokens::open(
            &dir.join("key"),
            "iss".into(),
            "svc".into(),
            Duration::from_secs(lifetime),
        )
        .unwrap()
    }

    #[test]
    fn issue_verify_and_tamper() {
        let t = tempfile::tempdir().unwrap();
        let a = tokens(t.path(), 60);
        let grant = vec![parse_scope("repository:a/b:pull,push").unwrap()];
        let tok = a.issue("alice", grant.clone());
        let c = a.verify(&tok).unwrap();
        assert_eq!((c.sub.as_str(), c.access), ("alice", grant));
        // Another process on the same key accepts it.
        assert!(tokens(t.path(), 60).verify(&tok).is_ok());
        // Changed claims break the signature.
        let mut parts: Vec<String> = tok.split('.').map(str::to_string).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
        claims["access"][0]["name"] = "c/d".into();
        parts[1] = B64.encode(claims.to_string());
        assert_eq!(
            a.verify(&parts.join(".")).err(),
            Some(TokenError::Signature)
        );
        assert_eq!(a.verify("x.y").err(), Some(TokenError::Malformed));
        // A key made elsewhere is not trusted.
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            tokens(other.path(), 60).verify(&tok).err(),
            Some(TokenError::Signature)
        );
        let wrong_aud = Tokens::open(
            &t.path().join("key"),
            "iss".into(),
            "other".into(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(matches!(
            wrong_aud.verify(&tok),
            Err(TokenError::Audience(_))
        ));
    }

    #[test]
    fn expiry() {
        let t = tempfile::tempdir().unwrap();
        let a = tokens(t.path(), 1);
        let tok = a.issue("alice", vec![]);
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(a.verify(&tok).err(), Some(TokenError::Expired));
    }

    #[test]
    fn scopes() {
        let s = parse_scope("repository:localhost:5000/a:pull").unwrap();
        assert_eq!((s.name.as_str(), s.actions.len()), ("localhost:5000/a", 1));
        assert_eq!(parse_scope("registry:catalog:*").unwrap().actions, ["*"]);
        assert!(parse_scope("nonsense").is_none());
        assert!(parse_scope(":a:pull").is_none());
    }
}
