//! `cloudlet doctor` against a real kube-apiserver with etcd: the seed applied, then the
//! cluster made to look like a bad day — a node NotReady for an hour, pods in every stuck
//! state (status written through the API, since no kubelet runs), a Service deleted by hand,
//! an ingress serving an expired certificate and a LoadBalancer port nobody answers on, on
//! loopback addresses the test serves — and a router backend that accepts connections and
//! never answers. Each finding is checked, with its ok side where the test can make it.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;

use cloudlet_testkit::apiserver as support;
use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

mod common;

/// A TLS server on `addr` serving a certificate for `host` valid from `from` to `until`
/// (seconds from now), until the task is dropped.
async fn serve_tls(addr: &str, host: &str, from: i64, until: i64) -> tokio::task::JoinHandle<()> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::seconds(from);
    params.not_after = now + time::Duration::seconds(until);
    let cert = params.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    })
}

async fn status_patch<K>(api: &Api<K>, name: &str, status: Value)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .unwrap();
}

fn doctor(lab: &str, env: &[(&str, &str)], extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["doctor", lab, "--output", "json"];
    args.extend_from_slice(extra);
    let out = common::cloudlet(env, &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "doctor's JSON: {e}\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn find<'a>(d: &'a Value, check: &str, subject: &str) -> &'a Value {
    d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check && f["subject"] == subject)
        .unwrap_or_else(|| panic!("no {check} finding about {subject}:\n{d:#}"))
}

fn status_of(d: &Value, check: &str, subject: &str) -> String {
    find(d, check, subject)["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_what_is_stuck_expired_unanswered_and_drifted() {
    let server = support::ApiServer::start();
    let dir = cloudlet_testkit::seed::seed_on_apiserver(&server.kubeconfig, None);
    let lab = dir.path().to_str().unwrap();
    let out = common::cloudlet(&[], &["apply", lab, "--yes"]);
    assert!(out.status.success(), "{}", common::text(&out, &[]));

    // Right after the apply, with nothing broken by hand: the cluster answers, nothing
    // drifted, and no pod exists to be stuck.
    let (code, d) = doctor(lab, &[], &[]);
    assert_eq!(d["format"], 1);
    assert_eq!(
        status_of(&d, "cluster.reachable", "cluster (kubernetes)"),
        "ok"
    );
    assert_eq!(status_of(&d, "cluster.drift", "cluster"), "ok", "{d:#}");
    assert_eq!(status_of(&d, "cluster.pod", "pods"), "ok");
    assert_eq!(
        status_of(&d, "cluster.node", "nodes"),
        "fail",
        "no nodes yet"
    );
    assert_eq!(code, 2);
    // The shape tools read: every finding has exactly these keys, `fix` only when not ok.
    for f in d["findings"].as_array().unwrap() {
        let mut keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        let want: &[&str] = if f["status"] == "ok" {
            &["check", "domain", "evidence", "status", "subject"]
        } else {
            &["check", "domain", "evidence", "fix", "status", "subject"]
        };
        assert_eq!(keys, want, "{f}");
    }
    for key in ["format", "lab", "status", "counts", "seconds", "findings"] {
        assert!(d.get(key).is_some(), "{key} missing");
    }

    // A bad day.
    let client = server.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, ready, since) in [("n1", "True", 7200), ("n2", "False", 3600)] {
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
        status_patch(
            &nodes,
            name,
            json!({"conditions": [{"type": "Ready", "status": ready,
            "reason": "KubeletNotReady", "message": "container runtime is down",
            "lastHeartbeatTime": common::ago(since), "lastTransitionTime": common::ago(since)}],
            "addresses": [{"type": "InternalIP", "address": if name == "n1" { "127.77.0.11" } else { "127.77.0.12" }}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}),
        )
        .await;
    }
    let ns = "blog";
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap(),
        )
        .await
        .ok();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let container = |state: Value, restarts: i32| {
        json!([{"name": "app", "image": "example/app:1", "imageID": "", "ready": false,
            "restartCount": restarts, "state": state,
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}])
    };
    let stuck = [
        (
            "crashing",
            "n1",
            json!({"phase": "Running", "containerStatuses":
            container(json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}}), 9)}),
        ),
        (
            "unplaced",
            "",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/2 nodes are available: 2 Insufficient memory.",
            "lastTransitionTime": common::ago(3600)}]}),
        ),
        (
            "mounting",
            "n1",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "True", "lastTransitionTime": common::ago(7200)}], "containerStatuses":
            container(json!({"waiting": {"reason": "ContainerCreating"}}), 0)}),
        ),
        (
            "zombie",
            "n1",
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False",
            "message": "containers with unready status: [app]", "lastTransitionTime": common::ago(40 * 60)}]}),
        ),
        (
            "healthy",
            "n1",
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
            "lastTransitionTime": common::ago(7200)}]}),
        ),
    ];
    for (name, node, status) in &stuck {
        let mut spec = json!({"containers": [{"name": "app", "image": "example/app:1"}]});
        if !node.is_empty() {
            spec["nodeName"] = json!(node);
        }
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap(),
        )
        .await
        .unwrap();
        status_patch(&pods, name, status.clone()).await;
    }
    // Drift: a Service of the lab deleted by hand.
    Api::<Service>::namespaced(client.clone(), ns)
        .delete("blog", &DeleteParams::default())
        .await
        .unwrap();
    // The ingress published on a loopback address whose 443 serves an expired certificate;
    // the shared LoadBalancer address answers on 25 and 587 but not 993.
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), ns);
    let ing = ingresses
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .expect("the blog's Ingress");
    let ing_name = ing.metadata.name.clone().unwrap();
    status_patch(
        &ingresses,
        &ing_name,
        json!({"loadBalancer": {"ingress": [{"ip": "127.77.0.1"}]}}),
    )
    .await;
    let expired = serve_tls("127.77.0.1:443", "blog.example.com", -400 * 86_400, -86_400).await;
    // n1's kubelet serves a self-signed certificate with three days left.
    let _kubelet = serve_tls("127.77.0.11:10250", "n1", -360 * 86_400, 3 * 86_400 + 7_200).await;
    let mail: Api<Service> = Api::namespaced(client.clone(), "mailserver");
    let shared = mail
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        .expect("the mailserver's LoadBalancer Service");
    let shared_name = shared.metadata.name.clone().unwrap();
    status_patch(
        &mail,
        &shared_name,
        json!({"loadBalancer": {"ingress": [{"ip": "127.77.0.2", "ipMode": "VIP"}]}}),
    )
    .await;
    let smtp = TcpListener::bind("127.77.0.2:25").await.unwrap();
    let submission = TcpListener::bind("127.77.0.2:587").await.unwrap();

    let (code, d) = doctor(lab, &[], &["--timeout", "5s"]);
    assert_eq!(code, 2, "{d:#}");
    assert_eq!(d["status"], "fail");
    assert_eq!(status_of(&d, "cluster.node", "node n1"), "ok");
    let n2 = find(&d, "cluster.node", "node n2");
    assert_eq!(n2["status"], "fail");
    assert!(
        n2["evidence"]
            .as_str()
            .unwrap()
            .starts_with("not Ready for 1h: Ready is False: container runtime is down"),
        "{n2}"
    );
    let pod = |name: &str| find(&d, "cluster.pod", &format!("pod {ns}/{name}")).clone();
    for name in ["crashing", "unplaced", "mounting", "zombie"] {
        assert_eq!(pod(name)["status"], "fail", "{}", pod(name));
        assert!(pod(name)["fix"].is_string());
    }
    assert!(pod("crashing")["evidence"].as_str().unwrap().contains("CrashLoopBackOff: back-off 5m0s restarting failed container, 9 restarts; last exit 137 (OOMKilled)"));
    assert!(
        pod("unplaced")["evidence"]
            .as_str()
            .unwrap()
            .contains("not scheduled: 0/2 nodes are available: 2 Insufficient memory.")
    );
    assert!(
        pod("mounting")["evidence"]
            .as_str()
            .unwrap()
            .contains("ContainerCreating")
    );
    assert!(pod("mounting")["fix"].as_str().unwrap().contains("NFS"));
    assert!(
        pod("zombie")["evidence"]
            .as_str()
            .unwrap()
            .starts_with("Running but not Ready for 40m")
    );
    assert!(
        !d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["subject"] == format!("pod {ns}/healthy")),
        "a healthy pod is not a finding"
    );
    let drift = find(&d, "cluster.drift", "cluster");
    assert_eq!(drift["status"], "warn");
    assert!(
        drift["evidence"]
            .as_str()
            .unwrap()
            .contains("cluster/service/blog.blog"),
        "{drift}"
    );
    let cert = find(&d, "cluster.certificate", "https://blog.example.com");
    assert_eq!(cert["status"], "fail");
    assert!(
        cert["evidence"]
            .as_str()
            .unwrap()
            .starts_with("expired 1d ago"),
        "{cert}"
    );
    let kubelet = find(&d, "cluster.certificate", "kubelet n1");
    assert_eq!(kubelet["status"], "fail", "{kubelet}");
    assert!(
        kubelet["evidence"]
            .as_str()
            .unwrap()
            .starts_with("expires in 3d"),
        "{kubelet}"
    );
    assert!(
        !d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["subject"] == "kubelet n2"),
        "a node not Ready is left to its own finding"
    );
    let vip = |port: u16| {
        status_of(
            &d,
            "cluster.vip",
            &format!("vip 127.77.0.2:{port} (mailserver/{shared_name})"),
        )
    };
    assert_eq!(vip(25), "ok");
    assert_eq!(vip(587), "ok");
    assert_eq!(vip(993), "fail");
    // The API server's own serving certificate is read too.
    let api = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["check"] == "cluster.certificate"
                && f["subject"].as_str().unwrap().starts_with("api server ")
        })
        .expect("the API server's certificate");
    assert!(api["evidence"].as_str().unwrap().contains("until"), "{api}");
    // Claims nobody binds (no controller runs) are on their way, not failed.
    let claims: Vec<&Value> = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["check"] == "cluster.object"
                && f["subject"]
                    .as_str()
                    .unwrap()
                    .starts_with("persistentvolumeclaim ")
        })
        .collect();
    assert!(
        !claims.is_empty() && claims.iter().all(|f| f["status"] == "warn"),
        "{claims:?}"
    );

    // The human form says the same, with the fixes.
    let out = common::cloudlet(&[], &["doctor", lab, "--timeout", "5s"]);
    assert_eq!(out.status.code(), Some(2));
    let text = common::text(&out, &[]);
    assert!(
        text.contains("FAIL pod blog/crashing: container app: CrashLoopBackOff"),
        "{text}"
    );
    assert!(
        text.contains(
            "       fix: read why it exits: `kubectl -n blog logs crashing -c app --previous`"
        ),
        "{text}"
    );

    // Fixed: a renewed certificate, the node back, the bad pods gone, the lab applied again.
    expired.abort();
    let _ = expired.await;
    let _renewed = serve_tls("127.77.0.1:443", "blog.example.com", -86_400, 90 * 86_400).await;
    status_patch(
        &nodes,
        "n2",
        json!({"conditions": [{"type": "Ready", "status": "True",
        "lastHeartbeatTime": common::ago(0), "lastTransitionTime": common::ago(0)}]}),
    )
    .await;
    for name in ["crashing", "unplaced", "mounting", "zombie"] {
        pods.delete(
            name,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let out = common::cloudlet(&[], &["apply", lab, "--yes"]);
    assert!(out.status.success(), "{}", common::text(&out, &[]));
    let (_, d) = doctor(lab, &[], &["--timeout", "5s"]);
    assert_eq!(status_of(&d, "cluster.node", "node n2"), "ok");
    assert_eq!(status_of(&d, "cluster.pod", "pods"), "ok");
    assert_eq!(status_of(&d, "cluster.drift", "cluster"), "ok");
    let cert = find(&d, "cluster.certificate", "https://blog.example.com");
    assert_eq!(cert["status"], "ok", "{cert}");
    let said = cert["evidence"].as_str().unwrap();
    assert!(
        said.starts_with("valid for 89 ") || said.starts_with("valid for 90 "),
        "{cert}"
    );
    drop((smtp, submission));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_hangs_fails_its_own_checks_within_the_limit() {
    let server = support::ApiServer::start();
    // A router that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let resolver = tokio::net::UdpSocket::bind("127.77.0.53:53").await.unwrap();
    let dir = cloudlet_testkit::seed::seed_on_apiserver(&server.kubeconfig, Some(port));
    let lab = dir.path().to_str().unwrap();
    let env = [("OPN_KEY", "key:secret-never-printed")];
    let (code, d) = doctor(lab, &env, &["--timeout", "2s"]);
    assert_eq!(code, 2);
    let router = find(&d, "router.reachable", "router (opnsense)");
    assert_eq!(router["status"], "fail");
    assert_eq!(router["evidence"], "no answer within 2s");
    // Everything else was still checked: the cluster answered.
    assert_eq!(
        status_of(&d, "cluster.reachable", "cluster (kubernetes)"),
        "ok"
    );
    assert!(find(&d, "cluster.pod", "pods")["status"] == "ok");
    // Every name the lab gives the router was asked of its resolver, which said nothing.
    let dns = find(&d, "router.dns", "dns blog.example.com");
    assert_eq!(dns["status"], "fail");
    assert_eq!(dns["evidence"], "127.77.0.53:53 did not answer within 1s");
    assert!(
        !serde_json::to_string(&d)
            .unwrap()
            .contains("secret-never-printed")
    );
    drop((silent, resolver));
}
