//! cloudlet's storage domain: datasets, NFS exports and snapshot tasks as resources.
//!
//! [`expand`] derives them from the lab's storage block: one dataset (or directory) per
//! export, an export open only to the clients the lab allows (networks and machines resolved
//! to addresses), and the snapshot task its policy asks for. Datasets carry `retain` so
//! a backend never deletes data unless the lab says `retain: false`.

use cloudlet_core::model::Lab;
use cloudlet_core::types::Cidr;
use cloudlet_core::{Domain, Resource, ResourceId};
use serde_json::json;

/// The id of an export's dataset.
pub fn dataset_id(export: &str) -> ResourceId {
    ResourceId::new(Domain::Storage, "dataset", export)
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

/// The desired storage state of a lab.
pub fn expand(lab: &Lab) -> Vec<Resource> {
    let Some(st) = &lab.storage else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, e) in &st.exports {
        let ds = dataset_id(name);
        out.push(Resource::new(
            ds.clone(),
            json!({"path": e.path, "retain": e.retain}),
        ));
        out.push(
            Resource::new(
                ResourceId::new(Domain::Storage, "nfs-export", name.clone()),
                json!({
                    "path": e.path,
                    "clients": clients(lab, &e.allow),
                    "read_only": e.read_only,
                    "security": "sys",
                }),
            )
            .after(ds.clone()),
        );
        if let Some(s) = &e.snapshots {
            out.push(
                Resource::new(
                    ResourceId::new(Domain::Storage, "snapshot-task", name.clone()),
                    json!({"path": e.path, "every_s": s.every.0, "keep": s.keep}),
                )
                .after(ds),
            );
        }
    }
    out
}
