//! The seed lab for the domain crates' tests, read with `edit(file name, text)` applied to
//! each of its files first; the edited lab must validate.
#![allow(dead_code, unreachable_pub)]

/// The seed lab after `edit`.
pub fn seed_lab(edit: impl Fn(&str, String) -> String) -> cloudlet_core::Lab {
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
    loaded.lab
}

/// The seed lab whose cluster cloudlet makes (`cluster.kubernetes: {version: v1.36.3}`).
pub fn seed_lab_making_its_cluster() -> cloudlet_core::Lab {
    seed_lab(|name, text| {
        if name == "cluster.yaml" {
            text.replace(
                "  workers: [k8s-node1, k8s-node2]\n",
                "  workers: [k8s-node1, k8s-node2]\n  kubernetes: {version: v1.36.3}\n",
            )
        } else {
            text
        }
    })
}
