//! Plain Kubernetes manifests as resources: multi-document YAML, `kind: List` unpacked, each
//! object labelled as cloudlet's, custom resources ordered after the CRD that defines them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cloudlet_core::diag::{Diagnostic, Severity};
use cloudlet_core::resource::Body;
use cloudlet_core::source::{Node, Sources, parse_yaml};
use cloudlet_core::{Domain, Resource, ResourceId};
use serde_json::{Value, json};

use crate::{LAB_LABEL, MANAGED_BY_LABEL};

/// Kinds that live outside namespaces (the ones manifests commonly carry); any other kind
/// without `metadata.namespace` goes to `default`, as kubectl does.
const CLUSTER_SCOPED: [&str; 12] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "ValidatingAdmissionPolicy",
];

/// The objects of one manifest file, and problems with their positions.
pub fn read(
    file: &Path,
    text: &str,
    lab: &str,
    sources: &mut Sources,
) -> Result<Vec<Resource>, Vec<Diagnostic>> {
    let fid = sources.add(file.to_path_buf(), Arc::from(text));
    let docs = parse_yaml(fid, text).map_err(|errs| {
        errs.into_iter()
            .map(|e| e.diagnostic(sources))
            .collect::<Vec<_>>()
    })?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for doc in &docs {
        if matches!(
            doc.kind,
            cloudlet_core::source::NodeKind::Scalar(cloudlet_core::source::Scalar::Null)
        ) {
            continue;
        }
        let value: Value = match cloudlet_core::de::from_node(doc) {
            Ok(v) => v,
            Err(e) => {
                errors.push(Diagnostic::at_location(
                    Severity::Error,
                    "manifest",
                    Some(sources.location(doc.mark)),
                    e.to_string(),
                ));
                continue;
            }
        };
        let items = if value["kind"] == "List" {
            value["items"].as_array().cloned().unwrap_or_default()
        } else {
            vec![value]
        };
        for v in items {
            match object(v, lab) {
                Ok(r) => out.push(r),
                Err(msg) => errors.push(bad(sources, doc, msg)),
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn bad(sources: &Sources, doc: &Node, msg: String) -> Diagnostic {
    Diagnostic::at_location(
        Severity::Error,
        "manifest",
        Some(sources.location(doc.mark)),
        msg,
    )
    .help("every object needs `apiVersion`, `kind` and `metadata.name`")
}

fn object(mut v: Value, lab: &str) -> Result<Resource, String> {
    let api = v["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = v["kind"].as_str().unwrap_or_default().to_string();
    let name = v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if api.is_empty() || kind.is_empty() || name.is_empty() {
        return Err(format!(
            "an object without {}",
            [
                ("apiVersion", &api),
                ("kind", &kind),
                ("metadata.name", &name)
            ]
            .iter()
            .filter(|(_, v)| v.is_empty())
            .map(|(k, _)| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
        ));
    }
    if v.get("status").is_some() {
        v.as_object_mut().map(|o| o.remove("status"));
    }
    let namespaced = !CLUSTER_SCOPED.contains(&kind.as_str());
    let meta = v
        .as_object_mut()
        .ok_or("not a mapping")?
        .entry("metadata")
        .or_insert_with(|| json!({}));
    let ns = if namespaced {
        let ns = meta["namespace"].as_str().unwrap_or("default").to_string();
        meta["namespace"] = json!(ns);
        Some(ns)
    } else {
        None
    };
    let labels = meta
        .as_object_mut()
        .ok_or("metadata is not a mapping")?
        .entry("labels")
        .or_insert_with(|| json!({}));
    labels[MANAGED_BY_LABEL] = json!("cloudlet");
    labels[LAB_LABEL] = json!(lab);
    let id = ResourceId::new(
        Domain::Cluster,
        kind.to_ascii_lowercase(),
        match &ns {
            Some(ns) => format!("{ns}.{name}"),
            None => name.clone(),
        },
    );
    Ok(Resource::new(id, Body::from(v)))
}

/// Orders objects: a custom resource after the CRD of its kind, a namespaced object after
/// its namespace — where those are among `all_ids` (the lab's whole cluster domain).
pub fn link(manifests: &mut [Resource], all_ids: &std::collections::HashSet<ResourceId>) {
    // (group, kind) → the CRD defining it.
    let mut crds: BTreeMap<(String, String), ResourceId> = BTreeMap::new();
    for r in manifests.iter() {
        if &*r.id.kind == "customresourcedefinition" {
            let v = r.body.value();
            if let (Some(g), Some(k)) = (
                v["spec"]["group"].as_str(),
                v["spec"]["names"]["kind"].as_str(),
            ) {
                crds.insert((g.to_string(), k.to_string()), r.id.clone());
            }
        }
    }
    for r in manifests.iter_mut() {
        let v = r.body.value();
        let api = v["apiVersion"].as_str().unwrap_or_default();
        let kind = v["kind"].as_str().unwrap_or_default();
        if let Some((group, _)) = api.split_once('/')
            && let Some(crd) = crds.get(&(group.to_string(), kind.to_string()))
            && !r.depends_on.contains(crd)
        {
            r.depends_on.push(crd.clone());
        }
        if let Some(ns) = v["metadata"]["namespace"].as_str() {
            let nsid = ResourceId::new(Domain::Cluster, "namespace", ns);
            if all_ids.contains(&nsid) && nsid != r.id && !r.depends_on.contains(&nsid) {
                r.depends_on.push(nsid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_lists_and_positions() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: Namespace, metadata: {name: n}}\n---\nkind: Secret\nmetadata: {name: s}\n";
        let mut sources = Sources::default();
        let err = read(Path::new("m.yaml"), text, "lab", &mut sources).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].location.as_ref().unwrap().line, 11);
        assert!(
            err[0].message.contains("`apiVersion`"),
            "{}",
            err[0].message
        );
        let ok = &text[..text.find("---\nkind: Secret").unwrap()];
        let rs = read(Path::new("m.yaml"), ok, "lab", &mut sources).unwrap();
        let ids: Vec<String> = rs.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(
            ids,
            vec!["cluster/configmap/default.a", "cluster/namespace/n"]
        );
        assert_eq!(rs[0].body.value()["metadata"]["labels"][LAB_LABEL], "lab");
    }

    #[test]
    fn custom_resources_wait_for_their_crd() {
        let text = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec: {group: example.com, names: {kind: Widget, plural: widgets}}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: apps}\n";
        let mut rs = read(Path::new("m.yaml"), text, "lab", &mut Sources::default()).unwrap();
        let all = [ResourceId::new(Domain::Cluster, "namespace", "apps")]
            .into_iter()
            .collect();
        link(&mut rs, &all);
        let w = rs.iter().find(|r| &*r.id.kind == "widget").unwrap();
        let deps: Vec<String> = w.depends_on.iter().map(ToString::to_string).collect();
        assert_eq!(
            deps,
            vec![
                "cluster/customresourcedefinition/widgets.example.com",
                "cluster/namespace/apps"
            ]
        );
    }
}
