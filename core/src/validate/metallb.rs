//! MetalLB: address pools and pinned VIPs, and the sharing of one VIP between Services (the rules MetalLB's allocator applies, from `lb.rs`'s Services).

#![allow(clippy::wildcard_imports)]

use super::*;

impl<'a> Validator<'a> {
    pub(super) fn pools_and_vips(&mut self, lbs: &[LbService]) {
        let lab = self.lab;
        let Some(c) = &lab.cluster else { return };
        let node_nets = self.node_networks();
        let mut pool_ranges: Vec<IpRange> = Vec::new();
        if let Some(m) = &c.metallb {
            for (pname, pool) in &m.pools {
                for (i, r) in pool.addresses.iter().enumerate() {
                    pool_ranges.push(*r);
                    let p = path!["cluster", "metallb", "pools", pname, "addresses", i];
                    match self.network_of(r.start) {
                        Some((net, cidr)) if cidr.contains(r.end) => {
                            if !node_nets.contains(net) {
                                self.push(
                                    Diagnostic::error(
                                        "pool-off-segment",
                                        p,
                                        format!("layer-2 pool range {r} is on network `{net}`, where no cluster node has a NIC"),
                                    )
                                    .help("layer 2 announces a VIP by ARP from a node on the same segment: pick a range on the nodes' network"),
                                );
                            } else if let Some(cidr) = lab.networks.get(net).map(|n| n.cidr)
                                && (cidr.is_reserved(r.start) || cidr.is_reserved(r.end))
                            {
                                self.push(reserved(p, r.start, cidr));
                            }
                        }
                        _ => self.push(
                            Diagnostic::error(
                                "pool-off-segment",
                                p,
                                format!("pool range {r} is not inside any network of the lab"),
                            )
                            .help("pick addresses inside the cluster nodes' network"),
                        ),
                    }
                }
            }
        }
        let mut reported: HashSet<Ipv4Addr> = HashSet::new();
        for s in lbs {
            if !pool_ranges.iter().any(|r| r.contains(s.ip)) && reported.insert(s.ip) {
                let p = if s.app.is_none() {
                    path!["cluster", "ingress", "ip"]
                } else {
                    s.path.join("vip").join("ip")
                };
                self.push(
                    Diagnostic::error("vip-not-in-pool", p, format!("VIP {} is not in any MetalLB pool", s.ip))
                        .help("MetalLB only assigns addresses from its pools: add the address to a pool or pick one inside a pool"),
                );
            }
        }
        for (name, app) in &c.apps {
            for (i, port) in app.ports.iter().enumerate() {
                if port.expose == Expose::Shared && c.ingress.is_none() {
                    self.push(
                        Diagnostic::error(
                            "no-ingress",
                            path!["cluster", "apps", name, "ports", i, "expose"],
                            "`expose: shared` shares the ingress VIP, but the cluster has no ingress",
                        )
                        .help("add `cluster.ingress` with its `ip`, or expose the port on a VIP of its own"),
                    );
                }
            }
        }
    }

    pub(super) fn sharing(&mut self, lbs: &[LbService]) {
        let mut by_ip: BTreeMap<Ipv4Addr, Vec<&LbService>> = BTreeMap::new();
        for s in lbs {
            by_ip.entry(s.ip).or_default().push(s);
        }
        for (ip, svcs) in by_ip {
            if svcs.len() < 2 {
                continue;
            }
            let first = svcs[0];
            let who = |s: &LbService| match &s.app {
                Some(a) => format!("app `{a}`"),
                None => "the ingress controller".to_string(),
            };
            for s in &svcs[1..] {
                let at = s.path.clone();
                if s.sharing_key.is_empty() || first.sharing_key.is_empty() {
                    let culprit = if s.sharing_key.is_empty() { s } else { first };
                    self.out.push(
                        Diagnostic::error(
                            "sharing-key",
                            at.clone(),
                            format!("{ip} is used by {} and {}, but {} sets no sharing key", who(first), who(s), who(culprit)),
                        )
                        .related(first.path.clone(), "the other service")
                        .help("MetalLB shares an IP only between services with the same `sharing_key`"),
                    );
                    continue;
                }
                if s.sharing_key != first.sharing_key {
                    self.out.push(
                        Diagnostic::error(
                            "sharing-key",
                            at.clone(),
                            format!(
                                "{ip} is shared with sharing key `{}` by {} but `{}` by {}",
                                s.sharing_key,
                                who(s),
                                first.sharing_key,
                                who(first)
                            ),
                        )
                        .related(first.path.clone(), "the other service")
                        .help("use the same sharing key on every service of this VIP"),
                    );
                    continue;
                }
                if s.backend_key() != first.backend_key() {
                    let msg = match (first.traffic_policy, s.traffic_policy) {
                        (TrafficPolicy::Local, TrafficPolicy::Local) => format!(
                            "{ip} is shared by {} and {} with `traffic_policy: local` but different pod selectors",
                            who(first),
                            who(s)
                        ),
                        _ => format!(
                            "{ip} is shared by {} (traffic policy {}) and {} (traffic policy {}); MetalLB never puts Local and Cluster services on one IP",
                            who(first),
                            policy(first.traffic_policy),
                            who(s),
                            policy(s.traffic_policy)
                        ),
                    };
                    self.out.push(
                        Diagnostic::error("sharing-backend", at.clone(), msg)
                            .related(first.path.clone(), "the other service")
                            .help(
                                "give the service that needs source IPs (`local`) a VIP of its own",
                            ),
                    );
                }
            }
            let mut ports: HashMap<(Protocol, u16), &LbService> = HashMap::new();
            for s in &svcs {
                for (proto, port, _, pp) in &s.ports {
                    if let Some(prev) = ports.insert((*proto, *port), s)
                        && prev.name != s.name
                    {
                        let prev_path = prev
                            .ports
                            .iter()
                            .find(|(p2, n2, _, _)| p2 == proto && n2 == port)
                            .map(|(_, _, _, p)| p.clone())
                            .unwrap_or_else(|| prev.path.clone());
                        self.out.push(
                                Diagnostic::error(
                                    "port-clash",
                                    pp.clone(),
                                    format!("{} port {port} on {ip} is claimed by {} and {}", proto.k8s(), who(prev), who(s)),
                                )
                                .related(prev_path, "first claimed")
                                .help("each protocol and port on a shared VIP belongs to one service: change the port or use another VIP"),
                            );
                    }
                }
            }
        }
    }
}
