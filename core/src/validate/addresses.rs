//! Addresses on the lab's networks: inside their network, not reserved, used once, the gateway only on the router; MACs; segments.

#![allow(clippy::wildcard_imports)]

use super::*;

impl<'a> Validator<'a> {
    pub(super) fn addresses(&mut self) {
        let lab = self.lab;
        let router_machine = lab.router.as_ref().and_then(|r| r.machine.as_deref());
        // Each claim: (range, path, kind) where kind orders the message.
        let mut claims: Vec<(IpRange, TreePath, &'static str)> = Vec::new();
        for (name, net) in &lab.networks {
            let np = path!["networks", name];
            if let Some(gw) = net.gateway {
                if !net.cidr.contains(gw) {
                    self.push(outside(np.join("gateway"), gw, name, net.cidr));
                } else if net.cidr.is_reserved(gw) {
                    self.push(reserved(np.join("gateway"), gw, net.cidr));
                }
            }
            if let Some(dhcp) = &net.dhcp {
                for (i, r) in dhcp.ranges.iter().enumerate() {
                    let rp = np.join("dhcp").join("ranges").join(i);
                    if !(net.cidr.contains(r.start) && net.cidr.contains(r.end)) {
                        self.push(
                            Diagnostic::error(
                                "address-outside-network",
                                rp.clone(),
                                format!(
                                    "DHCP range {r} is not inside network `{name}` ({})",
                                    net.cidr
                                ),
                            )
                            .help(format!("pick a range inside {}", net.cidr)),
                        );
                        continue;
                    }
                    if net.cidr.is_reserved(r.start) || net.cidr.is_reserved(r.end) {
                        self.push(
                            Diagnostic::error(
                                "address-reserved",
                                rp.clone(),
                                format!("DHCP range {r} includes the network or broadcast address of {}", net.cidr),
                            )
                            .help("start after the network address and end before the broadcast address"),
                        );
                    }
                    if let Some(gw) = net.gateway.filter(|g| r.contains(*g)) {
                        self.push(
                            Diagnostic::error(
                                "address-reused",
                                rp.clone(),
                                format!("DHCP range {r} includes the gateway {gw}"),
                            )
                            .related(np.join("gateway"), "the gateway")
                            .help("move the range so it leaves the gateway out"),
                        );
                    }
                    claims.push((*r, rp, "DHCP range"));
                }
            }
        }
        for (name, m) in &lab.machines {
            for (i, nic) in m.nics.iter().enumerate() {
                let Some(ip) = nic.ip else { continue };
                let ip_path = path!["machines", name, "nics", i, "ip"];
                if let Some(net) = lab.networks.get(&nic.network) {
                    if !net.cidr.contains(ip) {
                        self.push(outside(ip_path.clone(), ip, &nic.network, net.cidr));
                        continue;
                    }
                    if net.cidr.is_reserved(ip) {
                        self.push(reserved(ip_path.clone(), ip, net.cidr));
                        continue;
                    }
                    if net.gateway == Some(ip) && router_machine != Some(name.as_str()) {
                        self.push(
                            Diagnostic::error(
                                "address-reused",
                                ip_path.clone(),
                                format!("{ip} is the gateway of network `{}`", nic.network),
                            )
                            .related(path!["networks", &nic.network, "gateway"], "the gateway")
                            .help("only the router may hold the gateway address; pick another address"),
                        );
                    }
                }
                claims.push((IpRange::single(ip), ip_path, "address"));
            }
        }
        if let Some(m) = self.lab.cluster.as_ref().and_then(|c| c.metallb.as_ref()) {
            for (pname, pool) in &m.pools {
                for (i, r) in pool.addresses.iter().enumerate() {
                    claims.push((
                        *r,
                        path!["cluster", "metallb", "pools", pname, "addresses", i],
                        "MetalLB pool",
                    ));
                }
            }
        }
        // Sweep: sort by start, compare each claim with the ones still open.
        claims.sort_by(|a, b| (a.0.start, a.0.end, &a.1).cmp(&(b.0.start, b.0.end, &b.1)));
        let mut open: Vec<usize> = Vec::new();
        for i in 0..claims.len() {
            let (r, _, _) = &claims[i];
            open.retain(|&j| claims[j].0.end >= r.start);
            for &j in &open {
                let (a, ap, ak) = &claims[j];
                let (b, bp, bk) = &claims[i];
                let d = if *ak == "address" && *bk == "address" {
                    Diagnostic::error(
                        "address-reused",
                        bp.clone(),
                        format!("address {} is used twice", b.start),
                    )
                    .also_used(ap.clone())
                    .help("give each machine NIC its own address")
                } else {
                    let (what_a, what_b) = (describe(*a, ak), describe(*b, bk));
                    Diagnostic::error(
                        "range-overlap",
                        bp.clone(),
                        format!("{what_b} overlaps {what_a}"),
                    )
                    .related(ap.clone(), format!("the {ak}"))
                    .help(
                        "static addresses, DHCP ranges and MetalLB pools must not share addresses",
                    )
                };
                self.out.push(d);
            }
            open.push(i);
        }
    }

    pub(super) fn macs(&mut self) {
        let lab = self.lab;
        let mut seen: HashMap<MacAddr, TreePath> = HashMap::new();
        for (name, m) in &lab.machines {
            for (i, nic) in m.nics.iter().enumerate() {
                let p = path!["machines", name, "nics", i];
                let mac = lab.nic_mac(name, i, nic);
                if nic.mac.is_some() && mac.is_multicast() {
                    self.push(
                        Diagnostic::error("mac-invalid", p.join("mac"), format!("{mac} is a multicast address"))
                            .help("the lowest bit of the first octet must be 0; omit `mac:` to get a stable generated one"),
                    );
                }
                let at = if nic.mac.is_some() {
                    p.join("mac")
                } else {
                    p.clone()
                };
                if let Some(prev) = seen.insert(mac, at.clone()) {
                    self.push(
                        Diagnostic::error("mac-reused", at, format!("MAC {mac} is used twice"))
                            .also_used(prev)
                            .help("give each NIC its own MAC, or omit `mac:` to derive one"),
                    );
                }
            }
        }
    }

    /// Segments: VLAN ids in range and not shared, subnets that do not overlap.
    pub(super) fn segments(&mut self) {
        let lab = self.lab;
        let mut vlans: HashMap<u16, &str> = HashMap::new();
        let nets: Vec<(&String, &crate::model::Network)> = lab.networks.iter().collect();
        for (i, (name, net)) in nets.iter().enumerate() {
            let np = path!["networks", name.as_str()];
            if let Some(vlan) = net.vlan {
                if !(1..=4094).contains(&vlan) {
                    self.push(
                        Diagnostic::error(
                            "vlan-invalid",
                            np.join("vlan"),
                            format!("VLAN id {vlan} is outside 1-4094"),
                        )
                        .help("802.1Q VLAN ids are 1 to 4094 (0 and 4095 are reserved); omit `vlan:` for an untagged segment"),
                    );
                } else if let Some(first) = vlans.insert(vlan, name.as_str()) {
                    self.push(
                        Diagnostic::error(
                            "vlan-reused",
                            np.join("vlan"),
                            format!("networks `{first}` and `{name}` are both VLAN {vlan} on the lab's switch"),
                        )
                        .related(path!["networks", first, "vlan"], "first used")
                        .help("give each segment its own VLAN id, or make them one network"),
                    );
                }
            }
            for (other, o) in &nets[..i] {
                let (a, b) = (net.cidr, o.cidr);
                if a.first() <= b.last() && b.first() <= a.last() {
                    self.push(
                        Diagnostic::error(
                            "network-overlap",
                            np.join("cidr"),
                            format!(
                                "networks `{other}` ({b}) and `{name}` ({a}) overlap"
                            ),
                        )
                        .alike(path!["networks", other.as_str(), "cidr"], "the other network")
                        .help("segments are separate subnets; pick a CIDR that shares no address with the others"),
                    );
                }
            }
        }
    }
}
