//! A snapshot of etcd through its API: `POST /v3/maintenance/snapshot` on etcd's JSON gateway
//! (the client port), which streams the database as newline-separated JSON messages whose
//! `result.blob` is base64. etcd appends the SHA-256 of the database to the stream; a
//! snapshot whose last 32 bytes are not that hash is refused (cut short, or corrupted).
//!
//! Bounded: one message at most [`MAX_LINE`] bytes, the whole snapshot at most
//! `Limits::max_bytes`, the transfer within `Limits::timeout`. The snapshot is written to a
//! file as it arrives, never held in memory.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::BackupError;

/// The longest message line accepted (etcd sends 32 KiB blobs, 44 KiB in base64).
pub const MAX_LINE: usize = 1 << 20;

/// How a snapshot is bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest database accepted (etcd's own default quota is 2 GiB, its maximum 8 GiB).
    pub max_bytes: u64,
    /// The deadline for the whole transfer.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 8 << 30,
            timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// What a snapshot wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The database's size (without etcd's appended hash).
    pub bytes: u64,
    /// The etcd server's version, as it says.
    pub version: String,
}

/// Takes a snapshot of the etcd at `endpoint` (`http://` or `https://host:2379`, with `tls`
/// holding the client certificate etcd asks for) into `dest`.
pub async fn snapshot(
    endpoint: &str,
    tls: cloudlet_transport::tls::rustls::ClientConfig,
    dest: &Path,
    limits: Limits,
) -> Result<Taken, BackupError> {
    let fail = |message: String| BackupError::Etcd {
        endpoint: endpoint.to_string(),
        message,
    };
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(fail("not an http(s) address".into()));
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let url = format!("{}/v3/maintenance/snapshot", endpoint.trim_end_matches('/'));
    let run = async {
        let req = hyper::Request::post(url.as_str())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .map_err(|e| fail(e.to_string()))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| fail(cloudlet_transport::chain(&e)))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        if status != 200 {
            let mut text = Vec::new();
            while let Some(f) = body.frame().await {
                if let Ok(d) = f.map(hyper::body::Frame::into_data)
                    && let Ok(d) = d
                {
                    text.extend_from_slice(&d);
                }
                if text.len() > 4096 {
                    break;
                }
            }
            return Err(fail(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&text[..text.len().min(4096)])
            )));
        }
        let written = |source| BackupError::Io {
            path: dest.to_path_buf(),
            doing: "writing",
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(written)?;
        let mut decoder = Decoder::new(limits.max_bytes);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| fail(cloudlet_transport::chain(&e)))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            for chunk in decoder.feed(&data).map_err(&fail)? {
                file.write_all(&chunk).await.map_err(written)?;
            }
        }
        let (tail, taken) = decoder.finish().map_err(&fail)?;
        file.write_all(&tail).await.map_err(written)?;
        file.flush().await.map_err(written)?;
        file.sync_all().await.map_err(written)?;
        // The file is what `etcdctl snapshot save` writes: the database and etcd's hash after
        // it, which `etcdutl snapshot restore` checks again.
        Ok(taken)
    };
    match tokio::time::timeout(limits.timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(fail(format!(
            "no whole snapshot within {}s",
            limits.timeout.as_secs()
        ))),
    }
}

/// Turns the gateway's message stream into the database's bytes, holding back the last 32
/// (the hash etcd appends) until the stream ends.
#[derive(Debug)]
pub struct Decoder {
    line: Vec<u8>,
    held: Vec<u8>,
    hash: Sha256,
    written: u64,
    max: u64,
    version: String,
}

impl Decoder {
    /// A decoder accepting at most `max` bytes of database.
    pub fn new(max: u64) -> Decoder {
        Decoder {
            line: Vec::new(),
            held: Vec::new(),
            hash: Sha256::new(),
            written: 0,
            max,
            version: String::new(),
        }
    }

    /// Feeds bytes of the stream; the database bytes that are sure not to be the hash.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::new();
        for &b in data {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                if let Some(c) = self.message(&line)? {
                    out.push(c);
                }
            } else {
                if self.line.len() >= MAX_LINE {
                    return Err(format!("a message longer than {MAX_LINE} bytes"));
                }
                self.line.push(b);
            }
        }
        Ok(out)
    }

    fn message(&mut self, line: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let v: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| format!("a message that is not JSON: {e}"))?;
        if let Some(err) = v.get("error") {
            let msg = err
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("an error without a message");
            return Err(format!("etcd stopped the snapshot: {}", bounded(msg)));
        }
        let r = v
            .get("result")
            .ok_or("a message without `result`".to_string())?;
        if let Some(ver) = r.get("version").and_then(|x| x.as_str())
            && self.version.is_empty()
        {
            self.version = bounded(ver);
        }
        let Some(blob) = r.get("blob").and_then(|b| b.as_str()) else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|e| format!("a blob that is not base64: {e}"))?;
        self.held.extend_from_slice(&bytes);
        if self.held.len() <= 32 {
            return Ok(None);
        }
        let ready: Vec<u8> = self.held.drain(..self.held.len() - 32).collect();
        self.written += ready.len() as u64;
        if self.written > self.max {
            return Err(format!("larger than the {} bytes allowed", self.max));
        }
        self.hash.update(&ready);
        Ok(Some(ready))
    }

    /// Ends the stream: the last database bytes and etcd's hash after them, and what was
    /// taken, when that hash matches.
    pub fn finish(mut self) -> Result<(Vec<u8>, Taken), String> {
        let mut tail = Vec::new();
        if !self.line.is_empty() {
            // A last message without its newline.
            let line = std::mem::take(&mut self.line);
            if let Some(c) = self.message(&line)? {
                tail = c;
            }
        }
        if self.written == 0 || self.held.len() != 32 {
            return Err("the stream ended before the snapshot did".into());
        }
        let got = self.hash.finalize();
        if got.as_slice() != self.held.as_slice() {
            return Err(
                "the snapshot does not match the hash etcd appended (cut short or corrupted)"
                    .into(),
            );
        }
        tail.extend_from_slice(&self.held);
        Ok((
            tail,
            Taken {
                bytes: self.written,
                version: self.version,
            },
        ))
    }
}

fn bounded(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(db: &[u8], hash: &[u8], split: usize) -> Vec<u8> {
        let mut all = db.to_vec();
        all.extend_from_slice(hash);
        let mut out = Vec::new();
        for c in all.chunks(split) {
            let b = base64::engine::general_purpose::STANDARD.encode(c);
            out.extend_from_slice(
                format!("{{\"result\":{{\"blob\":\"{b}\",\"version\":\"3.6.0\"}}}}\n").as_bytes(),
            );
        }
        out
    }

    fn decode(s: &[u8], feed: usize, max: u64) -> Result<(Vec<u8>, Taken), String> {
        let mut d = Decoder::new(max);
        let mut db = Vec::new();
        for c in s.chunks(feed) {
            for part in d.feed(c)? {
                db.extend(part);
            }
        }
        let (tail, t) = d.finish()?;
        db.extend(tail);
        Ok((db, t))
    }

    #[test]
    fn the_database_comes_out_whole_however_the_stream_is_cut() {
        let db: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let hash = Sha256::digest(&db);
        for (split, feed) in [(32 * 1024, 7), (10, 4096), (100_032, 1 << 20), (31, 33)] {
            let s = stream(&db, &hash, split);
            let (got, t) = decode(&s, feed, 1 << 30).unwrap();
            assert_eq!(got[..got.len() - 32], db);
            assert_eq!(got[got.len() - 32..], hash[..]);
            assert_eq!(t.bytes, 100_000);
            assert_eq!(t.version, "3.6.0");
        }
    }

    #[test]
    fn a_cut_a_flipped_byte_an_error_and_an_oversized_snapshot_are_refused() {
        let db = vec![7u8; 5000];
        let hash = Sha256::digest(&db);
        let s = stream(&db, &hash, 1000);
        // Cut: the last message missing.
        let cut = &s[..s.len() - 200];
        let cut = &cut[..cut.iter().rposition(|b| *b == b'\n').unwrap() + 1];
        assert!(decode(cut, 64, 1 << 20).unwrap_err().contains("hash"));
        let mut flipped = db.clone();
        flipped[10] ^= 1;
        let s2 = stream(&flipped, &hash, 1000);
        assert!(decode(&s2, 64, 1 << 20).unwrap_err().contains("hash"));
        let err = b"{\"error\":{\"grpc_code\":14,\"message\":\"etcdserver: no leader\"}}\n";
        assert!(decode(err, 64, 1 << 20).unwrap_err().contains("no leader"));
        assert!(decode(&s, 64, 1000).unwrap_err().contains("larger"));
        assert!(decode(b"", 64, 10).unwrap_err().contains("ended"));
        let long = vec![b'x'; MAX_LINE + 1];
        assert!(decode(&long, 4096, 10).unwrap_err().contains("longer"));
    }
}
