//! The `libvirt` backend's client: everything but its description (the `client` feature).

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use cloudlet_core::error::ProviderError;
use cloudlet_core::plan::FieldChange;
use cloudlet_core::{Domain, Provider, Resource, ResourceId};
use cloudlet_transport::exec::Host;
use serde_json::{Value, json};

use cloudlet_core::backend::{ConnectError, Connection};

pub(super) fn connect<'a>(
    c: &'a Connection<'a>,
) -> cloudlet_core::backend::BoxFuture<'a, Result<std::sync::Arc<dyn Provider>, ConnectError>> {
    Box::pin(async move {
        let uri = c
            .target
            .endpoint
            .clone()
            .unwrap_or_else(|| "qemu:///system".into());
        Ok(std::sync::Arc::new(Libvirt::new(
            c.lab.name.clone(),
            LibvirtOptions {
                uri,
                host: Host::default(),
                images: c.dir_or("/var/lib/libvirt/images"),
                domain_type: if std::path::Path::new("/dev/kvm").exists() {
                    "kvm".into()
                } else {
                    "qemu".into()
                },
            },
        )) as std::sync::Arc<dyn Provider>)
    })
}

const NS: &str = "https://cloudlet.dev/xmlns/libvirt/1";

/// Where libvirt is and how VMs are made.
#[derive(Debug, Clone)]
pub struct LibvirtOptions {
    /// The libvirt URI (`qemu:///system`).
    pub uri: String,
    /// Where `virsh` and `qemu-img` run.
    pub host: Host,
    /// The directory disk images go to.
    pub images: PathBuf,
    /// `kvm` when the host has /dev/kvm, else `qemu` (TCG).
    pub domain_type: String,
}

/// The libvirt provider.
#[derive(Debug)]
pub struct Libvirt {
    lab: String,
    options: LibvirtOptions,
}

fn err(message: impl Into<String>) -> ProviderError {
    ProviderError::Backend {
        message: message.into(),
        retryable: false,
    }
}

/// A failed command or file operation on the KVM host.
fn host(e: cloudlet_transport::exec::ExecError) -> ProviderError {
    ProviderError::command("libvirt", e)
}

fn invalid(r: &Resource, message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidData {
        what: r.id.to_string(),
        message: message.into(),
    }
}

/// XML text escaped for an attribute or element.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// `vda`, `vdb` ... for disk slot N.
fn target(n: usize) -> String {
    format!(
        "vd{}",
        (b'a' + u8::try_from(n.min(25)).unwrap_or(25)) as char
    )
}

/// What cloudlet reads from a domain definition.
#[derive(Debug, Default, Clone, PartialEq)]
struct DomainInfo {
    name: String,
    uuid: String,
    lab: Option<String>,
    memory_mib: u64,
    cpus: u64,
    boot: Vec<String>,
    /// target dev → image path
    disks: BTreeMap<String, String>,
    /// (mac, network)
    nics: Vec<(String, String)>,
    /// Devices cloudlet does not manage, as written.
    others: Vec<String>,
}

fn parse_domain(
    xml: &str,
    managed_macs: &[String],
    managed_disks: &[String],
) -> Result<DomainInfo, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("domain XML: {e}"))?;
    let root = doc.root_element();
    fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
        n.children().find(|c| c.has_tag_name(name))
    }
    fn text(n: Option<roxmltree::Node<'_, '_>>) -> String {
        n.and_then(|n| n.text()).unwrap_or("").trim().to_string()
    }
    let mut d = DomainInfo {
        name: text(child(root, "name")),
        uuid: text(child(root, "uuid")),
        ..DomainInfo::default()
    };
    if let Some(m) = child(root, "metadata") {
        d.lab = m
            .children()
            .find(|c| c.tag_name().name() == "vm" && c.tag_name().namespace() == Some(NS))
            .and_then(|c| c.attribute("lab"))
            .map(str::to_string);
    }
    let mem = child(root, "memory");
    let kib: u64 = text(mem).parse().unwrap_or(0);
    d.memory_mib = match mem.and_then(|m| m.attribute("unit")).unwrap_or("KiB") {
        "MiB" => kib,
        "GiB" => kib * 1024,
        "b" | "bytes" => kib >> 20,
        _ => kib / 1024,
    };
    d.cpus = text(child(root, "vcpu")).parse().unwrap_or(0);
    if let Some(os) = child(root, "os") {
        d.boot = os
            .children()
            .filter(|c| c.has_tag_name("boot"))
            .filter_map(|c| c.attribute("dev"))
            .map(|b| match b {
                "hd" => "disk".to_string(),
                other => other.to_string(),
            })
            .collect();
    }
    if let Some(devs) = child(root, "devices") {
        for dev in devs.children().filter(roxmltree::Node::is_element) {
            let raw = &xml[dev.range()];
            match dev.tag_name().name() {
                "disk" => {
                    let t = child(dev, "target")
                        .and_then(|t| t.attribute("dev"))
                        .unwrap_or("");
                    if managed_disks.iter().any(|m| m == t) {
                        let src = child(dev, "source")
                            .and_then(|s| s.attribute("file"))
                            .unwrap_or("");
                        d.disks.insert(t.to_string(), src.to_string());
                    } else {
                        d.others.push(raw.to_string());
                    }
                }
                "interface" => {
                    let mac = child(dev, "mac")
                        .and_then(|m| m.attribute("address"))
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    let net = child(dev, "source")
                        .and_then(|s| s.attribute("network"))
                        .unwrap_or("");
                    if managed_macs.contains(&mac) {
                        d.nics.push((mac, net.to_string()));
                    } else {
                        d.others.push(raw.to_string());
                    }
                }
                // libvirt's own: re-added by itself on every definition.
                "emulator" => {}
                _ => d.others.push(raw.to_string()),
            }
        }
    }
    Ok(d)
}

impl Libvirt {
    /// A provider for `lab`.
    pub fn new(lab: impl Into<String>, options: LibvirtOptions) -> Self {
        Libvirt {
            lab: lab.into(),
            options,
        }
    }

    async fn virsh(&self, args: &[&str]) -> Result<String, ProviderError> {
        let mut all = vec!["virsh", "-q", "-c", self.options.uri.as_str()];
        all.extend_from_slice(args);
        self.options.host.run(&all).await.map_err(host)
    }

    /// Defines from XML text (through a file on the host).
    async fn define(&self, what: &str, xml: &str) -> Result<(), ProviderError> {
        let path = self.options.images.join(format!(".cloudlet-{what}.xml"));
        self.options.host.write(&path, xml).await.map_err(host)?;
        let p = path.display().to_string();
        let cmd = if what.starts_with("net-") {
            "net-define"
        } else {
            "define"
        };
        self.virsh(&[cmd, &p]).await.map(|_| ())
    }

    fn net_name(&self, net: &str) -> String {
        format!("cloudlet-{}-{net}", self.lab)
    }

    /// A bridge name of at most 15 characters, stable per lab and network.
    fn bridge(&self, net: &str) -> String {
        let mut h: u32 = 2_166_136_261;
        for b in format!("{}/{net}", self.lab).bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(16_777_619);
        }
        format!("clbr{h:08x}")
    }

    fn image(&self, vm: &str, slot: &str) -> PathBuf {
        self.options.images.join(format!("{vm}-{slot}.qcow2"))
    }

    fn domain_xml(
        &self,
        r: &Resource,
        uuid: Option<&str>,
        others: &[String],
    ) -> Result<String, ProviderError> {
        let v = r.body.value();
        let name = &*r.id.name;
        let mut x = format!(
            "<domain type='{}'>\n  <name>{}</name>\n",
            esc(&self.options.domain_type),
            esc(name)
        );
        if let Some(u) = uuid.filter(|u| !u.is_empty()) {
            x.push_str(&format!("  <uuid>{}</uuid>\n", esc(u)));
        }
        x.push_str(&format!(
            "  <metadata><cloudlet:vm xmlns:cloudlet='{NS}' lab='{}' resource='{}'/></metadata>\n",
            esc(&self.lab),
            esc(&r.id.to_string())
        ));
        let mem = v["memory_mib"]
            .as_u64()
            .ok_or_else(|| invalid(r, "no memory"))?;
        x.push_str(&format!(
            "  <memory unit='MiB'>{mem}</memory>\n  <vcpu>{}</vcpu>\n",
            v["cpus"].as_u64().unwrap_or(1)
        ));
        x.push_str("  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n");
        for b in v["boot"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let dev = match b {
                "disk" => "hd",
                "network" => "network",
                "cdrom" => "cdrom",
                other => return Err(invalid(r, format!("unknown boot device `{other}`"))),
            };
            x.push_str(&format!("    <boot dev='{dev}'/>\n"));
        }
        x.push_str("  </os>\n  <devices>\n");
        for (i, d) in v["disks"].as_array().into_iter().flatten().enumerate() {
            let slot = d["slot"].as_str().unwrap_or("disk");
            x.push_str(&format!(
                "    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='{}' bus='virtio'/></disk>\n",
                esc(&self.image(name, slot).display().to_string()),
                target(i)
            ));
        }
        for n in v["nics"].as_array().into_iter().flatten() {
            x.push_str(&format!(
                "    <interface type='network'><mac address='{}'/><source network='{}'/><model type='virtio'/></interface>\n",
                esc(&n["mac"].as_str().unwrap_or("").to_ascii_lowercase()),
                esc(&self.net_name(n["network"].as_str().unwrap_or("")))
            ));
        }
        for o in others {
            x.push_str("    ");
            x.push_str(o);
            x.push('\n');
        }
        x.push_str("  </devices>\n</domain>\n");
        Ok(x)
    }

    fn managed(v: &Value) -> (Vec<String>, Vec<String>) {
        let macs = v["nics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["mac"].as_str().map(str::to_ascii_lowercase))
            .collect();
        let disks = (0..v["disks"].as_array().map_or(0, Vec::len))
            .map(target)
            .collect();
        (macs, disks)
    }

    async fn read_domain(
        &self,
        name: &str,
        desired: Option<&Resource>,
    ) -> Result<Option<DomainInfo>, ProviderError> {
        let xml = match self.virsh(&["dumpxml", "--inactive", name]).await {
            Ok(x) => x,
            Err(_) => return Ok(None),
        };
        let (macs, disks) = match desired {
            Some(r) => Self::managed(&r.body.value()),
            // Without the lab's view every NIC and vdX disk counts as cloudlet's for reading.
            None => (Vec::new(), Vec::new()),
        };
        let mut info = parse_domain(&xml, &macs, &disks).map_err(err)?;
        if desired.is_none() {
            info = parse_domain(
                &xml,
                &all_macs(&xml),
                &(0..26).map(target).collect::<Vec<_>>(),
            )
            .map_err(err)?;
        }
        Ok(Some(info))
    }

    async fn disk_mib(&self, path: &str) -> Option<u64> {
        let out = self
            .options
            .host
            .run(&["qemu-img", "info", "--output=json", "-U", path])
            .await
            .ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        v["virtual-size"].as_u64().map(|b| b >> 20)
    }

    /// The names of every domain defined here.
    async fn domains(&self) -> Result<Vec<String>, ProviderError> {
        Ok(self
            .virsh(&["list", "--all", "--name"])
            .await?
            .lines()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect())
    }

    async fn running(&self, name: &str) -> bool {
        self.virsh(&["domstate", name])
            .await
            .is_ok_and(|s| s.trim() == "running")
    }

    /// The body libvirt holds, in the lab's form.
    async fn vm_body(&self, info: &DomainInfo, desired: Option<&Resource>) -> Value {
        let want = desired.map(|r| r.body.value()).unwrap_or(Value::Null);
        let mut disks = Vec::new();
        for (i, (_, path)) in info.disks.iter().enumerate() {
            let slot = format!("disk{i}");
            let datastore = want["disks"][i]["datastore"].clone();
            disks.push(json!({"slot": slot, "size_mib": self.disk_mib(path).await, "datastore": datastore}));
        }
        let prefix = format!("cloudlet-{}-", self.lab);
        let nics: Vec<Value> = info
            .nics
            .iter()
            .enumerate()
            .map(|(i, (mac, net))| {
                let network = net.strip_prefix(&prefix).unwrap_or(net);
                let portgroup = want["nics"][i]["portgroup"].as_str().unwrap_or(network).to_string();
                // The VLAN is the segment's (its bridge), not the NIC's: as the lab says.
                json!({"slot": format!("nic{i}"), "network": network, "portgroup": portgroup, "mac": mac, "vlan": want["nics"][i]["vlan"]})
            })
            .collect();
        json!({
            "host": want["host"],
            "cpus": info.cpus,
            "memory_mib": info.memory_mib,
            "disks": disks,
            "nics": nics,
            "boot": info.boot,
            "power": if self.running(&info.name).await { "on" } else { "off" },
        })
    }

    async fn ensure_disks(
        &self,
        r: &Resource,
        info: Option<&DomainInfo>,
    ) -> Result<(), ProviderError> {
        let v = r.body.value();
        for d in v["disks"].as_array().into_iter().flatten() {
            let slot = d["slot"].as_str().unwrap_or("disk");
            let want = d["size_mib"]
                .as_u64()
                .ok_or_else(|| invalid(r, "disk without size"))?;
            let path = self.image(&r.id.name, slot);
            let p = path.display().to_string();
            match self.disk_mib(&p).await {
                None => {
                    self.options
                        .host
                        .run(&[
                            "qemu-img",
                            "create",
                            "-q",
                            "-f",
                            "qcow2",
                            &p,
                            &format!("{want}M"),
                        ])
                        .await
                        .map_err(host)?;
                }
                Some(have) if have > want => {
                    // The plan marked this as data loss and the apply was allowed to run it.
                    if info.is_some() && self.running(&r.id.name).await {
                        return Err(invalid(
                            r,
                            format!(
                                "{slot} would shrink from {have} MiB to {want} MiB while the VM runs: power it off first (`power: off`)"
                            ),
                        ));
                    }
                    self.options
                        .host
                        .run(&[
                            "qemu-img",
                            "resize",
                            "-q",
                            "--shrink",
                            &p,
                            &format!("{want}M"),
                        ])
                        .await
                        .map_err(host)?;
                }
                Some(have) if have < want => {
                    if info.is_some() && self.running(&r.id.name).await {
                        let dev = target(slot.trim_start_matches("disk").parse().unwrap_or(0));
                        self.virsh(&["blockresize", &r.id.name, &dev, &format!("{want}M")])
                            .await?;
                    } else {
                        self.options
                            .host
                            .run(&["qemu-img", "resize", "-q", &p, &format!("{want}M")])
                            .await
                            .map_err(host)?;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    async fn set_power(&self, r: &Resource) -> Result<(), ProviderError> {
        let on = r.body.value()["power"] == "on";
        let running = self.running(&r.id.name).await;
        if on && !running {
            self.virsh(&["start", &r.id.name]).await?;
        } else if !on && running {
            self.virsh(&["destroy", &r.id.name]).await?;
        }
        Ok(())
    }

    async fn write_vm(&self, r: &Resource) -> Result<(), ProviderError> {
        let current = self.read_domain(&r.id.name, Some(r)).await?;
        if let Some(c) = &current
            && c.lab.as_deref() != Some(self.lab.as_str())
        {
            return Err(invalid(
                r,
                format!(
                    "libvirt already has a domain `{}` that cloudlet did not make; rename the machine or the domain",
                    r.id.name
                ),
            ));
        }
        // A VM the lab stops is stopped first: what follows (a disk shrink) may need it off.
        if current.is_some() && r.body.value()["power"] == "off" && self.running(&r.id.name).await {
            self.virsh(&["destroy", &r.id.name]).await?;
        }
        self.ensure_disks(r, current.as_ref()).await?;
        let (uuid, others) = current
            .as_ref()
            .map(|c| (Some(c.uuid.as_str()), c.others.as_slice()))
            .unwrap_or((None, &[]));
        let xml = self.domain_xml(r, uuid, others)?;
        self.define(&format!("vm-{}", r.id.name), &xml).await?;
        self.set_power(r).await
    }

    async fn write_net(&self, r: &Resource) -> Result<(), ProviderError> {
        let name = self.net_name(&r.id.name);
        let xml = format!(
            "<network>\n  <name>{}</name>\n  <bridge name='{}' stp='off' delay='0'/>\n</network>\n",
            esc(&name),
            self.bridge(&r.id.name)
        );
        self.define(&format!("net-{}", r.id.name), &xml).await?;
        let active = self.virsh(&["net-info", &name]).await.unwrap_or_default();
        if !active
            .lines()
            .any(|l| l.starts_with("Active:") && l.ends_with("yes"))
        {
            self.virsh(&["net-start", &name]).await?;
        }
        self.virsh(&["net-autostart", &name]).await.map(|_| ())
    }
}

fn all_macs(xml: &str) -> Vec<String> {
    roxmltree::Document::parse(xml)
        .map(|d| {
            d.descendants()
                .filter(|n| n.has_tag_name("mac"))
                .filter_map(|n| n.attribute("address"))
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl Provider for Libvirt {
    fn name(&self) -> &str {
        "libvirt"
    }

    /// This host as libvirt sees it (`virsh nodeinfo`: CPUs and memory), every domain
    /// defined on it (vCPUs, memory, each `vdX` image's virtual size) and the file system of
    /// the images directory (`df`).
    async fn host_usage(&self) -> Result<cloudlet_core::HostUsage, ProviderError> {
        let info = self.virsh(&["nodeinfo"]).await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| {
                    l.strip_prefix(name)?
                        .split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .ok_or_else(|| err(format!("`virsh nodeinfo` has no `{name}` line: {info}")))
        };
        let cpus = field("CPU(s):")?;
        let memory_kib = field("Memory size:")?;
        let mut vms = Vec::new();
        for name in &self.domains().await? {
            let Some(d) = self.read_domain(name, None).await? else {
                continue;
            };
            let mut disk = 0;
            for path in d.disks.values() {
                disk += self.disk_mib(path).await.unwrap_or(0) << 20;
            }
            vms.push(cloudlet_core::VmUsage {
                name: d.name,
                lab: d.lab.as_deref() == Some(self.lab.as_str()),
                cpus: u32::try_from(d.cpus).unwrap_or(u32::MAX),
                memory: d.memory_mib << 20,
                disk,
            });
        }
        let dir = self.options.images.to_string_lossy().into_owned();
        let df = self
            .options
            .host
            .run(&["df", "-B1", "--output=size,avail", &dir])
            .await
            .map_err(host)?;
        let numbers: Vec<u64> = df
            .lines()
            .nth(1)
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let hostname = self.virsh(&["hostname"]).await?;
        Ok(cloudlet_core::HostUsage {
            name: hostname.trim().to_string(),
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            memory: memory_kib << 10,
            datastore: match numbers[..] {
                [capacity, free] => Some(cloudlet_core::DatastoreUsage {
                    name: dir,
                    capacity,
                    free,
                }),
                _ => None,
            },
            vms,
        })
    }

    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        self.observe_with(domain, &[]).await
    }

    async fn observe_with(
        &self,
        domain: Domain,
        desired: &[Resource],
    ) -> Result<Vec<Resource>, ProviderError> {
        if domain != Domain::Hypervisor {
            return Ok(Vec::new());
        }
        let want: BTreeMap<&ResourceId, &Resource> = desired.iter().map(|r| (&r.id, r)).collect();
        let mut out = Vec::new();
        let prefix = format!("cloudlet-{}-", self.lab);
        for net in self
            .virsh(&["net-list", "--all", "--name"])
            .await?
            .lines()
            .map(str::trim)
        {
            let Some(short) = net.strip_prefix(&prefix) else {
                continue;
            };
            let id = ResourceId::new(Domain::Hypervisor, "network", short);
            let active = self.virsh(&["net-info", net]).await.unwrap_or_default();
            let running = active
                .lines()
                .any(|l| l.starts_with("Active:") && l.ends_with("yes"));
            let r = match want.get(&id) {
                Some(w) if running => (*w).clone(),
                _ => Resource::new(id, json!({"active": running})),
            };
            out.push(r);
        }
        for name in &self.domains().await? {
            let id = ResourceId::new(Domain::Hypervisor, "vm", name);
            let w = want.get(&id).copied();
            let Some(info) = self.read_domain(name, w).await? else {
                continue;
            };
            if info.lab.as_deref() != Some(self.lab.as_str()) {
                continue;
            }
            let body = self.vm_body(&info, w).await;
            let same = body.clone();
            out.push(Resource::observed(
                id,
                w,
                |w| w.body.value() == same,
                || body,
            ));
        }
        Ok(out)
    }

    async fn create(&self, r: &Resource) -> Result<(), ProviderError> {
        match &*r.id.kind {
            "vm" => self.write_vm(r).await,
            "network" => self.write_net(r).await,
            other => Err(invalid(r, format!("libvirt has no `{other}`"))),
        }
    }

    async fn update(&self, r: &Resource, _changes: &[FieldChange]) -> Result<(), ProviderError> {
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), ProviderError> {
        match &*r.id.kind {
            "vm" => {
                if self.running(&r.id.name).await {
                    self.virsh(&["destroy", &r.id.name]).await?;
                }
                // The disk images stay: they hold the machine's data.
                self.virsh(&["undefine", &r.id.name]).await.map(|_| ())
            }
            "network" => {
                let name = self.net_name(&r.id.name);
                let _ = self.virsh(&["net-destroy", &name]).await;
                self.virsh(&["net-undefine", &name]).await.map(|_| ())
            }
            other => Err(invalid(r, format!("libvirt has no `{other}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_manages_and_keeps_the_rest_as_written() {
        let xml = "<domain type='kvm'><name>a</name><uuid>u-1</uuid><metadata><cloudlet:vm xmlns:cloudlet='https://cloudlet.dev/xmlns/libvirt/1' lab='seed'/></metadata><memory unit='KiB'>524288</memory><vcpu placement='static'>2</vcpu><os><type>hvm</type><boot dev='network'/><boot dev='hd'/></os><devices><emulator>/usr/bin/qemu</emulator><disk type='file' device='disk'><source file='/i/a-disk0.qcow2'/><target dev='vda' bus='virtio'/></disk><disk type='file' device='disk'><source file='/i/extra.qcow2'/><target dev='vdz' bus='virtio'/></disk><interface type='network'><mac address='52:54:00:AA:BB:CC'/><source network='cloudlet-seed-lan'/></interface><watchdog model='i6300esb'/></devices></domain>";
        let d = parse_domain(xml, &["52:54:00:aa:bb:cc".into()], &["vda".into()]).unwrap();
        assert_eq!((d.memory_mib, d.cpus), (512, 2));
        assert_eq!(d.boot, vec!["network", "disk"]);
        assert_eq!(d.lab.as_deref(), Some("seed"));
        assert_eq!(d.disks.len(), 1);
        assert_eq!(
            d.nics,
            vec![(
                "52:54:00:aa:bb:cc".to_string(),
                "cloudlet-seed-lan".to_string()
            )]
        );
        assert_eq!(
            d.others.len(),
            2,
            "the disk and the watchdog the lab does not list: {:?}",
            d.others
        );
        assert!(d.others[0].contains("vdz") && d.others[1].contains("watchdog"));
    }
}
