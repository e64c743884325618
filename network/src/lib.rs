//! cloudlet's network domain: what the router must hold, derived from the rest of the lab.
//!
//! [`expand`] is pure: one DHCP reservation per machine NIC with an address on a segment the
//! router serves DHCP on, a DNS host override per machine and per ingress host (LAN clients
//! resolve app hosts to the ingress VIP), a port forward plus its firewall allow rule for
//! every WAN forward, an alias per MetalLB VIP, and the lab's firewall intents. Router
//! backends (pfSense, OPNsense, Linux) plug in as providers for [`Domain::Router`].

pub mod config_xml;
#[cfg(feature = "client")]
pub mod doctor;
pub mod linux_files;
pub mod opnsense;
pub mod pfsense;
pub mod router_linux;

#[cfg(feature = "client")]
/// A failed request to a router's HTTP API, typed: an answer's status becomes an API fault
/// (retry decisions read it); no answer at all may be worth another try.
pub(crate) fn http_error(
    backend: &'static str,
    what: &str,
    e: cloudlet_transport::http::HttpError,
) -> cloudlet_core::ProviderError {
    use cloudlet_core::ProviderError;
    use cloudlet_transport::http::HttpError;
    match e {
        HttpError::Status(status, _) => ProviderError::Api {
            backend,
            operation: what.to_string(),
            status: Some(status),
            fault: cloudlet_core::error::Fault::from_status(status),
            message: e.to_string(),
        },
        HttpError::Transport(_) | HttpError::Body(_) => ProviderError::Backend {
            retryable: matches!(e, HttpError::Transport(_)),
            message: format!("{backend} {what}: {e}"),
        },
    }
}

/// A router backend that cannot be set up.
#[cfg(feature = "client")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend's HTTPS client cannot be made.
    #[error("setting up the {backend} client")]
    Client {
        /// The backend.
        backend: &'static str,
        /// Why.
        #[source]
        source: cloudlet_transport::http::SetupError,
    },
}

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use cloudlet_core::lb;
use cloudlet_core::model::{FirewallAction, Lab};
use cloudlet_core::{Domain, Resource, ResourceId};
use serde_json::json;

/// The id of a machine NIC's DHCP reservation.
pub fn reservation_id(machine: &str, nic: usize) -> ResourceId {
    ResourceId::new(
        Domain::Router,
        "dhcp-reservation",
        format!("{machine}.nic{nic}"),
    )
}

/// Where a forward goes: the VIP of an app, the ingress VIP, or a literal address.
fn forward_target(
    lab: &Lab,
    lbs: &[lb::LbService],
    to: &str,
    proto: cloudlet_core::model::Protocol,
    port: u16,
) -> Option<Ipv4Addr> {
    if let Ok(ip) = to.parse::<Ipv4Addr>() {
        return Some(ip);
    }
    if to == "ingress" {
        return lab.cluster.as_ref()?.ingress.as_ref().map(|i| i.ip);
    }
    lbs.iter()
        .filter(|s| s.app.as_deref() == Some(to))
        .find(|s| s.serves(proto, port))
        .or_else(|| lbs.iter().find(|s| s.app.as_deref() == Some(to)))
        .map(|s| s.ip)
}

/// What the router's DHCP server must say about network boot: next-server on each of the
/// lab's boot segments ([`Lab::boot_segments`]), as `boot-server/NETWORK`. Planned beside
/// [`expand`] for router backends with
/// [`cloudlet_core::backend::Capability::BootServer`]; the others get a validation warning.
pub fn boot_servers(lab: &Lab) -> Vec<Resource> {
    if lab.router.is_none() {
        return Vec::new();
    }
    lab.boot_segments()
        .into_iter()
        .map(|(net, server)| {
            Resource::new(
                ResourceId::new(Domain::Router, "boot-server", net.clone()),
                json!({"interface": net, "next_server": server.to_string()}),
            )
        })
        .collect()
}

/// The desired router state of a lab (without [`boot_servers`]).
pub fn expand(lab: &Lab) -> Vec<Resource> {
    let Some(router) = &lab.router else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let domain = &lab.site.domain;
    for (name, m) in &lab.machines {
        if router.machine.as_deref() == Some(name.as_str()) {
            continue;
        }
        for (i, nic) in m.nics.iter().enumerate() {
            let Some(ip) = nic.ip else { continue };
            if lab
                .networks
                .get(&nic.network)
                .is_none_or(|n| n.dhcp.is_none())
            {
                continue;
            }
            out.push(Resource::new(
                reservation_id(name, i),
                json!({
                    "interface": nic.network,
                    "mac": lab.nic_mac(name, i, nic).to_string(),
                    "ip": ip.to_string(),
                    "hostname": name,
                }),
            ));
        }
    }
    let mut dns: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    for name in lab.machines.keys() {
        if let Some(ip) = lab.machine_ip(name) {
            dns.insert(format!("{name}.{domain}"), ip);
        }
    }
    if let Some(c) = &lab.cluster
        && let Some(ing) = &c.ingress
    {
        for app in c.apps.values() {
            for r in &app.ingress {
                dns.insert(r.host.clone(), ing.ip);
            }
        }
    }
    for (host, ip) in dns {
        out.push(Resource::new(
            ResourceId::new(Domain::Router, "dns-override", host.clone()),
            json!({"host": host, "address": ip.to_string()}),
        ));
    }
    let lbs = lb::services(lab);
    let mut vips: Vec<Ipv4Addr> = lbs.iter().map(|s| s.ip).collect();
    vips.sort_unstable();
    vips.dedup();
    for ip in &vips {
        out.push(Resource::new(
            ResourceId::new(
                Domain::Router,
                "alias",
                format!("vip-{}", ip.to_string().replace('.', "-")),
            ),
            json!({"type": "host", "addresses": [ip.to_string()]}),
        ));
    }
    let wan = lab
        .networks
        .iter()
        .find(|(_, n)| n.wan)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| "wan".into());
    for f in &router.forwards {
        let to_port = f.to_port.unwrap_or(f.port);
        let Some(target) = forward_target(lab, &lbs, &f.to, f.protocol, to_port) else {
            continue;
        };
        let name = format!("{}-{}", f.protocol.as_str(), f.port);
        let fwd = ResourceId::new(Domain::Router, "port-forward", name.clone());
        let mut fr = Resource::new(
            fwd.clone(),
            json!({
                "interface": wan,
                "protocol": f.protocol.as_str(),
                "port": f.port,
                "source": f.from.map(|c| c.to_string()).unwrap_or_else(|| "any".into()),
                "target": target.to_string(),
                "target_port": to_port,
                "description": format!("{} {}/{} -> {}", f.to, f.protocol.as_str(), f.port, target),
            }),
        );
        let alias = ResourceId::new(
            Domain::Router,
            "alias",
            format!("vip-{}", target.to_string().replace('.', "-")),
        );
        if vips.contains(&target) {
            fr = fr.after(alias);
        }
        out.push(fr);
        out.push(
            Resource::new(
                ResourceId::new(Domain::Router, "firewall-rule", format!("forward-{name}")),
                json!({
                    "interface": wan,
                    "action": "allow",
                    "protocol": f.protocol.as_str(),
                    "source": f.from.map(|c| c.to_string()).unwrap_or_else(|| "any".into()),
                    "destination": target.to_string(),
                    "ports": [to_port],
                }),
            )
            .after(fwd),
        );
    }
    for (i, rule) in router.firewall.iter().enumerate() {
        let side = |s: &str| -> String {
            lab.networks
                .get(s)
                .map(|n| n.cidr.to_string())
                .unwrap_or_else(|| s.to_string())
        };
        out.push(Resource::new(
            ResourceId::new(Domain::Router, "firewall-rule", format!("intent-{i:03}")),
            json!({
                "interface": rule.from,
                "action": match rule.action { FirewallAction::Allow => "allow", FirewallAction::Deny => "deny" },
                "protocol": rule.protocol.map(|p| p.as_str()).unwrap_or("any"),
                "source": side(&rule.from),
                "destination": side(&rule.to),
                "ports": rule.ports,
            }),
        ));
    }
    out
}

/// What a reviewer needs to see of a new or removed router resource, on one line.
pub fn headline(r: &Resource) -> Option<String> {
    let v = r.body.value();
    let s = |k: &str| v[k].as_str().map(str::to_string);
    match &*r.id.kind {
        "port-forward" => Some(format!(
            "{}/{} on {} → {}:{}",
            s("protocol")?,
            v["port"].as_u64()?,
            s("interface")?,
            s("target")?,
            v["target_port"].as_u64()?
        )),
        "dhcp-reservation" => Some(format!(
            "{} for {} ({})",
            s("ip")?,
            s("mac")?,
            s("hostname")?
        )),
        "dns-override" => Some(format!("{} → {}", s("host")?, s("address")?)),
        "boot-server" => Some(format!(
            "network boot from {} on {}",
            s("next_server")?,
            s("interface")?
        )),
        "firewall-rule" => {
            let ports: Vec<String> = v["ports"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .map(|x| x.to_string().trim_matches('"').to_string())
                        .collect()
                })
                .unwrap_or_default();
            Some(format!(
                "{} {} {} → {}{}",
                s("action")?,
                s("protocol")?,
                s("source")?,
                s("destination")?,
                if ports.is_empty() {
                    String::new()
                } else {
                    format!(" port {}", ports.join(","))
                }
            ))
        }
        _ => None,
    }
}
