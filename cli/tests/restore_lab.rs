//! The seed-shaped lab rebuilt end to end on this machine's real peers: one Linux box (a
//! network namespace on the LAN segment) is the router (dnsmasq + nftables, WAN and LAN) and
//! the NAS (nfs-ganesha serving the cluster's export), as in a small office where one
//! machine does both and runs cloudlet; behind it a kubeadm cluster on hollow nodes (a
//! control plane and a worker) with an app whose volume is on the NAS. A LAN client leases an address (the router's runtime state), canaries are
//! written into the cluster and one keeps writing every second; cloudlet's state, the router
//! and the cluster are backed up; then everything is destroyed — dnsmasq, ganesha, the
//! router's and the NAS's files, the leases, every node and its disks, the namespaces, the
//! lab's state. On a reinstalled box (stock ganesha, nothing of cloudlet's) and new machines
//! at the same addresses, one `cloudlet restore` brings it all back: the lease, the router's
//! names and forwards, the NAS's export served to the nodes again, the cluster with the same
//! CA and the canaries. The timeline, each phase's time and the data-loss window are printed.
//!
//! The volume's files are not part of this drill: on hollow nodes no pod runs, so neither
//! the backup CronJob nor the restore Job can (restore_volumes proves that path with stock
//! restic on a real API server).
#![allow(missing_docs, clippy::disallowed_methods, clippy::print_stderr)] // the restore's timeline is printed (seen with --no-capture)

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use cloudlet_testkit::drill;
use cloudlet_testkit::hollow::HollowLab;
use cloudlet_testkit::shell::{nslookup, ok, sh, tool, udhcpc};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume};
use kube::api::Api;

mod common;
use common::client;

const KEY: &str = "lab-restore-backup-key";

async fn cloudlet(on: &str, vault: &str, args: &[&str]) -> Output {
    drill::on_box(common::BIN, on, vault, KEY, args).await
}

fn text(o: &Output) -> String {
    common::text(o, &[KEY])
}

/// What `nfs-ls` lists at `path` on the NAS, asked from the node `node`.
fn nfs_ls(machines: &HollowLab, node: &str, path: &Path) -> Result<String, String> {
    machines.exec(
        node,
        &[
            "timeout",
            "20",
            "nfs-ls",
            &format!("nfs://10.0.20.5{}?version=4", path.display()),
        ],
    )
}

#[test]
fn the_seed_shaped_lab_is_rebuilt_whole_by_one_restore() {
    assert!(
        tool("dnsmasq") && tool("nft") && tool("busybox") && tool("ganesha.nfsd") && tool("nfs-ls"),
        ".ci/run installs dnsmasq-base, nftables, busybox, nfs-ganesha(-vfs) and libnfs-utils"
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let p = drill::Paths::new(w);
    let lab = w.join("lab.yaml");
    let state = w.join(".cloudlet");
    let vault = common::vault_key();
    let l = lab.display().to_string();
    let (box_ns, client_ns) = (
        format!("rlb{}", std::process::id() % 100_000),
        format!("rlc{}", std::process::id() % 100_000),
    );

    // Before: the box and the machines up, the lab applied, a LAN client leased an address,
    // the canaries written, backed up; one more canary after the backup.
    let before = drill::machines();
    let box_before = drill::RouterNas::up(&before, &p, &box_ns, &client_ns);
    drill::write_seed_lab(&before, &lab, &p);
    before.report_installs(&state);
    let applied = before.block_on({
        let (vault, l, on) = (vault.clone(), l.clone(), box_ns.clone());
        async move {
            let apply = cloudlet(&on, &vault, &["apply", &l, "--yes"]).await;
            let kc = cloudlet(&on, &vault, &["kubeconfig", &l, "--valid", "2h"]).await;
            (apply, kc)
        }
    });
    let (apply, kc) = applied;
    assert!(
        apply.status.success(),
        "{}\n{}",
        text(&apply),
        before.tail("cp", 30)
    );
    assert!(kc.status.success(), "{}", text(&kc));
    let kubeconfig = String::from_utf8(kc.stdout).unwrap();
    assert!(drill::RouterNas::dnsmasq_runs(&p), "the router runs");
    let volume = std::fs::read_dir(&p.data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert_eq!(
        volume.len(),
        1,
        "the app's volume on the export: {volume:?}"
    );
    let volume = volume[0].clone();
    let listed = nfs_ls(&before, "cp", &p.data).unwrap();
    assert!(listed.contains(&volume), "{listed}");
    let dynamic = udhcpc(&client_ns, w, None);
    assert!(dynamic.starts_with("10.0.20.1"), "{dynamic}");

    let (last_seq, last_at) = before.block_on({
        let (vault, l, kc, on) = (vault.clone(), l.clone(), kubeconfig.clone(), box_ns.clone());
        async move {
            let c = client(&kc).await;
            for i in 0..10 {
                drill::canary(&c, &format!("canary-{i}"), i).await;
            }
            let writer = tokio::spawn(drill::write_every_second(c.clone()));
            tokio::time::sleep(Duration::from_secs(3)).await;
            let run = cloudlet(&on, &vault, &["backup", "run", &l]).await;
            assert!(run.status.success(), "{}", text(&run));
            drill::canary(&c, drill::AFTER_THE_BACKUP, 99).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            writer.abort();
            let last = Api::<ConfigMap>::namespaced(c, "default")
                .get(drill::WRITER)
                .await
                .unwrap();
            drill::written(&last)
        }
    });

    // The disaster: the box (ganesha, dnsmasq, the router's table and files, the leases, the
    // NAS's files and data), every machine and everything on it, and the lab's state.
    let dnsmasq = std::fs::read_to_string(p.router.join("dnsmasq.pid")).unwrap();
    ok(&format!("kill -9 {}", dnsmasq.trim()));
    drop(box_before);
    drop(before);
    std::fs::remove_dir_all(w.join("box")).unwrap();
    std::fs::remove_dir_all(&state).unwrap();

    // A reinstalled box and new machines at the same addresses; the same lab files (only the
    // install user's key file is the new machines').
    let after = drill::machines();
    let box_after = drill::RouterNas::up(&after, &p, &box_ns, &client_ns);
    drill::write_seed_lab(&after, &lab, &p);
    after.report_installs(&state);
    let began = Instant::now();
    let (restore, answering) = after.block_on({
        let (vault, l, kc, on) = (vault.clone(), l.clone(), kubeconfig.clone(), box_ns.clone());
        async move {
            let restore = cloudlet(&on, &vault, &["restore", &l, "--from", "offsite"]).await;
            if !restore.status.success() {
                return (restore, None);
            }
            // RTO: from the restore's start until the canary answers again.
            let maps = Api::<ConfigMap>::namespaced(client(&kc).await, "default");
            let t = Instant::now();
            while maps.get_opt(drill::WRITER).await.ok().flatten().is_none() {
                if t.elapsed() > Duration::from_secs(120) {
                    return (restore, None);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (restore, Some(began.elapsed()))
        }
    });
    let out = text(&restore);
    eprintln!("{out}");
    assert!(
        restore.status.success(),
        "{out}\n{}\n{}",
        after.tail("cp", 30),
        after.tail("w1", 10)
    );
    let answering = answering.expect("the canary answers within 2 minutes of the restore");
    for line in [
        "restore: identity done in ",
        "restore: router done in ",
        "1 DHCP lease(s); dnsmasq and the nftables table running",
        "restore: infrastructure done in ",
        "restore: cluster data done in ",
        "restore: reconcile done in ",
        "restore: verify done in ",
        "Timeline:",
        "Data-loss window",
    ] {
        assert!(out.contains(line), "`{line}` not in:\n{out}");
    }
    for class in ["state", "router", "cluster"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("{class} "))
                    && l.contains(" snapshot ")),
            "no data-loss window for {class}:\n{out}"
        );
    }

    // The router: running, the client's lease and the lab's names and forward back.
    assert!(drill::RouterNas::dnsmasq_runs(&p));
    let leases = std::fs::read_to_string(&p.leases).unwrap();
    assert!(
        leases.contains(&format!("{} {dynamic}", drill::CLIENT_MAC)),
        "{leases}"
    );
    // The client (a new namespace, no address) asks again and gets its address back.
    assert_eq!(udhcpc(&client_ns, w, None), dynamic, "the lease came back");
    let answer = nslookup(&client_ns, "cp.hollow.lan", "10.0.20.1");
    assert!(answer.contains("10.0.20.10"), "{answer}");
    let table = String::from_utf8_lossy(
        &sh(&format!(
            "ip netns exec {box_ns} nft list table inet cloudlet"
        ))
        .stdout,
    )
    .into_owned();
    assert!(table.contains("dnat ip to 10.0.20.10:443"), "{table}");

    // The NAS: the export served to the cluster's nodes again, the volume's directory in it.
    let listed = nfs_ls(&after, "w1", &p.data).unwrap();
    assert!(listed.contains(&volume), "{listed}");

    // The cluster: the kubeconfig issued before the disaster works (same CA), the canaries
    // written before the backup are back, the one after it is not, the volume's PV names the
    // NAS.
    let (back, pv_server) = after.block_on(async move {
        let c = client(&kubeconfig).await;
        let back = drill::read_back(&c, 10).await;
        let pvs = Api::<PersistentVolume>::all(c)
            .list(&Default::default())
            .await
            .unwrap();
        let server: Vec<String> = pvs
            .items
            .iter()
            .filter_map(|pv| pv.spec.as_ref()?.nfs.as_ref().map(|n| n.server.clone()))
            .collect();
        (back, server)
    });
    assert_eq!(back.seqs, (0..10).collect::<Vec<_>>());
    assert!(
        !back.after_the_backup,
        "written after the backup, so not restored"
    );
    assert_eq!(pv_server, ["10.0.20.5"], "the app's volume is on the NAS");
    let (restored_seq, restored_at) = back.writer;
    assert!(restored_seq <= last_seq, "{restored_seq} > {last_seq}");
    let rpo = last_at - restored_at;
    assert!((0..=3600).contains(&rpo), "RPO {rpo}s");
    eprintln!(
        "canary: last written #{last_seq}, restored #{restored_seq}: RPO {rpo}s; router lease and NAS export: RPO 0; RTO {:.1}s (restore start to the canary answering)",
        answering.as_secs_f64()
    );
    let dnsmasq = std::fs::read_to_string(p.router.join("dnsmasq.pid")).unwrap();
    let _ = sh(&format!("kill -9 {}", dnsmasq.trim()));
    drop(box_after);
}
