//! A worker joins the way kubeadm joins it, on real components: kube-apiserver trusting the
//! cluster CA cloudlet made, kube-controller-manager signing and approving node certificates
//! with that CA, the RBAC kubeadm's bootstrap-token phase creates, a join token cloudlet
//! minted just before, and kubemark's hollow kubelet doing the real TLS bootstrap (a real
//! kubelet needs a container runtime, which cannot run here). The node registers with a
//! certificate that chains to cloudlet's CA, becomes Ready, and the token is revoked after.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::process::{Command, Stdio};
use std::time::Duration;

use cloudlet_cluster::bootstrap_token::{mint, outstanding, revoke};
use cloudlet_cluster::identity::Identity;
use cloudlet_testkit::apiserver::{ApiServer, peers};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::Api;

/// The bindings kubeadm's bootstrap-token phase makes: bootstrappers may ask for a node
/// client certificate and have it approved; nodes may renew their own.
async fn kubeadm_bootstrap_rbac(client: &kube::Client) {
    let group = "system:bootstrappers:kubeadm:default-node-token";
    for (name, role, subject) in [
        (
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            group,
        ),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            group,
        ),
        (
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:nodes",
        ),
    ] {
        let b: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": subject}],
        }))
        .unwrap();
        Api::<ClusterRoleBinding>::all(client.clone())
            .create(&Default::default(), &b)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hollow_worker_joins_with_a_just_in_time_token_and_a_certificate_from_cloudlets_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let identity = Identity::generate().unwrap();
    identity.write_pki(&pki).unwrap();
    // As kubeadm runs it: client certificates from the cluster CA, the Node authorizer.
    let mut server = ApiServer::start_with(&[
        format!("--client-ca-file={}", pki.join("ca.crt").display()),
        "--authorization-mode=Node,RBAC".into(),
    ]);
    server.start_controllers_with(
        &["csrapproving", "csrsigning"],
        &[
            format!(
                "--cluster-signing-cert-file={}",
                pki.join("ca.crt").display()
            ),
            format!(
                "--cluster-signing-key-file={}",
                pki.join("ca.key").display()
            ),
        ],
    );
    let admin = server.client().await;
    kubeadm_bootstrap_rbac(&admin).await;

    // The token, minted just before the join; the node's bootstrap kubeconfig holds it.
    let token = mint(&admin, "hollow-1", Duration::from_secs(15 * 60))
        .await
        .unwrap();
    let mut boot = kube::config::Kubeconfig::read_from(&server.kubeconfig).unwrap();
    boot.auth_infos[0].auth_info.as_mut().unwrap().token = Some(token.expose().into());
    let boot_path = dir.path().join("bootstrap.kubeconfig");
    std::fs::write(&boot_path, serde_json::to_string(&boot).unwrap()).unwrap();

    let certs = dir.path().join("node-certs");
    std::fs::create_dir_all(&certs).unwrap();
    let log = std::fs::File::create(dir.path().join("hollow.log")).unwrap();
    let mut node = Command::new(peers().join("kubemark"))
        .args([
            "--morph=kubelet",
            "--name=hollow-1",
            "--use-host-image-service=false",
        ])
        .arg(format!("--bootstrap-kubeconfig={}", boot_path.display()))
        .arg(format!(
            "--kubeconfig={}",
            dir.path().join("node.kubeconfig").display()
        ))
        .arg(format!("--cert-dir={}", certs.display()))
        .args(["--kubelet-port=0", "--kubelet-read-only-port=0"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("kubemark runs");

    // The node registers (generously waited for: a loaded machine is slow to start it).
    let nodes = Api::<Node>::all(admin.clone());
    let mut registered = None;
    for _ in 0..600 {
        // Registered and Ready: the hollow kubelet reports its status with its new identity.
        if let Ok(n) = nodes.get("hollow-1").await
            && n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        {
            registered = Some(n);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = node.kill();
    let _ = node.wait();
    let hollow_log = std::fs::read_to_string(dir.path().join("hollow.log")).unwrap_or_default();
    assert!(
        registered.is_some(),
        "the hollow node did not become Ready:\n{}",
        hollow_log
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Its client certificate came through a CSR the controller-manager approved and signed
    // with cloudlet's CA.
    let csrs = Api::<CertificateSigningRequest>::all(admin.clone())
        .list(&Default::default())
        .await
        .unwrap();
    let csr = csrs
        .items
        .iter()
        .find(|c| c.spec.username.as_deref() == Some(&format!("system:bootstrap:{}", token.id())))
        .expect("the node asked for its certificate with the join token");
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .expect("the certificate was issued");
    let crt = dir.path().join("node.crt");
    std::fs::write(&crt, &issued.0).unwrap();
    let v = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(pki.join("ca.crt"))
        .arg(&crt)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));

    // After the join the token goes.
    revoke(&admin, token.id()).await.unwrap();
    assert_eq!(outstanding(&admin).await.unwrap(), vec![]);
}
