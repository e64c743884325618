//! A VM boots from the network through cloudlet's proxyDHCP and TFTP server, next to a
//! PXE-unaware DHCP server (busybox udhcpd) that hands out the address — all inside network
//! namespaces this test creates: QEMU (software emulation, iPXE ROM, virtio-net) on a tap on a
//! bridge, udhcpd and radvd behind a veth, cloudlet's services bound in the bridge's namespace.
#![allow(missing_docs, clippy::disallowed_methods, clippy::print_stderr)]

mod support;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cloudlet_pxe::proxy_dhcp::{ProxyConfig, ProxyDhcpServer};
use cloudlet_pxe::tftp::{Namespace, TftpConfig, TftpEvent, TftpServer};
use support::{BOOT_SCRIPT, MAC, MARKER, Segment};

#[test]
fn a_vm_boots_over_proxydhcp_and_tftp_next_to_another_dhcp_server() {
    let seg = Segment::new("t");
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
            // Both services stop when the test drops `stop_tx`.
            let (wtx, wrx) = tokio::sync::watch::channel(());
            tokio::spawn(async move {
                let _ = stop_rx.await;
                drop(wtx);
            });
            let (mut w1, mut w2) = (wrx.clone(), wrx);
            let (t, p) = tokio::join!(
                tftp.run(async move {
                    let _ = w1.changed().await;
                }),
                proxy.run(async move {
                    let _ = w2.changed().await;
                })
            );
            t.unwrap();
            p.unwrap();
        });
    });

    let start = Instant::now();
    let mut vm = seg.power_on(&seg.dir.path().join("serial.log"));
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_secs(120) {
        match rx.try_recv() {
            Ok(e) => {
                let done = matches!(&e, TftpEvent::Served { name, .. } if name == MARKER);
                seen.push(e);
                if done {
                    break;
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let took = start.elapsed();
    let _ = vm.kill();
    let _ = vm.wait();
    drop(stop_tx);
    services.join().unwrap();
    assert!(
        seen.iter()
            .any(|e| matches!(e, TftpEvent::Served { name, .. } if name == "boot.ipxe")),
        "the VM never fetched its boot script over TFTP after proxyDHCP; events: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, TftpEvent::Served { name, .. } if name == MARKER)),
        "the boot script did not run; events: {seen:?}"
    );
    eprintln!("power-on to callback: {:.1} s", took.as_secs_f64());
}
