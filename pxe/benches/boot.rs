//! Network install, power-on to install callback, side by side in one run (issue "PXE",
//! measurement a): the same VM (QEMU, software emulation, iPXE ROM, virtio-net), kernel
//! (Debian cloud) and busybox initrd on the same kind of segment (busybox udhcpd hands out
//! addresses, radvd sends router advertisements), through
//! 1. cloudlet, iPXE with its per-boot script, kernel and initrd over HTTP;
//! 2. cloudlet, pxelinux over TFTP (per-boot config, kernel and initrd over TFTP);
//! 3. dnsmasq proxyDHCP + TFTP handing iPXE a script that loads kernel and initrd over HTTP;
//! 4. dnsmasq proxyDHCP + TFTP with pxelinux (the baseline of the seed's flow).
//!
//! The baselines' HTTP server is Python's `http.server` (it serves the config and logs the
//! callback). The four run in rounds — one VM boot of each per round, in turn — so drift of
//! the machine hits them alike; the first round is a warm-up (page cache, QEMU's first start)
//! and is not counted; medians of the other rounds. Needs root, network namespaces, Debian's
//! qemu-system-x86, ipxe-qemu, udhcpd, radvd, dnsmasq, python3, and scripts/boot-peers.sh.
#![allow(missing_docs, clippy::print_stdout, clippy::disallowed_methods)]

use cloudlet_testkit::boot as support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cloudlet_pxe::service::{Event, Loader};
use support::{BootRun, Segment};

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
        Setup::Cloudlet { seg, root, loader }
    }

    /// dnsmasq in proxyDHCP mode with its TFTP server, Python's HTTP server for the install
    /// config (and, with `ipxe`, the kernel and initrd), static files rendered by cloudlet.
    fn dnsmasq(tag: &str, ipxe: bool) -> Setup {
        let mut seg = Segment::new(tag);
        let root = support::boot_root(seg.dir.path());
        let lab = support::boot_lab();
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
            Setup::Cloudlet { seg, root, loader } => {
                // A fresh install state each run: every run is a first install.
                let state = seg.dir.path().join(format!("state-{i}"));
                let mut svc = BootRun::start(seg, root, &state, *loader);
                let start = Instant::now();
                let mut vm = seg.power_on(&seg.dir.path().join(format!("serial-{i}.log")));
                let (hit, seen) = svc.wait_for(LIMIT, |e| matches!(e, Event::Reported { .. }));
                let took = start.elapsed();
                let _ = vm.kill();
                let _ = vm.wait();
                assert!(
                    matches!(hit, Some(Event::Reported { ok: true, .. })),
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
