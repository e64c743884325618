//! The seed-shaped lab rebuilt end to end on this machine's real peers: one Linux box (a
//! network namespace on the LAN segment) is the router (dnsmasq + nftables, WAN and LAN) and
//! the NAS (nfs-ganesha serving the cluster's export), as in a small office where one
//! machine does both and runs cloudlet; behind it a
//! kubeadm cluster on hollow nodes (a control plane and a worker) with an app whose volume
//! is on the NAS. A LAN client leases an address (the router's runtime state), canaries are
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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cloudlet_testkit::drill;
use cloudlet_testkit::hollow::HollowLab;
use cloudlet_testkit::shell::{nslookup, ok, sh, tool, udhcpc};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume};
use kube::api::Api;

mod common;
use common::client;

const KEY: &str = "lab-restore-backup-key";
/// The LAN client's MAC address.
const CLIENT_MAC: &str = "52:54:00:20:00:99";

/// cloudlet run on the box (in its namespace), as the Linux router and NAS backends expect.
async fn cloudlet(on: &str, vault: &str, args: &[&str]) -> Output {
    tokio::process::Command::new("ip")
        .args(["netns", "exec", on, common::BIN])
        .args(args)
        .env("CLOUDLET_VAULT_KEY", vault)
        .env("CLOUDLET_BACKUP_KEY", KEY)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the CLI runs")
}

fn text(o: &Output) -> String {
    common::text(o, &[KEY])
}

/// The router-and-NAS box's directories under the test's work directory.
struct Paths {
    router: PathBuf,
    leases: PathBuf,
    nas: PathBuf,
    data: PathBuf,
    target: PathBuf,
}

impl Paths {
    fn new(work: &Path) -> Paths {
        Paths {
            router: work.join("box/router"),
            leases: work.join("box/leases"),
            nas: work.join("box/ganesha"),
            data: work.join("box/data"),
            target: work.join("backups"),
        }
    }
}

/// The box: a machine of its own (namespace `ns`) on the hollow lab's segment, its LAN port
/// `k8s` holding the router's address (10.0.20.1) and the NAS's (10.0.20.5), a WAN port
/// (192.168.77.2), and nfs-ganesha as a fresh install runs it (its main configuration
/// including cloudlet's file, still empty), listening; the LAN client's namespace `client`
/// plugged into the segment too.
struct RouterNas {
    ns: String,
    ganesha: Child,
    client: String,
}

impl RouterNas {
    fn up(lab: &HollowLab, p: &Paths, ns: &str, client: &str) -> RouterNas {
        let seg = lab.segment();
        for n in [ns, client] {
            let _ = sh(&format!("ip netns del {n}"));
            ok(&format!("ip netns add {n} && ip -n {n} link set lo up"));
        }
        ok(&format!(
            "ip link add b0 netns {seg} type veth peer name k8s netns {ns} && \
             ip -n {seg} link set b0 master k8s && ip -n {seg} link set b0 up && \
             ip -n {ns} addr add 10.0.20.1/24 dev k8s && ip -n {ns} addr add 10.0.20.5/24 dev k8s && \
             ip -n {ns} link set k8s up && \
             ip -n {ns} link add wan type veth peer name wanp && ip -n {ns} link set wanp up && \
             ip -n {ns} addr add 192.168.77.2/24 dev wan && ip -n {ns} link set wan up"
        ));
        ok(&format!(
            "ip link add c0 netns {seg} type veth peer name eth0 netns {client} && \
             ip -n {seg} link set c0 master k8s && ip -n {seg} link set c0 up && \
             ip -n {client} link set eth0 address {CLIENT_MAC} && ip -n {client} link set eth0 up"
        ));
        std::fs::create_dir_all(&p.nas).unwrap();
        std::fs::write(p.nas.join("cloudlet.conf"), "").unwrap();
        let main = p.nas.join("ganesha.conf");
        std::fs::write(
            &main,
            format!(
                "NFS_CORE_PARAM {{ Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; }}\n\
                 NFSV4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = \"{}\"; }}\n\
                 NFS_KRB5 {{ Active_krb5 = false; }}\n\
                 %include \"{}\"\n",
                p.nas.join("recovery").display(),
                p.nas.join("cloudlet.conf").display()
            ),
        )
        .unwrap();
        let ganesha = Command::new("ip")
            .args(["netns", "exec", ns, "ganesha.nfsd", "-F", "-f"])
            .arg(&main)
            .arg("-p")
            .arg(p.nas.join("ganesha.pid"))
            .arg("-L")
            .arg(p.nas.join("ganesha.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ganesha starts");
        let t = Instant::now();
        while !sh(&format!("ip netns exec {ns} ss -ltn | grep -q ':2049 '"))
            .status
            .success()
        {
            assert!(t.elapsed() < Duration::from_secs(20), "ganesha listens");
            std::thread::sleep(Duration::from_millis(100));
        }
        RouterNas {
            ns: ns.to_string(),
            ganesha,
            client: client.to_string(),
        }
    }

    /// Whether dnsmasq, as the router's files record it, runs.
    fn dnsmasq_runs(p: &Paths) -> bool {
        std::fs::read_to_string(p.router.join("dnsmasq.pid"))
            .ok()
            .is_some_and(|pid| sh(&format!("kill -0 {}", pid.trim())).status.success())
    }
}

impl Drop for RouterNas {
    /// The box dies: ganesha, dnsmasq and all else it runs, its namespace, and the LAN
    /// client's.
    fn drop(&mut self) {
        let _ = self.ganesha.kill();
        let _ = self.ganesha.wait();
        for n in [&self.ns, &self.client] {
            let _ = sh(&format!(
                "ip netns pids {n} | xargs -r kill -9; ip netns del {n}"
            ));
        }
    }
}

/// The lab: the hollow lab's cluster with the box as router and NAS, the app's volume on the
/// NAS's export, cloudlet's state, the router and the cluster backed up hourly.
fn write_lab(machines: &HollowLab, lab: &Path, p: &Paths) {
    let apps = "  apps:\n    web:\n      image: nginx:1.27\n      ports: [{name: http, port: 80}]\n      volumes: [{name: content, export: data, mount: /usr/share/nginx/html, size: 1GiB}]\n";
    let text = machines
        .lab_yaml(&["cp"], &["w1"], apps)
        .replacen(
            "  k8s: {cidr: 10.0.20.0/24, gateway: 10.0.20.1}\n",
            "  wan: {cidr: 192.168.77.0/24, gateway: 192.168.77.1, wan: true}\n  k8s:\n    cidr: 10.0.20.0/24\n    gateway: 10.0.20.1\n    dhcp: {ranges: [10.0.20.100-10.0.20.150]}\n    dns: [10.0.20.1]\n",
            1,
        )
        .replacen(
            "machines:\n",
            "machines:\n  gw: {cpus: 1, memory: 1GiB, nics: [{network: wan, ip: 192.168.77.2}, {network: k8s, ip: 10.0.20.1}]}\n",
            1,
        )
        .replacen(
            "targets:\n",
            &format!(
                "targets:\n  router: {{kind: linux, dir: {}, leases: {}}}\n  storage: {{kind: ganesha, dir: {}, pid_file: {}}}\n",
                p.router.display(),
                p.leases.display(),
                p.nas.display(),
                p.nas.join("ganesha.pid").display()
            ),
            1,
        );
    std::fs::write(
        lab,
        format!(
            "{text}router:\n  kind: linux\n  machine: gw\n  forwards:\n    - {{port: 443, to: 10.0.20.10}}\n\
             storage:\n  kind: ganesha\n  address: 10.0.20.5\n  exports:\n    data: {{path: {data}, allow: [cp, w1]}}\n\
             backup:\n  key: {{env: CLOUDLET_BACKUP_KEY}}\n  targets: {{offsite: {{dir: {target}}}}}\n  state: {{target: offsite, every: 1h}}\n  router: {{target: offsite, every: 1h}}\n  cluster: {{target: offsite, every: 1h}}\n",
            data = p.data.display(),
            target = p.target.display(),
        ),
    )
    .unwrap();
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
    let p = Paths::new(w);
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
    let box_before = RouterNas::up(&before, &p, &box_ns, &client_ns);
    write_lab(&before, &lab, &p);
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
    assert!(RouterNas::dnsmasq_runs(&p), "the router runs");
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
            drill::canary(&c, "after-the-backup", 99).await;
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
    let box_after = RouterNas::up(&after, &p, &box_ns, &client_ns);
    write_lab(&after, &lab, &p);
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
    assert!(RouterNas::dnsmasq_runs(&p));
    let leases = std::fs::read_to_string(&p.leases).unwrap();
    assert!(
        leases.contains(&format!("{CLIENT_MAC} {dynamic}")),
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
    let (seqs, late, pv_server, restored) = after.block_on(async move {
        let c = client(&kubeconfig).await;
        let maps = Api::<ConfigMap>::namespaced(c.clone(), "default");
        let mut seqs = Vec::new();
        for i in 0..10 {
            let cm = maps.get(&format!("canary-{i}")).await.unwrap();
            seqs.push(cm.data.unwrap()["seq"].parse::<u32>().unwrap());
        }
        let late = maps.get_opt("after-the-backup").await.unwrap();
        let restored = drill::written(&maps.get(drill::WRITER).await.unwrap());
        let pvs = Api::<PersistentVolume>::all(c)
            .list(&Default::default())
            .await
            .unwrap();
        let server: Vec<String> = pvs
            .items
            .iter()
            .filter_map(|pv| pv.spec.as_ref()?.nfs.as_ref().map(|n| n.server.clone()))
            .collect();
        (seqs, late, server, restored)
    });
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    assert!(late.is_none(), "written after the backup, so not restored");
    assert_eq!(pv_server, ["10.0.20.5"], "the app's volume is on the NAS");
    let (restored_seq, restored_at) = restored;
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
