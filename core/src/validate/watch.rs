//! The watch in the lab's cluster: a cluster it can run in, a sane cadence, and references it
//! can carry (each environment variable becomes a variable of its pod, so a name a shell
//! takes).

#![allow(clippy::wildcard_imports)]

use super::*;
use crate::model::SecretRef;

/// Whether `name` is an environment variable name a pod (and a Secret's key) takes.
fn env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl<'a> Validator<'a> {
    pub(super) fn watch(&mut self) {
        let lab = self.lab;
        let Some(w) = &lab.watch else { return };
        let kind = lab.targets.cluster.kind.as_str();
        if kind != "kubernetes" && kind != "kubeadm" {
            self.push(
                Diagnostic::error_at_key(
                    "watch-cluster",
                    path!["watch"],
                    format!("the watch runs in the lab's cluster, but `targets.cluster` is `{kind}`"),
                )
                .help("set `targets.cluster.kind` to `kubernetes` (a cluster you have) or `kubeadm` (the one cloudlet makes), or run `cloudlet watch` on a machine instead"),
            );
        }
        if w.replicas == 0 {
            self.push(
                Diagnostic::error(
                    "watch-replicas",
                    path!["watch", "replicas"],
                    "a watch of 0 replicas watches nothing",
                )
                .help("2 (one leads, one takes over); remove the `watch` block to stop it"),
            );
        }
        if w.interval.0 < 10 {
            self.push(
                Diagnostic::error(
                    "watch-interval",
                    path!["watch", "interval"],
                    format!(
                        "an interval of {} is shorter than a round's checks may take",
                        w.interval
                    ),
                )
                .help("10s or more; 1m is usual"),
            );
        }
        if w.lease.0 < 5 {
            self.push(
                Diagnostic::error(
                    "watch-lease",
                    path!["watch", "lease"],
                    format!("a Lease of {} is renewed faster than the API server answers on a busy cluster", w.lease),
                )
                .help("5s or more; 15s is usual"),
            );
        }
        match w.image.as_deref().map(str::trim) {
            None => self.push(
                Diagnostic::error_at_key(
                    "watch-image",
                    path!["watch"],
                    "the watch needs its image: cloudlet publishes none yet",
                )
                .help("add `image: REGISTRY/cloudlet:VERSION`, an image holding the `cloudlet` binary on its PATH (and `ssh` for SFTP backup targets)"),
            ),
            Some("") => self.push(
                Diagnostic::error("watch-image", path!["watch", "image"], "the image is empty")
                    .help("name an image holding the `cloudlet` binary on its PATH"),
            ),
            Some(_) => {}
        }
        for r in lab.references() {
            if let SecretRef::Env(var) = &r.source
                && !env_name(var)
            {
                self.push(
                    Diagnostic::error(
                        "watch-env",
                        r.at.clone(),
                        format!("`{var}` is not a name the watch's pod can be given as an environment variable"),
                    )
                    .help("letters, digits and `_`, not starting with a digit"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn env_names() {
        assert!(super::env_name("SLACK_URL"));
        assert!(super::env_name("_x1"));
        assert!(!super::env_name("1X"));
        assert!(!super::env_name("A-B"));
        assert!(!super::env_name(""));
    }
}
