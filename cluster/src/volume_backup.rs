//! Volume backups as the plan holds them: per app with volumes, a Secret of references (the
//! repository key and the store's keys, read by the provider at apply time) and a CronJob
//! that runs stock restic over the app's claims, mounted read-only, into the lab's S3 or SFTP
//! target (restic's image carries OpenSSH's client; the key and the server's host key are
//! mounted from the Secret).
//! The CronJob's script makes the repository when the target has none, backs up every volume
//! of the app as one snapshot (host: the lab, tags `cloudlet:volumes` and
//! `cloudlet-app:NAMESPACE/APP`, path `/data`, each volume a directory at the top of the
//! snapshot's tree, so `restic restore ID --target /data` puts them back where the claims are
//! mounted), then applies the retention.

use std::collections::BTreeMap;

use cloudlet_core::model::{App, Lab, S3Target, SftpTarget, VolumeBackup, cron_schedule, ssh_args};
use cloudlet_core::resource::Body;
use cloudlet_core::{Resource, ResourceId};
use serde_json::json;

use crate::{id, meta, secret_ref, secret_refs, verbatim_file_ref};

/// Where the app's volumes are mounted in the backup pod: `/data/VOLUME`.
pub const MOUNT_ROOT: &str = "/data";
/// Where the store's CA is mounted.
pub const CA_PATH: &str = "/etc/cloudlet-backup/ca.crt";
/// Where an SFTP target's key (`id`) and host key (`known_hosts`) are mounted.
pub const SSH_DIR: &str = "/etc/cloudlet-backup/ssh";

/// The store an app's volumes go to: a target a pod can reach.
#[derive(Debug, Clone, Copy)]
enum Store<'a> {
    S3(&'a S3Target),
    Sftp(&'a SftpTarget),
}

impl Store<'_> {
    fn repository(&self) -> String {
        match self {
            Store::S3(s3) => s3.restic_repository(),
            Store::Sftp(t) => t.restic_repository(),
        }
    }

    /// restic's options for the store inside the pod (after `restic`).
    fn flags(&self) -> String {
        match self {
            Store::S3(s3) if s3.ca.is_some() => format!(" --cacert {CA_PATH}"),
            Store::S3(_) => String::new(),
            Store::Sftp(t) => {
                let dir = std::path::Path::new(SSH_DIR);
                let args = ssh_args(
                    &t.host,
                    t.port,
                    &t.user,
                    Some(&dir.join("id")),
                    Some(&dir.join("known_hosts")),
                );
                format!(
                    " -o {}",
                    sh(&format!("sftp.command=ssh {}", args.join(" ")))
                )
            }
        }
    }

    /// What the app's backup Secret holds for the store besides the repository key.
    fn refs(&self) -> Vec<(&'static str, BTreeMap<&'static str, String>)> {
        match self {
            Store::S3(s3) => {
                let mut r = vec![
                    ("AWS_ACCESS_KEY_ID", secret_ref(&s3.access_key)),
                    ("AWS_SECRET_ACCESS_KEY", secret_ref(&s3.secret_key)),
                ];
                if let Some(ca) = &s3.ca {
                    r.push(("ca.crt", verbatim_file_ref(ca)));
                }
                r
            }
            Store::Sftp(t) => t
                .identity
                .iter()
                .map(|i| ("ssh-identity", verbatim_file_ref(i)))
                .chain(
                    t.known_hosts
                        .iter()
                        .map(|k| ("ssh-known-hosts", verbatim_file_ref(k))),
                )
                .collect(),
        }
    }

    /// The container's environment for the store, from the Secret `obj`.
    fn env(&self, obj: &str) -> Vec<serde_json::Value> {
        let from_secret = |var: &str| json!({"name": var, "valueFrom": {"secretKeyRef": {"name": obj, "key": var}}});
        match self {
            Store::S3(_) => vec![
                from_secret("AWS_ACCESS_KEY_ID"),
                from_secret("AWS_SECRET_ACCESS_KEY"),
            ],
            Store::Sftp(_) => Vec::new(),
        }
    }

    /// The pod's volume and the container's mount of the store's files, when it has any.
    fn files(&self, obj: &str) -> Option<(serde_json::Value, serde_json::Value)> {
        match self {
            Store::S3(s3) => s3.ca.as_ref().map(|_| {
                (
                    json!({
                        "name": "backup-ca",
                        "secret": {"secretName": obj, "items": [{"key": "ca.crt", "path": "ca.crt"}]},
                    }),
                    json!({
                        "name": "backup-ca",
                        "mountPath": CA_PATH.trim_end_matches("/ca.crt"),
                        "readOnly": true,
                    }),
                )
            }),
            Store::Sftp(_) => Some((
                json!({
                    "name": "backup-ssh",
                    "secret": {"secretName": obj, "defaultMode": 0o400, "items": [
                        {"key": "ssh-identity", "path": "id"},
                        {"key": "ssh-known-hosts", "path": "known_hosts"},
                    ]},
                }),
                json!({"name": "backup-ssh", "mountPath": SSH_DIR, "readOnly": true}),
            )),
        }
    }
}

/// The tag of an app's volume snapshots.
pub fn app_tag(ns: &str, app: &str) -> String {
    format!("cloudlet-app:{ns}/{app}")
}

/// The name of the app's backup CronJob and Secret.
pub fn object_name(app: &str) -> String {
    format!("{app}-backup")
}

/// Single-quoted for a POSIX shell.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script the backup container runs (`sh -c`): init when missing, back up, forget.
pub fn script(lab: &Lab, ns: &str, app: &str) -> Option<String> {
    let b = lab.backup.as_ref()?;
    let v = b.volumes.as_ref()?;
    let ca = store(lab)?.flags();
    let (host, tag) = (sh(&lab.name), sh(&app_tag(ns, app)));
    let mut out = format!(
        "set -eu\n\
         restic{ca} cat config >/dev/null 2>&1 || restic{ca} init\n\
         cd {MOUNT_ROOT}\n\
         restic{ca} backup --host {host} --tag cloudlet:volumes --tag {tag} .\n"
    );
    let k = &v.keep;
    if !k.keeps_all() {
        let mut rules = String::new();
        for (flag, n) in [
            ("last", k.last),
            ("hourly", k.hourly),
            ("daily", k.daily),
            ("weekly", k.weekly),
            ("monthly", k.monthly),
        ] {
            if let Some(n) = n {
                rules.push_str(&format!(" --keep-{flag} {n}"));
            }
        }
        let both = sh(&format!("cloudlet:volumes,{}", app_tag(ns, app)));
        out.push_str(&format!(
            "restic{ca} forget --host {host} --tag {both}{rules}\n"
        ));
    }
    Some(out)
}

/// The app's backup Secret and CronJob, when the lab backs up volumes and the app has any.
pub fn objects(lab: &Lab, name: &str, app: &App, ns: &str, out: &mut Vec<Resource>) {
    let (Some(b), Some((v, store))) = (&lab.backup, volumes_target(lab, app)) else {
        return;
    };
    let Some(script) = script(lab, ns, name) else {
        return;
    };
    let obj = object_name(name);
    let nsid = id("namespace", None, ns);
    let mut refs = BTreeMap::from([("RESTIC_PASSWORD", secret_ref(&b.key))]);
    refs.extend(store.refs());
    let sid = secret_refs(lab, ns, &obj, name, refs, out);
    let mut deps: Vec<ResourceId> = vec![nsid, sid];
    deps.extend(app.volumes.iter().map(|vol| {
        id(
            "persistentvolumeclaim",
            Some(ns),
            &format!("{name}-{}", vol.name),
        )
    }));
    let metadata =
        serde_json::to_value(meta(lab, Some(ns), obj.as_str(), Some(name))).unwrap_or_default();
    let mut job = Resource::new(
        id("cronjob", Some(ns), &obj),
        Body::new(&json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": metadata,
            "spec": {
                "schedule": cron_schedule(v.every.0),
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {"spec": {
                    "backoffLimit": 2,
                    "ttlSecondsAfterFinished": 86_400,
                    "template": pod_template(lab, name, app, &obj, &script, true),
                }},
            },
        })),
    );
    job.depends_on = deps;
    out.push(job);
}

/// Whether the lab backs up the app's volumes (it has some, and the lab's `backup.volumes`
/// names an S3 or SFTP target).
pub fn backed_up(lab: &Lab, app: &App) -> bool {
    volumes_target(lab, app).is_some()
}

/// The store `backup.volumes` names, when a pod can reach it (S3 or SFTP).
fn store(lab: &Lab) -> Option<Store<'_>> {
    let b = lab.backup.as_ref()?;
    let t = b.targets.get(&b.volumes.as_ref()?.target)?;
    t.s3.as_ref()
        .map(Store::S3)
        .or_else(|| t.sftp.as_ref().map(Store::Sftp))
}

/// The lab's volume backups and their store, when it backs them up and `app` has any.
fn volumes_target<'a>(lab: &'a Lab, app: &App) -> Option<(&'a VolumeBackup, Store<'a>)> {
    if app.volumes.is_empty() {
        return None;
    }
    Some((lab.backup.as_ref()?.volumes.as_ref()?, store(lab)?))
}

/// The pod that runs `script` with stock restic over the app's claims at `/data/VOLUME`
/// (read-only for a backup, writable for a restore), its keys from the app's backup Secret
/// `obj`, the store's CA mounted when the lab names one.
fn pod_template(
    lab: &Lab,
    name: &str,
    app: &App,
    obj: &str,
    script: &str,
    read_only: bool,
) -> serde_json::Value {
    if volumes_target(lab, app).is_none() {
        return serde_json::Value::Null;
    }
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for vol in &app.volumes {
        let claim = format!("{name}-{}", vol.name);
        volumes.push(json!({
            "name": format!("v-{}", vol.name),
            "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only},
        }));
        mounts.push(json!({
            "name": format!("v-{}", vol.name),
            "mountPath": format!("{MOUNT_ROOT}/{}", vol.name),
            "readOnly": read_only,
        }));
    }
    // A backup's database dump: taken first, into the same snapshot.
    let init: Vec<serde_json::Value> = match (&app.dump, read_only) {
        (Some(d), true) => {
            volumes.push(json!({"name": "dump", "emptyDir": {}}));
            mounts.push(json!({"name": "dump", "mountPath": DUMP_DIR}));
            vec![dump_container(name, app, d, pulled_image(lab, &app.image))]
        }
        _ => Vec::new(),
    };
    let Some((restic, store_volumes)) = restic_container(lab, obj, script, mounts) else {
        return serde_json::Value::Null;
    };
    volumes.extend(store_volumes);
    let mut template = json!({
        "metadata": {"labels": {"app.kubernetes.io/name": obj, "app.kubernetes.io/managed-by": "cloudlet"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [restic],
            "volumes": volumes,
        },
    });
    if !init.is_empty() {
        template["spec"]["initContainers"] = json!(init);
    }
    template
}

/// Where a backup's database dump is written, inside what restic backs up (`_dump/` at the top
/// of the app's volume snapshot; no volume is called that: volume names are DNS labels).
pub const DUMP_DIR: &str = "/data/_dump";
/// The dump's directory in the snapshot (restic's patterns start at the snapshot's top).
const DUMP_TOP: &str = "/_dump";

/// The container that dumps the app's database before restic runs: the app's own image (its
/// tools match its server), through the app's Service for postgres, or the lab's command with
/// the app's environment and volumes (read-only, where the app mounts them).
fn dump_container(
    name: &str,
    app: &App,
    d: &cloudlet_core::model::Dump,
    image: String,
) -> serde_json::Value {
    use cloudlet_core::model::DumpKind;
    let from_app_secret = |var: &str, key: &str| json!({"name": var, "valueFrom": {"secretKeyRef": {"name": format!("{name}-secrets"), "key": key}}});
    let mut env = vec![json!({"name": "DUMP_DIR", "value": DUMP_DIR})];
    let mut mounts = vec![json!({"name": "dump", "mountPath": DUMP_DIR})];
    let command: Vec<String> = match d.kind {
        DumpKind::Postgres => {
            let (db, file) = dumped(name, d);
            let port = app
                .ports
                .iter()
                .find(|p| p.port == 5432)
                .or_else(|| app.ports.first())
                .map_or(5432, |p| p.port);
            env.push(json!({"name": "PGHOST", "value": name}));
            env.push(json!({"name": "PGPORT", "value": port.to_string()}));
            env.push(json!({"name": "PGUSER", "value": d.user.as_deref().unwrap_or("postgres")}));
            env.push(json!({"name": "PGDATABASE", "value": db}));
            if let Some(key) = &d.password {
                env.push(from_app_secret("PGPASSWORD", key));
            }
            vec![
                "pg_dump".into(),
                "--no-owner".into(),
                "--no-privileges".into(),
                "--file".into(),
                file,
            ]
        }
        DumpKind::Mysql => {
            let (db, file) = dumped(name, d);
            env.extend(mysql_env(name, app, d, &db));
            if let Some(key) = &d.password {
                env.push(from_app_secret("MYSQL_PWD", key));
            }
            let script = format!(
                "set -eu\n{MYSQL_TOOLS}\
                 exec \"$dump\" --no-defaults --single-transaction --routines --triggers --no-tablespaces --hex-blob --default-character-set=utf8mb4 -h \"$DB_HOST\" -P \"$DB_PORT\" -u \"$DB_USER\" --result-file={} \"$DB_NAME\"\n",
                sh(&file)
            );
            vec!["/bin/sh".into(), "-c".into(), script]
        }
        DumpKind::Command => {
            for (k, v) in &app.env {
                env.push(json!({"name": k, "value": v}));
            }
            for k in app.secrets.keys() {
                env.push(from_app_secret(k, k));
            }
            for vol in &app.volumes {
                mounts.push(json!({"name": format!("v-{}", vol.name), "mountPath": vol.mount, "readOnly": true}));
            }
            d.command.clone()
        }
    };
    json!({
        "name": "dump",
        "image": image,
        "command": command,
        "env": env,
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": false},
    })
}

/// The MySQL-family programs of the image, MariaDB's names first (MariaDB 11 has only those),
/// else MySQL's: `$dump`, `$sql` (the client) and `$admin`.
const MYSQL_TOOLS: &str = "if command -v mariadb-dump >/dev/null 2>&1; then dump=mariadb-dump sql=mariadb admin=mariadb-admin; else dump=mysqldump sql=mysql admin=mysqladmin; fi\n";

/// The environment a mysql dump's programs read: the app's Service, the user and the
/// database (the password, `MYSQL_PWD`, from the app's Secret besides).
fn mysql_env(
    name: &str,
    app: &App,
    d: &cloudlet_core::model::Dump,
    db: &str,
) -> Vec<serde_json::Value> {
    let port = app
        .ports
        .iter()
        .find(|p| p.port == 3306)
        .or_else(|| app.ports.first())
        .map_or(3306, |p| p.port);
    vec![
        json!({"name": "DB_HOST", "value": name}),
        json!({"name": "DB_PORT", "value": port.to_string()}),
        json!({"name": "DB_USER", "value": d.user.as_deref().unwrap_or("root")}),
        json!({"name": "DB_NAME", "value": db}),
    ]
}

/// `db` as a MySQL identifier, in backticks.
fn mysql_ident(db: &str) -> String {
    format!("`{}`", db.replace('`', "``"))
}

/// The name of the app's restore Job.
pub fn restore_name(app: &str) -> String {
    format!("{app}-restore")
}

/// The label that marks a restore Job, its value the app.
pub const RESTORE_LABEL: &str = "cloudlet.dev/restore";

/// The script a restore Job runs: each of the app's volumes emptied, then `snapshot` restored
/// over them, so every volume is exactly what was backed up (a volume declared after the
/// snapshot was taken comes back empty).
pub fn restore_script(lab: &Lab, app: &App, snapshot: &str) -> Option<String> {
    let (_, store) = volumes_target(lab, app)?;
    let ca = store.flags();
    let mut out = String::from("set -eu\n");
    for vol in &app.volumes {
        out.push_str(&format!(
            "find {} -mindepth 1 -delete\n",
            sh(&format!("{MOUNT_ROOT}/{}", vol.name))
        ));
    }
    // A database server's files copied while it ran may not load: with a dump of it, its
    // volume comes back empty (the server starts anew) and the dump is loaded into it.
    // restic's patterns are paths from the snapshot's top, where each volume and `_dump` are.
    let mut exclude = format!(" --exclude {}", sh(DUMP_TOP));
    for vol in reloaded(app) {
        exclude.push_str(&format!(" --exclude {}", sh(&format!("/{}", vol.name))));
    }
    out.push_str(&format!(
        "restic{ca} restore {} --target {MOUNT_ROOT}{exclude}\n",
        sh(snapshot)
    ));
    Some(out)
}

/// The volumes of `app` that a restore leaves empty for its dump to be loaded into: those
/// holding a database server's files, when the app has a `postgres` or `mysql` dump.
pub fn reloaded(app: &App) -> impl Iterator<Item = &cloudlet_core::model::Volume> {
    let loaded = app
        .dump
        .as_ref()
        .is_some_and(cloudlet_core::model::Dump::loadable);
    app.volumes.iter().filter(move |v| loaded && v.database)
}

/// The name of the Job that loads the app's dump during a restore.
pub fn load_name(app: &str) -> String {
    format!("{app}-load-dump")
}

/// The Job that loads the app's database dump from `snapshot` into its (new, empty) server:
/// stock restic brings `_dump/` back into the pod, then the app's own image waits for the
/// server (up to 5 minutes), makes the database again and loads the dump, stopping at the
/// first error. `None` when the app has no postgres or mysql dump or its volumes are not
/// backed up.
pub fn load_job(
    lab: &Lab,
    name: &str,
    app: &App,
    ns: &str,
    snapshot: &str,
) -> Option<serde_json::Value> {
    use cloudlet_core::model::DumpKind;
    let d = loaded_dump(app)?;
    let (db, file) = dumped(name, d);
    let script = match d.kind {
        DumpKind::Postgres => {
            let remake = if db == "postgres" {
                String::new()
            } else {
                format!(
                    "dropdb --if-exists --force {db}\ncreatedb {db}\n",
                    db = sh(&db)
                )
            };
            format!(
                "set -eu\n\
                 n=0\n\
                 until pg_isready -q; do n=$((n+1)); if [ $n -ge 150 ]; then echo 'the server did not answer in 5 minutes' >&2; exit 1; fi; sleep 2; done\n\
                 {remake}\
                 psql -v ON_ERROR_STOP=1 -q -d {} -f {}\n",
                sh(&db),
                sh(&file)
            )
        }
        DumpKind::Mysql => {
            // Until the server takes the user (a new server makes its users before it listens
            // on the network), then the database made anew and the dump loaded into it.
            let at = "--no-defaults -h \"$DB_HOST\" -P \"$DB_PORT\" -u \"$DB_USER\"";
            let ident = mysql_ident(&db);
            format!(
                "set -eu\n{MYSQL_TOOLS}\
                 n=0\n\
                 until said=$(\"$admin\" {at} --connect-timeout=5 status 2>&1); do n=$((n+1)); if [ $n -ge 150 ]; then echo \"the server did not take the user in 5 minutes: $said\" >&2; exit 1; fi; sleep 2; done\n\
                 \"$sql\" {at} -e {}\n\
                 \"$sql\" {at} --default-character-set=utf8mb4 \"$DB_NAME\" < {}\n",
                sh(&format!(
                    "DROP DATABASE IF EXISTS {ident}; CREATE DATABASE {ident}"
                )),
                sh(&file)
            )
        }
        DumpKind::Command => return None,
    };
    dump_job(lab, name, app, ns, snapshot, &load_name(name), script, &[])
}

/// The name of the Job that proves the app's dump (level 4 of `backup verify`).
pub fn verify_name(app: &str) -> String {
    format!("{app}-verify-dump")
}

/// Level 4 of `backup verify` for the app's database dump in `snapshot`: stock restic brings
/// `_dump/` back into the pod, then the app's own image starts a scratch server inside the pod
/// (as the image's `postgres` or `mysql` user, on a socket only), loads the dump, stopping at
/// the first error, and asks the lab's query, failing unless it answers at least one row.
/// Nothing outside the pod is touched. `None` unless the app has a postgres or mysql dump
/// with a query.
pub fn verify_job(
    lab: &Lab,
    name: &str,
    app: &App,
    ns: &str,
    snapshot: &str,
) -> Option<serde_json::Value> {
    use cloudlet_core::model::DumpKind;
    let d = loaded_dump(app)?;
    let query = d.verify.as_ref()?;
    let (db, file) = dumped(name, d);
    let scratch = "/tmp/cloudlet-l4";
    let script = match d.kind {
        DumpKind::Postgres => {
            let inner = format!(
                "set -eu\n\
                 export PGHOST={scratch} PGUSER=postgres\n\
                 initdb -D {scratch}/data -U postgres --auth=trust >/dev/null\n\
                 pg_ctl -D {scratch}/data -o \"-c listen_addresses= -k {scratch}\" -w start >/dev/null\n\
                 trap 'pg_ctl -D {scratch}/data -m fast stop >/dev/null' EXIT\n\
                 {create}\
                 psql -v ON_ERROR_STOP=1 -q -d {db} -f {file}\n\
                 rows=$(psql -v ON_ERROR_STOP=1 -tA -d {db} -c \"$CLOUDLET_QUERY\")\n\
                 {answered}",
                create = if db == "postgres" {
                    String::new()
                } else {
                    format!("createdb {}\n", sh(&db))
                },
                db = sh(&db),
                file = sh(&file),
                answered = ANSWERED,
            );
            // The server refuses to run as root: the image's `postgres` user runs it.
            format!(
                "set -eu\nmkdir -p {scratch}\nchown postgres {scratch}\nexec setpriv --reuid=postgres --regid=postgres --init-groups sh -c {}\n",
                sh(&inner)
            )
        }
        DumpKind::Mysql => {
            // The server drops to the image's `mysql` user itself; its root on the socket has
            // no password (the app's, in MYSQL_PWD, is not for it).
            let at = format!("--no-defaults -S {scratch}/sock -u root");
            let ident = mysql_ident(&db);
            format!(
                "set -eu\nunset MYSQL_PWD\n\
                 mkdir -p {scratch}\nchown mysql {scratch}\n\
                 if command -v mariadbd >/dev/null 2>&1; then\n\
                 server=mariadbd sql=mariadb extra=\n\
                 mariadb-install-db --no-defaults --user=mysql --datadir={scratch}/data --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve --tmpdir={scratch} >{scratch}/install.log 2>&1 || {{ cat {scratch}/install.log >&2; exit 1; }}\n\
                 else\n\
                 server=mysqld sql=mysql extra=--mysqlx=OFF\n\
                 mysqld --no-defaults --initialize-insecure --user=mysql --datadir={scratch}/data --tmpdir={scratch} >{scratch}/install.log 2>&1 || {{ cat {scratch}/install.log >&2; exit 1; }}\n\
                 fi\n\
                 \"$server\" --no-defaults --user=mysql --datadir={scratch}/data --socket={scratch}/sock --pid-file={scratch}/pid --log-error={scratch}/server.log --tmpdir={scratch} --skip-networking $extra &\n\
                 pid=$!\n\
                 trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT\n\
                 n=0\n\
                 until \"$sql\" {at} -e 'SELECT 1' >/dev/null 2>&1; do n=$((n+1)); if ! kill -0 $pid 2>/dev/null || [ $n -ge 300 ]; then echo 'the scratch server did not start:' >&2; tail -n 20 {scratch}/server.log >&2; exit 1; fi; sleep 1; done\n\
                 \"$sql\" {at} -e {create}\n\
                 \"$sql\" {at} --default-character-set=utf8mb4 {db} < {file}\n\
                 rows=$(\"$sql\" {at} -N -B {db} -e \"$CLOUDLET_QUERY\")\n\
                 {ANSWERED}",
                create = sh(&format!("CREATE DATABASE {ident}")),
                db = sh(&db),
                file = sh(&file),
            )
        }
        DumpKind::Command => return None,
    };
    dump_job(
        lab,
        name,
        app,
        ns,
        snapshot,
        &verify_name(name),
        script,
        &[("CLOUDLET_QUERY", query.as_str())],
    )
}

/// The end of a level-4 script: fails unless the query in `$rows` answered a row, else says
/// its first.
const ANSWERED: &str = "if [ -z \"$rows\" ]; then echo 'the query answered no row' >&2; exit 1; fi\n\
echo \"answered: $(printf '%s' \"$rows\" | head -n 1)\"\n";

/// The database a postgres or mysql dump of app `name` holds, and the file it is written to
/// (and loaded from).
fn dumped(name: &str, d: &cloudlet_core::model::Dump) -> (String, String) {
    let db = d.database_of(name).to_string();
    let file = format!("{DUMP_DIR}/{}-{db}.sql", d.kind.name());
    (db, file)
}

/// The app's dump when cloudlet loads it (postgres, mysql).
fn loaded_dump(app: &App) -> Option<&cloudlet_core::model::Dump> {
    app.dump
        .as_ref()
        .filter(|d| cloudlet_core::model::Dump::loadable(d))
}

/// A Job of the app's dump in `snapshot`: stock restic brings `_dump/` back into an emptyDir,
/// then the app's image runs `script` with the dump's environment and `env`.
#[allow(clippy::too_many_arguments)]
fn dump_job(
    lab: &Lab,
    name: &str,
    app: &App,
    ns: &str,
    snapshot: &str,
    job: &str,
    script: String,
    env: &[(&str, &str)],
) -> Option<serde_json::Value> {
    let d = app.dump.as_ref()?;
    let (_, store) = volumes_target(lab, app)?;
    let ca = store.flags();
    let (restic, mut volumes) = restic_container(
        lab,
        &object_name(name),
        &format!(
            "set -eu\nrestic{ca} restore {} --target {MOUNT_ROOT} --include {}\n",
            sh(snapshot),
            sh(DUMP_TOP)
        ),
        vec![json!({"name": "dump", "mountPath": DUMP_DIR})],
    )?;
    volumes.push(json!({"name": "dump", "emptyDir": {}}));
    let mut main = dump_container(name, app, d, pulled_image(lab, &app.image));
    main["name"] = json!("database");
    main["command"] = json!(["/bin/sh", "-c", script]);
    if let Some(all) = main["env"].as_array_mut() {
        all.extend(env.iter().map(|(k, v)| json!({"name": k, "value": v})));
    }
    Some(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job,
            "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "cloudlet", RESTORE_LABEL: name},
            "annotations": {"cloudlet.dev/snapshot": snapshot},
        },
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 86_400,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": job, "app.kubernetes.io/managed-by": "cloudlet", RESTORE_LABEL: name}},
                "spec": {
                    "restartPolicy": "Never",
                    "initContainers": [restic],
                    "containers": [main],
                    "volumes": volumes,
                },
            },
        },
    }))
}

/// `image` pulled through the lab's registry when it names one.
fn pulled_image(lab: &Lab, image: &str) -> String {
    match lab
        .cluster
        .as_ref()
        .and_then(|c| c.platform.registry.as_deref())
    {
        Some(r) => crate::platform::transform::mirrored_image(image, r),
        None => image.to_string(),
    }
}

/// Stock restic's container running `script` with the keys of the app's backup Secret `obj`
/// and `mounts` besides the store's files, and the volumes those files need.
fn restic_container(
    lab: &Lab,
    obj: &str,
    script: &str,
    mut mounts: Vec<serde_json::Value>,
) -> Option<(serde_json::Value, Vec<serde_json::Value>)> {
    let v = lab.backup.as_ref()?.volumes.as_ref()?;
    let store = store(lab)?;
    let mut volumes = Vec::new();
    if let Some((volume, mount)) = store.files(obj) {
        volumes.push(volume);
        mounts.push(mount);
    }
    let from_secret =
        |var: &str| json!({"name": var, "valueFrom": {"secretKeyRef": {"name": obj, "key": var}}});
    let mut env = vec![
        json!({"name": "RESTIC_REPOSITORY", "value": store.repository()}),
        json!({"name": "RESTIC_CACHE_DIR", "value": "/tmp/restic-cache"}),
        from_secret("RESTIC_PASSWORD"),
    ];
    env.extend(store.env(obj));
    Some((
        json!({
            "name": "restic",
            "image": pulled_image(lab, &v.image),
            "command": ["/bin/sh", "-c", script],
            "env": env,
            "volumeMounts": mounts,
            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": false},
        }),
        volumes,
    ))
}

/// The Job that restores the app's volumes from `snapshot` (one of its volume snapshots),
/// with the keys of the app's backup Secret, which the plan holds; `None` when the lab backs
/// up no volumes of the app.
pub fn restore_job(
    lab: &Lab,
    name: &str,
    app: &App,
    ns: &str,
    snapshot: &str,
) -> Option<serde_json::Value> {
    let script = restore_script(lab, app, snapshot)?;
    let obj = restore_name(name);
    let mut template = pod_template(lab, name, app, &object_name(name), &script, false);
    template["metadata"]["labels"][RESTORE_LABEL] = json!(name);
    Some(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": obj,
            "namespace": ns,
            "labels": {
                "app.kubernetes.io/managed-by": "cloudlet",
                RESTORE_LABEL: name,
            },
            "annotations": {"cloudlet.dev/snapshot": snapshot},
        },
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 86_400,
            "template": template,
        },
    }))
}

#[cfg(feature = "client")]
/// Whether the app's backup CronJob's newest run succeeded, and what its status says — L0 of
/// the verification ladder for the app's volumes. A run in progress counts as the one before
/// it.
pub async fn last_run(
    client: &kube::Client,
    ns: &str,
    app: &str,
) -> Result<(bool, String), kube::Error> {
    use k8s_openapi::api::batch::v1::CronJob;
    let name = object_name(app);
    let Some(cj) = kube::Api::<CronJob>::namespaced(client.clone(), ns)
        .get_opt(&name)
        .await?
    else {
        return Ok((
            false,
            format!("no CronJob {ns}/{name} in the cluster (apply the lab)"),
        ));
    };
    let st = cj.status.unwrap_or_default();
    let success = st.last_successful_time.map(|t| t.0);
    let scheduled = st.last_schedule_time.map(|t| t.0);
    let running = st.active.is_some_and(|a| !a.is_empty());
    Ok(match (success, scheduled) {
        (None, _) => (
            false,
            format!("CronJob {ns}/{name} has no successful run yet"),
        ),
        (Some(ok), Some(s)) if s > ok && !running => (
            false,
            format!(
                "the run of CronJob {ns}/{name} scheduled at {s} did not succeed (the newest success: {ok}; kubectl -n {ns} get jobs)"
            ),
        ),
        (Some(ok), _) => (true, format!("CronJob {ns}/{name} last succeeded at {ok}")),
    })
}
