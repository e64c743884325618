//! The whole path against a real kube-apiserver: a lab whose cluster target is `kubernetes`
//! (credentials: a kubeconfig file), with a docker-compose project and plain manifests that
//! bring a CRD and an object of its kind — planned and applied by the `cloudlet` binary and
//! the library, CRD first and waited for, in one run.
#![allow(clippy::disallowed_methods)]

use cloudlet_testkit::apiserver as support;

use std::process::Command;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;

mod common;

fn lab_dir(server: &support::ApiServer) -> tempfile::TempDir {
    let dir = cloudlet_testkit::seed::seed_dir(|name, mut text| {
        if name == "lab.yaml" {
            text = text.replace(
                "  cluster: {kind: local}",
                "  cluster: {kind: kubernetes, credentials: {file: kubeconfig}}",
            );
        }
        if name == "cluster.yaml" {
            // The seed's env-referenced secret reads a variable every process has.
            text = text.replace("{env: WIREGUARD_PRIVATE_KEY}", "{env: PATH}");
            text.push_str(
                "  compose:\n    notes: {file: compose/notes.yml, export: blog, domain: example.com}\n  manifests: [manifests]\n  # MetalLB's CRDs come with the manifests here; the platform's own install is tested in tests/platform.rs.\n  platform: {metallb: {external: true}, traefik: {external: true}}\n",
            );
        }
        text
    });
    std::fs::copy(&server.kubeconfig, dir.path().join("kubeconfig")).unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/postmaster-password"), "pw").unwrap();
    std::fs::create_dir_all(dir.path().join("compose")).unwrap();
    std::fs::write(
        dir.path().join("compose/notes.yml"),
        "services:\n  notes:\n    image: ghcr.io/example/notes:1\n    ports: [\"8088:8080\"]\n    restart: always\n    volumes: [\"notes-data:/data\"]\nvolumes:\n  notes-data: {}\n",
    )
    .unwrap();
    cloudlet_testkit::seed::metallb_crds(dir.path());
    std::fs::write(
        dir.path().join("manifests/widgets.yaml"),
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, properties: {size: {type: integer}}}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: big, namespace: blog}
spec: {size: 3}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: extra, namespace: blog}
data: {key: value}
"#,
    )
    .unwrap();
    dir
}

fn cloudlet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudlet"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_applies_the_seed_compose_and_manifests_with_crds_first() {
    let server = support::ApiServer::start();
    let dir = lab_dir(&server);
    let lab = dir.path().to_str().unwrap();

    let (code, out, err) = cloudlet(&["validate", lab]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("`restart` of service `notes`"),
        "compose notes shown: {out}{err}"
    );

    let (code, out, err) = cloudlet(&["apply", lab, "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Apply complete"), "{out}{err}");

    // The custom resource exists, made in the same run as its CRD.
    let client = server.client().await;
    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let w = Api::<DynamicObject>::namespaced_with(client.clone(), "blog", &ar)
        .get("big")
        .await
        .unwrap();
    assert_eq!(w.data["spec"]["size"], 3);
    let cm: ConfigMap = Api::namespaced(client.clone(), "blog")
        .get("extra")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["key"], "value");
    // The compose service is an app of the lab.
    let _: k8s_openapi::api::apps::v1::Deployment = Api::namespaced(client.clone(), "notes")
        .get("notes")
        .await
        .unwrap();

    let (code, out, err) = cloudlet(&["plan", lab, "--detailed-exitcode"]);
    assert_eq!(code, 0, "a second plan is empty: {out}{err}");
    assert!(out.contains("No changes"), "{out}");

    // No controllers run on the test server: everything is still progressing, and waiting
    // a second turns that into a failure report with exit code 1.
    let (code, out, err) = cloudlet(&["status", lab]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(".. cluster/deployment/notes.notes"), "{out}");
    assert!(out.contains("0 ready,"), "{out}");
    let (code, out, err) = cloudlet(&["status", lab, "--wait", "1s"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("!! cluster/deployment/blog.blog — not ready after 1s"),
        "{out}"
    );

    // The ApplySet parent lists the namespaces of its members; after the compose project
    // leaves the lab (one CLI apply: plan and apply share the provider), it no longer does.
    let parent_namespaces = || async {
        let s: k8s_openapi::api::core::v1::Secret = Api::namespaced(client.clone(), "default")
            .get("cloudlet-seed")
            .await
            .unwrap();
        s.metadata
            .annotations
            .unwrap_or_default()
            .get("applyset.kubernetes.io/additional-namespaces")
            .cloned()
            .unwrap_or_default()
    };
    assert!(parent_namespaces().await.split(',').any(|n| n == "notes"));
    let cluster_yaml = dir.path().join("cluster.yaml");
    let text = std::fs::read_to_string(&cluster_yaml).unwrap();
    let without = text.replace(
        "  compose:\n    notes: {file: compose/notes.yml, export: blog, domain: example.com}\n",
        "",
    );
    assert_ne!(text, without);
    std::fs::write(&cluster_yaml, &without).unwrap();
    let (code, out, err) = cloudlet(&["apply", lab, "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    let after = parent_namespaces().await;
    assert!(
        !after.split(',').any(|n| n == "notes"),
        "the parent still lists `notes`: {after}"
    );

    // The teardown against the API server: everything the lab made goes, cluster objects
    // first; a namespace holding an object cloudlet did not make stays, with that object.
    let foreign: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "by-hand", "namespace": "wireguard"},
        "data": {"k": "v"},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "wireguard")
        .create(&Default::default(), &foreign)
        .await
        .unwrap();
    let (code, out, err) = cloudlet(&["list", lab, "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let in_cluster = |v: &serde_json::Value| {
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["backend"] == "kubernetes")
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        in_cluster(&listed).contains(&"cluster/deployment/blog.blog".to_string()),
        "{out}"
    );
    let (code, out, err) = cloudlet(&["destroy", lab, "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Apply complete: 0 created, 0 updated,") && out.contains("0 failed"),
        "{out}{err}"
    );
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "blog");
    assert!(deployments.get_opt("blog").await.unwrap().is_none());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "blog");
    assert!(cms.get_opt("extra").await.unwrap().is_none());
    // The custom resource went before its CRD; with the CRD gone its API answers 404 itself.
    let widgets = Api::<DynamicObject>::namespaced_with(client.clone(), "blog", &ar);
    let big = widgets.get_opt("big").await;
    assert!(
        match &big {
            Ok(found) => found.is_none(),
            Err(kube::Error::Api(s)) => s.code == 404,
            Err(_) => false,
        },
        "{big:?}"
    );
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let crd = crds.get_opt("widgets.example.com").await.unwrap();
    assert!(
        crd.is_none_or(|c| c.metadata.deletion_timestamp.is_some()),
        "the CRD stays"
    );
    // The hand-made object and its namespace are untouched.
    let kept: ConfigMap = Api::namespaced(client.clone(), "wireguard")
        .get("by-hand")
        .await
        .unwrap();
    assert_eq!(kept.data.unwrap()["k"], "v");
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let wg = ns.get("wireguard").await.unwrap();
    assert!(wg.metadata.deletion_timestamp.is_none());
    let (code, out, err) = cloudlet(&["list", lab, "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let left = in_cluster(&serde_json::from_str(&out).unwrap());
    assert!(
        left.iter().all(|id| id.starts_with("cluster/namespace/")),
        "only namespaces may be left (terminating, or holding objects cloudlet did not make): {left:?}"
    );
}

#[test]
fn a_broken_manifest_is_reported_with_its_position_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lab.yaml"),
        "name: t\nsite: {domain: t.lan, timezone: UTC}\ncluster:\n  control_plane: []\n  manifests: [m.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
    )
    .unwrap();
    let (code, out, err) = cloudlet(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(all.contains("m.yaml:1:1"), "{all}");
    assert!(all.contains("`metadata.name`"), "{all}");
}

#[test]
fn an_error_in_a_compose_app_points_at_its_compose_reference() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lab.yaml"),
        "name: t\nsite: {domain: t.lan, timezone: UTC}\ncluster:\n  control_plane: []\n  ingress: {class: traefik, ip: 10.0.20.200, tls: {hosts: [\"*.example.com\"], secret: s}}\n  compose:\n    web: {file: web.yml, export: apps}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("web.yml"),
        "services:\n  web:\n    image: nginx:1\n    ports: [\"8080:80\"]\n",
    )
    .unwrap();
    let (code, out, err) = cloudlet(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let all = format!("{out}{err}");
    let at = all.find("error[tls-uncovered]").expect(&all);
    let block = &all[at..];
    assert!(
        block.contains("(app `web` of compose project `web`)"),
        "{block}"
    );
    assert!(block.contains("lab.yaml:7:5"), "{block}");
}
