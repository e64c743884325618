//! The libvirt backend for real: libvirtd (Debian's libvirt-daemon-system, started by the test
//! as `virtlogd -d` + `libvirtd -d` when it is not running) with QEMU. A lab network becomes an
//! isolated bridge, a machine a domain that network-boots with the iPXE ROM; the tests define,
//! start, read back, update, stop and undefine, and never touch a domain without cloudlet's
//! marker.
#![allow(missing_docs, clippy::disallowed_methods)]

mod support;
use support as lab;

use lab::{desired, steps};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudlet_core::Provider;
use cloudlet_core::engine::ApplyOptions;
use cloudlet_hypervisor::libvirt::{Libvirt, LibvirtOptions};
use cloudlet_transport::exec::Host;

const URI: &str = "qemu:///system";

fn virsh(args: &[&str]) -> (bool, String) {
    let o = Command::new("virsh")
        .args(["-q", "-c", URI])
        .args(args)
        .output()
        .expect("virsh runs");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// libvirtd, started the way the reference describes when it does not answer yet.
fn libvirtd() {
    // Without udev (a container), /dev/kvm stays root-only and libvirt's QEMU user cannot
    // open it; libvirt then probes QEMU again on every definition (a minute each). Give it
    // the owner and mode Debian's udev rule sets.
    if Path::new("/dev/kvm").exists() {
        let _ = Command::new("sh")
            .args([
                "-c",
                "getent group kvm >/dev/null && chgrp kvm /dev/kvm && chmod 0660 /dev/kvm",
            ])
            .status();
    }
    if virsh(&["version"]).0 {
        return;
    }
    for d in ["virtlogd", "libvirtd"] {
        let _ = Command::new(d).arg("-d").status();
    }
    let t = Instant::now();
    while !virsh(&["version"]).0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "libvirtd did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn lab_text(name: &str, memory: &str, power: &str) -> String {
    format!(
        "name: {name}\nsite: {{domain: lv.lan}}\nnetworks:\n  lan: {{cidr: 10.81.0.0/24, gateway: 10.81.0.1}}\nmachines:\n  {name}-a:\n    cpus: 1\n    memory: {memory}\n    disks: [{{size: 64MiB}}]\n    nics: [{{network: lan, mac: \"52:54:00:81:00:10\"}}]\n    boot: [network, disk]\n    power: {power}\n"
    )
}

struct Cleanup(Vec<String>, Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = virsh(&["destroy", d]);
            let _ = virsh(&["undefine", d]);
        }
        for n in &self.1 {
            let _ = virsh(&["net-destroy", n]);
            let _ = virsh(&["net-undefine", n]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libvirt_defines_boots_updates_and_removes_only_its_own_vms() {
    assert!(
        Path::new("/usr/sbin/libvirtd").exists() && Path::new("/usr/bin/qemu-img").exists(),
        "needs Debian's libvirt-daemon-system, libvirt-clients and qemu-utils"
    );
    libvirtd();
    let lab = format!("lv{}", std::process::id() % 100_000);
    let vm = format!("{lab}-a");
    let stranger = format!("{lab}-stranger");
    let _cleanup = Cleanup(
        vec![vm.clone(), stranger.clone()],
        vec![format!("cloudlet-{lab}-lan")],
    );
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let p = Arc::new(Libvirt::new(
        lab.clone(),
        LibvirtOptions {
            uri: URI.into(),
            host: Host::default(),
            images: images.clone(),
            // TCG: nested KVM is not dependable on CI machines (an emulation failure here).
            domain_type: "qemu".into(),
        },
    ));
    let e = lab::engine(&lab, p.clone(), dir.path());

    // A domain without cloudlet's marker, of a name like ours: never read or touched.
    let (ok, out) = {
        let xml = dir.path().join("stranger.xml");
        std::fs::write(
            &xml,
            format!("<domain type='qemu'><name>{stranger}</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>"),
        )
        .unwrap();
        virsh(&["define", xml.to_str().unwrap()])
    };
    assert!(ok, "{out}");

    // Created, started (network boot first), and read back as the lab says.
    let want = desired(&lab_text(&lab, "256MiB", "on"));
    let plan = e.plan(want.clone()).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec![
            format!("create hypervisor/network/lan"),
            format!("create hypervisor/vm/{vm}")
        ]
    );
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(virsh(&["domstate", &vm]).1.trim(), "running");
    assert!(images.join(format!("{vm}-disk0.qcow2")).exists());
    // The VM network-boots: iPXE sends its DHCP requests on the lab's bridge.
    let t = Instant::now();
    loop {
        let (_, stats) = virsh(&["domifstat", &vm, "vnet0"]);
        let (_, ifs) = virsh(&["domiflist", &vm]);
        let dev = ifs.split_whitespace().next().unwrap_or("vnet0").to_string();
        let (_, stats2) = virsh(&["domifstat", &vm, &dev]);
        let tx = [stats, stats2]
            .iter()
            .flat_map(|s| s.lines())
            .filter(|l| l.contains("tx_packets"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        if tx > 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no packet from the VM's NIC"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let again = e.plan(want.clone()).await.unwrap();
    assert!(
        !again.summary.has_changes(),
        "{:?} {:#?}",
        steps(&again),
        again.steps
    );

    // Capacity as libvirt reports it: this machine's CPUs and memory, every domain on it
    // (ours and the stranger), the images directory's file system.
    let usage = p.host_usage().await.unwrap();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let processors = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    assert_eq!(usage.cpus as usize, processors, "{usage:?}");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert_eq!(usage.memory, total_kib << 10);
    let find = |n: &str| {
        usage
            .vms
            .iter()
            .find(|v| v.name == n)
            .map(|v| (v.lab, v.cpus, v.memory >> 20, v.disk >> 20))
    };
    assert_eq!(find(&vm), Some((true, 1, 256, 64)), "{usage:?}");
    assert_eq!(find(&stranger), Some((false, 1, 64, 0)), "{usage:?}");
    let ds = usage.datastore.clone().expect("df of the images directory");
    assert_eq!(ds.name, images.to_string_lossy());
    assert!(ds.capacity > 0 && ds.free <= ds.capacity, "{ds:?}");

    // A device added by hand survives the lab's changes.
    let watchdog = dir.path().join("watchdog.xml");
    std::fs::write(&watchdog, "<watchdog model='i6300esb' action='reset'/>").unwrap();
    let (ok, out) = virsh(&["attach-device", &vm, watchdog.to_str().unwrap(), "--config"]);
    assert!(ok, "{out}");
    assert!(!e.plan(want.clone()).await.unwrap().summary.has_changes());

    // Memory: exactly one update of that field.
    let more = desired(&lab_text(&lab, "384MiB", "on"));
    let plan = e.plan(more.clone()).await.unwrap();
    assert_eq!(steps(&plan), vec![format!("update hypervisor/vm/{vm}")]);
    assert_eq!(
        plan.steps[0]
            .changes
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>(),
        vec!["memory_mib"]
    );
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    let (_, xml) = virsh(&["dumpxml", "--inactive", &vm]);
    assert!(xml.contains("<memory unit='KiB'>393216</memory>"), "{xml}");
    assert!(xml.contains("i6300esb"), "the hand-added device is kept");

    // Power off, then the interrupted case: defined but not started resumes by starting the
    // same domain (no second VM).
    let off = desired(&lab_text(&lab, "384MiB", "off"));
    let r = e
        .apply(&e.plan(off).await.unwrap(), ApplyOptions::default())
        .await
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(virsh(&["domstate", &vm]).1.trim(), "shut off");
    let plan = e.plan(more.clone()).await.unwrap();
    assert_eq!(steps(&plan), vec![format!("update hypervisor/vm/{vm}")]);
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    let (_, all) = virsh(&["list", "--all", "--name"]);
    assert_eq!(all.lines().filter(|l| l.trim() == vm).count(), 1);
    assert_eq!(virsh(&["domstate", &vm]).1.trim(), "running");

    // A shrinking disk is never done implicitly: the plan marks it as data loss and an apply
    // refuses it before anything runs; allowed, it still waits for the VM to be off.
    let smaller_text = lab_text(&lab, "384MiB", "on").replace("size: 64MiB", "size: 32MiB");
    let plan = e.plan(desired(&smaller_text)).await.unwrap();
    assert_eq!(plan.summary.data_loss, 1, "{:?}", plan.steps);
    assert!(plan.steps[0].data_loss);
    let refused = e.apply(&plan, ApplyOptions::default()).await;
    assert!(
        matches!(refused, Err(cloudlet_core::EngineError::DataLoss { .. })),
        "{refused:?}"
    );
    let allowed = || ApplyOptions {
        allow_data_loss: true,
        ..ApplyOptions::default()
    };
    let r = e.apply(&plan, allowed()).await.unwrap();
    let msg = format!("{:?}", r.failed);
    assert!(msg.contains("power it off"), "{msg}");
    let stopped = desired(&smaller_text.replace("power: on", "power: off"));
    let r = e
        .apply(&e.plan(stopped.clone()).await.unwrap(), allowed())
        .await
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert!(!e.plan(stopped).await.unwrap().summary.has_changes());
    let r = e
        .apply(
            &e.plan(more.clone()).await.unwrap(),
            ApplyOptions::default(),
        )
        .await
        .unwrap();
    assert!(r.is_success(), "{r:?}");

    // Removing the machine undefines exactly it; its disk image stays; the stranger stays.
    let none = desired(&format!(
        "name: {lab}\nsite: {{domain: lv.lan}}\nnetworks:\n  lan: {{cidr: 10.81.0.0/24, gateway: 10.81.0.1}}\n"
    ));
    let plan = e.plan(none.clone()).await.unwrap();
    assert_eq!(steps(&plan), vec![format!("delete hypervisor/vm/{vm}")]);
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    assert!(!virsh(&["dominfo", &vm]).0);
    assert!(
        virsh(&["dominfo", &stranger]).0,
        "a domain without the marker is never touched"
    );
    assert!(
        images.join(format!("{vm}-disk0.qcow2")).exists(),
        "disk images are kept"
    );
    assert!(!e.plan(none).await.unwrap().summary.has_changes());
}
