//! cloudlet vs `kubectl apply --server-side` on the same real API server, in the same run.
//!
//! 1. Apply ~1,000 objects from empty (125 apps × Namespace, Deployment, Service, Ingress,
//!    NetworkPolicy, ... as the lab expands them): cloudlet's engine (bounded parallel SSA in
//!    dependency waves) vs kubectl (the same manifests, namespaces first, one file).
//! 2. Re-plan the unchanged objects: cloudlet's plan vs `kubectl diff --server-side`. The
//!    cluster's resourceVersion before and after cloudlet's plan shows it wrote nothing.
//!
//! `cargo bench -p cloudlet-cluster --bench apply` (kubectl built with the API server by
//! `scripts/kube-peers.sh` from the same Kubernetes release, or `KUBECTL=path`).
#![allow(clippy::print_stdout, clippy::disallowed_methods, missing_docs)]

use cloudlet_testkit::apiserver as support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudlet_cluster::{KubeOptions, KubeProvider};
use cloudlet_core::engine::{ApplyOptions, Engine};
use cloudlet_core::{Domain, Providers, StateStore};

fn lab_text(prefix: &str, apps: usize) -> String {
    let mut s = format!(
        "name: {prefix}\nsite: {{domain: bench.lan, timezone: UTC}}\ncluster:\n  control_plane: [cp]\n  workers: [w1]\n  ingress: {{class: traefik, ip: 10.0.20.200}}\n  metallb:\n    pools:\n      default: {{addresses: [10.0.20.200-10.0.20.220]}}\n  apps:\n"
    );
    for i in 0..apps {
        s.push_str(&format!(
            "    {prefix}{i}:\n      image: docker.io/library/nginx:1.27\n      replicas: 2\n      ports: [{{name: http, port: 80}}]\n      ingress: [{{host: {prefix}{i}.example.com}}]\n      env: {{MODE: bench, INDEX: \"{i}\"}}\n      resources: {{cpu: 100m, memory: 64Mi}}\n"
        ));
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let kubectl = std::env::var("KUBECTL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| support::peers().join("kubectl"));
    if Command::new(&kubectl)
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        println!(
            "kubectl not found at {} (set KUBECTL): the baseline cannot run",
            kubectl.display()
        );
        std::process::exit(1);
    }
    let server = support::ApiServer::start();
    let client = server.client().await;
    // A fresh API server spends its first seconds bootstrapping (RBAC, priority levels,
    // OpenAPI): let it settle so neither side pays for that.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let apps = 200;

    // cloudlet
    let lab = cloudlet_core::load::load_texts(
        vec![("bench.yaml".into(), lab_text("c", apps))],
        ".".into(),
    )
    .expect("bench lab")
    .lab;
    let desired = cloudlet_cluster::expand(&lab);
    let objects = desired
        .iter()
        .filter(|r| !r.id.kind.contains("ipaddresspool") && !r.id.kind.contains("l2advert"))
        .count();
    let desired: Vec<_> = desired
        .into_iter()
        .filter(|r| !r.id.kind.contains("ipaddresspool") && !r.id.kind.contains("l2advert"))
        .collect();
    let state = tempfile::tempdir().unwrap();
    let provider = Arc::new(KubeProvider::new(
        client.clone(),
        &lab.name,
        KubeOptions::default(),
    ));
    let engine = Engine::new(
        lab.name.clone(),
        Providers::new().with(Domain::Cluster, provider.clone()),
        StateStore::open(state.path()).unwrap(),
    );
    let t = Instant::now();
    let plan = engine.plan(desired.clone()).await.unwrap();
    let report = engine
        .apply(
            &plan,
            ApplyOptions {
                concurrency: std::env::var("CONCURRENCY")
                    .ok()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(32),
                ..ApplyOptions::default()
            },
        )
        .await
        .unwrap();
    let cloudlet_apply = t.elapsed();
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    let applied = provider.stats();
    let mut replans = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let p = engine.plan(desired.clone()).await.unwrap();
        replans.push(t.elapsed());
        assert!(!p.summary.has_changes(), "re-plan not empty");
    }
    let replanned = provider.stats();
    let cloudlet_replan = median(replans);

    // kubectl: the same shapes under other names, namespaces first, in one file.
    let klab = cloudlet_core::load::load_texts(
        vec![("bench.yaml".into(), lab_text("k", apps))],
        ".".into(),
    )
    .unwrap()
    .lab;
    let mut kdesired: Vec<_> = cloudlet_cluster::expand(&klab)
        .into_iter()
        .filter(|r| !r.id.kind.contains("ipaddresspool") && !r.id.kind.contains("l2advert"))
        .collect();
    // Only objects of its own (namespaces both sets share stay cloudlet's).
    kdesired.retain(|r| !desired.iter().any(|d| d.id == r.id));
    kdesired.sort_by_key(|r| (&*r.id.kind != "namespace", r.id.clone()));
    let file = server.dir.path().join("k.json");
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": kdesired.iter().map(|r| r.body.value()).collect::<Vec<_>>(),
    });
    std::fs::write(&file, serde_json::to_vec(&list).unwrap()).unwrap();
    let kc = server.kubeconfig.display().to_string();
    let t = Instant::now();
    let out = Command::new(&kubectl)
        .args([
            "--kubeconfig",
            &kc,
            "apply",
            "--server-side",
            "--field-manager=kubectl-bench",
            "-f",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let kubectl_apply = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut kdiffs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = Command::new(&kubectl)
            .args([
                "--kubeconfig",
                &kc,
                "diff",
                "--server-side",
                "--field-manager=kubectl-bench",
                "-f",
            ])
            .arg(&file)
            .output()
            .unwrap();
        kdiffs.push(t.elapsed());
        // kubectl diff: 0 no differences, 1 differences.
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let kubectl_replan = median(kdiffs);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "cluster apply benchmark: real kube-apiserver on loopback; cloudlet {objects} objects, kubectl {} objects",
        kdesired.len()
    );
    println!(
        "{:<34} {:>12} {:>12} {:>8}",
        "", "cloudlet", "kubectl", "ratio"
    );
    println!(
        "{:<34} {:>10.0}ms {:>10.0}ms {:>7.1}x",
        "apply from empty",
        ms(cloudlet_apply),
        ms(kubectl_apply),
        ms(kubectl_apply) / ms(cloudlet_apply)
    );
    println!(
        "{:<34} {:>10.0}ms {:>10.0}ms {:>7.1}x",
        "re-plan unchanged (median)",
        ms(cloudlet_replan),
        ms(kubectl_replan),
        ms(kubectl_replan) / ms(cloudlet_replan)
    );
    println!(
        "cloudlet requests, apply from empty: {} reads, {} writes, {} dry-runs",
        applied.reads, applied.writes, applied.dry_runs
    );
    println!(
        "cloudlet requests, 5 re-plans: {} reads, {} writes, {} dry-runs",
        replanned.reads - applied.reads,
        replanned.writes - applied.writes,
        replanned.dry_runs - applied.dry_runs
    );
}
