//! Backups: every class names a target the lab has, runs on a schedule a timer and a CronJob
//! can both keep, keeps at least one snapshot, and backs up what cloudlet can reach.

#![allow(clippy::wildcard_imports)]

use super::*;
use crate::model::BackupClass;

/// The shortest schedule: a backup every 5 minutes.
const SHORTEST: u64 = 5 * 60;
const DAY: u64 = 86_400;

/// Whether a calendar schedule (a systemd timer, a CronJob) keeps `every` seconds exactly:
/// whole minutes dividing an hour, whole hours dividing a day, or whole days.
fn schedulable(every: u64) -> bool {
    (every < 3600 && every.is_multiple_of(60) && 3600_u64.is_multiple_of(every))
        || (every.is_multiple_of(3600) && DAY.is_multiple_of(every))
        || every.is_multiple_of(DAY)
}

impl<'a> Validator<'a> {
    pub(super) fn backups(&mut self) {
        let lab = self.lab;
        let Some(b) = &lab.backup else { return };
        if b.targets.is_empty() {
            self.push(
                Diagnostic::error(
                    "backup-targets",
                    path!["backup", "targets"],
                    "no backup target: backups need somewhere to go",
                )
                .help("add one: `targets: {nas: {dir: /mnt/backups/lab}}`"),
            );
        }
        for (name, t) in &b.targets {
            if !is_dns_label(name) {
                self.push(Diagnostic::error_at_key(
                    "backup-target-name",
                    path!["backup", "targets", name],
                    format!("target name `{name}` is not a DNS label"),
                ));
            }
            let tp = path!["backup", "targets", name];
            let kinds = [t.dir.is_some(), t.s3.is_some(), t.sftp.is_some()]
                .into_iter()
                .filter(|k| *k)
                .count();
            if kinds != 1 {
                self.push(
                    Diagnostic::error(
                        "backup-target-kind",
                        tp.clone(),
                        format!(
                            "target `{name}` needs exactly one of `dir`, `sftp` and `s3`{}",
                            if kinds > 1 { ", not several" } else { "" }
                        ),
                    )
                    .help("`dir: /mnt/backups/lab`, `sftp: {host: nas.lan, user: backup, path: /tank/backups/lab}`, or `s3: {endpoint: https://minio.lan:9000, bucket: backups, access_key: {env: S3_KEY}, secret_key: {env: S3_SECRET}}`"),
                );
            }
            if t.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
                self.push(Diagnostic::error(
                    "backup-target-dir",
                    tp.join("dir"),
                    "an empty directory",
                ));
            }
            if let Some(s3) = &t.s3 {
                self.s3_target(&tp.join("s3"), s3);
            }
            if let Some(sftp) = &t.sftp {
                self.sftp_target(&tp.join("sftp"), sftp);
            }
        }
        for (class, c) in b.classes() {
            self.backup_class(class, c);
        }
        if let Some(v) = &b.volumes {
            self.backup_class("volumes", &v.as_class());
            self.volume_backup(v);
        }
        if b.router.is_some() && lab.router.is_none() {
            self.push(
                Diagnostic::error(
                    "backup-router",
                    path!["backup", "router"],
                    "`backup.router` backs up the lab's router, but the lab has no `router`",
                )
                .help("remove `backup.router`, or declare the router (`router: {kind: opnsense, ...}`)"),
            );
        }
        if b.cluster.is_some()
            && !["kubeadm", "kubernetes"].contains(&lab.targets.cluster.kind.as_str())
        {
            self.push(
                Diagnostic::error(
                    "backup-cluster",
                    path!["backup", "cluster"],
                    format!(
                        "`backup.cluster` backs up a running cluster (an etcd snapshot of the one cloudlet makes, the objects of one made by other means), but the cluster target is `{}`",
                        lab.targets.cluster.kind
                    ),
                )
                .help("set `targets.cluster.kind: kubeadm` or `kubernetes`, or remove `backup.cluster`"),
            );
        }
    }

    fn s3_target(&mut self, p: &TreePath, s3: &crate::model::S3Target) {
        let host = s3
            .endpoint
            .strip_prefix("https://")
            .map(|h| h.trim_end_matches('/'));
        match host {
            None => self.push(
                Diagnostic::error(
                    "backup-s3-endpoint",
                    p.join("endpoint"),
                    format!("`{}` is not an https:// address: credentials and data would travel in clear", s3.endpoint),
                )
                .help("serve the store over TLS and write `https://HOST[:PORT]`; give `ca` when its certificate is the lab's own"),
            ),
            Some(h) if h.is_empty() || h.contains('/') || h.contains('?') => self.push(
                Diagnostic::error(
                    "backup-s3-endpoint",
                    p.join("endpoint"),
                    format!("`{}` is not `https://HOST[:PORT]`", s3.endpoint),
                )
                .help("the bucket and the prefix have fields of their own"),
            ),
            Some(_) => {}
        }
        // S3's bucket naming rules: 3–63 of a-z, 0-9, `.` and `-`, starting and ending with a
        // letter or digit.
        let b = &s3.bucket;
        let ok = (3..=63).contains(&b.len())
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
            && b.starts_with(|c: char| c.is_ascii_alphanumeric())
            && b.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            self.push(
                Diagnostic::error(
                    "backup-s3-bucket",
                    p.join("bucket"),
                    format!("`{b}` is not a bucket name"),
                )
                .help("3 to 63 lower-case letters, digits, `.` and `-`, starting and ending with a letter or digit"),
            );
        }
        let pre = &s3.prefix;
        if pre.starts_with('/')
            || pre.ends_with('/')
            || (!pre.is_empty()
                && pre
                    .split('/')
                    .any(|s| s.is_empty() || s == "." || s == ".."))
        {
            self.push(
                Diagnostic::error(
                    "backup-s3-prefix",
                    p.join("prefix"),
                    format!("`{pre}` is not a path inside the bucket"),
                )
                .help("segments separated by `/`, without a leading or trailing `/`, `.` or `..` (`labs/home`)"),
            );
        }
    }

    fn sftp_target(&mut self, p: &TreePath, t: &crate::model::SftpTarget) {
        use crate::model::{ssh_host_ok, ssh_user_ok};
        if !ssh_host_ok(&t.host) {
            self.push(
                Diagnostic::error(
                    "backup-sftp-host",
                    p.join("host"),
                    format!("`{}` is not a host name or address", t.host),
                )
                .help("a name (`nas.lan`) or an address (`192.168.1.20`); the user and the port have fields of their own"),
            );
        }
        if !ssh_user_ok(&t.user) {
            self.push(
                Diagnostic::error(
                    "backup-sftp-user",
                    p.join("user"),
                    format!("`{}` is not a user name", t.user),
                )
                .help("letters, digits, `.`, `-` and `_`, not starting with `-`"),
            );
        }
        if t.path.trim().is_empty() || t.path.chars().any(char::is_control) {
            self.push(
                Diagnostic::error(
                    "backup-sftp-path",
                    p.join("path"),
                    "not a directory's path",
                )
                .help("the repository's directory on the server: `/tank/backups/lab`, or `backups/lab` under the user's home"),
            );
        }
        if t.port == 0 {
            self.push(Diagnostic::error(
                "backup-sftp-port",
                p.join("port"),
                "port 0 is not a port",
            ));
        }
    }

    /// Volume backups run in pods: their target must be one pods reach, and the lab must
    /// have apps with volumes in a cluster cloudlet applies.
    fn volume_backup(&mut self, v: &crate::model::VolumeBackup) {
        let lab = self.lab;
        let b = lab.backup.as_ref().expect("backup");
        if let Some(t) = b.targets.get(&v.target)
            && t.s3.is_none()
            && t.sftp.is_none()
        {
            self.push(
                Diagnostic::error(
                    "backup-volumes-target",
                    path!["backup", "volumes", "target"],
                    format!(
                        "volume backups run in the cluster's pods, which reach only an `s3` or `sftp` target, not the directory of target `{}`",
                        v.target
                    ),
                )
                .help("give `volumes` an `s3` target (a MinIO or Garage on the NAS will do) or an `sftp` one"),
            );
        }
        if let Some(sftp) = b.targets.get(&v.target).and_then(|t| t.sftp.as_ref()) {
            // A pod has no agent and no ~/.ssh: the key and the host key go in its Secret.
            for (field, given) in [
                ("identity", sftp.identity.is_some()),
                ("known_hosts", sftp.known_hosts.is_some()),
            ] {
                if !given {
                    self.push(
                        Diagnostic::error(
                            "backup-volumes-sftp",
                            path!["backup", "volumes", "target"],
                            format!(
                                "volume backups to SFTP target `{}` run in pods, which have no agent and no ~/.ssh: the target needs `{field}`",
                                v.target
                            ),
                        )
                        .help(if field == "identity" {
                            "give the target `identity: FILE`, a key without a passphrase that the server takes"
                        } else {
                            "give the target `known_hosts: FILE` (`ssh-keyscan -p PORT HOST`, checked against the server)"
                        }),
                    );
                }
            }
        }
        if v.image.trim().is_empty() || v.image.contains(char::is_whitespace) {
            self.push(Diagnostic::error(
                "backup-volumes-image",
                path!["backup", "volumes", "image"],
                format!("`{}` is not an image reference", v.image),
            ));
        }
        let Some(c) = &lab.cluster else { return };
        for (name, app) in &c.apps {
            for (i, vol) in app.volumes.iter().enumerate() {
                if vol.database && app.dump.is_none() {
                    self.push(
                        Diagnostic::warning(
                            "backup-volumes-database",
                            path!["cluster", "apps", name, "volumes", i, "database"],
                            format!(
                                "volume `{}` of `{name}` holds a database server's files: a copy of them taken while it runs may not load",
                                vol.name
                            ),
                        )
                        .help("give the app a `dump` (`dump: {kind: postgres, password: POSTGRES_PASSWORD}`, `kind: mysql`, or a `command` that writes into $DUMP_DIR), taken into the same snapshot right before it, or accept a crash-consistent copy"),
                    );
                }
            }
        }
    }

    /// Each app's `dump`: it goes into the app's volume snapshots, so the lab backs them up;
    /// a database dump's password is one of the app's secrets and its database a name the
    /// server takes; a command is given.
    pub(super) fn dumps(&mut self) {
        let lab = self.lab;
        let Some(c) = &lab.cluster else { return };
        for (name, app) in &c.apps {
            let Some(d) = &app.dump else { continue };
            let dp = path!["cluster", "apps", name, "dump"];
            let volumes = lab.backup.as_ref().and_then(|b| b.volumes.as_ref());
            if volumes.is_none() || app.volumes.is_empty() {
                self.push(
                    Diagnostic::error_at_key(
                        "dump-without-backup",
                        dp.clone(),
                        format!(
                            "the dump of `{name}` goes into its volume snapshots, but {}",
                            if volumes.is_none() {
                                "the lab backs up no volumes (`backup.volumes`)"
                            } else {
                                "the app has no volumes"
                            }
                        ),
                    )
                    .help("add `backup.volumes: {target: ..., every: 6h}` with an s3 or sftp target, and the database's volume"),
                );
            }
            match d.kind {
                crate::model::DumpKind::Postgres | crate::model::DumpKind::Mysql => {
                    let (tool, port) = match d.kind {
                        crate::model::DumpKind::Mysql => ("mysqldump", 3306),
                        _ => ("pg_dump", 5432),
                    };
                    if app.ports.is_empty() {
                        self.push(
                            Diagnostic::error_at_key(
                                "dump-port",
                                dp.clone(),
                                format!("{tool} reaches `{name}` through its Service, but the app has no port"),
                            )
                            .help(format!("add `ports: [{{port: {port}}}]` to the app")),
                        );
                    }
                    if let Some(key) = &d.password
                        && !app.secrets.contains_key(key)
                    {
                        let known: Vec<&str> = app.secrets.keys().map(String::as_str).collect();
                        self.push(
                            Diagnostic::error(
                                "dump-password",
                                dp.join("password"),
                                format!("`{key}` is not one of the secrets of `{name}`"),
                            )
                            .help(match did_you_mean(key, known.iter().copied()) {
                                Some(k) => format!("did you mean `{k}`?"),
                                None => "name the key of `secrets:` that holds the database user's password".into(),
                            }),
                        );
                    }
                    if !d.command.is_empty() {
                        self.push(
                            Diagnostic::error(
                                "dump-command",
                                dp.join("command"),
                                format!(
                                    "a {} dump runs {tool}: `command` is for `kind: command`",
                                    d.kind.name()
                                ),
                            )
                            .help("remove `command`, or set `kind: command`"),
                        );
                    }
                    let db = d.database_of(name);
                    if let Some(why) = d.kind.database_problem(db) {
                        let message = format!("`{db}` cannot be the dump's database: {why}");
                        let diag = if d.database.is_some() {
                            Diagnostic::error("dump-database", dp.join("database"), message)
                        } else {
                            Diagnostic::error_at_key("dump-database", dp.clone(), message)
                        };
                        self.push(diag.help(
                            "name the database with letters, digits, `_` and `-` (`database: wiki`)",
                        ));
                    }
                }
                crate::model::DumpKind::Command => {
                    if d.verify.is_some() {
                        self.push(
                            Diagnostic::error(
                                "dump-verify",
                                dp.join("verify"),
                                "only a postgres or mysql dump is loaded and asked a query; cloudlet cannot load what a command wrote",
                            )
                            .help("remove `verify`: backup verify proves this dump's files at L3"),
                        );
                    }
                    if d.command.first().is_none_or(|c| c.trim().is_empty()) {
                        self.push(
                            Diagnostic::error_at_key(
                                "dump-command",
                                dp.clone(),
                                format!("the dump of `{name}` runs a command, but none is given"),
                            )
                            .help("`command: [sh, -c, \"sqlite3 /data/app.db .dump > $DUMP_DIR/app.sql\"]`"),
                        );
                    }
                }
            }
        }
    }

    fn backup_class(&mut self, class: &'static str, c: &BackupClass) {
        let b = self.lab.backup.as_ref().expect("backup");
        let cp = path!["backup", class];
        if !b.targets.contains_key(&c.target) {
            let known: Vec<&str> = b.targets.keys().map(String::as_str).collect();
            self.push(
                Diagnostic::error(
                    "backup-target",
                    cp.join("target"),
                    format!("no backup target `{}`", c.target),
                )
                .help(if known.is_empty() {
                    "define it under `backup.targets`".to_string()
                } else {
                    format!("one of: {}", known.join(", "))
                }),
            );
        }
        let every = c.every.0;
        if every < SHORTEST {
            self.push(
                Diagnostic::error(
                    "backup-every",
                    cp.join("every"),
                    format!(
                        "every {} is more often than a backup can be kept up",
                        c.every
                    ),
                )
                .help("5m at the shortest"),
            );
        } else if !schedulable(every) {
            self.push(
                Diagnostic::error(
                    "backup-every",
                    cp.join("every"),
                    format!(
                        "every {} does not divide a day, so no calendar schedule keeps it",
                        c.every
                    ),
                )
                .help("minutes that divide an hour (15m, 30m), hours that divide a day (1h, 2h, 6h, 12h), or whole days (1d, 7d)"),
            );
        }
        let k = &c.keep;
        for (rule, n) in [
            ("last", k.last),
            ("hourly", k.hourly),
            ("daily", k.daily),
            ("weekly", k.weekly),
            ("monthly", k.monthly),
        ] {
            if n == Some(0) {
                self.push(
                    Diagnostic::error(
                        "backup-keep",
                        cp.join("keep").join(rule),
                        format!("`keep.{rule}: 0` keeps nothing by that rule"),
                    )
                    .help("leave the rule out, or keep at least 1"),
                );
            }
        }
    }
}
