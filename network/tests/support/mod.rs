//! Fakes of routers that cannot run here (named fakes, in test code) and what they share.
#![allow(dead_code, unreachable_pub)]

pub mod https;
pub mod opnsense_fake;
pub mod pfsense_fake;
