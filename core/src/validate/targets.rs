//! The rules of `targets`: each names a backend that serves its domain, with the fields that
//! backend reads and no other, and agrees with what the lab says the router, NAS and hosts
//! run. What each backend reads and can do is its descriptor's to say ([`Descriptor`]).

use super::Validator;
use crate::backend::{Capability, Descriptor, find};
use crate::diag::{Diagnostic, did_you_mean};
use crate::model::Target;
use crate::path;
use crate::resource::Domain;

/// The name the lab gives a kind (`esxi`, `pfsense`, `linux_nfs`): its serde name.
fn lab_name<T: serde::Serialize>(kind: &T) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl<'a> Validator<'a> {
    pub(super) fn targets(&mut self, backends: &[&'static Descriptor]) {
        let mut found: Vec<(Domain, &'a Target, &'static Descriptor)> = Vec::new();
        for (domain, target) in self.lab.targets.each() {
            if let Some(d) = self.target(backends, domain, target) {
                found.push((domain, target, d));
            }
        }
        for (domain, target, d) in found {
            if domain == Domain::Hypervisor {
                self.capabilities(d, backends);
            }
            if domain == Domain::Router {
                self.router_backup(d, backends);
                self.boot_server(d);
            }
            if !d.manages.is_empty() {
                self.kinds_agree(domain, target, d, backends);
            }
        }
    }

    /// The backend a target names, its fields and its endpoint's form.
    fn target(
        &mut self,
        backends: &[&'static Descriptor],
        domain: Domain,
        target: &Target,
    ) -> Option<&'static Descriptor> {
        let p = path!["targets", domain.as_str()];
        let kind = target.kind.as_str();
        let serving: Vec<&str> = backends
            .iter()
            .filter(|d| d.serves(domain))
            .map(|d| d.kind)
            .collect();
        let Some(d) = find(backends, kind) else {
            let mut diag = Diagnostic::error(
                "target-kind",
                p.join("kind"),
                format!("unknown backend kind `{kind}`"),
            );
            diag = match did_you_mean(kind, serving.iter().copied()) {
                Some(s) => diag.help(format!("did you mean `{s}`?")),
                None => diag.help(format!(
                    "the {} domain is served by: {}",
                    domain.as_str(),
                    serving.join(", ")
                )),
            };
            self.push(diag);
            return None;
        };
        if !d.serves(domain) {
            self.push(
                Diagnostic::error(
                    "target-kind",
                    p.join("kind"),
                    format!("`{kind}` cannot serve the {} domain", domain.as_str()),
                )
                .help(format!("use one of: {}", serving.join(", "))),
            );
            return None;
        }
        let reads: Vec<&str> = d.fields.iter().map(|f| f.name).collect();
        for given in target.given() {
            if d.field(given).is_some() {
                continue;
            }
            let mut diag = Diagnostic::error(
                "target-field",
                p.join(given),
                format!("the `{kind}` backend does not read `{given}`"),
            );
            diag = match did_you_mean(given, reads.iter().copied()) {
                Some(s) => diag.help(format!("did you mean `{s}`?")),
                None if reads.is_empty() => {
                    diag.help(format!("remove it: `{kind}` reads nothing besides `kind`"))
                }
                None => diag.help(format!("remove it; `{kind}` reads: {}", reads.join(", "))),
            };
            self.push(diag);
        }
        for f in d.fields.iter().filter(|f| f.required) {
            if target.given().contains(&f.name) {
                continue;
            }
            let code = match f.name {
                "endpoint" => "target-endpoint",
                "credentials" => "target-credentials",
                _ => "target-field-missing",
            };
            let article = if f.name == "endpoint" { "an " } else { "" };
            self.push(
                Diagnostic::error_at_key(
                    code,
                    p.clone(),
                    format!("the {kind} target needs {article}`{}`", f.name),
                )
                .help(f.help.to_string()),
            );
        }
        if let Some(e) = &target.endpoint
            && d.field("endpoint").is_some()
            && !d.endpoint_schemes.is_empty()
            && !d.endpoint_schemes.iter().any(|s| e.starts_with(s))
        {
            let tls_only = d
                .endpoint_schemes
                .iter()
                .all(|s| *s == "https://" || *s == "wss://");
            let shown: String = e.chars().take(120).collect();
            self.push(if tls_only {
                Diagnostic::error(
                    "target-insecure",
                    p.join("endpoint"),
                    format!("endpoint `{shown}` is not TLS; credentials would travel in clear"),
                )
                .help(format!(
                    "use a {} endpoint; add `ca:` to trust a self-signed certificate",
                    d.endpoint_schemes.join(" or ")
                ))
            } else {
                Diagnostic::error(
                    "target-endpoint",
                    p.join("endpoint"),
                    format!("the `{kind}` backend cannot reach `{shown}`"),
                )
                .help(format!(
                    "it takes an endpoint starting with {}",
                    d.endpoint_schemes.join(" or ")
                ))
            });
        }
        Some(d)
    }

    /// Machines ask only for what the hypervisor backend can do.
    fn capabilities(&mut self, d: &Descriptor, backends: &[&'static Descriptor]) {
        for (name, m) in &self.lab.machines {
            for (cap, set) in [
                (Capability::Clone, m.clone.is_some()),
                (Capability::CloudInit, m.cloud_init.is_some()),
            ] {
                if !set || d.can(cap) {
                    continue;
                }
                let able: Vec<&str> = backends
                    .iter()
                    .filter(|b| b.serves(Domain::Hypervisor) && b.can(cap) && !b.manages.is_empty())
                    .map(|b| b.kind)
                    .collect();
                let field = cap.field();
                self.push(
                    Diagnostic::error(
                        "clone-unsupported",
                        path!["machines", name, field],
                        format!(
                            "the `{}` hypervisor backend does not do `{field}` in this build",
                            d.kind
                        ),
                    )
                    .help(format!(
                        "install the machine over PXE (`install: PROFILE`), or use a target that does: {}",
                        able.join(", ")
                    )),
                );
            }
        }
    }

    /// A router backend that cannot name the boot server leaves it to the person: a warning
    /// per segment, saying what to set where.
    fn boot_server(&mut self, d: &Descriptor) {
        if d.can(Capability::BootServer) || self.lab.router.is_none() {
            return;
        }
        for (net, server) in self.lab.boot_segments() {
            self.push(
                Diagnostic::warning(
                    "boot-server-manual",
                    path!["networks", &net, "dhcp"],
                    format!(
                        "the `{}` router backend cannot name the network boot server for `{net}`: set its DHCP server's next-server (\"TFTP server\") to {server} by hand",
                        d.kind
                    ),
                )
                .help("Debian's GRUB network images (UEFI network installs) take their server only from the DHCP server's answer; iPXE and pxelinux need nothing of the router. On pfSense: Services › DHCP Server › the segment › Network Booting › Next Server; on OPNsense (Kea): the subnet's next-server"),
            );
        }
    }

    /// `backup.router` needs a router backend that exports its configuration, with the
    /// fields it needs for that.
    fn router_backup(&mut self, d: &Descriptor, backends: &[&'static Descriptor]) {
        let wanted = self.lab.backup.as_ref().is_some_and(|b| b.router.is_some());
        if !wanted || self.lab.router.is_none() {
            return;
        }
        if d.can(Capability::ConfigBackup) {
            let given = self.lab.targets.router.given();
            for f in d.fields.iter().filter(|f| {
                f.needed_for == Some(Capability::ConfigBackup) && !given.contains(&f.name)
            }) {
                self.push(
                    Diagnostic::error_at_key(
                        "target-field-missing",
                        path!["targets", "router"],
                        format!("`backup.router` needs the {} target's `{}`", d.kind, f.name),
                    )
                    .help(f.help.to_string()),
                );
            }
            return;
        }
        let able: Vec<&str> = backends
            .iter()
            .filter(|b| b.serves(Domain::Router) && b.can(Capability::ConfigBackup))
            .map(|b| b.kind)
            .collect();
        let why = if d.manages.is_empty() {
            format!(
                "the router target is `{}`, which renders files from the lab: there is no router configuration to back up",
                d.kind
            )
        } else {
            format!(
                "the `{}` router backend cannot export the router's configuration in this build",
                d.kind
            )
        };
        self.push(
            Diagnostic::error("backup-router", path!["backup", "router"], why).help(format!(
                "remove `backup.router` and back the router up by its own means, or use a router target that can: {}",
                able.join(", ")
            )),
        );
    }

    /// What the lab says a thing runs (`router.kind`, `storage.kind`, `hosts.*.kind`) and the
    /// backend its target names must agree; a `local` target renders any of them.
    fn kinds_agree(
        &mut self,
        domain: Domain,
        target: &Target,
        d: &Descriptor,
        backends: &[&'static Descriptor],
    ) {
        let lab = self.lab;
        let kind = target.kind.as_str();
        let by: Vec<String> = backends
            .iter()
            .filter(|b| b.serves(domain))
            .flat_map(|b| {
                b.manages
                    .iter()
                    .map(move |m| format!("`{m}` by `{}`", b.kind))
            })
            .collect();
        let contradiction =
            |what: &str, says: &str, related: crate::source::TreePath, note: &str| {
                Diagnostic::error(
                    "target-contradicts",
                    path!["targets", domain.as_str(), "kind"],
                    format!(
                        "`{what}` says {says}, but `targets.{}.kind` is {kind}",
                        domain.as_str()
                    ),
                )
                .help(format!(
                    "make them name the same software: {} is served {}",
                    what,
                    by.join(", ")
                ))
                .related(related, note)
            };
        let mut found = Vec::new();
        match domain {
            Domain::Router => {
                if let Some(r) = &lab.router {
                    found.push((
                        "router.kind".to_string(),
                        lab_name(&r.kind),
                        path!["router", "kind"],
                        "the router's kind",
                    ));
                }
            }
            Domain::Storage => {
                if let Some(st) = &lab.storage {
                    found.push((
                        "storage.kind".to_string(),
                        lab_name(&st.kind),
                        path!["storage", "kind"],
                        "the NAS's kind",
                    ));
                }
            }
            Domain::Hypervisor => {
                for (name, h) in &lab.hosts {
                    found.push((
                        format!("hosts.{name}.kind"),
                        lab_name(&h.kind),
                        path!["hosts", name.as_str(), "kind"],
                        "the host's kind",
                    ));
                }
            }
            Domain::Pxe | Domain::Cluster => {}
        }
        for (what, says, related, note) in found {
            if !d.manages.contains(&says.as_str()) {
                let diag = contradiction(&what, &says, related, note);
                self.push(diag);
            }
        }
    }
}
