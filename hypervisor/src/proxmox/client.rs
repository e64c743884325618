//! The `proxmox` backend's client: everything but its description (the `client` feature).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use cloudlet_core::error::{Fault, ProviderError};
use cloudlet_core::plan::FieldChange;
use cloudlet_core::{Data, Domain, Provider, Resource, ResourceId};
use cloudlet_transport::http::{Http, HttpError, Method};
use serde_json::{Map, Value, json};
use tokio::sync::{OnceCell, Semaphore};

use cloudlet_core::backend::{ConnectError, Connection};

pub(super) fn connect<'a>(
    c: &'a Connection<'a>,
) -> cloudlet_core::backend::BoxFuture<'a, Result<std::sync::Arc<dyn Provider>, ConnectError>> {
    Box::pin(async move {
        let endpoint = c.endpoint()?;
        let text = c.credentials()?;
        let form = ConnectError::CredentialForm {
            backend: "Proxmox",
            expected: "an API token USER@REALM!NAME=SECRET",
        };
        let Some((token_id, secret)) = text
            .split_once('=')
            .filter(|(t, s)| t.contains('!') && !s.is_empty())
        else {
            return Err(form);
        };
        let tls = cloudlet_transport::tls::config_for(c.fingerprint(), c.ca().as_deref()).map_err(
            |e| ConnectError::Client {
                backend: "Proxmox",
                source: Box::new(e),
            },
        )?;
        let p = Proxmox::new(
            c.lab.name.clone(),
            ProxmoxOptions {
                endpoint,
                token_id: token_id.to_string(),
                secret: secret.to_string(),
                tls,
                node: c.setting("node"),
                storage: c.setting("datastore"),
                concurrency: 4,
                sdn_zone: c.setting("zone"),
            },
        )
        .map_err(|e| ConnectError::Client {
            backend: "Proxmox",
            source: Box::new(e),
        })?;
        Ok(std::sync::Arc::new(p) as std::sync::Arc<dyn Provider>)
    })
}

/// How to reach Proxmox VE.
#[derive(Clone)]
pub struct ProxmoxOptions {
    /// `https://pve:8006`.
    pub endpoint: String,
    /// The API token id, `USER@REALM!NAME`.
    pub token_id: String,
    /// The token's secret.
    pub secret: String,
    /// TLS settings (see [`cloudlet_transport::tls`]).
    pub tls: cloudlet_transport::tls::rustls::ClientConfig,
    /// The node VMs are made on (default: the only online one).
    pub node: Option<String>,
    /// The storage of disks that name none (default: the first that holds images).
    pub storage: Option<String>,
    /// VM operations in flight at once.
    pub concurrency: usize,
    /// An SDN zone: the lab's segments become VNets of that zone (VLAN-tagged as the lab
    /// says) instead of existing bridges of the node.
    pub sdn_zone: Option<String>,
}

impl std::fmt::Debug for ProxmoxOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxmoxOptions")
            .field("endpoint", &self.endpoint)
            .field("token_id", &self.token_id)
            .field("secret", &"<redacted>")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// The Proxmox VE provider.
pub struct Proxmox {
    lab: String,
    options: ProxmoxOptions,
    http: Http,
    site: OnceCell<(String, String)>,
    ops: Semaphore,
    /// SDN changes written but not applied yet.
    sdn_dirty: std::sync::atomic::AtomicBool,
    /// One SDN apply at a time.
    sdn_apply: tokio::sync::Mutex<()>,
    /// One clone at a time per storage (parallel clones meet PVE's storage lock timeouts).
    clones: tokio::sync::Mutex<BTreeMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

/// A VM as the cluster lists it.
#[derive(Debug, Clone)]
struct Guest {
    vmid: u64,
    node: String,
    name: String,
    tags: String,
    status: String,
    template: bool,
}

impl std::fmt::Debug for Proxmox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxmox")
            .field("lab", &self.lab)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn err(message: impl Into<String>, retryable: bool) -> ProviderError {
    ProviderError::Backend {
        message: message.into(),
        retryable,
    }
}

/// What kind of failure a Proxmox error text reports: the one place its wording is read
/// (the API answers with text only), so retry decisions read the [`Fault`].
fn fault_of(status: Option<u16>, text: &str) -> Fault {
    if text.contains("got timeout") {
        // `trying to acquire lock ... got timeout`: a VM or storage lock held by another task.
        Fault::Busy
    } else if text.contains("already exists") {
        Fault::Conflict
    } else {
        match status {
            Some(401) => Fault::Unauthorized,
            Some(404) => Fault::NotFound,
            _ => Fault::Other,
        }
    }
}

/// A Proxmox API or task failure, typed.
fn api_error(operation: String, status: Option<u16>, message: String) -> ProviderError {
    ProviderError::Api {
        backend: "Proxmox",
        fault: fault_of(status, &message),
        operation,
        status,
        message,
    }
}

fn invalid(r: &Resource, message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidData {
        what: r.id.to_string(),
        message: message.into(),
    }
}

/// `size=8G` and friends in MiB.
fn size_mib(text: &str) -> Option<u64> {
    let (num, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    let mib = match unit {
        "K" => n / 1024.0,
        "M" => n,
        "G" => n * 1024.0,
        "T" => n * 1024.0 * 1024.0,
        _ => return None,
    };
    // Sizes are whole MiB in practice; rounding keeps float noise out of plans.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(mib.round() as u64)
}

/// The `key=value` options of a drive or NIC string (`local-lvm:vm-100-disk-0,size=8G`); the
/// first, bare element under `""`.
fn options(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .enumerate()
        .map(|(i, part)| match part.split_once('=') {
            Some((k, v)) if i > 0 || !k.contains(':') => (k.to_string(), v.to_string()),
            _ => (String::new(), part.to_string()),
        })
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Proxmox {
    /// A provider for `lab`.
    pub fn new(lab: impl Into<String>, options: ProxmoxOptions) -> Result<Self, crate::Error> {
        if options.token_id.contains('=') || !options.token_id.contains('!') {
            return Err(crate::Error::ProxmoxToken);
        }
        let http = Http::with_tls(
            options.endpoint.trim_end_matches('/'),
            options.tls.clone(),
            vec![(
                "authorization".into(),
                format!("PVEAPIToken={}={}", options.token_id, options.secret),
            )],
        )
        .map_err(|source| crate::Error::Client {
            backend: "Proxmox",
            source,
        })?;
        let ops = Semaphore::new(options.concurrency.max(1));
        Ok(Proxmox {
            lab: lab.into(),
            options,
            http,
            site: OnceCell::new(),
            ops,
            clones: tokio::sync::Mutex::default(),
            sdn_dirty: std::sync::atomic::AtomicBool::new(false),
            sdn_apply: tokio::sync::Mutex::new(()),
        })
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.http
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn tag(&self) -> String {
        format!("cloudlet-{}", self.lab.to_ascii_lowercase())
    }

    fn mine(&self, tags: &str) -> bool {
        tags.split([';', ',', ' ']).any(|t| t == self.tag())
    }

    /// One API call; the `data` of the answer. Lock timeouts are retried with backoff.
    async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ProviderError> {
        let url = format!("/api2/json{path}");
        // A busy VM lock passes: up to 7 tries, backoff from 100 ms.
        let busy = |e: &HttpError| matches!(e, HttpError::Status(code, b) if fault_of(Some(*code), b) == Fault::Busy);
        let answer =
            cloudlet_transport::retry::with_backoff(7, Duration::from_millis(100), busy, || {
                self.http.json(method.clone(), &url, body)
            })
            .await;
        match answer {
            Ok(v) => Ok(v.get("data").cloned().unwrap_or(Value::Null)),
            Err(HttpError::Status(401, _)) => Err(err(
                format!(
                    "Proxmox refused the API token `{}` (401): check the token id and secret, and that the token is not expired",
                    self.options.token_id
                ),
                false,
            )),
            Err(HttpError::Status(code, body)) => Err(api_error(
                format!("{method} {path}"),
                Some(code),
                format!("{code}: {body}"),
            )),
            Err(e) => {
                let retryable = matches!(e, HttpError::Transport(_));
                Err(err(format!("Proxmox {method} {path}: {e}"), retryable))
            }
        }
    }

    /// Waits for the task `upid` on `node`; its failure as an error.
    async fn wait(&self, node: &str, upid: &Value, what: &str) -> Result<(), ProviderError> {
        let Some(upid) = upid.as_str().filter(|u| u.starts_with("UPID:")) else {
            // A synchronous answer: done.
            return Ok(());
        };
        let path = format!("/nodes/{node}/tasks/{}/status", pct(upid));
        let mut pause = Duration::from_millis(20);
        loop {
            let s = self.api(Method::GET, &path, None).await?;
            if s["status"] == "stopped" {
                let exit = text(&s["exitstatus"]);
                return if exit == "OK" || exit.starts_with("WARNINGS") {
                    Ok(())
                } else {
                    Err(api_error(
                        format!("task {what}"),
                        None,
                        format!("failed: {exit}"),
                    ))
                };
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// The node and the default storage.
    async fn site(&self) -> Result<&(String, String), ProviderError> {
        self.site
            .get_or_try_init(|| async {
                let nodes = self.api(Method::GET, "/nodes", None).await?;
                let online: Vec<String> = nodes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|n| n["status"] == "online")
                    .map(|n| text(&n["node"]))
                    .collect();
                let node = match &self.options.node {
                    Some(n) if online.contains(n) => n.clone(),
                    Some(n) => {
                        return Err(err(
                            format!("Proxmox node `{n}` is not online (online: {})", online.join(", ")),
                            false,
                        ));
                    }
                    None if online.len() == 1 => online[0].clone(),
                    None => {
                        return Err(err(
                            format!(
                                "Proxmox has {} online nodes ({}): name one in the target (`node:`)",
                                online.len(),
                                online.join(", ")
                            ),
                            false,
                        ));
                    }
                };
                let storage = match &self.options.storage {
                    Some(s) => s.clone(),
                    None => self
                        .api(Method::GET, &format!("/nodes/{node}/storage"), None)
                        .await?
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|s| text(&s["content"]).split(',').any(|c| c == "images"))
                        .map(|s| text(&s["storage"]))
                        .ok_or_else(|| err(format!("node `{node}` has no storage for VM images"), false))?,
                };
                Ok((node, storage))
            })
            .await
    }

    /// VMs of the cluster (templates too).
    async fn guests(&self) -> Result<Vec<Guest>, ProviderError> {
        let all = self
            .api(Method::GET, "/cluster/resources?type=vm", None)
            .await?;
        Ok(all
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["type"] == "qemu")
            .map(|v| Guest {
                vmid: v["vmid"].as_u64().unwrap_or(0),
                node: text(&v["node"]),
                name: text(&v["name"]),
                tags: text(&v["tags"]),
                status: text(&v["status"]),
                template: v["template"] == 1,
            })
            .collect())
    }

    /// The VM (not template) called `name`.
    async fn find(&self, name: &str) -> Result<Option<Guest>, ProviderError> {
        Ok(self
            .guests()
            .await?
            .into_iter()
            .find(|g| !g.template && g.name == name))
    }

    /// Whether `g` is this lab's: its tag, or (a clone stopped before its tags were set)
    /// the description the create or clone call wrote.
    async fn owned(&self, g: &Guest) -> Result<bool, ProviderError> {
        if self.mine(&g.tags) {
            return Ok(true);
        }
        let cfg = self
            .api(
                Method::GET,
                &format!("/nodes/{}/qemu/{}/config", g.node, g.vmid),
                None,
            )
            .await?;
        Ok(text(&cfg["description"]).starts_with(&self.description_prefix()))
    }

    fn description_prefix(&self) -> String {
        format!("Managed by cloudlet (lab {},", self.lab)
    }

    /// The lock that serializes clones onto one storage.
    async fn storage_lock(&self, storage: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        self.clones
            .lock()
            .await
            .entry(storage.to_string())
            .or_default()
            .clone()
    }

    /// The configuration the next start uses (pending values applied), and the digest.
    async fn config(
        &self,
        node: &str,
        vmid: u64,
    ) -> Result<(Map<String, Value>, String), ProviderError> {
        let current = self
            .api(
                Method::GET,
                &format!("/nodes/{node}/qemu/{vmid}/config"),
                None,
            )
            .await?;
        let digest = text(&current["digest"]);
        let pending = self
            .api(
                Method::GET,
                &format!("/nodes/{node}/qemu/{vmid}/pending"),
                None,
            )
            .await?;
        let mut cfg = Map::new();
        for p in pending.as_array().into_iter().flatten() {
            let key = text(&p["key"]);
            if p["delete"] == 1 {
                continue;
            }
            let v = if p.get("pending").is_some() {
                &p["pending"]
            } else {
                &p["value"]
            };
            cfg.insert(key, v.clone());
        }
        if cfg.is_empty() {
            cfg = current.as_object().cloned().unwrap_or_default();
        }
        cfg.remove("digest");
        Ok((cfg, digest))
    }

    /// The lab's form of a VM's configuration.
    fn vm_body(
        &self,
        cfg: &Map<String, Value>,
        status: &str,
        storage: &str,
        want: &Value,
    ) -> Value {
        let num = |k: &str| text(cfg.get(k).unwrap_or(&Value::Null)).parse::<u64>().ok();
        let cpus = num("cores").unwrap_or(1) * num("sockets").unwrap_or(1);
        let mut disks = Vec::new();
        for n in 0..31 {
            let Some(d) = cfg.get(&format!("scsi{n}")) else {
                continue;
            };
            let o = options(&text(d));
            if o.get("media").is_some_and(|m| m == "cdrom") {
                continue;
            }
            let store = o
                .get("")
                .and_then(|v| v.split_once(':'))
                .map(|(s, _)| s)
                .unwrap_or("");
            let wanted = &want["disks"][n]["datastore"];
            let datastore = if (wanted.is_null() && store == storage) || wanted == store {
                wanted.clone()
            } else {
                json!(store)
            };
            disks.push(json!({
                "slot": format!("disk{n}"),
                "size_mib": o.get("size").and_then(|s| size_mib(s)),
                "datastore": datastore,
            }));
        }
        let mut nics = Vec::new();
        for n in 0..32 {
            let Some(v) = cfg.get(&format!("net{n}")) else {
                continue;
            };
            let o = options(&text(v));
            let mac = o
                .iter()
                .find(|(k, _)| {
                    matches!(
                        k.as_str(),
                        "virtio" | "e1000" | "e1000e" | "vmxnet3" | "rtl8139"
                    )
                })
                .map(|(_, m)| m.to_ascii_lowercase())
                .unwrap_or_default();
            let bridge = o.get("bridge").cloned().unwrap_or_default();
            let w = &want["nics"][n];
            let vlan: Option<u64> = match o.get("tag") {
                Some(t) => t.parse().ok(),
                // The VNet's VLAN, as the lab says (the VNet itself is a network resource).
                None if self.options.sdn_zone.is_some() => w["vlan"].as_u64(),
                None => None,
            };
            let network = if w["portgroup"] == bridge.as_str() {
                w["network"].clone()
            } else {
                json!(bridge)
            };
            nics.push(json!({
                "slot": format!("nic{n}"),
                "network": network,
                "portgroup": bridge,
                "mac": mac,
                "vlan": vlan,
            }));
        }
        let boot: Vec<&str> = text(cfg.get("boot").unwrap_or(&Value::Null))
            .strip_prefix("order=")
            .unwrap_or("")
            .split(';')
            .filter(|d| !d.is_empty())
            .map(|d| {
                if d.starts_with("net") {
                    "network"
                } else if cfg.get(d).is_some_and(|v| text(v).contains("media=cdrom")) {
                    "cdrom"
                } else {
                    "disk"
                }
            })
            .collect();
        let mut body = json!({
            "host": want["host"],
            "cpus": cpus,
            "memory_mib": num("memory").unwrap_or(512),
            "disks": disks,
            "nics": nics,
            "boot": boot,
            "power": if status == "running" { "on" } else { "off" },
        });
        // Where a VM was cloned from is not recorded by PVE: it matters only when making it.
        if want["clone"].is_string() {
            body["clone"] = want["clone"].clone();
        }
        // cloud-init is managed when the lab sets it (a template may bring its own).
        if want["cloud_init"].is_object() {
            let user = text(cfg.get("ciuser").unwrap_or(&Value::Null));
            let keys: Vec<String> = decode(&text(cfg.get("sshkeys").unwrap_or(&Value::Null)))
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            body["cloud_init"] = json!({
                "user": if user.is_empty() { Value::Null } else { json!(user) },
                "ssh_keys": keys,
            });
        }
        body
    }

    fn nic(&self, n: &Value) -> String {
        let mut s = format!(
            "virtio={},bridge={}",
            n["mac"].as_str().unwrap_or("").to_ascii_uppercase(),
            n["portgroup"].as_str().unwrap_or("")
        );
        // On an SDN VNet the VNet carries the VLAN.
        if let Some(v) = n["vlan"]
            .as_u64()
            .filter(|_| self.options.sdn_zone.is_none())
        {
            s.push_str(&format!(",tag={v}"));
        }
        s
    }

    fn boot(v: &Value) -> String {
        let order: Vec<&str> = v["boot"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|b| match b {
                "network" => "net0",
                "cdrom" => "ide2",
                _ => "scsi0",
            })
            .collect();
        format!("order={}", order.join(";"))
    }

    fn gib(r: &Resource, mib: u64) -> Result<u64, ProviderError> {
        if !mib.is_multiple_of(1024) {
            return Err(invalid(
                r,
                format!("Proxmox allocates disks in whole GiB; {mib} MiB is not"),
            ));
        }
        Ok(mib / 1024)
    }

    async fn create_vm(&self, r: &Resource) -> Result<(), ProviderError> {
        let (node, storage) = self.site().await?.clone();
        let v = r.body.value();
        let mut body = json!({
            "name": &*r.id.name,
            "cores": v["cpus"].as_u64().unwrap_or(1),
            "sockets": 1,
            "memory": v["memory_mib"].as_u64().unwrap_or(512),
            "scsihw": "virtio-scsi-single",
            "ostype": "l26",
            "tags": self.tag(),
            "description": format!("{} {}).", self.description_prefix(), r.id),
            "boot": Self::boot(&v),
        });
        for (n, d) in v["disks"].as_array().into_iter().flatten().enumerate() {
            let gib = Self::gib(r, d["size_mib"].as_u64().unwrap_or(0))?;
            let store = d["datastore"].as_str().unwrap_or(&storage);
            body[format!("scsi{n}")] = json!(format!("{store}:{gib}"));
        }
        for (n, nic) in v["nics"].as_array().into_iter().flatten().enumerate() {
            body[format!("net{n}")] = json!(self.nic(nic));
        }
        // The next free id can be taken by someone else between asking and creating.
        let taken = |e: &ProviderError| e.fault() == Some(Fault::Conflict);
        let create = format!("/nodes/{node}/qemu");
        let vmid =
            cloudlet_transport::retry::with_backoff(5, Duration::from_millis(50), taken, || {
                let (mut body, create) = (body.clone(), create.as_str());
                async move {
                    let vmid = text(&self.api(Method::GET, "/cluster/nextid", None).await?)
                        .parse::<u64>()
                        .unwrap_or(0);
                    body["vmid"] = json!(vmid);
                    let upid = self.api(Method::POST, create, Some(&body)).await?;
                    Ok((vmid, upid))
                }
            })
            .await;
        let (vmid, upid) = vmid?;
        self.wait(&node, &upid, &format!("create {}", r.id.name))
            .await?;
        if v["power"] == "on" {
            let upid = self
                .api(
                    Method::POST,
                    &format!("/nodes/{node}/qemu/{vmid}/status/start"),
                    None,
                )
                .await?;
            self.wait(&node, &upid, &format!("start {}", r.id.name))
                .await?;
        }
        Ok(())
    }

    /// Makes the VM as a full clone of the lab's template, then configures it like any other
    /// (cores, memory, NICs, boot order, tags, cloud-init, disk growth) and powers it on.
    /// Clones onto one storage go one at a time; a storage lock timeout is retried.
    async fn clone_vm(&self, r: &Resource) -> Result<(), ProviderError> {
        let (_, storage) = self.site().await?.clone();
        let v = r.body.value();
        let template = v["clone"].as_str().unwrap_or("");
        let tpl = self
            .guests()
            .await?
            .into_iter()
            .find(|g| g.template && g.name == template)
            .ok_or_else(|| {
                invalid(
                    r,
                    format!("Proxmox has no template VM `{template}` to clone"),
                )
            })?;
        let target = v["disks"][0]["datastore"]
            .as_str()
            .unwrap_or(&storage)
            .to_string();
        let lock = self.storage_lock(&target).await;
        // A storage lock timeout, or the new id taken meanwhile: try again (6 tries, backoff
        // from 200 ms), one clone onto this storage at a time.
        let again = |e: &ProviderError| matches!(e.fault(), Some(Fault::Busy | Fault::Conflict));
        let made = {
            let _one = lock.lock().await;
            cloudlet_transport::retry::with_backoff(
                6,
                Duration::from_millis(200),
                again,
                || async {
                    let newid = text(&self.api(Method::GET, "/cluster/nextid", None).await?)
                        .parse::<u64>()
                        .unwrap_or(0);
                    let body = json!({
                        "newid": newid,
                        "name": &*r.id.name,
                        "full": 1,
                        "storage": target,
                        "description": format!("{} {}).", self.description_prefix(), r.id),
                    });
                    let upid = self
                        .api(
                            Method::POST,
                            &format!("/nodes/{}/qemu/{}/clone", tpl.node, tpl.vmid),
                            Some(&body),
                        )
                        .await?;
                    self.wait(&tpl.node, &upid, &format!("clone {}", r.id.name))
                        .await
                        .map(|()| newid)
                },
            )
            .await?
        };
        // The clone is on the template's node.
        self.converge(r, &tpl.node, made, "stopped").await
    }

    /// Brings VM `vmid` to `r`: one digest-guarded configuration write of what differs, disk
    /// growth by resize, then the power state.
    async fn converge(
        &self,
        r: &Resource,
        node: &str,
        vmid: u64,
        status: &str,
    ) -> Result<(), ProviderError> {
        let (_, storage) = self.site().await?.clone();
        let v = r.body.value();
        let (cfg, digest) = self.config(node, vmid).await?;
        let get = |k: &str| text(cfg.get(k).unwrap_or(&Value::Null));
        let mut set = Map::new();
        if get("cores") != v["cpus"].as_u64().unwrap_or(1).to_string()
            || get("sockets").parse().unwrap_or(1) != 1
        {
            set.insert("cores".into(), json!(v["cpus"].as_u64().unwrap_or(1)));
            set.insert("sockets".into(), json!(1));
        }
        if get("memory") != v["memory_mib"].as_u64().unwrap_or(512).to_string() {
            set.insert(
                "memory".into(),
                json!(v["memory_mib"].as_u64().unwrap_or(512)),
            );
        }
        let mut grow = Vec::new();
        for (n, d) in v["disks"].as_array().into_iter().flatten().enumerate() {
            let key = format!("scsi{n}");
            let want = d["size_mib"].as_u64().unwrap_or(0);
            match cfg.get(&key) {
                None => {
                    let store = d["datastore"].as_str().unwrap_or(&storage);
                    set.insert(key, json!(format!("{store}:{}", Self::gib(r, want)?)));
                }
                Some(have) => {
                    let have = options(&text(have))
                        .get("size")
                        .and_then(|s| size_mib(s))
                        .unwrap_or(0);
                    if have > want {
                        return Err(invalid(
                            r,
                            format!(
                                "{key} would shrink from {have} MiB to {want} MiB: Proxmox cannot shrink a disk (add a new disk and move the data)"
                            ),
                        ));
                    }
                    if have < want {
                        grow.push((key, Self::gib(r, want)?));
                    }
                }
            }
        }
        for (n, nic) in v["nics"].as_array().into_iter().flatten().enumerate() {
            let key = format!("net{n}");
            let want = self.nic(nic);
            let same = cfg.get(&key).is_some_and(|have| {
                let (h, w) = (options(&text(have)), options(&want));
                let mac = |o: &BTreeMap<String, String>| {
                    o.iter()
                        .find(|(k, _)| {
                            k.as_str() != "bridge" && k.as_str() != "tag" && !k.is_empty()
                        })
                        .map(|(k, m)| (k.clone(), m.to_ascii_lowercase()))
                };
                mac(&h) == mac(&w)
                    && h.get("bridge") == w.get("bridge")
                    && h.get("tag") == w.get("tag")
            });
            if !same {
                set.insert(key, json!(want));
            }
        }
        let boot = Self::boot(&v);
        if get("boot") != boot {
            set.insert("boot".into(), json!(boot));
        }
        if !self.mine(&get("tags")) {
            // A clone: the template's tags stay, cloudlet's joins them.
            let mut tags: Vec<String> = get("tags")
                .split([';', ',', ' '])
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            tags.push(self.tag());
            set.insert("tags".into(), json!(tags.join(";")));
        }
        if let Some(ci) = v.get("cloud_init").filter(|c| c.is_object()) {
            let user = ci["user"].as_str().unwrap_or("");
            if get("ciuser") != user {
                set.insert("ciuser".into(), json!(user));
            }
            let keys: Vec<&str> = ci["ssh_keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if decode(&get("sshkeys")).lines().collect::<Vec<_>>() != keys {
                // PVE takes the keys URL-encoded.
                set.insert("sshkeys".into(), json!(pct(&keys.join("\n"))));
            }
            let has_drive = cfg.iter().any(|(k, v)| {
                ["ide", "scsi", "sata"].iter().any(|p| k.starts_with(p))
                    && text(v).contains("cloudinit")
            });
            if !has_drive {
                let slot = if cfg.contains_key("ide2") {
                    "ide3"
                } else {
                    "ide2"
                };
                set.insert(slot.into(), json!(format!("{storage}:cloudinit")));
            }
        }
        if !set.is_empty() {
            set.insert("digest".into(), json!(digest));
            // The synchronous form: a busy lock answers at once (and is retried), and the
            // digest makes a concurrent edit fail instead of being overwritten.
            self.api(
                Method::PUT,
                &format!("/nodes/{node}/qemu/{vmid}/config"),
                Some(&Value::Object(set)),
            )
            .await?;
        }
        for (disk, gib) in grow {
            let upid = self
                .api(
                    Method::PUT,
                    &format!("/nodes/{node}/qemu/{vmid}/resize"),
                    Some(&json!({"disk": disk, "size": format!("{gib}G")})),
                )
                .await?;
            self.wait(node, &upid, &format!("resize {disk} of {}", r.id.name))
                .await?;
        }
        let action = match (v["power"].as_str(), status == "running") {
            (Some("on"), false) => Some("start"),
            (Some("off"), true) => Some("stop"),
            _ => None,
        };
        if let Some(a) = action {
            let upid = self
                .api(
                    Method::POST,
                    &format!("/nodes/{node}/qemu/{vmid}/status/{a}"),
                    None,
                )
                .await?;
            self.wait(node, &upid, &format!("{a} {}", r.id.name))
                .await?;
        }
        Ok(())
    }

    async fn write_vm(&self, r: &Resource) -> Result<(), ProviderError> {
        // A VM's NICs need the VNets written before it to exist on the nodes.
        self.apply_sdn(false).await?;
        let _slot = self
            .ops
            .acquire()
            .await
            .map_err(|e| err(e.to_string(), false))?;
        match self.find(&r.id.name).await? {
            Some(g) if self.owned(&g).await? => self.converge(r, &g.node, g.vmid, &g.status).await,
            Some(_) => Err(ProviderError::NotOwned { id: r.id.clone() }),
            None if r.body.value()["clone"].is_string() => self.clone_vm(r).await,
            None => self.create_vm(r).await,
        }
    }

    fn vnet_alias(&self, id: &ResourceId) -> String {
        format!("cloudlet lab={} {id}", self.lab)
    }

    /// The zone's VNets as configured (including changes not applied yet).
    async fn vnets(&self, zone: &str) -> Result<Vec<Value>, ProviderError> {
        Ok(self
            .api(Method::GET, "/cluster/sdn/vnets", None)
            .await?
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["zone"] == zone)
            .cloned()
            .collect())
    }

    /// Applies the SDN configuration (`PUT /cluster/sdn`, a reload of every node's network)
    /// when cloudlet wrote to it, or (`always`) when one of cloudlet's VNets has changes
    /// pending, as an interrupted apply leaves them.
    async fn apply_sdn(&self, always: bool) -> Result<(), ProviderError> {
        let Some(zone) = &self.options.sdn_zone else {
            return Ok(());
        };
        let _one = self.sdn_apply.lock().await;
        let mut needed = self
            .sdn_dirty
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        if always && !needed {
            let prefix = format!("cloudlet lab={} ", self.lab);
            needed = self
                .api(Method::GET, "/cluster/sdn/vnets?pending=1", None)
                .await?
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["zone"] == zone.as_str() || v["pending"]["zone"] == zone.as_str())
                .any(|v| {
                    let alias = text(&v["alias"]) + &text(&v["pending"]["alias"]);
                    v.get("state").is_some() && alias.contains(&prefix)
                });
        }
        if needed {
            // The apply is cluster-wide: say whose pending edits go live with cloudlet's.
            let prefix = format!("cloudlet lab={} ", self.lab);
            let others: Vec<String> = self
                .api(Method::GET, "/cluster/sdn/vnets?pending=1", None)
                .await?
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v.get("state").is_some())
                .filter(|v| !(text(&v["alias"]) + &text(&v["pending"]["alias"])).contains(&prefix))
                .map(|v| text(&v["vnet"]))
                .collect();
            if !others.is_empty() {
                tracing::warn!(
                    vnets = %others.join(", "),
                    "applying the SDN configuration also applies pending changes cloudlet did not make"
                );
            }
            let (node, _) = self.site().await?.clone();
            let upid = self.api(Method::PUT, "/cluster/sdn", None).await?;
            self.wait(&node, &upid, "apply the SDN configuration")
                .await?;
        }
        Ok(())
    }

    async fn write_vnet(&self, r: &Resource, zone: &str) -> Result<(), ProviderError> {
        let v = r.body.value();
        let name = v["portgroup"].as_str().unwrap_or(&r.id.name).to_string();
        let valid = name.len() <= 8
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid {
            return Err(invalid(
                r,
                format!(
                    "`{name}` cannot be an SDN VNet (at most 8 lowercase letters and digits, a letter first): set the segment's `portgroup`"
                ),
            ));
        }
        let alias = self.vnet_alias(&r.id);
        let existing = self
            .vnets(zone)
            .await?
            .into_iter()
            .find(|x| x["vnet"] == name.as_str());
        let mut body = json!({"alias": alias});
        match v["vlan"].as_u64() {
            Some(tag) => body["tag"] = json!(tag),
            None if existing.is_some() => body["delete"] = json!("tag"),
            None => {}
        }
        match existing {
            Some(x) if text(&x["alias"]) != alias => {
                Err(ProviderError::NotOwned { id: r.id.clone() })
            }
            Some(_) => {
                self.api(
                    Method::PUT,
                    &format!("/cluster/sdn/vnets/{name}"),
                    Some(&body),
                )
                .await?;
                self.sdn_dirty
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
            None => {
                body["vnet"] = json!(name);
                body["zone"] = json!(zone);
                self.api(Method::POST, "/cluster/sdn/vnets", Some(&body))
                    .await?;
                self.sdn_dirty
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
        }
    }

    async fn bridges(&self) -> Result<Vec<String>, ProviderError> {
        let (node, _) = self.site().await?.clone();
        Ok(self
            .api(
                Method::GET,
                &format!("/nodes/{node}/network?type=any_bridge"),
                None,
            )
            .await?
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| matches!(i["type"].as_str(), Some("bridge" | "OVSBridge")))
            .map(|i| text(&i["iface"]))
            .collect())
    }
}

/// Decodes percent-encoding (PVE's `sshkeys`).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a path segment or a value PVE wants URL-encoded (UPIDs hold `:` and `@`).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The provisioned size of every disk in a VM configuration (`scsi0`, `virtio1`, `sata0`,
/// `ide2` ... with a `size=`; CD-ROMs and cloud-init drives left out), in bytes.
fn config_disk_bytes(cfg: &Value) -> u64 {
    cfg.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| {
            ["scsi", "virtio", "sata", "ide"]
                .iter()
                .any(|p| k.strip_prefix(p).is_some_and(|n| n.parse::<u8>().is_ok()))
        })
        .filter_map(|(_, v)| {
            let o = options(&text(v));
            (o.get("media").map(String::as_str) != Some("cdrom")
                && !o.get("").is_some_and(|f| f.contains("cloudinit")))
            .then(|| o.get("size").and_then(|s| size_mib(s)))
            .flatten()
        })
        .map(|mib| mib << 20)
        .sum()
}

#[async_trait]
impl Provider for Proxmox {
    fn name(&self) -> &str {
        "proxmox"
    }

    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        self.observe_with(domain, &[]).await
    }

    /// The node VMs are made on (`/nodes`: its CPUs and memory), the storage new disks go to
    /// (its status), and every VM on that node with the sizes its configuration gives.
    async fn host_usage(&self) -> Result<cloudlet_core::HostUsage, ProviderError> {
        let (node, storage) = self.site().await?.clone();
        let nodes = self.api(Method::GET, "/nodes", None).await?;
        let n = nodes
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| text(&n["node"]) == node)
            .ok_or_else(|| err(format!("Proxmox lists no node `{node}`"), false))?;
        let status = self
            .api(
                Method::GET,
                &format!("/nodes/{node}/storage/{}/status", pct(&storage)),
                None,
            )
            .await?;
        let mut vms = Vec::new();
        for g in self.guests().await? {
            if g.template || g.node != node {
                continue;
            }
            let cfg = self
                .api(
                    Method::GET,
                    &format!("/nodes/{node}/qemu/{}/config", g.vmid),
                    None,
                )
                .await?;
            // Numbers come as numbers or strings; memory also as `current=MIB`.
            let num = |k: &str, default: u64| {
                cfg[k]
                    .as_u64()
                    .or_else(|| text(&cfg[k]).rsplit('=').next()?.parse().ok())
                    .unwrap_or(default)
            };
            vms.push(cloudlet_core::VmUsage {
                lab: self.mine(&g.tags)
                    || text(&cfg["description"]).starts_with(&self.description_prefix()),
                cpus: u32::try_from(num("cores", 1) * num("sockets", 1)).unwrap_or(u32::MAX),
                memory: num("memory", 512) << 20,
                disk: config_disk_bytes(&cfg),
                name: g.name,
            });
        }
        Ok(cloudlet_core::HostUsage {
            name: node,
            cpus: u32::try_from(n["maxcpu"].as_u64().unwrap_or(0)).unwrap_or(u32::MAX),
            memory: n["maxmem"].as_u64().unwrap_or(0),
            datastore: (status["total"].as_u64().is_some()).then(|| {
                cloudlet_core::DatastoreUsage {
                    name: storage,
                    capacity: status["total"].as_u64().unwrap_or(0),
                    free: status["avail"].as_u64().unwrap_or(0),
                }
            }),
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
        let (_, storage) = self.site().await?.clone();
        let mut out = Vec::new();
        if let Some(zone) = &self.options.sdn_zone {
            // Segments are VNets of the zone, cloudlet's by their alias.
            for x in self.vnets(zone).await? {
                let alias = text(&x["alias"]);
                let Some(name) =
                    alias.strip_prefix(&format!("cloudlet lab={} hypervisor/network/", self.lab))
                else {
                    continue;
                };
                let id = ResourceId::new(Domain::Hypervisor, "network", name);
                let w = want.get(&id).copied();
                let wv = w.map(|w| w.body.value()).unwrap_or(Value::Null);
                let body = json!({
                    "portgroup": x["vnet"],
                    "vlan": x["tag"].as_u64(),
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
        }
        // Otherwise segments are the node's bridges: present when the bridge exists.
        let bridges = if self.options.sdn_zone.is_some() {
            Vec::new()
        } else {
            self.bridges().await?
        };
        for w in desired.iter().filter(|r| &*r.id.kind == "network") {
            if w.body.value()["portgroup"]
                .as_str()
                .is_some_and(|b| bridges.iter().any(|x| x == b))
            {
                out.push(w.clone());
            }
        }
        for g in self.guests().await? {
            if g.template {
                continue;
            }
            let id = ResourceId::new(Domain::Hypervisor, "vm", &*g.name);
            let w = want.get(&id).copied();
            // Untagged VMs are read only when the lab names them (a clone whose tags an
            // interrupted apply did not set yet carries cloudlet's description).
            if !self.mine(&g.tags) && (w.is_none() || !self.owned(&g).await?) {
                continue;
            }
            let wv = w.map(|w| w.body.value()).unwrap_or(Value::Null);
            let (cfg, _) = self.config(&g.node, g.vmid).await?;
            let body = self.vm_body(&cfg, &g.status, &storage, &wv);
            let same = body.clone();
            let mut r = Resource::observed(id, w, |w| w.body.value() == same, || body);
            // Destroying a VM destroys its disks.
            r.data = Data::Disposable;
            out.push(r);
        }
        Ok(out)
    }

    async fn create(&self, r: &Resource) -> Result<(), ProviderError> {
        match &*r.id.kind {
            "vm" => self.write_vm(r).await,
            "network" if self.options.sdn_zone.is_some() => {
                let zone = self.options.sdn_zone.clone().unwrap_or_default();
                self.write_vnet(r, &zone).await
            }
            "network" => {
                let b = r.body.value()["portgroup"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if self.bridges().await?.contains(&b) {
                    Ok(())
                } else {
                    Err(invalid(
                        r,
                        format!(
                            "node has no bridge `{b}`: create it in the node's network configuration (cloudlet does not edit it) or set the segment's `portgroup` to an existing bridge"
                        ),
                    ))
                }
            }
            other => Err(invalid(r, format!("Proxmox has no `{other}`"))),
        }
    }

    async fn update(&self, r: &Resource, _changes: &[FieldChange]) -> Result<(), ProviderError> {
        self.create(r).await
    }

    async fn finish(&self, domain: Domain) -> Result<(), ProviderError> {
        if domain == Domain::Hypervisor {
            self.apply_sdn(true).await?;
        }
        Ok(())
    }

    /// SDN writes stay pending until applied: apply what succeeded.
    fn commits_partial_applies(&self) -> bool {
        self.options.sdn_zone.is_some()
    }

    async fn delete(&self, r: &Resource) -> Result<(), ProviderError> {
        match &*r.id.kind {
            "vm" => {
                let _slot = self
                    .ops
                    .acquire()
                    .await
                    .map_err(|e| err(e.to_string(), false))?;
                let Some(g) = self.find(&r.id.name).await? else {
                    return Ok(());
                };
                if !self.owned(&g).await? {
                    return Err(ProviderError::NotOwned { id: r.id.clone() });
                }
                let (vmid, node, status) = (g.vmid, g.node, g.status);
                if status == "running" {
                    let upid = self
                        .api(
                            Method::POST,
                            &format!("/nodes/{node}/qemu/{vmid}/status/stop"),
                            None,
                        )
                        .await?;
                    self.wait(&node, &upid, &format!("stop {}", r.id.name))
                        .await?;
                }
                let upid = self
                    .api(
                        Method::DELETE,
                        &format!("/nodes/{node}/qemu/{vmid}?purge=1&destroy-unreferenced-disks=1"),
                        None,
                    )
                    .await?;
                self.wait(&node, &upid, &format!("destroy {}", r.id.name))
                    .await
            }
            "network" => {
                let Some(zone) = &self.options.sdn_zone else {
                    // The bridge is the node's: leaving the lab does not remove it.
                    return Ok(());
                };
                let alias = self.vnet_alias(&r.id);
                if let Some(x) = self
                    .vnets(zone)
                    .await?
                    .into_iter()
                    .find(|x| text(&x["alias"]) == alias)
                {
                    self.api(
                        Method::DELETE,
                        &format!("/cluster/sdn/vnets/{}", text(&x["vnet"])),
                        None,
                    )
                    .await?;
                    self.sdn_dirty
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(())
            }
            other => Err(invalid(r, format!("Proxmox has no `{other}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxmox_failures_are_typed_once() {
        assert_eq!(
            fault_of(
                Some(500),
                "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout"
            ),
            Fault::Busy
        );
        assert_eq!(
            fault_of(None, "unable to create VM 105: config file already exists"),
            Fault::Conflict
        );
        assert_eq!(fault_of(Some(404), "no such VM"), Fault::NotFound);
        assert_eq!(fault_of(Some(500), "disk full"), Fault::Other);
        let e = api_error("task clone web".into(), None, "failed: got timeout".into());
        assert!(e.retryable());
        assert_eq!(e.to_string(), "Proxmox task clone web: failed: got timeout");
    }

    #[test]
    fn drive_and_nic_strings() {
        let d = options("local-lvm:vm-101-disk-0,iothread=1,size=32G");
        assert_eq!(d[""], "local-lvm:vm-101-disk-0");
        assert_eq!(size_mib(&d["size"]), Some(32 * 1024));
        assert_eq!(size_mib("512M"), Some(512));
        assert_eq!(size_mib("1.5T"), Some(1_572_864));
        let n = options("virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,tag=20");
        assert_eq!(n["virtio"], "BC:24:11:AA:BB:CC");
        assert_eq!(n["tag"], "20");
        assert_eq!(
            pct("UPID:pve1:00001:x:qmcreate:101:root@pam!t:"),
            "UPID%3Apve1%3A00001%3Ax%3Aqmcreate%3A101%3Aroot%40pam%21t%3A"
        );
    }
}
