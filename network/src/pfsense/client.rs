//! The `pfsense` backend's client: everything but its description (the `client` feature).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use cloudlet_core::error::ProviderError;
use cloudlet_core::plan::FieldChange;
use cloudlet_core::{ConfigFile, Domain, Imported, Provider, Resource, ResourceId};
use cloudlet_transport::http::Method;
use serde_json::{Value, json};

use cloudlet_transport::http::{Http, HttpError};

use cloudlet_core::backend::{BoxFuture, ConnectError, Connection};

pub(super) fn connect<'a>(
    c: &'a Connection<'a>,
) -> BoxFuture<'a, Result<std::sync::Arc<dyn Provider>, ConnectError>> {
    Box::pin(async move {
        let p = PfSense::new(
            c.lab.name.clone(),
            PfSenseOptions {
                endpoint: c.endpoint()?,
                api_key: c.credentials()?,
                gui: c
                    .gui_credentials()?
                    .map(|t| {
                        t.trim()
                            .split_once(':')
                            .filter(|(u, p)| !u.is_empty() && !p.is_empty())
                            .map(|(u, p)| (u.to_string(), p.to_string()))
                            .ok_or(ConnectError::CredentialForm {
                                backend: "pfSense",
                                expected: "`gui_credentials` holding USER:PASSWORD",
                            })
                    })
                    .transpose()?,
                ca: c.ca(),
                take_over: c.take_over,
                apply_timeout: std::time::Duration::from_secs(120),
            },
        )
        .map_err(|e| ConnectError::Client {
            backend: "pfSense",
            source: Box::new(e),
        })?;
        Ok(std::sync::Arc::new(p) as std::sync::Arc<dyn Provider>)
    })
}

/// The oldest pfrest this provider speaks.
pub const MIN_PFREST: (u32, u32) = (2, 0);

/// The pending-change groups pfSense applies separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subsystem {
    /// Filter rules, NAT and aliases.
    Firewall,
    /// Unbound (host overrides).
    DnsResolver,
    /// The DHCP server (static mappings).
    DhcpServer,
}

impl Subsystem {
    fn name(self) -> &'static str {
        match self {
            Subsystem::Firewall => "firewall",
            Subsystem::DnsResolver => "dns_resolver",
            Subsystem::DhcpServer => "dhcp_server",
        }
    }

    fn apply_path(self) -> &'static str {
        match self {
            Subsystem::Firewall => "/api/v2/firewall/apply",
            Subsystem::DnsResolver => "/api/v2/services/dns_resolver/apply",
            Subsystem::DhcpServer => "/api/v2/services/dhcp_server/apply",
        }
    }

    const ALL: [Subsystem; 3] = [
        Subsystem::Firewall,
        Subsystem::DnsResolver,
        Subsystem::DhcpServer,
    ];
}

/// One pfrest collection.
struct Coll {
    kind: &'static str,
    list: &'static str,
    one: &'static str,
    subsystem: Subsystem,
}

const COLLS: [Coll; 5] = [
    Coll {
        kind: "dhcp-reservation",
        list: "/api/v2/services/dhcp_server/static_mappings",
        one: "/api/v2/services/dhcp_server/static_mapping",
        subsystem: Subsystem::DhcpServer,
    },
    Coll {
        kind: "dns-override",
        list: "/api/v2/services/dns_resolver/host_overrides",
        one: "/api/v2/services/dns_resolver/host_override",
        subsystem: Subsystem::DnsResolver,
    },
    Coll {
        kind: "alias",
        list: "/api/v2/firewall/aliases",
        one: "/api/v2/firewall/alias",
        subsystem: Subsystem::Firewall,
    },
    Coll {
        kind: "port-forward",
        list: "/api/v2/firewall/nat/port_forwards",
        one: "/api/v2/firewall/nat/port_forward",
        subsystem: Subsystem::Firewall,
    },
    Coll {
        kind: "firewall-rule",
        list: "/api/v2/firewall/rules",
        one: "/api/v2/firewall/rule",
        subsystem: Subsystem::Firewall,
    },
];

/// Kind of the synthetic resource that stands for changes left pending on the router.
pub const UNCOMMITTED: &str = "uncommitted";

fn coll(kind: &str) -> Option<&'static Coll> {
    COLLS.iter().find(|c| c.kind == kind)
}

/// How to reach pfSense.
#[derive(Clone)]
pub struct PfSenseOptions {
    /// `https://ROUTER[:PORT]`.
    pub endpoint: String,
    /// A pfrest API key.
    pub api_key: String,
    /// The web interface's user and password, for its `config.xml` (`backup.router`): pfrest
    /// cannot hand it out.
    pub gui: Option<(String, String)>,
    /// A CA file for a self-signed router certificate.
    pub ca: Option<std::path::PathBuf>,
    /// Adopt entries without cloudlet's marker that have a lab entry's natural key.
    pub take_over: bool,
    /// How long to wait for an applied subsystem to settle.
    pub apply_timeout: std::time::Duration,
}

impl std::fmt::Debug for PfSenseOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PfSenseOptions")
            .field("endpoint", &self.endpoint)
            .field("gui_user", &self.gui.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

/// The pfSense provider.
pub struct PfSense {
    lab: String,
    http: Http,
    options: PfSenseOptions,
    writer: tokio::sync::Mutex<()>,
    touched: Mutex<BTreeSet<Subsystem>>,
    checked: tokio::sync::OnceCell<()>,
    applies: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
    /// The collections as the last observe listed them: a create whose entry and natural
    /// key were not there needs no second list (a POST appends; ids before it stay).
    seen: Mutex<BTreeMap<&'static str, Vec<Value>>>,
}

impl std::fmt::Debug for PfSense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PfSense")
            .field("endpoint", &self.options.endpoint)
            .finish_non_exhaustive()
    }
}

fn backend(what: &str, e: HttpError) -> ProviderError {
    crate::http_error("pfSense", what, e)
}

fn invalid(r: &Resource, message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidData {
        what: r.id.to_string(),
        message: message.into(),
    }
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// pfSense alias names: letters, digits and `_`, at most 31 characters.
fn alias_name(name: &str) -> String {
    let n: String = format!("cl_{name}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    n.chars().take(31).collect()
}

impl PfSense {
    /// A provider for `lab`.
    pub fn new(lab: impl Into<String>, options: PfSenseOptions) -> Result<Self, crate::Error> {
        let http = Http::new(
            &options.endpoint,
            options.ca.as_deref(),
            vec![("x-api-key".into(), options.api_key.clone())],
        )
        .map_err(|source| crate::Error::Client {
            backend: "pfSense",
            source,
        })?;
        Ok(PfSense {
            lab: lab.into(),
            http,
            options,
            writer: tokio::sync::Mutex::new(()),
            touched: Mutex::new(BTreeSet::new()),
            checked: tokio::sync::OnceCell::new(),
            applies: Default::default(),
            writes: Default::default(),
            seen: Mutex::new(BTreeMap::new()),
        })
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.http
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes (POST, PATCH, DELETE of objects) sent so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Subsystem applies sent so far.
    pub fn applies(&self) -> u64 {
        self.applies.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn marker(&self, id: &ResourceId) -> String {
        format!("cloudlet:{} {}/{}", self.lab, id.kind, id.name)
    }

    /// The resource an entry's `descr` names, when it is this lab's.
    fn owner(&self, descr: &str) -> Option<ResourceId> {
        let rest = descr.strip_prefix(&format!("cloudlet:{} ", self.lab))?;
        let ours = rest.split(" — ").next()?;
        let (kind, name) = ours.split_once('/')?;
        coll(kind)?;
        Some(ResourceId::new(Domain::Router, kind, name))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ProviderError> {
        let what = format!("{method} {path}");
        let v = self
            .http
            .json(method, path, body)
            .await
            .map_err(|e| backend(&what, e))?;
        Ok(v["data"].clone())
    }

    /// pfrest is there and new enough (asked once).
    async fn check(&self) -> Result<(), ProviderError> {
        self.checked
            .get_or_try_init(|| async {
                let v = self
                    .http
                    .json(Method::GET, "/api/v2/system/restapi/version", None)
                    .await;
                let install = "install the pfSense REST API package (pfrest, `pfSense-pkg-RESTAPI`) version 2 or newer on the router, then create an API key for cloudlet under System > REST API > Keys";
                let v = match v {
                    Ok(v) => v,
                    Err(HttpError::Status(404, _) | HttpError::Body(_)) => {
                        return Err(ProviderError::Backend {
                            message: format!("pfSense at {} does not answer the pfrest v2 API: {install}", self.options.endpoint),
                            retryable: false,
                        });
                    }
                    Err(HttpError::Status(status @ (401 | 403), _)) => {
                        return Err(ProviderError::Api {
                            backend: "pfSense",
                            operation: "version check".into(),
                            status: Some(status),
                            fault: cloudlet_core::error::Fault::Unauthorized,
                            message: "refused the API key (wrong, revoked, or not allowed to use the REST API)".into(),
                        });
                    }
                    Err(e) => return Err(backend("version check", e)),
                };
                let current = s(&v["data"], "current_version");
                let mut it = current.trim_start_matches('v').split('.');
                let major: u32 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
                let minor: u32 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
                if (major, minor) < MIN_PFREST {
                    return Err(ProviderError::Backend {
                        message: format!("pfrest {current} on the router is too old: {install}"),
                        retryable: false,
                    });
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// What cloudlet writes for a resource.
    fn native(&self, r: &Resource) -> Result<Value, ProviderError> {
        let v = r.body.value();
        let descr = self.marker(&r.id);
        Ok(match &*r.id.kind {
            "dhcp-reservation" => json!({
                "parent_id": s(&v, "interface"),
                "mac": s(&v, "mac").to_ascii_lowercase(),
                "ipaddr": s(&v, "ip"),
                "hostname": s(&v, "hostname"),
                "descr": descr,
            }),
            "dns-override" => {
                let fqdn = s(&v, "host");
                let (host, domain) = fqdn
                    .split_once('.')
                    .ok_or_else(|| invalid(r, format!("`{fqdn}` is not host.domain")))?;
                json!({"host": host, "domain": domain, "ip": [s(&v, "address")], "descr": descr})
            }
            "alias" => json!({
                "name": alias_name(&r.id.name),
                "type": s(&v, "type"),
                "address": v["addresses"],
                "descr": descr,
            }),
            "port-forward" => json!({
                "interface": s(&v, "interface"),
                "ipprotocol": "inet",
                "protocol": s(&v, "protocol"),
                "source": s(&v, "source"),
                "destination": format!("{}:ip", s(&v, "interface")),
                "destination_port": s(&v, "port"),
                "target": s(&v, "target"),
                "local_port": s(&v, "target_port"),
                "descr": format!("{descr} — {}", s(&v, "description")),
            }),
            "firewall-rule" => {
                let ports: Vec<String> = v["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| p.to_string())
                    .collect();
                let proto = s(&v, "protocol");
                json!({
                    "type": if s(&v, "action") == "deny" { "block" } else { "pass" },
                    "interface": [s(&v, "interface")],
                    "ipprotocol": "inet",
                    "protocol": if proto == "any" { Value::Null } else { json!(proto) },
                    "source": s(&v, "source"),
                    "destination": s(&v, "destination"),
                    "destination_port": if ports.is_empty() { Value::Null } else { json!(ports.join(",")) },
                    "descr": descr,
                })
            }
            other => return Err(invalid(r, format!("pfSense has no `{other}`"))),
        })
    }

    /// A body from what pfSense holds (for entries the lab no longer has, or that drifted).
    fn body_of(kind: &str, n: &Value) -> Value {
        match kind {
            "dhcp-reservation" => json!({
                "interface": s(n, "parent_id"),
                "mac": s(n, "mac"),
                "ip": s(n, "ipaddr"),
                "hostname": s(n, "hostname"),
            }),
            "dns-override" => json!({
                "host": format!("{}.{}", s(n, "host"), s(n, "domain")),
                "address": n["ip"][0].as_str().unwrap_or_default(),
            }),
            "alias" => json!({"type": s(n, "type"), "addresses": n["address"]}),
            "port-forward" => json!({
                "interface": s(n, "interface"),
                "protocol": s(n, "protocol"),
                "port": s(n, "destination_port").parse::<u64>().map(Value::from).unwrap_or(Value::Null),
                "source": s(n, "source"),
                "target": s(n, "target"),
                "target_port": s(n, "local_port").parse::<u64>().map(Value::from).unwrap_or(Value::Null),
                "description": s(n, "descr").split(" — ").nth(1).unwrap_or_default(),
            }),
            _ => json!({
                "interface": n["interface"][0],
                "action": if s(n, "type") == "block" { "deny" } else { "allow" },
                "protocol": if n["protocol"].is_null() { "any".to_string() } else { s(n, "protocol") },
                "source": s(n, "source"),
                "destination": s(n, "destination"),
                "ports": s(n, "destination_port").split(',').filter_map(|p| p.parse::<u64>().ok()).collect::<Vec<_>>(),
            }),
        }
    }

    /// Whether pfSense holds what cloudlet would write (fields cloudlet writes only).
    fn same(native: &Value, actual: &Value) -> bool {
        native.as_object().into_iter().flatten().all(|(k, v)| {
            let a = &actual[k];
            a == v
                || (k == "mac" && a.as_str().map(str::to_ascii_lowercase).as_deref() == v.as_str())
        })
    }

    /// The natural key of a native entry (for finding an unmarked twin to adopt).
    fn natural(kind: &str, n: &Value) -> String {
        match kind {
            "dhcp-reservation" => {
                format!("{}|{}", s(n, "parent_id"), s(n, "mac").to_ascii_lowercase())
            }
            "dns-override" => format!("{}|{}", s(n, "host"), s(n, "domain")),
            "alias" => s(n, "name"),
            _ => String::new(),
        }
    }

    async fn list(&self, c: &Coll) -> Result<Vec<Value>, ProviderError> {
        let v = self.call(Method::GET, c.list, None).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// The current id of cloudlet's entry for `r` (re-listed: ids shift on delete), or of an
    /// unmarked entry with its natural key.
    async fn find(
        &self,
        c: &Coll,
        r: &Resource,
        native: Option<&Value>,
    ) -> Result<(Option<Value>, Option<Value>), ProviderError> {
        let items = self.list(c).await?;
        let ours = items
            .iter()
            .find(|n| self.owner(&s(n, "descr")).as_ref() == Some(&r.id))
            .cloned();
        let twin = native.and_then(|want| {
            let key = Self::natural(c.kind, want);
            (!key.is_empty())
                .then(|| {
                    items
                        .iter()
                        .find(|n| {
                            self.owner(&s(n, "descr")).is_none() && Self::natural(c.kind, n) == key
                        })
                        .cloned()
                })
                .flatten()
        });
        Ok((ours, twin))
    }

    fn touch(&self, sub: Subsystem) {
        if let Ok(mut t) = self.touched.lock() {
            t.insert(sub);
        }
    }

    fn wrote(&self) {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the last observe's list of `c` shows neither `r`'s entry nor an unmarked twin.
    fn surely_new(&self, c: &Coll, r: &Resource, native: &Value) -> bool {
        let key = Self::natural(c.kind, native);
        self.seen.lock().ok().is_some_and(|seen| {
            seen.get(c.kind).is_some_and(|items| {
                !items.iter().any(|n| {
                    self.owner(&s(n, "descr")).as_ref() == Some(&r.id)
                        || (!key.is_empty() && Self::natural(c.kind, n) == key)
                })
            })
        })
    }

    async fn write(&self, r: &Resource, create: bool) -> Result<(), ProviderError> {
        let c = coll(&r.id.kind).ok_or_else(|| invalid(r, "not a pfSense object"))?;
        let native = self.native(r)?;
        let _one = self.writer.lock().await;
        let (ours, twin) = if create && self.surely_new(c, r, &native) {
            (None, None)
        } else {
            self.find(c, r, Some(&native)).await?
        };
        let target = match (ours, twin) {
            (Some(o), _) => Some(o),
            (None, Some(t)) if self.options.take_over => Some(t),
            (None, Some(t)) => {
                return Err(invalid(
                    r,
                    format!(
                        "pfSense already has an entry cloudlet did not make for the same {} (id {}, descr {:?}); adopt it with --take-over or remove it",
                        if c.kind == "dhcp-reservation" {
                            "MAC"
                        } else {
                            "name"
                        },
                        t["id"],
                        s(&t, "descr")
                    ),
                ));
            }
            (None, None) => None,
        };
        let mut body = native;
        match target {
            Some(t) => {
                body["id"] = t["id"].clone();
                self.call(Method::PATCH, c.one, Some(&body)).await?;
            }
            None => {
                self.call(Method::POST, c.one, Some(&body)).await?;
            }
        }
        self.wrote();
        self.touch(c.subsystem);
        Ok(())
    }

    /// Applies a subsystem synchronously and checks that nothing is left pending.
    async fn apply_subsystem(&self, sub: Subsystem) -> Result<(), ProviderError> {
        self.applies
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.call(
            Method::POST,
            sub.apply_path(),
            Some(&json!({"async": false})),
        )
        .await?;
        let deadline = tokio::time::Instant::now() + self.options.apply_timeout;
        loop {
            let st = self.call(Method::GET, sub.apply_path(), None).await?;
            if st["applied"] == true {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ProviderError::Backend {
                    message: format!(
                        "pfSense still has pending {} changes {:?} after applying them",
                        sub.name(),
                        self.options.apply_timeout
                    ),
                    retryable: true,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[async_trait]
impl Provider for PfSense {
    fn name(&self) -> &str {
        "pfsense"
    }

    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        self.observe_with(domain, &[]).await
    }

    async fn observe_with(
        &self,
        domain: Domain,
        desired: &[Resource],
    ) -> Result<Vec<Resource>, ProviderError> {
        if domain != Domain::Router {
            return Ok(Vec::new());
        }
        self.check().await?;
        let want: BTreeMap<&ResourceId, &Resource> = desired.iter().map(|r| (&r.id, r)).collect();
        let mut out = Vec::new();
        for c in &COLLS {
            let items = self.list(c).await?;
            if let Ok(mut seen) = self.seen.lock() {
                seen.insert(c.kind, items.clone());
            }
            for n in items {
                let Some(id) = self.owner(&s(&n, "descr")) else {
                    continue;
                };
                if &*id.kind != c.kind {
                    continue;
                }
                let r = Resource::observed(
                    id.clone(),
                    want.get(&id).copied(),
                    |w| self.native(w).is_ok_and(|x| Self::same(&x, &n)),
                    || Self::body_of(c.kind, &n),
                );
                out.push(r);
            }
        }
        // Changes an earlier apply wrote but did not apply: planned as their commit.
        for sub in Subsystem::ALL {
            let st = self.call(Method::GET, sub.apply_path(), None).await?;
            if st["applied"] == false {
                out.push(Resource::new(
                    ResourceId::new(Domain::Router, UNCOMMITTED, sub.name()),
                    json!({"pending": st["pending_subsystems"]}),
                ));
            }
        }
        Ok(out)
    }

    async fn create(&self, r: &Resource) -> Result<(), ProviderError> {
        self.write(r, true).await
    }

    async fn update(&self, r: &Resource, _changes: &[FieldChange]) -> Result<(), ProviderError> {
        self.write(r, false).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), ProviderError> {
        if &*r.id.kind == UNCOMMITTED {
            // "Deleting" what is left pending is applying it.
            if let Some(sub) = Subsystem::ALL.into_iter().find(|s| s.name() == &*r.id.name) {
                self.touch(sub);
            }
            return Ok(());
        }
        let c = coll(&r.id.kind).ok_or_else(|| invalid(r, "not a pfSense object"))?;
        let _one = self.writer.lock().await;
        let (ours, _) = self.find(c, r, None).await?;
        if let Some(o) = ours {
            let mut q = format!("{}?id={}", c.one, o["id"]);
            if c.kind == "dhcp-reservation" {
                q.push_str(&format!("&parent_id={}", s(&o, "parent_id")));
            }
            self.call(Method::DELETE, &q, None).await?;
            self.wrote();
        }
        self.touch(c.subsystem);
        Ok(())
    }

    fn commits_partial_applies(&self) -> bool {
        true
    }

    async fn finish(&self, domain: Domain) -> Result<(), ProviderError> {
        if domain != Domain::Router {
            return Ok(());
        }
        let subs: Vec<Subsystem> = self
            .touched
            .lock()
            .map(|mut t| std::mem::take(&mut *t).into_iter().collect())
            .unwrap_or_default();
        for sub in subs {
            self.apply_subsystem(sub).await?;
        }
        Ok(())
    }

    /// The running `config.xml`, from the web interface's Diagnostics → Backup & Restore:
    /// pfrest hands out only a JSON view of it that does not load back.
    async fn export_config(&self) -> Result<Vec<ConfigFile>, ProviderError> {
        let Some((user, password)) = &self.options.gui else {
            return Err(ProviderError::Backend {
                message: "pfSense hands out its config.xml only to its web interface: give the target `gui_credentials` (USER:PASSWORD of a user with the `WebCfg - Diagnostics: Backup & Restore` privilege)".into(),
                retryable: false,
            });
        };
        let gui = Http::new(
            &self.options.endpoint,
            self.options.ca.as_deref(),
            Vec::new(),
        )
        .map_err(|e| ProviderError::Setup {
            backend: "pfSense",
            source: Box::new(e),
        })?;
        let bytes = gui::config_xml(&gui, user, password).await?;
        Ok(vec![ConfigFile {
            name: crate::config_xml::NAME.into(),
            bytes,
        }])
    }

    /// pfSense loads a configuration in its web interface or at boot, not over pfrest.
    async fn import_config(&self, files: &[ConfigFile]) -> Result<Imported, ProviderError> {
        crate::config_xml::by_hand(
            files,
            "pfsense",
            "pfSense",
            "pfSense loads a configuration in its web interface: Diagnostics → Backup & Restore → Restore Backup, all areas, choose this file (the firewall reboots with it); on a fresh install, put it on a USB stick as /config/config.xml for the External Configuration Locator, or use the installer's `Recover config.xml`",
        )
    }
}

/// The `__csrf_magic` token of a pfSense web form, as the backup reads it from the router's
/// answer (bounded; fuzzed).
pub fn form_token(html: &[u8]) -> Option<String> {
    gui::csrf(html)
}

/// Whether `bytes` is a pfSense `config.xml`: XML whose root is `<pfsense>`.
pub fn is_config_xml(bytes: &[u8]) -> bool {
    crate::config_xml::has_root(bytes, "pfsense")
}

/// pfSense's web interface, for the one thing pfrest cannot do: hand out `config.xml`.
/// The page is a PHP form: a session cookie, a `__csrf_magic` token in every form that the
/// next POST must echo, a login that changes the session id.
mod gui {
    use cloudlet_core::error::ProviderError;
    use cloudlet_transport::http::{Answer, Bytes, Http, HttpError, Method};
    use std::collections::BTreeMap;

    const PAGE: &str = "/diag_backup.php";

    fn fail(message: impl Into<String>) -> ProviderError {
        ProviderError::Backend {
            message: message.into(),
            retryable: false,
        }
    }

    /// The `__csrf_magic` token of the form in `html`.
    pub(super) fn csrf(html: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(html);
        let at = text
            .find("name='__csrf_magic'")
            .or_else(|| text.find("name=\"__csrf_magic\""))?;
        let rest: String = text[at..].chars().take(400).collect();
        let v = rest.find("value=")? + "value=".len();
        let quote = rest[v..].chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let value = &rest[v + 1..];
        let end = value.find(quote)?;
        let token = &value[..end];
        (!token.is_empty() && token.len() < 300).then(|| token.to_string())
    }

    /// The session's cookies, as the answers set them.
    #[derive(Default)]
    struct Jar(BTreeMap<String, String>);

    impl Jar {
        fn take(&mut self, a: &Answer) {
            for (k, v) in &a.headers {
                if k != "set-cookie" {
                    continue;
                }
                let pair = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = pair.split_once('=') {
                    self.0
                        .insert(name.trim().to_string(), value.trim().to_string());
                }
            }
        }

        fn header(&self) -> String {
            self.0
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        }
    }

    /// One request to the page with the session's cookies; redirects within the page
    /// followed (a login may answer with one).
    async fn send(
        http: &Http,
        jar: &mut Jar,
        form: Option<&[(&str, &str)]>,
    ) -> Result<Answer, ProviderError> {
        let (mut method, mut body) = match form {
            Some(f) => (
                Method::POST,
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(f.iter())
                    .finish(),
            ),
            None => (Method::GET, String::new()),
        };
        let mut path = PAGE.to_string();
        for _ in 0..3 {
            let cookie = jar.header();
            let mut headers = vec![("accept", "text/html, application/xml, */*")];
            if !cookie.is_empty() {
                headers.push(("cookie", cookie.as_str()));
            }
            if method == Method::POST {
                headers.push(("content-type", "application/x-www-form-urlencoded"));
            }
            let a = http
                .send_bounded(
                    method.clone(),
                    &path,
                    &headers,
                    Bytes::from(body.clone()),
                    crate::config_xml::MAX,
                )
                .await
                .map_err(|e| {
                    crate::http_error("pfSense", &format!("the web interface's {PAGE}"), e)
                })?;
            jar.take(&a);
            match a.status {
                301..=303 => {
                    let to = a.header("location").unwrap_or(PAGE);
                    // Only within the router: an absolute address elsewhere is not followed.
                    let local = to.strip_prefix(http.base()).unwrap_or(to);
                    if !local.starts_with('/') {
                        return Err(fail(format!(
                            "pfSense's web interface redirected to `{}`",
                            local.chars().take(100).collect::<String>()
                        )));
                    }
                    path = local.to_string();
                    method = Method::GET;
                    body.clear();
                }
                200 => return Ok(a),
                status => {
                    return Err(crate::http_error(
                        "pfSense",
                        &format!("the web interface's {PAGE}"),
                        HttpError::Status(
                            status,
                            String::from_utf8_lossy(&a.body).chars().take(200).collect(),
                        ),
                    ));
                }
            }
        }
        Err(fail("pfSense's web interface redirected more than 3 times"))
    }

    fn token_of(a: &Answer, doing: &str) -> Result<String, ProviderError> {
        csrf(&a.body).ok_or_else(|| {
            fail(format!(
                "pfSense's web interface answered {doing} without the form's CSRF token"
            ))
        })
    }

    /// Logs in to the web interface and downloads `config.xml`, checked to be one.
    pub(super) async fn config_xml(
        http: &Http,
        user: &str,
        password: &str,
    ) -> Result<Vec<u8>, ProviderError> {
        let mut jar = Jar::default();
        let login = send(http, &mut jar, None).await?;
        let token = token_of(&login, "the login page")?;
        let page = send(
            http,
            &mut jar,
            Some(&[
                ("__csrf_magic", &token),
                ("usernamefld", user),
                ("passwordfld", password),
                ("login", "Sign In"),
            ]),
        )
        .await?;
        let text = String::from_utf8_lossy(&page.body);
        if text.contains("name=\"usernamefld\"") || text.contains("name='usernamefld'") {
            return Err(fail(
                "pfSense's web interface refused the user and password of `gui_credentials`",
            ));
        }
        if !text.contains("name=\"download\"") && !text.contains("name='download'") {
            return Err(fail(
                "pfSense's web interface did not show the backup page to the user of `gui_credentials`: give it the `WebCfg - Diagnostics: Backup & Restore` privilege",
            ));
        }
        let token = token_of(&page, "the backup page")?;
        let a = send(
            http,
            &mut jar,
            Some(&[
                ("__csrf_magic", &token),
                ("backuparea", ""),
                ("donotbackuprrd", "yes"),
                ("encrypt_password", ""),
                ("download", "Download configuration as XML"),
            ]),
        )
        .await?;
        if !super::is_config_xml(&a.body) {
            return Err(ProviderError::InvalidData {
                what: "pfSense's configuration".into(),
                message: "the download is not a config.xml (no `<pfsense>` document)".into(),
            });
        }
        Ok(a.body.to_vec())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_form_token_is_read_in_either_quoting() {
            let html = br#"<form><input type='hidden' name='__csrf_magic' value="sid:ab12,1700000000;ip:cd,1700000000" /></form>"#;
            assert_eq!(
                super::csrf(html).as_deref(),
                Some("sid:ab12,1700000000;ip:cd,1700000000")
            );
            let html = br#"<input type="hidden" name="__csrf_magic" value='sid:x,1' />"#;
            assert_eq!(super::csrf(html).as_deref(), Some("sid:x,1"));
            assert_eq!(super::csrf(b"<html>no form</html>"), None);
            assert_eq!(
                super::csrf(b"name='__csrf_magic' value=\"unterminated"),
                None
            );
        }

        /// What the fuzz target checks, over every cut of a real form and bytes flipped in
        /// it (stable Rust runs no fuzzer): no panic, and a token is a quote-free piece of it.
        #[test]
        fn a_cut_or_damaged_form_never_panics() {
            let page = "<!DOCTYPE html><html><head><title>pfSense — Login ✓</title></head><body><form><input type='hidden' name='__csrf_magic' value=\"sid:0f3a,1700000000;ip:9c1e,1700000000\" /><input name=\"usernamefld\" /></form></body></html>".as_bytes().to_vec();
            let check = |b: &[u8]| {
                if let Some(t) = super::csrf(b) {
                    assert!(!t.is_empty() && t.len() < 300 && !t.contains('"'));
                    assert!(String::from_utf8_lossy(b).contains(&t));
                }
                let _ = super::super::is_config_xml(b);
            };
            for cut in 0..=page.len() {
                check(&page[..cut]);
            }
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            for _ in 0..5000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut p = page.clone();
                let at = (x as usize) % p.len();
                p[at] = (x >> 32) as u8;
                check(&p);
            }
        }
    }
}
