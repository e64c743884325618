//! Typed transforms of a release's objects: each changes one thing, in the places upstream
//! manifests carry it, and nothing else. CRDs are never touched beyond a moved namespace in
//! their conversion webhook.

use std::collections::BTreeMap;

use cloudlet_core::source::{NodeKind, Scalar, parse_yaml};
use serde_json::{Map, Value, json};

/// The objects of a multi-document YAML text (`kind: List` unpacked, empty documents
/// skipped).
pub fn parse(text: &str) -> Result<Vec<Value>, String> {
    let mut sources = cloudlet_core::source::Sources::default();
    let fid = sources.add(
        std::path::PathBuf::from("release.yaml"),
        std::sync::Arc::from(text),
    );
    let docs = parse_yaml(fid, text).map_err(|errs| {
        errs.into_iter()
            .next()
            .map(|e| e.diagnostic(&sources).to_string())
            .unwrap_or_else(|| "not YAML".into())
    })?;
    let mut out = Vec::new();
    for doc in &docs {
        if matches!(doc.kind, NodeKind::Scalar(Scalar::Null)) {
            continue;
        }
        let v: Value = cloudlet_core::de::from_node(doc)
            .map_err(|e| format!("line {}: {e}", sources.location(doc.mark).line))?;
        if v.is_null() {
            continue;
        }
        if !v.is_object() {
            return Err(format!(
                "line {}: a document that is not an object",
                sources.location(doc.mark).line
            ));
        }
        if v["kind"] == "List" {
            out.extend(v["items"].as_array().cloned().unwrap_or_default());
        } else {
            out.push(v);
        }
    }
    Ok(out)
}

/// The pod template of a workload (Deployment, DaemonSet, StatefulSet, Job), if it is one.
pub fn pod_spec(v: &mut Value) -> Option<&mut Map<String, Value>> {
    match v["kind"].as_str()? {
        "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet" | "Job" => {
            v.pointer_mut("/spec/template/spec")?.as_object_mut()
        }
        "CronJob" => v
            .pointer_mut("/spec/jobTemplate/spec/template/spec")?
            .as_object_mut(),
        _ => None,
    }
}

/// Every container (init containers too) of a workload.
fn containers(v: &mut Value) -> Vec<&mut Map<String, Value>> {
    let Some(spec) = pod_spec(v) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, list) in spec.iter_mut() {
        if k != "containers" && k != "initContainers" {
            continue;
        }
        if let Some(list) = list.as_array_mut() {
            out.extend(list.iter_mut().filter_map(Value::as_object_mut));
        }
    }
    out
}

/// Moves the objects in namespace `from` to `to`, with every reference to it: the Namespace
/// itself, RBAC subjects, webhook and CRD conversion services, APIService services.
pub fn move_namespace(objects: &mut [Value], from: &str, to: &str) {
    let set = |slot: Option<&mut Value>| {
        if let Some(s) = slot
            && s.as_str() == Some(from)
        {
            *s = json!(to);
        }
    };
    for v in objects.iter_mut() {
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        if kind == "Namespace" {
            set(v.pointer_mut("/metadata/name"));
        }
        set(v.pointer_mut("/metadata/namespace"));
        match kind.as_str() {
            "ClusterRoleBinding" | "RoleBinding" => {
                if let Some(subjects) = v.get_mut("subjects").and_then(Value::as_array_mut) {
                    for s in subjects {
                        set(s.get_mut("namespace"));
                    }
                }
            }
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
                if let Some(hooks) = v.get_mut("webhooks").and_then(Value::as_array_mut) {
                    for h in hooks {
                        set(h.pointer_mut("/clientConfig/service/namespace"));
                    }
                }
            }
            "CustomResourceDefinition" => {
                set(v.pointer_mut("/spec/conversion/webhook/clientConfig/service/namespace"));
            }
            "APIService" => set(v.pointer_mut("/spec/service/namespace")),
            _ => {}
        }
        // cert-manager's CA injection names `namespace/name`.
        if let Some(a) = v
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            for (k, val) in a.iter_mut() {
                if k.starts_with("cert-manager.io/inject-ca-from")
                    && let Some(s) = val.as_str()
                    && let Some(rest) = s.strip_prefix(&format!("{from}/"))
                {
                    *val = json!(format!("{to}/{rest}"));
                }
            }
        }
    }
}

/// The image `image` pulled through `registry`: its registry host replaced (Docker Hub's
/// short names made whole first: `traefik:v3` is `docker.io/library/traefik:v3`).
pub fn mirrored_image(image: &str, registry: &str) -> String {
    let registry = registry.trim_end_matches('/');
    let (first, rest) = image.split_once('/').unwrap_or(("", image));
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    let path = if is_host {
        rest.to_string()
    } else if first.is_empty() {
        format!("library/{rest}")
    } else {
        image.to_string()
    };
    format!("{registry}/{path}")
}

/// Pulls every container image through `registry`.
pub fn registry(objects: &mut [Value], registry: &str) {
    for v in objects.iter_mut() {
        for c in containers(v) {
            if let Some(img) = c.get("image").and_then(Value::as_str) {
                let m = mirrored_image(img, registry);
                c.insert("image".into(), json!(m));
            }
        }
    }
}

/// Runs every workload's pods on nodes with `labels`.
pub fn node_selector(objects: &mut [Value], labels: &BTreeMap<String, String>) {
    for v in objects.iter_mut() {
        if let Some(spec) = pod_spec(v) {
            let sel = spec.entry("nodeSelector").or_insert_with(|| json!({}));
            if let Some(sel) = sel.as_object_mut() {
                for (k, val) in labels {
                    sel.insert(k.clone(), json!(val));
                }
            }
        }
    }
}

/// Sets the CPU and memory requests of every container (the memory limit too, where
/// upstream sets one, so the request never exceeds it).
pub fn resources(objects: &mut [Value], cpu: Option<&str>, memory: Option<&str>) {
    for v in objects.iter_mut() {
        for c in containers(v) {
            let r = c.entry("resources").or_insert_with(|| json!({}));
            let Some(r) = r.as_object_mut() else { continue };
            let req = r.entry("requests").or_insert_with(|| json!({}));
            if let Some(req) = req.as_object_mut() {
                if let Some(cpu) = cpu {
                    req.insert("cpu".into(), json!(cpu));
                }
                if let Some(m) = memory {
                    req.insert("memory".into(), json!(m));
                }
            }
            if let (Some(m), Some(lim)) =
                (memory, r.get_mut("limits").and_then(Value::as_object_mut))
                && lim.contains_key("memory")
            {
                lim.insert("memory".into(), json!(m));
            }
        }
    }
}

/// Sets environment variable `name` to `value` in the containers called `container` of the
/// workload `kind`/`name` (added where upstream does not set it).
pub fn set_env(
    objects: &mut [Value],
    workload: (&str, &str),
    container: &str,
    name: &str,
    value: &str,
) -> bool {
    let mut done = false;
    for v in objects.iter_mut() {
        if v["kind"] != workload.0 || v["metadata"]["name"] != workload.1 {
            continue;
        }
        for c in containers(v) {
            if c.get("name").and_then(Value::as_str) != Some(container) {
                continue;
            }
            let env = c.entry("env").or_insert_with(|| json!([]));
            let Some(env) = env.as_array_mut() else {
                continue;
            };
            match env.iter_mut().find(|e| e["name"] == name) {
                Some(e) => *e = json!({"name": name, "value": value}),
                None => env.push(json!({"name": name, "value": value})),
            }
            done = true;
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_pulled_through_the_mirror() {
        for (img, want) in [
            (
                "quay.io/metallb/controller:v0.16.1",
                "reg.lan:5000/metallb/controller:v0.16.1",
            ),
            ("traefik:v3.7.9", "reg.lan:5000/library/traefik:v3.7.9"),
            (
                "rancher/mirrored-pause:3.6",
                "reg.lan:5000/rancher/mirrored-pause:3.6",
            ),
            ("localhost/x:1", "reg.lan:5000/x:1"),
            (
                "registry.k8s.io/sig-storage/nfsplugin:v4.13.4",
                "reg.lan:5000/sig-storage/nfsplugin:v4.13.4",
            ),
        ] {
            assert_eq!(mirrored_image(img, "reg.lan:5000/"), want);
        }
    }

    #[test]
    fn a_moved_namespace_moves_every_reference() {
        let mut objs = parse(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: metallb-system}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\n\
             subjects: [{kind: ServiceAccount, name: c, namespace: metallb-system}, {kind: User, name: u}]\n---\n\
             apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: w}\n\
             webhooks: [{name: a.b.c, clientConfig: {service: {name: s, namespace: metallb-system}}}]\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: metallb-system, annotations: {cert-manager.io/inject-ca-from: metallb-system/c}}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other, namespace: kube-system}\n",
        )
        .unwrap();
        move_namespace(&mut objs, "metallb-system", "lb");
        assert_eq!(objs[0]["metadata"]["name"], "lb");
        assert_eq!(objs[1]["subjects"][0]["namespace"], "lb");
        assert!(objs[1]["subjects"][1].get("namespace").is_none());
        assert_eq!(
            objs[2]["webhooks"][0]["clientConfig"]["service"]["namespace"],
            "lb"
        );
        assert_eq!(objs[3]["metadata"]["namespace"], "lb");
        assert_eq!(
            objs[3]["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "lb/c"
        );
        assert_eq!(objs[4]["metadata"]["namespace"], "kube-system");
    }

    #[test]
    fn workloads_get_selectors_requests_and_env() {
        let mut objs = parse(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: n, namespace: x}\nspec:\n  template:\n    spec:\n      initContainers: [{name: i, image: busybox}]\n      containers:\n        - {name: c, image: quay.io/a/b:1, env: [{name: A, value: old}], resources: {limits: {memory: 1Gi}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
        )
        .unwrap();
        node_selector(
            &mut objs,
            &BTreeMap::from([("role".into(), "infra".into())]),
        );
        resources(&mut objs, Some("50m"), Some("64Mi"));
        assert!(set_env(&mut objs, ("DaemonSet", "n"), "c", "A", "new"));
        assert!(!set_env(&mut objs, ("DaemonSet", "n"), "nope", "A", "new"));
        let spec = &objs[0]["spec"]["template"]["spec"];
        assert_eq!(spec["nodeSelector"]["role"], "infra");
        assert_eq!(spec["containers"][0]["resources"]["requests"]["cpu"], "50m");
        assert_eq!(
            spec["containers"][0]["resources"]["limits"]["memory"],
            "64Mi"
        );
        assert_eq!(
            spec["initContainers"][0]["resources"]["requests"]["memory"],
            "64Mi"
        );
        assert_eq!(spec["containers"][0]["env"][0]["value"], "new");
        assert!(objs[1].get("spec").is_none());
    }

    #[test]
    fn bad_yaml_and_non_objects_are_refused() {
        assert!(parse("a: [").is_err());
        assert!(parse("- 1\n- 2\n").is_err());
        assert_eq!(parse("---\n---\n").unwrap().len(), 0);
    }
}
