//! The cluster class on a cluster cloudlet made (the hollow cluster tier: real kubeadm, its
//! etcd serving TLS with client-certificate auth): `cloudlet backup run` takes an etcd
//! snapshot through etcd's API with a client certificate of the cluster's etcd CA, `verify`
//! proves it up to L3, and the snapshot, read back with stock restic and restored by
//! etcdutl, holds the lab's app.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::net::Ipv4Addr;
use std::process::Output;

use cloudlet_testkit::apiserver::peers;
use cloudlet_testkit::hollow::HollowLab;

mod common;

const KEY: &str = "hollow-backup-key";

async fn cloudlet(vault: &str, args: &[&str]) -> Output {
    common::cloudlet_async(
        &[("CLOUDLET_VAULT_KEY", vault), ("CLOUDLET_BACKUP_KEY", KEY)],
        args,
    )
    .await
}

fn text(o: &Output) -> String {
    common::text(o, &[KEY])
}

#[test]
fn the_cluster_class_snapshots_etcd_of_the_cluster_cloudlet_made_and_proves_it() {
    let hollow = HollowLab::start(
        &[("cp", Ipv4Addr::new(10, 0, 20, 10))],
        Ipv4Addr::new(10, 0, 20, 250),
        24,
    );
    let work = tempfile::tempdir().unwrap();
    let (lab, target) = (work.path().join("lab.yaml"), work.path().join("nas"));
    let apps =
        "  apps:\n    web:\n      image: nginx:1.27\n      ports: [{name: http, port: 80}]\n";
    let yaml = format!(
        "{}backup:\n  key: {{env: CLOUDLET_BACKUP_KEY}}\n  targets: {{nas: {{dir: {}}}}}\n  cluster: {{target: nas, every: 6h}}\n  state: {{target: nas, every: 1h}}\n",
        hollow.lab_yaml(&["cp"], &[], apps),
        target.display()
    );
    std::fs::write(&lab, yaml).unwrap();
    hollow.report_installs(&work.path().join(".cloudlet"));
    let vault = common::vault_key();
    let l = lab.display().to_string();

    let (apply, run, verify, doctor) = hollow.block_on(async move {
        let apply = cloudlet(&vault, &["apply", &l, "--yes"]).await;
        let run = cloudlet(&vault, &["backup", "run", &l]).await;
        let verify = cloudlet(&vault, &["backup", "verify", &l]).await;
        let doctor = cloudlet(&vault, &["doctor", &l, "--output", "json"]).await;
        (apply, run, verify, doctor)
    });
    assert!(
        apply.status.success(),
        "{}\n{}",
        text(&apply),
        hollow.tail("cp", 20)
    );
    let run_text = text(&run);
    assert!(
        run.status.success(),
        "{run_text}\n{}",
        hollow.tail("cp", 20)
    );
    assert!(run_text.contains("ok state → nas"), "{run_text}");
    assert!(run_text.contains("ok cluster → nas"), "{run_text}");
    let verify_text = text(&verify);
    assert!(verify.status.success(), "{verify_text}");
    assert!(
        verify_text.contains("cluster → nas:\n  ok L0")
            && verify_text
                .matches("ok L3 a restore to scratch matches the source")
                .count()
                == 2,
        "{verify_text}"
    );

    // The doctor asks the cluster's etcd with a certificate of its etcd CA, and finds the
    // backups fresh.
    let d: serde_json::Value = serde_json::from_slice(&doctor.stdout)
        .unwrap_or_else(|e| panic!("doctor's JSON: {e}: {}", text(&doctor)));
    let finding = |check: &str, subject: &str| {
        d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == check && f["subject"] == subject)
            .cloned()
            .unwrap_or_else(|| panic!("no {check} {subject}: {d:#}"))
    };
    let member = finding("cluster.etcd", "etcd cp");
    assert_eq!(member["status"], "ok", "{member}");
    assert!(
        member["evidence"].as_str().unwrap().contains("the leader"),
        "{member}"
    );
    assert_eq!(
        finding("cluster.etcd", "etcd quorum")["evidence"],
        "1 of 1 members answer, one leader"
    );
    assert_eq!(finding("backup.fresh", "backup cluster")["status"], "ok");
    assert_eq!(finding("backup.fresh", "backup state")["status"], "ok");
    assert_eq!(finding("cluster.drift", "cluster")["status"], "ok", "{d:#}");

    // Stock restic gives the snapshot back; etcdutl (with etcd's hash check) restores it.
    let out = work.path().join("out");
    let o = std::process::Command::new("restic")
        .arg("-r")
        .arg(&target)
        .args(["restore", "latest", "--tag", "cloudlet:cluster", "--target"])
        .arg(&out)
        .env("RESTIC_PASSWORD", KEY)
        .env("RESTIC_CACHE_DIR", work.path().join("rc"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let db = out.join("cloudlet/hollow/cluster/etcd.db");
    let data = work.path().join("restored");
    let o = std::process::Command::new(peers().join("etcdutl"))
        .args(["snapshot", "restore"])
        .arg(&db)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The lab's app is in it: bbolt keeps keys as written, so its key is in the file.
    let bytes = std::fs::read(data.join("member/snap/db")).unwrap();
    let needle = b"/registry/deployments/web/web";
    assert!(
        bytes.windows(needle.len()).any(|w| w == needle),
        "the app's Deployment is not in the restored etcd"
    );
}
