//! The `kubeadm` backend: the cluster cloudlet makes. Its nodes are resources of the plan
//! (`bootstrap`: init once, joins, rejoins over SSH); once the API answers, the lab's
//! Kubernetes objects go to it as the `kubernetes` backend applies them, with an admin client
//! certificate issued from the cluster CA for the run (never written anywhere).
//!
//! What it reads: the install user's SSH key (`credentials`), the nodes' host keys as their
//! installs reported them (`STATE/known_hosts`, kept by the facade from the install state, or
//! `known_hosts` relative to the lab for machines installed otherwise), and the cluster's
//! identity from the lab's vault (`STATE/vault`, its key from `$CLOUDLET_VAULT_KEY` or the file
//! `$CLOUDLET_VAULT_KEY_FILE` names), made there on first use.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub use client::*;

use cloudlet_core::Domain;
use cloudlet_core::backend::{Connect, Descriptor, Field};

/// The `kubeadm` backend.
pub static BACKEND: Descriptor = Descriptor {
    kind: "kubeadm",
    domains: &[Domain::Cluster],
    summary: "the cluster cloudlet makes on the lab's machines (kubeadm over SSH from `cluster.kubernetes`), then its objects as `kubernetes` applies them",
    manages: &[],
    fields: &[
        Field::required(
            "credentials",
            "the install user's SSH private key: `{file: PATH}` (relative to the lab) or `{env: VAR}` naming a variable that holds its path",
        ),
        Field::optional(
            "user",
            "the install user (default `root`; another user needs sudo without a password)",
        ),
        Field::optional("port", "the nodes' SSH port (default 22)"),
        Field::optional(
            "ignore_preflight_errors",
            "kubeadm preflight checks that warn instead of stopping, comma-separated (`NumCPU,Mem` for small VMs)",
        ),
        Field::optional(
            "known_hosts",
            "a known_hosts file for machines installed without cloudlet (relative to the lab); by default the host keys their installs reported",
        ),
    ],
    endpoint_schemes: &[],
    capabilities: &[cloudlet_core::backend::Capability::Releases],
    connect: CONNECT,
};

#[cfg(feature = "client")]
const CONNECT: Connect = client::connect;
#[cfg(not(feature = "client"))]
const CONNECT: Connect = cloudlet_core::backend::not_built;
