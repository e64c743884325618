//! Benchmark: `cloudlet doctor` as users run it (the CLI) on the seed against local peers —
//! its cluster on a real kube-apiserver with etcd (20 nodes, 200 pods, every LoadBalancer
//! and ingress address answering on loopback) — all checks at once (the default) against one
//! at a time (`--concurrency 1`), interleaved round by round (which goes first alternates).
//! Two labs: everything answering, and half of it down (a router that accepts connections
//! and never answers, a resolver that never answers), where the checks' time limit (2 s
//! here) is what a sequential doctor pays once per silent backend.
//! `cargo bench -p cloudlet-cli --bench doctor`.
#![allow(clippy::print_stdout, clippy::disallowed_methods, missing_docs)]

use std::time::Instant;

use cloudlet_testkit::apiserver::ApiServer;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use cloudlet_testkit::seed::seed_on_apiserver;

const BIN: &str = env!("CARGO_BIN_EXE_cloudlet");

/// The CLI as a user runs it; what it printed, failing the bench when it did not succeed.
fn cloudlet(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env("OPN_KEY", "key:secret")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const ROUNDS: usize = 5;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn doctor(lab: &str, concurrency: &str) -> (f64, usize) {
    let t = Instant::now();
    let out = cloudlet(&[
        "doctor",
        lab,
        "--output",
        "json",
        "--timeout",
        "2s",
        "--concurrency",
        concurrency,
    ]);
    let secs = t.elapsed().as_secs_f64();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor's JSON: {e}: {}", text(&out)));
    (secs, v["findings"].as_array().map_or(0, Vec::len))
}

async fn populate(server: &ApiServer) {
    let client = server.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pp = PostParams::default();
    for i in 0..20 {
        let name = format!("n{i}");
        nodes
            .create(
                &pp,
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
        nodes
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                    "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})),
            )
            .await
            .unwrap();
    }
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "blog");
    let _ = sa
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap(),
        )
        .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "blog");
    for i in 0..200 {
        let pod = json!({"metadata": {"name": format!("p{i}")}, "spec": {"nodeName": format!("n{}", i % 20),
            "containers": [{"name": "app", "image": "example/app:1"}]}});
        pods.create(&pp, &serde_json::from_value(pod).unwrap())
            .await
            .unwrap();
    }
    // Every address the lab publishes answers on loopback.
    let ing: Api<Ingress> = Api::namespaced(client.clone(), "blog");
    for i in ing.list(&Default::default()).await.unwrap().items {
        ing.patch_status(
            i.metadata.name.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "127.78.0.1"}]}}})),
        )
        .await
        .unwrap();
    }
    let svc: Api<Service> = Api::all(client.clone());
    for s in svc.list(&Default::default()).await.unwrap().items {
        if s.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
            continue;
        }
        let ns = s.metadata.namespace.clone().unwrap();
        Api::<Service>::namespaced(client.clone(), &ns)
            .patch_status(
                s.metadata.name.as_deref().unwrap(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "127.78.0.2", "ipMode": "VIP"}]}}})),
            )
            .await
            .unwrap();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = ApiServer::start();
    let up = seed_on_apiserver(&server.kubeconfig, None);
    // Half down: a router that accepts and never answers, a resolver that never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = seed_on_apiserver(
        &server.kubeconfig,
        Some(silent.local_addr().unwrap().port()),
    );
    let _resolver = tokio::net::UdpSocket::bind("127.77.0.53:53").await.unwrap();
    let out = cloudlet(&["apply", up.path().to_str().unwrap(), "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    populate(&server).await;
    let mut listeners = Vec::new();
    for port in [25, 443, 587, 993] {
        for ip in ["127.78.0.1", "127.78.0.2"] {
            if let Ok(l) = std::net::TcpListener::bind((ip, port)) {
                listeners.push(l);
            }
        }
    }
    println!("doctor of the seed (the CLI, --timeout 2s), {ROUNDS} rounds, interleaved\n");
    println!("lab                 findings  all at once (s)  one at a time (s)  ratio");
    for (name, dir) in [("everything up", &up), ("router down", &down)] {
        let lab = dir.path().to_str().unwrap();
        let (mut at_once, mut one) = (Vec::new(), Vec::new());
        let mut findings = 0;
        for round in 0..ROUNDS {
            if round % 2 == 0 {
                let (t, n) = doctor(lab, "32");
                at_once.push(t);
                findings = n;
                one.push(doctor(lab, "1").0);
            } else {
                one.push(doctor(lab, "1").0);
                let (t, n) = doctor(lab, "32");
                at_once.push(t);
                findings = n;
            }
        }
        let (a, o) = (median(&mut at_once), median(&mut one));
        println!(
            "{name:<18} {findings:>9}  {a:>15.2}  {o:>17.2}  {:>5.2}x",
            o / a
        );
    }
    drop((silent, listeners));
}
