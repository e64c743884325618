//! A small HTTPS client for backend APIs (routers, hypervisors): TLS verified (system roots
//! plus the lab's CA file, or a pinned certificate fingerprint), fixed headers (API keys),
//! one connection pool, counted requests. JSON APIs use [`Http::json`]; others (SOAP) send
//! raw bodies with [`Http::send`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::{BodyExt, Full};
pub use hyper::Method;
use hyper::Request;
pub use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The largest answer [`Http::send`] takes: API answers are small; larger ones are refused.
pub const MAX_BODY: usize = 64 << 20;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer (connection refused or dropped, TLS failure): maybe worth retrying.
    #[error("no answer: {0}")]
    Transport(String),
    /// An answer with a non-success status; the body as text.
    #[error("HTTP {0}: {1}")]
    Status(u16, String),
    /// A success status with a body that is not what was expected.
    #[error("unexpected answer: {0}")]
    Body(String),
}

/// A client that cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The address is not `https://`: credentials would travel in clear.
    #[error("`{url}` must be an https:// URL: credentials never travel in clear")]
    NotHttps {
        /// The address given.
        url: String,
    },
    /// The TLS settings cannot be made (an unreadable CA file, a malformed fingerprint).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// An answer: status, headers and body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The response headers (names lower-case).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The first header called `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A client for one API.
pub struct Http {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    headers: Vec<(String, String)>,
    /// Requests sent.
    pub requests: Arc<AtomicU64>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Http {
    /// A client for `base` (`https://host[:port]`) sending `headers` with every request,
    /// trusting the system's roots and the certificates in `ca`.
    pub fn new(
        base: &str,
        ca: Option<&std::path::Path>,
        headers: Vec<(String, String)>,
    ) -> Result<Http, SetupError> {
        Self::with_tls(base, crate::tls::client_config(ca)?, headers)
    }

    /// A client for `base` with the TLS settings given (see [`crate::tls`]).
    pub fn with_tls(
        base: &str,
        tls: crate::tls::rustls::ClientConfig,
        headers: Vec<(String, String)>,
    ) -> Result<Http, SetupError> {
        if !base.starts_with("https://") {
            return Err(SetupError::NotHttps {
                url: base.chars().take(200).collect(),
            });
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Ok(Http {
            client: Client::builder(TokioExecutor::new()).build(https),
            base: base.trim_end_matches('/').to_string(),
            headers,
            requests: Arc::default(),
        })
    }

    /// The address requests go to (`https://host[:port]`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `method path` with `body` and the extra `headers`; any status is an answer. An
    /// answer's body larger than [`MAX_BODY`] is an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Answer, HttpError> {
        self.send_bounded(method, path, headers, body, MAX_BODY)
            .await
    }

    /// As [`Http::send`], refusing an answer whose body is larger than `max` bytes.
    pub async fn send_bounded(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        max: usize,
    ) -> Result<Answer, HttpError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        // What a request is in the log: never its headers (API keys) or its query (which
        // some APIs use for credentials), nor either body.
        let shown = path.split('?').next().unwrap_or(path);
        let method_name = method.to_string();
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| HttpError::Transport(e.to_string()))?;
        let resp = match self.client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                let e = HttpError::Transport(crate::chain(&e));
                tracing::debug!(
                    method = %method_name,
                    path = shown,
                    ms = started.elapsed().as_millis() as u64,
                    error = %e,
                    "request failed"
                );
                return Err(e);
            }
        };
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = http_body_util::Limited::new(resp.into_body(), max)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    HttpError::Body(format!("the answer is larger than {max} bytes"))
                } else {
                    HttpError::Transport(e.to_string())
                }
            })?
            .to_bytes();
        tracing::debug!(
            method = %method_name,
            path = shown,
            status,
            ms = started.elapsed().as_millis() as u64,
            bytes = body.len(),
            "request"
        );
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Sends `method path` with an optional JSON body; the JSON answer of a success status.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, HttpError> {
        let (headers, bytes): (&[(&str, &str)], Bytes) = match body {
            Some(b) => (
                &[
                    ("accept", "application/json"),
                    ("content-type", "application/json"),
                ],
                Bytes::from(b.to_string()),
            ),
            None => (&[("accept", "application/json")], Bytes::new()),
        };
        let answer = self.send(method, path, headers, bytes).await?;
        if !(200..300).contains(&answer.status) {
            return Err(HttpError::Status(
                answer.status,
                String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(500)
                    .collect(),
            ));
        }
        serde_json::from_slice(&answer.body).map_err(|e| HttpError::Body(format!("not JSON: {e}")))
    }
}
