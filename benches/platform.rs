//! Benchmark: the whole platform (Calico, MetalLB, Traefik, csi-driver-nfs, cert-manager, as
//! STAND-IN releases in upstream's shape) plus the seed's apps applied to an empty API server
//! through the facade (`Lab::plan` + `Lab::apply`, what the CLI runs), against `kubectl apply
//! --server-side` of the same objects the way a person does it by hand: component by component,
//! waiting for its CRDs to be Established and its workloads to roll out (`kubectl wait`,
//! `kubectl rollout status`), then the lab's objects.
//!
//! Each measurement gets a fresh, settled kube-apiserver + etcd of the same build (an empty
//! server for both), and FAKE ROLLOUTS write the status a rollout would reach (no kubelets run);
//! the two sides alternate round by round. Release files are in the cache before timing (both
//! sides have them locally). `cargo bench --bench platform` (kubectl from `scripts/kube-peers.sh`
//! or `KUBECTL=path`).
#![allow(clippy::print_stdout, clippy::disallowed_methods, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cloudlet::{ApplyOptions, Lab, Options};
use cloudlet_testkit::apiserver::{self as support, ApiServer};
use cloudlet_testkit::platform::{
    self as standin, FileServer, Files, platform_block, write_seed_lab,
};
use serde_json::{Value, json};

const ROUNDS: usize = 3;

fn load(dir: &Path, state: &Path, cache: &Path) -> Lab {
    Lab::load(dir).unwrap().with_options(Options {
        state_dir: Some(state.to_path_buf()),
        cache_dir: Some(cache.to_path_buf()),
        ..Default::default()
    })
}

async fn fresh() -> ApiServer {
    let server = ApiServer::start();
    // A fresh server spends its first seconds bootstrapping (RBAC, priority levels, OpenAPI).
    tokio::time::sleep(Duration::from_secs(10)).await;
    server
}

/// The objects a lab applies, as plain manifests: cloudlet's secret references resolved the
/// way the provider resolves them, grouped by platform component (`""` for the lab's own).
fn manifests(lab: &Lab, base: &Path) -> Vec<(String, Vec<Value>)> {
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    let mut own = Vec::new();
    let all: Vec<_> = lab
        .expand()
        .into_iter()
        .filter(|r| r.id.domain == cloudlet::core::Domain::Cluster)
        .collect();
    // Custom resources (the issuer) go with the lab's objects, after their CRDs were waited for.
    let crd_groups: Vec<String> = all
        .iter()
        .filter(|r| &*r.id.kind == "customresourcedefinition")
        .filter_map(|r| r.body.value()["spec"]["group"].as_str().map(str::to_string))
        .collect();
    for r in all {
        let custom = r.body.value()["apiVersion"]
            .as_str()
            .and_then(|a| a.split_once('/'))
            .is_some_and(|(g, _)| crd_groups.iter().any(|c| c == g));
        let mut v = r.body.value();
        if let Some(refs) = v
            .as_object_mut()
            .and_then(|o| o.remove("cloudlet.dev/secretRefs"))
        {
            let mut data = serde_json::Map::new();
            for (k, how) in refs.as_object().into_iter().flatten() {
                let raw = match (how.get("env"), how.get("file")) {
                    (Some(e), _) => std::env::var(e.as_str().unwrap_or_default())
                        .unwrap_or_default()
                        .into_bytes(),
                    (_, Some(f)) => {
                        std::fs::read(base.join(f.as_str().unwrap_or_default())).unwrap_or_default()
                    }
                    _ => Vec::new(),
                };
                data.insert(
                    k.clone(),
                    json!(base64::engine::general_purpose::STANDARD.encode(raw)),
                );
            }
            v["data"] = Value::Object(data);
        }
        match v["metadata"]["labels"][cloudlet::cluster::platform::COMPONENT_LABEL]
            .as_str()
            .filter(|_| !custom)
        {
            Some(key) => match groups.iter_mut().find(|(k, _)| k == key) {
                Some((_, g)) => g.push(v),
                None => groups.push((key.to_string(), vec![v])),
            },
            None => own.push(v),
        }
    }
    let order = |k: &str| {
        cloudlet::core::model::PLATFORM_COMPONENTS
            .iter()
            .position(|c| *c == k)
            .unwrap_or(usize::MAX)
    };
    groups.sort_by_key(|(k, _)| order(k));
    let wave = |v: &Value| match v["kind"].as_str().unwrap_or_default() {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => 3,
        _ => 2,
    };
    for (_, g) in &mut groups {
        g.sort_by_key(wave);
    }
    own.sort_by_key(|v| v["kind"] != "Namespace");
    groups.push((String::new(), own));
    groups
}

fn kubectl(bin: &Path, kubeconfig: &Path, args: &[&str]) {
    let out = Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The by-hand way: per component apply, wait for its CRDs, wait for its workloads.
fn by_hand(bin: &Path, server: &ApiServer, groups: &[(String, Vec<Value>)], dir: &Path) {
    let kc = &server.kubeconfig;
    for (i, (key, objects)) in groups.iter().enumerate() {
        let file = dir.join(format!("{i}-{key}.json"));
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        std::fs::write(&file, serde_json::to_vec(&list).unwrap()).unwrap();
        let f = file.display().to_string();
        kubectl(
            bin,
            kc,
            &[
                "apply",
                "--server-side",
                "--field-manager=kubectl-bench",
                "-f",
                &f,
            ],
        );
        for o in objects {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let ns = o["metadata"]["namespace"].as_str().unwrap_or("default");
            match o["kind"].as_str().unwrap_or_default() {
                "CustomResourceDefinition" => kubectl(
                    bin,
                    kc,
                    &[
                        "wait",
                        "--for=condition=Established",
                        "--timeout=60s",
                        &format!("crd/{name}"),
                    ],
                ),
                kind @ ("Deployment" | "DaemonSet") if !key.is_empty() => kubectl(
                    bin,
                    kc,
                    &[
                        "-n",
                        ns,
                        "rollout",
                        "status",
                        "--timeout=60s",
                        &format!("{}/{name}", kind.to_ascii_lowercase()),
                    ],
                ),
                _ => {}
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let bin = std::env::var("KUBECTL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| support::peers().join("kubectl"));
    if Command::new(&bin)
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        println!(
            "kubectl not found at {} (set KUBECTL): the baseline cannot run",
            bin.display()
        );
        std::process::exit(1);
    }
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("webhook")).unwrap();
    let (_webhook, hook) = standin::allowing_webhook(&work.path().join("webhook")).await;
    let files = Files::new(&hook);
    let mirror = FileServer::start().await;
    let mirror_url = format!("{}/mirror", mirror.url);
    let cache = work.path().join("cache");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut objects = 0;
    for round in 0..ROUNDS {
        for side in [round % 2, 1 - round % 2] {
            let server = fresh().await;
            let client = server.client().await;
            let _rollouts =
                standin::fake_rollouts(client.clone(), "cloudlet.dev/component", Vec::new());
            let dir = work.path().join(format!("lab-{round}-{side}"));
            std::fs::create_dir_all(&dir).unwrap();
            files.serve(&mirror, &dir);
            write_seed_lab(
                &dir,
                &server,
                &platform_block(&mirror_url, &files, "v9.1.0", ""),
            );
            let state = dir.join(".state");
            // The release files are fetched (and cached) before timing, for both sides.
            let lab = load(&dir, &state, &cache);
            lab.fetch_platform().await.unwrap();
            if side == 0 {
                let t = Instant::now();
                let lab = load(&dir, &state, &cache);
                let plan = lab.plan().await.unwrap();
                let applied = lab.apply(&plan, ApplyOptions::default()).await.unwrap();
                ours.push(t.elapsed());
                assert!(
                    applied.report.failed.is_empty(),
                    "{:?}",
                    applied.report.failed
                );
                objects = plan.summary.create;
            } else {
                let groups = manifests(&lab, &dir);
                let t = Instant::now();
                by_hand(&bin, &server, &groups, &dir);
                theirs.push(t.elapsed());
            }
        }
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let s = |d: Duration| d.as_secs_f64();
    println!(
        "platform benchmark: the seed with all five platform components ({objects} objects) onto an empty real kube-apiserver, {ROUNDS} interleaved rounds, median"
    );
    println!("{:<34} {:>10}", "", "seconds");
    let (a, b) = (median(ours.clone()), median(theirs.clone()));
    println!("{:<34} {:>10.2}", "cloudlet apply (facade)", s(a));
    println!("{:<34} {:>10.2}", "kubectl by hand (apply + waits)", s(b));
    println!("{:<34} {:>10.2}", "ratio kubectl / cloudlet", s(b) / s(a));
    println!(
        "rounds: cloudlet {:?}, kubectl {:?}",
        ours.iter()
            .map(|d| format!("{:.2}", s(*d)))
            .collect::<Vec<_>>(),
        theirs
            .iter()
            .map(|d| format!("{:.2}", s(*d)))
            .collect::<Vec<_>>()
    );
}
