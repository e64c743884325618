//! The certificate a TLS server actually serves, read for a health check: what a browser
//! would get from an ingress address for a host name, or what the API server presents. The
//! handshake is completed against whatever the server sends (nothing is trusted, nothing is
//! sent after it), so an expired, self-signed or wrong certificate is reported rather than
//! refused — the caller decides what is wrong with it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

/// What the server's certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Its subject (`CN=traefik.example`).
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// Its DNS names (subject alternative names).
    pub dns_names: Vec<String>,
    /// Its IP addresses (subject alternative names).
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// Valid from (seconds since the Unix epoch).
    pub not_before: i64,
    /// Valid until (seconds since the Unix epoch).
    pub not_after: i64,
}

impl Served {
    /// Whether the certificate names `host` (a DNS name, a `*.` wildcard one level deep, or
    /// an IP address).
    pub fn covers(&self, host: &str) -> bool {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return self.ip_addresses.contains(&ip);
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.dns_names.iter().any(|n| {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            match n.strip_prefix("*.") {
                Some(rest) => host
                    .split_once('.')
                    .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
                None => n == host,
            }
        })
    }
}

/// Why no certificate was read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServedError {
    /// No TCP connection.
    #[error("connecting to {addr}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The handshake failed (not TLS, refused).
    #[error("TLS handshake with {addr}")]
    Handshake {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Nothing within the time limit.
    #[error("{addr} did not complete a TLS handshake within {}s", limit.as_secs())]
    Timeout {
        /// Where.
        addr: SocketAddr,
        /// The limit.
        limit: Duration,
    },
    /// The server sent no certificate, or one that is not X.509.
    #[error("{addr} sent no readable certificate")]
    Unreadable {
        /// Where.
        addr: SocketAddr,
    },
    /// `sni` is not a name TLS can send.
    #[error("`{0}` is not a server name")]
    Name(String),
}

/// Reads the certificate `addr` serves for the name `sni`, within `limit`.
pub async fn served(addr: SocketAddr, sni: &str, limit: Duration) -> Result<Served, ServedError> {
    let name = rustls::pki_types::ServerName::try_from(sni.to_string())
        .map_err(|_| ServedError::Name(sni.chars().take(255).collect()))?;
    let seen = Arc::new(Inspect {
        leaf: Mutex::new(None),
        algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServedError::Handshake {
            addr,
            source: std::io::Error::other(e),
        })?
        .dangerous()
        .with_custom_certificate_verifier(seen.clone())
        .with_no_client_auth();
    let connect = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ServedError::Connect { addr, source })?;
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|source| ServedError::Handshake { addr, source })
    };
    let handshake = tokio::time::timeout(limit, connect)
        .await
        .map_err(|_| ServedError::Timeout { addr, limit })?;
    let leaf = seen
        .leaf
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    // The certificate is read even when the handshake then failed on something else.
    match (leaf, handshake) {
        (Some(der), _) => parse(&der).ok_or(ServedError::Unreadable { addr }),
        (None, Err(e)) => Err(e),
        (None, Ok(_)) => Err(ServedError::Unreadable { addr }),
    }
}

/// The fields of a DER certificate; `None` when it is not X.509.
pub fn parse(der: &[u8]) -> Option<Served> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns_names.push((*d).to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ip_addresses.push(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?)),
                    16 => ip_addresses.push(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?)),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Some(Served {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        dns_names,
        ip_addresses,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Keeps the server's leaf certificate and accepts it: this connection only reads it.
#[derive(Debug)]
struct Inspect {
    leaf: Mutex<Option<Vec<u8>>>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Inspect {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self
            .leaf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    crate::tls::handshake_signatures!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(names: &[&str]) -> Served {
        Served {
            subject: String::new(),
            issuer: String::new(),
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            ip_addresses: vec!["10.0.0.5".parse().unwrap()],
            not_before: 0,
            not_after: 0,
        }
    }

    #[test]
    fn names_match_as_browsers_match_them() {
        let s = served(&["git.lab.example", "*.apps.lab.example"]);
        assert!(s.covers("git.lab.example"));
        assert!(s.covers("GIT.lab.example."));
        assert!(s.covers("wiki.apps.lab.example"));
        assert!(!s.covers("a.b.apps.lab.example"), "one level only");
        assert!(!s.covers("apps.lab.example"));
        assert!(!s.covers("lab.example"));
        assert!(s.covers("10.0.0.5"));
        assert!(!s.covers("10.0.0.6"));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(parse(b"").is_none());
        assert!(parse(&[0x30, 0x82, 0xff, 0xff, 0, 0]).is_none());
    }
}
