//! TLS client settings for backends with HTTPS or WSS APIs: the system's roots plus an
//! optional CA file of the lab's (a self-signed router or NAS); verification always on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use tokio_rustls::rustls;

/// The handshake-signature checks of a certificate verifier holding its algorithms in
/// `self.algs`: whatever it decides about the certificate, the server must still prove it
/// holds the certificate's key.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.algs.supported_schemes()
        }
    };
}
pub(crate) use handshake_signatures;

/// TLS settings that cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The CA file could not be read or is not PEM.
    #[error("reading CA file {}", path.display())]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The CA file holds no certificate.
    #[error("CA file {} holds no certificate", path.display())]
    EmptyCa {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of the CA file is unusable.
    #[error("CA file {}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// A pinned fingerprint that is not 32 bytes of hex.
    #[error("`{given}` is not a SHA-256 fingerprint (64 hex digits, colons allowed)")]
    Fingerprint {
        /// What was given (a fingerprint is public).
        given: String,
    },
    /// The TLS library refused the settings.
    #[error("TLS settings")]
    Settings(#[source] rustls::Error),
    /// A client certificate or key in memory is not usable PEM (never shows the key).
    #[error("the {what} is not usable PEM")]
    Pem {
        /// Which: `CA`, `client certificate`, `client key`.
        what: &'static str,
    },
}

/// The TLS settings of a backend: exactly the certificate whose SHA-256 is `fingerprint` when
/// one is pinned, otherwise the system's roots plus the certificates in `ca`.
pub fn config_for(
    fingerprint: Option<&str>,
    ca: Option<&Path>,
) -> Result<rustls::ClientConfig, TlsError> {
    match fingerprint {
        Some(f) => pinned_config(f),
        None => client_config(ca),
    }
}

/// A client configuration for a server that asks for a client certificate (etcd): trusting
/// exactly the CA `ca_pem` (not the system's roots), presenting `cert_pem` with `key_pem`.
pub fn mutual_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ClientConfig, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem { what: "CA" })?;
    if cas.is_empty() {
        return Err(TlsError::Pem { what: "CA" });
    }
    for c in cas {
        roots.add(c).map_err(TlsError::Settings)?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem {
            what: "client certificate",
        })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| TlsError::Pem { what: "client key" })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Settings)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(TlsError::Settings)
}

/// A client configuration trusting the system's roots and the certificates in `ca` (PEM).
pub fn client_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some(ca) = ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .and_then(Iterator::collect)
            .map_err(|source| TlsError::ReadCa {
                path: ca.to_path_buf(),
                source,
            })?;
        if certs.is_empty() {
            return Err(TlsError::EmptyCa {
                path: ca.to_path_buf(),
            });
        }
        for c in certs {
            roots.add(c).map_err(|source| TlsError::BadCa {
                path: ca.to_path_buf(),
                source,
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Settings)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client configuration that trusts exactly the server certificate whose SHA-256
/// fingerprint is `fingerprint` (hex, colons allowed: `AB:CD:...`), for a self-signed
/// appliance (vCenter, ESXi) whose certificate the operator pinned. The handshake signature
/// is still verified against that certificate.
pub fn pinned_config(fingerprint: &str) -> Result<rustls::ClientConfig, TlsError> {
    let hex: String = fingerprint.chars().filter(|c| *c != ':').collect();
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>();
    let sha256: [u8; 32] =
        bytes
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| TlsError::Fingerprint {
                given: fingerprint.chars().take(120).collect(),
            })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algs = provider.signature_verification_algorithms;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Settings)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { sha256, algs }))
        .with_no_client_auth())
}

/// Accepts the one certificate with the pinned fingerprint.
#[derive(Debug)]
struct Pinned {
    sha256: [u8; 32],
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let got = sha2::Sha256::digest(end_entity.as_ref());
        if got[..] == self.sha256[..] {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            let hex: Vec<String> = got.iter().map(|b| format!("{b:02X}")).collect();
            Err(rustls::Error::General(format!(
                "the server's certificate (SHA-256 {}) is not the pinned one",
                hex.join(":")
            )))
        }
    }

    crate::tls::handshake_signatures!();
}
