//! The native module of the `cloudlet` Python package. Conversion and runtime bridging only:
//! every call goes to the `cloudlet` facade, results cross as JSON text that the Python layer
//! turns into frozen records, errors cross as `NativeError(kind, message, payload)` that the
//! Python layer raises as its exception hierarchy. One tokio runtime per process (owned by
//! pyo3-async-runtimes); the GIL is released around blocking work and never held across an
//! `.await`.

use std::path::PathBuf;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _native,
    NativeError,
    PyException,
    "An error of the cloudlet library: args are (kind, message, payload JSON)."
);

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Maps a facade error to `NativeError(kind, message, payload)`: the facade's kind, the cause
/// chain, and the diagnostics or the data-loss steps as JSON.
fn error(e: cloudlet::Error) -> PyErr {
    use cloudlet::core::EngineError;
    let payload = match (&e, e.diagnostics()) {
        (_, Some(d)) => json(&d),
        (cloudlet::Error::Engine(EngineError::DataLoss { ids }), None) => json(ids),
        // The file and the system's error number, for `OSError.filename` and `.errno`.
        _ if e.path().is_some() || e.os_error().is_some() => {
            json(&serde_json::json!({"path": e.path(), "errno": e.os_error()}))
        }
        _ => "null".into(),
    };
    NativeError::new_err((e.kind().name(), e.message(), payload))
}

/// A cancellation token for an apply: running steps finish, no new step starts.
#[pyclass(frozen, module = "cloudlet._native")]
struct Cancel(cloudlet::Cancel);

#[pymethods]
impl Cancel {
    #[new]
    fn new() -> Self {
        Cancel(cloudlet::Cancel::new())
    }
    /// Requests cancellation.
    fn cancel(&self) {
        self.0.cancel();
    }
    /// Whether cancellation was requested.
    #[getter]
    fn cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// A loaded lab.
/// A plan, kept native: its summary crosses at once, its steps only when asked for.
#[pyclass(frozen, module = "cloudlet._native")]
struct Plan(std::sync::Arc<cloudlet::Plan>);

#[pymethods]
impl Plan {
    /// The lab, the summary and the counts of held and kept entries, as JSON.
    fn head(&self) -> String {
        json(&serde_json::json!({
            "lab": self.0.lab,
            "summary": self.0.summary,
        }))
    }

    /// The whole plan as JSON (the same text the Rust facade writes).
    fn to_json(&self, py: Python<'_>) -> String {
        py.detach(|| json(&*self.0))
    }
}

/// A running boot service: where it listens, and `stop()`.
#[pyclass(frozen, module = "cloudlet._native")]
struct BootService {
    http: String,
    tftp: String,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    done: std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
}

#[pymethods]
impl BootService {
    /// The HTTP address bound (`IP:PORT`).
    #[getter]
    fn http_address(&self) -> String {
        self.http.clone()
    }

    /// The TFTP address bound (`IP:PORT`).
    #[getter]
    fn tftp_address(&self) -> String {
        self.tftp.clone()
    }

    /// Awaitable: stops the service and waits for it to end.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stop = self.stop.lock().ok().and_then(|mut s| s.take());
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            drop(stop);
            match done {
                Some(d) => match d.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(NativeError::new_err(("boot", e.to_string(), "null"))),
                    Err(e) => Err(NativeError::new_err(("boot", e.to_string(), "null"))),
                },
                None => Ok(()),
            }
        })
    }
}

#[pyclass(frozen, module = "cloudlet._native")]
struct Lab(cloudlet::Lab);

#[pymethods]
impl Lab {
    /// Loads a lab file or directory (with the compose projects and manifests it references).
    #[staticmethod]
    #[pyo3(signature = (path, state_dir=None, take_over=false))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        state_dir: Option<PathBuf>,
        take_over: bool,
    ) -> PyResult<Self> {
        py.detach(|| {
            cloudlet::Lab::load(&path)
                .map(|l| {
                    Lab(l.with_options(cloudlet::Options {
                        state_dir,
                        take_over,
                        ..Default::default()
                    }))
                })
                .map_err(error)
        })
    }

    /// The lab's name.
    #[getter]
    fn name(&self) -> String {
        self.0.model().name.clone()
    }

    /// Every diagnostic, as JSON.
    fn validate(&self, py: Python<'_>) -> String {
        py.detach(|| json(&self.0.validate().diagnostics))
    }

    /// Awaitable: the plan (a native handle); `destroy` plans the removal of everything the
    /// lab owns, `targets` narrows it to resources and the steps they need.
    #[pyo3(signature = (destroy=false, targets=Vec::new()))]
    fn plan<'py>(
        &self,
        py: Python<'py>,
        destroy: bool,
        targets: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lab = self.0.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            lab.plan_with(&cloudlet::PlanOptions { destroy, targets })
                .await
                .map(|p| Plan(std::sync::Arc::new(p)))
                .map_err(error)
        })
    }

    /// Awaitable: applies a plan (a native handle or its JSON), calling
    /// `on_event(event_json)` for progress.
    #[pyo3(signature = (plan, on_event=None, cancel=None, concurrency=None, allow_data_loss=false))]
    fn apply<'py>(
        &self,
        py: Python<'py>,
        plan: &Bound<'py, PyAny>,
        on_event: Option<Py<PyAny>>,
        cancel: Option<Py<Cancel>>,
        concurrency: Option<usize>,
        allow_data_loss: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lab = self.0.clone();
        let plan: std::sync::Arc<cloudlet::Plan> = match plan.cast::<Plan>() {
            Ok(p) => p.get().0.clone(),
            Err(_) => {
                let text: String = plan.extract()?;
                std::sync::Arc::new(serde_json::from_str(&text).map_err(|e| {
                    NativeError::new_err((
                        "stale_plan",
                        format!("not a cloudlet plan: {e}"),
                        "null",
                    ))
                })?)
            }
        };
        let cancel = cancel.map(|c| c.get().0.clone()).unwrap_or_default();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let sink = move |e: &cloudlet::Event| {
                if let Some(cb) = &on_event {
                    let text = json(e);
                    Python::attach(|py| {
                        if let Err(err) = cb.call1(py, (text,)) {
                            err.write_unraisable(py, None);
                        }
                    });
                }
            };
            let options = cloudlet::ApplyOptions {
                concurrency: concurrency.unwrap_or(cloudlet::DEFAULT_CONCURRENCY),
                on_event: Some(&sink),
                cancel,
                verify_fresh: false,
                allow_data_loss,
            };
            lab.apply(&plan, options)
                .await
                .map(|r| json(&r))
                .map_err(error)
        })
    }

    /// Awaitable: what cloudlet owns in the lab's backends, as JSON.
    fn owned<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let lab = self.0.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            lab.owned().await.map(|o| json(&o)).map_err(error)
        })
    }

    /// Awaitable: writes every resource under `dir`; the number written.
    fn render<'py>(&self, py: Python<'py>, dir: PathBuf) -> PyResult<Bound<'py, PyAny>> {
        let lab = self.0.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            lab.render(dir).await.map_err(error)
        })
    }

    /// Awaitable: health of the cluster's objects as JSON (empty unless the cluster target
    /// is Kubernetes); `wait` seconds to wait for them to settle.
    #[pyo3(signature = (wait=None))]
    fn cluster_health<'py>(
        &self,
        py: Python<'py>,
        wait: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lab = self.0.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            lab.cluster_health(wait.map(std::time::Duration::from_secs_f64))
                .await
                .map(|f| json(&f))
                .map_err(error)
        })
    }

    /// Awaitable: the doctor's findings about the running lab as JSON (the facade's
    /// `Diagnosis`); `timeout` seconds per check, `concurrency` checks at once.
    #[pyo3(signature = (timeout=None, concurrency=None))]
    fn doctor<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        concurrency: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lab = self.0.clone();
        let mut options = cloudlet::DoctorOptions::default();
        if let Some(t) = timeout {
            options.timeout = std::time::Duration::from_secs_f64(t.max(0.001));
        }
        if let Some(c) = concurrency {
            options.concurrency = c;
        }
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            Ok(json(&lab.doctor(&options).await))
        })
    }

    /// Awaitable: starts the lab's network boot service with `options` (JSON of the facade's
    /// `BootOptions`) on this process's runtime, calling `on_event(event_json)` as it works.
    #[pyo3(signature = (options, on_event=None))]
    fn pxe_serve<'py>(
        &self,
        py: Python<'py>,
        options: String,
        on_event: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lab = self.0.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let options: cloudlet::BootOptions = serde_json::from_str(&options).map_err(|e| {
                NativeError::new_err(("boot", format!("boot options: {e}"), "null"))
            })?;
            let b = lab.boot_in_background(&options).await.map_err(error)?;
            let rt = pyo3_async_runtimes::tokio::get_runtime();
            let mut events = b.events;
            rt.spawn(async move {
                while let Some(e) = events.next().await {
                    if let Some(cb) = &on_event {
                        let text = json(&e);
                        Python::attach(|py| {
                            if let Err(err) = cb.call1(py, (text,)) {
                                err.write_unraisable(py, None);
                            }
                        });
                    }
                }
            });
            Ok(BootService {
                http: b.http.to_string(),
                tftp: b.tftp.to_string(),
                stop: std::sync::Mutex::new(Some(b.stop)),
                done: std::sync::Mutex::new(Some(rt.spawn(b.run))),
            })
        })
    }

    /// Each network-installed machine and its install state, as JSON.
    fn pxe_status(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| self.0.pxe_status().map(|m| json(&m)).map_err(error))
    }

    /// An admin kubeconfig for the cluster cloudlet makes, its client certificate valid for
    /// `valid` seconds (at most a day). It holds a private key.
    #[pyo3(signature = (valid=3600.0))]
    fn kubeconfig(&self, py: Python<'_>, valid: f64) -> PyResult<String> {
        let valid = std::time::Duration::from_secs_f64(valid.clamp(60.0, 86_400.0));
        py.detach(|| {
            self.0
                .kubeconfig(valid)
                .map(|k| k.expose().to_string())
                .map_err(error)
        })
    }

    /// Installs `machine` again at its next network boot.
    fn pxe_reinstall(&self, py: Python<'_>, machine: String) -> PyResult<()> {
        py.detach(|| self.0.pxe_reinstall(&machine).map_err(error))
    }

    /// Awaitable: backs up each class the lab declares (or those in `classes`) now; each
    /// class's run as JSON.
    #[pyo3(signature = (classes=Vec::new()))]
    fn backup_run<'py>(
        &self,
        py: Python<'py>,
        classes: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lab = self.0.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            lab.backup_run(&classes)
                .await
                .map(|r| json(&r))
                .map_err(error)
        })
    }

    /// Awaitable: the snapshots each backup target holds, as JSON.
    fn backup_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let lab = self.0.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            lab.backup_list().await.map(|r| json(&r)).map_err(error)
        })
    }

    /// Awaitable: each class's climb up the verification ladder to `level`, as JSON.
    #[pyo3(signature = (level=3))]
    fn backup_verify<'py>(&self, py: Python<'py>, level: u8) -> PyResult<Bound<'py, PyAny>> {
        let lab = self.0.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            lab.backup_verify(level)
                .await
                .map(|r| json(&r))
                .map_err(error)
        })
    }

    /// Awaitable: rebuilds the lab from the backup target `source`, calling
    /// `on_event(phase_json)` as each phase ends; what it did, as JSON.
    #[pyo3(signature = (source, force=false, resume=false, on_event=None))]
    fn restore<'py>(
        &self,
        py: Python<'py>,
        source: String,
        force: bool,
        resume: bool,
        on_event: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lab = self.0.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let options = cloudlet::RestoreOptions {
                from: source,
                force,
                resume,
                ..Default::default()
            };
            let mut sink = move |e: cloudlet::RestoreEvent| {
                if let (Some(cb), cloudlet::RestoreEvent::Finished(p)) = (&on_event, e) {
                    let text = json(&p);
                    Python::attach(|py| {
                        if let Err(err) = cb.call1(py, (text,)) {
                            err.write_unraisable(py, None);
                        }
                    });
                }
            };
            lab.restore(&options, &mut sink)
                .await
                .map(|r| json(&r))
                .map_err(error)
        })
    }

    /// Awaitable: the lab's volumes as the NAS has them, as JSON (empty unless the storage
    /// target is a NAS).
    fn storage_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let lab = self.0.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            lab.storage_status().await.map(|v| json(&v)).map_err(error)
        })
    }
}

/// Validates the lab at `path`: every diagnostic as JSON (kept for scripts written against
/// the first release; `Lab.load(path).validate()` is the same).
#[pyfunction]
fn validate(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    py.detach(|| {
        cloudlet::Lab::load(&path)
            .map(|l| json(&l.validate().diagnostics))
            .map_err(error)
    })
}

/// The JSON Schema of the lab format, as JSON text.
#[pyfunction]
fn schema() -> String {
    cloudlet::schema().to_string()
}

/// The module.
/// Registered with `atexit`: lets the runtime's threads leave the interpreter before it is
/// torn down. pyo3-async-runtimes hands a result to Python from a runtime thread
/// (`call_soon_threadsafe`); Python can take the result and reach its exit while that thread
/// still waits to drop the call's arguments, and a thread entering the interpreter during
/// finalization crashes the process (pyo3-async-runtimes issue 40; seen here as a segfault in
/// about one exit in seven). Without holding the interpreter, this waits (at most two seconds)
/// until no runtime task is left, then a moment more for such a thread to finish. A
/// background service (`pxe_serve`) keeps tasks alive; the wait then ends at its bound.
#[pyfunction]
#[allow(
    clippy::disallowed_methods,
    reason = "the interpreter's exit waits on threads it cannot await: a blocking pause is the point"
)]
fn _quiesce(py: Python<'_>) {
    py.detach(|| {
        let metrics = pyo3_async_runtimes::tokio::get_runtime().metrics();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while metrics.num_alive_tasks() > 0 && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    });
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add_class::<Lab>()?;
    m.add_class::<Plan>()?;
    m.add_class::<Cancel>()?;
    m.add_class::<BootService>()?;
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    m.add_function(wrap_pyfunction!(schema, m)?)?;
    m.add_function(wrap_pyfunction!(_quiesce, m)?)?;
    Ok(())
}
