//! Listening: plain or TLS, a connection limit under the fd limit, and
//! a clean shutdown on SIGTERM or SIGINT.

use std::collections::HashMap;
use std::sync::Arc;

use super::http::BODY_IDLE;
use super::router::router;
use super::Registry;
use crate::storage::Storage;

/// What `serve` needs.
pub struct Settings {
    pub addr: String,
    pub storage: Arc<dyn Storage>,
    pub auth: crate::auth::Auth,
    /// Uploads left untouched this long are removed.
    pub upload_ttl: std::time::Duration,
    /// Serve HTTPS with this.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Collect garbage every `.0`, with grace period `.1`.
    pub gc: Option<(std::time::Duration, std::time::Duration)>,
    /// Webhooks.
    pub notify: Option<crate::notify::Notifier>,
    /// A request body that sends nothing this long is dropped.
    pub body_idle: std::time::Duration,
    /// Connections one client address may hold at once (more are closed
    /// at accept).
    pub max_client_conns: usize,
    /// Told the address actually bound (port 0 picks a free one) and
    /// whether it serves HTTPS, once the registry listens.
    pub on_listening: Option<Box<dyn FnOnce(std::net::SocketAddr, bool) + Send>>,
}

/// File descriptors kept free for new clients, the store and the
/// runtime: connections beyond the fd limit less this are closed at
/// accept, so a crowd of slow clients cannot take the last fds.
pub(super) const FD_HEADROOM: usize = 64;

/// Counts one connection of a client address while it lives.
pub(super) struct ConnSlot {
    per_client: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
    total: Arc<std::sync::atomic::AtomicUsize>,
    ip: std::net::IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.total.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut m) = self.per_client.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

/// A slot for a new connection from `ip`, or None when the client holds
/// `cap` already or the process is near its fd limit.
pub(super) fn conn_slot(
    per_client: &Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
    total: &Arc<std::sync::atomic::AtomicUsize>,
    ip: std::net::IpAddr,
    cap: usize,
    max_total: usize,
) -> Option<ConnSlot> {
    let mut m = per_client.lock().ok()?;
    let n = m.entry(ip).or_insert(0);
    if *n >= cap || total.load(std::sync::atomic::Ordering::SeqCst) >= max_total {
        return None;
    }
    *n += 1;
    total.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Some(ConnSlot {
        per_client: per_client.clone(),
        total: total.clone(),
        ip,
    })
}

/// A rustls server config from PEM files: the certificate chain and its
/// private key.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no CERTIFICATE in the file",
            cert.display()
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("TLS certificate and key: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

pub(super) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Serves the registry until ctrl-c or SIGTERM; uploads left untouched
/// for `upload_ttl` are removed.
pub async fn serve(settings: Settings) -> std::io::Result<()> {
    let Settings {
        addr,
        storage,
        auth,
        upload_ttl,
        tls,
        gc,
        notify,
        body_idle,
        max_client_conns,
        on_listening,
    } = settings;
    let _ = BODY_IDLE.set(body_idle);
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
        .min(1 << 20) as usize;
    let max_total = nofile.saturating_sub(FD_HEADROOM).max(1);
    let per_client = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    if let Some((every, grace)) = gc {
        let s = storage.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let s = s.clone();
                match tokio::task::spawn_blocking(move || s.gc(grace, false)).await {
                    Ok(Ok(r)) => tracing::info!(
                        removed = r.removed,
                        bytes = r.bytes,
                        kept = r.kept,
                        "garbage collected"
                    ),
                    Ok(Err(e)) => tracing::warn!(error = %e, "garbage collection failed"),
                    Err(_) => {}
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let sweeper = storage.clone();
    tokio::spawn(async move {
        let every = (upload_ttl / 4).clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(600),
        );
        loop {
            let s = sweeper.clone();
            let _ = tokio::task::spawn_blocking(move || s.expire_uploads(upload_ttl)).await;
            tokio::time::sleep(every).await;
        }
    });
    let mut registry = Registry::new(storage, auth);
    registry.tls = tls.is_some();
    registry.notify = notify;
    let app = router(Arc::new(registry));
    if let Some(f) = on_listening {
        f(listener.local_addr()?, tls.is_some());
    }
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(c) => c,
                // Out of fds and the like: wait, do not spin.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some(slot) = conn_slot(&per_client, &total, peer.ip(), max_client_conns, max_total)
        else {
            // Closed at once: this client holds its share, or the fds
            // left are kept for others.
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper_util::service::TowerToHyperService::new(app);
            let mut http = hyper::server::conn::http1::Builder::new();
            // A client that does not finish its request head in time is
            // dropped (slow clients cannot hold connections forever).
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30));
            match acceptor {
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(tcp),
                    );
                    let Ok(Ok(stream)) = handshake.await else {
                        return;
                    };
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
                // Plain HTTP: blobs go out by sendfile.
                None => {
                    let io = crate::sendfile::SendfileStream(tcp);
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                        .await;
                }
            }
        });
    }
}
