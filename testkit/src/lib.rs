//! What cloudlet's tests and benchmarks share (dev-only, never published): the real peers
//! they run against and the stateful fakes of what cannot run here, named fakes.
//!
//! - [`apiserver`]: etcd + kube-apiserver (envtest's way), for the cluster domain.
//! - [`hypervisor_peers`]: vcsim and fakepve on loopback with a certificate made here.
//! - [`boot`]: a network-boot segment in network namespaces (bridge, tap for QEMU, udhcpd,
//!   radvd) and boot services run inside it.
//! - [`pfsense_fake`], [`opnsense_fake`], [`truenas_fake`]: FAKES of appliances that cannot
//!   run here, reproducing their documented quirks; [`https`] is the TLS server they share.
//! - [`hollow`]: hollow cluster nodes (network and mount namespaces, sshd, static pods as
//!   processes, kubemark's kubelet) for the bootstrap.
//! - [`hostile`]: misbehaving HTTP and TFTP clients and a memory probe.
//! - [`platform`]: STAND-IN release manifests in upstream's shape, the HTTP server that
//!   hosts them, an allowing admission webhook and FAKE ROLLOUTS (status written through the
//!   API where no kubelet runs).
//! - [`seed`]: the seed lab, edited and validated; [`engine`]: an engine over one provider and
//!   a plan's steps as text.
//!
//! A missing peer fails the test that needs it, never skips it.
#![allow(missing_docs, clippy::disallowed_methods)]

pub mod apiserver;
pub mod boot;
pub mod engine;
pub mod hollow;
pub mod hostile;
pub mod https;
pub mod hypervisor_peers;
pub mod opnsense_fake;
pub mod pfsense_fake;
pub mod platform;
pub mod seed;
pub mod truenas_fake;
