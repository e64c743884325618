//! The platform's test peers: STAND-IN release manifests written here in the shape upstream
//! publishes them (Namespace, CRDs, RBAC, Services, Deployments, DaemonSets, webhook
//! configurations — not upstream's text, which nothing here can fetch), a plain HTTP file
//! server that plays the release host or a site's mirror (counting requests, so a test sees
//! the cache work), an admission webhook that answers, and FAKE ROLLOUTS: where no
//! controller manager or kubelet runs, the status a rollout would reach is written through
//! the API.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// The SHA-256 of `bytes`, hex.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Objects as a multi-document YAML text, block style as upstream writes it.
pub fn documents(objects: &[Value]) -> String {
    let mut s = String::new();
    for o in objects {
        s.push_str("---\n");
        cloudlet_core::yaml::emit(o, 0, &[], &mut s);
    }
    s
}

/// A CRD as upstream writes one: served and stored versions, a structural schema whose spec
/// keeps unknown fields, the status subresource.
pub fn crd(group: &str, kind: &str, plural: &str, scope: &str, versions: &[(&str, bool)]) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}"), "annotations": {"controller-gen.kubebuilder.io/version": "v0.19.0"}},
        "spec": {
            "group": group,
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": kind.to_ascii_lowercase()},
            "scope": scope,
            "versions": versions.iter().map(|(v, storage)| json!({
                "name": v, "served": true, "storage": storage,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }}
            })).collect::<Vec<_>>()
        }
    })
}

fn sa(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})
}

fn cluster_role(name: &str, groups: &[&str]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
        "rules": [{"apiGroups": groups, "resources": ["*"], "verbs": ["get", "list", "watch"]}]})
}

fn binding(name: &str, role: &str, ns: &str, sa: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]})
}

/// `w` with its pods tolerating `tolerations`.
fn tolerating(mut w: Value, tolerations: Value) -> Value {
    w["spec"]["template"]["spec"]["tolerations"] = tolerations;
    w
}

fn workload(kind: &str, ns: &str, name: &str, labels: Value, image: &str, sa: &str) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {
            "serviceAccountName": sa,
            "containers": [{"name": name, "image": image, "args": ["--port=7472"],
                "ports": [{"name": "monitoring", "containerPort": 7472}],
                "env": [{"name": "METALLB_ML_SECRET_NAME", "value": "memberlist"}],
                "resources": {"limits": {"memory": "128Mi"}}}]
        }}
    });
    if kind == "Deployment" {
        spec["replicas"] = json!(1);
    }
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": spec})
}

/// Where a stand-in's webhooks are reached.
#[derive(Debug, Clone)]
pub enum Webhook {
    /// Through a Service of the release, as upstream does (no pod answers here).
    Service,
    /// At an address the test serves (`url`, the PEM of the CA that signed it).
    Url(String, String),
}

fn client_config(hook: &Webhook, ns: &str, service: &str, path: &str) -> Value {
    match hook {
        Webhook::Service => {
            json!({"service": {"name": service, "namespace": ns, "path": path, "port": 443}})
        }
        Webhook::Url(url, ca) => {
            use base64::Engine as _;
            json!({"url": format!("{url}{path}"), "caBundle": base64::engine::general_purpose::STANDARD.encode(ca)})
        }
    }
}

fn validating(
    name: &str,
    hooks: Vec<(&str, &str, &str)>,
    hook: &Webhook,
    ns: &str,
    service: &str,
) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": hooks.into_iter().map(|(hname, group, resource)| json!({
            "name": hname,
            "admissionReviewVersions": ["v1"],
            "clientConfig": client_config(hook, ns, service, &format!("/validate-{}", resource.replace('*', "all"))),
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 2,
            "rules": [{"apiGroups": [group], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": [resource]}]
        })).collect::<Vec<_>>()
    })
}

/// MetalLB's `metallb-native.yaml` in its shape: controller and speaker images at `version`,
/// the CRDs storing `storage` (`v1beta1` upstream).
pub fn metallb(version: &str, hook: &Webhook, storage: &str) -> String {
    let ns = "metallb-system";
    let versions: Vec<(&str, bool)> = if storage == "v1beta1" {
        vec![("v1beta1", true)]
    } else {
        vec![("v1beta1", false), (storage, true)]
    };
    let controller = json!({"app": "metallb", "component": "controller"});
    let speaker = json!({"app": "metallb", "component": "speaker"});
    let mut objs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}),
        crd(
            "metallb.io",
            "IPAddressPool",
            "ipaddresspools",
            "Namespaced",
            &versions,
        ),
        crd(
            "metallb.io",
            "L2Advertisement",
            "l2advertisements",
            "Namespaced",
            &versions,
        ),
        crd(
            "metallb.io",
            "ServiceL2Status",
            "servicel2statuses",
            "Namespaced",
            &[("v1beta1", true)],
        ),
        sa(ns, "controller"),
        sa(ns, "speaker"),
        cluster_role("metallb-system:controller", &["", "metallb.io"]),
        cluster_role(
            "metallb-system:speaker",
            &["", "metallb.io", "discovery.k8s.io"],
        ),
        binding(
            "metallb-system:controller",
            "metallb-system:controller",
            ns,
            "controller",
        ),
        binding(
            "metallb-system:speaker",
            "metallb-system:speaker",
            ns,
            "speaker",
        ),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "metallb-excludel2", "namespace": ns}, "data": {"excludel2.yaml": "announcedInterfacesToExclude: [\"^docker.*\"]\n"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "metallb-webhook-cert", "namespace": ns}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "metallb-webhook-service", "namespace": ns},
            "spec": {"ports": [{"port": 443, "targetPort": 9443}], "selector": controller}}),
        workload(
            "Deployment",
            ns,
            "controller",
            controller,
            &format!("quay.io/metallb/controller:{version}"),
            "controller",
        ),
        tolerating(
            workload(
                "DaemonSet",
                ns,
                "speaker",
                speaker,
                &format!("quay.io/metallb/speaker:{version}"),
                "speaker",
            ),
            json!([
                {"key": "node-role.kubernetes.io/master", "effect": "NoSchedule", "operator": "Exists"},
                {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule", "operator": "Exists"}
            ]),
        ),
        validating(
            "metallb-webhook-configuration",
            vec![
                (
                    "ipaddresspoolvalidationwebhook.metallb.io",
                    "metallb.io",
                    "ipaddresspools",
                ),
                (
                    "l2advertisementvalidationwebhook.metallb.io",
                    "metallb.io",
                    "l2advertisements",
                ),
            ],
            hook,
            ns,
            "metallb-webhook-service",
        ),
    ];
    objs[13]["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array_mut()
        .expect("ports")
        .push(json!({"name": "webhook-server", "containerPort": 9443}));
    documents(&objs)
}

/// Calico's `manifests/calico.yaml` in its shape (kube-system; the pool CIDR left to its
/// default, as upstream ships it).
pub fn calico(version: &str) -> String {
    let ns = "kube-system";
    let node = json!({"k8s-app": "calico-node"});
    let kc = json!({"k8s-app": "calico-kube-controllers"});
    let mut ds = workload(
        "DaemonSet",
        ns,
        "calico-node",
        node,
        &format!("quay.io/calico/node:{version}"),
        "calico-node",
    );
    ds["spec"]["template"]["spec"]["containers"][0]["name"] = json!("calico-node");
    ds["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "CALICO_NETWORKING_BACKEND", "value": "bird"}, {"name": "CALICO_IPV4POOL_IPIP", "value": "Always"}]);
    ds["spec"]["template"]["spec"]["initContainers"] =
        json!([{"name": "install-cni", "image": format!("quay.io/calico/cni:{version}")}]);
    ds["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
    ds["spec"]["template"]["spec"]["tolerations"] = json!([
        {"effect": "NoSchedule", "operator": "Exists"},
        {"key": "CriticalAddonsOnly", "operator": "Exists"},
        {"effect": "NoExecute", "operator": "Exists"}
    ]);
    documents(&[
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "calico-kube-controllers", "namespace": ns}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": kc}}}),
        sa(ns, "calico-kube-controllers"),
        sa(ns, "calico-node"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "calico-config", "namespace": ns}, "data": {"calico_backend": "bird", "veth_mtu": "0"}}),
        crd(
            "crd.projectcalico.org",
            "IPPool",
            "ippools",
            "Cluster",
            &[("v1", true)],
        ),
        crd(
            "crd.projectcalico.org",
            "FelixConfiguration",
            "felixconfigurations",
            "Cluster",
            &[("v1", true)],
        ),
        crd(
            "crd.projectcalico.org",
            "NetworkPolicy",
            "networkpolicies",
            "Namespaced",
            &[("v1", true)],
        ),
        cluster_role(
            "calico-node",
            &["", "crd.projectcalico.org", "networking.k8s.io"],
        ),
        cluster_role("calico-kube-controllers", &["", "crd.projectcalico.org"]),
        binding("calico-node", "calico-node", ns, "calico-node"),
        binding(
            "calico-kube-controllers",
            "calico-kube-controllers",
            ns,
            "calico-kube-controllers",
        ),
        ds,
        workload(
            "Deployment",
            ns,
            "calico-kube-controllers",
            kc,
            &format!("quay.io/calico/kube-controllers:{version}"),
            "calico-kube-controllers",
        ),
    ])
}

/// Traefik's two published files: its CRDs and its RBAC (bound in `default`).
pub fn traefik() -> (String, String) {
    let crds = documents(&[
        crd(
            "traefik.io",
            "IngressRoute",
            "ingressroutes",
            "Namespaced",
            &[("v1alpha1", true)],
        ),
        crd(
            "traefik.io",
            "Middleware",
            "middlewares",
            "Namespaced",
            &[("v1alpha1", true)],
        ),
        crd(
            "traefik.io",
            "TLSStore",
            "tlsstores",
            "Namespaced",
            &[("v1alpha1", true)],
        ),
    ]);
    let rbac = documents(&[
        cluster_role(
            "traefik-ingress-controller",
            &["", "networking.k8s.io", "traefik.io", "discovery.k8s.io"],
        ),
        binding(
            "traefik-ingress-controller",
            "traefik-ingress-controller",
            "default",
            "traefik-ingress-controller",
        ),
    ]);
    (crds, rbac)
}

/// csi-driver-nfs's four deploy files: RBAC, CSIDriver, controller, node plugin.
pub fn csi_driver_nfs(version: &str) -> [String; 4] {
    let ns = "kube-system";
    [
        documents(&[
            sa(ns, "csi-nfs-controller-sa"),
            sa(ns, "csi-nfs-node-sa"),
            cluster_role("nfs-external-provisioner-role", &["", "storage.k8s.io"]),
            binding(
                "nfs-csi-provisioner-binding",
                "nfs-external-provisioner-role",
                ns,
                "csi-nfs-controller-sa",
            ),
        ]),
        documents(&[
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "nfs.csi.k8s.io"},
            "spec": {"attachRequired": false, "volumeLifecycleModes": ["Persistent"], "fsGroupPolicy": "File"}}),
        ]),
        documents(&[workload(
            "Deployment",
            ns,
            "csi-nfs-controller",
            json!({"app": "csi-nfs-controller"}),
            &format!("registry.k8s.io/sig-storage/nfsplugin:{version}"),
            "csi-nfs-controller-sa",
        )]),
        documents(&[tolerating(
            workload(
                "DaemonSet",
                ns,
                "csi-nfs-node",
                json!({"app": "csi-nfs-node"}),
                &format!("registry.k8s.io/sig-storage/nfsplugin:{version}"),
                "csi-nfs-node-sa",
            ),
            json!([{"operator": "Exists"}]),
        )]),
    ]
}

/// cert-manager's `cert-manager.yaml` in its shape: its CRDs, three Deployments, the webhook
/// Service and its validating webhook.
pub fn cert_manager(version: &str, hook: &Webhook) -> String {
    let ns = "cert-manager";
    let dep = |name: &str, image: &str| {
        workload(
            "Deployment",
            ns,
            name,
            json!({"app.kubernetes.io/name": name}),
            &format!("quay.io/jetstack/{image}:{version}"),
            name,
        )
    };
    documents(&[
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        crd(
            "cert-manager.io",
            "Certificate",
            "certificates",
            "Namespaced",
            &[("v1", true)],
        ),
        crd(
            "cert-manager.io",
            "Issuer",
            "issuers",
            "Namespaced",
            &[("v1", true)],
        ),
        crd(
            "cert-manager.io",
            "ClusterIssuer",
            "clusterissuers",
            "Cluster",
            &[("v1", true)],
        ),
        crd(
            "acme.cert-manager.io",
            "Order",
            "orders",
            "Namespaced",
            &[("v1", true)],
        ),
        sa(ns, "cert-manager"),
        sa(ns, "cert-manager-cainjector"),
        sa(ns, "cert-manager-webhook"),
        cluster_role("cert-manager-controller-issuers", &["cert-manager.io", ""]),
        binding(
            "cert-manager-controller-issuers",
            "cert-manager-controller-issuers",
            ns,
            "cert-manager",
        ),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cert-manager-webhook", "namespace": ns},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 10250}], "selector": {"app.kubernetes.io/name": "cert-manager-webhook"}}}),
        dep("cert-manager", "cert-manager-controller"),
        dep("cert-manager-cainjector", "cert-manager-cainjector"),
        dep("cert-manager-webhook", "cert-manager-webhook"),
        validating(
            "cert-manager-webhook",
            vec![("webhook.cert-manager.io", "cert-manager.io", "*")],
            hook,
            ns,
            "cert-manager-webhook",
        ),
    ])
}

/// A plain HTTP/1.1 server of files on a loopback port: the release host, or a mirror.
pub struct FileServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FileServer {
    /// Serves nothing yet.
    pub async fn start() -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let files: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let (f, h) = (files.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (f, h) = (f.clone(), h.clone());
                tokio::spawn(async move {
                    let mut r = BufReader::new(tcp);
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).await.unwrap_or(0) == 0 || l.trim().is_empty() {
                            break;
                        }
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    h.lock().expect("hits").push(path.clone());
                    let body = f.lock().expect("files").get(&path).cloned();
                    let head = match &body {
                        Some(b) => format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", b.len()),
                        None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
                    };
                    let mut tcp = r.into_inner();
                    let _ = tcp.write_all(head.as_bytes()).await;
                    if let Some(b) = body {
                        let _ = tcp.write_all(&b).await;
                    }
                    let _ = tcp.shutdown().await;
                });
            }
        });
        FileServer {
            url,
            files,
            hits,
            task,
        }
    }

    /// Serves `body` at `path` (`/metallb/v1/metallb-native.yaml`).
    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.files
            .lock()
            .expect("files")
            .insert(path.to_string(), body.into());
    }

    /// The paths asked for so far.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().expect("hits").clone()
    }
}

/// An admission webhook that allows everything, over TLS with a CA made in `dir`: its
/// address and the CA's PEM, for a [`Webhook::Url`].
pub async fn allowing_webhook(dir: &Path) -> (crate::https::Server, Webhook) {
    allowing_webhook_on(dir, std::net::Ipv4Addr::LOCALHOST.into()).await
}

/// [`allowing_webhook`] on an address of `ip` (one the API server reaches).
pub async fn allowing_webhook_on(
    dir: &Path,
    ip: std::net::IpAddr,
) -> (crate::https::Server, Webhook) {
    let handler: crate::https::Handler = Arc::new(|req: crate::https::Req| {
        Box::pin(async move {
            let uid = req.body["request"]["uid"].clone();
            Some((
                200,
                json!({
                    "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": uid, "allowed": true}
                }),
            ))
        })
    });
    let server = crate::https::start_on(dir, ip, handler).await;
    let ca = std::fs::read_to_string(&server.ca).expect("the CA");
    let hook = Webhook::Url(server.endpoint.clone(), ca);
    (server, hook)
}

/// FAKE ROLLOUTS: every Deployment and DaemonSet labelled `label` (but those named in
/// `stuck`) gets the status its controller and kubelets would write once its pods run: what
/// a readiness wait needs where no controller manager or kubelet runs. Stops when dropped.
pub struct FakeRollouts(tokio::task::JoinHandle<()>);

impl Drop for FakeRollouts {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes the status `status(object)` onto every object `api` lists with `lp` that is not in
/// `stuck` and whose status does not show its generation yet.
async fn roll_out<K>(
    api: &Api<K>,
    client: &kube::Client,
    lp: &ListParams,
    stuck: &[String],
    status: impl Fn(&K) -> Value,
) where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let Ok(list) = api.list(lp).await else { return };
    for o in list.items {
        let m = o.meta();
        let (ns, name) = (
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
        );
        let g = m.generation.unwrap_or(1);
        let seen = serde_json::to_value(&o)
            .ok()
            .and_then(|v| v["status"]["observedGeneration"].as_i64());
        if stuck.contains(&name) || seen == Some(g) {
            continue;
        }
        let mut body = status(&o);
        body["status"]["observedGeneration"] = json!(g);
        let api: Api<K> = Api::namespaced(client.clone(), &ns);
        let _ = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await;
    }
}

/// Starts [`FakeRollouts`].
pub fn fake_rollouts(client: kube::Client, label: &str, stuck: Vec<String>) -> FakeRollouts {
    let lp = ListParams::default().labels(label);
    FakeRollouts(tokio::spawn(async move {
        let deployments: Api<Deployment> = Api::all(client.clone());
        let daemons: Api<DaemonSet> = Api::all(client.clone());
        loop {
            roll_out(&deployments, &client, &lp, &stuck, |d: &Deployment| {
                let n = d.spec.replicas.unwrap_or(1);
                json!({"status": {"replicas": n, "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n,
                    "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "fake rollout"}]}})
            })
            .await;
            roll_out(&daemons, &client, &lp, &stuck, |_: &DaemonSet| {
                json!({"status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                    "numberMisscheduled": 0, "numberReady": 2, "updatedNumberScheduled": 2, "numberAvailable": 2}})
            })
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }))
}

/// THE SEED WITH STAND-IN RELEASES, shared by the platform tests and benchmark.
/// The seed, its cluster on the test's API server, with `platform` as its platform block.
pub fn write_seed_lab(dir: &Path, server: &crate::apiserver::ApiServer, platform: &str) {
    write_seed_lab_on(
        dir,
        "{kind: kubernetes, credentials: {file: kubeconfig}}",
        "",
        platform,
    );
    std::fs::copy(&server.kubeconfig, dir.join("kubeconfig")).unwrap();
}

/// The seed with `target` as its cluster target (a YAML flow mapping), `cluster` more of its
/// `cluster:` block (indented two spaces) and `platform` as its platform block.
pub fn write_seed_lab_on(dir: &Path, target: &str, cluster: &str, platform: &str) {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    for e in std::fs::read_dir(&seed).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let mut text = std::fs::read_to_string(&p).unwrap();
        if p.file_name().unwrap() == "lab.yaml" {
            text = text.replace("  cluster: {kind: local}", &format!("  cluster: {target}"));
        }
        if p.file_name().unwrap() == "cluster.yaml" {
            text = text
                .replace("{env: WIREGUARD_PRIVATE_KEY}", "{env: PATH}")
                .replace(
                    "  metallb:\n    pools:",
                    &format!("{cluster}  metallb:\n    namespace: lb-system\n    pools:"),
                )
                .replace(
                    "      secret: tls-secret\n",
                    "      cluster_issuer: letsencrypt\n",
                );
            text.push_str(platform);
        }
        std::fs::write(dir.join(p.file_name().unwrap()), text).unwrap();
    }
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/postmaster-password"), "pw").unwrap();
}

/// The platform block: every component at a release this build does not know, so the lab
/// gives its files; MetalLB, Traefik, cert-manager and Calico through the mirror, csi-driver-nfs
/// from the lab's own files.
pub fn platform_block(mirror: &str, files: &Files, metallb_version: &str, extra: &str) -> String {
    let f =
        |url: &str, text: &str| format!("{{url: \"{url}\", sha256: {}}}", sha256(text.as_bytes()));
    let metallb = if metallb_version == "v9.1.0" {
        &files.metallb
    } else {
        &files.metallb2
    };
    format!(
        "  platform:\n    mirror: {mirror}\n    registry: reg.lan:5000\n\
         \x20   calico: {{enabled: true, version: v9.0.0, files: [{}]}}\n\
         \x20   metallb: {{version: {metallb_version}, node_selector: {{role: infra}}, files: [{}]}}\n\
         \x20   traefik: {{version: v9.3.0, files: [{}, {}]}}\n\
         \x20   csi_driver_nfs: {{enabled: true, version: v9.4.0, files: [{}, {}, {}, {}]}}\n\
         \x20   cert_manager:\n      version: v9.5.0\n      files: [{}]\n      acme: {{email: admin@example.com, cloudflare: {{env: PATH}}}}\n{extra}",
        f("https://releases.invalid/calico/calico.yaml", &files.calico),
        f(
            "https://releases.invalid/metallb/config/manifests/metallb-native.yaml",
            metallb
        ),
        f(
            "https://releases.invalid/traefik/kubernetes-crd-definition-v1.yml",
            &files.traefik.0
        ),
        f(
            "https://releases.invalid/traefik/kubernetes-crd-rbac.yml",
            &files.traefik.1
        ),
        f("releases/rbac-csi-nfs.yaml", &files.csi[0]),
        f("releases/csi-nfs-driverinfo.yaml", &files.csi[1]),
        f("releases/csi-nfs-controller.yaml", &files.csi[2]),
        f("releases/csi-nfs-node.yaml", &files.csi[3]),
        f(
            "https://github.invalid/cert-manager/releases/download/v9.5.0/cert-manager.yaml",
            &files.cert_manager
        ),
    )
}

pub struct Files {
    pub calico: String,
    pub metallb: String,
    pub metallb2: String,
    pub traefik: (String, String),
    pub csi: [String; 4],
    pub cert_manager: String,
}

impl Files {
    /// The stand-ins, their webhooks reached as `hook` says.
    pub fn new(hook: &Webhook) -> Files {
        Files {
            calico: calico("v9.0.0"),
            metallb: metallb("v9.1.0", hook, "v1beta1"),
            // The newer release stores its CRDs as v1beta2.
            metallb2: metallb("v9.2.0", hook, "v1beta2"),
            traefik: traefik(),
            csi: csi_driver_nfs("v9.4.0"),
            cert_manager: cert_manager("v9.5.0", hook),
        }
    }

    /// Puts the mirrored files on `mirror` and the lab's own into `dir/releases`.
    pub fn serve(&self, mirror: &FileServer, dir: &Path) {
        mirror.put("/mirror/calico/v9.0.0/calico.yaml", self.calico.clone());
        mirror.put(
            "/mirror/metallb/v9.1.0/metallb-native.yaml",
            self.metallb.clone(),
        );
        mirror.put(
            "/mirror/metallb/v9.2.0/metallb-native.yaml",
            self.metallb2.clone(),
        );
        mirror.put(
            "/mirror/traefik/v9.3.0/kubernetes-crd-definition-v1.yml",
            self.traefik.0.clone(),
        );
        mirror.put(
            "/mirror/traefik/v9.3.0/kubernetes-crd-rbac.yml",
            self.traefik.1.clone(),
        );
        mirror.put(
            "/mirror/cert_manager/v9.5.0/cert-manager.yaml",
            self.cert_manager.clone(),
        );
        std::fs::create_dir_all(dir.join("releases")).unwrap();
        for (name, text) in [
            "rbac-csi-nfs.yaml",
            "csi-nfs-driverinfo.yaml",
            "csi-nfs-controller.yaml",
            "csi-nfs-node.yaml",
        ]
        .iter()
        .zip(&self.csi)
        {
            std::fs::write(dir.join("releases").join(name), text).unwrap();
        }
    }
}
