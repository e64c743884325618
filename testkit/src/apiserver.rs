//! A real Kubernetes API server for tests: etcd + kube-apiserver built from their Go modules
//! by `scripts/kube-peers.sh` (cached outside the clone), started on loopback ports, the way
//! controller-runtime's envtest does: self-signed serving certificate (verified by the
//! client), a service-account key pair, RBAC authorization and a static admin token.
#![allow(dead_code, clippy::disallowed_methods)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running etcd + kube-apiserver; both are killed on drop.
pub struct ApiServer {
    pub dir: TempDir,
    pub url: String,
    pub kubeconfig: PathBuf,
    pub token: String,
    /// etcd's client address (`http://127.0.0.1:PORT`).
    pub etcd_url: String,
    etcd: Child,
    apiserver: Child,
    controllers: Option<Child>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(c) = &mut self.controllers {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.apiserver.kill();
        let _ = self.etcd.kill();
        let _ = self.apiserver.wait();
        let _ = self.etcd.wait();
    }
}

/// A free TCP port on loopback.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The directory holding `kube-apiserver` and `etcd` (built on first use).
pub fn peers() -> PathBuf {
    if let Ok(d) = std::env::var("CLOUDLET_KUBE_PEERS") {
        return PathBuf::from(d);
    }
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/kube-peers.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/kube-peers.sh");
    assert!(
        out.status.success(),
        "scripts/kube-peers.sh failed: the tests need kube-apiserver and etcd built from their Go modules"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn run(cmd: &mut Command) {
    let st = cmd.status().expect("spawning a helper");
    assert!(st.success(), "{cmd:?} failed");
}

impl ApiServer {
    /// Starts etcd and kube-apiserver and waits until the API server is ready.
    pub fn start() -> ApiServer {
        Self::start_with(&[])
    }

    /// An API server with `extra` flags besides the usual ones (`--client-ca-file=...` to
    /// trust client certificates a test's CA issues).
    pub fn start_with(extra: &[String]) -> ApiServer {
        Self::start_from(None, extra)
    }

    /// An API server whose etcd starts on `data` (a data directory `etcdutl snapshot restore`
    /// made, moved into place), with `extra` flags.
    pub fn start_from(data: Option<&Path>, extra: &[String]) -> ApiServer {
        let bin = peers();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        if let Some(data) = data {
            std::fs::rename(data, d.join("etcd")).expect("moving the restored data directory");
        }
        let (client_port, peer_port) = (free_port(), free_port());
        let log = |name: &str| std::fs::File::create(d.join(name)).expect("log file");
        let etcd = Command::new(bin.join("etcd"))
            .args([
                "--data-dir",
                &d.join("etcd").display().to_string(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client_port}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client_port}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer_port}"),
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ])
            .stdout(log("etcd.log"))
            .stderr(log("etcd.err"))
            .spawn()
            .expect("starting etcd");

        run(Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(d.join("sa.key"))
            .arg("2048")
            .stderr(Stdio::null()));
        run(Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(d.join("sa.key"))
            .arg("-out")
            .arg(d.join("sa.pub"))
            .stderr(Stdio::null()));
        let token = format!("cloudlet-test-{}", std::process::id());
        std::fs::write(
            d.join("tokens.csv"),
            format!("{token},admin,admin-uid,system:masters\n"),
        )
        .expect("token file");

        let start = |api_port: u16| {
            Command::new(bin.join("kube-apiserver"))
                .args([
                    &format!("--etcd-servers=http://127.0.0.1:{client_port}"),
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    &format!("--secure-port={api_port}"),
                    &format!("--cert-dir={}", d.join("certs").display()),
                    "--service-account-issuer=https://kubernetes.default.svc",
                    &format!("--service-account-key-file={}", d.join("sa.pub").display()),
                    &format!(
                        "--service-account-signing-key-file={}",
                        d.join("sa.key").display()
                    ),
                    &format!("--token-auth-file={}", d.join("tokens.csv").display()),
                    // Bootstrap tokens authenticate, as on a kubeadm control plane.
                    "--enable-bootstrap-token-auth",
                    "--service-cluster-ip-range=10.96.0.0/16",
                    "--disable-admission-plugins=ServiceAccount",
                    "--allow-privileged=true",
                    "--max-requests-inflight=1000",
                    "--max-mutating-requests-inflight=500",
                    "--v=0",
                ])
                // RBAC unless the test chooses its own authorizers (Node,RBAC as kubeadm sets).
                .args(
                    (!extra.iter().any(|a| a.starts_with("--authorization-mode")))
                        .then_some("--authorization-mode=RBAC"),
                )
                .args(extra)
                .stdout(log("apiserver.log"))
                .stderr(log("apiserver.err"))
                .spawn()
                .expect("starting kube-apiserver")
        };
        let mut api_port = free_port();
        let mut apiserver = start(api_port);
        let mut url = format!("https://127.0.0.1:{api_port}");
        let mut restarts = 0;
        let ca = d.join("certs/apiserver.crt");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            // Its port was taken between free_port() and its bind (another test's process):
            // it exits at once; start it again on another port.
            if restarts < 5 && apiserver.try_wait().ok().flatten().is_some() {
                restarts += 1;
                api_port = free_port();
                apiserver = start(api_port);
                url = format!("https://127.0.0.1:{api_port}");
                continue;
            }
            if ca.exists() {
                let ok = Command::new("curl")
                    .args(["-sf", "--max-time", "2", "--cacert"])
                    .arg(&ca)
                    .arg("-H")
                    .arg(format!("Authorization: Bearer {token}"))
                    .arg(format!("{url}/readyz"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    break;
                }
            }
            if Instant::now() > deadline {
                let err = std::fs::read_to_string(d.join("apiserver.err")).unwrap_or_default();
                let tail: String = err.lines().rev().take(30).collect::<Vec<_>>().join("\n");
                panic!(
                    "kube-apiserver did not become ready in 90 s; last log lines (newest first):\n{tail}"
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let kubeconfig = d.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {url}
    certificate-authority: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: test
  context:
    cluster: test
    user: admin
current-context: test
",
                ca = ca.display()
            ),
        )
        .expect("kubeconfig");
        ApiServer {
            dir,
            url,
            kubeconfig,
            token,
            etcd_url: format!("http://127.0.0.1:{client_port}"),
            etcd,
            apiserver,
            controllers: None,
        }
    }

    /// Starts kube-controller-manager with only `controllers` (such as
    /// `persistentvolume-binder-controller`), no leader election, no serving port.
    /// Stops kube-apiserver (etcd keeps running): the server goes away under a client.
    pub fn stop_apiserver(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
    }

    pub fn start_controllers(&mut self, controllers: &[&str]) {
        self.start_controllers_with(controllers, &[]);
    }

    /// [`ApiServer::start_controllers`] with `extra` flags (`--cluster-signing-cert-file=...`).
    pub fn start_controllers_with(&mut self, controllers: &[&str], extra: &[String]) {
        let d = self.dir.path();
        let log = |name: &str| std::fs::File::create(d.join(name)).expect("log file");
        self.controllers = Some(
            Command::new(peers().join("kube-controller-manager"))
                .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
                .arg(format!("--controllers={}", controllers.join(",")))
                .args([
                    "--leader-elect=false",
                    "--secure-port=0",
                    "--use-service-account-credentials=false",
                    "--v=1",
                ])
                .args(extra)
                .stdout(log("controllers.log"))
                .stderr(log("controllers.err"))
                .spawn()
                .expect("starting kube-controller-manager"),
        );
    }

    /// A kube client for the admin user (TLS verified against the server's own CA).
    /// A client that authenticates with `bearer` instead of the admin token.
    pub async fn client_with_token(&self, bearer: &str) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        cfg.auth_info.token = Some(bearer.to_string().into());
        kube::Client::try_from(cfg).expect("client")
    }

    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(cfg).expect("client")
    }
}
