//! The `kubeadm_provider` backend's client: everything but its description (the `client` feature).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use cloudlet_core::backend::{ConnectError, Connection};
use cloudlet_core::error::ProviderError;
use cloudlet_core::plan::FieldChange;
use cloudlet_core::{Domain, Provider, Resource};
use futures::future::BoxFuture;
use tokio::sync::OnceCell;

use crate::bootstrap::{Access, Bootstrap, BootstrapError, NODE_KIND, Options};
use crate::identity::Identity;
use crate::kube_provider::{KubeOptions, KubeProvider};

pub(super) fn connect<'a>(
    c: &'a Connection<'a>,
) -> BoxFuture<'a, Result<Arc<dyn Provider>, ConnectError>> {
    Box::pin(async move { Ok(Arc::new(open(c)?) as Arc<dyn Provider>) })
}

/// The file holding the nodes' host keys under the state directory.
pub const KNOWN_HOSTS: &str = "known_hosts";

/// The `kubeadm` provider of a lab.
pub struct KubeadmProvider {
    bootstrap: Bootstrap,
    lab: String,
    options: KubeOptions,
    kube: OnceCell<KubeProvider>,
}

impl std::fmt::Debug for KubeadmProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeadmProvider")
            .field("lab", &self.lab)
            .finish_non_exhaustive()
    }
}

fn setup(message: String) -> ConnectError {
    ConnectError::Client {
        backend: "kubeadm",
        source: Box::new(ProviderError::Backend {
            message,
            retryable: false,
        }),
    }
}

/// The install user's key file a target names.
fn key_file(c: &Connection<'_>) -> Result<PathBuf, ConnectError> {
    use cloudlet_core::model::SecretRef;
    match &c.target.credentials {
        None => Err(ConnectError::Missing {
            field: "credentials",
        }),
        Some(SecretRef::File(f)) => Ok(c.base_dir.join(f)),
        Some(SecretRef::Env(v)) => std::env::var_os(v).map(PathBuf::from).ok_or_else(|| {
            ConnectError::Credentials(cloudlet_core::error::SecretError::EnvUnset {
                var: v.clone(),
            })
        }),
    }
}

/// The provider a `kubeadm` target names: the vault is opened (and the cluster's identity
/// made in it on first use); nothing is contacted yet.
pub fn open(c: &Connection<'_>) -> Result<KubeadmProvider, ConnectError> {
    let ignore_preflight = c
        .setting("ignore_preflight_errors")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    open_with(
        c,
        Options {
            ignore_preflight,
            ..Options::default()
        },
    )
}

/// [`open`] with bootstrap options (how long a node may take, how many join at once).
pub fn open_with(c: &Connection<'_>, options: Options) -> Result<KubeadmProvider, ConnectError> {
    let key = cloudlet_core::vault::key_from_env().map_err(|e| setup(e.to_string()))?;
    let vault = cloudlet_core::vault::Vault::open(c.state_dir.join("vault"), &key)
        .map_err(|e| setup(e.to_string()))?;
    let (identity, _) = Identity::load_or_make(&vault).map_err(|e| setup(e.to_string()))?;
    let port = match c.setting("port") {
        None => 22,
        Some(p) => p
            .parse()
            .map_err(|_| setup(format!("`port: {p}` is not a port number")))?,
    };
    let access = Access {
        user: c.setting("user").unwrap_or_else(|| "root".into()),
        key: key_file(c)?,
        known_hosts: c
            .setting("known_hosts")
            .map_or_else(|| c.state_dir.join(KNOWN_HOSTS), |f| c.base_dir.join(f)),
        port,
    };
    let bootstrap = Bootstrap::new(Arc::new(c.lab.clone()), Arc::new(identity), access, options);
    Ok(KubeadmProvider {
        lab: c.lab.name.clone(),
        options: KubeOptions {
            take_over: c.take_over,
            secrets_dir: c.base_dir.to_path_buf(),
            ..KubeOptions::default()
        },
        bootstrap,
        kube: OnceCell::new(),
    })
}

fn failed(what: String, e: BootstrapError) -> ProviderError {
    ProviderError::Command {
        context: what,
        source: Box::new(e),
    }
}

impl KubeadmProvider {
    /// The bootstrap.
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    /// The provider of the cluster's objects (connected on first use).
    pub async fn kube(&self) -> Result<&KubeProvider, ProviderError> {
        self.kube
            .get_or_try_init(|| async {
                let client = self
                    .bootstrap
                    .client()
                    .await
                    .map_err(|e| failed("connecting to the cluster".into(), e))?;
                Ok(KubeProvider::new(
                    client,
                    &self.lab,
                    KubeOptions {
                        endpoint: self.bootstrap.endpoint_url().ok(),
                        ..self.options.clone()
                    },
                ))
            })
            .await
    }

    async fn bring(&self, r: &Resource) -> Result<(), ProviderError> {
        let node = r.id.name.to_string();
        self.bootstrap
            .bring(&node)
            .await
            .map(|_| ())
            .map_err(|e| failed(format!("bringing {node} into the cluster"), e))
    }
}

#[async_trait]
impl Provider for KubeadmProvider {
    fn name(&self) -> &str {
        "kubeadm"
    }

    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        self.observe_with(domain, &[]).await
    }

    async fn observe_with(
        &self,
        domain: Domain,
        desired: &[Resource],
    ) -> Result<Vec<Resource>, ProviderError> {
        if domain != Domain::Cluster {
            return Ok(Vec::new());
        }
        let (mut nodes, api) = self
            .bootstrap
            .observe_resources()
            .await
            .map_err(|e| failed("looking at the cluster's nodes".into(), e))?;
        // Dependencies are the lab's, not something a node has.
        for n in &mut nodes {
            if let Some(w) = desired.iter().find(|w| w.id == n.id) {
                n.depends_on = w.depends_on.clone();
            }
        }
        if !api {
            // No cluster yet (or none answering): its objects are all to be made.
            return Ok(nodes);
        }
        let objects: Vec<Resource> = desired
            .iter()
            .filter(|r| &*r.id.kind != NODE_KIND)
            .cloned()
            .collect();
        let mut observed = self.kube().await?.observe_with(domain, &objects).await?;
        observed.append(&mut nodes);
        Ok(observed)
    }

    async fn create(&self, resource: &Resource) -> Result<(), ProviderError> {
        if &*resource.id.kind == NODE_KIND {
            return self.bring(resource).await;
        }
        self.kube().await?.create(resource).await
    }

    async fn update(
        &self,
        resource: &Resource,
        changes: &[FieldChange],
    ) -> Result<(), ProviderError> {
        if &*resource.id.kind == NODE_KIND {
            return self.bring(resource).await;
        }
        self.kube().await?.update(resource, changes).await
    }

    async fn delete(&self, resource: &Resource) -> Result<(), ProviderError> {
        if &*resource.id.kind == NODE_KIND {
            // Only the lab's own nodes are observed, so a node is never planned away; said
            // plainly should it ever be.
            return Err(ProviderError::Backend {
                message: format!(
                    "cloudlet does not remove nodes from a cluster: drain {0}, run `kubeadm reset` on it and delete its Node",
                    resource.id.name
                ),
                retryable: false,
            });
        }
        self.kube().await?.delete(resource).await
    }

    async fn finish(&self, domain: Domain) -> Result<(), ProviderError> {
        match self.kube.get() {
            Some(k) => k.finish(domain).await,
            None => Ok(()),
        }
    }
}
