//! The platform against a real kube-apiserver: every component's release (STAND-INS in
//! upstream's shape, written by testkit) served from a local HTTP mirror or the lab's own
//! files, fetched once into the cache, checked by SHA-256, adapted (namespace, registry, node
//! selection, the lab's pools and issuer) and applied by the facade with the seed's apps, the
//! server validating every object (CRDs, webhook configurations). No controller manager runs:
//! FAKE ROLLOUTS write the status a rollout would reach, and an allowing webhook answers for
//! MetalLB and cert-manager where the test wants them answered.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

use cloudlet::{ApplyOptions, Lab, Options};
use cloudlet_testkit::apiserver::ApiServer;
use cloudlet_testkit::platform::{
    self as standin, FileServer, Files, Webhook, platform_block, write_seed_lab as write_lab,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;

fn load(dir: &Path, state: &Path, cache: &Path) -> Lab {
    let lab = Lab::load(dir).unwrap().with_options(Options {
        state_dir: Some(state.to_path_buf()),
        cache_dir: Some(cache.to_path_buf()),
        ..Default::default()
    });
    let report = lab.validate();
    assert!(!report.has_errors(), "{:?}", report.diagnostics);
    lab
}

/// What an apply that must fail reported, one line per failed step.
async fn failure(lab: &Lab, plan: &cloudlet::Plan) -> String {
    let applied = lab.apply(plan, ApplyOptions::default()).await.unwrap();
    assert!(!applied.report.failed.is_empty(), "the apply succeeded");
    applied
        .report
        .failed
        .iter()
        .map(|(id, e)| format!("{id}: {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn dynamic(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// One test's peers: an API server, a work directory (lab, state, cache), the stand-in
/// releases (their webhooks answered by an allowing webhook, or behind their Services where
/// nothing answers, as upstream ships them) and the mirror serving them.
struct Setup {
    server: ApiServer,
    client: kube::Client,
    work: tempfile::TempDir,
    dir: std::path::PathBuf,
    state: std::path::PathBuf,
    cache: std::path::PathBuf,
    files: Files,
    mirror: FileServer,
    mirror_url: String,
    _webhook: Option<cloudlet_testkit::https::Server>,
}

async fn setup(answering: bool) -> Setup {
    let server = ApiServer::start();
    let client = server.client().await;
    let work = tempfile::tempdir().unwrap();
    let (dir, state, cache) = (
        work.path().join("lab"),
        work.path().join("state"),
        work.path().join("cache"),
    );
    std::fs::create_dir_all(&dir).unwrap();
    let (webhook, hook) = if answering {
        std::fs::create_dir_all(work.path().join("webhook")).unwrap();
        let (w, h) = standin::allowing_webhook(&work.path().join("webhook")).await;
        (Some(w), h)
    } else {
        (None, Webhook::Service)
    };
    let files = Files::new(&hook);
    let mirror = FileServer::start().await;
    files.serve(&mirror, &dir);
    let mirror_url = format!("{}/mirror", mirror.url);
    Setup {
        server,
        client,
        work,
        dir,
        state,
        cache,
        files,
        mirror,
        mirror_url,
        _webhook: webhook,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_is_fetched_once_checked_adapted_and_applied_with_the_seed_in_one_run() {
    let Setup {
        work: _work,
        server,
        client,
        dir,
        state,
        cache,
        files,
        mirror,
        mirror_url,
        _webhook: _answering,
    } = setup(true).await;
    let _rollouts = standin::fake_rollouts(client.clone(), "cloudlet.dev/component", Vec::new());
    write_lab(
        &dir,
        &server,
        &platform_block(&mirror_url, &files, "v9.1.0", ""),
    );

    let lab = load(&dir, &state, &cache);
    let plan = lab.plan().await.unwrap();
    assert_eq!(plan.summary.update + plan.summary.delete, 0);
    // Each mirrored file was fetched once; the lab's own files were read from disk.
    let mut hits = mirror.hits();
    hits.sort();
    assert_eq!(
        hits,
        vec![
            "/mirror/calico/v9.0.0/calico.yaml",
            "/mirror/cert_manager/v9.5.0/cert-manager.yaml",
            "/mirror/metallb/v9.1.0/metallb-native.yaml",
            "/mirror/traefik/v9.3.0/kubernetes-crd-definition-v1.yml",
            "/mirror/traefik/v9.3.0/kubernetes-crd-rbac.yml",
        ]
    );
    lab.apply(&plan, ApplyOptions::default()).await.unwrap();

    // MetalLB moved to the lab's namespace with every reference, its images through the
    // registry mirror, on the lab's nodes; the lab's pool beside it, after its webhook.
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.get("lb-system").await.unwrap();
    assert!(ns.get_opt("metallb-system").await.unwrap().is_none());
    let controller: Deployment = Api::namespaced(client.clone(), "lb-system")
        .get("controller")
        .await
        .unwrap();
    let pod = controller.spec.template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("reg.lan:5000/metallb/controller:v9.1.0")
    );
    assert_eq!(pod.node_selector.unwrap()["role"], "infra");
    let crb: ClusterRoleBinding = Api::all(client.clone())
        .get("metallb-system:controller")
        .await
        .unwrap();
    assert_eq!(
        crb.subjects.unwrap()[0].namespace.as_deref(),
        Some("lb-system")
    );
    let pools = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "lb-system",
        &dynamic("metallb.io", "v1beta1", "IPAddressPool", "ipaddresspools"),
    );
    let pool = pools.get("default").await.unwrap();
    assert_eq!(pool.data["spec"]["addresses"][0], "10.0.20.200-10.0.20.220");
    let hooks = Api::<DynamicObject>::all_with(
        client.clone(),
        &dynamic(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
    );
    hooks.get("metallb-webhook-configuration").await.unwrap();

    // Traefik: upstream's CRDs and RBAC (bound in its namespace now), cloudlet's Deployment
    // and IngressClass; the lab's LoadBalancer Service sends 80/443 to its entry points.
    let traefik: Deployment = Api::namespaced(client.clone(), "traefik")
        .get("traefik")
        .await
        .unwrap();
    let c = &traefik.spec.template.spec.unwrap().containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("reg.lan:5000/library/traefik:v9.3.0")
    );
    assert!(
        c.args
            .as_ref()
            .unwrap()
            .iter()
            .any(|a| a == "--providers.kubernetesingress.ingressEndpoint.ip=10.0.20.200")
    );
    let crb: ClusterRoleBinding = Api::all(client.clone())
        .get("traefik-ingress-controller")
        .await
        .unwrap();
    assert_eq!(
        crb.subjects.unwrap()[0].namespace.as_deref(),
        Some("traefik")
    );
    let svc: k8s_openapi::api::core::v1::Service = Api::namespaced(client.clone(), "traefik")
        .get("traefik")
        .await
        .unwrap();
    let targets: Vec<String> = svc
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| format!("{:?}", p.target_port))
        .collect();
    assert_eq!(targets, vec!["Some(Int(8000))", "Some(Int(8443))"]);
    let classes = Api::<DynamicObject>::all_with(
        client.clone(),
        &dynamic("networking.k8s.io", "v1", "IngressClass", "ingressclasses"),
    );
    assert_eq!(
        classes.get("traefik").await.unwrap().data["spec"]["controller"],
        "traefik.io/ingress-controller"
    );

    // csi-driver-nfs from the lab's files; Calico's DaemonSet; cert-manager's ClusterIssuer
    // for the wildcard through DNS-01, its token a Secret.
    Api::<DynamicObject>::all_with(
        client.clone(),
        &dynamic("storage.k8s.io", "v1", "CSIDriver", "csidrivers"),
    )
    .get("nfs.csi.k8s.io")
    .await
    .unwrap();
    let calico: DaemonSet = Api::namespaced(client.clone(), "kube-system")
        .get("calico-node")
        .await
        .unwrap();
    assert_eq!(
        calico.spec.template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("reg.lan:5000/calico/node:v9.0.0")
    );
    let issuer = Api::<DynamicObject>::all_with(
        client.clone(),
        &dynamic("cert-manager.io", "v1", "ClusterIssuer", "clusterissuers"),
    )
    .get("letsencrypt")
    .await
    .unwrap();
    assert_eq!(
        issuer.data["spec"]["acme"]["solvers"][0]["dns01"]["cloudflare"]["apiTokenSecretRef"]["name"],
        "cloudflare-api-token"
    );
    let token: k8s_openapi::api::core::v1::Secret = Api::namespaced(client.clone(), "cert-manager")
        .get("cloudflare-api-token")
        .await
        .unwrap();
    assert!(token.data.unwrap().contains_key("api-token"));

    // Every object carries the component and the ApplySet label.
    for (ns, name) in [
        ("lb-system", "controller"),
        ("traefik", "traefik"),
        ("kube-system", "csi-nfs-controller"),
        ("cert-manager", "cert-manager-webhook"),
    ] {
        let d: Deployment = Api::namespaced(client.clone(), ns).get(name).await.unwrap();
        let labels = d.metadata.labels.unwrap();
        assert!(labels.contains_key("cloudlet.dev/component"), "{ns}/{name}");
        assert_eq!(
            labels["applyset.kubernetes.io/part-of"],
            cloudlet::cluster::applyset_id("cloudlet-seed", "default", "Secret", "")
        );
    }

    // Status: each component at its release, ready (the fake rollouts); the VIP MetalLB
    // announces and from which node (what its controller and speaker would write).
    let status = lab.platform_status().await.unwrap();
    let comps: Vec<String> = status
        .components
        .iter()
        .map(|c| {
            format!(
                "{} {} {:?}",
                c.key,
                c.version.as_deref().unwrap_or("-"),
                c.state
            )
        })
        .collect();
    assert_eq!(
        comps,
        vec![
            "calico v9.0.0 Ready",
            "cert_manager v9.5.0 Ready",
            "csi_driver_nfs v9.4.0 Ready",
            "metallb v9.1.0 Ready",
            "traefik v9.3.0 Ready"
        ]
    );
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "traefik");
    let lb = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.20.200", "ipMode": "VIP"}]}}});
    svcs.patch_status(
        "traefik",
        &Default::default(),
        &kube::api::Patch::Merge(&lb),
    )
    .await
    .unwrap();
    let l2 = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "lb-system",
        &dynamic(
            "metallb.io",
            "v1beta1",
            "ServiceL2Status",
            "servicel2statuses",
        ),
    );
    let obj: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "ServiceL2Status",
        "metadata": {"name": "l2-x7k2p", "namespace": "lb-system"}
    }))
    .unwrap();
    l2.create(&Default::default(), &obj).await.unwrap();
    let st = serde_json::json!({"status": {"node": "k8s-node1", "serviceName": "traefik", "serviceNamespace": "traefik", "interfaces": [{"name": "ens18"}]}});
    l2.patch_status(
        "l2-x7k2p",
        &Default::default(),
        &kube::api::Patch::Merge(&st),
    )
    .await
    .unwrap();
    let status = lab.platform_status().await.unwrap();
    assert_eq!(status.announcements.len(), 1, "{status:?}");
    let a = &status.announcements[0];
    assert_eq!(
        (a.ip.as_str(), a.service.as_str(), a.node.as_str()),
        ("10.0.20.200", "traefik/traefik", "k8s-node1")
    );

    // A second run, a new process's worth of state but the same cache: no download, no change.
    let again = load(&dir, &state, &cache);
    let plan = again.plan().await.unwrap();
    assert_eq!(mirror.hits().len(), 5, "the cache serves the second run");
    assert!(
        plan.steps.is_empty(),
        "{:?}",
        plan.steps
            .iter()
            .map(|s| s.id.to_string())
            .collect::<Vec<_>>()
    );

    // An upgrade of MetalLB changes MetalLB's objects only: its two images, and the release
    // its CRDs say they came from.
    write_lab(
        &dir,
        &server,
        &platform_block(&mirror_url, &files, "v9.2.0", ""),
    );
    let up = load(&dir, &state, &cache);
    let plan = up.plan().await.unwrap();
    let changed: Vec<String> = plan.steps.iter().map(|s| s.id.to_string()).collect();
    assert_eq!(
        changed,
        vec![
            "cluster/customresourcedefinition/ipaddresspools.metallb.io",
            "cluster/customresourcedefinition/l2advertisements.metallb.io",
            "cluster/customresourcedefinition/servicel2statuses.metallb.io",
            "cluster/daemonset/lb-system.speaker",
            "cluster/deployment/lb-system.controller",
        ],
        "{changed:?}"
    );
    up.apply(&plan, ApplyOptions::default()).await.unwrap();
    let controller: Deployment = Api::namespaced(client.clone(), "lb-system")
        .get("controller")
        .await
        .unwrap();
    assert_eq!(
        controller.spec.template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("reg.lan:5000/metallb/controller:v9.2.0")
    );

    // Back to the older release would move the CRDs' storage version back: refused unless
    // the lab allows it.
    write_lab(
        &dir,
        &server,
        &platform_block(&mirror_url, &files, "v9.1.0", ""),
    );
    let down = load(&dir, &state, &cache);
    let err = down.plan().await.unwrap_err();
    assert!(matches!(err, cloudlet::Error::Downgrade(_)), "{err}");
    let msg = err.message();
    assert!(msg.contains("metallb v9.2.0 → v9.1.0 moves CRD ipaddresspools.metallb.io from storage version v1beta2 back to v1beta1"), "{msg}");
    assert!(msg.contains("allow_downgrade: true"), "{msg}");
    let allowed = platform_block(&mirror_url, &files, "v9.1.0", "").replace(
        "metallb: {version: v9.1.0,",
        "metallb: {version: v9.1.0, allow_downgrade: true,",
    );
    write_lab(&dir, &server, &allowed);
    let plan = load(&dir, &state, &cache).plan().await.unwrap();
    assert!(
        plan.steps
            .iter()
            .any(|s| s.id.to_string()
                == "cluster/customresourcedefinition/ipaddresspools.metallb.io")
    );
    write_lab(
        &dir,
        &server,
        &platform_block(&mirror_url, &files, "v9.2.0", ""),
    );

    // Switching csi-driver-nfs off prunes exactly its objects.
    let text = std::fs::read_to_string(dir.join("cluster.yaml")).unwrap();
    std::fs::write(
        dir.join("cluster.yaml"),
        text.replace(
            "csi_driver_nfs: {enabled: true,",
            "csi_driver_nfs: {enabled: false,",
        ),
    )
    .unwrap();
    let off = load(&dir, &state, &cache);
    let plan = off.plan().await.unwrap();
    let mut deleted: Vec<String> = plan
        .steps
        .iter()
        .map(|s| format!("{:?} {}", s.action, s.id))
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            "Delete cluster/clusterrole/nfs-external-provisioner-role",
            "Delete cluster/clusterrolebinding/nfs-csi-provisioner-binding",
            "Delete cluster/csidriver/nfs.csi.k8s.io",
            "Delete cluster/daemonset/kube-system.csi-nfs-node",
            "Delete cluster/deployment/kube-system.csi-nfs-controller",
            "Delete cluster/serviceaccount/kube-system.csi-nfs-controller-sa",
            "Delete cluster/serviceaccount/kube-system.csi-nfs-node-sa",
        ]
    );
    off.apply(&plan, ApplyOptions::default()).await.unwrap();
    let gone = Api::<DynamicObject>::all_with(
        client.clone(),
        &dynamic("storage.k8s.io", "v1", "CSIDriver", "csidrivers"),
    )
    .get_opt("nfs.csi.k8s.io")
    .await
    .unwrap();
    assert!(gone.is_none());
    assert!(off.plan().await.unwrap().steps.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_whose_checksum_differs_is_refused_before_anything_is_applied() {
    let Setup {
        work: _work,
        server,
        client,
        dir,
        state,
        cache,
        files,
        mirror,
        mirror_url,
        ..
    } = setup(false).await;
    write_lab(
        &dir,
        &server,
        &platform_block(&mirror_url, &files, "v9.1.0", ""),
    );
    // The mirror's copy of MetalLB is not what the lab pinned.
    mirror.put(
        "/mirror/metallb/v9.1.0/metallb-native.yaml",
        files.metallb.replace("v9.1.0", "v6.6.6"),
    );
    let lab = load(&dir, &state, &cache);
    let err = lab.plan().await.unwrap_err();
    let msg = err.message();
    assert!(matches!(err, cloudlet::Error::Release(_)), "{msg}");
    assert!(
        msg.contains("/mirror/metallb/v9.1.0/metallb-native.yaml"),
        "{msg}"
    );
    assert!(
        msg.contains(&standin::sha256(files.metallb.as_bytes())),
        "{msg}"
    );
    assert!(msg.contains("refused"), "{msg}");
    // Nothing reached the server, and nothing bad reached the cache.
    let nss: Api<Namespace> = Api::all(client.clone());
    assert!(nss.get_opt("lb-system").await.unwrap().is_none());
    let cached = std::fs::read_dir(cache.join("sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        cached <= 4,
        "only the files checked before the bad one are cached: {cached}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_never_answers_and_a_pod_that_cannot_pull_are_named_within_the_window() {
    // Upstream's shape: MetalLB's webhook behind its Service, where no pod answers.
    let Setup {
        server,
        client,
        work,
        dir,
        state,
        cache,
        files,
        mirror,
        mirror_url,
        ..
    } = setup(false).await;
    let _rollouts = standin::fake_rollouts(client.clone(), "cloudlet.dev/component", Vec::new());
    let block = platform_block(&mirror_url, &files, "v9.1.0", "")
        .replace(
            "node_selector: {role: infra},",
            "node_selector: {role: infra}, ready_within: 3s,",
        )
        .replace(
            "    cert_manager:\n",
            "    cert_manager:\n      enabled: true\n",
        )
        .replace(
            "      acme: {email: admin@example.com, cloudflare: {env: PATH}}\n",
            "",
        );
    write_lab(
        &dir,
        &server,
        &block.replace("cluster_issuer: letsencrypt", "secret: tls-secret"),
    );
    let text = std::fs::read_to_string(dir.join("cluster.yaml")).unwrap();
    std::fs::write(
        dir.join("cluster.yaml"),
        text.replace("cluster_issuer: letsencrypt", "secret: tls-secret"),
    )
    .unwrap();
    let lab = load(&dir, &state, &cache);
    let plan = lab.plan().await.unwrap();
    let err = failure(&lab, &plan).await;
    assert!(
        err.contains("cluster/ipaddresspool/lb-system.default"),
        "{err}"
    );
    assert!(err.contains("did not answer within 3s"), "{err}");
    assert!(
        err.contains("ipaddresspoolvalidationwebhook.metallb.io"),
        "{err}"
    );
    assert!(
        err.contains("no pods match app=metallb,component=controller in lb-system"),
        "{err}"
    );

    // Traefik's pods cannot pull their image: the status a kubelet would write says so, and
    // the error names the pod and the reason.
    let server2 = ApiServer::start();
    let client2 = server2.client().await;
    let dir2 = work.path().join("lab2");
    std::fs::create_dir_all(&dir2).unwrap();
    std::fs::create_dir_all(work.path().join("webhook")).unwrap();
    let (_webhook, hook) = standin::allowing_webhook(&work.path().join("webhook")).await;
    let files = Files::new(&hook);
    files.serve(&mirror, &dir2);
    let _rollouts2 = standin::fake_rollouts(
        client2.clone(),
        "cloudlet.dev/component",
        vec!["traefik".into()],
    );
    let block = platform_block(&mirror_url, &files, "v9.1.0", "").replace(
        "traefik: {version: v9.3.0,",
        "traefik: {version: v9.3.0, ready_within: 4s,",
    );
    write_lab(&dir2, &server2, &block);
    let stuck = tokio::spawn({
        let client = client2.clone();
        async move {
            use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
            let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "traefik");
            while sas
                .get_opt("traefik-ingress-controller")
                .await
                .ok()
                .flatten()
                .is_none()
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let pods: Api<Pod> = Api::namespaced(client.clone(), "traefik");
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "traefik-7d9f-x2k4p", "labels": {"app.kubernetes.io/name": "traefik"}},
                "spec": {"serviceAccountName": "traefik-ingress-controller", "automountServiceAccountToken": false,
                    "containers": [{"name": "traefik", "image": "reg.lan:5000/library/traefik:v9.3.0"}]}
            })).unwrap();
            pods.create(&Default::default(), &pod).await.unwrap();
            let status = serde_json::json!({"status": {"phase": "Pending", "containerStatuses": [{
                "name": "traefik", "image": "reg.lan:5000/library/traefik:v9.3.0", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"reg.lan:5000/library/traefik:v9.3.0\""}}
            }]}});
            pods.patch_status(
                "traefik-7d9f-x2k4p",
                &Default::default(),
                &kube::api::Patch::Merge(&status),
            )
            .await
            .unwrap();
        }
    });
    let lab = load(&dir2, &work.path().join("state2"), &cache);
    let plan = lab.plan().await.unwrap();
    let err = failure(&lab, &plan).await;
    stuck.await.unwrap();
    assert!(
        err.contains("deployment traefik/traefik is not ready after 4s"),
        "{err}"
    );
    assert!(
        err.contains("pod traefik/traefik-7d9f-x2k4p: container traefik: ImagePullBackOff: Back-off pulling image"),
        "{err}"
    );
}
