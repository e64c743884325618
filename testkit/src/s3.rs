//! The S3-compatible peer for the backup tests, on a loopback port with TLS: gofakes3's S3
//! implementation behind a Signature Version 4 check made with the AWS SDK's signer
//! (`scripts/s3peer.sh` builds it), and a TCP proxy that cuts a target off mid-transfer.
#![allow(unreachable_pub, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The access key the peer accepts.
pub const ACCESS_KEY: &str = "cloudlet-test-access";
/// Its secret key.
pub const SECRET_KEY: &str = "a-secret-key-that-must-never-be-printed";

/// A running peer; killed when dropped.
pub struct S3Peer {
    child: Child,
    /// `https://127.0.0.1:PORT`.
    pub endpoint: String,
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    /// The CA that signed its certificate.
    pub ca: PathBuf,
    /// The bucket made at its start.
    pub bucket: String,
}

impl Drop for S3Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peer's binary (built once per version into the cache).
pub fn binary() -> PathBuf {
    crate::peer_binary("s3peer.sh")
}

impl S3Peer {
    /// Starts the peer with the bucket `bucket`; its certificate (for 127.0.0.1, signed by
    /// `dir/ca.crt`) and the secret key's file go to `dir`.
    pub fn start(dir: &Path, bucket: &str) -> S3Peer {
        let _ = crate::https::tls_config(dir);
        std::fs::write(dir.join("s3-secret"), SECRET_KEY).unwrap();
        let mut child = Command::new(binary())
            .arg("-cert")
            .arg(dir.join("srv.crt"))
            .arg("-key")
            .arg(dir.join("srv.key"))
            .args(["-access-key", ACCESS_KEY, "-bucket", bucket, "-secret-file"])
            .arg(dir.join("s3-secret"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the S3 peer starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the S3 peer said `{line}`"))
            .parse()
            .unwrap();
        S3Peer {
            child,
            endpoint: format!("https://{addr}"),
            addr,
            ca: dir.join("ca.crt"),
            bucket: bucket.to_string(),
        }
    }
}

/// A TCP proxy on a loopback port in front of `to` that, once cut, closes every connection
/// after `budget` more bytes from clients, and refuses new ones until healed: a target that
/// goes away in the middle of a transfer.
pub struct CuttingProxy {
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
}

struct ProxyState {
    to: SocketAddr,
    /// Bytes from clients, in all.
    sent: AtomicU64,
    /// Where `sent` may go before everything is cut; `u64::MAX` when healed.
    limit: AtomicU64,
    refused: AtomicU64,
    conns: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

impl ProxyState {
    fn cut_now(&self) -> bool {
        self.sent.load(Ordering::SeqCst) >= self.limit.load(Ordering::SeqCst)
    }

    fn close_all(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, st: &ProxyState, count: bool) {
    let mut buf = vec![0_u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if count {
            st.sent.fetch_add(n as u64, Ordering::SeqCst);
            if st.cut_now() {
                st.close_all();
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl CuttingProxy {
    /// A proxy to `to`, passing everything until [`CuttingProxy::cut_after`].
    pub fn start(to: SocketAddr) -> CuttingProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            to,
            sent: AtomicU64::new(0),
            limit: AtomicU64::new(u64::MAX),
            refused: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                if st.cut_now() {
                    st.refused.fetch_add(1, Ordering::SeqCst);
                    drop(c);
                    continue;
                }
                let Ok(up) = TcpStream::connect(st.to) else {
                    continue;
                };
                {
                    let mut conns = st.conns.lock().unwrap();
                    conns.push(c.try_clone().unwrap());
                    conns.push(up.try_clone().unwrap());
                }
                let (c2, up2) = (c.try_clone().unwrap(), up.try_clone().unwrap());
                let (a, b) = (st.clone(), st.clone());
                std::thread::spawn(move || pump(c, up, &a, true));
                std::thread::spawn(move || pump(up2, c2, &b, false));
            }
        });
        CuttingProxy { addr, state }
    }

    /// Cuts everything once `budget` more bytes came from clients.
    pub fn cut_after(&self, budget: u64) {
        let now = self.state.sent.load(Ordering::SeqCst);
        self.state
            .limit
            .store(now.saturating_add(budget), Ordering::SeqCst);
    }

    /// Passes everything again.
    pub fn heal(&self) {
        self.state.limit.store(u64::MAX, Ordering::SeqCst);
    }

    /// Connections refused while cut.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// Bytes from clients so far.
    pub fn sent(&self) -> u64 {
        self.state.sent.load(Ordering::SeqCst)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.close_all();
        let _ = TcpStream::connect(self.addr);
    }
}
