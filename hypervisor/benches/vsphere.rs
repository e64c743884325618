//! Creating and powering on 50 VMs on vcsim (govmomi's vCenter simulator), each task taking
//! 100 ms as a (fast) real vCenter's would: cloudlet's apply (bounded concurrency: 8 VM
//! operations at once) against the same provider doing one VM at a time, in the same run,
//! each on a fresh simulator.
//!
//! Target: at least 4x faster than one at a time.
//!
//! `cargo bench -p cloudlet-hypervisor --bench vsphere` (builds vcsim with Go the first time).
#![allow(clippy::print_stdout, clippy::disallowed_methods, missing_docs)]

use cloudlet_testkit::hypervisor_peers as peers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudlet_core::engine::{ApplyOptions, Engine};
use cloudlet_core::load::load_texts;
use cloudlet_core::{Domain, Provider, Providers, StateStore};
use cloudlet_hypervisor::vsphere::{Vsphere, VsphereOptions};

const VMS: usize = 50;
const TASK_MS: &str = "100";

fn lab() -> Vec<cloudlet_core::Resource> {
    let mut t = String::from(
        "name: bench\nsite: {domain: b.lan}\nnetworks:\n  lan: {cidr: 10.84.0.0/22, gateway: 10.84.0.1, portgroup: bench-lan}\nmachines:\n",
    );
    for i in 0..VMS {
        t.push_str(&format!(
            "  b{i:02}: {{cpus: 1, memory: 512MiB, disks: [{{size: 1GiB}}], nics: [{{network: lan, mac: \"00:50:56:84:00:{i:02x}\"}}]}}\n"
        ));
    }
    let lab = load_texts(vec![("lab.yaml".into(), t)], ".".into())
        .expect("loads")
        .lab;
    cloudlet_hypervisor::expand(&lab)
}

/// One apply of the 50 VMs: (seconds, requests, tasks waited for).
async fn run(concurrency: usize) -> (f64, u64, u64) {
    let sim = peers::Vcsim::start(&["-task-delay", TASK_MS]);
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(Vsphere::new(
        "bench",
        VsphereOptions {
            endpoint: sim.endpoint.clone(),
            user: "bench".into(),
            password: "bench".into(),
            tls: cloudlet_transport::tls::client_config(Some(&sim.cert)).unwrap(),
            datacenter: None,
            datastore: None,
            pool: None,
            switch: None,
            concurrency,
            keepalive: Duration::from_secs(600),
        },
    ));
    let e = Engine::new(
        "bench",
        Providers::new().with(Domain::Hypervisor, p.clone() as Arc<dyn Provider>),
        StateStore::open(dir.path().join("state")).unwrap(),
    );
    let plan = e.plan(lab()).await.unwrap();
    assert_eq!(plan.summary.create, VMS + 1);
    let t = Instant::now();
    let r = e
        .apply(
            &plan,
            ApplyOptions {
                concurrency,
                ..ApplyOptions::default()
            },
        )
        .await
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(r.is_success(), "{r:?}");
    assert!(!e.plan(lab()).await.unwrap().summary.has_changes());
    let vim = p.session().await.unwrap();
    let tasks: u64 = vim
        .calls()
        .iter()
        .filter(|(m, _)| m.ends_with("_Task"))
        .map(|(_, n)| n)
        .sum();
    (secs, vim.requests(), tasks)
}

#[tokio::main]
async fn main() {
    let (c_s, c_req, c_tasks) = run(8).await;
    let (o_s, o_req, o_tasks) = run(1).await;
    println!("create + power on {VMS} VMs on vcsim (every task {TASK_MS} ms)");
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "", "seconds", "requests", "tasks"
    );
    println!(
        "{:<34} {:>10.2} {:>10} {:>8}",
        "cloudlet (8 at once)", c_s, c_req, c_tasks
    );
    println!(
        "{:<34} {:>10.2} {:>10} {:>8}",
        "one at a time", o_s, o_req, o_tasks
    );
    let ratio = o_s / c_s;
    println!("speed-up: {ratio:.1}x (target >= 4x)");
    assert!(ratio >= 4.0, "below the 4x target");
}
