//! kubeadm's configuration for each node of a cluster cloudlet makes: the first control
//! plane's `InitConfiguration` + `ClusterConfiguration` + `KubeletConfiguration`, and a
//! `JoinConfiguration` for every other node (kubeadm.k8s.io/v1beta4). Discovery is pinned to
//! the cluster CA's hash; the bootstrap token is one cloudlet mints for that node just before
//! it joins (15 minutes at most) and deletes after. Control planes join without
//! `certificateKey`: their CA keys are copied over SSH, never uploaded to the cluster.

use std::net::Ipv4Addr;

use cloudlet_core::model::{ContainerRuntime, Kubernetes, Lab};
use serde_json::{Value, json};

use crate::identity::Identity;

/// The API server's port.
pub const API_PORT: u16 = 6443;

/// How long a bootstrap token lives at most.
pub const TOKEN_TTL: &str = "15m0s";

/// A configuration that cannot be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeadmError {
    /// The lab does not make its cluster (`cluster.kubernetes` is missing).
    #[error(
        "cloudlet does not make this lab's cluster: that takes `cluster.kubernetes` and `targets.cluster.kind: kubeadm`"
    )]
    NotMade,
    /// A node has no address.
    #[error("node `{0}` has no address")]
    NoAddress(String),
    /// The cluster has no API endpoint (several control planes and no `endpoint`).
    #[error(
        "the cluster has no API endpoint: with several control planes give `cluster.kubernetes.endpoint`"
    )]
    NoEndpoint,
    /// No randomness for a token.
    #[error("no randomness for a bootstrap token: {0}")]
    Random(String),
}

/// A bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`). Its secret half is never shown by
/// `Debug` or `Display`; only [`Token::expose`] gives the whole token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    id: String,
    secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}.<redacted>)", self.id)
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bootstrap token {}", self.id)
    }
}

fn random_chars(n: usize) -> Result<String, KubeadmError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::fill(&mut buf).map_err(|e| KubeadmError::Random(e.to_string()))?;
        // 252 = 7 × 36: bytes above it are dropped so every character is equally likely.
        for b in buf.iter().filter(|b| **b < 252) {
            if out.len() == n {
                break;
            }
            out.push(ALPHABET[usize::from(*b % 36)] as char);
        }
    }
    Ok(out)
}

impl Token {
    /// A new random token.
    pub fn generate() -> Result<Token, KubeadmError> {
        Ok(Token {
            id: random_chars(6)?,
            secret: random_chars(16)?,
        })
    }

    /// The public half (the `bootstrap-token-<id>` Secret's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret half: only for the token's Secret in the cluster.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The whole token, `id.secret`: only for the configuration written to its node.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

fn spec(lab: &Lab) -> Result<&Kubernetes, KubeadmError> {
    lab.cluster
        .as_ref()
        .and_then(|c| c.kubernetes.as_ref())
        .ok_or(KubeadmError::NotMade)
}

/// The API endpoint every node reaches: `cluster.kubernetes.endpoint`, or the single control
/// plane's address.
pub fn endpoint(lab: &Lab) -> Result<Ipv4Addr, KubeadmError> {
    let k = spec(lab)?;
    if let Some(ip) = k.endpoint {
        return Ok(ip);
    }
    match lab.cluster.as_ref().map(|c| c.control_plane.as_slice()) {
        Some([only]) => lab
            .machine_ip(only)
            .ok_or_else(|| KubeadmError::NoAddress(only.clone())),
        _ => Err(KubeadmError::NoEndpoint),
    }
}

fn address(lab: &Lab, node: &str) -> Result<Ipv4Addr, KubeadmError> {
    lab.machine_ip(node)
        .ok_or_else(|| KubeadmError::NoAddress(node.to_string()))
}

fn cri_socket(k: &Kubernetes) -> &'static str {
    match k.runtime {
        ContainerRuntime::Containerd => "unix:///var/run/containerd/containerd.sock",
    }
}

fn node_registration(lab: &Lab, k: &Kubernetes, node: &str) -> Result<Value, KubeadmError> {
    Ok(json!({
        "name": node,
        "criSocket": cri_socket(k),
        "kubeletExtraArgs": [{"name": "node-ip", "value": address(lab, node)?.to_string()}],
    }))
}

pub(crate) fn documents(docs: &[Value]) -> String {
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        cloudlet_core::yaml::emit(d, 0, &[], &mut out);
    }
    out
}

/// The first control plane's configuration: `kubeadm init --config` of this text. `token`
/// is the one its init creates (15 minutes), deleted once the init is done.
pub fn init_config(lab: &Lab, node: &str, token: &Token) -> Result<String, KubeadmError> {
    let k = spec(lab)?;
    let ep = endpoint(lab)?;
    let init = json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "InitConfiguration",
        "bootstrapTokens": [{
            "token": token.expose(),
            "ttl": TOKEN_TTL,
            "usages": ["signing", "authentication"],
            "groups": ["system:bootstrappers:kubeadm:default-node-token"],
        }],
        "nodeRegistration": node_registration(lab, k, node)?,
        "localAPIEndpoint": {"advertiseAddress": address(lab, node)?.to_string(), "bindPort": API_PORT},
    });
    let cluster = json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "clusterName": lab.name,
        "kubernetesVersion": k.version,
        "controlPlaneEndpoint": format!("{ep}:{API_PORT}"),
        "encryptionAlgorithm": "ECDSA-P256",
        "certificatesDir": "/etc/kubernetes/pki",
        "networking": {
            "podSubnet": k.pod_cidr.to_string(),
            "serviceSubnet": k.service_cidr.to_string(),
            "dnsDomain": "cluster.local",
        },
    });
    let kubelet = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
    });
    Ok(documents(&[init, cluster, kubelet]))
}

/// A node's `kubeadm join --config`: discovery through `token`, pinned to the cluster CA; a
/// control plane also gets its local API endpoint (its certificates are copied beforehand).
pub fn join_config(
    lab: &Lab,
    identity: &Identity,
    node: &str,
    token: &Token,
    control_plane: bool,
) -> Result<String, KubeadmError> {
    let k = spec(lab)?;
    let ep = endpoint(lab)?;
    let mut join = json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "JoinConfiguration",
        "discovery": {
            "bootstrapToken": {
                "apiServerEndpoint": format!("{ep}:{API_PORT}"),
                "token": token.expose(),
                "caCertHashes": [identity.ca.ca_cert_hash()],
            },
        },
        "nodeRegistration": node_registration(lab, k, node)?,
    });
    if control_plane {
        join["controlPlane"] = json!({
            "localAPIEndpoint": {"advertiseAddress": address(lab, node)?.to_string(), "bindPort": API_PORT},
        });
    }
    Ok(documents(&[join]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_kubeadms_form_and_hide_their_secret() {
        let t = Token::generate().unwrap();
        let s = t.expose();
        let (id, secret) = s.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16));
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.')
        );
        assert!(!format!("{t:?} {t}").contains(secret));
        assert_ne!(Token::generate().unwrap(), t);
    }
}
