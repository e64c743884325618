//! The cluster domain against a real kube-apiserver + etcd (see `support`).
#![allow(clippy::disallowed_methods, clippy::print_stderr)] // a test prints what it measured

use cloudlet_testkit::apiserver as support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloudlet_cluster::{KubeOptions, KubeProvider, PART_OF_LABEL, metallb};
use cloudlet_core::engine::{ApplyOptions, Engine};
use cloudlet_core::model::SecretRef;
use cloudlet_core::{Domain, Lab, Plan, Providers, Resource, StateStore};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use support::ApiServer;
use tempfile::TempDir;

/// The seed lab; its env-referenced secret points at a variable every test process has
/// (`PATH`), so the test needs no environment of its own.
fn seed() -> Lab {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    let mut lab = cloudlet_core::load(&dir).expect("the seed lab loads").lab;
    let wg = lab
        .cluster
        .as_mut()
        .unwrap()
        .apps
        .get_mut("wireguard")
        .unwrap();
    wg.secrets
        .insert("PEERS_KEY".into(), SecretRef::Env("PATH".into()));
    lab
}

/// The seed's file secret, as a user would provide it.
fn secrets() -> TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("secrets")).unwrap();
    // Ending with a newline, as `echo` writes it.
    std::fs::write(
        d.path().join("secrets/postmaster-password"),
        "hunter2-but-long\n",
    )
    .unwrap();
    d
}

async fn install_metallb_crds(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in metallb::crds() {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("test-setup"),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD accepted by the real API server");
        for _ in 0..100 {
            let c = api.get(&name).await.unwrap();
            let ok = c.status.and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if ok {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

struct Setup {
    _server: ApiServer,
    client: kube::Client,
    state: TempDir,
    secrets: TempDir,
}

async fn setup() -> Setup {
    let server = ApiServer::start();
    let client = server.client().await;
    install_metallb_crds(&client).await;
    Setup {
        _server: server,
        client,
        state: tempfile::tempdir().unwrap(),
        secrets: secrets(),
    }
}

fn engine(s: &Setup, lab: &Lab, take_over: bool) -> Engine {
    let p = KubeProvider::new(
        s.client.clone(),
        &lab.name,
        KubeOptions {
            take_over,
            secrets_dir: PathBuf::from(s.secrets.path()),
            ..KubeOptions::default()
        },
    );
    Engine::new(
        lab.name.clone(),
        Providers::new().with(Domain::Cluster, Arc::new(p)),
        StateStore::open(s.state.path()).unwrap(),
    )
}

async fn plan(s: &Setup, lab: &Lab) -> Plan {
    engine(s, lab, false)
        .plan(cloudlet_cluster::expand(lab))
        .await
        .expect("plan")
}

async fn converge(s: &Setup, lab: &Lab) -> Plan {
    let e = engine(s, lab, false);
    let plan = e.plan(cloudlet_cluster::expand(lab)).await.expect("plan");
    let report = e
        .apply(&plan, ApplyOptions::default())
        .await
        .expect("apply");
    assert!(
        report.failed.is_empty(),
        "failed steps: {:#?}",
        report.failed
    );
    plan
}

/// cloudlet's LoadBalancer Services on the server.
async fn load_balancers(client: &kube::Client) -> Vec<Service> {
    Api::<Service>::all(client.clone())
        .list(&ListParams::default().labels(PART_OF_LABEL))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        .collect()
}

fn changed(p: &Plan) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| format!("{} {}", s.action.as_str(), s.id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_cluster_applies_to_an_empty_server_and_replans_empty() {
    let s = setup().await;
    let lab = seed();
    let desired = cloudlet_cluster::expand(&lab);
    let first = converge(&s, &lab).await;
    assert_eq!(first.summary.create, desired.len(), "{:?}", changed(&first));

    // The real objects: the shared VIP with its sharing key, MetalLB pool, the secret values.
    let lbs = load_balancers(&s.client).await;
    assert!(!lbs.is_empty());
    for svc in &lbs {
        let ann = svc.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            ann.get("metallb.io/loadBalancerIPs").map(String::as_str),
            Some("10.0.20.200")
        );
        assert_eq!(
            ann.get("metallb.io/allow-shared-ip").map(String::as_str),
            Some("shared")
        );
    }
    let secret: Secret = Api::namespaced(s.client.clone(), "wireguard")
        .get("wireguard-secrets")
        .await
        .expect("the app's secret");
    let value = secret.data.unwrap()["PEERS_KEY"].0.clone();
    assert_eq!(value, std::env::var("PATH").unwrap().into_bytes());
    // A value from a file arrives as cloudlet itself reads it: without the file's newline.
    let mail: Secret = Api::namespaced(s.client.clone(), "mailserver")
        .get("mailserver-secrets")
        .await
        .expect("the mail server's secret");
    assert_eq!(
        mail.data.unwrap()["POSTMASTER_PASSWORD"].0,
        b"hunter2-but-long".to_vec()
    );

    let second = plan(&s, &lab).await;
    assert!(
        !second.summary.has_changes(),
        "a second plan must be empty, got {:?} / {:#?}",
        changed(&second),
        second.steps.iter().map(|s| &s.changes).collect::<Vec<_>>()
    );
    assert!(second.held.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_change_updates_one_deployment_and_removal_prunes_exactly_its_objects() {
    let s = setup().await;
    let mut lab = seed();
    converge(&s, &lab).await;

    lab.cluster
        .as_mut()
        .unwrap()
        .apps
        .get_mut("blog")
        .unwrap()
        .image = "docker.io/viktorbarzin/blog:v2".into();
    let p = converge(&s, &lab).await;
    assert_eq!(changed(&p), vec!["update cluster/deployment/blog.blog"]);
    assert_eq!(
        p.steps[0]
            .changes
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>(),
        vec!["spec.template.spec.containers[0].image"]
    );
    let d: Deployment = Api::namespaced(s.client.clone(), "blog")
        .get("blog")
        .await
        .unwrap();
    assert_eq!(
        d.spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("docker.io/viktorbarzin/blog:v2")
    );

    // An object made by hand in the same namespace, and one that looks like ours by name.
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "blog");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("made-by-hand".into());
    cms.create(&PostParams::default(), &cm).await.unwrap();

    let before: Vec<Resource> = cloudlet_cluster::expand(&lab);
    lab.cluster.as_mut().unwrap().apps.remove("blog");
    let after = cloudlet_cluster::expand(&lab);
    let gone: Vec<String> = before
        .iter()
        .filter(|r| !after.iter().any(|a| a.id == r.id))
        .map(|r| format!("delete {}", r.id))
        .collect();
    // The namespace holds an object cloudlet does not own: it is kept, not deleted with it.
    let ns_id = "delete cluster/namespace/blog".to_string();
    assert!(gone.contains(&ns_id), "{gone:?}");
    let p = converge(&s, &lab).await;
    let mut got = changed(&p);
    got.sort();
    let mut want: Vec<String> = gone.iter().filter(|g| **g != ns_id).cloned().collect();
    want.sort();
    assert_eq!(got, want, "removing an app prunes exactly its objects");
    assert!(p.summary.update == 0 && p.summary.create == 0);
    assert_eq!(
        p.kept.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec!["cluster/namespace/blog"]
    );
    let ns: Api<Namespace> = Api::all(s.client.clone());
    let blog = ns.get("blog").await.unwrap();
    assert!(blog.metadata.deletion_timestamp.is_none());
    assert!(
        cms.get_opt("made-by-hand").await.unwrap().is_some(),
        "the hand-made object is still there"
    );
    // Once it is gone, the namespace goes too.
    cms.delete("made-by-hand", &Default::default())
        .await
        .unwrap();
    let p = converge(&s, &lab).await;
    assert_eq!(changed(&p), vec![ns_id]);
    let blog = ns.get_opt("blog").await.unwrap();
    assert!(blog.is_none_or(|n| n.metadata.deletion_timestamp.is_some()));
    assert!(!plan(&s, &lab).await.summary.has_changes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_managers_image_bump_is_reported_not_reverted() {
    let s = setup().await;
    let lab = seed();
    converge(&s, &lab).await;

    // keel bumps the image of blog with its own field manager.
    let deploys: Api<Deployment> = Api::namespaced(s.client.clone(), "blog");
    let mut d = deploys.get("blog").await.unwrap();
    d.metadata.managed_fields = None;
    d.spec.template.spec.as_mut().unwrap().containers[0].image =
        Some("docker.io/viktorbarzin/blog:keel-1".into());
    deploys
        .replace(
            "blog",
            &PostParams {
                field_manager: Some("keel".into()),
                ..PostParams::default()
            },
            &d,
        )
        .await
        .unwrap();

    let p = plan(&s, &lab).await;
    assert!(!p.summary.has_changes(), "{:?}", changed(&p));
    assert_eq!(p.held.len(), 1, "{:#?}", p.held);
    let h = &p.held[0];
    assert_eq!(h.id.to_string(), "cluster/deployment/blog.blog");
    assert_eq!(h.by, "keel");
    assert_eq!(h.change.path, "spec.template.spec.containers[0].image");

    // A change elsewhere in the same Deployment applies without reverting keel's image.
    let mut lab2 = lab.clone();
    lab2.cluster
        .as_mut()
        .unwrap()
        .apps
        .get_mut("blog")
        .unwrap()
        .replicas = 3;
    let p = converge(&s, &lab2).await;
    assert_eq!(changed(&p), vec!["update cluster/deployment/blog.blog"]);
    let d = deploys.get("blog").await.unwrap();
    let spec = d.spec;
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("docker.io/viktorbarzin/blog:keel-1")
    );

    // Asked to take over, the lab's image comes back.
    let e = engine(&s, &lab2, true);
    let p = e.plan(cloudlet_cluster::expand(&lab2)).await.unwrap();
    assert_eq!(changed(&p), vec!["update cluster/deployment/blog.blog"]);
    let r = e.apply(&p, ApplyOptions::default()).await.unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    let d = deploys.get("blog").await.unwrap();
    assert_eq!(
        d.spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("docker.io/viktorbarzin/blog:latest")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlabelled_object_of_the_same_name_is_never_taken_over() {
    let s = setup().await;
    let lab = seed();
    let ns: Api<Namespace> = Api::all(s.client.clone());
    let mut n = Namespace::default();
    n.metadata.name = Some("blog".into());
    ns.create(&PostParams::default(), &n).await.unwrap();

    let e = engine(&s, &lab, false);
    let plan = e.plan(cloudlet_cluster::expand(&lab)).await.unwrap();
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    let failed: Vec<String> = r
        .failed
        .iter()
        .map(|(id, m)| format!("{id}: {m}"))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("cluster/namespace/blog:")
            && failed[0].contains("not managed by cloudlet"),
        "{failed:?}"
    );
    let live = ns.get("blog").await.unwrap();
    assert!(
        !live
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key(PART_OF_LABEL)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_rollouts_addresses_and_ingress_backends() {
    use cloudlet_cluster::health::{self, State};
    use k8s_openapi::api::core::v1::Event;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Patch, PatchParams};

    let s = setup().await;
    let lab = seed();
    converge(&s, &lab).await;
    let applyset =
        cloudlet_cluster::applyset_id(&format!("cloudlet-{}", lab.name), "default", "Secret", "");
    let state_of = |f: &[health::Finding], id: &str| {
        f.iter()
            .find(|x| x.id.to_string() == id)
            .map(|x| (x.state, x.message.clone()))
            .unwrap_or_else(|| panic!("{id} not in {f:#?}"))
    };

    // No controllers run on this server: nothing has rolled out, no address, no endpoint.
    let f = health::check(&s.client, &applyset).await.unwrap();
    assert_eq!(
        state_of(&f, "cluster/deployment/blog.blog").0,
        State::Progressing
    );
    assert_eq!(
        state_of(&f, "cluster/ingress/blog.blog").0,
        State::Progressing
    );
    assert!(f.iter().all(|x| x.state != State::Ready), "{f:#?}");

    // Play the controllers through the status subresource.
    let deploys: Api<Deployment> = Api::namespaced(s.client.clone(), "blog");
    deploys
        .patch_status(
            "blog",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2}})),
        )
        .await
        .unwrap();
    let mail: Api<Deployment> = Api::namespaced(s.client.clone(), "mailserver");
    mail.patch_status(
        "mailserver",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {"observedGeneration": 1, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"mailserver-1\" has timed out progressing."}]}})),
    )
    .await
    .unwrap();
    let lbs = load_balancers(&s.client).await;
    assert!(
        lbs.len() >= 2,
        "the seed has several services on the shared VIP"
    );
    let (first, second) = (&lbs[0], &lbs[1]);
    let ns_of = |s: &Service| s.metadata.namespace.clone().unwrap();
    let name_of = |s: &Service| s.metadata.name.clone().unwrap();
    Api::<Service>::namespaced(s.client.clone(), &ns_of(first))
        .patch_status(
            &name_of(first),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.20.200"}]}}})),
        )
        .await
        .unwrap();
    let ev: Event = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "alloc-failed", "namespace": ns_of(second)},
        "involvedObject": {"kind": "Service", "name": name_of(second), "namespace": ns_of(second)},
        "reason": "AllocationFailed",
        "message": "Failed to allocate IP for \"x\": no available IPs",
        "type": "Warning",
        "source": {"component": "metallb-controller"}
    }))
    .unwrap();
    Api::<Event>::namespaced(s.client.clone(), &ns_of(second))
        .create(&PostParams::default(), &ev)
        .await
        .unwrap();
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "blog-abc", "namespace": "blog", "labels": {"kubernetes.io/service-name": "blog"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.10"], "conditions": {"ready": true}}],
        "ports": [{"port": 80, "protocol": "TCP"}]
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(s.client.clone(), "blog")
        .create(&PostParams::default(), &slice)
        .await
        .unwrap();

    let f = health::check(&s.client, &applyset).await.unwrap();
    assert_eq!(
        state_of(&f, "cluster/deployment/blog.blog"),
        (State::Ready, "2 of 2 replicas available".into())
    );
    let (st, msg) = state_of(&f, "cluster/deployment/mailserver.mailserver");
    assert_eq!(st, State::Failed);
    assert!(msg.starts_with("ProgressDeadlineExceeded"), "{msg}");
    let (st, msg) = state_of(
        &f,
        &format!("cluster/service/{}.{}", ns_of(first), name_of(first)),
    );
    assert_eq!((st, msg.as_str()), (State::Ready, "on 10.0.20.200"));
    let (st, msg) = state_of(
        &f,
        &format!("cluster/service/{}.{}", ns_of(second), name_of(second)),
    );
    assert_eq!(st, State::Failed);
    assert!(msg.contains("no available IPs"), "{msg}");
    assert_eq!(state_of(&f, "cluster/ingress/blog.blog").0, State::Ready);

    // Waiting gives up on what is still progressing after the timeout and says so.
    let f = health::wait(&s.client, &applyset, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    let (st, msg) = state_of(&f, "cluster/persistentvolumeclaim/blog.blog-content");
    assert_eq!(st, State::Failed);
    assert!(msg.starts_with("not ready after 1s"), "{msg}");
}

/// kubectl's ApplySet tooling reads cloudlet's inventory: it refuses to touch a set another
/// tool manages, and once told the set is its own, its `--prune` finds exactly cloudlet's
/// members through the id label, the group-kinds and the namespaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_the_applyset_as_cloudlets() {
    use kube::api::{Patch, PatchParams};
    let s = setup().await;
    let lab = seed();
    converge(&s, &lab).await;
    let members = cloudlet_cluster::expand(&lab).len();
    let kubectl = std::env::var("KUBECTL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| support::peers().join("kubectl"));
    let probe = s.state.path().join("probe.yaml");
    std::fs::write(
        &probe,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe, namespace: default}\n",
    )
    .unwrap();
    let run = || {
        let out = std::process::Command::new(&kubectl)
            .env("KUBECTL_APPLYSET", "true")
            .arg("--kubeconfig")
            .arg(&s._server.kubeconfig)
            .args([
                "apply",
                "--server-side",
                "--prune",
                "-n",
                "default",
                "--applyset=secret/cloudlet-seed",
                "-f",
            ])
            .arg(&probe)
            .output()
            .expect("kubectl runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = run();
    assert!(!ok);
    assert!(
        out.contains("managed by tooling \"cloudlet\" instead of \"kubectl\""),
        "{out}"
    );

    // Hand the set to kubectl: its id check and its prune must agree with cloudlet's.
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), "default");
    secrets
        .patch(
            "cloudlet-seed",
            &PatchParams::apply("handover").force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "cloudlet-seed", "annotations": {"applyset.kubernetes.io/tooling": "kubectl/v1.32.4"}}
            })),
        )
        .await
        .unwrap();
    let (ok, out) = run();
    assert!(ok, "{out}");
    let pruned = out.lines().filter(|l| l.ends_with(" pruned")).count();
    assert_eq!(
        pruned, members,
        "kubectl prunes exactly cloudlet's members:\n{out}"
    );
    assert!(out.contains("deployment.apps/blog pruned"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_export_gets_a_csi_storage_class_and_claims_of_it() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use k8s_openapi::api::storage::v1::StorageClass;
    let s = setup().await;
    let mut lab = seed();
    lab.storage
        .as_mut()
        .unwrap()
        .exports
        .get_mut("mail")
        .unwrap()
        .dynamic = true;
    let first = converge(&s, &lab).await;
    assert!(
        changed(&first).contains(&"create cluster/storageclass/nfs-mail".to_string()),
        "{:?}",
        changed(&first)
    );
    let sc: StorageClass = Api::all(s.client.clone()).get("nfs-mail").await.unwrap();
    assert_eq!(sc.provisioner, "nfs.csi.k8s.io");
    assert_eq!(sc.reclaim_policy.as_deref(), Some("Retain"));
    let params = sc.parameters.unwrap();
    assert_eq!(
        (params["server"].as_str(), params["share"].as_str()),
        ("10.0.20.30", "/mnt/main/mail")
    );
    // The mail server's claim asks the class; no static volume is made for it (the blog's
    // static one still is).
    let pvc: PersistentVolumeClaim = Api::namespaced(s.client.clone(), "mailserver")
        .get("mailserver-data")
        .await
        .unwrap();
    let spec = pvc.spec.unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("nfs-mail"));
    assert_eq!(spec.volume_name, None);
    let pvs: Vec<String> = Api::<PersistentVolume>::all(s.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(pvs, vec!["blog-blog-content".to_string()]);
    let again = plan(&s, &lab).await;
    assert!(!again.summary.has_changes(), "{:?}", changed(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_stops_the_apply_with_one_error_naming_it() {
    let mut server = ApiServer::start();
    let client = server.client().await;
    install_metallb_crds(&client).await;
    let lab = seed();
    let secrets = secrets();
    let state = tempfile::tempdir().unwrap();
    let p = KubeProvider::new(
        client,
        &lab.name,
        KubeOptions {
            secrets_dir: PathBuf::from(secrets.path()),
            endpoint: Some(server.url.clone()),
            ..KubeOptions::default()
        },
    );
    let e = Engine::new(
        lab.name.clone(),
        Providers::new().with(Domain::Cluster, Arc::new(p)),
        StateStore::open(state.path()).unwrap(),
    );
    let plan = e.plan(cloudlet_cluster::expand(&lab)).await.unwrap();
    assert!(plan.steps.len() > 20, "{}", plan.steps.len());
    server.stop_apiserver();
    let started = std::time::Instant::now();
    let report = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    eprintln!(
        "{} steps: {} failed, {} skipped, in {:?}",
        plan.steps.len(),
        report.failed.len(),
        report.skipped.len(),
        started.elapsed()
    );
    // Only what was in flight when the server went away failed; the rest never started.
    assert!(report.failed.len() <= 16, "{:#?}", report.failed);
    assert_eq!(report.failed.len() + report.skipped.len(), plan.steps.len());
    assert!(
        report
            .failed
            .iter()
            .all(|(_, m)| m.contains(&format!("cannot reach {}", server.url))),
        "{:#?}",
        report.failed
    );
    // A plan while the server is down: one error, its cause once, the address named.
    let err =
        cloudlet_core::error::chain(&e.plan(cloudlet_cluster::expand(&lab)).await.unwrap_err());
    assert_eq!(
        err.matches("reading the ApplySet parent").count(),
        1,
        "{err}"
    );
    assert!(err.contains(&server.url), "{err}");
}
