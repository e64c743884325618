//! The Kubernetes provider: server-side apply through kube-rs.
//!
//! - What cloudlet manages is found by kubectl's ApplySet convention: a parent Secret
//!   labelled `applyset.kubernetes.io/id`, listing the group-kinds and namespaces of its
//!   members, and every member labelled `applyset.kubernetes.io/part-of`. Observation is one
//!   LIST per group-kind with that label selector; objects without the label are never seen,
//!   changed or pruned, and a create that finds an unlabelled object of the same name refuses.
//! - An object's observed body is the live object cut down to the fields cloudlet's field
//!   manager owns (`managedFields`), so defaults the server fills in and fields other
//!   controllers write are not drift. Fields another manager took over (an image updater)
//!   are reported as held, and the next apply leaves them alone unless `take_over` is set.
//! - Where a projection still differs from the lab, the provider asks the server what an
//!   apply would produce (`dryRun=All`): if that equals the live object, the difference is
//!   admission's normalization, not drift.
//! - Writes are server-side applies with one field manager; 429/503/504 and dropped
//!   connections are retried with backoff; the engine bounds how many run at once.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub use client::*;

use cloudlet_core::Domain;
use cloudlet_core::backend::{Connect, Descriptor, Field};

/// The Kubernetes backend: an API server a kubeconfig reaches.
pub static BACKEND: Descriptor = Descriptor {
    kind: "kubernetes",
    domains: &[Domain::Cluster],
    summary: "a Kubernetes API server (server-side apply, ApplySet pruning)",
    manages: &[],
    fields: &[Field::optional(
        "credentials",
        "the kubeconfig: `{file: PATH}` (relative to the lab) or `{env: VAR}` naming a variable that holds its path; without it $KUBECONFIG, ~/.kube/config or the in-cluster account",
    )],
    endpoint_schemes: &[],
    capabilities: &[cloudlet_core::backend::Capability::Releases],
    connect: CONNECT,
};

#[cfg(feature = "client")]
const CONNECT: Connect = client::connect;
#[cfg(not(feature = "client"))]
const CONNECT: Connect = cloudlet_core::backend::not_built;
