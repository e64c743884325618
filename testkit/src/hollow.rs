//! The hollow cluster tier: machines that are installed and reachable over SSH but run no
//! container runtime, so the bootstrap runs on real kubeadm, etcd and control-plane binaries.
//!
//! Every node is a network namespace on a segment namespace's bridge, with its own mount
//! namespace (overlays over `/etc` and `/var/lib`, so `/etc/kubernetes`, `/var/lib/kubelet`
//! and `/var/lib/etcd` are its own) and its own sshd (host key made here, the install user's
//! key authorized). What systemd and the kubelet do on a real node is done by a supervisor in
//! the test process, the way a kubelet would: the static-pod manifests kubeadm writes run as
//! processes (each container's command, from the peers' directory), kubemark's hollow kubelet
//! (a real kubelet's TLS bootstrap and node status with a fake runtime) runs once kubeadm has
//! written its configuration, and the kubelet's health answers on `127.0.0.1:10248`.
//!
//! The test's own work runs on [`HollowLab::block_on`], whose threads live in the segment
//! namespace beside an admin address, so SSH and the API client reach the nodes as they would
//! on the lab's LAN.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use crate::apiserver::peers;

fn sh(cmd: &str) {
    let st = Command::new("sh")
        .args(["-c", cmd])
        .status()
        .expect("sh runs");
    assert!(st.success(), "`{cmd}` failed");
}

/// Runs `f` on a thread inside the network namespace at `ns`.
fn in_netns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_path_buf();
    std::thread::spawn(move || {
        enter_netns(&ns);
        f()
    })
    .join()
    .expect("the namespace thread")
}

fn enter_netns(ns: &Path) {
    let f = std::fs::File::open(ns).expect("the namespace exists");
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// A new ed25519 key pair at `path` (and `path.pub`), no passphrase; its public key as
/// `TYPE BASE64`.
pub fn ssh_keygen(path: &Path) -> String {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "hollow", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (openssh-client)");
    assert!(st.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// What runs on one node: its processes by name (static pods, `kubelet`).
#[derive(Default)]
struct Running {
    /// Manifest file name → (its text, the process).
    pods: BTreeMap<String, (String, Child)>,
    kubelet: Option<Child>,
}

impl Running {
    fn stop_all(&mut self) {
        for (_, (_, mut c)) in std::mem::take(&mut self.pods) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut c) = self.kubelet.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Node {
    ip: Ipv4Addr,
    netns: String,
    root: PathBuf,
    host_key: String,
    sshd: Child,
    running: Arc<Mutex<Running>>,
    stop: Arc<AtomicBool>,
    supervisor: Option<std::thread::JoinHandle<()>>,
    health: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.supervisor.take() {
            let _ = t.join();
        }
        if let Some(t) = self.health.take() {
            let _ = t.join();
        }
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stop_all();
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
        // What its SSH sessions left running (a kubeadm in flight).
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!("ip netns pids {} | xargs -r kill -9", self.netns),
            ])
            .status();
    }
}

/// A segment of hollow nodes; everything is stopped and removed on drop.
pub struct HollowLab {
    dir: TempDir,
    prefix: String,
    seg: String,
    admin: Ipv4Addr,
    nodes: BTreeMap<String, Node>,
    /// The install user's private key (authorized on every node, as the install put it).
    pub key: PathBuf,
    /// `known_hosts` lines for every node's current host key (what the install callbacks
    /// reported).
    pub known_hosts: PathBuf,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for HollowLab {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            n.halt();
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        for n in self.nodes.values() {
            let _ = Command::new("ip").args(["netns", "del", &n.netns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.seg])
            .status();
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl HollowLab {
    /// Starts `nodes` (name, address) on one segment whose prefix is `prefix_len` long;
    /// the test's work runs from `admin` on that segment.
    pub fn start(nodes: &[(&str, Ipv4Addr)], admin: Ipv4Addr, prefix_len: u8) -> HollowLab {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!(
            "hl{}x{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let seg = format!("{prefix}s");
        let _ = Command::new("ip")
            .args(["netns", "del", &seg])
            .stderr(Stdio::null())
            .status();
        sh(&format!(
            "ip netns add {seg} && ip -n {seg} link set lo up && \
             ip -n {seg} link add k8s type bridge && ip -n {seg} link set k8s up && \
             ip -n {seg} addr add {admin}/{prefix_len} dev k8s"
        ));
        let key = dir.path().join("install-user");
        ssh_keygen(&key);
        let seg_ns = PathBuf::from(format!("/run/netns/{seg}"));
        let enter = seg_ns.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || enter_netns(&enter))
            .build()
            .unwrap();
        let mut lab = HollowLab {
            known_hosts: dir.path().join("known_hosts"),
            dir,
            prefix,
            seg,
            admin,
            nodes: BTreeMap::new(),
            key,
            rt: Some(rt),
        };
        for (i, (name, ip)) in nodes.iter().enumerate() {
            let netns = format!("{}n{i}", lab.prefix);
            let _ = Command::new("ip")
                .args(["netns", "del", &netns])
                .stderr(Stdio::null())
                .status();
            sh(&format!(
                "ip netns add {netns} && ip -n {netns} link set lo up && \
                 ip link add v{i} netns {seg} type veth peer name eth0 netns {netns} && \
                 ip -n {seg} link set v{i} master k8s && ip -n {seg} link set v{i} up && \
                 ip -n {netns} addr add {ip}/{prefix_len} dev eth0 && ip -n {netns} link set eth0 up",
                seg = lab.seg,
            ));
            let node = lab.boot(name, *ip, netns);
            lab.nodes.insert((*name).to_string(), node);
        }
        lab.write_known_hosts();
        lab
    }

    /// The segment's network namespace, whose bridge `k8s` (named after the lab's network, as
    /// a Linux router's interface is) the nodes and the admin address are on.
    pub fn segment(&self) -> &str {
        &self.seg
    }

    /// The admin address the test's work comes from.
    pub fn admin(&self) -> Ipv4Addr {
        self.admin
    }

    /// Runs `f` to completion on threads inside the segment namespace.
    pub fn block_on<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.rt.as_ref().expect("the runtime");
        rt.block_on(async { rt.spawn(f).await.expect("the test's task") })
    }

    /// A node's log of `what` (`kubelet`, `kube-apiserver`, `etcd` ...), for failure messages.
    pub fn log(&self, node: &str, what: &str) -> String {
        let n = &self.nodes[node];
        std::fs::read_to_string(n.root.join("logs").join(format!("{what}.log"))).unwrap_or_default()
    }

    /// The last `lines` lines of every log of `node`.
    pub fn tail(&self, node: &str, lines: usize) -> String {
        let n = &self.nodes[node];
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(n.root.join("logs")) {
            for e in rd.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                out.push_str(&format!("== {node} {}\n", e.file_name().to_string_lossy()));
                for l in &all[all.len().saturating_sub(lines)..] {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The directory of everything `node` wrote under `/etc` (its overlay's upper layer).
    pub fn etc(&self, node: &str) -> PathBuf {
        self.nodes[node].root.join("etc")
    }

    /// The directory of everything `node` wrote under `/var/lib`.
    pub fn var_lib(&self, node: &str) -> PathBuf {
        self.nodes[node].root.join("varlib")
    }

    /// Reinstalls `node`: everything stops, its disk is wiped, it comes back with a new host
    /// key (written to [`HollowLab::known_hosts`], as its install callback reports it).
    pub fn reinstall(&mut self, node: &str) {
        let mut old = self.nodes.remove(node).expect("a node of the lab");
        old.halt();
        let _ = std::fs::remove_dir_all(&old.root);
        let fresh = self.boot(node, old.ip, old.netns.clone());
        self.nodes.insert(node.to_string(), fresh);
        self.write_known_hosts();
    }

    /// A lab file (`name: hollow`) whose cluster cloudlet makes on these nodes: the first of
    /// `control_planes` inits, the rest join; `cluster_extra` is more of the `cluster:` block
    /// (indented two spaces: apps). The target reaches the nodes with [`HollowLab::key`], and
    /// verifies them by the host keys their installs reported ([`HollowLab::report_installs`]);
    /// kubeadm's preflight errors only warn (no container runtime or systemd here). Calico is
    /// taken as installed unless `cluster_extra` has a `platform:` block.
    pub fn lab_yaml(
        &self,
        control_planes: &[&str],
        workers: &[&str],
        cluster_extra: &str,
    ) -> String {
        let mut machines = String::new();
        for (name, n) in &self.nodes {
            machines.push_str(&format!(
                "  {name}: {{cpus: 2, memory: 4GiB, nics: [{{network: k8s, ip: {}}}]}}\n",
                n.ip
            ));
        }
        // The pod network is the platform's (tests that install it say so in `cluster_extra`).
        let platform = if cluster_extra.contains("  platform:") {
            ""
        } else {
            "  platform: {calico: {external: true}}\n"
        };
        format!(
            "name: hollow
site: {{domain: hollow.lan, timezone: UTC}}
networks:
  k8s: {{cidr: 10.0.20.0/24, gateway: 10.0.20.1}}
machines:
{machines}cluster:
  control_plane: [{cps}]
  workers: [{ws}]
  kubernetes: {{version: v1.36.3}}
{platform}{cluster_extra}targets:
  cluster:
    kind: kubeadm
    credentials: {{file: {key}}}
    ignore_preflight_errors: all
",
            cps = control_planes.join(", "),
            ws = workers.join(", "),
            key = self.key.display(),
        )
    }

    /// Records every node's install in the lab's install state under `state` (`STATE/pxe`), as
    /// the boot service does when an install calls back: with the host key it reported, which
    /// is what cloudlet then verifies the node by.
    pub fn report_installs(&self, state: &Path) {
        use cloudlet_pxe::install::{BootAnswer, Installs, Windows, parse_host_key};
        let mut installs = Installs::open(&state.join("pxe"), Windows::default()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for (i, (name, n)) in self.nodes.iter().enumerate() {
            let ip = std::net::IpAddr::V4(n.ip);
            installs
                .discovered(
                    name,
                    &format!("52:54:00:77:{:02x}:{:02x}", i / 256, i % 256),
                    now,
                )
                .unwrap();
            let BootAnswer::Install { token } = installs.boot(name, ip, None, now + 1).unwrap()
            else {
                panic!("{name} installs");
            };
            installs.config_fetched(name, &token, ip, now + 2).unwrap();
            let key = parse_host_key(&n.host_key.replace(' ', ":"));
            assert!(key.is_some(), "{}", n.host_key);
            installs
                .report(name, &token, ip, true, None, key, now + 3)
                .unwrap();
        }
    }

    /// Adds `ip` to `node`'s interface (a VIP the lab's VIP announcer would hold).
    pub fn add_address(&self, node: &str, ip: Ipv4Addr) {
        let n = &self.nodes[node];
        sh(&format!("ip -n {} addr add {ip}/32 dev eth0", n.netns));
    }

    /// Runs `argv` inside `node` (its network and mount namespaces); its standard output, or
    /// what it printed when it failed.
    pub fn exec(&self, node: &str, argv: &[&str]) -> Result<String, String> {
        let n = &self.nodes[node];
        let o = Command::new("nsenter")
            .args([
                "--target",
                &n.sshd.id().to_string(),
                "--net",
                "--mount",
                "--",
            ])
            .args(argv)
            .output()
            .expect("nsenter runs");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        if o.status.success() {
            Ok(out)
        } else {
            Err(format!("{out}{}", String::from_utf8_lossy(&o.stderr)))
        }
    }

    /// Stops `node` for good (a machine that is down).
    pub fn power_off(&mut self, node: &str) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.halt();
        }
    }

    fn write_known_hosts(&self) {
        let text: String = self
            .nodes
            .values()
            .map(|n| format!("{} {}\n", n.ip, n.host_key))
            .collect();
        std::fs::write(&self.known_hosts, text).unwrap();
    }

    fn boot(&self, name: &str, ip: Ipv4Addr, netns: String) -> Node {
        let root = self.dir.path().join("nodes").join(name);
        for d in ["etc", "etc.work", "varlib", "varlib.work", "logs"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let host_key = ssh_keygen(&root.join("ssh_host_ed25519_key"));
        // The kubelet's unit, as its package installs it (systemctl enables it offline; the
        // supervisor below is what runs it).
        let units = root.join("etc/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        std::fs::write(
            units.join("kubelet.service"),
            "[Unit]\nDescription=kubelet (hollow)\n[Service]\nExecStart=/usr/bin/kubelet\n[Install]\nWantedBy=multi-user.target\n",
        )
        .unwrap();
        std::fs::write(
            root.join("authorized_keys"),
            std::fs::read_to_string(self.key.with_extension("pub")).unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let r = root.display();
        // What the install's node preparation put on the machine: kubeadm and kubectl, and
        // containerd's `ctr` (here a stand-in whose `run IMAGE ID CMD ARGS` runs CMD from the
        // peers' directory, the way the static pods run).
        let bin = peers();
        let ctr = root.join("ctr");
        std::fs::write(
            &ctr,
            format!(
                "#!/bin/sh\n\
                 # ctr stand-in: `ctr [-n NS] run [--flags] [--mount SPEC] IMAGE ID CMD ARGS...`\n\
                 while [ $# -gt 0 ]; do case \"$1\" in run) shift; break;; *) shift;; esac; done\n\
                 while [ $# -gt 0 ]; do case \"$1\" in --mount) shift 2;; --*) shift;; *) break;; esac; done\n\
                 shift 2\n\
                 cmd=$1; shift\n\
                 exec {}/\"$cmd\" \"$@\"\n",
                bin.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&ctr, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let ctr = ctr.display();
        let bin = bin.display();
        let script = format!(
            "mount -t overlay overlay -o lowerdir=/etc,upperdir={r}/etc,workdir={r}/etc.work /etc && \
             mount -t overlay overlay -o lowerdir=/var/lib,upperdir={r}/varlib,workdir={r}/varlib.work /var/lib && \
             mount -t tmpfs tmpfs /usr/local/bin && ln -s {bin}/kubeadm {bin}/kubectl {ctr} /usr/local/bin/ && \
             exec /usr/sbin/sshd -D -e -h {r}/ssh_host_ed25519_key -o ListenAddress={ip}:22 \
             -o AuthorizedKeysFile={r}/authorized_keys -o StrictModes=no -o UsePAM=no \
             -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no -o PidFile=none \
             -o MaxStartups=100:30:200 -o MaxSessions=50"
        );
        let sshd = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "unshare",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("logs/sshd.log")).unwrap())
            .spawn()
            .expect("sshd runs (openssh-server)");
        let ns_path = PathBuf::from(format!("/run/netns/{netns}"));
        let seg_path = PathBuf::from(format!("/run/netns/{}", self.seg));
        let up = in_netns(&seg_path, move || {
            for _ in 0..200 {
                if std::net::TcpStream::connect_timeout(
                    &SocketAddr::from((ip, 22)),
                    Duration::from_millis(200),
                )
                .is_ok()
                {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        });
        assert!(
            up,
            "sshd of {name} did not start: {}",
            std::fs::read_to_string(root.join("logs/sshd.log")).unwrap_or_default()
        );
        let running = Arc::new(Mutex::new(Running::default()));
        let healthy = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        // The kubelet's health endpoint, inside the node's network namespace.
        let listener = in_netns(&ns_path, || {
            std::net::TcpListener::bind(("127.0.0.1", 10248)).expect("port 10248 in the node")
        });
        listener.set_nonblocking(true).unwrap();
        let health = {
            let (healthy, stop) = (healthy.clone(), stop.clone());
            std::thread::spawn(move || serve_health(&listener, &healthy, &stop))
        };
        let supervisor = {
            let (running, healthy, stop) = (running.clone(), healthy.clone(), stop.clone());
            let (root, name) = (root.clone(), name.to_string());
            let pid = sshd.id();
            std::thread::spawn(move || supervise(&name, pid, &root, &running, &healthy, &stop))
        };
        Node {
            ip,
            netns,
            root,
            host_key,
            sshd,
            running,
            stop,
            supervisor: Some(supervisor),
            health: Some(health),
        }
    }
}

fn serve_health(listener: &std::net::TcpListener, healthy: &AtomicBool, stop: &AtomicBool) {
    use std::io::{Read as _, Write as _};
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let (status, body) = if healthy.load(Ordering::SeqCst) {
                    ("200 OK", "ok")
                } else {
                    ("503 Service Unavailable", "kubelet not running")
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The command line of a static pod's (first) container.
fn pod_command(text: &str) -> Option<Vec<String>> {
    let docs = cloudlet_core::source::parse_yaml(0, text).ok()?;
    let pod: serde_json::Value = cloudlet_core::de::from_node(docs.first()?).ok()?;
    let c = pod["spec"]["containers"].get(0)?;
    let mut argv: Vec<String> = c["command"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if let Some(args) = c["args"].as_array() {
        argv.extend(args.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    (!argv.is_empty()).then_some(argv)
}

/// A process inside the node (its network and mount namespaces, those of its sshd).
fn spawn_in(pid: u32, root: &Path, log: &str, argv: &[String]) -> Option<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("logs").join(format!("{log}.log")))
        .ok()?;
    let err = out.try_clone().ok()?;
    Command::new("nsenter")
        .args(["--target", &pid.to_string(), "--net", "--mount", "--"])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .ok()
}

fn alive(c: &mut Child) -> bool {
    matches!(c.try_wait(), Ok(None))
}

/// Copies the static-pod manifests into the hollow kubelet's static-pod directory, so it registers them as a kubelet registers static pods.
fn mirror_manifests(root: &Path, manifests: &Path) {
    // kubemark makes it under /tmp and says where: `"Adding static pod path" path="..."`.
    let log = std::fs::read_to_string(root.join("logs/kubelet.log")).unwrap_or_default();
    let Some(dir) = log
        .lines()
        .rev()
        .find_map(|l| l.split("\"Adding static pod path\" path=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
    else {
        return;
    };
    let want: BTreeMap<std::ffi::OsString, Vec<u8>> = std::fs::read_dir(manifests)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name(), std::fs::read(e.path()).ok()?)))
        .collect();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if !want.contains_key(&e.file_name()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    for (name, text) in want {
        let to = dir.join(&name);
        if std::fs::read(&to).ok().as_deref() != Some(text.as_slice()) {
            let _ = std::fs::write(&to, text);
        }
    }
}

/// What the kubelet and systemd would do on the node, every 200 ms until `stop`.
fn supervise(
    name: &str,
    pid: u32,
    root: &Path,
    running: &Mutex<Running>,
    healthy: &AtomicBool,
    stop: &AtomicBool,
) {
    let bin = peers();
    let etc = root.join("etc/kubernetes");
    let kubelet_config = root.join("varlib/kubelet/config.yaml");
    while !stop.load(Ordering::SeqCst) {
        {
            let mut r = running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Static pods: run what the manifests say, restart what changed or died, stop what
            // went away.
            let mut want: BTreeMap<String, String> = BTreeMap::new();
            if let Ok(rd) = std::fs::read_dir(etc.join("manifests")) {
                for e in rd.flatten() {
                    let file = e.file_name().to_string_lossy().into_owned();
                    if file.ends_with(".yaml")
                        && let Ok(text) = std::fs::read_to_string(e.path())
                    {
                        want.insert(file, text);
                    }
                }
            }
            let gone: Vec<String> = r
                .pods
                .keys()
                .filter(|k| !want.contains_key(*k))
                .cloned()
                .collect();
            for k in gone {
                if let Some((_, mut c)) = r.pods.remove(&k) {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
            for (file, text) in want {
                let fresh = match r.pods.get_mut(&file) {
                    Some((t, c)) => *t != text || !alive(c),
                    None => true,
                };
                if !fresh {
                    continue;
                }
                if let Some((_, mut c)) = r.pods.remove(&file) {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                let Some(mut argv) = pod_command(&text) else {
                    continue;
                };
                argv[0] = bin.join(&argv[0]).display().to_string();
                let log = file.trim_end_matches(".yaml").to_string();
                if let Some(c) = spawn_in(pid, root, &log, &argv) {
                    r.pods.insert(file, (text, c));
                }
            }
            // The kubelet: started once kubeadm wrote its configuration and a kubeconfig (the
            // node's own, or the bootstrap one), restarted when it dies.
            let configured = kubelet_config.exists()
                && (etc.join("kubelet.conf").exists()
                    || etc.join("bootstrap-kubelet.conf").exists());
            let up = r.kubelet.as_mut().is_some_and(alive);
            if configured && !up {
                let argv: Vec<String> = [
                    bin.join("kubemark").display().to_string(),
                    "--morph=kubelet".into(),
                    format!("--name={name}"),
                    "--use-host-image-service=false".into(),
                    "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf".into(),
                    "--kubeconfig=/etc/kubernetes/kubelet.conf".into(),
                    "--cert-dir=/var/lib/kubelet/pki".into(),
                    "--kubelet-read-only-port=0".into(),
                ]
                .into();
                r.kubelet = spawn_in(pid, root, "kubelet", &argv);
            }
            // The kubelet's own view of the static pods (it makes their mirror pods, whose
            // annotations kubeadm reads): kubemark watches a manifest directory of its own.
            if r.kubelet.is_some() {
                mirror_manifests(root, &etc.join("manifests"));
            }
            healthy.store(r.kubelet.as_mut().is_some_and(alive), Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
