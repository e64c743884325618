//! cloudlet's cluster domain: the Kubernetes objects a lab implies.
//!
//! [`expand`] turns apps, MetalLB pools and the ingress settings into plain Kubernetes
//! manifests: a Namespace per app namespace, a Deployment, a ClusterIP Service,
//! LoadBalancer Services with pinned VIPs and sharing keys, an Ingress with
//! `ingressClassName` and TLS, static NFS PersistentVolumes bound to their claims, a
//! default-deny NetworkPolicy with the allowances the app needs, Secrets as references, and
//! MetalLB's `IPAddressPool` / `L2Advertisement` in MetalLB's namespace. Every object carries
//! cloudlet's labels so it can be found and pruned without a state file.

#[cfg(feature = "client")]
pub mod bootstrap;
#[cfg(feature = "client")]
pub mod bootstrap_token;
pub mod compose;
#[cfg(feature = "client")]
pub mod doctor;
#[cfg(feature = "client")]
mod fields;
#[cfg(feature = "client")]
pub mod health;
#[cfg(feature = "client")]
pub mod identity;
mod k8s;
pub mod kube_provider;
#[cfg(feature = "client")]
pub mod kubeadm;
pub mod kubeadm_provider;
#[cfg(feature = "client")]
pub mod lease;
pub mod manifests;
#[cfg(feature = "client")]
pub mod metallb;
pub mod nodes;
#[cfg(feature = "client")]
pub mod objects;
pub mod platform;
pub mod volume_backup;
#[cfg(feature = "client")]
pub mod volume_restore;
#[cfg(feature = "client")]
pub mod watcher;

pub use kube_provider::BACKEND;
#[cfg(feature = "client")]
pub use kube_provider::{
    FIELD_MANAGER, KubeOptions, KubeProvider, KubeStats, PART_OF_LABEL, applyset_id,
};

use std::collections::{BTreeMap, BTreeSet};

use cloudlet_core::lb;
use cloudlet_core::model::{
    App, Cluster, Expose, Lab, Protocol, SecretRef, TrafficPolicy, Workload,
};
use cloudlet_core::resource::Body;
use cloudlet_core::{Domain, Resource, ResourceId};
use k8s::*;
use rayon::prelude::*;

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

/// The id of an app's workload: its StatefulSet, or its Deployment.
pub fn workload_id(name: &str, app: &App) -> ResourceId {
    let kind = if app.workload == Workload::Statefulset {
        "statefulset"
    } else {
        "deployment"
    };
    id(kind, Some(Lab::app_namespace(name, app)), name)
}

/// The StorageClass of a dynamic export.
pub fn storage_class_name(export: &str) -> String {
    format!("nfs-{export}")
}

/// The id of a dynamic export's StorageClass.
pub fn storage_class_id(export: &str) -> ResourceId {
    id("storageclass", None, &storage_class_name(export))
}

/// csi-driver-nfs StorageClasses for the lab's dynamic exports: the share is the export, each
/// claim gets `NAMESPACE/CLAIM` below it, volumes are retained, mounts fail fast.
fn storage_classes(lab: &Lab, out: &mut Vec<Resource>) {
    let Some(st) = &lab.storage else { return };
    let server = st
        .address
        .or_else(|| st.machine.as_deref().and_then(|m| lab.machine_ip(m)))
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    for (name, e) in st.exports.iter().filter(|(_, e)| e.dynamic) {
        let sc = storage_class_name(name);
        let metadata = serde_json::to_value(meta(lab, None, sc.as_str(), None)).unwrap_or_default();
        out.push(Resource::new(
            storage_class_id(name),
            Body::new(&serde_json::json!({
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": metadata,
                "provisioner": "nfs.csi.k8s.io",
                "parameters": {
                    "server": server,
                    "share": e.path,
                    "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}",
                    "onDelete": "retain",
                },
                "reclaimPolicy": "Retain",
                "volumeBindingMode": "Immediate",
                "allowVolumeExpansion": true,
                "mountOptions": NFS_MOUNT_OPTIONS,
            })),
        ));
    }
}

/// The id of the PersistentVolume of an app volume.
pub fn volume_pv_id(namespace: &str, app: &str, volume: &str) -> ResourceId {
    id(
        "persistentvolume",
        None,
        &format!("{namespace}-{app}-{volume}"),
    )
}

fn meta<'a>(
    lab: &'a Lab,
    ns: Option<&'a str>,
    name: impl Into<String>,
    app: Option<&'a str>,
) -> Meta<'a> {
    Meta {
        annotations: BTreeMap::new(),
        labels: Labels {
            managed_by: "cloudlet",
            app,
            lab: &lab.name,
        },
        name: name.into(),
        namespace: ns,
    }
}

/// A Secret's reference, as the provider reads it at apply time: a value (a password, a
/// key), read as cloudlet reads it everywhere ([`SecretRef::read`]: a file's text without
/// surrounding whitespace), so the pod and cloudlet agree on it.
pub(crate) fn secret_ref(r: &SecretRef) -> BTreeMap<&'static str, String> {
    BTreeMap::from([match r {
        SecretRef::Env(e) => ("env", e.clone()),
        SecretRef::File(f) => ("file", f.display().to_string()),
    }])
}

/// A reference to a file that a pod mounts as a file (an SSH key, a CA certificate): its
/// bytes as they are — an OpenSSH key without its last newline does not load.
pub(crate) fn verbatim_file_ref(f: &std::path::Path) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("file", f.display().to_string()),
        ("verbatim", "true".to_string()),
    ])
}

/// A Secret of app `app` in `ns` whose body holds references only (the provider reads the
/// values at apply time), after its namespace; its id.
pub(crate) fn secret_refs<'a>(
    lab: &'a Lab,
    ns: &'a str,
    name: &str,
    app: &'a str,
    refs: BTreeMap<&'a str, BTreeMap<&'static str, String>>,
    out: &mut Vec<Resource>,
) -> ResourceId {
    let sid = id("secret", Some(ns), name);
    out.push(
        Resource::new(
            sid.clone(),
            Body::new(&SecretRefs {
                api_version: "v1",
                refs,
                kind: "Secret",
                metadata: meta(lab, Some(ns), name, Some(app)),
                type_: "Opaque",
            }),
        )
        .after(id("namespace", None, ns)),
    );
    sid
}

fn object<S: serde::Serialize>(
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta<'_>,
    spec: Option<S>,
) -> Body {
    Body::new(&Object {
        api_version,
        kind,
        metadata,
        spec,
    })
}

/// The desired Kubernetes objects of a lab.
pub fn expand(lab: &Lab) -> Vec<Resource> {
    let Some(c) = &lab.cluster else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(c.apps.len() * 9 + 8);
    let mut namespaces: BTreeSet<&str> = BTreeSet::new();

    if let Some(m) = &c.metallb {
        let ns = m.namespace.as_str();
        namespaces.insert(ns);
        let nsid = id("namespace", None, ns);
        let mut adv = Resource::new(
            id("l2advertisement", Some(ns), "cloudlet"),
            object(
                "metallb.io/v1beta1",
                "L2Advertisement",
                meta(lab, Some(ns), "cloudlet", None),
                Some(L2Spec {
                    pools: m.pools.keys().cloned().collect(),
                }),
            ),
        )
        .after(nsid.clone());
        for (name, pool) in &m.pools {
            let pid = id("ipaddresspool", Some(ns), name);
            out.push(
                Resource::new(
                    pid.clone(),
                    object(
                        "metallb.io/v1beta1",
                        "IPAddressPool",
                        meta(lab, Some(ns), name.as_str(), None),
                        Some(PoolSpec {
                            addresses: pool.addresses.iter().map(ToString::to_string).collect(),
                            auto_assign: pool.auto_assign,
                        }),
                    ),
                )
                .after(nsid.clone()),
            );
            adv = adv.after(pid);
        }
        out.push(adv);
    }

    storage_classes(lab, &mut out);

    let lbs = lb::services(lab);
    for s in &lbs {
        namespaces.insert(s.namespace.as_str());
        let mut m = meta(lab, Some(&s.namespace), s.name.as_str(), None);
        m.annotations
            .insert("metallb.io/loadBalancerIPs", s.ip.to_string());
        if !s.sharing_key.is_empty() {
            m.annotations
                .insert("metallb.io/allow-shared-ip", s.sharing_key.clone());
        }
        let selector: BTreeMap<&str, &str> = s
            .selector
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let spec = ServiceSpec {
            external_traffic_policy: Some(match s.traffic_policy {
                TrafficPolicy::Cluster => "Cluster",
                TrafficPolicy::Local => "Local",
            }),
            ports: s
                .ports
                .iter()
                .map(|(proto, port, target, _)| ServicePort {
                    name: format!("{}-{port}", proto.as_str()),
                    port: *port,
                    protocol: proto.k8s(),
                    target_port: *target,
                })
                .collect(),
            selector,
            type_: "LoadBalancer",
        };
        out.push(
            Resource::new(
                id("service", Some(&s.namespace), &s.name),
                object("v1", "Service", m, Some(spec)),
            )
            .after(id("namespace", None, &s.namespace)),
        );
    }

    // Apps expand independently: spread them over the cores, keeping their order.
    let apps: Vec<(&String, &App)> = c.apps.iter().collect();
    namespaces.extend(apps.iter().map(|(name, app)| Lab::app_namespace(name, app)));
    let per_chunk: Vec<Vec<Resource>> = apps
        .par_chunks(64)
        .map(|chunk| {
            let mut v = Vec::with_capacity(chunk.len() * 9);
            for (name, app) in chunk {
                let ns = Lab::app_namespace(name, app);
                app_objects(lab, c, name, app, ns, &mut v);
                volume_backup::objects(lab, name, app, ns, &mut v);
            }
            v
        })
        .collect();
    for v in per_chunk {
        out.extend(v);
    }

    if c.network_policy.default_deny {
        let ingress_ns = c.ingress.as_ref().map(|i| i.namespace.as_str());
        let mut per_ns: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut dependants_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, app) in &c.apps {
            per_ns
                .entry(Lab::app_namespace(name, app))
                .or_default()
                .push(name);
            for d in &app.depends_on {
                dependants_of
                    .entry(d.as_str())
                    .or_default()
                    .push(Lab::app_namespace(name, app));
            }
        }
        for (ns, apps) in per_ns {
            out.push(network_policy(
                lab,
                c,
                ns,
                &apps,
                ingress_ns,
                &dependants_of,
            ));
        }
    }

    for ns in namespaces {
        out.push(Resource::new(
            id("namespace", None, ns),
            object::<()>("v1", "Namespace", meta(lab, None, ns, None), None),
        ));
    }
    out
}

fn app_objects(lab: &Lab, c: &Cluster, name: &str, app: &App, ns: &str, out: &mut Vec<Resource>) {
    let nsid = id("namespace", None, ns);
    let mut deploy_deps = vec![nsid.clone()];
    let mut env: Vec<EnvVar<'_>> = app
        .env
        .iter()
        .map(|(k, v)| EnvVar {
            name: k,
            value: Some(v),
            value_from: None,
        })
        .collect();
    // Secret files are keys `file-N` of the same Secret, mounted one by one.
    let secret_file_keys: Vec<String> = (0..app.secret_files.len())
        .map(|i| format!("file-{i}"))
        .collect();
    if !app.secrets.is_empty() || !app.secret_files.is_empty() {
        let secret_name = format!("{name}-secrets");
        // Values for the environment; files mounted as files keep their bytes.
        let refs = app
            .secrets
            .iter()
            .map(|(k, r)| (k.as_str(), secret_ref(r)))
            .chain(
                secret_file_keys
                    .iter()
                    .map(String::as_str)
                    .zip(app.secret_files.values())
                    .map(|(k, r)| {
                        (
                            k,
                            match r {
                                SecretRef::File(f) => verbatim_file_ref(f),
                                SecretRef::Env(_) => secret_ref(r),
                            },
                        )
                    }),
            )
            .collect();
        let sid = secret_refs(lab, ns, &secret_name, name, refs, out);
        deploy_deps.push(sid);
        for k in app.secrets.keys() {
            env.push(EnvVar {
                name: k,
                value: None,
                value_from: Some(ValueFrom {
                    secret_key_ref: KeyRef {
                        key: k,
                        name: secret_name.clone(),
                    },
                }),
            });
        }
    }

    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let storage = lab.storage.as_ref();
    let server = storage
        .and_then(|s| {
            s.address
                .or_else(|| s.machine.as_deref().and_then(|m| lab.machine_ip(m)))
        })
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    for v in &app.volumes {
        let Some(export) = storage.and_then(|s| s.exports.get(&v.export)) else {
            continue;
        };
        let sub = v
            .sub_path
            .clone()
            .unwrap_or_else(|| format!("{name}/{}", v.name));
        let pvid = volume_pv_id(ns, name, &v.name);
        let pvc_name = format!("{name}-{}", v.name);
        let size = quantity_mib(v.size.mib());
        // A dynamic export: csi-driver-nfs provisions the volume from the export's class.
        // Otherwise: a static PV of exactly this volume's directory, bound to the claim.
        let (class, volume_name, claim_dep) = if export.dynamic {
            (
                storage_class_name(&v.export),
                None,
                storage_class_id(&v.export),
            )
        } else {
            out.push(Resource::new(
                pvid.clone(),
                object(
                    "v1",
                    "PersistentVolume",
                    meta(lab, None, &*pvid.name, Some(name)),
                    Some(PvSpec {
                        access_modes: [v.access.kubernetes()],
                        capacity: Storage {
                            storage: size.clone(),
                        },
                        claim_ref: ClaimRef {
                            name: pvc_name.clone(),
                            namespace: ns,
                        },
                        mount_options: &NFS_MOUNT_OPTIONS,
                        nfs: Nfs {
                            path: format!("{}/{sub}", export.path.trim_end_matches('/')),
                            server: server.clone(),
                        },
                        reclaim: "Retain",
                    }),
                ),
            ));
            (String::new(), Some(pvid.name.to_string()), pvid)
        };
        let pvcid = id("persistentvolumeclaim", Some(ns), &pvc_name);
        out.push(
            Resource::new(
                pvcid.clone(),
                object(
                    "v1",
                    "PersistentVolumeClaim",
                    meta(lab, Some(ns), pvc_name.as_str(), Some(name)),
                    Some(PvcSpec {
                        access_modes: [v.access.kubernetes()],
                        resources: PvcRequests {
                            requests: Storage { storage: size },
                        },
                        storage_class: class,
                        volume_name,
                    }),
                ),
            )
            .after(nsid.clone())
            .after(claim_dep),
        );
        deploy_deps.push(pvcid);
        volumes.push(PodVolume {
            config_map: None,
            name: &v.name,
            pvc: Some(ClaimName {
                claim_name: pvc_name,
            }),
            secret: None,
        });
        mounts.push(VolumeMount {
            mount_path: &v.mount,
            name: &v.name,
            read_only: false,
            sub_path: None,
        });
    }
    if !app.files.is_empty() {
        // Configuration files: one ConfigMap, each file mounted on its own path.
        let cm_name = format!("{name}-files");
        let cmid = id("configmap", Some(ns), &cm_name);
        let refs = app
            .files
            .values()
            .enumerate()
            .map(|(i, f)| (format!("f{i}"), f.display().to_string()))
            .collect();
        out.push(
            Resource::new(
                cmid.clone(),
                Body::new(&FileRefs {
                    api_version: "v1",
                    refs,
                    kind: "ConfigMap",
                    metadata: meta(lab, Some(ns), cm_name.as_str(), Some(name)),
                }),
            )
            .after(nsid.clone()),
        );
        deploy_deps.push(cmid);
        volumes.push(PodVolume {
            config_map: Some(ConfigMapName { name: cm_name }),
            name: "cloudlet-files",
            pvc: None,
            secret: None,
        });
        for (i, mount) in app.files.keys().enumerate() {
            mounts.push(VolumeMount {
                mount_path: mount,
                name: "cloudlet-files",
                read_only: true,
                sub_path: Some(format!("f{i}")),
            });
        }
    }
    if !app.secret_files.is_empty() {
        volumes.push(PodVolume {
            config_map: None,
            name: "cloudlet-secret-files",
            pvc: None,
            secret: Some(SecretName {
                secret_name: format!("{name}-secrets"),
            }),
        });
        for (mount, key) in app.secret_files.keys().zip(&secret_file_keys) {
            mounts.push(VolumeMount {
                mount_path: mount,
                name: "cloudlet-secret-files",
                read_only: true,
                sub_path: Some(key.clone()),
            });
        }
    }

    let resources = app.resources.as_ref().map(|r| Requests {
        requests: [("cpu", r.cpu.as_deref()), ("memory", r.memory.as_deref())]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
    });
    let probe = |readiness: bool| {
        app.health.as_ref().map(|h| Probe {
            exec: Exec {
                command: &h.command,
            },
            // Readiness reacts at the first failure; liveness waits for the retries.
            failure_threshold: if readiness { 1 } else { h.retries.max(1) },
            initial_delay_seconds: h.start_period.0,
            period_seconds: h.interval.0.max(1),
            timeout_seconds: h.timeout.0.max(1),
        })
    };
    let container = Container {
        args: &app.args,
        command: &app.command,
        env,
        image: &app.image,
        liveness_probe: probe(false),
        readiness_probe: probe(true),
        name,
        ports: app
            .ports
            .iter()
            .map(|p| ContainerPort {
                container_port: p.port,
                name: p.port_name(),
                protocol: p.protocol.k8s(),
            })
            .collect(),
        resources,
        volume_mounts: mounts,
    };
    let stateful = app.workload == Workload::Statefulset;
    let spec = DeploymentSpec {
        replicas: app.replicas,
        service_name: stateful.then_some(name),
        selector: MatchLabels {
            match_labels: AppSelector { app: name },
        },
        template: PodTemplate {
            metadata: PodMeta {
                labels: AppSelector { app: name },
            },
            spec: PodSpec {
                containers: vec![container],
                volumes,
            },
        },
    };
    let (kind_id, kind) = if stateful {
        ("statefulset", "StatefulSet")
    } else {
        ("deployment", "Deployment")
    };
    let mut dep = Resource::new(
        id(kind_id, Some(ns), name),
        object(
            "apps/v1",
            kind,
            meta(lab, Some(ns), name, Some(name)),
            Some(spec),
        ),
    );
    dep.depends_on = deploy_deps;
    out.push(dep);

    let svc_id = id("service", Some(ns), name);
    if !app.ports.is_empty() {
        let spec = ServiceSpec {
            external_traffic_policy: None,
            ports: app
                .ports
                .iter()
                .map(|p| ServicePort {
                    name: p.port_name(),
                    port: p.port,
                    protocol: p.protocol.k8s(),
                    target_port: p.port,
                })
                .collect(),
            selector: AppSelector { app: name },
            type_: "ClusterIP",
        };
        out.push(
            Resource::new(
                svc_id.clone(),
                object(
                    "v1",
                    "Service",
                    meta(lab, Some(ns), name, Some(name)),
                    Some(spec),
                ),
            )
            .after(nsid.clone()),
        );
    }

    if let (false, Some(ing)) = (app.ingress.is_empty(), c.ingress.as_ref()) {
        let default_port = app
            .ports
            .iter()
            .find(|p| p.protocol == Protocol::Tcp)
            .map(|p| p.port);
        let mut hosts: BTreeMap<&str, Vec<HttpPath<'_>>> = BTreeMap::new();
        for r in &app.ingress {
            hosts.entry(r.host.as_str()).or_default().push(HttpPath {
                backend: Backend {
                    service: BackendService {
                        name,
                        port: PortNumber {
                            number: r.port.or(default_port).unwrap_or(80),
                        },
                    },
                },
                path: &r.path,
                path_type: "Prefix",
            });
        }
        let mut m = meta(lab, Some(ns), name, Some(name));
        let mut tls = Vec::new();
        if let Some(t) = &ing.tls {
            let host_list: Vec<&str> = hosts.keys().copied().collect();
            match (&t.cluster_issuer, &t.secret) {
                (Some(issuer), _) => {
                    m.annotations
                        .insert("cert-manager.io/cluster-issuer", issuer.clone());
                    tls.push(IngressTls {
                        hosts: host_list,
                        secret_name: format!("{name}-tls"),
                    });
                }
                (None, Some(secret)) => tls.push(IngressTls {
                    hosts: host_list,
                    secret_name: secret.clone(),
                }),
                (None, None) => {}
            }
        }
        let rules = hosts
            .into_iter()
            .map(|(host, paths)| IngressRule {
                host,
                http: HttpPaths { paths },
            })
            .collect();
        let spec = IngressSpec {
            class: &ing.class,
            rules,
            tls,
        };
        out.push(
            Resource::new(
                id("ingress", Some(ns), name),
                object("networking.k8s.io/v1", "Ingress", m, Some(spec)),
            )
            .after(nsid)
            .after(svc_id),
        );
    }
}

fn ns_peer(ns: &str) -> NetpolPeer {
    NetpolPeer {
        ip_block: None,
        namespace_selector: Some(NsSelector {
            match_labels: NsName {
                name: ns.to_string(),
            },
        }),
        pod_selector: None,
    }
}

fn network_policy(
    lab: &Lab,
    c: &Cluster,
    ns: &str,
    apps: &[&str],
    ingress_ns: Option<&str>,
    dependants_of: &BTreeMap<&str, Vec<&str>>,
) -> Resource {
    let mut rules = vec![NetpolRule {
        from: vec![NetpolPeer {
            ip_block: None,
            namespace_selector: None,
            pod_selector: Some(Empty {}),
        }],
        ports: Vec::new(),
    }];
    let mut routed = false;
    let mut exposed = Vec::new();
    let mut dependants: BTreeSet<&str> = BTreeSet::new();
    for name in apps {
        let Some(app) = c.apps.get(*name) else {
            continue;
        };
        routed |= !app.ingress.is_empty();
        for p in &app.ports {
            if p.expose != Expose::Cluster {
                exposed.push(NetpolPort {
                    port: p.port,
                    protocol: p.protocol.k8s(),
                });
            }
        }
        for ons in dependants_of.get(*name).into_iter().flatten() {
            if *ons != ns {
                dependants.insert(ons);
            }
        }
    }
    if let (true, Some(ins)) = (routed, ingress_ns) {
        rules.push(NetpolRule {
            from: vec![ns_peer(ins)],
            ports: Vec::new(),
        });
    }
    if !exposed.is_empty() {
        rules.push(NetpolRule {
            from: vec![NetpolPeer {
                ip_block: Some(IpBlock { cidr: "0.0.0.0/0" }),
                namespace_selector: None,
                pod_selector: None,
            }],
            ports: exposed,
        });
    }
    for d in dependants {
        rules.push(NetpolRule {
            from: vec![ns_peer(d)],
            ports: Vec::new(),
        });
    }
    Resource::new(
        id("networkpolicy", Some(ns), "default-deny"),
        object(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            meta(lab, Some(ns), "default-deny", None),
            Some(NetpolSpec {
                ingress: rules,
                pod_selector: Empty {},
                policy_types: ["Ingress"],
            }),
        ),
    )
    .after(id("namespace", None, ns))
}

/// What a reviewer needs to see of a new or removed Kubernetes object, on one line: a
/// workload's images and replicas, a Service's type, address and ports, an Ingress's hosts.
pub fn headline(r: &Resource) -> Option<String> {
    if &*r.id.kind == nodes::NODE_KIND {
        return nodes::headline(r);
    }
    let v = r.body.value();
    let spec = &v["spec"];
    match &*r.id.kind {
        "release" => Some(format!(
            "{} {} in {}, {} file(s) pinned by SHA-256",
            v["component"].as_str()?,
            v["version"].as_str()?,
            v["namespace"].as_str()?,
            v["files"].as_array()?.len()
        )),
        "daemonset" => {
            let images: Vec<&str> = spec["template"]["spec"]["containers"]
                .as_array()?
                .iter()
                .filter_map(|c| c["image"].as_str())
                .collect();
            Some(format!("{}, one pod per node", images.join(", ")))
        }
        "customresourcedefinition" => Some(format!(
            "{} ({})",
            spec["names"]["kind"].as_str()?,
            v["metadata"]["annotations"][platform::RELEASE_ANNOTATION]
                .as_str()
                .unwrap_or("the lab's manifests")
        )),
        "deployment" | "statefulset" => {
            let images: Vec<&str> = spec["template"]["spec"]["containers"]
                .as_array()?
                .iter()
                .filter_map(|c| c["image"].as_str())
                .collect();
            Some(format!(
                "{}, {} replica(s)",
                images.join(", "),
                spec["replicas"].as_u64().unwrap_or(1)
            ))
        }
        "service" => {
            let ports: Vec<String> = spec["ports"]
                .as_array()?
                .iter()
                .filter_map(|p| {
                    Some(format!(
                        "{}/{}",
                        p["port"].as_u64()?,
                        p["protocol"].as_str().unwrap_or("TCP")
                    ))
                })
                .collect();
            let ty = spec["type"].as_str().unwrap_or("ClusterIP");
            let vip = v["metadata"]["annotations"]["metallb.io/loadBalancerIPs"].as_str();
            Some(match vip {
                Some(ip) => format!("{ty} {ip}, ports {}", ports.join(" ")),
                None => format!("{ty}, ports {}", ports.join(" ")),
            })
        }
        "ingress" => {
            let hosts: Vec<&str> = spec["rules"]
                .as_array()?
                .iter()
                .filter_map(|r| r["host"].as_str())
                .collect();
            let tls = spec["tls"].as_array().is_some_and(|t| !t.is_empty());
            Some(format!(
                "{}{}",
                hosts.join(", "),
                if tls { " (TLS)" } else { "" }
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_is_canonical_and_shared_vips_are_pinned() {
        let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/seed");
        let lab = cloudlet_core::load(std::path::Path::new(seed)).unwrap().lab;
        let rs = expand(&lab);
        for r in &rs {
            assert!(
                r.body.is_canonical(),
                "{} is not canonical: {}",
                r.id,
                r.body.as_str()
            );
        }
        let wg = rs
            .iter()
            .find(|r| r.id.to_string() == "cluster/service/wireguard.wireguard-lb")
            .unwrap();
        let v = wg.body.value();
        assert_eq!(
            v["metadata"]["annotations"]["metallb.io/loadBalancerIPs"],
            "10.0.20.200"
        );
        assert_eq!(
            v["metadata"]["annotations"]["metallb.io/allow-shared-ip"],
            "shared"
        );
        assert_eq!(v["spec"]["ports"][0]["protocol"], "UDP");
        let pv = rs
            .iter()
            .find(|r| &*r.id.kind == "persistentvolume" && r.id.name.contains("mailserver"))
            .unwrap();
        let v = pv.body.value();
        assert_eq!(v["spec"]["mountOptions"][1], "soft");
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(v["spec"]["claimRef"]["name"], "mailserver-data");
        assert_eq!(v["spec"]["nfs"]["server"], "10.0.20.30");
        let ing = rs
            .iter()
            .find(|r| r.id.to_string() == "cluster/ingress/blog.blog")
            .unwrap();
        let v = ing.body.value();
        assert_eq!(v["spec"]["ingressClassName"], "traefik");
        assert_eq!(v["spec"]["tls"][0]["secretName"], "tls-secret");
        let sec = rs
            .iter()
            .find(|r| &*r.id.kind == "secret" && r.id.name.starts_with("mailserver"))
            .unwrap();
        assert!(
            sec.body
                .as_str()
                .contains("\"file\":\"secrets/postmaster-password\"")
        );
        assert!(
            !sec.body.as_str().contains("\"data\""),
            "secret values never in a body"
        );
    }
}
