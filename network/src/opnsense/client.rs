//! The `opnsense` backend's client: everything but its description (the `client` feature).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use cloudlet_core::error::ProviderError;
use cloudlet_core::plan::FieldChange;
use cloudlet_core::{ConfigFile, Domain, Imported, Provider, Resource, ResourceId};
use cloudlet_transport::http::Method;
use serde_json::{Value, json};

use cloudlet_transport::http::{Http, HttpError};

use crate::config_xml;

use cloudlet_core::backend::{BoxFuture, ConnectError, Connection};

/// An OPNsense key and secret from its `apikey.txt` (`key=...`, `secret=...` lines) or from
/// `KEY:SECRET`.
pub fn credentials(text: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    match (field("key"), field("secret")) {
        (Some(k), Some(s)) if !k.is_empty() && !s.is_empty() => Some((k, s)),
        _ => text
            .trim()
            .split_once(':')
            .filter(|(k, s)| !k.is_empty() && !s.is_empty())
            .map(|(k, s)| (k.to_string(), s.to_string())),
    }
}

pub(super) fn connect<'a>(
    c: &'a Connection<'a>,
) -> BoxFuture<'a, Result<std::sync::Arc<dyn Provider>, ConnectError>> {
    Box::pin(async move {
        let endpoint = c.endpoint()?;
        let (key, secret) = credentials(&c.credentials()?).ok_or(ConnectError::CredentialForm {
            backend: "OPNsense",
            expected: "`key=`/`secret=` lines or KEY:SECRET",
        })?;
        let p = OpnSense::new(
            c.lab.name.clone(),
            OpnSenseOptions {
                endpoint,
                key,
                secret,
                ca: c.ca(),
                reach_timeout: std::time::Duration::from_secs(20),
                take_over: c.take_over,
            },
        )
        .map_err(|e| ConnectError::Client {
            backend: "OPNsense",
            source: Box::new(e),
        })?;
        Ok(std::sync::Arc::new(p) as std::sync::Arc<dyn Provider>)
    })
}

#[cfg(test)]
mod credential_tests {
    #[test]
    fn from_its_key_file_or_key_colon_secret() {
        let file = "key=AbC123\nsecret=s3cr3t+/=\n";
        assert_eq!(
            super::credentials(file),
            Some(("AbC123".into(), "s3cr3t+/=".into()))
        );
        assert_eq!(super::credentials("k:s\n"), Some(("k".into(), "s".into())));
        assert_eq!(super::credentials("key=only\n"), None);
    }
}

/// How to reach OPNsense.
#[derive(Debug, Clone)]
pub struct OpnSenseOptions {
    /// `https://ROUTER[:PORT]`.
    pub endpoint: String,
    /// API key.
    pub key: String,
    /// API secret.
    pub secret: String,
    /// A CA file for a self-signed router certificate.
    pub ca: Option<std::path::PathBuf>,
    /// How long to wait for the router to answer after a firewall apply before leaving the
    /// change to OPNsense's automatic rollback.
    pub reach_timeout: std::time::Duration,
    /// Adopt entries without cloudlet's marker that have a lab entry's natural key.
    pub take_over: bool,
}

/// Modules applied separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Module {
    Kea,
    Dnsmasq,
    Unbound,
    Alias,
    Filter,
    DNat,
}

struct Api {
    kind: &'static str,
    search: &'static str,
    add: &'static str,
    set: &'static str,
    del: &'static str,
    /// The object's key in add/set bodies.
    wrap: &'static str,
    module: Module,
}

const UNBOUND: Api = Api {
    kind: "dns-override",
    search: "/api/unbound/settings/searchHostOverride",
    add: "/api/unbound/settings/addHostOverride",
    set: "/api/unbound/settings/setHostOverride",
    del: "/api/unbound/settings/delHostOverride",
    wrap: "host",
    module: Module::Unbound,
};
const KEA: Api = Api {
    kind: "dhcp-reservation",
    search: "/api/kea/dhcpv4/searchReservation",
    add: "/api/kea/dhcpv4/addReservation",
    set: "/api/kea/dhcpv4/setReservation",
    del: "/api/kea/dhcpv4/delReservation",
    wrap: "reservation",
    module: Module::Kea,
};
const DNSMASQ: Api = Api {
    kind: "dhcp-reservation",
    search: "/api/dnsmasq/settings/searchHost",
    add: "/api/dnsmasq/settings/addHost",
    set: "/api/dnsmasq/settings/setHost",
    del: "/api/dnsmasq/settings/delHost",
    wrap: "host",
    module: Module::Dnsmasq,
};
const ALIAS: Api = Api {
    kind: "alias",
    search: "/api/firewall/alias/searchItem",
    add: "/api/firewall/alias/addItem",
    set: "/api/firewall/alias/setItem",
    del: "/api/firewall/alias/delItem",
    wrap: "alias",
    module: Module::Alias,
};
const FILTER: Api = Api {
    kind: "firewall-rule",
    search: "/api/firewall/filter/searchRule",
    add: "/api/firewall/filter/addRule",
    set: "/api/firewall/filter/setRule",
    del: "/api/firewall/filter/delRule",
    wrap: "rule",
    module: Module::Filter,
};
const DNAT: Api = Api {
    kind: "port-forward",
    search: "/api/firewall/d_nat/searchRule",
    add: "/api/firewall/d_nat/addRule",
    set: "/api/firewall/d_nat/setRule",
    del: "/api/firewall/d_nat/delRule",
    wrap: "rule",
    module: Module::DNat,
};

/// The OPNsense provider.
pub struct OpnSense {
    lab: String,
    http: Http,
    options: OpnSenseOptions,
    dhcp: tokio::sync::OnceCell<&'static Api>,
    /// Kea subnets (uuid, CIDR), read with the reservations.
    subnets: Mutex<Vec<(String, cloudlet_core::types::Cidr)>>,
    /// UUIDs of cloudlet's objects as last listed.
    uuids: Mutex<BTreeMap<ResourceId, String>>,
    touched: Mutex<BTreeSet<Module>>,
    applies: std::sync::atomic::AtomicU64,
    /// Entries without cloudlet's marker, by module, as (natural key, uuid): a create that
    /// would duplicate one is refused, or adopts it with `take_over`.
    unmarked: Mutex<BTreeMap<Module, Vec<(String, String)>>>,
}

impl std::fmt::Debug for OpnSense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpnSense")
            .field("endpoint", &self.options.endpoint)
            .finish_non_exhaustive()
    }
}

fn backend(what: &str, e: HttpError) -> ProviderError {
    crate::http_error("OPNsense", what, e)
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

fn basic(key: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
    )
}

impl OpnSense {
    /// A provider for `lab`.
    pub fn new(lab: impl Into<String>, options: OpnSenseOptions) -> Result<Self, crate::Error> {
        let http = Http::new(
            &options.endpoint,
            options.ca.as_deref(),
            vec![("authorization".into(), basic(&options.key, &options.secret))],
        )
        .map_err(|source| crate::Error::Client {
            backend: "OPNsense",
            source,
        })?;
        Ok(OpnSense {
            lab: lab.into(),
            http,
            options,
            dhcp: tokio::sync::OnceCell::new(),
            subnets: Mutex::new(Vec::new()),
            uuids: Mutex::new(BTreeMap::new()),
            touched: Mutex::new(BTreeSet::new()),
            applies: Default::default(),
            unmarked: Mutex::new(BTreeMap::new()),
        })
    }

    /// Module applies sent so far.
    pub fn applies(&self) -> u64 {
        self.applies.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.http
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn marker(&self, id: &ResourceId) -> String {
        format!("cloudlet:{} {}/{}", self.lab, id.kind, id.name)
    }

    fn owner(&self, descr: &str) -> Option<ResourceId> {
        let rest = descr.strip_prefix(&format!("cloudlet:{} ", self.lab))?;
        let (kind, name) = rest.split(" — ").next()?.split_once('/')?;
        Some(ResourceId::new(Domain::Router, kind, name))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ProviderError> {
        let what = format!("{method} {path}");
        self.http.json(method, path, body).await.map_err(|e| match e {
            HttpError::Status(401 | 403, _) => ProviderError::Backend {
                message: "OPNsense refused the API key and secret (wrong, or the user lacks the privileges for this page)".into(),
                retryable: false,
            },
            e => backend(&what, e),
        })
    }

    /// The DHCP server the box runs: Kea or dnsmasq.
    async fn dhcp(&self) -> Result<&'static Api, ProviderError> {
        self.dhcp
            .get_or_try_init(|| async {
                for api in [&KEA, &DNSMASQ] {
                    let path = if api.module == Module::Kea {
                        "/api/kea/service/status"
                    } else {
                        "/api/dnsmasq/service/status"
                    };
                    if let Ok(v) = self.call(Method::GET, path, None).await
                        && v["status"] == "running"
                    {
                        return Ok(api);
                    }
                }
                Err(ProviderError::Backend {
                    message: "OPNsense runs neither Kea nor dnsmasq as its DHCP server (ISC dhcpd has no API): enable Kea DHCPv4 or Dnsmasq DNS & DHCP".into(),
                    retryable: false,
                })
            })
            .await
            .copied()
    }

    async fn api(&self, kind: &str) -> Result<&'static Api, ProviderError> {
        Ok(match kind {
            "dns-override" => &UNBOUND,
            "alias" => &ALIAS,
            "firewall-rule" => &FILTER,
            "port-forward" => &DNAT,
            "dhcp-reservation" => self.dhcp().await?,
            other => {
                return Err(ProviderError::InvalidData {
                    what: other.into(),
                    message: "not an OPNsense object".into(),
                });
            }
        })
    }

    fn native(&self, api: &Api, r: &Resource) -> Result<Value, ProviderError> {
        let v = r.body.value();
        let descr = self.marker(&r.id);
        Ok(match (api.module, &*r.id.kind) {
            (Module::Unbound, _) => {
                let fqdn = s(&v, "host");
                let (host, domain) = fqdn
                    .split_once('.')
                    .ok_or_else(|| invalid(r, format!("`{fqdn}` is not host.domain")))?;
                json!({"enabled": "1", "hostname": host, "domain": domain, "rr": "A", "server": s(&v, "address"), "description": descr})
            }
            (Module::Kea, _) => {
                let ip: std::net::Ipv4Addr =
                    s(&v, "ip").parse().map_err(|_| invalid(r, "no address"))?;
                let subnet = self
                    .subnets
                    .lock()
                    .ok()
                    .and_then(|s| s.iter().find(|(_, c)| c.contains(ip)).map(|(u, _)| u.clone()))
                    .ok_or_else(|| invalid(r, format!("Kea has no subnet holding {ip}: add the subnet in Services > Kea DHCP")))?;
                json!({"subnet": subnet, "ip_address": ip.to_string(), "hw_address": s(&v, "mac").to_ascii_lowercase(), "hostname": s(&v, "hostname"), "description": descr})
            }
            (Module::Dnsmasq, _) => json!({
                "host": s(&v, "hostname"), "ip": s(&v, "ip"), "hwaddr": s(&v, "mac").to_ascii_lowercase(), "descr": descr,
            }),
            (Module::Alias, _) => json!({
                "enabled": "1",
                "name": format!("cl_{}", r.id.name).replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
                "type": s(&v, "type"),
                "content": v["addresses"].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"),
                "description": descr,
            }),
            (Module::Filter, _) => {
                let ports: Vec<String> = v["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| p.to_string())
                    .collect();
                json!({
                    "enabled": "1",
                    "action": if s(&v, "action") == "deny" { "block" } else { "pass" },
                    "interface": s(&v, "interface"),
                    "direction": "in",
                    "ipprotocol": "inet",
                    "protocol": s(&v, "protocol").to_ascii_uppercase(),
                    "source_net": s(&v, "source"),
                    "destination_net": s(&v, "destination"),
                    "destination_port": ports.join(","),
                    "description": descr,
                })
            }
            (Module::DNat, _) => json!({
                "interface": s(&v, "interface"),
                "protocol": s(&v, "protocol").to_ascii_uppercase(),
                "source_net": s(&v, "source"),
                "destination_net": "wanip",
                "destination_port": s(&v, "port"),
                "target": s(&v, "target"),
                "local_port": s(&v, "target_port"),
                "description": format!("{descr} — {}", s(&v, "description")),
            }),
        })
    }

    fn body_of(module: Module, n: &Value) -> Value {
        match module {
            Module::Unbound => {
                json!({"host": format!("{}.{}", s(n, "hostname"), s(n, "domain")), "address": s(n, "server")})
            }
            Module::Kea => {
                json!({"ip": s(n, "ip_address"), "mac": s(n, "hw_address"), "hostname": s(n, "hostname")})
            }
            Module::Dnsmasq => {
                json!({"ip": s(n, "ip"), "mac": s(n, "hwaddr"), "hostname": s(n, "host")})
            }
            Module::Alias => {
                json!({"type": s(n, "type"), "addresses": s(n, "content").split('\n').filter(|x| !x.is_empty()).collect::<Vec<_>>()})
            }
            Module::Filter => json!({
                "interface": s(n, "interface"),
                "action": if s(n, "action") == "block" { "deny" } else { "allow" },
                "protocol": s(n, "protocol").to_ascii_lowercase(),
                "source": s(n, "source_net"),
                "destination": s(n, "destination_net"),
                "ports": s(n, "destination_port").split(',').filter_map(|p| p.parse::<u64>().ok()).collect::<Vec<_>>(),
            }),
            Module::DNat => json!({
                "interface": s(n, "interface"),
                "protocol": s(n, "protocol").to_ascii_lowercase(),
                "port": s(n, "destination_port").parse::<u64>().ok(),
                "source": s(n, "source_net"),
                "target": s(n, "target"),
                "target_port": s(n, "local_port").parse::<u64>().ok(),
                "description": s(n, "description").split(" — ").nth(1).unwrap_or_default(),
            }),
        }
    }

    /// What makes two entries the same thing to the router.
    fn natural(module: Module, n: &Value) -> String {
        match module {
            Module::Unbound => format!("{}.{}", s(n, "hostname"), s(n, "domain")),
            Module::Kea => s(n, "hw_address").to_ascii_lowercase(),
            Module::Dnsmasq => s(n, "hwaddr").to_ascii_lowercase(),
            Module::Alias => s(n, "name"),
            Module::Filter | Module::DNat => String::new(),
        }
    }

    fn descr_of(n: &Value) -> String {
        let d = s(n, "description");
        if d.is_empty() { s(n, "descr") } else { d }
    }

    async fn rows(&self, api: &Api) -> Result<Vec<Value>, ProviderError> {
        let v = self.call(Method::GET, api.search, None).await?;
        Ok(v["rows"].as_array().cloned().unwrap_or_default())
    }

    fn touch(&self, m: Module) {
        if let Ok(mut t) = self.touched.lock() {
            t.insert(m);
        }
    }

    async fn write(&self, r: &Resource) -> Result<(), ProviderError> {
        let api = self.api(&r.id.kind).await?;
        let native = self.native(api, r)?;
        let mut uuid = self.uuids.lock().ok().and_then(|m| m.get(&r.id).cloned());
        if uuid.is_none() {
            let key = Self::natural(api.module, &native);
            let twin = self.unmarked.lock().ok().and_then(|m| {
                m.get(&api.module)?
                    .iter()
                    .find(|(k, _)| !key.is_empty() && *k == key)
                    .map(|(_, u)| u.clone())
            });
            match twin {
                Some(u) if self.options.take_over => uuid = Some(u),
                Some(u) => {
                    return Err(invalid(
                        r,
                        format!(
                            "OPNsense already has an entry cloudlet did not make for `{key}` (uuid {u}); adopt it with --take-over or remove it"
                        ),
                    ));
                }
                None => {}
            }
        }
        let body = json!({ api.wrap: native });
        let out = match uuid {
            Some(u) => {
                self.call(Method::POST, &format!("{}/{u}", api.set), Some(&body))
                    .await?
            }
            None => self.call(Method::POST, api.add, Some(&body)).await?,
        };
        if out["result"] != "saved" {
            return Err(invalid(
                r,
                format!("OPNsense did not save it: {}", out["validations"]),
            ));
        }
        if let Some(u) = out["uuid"].as_str()
            && let Ok(mut m) = self.uuids.lock()
        {
            m.insert(r.id.clone(), u.to_string());
        }
        self.touch(api.module);
        Ok(())
    }

    /// Applies a firewall module through a savepoint, confirmed only if the router still
    /// answers afterwards.
    async fn apply_with_rollback(&self, module: &str) -> Result<(), ProviderError> {
        let sp = self
            .call(
                Method::POST,
                &format!("/api/firewall/{module}/savepoint"),
                Some(&json!({})),
            )
            .await?;
        let rev = s(&sp, "revision");
        if rev.is_empty() {
            return Err(ProviderError::Backend {
                message: format!("OPNsense gave no savepoint revision for {module}"),
                retryable: false,
            });
        }
        self.call(
            Method::POST,
            &format!("/api/firewall/{module}/apply/{rev}"),
            Some(&json!({})),
        )
        .await?;
        let deadline = tokio::time::Instant::now() + self.options.reach_timeout;
        loop {
            let probe = self
                .http
                .json(Method::GET, "/api/core/system/status", None)
                .await;
            if probe.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ProviderError::Backend {
                    message: format!(
                        "the {module} change cut cloudlet off from the router: it was not confirmed, so OPNsense rolls it back to savepoint {rev} by itself; fix the rule that blocks this machine and apply again"
                    ),
                    retryable: false,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.call(
            Method::POST,
            &format!("/api/firewall/{module}/cancelRollback/{rev}"),
            Some(&json!({})),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Provider for OpnSense {
    fn name(&self) -> &str {
        "opnsense"
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
        let dhcp = self.dhcp().await?;
        if dhcp.module == Module::Kea {
            let v = self
                .call(Method::GET, "/api/kea/dhcpv4/searchSubnet", None)
                .await?;
            let subnets = v["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| Some((s(r, "uuid"), s(r, "subnet").parse().ok()?)))
                .collect();
            if let Ok(mut g) = self.subnets.lock() {
                *g = subnets;
            }
        }
        let want: BTreeMap<&ResourceId, &Resource> = desired.iter().map(|r| (&r.id, r)).collect();
        let mut out = Vec::new();
        let mut uuids = BTreeMap::new();
        let mut unmarked: BTreeMap<Module, Vec<(String, String)>> = BTreeMap::new();
        for api in [&UNBOUND, dhcp, &ALIAS, &FILTER, &DNAT] {
            for n in self.rows(api).await? {
                let Some(id) = self.owner(&Self::descr_of(&n)) else {
                    if !Self::descr_of(&n).starts_with("cloudlet:") {
                        unmarked
                            .entry(api.module)
                            .or_default()
                            .push((Self::natural(api.module, &n), s(&n, "uuid")));
                    }
                    continue;
                };
                if &*id.kind != api.kind {
                    continue;
                }
                uuids.insert(id.clone(), s(&n, "uuid"));
                let same = |w: &Resource| {
                    self.native(api, w)
                        .is_ok_and(|x| x.as_object().into_iter().flatten().all(|(k, v)| &n[k] == v))
                };
                let r = Resource::observed(id.clone(), want.get(&id).copied(), same, || {
                    Self::body_of(api.module, &n)
                });
                out.push(r);
            }
        }
        if let Ok(mut g) = self.uuids.lock() {
            *g = uuids;
        }
        if let Ok(mut g) = self.unmarked.lock() {
            *g = unmarked;
        }
        Ok(out)
    }

    async fn create(&self, r: &Resource) -> Result<(), ProviderError> {
        self.write(r).await
    }

    async fn update(&self, r: &Resource, _changes: &[FieldChange]) -> Result<(), ProviderError> {
        self.write(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), ProviderError> {
        let api = self.api(&r.id.kind).await?;
        let Some(u) = self.uuids.lock().ok().and_then(|m| m.get(&r.id).cloned()) else {
            return Ok(());
        };
        self.call(Method::POST, &format!("{}/{u}", api.del), Some(&json!({})))
            .await?;
        self.touch(api.module);
        Ok(())
    }

    fn commits_partial_applies(&self) -> bool {
        true
    }

    async fn finish(&self, domain: Domain) -> Result<(), ProviderError> {
        if domain != Domain::Router {
            return Ok(());
        }
        let modules: Vec<Module> = self
            .touched
            .lock()
            .map(|mut t| std::mem::take(&mut *t).into_iter().collect())
            .unwrap_or_default();
        for m in modules {
            self.applies
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match m {
                Module::Kea => self
                    .call(
                        Method::POST,
                        "/api/kea/service/reconfigure",
                        Some(&json!({})),
                    )
                    .await
                    .map(|_| ())?,
                Module::Dnsmasq => self
                    .call(
                        Method::POST,
                        "/api/dnsmasq/service/reconfigure",
                        Some(&json!({})),
                    )
                    .await
                    .map(|_| ())?,
                Module::Unbound => self
                    .call(
                        Method::POST,
                        "/api/unbound/service/reconfigure",
                        Some(&json!({})),
                    )
                    .await
                    .map(|_| ())?,
                Module::Alias => self
                    .call(
                        Method::POST,
                        "/api/firewall/alias/reconfigure",
                        Some(&json!({})),
                    )
                    .await
                    .map(|_| ())?,
                Module::Filter => self.apply_with_rollback("filter").await?,
                Module::DNat => self.apply_with_rollback("d_nat").await?,
            }
        }
        Ok(())
    }

    /// The running `config.xml` (`GET /api/core/backup/download/this`; the API user needs
    /// the `Diagnostics: Configuration History` privilege), refused unless it is OPNsense's
    /// configuration document.
    async fn export_config(&self) -> Result<Vec<ConfigFile>, ProviderError> {
        const PATH: &str = "/api/core/backup/download/this";
        let what = format!("GET {PATH}");
        let a = self
            .http
            .send_bounded(
                Method::GET,
                PATH,
                &[("accept", "application/xml, text/xml, */*")],
                cloudlet_transport::http::Bytes::new(),
                config_xml::MAX,
            )
            .await
            .map_err(|e| backend(&what, e))?;
        match a.status {
            200 => {}
            401 | 403 => {
                return Err(ProviderError::Backend {
                    message: "OPNsense refused to hand out its configuration: give the API user the `Diagnostics: Configuration History` privilege".into(),
                    retryable: false,
                });
            }
            status => {
                return Err(backend(
                    &what,
                    HttpError::Status(
                        status,
                        String::from_utf8_lossy(&a.body).chars().take(300).collect(),
                    ),
                ));
            }
        }
        if !is_config_xml(&a.body) {
            return Err(ProviderError::InvalidData {
                what: "OPNsense's configuration".into(),
                message: "the answer is not a config.xml (no `<opnsense>` document)".into(),
            });
        }
        Ok(vec![ConfigFile {
            name: config_xml::NAME.into(),
            bytes: a.body.to_vec(),
        }])
    }

    /// OPNsense's API cannot load a configuration: its web interface or its installer can.
    async fn import_config(&self, files: &[ConfigFile]) -> Result<Imported, ProviderError> {
        config_xml::by_hand(
            files,
            "opnsense",
            "OPNsense",
            "OPNsense's API cannot load a configuration: in its web interface, System → Configuration → Backups → Restore, choose this file and restore all areas (the router reboots with it); on a fresh install, the installer's `Import configuration` takes it from a USB stick as /conf/config.xml",
        )
    }
}

/// Whether `bytes` is an OPNsense configuration document: XML whose root is `<opnsense>`.
pub fn is_config_xml(bytes: &[u8]) -> bool {
    config_xml::has_root(bytes, "opnsense")
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_credentials() {
        assert_eq!(super::basic("key", "secret"), "Basic a2V5OnNlY3JldA==");
        assert_eq!(super::basic("ab", "c"), "Basic YWI6Yw==");
    }
}
