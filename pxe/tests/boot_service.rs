//! The boot service on loopback, driven by real clients (curl for HTTP, tftp-hpa for TFTP):
//! per-boot scripts and configs, install configs served only to the machine they belong to
//! (token, address, window), range requests, the callback, local boot after the install and
//! the state kept across a restart.
#![allow(missing_docs, clippy::disallowed_methods)]

mod support;

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
    let mut cfg = BootConfig::new(Ipv4Addr::LOCALHOST, root.to_path_buf(), state.to_path_buf());
    cfg.proxy_dhcp = false;
    cfg.http_port = 0;
    cfg.tftp_port = 0;
    cfg.loader = Loader::Ipxe;
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

/// A file fetched with tftp-hpa's client from the service on loopback.
fn tftp_get(port: u16, name: &str) -> String {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new("tftp")
        .current_dir(out.path())
        .args([
            "127.0.0.1",
            &port.to_string(),
            "-m",
            "binary",
            "-c",
            "get",
            name,
            "got",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    std::fs::read_to_string(out.path().join("got")).unwrap()
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
    let (code, _) = curl(me, &["-d", "installed", &done]);
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
