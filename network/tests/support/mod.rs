//! The network tests' share of the testkit: the router fakes, and the seed's router resources.
#![allow(dead_code, unreachable_pub)]

#[allow(unused_imports)]
pub use cloudlet_testkit::{https, opnsense_fake, pfsense_fake};

use cloudlet_core::Resource;

/// The router resources of the seed lab, read with `edit(file name, text)` applied to each
/// of its files first; the edited lab must validate.
pub fn seed_with(edit: impl Fn(&str, String) -> String) -> Vec<Resource> {
    cloudlet_network::expand(&cloudlet_testkit::seed::seed_lab(edit))
}
