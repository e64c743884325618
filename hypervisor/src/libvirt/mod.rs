//! The libvirt backend: the lab's segments as libvirt networks and its machines as domains,
//! through `virsh` on this machine or over SSH (`Host`).
//!
//! - Networks are `cloudlet-LAB-NET`: isolated bridges (no libvirt DHCP or NAT: the lab's
//!   router serves the segment). Only networks with that prefix are read or touched.
//! - A domain is cloudlet's when its `<metadata>` holds `<cloudlet:vm lab="LAB">`; others are
//!   never read into a plan, changed or deleted.
//! - Only the devices the lab lists are managed, keyed by slot: disk N is `vdX` (its image
//!   `IMAGES/NAME-diskN.qcow2`), NIC N is the interface with its MAC. A redefinition carries
//!   every other device of the current definition over untouched.
//! - Destructive changes are never done implicitly: a disk grows with `qemu-img resize`; the
//!   plan marks a shrink as data loss, and only an apply allowed to lose data shrinks it (of a
//!   stopped VM). Deleting a domain keeps its disk images.
//! - Reads normalize what libvirt fills in (KiB, its controllers, addresses, machine type), and
//!   a domain that holds what the lab asks for is reported exactly as the lab wrote it.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub use client::*;

use cloudlet_core::Domain;
use cloudlet_core::backend::{Capability, Connect, Descriptor, Field};

/// The libvirt backend: QEMU/KVM on the machine cloudlet runs on.
pub static BACKEND: Descriptor = Descriptor {
    kind: "libvirt",
    domains: &[Domain::Hypervisor],
    summary: "libvirt (QEMU/KVM) on this machine",
    manages: &["libvirt"],
    fields: &[
        Field::optional(
            "endpoint",
            "the local libvirt URI (default `qemu:///system`); disk images are made with qemu-img here, so a remote libvirt is not available: run cloudlet on the KVM host",
        ),
        Field::optional(
            "dir",
            "the directory of the VMs' disk images (default /var/lib/libvirt/images)",
        ),
    ],
    endpoint_schemes: &["qemu:///"],
    capabilities: &[Capability::HostUsage],
    connect: CONNECT,
};

#[cfg(feature = "client")]
const CONNECT: Connect = client::connect;
#[cfg(not(feature = "client"))]
const CONNECT: Connect = cloudlet_core::backend::not_built;
