//! Backends as data: each backend's [`Descriptor`] says which `kind` a lab's target names it
//! by, which domain it serves, which target fields it reads (and which it needs), what it can
//! do beyond its domain's basics, and how it connects. A descriptor sits next to its provider
//! in its domain crate; the facade holds the one list of them. Validation reads the list (a
//! field a backend does not read is an error with its position), and so does the facade
//! when it builds the engine: a new backend is its module plus one line in that list.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use futures::future::BoxFuture;

use crate::error::SecretError;
use crate::local::LocalProvider;
use crate::model::{Lab, Target};
use crate::provider::Provider;
use crate::resource::Domain;

/// A target field a backend reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Its name in the lab file (`endpoint`, `datacenter`).
    pub name: &'static str,
    /// Whether the backend cannot work without it.
    pub required: bool,
    /// What it is, with an example: shown when it is missing or misspelt.
    pub help: &'static str,
    /// A capability that cannot work without it: needed when the lab asks for that.
    pub needed_for: Option<Capability>,
}

impl Field {
    /// A field the backend needs.
    pub const fn required(name: &'static str, help: &'static str) -> Field {
        Field {
            name,
            required: true,
            help,
            needed_for: None,
        }
    }

    /// A field the backend reads when given.
    pub const fn optional(name: &'static str, help: &'static str) -> Field {
        Field {
            name,
            required: false,
            help,
            needed_for: None,
        }
    }

    /// A field the backend needs only to do `capability`.
    pub const fn needed_for(
        name: &'static str,
        capability: Capability,
        help: &'static str,
    ) -> Field {
        Field {
            name,
            required: false,
            help,
            needed_for: Some(capability),
        }
    }

    /// `credentials`, needed: where the backend's secret is read from.
    pub const CREDENTIALS: Field = Field::required(
        "credentials",
        "add `credentials: {env: VAR}` or `credentials: {file: PATH}`; never the secret itself",
    );

    /// `ca`: a CA file to trust besides the system's roots.
    pub const CA: Field = Field::optional(
        "ca",
        "a CA file (PEM, relative to the lab) to trust besides the system's roots",
    );

    /// `fingerprint`: the one certificate to trust.
    pub const FINGERPRINT: Field = Field::optional(
        "fingerprint",
        "the SHA-256 fingerprint of the endpoint's certificate (`AB:CD:...`), trusted instead of a CA",
    );
}

/// What a backend does beyond the basics of its domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Makes a VM by cloning a template (`machines.*.clone`).
    Clone,
    /// Hands a VM cloud-init settings (`machines.*.cloud_init`).
    CloudInit,
    /// Applies the platform's upstream release manifests (`cluster.platform`): the facade
    /// fetches, checks and adapts them into objects before planning. A backend without it
    /// is given each component as its pinned release.
    Releases,
    /// Exports the device's whole configuration as the device keeps it, and takes it back
    /// (`backup.router`): see [`crate::Provider::export_config`].
    ConfigBackup,
    /// Reports where it makes VMs, what that has and what every VM there takes
    /// (`doctor`'s capacity check against `hosts`): see [`crate::Provider::host_usage`].
    HostUsage,
    /// Its DHCP server names the network boot server (next-server, the BOOTP `siaddr`) on
    /// the segments machines install from (`pxe`): firmware and loaders that take their
    /// server only from the DHCP server's answer (Debian's GRUB network images) need it.
    BootServer,
}

impl Capability {
    /// The lab field that asks for it.
    pub fn field(self) -> &'static str {
        match self {
            Capability::Clone => "clone",
            Capability::CloudInit => "cloud_init",
            Capability::Releases => "platform",
            Capability::ConfigBackup => "backup",
            Capability::HostUsage => "hosts",
            Capability::BootServer => "pxe",
        }
    }
}

/// How a backend connects: builds its provider from the lab and its target.
pub type Connect =
    for<'a> fn(&'a Connection<'a>) -> BoxFuture<'a, Result<Arc<dyn Provider>, ConnectError>>;

/// One backend.
#[derive(Clone, Copy)]
pub struct Descriptor {
    /// The `kind` a target names it by (`vsphere`).
    pub kind: &'static str,
    /// The domains it serves.
    pub domains: &'static [Domain],
    /// One line about it, for listings and errors.
    pub summary: &'static str,
    /// The lab's own names for what it manages (`esxi` hosts for `vsphere`, `router.kind:
    /// pfsense` for `pfsense`): a target naming this backend must agree with them. Empty for
    /// a backend that renders anything (`local`).
    pub manages: &'static [&'static str],
    /// Every target field it reads besides `kind`; any other is an error.
    pub fields: &'static [Field],
    /// The forms its `endpoint` may take (`https://`, `wss://`, `qemu:///`).
    pub endpoint_schemes: &'static [&'static str],
    /// What it can do beyond its domain's basics.
    pub capabilities: &'static [Capability],
    /// How it connects.
    pub connect: Connect,
}

impl std::fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Descriptor")
            .field("kind", &self.kind)
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

impl Descriptor {
    /// The field called `name`, when the backend reads it.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether it can do `c`.
    pub fn can(&self, c: Capability) -> bool {
        self.capabilities.contains(&c)
    }

    /// Whether it serves `domain`.
    pub fn serves(&self, domain: Domain) -> bool {
        self.domains.contains(&domain)
    }
}

/// The backend named `kind`.
pub fn find(backends: &[&'static Descriptor], kind: &str) -> Option<&'static Descriptor> {
    backends.iter().copied().find(|d| d.kind == kind)
}

/// The `local` backend: renders every domain to files under the output directory (the boot
/// service serves what it renders for PXE).
pub static LOCAL: Descriptor = Descriptor {
    kind: "local",
    domains: &Domain::ALL,
    summary: "renders the domain to files under the output directory",
    manages: &[],
    fields: &[],
    endpoint_schemes: &[],
    capabilities: &[
        Capability::Clone,
        Capability::CloudInit,
        Capability::BootServer,
    ],
    connect: |c| {
        Box::pin(async move {
            Ok(Arc::new(LocalProvider::new(c.output_dir, c.lab.name.clone())) as Arc<dyn Provider>)
        })
    },
};

/// The `connect` of a backend whose crate was built without its `client` feature: the lab
/// language and the validator know the backend (its fields, its endpoint forms), but this
/// build cannot reach it.
pub fn not_built<'a>(
    c: &'a Connection<'a>,
) -> BoxFuture<'a, Result<Arc<dyn Provider>, ConnectError>> {
    let kind = c.kind().to_string();
    Box::pin(async move { Err(ConnectError::NotBuilt { kind }) })
}

/// What a backend's `connect` is given.
#[derive(Debug)]
pub struct Connection<'a> {
    /// The lab.
    pub lab: &'a Lab,
    /// The domain it is asked to serve.
    pub domain: Domain,
    /// Its target.
    pub target: &'a Target,
    /// The lab's directory: relative paths (CA files, credential files) are read from there.
    pub base_dir: &'a Path,
    /// Where the `local` backend writes.
    pub output_dir: &'a Path,
    /// The lab's state directory (its vault, the install state).
    pub state_dir: &'a Path,
    /// Whether cloudlet may take over objects it finds unmarked (`--take-over`).
    pub take_over: bool,
}

impl Connection<'_> {
    /// The kind named by the target.
    pub fn kind(&self) -> &str {
        self.target.kind.as_str()
    }

    /// The endpoint; validation has made sure a backend that needs one has one.
    pub fn endpoint(&self) -> Result<String, ConnectError> {
        self.target
            .endpoint
            .clone()
            .ok_or(ConnectError::Missing { field: "endpoint" })
    }

    /// A backend-specific setting (`datacenter`).
    pub fn setting(&self, name: &str) -> Option<String> {
        self.target.settings.get(name).cloned()
    }

    /// The web interface's credentials' text, when the target gives them.
    pub fn gui_credentials(&self) -> Result<Option<String>, ConnectError> {
        self.target
            .gui_credentials
            .as_ref()
            .map(|r| r.read(self.base_dir).map_err(ConnectError::Credentials))
            .transpose()
    }

    /// The target's CA file, relative to the lab.
    pub fn ca(&self) -> Option<PathBuf> {
        self.target.ca.as_ref().map(|c| self.base_dir.join(c))
    }

    /// The target's pinned certificate fingerprint.
    pub fn fingerprint(&self) -> Option<&str> {
        self.target.fingerprint.as_deref()
    }

    /// The target's `dir`, or `default`.
    pub fn dir_or(&self, default: &str) -> PathBuf {
        self.target
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(default))
    }

    /// The credentials' text (a file relative to the lab, or an environment variable).
    pub fn credentials(&self) -> Result<String, ConnectError> {
        self.target
            .credentials
            .as_ref()
            .ok_or(ConnectError::Missing {
                field: "credentials",
            })?
            .read(self.base_dir)
            .map_err(ConnectError::Credentials)
    }
}

/// A backend that cannot be connected; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The domain has no provider at all.
    #[error("no provider is configured for it")]
    NotConfigured,
    /// The target names a kind no backend of this build has, or one that does not serve the
    /// domain (validation reports both with their position first).
    #[error(
        "the `{kind}` backend is not available for this domain in this build of cloudlet; use `kind: local` to render it to files"
    )]
    Unknown {
        /// The kind named.
        kind: String,
    },
    /// The backend is known to this build of cloudlet (validation checks its targets) but
    /// its client is not part of it: the crate was built without its `client` feature.
    #[error(
        "this build of cloudlet validates `{kind}` targets but has no client for them: build cloudlet with its `backends` feature (the default)"
    )]
    NotBuilt {
        /// The kind named.
        kind: String,
    },
    /// A field the backend needs is missing.
    #[error("the target needs `{field}`")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// The credentials cannot be read.
    #[error("the credentials")]
    Credentials(#[source] SecretError),
    /// The credentials do not have the form the backend needs (their text is never shown).
    #[error("the {backend} credentials are not {expected}")]
    CredentialForm {
        /// The backend.
        backend: &'static str,
        /// The form needed.
        expected: &'static str,
    },
    /// The backend's client cannot be made (TLS settings, a kubeconfig).
    #[error("setting up the {backend} client")]
    Client {
        /// The backend.
        backend: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
