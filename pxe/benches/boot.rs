//! Network boot, power-on to callback, side by side in one run (issue "PXE", measurement a):
//! the same VM (QEMU, software emulation, iPXE ROM, virtio-net) on the same segment (busybox
//! udhcpd hands out addresses, radvd sends router advertisements), booting through
//! 1. cloudlet's proxyDHCP + TFTP, and
//! 2. dnsmasq in proxyDHCP mode with its TFTP server (the baseline),
//!
//! until the VM's boot script fetches its "installed" marker. Median of 3 runs each.
//! Needs root, network namespaces, Debian's qemu-system-x86, ipxe-qemu, udhcpd, radvd, dnsmasq.
#![allow(missing_docs, clippy::print_stdout, clippy::disallowed_methods)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use cloudlet_pxe::tftp::TftpEvent;
use support::{BOOT_SCRIPT, CloudletServices, MARKER, Segment};

const RUNS: usize = 3;
const LIMIT: Duration = Duration::from_secs(120);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn cloudlet_runs(seg: &Segment) -> Vec<Duration> {
    let mut services = CloudletServices::start(seg);
    let mut times = Vec::new();
    for i in 0..RUNS {
        let start = Instant::now();
        let mut vm = seg.power_on(&seg.dir.path().join(format!("serial-c{i}.log")));
        let mut done = false;
        while !done && start.elapsed() < LIMIT {
            match services.events.try_recv() {
                Ok(TftpEvent::Served { name, .. }) if name == MARKER => done = true,
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        times.push(start.elapsed());
        let _ = vm.kill();
        let _ = vm.wait();
        assert!(done, "cloudlet run {i}: the VM did not reach its callback");
    }
    times
}

fn dnsmasq_runs(seg: &mut Segment) -> Vec<Duration> {
    let root = seg.dir.path().join("tftp");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("boot.0"), BOOT_SCRIPT).unwrap();
    std::fs::write(root.join(MARKER), b"ok\n").unwrap();
    support::sh(&format!("chmod -R a+rX {}", seg.dir.path().display()));
    let log = seg.dir.path().join("dnsmasq.log");
    let conf = seg.dir.path().join("dnsmasq.conf");
    std::fs::write(
        &conf,
        format!(
            "port=0\ninterface=br0\nbind-interfaces\ndhcp-range=10.99.0.0,proxy,255.255.255.0\npxe-service=x86PC,\"bench\",boot\nenable-tftp\ntftp-root={}\nlog-facility={}\nuser=root\n",
            root.display(),
            log.display()
        ),
    )
    .unwrap();
    let conf_arg = format!("--conf-file={}", conf.display());
    let pid_arg = format!(
        "--pid-file={}",
        seg.dir.path().join("dnsmasq.pid").display()
    );
    seg.spawn(&["dnsmasq", "--no-daemon", &conf_arg, &pid_arg]);
    std::thread::sleep(Duration::from_millis(300));
    let mut times = Vec::new();
    for i in 0..RUNS {
        let before = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches(MARKER)
            .count();
        let start = Instant::now();
        let mut vm = seg.power_on(&seg.dir.path().join(format!("serial-d{i}.log")));
        let mut done = false;
        while !done && start.elapsed() < LIMIT {
            done = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches(MARKER)
                .count()
                > before;
            if !done {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        times.push(start.elapsed());
        let _ = vm.kill();
        let _ = vm.wait();
        assert!(done, "dnsmasq run {i}: the VM did not reach its callback");
    }
    times
}

fn main() {
    assert!(
        support::tool("dnsmasq"),
        "dnsmasq missing (Debian dnsmasq-base)"
    );
    let ours = {
        let seg = Segment::new("bc");
        cloudlet_runs(&seg)
    };
    let theirs = {
        let mut seg = Segment::new("bd");
        dnsmasq_runs(&mut seg)
    };
    let (o, t) = (median(ours.clone()), median(theirs.clone()));
    let secs = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "VM power-on to callback (iPXE ROM, proxyDHCP + TFTP, busybox udhcpd for addresses), {RUNS} runs each:"
    );
    println!("| boot service               | median s | runs s             | vs dnsmasq |");
    println!("|----------------------------|---------:|--------------------|-----------:|");
    println!(
        "| dnsmasq proxyDHCP + TFTP   | {:>8.2} | {:<18} |      1.00x |",
        t.as_secs_f64(),
        secs(&theirs)
    );
    println!(
        "| cloudlet proxyDHCP + TFTP  | {:>8.2} | {:<18} | {:>9.2}x |",
        o.as_secs_f64(),
        secs(&ours),
        t.as_secs_f64() / o.as_secs_f64()
    );
    println!("target: cloudlet's best path no slower than dnsmasq's (ratio >= 1.00x)");
}
