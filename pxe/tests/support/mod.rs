//! A network-boot segment for tests and benchmarks: network namespaces with a bridge (a tap
//! for QEMU), a PXE-unaware DHCP server (busybox udhcpd) and router advertisements (radvd)
//! behind a veth, and helpers to run boot services inside the segment and to power on a VM.
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A lab whose machine `vm1` (the test VM's MAC) installs over the network with profile
/// `tiny` (the test's kernel and initrd), and `vm2`, another machine of the lab.
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
        for t in ["qemu-system-x86_64", "udhcpd", "radvd", "ip"] {
            assert!(
                tool(t),
                "{t} missing: .ci/run installs qemu-system-x86, ipxe-qemu, udhcpd and radvd"
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
                "start 10.99.0.100\nend 10.99.0.150\ninterface vr\noption subnet 255.255.255.0\noption router 10.99.0.2\nlease_file {}\npidfile {}\n",
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
        quiet(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.seg,
                    "qemu-system-x86_64",
                    "-accel",
                    "tcg",
                    "-m",
                    "256",
                    "-display",
                    "none",
                    "-no-reboot",
                ])
                .arg("-serial")
                .arg(format!("file:{}", serial.display()))
                .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
                .args([
                    "-device",
                    "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
                    "-boot",
                    "n",
                ]),
        )
    }
}

/// The iPXE script both boot services serve: fetch the "installed" marker, then power off.
pub const BOOT_SCRIPT: &[u8] =
    b"#!ipxe\nimgfetch tftp://10.99.0.1/installed-${net0/mac:hexhyp} ||\npoweroff\n";
/// The marker's name for [`MAC`].
pub const MARKER: &str = "installed-52-54-00-12-34-56";

/// cloudlet's boot services (proxyDHCP on `br0` + TFTP on 10.99.0.1) running in the segment
/// on a thread of their own; they serve [`BOOT_SCRIPT`] and the marker, report TFTP events,
/// and stop when dropped.
pub struct CloudletServices {
    pub events: tokio::sync::mpsc::Receiver<cloudlet_pxe::tftp::TftpEvent>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CloudletServices {
    pub fn start(seg: &Segment) -> CloudletServices {
        use cloudlet_pxe::proxy_dhcp::{ProxyConfig, ProxyDhcpServer};
        use cloudlet_pxe::tftp::{Namespace, TftpConfig, TftpServer};
        let (tx, events) = tokio::sync::mpsc::channel(64);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = seg.in_segment(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let ns = Namespace::new()
                    .with_file("boot.ipxe", BOOT_SCRIPT.to_vec())
                    .with_file(MARKER, b"ok\n".to_vec());
                let tftp =
                    TftpServer::bind("10.99.0.1:69".parse().unwrap(), ns, TftpConfig::default())
                        .await
                        .unwrap()
                        .with_events(tx);
                let proxy = ProxyDhcpServer::bind(
                    Some("br0"),
                    ProxyConfig {
                        server: std::net::Ipv4Addr::new(10, 99, 0, 1),
                        bios: "undionly.kpxe".into(),
                        efi_x64: "ipxe.efi".into(),
                        efi_arm64: None,
                        ipxe_script: Some("tftp://10.99.0.1/boot.ipxe".into()),
                        http_boot: None,
                        known: Some(std::collections::HashSet::from([MAC])),
                    },
                )
                .unwrap();
                // Both services stop when `stop` is dropped.
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
        CloudletServices {
            events,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for CloudletServices {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
