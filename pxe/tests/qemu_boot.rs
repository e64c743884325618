//! A VM boots from the network through cloudlet's proxyDHCP and TFTP server, next to a
//! PXE-unaware DHCP server (busybox udhcpd) that hands out the address — all inside network
//! namespaces this test creates: QEMU (software emulation, iPXE ROM, virtio-net) on a tap on a
//! bridge, udhcpd behind a veth, cloudlet's services bound in the bridge's namespace.
#![allow(missing_docs, clippy::disallowed_methods, clippy::print_stderr)]

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudlet_pxe::proxy_dhcp::{ProxyConfig, ProxyDhcpServer};
use cloudlet_pxe::tftp::{Namespace, TftpConfig, TftpEvent, TftpServer};

fn sh(cmd: &str) {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        o.status.success(),
        "`{cmd}`: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn tool(t: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {t}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

struct Env {
    ns: Vec<String>,
    kids: Vec<Child>,
}
impl Drop for Env {
    fn drop(&mut self) {
        for k in &mut self.kids {
            let _ = k.kill();
            let _ = k.wait();
        }
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

#[test]
fn a_vm_boots_over_proxydhcp_and_tftp_next_to_another_dhcp_server() {
    for t in ["qemu-system-x86_64", "udhcpd", "ip"] {
        assert!(
            tool(t),
            "{t} missing: .ci/run installs qemu-system-x86, ipxe-qemu and udhcpd"
        );
    }
    let id = std::process::id() % 100_000;
    let (seg, rtr) = (format!("clseg{id}"), format!("clrtr{id}"));
    let mut env = Env {
        ns: vec![seg.clone(), rtr.clone()],
        kids: Vec::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    sh(&format!("ip netns add {seg} && ip netns add {rtr}"));
    sh(&format!(
        "ip -n {seg} link set lo up && ip -n {rtr} link set lo up"
    ));
    sh(&format!(
        "ip -n {seg} link add br0 type bridge && ip -n {seg} addr add 10.99.0.1/24 dev br0 && ip -n {seg} link set br0 up"
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
    let conf = dir.path().join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "start 10.99.0.100\nend 10.99.0.150\ninterface vr\noption subnet 255.255.255.0\noption router 10.99.0.2\nlease_file {}\npidfile {}\n",
            dir.path().join("leases").display(),
            dir.path().join("udhcpd.pid").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("leases"), b"").unwrap();
    // Router advertisements on the segment: without them iPXE waits ~16 s for IPv6
    // autoconfiguration before it boots.
    sh(&format!("ip -n {rtr} addr add fd00:99::2/64 dev vr nodad"));
    let radvd = dir.path().join("radvd.conf");
    std::fs::write(
        &radvd,
        "interface vr {\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n  MaxRtrAdvInterval 4;\n  prefix fd00:99::/64 {};\n};\n",
    )
    .unwrap();
    env.kids.push(
        Command::new("ip")
            .args(["netns", "exec", &rtr, "radvd", "--nodaemon", "--config"])
            .arg(&radvd)
            .arg("--pidfile")
            .arg(dir.path().join("radvd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    env.kids.push(
        Command::new("ip")
            .args(["netns", "exec", &rtr, "udhcpd", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // cloudlet's boot services, in the bridge's namespace, on a thread of their own.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<TftpEvent>(64);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let netns_path = format!("/run/netns/{seg}");
    let services = std::thread::spawn(move || {
        let f = std::fs::File::open(&netns_path).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let ns = Namespace::new()
                .with_file("boot.ipxe", b"#!ipxe\nimgfetch tftp://10.99.0.1/installed-${net0/mac:hexhyp} ||\npoweroff\n".to_vec())
                .with_file("installed-52-54-00-12-34-56", b"ok\n".to_vec());
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
            let t = tftp.run(async move {
                let _ = w1.changed().await;
            });
            let p = proxy.run(async move {
                let _ = w2.changed().await;
            });
            let (t, p) = tokio::join!(t, p);
            t.unwrap();
            p.unwrap();
        });
    });

    let serial = dir.path().join("serial.log");
    let start = Instant::now();
    env.kids.push(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &seg,
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
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut seen = Vec::new();
    let deadline = Duration::from_secs(120);
    while start.elapsed() < deadline {
        match rx.try_recv() {
            Ok(e) => {
                let done = matches!(&e, TftpEvent::Served { name, .. } if name == "installed-52-54-00-12-34-56");
                seen.push(e);
                if done {
                    break;
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let took = start.elapsed();
    drop(stop_tx);
    services.join().unwrap();
    drop(env);
    assert!(
        seen.iter()
            .any(|e| matches!(e, TftpEvent::Served { name, .. } if name == "boot.ipxe")),
        "the VM never fetched its boot script over TFTP after proxyDHCP; events: {seen:?}"
    );
    assert!(
        seen.iter().any(
            |e| matches!(e, TftpEvent::Served { name, .. } if name == "installed-52-54-00-12-34-56")
        ),
        "the boot script did not run; events: {seen:?}"
    );
    eprintln!("power-on to callback: {:.1} s", took.as_secs_f64());
}
