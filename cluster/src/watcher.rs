//! `cloudlet watch` in the lab's own cluster (`watch:` in the lab): a Deployment whose
//! replicas elect a leader through the watch's Lease, each running
//! `cloudlet watch /lab --in-cluster`.
//!
//! - The lab's files (its YAML, compose files, manifests: what cloudlet read) are a ConfigMap,
//!   mounted back at [`LAB_DIR`] at the paths they have under the lab's directory.
//! - What the lab reads besides ([`cloudlet_core::refs`]: backends' credentials and CAs, app
//!   secrets, backup keys, webhook URLs) is a Secret of references, its values read where the
//!   lab says when the lab is applied — never in the plan. A file comes back at the path the
//!   lab names it by (relative ones under [`LAB_DIR`], absolute ones where they are), a variable
//!   as the same variable of the pod.
//! - The cluster is reached through the pod's service account, never the cluster target's
//!   credentials (an SSH key, an admin kubeconfig), which stay out of the cluster. It reads
//!   every object (`get`, `list`, `watch` on all kinds: drift compares what the lab owns, Secrets
//!   included), deletes pods with `stuck_pods`, holds `cluster-admin` with `drift` (an apply
//!   writes what the lab has), and writes only its own Leases in `default`.
//! - The pod runs with no capabilities but binding privileged ports (the NFS check asks from a
//!   privileged port, as a mount does), a read-only root, its state on an emptyDir; a change of
//!   the lab's files rolls the pods (their hash is on the pod template).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use cloudlet_core::model::{Lab, RemediateKind, SecretRef};
use cloudlet_core::resource::Body;
use cloudlet_core::{Resource, ResourceId};
use serde_json::json;

use crate::{id, meta, secret_refs, verbatim_file_ref};

/// The namespace of the watch.
pub const NAMESPACE: &str = "cloudlet";
/// The name of its Deployment, ServiceAccount and Secret (its ConfigMap is `watch-lab`).
pub const NAME: &str = "watch";
/// Where the lab's files are in the pod.
pub const LAB_DIR: &str = "/lab";
/// The watch's state directory in the pod (an emptyDir).
pub const STATE_DIR: &str = "/var/lib/cloudlet";
/// The port of `/metrics` and `/healthz`.
pub const METRICS_PORT: u16 = 9464;

/// The name of the lab's watch's ClusterRole, ClusterRoleBinding, Role and RoleBinding.
pub fn rbac_name(lab: &str) -> String {
    format!("cloudlet-{lab}-watch")
}

/// Where a file the lab names by `path` is in the pod: under [`LAB_DIR`] when relative (`..`
/// resolved), where it is when absolute.
pub fn pod_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::from(LAB_DIR);
    if path.is_absolute() {
        out = PathBuf::from("/");
    }
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The watch's objects, when the lab has `watch`: `files` are the lab's own files (path
/// relative to its directory, text), `entry` what `cloudlet watch` is given under
/// [`LAB_DIR`] (empty for the directory, else the lab's file).
pub fn objects(lab: &Lab, files: &[(PathBuf, &str)], entry: &str) -> Vec<Resource> {
    let Some(w) = &lab.watch else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let ns = NAMESPACE;
    let app = "cloudlet-watch";
    let nsid = id("namespace", None, ns);
    let value = |m: crate::k8s::Meta<'_>| serde_json::to_value(m).unwrap_or_default();
    out.push(Resource::new(
        nsid.clone(),
        Body::new(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": value(meta(lab, None, ns, None))})),
    ));
    let said = id("serviceaccount", Some(ns), NAME);
    out.push(
        Resource::new(
            said.clone(),
            Body::new(&json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": value(meta(lab, Some(ns), NAME, Some(app)))})),
        )
        .after(nsid.clone()),
    );

    // Reading everything; deleting pods when it may; cluster-admin when it re-applies.
    let rbac = rbac_name(&lab.name);
    let subject = json!([{"kind": "ServiceAccount", "name": NAME, "namespace": ns}]);
    let drift = w.remediate.contains(&RemediateKind::Drift);
    let mut bound: Vec<ResourceId> = vec![said.clone()];
    let cluster_role = if drift {
        "cluster-admin".to_string()
    } else {
        let mut rules = vec![
            json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}),
        ];
        if w.remediate.contains(&RemediateKind::StuckPods) {
            rules.push(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}));
        }
        let crid = id("clusterrole", None, &rbac);
        out.push(Resource::new(
            crid.clone(),
            Body::new(
                &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": value(meta(lab, None, rbac.as_str(), Some(app))), "rules": rules}),
            ),
        ));
        bound.push(crid);
        rbac.clone()
    };
    let mut crb = Resource::new(
        id("clusterrolebinding", None, &rbac),
        Body::new(
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": value(meta(lab, None, rbac.as_str(), Some(app))),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": subject}),
        ),
    );
    crb.depends_on = bound.clone();
    out.push(crb);
    // Its Leases (the watch's, and the apply's when it re-applies) in `default`, by name.
    let leases = [
        crate::lease::watch_lease(&lab.name),
        crate::lease::apply_lease(&lab.name),
    ];
    let rid = id("role", Some(crate::lease::NAMESPACE), &rbac);
    out.push(Resource::new(
        rid.clone(),
        Body::new(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": value(meta(lab, Some(crate::lease::NAMESPACE), rbac.as_str(), Some(app))),
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update", "patch"], "resourceNames": leases},
            ]})),
    ));
    let mut rb = Resource::new(
        id("rolebinding", Some(crate::lease::NAMESPACE), &rbac),
        Body::new(
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": value(meta(lab, Some(crate::lease::NAMESPACE), rbac.as_str(), Some(app))),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": rbac},
            "subjects": subject}),
        ),
    );
    rb.depends_on = vec![rid, said.clone()];
    out.push(rb);

    // The lab's files, back at their paths under /lab.
    let cmid = id("configmap", Some(ns), "watch-lab");
    let mut data = BTreeMap::new();
    let mut lab_items = Vec::new();
    let mut hashed: Vec<u8> = Vec::new();
    for (i, (path, text)) in files.iter().enumerate() {
        let key = format!("f{i}");
        let at = pod_path(path);
        let rel = at
            .strip_prefix(LAB_DIR)
            .unwrap_or(&at)
            .display()
            .to_string();
        for part in [rel.as_bytes(), text.as_bytes()] {
            hashed.extend_from_slice(part);
            hashed.push(0);
        }
        lab_items.push(json!({"key": key, "path": rel}));
        data.insert(key, (*text).to_string());
    }
    out.push(
        Resource::new(
            cmid.clone(),
            Body::new(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": value(meta(lab, Some(ns), "watch-lab", Some(app))), "data": data})),
        )
        .after(nsid.clone()),
    );

    // What the lab reads besides: a Secret of references, files back where the lab names
    // them, variables as the pod's own.
    let refs_list = lab.references();
    let keys: Vec<String> = refs_list
        .iter()
        .enumerate()
        .map(|(i, r)| match &r.source {
            SecretRef::Env(var) => format!("env.{var}"),
            SecretRef::File(_) => format!("file.{i}"),
        })
        .collect();
    let mut refs = BTreeMap::new();
    // The root is read-only: the release cache and a home for the tools under the state.
    let mut env = vec![
        json!({"name": "CLOUDLET_CACHE_DIR", "value": format!("{STATE_DIR}/cache")}),
        json!({"name": "HOME", "value": "/tmp"}),
    ];
    let mut secret_items = Vec::new();
    let mut absolute = Vec::new();
    for (r, key) in refs_list.iter().zip(&keys) {
        match &r.source {
            SecretRef::Env(var) => {
                refs.insert(key.as_str(), crate::secret_ref(&r.source));
                env.push(
                    json!({"name": var, "valueFrom": {"secretKeyRef": {"name": NAME, "key": key}}}),
                );
            }
            SecretRef::File(f) => {
                refs.insert(key.as_str(), verbatim_file_ref(f));
                let at = pod_path(f);
                match at.strip_prefix(LAB_DIR) {
                    Ok(rel) if !rel.as_os_str().is_empty() => secret_items
                        .push(json!({"key": key, "path": rel.display().to_string(), "mode": 0o400})),
                    _ => absolute.push(json!({"name": "secrets", "mountPath": at.display().to_string(), "subPath": key, "readOnly": true})),
                }
            }
        }
    }
    let sid = secret_refs(lab, ns, NAME, app, refs, &mut out);

    let mut args: Vec<String> = vec![
        "watch".into(),
        if entry.is_empty() {
            LAB_DIR.to_string()
        } else {
            format!("{LAB_DIR}/{entry}")
        },
        "--in-cluster".into(),
        "--state-dir".into(),
        STATE_DIR.into(),
        "--interval".into(),
        w.interval.to_string(),
        "--lease".into(),
        w.lease.to_string(),
        "--listen".into(),
        format!("0.0.0.0:{METRICS_PORT}"),
    ];
    for r in &w.remediate {
        args.push("--remediate".into());
        args.push(
            match r {
                RemediateKind::Drift => "drift",
                RemediateKind::StuckPods => "stuck-pods",
            }
            .into(),
        );
    }
    for h in &w.webhooks {
        args.push("--webhook".into());
        args.push(match &h.url {
            SecretRef::Env(var) => format!("{}={var}", h.format.as_str()),
            SecretRef::File(f) => format!("{}=@{}", h.format.as_str(), pod_path(f).display()),
        });
    }
    let mut mounts = vec![
        json!({"name": "lab", "mountPath": LAB_DIR, "readOnly": true}),
        json!({"name": "state", "mountPath": STATE_DIR}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    mounts.extend(absolute);
    // Validation asks for the image; through the lab's registry when it has one.
    let image = w.image.clone().unwrap_or_default();
    let image = match lab
        .cluster
        .as_ref()
        .and_then(|c| c.platform.registry.as_deref())
    {
        Some(r) => crate::platform::transform::mirrored_image(&image, r),
        None => image,
    };
    let labels = json!({"app.kubernetes.io/name": app, crate::LAB_LABEL: lab.name});
    let mut pod_spec = json!({
        "serviceAccountName": NAME,
        "terminationGracePeriodSeconds": 10,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "watch",
            "image": image,
            "command": ["cloudlet"],
            "args": args,
            "env": env,
            "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "metrics"},
                "initialDelaySeconds": w.interval.0.saturating_mul(2).max(30),
                "periodSeconds": 30,
                "failureThreshold": 3,
            },
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
            },
            "volumeMounts": mounts,
        }],
        "volumes": [
            {"name": "lab", "projected": {"defaultMode": 0o444, "sources": [
                {"configMap": {"name": "watch-lab", "items": lab_items}},
                {"secret": {"name": NAME, "items": secret_items}},
            ]}},
            {"name": "secrets", "secret": {"secretName": NAME, "defaultMode": 0o400}},
            {"name": "state", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    });
    if w.host_network {
        pod_spec["hostNetwork"] = json!(true);
        pod_spec["dnsPolicy"] = json!("ClusterFirstWithHostNet");
    }
    let mut deployment = Resource::new(
        id("deployment", Some(ns), NAME),
        Body::new(&json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": value(meta(lab, Some(ns), NAME, Some(app))),
            "spec": {
                "replicas": w.replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": labels,
                        "annotations": {"cloudlet.dev/lab-files": crate::platform::fetch::hex(&hashed)},
                    },
                    "spec": pod_spec,
                },
            },
        })),
    );
    deployment.depends_on = vec![nsid, said, cmid, sid];
    out.push(deployment);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_land_under_the_lab_or_where_they_are() {
        assert_eq!(
            pod_path(Path::new("keys/ca.pem")),
            Path::new("/lab/keys/ca.pem")
        );
        assert_eq!(pod_path(Path::new("./a/../b")), Path::new("/lab/b"));
        assert_eq!(pod_path(Path::new("../up/k")), Path::new("/up/k"));
        assert_eq!(pod_path(Path::new("/root/key")), Path::new("/root/key"));
    }
}
