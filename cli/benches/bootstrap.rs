//! From "machines installed" to "all nodes Ready" on the hollow cluster tier, as users run it:
//! `cloudlet apply --yes` on a lab whose cluster cloudlet makes (1 control plane + N workers),
//! timed from the start of the apply until every Node is Ready. The baseline is the same apply
//! with `--concurrency 1`: one node after another, the way a hand-run or serial playbook joins
//! them. Each round runs both, alternating which goes first, each on freshly booted nodes.
//!
//! `cargo bench -p cloudlet-cli --bench bootstrap` (`CLOUDLET_BENCH_NS=2,10`, `CLOUDLET_BENCH_ROUNDS=2`)
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods
)] // a bench binary prints its table

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cloudlet_testkit::hollow::HollowLab;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

const BIN: &str = env!("CARGO_BIN_EXE_cloudlet");

/// Seconds from the apply's start until `1 + n` nodes are Ready, with `concurrency` (0: the
/// default).
fn once(n: usize, concurrency: usize, key: &str) -> f64 {
    let mut nodes: Vec<(String, Ipv4Addr)> = vec![("cp".into(), Ipv4Addr::new(10, 0, 20, 10))];
    for i in 0..n {
        nodes.push((
            format!("w{i}"),
            Ipv4Addr::new(
                10,
                0,
                20,
                100 + u8::try_from(i).expect("at most 150 workers"),
            ),
        ));
    }
    let named: Vec<(&str, Ipv4Addr)> = nodes.iter().map(|(n, ip)| (n.as_str(), *ip)).collect();
    let hollow = HollowLab::start(&named, Ipv4Addr::new(10, 0, 20, 250), 24);
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab.yaml");
    let workers: Vec<&str> = named[1..].iter().map(|(n, _)| *n).collect();
    std::fs::write(&lab, hollow.lab_yaml(&["cp"], &workers, "")).unwrap();
    hollow.report_installs(&dir.path().join(".cloudlet"));
    let lab = lab.display().to_string();
    let key = key.to_string();
    let want = n + 1;
    let secs = hollow.block_on(async move {
        let start = Instant::now();
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(["apply", &lab, "--yes"])
            .env("CLOUDLET_VAULT_KEY", &key)
            .env("NO_COLOR", "1");
        if concurrency > 0 {
            cmd.args(["--concurrency", &concurrency.to_string()]);
        }
        let out = cmd.output().await.expect("the CLI runs");
        assert!(
            out.status.success(),
            "apply failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let kc = tokio::process::Command::new(BIN)
            .args(["kubeconfig", &lab])
            .env("CLOUDLET_VAULT_KEY", &key)
            .output()
            .await
            .expect("the CLI runs");
        let kc = String::from_utf8(kc.stdout).unwrap();
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::from_yaml(&kc).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        let nodes = Api::<Node>::all(kube::Client::try_from(config).unwrap());
        loop {
            let ready = nodes
                .list(&Default::default())
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .filter(|n| {
                            n.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                })
                        })
                        .count()
                })
                .unwrap_or(0);
            if ready == want {
                return start.elapsed().as_secs_f64();
            }
            assert!(
                start.elapsed() < Duration::from_secs(900),
                "{ready} of {want} nodes Ready after 15 minutes"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    drop(hollow);
    secs
}

fn main() {
    let ns: Vec<usize> = std::env::var("CLOUDLET_BENCH_NS")
        .unwrap_or_else(|_| "2,10,30".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds: usize = std::env::var("CLOUDLET_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let key = std::process::Command::new(BIN)
        .args(["key", "new"])
        .output()
        .expect("the CLI runs");
    let key = String::from_utf8(key.stdout).unwrap().trim().to_string();

    let mut results: Vec<(usize, Vec<f64>, Vec<f64>)> = Vec::new();
    for &n in &ns {
        let (mut ours, mut serial) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            if round % 2 == 0 {
                ours.push(once(n, 0, &key));
                serial.push(once(n, 1, &key));
            } else {
                serial.push(once(n, 1, &key));
                ours.push(once(n, 0, &key));
            }
            eprintln!(
                "N={n} round {}: cloudlet {:.1} s, serial {:.1} s",
                round + 1,
                ours[round],
                serial[round]
            );
        }
        results.push((n, ours, serial));
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!();
    println!(
        "installed → all nodes Ready, 1 control plane + N workers (hollow tier, {rounds} round(s), median)"
    );
    println!(
        "{:>4}  {:>14}  {:>22}  {:>8}  {:>12}",
        "N", "cloudlet apply", "baseline: one at a time", "ratio", "vs N=first"
    );
    let first = results.first().map(|(_, o, _)| median(o)).unwrap_or(1.0);
    for (n, ours, serial) in &results {
        let (o, s) = (median(ours), median(serial));
        println!(
            "{n:>4}  {:>12.1} s  {:>20.1} s  {:>7.2}x  {:>11.2}x",
            o,
            s,
            s / o,
            o / first
        );
    }
}
