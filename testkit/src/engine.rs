//! An engine over one provider, and a plan's steps as `ACTION ID` lines.

use std::path::Path;
use std::sync::Arc;

use cloudlet_core::engine::Engine;
use cloudlet_core::{Domain, Plan, Provider, Providers, StateStore};

/// An engine for the lab `lab` with `p` serving `domain`, its state under `state`.
pub fn engine(lab: &str, domain: Domain, p: Arc<dyn Provider>, state: &Path) -> Engine {
    Engine::new(
        lab,
        Providers::new().with(domain, p),
        StateStore::open(state).unwrap(),
    )
}

/// `ACTION ID` per step.
pub fn steps(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| format!("{} {}", s.action.as_str(), s.id))
        .collect()
}
