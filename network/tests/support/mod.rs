//! Fakes of routers that cannot run here (named fakes, in test code) and what they share.
#![allow(dead_code, unreachable_pub)]

pub mod https;
pub mod opnsense_fake;
pub mod pfsense_fake;
#[path = "../../../core/tests/support/seed.rs"]
mod seed;

use cloudlet_core::Resource;

/// The router resources of the seed lab, read with `edit(file name, text)` applied to each
/// of its files first; the edited lab must validate.
pub fn seed_with(edit: impl Fn(&str, String) -> String) -> Vec<Resource> {
    cloudlet_network::expand(&seed::seed_lab(edit))
}
