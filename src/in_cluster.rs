//! The lab as its watch sees it from inside its own cluster ([`crate::Options::in_cluster`]):
//! the cluster through the pod's service account, and what only the machine that applies
//! can see — the nodes cloudlet made (reached over SSH with the install key, which stays out
//! of the cluster) and domains rendered to local files — taken as the lab wants them, so they
//! are neither drift nor changed.

use async_trait::async_trait;
use cloudlet_core::plan::FieldChange;
use cloudlet_core::{Domain, Provider, ProviderError, Resource};

use crate::cluster;

fn unseen(what: &str) -> ProviderError {
    ProviderError::Backend {
        message: format!(
            "{what} cannot be changed from inside the cluster: apply the lab from the machine that made it"
        ),
        retryable: false,
    }
}

/// A domain the pod cannot see: observed as wanted, never changed.
#[derive(Debug)]
pub(crate) struct Unseen;

#[async_trait]
impl Provider for Unseen {
    fn name(&self) -> &str {
        "unseen"
    }

    async fn observe(&self, _domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        Ok(Vec::new())
    }

    async fn observe_with(
        &self,
        domain: Domain,
        desired: &[Resource],
    ) -> Result<Vec<Resource>, ProviderError> {
        Ok(desired
            .iter()
            .filter(|r| r.id.domain == domain)
            .cloned()
            .collect())
    }

    async fn create(&self, r: &Resource) -> Result<(), ProviderError> {
        Err(unseen(&r.id.to_string()))
    }

    async fn update(&self, r: &Resource, _: &[FieldChange]) -> Result<(), ProviderError> {
        Err(unseen(&r.id.to_string()))
    }

    async fn delete(&self, r: &Resource) -> Result<(), ProviderError> {
        Err(unseen(&r.id.to_string()))
    }
}

/// The cluster through the pod's service account, its nodes (made over SSH) as wanted.
pub(crate) struct InCluster(pub(crate) cluster::KubeProvider);

fn node(r: &Resource) -> bool {
    &*r.id.kind == cluster::bootstrap::NODE_KIND
}

#[async_trait]
impl Provider for InCluster {
    fn name(&self) -> &str {
        "kubernetes (in the cluster)"
    }

    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        self.0.observe(domain).await
    }

    async fn observe_with(
        &self,
        domain: Domain,
        desired: &[Resource],
    ) -> Result<Vec<Resource>, ProviderError> {
        let (nodes, objects): (Vec<Resource>, Vec<Resource>) =
            desired.iter().cloned().partition(node);
        let mut out = self.0.observe_with(domain, &objects).await?;
        out.extend(nodes);
        Ok(out)
    }

    async fn create(&self, r: &Resource) -> Result<(), ProviderError> {
        if node(r) {
            return Err(unseen(&r.id.to_string()));
        }
        self.0.create(r).await
    }

    async fn update(&self, r: &Resource, changes: &[FieldChange]) -> Result<(), ProviderError> {
        if node(r) {
            return Err(unseen(&r.id.to_string()));
        }
        self.0.update(r, changes).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), ProviderError> {
        if node(r) {
            return Err(unseen(&r.id.to_string()));
        }
        self.0.delete(r).await
    }

    async fn finish(&self, domain: Domain) -> Result<(), ProviderError> {
        self.0.finish(domain).await
    }

    fn commits_partial_applies(&self) -> bool {
        self.0.commits_partial_applies()
    }
}
