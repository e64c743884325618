//! The objects of a cluster cloudlet did not make, backed up through its API and put back into
//! a new one — what an etcd snapshot is for a cluster cloudlet makes.
//!
//! Export: every listable resource of every group's preferred version, page by page, one JSON
//! file per object under `objects/GROUP/RESOURCE/NAMESPACE/NAME.json`, with `objects/index.json`
//! naming each resource's group, version, kind, plural and scope. Left out: what the cluster
//! makes again by itself or what belongs to its machines (events, nodes, leases, endpoints,
//! endpoint slices, certificate requests, service account tokens, `kube-root-ca.crt`) and
//! every object a controller owns (a Deployment's ReplicaSets and pods, a CronJob's Jobs): the
//! owner brings them back. What the old cluster stamped on an object (uid, resource version,
//! creation time, managed fields, status, owner references, a Service's cluster address, a
//! Job's generated selector) is taken off, so the object is created anew.
//!
//! Import, in an order that lets each object find what it needs (Velero's, with its known
//! failure mended): CustomResourceDefinitions first, waited for until established; namespaces;
//! storage classes, volumes and claims; secrets, config maps and service accounts; every other
//! resource; and webhooks and aggregated API services last, so no webhook whose server is not
//! back yet refuses the objects restored after it. An object that exists is left as it is.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The directory of the objects in a backup.
pub const DIR: &str = "objects";
/// The index of the resources in [`DIR`].
pub const INDEX: &str = "index.json";
/// Objects listed per request.
const PAGE: u32 = 500;
/// At most this many objects are exported (a cluster with more is refused, not cut short).
pub const MAX_OBJECTS: usize = 200_000;

/// One resource (kind) of the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// API group (empty for the core group).
    pub group: String,
    /// Its version.
    pub version: String,
    /// Its kind.
    pub kind: String,
    /// Its plural (the URL's).
    pub plural: String,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
    /// How many objects of it were exported.
    pub count: usize,
}

impl Resource {
    fn api(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: if self.group.is_empty() {
                self.version.clone()
            } else {
                format!("{}/{}", self.group, self.version)
            },
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// Its directory under [`DIR`].
    fn dir(&self) -> PathBuf {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        PathBuf::from(group).join(&self.plural)
    }

    /// When it is put back: lower first.
    fn rank(&self) -> u8 {
        match (self.group.as_str(), self.plural.as_str()) {
            ("apiextensions.k8s.io", "customresourcedefinitions") => 0,
            ("", "namespaces") => 1,
            ("storage.k8s.io", "storageclasses") => 2,
            ("", "persistentvolumes") => 3,
            ("", "persistentvolumeclaims") => 4,
            ("", "secrets") => 5,
            ("", "configmaps") => 6,
            ("", "serviceaccounts") => 7,
            ("", "limitranges" | "resourcequotas") => 8,
            ("admissionregistration.k8s.io", _) | ("apiregistration.k8s.io", _) => 20,
            _ => 10,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exported {
    /// The resources, in the order they are put back.
    pub resources: Vec<Resource>,
}

impl Exported {
    /// The objects exported.
    pub fn objects(&self) -> usize {
        self.resources.iter().map(|r| r.count).sum()
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// Objects created.
    pub created: usize,
    /// Objects that existed, left as they are.
    pub existing: usize,
    /// Objects the cluster refused: `KIND NAMESPACE/NAME` and why.
    pub failed: Vec<(String, String)>,
}

/// Why an export or import could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// The API server refused or could not be reached.
    #[error("{doing}")]
    Api {
        /// What was being done.
        doing: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// Reading or writing the objects' files.
    #[error("{doing} {}", path.display())]
    Io {
        /// What was being done.
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An object's file or the index is not what an export writes.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The cluster holds more objects than an export takes.
    #[error("the cluster holds more than {MAX_OBJECTS} objects; not backed up")]
    TooMany,
    /// A CustomResourceDefinition did not become established.
    #[error("CustomResourceDefinition {name} was not established within {seconds} s")]
    NotEstablished {
        /// Its name.
        name: String,
        /// How long it was waited for.
        seconds: u64,
    },
}

fn io(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ObjectsError {
    let path = path.to_path_buf();
    move |source| ObjectsError::Io {
        doing,
        path,
        source,
    }
}

/// Resources the cluster makes again by itself, or that belong to its machines.
fn left_out(group: &str, plural: &str) -> bool {
    matches!(
        (group, plural),
        (
            "",
            "events" | "nodes" | "endpoints" | "componentstatuses" | "bindings"
        ) | ("events.k8s.io", "events")
            | ("coordination.k8s.io", _)
            | ("discovery.k8s.io", "endpointslices")
            | ("certificates.k8s.io", "certificatesigningrequests")
            | ("metrics.k8s.io", _)
            | ("authentication.k8s.io" | "authorization.k8s.io", _)
            | ("resource.k8s.io", "resourceslices")
    )
}

/// Whether the object is the cluster's own doing: owned by a controller, a service account's
/// token, the CA bundle every namespace gets.
fn made_by_the_cluster(plural: &str, obj: &Value) -> bool {
    let controlled = obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|o| o.iter().any(|r| r["controller"] == true));
    controlled
        || (plural == "secrets" && obj["type"] == "kubernetes.io/service-account-token")
        || (plural == "configmaps" && obj["metadata"]["name"] == "kube-root-ca.crt")
}

/// `obj` without what the cluster that held it stamped on it.
pub fn clean(group: &str, plural: &str, mut obj: Value) -> Value {
    if let Some(m) = obj["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "ownerReferences",
            "generateName",
        ] {
            m.remove(k);
        }
        if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
            a.remove("deployment.kubernetes.io/revision");
            if a.is_empty() {
                m.remove("annotations");
            }
        }
    }
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    match (group, plural) {
        ("", "services") => {
            let spec = &mut obj["spec"];
            if spec["clusterIP"] != "None"
                && let Some(s) = spec.as_object_mut()
            {
                s.remove("clusterIP");
                s.remove("clusterIPs");
                s.remove("healthCheckNodePort");
            }
        }
        ("", "persistentvolumes") => {
            if let Some(c) = obj["spec"]["claimRef"].as_object_mut() {
                c.remove("uid");
                c.remove("resourceVersion");
            }
        }
        ("", "pods") => {
            if let Some(s) = obj["spec"].as_object_mut() {
                s.remove("nodeName");
            }
        }
        ("batch", "jobs") => {
            // The selector and its labels were generated from the old Job's uid.
            if obj["spec"]["manualSelector"] != true
                && let Some(s) = obj["spec"].as_object_mut()
            {
                s.remove("selector");
            }
            for at in ["/metadata/labels", "/spec/template/metadata/labels"] {
                if let Some(l) = obj.pointer_mut(at).and_then(Value::as_object_mut) {
                    for k in [
                        "controller-uid",
                        "batch.kubernetes.io/controller-uid",
                        "job-name",
                        "batch.kubernetes.io/job-name",
                    ] {
                        l.remove(k);
                    }
                }
            }
        }
        _ => {}
    }
    obj
}

/// Exports every object of the cluster `client` reaches into `dir/objects/`.
pub async fn export(client: &kube::Client, dir: &Path) -> Result<Exported, ObjectsError> {
    let api_err = |doing: String| move |source| ObjectsError::Api { doing, source };
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(api_err("discovering the cluster's resources".into()))?;
    let root = dir.join(DIR);
    let mut resources = Vec::new();
    let mut total = 0usize;
    for group in discovery.groups() {
        let version = group.preferred_version_or_latest();
        for (ar, caps) in group.versioned_resources(version) {
            if !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::CREATE)
                || ar.plural.contains('/')
                || left_out(&ar.group, &ar.plural)
            {
                continue;
            }
            let namespaced = caps.scope == Scope::Namespaced;
            let mut r = Resource {
                group: ar.group.clone(),
                version: ar.version.clone(),
                kind: ar.kind.clone(),
                plural: ar.plural.clone(),
                namespaced,
                count: 0,
            };
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let mut params = ListParams::default().limit(PAGE);
            loop {
                let page = api.list(&params).await.map_err(api_err(format!(
                    "listing {}",
                    if ar.group.is_empty() {
                        ar.plural.clone()
                    } else {
                        format!("{}.{}", ar.plural, ar.group)
                    }
                )))?;
                let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
                for item in page.items {
                    let mut obj = serde_json::to_value(&item).unwrap_or(Value::Null);
                    obj["apiVersion"] = Value::String(ar.api_version.clone());
                    obj["kind"] = Value::String(ar.kind.clone());
                    if made_by_the_cluster(&ar.plural, &obj) {
                        continue;
                    }
                    let name = obj["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    if name.is_empty() || name.contains('/') || name.starts_with('.') {
                        continue;
                    }
                    let ns = obj["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("_cluster")
                        .to_string();
                    let obj = clean(&ar.group, &ar.plural, obj);
                    let d = root.join(r.dir()).join(&ns);
                    std::fs::create_dir_all(&d).map_err(io("making", &d))?;
                    let file = d.join(format!("{name}.json"));
                    let bytes = serde_json::to_vec_pretty(&obj).unwrap_or_default();
                    std::fs::write(&file, bytes).map_err(io("writing", &file))?;
                    r.count += 1;
                    total += 1;
                    if total > MAX_OBJECTS {
                        return Err(ObjectsError::TooMany);
                    }
                }
                match next {
                    Some(c) => params = params.continue_token(&c),
                    None => break,
                }
            }
            if r.count > 0 {
                resources.push(r);
            }
        }
    }
    resources.sort_by(|a, b| (a.rank(), &a.group, &a.plural).cmp(&(b.rank(), &b.group, &b.plural)));
    let out = Exported { resources };
    std::fs::create_dir_all(&root).map_err(io("making", &root))?;
    let index = root.join(INDEX);
    std::fs::write(&index, serde_json::to_vec_pretty(&out).unwrap_or_default())
        .map_err(io("writing", &index))?;
    Ok(out)
}

/// Reads what an export wrote under `dir/objects/`.
pub fn read_index(dir: &Path) -> Result<Exported, ObjectsError> {
    let index = dir.join(DIR).join(INDEX);
    let bytes = std::fs::read(&index).map_err(io("reading", &index))?;
    let mut out: Exported = serde_json::from_slice(&bytes).map_err(|e| ObjectsError::Invalid {
        path: index.clone(),
        message: e.to_string(),
    })?;
    for r in &out.resources {
        let ok = |s: &str| {
            !s.is_empty()
                && !s.contains("..")
                && !s.contains('/')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        };
        if !ok(&r.plural) || !ok(&r.version) || !(r.group.is_empty() || ok(&r.group)) {
            return Err(ObjectsError::Invalid {
                path: index,
                message: format!("`{}` is not a resource an export names", r.plural),
            });
        }
    }
    out.resources.sort_by_key(Resource::rank);
    Ok(out)
}

/// Puts the objects of `dir/objects/` into the cluster `client` reaches, in order (see the
/// module's description); objects that exist are left as they are, objects the cluster refuses
/// are listed. CustomResourceDefinitions are waited for up to `established` each.
pub async fn import(
    client: &kube::Client,
    dir: &Path,
    established: Duration,
) -> Result<Imported, ObjectsError> {
    let index = read_index(dir)?;
    let root = dir.join(DIR);
    let mut out = Imported::default();
    for r in &index.resources {
        let ar = r.api();
        let base = root.join(r.dir());
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        if let Ok(namespaces) = std::fs::read_dir(&base) {
            for ns in namespaces.flatten() {
                let ns_name = ns.file_name().to_string_lossy().into_owned();
                for f in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                    files.push((ns_name.clone(), f.path()));
                }
            }
        }
        files.sort();
        let mut crds = Vec::new();
        for (ns, file) in files {
            let bytes = std::fs::read(&file).map_err(io("reading", &file))?;
            let obj: DynamicObject =
                serde_json::from_slice(&bytes).map_err(|e| ObjectsError::Invalid {
                    path: file.clone(),
                    message: e.to_string(),
                })?;
            let name = obj.metadata.name.clone().unwrap_or_default();
            let api: Api<DynamicObject> = if r.namespaced {
                Api::namespaced_with(client.clone(), &ns, &ar)
            } else {
                Api::all_with(client.clone(), &ar)
            };
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => {
                    out.created += 1;
                    if r.plural == "customresourcedefinitions" {
                        crds.push(name);
                    }
                }
                Err(kube::Error::Api(s)) if s.code == 409 => out.existing += 1,
                Err(e) => out.failed.push((
                    format!(
                        "{} {}{name}",
                        r.kind,
                        if r.namespaced {
                            format!("{ns}/")
                        } else {
                            String::new()
                        }
                    ),
                    cloudlet_core::error::chain(&e),
                )),
            }
        }
        for name in crds {
            wait_established(client, &name, established).await?;
        }
    }
    Ok(out)
}

/// Waits until the CustomResourceDefinition `name` says it is established.
async fn wait_established(
    client: &kube::Client,
    name: &str,
    within: Duration,
) -> Result<(), ObjectsError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + within;
    loop {
        let crd = api.get(name).await.map_err(|source| ObjectsError::Api {
            doing: format!("reading CustomResourceDefinition {name}"),
            source,
        })?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ObjectsError::NotEstablished {
                name: name.to_string(),
                seconds: within.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_the_old_cluster_stamped_is_taken_off() {
        let pv = clean(
            "",
            "persistentvolumes",
            json!({"metadata": {"name": "data", "uid": "u", "resourceVersion": "7", "creationTimestamp": "t",
                                "managedFields": [], "ownerReferences": [{"uid": "o"}],
                                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
                   "spec": {"claimRef": {"namespace": "a", "name": "c", "uid": "x", "resourceVersion": "3"}},
                   "status": {"phase": "Bound"}}),
        );
        assert_eq!(
            pv,
            json!({"metadata": {"name": "data"}, "spec": {"claimRef": {"namespace": "a", "name": "c"}}})
        );
        let pod = clean(
            "",
            "pods",
            json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": []}}),
        );
        assert_eq!(pod["spec"], json!({"containers": []}));
        // A headless Service keeps its `None`; a Job with a selector of its own keeps it.
        let headless = clean(
            "",
            "services",
            json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}),
        );
        assert_eq!(headless["spec"]["clusterIP"], "None");
        let manual = clean(
            "batch",
            "jobs",
            json!({"metadata": {"name": "j"}, "spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}}}}),
        );
        assert_eq!(manual["spec"]["selector"]["matchLabels"]["a"], "b");
    }

    #[test]
    fn the_clusters_own_objects_and_what_controllers_own_are_left_out() {
        assert!(left_out("", "events") && left_out("coordination.k8s.io", "leases"));
        assert!(!left_out("", "configmaps") && !left_out("apps", "deployments"));
        let owned = json!({"metadata": {"ownerReferences": [{"controller": true}]}});
        assert!(made_by_the_cluster("pods", &owned));
        let referenced = json!({"metadata": {"ownerReferences": [{"controller": false}]}});
        assert!(!made_by_the_cluster("configmaps", &referenced));
        assert!(made_by_the_cluster(
            "secrets",
            &json!({"type": "kubernetes.io/service-account-token", "metadata": {}})
        ));
    }

    #[test]
    fn an_index_naming_a_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(DIR)).unwrap();
        std::fs::write(
            dir.path().join(DIR).join(INDEX),
            r#"{"resources": [{"group": "", "version": "v1", "kind": "X", "plural": "../../etc", "namespaced": true, "count": 1}]}"#,
        )
        .unwrap();
        let e = read_index(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("not a resource an export names"),
            "{e}"
        );
    }
}
