//! Boot menus and install configs as text: pxelinux (menu and per-MAC files), iPXE scripts
//! and kickstart files. Pure functions over the lab model; passwords appear only as the crypt
//! hashes the lab holds (validation refuses anything else).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use cloudlet_core::model::{InstallUser, Lab, Machine, Profile};

/// Where booting machines fetch kernels, initrds and install configs over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootServer {
    /// `http://ADDRESS[:PORT]` of the boot service, without a trailing slash.
    pub base_url: String,
}

impl BootServer {
    /// The boot server of a lab: the PXE machine's first address, or none when the lab has
    /// no PXE server machine.
    pub fn of(lab: &Lab) -> Option<BootServer> {
        let ip: Ipv4Addr = lab.machine_ip(lab.pxe.as_ref()?.server.as_deref()?)?;
        Some(BootServer {
            base_url: format!("http://{ip}"),
        })
    }

    /// The install config URL of a machine (served only to that machine).
    pub fn install_url(&self, machine: &str) -> String {
        format!("{}/install/{machine}/config", self.base_url)
    }

    /// The callback a machine calls when its install finished.
    pub fn callback_url(&self, machine: &str) -> String {
        format!("{}/install/{machine}/done", self.base_url)
    }
}

fn header(s: &mut String, lab: &Lab, machine: &str) {
    let _ = writeln!(
        s,
        "# rendered by cloudlet for {machine}.{}; do not edit",
        lab.site.domain
    );
}

fn profile_label<'a>(name: &'a str, p: &'a Profile) -> &'a str {
    p.label.as_deref().unwrap_or(name)
}

/// `pxelinux.cfg/default`: local boot first, then every profile; the lab's default entry is
/// marked (local boot when none is named).
pub fn pxelinux_menu(lab: &Lab) -> String {
    let mut s = String::new();
    let Some(pxe) = &lab.pxe else { return s };
    let timeout = pxe.menu.timeout.unwrap_or(5);
    let _ = writeln!(
        s,
        "# rendered by cloudlet for lab {}; do not edit",
        lab.name
    );
    let _ = writeln!(s, "DEFAULT menu.c32");
    let _ = writeln!(s, "PROMPT 0");
    let _ = writeln!(s, "TIMEOUT {}", u64::from(timeout) * 10);
    let _ = writeln!(
        s,
        "MENU TITLE {}",
        pxe.menu.title.as_deref().unwrap_or("cloudlet network boot")
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "LABEL local");
    let _ = writeln!(s, "  MENU LABEL Boot from local disk");
    if pxe.menu.default.is_none() {
        let _ = writeln!(s, "  MENU DEFAULT");
    }
    let _ = writeln!(s, "  LOCALBOOT 0");
    for (name, p) in &pxe.profiles {
        let _ = writeln!(s);
        let _ = writeln!(s, "LABEL {name}");
        let _ = writeln!(s, "  MENU LABEL {}", profile_label(name, p));
        if pxe.menu.default.as_deref() == Some(name.as_str()) {
            let _ = writeln!(s, "  MENU DEFAULT");
        }
        let _ = writeln!(s, "  KERNEL {}", p.kernel);
        let mut append = format!("initrd={}", p.initrd);
        if let Some(extra) = &p.append {
            let _ = write!(append, " {extra}");
        }
        let _ = writeln!(s, "  APPEND {append}");
    }
    s
}

/// Kernel command line of a machine's install: the profile's, plus where to fetch the
/// install config and the hostname.
pub fn install_cmdline(
    lab: &Lab,
    machine: &str,
    p: &Profile,
    server: Option<&BootServer>,
) -> String {
    let mut c = String::new();
    if let Some(extra) = &p.append {
        c.push_str(extra);
        c.push(' ');
    }
    if let Some(srv) = server {
        let url = srv.install_url(machine);
        match p.format {
            cloudlet_core::model::InstallFormat::Kickstart => {
                let _ = write!(c, "ks={url} ");
            }
            cloudlet_core::model::InstallFormat::Autoinstall => {
                // cloud-init's NoCloud datasource; `cloud-config-url=/dev/null` stops
                // cloud-init downloading the ISO a second time.
                let _ = write!(
                    c,
                    "autoinstall ds=nocloud-net;s={url}/ cloud-config-url=/dev/null "
                );
            }
            cloudlet_core::model::InstallFormat::Preseed => {
                let _ = write!(c, "auto=true priority=critical url={url} ");
            }
        }
    }
    let _ = write!(c, "hostname={machine} domain={}", lab.site.domain);
    c
}

/// `pxelinux.cfg/01-<mac>`: this machine installs with its profile, no menu.
pub fn pxelinux_machine(
    lab: &Lab,
    machine: &str,
    p: &Profile,
    server: Option<&BootServer>,
) -> String {
    let mut s = String::new();
    header(&mut s, lab, machine);
    let _ = writeln!(s, "DEFAULT install");
    let _ = writeln!(s, "PROMPT 0");
    let _ = writeln!(s, "LABEL install");
    let _ = writeln!(s, "  KERNEL {}", p.kernel);
    let _ = writeln!(
        s,
        "  APPEND initrd={} {}",
        p.initrd,
        install_cmdline(lab, machine, p, server)
    );
    s
}

/// `pxelinux.cfg/01-<mac>` once a machine is installed: boot the local disk.
pub fn pxelinux_local() -> String {
    "DEFAULT local\nPROMPT 0\nLABEL local\n  LOCALBOOT 0\n".to_string()
}

/// The iPXE script of a machine's install (kernel and initrd over HTTP).
pub fn ipxe_machine(lab: &Lab, machine: &str, p: &Profile, server: &BootServer) -> String {
    format!(
        "#!ipxe\n# rendered by cloudlet for {machine}.{}\nkernel {}/boot/{} initrd={} {}\ninitrd {}/boot/{}\nboot\n",
        lab.site.domain,
        server.base_url,
        p.kernel,
        p.initrd.rsplit('/').next().unwrap_or(&p.initrd),
        install_cmdline(lab, machine, p, Some(server)),
        server.base_url,
        p.initrd,
    )
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn user_lines(s: &mut String, u: &InstallUser) {
    let mut line = format!("user --name={}", u.name);
    if u.sudo {
        line.push_str(" --groups=sudo,wheel");
    }
    match &u.password_hash {
        Some(h) => {
            let _ = write!(line, " --iscrypted --password={h}");
        }
        None => line.push_str(" --lock"),
    }
    let _ = writeln!(s, "{line}");
    for k in &u.ssh_keys {
        let _ = writeln!(s, "sshkey --username={} {}", u.name, quote(k));
    }
}

/// A kickstart file for `machine` (the seed's flow): language and keyboard, time zone,
/// locked root, users with crypt hashes and SSH keys, static network from the lab, whole-disk
/// partitioning, packages, the profile's `%post`, and a callback when done.
pub fn kickstart(
    lab: &Lab,
    machine: &str,
    m: &Machine,
    p: &Profile,
    server: Option<&BootServer>,
) -> String {
    let mut s = String::new();
    header(&mut s, lab, machine);
    let _ = writeln!(s, "lang en_US.UTF-8");
    let _ = writeln!(s, "keyboard us");
    let _ = writeln!(s, "timezone {} --utc", lab.site.timezone);
    let _ = writeln!(s, "rootpw --lock");
    for u in &p.users {
        user_lines(&mut s, u);
    }
    if let Some(nic) = m.nics.iter().find(|n| n.ip.is_some()) {
        let net = lab.networks.get(&nic.network);
        let mut line = String::from("network --device=link --activate");
        if let (Some(ip), Some(net)) = (nic.ip, net) {
            let mask = Ipv4Addr::from(
                u32::MAX
                    .checked_shl(32 - u32::from(net.cidr.prefix))
                    .unwrap_or(0),
            );
            let _ = write!(line, " --bootproto=static --ip={ip} --netmask={mask}");
            if let Some(gw) = net.gateway {
                let _ = write!(line, " --gateway={gw}");
            }
            if !net.dns.is_empty() {
                let dns: Vec<String> = net.dns.iter().map(ToString::to_string).collect();
                let _ = write!(line, " --nameserver={}", dns.join(","));
            }
        } else {
            line.push_str(" --bootproto=dhcp");
        }
        let _ = write!(line, " --hostname={machine}.{}", lab.site.domain);
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(s, "firewall --enabled --ssh");
    let _ = writeln!(s, "bootloader --location=mbr");
    let _ = writeln!(s, "zerombr");
    let _ = writeln!(s, "clearpart --all --initlabel");
    let _ = writeln!(s, "part / --fstype={} --size=1 --grow", p.fstype);
    let _ = writeln!(s, "text");
    let _ = writeln!(s, "skipx");
    let _ = writeln!(s, "reboot");
    let _ = writeln!(s);
    let _ = writeln!(s, "%packages");
    for pkg in &p.packages {
        let _ = writeln!(s, "{pkg}");
    }
    let _ = writeln!(s, "%end");
    let _ = writeln!(s);
    let _ = writeln!(s, "%post --interpreter=/bin/sh");
    if let Some(post) = &p.post {
        s.push_str(post);
        if !post.ends_with('\n') {
            s.push('\n');
        }
    }
    if let Some(srv) = server {
        let _ = writeln!(
            s,
            "wget -q -O /dev/null --post-data=installed {} || curl -fsS -X POST {} || true",
            srv.callback_url(machine),
            srv.callback_url(machine)
        );
    }
    let _ = writeln!(s, "%end");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Lab {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/seed");
        cloudlet_core::load(std::path::Path::new(dir)).unwrap().lab
    }

    #[test]
    fn menu_has_local_boot_and_the_default_profile() {
        let lab = seed();
        let m = pxelinux_menu(&lab);
        assert!(
            m.contains("LABEL local\n  MENU LABEL Boot from local disk\n  LOCALBOOT 0\n"),
            "{m}"
        );
        assert!(m.contains("LABEL ubuntu2004\n  MENU LABEL Ubuntu 20.04\n  MENU DEFAULT\n  KERNEL Ubuntu20.04/linux\n  APPEND initrd=Ubuntu20.04/initrd.gz\n"), "{m}");
        assert!(m.contains("TIMEOUT 50\n"));
    }

    #[test]
    fn per_machine_boot_files_point_at_the_install_config() {
        let lab = seed();
        let srv = BootServer::of(&lab).unwrap();
        assert_eq!(srv.base_url, "http://10.0.10.20");
        let p = &lab.pxe.as_ref().unwrap().profiles["ubuntu2004"];
        let cfg = pxelinux_machine(&lab, "k8s-node1", p, Some(&srv));
        assert!(cfg.contains("APPEND initrd=Ubuntu20.04/initrd.gz ks=http://10.0.10.20/install/k8s-node1/config hostname=k8s-node1 domain=home.lan\n"), "{cfg}");
        let ipxe = ipxe_machine(&lab, "k8s-node1", p, &srv);
        assert!(ipxe.starts_with("#!ipxe\n"));
        assert!(
            ipxe.contains("kernel http://10.0.10.20/boot/Ubuntu20.04/linux initrd=initrd.gz ks="),
            "{ipxe}"
        );
        assert!(ipxe.contains("initrd http://10.0.10.20/boot/Ubuntu20.04/initrd.gz\nboot\n"));
    }

    #[test]
    fn kickstart_carries_hashes_keys_network_and_callback() {
        let lab = seed();
        let srv = BootServer::of(&lab).unwrap();
        let p = &lab.pxe.as_ref().unwrap().profiles["ubuntu2004"];
        let m = &lab.machines["k8s-node1"];
        let ks = kickstart(&lab, "k8s-node1", m, p, Some(&srv));
        assert!(ks.contains("timezone Europe/Sofia --utc\n"));
        assert!(ks.contains("rootpw --lock\n"));
        assert!(
            ks.contains(
                "user --name=wizard --groups=sudo,wheel --iscrypted --password=$6$cloudletseed$"
            ),
            "{ks}"
        );
        assert!(
            ks.contains("sshkey --username=wizard \"ssh-ed25519 AAAAC3"),
            "{ks}"
        );
        assert!(ks.contains("network --device=link --activate --bootproto=static --ip=10.0.20.11 --netmask=255.255.255.0 --gateway=10.0.20.1 --nameserver=10.0.20.1 --hostname=k8s-node1.home.lan\n"), "{ks}");
        assert!(ks.contains("part / --fstype=ext4 --size=1 --grow\n"));
        assert!(ks.contains("%packages\nopenssh-server\npython3\nnfs-common\n%end\n"));
        assert!(ks.contains("ln -sf /usr/bin/python3 /usr/bin/python\n"));
        assert!(ks.contains("http://10.0.10.20/install/k8s-node1/done"));
        assert!(!ks.contains("plaintext") && !ks.contains("password --plaintext"));
    }
}
