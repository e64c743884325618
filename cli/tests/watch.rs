//! `cloudlet watch` against a real kube-apiserver with etcd, as users run it (the binary):
//! pods made stuck and then fixed while it runs, a Service deleted by hand; every change of
//! state is one event and one webhook message (an HTTPS receiver in the test), `/metrics`
//! and `/healthz` answer, drift is applied back and a stuck pod a controller remakes is
//! deleted — with a dry run first that changes nothing.
#![allow(clippy::disallowed_methods)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudlet_testkit::apiserver as support;
use cloudlet_testkit::https;
use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

mod common;

async fn make_pod(pods: &Api<Pod>, name: &str, owned: bool, status: Value) {
    let mut meta = json!({"name": name});
    if owned {
        meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "web-5d8f", "uid": "0b7f5f6e-0000-4000-8000-000000000001", "controller": true}]);
    }
    let pod = json!({"metadata": meta, "spec": {"nodeName": "n1",
        "containers": [{"name": "app", "image": "example/app:1"}]}});
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap();
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
}

fn zombie_status() -> Value {
    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False",
        "message": "containers with unready status: [app]", "lastTransitionTime": common::ago(40 * 60)}]})
}

async fn get(addr: &str, path: &str) -> (String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sends_each_change_once_serves_metrics_and_puts_things_right() {
    let server = support::ApiServer::start();
    let dir = cloudlet_testkit::seed::seed_on_apiserver(&server.kubeconfig, None);
    let lab = dir.path().to_str().unwrap();
    let out = common::cloudlet(&[], &["apply", lab, "--yes"]);
    assert!(out.status.success(), "{}", common::text(&out, &[]));

    let client = server.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                "lastHeartbeatTime": common::ago(0), "lastTransitionTime": common::ago(3600)}]}}),
            ),
        )
        .await
        .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "blog")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap(),
        )
        .await
        .ok();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "blog");
    // A pod a ReplicaSet remakes, Running but not Ready for 40 minutes; a bare one crashing.
    make_pod(&pods, "zombie", true, zombie_status()).await;
    make_pod(
        &pods,
        "crashing",
        false,
        json!({"phase": "Running", "containerStatuses": [{"name": "app",
        "image": "example/app:1", "imageID": "", "ready": false, "restartCount": 6,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
    )
    .await;
    // Drift: a Service of the lab deleted by hand.
    let services: Api<Service> = Api::namespaced(client.clone(), "blog");
    services
        .delete("blog", &DeleteParams::default())
        .await
        .unwrap();

    // A dry run names what it would put right and changes nothing.
    let out = common::cloudlet(
        &[],
        &[
            "watch",
            lab,
            "--rounds",
            "1",
            "--remediate",
            "stuck-pods",
            "--remediate",
            "drift",
            "--dry-run",
            "--timeout",
            "5s",
        ],
    );
    let text = common::text(&out, &[]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("would delete stuck pod blog/zombie (dry run)"),
        "{text}"
    );
    assert!(
        text.contains("would apply the lab (1 change(s) of drift) (dry run)"),
        "{text}"
    );
    assert!(
        !text.contains("blog/crashing (dry run)"),
        "a pod nobody remakes is left: {text}"
    );
    assert!(!common::deleting(&pods, "zombie").await);
    assert!(services.get_opt("blog").await.unwrap().is_none());

    // The webhook receiver: every message kept.
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let keep = got.clone();
    let certs = tempfile::tempdir().unwrap();
    let hook = https::start(
        certs.path(),
        Arc::new(move |req: https::Req| {
            let keep = keep.clone();
            Box::pin(async move {
                assert_eq!(req.path, "/hooks/s3cr3t-path");
                keep.lock().unwrap().push(req.body);
                Some((200, json!({})))
            })
        }),
    )
    .await;
    let url = format!("{}/hooks/s3cr3t-path", hook.endpoint);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(common::BIN)
        .args([
            "watch",
            lab,
            "--interval",
            "1s",
            "--timeout",
            "5s",
            "--listen",
            &listen,
            "--webhook",
            "json=HOOK_URL",
            "--remediate",
            "stuck-pods",
            "--remediate",
            "drift",
            "--output",
            "json",
        ])
        .env("HOOK_URL", &url)
        .env("SSL_CERT_FILE", &hook.ca)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut events: Vec<Value> = Vec::new();
    // Reads events until `until` holds for one, at most 60 rounds' worth.
    async fn read_until(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
        events: &mut Vec<Value>,
        until: impl Fn(&Value) -> bool,
    ) {
        let found = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let v: Value = serde_json::from_str(&line).unwrap();
                let hit = until(&v);
                events.push(v);
                if hit {
                    return;
                }
            }
            panic!("watch ended early");
        })
        .await;
        assert!(found.is_ok(), "not seen; events so far: {events:#?}");
    }
    let is_change = |subject: &'static str, to: Value| {
        move |v: &Value| v["event"] == "changed" && v["subject"] == subject && v["to"] == to
    };
    read_until(
        &mut lines,
        &mut events,
        is_change("pod blog/crashing", json!("fail")),
    )
    .await;
    read_until(&mut lines, &mut events, |v| v["event"] == "round").await;
    // Round 1 put right what it could: the zombie deleted (a controller remakes it), the lab
    // applied back.
    let remediated: Vec<&Value> = events
        .iter()
        .filter(|v| v["event"] == "remediated")
        .collect();
    assert!(
        remediated
            .iter()
            .any(|v| v["action"] == "delete stuck pod blog/zombie"
                && v["error"].is_null()
                && v["dry_run"] == false),
        "{remediated:#?}"
    );
    assert!(
        remediated
            .iter()
            .any(|v| v["action"] == "apply the lab (1 change(s) of drift)" && v["error"].is_null()),
        "{remediated:#?}"
    );
    assert!(common::deleting(&pods, "zombie").await);
    assert!(!common::deleting(&pods, "crashing").await);
    assert!(
        services.get_opt("blog").await.unwrap().is_some(),
        "the Service is back"
    );

    // The metrics while it runs.
    let (status, metrics) = get(&listen, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        metrics.contains("cloudlet_check_status{lab=\"seed\",check=\"cluster.pod\",domain=\"cluster\",subject=\"pod blog/crashing\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE cloudlet_drift_changes gauge\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cloudlet_last_apply_timestamp_seconds{lab=\"seed\"} "),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    assert_eq!(
        get(&listen, "/healthz").await,
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );
    assert_eq!(get(&listen, "/nothing").await.0, "HTTP/1.1 404 Not Found");

    // The drift and the zombie clear; then the crashing pod is removed by hand.
    read_until(&mut lines, &mut events, is_change("cluster", json!("ok"))).await;
    read_until(
        &mut lines,
        &mut events,
        is_change("pod blog/zombie", Value::Null),
    )
    .await;
    pods.delete(
        "crashing",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    read_until(
        &mut lines,
        &mut events,
        is_change("pod blog/crashing", Value::Null),
    )
    .await;
    // Two more rounds: nothing changes, nothing more is sent.
    let rounds_now = events.iter().filter(|v| v["event"] == "round").count();
    read_until(&mut lines, &mut events, |v| v["event"] == "round").await;
    read_until(&mut lines, &mut events, |v| v["event"] == "round").await;
    child.kill().await.unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    let rounds_after = events.iter().filter(|v| v["event"] == "round").count();
    assert_eq!(rounds_after, rounds_now + 2);
    let last_change = events
        .iter()
        .rposition(|v| v["event"] == "changed")
        .unwrap();
    let last_rounds: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, v)| v["event"] == "round")
        .map(|(i, _)| i)
        .collect();
    assert!(
        last_change < last_rounds[last_rounds.len() - 2],
        "a change in the quiet rounds: {events:#?}"
    );

    // One message per change, in order, and one change per change of state.
    let changes: Vec<&Value> = events.iter().filter(|v| v["event"] == "changed").collect();
    let sent = got.lock().unwrap().clone();
    assert_eq!(sent.len(), changes.len(), "{sent:#?}\n{changes:#?}");
    for (s, c) in sent.iter().zip(&changes) {
        assert_eq!(s["lab"], "seed");
        assert_eq!(s["change"]["subject"], c["subject"]);
        assert_eq!(s["change"]["to"], c["to"]);
    }
    let crashing: Vec<(&Value, &Value)> = changes
        .iter()
        .filter(|c| c["subject"] == "pod blog/crashing")
        .map(|c| (&c["from"], &c["to"]))
        .collect();
    assert_eq!(
        crashing,
        vec![
            (&Value::Null, &json!("fail")),
            (&json!("fail"), &Value::Null)
        ]
    );
    let notified = events.iter().filter(|v| v["event"] == "notified").count();
    assert_eq!(notified, changes.len());
    assert!(
        events
            .iter()
            .filter(|v| v["event"] == "notified")
            .all(|v| v["status"] == 200 && v["error"].is_null()),
        "{events:#?}"
    );
    // The webhook's URL (its path is a secret) appears nowhere.
    let all = format!("{}{err}", serde_json::to_string(&events).unwrap());
    assert!(
        !all.contains("s3cr3t-path"),
        "the webhook's path was printed"
    );
}
