//! Errors of the core crate.

use std::path::PathBuf;

use crate::diag::Diagnostic;
use crate::resource::{Domain, ResourceId};
use crate::source::Sources;

/// Loading a lab failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A lab file is a FIFO, a device or a socket: reading it could block forever.
    #[error("{} is not a regular file; lab files are plain files", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A lab file is larger than the loader reads.
    #[error("{} has {size} bytes; lab files may have at most {limit}", path.display())]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A link to a directory leads back to a directory already read.
    #[error("{} leads back to a directory of the lab already read (a link loop or a second link to it)", path.display())]
    DirectoryLoop {
        /// The link.
        path: PathBuf,
    },
    /// A directory holds no `*.yaml` / `*.yml` file.
    #[error("no lab files (*.yaml, *.yml) under {}", path.display())]
    NoLabFiles {
        /// The directory.
        path: PathBuf,
    },
    /// The files are not a valid lab (syntax, types, unknown keys, duplicates).
    #[error("the lab has {} error(s){}", diagnostics.len(), first_location(diagnostics))]
    Invalid {
        /// Every problem found, sorted by position.
        diagnostics: Vec<Diagnostic>,
        /// The texts, to render the diagnostics with their lines.
        sources: Sources,
    },
}

impl LoadError {
    /// A lab that does not load, with every problem found, each with its range in `sources`.
    pub fn invalid(mut diagnostics: Vec<Diagnostic>, sources: Sources) -> LoadError {
        crate::diag::fill_ends(&mut diagnostics, &sources);
        LoadError::Invalid {
            diagnostics,
            sources,
        }
    }

    /// Every problem as diagnostics, so frontends report load errors the way they report
    /// validation findings (`validate --output json` included). A problem with a whole file
    /// or directory has no line; its message names the path.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        use crate::diag::Severity;
        let code = match self {
            LoadError::Invalid { diagnostics, .. } => return diagnostics.clone(),
            LoadError::Io { .. } => "io",
            LoadError::NotAFile { .. } => "not-a-file",
            LoadError::TooLarge { .. } => "too-large",
            LoadError::DirectoryLoop { .. } => "directory-loop",
            LoadError::NoLabFiles { .. } => "no-lab-files",
        };
        vec![Diagnostic::at_location(
            Severity::Error,
            code,
            None,
            crate::diag::printable(&chain(self)).into_owned(),
        )]
    }
}

fn first_location(d: &[Diagnostic]) -> String {
    d.first()
        .map(|d| format!("; first: {d}"))
        .unwrap_or_default()
}

/// A secret the lab references cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The environment variable is not set (or not UTF-8).
    #[error("the environment variable {var} is not set")]
    EnvUnset {
        /// The variable.
        var: String,
    },
    /// The file cannot be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A provider failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// An I/O error in a local backend.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The backend refused or failed an operation.
    #[error("{message}")]
    Backend {
        /// What the backend said.
        message: String,
        /// Whether trying again may succeed.
        retryable: bool,
    },
    /// The backend could not be reached at all (connection refused, no route, TLS handshake
    /// failed): the engine starts no further step of the domain.
    #[error("cannot reach {endpoint}: {message}")]
    Unreachable {
        /// The backend's address.
        endpoint: String,
        /// What was being done and what the connection said.
        message: String,
    },
    /// A backend's API refused or failed a request, with what is known about why: retry
    /// decisions read [`Fault`], never the message.
    #[error("{backend} {operation}: {message}")]
    Api {
        /// The backend (`Proxmox`, ...).
        backend: &'static str,
        /// What was asked (`POST /nodes/pve/qemu`, `task clone web`).
        operation: String,
        /// The HTTP status, when the answer had one.
        status: Option<u16>,
        /// The kind of failure.
        fault: Fault,
        /// What the backend said.
        message: String,
    },
    /// A command or file operation on the backend's machine failed; the source is the
    /// transport's typed error (the command, its exit code and output, or the I/O cause).
    #[error("{context}")]
    Command {
        /// What cloudlet was doing (`checking dnsmasq.conf`, `qemu-img create`).
        context: String,
        /// The failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend's client cannot be made (a TLS setting, an address); nothing was sent.
    #[error("setting up the {backend} client")]
    Setup {
        /// The backend.
        backend: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The object exists but is not cloudlet's; it is never touched.
    #[error("{id} exists but is not managed by cloudlet; adopt it explicitly or rename it")]
    NotOwned {
        /// The resource.
        id: ResourceId,
    },
    /// The backend holds data cloudlet cannot read.
    #[error("invalid data for {what}: {message}")]
    InvalidData {
        /// What was read.
        what: String,
        /// What is wrong.
        message: String,
    },
}

/// Why a backend's API refused a request, as far as the backend says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Something with that name or id exists already (an id taken meanwhile).
    Conflict,
    /// The backend is busy (a lock it could not take in time, throttling): trying again may
    /// succeed.
    Busy,
    /// The credentials were refused.
    Unauthorized,
    /// What was asked for does not exist.
    NotFound,
    /// Anything else.
    Other,
}

impl Fault {
    /// What an HTTP status alone says: 401/403 unauthorized, 404 not found, 409 conflict,
    /// 429 and 502-504 busy (throttled, or a proxy in front of a restarting service).
    pub fn from_status(status: u16) -> Fault {
        match status {
            401 | 403 => Fault::Unauthorized,
            404 => Fault::NotFound,
            409 => Fault::Conflict,
            429 | 502..=504 => Fault::Busy,
            _ => Fault::Other,
        }
    }
}

impl ProviderError {
    /// A failed command or file operation while doing `context`.
    pub fn command(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ProviderError {
        ProviderError::Command {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// Whether trying the same request again may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            ProviderError::Backend { retryable, .. } => *retryable,
            ProviderError::Api { fault, .. } => *fault == Fault::Busy,
            ProviderError::Unreachable { .. } => true,
            _ => false,
        }
    }

    /// The fault of an API error.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            ProviderError::Api { fault, .. } => Some(*fault),
            _ => None,
        }
    }
}

/// Planning or applying failed as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Two desired resources have the same id (a bug in an expansion).
    #[error("resource {id} is desired twice")]
    DuplicateResource {
        /// The id.
        id: ResourceId,
    },
    /// A resource depends on one that is not desired (a bug in an expansion).
    #[error("{id} depends on {dependency}, which is not part of the lab")]
    MissingDependency {
        /// The resource.
        id: ResourceId,
        /// The missing dependency.
        dependency: ResourceId,
    },
    /// The dependency graph has a cycle.
    #[error("dependency cycle through {id}")]
    Cycle {
        /// A resource on the cycle.
        id: ResourceId,
    },
    /// No provider serves a domain.
    #[error("no provider for the {domain} domain")]
    NoProvider {
        /// The domain.
        domain: Domain,
        /// Why.
        #[source]
        source: crate::backend::ConnectError,
    },
    /// Observing a domain failed.
    #[error("observing the {domain} domain failed")]
    Observe {
        /// The domain.
        domain: Domain,
        /// The cause.
        #[source]
        source: ProviderError,
    },
    /// Another apply holds the lock.
    #[error("another apply is running on this lab (lock {}{})", path.display(), holder.as_ref().map(|h| format!(", held by {h}")).unwrap_or_default())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as recorded in the file.
        holder: Option<String>,
    },
    /// The state store could not be read or written.
    #[error("state store {}", path.display())]
    Store {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The plan destroys data and the apply was not allowed to.
    #[error("the plan deletes data ({}); nothing was changed. Check the plan, then apply with the permission to lose data (`--allow-data-loss`)", .ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    DataLoss {
        /// The steps that would destroy data.
        ids: Vec<ResourceId>,
    },
    /// A saved plan no longer matches the lab or the infrastructure.
    #[error("the saved plan is stale: {reason}; run `cloudlet plan` again")]
    StalePlan {
        /// What changed.
        reason: String,
    },
    /// A saved plan has a format this version cannot apply.
    #[error("the saved plan has format {found}; this cloudlet applies format {expected}")]
    PlanFormat {
        /// Found.
        found: u32,
        /// Expected.
        expected: u32,
    },
}

/// An error and its causes on one line: `outer: inner: innermost`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
