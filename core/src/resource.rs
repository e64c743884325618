//! Resources: the unit the engine plans and applies.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The domain a resource belongs to; each domain is served by one provider (its target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// VMs and segments.
    Hypervisor,
    /// DHCP reservations, DNS, forwards, firewall.
    Router,
    /// Boot menus and install configs.
    Pxe,
    /// Datasets, exports, snapshot tasks.
    Storage,
    /// Kubernetes objects.
    Cluster,
}

impl Domain {
    /// All domains, in apply order of preference.
    pub const ALL: [Domain; 5] = [
        Domain::Hypervisor,
        Domain::Router,
        Domain::Pxe,
        Domain::Storage,
        Domain::Cluster,
    ];

    /// The name used in ids and lab files.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Hypervisor => "hypervisor",
            Domain::Router => "router",
            Domain::Pxe => "pxe",
            Domain::Storage => "storage",
            Domain::Cluster => "cluster",
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Domain {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Domain::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("unknown domain `{s}`"))
    }
}

/// A stable resource id: `domain/kind/name`. Ordered by domain, kind, then name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceId {
    /// The domain.
    pub domain: Domain,
    /// The kind within the domain (`vm`, `deployment`, `dhcp-reservation` ...).
    pub kind: Arc<str>,
    /// The name, unique per kind (`namespace.name` for namespaced Kubernetes objects).
    pub name: Arc<str>,
}

impl ResourceId {
    /// Builds an id. Ids are cheap to clone (shared strings): plans of 100,000 resources
    /// copy them many times.
    pub fn new(domain: Domain, kind: impl AsRef<str>, name: impl AsRef<str>) -> Self {
        ResourceId {
            domain,
            kind: intern_kind(kind.as_ref()),
            name: Arc::from(name.as_ref()),
        }
    }
}

impl Ord for ResourceId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.domain
            .cmp(&other.domain)
            // interned kinds are usually the same allocation: skip the string compare
            .then_with(|| {
                if Arc::ptr_eq(&self.kind, &other.kind) {
                    std::cmp::Ordering::Equal
                } else {
                    self.kind.cmp(&other.kind)
                }
            })
            .then_with(|| self.name.cmp(&other.name))
    }
}

impl PartialOrd for ResourceId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Kinds repeat in every plan: the known ones share one allocation each.
fn intern_kind(kind: &str) -> Arc<str> {
    use std::sync::OnceLock;
    const KNOWN: [&str; 26] = [
        "alias",
        "boot-entry",
        "boot-server",
        "configmap",
        "dataset",
        "deployment",
        "dhcp-reservation",
        "dns-override",
        "firewall-rule",
        "ingress",
        "install-config",
        "ipaddresspool",
        "l2advertisement",
        "menu",
        "namespace",
        "network",
        "networkpolicy",
        "nfs-export",
        "persistentvolume",
        "persistentvolumeclaim",
        "port-forward",
        "replication",
        "secret",
        "service",
        "snapshot-task",
        "vm",
    ];
    static TABLE: OnceLock<Vec<Arc<str>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| KNOWN.iter().map(|k| Arc::from(*k)).collect());
    match KNOWN.binary_search(&kind) {
        Ok(i) => table[i].clone(),
        Err(_) => Arc::from(kind),
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.domain, self.kind, self.name)
    }
}

impl FromStr for ResourceId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut it = s.splitn(3, '/');
        match (it.next(), it.next(), it.next()) {
            (Some(d), Some(k), Some(n)) if !k.is_empty() && !n.is_empty() => {
                Ok(ResourceId::new(d.parse()?, k, n))
            }
            _ => Err(format!("`{s}` is not a resource id (domain/kind/name)")),
        }
    }
}

impl Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A resource body: JSON text, compact, with object keys sorted (canonical), so two bodies
/// compare, hash and digest as bytes. Bodies built from a [`Value`] are canonical by
/// construction (its maps are sorted); bodies read back from a backend are canonicalized
/// when deserialized. Equality is byte equality; the planner falls back to a structural
/// comparison when the bytes differ, so a body that is not canonical is still planned right,
/// only slower.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Body(Arc<str>);

impl Body {
    /// Serializes `v` (a struct's fields should be declared in sorted order).
    pub fn new<T: Serialize + ?Sized>(v: &T) -> Body {
        Body(Arc::from(
            serde_json::to_string(v).unwrap_or_else(|_| "null".into()),
        ))
    }

    /// Canonicalizes JSON text.
    pub fn parse(text: &str) -> Result<Body, serde_json::Error> {
        let v: Value = serde_json::from_str(text)?;
        Ok(Body::from(v))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The body as a JSON value.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// Whether the text is canonical (what [`Body::parse`] would produce).
    pub fn is_canonical(&self) -> bool {
        Body::parse(&self.0).is_ok_and(|b| b.0 == self.0)
    }
}

impl From<Value> for Body {
    fn from(v: Value) -> Body {
        Body::new(&v)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Body::from(Value::deserialize(d)?))
    }
}

/// A resource: its id, its desired (or observed) body, and what it needs first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// The id.
    pub id: ResourceId,
    /// The body: what the backend should hold. Secrets appear only as references.
    pub body: Body,
    /// Resources that must exist before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ResourceId>,
    /// Observed resources only: fields of the body another writer holds now (an image
    /// updater, an autoscaler). The plan reports differences there instead of reverting them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Held>,
    /// Whether removing the resource destroys data, and whether the lab lets it.
    #[serde(default, skip_serializing_if = "Data::is_none")]
    pub data: Data,
    /// Fields (by name, wherever they are in the body: `size_mib`) whose value may only grow:
    /// a plan that lowers one (shrinking a disk) marks the step as data loss.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grow_only: Vec<String>,
}

/// What deleting a resource does to data.
///
/// A resource that holds data (a dataset, a directory, a VM disk) says so; the plan then never
/// deletes it just because it left the lab: with [`Data::Retain`] it is kept and listed in
/// [`crate::Plan::kept`], with [`Data::Disposable`] (the lab said `retain: false`) its
/// deletion is planned and marked as data loss, and an apply needs an explicit permission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Data {
    /// Holds nothing that deleting it loses (configuration the lab re-creates).
    #[default]
    None,
    /// Holds data the lab keeps: never deleted when it leaves the lab.
    Retain,
    /// Holds data the lab lets go: deleting it is data loss, done only when allowed.
    Disposable,
}

impl Data {
    /// [`Data::None`].
    pub fn is_none(&self) -> bool {
        *self == Data::None
    }

    /// From a lab's `retain:` setting on something that holds data.
    pub fn retained(retain: bool) -> Data {
        if retain {
            Data::Retain
        } else {
            Data::Disposable
        }
    }
}

/// A field another writer took over: its path (as in [`crate::plan::FieldChange::path`]) and
/// who holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Held {
    /// The field's path in the body.
    pub path: String,
    /// The writer holding it (a Kubernetes field manager, a user).
    pub by: String,
}

impl Held {
    /// Whether `path` is this field or lies inside it.
    pub fn covers(&self, path: &str) -> bool {
        path.strip_prefix(self.path.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
    }
}

impl Resource {
    /// Builds a resource.
    pub fn new(id: ResourceId, body: impl Into<Body>) -> Self {
        Resource {
            id,
            body: body.into(),
            depends_on: Vec::new(),
            held: Vec::new(),
            data: Data::None,
            grow_only: Vec::new(),
        }
    }

    /// Marks what deleting it does to data.
    #[must_use]
    pub fn holding(mut self, data: Data) -> Self {
        self.data = data;
        self
    }

    /// A resource as a backend read it, in the lab's words. Backends do not store the lab's
    /// form of an object nor its dependency edges: when the backend holds exactly what the lab
    /// asks for (`holds`), the lab's own resource is reported; otherwise `read()` (the object
    /// as the backend has it) with the lab's dependencies, so the plan shows only what really
    /// differs.
    pub fn observed(
        id: ResourceId,
        desired: Option<&Resource>,
        holds: impl FnOnce(&Resource) -> bool,
        read: impl FnOnce() -> serde_json::Value,
    ) -> Resource {
        match desired {
            Some(w) if holds(w) => w.clone(),
            lab => {
                let mut r = Resource::new(id, read());
                if let Some(w) = lab {
                    r.depends_on = w.depends_on.clone();
                }
                r
            }
        }
    }

    /// Adds a dependency.
    #[must_use]
    pub fn after(mut self, dep: ResourceId) -> Self {
        if !self.depends_on.contains(&dep) {
            self.depends_on.push(dep);
        }
        self
    }
}
