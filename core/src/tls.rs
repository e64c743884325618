//! TLS client settings for backends with HTTPS or WSS APIs: the system's roots plus an
//! optional CA file of the lab's (a self-signed router or NAS); verification always on.

use std::path::Path;
use std::sync::Arc;

pub use tokio_rustls::rustls;

/// A client configuration trusting the system's roots and the certificates in `ca` (PEM).
pub fn client_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some(ca) = ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .and_then(Iterator::collect)
            .map_err(|e| format!("reading CA file {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("CA file {} holds no certificate", ca.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
