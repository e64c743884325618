//! The native module of the `cloudlet` Python package. Conversion only: every call goes to
//! the `cloudlet` facade. The full, awaitable API comes with the bindings issue; this module
//! exposes what needs no runtime: validation, the JSON Schema and the version.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Validates the lab at `path` (a file or a directory) and returns every diagnostic as JSON:
/// `{"diagnostics": [{"severity", "code", "message", "location": {"file", "line", "column"}, ...}]}`.
/// A lab that does not load raises `ValueError` with every loader error, positions included.
#[pyfunction]
fn validate(py: Python<'_>, path: std::path::PathBuf) -> PyResult<String> {
    py.detach(|| match cloudlet::Lab::load(&path) {
        Ok(lab) => Ok(serde_json::to_string(&lab.validate()).unwrap_or_default()),
        Err(cloudlet::Error::Load(cloudlet::core::LoadError::Invalid { diagnostics, .. })) => {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            Err(PyValueError::new_err(lines.join("\n")))
        }
        Err(e) => Err(PyValueError::new_err(e.to_string())),
    })
}

/// The JSON Schema of the lab format, as JSON text.
#[pyfunction]
fn schema() -> String {
    cloudlet::schema().to_string()
}

/// The module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    m.add_function(wrap_pyfunction!(schema, m)?)?;
    Ok(())
}
