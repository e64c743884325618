//! vcsim (govmomi's vCenter simulator, built by `scripts/vcsim.sh` from its Go module with a
//! small main of ours) started on a loopback port with a self-signed certificate made here.
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

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("scripts/vcsim.sh").exists())
        .expect("the workspace root")
        .to_path_buf()
}

/// The vcsim binary (built once per version into the cache).
pub fn binary() -> PathBuf {
    let o = Command::new("bash")
        .arg(root().join("scripts/vcsim.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("bash runs");
    assert!(o.status.success(), "scripts/vcsim.sh failed");
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

impl Vcsim {
    /// Starts vcsim with `extra` flags (`-task-delay 100`, `-method-delay NAME:MS`).
    pub fn start(extra: &[&str]) -> Vcsim {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("vcsim.crt");
        let key = dir.path().join("vcsim.key");
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
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim();
        assert!(url.starts_with("https://127.0.0.1:"), "vcsim said `{url}`");
        Vcsim {
            child,
            endpoint: url.trim_end_matches("/sdk").to_string(),
            cert,
            fingerprint,
            _dir: dir,
        }
    }
}
