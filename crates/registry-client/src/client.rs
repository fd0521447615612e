//! `berth push` and `berth pull`: the distribution API's client side.
//! Blobs the registry already has are skipped (HEAD), layers move in
//! parallel, every byte pulled is checked against its digest as it
//! streams into the store, and a failed pull leaves the store as it was.
//!
//! Registries are reached over HTTPS, verified against the system's
//! roots and the CAs in `certs.d/HOST/*.crt` (berth's, docker's and
//! podman's directories). Local registries (localhost, 127.0.0.0/8, ::1)
//! and those named in berth's config as `insecure-registries` are tried
//! over HTTPS without verification, then plain HTTP, as docker does.
//! Credentials come from the docker config; a registry that answers with
//! a bearer challenge gets them at its token endpoint.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use berth_image::digest::Digest;
use berth_image::load::PulledLayer;
use berth_image::reference::Reference;
use berth_image::store::Store;

use crate::progress::Progress;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Invalid(String),
    #[error("registry {host}: {what}")]
    Http { host: String, what: String },
    #[error(transparent)]
    Store(#[from] berth_image::store::StoreError),
    #[error(transparent)]
    Load(#[from] berth_image::load::LoadError),
}

/// berth's client settings: `$BERTH_CONFIG`, else `/etc/berth/config.json`
/// (docker's daemon.json keys).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Settings {
    /// Registries (HOST or HOST:PORT) reached without TLS verification,
    /// or over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Where `HOST[:PORT]/ca.crt` (and `client.cert`/`client.key`) are
    /// looked for first.
    pub certs_dir: Option<PathBuf>,
    /// Mirrors of Docker Hub (`http://HOST[:PORT]` or `https://...`),
    /// tried in order before it for pulls of docker.io names.
    pub registry_mirrors: Vec<String>,
}

/// Settings a daemon installed for the whole process (its configuration
/// file's), instead of the config file's.
static INSTALLED: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();

impl Settings {
    /// Makes `s` the settings of every later connection of this process;
    /// once only (a second call is an error).
    pub fn install(s: Settings) -> Result<(), ClientError> {
        s.check()?;
        INSTALLED
            .set(s)
            .map_err(|_| ClientError::Invalid("registry settings were installed already".into()))
    }

    /// The installed settings, else the config file's.
    pub fn load() -> Result<Settings, ClientError> {
        if let Some(s) = INSTALLED.get() {
            return Ok(s.clone());
        }
        Settings::load_file()
    }

    /// The config file's: `$BERTH_CONFIG`, else `/etc/berth/config.json`.
    pub fn load_file() -> Result<Settings, ClientError> {
        let s = Settings::read_file()?;
        s.check()?;
        Ok(s)
    }

    fn read_file() -> Result<Settings, ClientError> {
        let path = std::env::var_os("BERTH_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/berth/config.json"));
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| ClientError::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(ClientError::Invalid(format!("{}: {e}", path.display()))),
        }
    }

    /// Every mirror well formed.
    pub fn check(&self) -> Result<(), ClientError> {
        for m in &self.registry_mirrors {
            mirror_host(m)?;
        }
        Ok(())
    }

    fn insecure(&self, host: &str) -> bool {
        let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
        is_local(host)
            || self
                .insecure_registries
                .iter()
                .any(|r| r == host || r == bare)
    }

    /// The certificate directories for `host`, most specific first.
    fn cert_dirs(&self, host: &str) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.certs_dir.iter().cloned().collect();
        for d in [
            "/etc/berth/certs.d",
            "/etc/docker/certs.d",
            "/etc/containers/certs.d",
        ] {
            dirs.push(PathBuf::from(d));
        }
        dirs.into_iter()
            .map(|d| d.join(host))
            .filter(|d| d.is_dir())
            .collect()
    }
}

/// A registry endpoint, signed in for the scopes it was made for.
pub struct Client {
    agent: ureq::Agent,
    host: String,
    base: String,
    /// The `Authorization` header to send: basic credentials from the
    /// docker config, or a bearer token.
    auth: Mutex<Option<String>>,
    /// basic `user:password` (base64) from the docker config.
    basic: Option<String>,
    /// The bearer challenge, to renew an expired token.
    challenge: Option<Challenge>,
    scopes: Vec<String>,
    /// The registry refused a monolithic upload once: do not send whole
    /// blobs for nothing again.
    no_monolithic: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone)]
struct Challenge {
    realm: String,
    service: Option<String>,
}

/// A mirror's `HOST[:PORT]`, and whether it is reached over plain HTTP.
/// A mirror is a URL with a scheme and nothing after the host, as
/// dockerd takes it.
pub fn mirror_host(url: &str) -> Result<(String, bool), ClientError> {
    let bad = |why: &str| {
        ClientError::Invalid(format!(
            "registry mirror {url:?} {why}: give it as http://HOST[:PORT] or https://HOST[:PORT]"
        ))
    };
    let (plain, rest) = if let Some(r) = url.strip_prefix("http://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (false, r)
    } else {
        return Err(bad("has no http:// or https:// scheme"));
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() {
        return Err(bad("names no host"));
    }
    if host.contains(['/', '?', '#', '@']) || host.chars().any(|c| c.is_whitespace()) {
        return Err(bad("has a path, query, fragment or user after the host"));
    }
    Ok((host.to_string(), plain))
}

fn is_local(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, _)| h);
    h == "localhost"
        || h == "[::1]"
        || h.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Percent-encoding for a query value.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The parameters of a `WWW-Authenticate` header: scheme and key="value"
/// pairs.
pub fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.push((k.trim().to_ascii_lowercase(), v.to_string()));
        rest = tail.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    (scheme.to_ascii_lowercase(), params)
}

/// Root certificates: the system bundle and the `ca.crt`/`*.crt` files of
/// the host's certificate directories; plus a client certificate if one
/// is there.
fn tls_for(settings: &Settings, host: &str, verify: bool) -> ureq::tls::TlsConfig {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    let mut client_cert = None;
    let add = |path: &Path, roots: &mut Vec<Certificate<'static>>| {
        if let Ok(pem) = std::fs::read(path) {
            for item in ureq::tls::parse_pem(&pem).flatten() {
                if let PemItem::Certificate(c) = item {
                    roots.push(c.to_owned());
                }
            }
        }
    };
    for bundle in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        add(Path::new(bundle), &mut roots);
    }
    for dir in settings.cert_dirs(host) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".crt") {
                add(&p, &mut roots);
            } else if name.ends_with(".cert") && client_cert.is_none() {
                let key = p.with_extension("key");
                let chain: Vec<Certificate<'static>> = std::fs::read(&p)
                    .ok()
                    .map(|pem| {
                        ureq::tls::parse_pem(&pem)
                            .flatten()
                            .filter_map(|i| match i {
                                PemItem::Certificate(c) => Some(c.to_owned()),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let k = std::fs::read(&key)
                    .ok()
                    .and_then(|pem| PrivateKey::from_pem(&pem).ok().map(|k| k.to_owned()));
                if let (false, Some(k)) = (chain.is_empty(), k) {
                    client_cert = Some(ClientCert::new_with_certs(&chain, k));
                }
            }
        }
    }
    TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&roots))
        .client_cert(client_cert)
        .disable_verification(!verify)
        .build()
}

fn agent(tls: ureq::tls::TlsConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_connect(Some(std::time::Duration::from_secs(15)))
        .build()
        .into()
}

impl Client {
    /// Reaches the registry of `r` and signs in for `actions` (such as
    /// "pull" or "pull,push") on its repository.
    pub fn for_reference(r: &Reference, actions: &str) -> Result<Client, ClientError> {
        Client::for_reference_as(r, actions, None)
    }

    /// `for_reference` with the caller's own credentials (base64
    /// `user:password`, as a docker client sends them to the daemon)
    /// instead of the docker config's.
    pub fn for_reference_as(
        r: &Reference,
        actions: &str,
        basic: Option<String>,
    ) -> Result<Client, ClientError> {
        let scope = format!("repository:{}:{actions}", r.path());
        Client::connect(r.domain(), vec![scope], basic)
    }

    /// Reaches `host`: HTTPS, or for a local or insecure registry HTTPS
    /// without verification and then plain HTTP. Then the `/v2/` ping
    /// tells how to sign in: nothing, basic auth (with `basic` or the
    /// docker config's credentials), or a token for `scopes`.
    pub fn connect(
        host: &str,
        scopes: Vec<String>,
        basic: Option<String>,
    ) -> Result<Client, ClientError> {
        Client::connect_with(&Settings::load()?, host, false, scopes, basic)
    }

    /// `connect` with given settings; `plain` tries plain HTTP first as
    /// for an insecure registry (a mirror given as `http://`).
    fn connect_with(
        settings: &Settings,
        host: &str,
        plain: bool,
        scopes: Vec<String>,
        basic: Option<String>,
    ) -> Result<Client, ClientError> {
        let host = host.to_string();
        let basic = basic.or_else(|| credentials(&host));
        let insecure = plain || settings.insecure(&host);
        // An insecure registry is tried over plain HTTP first (the usual
        // case for a local one, and no certificates to load), then over
        // HTTPS without verification; any other over verified HTTPS.
        let mut client = Client {
            agent: if insecure {
                agent(ureq::tls::TlsConfig::default())
            } else {
                agent(tls_for(settings, &host, true))
            },
            base: format!("{}://{host}", if insecure { "http" } else { "https" }),
            auth: Mutex::new(None),
            basic,
            challenge: None,
            scopes,
            host,
            no_monolithic: std::sync::atomic::AtomicBool::new(false),
        };
        let ping = match client.agent.get(client.url("/v2/")).call() {
            Ok(r) => r,
            Err(e) if insecure => {
                tracing::debug!(error = %e, "plain HTTP failed; trying HTTPS");
                client.agent = agent(tls_for(settings, &client.host, false));
                client.base = format!("https://{}", client.host);
                client
                    .agent
                    .get(client.url("/v2/"))
                    .call()
                    .map_err(|e| client.err(e.to_string()))?
            }
            Err(e) if e.to_string().contains("CaUsedAsEndEntity") => {
                return Err(client.err(format!(
                    "{e}: the registry serves a CA certificate as its own; serve a certificate signed by that CA"
                )))
            }
            Err(e) => {
                return Err(client.err(format!(
                    "{e} (a registry without a certificate this machine trusts needs its CA in /etc/docker/certs.d/{}/ca.crt, or its name in \"insecure-registries\" of /etc/berth/config.json)",
                    client.host
                )))
            }
        };
        if ping.status().as_u16() != 401 {
            return Ok(client);
        }
        let header = ping
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (scheme, params) = parse_challenge(&header);
        let get = |k: &str| params.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
        match scheme.as_str() {
            "bearer" => {
                let realm =
                    get("realm").ok_or_else(|| client.err("a bearer challenge without a realm"))?;
                client.challenge = Some(Challenge {
                    realm,
                    service: get("service"),
                });
                client.renew()?;
            }
            // Basic: send the credentials if there are any; without,
            // public repositories may still be pulled.
            _ => {
                if let Some(b) = &client.basic {
                    *client.auth.lock().expect("auth lock") = Some(format!("Basic {b}"));
                }
            }
        }
        Ok(client)
    }

    /// Gets a (new) bearer token for the client's scopes.
    fn renew(&self) -> Result<(), ClientError> {
        let Some(c) = &self.challenge else {
            return Ok(());
        };
        let mut url = c.realm.clone();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        if let Some(s) = &c.service {
            url.push_str(&format!("{sep}service={}", query_escape(s)));
            sep = '&';
        }
        for s in &self.scopes {
            url.push_str(&format!("{sep}scope={}", query_escape(s)));
            sep = '&';
        }
        let mut req = self.agent.get(&url);
        if let Some(b) = &self.basic {
            req = req.header("Authorization", &format!("Basic {b}"));
        }
        let mut resp = req
            .call()
            .map_err(|e| self.err(format!("token endpoint {}: {e}", c.realm)))?;
        if resp.status().as_u16() == 401 {
            return Err(self.err(format!(
                "401 UNAUTHORIZED: the token endpoint refused the credentials: berth login {}",
                self.host
            )));
        }
        if !resp.status().is_success() {
            return Err(self.failure("token endpoint", resp));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| self.err(format!("token endpoint: {e}")))?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| self.err(format!("token endpoint: {e}")))?;
        let token = v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .ok_or_else(|| self.err("the token endpoint sent no token"))?;
        *self.auth.lock().expect("auth lock") = Some(format!("Bearer {token}"));
        Ok(())
    }

    fn err(&self, what: impl Into<String>) -> ClientError {
        ClientError::Http {
            host: self.host.clone(),
            what: what.into(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The error body's first message, for a failed request.
    fn failure(&self, what: &str, mut resp: ureq::http::Response<ureq::Body>) -> ClientError {
        let status = resp.status();
        let body = resp.body_mut().read_to_vec().unwrap_or_default();
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = &v["errors"][0];
                Some(format!(
                    "{}: {}",
                    e["code"].as_str()?,
                    e["message"].as_str().unwrap_or("")
                ))
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        self.err(format!("{what}: {status}: {detail}"))
    }

    fn authed<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &*self.auth.lock().expect("auth lock") {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    /// Sends a request built by `send`; a 401 under a bearer challenge
    /// (the token expired during a long push) renews the token and sends
    /// it once more.
    fn renewing(
        &self,
        send: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let resp = send().map_err(|e| self.err(e.to_string()))?;
        if resp.status().as_u16() == 401 && self.challenge.is_some() {
            self.renew()?;
            return send().map_err(|e| self.err(e.to_string()));
        }
        Ok(resp)
    }

    fn has_blob(&self, repo: &str, d: &Digest) -> Result<bool, ClientError> {
        let resp = self.renewing(|| {
            self.authed(self.agent.head(self.url(&format!("/v2/{repo}/blobs/{d}"))))
                .call()
        })?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            // Refused: say so now, before sending the blob for nothing.
            401 | 403 => Err(self.err(format!(
                "{}: UNAUTHORIZED: authentication required: berth login {}",
                resp.status(),
                self.host
            ))),
            _ => Ok(false),
        }
    }

    /// Uploads a blob: in one request where the registry takes that (the
    /// spec's monolithic POST), else by opening an upload and closing it
    /// with the whole content (distribution answers the monolithic POST
    /// with 202 and an upload to use instead). A failure of the transport
    /// or of the server (5xx) is retried from the start, a few times.
    fn upload(
        &self,
        repo: &str,
        d: &Digest,
        path: &std::path::Path,
        progress: &dyn Progress,
    ) -> Result<(), ClientError> {
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            match self.upload_once(repo, d, path, progress) {
                Err(Retry::Unauthorized(_)) if !renewed && self.challenge.is_some() => {
                    renewed = true;
                    self.renew()?;
                }
                Err(Retry::Transient(e)) if attempt < RETRIES => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "upload failed; retrying");
                    progress.layer(
                        d.short(),
                        &format!("Retrying in {}s", backoff(attempt).as_secs_f32()),
                    );
                    std::thread::sleep(backoff(attempt));
                }
                Err(Retry::Transient(e)) | Err(Retry::Unauthorized(e)) | Err(Retry::Fatal(e)) => {
                    return Err(e)
                }
                Ok(()) => return Ok(()),
            }
        }
    }

    fn upload_once(
        &self,
        repo: &str,
        d: &Digest,
        path: &std::path::Path,
        progress: &dyn Progress,
    ) -> Result<(), Retry> {
        let open = || -> Result<(Counting<'_, std::fs::File>, u64), Retry> {
            let f = std::fs::File::open(path).map_err(|e| {
                Retry::Fatal(ClientError::Invalid(format!(
                    "open {}: {e}",
                    path.display()
                )))
            })?;
            let total = f.metadata().map(|m| m.len()).unwrap_or(0);
            let counting = Counting {
                inner: f,
                done: 0,
                total,
                id: d.short().to_string(),
                verb: "Pushing",
                progress,
            };
            Ok((counting, total))
        };
        let transient = |e: ureq::Error| Retry::Transient(self.err(e.to_string()));
        let monolithic = !self
            .no_monolithic
            .load(std::sync::atomic::Ordering::Relaxed);
        let resp = if monolithic {
            let (mut body, len) = open()?;
            self.authed(
                self.agent
                    .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}"))),
            )
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", &len.to_string())
            .send(ureq::SendBody::from_reader(&mut body))
        } else {
            self.authed(
                self.agent
                    .post(self.url(&format!("/v2/{repo}/blobs/uploads/"))),
            )
            .send(&[][..])
        }
        .map_err(transient)?;
        match resp.status().as_u16() {
            201 => return Ok(()),
            202 => {}
            401 => {
                return Err(Retry::Unauthorized(
                    self.failure(&format!("upload of {d}"), resp),
                ))
            }
            500..=599 => {
                return Err(Retry::Transient(
                    self.failure(&format!("upload of {d}"), resp),
                ))
            }
            _ => return Err(Retry::Fatal(self.failure(&format!("upload of {d}"), resp))),
        }
        if monolithic {
            self.no_monolithic
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Retry::Fatal(self.err(format!("upload of {d}: no Location in the answer")))
            })?
            .to_string();
        let url = if location.starts_with("http://") || location.starts_with("https://") {
            location
        } else {
            self.url(&location)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let (mut body, len) = open()?;
        let resp = self
            .authed(self.agent.put(format!("{url}{sep}digest={d}")))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", &len.to_string())
            .send(ureq::SendBody::from_reader(&mut body))
            .map_err(transient)?;
        match resp.status().as_u16() {
            201 => Ok(()),
            401 => Err(Retry::Unauthorized(
                self.failure(&format!("upload of {d}"), resp),
            )),
            500..=599 => Err(Retry::Transient(
                self.failure(&format!("upload of {d}"), resp),
            )),
            _ => Err(Retry::Fatal(self.failure(&format!("upload of {d}"), resp))),
        }
    }

    /// Asks the registry to link blob `d` from repository `from` into
    /// `repo` (a cross-repository mount), so that nothing is sent. True if
    /// it did; an upload it opened instead is cancelled.
    fn mount(&self, repo: &str, d: &Digest, from: &str) -> Result<bool, ClientError> {
        let resp = self.renewing(|| {
            self.authed(self.agent.post(self.url(&format!(
                "/v2/{repo}/blobs/uploads/?mount={d}&from={}",
                query_escape(from)
            ))))
            .send(&[][..])
        })?;
        match resp.status().as_u16() {
            201 => Ok(true),
            202 => {
                if let Some(loc) = resp.headers().get("location").and_then(|v| v.to_str().ok()) {
                    let url = if loc.starts_with("http") {
                        loc.to_string()
                    } else {
                        self.url(loc)
                    };
                    let _ = self.authed(self.agent.delete(url)).call();
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    fn get(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        self.get_range(path, accept, 0)
    }

    /// A GET from byte `from` on; a token that expired meanwhile is
    /// renewed once.
    fn get_range(
        &self,
        path: &str,
        accept: Option<&str>,
        from: u64,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let send = || {
            let mut req = self.authed(self.agent.get(self.url(path)));
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if from > 0 {
                req = req.header("Range", &format!("bytes={from}-"));
            }
            req.call().map_err(|e| self.err(e.to_string()))
        };
        let resp = send()?;
        if resp.status().as_u16() == 401 && self.challenge.is_some() {
            self.renew()?;
            return send();
        }
        Ok(resp)
    }
}

fn repo_of(r: &Reference) -> String {
    r.path().to_string()
}

/// How often a failed transfer is tried again.
const RETRIES: u32 = 4;

/// The wait before retry `n` (1-based): 0.2 s, doubling.
fn backoff(n: u32) -> std::time::Duration {
    std::time::Duration::from_millis(200 << (n - 1).min(6))
}

enum Retry {
    Transient(ClientError),
    /// 401: a token that expired meanwhile; renewed once.
    Unauthorized(ClientError),
    Fatal(ClientError),
}

/// Counts bytes through a reader for a progress display.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    total: u64,
    id: String,
    verb: &'static str,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        self.progress
            .bytes(&self.id, self.verb, self.done, self.total);
        Ok(n)
    }
}

/// A blob download that survives a dropped connection: it asks again from
/// the byte it got to (`Range`), a few times, with a doubling wait.
struct Resuming<'a> {
    client: &'a Client,
    path: String,
    id: String,
    total: u64,
    done: u64,
    inner: Option<Box<dyn Read + Send + Sync + 'a>>,
    retries: u32,
    progress: &'a dyn Progress,
}

impl Resuming<'_> {
    fn open(&mut self) -> std::io::Result<()> {
        let resp = self
            .client
            .get_range(&self.path, None, self.done)
            .map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        // A partial answer must start where we asked.
        let range_start = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.trim_start_matches("bytes ")
                    .split('-')
                    .next()?
                    .parse::<u64>()
                    .ok()
            });
        let mut body: Box<dyn Read + Send + Sync> = Box::new(resp.into_body().into_reader());
        match status {
            206 if range_start == Some(self.done) => {}
            206 => {
                return Err(std::io::Error::other(format!(
                    "{}: asked for bytes from {}, the registry sent a range from {range_start:?}",
                    self.path, self.done
                )))
            }
            // The whole blob again: skip what we have.
            200 => {
                std::io::copy(&mut (&mut body).take(self.done), &mut std::io::sink())?;
            }
            s => {
                let e = std::io::Error::other(format!("{}: status {s}", self.path));
                return Err(if s >= 500 || s == 429 {
                    e
                } else {
                    std::io::Error::new(std::io::ErrorKind::PermissionDenied, e)
                });
            }
        }
        self.inner = Some(body);
        Ok(())
    }
}

impl Read for Resuming<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let r = match self.inner.as_mut() {
                Some(inner) => inner.read(buf),
                None => self.open().map(|()| usize::MAX),
            };
            let err = match r {
                Ok(usize::MAX) => continue,
                Ok(0) if self.total > 0 && self.done < self.total => std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the connection ended at byte {} of {}",
                        self.done, self.total
                    ),
                ),
                Ok(n) => {
                    self.done += n as u64;
                    self.progress
                        .bytes(&self.id, "Downloading", self.done, self.total);
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            // A refusal (4xx) will not change by asking again.
            if err.kind() == std::io::ErrorKind::PermissionDenied {
                return Err(err);
            }
            if self.retries >= RETRIES {
                return Err(std::io::Error::new(
                    err.kind(),
                    format!(
                        "the download from {} failed {} times, at byte {} of {}: {err}",
                        self.client.host,
                        RETRIES + 1,
                        self.done,
                        self.total
                    ),
                ));
            }
            self.retries += 1;
            tracing::debug!(error = %err, retry = self.retries, "download failed; resuming");
            self.progress.layer(
                &self.id,
                &format!("Retrying in {:.1}s", backoff(self.retries).as_secs_f32()),
            );
            std::thread::sleep(backoff(self.retries));
            self.inner = None;
        }
    }
}

/// `berth push`: returns the manifest's digest and size.
pub fn push(
    store: &mut Store,
    image: &str,
    target: &Reference,
    progress: &dyn Progress,
) -> Result<(Digest, usize), ClientError> {
    push_as(store, image, target, progress, None)
}

/// `push` with the caller's credentials (base64 `user:password`).
pub fn push_as(
    store: &mut Store,
    image: &str,
    target: &Reference,
    progress: &dyn Progress,
    basic: Option<String>,
) -> Result<(Digest, usize), ClientError> {
    let record = store.resolve(image)?;
    let client = Client::for_reference_as(target, "pull,push", basic)?;
    let repo = repo_of(target);
    progress.line(&format!(
        "The push refers to repository [{}/{}]",
        target.domain(),
        repo
    ));
    let manifest = store.read_blob(&record.manifest_digest, berth_image::store::MANIFEST_LIMIT)?;
    let doc: serde_json::Value = serde_json::from_slice(&manifest)
        .map_err(|e| ClientError::Invalid(format!("the image's manifest: {e}")))?;
    let mut blobs: Vec<(Digest, std::path::PathBuf)> = Vec::new();
    for desc in doc["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&doc["config"]))
    {
        let d: Digest = desc["digest"]
            .as_str()
            .unwrap_or("")
            .parse()
            .map_err(|e| ClientError::Invalid(format!("the image's manifest: {e}")))?;
        if !store.has_blob(&d) {
            return Err(ClientError::Invalid(format!(
                "blob {d} of {image} is not in the store"
            )));
        }
        progress.layer(d.short(), "Preparing");
        blobs.push((d.clone(), store.blob_path(&d)));
    }
    // Where else on this registry each blob is, as far as the store knows
    // (images tagged for another of its repositories): a candidate for a
    // cross-repository mount.
    let mut elsewhere: std::collections::HashMap<Digest, String> = Default::default();
    for img in store.images().unwrap_or_default() {
        let Some(t) = img
            .tags
            .iter()
            .find(|t| t.domain() == target.domain() && t.path() != repo)
        else {
            continue;
        };
        for l in store.layers(&img.id).unwrap_or_default() {
            elsewhere
                .entry(l.blob_digest)
                .or_insert_with(|| t.path().to_string());
        }
    }
    // Layers in parallel, a few at a time.
    let results: Vec<Result<(), ClientError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = blobs
            .chunks(blobs.len().div_ceil(4).max(1))
            .map(|chunk| {
                let client = &client;
                let repo = &repo;
                let elsewhere = &elsewhere;
                scope.spawn(move || {
                    for (d, path) in chunk {
                        if client.has_blob(repo, d)? {
                            progress.layer(d.short(), "Layer already exists");
                            continue;
                        }
                        if let Some(from) = elsewhere.get(d) {
                            if client.mount(repo, d, from)? {
                                progress.layer(d.short(), &format!("Mounted from {from}"));
                                continue;
                            }
                        }
                        client.upload(repo, d, path, progress)?;
                        progress.layer(d.short(), "Pushed");
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("push thread"))
            .collect()
    });
    for r in results {
        r?;
    }
    let tag = target.tag().unwrap_or("latest");
    let resp = client.renewing(|| {
        client
            .authed(
                client
                    .agent
                    .put(client.url(&format!("/v2/{repo}/manifests/{tag}"))),
            )
            .header("Content-Type", &record.manifest_media_type)
            .send(&manifest[..])
    })?;
    if resp.status().as_u16() != 201 {
        return Err(client.failure("manifest upload", resp));
    }
    progress.line(&format!(
        "{tag}: digest: {} size: {}",
        record.manifest_digest,
        manifest.len()
    ));
    store.add_repo_digest(target, &record.manifest_digest, &record.id)?;
    Ok((record.manifest_digest.clone(), manifest.len()))
}

/// `berth pull`: fetches the manifest (linux/amd64 from an index), the
/// config and the layers the store lacks; returns the image id.
pub fn pull(
    store: &mut Store,
    r: &Reference,
    progress: &dyn Progress,
) -> Result<Digest, ClientError> {
    pull_as(store, r, progress, None)
}

/// `pull` with the caller's credentials (base64 `user:password`).
pub fn pull_as(
    store: &mut Store,
    r: &Reference,
    progress: &dyn Progress,
    basic: Option<String>,
) -> Result<Digest, ClientError> {
    let settings = Settings::load()?;
    // Docker Hub's names are tried on its mirrors first, with the
    // mirrors' own credentials; a mirror that fails passes to the next.
    if r.domain() == DOCKER_HUB {
        for m in &settings.registry_mirrors {
            let (host, plain) = mirror_host(m)?;
            let scope = format!("repository:{}:pull", r.path());
            let tried = Client::connect_with(&settings, &host, plain, vec![scope], None)
                .and_then(|c| pull_from(&c, store, r, progress));
            match tried {
                Ok(id) => return Ok(id),
                Err(e) => {
                    tracing::info!(mirror = %m, error = %e, "the mirror failed; trying the next");
                    progress.line(&format!("mirror {m}: {e}"));
                }
            }
        }
    }
    let client = Client::for_reference_as(r, "pull", basic)?;
    pull_from(&client, store, r, progress)
}

/// Docker Hub's domain in references.
const DOCKER_HUB: &str = "docker.io";

/// `pull` from the registry `client` reaches.
fn pull_from(
    client: &Client,
    store: &mut Store,
    r: &Reference,
    progress: &dyn Progress,
) -> Result<Digest, ClientError> {
    let repo = repo_of(r);
    let reference = match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let fetch_manifest = |reference: &str| -> Result<(Vec<u8>, String), ClientError> {
        let mut resp = client.get(&format!("/v2/{repo}/manifests/{reference}"), Some(ACCEPT))?;
        if !resp.status().is_success() {
            return Err(client.failure(&format!("manifest {repo}:{reference}"), resp));
        }
        let media = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .body_mut()
            .with_config()
            .limit(berth_image::store::MANIFEST_LIMIT)
            .read_to_vec()
            .map_err(|e| client.err(e.to_string()))?;
        Ok((body, media))
    };
    let (mut bytes, mut media) = fetch_manifest(&reference)?;
    // Asked for by digest: the bytes must be those.
    if let Some(want) = r.digest() {
        let got = Digest::of(want.algorithm(), &bytes);
        if &got != want {
            return Err(ClientError::Invalid(format!(
                "the registry sent a manifest with digest {got}, not {want}"
            )));
        }
    }
    // What the repository knows the image by: the index's digest for a
    // multi-platform image, as docker records it.
    let repo_digest = Digest::sha256_of(&bytes);
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Invalid(format!("the registry's manifest: {e}")))?;
    if let Some(list) = doc["manifests"].as_array() {
        let pick = list
            .iter()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64")
            .ok_or_else(|| {
                ClientError::Invalid(format!("{repo}:{reference} has no linux/amd64 image"))
            })?;
        let d: Digest = pick["digest"]
            .as_str()
            .unwrap_or("")
            .parse()
            .map_err(|e| ClientError::Invalid(format!("the registry's index: {e}")))?;
        (bytes, media) = fetch_manifest(&d.to_string())?;
        let got = Digest::of(d.algorithm(), &bytes);
        if got != d {
            return Err(ClientError::Invalid(format!(
                "the registry sent a manifest with digest {got}, not {d} as its index says"
            )));
        }
        doc = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Invalid(format!("the registry's manifest: {e}")))?;
    }
    let manifest_digest = Digest::sha256_of(&bytes);
    let parse = |v: &serde_json::Value| -> Result<Digest, ClientError> {
        v["digest"]
            .as_str()
            .unwrap_or("")
            .parse()
            .map_err(|e| ClientError::Invalid(format!("the registry's manifest: {e}")))
    };
    let config_digest = parse(&doc["config"])?;
    let layers: Vec<PulledLayer> = doc["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            Ok(PulledLayer {
                digest: parse(l)?,
                size: l["size"].as_u64().unwrap_or(0),
                media_type: l["mediaType"].as_str().unwrap_or("").to_string(),
            })
        })
        .collect::<Result<_, ClientError>>()?;
    progress.line(&format!("{reference}: Pulling from {repo}"));
    for l in &layers {
        let status = if store.has_blob(&l.digest) {
            "Already exists"
        } else {
            "Pulling fs layer"
        };
        progress.layer(l.digest.short(), status);
    }
    let mut cresp = client.get(&format!("/v2/{repo}/blobs/{config_digest}"), None)?;
    if !cresp.status().is_success() {
        return Err(client.failure(&format!("config {config_digest}"), cresp));
    }
    let config = cresp
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_vec()
        .map_err(|e| client.err(e.to_string()))?;
    let fetched: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut fetch = |l: &PulledLayer| -> std::io::Result<Box<dyn Read + Send + '_>> {
        if let Ok(mut f) = fetched.lock() {
            f.push(l.digest.short().to_string());
        }
        let mut r = Resuming {
            client,
            path: format!("/v2/{repo}/blobs/{}", l.digest),
            id: l.digest.short().to_string(),
            total: l.size,
            done: 0,
            inner: None,
            retries: 0,
            progress,
        };
        // The first request now, so that a refusal is reported as such.
        r.open()?;
        Ok(Box::new(r))
    };
    let tag = r.tag().map(|_| vec![r.clone()]).unwrap_or_default();
    let id = berth_image::load::add_pulled(
        store,
        (bytes, manifest_digest.clone(), media),
        config,
        config_digest,
        layers,
        &mut fetch,
        tag,
    )?;
    for id in fetched.into_inner().unwrap_or_default() {
        progress.layer(&id, "Pull complete");
    }
    store.add_repo_digest(r, &repo_digest, &id)?;
    progress.line(&format!("Digest: {manifest_digest}"));
    progress.line(&format!(
        "Status: Downloaded newer image for {}",
        r.familiar()
    ));
    Ok(id)
}

/// Docker's client config: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn docker_config_path() -> std::path::PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => std::path::PathBuf::from(d).join("config.json"),
        None => {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".docker/config.json")
        }
    }
}

/// The base64 `user:password` the docker config holds for `host`.
fn credentials(host: &str) -> Option<String> {
    let text = std::fs::read_to_string(docker_config_path()).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["auths"][host]["auth"].as_str().map(str::to_string)
}

/// `berth login`: checks the credentials against the registry (at its
/// token endpoint, or basic auth on `/v2/`), then keeps them in the docker
/// config (docker's format: base64 `auths`).
/// Whether the registry at `host` takes these credentials (the daemon's
/// `/auth`: the client keeps them, not berth); returns them encoded.
pub fn check_login(host: &str, user: &str, password: &str) -> Result<String, ClientError> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let client = Client::connect(host, Vec::new(), Some(b64.clone()))?;
    let resp = client.get("/v2/", None)?;
    if !resp.status().is_success() {
        return Err(client.failure("login", resp));
    }
    Ok(b64)
}

pub fn login(host: &str, user: &str, password: &str) -> Result<(), ClientError> {
    let b64 = check_login(host, user, password)?;
    update_config(|v| {
        v["auths"][host] = serde_json::json!({"auth": b64});
    })
}

/// `berth logout`: forgets the registry's credentials; false if there
/// were none.
pub fn logout(host: &str) -> Result<bool, ClientError> {
    let mut had = false;
    update_config(|v| {
        if let Some(a) = v["auths"].as_object_mut() {
            had = a.remove(host).is_some();
        }
    })?;
    Ok(had)
}

/// Rewrites the docker config (atomically, mode 0600), keeping whatever
/// else it holds.
fn update_config(f: impl FnOnce(&mut serde_json::Value)) -> Result<(), ClientError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = docker_config_path();
    let mut v: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if !v["auths"].is_object() {
        v["auths"] = serde_json::json!({});
    }
    f(&mut v);
    let io = |e: std::io::Error| ClientError::Invalid(format!("{}: {e}", path.display()));
    let dir = path.parent().expect("a config path has a directory");
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(".config.json.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(
        serde_json::to_string_pretty(&v)
            .expect("serializes")
            .as_bytes(),
    )
    .map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_are_urls_of_a_host() {
        assert_eq!(
            mirror_host("http://127.0.0.1:5000/").unwrap(),
            ("127.0.0.1:5000".to_string(), true)
        );
        assert_eq!(
            mirror_host("https://mirror.example").unwrap(),
            ("mirror.example".to_string(), false)
        );
        for bad in [
            "mirror.example",
            "ftp://m",
            "https://",
            "https://m/v2/",
            "https://user@m",
            "https://m?x",
        ] {
            assert!(mirror_host(bad).is_err(), "{bad}");
        }
    }
}
