//! `restore`: the lab rebuilt from its files, a backup target and its keys, in gated phases,
//! each journaled (`STATE/restore/journal.json`) so a failed restore resumes where it stopped.
//!
//! 1. identity — cloudlet's state (the vault with the cluster's CAs, generated keys, the
//!    journal) from the newest `state` snapshot, proven against its manifest first. The
//!    network installs' records are not restored: the machines are installed anew and
//!    report again.
//! 2. router — the router's whole configuration from the newest `router` snapshot, given
//!    back through its backend: loaded and running where the backend can (the Linux router:
//!    its files and DHCP leases), otherwise saved under `STATE/restore/router/` with the
//!    steps that load it (OPNsense's API cannot take a configuration).
//! 3. infrastructure — the lab applied: router, NAS, hypervisor, network installs, and the
//!    cluster made again with the same identity (old kubeconfigs keep working), its platform
//!    and apps — those whose volumes are backed up held at 0 replicas, so nothing starts on
//!    an empty volume.
//! 4. cluster data — the newest `cluster` snapshot (etcd) restored onto the control plane.
//! 5. volumes — each app with backed-up volumes held at 0 replicas until its pods are gone
//!    (the etcd snapshot brings its old replica count back), then its newest volume snapshot
//!    restored by a Job running stock restic over its claims, all apps at once.
//! 6. reconcile — the lab applied again over the restored objects: the held apps scale up.
//! 7. verify — the cluster's objects waited for until ready.
//!
//! Restoring into a lab whose state directory is not empty is refused unless forced, and the
//! refusal lists what would be overwritten.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cloudlet_backup::repo::{Location, Repo, Snapshot};
use cloudlet_backup::stage::{MANIFEST, Manifest};
use cloudlet_backup::{BackupError, blocking};
use serde::{Deserialize, Serialize};

use cloudlet_core::ResourceId;

use crate::{ApplyOptions, Error, Lab, cluster};

/// What the identity phase leaves out of the restored state: the installs' records and the
/// host keys they reported, and the record that the cluster was initialized (the machines are
/// installed anew and the cluster made again), the lock, the local backend's rendered files
/// (not backed up: any apply renders them again), the restore's own journal, and the
/// snapshot's manifest.
const NOT_RESTORED: &[&str] = &[
    "pxe",
    "known_hosts",
    "vault/cluster-initialized.age",
    "lock",
    "local",
    "restore",
    MANIFEST,
];

/// The phases, in order.
pub const PHASES: &[&str] = &[
    "identity",
    "router",
    "infrastructure",
    "cluster data",
    "volumes",
    "databases",
    "reconcile",
    "verify",
];

/// How a restore runs.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The backup target to restore from (a name under `backup.targets`).
    pub from: String,
    /// Go ahead although the lab's state directory is not empty (what would be overwritten
    /// is reported first).
    pub force: bool,
    /// Go on with a restore that stopped, skipping the phases it finished.
    pub resume: bool,
    /// How long the verify phase waits for the cluster's objects (default 10 minutes).
    pub verify_within: Option<Duration>,
    /// How long the volumes phase waits for the held apps' pods to stop and for each app's
    /// restore Job (default 30 minutes).
    pub volumes_within: Option<Duration>,
}

/// One phase's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Its name (one of [`PHASES`]).
    pub name: String,
    /// Whether it finished.
    pub ok: bool,
    /// Whether it was skipped (nothing of it in the lab, or done by an earlier run).
    pub skipped: bool,
    /// How long it took.
    pub seconds: f64,
    /// What it did or why it failed.
    pub detail: String,
}

/// How much data a class's restore lost: everything written after its snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossWindow {
    /// The class.
    pub class: String,
    /// For the `volumes` class, the app (`NAMESPACE/APP`) whose volumes the snapshot holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The snapshot restored.
    pub snapshot: String,
    /// When it was taken (seconds since the Unix epoch).
    pub taken: i64,
    /// How long before the restore began it was taken: the most that can have been lost.
    pub seconds_before_restore: i64,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Restored {
    /// The target it restored from.
    pub from: String,
    /// When it began (seconds since the Unix epoch).
    pub started: i64,
    /// Each phase, in order.
    pub phases: Vec<Phase>,
    /// Each restored class's data-loss window.
    pub windows: Vec<LossWindow>,
}

impl Restored {
    /// Whether every phase finished.
    pub fn is_success(&self) -> bool {
        self.phases.len() == PHASES.len() && self.phases.iter().all(|p| p.ok)
    }

    /// The whole restore's duration.
    pub fn seconds(&self) -> f64 {
        self.phases.iter().map(|p| p.seconds).sum()
    }
}

/// What a restore reports as it goes.
#[derive(Debug, Clone)]
pub enum RestoreEvent {
    /// A phase begins.
    Started(&'static str),
    /// A phase ended.
    Finished(Phase),
}

/// Now, in Unix seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn journal_path(state: &Path) -> PathBuf {
    state.join("restore").join("journal.json")
}

fn write_journal(state: &Path, r: &Restored) -> Result<(), Error> {
    let p = journal_path(state);
    let io = |e: std::io::Error| Error::Render {
        path: p.clone(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(p.parent().expect("a parent")).map_err(io)?;
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(r).expect("serializes")).map_err(io)?;
    std::fs::rename(&tmp, &p).map_err(io)
}

/// The files under `dir` (relative), but those under a `skip` prefix.
fn files_under(dir: &Path, skip: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(dir.join(&rel))
            .into_iter()
            .flatten()
            .flatten()
        {
            let r = rel.join(e.file_name());
            if skip.iter().any(|s| r.starts_with(s)) {
                continue;
            }
            if e.path().is_dir() {
                stack.push(r);
            } else {
                out.push(r);
            }
        }
    }
    out.sort();
    out
}

impl Lab {
    /// The files of the lab's state a restore would overwrite (empty for a lab with nothing
    /// to lose). The installs' records are not among them.
    pub fn restore_would_overwrite(&self) -> Vec<PathBuf> {
        files_under(&self.state_dir(), NOT_RESTORED)
    }

    /// The apps (`NAMESPACE/APP`) whose volumes a restore would replace while they run: those
    /// with backed-up volumes whose workload the lab's cluster already holds. Empty when there
    /// is no cluster to ask, or it does not answer within 10 seconds (a cluster still to be
    /// made holds nothing).
    pub async fn restore_would_replace(&self) -> Vec<String> {
        let apps: Vec<(String, String, bool)> = self
            .volume_apps()
            .map(|(n, app)| {
                (
                    cloudlet_core::model::Lab::app_namespace(n, app).to_string(),
                    n.to_string(),
                    app.workload == cloudlet_core::model::Workload::Statefulset,
                )
            })
            .collect();
        if apps.is_empty() || !self.has_live_cluster() {
            return Vec::new();
        }
        let ask = async {
            let (client, _) = self.live_cluster().await.ok()??;
            cluster::volume_restore::live(&client, &apps).await.ok()
        };
        tokio::time::timeout(Duration::from_secs(10), ask)
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// The journal of the newest restore, if one ran.
    pub fn restore_journal(&self) -> Option<Restored> {
        let bytes = std::fs::read(journal_path(&self.state_dir())).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Rebuilds the lab from the backup target `options.from`: the phases of this module,
    /// each reported through `on_event` and journaled. A phase that fails stops the phases
    /// after it (the error says how to resume).
    pub async fn restore(
        &self,
        options: &RestoreOptions,
        on_event: &mut (dyn FnMut(RestoreEvent) + Send),
    ) -> Result<Restored, Error> {
        self.check_backup_lab()?;
        let b = self.backup_block()?;
        if !b.targets.contains_key(&options.from) {
            return Err(Error::NoBackupTarget(options.from.clone()));
        }
        let state = self.state_dir();
        let earlier = self.restore_journal().filter(|r| !r.is_success());
        if !options.resume {
            if earlier.is_some() && !options.force {
                return Err(Error::RestoreUnderWay);
            }
            let would = self.restore_would_overwrite();
            if !would.is_empty() && !options.force {
                return Err(Error::RestoreNotEmpty {
                    state,
                    paths: would,
                });
            }
            let apps = self.restore_would_replace().await;
            if !apps.is_empty() && !options.force {
                return Err(Error::RestoreLiveVolumes { apps });
            }
        }
        let mut done = match (options.resume, earlier) {
            (true, Some(r)) if r.from == options.from => r,
            (true, _) => return Err(Error::RestoreNothingToResume),
            (false, _) => Restored {
                from: options.from.clone(),
                started: now(),
                ..Restored::default()
            },
        };
        let key = self.backup_key(b)?;
        let target = self.target_location(b, &options.from)?;
        let mut phases = Vec::new();
        for name in PHASES {
            let previous = done.phases.iter().find(|p| p.name == *name && p.ok);
            if let Some(p) = previous {
                let mut p = p.clone();
                p.skipped = true;
                p.detail = format!("done by an earlier run: {}", p.detail);
                on_event(RestoreEvent::Finished(p.clone()));
                phases.push(p);
                continue;
            }
            on_event(RestoreEvent::Started(name));
            let t = Instant::now();
            // Each phase on a fresh engine: the state it would hold open (the journal) may
            // have been replaced by the identity phase.
            let fresh = self.clone().with_options(self.options.clone());
            let outcome = fresh
                .restore_phase(name, &target, &key, options, &mut done)
                .await;
            let phase = match &outcome {
                Ok(Some(detail)) => Phase {
                    name: (*name).to_string(),
                    ok: true,
                    skipped: false,
                    seconds: t.elapsed().as_secs_f64(),
                    detail: detail.clone(),
                },
                Ok(None) => Phase {
                    name: (*name).to_string(),
                    ok: true,
                    skipped: true,
                    seconds: t.elapsed().as_secs_f64(),
                    detail: "nothing of it in the lab".into(),
                },
                Err(e) => Phase {
                    name: (*name).to_string(),
                    ok: false,
                    skipped: false,
                    seconds: t.elapsed().as_secs_f64(),
                    detail: e.message(),
                },
            };
            on_event(RestoreEvent::Finished(phase.clone()));
            phases.push(phase.clone());
            done.phases.retain(|p| p.name != *name);
            done.phases.push(phase);
            write_journal(&state, &done)?;
            if let Err(e) = outcome {
                return Err(Error::RestorePhase {
                    phase: name,
                    from: options.from.clone(),
                    source: Box::new(e),
                });
            }
        }
        done.phases = phases;
        write_journal(&state, &done)?;
        Ok(done)
    }

    /// Runs one phase; what it did, `None` when the lab has nothing for it.
    async fn restore_phase(
        &self,
        name: &str,
        target: &Location,
        key: &str,
        options: &RestoreOptions,
        done: &mut Restored,
    ) -> Result<Option<String>, Error> {
        let b = self.backup_block()?;
        match name {
            "identity" => {
                if b.state.is_none() {
                    return Ok(None);
                }
                // Restored beside the state (under its `restore/`), so its files move into
                // place instead of being copied.
                let within = self.state_dir().join("restore");
                let (scratch, snap) = self.restore_class("state", target, key, &within).await?;
                let state = self.state_dir();
                let from = scratch.path().to_path_buf();
                let n = blocking(move || {
                    let files = files_under(&from, NOT_RESTORED);
                    for rel in &files {
                        let to = state.join(rel);
                        let io = |source| BackupError::Io {
                            path: to.clone(),
                            doing: "restoring",
                            source,
                        };
                        if let Some(d) = to.parent() {
                            std::fs::create_dir_all(d).map_err(io)?;
                        }
                        std::fs::rename(from.join(rel), &to).map_err(io)?;
                    }
                    Ok(files.len())
                })
                .await?;
                done.windows.push(self.window("state", &snap, done.started));
                Ok(Some(format!(
                    "{n} files of cloudlet's state from snapshot {}",
                    short(&snap.id)
                )))
            }
            "router" => self.restore_router(target, key, done).await,
            "infrastructure" | "reconcile" => {
                // The infrastructure is made with the apps whose volumes come back held at 0
                // replicas; the reconcile scales them up.
                let held: Vec<ResourceId> = if name == "infrastructure" {
                    self.volume_apps()
                        .map(|(n, app)| cluster::workload_id(n, app))
                        .collect()
                } else {
                    Vec::new()
                };
                let changes = self.apply_held(&held).await?;
                Ok(Some(format!("{changes} change(s) applied")))
            }
            "cluster data" => {
                if b.cluster.is_none() {
                    return Ok(None);
                }
                if !self.makes_cluster() {
                    return self.restore_objects(target, key, done).await;
                }
                let within = std::env::temp_dir();
                let (scratch, snap) = self.restore_class("cluster", target, key, &within).await?;
                let (out, state) = (self.output_dir(), self.state_dir());
                let c = self.connection(
                    crate::Domain::Cluster,
                    &self.loaded.lab.targets.cluster,
                    &out,
                    &state,
                );
                let made = cluster::kubeadm_provider::open(&c).map_err(|source| {
                    Error::Engine(cloudlet_core::EngineError::NoProvider {
                        domain: crate::Domain::Cluster,
                        source,
                    })
                })?;
                made.bootstrap()
                    .restore_etcd(&scratch.path().join("etcd.db"))
                    .await
                    .map_err(|e| Error::RestoreEtcd(Box::new(e)))?;
                done.windows
                    .push(self.window("cluster", &snap, done.started));
                Ok(Some(format!(
                    "etcd from snapshot {} on the control plane",
                    short(&snap.id)
                )))
            }
            "volumes" => self.restore_volumes(key, options, done).await,
            "databases" => self.restore_databases(key, options, done).await,
            "verify" => {
                if !self.has_live_cluster() {
                    return Ok(None);
                }
                let within = options.verify_within.unwrap_or(Duration::from_secs(600));
                let found = self.cluster_health(Some(within)).await?;
                use cluster::health::State;
                let bad: Vec<String> = found
                    .iter()
                    .filter(|f| f.state != State::Ready)
                    .map(|f| format!("{} — {}", f.id, f.message))
                    .collect();
                let failed = found.iter().filter(|f| f.state == State::Failed).count();
                if failed > 0 {
                    return Err(Error::RestoreApply(bad.join("; ")));
                }
                Ok(Some(format!(
                    "{} of {} objects ready{}",
                    found.len() - bad.len(),
                    found.len(),
                    if bad.is_empty() {
                        String::new()
                    } else {
                        format!(" (still progressing: {})", bad.join("; "))
                    }
                )))
            }
            other => unreachable!("phase `{other}`"),
        }
    }

    /// The cluster data of a cluster cloudlet did not make: the newest `cluster` snapshot's
    /// objects, proven, put into the cluster the target reaches (objects that exist there are
    /// left as they are). Objects the cluster refuses fail the phase, naming the first five.
    async fn restore_objects(
        &self,
        target: &Location,
        key: &str,
        done: &mut Restored,
    ) -> Result<Option<String>, Error> {
        let Some((client, _)) = self.live_cluster().await? else {
            return Ok(None);
        };
        let within = std::env::temp_dir();
        let (scratch, snap) = self.restore_class("cluster", target, key, &within).await?;
        let imported = cluster::objects::import(&client, scratch.path(), Duration::from_secs(120))
            .await
            .map_err(|e| Error::RestoreObjects(Box::new(e)))?;
        if !imported.failed.is_empty() {
            let first: Vec<String> = imported
                .failed
                .iter()
                .take(5)
                .map(|(what, why)| format!("{what}: {why}"))
                .collect();
            return Err(Error::RestoreApply(format!(
                "{} of the cluster's objects were refused: {}",
                imported.failed.len(),
                first.join("; ")
            )));
        }
        done.windows
            .push(self.window("cluster", &snap, done.started));
        Ok(Some(format!(
            "{} objects created, {} already there, from snapshot {}",
            imported.created,
            imported.existing,
            short(&snap.id)
        )))
    }

    /// The router phase: the newest `router` snapshot, proven, handed to the router's backend.
    async fn restore_router(
        &self,
        target: &Location,
        key: &str,
        done: &mut Restored,
    ) -> Result<Option<String>, Error> {
        let b = self.backup_block()?;
        if b.router.is_none() || self.loaded.lab.router.is_none() {
            return Ok(None);
        }
        let within = self.state_dir().join("restore");
        let (scratch, snap) = self.restore_class("router", target, key, &within).await?;
        let from = scratch.path().to_path_buf();
        let files = blocking(move || {
            files_under(&from, &[MANIFEST])
                .into_iter()
                .map(|rel| {
                    let path = from.join(&rel);
                    let bytes = std::fs::read(&path).map_err(|source| BackupError::Io {
                        path,
                        doing: "reading",
                        source,
                    })?;
                    Ok(cloudlet_core::ConfigFile {
                        name: rel.to_string_lossy().into_owned(),
                        bytes,
                    })
                })
                .collect::<Result<Vec<_>, BackupError>>()
        })
        .await?;
        let router = self.router_provider().await?;
        let imported = router
            .import_config(&files)
            .await
            .map_err(|e| Error::RestoreRouter(Box::new(e)))?;
        done.windows
            .push(self.window("router", &snap, done.started));
        let detail = match imported {
            cloudlet_core::Imported::Live { detail } => detail,
            cloudlet_core::Imported::ByHand { file, how } => {
                let keep = self.state_dir().join("restore").join("router");
                let chosen: Vec<_> = files.into_iter().filter(|f| f.name == file).collect();
                let k = keep.clone();
                blocking(move || crate::backup::write_config_files(&k, &chosen)).await?;
                format!(
                    "load it by hand: {} is saved as {} — {how}",
                    file,
                    keep.join(&file).display()
                )
            }
        };
        Ok(Some(format!("from snapshot {}: {detail}", short(&snap.id))))
    }

    /// The apps whose volumes the lab backs up.
    pub(crate) fn volume_apps(&self) -> impl Iterator<Item = (&str, &cloudlet_core::model::App)> {
        let lab = &self.loaded.lab;
        lab.cluster
            .iter()
            .flat_map(|c| c.apps.iter())
            .filter(|(_, app)| cluster::volume_backup::backed_up(lab, app))
            .map(|(n, app)| (n.as_str(), app))
    }

    /// The volumes phase: each backed-up app's newest volume snapshot (of this lab) restored
    /// by its Job, the app held at 0 replicas meanwhile. An app with no snapshot yet is named
    /// and left as it is.
    /// Each app whose volumes are backed up, with its newest volume snapshot (`None`: never
    /// backed up); empty when the lab backs up no volumes or has no live cluster.
    #[allow(clippy::type_complexity)]
    async fn newest_volume_snapshots(
        &self,
        key: &str,
    ) -> Result<Vec<(&str, &cloudlet_core::model::App, Option<Snapshot>)>, Error> {
        let b = self.backup_block()?;
        let Some(v) = &b.volumes else {
            return Ok(Vec::new());
        };
        let apps: Vec<_> = self.volume_apps().collect();
        if apps.is_empty() || !self.has_live_cluster() {
            return Ok(Vec::new());
        }
        let target = self.target_location(b, &v.target)?;
        let k = key.to_string();
        let snaps = blocking(move || Repo::open(&target, &k)?.snapshots()).await?;
        let lab = &self.loaded.lab;
        Ok(apps
            .into_iter()
            .map(|(name, app)| {
                let ns = cloudlet_core::model::Lab::app_namespace(name, app);
                let tag = cluster::volume_backup::app_tag(ns, name);
                let newest = snaps
                    .iter()
                    .filter(|s| s.class == "volumes" && s.host == lab.name && s.tags.contains(&tag))
                    .max_by_key(|s| s.unix)
                    .cloned();
                (name, app, newest)
            })
            .collect())
    }

    async fn restore_volumes(
        &self,
        key: &str,
        options: &RestoreOptions,
        done: &mut Restored,
    ) -> Result<Option<String>, Error> {
        let found = self.newest_volume_snapshots(key).await?;
        if found.is_empty() {
            return Ok(None);
        }
        let lab = &self.loaded.lab;
        let mut restores = Vec::new();
        let mut taken = Vec::new();
        let mut never = Vec::new();
        for (name, app, newest) in found {
            let ns = cloudlet_core::model::Lab::app_namespace(name, app);
            let Some(snap) = newest else {
                never.push(format!("{ns}/{name}"));
                continue;
            };
            let Some(job) = cluster::volume_backup::restore_job(lab, name, app, ns, &snap.id)
            else {
                continue;
            };
            restores.push(cluster::volume_restore::AppRestore {
                namespace: ns.to_string(),
                app: name.to_string(),
                stateful: app.workload == cloudlet_core::model::Workload::Statefulset,
                job,
            });
            taken.push(snap.clone());
        }
        let Some((client, _)) = self.live_cluster().await? else {
            return Ok(None);
        };
        let within = options
            .volumes_within
            .unwrap_or(Duration::from_secs(30 * 60));
        let volumes = |e| Error::RestoreVolumes(Box::new(e));
        cluster::volume_restore::hold(&client, &restores, within)
            .await
            .map_err(volumes)?;
        let restored = cluster::volume_restore::restore(&client, &restores, within)
            .await
            .map_err(volumes)?;
        let said = self.app_windows("volumes", &restored, &taken, done);
        let mut detail = if said.is_empty() {
            "no app's volumes to restore".to_string()
        } else {
            format!("volumes of {}", said.join(", "))
        };
        if !never.is_empty() {
            detail.push_str(&format!(
                "; never backed up, left empty: {}",
                never.join(", ")
            ));
        }
        Ok(Some(detail))
    }

    /// Each app with a postgres or mysql dump gets it back: the servers start (the other apps whose
    /// volumes came back stay held, so none of them meets an empty database and makes its
    /// schema anew), then a Job per app loads the dump from the app's newest volume snapshot.
    async fn restore_databases(
        &self,
        key: &str,
        options: &RestoreOptions,
        done: &mut Restored,
    ) -> Result<Option<String>, Error> {
        let found = self.newest_volume_snapshots(key).await?;
        let lab = &self.loaded.lab;
        let mut loads = Vec::new();
        let mut taken = Vec::new();
        let mut held = Vec::new();
        for (name, app, newest) in &found {
            let ns = cloudlet_core::model::Lab::app_namespace(name, app);
            match newest
                .as_ref()
                .and_then(|s| cluster::volume_backup::load_job(lab, name, app, ns, &s.id))
            {
                Some(job) => {
                    loads.push(cluster::volume_restore::AppRestore {
                        namespace: ns.to_string(),
                        app: name.to_string(),
                        stateful: app.workload == cloudlet_core::model::Workload::Statefulset,
                        job,
                    });
                    taken.extend(newest.clone());
                }
                None => held.push(cluster::workload_id(name, app)),
            }
        }
        if loads.is_empty() {
            return Ok(None);
        }
        self.apply_held(&held).await?;
        let Some((client, _)) = self.live_cluster().await? else {
            return Ok(None);
        };
        let within = options
            .volumes_within
            .unwrap_or(Duration::from_secs(30 * 60));
        let loaded = cluster::volume_restore::restore(&client, &loads, within)
            .await
            .map_err(|e| Error::RestoreVolumes(Box::new(e)))?;
        let said = self.app_windows("database", &loaded, &taken, done);
        Ok(Some(format!("dumps loaded into {}", said.join(", "))))
    }

    /// The lab applied with the workloads `held` at 0 replicas; how many changes it made. A
    /// step that failed fails the phase, naming the first five.
    async fn apply_held(&self, held: &[ResourceId]) -> Result<usize, Error> {
        let plan = self.plan_holding(held).await?;
        let changes = plan.summary.create + plan.summary.update + plan.summary.delete;
        let applied = self
            .apply_holding(&plan, ApplyOptions::default(), None, held)
            .await?;
        if !applied.report.failed.is_empty() {
            let failed: Vec<String> = applied
                .report
                .failed
                .iter()
                .take(5)
                .map(|(id, e)| format!("{id}: {e}"))
                .collect();
            return Err(Error::RestoreApply(failed.join("; ")));
        }
        Ok(changes)
    }

    /// Each app's Job that ran from its snapshot, journaled as the app's data-loss window of
    /// `class`; what to say of each.
    fn app_windows(
        &self,
        class: &str,
        ran: &[cluster::volume_restore::AppRestored],
        taken: &[Snapshot],
        done: &mut Restored,
    ) -> Vec<String> {
        ran.iter()
            .zip(taken)
            .map(|(r, snap)| {
                let mut w = self.window(class, snap, done.started);
                w.app = Some(r.app.clone());
                done.windows.push(w);
                format!(
                    "{} from snapshot {} in {:.1}s",
                    r.app,
                    short(&snap.id),
                    r.seconds
                )
            })
            .collect()
    }

    fn window(&self, class: &str, snap: &Snapshot, started: i64) -> LossWindow {
        LossWindow {
            app: None,
            class: class.to_string(),
            snapshot: snap.id.clone(),
            taken: snap.unix,
            seconds_before_restore: started - snap.unix,
        }
    }

    /// The newest snapshot of `class` restored into a scratch directory under `within` and
    /// proven against
    /// its manifest: a snapshot cut short or damaged stops here, named.
    async fn restore_class(
        &self,
        class: &'static str,
        target: &Location,
        key: &str,
        within: &Path,
    ) -> Result<(tempfile::TempDir, Snapshot), Error> {
        let (target, key, within) = (target.clone(), key.to_string(), within.to_path_buf());
        let (host, as_path) = (self.loaded.lab.name.clone(), self.backup_path(class));
        Ok(blocking(move || {
            let repo = Repo::open(&target, &key)?;
            let all = repo.snapshots()?;
            let snap = all
                .iter()
                .filter(|s| s.class == class && s.host == host)
                .max_by_key(|s| s.unix)
                .cloned()
                .ok_or_else(|| BackupError::Manifest {
                    snapshot: "(none)".into(),
                    message: format!("no snapshot of `{class}` for lab `{host}` in {target}"),
                })?;
            let scratch = cloudlet_backup::stage::scratch_in(&within, "restore")?;
            let dir = scratch.path().to_path_buf();
            let named = |e: BackupError| BackupError::Manifest {
                snapshot: snap.id.clone(),
                message: e.to_string(),
            };
            // Each file is hashed as it is written: the proof costs no second read.
            let got = repo
                .restore_hashed(&format!("{}:{as_path}", snap.id), &dir)
                .map_err(named)?;
            let m = Manifest::read(&dir, &snap.id)?;
            let diff = m.compare(&got);
            if !diff.is_empty() {
                return Err(BackupError::Manifest {
                    snapshot: snap.id.clone(),
                    message: format!(
                        "the restored files do not match what was backed up: {}",
                        diff.join("; ")
                    ),
                });
            }
            Ok((scratch, snap))
        })
        .await?)
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed with its apps' volumes backed up to an S3 target, in a directory of its own.
    fn seed_with_volume_backups() -> (tempfile::TempDir, Lab) {
        let work = tempfile::tempdir().unwrap();
        let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed");
        for e in std::fs::read_dir(&seed).unwrap().flatten() {
            std::fs::copy(e.path(), work.path().join(e.file_name())).unwrap();
        }
        std::fs::create_dir_all(work.path().join("secrets")).unwrap();
        for f in ["postmaster-password", "s3-access", "s3-secret", "key"] {
            std::fs::write(work.path().join("secrets").join(f), "x").unwrap();
        }
        std::fs::write(
            work.path().join("backup.yaml"),
            "backup:\n  key: {file: secrets/key}\n  targets:\n    offsite:\n      s3: {endpoint: https://store.example, bucket: vols, access_key: {file: secrets/s3-access}, secret_key: {file: secrets/s3-secret}}\n  volumes: {target: offsite, every: 6h}\n",
        )
        .unwrap();
        let lab = Lab::load(work.path()).unwrap();
        (work, lab)
    }

    fn replicas(plan: &cloudlet_core::Plan, name: &str) -> serde_json::Value {
        plan.steps
            .iter()
            .find(|s| &*s.id.kind == "deployment" && &*s.id.name == name)
            .unwrap_or_else(|| panic!("no deployment {name} in the plan"))
            .resource
            .body
            .value()["spec"]["replicas"]
            .clone()
    }

    #[allow(clippy::disallowed_methods, reason = "a test's runtime")]
    #[tokio::test]
    async fn the_infrastructure_phase_holds_only_the_apps_whose_volumes_come_back() {
        let (_work, lab) = seed_with_volume_backups();
        let held: Vec<ResourceId> = lab
            .volume_apps()
            .map(|(n, app)| cluster::workload_id(n, app))
            .collect();
        let names: Vec<&str> = held.iter().map(|id| &*id.name).collect();
        assert_eq!(names, ["blog.blog", "mailserver.mailserver"]);

        let plan = lab.plan_holding(&held).await.unwrap();
        assert_eq!(replicas(&plan, "blog.blog"), 0);
        assert_eq!(replicas(&plan, "mailserver.mailserver"), 0);
        assert_eq!(
            replicas(&plan, "wireguard.wireguard"),
            1,
            "no volumes: not held"
        );
        // The lab as written: the seed's replicas.
        let plan = lab.plan().await.unwrap();
        assert_eq!(replicas(&plan, "blog.blog"), 2);
    }
}
