//! The platform: components the lab needs but switches off, and the settings of each
//! component that need no release catalog (the cluster domain checks versions against its
//! catalog).

#![allow(clippy::wildcard_imports)]

use super::*;
use crate::model::{Component, PLATFORM_COMPONENTS};

/// Whether `s` is 64 hex digits.
fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl<'a> Validator<'a> {
    pub(super) fn platform(&mut self) {
        let lab = self.lab;
        let Some(c) = &lab.cluster else { return };
        let p = &c.platform;
        if let Some(m) = &p.mirror
            && !(m.starts_with("https://") || m.starts_with("http://"))
            && (m.contains("://") || m.is_empty())
        {
            self.push(
                Diagnostic::error(
                    "platform-mirror",
                    path!["cluster", "platform", "mirror"],
                    format!("mirror `{m}` is neither an http(s) URL nor a directory"),
                )
                .help("an `https://` (or `http://`) URL, or a directory relative to the lab"),
            );
        }
        if let Some(r) = &p.registry
            && (r.is_empty() || r.contains("://") || r.contains(char::is_whitespace))
        {
            self.push(
                Diagnostic::error(
                    "platform-registry",
                    path!["cluster", "platform", "registry"],
                    format!("registry `{r}` is not a registry host"),
                )
                .help("a host with an optional port and path, without a scheme: `registry.home.lan:5000`"),
            );
        }
        for name in PLATFORM_COMPONENTS {
            let Some(comp) = p.component(name) else {
                continue;
            };
            self.component(name, comp);
        }
    }

    fn component(&mut self, name: &'static str, comp: &Component) {
        let lab = self.lab;
        let cp = path!["cluster", "platform", name];
        if comp.external && comp.enabled == Some(true) {
            self.push(
                Diagnostic::error(
                    "platform-external",
                    cp.join("external"),
                    format!("`{name}` is both installed by cloudlet (`enabled: true`) and by other means (`external: true`)"),
                )
                .help("keep one of them"),
            );
        }
        if comp.enabled == Some(false)
            && !comp.external
            && let Some(need) = lab.platform_need(name)
        {
            self.push(
                Diagnostic::error(
                    "platform-needed",
                    cp.join("enabled"),
                    format!("`{name}` is switched off but the lab needs it: {}", need.reason),
                )
                .related(need.path, "needed here")
                .help(format!(
                    "remove `enabled: false`, or say `external: true` if `{name}` is installed by other means"
                )),
            );
        }
        for (i, f) in comp.files.iter().enumerate() {
            let fp = cp.join("files").join(i);
            if !is_sha256(&f.sha256) {
                self.push(
                    Diagnostic::error(
                        "release-checksum",
                        fp.join("sha256"),
                        "not a SHA-256 (64 hexadecimal digits)",
                    )
                    .help("`sha256sum FILE` prints it"),
                );
            }
            if f.url.contains("://")
                && !(f.url.starts_with("https://") || f.url.starts_with("http://"))
            {
                self.push(
                    Diagnostic::error(
                        "release-url",
                        fp.join("url"),
                        format!("`{}` is neither an http(s) URL nor a file", f.url),
                    )
                    .help("an `https://` URL or a path relative to the lab"),
                );
            }
        }
        if !comp.files.is_empty() && comp.version.is_none() {
            self.push(
                Diagnostic::error(
                    "release-version",
                    cp.join("files"),
                    format!("`{name}` lists release files without naming their release"),
                )
                .help("add `version:` (the release the files belong to)"),
            );
        }
        if let Some(acme) = &comp.acme {
            let ap = cp.join("acme");
            if name != "cert_manager" {
                self.push(Diagnostic::error(
                    "acme-component",
                    ap.clone(),
                    "`acme` belongs to `cert_manager`",
                ));
                return;
            }
            let tls = lab
                .cluster
                .as_ref()
                .and_then(|c| c.ingress.as_ref())
                .and_then(|i| i.tls.as_ref());
            if tls.and_then(|t| t.cluster_issuer.as_ref()).is_none() {
                self.push(
                    Diagnostic::error(
                        "acme-issuer",
                        ap.clone(),
                        "an ACME account without an issuer: nothing names it",
                    )
                    .help("set `cluster.ingress.tls.cluster_issuer` to the ClusterIssuer's name"),
                );
            }
            let (local, domain) = acme.email.split_once('@').unwrap_or_default();
            if local.is_empty() || !is_dns_name(domain) || !domain.contains('.') {
                self.push(
                    Diagnostic::error(
                        "acme-email",
                        ap.join("email"),
                        format!("`{}` is not an e-mail address", acme.email),
                    )
                    .help("the ACME account's contact: `admin@example.com`"),
                );
            }
            if !acme.server.starts_with("https://") {
                self.push(Diagnostic::error(
                    "acme-server",
                    ap.join("server"),
                    format!("ACME directory `{}` is not an https:// URL", acme.server),
                ));
            }
            if acme.cloudflare.is_none()
                && let Some(wild) = tls
                    .into_iter()
                    .flat_map(|t| &t.hosts)
                    .find(|h| h.starts_with("*."))
            {
                self.push(
                    Diagnostic::error(
                        "acme-wildcard",
                        ap.clone(),
                        format!("the certificate covers `{wild}`: ACME issues wildcards only through DNS-01, and HTTP-01 is all this account can do"),
                    )
                    .help("add `cloudflare: {env: CLOUDFLARE_API_TOKEN}` (a token allowed to edit the zone's DNS)"),
                );
            }
        }
    }
}
