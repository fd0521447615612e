//! TLS for the daemon's TCP addresses, as dockerd's `--tls`/`--tlsverify`
//! give it: the server's certificate and key, and with `--tlsverify`
//! clients must show a certificate the given CA signed (mutual TLS).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::listen::{ListenError, TlsSettings};

fn certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ListenError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ListenError::Tls(format!("{}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(ListenError::Tls(format!(
            "{}: no CERTIFICATE in the file",
            path.display()
        )));
    }
    Ok(chain)
}

pub fn server_config(t: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, ListenError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&t.cert)?;
    let key = PrivateKeyDer::from_pem_file(&t.key)
        .map_err(|e| ListenError::Tls(format!("{}: {e}", t.key.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ListenError::Tls(e.to_string()))?;
    let builder = if t.verify {
        let ca = t.ca.as_ref().ok_or_else(|| {
            ListenError::Tls("--tlsverify needs the clients' CA: give --tlscacert".into())
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(ca)? {
            roots
                .add(c)
                .map_err(|e| ListenError::Tls(format!("{}: {e}", ca.display())))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ListenError::Tls(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| ListenError::Tls(format!("the certificate and key: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
