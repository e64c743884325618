//! The cluster identity checked by openssl: three CAs that are CAs, keys that match their
//! certificates, the discovery pin computed the way kubeadm's documentation computes it, and
//! an identity made once and kept only encrypted in the vault.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;

use cloudlet_cluster::identity::{Identity, VAULT_ENTRY};
use cloudlet_core::vault::{Vault, new_key};

fn openssl(args: &[&str], dir: &Path) -> String {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

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
