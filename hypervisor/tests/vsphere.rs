//! The vSphere backend against vcsim (govmomi's simulator speaking the VIM SOAP API) on
//! loopback: the lab's VMs on a distributed port group with fixed MACs and network boot first,
//! re-plan empty, minimal reconfigures, destroy of exactly the VM the lab dropped (as allowed
//! data loss), VMs without cloudlet's marker never touched, re-login after the session ended,
//! and TLS verified against the CA file or a pinned fingerprint.
#![allow(missing_docs, clippy::disallowed_methods)]

use cloudlet_testkit::hypervisor_peers as peers;

mod support;
use support as lab;

use lab::{desired, steps};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cloudlet_core::engine::{ApplyOptions, Engine};
use cloudlet_core::{Domain, EngineError, Provider};
use cloudlet_hypervisor::vsphere::vim::Node;
use cloudlet_hypervisor::vsphere::{Vsphere, VsphereOptions};

fn options(
    sim: &peers::Vcsim,
    tls: cloudlet_transport::tls::rustls::ClientConfig,
) -> VsphereOptions {
    VsphereOptions {
        endpoint: format!("{}/sdk", sim.endpoint),
        user: "administrator@vsphere.local".into(),
        password: "any".into(),
        tls,
        datacenter: None,
        datastore: None,
        pool: None,
        switch: None,
        concurrency: 4,
        keepalive: Duration::from_secs(600),
    }
}

fn trusted(sim: &peers::Vcsim) -> cloudlet_transport::tls::rustls::ClientConfig {
    cloudlet_transport::tls::client_config(Some(&sim.cert)).unwrap()
}

/// A lab with machines `names`, each: memory, disk size.
fn lab_text(machines: &[(&str, &str, &str)]) -> String {
    let mut t = String::from(
        "name: vs\nsite: {domain: vs.lan}\nnetworks:\n  lan: {cidr: 10.82.0.0/24, gateway: 10.82.0.1, vlan: 20, portgroup: vs-lan}\n  mgmt: {cidr: 10.92.0.0/24, portgroup: VM Network}\nmachines:\n",
    );
    for (i, (name, memory, disk)) in machines.iter().enumerate() {
        t.push_str(&format!(
            "  {name}:\n    cpus: 2\n    memory: {memory}\n    disks: [{{size: {disk}}}]\n    nics: [{{network: lan, mac: \"00:50:56:82:00:{:02x}\"}}, {{network: mgmt, mac: \"00:50:56:92:00:{:02x}\"}}]\n    boot: [network, disk]\n",
            i + 16,
            i + 16
        ));
    }
    t
}

fn engine(p: Arc<Vsphere>, dir: &std::path::Path) -> Engine {
    lab::engine("vs", p, dir)
}

/// What changed in the per-method call counts.
fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    methods: &[&str],
) -> Vec<(String, u64)> {
    methods
        .iter()
        .map(|m| {
            let d = after.get(*m).copied().unwrap_or(0) - before.get(*m).copied().unwrap_or(0);
            ((*m).to_string(), d)
        })
        .filter(|(_, d)| *d > 0)
        .collect()
}

const WRITES: [&str; 7] = [
    "CreateVM_Task",
    "ReconfigVM_Task",
    "PowerOnVM_Task",
    "PowerOffVM_Task",
    "Destroy_Task",
    "AddDVPortgroup_Task",
    "ReconfigureDVPortgroup_Task",
];

/// Every VM: name → (annotation, power state, memory, devices).
async fn vms(p: &Vsphere) -> BTreeMap<String, (String, String, String, Node)> {
    let vim = p.session().await.unwrap();
    vim.retrieve(
        "VirtualMachine",
        &[
            "name",
            "config.annotation",
            "runtime.powerState",
            "config.hardware.memoryMB",
            "config.hardware.device",
        ],
    )
    .await
    .unwrap()
    .into_iter()
    .map(|(_, props)| {
        let t = |k: &str| props.get(k).map(|n| n.text.clone()).unwrap_or_default();
        (
            t("name"),
            (
                t("config.annotation"),
                t("runtime.powerState"),
                t("config.hardware.memoryMB"),
                props
                    .get("config.hardware.device")
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_on_a_distributed_port_group_applied_minimally_and_only_ours() {
    let sim = peers::Vcsim::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(Vsphere::new("vs", options(&sim, trusted(&sim))));
    let e = engine(p.clone(), dir.path());

    let strangers: Vec<String> = vms(&p).await.into_keys().collect();
    assert!(!strangers.is_empty(), "vcsim's own VMs are there");
    let before_all = vms(&p).await;

    // Create: the port group, then the VMs, network boot first, powered on.
    let two = lab_text(&[("vs-a", "1GiB", "2GiB"), ("vs-b", "1GiB", "1GiB")]);
    let plan = e.plan(desired(&two)).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec![
            "create hypervisor/network/lan",
            "create hypervisor/vm/vs-a",
            "create hypervisor/vm/vs-b"
        ]
    );
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");

    let vim = p.session().await.unwrap();
    let pgs = vim
        .retrieve(
            "DistributedVirtualPortgroup",
            &["name", "key", "config.defaultPortConfig"],
        )
        .await
        .unwrap();
    let (_, pg) = pgs
        .iter()
        .find(|(_, p)| p.get("name").is_some_and(|n| n.text == "vs-lan"))
        .expect("the lab's port group");
    assert_eq!(
        pg["config.defaultPortConfig"].text_at(&["vlan", "vlanId"]),
        Some("20")
    );
    let key = pg["key"].text.clone();
    let all = vms(&p).await;
    for (i, name) in ["vs-a", "vs-b"].iter().enumerate() {
        let (note, power, mem, devs) = &all[*name];
        assert!(note.contains("cloudlet:lab=vs"), "{note}");
        assert_eq!((power.as_str(), mem.as_str()), ("poweredOn", "1024"));
        let nic = devs
            .children
            .iter()
            .find(|d| d.child("macAddress").is_some())
            .expect("a NIC");
        assert_eq!(
            nic.text_at(&["macAddress"]),
            Some(format!("00:50:56:82:00:{:02x}", i + 16).as_str())
        );
        assert_eq!(nic.text_at(&["addressType"]), Some("manual"));
        // The second NIC is on the host's standard port group, used as it is.
        let mgmt = devs
            .children
            .iter()
            .filter(|d| d.child("macAddress").is_some())
            .nth(1)
            .expect("a second NIC");
        assert_eq!(
            mgmt.text_at(&["backing", "deviceName"]),
            Some("VM Network"),
            "{mgmt:?}"
        );
        assert_eq!(
            nic.text_at(&["backing", "port", "portgroupKey"]),
            Some(key.as_str())
        );
        let disk = devs
            .children
            .iter()
            .find(|d| d.ty.as_deref() == Some("VirtualDisk"))
            .expect("a disk");
        assert!(
            disk.text_at(&["backing", "fileName"])
                .unwrap()
                .ends_with(&format!("{name}/{name}-disk0.vmdk"))
        );
    }
    let boot = vim
        .retrieve("VirtualMachine", &["name", "config.bootOptions"])
        .await
        .unwrap()
        .into_iter()
        .find(|(_, p)| p["name"].text == "vs-a")
        .map(|(_, p)| p["config.bootOptions"].clone())
        .unwrap();
    let order: Vec<_> = boot
        .all("bootOrder")
        .map(|o| o.ty.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        order,
        vec![
            "VirtualMachineBootOptionsBootableEthernetDevice",
            "VirtualMachineBootOptionsBootableDiskDevice"
        ]
    );

    // Re-plan right after apply: nothing (server defaults are not drift).
    lab::assert_converged(&e, &two).await;

    // More memory: one ReconfigVM_Task, nothing else.
    let calls = vim.calls();
    let more = lab_text(&[("vs-a", "2GiB", "2GiB"), ("vs-b", "1GiB", "1GiB")]);
    let plan = e.plan(desired(&more)).await.unwrap();
    assert_eq!(steps(&plan), vec!["update hypervisor/vm/vs-a"]);
    assert_eq!(
        plan.steps[0].changes.len(),
        1,
        "{:?}",
        plan.steps[0].changes
    );
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(
        delta(&calls, &vim.calls(), &WRITES),
        vec![("ReconfigVM_Task".to_string(), 1)]
    );
    assert_eq!(vms(&p).await["vs-a"].2, "2048");

    // A bigger disk grows in place (one reconfigure); a smaller one is data loss: refused
    // unless allowed, and vSphere cannot shrink anyway.
    let calls = vim.calls();
    let bigger = lab_text(&[("vs-a", "2GiB", "3GiB"), ("vs-b", "1GiB", "1GiB")]);
    let r = lab::apply(&e, &bigger, ApplyOptions::default()).await;
    assert!(r.is_success(), "{r:?}");
    assert_eq!(
        delta(&calls, &vim.calls(), &WRITES),
        vec![("ReconfigVM_Task".to_string(), 1)]
    );
    lab::assert_converged(&e, &bigger).await;
    let smaller = e.plan(desired(&more)).await.unwrap();
    assert!(smaller.steps[0].data_loss, "{:?}", smaller.steps);
    let refused = e.apply(&smaller, ApplyOptions::default()).await;
    assert!(
        matches!(refused, Err(EngineError::DataLoss { .. })),
        "{refused:?}"
    );
    let allowed = ApplyOptions {
        allow_data_loss: true,
        ..ApplyOptions::default()
    };
    let r = e.apply(&smaller, allowed.clone()).await.unwrap();
    assert!(format!("{:?}", r.failed).contains("cannot shrink"), "{r:?}");

    // A machine named like a VM that is not cloudlet's: refused, the VM untouched.
    let stranger = &strangers[0];
    let calls = vim.calls();
    let clash = format!(
        "{}  {stranger}:\n    cpus: 1\n    memory: 64MiB\n    nics: [{{network: lan, mac: \"00:50:56:82:00:99\"}}]\n",
        lab_text(&[("vs-a", "2GiB", "3GiB"), ("vs-b", "1GiB", "1GiB")])
    );
    let plan = e.plan(desired(&clash)).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec![format!("create hypervisor/vm/{stranger}")]
    );
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(
        format!("{:?}", r.failed).contains("not managed by cloudlet"),
        "{r:?}"
    );
    assert!(delta(&calls, &vim.calls(), &WRITES).is_empty());

    // Dropping vs-b: a data-loss delete; allowed, exactly one Destroy_Task of exactly it.
    let one = lab_text(&[("vs-a", "2GiB", "3GiB")]);
    let plan = e.plan(desired(&one)).await.unwrap();
    assert_eq!(steps(&plan), vec!["delete hypervisor/vm/vs-b"]);
    assert!(plan.steps[0].data_loss);
    let refused = e.apply(&plan, ApplyOptions::default()).await;
    assert!(
        matches!(refused, Err(EngineError::DataLoss { .. })),
        "{refused:?}"
    );
    let calls = vim.calls();
    let r = e.apply(&plan, allowed).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(
        delta(&calls, &vim.calls(), &WRITES),
        vec![
            ("PowerOffVM_Task".to_string(), 1),
            ("Destroy_Task".to_string(), 1)
        ]
    );
    let after = vms(&p).await;
    assert!(!after.contains_key("vs-b") && after.contains_key("vs-a"));
    for name in &strangers {
        assert_eq!(after[name].0, before_all[name].0, "{name} untouched");
        assert_eq!(after[name].1, before_all[name].1, "{name} untouched");
        assert_eq!(after[name].2, before_all[name].2, "{name} untouched");
    }

    // The session ends (expiry, a restart of vCenter): the next call logs in again.
    let logins = vim.logins.load(std::sync::atomic::Ordering::Relaxed);
    vim.logout().await.unwrap();
    lab::assert_converged(&e, &one).await;
    assert_eq!(
        vim.logins.load(std::sync::atomic::Ordering::Relaxed),
        logins + 1
    );

    // Gone entirely: the VM and the port group.
    let none = "name: vs\nsite: {domain: vs.lan}\n";
    let plan = e.plan(desired(none)).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec!["delete hypervisor/vm/vs-a", "delete hypervisor/network/lan"]
    );
    assert_eq!(
        plan.steps[1].after,
        vec![cloudlet_hypervisor::vm_id("vs-a")],
        "the port group goes after the VM on it"
    );
    let r = e
        .apply(
            &plan,
            ApplyOptions {
                allow_data_loss: true,
                ..ApplyOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    lab::assert_converged(&e, none).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_with_a_ca_file_or_a_pinned_fingerprint() {
    let sim = peers::Vcsim::start(&[]);
    // The system's roots only: vcsim's self-signed certificate is refused.
    let p = Vsphere::new(
        "vs",
        options(&sim, cloudlet_transport::tls::client_config(None).unwrap()),
    );
    let e = p.observe(Domain::Hypervisor).await.unwrap_err().to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // Pinned: exactly that certificate.
    let p = Vsphere::new(
        "vs",
        options(
            &sim,
            cloudlet_transport::tls::pinned_config(&sim.fingerprint).unwrap(),
        ),
    );
    p.observe(Domain::Hypervisor).await.unwrap();
    let wrong = format!("00{}", &sim.fingerprint[2..]);
    let p = Vsphere::new(
        "vs",
        options(
            &sim,
            cloudlet_transport::tls::pinned_config(&wrong).unwrap(),
        ),
    );
    let e = p.observe(Domain::Hypervisor).await.unwrap_err().to_string();
    assert!(e.contains("not the pinned one"), "{e}");
    assert!(cloudlet_transport::tls::pinned_config("AB:CD").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_lab_on_vcsim() {
    let sim = peers::Vcsim::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(Vsphere::new("seed", options(&sim, trusted(&sim))));
    let e = lab::engine("seed", p.clone(), dir.path());
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    let lab = cloudlet_core::load(&seed).expect("the seed loads").lab;
    let want = cloudlet_hypervisor::expand(&lab);
    let plan = e.plan(want.clone()).await.unwrap();
    assert_eq!(plan.summary.create, lab.networks.len() + lab.machines.len());
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    let again = e.plan(want).await.unwrap();
    assert!(!again.summary.has_changes(), "{:?}", again.steps);

    // Every machine: powered on, its NICs on the seed's distributed port groups with the
    // lab's MACs; the Kubernetes nodes boot from the network first.
    let vim = p.session().await.unwrap();
    let pgs: BTreeMap<String, String> = vim
        .retrieve("DistributedVirtualPortgroup", &["name", "key"])
        .await
        .unwrap()
        .into_iter()
        .map(|(_, p)| (p["key"].text.clone(), p["name"].text.clone()))
        .collect();
    let found = vim
        .retrieve(
            "VirtualMachine",
            &[
                "name",
                "runtime.powerState",
                "config.hardware.device",
                "config.bootOptions",
            ],
        )
        .await
        .unwrap();
    for (name, m) in &lab.machines {
        let (_, props) = found
            .iter()
            .find(|(_, p)| p["name"].text == *name)
            .unwrap_or_else(|| panic!("{name} exists"));
        assert_eq!(props["runtime.powerState"].text, "poweredOn", "{name}");
        let nics: Vec<(String, String)> = props["config.hardware.device"]
            .children
            .iter()
            .filter(|d| d.child("macAddress").is_some())
            .map(|d| {
                let key = d
                    .text_at(&["backing", "port", "portgroupKey"])
                    .unwrap_or("");
                (
                    d.text_at(&["macAddress"]).unwrap().to_string(),
                    pgs.get(key).cloned().unwrap_or_default(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = m
            .nics
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    lab.nic_mac(name, i, n).to_string(),
                    lab.networks[&n.network]
                        .portgroup
                        .clone()
                        .unwrap_or_else(|| n.network.clone()),
                )
            })
            .collect();
        assert_eq!(nics, expected, "{name}");
        let first = props["config.bootOptions"]
            .children
            .iter()
            .find(|c| c.name == "bootOrder")
            .and_then(|o| o.ty.clone());
        let network_first = m.boot.first() == Some(&cloudlet_core::model::BootDevice::Network);
        assert_eq!(
            first.as_deref() == Some("VirtualMachineBootOptionsBootableEthernetDevice"),
            network_first,
            "{name}: {first:?}"
        );
    }

    // Capacity: the cluster that owns the pool, every VM on its hosts (the seed's and
    // vcsim's own), the datastore; the seed's hosts checked against them.
    let usage = p.host_usage().await.unwrap();
    // vcsim's cluster: 3 hosts of 2 threads and just under 4 GiB.
    assert_eq!(
        (usage.name.as_str(), usage.cpus),
        ("DC0_C0", 6),
        "{usage:#?}"
    );
    assert!(
        usage.memory > 11 << 30 && usage.memory <= 12 << 30,
        "{usage:#?}"
    );
    for (name, m) in &lab.machines {
        let vm = usage.vms.iter().find(|v| &v.name == name).expect(name);
        let disk: u64 = m.disks.iter().map(|d| d.size.0).sum();
        assert_eq!(
            (vm.lab, vm.cpus, vm.memory, vm.disk),
            (true, m.cpus, m.memory.0, disk),
            "{name}"
        );
    }
    let others: Vec<&str> = usage
        .vms
        .iter()
        .filter(|v| !v.lab)
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        others.len(),
        2,
        "vcsim's own VMs on the cluster: {others:?}"
    );
    let ds = usage.datastore.clone().expect("the lab's datastore");
    assert!(ds.free > 0 && ds.free < ds.capacity, "{ds:?}");
    let th = cloudlet_core::doctor::Thresholds::default();
    let found = cloudlet_hypervisor::doctor::capacity(&lab, &usage, &th);
    let by: BTreeMap<&str, &cloudlet_core::doctor::Finding> =
        found.iter().map(|f| (f.subject.as_str(), f)).collect();
    // The seed declares a 32-thread host; vcsim's cluster has 6: its 29 vCPUs and the two
    // other VMs' 2 do not fit even 4 to 1, nor 73 GiB into 12.
    let cpus = by["esxi-1 vCPUs"];
    assert_eq!(cpus.status, cloudlet_core::doctor::Status::Fail, "{cpus:?}");
    assert_eq!(
        cpus.evidence,
        "31 vCPUs taken or wanted (29 the lab's in 7 VM(s), 2 in 2 other VM(s)); the lab declares 32 (overcommit 4); `DC0_C0` has 6"
    );
    assert_eq!(
        by["esxi-1 memory"].status,
        cloudlet_core::doctor::Status::Fail
    );
    assert_eq!(by["esxi-1 disk"].status, cloudlet_core::doctor::Status::Ok);
    assert_eq!(
        by[format!("datastore {}", ds.name).as_str()].status,
        cloudlet_core::doctor::Status::Ok
    );
}
