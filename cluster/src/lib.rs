//! cloudlet's cluster domain: the Kubernetes objects a lab implies.
//!
//! [`expand`] turns apps, MetalLB pools and the ingress settings into plain Kubernetes
//! manifests (as JSON): a Namespace per app namespace, a Deployment, a ClusterIP Service,
//! LoadBalancer Services with pinned VIPs and sharing keys, an Ingress with
//! `ingressClassName` and TLS, static NFS PersistentVolumes bound to their claims, a
//! default-deny NetworkPolicy with the allowances the app needs, Secrets as references, and
//! MetalLB's `IPAddressPool` / `L2Advertisement` in MetalLB's namespace. Every object carries
//! cloudlet's labels so it can be found and pruned without a state file.

use std::collections::{BTreeMap, BTreeSet};

use cloudlet_core::lb::{self, APP_LABEL};
use cloudlet_core::model::{App, Lab, Protocol, SecretRef, TrafficPolicy};
use cloudlet_core::{Domain, Resource, ResourceId};
use serde_json::{Value, json};

/// The label saying cloudlet manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The label naming the lab an object belongs to.
pub const LAB_LABEL: &str = "cloudlet.dev/lab";
/// NFS mount options that fail fast instead of hanging for minutes (the seed's lesson):
/// NFSv4, soft mounts, 3 s timeout, 3 retries. The trade-off: a NAS outage surfaces as I/O
/// errors in the app rather than a hung process.
pub const NFS_MOUNT_OPTIONS: [&str; 4] = ["nfsvers=4", "soft", "timeo=30", "retrans=3"];

fn id(kind: &str, ns: Option<&str>, name: &str) -> ResourceId {
    let n = match ns {
        Some(ns) => format!("{ns}.{name}"),
        None => name.to_string(),
    };
    ResourceId::new(Domain::Cluster, kind, n)
}

fn labels(lab: &Lab, extra: &[(&str, &str)]) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(MANAGED_BY_LABEL.into(), "cloudlet".into());
    m.insert(LAB_LABEL.into(), lab.name.clone().into());
    for (k, v) in extra {
        m.insert((*k).into(), (*v).into());
    }
    Value::Object(m)
}

fn meta(lab: &Lab, ns: Option<&str>, name: &str, extra: &[(&str, &str)]) -> Value {
    let mut m = json!({"name": name, "labels": labels(lab, extra)});
    if let Some(ns) = ns {
        m["namespace"] = ns.into();
    }
    m
}

/// The desired Kubernetes objects of a lab.
pub fn expand(lab: &Lab) -> Vec<Resource> {
    let Some(c) = &lab.cluster else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut namespaces: BTreeSet<String> = BTreeSet::new();

    if let Some(m) = &c.metallb {
        namespaces.insert(m.namespace.clone());
        let mut pool_names = Vec::new();
        for (name, pool) in &m.pools {
            pool_names.push(name.clone());
            let addresses: Vec<String> = pool.addresses.iter().map(ToString::to_string).collect();
            out.push(
                Resource::new(
                    id("ipaddresspool", Some(&m.namespace), name),
                    json!({
                        "apiVersion": "metallb.io/v1beta1",
                        "kind": "IPAddressPool",
                        "metadata": meta(lab, Some(&m.namespace), name, &[]),
                        "spec": {"addresses": addresses, "autoAssign": pool.auto_assign},
                    }),
                )
                .after(id("namespace", None, &m.namespace)),
            );
        }
        let mut adv = Resource::new(
            id("l2advertisement", Some(&m.namespace), "cloudlet"),
            json!({
                "apiVersion": "metallb.io/v1beta1",
                "kind": "L2Advertisement",
                "metadata": meta(lab, Some(&m.namespace), "cloudlet", &[]),
                "spec": {"ipAddressPools": pool_names},
            }),
        )
        .after(id("namespace", None, &m.namespace));
        for p in &pool_names {
            adv = adv.after(id("ipaddresspool", Some(&m.namespace), p));
        }
        out.push(adv);
    }

    let lbs = lb::services(lab);
    for s in &lbs {
        namespaces.insert(s.namespace.clone());
        let mut ann = serde_json::Map::new();
        ann.insert("metallb.io/loadBalancerIPs".into(), s.ip.to_string().into());
        if !s.sharing_key.is_empty() {
            ann.insert("metallb.io/allow-shared-ip".into(), s.sharing_key.clone().into());
        }
        let ports: Vec<Value> = s
            .ports
            .iter()
            .map(|(proto, port, target, _)| {
                json!({
                    "name": format!("{}-{port}", proto.as_str()),
                    "protocol": proto.k8s(),
                    "port": port,
                    "targetPort": target,
                })
            })
            .collect();
        let selector: serde_json::Map<String, Value> =
            s.selector.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        let mut m = meta(lab, Some(&s.namespace), &s.name, &[]);
        m["annotations"] = Value::Object(ann);
        out.push(
            Resource::new(
                id("service", Some(&s.namespace), &s.name),
                json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": m,
                    "spec": {
                        "type": "LoadBalancer",
                        "externalTrafficPolicy": match s.traffic_policy {
                            TrafficPolicy::Cluster => "Cluster",
                            TrafficPolicy::Local => "Local",
                        },
                        "selector": selector,
                        "ports": ports,
                    },
                }),
            )
            .after(id("namespace", None, &s.namespace)),
        );
    }

    for (name, app) in &c.apps {
        let ns = Lab::app_namespace(name, app).to_string();
        namespaces.insert(ns.clone());
        out.extend(app_objects(lab, name, app, &ns));
    }

    if c.network_policy.default_deny {
        let ingress_ns = c.ingress.as_ref().map(|i| i.namespace.clone());
        let mut per_ns: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (name, app) in &c.apps {
            per_ns.entry(Lab::app_namespace(name, app).to_string()).or_default().push(name);
        }
        // app -> namespaces of the apps that depend on it
        let mut dependants_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (other, oapp) in &c.apps {
            for d in &oapp.depends_on {
                dependants_of
                    .entry(d.as_str())
                    .or_default()
                    .push(Lab::app_namespace(other, oapp));
            }
        }
        for (ns, apps) in per_ns {
            out.push(network_policy(lab, c, &ns, &apps, ingress_ns.as_deref(), &dependants_of));
        }
    }

    for ns in namespaces {
        out.push(Resource::new(
            id("namespace", None, &ns),
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": meta(lab, None, &ns, &[]),
            }),
        ));
    }
    out
}

fn app_objects(lab: &Lab, name: &str, app: &App, ns: &str) -> Vec<Resource> {
    let c = lab.cluster.as_ref();
    let nsid = id("namespace", None, ns);
    let mut out = Vec::new();
    let app_label = [(APP_LABEL, name)];
    let mut deploy_deps = vec![nsid.clone()];

    let mut env: Vec<Value> = app
        .env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    if !app.secrets.is_empty() {
        let secret_name = format!("{name}-secrets");
        let refs: serde_json::Map<String, Value> = app
            .secrets
            .iter()
            .map(|(k, r)| {
                let v = match r {
                    SecretRef::Env(e) => json!({"env": e}),
                    SecretRef::File(f) => json!({"file": f.display().to_string()}),
                };
                (k.clone(), v)
            })
            .collect();
        let sid = id("secret", Some(ns), &secret_name);
        // The body holds references only; the provider reads the values at apply time.
        out.push(
            Resource::new(
                sid.clone(),
                json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": meta(lab, Some(ns), &secret_name, &app_label),
                    "type": "Opaque",
                    "cloudlet.dev/secretRefs": refs,
                }),
            )
            .after(nsid.clone()),
        );
        deploy_deps.push(sid);
        for k in app.secrets.keys() {
            env.push(json!({"name": k, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": k}}}));
        }
    }

    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for v in &app.volumes {
        let Some(export) = lab.storage.as_ref().and_then(|s| s.exports.get(&v.export)) else {
            continue;
        };
        let server = lab
            .storage
            .as_ref()
            .and_then(|s| s.address.or_else(|| s.machine.as_deref().and_then(|m| lab.machine_ip(m))))
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let sub = v.sub_path.clone().unwrap_or_else(|| format!("{name}/{}", v.name));
        let pv_name = format!("{ns}-{name}-{}", v.name);
        let pvc_name = format!("{name}-{}", v.name);
        let pvid = id("persistentvolume", None, &pv_name);
        out.push(Resource::new(
            pvid.clone(),
            json!({
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": meta(lab, None, &pv_name, &app_label),
                "spec": {
                    "capacity": {"storage": format!("{}Mi", v.size.mib())},
                    "accessModes": ["ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "mountOptions": NFS_MOUNT_OPTIONS,
                    "nfs": {"server": server, "path": format!("{}/{sub}", export.path.trim_end_matches('/'))},
                    "claimRef": {"namespace": ns, "name": pvc_name},
                    "storageClassName": "",
                },
            }),
        ));
        let pvcid = id("persistentvolumeclaim", Some(ns), &pvc_name);
        out.push(
            Resource::new(
                pvcid.clone(),
                json!({
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": meta(lab, Some(ns), &pvc_name, &app_label),
                    "spec": {
                        "accessModes": ["ReadWriteMany"],
                        "resources": {"requests": {"storage": format!("{}Mi", v.size.mib())}},
                        "volumeName": pv_name,
                        "storageClassName": "",
                    },
                }),
            )
            .after(nsid.clone())
            .after(pvid),
        );
        deploy_deps.push(pvcid);
        volumes.push(json!({"name": v.name, "persistentVolumeClaim": {"claimName": pvc_name}}));
        mounts.push(json!({"name": v.name, "mountPath": v.mount}));
    }

    let ports: Vec<Value> = app
        .ports
        .iter()
        .map(|p| json!({"name": p.port_name(), "containerPort": p.port, "protocol": p.protocol.k8s()}))
        .collect();
    let mut container = json!({"name": name, "image": app.image, "ports": ports});
    if !env.is_empty() {
        container["env"] = env.into();
    }
    if !mounts.is_empty() {
        container["volumeMounts"] = mounts.into();
    }
    if let Some(r) = &app.resources {
        let mut req = serde_json::Map::new();
        if let Some(cpu) = &r.cpu {
            req.insert("cpu".into(), cpu.clone().into());
        }
        if let Some(mem) = &r.memory {
            req.insert("memory".into(), mem.clone().into());
        }
        container["resources"] = json!({"requests": req});
    }
    let mut pod_spec = json!({"containers": [container]});
    if !volumes.is_empty() {
        pod_spec["volumes"] = volumes.into();
    }
    let mut dep = Resource::new(
        id("deployment", Some(ns), name),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(lab, Some(ns), name, &app_label),
            "spec": {
                "replicas": app.replicas,
                "selector": {"matchLabels": {APP_LABEL: name}},
                "template": {
                    "metadata": {"labels": {APP_LABEL: name}},
                    "spec": pod_spec,
                },
            },
        }),
    );
    for d in deploy_deps {
        dep = dep.after(d);
    }
    out.push(dep);

    if !app.ports.is_empty() {
        let ports: Vec<Value> = app
            .ports
            .iter()
            .map(|p| json!({"name": p.port_name(), "port": p.port, "targetPort": p.port, "protocol": p.protocol.k8s()}))
            .collect();
        out.push(
            Resource::new(
                id("service", Some(ns), name),
                json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": meta(lab, Some(ns), name, &app_label),
                    "spec": {"type": "ClusterIP", "selector": {APP_LABEL: name}, "ports": ports},
                }),
            )
            .after(nsid.clone()),
        );
    }

    if let (false, Some(ing)) = (app.ingress.is_empty(), c.and_then(|c| c.ingress.as_ref())) {
        let default_port = app.ports.iter().find(|p| p.protocol == Protocol::Tcp).map(|p| p.port);
        let mut hosts: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for r in &app.ingress {
            let port = r.port.or(default_port).unwrap_or(80);
            hosts.entry(r.host.as_str()).or_default().push(json!({
                "path": r.path,
                "pathType": "Prefix",
                "backend": {"service": {"name": name, "port": {"number": port}}},
            }));
        }
        let rules: Vec<Value> = hosts
            .iter()
            .map(|(h, paths)| json!({"host": h, "http": {"paths": paths}}))
            .collect();
        let mut m = meta(lab, Some(ns), name, &app_label);
        let mut spec = json!({"ingressClassName": ing.class, "rules": rules});
        if let Some(tls) = &ing.tls {
            let host_list: Vec<&str> = hosts.keys().copied().collect();
            match (&tls.cluster_issuer, &tls.secret) {
                (Some(issuer), _) => {
                    m["annotations"] = json!({"cert-manager.io/cluster-issuer": issuer});
                    spec["tls"] = json!([{"hosts": host_list, "secretName": format!("{name}-tls")}]);
                }
                (None, Some(secret)) => {
                    spec["tls"] = json!([{"hosts": host_list, "secretName": secret}]);
                }
                (None, None) => {}
            }
        }
        out.push(
            Resource::new(
                id("ingress", Some(ns), name),
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": m, "spec": spec}),
            )
            .after(nsid)
            .after(id("service", Some(ns), name)),
        );
    }
    out
}

fn network_policy(
    lab: &Lab,
    c: &cloudlet_core::model::Cluster,
    ns: &str,
    apps: &[&str],
    ingress_ns: Option<&str>,
    dependants_of: &BTreeMap<&str, Vec<&str>>,
) -> Resource {
    let mut rules: Vec<Value> = vec![json!({"from": [{"podSelector": {}}]})];
    let mut routed = false;
    let mut exposed: Vec<Value> = Vec::new();
    let mut dependants: BTreeSet<String> = BTreeSet::new();
    for name in apps {
        let Some(app) = c.apps.get(*name) else { continue };
        routed |= !app.ingress.is_empty();
        for p in &app.ports {
            if p.expose != cloudlet_core::model::Expose::Cluster {
                exposed.push(json!({"protocol": p.protocol.k8s(), "port": p.port}));
            }
        }
        for ons in dependants_of.get(*name).into_iter().flatten() {
            if *ons != ns {
                dependants.insert((*ons).to_string());
            }
        }
    }
    if let (true, Some(ins)) = (routed, ingress_ns) {
        rules.push(json!({"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ins}}}]}));
    }
    if !exposed.is_empty() {
        rules.push(json!({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": exposed}));
    }
    for d in dependants {
        rules.push(json!({"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": d}}}]}));
    }
    Resource::new(
        id("networkpolicy", Some(ns), "default-deny"),
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta(lab, Some(ns), "default-deny", &[]),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": rules},
        }),
    )
    .after(id("namespace", None, ns))
}
