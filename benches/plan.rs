//! Benchmark: load, validate and plan generated labs of 100 to 10,000 apps.
//!
//! Target (issue "Foundation"): validate + plan of 10,000 apps under 200 ms on the project's
//! 2-core machine. Prints a table with each phase, the total, and how time grows per app
//! against the 100-app lab (the baseline of the same run). `cargo bench --bench plan`.
#![allow(clippy::print_stdout, missing_docs)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cloudlet::Lab;

// The same allocator as the `cloudlet` binary: glibc's malloc spends more time in
// `malloc_consolidate` than the planner spends planning on labs this size.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A generated lab. `full` apps use every feature (NFS volume, HTTP route with TLS, a UDP port
/// on the shared VIP): nine resources each. Plain apps are an image, a port and a route: five.
fn lab_text(apps: usize, full: bool) -> String {
    let mut s = String::new();
    s.push_str(
        "name: bench\nsite: {domain: bench.lan}\nhosts: {h1: {kind: esxi, cpus: 64, memory: 512GiB, storage: 20TiB}}\n\
networks:\n  lan: {cidr: 10.0.0.0/16, gateway: 10.0.0.1, dhcp: {ranges: [10.0.1.0-10.0.1.255]}}\n\
router: {kind: pfsense, machine: gw, forwards: [{port: 443, to: ingress}]}\n\
machines:\n  gw: {cpus: 2, memory: 2GiB, nics: [{network: lan, ip: 10.0.0.1}]}\n  nas: {cpus: 2, memory: 8GiB, nics: [{network: lan, ip: 10.0.0.5}]}\n",
    );
    for n in 0..8 {
        let _ = writeln!(
            s,
            "  node{n}: {{cpus: 8, memory: 32GiB, disks: [{{size: 100GiB}}], nics: [{{network: lan, ip: 10.0.0.{}}}]}}",
            10 + n
        );
    }
    s.push_str("storage:\n  kind: truenas\n  machine: nas\n  exports:\n    data: {path: /mnt/tank/data, allow: [lan]}\n");
    s.push_str("cluster:\n  control_plane: [node0]\n  workers: [node1, node2, node3, node4, node5, node6, node7]\n");
    s.push_str("  metallb: {pools: {default: {addresses: [10.0.200.0-10.0.255.254]}}}\n");
    s.push_str("  ingress: {ip: 10.0.200.1, tls: {hosts: ['*.bench.example'], secret: wildcard}}\n  apps:\n");
    for i in 0..apps {
        if !full {
            let _ = writeln!(
                s,
                "    app{i}:\n      image: registry.example/app{i}:1.0\n      ports: [{{name: http, port: 8080}}]\n      ingress: [{{host: app{i}.bench.example}}]"
            );
            continue;
        }
        let _ = writeln!(
            s,
            "    app{i}:\n      image: registry.example/app{i}:1.0\n      replicas: 2\n      ports:\n        - {{name: http, port: 8080}}\n        - {{name: extra, port: {}, protocol: udp, expose: shared}}\n      ingress: [{{host: app{i}.bench.example}}]\n      env: {{MODE: prod}}\n      volumes: [{{name: data, export: data, mount: /data, size: 1GiB}}]",
            10_000 + i
        );
    }
    s
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let sizes = [
        (100usize, true),
        (1_000, true),
        (10_000, true),
        (10_000, false),
    ];
    println!(
        "| apps         | resources | load ms | validate ms | expand ms | diff+order ms | validate+plan ms | re-plan (no-op) ms | µs/app | growth vs 100 |"
    );
    println!(
        "|-------------:|----------:|--------:|------------:|----------:|--------------:|-----------------:|-------------------:|-------:|--------------:|"
    );
    let mut base_per_app = None;
    let domains = cloudlet::Domain::ALL.to_vec();
    for &(n, full) in &sizes {
        let text = lab_text(n, full);
        // best of 5 runs per measurement, to keep the noise of a shared machine out
        let mut best = [Duration::MAX; 6];
        let mut resources = 0;
        for _ in 0..5 {
            let (lab, t_load) = time(|| {
                Lab::from_texts(vec![("bench.yaml".into(), text.clone())], ".").expect("lab loads")
            });
            // The phases one by one ...
            let (report, t_val) = time(|| lab.validate());
            assert!(!report.has_errors(), "{:?}", report.errors().next());
            let (desired, t_exp) = time(|| lab.expand());
            resources = desired.len();
            let (plan, t_diff) = time(|| {
                cloudlet::core::plan::compute("bench", domains.clone(), desired, Vec::new())
                    .expect("plans")
            });
            assert_eq!(plan.summary.create, resources);
            drop(plan);
            // ... and what `cloudlet plan` does, end to end: validate + expand + plan against
            // an empty world, then against a world that already matches (a no-op re-plan).
            let (plan, t_total) = time(|| {
                let desired = lab.desired().expect("valid");
                cloudlet::core::plan::compute("bench", domains.clone(), desired, Vec::new())
                    .expect("plans")
            });
            assert_eq!(plan.summary.create, resources);
            let world: Vec<cloudlet::Resource> =
                plan.steps.into_iter().map(|s| s.resource).collect();
            let (noop, t_noop) = time(|| {
                let desired = lab.desired().expect("valid");
                cloudlet::core::plan::compute("bench", domains.clone(), desired, world)
                    .expect("plans")
            });
            assert!(!noop.summary.has_changes());
            for (b, t) in best
                .iter_mut()
                .zip([t_load, t_val, t_exp, t_diff, t_total, t_noop])
            {
                *b = (*b).min(t);
            }
        }
        let per_app = best[4].as_secs_f64() * 1e6 / n as f64;
        let growth = match (base_per_app, full) {
            (None, _) => {
                base_per_app = Some(per_app);
                1.0
            }
            (Some(b), true) => per_app / b,
            (Some(_), false) => f64::NAN,
        };
        let growth = if growth.is_nan() {
            "—".to_string()
        } else {
            format!("{growth:.2}x")
        };
        let label = format!("{n} {}", if full { "full" } else { "plain" });
        println!(
            "| {label:>12} | {resources:>9} | {:>7.1} | {:>11.1} | {:>9.1} | {:>13.1} | {:>16.1} | {:>18.1} | {per_app:>6.1} | {growth:>13} |",
            ms(best[0]),
            ms(best[1]),
            ms(best[2]),
            ms(best[3]),
            ms(best[4]),
            ms(best[5])
        );
    }
    println!(
        "validate+plan = validate, expand and plan (sort, digest, diff, order) as `cloudlet plan` runs them, against an empty world;"
    );
    println!(
        "re-plan = the same against a world that already matches. Target: validate+plan of 10,000 apps under 200 ms."
    );
    println!(
        "full apps: NFS volume + HTTP route with TLS + UDP port on the shared VIP (9 resources); plain: image, port, route (5)."
    );
    println!("growth = time per full app relative to the 100-app lab (1.00x = linear).");
}
