//! The bootstrap: the lab's installed control-plane and worker machines become its cluster.
//!
//! Everything starts from observation, so an interrupted bootstrap resumes where it stopped:
//! each node is looked at over SSH (the install user's key, its host key as its install
//! reported it and verified from then on) and the cluster through its API (Node objects).
//! From that, [`plan`] says what each node needs:
//!
//! - `kubeadm init`, once per cluster, on the first control plane, only while no control
//!   plane holds a cluster (a kubelet configuration or etcd data) and the API endpoint does
//!   not answer: never a second init (k3s#13623);
//! - a join for every node that has not joined (one that does not answer in a cluster that
//!   exists is down and left alone, unless the API says it never joined); control planes one at a time (etcd adds one
//!   learner at a time: kubeadm#2005), their CA keys copied over SSH, never uploaded to the
//!   cluster; workers in parallel, bounded;
//! - a rejoin for a node whose machine was installed again under the same name: its stale
//!   Node object goes first and, for a control plane, its etcd member — only while etcd has
//!   quorum (kubernetes#100677), otherwise a refusal that says what to do.
//!
//! Every join uses a token minted through the API just before it (15 minutes at most) and
//! revoked right after, whatever happened. A node that has joined is left alone. Tokens, CA
//! keys and kubeconfigs are never in an error, a log or the plan: what a node prints is
//! searched for the token before it is shown.

pub use crate::nodes::{NODE_KIND, expand, headline, node_id};
use crate::nodes::{node_body, nodes};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudlet_core::Resource;
use cloudlet_core::model::Lab;
use cloudlet_core::vault::Vault;
use cloudlet_transport::exec::{ExecError, Host};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams};

use crate::bootstrap_token::{self, TokenError};
use crate::identity::{Identity, IdentityError};
use crate::kubeadm::{self, API_PORT, KubeadmError, Token};

/// The kube-vip release that announces a several-control-plane endpoint unless the lab names
/// another image (`cluster.kubernetes.vip_image`).
pub const KUBE_VIP_IMAGE: &str = "ghcr.io/kube-vip/kube-vip:v0.8.9";

/// Where kube-vip's static pod goes.
const KUBE_VIP_MANIFEST: &str = "/etc/kubernetes/manifests/kube-vip.yaml";

/// kube-vip as a static pod: the VIP on `interface` by ARP, held by the control plane that
/// leads (a lease in `kube-system`), reaching the API with `kubeconfig` (kubeadm's
/// `super-admin.conf` during the init, whose `admin.conf` has no rights yet: kube-vip#684).
pub fn kube_vip_manifest(vip: Ipv4Addr, interface: &str, image: &str, kubeconfig: &str) -> String {
    let env: Vec<serde_json::Value> = [
        ("vip_arp", "true"),
        ("port", "6443"),
        ("vip_interface", interface),
        ("vip_cidr", "32"),
        ("cp_enable", "true"),
        ("cp_namespace", "kube-system"),
        ("vip_leaderelection", "true"),
        ("vip_leasename", "plndr-cp-lock"),
        ("vip_leaseduration", "5"),
        ("vip_renewdeadline", "3"),
        ("vip_retryperiod", "1"),
        ("address", &vip.to_string()),
    ]
    .iter()
    .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
    .collect();
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-vip", "namespace": "kube-system"},
        "spec": {
            "containers": [{
                "name": "kube-vip",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "args": ["manager"],
                "env": env,
                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
                "volumeMounts": [{"mountPath": "/etc/kubernetes/admin.conf", "name": "kubeconfig"}],
            }],
            "hostAliases": [{"hostnames": ["kubernetes"], "ip": "127.0.0.1"}],
            "hostNetwork": true,
            "volumes": [{"name": "kubeconfig", "hostPath": {"path": kubeconfig}}],
        },
    });
    kubeadm::documents(&[pod])
}

mod restore;

/// Where kubeadm's configuration for a node is written while it runs (then removed).
const CONFIG_DIR: &str = "/etc/kubernetes/cloudlet";

/// How cloudlet reaches the nodes: the install user and its key, and the host keys the
/// installs reported.
#[derive(Debug, Clone)]
pub struct Access {
    /// The install user (`root`, or a user that may `sudo` without a password).
    pub user: String,
    /// That user's private key.
    pub key: PathBuf,
    /// `known_hosts` lines for the nodes (from the install callbacks).
    pub known_hosts: PathBuf,
    /// The SSH port.
    pub port: u16,
}

impl Access {
    fn host(&self, ip: Ipv4Addr) -> Host {
        Host::Ssh {
            destination: format!("{}@{ip}", self.user),
            options: vec![
                "-p".into(),
                self.port.to_string(),
                "-i".into(),
                self.key.display().to_string(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
                "-o".into(),
                "StrictHostKeyChecking=yes".into(),
                "-o".into(),
                format!("UserKnownHostsFile={}", self.known_hosts.display()),
                "-o".into(),
                "GlobalKnownHostsFile=/dev/null".into(),
                "-o".into(),
                "ConnectTimeout=5".into(),
                "-o".into(),
                "ServerAliveInterval=15".into(),
            ],
            prefix: if self.user == "root" {
                Vec::new()
            } else {
                vec!["sudo".into(), "-n".into()]
            },
        }
    }
}

/// How the bootstrap runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a node may take to answer over SSH (its install may still be running).
    pub window: Duration,
    /// How many workers join at once.
    pub parallel: usize,
    /// kubeadm preflight checks whose errors are shown as warnings (`--ignore-preflight-errors`);
    /// empty on real machines.
    pub ignore_preflight: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            window: Duration::from_secs(30 * 60),
            parallel: 8,
            ignore_preflight: Vec::new(),
        }
    }
}

/// A bootstrap that failed or was refused; every variant names the node and the way out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The lab does not make its cluster, or a node's configuration cannot be made.
    #[error(transparent)]
    Config(#[from] KubeadmError),
    /// The cluster's identity could not be used.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A node did not answer over SSH in time.
    #[error(
        "{node} did not answer over SSH within {}s; check that its install finished (`cloudlet pxe status`) and that it is up",
        waited.as_secs()
    )]
    Unreachable {
        /// The node.
        node: String,
        /// How long it was waited for.
        waited: Duration,
        /// The last attempt.
        #[source]
        source: Box<ExecError>,
    },
    /// A node answered with another host key than its install reported.
    #[error(
        "{node} answered with a host key its install did not report: something else may be at its address, or it was installed without cloudlet; check the machine, then `cloudlet pxe reinstall {node}` and apply again"
    )]
    HostKey {
        /// The node.
        node: String,
    },
    /// No host key is recorded for a node: its install never reported one.
    #[error(
        "no host key is known for {node} after {}s: its install has not reported (`cloudlet pxe status`); for a machine installed without cloudlet, give its key in the target's `known_hosts` file",
        waited.as_secs()
    )]
    UnknownHostKey {
        /// The node.
        node: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// A command on a node failed (its output is shown with secrets removed).
    #[error("{what} on {node} failed")]
    Command {
        /// The node.
        node: String,
        /// What was being done (`kubeadm init`).
        what: &'static str,
        /// What failed.
        #[source]
        source: Box<ExecError>,
    },
    /// etcd is restored onto one control plane only.
    /// The API server refused or could not be reached.
    #[error("{what}: the API server at {endpoint} did not do it")]
    Api {
        /// What was being done.
        what: String,
        /// The endpoint.
        endpoint: String,
        /// What kube said.
        #[source]
        source: Box<kube::Error>,
    },
    /// The API server does not answer, so a node cannot join.
    #[error(
        "the API server at {endpoint} does not answer, so {node} cannot join: bring the control plane up (`cloudlet status` shows it; with several, check that the VIP is announced), then apply again"
    )]
    ApiUnreachable {
        /// The node.
        node: String,
        /// The endpoint.
        endpoint: String,
        /// What the connection said.
        #[source]
        source: Box<kube::Error>,
    },
    /// kubeadm's discovery refused the node's token: it expired (a join slower than its 15
    /// minutes) or was revoked meanwhile.
    #[error(
        "the join token of {node} expired or was revoked before its join finished; apply again: a new token is minted just before the next attempt"
    )]
    TokenExpired {
        /// The node.
        node: String,
    },
    /// A join token could not be minted or revoked.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A second `kubeadm init` was about to run on a cluster that exists.
    #[error(
        "refusing a second `kubeadm init` on {node}: {holder} already belongs to this cluster ({what}) but the API endpoint {endpoint} does not answer; bring the control plane back (or restore it from a backup), then apply again"
    )]
    SecondInit {
        /// The node init would have run on.
        node: String,
        /// The node that belongs to the cluster.
        holder: String,
        /// What it holds.
        what: &'static str,
        /// The endpoint.
        endpoint: String,
    },
    /// The record says the cluster was initialized, and none of its control planes answers.
    #[error(
        "refusing a second `kubeadm init` on {node}: this cluster was initialized ({at}) and its API endpoint {endpoint} does not answer; bring its control planes back, or restore the cluster from a backup, then apply again"
    )]
    AlreadyInitialized {
        /// The node init would have run on.
        node: String,
        /// When it was initialized.
        at: String,
        /// The endpoint.
        endpoint: String,
    },
    /// A control plane's stale etcd member cannot be removed: etcd has no quorum.
    #[error(
        "{node} was installed again but etcd has lost quorum ({answering} of {members} members answer), so its old member cannot be removed; restore etcd from a snapshot or bring the other control planes back, then apply again"
    )]
    QuorumLost {
        /// The node.
        node: String,
        /// Members that answer.
        answering: usize,
        /// Members etcd knows.
        members: usize,
    },
    /// No interface of a control plane holds its address (kube-vip announces the VIP there).
    #[error(
        "no interface of {node} has its address {address}: check its network settings (the lab's address for it must be configured on it)"
    )]
    NoInterface {
        /// The node.
        node: String,
        /// Its address in the lab.
        address: Ipv4Addr,
    },
    /// Not attempted: a step it depends on failed.
    #[error("{node} was not joined: {because} failed first")]
    Skipped {
        /// The node.
        node: String,
        /// The step that failed.
        because: String,
    },
}

/// What one node looks like.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeFacts {
    /// It answered over SSH.
    pub reachable: bool,
    /// It has joined a cluster (its kubelet has a kubeconfig).
    pub joined: bool,
    /// It holds etcd data.
    pub etcd_data: bool,
}

/// What the nodes and the cluster look like.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Each node of the lab.
    pub nodes: BTreeMap<String, NodeFacts>,
    /// The cluster's Node objects and whether each is Ready, when the API answered.
    pub api: Option<BTreeMap<String, bool>>,
    /// When the lab's record says its cluster was initialized (`kubeadm init` ran).
    pub initialized: Option<String>,
}

/// What a node needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `kubeadm init` (the cluster's first control plane, once).
    Init,
    /// `kubeadm join`.
    Join,
    /// Its stale Node (and etcd member) removed, then `kubeadm join`.
    Rejoin,
}

/// One node's step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The node.
    pub node: String,
    /// Whether it is a control plane.
    pub control_plane: bool,
    /// What it needs.
    pub action: Action,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = match self.action {
            Action::Init => "init",
            Action::Join => "join",
            Action::Rejoin => "rejoin",
        };
        let role = if self.control_plane && self.action != Action::Init {
            " (control plane)"
        } else {
            ""
        };
        write!(f, "{verb} {}{role}", self.node)
    }
}

/// What each node needs, from what was observed.
pub fn plan(lab: &Lab, observed: &Observed) -> Vec<Step> {
    let exists = observed.initialized.is_some()
        || observed.api.is_some()
        || observed.nodes.iter().any(|(_, f)| f.joined || f.etcd_data);
    let mut steps = Vec::new();
    for (i, (node, cp)) in nodes(lab).into_iter().enumerate() {
        let facts = observed.nodes.get(&node).cloned().unwrap_or_default();
        if facts.joined {
            continue;
        }
        let known = observed.api.as_ref().map(|a| a.contains_key(&node));
        // A node that does not answer in a cluster that exists is down, not new: it is left
        // alone unless the API says it never joined (its install may still be running).
        if exists && !facts.reachable && known != Some(false) {
            continue;
        }
        let action = if !exists && i == 0 {
            Action::Init
        } else if observed.api.as_ref().is_some_and(|a| a.contains_key(&node)) {
            Action::Rejoin
        } else {
            Action::Join
        };
        steps.push(Step {
            node,
            control_plane: cp,
            action,
        });
    }
    steps
}

/// How each step went.
#[derive(Debug, Default)]
pub struct Report {
    /// Steps in the order they finished, each with its outcome.
    pub steps: Vec<(Step, Result<(), BootstrapError>)>,
}

impl Report {
    /// Whether every step succeeded.
    pub fn is_success(&self) -> bool {
        self.steps.iter().all(|(_, r)| r.is_ok())
    }
}

/// The bootstrap of one lab's cluster.
#[derive(Clone)]
pub struct Bootstrap {
    lab: Arc<Lab>,
    identity: Arc<Identity>,
    access: Access,
    options: Options,
    record: Option<Arc<Vault>>,
}

/// The vault entry recording the cluster's init (when, on which node, for which CA).
pub const INIT_RECORD: &str = "cluster-initialized";

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrap")
            .field("lab", &self.lab.name)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// `text` with every secret in `secrets` replaced.
fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, "<redacted>");
    }
    out
}

fn redact_error(e: ExecError, secrets: &[&str]) -> ExecError {
    match e {
        ExecError::Failed {
            command,
            code,
            output,
        } => ExecError::Failed {
            command: redact(&command, secrets),
            code,
            output: redact(&output, secrets),
        },
        other => other,
    }
}

/// Whether the API server could not be reached at all (refused, no route, timed out), as
/// opposed to answering with an error.
fn connection_failed(e: &kube::Error) -> bool {
    matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_))
}

/// Whether kubeadm's discovery refused the join token: kubeadm says it is "invalid for this
/// cluster, or it has expired" when no valid token signs the cluster-info ConfigMap.
fn token_refused(e: &ExecError) -> bool {
    matches!(e, ExecError::Failed { output, .. }
        if output.contains("invalid for this cluster, or it has expired"))
}

/// Whether an SSH failure is a host key other than the one recorded for the node.
fn host_key_changed(e: &ExecError) -> bool {
    matches!(e, ExecError::Failed { code: Some(255), output, .. }
        if output.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"))
}

/// Whether an SSH failure is a node with no recorded host key yet (its install has not
/// reported: the installer's own sshd may be answering meanwhile).
fn host_key_unknown(e: &ExecError) -> bool {
    matches!(e, ExecError::Failed { code: Some(255), output, .. }
        if output.contains("Host key verification failed")
            && !output.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"))
}

/// Whether an SSH failure is SSH's own (the node did not answer), not the command's.
fn unreachable(e: &ExecError) -> bool {
    matches!(
        e,
        ExecError::Failed {
            code: Some(255),
            ..
        } | ExecError::Spawn { .. }
    )
}

impl Bootstrap {
    /// A bootstrap of `lab`'s cluster with its `identity`, reaching the nodes with `access`.
    pub fn new(lab: Arc<Lab>, identity: Arc<Identity>, access: Access, options: Options) -> Self {
        Bootstrap {
            lab,
            identity,
            access,
            options,
            record: None,
        }
    }

    /// Keeps the fact that the cluster was initialized in `vault` (beside its identity, so a
    /// backup of the vault carries it): with it, a cluster whose control planes are all down
    /// is known to exist, and no init is planned or run for it.
    #[must_use]
    pub fn with_record(mut self, vault: Arc<Vault>) -> Self {
        self.record = Some(vault);
        self
    }

    /// When the record says the cluster was initialized (for this identity's CA).
    fn initialized(&self) -> Result<Option<String>, BootstrapError> {
        let Some(v) = &self.record else {
            return Ok(None);
        };
        let Some(bytes) = v.get(INIT_RECORD).map_err(IdentityError::Vault)? else {
            return Ok(None);
        };
        let r: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        // A record for another CA is another cluster's.
        if r["ca"].as_str() != Some(self.identity.ca.ca_cert_hash().as_str()) {
            return Ok(None);
        }
        Ok(Some(
            r["at"].as_str().unwrap_or("an earlier run").to_string(),
        ))
    }

    fn record_init(&self, node: &str) -> Result<(), BootstrapError> {
        let Some(v) = &self.record else {
            return Ok(());
        };
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let r = serde_json::json!({
            "node": node,
            "at": at,
            "ca": self.identity.ca.ca_cert_hash(),
        });
        v.put(INIT_RECORD, r.to_string().as_bytes())
            .map_err(|e| IdentityError::Vault(e).into())
    }

    /// The API server's URL (`https://10.0.20.10:6443`).
    pub fn endpoint_url(&self) -> Result<String, BootstrapError> {
        self.endpoint()
    }

    fn endpoint(&self) -> Result<String, BootstrapError> {
        Ok(format!(
            "https://{}:{API_PORT}",
            kubeadm::endpoint(&self.lab)?
        ))
    }

    fn host(&self, node: &str) -> Result<Host, BootstrapError> {
        let ip = self
            .lab
            .machine_ip(node)
            .ok_or_else(|| KubeadmError::NoAddress(node.to_string()))?;
        Ok(self.access.host(ip))
    }

    /// An admin client for the API (a client certificate from the cluster CA, valid for an
    /// hour, never written anywhere).
    pub async fn client(&self) -> Result<kube::Client, BootstrapError> {
        let endpoint = self.endpoint()?;
        let kc = self.identity.admin_kubeconfig(
            &self.lab.name,
            &endpoint,
            "cloudlet",
            Duration::from_secs(3600),
        )?;
        let api = |what: &str, source: kube::Error| BootstrapError::Api {
            what: what.to_string(),
            endpoint: endpoint.clone(),
            source: Box::new(source),
        };
        let parsed = kube::config::Kubeconfig::from_yaml(kc.expose()).map_err(|e| {
            api(
                "reading the admin kubeconfig",
                kube::Error::InferKubeconfig(e),
            )
        })?;
        let mut config = kube::Config::from_custom_kubeconfig(
            parsed,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| {
            api(
                "reading the admin kubeconfig",
                kube::Error::InferKubeconfig(e),
            )
        })?;
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(Duration::from_secs(30));
        kube::Client::try_from(config).map_err(|e| api("connecting", e))
    }

    /// The cluster's Node objects (name → Ready), or `None` when the API does not answer.
    async fn api_nodes(&self) -> Option<BTreeMap<String, bool>> {
        let client = self.client().await.ok()?;
        let list = Api::<Node>::all(client)
            .list(&Default::default())
            .await
            .ok()?;
        Some(
            list.items
                .into_iter()
                .filter_map(|n| {
                    let ready = n
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    Some((n.metadata.name?, ready))
                })
                .collect(),
        )
    }

    async fn facts(&self, node: &str) -> Result<NodeFacts, BootstrapError> {
        let host = self.host(node)?;
        let out = host
            .run(&[
                "sh",
                "-c",
                "test -e /etc/kubernetes/kubelet.conf && echo joined; test -d /var/lib/etcd/member && echo etcd; true",
            ])
            .await;
        match out {
            Ok(o) => Ok(NodeFacts {
                reachable: true,
                joined: o.lines().any(|l| l == "joined"),
                etcd_data: o.lines().any(|l| l == "etcd"),
            }),
            Err(e) if host_key_changed(&e) => Err(BootstrapError::HostKey {
                node: node.to_string(),
            }),
            // No host key reported yet: not a node to talk to yet.
            Err(e) if unreachable(&e) || host_key_unknown(&e) => Ok(NodeFacts::default()),
            Err(e) => Err(BootstrapError::Command {
                node: node.to_string(),
                what: "looking at the node",
                source: Box::new(e),
            }),
        }
    }

    /// Looks at every node and the API.
    pub async fn observe(&self) -> Result<Observed, BootstrapError> {
        let names = nodes(&self.lab);
        let facts = futures::future::join_all(names.iter().map(|(n, _)| self.facts(n))).await;
        let mut observed = Observed {
            api: self.api_nodes().await,
            initialized: self.initialized()?,
            ..Observed::default()
        };
        for ((n, _), f) in names.into_iter().zip(facts) {
            observed.nodes.insert(n, f?);
        }
        Ok(observed)
    }

    /// The nodes' resources as they are: a node that has joined as the lab wants it; one the
    /// API knows but that has not joined (installed again) with `joined: false`; one that
    /// does not answer in a cluster that exists as the lab wants it (down, left alone);
    /// none for a node that has not joined yet. Also whether the API answered.
    pub async fn observe_resources(&self) -> Result<(Vec<Resource>, bool), BootstrapError> {
        let observed = self.observe().await?;
        let steps = plan(&self.lab, &observed);
        let mut out = Vec::new();
        for (i, (node, cp)) in nodes(&self.lab).into_iter().enumerate() {
            let joined = match steps.iter().find(|s| s.node == node) {
                None => true,
                Some(s) if s.action == Action::Rejoin => false,
                Some(_) => continue,
            };
            out.push(Resource::new(
                node_id(&node),
                node_body(&node, cp, i == 0, joined),
            ));
        }
        Ok((out, observed.api.is_some()))
    }

    /// Brings `node` into the cluster now and says how: `kubeadm init` when it is the first
    /// control plane and there is no cluster yet (guarded: refused while any node belongs to
    /// one), a rejoin when the API has a stale Node of it, a join otherwise; nothing when it
    /// has joined.
    pub async fn bring(&self, node: &str) -> Result<Option<Action>, BootstrapError> {
        let all = nodes(&self.lab);
        let Some(pos) = all.iter().position(|(n, _)| n == node) else {
            return Err(KubeadmError::NoAddress(node.to_string()).into());
        };
        let control_plane = all[pos].1;
        self.reach(node).await?;
        if self.facts(node).await?.joined {
            return Ok(None);
        }
        let api = self.api_nodes().await;
        let action = match &api {
            None if pos == 0 => Action::Init,
            Some(a) if a.contains_key(node) => Action::Rejoin,
            _ => Action::Join,
        };
        match action {
            Action::Init => self.init(node).await?,
            a => self.join(node, control_plane, a == Action::Rejoin).await?,
        }
        Ok(Some(action))
    }

    /// Waits until `node` answers over SSH (its install may still be running).
    async fn reach(&self, node: &str) -> Result<Host, BootstrapError> {
        let host = self.host(node)?;
        let start = Instant::now();
        loop {
            match host.run(&["true"]).await {
                Ok(_) => return Ok(host),
                Err(e) if host_key_changed(&e) => {
                    return Err(BootstrapError::HostKey {
                        node: node.to_string(),
                    });
                }
                // Its install may report its host key any moment (the file is read anew).
                Err(e) if host_key_unknown(&e) && start.elapsed() >= self.options.window => {
                    return Err(BootstrapError::UnknownHostKey {
                        node: node.to_string(),
                        waited: start.elapsed(),
                    });
                }
                Err(e) if start.elapsed() >= self.options.window || !unreachable(&e) => {
                    return Err(BootstrapError::Unreachable {
                        node: node.to_string(),
                        waited: start.elapsed(),
                        source: Box::new(e),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        }
    }

    async fn run(
        &self,
        host: &Host,
        node: &str,
        what: &'static str,
        args: &[&str],
        secrets: &[&str],
    ) -> Result<String, BootstrapError> {
        host.run(args).await.map_err(|e| BootstrapError::Command {
            node: node.to_string(),
            what,
            source: Box::new(redact_error(e, secrets)),
        })
    }

    /// Writes a file only root reads.
    async fn put(
        &self,
        host: &Host,
        node: &str,
        path: &str,
        text: &str,
        secrets: &[&str],
    ) -> Result<(), BootstrapError> {
        host.run_with_input(
            &[
                "sh",
                "-c",
                "umask 077 && mkdir -p \"$(dirname \"$1\")\" && cat > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"",
                "sh",
                path,
            ],
            Some(text.as_bytes()),
        )
        .await
        .map(|_| ())
        .map_err(|e| BootstrapError::Command {
            node: node.to_string(),
            what: "writing kubeadm's files",
            source: Box::new(redact_error(e, secrets)),
        })
    }

    /// The cluster's CAs and service-account key, where kubeadm keeps them (a control plane
    /// only), copied over SSH.
    async fn put_pki(&self, host: &Host, node: &str) -> Result<(), BootstrapError> {
        let id = &self.identity;
        let keys = [
            id.ca.key_pem(),
            id.front_proxy_ca.key_pem(),
            id.etcd_ca.key_pem(),
            id.service_account.private_pem(),
        ];
        let pki = "/etc/kubernetes/pki";
        for (stem, ca) in [
            ("ca", &id.ca),
            ("front-proxy-ca", &id.front_proxy_ca),
            ("etcd/ca", &id.etcd_ca),
        ] {
            self.put(host, node, &format!("{pki}/{stem}.crt"), &ca.cert, &keys)
                .await?;
            self.put(
                host,
                node,
                &format!("{pki}/{stem}.key"),
                ca.key_pem(),
                &keys,
            )
            .await?;
        }
        self.put(
            host,
            node,
            &format!("{pki}/sa.pub"),
            &id.service_account.public,
            &keys,
        )
        .await?;
        self.put(
            host,
            node,
            &format!("{pki}/sa.key"),
            id.service_account.private_pem(),
            &keys,
        )
        .await
    }

    fn kubeadm_args<'a>(
        &'a self,
        verb: &'a str,
        config: &'a str,
        extra: &[&'a str],
    ) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "kubeadm".into(),
            verb.into(),
            "--config".into(),
            config.into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_string()));
        if !self.options.ignore_preflight.is_empty() {
            args.push(format!(
                "--ignore-preflight-errors={}",
                self.options.ignore_preflight.join(",")
            ));
        }
        args
    }

    /// The endpoint's VIP, when the cluster has several control planes (kube-vip announces it).
    fn vip(&self) -> Option<Ipv4Addr> {
        let c = self.lab.cluster.as_ref()?;
        let k = c.kubernetes.as_ref()?;
        (c.control_plane.len() > 1).then_some(k.endpoint).flatten()
    }

    /// Writes kube-vip's static pod on a control plane, on the interface that holds the node's
    /// address there.
    async fn put_kube_vip(
        &self,
        host: &Host,
        node: &str,
        vip: Ipv4Addr,
        kubeconfig: &str,
    ) -> Result<(), BootstrapError> {
        let ip = self
            .lab
            .machine_ip(node)
            .ok_or_else(|| KubeadmError::NoAddress(node.to_string()))?;
        let out = self
            .run(
                host,
                node,
                "finding the node's interface",
                &["ip", "-o", "-4", "addr", "show"],
                &[],
            )
            .await?;
        let prefix = format!("{ip}/");
        let interface = out
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"inet") && f.get(3).is_some_and(|a| a.starts_with(&prefix)))
                    .then(|| f.get(1).map(|i| i.trim_end_matches(':').to_string()))
                    .flatten()
            })
            .ok_or_else(|| BootstrapError::NoInterface {
                node: node.to_string(),
                address: ip,
            })?;
        let image = self
            .lab
            .cluster
            .as_ref()
            .and_then(|c| c.kubernetes.as_ref())
            .and_then(|k| k.vip_image.clone())
            .unwrap_or_else(|| KUBE_VIP_IMAGE.to_string());
        self.put(
            host,
            node,
            KUBE_VIP_MANIFEST,
            &kube_vip_manifest(vip, &interface, &image, kubeconfig),
            &[],
        )
        .await
    }

    /// The kubelet starts at every boot from now on (the install left it disabled; kubeadm
    /// only starts it).
    async fn enable_kubelet(&self, host: &Host, node: &str) -> Result<(), BootstrapError> {
        self.run(
            host,
            node,
            "enabling the kubelet",
            &["systemctl", "enable", "kubelet"],
            &[],
        )
        .await
        .map(|_| ())
    }

    async fn init(&self, node: &str) -> Result<(), BootstrapError> {
        let host = self.reach(node).await?;
        // The guard, looked at again just before: never a second init.
        let endpoint = self.endpoint()?;
        if let Some(at) = self.initialized()? {
            return Err(BootstrapError::AlreadyInitialized {
                node: node.to_string(),
                at,
                endpoint,
            });
        }
        if self.api_nodes().await.is_some() {
            return Err(BootstrapError::SecondInit {
                node: node.to_string(),
                holder: "a control plane".into(),
                what: "an API server that answers",
                endpoint,
            });
        }
        for (other, _) in nodes(&self.lab) {
            let f = self.facts(&other).await?;
            if f.etcd_data || f.joined {
                return Err(BootstrapError::SecondInit {
                    node: node.to_string(),
                    holder: other.clone(),
                    what: if f.etcd_data {
                        "etcd data"
                    } else {
                        "a kubelet configuration"
                    },
                    endpoint,
                });
            }
        }
        let token = Token::generate().map_err(BootstrapError::Config)?;
        let whole = token.expose();
        let secrets = [whole.as_str(), token.secret()];
        self.put_pki(&host, node).await?;
        let config = format!("{CONFIG_DIR}/init.yaml");
        self.put(
            &host,
            node,
            &config,
            &kubeadm::init_config(&self.lab, node, &token)?,
            &secrets,
        )
        .await?;
        // The endpoint answers before kubeadm needs it (kubeadm#3294).
        if let Some(vip) = self.vip() {
            self.put_kube_vip(&host, node, vip, "/etc/kubernetes/super-admin.conf")
                .await?;
        }
        self.enable_kubelet(&host, node).await?;
        let args = self.kubeadm_args("init", &config, &["--skip-phases=show-join-command"]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = self.run(&host, node, "kubeadm init", &argv, &secrets).await;
        let _ = host.run(&["rm", "-f", &config]).await;
        ran?;
        self.record_init(node)?;
        if let Some(vip) = self.vip() {
            // From now on kube-vip needs no more than an admin.
            self.put_kube_vip(&host, node, vip, "/etc/kubernetes/admin.conf")
                .await?;
        }
        // The init's own token is not needed: every join gets its own.
        let client = self.client().await?;
        bootstrap_token::revoke(&client, token.id()).await?;
        Ok(())
    }

    async fn join(
        &self,
        node: &str,
        control_plane: bool,
        rejoin: bool,
    ) -> Result<(), BootstrapError> {
        let host = self.reach(node).await?;
        let client = self.client().await?;
        if control_plane {
            // etcd first: with quorum, a member left by an earlier install of this node is
            // removed; without, nothing is touched.
            self.remove_etcd_member(node).await?;
        }
        if rejoin {
            let endpoint = self.endpoint()?;
            match Api::<Node>::all(client.clone())
                .delete(node, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) if connection_failed(&e) => {
                    return Err(BootstrapError::ApiUnreachable {
                        node: node.to_string(),
                        endpoint,
                        source: Box::new(e),
                    });
                }
                Err(e) => {
                    return Err(BootstrapError::Api {
                        what: format!("removing the stale Node {node}"),
                        endpoint,
                        source: Box::new(e),
                    });
                }
            }
        }
        if control_plane {
            self.put_pki(&host, node).await?;
            if let Some(vip) = self.vip() {
                self.put_kube_vip(&host, node, vip, "/etc/kubernetes/admin.conf")
                    .await?;
            }
        }
        let token = match bootstrap_token::mint(&client, node, bootstrap_token::MAX_TTL).await {
            Ok(t) => t,
            Err(TokenError::Api { source, .. }) if connection_failed(&source) => {
                return Err(BootstrapError::ApiUnreachable {
                    node: node.to_string(),
                    endpoint: self.endpoint()?,
                    source: Box::new(source),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let whole = token.expose();
        let secrets = [whole.as_str(), token.secret()];
        let joined = async {
            let config = format!("{CONFIG_DIR}/join.yaml");
            self.put(
                &host,
                node,
                &config,
                &kubeadm::join_config(&self.lab, &self.identity, node, &token, control_plane)?,
                &secrets,
            )
            .await?;
            self.enable_kubelet(&host, node).await?;
            let args = self.kubeadm_args("join", &config, &[]);
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let ran = self.run(&host, node, "kubeadm join", &argv, &secrets).await;
            let _ = host.run(&["rm", "-f", &config]).await;
            match ran {
                Err(BootstrapError::Command { source, .. }) if token_refused(&source) => {
                    Err(BootstrapError::TokenExpired {
                        node: node.to_string(),
                    })
                }
                other => other.map(|_| ()),
            }
        }
        .await;
        // Revoked whatever happened: a token outlives its join by nothing.
        let revoked = bootstrap_token::revoke(&client, token.id()).await;
        joined?;
        revoked?;
        Ok(())
    }

    /// Makes sure etcd has quorum and no member of `node` (found by its peer address: one
    /// left by an earlier install) through a control plane that has joined; refuses when no
    /// member answers with quorum.
    async fn remove_etcd_member(&self, node: &str) -> Result<(), BootstrapError> {
        let ip = self
            .lab
            .machine_ip(node)
            .ok_or_else(|| KubeadmError::NoAddress(node.to_string()))?;
        let peer = format!("https://{ip}:2380");
        let others: Vec<String> = self
            .lab
            .cluster
            .iter()
            .flat_map(|c| &c.control_plane)
            .filter(|c| *c != node)
            .cloned()
            .collect();
        // Control planes whose etcd could be asked; none answering with quorum is a refusal.
        let mut answering = 0;
        for other in &others {
            let Ok(f) = self.facts(other).await else {
                continue;
            };
            if !f.joined || !f.etcd_data {
                continue;
            }
            let host = self.host(other)?;
            let etcd = |path: &str, body: &str| {
                vec![
                    "curl".to_string(),
                    "-sS".into(),
                    "--fail-with-body".into(),
                    "--max-time".into(),
                    "10".into(),
                    "--cacert".into(),
                    "/etc/kubernetes/pki/etcd/ca.crt".into(),
                    "--cert".into(),
                    "/etc/kubernetes/pki/etcd/healthcheck-client.crt".into(),
                    "--key".into(),
                    "/etc/kubernetes/pki/etcd/healthcheck-client.key".into(),
                    "-X".into(),
                    "POST".into(),
                    "-d".into(),
                    body.to_string(),
                    format!("https://127.0.0.1:2379{path}"),
                ]
            };
            answering += 1;
            // A linearizable list needs quorum: when it answers, a removal can be agreed.
            let list = etcd("/v3/cluster/member/list", r#"{"linearizable":true}"#);
            let argv: Vec<&str> = list.iter().map(String::as_str).collect();
            let Ok(out) = host.run(&argv).await else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            let members = v["members"].as_array().cloned().unwrap_or_default();
            let id = members.iter().find_map(|m| {
                let ours = m["peerURLs"]
                    .as_array()
                    .is_some_and(|u| u.iter().any(|u| u.as_str() == Some(peer.as_str())));
                if !ours {
                    return None;
                }
                m["ID"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| m["ID"].as_u64().map(|n| n.to_string()))
            });
            let Some(id) = id else {
                // Not a member (any more): nothing to remove.
                return Ok(());
            };
            let remove = etcd("/v3/cluster/member/remove", &format!(r#"{{"ID":"{id}"}}"#));
            let argv: Vec<&str> = remove.iter().map(String::as_str).collect();
            return self
                .run(&host, other, "removing the stale etcd member", &argv, &[])
                .await
                .map(|_| ());
        }
        Err(BootstrapError::QuorumLost {
            node: node.to_string(),
            answering,
            members: others.len() + 1,
        })
    }

    /// Runs `steps`: the init first, then control-plane joins one at a time, then workers in
    /// parallel (at most [`Options::parallel`] at once). A step whose step before it failed
    /// is skipped with the reason; a worker that fails fails only itself.
    pub async fn apply(&self, steps: &[Step]) -> Report {
        use futures::stream::{self, StreamExt as _};
        let mut report = Report::default();
        let mut blocker: Option<String> = None;
        for s in steps
            .iter()
            .filter(|s| s.action == Action::Init || s.control_plane)
        {
            let r = match &blocker {
                Some(b) => Err(BootstrapError::Skipped {
                    node: s.node.clone(),
                    because: b.clone(),
                }),
                None => match s.action {
                    Action::Init => self.init(&s.node).await,
                    a => self.join(&s.node, true, a == Action::Rejoin).await,
                },
            };
            if r.is_err() && blocker.is_none() {
                blocker = Some(s.to_string());
            }
            report.steps.push((s.clone(), r));
        }
        let init_failed = report
            .steps
            .iter()
            .find(|(s, r)| s.action == Action::Init && r.is_err())
            .map(|(s, _)| s.to_string());
        let workers: Vec<Step> = steps
            .iter()
            .filter(|s| s.action != Action::Init && !s.control_plane)
            .cloned()
            .collect();
        let done: Vec<(Step, Result<(), BootstrapError>)> = stream::iter(workers)
            .map(|s| {
                let init_failed = init_failed.clone();
                async move {
                    let r = match init_failed {
                        Some(b) => Err(BootstrapError::Skipped {
                            node: s.node.clone(),
                            because: b,
                        }),
                        None => self.join(&s.node, false, s.action == Action::Rejoin).await,
                    };
                    (s, r)
                }
            })
            .buffer_unordered(self.options.parallel.max(1))
            .collect()
            .await;
        report.steps.extend(done);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeadms_refusal_of_an_expired_token_is_recognised() {
        // kubeadm's words when no valid token signs cluster-info (its discovery/token package).
        let said = "[preflight] Running pre-flight checks\nerror execution phase preflight: couldn't validate the identity of the API Server: could not find a JWS signature in the cluster-info ConfigMap for token ID \"abcdef\"\nThis token id \"abcdef\" is invalid for this cluster, or it has expired. Use \"kubeadm token create\" on the control-plane node to create a new valid token";
        let failed = ExecError::Failed {
            command: "kubeadm join".into(),
            code: Some(1),
            output: said.into(),
        };
        assert!(token_refused(&failed));
        let other = ExecError::Failed {
            command: "kubeadm join".into(),
            code: Some(1),
            output: "error execution phase kubelet-start: timed out waiting for the condition"
                .into(),
        };
        assert!(!token_refused(&other));
    }

    #[test]
    fn secrets_are_taken_out_of_what_a_node_prints() {
        let e = redact_error(
            ExecError::Failed {
                command: "kubeadm join --token abcdef.0123456789abcdef".into(),
                code: Some(1),
                output: "bad token abcdef.0123456789abcdef (0123456789abcdef)".into(),
            },
            &["abcdef.0123456789abcdef", "0123456789abcdef"],
        );
        let text = format!("{e:?}");
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(
            text.contains("abcdef.<redacted>") || text.contains("<redacted>"),
            "{text}"
        );
    }
}
