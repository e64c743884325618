//! cloudlet: one declarative description of a self-hosted cloud — a *lab* — planned and
//! applied to the hypervisor, the router, network boot, the NAS and Kubernetes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cloudlet::Error> {
//! let lab = cloudlet::Lab::load("examples/seed")?;
//! let report = lab.validate();
//! assert!(!report.has_errors());
//! let plan = lab.plan().await?;
//! let outcome = lab.apply(&plan, cloudlet::ApplyOptions::default()).await?;
//! assert!(outcome.is_success());
//! # Ok(()) }
//! ```
//!
//! The domain crates are re-exported: [`core`], [`hypervisor`], [`network`], `pxe` (with the `backends` feature),
//! [`storage`], [`cluster`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "backends")]
pub use cloudlet_backup as backup_store;
pub use cloudlet_cluster as cluster;
pub use cloudlet_cluster::compose;
pub use cloudlet_core as core;
pub use cloudlet_core::{
    Action, ApplyOptions, ApplyReport, Cancel, Diagnostic, Domain, Event, FieldChange, Plan,
    Resource, ResourceId, Severity, Summary,
};
pub use cloudlet_hypervisor as hypervisor;
pub use cloudlet_network as network;
#[cfg(feature = "backends")]
pub use cloudlet_pxe as pxe;
pub use cloudlet_storage as storage;

#[cfg(feature = "backends")]
mod backup;
#[cfg(feature = "backends")]
mod doctor;
#[cfg(feature = "backends")]
mod in_cluster;
mod reference;
#[cfg(feature = "backends")]
mod restore;
#[cfg(feature = "backends")]
mod scope;
#[cfg(feature = "backends")]
mod watch;
#[cfg(feature = "backends")]
pub use backup::{BackupRun, TargetSnapshots, Verified, on_calendar};
#[cfg(feature = "backends")]
pub use doctor::{Counts, Diagnosis, DoctorOptions};
pub use reference::schema_reference;
#[cfg(feature = "backends")]
pub use restore::{LossWindow, PHASES, Phase, RestoreEvent, RestoreOptions, Restored};
#[cfg(feature = "backends")]
pub use scope::{Owned, PlanOptions};
#[cfg(feature = "backends")]
pub use watch::{Change, Remediate, WatchEvent, WatchOptions, Webhook, WebhookFormat};

use cloudlet_core::backend::{self, Descriptor};
#[cfg(feature = "backends")]
use cloudlet_core::backend::{ConnectError, Connection};
use cloudlet_core::diag;
#[cfg(feature = "backends")]
use cloudlet_core::local::LocalProvider;
#[cfg(feature = "backends")]
use cloudlet_core::model::Target;
use cloudlet_core::source::Sources;
#[cfg(feature = "backends")]
use cloudlet_core::{Engine, Provider, Providers};
use cloudlet_core::{EngineError, LoadError, LoadedLab, StateStore};

/// Everything that can go wrong through the facade.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lab files could not be read or parsed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The lab loaded but validation found errors; nothing was planned.
    #[error("the lab has {} error(s); run `cloudlet validate` to see them", count_errors(.diagnostics))]
    Invalid {
        /// All findings (errors and warnings).
        diagnostics: Vec<Diagnostic>,
    },
    /// Planning or applying failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An artifact could not be written.
    #[error("cannot render {}: {message}", path.display())]
    Render {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    #[cfg(feature = "backends")]
    /// The network boot service could not start.
    #[error(transparent)]
    Boot(#[from] pxe::service::ServiceError),
    #[cfg(feature = "backends")]
    /// The install state could not be read or written.
    #[error(transparent)]
    Install(#[from] pxe::install::InstallError),
    #[cfg(feature = "backends")]
    /// The cluster's identity (its vault, its CAs) could not be read or made.
    #[error(transparent)]
    Identity(#[from] cluster::identity::IdentityError),
    #[cfg(feature = "backends")]
    /// The lab does not make its cluster, or says too little to reach it.
    #[error(transparent)]
    Kubeadm(#[from] cluster::kubeadm::KubeadmError),
    #[cfg(feature = "backends")]
    /// A platform component's release could not be fetched or did not match its checksum.
    #[error(transparent)]
    Release(#[from] cluster::platform::fetch::FetchError),
    /// A platform component's release could not be adapted (an object without a name, a
    /// manifest of another shape than the component's).
    #[error(transparent)]
    Platform(#[from] cluster::platform::AdaptError),
    /// The plan moves a platform component to an older release across a CRD storage
    /// version, and the lab does not allow it.
    #[error("{} {} → {} moves CRD {} from storage version {} back to {}: objects stored as {} may not read back; set `cluster.platform.{}.allow_downgrade: true` to go ahead (after a backup)", .0.key, .0.from, .0.to, .0.crd, .0.storage.0, .0.storage.1, .0.storage.0, .0.key)]
    Downgrade(Box<cluster::platform::Downgrade>),
    #[cfg(feature = "backends")]
    /// A backup could not be made, listed, verified or read.
    #[error(transparent)]
    Backup(#[from] cloudlet_backup::BackupError),
    /// The backup key could not be read from where the lab says it is.
    #[error("the backup key (`backup.key`)")]
    BackupKey(#[source] Box<cloudlet_core::error::SecretError>),
    /// A backup target's credential could not be read from where the lab says it is.
    #[error("`backup.targets.{target}.s3.{field}`")]
    BackupCredential {
        /// The target.
        target: String,
        /// `access_key` or `secret_key`.
        field: &'static str,
        /// Why it could not be read.
        #[source]
        source: Box<cloudlet_core::error::SecretError>,
    },
    #[cfg(feature = "backends")]
    /// A webhook of `watch` cannot be set up (not `https://`, its TLS settings).
    #[error("webhook to {host}")]
    Webhook {
        /// The URL's host (the URL itself may hold a secret).
        host: String,
        /// Why.
        #[source]
        source: cloudlet_transport::http::SetupError,
    },
    /// A `--target` that is not a resource id, or names nothing.
    #[error("target `{target}`: {reason}")]
    Target {
        /// The target as given.
        target: String,
        /// Why it is refused.
        reason: String,
    },
    /// Another apply of this lab (from another machine) holds the lab's Lease in its cluster.
    #[error(
        "another apply of this lab holds the Lease {lease}: {holder}; try again when it is done"
    )]
    LeaseHeld {
        /// `namespace/name`.
        lease: String,
        /// Who, and for how long.
        holder: String,
    },
    /// The lab's Lease was taken over while this apply ran (it could not renew it in time);
    /// the apply stopped.
    #[error(
        "the Lease {lease} was taken over by {to} while this apply ran: it stopped; run it again"
    )]
    LeaseLost {
        /// `namespace/name`.
        lease: String,
        /// The new holder.
        to: String,
    },
    /// The lab declares no backups.
    #[error("the lab has no `backup` block: add one with a key and a target")]
    NoBackup,
    /// A backup class the lab does not declare was asked for.
    #[error("the lab does not back up `{0}`: it declares no `backup.{0}`")]
    NoBackupClass(String),
    /// A backup target the lab does not declare was named.
    #[error("the lab has no backup target `{0}` (see `backup.targets`)")]
    NoBackupTarget(String),
    /// A restore would overwrite the lab's state, and was not forced.
    #[error(
        "refusing to restore over the lab's state in {}: {} file(s) would be overwritten ({}); restore into an empty lab, or pass --force to overwrite them",
        state.display(),
        paths.len(),
        paths.iter().take(5).map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    RestoreNotEmpty {
        /// The state directory.
        state: PathBuf,
        /// What would be overwritten (relative to it).
        paths: Vec<PathBuf>,
    },
    /// A restore would replace the volumes of apps that run in the cluster.
    #[error(
        "{} app(s) run in the cluster with volumes a restore would replace with their newest snapshot (everything written since would be lost): {}; restore with --force to replace them",
        apps.len(),
        apps.join(", ")
    )]
    RestoreLiveVolumes {
        /// The apps (`NAMESPACE/APP`).
        apps: Vec<String>,
    },
    /// An earlier restore stopped before its end.
    #[error(
        "an earlier restore stopped before its end: resume it with --resume, or start over with --force"
    )]
    RestoreUnderWay,
    /// `--resume` with no stopped restore from that target.
    #[error("there is no stopped restore from that target to resume")]
    RestoreNothingToResume,
    /// A restore phase failed; the phases after it did not run.
    #[error(
        "restore phase `{phase}` failed; fix the cause, then resume: cloudlet restore LAB --from {from} --resume"
    )]
    RestorePhase {
        /// The phase.
        phase: &'static str,
        /// The target restored from.
        from: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// An apply of a restore phase left steps failed (the first few, with their errors), or
    /// the cluster's objects failed to come back.
    #[error("{0}")]
    RestoreApply(String),
    #[cfg(feature = "backends")]
    /// An app's volumes could not be restored in the cluster.
    #[error("restoring the apps' volumes")]
    RestoreVolumes(#[source] Box<cluster::volume_restore::VolumeRestoreError>),
    /// The router did not take its backed-up configuration.
    #[error("giving the router its backed-up configuration")]
    RestoreRouter(#[source] Box<cloudlet_core::ProviderError>),
    #[cfg(feature = "backends")]
    /// The backed-up objects of a cluster cloudlet did not make could not be read or put back.
    #[error("putting the cluster's objects back")]
    RestoreObjects(#[source] Box<cluster::objects::ObjectsError>),
    #[cfg(feature = "backends")]
    /// etcd could not be restored onto the control plane.
    #[error("restoring etcd onto the control plane")]
    RestoreEtcd(#[source] Box<cluster::bootstrap::BootstrapError>),
    /// A saved plan could not be read or written.
    #[error("plan file {}: {message}", path.display())]
    PlanFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// What kind of failure an [`Error`] is: the one classification every frontend reports (the
/// CLI's messages, Python's exception classes, Node's `code`, the JVM's exception variants),
/// so the same failure has the same kind everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The lab files do not load or validate (diagnostics with positions).
    Lab,
    /// A file could not be read or written (a lab path, a saved plan).
    Io,
    /// A saved plan no longer matches the lab or the infrastructure, or has another format.
    StalePlan,
    /// Another apply holds the lab's lock.
    Locked,
    /// The plan deletes data and the apply was not allowed to.
    DataLoss,
    /// A backend failed (or could not be reached).
    Backend,
    /// Rendering to files failed.
    Render,
    /// The network boot service could not start, or its install state is unreadable or busy.
    Boot,
}

impl ErrorKind {
    /// The stable code: `LAB_INVALID`, `LAB_IO`, `PLAN_STALE`, `LOCKED`, `DATA_LOSS`,
    /// `BACKEND`, `RENDER` or `BOOT`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Lab => "LAB_INVALID",
            ErrorKind::Io => "LAB_IO",
            ErrorKind::StalePlan => "PLAN_STALE",
            ErrorKind::Locked => "LOCKED",
            ErrorKind::DataLoss => "DATA_LOSS",
            ErrorKind::Backend => "BACKEND",
            ErrorKind::Render => "RENDER",
            ErrorKind::Boot => "BOOT",
        }
    }

    /// The kind's name in snake case (`lab`, `io`, `stale_plan`, `locked`, `data_loss`,
    /// `backend`, `render`, `boot`), for languages that name kinds that way.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Lab => "lab",
            ErrorKind::Io => "io",
            ErrorKind::StalePlan => "stale_plan",
            ErrorKind::Locked => "locked",
            ErrorKind::DataLoss => "data_loss",
            ErrorKind::Backend => "backend",
            ErrorKind::Render => "render",
            ErrorKind::Boot => "boot",
        }
    }
}

impl Error {
    /// The kind of this failure, the same for every frontend.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Load(LoadError::Invalid { .. }) | Error::Invalid { .. } => ErrorKind::Lab,
            Error::Load(_) | Error::PlanFile { .. } => ErrorKind::Io,
            #[cfg(feature = "backends")]
            Error::Identity(_) | Error::Backup(cloudlet_backup::BackupError::Io { .. }) => {
                ErrorKind::Io
            }
            Error::Platform(_)
            | Error::Downgrade(_)
            | Error::NoBackup
            | Error::NoBackupClass(_)
            | Error::Target { .. } => ErrorKind::Lab,
            #[cfg(feature = "backends")]
            Error::Kubeadm(_) | Error::Webhook { .. } => ErrorKind::Lab,
            Error::BackupKey(_) | Error::BackupCredential { .. } => ErrorKind::Io,
            #[cfg(feature = "backends")]
            Error::Backup(_)
            | Error::RestoreEtcd(_)
            | Error::RestoreVolumes(_)
            | Error::RestoreObjects(_) => ErrorKind::Backend,
            Error::NoBackupTarget(_) | Error::RestoreUnderWay | Error::RestoreNothingToResume => {
                ErrorKind::Lab
            }
            Error::RestoreNotEmpty { .. } | Error::RestoreLiveVolumes { .. } => ErrorKind::DataLoss,
            Error::RestorePhase { source, .. } => source.kind(),
            Error::RestoreApply(_) | Error::RestoreRouter(_) => ErrorKind::Backend,
            #[cfg(feature = "backends")]
            Error::Release(_) => ErrorKind::Backend,
            Error::Engine(EngineError::StalePlan { .. } | EngineError::PlanFormat { .. }) => {
                ErrorKind::StalePlan
            }
            Error::Engine(EngineError::Locked { .. })
            | Error::LeaseHeld { .. }
            | Error::LeaseLost { .. } => ErrorKind::Locked,
            Error::Engine(EngineError::DataLoss { .. }) => ErrorKind::DataLoss,
            Error::Engine(_) => ErrorKind::Backend,
            Error::Render { .. } => ErrorKind::Render,
            #[cfg(feature = "backends")]
            Error::Boot(_) | Error::Install(_) => ErrorKind::Boot,
        }
    }

    /// The message every frontend shows: for a lab failure its first positioned problem
    /// (`file:line:column: [code] message (and N more)`), otherwise the error with its causes.
    pub fn message(&self) -> String {
        if let Some(diagnostics) = self.diagnostics()
            && let Some(first) = diagnostics.iter().find(|d| d.location.is_some())
        {
            let more = diagnostics.len() - 1;
            return if more > 0 {
                format!("{first} (and {more} more)")
            } else {
                first.to_string()
            };
        }
        cloudlet_core::error::chain(self)
    }

    /// The diagnostics of a [`ErrorKind::Lab`] failure (every problem with its position).
    pub fn diagnostics(&self) -> Option<&[Diagnostic]> {
        match self {
            Error::Load(LoadError::Invalid { diagnostics, .. })
            | Error::Invalid { diagnostics } => Some(diagnostics),
            _ => None,
        }
    }

    /// The file a failure is about, where it names one (a lab file that cannot be read, a
    /// saved plan, a backup file): what Python's `OSError.filename` and Node's `err.path`
    /// carry.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Load(
                LoadError::Io { path, .. }
                | LoadError::NotAFile { path }
                | LoadError::TooLarge { path, .. }
                | LoadError::DirectoryLoop { path }
                | LoadError::NoLabFiles { path },
            )
            | Error::PlanFile { path, .. }
            | Error::Render { path, .. } => Some(path),
            #[cfg(feature = "backends")]
            Error::Backup(cloudlet_backup::BackupError::Io { path, .. }) => Some(path),
            _ => None,
        }
    }

    /// The operating system's error number behind a failure, if an I/O error of the system
    /// is among its causes (`ENOENT`, `EACCES` ...).
    pub fn os_error(&self) -> Option<i32> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(code) = e
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error)
            {
                return Some(code);
            }
            cur = e.source();
        }
        None
    }
}

pub use cloudlet_core::engine::DEFAULT_CONCURRENCY;

/// Every backend of this build, for every domain. A new backend is its module (a provider
/// plus its [`Descriptor`]) and one line here: validation, `plan` and `apply` read this list.
pub static BACKENDS: &[&Descriptor] = &[
    &backend::LOCAL,
    &hypervisor::vsphere::BACKEND,
    &hypervisor::proxmox::BACKEND,
    &hypervisor::libvirt::BACKEND,
    &network::pfsense::BACKEND,
    &network::opnsense::BACKEND,
    &network::router_linux::BACKEND,
    &storage::truenas::BACKEND,
    &storage::linux_nas::GANESHA,
    &storage::linux_nas::KERNEL_NFS,
    &cluster::BACKEND,
    &cluster::kubeadm_provider::BACKEND,
];

#[cfg(feature = "backends")]
/// Settings of the boot service that a caller gives; what it leaves out comes from the lab's
/// `pxe.serve`, then from the defaults (address: the `pxe.server` machine's; files: `boot`
/// next to the lab; proxyDHCP on; iPXE over HTTP; ports 80 and 69).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootOptions {
    /// This host's address on the boot segment.
    pub address: Option<std::net::Ipv4Addr>,
    /// The boot segment's interface.
    pub interface: Option<String>,
    /// The boot files directory (relative to the lab).
    pub root: Option<PathBuf>,
    /// Whether to run proxyDHCP.
    pub proxy_dhcp: Option<bool>,
    /// How iPXE clients boot.
    pub loader: Option<cloudlet_core::model::BootLoader>,
    /// HTTP port.
    pub http_port: Option<u16>,
    /// TFTP port.
    pub tftp_port: Option<u16>,
}

#[cfg(feature = "backends")]
/// A bound boot service for a frontend that runs it on its own runtime: spawn `run`, read
/// `events`, and send on (or drop) `stop` to end it.
pub struct BackgroundBoot {
    /// The HTTP address bound.
    pub http: std::net::SocketAddr,
    /// The TFTP address bound.
    pub tftp: std::net::SocketAddr,
    /// The service's events; ends when it stops.
    pub events: pxe::service::Events,
    /// Ends the service when sent on or dropped.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// The service: runs until `stop`.
    pub run: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>,
}

#[cfg(feature = "backends")]
impl std::fmt::Debug for BackgroundBoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundBoot")
            .field("http", &self.http)
            .field("tftp", &self.tftp)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "backends")]
/// What an apply came to: the engine's report and, when the lab serves its network installs
/// (`pxe.serve`), what they came to. Reads as the report (`applied.failed`, ...).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    /// What the engine did.
    #[serde(flatten)]
    pub report: ApplyReport,
    /// The network installs served during the apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installs: Option<InstallOutcome>,
}

#[cfg(feature = "backends")]
impl Applied {
    /// Whether every step succeeded and every network install reported a finished install.
    pub fn is_success(&self) -> bool {
        self.report.is_success()
            && self
                .installs
                .as_ref()
                .is_none_or(InstallOutcome::is_success)
    }
}

#[cfg(feature = "backends")]
impl std::ops::Deref for Applied {
    type Target = ApplyReport;
    fn deref(&self) -> &ApplyReport {
        &self.report
    }
}

#[cfg(feature = "backends")]
/// What the network installs came to while cloudlet served them during an apply.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstallOutcome {
    /// Every network-install machine and its state.
    pub machines: Vec<PxeMachine>,
    /// The machines that did not report within the wait.
    pub not_reported: Vec<String>,
    /// How long the installs were waited for after the apply.
    pub waited: std::time::Duration,
}

#[cfg(feature = "backends")]
impl InstallOutcome {
    /// Whether every network-install machine reported a finished install.
    pub fn is_success(&self) -> bool {
        self.not_reported.is_empty()
            && self.machines.iter().all(|m| {
                m.state
                    .as_ref()
                    .is_none_or(|s| s.phase != pxe::install::Phase::Failed)
            })
    }
}

#[cfg(feature = "backends")]
/// A machine that installs over the network, and where its install is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PxeMachine {
    /// The machine.
    pub name: String,
    /// The MAC it boots with.
    pub mac: String,
    /// Its install profile.
    pub profile: String,
    /// Its install state, once the boot service has seen it (without the current boot's
    /// token, which is a credential).
    pub state: Option<pxe::install::Machine>,
}

fn count_errors(d: &[Diagnostic]) -> usize {
    d.iter().filter(|d| d.is_error()).count()
}

#[cfg(feature = "backends")]
/// The address and host name of an `https://HOST[:PORT]` URL (port 443 by default), when
/// the host resolves.
async fn endpoint_address(url: Option<&str>) -> Option<(std::net::SocketAddr, String)> {
    let rest = url?.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => (authority, 443),
        },
        _ => (authority, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    Some((addr, host.to_string()))
}

/// The outcome of validation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// Errors and warnings, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// A failed load or validation as a report: every frontend gives load errors (syntax,
    /// types, unreadable files) the same diagnostics as validation findings.
    pub fn from_error(e: &Error) -> Report {
        let diagnostics = match e {
            Error::Load(l) => l.diagnostics(),
            Error::Invalid { diagnostics } => diagnostics.clone(),
            other => vec![Diagnostic::at_location(
                Severity::Error,
                "error",
                None,
                cloudlet_core::diag::printable(&cloudlet_core::error::chain(other)).into_owned(),
            )],
        };
        Report { diagnostics }
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

/// Where a lab keeps its state and renders local output.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The state directory (default: `.cloudlet/` next to the lab).
    pub state_dir: Option<PathBuf>,
    /// The output directory of the local backend (default: `STATE_DIR/local`).
    pub output_dir: Option<PathBuf>,
    /// Take over fields another writer holds (Kubernetes: force conflicts): they are
    /// planned as changes back to the lab's values instead of being reported as held.
    pub take_over: bool,
    /// Where fetched release manifests are kept (default: `$CLOUDLET_CACHE_DIR/releases`,
    /// else `~/.cache/cloudlet/releases`).
    pub cache_dir: Option<PathBuf>,
    /// Running inside the lab's cluster (the watch's pod): the cluster is reached through
    /// the pod's service account whatever `targets.cluster` says, and what only the machine
    /// that applies can see is left out — the nodes cloudlet made (their records are reached
    /// over SSH), etcd (its CA is in the vault), domains rendered to local files.
    pub in_cluster: bool,
}

/// A loaded lab and the operations on it.
#[derive(Debug, Clone)]
pub struct Lab {
    loaded: Arc<LoadedLab>,
    options: Options,
    /// The lab's file, when it was loaded from one (else its directory was).
    entry: Option<String>,
    /// Objects of the lab's plain manifests (read and checked by `load`; only planning
    /// uses them).
    #[cfg_attr(not(feature = "backends"), expect(dead_code))]
    manifests: Arc<Vec<Resource>>,
    /// What compose imports did not carry over (warnings with positions in compose files).
    notes: Arc<Vec<Diagnostic>>,
    /// Apps that came from a compose project: app → project.
    compose_apps: Arc<std::collections::BTreeMap<String, String>>,
    #[cfg(feature = "backends")]
    /// The plans this lab made and has not applied yet (by their in-memory origin): only those
    /// apply without observing the infrastructure again. Any other plan — saved to a file,
    /// sent as JSON through a binding, applied once already — is checked for freshness first.
    planned: Arc<std::sync::Mutex<std::collections::HashSet<u64>>>,
    #[cfg(feature = "backends")]
    /// The engine `plan` and `apply` share, built on first use: one login per backend per
    /// `Lab`, and the providers keep what planning observed (the Kubernetes provider's
    /// ApplySet inventory) for the apply.
    shared_engine: Arc<tokio::sync::OnceCell<Arc<Engine>>>,
    #[cfg(feature = "backends")]
    /// The platform's objects from its fetched releases, once a plan against a backend that
    /// applies releases asked for them.
    platform: Arc<tokio::sync::OnceCell<Arc<Vec<Resource>>>>,
}

fn located(
    loaded: &LoadedLab,
    path: &cloudlet_core::source::TreePath,
) -> Option<cloudlet_core::source::Location> {
    loaded.source.value(path)
}

/// Reads what the lab references outside its own files: compose projects (their services
/// join the apps) and plain manifests.
type Imports = (
    Vec<Resource>,
    Vec<Diagnostic>,
    std::collections::BTreeMap<String, String>,
);

fn resolve_imports(loaded: &mut LoadedLab) -> Result<Imports, LoadError> {
    use cloudlet_core::path;
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let mut manifests = Vec::new();
    let mut from_compose = std::collections::BTreeMap::new();
    let Some(cluster) = loaded.lab.cluster.clone() else {
        return Ok((manifests, notes, from_compose));
    };
    let error = |loaded: &LoadedLab, p: cloudlet_core::source::TreePath, msg: String| {
        Diagnostic::at_location(Severity::Error, "import", located(loaded, &p), msg)
    };
    for (project, r) in &cluster.compose {
        let file = loaded.base_dir.join(&r.file);
        let text = match cloudlet_core::load::read_text(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(error(
                    loaded,
                    path!["cluster", "compose", project.as_str(), "file"],
                    cloudlet_core::error::chain(&e),
                ));
                continue;
            }
        };
        let opts = compose::ComposeOptions {
            project: Some(project.clone()),
            domain: r
                .domain
                .clone()
                .unwrap_or_else(|| loaded.lab.site.domain.clone()),
            export: r.export.clone(),
            dumps: loaded
                .lab
                .backup
                .as_ref()
                .is_some_and(|b| b.volumes.is_some()),
            ..Default::default()
        };
        loaded
            .source
            .sources
            .add(file.clone(), Arc::from(text.as_str()));
        match compose::import(&file, &text, &opts) {
            Ok(imported) => {
                notes.extend(imported.notes);
                let apps = &mut loaded.lab.cluster.as_mut().map(|c| &mut c.apps);
                for (name, app) in imported.apps {
                    let Some(apps) = apps.as_mut() else { break };
                    if apps.contains_key(&name) {
                        let p = path!["cluster", "compose", project.as_str()];
                        errors.push(Diagnostic::at_location(
                            Severity::Error,
                            "import",
                            loaded.source.key(&p),
                            format!("app `{name}` of compose project `{project}` is also an app of the lab"),
                        ).help("rename the service in the compose file or the app in the lab"));
                        continue;
                    }
                    from_compose.insert(name.clone(), project.clone());
                    apps.insert(name, app);
                }
            }
            Err(e) => errors.extend(e.diagnostics),
        }
    }
    for (i, m) in cluster.manifests.iter().enumerate() {
        let root = loaded.base_dir.join(m);
        let files = if root.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        } else {
            vec![root.clone()]
        };
        for f in files {
            match cloudlet_core::load::read_text(&f) {
                Ok(text) => match cluster::manifests::read(
                    &f,
                    &text,
                    &loaded.lab.name,
                    &mut loaded.source.sources,
                ) {
                    Ok(rs) => manifests.extend(rs),
                    Err(ds) => errors.extend(ds),
                },
                Err(e) => errors.push(error(
                    loaded,
                    path!["cluster", "manifests", i],
                    cloudlet_core::error::chain(&e),
                )),
            }
        }
    }
    if errors.is_empty() {
        Ok((manifests, notes, from_compose))
    } else {
        diag::sort(&mut errors);
        Err(LoadError::invalid(errors, loaded.source.sources.clone()))
    }
}

impl Lab {
    fn build(mut loaded: LoadedLab) -> Result<Lab, Error> {
        let (manifests, notes, compose_apps) = resolve_imports(&mut loaded)?;
        Ok(Lab {
            loaded: Arc::new(loaded),
            options: Options::default(),
            entry: None,
            manifests: Arc::new(manifests),
            notes: Arc::new(notes),
            compose_apps: Arc::new(compose_apps),
            #[cfg(feature = "backends")]
            planned: Arc::default(),
            #[cfg(feature = "backends")]
            shared_engine: Arc::default(),
            #[cfg(feature = "backends")]
            platform: Arc::default(),
        })
    }

    /// Loads a lab from a YAML file or a directory of them, with the compose projects and
    /// manifests it references.
    pub fn load(path: impl AsRef<Path>) -> Result<Lab, Error> {
        let path = path.as_ref();
        let mut lab = Lab::build(cloudlet_core::load(path)?)?;
        if !path.is_dir() {
            lab.entry = path.file_name().map(|n| n.to_string_lossy().into_owned());
        }
        Ok(lab)
    }

    /// Loads a lab from in-memory files (name, text); relative paths resolve against `base_dir`.
    pub fn from_texts(
        files: Vec<(PathBuf, String)>,
        base_dir: impl Into<PathBuf>,
    ) -> Result<Lab, Error> {
        Lab::build(cloudlet_core::load::load_texts(files, base_dir.into())?)
    }

    /// The same lab with other state/output directories.
    #[must_use]
    pub fn with_options(mut self, options: Options) -> Lab {
        self.options = options;
        self.forget_engine();
        self
    }

    /// Providers are made from the options: a new set gets a new engine.
    #[cfg(feature = "backends")]
    fn forget_engine(&mut self) {
        self.shared_engine = Arc::default();
        self.platform = Arc::default();
    }

    /// Without the backends there is no engine to forget.
    #[cfg(not(feature = "backends"))]
    fn forget_engine(&mut self) {}

    /// The typed model.
    pub fn model(&self) -> &cloudlet_core::Lab {
        &self.loaded.lab
    }

    /// The source texts, to render diagnostics with their lines.
    pub fn sources(&self) -> &Sources {
        &self.loaded.source.sources
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.options
            .state_dir
            .clone()
            .unwrap_or_else(|| self.loaded.base_dir.join(".cloudlet"))
    }

    /// Refuses at once, naming the holder, when another apply holds this lab's lock, so a
    /// frontend can say so before it plans and asks (the apply itself takes the lock too).
    pub fn check_unlocked(&self) -> Result<(), Error> {
        Ok(StateStore::open(self.state_dir())?.check_unlocked()?)
    }

    /// The local backend's output directory.
    pub fn output_dir(&self) -> PathBuf {
        self.options
            .output_dir
            .clone()
            .unwrap_or_else(|| self.state_dir().join("local"))
    }

    /// Validates the whole lab: every rule, every finding, with positions. No I/O.
    pub fn validate(&self) -> Report {
        let mut diagnostics = cloudlet_core::validate::validate_with(&self.loaded.lab, BACKENDS);
        diagnostics.extend(cluster::platform::validate(&self.loaded.lab));
        for d in &mut diagnostics {
            // An app imported from compose has no place in the lab files: point at the
            // compose reference and say so.
            let app = d
                .path
                .as_deref()
                .and_then(|p| p.strip_prefix("cluster.apps."))
                .map(|rest| rest.split(['.', '[']).next().unwrap_or(rest));
            if let Some(project) = app.and_then(|a| self.compose_apps.get(a)) {
                d.location = self.loaded.source.key(&cloudlet_core::path![
                    "cluster",
                    "compose",
                    project.as_str()
                ]);
                d.message = format!(
                    "{} (app `{}` of compose project `{project}`)",
                    d.message,
                    app.unwrap_or_default()
                );
            }
            d.resolve(&self.loaded.source);
        }
        diagnostics.extend(self.notes.iter().cloned());
        diag::sort(&mut diagnostics);
        diag::fill_ends(&mut diagnostics, &self.loaded.source.sources);
        Report { diagnostics }
    }
}

/// What needs the backends' clients: the boot service, planning, applying.
#[cfg(feature = "backends")]
impl Lab {
    /// The engine of this `Lab` (and its clones), built once.
    async fn shared_engine(&self) -> Result<Arc<Engine>, Error> {
        self.shared_engine
            .get_or_try_init(|| async { self.engine().await.map(Arc::new) })
            .await
            .cloned()
    }

    /// The desired resources of every domain, with the edges between domains (a VM after its
    /// DHCP reservation and its install config; an NFS volume after its export). Refuses a
    /// lab with validation errors.
    pub fn desired(&self) -> Result<Vec<Resource>, Error> {
        // Validation and expansion read the same model: run them side by side and drop the
        // expansion when validation fails.
        let (report, resources) = rayon::join(|| self.validate(), || self.expand());
        if report.has_errors() {
            return Err(Error::Invalid {
                diagnostics: report.diagnostics,
            });
        }
        Ok(resources)
    }

    /// The files cloudlet read for the lab (its own, compose files, manifests), each once,
    /// by its path under the lab's directory.
    fn lab_files(&self) -> Vec<(PathBuf, &str)> {
        let base = &self.loaded.base_dir;
        let mut out: Vec<(PathBuf, &str)> = Vec::new();
        for (p, text) in self.loaded.source.sources.files() {
            let rel = p.strip_prefix(base).unwrap_or(p);
            if rel.is_absolute() || out.iter().any(|(q, _)| q == rel) {
                continue;
            }
            out.push((rel.to_path_buf(), text));
        }
        out
    }

    /// Where the network boot service keeps its install state (`STATE_DIR/pxe`).
    pub fn pxe_state_dir(&self) -> PathBuf {
        self.state_dir().join("pxe")
    }

    /// Every machine of the lab that installs over the network, with its install state
    /// (`None` until the boot service first sees it).
    pub fn pxe_status(&self) -> Result<Vec<PxeMachine>, Error> {
        let installs = pxe::install::Installs::open(&self.pxe_state_dir(), Default::default())?;
        let lab = &self.loaded.lab;
        Ok(pxe::network_installs(lab)
            .into_iter()
            .map(|n| PxeMachine {
                name: n.name.to_string(),
                mac: n.mac(lab),
                profile: n.profile_name.to_string(),
                // The per-boot token is a credential for the install config: never shown.
                state: installs.machines().get(n.name).cloned().map(|mut m| {
                    m.token = None;
                    m
                }),
            })
            .collect())
    }

    /// Asks for `machine` to be installed again at its next network boot.
    pub fn pxe_reinstall(&self, machine: &str) -> Result<(), Error> {
        let mut installs =
            pxe::install::Installs::open_exclusive(&self.pxe_state_dir(), Default::default())?;
        Ok(installs.reinstall(machine, cloudlet_core::store::now_ms() / 1000)?)
    }

    /// The lab's network boot service, bound and ready to run (proxyDHCP, TFTP and HTTP over
    /// the install state in [`Lab::pxe_state_dir`]). `config.state_dir` and
    /// `config.secrets_dir` are set to that directory and the lab's. Refuses a lab with
    /// validation errors.
    pub async fn boot_service(
        &self,
        mut config: pxe::service::BootConfig,
    ) -> Result<pxe::service::BootService, Error> {
        let report = self.validate();
        if report.has_errors() {
            return Err(Error::Invalid {
                diagnostics: report.diagnostics,
            });
        }
        config.state_dir = self.pxe_state_dir();
        config.secrets_dir = self.loaded.base_dir.clone();
        Ok(pxe::service::BootService::bind(&self.loaded.lab, config).await?)
    }

    /// The boot service's settings: `options`, then the lab's `pxe.serve`, then the defaults.
    pub fn boot_config(&self, options: &BootOptions) -> Result<pxe::service::BootConfig, Error> {
        let serve = self.loaded.lab.pxe.as_ref().and_then(|p| p.serve.clone());
        let address = options
            .address
            .or_else(|| self.loaded.lab.boot_server())
            .ok_or_else(|| {
                pxe::service::ServiceError::Config(
                    "no address to serve on: give this host's address on the boot segment (`pxe.serve.address` in the lab, or the address option), or name the boot server machine in `pxe.server`".into(),
                )
            })?;
        let root = options
            .root
            .clone()
            .or(serve.as_ref().map(|s| s.root.clone()))
            .unwrap_or_else(|| PathBuf::from("boot"));
        let mut cfg = pxe::service::BootConfig::new(
            address,
            self.loaded.base_dir.join(root),
            self.pxe_state_dir(),
        );
        cfg.interface = options
            .interface
            .clone()
            .or(serve.as_ref().and_then(|s| s.interface.clone()));
        cfg.proxy_dhcp = options
            .proxy_dhcp
            .or(serve.as_ref().map(|s| s.proxy_dhcp))
            .unwrap_or(true);
        cfg.proxy_offer = serve.as_ref().map(|s| s.proxy_offer).unwrap_or_default();
        cfg.http_port = options
            .http_port
            .or(serve.as_ref().map(|s| s.http_port))
            .unwrap_or(80);
        cfg.tftp_port = options
            .tftp_port
            .or(serve.as_ref().map(|s| s.tftp_port))
            .unwrap_or(69);
        cfg.loader = match options
            .loader
            .or(serve.as_ref().map(|s| s.loader))
            .unwrap_or_default()
        {
            cloudlet_core::model::BootLoader::Ipxe => pxe::service::Loader::Ipxe,
            cloudlet_core::model::BootLoader::Pxelinux => pxe::service::Loader::Pxelinux,
        };
        Ok(cfg)
    }

    /// The boot service bound with `options` (see [`Lab::boot_config`]), split so a frontend
    /// can run it on its own runtime ([`BackgroundBoot`]).
    pub async fn boot_in_background(&self, options: &BootOptions) -> Result<BackgroundBoot, Error> {
        let svc = self.boot_service(self.boot_config(options)?).await?;
        let addr = |r: std::io::Result<std::net::SocketAddr>| {
            r.map_err(|e| Error::Boot(pxe::service::ServiceError::Stopped(e.to_string())))
        };
        let (http, tftp) = (addr(svc.http_addr())?, addr(svc.tftp_addr())?);
        let events = svc.event_stream();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        Ok(BackgroundBoot {
            http,
            tftp,
            events,
            stop,
            run: Box::pin(svc.run(async {
                let _ = stopped.await;
            })),
        })
    }

    /// Runs `work` (usually an apply) while the lab's own boot service (`pxe.serve`) serves
    /// network installs, then keeps serving until every network-install machine that was not
    /// installed has reported (installed or failed), at most `pxe.serve.wait`. Boot service
    /// events go to `on_event`. Without `pxe.serve` this only runs `work` (no outcome).
    async fn serving_installs<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, Error>>,
        on_event: Option<&(dyn Fn(&pxe::service::Event) + Sync)>,
    ) -> Result<(T, Option<InstallOutcome>), Error> {
        use pxe::service::Event as E;
        let Some(serve) = self.loaded.lab.pxe.as_ref().and_then(|p| p.serve.clone()) else {
            return Ok((work.await?, None));
        };
        let cfg = self.boot_config(&BootOptions::default())?;
        let svc = self.boot_service(cfg).await?;
        let mut events = svc.events();
        let installed = svc.machines();
        let mut pending: std::collections::BTreeSet<String> = self
            .pxe_status()?
            .into_iter()
            .filter(|m| {
                installed
                    .get(&m.name)
                    .is_none_or(|s| s.phase != pxe::install::Phase::Installed)
            })
            .map(|m| m.name)
            .collect();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = svc.run(async {
            let _ = stopped.await;
        });
        let wait = std::time::Duration::from_secs(serve.wait.0);
        let watch = async move {
            let mut work = std::pin::pin!(work);
            let mut result: Option<Result<T, Error>> = None;
            let deadline = tokio::time::sleep(std::time::Duration::MAX / 4);
            let mut deadline = std::pin::pin!(deadline);
            let start = std::time::Instant::now();
            let mut waited = std::time::Duration::ZERO;
            loop {
                tokio::select! {
                    r = &mut work, if result.is_none() => {
                        let failed = r.is_err();
                        result = Some(r);
                        if failed {
                            break;
                        }
                        waited = start.elapsed();
                        deadline.as_mut().reset(tokio::time::Instant::now() + wait);
                    }
                    e = events.recv() => match e {
                        Ok(e) => {
                            if let E::Reported { machine, .. } = &e {
                                pending.remove(machine);
                                // The bootstrap verifies the machine by the host key it
                                // just reported.
                                if self.makes_cluster()
                                    && let Err(err) = self.write_known_hosts()
                                {
                                    tracing::warn!(%machine, error = %err, "cannot record its host key");
                                }
                            }
                            if let Some(f) = on_event {
                                f(&e);
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            // Reports may be among the missed events: the persisted state
                            // says who is done.
                            if let Ok(machines) = self.pxe_status() {
                                pending.retain(|n| {
                                    machines.iter().any(|m| {
                                        &m.name == n
                                            && m.state.as_ref().is_none_or(|s| {
                                                !matches!(
                                                    s.phase,
                                                    pxe::install::Phase::Installed
                                                        | pxe::install::Phase::Failed
                                                )
                                            })
                                    })
                                });
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                    () = &mut deadline, if result.is_some() => break,
                }
                if result.is_some() && pending.is_empty() {
                    break;
                }
            }
            let _ = stop.send(());
            (result, pending, start.elapsed().saturating_sub(waited))
        };
        let (served, (result, pending, waited)) = tokio::join!(run, watch);
        let value = match result {
            Some(r) => r?,
            None => {
                return Err(Error::Boot(pxe::service::ServiceError::Stopped(format!(
                    "before the apply finished{}",
                    served.err().map(|e| format!(": {e}")).unwrap_or_default()
                ))));
            }
        };
        Ok((
            value,
            Some(InstallOutcome {
                machines: self.pxe_status()?,
                not_reported: pending.into_iter().collect(),
                waited,
            }),
        ))
    }

    /// The address the lab's boot server machine (`pxe.server`) has, if any.
    pub fn pxe_server_address(&self) -> Option<std::net::Ipv4Addr> {
        let lab = &self.loaded.lab;
        lab.machine_ip(lab.pxe.as_ref()?.server.as_deref()?)
    }

    /// The desired resources without validating first: for callers that validated already.
    /// On an invalid lab the result is unspecified (but never a panic).
    pub fn expand(&self) -> Vec<Resource> {
        let lab = &self.loaded.lab;
        // The cluster holds most resources; the other domains expand beside it.
        let (mut cluster, (mut router, pxe, storage, mut hyper)) = rayon::join(
            || cluster::expand(lab),
            || {
                (
                    network::expand(lab),
                    pxe::expand(lab),
                    storage::expand(lab),
                    hypervisor::expand(lab),
                )
            },
        );
        // next-server only for router backends that can set it (validation tells the others
        // what to set by hand).
        if backend::find(BACKENDS, lab.targets.router.kind.as_str())
            .is_some_and(|d| d.can(cloudlet_core::backend::Capability::BootServer))
        {
            router.extend(network::boot_servers(lab));
        }
        let ids = |rs: &[Resource]| -> rustc_hash::FxHashSet<ResourceId> {
            rs.iter().map(|r| r.id.clone()).collect()
        };
        let (router_ids, pxe_ids) = (ids(&router), ids(&pxe));
        for vm in &mut hyper {
            if &*vm.id.kind != "vm" {
                continue;
            }
            let name = vm.id.name.to_string();
            let nics = lab.machines.get(&name).map_or(0, |m| m.nics.len());
            for i in 0..nics {
                let rid = network::reservation_id(&name, i);
                if router_ids.contains(&rid) {
                    vm.depends_on.push(rid);
                }
            }
            for pid in [pxe::install_config_id(&name), pxe::boot_entry_id(&name)] {
                if pxe_ids.contains(&pid) {
                    vm.depends_on.push(pid);
                }
            }
        }
        let storage_ids = ids(&storage);
        let mut pv_exports: rustc_hash::FxHashMap<ResourceId, ResourceId> = Default::default();
        for (name, _) in lab
            .storage
            .iter()
            .flat_map(|s| &s.exports)
            .filter(|(_, e)| e.dynamic)
        {
            let export = storage::export_id(name);
            if storage_ids.contains(&export) {
                pv_exports.insert(cluster::storage_class_id(name), export);
            }
        }
        if let Some(c) = &lab.cluster {
            for (name, app) in &c.apps {
                let ns = cloudlet_core::Lab::app_namespace(name, app);
                for v in &app.volumes {
                    let sub = storage::volume_sub_path(name, v);
                    let export = storage::volume_export_id(&v.export, &sub);
                    if storage_ids.contains(&export) {
                        pv_exports.insert(cluster::volume_pv_id(ns, name, &v.name), export);
                    }
                }
            }
        }
        for r in &mut cluster {
            if let Some(export) = pv_exports.remove(&r.id) {
                r.depends_on.push(export);
            }
        }
        if !self.manifests.is_empty() {
            // Manifests may bring CRDs the lab's own objects need (MetalLB's, say): link the
            // whole cluster domain, not just the manifests.
            cluster.extend(self.manifests.iter().cloned());
            let all: std::collections::HashSet<ResourceId> =
                cluster.iter().map(|r| r.id.clone()).collect();
            cluster::manifests::link(&mut cluster, &all);
        }
        if lab.watch.is_some() {
            cluster.extend(cluster::watcher::objects(
                lab,
                &self.lab_files(),
                self.entry.as_deref().unwrap_or(""),
            ));
        }
        // The platform: its objects where the cluster's backend applies releases (and they
        // were fetched), else each component as its pinned release.
        match self.platform.get() {
            Some(objects) => {
                cluster::platform::link(objects, &mut cluster);
                cluster.extend(objects.iter().cloned());
            }
            None => cluster.extend(cluster::platform::pins(lab)),
        }
        // The cluster cloudlet makes: its nodes join once their machines exist and are
        // installed, and its objects wait for the cluster.
        let nodes = cluster::bootstrap::expand(lab);
        if let Some(first) = nodes.first().map(|n| n.id.clone()) {
            for r in &mut cluster {
                r.depends_on.push(first.clone());
            }
            let hyper_ids = ids(&hyper);
            for mut n in nodes {
                let machine = n.id.name.to_string();
                let vm = hypervisor::vm_id(&machine);
                if hyper_ids.contains(&vm) {
                    n.depends_on.push(vm);
                }
                let install = pxe::install_config_id(&machine);
                if pxe_ids.contains(&install) {
                    n.depends_on.push(install);
                }
                cluster.push(n);
            }
        }
        let mut all = hyper;
        all.extend(router);
        all.extend(pxe);
        all.extend(storage);
        all.extend(cluster);
        all
    }

    /// What a backend's `connect` is given for `domain`.
    fn connection<'a>(
        &'a self,
        domain: Domain,
        target: &'a Target,
        output_dir: &'a Path,
        state_dir: &'a Path,
    ) -> Connection<'a> {
        Connection {
            lab: &self.loaded.lab,
            domain,
            target,
            base_dir: &self.loaded.base_dir,
            output_dir,
            state_dir,
            take_over: self.options.take_over,
        }
    }

    /// The provider of `domain`: the backend its target names, from [`BACKENDS`].
    async fn provider_for(
        &self,
        domain: Domain,
        target: &Target,
        output_dir: &Path,
    ) -> Result<Arc<dyn Provider>, Error> {
        let failed = |source| Error::Engine(EngineError::NoProvider { domain, source });
        let backend = backend::find(BACKENDS, target.kind.as_str())
            .filter(|b| b.serves(domain))
            .ok_or_else(|| {
                failed(ConnectError::Unknown {
                    kind: target.kind.as_str().to_string(),
                })
            })?;
        let state = self.state_dir();
        let c = self.connection(domain, target, output_dir, &state);
        if self.options.in_cluster {
            if domain == Domain::Cluster {
                let kube = cluster::kube_provider::open_in_cluster(&c).map_err(failed)?;
                return Ok(Arc::new(in_cluster::InCluster(kube)));
            }
            if target.kind.as_str() == "local" {
                return Ok(Arc::new(in_cluster::Unseen));
            }
        }
        (backend.connect)(&c).await.map_err(failed)
    }

    /// The router's provider, as the lab's router target names it.
    pub(crate) async fn router_provider(&self) -> Result<Arc<dyn Provider>, Error> {
        let out = self.output_dir();
        self.provider_for(Domain::Router, &self.loaded.lab.targets.router, &out)
            .await
    }

    /// The lab's volumes as the NAS has them: path, who may mount, usage, newest snapshot.
    /// Empty when the storage target renders locally.
    pub async fn storage_status(&self) -> Result<Vec<storage::VolumeStatus>, Error> {
        match self.nas()? {
            Some(nas) => nas.status().await.map_err(|source| {
                Error::Engine(EngineError::Observe {
                    domain: Domain::Storage,
                    source,
                })
            }),
            None => Ok(Vec::new()),
        }
    }

    /// The lab's replication tasks as the NAS reports them (none when the storage target
    /// renders to files, or the NAS takes no snapshots).
    pub async fn storage_replications(&self) -> Result<Vec<storage::ReplicationStatus>, Error> {
        match self.nas()? {
            Some(nas) => nas.replications().await.map_err(|source| {
                Error::Engine(EngineError::Observe {
                    domain: Domain::Storage,
                    source,
                })
            }),
            None => Ok(Vec::new()),
        }
    }

    /// The NAS the storage target names; `None` when it renders to files.
    fn nas(&self) -> Result<Option<storage::Nas>, Error> {
        let t = &self.loaded.lab.targets.storage;
        let out = self.output_dir();
        let state = self.state_dir();
        let c = self.connection(Domain::Storage, t, &out, &state);
        let nas = storage::Nas::open(&c).map_err(|source| {
            Error::Engine(EngineError::NoProvider {
                domain: Domain::Storage,
                source,
            })
        })?;
        Ok(nas)
    }

    /// The engine for this lab: one provider per domain, as the lab's targets say.
    pub async fn engine(&self) -> Result<Engine, Error> {
        let lab = &self.loaded.lab;
        let out = self.output_dir();
        if self.makes_cluster() && !self.options.in_cluster {
            // The nodes are verified by the host keys their installs reported.
            self.write_known_hosts()?;
        }
        let mut providers = Providers::new();
        for (domain, target) in lab.targets.each() {
            providers = providers.with(domain, self.provider_for(domain, target, &out).await?);
        }
        let store = StateStore::open(self.state_dir())?;
        Ok(Engine::new(lab.name.clone(), providers, store))
    }

    /// Where release manifests are cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.options
            .cache_dir
            .clone()
            .unwrap_or_else(cluster::platform::fetch::default_cache)
    }

    /// Whether the cluster's backend applies the platform's releases (a live API server),
    /// rather than being given each component as its pinned release.
    pub fn applies_releases(&self) -> bool {
        backend::find(BACKENDS, self.loaded.lab.targets.cluster.kind.as_str())
            .is_some_and(|d| d.can(cloudlet_core::backend::Capability::Releases))
    }

    /// Fetches (or takes from the cache) the releases of the platform components the lab
    /// installs, checks their SHA-256 and adapts them into objects, once per `Lab`; nothing
    /// when the cluster's backend does not apply releases or the lab is invalid (planning
    /// reports that).
    pub async fn fetch_platform(&self) -> Result<(), Error> {
        if !self.applies_releases() {
            return Ok(());
        }
        let lab = &self.loaded.lab;
        self.platform
            .get_or_try_init(|| async {
                let src = cluster::platform::fetch::Sources {
                    cache: self.cache_dir(),
                    base_dir: self.loaded.base_dir.clone(),
                    mirror: lab.cluster.as_ref().and_then(|c| c.platform.mirror.clone()),
                    mirror_ca: lab
                        .cluster
                        .as_ref()
                        .and_then(|c| c.platform.mirror_ca.clone()),
                };
                let mut releases = cluster::platform::Releases::default();
                for (def, settings) in cluster::platform::installed(lab) {
                    // An unpinnable release is a validation error, reported with its position.
                    let Ok(pin) = cluster::platform::pin(def, settings) else {
                        continue;
                    };
                    let texts = cluster::platform::fetch::fetch(&src, &pin).await?;
                    releases.insert(def.key, pin.version, texts);
                }
                let objects = cluster::platform::expand(lab, &releases)?;
                Ok::<_, Error>(Arc::new(objects))
            })
            .await?;
        Ok(())
    }

    /// Refuses a plan that moves a platform component to an older release whose CRDs
    /// store another version, unless the component allows it.
    fn refuse_downgrades(&self, plan: &Plan) -> Result<(), Error> {
        let platform = self.loaded.lab.cluster.as_ref().map(|c| &c.platform);
        for step in &plan.steps {
            if let Some(d) = cluster::platform::downgrade(step) {
                let allowed = platform
                    .and_then(|p| p.component(&d.key))
                    .is_some_and(|c| c.allow_downgrade);
                if !allowed {
                    return Err(Error::Downgrade(Box::new(d)));
                }
            }
        }
        Ok(())
    }

    /// Whether the cluster target is a live Kubernetes API server (not rendered to files).
    pub fn has_live_cluster(&self) -> bool {
        let kind = &self.loaded.lab.targets.cluster.kind;
        *kind == cluster::BACKEND.kind || *kind == cluster::kubeadm_provider::BACKEND.kind
    }

    /// Whether cloudlet makes the lab's cluster (`targets.cluster.kind: kubeadm`).
    pub fn makes_cluster(&self) -> bool {
        self.loaded.lab.targets.cluster.kind == cluster::kubeadm_provider::BACKEND.kind
    }

    /// Writes the host keys the network installs reported as `STATE/known_hosts`, what the
    /// bootstrap verifies the nodes by.
    fn write_known_hosts(&self) -> Result<(), Error> {
        let installs = pxe::install::Installs::open(&self.pxe_state_dir(), Default::default())?;
        let lab = &self.loaded.lab;
        let text = installs.known_hosts(|m| lab.machine_ip(m).map(std::net::IpAddr::V4), 22);
        let path = self
            .state_dir()
            .join(cluster::kubeadm_provider::KNOWN_HOSTS);
        std::fs::create_dir_all(self.state_dir())
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| Error::Render {
                path,
                message: e.to_string(),
            })
    }

    /// An admin kubeconfig for the cluster cloudlet makes: a client certificate from the
    /// cluster CA (group `kubeadm:cluster-admins`) valid for `valid`, issued now and written
    /// nowhere. It holds a private key: give it only to its user.
    pub fn kubeconfig(
        &self,
        valid: std::time::Duration,
    ) -> Result<cluster::identity::Kubeconfig, Error> {
        let lab = &self.loaded.lab;
        if !self.makes_cluster() {
            return Err(cluster::kubeadm::KubeadmError::NotMade.into());
        }
        let vault = cloudlet_core::vault::key_from_env()
            .and_then(|key| cloudlet_core::vault::Vault::open(self.state_dir().join("vault"), &key))
            .map_err(cluster::identity::IdentityError::Vault)?;
        let (identity, _) = cluster::identity::Identity::load_or_make(&vault)?;
        let ep = cluster::kubeadm::endpoint(lab)?;
        let user = std::env::var("USER").unwrap_or_else(|_| "admin".into());
        Ok(identity.admin_kubeconfig(
            &lab.name,
            &format!("https://{ep}:{}", cluster::kubeadm::API_PORT),
            &format!("cloudlet:{user}"),
            valid,
        )?)
    }

    /// A client of the lab's live cluster and the ApplySet it manages there (`None` when the
    /// cluster target is not Kubernetes).
    async fn live_cluster(&self) -> Result<Option<(kube::Client, String)>, Error> {
        Ok(self
            .live_cluster_endpoint()
            .await?
            .map(|(client, set, _)| (client, set)))
    }

    /// [`Lab::live_cluster`] with the API server's address and host name (from its URL).
    #[allow(clippy::type_complexity)]
    async fn live_cluster_endpoint(
        &self,
    ) -> Result<Option<(kube::Client, String, Option<(std::net::SocketAddr, String)>)>, Error> {
        let t = &self.loaded.lab.targets.cluster;
        if !self.has_live_cluster() {
            return Ok(None);
        }
        let (out, state) = (self.output_dir(), self.state_dir());
        let c = self.connection(Domain::Cluster, t, &out, &state);
        let no_provider = |source| {
            Error::Engine(EngineError::NoProvider {
                domain: Domain::Cluster,
                source,
            })
        };
        let observe = |source| {
            Error::Engine(EngineError::Observe {
                domain: Domain::Cluster,
                source,
            })
        };
        Ok(Some(if self.options.in_cluster {
            let kube = cluster::kube_provider::open_in_cluster(&c).map_err(no_provider)?;
            (
                kube.client().clone(),
                kube.applyset().to_string(),
                endpoint_address(kube.endpoint()).await,
            )
        } else if self.makes_cluster() {
            let made = cluster::kubeadm_provider::open(&c).map_err(no_provider)?;
            let kube = made.kube().await.map_err(observe)?;
            (
                kube.client().clone(),
                kube.applyset().to_string(),
                endpoint_address(kube.endpoint()).await,
            )
        } else {
            let existing = cluster::kube_provider::open(&c)
                .await
                .map_err(no_provider)?;
            (
                existing.client().clone(),
                existing.applyset().to_string(),
                endpoint_address(existing.endpoint()).await,
            )
        }))
    }

    fn health_error(e: &kube::Error) -> Error {
        Error::Engine(EngineError::Observe {
            domain: Domain::Cluster,
            source: cloudlet_core::ProviderError::Backend {
                message: format!("checking health: {e}"),
                retryable: true,
            },
        })
    }

    /// The health of the lab's Kubernetes objects (rollouts, LoadBalancer addresses, ingress
    /// backends, claims); with `wait`, checks again until nothing is progressing or the time
    /// is up. Empty when the cluster target is not Kubernetes.
    pub async fn cluster_health(
        &self,
        wait: Option<std::time::Duration>,
    ) -> Result<Vec<cluster::health::Finding>, Error> {
        let Some((client, applyset)) = self.live_cluster().await? else {
            return Ok(Vec::new());
        };
        let r = match wait {
            Some(d) => cluster::health::wait(&client, &applyset, d).await,
            None => cluster::health::check(&client, &applyset).await,
        };
        r.map_err(|e| Self::health_error(&e))
    }

    /// The platform's components with their release and health, and which node announces
    /// each LoadBalancer address. Empty when the cluster target is not Kubernetes.
    pub async fn platform_status(&self) -> Result<cluster::platform::status::Status, Error> {
        let Some((client, applyset)) = self.live_cluster().await? else {
            return Ok(Default::default());
        };
        cluster::platform::status::check(&client, &applyset)
            .await
            .map_err(|e| Self::health_error(&e))
    }

    /// Plans the lab against what exists.
    pub async fn plan(&self) -> Result<Plan, Error> {
        self.plan_holding(&[]).await
    }

    /// The desired resources with the workloads `held` at 0 replicas (a restore holds the
    /// apps whose volumes come back).
    fn desired_holding(&self, held: &[ResourceId]) -> Result<Vec<Resource>, Error> {
        let mut desired = self.desired()?;
        for r in desired.iter_mut().filter(|r| held.contains(&r.id)) {
            let mut v = r.body.value();
            v["spec"]["replicas"] = serde_json::json!(0);
            r.body = cloudlet_core::resource::Body::new(&v);
        }
        Ok(desired)
    }

    /// [`Lab::plan`] with the workloads `held` at 0 replicas.
    pub(crate) async fn plan_holding(&self, held: &[ResourceId]) -> Result<Plan, Error> {
        self.fetch_platform().await?;
        let desired = self.desired_holding(held)?;
        let engine = self.shared_engine().await?;
        let mut plan = engine.plan(desired).await?;
        self.refuse_downgrades(&plan)?;
        self.made_here(&mut plan);
        Ok(plan)
    }

    /// Marks `plan` as made by this lab now, so its apply need not check freshness.
    fn made_here(&self, plan: &mut Plan) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let origin = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        plan.origin = cloudlet_core::plan::PlanOrigin(Some(origin));
        self.planned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(origin);
    }

    /// Applies a plan made by [`Lab::plan`] (now, or saved earlier). A plan made from other lab
    /// files is refused as stale; a plan made elsewhere (saved, sent as JSON) is applied only
    /// if the infrastructure still is what it was planned from. With `pxe.serve` the lab's
    /// boot service runs during the apply and until the network installs report (or
    /// `pxe.serve.wait` passes), even when the plan has no changes.
    pub async fn apply(&self, plan: &Plan, options: ApplyOptions<'_>) -> Result<Applied, Error> {
        self.apply_with(plan, options, None).await
    }

    /// [`Lab::apply`], handing each event of the boot service to `on_boot` while it serves
    /// the network installs.
    pub async fn apply_with(
        &self,
        plan: &Plan,
        options: ApplyOptions<'_>,
        on_boot: Option<&(dyn Fn(&pxe::service::Event) + Sync)>,
    ) -> Result<Applied, Error> {
        self.apply_holding(plan, options, on_boot, &[]).await
    }

    /// [`Lab::apply_with`] of a plan made by [`Lab::plan_holding`] with the same `held`.
    pub(crate) async fn apply_holding(
        &self,
        plan: &Plan,
        options: ApplyOptions<'_>,
        on_boot: Option<&(dyn Fn(&pxe::service::Event) + Sync)>,
        held: &[ResourceId],
    ) -> Result<Applied, Error> {
        let applying = async {
            if plan.steps.is_empty() {
                // Nothing to change: no lock, no journal entry; installs are still served.
                self.check_plan_lab(plan)?;
                return Ok(ApplyReport::default());
            }
            self.apply_steps(plan, options, held).await
        };
        if plan.destroy {
            // A teardown installs nothing: no boot service.
            return Ok(Applied {
                report: applying.await?,
                installs: None,
            });
        }
        let (report, installs) = self.serving_installs(applying, on_boot).await?;
        Ok(Applied { report, installs })
    }

    fn check_plan_lab(&self, plan: &Plan) -> Result<(), Error> {
        if plan.lab != self.loaded.lab.name {
            return Err(Error::Engine(EngineError::StalePlan {
                reason: format!(
                    "the plan is for lab `{}`, not `{}`",
                    plan.lab, self.loaded.lab.name
                ),
            }));
        }
        Ok(())
    }

    async fn apply_steps(
        &self,
        plan: &Plan,
        options: ApplyOptions<'_>,
        held: &[ResourceId],
    ) -> Result<ApplyReport, Error> {
        self.check_plan_lab(plan)?;
        self.refuse_downgrades(plan)?;
        self.fetch_platform().await?;
        // A teardown was planned against an empty lab.
        let desired = if plan.destroy {
            Vec::new()
        } else {
            self.desired_holding(held)?
        };
        if cloudlet_core::plan::digest(&desired) != plan.desired_digest {
            return Err(Error::Engine(EngineError::StalePlan {
                reason: "the lab files changed since the plan was made".into(),
            }));
        }
        // The freshness rule, for every frontend: a plan this lab just made applies as it is;
        // any other is applied only if the infrastructure still is what it was planned from.
        let made_here = plan.origin.0.is_some_and(|o| {
            self.planned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&o)
        });
        let options = ApplyOptions {
            verify_fresh: options.verify_fresh || !made_here,
            ..options
        };
        let engine = self.shared_engine().await?;
        // Past one machine, applies are kept apart by a Lease in the lab's cluster.
        let Some(lock) = Box::pin(self.apply_lease()).await else {
            return Ok(Box::pin(engine.apply(plan, options)).await?);
        };
        let lease = format!(
            "{}/{}",
            cluster::lease::NAMESPACE,
            cluster::lease::apply_lease(&self.loaded.lab.name)
        );
        match Box::pin(lock.hold(Box::pin(engine.apply(plan, options.clone())))).await {
            Ok(r) => Ok(r?),
            Err(cluster::lease::HoldError::Held(h)) => Err(Error::LeaseHeld {
                lease,
                holder: h.to_string(),
            }),
            Err(cluster::lease::HoldError::Lost(to)) => Err(Error::LeaseLost { lease, to }),
            Err(e) => {
                // The cluster does not answer for its Lease: what runs here is still kept
                // apart by the state directory's lock.
                tracing::warn!(lease, error = %cloudlet_core::error::chain(&e), "applying without the cluster's Lease");
                Ok(Box::pin(engine.apply(plan, options)).await?)
            }
        }
    }

    /// The Lease an apply holds, when the lab's cluster answers within 5 seconds (a cluster
    /// still to be made has none yet).
    async fn apply_lease(&self) -> Option<cluster::lease::LeaseLock> {
        if !self.has_live_cluster() {
            return None;
        }
        let live =
            tokio::time::timeout(std::time::Duration::from_secs(5), self.live_cluster()).await;
        let Ok(Ok(Some((client, _)))) = live else {
            return None;
        };
        Some(cluster::lease::LeaseLock::new(
            client,
            &cluster::lease::apply_lease(&self.loaded.lab.name),
            &cluster::lease::identity(),
            std::time::Duration::from_secs(30),
        ))
    }

    /// Writes every desired resource as a file under `dir`, and the artifacts resources carry
    /// (boot menus, per-machine boot files, install configs) under `dir/files/DOMAIN/`, without
    /// planning, journaling or pruning. Returns the number of resources written.
    pub async fn render(&self, dir: impl Into<PathBuf>) -> Result<usize, Error> {
        let dir = dir.into();
        let desired = self.desired()?;
        let p = LocalProvider::new(dir.clone(), self.loaded.lab.name.clone());
        let io = |path: &Path, e: std::io::Error| Error::Render {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        for r in &desired {
            p.create(r).await.map_err(|source| EngineError::Observe {
                domain: r.id.domain,
                source,
            })?;
            let body = r.body.value();
            let Some(files) = body.get("files").and_then(|f| f.as_object()) else {
                continue;
            };
            for (name, text) in files {
                let Some(text) = text.as_str() else { continue };
                if cloudlet_pxe::tftp::namespace::check_name(name).is_err() {
                    return Err(Error::Render {
                        path: PathBuf::from(name),
                        message: "artifact names must be plain relative paths".into(),
                    });
                }
                let path = dir.join("files").join(r.id.domain.as_str()).join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
                }
                std::fs::write(&path, text).map_err(|e| io(&path, e))?;
            }
        }
        Ok(desired.len())
    }
}

/// The JSON Schema of the lab format.
pub fn schema() -> serde_json::Value {
    let mut s = cloudlet_core::schema();
    // One schema for every lab file: a lab split over a directory has `name` and `site` in
    // one file only, so no root key is required here (the loader checks the merged lab).
    if let Some(o) = s.as_object_mut() {
        o.remove("required");
        o.insert("$id".into(), SCHEMA_ID.into());
        o.insert(
            "description".into(),
            "A cloudlet lab file. A lab is one file or a directory of them; the merged lab needs `name` and `site`.".into(),
        );
    }
    // The backends of this build say which kinds and settings a target may have.
    if let Some(defs) = s.get_mut("$defs").and_then(|d| d.as_object_mut()) {
        if let Some(kind) = defs.get_mut("TargetKind").and_then(|k| k.as_object_mut()) {
            let kinds: Vec<serde_json::Value> = BACKENDS.iter().map(|b| b.kind.into()).collect();
            kind.insert("enum".into(), kinds.into());
        }
        if let Some(props) = defs
            .get_mut("Target")
            .and_then(|t| t.get_mut("properties"))
            .and_then(|p| p.as_object_mut())
        {
            for b in BACKENDS {
                for f in b.fields {
                    props.entry(f.name).or_insert_with(
                        || serde_json::json!({"type": "string", "description": f.help}),
                    );
                }
            }
        }
    }
    s
}

/// What a reviewer needs to see of a resource a plan creates or deletes, on one line (a VM's
/// CPUs, memory, disks and NICs; a forward's ports; an app's images and replicas; whether a
/// dataset's data is kept): each domain says it for its own kinds. `None` where the id says
/// enough.
pub fn headline(r: &Resource) -> Option<String> {
    match r.id.domain {
        Domain::Hypervisor => hypervisor::headline(r),
        Domain::Router => network::headline(r),
        Domain::Storage => storage::headline(r),
        Domain::Cluster => cluster::headline(r),
        Domain::Pxe => None,
    }
}

/// The schema's `$id`; `schema/lab.schema.json` in the repository is its text, and lab files
/// name it for editors with `# yaml-language-server: $schema=...`.
pub const SCHEMA_ID: &str = "https://cloudlet.dev/schemas/lab.schema.json";

/// Reads a saved plan.
pub fn read_plan(path: &Path) -> Result<Plan, Error> {
    let text = std::fs::read(path).map_err(|e| Error::PlanFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_slice(&text).map_err(|e| Error::PlanFile {
        path: path.to_path_buf(),
        message: format!("not a cloudlet plan: {e}"),
    })
}

/// Writes a plan as JSON (the same bytes for the same plan).
pub fn write_plan(path: &Path, plan: &Plan) -> Result<(), Error> {
    let mut bytes = serde_json::to_vec_pretty(plan).map_err(|e| Error::PlanFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    std::fs::write(path, bytes).map_err(|e| Error::PlanFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
