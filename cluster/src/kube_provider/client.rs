//! The `kube_provider` backend's client: everything but its description (the `client` feature).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use cloudlet_core::error::ProviderError;
use cloudlet_core::plan::FieldChange;
use cloudlet_core::resource::{Body, Held};
use cloudlet_core::{Domain, Provider, Resource, ResourceId};
use futures::stream::{self, StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Client, Config};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::fields::{self, Kept};

use cloudlet_core::backend::{BoxFuture, ConnectError, Connection};

/// The provider a `kubernetes` target names.
pub async fn open(c: &Connection<'_>) -> Result<KubeProvider, ConnectError> {
    // The credentials of a Kubernetes target are a kubeconfig file; without one, the usual
    // places ($KUBECONFIG, ~/.kube/config, in-cluster) are used.
    let kubeconfig = match &c.target.credentials {
        None => None,
        Some(cloudlet_core::model::SecretRef::File(f)) => Some(c.base_dir.join(f)),
        Some(cloudlet_core::model::SecretRef::Env(v)) => {
            Some(PathBuf::from(std::env::var_os(v).ok_or_else(|| {
                ConnectError::Credentials(cloudlet_core::error::SecretError::EnvUnset {
                    var: v.clone(),
                })
            })?))
        }
    };
    let options = KubeOptions {
        take_over: c.take_over,
        secrets_dir: c.base_dir.to_path_buf(),
        ..KubeOptions::default()
    };
    KubeProvider::from_kubeconfig(kubeconfig, None, &c.lab.name, options)
        .await
        .map_err(|e| ConnectError::Client {
            backend: "Kubernetes",
            source: Box::new(e),
        })
}

/// A provider over the pod's service account (the API server from `KUBERNETES_SERVICE_HOST`,
/// the token and CA Kubernetes mounts), for a copy of the lab running in its own cluster
/// (the watch): the options [`open`] gives, whatever the cluster target says.
pub fn open_in_cluster(c: &Connection<'_>) -> Result<KubeProvider, ConnectError> {
    let client_error = |message: String| ConnectError::Client {
        backend: "Kubernetes",
        source: Box::new(backend(message, false)),
    };
    let config =
        Config::incluster().map_err(|e| client_error(format!("the pod's service account: {e}")))?;
    let options = KubeOptions {
        take_over: c.take_over,
        secrets_dir: c.base_dir.to_path_buf(),
        endpoint: Some(config.cluster_url.to_string()),
        ..KubeOptions::default()
    };
    let client =
        Client::try_from(config).map_err(|e| client_error(format!("Kubernetes client: {e}")))?;
    Ok(KubeProvider::new(client, &c.lab.name, options))
}

pub(super) fn connect<'a>(
    c: &'a Connection<'a>,
) -> BoxFuture<'a, Result<Arc<dyn Provider>, ConnectError>> {
    Box::pin(async move { Ok(Arc::new(open(c).await?) as Arc<dyn Provider>) })
}

/// The field manager cloudlet applies with.
pub const FIELD_MANAGER: &str = "cloudlet";
/// The label every member of cloudlet's ApplySet carries.
pub const PART_OF_LABEL: &str = "applyset.kubernetes.io/part-of";
const APPLYSET_ID_LABEL: &str = "applyset.kubernetes.io/id";
const GROUP_KINDS: &str = "applyset.kubernetes.io/contains-group-kinds";
const ADDITIONAL_NAMESPACES: &str = "applyset.kubernetes.io/additional-namespaces";
const TOOLING: &str = "applyset.kubernetes.io/tooling";
const AFTER: &str = "cloudlet.dev/after";
/// Values held as references in a body and read by the provider at apply time: Secret
/// values (env or file) and ConfigMap files. The live object records the references and a
/// salted digest of the values in annotations.
#[derive(Clone, Copy)]
struct Refs {
    /// The key of the body that holds the references.
    body_key: &'static str,
    /// The annotations recording them and the digest of what was written.
    refs_annotation: &'static str,
    digest_annotation: &'static str,
    /// What changed values are called in a plan.
    marker: &'static str,
}

const SECRET_REFS: Refs = Refs {
    body_key: "cloudlet.dev/secretRefs",
    refs_annotation: "cloudlet.dev/secret-refs",
    digest_annotation: "cloudlet.dev/secret-digest",
    marker: "(values)",
};
const FILE_REFS: Refs = Refs {
    body_key: "cloudlet.dev/fileRefs",
    refs_annotation: "cloudlet.dev/file-refs",
    digest_annotation: "cloudlet.dev/file-digest",
    marker: "(contents)",
};

/// How the provider talks to the cluster.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// The namespace of the ApplySet parent Secret (`default`).
    pub applyset_namespace: String,
    /// Take over fields other managers hold (`--force-conflicts`): they show as changes and
    /// the apply forces them back to the lab's values.
    pub take_over: bool,
    /// The directory `file:` secret references and mounted files are relative to (the lab's
    /// directory).
    pub secrets_dir: PathBuf,
    /// Dry-run applies in flight at once while planning.
    pub concurrency: usize,
    /// The API server's address, named when it cannot be reached (from the kubeconfig when
    /// the provider is made from one).
    pub endpoint: Option<String>,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            applyset_namespace: "default".into(),
            take_over: false,
            secrets_dir: PathBuf::from("."),
            concurrency: cloudlet_core::engine::DEFAULT_CONCURRENCY,
            endpoint: None,
        }
    }
}

/// Requests the provider made, by kind (retries included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KubeStats {
    /// GETs, LISTs and discovery requests.
    pub reads: u64,
    /// Server-side applies that were persisted (objects and the ApplySet parent).
    pub writes: u64,
    /// Server-side applies with `dryRun=All` (planning).
    pub dry_runs: u64,
    /// DELETEs.
    pub deletes: u64,
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    dry_runs: AtomicU64,
    deletes: AtomicU64,
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// `namespace/name` → the object's ApplySet label.
type Present = HashMap<String, Option<String>>;

/// A group and kind, written `Kind.group` (`Deployment.apps`, `Namespace`) as ApplySets do.
type GroupKind = String;

fn group_kind(api_version: &str, kind: &str) -> GroupKind {
    match api_version.split_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind.to_string(),
    }
}

fn split_group_kind(gk: &str) -> (&str, &str) {
    gk.split_once('.').unwrap_or((gk, ""))
}

#[derive(Default)]
struct Inventory {
    /// What the parent Secret says now.
    group_kinds: BTreeSet<GroupKind>,
    namespaces: BTreeSet<String>,
    /// Whether the parent was read (or written) in this process.
    known: bool,
    /// Whether `members` holds every member (an observation ran in this process).
    complete: bool,
    /// The members as far as this process knows: id → (group-kind, namespace).
    members: HashMap<ResourceId, (GroupKind, Option<String>)>,
    /// The group-kinds and namespaces the lab wants (from the last plan): the first write
    /// lists them all in the parent, so an apply writes the parent once, not per namespace.
    wanted: (BTreeSet<GroupKind>, BTreeSet<String>),
}

/// Server-side apply of the cluster domain against one API server.
pub struct KubeProvider {
    client: Client,
    /// The API server's address, for errors that say it cannot be reached.
    endpoint: String,
    options: KubeOptions,
    parent: String,
    applyset: String,
    kinds: Mutex<HashMap<GroupKind, (ApiResource, bool)>>,
    /// Groups whose CRD this provider just made: discovery may lag behind `Established`.
    fresh_groups: Mutex<HashSet<String>>,
    inventory: tokio::sync::Mutex<Inventory>,
    /// From the last observation: held fields and uids, per resource.
    held: Mutex<HashMap<ResourceId, Vec<String>>>,
    uids: Mutex<HashMap<ResourceId, String>>,
    /// Per group-kind, every object of that kind (`namespace/name` → its ApplySet label),
    /// listed once (metadata only) when the first object of the kind is created.
    present: Mutex<HashMap<GroupKind, Arc<OnceCell<Present>>>>,
    counters: Counters,
}

impl std::fmt::Debug for KubeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeProvider")
            .field("applyset", &self.applyset)
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

/// The ApplySet id of a parent object, as KEP-3659 defines it:
/// `applyset-<base64url(sha256(<name>.<namespace>.<kind>.<group>))>-v1`.
pub fn applyset_id(name: &str, namespace: &str, kind: &str, group: &str) -> String {
    let h = Sha256::digest(format!("{name}.{namespace}.{kind}.{group}").as_bytes());
    format!(
        "applyset-{}-v1",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h)
    )
}

fn backend(message: String, retryable: bool) -> ProviderError {
    ProviderError::Backend { message, retryable }
}

/// A failed request as a provider error: the API's answer with its code, or, when the
/// server could not be reached at all, [`ProviderError::Unreachable`] naming its address (the
/// engine then stops starting this domain's steps).
fn api_error(endpoint: &str, what: &str, e: &kube::Error) -> ProviderError {
    let retryable = is_retryable(e);
    let msg = match e {
        kube::Error::Api(s) => format!("{what}: {} ({} {})", s.message, s.code, s.reason),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            return ProviderError::Unreachable {
                endpoint: endpoint.to_string(),
                message: format!("{what}: {}", cloudlet_core::error::chain(e)),
            };
        }
        other => format!("{what}: {other}"),
    };
    backend(msg, retryable)
}

fn is_retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Runs `f` again on throttling, unavailability and dropped connections (6 tries, backoff
/// from 50 ms).
async fn retry<T, F, Fut>(f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    cloudlet_transport::retry::with_backoff(6, Duration::from_millis(50), is_retryable, f).await
}

fn split_name(id: &ResourceId, namespaced: bool) -> (Option<&str>, &str) {
    if namespaced {
        match id.name.split_once('.') {
            Some((ns, n)) => (Some(ns), n),
            None => (None, &id.name),
        }
    } else {
        (None, &id.name)
    }
}

impl KubeProvider {
    /// A provider for the lab `lab` over `client`.
    pub fn new(client: Client, lab: &str, options: KubeOptions) -> Self {
        let parent = format!("cloudlet-{lab}");
        let applyset = applyset_id(&parent, &options.applyset_namespace, "Secret", "");
        KubeProvider {
            client,
            endpoint: options
                .endpoint
                .clone()
                .unwrap_or_else(|| "the Kubernetes API server".into()),
            options,
            parent,
            applyset,
            kinds: Mutex::new(HashMap::new()),
            fresh_groups: Mutex::new(HashSet::new()),
            inventory: tokio::sync::Mutex::new(Inventory::default()),
            held: Mutex::new(HashMap::new()),
            uids: Mutex::new(HashMap::new()),
            present: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }
    }

    /// A provider from a kubeconfig file (`None`: the usual places: `$KUBECONFIG`,
    /// `~/.kube/config`, in-cluster) and an optional context.
    pub async fn from_kubeconfig(
        path: Option<PathBuf>,
        context: Option<String>,
        lab: &str,
        options: KubeOptions,
    ) -> Result<Self, ProviderError> {
        let opts = kube::config::KubeConfigOptions {
            context,
            ..Default::default()
        };
        let config = match path {
            Some(p) => {
                let kc = kube::config::Kubeconfig::read_from(&p).map_err(|e| {
                    backend(format!("reading kubeconfig {}: {e}", p.display()), false)
                })?;
                Config::from_custom_kubeconfig(kc, &opts).await
            }
            None => Config::from_kubeconfig(&opts).await,
        }
        .map_err(|e| backend(format!("kubeconfig: {e}"), false))?;
        let options = KubeOptions {
            endpoint: options
                .endpoint
                .or_else(|| Some(config.cluster_url.to_string())),
            ..options
        };
        let client = Client::try_from(config)
            .map_err(|e| backend(format!("Kubernetes client: {e}"), false))?;
        Ok(Self::new(client, lab, options))
    }

    /// The ApplySet id of this lab's objects.
    pub fn applyset(&self) -> &str {
        &self.applyset
    }

    /// The requests made so far.
    pub fn stats(&self) -> KubeStats {
        let c = &self.counters;
        KubeStats {
            reads: c.reads.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            dry_runs: c.dry_runs.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
        }
    }

    /// The API server's URL, when known.
    pub fn endpoint(&self) -> Option<&str> {
        self.options.endpoint.as_deref()
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn resolve(
        &self,
        gk: &str,
        version: Option<&str>,
    ) -> Result<(ApiResource, bool), ProviderError> {
        // One entry per group-kind and version asked for: a kind listed at its preferred
        // version is written at the version the lab's object names.
        let key = match version {
            Some(v) => format!("{gk}@{v}"),
            None => gk.to_string(),
        };
        if let Some(r) = self
            .kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(r.clone());
        }
        let (_, group) = split_group_kind(gk);
        let fresh = self
            .fresh_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(group);
        // A CRD made a moment ago is served before discovery lists it: ask again for a while.
        let mut found = self.discover(gk, version).await?;
        let mut tries = 0;
        while found.is_none() && fresh && tries < 50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            found = self.discover(gk, version).await?;
            tries += 1;
        }
        let Some((ar, caps)) = found else {
            return Err(backend(
                format!(
                    "the API server does not serve {gk}: install its CRD (or the operator that brings it) first"
                ),
                false,
            ));
        };
        let r = (ar, caps.scope == Scope::Namespaced);
        self.kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, r.clone());
        Ok(r)
    }

    /// One discovery of `gk` (at `version`, or the group's preferred one).
    async fn discover(
        &self,
        gk: &str,
        version: Option<&str>,
    ) -> Result<Option<(ApiResource, ApiCapabilities)>, ProviderError> {
        let (kind, group) = split_group_kind(gk);
        Ok(match version {
            Some(v) => {
                let gvk = GroupVersionKind::gvk(group, v, kind);
                match retry(|| {
                    count(&self.counters.reads);
                    kube::discovery::pinned_kind(&self.client, &gvk)
                })
                .await
                {
                    Ok(r) => Some(r),
                    Err(kube::Error::Discovery(_)) => None,
                    Err(e) if status_code(&e) == Some(404) => None,
                    Err(e) => {
                        return Err(api_error(&self.endpoint, &format!("discovering {gk}"), &e));
                    }
                }
            }
            None => match retry(|| {
                count(&self.counters.reads);
                kube::discovery::group(&self.client, group)
            })
            .await
            {
                Ok(g) => g.recommended_kind(kind),
                Err(kube::Error::Discovery(_)) => None,
                Err(e) if status_code(&e) == Some(404) => None,
                Err(e) => return Err(api_error(&self.endpoint, &format!("discovering {gk}"), &e)),
            },
        })
    }

    fn forget_group(&self, group: &str) {
        self.kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| split_group_kind(key.split('@').next().unwrap_or(key)).1 != group);
    }

    fn api(&self, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
        match ns {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }

    fn parent_api(&self) -> Api<DynamicObject> {
        let ar = ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&());
        Api::namespaced_with(self.client.clone(), &self.options.applyset_namespace, &ar)
    }

    async fn read_parent(&self, inv: &mut Inventory) -> Result<(), ProviderError> {
        let api = self.parent_api();
        let got = retry(|| {
            count(&self.counters.reads);
            api.get_opt(&self.parent)
        })
        .await
        .map_err(|e| api_error(&self.endpoint, "reading the ApplySet parent", &e))?;
        inv.group_kinds.clear();
        inv.namespaces.clear();
        if let Some(p) = got {
            let ann = p.metadata.annotations.unwrap_or_default();
            let split = |k: &str| -> BTreeSet<String> {
                ann.get(k)
                    .map(|s| {
                        s.split(',')
                            .filter(|x| !x.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            inv.group_kinds = split(GROUP_KINDS);
            inv.namespaces = split(ADDITIONAL_NAMESPACES);
        }
        inv.known = true;
        Ok(())
    }

    async fn write_parent(
        &self,
        group_kinds: &BTreeSet<GroupKind>,
        namespaces: &BTreeSet<String>,
    ) -> Result<(), ProviderError> {
        let ns = &self.options.applyset_namespace;
        let extra: Vec<&str> = namespaces
            .iter()
            .map(String::as_str)
            .filter(|n| n != ns)
            .collect();
        let body = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": self.parent,
                "namespace": ns,
                "labels": { APPLYSET_ID_LABEL: self.applyset },
                "annotations": {
                    TOOLING: concat!("cloudlet/v", env!("CARGO_PKG_VERSION")),
                    GROUP_KINDS: group_kinds.iter().cloned().collect::<Vec<_>>().join(","),
                    ADDITIONAL_NAMESPACES: extra.join(","),
                }
            }
        });
        let api = self.parent_api();
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&body);
        retry(|| {
            count(&self.counters.writes);
            api.patch(&self.parent, &pp, &patch)
        })
        .await
        .map_err(|e| api_error(&self.endpoint, "writing the ApplySet parent", &e))?;
        Ok(())
    }

    /// Makes sure the parent lists `gk` and `ns` before a member of them is written, so an
    /// interrupted apply never leaves a member its parent does not know.
    async fn enlist(
        &self,
        id: &ResourceId,
        gk: &str,
        ns: Option<&str>,
    ) -> Result<(), ProviderError> {
        let mut inv = self.inventory.lock().await;
        if !inv.known {
            self.read_parent(&mut inv).await?;
        }
        let need_gk = !inv.group_kinds.contains(gk);
        let need_ns = ns.is_some_and(|n| !inv.namespaces.contains(n));
        if need_gk || need_ns {
            let mut gks = inv.group_kinds.clone();
            gks.insert(gk.to_string());
            gks.extend(inv.wanted.0.iter().cloned());
            let mut nss = inv.namespaces.clone();
            if let Some(n) = ns {
                nss.insert(n.to_string());
            }
            nss.extend(inv.wanted.1.iter().cloned());
            self.write_parent(&gks, &nss).await?;
            inv.group_kinds = gks;
            inv.namespaces = nss;
        }
        inv.members
            .insert(id.clone(), (gk.to_string(), ns.map(str::to_string)));
        Ok(())
    }

    /// Lists every member of one group-kind.
    async fn list_kind(&self, gk: &str) -> Result<Vec<Value>, ProviderError> {
        let (ar, _) = match self.resolve(gk, None).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(group_kind = gk, error = %e, "skipping a kind the server no longer serves");
                return Ok(Vec::new());
            }
        };
        let api = self.api(&ar, None);
        let mut out = Vec::new();
        let mut lp = ListParams::default()
            .labels(&format!("{PART_OF_LABEL}={}", self.applyset))
            .limit(500);
        loop {
            let page = retry(|| {
                count(&self.counters.reads);
                api.list(&lp)
            })
            .await
            .map_err(|e| api_error(&self.endpoint, &format!("listing {gk}"), &e))?;
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            for mut item in page.items {
                item.types.get_or_insert_with(|| kube::core::TypeMeta {
                    api_version: ar.api_version.clone(),
                    kind: ar.kind.clone(),
                });
                out.push(
                    serde_json::to_value(&item)
                        .map_err(|e| backend(format!("encoding {gk}: {e}"), false))?,
                );
            }
            match next {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
        Ok(out)
    }

    /// The observed resource of a live object, and its uid.
    fn observed(&self, live: &Value) -> Result<(Resource, String), ProviderError> {
        let meta = &live["metadata"];
        let name = meta["name"].as_str().unwrap_or_default();
        let ns = meta["namespace"].as_str();
        let kind = live["kind"].as_str().unwrap_or_default();
        let rid = ResourceId::new(
            Domain::Cluster,
            kind.to_ascii_lowercase(),
            match ns {
                Some(ns) => format!("{ns}.{name}"),
                None => name.to_string(),
            },
        );
        let managed = meta["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let main = |m: &&Value| m.get("subresource").is_none_or(|s| s.as_str() == Some(""));
        let ours = managed
            .iter()
            .filter(main)
            .find(|m| m["manager"] == FIELD_MANAGER && m["operation"] == "Apply")
            .and_then(|m| m.get("fieldsV1"));
        let mut kept = Kept::new();
        let mut body = match ours {
            Some(f) => fields::project(f, live, &mut kept),
            None => Value::Object(Map::new()),
        };
        let mut held = Vec::new();
        if !self.options.take_over {
            for m in managed.iter().filter(main) {
                if m["manager"] == FIELD_MANAGER && m["operation"] == "Apply" {
                    continue;
                }
                let Some(f) = m.get("fieldsV1") else { continue };
                let mut paths = Vec::new();
                fields::leaves(f, live, &kept, &mut paths);
                let by = m["manager"].as_str().unwrap_or("unknown").to_string();
                held.extend(
                    paths
                        .into_iter()
                        .filter(|p| !p.starts_with("status"))
                        .map(|path| Held {
                            path,
                            by: by.clone(),
                        }),
                );
            }
            held.sort();
            held.dedup_by(|a, b| a.path == b.path);
        }
        let obj = body
            .as_object_mut()
            .ok_or_else(|| ProviderError::InvalidData {
                what: rid.to_string(),
                message: "not an object".into(),
            })?;
        obj.insert("apiVersion".into(), live["apiVersion"].clone());
        obj.insert("kind".into(), live["kind"].clone());
        let m = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        let mut depends_on = Vec::new();
        let mut refs = None;
        if let Some(m) = m.as_object_mut() {
            m.insert("name".into(), json!(name));
            if let Some(ns) = ns {
                m.insert("namespace".into(), json!(ns));
            }
            if let Some(l) = m.get_mut("labels").and_then(Value::as_object_mut) {
                l.remove(PART_OF_LABEL);
            }
            if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
                if let Some(after) = a.remove(AFTER) {
                    depends_on = after
                        .as_str()
                        .unwrap_or_default()
                        .split(',')
                        .filter_map(|s| s.parse().ok())
                        .collect();
                }
                for kind in [SECRET_REFS, FILE_REFS] {
                    let digest = a.remove(kind.digest_annotation);
                    if let Some(r) = a.remove(kind.refs_annotation) {
                        refs = Some((kind, r, digest));
                    }
                }
            }
            for k in ["labels", "annotations"] {
                if m.get(k)
                    .and_then(Value::as_object)
                    .is_some_and(Map::is_empty)
                {
                    m.remove(k);
                }
            }
        }
        if let Some((kind, r, digest)) = refs {
            let refs: Value = serde_json::from_str(r.as_str().unwrap_or("{}")).unwrap_or_default();
            let live_data = live.get("data").cloned().unwrap_or_else(|| json!({}));
            let recorded = digest.as_ref().and_then(Value::as_str).unwrap_or_default();
            let by_hand = secret_digest(&rid, &live_data) != recorded;
            let rotated = self
                .read_refs(kind, &refs)
                .is_ok_and(|d| secret_digest(&rid, &d) != recorded);
            obj.remove("data");
            let mut refs = refs;
            if (by_hand || rotated)
                && let Some(o) = refs.as_object_mut()
            {
                o.insert(kind.marker.into(), json!("changed since the last apply"));
            }
            obj.insert(kind.body_key.into(), refs);
        }
        let mut r = Resource::new(rid, Body::from(body));
        depends_on.sort();
        r.depends_on = depends_on;
        r.held = held;
        Ok((r, meta["uid"].as_str().unwrap_or_default().to_string()))
    }

    /// Reads the values references point at: for a Secret key → base64 of the value, for a
    /// ConfigMap key → the file's text.
    fn read_refs(&self, kind: Refs, refs: &Value) -> Result<Value, ProviderError> {
        let mut data = Map::new();
        let Some(refs) = refs.as_object() else {
            return Ok(Value::Object(data));
        };
        if kind.body_key == FILE_REFS.body_key {
            for (key, file) in refs {
                let p = self
                    .options
                    .secrets_dir
                    .join(file.as_str().unwrap_or_default());
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    backend(
                        format!(
                            "file {}: {e} (mounted files must be UTF-8 text)",
                            p.display()
                        ),
                        false,
                    )
                })?;
                data.insert(key.clone(), json!(text));
            }
            return Ok(Value::Object(data));
        }
        for (key, r) in refs {
            let bytes = if let Some(var) = r.get("env").and_then(Value::as_str) {
                std::env::var(var)
                    .map_err(|_| {
                        backend(
                            format!("secret `{key}`: the environment variable {var} is not set"),
                            false,
                        )
                    })?
                    .into_bytes()
            } else if let Some(file) = r.get("file").and_then(Value::as_str) {
                let p = self.options.secrets_dir.join(file);
                let bytes = std::fs::read(&p).map_err(|e| {
                    backend(
                        format!("secret `{key}`: reading {}: {e}", p.display()),
                        false,
                    )
                })?;
                if r.get("verbatim").and_then(Value::as_str) == Some("true") {
                    bytes
                } else {
                    // A value, as cloudlet reads it everywhere: without surrounding
                    // whitespace (a key file ends with a newline).
                    bytes.trim_ascii().to_vec()
                }
            } else {
                return Err(backend(
                    format!("secret `{key}`: not an env or file reference"),
                    false,
                ));
            };
            data.insert(
                key.clone(),
                json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
            );
        }
        Ok(Value::Object(data))
    }

    /// The object to send for `r`: cloudlet's labels and annotations, secret values read,
    /// held fields left out.
    fn manifest(&self, r: &Resource, strip_held: bool) -> Result<Value, ProviderError> {
        let mut v = r.body.value();
        let obj = v
            .as_object_mut()
            .ok_or_else(|| ProviderError::InvalidData {
                what: r.id.to_string(),
                message: "the body is not an object".into(),
            })?;
        let mut resolved = None;
        for kind in [SECRET_REFS, FILE_REFS] {
            if let Some(refs) = obj.remove(kind.body_key) {
                let data = self.read_refs(kind, &refs)?;
                let digest = secret_digest(&r.id, &data);
                obj.insert("data".into(), data);
                resolved = Some((kind, refs, digest));
            }
        }
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| ProviderError::InvalidData {
                what: r.id.to_string(),
                message: "metadata is not an object".into(),
            })?;
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(l) = labels.as_object_mut() {
            l.insert(PART_OF_LABEL.into(), json!(self.applyset));
        }
        let mut ann = BTreeMap::new();
        if !r.depends_on.is_empty() {
            let mut deps: Vec<String> = r.depends_on.iter().map(ToString::to_string).collect();
            deps.sort();
            ann.insert(AFTER, deps.join(","));
        }
        if let Some((kind, refs, digest)) = resolved {
            ann.insert(kind.refs_annotation, refs.to_string());
            ann.insert(kind.digest_annotation, digest);
        }
        if !ann.is_empty() {
            let a = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(a) = a.as_object_mut() {
                for (k, val) in ann {
                    a.insert(k.into(), json!(val));
                }
            }
        }
        if strip_held && !self.options.take_over {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(paths) = held.get(&r.id) {
                for p in paths {
                    fields::remove_path(&mut v, p);
                }
            }
        }
        Ok(v)
    }

    fn target(v: &Value) -> Result<(GroupKind, String, Option<String>, String), ProviderError> {
        let api_version = v["apiVersion"].as_str().unwrap_or_default();
        let kind = v["kind"].as_str().unwrap_or_default();
        let name = v["metadata"]["name"].as_str().unwrap_or_default();
        if api_version.is_empty() || kind.is_empty() || name.is_empty() {
            return Err(ProviderError::InvalidData {
                what: "a Kubernetes object".into(),
                message: "apiVersion, kind and metadata.name are required".into(),
            });
        }
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        Ok((
            group_kind(api_version, kind),
            version.to_string(),
            v["metadata"]["namespace"].as_str().map(str::to_string),
            name.to_string(),
        ))
    }

    async fn apply(&self, r: &Resource, dry_run: bool) -> Result<Value, ProviderError> {
        // A dry run sends every field: where another manager holds one it conflicts, and the
        // difference stays in the plan, reported as held.
        let v = self.manifest(r, !dry_run)?;
        let (gk, version, ns, name) = Self::target(&v)?;
        let (ar, namespaced) = self.resolve(&gk, Some(&version)).await?;
        let ns = if namespaced { ns } else { None };
        if !dry_run {
            self.enlist(&r.id, &gk, ns.as_deref()).await?;
        }
        let api = self.api(&ar, ns.as_deref());
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        pp.force = self.options.take_over;
        pp.dry_run = dry_run;
        let patch = Patch::Apply(&v);
        // An object a webhook guards waits, within its window, for the webhook to answer
        // (its controller may have started a moment ago).
        let window = wait_window(&v);
        let deadline = tokio::time::Instant::now() + window.unwrap_or_default();
        let out = loop {
            let got = retry(|| {
                count(if dry_run {
                    &self.counters.dry_runs
                } else {
                    &self.counters.writes
                });
                api.patch(&name, &pp, &patch)
            })
            .await;
            match got {
                Err(kube::Error::Api(s))
                    if window.is_some() && !dry_run && is_webhook_failure(&s.message) =>
                {
                    if tokio::time::Instant::now() >= deadline {
                        let pods = self.webhook_pods(&s.message).await;
                        return Err(backend(
                            format!(
                                "applying {}: its webhook did not answer within {}s: {}{}",
                                r.id,
                                window.unwrap_or_default().as_secs(),
                                s.message,
                                if pods.is_empty() { String::new() } else { format!("; {}", pods.join("; ")) }
                            ),
                            false,
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => break other,
            }
        }
            .map_err(|e| match &e {
                kube::Error::Api(s) if s.code == 409 => backend(
                    format!("{}: another field manager holds fields the lab sets: {} (re-plan to see them; apply with take-over to force the lab's values)", r.id, s.message),
                    false,
                ),
                _ => api_error(&self.endpoint, &format!("applying {}", r.id), &e),
            })?;
        if !dry_run
            && let Some(window) = window
            && matches!(
                v["kind"].as_str(),
                Some("Deployment" | "DaemonSet" | "StatefulSet")
            )
        {
            crate::health::wait_ready(
                &self.client,
                v["kind"].as_str().unwrap_or_default(),
                ns.as_deref().unwrap_or("default"),
                &name,
                window,
                Duration::from_secs(1),
            )
            .await
            .map_err(|m| backend(format!("{}: {m}", r.id), false))?;
        }
        if !dry_run && gk == "CustomResourceDefinition.apiextensions.k8s.io" {
            self.wait_established(&api, &name).await?;
            if let Some(group) = v["spec"]["group"].as_str() {
                self.forget_group(group);
                self.fresh_groups
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(group.to_string());
            }
        }
        serde_json::to_value(&out).map_err(|e| backend(format!("encoding {}: {e}", r.id), false))
    }

    /// What keeps the pods behind the webhook a failure message names from answering (the
    /// message carries its address, `https://SERVICE.NAMESPACE.svc...`).
    async fn webhook_pods(&self, message: &str) -> Vec<String> {
        let Some((svc, ns)) = webhook_service(message) else {
            return Vec::new();
        };
        let services: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(self.client.clone(), &ns);
        let selector = match services.get_opt(&svc).await {
            Ok(Some(s)) => s
                .spec
                .and_then(|s| s.selector)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            Ok(None) => return vec![format!("its service {ns}/{svc} does not exist")],
            Err(e) => return vec![format!("its service {ns}/{svc} could not be read: {e}")],
        };
        if selector.is_empty() {
            return Vec::new();
        }
        crate::health::pod_problems(&self.client, &ns, &selector).await
    }

    /// The live object of `r` read at `r`'s own API version.
    async fn get_as(&self, r: &Resource) -> Option<Value> {
        let v = r.body.value();
        let (gk, version, ns, name) = Self::target(&v).ok()?;
        let (ar, namespaced) = self.resolve(&gk, Some(&version)).await.ok()?;
        let ns = if namespaced { ns } else { None };
        let api = self.api(&ar, ns.as_deref());
        let live = retry(|| {
            count(&self.counters.reads);
            api.get(&name)
        })
        .await
        .ok()?;
        let mut out = serde_json::to_value(&live).ok()?;
        out["apiVersion"] = json!(ar.api_version);
        out["kind"] = json!(ar.kind);
        Some(out)
    }

    async fn wait_established(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
    ) -> Result<(), ProviderError> {
        for _ in 0..300 {
            let crd = retry(|| {
                count(&self.counters.reads);
                api.get(name)
            })
            .await
            .map_err(|e| api_error(&self.endpoint, &format!("reading CRD {name}"), &e))?;
            let established = crd.data["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                });
            if established {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(backend(
            format!("CRD {name} was not Established within 30 s"),
            true,
        ))
    }

    /// Every object of a kind, metadata only: one LIST per kind instead of a GET per create.
    async fn present_of(
        &self,
        gk: &str,
        ar: &ApiResource,
    ) -> Result<Arc<OnceCell<Present>>, ProviderError> {
        let cell = self
            .present
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(gk.to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let api = self.api(ar, None);
            let mut out = HashMap::new();
            let mut lp = ListParams::default().limit(500);
            loop {
                let page = retry(|| {
                    count(&self.counters.reads);
                    api.list_metadata(&lp)
                })
                .await
                .map_err(|e| api_error(&self.endpoint, &format!("listing {gk}"), &e))?;
                for o in page.items {
                    let key = format!(
                        "{}/{}",
                        o.metadata.namespace.unwrap_or_default(),
                        o.metadata.name.unwrap_or_default()
                    );
                    let label = o.metadata.labels.and_then(|mut l| l.remove(PART_OF_LABEL));
                    out.insert(key, label);
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(c) => lp = lp.continue_token(&c),
                    None => break,
                }
            }
            Ok::<_, ProviderError>(out)
        })
        .await?;
        Ok(cell)
    }

    /// Replaces observed bodies that differ from the lab only by what admission does to an
    /// apply (defaults, normalized quantities) with the lab's body: the dry run of the lab's
    /// body equals the live object there.
    /// Objects in namespace `ns` that cloudlet does not own and that nothing else in the
    /// cluster owns either (no owner references): what a person or another tool made there,
    /// as `Kind/name`. Objects Kubernetes makes in every namespace are left out.
    async fn foreign_objects(&self, ns: &str) -> Result<Vec<String>, ProviderError> {
        use k8s_openapi::api::{apps, batch, core, networking};
        use k8s_openapi::{Metadata, Resource as K8sResource};
        async fn list<K>(
            p: &KubeProvider,
            ns: &str,
            out: &mut Vec<String>,
        ) -> Result<(), ProviderError>
        where
            K: K8sResource<Scope = k8s_openapi::NamespaceResourceScope>
                + Metadata<Ty = kube::api::ObjectMeta>
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug,
        {
            let api: Api<K> = Api::namespaced(p.client.clone(), ns);
            let lp = ListParams::default().limit(200);
            let page = retry(|| {
                count(&p.counters.reads);
                api.list_metadata(&lp)
            })
            .await
            .map_err(|e| {
                api_error(
                    &p.endpoint,
                    &format!("listing {}s in namespace {ns}", K::KIND),
                    &e,
                )
            })?;
            for o in page.items {
                let m = o.metadata;
                let name = m.name.unwrap_or_default();
                let ours = m
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(PART_OF_LABEL))
                    .is_some_and(|v| *v == p.applyset);
                let owned = m.owner_references.as_ref().is_some_and(|o| !o.is_empty());
                let leaving = m.deletion_timestamp.is_some();
                let builtin = matches!(
                    (K::KIND, name.as_str()),
                    ("ConfigMap", "kube-root-ca.crt") | ("ServiceAccount", "default")
                ) || m
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("kubernetes.io/service-account.name"));
                if !(ours || owned || leaving || builtin) {
                    out.push(format!("{}/{name}", K::KIND));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        list::<core::v1::ConfigMap>(self, ns, &mut out).await?;
        list::<core::v1::Secret>(self, ns, &mut out).await?;
        list::<core::v1::Service>(self, ns, &mut out).await?;
        list::<core::v1::PersistentVolumeClaim>(self, ns, &mut out).await?;
        list::<core::v1::Pod>(self, ns, &mut out).await?;
        list::<core::v1::ServiceAccount>(self, ns, &mut out).await?;
        list::<apps::v1::Deployment>(self, ns, &mut out).await?;
        list::<apps::v1::StatefulSet>(self, ns, &mut out).await?;
        list::<apps::v1::DaemonSet>(self, ns, &mut out).await?;
        list::<batch::v1::Job>(self, ns, &mut out).await?;
        list::<batch::v1::CronJob>(self, ns, &mut out).await?;
        list::<networking::v1::Ingress>(self, ns, &mut out).await?;
        Ok(out)
    }

    /// A namespace of cloudlet's that left the lab but holds objects cloudlet does not own is
    /// kept (listed as kept in the plan, its objects named in a warning) instead of being
    /// deleted with them: deleting a namespace deletes everything in it.
    async fn keep_namespaces_with_foreign_objects(
        &self,
        observed: &mut [Resource],
        desired: &[Resource],
    ) -> Result<(), ProviderError> {
        let wanted: HashSet<&ResourceId> = desired.iter().map(|r| &r.id).collect();
        for r in observed
            .iter_mut()
            .filter(|r| r.id.kind.as_ref() == "namespace" && !wanted.contains(&r.id))
        {
            let foreign = self.foreign_objects(&r.id.name).await?;
            if !foreign.is_empty() {
                tracing::warn!(
                    namespace = %r.id.name,
                    objects = %foreign.join(", "),
                    "the namespace left the lab but holds objects cloudlet does not own: it is kept; delete them (or the namespace) by hand to let it go"
                );
                r.data = cloudlet_core::resource::Data::Retain;
            }
        }
        Ok(())
    }

    async fn refine(&self, observed: &mut [Resource], desired: &[Resource]) {
        let want: HashMap<&ResourceId, &Resource> = desired.iter().map(|r| (&r.id, r)).collect();
        let candidates: Vec<usize> = observed
            .iter()
            .enumerate()
            .filter(|(_, o)| want.get(&o.id).is_some_and(|w| w.body != o.body))
            .map(|(i, _)| i)
            .collect();
        let results: Vec<(usize, Option<Resource>)> = stream::iter(candidates)
            .map(|i| {
                let o = &observed[i];
                let w = want[&o.id];
                async move {
                    let Ok(dry) = self.apply(w, true).await else {
                        return (i, None);
                    };
                    let Ok((after, _)) = self.observed(&dry) else {
                        return (i, None);
                    };
                    // What the apply would leave equals what is there: no drift.
                    let mut same = after.body == o.body || after.body.value() == o.body.value();
                    // Listed at the group's preferred version (a CRD's newer storage version),
                    // the object reads differently than at the lab's: compare at the lab's.
                    if !same
                        && o.body.value()["apiVersion"] != w.body.value()["apiVersion"]
                        && let Some(live) = self.get_as(w).await
                        && let Ok((at_ours, _)) = self.observed(&live)
                    {
                        same = at_ours.body == after.body;
                    }
                    (i, same.then(|| w.clone()))
                }
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        for (i, same) in results {
            if let Some(w) = same {
                let o = &mut observed[i];
                o.body = w.body;
            }
        }
    }
}

/// The readiness window an object carries ([`crate::platform::WAIT_ANNOTATION`]).
fn wait_window(v: &Value) -> Option<Duration> {
    v["metadata"]["annotations"][crate::platform::WAIT_ANNOTATION]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Whether an API error says an admission webhook could not be called (not that it said no).
fn is_webhook_failure(message: &str) -> bool {
    message.contains("failed calling webhook")
}

/// The service (name, namespace) a webhook failure message names.
fn webhook_service(message: &str) -> Option<(String, String)> {
    let at = message.find("https://")? + "https://".len();
    let host = message[at..].split([':', '/', '"', ' ']).next()?;
    let mut parts = host.split('.');
    let (svc, ns) = (parts.next()?, parts.next()?);
    (parts.next() == Some("svc")).then(|| (svc.to_string(), ns.to_string()))
}

/// A digest of a Secret's values, salted with its id: it tells whether values changed without
/// putting them (or a bare hash of them) anywhere else.
fn secret_digest(id: &ResourceId, data: &Value) -> String {
    let mut h = Sha256::new();
    h.update(id.to_string().as_bytes());
    h.update([0]);
    h.update(Body::from(data.clone()).as_str().as_bytes());
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[async_trait]
impl Provider for KubeProvider {
    fn name(&self) -> &str {
        "kubernetes"
    }

    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        if domain != Domain::Cluster {
            return Ok(Vec::new());
        }
        let gks: Vec<GroupKind> = {
            let mut inv = self.inventory.lock().await;
            self.read_parent(&mut inv).await?;
            inv.group_kinds.iter().cloned().collect()
        };
        let lists: Vec<(GroupKind, Vec<Value>)> = stream::iter(gks)
            .map(|gk| async move { self.list_kind(&gk).await.map(|l| (gk, l)) })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        let mut out = Vec::new();
        let mut held = HashMap::new();
        let mut uids = HashMap::new();
        let mut members = HashMap::new();
        for (gk, items) in lists {
            for live in &items {
                // Objects on their way out are not there any more as far as a plan goes.
                if live["metadata"]
                    .get("deletionTimestamp")
                    .is_some_and(|t| !t.is_null())
                {
                    continue;
                }
                let (r, uid) = self.observed(live)?;
                if !r.held.is_empty() {
                    held.insert(
                        r.id.clone(),
                        r.held.iter().map(|h| h.path.clone()).collect(),
                    );
                }
                let ns = live["metadata"]["namespace"].as_str().map(str::to_string);
                members.insert(r.id.clone(), (gk.clone(), ns));
                uids.insert(r.id.clone(), uid);
                out.push(r);
            }
        }
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = held;
        self.present
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        *self.uids.lock().unwrap_or_else(|p| p.into_inner()) = uids;
        let mut inv = self.inventory.lock().await;
        inv.members = members;
        inv.complete = true;
        Ok(out)
    }

    async fn observe_with(
        &self,
        domain: Domain,
        desired: &[Resource],
    ) -> Result<Vec<Resource>, ProviderError> {
        let mut observed = self.observe(domain).await?;
        let mut wanted = (BTreeSet::new(), BTreeSet::new());
        for r in desired {
            let v = r.body.value();
            if let (Some(a), Some(k)) = (v["apiVersion"].as_str(), v["kind"].as_str()) {
                wanted.0.insert(group_kind(a, k));
            }
            if let Some(ns) = v["metadata"]["namespace"].as_str() {
                wanted.1.insert(ns.to_string());
            }
        }
        self.inventory.lock().await.wanted = wanted;
        self.refine(&mut observed, desired).await;
        self.keep_namespaces_with_foreign_objects(&mut observed, desired)
            .await?;
        Ok(observed)
    }

    async fn create(&self, r: &Resource) -> Result<(), ProviderError> {
        // Never take over an object someone else made: an apply would merge into it.
        let v = r.body.value();
        let (gk, version, ns, name) = Self::target(&v)?;
        let (ar, namespaced) = self.resolve(&gk, Some(&version)).await?;
        let ns = if namespaced { ns } else { None };
        let present = self.present_of(&gk, &ar).await?;
        let key = format!("{}/{name}", ns.as_deref().unwrap_or_default());
        if let Some(label) = present.get().and_then(|p| p.get(&key))
            && label.as_deref() != Some(self.applyset.as_str())
        {
            return Err(ProviderError::NotOwned { id: r.id.clone() });
        }
        self.apply(r, false).await.map(|_| ())
    }

    async fn update(&self, r: &Resource, _changes: &[FieldChange]) -> Result<(), ProviderError> {
        self.apply(r, false).await.map(|_| ())
    }

    async fn delete(&self, r: &Resource) -> Result<(), ProviderError> {
        let v = r.body.value();
        let (gk, version, _, _) = Self::target(&v)?;
        let (ar, namespaced) = self.resolve(&gk, Some(&version)).await?;
        let (ns, name) = split_name(&r.id, namespaced);
        let api = self.api(&ar, ns);
        let uid = self
            .uids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&r.id)
            .cloned();
        let dp = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match retry(|| {
            count(&self.counters.deletes);
            api.delete(name, &dp)
        })
        .await
        {
            Ok(_) => {}
            Err(e) if status_code(&e) == Some(404) => {}
            Err(e) => return Err(api_error(&self.endpoint, &format!("deleting {}", r.id), &e)),
        }
        self.inventory.lock().await.members.remove(&r.id);
        Ok(())
    }

    async fn finish(&self, domain: Domain) -> Result<(), ProviderError> {
        if domain != Domain::Cluster {
            return Ok(());
        }
        let inv = self.inventory.lock().await;
        if !inv.known || !inv.complete {
            return Ok(());
        }
        let gks: BTreeSet<GroupKind> = inv.members.values().map(|(g, _)| g.clone()).collect();
        let nss: BTreeSet<String> = inv
            .members
            .values()
            .filter_map(|(_, n)| n.clone())
            .collect();
        if gks != inv.group_kinds || nss != inv.namespaces {
            drop(inv);
            self.write_parent(&gks, &nss).await?;
            let mut inv = self.inventory.lock().await;
            inv.group_kinds = gks;
            inv.namespaces = nss;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // #[tokio::test] builds a runtime
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A Kubernetes API that answers with the given status codes in turn (then 404), as
    /// Status objects the way the API server writes them.
    fn api(codes: &'static [u16]) -> (Client, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let svc = tower::service_fn(move |_req: http::Request<kube::client::Body>| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            let code = codes.get(n).copied().unwrap_or(404);
            async move {
                let body = json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("answer {code}"), "reason": if code == 404 { "NotFound" } else { "Other" },
                    "code": code
                });
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(body.to_string().into_bytes()))
                        .expect("a response"),
                )
            }
        });
        (Client::new(svc, "default"), calls)
    }

    #[tokio::test]
    async fn throttling_and_unavailability_are_retried() {
        let (client, calls) = api(&[429, 503, 504]);
        let p = KubeProvider::new(client, "t", KubeOptions::default());
        // The parent is read (429, 503, 504, then 404: there is none), so nothing is observed.
        let found = p
            .observe(Domain::Cluster)
            .await
            .expect("retried until an answer");
        assert!(found.is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(p.stats().reads, 4);
    }

    #[tokio::test]
    async fn other_failures_are_not_retried() {
        let (client, calls) = api(&[500]);
        let p = KubeProvider::new(client, "t", KubeOptions::default());
        let e = p.observe(Domain::Cluster).await.unwrap_err().to_string();
        assert!(e.contains("answer 500"), "{e}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_applyset_id_follows_kep_3659() {
        // Same input as kubectl's: name.namespace.kind.group, sha256, base64url, no padding.
        let id = applyset_id("cloudlet-seed", "default", "Secret", "");
        assert!(id.starts_with("applyset-") && id.ends_with("-v1"));
        assert_eq!(id.len(), "applyset-".len() + 43 + "-v1".len());
        assert!(!id.contains('=') && !id.contains('+') && !id.contains('/'));
    }
}
