//! A cluster cloudlet did not make (`targets.cluster.kind: kubernetes`: a real kube-apiserver
//! with its etcd): `backup.cluster` takes its objects through its API into the lab's
//! repository (stock restic lists them); the cluster is lost (API server and etcd stopped,
//! their data gone) and a new, empty one takes its place; `cloudlet restore` puts the objects
//! back — a CRD before its objects, a webhook that would refuse the others after them, a
//! Service with a new cluster address, a Job with a selector of its own — and leaves out
//! what a controller owned.
#![allow(missing_docs, clippy::disallowed_methods)]

use cloudlet_testkit::apiserver as support;

use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;

mod common;

const KEY: &str = "objects-restore-key";

fn cloudlet(args: &[&str]) -> Output {
    common::cloudlet(&[("CLOUDLET_BACKUP_KEY", KEY)], args)
}

fn text(o: &Output) -> String {
    common::text(o, &[KEY])
}

fn lab_dir(server: &support::ApiServer, work: &Path) -> tempfile::TempDir {
    let nas = work.join("nas");
    let dir = cloudlet_testkit::seed::seed_dir(move |name, mut text| {
        if name == "lab.yaml" {
            text = text.replace(
                "  cluster: {kind: local}",
                "  cluster: {kind: kubernetes, credentials: {file: kubeconfig}}",
            );
        }
        if name == "cluster.yaml" {
            text = text.replace("{env: WIREGUARD_PRIVATE_KEY}", "{env: PATH}");
            text.push_str("  manifests: [manifests]\n  platform: {metallb: {external: true}, traefik: {external: true}}\n");
            text.push_str(&format!(
                "backup:\n  key: {{env: CLOUDLET_BACKUP_KEY}}\n  targets:\n    nas: {{dir: {}}}\n  cluster: {{target: nas, every: 1h}}\n",
                nas.display()
            ));
        }
        text
    });
    std::fs::copy(&server.kubeconfig, dir.path().join("kubeconfig")).unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/postmaster-password"), "pw").unwrap();
    cloudlet_testkit::seed::metallb_crds(dir.path());
    dir
}

fn gadgets() -> ApiResource {
    ApiResource {
        group: "example.org".into(),
        version: "v1".into(),
        api_version: "example.org/v1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    }
}

/// What the cluster holds besides the lab: a CRD and one of its objects, a namespace with a
/// ConfigMap, a Secret, a Service, a headless Service and a Job, a ConfigMap a controller
/// owns, and a webhook that refuses every ConfigMap made in the namespace.
async fn foreign_objects(client: &kube::Client) {
    let create = |v: serde_json::Value| {
        let client = client.clone();
        async move {
            let api_version = v["apiVersion"].as_str().unwrap().to_string();
            let kind = v["kind"].as_str().unwrap().to_string();
            let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
            let plural = match kind.as_str() {
                "CustomResourceDefinition" => "customresourcedefinitions".to_string(),
                "ValidatingWebhookConfiguration" => "validatingwebhookconfigurations".to_string(),
                k => format!("{}s", k.to_lowercase()),
            };
            let ar = ApiResource {
                group: group.into(),
                version: version.into(),
                api_version: api_version.clone(),
                kind,
                plural,
            };
            let obj: DynamicObject = serde_json::from_value(v.clone()).unwrap();
            let api: Api<DynamicObject> = match v["metadata"]["namespace"].as_str() {
                Some(ns) => Api::namespaced_with(client, ns, &ar),
                None => Api::all_with(client, &ar),
            };
            api.create(&PostParams::default(), &obj)
                .await
                .unwrap_or_else(|e| panic!("{v}: {e}"));
        }
    };
    create(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.org"},
        "spec": {"group": "example.org", "scope": "Namespaced",
                 "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    }))
    .await;
    create(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    )
    .await;
    // The CRD's objects are served once it is established.
    let gadgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &gadgets());
    let g: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.org/v1", "kind": "Gadget", "metadata": {"name": "g1", "namespace": "shop"}, "spec": {"size": 3}
    }))
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Err(e) = gadgets.create(&PostParams::default(), &g).await {
        assert!(std::time::Instant::now() < deadline, "{e}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    create(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"}, "data": {"mode": "fast"}})).await;
    create(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned", "namespace": "shop",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-1", "uid": "0b5e7a36-0000-4000-8000-000000000001", "controller": true}]},
        "data": {"x": "y"}})).await;
    create(serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "shop"}, "stringData": {"token": "s3cr3t-token"}})).await;
    create(serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": 8080}]}})).await;
    create(serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}})).await;
    create(serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": "shop"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "busybox:1", "command": ["true"]}]}}}})).await;
    create(serde_json::json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "shop-guard"},
        "webhooks": [{"name": "guard.shop.example.org", "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
                      "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
                      "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
                      "clientConfig": {"service": {"namespace": "shop", "name": "guard", "path": "/validate"}}}]
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_clusters_objects_are_backed_up_and_put_into_a_new_cluster() {
    let work = tempfile::tempdir().unwrap();
    let server = support::ApiServer::start();
    let dir = lab_dir(&server, work.path());
    let l = dir.path().to_str().unwrap();
    let o = cloudlet(&["validate", l]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cloudlet(&["apply", l, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let old = server.client().await;
    foreign_objects(&old).await;
    let old_ip = Api::<Service>::namespaced(old.clone(), "shop")
        .get("api")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();

    let o = cloudlet(&["backup", "run", l]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains("s3cr3t-token"), "{t}");
    // Stock restic lists what was taken: the namespace's objects, not what a controller owns
    // nor what the cluster makes by itself.
    let ls = Command::new("restic")
        .args([
            "-r",
            work.path().join("nas").to_str().unwrap(),
            "ls",
            "latest",
            "--no-lock",
        ])
        .env("RESTIC_PASSWORD", KEY)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    for want in [
        "objects/core/configmaps/shop/settings.json",
        "objects/core/secrets/shop/creds.json",
        "objects/example.org/gadgets/shop/g1.json",
        "objects/apiextensions.k8s.io/customresourcedefinitions/_cluster/gadgets.example.org.json",
        "objects/admissionregistration.k8s.io/validatingwebhookconfigurations/_cluster/shop-guard.json",
        "objects/index.json",
    ] {
        assert!(listed.contains(want), "{want}:\n{listed}");
    }
    for not in [
        "owned.json",
        "kube-root-ca.crt",
        "/events/",
        "/leases/",
        "/endpointslices/",
    ] {
        assert!(!listed.contains(not), "{not}:\n{listed}");
    }

    // The disaster: the cluster and its etcd are gone; a new, empty one answers at a new
    // address, and cloudlet's state is lost too.
    drop(server);
    let server = support::ApiServer::start();
    std::fs::copy(&server.kubeconfig, dir.path().join("kubeconfig")).unwrap();
    std::fs::remove_dir_all(dir.path().join(".cloudlet")).unwrap();
    // This cluster has no nodes: every phase runs, and verify says the lab's workloads are not
    // ready (restore_hollow.rs restores onto nodes).
    let o = cloudlet(&["restore", l, "--from", "nas", "--wait", "2s"]);
    let t = text(&o);
    assert!(!t.contains("s3cr3t-token"), "{t}");
    let line = t
        .lines()
        .find(|l| l.starts_with("restore: cluster data done"))
        .unwrap_or_else(|| panic!("{t}"));
    let created: usize = line
        .split("done in ")
        .nth(1)
        .and_then(|r| r.split(": ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        created >= 10,
        "the namespace, its objects, the CRD and the webhook: {line}"
    );
    assert!(t.contains("restore: reconcile done"), "{t}");
    assert!(
        !o.status.success()
            && t.contains("restore: verify FAILED")
            && t.contains("not ready after 2s"),
        "{t}"
    );

    let new = server.client().await;
    let g = Api::<DynamicObject>::namespaced_with(new.clone(), "shop", &gadgets())
        .get("g1")
        .await
        .expect("the CRD's object is back");
    assert_eq!(g.data["spec"]["size"], 3);
    let cm = Api::<ConfigMap>::namespaced(new.clone(), "shop")
        .get("settings")
        .await
        .unwrap();
    assert_eq!(
        cm.data.unwrap()["mode"],
        "fast",
        "restored before the webhook that refuses it"
    );
    assert!(
        Api::<ConfigMap>::namespaced(new.clone(), "shop")
            .get_opt("owned")
            .await
            .unwrap()
            .is_none(),
        "what a controller owned is its owner's to make"
    );
    let s = Api::<Secret>::namespaced(new.clone(), "shop")
        .get("creds")
        .await
        .unwrap();
    assert_eq!(s.data.unwrap()["token"].0, b"s3cr3t-token");
    let svc = Api::<Service>::namespaced(new.clone(), "shop")
        .get("api")
        .await
        .unwrap();
    let ip = svc.spec.unwrap().cluster_ip.unwrap();
    assert!(
        !ip.is_empty() && ip != "None",
        "a cluster address of the new cluster's: {ip} (was {old_ip})"
    );
    let db = Api::<Service>::namespaced(new.clone(), "shop")
        .get("db")
        .await
        .unwrap();
    assert_eq!(db.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    let job = Api::<Job>::namespaced(new.clone(), "shop")
        .get("migrate")
        .await
        .unwrap();
    assert!(
        job.spec.unwrap().selector.is_some(),
        "the new cluster's own selector"
    );
    assert!(
        Api::<ValidatingWebhookConfiguration>::all(new.clone())
            .get_opt("shop-guard")
            .await
            .unwrap()
            .is_some()
    );
    // The webhook is back, and does what it did: a new ConfigMap in the namespace is refused.
    let refused = Api::<ConfigMap>::namespaced(new.clone(), "shop")
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "late"}})).unwrap(),
        )
        .await;
    assert!(refused.is_err());
}
