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
