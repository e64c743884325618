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
    let Some((v, store)) = volumes_target(lab, app) else {
        return serde_json::Value::Null;
    };
    let from_secret =
        |var: &str| json!({"name": var, "valueFrom": {"secretKeyRef": {"name": obj, "key": var}}});
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
    if let Some((volume, mount)) = store.files(obj) {
        volumes.push(volume);
        mounts.push(mount);
    }
    let image = match lab
        .cluster
        .as_ref()
        .and_then(|c| c.platform.registry.as_deref())
    {
        Some(r) => crate::platform::transform::mirrored_image(&v.image, r),
        None => v.image.clone(),
    };
    let mut env = vec![
        json!({"name": "RESTIC_REPOSITORY", "value": store.repository()}),
        json!({"name": "RESTIC_CACHE_DIR", "value": "/tmp/restic-cache"}),
        from_secret("RESTIC_PASSWORD"),
    ];
    env.extend(store.env(obj));
    json!({
        "metadata": {"labels": {"app.kubernetes.io/name": obj, "app.kubernetes.io/managed-by": "cloudlet"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "restic",
                "image": image,
                "command": ["/bin/sh", "-c", script],
                "env": env,
                "volumeMounts": mounts,
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": false},
            }],
            "volumes": volumes,
        },
    })
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
    out.push_str(&format!(
        "restic{ca} restore {} --target {MOUNT_ROOT}\n",
        sh(snapshot)
    ));
    Some(out)
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
