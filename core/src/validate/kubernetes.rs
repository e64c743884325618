//! The cluster cloudlet makes (`cluster.kubernetes`): a real, supported release; pod and
//! Service ranges that share no address with each other, a segment, a MetalLB pool or a VIP;
//! an API endpoint every node reaches on its own segment; an odd number of control planes.

#![allow(clippy::wildcard_imports)]

use super::*;
use crate::types::IpRange;

/// The minor releases this build supports and the newest patch of each it knows (from the
/// Kubernetes module's published versions). A patch above it may be newer than this build:
/// a warning, not an error.
const RELEASES: &[(u32, u32)] = &[(33, 13), (34, 4), (35, 4), (36, 3), (37, 2)];

/// What is wrong with a version, or what to warn about: `Err` for an error, `Ok(Some(_))`
/// for a warning.
fn check_release(v: &str) -> Result<Option<String>, String> {
    let supported = || {
        RELEASES
            .iter()
            .map(|(m, _)| format!("1.{m}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let bare = v.strip_prefix('v').unwrap_or(v);
    let parts: Vec<&str> = bare.split('.').collect();
    let nums: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    let Some([major, minor, patch]) = nums.as_deref().and_then(|n| <[u32; 3]>::try_from(n).ok())
    else {
        return Err(if bare.contains('-') {
            format!("`{v}` is a pre-release; nodes run released Kubernetes only")
        } else {
            format!("`{v}` is not a Kubernetes version (vMAJOR.MINOR.PATCH, `v1.36.3`)")
        });
    };
    let Some((_, newest)) = RELEASES.iter().find(|(m, _)| major == 1 && *m == minor) else {
        return Err(format!(
            "Kubernetes {major}.{minor} is not a release this build supports (supported: {})",
            supported()
        ));
    };
    Ok((patch > *newest).then(|| {
        format!(
            "v{major}.{minor}.{patch} is newer than the newest 1.{minor} patch this build knows (v1.{minor}.{newest}); make sure it is released"
        )
    }))
}

impl<'a> Validator<'a> {
    pub(super) fn kubernetes(&mut self, lbs: &[LbService]) {
        let lab: &'a Lab = self.lab;
        let kind = lab.targets.cluster.kind.as_str();
        let made = lab.cluster.as_ref().and_then(|c| c.kubernetes.as_ref());
        if kind == "kubeadm" && made.is_none() {
            self.push(
                Diagnostic::error(
                    "kubernetes-not-described",
                    path!["targets", "cluster", "kind"],
                    "`kind: kubeadm` makes the cluster that `cluster.kubernetes` describes, and the lab has none",
                )
                .help("add `cluster.kubernetes: {version: v1.36.3}` (and the nodes in `cluster.control_plane` and `cluster.workers`), or use `kind: kubernetes` for a cluster made elsewhere"),
            );
        }
        let Some(c) = &lab.cluster else { return };
        let Some(k) = &c.kubernetes else { return };
        let kp = path!["cluster", "kubernetes"];
        if kind == "kubernetes" {
            self.push(
                Diagnostic::error(
                    "kubernetes-made-elsewhere",
                    kp.clone(),
                    "`cluster.kubernetes` says cloudlet makes the cluster, but `targets.cluster.kind` is `kubernetes` (a cluster made elsewhere)",
                )
                .help("use `kind: kubeadm` for the cluster cloudlet makes, or remove `cluster.kubernetes` to use the existing one"),
            );
        }
        match check_release(&k.version) {
            Err(message) => self.push(
                Diagnostic::error("kubernetes-version", kp.join("version"), message)
                    .help("pin a released version, e.g. `version: v1.36.3`"),
            ),
            Ok(Some(message)) => self.push(Diagnostic::warning(
                "kubernetes-version",
                kp.join("version"),
                message,
            )),
            Ok(None) => {}
        }
        self.cluster_ranges(k, lbs);
        self.api_endpoint(c, k);
    }

    /// The pod and Service ranges against each other and everything else with addresses.
    fn cluster_ranges(&mut self, k: &crate::model::Kubernetes, lbs: &[LbService]) {
        let lab: &'a Lab = self.lab;
        let kp = path!["cluster", "kubernetes"];
        let overlap = |a: Cidr, b: IpRange| a.range().overlaps(b);
        if overlap(k.service_cidr, k.pod_cidr.range()) {
            self.push(
                Diagnostic::error(
                    "kubernetes-cidr-overlap",
                    kp.join("service_cidr"),
                    format!(
                        "the Service range {} overlaps the pod range {}",
                        k.service_cidr, k.pod_cidr
                    ),
                )
                .related(kp.join("pod_cidr"), "the pod range")
                .help("pick ranges that share no address (the defaults are 10.244.0.0/16 and 10.96.0.0/12)"),
            );
        }
        for (field, what, cidr) in [
            ("pod_cidr", "pod range", k.pod_cidr),
            ("service_cidr", "Service range", k.service_cidr),
        ] {
            let mut clashes: Vec<(crate::source::TreePath, String)> = Vec::new();
            for (name, net) in &lab.networks {
                if overlap(cidr, net.cidr.range()) {
                    clashes.push((
                        path!["networks", name.as_str(), "cidr"],
                        format!("network `{name}` ({})", net.cidr),
                    ));
                }
            }
            if let Some(m) = &lab.cluster.as_ref().and_then(|c| c.metallb.as_ref()) {
                for (pool, p) in &m.pools {
                    for (i, r) in p.addresses.iter().enumerate() {
                        if overlap(cidr, *r) {
                            clashes.push((
                                path!["cluster", "metallb", "pools", pool.as_str(), "addresses", i],
                                format!("MetalLB pool `{pool}` ({r})"),
                            ));
                        }
                    }
                }
            }
            for s in lbs {
                if cidr.contains(s.ip) {
                    clashes.push((
                        match &s.app {
                            Some(app) => path!["cluster", "apps", app.as_str()],
                            None => path!["cluster", "ingress", "ip"],
                        },
                        format!("the VIP {} of `{}/{}`", s.ip, s.namespace, s.name),
                    ));
                }
            }
            for (related, desc) in clashes {
                self.push(
                    Diagnostic::error(
                        "kubernetes-cidr-overlap",
                        kp.join(field),
                        format!("the {what} {cidr} overlaps {desc}"),
                    )
                    .related(related, "it is here")
                    .help("pods and Services get addresses no segment, pool or VIP uses: pick another range"),
                );
            }
        }
    }

    /// The API endpoint: which address, on which segment, and that every node is on it.
    fn api_endpoint(&mut self, c: &'a crate::model::Cluster, k: &crate::model::Kubernetes) {
        let lab: &'a Lab = self.lab;
        let kp = path!["cluster", "kubernetes"];
        let cps = c.control_plane.len();
        if cps > 1 && cps.is_multiple_of(2) {
            self.push(
                Diagnostic::warning(
                    "control-plane-even",
                    path!["cluster", "control_plane"],
                    format!(
                        "{cps} control planes tolerate no more failures than {}: etcd's quorum is a majority",
                        cps - 1
                    ),
                )
                .help("run an odd number of control planes (1, 3 or 5)"),
            );
        }
        let (endpoint, at) = match (k.endpoint, cps) {
            (Some(ip), _) => (ip, kp.join("endpoint")),
            (None, 1) => match lab.machine_ip(&c.control_plane[0]) {
                Some(ip) => (ip, path!["cluster", "control_plane", 0]),
                None => return, // reported by the node rules
            },
            (None, 0) => return,
            (None, n) => {
                self.push(
                    Diagnostic::error_at_key(
                        "kubernetes-endpoint",
                        kp,
                        format!("with {n} control planes the API needs an `endpoint` they share"),
                    )
                    .help("add `endpoint: ADDRESS`, a free address on the control planes' segment; kube-vip announces it from the control plane that holds it"),
                );
                return;
            }
        };
        let Some((net, cidr)) = self.network_of(endpoint) else {
            self.push(
                Diagnostic::error(
                    "kubernetes-endpoint",
                    at,
                    format!("the API endpoint {endpoint} is inside no network of the lab"),
                )
                .help("use an address on the segment the cluster's nodes share"),
            );
            return;
        };
        if k.endpoint.is_some() && cps > 1 {
            for (name, m) in &lab.machines {
                if m.nics.iter().any(|n| n.ip == Some(endpoint)) {
                    self.push(
                        Diagnostic::error(
                            "kubernetes-endpoint",
                            kp.join("endpoint"),
                            format!(
                                "the API endpoint {endpoint} is machine `{name}`'s address; with several control planes it is a VIP no machine holds"
                            ),
                        )
                        .related(path!["machines", name.as_str()], "the machine"),
                    );
                }
            }
        }
        for (key, list) in [("control_plane", &c.control_plane), ("workers", &c.workers)] {
            for (i, node) in list.iter().enumerate() {
                let Some(m) = lab.machines.get(node) else {
                    continue;
                };
                if !m.nics.iter().any(|n| n.network == net) {
                    self.push(
                        Diagnostic::error(
                            "node-off-endpoint-segment",
                            path!["cluster", key, i],
                            format!(
                                "node `{node}` has no NIC on `{net}` ({cidr}), the segment of the API endpoint {endpoint}"
                            ),
                        )
                        .related(at.clone(), "the API endpoint")
                        .help(format!("give `{node}` a NIC on `{net}`")),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_release;

    #[test]
    fn releases() {
        assert_eq!(check_release("v1.36.3"), Ok(None));
        assert_eq!(check_release("1.35.0"), Ok(None));
        assert!(check_release("v1.36.9").unwrap().is_some());
        assert!(check_release("v1.12.0").is_err());
        assert!(check_release("v1.36").is_err());
        assert!(
            check_release("v1.37.0-rc.1")
                .unwrap_err()
                .contains("pre-release")
        );
        assert!(check_release("latest").is_err());
    }
}
