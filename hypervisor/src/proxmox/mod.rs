//! The Proxmox VE backend through its REST API with an API token.
//!
//! - A VM is cloudlet's when its tags hold `cloudlet-LAB`; the tag is part of the create call,
//!   so an apply killed after a create finds its VM again. Other VMs are never changed or
//!   deleted, and tags someone else added stay.
//! - Only the devices the lab lists are managed, keyed by slot: disk N is `scsiN`, NIC N is
//!   `netN` (`virtio=MAC,bridge=BRIDGE,tag=VLAN`). Other keys of the configuration are never
//!   written or deleted. Disks grow with `resize`; Proxmox cannot shrink one.
//! - A lab segment is a bridge of the node (its `portgroup`, default the segment's name) that
//!   must exist: cloudlet tags NICs with the segment's VLAN and does not edit the host's
//!   network configuration.
//! - Configuration writes carry the `digest` they were computed from (a concurrent edit makes
//!   them fail instead of overwriting it) and are retried with backoff when the VM's lock is
//!   busy (`got timeout`); long operations return a UPID that is polled to its end.
//! - Reads take pending values (what the next start uses) as the configuration, so a change
//!   to a running VM that waits for its restart is not planned again.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub use client::*;

use cloudlet_core::Domain;
use cloudlet_core::backend::{Capability, Connect, Descriptor, Field};

/// The Proxmox VE backend.
pub static BACKEND: Descriptor = Descriptor {
    kind: "proxmox",
    domains: &[Domain::Hypervisor],
    summary: "Proxmox VE (REST API with an API token)",
    manages: &["proxmox"],
    fields: &[
        Field::required(
            "endpoint",
            "add `endpoint: https://PVE:8006` (TLS is verified; add `ca:` or `fingerprint:` for a self-signed certificate)",
        ),
        Field::required(
            "credentials",
            "add `credentials: {env: VAR}` or `{file: PATH}` naming where the API token USER@REALM!NAME=SECRET is; never the secret itself",
        ),
        Field::CA,
        Field::FINGERPRINT,
        Field::optional(
            "node",
            "the node VMs are made on (default: the only online one)",
        ),
        Field::optional(
            "datastore",
            "the storage of disks that name none (default: the first that holds VM disks)",
        ),
        Field::optional(
            "zone",
            "an SDN zone whose VNets the lab's segments become (default: none, segments are existing bridges)",
        ),
    ],
    endpoint_schemes: &["https://"],
    capabilities: &[
        Capability::Clone,
        Capability::CloudInit,
        Capability::HostUsage,
    ],
    connect: CONNECT,
};

#[cfg(feature = "client")]
const CONNECT: Connect = client::connect;
#[cfg(not(feature = "client"))]
const CONNECT: Connect = cloudlet_core::backend::not_built;
