//! Network install, power-on to install callback, side by side in one run (issue "PXE",
//! measurement a): the same VM (QEMU, software emulation, iPXE ROM, virtio-net), kernel
//! (Debian cloud) and busybox initrd on the same kind of segment (busybox udhcpd hands out
//! addresses, radvd sends router advertisements), through
//! 1. cloudlet as users run it — the `cloudlet` binary's `pxe serve LAB` in the segment's
//!    namespace, its events read as JSON lines — iPXE with its per-boot script, kernel and
//!    initrd over HTTP;
//! 2. the same with `--loader pxelinux`: per-boot config, kernel and initrd over TFTP;
//! 3. dnsmasq proxyDHCP + TFTP handing iPXE a script that loads kernel and initrd over HTTP;
//! 4. dnsmasq proxyDHCP + TFTP with pxelinux (the baseline of the seed's flow).
//!
//! The baselines' HTTP server is Python's `http.server` (it serves the config and logs the
//! callback). The four run in rounds — one VM boot of each per round, in turn — so drift of
//! the machine hits them alike; the first round is a warm-up (page cache, QEMU's first start)
//! and is not counted; medians of the other rounds. Needs root, network namespaces, Debian's
//! qemu-system-x86, ipxe-qemu, udhcpd, radvd, dnsmasq, python3, and scripts/boot-peers.sh.
//! `cargo bench -p cloudlet-cli --bench boot`.
#![allow(missing_docs, clippy::print_stdout, clippy::disallowed_methods)]

use cloudlet_testkit::boot as support;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloudlet::pxe as cloudlet_pxe;
use support::Segment;

/// The boot lab without the cluster its machines would make: what `pxe serve` loads must
/// validate as a whole lab (a cluster node needs an address there). Both setups install from it.
fn lab_text() -> String {
    let text = support::BOOT_LAB;
    format!("{}\n", text.split("\ncluster:").next().unwrap_or(text))
}

/// How cloudlet's iPXE clients boot (`pxe serve --loader`).
#[derive(Debug, Clone, Copy)]
enum Loader {
    Ipxe,
    Pxelinux,
}

/// `cloudlet pxe serve` for the boot lab, started in the segment's namespace with a state
/// directory of its own; its events as JSON lines on a channel. Killed when dropped.
struct Served {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Served {
    fn start(seg: &Segment, lab: &Path, root: &Path, state: &Path, loader: Loader) -> Served {
        let loader = match loader {
            Loader::Ipxe => "ipxe",
            Loader::Pxelinux => "pxelinux",
        };
        let mut child = Command::new("ip")
            .args(["netns", "exec", &seg.seg, env!("CARGO_BIN_EXE_cloudlet")])
            .arg("--state-dir")
            .arg(state)
            .args(["pxe", "serve"])
            .arg(lab)
            .args(["--address", support::SERVER, "--interface", "br0", "--root"])
            .arg(root)
            .args(["--loader", loader, "--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cloudlet pxe serve starts");
        // It is serving once it says so on stderr.
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let (mut line, mut said) = (String::new(), String::new());
        while err.read_line(&mut line).unwrap_or(0) > 0
            && !line.contains("serving network installs")
        {
            said.push_str(&line);
            line.clear();
        }
        assert!(
            line.contains("serving network installs"),
            "cloudlet pxe serve did not start: {said}"
        );
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        Served { child, lines }
    }

    /// Waits up to `limit` for an event called `event`; returns it and everything seen.
    fn wait_for(
        &self,
        limit: Duration,
        event: &str,
    ) -> (Option<serde_json::Value>, Vec<serde_json::Value>) {
        let start = Instant::now();
        let mut seen = Vec::new();
        while let Some(left) = limit.checked_sub(start.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    let hit = v["event"] == event;
                    seen.push(v.clone());
                    if hit {
                        return (Some(v), seen);
                    }
                }
                Err(_) => break,
            }
        }
        (None, seen)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ROUNDS: usize = 5;
const WARMUP: usize = 1;
const LIMIT: Duration = Duration::from_secs(240);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One way of serving the install, on a segment of its own.
enum Setup {
    Cloudlet {
        seg: Segment,
        lab: PathBuf,
        root: PathBuf,
        loader: Loader,
    },
    Dnsmasq {
        seg: Segment,
        http_log: PathBuf,
    },
}

impl Setup {
    fn cloudlet(tag: &str, loader: Loader) -> Setup {
        let seg = Segment::new(tag);
        let root = support::boot_root(seg.dir.path());
        let lab = seg.dir.path().join("lab.yaml");
        std::fs::write(&lab, lab_text()).unwrap();
        Setup::Cloudlet {
            seg,
            lab,
            root,
            loader,
        }
    }

    /// dnsmasq in proxyDHCP mode with its TFTP server, Python's HTTP server for the install
    /// config (and, with `ipxe`, the kernel and initrd), static files rendered by cloudlet.
    fn dnsmasq(tag: &str, ipxe: bool) -> Setup {
        let mut seg = Segment::new(tag);
        let root = support::boot_root(seg.dir.path());
        let lab = cloudlet::Lab::from_texts(vec![("lab.yaml".into(), lab_text())], ".")
            .unwrap()
            .model()
            .clone();
        let (name, m) = ("vm1", &lab.machines["vm1"]);
        let p = &lab.pxe.as_ref().unwrap().profiles["tiny"];
        let server = cloudlet_pxe::render::BootServer {
            base_url: "http://10.99.0.1".into(),
            token: Some("static".into()),
        };
        let config = cloudlet_pxe::render::kickstart(&lab, name, m, p, Some(&server));
        std::fs::create_dir_all(root.join("install/vm1/static")).unwrap();
        std::fs::write(root.join("install/vm1/static/config"), config).unwrap();
        std::fs::create_dir_all(root.join("pxelinux.cfg")).unwrap();
        std::fs::write(
            root.join(format!(
                "pxelinux.cfg/{}",
                cloudlet_pxe::pxelinux_mac_file(support::VM_MAC)
            )),
            cloudlet_pxe::render::pxelinux_machine(&lab, name, p, Some(&server)),
        )
        .unwrap();
        // iPXE runs a script it gets as its boot file; this one loads over HTTP.
        let script =
            cloudlet_pxe::render::ipxe_machine(&lab, name, p, &server).replace("/boot/", "/");
        std::fs::write(root.join("install.0"), script).unwrap();
        support::sh(&format!("chmod -R a+rX {}", seg.dir.path().display()));
        let d = seg.dir.path().to_path_buf();
        let http_log = d.join("http.log");
        let service = if ipxe { "install" } else { "pxelinux" };
        std::fs::write(
            d.join("dnsmasq.conf"),
            format!(
                "port=0\ninterface=br0\nbind-interfaces\ndhcp-range=10.99.0.0,proxy,255.255.255.0\npxe-service=x86PC,\"bench\",{service}\nenable-tftp\ntftp-root={}\nlog-facility={}\nuser=root\n",
                root.display(),
                d.join("dnsmasq.log").display()
            ),
        )
        .unwrap();
        let conf_arg = format!("--conf-file={}", d.join("dnsmasq.conf").display());
        let pid_arg = format!("--pid-file={}", d.join("dnsmasq.pid").display());
        seg.spawn(&["dnsmasq", "--no-daemon", &conf_arg, &pid_arg]);
        let http_cmd = format!(
            "exec python3 -m http.server --bind 10.99.0.1 --directory {} 80 2>{}",
            root.display(),
            http_log.display()
        );
        seg.spawn(&["sh", "-c", &http_cmd]);
        std::thread::sleep(Duration::from_millis(800));
        Setup::Dnsmasq { seg, http_log }
    }

    /// Powers the VM on and times it to its install callback.
    fn boot(&mut self, i: usize) -> Duration {
        match self {
            Setup::Cloudlet {
                seg,
                lab,
                root,
                loader,
            } => {
                // A fresh install state each run: every run is a first install.
                let state = seg.dir.path().join(format!("state-{i}"));
                let svc = Served::start(seg, lab, root, &state, *loader);
                let start = Instant::now();
                let mut vm = seg.power_on(&seg.dir.path().join(format!("serial-{i}.log")));
                let (hit, seen) = svc.wait_for(LIMIT, "reported");
                let took = start.elapsed();
                let _ = vm.kill();
                let _ = vm.wait();
                assert!(
                    hit.as_ref()
                        .is_some_and(|v| v["ok"] == true && v["machine"] == "vm1"),
                    "cloudlet {loader:?} run {i}: no install callback: {seen:?}"
                );
                took
            }
            Setup::Dnsmasq { seg, http_log } => {
                let callbacks = |p: &Path| {
                    std::fs::read_to_string(p)
                        .unwrap_or_default()
                        .matches("\"POST /install/vm1/static/done")
                        .count()
                };
                let before = callbacks(http_log);
                let start = Instant::now();
                let serial = seg.dir.path().join(format!("serial-{i}.log"));
                let mut vm = seg.power_on(&serial);
                let mut done = false;
                while !done && start.elapsed() < LIMIT {
                    done = callbacks(http_log) > before;
                    if !done {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                let took = start.elapsed();
                let _ = vm.kill();
                let _ = vm.wait();
                assert!(
                    done,
                    "dnsmasq run {i}: no callback; serial:\n{}",
                    std::fs::read_to_string(&serial).unwrap_or_default()
                );
                took
            }
        }
    }
}

fn main() {
    for t in ["dnsmasq", "python3"] {
        assert!(support::tool(t), "{t} missing");
    }
    let names = [
        "cloudlet: iPXE script + HTTP",
        "cloudlet: pxelinux + TFTP",
        "dnsmasq: iPXE script + HTTP",
        "dnsmasq: pxelinux + TFTP",
    ];
    let mut setups = [
        Setup::cloudlet("bi", Loader::Ipxe),
        Setup::cloudlet("bp", Loader::Pxelinux),
        Setup::dnsmasq("di", true),
        Setup::dnsmasq("dp", false),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); setups.len()];
    for round in 0..WARMUP + ROUNDS {
        for (k, s) in setups.iter_mut().enumerate() {
            let t = s.boot(round);
            if round >= WARMUP {
                times[k].push(t);
            }
        }
    }
    let medians: Vec<Duration> = times.iter().map(|v| median(v.clone())).collect();
    let best_ours = medians[0].min(medians[1]);
    let best_dnsmasq = medians[2].min(medians[3]);
    println!(
        "VM power-on to install callback (QEMU TCG, iPXE ROM, Debian cloud kernel + busybox initrd, udhcpd for addresses), {ROUNDS} interleaved rounds after {WARMUP} warm-up:"
    );
    println!(
        "| boot service                   | median s | runs s                             | best dnsmasq / this |"
    );
    println!(
        "|--------------------------------|---------:|------------------------------------|--------------------:|"
    );
    for (k, name) in names.iter().enumerate() {
        let runs = times[k]
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {name:<30} | {:>8.2} | {runs:<34} | {:>18.2}x |",
            medians[k].as_secs_f64(),
            best_dnsmasq.as_secs_f64() / medians[k].as_secs_f64()
        );
    }
    println!(
        "cloudlet's best {:.2} s vs dnsmasq's best {:.2} s: {:.2}x (target >= 1.00x)",
        best_ours.as_secs_f64(),
        best_dnsmasq.as_secs_f64(),
        best_dnsmasq.as_secs_f64() / best_ours.as_secs_f64()
    );
}
