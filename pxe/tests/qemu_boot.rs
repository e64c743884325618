//! A VM installs itself over the network through cloudlet's boot service, next to a
//! PXE-unaware DHCP server (busybox udhcpd) that hands out the address — all inside network
//! namespaces this test creates: QEMU (software emulation, iPXE ROM, virtio-net) on a tap on a
//! bridge, udhcpd and radvd behind a veth, cloudlet's proxyDHCP, TFTP and HTTP bound in the
//! bridge's namespace. The VM boots the Debian cloud kernel and a busybox initrd built here,
//! fetches its install config with its per-boot token, and calls back; its second boot gets
//! the local disk. Both paths: iPXE with its script over HTTP, and pxelinux over TFTP.
#![allow(missing_docs, clippy::disallowed_methods, clippy::print_stderr)]

use cloudlet_testkit::boot as support;

use std::time::{Duration, Instant};

use cloudlet_pxe::install::{Installs, Phase};
use cloudlet_pxe::service::{Event, Loader};
use support::{BootRun, Segment};

const LIMIT: Duration = Duration::from_secs(240);

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// How a test powers its VM on: the serial log's path in, the QEMU process out.
type PowerOn = fn(&Segment, &std::path::Path) -> std::process::Child;

fn bios(seg: &Segment, serial: &std::path::Path) -> std::process::Child {
    seg.power_on(serial)
}

fn uefi(seg: &Segment, serial: &std::path::Path) -> std::process::Child {
    seg.power_on_uefi(serial, &support::boot_peers().join("OVMF.fd"))
}

fn install_then_local_boot(seg: Segment, loader: Loader, via: &str, power_on: PowerOn) {
    let root = support::boot_root(seg.dir.path());
    let state = seg.dir.path().join("state");
    let mut svc = BootRun::start(&seg, &root, &state, loader);

    // First boot: the install.
    let serial = seg.dir.path().join("serial-1.log");
    let start = Instant::now();
    let mut vm = power_on(&seg, &serial);
    let (hit, seen) = svc.wait_for(LIMIT, |e| matches!(e, Event::Reported { .. }));
    let took = start.elapsed();
    let _ = vm.kill();
    let _ = vm.wait();
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    let Some(Event::Reported { machine, ok, note }) = hit else {
        panic!("no install callback within {LIMIT:?}; events: {seen:#?}\nserial:\n{log}");
    };
    assert_eq!(machine, "vm1");
    assert!(ok, "the install reported a failure: {note:?}\n{log}");
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Dhcp { machine, .. } if machine == "vm1")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(e, Event::Boot { machine, answer: "install", via: v } if machine == "vm1" && *v == via)),
        "the boot went through {via}: {seen:?}"
    );
    // The config the VM received is exactly the one rendered for it with this boot's token.
    let installs = Installs::open(&state, Default::default()).unwrap();
    let m = &installs.machines()["vm1"];
    assert_eq!(m.phase, Phase::Installed);
    let config = log
        .split("=== cloudlet-test install config\r\n")
        .nth(1)
        .and_then(|s| s.split("=== end").next())
        .unwrap_or_else(|| panic!("the config is not on the serial console:\n{log}"))
        .replace("\r\n", "\n");
    assert!(
        config.contains(
            "user --name=ops --groups=sudo,wheel --iscrypted --password=$6$cloudletboot$"
        ),
        "{config}"
    );
    assert!(
        config.contains("sshkey --username=ops \"ssh-ed25519 "),
        "{config}"
    );
    assert!(config.contains("timezone UTC --utc\n"), "{config}");
    assert!(config.contains("echo cloudlet-post-ran\n"), "{config}");
    assert!(config.contains("http://10.99.0.1/install/vm1/"), "{config}");
    // vm1 is the control plane of the cluster the lab makes: its install prepares it.
    for prep in [
        "# Kubernetes node preparation (cloudlet): v1.36.3, containerd, swap off",
        "swapoff -a",
        "br_netfilter",
        "net.ipv4.ip_forward = 1",
        "'kubelet-1.36.3' 'kubeadm-1.36.3' 'kubectl-1.36.3'",
        "sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml",
        "systemctl disable kubelet",
    ] {
        assert!(
            config.contains(prep),
            "`{prep}` not in the install:\n{config}"
        );
    }
    assert_eq!(
        note.as_deref(),
        Some(format!("installed sha256={}", sha256_hex(config.as_bytes())).as_str()),
        "the callback carries the hash of what the VM fetched"
    );

    // Second boot of the same VM: boot from the local disk, no second install.
    let start2 = Instant::now();
    let mut vm = power_on(&seg, &seg.dir.path().join("serial-2.log"));
    let (hit, seen2) = svc.wait_for(LIMIT, |e| matches!(e, Event::Boot { .. }));
    let _ = vm.kill();
    let _ = vm.wait();
    assert!(
        matches!(&hit, Some(Event::Boot { machine, answer: "local_disk", .. }) if machine == "vm1"),
        "second boot: {hit:?} {seen2:?}"
    );
    let installs = Installs::open(&state, Default::default()).unwrap();
    assert_eq!(installs.machines()["vm1"].phase, Phase::Installed);
    eprintln!(
        "{via}: power-on to install callback {:.1} s; second boot to its local-disk answer {:.1} s",
        took.as_secs_f64(),
        start2.elapsed().as_secs_f64()
    );
}

#[test]
fn a_vm_installs_over_ipxe_and_http_then_boots_its_disk() {
    install_then_local_boot(Segment::new("i"), Loader::Ipxe, "ipxe", bios);
}

#[test]
fn a_vm_installs_over_pxelinux_and_tftp_then_boots_its_disk() {
    install_then_local_boot(Segment::new("p"), Loader::Pxelinux, "pxelinux", bios);
}

/// UEFI firmware's own PXE client (OVMF) installs through GRUB: Debian's signed GRUB
/// network image over TFTP reads `/grub/grub.cfg` (its prefix is `/grub`, asked with the
/// leading `/`), which sends it to its per-MAC config (`grub/grub.cfg-01-<mac>`, rendered
/// for this boot); that loads the kernel and initrd over TFTP (the image has no `http`
/// module) and the install calls back; the second boot is told to boot the disk. Debian
/// 12's GRUB 2.06 takes its server from the DHCP server's answer only, never from the
/// proxyDHCP offer, so this segment's DHCP server names the boot server (next-server), as
/// the router must for GRUB.
#[test]
fn a_uefi_vm_installs_over_grub_then_boots_its_disk() {
    install_then_local_boot(Segment::with_next_server("g"), Loader::Ipxe, "grub", uefi);
}

/// Waits (up to [`LIMIT`]) for GRUB's banner on the VM's serial console, then powers the VM
/// off: the console, the time from power-on, and the service's events.
fn until_grub(
    mut vm: std::process::Child,
    serial: &std::path::Path,
    svc: &mut BootRun,
) -> (String, Duration, Vec<Event>) {
    let start = Instant::now();
    let mut log = String::new();
    while start.elapsed() < LIMIT && !log.contains("Welcome to GRUB") {
        std::thread::sleep(Duration::from_millis(200));
        log = std::fs::read_to_string(serial).unwrap_or_default();
    }
    let took = start.elapsed();
    let _ = vm.kill();
    let _ = vm.wait();
    let (_, seen) = svc.wait_for(Duration::from_millis(200), |_| false);
    (log, took, seen)
}

/// UEFI firmware's own PXE client (OVMF, no iPXE ROM): proxyDHCP answers it (option 93 = 7,
/// x86-64 UEFI) with the UEFI boot program, which the firmware loads over TFTP and starts —
/// Debian's signed GRUB network image.
#[test]
fn uefi_firmware_gets_its_boot_program_from_proxydhcp_and_tftp() {
    let seg = Segment::new("u");
    let root = support::boot_root(seg.dir.path());
    let state = seg.dir.path().join("state");
    let mut svc = BootRun::start(&seg, &root, &state, Loader::Ipxe);
    let serial = seg.dir.path().join("serial-uefi.log");
    let vm = seg.power_on_uefi(&serial, &support::boot_peers().join("OVMF.fd"));
    let (log, took, seen) = until_grub(vm, &serial, &mut svc);
    assert!(
        seen.iter().any(|e| matches!(e, Event::Dhcp { machine, file, .. } if machine == "vm1" && file == "grubnetx64.efi")),
        "proxyDHCP did not answer the UEFI client with its boot program: {seen:?}\n{log}"
    );
    assert!(log.contains("NBP filename is grubnetx64.efi"), "{log}");
    assert!(
        log.contains("Welcome to GRUB"),
        "the boot program did not start:\n{log}"
    );
    eprintln!("UEFI PXE: power-on to GRUB {:.1} s", took.as_secs_f64());
}

/// The port-4011 exchange with a real client: with `proxy_offer: port4011` the offer on
/// port 67 names only this server (no file, no option 43), so OVMF's PXE client asks it
/// again on port 4011, gets its boot program there, loads it over TFTP and starts it.
#[test]
fn uefi_firmware_asks_on_port_4011_when_the_offer_names_only_the_server() {
    let seg = Segment::new("f");
    let root = support::boot_root(seg.dir.path());
    let state = seg.dir.path().join("state");
    let mut svc = BootRun::start_with(&seg, &root, &state, |cfg| {
        cfg.proxy_offer = cloudlet_pxe::proxy_dhcp::ProxyOffer::Port4011;
    });
    let serial = seg.dir.path().join("serial-4011.log");
    let vm = seg.power_on_uefi(&serial, &support::boot_peers().join("OVMF.fd"));
    let (log, took, seen) = until_grub(vm, &serial, &mut svc);
    let answered = |on4011: bool| {
        seen.iter().any(|e| {
            matches!(e, Event::Dhcp { machine, file, port4011 }
                if machine == "vm1" && file == "grubnetx64.efi" && *port4011 == on4011)
        })
    };
    assert!(answered(false), "no offer on port 67: {seen:?}\n{log}");
    assert!(
        answered(true),
        "the firmware did not ask on port 4011: {seen:?}\n{log}"
    );
    assert!(log.contains("NBP filename is grubnetx64.efi"), "{log}");
    assert!(
        log.contains("Welcome to GRUB"),
        "the boot program did not start:\n{log}"
    );
    eprintln!(
        "UEFI PXE over port 4011: power-on to GRUB {:.1} s",
        took.as_secs_f64()
    );
}

/// OVMF's UEFI HTTP boot (its PXE clients switched off): DHCP as `HTTPClient` (option 93 =
/// 16), proxyDHCP answers with the boot program's URL, the firmware downloads it from the
/// HTTP server and starts it.
#[test]
fn uefi_http_boot_gets_its_boot_program_over_http() {
    let seg = Segment::new("h");
    let root = support::boot_root(seg.dir.path());
    let state = seg.dir.path().join("state");
    let mut svc = BootRun::start(&seg, &root, &state, Loader::Ipxe);
    let serial = seg.dir.path().join("serial-http.log");
    let vm = seg.power_on_uefi_http(&serial, &support::boot_peers().join("OVMF.fd"));
    let (log, took, seen) = until_grub(vm, &serial, &mut svc);
    let url = "http://10.99.0.1/boot/grubnetx64.efi";
    assert!(
        seen.iter().any(
            |e| matches!(e, Event::Dhcp { machine, file, .. } if machine == "vm1" && file == url)
        ),
        "proxyDHCP did not answer the HTTP boot client with the boot program's URL: {seen:?}\n{log}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::Dhcp { file, .. } if file == "grubnetx64.efi")),
        "the firmware booted the PXE way: {seen:?}"
    );
    assert!(
        log.contains("Welcome to GRUB"),
        "the boot program did not start:\n{log}"
    );
    eprintln!(
        "UEFI HTTP boot: power-on to GRUB {:.1} s",
        took.as_secs_f64()
    );
}

/// ARM64 UEFI (QEMU's AArch64 firmware on the `virt` machine, software emulation): its PXE
/// client says option 93 = 11, proxyDHCP answers with the ARM64 boot program (Debian's
/// signed GRUB network image for arm64), which the firmware loads over TFTP and starts; GRUB
/// then asks for its per-MAC config.
#[test]
fn arm64_uefi_firmware_gets_its_boot_program_from_proxydhcp_and_tftp() {
    let seg = Segment::with_next_server("r");
    let root = support::boot_root(seg.dir.path());
    let state = seg.dir.path().join("state");
    let mut svc = BootRun::start(&seg, &root, &state, Loader::Ipxe);
    let serial = seg.dir.path().join("serial-arm64.log");
    let start = Instant::now();
    let mut vm = seg.power_on_arm64(&serial, &support::boot_peers().join("QEMU_EFI-aarch64.fd"));
    let (hit, seen) = svc.wait_for(LIMIT, |e| matches!(e, Event::Boot { .. }));
    let took = start.elapsed();
    let _ = vm.kill();
    let _ = vm.wait();
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(
        seen.iter().any(|e| matches!(e, Event::Dhcp { machine, file, .. } if machine == "vm1" && file == "grubnetaa64.efi")),
        "proxyDHCP did not answer the ARM64 client with its boot program: {seen:?}\n{log}"
    );
    assert!(
        matches!(&hit, Some(Event::Boot { machine, answer: "install", via: "grub" }) if machine == "vm1"),
        "GRUB did not ask for its per-MAC config: {hit:?} {seen:?}\n{log}"
    );
    assert!(log.contains("Welcome to GRUB"), "{log}");
    eprintln!(
        "ARM64 UEFI: power-on to GRUB's per-MAC config {:.1} s",
        took.as_secs_f64()
    );
}
