//! Resources: the unit the engine plans and applies.

use std::fmt;
use std::str::FromStr;

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

/// A stable resource id: `domain/kind/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    /// The domain.
    pub domain: Domain,
    /// The kind within the domain (`vm`, `deployment`, `dhcp-reservation` ...).
    pub kind: String,
    /// The name, unique per kind (`namespace.name` for namespaced Kubernetes objects).
    pub name: String,
}

impl ResourceId {
    /// Builds an id.
    pub fn new(domain: Domain, kind: impl Into<String>, name: impl Into<String>) -> Self {
        ResourceId {
            domain,
            kind: kind.into(),
            name: name.into(),
        }
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

/// A resource: its id, its desired (or observed) body, and what it needs first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// The id.
    pub id: ResourceId,
    /// The body: what the backend should hold. Secrets appear only as references.
    pub body: Value,
    /// Resources that must exist before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ResourceId>,
}

impl Resource {
    /// Builds a resource.
    pub fn new(id: ResourceId, body: Value) -> Self {
        Resource {
            id,
            body,
            depends_on: Vec::new(),
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
