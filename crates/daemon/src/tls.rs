//! TLS for the daemon's TCP addresses, as dockerd's `--tls`/`--tlsverify`
//! give it: the server's certificate and key, and with `--tlsverify`
//! clients must show a certificate the given CA signed (mutual TLS).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// TLS for TCP hosts, as dockerd's flags give it.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// With `verify`, clients must show a certificate this CA signed.
    pub ca: Option<std::path::PathBuf>,
    pub verify: bool,
}

fn certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no CERTIFICATE in the file", path.display()));
    }
    Ok(chain)
}

pub fn server_config(t: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&t.cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&t.key).map_err(|e| format!("{}: {e}", t.key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if t.verify {
        let ca =
            t.ca.as_ref()
                .ok_or_else(|| "--tlsverify needs the clients' CA: give --tlscacert".to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(ca)? {
            roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
