//! The `router_linux` backend's client: everything but its description (the `client` feature).

use cloudlet_core::error::chain;
use cloudlet_transport::exec::ExecError;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cloudlet_core::error::ProviderError;
use cloudlet_core::model::Lab;
use cloudlet_core::plan::FieldChange;
use cloudlet_core::{Domain, Provider, Resource, ResourceId};
use cloudlet_transport::exec::Host;

use crate::linux_files::{LinuxOptions, boot_server_line, dnsmasq_base, nftables, s};

use cloudlet_core::backend::{BoxFuture, ConnectError, Connection};
use cloudlet_core::{ConfigFile, Imported};

pub(super) fn connect<'a>(
    c: &'a Connection<'a>,
) -> BoxFuture<'a, Result<Arc<dyn Provider>, ConnectError>> {
    Box::pin(async move {
        Ok(Arc::new(LinuxRouter::new(
            Arc::new(c.lab.clone()),
            LinuxRouterOptions {
                dir: c.dir_or("/etc/cloudlet"),
                host: Host::default(),
                render: LinuxOptions {
                    lease_file: c
                        .setting("leases")
                        .unwrap_or_else(|| LinuxOptions::default().lease_file),
                    ..LinuxOptions::default()
                },
            },
        )) as Arc<dyn Provider>)
    })
}

const MARKER: &str = "# cloudlet:resource ";

/// The files that record cloudlet's entries.
const ENTRY_FILES: [&str; 3] = ["dhcp-hosts", "hosts", "rules.nft"];

/// The files a configuration backup holds besides the leases.
const BACKED_UP: [&str; 4] = ["dnsmasq.conf", "dhcp-hosts", "hosts", "rules.nft"];

/// The name the DHCP leases have in a configuration backup.
const LEASES: &str = "leases";

/// The largest lease file an import takes (dnsmasq's lines are under 200 bytes: this is
/// tens of thousands of leases).
const MAX_LEASES: usize = 8 << 20;

/// Where and how the router runs.
#[derive(Debug, Clone)]
pub struct LinuxRouterOptions {
    /// cloudlet's directory on the router (`/etc/cloudlet`).
    pub dir: PathBuf,
    /// Where the router is: this machine (with a command prefix such as
    /// `ip netns exec NS` for a router in a network namespace), or another over SSH.
    pub host: Host,
    /// dnsmasq settings that are not part of the lab (port, lease file).
    pub render: LinuxOptions,
}

/// The live Linux router provider.
pub struct LinuxRouter {
    lab: Arc<Lab>,
    options: LinuxRouterOptions,
    /// The router's entries as observed, then as the apply's steps leave them.
    pending: Mutex<Option<BTreeMap<ResourceId, Resource>>>,
    changed: Mutex<bool>,
}

impl std::fmt::Debug for LinuxRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxRouter")
            .field("dir", &self.options.dir)
            .field("host", &self.options.host)
            .finish_non_exhaustive()
    }
}

fn err(message: String) -> ProviderError {
    ProviderError::Backend {
        message,
        retryable: false,
    }
}

/// What the router runs from its files.
struct Files {
    conf: String,
    hosts_dhcp: String,
    hosts_dns: String,
    rules: String,
}

impl LinuxRouter {
    /// A router for `lab`.
    pub fn new(lab: Arc<Lab>, options: LinuxRouterOptions) -> Self {
        LinuxRouter {
            lab,
            options,
            pending: Mutex::new(None),
            changed: Mutex::new(false),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.options.dir.join(name)
    }

    /// Runs a command on the router; its output, or what it said on failure.
    async fn run(&self, args: &[&str]) -> Result<String, ExecError> {
        self.options.host.run(args).await
    }

    async fn read(&self, name: &str) -> Result<Option<String>, ProviderError> {
        self.options
            .host
            .read(&self.path(name))
            .await
            .map_err(|e| ProviderError::command("the router", e))
    }

    fn render(&self, entries: &BTreeMap<ResourceId, Resource>) -> Files {
        let dir = &self.options.dir;
        let mut conf = dnsmasq_base(&self.lab, &self.options.render);
        conf.push_str(&format!(
            "dhcp-hostsfile={}\naddn-hosts={}\n",
            dir.join("dhcp-hosts").display(),
            dir.join("hosts").display()
        ));
        let (mut hosts_dhcp, mut hosts_dns, mut recorded) =
            (String::new(), String::new(), String::new());
        let mut nft_entries = Vec::new();
        for r in entries.values() {
            let line = format!("{MARKER}{}\n", serde_json::to_string(r).unwrap_or_default());
            let b = r.body.value();
            match &*r.id.kind {
                "dhcp-reservation" => {
                    hosts_dhcp.push_str(&line);
                    hosts_dhcp.push_str(&format!(
                        "{},{},{}\n",
                        s(&b, "mac"),
                        s(&b, "ip"),
                        s(&b, "hostname")
                    ));
                }
                "dns-override" => {
                    hosts_dns.push_str(&line);
                    hosts_dns.push_str(&format!("{} {}\n", s(&b, "address"), s(&b, "host")));
                }
                "boot-server" => {
                    // In the base configuration (a change restarts dnsmasq); recorded with
                    // the table's entries.
                    conf.push_str(&boot_server_line(&b));
                    recorded.push_str(&line);
                }
                _ => {
                    recorded.push_str(&line);
                    nft_entries.push(r.clone());
                }
            }
        }
        let mut rules = nftables(&self.lab, &nft_entries);
        rules.push_str(&recorded);
        Files {
            conf,
            hosts_dhcp,
            hosts_dns,
            rules,
        }
    }

    async fn observe_files(&self) -> Result<BTreeMap<ResourceId, Resource>, ProviderError> {
        let mut out = BTreeMap::new();
        for name in ENTRY_FILES {
            if let Some(text) = self.read(name).await? {
                self.entries_of(name, &text, &mut out)?;
            }
        }
        Ok(out)
    }

    /// The router entries recorded in `text`, one of [`ENTRY_FILES`], into `out`.
    fn entries_of(
        &self,
        name: &str,
        text: &str,
        out: &mut BTreeMap<ResourceId, Resource>,
    ) -> Result<(), ProviderError> {
        for (i, line) in text.lines().enumerate() {
            let Some(json) = line.strip_prefix(MARKER) else {
                continue;
            };
            let r: Resource =
                serde_json::from_str(json).map_err(|e| ProviderError::InvalidData {
                    what: format!("{}:{}", self.path(name).display(), i + 1),
                    message: e.to_string(),
                })?;
            if r.id.domain == Domain::Router {
                out.insert(r.id.clone(), r);
            }
        }
        Ok(())
    }

    /// The pid of the running dnsmasq this backend started, if it runs.
    pub async fn dnsmasq_pid(&self) -> Option<String> {
        let pid = self.read("dnsmasq.pid").await.ok()??.trim().to_string();
        if pid.is_empty() || self.run(&["kill", "-0", &pid]).await.is_err() {
            return None;
        }
        Some(pid)
    }

    async fn start_dnsmasq(&self) -> Result<(), ExecError> {
        let conf = format!("--conf-file={}", self.path("dnsmasq.conf").display());
        let pid = format!("--pid-file={}", self.path("dnsmasq.pid").display());
        self.run(&["dnsmasq", &conf, &pid]).await.map(|_| ())
    }

    /// Stops the dnsmasq this backend started.
    pub async fn stop_dnsmasq(&self) {
        if let Some(pid) = self.dnsmasq_pid().await {
            let _ = self.run(&["kill", &pid]).await;
            for _ in 0..50 {
                if self.run(&["kill", "-0", &pid]).await.is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }

    /// Loads the live files into dnsmasq and nftables.
    async fn reload(&self, restart: bool) -> Result<(), ProviderError> {
        let failed = |e| ProviderError::command("reloading the router", e);
        let rules = self.path("rules.nft").display().to_string();
        self.run(&["nft", "-f", &rules]).await.map_err(failed)?;
        match self.dnsmasq_pid().await {
            Some(pid) if !restart => {
                self.run(&["kill", "-HUP", &pid]).await.map_err(failed)?;
            }
            _ => {
                self.stop_dnsmasq().await;
                self.start_dnsmasq().await.map_err(failed)?;
            }
        }
        // Does the router still answer? dnsmasq runs and cloudlet's table is there.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if self.dnsmasq_pid().await.is_none() {
            return Err(err("dnsmasq is not running after the reload".into()));
        }
        self.run(&["nft", "list", "table", "inet", "cloudlet"])
            .await
            .map(|_| ())
            .map_err(failed)
    }

    async fn commit(&self, entries: &BTreeMap<ResourceId, Resource>) -> Result<(), ProviderError> {
        let files = self.render(entries);
        let host = &self.options.host;
        let named = [
            ("dnsmasq.conf", &files.conf),
            ("dhcp-hosts", &files.hosts_dhcp),
            ("hosts", &files.hosts_dns),
            ("rules.nft", &files.rules),
        ];
        for (name, text) in named {
            host.write(&self.path(&format!("{name}.new")), text)
                .await
                .map_err(|e| ProviderError::command("the router", e))?;
        }
        // The tools check the candidates before anything live changes.
        let conf_new = format!("--conf-file={}", self.path("dnsmasq.conf.new").display());
        self.run(&["dnsmasq", "--test", &conf_new])
            .await
            .map_err(|e| {
                ProviderError::command(
                    "the new dnsmasq configuration is invalid; nothing changed",
                    e,
                )
            })?;
        let rules_new = self.path("rules.nft.new").display().to_string();
        self.run(&["nft", "-c", "-f", &rules_new])
            .await
            .map_err(|e| {
                ProviderError::command("the new nftables ruleset is invalid; nothing changed", e)
            })?;
        let restart = self.read("dnsmasq.conf").await?.as_deref() != Some(files.conf.as_str());
        let had_live = self.read("rules.nft").await?.is_some();
        for (name, _) in named {
            let live = self.path(name);
            host.copy(&live, &self.path(&format!("{name}.prev")))
                .await
                .map_err(|e| ProviderError::command("the router", e))?;
            host.rename(&self.path(&format!("{name}.new")), &live)
                .await
                .map_err(|e| ProviderError::command(format!("installing {name}"), e))?;
        }
        if let Err(e) = self.reload(restart).await {
            if !had_live {
                return Err(ProviderError::Command {
                    context: "the router did not come up with the new configuration".into(),
                    source: Box::new(e),
                });
            }
            for (name, _) in named {
                let _ = host
                    .rename(&self.path(&format!("{name}.prev")), &self.path(name))
                    .await;
            }
            let back = self.reload(true).await;
            return Err(err(format!(
                "the router did not answer after the change ({}); the previous configuration was put back{}",
                chain(&e),
                match back {
                    Ok(()) => " and is serving".to_string(),
                    Err(e2) => format!(", but reloading it failed too: {}", chain(&e2)),
                }
            )));
        }
        Ok(())
    }

    /// Applies `f` to the pending entries (read from the files first if need be).
    async fn with_pending<T>(
        &self,
        change: bool,
        f: impl FnOnce(&mut BTreeMap<ResourceId, Resource>) -> T,
    ) -> Result<T, ProviderError> {
        let loaded = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if !loaded {
            let found = self.observe_files().await?;
            let mut g = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if g.is_none() {
                *g = Some(found);
            }
        }
        let mut g = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if change {
            *self.changed.lock().unwrap_or_else(|p| p.into_inner()) = true;
        }
        Ok(f(g.get_or_insert_with(BTreeMap::new)))
    }
}

#[async_trait]
impl Provider for LinuxRouter {
    fn name(&self) -> &str {
        "linux-router"
    }

    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        if domain != Domain::Router {
            return Ok(Vec::new());
        }
        let found = self.observe_files().await?;
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(found.clone());
        Ok(found.into_values().collect())
    }

    async fn create(&self, r: &Resource) -> Result<(), ProviderError> {
        self.with_pending(true, |p| {
            p.insert(r.id.clone(), r.clone());
        })
        .await
    }

    async fn update(&self, r: &Resource, _changes: &[FieldChange]) -> Result<(), ProviderError> {
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), ProviderError> {
        self.with_pending(true, |p| {
            p.remove(&r.id);
        })
        .await
    }

    async fn finish(&self, domain: Domain) -> Result<(), ProviderError> {
        if domain != Domain::Router {
            return Ok(());
        }
        let changed = std::mem::take(&mut *self.changed.lock().unwrap_or_else(|p| p.into_inner()));
        // An apply with router steps commits them; one without still brings up a router
        // that is not running (after a reboot, say).
        let entries = self.with_pending(false, |p| p.clone()).await?;
        if changed || self.dnsmasq_pid().await.is_none() {
            self.commit(&entries).await?;
        }
        Ok(())
    }

    /// cloudlet's four files and dnsmasq's leases (the router's runtime state: the
    /// addresses it handed out beyond the reservations).
    async fn export_config(&self) -> Result<Vec<ConfigFile>, ProviderError> {
        let mut out = Vec::new();
        for name in BACKED_UP {
            if let Some(text) = self.read(name).await? {
                out.push(ConfigFile {
                    name: name.to_string(),
                    bytes: text.into_bytes(),
                });
            }
        }
        if out.is_empty() {
            return Err(err(format!(
                "the router has no configuration in {}: apply the lab first",
                self.options.dir.display()
            )));
        }
        let leases = std::path::Path::new(&self.options.render.lease_file);
        if let Some(text) = self
            .options
            .host
            .read(leases)
            .await
            .map_err(|e| ProviderError::command("reading the DHCP leases", e))?
        {
            out.push(ConfigFile {
                name: LEASES.to_string(),
                bytes: text.into_bytes(),
            });
        }
        Ok(out)
    }

    /// dnsmasq stopped, its leases put back, then the entries the files record committed as
    /// an apply commits them: rendered, checked by dnsmasq and nft, moved in, started and
    /// seen running.
    async fn import_config(&self, files: &[ConfigFile]) -> Result<Imported, ProviderError> {
        let text = |f: &ConfigFile| {
            String::from_utf8(f.bytes.clone()).map_err(|_| ProviderError::InvalidData {
                what: format!("the backed-up {}", f.name),
                message: "not UTF-8 text".into(),
            })
        };
        let mut entries = BTreeMap::new();
        let mut leases = None;
        for f in files {
            if ENTRY_FILES.contains(&f.name.as_str()) {
                self.entries_of(&f.name, &text(f)?, &mut entries)?;
            } else if f.name == LEASES {
                if f.bytes.len() > MAX_LEASES {
                    return Err(ProviderError::InvalidData {
                        what: "the backed-up DHCP leases".into(),
                        message: format!("larger than {MAX_LEASES} bytes"),
                    });
                }
                leases = Some(text(f)?);
            }
        }
        if !files.iter().any(|f| BACKED_UP.contains(&f.name.as_str())) {
            return Err(ProviderError::InvalidData {
                what: "the router's backup".into(),
                message: format!("none of {} in it", BACKED_UP.join(", ")),
            });
        }
        // dnsmasq reads its leases when it starts and writes them as they change: it must
        // not run while they are put back.
        self.stop_dnsmasq().await;
        let n_leases = leases.as_ref().map_or(0, |l| l.lines().count());
        if let Some(l) = &leases {
            self.options
                .host
                .write(std::path::Path::new(&self.options.render.lease_file), l)
                .await
                .map_err(|e| ProviderError::command("restoring the DHCP leases", e))?;
        }
        self.commit(&entries).await?;
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(entries.clone());
        Ok(Imported::Live {
            detail: format!(
                "{} entries and {n_leases} DHCP lease(s); dnsmasq and the nftables table running",
                entries.len()
            ),
        })
    }
}
