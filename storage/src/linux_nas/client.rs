//! The `linux_nas` backend's client: everything but its description (the `client` feature).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use cloudlet_core::error::ProviderError;
use cloudlet_core::plan::FieldChange;
use cloudlet_core::{Data, Domain, Provider, Resource, ResourceId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{DATASET, NFS_EXPORT, REPLICATION, SNAPSHOT_TASK};

use cloudlet_core::backend::{BoxFuture, ConnectError, Connection};

/// The NAS a `ganesha` or `linux_nfs` target names.
pub fn open(c: &Connection<'_>, flavor: Flavor) -> LinuxNas {
    let mut options = LinuxNasOptions::new(flavor, c.target.dir.as_deref());
    if let Some(pid) = c.setting("pid_file") {
        options.pid_file = PathBuf::from(pid);
    }
    LinuxNas::new(options)
}

pub(super) fn connect_ganesha<'a>(
    c: &'a Connection<'a>,
) -> BoxFuture<'a, Result<std::sync::Arc<dyn Provider>, ConnectError>> {
    Box::pin(async move {
        Ok(std::sync::Arc::new(open(c, Flavor::Ganesha)) as std::sync::Arc<dyn Provider>)
    })
}

pub(super) fn connect_kernel<'a>(
    c: &'a Connection<'a>,
) -> BoxFuture<'a, Result<std::sync::Arc<dyn Provider>, ConnectError>> {
    Box::pin(async move {
        Ok(std::sync::Arc::new(open(c, Flavor::Kernel)) as std::sync::Arc<dyn Provider>)
    })
}

const MARKER: &str = "# cloudlet:resource ";
/// Ganesha export ids cloudlet hands out start here (0 is the pseudo root; low ids are
/// usually the administrator's).
const FIRST_EXPORT_ID: u32 = 100;

/// Which NFS server serves the exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// nfs-ganesha (userspace NFSv4).
    Ganesha,
    /// The kernel NFS server (`exportfs`).
    Kernel,
}

/// Where and how the NAS runs.
#[derive(Debug, Clone)]
pub struct LinuxNasOptions {
    /// The NFS server.
    pub flavor: Flavor,
    /// cloudlet's exports file: ganesha EXPORT blocks that the main configuration
    /// `%include`s (`/etc/ganesha/cloudlet.conf`), or `/etc/exports.d/cloudlet.exports`.
    pub config: PathBuf,
    /// Ganesha's pid file (`/run/ganesha/ganesha.pid`), for the reload signal.
    pub pid_file: PathBuf,
    /// A command prefix every command runs under: empty on the NAS itself,
    /// `["ip", "netns", "exec", "NS"]` for a server in a network namespace.
    pub exec: Vec<String>,
}

impl LinuxNasOptions {
    /// The usual places for `flavor`, or cloudlet's files in `dir` when given.
    pub fn new(flavor: Flavor, dir: Option<&Path>) -> Self {
        let config = match (flavor, dir) {
            (Flavor::Ganesha, d) => d.unwrap_or(Path::new("/etc/ganesha")).join("cloudlet.conf"),
            (Flavor::Kernel, d) => d
                .unwrap_or(Path::new("/etc/exports.d"))
                .join("cloudlet.exports"),
        };
        LinuxNasOptions {
            flavor,
            config,
            pid_file: PathBuf::from("/run/ganesha/ganesha.pid"),
            exec: Vec::new(),
        }
    }
}

/// One entry of cloudlet's file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    resource: Resource,
    /// Ganesha's Export_Id, stable for the life of the export (clients' file handles carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    export_id: Option<u32>,
}

/// The Linux NAS provider.
pub struct LinuxNas {
    options: LinuxNasOptions,
    /// The file's entries as observed, then as this apply's steps leave them.
    pending: Mutex<Option<BTreeMap<ResourceId, Entry>>>,
    changed: Mutex<bool>,
}

impl std::fmt::Debug for LinuxNas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxNas")
            .field("flavor", &self.options.flavor)
            .field("config", &self.options.config)
            .finish_non_exhaustive()
    }
}

fn err(message: impl Into<String>) -> ProviderError {
    ProviderError::Backend {
        message: message.into(),
        retryable: false,
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ProviderError {
    let path = path.to_path_buf();
    move |source| ProviderError::Io { op, path, source }
}

fn invalid(r: &Resource, message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidData {
        what: r.id.to_string(),
        message: message.into(),
    }
}

/// A path from a body: absolute, no `..`, nothing that breaks the configuration syntax
/// (validation refuses these already; a hand-edited record must not get further).
fn body_path(r: &Resource, v: &Value, key: &str) -> Result<PathBuf, ProviderError> {
    let p = v[key]
        .as_str()
        .ok_or_else(|| invalid(r, format!("`{key}` is missing")))?;
    let ok = p.starts_with('/')
        && p.len() > 1
        && !p.split('/').any(|s| s == ".." || s == ".")
        && !p
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\' | '{' | '}' | ';' | '#'));
    if !ok {
        return Err(invalid(r, format!("`{p}` is not a path cloudlet writes")));
    }
    Ok(PathBuf::from(p))
}

impl LinuxNas {
    /// A NAS provider.
    pub fn new(options: LinuxNasOptions) -> Self {
        LinuxNas {
            options,
            pending: Mutex::new(None),
            changed: Mutex::new(false),
        }
    }

    /// Runs a command on the NAS; its output, or what it said on failure.
    async fn run(&self, args: &[&str]) -> Result<String, String> {
        cloudlet_transport::exec::run(&self.options.exec, args)
            .await
            .map_err(|e| cloudlet_transport::chain(&e))
    }

    /// The entries recorded in cloudlet's file.
    fn read_entries(&self) -> Result<BTreeMap<ResourceId, Entry>, ProviderError> {
        let text = match std::fs::read_to_string(&self.options.config) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(io("read", &self.options.config)(e)),
        };
        let mut out = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let Some(json) = line.strip_prefix(MARKER) else {
                continue;
            };
            let e: Entry = serde_json::from_str(json).map_err(|e| ProviderError::InvalidData {
                what: format!("{}:{}", self.options.config.display(), n + 1),
                message: format!("cloudlet's record is damaged: {e}"),
            })?;
            out.insert(e.resource.id.clone(), e);
        }
        Ok(out)
    }

    /// A recorded directory as it is on disk: gone (`None`) or with its real owner and mode
    /// in place of the recorded ones.
    fn observe_dir(e: &Entry) -> Option<Resource> {
        let r = &e.resource;
        let mut v = r.body.value();
        let meta = std::fs::metadata(v["path"].as_str()?).ok()?;
        if !meta.is_dir() {
            return None;
        }
        if v.get("owner").is_some() {
            v["owner"] = json!({"uid": meta.uid(), "gid": meta.gid()});
        }
        if v.get("mode").is_some() {
            v["mode"] = json!(format!("{:04o}", meta.permissions().mode() & 0o7777));
        }
        let mut out = Resource::new(r.id.clone(), v).holding(r.data);
        out.depends_on = r.depends_on.clone();
        Some(out)
    }

    fn with_pending<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<ResourceId, Entry>) -> T,
    ) -> Result<T, ProviderError> {
        let mut g = self
            .pending
            .lock()
            .map_err(|_| err("state lock poisoned"))?;
        if g.is_none() {
            *g = Some(self.read_entries()?);
        }
        let out = f(g.as_mut().unwrap_or_else(|| unreachable!()));
        if let Ok(mut c) = self.changed.lock() {
            *c = true;
        }
        Ok(out)
    }

    fn record(&self, r: &Resource) -> Result<(), ProviderError> {
        self.with_pending(|m| {
            let export_id = m.get(&r.id).and_then(|e| e.export_id);
            m.insert(
                r.id.clone(),
                Entry {
                    resource: r.clone(),
                    export_id,
                },
            );
        })
    }

    /// Makes or updates a directory: created with its parents, owner and mode as the body says.
    fn make_dir(r: &Resource) -> Result<(), ProviderError> {
        let v = r.body.value();
        let path = body_path(r, &v, "path")?;
        std::fs::create_dir_all(&path).map_err(io("create", &path))?;
        if let Some(o) = v.get("owner") {
            let uid = o["uid"].as_u64().and_then(|x| u32::try_from(x).ok());
            let gid = o["gid"].as_u64().and_then(|x| u32::try_from(x).ok());
            std::os::unix::fs::chown(&path, uid, gid).map_err(io("chown", &path))?;
        }
        if let Some(m) = v["mode"].as_str() {
            let bits = u32::from_str_radix(m, 8).map_err(|_| invalid(r, format!("mode `{m}`")))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits))
                .map_err(io("chmod", &path))?;
        }
        Ok(())
    }

    /// The file's text for `entries`: records, and the exports in the server's syntax.
    fn render(&self, entries: &mut BTreeMap<ResourceId, Entry>) -> Result<String, ProviderError> {
        let mut used: Vec<u32> = entries.values().filter_map(|e| e.export_id).collect();
        let mut out = String::from(
            "# Written by cloudlet: every entry is preceded by the resource it came from.\n# Edits here are overwritten; change the lab instead.\n",
        );
        for e in entries.values_mut() {
            let line = serde_json::to_string(&*e).map_err(|x| err(x.to_string()))?;
            let r = &e.resource;
            if &*r.id.kind != NFS_EXPORT {
                out.push_str(MARKER);
                out.push_str(&line);
                out.push('\n');
                continue;
            }
            let v = r.body.value();
            let path = body_path(r, &v, "path")?;
            let path = path.display().to_string();
            let clients: Vec<String> = v["clients"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str())
                .filter(|c| c.parse::<cloudlet_core::types::Cidr>().is_ok())
                .map(str::to_string)
                .collect();
            let ro = v["read_only"].as_bool().unwrap_or(false);
            let squash = v["squash"].as_str().unwrap_or("root");
            let block = match self.options.flavor {
                Flavor::Ganesha => {
                    let id = match e.export_id {
                        Some(id) => id,
                        None => {
                            let id = (FIRST_EXPORT_ID..)
                                .find(|i| !used.contains(i))
                                .unwrap_or(FIRST_EXPORT_ID);
                            used.push(id);
                            e.export_id = Some(id);
                            id
                        }
                    };
                    let squash = match squash {
                        "none" => "No_Root_Squash",
                        "all" => "All_Squash",
                        _ => "Root_Squash",
                    };
                    let client = if clients.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "  CLIENT {{ Clients = {}; Access_Type = {}; }}\n",
                            clients.join(", "),
                            if ro { "RO" } else { "RW" }
                        )
                    };
                    format!(
                        "EXPORT {{\n  Export_Id = {id};\n  Path = \"{path}\";\n  Pseudo = \"{path}\";\n  Protocols = 4;\n  Transports = TCP;\n  SecType = sys;\n  Squash = {squash};\n  Access_Type = None;\n  FSAL {{ Name = VFS; }}\n{client}}}\n"
                    )
                }
                Flavor::Kernel => {
                    let squash = match squash {
                        "none" => "no_root_squash",
                        "all" => "all_squash",
                        _ => "root_squash",
                    };
                    let opts = format!(
                        "({},sync,no_subtree_check,{squash},sec=sys)",
                        if ro { "ro" } else { "rw" }
                    );
                    if clients.is_empty() {
                        // An export for nobody is no export: the record stays, no line.
                        String::new()
                    } else {
                        let hosts: Vec<String> =
                            clients.iter().map(|c| format!("{c}{opts}")).collect();
                        format!("\"{path}\" {}\n", hosts.join(" "))
                    }
                }
            };
            // The record is written after the id is settled.
            let line = serde_json::to_string(&*e).map_err(|x| err(x.to_string()))?;
            out.push_str(MARKER);
            out.push_str(&line);
            out.push('\n');
            out.push_str(&block);
        }
        Ok(out)
    }

    fn ganesha_pid(&self) -> Result<String, String> {
        let pid = std::fs::read_to_string(&self.options.pid_file)
            .map_err(|e| {
                format!(
                    "nfs-ganesha is not running (pid file {}: {e}); start it with its main configuration including `%include \"{}\"`",
                    self.options.pid_file.display(),
                    self.options.config.display()
                )
            })?
            .trim()
            .to_string();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{} does not hold a pid",
                self.options.pid_file.display()
            ));
        }
        Ok(pid)
    }

    /// Makes the server serve the file as it is now, and checks that it still runs.
    async fn reload(&self) -> Result<(), String> {
        match self.options.flavor {
            Flavor::Ganesha => {
                let pid = self.ganesha_pid()?;
                self.run(&["kill", "-HUP", &pid]).await?;
                // Ganesha re-reads its exports on the signal; a configuration it cannot parse
                // leaves it running the old set, a fatal one stops it.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                self.run(&["kill", "-0", &pid])
                    .await
                    .map_err(|_| format!("nfs-ganesha (pid {pid}) stopped after the reload"))?;
                Ok(())
            }
            Flavor::Kernel => {
                self.run(&["exportfs", "-ra"]).await?;
                Ok(())
            }
        }
    }

    /// For the kernel server: the paths `exportfs -v` lists.
    async fn kernel_exports(&self) -> Result<Vec<String>, String> {
        let out = self.run(&["exportfs", "-v"]).await?;
        Ok(out
            .lines()
            .filter(|l| l.starts_with('/') || l.starts_with('"'))
            .filter_map(|l| l.split_whitespace().next())
            .map(|p| p.trim_matches('"').to_string())
            .collect())
    }

    async fn verify(&self, entries: &BTreeMap<ResourceId, Entry>) -> Result<(), String> {
        if self.options.flavor != Flavor::Kernel {
            return Ok(());
        }
        let live = self.kernel_exports().await?;
        for e in entries.values() {
            let v = e.resource.body.value();
            let served = v["clients"].as_array().is_some_and(|c| !c.is_empty());
            if &*e.resource.id.kind == NFS_EXPORT && served {
                let p = v["path"].as_str().unwrap_or_default();
                if !live.iter().any(|l| l == p) {
                    return Err(format!("exportfs does not list {p} after the reload"));
                }
            }
        }
        Ok(())
    }

    async fn commit(&self, mut entries: BTreeMap<ResourceId, Entry>) -> Result<(), ProviderError> {
        let text = self.render(&mut entries)?;
        let path = &self.options.config;
        let current = std::fs::read_to_string(path).ok();
        if current.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
        let prev = path.with_extension("prev");
        if let Some(c) = &current {
            std::fs::write(&prev, c).map_err(io("write", &prev))?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &text).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("rename", path))?;
        let outcome = match self.reload().await {
            Ok(()) => self.verify(&entries).await,
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            // Put the previous file back and serve it again.
            match &current {
                Some(c) => std::fs::write(path, c).map_err(io("write", path))?,
                None => std::fs::remove_file(path).map_err(io("remove", path))?,
            }
            let back = self.reload().await.err();
            return Err(err(format!(
                "the NFS server did not take the new exports ({e}); the previous exports file was restored{}",
                back.map(|b| format!(", but reloading it failed too: {b}"))
                    .unwrap_or_default()
            )));
        }
        Ok(())
    }
}

impl LinuxNas {
    /// The lab's directories with their exports and usage (`du`); a Linux NAS takes no
    /// snapshots.
    pub async fn status(&self) -> Result<Vec<crate::VolumeStatus>, ProviderError> {
        let entries = self.read_entries()?;
        let mut out = Vec::new();
        for e in entries.values().filter(|e| &*e.resource.id.kind == DATASET) {
            let v = e.resource.body.value();
            let path = v["path"].as_str().unwrap_or_default().to_string();
            let exported_to = entries
                .values()
                .filter(|x| &*x.resource.id.kind == NFS_EXPORT)
                .map(|x| x.resource.body.value())
                .find(|x| x["path"] == path.as_str())
                .map(|x| {
                    x["clients"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let used_bytes = self
                .run(&["du", "-sb", &path])
                .await
                .ok()
                .and_then(|o| o.split_whitespace().next().and_then(|n| n.parse().ok()));
            out.push(crate::VolumeStatus {
                name: e.resource.id.name.to_string(),
                path,
                exported_to,
                used_bytes,
                latest_snapshot: None,
                latest_snapshot_at: None,
                retain: e.resource.data != Data::Disposable,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Provider for LinuxNas {
    fn name(&self) -> &str {
        match self.options.flavor {
            Flavor::Ganesha => "ganesha",
            Flavor::Kernel => "linux-nfs",
        }
    }

    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        if domain != Domain::Storage {
            return Ok(Vec::new());
        }
        let entries = self.read_entries()?;
        let out = entries
            .values()
            .filter_map(|e| {
                if &*e.resource.id.kind == DATASET {
                    Self::observe_dir(e)
                } else {
                    Some(e.resource.clone())
                }
            })
            .collect();
        if let Ok(mut g) = self.pending.lock() {
            *g = Some(entries);
        }
        Ok(out)
    }

    async fn create(&self, r: &Resource) -> Result<(), ProviderError> {
        match &*r.id.kind {
            DATASET => Self::make_dir(r)?,
            NFS_EXPORT => {
                body_path(r, &r.body.value(), "path")?;
            }
            SNAPSHOT_TASK | REPLICATION => {
                return Err(invalid(
                    r,
                    "a Linux NAS takes no snapshots (no ZFS); the lab should not ask it to",
                ));
            }
            other => return Err(invalid(r, format!("unknown storage kind `{other}`"))),
        }
        self.record(r)
    }

    async fn update(&self, r: &Resource, _changes: &[FieldChange]) -> Result<(), ProviderError> {
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), ProviderError> {
        if &*r.id.kind == DATASET {
            match r.data {
                // The plan never deletes retained data; a stray call must not either.
                Data::Retain | Data::None => {
                    return Err(invalid(r, "holds data the lab retains; not deleted"));
                }
                Data::Disposable => {
                    let path = body_path(r, &r.body.value(), "path")?;
                    match std::fs::remove_dir_all(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io("remove", &path)(e)),
                    }
                }
            }
        }
        self.with_pending(|m| {
            m.remove(&r.id);
        })
    }

    async fn finish(&self, domain: Domain) -> Result<(), ProviderError> {
        if domain != Domain::Storage {
            return Ok(());
        }
        let changed = self
            .changed
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or(false);
        if !changed {
            return Ok(());
        }
        let entries = self
            .pending
            .lock()
            .map_err(|_| err("state lock poisoned"))?
            .take()
            .unwrap_or_default();
        self.commit(entries).await
    }
}
