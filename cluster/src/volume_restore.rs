//! Apps' volumes restored in a live cluster: each app held at 0 replicas until its pods are
//! gone (nothing writes while its data comes back), then a restore Job per app
//! ([`crate::volume_backup::restore_job`]), all apps at once, each waited for until it
//! completes or fails. Scaling the apps up again is the lab's next apply.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};

use crate::volume_backup::RESTORE_LABEL;

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(500);

/// One app whose volumes come back.
#[derive(Debug, Clone)]
pub struct AppRestore {
    /// The app's namespace.
    pub namespace: String,
    /// The app.
    pub app: String,
    /// Whether its workload is a StatefulSet (else a Deployment).
    pub stateful: bool,
    /// Its restore Job ([`crate::volume_backup::restore_job`]).
    pub job: serde_json::Value,
}

impl AppRestore {
    fn name(&self) -> String {
        format!("{}/{}", self.namespace, self.app)
    }
}

/// Why an app's volumes did not come back.
#[derive(Debug, thiserror::Error)]
pub enum VolumeRestoreError {
    /// The API server refused or failed a request.
    #[error("{app}: {doing}: {source}")]
    Api {
        /// The app (`NAMESPACE/APP`).
        app: String,
        /// What was being done.
        doing: &'static str,
        /// The API's error.
        #[source]
        source: kube::Error,
    },
    /// The restore Job failed.
    #[error(
        "{app}: the restore Job failed: {message} (its pods' logs: kubectl -n {namespace} logs job/{job})"
    )]
    Failed {
        /// The app (`NAMESPACE/APP`).
        app: String,
        /// The app's namespace.
        namespace: String,
        /// The Job.
        job: String,
        /// The Job's reason and message.
        message: String,
    },
    /// A wait ran out.
    #[error("{app}: {waiting} did not happen within {seconds} s")]
    Timeout {
        /// The app (`NAMESPACE/APP`).
        app: String,
        /// What was waited for.
        waiting: &'static str,
        /// How long.
        seconds: u64,
    },
    /// The Job the caller made is not a Job.
    #[error("{app}: the restore Job is not a Job: {source}")]
    Job {
        /// The app (`NAMESPACE/APP`).
        app: String,
        /// Why it does not read as one.
        #[source]
        source: serde_json::Error,
    },
}

/// One app restored.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRestored {
    /// The app (`NAMESPACE/APP`).
    pub app: String,
    /// How long its Job took, from creation to completion.
    pub seconds: f64,
}

/// Scales each app to 0 replicas and waits, up to `within`, until none of its pods is left.
/// An app whose workload does not exist has nothing to hold.
pub async fn hold(
    client: &Client,
    apps: &[AppRestore],
    within: Duration,
) -> Result<(), VolumeRestoreError> {
    futures::future::try_join_all(apps.iter().map(|a| hold_one(client, a, within))).await?;
    Ok(())
}

async fn hold_one(
    client: &Client,
    a: &AppRestore,
    within: Duration,
) -> Result<(), VolumeRestoreError> {
    let api_err = |doing| {
        let app = a.name();
        move |source| VolumeRestoreError::Api { app, doing, source }
    };
    let zero = Patch::Merge(serde_json::json!({"spec": {"replicas": 0}}));
    let pp = PatchParams::default();
    let scaled = if a.stateful {
        Api::<StatefulSet>::namespaced(client.clone(), &a.namespace)
            .patch(&a.app, &pp, &zero)
            .await
            .map(drop)
    } else {
        Api::<Deployment>::namespaced(client.clone(), &a.namespace)
            .patch(&a.app, &pp, &zero)
            .await
            .map(drop)
    };
    match scaled {
        Ok(()) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(api_err("holding it at 0 replicas")(e)),
    }
    let pods = Api::<Pod>::namespaced(client.clone(), &a.namespace);
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/name={}", a.app));
    let start = Instant::now();
    loop {
        let left = pods.list(&lp).await.map_err(api_err("listing its pods"))?;
        if left.items.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= within {
            return Err(VolumeRestoreError::Timeout {
                app: a.name(),
                waiting: "its pods stopping",
                seconds: within.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs each app's restore Job (an earlier one of the same name is deleted first, so a
/// resumed restore starts over) and waits, up to `within` per app, for all of them.
pub async fn restore(
    client: &Client,
    apps: &[AppRestore],
    within: Duration,
) -> Result<Vec<AppRestored>, VolumeRestoreError> {
    futures::future::try_join_all(apps.iter().map(|a| restore_one(client, a, within))).await
}

async fn restore_one(
    client: &Client,
    a: &AppRestore,
    within: Duration,
) -> Result<AppRestored, VolumeRestoreError> {
    let app = a.name();
    let api_err = |doing| {
        let app = app.clone();
        move |source| VolumeRestoreError::Api { app, doing, source }
    };
    let job: Job =
        serde_json::from_value(a.job.clone()).map_err(|source| VolumeRestoreError::Job {
            app: app.clone(),
            source,
        })?;
    let labelled = job
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(RESTORE_LABEL))
        .is_some();
    let name = job.metadata.name.clone().unwrap_or_default();
    let jobs = Api::<Job>::namespaced(client.clone(), &a.namespace);
    let start = Instant::now();
    let timeout = |waiting| VolumeRestoreError::Timeout {
        app: app.clone(),
        waiting,
        seconds: within.as_secs(),
    };
    // Only a Job this module made is replaced.
    if let Some(old) = jobs
        .get_opt(&name)
        .await
        .map_err(api_err("reading its Job"))?
    {
        let ours = old
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.get(RESTORE_LABEL) == Some(&a.app));
        if !(ours && labelled) {
            return Err(VolumeRestoreError::Failed {
                app: app.clone(),
                namespace: a.namespace.clone(),
                job: name,
                message:
                    "a Job of that name exists that cloudlet did not make; delete or rename it"
                        .into(),
            });
        }
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match jobs.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_err("deleting the earlier restore Job")(e)),
        }
        while jobs
            .get_opt(&name)
            .await
            .map_err(api_err("reading its Job"))?
            .is_some()
        {
            if start.elapsed() >= within {
                return Err(timeout("the earlier restore Job's deletion"));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let made = Instant::now();
    jobs.create(&PostParams::default(), &job)
        .await
        .map_err(api_err("creating its restore Job"))?;
    loop {
        let now = jobs.get(&name).await.map_err(api_err("reading its Job"))?;
        let conditions = now
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(Vec::as_slice)
            .unwrap_or_default();
        for c in conditions.iter().filter(|c| c.status == "True") {
            match c.type_.as_str() {
                "Complete" => {
                    return Ok(AppRestored {
                        app,
                        seconds: made.elapsed().as_secs_f64(),
                    });
                }
                "Failed" => {
                    return Err(VolumeRestoreError::Failed {
                        app,
                        namespace: a.namespace.clone(),
                        job: name,
                        message: format!(
                            "{}: {}",
                            c.reason.as_deref().unwrap_or("Failed"),
                            c.message.as_deref().unwrap_or("(no message)")
                        ),
                    });
                }
                _ => {}
            }
        }
        if start.elapsed() >= within {
            return Err(timeout("its restore Job's completion"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Which of `apps` (namespace, app, stateful) have their workload in the cluster: apps that
/// run with volumes a restore would replace. `NAMESPACE/APP` each.
pub async fn live(
    client: &Client,
    apps: &[(String, String, bool)],
) -> Result<Vec<String>, kube::Error> {
    let mut out = Vec::new();
    for (ns, app, stateful) in apps {
        let found = if *stateful {
            Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get_opt(app)
                .await?
                .is_some()
        } else {
            Api::<Deployment>::namespaced(client.clone(), ns)
                .get_opt(app)
                .await?
                .is_some()
        };
        if found {
            out.push(format!("{ns}/{app}"));
        }
    }
    Ok(out)
}
