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

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cloudlet_pxe::proxy_dhcp::{ProxyConfig, ProxyDhcpServer};
use cloudlet_pxe::tftp::{Namespace, TftpConfig, TftpEvent, TftpServer};
use support::{BOOT_SCRIPT, MAC, MARKER, Segment};

const RUNS: usize = 3;
const LIMIT: Duration = Duration::from_secs(120);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn cloudlet_runs(seg: &Segment) -> Vec<Duration> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<TftpEvent>(64);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let services = seg.in_segment(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let ns = Namespace::new()
                .with_file("boot.ipxe", BOOT_SCRIPT.to_vec())
                .with_file(MARKER, b"ok\n".to_vec());
            let tftp = TftpServer::bind("10.99.0.1:69".parse().unwrap(), ns, TftpConfig::default())
                .await
                .unwrap()
                .with_events(tx);
            let proxy = ProxyDhcpServer::bind(
                Some("br0"),
                ProxyConfig {
                    server: Ipv4Addr::new(10, 99, 0, 1),
                    bios: "undionly.kpxe".into(),
                    efi_x64: "ipxe.efi".into(),
                    efi_arm64: None,
                    ipxe_script: "tftp://10.99.0.1/boot.ipxe".into(),
                    http_boot: None,
                    known: Some(HashSet::from([MAC])),
                },
            )
            .unwrap();
            let (wtx, wrx) = tokio::sync::watch::channel(());
            tokio::spawn(async move {
                let _ = stop_rx.await;
                drop(wtx);
            });
            let (mut w1, mut w2) = (wrx.clone(), wrx);
            let _ = tokio::join!(
                tftp.run(async move {
                    let _ = w1.changed().await;
                }),
                proxy.run(async move {
                    let _ = w2.changed().await;
                })
            );
        });
    });
    let mut times = Vec::new();
    for i in 0..RUNS {
        let start = Instant::now();
        let mut vm = seg.power_on(&seg.dir.path().join(format!("serial-c{i}.log")));
        let mut done = false;
        while !done && start.elapsed() < LIMIT {
            match rx.try_recv() {
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
    drop(stop_tx);
    services.join().unwrap();
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
