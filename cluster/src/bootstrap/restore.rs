//! Restoring etcd from a snapshot onto the control planes of a cluster cloudlet made
//! (kubeadm's documented procedure for a running control plane, on every member): the static
//! pods of every control plane are held back first (their manifests moved aside, so each
//! kubelet stops them and no member serves the old data while another has the new); then each
//! member's data directory is made from the same snapshot by etcdutl, with its own name and
//! peer address and the whole membership (so the members form one cluster again), the old
//! one kept beside it; then the manifests come back everywhere and the API server is waited
//! for. etcdutl is the node's own when it has one, otherwise the one in the etcd image
//! kubeadm runs (through containerd's `ctr`).

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

use super::{Bootstrap, BootstrapError};
use crate::kubeadm::KubeadmError;

/// Where the snapshot is put on the node while it is restored (removed afterwards).
const REMOTE_DB: &str = "/var/lib/cloudlet-etcd-restore.db";

/// The script run on each node: `bash -c SCRIPT restore hold`, then `... restore data NAME IP
/// CLUSTER` (CLUSTER: etcd's `--initial-cluster`, every member), then `... restore release`.
const SCRIPT: &str = r#"set -eu
STEP=$1
M=/etc/kubernetes/manifests HOLD=/etc/kubernetes/cloudlet-restore-hold
DB=/var/lib/cloudlet-etcd-restore.db
case "$STEP" in
hold)
  if [ ! -f "$M/etcd.yaml" ] && [ ! -f "$HOLD/etcd.yaml" ]; then
    echo "no etcd manifest in $M: not a control plane kubeadm made" >&2; exit 3
  fi
  mkdir -p "$HOLD"
  for f in "$M"/*.yaml; do [ -e "$f" ] && mv "$f" "$HOLD/"; done
  # The kubelet stops the static pods: wait until etcd no longer listens.
  for i in $(seq 1 180); do
    (exec 3<>/dev/tcp/127.0.0.1/2379) 2>/dev/null || break
    sleep 1
  done
  ;;
data)
  NAME=$2 IP=$3 CLUSTER=$4
  IMAGE=$(sed -n 's/^ *image: *\([^ ]*etcd[^ ]*\) *$/\1/p' "$HOLD/etcd.yaml" 2>/dev/null | head -1)
  rm -rf /var/lib/etcd.cloudlet-restored
  if command -v etcdutl >/dev/null 2>&1; then
    set -- etcdutl
  else
    set -- ctr -n k8s.io run --rm --net-host --mount type=bind,src=/var/lib,dst=/var/lib,options=rbind:rw "$IMAGE" cloudlet-etcd-restore etcdutl
  fi
  "$@" snapshot restore "$DB" --data-dir /var/lib/etcd.cloudlet-restored --name "$NAME" \
    --initial-cluster "$CLUSTER" --initial-advertise-peer-urls "https://$IP:2380"
  rm -rf /var/lib/etcd.before-restore
  if [ -d /var/lib/etcd ]; then mv /var/lib/etcd /var/lib/etcd.before-restore; fi
  mv /var/lib/etcd.cloudlet-restored /var/lib/etcd
  rm -f "$DB"
  ;;
release)
  for f in "$HOLD"/*.yaml; do [ -e "$f" ] && mv "$f" "$M/"; done
  rmdir "$HOLD" 2>/dev/null || true
  ;;
*) echo "unknown step $STEP" >&2; exit 2 ;;
esac
"#;

impl Bootstrap {
    /// Restores the etcd snapshot at `snapshot` (as `etcdctl snapshot save` writes it, with
    /// etcd's hash) onto every control plane, then waits until the API server answers from
    /// the restored data. The data directory it replaces is kept as
    /// `/var/lib/etcd.before-restore`.
    pub async fn restore_etcd(&self, snapshot: &Path) -> Result<(), BootstrapError> {
        let cluster = self.lab.cluster.as_ref().ok_or(KubeadmError::NotMade)?;
        let mut members = Vec::new();
        for node in &cluster.control_plane {
            let ip = self
                .lab
                .machine_ip(node)
                .ok_or_else(|| KubeadmError::NoAddress(node.clone()))?;
            members.push((node.clone(), ip, self.host(node)?));
        }
        let Some((first, ..)) = members.first() else {
            return Err(KubeadmError::NotMade.into());
        };
        let node = first.clone();
        let initial = members
            .iter()
            .map(|(n, ip, _)| format!("{n}=https://{ip}:2380"))
            .collect::<Vec<_>>()
            .join(",");
        let failed = |node: &str, what: &'static str| {
            let node = node.to_string();
            move |e| BootstrapError::Command {
                node,
                what,
                source: Box::new(e),
            }
        };
        // Every member stopped before any is restored; each restored from the same snapshot;
        // then every one started again.
        let held = members.iter().map(|(n, _, host)| async move {
            host.run(&["bash", "-c", SCRIPT, "restore", "hold"])
                .await
                .map_err(failed(n, "stopping the control plane's static pods"))
        });
        futures::future::try_join_all(held).await?;
        let restored = members.iter().map(|(n, ip, host)| {
            let initial = initial.clone();
            async move {
                host.run_with_file(
                    &["sh", "-c", &format!("umask 077 && cat > {REMOTE_DB}")],
                    snapshot,
                )
                .await
                .map_err(failed(n, "copying the etcd snapshot"))?;
                host.run(&[
                    "bash",
                    "-c",
                    SCRIPT,
                    "restore",
                    "data",
                    n,
                    &ip.to_string(),
                    &initial,
                ])
                .await
                .map_err(failed(n, "restoring etcd from its snapshot"))
            }
        });
        futures::future::try_join_all(restored).await?;
        let released = members.iter().map(|(n, _, host)| async move {
            host.run(&["bash", "-c", SCRIPT, "restore", "release"])
                .await
                .map_err(failed(n, "starting the control plane's static pods again"))
        });
        futures::future::try_join_all(released).await?;
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
