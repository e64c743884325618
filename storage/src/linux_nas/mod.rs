//! The Linux NAS backends: datasets are directories, exports are served by nfs-ganesha (EXPORT
//! blocks in a file of cloudlet's own that the main `ganesha.conf` `%include`s, reloaded with
//! SIGHUP) or by the kernel NFS server (a file under `/etc/exports.d/` plus `exportfs -ra`).
//!
//! cloudlet's file is also its record: each export block or line is preceded by a
//! `# cloudlet:resource` line holding the resource it came from, and each directory cloudlet
//! made has such a line too, so observing reads the NAS (the file, and the directories' owner
//! and mode), not a state file. Exports and directories cloudlet did not make are never read or
//! touched.
//!
//! Directories are made (and their owner and mode set) by the steps themselves; exports are
//! committed once per apply in [`Provider::finish`](cloudlet_core::Provider::finish): the new file replaces the old one (kept as
//! `.prev`), the server reloads, and when the reload fails or the server is gone afterwards
//! the previous file is put back and reloaded. A directory is deleted only when its resource
//! is [`Data::Disposable`](cloudlet_core::Data::Disposable) and the engine let the apply lose data.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub use client::*;

use cloudlet_core::Domain;
use cloudlet_core::backend::{Connect, Descriptor, Field};

const DIR_HELP: &str = "the directory of cloudlet's exports file (default /etc/ganesha for nfs-ganesha, /etc/exports.d for the kernel server); the backend runs on the NAS cloudlet runs on, so it takes no `endpoint`: run cloudlet on the NAS";

/// The nfs-ganesha backend, on the machine cloudlet runs on.
pub static GANESHA: Descriptor = Descriptor {
    kind: "ganesha",
    domains: &[Domain::Storage],
    summary: "nfs-ganesha on this machine (EXPORT blocks reloaded in place)",
    manages: &["ganesha"],
    fields: &[
        Field::optional("dir", DIR_HELP),
        Field::optional(
            "pid_file",
            "ganesha's pid file, which the reload signal goes to (default /run/ganesha/ganesha.pid, Debian's; give the path the NAS's ganesha service writes)",
        ),
    ],
    endpoint_schemes: &[],
    capabilities: &[],
    connect: CONNECT_GANESHA,
};

/// The kernel NFS server backend, on the machine cloudlet runs on.
pub static KERNEL_NFS: Descriptor = Descriptor {
    kind: "linux_nfs",
    domains: &[Domain::Storage],
    summary: "the kernel NFS server on this machine (an exports file plus `exportfs -ra`)",
    manages: &["linux_nfs"],
    fields: &[Field::optional("dir", DIR_HELP)],
    endpoint_schemes: &[],
    capabilities: &[],
    connect: CONNECT_KERNEL,
};

#[cfg(feature = "client")]
const CONNECT_GANESHA: Connect = client::connect_ganesha;
#[cfg(not(feature = "client"))]
const CONNECT_GANESHA: Connect = cloudlet_core::backend::not_built;
#[cfg(feature = "client")]
const CONNECT_KERNEL: Connect = client::connect_kernel;
#[cfg(not(feature = "client"))]
const CONNECT_KERNEL: Connect = cloudlet_core::backend::not_built;
