//! The live Linux router backend: dnsmasq for DHCP reservations and DNS, an nftables table
//! for port forwards and forward filtering, on the machine (or in the network namespace) the
//! commands run in.
//!
//! cloudlet owns four files in its directory: `dnsmasq.conf` (the lab's networks, plus
//! `dhcp-hostsfile=` and `addn-hosts=` pointing at the next two), `dhcp-hosts`, `hosts` and
//! `rules.nft` (table `inet cloudlet`, replaced atomically). Each entry is preceded by a
//! `# cloudlet:resource` line holding the resource it came from, so observing the router
//! reads the files, not a state file; dnsmasq configuration elsewhere on the router is never
//! read or touched.
//!
//! Steps only change the pending set; [`Provider::finish`](cloudlet_core::Provider::finish) commits once per apply: render,
//! check with the tools themselves (`dnsmasq --test`, `nft -c`), keep the live files as
//! `.prev`, move the new ones in, reload (SIGHUP when only reservations and records changed,
//! a restart when the base configuration did, `nft -f` for the table), then verify that
//! dnsmasq runs and the table is loaded — and on any failure put the previous files back
//! and reload them, so a change that breaks the router undoes itself.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub use client::*;

use cloudlet_core::Domain;
use cloudlet_core::backend::{Capability, Connect, Descriptor, Field};

/// The Linux router backend: dnsmasq and nftables on the machine cloudlet runs on.
pub static BACKEND: Descriptor = Descriptor {
    kind: "linux",
    domains: &[Domain::Router],
    summary: "a Linux router (dnsmasq + nftables) on this machine",
    manages: &["linux"],
    fields: &[
        Field::optional(
            "dir",
            "the directory cloudlet keeps the router's files in (default /etc/cloudlet); the backend runs on the machine cloudlet runs on, so it takes no `endpoint`: run cloudlet on the router",
        ),
        Field::optional(
            "leases",
            "the file dnsmasq keeps its DHCP leases in (default /var/lib/misc/cloudlet.leases)",
        ),
    ],
    endpoint_schemes: &[],
    capabilities: &[Capability::BootServer, Capability::ConfigBackup],
    connect: CONNECT,
};

#[cfg(feature = "client")]
const CONNECT: Connect = client::connect;
#[cfg(not(feature = "client"))]
const CONNECT: Connect = cloudlet_core::backend::not_built;
