//! Loader errors: bad YAML, wrong types, unknown and duplicate keys, with exact positions.
#![allow(missing_docs)]

mod common;
use cloudlet::core::LoadError;
use common::*;

fn errors(text: &str) -> Vec<cloudlet::Diagnostic> {
    match lab(text) {
        Err(cloudlet::Error::Load(LoadError::Invalid { diagnostics, .. })) => diagnostics,
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[test]
fn bad_yaml_has_a_position() {
    let e = errors("name: t\nsite: {domain: t.lan\nmachines: {}\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].code, "yaml");
    assert!(e[0].message.starts_with("invalid YAML"));
    assert_eq!(e[0].location.as_ref().unwrap().line, 3);
}

#[test]
fn wrong_type_points_at_the_value() {
    let t = edit(
        BASE,
        "cpus: 4\n    memory: 8GiB\n    disks: [{size: 50GiB}]",
        "cpus: four\n    memory: 8GiB\n    disks: [{size: 50GiB}]",
    );
    let e = errors(&t);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_at(&e[0], at(&t, "four"));
    assert!(
        e[0].message
            .contains("invalid type: string \"four\", expected u32"),
        "{}",
        e[0].message
    );
}

#[test]
fn unknown_key_suggests_the_nearest() {
    let t = edit(BASE, "  nas:\n    cpus: 2", "  nas:\n    cpu: 2");
    let e = errors(&t);
    assert_eq!(e[0].code, "unknown-key");
    assert_eq!(e[0].message, "unknown key `cpu`; did you mean `cpus`?");
    assert_at(&e[0], at(&t, "cpu: 2"));
    assert!(
        e[0].help
            .as_deref()
            .unwrap()
            .starts_with("keys allowed here: host, role, cpus")
    );
}

#[test]
fn duplicate_key_names_both_places() {
    let t = edit(
        BASE,
        "  nas:\n    cpus: 2\n",
        "  nas:\n    cpus: 2\n    cpus: 3\n",
    );
    let e = errors(&t);
    assert_eq!(e.len(), 1);
    assert_at(&e[0], at(&t, "cpus: 3"));
    assert!(
        e[0].message.contains("duplicate key `cpus`"),
        "{}",
        e[0].message
    );
}

#[test]
fn missing_key_points_at_its_mapping() {
    let t = edit(BASE, "      image: wireguard:1\n", "");
    let e = errors(&t);
    assert_eq!(e[0].message, "missing key `image`");
    assert_at(&e[0], at(&t, "ports: [{name: wg"));
}

#[test]
fn value_types_explain_the_expected_form() {
    let t = edit(BASE, "cidr: 10.0.20.0/24", "cidr: 10.0.20.1/24");
    let e = errors(&t);
    assert_at(&e[0], at(&t, "10.0.20.1/24"));
    assert!(
        e[0].message
            .contains("host bits are set; the network is 10.0.20.0/24"),
        "{}",
        e[0].message
    );
    let t = edit(BASE, "memory: 64GiB", "memory: 64GB");
    let e = errors(&t);
    assert!(
        e[0].message.contains("use binary units"),
        "{}",
        e[0].message
    );
}

#[test]
fn secrets_are_references_never_values() {
    let t = edit(
        BASE,
        "      image: wireguard:1\n",
        "      image: wireguard:1\n      secrets: {KEY: hunter2}\n",
    );
    let e = errors(&t);
    assert_at(&e[0], at(&t, "hunter2"));
    assert!(
        e[0].message.contains("env") && e[0].message.contains("file"),
        "{}",
        e[0].message
    );
}

#[test]
fn every_entry_error_is_reported_in_one_run() {
    let t = edit(BASE, "  nas:\n    cpus: 2", "  nas:\n    cpu: 2");
    let t = edit(
        &t,
        "      image: nginx:1.27\n",
        "      image: nginx:1.27\n      replica: 2\n",
    );
    let e = errors(&t);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e[1].message.contains("did you mean `replicas`"));
}

#[test]
fn a_lab_spread_over_files_merges_named_entries_and_refuses_redefinitions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "name: t\nsite: {domain: t.lan}\nnetworks:\n  lan: {cidr: 10.0.0.0/24}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "networks:\n  dmz: {cidr: 10.0.1.0/24}\n",
    )
    .unwrap();
    let lab = cloudlet::Lab::load(dir.path()).unwrap();
    assert_eq!(lab.model().networks.len(), 2);

    std::fs::write(
        dir.path().join("c.yaml"),
        "networks:\n  lan: {cidr: 10.0.2.0/24}\n",
    )
    .unwrap();
    match cloudlet::Lab::load(dir.path()) {
        Err(cloudlet::Error::Load(LoadError::Invalid { diagnostics, .. })) => {
            let d = &diagnostics[0];
            assert_eq!(d.code, "defined-twice");
            assert_eq!(d.message, "`networks.lan` is defined in two places");
            let loc = d.location.as_ref().unwrap();
            assert!(
                loc.file.ends_with("c.yaml") && loc.line == 2 && loc.column == 3,
                "{loc}"
            );
            let first = d.related[0].location.as_ref().unwrap();
            assert!(first.file.ends_with("a.yaml") && first.line == 4, "{first}");
        }
        other => panic!("expected defined-twice, got {other:?}"),
    }
}

#[test]
fn an_empty_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = cloudlet::Lab::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("no lab files"), "{e}");
}

#[test]
fn the_proxy_offer_comes_from_the_lab_and_a_wrong_one_is_pointed_at() {
    let t = edit(
        BASE,
        "pxe:\n  menu:",
        "pxe:\n  serve: {address: 10.0.10.5, proxy_offer: port4011}\n  menu:",
    );
    let cfg = lab(&t)
        .unwrap()
        .boot_config(&cloudlet::BootOptions::default())
        .unwrap();
    assert_eq!(cfg.proxy_offer, cloudlet::core::model::ProxyOffer::Port4011);
    let plain = lab(&edit(
        BASE,
        "pxe:\n  menu:",
        "pxe:\n  serve: {address: 10.0.10.5}\n  menu:",
    ))
    .unwrap()
    .boot_config(&cloudlet::BootOptions::default())
    .unwrap();
    assert_eq!(
        plain.proxy_offer,
        cloudlet::core::model::ProxyOffer::BootFile
    );
    let bad = edit(&t, "port4011", "port_4011");
    let e = errors(&bad);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_at(&e[0], at(&bad, "port_4011"));
    assert!(e[0].message.contains("boot_file"), "{}", e[0].message);
}
