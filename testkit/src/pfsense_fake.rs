//! A FAKE pfSense with the pfrest v2 REST API, in test code: pfSense cannot run here and has
//! no simulator. It copies the documented behaviour cloudlet relies on, not pfSense itself:
//! - HTTPS (a certificate from a CA of the test's own) and `X-API-Key` authentication;
//! - `{code, status, response_id, message, data}` envelopes;
//! - object ids are array indexes: deleting an entry shifts every id after it;
//! - PATCH merges fields but replaces arrays wholesale; the server fills in defaults;
//! - writes are pending until their subsystem is applied (`POST .../apply`, asynchronous
//!   unless `{"async": false}`); `GET .../apply` says whether anything is pending;
//! - faults on request: a 500 on the N-th write, the connection dropped on an apply, a delay
//!   per write, pfrest missing (404 for every API path);
//! - the web interface's `diag_backup.php`, the one place pfSense hands out its `config.xml`:
//!   a PHP session cookie, a login form, a `__csrf_magic` token per form that a POST must echo,
//!   a new session id on login, and a page without the download for a user lacking the
//!   `WebCfg - Diagnostics: Backup & Restore` privilege.
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::https;

/// Collections: (plural path, singular path, subsystem, defaults filled in on create).
fn collections() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    vec![
        (
            "/api/v2/services/dhcp_server/static_mappings",
            "/api/v2/services/dhcp_server/static_mapping",
            "dhcp_server",
            json!({"cid": "", "domain": "", "dnsserver": [], "gateway": "", "arp_table_static_entry": false, "descr": ""}),
        ),
        (
            "/api/v2/services/dns_resolver/host_overrides",
            "/api/v2/services/dns_resolver/host_override",
            "dns_resolver",
            json!({"aliases": [], "descr": ""}),
        ),
        (
            "/api/v2/firewall/aliases",
            "/api/v2/firewall/alias",
            "firewall",
            json!({"detail": [], "descr": ""}),
        ),
        (
            "/api/v2/firewall/nat/port_forwards",
            "/api/v2/firewall/nat/port_forward",
            "firewall",
            json!({"disabled": false, "nordr": false, "nosync": false, "natreflection": "system", "associated_rule_id": "", "descr": ""}),
        ),
        (
            "/api/v2/firewall/rules",
            "/api/v2/firewall/rule",
            "firewall",
            json!({"disabled": false, "log": false, "statetype": "keep state", "tcp_flags_any": false, "descr": ""}),
        ),
    ]
}

/// What the fake holds.
#[derive(Default)]
pub struct State {
    pub key: String,
    pub version: String,
    pub pfrest_installed: bool,
    /// The configuration by plural path.
    pub config: BTreeMap<&'static str, Vec<Value>>,
    /// What is running: the configuration as of each subsystem's last apply.
    pub live: BTreeMap<&'static str, Vec<Value>>,
    pub pending: BTreeSet<&'static str>,
    /// Applies per subsystem.
    pub applies: BTreeMap<&'static str, usize>,
    pub writes: usize,
    pub requests: usize,
    /// Answer the N-th write (1-based, counted from now) with a 500.
    pub fail_write_at: Option<usize>,
    /// Drop the connection on the next apply instead of answering.
    pub drop_next_apply: bool,
    pub write_delay: Duration,
    /// Writes received and not yet applied (a client that gave up does not stop them).
    pub in_flight: usize,
    next_tracker: u64,
    /// The web interface's user and password.
    pub gui_user: Option<(String, String)>,
    /// Whether that user may use Diagnostics → Backup & Restore.
    pub gui_backup_privilege: bool,
    /// Web sessions by id: (logged in, the CSRF token of the last form served).
    pub sessions: BTreeMap<String, (bool, String)>,
    next_session: u64,
}

pub struct Fake {
    pub state: Arc<Mutex<State>>,
    /// `https://127.0.0.1:PORT`.
    pub endpoint: String,
    pub ca: std::path::PathBuf,
    server: https::Server,
}

impl Fake {
    pub async fn start(dir: &Path, key: &str) -> Fake {
        let mut st = State {
            key: key.into(),
            version: "v2.4.3".into(),
            pfrest_installed: true,
            ..State::default()
        };
        for (list, ..) in collections() {
            st.config.insert(list, Vec::new());
            st.live.insert(list, Vec::new());
        }
        let state = Arc::new(Mutex::new(st));
        let s2 = state.clone();
        let server = https::start(
            dir,
            Arc::new(move |req: https::Req| {
                let st = s2.clone();
                Box::pin(async move {
                    if req.path == "/diag_backup.php" {
                        return Some(gui(&st, &req));
                    }
                    let key = req.headers.get("x-api-key").cloned().unwrap_or_default();
                    let (status, data) =
                        handle(&st, &req.method, &req.path, &req.query, &req.body, &key).await?;
                    Some((status, envelope(status, data)))
                })
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

    /// Adds an entry by hand (no cloudlet marker), as an administrator in the web UI would.
    pub fn add_by_hand(&self, list: &'static str, entry: Value) {
        let mut st = self.state.lock().unwrap();
        st.config.get_mut(list).unwrap().push(entry.clone());
        st.live.get_mut(list).unwrap().push(entry);
    }

    pub fn entries(&self, list: &'static str) -> Vec<Value> {
        self.state.lock().unwrap().config[list].clone()
    }
}

/// An HTML page of the web interface with a form carrying `token`.
fn page(title: &str, token: &str, form: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><title>pfSense - {title}</title></head><body><form method=\"post\"><input type='hidden' name='__csrf_magic' value=\"{token}\" />{form}</form></body></html>"
    )
}

const LOGIN_FORM: &str = "<input type=\"text\" name=\"usernamefld\" /><input type=\"password\" name=\"passwordfld\" /><button type=\"submit\" name=\"login\" value=\"Sign In\">Sign In</button>";
const BACKUP_FORM: &str = "<select name=\"backuparea\"><option value=\"\">All</option></select><input type=\"checkbox\" name=\"donotbackuprrd\" value=\"yes\" checked /><button name=\"download\" value=\"Download configuration as XML\">Download</button>";

/// The running configuration as pfSense's `config.xml`: a `<pfsense>` document.
fn config_xml(s: &State) -> String {
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut x = String::from("<?xml version=\"1.0\"?>\n<pfsense>\n\t<version>24.0</version>\n");
    for (list, entries) in &s.live {
        let tag = list.rsplit('/').next().unwrap_or("list");
        for e in entries {
            x.push_str(&format!("\t<{tag}>{}</{tag}>\n", esc(&e.to_string())));
        }
    }
    x.push_str("</pfsense>\n");
    x
}

/// `diag_backup.php`, with its session, login and CSRF token.
fn gui(st: &Arc<Mutex<State>>, req: &https::Req) -> (u16, Value) {
    let mut s = st.lock().unwrap();
    s.requests += 1;
    let cookie = req
        .headers
        .get("cookie")
        .into_iter()
        .flat_map(|c| c.split(';'))
        .find_map(|c| c.trim().strip_prefix("PHPSESSID="))
        .map(str::to_string);
    let fresh = |s: &mut State| {
        s.next_session += 1;
        format!("sess{:08x}{}", s.next_session * 7919, s.next_session)
    };
    let mut headers: Vec<(&str, String)> = Vec::new();
    let sid = match cookie.filter(|c| s.sessions.contains_key(c)) {
        Some(c) => c,
        None => {
            let c = fresh(&mut s);
            s.sessions.insert(c.clone(), (false, String::new()));
            headers.push((
                "set-cookie",
                format!("PHPSESSID={c}; path=/; secure; HttpOnly"),
            ));
            c
        }
    };
    let token = |s: &mut State, sid: &str| {
        s.next_session += 1;
        let t = format!(
            "sid:{:x},{}",
            s.next_session * 104_729,
            1_700_000_000 + s.next_session
        );
        s.sessions.get_mut(sid).unwrap().1 = t.clone();
        t
    };
    let html = |body: String, headers: &[(&str, String)]| {
        https::raw_with("text/html; charset=UTF-8", body, headers)
    };
    if req.method == "GET" {
        let logged_in = s.sessions[&sid].0;
        let t = token(&mut s, &sid);
        let body = if logged_in {
            page("Diagnostics: Backup & Restore", &t, BACKUP_FORM)
        } else {
            page("Login", &t, LOGIN_FORM)
        };
        return (200, html(body, &headers));
    }
    let form: BTreeMap<String, String> = form_urlencoded::parse(&req.raw_body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let (logged_in, expected) = s.sessions[&sid].clone();
    if form.get("__csrf_magic") != Some(&expected) || expected.is_empty() {
        return (
            403,
            html(
                "<html><body>CSRF check failed. Your form session may have expired, or you may not have cookies enabled.</body></html>".into(),
                &headers,
            ),
        );
    }
    if !logged_in {
        let given = (
            form.get("usernamefld").cloned().unwrap_or_default(),
            form.get("passwordfld").cloned().unwrap_or_default(),
        );
        if form.contains_key("login") && s.gui_user.as_ref() == Some(&given) {
            // A new session id on login.
            s.sessions.remove(&sid);
            let new = fresh(&mut s);
            s.sessions.insert(new.clone(), (true, String::new()));
            headers.push((
                "set-cookie",
                format!("PHPSESSID={new}; path=/; secure; HttpOnly"),
            ));
            let t = token(&mut s, &new);
            let body = if s.gui_backup_privilege {
                page("Diagnostics: Backup & Restore", &t, BACKUP_FORM)
            } else {
                page("Status: Dashboard", &t, "")
            };
            return (200, html(body, &headers));
        }
        let t = token(&mut s, &sid);
        return (
            200,
            html(
                page(
                    "Login",
                    &t,
                    &format!("<div>Username or Password incorrect</div>{LOGIN_FORM}"),
                ),
                &headers,
            ),
        );
    }
    if !s.gui_backup_privilege {
        let t = token(&mut s, &sid);
        return (200, html(page("Status: Dashboard", &t, ""), &headers));
    }
    if form.contains_key("download") {
        headers.push((
            "content-disposition",
            "attachment; filename=config-pfsense.home.lan-20261205170000.xml".into(),
        ));
        return (
            200,
            https::raw_with("application/octet-stream", config_xml(&s), &headers),
        );
    }
    let t = token(&mut s, &sid);
    (
        200,
        html(
            page("Diagnostics: Backup & Restore", &t, BACKUP_FORM),
            &headers,
        ),
    )
}

/// The pfrest envelope around an answer.
fn envelope(status: u16, data: Value) -> Value {
    json!({
        "code": status,
        "status": if status < 300 { "ok" } else { "error" },
        "response_id": if status < 300 { "SUCCESS" } else { "ERROR" },
        "message": if status < 300 { Value::from("") } else { data.clone() },
        "data": if status < 300 { data } else { Value::Null },
    })
}

async fn handle(
    st: &Arc<Mutex<State>>,
    method: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    body: &Value,
    key: &str,
) -> Option<(u16, Value)> {
    let delay = {
        let mut s = st.lock().unwrap();
        s.requests += 1;
        if !s.pfrest_installed {
            return Some((404, json!("Not Found")));
        }
        if key != s.key {
            return Some((401, json!("Authentication failed")));
        }
        s.write_delay
    };
    if path == "/api/v2/system/restapi/version" {
        return Some((
            200,
            json!({"current_version": st.lock().unwrap().version.clone()}),
        ));
    }
    // Applies.
    for sub in ["firewall", "dns_resolver", "dhcp_server"] {
        let apply = if sub == "firewall" {
            "/api/v2/firewall/apply".to_string()
        } else {
            format!("/api/v2/services/{sub}/apply")
        };
        if path != apply {
            continue;
        }
        let mut s = st.lock().unwrap();
        if method == "GET" {
            let pending: Vec<&str> = s.pending.iter().copied().filter(|p| *p == sub).collect();
            return Some((
                200,
                json!({"applied": pending.is_empty(), "pending_subsystems": pending}),
            ));
        }
        if s.drop_next_apply {
            s.drop_next_apply = false;
            return None;
        }
        *s.applies.entry(sub).or_default() += 1;
        let sync = body["async"] == false;
        drop(s);
        let commit = {
            let st = st.clone();
            move || {
                let mut s = st.lock().unwrap();
                for (list, _, subsystem, _) in collections() {
                    if subsystem == sub {
                        let c = s.config[list].clone();
                        s.live.insert(list, c);
                    }
                }
                s.pending.remove(sub);
            }
        };
        if sync {
            commit();
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                commit();
            });
        }
        return Some((200, json!({"applied": sync})));
    }
    let colls = collections();
    if let Some((list, ..)) = colls.iter().find(|c| c.0 == path) {
        if method != "GET" {
            return Some((405, json!("a plural endpoint is not replaced here")));
        }
        let s = st.lock().unwrap();
        let items: Vec<Value> = s.config[list]
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut e = e.clone();
                e["id"] = json!(i);
                e
            })
            .collect();
        return Some((200, json!(items)));
    }
    let Some((list, _, sub, defaults)) = colls.iter().find(|c| c.1 == path) else {
        return Some((404, json!("Not Found")));
    };
    /// Counts a write in flight until it is applied (or refused).
    struct InFlight(Arc<Mutex<State>>);
    impl Drop for InFlight {
        fn drop(&mut self) {
            let mut s = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
    st.lock().unwrap().in_flight += 1;
    let _in_flight = InFlight(st.clone());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut s = st.lock().unwrap();
    s.writes += 1;
    if let Some(n) = s.fail_write_at.as_mut() {
        *n -= 1;
        if *n == 0 {
            s.fail_write_at = None;
            return Some((500, json!("injected internal error")));
        }
    }
    let items = s.config.get_mut(list).unwrap();
    let out = match method {
        "POST" => {
            if list.ends_with("static_mappings") {
                let mac = body["mac"].as_str().unwrap_or("");
                if items.iter().any(|e| {
                    e["mac"].as_str().map(str::to_ascii_lowercase) == Some(mac.to_ascii_lowercase())
                        && e["parent_id"] == body["parent_id"]
                }) {
                    return Some((
                        400,
                        json!(format!("a static mapping for {mac} already exists")),
                    ));
                }
            }
            let mut e = defaults.clone();
            for (k, v) in body.as_object().into_iter().flatten() {
                if k != "id" {
                    e[k] = v.clone();
                }
            }
            if list.ends_with("/rules") {
                s.next_tracker += 1;
                e["tracker"] = json!(1_700_000_000 + s.next_tracker);
            }
            let items = s.config.get_mut(list).unwrap();
            items.push(e.clone());
            e["id"] = json!(items.len() - 1);
            e
        }
        "PATCH" => {
            let Some(i) = body["id"]
                .as_u64()
                .map(|i| i as usize)
                .filter(|i| *i < items.len())
            else {
                return Some((404, json!(format!("object id {} not found", body["id"]))));
            };
            // Fields merge; arrays are replaced wholesale.
            for (k, v) in body.as_object().into_iter().flatten() {
                if k != "id" {
                    items[i][k] = v.clone();
                }
            }
            let mut e = items[i].clone();
            e["id"] = json!(i);
            e
        }
        "DELETE" => {
            let Some(i) = query
                .get("id")
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| *i < items.len())
            else {
                return Some((404, json!("object id not found")));
            };
            items.remove(i)
        }
        _ => return Some((405, json!("method not allowed"))),
    };
    s.pending.insert(sub);
    Some((200, out))
}
