//! Network boot and install configs: who boots over the network, and the install users.

#![allow(clippy::wildcard_imports)]

use super::*;

impl<'a> Validator<'a> {
    pub(super) fn network_boot(&mut self) {
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

    pub(super) fn install_users(&mut self) {
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
}
