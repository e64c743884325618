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
