//! csi-driver-nfs: upstream's deploy files of the release (RBAC, CSIDriver, controller,
//! node plugin) in `kube-system`; the StorageClasses are the lab's own (`nfs-EXPORT`, one per
//! dynamic export). Upstream's example StorageClass and the snapshot controller are left out.

use serde_json::Value;

use super::{Context, Definition, File, Release};

macro_rules! file {
    ($v:literal, $name:literal, $sha:literal) => {
        File {
            url: concat!(
                "https://raw.githubusercontent.com/kubernetes-csi/csi-driver-nfs/",
                $v,
                "/deploy/",
                $v,
                "/",
                $name
            ),
            sha256: Some($sha),
        }
    };
}

/// csi-driver-nfs.
pub static COMPONENT: Definition = Definition {
    key: "csi_driver_nfs",
    title: "csi-driver-nfs",
    source: "github.com/kubernetes-csi/csi-driver-nfs: deploy/VERSION/{rbac-csi-nfs,csi-nfs-driverinfo,csi-nfs-controller,csi-nfs-node}.yaml of the release tag",
    releases: &[Release {
        version: "v4.13.4",
        files: &[
            file!(
                "v4.13.4",
                "rbac-csi-nfs.yaml",
                "312de689d07627330d8280e50d7b51357e0b5f5ca0d8aa75794aec460ee4cff0"
            ),
            file!(
                "v4.13.4",
                "csi-nfs-driverinfo.yaml",
                "fa2bba4674821b3317d1e016f3c9d54abe04fcdc6fed3fce9e58994c8311c4a0"
            ),
            file!(
                "v4.13.4",
                "csi-nfs-controller.yaml",
                "dcc1aa5188c93bea3a3239175ce4e9ac577702818c4fb9fa611a0039aa5ab255"
            ),
            file!(
                "v4.13.4",
                "csi-nfs-node.yaml",
                "b66104b44d4569c926e11af5c6c3858fbc38fd16099b206fc4a0dc0f7fcd94d2"
            ),
        ],
    }],
    upstream_namespace: Some("kube-system"),
    namespace: |_| "kube-system".into(),
    adapt,
};

fn adapt(_: &Context<'_>, _: &mut Vec<Value>) -> Result<(), String> {
    Ok(())
}
