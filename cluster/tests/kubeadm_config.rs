//! Every kubeadm configuration cloudlet renders passes `kubeadm config validate` of a real
//! kubeadm (built from the Kubernetes Go module by `scripts/kube-peers.sh`), and holds what the
//! bootstrap relies on: a discovery pin, a short token, no CA key.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;

use cloudlet_cluster::identity::Identity;
use cloudlet_cluster::kubeadm::{Token, init_config, join_config};

fn lab() -> cloudlet_core::Lab {
    cloudlet_testkit::seed::seed_lab_making_its_cluster()
}

/// `kubeadm config validate --config FILE`: `Ok` when it accepts, its output when not.
fn validate(kubeadm: &Path, text: &str, dir: &Path, name: &str) -> Result<(), String> {
    let f = dir.join(name);
    std::fs::write(&f, text).unwrap();
    let o = Command::new(kubeadm)
        .args(["config", "validate", "--config"])
        .arg(&f)
        .output()
        .expect("kubeadm runs");
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

#[test]
fn init_and_join_configurations_pass_kubeadms_own_validation() {
    let kubeadm = cloudlet_testkit::apiserver::peers().join("kubeadm");
    assert!(
        kubeadm.exists(),
        "kubeadm is built by scripts/kube-peers.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let lab = lab();
    let identity = Identity::generate().unwrap();
    let token = Token::generate().unwrap();
    let init = init_config(&lab, "k8s-master", &token).unwrap();
    validate(&kubeadm, &init, dir.path(), "init.yaml").unwrap_or_else(|e| panic!("{e}\n{init}"));
    assert!(
        init.contains("controlPlaneEndpoint: \"10.0.20.10:6443\""),
        "{init}"
    );
    assert!(
        init.contains("ttl: 15m0s") || init.contains("ttl: \"15m0s\""),
        "{init}"
    );
    assert!(init.contains("podSubnet: 10.244.0.0/16"), "{init}");
    for (node, control_plane) in [
        ("k8s-node1", false),
        ("k8s-node2", false),
        ("k8s-master", true),
    ] {
        let join = join_config(&lab, &identity, node, &token, control_plane).unwrap();
        validate(&kubeadm, &join, dir.path(), &format!("{node}.yaml"))
            .unwrap_or_else(|e| panic!("{node}: {e}\n{join}"));
        assert!(join.contains(&identity.ca.ca_cert_hash()), "{join}");
        assert!(!join.contains("unsafeSkipCAVerification"), "{join}");
        assert!(!join.contains("certificateKey"), "{join}");
        assert!(!join.contains("PRIVATE KEY"), "{join}");
        assert_eq!(join.contains("controlPlane"), control_plane, "{join}");
    }
    // The validation is kubeadm's and it refuses: a join without the CA pin is rejected.
    let join = join_config(&lab, &identity, "k8s-node1", &token, false).unwrap();
    let unpinned: String = join
        .lines()
        .filter(|l| !l.contains("caCertHashes"))
        .map(|l| format!("{l}\n"))
        .collect();
    let e = validate(&kubeadm, &unpinned, dir.path(), "unpinned.yaml").unwrap_err();
    assert!(
        e.contains("caCertHashes") || e.contains("unsafeSkipCAVerification"),
        "{e}"
    );
}

/// `openssl verify -CAfile ca cert` succeeds.
fn verifies(ca: &Path, cert: &Path) -> bool {
    Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(cert)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn kubeadm_keeps_cloudlets_cas_and_signs_the_control_planes_certificates_with_them() {
    let kubeadm = cloudlet_testkit::apiserver::peers().join("kubeadm");
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let identity = Identity::generate().unwrap();
    identity.write_pki(&pki).unwrap();
    let init = init_config(&lab(), "k8s-master", &Token::generate().unwrap())
        .unwrap()
        .replace("/etc/kubernetes/pki", &pki.display().to_string());
    let cfg = dir.path().join("init.yaml");
    std::fs::write(&cfg, &init).unwrap();
    // kubeadm's own certificate phase, as `kubeadm init` runs it.
    let o = Command::new(&kubeadm)
        .args(["init", "phase", "certs", "all", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // The CAs and the service-account key are still cloudlet's.
    assert_eq!(
        std::fs::read_to_string(pki.join("ca.crt")).unwrap(),
        identity.ca.cert
    );
    assert_eq!(
        std::fs::read_to_string(pki.join("sa.key")).unwrap(),
        identity.service_account.private_pem()
    );
    // What kubeadm issued chains to them.
    for (ca, cert) in [
        ("ca.crt", "apiserver.crt"),
        ("ca.crt", "apiserver-kubelet-client.crt"),
        ("front-proxy-ca.crt", "front-proxy-client.crt"),
        ("etcd/ca.crt", "etcd/server.crt"),
        ("etcd/ca.crt", "etcd/peer.crt"),
        ("etcd/ca.crt", "apiserver-etcd-client.crt"),
    ] {
        assert!(verifies(&pki.join(ca), &pki.join(cert)), "{cert} by {ca}");
    }
    // ... and not to another CA.
    let other = Identity::generate().unwrap();
    let other_ca = dir.path().join("other-ca.crt");
    std::fs::write(&other_ca, &other.ca.cert).unwrap();
    assert!(!verifies(&other_ca, &pki.join("apiserver.crt")));
    // The API server's certificate names the endpoint every node dials.
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(pki.join("apiserver.crt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("IP Address:10.0.20.10"), "{text}");
}
