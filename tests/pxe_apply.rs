//! `apply` with `pxe.serve`: cloudlet runs the lab's boot service itself while it applies and
//! until the network installs report. In network namespaces this test creates (the segment of
//! the PXE tests: a bridge with QEMU's tap, busybox udhcpd handing out addresses), the lab is
//! planned and applied through the facade inside the segment; a VM powered on meanwhile
//! installs itself over iPXE and HTTP, and the apply returns with the machine installed.
#![allow(missing_docs, clippy::disallowed_methods)]

use cloudlet_testkit::boot as support;

use std::time::Duration;

use cloudlet::pxe::install::Phase;

#[test]
fn apply_serves_the_network_install_and_waits_for_it() {
    let seg = support::Segment::new("a");
    let root = support::boot_root(seg.dir.path());
    let labdir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // The test lab with vm1 only, and cloudlet serving network boot on the segment.
    let text = support::BOOT_LAB.split("  vm2:").next().unwrap().replace(
        "pxe:\n",
        &format!(
            "pxe:\n  serve: {{address: 10.99.0.1, interface: br0, root: {}, wait: 4m}}\n",
            root.display()
        ),
    );
    std::fs::write(labdir.path().join("lab.yaml"), &text).unwrap();
    let (lab_path, state_path) = (labdir.path().to_path_buf(), state.path().to_path_buf());
    let applying = seg.in_segment(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let lab = cloudlet::Lab::load(&lab_path)
                .unwrap()
                .with_options(cloudlet::Options {
                    state_dir: Some(state_path),
                    ..Default::default()
                });
            let report = lab.validate();
            assert!(!report.has_errors(), "{:?}", report.diagnostics);
            let plan = lab.plan().await.unwrap();
            let events = std::sync::Mutex::new(Vec::new());
            let on = |e: &cloudlet::pxe::service::Event| events.lock().unwrap().push(e.clone());
            let applied = lab
                .apply_with(&plan, Default::default(), Some(&on))
                .await
                .unwrap();
            (
                applied.report.is_success(),
                applied.installs.unwrap(),
                events.into_inner().unwrap(),
            )
        })
    });
    // The VM is powered on while the apply runs (by hand, as bare metal would be).
    std::thread::sleep(Duration::from_millis(500));
    let mut vm = seg.power_on(&seg.dir.path().join("serial.log"));
    let (ok, outcome, events) = applying.join().unwrap();
    let _ = vm.kill();
    let _ = vm.wait();
    assert!(ok, "the apply succeeded");
    assert!(outcome.not_reported.is_empty(), "{outcome:?} {events:?}");
    assert_eq!(outcome.machines.len(), 1);
    let m = &outcome.machines[0];
    assert_eq!(m.name, "vm1");
    assert_eq!(
        m.state.as_ref().map(|s| s.phase),
        Some(Phase::Installed),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, cloudlet::pxe::service::Event::Reported { ok: true, .. })),
        "{events:?}"
    );
}
