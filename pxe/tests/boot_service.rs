//! The boot service on loopback, driven by real clients (curl for HTTP, tftp-hpa for TFTP):
//! per-boot scripts and configs, install configs served only to the machine they belong to
//! (token, address, window), range requests, the callback, local boot after the install and
//! the state kept across a restart.
#![allow(missing_docs, clippy::disallowed_methods, clippy::print_stderr)] // the hostile-client tests print what they measure

use cloudlet_testkit::boot as support;
use cloudlet_testkit::hostile::{connect_from, rrq, rss_kib};

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use cloudlet_pxe::install::Phase;
use cloudlet_pxe::service::{BootConfig, BootService, Event, Loader};

struct Running {
    http: String,
    tftp_port: u16,
    events: tokio::sync::broadcast::Receiver<Event>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(root: &std::path::Path, state: &std::path::Path) -> Running {
    start_with(root, state, |_| {})
}

fn start_with(
    root: &std::path::Path,
    state: &std::path::Path,
    tweak: impl FnOnce(&mut BootConfig),
) -> Running {
    let mut cfg = BootConfig::new(Ipv4Addr::LOCALHOST, root.to_path_buf(), state.to_path_buf());
    cfg.proxy_dhcp = false;
    cfg.http_port = 0;
    cfg.tftp_port = 0;
    cfg.loader = Loader::Ipxe;
    tweak(&mut cfg);
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let svc = BootService::bind(&support::boot_lab(), cfg).await.unwrap();
            tx.send((
                svc.http_addr().unwrap(),
                svc.tftp_addr().unwrap(),
                svc.events(),
            ))
            .unwrap();
            svc.run(async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let (http, tftp, events) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Running {
        http: format!("http://{http}"),
        tftp_port: tftp.port(),
        events,
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// `curl` from `from` (a loopback address): status and body.
fn curl(from: &str, args: &[&str]) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-s", "--interface", from, "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// tftp-hpa's client getting `name` in `mode` from the service on loopback: its output and
/// the file it wrote, if any.
fn tftp_run(port: u16, mode: &str, name: &str) -> (std::process::Output, Option<Vec<u8>>) {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new("tftp")
        .current_dir(out.path())
        .args([
            "127.0.0.1",
            &port.to_string(),
            "-m",
            mode,
            "-c",
            "get",
            name,
            "got",
        ])
        .output()
        .unwrap();
    let got = std::fs::read(out.path().join("got")).ok();
    (o, got)
}

/// A file fetched with tftp-hpa's client from the service on loopback.
fn tftp_get(port: u16, name: &str) -> String {
    let (o, got) = tftp_run(port, "binary", name);
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(got.unwrap()).unwrap()
}

fn token_of(text: &str, machine: &str) -> String {
    let key = format!("/install/{machine}/");
    let at = text
        .find(&key)
        .unwrap_or_else(|| panic!("no install URL in {text}"))
        + key.len();
    text[at..].split('/').next().unwrap().to_string()
}

#[test]
fn install_configs_reach_only_their_machine_and_one_install_then_local_boot() {
    assert!(
        support::tool("curl") && support::tool("tftp"),
        "curl and tftp-hpa needed"
    );
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let state = tempfile::tempdir().unwrap();
    let kernel: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(root.join("vmlinuz"), &kernel).unwrap();
    std::fs::write(root.join("initrd.img"), b"initrd").unwrap();
    std::fs::write(top.path().join("secret"), b"top secret").unwrap();
    std::os::unix::fs::symlink(top.path().join("secret"), root.join("escape")).unwrap();
    let mut svc = start(&root, state.path());
    let base = svc.http.clone();
    let me = "127.0.0.1";

    // The per-MAC iPXE script: kernel and initrd over HTTP, install config URL with a token.
    let (code, script) = curl(me, &[&format!("{base}/ipxe/52-54-00-12-34-56")]);
    assert_eq!(code, 200, "{script}");
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(
        script.contains(&format!(
            "kernel {base}/boot/vmlinuz initrd=initrd.img console=ttyS0"
        )),
        "{script}"
    );
    let token = token_of(&script, "vm1");
    assert_eq!(token.len(), 32);
    let (code, again) = curl(me, &[&format!("{base}/ipxe/52:54:00:12:34:56")]);
    assert_eq!(code, 200);
    assert_eq!(
        token_of(&again, "vm1"),
        token,
        "a repeated request is the same boot"
    );
    let (code, _) = curl(me, &[&format!("{base}/ipxe/52-54-00-99-99-99")]);
    assert_eq!(code, 404, "not a machine of the lab");

    // Range requests on the kernel.
    let (code, part) = curl(me, &["-r", "1000-1009", &format!("{base}/boot/vmlinuz")]);
    assert_eq!(code, 206);
    assert_eq!(part.as_bytes(), &kernel[1000..1010]);
    let o = Command::new("curl")
        .args(["-s", &format!("{base}/boot/vmlinuz")])
        .output()
        .unwrap();
    assert_eq!(o.stdout, kernel, "the whole kernel");
    let (code, _) = curl(me, &["-r", "400000-", &format!("{base}/boot/vmlinuz")]);
    assert_eq!(code, 416);

    // Traversal and escapes are refused.
    for bad in [
        "/boot/../secret",
        "/../secret",
        "/boot/escape",
        "/boot/a//b",
        "/boot/%2e%2e/secret",
        "/boot/..%2fsecret",
        "/boot/..\\secret",
        "/../../etc/passwd",
    ] {
        let (code, body) = curl(me, &["--path-as-is", &format!("{base}{bad}")]);
        assert!(code == 403 || code == 404, "{bad}: {code} {body}");
        assert!(!body.contains("top secret"), "{bad}");
    }

    // The install config: only with this boot's token, only from the booting address, only
    // for this machine.
    let cfg_url = format!("{base}/install/vm1/{token}/config");
    let (code, _) = curl("127.0.0.2", &[&cfg_url]);
    assert_eq!(code, 403, "another address with the right token");
    let (code, _) = curl(
        me,
        &[&format!("{base}/install/vm1/{}/config", "0".repeat(32))],
    );
    assert_eq!(code, 403, "another token");
    let (code, _) = curl(me, &[&format!("{base}/install/vm2/{token}/config")]);
    assert_eq!(
        code, 403,
        "another machine's config with this machine's token"
    );
    let (code, ks) = curl(me, &[&cfg_url]);
    assert_eq!(code, 200, "{ks}");
    assert!(
        ks.contains("user --name=ops --groups=sudo,wheel --iscrypted --password=$6$cloudletboot$"),
        "{ks}"
    );
    assert!(ks.contains("echo cloudlet-post-ran\n"), "{ks}");
    assert!(
        ks.contains(&format!("{base}/install/vm1/{token}/done")),
        "{ks}"
    );
    let (code, meta) = curl(me, &[&format!("{base}/install/vm1/{token}/meta-data")]);
    assert_eq!(
        (code, meta.as_str()),
        (200, "instance-id: vm1\nlocal-hostname: vm1\n")
    );
    let (code, vendor) = curl(me, &[&format!("{base}/install/vm1/{token}/vendor-data")]);
    assert_eq!(
        (code, vendor.as_str()),
        (200, ""),
        "optional cloud-init files: empty 200"
    );

    // The report: refused from elsewhere, recorded from the machine.
    let done = format!("{base}/install/vm1/{token}/done");
    let (code, _) = curl("127.0.0.2", &["-d", "installed", &done]);
    assert_eq!(code, 403);
    let (code, _) = curl(me, &["-d", &"x".repeat(10_000), &done]);
    assert_eq!(code, 413, "bodies are bounded");
    // The report carries the installed system's host key (`TYPE:BASE64`, one word).
    let host_key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHbP0VhlGBazcBu3pRQ2t2GqCpt0sDD+0wTHI8YuQf8b";
    let (code, _) = curl(
        me,
        &[
            "-d",
            &format!("installed hostkey={}", host_key.replace(' ', ":")),
            &done,
        ],
    );
    assert_eq!(code, 200);
    let (code, _) = curl(me, &[&cfg_url]);
    assert_eq!(code, 403, "the token ended with the install");

    // Every later boot gets the local disk, over iPXE and over pxelinux's TFTP config.
    let (code, local) = curl(me, &[&format!("{base}/ipxe/52-54-00-12-34-56")]);
    assert_eq!(code, 200);
    assert!(local.contains("exit"), "{local}");
    assert!(!local.contains("/install/"), "{local}");
    let cfg = tftp_get(svc.tftp_port, "pxelinux.cfg/01-52-54-00-12-34-56");
    assert!(cfg.contains("LOCALBOOT 0"), "{cfg}");

    // vm2 was never asked for its boot (the service runs without proxyDHCP here, so its
    // first boot request discovers it): its TFTP config carries its own token.
    let cfg2 = tftp_get(svc.tftp_port, "pxelinux.cfg/01-52-54-00-12-34-57");
    assert!(cfg2.contains("KERNEL vmlinuz\n"), "{cfg2}");
    let t2 = token_of(&cfg2, "vm2");
    assert_ne!(t2, token);

    let mut seen = Vec::new();
    while let Ok(e) = svc.events.try_recv() {
        seen.push(e);
    }
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Reported { machine, ok: true, .. } if machine == "vm1")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Refused { machine, .. } if machine == "vm2")),
        "{seen:?}"
    );
    drop(svc);

    // A restarted service knows vm1 is installed.
    let svc = start(&root, state.path());
    let (code, local) = curl(me, &[&format!("{}/ipxe/52-54-00-12-34-56", svc.http)]);
    assert_eq!(code, 200);
    assert!(local.contains("exit"), "{local}");
    let installs = cloudlet_pxe::install::Installs::open(state.path(), Default::default()).unwrap();
    let m = &installs.machines()["vm1"];
    assert_eq!(m.phase, Phase::Installed);
    assert_eq!(m.host_key.as_deref(), Some(host_key));
    assert!(m.history.last().unwrap().note.is_none(), "{:?}", m.history);
    let phases: Vec<Phase> = m.history.iter().map(|t| t.phase).collect();
    assert_eq!(
        phases,
        vec![
            Phase::Discovered,
            Phase::Booting,
            Phase::Installing,
            Phase::Installed
        ]
    );
}

fn http_addr(svc: &Running) -> std::net::SocketAddr {
    svc.http.trim_start_matches("http://").parse().unwrap()
}

#[test]
fn slow_bodies_slow_headers_and_clients_that_never_read_are_bounded() {
    use std::io::{Read as _, Write as _};
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // A kernel larger than any socket buffer, for the client that never reads.
    std::fs::write(root.join("vmlinuz"), vec![b'k'; 64 << 20]).unwrap();
    std::fs::write(root.join("initrd.img"), b"initrd").unwrap();
    let state = tempfile::tempdir().unwrap();
    // The bodies below take a while to send on a loaded machine: their time limit is long,
    // the idle limit (what the client that never reads meets) short.
    let svc = start_with(&root, state.path(), |c| {
        c.http.idle = Duration::from_secs(5);
        c.http.body_timeout = Duration::from_secs(120);
        c.http.header_timeout = Duration::from_secs(60);
    });
    let addr = http_addr(&svc);
    let before = rss_kib(None);

    // 100 clients, each sending a 4,000-byte body one byte per segment.
    let mut conns: Vec<std::net::TcpStream> = (0..100u8)
        .map(|i| {
            let mut c = connect_from(Ipv4Addr::new(127, 0, 1, i + 1), addr).unwrap();
            c.write_all(
                b"POST /install/vm1/0123/done HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n",
            )
            .unwrap();
            c
        })
        .collect();
    for _ in 0..4000 {
        for c in &mut conns {
            c.write_all(b"x").unwrap();
        }
    }
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 403", "{}", String::from_utf8_lossy(&head));
    }
    let grown = rss_kib(None).saturating_sub(before);
    eprintln!("resident memory grew by {grown} KiB for 100 one-byte-at-a-time bodies");
    // Before the fix: about 27 MB per connection (2.7 GB here).
    assert!(grown < 64 * 1024, "grew by {grown} KiB");
    drop(conns);

    // Slow headers from one address hold at most its share of the slots: 300 connections
    // that never finish their headers, then a normal request from elsewhere is answered.
    let slow: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| {
            let mut c = connect_from(Ipv4Addr::new(127, 0, 2, 1), addr).unwrap();
            c.write_all(b"GET /ipxe/52-54-00-12-34-56 HTTP/1.1\r\nHo")
                .ok()?;
            Some(c)
        })
        .collect();
    let (code, script) = curl(
        "127.0.0.1",
        &[&format!("{}/ipxe/52-54-00-12-34-56", svc.http)],
    );
    assert_eq!(code, 200, "{script}");
    drop(slow);

    // A client that asks for the kernel and never reads: the server gives up on it.
    let mut lazy = connect_from(Ipv4Addr::new(127, 0, 3, 1), addr).unwrap();
    lazy.write_all(b"GET /boot/vmlinuz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(8));
    lazy.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match lazy.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(
        got < 64 << 20,
        "the whole kernel was kept for a client that did not read"
    );
}

#[test]
fn tftp_netascii_streams_long_timeouts_are_refused_and_fifos_never_block() {
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let text = cloudlet_testkit::hostile::netascii_text(16 << 20);
    std::fs::write(root.join("big.txt"), &text).unwrap();
    std::fs::write(root.join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(root.join("initrd.img"), b"initrd").unwrap();
    let st = Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status()
        .unwrap();
    assert!(st.success());
    let state = tempfile::tempdir().unwrap();
    let svc = start(&root, state.path());
    let server = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, svc.tftp_port));
    let client = |from: Ipv4Addr| {
        let s = std::net::UdpSocket::bind((from, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };

    // 64 netascii sessions of a 16 MiB file left hanging after their first block.
    let before = rss_kib(None);
    let hanging: Vec<std::net::UdpSocket> = (0..64u8)
        .map(|i| {
            let s = client(Ipv4Addr::new(127, 0, 4, i + 1));
            s.send_to(&rrq("big.txt", "netascii", &[]), server).unwrap();
            let mut buf = [0u8; 600];
            let (n, _) = s.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..2], &[0, 3], "DATA expected, got {:?}", &buf[..n]);
            s
        })
        .collect();
    let grown = rss_kib(None).saturating_sub(before);
    eprintln!("resident memory grew by {grown} KiB for 64 netascii sessions of 16 MiB");
    assert!(grown < 64 * 1024, "grew by {grown} KiB");
    drop(hanging);

    // A whole netascii transfer reads back as the file (tftp-hpa converts it back).
    let (o, got) = tftp_run(svc.tftp_port, "netascii", "big.txt");
    assert!(o.status.success(), "{o:?}");
    assert!(got.unwrap() == text, "netascii round trip differs");

    // `timeout=255` is not granted, and one address gets at most its share of sessions.
    let greedy = client(Ipv4Addr::new(127, 0, 5, 1));
    let mut busy = 0;
    for _ in 0..16 {
        let s = client(Ipv4Addr::new(127, 0, 5, 1));
        s.send_to(
            &rrq(
                "big.txt",
                "octet",
                &[("timeout", "255"), ("blksize", "512")],
            ),
            server,
        )
        .unwrap();
        let mut buf = [0u8; 600];
        let (n, _) = s.recv_from(&mut buf).unwrap();
        let reply = &buf[..n];
        if reply[..2] == [0, 5] {
            busy += 1;
        } else {
            assert_eq!(&reply[..2], &[0, 6], "OACK expected");
            assert!(
                !String::from_utf8_lossy(reply).contains("timeout"),
                "timeout 255 was granted"
            );
        }
        std::mem::forget(s);
    }
    drop(greedy);
    assert_eq!(busy, 8, "sessions beyond the per-client share are refused");
    // Others are still served.
    assert_eq!(tftp_get(svc.tftp_port, "vmlinuz"), "kernel");

    // A FIFO is not served, and blocks nothing.
    let (o, _) = tftp_run(svc.tftp_port, "binary", "fifo");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(said.contains("not found"), "{o:?}");
    let (code, _) = curl(
        "127.0.0.1",
        &["--max-time", "10", &format!("{}/boot/fifo", svc.http)],
    );
    assert_eq!(code, 404);
    assert_eq!(tftp_get(svc.tftp_port, "vmlinuz"), "kernel");
}

#[test]
fn another_address_cannot_take_over_a_boot_in_progress() {
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(root.join("initrd.img"), b"initrd").unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut svc = start(&root, state.path());
    let url = format!("{}/ipxe/52-54-00-12-34-56", svc.http);
    let (code, script) = curl("127.0.0.1", &[&url]);
    assert_eq!(code, 200, "{script}");
    let token = token_of(&script, "vm1");
    // Another address asks for the same machine's script: refused, reported.
    let (code, body) = curl("127.0.0.2", &[&url]);
    assert_ne!(code, 200, "{body}");
    assert!(!body.contains(&token));
    let mut refused = false;
    while let Ok(e) = svc.events.try_recv() {
        if let Event::Refused { peer, why, .. } = e {
            refused |= peer == std::net::IpAddr::from(Ipv4Addr::new(127, 0, 0, 2))
                && why.contains("already installing");
        }
    }
    assert!(refused, "the attempt is reported as an event");
    // The real machine's token still works.
    let (code, config) = curl(
        "127.0.0.1",
        &[&format!("{}/install/vm1/{token}/config", svc.http)],
    );
    assert_eq!(code, 200, "{config}");
    // A second service on the same state directory is refused.
    let cfg = BootConfig::new(
        Ipv4Addr::LOCALHOST,
        root.clone(),
        state.path().to_path_buf(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let second = rt.block_on(BootService::bind(&support::boot_lab(), cfg));
    let Err(e) = second else {
        panic!("a second service on the same state directory was allowed")
    };
    assert!(
        e.to_string().contains("in use by a running boot service"),
        "{e}"
    );
}

/// dnsmasq's TFTP server (port 69 on an address of its own on loopback), serving `root`.
struct DnsmasqTftp(std::process::Child);

impl Drop for DnsmasqTftp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dnsmasq_tftp(ip: &str, root: &std::path::Path) -> DnsmasqTftp {
    assert!(
        cloudlet_testkit::shell::tool("dnsmasq"),
        ".ci/run installs dnsmasq-base"
    );
    DnsmasqTftp(
        Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &format!("--listen-address={ip}"),
                "--port=0",
                "--pid-file=",
                "--user=root",
                "--conf-file=/dev/null",
                "--enable-tftp",
                &format!("--tftp-root={}", root.display()),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `cloudlet doctor`'s boot check: the menu read over TFTP from cloudlet's boot service is the
/// lab's; another lab's menu is a warning; a real TFTP server (dnsmasq) without it, or nothing
/// listening, a failure. A file of many blocks from dnsmasq reads back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reads_the_boot_menu_over_tftp_and_compares_it_with_the_labs() {
    use cloudlet_core::doctor::Status;
    use cloudlet_pxe::doctor::{MENU, menu, read};
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let svc = start(root.path(), state.path());
    let at: std::net::SocketAddr = ([127, 0, 0, 1], svc.tftp_port).into();
    let lab = support::boot_lab();
    let f = menu(&lab, at, Duration::from_secs(5)).await;
    assert_eq!(f.status, Status::Ok, "{f:?}");
    let rendered = cloudlet_pxe::render::pxelinux_menu(&lab);
    assert_eq!(
        f.evidence,
        format!(
            "{MENU} read over TFTP: {} bytes, as the lab renders it",
            rendered.len()
        )
    );
    let mut other = lab.clone();
    other.pxe.as_mut().unwrap().menu.title = Some("another lab".into());
    let f = menu(&other, at, Duration::from_secs(5)).await;
    assert_eq!(f.status, Status::Warn, "{f:?}");
    assert!(f.fix.unwrap().contains("restart `cloudlet boot`"));

    // dnsmasq: a file of seven blocks and a bit reads back whole; the menu it lacks is refused.
    let ip = format!("127.84.{}.1", std::process::id() % 250);
    let files = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..3_700u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(files.path().join("big.bin"), &big).unwrap();
    let _tftp = dnsmasq_tftp(&ip, files.path());
    let server: std::net::SocketAddr = format!("{ip}:69").parse().unwrap();
    let mut got = Err(cloudlet_pxe::doctor::ReadError::TooLong);
    for _ in 0..50 {
        got = read(server, "big.bin", Duration::from_secs(2)).await;
        if got.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.unwrap(), big);
    let f = menu(&lab, server, Duration::from_secs(5)).await;
    assert_eq!(f.status, Status::Fail, "{f:?}");
    assert!(
        f.evidence.starts_with(&format!(
            "{MENU} over TFTP: the server refused it: TFTP error 1"
        )),
        "{f:?}"
    );

    // Nothing listening: a failure within the limit.
    drop(svc);
    let f = menu(&lab, at, Duration::from_secs(2)).await;
    assert_eq!(f.status, Status::Fail, "{f:?}");
    assert_eq!(f.evidence, format!("{MENU} over TFTP: no answer within 2s"));
}
