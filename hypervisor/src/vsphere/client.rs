//! The `vsphere` backend's client: everything but its description (the `client` feature).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloudlet_core::error::{Fault, ProviderError};
use cloudlet_core::plan::FieldChange;
use cloudlet_core::{Data, Domain, Provider, Resource, ResourceId};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, Semaphore};

use super::vim::{MoRef, Node, Props, Vim, VimError, esc};

use cloudlet_core::backend::{ConnectError, Connection};

pub(super) fn connect<'a>(
    c: &'a Connection<'a>,
) -> cloudlet_core::backend::BoxFuture<'a, Result<Arc<dyn Provider>, ConnectError>> {
    Box::pin(async move {
        let endpoint = c.endpoint()?;
        let text = c.credentials()?;
        let (user, password) = text
            .split_once(':')
            .filter(|(u, p)| !u.is_empty() && !p.is_empty())
            .ok_or(ConnectError::CredentialForm {
                backend: "vSphere",
                expected: "USER:PASSWORD",
            })?;
        let tls = cloudlet_transport::tls::config_for(c.fingerprint(), c.ca().as_deref()).map_err(
            |e| ConnectError::Client {
                backend: "vSphere",
                source: Box::new(e),
            },
        )?;
        Ok(Arc::new(Vsphere::new(
            c.lab.name.clone(),
            VsphereOptions {
                endpoint,
                user: user.to_string(),
                password: password.to_string(),
                tls,
                datacenter: c.setting("datacenter"),
                datastore: c.setting("datastore"),
                pool: c.setting("pool"),
                switch: c.setting("switch"),
                concurrency: 8,
                keepalive: Duration::from_secs(600),
            },
        )) as Arc<dyn Provider>)
    })
}

/// How to reach vSphere and where VMs go.
#[derive(Clone)]
pub struct VsphereOptions {
    /// `https://vcenter` (the SDK is at `/sdk`).
    pub endpoint: String,
    /// The user (`administrator@vsphere.local`, `root` on an ESXi).
    pub user: String,
    /// The password.
    pub password: String,
    /// TLS settings (see [`cloudlet_transport::tls`]): the system's roots plus a CA, or a pinned
    /// certificate fingerprint.
    pub tls: cloudlet_transport::tls::rustls::ClientConfig,
    /// The datacenter (default: the only one).
    pub datacenter: Option<String>,
    /// The default datastore for disks that name none (default: the first).
    pub datastore: Option<String>,
    /// The cluster, host or resource pool VMs run in (default: the first cluster's root pool).
    pub pool: Option<String>,
    /// The distributed switch of the lab's port groups (default: the only one).
    pub switch: Option<String>,
    /// VM operations in flight at once.
    pub concurrency: usize,
    /// How often the session is kept alive.
    pub keepalive: Duration,
}

impl std::fmt::Debug for VsphereOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VsphereOptions")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("datacenter", &self.datacenter)
            .field("pool", &self.pool)
            .field("switch", &self.switch)
            .finish_non_exhaustive()
    }
}

/// Where the lab's objects live, found once per provider.
#[derive(Debug, Clone)]
struct Site {
    datacenter: MoRef,
    vm_folder: MoRef,
    pool: MoRef,
    datastore: String,
    /// The distributed switch and its UUID.
    switch: Option<(MoRef, String)>,
}

/// The vSphere provider.
pub struct Vsphere {
    lab: String,
    options: VsphereOptions,
    vim: OnceCell<Arc<Vim>>,
    site: OnceCell<Site>,
    ops: Semaphore,
}

impl std::fmt::Debug for Vsphere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vsphere")
            .field("lab", &self.lab)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A failed call, typed: a SOAP fault or a failed task keeps its fault type as a [`Fault`]
/// (retry decisions read it); no usable answer may be worth another try.
fn err(e: VimError) -> ProviderError {
    match e {
        VimError::Transport(_) => ProviderError::Backend {
            message: e.to_string(),
            retryable: true,
        },
        VimError::Fault { ref kind, .. } => ProviderError::Api {
            backend: "vSphere",
            operation: "call".into(),
            status: None,
            fault: fault_of(kind),
            message: e.to_string(),
        },
        VimError::Task {
            ref task, ref kind, ..
        } => ProviderError::Api {
            backend: "vSphere",
            operation: format!("task {task}"),
            status: None,
            fault: fault_of(kind),
            message: e.to_string(),
        },
    }
}

/// The kind of failure a VIM fault type names.
fn fault_of(kind: &str) -> Fault {
    match kind {
        "DuplicateName" | "AlreadyExists" => Fault::Conflict,
        "NotAuthenticated" | "InvalidLogin" | "NoPermission" => Fault::Unauthorized,
        "ManagedObjectNotFound" | "NotFound" => Fault::NotFound,
        "TaskInProgress" | "ResourceInUse" | "ConcurrentAccess" => Fault::Busy,
        _ => Fault::Other,
    }
}

fn invalid(r: &Resource, message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidData {
        what: r.id.to_string(),
        message: message.into(),
    }
}

/// A device as read.
#[derive(Debug, Clone)]
struct Device {
    key: i64,
    ty: String,
    node: Node,
}

fn devices(props: &Props) -> Vec<Device> {
    props
        .get("config.hardware.device")
        .map(|v| {
            v.children
                .iter()
                .map(|d| Device {
                    key: d
                        .text_at(&["key"])
                        .and_then(|k| k.parse().ok())
                        .unwrap_or(0),
                    ty: d.ty.clone().unwrap_or_else(|| d.name.clone()),
                    node: d.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn is_scsi(ty: &str) -> bool {
    matches!(
        ty,
        "ParaVirtualSCSIController"
            | "VirtualLsiLogicController"
            | "VirtualLsiLogicSASController"
            | "VirtualBusLogicController"
    )
}

/// `N` of a disk file `[DS] NAME/NAME-diskN.vmdk` of VM `vm`.
fn disk_slot(file: &str, vm: &str) -> Option<usize> {
    let name = file.rsplit('/').next()?;
    name.strip_prefix(vm)?
        .strip_prefix("-disk")?
        .strip_suffix(".vmdk")?
        .parse()
        .ok()
}

/// A disk's capacity in KiB: `capacityInBytes` where the server has it (newer releases keep
/// the two in step; an older one may have only KiB).
fn disk_kb(disk: &Node) -> Option<u64> {
    disk.text_at(&["capacityInBytes"])
        .and_then(|b| b.parse::<u64>().ok())
        .filter(|b| *b > 0)
        .map(|b| b / 1024)
        .or_else(|| disk.text_at(&["capacityInKB"])?.parse().ok())
}

/// The datastore of `[DS] path`.
fn datastore_of(file: &str) -> Option<&str> {
    file.strip_prefix('[')?.split_once(']').map(|(d, _)| d)
}

/// Whether an annotation marks the object as this lab's.
fn marked(annotation: &str, lab: &str) -> bool {
    annotation
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&format!("cloudlet:lab={lab}")))
}

/// The resource id in a marker line (`cloudlet:lab=LAB resource=ID`).
fn marked_id(annotation: &str, lab: &str) -> Option<String> {
    annotation.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next()? == format!("cloudlet:lab={lab}"))
            .then(|| words.find_map(|w| w.strip_prefix("resource=")))
            .flatten()
            .map(str::to_string)
    })
}

impl Vsphere {
    /// A provider for `lab`; it connects on first use.
    pub fn new(lab: impl Into<String>, options: VsphereOptions) -> Self {
        let ops = Semaphore::new(options.concurrency.max(1));
        Vsphere {
            lab: lab.into(),
            options,
            vim: OnceCell::new(),
            site: OnceCell::new(),
            ops,
        }
    }

    /// The session (logging in on first use).
    pub async fn session(&self) -> Result<&Arc<Vim>, ProviderError> {
        self.vim
            .get_or_try_init(|| async {
                let base = self
                    .options
                    .endpoint
                    .trim_end_matches('/')
                    .trim_end_matches("/sdk");
                let http = cloudlet_transport::http::Http::with_tls(
                    base,
                    self.options.tls.clone(),
                    Vec::new(),
                )
                .map_err(|source| ProviderError::Setup {
                    backend: "vSphere",
                    source: Box::new(source),
                })?;
                let vim = Vim::connect(http, &self.options.user, &self.options.password)
                    .await
                    .map_err(err)?;
                Vim::keepalive(&vim, self.options.keepalive);
                Ok(vim)
            })
            .await
    }

    fn marker(&self, id: &ResourceId) -> String {
        format!(
            "cloudlet:lab={} resource={id}\nManaged by cloudlet: edits to its managed settings are reverted.",
            self.lab
        )
    }

    async fn site(&self) -> Result<&Site, ProviderError> {
        self.site
            .get_or_try_init(|| async {
                let vim = self.session().await?;
                let pick = |kind: &str,
                            want: Option<&String>,
                            found: Vec<(MoRef, Props)>|
                 -> Result<(MoRef, Props), ProviderError> {
                    let names: Vec<String> = found
                        .iter()
                        .map(|(_, p)| p.get("name").map(|n| n.text.clone()).unwrap_or_default())
                        .collect();
                    match want {
                        Some(w) => found
                            .into_iter()
                            .find(|(_, p)| p.get("name").is_some_and(|n| &n.text == w))
                            .ok_or_else(|| ProviderError::Backend {
                                message: format!(
                                    "vSphere has no {kind} `{w}` (it has: {})",
                                    names.join(", ")
                                ),
                                retryable: false,
                            }),
                        None => found.into_iter().next().ok_or_else(|| ProviderError::Backend {
                            message: format!("vSphere has no {kind}"),
                            retryable: false,
                        }),
                    }
                };
                let dcs = vim
                    .retrieve("Datacenter", &["name", "vmFolder"])
                    .await
                    .map_err(err)?;
                if self.options.datacenter.is_none() && dcs.len() > 1 {
                    return Err(ProviderError::Backend {
                        message: "vSphere has several datacenters: name one in the target (`datacenter:`)".into(),
                        retryable: false,
                    });
                }
                let (dc, dcp) = pick("datacenter", self.options.datacenter.as_ref(), dcs)?;
                let vm_folder = dcp
                    .get("vmFolder")
                    .and_then(Node::moref)
                    .ok_or_else(|| err(VimError::Transport("datacenter without vmFolder".into())))?;
                let (_, ds) = pick(
                    "datastore",
                    self.options.datastore.as_ref(),
                    vim.retrieve_in(&dc, "Datastore", &["name"]).await.map_err(err)?,
                )?;
                let datastore = ds.get("name").map(|n| n.text.clone()).unwrap_or_default();
                let pool = self.pool(vim, &dc).await?;
                let switches = vim
                    .retrieve_in(&dc, "DistributedVirtualSwitch", &["name", "uuid"])
                    .await
                    .map_err(err)?;
                let switch = if switches.is_empty() && self.options.switch.is_none() {
                    None
                } else {
                    let (s, p) = pick("distributed switch", self.options.switch.as_ref(), switches)?;
                    Some((s, p.get("uuid").map(|u| u.text.clone()).unwrap_or_default()))
                };
                Ok(Site {
                    datacenter: dc,
                    vm_folder,
                    pool,
                    datastore,
                    switch,
                })
            })
            .await
    }

    /// The resource pool: of the named cluster or host, the named pool, or the first cluster's.
    async fn pool(&self, vim: &Vim, dc: &MoRef) -> Result<MoRef, ProviderError> {
        let computes = vim
            .retrieve_in(dc, "ComputeResource", &["name", "resourcePool"])
            .await
            .map_err(err)?;
        let name_of = |p: &Props| p.get("name").map(|n| n.text.clone()).unwrap_or_default();
        if let Some(want) = &self.options.pool {
            if let Some((_, p)) = computes.iter().find(|(_, p)| &name_of(p) == want) {
                return p.get("resourcePool").and_then(Node::moref).ok_or_else(|| {
                    err(VimError::Transport(format!(
                        "`{want}` has no resource pool"
                    )))
                });
            }
            let pools = vim
                .retrieve_in(dc, "ResourcePool", &["name"])
                .await
                .map_err(err)?;
            return pools
                .into_iter()
                .find(|(_, p)| &name_of(p) == want)
                .map(|(m, _)| m)
                .ok_or_else(|| ProviderError::Backend {
                    message: format!("vSphere has no cluster, host or resource pool `{want}`"),
                    retryable: false,
                });
        }
        let mut computes = computes;
        // Clusters first: a lab on vCenter runs in its cluster.
        computes.sort_by_key(|(m, _)| m.ty != "ClusterComputeResource");
        computes
            .into_iter()
            .find_map(|(_, p)| p.get("resourcePool").and_then(Node::moref))
            .ok_or_else(|| ProviderError::Backend {
                message: "vSphere has no host or cluster to run VMs on".into(),
                retryable: false,
            })
    }

    /// Distributed port groups: (moref, name, key, description, vlan, configVersion).
    async fn portgroups(&self) -> Result<Vec<PortGroup>, ProviderError> {
        let vim = self.session().await?;
        let dc = self.site().await?.datacenter.clone();
        let found = vim
            .retrieve_in(
                &dc,
                "DistributedVirtualPortgroup",
                &[
                    "name",
                    "key",
                    "config.description",
                    "config.defaultPortConfig",
                    "config.configVersion",
                ],
            )
            .await
            .map_err(err)?;
        Ok(found
            .into_iter()
            .map(|(m, p)| {
                let text = |k: &str| p.get(k).map(|n| n.text.clone()).unwrap_or_default();
                let vlan = p
                    .get("config.defaultPortConfig")
                    .and_then(|c| c.text_at(&["vlan", "vlanId"]))
                    .and_then(|v| v.parse::<u16>().ok())
                    .filter(|v| *v != 0);
                PortGroup {
                    moref: m,
                    name: text("name"),
                    key: text("key"),
                    description: text("config.description"),
                    vlan,
                    config_version: text("config.configVersion"),
                }
            })
            .collect())
    }

    /// Standard networks by name.
    async fn networks(&self) -> Result<BTreeMap<String, MoRef>, ProviderError> {
        let vim = self.session().await?;
        let dc = self.site().await?.datacenter.clone();
        Ok(vim
            .retrieve_in(&dc, "Network", &["name"])
            .await
            .map_err(err)?
            .into_iter()
            .filter(|(m, _)| m.ty == "Network")
            .filter_map(|(m, p)| Some((p.get("name")?.text.clone(), m)))
            .collect())
    }

    /// What is read of a VM.
    const VM_PROPS: [&'static str; 9] = [
        "name",
        "config.annotation",
        "config.template",
        "config.hardware.numCPU",
        "config.hardware.memoryMB",
        "config.hardware.device",
        "config.bootOptions",
        "runtime.powerState",
        "runtime.host",
    ];

    async fn vm_props(&self, vm: &MoRef) -> Result<Props, ProviderError> {
        let vim = self.session().await?;
        vim.retrieve_objects(std::slice::from_ref(vm), &Self::VM_PROPS)
            .await
            .map_err(err)?
            .into_iter()
            .next()
            .map(|(_, p)| p)
            .ok_or_else(|| err(VimError::Transport(format!("VM {} is gone", vm.value))))
    }

    /// The VM called `name`, if any: its reference and whether it is this lab's.
    async fn find_vm(&self, name: &str) -> Result<Option<(MoRef, bool)>, ProviderError> {
        let vim = self.session().await?;
        let dc = self.site().await?.datacenter.clone();
        Ok(vim
            .retrieve_in(&dc, "VirtualMachine", &["name", "config.annotation"])
            .await
            .map_err(err)?
            .into_iter()
            .find(|(_, p)| p.get("name").is_some_and(|n| n.text == name))
            .map(|(m, p)| {
                let mine = p
                    .get("config.annotation")
                    .is_some_and(|a| marked(&a.text, &self.lab));
                (m, mine)
            }))
    }

    /// The lab's form of a VM as read.
    fn vm_body(&self, name: &str, props: &Props, pgs: &[PortGroup], want: &Value) -> Value {
        let devs = devices(props);
        let mut disks: Vec<(usize, Value)> = devs
            .iter()
            .filter(|d| d.ty == "VirtualDisk")
            .filter_map(|d| {
                let file = d.node.text_at(&["backing", "fileName"])?;
                let n = disk_slot(file, name)?;
                let kb = disk_kb(&d.node)?;
                let ds = datastore_of(file).unwrap_or("");
                let wanted = &want["disks"][n]["datastore"];
                // A disk on the default datastore is what a lab that names none asks for.
                let datastore = if wanted.is_null() || wanted == ds {
                    wanted.clone()
                } else {
                    json!(ds)
                };
                Some((
                    n,
                    json!({"slot": format!("disk{n}"), "size_mib": kb / 1024, "datastore": datastore}),
                ))
            })
            .collect();
        disks.sort_by_key(|(n, _)| *n);
        let nics_wanted: Vec<&Value> = want["nics"].as_array().into_iter().flatten().collect();
        let mut nics = Vec::new();
        for (i, w) in nics_wanted.iter().enumerate() {
            let mac = w["mac"].as_str().unwrap_or("").to_ascii_lowercase();
            let Some(d) = devs.iter().find(|d| {
                d.node
                    .text_at(&["macAddress"])
                    .is_some_and(|m| m.eq_ignore_ascii_case(&mac))
            }) else {
                continue;
            };
            let portgroup = match d.node.at(&["backing"]) {
                Some(b) if b.child("port").is_some() => {
                    let key = b.text_at(&["port", "portgroupKey"]).unwrap_or("");
                    pgs.iter()
                        .find(|p| p.key == key)
                        .map(|p| p.name.clone())
                        .unwrap_or_else(|| key.to_string())
                }
                Some(b) => b.text_at(&["deviceName"]).unwrap_or("").to_string(),
                None => String::new(),
            };
            let network = if w["portgroup"] == portgroup.as_str() {
                w["network"].clone()
            } else {
                json!(portgroup)
            };
            // The VLAN is the port group's (a network resource): as the lab says.
            nics.push(json!({"slot": format!("nic{i}"), "network": network, "portgroup": portgroup, "mac": mac, "vlan": w["vlan"]}));
        }
        let boot: Vec<&str> = props
            .get("config.bootOptions")
            .map(|b| {
                b.all("bootOrder")
                    .filter_map(|o| match o.ty.as_deref() {
                        Some("VirtualMachineBootOptionsBootableEthernetDevice") => Some("network"),
                        Some("VirtualMachineBootOptionsBootableDiskDevice") => Some("disk"),
                        Some("VirtualMachineBootOptionsBootableCdromDevice") => Some("cdrom"),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let num = |k: &str| {
            props
                .get(k)
                .and_then(|n| n.text.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let power = match props.get("runtime.powerState").map(|p| p.text.as_str()) {
            Some("poweredOn") => "on",
            _ => "off",
        };
        json!({
            "host": want["host"],
            "cpus": num("config.hardware.numCPU"),
            "memory_mib": num("config.hardware.memoryMB"),
            "disks": disks.into_iter().map(|(_, d)| d).collect::<Vec<_>>(),
            "nics": nics,
            "boot": boot,
            "power": power,
        })
    }

    /// The backing of a NIC on lab port group `pg`.
    async fn nic_backing(&self, pg: &str) -> Result<String, ProviderError> {
        let site = self.site().await?;
        if let Some((_, uuid)) = &site.switch
            && let Some(p) = self.portgroups().await?.into_iter().find(|p| p.name == pg)
        {
            return Ok(format!(
                "<backing xsi:type=\"VirtualEthernetCardDistributedVirtualPortBackingInfo\"><port><switchUuid>{}</switchUuid><portgroupKey>{}</portgroupKey></port></backing>",
                esc(uuid),
                esc(&p.key)
            ));
        }
        if self.networks().await?.contains_key(pg) {
            return Ok(format!(
                "<backing xsi:type=\"VirtualEthernetCardNetworkBackingInfo\"><deviceName>{}</deviceName></backing>",
                esc(pg)
            ));
        }
        Err(ProviderError::Backend {
            message: format!("vSphere has no port group `{pg}`"),
            retryable: false,
        })
    }

    fn disk_file(&self, r: &Resource, d: &Value, site: &Site) -> String {
        let slot = d["slot"].as_str().unwrap_or("disk0");
        let ds = d["datastore"].as_str().unwrap_or(&site.datastore);
        format!("[{ds}] {0}/{0}-{slot}.vmdk", r.id.name)
    }

    async fn create_vm(&self, r: &Resource) -> Result<(), ProviderError> {
        let vim = self.session().await?;
        let site = self.site().await?.clone();
        let v = r.body.value();
        let mut changes = String::from(
            "<deviceChange><operation>add</operation><device xsi:type=\"ParaVirtualSCSIController\"><key>-100</key><busNumber>0</busNumber><sharedBus>noSharing</sharedBus></device></deviceChange>",
        );
        for (i, d) in v["disks"].as_array().into_iter().flatten().enumerate() {
            let mib = d["size_mib"]
                .as_u64()
                .ok_or_else(|| invalid(r, "disk without size"))?;
            let unit = if i >= 7 { i + 1 } else { i };
            changes.push_str(&format!(
                "<deviceChange><operation>add</operation><fileOperation>create</fileOperation><device xsi:type=\"VirtualDisk\"><key>{}</key><backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>{}</fileName><diskMode>persistent</diskMode><thinProvisioned>true</thinProvisioned></backing><controllerKey>-100</controllerKey><unitNumber>{unit}</unitNumber><capacityInKB>{}</capacityInKB><capacityInBytes>{}</capacityInBytes></device></deviceChange>",
                -200 - i64::try_from(i).unwrap_or(0),
                esc(&self.disk_file(r, d, &site)),
                mib * 1024,
                mib << 20,
            ));
        }
        for (i, n) in v["nics"].as_array().into_iter().flatten().enumerate() {
            let backing = self
                .nic_backing(n["portgroup"].as_str().unwrap_or(""))
                .await?;
            changes.push_str(&format!(
                "<deviceChange><operation>add</operation><device xsi:type=\"VirtualVmxnet3\"><key>{}</key>{backing}<addressType>manual</addressType><macAddress>{}</macAddress></device></deviceChange>",
                -300 - i64::try_from(i).unwrap_or(0),
                esc(&n["mac"].as_str().unwrap_or("").to_ascii_lowercase())
            ));
        }
        let mem = v["memory_mib"]
            .as_u64()
            .ok_or_else(|| invalid(r, "no memory"))?;
        let config = format!(
            "<config><name>{}</name><guestId>otherGuest64</guestId><annotation>{}</annotation><files><vmPathName>[{}]</vmPathName></files><numCPUs>{}</numCPUs><memoryMB>{mem}</memoryMB>{changes}</config>",
            esc(&r.id.name),
            esc(&self.marker(&r.id)),
            esc(&site.datastore),
            v["cpus"].as_u64().unwrap_or(1),
        );
        let result = vim
            .task(
                "CreateVM_Task",
                &site.vm_folder,
                &format!("{config}{}", site.pool.xml("pool")),
                &format!("create VM {}", r.id.name),
            )
            .await
            .map_err(err)?;
        let vm = result
            .and_then(|n| n.moref())
            .ok_or_else(|| err(VimError::Transport("CreateVM_Task returned no VM".into())))?;
        // Boot order names device keys, known once the devices exist; then the power state.
        self.converge(r, &vm).await
    }

    /// Brings an existing VM of this lab to `r`: one ReconfigVM_Task for what differs (a second
    /// one only for the boot order of devices it had to add), then the power state.
    async fn converge(&self, r: &Resource, vm: &MoRef) -> Result<(), ProviderError> {
        let vim = self.session().await?;
        let site = self.site().await?.clone();
        let v = r.body.value();
        let props = self.vm_props(vm).await?;
        if !props
            .get("config.annotation")
            .is_some_and(|a| marked(&a.text, &self.lab))
        {
            return Err(ProviderError::NotOwned { id: r.id.clone() });
        }
        let devs = devices(&props);
        let num = |k: &str| props.get(k).and_then(|n| n.text.parse::<u64>().ok());
        let mut spec = String::new();
        if num("config.hardware.numCPU") != v["cpus"].as_u64() {
            spec.push_str(&format!(
                "<numCPUs>{}</numCPUs>",
                v["cpus"].as_u64().unwrap_or(1)
            ));
        }
        if num("config.hardware.memoryMB") != v["memory_mib"].as_u64() {
            spec.push_str(&format!(
                "<memoryMB>{}</memoryMB>",
                v["memory_mib"].as_u64().unwrap_or(512)
            ));
        }
        let mut changes = String::new();
        let mut added = false;
        let controller = devs.iter().find(|d| is_scsi(&d.ty));
        let mut used_units: Vec<i64> = controller
            .map(|c| {
                devs.iter()
                    .filter(|d| {
                        d.node.text_at(&["controllerKey"]) == Some(c.key.to_string().as_str())
                    })
                    .filter_map(|d| d.node.text_at(&["unitNumber"])?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        used_units.push(7);
        for (n, d) in v["disks"].as_array().into_iter().flatten().enumerate() {
            let want_kb = d["size_mib"].as_u64().unwrap_or(0) * 1024;
            let existing = devs.iter().find(|x| {
                x.ty == "VirtualDisk"
                    && x.node
                        .text_at(&["backing", "fileName"])
                        .and_then(|f| disk_slot(f, &r.id.name))
                        == Some(n)
            });
            match existing {
                Some(x) => {
                    let file = x.node.text_at(&["backing", "fileName"]).unwrap_or("");
                    if let Some(ds) = d["datastore"].as_str()
                        && datastore_of(file) != Some(ds)
                    {
                        return Err(invalid(
                            r,
                            format!(
                                "disk{n} is on `{}`, the lab says `{ds}`: cloudlet does not move disks between datastores (use Storage vMotion)",
                                datastore_of(file).unwrap_or("?")
                            ),
                        ));
                    }
                    let have_kb = disk_kb(&x.node).unwrap_or(0);
                    if have_kb > want_kb {
                        return Err(invalid(
                            r,
                            format!(
                                "disk{n} would shrink from {} MiB to {} MiB: vSphere cannot shrink a disk (add a new disk and move the data)",
                                have_kb / 1024,
                                want_kb / 1024
                            ),
                        ));
                    }
                    if have_kb < want_kb {
                        changes.push_str(&format!(
                            "<deviceChange><operation>edit</operation><device xsi:type=\"VirtualDisk\"><key>{}</key><backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>{}</fileName><diskMode>persistent</diskMode></backing><controllerKey>{}</controllerKey><unitNumber>{}</unitNumber><capacityInKB>{want_kb}</capacityInKB><capacityInBytes>{}</capacityInBytes></device></deviceChange>",
                            x.key,
                            esc(file),
                            x.node.text_at(&["controllerKey"]).unwrap_or("0"),
                            x.node.text_at(&["unitNumber"]).unwrap_or("0"),
                            want_kb * 1024,
                        ));
                    }
                }
                None => {
                    let c = controller.ok_or_else(|| {
                        invalid(r, "the VM has no SCSI controller to add a disk to")
                    })?;
                    let unit = (0..16)
                        .find(|u| !used_units.contains(u))
                        .ok_or_else(|| invalid(r, "the VM's SCSI controller has no free unit"))?;
                    used_units.push(unit);
                    added = true;
                    changes.push_str(&format!(
                        "<deviceChange><operation>add</operation><fileOperation>create</fileOperation><device xsi:type=\"VirtualDisk\"><key>{}</key><backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>{}</fileName><diskMode>persistent</diskMode><thinProvisioned>true</thinProvisioned></backing><controllerKey>{}</controllerKey><unitNumber>{unit}</unitNumber><capacityInKB>{want_kb}</capacityInKB><capacityInBytes>{}</capacityInBytes></device></deviceChange>",
                        -200 - i64::try_from(n).unwrap_or(0),
                        esc(&self.disk_file(r, d, &site)),
                        c.key,
                        want_kb * 1024,
                    ));
                }
            }
        }
        let pgs = self.portgroups().await?;
        for (i, n) in v["nics"].as_array().into_iter().flatten().enumerate() {
            let mac = n["mac"].as_str().unwrap_or("").to_ascii_lowercase();
            let pg = n["portgroup"].as_str().unwrap_or("");
            let existing = devs.iter().find(|d| {
                d.node
                    .text_at(&["macAddress"])
                    .is_some_and(|m| m.eq_ignore_ascii_case(&mac))
            });
            match existing {
                Some(d) => {
                    let on = match d.node.at(&["backing"]) {
                        Some(b) if b.child("port").is_some() => {
                            let key = b.text_at(&["port", "portgroupKey"]).unwrap_or("");
                            pgs.iter().any(|p| p.key == key && p.name == pg)
                        }
                        Some(b) => b.text_at(&["deviceName"]) == Some(pg),
                        None => false,
                    };
                    if !on {
                        let backing = self.nic_backing(pg).await?;
                        changes.push_str(&format!(
                            "<deviceChange><operation>edit</operation><device xsi:type=\"{}\"><key>{}</key>{backing}<controllerKey>{}</controllerKey><unitNumber>{}</unitNumber><addressType>manual</addressType><macAddress>{mac}</macAddress></device></deviceChange>",
                            esc(&d.ty),
                            d.key,
                            d.node.text_at(&["controllerKey"]).unwrap_or("100"),
                            d.node.text_at(&["unitNumber"]).unwrap_or("7"),
                        ));
                    }
                }
                None => {
                    added = true;
                    let backing = self.nic_backing(pg).await?;
                    changes.push_str(&format!(
                        "<deviceChange><operation>add</operation><device xsi:type=\"VirtualVmxnet3\"><key>{}</key>{backing}<addressType>manual</addressType><macAddress>{}</macAddress></device></deviceChange>",
                        -300 - i64::try_from(i).unwrap_or(0),
                        esc(&mac)
                    ));
                }
            }
        }
        spec.push_str(&changes);
        // Boot order names device keys: devices added now get theirs from this reconfigure.
        let (spec, boot_props) = if added {
            self.reconfigure(vm, &r.id.name, &spec).await?;
            (String::new(), self.vm_props(vm).await?)
        } else {
            (spec, props.clone())
        };
        let mut spec = spec;
        if let Some(boot) = self.boot_order(r, &v, &devices(&boot_props), &boot_props)? {
            spec.push_str(&boot);
        }
        if !spec.is_empty() {
            self.reconfigure(vm, &r.id.name, &spec).await?;
        }
        let on = props.get("runtime.powerState").map(|p| p.text.as_str()) == Some("poweredOn");
        match (v["power"].as_str(), on) {
            (Some("on"), false) => {
                vim.task("PowerOnVM_Task", vm, "", &format!("power on {}", r.id.name))
                    .await
                    .map_err(err)?;
            }
            (Some("off"), true) => {
                vim.task(
                    "PowerOffVM_Task",
                    vm,
                    "",
                    &format!("power off {}", r.id.name),
                )
                .await
                .map_err(err)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// One ReconfigVM_Task with `spec` (the inside of `<spec>`), waited for.
    async fn reconfigure(&self, vm: &MoRef, name: &str, spec: &str) -> Result<(), ProviderError> {
        self.session()
            .await?
            .task(
                "ReconfigVM_Task",
                vm,
                &format!("<spec>{spec}</spec>"),
                &format!("reconfigure VM {name}"),
            )
            .await
            .map(|_| ())
            .map_err(err)
    }

    /// The `<bootOptions>` the lab's boot order needs, or `None` when it is set already.
    fn boot_order(
        &self,
        r: &Resource,
        v: &Value,
        devs: &[Device],
        props: &Props,
    ) -> Result<Option<String>, ProviderError> {
        let first_mac = v["nics"][0]["mac"]
            .as_str()
            .unwrap_or("")
            .to_ascii_lowercase();
        let nic_key = devs
            .iter()
            .find(|d| {
                d.node
                    .text_at(&["macAddress"])
                    .is_some_and(|m| m.eq_ignore_ascii_case(&first_mac))
            })
            .map(|d| d.key);
        let disk_key = devs
            .iter()
            .find(|d| {
                d.ty == "VirtualDisk"
                    && d.node
                        .text_at(&["backing", "fileName"])
                        .and_then(|f| disk_slot(f, &r.id.name))
                        == Some(0)
            })
            .map(|d| d.key);
        let mut want = Vec::new();
        let mut entries = String::new();
        for b in v["boot"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let (ty, key) = match b {
                "network" => ("VirtualMachineBootOptionsBootableEthernetDevice", nic_key),
                "disk" => ("VirtualMachineBootOptionsBootableDiskDevice", disk_key),
                "cdrom" => ("VirtualMachineBootOptionsBootableCdromDevice", None),
                other => return Err(invalid(r, format!("unknown boot device `{other}`"))),
            };
            match (b, key) {
                ("cdrom", _) => entries.push_str(&format!("<bootOrder xsi:type=\"{ty}\"/>")),
                (_, Some(k)) => entries.push_str(&format!(
                    "<bootOrder xsi:type=\"{ty}\"><deviceKey>{k}</deviceKey></bootOrder>"
                )),
                (_, None) => {
                    return Err(invalid(
                        r,
                        format!("boots from {b} but has no {b} device (its first NIC or disk0)"),
                    ));
                }
            }
            want.push((ty.to_string(), key));
        }
        let have: Vec<(String, Option<i64>)> = props
            .get("config.bootOptions")
            .map(|b| {
                b.all("bootOrder")
                    .map(|o| {
                        (
                            o.ty.clone().unwrap_or_default(),
                            o.text_at(&["deviceKey"]).and_then(|k| k.parse().ok()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((have != want).then(|| format!("<bootOptions>{entries}</bootOptions>")))
    }

    async fn write_network(&self, r: &Resource) -> Result<(), ProviderError> {
        let vim = self.session().await?;
        let site = self.site().await?.clone();
        let v = r.body.value();
        let name = v["portgroup"].as_str().unwrap_or(&r.id.name).to_string();
        let Some((dvs, _)) = &site.switch else {
            return if self.networks().await?.contains_key(&name) {
                Ok(())
            } else {
                Err(invalid(
                    r,
                    format!(
                        "there is no distributed switch and no standard port group `{name}`: create the port group on the host's vSwitch (cloudlet manages distributed port groups only)"
                    ),
                ))
            };
        };
        let vlan = v["vlan"].as_u64().unwrap_or(0);
        let port = format!(
            "<defaultPortConfig xsi:type=\"VMwareDVSPortSetting\"><vlan xsi:type=\"VmwareDistributedVirtualSwitchVlanIdSpec\"><inherited>false</inherited><vlanId>{vlan}</vlanId></vlan></defaultPortConfig>"
        );
        let pgs = self.portgroups().await?;
        if !pgs.iter().any(|p| p.name == name) && self.networks().await?.contains_key(&name) {
            // A standard port group of the host: the NICs use it as it is.
            return Ok(());
        }
        let existing = pgs.into_iter().find(|p| {
            marked_id(&p.description, &self.lab).as_deref() == Some(&r.id.to_string())
                || p.name == name
        });
        match existing {
            Some(p) if !marked(&p.description, &self.lab) => {
                Err(ProviderError::NotOwned { id: r.id.clone() })
            }
            Some(p) => {
                let spec = format!(
                    "<spec><configVersion>{}</configVersion><name>{}</name>{port}<description>{}</description></spec>",
                    esc(&p.config_version),
                    esc(&name),
                    esc(&self.marker(&r.id))
                );
                vim.task(
                    "ReconfigureDVPortgroup_Task",
                    &p.moref,
                    &spec,
                    &format!("reconfigure port group {name}"),
                )
                .await
                .map(|_| ())
                .map_err(err)
            }
            None => {
                let spec = format!(
                    "<spec><name>{}</name><numPorts>8</numPorts>{port}<description>{}</description><type>earlyBinding</type><autoExpand>true</autoExpand></spec>",
                    esc(&name),
                    esc(&self.marker(&r.id))
                );
                vim.task(
                    "AddDVPortgroup_Task",
                    dvs,
                    &spec,
                    &format!("create port group {name}"),
                )
                .await
                .map(|_| ())
                .map_err(err)
            }
        }
    }
}

/// A distributed port group as read.
#[derive(Debug, Clone)]
struct PortGroup {
    moref: MoRef,
    name: String,
    key: String,
    description: String,
    vlan: Option<u16>,
    config_version: String,
}

#[async_trait]
impl Provider for Vsphere {
    fn name(&self) -> &str {
        "vsphere"
    }

    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        self.observe_with(domain, &[]).await
    }

    /// The cluster or host that owns the lab's resource pool (its threads and memory from
    /// its summary), every VM on its hosts (templates left out) with its vCPUs, memory and
    /// disks' provisioned size, and the lab's datastore's capacity and free space.
    async fn host_usage(&self) -> Result<cloudlet_core::HostUsage, ProviderError> {
        let site = self.site().await?.clone();
        let vim = self.session().await?;
        let one = |found: Vec<(MoRef, Props)>, what: &str| {
            found
                .into_iter()
                .next()
                .map(|(_, p)| p)
                .ok_or_else(|| err(VimError::Transport(format!("{what} is gone"))))
        };
        let pool = one(
            vim.retrieve_objects(std::slice::from_ref(&site.pool), &["owner"])
                .await
                .map_err(err)?,
            "the resource pool",
        )?;
        let owner = pool.get("owner").and_then(Node::moref).ok_or_else(|| {
            err(VimError::Transport(
                "a resource pool without an owner".into(),
            ))
        })?;
        let compute = one(
            vim.retrieve_objects(std::slice::from_ref(&owner), &["name", "summary", "host"])
                .await
                .map_err(err)?,
            "the pool's cluster or host",
        )?;
        let num = |n: Option<&Node>, path: &[&str]| {
            n.and_then(|n| n.text_at(path))
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let summary = compute.get("summary");
        let hosts: Vec<String> = compute
            .get("host")
            .map(|h| {
                h.children
                    .iter()
                    .filter_map(Node::moref)
                    .map(|m| m.value)
                    .collect()
            })
            .unwrap_or_default();
        let mut vms = Vec::new();
        for (_, p) in vim
            .retrieve_in(&site.datacenter, "VirtualMachine", &Self::VM_PROPS)
            .await
            .map_err(err)?
        {
            let on_ours = p
                .get("runtime.host")
                .and_then(Node::moref)
                .is_some_and(|h| hosts.contains(&h.value));
            if !on_ours || p.get("config.template").is_some_and(|t| t.text == "true") {
                continue;
            }
            let field = |k: &str| {
                p.get(k)
                    .and_then(|n| n.text.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            vms.push(cloudlet_core::VmUsage {
                name: p.get("name").map(|n| n.text.clone()).unwrap_or_default(),
                lab: marked(
                    p.get("config.annotation").map_or("", |a| a.text.as_str()),
                    &self.lab,
                ),
                cpus: u32::try_from(field("config.hardware.numCPU")).unwrap_or(u32::MAX),
                memory: field("config.hardware.memoryMB") << 20,
                disk: devices(&p)
                    .iter()
                    .filter(|d| d.ty == "VirtualDisk")
                    .filter_map(|d| disk_kb(&d.node))
                    .sum::<u64>()
                    * 1024,
            });
        }
        let datastore = vim
            .retrieve_in(&site.datacenter, "Datastore", &["name", "summary"])
            .await
            .map_err(err)?
            .into_iter()
            .find(|(_, p)| p.get("name").is_some_and(|n| n.text == site.datastore))
            .map(|(_, p)| cloudlet_core::DatastoreUsage {
                name: site.datastore.clone(),
                capacity: num(p.get("summary"), &["capacity"]),
                free: num(p.get("summary"), &["freeSpace"]),
            });
        Ok(cloudlet_core::HostUsage {
            name: compute
                .get("name")
                .map(|n| n.text.clone())
                .unwrap_or_default(),
            cpus: u32::try_from(num(summary, &["numCpuThreads"])).unwrap_or(u32::MAX),
            memory: num(summary, &["totalMemory"]),
            datastore,
            vms,
        })
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
        let site = self.site().await?.clone();
        let mut out = Vec::new();
        let pgs = self.portgroups().await?;
        if site.switch.is_some() {
            // A segment on an existing standard port group (no distributed one of that name)
            // is the host's: present, never created or deleted.
            let standard = self.networks().await?;
            for w in desired.iter().filter(|r| &*r.id.kind == "network") {
                let name = w.body.value()["portgroup"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if standard.contains_key(&name) && !pgs.iter().any(|p| p.name == name) {
                    out.push(w.clone());
                }
            }
            for p in &pgs {
                let Some(id) = marked_id(&p.description, &self.lab) else {
                    continue;
                };
                let Some(name) = id.strip_prefix("hypervisor/network/") else {
                    continue;
                };
                let id = ResourceId::new(Domain::Hypervisor, "network", name);
                let w = want.get(&id).copied();
                let wv = w.map(|w| w.body.value()).unwrap_or(Value::Null);
                let body = json!({
                    "portgroup": p.name,
                    "vlan": p.vlan,
                    "cidr": wv["cidr"],
                    "wan": wv["wan"],
                });
                let same = body.clone();
                out.push(Resource::observed(
                    id,
                    w,
                    |w| w.body.value() == same,
                    || body,
                ));
            }
        } else {
            // Standard port groups are the host's: present when the name exists.
            let nets = self.networks().await?;
            for w in desired.iter().filter(|r| &*r.id.kind == "network") {
                if w.body.value()["portgroup"]
                    .as_str()
                    .is_some_and(|n| nets.contains_key(n))
                {
                    out.push(w.clone());
                }
            }
        }
        let vim = self.session().await?;
        for (_, p) in vim
            .retrieve_in(&site.datacenter, "VirtualMachine", &Self::VM_PROPS)
            .await
            .map_err(err)?
        {
            let annotation = p
                .get("config.annotation")
                .map(|a| a.text.as_str())
                .unwrap_or("");
            if !marked(annotation, &self.lab)
                || p.get("config.template").is_some_and(|t| t.text == "true")
            {
                continue;
            }
            let name = p.get("name").map(|n| n.text.clone()).unwrap_or_default();
            let id = ResourceId::new(Domain::Hypervisor, "vm", &*name);
            let w = want.get(&id).copied();
            let wv = w.map(|w| w.body.value()).unwrap_or(Value::Null);
            let body = self.vm_body(&name, &p, &pgs, &wv);
            let same = body.clone();
            let mut r = Resource::observed(id, w, |w| w.body.value() == same, || body);
            if w.is_none() {
                // A VM that left the lab goes before the port groups it is on.
                for d in devices(&p) {
                    let key = d.node.text_at(&["backing", "port", "portgroupKey"]);
                    if let Some(net) = pgs
                        .iter()
                        .filter(|g| Some(g.key.as_str()) == key)
                        .find_map(|g| marked_id(&g.description, &self.lab))
                        .and_then(|id| id.strip_prefix("hypervisor/network/").map(str::to_string))
                    {
                        r.depends_on
                            .push(ResourceId::new(Domain::Hypervisor, "network", net));
                    }
                }
            }
            // Destroying a VM destroys its disks.
            r.data = Data::Disposable;
            out.push(r);
        }
        Ok(out)
    }

    async fn create(&self, r: &Resource) -> Result<(), ProviderError> {
        match &*r.id.kind {
            "vm" => {
                let _slot = self
                    .ops
                    .acquire()
                    .await
                    .map_err(|e| err(VimError::Transport(e.to_string())))?;
                match self.find_vm(&r.id.name).await? {
                    // An apply that stopped after the create: finish that VM, make no second.
                    Some((vm, true)) => self.converge(r, &vm).await,
                    Some((_, false)) => Err(ProviderError::NotOwned { id: r.id.clone() }),
                    None => self.create_vm(r).await,
                }
            }
            "network" => self.write_network(r).await,
            other => Err(invalid(r, format!("vSphere has no `{other}`"))),
        }
    }

    async fn update(&self, r: &Resource, _changes: &[FieldChange]) -> Result<(), ProviderError> {
        // The same path: a VM of this lab is converged, a missing one made.
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), ProviderError> {
        let vim = self.session().await?;
        match &*r.id.kind {
            "vm" => {
                let _slot = self
                    .ops
                    .acquire()
                    .await
                    .map_err(|e| err(VimError::Transport(e.to_string())))?;
                let Some((vm, mine)) = self.find_vm(&r.id.name).await? else {
                    return Ok(());
                };
                if !mine {
                    return Err(ProviderError::NotOwned { id: r.id.clone() });
                }
                let props = self.vm_props(&vm).await?;
                if props.get("runtime.powerState").map(|p| p.text.as_str()) == Some("poweredOn") {
                    vim.task(
                        "PowerOffVM_Task",
                        &vm,
                        "",
                        &format!("power off {}", r.id.name),
                    )
                    .await
                    .map_err(err)?;
                }
                vim.task(
                    "Destroy_Task",
                    &vm,
                    "",
                    &format!("destroy VM {}", r.id.name),
                )
                .await
                .map(|_| ())
                .map_err(err)
            }
            "network" => {
                let pgs = self.portgroups().await?;
                let Some(p) = pgs.iter().find(|p| {
                    marked_id(&p.description, &self.lab).as_deref() == Some(&r.id.to_string())
                }) else {
                    return Ok(());
                };
                vim.task(
                    "Destroy_Task",
                    &p.moref,
                    "",
                    &format!("delete port group {}", p.name),
                )
                .await
                .map(|_| ())
                .map_err(err)
            }
            other => Err(invalid(r, format!("vSphere has no `{other}`"))),
        }
    }
}

#[cfg(test)]
mod fault_tests {
    use super::*;

    #[test]
    fn vim_faults_keep_their_kind() {
        let dup = err(VimError::Fault {
            kind: "DuplicateName".into(),
            message: "The name 'web' already exists.".into(),
        });
        assert_eq!(dup.fault(), Some(Fault::Conflict));
        assert!(!dup.retryable());
        let busy = err(VimError::Task {
            task: "PowerOnVM_Task".into(),
            kind: "TaskInProgress".into(),
            message: "Another task is already in progress.".into(),
        });
        assert_eq!(busy.fault(), Some(Fault::Busy));
        assert!(busy.retryable());
        assert!(err(VimError::Transport("reset".into())).retryable());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_by_file_and_markers_by_line() {
        assert_eq!(
            disk_slot("[LocalDS_0] k8s-1/k8s-1-disk1.vmdk", "k8s-1"),
            Some(1)
        );
        assert_eq!(disk_slot("[LocalDS_0] k8s-1/k8s-1.vmdk", "k8s-1"), None);
        assert_eq!(
            disk_slot("[LocalDS_0] k8s-10/k8s-10-disk0.vmdk", "k8s-1"),
            None
        );
        assert_eq!(
            datastore_of("[LocalDS_0] a/a-disk0.vmdk"),
            Some("LocalDS_0")
        );
        let note = "Backups nightly\ncloudlet:lab=seed resource=hypervisor/network/lan\nManaged by cloudlet";
        assert!(marked(note, "seed"));
        assert!(!marked(note, "see"));
        assert!(!marked("cloudlet:lab=seed2", "seed"));
        assert_eq!(
            marked_id(note, "seed").as_deref(),
            Some("hypervisor/network/lan")
        );
    }
}
