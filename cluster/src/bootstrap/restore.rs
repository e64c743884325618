//! Restoring etcd from a snapshot onto the first control plane of a cluster cloudlet made
//! (kubeadm's documented procedure for a running control plane): the static pods are held
//! back (their manifests moved aside, so the kubelet stops them), etcd's snapshot is restored
//! by etcdutl into a new data directory for this member, the old one is kept beside it, the
//! manifests come back, and the API server is waited for. etcdutl is the node's own when it
//! has one, otherwise the one in the etcd image kubeadm runs (through containerd's `ctr`).
//!
//! Only a single control plane: the restored member is alone in its cluster, so further
//! control planes would have to join it again (not done here).

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

use super::{Bootstrap, BootstrapError};
use crate::kubeadm::KubeadmError;

/// Where the snapshot is put on the node while it is restored (removed afterwards).
const REMOTE_DB: &str = "/var/lib/cloudlet-etcd-restore.db";

/// The script run on the node: `bash -c SCRIPT restore NAME IP`.
const SCRIPT: &str = r#"set -eu
NAME=$1 IP=$2 DB=/var/lib/cloudlet-etcd-restore.db
M=/etc/kubernetes/manifests HOLD=/etc/kubernetes/cloudlet-restore-hold
if [ ! -f "$M/etcd.yaml" ] && [ ! -f "$HOLD/etcd.yaml" ]; then
  echo "no etcd manifest in $M: not a control plane kubeadm made" >&2; exit 3
fi
IMAGE=$(sed -n 's/^ *image: *\([^ ]*etcd[^ ]*\) *$/\1/p' "$M/etcd.yaml" "$HOLD/etcd.yaml" 2>/dev/null | head -1)
mkdir -p "$HOLD"
for f in "$M"/*.yaml; do [ -e "$f" ] && mv "$f" "$HOLD/"; done
# The kubelet stops the static pods: wait until etcd no longer listens.
for i in $(seq 1 180); do
  (exec 3<>/dev/tcp/127.0.0.1/2379) 2>/dev/null || break
  sleep 1
done
rm -rf /var/lib/etcd.cloudlet-restored
if command -v etcdutl >/dev/null 2>&1; then
  set -- etcdutl
else
  set -- ctr -n k8s.io run --rm --net-host --mount type=bind,src=/var/lib,dst=/var/lib,options=rbind:rw "$IMAGE" cloudlet-etcd-restore etcdutl
fi
"$@" snapshot restore "$DB" --data-dir /var/lib/etcd.cloudlet-restored --name "$NAME" \
  --initial-cluster "$NAME=https://$IP:2380" --initial-advertise-peer-urls "https://$IP:2380"
rm -rf /var/lib/etcd.before-restore
if [ -d /var/lib/etcd ]; then mv /var/lib/etcd /var/lib/etcd.before-restore; fi
mv /var/lib/etcd.cloudlet-restored /var/lib/etcd
for f in "$HOLD"/*.yaml; do [ -e "$f" ] && mv "$f" "$M/"; done
rmdir "$HOLD"
rm -f "$DB"
"#;

impl Bootstrap {
    /// Restores the etcd snapshot at `snapshot` (as `etcdctl snapshot save` writes it, with
    /// etcd's hash) onto the first control plane, then waits until the API server answers
    /// from the restored data. The data directory it replaces is kept as
    /// `/var/lib/etcd.before-restore`.
    pub async fn restore_etcd(&self, snapshot: &Path) -> Result<(), BootstrapError> {
        let cluster = self.lab.cluster.as_ref().ok_or(KubeadmError::NotMade)?;
        let node = cluster
            .control_plane
            .first()
            .ok_or(KubeadmError::NotMade)?
            .clone();
        if cluster.control_plane.len() > 1 {
            return Err(BootstrapError::RestoreSeveral {
                count: cluster.control_plane.len(),
            });
        }
        let ip = self
            .lab
            .machine_ip(&node)
            .ok_or_else(|| KubeadmError::NoAddress(node.clone()))?;
        let host = self.host(&node)?;
        let failed = |what: &'static str| {
            let node = node.clone();
            move |e| BootstrapError::Command {
                node: node.clone(),
                what,
                source: Box::new(e),
            }
        };
        host.run_with_file(
            &["sh", "-c", &format!("umask 077 && cat > {REMOTE_DB}")],
            snapshot,
        )
        .await
        .map_err(failed("copying the etcd snapshot"))?;
        host.run(&["bash", "-c", SCRIPT, "restore", &node, &ip.to_string()])
            .await
            .map_err(failed("restoring etcd from its snapshot"))?;
        // The API server comes back on the restored data.
        let started = Instant::now();
        let endpoint = self.endpoint()?;
        loop {
            let answered = match self.client().await {
                Ok(c) => Api::<Namespace>::all(c)
                    .list(&ListParams::default().limit(1))
                    .await
                    .map(|_| ()),
                Err(BootstrapError::Api { source, .. }) => Err(*source),
                Err(e) => return Err(e),
            };
            match answered {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() > self.options.window => {
                    return Err(BootstrapError::ApiUnreachable {
                        node: node.clone(),
                        endpoint,
                        source: Box::new(e),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
}
