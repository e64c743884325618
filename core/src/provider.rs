//! The provider trait: how a backend plugs into the engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::ProviderError;
use crate::plan::FieldChange;
use crate::resource::{Domain, Resource};

/// A backend for one or more domains.
///
/// A provider finds what cloudlet manages through ownership markers it writes itself (a
/// label, a custom attribute, a description prefix, a marker in a file), so the world, not a
/// state file, says what exists. It never returns, changes or deletes an object without its
/// marker for this lab.
#[async_trait]
pub trait Provider: Send + Sync {
    /// A short name for messages (`local`, `vsphere` ...).
    fn name(&self) -> &str;

    /// Everything this provider manages for the lab in `domain`.
    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError>;

    /// Everything this provider manages in `domain`, observed knowing what the lab wants
    /// there: a backend may use `desired` to tell what its own normalization does from drift
    /// (the default ignores it).
    async fn observe_with(
        &self,
        domain: Domain,
        desired: &[Resource],
    ) -> Result<Vec<Resource>, ProviderError> {
        let _ = desired;
        self.observe(domain).await
    }

    /// Makes `resource`.
    async fn create(&self, resource: &Resource) -> Result<(), ProviderError>;

    /// Brings `resource` to its desired body; `changes` says which fields differ.
    async fn update(
        &self,
        resource: &Resource,
        changes: &[FieldChange],
    ) -> Result<(), ProviderError>;

    /// Removes `resource` (as observed).
    async fn delete(&self, resource: &Resource) -> Result<(), ProviderError>;

    /// Called once after every step of an apply for `domain` succeeded: the place to commit
    /// what is done per backend rather than per object (trim an inventory, apply pending
    /// router changes).
    async fn finish(&self, domain: Domain) -> Result<(), ProviderError> {
        let _ = domain;
        Ok(())
    }

    /// Whether [`Provider::finish`] also runs after an apply in which some steps failed
    /// (not after a cancelled one), to commit what succeeded: a router whose writes stay
    /// pending until applied says yes, so nothing is left written but not running. The
    /// default is no: finishing waits for a clean apply.
    fn commits_partial_applies(&self) -> bool {
        false
    }

    /// The device's whole configuration as the device keeps it, for `backup.router`: what
    /// the lab says and everything else on it (hand-made rules, leases, users), so a rebuilt
    /// device comes back with all of it. Only a backend with
    /// [`crate::backend::Capability::ConfigBackup`] answers; the default refuses.
    async fn export_config(&self) -> Result<Vec<ConfigFile>, ProviderError> {
        Err(ProviderError::Backend {
            message: format!(
                "the {} backend cannot export its configuration",
                self.name()
            ),
            retryable: false,
        })
    }

    /// Where this hypervisor makes the lab's VMs and what is there now (every VM, the lab's
    /// and others'), for `doctor`'s capacity check. Only a backend with
    /// [`crate::backend::Capability::HostUsage`] answers; the default refuses.
    async fn host_usage(&self) -> Result<HostUsage, ProviderError> {
        Err(ProviderError::Backend {
            message: format!(
                "the {} backend cannot report its host's capacity",
                self.name()
            ),
            retryable: false,
        })
    }

    /// Gives the device back a configuration [`Provider::export_config`] made: running when
    /// the backend can load it, or the file to hand the device and how, when its API has no
    /// way to take one. The default refuses.
    async fn import_config(&self, files: &[ConfigFile]) -> Result<Imported, ProviderError> {
        let _ = files;
        Err(ProviderError::Backend {
            message: format!("the {} backend cannot import a configuration", self.name()),
            retryable: false,
        })
    }
}

/// Where a hypervisor makes VMs (an ESXi host or cluster, a Proxmox node, the KVM host) as it
/// reports itself: what it has and what every VM on it takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostUsage {
    /// Its name as the hypervisor calls it.
    pub name: String,
    /// Logical CPUs (threads).
    pub cpus: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// The datastore the lab's disks go to, when the hypervisor reports one.
    pub datastore: Option<DatastoreUsage>,
    /// Every VM there (templates left out).
    pub vms: Vec<VmUsage>,
}

/// A datastore's size and free space, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatastoreUsage {
    /// Its name.
    pub name: String,
    /// Its size.
    pub capacity: u64,
    /// What is free on it now.
    pub free: u64,
}

/// What one VM takes of its host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmUsage {
    /// Its name.
    pub name: String,
    /// Whether it is this lab's (carries the lab's marker).
    pub lab: bool,
    /// Its vCPUs.
    pub cpus: u32,
    /// Its memory in bytes.
    pub memory: u64,
    /// The size of its disks in bytes (as provisioned, not as written).
    pub disk: u64,
}

/// One file of a device's configuration. It holds secrets (password hashes, keys), so it is
/// never printed: its `Debug` shows the name and size only.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Its name, relative and without `..` (`config.xml`, `leases`).
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFile")
            .field("name", &self.name)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl ConfigFile {
    /// Whether `name` is one a backup may hold: one plain relative component per level, no
    /// `..`, no absolute path, nothing empty.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 255
            && name
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'))
    }
}

/// How a configuration came back to its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// The device runs it now.
    Live {
        /// What was loaded.
        detail: String,
    },
    /// The device's API cannot take it: the file to hand it, and how.
    ByHand {
        /// The file (one of those given).
        file: String,
        /// The steps, in the device's own words.
        how: String,
    },
}

/// Which provider serves which domain.
#[derive(Clone, Default)]
pub struct Providers {
    by_domain: BTreeMap<Domain, Arc<dyn Provider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m: BTreeMap<_, _> = self.by_domain.iter().map(|(d, p)| (*d, p.name())).collect();
        f.debug_struct("Providers").field("by_domain", &m).finish()
    }
}

impl Providers {
    /// No providers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `domain` with `provider`.
    #[must_use]
    pub fn with(mut self, domain: Domain, provider: Arc<dyn Provider>) -> Self {
        self.by_domain.insert(domain, provider);
        self
    }

    /// The provider of a domain.
    pub fn get(&self, domain: Domain) -> Option<&Arc<dyn Provider>> {
        self.by_domain.get(&domain)
    }

    /// The domains served.
    pub fn domains(&self) -> impl Iterator<Item = Domain> + '_ {
        self.by_domain.keys().copied()
    }
}
