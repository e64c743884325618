//! cloudlet's core: the lab model, loading with positions, whole-lab validation, the
//! resource graph, plans, the apply engine, the provider trait, the state store and the
//! local provider.
//!
//! ```
//! use cloudlet_core::load::load_texts;
//! let text = "name: demo\nsite: {domain: demo.lan}\n".to_string();
//! let loaded = load_texts(vec![("lab.yaml".into(), text)], ".".into()).unwrap();
//! assert_eq!(loaded.lab.name, "demo");
//! assert!(cloudlet_core::validate::validate(&loaded.lab).is_empty());
//! ```

#![cfg_attr(test, allow(clippy::disallowed_methods))] // #[tokio::test] builds a runtime per test

pub mod backend;
pub mod de;
pub mod diag;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod lb;
pub mod load;
pub mod local;
pub mod model;
pub mod plan;
pub mod provider;
pub mod refs;
pub mod resource;
pub mod source;
pub mod store;
pub mod types;
pub mod validate;
pub mod vault;
pub mod yaml;

pub use diag::{Diagnostic, Severity};
pub use engine::{ApplyOptions, ApplyReport, Cancel, Engine, Event};
pub use error::{EngineError, LoadError, ProviderError};
pub use load::{LoadedLab, load};
pub use model::Lab;
pub use plan::{Action, FieldChange, Plan, Step, Summary};
pub use provider::{ConfigFile, DatastoreUsage, HostUsage, Imported, Provider, Providers, VmUsage};
pub use resource::{Data, Domain, Resource, ResourceId};
pub use store::StateStore;

/// The JSON Schema of the lab format.
pub fn schema() -> serde_json::Value {
    let mut s = serde_json::to_value(schemars::schema_for!(model::Lab)).unwrap_or_default();
    if let Some(o) = s.as_object_mut() {
        o.insert("title".into(), "cloudlet lab".into());
    }
    s
}
