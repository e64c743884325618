//! cloudlet for the JVM through uniffi: a `Lab` object whose async methods are Kotlin
//! `suspend` functions (and `CompletableFuture`s for Java, in the package's `JavaLab`),
//! results as typed records, errors as a `CloudletException` hierarchy, events through
//! listener interfaces. Conversion only: every rule is the facade's.

use std::sync::Arc;

mod records;
pub use records::*;

uniffi::setup_scaffolding!();

/// Errors of the library, one variant per kind; `reason` (also the exception's message) has
/// the cause chain.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum CloudletException {
    /// The lab files do not load or validate; `diagnostics` has every problem with its
    /// position.
    #[error("{reason}")]
    Lab {
        /// What is wrong (the first problem with its position).
        reason: String,
        /// Every diagnostic.
        diagnostics: Vec<Diagnostic>,
    },
    /// A file could not be read or written.
    #[error("{reason}")]
    Io {
        /// What went wrong.
        reason: String,
        /// The file it is about, where the failure names one.
        path: Option<String>,
        /// The system's error number (2: ENOENT), where an I/O error of the system is among
        /// its causes.
        errno: Option<i32>,
    },
    /// The plan no longer matches the lab or the infrastructure.
    #[error("{reason}")]
    StalePlan {
        /// Why.
        reason: String,
    },
    /// The plan deletes data the lab let go (`retain: false`) and the apply was not allowed to;
    /// nothing was changed.
    #[error("{reason}")]
    DataLoss {
        /// Which steps would delete data.
        reason: String,
        /// The steps that delete data.
        ids: Vec<String>,
    },
    /// Another apply holds the lab's lock.
    #[error("{reason}")]
    Locked {
        /// Who holds it.
        reason: String,
    },
    /// A backend failed.
    #[error("{reason}")]
    Backend {
        /// What went wrong.
        reason: String,
    },
    /// Rendering to files failed.
    #[error("{reason}")]
    Render {
        /// What went wrong.
        reason: String,
    },
    /// The network boot service could not start, or its install state is unreadable.
    #[error("{reason}")]
    Boot {
        /// What went wrong.
        reason: String,
    },
}

impl From<cloudlet::Error> for CloudletException {
    fn from(e: cloudlet::Error) -> Self {
        use cloudlet::ErrorKind as K;
        let reason = e.message();
        match e.kind() {
            K::Lab => CloudletException::Lab {
                diagnostics: records::from(&e.diagnostics().unwrap_or_default())
                    .unwrap_or_default(),
                reason,
            },
            K::Io => CloudletException::Io {
                reason,
                path: e.path().map(|p| p.display().to_string()),
                errno: e.os_error(),
            },
            K::StalePlan => CloudletException::StalePlan { reason },
            K::Locked => CloudletException::Locked { reason },
            K::DataLoss => CloudletException::DataLoss {
                ids: match &e {
                    cloudlet::Error::Engine(cloudlet::core::EngineError::DataLoss { ids }) => {
                        ids.iter().map(ToString::to_string).collect()
                    }
                    _ => Vec::new(),
                },
                reason,
            },
            K::Render => CloudletException::Render { reason },
            K::Boot => CloudletException::Boot { reason },
            _ => CloudletException::Backend { reason },
        }
    }
}

/// Receives an apply's progress, one event per call, from the library's threads.
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: Event);
}

/// Receives what a boot service does, one event per call, from the library's threads.
#[uniffi::export(with_foreign)]
pub trait BootListener: Send + Sync {
    /// One event.
    fn on_boot(&self, event: BootEvent);
}

/// Receives each phase of a restore as it ends, from the library's threads.
#[uniffi::export(with_foreign)]
pub trait PhaseListener: Send + Sync {
    /// One phase.
    fn on_phase(&self, phase: RestorePhase);
}

/// A plan: what an apply would do. Apply it as it is, or save `toJson()` and read it back
/// with `Plan.fromJson` (an apply refuses it once the lab or the infrastructure changed).
#[derive(uniffi::Object)]
pub struct Plan(Arc<cloudlet::Plan>);

#[uniffi::export]
impl Plan {
    /// A saved plan (the text `toJson()` or `cloudlet plan -out` wrote).
    #[uniffi::constructor]
    pub fn from_json(text: String) -> Result<Arc<Self>, CloudletException> {
        let plan = serde_json::from_str(&text).map_err(|e| CloudletException::StalePlan {
            reason: format!("not a cloudlet plan: {e}"),
        })?;
        Ok(Arc::new(Plan(Arc::new(plan))))
    }

    /// The lab it is for.
    pub fn lab(&self) -> String {
        self.0.lab.clone()
    }

    /// Its counts.
    pub fn summary(&self) -> Result<Summary, CloudletException> {
        records::from(&self.0.summary)
    }

    /// Its steps, in an order that respects their dependencies.
    pub fn steps(&self) -> Result<Vec<Step>, CloudletException> {
        Ok(records::from::<_, records::RawPlan>(&*self.0)?.steps().0)
    }

    /// The differences it leaves alone because another writer holds the field.
    pub fn held(&self) -> Result<Vec<HeldChange>, CloudletException> {
        Ok(records::from::<_, records::RawPlan>(&*self.0)?.steps().1)
    }

    /// What a destroy keeps (resources holding retained data).
    pub fn kept(&self) -> Vec<String> {
        self.0.kept.iter().map(ToString::to_string).collect()
    }

    /// Whether it removes everything the lab owns.
    pub fn is_destroy(&self) -> bool {
        self.0.destroy
    }

    /// The resources it was narrowed to (empty: the whole lab).
    pub fn targets(&self) -> Vec<String> {
        self.0.targets.clone()
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.0.steps.is_empty()
    }

    /// The plan as JSON (the same text the CLI writes).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&*self.0).unwrap_or_default()
    }
}

/// Cancels an apply: running steps finish, no new step starts.
#[derive(uniffi::Object)]
pub struct Cancel(cloudlet::Cancel);

#[uniffi::export]
impl Cancel {
    /// A fresh token.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(Cancel(cloudlet::Cancel::new()))
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.cancel();
    }

    /// Whether cancellation was requested.
    pub fn cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// A running network boot service: where it listens, and `stop()`.
#[derive(uniffi::Object)]
pub struct BootService {
    http: String,
    tftp: String,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    done: std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
}

#[uniffi::export(async_runtime = "tokio")]
impl BootService {
    /// The HTTP address bound (`IP:PORT`).
    pub fn http_address(&self) -> String {
        self.http.clone()
    }

    /// The TFTP address bound (`IP:PORT`).
    pub fn tftp_address(&self) -> String {
        self.tftp.clone()
    }

    /// Stops the service and waits for it to end.
    pub async fn stop(&self) -> Result<(), CloudletException> {
        drop(self.stop.lock().ok().and_then(|mut s| s.take()));
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        let fail = |reason: String| CloudletException::Boot { reason };
        match done {
            Some(d) => match d.await {
                Ok(r) => r.map_err(|e| fail(e.to_string())),
                Err(e) => Err(fail(e.to_string())),
            },
            None => Ok(()),
        }
    }
}

/// A loaded lab.
#[derive(uniffi::Object)]
pub struct Lab(cloudlet::Lab);

#[uniffi::export(async_runtime = "tokio")]
impl Lab {
    /// Loads a lab file or directory; `state_dir` overrides where state and local output go.
    #[uniffi::constructor(default(state_dir = None))]
    pub fn load(path: String, state_dir: Option<String>) -> Result<Arc<Self>, CloudletException> {
        let lab = cloudlet::Lab::load(&path)?.with_options(cloudlet::Options {
            state_dir: state_dir.map(Into::into),
            ..Default::default()
        });
        Ok(Arc::new(Lab(lab)))
    }

    /// The lab's name.
    pub fn name(&self) -> String {
        self.0.model().name.clone()
    }

    /// Every diagnostic of the whole lab (empty: it is valid).
    pub fn validate(&self) -> Result<Vec<Diagnostic>, CloudletException> {
        records::from(&self.0.validate().diagnostics)
    }

    /// The plan; `destroy` plans the removal of everything the lab owns, `targets` narrows it
    /// to resources and the steps they need.
    #[uniffi::method(default(destroy = false, targets = []))]
    pub async fn plan(
        &self,
        destroy: bool,
        targets: Vec<String>,
    ) -> Result<Arc<Plan>, CloudletException> {
        let plan = self
            .0
            .plan_with(&cloudlet::PlanOptions { destroy, targets })
            .await?;
        Ok(Arc::new(Plan(Arc::new(plan))))
    }

    /// What cloudlet owns in the lab's backends.
    pub async fn owned(&self) -> Result<Vec<Owned>, CloudletException> {
        records::from(&self.0.owned().await?)
    }

    /// Applies a plan and reports what it did. A plan with data-loss steps is refused unless
    /// `allow_data_loss`.
    #[uniffi::method(default(listener = None, cancel = None, allow_data_loss = false))]
    pub async fn apply(
        &self,
        plan: Arc<Plan>,
        listener: Option<Arc<dyn EventListener>>,
        cancel: Option<Arc<Cancel>>,
        allow_data_loss: bool,
    ) -> Result<ApplyReport, CloudletException> {
        let sink = move |e: &cloudlet::Event| {
            if let Some(l) = &listener {
                l.on_event(Event::of(e));
            }
        };
        let options = cloudlet::ApplyOptions {
            on_event: Some(&sink),
            cancel: cancel.map(|c| c.0.clone()).unwrap_or_default(),
            allow_data_loss,
            ..Default::default()
        };
        let report = self.0.apply(&plan.0, options).await?;
        let mut r: ApplyReport = records::from(&report)?;
        r.success = report.is_success();
        Ok(r)
    }

    /// Writes every resource under `dir`; the number written.
    pub async fn render(&self, dir: String) -> Result<i64, CloudletException> {
        Ok(i64::try_from(self.0.render(dir).await?).unwrap_or(i64::MAX))
    }

    /// Starts the lab's network boot service with `options` in the background; `listener`
    /// gets each boot event.
    #[uniffi::method(default(listener = None))]
    pub async fn pxe_serve(
        &self,
        options: BootOptions,
        listener: Option<Arc<dyn BootListener>>,
    ) -> Result<Arc<BootService>, CloudletException> {
        let options = options.to_facade()?;
        let b = self.0.boot_in_background(&options).await?;
        // The runtime uniffi runs this call on (a process-wide one) runs the service.
        let rt = tokio::runtime::Handle::current();
        let mut events = b.events;
        rt.spawn(async move {
            while let Some(e) = events.next().await {
                if let Some(l) = &listener {
                    l.on_boot(BootEvent::of(&e));
                }
            }
        });
        Ok(Arc::new(BootService {
            http: b.http.to_string(),
            tftp: b.tftp.to_string(),
            stop: std::sync::Mutex::new(Some(b.stop)),
            done: std::sync::Mutex::new(Some(rt.spawn(b.run))),
        }))
    }

    /// Each network-installed machine and its install state.
    pub fn pxe_status(&self) -> Result<Vec<PxeMachine>, CloudletException> {
        records::from(&self.0.pxe_status()?)
    }

    /// An admin kubeconfig for the cluster cloudlet makes, its client certificate valid for
    /// `valid_seconds` (at most a day). It holds a private key.
    pub fn kubeconfig(&self, valid_seconds: i64) -> Result<String, CloudletException> {
        let valid = std::time::Duration::from_secs(valid_seconds.clamp(60, 86_400).unsigned_abs());
        Ok(self.0.kubeconfig(valid)?.expose().to_string())
    }

    /// Installs `machine` again at its next network boot.
    pub fn pxe_reinstall(&self, machine: String) -> Result<(), CloudletException> {
        Ok(self.0.pxe_reinstall(&machine)?)
    }

    /// Backs up each class the lab declares (or those in `classes`) now; each class's run.
    #[uniffi::method(default(classes = []))]
    pub async fn backup_run(
        &self,
        classes: Vec<String>,
    ) -> Result<Vec<BackupRun>, CloudletException> {
        records::from(&self.0.backup_run(&classes).await?)
    }

    /// The snapshots each backup target holds.
    pub async fn backup_list(&self) -> Result<Vec<TargetSnapshots>, CloudletException> {
        records::from(&self.0.backup_list().await?)
    }

    /// Each class's climb up the verification ladder to `level` (0-4).
    #[uniffi::method(default(level = 3))]
    pub async fn backup_verify(&self, level: i32) -> Result<Vec<Verified>, CloudletException> {
        let level = u8::try_from(level).map_err(|_| CloudletException::Backend {
            reason: format!("verification level {level}: the levels are 0 to 4"),
        })?;
        records::from(&self.0.backup_verify(level).await?)
    }

    /// Rebuilds the lab from the backup target `from`; `listener` gets each phase as it
    /// ends.
    #[uniffi::method(default(force = false, resume = false, listener = None))]
    pub async fn restore(
        &self,
        from: String,
        force: bool,
        resume: bool,
        listener: Option<Arc<dyn PhaseListener>>,
    ) -> Result<Restored, CloudletException> {
        let options = cloudlet::RestoreOptions {
            from,
            force,
            resume,
            ..Default::default()
        };
        let mut sink = move |e: cloudlet::RestoreEvent| {
            if let (Some(l), cloudlet::RestoreEvent::Finished(p)) = (&listener, e)
                && let Ok(p) = records::from(&p)
            {
                l.on_phase(p);
            }
        };
        let restored = self.0.restore(&options, &mut sink).await?;
        let mut r: Restored = records::from(&restored)?;
        r.success = restored.is_success();
        Ok(r)
    }

    /// The doctor's findings about the running lab: every check at once, each within
    /// `timeout_seconds`.
    #[uniffi::method(default(timeout_seconds = 10.0))]
    pub async fn doctor(&self, timeout_seconds: f64) -> Result<Diagnosis, CloudletException> {
        let options = cloudlet::DoctorOptions {
            // NaN is no timeout anyone meant: the shortest, as for zero or less.
            timeout: std::time::Duration::from_secs_f64(if timeout_seconds.is_nan() {
                0.001
            } else {
                timeout_seconds.clamp(0.001, 86_400.0)
            }),
            ..Default::default()
        };
        records::from(&self.0.doctor(&options).await)
    }

    /// The lab's volumes as the NAS has them (empty unless the storage target is a NAS).
    pub async fn storage_status(&self) -> Result<Vec<VolumeStatus>, CloudletException> {
        records::from(&self.0.storage_status().await?)
    }
}

/// The JSON Schema of the lab format, as JSON text.
#[uniffi::export]
pub fn schema() -> String {
    cloudlet::schema().to_string()
}
