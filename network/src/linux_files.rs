//! The Linux router backend's configuration: dnsmasq (DHCP reservations, DNS records,
//! DHCP ranges) and an nftables table that cloudlet owns (`inet cloudlet`: DNAT for port
//! forwards, forward filtering, masquerade towards the WAN). Pure rendering from the lab and
//! its derived router resources; the files are checked with `dnsmasq --test` and `nft -c`
//! before they replace live ones.
//!
//! Interface names are the lab's network names (a router VM names its interfaces after the
//! segments, as the namespace tests do).

use std::fmt::Write as _;

use cloudlet_core::Resource;
use cloudlet_core::model::Lab;

/// Rendering knobs that are not part of the lab.
#[derive(Debug, Clone)]
pub struct LinuxOptions {
    /// DNS port dnsmasq listens on (53 in production).
    pub dns_port: u16,
    /// Lease file path.
    pub lease_file: String,
}

impl Default for LinuxOptions {
    fn default() -> Self {
        LinuxOptions {
            dns_port: 53,
            lease_file: "/var/lib/misc/cloudlet.leases".into(),
        }
    }
}

pub(crate) fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or_default()
}

/// The dnsmasq configuration: [`dnsmasq_base`] plus the reservations and DNS records.
pub fn dnsmasq_conf(lab: &Lab, router: &[Resource], opts: &LinuxOptions) -> String {
    let mut c = dnsmasq_base(lab, opts);
    for r in router {
        let b = r.body.value();
        match &*r.id.kind {
            "dhcp-reservation" => {
                let _ = writeln!(
                    c,
                    "dhcp-host={},{},{}",
                    s(&b, "mac"),
                    s(&b, "ip"),
                    s(&b, "hostname")
                );
            }
            "dns-override" => {
                let _ = writeln!(c, "host-record={},{}", s(&b, "host"), s(&b, "address"));
            }
            "boot-server" => c.push_str(&boot_server_line(&b)),
            _ => {}
        }
    }
    c
}

/// The dnsmasq line of a `boot-server` resource: next-server (`siaddr`) for the segment's
/// DHCP clients, no boot file (proxyDHCP or the firmware's own choice names that).
pub fn boot_server_line(b: &serde_json::Value) -> String {
    format!(
        "dhcp-boot=tag:{},,,{}\n",
        s(b, "interface"),
        s(b, "next_server")
    )
}

/// The part of the dnsmasq configuration that comes from the lab's networks: ports,
/// interfaces, DHCP ranges and options. Reservations and records come after it (or from the
/// files the live backend keeps, which dnsmasq re-reads on SIGHUP).
pub fn dnsmasq_base(lab: &Lab, opts: &LinuxOptions) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# rendered by cloudlet for lab {}; do not edit",
        lab.name
    );
    let _ = writeln!(c, "port={}", opts.dns_port);
    let _ = writeln!(c, "bind-dynamic");
    let _ = writeln!(c, "no-resolv");
    let _ = writeln!(c, "no-hosts");
    let _ = writeln!(c, "domain={}", lab.site.domain);
    let _ = writeln!(c, "local=/{}/", lab.site.domain);
    let _ = writeln!(c, "dhcp-leasefile={}", opts.lease_file);
    let _ = writeln!(c, "dhcp-authoritative");
    for (name, net) in &lab.networks {
        if net.wan {
            let _ = writeln!(c, "except-interface={name}");
            continue;
        }
        let _ = writeln!(c, "interface={name}");
        let Some(dhcp) = &net.dhcp else { continue };
        let lease = dhcp
            .lease
            .map_or("12h".to_string(), |d| format!("{}s", d.0));
        for r in &dhcp.ranges {
            let _ = writeln!(c, "dhcp-range=set:{name},{},{},{lease}", r.start, r.end);
        }
        if let Some(gw) = net.gateway {
            let _ = writeln!(c, "dhcp-option=tag:{name},option:router,{gw}");
        }
        if !net.dns.is_empty() {
            let dns: Vec<String> = net.dns.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                c,
                "dhcp-option=tag:{name},option:dns-server,{}",
                dns.join(",")
            );
        }
    }
    c
}

/// An IPv4 address or CIDR (anything else — `any`, `wan` — is not a match on addresses).
fn is_addr(v: &str) -> bool {
    v.parse::<std::net::Ipv4Addr>().is_ok() || v.parse::<cloudlet_core::types::Cidr>().is_ok()
}

/// The nftables ruleset: one table cloudlet owns, replaced as a whole.
pub fn nftables(lab: &Lab, router: &[Resource]) -> String {
    let mut nat = String::new();
    let mut fwd = String::new();
    let wan = lab
        .networks
        .iter()
        .find(|(_, n)| n.wan)
        .map(|(k, _)| k.as_str())
        .unwrap_or("wan");
    for r in router {
        let b = r.body.value();
        let src = |b: &serde_json::Value| {
            let v = s(b, "source");
            if is_addr(v) {
                format!("ip saddr {v} ")
            } else {
                String::new()
            }
        };
        match &*r.id.kind {
            "port-forward" => {
                let _ = writeln!(
                    nat,
                    "    iifname \"{}\" {}{} dport {} dnat ip to {}:{} comment \"{}\"",
                    s(&b, "interface"),
                    src(&b),
                    s(&b, "protocol"),
                    b["port"],
                    s(&b, "target"),
                    b["target_port"],
                    r.id
                );
            }
            "firewall-rule" => {
                let verdict = if s(&b, "action") == "allow" {
                    "accept"
                } else {
                    "drop"
                };
                let ports: Vec<String> = b["ports"]
                    .as_array()
                    .map(|a| a.iter().map(ToString::to_string).collect())
                    .unwrap_or_default();
                let proto = s(&b, "protocol");
                let mut m = String::new();
                let iface = match s(&b, "interface") {
                    "wan" => wan,
                    other => other,
                };
                if lab.networks.contains_key(iface) {
                    let _ = write!(m, "iifname \"{iface}\" ");
                }
                m.push_str(&src(&b));
                let dst = s(&b, "destination");
                if is_addr(dst) {
                    let _ = write!(m, "ip daddr {dst} ");
                }
                match (proto, ports.is_empty()) {
                    ("tcp" | "udp", false) => {
                        let _ = write!(m, "{proto} dport {{ {} }} ", ports.join(", "));
                    }
                    ("tcp" | "udp", true) => {
                        let _ = write!(m, "meta l4proto {proto} ");
                    }
                    (_, false) => {
                        let _ = write!(
                            m,
                            "meta l4proto {{ tcp, udp }} th dport {{ {} }} ",
                            ports.join(", ")
                        );
                    }
                    _ => {}
                }
                let _ = writeln!(fwd, "    {m}{verdict} comment \"{}\"", r.id);
            }
            _ => {}
        }
    }
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# rendered by cloudlet for lab {}; do not edit",
        lab.name
    );
    // Declaring then deleting makes the load idempotent: the table is replaced atomically.
    let _ = writeln!(t, "table inet cloudlet");
    let _ = writeln!(t, "delete table inet cloudlet");
    let _ = writeln!(t, "table inet cloudlet {{");
    let _ = writeln!(t, "  chain prerouting {{");
    let _ = writeln!(
        t,
        "    type nat hook prerouting priority dstnat; policy accept;"
    );
    t.push_str(&nat);
    let _ = writeln!(t, "  }}");
    let _ = writeln!(t, "  chain postrouting {{");
    let _ = writeln!(
        t,
        "    type nat hook postrouting priority srcnat; policy accept;"
    );
    let _ = writeln!(t, "    oifname \"{wan}\" masquerade");
    let _ = writeln!(t, "  }}");
    let _ = writeln!(t, "  chain forward {{");
    let _ = writeln!(
        t,
        "    type filter hook forward priority filter; policy drop;"
    );
    let _ = writeln!(t, "    ct state established,related accept");
    let _ = writeln!(t, "    ct state invalid drop");
    // Traffic within one segment is not the router's to filter: it reaches the forward hook
    // only when the segment is a bridge on the router and bridged frames pass netfilter
    // (`br_netfilter`), and the drop policy would cut the segment's hosts off each other.
    for (name, net) in &lab.networks {
        if !net.wan {
            let _ = writeln!(t, "    iifname \"{name}\" oifname \"{name}\" accept");
        }
    }
    t.push_str(&fwd);
    // Everything the lab does not forbid may leave towards the WAN.
    let _ = writeln!(t, "    oifname \"{wan}\" accept");
    let _ = writeln!(t, "  }}");
    let _ = writeln!(t, "}}");
    t
}
