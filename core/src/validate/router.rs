//! The router: what it forwards from the WAN, and where the router and the NAS sit.

#![allow(clippy::wildcard_imports)]

use super::*;

impl<'a> Validator<'a> {
    pub(super) fn forwards(&mut self, lbs: &[LbService]) {
        let lab = self.lab;
        let Some(r) = &lab.router else { return };
        let mut seen: HashMap<(Protocol, u16), usize> = HashMap::new();
        for (i, f) in r.forwards.iter().enumerate() {
            let fp = path!["router", "forwards", i];
            if let Some(j) = seen.insert((f.protocol, f.port), i) {
                self.push(
                    Diagnostic::error(
                        "forward-duplicate",
                        fp.join("port"),
                        format!(
                            "WAN {} port {} is forwarded twice",
                            f.protocol.k8s(),
                            f.port
                        ),
                    )
                    .related(path!["router", "forwards", j, "port"], "first forwarded")
                    .help("a WAN port can go to one place only"),
                );
            }
            let to_port = f.to_port.unwrap_or(f.port);
            let target: Option<Vec<&LbService>> = if f.to == "ingress" {
                match lab.cluster.as_ref().and_then(|c| c.ingress.as_ref()) {
                    Some(ing) => Some(lbs.iter().filter(|s| s.ip == ing.ip).collect()),
                    None => {
                        self.push(Diagnostic::error(
                            "forward-target",
                            fp.join("to"),
                            "forward to `ingress`, but the cluster has no ingress",
                        ));
                        continue;
                    }
                }
            } else if let Ok(ip) = f.to.parse::<Ipv4Addr>() {
                let on_ip: Vec<&LbService> = lbs.iter().filter(|s| s.ip == ip).collect();
                if on_ip.is_empty() {
                    if lab
                        .machines
                        .values()
                        .any(|m| m.nics.iter().any(|n| n.ip == Some(ip)))
                    {
                        None // a machine: any port
                    } else {
                        self.push(
                            Diagnostic::error("forward-target", fp.join("to"), format!("forward to {ip}, which is neither a VIP nor a machine address of the lab"))
                                .help("forward to an app name, `ingress`, or an address the lab defines"),
                        );
                        continue;
                    }
                } else {
                    Some(on_ip)
                }
            } else if lab
                .cluster
                .as_ref()
                .is_some_and(|c| c.apps.contains_key(&f.to))
            {
                let mine: Vec<&LbService> = lbs
                    .iter()
                    .filter(|s| s.app.as_deref() == Some(f.to.as_str()))
                    .collect();
                if mine.is_empty() {
                    self.push(
                        Diagnostic::error(
                            "forward-target",
                            fp.join("to"),
                            format!(
                                "forward to app `{}`, which exposes no port outside the cluster",
                                f.to
                            ),
                        )
                        .help("set `expose: shared` (or a `vip`) on the app's port"),
                    );
                    continue;
                }
                Some(mine)
            } else {
                let mut known: Vec<&str> = lab
                    .cluster
                    .iter()
                    .flat_map(|c| c.apps.keys().map(String::as_str))
                    .collect();
                known.push("ingress");
                self.unknown(
                    "forward-target",
                    fp.join("to"),
                    "forward target",
                    &f.to,
                    known,
                );
                continue;
            };
            if let Some(svcs) = target
                && !svcs.iter().any(|s| s.serves(f.protocol, to_port))
            {
                self.push(
                        Diagnostic::error(
                            "forward-target",
                            fp.join("to"),
                            format!("`{}` does not expose {} port {to_port}", f.to, f.protocol.k8s()),
                        )
                        .help("expose that port on the target (`expose: shared` or a `vip`), or fix `port`/`to_port`/`protocol`"),
                    );
            }
        }
    }

    /// The router holds the gateway address of each segment it is on (but the WAN's, which
    /// is upstream's); the NAS's address is one of the NAS machine's.
    pub(super) fn router_and_nas_addresses(&mut self) {
        let lab = self.lab;
        if let Some(rm) = lab.router.as_ref().and_then(|r| r.machine.as_deref())
            && let Some(m) = lab.machines.get(rm)
        {
            for (i, nic) in m.nics.iter().enumerate() {
                let Some(net) = lab.networks.get(&nic.network) else {
                    continue;
                };
                if let (Some(gw), Some(ip), false) = (net.gateway, nic.ip, net.wan)
                    && gw != ip
                {
                    self.push(
                        Diagnostic::error(
                            "router-gateway",
                            path!["machines", rm, "nics", i, "ip"],
                            format!(
                                "the router `{rm}` has {ip} on network `{}`, whose gateway is {gw}",
                                nic.network
                            ),
                        )
                        .related(path!["networks", nic.network.as_str(), "gateway"], "the gateway")
                        .help("give the router's NIC the gateway address, or set the network's `gateway:` to the router's address"),
                    );
                }
            }
        }
        if let Some(st) = &lab.storage
            && let (Some(addr), Some(machine)) = (st.address, st.machine.as_deref())
            && let Some(m) = lab.machines.get(machine)
            && !m.nics.iter().any(|n| n.ip == Some(addr))
        {
            self.push(
                Diagnostic::error(
                    "nas-address",
                    path!["storage", "address"],
                    format!("{addr} is not an address of the NAS machine `{machine}`"),
                )
                .related(path!["machines", machine, "nics"], "its NICs")
                .help(
                    "use one of the machine's NIC addresses, or omit `address:` to use its first",
                ),
            );
        }
    }
}
