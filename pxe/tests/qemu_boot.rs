//! A VM boots from the network through cloudlet's proxyDHCP and TFTP server, next to a
//! PXE-unaware DHCP server (busybox udhcpd) that hands out the address — all inside network
//! namespaces this test creates: QEMU (software emulation, iPXE ROM, virtio-net) on a tap on a
//! bridge, udhcpd and radvd behind a veth, cloudlet's services bound in the bridge's namespace.
#![allow(missing_docs, clippy::disallowed_methods, clippy::print_stderr)]

mod support;

use std::time::{Duration, Instant};

use cloudlet_pxe::tftp::TftpEvent;
use support::{CloudletServices, MARKER, Segment};

#[test]
fn a_vm_boots_over_proxydhcp_and_tftp_next_to_another_dhcp_server() {
    let seg = Segment::new("t");
    let mut services = CloudletServices::start(&seg);
    let start = Instant::now();
    let mut vm = seg.power_on(&seg.dir.path().join("serial.log"));
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_secs(120) {
        match services.events.try_recv() {
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
    drop(services);
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
