//! The hypervisor test peers, on loopback ports with a self-signed certificate made here:
//! vcsim (govmomi's vCenter simulator, built by `scripts/vcsim.sh` from its Go module with a
//! small main of ours) and fakepve (PyPI's stateful Proxmox VE simulator, installed by
//! `scripts/fakepve.sh`, started by `fakepve_launch.py`).
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running vcsim; killed when dropped.
pub struct Vcsim {
    child: Child,
    /// `https://127.0.0.1:PORT` (the SDK is at `/sdk`).
    pub endpoint: String,
    /// The server's self-signed certificate (trust it as the CA).
    pub cert: PathBuf,
    /// Its SHA-256 fingerprint, `AB:CD:...`.
    pub fingerprint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The vcsim binary (built once per version into the cache).
pub fn binary() -> PathBuf {
    crate::peer_binary("vcsim.sh")
}

/// A self-signed certificate for 127.0.0.1 in `dir`: (cert, key, SHA-256 fingerprint).
pub fn certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl runs");
    let fingerprint = String::from_utf8_lossy(&o.stdout)
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .to_string();
    (cert, key, fingerprint)
}

/// Reads the URL a peer prints on its first line.
fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(
        url.starts_with("https://127.0.0.1:"),
        "the peer said `{url}`"
    );
    url
}

impl Vcsim {
    /// Starts vcsim with `extra` flags (`-task-delay 100`, `-method-delay NAME:MS`).
    pub fn start(extra: &[&str]) -> Vcsim {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, fingerprint) = certificate(dir.path());
        let mut child = Command::new(binary())
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vcsim starts");
        let url = first_line(&mut child);
        Vcsim {
            child,
            endpoint: url.trim_end_matches("/sdk").to_string(),
            cert,
            fingerprint,
            _dir: dir,
        }
    }
}

/// A running fakepve; killed when dropped.
pub struct FakePve {
    child: Child,
    /// `https://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The server's self-signed certificate.
    pub cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for FakePve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakePve {
    /// Starts fakepve with `guests` (`{"guests": [...]}`), the API token `token_id`=`secret`,
    /// and the first `busy` configuration writes failing with a lock timeout.
    pub fn start(guests: &serde_json::Value, token_id: &str, secret: &str, busy: u32) -> FakePve {
        let o = Command::new("bash")
            .arg(crate::workspace_root().join("scripts/fakepve.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("bash runs");
        assert!(o.status.success(), "scripts/fakepve.sh failed");
        let python = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = certificate(dir.path());
        let g = dir.path().join("guests.json");
        std::fs::write(&g, guests.to_string()).unwrap();
        let mut child = Command::new(python)
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .ancestors()
                    .find_map(|p| {
                        let f = p.join("testkit/fakepve_launch.py");
                        f.exists().then_some(f)
                    })
                    .expect("the launcher"),
            )
            .arg(&g)
            .arg(&cert)
            .arg(&key)
            .arg(token_id)
            .arg(secret)
            .arg(busy.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fakepve starts");
        let endpoint = first_line(&mut child);
        FakePve {
            child,
            endpoint,
            cert,
            _dir: dir,
        }
    }
}
