//! The TrueNAS backend: datasets, NFS shares and periodic snapshot tasks through TrueNAS's
//! JSON-RPC 2.0 WebSocket API.
//!
//! Ownership: a dataset is cloudlet's when its user property `org.cloudlet:lab` names the lab
//! (`org.cloudlet:id` holds the resource); a share's `comment` and a snapshot task's naming
//! schema start with `cloudlet-LAB-`. Nothing else is read or touched.
//!
//! A plan costs one query per collection (datasets, shares, tasks) plus the version. Values
//! are compared the TrueNAS way: only properties set locally on the dataset count (an
//! inherited or default value is not drift), and a property cloudlet set that the lab no
//! longer asks for is unset by writing `INHERIT`. A resource whose TrueNAS form equals what
//! the lab asks for is reported exactly as the lab wrote it, so TrueNAS's own spelling
//! (hosts versus networks, lifetimes in units) is not drift.
//!
//! Owner and mode are set by the `filesystem.setperm` job and recorded in user properties
//! after it succeeded. A job whose connection dropped keeps running on TrueNAS: the next apply
//! finds it (running or finished) and waits for it instead of starting it again.
//!
//! Version differences are detected, not guessed: snapshots are listed with
//! `pool.snapshot.query` from 25.10 on and `zfs.snapshot.query` before.

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
mod provider;
#[cfg(feature = "client")]
pub use client::{Client, Connect, RpcError, Stats};
#[cfg(feature = "client")]
pub use provider::*;

use cloudlet_core::Domain;
use cloudlet_core::backend::{Descriptor, Field};

/// The TrueNAS backend (JSON-RPC 2.0 over WebSocket).
pub static BACKEND: Descriptor = Descriptor {
    kind: "truenas",
    domains: &[Domain::Storage],
    summary: "TrueNAS SCALE / Community (JSON-RPC over WebSocket with an API key)",
    manages: &["truenas"],
    fields: &[
        Field::required(
            "endpoint",
            "add `endpoint: wss://NAS/api/current` (TLS is verified; add `ca:` for a self-signed certificate)",
        ),
        Field::required(
            "credentials",
            "add `credentials: {env: VAR}` or `{file: PATH}` naming where the API key is; never the key itself",
        ),
        Field::CA,
    ],
    endpoint_schemes: &["wss://"],
    capabilities: &[],
    connect: CONNECT,
};

#[cfg(feature = "client")]
const CONNECT: cloudlet_core::backend::Connect = provider::connect;
#[cfg(not(feature = "client"))]
const CONNECT: cloudlet_core::backend::Connect = cloudlet_core::backend::not_built;
