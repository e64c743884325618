//! cloudlet's storage domain: datasets, NFS exports and snapshot tasks as resources, and the
//! backends that make them real.
//!
//! [`expand`] derives them from the lab: for each export of the storage block a dataset (or
//! directory), its NFS export open only to the clients the lab allows, and the snapshot task
//! its policy asks for (recursive, so it covers the volumes below it); for each app volume a
//! dataset of its own below its export (quota, owner, mode), an export of exactly that path for
//! the same clients (the cluster's PersistentVolume mounts it), and its own snapshot task when
//! it has a policy. Datasets hold data: they are marked [`Data::Retain`] (the default) or
//! [`Data::Disposable`] (`retain: false`), so leaving the lab never deletes them implicitly.
//!
//! Backends: [`linux_nas`] (directories plus nfs-ganesha EXPORT blocks reloaded in place, or a
//! kernel NFS exports file under `/etc/exports.d/` plus `exportfs -ra`) and [`truenas`]
//! (JSON-RPC 2.0 over WebSocket).

#[cfg(feature = "client")]
pub mod doctor;
pub mod linux_nas;
#[cfg(feature = "client")]
pub mod nfs;
pub mod truenas;

use std::collections::BTreeMap;

use cloudlet_core::model::{Lab, NasKind, SnapshotPolicy};
use cloudlet_core::types::Cidr;
use cloudlet_core::{Data, Domain, Resource, ResourceId};
use serde_json::{Value, json};

#[cfg(feature = "client")]
/// A NAS that reports the lab's volumes as it has them (`cloudlet storage status`).
#[derive(Debug)]
pub enum Nas {
    /// nfs-ganesha or the kernel NFS server on this machine.
    Linux(linux_nas::LinuxNas),
    /// TrueNAS.
    TrueNas(truenas::TrueNas),
}

#[cfg(feature = "client")]
impl Nas {
    /// The NAS the storage target names; `None` when the target renders to files (`local`).
    pub fn open(
        c: &cloudlet_core::backend::Connection<'_>,
    ) -> Result<Option<Nas>, cloudlet_core::backend::ConnectError> {
        Ok(Some(match c.kind() {
            k if k == linux_nas::GANESHA.kind => {
                Nas::Linux(linux_nas::open(c, linux_nas::Flavor::Ganesha))
            }
            k if k == linux_nas::KERNEL_NFS.kind => {
                Nas::Linux(linux_nas::open(c, linux_nas::Flavor::Kernel))
            }
            k if k == truenas::BACKEND.kind => Nas::TrueNas(truenas::open(c)?),
            _ => return Ok(None),
        }))
    }

    /// The lab's volumes: path, who may mount, usage, newest snapshot.
    pub async fn status(&self) -> Result<Vec<VolumeStatus>, cloudlet_core::ProviderError> {
        match self {
            Nas::Linux(p) => p.status().await,
            Nas::TrueNas(p) => p.status().await,
        }
    }

    /// The lab's replication tasks and how their last run went (none on a Linux NAS: it
    /// takes no snapshots).
    pub async fn replications(
        &self,
    ) -> Result<Vec<ReplicationStatus>, cloudlet_core::ProviderError> {
        match self {
            Nas::Linux(_) => Ok(Vec::new()),
            Nas::TrueNas(p) => p.replications().await,
        }
    }
}

/// One replication task of the lab as the NAS reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicationStatus {
    /// The resource name (`mail`, `mail.mailserver.data`).
    pub name: String,
    /// The state of its last run as the NAS says it (`FINISHED`, `ERROR`, `RUNNING`,
    /// `PENDING`).
    pub state: String,
    /// When that state was reached (Unix seconds), when the NAS says.
    pub at: Option<i64>,
    /// The newest snapshot it copied, when the NAS says.
    pub last_snapshot: Option<String>,
    /// The error of a failed run.
    pub error: Option<String>,
}

/// One dataset (or directory) of the lab as the NAS has it, for `cloudlet storage status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeStatus {
    /// The resource name (`mail`, `mail.mailserver.data`).
    pub name: String,
    /// Its path on the NAS.
    pub path: String,
    /// The clients its own export allows (empty: not exported by itself).
    pub exported_to: Vec<String>,
    /// Bytes used, when the NAS says.
    pub used_bytes: Option<u64>,
    /// The newest snapshot, when the NAS takes them.
    pub latest_snapshot: Option<String>,
    /// When the newest snapshot was taken (Unix seconds), when the NAS says.
    pub latest_snapshot_at: Option<i64>,
    /// Whether its data stays when it leaves the lab.
    pub retain: bool,
}

/// Kind of datasets (or directories).
pub const DATASET: &str = "dataset";
/// Kind of NFS exports.
pub const NFS_EXPORT: &str = "nfs-export";
/// Kind of periodic snapshot tasks.
pub const SNAPSHOT_TASK: &str = "snapshot-task";
/// Kind of replication tasks: a snapshot task's snapshots copied to another ZFS pool.
pub const REPLICATION: &str = "replication";

/// The id of an export's dataset.
pub fn dataset_id(export: &str) -> ResourceId {
    ResourceId::new(Domain::Storage, DATASET, export)
}

/// The id of an export's NFS export.
pub fn export_id(export: &str) -> ResourceId {
    ResourceId::new(Domain::Storage, NFS_EXPORT, export)
}

/// The directory of an app volume below its export: as written, or `APP/VOLUME`.
pub fn volume_sub_path(app: &str, v: &cloudlet_core::model::Volume) -> String {
    v.sub_path_of(app)
}

/// The resource name of an app volume: its export and sub-path, `/` as `.`.
pub fn volume_name(export: &str, sub_path: &str) -> String {
    format!("{export}.{}", sub_path.replace('/', "."))
}

/// The id of an app volume's dataset.
pub fn volume_dataset_id(export: &str, sub_path: &str) -> ResourceId {
    ResourceId::new(Domain::Storage, DATASET, volume_name(export, sub_path))
}

/// The id of an app volume's NFS export.
pub fn volume_export_id(export: &str, sub_path: &str) -> ResourceId {
    ResourceId::new(Domain::Storage, NFS_EXPORT, volume_name(export, sub_path))
}

/// The full path of an app volume on the NAS.
pub fn volume_path(export_path: &str, sub_path: &str) -> String {
    format!("{}/{sub_path}", export_path.trim_end_matches('/'))
}

/// The clients an export allows, as CIDRs.
pub fn clients(lab: &Lab, allow: &[String]) -> Vec<String> {
    let mut out: Vec<String> = allow
        .iter()
        .flat_map(|a| {
            if let Some(n) = lab.networks.get(a) {
                vec![n.cidr.to_string()]
            } else if let Some(m) = lab.machines.get(a) {
                m.nics
                    .iter()
                    .filter_map(|n| n.ip)
                    .map(|ip| format!("{ip}/32"))
                    .collect()
            } else if let Ok(c) = a.parse::<Cidr>() {
                vec![c.to_string()]
            } else if let Ok(ip) = a.parse::<std::net::Ipv4Addr>() {
                vec![format!("{ip}/32")]
            } else {
                Vec::new()
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn snapshot_body(path: &str, s: &SnapshotPolicy, recursive: bool) -> Value {
    json!({"path": path, "every_s": s.every.0, "keep": s.keep, "recursive": recursive})
}

/// The snapshot task `name` of the dataset at `path` (policy `s`), and its replication task
/// when the policy replicates.
fn snapshot_resources(
    out: &mut Vec<Resource>,
    name: String,
    path: &str,
    s: &SnapshotPolicy,
    recursive: bool,
    dataset: ResourceId,
) {
    let task = ResourceId::new(Domain::Storage, SNAPSHOT_TASK, name.clone());
    out.push(Resource::new(task.clone(), snapshot_body(path, s, recursive)).after(dataset));
    if let Some(r) = &s.replicate {
        out.push(
            Resource::new(
                ResourceId::new(Domain::Storage, REPLICATION, name),
                replication_body(path, r, recursive),
            )
            .after(task),
        );
    }
}

/// A replication task's body: the dataset at `source`, where it goes and how long it is kept.
pub fn replication_body(
    source: &str,
    r: &cloudlet_core::model::Replicate,
    recursive: bool,
) -> Value {
    json!({
        "source": source,
        "to": r.to.trim_end_matches('/'),
        "ssh": r.ssh,
        "keep_for_s": r.keep_for.map(|d| d.0),
        "recursive": recursive,
    })
}

/// The desired storage state of a lab.
pub fn expand(lab: &Lab) -> Vec<Resource> {
    let Some(st) = &lab.storage else {
        return Vec::new();
    };
    // Quotas and snapshots need ZFS; on the Linux backends validation warns instead.
    let zfs = st.kind == NasKind::Truenas;
    let mut out = Vec::new();
    for (name, e) in &st.exports {
        let ds = dataset_id(name);
        out.push(
            Resource::new(ds.clone(), json!({"path": e.path, "retain": e.retain}))
                .holding(Data::retained(e.retain)),
        );
        out.push(
            Resource::new(
                export_id(name),
                json!({
                    "path": e.path,
                    "clients": clients(lab, &e.allow),
                    "read_only": e.read_only,
                    "squash": e.squash.as_str(),
                    "security": "sys",
                }),
            )
            .after(ds.clone()),
        );
        if let Some(s) = e.snapshots.as_ref().filter(|_| zfs) {
            snapshot_resources(&mut out, name.clone(), &e.path, s, true, ds);
        }
    }
    // App volumes: one dataset, export and (with a policy) snapshot task each. Apps that share
    // a directory (compose projects' named volumes) share its resources.
    let mut volumes: BTreeMap<ResourceId, ()> = BTreeMap::new();
    for (app, a) in lab.cluster.iter().flat_map(|c| &c.apps) {
        for v in &a.volumes {
            // Dynamic exports: csi-driver-nfs makes the directories; the export covers them.
            let Some(e) = st.exports.get(&v.export).filter(|e| !e.dynamic) else {
                continue;
            };
            let sub = volume_sub_path(app, v);
            let ds = volume_dataset_id(&v.export, &sub);
            if volumes.insert(ds.clone(), ()).is_some() {
                continue;
            }
            let path = volume_path(&e.path, &sub);
            let mut body = json!({"path": path, "parent": e.path, "retain": v.retain});
            if zfs {
                body["quota_mib"] = json!(v.size.mib());
                if v.database {
                    // Database pages are small and written in place.
                    body["recordsize"] = json!("16K");
                    body["atime"] = json!("OFF");
                }
            }
            if let Some(o) = v.owner {
                body["owner"] = json!({"uid": o.uid, "gid": o.gid});
            }
            if let Some(m) = &v.mode {
                body["mode"] = json!(normalize_mode(m));
            }
            out.push(
                Resource::new(ds.clone(), body)
                    .holding(Data::retained(v.retain))
                    .after(dataset_id(&v.export)),
            );
            out.push(
                Resource::new(
                    volume_export_id(&v.export, &sub),
                    json!({
                        "path": path,
                        "clients": clients(lab, &e.allow),
                        "read_only": e.read_only
                            || v.access == cloudlet_core::model::Access::ReadOnlyMany,
                        "squash": e.squash.as_str(),
                        "security": "sys",
                    }),
                )
                .after(ds.clone()),
            );
            if let Some(s) = v.snapshots.as_ref().filter(|_| zfs) {
                snapshot_resources(&mut out, volume_name(&v.export, &sub), &path, s, false, ds);
            }
        }
    }
    out
}

/// A mode as four octal digits (`750` → `0750`); validation has refused anything else.
pub fn normalize_mode(m: &str) -> String {
    let m = m.trim_start_matches("0o");
    format!("{m:0>4}")
}

/// What a reviewer needs to see of a new or removed storage resource, on one line: whether a
/// dataset's data is kept, who may mount an export, how often snapshots are taken.
pub fn headline(r: &Resource) -> Option<String> {
    let v = r.body.value();
    match &*r.id.kind {
        DATASET => Some(format!(
            "{} ({})",
            v["path"].as_str()?,
            if r.data == Data::Disposable {
                "its data is deleted when it leaves the lab"
            } else {
                "its data is kept when it leaves the lab"
            }
        )),
        NFS_EXPORT => {
            let clients: Vec<&str> = v["clients"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            Some(format!(
                "{} to {} ({})",
                v["path"].as_str()?,
                clients.join(", "),
                if v["read_only"].as_bool() == Some(true) {
                    "read-only"
                } else {
                    "read-write"
                }
            ))
        }
        SNAPSHOT_TASK => {
            let every = v["every_s"].as_u64()?;
            let every = if every.is_multiple_of(86400) {
                format!("{}d", every / 86400)
            } else if every.is_multiple_of(3600) {
                format!("{}h", every / 3600)
            } else {
                format!("{every}s")
            };
            Some(format!("every {every}, keep {}", v["keep"].as_u64()?))
        }
        REPLICATION => {
            let to = v["to"].as_str()?;
            let via = match v["ssh"].as_str() {
                Some(ssh) => format!("over SSH connection `{ssh}`"),
                None => "on the NAS".into(),
            };
            let kept = match v["keep_for_s"].as_u64() {
                Some(k) if k.is_multiple_of(86_400) => format!("kept {}d", k / 86_400),
                Some(k) => format!("kept {}h", k / 3600),
                None => "kept as the source's".into(),
            };
            Some(format!("{} to {to} {via}, {kept}", v["source"].as_str()?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Lab {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
        cloudlet_core::load(&dir).expect("the seed loads").lab
    }

    fn ids(lab: &Lab) -> Vec<String> {
        expand(lab).iter().map(|r| r.id.to_string()).collect()
    }

    #[test]
    fn each_volume_gets_a_dataset_and_an_export_of_its_own_and_data_is_retained() {
        let lab = seed();
        let all = expand(&lab);
        let ds = all
            .iter()
            .find(|r| r.id == volume_dataset_id("mail", "mailserver/data"))
            .expect("the mail server's dataset");
        assert_eq!(ds.data, Data::Retain);
        let body = ds.body.value();
        assert_eq!(body["path"], "/mnt/main/mail/mailserver/data");
        assert_eq!(body["quota_mib"], 10240);
        assert!(ds.depends_on.contains(&dataset_id("mail")));
        let ex = all
            .iter()
            .find(|r| r.id == volume_export_id("mail", "mailserver/data"))
            .unwrap();
        assert_eq!(ex.body.value()["clients"], json!(["10.0.20.0/24"]));
        assert_eq!(ex.data, Data::None, "an export holds no data");
    }

    #[test]
    fn a_dynamic_export_leaves_its_volumes_to_the_csi_driver() {
        let mut lab = seed();
        lab.storage
            .as_mut()
            .unwrap()
            .exports
            .get_mut("mail")
            .unwrap()
            .dynamic = true;
        let ids = ids(&lab);
        assert!(ids.contains(&"storage/nfs-export/mail".to_string()));
        assert!(
            !ids.iter().any(|i| i.contains("mail.mailserver")),
            "{ids:?}"
        );
        assert!(ids.iter().any(|i| i.contains("blog.blog.content")));
    }

    #[test]
    fn linux_nas_kinds_get_no_quota_and_no_snapshot_tasks() {
        let mut lab = seed();
        lab.storage.as_mut().unwrap().kind = NasKind::Ganesha;
        let all = expand(&lab);
        assert!(!all.iter().any(|r| &*r.id.kind == SNAPSHOT_TASK));
        assert!(
            all.iter()
                .all(|r| r.body.value().get("quota_mib").is_none())
        );
    }
}
