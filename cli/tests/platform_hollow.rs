//! The seed with its platform, applied by `cloudlet apply` to empty machines in one run, on the
//! hollow cluster tier: cloudlet makes the cluster with real kubeadm, then fetches the
//! platform's releases (STAND-INS in upstream's shape, from a local mirror), applies them in
//! waves and waits for each to be ready before the lab's objects that need it. Nothing fakes
//! a rollout here: the cluster's own controller manager and scheduler place the Deployments'
//! and DaemonSets' pods on the hollow nodes, whose hollow kubelets (kubemark) run them and
//! report them ready. The admission webhooks the releases register are answered by an
//! allowing webhook on the segment (no pod can serve one on a hollow node).
#![allow(missing_docs, clippy::disallowed_methods)]

use std::net::Ipv4Addr;
use std::process::Output;

use cloudlet_testkit::hollow::HollowLab;
use cloudlet_testkit::platform::{self as standin, FileServer, Files};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

mod common;
use common::client;

/// Runs the CLI (from the segment's namespace) with the vault key and the release cache of
/// the test in its environment.
async fn cloudlet(key: &str, cache: &str, args: &[&str]) -> Output {
    common::cloudlet_async(
        &[("CLOUDLET_VAULT_KEY", key), ("CLOUDLET_CACHE_DIR", cache)],
        args,
    )
    .await
}

fn text(o: &Output) -> String {
    common::text(o, &[])
}

/// Each platform workload as `kind namespace/name: ready/desired`, and the nodes its pods run on.
async fn workloads(client: &kube::Client) -> (Vec<(String, i32, i32)>, Vec<(String, String)>) {
    let lp = ListParams::default().labels("cloudlet.dev/component");
    let mut out = Vec::new();
    for d in Api::<Deployment>::all(client.clone())
        .list(&lp)
        .await
        .unwrap()
        .items
    {
        let s = d.status.unwrap_or_default();
        out.push((
            format!(
                "deployment {}/{}",
                d.metadata.namespace.unwrap_or_default(),
                d.metadata.name.unwrap_or_default()
            ),
            s.ready_replicas.unwrap_or(0),
            d.spec.replicas.unwrap_or(1),
        ));
    }
    for d in Api::<DaemonSet>::all(client.clone())
        .list(&lp)
        .await
        .unwrap()
        .items
    {
        let s = d.status.unwrap_or_default();
        out.push((
            format!(
                "daemonset {}/{}",
                d.metadata.namespace.unwrap_or_default(),
                d.metadata.name.unwrap_or_default()
            ),
            s.number_ready,
            s.desired_number_scheduled,
        ));
    }
    out.sort();
    let mut pods: Vec<(String, String)> = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .namespace
                .as_deref()
                .is_some_and(|n| n != "kube-system" && n != "default")
        })
        .map(|p| {
            (
                p.metadata.name.unwrap_or_default(),
                p.spec.and_then(|s| s.node_name).unwrap_or_default(),
            )
        })
        .collect();
    pods.sort();
    (out, pods)
}

#[test]
fn the_seed_and_its_platform_apply_to_empty_machines_in_one_run_and_every_component_runs_on_the_nodes()
 {
    let nodes = [
        ("k8s-master", Ipv4Addr::new(10, 0, 20, 10)),
        ("k8s-node1", Ipv4Addr::new(10, 0, 20, 11)),
        ("k8s-node2", Ipv4Addr::new(10, 0, 20, 12)),
    ];
    let hollow = HollowLab::start(&nodes, Ipv4Addr::new(10, 0, 20, 250), 24);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lab");
    std::fs::create_dir_all(dir.join("hook")).unwrap();

    // The mirror and the webhook live on the segment: the CLI fetches from the one, the API
    // server (on the control plane node) calls the other.
    let (mirror, webhook, files) = hollow.block_on({
        let (hook_dir, admin) = (dir.join("hook"), hollow.admin());
        async move {
            let mirror = FileServer::start().await;
            let (webhook, hook) = standin::allowing_webhook_on(&hook_dir, admin.into()).await;
            (mirror, webhook, Files::new(&hook))
        }
    });
    files.serve(&mirror, &dir);
    let platform = standin::platform_block(&format!("{}/mirror", mirror.url), &files, "v9.1.0", "")
        // The speakers on every node (no node carries the seed's `role: infra` here).
        .replace(
            "node_selector: {role: infra}",
            "node_selector: {kubernetes.io/os: linux}",
        );
    standin::write_seed_lab_on(
        &dir,
        &format!(
            "{{kind: kubeadm, credentials: {{file: {}}}, ignore_preflight_errors: all}}",
            hollow.key.display()
        ),
        "  kubernetes: {version: v1.36.3}\n",
        &platform,
    );
    hollow.report_installs(&dir.join(".cloudlet"));
    let lab = dir.display().to_string();
    let cache = work.path().join("cache").display().to_string();

    let key = common::vault_key();

    let (apply, status, kubeconfig) = hollow.block_on({
        let (key, lab, cache) = (key.clone(), lab.clone(), cache.clone());
        async move {
            let apply = cloudlet(&key, &cache, &["apply", &lab, "--yes"]).await;
            let status = cloudlet(&key, &cache, &["status", &lab]).await;
            let kubeconfig = cloudlet(&key, &cache, &["kubeconfig", &lab]).await;
            (apply, status, kubeconfig)
        }
    });
    let apply_text = text(&apply);
    assert!(
        apply.status.success(),
        "{apply_text}\n{}",
        hollow.tail("k8s-master", 20)
    );
    // Each release was fetched once, from the mirror.
    assert_eq!(mirror.hits().len(), 5, "{:?}", mirror.hits());
    drop(webhook);

    let kc = String::from_utf8(kubeconfig.stdout).unwrap();
    let (workloads, pods) = hollow.block_on(async move { workloads(&client(&kc).await).await });
    let names: Vec<&str> = workloads.iter().map(|(n, _, _)| n.as_str()).collect();
    for want in [
        "daemonset kube-system/calico-node",
        "daemonset lb-system/speaker",
        "daemonset kube-system/csi-nfs-node",
        "deployment lb-system/controller",
        "deployment cert-manager/cert-manager-webhook",
        "deployment kube-system/csi-nfs-controller",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    for (name, ready, desired) in &workloads {
        assert!(*desired > 0, "{name} wants no pods");
        assert_eq!(ready, desired, "{name}: {ready}/{desired} ready");
    }
    // The speakers run on all three nodes; every platform pod is on a hollow node.
    let hollow_nodes: Vec<&str> = nodes.iter().map(|(n, _)| *n).collect();
    let speakers = pods
        .iter()
        .filter(|(p, _)| p.starts_with("speaker-"))
        .count();
    assert_eq!(speakers, 3, "{pods:?}");
    for (pod, node) in &pods {
        if names
            .iter()
            .any(|n| pod.starts_with(n.rsplit('/').next().unwrap()))
        {
            assert!(
                hollow_nodes.contains(&node.as_str()),
                "{pod} is on `{node}`"
            );
        }
    }

    // `cloudlet status` reports each component at its release, healthy.
    let status_text = text(&status);
    assert!(status.status.success(), "{status_text}");
    for (component, version) in [
        ("calico", "v9.0.0"),
        ("metallb", "v9.1.0"),
        ("traefik", "v9.3.0"),
        ("csi_driver_nfs", "v9.4.0"),
        ("cert_manager", "v9.5.0"),
    ] {
        let line = format!("  ok {component} {version} — ");
        assert!(
            status_text.contains(&line),
            "`{line}` not in:\n{status_text}"
        );
    }
}
