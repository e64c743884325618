//! The Proxmox VE backend against fakepve (PyPI: a stateful simulator of the PVE 8/9 API
//! written by others: API tokens, UPID tasks, `digest`, pending changes, start/stop) on
//! loopback. The launcher (tests/support/fakepve_launch.py) adds what fakepve lacks, as a
//! layer of ours: the API token, VM disk resize, and lock timeouts on demand.
#![allow(missing_docs, clippy::disallowed_methods)]

use cloudlet_testkit::hypervisor_peers as peers;

mod support;
use support as lab;

use lab::{desired, steps};
use std::sync::Arc;

use cloudlet_core::engine::ApplyOptions;
use cloudlet_core::{Domain, EngineError, Provider};
use cloudlet_hypervisor::proxmox::{Proxmox, ProxmoxOptions};
use cloudlet_transport::http::{Http, Method};
use serde_json::{Value, json};

const TOKEN: &str = "root@pam!cloudlet";
const SECRET: &str = "5ecret-uuid";

fn provider(pve: &peers::FakePve) -> Arc<Proxmox> {
    provider_in(pve, None)
}

/// A provider whose segments are VNets of `zone` (or bridges without one).
fn provider_in(pve: &peers::FakePve, zone: Option<&str>) -> Arc<Proxmox> {
    Arc::new(
        Proxmox::new(
            "px",
            ProxmoxOptions {
                endpoint: pve.endpoint.clone(),
                token_id: TOKEN.into(),
                secret: SECRET.into(),
                tls: cloudlet_transport::tls::client_config(Some(&pve.cert)).unwrap(),
                node: None,
                storage: None,
                concurrency: 4,
                sdn_zone: zone.map(str::to_string),
            },
        )
        .unwrap(),
    )
}

/// A lab with machines (name, memory, disk, power).
fn lab_text(machines: &[(&str, &str, &str, &str)]) -> String {
    let mut t = String::from(
        "name: px\nsite: {domain: px.lan}\nnetworks:\n  lan: {cidr: 10.85.0.0/24, gateway: 10.85.0.1, vlan: 20, portgroup: vmbr0}\nmachines:\n",
    );
    for (i, (name, memory, disk, power)) in machines.iter().enumerate() {
        t.push_str(&format!(
            "  {name}:\n    cpus: 2\n    memory: {memory}\n    disks: [{{size: {disk}}}]\n    nics: [{{network: lan, mac: \"bc:24:11:85:00:{:02x}\"}}]\n    boot: [disk]\n    power: {power}\n",
            i + 16
        ));
    }
    t
}

/// An independent reader of the simulator.
struct Reader(Http);

impl Reader {
    fn new(pve: &peers::FakePve) -> Reader {
        Reader(
            Http::new(
                &pve.endpoint,
                Some(&pve.cert),
                vec![(
                    "authorization".into(),
                    format!("PVEAPIToken={TOKEN}={SECRET}"),
                )],
            )
            .unwrap(),
        )
    }

    async fn get(&self, path: &str) -> Value {
        self.0
            .json(Method::GET, &format!("/api2/json{path}"), None)
            .await
            .unwrap()["data"]
            .clone()
    }

    /// name → (vmid, status).
    async fn vms(&self) -> Vec<(String, u64, String)> {
        let mut v: Vec<_> = self
            .get("/cluster/resources?type=vm")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    v["vmid"].as_u64().unwrap(),
                    v["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }

    async fn config(&self, vmid: u64) -> Value {
        self.get(&format!("/nodes/pve1/qemu/{vmid}/config")).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_created_configured_by_slot_and_destroyed_only_when_ours() {
    // A VM that is not cloudlet's, with a disk and a NIC of its own and a name the lab uses.
    let guests = json!({"guests": [{"vmid": 100, "name": "px-c", "status": "running",
        "config": {"memory": "1024", "cores": 1, "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0"}}]});
    // The first two configuration writes meet a busy lock.
    let pve = peers::FakePve::start(&guests, TOKEN, SECRET, 2);
    let reader = Reader::new(&pve);
    let stranger = reader.config(100).await;
    let dir = tempfile::tempdir().unwrap();
    let p = provider(&pve);
    let e = lab::engine("px", p.clone(), dir.path());

    let two = lab_text(&[
        ("px-a", "1GiB", "2GiB", "on"),
        ("px-b", "1GiB", "1GiB", "on"),
    ]);
    // The segment is the node's bridge vmbr0, which exists: only the VMs are created.
    let plan = e.plan(desired(&two)).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec!["create hypervisor/vm/px-a", "create hypervisor/vm/px-b"]
    );
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    let vms = reader.vms().await;
    let a = vms.iter().find(|v| v.0 == "px-a").expect("px-a");
    assert_eq!(a.2, "running");
    let cfg = reader.config(a.1).await;
    assert_eq!(cfg["net0"], "virtio=BC:24:11:85:00:10,bridge=vmbr0,tag=20");
    assert_eq!(cfg["tags"], "cloudlet-px");
    assert_eq!(cfg["boot"], "order=scsi0");
    assert_eq!(cfg["cores"], 2);
    assert!(cfg["scsi0"].as_str().unwrap().contains("size=2G"), "{cfg}");
    lab::assert_converged(&e, &two).await;

    // Memory of a running VM: one digest-guarded write (after two busy-lock retries); PVE
    // keeps it pending until the restart, and the re-plan takes the pending value.
    let more = lab_text(&[
        ("px-a", "2GiB", "2GiB", "on"),
        ("px-b", "1GiB", "1GiB", "on"),
    ]);
    let plan = e.plan(desired(&more)).await.unwrap();
    assert_eq!(steps(&plan), vec!["update hypervisor/vm/px-a"]);
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    let pending = reader
        .get(&format!("/nodes/pve1/qemu/{}/pending", a.1))
        .await;
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"] == "memory" && p["pending"] == 2048),
        "{pending}"
    );
    lab::assert_converged(&e, &more).await;

    // A bigger disk: resize; a smaller one is data loss, and Proxmox cannot shrink.
    let bigger = lab_text(&[
        ("px-a", "2GiB", "3GiB", "on"),
        ("px-b", "1GiB", "1GiB", "on"),
    ]);
    let r = lab::apply(&e, &bigger, ApplyOptions::default()).await;
    assert!(r.is_success(), "{r:?}");
    assert!(
        reader.config(a.1).await["scsi0"]
            .as_str()
            .unwrap()
            .contains("size=3G")
    );
    lab::assert_converged(&e, &bigger).await;
    let smaller = e.plan(desired(&more)).await.unwrap();
    assert!(smaller.steps[0].data_loss);
    let allowed = ApplyOptions {
        allow_data_loss: true,
        ..ApplyOptions::default()
    };
    let r = e.apply(&smaller, allowed.clone()).await.unwrap();
    assert!(format!("{:?}", r.failed).contains("cannot shrink"), "{r:?}");

    // A machine named like the VM that is not cloudlet's: refused; that VM is untouched.
    let clash = lab_text(&[
        ("px-a", "2GiB", "3GiB", "on"),
        ("px-b", "1GiB", "1GiB", "on"),
        ("px-c", "1GiB", "1GiB", "on"),
    ]);
    let r = lab::apply(&e, &clash, ApplyOptions::default()).await;
    assert!(
        format!("{:?}", r.failed).contains("not managed by cloudlet"),
        "{r:?}"
    );

    // Dropping px-b: a data-loss delete, refused unless allowed; then stopped and destroyed.
    let one = lab_text(&[("px-a", "2GiB", "3GiB", "on")]);
    let plan = e.plan(desired(&one)).await.unwrap();
    assert_eq!(steps(&plan), vec!["delete hypervisor/vm/px-b"]);
    let refused = e.apply(&plan, ApplyOptions::default()).await;
    assert!(
        matches!(refused, Err(EngineError::DataLoss { .. })),
        "{refused:?}"
    );
    let r = e.apply(&plan, allowed).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    let names: Vec<String> = reader.vms().await.into_iter().map(|v| v.0).collect();
    assert_eq!(names, vec!["px-a", "px-c"]);
    assert_eq!(
        reader.config(100).await,
        stranger,
        "the VM that is not cloudlet's is untouched"
    );
    lab::assert_converged(&e, &one).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bridge_and_a_wrong_token_are_clear_errors() {
    let pve = peers::FakePve::start(&json!({"guests": []}), TOKEN, SECRET, 0);
    let dir = tempfile::tempdir().unwrap();
    let p = provider(&pve);
    let e = lab::engine("px", p, dir.path());
    let text = lab_text(&[])
        .replace("portgroup: vmbr0", "portgroup: vmbr9")
        .replace("machines:\n", "");
    let r = lab::apply(&e, &text, ApplyOptions::default()).await;
    assert!(
        format!("{:?}", r.failed).contains("no bridge `vmbr9`"),
        "{r:?}"
    );

    let wrong = Proxmox::new(
        "px",
        ProxmoxOptions {
            endpoint: pve.endpoint.clone(),
            token_id: TOKEN.into(),
            secret: "wrong".into(),
            tls: cloudlet_transport::tls::client_config(Some(&pve.cert)).unwrap(),
            node: None,
            storage: None,
            concurrency: 1,
            sdn_zone: None,
        },
    )
    .unwrap();
    let err = wrong
        .observe(Domain::Hypervisor)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused the API token"), "{err}");
    assert!(
        Proxmox::new(
            "px",
            ProxmoxOptions {
                endpoint: pve.endpoint.clone(),
                token_id: "root@pam".into(),
                secret: "x".into(),
                tls: cloudlet_transport::tls::client_config(None).unwrap(),
                node: None,
                storage: None,
                concurrency: 1,
                sdn_zone: None,
            },
        )
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_cloned_from_a_template_with_cloud_init() {
    // A cloud image template, as `qm template` leaves it (its own tag and cloud-init drive).
    let guests = json!({"guests": [{"vmid": 9000, "name": "debian-12", "template": true,
        "config": {"memory": "1024", "cores": 1, "tags": "images",
                   "scsi0": "local-lvm:base-9000-disk-0,size=2G", "ide2": "local-lvm:cloudinit,media=cdrom",
                   "net0": "virtio=BC:24:11:00:90:00,bridge=vmbr0", "boot": "order=scsi0"}},
        // A clone an earlier apply made and was killed before it tagged: found by the
        // description its clone call wrote, finished, not cloned again.
        {"vmid": 150, "name": "px-f", "status": "stopped",
         "config": {"memory": "1024", "cores": 1, "tags": "images",
                    "description": "Managed by cloudlet (lab px, hypervisor/vm/px-f).",
                    "scsi0": "local-lvm:vm-150-disk-0,size=2G", "ide2": "local-lvm:cloudinit,media=cdrom",
                    "net0": "virtio=BC:24:11:00:90:01,bridge=vmbr0", "boot": "order=scsi0"}}]});
    let pve = peers::FakePve::start(&guests, TOKEN, SECRET, 0);
    let reader = Reader::new(&pve);
    let dir = tempfile::tempdir().unwrap();
    let p = provider(&pve);
    let e = lab::engine("px", p, dir.path());
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOp+/x= ops@home";
    let mut text = lab_text(&[
        ("px-d", "2GiB", "4GiB", "on"),
        ("px-e", "2GiB", "4GiB", "on"),
        ("px-f", "2GiB", "4GiB", "on"),
    ]);
    text = text.replace(
        "    boot: [disk]\n",
        &format!("    boot: [disk]\n    clone: debian-12\n    cloud_init: {{user: debian, ssh_keys: [\"{key}\"]}}\n"),
    );
    let plan = e.plan(desired(&text)).await.unwrap();
    assert_eq!(
        (plan.summary.create, plan.summary.update),
        (2, 1),
        "{:?}",
        plan.steps
    );
    // Three clones at once onto one storage: they go one at a time, all succeed.
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    let vms = reader.vms().await;
    assert_eq!(vms.len(), 4, "{vms:?}");
    for (i, name) in ["px-d", "px-e", "px-f"].iter().enumerate() {
        let (_, vmid, status) = vms.iter().find(|v| v.0 == *name).unwrap();
        assert_eq!(status, "running");
        let cfg = reader.config(*vmid).await;
        let mut tags: Vec<&str> = cfg["tags"].as_str().unwrap().split(';').collect();
        tags.sort_unstable();
        assert_eq!(
            tags,
            vec!["cloudlet-px", "images"],
            "the template's tag stays: {cfg}"
        );
        assert_eq!(cfg["ciuser"], "debian");
        let sshkeys = cfg["sshkeys"].as_str().unwrap();
        assert!(
            !sshkeys.contains(' ') && sshkeys.contains("%2B"),
            "URL-encoded: {sshkeys}"
        );
        assert_eq!(
            cfg["net0"],
            format!("virtio=BC:24:11:85:00:{:02X},bridge=vmbr0,tag=20", i + 16)
        );
        assert!(cfg["scsi0"].as_str().unwrap().contains("size=4G"), "{cfg}");
        assert_eq!(
            cfg["ide2"], "local-lvm:cloudinit,media=cdrom",
            "the template's cloud-init drive"
        );
    }
    lab::assert_converged(&e, &text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_as_sdn_vnets_applied_after_the_writes() {
    let pve = peers::FakePve::start(&json!({"guests": []}), TOKEN, SECRET, 0);
    let reader = Reader::new(&pve);
    // A VNet made by hand in the same zone.
    reader
        .0
        .json(
            Method::POST,
            "/api2/json/cluster/sdn/vnets",
            Some(&json!({"vnet": "hand", "zone": "lab", "tag": 99, "alias": "made by hand"})),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = provider_in(&pve, Some("lab"));
    let e = lab::engine("px", p, dir.path());
    let lab = |dmz: Option<u16>| {
        let mut t = String::from(
            "name: px\nsite: {domain: px.lan}\nnetworks:\n  lan: {cidr: 10.87.0.0/24, gateway: 10.87.0.1, vlan: 30, portgroup: pxlan}\n",
        );
        if let Some(v) = dmz {
            t.push_str(&format!(
                "  dmz: {{cidr: 10.88.0.0/24, vlan: {v}, portgroup: pxdmz}}\n"
            ));
        }
        t.push_str("machines:\n  px-s: {cpus: 1, memory: 1GiB, disks: [{size: 1GiB}], nics: [{network: lan, mac: \"bc:24:11:87:00:10\"}], power: on}\n");
        t
    };
    let plan = e.plan(desired(&lab(Some(31)))).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec![
            "create hypervisor/network/dmz",
            "create hypervisor/network/lan",
            "create hypervisor/vm/px-s"
        ]
    );
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    // Applied: nothing pending; the VNets carry the VLANs, the NIC none of its own.
    let vnets = reader.get("/cluster/sdn/vnets?pending=1").await;
    let vnets = vnets.as_array().unwrap();
    assert!(vnets.iter().all(|v| v.get("state").is_none()), "{vnets:?}");
    let tag = |name: &str| {
        vnets
            .iter()
            .find(|v| v["vnet"] == name)
            .map(|v| v["tag"].clone())
    };
    assert_eq!(tag("pxlan"), Some(json!(30)));
    assert_eq!(tag("pxdmz"), Some(json!(31)));
    let vmid = reader.vms().await[0].1;
    assert_eq!(
        reader.config(vmid).await["net0"],
        "virtio=BC:24:11:87:00:10,bridge=pxlan"
    );
    lab::assert_converged(&e, &lab(Some(31))).await;

    // A new VLAN: one VNet update, applied.
    let plan = e.plan(desired(&lab(Some(32)))).await.unwrap();
    assert_eq!(steps(&plan), vec!["update hypervisor/network/dmz"]);
    assert!(
        e.apply(&plan, ApplyOptions::default())
            .await
            .unwrap()
            .is_success()
    );
    let vnets = reader.get("/cluster/sdn/vnets?pending=1").await;
    assert!(
        vnets
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["vnet"] == "pxdmz" && v["tag"] == 32 && v.get("state").is_none()),
        "{vnets}"
    );

    // Dropped from the lab: deleted and applied; the hand-made VNet stays.
    let plan = e.plan(desired(&lab(None))).await.unwrap();
    assert_eq!(steps(&plan), vec!["delete hypervisor/network/dmz"]);
    assert!(
        e.apply(&plan, ApplyOptions::default())
            .await
            .unwrap()
            .is_success()
    );
    let names: Vec<String> = reader
        .get("/cluster/sdn/vnets?pending=1")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            format!(
                "{}{}",
                v["vnet"].as_str().unwrap(),
                v.get("state").map_or("", |_| " (pending)")
            )
        })
        .collect();
    assert_eq!(names, vec!["hand", "pxlan"]);

    // A segment named like the hand-made VNet: refused, not taken over.
    let clash = lab(None).replace("portgroup: pxlan", "portgroup: hand");
    let r = lab::apply(&e, &clash, ApplyOptions::default()).await;
    assert!(
        format!("{:?}", r.failed).contains("not managed by cloudlet"),
        "{r:?}"
    );
}

/// The lab of `text`, loaded.
fn lab_model(text: &str) -> cloudlet_core::Lab {
    cloudlet_core::load::load_texts(vec![("lab.yaml".into(), text.into())], ".".into())
        .expect("loads")
        .lab
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_reports_its_capacity_and_every_vm_on_it() {
    use cloudlet_core::doctor::{Status, Thresholds};
    // A VM that is not the lab's: 2 cores x 2 sockets, 4 GiB, a 20 GiB disk and a CD-ROM.
    let guests = json!({"guests": [{"vmid": 100, "name": "other", "status": "running",
        "config": {"memory": "4096", "cores": 2, "sockets": 2,
                   "scsi0": "local-lvm:vm-100-disk-0,size=20G",
                   "ide2": "local:iso/debian.iso,media=cdrom,size=600M"}}]});
    let pve = peers::FakePve::start(&guests, TOKEN, SECRET, 0);
    let dir = tempfile::tempdir().unwrap();
    let p = provider(&pve);
    let e = lab::engine("px", p.clone(), dir.path());
    let two = lab_text(&[
        ("px-a", "1GiB", "2GiB", "on"),
        ("px-b", "1GiB", "1GiB", "off"),
    ]);
    let r = lab::apply(&e, &two, ApplyOptions::default()).await;
    assert!(r.is_success(), "{r:?}");

    let usage = p.host_usage().await.unwrap();
    // fakepve's node: 4 CPUs and 8 GiB; its storage's status as reported.
    assert_eq!(
        (usage.name.as_str(), usage.cpus, usage.memory),
        ("pve1", 4, 8 << 30)
    );
    let ds = usage
        .datastore
        .clone()
        .expect("the default storage's status");
    assert!(ds.capacity > 0 && ds.free <= ds.capacity, "{ds:?}");
    let mut vms: Vec<_> = usage
        .vms
        .iter()
        .map(|v| (v.name.as_str(), v.lab, v.cpus, v.memory >> 20, v.disk >> 30))
        .collect();
    vms.sort_unstable();
    assert_eq!(
        vms,
        vec![
            ("other", false, 4, 4096, 20),
            ("px-a", true, 2, 1024, 2),
            ("px-b", true, 2, 1024, 1),
        ]
    );

    let th = Thresholds::default();
    let status = |text: &str, what: &str| {
        let found = cloudlet_hypervisor::doctor::capacity(&lab_model(text), &usage, &th);
        let f = found
            .iter()
            .find(|f| f.subject.ends_with(what))
            .unwrap_or_else(|| panic!("{what} in {found:#?}"))
            .clone();
        (f.status, f.evidence, f.fix.unwrap_or_default())
    };
    // As declared: 8 vCPUs of 4 CPUs x 4, 6 GiB of 8 GiB.
    let host = |cpus: u32, memory: &str| {
        format!(
            "{two}hosts:\n  pve:\n    kind: proxmox\n    cpus: {cpus}\n    memory: {memory}\n    storage: 1GiB\n    overcommit: {{storage: 100}}\n"
        )
    };
    let (s, evidence, _) = status(&host(4, "8GiB"), "vCPUs");
    assert_eq!(s, Status::Ok, "{evidence}");
    assert!(
        evidence
            .starts_with("8 vCPUs taken or wanted (4 the lab's in 2 VM(s), 4 in 1 other VM(s))"),
        "{evidence}"
    );
    assert_eq!(status(&host(4, "8GiB"), "memory").0, Status::Ok);
    // The lab says the node has 16 GiB: a warning naming the real number.
    let (s, evidence, fix) = status(&host(4, "16GiB"), "memory");
    assert_eq!(s, Status::Warn, "{evidence}");
    assert!(fix.contains("`hosts.pve.memory` to 8GiB or less"), "{fix}");
    // The lab gives itself 6 GiB of the node: its 2 GiB fit, but with the other VM's 4 GiB
    // and a third machine of 2 GiB not made yet the node is past it: a warning; a machine of
    // 4 GiB more than the node holds: a failure.
    let three = |memory: &str| {
        format!(
            "{two}  px-c:\n    cpus: 1\n    memory: {memory}\n    disks: [{{size: 1GiB}}]\nhosts:\n  pve:\n    kind: proxmox\n    cpus: 4\n    memory: 6GiB\n    storage: 1GiB\n    overcommit: {{storage: 100}}\n"
        )
    };
    let (s, evidence, fix) = status(&three("1GiB"), "memory");
    assert_eq!(s, Status::Warn, "{evidence}");
    assert!(
        evidence.contains("1GiB for 1 machine(s) not made yet"),
        "{evidence}"
    );
    assert!(
        fix.contains("past what `hosts.pve.memory` declares"),
        "{fix}"
    );
    let (s, evidence, fix) = status(&three("3GiB"), "memory");
    assert_eq!(s, Status::Fail, "{evidence}");
    assert!(fix.contains("other VMs count too"), "{fix}");
}
