//! The native addon of the `cloudlet` npm package. Conversion and runtime bridging only:
//! every call goes to the `cloudlet` facade; results cross as JSON text that `index.js` turns
//! into frozen objects; errors carry a stable `code` and the whole cause chain in their
//! message. Async methods return Promises run on napi's tokio runtime (one per process).

use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

/// Stable error codes (`err.code` in JavaScript).
#[derive(Debug, Clone, Copy)]
pub enum ErrorCode {
    /// The lab files are not a valid lab (load or validation errors, with positions).
    LabInvalid,
    /// A file could not be read or written.
    LabIo,
    /// The plan is stale: the lab or the infrastructure changed since it was made.
    PlanStale,
    /// Another apply holds the lab's lock.
    Locked,
    /// The plan deletes data and the apply was not allowed to (`allowDataLoss`).
    DataLoss,
    /// A backend failed.
    Backend,
    /// Rendering failed.
    Render,
    /// The network boot service could not start, or its install state is unreadable.
    Boot,
}

impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        match self {
            ErrorCode::LabInvalid => "LAB_INVALID",
            ErrorCode::LabIo => "LAB_IO",
            ErrorCode::PlanStale => "PLAN_STALE",
            ErrorCode::Locked => "LOCKED",
            ErrorCode::DataLoss => "DATA_LOSS",
            ErrorCode::Backend => "BACKEND",
            ErrorCode::Render => "RENDER",
            ErrorCode::Boot => "BOOT",
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// A facade error as a JavaScript error. The reason is `CODE \u0001 message` (the cause
/// chain included), and for lab errors `\u0001 diagnostics JSON`: `index.js` turns it into
/// a `CloudletError` with `code`, `message` and `diagnostics`.
fn error(e: cloudlet::Error) -> Error {
    use cloudlet::ErrorKind as K;
    let message = e.message();
    let diagnostics_json = e.diagnostics().map(|d| json(&d)).unwrap_or_default();
    let code = match e.kind() {
        K::Lab => ErrorCode::LabInvalid,
        K::Io => ErrorCode::LabIo,
        K::StalePlan => ErrorCode::PlanStale,
        K::Locked => ErrorCode::Locked,
        K::DataLoss => ErrorCode::DataLoss,
        K::Render => ErrorCode::Render,
        K::Boot => ErrorCode::Boot,
        _ => ErrorCode::Backend,
    };
    // The file and the system's error number, where the failure has them (`err.path`,
    // `err.errno` as Node's own I/O errors carry them).
    let io = match (e.path(), e.os_error()) {
        (None, None) => String::new(),
        (path, errno) => json(&serde_json::json!({"path": path, "errno": errno})),
    };
    Error::from_reason(format!(
        "{}\u{1}{message}\u{1}{diagnostics_json}\u{1}{io}",
        code.as_ref()
    ))
}

fn coded(code: ErrorCode, message: &str, diagnostics: &str) -> Error {
    Error::from_reason(format!("{}\u{1}{message}\u{1}{diagnostics}", code.as_ref()))
}

/// A cancellation token for an apply: running steps finish, no new step starts.
#[napi]
pub struct NativeCancel(cloudlet::Cancel);

#[napi]
impl NativeCancel {
    /// A fresh token.
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        NativeCancel(cloudlet::Cancel::new())
    }
    /// Requests cancellation.
    #[napi]
    pub fn cancel(&self) {
        self.0.cancel();
    }
    /// Whether cancellation was requested.
    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// A plan, kept native: its head crosses at once, the rest only when asked for.
#[napi]
pub struct NativePlan(Arc<cloudlet::Plan>);

#[napi]
impl NativePlan {
    /// The format, lab, digests, domains and summary, as JSON.
    #[napi]
    pub fn head(&self) -> String {
        let p = &*self.0;
        json(&serde_json::json!({
            "format": p.format,
            "lab": p.lab,
            "desired_digest": p.desired_digest,
            "observed_digest": p.observed_digest,
            "domains": p.domains,
            "summary": p.summary,
            "destroy": p.destroy,
            "targets": p.targets,
        }))
    }

    /// The whole plan as JSON (the same text the Rust facade writes).
    #[napi]
    pub fn to_json(&self) -> String {
        json(&*self.0)
    }
}

async fn run_apply(
    lab: &cloudlet::Lab,
    plan: &cloudlet::Plan,
    on_event: Option<ThreadsafeFunction<String, (), String, Status, false>>,
    cancel: Option<&NativeCancel>,
    concurrency: Option<u32>,
    allow_data_loss: Option<bool>,
) -> Result<String> {
    let sink = move |e: &cloudlet::Event| {
        if let Some(cb) = &on_event {
            cb.call(json(e), ThreadsafeFunctionCallMode::NonBlocking);
        }
    };
    let options = cloudlet::ApplyOptions {
        concurrency: concurrency.map_or(cloudlet::DEFAULT_CONCURRENCY, |c| c as usize),
        on_event: Some(&sink),
        cancel: cancel.map(|c| c.0.clone()).unwrap_or_default(),
        verify_fresh: false,
        allow_data_loss: allow_data_loss.unwrap_or(false),
    };
    lab.apply(plan, options)
        .await
        .map(|r| json(&r))
        .map_err(error)
}

/// A running network boot service: where it listens, and `stop()`.
#[napi]
pub struct NativeBootService {
    http: String,
    tftp: String,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    done: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<std::io::Result<()>>>>,
}

#[napi]
impl NativeBootService {
    /// The HTTP address bound (`IP:PORT`).
    #[napi(getter)]
    pub fn http_address(&self) -> String {
        self.http.clone()
    }

    /// The TFTP address bound (`IP:PORT`).
    #[napi(getter)]
    pub fn tftp_address(&self) -> String {
        self.tftp.clone()
    }

    /// Stops the service and waits for it to end.
    #[napi]
    pub async fn stop(&self) -> Result<()> {
        drop(self.stop.lock().ok().and_then(|mut s| s.take()));
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        match done {
            Some(d) => match d.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(coded(ErrorCode::Boot, &e.to_string(), "")),
                Err(e) => Err(coded(ErrorCode::Boot, &e.to_string(), "")),
            },
            None => Ok(()),
        }
    }
}

/// A loaded lab.
#[napi]
pub struct NativeLab(cloudlet::Lab);

#[napi]
impl NativeLab {
    /// Loads a lab file or directory (with the compose projects and manifests it references).
    #[napi(factory)]
    pub fn load(path: String, state_dir: Option<String>, take_over: Option<bool>) -> Result<Self> {
        cloudlet::Lab::load(&path)
            .map(|l| {
                NativeLab(l.with_options(cloudlet::Options {
                    state_dir: state_dir.map(PathBuf::from),
                    take_over: take_over.unwrap_or(false),
                    ..Default::default()
                }))
            })
            .map_err(error)
    }

    /// The lab's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.0.model().name.clone()
    }

    /// Every diagnostic, as JSON.
    #[napi]
    pub fn validate(&self) -> String {
        json(&self.0.validate().diagnostics)
    }

    /// The plan (a native handle); `destroy` plans the removal of everything the lab owns,
    /// `targets` narrows it to resources and the steps they need.
    #[napi]
    pub async fn plan(
        &self,
        destroy: Option<bool>,
        targets: Option<Vec<String>>,
    ) -> Result<NativePlan> {
        self.0
            .plan_with(&cloudlet::PlanOptions {
                destroy: destroy.unwrap_or(false),
                targets: targets.unwrap_or_default(),
            })
            .await
            .map(|p| NativePlan(Arc::new(p)))
            .map_err(error)
    }

    /// What cloudlet owns in the lab's backends, as JSON.
    #[napi]
    pub async fn owned(&self) -> Result<String> {
        self.0.owned().await.map(|o| json(&o)).map_err(error)
    }

    /// Applies a plan; `on_event(eventJson)` gets progress.
    #[napi]
    pub async fn apply(
        &self,
        plan: &NativePlan,
        on_event: Option<ThreadsafeFunction<String, (), String, Status, false>>,
        cancel: Option<&NativeCancel>,
        concurrency: Option<u32>,
        allow_data_loss: Option<bool>,
    ) -> Result<String> {
        let plan = plan.0.clone();
        run_apply(
            &self.0,
            &plan,
            on_event,
            cancel,
            concurrency,
            allow_data_loss,
        )
        .await
    }

    /// Applies a plan given as JSON (a saved plan); `on_event(eventJson)` gets progress.
    #[napi]
    pub async fn apply_json(
        &self,
        plan: String,
        on_event: Option<ThreadsafeFunction<String, (), String, Status, false>>,
        cancel: Option<&NativeCancel>,
        concurrency: Option<u32>,
        allow_data_loss: Option<bool>,
    ) -> Result<String> {
        let plan: cloudlet::Plan = serde_json::from_str(&plan).map_err(|e| {
            coded(
                ErrorCode::PlanStale,
                &format!("not a cloudlet plan: {e}"),
                "",
            )
        })?;
        run_apply(
            &self.0,
            &plan,
            on_event,
            cancel,
            concurrency,
            allow_data_loss,
        )
        .await
    }

    /// Writes every resource under `dir`; the number written.
    #[napi]
    pub async fn render(&self, dir: String) -> Result<u32> {
        self.0
            .render(dir)
            .await
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .map_err(error)
    }

    /// Health of the cluster's objects as JSON; `wait` seconds to let them settle.
    #[napi]
    pub async fn cluster_health(&self, wait: Option<f64>) -> Result<String> {
        self.0
            .cluster_health(wait.map(std::time::Duration::from_secs_f64))
            .await
            .map(|f| json(&f))
            .map_err(error)
    }

    /// The doctor's findings about the running lab as JSON; `timeout` seconds per check,
    /// `concurrency` checks at once.
    #[napi]
    pub async fn doctor(&self, timeout: Option<f64>, concurrency: Option<u32>) -> Result<String> {
        let mut options = cloudlet::DoctorOptions::default();
        if let Some(t) = timeout {
            options.timeout = std::time::Duration::from_secs_f64(t.max(0.001));
        }
        if let Some(c) = concurrency {
            options.concurrency = c as usize;
        }
        Ok(json(&self.0.doctor(&options).await))
    }

    /// Starts the lab's network boot service with `options` (JSON of the facade's
    /// `BootOptions`) in the background; `on_event(eventJson)` gets what it does.
    #[napi]
    pub async fn pxe_serve(
        &self,
        options: String,
        on_event: Option<ThreadsafeFunction<String, (), String, Status, false>>,
    ) -> Result<NativeBootService> {
        let options: cloudlet::BootOptions = serde_json::from_str(&options)
            .map_err(|e| coded(ErrorCode::Boot, &format!("boot options: {e}"), ""))?;
        let b = self.0.boot_in_background(&options).await.map_err(error)?;
        let (ended, done) = tokio::sync::oneshot::channel();
        let run = b.run;
        napi::bindgen_prelude::spawn(async move {
            let _ = ended.send(run.await);
        });
        let mut events = b.events;
        napi::bindgen_prelude::spawn(async move {
            while let Some(e) = events.next().await {
                if let Some(cb) = &on_event {
                    cb.call(json(&e), ThreadsafeFunctionCallMode::NonBlocking);
                }
            }
        });
        Ok(NativeBootService {
            http: b.http.to_string(),
            tftp: b.tftp.to_string(),
            stop: std::sync::Mutex::new(Some(b.stop)),
            done: std::sync::Mutex::new(Some(done)),
        })
    }

    /// Each network-installed machine and its install state, as JSON.
    #[napi]
    pub fn pxe_status(&self) -> Result<String> {
        self.0.pxe_status().map(|m| json(&m)).map_err(error)
    }

    /// An admin kubeconfig for the cluster cloudlet makes, its client certificate valid for
    /// `valid_seconds` (default an hour, at most a day). It holds a private key.
    #[napi]
    pub fn kubeconfig(&self, valid_seconds: Option<f64>) -> Result<String> {
        let valid = valid_seconds.unwrap_or(3600.0).clamp(60.0, 86_400.0);
        self.0
            .kubeconfig(std::time::Duration::from_secs_f64(valid))
            .map(|k| k.expose().to_string())
            .map_err(error)
    }

    /// Installs `machine` again at its next network boot.
    #[napi]
    pub fn pxe_reinstall(&self, machine: String) -> Result<()> {
        self.0.pxe_reinstall(&machine).map_err(error)
    }

    /// Backs up each class the lab declares (or those in `classes`) now; each run as JSON.
    #[napi]
    pub async fn backup_run(&self, classes: Option<Vec<String>>) -> Result<String> {
        self.0
            .backup_run(&classes.unwrap_or_default())
            .await
            .map(|r| json(&r))
            .map_err(error)
    }

    /// The snapshots each backup target holds, as JSON.
    #[napi]
    pub async fn backup_list(&self) -> Result<String> {
        self.0.backup_list().await.map(|r| json(&r)).map_err(error)
    }

    /// Each class's climb up the verification ladder to `level` (0-3), as JSON.
    #[napi]
    pub async fn backup_verify(&self, level: Option<u8>) -> Result<String> {
        self.0
            .backup_verify(level.unwrap_or(3))
            .await
            .map(|r| json(&r))
            .map_err(error)
    }

    /// Rebuilds the lab from the backup target `from`; `on_phase(phaseJson)` gets each
    /// phase as it ends. What it did, as JSON.
    #[napi]
    pub async fn restore(
        &self,
        from: String,
        force: Option<bool>,
        resume: Option<bool>,
        on_phase: Option<ThreadsafeFunction<String, (), String, Status, false>>,
    ) -> Result<String> {
        let options = cloudlet::RestoreOptions {
            from,
            force: force.unwrap_or(false),
            resume: resume.unwrap_or(false),
            ..Default::default()
        };
        let mut sink = move |e: cloudlet::RestoreEvent| {
            if let (Some(cb), cloudlet::RestoreEvent::Finished(p)) = (&on_phase, e) {
                cb.call(json(&p), ThreadsafeFunctionCallMode::NonBlocking);
            }
        };
        self.0
            .restore(&options, &mut sink)
            .await
            .map(|r| json(&r))
            .map_err(error)
    }

    /// The lab's volumes as the NAS has them, as JSON.
    #[napi]
    pub async fn storage_status(&self) -> Result<String> {
        self.0
            .storage_status()
            .await
            .map(|v| json(&v))
            .map_err(error)
    }
}

/// Validates the lab at `path`: every diagnostic as JSON.
#[napi]
pub fn validate(path: String) -> Result<String> {
    cloudlet::Lab::load(&path)
        .map(|lab| json(&lab.validate().diagnostics))
        .map_err(error)
}

/// The JSON Schema of the lab format, as JSON text.
#[napi]
pub fn schema() -> String {
    cloudlet::schema().to_string()
}

/// The version of cloudlet.
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
