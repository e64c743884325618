//! The LoadBalancer Services a lab implies, and MetalLB's rules for sharing one VIP.
//!
//! Both validation and the cluster expansion use this: validation checks the sharing rules
//! offline, before anything reaches a cluster, exactly as MetalLB's allocator applies them
//! (`internal/allocator/allocator.go`): every service on an IP has the same non-empty
//! sharing key; their backend keys are equal (empty for `externalTrafficPolicy: Cluster`,
//! the sorted selector for `Local`); each (protocol, port) on the IP belongs to one service.

use std::net::Ipv4Addr;

use crate::model::{Expose, Lab, Protocol, TrafficPolicy};
use crate::path;
use crate::source::TreePath;

/// A LoadBalancer Service the lab implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbService {
    /// The app it belongs to (`None` for the ingress controller).
    pub app: Option<String>,
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// The pinned VIP.
    pub ip: Ipv4Addr,
    /// The MetalLB sharing key (empty: not shared).
    pub sharing_key: String,
    /// External traffic policy.
    pub traffic_policy: TrafficPolicy,
    /// The pod selector, as sorted `key=value` pairs.
    pub selector: Vec<(String, String)>,
    /// (protocol, port, target port, path of the port in the lab).
    pub ports: Vec<(Protocol, u16, u16, TreePath)>,
    /// Where the exposure is written.
    pub path: TreePath,
}

impl LbService {
    /// MetalLB's backend key: empty for `Cluster`, the sorted selector for `Local`.
    pub fn backend_key(&self) -> String {
        match self.traffic_policy {
            TrafficPolicy::Cluster => String::new(),
            TrafficPolicy::Local => self
                .selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// Whether the service serves (protocol, port).
    pub fn serves(&self, proto: Protocol, port: u16) -> bool {
        self.ports
            .iter()
            .any(|(p, n, _, _)| *p == proto && *n == port)
    }
}

/// The label every app's pods carry.
pub const APP_LABEL: &str = "app.kubernetes.io/name";

/// All LoadBalancer Services of the lab: the ingress controller's, then one per (app, VIP).
pub fn services(lab: &Lab) -> Vec<LbService> {
    let Some(cluster) = &lab.cluster else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(ing) = &cluster.ingress {
        let p = path!["cluster", "ingress", "ip"];
        out.push(LbService {
            app: None,
            namespace: ing.namespace.clone(),
            name: ing.class.clone(),
            ip: ing.ip,
            sharing_key: ing.sharing_key.clone(),
            traffic_policy: ing.traffic_policy,
            selector: vec![(APP_LABEL.to_string(), ing.class.clone())],
            ports: {
                // Traefik listens unprivileged on 8000 and 8443 (cloudlet's install and its
                // Helm chart alike); other controllers on 80 and 443.
                let (web, secure) = if ing.class == "traefik" {
                    (8000, 8443)
                } else {
                    (80, 443)
                };
                vec![
                    (Protocol::Tcp, 80, web, p.clone()),
                    (Protocol::Tcp, 443, secure, p.clone()),
                ]
            },
            path: p,
        });
    }
    for (name, app) in &cluster.apps {
        let ns = Lab::app_namespace(name, app).to_string();
        let mut mine: Vec<LbService> = Vec::new();
        for (i, port) in app.ports.iter().enumerate() {
            let pp = path!["cluster", "apps", name, "ports", i, "expose"];
            let (ip, key, policy) = match &port.expose {
                Expose::Cluster => continue,
                Expose::Shared => match &cluster.ingress {
                    Some(ing) => (ing.ip, ing.sharing_key.clone(), TrafficPolicy::Cluster),
                    None => continue,
                },
                Expose::Vip(v) => (
                    v.ip,
                    v.sharing_key.clone().unwrap_or_default(),
                    v.traffic_policy,
                ),
            };
            let entry = (port.protocol, port.port, port.port, pp.clone());
            match mine.iter_mut().find(|s| s.ip == ip) {
                Some(s) => s.ports.push(entry),
                None => mine.push(LbService {
                    app: Some(name.clone()),
                    namespace: ns.clone(),
                    name: String::new(),
                    ip,
                    sharing_key: key,
                    traffic_policy: policy,
                    selector: vec![(APP_LABEL.to_string(), name.clone())],
                    ports: vec![entry],
                    path: pp,
                }),
            }
        }
        let n = mine.len();
        for (k, mut s) in mine.into_iter().enumerate() {
            s.name = if n == 1 {
                format!("{name}-lb")
            } else {
                format!("{name}-lb-{k}")
            };
            out.push(s);
        }
    }
    out
}
