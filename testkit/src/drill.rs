//! A disaster-recovery drill on the hollow cluster tier, shared by the restore test and the
//! RTO benchmark: the machines (a control plane and a worker), the lab that backs up
//! cloudlet's state and the cluster into a directory, and the canaries — ConfigMaps written
//! before the backup, and a writer that writes its sequence number and the time every
//! second, so what it wrote last against what a restore brought back is the data-loss window
//! (RPO), and the moment it answers again ends the recovery time (RTO).
//!
//! The seed-shaped drill adds the box in front of the cluster ([`RouterNas`]): one Linux
//! machine on the segment that is the lab's router (dnsmasq + nftables) and its NAS
//! (nfs-ganesha), with cloudlet run on it ([`on_box`]) as those backends expect, and a LAN
//! client whose DHCP lease is the router's runtime state ([`write_seed_lab`] is its lab).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::hollow::HollowLab;
use crate::shell::{ok, sh};

/// The writer canary's ConfigMap (in `default`).
pub const WRITER: &str = "writer";

/// The drill's machines, booted: `cp` (10.0.20.10) and `w1` (10.0.20.11).
pub fn machines() -> HollowLab {
    HollowLab::start(
        &[
            ("cp", Ipv4Addr::new(10, 0, 20, 10)),
            ("w1", Ipv4Addr::new(10, 0, 20, 11)),
        ],
        Ipv4Addr::new(10, 0, 20, 250),
        24,
    )
}

/// Writes the drill's lab at `lab` for `machines`: one app, cloudlet's state and the cluster
/// backed up hourly into the directory `target`, the key from `CLOUDLET_BACKUP_KEY`.
pub fn write_lab(machines: &HollowLab, lab: &Path, target: &Path) {
    let apps =
        "  apps:\n    web:\n      image: nginx:1.27\n      ports: [{name: http, port: 80}]\n";
    std::fs::write(
        lab,
        format!(
            "{}backup:\n  key: {{env: CLOUDLET_BACKUP_KEY}}\n  targets: {{nas: {{dir: {}}}}}\n  state: {{target: nas, every: 1h}}\n  cluster: {{target: nas, every: 1h}}\n",
            machines.lab_yaml(&["cp"], &["w1"], apps),
            target.display()
        ),
    )
    .expect("the lab is written");
}

/// A client of the cluster `kubeconfig` (its text) names.
pub async fn client(kubeconfig: &str) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(kubeconfig).expect("a kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("a usable kubeconfig");
    kube::Client::try_from(config).expect("a client")
}

/// Writes the canary `name` holding `seq` in `default`.
pub async fn canary(client: &kube::Client, name: &str, seq: u32) {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.data = Some([("seq".to_string(), seq.to_string())].into());
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &cm)
        .await
        .expect("the canary is written");
}

/// Writes the [`WRITER`] ConfigMap's sequence number and time every second, until dropped.
pub async fn write_every_second(c: kube::Client) {
    let maps = Api::<ConfigMap>::namespaced(c, "default");
    for seq in 0u64.. {
        let now = unix_now();
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(WRITER.into());
        cm.data = Some(
            [
                ("seq".to_string(), seq.to_string()),
                ("at".to_string(), now.to_string()),
            ]
            .into(),
        );
        let _ = maps
            .patch(
                WRITER,
                &PatchParams::apply("canary").force(),
                &Patch::Apply(&cm),
            )
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The time now, in Unix seconds: what every canary writes beside its sequence number.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The sequence number and time the writer's ConfigMap holds.
pub fn written(cm: &ConfigMap) -> (u64, i64) {
    let d = cm.data.as_ref().expect("the writer's data");
    (
        d["seq"].parse().expect("a sequence number"),
        d["at"].parse().expect("a time"),
    )
}

/// A canary outside the cluster (a line in a volume's file, a row in a database): `write`
/// called with its sequence number and the time (Unix seconds) every second, on a thread of
/// its own, until stopped — what it wrote last against what a restore brought back is that
/// data's loss window.
pub struct Canary {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    last: std::sync::Arc<std::sync::Mutex<Option<(u64, i64)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Canary {
    /// Starts writing.
    pub fn start(mut write: impl FnMut(u64, i64) + Send + 'static) -> Canary {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let last = std::sync::Arc::new(std::sync::Mutex::new(None));
        let thread = std::thread::spawn({
            let (stop, last) = (stop.clone(), last.clone());
            move || {
                let mut seq = 0;
                while !stop.load(Ordering::SeqCst) {
                    let at = unix_now();
                    write(seq, at);
                    *last
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((seq, at));
                    seq += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        });
        Canary {
            stop,
            last,
            thread: Some(thread),
        }
    }

    /// Stops writing; the sequence number and time it wrote last.
    pub fn stop(mut self) -> (u64, i64) {
        self.halt();
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .expect("the canary wrote")
    }

    fn halt(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("the canary's writer");
        }
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Appends the line `SEQ TIME` to the file at `path` (one write, so a reader sees whole
/// lines): a volume canary's `write`.
pub fn append_line(path: &Path, seq: u64, at: i64) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the canary's file opens");
    f.write_all(format!("{seq} {at}\n").as_bytes())
        .expect("the canary's line is written");
}

/// The last whole `SEQ TIME` line of a volume canary's file.
pub fn last_line(text: &str) -> Option<(u64, i64)> {
    let whole = &text[..text.rfind('\n')?];
    let line = whole.rsplit('\n').next()?;
    let (seq, at) = line.split_once(' ')?;
    Some((seq.parse().ok()?, at.parse().ok()?))
}

/// The canary written after the backup, which a restore must not bring back.
pub const AFTER_THE_BACKUP: &str = "after-the-backup";

/// What a restore brought back of the canaries.
#[derive(Debug)]
pub struct ReadBack {
    /// The sequence numbers of `canary-0` up to `canary-(n-1)`, in order.
    pub seqs: Vec<u32>,
    /// Whether [`AFTER_THE_BACKUP`] is there.
    pub after_the_backup: bool,
    /// What the [`WRITER`] holds ([`written`]).
    pub writer: (u64, i64),
}

/// Reads the `n` canaries, [`AFTER_THE_BACKUP`] and the [`WRITER`] in `default`.
pub async fn read_back(c: &kube::Client, n: u32) -> ReadBack {
    let maps = Api::<ConfigMap>::namespaced(c.clone(), "default");
    let mut seqs = Vec::new();
    for i in 0..n {
        let cm = maps
            .get(&format!("canary-{i}"))
            .await
            .expect("the canary is back");
        let seq = cm
            .data
            .as_ref()
            .and_then(|d| d.get("seq"))
            .and_then(|s| s.parse().ok());
        seqs.push(seq.expect("a canary's sequence number"));
    }
    ReadBack {
        seqs,
        after_the_backup: maps
            .get_opt(AFTER_THE_BACKUP)
            .await
            .expect("the API answers")
            .is_some(),
        writer: written(&maps.get(WRITER).await.expect("the writer is back")),
    }
}

/// The LAN client's MAC address.
pub const CLIENT_MAC: &str = "52:54:00:20:00:99";

/// `cloudlet` (the binary at `bin`) run on the box `on` (in its namespace), as the Linux
/// router and NAS backends expect, with the vault key and the backup key `key`.
pub async fn on_box(
    bin: &str,
    on: &str,
    vault: &str,
    key: &str,
    args: &[&str],
) -> std::process::Output {
    tokio::process::Command::new("ip")
        .args(["netns", "exec", on, bin])
        .args(args)
        .env("CLOUDLET_VAULT_KEY", vault)
        .env("CLOUDLET_BACKUP_KEY", key)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the CLI runs")
}

/// The router-and-NAS box's directories under the test's work directory.
pub struct Paths {
    /// The router's files (`dnsmasq.conf`, `rules.nft`, ...).
    pub router: PathBuf,
    /// dnsmasq's DHCP leases.
    pub leases: PathBuf,
    /// ganesha's configuration, pid file and log; cloudlet's `cloudlet.conf` in it.
    pub nas: PathBuf,
    /// The export's directory.
    pub data: PathBuf,
    /// The backup target (a directory).
    pub target: PathBuf,
}

impl Paths {
    /// The paths under `work`.
    pub fn new(work: &Path) -> Paths {
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
pub struct RouterNas {
    /// The box's namespace.
    pub ns: String,
    ganesha: Child,
    /// The LAN client's namespace.
    pub client: String,
}

impl RouterNas {
    /// Brings the box up on `lab`'s segment.
    pub fn up(lab: &HollowLab, p: &Paths, ns: &str, client: &str) -> RouterNas {
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
        let ganesha = crate::shell::ganesha(
            ns,
            &p.nas,
            &p.nas.join("cloudlet.conf"),
            &p.nas.join("ganesha.pid"),
        );
        RouterNas {
            ns: ns.to_string(),
            ganesha,
            client: client.to_string(),
        }
    }

    /// Whether dnsmasq, as the router's files record it, runs.
    pub fn dnsmasq_runs(p: &Paths) -> bool {
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

/// The seed-shaped lab at `lab`: the hollow lab's cluster with the box as router and NAS, the app's volume on the
/// NAS's export, cloudlet's state, the router and the cluster backed up hourly.
pub fn write_seed_lab(machines: &HollowLab, lab: &Path, p: &Paths) {
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
