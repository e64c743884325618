//! Calico, the pod network: upstream's manifest install (`manifests/calico.yaml`, in
//! `kube-system`), its IP pool set to the cluster's pod range. Chosen because it enforces
//! NetworkPolicy itself (the seed's author picked it for that), installs from one manifest
//! without an operator, and needs no kernel newer than the installs' distributions ship.

use serde_json::Value;

use super::{Context, Definition, File, Release};

/// Calico.
pub static COMPONENT: Definition = Definition {
    key: "calico",
    title: "Calico",
    source: "github.com/projectcalico/calico: manifests/calico.yaml of the release tag",
    releases: &[
        Release {
            version: "v3.32.1",
            files: &[File {
                url: "https://raw.githubusercontent.com/projectcalico/calico/v3.32.1/manifests/calico.yaml",
                sha256: Some("a1df919d9721cf667accdc3e72848911b0cb25cfab7d2478ad0c996302c95744"),
            }],
        },
        Release {
            version: "v3.31.7",
            files: &[File {
                url: "https://raw.githubusercontent.com/projectcalico/calico/v3.31.7/manifests/calico.yaml",
                sha256: Some("d6d8a489a4ed8e5b8efd8b339047b496ca657b55ee2e3618e791507b0a853e8d"),
            }],
        },
    ],
    upstream_namespace: Some("kube-system"),
    namespace: |_| "kube-system".into(),
    adapt,
};

#[allow(clippy::ptr_arg)] // the signature every component's `adapt` has
fn adapt(cx: &Context<'_>, objects: &mut Vec<Value>) -> Result<(), String> {
    let Some(k) = cx.lab.cluster.as_ref().and_then(|c| c.kubernetes.as_ref()) else {
        return Ok(());
    };
    // Upstream leaves the pool to its default (192.168.0.0/16); the cluster's is the lab's.
    if !super::transform::set_env(
        objects,
        ("DaemonSet", "calico-node"),
        "calico-node",
        "CALICO_IPV4POOL_CIDR",
        &k.pod_cidr.to_string(),
    ) {
        return Err(
            "no calico-node container in a calico-node DaemonSet: not a Calico manifest install"
                .into(),
        );
    }
    Ok(())
}
