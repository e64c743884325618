//! Downloads of published files (release manifests) whose integrity a checksum the caller
//! holds proves: `https://` with verified TLS, or `http://` for a site's own mirror; a
//! bounded body, a deadline for the whole transfer, redirects followed a few times (release
//! assets answer with one) and never from `https://` down to `http://`.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The address is not `http://` or `https://`.
    #[error("`{0}` is not an http:// or https:// URL")]
    Scheme(String),
    /// The TLS settings cannot be made.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// No answer, or the answer broke off.
    #[error("{url}: no answer: {message}")]
    Transport {
        /// Where.
        url: String,
        /// What the connection said.
        message: String,
    },
    /// An answer that is not a success.
    #[error("{url}: HTTP {status}")]
    Status {
        /// Where.
        url: String,
        /// The status.
        status: u16,
    },
    /// More than the allowed bytes.
    #[error("{url}: larger than {limit} bytes")]
    TooLarge {
        /// Where.
        url: String,
        /// The bound.
        limit: usize,
    },
    /// Not done in time.
    #[error("{url}: not downloaded within {timeout:?}")]
    Timeout {
        /// Where.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
    /// A redirect that cannot be followed (none left, no location, https to http).
    #[error("{url}: {message}")]
    Redirect {
        /// Where.
        url: String,
        /// Why not.
        message: String,
    },
}

/// How a download is bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most bytes the body may have.
    pub max_bytes: usize,
    /// The deadline for the whole transfer, redirects included.
    pub timeout: Duration,
}

/// Downloads `url` within `limits`, trusting the system's roots and the certificates in `ca`.
pub async fn get(
    url: &str,
    ca: Option<&std::path::Path>,
    limits: Limits,
) -> Result<Bytes, DownloadError> {
    let tls = crate::tls::client_config(ca)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let run = async {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(DownloadError::Scheme(url));
            }
            let transport = |e: &dyn std::error::Error, url: &str| DownloadError::Transport {
                url: url.to_string(),
                message: crate::chain(e),
            };
            let req = Request::get(url.as_str())
                .header(
                    "user-agent",
                    concat!("cloudlet/", env!("CARGO_PKG_VERSION")),
                )
                .body(Empty::new())
                .map_err(|e| transport(&e, &url))?;
            let resp = client.request(req).await.map_err(|e| transport(&e, &url))?;
            let status = resp.status().as_u16();
            if (300..400).contains(&status) {
                let location = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| DownloadError::Redirect {
                        url: url.clone(),
                        message: format!("HTTP {status} without a location"),
                    })?;
                let next = if location.contains("://") {
                    location.to_string()
                } else {
                    let origin_end = url
                        .find("://")
                        .and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j))
                        .unwrap_or(url.len());
                    format!(
                        "{}/{}",
                        &url[..origin_end],
                        location.trim_start_matches('/')
                    )
                };
                if url.starts_with("https://") && !next.starts_with("https://") {
                    return Err(DownloadError::Redirect {
                        url: url.clone(),
                        message: "redirected from https:// to a plain address".into(),
                    });
                }
                url = next;
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(DownloadError::Status { url, status });
            }
            let body = Limited::new(resp.into_body(), limits.max_bytes);
            return match body.collect().await {
                Ok(b) => Ok(b.to_bytes()),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    Err(DownloadError::TooLarge {
                        url,
                        limit: limits.max_bytes,
                    })
                }
                Err(e) => Err(DownloadError::Transport {
                    url,
                    message: e.to_string(),
                }),
            };
        }
        Err(DownloadError::Redirect {
            url: url.to_string(),
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    };
    tokio::time::timeout(limits.timeout, run)
        .await
        .map_err(|_| DownloadError::Timeout {
            url: url.to_string(),
            timeout: limits.timeout,
        })?
}
