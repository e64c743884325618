//! Volume backups as the plan holds them: per app with volumes, a Secret of references (the
//! repository key and the store's keys, read by the provider at apply time) and a CronJob
//! that runs stock restic over the app's claims, mounted read-only, into the lab's S3 target.
//! The CronJob's script makes the repository when the target has none, backs up every volume
//! of the app as one snapshot (host: the lab, tags `cloudlet:volumes` and
//! `cloudlet-app:NAMESPACE/APP`, path `/data`, each volume a directory at the top of the
//! snapshot's tree, so `restic restore ID --target /data` puts them back where the claims are
//! mounted), then applies the retention.

use std::collections::BTreeMap;

use cloudlet_core::model::{App, Lab, S3Target, SecretRef, VolumeBackup, cron_schedule};
use cloudlet_core::resource::Body;
use cloudlet_core::{Resource, ResourceId};
use serde_json::json;

use crate::{id, meta, secret_ref, secret_refs};

/// Where the app's volumes are mounted in the backup pod: `/data/VOLUME`.
pub const MOUNT_ROOT: &str = "/data";
/// Where the store's CA is mounted.
pub const CA_PATH: &str = "/etc/cloudlet-backup/ca.crt";

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
    let s3 = b.targets.get(&v.target)?.s3.as_ref()?;
    let ca = if s3.ca.is_some() {
        format!(" --cacert {CA_PATH}")
    } else {
        String::new()
    };
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
    let (Some(b), Some((v, s3))) = (&lab.backup, volumes_target(lab, app)) else {
        return;
    };
    let Some(script) = script(lab, ns, name) else {
        return;
    };
    let obj = object_name(name);
    let nsid = id("namespace", None, ns);
    let mut refs = BTreeMap::from([
        ("RESTIC_PASSWORD", secret_ref(&b.key)),
        ("AWS_ACCESS_KEY_ID", secret_ref(&s3.access_key)),
        ("AWS_SECRET_ACCESS_KEY", secret_ref(&s3.secret_key)),
    ]);
    if let Some(ca) = &s3.ca {
        refs.insert("ca.crt", secret_ref(&SecretRef::File(ca.clone())));
    }
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
/// names an S3 target).
pub fn backed_up(lab: &Lab, app: &App) -> bool {
    volumes_target(lab, app).is_some()
}

/// The lab's S3 target for volumes, when it backs them up and `app` has any.
fn volumes_target<'a>(lab: &'a Lab, app: &App) -> Option<(&'a VolumeBackup, &'a S3Target)> {
    if app.volumes.is_empty() {
        return None;
    }
    let b = lab.backup.as_ref()?;
    let v = b.volumes.as_ref()?;
    Some((v, b.targets.get(&v.target)?.s3.as_ref()?))
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
    let Some((v, s3)) = volumes_target(lab, app) else {
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
    if s3.ca.is_some() {
        volumes.push(json!({
            "name": "backup-ca",
            "secret": {"secretName": obj, "items": [{"key": "ca.crt", "path": "ca.crt"}]},
        }));
        mounts.push(json!({
            "name": "backup-ca",
            "mountPath": CA_PATH.trim_end_matches("/ca.crt"),
            "readOnly": true,
        }));
    }
    let image = match lab
        .cluster
        .as_ref()
        .and_then(|c| c.platform.registry.as_deref())
    {
        Some(r) => crate::platform::transform::mirrored_image(&v.image, r),
        None => v.image.clone(),
    };
    json!({
        "metadata": {"labels": {"app.kubernetes.io/name": obj, "app.kubernetes.io/managed-by": "cloudlet"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "restic",
                "image": image,
                "command": ["/bin/sh", "-c", script],
                "env": [
                    {"name": "RESTIC_REPOSITORY", "value": s3.restic_repository()},
                    {"name": "RESTIC_CACHE_DIR", "value": "/tmp/restic-cache"},
                    from_secret("RESTIC_PASSWORD"),
                    from_secret("AWS_ACCESS_KEY_ID"),
                    from_secret("AWS_SECRET_ACCESS_KEY"),
                ],
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
    let (_, s3) = volumes_target(lab, app)?;
    let ca = if s3.ca.is_some() {
        format!(" --cacert {CA_PATH}")
    } else {
        String::new()
    };
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
