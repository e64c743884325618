//! The OPNsense backend, through OPNsense's own API.
//!
//! - Auth: an API key and secret (HTTP Basic), over HTTPS only.
//! - Identity: cloudlet's objects carry `cloudlet:LAB KIND/NAME` in their description and are
//!   addressed by the UUID OPNsense gives them (stable, unlike pfSense's indexes).
//! - DHCP reservations go to whichever DHCP server the box runs: Kea (a reservation in the
//!   subnet holding the address) or dnsmasq (a host entry); ISC dhcpd has no API.
//! - Each touched module is applied once at the end (`service/reconfigure`; aliases
//!   `reconfigure`). Filter rules and destination NAT go through a savepoint: `savepoint` →
//!   `apply/REVISION` → check that cloudlet still reaches the router → `cancelRollback`. A
//!   change that cuts cloudlet off is not confirmed, and OPNsense reverts it by itself
//!   (after 60 s on a real box).
//! - Entries without the marker are never changed or deleted.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub use client::*;

use cloudlet_core::Domain;
use cloudlet_core::backend::{Capability, Connect, Descriptor, Field};

/// The OPNsense backend.
pub static BACKEND: Descriptor = Descriptor {
    kind: "opnsense",
    domains: &[Domain::Router],
    summary: "OPNsense (its REST API with a key and secret)",
    manages: &["opnsense"],
    fields: &[
        Field::required(
            "endpoint",
            "add `endpoint: https://ROUTER` (TLS is verified; add `ca:` for a self-signed certificate)",
        ),
        Field::required(
            "credentials",
            "add `credentials: {file: apikey.txt}` (the key file OPNsense gives, `key=`/`secret=` lines) or `{env: VAR}` holding KEY:SECRET",
        ),
        Field::CA,
    ],
    endpoint_schemes: &["https://"],
    capabilities: &[Capability::ConfigBackup],
    connect: CONNECT,
};

#[cfg(feature = "client")]
const CONNECT: Connect = client::connect;
#[cfg(not(feature = "client"))]
const CONNECT: Connect = cloudlet_core::backend::not_built;
