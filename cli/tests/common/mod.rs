//! What the CLI's end-to-end tests share: running the binary with an environment, reading
//! what it printed (asserting that no secret is in it), and a client from a kubeconfig.
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::process::{Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_cloudlet");

/// Runs the CLI with `env` (and `NO_COLOR`), no standard input.
pub fn cloudlet(env: &[(&str, &str)], args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("the CLI runs")
}

/// [`cloudlet`] from a task (on the hollow segment's threads, so it reaches the nodes).
pub async fn cloudlet_async(env: &[(&str, &str)], args: &[&str]) -> Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the CLI runs")
}

/// All the CLI printed; fails when any of `secrets` (or a private key) is in it.
pub fn text(o: &Output, secrets: &[&str]) -> String {
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for s in secrets {
        assert!(!t.contains(s), "a secret was printed:\n{t}");
    }
    assert!(
        !t.contains("PRIVATE KEY"),
        "a private key was printed:\n{t}"
    );
    t
}

/// A client of the cluster a kubeconfig names.
pub async fn client(kubeconfig: &str) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// A new vault key, from `cloudlet key new`.
pub fn vault_key() -> String {
    let o = cloudlet(&[], &["key", "new"]);
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// The seed's lab files copied into `work/lab` (with its postmaster password), for a test to
/// add a block to.
pub fn seed_lab(work: &std::path::Path) -> std::path::PathBuf {
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    let dir = work.join("lab");
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    for e in std::fs::read_dir(&seed).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    std::fs::write(dir.join("secrets/postmaster-password"), "pw").unwrap();
    dir
}

/// MetalLB's CRDs as a plain manifest of the lab (`DIR/manifests/metallb-crds.yaml`), as they
/// would come with its install manifests, for a cluster whose platform is its own.
pub fn metallb_crds(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(
        dir.join("manifests/metallb-crds.yaml"),
        cloudlet::cluster::metallb::crds()
            .iter()
            .map(|c| serde_json::to_string(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n---\n"),
    )
    .unwrap();
}

/// The seed with its cluster on the API server `kubeconfig` reaches (MetalLB's CRDs as a
/// manifest, the platform external); with `router`, an OPNsense router at that loopback
/// port and a resolver at 127.77.0.53 — for the doctor and watch tests.
pub fn seed_on_apiserver(kubeconfig: &std::path::Path, router: Option<u16>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    for e in std::fs::read_dir(&seed).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let mut text = std::fs::read_to_string(&p).unwrap();
            if p.file_name().unwrap() == "lab.yaml" {
                text = text.replace(
                    "  cluster: {kind: local}",
                    "  cluster: {kind: kubernetes, credentials: {file: kubeconfig}}",
                );
                if let Some(port) = router {
                    // The resolver the lab hands out: a silent one on loopback.
                    text = text.replace("dns: [10.0.10.1]", "dns: [127.77.0.53]");
                    text = text.replace("dns: [10.0.20.1]", "dns: [127.77.0.53]");
                    text = text.replace("  kind: pfsense\n", "  kind: opnsense\n");
                    text = text.replace(
                        "  router: {kind: local}",
                        &format!(
                            "  router: {{kind: opnsense, endpoint: \"https://127.0.0.1:{port}\", credentials: {{env: OPN_KEY}}}}"
                        ),
                    );
                }
            }
            if p.file_name().unwrap() == "cluster.yaml" {
                text = text.replace("{env: WIREGUARD_PRIVATE_KEY}", "{env: PATH}");
                text.push_str(
                    "  manifests: [manifests]\n  platform: {metallb: {external: true}, traefik: {external: true}}\n",
                );
            }
            std::fs::write(dir.path().join(p.file_name().unwrap()), text).unwrap();
        }
    }
    std::fs::copy(kubeconfig, dir.path().join("kubeconfig")).unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/postmaster-password"), "pw").unwrap();
    metallb_crds(dir.path());
    dir
}

/// A time `seconds` ago as the API server writes it (RFC 3339), for statuses tests write.
pub fn ago(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(
        k8s_openapi::jiff::Timestamp::now().as_second() - seconds,
    )
    .unwrap()
    .to_string()
}

/// Now with microseconds, as a Lease's times are written.
pub fn now_micro() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// Whether the pod `name` is being deleted.
pub async fn deleting(pods: &kube::Api<k8s_openapi::api::core::v1::Pod>, name: &str) -> bool {
    pods.get(name)
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some()
}
