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
//! - [`s3`]: an S3-compatible store (gofakes3 behind a Signature V4 check) and a proxy that
//!   cuts a target off mid-transfer, for the backup targets.
//! - [`container`]: a pod's container run as a kubelet would (chroot, claims bound from
//!   directories) and a Job's outcome written through the API, where no kubelet runs.
//! - [`drill`]: the disaster-recovery drill on the hollow tier (machines, lab, canaries).
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
pub mod container;
pub mod drill;
pub mod engine;
pub mod hollow;
pub mod hostile;
pub mod https;
pub mod hypervisor_peers;
pub mod mariadb;
pub mod opnsense_fake;
pub mod pfsense_fake;
pub mod platform;
pub mod postgres;
pub mod s3;
pub mod seed;
pub mod sftp;
pub mod shell;
pub mod truenas_fake;

/// Every regular file under `dir` by its relative path, with its content.
pub fn files_of(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The workspace's root (where `scripts/` is).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("scripts").is_dir() && p.join("Cargo.lock").is_file())
        .expect("the workspace root")
        .to_path_buf()
}

/// The binary a peer script (`scripts/NAME.sh`) builds once into the cache and names.
pub fn peer_binary(script: &str) -> std::path::PathBuf {
    let o = std::process::Command::new("bash")
        .arg(workspace_root().join("scripts").join(script))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("bash runs");
    assert!(o.status.success(), "scripts/{script} failed");
    std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}
