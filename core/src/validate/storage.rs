//! Storage: volumes, their exports and snapshots, and mount paths.

#![allow(clippy::wildcard_imports)]

use super::*;

impl<'a> Validator<'a> {
    pub(super) fn volumes(&mut self) {
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
                if let (Some(s), Some(e)) = (
                    &v.snapshots,
                    lab.storage
                        .as_ref()
                        .and_then(|st| st.exports.get(&v.export)),
                ) {
                    let source =
                        format!("{}/{}", e.path.trim_end_matches('/'), v.sub_path_of(name));
                    self.replication(s, &source, vp.join("snapshots"));
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
                if let Some(s) = &e.snapshots {
                    self.replication(s, &e.path, path!["storage", "exports", ename, "snapshots"]);
                }
            }
        }
    }

    /// A snapshot policy's replication, at `at` (the policy), of the dataset mounted at
    /// `source`: a dataset name to copy to, not within the source (nor the source within it)
    /// when it stays on the NAS, kept for whole hours.
    fn replication(&mut self, s: &crate::model::SnapshotPolicy, source: &str, at: TreePath) {
        let Some(r) = &s.replicate else { return };
        let rp = at.join("replicate");
        let to = r.to.trim_end_matches('/');
        let bad = to.is_empty()
            || to.starts_with('/')
            || !to.contains('/')
            || to.split('/').any(|p| p.is_empty() || p == "." || p == "..")
            || !to
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c));
        if bad {
            self.push(
                Diagnostic::error(
                    "replicate-to",
                    rp.join("to"),
                    format!("`{}` is not a dataset to replicate into", r.to),
                )
                .help(
                    "name a dataset below a pool, as ZFS does: `backup/lab/media` (no leading `/`)",
                ),
            );
        } else if r.ssh.is_none() {
            let src = source.trim_start_matches("/mnt/").trim_end_matches('/');
            let within =
                |a: &str, b: &str| a == b || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'));
            if within(to, src) || within(src, to) {
                self.push(
                    Diagnostic::error(
                        "replicate-to",
                        rp.join("to"),
                        format!("`{to}` and the replicated dataset `{src}` hold one another: the copies would be copied again"),
                    )
                    .help("replicate into another pool (`backup/...`), or over `ssh` to another machine"),
                );
            }
        }
        if let Some(k) = r.keep_for
            && (k.0 == 0 || !k.0.is_multiple_of(3600))
        {
            self.push(
                Diagnostic::error(
                    "replicate-keep",
                    rp.join("keep_for"),
                    "TrueNAS keeps replicated snapshots for whole hours, days or weeks",
                )
                .help("`keep_for: 30d`, or leave it out to keep them as long as the source does"),
            );
        }
        if let Some(ssh) = &r.ssh
            && ssh.trim().is_empty()
        {
            self.push(Diagnostic::error(
                "replicate-ssh",
                rp.join("ssh"),
                "name the NAS's SSH connection to the other machine",
            ));
        }
    }

    /// Mount paths: one thing per path in a container, one export per path on the NAS.
    pub(super) fn mount_paths(&mut self) {
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
}
