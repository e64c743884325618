//! The cluster's identity, made before any machine boots (as Cluster API and `talosctl gen
//! secrets` do): the cluster CA, the front-proxy CA, the etcd CA and the service-account key
//! pair, ECDSA P-256 (kubeadm's `encryptionAlgorithm: ECDSA-P256`). kubeadm keeps a CA it
//! finds in `/etc/kubernetes/pki`, so every node's certificates chain to these; joins pin the
//! cluster CA by [`CertKey::ca_cert_hash`] (never `unsafeSkipCAVerification`). The private keys
//! live only in the lab's [`Vault`]; `Debug` never shows them.

use cloudlet_core::vault::{Vault, VaultError};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use sha2::{Digest, Sha256};

/// The vault entry holding the identity.
pub const VAULT_ENTRY: &str = "kubernetes-identity";

/// What the CAs' keys may do.
const CA_USAGES: &[KeyUsagePurpose] = &[
    KeyUsagePurpose::DigitalSignature,
    KeyUsagePurpose::KeyEncipherment,
    KeyUsagePurpose::KeyCertSign,
];

/// How long the CAs are valid (kubeadm's default for its CAs).
const CA_YEARS: i64 = 10;

/// An identity that cannot be made, read or kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A key or certificate could not be made.
    #[error("making the {what}")]
    Make {
        /// Which one.
        what: &'static str,
        /// What rcgen said.
        #[source]
        source: rcgen::Error,
    },
    /// The vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The vault's entry is not an identity this build reads.
    #[error("the vault's `{VAULT_ENTRY}` entry is not a cluster identity")]
    Damaged(#[source] serde_json::Error),
}

/// A CA: its certificate (public) and its private key.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertKey {
    /// The certificate, PEM.
    pub cert: String,
    /// The private key, PEM (PKCS#8).
    key: String,
    /// The SHA-256 of the certificate's SubjectPublicKeyInfo, hex.
    spki_sha256: String,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("spki_sha256", &self.spki_sha256)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl CertKey {
    /// The private key, PEM: only for writing it to the node that needs it.
    pub fn key_pem(&self) -> &str {
        &self.key
    }

    /// The discovery pin of this CA: `sha256:<hex of the SHA-256 of its
    /// SubjectPublicKeyInfo>` (kubeadm's `caCertHashes`).
    pub fn ca_cert_hash(&self) -> String {
        format!("sha256:{}", self.spki_sha256)
    }
}

/// The service-account signing key pair.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyPairPem {
    /// The public key, PEM (`sa.pub`).
    pub public: String,
    /// The private key, PEM (`sa.key`).
    private: String,
}

impl std::fmt::Debug for KeyPairPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPairPem")
            .field("private", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl KeyPairPem {
    /// The private key, PEM: only for writing it to a control plane.
    pub fn private_pem(&self) -> &str {
        &self.private
    }
}

/// The cluster's identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// The format of this record.
    pub format: u32,
    /// The cluster CA (`ca.crt`, `ca.key`).
    pub ca: CertKey,
    /// The front-proxy CA (`front-proxy-ca.crt`, `.key`).
    pub front_proxy_ca: CertKey,
    /// The etcd CA (`etcd/ca.crt`, `.key`).
    pub etcd_ca: CertKey,
    /// The service-account key pair (`sa.pub`, `sa.key`).
    pub service_account: KeyPairPem,
}

fn make_ca(common_name: &str, what: &'static str) -> Result<CertKey, IdentityError> {
    let made = |source| IdentityError::Make { what, source };
    let key = KeyPair::generate().map_err(made)?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(made)?;
    p.distinguished_name
        .push(DnType::CommonName, common_name.to_string());
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = CA_USAGES.to_vec();
    let now = time::OffsetDateTime::now_utc();
    // A little in the past, for nodes whose clocks lag behind this machine's.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(365 * CA_YEARS);
    let cert = p.self_signed(&key).map_err(made)?;
    Ok(CertKey {
        cert: cert.pem(),
        key: key.serialize_pem(),
        spki_sha256: hex(&Sha256::digest(key.subject_public_key_info())),
    })
}

/// The group of admin users: kubeadm binds it to `cluster-admin` (so access can be revoked,
/// unlike `system:masters`).
pub const ADMIN_GROUP: &str = "kubeadm:cluster-admins";

impl CertKey {
    /// A client certificate of this CA (named `ca_name`) for `common_name` in
    /// `organization`, valid for `valid` from a little before now; its PEM and its key.
    fn client_cert(
        &self,
        ca_name: &str,
        common_name: &str,
        organization: Option<&str>,
        valid: std::time::Duration,
        what: &'static str,
    ) -> Result<(String, KeyPair), IdentityError> {
        let made = |source| IdentityError::Make { what, source };
        let issuer = self.issuer(ca_name)?;
        let key = KeyPair::generate().map_err(made)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(made)?;
        p.distinguished_name
            .push(DnType::CommonName, common_name.to_string());
        if let Some(o) = organization {
            p.distinguished_name
                .push(DnType::OrganizationName, o.to_string());
        }
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = now + time::Duration::try_from(valid).unwrap_or(time::Duration::hours(1));
        let cert = p.signed_by(&key, &issuer).map_err(made)?;
        Ok((cert.pem(), key))
    }

    /// The CA as an issuer of certificates (its key, and its name `common_name`).
    fn issuer(&self, common_name: &str) -> Result<rcgen::Issuer<'static, KeyPair>, IdentityError> {
        let made = |source| IdentityError::Make {
            what: "CA issuer",
            source,
        };
        let key = KeyPair::from_pem(&self.key).map_err(made)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(made)?;
        p.distinguished_name
            .push(DnType::CommonName, common_name.to_string());
        p.key_usages = CA_USAGES.to_vec();
        Ok(rcgen::Issuer::new(p, key))
    }
}

/// A kubeconfig with a client certificate: its text holds a private key, so it is written
/// where only its user reads it, never logged.
pub struct Kubeconfig(String);

impl std::fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kubeconfig(<redacted>)")
    }
}

impl Kubeconfig {
    /// The text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A private key's PEM: never logged, written nowhere.
pub struct PrivateKeyPem(String);

impl std::fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

impl PrivateKeyPem {
    /// The text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Identity {
    /// A new identity.
    pub fn generate() -> Result<Identity, IdentityError> {
        let sa = KeyPair::generate().map_err(|source| IdentityError::Make {
            what: "service-account key",
            source,
        })?;
        Ok(Identity {
            format: 1,
            ca: make_ca("kubernetes", "cluster CA")?,
            front_proxy_ca: make_ca("front-proxy-ca", "front-proxy CA")?,
            etcd_ca: make_ca("etcd-ca", "etcd CA")?,
            service_account: KeyPairPem {
                public: sa.public_key_pem(),
                private: sa.serialize_pem(),
            },
        })
    }

    /// Writes the identity as kubeadm's `certificatesDir` holds it (`ca.crt`/`ca.key`,
    /// `front-proxy-ca.*`, `etcd/ca.*`, `sa.key`/`sa.pub`; keys readable by the owner only),
    /// so kubeadm keeps these CAs instead of making its own. For a control plane only.
    pub fn write_pki(&self, dir: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(dir.join("etcd"))?;
        let write = |name: &str, text: &str, private: bool| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(if private { 0o600 } else { 0o644 })
                .open(dir.join(name))?;
            f.write_all(text.as_bytes())
        };
        for (stem, ca) in [
            ("ca", &self.ca),
            ("front-proxy-ca", &self.front_proxy_ca),
            ("etcd/ca", &self.etcd_ca),
        ] {
            write(&format!("{stem}.crt"), &ca.cert, false)?;
            write(&format!("{stem}.key"), ca.key_pem(), true)?;
        }
        write("sa.pub", &self.service_account.public, false)?;
        write("sa.key", self.service_account.private_pem(), true)
    }

    /// An admin kubeconfig for `user` (group [`ADMIN_GROUP`]) on the API server at
    /// `server` (`https://10.0.20.10:6443`), its client certificate valid for `valid` from
    /// now: short-lived, and issued again when asked.
    pub fn admin_kubeconfig(
        &self,
        cluster: &str,
        server: &str,
        user: &str,
        valid: std::time::Duration,
    ) -> Result<Kubeconfig, IdentityError> {
        use base64::Engine as _;
        let (cert, key) = self.ca.client_cert(
            "kubernetes",
            user,
            Some(ADMIN_GROUP),
            valid,
            "admin client certificate",
        )?;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        Ok(Kubeconfig(format!(
            "apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {crt}
    client-key-data: {key}
contexts:
- name: {user}@{cluster}
  context:
    cluster: {cluster}
    user: {user}
current-context: {user}@{cluster}
",
            ca = b64(&self.ca.cert),
            crt = b64(&cert),
            key = b64(&key.serialize_pem()),
        )))
    }

    /// A client certificate of the etcd CA (`CN=user`), valid for `valid` from now, and its
    /// key: what etcd's client port asks for (kubeadm's etcd runs with client-cert-auth). The
    /// key is for this process only: written nowhere.
    pub fn etcd_client(
        &self,
        user: &str,
        valid: std::time::Duration,
    ) -> Result<(String, PrivateKeyPem), IdentityError> {
        let (cert, key) =
            self.etcd_ca
                .client_cert("etcd-ca", user, None, valid, "etcd client certificate")?;
        Ok((cert, PrivateKeyPem(key.serialize_pem())))
    }

    /// The identity kept in `vault`, made and kept there first if there is none; `true` when
    /// it was made now. Made once: every later call reads the same identity.
    pub fn load_or_make(vault: &Vault) -> Result<(Identity, bool), IdentityError> {
        if let Some(bytes) = vault.get(VAULT_ENTRY)? {
            let id = serde_json::from_slice(&bytes).map_err(IdentityError::Damaged)?;
            return Ok((id, false));
        }
        let id = Identity::generate()?;
        let bytes = serde_json::to_vec(&id).map_err(IdentityError::Damaged)?;
        vault.put(VAULT_ENTRY, &bytes)?;
        Ok((id, true))
    }
}
