//! The lab model: one typed description of a whole self-hosted cloud.
//!
//! Every struct refuses unknown keys. Collections of named things (hosts, networks,
//! machines, apps, ...) are mappings keyed by name, so a name is unique by construction and
//! the lab can be split over several files.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{Cidr, Duration, IpRange, MacAddr, Size};

/// A whole lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lab {
    /// The lab's name: a DNS label. It is written into every ownership marker and seeds generated MACs.
    pub name: String,
    /// Facts about the site.
    pub site: Site,
    /// Which backend serves each domain; everything is `local` unless said otherwise.
    #[serde(default)]
    pub targets: Targets,
    /// Physical hypervisor hosts.
    #[serde(default)]
    pub hosts: BTreeMap<String, Host>,
    /// Network segments (port groups, bridges, VLANs).
    #[serde(default)]
    pub networks: BTreeMap<String, Network>,
    /// The router/firewall between the segments.
    #[serde(default)]
    pub router: Option<Router>,
    /// Virtual machines.
    #[serde(default)]
    pub machines: BTreeMap<String, Machine>,
    /// Network boot and unattended install.
    #[serde(default)]
    pub pxe: Option<Pxe>,
    /// The NAS and its NFS exports.
    #[serde(default)]
    pub storage: Option<Storage>,
    /// The Kubernetes cluster and its apps.
    #[serde(default)]
    pub cluster: Option<Cluster>,
    /// What is backed up, where, and how often.
    #[serde(default)]
    pub backup: Option<Backup>,
    /// `cloudlet watch` run inside the lab's own cluster.
    #[serde(default)]
    pub watch: Option<Watch>,
}

/// Facts about the site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The internal DNS domain (`lab.example`); machines are `NAME.DOMAIN`.
    pub domain: String,
    /// The IANA time zone installed machines use.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_timezone() -> String {
    "UTC".into()
}

/// A reference to a secret: where to read it, never the value itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRef {
    /// The name of an environment variable.
    Env(String),
    /// A file path (relative paths are relative to the lab directory).
    File(PathBuf),
}

impl SecretRef {
    /// Reads the secret: the variable's value, or the file's text without surrounding
    /// whitespace (a relative path is relative to `base_dir`, the lab's directory). The error
    /// names where it looked, never a value.
    pub fn read(&self, base_dir: &std::path::Path) -> Result<String, crate::error::SecretError> {
        match self {
            SecretRef::Env(v) => {
                std::env::var(v).map_err(|_| crate::error::SecretError::EnvUnset { var: v.clone() })
            }
            SecretRef::File(f) => {
                let path = base_dir.join(f);
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_string())
                    .map_err(|source| crate::error::SecretError::Read { path, source })
            }
        }
    }

    /// Where the secret is, for plans and logs (`env NAME`, `file PATH`).
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(v) => format!("env {v}"),
            SecretRef::File(f) => format!("file {}", f.display()),
        }
    }
}

/// Which backend serves each domain.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Backend for machines and segments.
    #[serde(default)]
    pub hypervisor: Target,
    /// Backend for the router's DHCP reservations, DNS, forwards and firewall.
    #[serde(default)]
    pub router: Target,
    /// Backend for network boot.
    #[serde(default)]
    pub pxe: Target,
    /// Backend for NFS exports and datasets.
    #[serde(default)]
    pub storage: Target,
    /// Backend for Kubernetes objects.
    #[serde(default)]
    pub cluster: Target,
}

impl Targets {
    /// Each domain with its target, in apply order of preference.
    pub fn each(&self) -> [(crate::resource::Domain, &Target); 5] {
        use crate::resource::Domain;
        [
            (Domain::Hypervisor, &self.hypervisor),
            (Domain::Router, &self.router),
            (Domain::Pxe, &self.pxe),
            (Domain::Storage, &self.storage),
            (Domain::Cluster, &self.cluster),
        ]
    }
}

/// One backend: its `kind`, the settings every backend may read, and the settings of its own
/// (`datacenter`, `node`, ...). Which fields a kind reads is its backend's descriptor's to say
/// (see [`crate::backend`]); validation refuses the others with their position.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
pub struct Target {
    /// The backend kind (`local`, `vsphere`, `proxmox`, `libvirt`, `pfsense`, `opnsense`,
    /// `linux`, `truenas`, `ganesha`, `linux_nfs`, `kubernetes`).
    #[serde(default)]
    pub kind: TargetKind,
    /// The API endpoint (URL) of a real backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Where the credentials are read from (never inline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<SecretRef>,
    /// Where the web interface's `USER:PASSWORD` is read from (never inline), for what a
    /// device's API cannot do: pfSense hands out its `config.xml` (`backup.router`) only to
    /// its web interface. Give a user with that page's privilege and no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gui_credentials: Option<SecretRef>,
    /// A CA bundle to trust for this endpoint (TLS verification stays on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Backends on this machine (Linux router, nfs-ganesha, kernel NFS, libvirt images): the
    /// directory cloudlet keeps its files in (each backend has a default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// The SHA-256 fingerprint of the endpoint's certificate (`AB:CD:...`): trust exactly
    /// that certificate (a self-signed vCenter or ESXi) instead of a CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The backend's own settings: vSphere `datacenter`, `datastore`, `pool`, `switch`;
    /// Proxmox `node`, `datastore`, `zone`.
    #[serde(flatten)]
    pub settings: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Target;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a target: its `kind` and the settings its backend reads")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Target, A::Error> {
                let mut t = Target::default();
                while let Some(key) = m.next_key::<String>()? {
                    match key.as_str() {
                        "kind" => t.kind = m.next_value()?,
                        "endpoint" => t.endpoint = m.next_value()?,
                        "credentials" => t.credentials = m.next_value()?,
                        "gui_credentials" => t.gui_credentials = m.next_value()?,
                        "ca" => t.ca = m.next_value()?,
                        "dir" => t.dir = m.next_value()?,
                        "fingerprint" => t.fingerprint = m.next_value()?,
                        _ => {
                            let value: String = m.next_value()?;
                            t.settings.insert(key, value);
                        }
                    }
                }
                Ok(t)
            }
        }
        d.deserialize_map(V)
    }
}

impl Target {
    /// Every field given besides `kind`, by name: the common ones, then the backend's own.
    pub fn given(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for (name, set) in [
            ("endpoint", self.endpoint.is_some()),
            ("credentials", self.credentials.is_some()),
            ("gui_credentials", self.gui_credentials.is_some()),
            ("ca", self.ca.is_some()),
            ("dir", self.dir.is_some()),
            ("fingerprint", self.fingerprint.is_some()),
        ] {
            if set {
                out.push(name);
            }
        }
        out.extend(self.settings.keys().map(String::as_str));
        out
    }
}

/// The name of a backend kind, as a target's `kind` gives it (`vsphere`); which names exist
/// is the backend list's to say (see [`crate::backend`]).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct TargetKind(pub String);

impl Default for TargetKind {
    fn default() -> Self {
        TargetKind::local()
    }
}

impl TargetKind {
    /// `local`: render to files.
    pub fn local() -> TargetKind {
        TargetKind("local".into())
    }

    /// The name as written in a lab file.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the `local` backend.
    pub fn is_local(&self) -> bool {
        self.0 == "local"
    }
}

impl PartialEq<&str> for TargetKind {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<&str> for TargetKind {
    fn from(s: &str) -> Self {
        TargetKind(s.to_string())
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A physical hypervisor host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// What runs on it.
    pub kind: HostKind,
    /// Physical cores (or threads) available to VMs.
    pub cpus: u32,
    /// Memory available to VMs.
    pub memory: Size,
    /// Datastore capacity available to VM disks.
    pub storage: Size,
    /// How far the host may be overcommitted.
    #[serde(default)]
    pub overcommit: Overcommit,
}

/// Hypervisor kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostKind {
    /// VMware ESXi, alone or under vCenter.
    Esxi,
    /// Proxmox VE.
    Proxmox,
    /// Linux with libvirt.
    Libvirt,
}

/// Overcommit ratios: allocated / physical.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Overcommit {
    /// vCPUs per physical CPU (default 4).
    #[serde(default = "four")]
    pub cpu: f64,
    /// Memory ratio (default 1: no overcommit).
    #[serde(default = "one")]
    pub memory: f64,
    /// Disk ratio (default 1: thick provisioning).
    #[serde(default = "one")]
    pub storage: f64,
}

fn four() -> f64 {
    4.0
}
fn one() -> f64 {
    1.0
}

impl Default for Overcommit {
    fn default() -> Self {
        Overcommit {
            cpu: 4.0,
            memory: 1.0,
            storage: 1.0,
        }
    }
}

/// A network segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The IPv4 subnet.
    pub cidr: Cidr,
    /// The default gateway (normally the router's address on this segment).
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// The 802.1Q VLAN id, if tagged.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// The port group / bridge name on the hypervisor (defaults to the network's name).
    #[serde(default)]
    pub portgroup: Option<String>,
    /// Whether this is the upstream (WAN) segment.
    #[serde(default)]
    pub wan: bool,
    /// DHCP served on this segment by the router.
    #[serde(default)]
    pub dhcp: Option<Dhcp>,
    /// DNS servers handed out on this segment.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
}

/// DHCP settings of a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dhcp {
    /// Dynamic pools.
    pub ranges: Vec<IpRange>,
    /// Lease time.
    #[serde(default)]
    pub lease: Option<Duration>,
}

/// The router/firewall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Router {
    /// What the router runs.
    pub kind: RouterKind,
    /// The machine that is the router (when it is a VM of the lab).
    #[serde(default)]
    pub machine: Option<String>,
    /// Port forwards from the WAN side.
    #[serde(default)]
    pub forwards: Vec<Forward>,
    /// Firewall intents between segments.
    #[serde(default)]
    pub firewall: Vec<FirewallRule>,
}

/// Router software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RouterKind {
    /// pfSense.
    Pfsense,
    /// OPNsense.
    Opnsense,
    /// Linux with dnsmasq and nftables.
    Linux,
}

/// Transport protocols.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Upper-case name, as Kubernetes writes it.
    pub fn k8s(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A WAN port forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// The WAN port.
    pub port: u16,
    /// The protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// Where to: an app name, `ingress`, or an IPv4 address.
    pub to: String,
    /// The destination port (defaults to `port`).
    #[serde(default)]
    pub to_port: Option<u16>,
    /// Restrict the source addresses.
    #[serde(default)]
    pub from: Option<Cidr>,
}

/// A firewall intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallRule {
    /// Source network name, `wan`, or `any`.
    pub from: String,
    /// Destination network name or `any`.
    pub to: String,
    /// Protocol (any when omitted).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Destination ports (any when empty).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Allow or deny.
    pub action: FirewallAction,
}

/// Firewall verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FirewallAction {
    /// Let it through.
    Allow,
    /// Drop it.
    Deny,
}

/// A virtual machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// The host it runs on (may be omitted when the lab has exactly one host).
    #[serde(default)]
    pub host: Option<String>,
    /// What the machine is for.
    #[serde(default)]
    pub role: Option<Role>,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory.
    pub memory: Size,
    /// Disks, in slot order.
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// Network interfaces, in slot order.
    #[serde(default)]
    pub nics: Vec<Nic>,
    /// Boot order; `network` first means the machine installs itself over PXE.
    #[serde(default = "default_boot")]
    pub boot: Vec<BootDevice>,
    /// The PXE install profile.
    #[serde(default)]
    pub install: Option<String>,
    /// A VM template on the hypervisor to clone instead of installing (Proxmox: a template
    /// VM's name). Used when the VM is made; changing it later does not rebuild the VM.
    #[serde(default)]
    pub clone: Option<String>,
    /// cloud-init settings for a cloned cloud image (Proxmox).
    #[serde(default)]
    pub cloud_init: Option<CloudInit>,
    /// Desired power state.
    #[serde(default)]
    pub power: Power,
}

fn default_boot() -> Vec<BootDevice> {
    vec![BootDevice::Disk]
}

/// Machine roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The router/firewall VM.
    Router,
    /// The hypervisor manager (vCenter appliance).
    Manager,
    /// The PXE/install server.
    Pxe,
    /// The NAS.
    Nas,
    /// A Kubernetes control-plane node.
    ControlPlane,
    /// A Kubernetes worker node.
    Worker,
    /// Anything else.
    Other,
}

/// A virtual disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Capacity.
    pub size: Size,
    /// The datastore or storage pool.
    #[serde(default)]
    pub datastore: Option<String>,
}

/// cloud-init settings the hypervisor hands a VM (Proxmox's cloud-init drive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudInit {
    /// The default user.
    #[serde(default)]
    pub user: Option<String>,
    /// SSH public keys for that user.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
}

/// A virtual NIC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// The network it is on.
    pub network: String,
    /// A fixed MAC; when omitted, a stable locally administered one is derived.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The address (reserved at the router's DHCP server).
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
}

/// Boot devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BootDevice {
    /// PXE / network boot.
    Network,
    /// The first disk.
    Disk,
    /// The CD-ROM.
    Cdrom,
}

/// Power states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Power {
    /// Running.
    #[default]
    On,
    /// Stopped.
    Off,
}

/// Network boot and unattended install.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pxe {
    /// The machine that serves network boot (omit when cloudlet serves it itself).
    #[serde(default)]
    pub server: Option<String>,
    /// cloudlet serves network boot itself during `apply` (proxyDHCP next to the router's
    /// DHCP server, TFTP and HTTP), then waits for the network installs to finish.
    #[serde(default)]
    pub serve: Option<Serve>,
    /// The boot menu.
    #[serde(default)]
    pub menu: Menu,
    /// Install profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// How cloudlet serves network boot itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Serve {
    /// This host's address on the boot segment.
    pub address: Ipv4Addr,
    /// The interface of the boot segment (proxyDHCP binds to it); every interface when
    /// omitted.
    #[serde(default)]
    pub interface: Option<String>,
    /// The directory of boot programs, kernels and initrds, relative to the lab.
    #[serde(default = "default_boot_root")]
    pub root: PathBuf,
    /// How iPXE clients boot: `ipxe` (their own script over HTTP) or `pxelinux` (TFTP).
    #[serde(default)]
    pub loader: BootLoader,
    /// Run proxyDHCP (turn off when the router's DHCP server points machines here).
    #[serde(default = "yes")]
    pub proxy_dhcp: bool,
    /// What proxyDHCP's first answer (on port 67) carries: `boot_file` (the boot file, with
    /// "boot it, skip discovery") or `port4011` (only this server, which the firmware then
    /// asks on port 4011 for its boot file — for firmware that takes no file from a proxy
    /// offer).
    #[serde(default)]
    pub proxy_offer: ProxyOffer,
    /// HTTP port.
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    /// TFTP port.
    #[serde(default = "default_tftp_port")]
    pub tftp_port: u16,
    /// How long `apply` waits for the machines that are not installed yet.
    #[serde(default = "default_install_wait")]
    pub wait: Duration,
}

fn default_boot_root() -> PathBuf {
    PathBuf::from("boot")
}

fn default_http_port() -> u16 {
    80
}

fn default_tftp_port() -> u16 {
    69
}

fn default_install_wait() -> Duration {
    Duration(30 * 60)
}

/// What proxyDHCP's answer on port 67 carries (PXE 2.1, the two proxyDHCP exchanges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProxyOffer {
    /// The boot file, and PXE option 43 with discovery control 8 ("boot the file in this
    /// offer, skip boot server discovery"): one exchange.
    #[default]
    BootFile,
    /// Only this server (no boot file, no option 43): the firmware asks it again on port
    /// 4011 and gets its boot file there.
    Port4011,
}

/// How iPXE clients boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BootLoader {
    /// Their own iPXE script over HTTP, kernel and initrd over HTTP.
    #[default]
    Ipxe,
    /// pxelinux over TFTP with a per-MAC config.
    Pxelinux,
}

/// The boot menu.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Menu {
    /// Menu title.
    #[serde(default)]
    pub title: Option<String>,
    /// The default profile (the local disk when omitted).
    #[serde(default)]
    pub default: Option<String>,
    /// Seconds before the default entry boots.
    #[serde(default)]
    pub timeout: Option<u32>,
}

/// An install profile: what to boot and how to install.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The label shown in the menu.
    #[serde(default)]
    pub label: Option<String>,
    /// Kernel path in the boot namespace.
    pub kernel: String,
    /// Initrd path in the boot namespace.
    pub initrd: String,
    /// Extra kernel command line.
    #[serde(default)]
    pub append: Option<String>,
    /// Install config format.
    pub format: InstallFormat,
    /// Users to create.
    #[serde(default)]
    pub users: Vec<InstallUser>,
    /// Packages to install.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Root filesystem type.
    #[serde(default = "default_fstype")]
    pub fstype: String,
    /// Commands run at the end of the install.
    #[serde(default)]
    pub post: Option<String>,
}

fn default_fstype() -> String {
    "ext4".into()
}

/// Install config formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstallFormat {
    /// Kickstart (`ks=`), as the seed uses.
    Kickstart,
    /// Ubuntu autoinstall (cloud-init).
    Autoinstall,
    /// Debian preseed.
    Preseed,
}

/// A user created by the installer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallUser {
    /// Login name.
    pub name: String,
    /// A crypt(3) hash (`$6$...` SHA-512, `$y$...` yescrypt). Make one with `mkpasswd -m sha-512`.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Where the password is read (an environment variable or a file, never the lab): the
    /// boot service hashes it with SHA-512 crypt (a fresh salt) when it renders the install
    /// config; the password itself is never written anywhere.
    #[serde(default)]
    pub password_from: Option<SecretRef>,
    /// Refused: plaintext passwords never go into a lab file. Accepted by the parser only to
    /// give a precise error.
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    pub password: Option<serde_json::Value>,
    /// SSH public keys.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// Whether the user may sudo.
    #[serde(default = "yes")]
    pub sudo: bool,
}

fn yes() -> bool {
    true
}

/// The NAS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// What the NAS runs.
    pub kind: NasKind,
    /// The machine that is the NAS (when it is a VM of the lab).
    #[serde(default)]
    pub machine: Option<String>,
    /// The address clients mount from (defaults to the machine's first address).
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
    /// NFS exports by name.
    #[serde(default)]
    pub exports: BTreeMap<String, Export>,
}

/// NAS software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NasKind {
    /// TrueNAS (SCALE or CORE).
    Truenas,
    /// Kernel NFS server with exports files.
    LinuxNfs,
    /// nfs-ganesha.
    Ganesha,
}

/// An NFS export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// The exported path (a dataset mountpoint on TrueNAS).
    pub path: String,
    /// Who may mount: network names, machine names or CIDRs.
    pub allow: Vec<String>,
    /// Read-only export.
    #[serde(default)]
    pub read_only: bool,
    /// Volumes on this export are provisioned by csi-driver-nfs (a StorageClass
    /// `nfs-EXPORT` that makes one directory per claim) instead of one static volume, dataset
    /// and export each. cloudlet installs the driver (`cluster.platform.csi_driver_nfs`)
    /// unless it is said to be installed by other means.
    #[serde(default)]
    pub dynamic: bool,
    /// Whose identity root (or everyone) gets on the NAS: `root` (default: root is mapped
    /// to nobody), `none` (root stays root: containers that chown their files need it) or
    /// `all`.
    #[serde(default)]
    pub squash: Squash,
    /// Snapshot policy (recursive: it covers the app volumes on this export too).
    #[serde(default)]
    pub snapshots: Option<SnapshotPolicy>,
    /// Keep the data when the export leaves the lab (default). `false` allows deleting it with an explicit apply flag.
    #[serde(default = "yes")]
    pub retain: bool,
}

/// NFS identity squashing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Squash {
    /// Root is mapped to the anonymous user.
    #[default]
    Root,
    /// Nobody is mapped.
    None,
    /// Everyone is mapped to the anonymous user.
    All,
}

impl Squash {
    /// The name, as in a lab file.
    pub fn as_str(self) -> &'static str {
        match self {
            Squash::Root => "root",
            Squash::None => "none",
            Squash::All => "all",
        }
    }
}

/// Owner of a volume's directory or dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// How a volume is mounted by the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Read-write by pods on any number of nodes (NFS's natural mode).
    #[default]
    ReadWriteMany,
    /// Read-write by pods on one node.
    ReadWriteOnce,
    /// Read-only by pods on any number of nodes.
    ReadOnlyMany,
}

impl Access {
    /// The Kubernetes access mode.
    pub fn kubernetes(self) -> &'static str {
        match self {
            Access::ReadWriteMany => "ReadWriteMany",
            Access::ReadWriteOnce => "ReadWriteOnce",
            Access::ReadOnlyMany => "ReadOnlyMany",
        }
    }
}

/// Periodic snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPolicy {
    /// How often.
    pub every: Duration,
    /// How many to keep.
    pub keep: u32,
    /// Each snapshot copied to another ZFS pool right after it is taken (a TrueNAS
    /// replication task): a pool of this NAS (a second disk) or another ZFS machine over SSH.
    /// A complement to `backup`, not instead of it: it is the same data on the same kind of
    /// system.
    #[serde(default)]
    pub replicate: Option<Replicate>,
}

/// Where a snapshot policy's snapshots are replicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Replicate {
    /// The dataset the copies go to (`backup/lab/media`), made by the first run; its parent
    /// must exist. It is set read-only.
    pub to: String,
    /// The NAS's SSH connection to the other machine, by name (TrueNAS: Credentials →
    /// Backup Credentials → SSH Connections); without it, the copies go to a pool of this
    /// NAS.
    #[serde(default)]
    pub ssh: Option<String>,
    /// How long the copies are kept, in whole hours (`30d`, `12w`); by default, as long as the
    /// snapshots they copy are.
    #[serde(default)]
    pub keep_for: Option<Duration>,
}

/// The Kubernetes cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Control-plane machines.
    pub control_plane: Vec<String>,
    /// Worker machines.
    #[serde(default)]
    pub workers: Vec<String>,
    /// MetalLB.
    #[serde(default)]
    pub metallb: Option<MetalLb>,
    /// The ingress controller.
    #[serde(default)]
    pub ingress: Option<Ingress>,
    /// Network policy defaults.
    #[serde(default)]
    pub network_policy: NetworkPolicyDefaults,
    /// Apps by name.
    #[serde(default)]
    pub apps: BTreeMap<String, App>,
    /// docker-compose projects whose services join the apps, by project name.
    #[serde(default)]
    pub compose: BTreeMap<String, ComposeRef>,
    /// Plain Kubernetes manifests applied with the lab: YAML files (multi-document) or
    /// directories of them, relative to the lab. CRDs among them are applied and waited for
    /// before the objects of their kinds, in the same run.
    #[serde(default)]
    pub manifests: Vec<PathBuf>,
    /// How the cluster itself is made from the lab's machines (kubeadm): its release, its
    /// address ranges and its API endpoint. Without it the cluster exists already.
    #[serde(default)]
    pub kubernetes: Option<Kubernetes>,
    /// The cluster's own components, which cloudlet installs and upgrades: the pod network
    /// (Calico), MetalLB, Traefik, csi-driver-nfs and cert-manager. Each is on when the lab
    /// needs it unless said otherwise.
    #[serde(default)]
    pub platform: Platform,
}

/// The Kubernetes cluster cloudlet makes from the control-plane and worker machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    /// The release, pinned (`v1.36.3`): kubelet, kubeadm and kubectl of exactly this version.
    pub version: String,
    /// The pods' addresses (default 10.244.0.0/16): no segment, pool or VIP may be inside.
    #[serde(default = "default_pod_cidr")]
    pub pod_cidr: Cidr,
    /// The Services' cluster addresses (default 10.96.0.0/12).
    #[serde(default = "default_service_cidr")]
    pub service_cidr: Cidr,
    /// The API server's address: by default the single control plane's; with several
    /// control planes a free address (a VIP) on their segment, which kube-vip announces.
    #[serde(default)]
    pub endpoint: Option<Ipv4Addr>,
    /// The container runtime.
    #[serde(default)]
    pub runtime: ContainerRuntime,
    /// Where nodes install kubelet, kubeadm and kubectl from: the distribution's Kubernetes
    /// package repository of the version's minor release (pkgs.k8s.io) or a mirror of it.
    #[serde(default)]
    pub packages: Option<String>,
    /// The kube-vip image that announces `endpoint` from the control planes (a mirror's copy
    /// of it, say); by default the release this build was tested with.
    #[serde(default)]
    pub vip_image: Option<String>,
}

fn default_pod_cidr() -> Cidr {
    Cidr {
        addr: Ipv4Addr::new(10, 244, 0, 0),
        prefix: 16,
    }
}

fn default_service_cidr() -> Cidr {
    Cidr {
        addr: Ipv4Addr::new(10, 96, 0, 0),
        prefix: 12,
    }
}

/// A container runtime for the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContainerRuntime {
    /// containerd 2.x (1.x is not supported from Kubernetes 1.36).
    #[default]
    Containerd,
}

/// A docker-compose project imported into the lab's apps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeRef {
    /// The compose file, relative to the lab.
    pub file: PathBuf,
    /// The domain of the ingress hosts (`SERVICE.DOMAIN`; default: the site's domain).
    #[serde(default)]
    pub domain: Option<String>,
    /// The storage export the project's volumes go to.
    pub export: String,
}

/// The cluster's own components (`cluster.platform`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// Where release manifests are fetched instead of their upstream addresses (a site
    /// without internet): an `https://` or `http://` URL or a directory (relative to the
    /// lab) laid out `COMPONENT/VERSION/FILE`. Their SHA-256 is checked all the same.
    #[serde(default)]
    pub mirror: Option<String>,
    /// A CA file (PEM, relative to the lab) to trust for an `https://` mirror besides the
    /// system's roots.
    #[serde(default)]
    pub mirror_ca: Option<PathBuf>,
    /// A registry that mirrors the components' images: `quay.io/metallb/controller:v0.16.1`
    /// is pulled as `REGISTRY/metallb/controller:v0.16.1`.
    #[serde(default)]
    pub registry: Option<String>,
    /// Calico, the pod network that enforces the NetworkPolicies cloudlet writes; needed
    /// when cloudlet makes the cluster (a cluster made otherwise has its own).
    #[serde(default)]
    pub calico: Component,
    /// MetalLB (controller and layer-2 speaker), serving `cluster.metallb`'s pools; needed
    /// when the lab has pools or LoadBalancer services.
    #[serde(default)]
    pub metallb: Component,
    /// Traefik, the ingress controller on `cluster.ingress.ip`; needed when the lab has an
    /// ingress of class `traefik`.
    #[serde(default)]
    pub traefik: Component,
    /// csi-driver-nfs, which provisions volumes on exports marked `dynamic: true`.
    #[serde(default)]
    pub csi_driver_nfs: Component,
    /// cert-manager, which issues the ingress certificate through `cluster.ingress.tls.
    /// cluster_issuer`; needed when that is set.
    #[serde(default)]
    pub cert_manager: Component,
}

/// One component of the platform.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Whether cloudlet installs it: by default when the lab needs it. `false` removes what
    /// cloudlet installed of it.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// It is installed by other means (Helm, by hand): cloudlet installs nothing of it and
    /// takes what the lab needs of it as there.
    #[serde(default)]
    pub external: bool,
    /// The release (`v0.16.1`): by default the one this build pins. A release this build
    /// does not know needs `files`.
    #[serde(default)]
    pub version: Option<String>,
    /// The release's manifest files, for a release this build does not know: each an
    /// `https://` URL (or a path relative to the lab) and its SHA-256.
    #[serde(default)]
    pub files: Vec<ReleaseFile>,
    /// Labels the nodes its pods run on must have (its DaemonSets' too).
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Requests of each of its containers, instead of upstream's.
    #[serde(default)]
    pub resources: Option<Resources>,
    /// Allow moving to an older release whose CRDs store another version than the
    /// installed one's (objects stored in the newer version may not read back).
    #[serde(default)]
    pub allow_downgrade: bool,
    /// How long its controllers may take to become ready (default 5m).
    #[serde(default)]
    pub ready_within: Option<Duration>,
    /// cert-manager only: the ACME account of the ClusterIssuer named by
    /// `cluster.ingress.tls.cluster_issuer` (without it that issuer is made by other means).
    #[serde(default)]
    pub acme: Option<Acme>,
}

/// A release manifest file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseFile {
    /// Where it is published (`https://...`) or a file relative to the lab.
    pub url: String,
    /// Its SHA-256, hex: a file with another checksum is refused.
    pub sha256: String,
}

/// An ACME account (Let's Encrypt by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// The account's e-mail address (expiry notices go there).
    pub email: String,
    /// The directory URL (default: Let's Encrypt's production directory).
    #[serde(default = "letsencrypt")]
    pub server: String,
    /// DNS-01 through Cloudflare, needed for a wildcard host (`*.example.com`); without it
    /// HTTP-01 through the ingress controller.
    #[serde(default)]
    pub cloudflare: Option<SecretRef>,
}

fn letsencrypt() -> String {
    "https://acme-v02.api.letsencrypt.org/directory".into()
}

/// MetalLB settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetalLb {
    /// MetalLB's namespace (its CRs are ignored elsewhere).
    #[serde(default = "metallb_ns")]
    pub namespace: String,
    /// Address pools by name.
    pub pools: BTreeMap<String, Pool>,
}

fn metallb_ns() -> String {
    "metallb-system".into()
}

/// A MetalLB address pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Ranges or CIDRs (a single address is `/32`).
    pub addresses: Vec<IpRange>,
    /// How the addresses are announced.
    #[serde(default)]
    pub mode: PoolMode,
    /// Whether services without a pinned IP may get one from this pool.
    #[serde(default = "yes")]
    pub auto_assign: bool,
}

/// Announcement modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// ARP / NDP from one node at a time.
    #[default]
    Layer2,
}

/// The ingress controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ingress {
    /// `ingressClassName` of the Ingress objects.
    #[serde(default = "traefik")]
    pub class: String,
    /// The controller's namespace.
    #[serde(default = "traefik")]
    pub namespace: String,
    /// The pinned VIP of the controller's LoadBalancer Service.
    pub ip: Ipv4Addr,
    /// The MetalLB sharing key other services use to share the VIP.
    #[serde(default = "shared")]
    pub sharing_key: String,
    /// The controller Service's external traffic policy.
    #[serde(default)]
    pub traffic_policy: TrafficPolicy,
    /// TLS for the hosts.
    #[serde(default)]
    pub tls: Option<Tls>,
}

fn traefik() -> String {
    "traefik".into()
}
fn shared() -> String {
    "shared".into()
}

/// TLS certificates for ingress hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Hosts (wildcards allowed) the certificate covers.
    pub hosts: Vec<String>,
    /// A cert-manager ClusterIssuer that issues the certificate per namespace.
    #[serde(default)]
    pub cluster_issuer: Option<String>,
    /// The name of an existing TLS secret, copied into each app namespace by cloudlet.
    #[serde(default)]
    pub secret: Option<String>,
}

/// External traffic policy of a LoadBalancer Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrafficPolicy {
    /// Any node forwards (source IPs are lost).
    #[default]
    Cluster,
    /// Only nodes with a ready endpoint answer (source IPs kept).
    Local,
}

/// Network policy defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicyDefaults {
    /// Deny all ingress into app namespaces except what the app needs.
    #[serde(default = "yes")]
    pub default_deny: bool,
}

impl Default for NetworkPolicyDefaults {
    fn default() -> Self {
        NetworkPolicyDefaults { default_deny: true }
    }
}

/// An app on the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The container image.
    pub image: String,
    /// The namespace (defaults to the app's name).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Replicas.
    #[serde(default = "one_u32")]
    pub replicas: u32,
    /// Ports the container listens on and how each is exposed.
    #[serde(default)]
    pub ports: Vec<AppPort>,
    /// HTTP routes through the ingress controller.
    #[serde(default)]
    pub ingress: Vec<Route>,
    /// Plain environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variables read from secrets.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Volumes on the NAS.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Resource requests.
    #[serde(default)]
    pub resources: Option<Resources>,
    /// Other apps this one talks to (network policy allowances, apply order).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// The container's entrypoint, replacing the image's.
    #[serde(default)]
    pub command: Vec<String>,
    /// Arguments to the entrypoint, replacing the image's.
    #[serde(default)]
    pub args: Vec<String>,
    /// A check run inside the container: the app gets traffic only while it passes, and is
    /// restarted when it keeps failing.
    #[serde(default)]
    pub health: Option<Health>,
    /// Files mounted into the container (read-only), by mount path: their contents are read
    /// from the lab directory at apply time into a ConfigMap (configuration files, not data).
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
    /// Secrets mounted as files (read-only), by mount path: for images that read a secret
    /// from a file (`POSTGRES_PASSWORD_FILE=/run/secrets/db`). Read at apply time like
    /// `secrets:`, never written to the lab.
    #[serde(default)]
    pub secret_files: BTreeMap<String, SecretRef>,
    /// How the app runs: a Deployment, or a StatefulSet for apps that need a stable identity
    /// (databases that cluster, one pod at a time with ordered restarts).
    #[serde(default)]
    pub workload: Workload,
    /// A database-consistent dump taken right before each backup of the app's volumes
    /// (`backup.volumes`) and kept in the same snapshot, under `_dump/`: a copy of a running
    /// database's files may not load, a dump does.
    #[serde(default)]
    pub dump: Option<Dump>,
}

/// How an app's database is dumped before its volumes are backed up. The dump runs in the
/// backup's own pod, from the app's image (its tools match its server), before restic does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dump {
    /// `postgres`: `pg_dump` of one database through the app's Service; `mysql`:
    /// `mariadb-dump` or `mysqldump` of one database through the app's Service; `command`: the
    /// lab's command.
    pub kind: DumpKind,
    /// postgres, mysql: the database (default: the app's name).
    #[serde(default)]
    pub database: Option<String>,
    /// postgres, mysql: the user (default `postgres` for postgres, `root` for mysql).
    #[serde(default)]
    pub user: Option<String>,
    /// postgres, mysql: the key of the app's `secrets` that holds the user's password.
    #[serde(default)]
    pub password: Option<String>,
    /// command: the program and its arguments, run from the app's image with the app's
    /// environment and its volumes mounted read-only where the app mounts them; it writes the
    /// dump into the directory `$DUMP_DIR`.
    #[serde(default)]
    pub command: Vec<String>,
    /// postgres, mysql: a query the dump must answer once loaded into a scratch server
    /// (`SELECT count(*) FROM pages`): level 4 of `backup verify` runs it, in the cluster,
    /// from the app's image, and passes when it answers at least one row.
    #[serde(default)]
    pub verify: Option<String>,
}

impl Dump {
    /// The database a postgres or mysql dump of app `app` holds.
    pub fn database_of<'a>(&'a self, app: &'a str) -> &'a str {
        self.database.as_deref().unwrap_or(app)
    }

    /// Whether cloudlet itself loads this dump back (into the app's new server on restore, into
    /// a scratch server for level 4): a database server's dump, not a command's files.
    pub fn loadable(&self) -> bool {
        matches!(self.kind, DumpKind::Postgres | DumpKind::Mysql)
    }
}

/// What makes an app's dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DumpKind {
    /// `pg_dump` (plain SQL, without owners or privileges, so it loads into any database).
    Postgres,
    /// MariaDB's `mariadb-dump` or MySQL's `mysqldump`, whichever the app's image has: one
    /// database in one transaction (InnoDB tables), with its routines and triggers, without
    /// `CREATE DATABASE`, so it loads into any database.
    Mysql,
    /// The lab's command.
    Command,
}

impl DumpKind {
    /// The kind as the lab spells it.
    pub fn name(self) -> &'static str {
        match self {
            DumpKind::Postgres => "postgres",
            DumpKind::Mysql => "mysql",
            DumpKind::Command => "command",
        }
    }

    /// Why `db` cannot be the database of a dump of this kind, if it cannot: the load makes it
    /// anew by name (`DROP DATABASE`, `CREATE DATABASE`), so it must be a plain name the
    /// server takes.
    pub fn database_problem(self, db: &str) -> Option<String> {
        let max = match self {
            DumpKind::Mysql => 64,
            _ => 63,
        };
        if db.is_empty() {
            return Some("it is empty".into());
        }
        if db.len() > max {
            return Some(format!(
                "it is {} bytes long, the server takes {max}",
                db.len()
            ));
        }
        db.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            .map(|c| format!("`{c}` is not a letter, digit, `_` or `-`"))
    }
}

/// The Kubernetes workload an app runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// A Deployment (the default).
    #[default]
    Deployment,
    /// A StatefulSet with stable pod names, started and stopped in order.
    Statefulset,
}

/// A health check: a command run in the container (exit 0 = healthy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// The command (no shell: use `[sh, -c, "..."]` for one).
    pub command: Vec<String>,
    /// Time between checks.
    #[serde(default = "thirty_seconds")]
    pub interval: Duration,
    /// How long one check may take.
    #[serde(default = "thirty_seconds")]
    pub timeout: Duration,
    /// Failures in a row before the app counts as unhealthy.
    #[serde(default = "three")]
    pub retries: u32,
    /// Grace time after start before failures count.
    #[serde(default)]
    pub start_period: Duration,
}

fn thirty_seconds() -> Duration {
    Duration(30)
}

fn three() -> u32 {
    3
}

fn one_u32() -> u32 {
    1
}

/// A container port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppPort {
    /// Port name (defaults to `PROTOCOL-PORT`).
    #[serde(default)]
    pub name: Option<String>,
    /// The port.
    pub port: u16,
    /// The protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// How the port is reached from outside the cluster.
    #[serde(default)]
    pub expose: Expose,
}

impl AppPort {
    /// The port's name.
    pub fn port_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.protocol.as_str(), self.port))
    }
}

/// How a port is exposed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Expose {
    /// Inside the cluster only (ClusterIP), or through the ingress for HTTP routes.
    #[default]
    Cluster,
    /// On the ingress VIP, sharing it under the ingress sharing key (non-HTTP services).
    Shared,
    /// On a VIP of its own or a VIP shared with another key.
    Vip(Vip),
}

/// A LoadBalancer VIP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    /// The pinned address.
    pub ip: Ipv4Addr,
    /// Sharing key, when other services share the address.
    #[serde(default)]
    pub sharing_key: Option<String>,
    /// External traffic policy.
    #[serde(default)]
    pub traffic_policy: TrafficPolicy,
}

/// An HTTP route through the ingress controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The host name.
    pub host: String,
    /// The path prefix.
    #[serde(default = "slash")]
    pub path: String,
    /// The app port (defaults to the first TCP port).
    #[serde(default)]
    pub port: Option<u16>,
}

fn slash() -> String {
    "/".into()
}

/// An NFS-backed volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Volume name.
    pub name: String,
    /// The storage export it lives on.
    pub export: String,
    /// Sub-directory within the export (defaults to `APP/NAME`).
    #[serde(default)]
    pub sub_path: Option<String>,
    /// Mount path in the container.
    pub mount: String,
    /// Requested size.
    pub size: Size,
    /// Whether it holds an SQLite database (which must not live on NFS).
    #[serde(default)]
    pub sqlite: bool,
    /// Whether it holds a database server's files (PostgreSQL, MariaDB ...): on a ZFS NAS
    /// its dataset gets a 16K record size and no access-time updates.
    #[serde(default)]
    pub database: bool,
    /// How the cluster mounts it (default `read_write_many`).
    #[serde(default)]
    pub access: Access,
    /// Owner of its dataset or directory (default: the NAS's default, usually root).
    #[serde(default)]
    pub owner: Option<Owner>,
    /// Permission bits of its dataset or directory, in octal as a string (`"0750"`).
    #[serde(default)]
    pub mode: Option<String>,
    /// Snapshots of this volume alone (its export's policy covers it too).
    #[serde(default)]
    pub snapshots: Option<SnapshotPolicy>,
    /// Keep its data when it leaves the lab (default). `false` lets an apply with the
    /// permission to lose data delete it.
    #[serde(default = "yes")]
    pub retain: bool,
}

impl Volume {
    /// Its directory below its export for app `app`: as written, or `APP/VOLUME`.
    pub fn sub_path_of(&self, app: &str) -> String {
        self.sub_path
            .clone()
            .unwrap_or_else(|| format!("{app}/{}", self.name))
            .trim_matches('/')
            .to_string()
    }
}

/// Resource requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU request (Kubernetes quantity).
    #[serde(default)]
    pub cpu: Option<String>,
    /// Memory request (Kubernetes quantity).
    #[serde(default)]
    pub memory: Option<String>,
}

impl Lab {
    /// The MAC of a NIC: as written, or derived from lab + machine + slot.
    pub fn nic_mac(&self, machine: &str, index: usize, nic: &Nic) -> MacAddr {
        nic.mac
            .unwrap_or_else(|| MacAddr::derive(&self.name, machine, index))
    }

    /// The host a machine runs on: as written, or the lab's only host.
    pub fn machine_host<'a>(&'a self, m: &'a Machine) -> Option<&'a str> {
        match &m.host {
            Some(h) => Some(h.as_str()),
            None if self.hosts.len() == 1 => self.hosts.keys().next().map(String::as_str),
            None => None,
        }
    }

    /// The first address of a machine, if any.
    pub fn machine_ip(&self, name: &str) -> Option<Ipv4Addr> {
        self.machines.get(name)?.nics.iter().find_map(|n| n.ip)
    }

    /// The segments whose DHCP server must name the boot server (next-server), with its
    /// address: those with DHCP that a network-installed machine has a NIC on and the boot
    /// server is on, by name.
    pub fn boot_segments(&self) -> Vec<(String, Ipv4Addr)> {
        let Some(server) = self.boot_server() else {
            return Vec::new();
        };
        let mut nets: Vec<String> = self
            .machines
            .values()
            .filter(|m| m.install.is_some())
            .flat_map(|m| m.nics.iter().map(|n| n.network.clone()))
            .filter(|net| {
                self.networks
                    .get(net)
                    .is_some_and(|n| n.dhcp.is_some() && n.cidr.contains(server))
            })
            .collect();
        nets.sort();
        nets.dedup();
        nets.into_iter().map(|n| (n, server)).collect()
    }

    /// Where machines network-boot from: the address cloudlet serves on (`pxe.serve`), or
    /// the boot server machine's (`pxe.server`).
    pub fn boot_server(&self) -> Option<Ipv4Addr> {
        let pxe = self.pxe.as_ref()?;
        pxe.serve
            .as_ref()
            .map(|s| s.address)
            .or_else(|| self.machine_ip(pxe.server.as_deref()?))
    }

    /// The namespace of an app.
    pub fn app_namespace<'a>(name: &'a str, app: &'a App) -> &'a str {
        app.namespace.as_deref().unwrap_or(name)
    }
}

/// The platform's components by their key under `cluster.platform`, in the order they are
/// installed (the pod network first; cert-manager's issuer needs the ingress controller).
pub const PLATFORM_COMPONENTS: [&str; 5] = [
    "calico",
    "metallb",
    "traefik",
    "csi_driver_nfs",
    "cert_manager",
];

impl Platform {
    /// The component called `name` (a key of [`PLATFORM_COMPONENTS`]).
    pub fn component(&self, name: &str) -> Option<&Component> {
        Some(match name {
            "calico" => &self.calico,
            "metallb" => &self.metallb,
            "traefik" => &self.traefik,
            "csi_driver_nfs" => &self.csi_driver_nfs,
            "cert_manager" => &self.cert_manager,
            _ => return None,
        })
    }
}

/// Why a lab needs a platform component, and where it says so.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// What needs it, in words (`app \`blog\` routes blog.example.com`).
    pub reason: String,
    /// The place in the lab that needs it.
    pub path: crate::source::TreePath,
}

impl Lab {
    /// Why the lab needs the platform component `name`, if it does.
    pub fn platform_need(&self, name: &str) -> Option<Need> {
        use crate::path;
        let c = self.cluster.as_ref()?;
        let need = |reason: String, path| Some(Need { reason, path });
        match name {
            "calico" => c.kubernetes.as_ref().and_then(|_| {
                need(
                    "cloudlet makes the cluster: its pods need a network that enforces the lab's NetworkPolicies".into(),
                    path!["cluster", "kubernetes"],
                )
            }),
            "metallb" => {
                if let Some(ing) = &c.ingress {
                    return need(
                        format!("the ingress VIP {} is a MetalLB address", ing.ip),
                        path!["cluster", "ingress", "ip"],
                    );
                }
                for (app, a) in &c.apps {
                    if let Some(i) = a.ports.iter().position(|p| p.expose != Expose::Cluster) {
                        return need(
                            format!("app `{app}` exposes a port on a MetalLB address"),
                            path!["cluster", "apps", app.as_str(), "ports", i, "expose"],
                        );
                    }
                }
                c.metallb.as_ref().and_then(|_| {
                    need(
                        "the lab has MetalLB pools".into(),
                        path!["cluster", "metallb"],
                    )
                })
            }
            "traefik" => {
                c.ingress.as_ref().filter(|i| i.class == "traefik")?;
                for (app, a) in &c.apps {
                    if let Some(r) = a.ingress.first() {
                        return need(
                            format!("app `{app}` routes {} through the ingress", r.host),
                            path!["cluster", "apps", app.as_str(), "ingress", 0, "host"],
                        );
                    }
                }
                need(
                    "the lab's ingress is of class `traefik`".into(),
                    path!["cluster", "ingress", "class"],
                )
            }
            "csi_driver_nfs" => self
                .storage
                .iter()
                .flat_map(|s| &s.exports)
                .find(|(_, e)| e.dynamic)
                .and_then(|(name, _)| {
                    need(
                        format!("export `{name}` is dynamic: csi-driver-nfs provisions its volumes"),
                        path!["storage", "exports", name.as_str(), "dynamic"],
                    )
                }),
            "cert_manager" => {
                let tls = c.ingress.as_ref()?.tls.as_ref()?;
                let issuer = tls.cluster_issuer.as_ref()?;
                need(
                    format!("the ingress certificate is issued by ClusterIssuer `{issuer}`"),
                    path!["cluster", "ingress", "tls", "cluster_issuer"],
                )
            }
            _ => None,
        }
    }

    /// Whether cloudlet installs the platform component `name`: switched on, or needed and
    /// neither switched off nor installed by other means.
    pub fn platform_installs(&self, name: &str) -> bool {
        let Some(c) = &self.cluster else { return false };
        let Some(comp) = c.platform.component(name) else {
            return false;
        };
        if comp.external {
            return false;
        }
        comp.enabled
            .unwrap_or_else(|| self.platform_need(name).is_some())
    }
}

/// `cloudlet watch` as a Deployment in the lab's cluster (`watch`): its replicas elect a leader
/// through a Lease, the lab's files come from a ConfigMap, the secrets they reference from a
/// Secret whose values are read when the lab is applied, and the cluster is reached through the
/// pod's service account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    /// The image: one holding the `cloudlet` binary on its `PATH` (and `ssh` for SFTP backup
    /// targets), pulled through `cluster.platform.registry` when set.
    #[serde(default)]
    pub image: Option<String>,
    /// Replicas (default 2): one leads, another takes over within the Lease's duration.
    #[serde(default = "two_replicas")]
    pub replicas: u32,
    /// Between rounds (default 1m).
    #[serde(default = "one_minute")]
    pub interval: Duration,
    /// How long the leader's Lease lasts without a renewal (default 15s).
    #[serde(default = "fifteen_seconds")]
    pub lease: Duration,
    /// What it puts right by itself: `drift` (the watch then holds cluster-admin) and
    /// `stuck_pods`.
    #[serde(default)]
    pub remediate: Vec<RemediateKind>,
    /// Where each change of a finding's state is sent.
    #[serde(default)]
    pub webhooks: Vec<WatchWebhook>,
    /// Run on the node's network, so the NAS is asked from the node's own address (default
    /// false).
    #[serde(default)]
    pub host_network: bool,
}

fn two_replicas() -> u32 {
    2
}

fn one_minute() -> Duration {
    Duration(60)
}

fn fifteen_seconds() -> Duration {
    Duration(15)
}

/// What `watch` puts right by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemediateKind {
    /// Apply the lab when it drifted (never a plan that loses data).
    Drift,
    /// Delete pods stuck past their threshold that a controller makes again.
    StuckPods,
}

/// A webhook of the watch: its payload's shape and where its URL (which holds its secret) is
/// read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchWebhook {
    /// The payload's shape.
    pub format: WebhookFormat,
    /// Where the URL is read from (never inline).
    pub url: SecretRef,
}

/// A webhook payload's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The change as JSON (the change with the lab's name).
    Json,
    /// ntfy's JSON publish form (`topic` from the URL's path, title, message, priority, tags),
    /// posted to the server's root.
    Ntfy,
    /// Matrix's hookshot generic webhook (`text` and `html`).
    Matrix,
    /// Slack's incoming webhook (`text`); Mattermost and Discord's `/slack` endpoint take it.
    Slack,
}

impl WebhookFormat {
    /// Its name: `json`, `ntfy`, `matrix`, `slack`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Ntfy => "ntfy",
            WebhookFormat::Matrix => "matrix",
            WebhookFormat::Slack => "slack",
        }
    }
}

impl std::str::FromStr for WebhookFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "json" => WebhookFormat::Json,
            "ntfy" => WebhookFormat::Ntfy,
            "matrix" => WebhookFormat::Matrix,
            "slack" => WebhookFormat::Slack,
            other => {
                return Err(format!(
                    "`{other}` is not a webhook format: json, ntfy, matrix or slack"
                ));
            }
        })
    }
}

/// Backups (`backup`): where they go, the key that encrypts them, and how often each class of
/// the lab's state is backed up. Each target holds one repository in restic's format (stock
/// `restic` reads it), shared by every class, which its snapshots' tags tell apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// The repositories' password, from the environment or a file. Keep a copy offline (the
    /// recovery kit): without it no backup can be read.
    pub key: SecretRef,
    /// Where backups go, by name.
    pub targets: BTreeMap<String, BackupTarget>,
    /// cloudlet's own state: the vault (the cluster's identity, generated keys), the
    /// network installs' record, the journal.
    #[serde(default)]
    pub state: Option<BackupClass>,
    /// The cluster: for the one cloudlet makes (`kubeadm`), an etcd snapshot taken through
    /// etcd's API on the first control plane (with a client certificate of the cluster's etcd
    /// CA); for one made by other means (`kubernetes`), its objects through its API (what a
    /// controller owns and what the cluster makes by itself left out), put back on restore.
    #[serde(default)]
    pub cluster: Option<BackupClass>,
    /// The router's whole configuration as the router keeps it, through its backend: what
    /// the lab says and everything else on it (hand-made rules, users, DHCP leases).
    /// OPNsense's `config.xml`; the Linux router's files and leases.
    #[serde(default)]
    pub router: Option<BackupClass>,
    /// The apps' volumes, file by file, by a CronJob per app with volumes that the plan
    /// holds (stock restic's image, the keys from a Secret): backups run in the cluster,
    /// whether cloudlet runs or not. The target must be one pods reach (`s3`).
    #[serde(default)]
    pub volumes: Option<VolumeBackup>,
}

/// How the apps' volumes are backed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeBackup {
    /// The target (a name under `backup.targets`; an `s3` one).
    pub target: String,
    /// How often (`15m`, `1h`, `6h`, `1d`): the most data a restore can lose.
    pub every: Duration,
    /// Which snapshots of each app are kept; all, when nothing is said.
    #[serde(default)]
    pub keep: Keep,
    /// The restic image the CronJobs run (pulled through `cluster.platform.registry` when
    /// it is set).
    #[serde(default = "default_restic_image")]
    pub image: String,
}

fn default_restic_image() -> String {
    DEFAULT_RESTIC_IMAGE.to_string()
}

/// The restic image volume backups run unless the lab names another.
pub const DEFAULT_RESTIC_IMAGE: &str = "docker.io/restic/restic:0.17.3";

impl VolumeBackup {
    /// Its schedule and retention as a class, for the rules every class shares.
    pub fn as_class(&self) -> BackupClass {
        BackupClass {
            target: self.target.clone(),
            every: self.every,
            keep: self.keep.clone(),
        }
    }
}

/// The cron schedule (a CronJob's `schedule`) for "every `every` seconds", aligned to the hour
/// or the day as the systemd timers are: validation makes sure `every` is whole minutes
/// dividing an hour, whole hours dividing a day, or whole days.
pub fn cron_schedule(every: u64) -> String {
    const DAY: u64 = 86_400;
    if every >= DAY {
        return match every / DAY {
            1 => "0 0 * * *".into(),
            7 => "0 0 * * 1".into(),
            n => format!("0 0 */{n} * *"),
        };
    }
    if every >= 3600 {
        return match every / 3600 {
            1 => "0 * * * *".into(),
            n => format!("0 */{n} * * *"),
        };
    }
    format!("*/{} * * * *", (every / 60).max(1))
}

/// Where a repository lives: one of `dir`, `sftp` or `s3`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupTarget {
    /// A directory (a local disk, or a share mounted on the machine that runs cloudlet)
    /// that is the repository; relative to the lab's directory unless absolute.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// A prefix of a bucket in an S3-compatible store (MinIO, Garage, Backblaze B2, Wasabi,
    /// AWS): off the machine, and off the site when the store is.
    #[serde(default)]
    pub s3: Option<S3Target>,
    /// A directory on an SSH server (a NAS, another machine, a rented storage box), through
    /// the system's OpenSSH client as restic does.
    #[serde(default)]
    pub sftp: Option<SftpTarget>,
}

/// A directory on an SSH server: `restic -r sftp:USER@HOST:PATH` reads the same repository.
/// ssh logs in with the key given (or its own: the agent, `~/.ssh`) and never without
/// knowing the server's host key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftpTarget {
    /// The server's name or address.
    pub host: String,
    /// Its SSH port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The repository's directory on the server: absolute, or relative to the user's home.
    pub path: String,
    /// A private key file to log in with, relative to the lab's directory; ssh's own keys and
    /// agent when not given. A key with a passphrase needs the agent.
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// The server's host key in ssh's `known_hosts` format (`ssh-keyscan -p PORT HOST`, checked
    /// against the server's console), relative to the lab's directory; the user's
    /// `~/.ssh/known_hosts` when not given. An unknown or changed host key is refused.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
}

fn default_ssh_port() -> u16 {
    22
}

impl SftpTarget {
    /// The repository as restic names it (see [`sftp_repository`]).
    pub fn restic_repository(&self) -> String {
        sftp_repository(&self.user, &self.host, self.port, &self.path)
    }
}

/// An SFTP repository as restic names it: `sftp:USER@HOST:PATH`, or
/// `sftp://USER@HOST:PORT/PATH` on a port other than 22 (an absolute path then starts with
/// `//`).
pub fn sftp_repository(user: &str, host: &str, port: u16, path: &str) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == 22 {
        format!("sftp:{user}@{host}:{path}")
    } else {
        format!("sftp://{user}@{host}:{port}/{path}")
    }
}

/// The arguments of the `ssh` that carries SFTP to a backup target, the one rule for every
/// place that starts it (cloudlet itself, restic in a volume backup's pod): batch mode (no
/// prompt), the host key checked strictly against `known_hosts` (when given, only that
/// file), only the `identity` key when given, bounded waits, then `-s -- HOST sftp`.
pub fn ssh_args(
    host: &str,
    port: u16,
    user: &str,
    identity: Option<&std::path::Path>,
    known_hosts: Option<&std::path::Path>,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "ConnectTimeout=15",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=4",
        "-o",
        "LogLevel=ERROR",
    ]
    .map(String::from)
    .to_vec();
    if let Some(k) = known_hosts {
        a.push("-o".into());
        a.push(format!("UserKnownHostsFile={}", k.display()));
    }
    if let Some(i) = identity {
        a.extend(["-o".into(), "IdentitiesOnly=yes".into(), "-i".into()]);
        a.push(i.display().to_string());
    }
    a.extend([
        "-p".into(),
        port.to_string(),
        "-l".into(),
        user.to_string(),
        "-s".into(),
        "--".into(),
        host.to_string(),
        "sftp".into(),
    ]);
    a
}

/// Whether `host` is a name or address ssh reads as a host (never as an option).
pub fn ssh_host_ok(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with('-')
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'_'))
}

/// Whether `user` is a user name ssh reads as one (never as an option).
pub fn ssh_user_ok(user: &str) -> bool {
    !user.is_empty()
        && !user.starts_with('-')
        && user
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

/// An S3-compatible store: `restic -r s3:ENDPOINT/BUCKET/PREFIX` reads the same repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Target {
    /// The store's address, `https://HOST[:PORT]` (requests are path-style:
    /// `https://HOST/BUCKET/KEY`).
    pub endpoint: String,
    /// The bucket; it must exist.
    pub bucket: String,
    /// The repository's path inside the bucket (`labs/home`); the bucket's root when empty.
    #[serde(default)]
    pub prefix: String,
    /// The region signatures name; `us-east-1` (what most self-hosted stores expect) when
    /// not given.
    #[serde(default)]
    pub region: Option<String>,
    /// The access key ID, from the environment or a file.
    pub access_key: SecretRef,
    /// The secret access key, from the environment or a file.
    pub secret_key: SecretRef,
    /// A CA certificate (PEM) to trust besides the system's roots, for a store with a
    /// certificate of the lab's own CA; relative to the lab's directory.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

impl S3Target {
    /// The repository as restic names it: `s3:ENDPOINT/BUCKET[/PREFIX]`.
    pub fn restic_repository(&self) -> String {
        let mut r = format!("s3:{}/{}", self.endpoint.trim_end_matches('/'), self.bucket);
        if !self.prefix.is_empty() {
            r.push('/');
            r.push_str(&self.prefix);
        }
        r
    }
}

/// How one class of state is backed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupClass {
    /// The target (a name under `backup.targets`).
    pub target: String,
    /// How often (`15m`, `1h`, `6h`, `1d`): the most data a restore can lose.
    pub every: Duration,
    /// Which snapshots are kept; all, when nothing is said.
    #[serde(default)]
    pub keep: Keep,
}

/// A retention policy, as restic's `forget --keep-*`: a snapshot is kept when any rule keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    /// The newest N.
    #[serde(default)]
    pub last: Option<u32>,
    /// The newest of each of the last N hours that have one.
    #[serde(default)]
    pub hourly: Option<u32>,
    /// The newest of each of the last N days that have one.
    #[serde(default)]
    pub daily: Option<u32>,
    /// The newest of each of the last N weeks that have one.
    #[serde(default)]
    pub weekly: Option<u32>,
    /// The newest of each of the last N months that have one.
    #[serde(default)]
    pub monthly: Option<u32>,
}

impl Keep {
    /// Whether no rule is given (every snapshot is kept).
    pub fn keeps_all(&self) -> bool {
        *self == Keep::default()
    }
}

impl Backup {
    /// The classes the lab backs up, by name.
    pub fn classes(&self) -> Vec<(&'static str, &BackupClass)> {
        [
            ("state", &self.state),
            ("router", &self.router),
            ("cluster", &self.cluster),
        ]
        .into_iter()
        .filter_map(|(n, c)| c.as_ref().map(|c| (n, c)))
        .collect()
    }
}
