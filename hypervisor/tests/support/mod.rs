//! What the hypervisor tests share: a lab text's desired hypervisor resources, a plan's steps
//! as `ACTION ID` lines, and an engine over one provider.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;

use cloudlet_core::engine::Engine;
use cloudlet_core::load::load_texts;
use cloudlet_core::{Domain, Provider, Resource};

/// The hypervisor resources of a lab given as text.
pub fn desired(text: &str) -> Vec<Resource> {
    let lab = load_texts(vec![("lab.yaml".into(), text.into())], ".".into())
        .expect("loads")
        .lab;
    cloudlet_hypervisor::expand(&lab)
}

pub use cloudlet_testkit::engine::steps;

/// An engine for `lab` with `p` serving the hypervisor domain, its state under `dir`.
pub fn engine(lab: &str, p: Arc<dyn Provider>, dir: &Path) -> Engine {
    cloudlet_testkit::engine::engine(lab, Domain::Hypervisor, p, &dir.join("state"))
}

/// Plans the lab `text` and applies the plan with `options`.
pub async fn apply(
    e: &Engine,
    text: &str,
    options: cloudlet_core::ApplyOptions<'_>,
) -> cloudlet_core::ApplyReport {
    let plan = e.plan(desired(text)).await.unwrap();
    e.apply(&plan, options).await.unwrap()
}

/// A plan of the lab `text` has no changes.
pub async fn assert_converged(e: &Engine, text: &str) {
    let plan = e.plan(desired(text)).await.unwrap();
    assert!(!plan.summary.has_changes(), "{:?}", plan.steps);
}
