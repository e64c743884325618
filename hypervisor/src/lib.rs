//! cloudlet's hypervisor domain: the lab's machines and segments as resources.
//!
//! [`expand`] turns the validated lab into the desired VMs and networks (port groups,
//! bridges). Device slots are explicit (`disk0`, `nic1`) so backends manage exactly the
//! devices the lab lists and never touch others. Backends (vSphere, Proxmox, libvirt) plug
//! in as [`cloudlet_core::Provider`]s for [`Domain::Hypervisor`].

pub mod doctor;
pub mod libvirt;
pub mod proxmox;
pub mod vsphere;

/// A hypervisor backend that cannot be set up.
#[cfg(feature = "client")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Proxmox credentials do not name an API token (the text is never shown: it may be
    /// the secret).
    #[error("the Proxmox credentials are not an API token USER@REALM!NAME=SECRET")]
    ProxmoxToken,
    /// The backend's HTTPS client cannot be made.
    #[error("setting up the {backend} client")]
    Client {
        /// The backend.
        backend: &'static str,
        /// Why.
        #[source]
        source: cloudlet_transport::http::SetupError,
    },
}

use cloudlet_core::model::{BootDevice, Lab, Power};
use cloudlet_core::{Domain, Resource, ResourceId};
use serde_json::json;

/// The id of a machine's VM.
pub fn vm_id(machine: &str) -> ResourceId {
    ResourceId::new(Domain::Hypervisor, "vm", machine)
}

/// The id of a segment.
pub fn network_id(network: &str) -> ResourceId {
    ResourceId::new(Domain::Hypervisor, "network", network)
}

/// The desired VMs and segments of a lab.
pub fn expand(lab: &Lab) -> Vec<Resource> {
    let mut out = Vec::with_capacity(lab.networks.len() + lab.machines.len());
    for (name, net) in &lab.networks {
        out.push(Resource::new(
            network_id(name),
            json!({
                "portgroup": net.portgroup.clone().unwrap_or_else(|| name.clone()),
                "vlan": net.vlan,
                "cidr": net.cidr.to_string(),
                "wan": net.wan,
            }),
        ));
    }
    for (name, m) in &lab.machines {
        let disks: Vec<_> = m
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| {
                json!({
                    "slot": format!("disk{i}"),
                    "size_mib": d.size.mib(),
                    "datastore": d.datastore,
                })
            })
            .collect();
        let nics: Vec<_> = m
            .nics
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let portgroup = lab
                    .networks
                    .get(&n.network)
                    .and_then(|net| net.portgroup.clone())
                    .unwrap_or_else(|| n.network.clone());
                json!({
                    "slot": format!("nic{i}"),
                    "network": n.network,
                    "portgroup": portgroup,
                    "mac": lab.nic_mac(name, i, n).to_string(),
                    "vlan": lab.networks.get(&n.network).and_then(|net| net.vlan),
                })
            })
            .collect();
        let boot: Vec<&str> = m
            .boot
            .iter()
            .map(|b| match b {
                BootDevice::Network => "network",
                BootDevice::Disk => "disk",
                BootDevice::Cdrom => "cdrom",
            })
            .collect();
        let mut body = json!({
            "host": lab.machine_host(m),
            "cpus": m.cpus,
            "memory_mib": m.memory.mib(),
            "disks": disks,
            "nics": nics,
            "boot": boot,
            "power": match m.power { Power::On => "on", Power::Off => "off" },
        });
        // Only when the lab uses them, so bodies of labs that do not stay as they were.
        if let Some(c) = &m.clone {
            body["clone"] = json!(c);
        }
        if let Some(ci) = &m.cloud_init {
            body["cloud_init"] = json!({"user": ci.user, "ssh_keys": ci.ssh_keys});
        }
        let mut r = Resource::new(vm_id(name), body);
        // Shrinking a disk loses what is past the new end: the plan marks it.
        r.grow_only = vec!["size_mib".into()];
        let mut nets: Vec<&str> = m.nics.iter().map(|n| n.network.as_str()).collect();
        nets.sort_unstable();
        nets.dedup();
        for n in nets {
            if lab.networks.contains_key(n) {
                r = r.after(network_id(n));
            }
        }
        out.push(r);
    }
    out
}

/// What a reviewer needs to see of a new or removed hypervisor resource, on one line: a VM's
/// CPUs, memory, disks and NICs; a segment's CIDR and VLAN.
pub fn headline(r: &Resource) -> Option<String> {
    let v = r.body.value();
    let gib = |mib: u64| {
        if mib.is_multiple_of(1024) {
            format!("{} GiB", mib / 1024)
        } else {
            format!("{mib} MiB")
        }
    };
    match &*r.id.kind {
        "vm" => {
            let disks: Vec<String> = v["disks"]
                .as_array()?
                .iter()
                .filter_map(|d| d["size_mib"].as_u64().map(gib))
                .collect();
            let nics: Vec<String> = v["nics"]
                .as_array()?
                .iter()
                .filter_map(|n| n["network"].as_str().map(str::to_string))
                .collect();
            let cpus = v["cpus"].as_u64()?;
            Some(format!(
                "{cpus} CPU{}, {} memory, disks {}, NICs on {}",
                if cpus == 1 { "" } else { "s" },
                gib(v["memory_mib"].as_u64()?),
                if disks.is_empty() {
                    "none".into()
                } else {
                    disks.join(" + ")
                },
                if nics.is_empty() {
                    "none".into()
                } else {
                    nics.join(", ")
                },
            ))
        }
        "network" => Some(match v["vlan"].as_u64() {
            Some(vlan) => format!("{}, VLAN {vlan}", v["cidr"].as_str()?),
            None => v["cidr"].as_str()?.to_string(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlet_core::load::load_texts;

    #[test]
    fn vms_depend_on_their_networks_and_get_stable_macs() {
        let text = "name: t\nsite: {domain: t.lan}\nhosts: {h: {kind: esxi, cpus: 4, memory: 8GiB, storage: 100GiB}}\nnetworks: {lan: {cidr: 10.0.0.0/24}}\nmachines:\n  a: {cpus: 1, memory: 1GiB, disks: [{size: 8GiB}], nics: [{network: lan}]}\n";
        let lab = load_texts(vec![("t.yaml".into(), text.into())], ".".into())
            .unwrap()
            .lab;
        let rs = expand(&lab);
        assert_eq!(rs.len(), 2);
        let vm = &rs[1];
        assert_eq!(vm.id.to_string(), "hypervisor/vm/a");
        assert_eq!(vm.depends_on, vec![network_id("lan")]);
        let body = vm.body.value();
        assert_eq!(body["host"], "h");
        assert_eq!(body["disks"][0]["size_mib"], 8192);
        let mac = body["nics"][0]["mac"].as_str().unwrap().to_string();
        assert_eq!(expand(&lab)[1].body.value()["nics"][0]["mac"], mac.as_str());
        assert!(
            u8::from_str_radix(&mac[..2], 16).unwrap() & 2 == 2,
            "locally administered"
        );
    }
}
