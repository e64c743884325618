//! MetalLB: controller and layer-2 speaker from upstream's `metallb-native.yaml`, moved to
//! `cluster.metallb.namespace`. The pools and their L2Advertisement are the lab's own objects
//! (see the crate's `expand`), ordered after MetalLB's webhook by [`super::link`].

use cloudlet_core::model::Lab;
use serde_json::Value;

use super::{Context, Definition, File, Release};

/// MetalLB.
pub static COMPONENT: Definition = Definition {
    key: "metallb",
    title: "MetalLB",
    source: "github.com/metallb/metallb: config/manifests/metallb-native.yaml of the release tag",
    releases: &[
        Release {
            version: "v0.16.1",
            files: &[File {
                url: "https://raw.githubusercontent.com/metallb/metallb/v0.16.1/config/manifests/metallb-native.yaml",
                sha256: Some("bf25feebb7582ca7df845efd52ffbc2960d6cbf4cfc972f47fded9f788b67f0b"),
            }],
        },
        Release {
            version: "v0.15.3",
            files: &[File {
                url: "https://raw.githubusercontent.com/metallb/metallb/v0.15.3/config/manifests/metallb-native.yaml",
                sha256: Some("84b4e102f2b65f5d69085f5816c29362b74641873d8ac3de996e5f86a8219176"),
            }],
        },
    ],
    upstream_namespace: Some("metallb-system"),
    namespace,
    adapt,
};

fn namespace(lab: &Lab) -> String {
    lab.cluster
        .as_ref()
        .and_then(|c| c.metallb.as_ref())
        .map_or_else(|| "metallb-system".into(), |m| m.namespace.clone())
}

fn adapt(_: &Context<'_>, _: &mut Vec<Value>) -> Result<(), String> {
    Ok(())
}
