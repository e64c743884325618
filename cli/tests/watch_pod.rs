//! `watch:` in the lab: the watch as a Deployment in the lab's own cluster, against a real
//! kube-apiserver with RBAC. The apply makes its namespace, service account, RBAC, the lab's
//! files as a ConfigMap and what they reference as a Secret (values read at apply time; the
//! cluster target's kubeconfig never goes in). Then the pod is run as a kubelet would run it
//! (its volumes, environment, service account token and API server address; cloudlet's binary
//! as the image's program): it loads the lab from the ConfigMap and Secret alone, reaches the
//! cluster through its service account, leads through the Lease and finds the lab as applied.
//! The service account reads everything, deletes pods, and may not write anything else.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;

use cloudlet_testkit::apiserver as support;
use cloudlet_testkit::container;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::Value;

mod common;

const HOOK: &str = "https://127.0.0.1:9/cloudlet-hook-secret-path";

/// Whether the service account may `verb` `resource` (in `namespace`).
async fn may(client: &kube::Client, verb: &str, group: &str, resource: &str, ns: &str) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap()
        .allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_runs_in_the_labs_cluster_on_its_own_files_and_service_account() {
    let server = support::ApiServer::start();
    let dir = cloudlet_testkit::seed::seed_on_apiserver(&server.kubeconfig, None);
    let lab = dir.path().to_str().unwrap();
    let mut text = std::fs::read_to_string(dir.path().join("lab.yaml")).unwrap();
    text.push_str(
        "watch:\n  image: registry.lab.example/cloudlet:test\n  interval: 30s\n  remediate: [stuck_pods]\n  webhooks:\n    - {format: slack, url: {env: CLOUDLET_TEST_HOOK}}\n",
    );
    std::fs::write(dir.path().join("lab.yaml"), text).unwrap();
    let env = [("CLOUDLET_TEST_HOOK", HOOK)];

    // The plan shows the watch; the apply makes it.
    let out = common::cloudlet(&env, &["plan", lab]);
    let t = common::text(&out, &[HOOK]);
    assert!(out.status.success(), "{t}");
    for id in [
        "cluster/deployment/cloudlet.watch",
        "cluster/serviceaccount/cloudlet.watch",
        "cluster/configmap/cloudlet.watch-lab",
        "cluster/secret/cloudlet.watch",
        "cluster/clusterrole/cloudlet-seed-watch",
        "cluster/role/default.cloudlet-seed-watch",
    ] {
        assert!(t.contains(id), "{id} in the plan:\n{t}");
    }
    let out = common::cloudlet(&env, &["apply", lab, "--yes"]);
    let t = common::text(&out, &[HOOK]);
    assert!(out.status.success(), "{t}");

    let admin = server.client().await;
    let deployment: Value = serde_json::to_value(
        Api::<Deployment>::namespaced(admin.clone(), "cloudlet")
            .get("watch")
            .await
            .unwrap(),
    )
    .unwrap();
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(spec["serviceAccountName"], "watch");
    let c = &spec["containers"][0];
    assert_eq!(c["image"], "registry.lab.example/cloudlet:test");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        vec![
            "watch",
            "/lab",
            "--in-cluster",
            "--state-dir",
            "/var/lib/cloudlet",
            "--interval",
            "30s",
            "--lease",
            "15s",
            "--listen",
            "0.0.0.0:9464",
            "--remediate",
            "stuck-pods",
            "--webhook",
            "slack=CLOUDLET_TEST_HOOK",
        ]
    );

    // The Secret holds what the lab references, read at apply time; the cluster target's
    // kubeconfig (the admin's token) is nowhere in the cluster.
    let secret = Api::<Secret>::namespaced(admin.clone(), "cloudlet")
        .get("watch")
        .await
        .unwrap();
    let (_, values) = container::from_live(&secret);
    assert_eq!(values["env.CLOUDLET_TEST_HOOK"], HOOK.as_bytes());
    assert!(
        values.values().any(|v| v == b"pw"),
        "the app's secret file is in it: {:?}",
        values.keys()
    );
    let config = Api::<ConfigMap>::namespaced(admin.clone(), "cloudlet")
        .get("watch-lab")
        .await
        .unwrap();
    let files = config.data.clone().unwrap_or_default();
    for v in values
        .values()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .chain(files.values().cloned())
    {
        assert!(
            !v.contains(&server.token),
            "the admin's token went into the cluster"
        );
    }

    // The pod's service account: a token from the API server, as the kubelet asks for one.
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), "cloudlet")
        .create_token_request(
            "watch",
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    audiences: Some(Vec::new()),
                    expiration_seconds: Some(3600),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap();
    let sa = server.client_with_token(&token).await;
    assert!(may(&sa, "list", "", "secrets", "blog").await);
    assert!(may(&sa, "get", "apps", "deployments", "blog").await);
    assert!(may(&sa, "delete", "", "pods", "blog").await, "stuck_pods");
    assert!(!may(&sa, "create", "", "namespaces", "").await);
    assert!(!may(&sa, "patch", "apps", "deployments", "blog").await);
    assert!(!may(&sa, "delete", "", "secrets", "blog").await);
    assert!(may(&sa, "create", "coordination.k8s.io", "leases", "default").await);
    assert!(
        !may(
            &sa,
            "create",
            "coordination.k8s.io",
            "leases",
            "kube-system"
        )
        .await
    );

    // The pod, as a kubelet runs it; one round instead of until stopped.
    let root = tempfile::tempdir().unwrap();
    let ca = std::fs::read(server.dir.path().join("certs/apiserver.crt")).unwrap();
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let kubelet = container::Kubelet {
        secrets: BTreeMap::from([container::from_live(&secret)]),
        config_maps: BTreeMap::from([("watch-lab".to_string(), files)]),
        service_account: Some((token, ca, "127.0.0.1".into(), port)),
        binaries: vec![(common::BIN.into(), "/usr/local/bin/cloudlet".into())],
        extra_args: vec![
            "--rounds".into(),
            "1".into(),
            "--output".into(),
            "json".into(),
        ],
        ..Default::default()
    };
    let mut template = deployment["spec"]["template"].clone();
    template["metadata"]["namespace"] = "cloudlet".into();
    // Its own port: other tests' watches may hold 9464 on this machine.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = free.local_addr().unwrap().port();
    drop(free);
    let listen = format!("127.0.0.1:{metrics}");
    for a in template["spec"]["containers"][0]["args"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
    {
        if a == "0.0.0.0:9464" {
            *a = listen.clone().into();
        }
    }
    let path = root.path().to_path_buf();
    let o =
        tokio::task::spawn_blocking(move || container::run_pod_with(&path, &template, &kubelet))
            .await
            .unwrap();
    let out = common::text(&o, &[HOOK, &server.token]);
    assert!(o.status.success(), "{out}");
    let events: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        events.iter().any(|e| e["event"] == "leading"),
        "it led: {out}"
    );
    let round = events
        .iter()
        .find(|e| e["event"] == "round")
        .unwrap_or_else(|| panic!("a round: {out}"));
    let findings = round["diagnosis"]["findings"].as_array().unwrap();
    let get = |check: &str| {
        findings
            .iter()
            .find(|f| f["check"] == check)
            .unwrap_or_else(|| panic!("{check} in {findings:#?}"))
    };
    // The cluster through the service account, as applied; the local domains (files on the
    // applying machine) are not the pod's to judge.
    assert_eq!(get("cluster.reachable")["status"], "ok", "{findings:#?}");
    assert_eq!(
        get("cluster.drift")["evidence"],
        "matches the lab",
        "{findings:#?}"
    );
    for f in findings {
        let d = f["domain"].as_str().unwrap_or("");
        assert!(
            !["hypervisor", "router", "storage", "pxe"].contains(&d),
            "a local domain judged from the pod: {f}"
        );
        assert!(
            !f["evidence"].as_str().unwrap_or("").contains("forbidden"),
            "{f}"
        );
    }
    // It led through the lab's Lease, and let go when it ended.
    let lease = Api::<Lease>::namespaced(admin, "default")
        .get("cloudlet-seed-watch")
        .await
        .unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, None);
}
