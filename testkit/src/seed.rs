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

/// The seed's files written to a new directory with `edit(file name, text)` applied to each:
/// a lab the `cloudlet` binary reads.
pub fn seed_dir(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    for e in std::fs::read_dir(&seed).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = edit(&name, std::fs::read_to_string(&p).unwrap());
            std::fs::write(dir.path().join(&name), text).unwrap();
        }
    }
    dir
}

/// MetalLB's CRDs as a plain manifest of the lab (`DIR/manifests/metallb-crds.yaml`), as they
/// would come with its install manifests, for a cluster whose platform is its own.
pub fn metallb_crds(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(
        dir.join("manifests/metallb-crds.yaml"),
        cloudlet_cluster::metallb::crds()
            .iter()
            .map(|c| serde_json::to_string(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n---\n"),
    )
    .unwrap();
}

/// The seed with its cluster on the API server `kubeconfig` reaches (MetalLB's CRDs as a
/// manifest, the platform external); with `router`, an OPNsense router at that loopback
/// port and a resolver at 127.77.0.53 — for the doctor and watch tests.
pub fn seed_on_apiserver(kubeconfig: &std::path::Path, router: Option<u16>) -> tempfile::TempDir {
    let dir = seed_dir(|name, mut text| {
        if name == "lab.yaml" {
            text = text.replace(
                "  cluster: {kind: local}",
                "  cluster: {kind: kubernetes, credentials: {file: kubeconfig}}",
            );
            if let Some(port) = router {
                // The resolver the lab hands out: a silent one on loopback.
                text = text.replace("dns: [10.0.10.1]", "dns: [127.77.0.53]");
                text = text.replace("dns: [10.0.20.1]", "dns: [127.77.0.53]");
                text = text.replace("  kind: pfsense\n", "  kind: opnsense\n");
                text = text.replace(
                    "  router: {kind: local}",
                    &format!(
                        "  router: {{kind: opnsense, endpoint: \"https://127.0.0.1:{port}\", credentials: {{env: OPN_KEY}}}}"
                    ),
                );
            }
        }
        if name == "cluster.yaml" {
            text = text.replace("{env: WIREGUARD_PRIVATE_KEY}", "{env: PATH}");
            text.push_str(
                "  manifests: [manifests]\n  platform: {metallb: {external: true}, traefik: {external: true}}\n",
            );
        }
        text
    });
    std::fs::copy(kubeconfig, dir.path().join("kubeconfig")).unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/postmaster-password"), "pw").unwrap();
    metallb_crds(dir.path());
    dir
}
