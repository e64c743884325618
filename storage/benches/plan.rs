//! Planning 200 app volumes: requests per run and time, against the FAKE TrueNAS (its
//! JSON-RPC API, tests/support/truenas_fake.rs) and against a real nfs-ganesha, with the
//! baseline of reading each object by itself (what a per-resource tool does) in the same run.
//!
//! Targets: a plan costs one query per collection whatever the number of volumes, and a
//! no-op re-plan writes nothing.
//!
//! `cargo bench -p cloudlet-storage --bench plan` (needs Debian's nfs-ganesha; run as root).
#![allow(clippy::print_stdout, clippy::disallowed_methods, missing_docs)]

use cloudlet_testkit::truenas_fake;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudlet_core::engine::{ApplyOptions, Engine};
use cloudlet_core::{Domain, Provider, Resource};
use cloudlet_storage::linux_nas::{Flavor, LinuxNas, LinuxNasOptions};
use cloudlet_storage::truenas::{Client, Connect, TrueNas};
use serde_json::json;

const VOLUMES: usize = 200;
const KEY: &str = "1-bench";

fn lab(kind: &str, base: &str) -> Vec<Resource> {
    let mut s = format!(
        "name: bench\nsite: {{domain: bench.lan}}\nnetworks:\n  lan: {{cidr: 10.79.0.0/24, gateway: 10.79.0.1}}\nmachines:\n  node1: {{cpus: 1, memory: 1GiB, nics: [{{network: lan, ip: 10.79.0.10}}]}}\nstorage:\n  kind: {kind}\n  address: 10.79.0.2\n  exports:\n    apps: {{path: {base}/apps, allow: [lan]}}\ncluster:\n  control_plane: [node1]\n  apps:\n"
    );
    for i in 0..VOLUMES {
        s.push_str(&format!(
            "    app{i}:\n      image: docker.io/library/nginx:1.27\n      volumes: [{{name: data, export: apps, mount: /data, size: 1GiB, owner: {{uid: 1000, gid: 1000}}, mode: \"0750\"}}]\n"
        ));
    }
    let loaded = cloudlet_core::load::load_texts(vec![("bench.yaml".into(), s)], ".".into())
        .expect("the bench lab loads");
    cloudlet_storage::expand(&loaded.lab)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn engine(p: Arc<dyn Provider>, state: &Path) -> Engine {
    cloudlet_testkit::engine::engine("bench", Domain::Storage, p, state)
}

async fn truenas(dir: &Path) {
    let fake = truenas_fake::Fake::start(dir, "25.10.1", KEY).await;
    fake.job_time.store(0, std::sync::atomic::Ordering::SeqCst);
    let connect = Connect {
        endpoint: fake.endpoint.clone(),
        api_key: KEY.into(),
        ca: Some(fake.ca.clone()),
    };
    let desired = lab("truenas", "/mnt/main");
    let p = Arc::new(TrueNas::new("bench", connect.clone()));
    let e = engine(p.clone(), &dir.join("state"));
    let plan = e.plan(desired.clone()).await.unwrap();
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");

    let mut times = Vec::new();
    let (calls0, writes0) = (p.calls(), p.writes());
    for _ in 0..7 {
        let t = Instant::now();
        let plan = e.plan(desired.clone()).await.unwrap();
        times.push(t.elapsed());
        assert!(!plan.summary.has_changes());
    }
    let calls = (p.calls() - calls0) / 7;
    let writes = p.writes() - writes0;

    // Baseline: one read per object, on one connection (no login or version per read).
    let client = Client::connect(&connect, Arc::default()).await.unwrap();
    let mut base = Vec::new();
    let mut base_calls = 0;
    for _ in 0..7 {
        let t = Instant::now();
        base_calls = 0;
        for r in &desired {
            let v = r.body.value();
            let path = v["path"].as_str().unwrap_or_default();
            let (method, filter) = match &*r.id.kind {
                "dataset" => (
                    "pool.dataset.query",
                    json!([["id", "=", path.trim_start_matches("/mnt/")]]),
                ),
                "nfs-export" => ("sharing.nfs.query", json!([["path", "=", path]])),
                _ => (
                    "pool.snapshottask.query",
                    json!([["dataset", "=", path.trim_start_matches("/mnt/")]]),
                ),
            };
            client.call(method, json!([filter])).await.unwrap();
            base_calls += 1;
        }
        base.push(t.elapsed());
    }
    let (m, b) = (median(times), median(base));
    println!(
        "| TrueNAS (fake), {} resources | {:>6} | {:>10} | {:>6} | per-object reads: {} requests, {} | {:.1}x |",
        desired.len(),
        calls,
        ms(m),
        writes,
        base_calls,
        ms(b),
        b.as_secs_f64() / m.as_secs_f64()
    );
}

async fn ganesha(dir: &Path) {
    assert!(
        Command::new("sh")
            .args(["-c", "command -v ganesha.nfsd"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "the bench needs Debian's nfs-ganesha and nfs-ganesha-vfs"
    );
    let root = dir.join("data");
    std::fs::create_dir_all(&root).unwrap();
    let conf = dir.join("cloudlet.conf");
    std::fs::write(&conf, "").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let main = dir.join("ganesha.conf");
    std::fs::write(
        &main,
        format!(
            "NFS_CORE_PARAM {{ Protocols = 4; NFS_Port = {port}; Bind_Addr = 127.0.0.1; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; }}\nNFSV4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = \"{}\"; }}\nNFS_KRB5 {{ Active_krb5 = false; }}\n%include \"{}\"\n",
            dir.join("recovery").display(),
            conf.display()
        ),
    )
    .unwrap();
    let pid = dir.join("ganesha.pid");
    let mut child = Command::new("ganesha.nfsd")
        .arg("-F")
        .arg("-f")
        .arg(&main)
        .arg("-p")
        .arg(&pid)
        .arg("-L")
        .arg(dir.join("ganesha.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !pid.exists() && t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let desired = lab("ganesha", &root.display().to_string());
    let p = Arc::new(LinuxNas::new(LinuxNasOptions {
        flavor: Flavor::Ganesha,
        config: conf.clone(),
        pid_file: pid,
        exec: Vec::new(),
    }));
    let e = engine(p.clone(), &dir.join("state"));
    let t = Instant::now();
    let plan = e.plan(desired.clone()).await.unwrap();
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    let first = t.elapsed();
    assert!(r.is_success(), "{r:?}");
    let before = std::fs::metadata(&conf).unwrap().modified().unwrap();
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let plan = e.plan(desired.clone()).await.unwrap();
        times.push(t.elapsed());
        assert!(!plan.summary.has_changes());
    }
    let unchanged = std::fs::metadata(&conf).unwrap().modified().unwrap() == before;
    println!(
        "| nfs-ganesha, {} resources | 1 file read + {} stats | {:>10} | {} | first apply (dirs + one reload): {} |",
        desired.len(),
        desired.iter().filter(|r| &*r.id.kind == "dataset").count(),
        ms(median(times)),
        if unchanged { 0 } else { 1 },
        ms(first)
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for d in ["truenas", "ganesha"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    println!("Plan of {VOLUMES} app volumes (medians of 7 no-op re-plans)");
    println!("| backend | requests per plan | time | writes | baseline | speed-up |");
    println!("|---|---|---|---|---|---|");
    rt.block_on(async {
        truenas(&dir.path().join("truenas")).await;
        ganesha(&dir.path().join("ganesha")).await;
    });
}
