//! cloudlet's PXE domain: the boot menu and each network-installed machine's boot entry and
//! install config, as resources.
//!
//! [`expand`] derives them from the lab. Passwords appear only as the crypt hashes the lab
//! holds (validation refuses plaintext); an install config is keyed by the machine's MAC so
//! the boot service can serve it to that machine only.

pub mod doctor;
pub mod http;
pub mod install;
pub mod node_prep;
pub mod proxy_dhcp;
pub mod render;
pub mod service;
pub mod tftp;

use cloudlet_core::model::{BootDevice, InstallFormat, Lab, Machine, Nic, Profile};
use cloudlet_core::{Domain, Resource, ResourceId};
use serde_json::json;

/// The id of a machine's install config.
pub fn install_config_id(machine: &str) -> ResourceId {
    ResourceId::new(Domain::Pxe, "install-config", machine)
}

/// The id of a machine's boot entry.
pub fn boot_entry_id(machine: &str) -> ResourceId {
    ResourceId::new(Domain::Pxe, "boot-entry", machine)
}

/// pxelinux's per-MAC config file name: `01-` (Ethernet) and the MAC with dashes.
pub fn pxelinux_mac_file(mac: &str) -> String {
    format!("01-{}", mac.to_ascii_lowercase().replace(':', "-"))
}

/// The file name of an install config in its format.
pub fn install_file_name(format: InstallFormat) -> &'static str {
    match format {
        InstallFormat::Kickstart => "ks.cfg",
        InstallFormat::Autoinstall => "user-data",
        InstallFormat::Preseed => "preseed.cfg",
    }
}

/// A machine of the lab that installs over the network: it boots from the network first
/// and names an install profile the lab has.
#[derive(Debug, Clone, Copy)]
pub struct NetworkInstall<'a> {
    /// The machine's name.
    pub name: &'a str,
    /// The machine.
    pub machine: &'a Machine,
    /// The NIC it boots with (its first).
    pub nic: &'a Nic,
    /// Its profile's name.
    pub profile_name: &'a str,
    /// Its profile.
    pub profile: &'a Profile,
}

impl NetworkInstall<'_> {
    /// The MAC it boots with, lower case with colons.
    pub fn mac(&self, lab: &Lab) -> String {
        lab.nic_mac(self.name, 0, self.nic)
            .to_string()
            .to_ascii_lowercase()
    }
}

/// Every machine of the lab that installs over the network, in name order.
pub fn network_installs(lab: &Lab) -> Vec<NetworkInstall<'_>> {
    let Some(pxe) = &lab.pxe else {
        return Vec::new();
    };
    lab.machines
        .iter()
        .filter(|(_, m)| m.boot.first() == Some(&BootDevice::Network))
        .filter_map(|(name, m)| {
            let profile_name = m.install.as_deref()?;
            Some(NetworkInstall {
                name,
                machine: m,
                nic: m.nics.first()?,
                profile_name,
                profile: pxe.profiles.get(profile_name)?,
            })
        })
        .collect()
}

/// The desired PXE state of a lab.
pub fn expand(lab: &Lab) -> Vec<Resource> {
    let Some(pxe) = &lab.pxe else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let server = render::BootServer::of(lab);
    let menu = ResourceId::new(Domain::Pxe, "menu", "default");
    let entries: Vec<_> = pxe
        .profiles
        .iter()
        .map(|(name, p)| {
            json!({
                "name": name,
                "label": p.label.clone().unwrap_or_else(|| name.clone()),
                "kernel": p.kernel,
                "initrd": p.initrd,
                "append": p.append,
            })
        })
        .collect();
    out.push(Resource::new(
        menu.clone(),
        json!({
            "title": pxe.menu.title,
            "default": pxe.menu.default.clone().unwrap_or_else(|| "local".into()),
            "timeout_s": pxe.menu.timeout.unwrap_or(5),
            "entries": entries,
            "files": {"pxelinux.cfg/default": render::pxelinux_menu(lab)},
        }),
    ));
    for NetworkInstall {
        name,
        machine: m,
        nic,
        profile_name,
        profile: p,
    } in network_installs(lab)
    {
        let mac = lab.nic_mac(name, 0, nic).to_string();
        let users: Vec<_> = p
            .users
            .iter()
            .map(|u| {
                json!({
                    "name": u.name,
                    "password_hash": u.password_hash,
                    "ssh_keys": u.ssh_keys,
                    "sudo": u.sudo,
                })
            })
            .collect();
        let net = lab.networks.get(&nic.network);
        let cfg = install_config_id(name);
        let mut install_files = serde_json::Map::new();
        install_files.insert(
            format!("install/{name}/{}", install_file_name(p.format)),
            render::install_config(lab, name, m, p, server.as_ref()).into(),
        );
        if p.format == InstallFormat::Autoinstall {
            install_files.insert(
                format!("install/{name}/meta-data"),
                render::meta_data(name).into(),
            );
        }
        let mut boot_files = serde_json::Map::new();
        boot_files.insert(
            format!("pxelinux.cfg/{}", pxelinux_mac_file(&mac)),
            render::pxelinux_machine(lab, name, p, server.as_ref()).into(),
        );
        if let Some(srv) = &server {
            boot_files.insert(
                format!("ipxe/{name}.ipxe"),
                render::ipxe_machine(lab, name, p, srv).into(),
            );
            boot_files.insert(
                format!("grub/grub.cfg-{}", pxelinux_mac_file(&mac)),
                render::grub_machine(lab, name, p, srv).into(),
            );
        }
        out.push(Resource::new(
            cfg.clone(),
            json!({
                "format": match p.format {
                    InstallFormat::Kickstart => "kickstart",
                    InstallFormat::Autoinstall => "autoinstall",
                    InstallFormat::Preseed => "preseed",
                },
                "hostname": name,
                "fqdn": format!("{name}.{}", lab.site.domain),
                "mac": mac,
                "ip": nic.ip.map(|ip| ip.to_string()),
                "prefix": net.map(|n| n.cidr.prefix),
                "gateway": net.and_then(|n| n.gateway).map(|g| g.to_string()),
                "dns": net.map(|n| n.dns.iter().map(ToString::to_string).collect::<Vec<_>>()),
                "timezone": lab.site.timezone,
                "users": users,
                "packages": p.packages,
                "fstype": p.fstype,
                "post": p.post,
                "files": install_files,
            }),
        ));
        out.push(
            Resource::new(
                boot_entry_id(name),
                json!({
                    "mac": mac,
                    "pxelinux_file": pxelinux_mac_file(&mac),
                    "profile": profile_name,
                    "kernel": p.kernel,
                    "initrd": p.initrd,
                    "append": p.append,
                    "install_config": cfg.to_string(),
                    "files": boot_files,
                }),
            )
            .after(cfg)
            .after(menu.clone()),
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn pxelinux_file_names() {
        assert_eq!(
            pxelinux_mac_file("AA:bb:0C:dd:ee:ff"),
            "01-aa-bb-0c-dd-ee-ff"
        );
    }
}
