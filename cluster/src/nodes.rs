//! The cluster's nodes as resources of the plan (`cluster/kubeadm-node/NAME`) when the lab
//! makes its cluster: what the plan shows; `bootstrap` (the `client` feature) makes them real.

use cloudlet_core::model::Lab;
use cloudlet_core::{Domain, Resource, ResourceId};

/// The kind of a node's resource in a plan (`cluster/kubeadm-node/NAME`).
pub const NODE_KIND: &str = "kubeadm-node";

/// The id of `node`'s resource.
pub fn node_id(node: &str) -> ResourceId {
    ResourceId::new(Domain::Cluster, NODE_KIND, node)
}

/// A node's desired resource: its role, whether it makes the cluster, and that it has
/// joined.
pub(crate) fn node_body(
    node: &str,
    control_plane: bool,
    first: bool,
    joined: bool,
) -> serde_json::Value {
    let _ = node;
    serde_json::json!({
        "init": first,
        "joined": joined,
        "role": if control_plane { "control-plane" } else { "worker" },
    })
}

/// The cluster's nodes as resources of the plan, when the lab makes its cluster: the first
/// control plane first, the other control planes each after the one before it (one at a
/// time), the workers after the first (in parallel).
pub fn expand(lab: &Lab) -> Vec<Resource> {
    if lab
        .cluster
        .as_ref()
        .and_then(|c| c.kubernetes.as_ref())
        .is_none()
    {
        return Vec::new();
    }
    let all = nodes(lab);
    let mut out = Vec::with_capacity(all.len());
    let mut previous_cp: Option<ResourceId> = None;
    let first = all.first().map(|(n, _)| node_id(n));
    for (i, (node, cp)) in all.iter().enumerate() {
        let mut r = Resource::new(node_id(node), node_body(node, *cp, i == 0, true));
        if *cp {
            if let Some(p) = previous_cp.replace(node_id(node)) {
                r = r.after(p);
            }
        } else if let Some(f) = &first {
            r = r.after(f.clone());
        }
        out.push(r);
    }
    out
}

/// The plan's line for a node's resource.
pub fn headline(r: &Resource) -> Option<String> {
    if &*r.id.kind != NODE_KIND {
        return None;
    }
    let v = r.body.value();
    Some(if v["init"] == true {
        "kubeadm init: the first control plane makes the cluster".to_string()
    } else if v["role"] == "control-plane" {
        "kubeadm join as a control plane (after the one before it)".to_string()
    } else {
        "kubeadm join as a worker".to_string()
    })
}

/// The cluster's nodes in order: control planes (the first one first), then workers.
pub(crate) fn nodes(lab: &Lab) -> Vec<(String, bool)> {
    let Some(c) = &lab.cluster else {
        return Vec::new();
    };
    c.control_plane
        .iter()
        .map(|n| (n.clone(), true))
        .chain(c.workers.iter().map(|n| (n.clone(), false)))
        .collect()
}
