//! What a lab reads besides its own files, for a copy of the lab that runs elsewhere (the
//! watch in the lab's cluster): every secret and file it names, with where it names it.
//!
//! Left out on purpose: the cluster target's (a copy in the cluster reaches the cluster
//! through its service account, never with the install user's SSH key or an admin
//! kubeconfig), the install passwords (nothing but the boot service reads them), and
//! directories (a local backup target, the boot files' root): a copy elsewhere cannot have
//! this machine's directories.

use std::path::PathBuf;

use crate::model::{Lab, SecretRef};
use crate::path;
use crate::source::TreePath;

/// One reference: where the lab names it and what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Where in the lab.
    pub at: TreePath,
    /// An environment variable or a file (relative to the lab unless absolute).
    pub source: SecretRef,
}

impl Lab {
    /// Every environment variable and file the lab reads besides its own files and the
    /// cluster target's: the other targets' credentials and CAs, the platform's mirror CA,
    /// release files and ACME DNS token, the apps' files and secrets, the backups' key and
    /// stores' credentials, the watch's webhooks. In the lab's order; each once.
    pub fn references(&self) -> Vec<Reference> {
        let mut out: Vec<Reference> = Vec::new();
        let mut add = |at: TreePath, source: SecretRef| {
            if !out.iter().any(|r| r.source == source) {
                out.push(Reference { at, source });
            }
        };
        let file = |p: &PathBuf| SecretRef::File(p.clone());
        for (domain, t) in self.targets.each() {
            if domain == crate::Domain::Cluster {
                continue;
            }
            let d = domain.as_str();
            if let Some(c) = &t.credentials {
                add(path!["targets", d, "credentials"], c.clone());
            }
            if let Some(c) = &t.gui_credentials {
                add(path!["targets", d, "gui_credentials"], c.clone());
            }
            if let Some(ca) = &t.ca {
                add(path!["targets", d, "ca"], file(ca));
            }
        }
        if let Some(c) = &self.cluster {
            let p = &c.platform;
            if let Some(ca) = &p.mirror_ca {
                add(path!["cluster", "platform", "mirror_ca"], file(ca));
            }
            let components = [
                ("calico", &p.calico),
                ("metallb", &p.metallb),
                ("traefik", &p.traefik),
                ("csi_driver_nfs", &p.csi_driver_nfs),
                ("cert_manager", &p.cert_manager),
            ];
            for (name, comp) in components {
                for (i, f) in comp.files.iter().enumerate() {
                    if !f.url.starts_with("https://") && !f.url.starts_with("http://") {
                        add(
                            path!["cluster", "platform", name, "files", i, "url"],
                            SecretRef::File(PathBuf::from(&f.url)),
                        );
                    }
                }
                if let Some(token) = comp.acme.as_ref().and_then(|a| a.cloudflare.as_ref()) {
                    add(
                        path!["cluster", "platform", name, "acme", "cloudflare"],
                        token.clone(),
                    );
                }
            }
            for (name, app) in &c.apps {
                for (mount, f) in &app.files {
                    add(
                        path!["cluster", "apps", name.as_str(), "files", mount.as_str()],
                        file(f),
                    );
                }
                for (key, r) in &app.secrets {
                    add(
                        path!["cluster", "apps", name.as_str(), "secrets", key.as_str()],
                        r.clone(),
                    );
                }
                for (key, r) in &app.secret_files {
                    add(
                        path![
                            "cluster",
                            "apps",
                            name.as_str(),
                            "secret_files",
                            key.as_str()
                        ],
                        r.clone(),
                    );
                }
            }
        }
        if let Some(b) = &self.backup {
            add(path!["backup", "key"], b.key.clone());
            for (name, t) in &b.targets {
                let at = |field: &str| path!["backup", "targets", name.as_str(), field];
                if let Some(s3) = &t.s3 {
                    add(at("s3").join("access_key"), s3.access_key.clone());
                    add(at("s3").join("secret_key"), s3.secret_key.clone());
                    if let Some(ca) = &s3.ca {
                        add(at("s3").join("ca"), file(ca));
                    }
                }
                if let Some(sftp) = &t.sftp {
                    if let Some(id) = &sftp.identity {
                        add(at("sftp").join("identity"), file(id));
                    }
                    if let Some(kh) = &sftp.known_hosts {
                        add(at("sftp").join("known_hosts"), file(kh));
                    }
                }
            }
        }
        if let Some(w) = &self.watch {
            for (i, h) in w.webhooks.iter().enumerate() {
                add(path!["watch", "webhooks", i, "url"], h.url.clone());
            }
        }
        out
    }
}
