//! Volume backups as the plan holds them: per app with volumes, a Secret of references (the
//! repository key and the store's keys, read by the provider at apply time) and a CronJob
//! that runs stock restic over the app's claims, mounted read-only, into the lab's S3 target.
//! The CronJob's script makes the repository when the target has none, backs up every volume
//! of the app as one snapshot (host: the lab, tags `cloudlet:volumes` and
//! `cloudlet-app:NAMESPACE/APP`, path `/data`, each volume a directory at the top of the
//! snapshot's tree, so `restic restore ID --target /data` puts them back where the claims are
//! mounted), then applies the retention.

use std::collections::BTreeMap;

use cloudlet_core::model::{App, Lab, SecretRef, cron_schedule};
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
    if app.volumes.is_empty() {
        return;
    }
    let Some(b) = &lab.backup else { return };
    let Some(v) = &b.volumes else { return };
    let Some(s3) = b.targets.get(&v.target).and_then(|t| t.s3.as_ref()) else {
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
    let from_secret =
        |var: &str| json!({"name": var, "valueFrom": {"secretKeyRef": {"name": obj, "key": var}}});
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut deps: Vec<ResourceId> = vec![nsid, sid];
    for vol in &app.volumes {
        let claim = format!("{name}-{}", vol.name);
        deps.push(id("persistentvolumeclaim", Some(ns), &claim));
        volumes.push(json!({
            "name": format!("v-{}", vol.name),
            "persistentVolumeClaim": {"claimName": claim, "readOnly": true},
        }));
        mounts.push(json!({
            "name": format!("v-{}", vol.name),
            "mountPath": format!("{MOUNT_ROOT}/{}", vol.name),
            "readOnly": true,
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
                    "template": {
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
                    },
                }},
            },
        })),
    );
    job.depends_on = deps;
    out.push(job);
}
