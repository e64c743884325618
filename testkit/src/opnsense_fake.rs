//! A FAKE OPNsense, in test code: OPNsense cannot run here and has no simulator. It copies
//! the documented API behaviour cloudlet relies on, not OPNsense itself:
//! - HTTPS and HTTP Basic auth with an API key and secret;
//! - `search*` answers `{rows, total, rowCount, current}`, objects have UUIDs, `add*`/`set*`
//!   answer `{result: "saved", uuid}` or `{result: "failed", validations}`, `del*`
//!   `{result: "deleted"}`;
//! - changes are configuration until the module is reconfigured/applied;
//! - filter and destination NAT: `savepoint` → `apply/REV` → `cancelRollback/REV`; a change
//!   not confirmed in time is rolled back to the savepoint by the router itself (the 60 s of
//!   a real box are scaled down);
//! - Kea or dnsmasq as the DHCP server; Kea reservations need a subnet UUID;
//! - a block rule to `(self)` from anywhere cuts off the API once applied (the fake stops
//!   answering until the rollback).
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::https;

/// Models by search path prefix: (collection, module).
const MODELS: [(&str, &str, &str); 6] = [
    ("/api/unbound/settings/", "HostOverride", "unbound"),
    ("/api/kea/dhcpv4/", "Reservation", "kea"),
    ("/api/dnsmasq/settings/", "Host", "dnsmasq"),
    ("/api/firewall/alias/", "Item", "alias"),
    ("/api/firewall/filter/", "Rule", "filter"),
    ("/api/firewall/d_nat/", "Rule", "d_nat"),
];

#[derive(Default)]
pub struct State {
    pub auth: String,
    /// Whether the API user holds `Diagnostics: Configuration History`, which the backup
    /// download needs.
    pub history_privilege: bool,
    /// Requests answered or refused so far.
    pub requests: u64,
    pub dhcp: &'static str,
    /// Configuration per module: uuid → object.
    pub config: BTreeMap<&'static str, BTreeMap<String, Value>>,
    /// Running per module.
    pub live: BTreeMap<&'static str, BTreeMap<String, Value>>,
    pub subnets: Vec<(String, String)>,
    pub reconfigures: BTreeMap<&'static str, usize>,
    /// Savepoints: revision → (module, configuration before).
    savepoints: BTreeMap<String, (&'static str, BTreeMap<String, Value>)>,
    /// Revisions applied and not confirmed yet.
    pub unconfirmed: Vec<String>,
    pub rollbacks: usize,
    /// Not answering (cut off by a rule).
    pub cut_off: bool,
    pub rollback_after: Duration,
    next: u64,
}

pub struct Fake {
    pub state: Arc<Mutex<State>>,
    pub endpoint: String,
    pub ca: std::path::PathBuf,
    server: https::Server,
}

fn uuid(n: u64) -> String {
    format!("7a1c0d2e-0000-4000-8000-{n:012x}")
}

impl Fake {
    /// A fake OPNsense running `dhcp` (`kea` or `dnsmasq`), accepting `key`:`secret`.
    pub async fn start(dir: &Path, key: &str, secret: &str, dhcp: &'static str) -> Fake {
        use base64::Engine as _;
        let mut st = State {
            auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
            ),
            dhcp,
            rollback_after: Duration::from_millis(600),
            history_privilege: true,
            next: 1,
            ..State::default()
        };
        for (_, _, m) in MODELS {
            st.config.insert(m, BTreeMap::new());
            st.live.insert(m, BTreeMap::new());
        }
        st.subnets = vec![
            (uuid(0xaaa), "10.0.20.0/24".into()),
            (uuid(0xbbb), "10.0.10.0/24".into()),
            (uuid(0xccc), "10.0.30.0/24".into()),
        ];
        let state = Arc::new(Mutex::new(st));
        let s2 = state.clone();
        let server = https::start(
            dir,
            Arc::new(move |req: https::Req| {
                let st = s2.clone();
                Box::pin(async move { handle(&st, req) })
            }),
        )
        .await;
        Fake {
            state,
            endpoint: server.endpoint.clone(),
            ca: server.ca.clone(),
            server,
        }
    }

    pub fn add_by_hand(&self, module: &'static str, obj: Value) {
        let mut st = self.state.lock().unwrap();
        st.next += 1;
        let id = uuid(st.next);
        st.config
            .get_mut(module)
            .unwrap()
            .insert(id.clone(), obj.clone());
        st.live.get_mut(module).unwrap().insert(id, obj);
    }

    /// Requests received so far.
    pub fn server_requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    pub fn live(&self, module: &'static str) -> Vec<Value> {
        self.state.lock().unwrap().live[module]
            .values()
            .cloned()
            .collect()
    }
}

/// The running configuration as OPNsense's `config.xml` would hold it: a `<opnsense>`
/// document, one element per applied object (the fake's JSON, escaped).
fn config_xml(s: &State) -> String {
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut x = String::from("<?xml version=\"1.0\"?>\n<opnsense>\n  <version>25.7</version>\n");
    for (module, objs) in &s.live {
        x.push_str(&format!("  <{module}>\n"));
        for (uuid, obj) in objs {
            x.push_str(&format!(
                "    <item uuid=\"{uuid}\">{}</item>\n",
                esc(&obj.to_string())
            ));
        }
        x.push_str(&format!("  </{module}>\n"));
    }
    x.push_str("</opnsense>\n");
    x
}

fn handle(st: &Arc<Mutex<State>>, req: https::Req) -> Option<(u16, Value)> {
    let mut s = st.lock().unwrap();
    s.requests += 1;
    if s.cut_off {
        return None;
    }
    if req.headers.get("authorization") != Some(&s.auth) {
        return Some((
            401,
            json!({"status": 401, "message": "Authentication Failed"}),
        ));
    }
    let p = req.path.as_str();
    if p == "/api/core/system/status" {
        return Some((200, json!({"status": "ok"})));
    }
    if p == "/api/core/backup/download/this" {
        if !s.history_privilege {
            return Some((403, json!({"status": 403, "message": "Forbidden"})));
        }
        return Some((200, https::raw("application/xml", config_xml(&s))));
    }
    if let Some(svc) = p
        .strip_prefix("/api/")
        .and_then(|r| r.strip_suffix("/service/status"))
    {
        let running = svc == s.dhcp || svc == "unbound";
        return Some((
            200,
            json!({"status": if running { "running" } else { "stopped" }}),
        ));
    }
    if p == "/api/kea/dhcpv4/searchSubnet" {
        let rows: Vec<Value> = s
            .subnets
            .iter()
            .map(|(u, c)| json!({"uuid": u, "subnet": c}))
            .collect();
        return Some((
            200,
            json!({"rows": rows, "total": rows.len(), "rowCount": rows.len(), "current": 1}),
        ));
    }
    for (module, reconf) in [
        ("kea", "/api/kea/service/reconfigure"),
        ("dnsmasq", "/api/dnsmasq/service/reconfigure"),
        ("unbound", "/api/unbound/service/reconfigure"),
        ("alias", "/api/firewall/alias/reconfigure"),
    ] {
        if p == reconf {
            *s.reconfigures.entry(module).or_default() += 1;
            let c = s.config[module].clone();
            s.live.insert(module, c);
            return Some((200, json!({"status": "ok"})));
        }
    }
    for module in ["filter", "d_nat"] {
        let base = format!("/api/firewall/{module}/");
        let Some(action) = p.strip_prefix(&base) else {
            continue;
        };
        if action == "savepoint" {
            s.next += 1;
            let rev = format!("{}.{:04}", 1_764_000_000 + s.next, s.next);
            let before = s.live[module].clone();
            s.savepoints.insert(rev.clone(), (module, before));
            return Some((200, json!({"status": "ok", "revision": rev})));
        }
        if let Some(rev) = action.strip_prefix("apply/") {
            if !s.savepoints.contains_key(rev) {
                return Some((
                    200,
                    json!({"status": "failed", "message": "unknown revision"}),
                ));
            }
            *s.reconfigures.entry(module).or_default() += 1;
            let c = s.config[module].clone();
            s.live.insert(module, c);
            s.unconfirmed.push(rev.to_string());
            // A block of everything to the router itself cuts the API off.
            let cut = module == "filter"
                && s.live["filter"]
                    .values()
                    .any(|r| r["action"] == "block" && r["destination_net"] == "(self)");
            s.cut_off = cut;
            // The router's own timer: roll back unless confirmed in time.
            let (st2, rev2, after) = (st.clone(), rev.to_string(), s.rollback_after);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let mut s = st2.lock().unwrap();
                if let Some(i) = s.unconfirmed.iter().position(|r| *r == rev2) {
                    s.unconfirmed.remove(i);
                    if let Some((m, before)) = s.savepoints.get(&rev2).cloned() {
                        s.live.insert(m, before.clone());
                        s.config.insert(m, before);
                        s.rollbacks += 1;
                        s.cut_off = false;
                    }
                }
            });
            return Some((200, json!({"status": "ok"})));
        }
        if let Some(rev) = action.strip_prefix("cancelRollback/") {
            let known = s.unconfirmed.iter().position(|r| r == rev);
            return Some((
                200,
                match known {
                    Some(i) => {
                        s.unconfirmed.remove(i);
                        json!({"status": "ok"})
                    }
                    None => json!({"status": "failed"}),
                },
            ));
        }
    }
    let (prefix, coll, module) = MODELS
        .iter()
        .find(|(pre, ..)| p.starts_with(pre))
        .copied()?;
    let action = &p[prefix.len()..];
    if action == format!("search{coll}") {
        let rows: Vec<Value> = s.config[module]
            .iter()
            .map(|(u, o)| {
                let mut o = o.clone();
                o["uuid"] = json!(u);
                o
            })
            .collect();
        return Some((
            200,
            json!({"rows": rows, "total": rows.len(), "rowCount": rows.len(), "current": 1}),
        ));
    }
    let wrap = match module {
        "unbound" | "dnsmasq" => "host",
        "kea" => "reservation",
        "alias" => "alias",
        _ => "rule",
    };
    if action == format!("add{coll}") || action.starts_with(&format!("set{coll}/")) {
        let obj = req.body[wrap].clone();
        if !obj.is_object() {
            return Some((
                200,
                json!({"result": "failed", "validations": {wrap: "missing"}}),
            ));
        }
        if module == "kea" && !s.subnets.iter().any(|(u, _)| obj["subnet"] == u.as_str()) {
            return Some((
                200,
                json!({"result": "failed", "validations": {"reservation.subnet": "Related item not found"}}),
            ));
        }
        if module == "alias" && obj["name"].as_str().is_none_or(|n| n.len() > 31) {
            return Some((
                200,
                json!({"result": "failed", "validations": {"alias.name": "The name must be less than 32 characters long"}}),
            ));
        }
        let id = match action.strip_prefix(&format!("set{coll}/")) {
            Some(u) => {
                if !s.config[module].contains_key(u) {
                    return Some((200, json!({"result": "failed"})));
                }
                u.to_string()
            }
            None => {
                s.next += 1;
                uuid(s.next)
            }
        };
        // OPNsense fills its defaults.
        let mut full = json!({"enabled": "1", "sequence": "1", "log": "0"});
        for (k, v) in obj.as_object().into_iter().flatten() {
            full[k] = v.clone();
        }
        s.config.get_mut(module).unwrap().insert(id.clone(), full);
        return Some((200, json!({"result": "saved", "uuid": id})));
    }
    if let Some(u) = action.strip_prefix(&format!("del{coll}/")) {
        let gone = s.config.get_mut(module).unwrap().remove(u).is_some();
        return Some((
            200,
            json!({"result": if gone { "deleted" } else { "not found" }}),
        ));
    }
    Some((404, json!({"errorMessage": "Endpoint not found"})))
}
