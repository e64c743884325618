//! The seed's storage, end to end through the `cloudlet` binary: the storage target is a FAKE
//! TrueNAS (storage/tests/support/truenas_fake.rs — TrueNAS cannot run here), reached over
//! TLS with the lab's CA file and an API key from the environment; the cluster target is a
//! real kube-apiserver with kube-controller-manager running only the PersistentVolume binder.
//! One apply makes the datasets, exports and snapshot tasks on the NAS and the PV/PVC pairs in
//! the cluster, and each claim binds to exactly its volume.
#![allow(clippy::disallowed_methods)]

use cloudlet_testkit::apiserver as support;
use cloudlet_testkit::truenas_fake;

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::Api;

const KEY: &str = "1-cli-test-key";

mod common;

fn cloudlet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudlet"))
        .args(args)
        .env("CLOUDLET_TEST_TRUENAS_KEY", KEY)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lab_dir(server: &support::ApiServer, fake: &truenas_fake::Fake) -> tempfile::TempDir {
    let dir = cloudlet_testkit::seed::seed_dir(|name, mut text| {
        if name == "lab.yaml" {
            text = text
                .replace(
                    "  cluster: {kind: local}",
                    "  cluster: {kind: kubernetes, credentials: {file: kubeconfig}}",
                )
                .replace(
                    "  storage: {kind: local}",
                    &format!(
                        "  storage: {{kind: truenas, endpoint: \"{}\", credentials: {{env: CLOUDLET_TEST_TRUENAS_KEY}}, ca: nas-ca.crt}}",
                        fake.endpoint
                    ),
                );
        }
        if name == "cluster.yaml" {
            text = text.replace("{env: WIREGUARD_PRIVATE_KEY}", "{env: PATH}");
            // MetalLB's CRDs come with the lab, as they would from its install manifests.
            text.push_str("  manifests: [manifests]\n");
            // MetalLB's CRDs come with the manifests; the platform is tested in tests/platform.rs.
            text.push_str("  platform: {metallb: {external: true}, traefik: {external: true}}\n");
        }
        text
    });
    std::fs::copy(&server.kubeconfig, dir.path().join("kubeconfig")).unwrap();
    std::fs::copy(&fake.ca, dir.path().join("nas-ca.crt")).unwrap();
    cloudlet_testkit::seed::metallb_crds(dir.path());
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/postmaster-password"), "pw").unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_volumes_get_datasets_exports_snapshots_and_bound_claims() {
    let mut server = support::ApiServer::start();
    server.start_controllers(&["persistentvolume-binder-controller"]);
    let nas = tempfile::tempdir().unwrap();
    let fake = truenas_fake::Fake::start(nas.path(), "25.10.1", KEY).await;
    let dir = lab_dir(&server, &fake);
    let lab = dir.path().to_str().unwrap();

    let (code, out, err) = cloudlet(&["apply", lab, "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    {
        let st = fake.state.lock().unwrap();
        assert!(st.datasets.contains_key("main/mail/mailserver/data"));
        assert_eq!(st.shares.len(), 4, "two exports and the two volumes' own");
        assert_eq!(st.tasks.len(), 2);
    }
    assert!(
        !out.contains(KEY) && !err.contains(KEY),
        "the key is never printed"
    );

    // The mail server's claim binds to exactly its volume, which points at its export.
    let client = server.client().await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "mailserver");
    let deadline = Instant::now() + Duration::from_secs(60);
    let pvc = loop {
        let pvc = claims.get("mailserver-data").await.unwrap();
        if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
            break pvc;
        }
        assert!(
            Instant::now() < deadline,
            "the claim did not bind: {:?}; controller log: {}",
            pvc.status,
            std::fs::read_to_string(server.dir.path().join("controllers.err"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let pv_name = pvc.spec.unwrap().volume_name.unwrap();
    let pv: PersistentVolume = Api::all(client.clone()).get(&pv_name).await.unwrap();
    let spec = pv.spec.unwrap();
    let nfs = spec.nfs.unwrap();
    assert_eq!(
        (nfs.server.as_str(), nfs.path.as_str()),
        ("10.0.20.30", "/mnt/main/mail/mailserver/data")
    );
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Retain")
    );
    assert_eq!(
        spec.claim_ref.unwrap().name.as_deref(),
        Some("mailserver-data")
    );

    // A second plan is empty on both sides.
    let (code, out, err) = cloudlet(&["plan", lab, "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}{err}");

    // storage status: each volume with its clients and newest snapshot.
    fake.take_snapshot(
        "main/mail/mailserver/data",
        "cloudlet-seed-mail-20261127-1000",
    );
    let (code, out, err) = cloudlet(&["storage", "status", lab, "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let data = v
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "mail.mailserver.data")
        .unwrap();
    assert_eq!(data["exported_to"], serde_json::json!(["10.0.20.0/24"]));
    assert_eq!(
        data["latest_snapshot"],
        "main/mail/mailserver/data@cloudlet-seed-mail-20261127-1000"
    );
    let (code, out, _) = cloudlet(&["storage", "status", lab]);
    assert_eq!(code, 0);
    assert!(out.contains("4 volume(s)."), "{out}");

    // doctor: each snapshot policy's newest snapshot against its period (the NAS's ZFS
    // creation time), and the exports' mounts, which cannot be asked from here.
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    fake.take_snapshot_at("main/mail", "cloudlet-seed-mail-x", now - 30 * 60);
    fake.take_snapshot_at("main/blog", "cloudlet-seed-blog-x", now - 4 * 86_400);
    let (_, out, err) = cloudlet(&["doctor", lab, "--output", "json"]);
    let d: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let find = |check: &str, subject: &str| {
        d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == check && f["subject"] == subject)
            .unwrap_or_else(|| panic!("{check} {subject}: {d:#}"))
            .clone()
    };
    let mail = find("storage.snapshot", "snapshots mail");
    assert_eq!(mail["status"], "ok", "{mail}");
    assert_eq!(
        mail["evidence"],
        "newest snapshot main/mail@cloudlet-seed-mail-x is 30m old (schedule: every 1h)"
    );
    let blog = find("storage.snapshot", "snapshots blog");
    assert_eq!(blog["status"], "fail", "{blog}");
    assert!(
        blog["evidence"]
            .as_str()
            .unwrap()
            .contains("is 4d old (schedule: every 1d)"),
        "{blog}"
    );
    let mount = find("storage.mount", "export mail");
    assert_eq!(mount["status"], "warn", "{mount}");
    assert!(
        mount["evidence"]
            .as_str()
            .unwrap()
            .starts_with("not checked:"),
        "{mount}"
    );

    // The mail export's snapshots replicated to another pool of the NAS: apply makes the
    // task, bound to the snapshot task; doctor reads its last run.
    let storage = dir.path().join("storage.yaml");
    let text = std::fs::read_to_string(&storage).unwrap().replace(
        "snapshots: {every: 1h, keep: 48}",
        "snapshots: {every: 1h, keep: 48, replicate: {to: backup/lab/mail, keep_for: 30d}}",
    );
    std::fs::write(&storage, text).unwrap();
    let (code, out, err) = cloudlet(&["apply", lab, "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("storage/replication/mail"), "{out}");
    let doctor = || {
        let (_, out, err) = cloudlet(&["doctor", lab, "--output", "json"]);
        let d: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == "storage.replication")
            .unwrap_or_else(|| panic!("no storage.replication: {d:#}"))
            .clone()
    };
    let f = doctor();
    assert_eq!(
        (f["subject"].as_str(), f["status"].as_str()),
        (Some("replication mail"), Some("warn")),
        "{f}"
    );
    assert!(
        f["evidence"]
            .as_str()
            .unwrap()
            .contains("no finished run to backup/lab/mail yet"),
        "{f}"
    );
    // The target pool is missing: the run fails, and doctor says why.
    fake.run_replications(now - 10 * 60);
    let f = doctor();
    assert_eq!(f["status"], "fail", "{f}");
    assert!(
        f["evidence"]
            .as_str()
            .unwrap()
            .contains("Target dataset 'backup/lab' does not exist"),
        "{f}"
    );
    fake.add_pool("backup");
    fake.state
        .lock()
        .unwrap()
        .datasets
        .insert("backup/lab".into(), truenas_fake::Dataset::default());
    fake.run_replications(now - 10 * 60);
    let f = doctor();
    assert_eq!(f["status"], "ok", "{f}");
    assert_eq!(
        f["evidence"],
        "last copied main/mail@cloudlet-seed-mail-x to backup/lab/mail 10m ago (snapshots every 1h)"
    );

    // Without the key the NAS is not reached, with a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_cloudlet"))
        .args(["plan", lab])
        .env_remove("CLOUDLET_TEST_TRUENAS_KEY")
        .output()
        .unwrap();
    let all = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && all.contains("CLOUDLET_TEST_TRUENAS_KEY"),
        "{all}"
    );
}
