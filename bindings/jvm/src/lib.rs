//! cloudlet for the JVM through uniffi: a `Lab` object whose async methods are Kotlin
//! `suspend` functions, errors as a `CloudletException` hierarchy, apply events through a
//! listener interface. Conversion only: results cross as JSON text.

use std::sync::Arc;

uniffi::setup_scaffolding!();

/// Errors of the library, one variant per kind; `reason` (also the exception's message) has
/// the cause chain.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum CloudletException {
    /// The lab files do not load or validate; `diagnostics` is JSON with every position.
    #[error("{reason}")]
    Lab {
        /// What is wrong (the first problem with its position).
        reason: String,
        /// Every diagnostic as JSON.
        diagnostics: String,
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

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

impl From<cloudlet::Error> for CloudletException {
    fn from(e: cloudlet::Error) -> Self {
        use cloudlet::ErrorKind as K;
        let reason = e.message();
        match e.kind() {
            K::Lab => CloudletException::Lab {
                reason,
                diagnostics: json(&e.diagnostics().unwrap_or_default()),
            },
            K::Io => CloudletException::Io {
                reason,
                path: e.path().map(|p| p.display().to_string()),
                errno: e.os_error(),
            },
            K::StalePlan => CloudletException::StalePlan { reason },
            K::Locked => CloudletException::Locked { reason },
            K::DataLoss => CloudletException::DataLoss { reason },
            K::Render => CloudletException::Render { reason },
            K::Boot => CloudletException::Boot { reason },
            _ => CloudletException::Backend { reason },
        }
    }
}

/// Receives events: an apply's progress or a boot service's work (one JSON event per call,
/// from the library's threads).
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: String);
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
    #[uniffi::constructor]
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

    /// Every diagnostic of the whole lab, as JSON.
    pub fn validate(&self) -> String {
        json(&self.0.validate().diagnostics)
    }

    /// The plan, as JSON; `destroy` plans the removal of everything the lab owns, `targets`
    /// narrows it to resources and the steps they need.
    #[uniffi::method(default(destroy = false, targets = []))]
    pub async fn plan(
        &self,
        destroy: bool,
        targets: Vec<String>,
    ) -> Result<String, CloudletException> {
        Ok(json(
            &self
                .0
                .plan_with(&cloudlet::PlanOptions { destroy, targets })
                .await?,
        ))
    }

    /// What cloudlet owns in the lab's backends, as JSON.
    pub async fn owned(&self) -> Result<String, CloudletException> {
        Ok(json(&self.0.owned().await?))
    }

    /// Applies a plan (JSON) and returns the report as JSON. A plan with data-loss steps is
    /// refused unless `allow_data_loss`.
    #[uniffi::method(default(allow_data_loss = false))]
    pub async fn apply(
        &self,
        plan: String,
        listener: Option<Arc<dyn EventListener>>,
        cancel: Option<Arc<Cancel>>,
        allow_data_loss: bool,
    ) -> Result<String, CloudletException> {
        let plan: cloudlet::Plan =
            serde_json::from_str(&plan).map_err(|e| CloudletException::StalePlan {
                reason: format!("not a cloudlet plan: {e}"),
            })?;
        let sink = move |e: &cloudlet::Event| {
            if let Some(l) = &listener {
                l.on_event(json(e));
            }
        };
        let options = cloudlet::ApplyOptions {
            on_event: Some(&sink),
            cancel: cancel.map(|c| c.0.clone()).unwrap_or_default(),
            allow_data_loss,
            ..Default::default()
        };
        Ok(json(&self.0.apply(&plan, options).await?))
    }

    /// Writes every resource under `dir`; the number written.
    pub async fn render(&self, dir: String) -> Result<u64, CloudletException> {
        Ok(self.0.render(dir).await? as u64)
    }

    /// Starts the lab's network boot service with `options` (JSON of the facade's
    /// `BootOptions`) in the background; `listener` gets each boot event as JSON.
    pub async fn pxe_serve(
        &self,
        options: String,
        listener: Option<Arc<dyn EventListener>>,
    ) -> Result<Arc<BootService>, CloudletException> {
        let options: cloudlet::BootOptions =
            serde_json::from_str(&options).map_err(|e| CloudletException::Boot {
                reason: format!("boot options: {e}"),
            })?;
        let b = self.0.boot_in_background(&options).await?;
        // The runtime uniffi runs this call on (a process-wide one) runs the service.
        let rt = tokio::runtime::Handle::current();
        let mut events = b.events;
        rt.spawn(async move {
            while let Some(e) = events.next().await {
                if let Some(l) = &listener {
                    l.on_event(json(&e));
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

    /// Each network-installed machine and its install state, as JSON.
    pub fn pxe_status(&self) -> Result<String, CloudletException> {
        Ok(json(&self.0.pxe_status()?))
    }

    /// An admin kubeconfig for the cluster cloudlet makes, its client certificate valid for
    /// `valid_seconds` (at most a day). It holds a private key.
    pub fn kubeconfig(&self, valid_seconds: u64) -> Result<String, CloudletException> {
        let valid = std::time::Duration::from_secs(valid_seconds.clamp(60, 86_400));
        Ok(self.0.kubeconfig(valid)?.expose().to_string())
    }

    /// Installs `machine` again at its next network boot.
    pub fn pxe_reinstall(&self, machine: String) -> Result<(), CloudletException> {
        Ok(self.0.pxe_reinstall(&machine)?)
    }

    /// Backs up each class the lab declares (or those in `classes`) now; each run as JSON.
    pub async fn backup_run(&self, classes: Vec<String>) -> Result<String, CloudletException> {
        Ok(json(&self.0.backup_run(&classes).await?))
    }

    /// The snapshots each backup target holds, as JSON.
    pub async fn backup_list(&self) -> Result<String, CloudletException> {
        Ok(json(&self.0.backup_list().await?))
    }

    /// Each class's climb up the verification ladder to `level` (0-3), as JSON.
    pub async fn backup_verify(&self, level: u8) -> Result<String, CloudletException> {
        Ok(json(&self.0.backup_verify(level).await?))
    }

    /// Rebuilds the lab from the backup target `from`; `listener` gets each phase (JSON) as
    /// it ends. What it did, as JSON.
    pub async fn restore(
        &self,
        from: String,
        force: bool,
        resume: bool,
        listener: Option<Arc<dyn EventListener>>,
    ) -> Result<String, CloudletException> {
        let options = cloudlet::RestoreOptions {
            from,
            force,
            resume,
            ..Default::default()
        };
        let mut sink = move |e: cloudlet::RestoreEvent| {
            if let (Some(l), cloudlet::RestoreEvent::Finished(p)) = (&listener, e) {
                l.on_event(json(&p));
            }
        };
        Ok(json(&self.0.restore(&options, &mut sink).await?))
    }

    /// The doctor's findings about the running lab, as JSON: every check at once, each
    /// within `timeout_seconds`.
    pub async fn doctor(&self, timeout_seconds: f64) -> String {
        let options = cloudlet::DoctorOptions {
            timeout: std::time::Duration::from_secs_f64(timeout_seconds.max(0.001)),
            ..Default::default()
        };
        json(&self.0.doctor(&options).await)
    }

    /// The lab's volumes as the NAS has them, as JSON (empty unless the storage target is a
    /// NAS).
    pub async fn storage_status(&self) -> Result<String, CloudletException> {
        Ok(json(&self.0.storage_status().await?))
    }
}

/// The JSON Schema of the lab format, as JSON text.
#[uniffi::export]
pub fn schema() -> String {
    cloudlet::schema().to_string()
}
