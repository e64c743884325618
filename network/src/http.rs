//! A small JSON-over-HTTPS client for router APIs: TLS verified (system roots plus the lab's
//! CA file), fixed headers (API keys), one connection pool, counted requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// What went wrong with a request.
#[derive(Debug)]
pub enum HttpError {
    /// No answer (connection refused or dropped, TLS failure): maybe worth retrying.
    Transport(String),
    /// An answer with a non-success status; the body as text.
    Status(u16, String),
    /// A success status with a body that is not JSON.
    Body(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Transport(m) => write!(f, "no answer: {m}"),
            HttpError::Status(s, b) => write!(f, "HTTP {s}: {b}"),
            HttpError::Body(m) => write!(f, "not JSON: {m}"),
        }
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
    /// A client for `base` (`https://host[:port]`) sending `headers` with every request.
    pub fn new(
        base: &str,
        ca: Option<&std::path::Path>,
        headers: Vec<(String, String)>,
    ) -> Result<Http, String> {
        if !base.starts_with("https://") {
            return Err(format!(
                "`{base}` must be an https:// URL: credentials never travel in clear"
            ));
        }
        let tls = cloudlet_core::tls::client_config(ca)?;
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

    /// Sends `method path` with an optional JSON body; the status and the JSON answer.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, HttpError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("accept", "application/json");
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| HttpError::Transport(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| HttpError::Transport(cloudlet_core::error::chain(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| HttpError::Transport(e.to_string()))?
            .to_bytes();
        if !(200..300).contains(&status) {
            return Err(HttpError::Status(
                status,
                String::from_utf8_lossy(&body).chars().take(500).collect(),
            ));
        }
        serde_json::from_slice(&body).map_err(|e| HttpError::Body(e.to_string()))
    }
}
