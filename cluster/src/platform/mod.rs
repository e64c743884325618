//! The platform: the cluster's own components (Calico, MetalLB, Traefik, csi-driver-nfs,
//! cert-manager), installed and upgraded with the lab's apps.
//!
//! Each component is one module with its catalog (per release: where upstream publishes its
//! manifest files and their SHA-256, newest first), registered in [`COMPONENTS`]. A release
//! is fetched once into a content-addressed cache (`fetch`, the `client` feature), from upstream, the lab's mirror
//! or a local file, and refused when its checksum differs; its objects are then adapted by
//! typed transforms ([`transform`]: namespace, image registry, node selection, resources, and
//! each component's own) and joined by the small objects cloudlet writes itself (the
//! IngressClass, Issuers, a component without a release manifest). CRDs go to the server as
//! upstream publishes them.
//!
//! Order and readiness are edges and waits: within a component, its Namespace, then CRDs,
//! then RBAC and configuration, then its workloads, then its webhook configurations, then the
//! objects its webhooks guard; a controller is applied with [`WAIT_ANNOTATION`], which makes
//! the provider wait until it is ready (naming the pod and its reason when it is not) before
//! anything after it starts. Components after the pod network wait for it.

pub mod calico;
pub mod cert_manager;
pub mod csi_driver_nfs;
#[cfg(feature = "client")]
pub mod fetch;
pub mod metallb;
#[cfg(feature = "client")]
pub mod status;
pub mod traefik;
pub mod transform;

use std::collections::BTreeMap;
use std::sync::Arc;

use cloudlet_core::diag::Diagnostic;
use cloudlet_core::model::{Component as LabComponent, Lab};
use cloudlet_core::path;
use cloudlet_core::resource::Body;
use cloudlet_core::{Domain, Resource, ResourceId};
use serde_json::{Value, json};

use crate::{LAB_LABEL, MANAGED_BY_LABEL};

/// The annotation that makes the provider wait, after applying an object, until it is
/// ready (a Deployment Available, a DaemonSet rolled out) or the webhooks guarding it
/// answer: its value is the window in seconds.
pub const WAIT_ANNOTATION: &str = "cloudlet.dev/wait";
/// The label naming the platform component an object belongs to.
pub const COMPONENT_LABEL: &str = "cloudlet.dev/component";
/// The annotation on a component's CRDs and workloads naming the release they came from
/// (`metallb v0.16.1`): what a downgrade is recognised by and `status` reports.
pub const RELEASE_ANNOTATION: &str = "cloudlet.dev/release";
/// The default readiness window of a component.
pub const DEFAULT_WAIT_SECS: u64 = 300;

/// One manifest file of a release, as upstream publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct File {
    /// Where upstream publishes it.
    pub url: &'static str,
    /// Its SHA-256 (hex), checked by the release step (see CONTRIBUTING): `None` where this
    /// build could not read it, and the lab must give it.
    pub sha256: Option<&'static str>,
}

/// A release this build knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// Its version (`v0.16.1`).
    pub version: &'static str,
    /// Its manifest files, applied in this order.
    pub files: &'static [File],
}

/// What a component's adaptation is given.
#[derive(Debug)]
pub struct Context<'a> {
    /// The lab.
    pub lab: &'a Lab,
    /// The component's settings in the lab.
    pub settings: &'a LabComponent,
    /// The release being installed.
    pub version: &'a str,
    /// The namespace the component runs in.
    pub namespace: String,
}

/// A platform component.
#[derive(Debug)]
pub struct Definition {
    /// Its key under `cluster.platform`.
    pub key: &'static str,
    /// Its name for people.
    pub title: &'static str,
    /// Where its objects come from, for the README and `status`.
    pub source: &'static str,
    /// The releases this build knows, newest first: the first is the default.
    pub releases: &'static [Release],
    /// The namespace upstream's manifests put it in (`None`: it brings no manifest, or
    /// its manifests use several).
    pub upstream_namespace: Option<&'static str>,
    /// The namespace it runs in for a lab.
    pub namespace: fn(&Lab) -> String,
    /// The component's own transforms of upstream's objects, and the objects cloudlet
    /// writes for it, appended.
    pub adapt: fn(&Context<'_>, &mut Vec<Value>) -> Result<(), String>,
}

/// Every component, in install order.
pub static COMPONENTS: &[&Definition] = &[
    &calico::COMPONENT,
    &metallb::COMPONENT,
    &traefik::COMPONENT,
    &csi_driver_nfs::COMPONENT,
    &cert_manager::COMPONENT,
];

/// The component called `key`.
pub fn definition(key: &str) -> Option<&'static Definition> {
    COMPONENTS.iter().copied().find(|d| d.key == key)
}

/// A file of a component's release as the lab resolves it: upstream's (or the lab's own)
/// address, and its checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// Where it is published, or a path relative to the lab.
    pub url: String,
    /// Its SHA-256.
    pub sha256: String,
}

/// A component the lab installs, at its release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The component.
    pub key: &'static str,
    /// The release.
    pub version: String,
    /// Its files.
    pub files: Vec<Pinned>,
}

/// Why a component's release cannot be pinned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The release is not one this build knows, and the lab gives no files.
    #[error(
        "{title} {version} is not a release this build knows (it knows {known}): name one of them, or give its manifest `files` with their `sha256`"
    )]
    UnknownRelease {
        /// The component.
        title: &'static str,
        /// The release asked for.
        version: String,
        /// What is known.
        known: String,
    },
    /// The release is known but a file's checksum is not.
    #[error(
        "this build does not know the SHA-256 of {url} ({title} {version}): give the release's `files` with their `sha256` (from the release page)"
    )]
    NoChecksum {
        /// The component.
        title: &'static str,
        /// The release.
        version: String,
        /// The file.
        url: String,
    },
}

/// The release of component `def` the lab asks for, with its files.
pub fn pin(def: &Definition, c: &LabComponent) -> Result<Pin, PinError> {
    let version = c
        .version
        .clone()
        .unwrap_or_else(|| def.releases.first().map_or("", |r| r.version).to_string());
    if !c.files.is_empty() {
        return Ok(Pin {
            key: def.key,
            version,
            files: c
                .files
                .iter()
                .map(|f| Pinned {
                    url: f.url.clone(),
                    sha256: f.sha256.to_ascii_lowercase(),
                })
                .collect(),
        });
    }
    let Some(r) = def.releases.iter().find(|r| r.version == version) else {
        return Err(PinError::UnknownRelease {
            title: def.title,
            version,
            known: def
                .releases
                .iter()
                .map(|r| r.version)
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let mut files = Vec::with_capacity(r.files.len());
    for f in r.files {
        let Some(sha) = f.sha256 else {
            return Err(PinError::NoChecksum {
                title: def.title,
                version,
                url: f.url.into(),
            });
        };
        files.push(Pinned {
            url: f.url.into(),
            sha256: sha.into(),
        });
    }
    Ok(Pin {
        key: def.key,
        version,
        files,
    })
}

/// The components the lab installs, in install order, with their settings.
pub fn installed(lab: &Lab) -> Vec<(&'static Definition, &LabComponent)> {
    let Some(c) = &lab.cluster else {
        return Vec::new();
    };
    COMPONENTS
        .iter()
        .copied()
        .filter(|d| lab.platform_installs(d.key))
        .filter_map(|d| c.platform.component(d.key).map(|s| (d, s)))
        .collect()
}

/// The platform's rules that need the catalog: every installed component's release is one
/// this build knows (with its checksums) or the lab gives its files.
pub fn validate(lab: &Lab) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (def, c) in installed(lab) {
        if let Err(e) = pin(def, c) {
            let p = path!["cluster", "platform", def.key];
            let at = if c.version.is_some() {
                p.join("version")
            } else {
                p
            };
            out.push(Diagnostic::error("platform-release", at, e.to_string()));
        }
    }
    out
}

/// The fetched, verified manifest files of the components the lab installs: key → the
/// files' texts in order.
#[derive(Debug, Clone, Default)]
pub struct Releases {
    files: BTreeMap<&'static str, (String, Vec<Arc<str>>)>,
}

impl Releases {
    /// Adds the files of `key` at `version`.
    pub fn insert(&mut self, key: &'static str, version: String, texts: Vec<Arc<str>>) {
        self.files.insert(key, (version, texts));
    }

    /// The texts of `key`'s files, if fetched.
    pub fn get(&self, key: &str) -> Option<(&str, &[Arc<str>])> {
        self.files.get(key).map(|(v, t)| (v.as_str(), t.as_slice()))
    }
}

/// The id of a component's pinned release, as planned where releases are not applied (the
/// local backend renders each component as what it would fetch).
pub fn release_id(key: &str) -> ResourceId {
    ResourceId::new(Domain::Cluster, "release", key)
}

/// The components the lab installs as their pinned releases and settings, one resource
/// each: what a backend that does not apply releases is given.
pub fn pins(lab: &Lab) -> Vec<Resource> {
    installed(lab)
        .into_iter()
        .filter_map(|(def, c)| {
            let pin = pin(def, c).ok()?;
            let files: Vec<Value> = pin
                .files
                .iter()
                .map(|f| json!({"url": f.url, "sha256": f.sha256}))
                .collect();
            Some(Resource::new(
                release_id(def.key),
                Body::new(&json!({
                    "component": def.title,
                    "version": pin.version,
                    "namespace": (def.namespace)(lab),
                    "files": files,
                    "source": def.source,
                })),
            ))
        })
        .collect()
}

/// Why a component's objects cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{title} {version}: {message}")]
pub struct AdaptError {
    /// The component.
    pub title: &'static str,
    /// The release.
    pub version: String,
    /// What is wrong (a file that is not YAML, an object without a name).
    pub message: String,
}

/// The objects of the components the lab installs, from their fetched releases: adapted,
/// labelled, ordered. `releases` must hold every installed component that has files.
pub fn expand(lab: &Lab, releases: &Releases) -> Result<Vec<Resource>, AdaptError> {
    let mut out = Vec::new();
    // The gate every later component waits for: the pod network's controllers.
    let mut network_gate: Vec<ResourceId> = Vec::new();
    for (def, settings) in installed(lab) {
        let (version, texts) = match releases.get(def.key) {
            Some((v, t)) => (v.to_string(), t),
            None => {
                let v = pin(def, settings).map(|p| p.version).unwrap_or_default();
                (v, &[][..])
            }
        };
        let fail = |message: String| AdaptError {
            title: def.title,
            version: version.clone(),
            message,
        };
        let mut objects = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            objects
                .extend(transform::parse(text).map_err(|e| fail(format!("file {}: {e}", i + 1)))?);
        }
        let cx = Context {
            lab,
            settings,
            version: &version,
            namespace: (def.namespace)(lab),
        };
        if let Some(from) = def.upstream_namespace
            && from != cx.namespace
        {
            transform::move_namespace(&mut objects, from, &cx.namespace);
        }
        (def.adapt)(&cx, &mut objects).map_err(&fail)?;
        if let Some(reg) = &lab
            .cluster
            .as_ref()
            .and_then(|c| c.platform.registry.clone())
        {
            transform::registry(&mut objects, reg);
        }
        if !settings.node_selector.is_empty() {
            transform::node_selector(&mut objects, &settings.node_selector);
        }
        if let Some(r) = &settings.resources {
            transform::resources(&mut objects, r.cpu.as_deref(), r.memory.as_deref());
        }
        let wait = settings
            .ready_within
            .map_or(DEFAULT_WAIT_SECS, |d| d.0.max(1));
        let release = format!("{} {version}", def.key);
        let resources = order(lab, def.key, &release, objects, wait).map_err(fail)?;
        let gates: Vec<ResourceId> = resources
            .iter()
            .filter(|r| is_gate(r))
            .map(|r| r.id.clone())
            .collect();
        for mut r in resources {
            for g in &network_gate {
                if !r.depends_on.contains(g) {
                    r.depends_on.push(g.clone());
                }
            }
            out.push(r);
        }
        if def.key == calico::COMPONENT.key {
            network_gate = gates;
        }
    }
    Ok(out)
}

fn is_gate(r: &Resource) -> bool {
    r.body.value()["metadata"]["annotations"][WAIT_ANNOTATION].is_string()
        && matches!(&*r.id.kind, "deployment" | "daemonset")
}

/// The wave an object of `kind` goes in within its component.
fn wave(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "ServiceAccount"
        | "ClusterRole"
        | "ClusterRoleBinding"
        | "Role"
        | "RoleBinding"
        | "ConfigMap"
        | "Secret"
        | "PriorityClass"
        | "CSIDriver"
        | "StorageClass"
        | "IngressClass"
        | "PodDisruptionBudget" => 2,
        "Service" | "Deployment" | "DaemonSet" | "StatefulSet" | "Job" => 3,
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" | "APIService" => 4,
        _ => 5,
    }
}

/// The component's objects as resources: labelled, controllers marked to be waited for, and
/// each wave after the previous one's objects (a workload after its RBAC, webhook
/// configurations after the controllers that answer them, custom resources after both).
fn order(
    lab: &Lab,
    key: &str,
    release: &str,
    objects: Vec<Value>,
    wait: u64,
) -> Result<Vec<Resource>, String> {
    let mut waves: BTreeMap<u8, Vec<Resource>> = BTreeMap::new();
    for mut v in objects {
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if kind.is_empty() || name.is_empty() || !v["apiVersion"].is_string() {
            return Err(format!(
                "an object without apiVersion, kind or metadata.name ({kind} {name})"
            ));
        }
        let w = wave(&kind);
        let meta = v["metadata"]
            .as_object_mut()
            .ok_or("metadata is not a mapping")?;
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert(MANAGED_BY_LABEL.into(), json!("cloudlet"));
            l.insert(LAB_LABEL.into(), json!(lab.name));
            l.insert(COMPONENT_LABEL.into(), json!(key));
        }
        if kind == "CustomResourceDefinition" || (w == 3 && kind != "Service") || w == 4 {
            let ann = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = ann.as_object_mut() {
                if kind == "CustomResourceDefinition" {
                    a.insert(RELEASE_ANNOTATION.into(), json!(release));
                } else {
                    a.insert(WAIT_ANNOTATION.into(), json!(wait.to_string()));
                    if matches!(kind.as_str(), "Deployment" | "DaemonSet" | "StatefulSet") {
                        a.insert(RELEASE_ANNOTATION.into(), json!(release));
                    }
                }
            }
        }
        if w == 5 {
            // Guarded by the component's webhooks: retried while they do not answer yet.
            let ann = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = ann.as_object_mut() {
                a.insert(WAIT_ANNOTATION.into(), json!(wait.to_string()));
            }
        }
        let ns = v["metadata"]["namespace"].as_str().map(str::to_string);
        let rid = ResourceId::new(
            Domain::Cluster,
            kind.to_ascii_lowercase(),
            match &ns {
                Some(ns) => format!("{ns}.{name}"),
                None => name.clone(),
            },
        );
        waves
            .entry(w)
            .or_default()
            .push(Resource::new(rid, Body::new(&v)));
    }
    let mut out: Vec<Resource> = Vec::new();
    let mut before: Vec<ResourceId> = Vec::new();
    for (_, mut rs) in waves {
        let ids: Vec<ResourceId> = rs.iter().map(|r| r.id.clone()).collect();
        for r in &mut rs {
            // Only the edges that matter: the previous wave's objects. Within a wave
            // order does not matter, and earlier waves are reached through the previous.
            r.depends_on.extend(before.iter().cloned());
        }
        out.extend(rs);
        before = ids;
    }
    let mut seen = std::collections::HashSet::new();
    for r in &out {
        if !seen.insert(&r.id) {
            return Err(format!("{} is in the release twice", r.id));
        }
    }
    Ok(out)
}

/// Joins the platform's objects to the lab's others: a Namespace both make is the
/// component's (upstream's labels, such as MetalLB's pod-security level, matter); the lab's
/// objects of kinds a component's CRDs define (MetalLB's pools, cert-manager's issuers) go
/// after that component's webhook configurations (or its controllers, where it has none),
/// marked to be retried while those webhooks do not answer yet.
pub fn link(platform: &[Resource], others: &mut Vec<Resource>) {
    let namespaces: std::collections::HashSet<&ResourceId> = platform
        .iter()
        .filter(|r| &*r.id.kind == "namespace")
        .map(|r| &r.id)
        .collect();
    others.retain(|r| !namespaces.contains(&r.id));
    // API group → the component's objects that must come first.
    let mut groups: BTreeMap<String, &str> = BTreeMap::new();
    let mut last: BTreeMap<&str, (u8, Vec<ResourceId>)> = BTreeMap::new();
    for r in platform {
        let v = r.body.value();
        let Some(key) = v["metadata"]["labels"][COMPONENT_LABEL].as_str() else {
            continue;
        };
        let key: &str = COMPONENTS
            .iter()
            .map(|d| d.key)
            .find(|k| *k == key)
            .unwrap_or_default();
        let kind = v["kind"].as_str().unwrap_or_default();
        if kind == "CustomResourceDefinition"
            && let Some(g) = v["spec"]["group"].as_str()
        {
            groups.insert(g.to_string(), key);
        }
        let w = wave(kind);
        if (3..=4).contains(&w) && kind != "Service" {
            let e = last.entry(key).or_insert((w, Vec::new()));
            if w > e.0 {
                *e = (w, Vec::new());
            }
            if w == e.0 {
                e.1.push(r.id.clone());
            }
        }
    }
    for r in others.iter_mut() {
        let mut v = r.body.value();
        let group = v["apiVersion"]
            .as_str()
            .and_then(|a| a.split_once('/'))
            .map(|(g, _)| g.to_string());
        let Some(key) = group.and_then(|g| groups.get(&g).copied()) else {
            continue;
        };
        let Some((_, first)) = last.get(key) else {
            continue;
        };
        for d in first {
            if !r.depends_on.contains(d) {
                r.depends_on.push(d.clone());
            }
        }
        let window = platform
            .iter()
            .find(|p| first.first() == Some(&p.id))
            .and_then(|p| {
                p.body.value()["metadata"]["annotations"][WAIT_ANNOTATION]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| DEFAULT_WAIT_SECS.to_string());
        if let Some(m) = v["metadata"].as_object_mut() {
            let a = m.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = a.as_object_mut() {
                a.insert(WAIT_ANNOTATION.into(), json!(window));
            }
        }
        r.body = Body::new(&v);
    }
}

/// A CRD update that moves a component to an older release whose CRD stores another
/// version than the installed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downgrade {
    /// The component (`metallb`).
    pub key: String,
    /// The installed release.
    pub from: String,
    /// The release asked for.
    pub to: String,
    /// The CRD.
    pub crd: String,
    /// Its storage version now, and the one the older release stores.
    pub storage: (String, String),
}

/// `v1.2.3-rc.1` as numbers for ordering (`None` when it is not such a version).
fn version_key(v: &str) -> Option<Vec<u64>> {
    let core = v.trim_start_matches('v').split(['-', '+']).next()?;
    core.split('.').map(|n| n.parse().ok()).collect()
}

fn storage_of(versions: &Value) -> Option<String> {
    versions
        .as_array()?
        .iter()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())
        .map(str::to_string)
}

/// The downgrade a planned update of a component's CRD is, if it is one: its release
/// annotation goes to an older version and its storage version changes.
pub fn downgrade(step: &cloudlet_core::plan::Step) -> Option<Downgrade> {
    if step.action != cloudlet_core::plan::Action::Update
        || &*step.resource.id.kind != "customresourcedefinition"
    {
        return None;
    }
    let release_path = format!("metadata.annotations.{RELEASE_ANNOTATION}");
    let change = step.changes.iter().find(|c| c.path == release_path)?;
    let (before, after) = (
        change.before.as_ref()?.as_str()?,
        change.after.as_ref()?.as_str()?,
    );
    let (key, from) = before.split_once(' ')?;
    let (key2, to) = after.split_once(' ')?;
    if key != key2 || version_key(to)? >= version_key(from)? {
        return None;
    }
    // The live versions: the desired ones with the planned changes taken back.
    let desired = step.resource.body.value();
    let mut live = desired["spec"]["versions"].clone();
    for c in &step.changes {
        if c.path == "spec.versions" {
            live = c.before.clone().unwrap_or(Value::Null);
        } else if let Some(rest) = c.path.strip_prefix("spec.versions[")
            && let Some((i, field)) = rest.split_once("].")
            && let Ok(i) = i.parse::<usize>()
            && !field.contains('.')
            && let Some(item) = live.get_mut(i).and_then(Value::as_object_mut)
        {
            match &c.before {
                Some(b) => item.insert(field.to_string(), b.clone()),
                None => item.remove(field),
            };
        }
    }
    let (now, then) = (
        storage_of(&live)?,
        storage_of(&desired["spec"]["versions"])?,
    );
    (now != then).then(|| Downgrade {
        key: key.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        crd: step.resource.id.name.to_string(),
        storage: (now, then),
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // #[tokio::test] builds a runtime per test
mod tests {
    use super::*;

    fn lab(extra: &str) -> Lab {
        let text = format!(
            "name: t\nsite: {{domain: t.lan}}\ncluster:\n  control_plane: []\n  metallb:\n    pools:\n      default: {{addresses: [10.0.20.200-10.0.20.210]}}\n{extra}"
        );
        let loaded = cloudlet_core::load::load_texts(
            vec![("lab.yaml".into(), text)],
            std::path::PathBuf::from("."),
        )
        .unwrap();
        loaded.lab
    }

    const METALLB: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: metallb-system}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: ipaddresspools.metallb.io}\nspec: {group: metallb.io, names: {kind: IPAddressPool, plural: ipaddresspools}, scope: Namespaced, versions: []}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: controller, namespace: metallb-system}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: controller, namespace: metallb-system}\nspec: {template: {spec: {containers: [{name: c, image: quay.io/metallb/controller:v1}]}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: metallb-webhook-service, namespace: metallb-system}\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: metallb-webhook-configuration}\nwebhooks: []\n";

    #[test]
    fn a_component_is_pinned_to_the_catalog_or_the_labs_files() {
        let l = lab("");
        let c = &l.cluster.as_ref().unwrap().platform.metallb;
        let p = pin(&metallb::COMPONENT, c).unwrap();
        assert_eq!(p.version, metallb::COMPONENT.releases[0].version);
        assert_eq!(p.files[0].sha256.len(), 64);
        let l = lab("  platform:\n    metallb: {version: v0.1.0}\n");
        let c = &l.cluster.as_ref().unwrap().platform.metallb;
        assert!(matches!(
            pin(&metallb::COMPONENT, c),
            Err(PinError::UnknownRelease { .. })
        ));
        let sha = "AB".repeat(32);
        let l = lab(&format!(
            "  platform:\n    metallb: {{version: v0.1.0, files: [{{url: m.yaml, sha256: {sha}}}]}}\n"
        ));
        let c = &l.cluster.as_ref().unwrap().platform.metallb;
        let p = pin(&metallb::COMPONENT, c).unwrap();
        assert_eq!(
            p.files[0].sha256,
            sha.to_ascii_lowercase(),
            "checksums compare in lower case"
        );
        // Every catalog entry has a URL per file and a checksum of the right form, or none.
        for d in COMPONENTS {
            assert!(!d.releases.is_empty(), "{}", d.key);
            for r in d.releases {
                for f in r.files {
                    assert!(
                        f.url.starts_with("https://") && f.url.contains(r.version),
                        "{}",
                        f.url
                    );
                    assert!(
                        f.sha256.is_none_or(
                            |s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
                        )
                    );
                }
            }
        }
    }

    #[test]
    fn waves_order_a_component_and_the_labs_pools_wait_for_its_webhook() {
        let l = lab("  platform:\n    metallb: {ready_within: 42s}\n");
        let mut releases = Releases::default();
        releases.insert("metallb", "v1".into(), vec![Arc::from(METALLB)]);
        let objs = expand(&l, &releases).unwrap();
        let get = |id: &str| {
            objs.iter()
                .find(|r| r.id.to_string() == id)
                .unwrap_or_else(|| panic!("{id}"))
        };
        let deps = |id: &str| -> Vec<String> {
            get(id).depends_on.iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            deps("cluster/customresourcedefinition/ipaddresspools.metallb.io"),
            vec!["cluster/namespace/metallb-system"]
        );
        assert_eq!(
            deps("cluster/serviceaccount/metallb-system.controller"),
            vec!["cluster/customresourcedefinition/ipaddresspools.metallb.io"]
        );
        assert_eq!(
            deps("cluster/deployment/metallb-system.controller"),
            vec!["cluster/serviceaccount/metallb-system.controller"]
        );
        assert_eq!(
            deps("cluster/validatingwebhookconfiguration/metallb-webhook-configuration"),
            vec![
                "cluster/deployment/metallb-system.controller",
                "cluster/service/metallb-system.metallb-webhook-service"
            ]
        );
        let d = get("cluster/deployment/metallb-system.controller")
            .body
            .value();
        assert_eq!(d["metadata"]["annotations"][WAIT_ANNOTATION], "42");
        assert_eq!(d["metadata"]["labels"][COMPONENT_LABEL], "metallb");
        let crd = get("cluster/customresourcedefinition/ipaddresspools.metallb.io")
            .body
            .value();
        assert_eq!(
            crd["metadata"]["annotations"][RELEASE_ANNOTATION],
            "metallb v1"
        );
        assert!(
            crd["spec"].get("versions").is_some(),
            "CRDs go as published"
        );

        // The lab's pool: after the webhook, retried within the window; the Namespace is the
        // component's.
        let mut others = crate::expand(&l);
        assert!(
            others
                .iter()
                .any(|r| r.id.to_string() == "cluster/namespace/metallb-system")
        );
        link(&objs, &mut others);
        assert!(
            !others
                .iter()
                .any(|r| r.id.to_string() == "cluster/namespace/metallb-system")
        );
        let pool = others
            .iter()
            .find(|r| &*r.id.kind == "ipaddresspool")
            .unwrap();
        assert!(pool.depends_on.iter().any(|d| d.to_string()
            == "cluster/validatingwebhookconfiguration/metallb-webhook-configuration"));
        assert_eq!(
            pool.body.value()["metadata"]["annotations"][WAIT_ANNOTATION],
            "42"
        );
    }

    #[test]
    fn a_release_with_an_object_twice_or_without_a_name_is_refused() {
        let l = lab("");
        let mut releases = Releases::default();
        releases.insert(
            "metallb",
            "v1".into(),
            vec![Arc::from(METALLB), Arc::from(METALLB)],
        );
        let e = expand(&l, &releases).unwrap_err();
        assert!(e.message.contains("is in the release twice"), "{e}");
        let mut releases = Releases::default();
        releases.insert(
            "metallb",
            "v1".into(),
            vec![Arc::from(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: x}\n",
            )],
        );
        let e = expand(&l, &releases).unwrap_err();
        assert!(
            e.to_string().starts_with("MetalLB v1: an object without"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_cached_file_that_changed_is_fetched_again_and_a_wrong_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.yaml"), METALLB).unwrap();
        let sha = {
            use sha2::Digest as _;
            sha2::Sha256::digest(METALLB.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let src = fetch::Sources {
            cache: dir.path().join("cache"),
            base_dir: dir.path().to_path_buf(),
            mirror: None,
            mirror_ca: None,
        };
        let p = Pin {
            key: "metallb",
            version: "v1".into(),
            files: vec![Pinned {
                url: "m.yaml".into(),
                sha256: sha.clone(),
            }],
        };
        assert_eq!(&*fetch::fetch(&src, &p).await.unwrap()[0], METALLB);
        let cached = dir.path().join("cache/sha256").join(&sha);
        std::fs::write(&cached, "tampered").unwrap();
        assert_eq!(
            &*fetch::fetch(&src, &p).await.unwrap()[0],
            METALLB,
            "a cache entry is checked too"
        );
        assert_eq!(std::fs::read_to_string(&cached).unwrap(), METALLB);
        std::fs::write(dir.path().join("m.yaml"), "kind: Other\n").unwrap();
        std::fs::remove_file(&cached).unwrap();
        let e = fetch::fetch(&src, &p).await.unwrap_err().to_string();
        assert!(e.contains("not the pinned") && e.contains(&sha), "{e}");
        // With a mirror, an upstream URL is read from MIRROR/COMPONENT/VERSION/FILE.
        let src = fetch::Sources {
            mirror: Some("mirror".into()),
            ..src
        };
        let up = Pinned {
            url: "https://example.com/a/metallb-native.yaml?x=1".into(),
            sha256: sha,
        };
        assert_eq!(
            fetch::location(&src, &p, &up),
            dir.path()
                .join("mirror/metallb/v1/metallb-native.yaml")
                .display()
                .to_string()
        );
    }
}
