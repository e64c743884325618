//! A FAKE TrueNAS: a stateful JSON-RPC 2.0 WebSocket server in test code, because TrueNAS
//! cannot run here and has no simulator. It copies the documented behaviour cloudlet relies
//! on, not TrueNAS itself:
//! - `wss://` with a certificate from a CA of the test's own, and a plain `ws://` listener on
//!   which an API key that logs in is revoked (as TrueNAS does);
//! - every call but `auth.*` and `system.version` needs a login;
//! - job methods (`filesystem.setperm`) answer only when the job ended, with `collection_update`
//!   events of `core.get_jobs` before; the job goes on when the connection drops;
//! - dataset properties carry their source (`LOCAL`, `DEFAULT`, `INHERITED`); writing
//!   `INHERIT` drops the local value; user properties need a `namespace:name` key;
//! - shares and tasks are filled with the server's defaults; shares need existing paths,
//!   networks in CIDR form, hosts without spaces, comments up to 1024 characters;
//! - `pool.snapshot.*` exists from 25.10 on, `zfs.snapshot.*` only before;
//! - replication tasks take an SSH connection's id and snapshot tasks' ids but list them as
//!   whole objects; `LOCAL` takes no SSH connection and `SSH` needs one; each source dataset
//!   must be covered by a bound snapshot task; `CUSTOM` retention needs a lifetime; names are
//!   unique; deleting a snapshot task unbinds it from the replications that used it. A run
//!   ([`Fake::run_replications`]) copies the sources' snapshots to the target (a local target's
//!   parent must exist) and leaves its state (`FINISHED`, `ERROR` with its error).
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// What the fake holds.
#[derive(Default)]
pub struct State {
    pub version: String,
    /// API keys and whether they were revoked.
    pub keys: BTreeMap<String, bool>,
    /// Datasets by name: native properties as (value, source), user properties, ownership.
    pub datasets: BTreeMap<String, Dataset>,
    pub shares: BTreeMap<i64, Value>,
    pub tasks: BTreeMap<i64, Value>,
    /// Replication tasks as stored: SSH connection and snapshot tasks by id.
    pub replications: BTreeMap<i64, Value>,
    /// Keychain credentials (SSH connections) by id.
    pub credentials: BTreeMap<i64, Value>,
    /// (dataset, snapshot name, creation in Unix seconds) in creation order.
    pub snapshots: Vec<(String, String, i64)>,
    pub jobs: BTreeMap<i64, Value>,
    next_id: i64,
    /// Every method called, in order.
    pub calls: Vec<String>,
    /// Logins seen on the plain listener.
    pub plain_logins: usize,
}

#[derive(Clone, Default)]
pub struct Dataset {
    pub props: BTreeMap<String, (Value, &'static str)>,
    pub user: BTreeMap<String, String>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// A running fake.
pub struct Fake {
    pub state: Arc<Mutex<State>>,
    /// `wss://127.0.0.1:PORT/api/current`.
    pub endpoint: String,
    /// `ws://127.0.0.1:PORT/api/current` (the plain listener).
    pub plain_endpoint: String,
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// Drop the connection after the first progress event of the next job.
    pub drop_during_job: Arc<AtomicBool>,
    /// How long a job takes.
    pub job_time: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

use crate::https;

impl Fake {
    /// Starts a fake of TrueNAS `version` with pool `main`, accepting `api_key`.
    pub async fn start(dir: &Path, version: &str, api_key: &str) -> Fake {
        let mut st = State {
            version: version.to_string(),
            next_id: 1,
            ..State::default()
        };
        st.keys.insert(api_key.to_string(), false);
        st.datasets.insert(
            "main".into(),
            Dataset {
                mode: 0o755,
                ..Dataset::default()
            },
        );
        let state = Arc::new(Mutex::new(st));
        let drop_during_job = Arc::new(AtomicBool::new(false));
        let job_time = Arc::new(AtomicU64::new(150));
        let config = Arc::new(https::tls_config(dir));
        let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("wss://{}/api/current", secure.local_addr().unwrap());
        let plain_endpoint = format!("ws://{}/api/current", plain.local_addr().unwrap());
        let ctx = Ctx {
            state: state.clone(),
            drop_during_job: drop_during_job.clone(),
            job_time: job_time.clone(),
        };
        let c1 = ctx.clone();
        let t1 = tokio::spawn(async move {
            while let Ok((tcp, _)) = secure.accept().await {
                let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                let c = c1.clone();
                tokio::spawn(async move {
                    if let Ok(s) = acceptor.accept(tcp).await {
                        c.serve(s, true).await;
                    }
                });
            }
        });
        let c2 = ctx;
        let t2 = tokio::spawn(async move {
            while let Ok((tcp, _)) = plain.accept().await {
                let c = c2.clone();
                tokio::spawn(async move { c.serve(tcp, false).await });
            }
        });
        Fake {
            state,
            endpoint,
            plain_endpoint,
            ca: dir.join("ca.crt"),
            drop_during_job,
            job_time,
            tasks: vec![t1, t2],
        }
    }

    /// Takes a snapshot of `dataset` now, as a periodic task would.
    pub fn take_snapshot(&self, dataset: &str, name: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.take_snapshot_at(dataset, name, now);
    }

    /// Takes a snapshot of `dataset` as if at `created` (Unix seconds).
    pub fn take_snapshot_at(&self, dataset: &str, name: &str, created: i64) {
        self.state
            .lock()
            .unwrap()
            .snapshots
            .push((dataset.to_string(), name.to_string(), created));
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Adds an SSH connection (a keychain credential of type `SSH_CREDENTIALS`) named `name`,
    /// as a person makes one in the web interface; its id.
    pub fn add_ssh_connection(&self, name: &str) -> i64 {
        let mut st = self.state.lock().unwrap();
        let id = Ctx::new_id(&mut st);
        st.credentials.insert(
            id,
            json!({"id": id, "name": name, "type": "SSH_CREDENTIALS",
                   "attributes": {"host": "offsite.example", "port": 22, "username": "zfs", "private_key": 1}}),
        );
        id
    }

    /// Adds a pool (an empty top-level dataset) named `name`.
    pub fn add_pool(&self, name: &str) {
        self.state.lock().unwrap().datasets.insert(
            name.into(),
            Dataset {
                mode: 0o755,
                ..Dataset::default()
            },
        );
    }

    /// Runs every enabled automatic replication once, as after its snapshot tasks ran: each
    /// source dataset's snapshots are copied to the target (`TARGET/CHILD` for a recursive
    /// task's children), made read-only; a local target whose parent is missing fails the run.
    pub fn run_replications(&self, at: i64) {
        let mut st = self.state.lock().unwrap();
        let ids: Vec<i64> = st.replications.keys().copied().collect();
        for id in ids {
            let t = st.replications[&id].clone();
            if t["enabled"] != true || t["auto"] != true {
                continue;
            }
            let target = t["target_dataset"].as_str().unwrap_or_default().to_string();
            let parent = target.rsplit_once('/').map_or("", |(p, _)| p).to_string();
            let state = if t["transport"] == "LOCAL" && !st.datasets.contains_key(&parent) {
                json!({"state": "ERROR", "datetime": {"$date": at * 1000},
                       "error": format!("Target dataset '{parent}' does not exist"), "last_snapshot": null})
            } else {
                let mut last = Value::Null;
                let mut copies = Vec::new();
                for src in t["source_datasets"].as_array().into_iter().flatten() {
                    let src = src.as_str().unwrap_or_default();
                    for (d, n, c) in &st.snapshots {
                        let child = if d == src {
                            Some(String::new())
                        } else if t["recursive"] == true {
                            d.strip_prefix(&format!("{src}/")).map(|r| format!("/{r}"))
                        } else {
                            None
                        };
                        if let Some(child) = child {
                            copies.push((format!("{target}{child}"), n.clone(), *c));
                            last = json!(format!("{src}@{n}"));
                        }
                    }
                }
                if t["transport"] == "LOCAL" {
                    for (d, n, c) in copies {
                        st.datasets.entry(d.clone()).or_insert_with(|| {
                            let mut ds = Dataset {
                                mode: 0o755,
                                ..Dataset::default()
                            };
                            ds.props.insert("readonly".into(), (json!("ON"), "LOCAL"));
                            ds
                        });
                        if !st.snapshots.iter().any(|(sd, sn, _)| *sd == d && *sn == n) {
                            st.snapshots.push((d, n, c));
                        }
                    }
                }
                json!({"state": "FINISHED", "datetime": {"$date": at * 1000}, "last_snapshot": last})
            };
            if let Some(r) = st.replications.get_mut(&id) {
                r["state"] = state;
            }
        }
    }
}

#[derive(Clone)]
struct Ctx {
    state: Arc<Mutex<State>>,
    drop_during_job: Arc<AtomicBool>,
    job_time: Arc<AtomicU64>,
}

struct Fail(i64, &'static str, String);

fn einval(msg: impl Into<String>) -> Fail {
    Fail(22, "EINVAL", msg.into())
}

fn prop(v: &Value, source: &str) -> Value {
    let parsed = v.clone();
    json!({"value": v.to_string().trim_matches('"'), "rawvalue": v.to_string().trim_matches('"'), "parsed": parsed, "source": source})
}

/// TrueNAS query filters: `[field, op, value]` with dotted fields; `=`, `!=`, `^`, `in`.
fn matches(obj: &Value, filters: &Value) -> bool {
    filters.as_array().into_iter().flatten().all(|f| {
        let (k, op, want) = (
            f[0].as_str().unwrap_or(""),
            f[1].as_str().unwrap_or(""),
            &f[2],
        );
        let mut have = obj;
        for part in k.split('.') {
            have = &have[part];
        }
        match op {
            "=" => have == want,
            "!=" => have != want,
            "^" => have
                .as_str()
                .zip(want.as_str())
                .is_some_and(|(h, w)| h.starts_with(w)),
            "in" => want.as_array().is_some_and(|a| a.contains(have)),
            _ => false,
        }
    })
}

fn dataset_json(name: &str, d: &Dataset) -> Value {
    let mut v = json!({
        "id": name,
        "name": name,
        "pool": name.split('/').next().unwrap_or(name),
        "type": "FILESYSTEM",
        "mountpoint": format!("/mnt/{name}"),
        "quota": prop(&json!(0), "DEFAULT"),
        "compression": prop(&json!("LZ4"), "INHERITED"),
        "atime": prop(&json!("OFF"), "DEFAULT"),
        "user_properties": {},
    });
    for (k, (val, src)) in &d.props {
        v[k] = prop(val, src);
    }
    for (k, val) in &d.user {
        v["user_properties"][k] = json!({"value": val, "source": "LOCAL"});
    }
    v
}

impl Ctx {
    async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(&self, s: S, secure: bool) {
        let Ok(ws) = tokio_tungstenite::accept_async(s).await else {
            return;
        };
        let (mut tx, mut rx) = ws.split();
        let mut authed = false;
        while let Some(Ok(m)) = rx.next().await {
            let Message::Text(t) = m else { continue };
            let Ok(req) = serde_json::from_str::<Value>(t.as_str()) else {
                continue;
            };
            let id = req["id"].clone();
            let method = req["method"].as_str().unwrap_or("").to_string();
            let params = req["params"].clone();
            self.state.lock().unwrap().calls.push(method.clone());
            let result = if method == "auth.login_with_api_key" {
                let key = params[0].as_str().unwrap_or("");
                let mut st = self.state.lock().unwrap();
                let ok = match st.keys.get_mut(key) {
                    Some(revoked) if !secure => {
                        // TrueNAS revokes a key it received in clear.
                        *revoked = true;
                        st.plain_logins += 1;
                        false
                    }
                    Some(revoked) => !*revoked,
                    None => false,
                };
                authed = ok;
                Ok(json!(ok))
            } else if method == "system.version" {
                Ok(json!(self.state.lock().unwrap().version.clone()))
            } else if !authed {
                Err(Fail(13, "ENOTAUTHENTICATED", "Not authenticated".into()))
            } else if method == "filesystem.setperm" {
                // A job: progress events first, the reply when it ended.
                let job = self.start_job(&method, &params);
                let mut ended = self.job_updates(job);
                let mut dropped = false;
                while let Some(ev) = ended.recv().await {
                    if tx.send(Message::text(ev.to_string())).await.is_err() {
                        dropped = true;
                    }
                    if self.drop_during_job.swap(false, Ordering::SeqCst) {
                        // The connection goes; the job goes on.
                        return;
                    }
                }
                if dropped {
                    return;
                }
                let st = self.state.lock().unwrap();
                let j = &st.jobs[&job];
                if j["state"] == "SUCCESS" {
                    Ok(j["result"].clone())
                } else {
                    Err(einval(
                        j["error"].as_str().unwrap_or("job failed").to_string(),
                    ))
                }
            } else {
                self.call(&method, &params)
            };
            let reply = match result {
                Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
                Err(Fail(-32601, name, reason)) => json!({
                    "jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": "Method not found", "data": {"errname": name, "reason": reason}}
                }),
                Err(Fail(errno, name, reason)) => json!({
                    "jsonrpc": "2.0", "id": id,
                    "error": {"code": -32001, "message": "Method call error",
                              "data": {"error": errno, "errname": name, "reason": reason, "trace": null, "extra": []}}
                }),
            };
            if tx.send(Message::text(reply.to_string())).await.is_err() {
                return;
            }
        }
    }

    fn start_job(&self, method: &str, params: &Value) -> i64 {
        let mut st = self.state.lock().unwrap();
        let id = st.next_id;
        st.next_id += 1;
        st.jobs.insert(
            id,
            json!({"id": id, "method": method, "arguments": params, "state": "RUNNING",
                   "progress": {"percent": 0, "description": "starting"}, "result": null, "error": null}),
        );
        id
    }

    /// Runs job `id` to its end in a task of its own (it outlives the connection) and streams
    /// its `collection_update` events.
    fn job_updates(&self, id: i64) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let ctx = self.clone();
        tokio::spawn(async move {
            let step = Duration::from_millis(ctx.job_time.load(Ordering::SeqCst) / 3);
            for pct in [10, 50, 90] {
                tokio::time::sleep(step).await;
                let ev = {
                    let mut st = ctx.state.lock().unwrap();
                    let j = st.jobs.get_mut(&id).unwrap();
                    j["progress"] = json!({"percent": pct, "description": "setting permissions"});
                    json!({"jsonrpc": "2.0", "method": "collection_update",
                           "params": {"msg": "changed", "collection": "core.get_jobs", "id": id, "fields": j.clone()}})
                };
                let _ = tx.send(ev);
            }
            let mut st = ctx.state.lock().unwrap();
            let args = st.jobs[&id]["arguments"][0].clone();
            let outcome = ctx.setperm(&mut st, &args);
            let j = st.jobs.get_mut(&id).unwrap();
            match outcome {
                Ok(()) => {
                    j["state"] = json!("SUCCESS");
                    j["progress"] = json!({"percent": 100, "description": "done"});
                }
                Err(Fail(_, _, reason)) => {
                    j["state"] = json!("FAILED");
                    j["error"] = json!(reason);
                }
            }
        });
        rx
    }

    fn setperm(&self, st: &mut State, a: &Value) -> Result<(), Fail> {
        let path = a["path"].as_str().unwrap_or("");
        let name = path
            .strip_prefix("/mnt/")
            .ok_or_else(|| einval("path must be under /mnt"))?;
        let d = st
            .datasets
            .get_mut(name)
            .ok_or_else(|| Fail(2, "ENOENT", format!("{path}: not found")))?;
        if let Some(u) = a["uid"].as_u64() {
            d.uid = u as u32;
        }
        if let Some(g) = a["gid"].as_u64() {
            d.gid = g as u32;
        }
        if let Some(m) = a["mode"].as_str() {
            d.mode = u32::from_str_radix(m, 8).map_err(|_| einval("mode: not octal"))?;
        }
        Ok(())
    }

    fn new_id(st: &mut State) -> i64 {
        let id = st.next_id;
        st.next_id += 1;
        id
    }

    fn call(&self, method: &str, p: &Value) -> Result<Value, Fail> {
        let mut st = self.state.lock().unwrap();
        let newer = st.version.as_str() >= "25.10";
        match method {
            "core.get_jobs" => Ok(json!(
                st.jobs
                    .values()
                    .filter(|j| matches(j, &p[0]))
                    .cloned()
                    .collect::<Vec<_>>()
            )),
            "pool.dataset.query" => Ok(json!(
                st.datasets
                    .iter()
                    .map(|(n, d)| dataset_json(n, d))
                    .filter(|d| matches(d, &p[0]))
                    .collect::<Vec<_>>()
            )),
            "pool.dataset.create" => {
                let a = &p[0];
                let name = a["name"].as_str().ok_or_else(|| einval("name: required"))?;
                if name.len() > 200 {
                    return Err(einval("name: dataset names are limited to 200 characters"));
                }
                let parent = name.rsplit_once('/').map(|x| x.0).unwrap_or("");
                if !st.datasets.contains_key(parent) {
                    if a["create_ancestors"] != true
                        || !st
                            .datasets
                            .contains_key(name.split('/').next().unwrap_or(""))
                    {
                        return Err(Fail(
                            2,
                            "ENOENT",
                            format!("{parent}: parent dataset does not exist"),
                        ));
                    }
                    let mut at = String::new();
                    for part in parent.split('/') {
                        if !at.is_empty() {
                            at.push('/');
                        }
                        at.push_str(part);
                        st.datasets.entry(at.clone()).or_insert_with(|| Dataset {
                            mode: 0o755,
                            ..Dataset::default()
                        });
                    }
                }
                if st.datasets.contains_key(name) {
                    return Err(Fail(
                        17,
                        "EEXIST",
                        format!("{name}: dataset already exists"),
                    ));
                }
                let mut d = Dataset {
                    mode: 0o755,
                    ..Dataset::default()
                };
                if let Some(q) = a["quota"].as_u64() {
                    d.props.insert("quota".into(), (json!(q), "LOCAL"));
                }
                for k in ["recordsize", "atime", "compression"] {
                    if let Some(v) = a.get(k) {
                        d.props.insert(k.into(), (v.clone(), "LOCAL"));
                    }
                }
                for u in a["user_properties"].as_array().into_iter().flatten() {
                    let k = u["key"].as_str().unwrap_or("");
                    if !k.contains(':') {
                        return Err(einval(format!(
                            "user_properties: `{k}` needs a namespace (`ns:name`)"
                        )));
                    }
                    d.user
                        .insert(k.into(), u["value"].as_str().unwrap_or("").into());
                }
                let out = dataset_json(name, &d);
                st.datasets.insert(name.into(), d);
                Ok(out)
            }
            "pool.dataset.update" => {
                let name = p[0].as_str().unwrap_or("");
                let a = &p[1];
                let d = st
                    .datasets
                    .get_mut(name)
                    .ok_or_else(|| Fail(2, "ENOENT", format!("{name}: not found")))?;
                for (k, v) in a.as_object().into_iter().flatten() {
                    match k.as_str() {
                        "user_properties_update" => {
                            for u in v.as_array().into_iter().flatten() {
                                let key = u["key"].as_str().unwrap_or("").to_string();
                                if !key.contains(':') {
                                    return Err(einval(format!(
                                        "user_properties_update: `{key}` needs a namespace"
                                    )));
                                }
                                if u["remove"] == true {
                                    d.user.remove(&key);
                                } else {
                                    d.user.insert(key, u["value"].as_str().unwrap_or("").into());
                                }
                            }
                        }
                        _ if v == "INHERIT" => {
                            d.props.remove(k);
                        }
                        "quota" | "atime" | "compression" | "recordsize" => {
                            d.props.insert(k.clone(), (v.clone(), "LOCAL"));
                        }
                        other => return Err(einval(format!("{other}: unknown field"))),
                    }
                }
                Ok(dataset_json(name, d))
            }
            "pool.dataset.delete" => {
                let name = p[0].as_str().unwrap_or("").to_string();
                if !st.datasets.contains_key(&name) {
                    return Err(Fail(2, "ENOENT", format!("{name}: not found")));
                }
                let prefix = format!("{name}/");
                let children = st.datasets.keys().any(|k| k.starts_with(&prefix));
                if children && p[1]["recursive"] != true {
                    return Err(einval(format!("{name} has children; use recursive")));
                }
                st.datasets
                    .retain(|k, _| k != &name && !k.starts_with(&prefix));
                st.snapshots
                    .retain(|(d, _, _)| d != &name && !d.starts_with(&prefix));
                Ok(json!(true))
            }
            "sharing.nfs.query" => Ok(json!(
                st.shares
                    .values()
                    .filter(|s| matches(s, &p[0]))
                    .cloned()
                    .collect::<Vec<_>>()
            )),
            "sharing.nfs.create" | "sharing.nfs.update" => {
                let (id, a) = if method.ends_with("create") {
                    (Self::new_id(&mut st), &p[0])
                } else {
                    (p[0].as_i64().unwrap_or(-1), &p[1])
                };
                let mut share = if method.ends_with("create") {
                    json!({"id": id, "path": "", "aliases": [], "comment": "", "networks": [], "hosts": [],
                           "ro": false, "maproot_user": null, "maproot_group": null, "mapall_user": null,
                           "mapall_group": null, "security": [], "enabled": true, "locked": false, "expose_snapshots": false})
                } else {
                    st.shares
                        .get(&id)
                        .cloned()
                        .ok_or_else(|| Fail(2, "ENOENT", format!("share {id} does not exist")))?
                };
                for (k, v) in a.as_object().into_iter().flatten() {
                    share[k] = v.clone();
                }
                let path = share["path"].as_str().unwrap_or("");
                let ds = path.strip_prefix("/mnt/").unwrap_or("");
                if !st.datasets.contains_key(ds) {
                    return Err(Fail(
                        2,
                        "ENOENT",
                        format!("sharing_nfs_create.path: {path}: path does not exist"),
                    ));
                }
                if share["comment"].as_str().is_some_and(|c| c.len() > 1024) {
                    return Err(einval("comment: at most 1024 characters"));
                }
                for n in share["networks"].as_array().into_iter().flatten() {
                    if !n.as_str().is_some_and(|n| n.contains('/')) {
                        return Err(einval(format!(
                            "networks: {n} is not a network in CIDR notation"
                        )));
                    }
                }
                for h in share["hosts"].as_array().into_iter().flatten() {
                    if h.as_str()
                        .is_none_or(|h| h.contains(' ') || h.contains('"'))
                    {
                        return Err(einval(format!("hosts: {h} is not a valid host")));
                    }
                }
                if st
                    .shares
                    .values()
                    .any(|s| s["path"] == share["path"] && s["id"] != id)
                {
                    return Err(Fail(17, "EEXIST", format!("{path}: already exported")));
                }
                st.shares.insert(id, share.clone());
                Ok(share)
            }
            "sharing.nfs.delete" => {
                let id = p[0].as_i64().unwrap_or(-1);
                st.shares
                    .remove(&id)
                    .map(|_| json!(true))
                    .ok_or_else(|| Fail(2, "ENOENT", format!("share {id}")))
            }
            "pool.snapshottask.query" => Ok(json!(
                st.tasks
                    .values()
                    .filter(|t| matches(t, &p[0]))
                    .cloned()
                    .collect::<Vec<_>>()
            )),
            "pool.snapshottask.create" | "pool.snapshottask.update" => {
                let (id, a) = if method.ends_with("create") {
                    (Self::new_id(&mut st), &p[0])
                } else {
                    (p[0].as_i64().unwrap_or(-1), &p[1])
                };
                let mut task = if method.ends_with("create") {
                    json!({"id": id, "dataset": "", "recursive": false, "exclude": [], "lifetime_value": 2,
                           "lifetime_unit": "WEEK", "enabled": true, "naming_schema": "auto-%Y-%m-%d_%H-%M",
                           "allow_empty": true, "schedule": {"minute": "00", "hour": "*", "dom": "*", "month": "*",
                           "dow": "*", "begin": "00:00", "end": "23:59"}, "state": {"state": "PENDING"}})
                } else {
                    st.tasks
                        .get(&id)
                        .cloned()
                        .ok_or_else(|| Fail(2, "ENOENT", format!("task {id}")))?
                };
                for (k, v) in a.as_object().into_iter().flatten() {
                    if k == "schedule" {
                        for (sk, sv) in v.as_object().into_iter().flatten() {
                            task["schedule"][sk] = sv.clone();
                        }
                    } else {
                        task[k] = v.clone();
                    }
                }
                if !st
                    .datasets
                    .contains_key(task["dataset"].as_str().unwrap_or(""))
                {
                    return Err(Fail(
                        2,
                        "ENOENT",
                        format!("dataset {} does not exist", task["dataset"]),
                    ));
                }
                if !["HOUR", "DAY", "WEEK", "MONTH", "YEAR"]
                    .contains(&task["lifetime_unit"].as_str().unwrap_or(""))
                {
                    return Err(einval("lifetime_unit: invalid"));
                }
                st.tasks.insert(id, task.clone());
                Ok(task)
            }
            "pool.snapshottask.delete" => {
                let id = p[0].as_i64().unwrap_or(-1);
                // Deleting a task leaves its snapshots, and unbinds it from replications.
                for r in st.replications.values_mut() {
                    if let Some(a) = r["periodic_snapshot_tasks"].as_array_mut() {
                        a.retain(|t| t.as_i64() != Some(id));
                    }
                }
                st.tasks
                    .remove(&id)
                    .map(|_| json!(true))
                    .ok_or_else(|| Fail(2, "ENOENT", format!("task {id}")))
            }
            "keychaincredential.query" => Ok(json!(
                st.credentials
                    .values()
                    .filter(|c| matches(c, &p[0]))
                    .cloned()
                    .collect::<Vec<_>>()
            )),
            "replication.query" => Ok(json!(
                st.replications
                    .values()
                    .map(|r| {
                        // Listed with its SSH connection and snapshot tasks as objects.
                        let mut r = r.clone();
                        r["ssh_credentials"] = r["ssh_credentials"]
                            .as_i64()
                            .and_then(|c| st.credentials.get(&c).cloned())
                            .unwrap_or(Value::Null);
                        let tasks: Vec<Value> = r["periodic_snapshot_tasks"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|t| t.as_i64().and_then(|t| st.tasks.get(&t).cloned()))
                            .collect();
                        r["periodic_snapshot_tasks"] = json!(tasks);
                        r
                    })
                    .filter(|r| matches(r, &p[0]))
                    .collect::<Vec<_>>()
            )),
            "replication.create" | "replication.update" => {
                let create = method.ends_with("create");
                let (id, a) = if create {
                    (Self::new_id(&mut st), &p[0])
                } else {
                    (p[0].as_i64().unwrap_or(-1), &p[1])
                };
                let f = if create {
                    "replication_create"
                } else {
                    "replication_update"
                };
                let mut r = if create {
                    json!({"id": id, "ssh_credentials": null, "sudo": false, "exclude": [], "properties": true,
                           "periodic_snapshot_tasks": [], "naming_schema": [], "also_include_naming_schema": [],
                           "schedule": null, "restrict_schedule": null, "only_matching_schedule": false,
                           "allow_from_scratch": false, "readonly": "SET", "hold_pending_snapshots": false,
                           "lifetime_value": null, "lifetime_unit": null, "retries": 5, "enabled": true,
                           "state": {"state": "PENDING"}, "job": null, "has_encrypted_dataset_keys": false})
                } else {
                    st.replications
                        .get(&id)
                        .cloned()
                        .ok_or_else(|| Fail(2, "ENOENT", format!("replication {id}")))?
                };
                for (k, v) in a.as_object().into_iter().flatten() {
                    if ["id", "state", "job"].contains(&k.as_str()) {
                        return Err(einval(format!("{f}.{k}: Extra inputs are not permitted")));
                    }
                    r[k] = v.clone();
                }
                for key in [
                    "name",
                    "direction",
                    "transport",
                    "source_datasets",
                    "target_dataset",
                    "recursive",
                    "auto",
                    "retention_policy",
                ] {
                    if r.get(key).is_none_or(Value::is_null) {
                        return Err(einval(format!("{f}.{key}: Field required")));
                    }
                }
                if r["name"].as_str().is_none_or(str::is_empty)
                    || st
                        .replications
                        .values()
                        .any(|o| o["name"] == r["name"] && o["id"] != id)
                {
                    return Err(einval(format!(
                        "{f}.name: Name must be unique and not empty"
                    )));
                }
                if !matches!(r["direction"].as_str(), Some("PUSH" | "PULL")) {
                    return Err(einval(format!(
                        "{f}.direction: Input should be 'PUSH' or 'PULL'"
                    )));
                }
                match (r["transport"].as_str(), r["ssh_credentials"].as_i64()) {
                    (Some("LOCAL"), None) => {}
                    (Some("LOCAL"), Some(_)) => {
                        return Err(einval(format!(
                            "{f}.ssh_credentials: Remote credentials have no sense for local replication"
                        )));
                    }
                    (Some("SSH" | "SSH+NETCAT"), Some(c)) => {
                        if st
                            .credentials
                            .get(&c)
                            .is_none_or(|c| c["type"] != "SSH_CREDENTIALS")
                        {
                            return Err(einval(format!(
                                "{f}.ssh_credentials: Invalid SSH credentials {c}"
                            )));
                        }
                    }
                    (Some("SSH" | "SSH+NETCAT"), None) => {
                        return Err(einval(format!(
                            "{f}.ssh_credentials: SSH Credentials are required for non-local replication"
                        )));
                    }
                    _ => {
                        return Err(einval(format!(
                            "{f}.transport: Input should be 'SSH', 'SSH+NETCAT' or 'LOCAL'"
                        )));
                    }
                }
                let sources: Vec<String> = r["source_datasets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect();
                if sources.is_empty() || r["target_dataset"].as_str().is_none_or(str::is_empty) {
                    return Err(einval(format!(
                        "{f}.source_datasets: List should have at least 1 item"
                    )));
                }
                let mut bound = Vec::new();
                for t in r["periodic_snapshot_tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let task = t.as_i64().and_then(|t| st.tasks.get(&t)).ok_or_else(|| {
                        einval(format!(
                            "{f}.periodic_snapshot_tasks: Invalid periodic snapshot task {t}"
                        ))
                    })?;
                    bound.push(task.clone());
                }
                if !bound.is_empty() {
                    if r["direction"] != "PUSH" {
                        return Err(einval(format!(
                            "{f}.periodic_snapshot_tasks: Only push replication tasks can be bound to periodic snapshot tasks"
                        )));
                    }
                    for src in &sources {
                        let covered = bound.iter().any(|t| {
                            let d = t["dataset"].as_str().unwrap_or_default();
                            d == src
                                || (t["recursive"] == true && src.starts_with(&format!("{d}/")))
                        });
                        if !covered {
                            return Err(einval(format!(
                                "{f}.source_datasets: Dataset {src} is not included in any bound periodic snapshot task"
                            )));
                        }
                    }
                } else if r["auto"] == true && r["schedule"].is_null() {
                    return Err(einval(format!(
                        "{f}.auto: Automatic replication without bound periodic snapshot tasks needs a schedule"
                    )));
                }
                if r["retention_policy"] == "CUSTOM"
                    && (r["lifetime_value"].as_u64().is_none_or(|v| v < 1)
                        || !["HOUR", "DAY", "WEEK", "MONTH", "YEAR"]
                            .contains(&r["lifetime_unit"].as_str().unwrap_or("")))
                {
                    return Err(einval(format!(
                        "{f}.lifetime_value: Custom retention needs a lifetime"
                    )));
                }
                st.replications.insert(id, r.clone());
                Ok(r)
            }
            "replication.delete" => {
                let id = p[0].as_i64().unwrap_or(-1);
                st.replications
                    .remove(&id)
                    .map(|_| json!(true))
                    .ok_or_else(|| Fail(2, "ENOENT", format!("replication {id}")))
            }
            "pool.snapshot.query" | "zfs.snapshot.query" => {
                let exists = (method == "pool.snapshot.query") == newer;
                if !exists {
                    return Err(Fail(
                        -32601,
                        "EMETHODNOTFOUND",
                        format!("Method {method} not found"),
                    ));
                }
                // Properties only when asked for (`extra.properties`), as the middleware
                // reads them from ZFS: value, rawvalue (Unix seconds for `creation`), parsed.
                let creation = p[1]["extra"]["properties"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "creation"));
                Ok(json!(
                    st.snapshots
                        .iter()
                        .enumerate()
                        .map(|(i, (d, n, at))| {
                            let mut s = json!({"id": format!("{d}@{n}"), "dataset": d, "name": format!("{d}@{n}"), "snapshot_name": n, "createtxg": i});
                            if creation {
                                s["properties"] = json!({"creation": {"value": at.to_string(), "rawvalue": at.to_string(), "parsed": {"$date": at * 1000}, "source": "NONE"}});
                            }
                            s
                        })
                        .filter(|s| matches(s, &p[0]))
                        .collect::<Vec<_>>()
                ))
            }
            other => Err(Fail(
                -32601,
                "EMETHODNOTFOUND",
                format!("Method {other} not found"),
            )),
        }
    }
}
