//! Docker image references: `[domain/]path[:tag][@digest]`.
//!
//! The grammar is Docker's (github.com/distribution/reference), written out
//! by hand rather than as a regular expression:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [ domain "/" ] path
//! domain           := host [ ":" port ]
//! host             := domain-name | "[" ipv6-chars "]"
//! domain-name      := domain-component [ "." domain-component ]*
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! port             := [0-9]+
//! ipv6-chars       := [a-fA-F0-9:]+
//! path             := path-component [ "/" path-component ]*
//! path-component   := alnum [ separator alnum ]*
//! alnum            := [a-z0-9]+
//! separator        := "." | "_" | "__" | "-"+
//! tag              := [\w][\w.-]{0,127}
//! ```
//!
//! Normalisation follows Docker's `ParseNormalizedNamed`: the first
//! `/`-separated component is a registry domain only if it is `localhost`,
//! contains `.` or `:`, or contains upper-case letters; otherwise the
//! reference lives on Docker Hub (`docker.io`). `index.docker.io` is an alias
//! of `docker.io`, and single-component Docker Hub paths get the `library/`
//! prefix. A reference with both a tag and a digest keeps both.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Docker Hub's canonical domain.
const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's legacy ("Docker Index") domain, normalised to `docker.io`.
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Namespace of Docker Hub's official images.
const OFFICIAL_PREFIX: &str = "library/";
/// The tag [`Reference::parse`] adds when there is neither tag nor digest.
const DEFAULT_TAG: &str = "latest";
/// Longest repository path accepted (the part after the domain).
pub const MAX_PATH_LEN: usize = 255;
/// Longest tag accepted.
pub const MAX_TAG_LEN: usize = 128;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference {input:?}: empty reference")]
    Empty { input: String },
    #[error(
        "invalid repository name ({input}), cannot specify 64-byte hexadecimal strings \
         (this looks like an image ID)"
    )]
    ImageId { input: String },
    #[error("invalid reference {input:?}: empty repository name")]
    EmptyName { input: String },
    #[error("invalid reference {input:?}: empty path component")]
    EmptyPathComponent { input: String },
    #[error("invalid reference {input:?}: repository name must be lowercase")]
    Uppercase { input: String },
    #[error("invalid reference {input:?}: invalid path component {component:?}: {reason}")]
    InvalidPathComponent {
        input: String,
        component: String,
        reason: String,
    },
    #[error("invalid reference {input:?}: invalid registry domain {domain:?}: {reason}")]
    InvalidDomain {
        input: String,
        domain: String,
        reason: String,
    },
    #[error(
        "invalid reference {input:?}: repository name must not be more than {MAX_PATH_LEN} characters"
    )]
    NameTooLong { input: String },
    #[error("invalid reference {input:?}: empty tag")]
    EmptyTag { input: String },
    #[error("invalid reference {input:?}: tag must not be more than {MAX_TAG_LEN} characters")]
    TagTooLong { input: String },
    #[error(
        "invalid reference {input:?}: invalid tag {tag:?}: tags are letters, digits, '_', '.' \
         and '-', and must not start with '.' or '-'"
    )]
    InvalidTag { input: String, tag: String },
    #[error("invalid reference {input:?}: empty digest")]
    EmptyDigest { input: String },
    #[error("invalid reference {input:?}: {error}")]
    Digest { input: String, error: DigestError },
}

/// A parsed, normalised image reference such as
/// `docker.io/library/busybox:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference the way `docker pull` does:
    /// `busybox` becomes `docker.io/library/busybox:latest`. The `latest`
    /// tag is added only when there is neither a tag nor a digest.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::parse_named(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses and normalises the domain and `library/` prefix, but does not
    /// add a default tag.
    pub fn parse_named(s: &str) -> Result<Reference, ReferenceError> {
        let input = || s.to_string();
        if s.is_empty() {
            return Err(ReferenceError::Empty { input: input() });
        }
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ReferenceError::ImageId { input: input() });
        }

        // Neither the name nor the tag may contain '@', so the first one
        // starts the digest.
        let (name_tag, digest_str) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };

        // The first ':' after the last '/' starts the tag; earlier ones
        // belong to a domain's port.
        let last_component = name_tag.rfind('/').map_or(0, |slash| slash + 1);
        let (name, tag) = match name_tag[last_component..].find(':') {
            Some(colon) => {
                let colon = last_component + colon;
                (&name_tag[..colon], Some(&name_tag[colon + 1..]))
            }
            None => (name_tag, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::EmptyName { input: input() });
        }

        let (domain, path) = split_docker_domain(name);

        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase { input: input() });
        }
        if domain != DEFAULT_DOMAIN {
            check_domain(domain).map_err(|reason| ReferenceError::InvalidDomain {
                input: input(),
                domain: domain.to_string(),
                reason,
            })?;
        }
        for component in path.split('/') {
            if component.is_empty() {
                return Err(ReferenceError::EmptyPathComponent { input: input() });
            }
            check_path_component(component).map_err(|reason| {
                ReferenceError::InvalidPathComponent {
                    input: input(),
                    component: component.to_string(),
                    reason,
                }
            })?;
        }
        if path.len() > MAX_PATH_LEN {
            return Err(ReferenceError::NameTooLong { input: input() });
        }

        let tag = match tag {
            None => None,
            Some(t) => {
                check_tag(t, s)?;
                Some(t.to_string())
            }
        };

        let digest = match digest_str {
            None => None,
            Some("") => return Err(ReferenceError::EmptyDigest { input: input() }),
            Some(d) => Some(
                d.parse::<Digest>()
                    .map_err(|error| ReferenceError::Digest {
                        input: input(),
                        error,
                    })?,
            ),
        };

        Ok(Reference {
            domain: domain.to_string(),
            path,
            tag,
            digest,
        })
    }

    /// The registry domain, possibly with a port: `docker.io`,
    /// `localhost:5000`, `[::1]:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry: `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, without tag or digest: `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with `tag` as its tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        check_tag(tag, &format!("{}:{}", self.repository(), tag))?;
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same repository pinned to digest `d`, with no tag.
    pub fn with_digest(&self, d: Digest) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(d),
        }
    }

    /// The short form Docker shows: `busybox:latest`, `sample/app:1.0`,
    /// `localhost:5000/x:y`, `quay.io/a/b@sha256:...`.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        self.push_tag_digest(&mut out);
        out
    }

    /// The familiar name without tag or digest: `busybox`, `sample/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        match self.path.strip_prefix(OFFICIAL_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => {
                // Without the domain, a first component such as "a.b" would
                // be read back as a registry (Docker's own familiar form has
                // that ambiguity; found by fuzzing): keep the domain then.
                let first = self.path.split('/').next().unwrap_or("");
                if first.contains('.') || first.contains(':') || first == "localhost" {
                    self.repository()
                } else {
                    self.path.clone()
                }
            }
        }
    }

    fn push_tag_digest(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.repository();
        self.push_tag_digest(&mut out);
        f.write_str(&out)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Whether `s` matches Docker's tag grammar `[\w][\w.-]{0,127}`.
pub fn is_valid_tag(s: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = s.as_bytes();
    match bytes.split_first() {
        None => false,
        Some((&first, rest)) => {
            bytes.len() <= MAX_TAG_LEN
                && word(first)
                && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
    }
}

/// Validates `tag`, reporting errors against `input`.
fn check_tag(tag: &str, input: &str) -> Result<(), ReferenceError> {
    if tag.is_empty() {
        return Err(ReferenceError::EmptyTag {
            input: input.to_string(),
        });
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(ReferenceError::TagTooLong {
            input: input.to_string(),
        });
    }
    if !is_valid_tag(tag) {
        return Err(ReferenceError::InvalidTag {
            input: input.to_string(),
            tag: tag.to_string(),
        });
    }
    Ok(())
}

/// Splits a name (no tag or digest) into domain and path the way Docker's
/// `splitDockerDomain` does, adding `library/` to single-component Docker
/// Hub paths. Nothing is validated here.
fn split_docker_domain(name: &str) -> (&str, String) {
    let (domain, path) = match name.split_once('/') {
        None => (DEFAULT_DOMAIN, name),
        Some((first, rest)) => {
            if first == LEGACY_DEFAULT_DOMAIN {
                (DEFAULT_DOMAIN, rest)
            } else if first == "localhost"
                || first.contains(['.', ':'])
                || first.bytes().any(|b| b.is_ascii_uppercase())
            {
                (first, rest)
            } else {
                (DEFAULT_DOMAIN, name)
            }
        }
    };
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        (domain, format!("{OFFICIAL_PREFIX}{path}"))
    } else {
        (domain, path.to_string())
    }
}

/// Checks `host[:port]` where host is a domain name, an IPv4 address or a
/// bracketed IPv6 address.
fn check_domain(domain: &str) -> Result<(), String> {
    let port = if let Some(rest) = domain.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| "missing ']' after IPv6 address".to_string())?;
        if addr.is_empty() {
            return Err("empty IPv6 address".to_string());
        }
        if let Some(c) = addr.chars().find(|c| !(c.is_ascii_hexdigit() || *c == ':')) {
            return Err(format!("invalid character {c:?} in IPv6 address"));
        }
        if after.is_empty() {
            None
        } else {
            Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| "expected ':port' after IPv6 address".to_string())?,
            )
        }
    } else {
        let (host, port) = match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        };
        for component in host.split('.') {
            check_domain_component(component)?;
        }
        port
    };
    if let Some(port) = port {
        if port.is_empty() {
            return Err("empty port".to_string());
        }
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("port {port:?} is not a number"));
        }
    }
    Ok(())
}

/// Checks one `.`-separated label of a domain name: letters, digits and
/// hyphens, not starting or ending with a hyphen.
fn check_domain_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("empty domain component".to_string());
    }
    if let Some(bad) = c
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || *ch == '-'))
    {
        return Err(format!("invalid character {bad:?}"));
    }
    if c.starts_with('-') || c.ends_with('-') {
        return Err(format!(
            "domain component {c:?} must not start or end with '-'"
        ));
    }
    Ok(())
}

/// Checks one `/`-separated path component: runs of `[a-z0-9]` joined by
/// exactly one separator (`.`, `_`, `__` or any number of `-`).
fn check_path_component(c: &str) -> Result<(), String> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if let Some(bad) = c
        .chars()
        .find(|&ch| !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch)))
    {
        return Err(format!("invalid character {bad:?}"));
    }
    if !bytes.first().copied().is_some_and(alnum) {
        return Err("must start with a lower-case letter or digit".to_string());
    }
    if !bytes.last().copied().is_some_and(alnum) {
        return Err("must end with a lower-case letter or digit".to_string());
    }
    // Every maximal run of separator characters must be one separator.
    for sep in c.split(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit()) {
        let ok = sep.is_empty()
            || sep == "."
            || sep == "_"
            || sep == "__"
            || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "invalid separator {sep:?} (use '.', '_', '__' or dashes)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H256: &str = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";

    enum Want {
        /// Full normalised string, familiar string.
        Ok(String, String),
        /// Substring of the error message.
        Err(String),
    }

    fn ok(full: impl Into<String>, familiar: impl Into<String>) -> Want {
        Want::Ok(full.into(), familiar.into())
    }

    fn err(msg: impl Into<String>) -> Want {
        Want::Err(msg.into())
    }

    #[test]
    fn parse_table() {
        let h512 = "ab".repeat(64);
        let d256 = format!("sha256:{H256}");
        let d512 = format!("sha512:{h512}");
        let long_tag = "t".repeat(129);
        let max_tag = "t".repeat(128);
        let long_path = format!("{}/x", "a".repeat(255));
        let max_path = "a".repeat(255);
        let hex64 = H256.to_string();

        let cases: Vec<(String, Want)> = vec![
            // Docker Hub normalisation.
            (
                "busybox".into(),
                ok("docker.io/library/busybox:latest", "busybox:latest"),
            ),
            (
                "library/busybox".into(),
                ok("docker.io/library/busybox:latest", "busybox:latest"),
            ),
            (
                "docker.io/busybox".into(),
                ok("docker.io/library/busybox:latest", "busybox:latest"),
            ),
            (
                "docker.io/library/busybox".into(),
                ok("docker.io/library/busybox:latest", "busybox:latest"),
            ),
            (
                "index.docker.io/library/busybox".into(),
                ok("docker.io/library/busybox:latest", "busybox:latest"),
            ),
            // Found by fuzzing: a Hub path whose first component looks like
            // a domain keeps "docker.io/" in its familiar form.
            (
                "docker.io/7ocker.io/7".into(),
                ok(
                    "docker.io/7ocker.io/7:latest",
                    "docker.io/7ocker.io/7:latest",
                ),
            ),
            (
                "index.docker.io/busybox".into(),
                ok("docker.io/library/busybox:latest", "busybox:latest"),
            ),
            (
                "busybox:1.35".into(),
                ok("docker.io/library/busybox:1.35", "busybox:1.35"),
            ),
            (
                "sample/app:1.0".into(),
                ok("docker.io/sample/app:1.0", "sample/app:1.0"),
            ),
            (
                "library/foo/bar".into(),
                ok("docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
            ),
            (
                "store/foo/bar".into(),
                ok("docker.io/store/foo/bar:latest", "store/foo/bar:latest"),
            ),
            (
                "test_com/foo".into(),
                ok("docker.io/test_com/foo:latest", "test_com/foo:latest"),
            ),
            (
                "ubuntu-12.04-base".into(),
                ok(
                    "docker.io/library/ubuntu-12.04-base:latest",
                    "ubuntu-12.04-base:latest",
                ),
            ),
            // Single components are never domains, even when they look like one.
            (
                "localhost".into(),
                ok("docker.io/library/localhost:latest", "localhost:latest"),
            ),
            (
                "localhost:5000".into(),
                ok("docker.io/library/localhost:5000", "localhost:5000"),
            ),
            (
                "192.168.0.1".into(),
                ok("docker.io/library/192.168.0.1:latest", "192.168.0.1:latest"),
            ),
            // Other registries.
            (
                "localhost/x".into(),
                ok("localhost/x:latest", "localhost/x:latest"),
            ),
            (
                "localhost:5000/x:y".into(),
                ok("localhost:5000/x:y", "localhost:5000/x:y"),
            ),
            (
                "127.0.0.1:5000/a/b".into(),
                ok("127.0.0.1:5000/a/b:latest", "127.0.0.1:5000/a/b:latest"),
            ),
            (
                "[::1]:5000/x".into(),
                ok("[::1]:5000/x:latest", "[::1]:5000/x:latest"),
            ),
            (
                "[fc00:1:2:3:4:5:6:7]/x".into(),
                ok(
                    "[fc00:1:2:3:4:5:6:7]/x:latest",
                    "[fc00:1:2:3:4:5:6:7]/x:latest",
                ),
            ),
            (
                "quay.io/a/b/c:v1".into(),
                ok("quay.io/a/b/c:v1", "quay.io/a/b/c:v1"),
            ),
            (
                "example.com/busybox".into(),
                ok("example.com/busybox:latest", "example.com/busybox:latest"),
            ),
            (
                "test-com:8080/foo".into(),
                ok("test-com:8080/foo:latest", "test-com:8080/foo:latest"),
            ),
            (
                "xn--n3h.com:18080/foo".into(),
                ok(
                    "xn--n3h.com:18080/foo:latest",
                    "xn--n3h.com:18080/foo:latest",
                ),
            ),
            (
                "Foo.com/bar".into(),
                ok("Foo.com/bar:latest", "Foo.com/bar:latest"),
            ),
            ("Foo/bar".into(), ok("Foo/bar:latest", "Foo/bar:latest")),
            (
                "docker.io/".to_string() + &hex64,
                ok(
                    format!("docker.io/library/{hex64}:latest"),
                    format!("{hex64}:latest"),
                ),
            ),
            // Digests.
            (
                format!("busybox@{d256}"),
                ok(
                    format!("docker.io/library/busybox@{d256}"),
                    format!("busybox@{d256}"),
                ),
            ),
            (
                format!("busybox:1.35@{d256}"),
                ok(
                    format!("docker.io/library/busybox:1.35@{d256}"),
                    format!("busybox:1.35@{d256}"),
                ),
            ),
            (
                format!("quay.io/a/b@{d512}"),
                ok(format!("quay.io/a/b@{d512}"), format!("quay.io/a/b@{d512}")),
            ),
            (
                format!("localhost:5000/x@{d256}"),
                ok(
                    format!("localhost:5000/x@{d256}"),
                    format!("localhost:5000/x@{d256}"),
                ),
            ),
            // Path component grammar.
            (
                "a__b".into(),
                ok("docker.io/library/a__b:latest", "a__b:latest"),
            ),
            (
                "a---b".into(),
                ok("docker.io/library/a---b:latest", "a---b:latest"),
            ),
            (
                "a.b_c-d".into(),
                ok("docker.io/library/a.b_c-d:latest", "a.b_c-d:latest"),
            ),
            (
                "a___b".into(),
                err("invalid path component \"a___b\": invalid separator \"___\""),
            ),
            ("docker/dock..er".into(), err("invalid separator \"..\"")),
            ("docker/dock_.er".into(), err("invalid separator \"_.\"")),
            ("docker/dock-.er".into(), err("invalid separator \"-.\"")),
            (
                "a-".into(),
                err("invalid reference \"a-\": invalid path component \"a-\": must end with"),
            ),
            (
                "-docker".into(),
                err("must start with a lower-case letter or digit"),
            ),
            ("_docker/_docker".into(), err("must start with")),
            ("a/b!c".into(), err("invalid character '!'")),
            (" busybox".into(), err("invalid character ' '")),
            // Upper case in the repository path.
            (
                "Busybox".into(),
                err("invalid reference \"Busybox\": repository name must be lowercase"),
            ),
            (
                "docker/Docker".into(),
                err("repository name must be lowercase"),
            ),
            (
                "quay.io/A/b".into(),
                err("repository name must be lowercase"),
            ),
            // Empty parts.
            ("".into(), err("invalid reference \"\": empty reference")),
            (
                "a/".into(),
                err("invalid reference \"a/\": empty path component"),
            ),
            (
                "/a".into(),
                err("invalid reference \"/a\": empty path component"),
            ),
            (
                "a//b".into(),
                err("invalid reference \"a//b\": empty path component"),
            ),
            ("docker///docker".into(), err("empty path component")),
            ("a:".into(), err("invalid reference \"a:\": empty tag")),
            (
                ":a".into(),
                err("invalid reference \":a\": empty repository name"),
            ),
            ("a@".into(), err("invalid reference \"a@\": empty digest")),
            (format!("@{d256}"), err("empty repository name")),
            // Domains.
            (
                "localhost:abc/x".into(),
                err("invalid registry domain \"localhost:abc\": port \"abc\" is not a number"),
            ),
            ("localhost:/x".into(), err("empty port")),
            (
                "-docker.io/docker/docker".into(),
                err("must not start or end with '-'"),
            ),
            ("a..com/x".into(), err("empty domain component")),
            (
                "a_b.com/x".into(),
                err("invalid registry domain \"a_b.com\": invalid character '_'"),
            ),
            ("fc00::1:5000/debian".into(), err("invalid registry domain")),
            (
                "[fe80::1%eth0]:5000/debian".into(),
                err("invalid character '%' in IPv6 address"),
            ),
            (
                "[2001:db8:3:4::192.0.2.33]:5000/debian".into(),
                err("invalid character '.'"),
            ),
            ("[fc00::1]:5000".into(), err("invalid reference")),
            ("[::1/x".into(), err("missing ']'")),
            (
                "https://github.com/docker/docker".into(),
                err("invalid registry domain \"https:\""),
            ),
            // Tags.
            (
                format!("a:{max_tag}"),
                ok(
                    format!("docker.io/library/a:{max_tag}"),
                    format!("a:{max_tag}"),
                ),
            ),
            (
                format!("a:{long_tag}"),
                err("tag must not be more than 128 characters"),
            ),
            ("a:-x".into(), err("invalid tag \"-x\"")),
            ("a:.x".into(), err("invalid tag \".x\"")),
            ("a:x!".into(), err("invalid tag \"x!\"")),
            ("a:b:c".into(), err("invalid tag \"b:c\"")),
            (
                "a:Tag_1.0-rc".into(),
                ok("docker.io/library/a:Tag_1.0-rc", "a:Tag_1.0-rc"),
            ),
            ("a:b/c".into(), err("invalid registry domain \"a:b\"")),
            // Digests that are not.
            (
                "a@sha256:xyz".into(),
                err("invalid reference \"a@sha256:xyz\": invalid digest \"sha256:xyz\""),
            ),
            (
                format!("a@sha256:{}", &H256[..63]),
                err("sha256 needs 64 lower-case hex digits"),
            ),
            (
                format!("a@sha256:{}", H256.to_uppercase()),
                err("lower-case hex digits"),
            ),
            (format!("a@md5:{H256}"), err("unsupported algorithm")),
            (format!("a@sha512:{H256}"), err("sha512 needs 128")),
            (format!("a@{H256}"), err("invalid digest")),
            (format!("a@{d256}@{d256}"), err("invalid digest")),
            // Image IDs and lengths.
            (
                hex64.clone(),
                err(format!(
                    "invalid repository name ({hex64}), cannot specify 64-byte hexadecimal strings"
                )),
            ),
            (
                format!("{hex64}:v1"),
                ok(
                    format!("docker.io/library/{hex64}:v1"),
                    format!("{hex64}:v1"),
                ),
            ),
            (
                hex64[..63].to_string(),
                ok(
                    format!("docker.io/library/{}:latest", &hex64[..63]),
                    format!("{}:latest", &hex64[..63]),
                ),
            ),
            (
                format!("quay.io/{max_path}"),
                ok(
                    format!("quay.io/{max_path}:latest"),
                    format!("quay.io/{max_path}:latest"),
                ),
            ),
            (
                format!("quay.io/{long_path}"),
                err("repository name must not be more than 255 characters"),
            ),
            (
                max_path.clone(),
                err("repository name must not be more than 255 characters"),
            ),
        ];
        assert!(cases.len() >= 50);

        for (input, want) in &cases {
            let got = Reference::parse(input);
            match (want, &got) {
                (Want::Ok(full, familiar), Ok(r)) => {
                    assert_eq!(&r.to_string(), full, "full form of {input:?}");
                    assert_eq!(&r.familiar(), familiar, "familiar form of {input:?}");
                    // The full form is a fixed point.
                    assert_eq!(
                        Reference::parse(full).as_ref(),
                        Ok(r),
                        "reparse of {full:?}"
                    );
                }
                (Want::Err(msg), Err(e)) => {
                    let text = e.to_string();
                    assert!(
                        text.contains(msg.as_str()),
                        "error for {input:?} is {text:?}, expected it to contain {msg:?}"
                    );
                    assert!(!text.ends_with('.'), "error ends with a period: {text:?}");
                }
                (Want::Ok(full, _), Err(e)) => {
                    panic!("{input:?}: expected {full:?}, got error {e}")
                }
                (Want::Err(msg), Ok(r)) => {
                    panic!("{input:?}: expected error containing {msg:?}, got {r}")
                }
            }
        }
    }

    #[test]
    fn accessors_and_builders() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.domain(), "docker.io");
        assert_eq!(r.path(), "library/busybox");
        assert_eq!(r.repository(), "docker.io/library/busybox");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.familiar_name(), "busybox");

        let named = Reference::parse_named("sample/app").unwrap();
        assert_eq!(named.tag(), None);
        assert_eq!(named.to_string(), "docker.io/sample/app");
        assert_eq!(named.familiar(), "sample/app");

        let d: Digest = format!("sha256:{H256}").parse().unwrap();
        let pinned = r.with_digest(d.clone());
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.digest(), Some(&d));
        assert_eq!(pinned.familiar(), format!("busybox@sha256:{H256}"));

        let tagged = pinned.with_tag("1.36").unwrap();
        assert_eq!(tagged.to_string(), "docker.io/library/busybox:1.36");
        assert!(tagged.with_tag("-bad").is_err());
        assert!(tagged.with_tag("").is_err());

        let r: Reference = "localhost:5000/x:y".parse().unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.familiar_name(), "localhost:5000/x");

        assert!(is_valid_tag("latest"));
        assert!(is_valid_tag("_x"));
        assert!(!is_valid_tag(""));
        assert!(!is_valid_tag(".x"));
        assert!(!is_valid_tag(&"t".repeat(129)));

        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"localhost:5000/x:y\"");
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
    }
}
