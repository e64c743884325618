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

fn lab_text(apps: usize) -> String {
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
    let sizes = [100usize, 1_000, 10_000];
    println!(
        "| apps   | resources | load ms | validate ms | expand ms | plan (create) ms | re-plan (no-op) ms | validate+plan ms | µs/app | growth vs 100 |"
    );
    println!(
        "|-------:|----------:|--------:|------------:|----------:|-----------------:|-------------------:|-----------------:|-------:|--------------:|"
    );
    let mut base_per_app = None;
    for &n in &sizes {
        let text = lab_text(n);
        // best of 3 runs per phase, to keep noise of a shared machine out
        let mut best = [Duration::MAX; 5];
        let mut resources = 0;
        for _ in 0..3 {
            let (lab, t_load) = time(|| {
                Lab::from_texts(vec![("bench.yaml".into(), text.clone())], ".").expect("lab loads")
            });
            let (report, t_val) = time(|| lab.validate());
            assert!(!report.has_errors(), "{:?}", report.errors().next());
            let (desired, t_exp) = time(|| lab.expand());
            resources = desired.len();
            let (d1, d2, d3) = (desired.clone(), desired.clone(), desired);
            let (plan, t_plan) = time(|| {
                cloudlet::core::plan::compute(
                    "bench",
                    cloudlet::Domain::ALL.to_vec(),
                    d1,
                    Vec::new(),
                )
                .expect("plans")
            });
            assert_eq!(plan.summary.create, resources);
            let (noop, t_noop) = time(|| {
                cloudlet::core::plan::compute("bench", cloudlet::Domain::ALL.to_vec(), d2, d3)
                    .expect("plans")
            });
            assert!(!noop.summary.has_changes());
            for (b, t) in best.iter_mut().zip([t_load, t_val, t_exp, t_plan, t_noop]) {
                *b = (*b).min(t);
            }
        }
        let total = best[1] + best[2] + best[3];
        let per_app = total.as_secs_f64() * 1e6 / n as f64;
        let growth = match base_per_app {
            None => {
                base_per_app = Some(per_app);
                1.0
            }
            Some(b) => per_app / b,
        };
        println!(
            "| {n:>6} | {resources:>9} | {:>7.1} | {:>11.1} | {:>9.1} | {:>16.1} | {:>18.1} | {:>16.1} | {per_app:>6.1} | {growth:>12.2}x |",
            ms(best[0]),
            ms(best[1]),
            ms(best[2]),
            ms(best[3]),
            ms(best[4]),
            ms(total)
        );
    }
    println!(
        "target: validate+plan of 10,000 apps under 200 ms; growth is time per app relative to the 100-app lab (1.00x = linear)"
    );
}
