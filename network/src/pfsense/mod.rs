//! The pfSense backend, through the pfrest v2 package's REST API.
//!
//! pfSense has no official API; pfrest (the `pfSense-pkg-RESTAPI` package) is the one that
//! covers what a lab needs. Its quirks shape this provider:
//! - object ids are array indexes that shift when an entry before them is deleted: cloudlet
//!   keys its objects by a marker in `descr` (`cloudlet:LAB KIND/NAME`) and re-lists the
//!   collection before every PATCH or DELETE to find the current id;
//! - a PATCH replaces arrays wholesale: cloudlet always sends whole arrays; it never PUTs a
//!   plural endpoint (that would replace everything, the administrator's entries included);
//! - writes stay pending until applied: cloudlet applies each touched subsystem (firewall
//!   with NAT and aliases, DNS resolver, DHCP server) once at the end of an apply,
//!   synchronously, and checks that nothing is left pending; changes an interrupted apply
//!   left pending show up in the next plan (`router/uncommitted/SUBSYSTEM`) and are applied;
//! - the server fills in defaults: only the fields cloudlet writes are compared;
//! - one writer at a time: writes are serialized.
//!
//! Entries without cloudlet's marker are never changed or deleted. One that has the natural
//! key of a lab entry (a static mapping for the same MAC, an override for the same host) is
//! an error unless the apply is told to adopt it (`--take-over`), which then marks it.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub use client::*;

use cloudlet_core::Domain;
use cloudlet_core::backend::{Capability, Connect, Descriptor, Field};

/// The pfSense backend (the pfrest API package).
pub static BACKEND: Descriptor = Descriptor {
    kind: "pfsense",
    domains: &[Domain::Router],
    summary: "pfSense with the pfrest REST API package",
    manages: &["pfsense"],
    fields: &[
        Field::required(
            "endpoint",
            "add `endpoint: https://ROUTER` (TLS is verified; add `ca:` for a self-signed certificate)",
        ),
        Field::required(
            "credentials",
            "add `credentials: {env: VAR}` or `{file: PATH}` naming where the pfrest API key is; never the key itself",
        ),
        Field::needed_for(
            "gui_credentials",
            Capability::ConfigBackup,
            "for `backup.router`: `{env: VAR}` or `{file: PATH}` holding USER:PASSWORD of a web-interface user with only the `WebCfg - Diagnostics: Backup & Restore` privilege (pfrest cannot hand out config.xml)",
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
