//! Fakes of routers that cannot run here (named fakes, in test code) and what they share.
#![allow(dead_code, unreachable_pub)]

pub mod https;
pub mod opnsense_fake;
pub mod pfsense_fake;

use cloudlet_core::Resource;

/// The router resources of the seed lab, read with `edit(file name, text)` applied to each
/// of its files first; the edited lab must validate.
pub fn seed_with(edit: impl Fn(&str, String) -> String) -> Vec<Resource> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    let texts = cloudlet_core::load::lab_files(&dir)
        .unwrap()
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let t = edit(&name, std::fs::read_to_string(&p).unwrap());
            (p, t)
        })
        .collect();
    let loaded = cloudlet_core::load::load_texts(texts, ".".into()).unwrap();
    let errors: Vec<_> = cloudlet_core::validate::validate(&loaded.lab)
        .into_iter()
        .filter(|d| d.is_error())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    cloudlet_network::expand(&loaded.lab)
}
