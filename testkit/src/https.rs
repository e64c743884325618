//! A minimal HTTPS/1.1 server for the router fakes: a certificate from a CA of the test's own
//! (made with openssl), keep-alive connections, JSON bodies, one handler for every request.
//! A handler answering `None` drops the connection without a reply.
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

/// One request.
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    /// The body as sent (a form, a file).
    pub raw_body: Vec<u8>,
}

const RAW_TYPE: &str = "$raw-content-type";
const RAW_BODY: &str = "$raw-body";
const RAW_HEADERS: &str = "$raw-headers";

/// A reply that is not JSON: `body` sent as it is, with `content_type`.
pub fn raw(content_type: &str, body: String) -> Value {
    serde_json::json!({ RAW_TYPE: content_type, RAW_BODY: body })
}

/// [`raw`] with more headers (`set-cookie`, `location`, ...).
pub fn raw_with(content_type: &str, body: String, headers: &[(&str, String)]) -> Value {
    let headers: Vec<Value> = headers
        .iter()
        .map(|(k, v)| serde_json::json!([k, v]))
        .collect();
    serde_json::json!({ RAW_TYPE: content_type, RAW_BODY: body, RAW_HEADERS: headers })
}

pub type Handler =
    Arc<dyn Fn(Req) -> Pin<Box<dyn Future<Output = Option<(u16, Value)>> + Send>> + Send + Sync>;

pub struct Server {
    /// `https://IP:PORT`.
    pub endpoint: String,
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `openssl ARGS` in `dir`; its standard output (a failure fails the test).
pub fn openssl(args: &[&str], dir: &Path) -> String {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A server configuration with a certificate for 127.0.0.1 signed by a CA made in `dir`
/// (`dir/ca.crt`), with openssl.
pub fn tls_config(dir: &Path) -> rustls::ServerConfig {
    tls_config_for(dir, std::net::Ipv4Addr::LOCALHOST.into())
}

/// A server configuration with a certificate for `ip` signed by a CA made in `dir`.
pub fn tls_config_for(dir: &Path, ip: std::net::IpAddr) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=fake-router-ca",
    ]);
    openssl(&a, dir);
    let cn = format!("/CN={ip}");
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend(["-keyout", "srv.key", "-out", "srv.csr", "-subj", &cn]);
    openssl(&a, dir);
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=IP:{ip}\n")).unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
        dir,
    );
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("srv.crt"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("srv.key")).unwrap();
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
}

/// Serves `handler` on a loopback port with TLS; certificates go to `dir`.
pub async fn start(dir: &Path, handler: Handler) -> Server {
    start_on(dir, std::net::Ipv4Addr::LOCALHOST.into(), handler).await
}

/// Serves `handler` on a port of `ip` with TLS; certificates (for `ip`) go to `dir`.
pub async fn start_on(dir: &Path, ip: std::net::IpAddr, handler: Handler) -> Server {
    let config = Arc::new(tls_config_for(dir, ip));
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let endpoint = format!("https://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            let h = handler.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    connection(tls, h).await;
                }
            });
        }
    });
    Server {
        endpoint,
        ca: dir.join("ca.crt"),
        task,
    }
}

async fn connection<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: S,
    handler: Handler,
) {
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let req = Req {
            method,
            path: path.to_string(),
            query: query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            raw_body: body,
        };
        let Some((status, reply)) = handler(req).await else {
            return;
        };
        let (ct, text) = match (reply.get(RAW_TYPE), reply.get(RAW_BODY)) {
            (Some(Value::String(ct)), Some(Value::String(b))) => (ct.clone(), b.clone()),
            _ => ("application/json".to_string(), reply.to_string()),
        };
        let mut extra = String::new();
        for h in reply
            .get(RAW_HEADERS)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(k), Some(v)) = (h[0].as_str(), h[1].as_str()) {
                extra.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {ct}\r\n{extra}content-length: {}\r\n\r\n{text}",
            text.len()
        );
        if r.get_mut().write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}
