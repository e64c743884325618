//! A JSON-RPC 2.0 client for TrueNAS's WebSocket API.
//!
//! One connection, one reader task: it matches replies to calls by id and reports job progress
//! (`collection_update` events of `core.get_jobs`) as it comes. Job methods answer when the
//! job has ended; if the connection drops meanwhile, the call fails as retryable and the job
//! goes on on the server, where [`Client::wait_running_job`] finds it next time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cloudlet_transport::tls::rustls;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// What went wrong talking to TrueNAS.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The endpoint or the credentials cannot be used (nothing was sent).
    #[error("{0}")]
    Config(String),
    /// The TLS settings cannot be made (an unreadable CA file).
    #[error("TLS settings")]
    Tls(#[source] cloudlet_transport::tls::TlsError),
    /// Connecting or the TLS/WebSocket handshake failed.
    #[error("connecting to {endpoint}: {message}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// The connection closed before the reply came.
    #[error("the connection to TrueNAS closed while `{method}` was in flight")]
    Disconnected {
        /// The call.
        method: String,
    },
    /// TrueNAS answered with an error.
    #[error("`{method}` failed: {message}")]
    Call {
        /// The call.
        method: String,
        /// TrueNAS's message (`errname: reason`).
        message: String,
        /// The JSON-RPC error code.
        code: i64,
    },
    /// A reply that is not what the API documents.
    #[error("`{method}` answered something unexpected: {message}")]
    Protocol {
        /// The call.
        method: String,
        /// What was wrong.
        message: String,
    },
}

impl RpcError {
    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            RpcError::Disconnected { .. } | RpcError::Connect { .. }
        )
    }
}

type Pending = Arc<Mutex<HashMap<u64, (String, oneshot::Sender<Result<Value, RpcError>>)>>>;

/// Counters of what a client sent.
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that change something (create, update, delete, setperm).
    pub writes: AtomicU64,
    /// Job progress events received.
    pub job_events: AtomicU64,
}

/// A connected, authenticated client.
pub struct Client {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next: AtomicU64,
    /// What was sent.
    pub stats: Arc<Stats>,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// How to reach TrueNAS.
#[derive(Debug, Clone)]
pub struct Connect {
    /// `wss://HOST[:PORT]/api/current` or a pinned version (`/api/v25.10.1`).
    pub endpoint: String,
    /// An API key (sent only over TLS).
    pub api_key: String,
    /// Extra CA certificates (PEM) to trust, for a self-signed NAS; verification stays on.
    pub ca: Option<std::path::PathBuf>,
}

/// Host, port and whether TLS is used, from a `ws://` or `wss://` URL.
fn parse_endpoint(endpoint: &str) -> Result<(bool, String, u16), RpcError> {
    let (tls, rest) = if let Some(r) = endpoint.strip_prefix("wss://") {
        (true, r)
    } else if let Some(r) = endpoint.strip_prefix("ws://") {
        (false, r)
    } else {
        return Err(RpcError::Config(format!(
            "TrueNAS endpoint `{endpoint}` must be a wss:// URL such as wss://nas.lan/api/current"
        )));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h.trim_matches(['[', ']']).to_string(),
            p.parse()
                .map_err(|_| RpcError::Config(format!("bad port in `{endpoint}`")))?,
        ),
        _ => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(RpcError::Config(format!("no host in `{endpoint}`")));
    }
    Ok((tls, host, port))
}

impl Client {
    /// Connects and logs in with the API key. An API key is never sent over plain `ws://`:
    /// TrueNAS revokes keys it receives in clear.
    pub async fn connect(c: &Connect, stats: Arc<Stats>) -> Result<Client, RpcError> {
        let (tls, host, port) = parse_endpoint(&c.endpoint)?;
        if !tls {
            return Err(RpcError::Config(format!(
                "refusing to send the API key over plain ws:// ({}): TrueNAS revokes a key it receives without TLS. Use wss:// (with `ca:` for a self-signed certificate)",
                c.endpoint
            )));
        }
        let connect_err = |message: String| RpcError::Connect {
            endpoint: c.endpoint.clone(),
            message,
        };
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let config =
            cloudlet_transport::tls::client_config(c.ca.as_deref()).map_err(RpcError::Tls)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| RpcError::Config(format!("`{host}`: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| connect_err(format!("TLS: {e}")))?;
        let client = Self::over(stream, &c.endpoint, stats).await?;
        let ok = client
            .call("auth.login_with_api_key", json!([c.api_key]))
            .await?;
        if ok != Value::Bool(true) {
            return Err(RpcError::Call {
                method: "auth.login_with_api_key".into(),
                message: "the API key was not accepted (revoked, expired or mistyped)".into(),
                code: 0,
            });
        }
        Ok(client)
    }

    /// Speaks the protocol over an established stream (the WebSocket handshake first).
    async fn over<S>(stream: S, endpoint: &str, stats: Arc<Stats>) -> Result<Client, RpcError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (ws, _) = tokio_tungstenite::client_async(endpoint, stream)
            .await
            .map_err(|e| RpcError::Connect {
                endpoint: endpoint.to_string(),
                message: format!("WebSocket: {e}"),
            })?;
        let (mut sink, mut source) = ws.split();
        let (out, mut rx) = mpsc::unbounded_channel::<Message>();
        let pending: Pending = Arc::default();
        let (p2, s2) = (pending.clone(), stats.clone());
        // Not detached: the client owns the task and aborts it when dropped.
        #[allow(clippy::disallowed_methods)]
        let reader = tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => if sink.send(m).await.is_err() { break },
                        None => break,
                    },
                    m = source.next() => match m {
                        Some(Ok(Message::Text(t))) => dispatch(&p2, &s2, t.as_str()),
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_))) => {}
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    },
                }
            }
            // Everything still in flight learns that the connection is gone.
            if let Ok(mut p) = p2.lock() {
                for (_, (method, tx)) in p.drain() {
                    let _ = tx.send(Err(RpcError::Disconnected { method }));
                }
            }
        });
        Ok(Client {
            out,
            pending,
            next: AtomicU64::new(1),
            stats,
            reader,
        })
    }

    /// Calls `method` with `params` (a JSON array) and waits for its reply (for a job method:
    /// until the job ended).
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        if is_write(method) {
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
        }
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, (method.to_string(), tx));
        }
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let gone = || RpcError::Disconnected {
            method: method.to_string(),
        };
        self.out
            .send(Message::text(msg.to_string()))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Finds a job of `method` with exactly `args` that an earlier call started (its
    /// connection dropped before the reply) and waits for it to end, so it is not run twice.
    /// With `finished_too`, a job that already succeeded counts as well. `Ok(true)` when such
    /// a job ran to success, `Ok(false)` when there is none.
    pub async fn find_job(
        &self,
        method: &str,
        args: &Value,
        finished_too: bool,
    ) -> Result<bool, RpcError> {
        let states: &[&str] = if finished_too {
            &["WAITING", "RUNNING", "SUCCESS"]
        } else {
            &["WAITING", "RUNNING"]
        };
        let jobs = self
            .call(
                "core.get_jobs",
                json!([[["method", "=", method], ["state", "in", states]]]),
            )
            .await?;
        let Some(job) = jobs
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| &j["arguments"] == args)
            .max_by_key(|j| j["id"].as_u64())
        else {
            return Ok(false);
        };
        let id = job["id"].clone();
        loop {
            let j = self
                .call("core.get_jobs", json!([[["id", "=", id]]]))
                .await?;
            let state = j[0]["state"].as_str().unwrap_or("SUCCESS").to_string();
            match state.as_str() {
                "SUCCESS" => return Ok(true),
                "FAILED" | "ABORTED" => {
                    return Err(RpcError::Call {
                        method: method.to_string(),
                        message: format!(
                            "the job left running by an earlier apply ended {state}: {}",
                            j[0]["error"].as_str().unwrap_or("")
                        ),
                        code: 0,
                    });
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    }
}

pub(crate) fn is_write(method: &str) -> bool {
    method.ends_with(".create")
        || method.ends_with(".update")
        || method.ends_with(".delete")
        || method == "filesystem.setperm"
}

fn dispatch(pending: &Pending, stats: &Stats, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        tracing::warn!("TrueNAS sent a message that is not JSON; ignored");
        return;
    };
    if v["method"] == "collection_update" {
        let p = &v["params"];
        if p["collection"] == "core.get_jobs" {
            stats.job_events.fetch_add(1, Ordering::Relaxed);
            let f = &p["fields"];
            tracing::info!(
                job = %p["id"],
                method = f["method"].as_str().unwrap_or(""),
                state = f["state"].as_str().unwrap_or(""),
                percent = %f["progress"]["percent"],
                description = f["progress"]["description"].as_str().unwrap_or(""),
                "TrueNAS job progress"
            );
        }
        return;
    }
    let Some(id) = v["id"].as_u64() else {
        return;
    };
    let Some((method, tx)) = pending.lock().ok().and_then(|mut p| p.remove(&id)) else {
        return;
    };
    let r = if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        let data = &e["data"];
        let reason = data["reason"]
            .as_str()
            .or_else(|| e["message"].as_str())
            .unwrap_or("unknown error");
        let message = match data["errname"].as_str() {
            Some(n) => format!("{n}: {reason}"),
            None => reason.to_string(),
        };
        Err(RpcError::Call {
            method,
            message,
            code: e["code"].as_i64().unwrap_or(0),
        })
    } else if let Some(r) = v.get("result") {
        Ok(r.clone())
    } else {
        Err(RpcError::Protocol {
            method,
            message: "a reply with neither result nor error".into(),
        })
    };
    let _ = tx.send(r);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("wss://nas.lan/api/current").unwrap(),
            (true, "nas.lan".into(), 443)
        );
        assert_eq!(
            parse_endpoint("wss://127.0.0.1:8443/api/v25.10.1").unwrap(),
            (true, "127.0.0.1".into(), 8443)
        );
        assert!(!parse_endpoint("ws://nas.lan/api/current").unwrap().0);
        assert!(parse_endpoint("https://nas.lan").is_err());
    }

    #[tokio::test]
    #[allow(clippy::disallowed_methods)]
    async fn an_api_key_is_never_sent_over_plain_ws() {
        let e = Client::connect(
            &Connect {
                endpoint: "ws://127.0.0.1:9/api/current".into(),
                api_key: "1-secret".into(),
                ca: None,
            },
            Arc::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, RpcError::Config(_)), "{e}");
        assert!(e.to_string().contains("revokes"), "{e}");
    }
}
