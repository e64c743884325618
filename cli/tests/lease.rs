//! The lock shared through the cluster, against a real kube-apiserver: an apply is refused
//! (nothing changed, the holder named) while another machine holds the lab's apply Lease,
//! and goes ahead once that Lease expires, letting it go at its end; of two `watch`
//! processes with `--lease` one leads and the other follows, and takes over when the leader
//! is killed without letting go.
#![allow(clippy::disallowed_methods)]

use std::process::Stdio;
use std::time::Duration;

use cloudlet_testkit::apiserver as support;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_waits_for_no_one_else_holding_the_labs_lease() {
    let server = support::ApiServer::start();
    let dir = cloudlet_testkit::seed::seed_on_apiserver(&server.kubeconfig, None);
    let lab = dir.path().to_str().unwrap();
    let out = common::cloudlet(&[], &["apply", lab, "--yes"]);
    assert!(out.status.success(), "{}", common::text(&out, &[]));
    let client = server.client().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let after_first = leases.get("cloudlet-seed-apply").await.unwrap();
    assert_eq!(
        after_first.spec.unwrap().holder_identity,
        None,
        "an apply lets the Lease go at its end"
    );
    leases
        .delete("cloudlet-seed-apply", &DeleteParams::default())
        .await
        .unwrap();

    // Another machine holds the Lease (renewed just now, for 4 seconds).
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "cloudlet-seed-apply"},
                "spec": {"holderIdentity": "ops-laptop pid 4242", "leaseDurationSeconds": 4,
                "acquireTime": common::now_micro(), "renewTime": common::now_micro()}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "blog");
    services
        .delete("blog", &DeleteParams::default())
        .await
        .unwrap();
    let out = common::cloudlet(&[], &["apply", lab, "--yes"]);
    let text = common::text(&out, &[]);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("another apply of this lab holds the Lease default/cloudlet-seed-apply: ops-laptop pid 4242 (it expires in"),
        "{text}"
    );
    assert!(
        services.get_opt("blog").await.unwrap().is_none(),
        "nothing was applied"
    );

    // It was not renewed: once it has expired, the apply goes ahead.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let out = common::cloudlet(&[], &["apply", lab, "--yes"]);
    assert!(out.status.success(), "{}", common::text(&out, &[]));
    assert!(services.get_opt("blog").await.unwrap().is_some());
    let lease = leases
        .get("cloudlet-seed-apply")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(lease.holder_identity, None);
    assert_eq!(lease.lease_transitions, Some(1), "taken over once");
}

struct Watcher {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

fn start_watch(lab: &str) -> Watcher {
    let mut child = tokio::process::Command::new(common::BIN)
        .args([
            "watch",
            lab,
            "--interval",
            "1s",
            "--timeout",
            "5s",
            "--lease",
            "3s",
            "--output",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    Watcher { child, lines }
}

/// The next event of `w` (at most 60 seconds away).
async fn next_event(w: &mut Watcher) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(60), w.lines.next_line())
        .await
        .expect("an event within a minute")
        .unwrap()
        .expect("the watch runs");
    serde_json::from_str(&line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_watches_one_leads_and_the_other_takes_over_when_it_dies() {
    let server = support::ApiServer::start();
    let dir = cloudlet_testkit::seed::seed_on_apiserver(&server.kubeconfig, None);
    let lab = dir.path().to_str().unwrap();
    let out = common::cloudlet(&[], &["apply", lab, "--yes"]);
    assert!(out.status.success(), "{}", common::text(&out, &[]));

    let mut a = start_watch(lab);
    let first = next_event(&mut a).await;
    assert_eq!(first["event"], "leading", "{first}");
    let a_id = first["me"].as_str().unwrap().to_string();
    let mut b = start_watch(lab);
    let b_first = next_event(&mut b).await;
    assert_eq!(b_first["event"], "following", "{b_first}");
    assert_eq!(b_first["leader"], a_id.as_str());
    // The leader keeps checking; the follower does nothing meanwhile.
    // Its first round reports what is not ok (no nodes yet), once.
    let mut rounds = 0;
    let mut reported = Vec::new();
    while rounds < 3 {
        let e = next_event(&mut a).await;
        if e["event"] == "round" {
            rounds += 1;
        } else if e["event"] == "changed" {
            reported.push(format!("{} {}", e["check"], e["subject"]));
        }
    }
    assert!(
        reported.contains(&r#""cluster.node" "nodes""#.to_string()),
        "{reported:?}"
    );
    // Killed: it never lets go, so the other waits for the Lease to expire, then leads.
    a.child.start_kill().unwrap();
    let _ = a.child.wait().await;
    let took = next_event(&mut b).await;
    assert_eq!(took["event"], "leading", "{took}");
    let b_id = took["me"].as_str().unwrap().to_string();
    assert_ne!(a_id, b_id);
    // It starts from the states the leader left on the Lease: nothing is reported twice.
    loop {
        let e = next_event(&mut b).await;
        assert_ne!(e["event"], "following", "{e}");
        assert_ne!(
            e["event"], "changed",
            "reported again by the new leader: {e}"
        );
        if e["event"] == "round" {
            break;
        }
    }
    let leases: Api<Lease> = Api::namespaced(server.client().await, "default");
    let spec = leases
        .get("cloudlet-seed-watch")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(b_id.as_str()));
    assert_eq!(spec.lease_transitions, Some(1));
    // Stopped on purpose (SIGINT), a leader lets go at once.
    let pid = b.child.id().unwrap();
    cloudlet_testkit::shell::ok(&format!("kill -INT {pid}"));
    let _ = b.child.wait().await;
    let spec = leases
        .get("cloudlet-seed-watch")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.holder_identity, None);
}
