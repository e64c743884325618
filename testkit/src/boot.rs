//! A network-boot segment for tests and benchmarks: network namespaces with a bridge (a tap
//! for QEMU), a PXE-unaware DHCP server (busybox udhcpd) and router advertisements (radvd)
//! behind a veth, and helpers to run boot services inside the segment and to power on a VM.
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A lab whose machine `vm1` (the test VM's MAC) installs over the network with profile
/// `tiny` (the test's kernel and initrd), and `vm2`, another machine of the lab; both are
/// nodes of the cluster the lab makes, so their installs carry the node preparation.
pub const BOOT_LAB: &str = r#"name: boot
site: {domain: boot.lan, timezone: UTC}
networks:
  seg: {cidr: 10.99.0.0/24, gateway: 10.99.0.2}
pxe:
  profiles:
    tiny:
      label: Test install
      kernel: vmlinuz
      initrd: initrd.img
      append: console=ttyS0 panic=-1 quiet
      format: kickstart
      users:
        - name: ops
          password_hash: $6$cloudletboot$S8MXScT3iI0AzdGtMkwwHYDAcPLbMAhQhzauVor0r.oPLCGew3gw1bOxj.eZBHlNR0Rtu/NhKKmUmYRXZ0UGg1
          ssh_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINpHb06t6clW3i24r3Q/GyWHrc4rmvm8IrcBMu63IrvG ops@boot]
      packages: [openssh-server]
      post: echo cloudlet-post-ran
machines:
  vm1:
    cpus: 1
    memory: 256MiB
    nics: [{network: seg, mac: "52:54:00:12:34:56"}]
    boot: [network, disk]
    install: tiny
  vm2:
    cpus: 1
    memory: 256MiB
    nics: [{network: seg, mac: "52:54:00:12:34:57"}]
    boot: [network, disk]
    install: tiny
cluster:
  control_plane: [vm1]
  workers: [vm2]
  kubernetes: {version: v1.36.3}
"#;

/// [`BOOT_LAB`], loaded.
pub fn boot_lab() -> cloudlet_core::model::Lab {
    cloudlet_core::load::load_texts(vec![("boot.yaml".into(), BOOT_LAB.into())], ".".into())
        .unwrap_or_else(|e| panic!("{e}"))
        .lab
}

/// The VM's MAC.
pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// The boot server's address on the segment.
pub const SERVER: &str = "10.99.0.1";

pub fn sh(cmd: &str) {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        o.status.success(),
        "`{cmd}`: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn tool(t: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {t}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The segment; everything it started is stopped and its namespaces deleted on drop.
pub struct Segment {
    pub seg: String,
    pub rtr: String,
    pub dir: tempfile::TempDir,
    kids: Vec<Child>,
}

impl Drop for Segment {
    fn drop(&mut self) {
        for k in &mut self.kids {
            let _ = k.kill();
            let _ = k.wait();
        }
        for n in [&self.seg, &self.rtr] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn quiet(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts")
}

impl Segment {
    /// Builds the segment: `br0` (10.99.0.1/24) with `tap0` in namespace `seg`; udhcpd
    /// (10.99.0.100-150) and radvd on `vr` (10.99.0.2) in namespace `rtr`.
    pub fn new(tag: &str) -> Segment {
        Segment::with_dhcp(tag, "")
    }

    /// The segment with a DHCP server that also names the boot server (`next-server`, the
    /// BOOTP `siaddr`) as routers can be set to: what Debian's GRUB network image needs to
    /// find its server (it ignores the proxyDHCP offer).
    pub fn with_next_server(tag: &str) -> Segment {
        Segment::with_dhcp(tag, &format!("siaddr {SERVER}\n"))
    }

    fn with_dhcp(tag: &str, extra: &str) -> Segment {
        for t in [
            "qemu-system-x86_64",
            "qemu-system-aarch64",
            "udhcpd",
            "radvd",
            "ip",
        ] {
            assert!(
                tool(t),
                "{t} missing: .ci/run installs qemu-system-x86, qemu-system-arm, ipxe-qemu, udhcpd and radvd"
            );
        }
        let id = std::process::id() % 100_000;
        let (seg, rtr) = (format!("cls{tag}{id}"), format!("clr{tag}{id}"));
        let dir = tempfile::Builder::new()
            .prefix("cloudlet-seg")
            .tempdir()
            .unwrap();
        let mut s = Segment {
            seg: seg.clone(),
            rtr: rtr.clone(),
            dir,
            kids: Vec::new(),
        };
        sh(&format!("ip netns add {seg} && ip netns add {rtr}"));
        sh(&format!(
            "ip -n {seg} link set lo up && ip -n {rtr} link set lo up"
        ));
        sh(&format!(
            "ip -n {seg} link add br0 type bridge && ip -n {seg} addr add {SERVER}/24 dev br0 && ip -n {seg} link set br0 up"
        ));
        sh(&format!(
            "ip -n {seg} tuntap add tap0 mode tap && ip -n {seg} link set tap0 master br0 && ip -n {seg} link set tap0 up"
        ));
        sh(&format!(
            "ip link add vr netns {rtr} type veth peer name vs netns {seg}"
        ));
        sh(&format!(
            "ip -n {seg} link set vs master br0 && ip -n {seg} link set vs up"
        ));
        sh(&format!(
            "ip -n {rtr} addr add 10.99.0.2/24 dev vr && ip -n {rtr} link set vr up"
        ));
        sh(&format!("ip -n {rtr} addr add fd00:99::2/64 dev vr nodad"));
        let d = s.dir.path().to_path_buf();
        let conf = d.join("udhcpd.conf");
        std::fs::write(
            &conf,
            format!(
                "start 10.99.0.100\nend 10.99.0.150\ninterface vr\noption subnet 255.255.255.0\noption router 10.99.0.2\nlease_file {}\npidfile {}\n{extra}",
                d.join("leases").display(),
                d.join("udhcpd.pid").display()
            ),
        )
        .unwrap();
        std::fs::write(d.join("leases"), b"").unwrap();
        s.kids.push(quiet(
            Command::new("ip")
                .args(["netns", "exec", &rtr, "udhcpd", "-f"])
                .arg(&conf),
        ));
        // Without router advertisements iPXE waits ~16 s for IPv6 autoconfiguration.
        let radvd = d.join("radvd.conf");
        std::fs::write(
            &radvd,
            "interface vr {\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n  MaxRtrAdvInterval 4;\n  prefix fd00:99::/64 {};\n};\n",
        )
        .unwrap();
        s.kids.push(quiet(
            Command::new("ip")
                .args(["netns", "exec", &rtr, "radvd", "--nodaemon", "--config"])
                .arg(&radvd)
                .arg("--pidfile")
                .arg(d.join("radvd.pid")),
        ));
        s
    }

    /// Runs `f` on a new thread that lives in the segment's namespace.
    pub fn in_segment<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = PathBuf::from(format!("/run/netns/{}", self.seg));
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
    }

    /// Starts a process inside the segment's namespace (stopped on drop).
    pub fn spawn(&mut self, args: &[&str]) {
        let child = quiet(
            Command::new("ip")
                .args(["netns", "exec", &self.seg])
                .args(args),
        );
        self.kids.push(child);
    }

    /// Powers on the VM: network boot through the iPXE ROM, software emulation. The VM is
    /// killed when the returned child is dropped by the caller (or with the segment).
    pub fn power_on(&self, serial: &Path) -> Child {
        self.qemu("qemu-system-x86_64", serial, &[], "")
    }

    /// Powers on the VM with UEFI firmware (OVMF) and its own network stack (no iPXE ROM):
    /// the firmware's PXE client does DHCP, the port-4011 exchange and TFTP itself.
    pub fn power_on_uefi(&self, serial: &Path, ovmf: &Path) -> Child {
        let bios = ovmf.display().to_string();
        self.qemu(
            "qemu-system-x86_64",
            serial,
            &["-bios", &bios, "-m", "512"],
            ",romfile=",
        )
    }

    /// Powers on the VM with OVMF's PXE clients switched off (its own fw_cfg settings), so
    /// the firmware network-boots the UEFI HTTP boot way: DHCP as `HTTPClient`, the boot
    /// program from the URL in the answer.
    pub fn power_on_uefi_http(&self, serial: &Path, ovmf: &Path) -> Child {
        let bios = ovmf.display().to_string();
        self.qemu(
            "qemu-system-x86_64",
            serial,
            &[
                "-bios",
                &bios,
                "-m",
                "512",
                "-fw_cfg",
                "name=opt/org.tianocore/IPv4PXESupport,string=no",
                "-fw_cfg",
                "name=opt/org.tianocore/IPv6PXESupport,string=no",
            ],
            ",romfile=",
        )
    }

    /// Powers on an ARM64 VM (QEMU's `virt` machine, Cortex-A57, software emulation) with
    /// QEMU's AArch64 UEFI firmware, which network-boots with its own PXE client.
    pub fn power_on_arm64(&self, serial: &Path, firmware: &Path) -> Child {
        let bios = firmware.display().to_string();
        self.qemu(
            "qemu-system-aarch64",
            serial,
            &[
                "-M",
                "virt",
                "-cpu",
                "cortex-a57",
                "-bios",
                &bios,
                "-m",
                "512",
            ],
            ",romfile=",
        )
    }

    fn qemu(&self, binary: &str, serial: &Path, extra: &[&str], nic_extra: &str) -> Child {
        let mem = if extra.contains(&"-m") {
            &[][..]
        } else {
            &["-m", "256"][..]
        };
        quiet(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.seg,
                    binary,
                    "-accel",
                    "tcg",
                    "-display",
                    "none",
                    "-no-reboot",
                ])
                .args(mem)
                .args(extra)
                .arg("-serial")
                .arg(format!("file:{}", serial.display()))
                .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
                .arg("-device")
                .arg(format!(
                    "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56{nic_extra}"
                ))
                .args(["-boot", "n"]),
        )
    }
}

/// The directory of the Debian cloud kernel, its virtio-net modules, a static busybox and
/// pxelinux (scripts/boot-peers.sh fetches them once into the cache and prints it).
pub fn boot_peers() -> PathBuf {
    // The workspace root is this package's directory or its parent.
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("scripts/boot-peers.sh"))
        .find(|p| p.exists())
        .expect("scripts/boot-peers.sh in the workspace");
    let o = Command::new("bash").arg(&script).output().unwrap();
    assert!(
        o.status.success(),
        "scripts/boot-peers.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// The test installer: mounts the basics, loads virtio-net, takes an address with udhcpc,
/// fetches the install config named by `ks=` on the kernel command line, prints it on the
/// serial console, reports `installed sha256=<its hash>` to the callback next to it, and
/// powers off.
pub const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
  insmod /lib/modules/$m.ko
done
ip link set lo up
ip link set eth0 up
for w in $(cat /proc/cmdline); do
  case "$w" in ks=*) KS="${w#ks=}" ;; esac
done
udhcpc -i eth0 -s /udhcpc.sh -q -n -t 20 -T 1 >/dev/null 2>&1 || echo "cloudlet-test: no address"
if wget -q -O /tmp/config "$KS"; then
  echo "=== cloudlet-test install config"
  cat /tmp/config
  echo "=== end"
  SUM=$(sha256sum /tmp/config | cut -d' ' -f1)
  wget -q -O /dev/null --post-data="installed sha256=$SUM" "${KS%config}done" && echo "cloudlet-test: reported"
else
  echo "cloudlet-test: the install config was refused"
  wget -q -O /dev/null --post-data="failed no config" "${KS%config}done"
fi
poweroff -f
"#;

const UDHCPC: &str = "#!/bin/sh\ncase \"$1\" in bound|renew) ip addr add $ip/$mask dev $interface; [ -n \"$router\" ] && ip route add default via ${router%% *} ;; esac\nexit 0\n";

/// A newc cpio archive (an initramfs).
struct Cpio(Vec<u8>, u32);

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.1 += 1;
        let hdr = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.1,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.0.extend_from_slice(hdr.as_bytes());
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(0);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self.0.extend_from_slice(data);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }
}

/// Builds the test's initrd: busybox, the virtio-net modules, [`INIT`] and a udhcpc script.
pub fn build_initrd(peers: &Path) -> Vec<u8> {
    let mut c = Cpio(Vec::new(), 0);
    for d in ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"] {
        c.entry(d, 0o040_755, (0, 0), b"");
    }
    c.entry("dev/console", 0o020_600, (5, 1), b"");
    c.entry("dev/null", 0o020_666, (1, 3), b"");
    c.entry(
        "bin/busybox",
        0o100_755,
        (0, 0),
        &std::fs::read(peers.join("busybox")).unwrap(),
    );
    c.entry("bin/sh", 0o120_777, (0, 0), b"busybox");
    c.entry("init", 0o100_755, (0, 0), INIT.as_bytes());
    c.entry("udhcpc.sh", 0o100_755, (0, 0), UDHCPC.as_bytes());
    for m in std::fs::read_dir(peers.join("modules")).unwrap() {
        let m = m.unwrap();
        let name = format!("lib/modules/{}", m.file_name().to_string_lossy());
        c.entry(&name, 0o100_644, (0, 0), &std::fs::read(m.path()).unwrap());
    }
    c.entry("TRAILER!!!", 0, (0, 0), b"");
    c.0
}

/// A boot files directory for [`BOOT_LAB`]: `vmlinuz`, `initrd.img`, `pxelinux.0`,
/// `ldlinux.c32`, `grubnetx64.efi`, `grubnetaa64.efi`.
pub fn boot_root(dir: &Path) -> PathBuf {
    let peers = boot_peers();
    let root = dir.join("bootfiles");
    std::fs::create_dir_all(&root).unwrap();
    for f in [
        "vmlinuz",
        "pxelinux.0",
        "ldlinux.c32",
        "grubnetx64.efi",
        "grubnetaa64.efi",
    ] {
        std::fs::copy(peers.join(f), root.join(f)).unwrap();
    }
    std::fs::write(root.join("initrd.img"), build_initrd(&peers)).unwrap();
    root
}

/// The VM's MAC as the lab writes it.
pub const VM_MAC: &str = "52:54:00:12:34:56";

/// cloudlet's boot service for [`BOOT_LAB`] (proxyDHCP on `br0`, TFTP and HTTP on
/// 10.99.0.1) running in the segment on a thread of its own; stops when dropped.
pub struct BootRun {
    pub events: tokio::sync::broadcast::Receiver<cloudlet_pxe::service::Event>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BootRun {
    pub fn start(
        seg: &Segment,
        root: &Path,
        state: &Path,
        loader: cloudlet_pxe::service::Loader,
    ) -> BootRun {
        BootRun::start_with(seg, root, state, |cfg| cfg.loader = loader)
    }

    /// [`BootRun::start`] with the settings `configure` changes.
    pub fn start_with(
        seg: &Segment,
        root: &Path,
        state: &Path,
        configure: impl FnOnce(&mut cloudlet_pxe::service::BootConfig),
    ) -> BootRun {
        use cloudlet_pxe::service::{BootConfig, BootService};
        let mut cfg = BootConfig::new(
            SERVER.parse().unwrap(),
            root.to_path_buf(),
            state.to_path_buf(),
        );
        cfg.interface = Some("br0".into());
        configure(&mut cfg);
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = seg.in_segment(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let svc = BootService::bind(&boot_lab(), cfg).await.unwrap();
                tx.send(svc.events()).unwrap();
                svc.run(async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let events = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        BootRun {
            events,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Waits up to `limit` for an event `want` accepts; returns it and everything seen.
    pub fn wait_for(
        &mut self,
        limit: std::time::Duration,
        want: impl Fn(&cloudlet_pxe::service::Event) -> bool,
    ) -> (
        Option<cloudlet_pxe::service::Event>,
        Vec<cloudlet_pxe::service::Event>,
    ) {
        let start = std::time::Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < limit {
            match self.events.try_recv() {
                Ok(e) => {
                    let hit = want(&e);
                    seen.push(e.clone());
                    if hit {
                        return (Some(e), seen);
                    }
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
        (None, seen)
    }
}

impl Drop for BootRun {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
