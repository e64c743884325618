//! The `cloudlet` binary with the hypervisor targets the tests can run:
//! - vcsim (govmomi's vCenter simulator): an apply killed between a VM's create and its
//!   power-on resumes with the same VM, never a second one. vcsim delays its answer to
//!   ReconfigVM_Task (the boot order, set between the create and the power-on) so the kill
//!   lands in that window.
//! - fakepve (PyPI's Proxmox VE simulator): an API token from the environment, a VM created
//!   and started, then a plan with no changes.
#![allow(clippy::disallowed_methods)]

use cloudlet_testkit::hypervisor_peers as peers;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloudlet_hypervisor::vsphere::{Vsphere, VsphereOptions};

const CREDS: &str = "administrator@vsphere.local:cloudlet-test";

fn lab(dir: &Path, sim: &peers::Vcsim) {
    std::fs::write(
        dir.join("lab.yaml"),
        format!(
            "name: vc\nsite: {{domain: vc.lan}}\nnetworks:\n  lan: {{cidr: 10.83.0.0/24, gateway: 10.83.0.1, portgroup: vc-lan}}\nmachines:\n  vc-a:\n    cpus: 1\n    memory: 512MiB\n    disks: [{{size: 1GiB}}]\n    nics: [{{network: lan, mac: \"00:50:56:83:00:10\"}}]\n    boot: [disk]\ntargets:\n  hypervisor:\n    kind: vsphere\n    endpoint: {}\n    credentials: {{env: CLOUDLET_TEST_VSPHERE}}\n    ca: {}\n",
            sim.endpoint,
            sim.cert.display()
        ),
    )
    .unwrap();
}

fn cloudlet(state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cloudlet"));
    c.arg("--state-dir")
        .arg(state)
        .args(args)
        .env("CLOUDLET_TEST_VSPHERE", CREDS)
        .stdin(Stdio::null());
    c
}

/// (name, power state) of every VM called `vc-a`.
async fn vms(p: &Vsphere) -> Vec<String> {
    let vim = p.session().await.unwrap();
    vim.retrieve("VirtualMachine", &["name", "runtime.powerState"])
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, p)| p["name"].text == "vc-a")
        .map(|(_, p)| p["runtime.powerState"].text.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_create_and_power_on_then_resume_without_a_second_vm() {
    let sim = peers::Vcsim::start(&["-method-delay", "ReconfigVM_Task:3000"]);
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    lab(dir.path(), &sim);
    let reader = Vsphere::new(
        "reader",
        VsphereOptions {
            endpoint: sim.endpoint.clone(),
            user: "reader".into(),
            password: "x".into(),
            tls: cloudlet_transport::tls::client_config(Some(&sim.cert)).unwrap(),
            datacenter: None,
            datastore: None,
            pool: None,
            switch: None,
            concurrency: 1,
            keepalive: Duration::from_secs(600),
        },
    );
    let l = dir.path().to_str().unwrap();
    let mut child = cloudlet(state.path(), &["apply", l, "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while vms(&reader).await.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the VM was never created"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "apply ended before the VM appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        vms(&reader).await,
        vec!["poweredOff"],
        "killed before power-on"
    );

    let o = cloudlet(state.path(), &["apply", l, "--yes"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    assert!(text.contains("was interrupted"), "{text}");
    assert_eq!(
        vms(&reader).await,
        vec!["poweredOn"],
        "the same VM, now on: {text}"
    );

    let o = cloudlet(state.path(), &["plan", l, "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn proxmox_target_with_an_api_token_from_the_environment() {
    let token = "root@pam!cloudlet";
    let pve = peers::FakePve::start(&serde_json::json!({"guests": []}), token, "s3cret", 0);
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lab.yaml"),
        format!(
            "name: pc\nsite: {{domain: pc.lan}}\nnetworks:\n  lan: {{cidr: 10.86.0.0/24, gateway: 10.86.0.1, portgroup: vmbr0}}\nmachines:\n  pc-a:\n    cpus: 1\n    memory: 512MiB\n    disks: [{{size: 4GiB}}]\n    nics: [{{network: lan}}]\nhosts:\n  pve:\n    kind: proxmox\n    cpus: 4\n    memory: 16GiB\n    storage: 50GiB\ntargets:\n  hypervisor:\n    kind: proxmox\n    endpoint: {}\n    credentials: {{env: CLOUDLET_TEST_PVE}}\n    ca: {}\n",
            pve.endpoint,
            pve.cert.display()
        ),
    )
    .unwrap();
    let l = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let o = cloudlet(state.path(), args)
            .env("CLOUDLET_TEST_PVE", format!("{token}=s3cret"))
            .output()
            .unwrap();
        (
            o.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let (code, out) = run(&["apply", l, "--yes"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("created hypervisor/vm/pc-a"), "{out}");
    let (code, out) = run(&["plan", l, "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("s3cret"), "the secret never shows: {out}");

    // doctor asks the node for its capacity: the lab says 16 GiB, the node has 8 (a warning
    // naming the real number), the vCPUs and the disk fit.
    let o = cloudlet(state.path(), &["doctor", l, "--output", "json"])
        .env("CLOUDLET_TEST_PVE", format!("{token}=s3cret"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let capacity: std::collections::BTreeMap<String, (String, String)> = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "hypervisor.capacity")
        .map(|f| {
            (
                f["subject"].as_str().unwrap().to_string(),
                (
                    f["status"].as_str().unwrap().to_string(),
                    f["fix"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(capacity["pve vCPUs"].0, "ok", "{capacity:?}");
    assert_eq!(capacity["pve disk"].0, "ok", "{capacity:?}");
    assert_eq!(capacity["pve memory"].0, "warn", "{capacity:?}");
    assert!(
        capacity["pve memory"]
            .1
            .contains("set `hosts.pve.memory` to 8GiB or less"),
        "{capacity:?}"
    );
    assert!(
        capacity.keys().any(|k| k.starts_with("datastore ")),
        "{capacity:?}"
    );
}
