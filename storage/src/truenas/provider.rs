//! The `truenas` backend's provider: everything but its description (the `client` feature).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use cloudlet_core::error::ProviderError;
use cloudlet_core::plan::FieldChange;
use cloudlet_core::{Data, Domain, Provider, Resource, ResourceId};
use serde_json::{Value, json};

use crate::{DATASET, NFS_EXPORT, REPLICATION, SNAPSHOT_TASK};

use cloudlet_core::backend::{BoxFuture, ConnectError, Connection};

/// The NAS a `truenas` target names.
pub fn open(c: &Connection<'_>) -> Result<TrueNas, ConnectError> {
    Ok(TrueNas::new(
        c.lab.name.clone(),
        Connect {
            endpoint: c.endpoint()?,
            api_key: c.credentials()?,
            ca: c.ca(),
        },
    ))
}

pub(super) fn connect<'a>(
    c: &'a Connection<'a>,
) -> BoxFuture<'a, Result<std::sync::Arc<dyn Provider>, ConnectError>> {
    Box::pin(async move { Ok(std::sync::Arc::new(open(c)?) as std::sync::Arc<dyn Provider>) })
}
use super::client::{Client, Connect, RpcError, Stats};

const LAB_PROP: &str = "org.cloudlet:lab";
const ID_PROP: &str = "org.cloudlet:id";
const RETAIN_PROP: &str = "org.cloudlet:retain";
const PARENT_PROP: &str = "org.cloudlet:parent";
const OWNER_PROP: &str = "org.cloudlet:owner";
const MODE_PROP: &str = "org.cloudlet:mode";
/// Native ZFS properties cloudlet sets (the body names them the same), other than the quota.
const MANAGED: [&str; 2] = ["recordsize", "atime"];
const MIB: u64 = 1 << 20;
/// What follows a snapshot task's name in its naming schema.
const TASK_SUFFIX: &str = "-%Y%m%d-%H%M";

/// A TrueNAS release, as `system.version` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

impl Version {
    /// Parses `TrueNAS-SCALE-25.10.1`, `25.04.2.1` and the like.
    pub fn parse(s: &str) -> Option<Version> {
        let digits = s.trim_start_matches(|c: char| !c.is_ascii_digit());
        let mut it = digits.split(['.', '-']);
        let major = it.next()?.parse().ok()?;
        let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Some(Version(major, minor))
    }

    /// The method that lists snapshots on this release.
    pub fn snapshot_query(self) -> &'static str {
        if self >= Version(25, 10) {
            "pool.snapshot.query"
        } else {
            "zfs.snapshot.query"
        }
    }
}

/// The TrueNAS provider.
pub struct TrueNas {
    lab: String,
    connect: Connect,
    client: tokio::sync::Mutex<Option<std::sync::Arc<Client>>>,
    /// Native ids (shares, tasks) and versions seen by the last observe.
    ids: Mutex<HashMap<ResourceId, i64>>,
    version: Mutex<Option<Version>>,
    stats: std::sync::Arc<Stats>,
}

impl std::fmt::Debug for TrueNas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrueNas")
            .field("endpoint", &self.connect.endpoint)
            .finish_non_exhaustive()
    }
}

fn backend(e: RpcError) -> ProviderError {
    ProviderError::Backend {
        retryable: e.retryable(),
        message: e.to_string(),
    }
}

fn invalid(r: &Resource, message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidData {
        what: r.id.to_string(),
        message: message.into(),
    }
}

/// `/mnt/POOL/a/b` → `POOL/a/b`.
fn dataset_name(r: &Resource, path: &str) -> Result<String, ProviderError> {
    path.strip_prefix("/mnt/")
        .filter(|n| !n.is_empty() && !n.ends_with('/'))
        .map(str::to_string)
        .ok_or_else(|| {
            invalid(
                r,
                format!("`{path}` is not a TrueNAS dataset path (`/mnt/POOL/...`)"),
            )
        })
}

/// A property's value when it is set on the dataset itself.
fn local<'a>(ds: &'a Value, prop: &str) -> Option<&'a Value> {
    let p = &ds[prop];
    (p["source"] == "LOCAL").then_some(p)
}

fn user_prop<'a>(ds: &'a Value, key: &str) -> Option<&'a str> {
    ds["user_properties"][key]["value"].as_str()
}

/// A snapshot task's schedule and retention for "every N seconds, keep K".
fn schedule(every_s: u64, keep: u64) -> (Value, u64, &'static str) {
    let sched = |minute: String, hour: String, dom: String| json!({"minute": minute, "hour": hour, "dom": dom, "month": "*", "dow": "*"});
    let s = if every_s < 3600 {
        let m = (every_s / 60).max(1);
        sched(format!("*/{m}"), "*".into(), "*".into())
    } else if every_s < 86_400 {
        let h = every_s / 3600;
        let hour = if h == 1 { "*".into() } else { format!("*/{h}") };
        sched("0".into(), hour, "*".into())
    } else {
        let d = every_s / 86_400;
        let dom = if d == 1 { "*".into() } else { format!("*/{d}") };
        sched("0".into(), "0".into(), dom)
    };
    // Retention is a lifetime in TrueNAS: every × keep, rounded up to a whole unit (keeping
    // a little more, never less).
    let life = every_s.saturating_mul(keep);
    let (unit, secs) = [
        ("YEAR", 31_536_000),
        ("MONTH", 2_592_000),
        ("WEEK", 604_800),
        ("DAY", 86_400),
    ]
    .into_iter()
    .find(|(_, s)| life >= *s && life.is_multiple_of(*s))
    .unwrap_or(("HOUR", 3600));
    (s, life.div_ceil(secs), unit)
}

/// A replication's retention in TrueNAS's units: the largest of weeks, days and hours that
/// holds it whole (validation keeps it in whole hours).
fn lifetime(secs: u64) -> (u64, &'static str) {
    for (unit, n) in [("WEEK", 604_800), ("DAY", 86_400)] {
        if secs.is_multiple_of(n) {
            return (secs / n, unit);
        }
    }
    (secs.div_ceil(3600).max(1), "HOUR")
}

fn unit_secs(unit: &str) -> u64 {
    match unit {
        "YEAR" => 31_536_000,
        "MONTH" => 2_592_000,
        "WEEK" => 604_800,
        "DAY" => 86_400,
        _ => 3600,
    }
}

/// The period of a schedule cloudlet wrote (the reverse of [`schedule`]).
fn period(s: &Value) -> u64 {
    let step = |f: &str| f.strip_prefix("*/").and_then(|n| n.parse::<u64>().ok());
    let (m, h, d) = (
        s["minute"].as_str().unwrap_or("0"),
        s["hour"].as_str().unwrap_or("*"),
        s["dom"].as_str().unwrap_or("*"),
    );
    if let Some(n) = step(m) {
        n * 60
    } else if h == "*" {
        3600
    } else if let Some(n) = step(h) {
        n * 3600
    } else if let Some(n) = step(d) {
        n * 86_400
    } else {
        86_400
    }
}

impl TrueNas {
    /// A provider for `lab` reached as `connect` says (connected on first use).
    pub fn new(lab: impl Into<String>, connect: Connect) -> Self {
        TrueNas {
            lab: lab.into(),
            connect,
            client: tokio::sync::Mutex::new(None),
            ids: Mutex::new(HashMap::new()),
            version: Mutex::new(None),
            stats: std::sync::Arc::default(),
        }
    }

    /// Calls made so far by this provider's connections.
    pub fn calls(&self) -> u64 {
        self.stats.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes made so far.
    pub fn writes(&self) -> u64 {
        self.stats.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn marker(&self) -> String {
        format!("cloudlet-{}-", self.lab)
    }

    async fn client(&self) -> Result<std::sync::Arc<Client>, ProviderError> {
        let mut g = self.client.lock().await;
        if let Some(c) = g.as_ref() {
            return Ok(c.clone());
        }
        let c = std::sync::Arc::new(
            Client::connect(&self.connect, self.stats.clone())
                .await
                .map_err(backend)?,
        );
        *g = Some(c.clone());
        Ok(c)
    }

    /// Calls `method`; a dropped connection is forgotten so the next call reconnects.
    async fn call(&self, method: &str, params: Value) -> Result<Value, ProviderError> {
        let c = self.client().await?;
        let r = c.call(method, params).await;
        if let Err(RpcError::Disconnected { .. }) = &r {
            *self.client.lock().await = None;
        }
        r.map_err(backend)
    }

    /// The release, asked once per provider.
    pub async fn version(&self) -> Result<Version, ProviderError> {
        if let Some(v) = self.version.lock().ok().and_then(|g| *g) {
            return Ok(v);
        }
        let raw = self.call("system.version", json!([])).await?;
        let v = raw
            .as_str()
            .and_then(Version::parse)
            .ok_or_else(|| ProviderError::Backend {
                message: format!("TrueNAS reported an unknown version {raw}"),
                retryable: false,
            })?;
        if v < Version(24, 10) {
            return Err(ProviderError::Backend {
                message: format!(
                    "TrueNAS {}.{} is too old: cloudlet needs 24.10 or newer (JSON-RPC over WebSocket)",
                    v.0, v.1
                ),
                retryable: false,
            });
        }
        if let Ok(mut g) = self.version.lock() {
            *g = Some(v);
        }
        Ok(v)
    }

    /// Runs a job method, unless the same job (an earlier apply's, whose connection dropped)
    /// is running or finished: then waits for that one instead.
    async fn job(
        &self,
        method: &str,
        args: Value,
        finished_too: bool,
    ) -> Result<(), ProviderError> {
        let c = self.client().await?;
        if c.find_job(method, &args, finished_too)
            .await
            .map_err(backend)?
        {
            return Ok(());
        }
        self.call(method, args).await.map(|_| ())
    }

    fn remember(&self, id: &ResourceId, native: i64) {
        if let Ok(mut m) = self.ids.lock() {
            m.insert(id.clone(), native);
        }
    }

    async fn native_id(&self, r: &Resource, method: &str, key: &str) -> Result<i64, ProviderError> {
        if let Some(id) = self.ids.lock().ok().and_then(|m| m.get(&r.id).copied()) {
            return Ok(id);
        }
        let want = format!("{}{}", self.marker(), r.id.name);
        let found = self.call(method, json!([[[key, "=", want]]])).await?;
        found[0]["id"]
            .as_i64()
            .ok_or_else(|| invalid(r, "not found on TrueNAS"))
    }

    // ---- datasets ----

    fn dataset_body(&self, ds: &Value) -> Option<Resource> {
        if user_prop(ds, LAB_PROP) != Some(self.lab.as_str()) {
            return None;
        }
        let name = user_prop(ds, ID_PROP)?;
        let retain = user_prop(ds, RETAIN_PROP) != Some("false");
        let mut body = json!({
            "path": ds["mountpoint"].as_str().map(str::to_string)
                .unwrap_or_else(|| format!("/mnt/{}", ds["id"].as_str().unwrap_or_default())),
            "retain": retain,
        });
        if let Some(p) = user_prop(ds, PARENT_PROP) {
            body["parent"] = json!(p);
        }
        if let Some(q) = local(ds, "quota")
            .and_then(|p| p["parsed"].as_u64())
            .filter(|v| *v > 0)
        {
            body["quota_mib"] = json!(q / MIB);
        }
        for prop in MANAGED {
            if let Some(v) = local(ds, prop).and_then(|p| p["value"].as_str()) {
                body[prop] = json!(v);
            }
        }
        if let Some((u, g)) = user_prop(ds, OWNER_PROP).and_then(|o| o.split_once(':'))
            && let (Ok(u), Ok(g)) = (u.parse::<u32>(), g.parse::<u32>())
        {
            body["owner"] = json!({"uid": u, "gid": g});
        }
        if let Some(m) = user_prop(ds, MODE_PROP) {
            body["mode"] = json!(m);
        }
        Some(
            Resource::new(ResourceId::new(Domain::Storage, DATASET, name), body)
                .holding(Data::retained(retain)),
        )
    }

    fn user_props(&self, r: &Resource, v: &Value) -> Vec<Value> {
        let mut props = vec![
            json!({"key": LAB_PROP, "value": self.lab}),
            json!({"key": ID_PROP, "value": &*r.id.name}),
            json!({"key": RETAIN_PROP, "value": v["retain"].as_bool().unwrap_or(true).to_string()}),
        ];
        if let Some(p) = v["parent"].as_str() {
            props.push(json!({"key": PARENT_PROP, "value": p}));
        }
        props
    }

    /// Owner and mode: the setperm job, then the record of it. On an existing dataset a
    /// finished job with the same arguments counts (its reply was lost with its connection);
    /// on a new one only a job still running does.
    async fn set_perm(&self, name: &str, v: &Value, existing: bool) -> Result<(), ProviderError> {
        let (owner, mode) = (v.get("owner"), v["mode"].as_str());
        if owner.is_none() && mode.is_none() {
            return Ok(());
        }
        let mut args = json!({"path": format!("/mnt/{name}"), "options": {"stripacl": true}});
        if let Some(o) = owner {
            args["uid"] = o["uid"].clone();
            args["gid"] = o["gid"].clone();
        }
        if let Some(m) = mode {
            args["mode"] = json!(m.trim_start_matches('0'));
        }
        self.job("filesystem.setperm", json!([args]), existing)
            .await?;
        let mut update = Vec::new();
        if let Some(o) = owner {
            update.push(json!({"key": OWNER_PROP, "value": format!("{}:{}", o["uid"], o["gid"])}));
        }
        if let Some(m) = mode {
            update.push(json!({"key": MODE_PROP, "value": m}));
        }
        self.call(
            "pool.dataset.update",
            json!([name, {"user_properties_update": update}]),
        )
        .await
        .map(|_| ())
    }

    async fn create_dataset(&self, r: &Resource) -> Result<(), ProviderError> {
        let v = r.body.value();
        let name = dataset_name(r, v["path"].as_str().unwrap_or_default())?;
        let mut args = json!({
            "name": name,
            "type": "FILESYSTEM",
            // App volumes sit in APP/NAME below their export: the APP level comes along.
            "create_ancestors": true,
            "user_properties": self.user_props(r, &v),
        });
        if let Some(q) = v["quota_mib"].as_u64() {
            args["quota"] = json!(q * MIB);
        }
        for prop in MANAGED {
            if let Some(x) = v.get(prop) {
                args[prop] = x.clone();
            }
        }
        self.call("pool.dataset.create", json!([args])).await?;
        self.set_perm(&name, &v, false).await
    }

    async fn update_dataset(
        &self,
        r: &Resource,
        changes: &[FieldChange],
    ) -> Result<(), ProviderError> {
        let v = r.body.value();
        let name = dataset_name(r, v["path"].as_str().unwrap_or_default())?;
        let touched = |k: &str| {
            changes
                .iter()
                .any(|c| c.path == k || c.path.starts_with(&format!("{k}.")))
        };
        let mut args = json!({});
        if touched("quota_mib") {
            // No quota asked for any more: 0 is "none" for a quota.
            args["quota"] = json!(v["quota_mib"].as_u64().unwrap_or(0) * MIB);
        }
        for prop in MANAGED {
            if touched(prop) {
                args[prop] = match v.get(prop) {
                    Some(x) => x.clone(),
                    // Set by cloudlet before, no longer asked for: back to the inherited value.
                    None => json!("INHERIT"),
                };
            }
        }
        let mut props = self.user_props(r, &v);
        for (k, prop) in [
            ("owner", OWNER_PROP),
            ("mode", MODE_PROP),
            ("parent", PARENT_PROP),
        ] {
            if touched(k) && v.get(k).is_none() {
                props.push(json!({"key": prop, "remove": true}));
            }
        }
        args["user_properties_update"] = json!(props);
        self.call("pool.dataset.update", json!([name, args]))
            .await?;
        if touched("owner") || touched("mode") {
            self.set_perm(&name, &v, true).await?;
        }
        Ok(())
    }

    // ---- shares ----

    fn share_native(&self, r: &Resource) -> Result<Value, ProviderError> {
        let v = r.body.value();
        let path = v["path"].as_str().unwrap_or_default();
        dataset_name(r, path)?;
        let (mut networks, mut hosts) = (Vec::new(), Vec::new());
        for c in v["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            match c.strip_suffix("/32") {
                Some(ip) => hosts.push(ip.to_string()),
                None => networks.push(c.to_string()),
            }
        }
        let mut share = json!({
            "path": path,
            "comment": format!("{}{}", self.marker(), r.id.name),
            "networks": networks,
            "hosts": hosts,
            "ro": v["read_only"].as_bool().unwrap_or(false),
            "maproot_user": null,
            "maproot_group": null,
            "mapall_user": null,
            "mapall_group": null,
            "security": ["SYS"],
            "enabled": true,
        });
        match v["squash"].as_str() {
            Some("none") => {
                share["maproot_user"] = json!("root");
                share["maproot_group"] = json!("root");
            }
            Some("all") => {
                share["mapall_user"] = json!("nobody");
                share["mapall_group"] = json!("nogroup");
            }
            _ => {}
        }
        Ok(share)
    }

    fn share_body(s: &Value) -> Value {
        let mut clients: Vec<String> = s["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .chain(
                s["hosts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|h| {
                        if h.contains('/') {
                            h.to_string()
                        } else {
                            format!("{h}/32")
                        }
                    }),
            )
            .collect();
        clients.sort();
        let squash = if s["mapall_user"].is_string() {
            "all"
        } else if s["maproot_user"] == "root" {
            "none"
        } else {
            "root"
        };
        json!({
            "path": s["path"],
            "clients": clients,
            "read_only": s["ro"].as_bool().unwrap_or(false),
            "squash": squash,
            "security": "sys",
        })
    }

    // ---- snapshot tasks ----

    fn task_native(&self, r: &Resource) -> Result<Value, ProviderError> {
        let v = r.body.value();
        let dataset = dataset_name(r, v["path"].as_str().unwrap_or_default())?;
        let (schedule, lifetime, unit) = schedule(
            v["every_s"].as_u64().unwrap_or(3600),
            v["keep"].as_u64().unwrap_or(1),
        );
        Ok(json!({
            "dataset": dataset,
            "recursive": v["recursive"].as_bool().unwrap_or(false),
            "lifetime_value": lifetime,
            "lifetime_unit": unit,
            "naming_schema": self.task_schema(&r.id.name),
            "schedule": schedule,
            "allow_empty": true,
            "enabled": true,
        }))
    }

    /// The naming schema of snapshot task `name`'s snapshots: how cloudlet finds its task.
    fn task_schema(&self, name: &str) -> String {
        format!("{}{name}{TASK_SUFFIX}", self.marker())
    }

    fn task_body(t: &Value) -> Value {
        let every = period(&t["schedule"]).max(60);
        let life = t["lifetime_value"].as_u64().unwrap_or(0)
            * unit_secs(t["lifetime_unit"].as_str().unwrap_or("HOUR"));
        json!({
            "path": format!("/mnt/{}", t["dataset"].as_str().unwrap_or_default()),
            "every_s": every,
            "keep": life / every,
            "recursive": t["recursive"].as_bool().unwrap_or(false),
        })
    }

    // ---- replication tasks ----

    /// The replication task of `r` as TrueNAS takes it: a push, bound to the snapshot task of
    /// the same name (so it runs right after each snapshot), over the named SSH connection or
    /// on this NAS, the copies set read-only, never destroyed to start again from scratch.
    async fn replication_native(&self, r: &Resource) -> Result<Value, ProviderError> {
        let v = r.body.value();
        let source = dataset_name(r, v["source"].as_str().unwrap_or_default())?;
        let tasks = self
            .call(
                "pool.snapshottask.query",
                json!([[["naming_schema", "=", self.task_schema(&r.id.name)]]]),
            )
            .await?;
        let task = tasks[0]["id"].as_i64().ok_or_else(|| {
            invalid(
                r,
                "its periodic snapshot task is not on the NAS (cloudlet makes it first: apply again)",
            )
        })?;
        let (transport, credentials) = match v["ssh"].as_str() {
            Some(name) => {
                let found = self
                    .call(
                        "keychaincredential.query",
                        json!([[["name", "=", name], ["type", "=", "SSH_CREDENTIALS"]]]),
                    )
                    .await?;
                let id = found[0]["id"].as_i64().ok_or_else(|| {
                    invalid(
                        r,
                        format!(
                            "the NAS has no SSH connection named `{name}`: make it first (TrueNAS: Credentials → Backup Credentials → SSH Connections), then apply"
                        ),
                    )
                })?;
                ("SSH", json!(id))
            }
            None => ("LOCAL", Value::Null),
        };
        let (policy, value, unit) = match v["keep_for_s"].as_u64() {
            Some(k) => {
                let (value, unit) = lifetime(k);
                ("CUSTOM", json!(value), json!(unit))
            }
            None => ("SOURCE", Value::Null, Value::Null),
        };
        Ok(json!({
            "name": format!("{}{}", self.marker(), r.id.name),
            "direction": "PUSH",
            "transport": transport,
            "ssh_credentials": credentials,
            "source_datasets": [source],
            "target_dataset": v["to"],
            "recursive": v["recursive"].as_bool().unwrap_or(false),
            "periodic_snapshot_tasks": [task],
            "auto": true,
            "readonly": "SET",
            "allow_from_scratch": false,
            "retention_policy": policy,
            "lifetime_value": value,
            "lifetime_unit": unit,
            "enabled": true,
        }))
    }

    /// A replication task as TrueNAS lists it (its SSH connection and snapshot tasks as whole
    /// objects), in the lab's words; what cloudlet sets but finds otherwise (disabled, not
    /// automatic, no longer bound to its snapshot task, pulling) is said besides.
    fn replication_body(&self, name: &str, t: &Value) -> Value {
        let keep = (t["retention_policy"] == "CUSTOM").then(|| {
            t["lifetime_value"].as_u64().unwrap_or(0)
                * unit_secs(t["lifetime_unit"].as_str().unwrap_or("HOUR"))
        });
        let mut body = json!({
            "source": format!("/mnt/{}", t["source_datasets"][0].as_str().unwrap_or_default()),
            "to": t["target_dataset"],
            "ssh": if t["transport"] == "LOCAL" { Value::Null } else { t["ssh_credentials"]["name"].clone() },
            "keep_for_s": keep,
            "recursive": t["recursive"].as_bool().unwrap_or(false),
        });
        let bound = t["periodic_snapshot_tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["naming_schema"].as_str() == Some(self.task_schema(name).as_str()));
        for (key, ok) in [
            ("enabled", t["enabled"] == true),
            ("auto", t["auto"] == true),
            ("push", t["direction"] == "PUSH"),
            ("bound_to_snapshots", bound),
        ] {
            if !ok {
                body[key] = json!(false);
            }
        }
        body
    }

    /// The fields of a native object cloudlet compares (what it writes).
    fn same(native: &Value, actual: &Value) -> bool {
        native
            .as_object()
            .into_iter()
            .flatten()
            .all(|(k, v)| k == "comment" || k == "naming_schema" || &actual[k] == v)
    }

    /// The lab's datasets with their exports, usage and newest snapshot: one query each for
    /// datasets, shares and snapshots.
    pub async fn status(&self) -> Result<Vec<crate::VolumeStatus>, ProviderError> {
        let method = self.version().await?.snapshot_query();
        let datasets = self
            .call(
                "pool.dataset.query",
                json!([[], {"extra": {"flat": true, "retrieve_children": true, "user_properties": true}}]),
            )
            .await?;
        let shares = self
            .call(
                "sharing.nfs.query",
                json!([[["comment", "^", self.marker()]]]),
            )
            .await?;
        let ours: Vec<&Value> = datasets
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| user_prop(d, LAB_PROP) == Some(self.lab.as_str()))
            .collect();
        let names: Vec<&str> = ours.iter().filter_map(|d| d["id"].as_str()).collect();
        let snaps = self
            .call(
                method,
                json!([[["dataset", "in", names]], {"order_by": ["createtxg"], "extra": {"properties": ["creation"]}}]),
            )
            .await?;
        let mut out: Vec<crate::VolumeStatus> = ours
            .iter()
            .filter_map(|d| {
                let r = self.dataset_body(d)?;
                let body = r.body.value();
                let path = body["path"].as_str().unwrap_or_default().to_string();
                let exported_to = shares
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|s| s["path"] == path.as_str())
                    .map(|s| {
                        Self::share_body(s)["clients"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| c.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let newest = snaps
                    .as_array()
                    .into_iter()
                    .flatten()
                    .rev()
                    .find(|s| s["dataset"] == d["id"] && s["name"].is_string());
                let latest_snapshot = newest.and_then(|s| s["name"].as_str().map(str::to_string));
                // ZFS's `creation` in Unix seconds (its raw value).
                let latest_snapshot_at = newest.and_then(|s| {
                    s["properties"]["creation"]["rawvalue"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                });
                Some(crate::VolumeStatus {
                    name: r.id.name.to_string(),
                    path,
                    exported_to,
                    used_bytes: d["used"]["parsed"].as_u64(),
                    latest_snapshot,
                    latest_snapshot_at,
                    retain: r.data != Data::Disposable,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The lab's replication tasks and their last run's state.
    pub async fn replications(&self) -> Result<Vec<crate::ReplicationStatus>, ProviderError> {
        let marker = self.marker();
        let list = self
            .call("replication.query", json!([[["name", "^", marker]]]))
            .await?;
        let text = |v: &Value| v.as_str().map(str::to_string);
        let mut out: Vec<crate::ReplicationStatus> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let st = &t["state"];
                Some(crate::ReplicationStatus {
                    name: t["name"].as_str()?.strip_prefix(&marker)?.to_string(),
                    state: text(&st["state"]).unwrap_or_else(|| "PENDING".into()),
                    at: st["datetime"]["$date"].as_i64().map(|ms| ms / 1000),
                    last_snapshot: text(&st["last_snapshot"]),
                    error: text(&st["error"]),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The snapshots of `dataset` (newest last), with the method this release has.
    pub async fn snapshots(&self, dataset: &str) -> Result<Vec<String>, ProviderError> {
        let method = self.version().await?.snapshot_query();
        let list = self
            .call(
                method,
                json!([[["dataset", "=", dataset]], {"order_by": ["createtxg"]}]),
            )
            .await?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect())
    }
}

#[async_trait]
impl Provider for TrueNas {
    fn name(&self) -> &str {
        "truenas"
    }

    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        self.observe_with(domain, &[]).await
    }

    async fn observe_with(
        &self,
        domain: Domain,
        desired: &[Resource],
    ) -> Result<Vec<Resource>, ProviderError> {
        if domain != Domain::Storage {
            return Ok(Vec::new());
        }
        self.version().await?;
        let want: HashMap<&ResourceId, &Resource> = desired.iter().map(|r| (&r.id, r)).collect();
        let marker = self.marker();
        let (datasets, shares, tasks) = (
            self.call(
                "pool.dataset.query",
                json!([[], {"extra": {"flat": true, "retrieve_children": true, "user_properties": true}}]),
            )
            .await?,
            self.call("sharing.nfs.query", json!([[["comment", "^", marker]]]))
                .await?,
            self.call(
                "pool.snapshottask.query",
                json!([[["naming_schema", "^", marker]]]),
            )
            .await?,
        );
        let replications = self
            .call("replication.query", json!([[["name", "^", marker]]]))
            .await?;
        let mut out: Vec<Resource> = datasets
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| self.dataset_body(d))
            .collect();
        // Depends-on edges are not stored on TrueNAS: a resource the lab still has keeps the
        // lab's, which is what the plan compares.
        for r in &mut out {
            if let Some(w) = want.get(&r.id) {
                r.depends_on = w.depends_on.clone();
            }
        }
        for (list, kind, key) in [
            (&shares, NFS_EXPORT, "comment"),
            (&tasks, SNAPSHOT_TASK, "naming_schema"),
        ] {
            for s in list.as_array().into_iter().flatten() {
                let Some(rest) = s[key].as_str().and_then(|c| c.strip_prefix(&marker)) else {
                    continue;
                };
                let name = if kind == SNAPSHOT_TASK {
                    rest.strip_suffix(TASK_SUFFIX).unwrap_or(rest)
                } else {
                    rest
                };
                let id = ResourceId::new(Domain::Storage, kind, name);
                if let Some(n) = s["id"].as_i64() {
                    self.remember(&id, n);
                }
                let lab = want.get(&id).copied();
                let native = |r: &Resource| {
                    if kind == NFS_EXPORT {
                        self.share_native(r)
                    } else {
                        self.task_native(r)
                    }
                };
                let r = Resource::observed(
                    id,
                    lab,
                    |w| native(w).is_ok_and(|n| Self::same(&n, s)),
                    || {
                        if kind == NFS_EXPORT {
                            Self::share_body(s)
                        } else {
                            Self::task_body(s)
                        }
                    },
                );
                out.push(r);
            }
        }
        for t in replications.as_array().into_iter().flatten() {
            let Some(name) = t["name"].as_str().and_then(|n| n.strip_prefix(&marker)) else {
                continue;
            };
            let id = ResourceId::new(Domain::Storage, REPLICATION, name);
            if let Some(n) = t["id"].as_i64() {
                self.remember(&id, n);
            }
            let body = self.replication_body(name, t);
            out.push(Resource::observed(
                id,
                want.get(&ResourceId::new(Domain::Storage, REPLICATION, name))
                    .copied(),
                |w| w.body.value() == body,
                || body.clone(),
            ));
        }
        Ok(out)
    }

    async fn create(&self, r: &Resource) -> Result<(), ProviderError> {
        match &*r.id.kind {
            DATASET => self.create_dataset(r).await,
            NFS_EXPORT => {
                let s = self
                    .call("sharing.nfs.create", json!([self.share_native(r)?]))
                    .await?;
                if let Some(n) = s["id"].as_i64() {
                    self.remember(&r.id, n);
                }
                Ok(())
            }
            SNAPSHOT_TASK => {
                let t = self
                    .call("pool.snapshottask.create", json!([self.task_native(r)?]))
                    .await?;
                if let Some(n) = t["id"].as_i64() {
                    self.remember(&r.id, n);
                }
                Ok(())
            }
            REPLICATION => {
                let t = self
                    .call(
                        "replication.create",
                        json!([self.replication_native(r).await?]),
                    )
                    .await?;
                if let Some(n) = t["id"].as_i64() {
                    self.remember(&r.id, n);
                }
                Ok(())
            }
            other => Err(invalid(r, format!("unknown storage kind `{other}`"))),
        }
    }

    async fn update(&self, r: &Resource, changes: &[FieldChange]) -> Result<(), ProviderError> {
        match &*r.id.kind {
            DATASET => self.update_dataset(r, changes).await,
            NFS_EXPORT => {
                let id = self.native_id(r, "sharing.nfs.query", "comment").await?;
                self.call("sharing.nfs.update", json!([id, self.share_native(r)?]))
                    .await
                    .map(|_| ())
            }
            SNAPSHOT_TASK => {
                let id = self
                    .native_id(r, "pool.snapshottask.query", "naming_schema")
                    .await?;
                self.call(
                    "pool.snapshottask.update",
                    json!([id, self.task_native(r)?]),
                )
                .await
                .map(|_| ())
            }
            REPLICATION => {
                let id = self.native_id(r, "replication.query", "name").await?;
                self.call(
                    "replication.update",
                    json!([id, self.replication_native(r).await?]),
                )
                .await
                .map(|_| ())
            }
            other => Err(invalid(r, format!("unknown storage kind `{other}`"))),
        }
    }

    async fn delete(&self, r: &Resource) -> Result<(), ProviderError> {
        match &*r.id.kind {
            DATASET => {
                if r.data != Data::Disposable {
                    // The plan never deletes retained data; a stray call must not either.
                    return Err(invalid(r, "holds data the lab retains; not deleted"));
                }
                let name = dataset_name(r, r.body.value()["path"].as_str().unwrap_or_default())?;
                self.call("pool.dataset.delete", json!([name, {"recursive": true}]))
                    .await
                    .map(|_| ())
            }
            NFS_EXPORT => {
                let id = self.native_id(r, "sharing.nfs.query", "comment").await?;
                self.call("sharing.nfs.delete", json!([id]))
                    .await
                    .map(|_| ())
            }
            SNAPSHOT_TASK => {
                // The task goes; the snapshots it took stay (deleting a task never deletes them).
                let id = self
                    .native_id(r, "pool.snapshottask.query", "naming_schema")
                    .await?;
                self.call("pool.snapshottask.delete", json!([id]))
                    .await
                    .map(|_| ())
            }
            REPLICATION => {
                // The task goes; the copies it made stay where they are.
                let id = self.native_id(r, "replication.query", "name").await?;
                self.call("replication.delete", json!([id]))
                    .await
                    .map(|_| ())
            }
            other => Err(invalid(r, format!("unknown storage kind `{other}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pick_the_snapshot_namespace() {
        assert_eq!(
            Version::parse("TrueNAS-SCALE-25.10.1"),
            Some(Version(25, 10))
        );
        assert_eq!(Version::parse("25.04.2.4"), Some(Version(25, 4)));
        assert_eq!(Version(25, 4).snapshot_query(), "zfs.snapshot.query");
        assert_eq!(Version(25, 10).snapshot_query(), "pool.snapshot.query");
        assert_eq!(Version(26, 4).snapshot_query(), "pool.snapshot.query");
    }

    #[test]
    fn schedules_round_trip() {
        for (every, keep) in [
            (3600, 48),
            (86_400, 14),
            (900, 4),
            (6 * 3600, 28),
            (604_800, 8),
        ] {
            let (s, life, unit) = schedule(every, keep);
            assert_eq!(period(&s), every, "{s}");
            assert_eq!(life * unit_secs(unit), every * keep, "{every} {keep}");
        }
        // Retention that is no whole unit is rounded up, never down.
        let (_, life, unit) = schedule(900, 3);
        assert_eq!((life, unit), (1, "HOUR"));
    }
}
