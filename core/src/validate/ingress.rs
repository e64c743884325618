//! The ingress: host routes, their TLS and their apps.

#![allow(clippy::wildcard_imports)]

use super::*;

impl<'a> Validator<'a> {
    pub(super) fn ingress_routes(&mut self) {
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
}
