//! The cluster identity checked by openssl: three CAs that are CAs, keys that match their
//! certificates, the discovery pin computed the way kubeadm's documentation computes it, and
//! an identity made once and kept only encrypted in the vault.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cloudlet_cluster::identity::{Identity, VAULT_ENTRY};
use cloudlet_core::vault::{Vault, new_key};

use cloudlet_testkit::https::openssl;

/// `openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256`, as the
/// kubeadm join documentation computes `--discovery-token-ca-cert-hash`.
fn pin(cert: &Path, dir: &Path) -> String {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex | sed 's/^.* //'",
            cert.display()
        ))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success());
    format!("sha256:{}", String::from_utf8_lossy(&o.stdout).trim())
}

#[test]
fn the_cas_are_cas_their_keys_match_and_the_pin_is_kubeadms() {
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::generate().unwrap();
    for (name, ca, cn) in [
        ("ca", &id.ca, "kubernetes"),
        ("front-proxy-ca", &id.front_proxy_ca, "front-proxy-ca"),
        ("etcd-ca", &id.etcd_ca, "etcd-ca"),
    ] {
        let crt = dir.path().join(format!("{name}.crt"));
        let key = dir.path().join(format!("{name}.key"));
        std::fs::write(&crt, &ca.cert).unwrap();
        std::fs::write(&key, ca.key_pem()).unwrap();
        let text = openssl(
            &["x509", "-noout", "-text", "-in", &crt.to_string_lossy()],
            dir.path(),
        );
        assert!(text.contains("CA:TRUE"), "{text}");
        assert!(text.contains("Certificate Sign"), "{text}");
        assert!(
            text.contains(&format!("Subject: CN={cn}"))
                || text.contains(&format!("Subject: CN = {cn}")),
            "{text}"
        );
        assert!(
            text.contains("prime256v1") || text.contains("P-256"),
            "{text}"
        );
        // Self-signed and valid now.
        let v = openssl(
            &[
                "verify",
                "-CAfile",
                &crt.to_string_lossy(),
                &crt.to_string_lossy(),
            ],
            dir.path(),
        );
        assert!(v.contains("OK"), "{v}");
        // The key is the certificate's.
        let from_key = openssl(
            &["pkey", "-in", &key.to_string_lossy(), "-pubout"],
            dir.path(),
        );
        let from_cert = openssl(
            &["x509", "-noout", "-pubkey", "-in", &crt.to_string_lossy()],
            dir.path(),
        );
        assert_eq!(from_key, from_cert, "{name}");
        assert_eq!(ca.ca_cert_hash(), pin(&crt, dir.path()), "{name}");
    }
    // The service-account pair is a pair.
    let sa_key = dir.path().join("sa.key");
    std::fs::write(&sa_key, id.service_account.private_pem()).unwrap();
    let public = openssl(
        &["pkey", "-in", &sa_key.to_string_lossy(), "-pubout"],
        dir.path(),
    );
    assert_eq!(public, id.service_account.public);
    // Debug output never shows a private key.
    let debug = format!("{id:?}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
}

#[test]
fn the_identity_is_made_once_and_kept_only_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key();
    let vault = Vault::open(dir.path().join("vault"), &key).unwrap();
    let (first, made) = Identity::load_or_make(&vault).unwrap();
    assert!(made);
    let (again, made) =
        Identity::load_or_make(&Vault::open(dir.path().join("vault"), &key).unwrap()).unwrap();
    assert!(!made);
    assert_eq!(first, again);
    assert_eq!(vault.names().unwrap(), vec![VAULT_ENTRY.to_string()]);
    // No file under the state directory holds a key or a certificate in the clear.
    for e in walk(dir.path()) {
        let bytes = std::fs::read(&e).unwrap();
        assert!(
            !bytes.windows(10).any(|w| w == b"-----BEGIN"),
            "{} holds PEM in the clear",
            e.display()
        );
    }
}

fn walk(d: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A client from `kubeconfig`, pointed at the test server: the kubeconfig names the lab's
/// endpoint, so its cluster entry (address and CA, verification on) is the test server's.
async fn client(server: &cloudlet_testkit::apiserver::ApiServer, kubeconfig: &str) -> kube::Client {
    let mut kc = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let theirs = kube::config::Kubeconfig::read_from(&server.kubeconfig).unwrap();
    kc.clusters[0].cluster = theirs.clusters[0].cluster.clone();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_kubeconfig_from_the_identity_is_admin_on_a_real_api_server() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::generate().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &id.ca.cert).unwrap();
    let server = cloudlet_testkit::apiserver::ApiServer::start_with(&[format!(
        "--client-ca-file={}",
        ca.display()
    )]);
    // What kubeadm init makes: the admin group bound to cluster-admin.
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kubeadm:cluster-admins"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": cloudlet_cluster::identity::ADMIN_GROUP}],
    }))
    .unwrap();
    kube::Api::<ClusterRoleBinding>::all(server.client().await)
        .create(&Default::default(), &binding)
        .await
        .unwrap();
    let kc = id
        .admin_kubeconfig(
            "seed",
            "https://10.0.20.10:6443",
            "alice",
            Duration::from_secs(3600),
        )
        .unwrap();
    assert_eq!(format!("{kc:?}"), "Kubeconfig(<redacted>)");
    assert!(kc.expose().contains("server: https://10.0.20.10:6443"));
    let admin = client(&server, kc.expose()).await;
    let listed = kube::Api::<Namespace>::all(admin)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        listed
            .items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("default"))
    );
    // A certificate from another cluster's CA is not accepted.
    let stranger = Identity::generate()
        .unwrap()
        .admin_kubeconfig(
            "seed",
            "https://10.0.20.10:6443",
            "mallory",
            Duration::from_secs(3600),
        )
        .unwrap();
    let e = kube::Api::<Namespace>::all(client(&server, stranger.expose()).await)
        .list(&Default::default())
        .await
        .unwrap_err();
    assert!(matches!(e, kube::Error::Api(ref s) if s.code == 401), "{e}");
}
