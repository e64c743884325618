//! The native addon of the `cloudlet` npm package. Conversion only: every call goes to the
//! `cloudlet` facade. The full Promise-based API comes with the bindings issue; this addon
//! exposes what needs no runtime: validation, the JSON Schema and the version.

use napi::bindgen_prelude::*;
use napi_derive::napi;

/// Stable error codes (`err.code` in JavaScript).
#[derive(Debug, Clone, Copy)]
pub enum ErrorCode {
    /// The lab files are not a valid lab.
    LabInvalid,
    /// The lab files could not be read.
    LabIo,
}

impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        match self {
            ErrorCode::LabInvalid => "LAB_INVALID",
            ErrorCode::LabIo => "LAB_IO",
        }
    }
}

/// Validates the lab at `path` and returns every diagnostic as JSON text. A lab that does not
/// load throws an error whose `code` is `LAB_INVALID` (with every loader error) or `LAB_IO`.
#[napi]
pub fn validate(path: String) -> Result<String, ErrorCode> {
    match cloudlet::Lab::load(&path) {
        Ok(lab) => Ok(serde_json::to_string(&lab.validate()).unwrap_or_default()),
        Err(cloudlet::Error::Load(cloudlet::core::LoadError::Invalid { diagnostics, .. })) => {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            Err(Error::new(ErrorCode::LabInvalid, lines.join("\n")))
        }
        Err(e) => Err(Error::new(ErrorCode::LabIo, e.to_string())),
    }
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
