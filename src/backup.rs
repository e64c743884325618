//! Backups through the facade: run each class the lab declares into its target, list what
//! the targets hold, verify up the ladder, and the systemd units that run backups when
//! cloudlet is not running. The rules of what a class holds live here; the repository
//! format, staging, etcd's API and the ladder live in [`cloudlet_backup`].

use std::path::Path;
use std::time::{Duration, Instant};

use cloudlet_backup::repo::{Location, Repo, Snapshot};
use cloudlet_backup::runs::{self, Run};
use cloudlet_backup::s3::S3Location;
use cloudlet_backup::sftp::SftpLocation;
use cloudlet_backup::stage::Manifest;
use cloudlet_backup::verify::{self, Class, Level};
use cloudlet_backup::{BackupError, blocking, etcd};
use cloudlet_core::model::{Backup, BackupClass};

use crate::{Error, Lab, cluster};

/// What a state backup leaves out of the state directory: the lock, the record of backup
/// runs (it changes with every run), the local backend's rendered files (made again from the
/// lab by any apply) and the journal of a restore.
const STATE_SKIP: &[&str] = &["lock", "backup", "local", "restore"];

/// How often a failed class is tried before its run is recorded as failed.
const ATTEMPTS: u32 = 3;

/// One class's run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupRun {
    /// The class (`state`, `cluster`).
    pub class: String,
    /// The target's name.
    pub target: String,
    /// The snapshot it made.
    pub snapshot: Option<Snapshot>,
    /// Why it failed, after its attempts.
    pub error: Option<String>,
    /// How long it took, attempts included.
    pub seconds: f64,
    /// The snapshots retention forgot.
    pub forgotten: Vec<String>,
}

/// What one target holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetSnapshots {
    /// The target's name.
    pub target: String,
    /// Its repository: a directory, or `s3:https://…` (never credentials).
    pub repository: String,
    /// Its snapshots, oldest first (every host's and class's).
    pub snapshots: Vec<Snapshot>,
}

/// One class's climb up the ladder.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verified {
    /// The class.
    pub class: String,
    /// For the `volumes` class, the app (`NAMESPACE/APP`) whose volumes were proven.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The target's name.
    pub target: String,
    /// Each level reached, the failed one last.
    pub levels: Vec<Level>,
}

impl Verified {
    /// Whether every level asked for passed. Level 4 is there only for an app whose database
    /// dump the lab gives a query: anything else asked for 4 passes with its levels 0–3.
    pub fn passed(&self, up_to: u8) -> bool {
        let n = self.levels.len();
        self.levels.iter().all(|l| l.ok)
            && (n == usize::from(up_to.min(3)) + 1 || n == usize::from(up_to) + 1)
    }
}

/// Writes a device's configuration files under `dir`, each readable by the owner only; a
/// name that would leave `dir` (or shadow the manifest) is refused.
pub(crate) fn write_config_files(
    dir: &Path,
    files: &[cloudlet_core::ConfigFile],
) -> Result<(), BackupError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    for f in files {
        if !cloudlet_core::ConfigFile::valid_name(&f.name)
            || f.name == cloudlet_backup::stage::MANIFEST
        {
            return Err(BackupError::Device {
                device: "router",
                source: format!(
                    "its backend named a file `{}`, which is not a plain relative name",
                    f.name.chars().take(100).collect::<String>()
                )
                .into(),
            });
        }
        let path = dir.join(&f.name);
        let io = |source| BackupError::Io {
            path: path.clone(),
            doing: "writing",
            source,
        };
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(io)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        out.write_all(&f.bytes).map_err(io)?;
    }
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Lab {
    pub(crate) fn backup_block(&self) -> Result<&Backup, Error> {
        self.loaded.lab.backup.as_ref().ok_or(Error::NoBackup)
    }

    /// The repositories' password, from where the lab says.
    pub(crate) fn backup_key(&self, b: &Backup) -> Result<String, Error> {
        b.key
            .read(&self.loaded.base_dir)
            .map_err(|e| Error::BackupKey(Box::new(e)))
    }

    /// Where the target `name` keeps its repository, with its credentials read.
    pub(crate) fn target_location(&self, b: &Backup, name: &str) -> Result<Location, Error> {
        let t = b
            .targets
            .get(name)
            .ok_or_else(|| Error::NoBackupTarget(name.to_string()))?;
        let base = &self.loaded.base_dir;
        if let Some(s3) = &t.s3 {
            let read = |field: &'static str, r: &cloudlet_core::model::SecretRef| {
                r.read(base).map_err(|e| Error::BackupCredential {
                    target: name.to_string(),
                    field,
                    source: Box::new(e),
                })
            };
            return Ok(Location::S3(S3Location {
                endpoint: s3.endpoint.trim_end_matches('/').to_string(),
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
                region: s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
                access_key: read("access_key", &s3.access_key)?,
                secret_key: read("secret_key", &s3.secret_key)?,
                ca: s3.ca.as_ref().map(|c| base.join(c)),
            }));
        }
        if let Some(sftp) = &t.sftp {
            return Ok(Location::Sftp(SftpLocation {
                host: sftp.host.clone(),
                port: sftp.port,
                user: sftp.user.clone(),
                path: sftp.path.clone(),
                identity: sftp.identity.as_ref().map(|p| base.join(p)),
                known_hosts: sftp.known_hosts.as_ref().map(|p| base.join(p)),
            }));
        }
        Ok(Location::Dir(
            base.join(t.dir.as_deref().unwrap_or(Path::new(""))),
        ))
    }

    /// The path a class's snapshots hold (`/cloudlet/LAB/CLASS`): what a restore recreates.
    pub fn backup_path(&self, class: &str) -> String {
        format!("/cloudlet/{}/{class}", self.loaded.lab.name)
    }

    /// Backs up each class the lab declares (those named in `only`, when it names any), one
    /// after the other, each into its target; a failed class is tried [`ATTEMPTS`] times, then
    /// recorded as failed and the others still run. Every run is recorded for `verify` and
    /// `status`. Retention runs after each class's backup.
    pub async fn backup_run(&self, only: &[String]) -> Result<Vec<BackupRun>, Error> {
        self.check_backup_lab()?;
        let b = self.backup_block()?;
        for o in only {
            if !b.classes().iter().any(|(c, _)| c == o) {
                return Err(Error::NoBackupClass(o.clone()));
            }
        }
        let key = self.backup_key(b)?;
        let mut out = Vec::new();
        for (class, c) in b.classes() {
            if !only.is_empty() && !only.iter().any(|o| o == class) {
                continue;
            }
            // Where it goes, read as the key is: a credential that cannot be read is the lab's
            // error, not an attempt that failed.
            let target = self.target_location(b, &c.target)?;
            let started = now();
            let t = Instant::now();
            let mut result = Err(BackupError::Task("not tried".into()));
            for attempt in 1..=ATTEMPTS {
                result = self.backup_class(class, c, &target, &key).await;
                match &result {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(class, attempt, error = %e, "backup failed");
                        if attempt < ATTEMPTS {
                            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                        }
                    }
                }
            }
            let seconds = t.elapsed().as_secs_f64();
            let (snapshot, forgotten, error) = match result {
                Ok((s, f)) => (Some(s), f, None),
                Err(e) => (None, Vec::new(), Some(cloudlet_core::error::chain(&e))),
            };
            runs::record(
                &self.state_dir(),
                &Run {
                    class: class.to_string(),
                    target: c.target.clone(),
                    started,
                    seconds,
                    snapshot: snapshot.as_ref().map(|s| s.id.clone()),
                    error: error.clone(),
                },
            )?;
            out.push(BackupRun {
                class: class.to_string(),
                target: c.target.clone(),
                snapshot,
                error,
                seconds,
                forgotten,
            });
        }
        Ok(out)
    }

    /// Refuses a lab with validation errors, as plan does.
    pub(crate) fn check_backup_lab(&self) -> Result<(), Error> {
        let report = self.validate();
        if report.has_errors() {
            return Err(Error::Invalid {
                diagnostics: report.diagnostics,
            });
        }
        Ok(())
    }

    /// Stages `class` and writes it into its target; the snapshot and what retention forgot.
    async fn backup_class(
        &self,
        class: &'static str,
        c: &BackupClass,
        target: &Location,
        key: &str,
    ) -> Result<(Snapshot, Vec<String>), BackupError> {
        let staging = cloudlet_backup::stage::scratch("backup")?;
        let dir = staging.path().to_path_buf();
        let taken = now();
        match class {
            "state" => {
                let state = self.state_dir();
                let d = dir.clone();
                blocking(move || cloudlet_backup::stage::copy_tree(&state, &d, STATE_SKIP)).await?;
            }
            "cluster" if self.makes_cluster() => self.stage_etcd(&dir).await?,
            "cluster" => self.stage_objects(&dir).await?,
            "router" => self.stage_router(&dir).await?,
            other => unreachable!("class `{other}` is not one of the lab's"),
        }
        let (target, host, as_path) = (
            target.clone(),
            self.loaded.lab.name.clone(),
            self.backup_path(class),
        );
        let (key, keep) = (key.to_string(), c.keep.clone());
        blocking(move || {
            Manifest::of(&dir, class, taken)?.write(&dir)?;
            let repo = Repo::open_or_init(&target, &key)?;
            let snap = repo.backup(&dir, &as_path, &host, class)?;
            let forgotten = repo.forget(class, &host, &keep)?;
            drop(staging);
            Ok((snap, forgotten))
        })
        .await
    }

    /// The router's configuration, as its backend exports it, into `dir` (one file each,
    /// readable by the owner only: it holds the router's secrets).
    async fn stage_router(&self, dir: &Path) -> Result<(), BackupError> {
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| BackupError::Device {
            device: "router",
            source,
        };
        let router = self
            .router_provider()
            .await
            .map_err(|e| fail(Box::new(e)))?;
        let files = router
            .export_config()
            .await
            .map_err(|e| fail(Box::new(e)))?;
        let d = dir.to_path_buf();
        blocking(move || write_config_files(&d, &files)).await
    }

    /// The objects of a cluster cloudlet did not make, through its API, into `dir`.
    async fn stage_objects(&self, dir: &Path) -> Result<(), BackupError> {
        let fail =
            |source: Box<dyn std::error::Error + Send + Sync>| BackupError::Objects { source };
        let Some((client, _)) = self.live_cluster().await.map_err(|e| fail(Box::new(e)))? else {
            return Err(fail("the lab's cluster target reaches no cluster".into()));
        };
        let exported = cluster::objects::export(&client, dir)
            .await
            .map_err(|e| fail(Box::new(e)))?;
        tracing::debug!(
            objects = exported.objects(),
            resources = exported.resources.len(),
            "cluster objects staged"
        );
        Ok(())
    }

    /// TLS to the etcd of the cluster cloudlet made: a client certificate for `user` from the
    /// cluster's etcd CA in the vault, valid for an hour.
    pub(crate) fn etcd_tls(
        &self,
        user: &str,
    ) -> Result<cloudlet_transport::tls::rustls::ClientConfig, String> {
        let vault = cloudlet_core::vault::key_from_env()
            .and_then(|k| cloudlet_core::vault::Vault::open(self.state_dir().join("vault"), &k))
            .map_err(|e| format!("the vault: {}", cloudlet_core::error::chain(&e)))?;
        let (identity, _) = cluster::identity::Identity::load_or_make(&vault)
            .map_err(|e| cloudlet_core::error::chain(&e))?;
        let (cert, key) = identity
            .etcd_client(user, Duration::from_secs(3600))
            .map_err(|e| cloudlet_core::error::chain(&e))?;
        cloudlet_transport::tls::mutual_config(&identity.etcd_ca.cert, &cert, key.expose())
            .map_err(|e| cloudlet_core::error::chain(&e))
    }

    /// An etcd snapshot of the cluster cloudlet made, from its first control plane, into
    /// `dir/etcd.db`.
    async fn stage_etcd(&self, dir: &Path) -> Result<(), BackupError> {
        let lab = &self.loaded.lab;
        let fail = |message: String| BackupError::Etcd {
            endpoint: "the first control plane".into(),
            message,
        };
        let cp = lab
            .cluster
            .as_ref()
            .and_then(|c| c.control_plane.first())
            .ok_or_else(|| fail("the lab has no control plane".into()))?;
        let ip = lab
            .machine_ip(cp)
            .ok_or_else(|| fail(format!("`{cp}` has no address")))?;
        let tls = self.etcd_tls("cloudlet-backup").map_err(fail)?;
        etcd::snapshot(
            &format!("https://{ip}:2379"),
            tls,
            &dir.join("etcd.db"),
            etcd::Limits::default(),
        )
        .await?;
        Ok(())
    }

    /// What each target holds.
    pub async fn backup_list(&self) -> Result<Vec<TargetSnapshots>, Error> {
        let b = self.backup_block()?;
        let key = self.backup_key(b)?;
        let mut out = Vec::new();
        for name in b.targets.keys() {
            let loc = self.target_location(b, name)?;
            let repository = loc.to_string();
            let k = key.clone();
            let snapshots = blocking(move || {
                if cloudlet_backup::repo::exists(&loc)? {
                    Repo::open(&loc, &k)?.snapshots()
                } else {
                    Ok(Vec::new())
                }
            })
            .await?;
            out.push(TargetSnapshots {
                target: name.clone(),
                repository,
                snapshots,
            });
        }
        Ok(out)
    }

    /// Climbs the verification ladder for each class up to `up_to` (0–3): L3 restores the
    /// newest snapshot into a scratch directory that is removed afterwards.
    pub async fn backup_verify(&self, up_to: u8) -> Result<Vec<Verified>, Error> {
        let b = self.backup_block()?;
        let key = self.backup_key(b)?;
        let up_to = up_to.min(verify::HIGHEST);
        let all_runs = runs::read(&self.state_dir());
        let mut out = Vec::new();
        for (class, c) in b.classes() {
            let target = self.target_location(b, &c.target)?;
            let (host, as_path) = (self.loaded.lab.name.clone(), self.backup_path(class));
            let (key, runs, every) = (key.clone(), all_runs.clone(), c.every.0);
            let levels = blocking(move || {
                let scratch = cloudlet_backup::stage::scratch("verify")?;
                let class = Class {
                    name: class,
                    host: &host,
                    every,
                    as_path: &as_path,
                };
                match Repo::open(&target, &key) {
                    Ok(repo) => Ok(verify::ladder(
                        &repo,
                        &class,
                        &runs,
                        up_to,
                        &scratch.path().join("restore"),
                    )),
                    // A repository that cannot be opened fails every level but L0.
                    Err(e @ BackupError::WrongKey { .. }) => Err(e),
                    Err(e) => Ok(verify::unopened(verify::level0(&class, &runs), up_to, &e)),
                }
            })
            .await?;
            out.push(Verified {
                class: class.to_string(),
                app: None,
                target: c.target.clone(),
                levels,
            });
        }
        out.extend(self.verify_volumes(b, &key, up_to).await?);
        Ok(out)
    }

    /// The ladder for each app whose volumes the lab backs up: L0 from its CronJob's status in
    /// the live cluster, then its newest snapshot in the volumes target (the repository's
    /// data read once for all apps).
    async fn verify_volumes(
        &self,
        b: &Backup,
        key: &str,
        up_to: u8,
    ) -> Result<Vec<Verified>, Error> {
        let Some(v) = &b.volumes else {
            return Ok(Vec::new());
        };
        let lab = &self.loaded.lab;
        let apps: Vec<(String, String)> = lab
            .cluster
            .iter()
            .flat_map(|c| c.apps.iter())
            .filter(|(_, app)| cluster::volume_backup::backed_up(lab, app))
            .map(|(n, app)| {
                (
                    cloudlet_core::model::Lab::app_namespace(n, app).to_string(),
                    n.clone(),
                )
            })
            .collect();
        if apps.is_empty() {
            return Ok(Vec::new());
        }
        let client = match self.live_cluster().await {
            Ok(Some((c, _))) => Ok(c),
            Ok(None) => {
                Err("the lab's cluster target is not a live cluster: no CronJob to ask".to_string())
            }
            Err(e) => Err(format!("the cluster could not be reached: {e}")),
        };
        let mut zeros = Vec::new();
        for (ns, app) in &apps {
            let t = std::time::Instant::now();
            let (ok, detail) = match &client {
                Err(why) => (false, why.clone()),
                Ok(c) => match cluster::volume_backup::last_run(c, ns, app).await {
                    Ok(found) => found,
                    Err(e) => (false, format!("reading its CronJob: {e}")),
                },
            };
            zeros.push(Level {
                level: 0,
                name: "the job ran",
                ok,
                detail,
                seconds: t.elapsed().as_secs_f64(),
            });
        }
        let target = self.target_location(b, &v.target)?;
        let (key, host, every) = (key.to_string(), lab.name.clone(), v.every.0);
        let listed = apps.clone();
        let mut ladders = blocking(move || {
            // A wrong key is the lab's error; a repository that cannot be opened otherwise
            // fails every level but L0.
            let repo = match Repo::open(&target, &key) {
                Err(e @ BackupError::WrongKey { .. }) => return Err(e),
                other => other,
            };
            let mut checked = None;
            let mut out = Vec::new();
            for ((ns, app), zero) in listed.iter().zip(zeros) {
                let mut newest = None;
                let levels = match &repo {
                    Ok(repo) => {
                        let tag = cluster::volume_backup::app_tag(ns, app);
                        let select = |s: &cloudlet_backup::repo::Snapshot| {
                            s.class == "volumes" && s.host == host && s.tags.contains(&tag)
                        };
                        newest = repo
                            .snapshots()
                            .ok()
                            .and_then(|all| all.into_iter().filter(select).max_by_key(|s| s.unix))
                            .map(|s| s.id);
                        let subject = verify::Subject {
                            what: format!("the volumes of {ns}/{app}"),
                            every,
                            select: &select,
                            proof: verify::Proof::Blocks,
                        };
                        let scratch = cloudlet_backup::stage::scratch("verify")?;
                        verify::climb(
                            repo,
                            &subject,
                            zero,
                            up_to,
                            &scratch.path().join("restore"),
                            &mut checked,
                        )
                    }
                    Err(e) => verify::unopened(zero, up_to, e),
                };
                out.push((format!("{ns}/{app}"), levels, newest));
            }
            Ok(out)
        })
        .await?;
        // L4: each app whose dump has a query, its newest snapshot's dump loaded into a
        // scratch server in the cluster and asked.
        if up_to >= 4
            && let Ok(client) = &client
        {
            for ((ns, app), (_, levels, newest)) in apps.iter().zip(ladders.iter_mut()) {
                let Some(def) = lab.cluster.as_ref().and_then(|c| c.apps.get(app)) else {
                    continue;
                };
                let job = newest
                    .as_ref()
                    .and_then(|id| cluster::volume_backup::verify_job(lab, app, def, ns, id));
                let Some(job) = job else { continue };
                if levels.len() != 4 || !levels.iter().all(|l| l.ok) {
                    continue;
                }
                let t = std::time::Instant::now();
                let run = cluster::volume_restore::AppRestore {
                    namespace: ns.clone(),
                    app: app.clone(),
                    stateful: def.workload == cloudlet_core::model::Workload::Statefulset,
                    job,
                };
                let within = Duration::from_secs(15 * 60);
                let (ok, detail) = match cluster::volume_restore::restore(client, &[run], within)
                    .await
                {
                    Ok(_) => (
                        true,
                        format!(
                            "the dump loaded into a scratch server in Job {ns}/{} and answered the lab's query",
                            cluster::volume_backup::verify_name(app)
                        ),
                    ),
                    Err(e) => (false, cloudlet_core::error::chain(&e)),
                };
                levels.push(Level {
                    level: 4,
                    name: "the database answers",
                    ok,
                    detail,
                    seconds: t.elapsed().as_secs_f64(),
                });
            }
        }
        Ok(ladders
            .into_iter()
            .map(|(app, levels, _)| Verified {
                class: "volumes".into(),
                app: Some(app),
                target: v.target.clone(),
                levels,
            })
            .collect())
    }

    /// The newest run of each class, for `status`.
    pub fn backup_runs(&self) -> Vec<Run> {
        let all = runs::read(&self.state_dir());
        let mut out: Vec<Run> = Vec::new();
        for r in all.into_iter().rev() {
            if !out.iter().any(|o| o.class == r.class) {
                out.push(r);
            }
        }
        out.reverse();
        out
    }

    /// systemd units that run each class's backup on its schedule with `bin` (the cloudlet
    /// executable) on the lab at `lab_path`: `cloudlet-backup-LAB-CLASS.service` and `.timer`.
    /// The key and the vault's key come from `/etc/cloudlet/LAB.env` when the lab reads them
    /// from the environment.
    pub fn backup_timer_units(
        &self,
        bin: &Path,
        lab_path: &Path,
    ) -> Result<Vec<(String, String)>, Error> {
        let b = self.backup_block()?;
        let lab = &self.loaded.lab.name;
        let mut out = Vec::new();
        for (class, c) in b.classes() {
            let unit = format!("cloudlet-backup-{lab}-{class}");
            out.push((
                format!("{unit}.service"),
                format!(
                    "[Unit]\nDescription=cloudlet: back up the {class} of lab {lab}\n\
                     Wants=network-online.target\nAfter=network-online.target\n\n\
                     [Service]\nType=oneshot\nEnvironmentFile=-/etc/cloudlet/{lab}.env\n\
                     ExecStart={} backup run {} --class {class}\n",
                    bin.display(),
                    lab_path.display()
                ),
            ));
            out.push((
                format!("{unit}.timer"),
                format!(
                    "[Unit]\nDescription=cloudlet: back up the {class} of lab {lab} every {}\n\n\
                     [Timer]\nOnCalendar={}\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n",
                    c.every,
                    on_calendar(c.every.0)
                ),
            ));
        }
        Ok(out)
    }
}

/// systemd's calendar expression for "every `every` seconds", aligned to the hour or the day:
/// validation has made sure `every` is whole minutes dividing an hour, whole hours dividing a
/// day, or whole days (N days other than 1 and 7 count from each month's 1st).
pub fn on_calendar(every: u64) -> String {
    const DAY: u64 = 86_400;
    if every >= DAY {
        return if every == 7 * DAY {
            "Mon *-*-* 00:00:00".into()
        } else if every == DAY {
            "*-*-* 00:00:00".into()
        } else {
            // Whole days other than 1 and 7: every N days of the month from the 1st.
            format!("*-*-01/{} 00:00:00", every / DAY)
        };
    }
    if every >= 3600 && every.is_multiple_of(3600) {
        return format!("*-*-* 00/{}:00:00", every / 3600);
    }
    // Whole minutes dividing an hour.
    format!("*-*-* *:00/{}:00", every / 60)
}
