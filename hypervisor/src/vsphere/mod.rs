//! The vSphere backend (vCenter, a standalone ESXi, or govmomi's simulator) through the VIM
//! SOAP API.
//!
//! - The lab's segments are distributed port groups on one distributed switch (the one named
//!   in the target, or the datacenter's only one), VLAN-tagged as the lab says. A segment
//!   whose port group is an existing standard one (or any segment without a distributed
//!   switch, on a standalone ESXi) uses it as it is: cloudlet checks it and never creates or
//!   deletes standard port groups.
//! - A VM or port group is cloudlet's when its annotation (description) has the line
//!   `cloudlet:lab=LAB`; others are never read into a plan, changed or deleted. The marker is
//!   part of the create call, so an apply killed right after a create finds its VM again.
//! - Only the devices the lab lists are managed: disk N is the disk whose file is
//!   `[DATASTORE] NAME/NAME-diskN.vmdk`, NIC N the one with the lab's MAC (set manually).
//!   Other devices are never edited or removed. Disks grow in place and never shrink.
//! - Every write is a task that is waited for; at most `concurrency` VM operations run at once.
//! - Deleting a VM destroys its disks: the plan marks it as data loss.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub mod vim;
#[cfg(feature = "client")]
pub use client::*;

use cloudlet_core::Domain;
use cloudlet_core::backend::{Capability, Connect, Descriptor, Field};

/// The vSphere backend: vCenter or a standalone ESXi through the VIM API.
pub static BACKEND: Descriptor = Descriptor {
    kind: "vsphere",
    domains: &[Domain::Hypervisor],
    summary: "VMware vCenter or ESXi (VIM SOAP API)",
    manages: &["esxi"],
    fields: &[
        Field::required(
            "endpoint",
            "add `endpoint: https://VCENTER` (TLS is verified; add `ca:` or `fingerprint:` for a self-signed certificate)",
        ),
        Field::CREDENTIALS,
        Field::CA,
        Field::FINGERPRINT,
        Field::optional("datacenter", "the datacenter (default: the only one)"),
        Field::optional(
            "datastore",
            "the datastore of disks that name none (default: the first)",
        ),
        Field::optional(
            "pool",
            "the cluster, host or resource pool VMs run in (default: the first cluster)",
        ),
        Field::optional(
            "switch",
            "the distributed switch of the lab's port groups (default: the only one)",
        ),
    ],
    endpoint_schemes: &["https://"],
    capabilities: &[Capability::HostUsage],
    connect: CONNECT,
};

#[cfg(feature = "client")]
const CONNECT: Connect = client::connect;
#[cfg(not(feature = "client"))]
const CONNECT: Connect = cloudlet_core::backend::not_built;
