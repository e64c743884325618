//! The layering ARCHITECTURE.md describes, checked on the workspace's manifests: domain
//! crates depend on `cloudlet-core` (and on `cloudlet-transport`, how backends are reached)
//! and on no other domain crate; core and transport depend on no crate of ours; the CLI and the bindings
//! depend on the facade and on no crate below it (their test-only dependencies aside).
#![allow(missing_docs, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::process::Command;

/// Workspace crate → the workspace crates it depends on (normal dependencies only).
fn workspace_deps() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|n| ours.contains(n))
                .map(str::to_string)
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn domain_crates_depend_only_on_core_and_frontends_only_on_the_facade() {
    let deps = workspace_deps();
    let domains = [
        "cloudlet-hypervisor",
        "cloudlet-network",
        "cloudlet-pxe",
        "cloudlet-storage",
        "cloudlet-cluster",
        "cloudlet-backup",
    ];
    let frontends = [
        "cloudlet-cli",
        "cloudlet-python",
        "cloudlet-node",
        "cloudlet-jvm",
    ];
    for d in domains {
        let got = deps
            .get(d)
            .unwrap_or_else(|| panic!("{d} is not in the workspace"));
        assert!(
            got.contains(&"cloudlet-core".to_string())
                && got
                    .iter()
                    .all(|g| g == "cloudlet-core" || g == "cloudlet-transport"),
            "{d} depends on {got:?}"
        );
    }
    for base in ["cloudlet-core", "cloudlet-transport"] {
        assert!(deps[base].is_empty(), "{base} depends on {:?}", deps[base]);
    }
    for f in frontends {
        let got = deps
            .get(f)
            .unwrap_or_else(|| panic!("{f} is not in the workspace"));
        assert_eq!(got, &vec!["cloudlet".to_string()], "{f} depends on {got:?}");
    }
    // The testkit is dev-only: no crate depends on it for its library or binary.
    for (name, got) in &deps {
        assert!(
            !got.contains(&"cloudlet-testkit".to_string()),
            "{name} depends on the testkit outside its tests"
        );
    }
    // Every crate is one of the above or the facade: a new crate gets a place in the layers.
    for name in deps.keys() {
        assert!(
            name == "cloudlet"
                || name == "cloudlet-core"
                || name == "cloudlet-transport"
                || name == "cloudlet-testkit"
                || domains.contains(&name.as_str())
                || frontends.contains(&name.as_str()),
            "{name} has no place in the layering test"
        );
    }
}
