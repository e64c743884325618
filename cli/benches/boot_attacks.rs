//! The boot service under the attacks of the hardening review, run against `cloudlet pxe
//! serve` as users run it (the CLI binary on loopback, serving the seed lab): for each attack,
//! the server process's resident memory before, at its peak during and after the attack, and
//! how many ordinary requests from another address were answered while it went on.
//!
//! `cargo bench -p cloudlet-cli --bench boot_attacks`
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods
)] // a bench binary prints its table and sleeps between samples

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cloudlet_testkit::hostile::{connect_from, rrq, rss_kib, slow_headers};

struct Server {
    child: Child,
    http: SocketAddr,
    tftp: SocketAddr,
    /// Lines the server has logged so far (its stderr, drained by a thread).
    logged: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(root: &Path, state: &Path) -> Server {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudlet"))
        .arg("--state-dir")
        .arg(state)
        .args(["pxe", "serve"])
        .arg(&seed)
        .args([
            "--address",
            "127.0.0.1",
            "--no-proxy-dhcp",
            "--http-port",
            "0",
            "--tftp-port",
            "0",
            "--root",
        ])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cloudlet runs");
    let mut banner = String::new();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    err.read_line(&mut banner).unwrap();
    let logged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = logged.clone();
    std::thread::spawn(move || {
        for _ in err.lines() {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let field = |name: &str| -> SocketAddr {
        banner
            .split(&format!("{name} "))
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} address in {banner}"))
    };
    Server {
        http: field("HTTP"),
        tftp: field("TFTP"),
        child,
        logged,
    }
}

/// An ordinary request from 127.0.0.1 while the attack goes on: answered with 200?
fn ordinary(http: SocketAddr) -> bool {
    let Ok(mut c) = connect_from(Ipv4Addr::LOCALHOST, http) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
    if c.write_all(
        b"GET /boot/Ubuntu20.04/initrd.gz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    c.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

/// An ordinary TFTP read of a small file from 127.0.0.1: completed?
fn ordinary_tftp(tftp: SocketAddr) -> bool {
    let Ok(s) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.send_to(&rrq("Ubuntu20.04/initrd.gz", "octet", &[]), tftp)
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 600];
    match s.recv_from(&mut buf) {
        Ok((n, from)) if n >= 4 && buf[..2] == [0, 3] => {
            let _ = s.send_to(&[0, 4, buf[2], buf[3]], from);
            true
        }
        _ => false,
    }
}

struct Row {
    attack: &'static str,
    before: u64,
    peak: u64,
    after: u64,
    answered: usize,
    asked: usize,
    logged: usize,
}

/// Runs `attack` (which returns what keeps the attack alive), probes with `probe` ten times
/// while sampling memory, then ends the attack and samples once more.
fn measure<T>(
    attack: &'static str,
    srv: &Server,
    start: impl FnOnce() -> T,
    probe: impl Fn() -> bool,
) -> Row {
    let pid = srv.child.id();
    let lines = || srv.logged.load(std::sync::atomic::Ordering::Relaxed);
    let logged_before = lines();
    let before = rss_kib(Some(pid));
    let held = start();
    let mut peak = rss_kib(Some(pid));
    let mut answered = 0;
    for _ in 0..10 {
        if probe() {
            answered += 1;
        }
        peak = peak.max(rss_kib(Some(pid)));
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(held);
    std::thread::sleep(Duration::from_secs(2));
    Row {
        attack,
        before,
        peak,
        after: rss_kib(Some(pid)),
        answered,
        asked: 10,
        logged: lines() - logged_before,
    }
}

fn main() {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = root.path().join("Ubuntu20.04");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("linux"), vec![b'k'; 64 << 20]).unwrap();
    std::fs::write(dir.join("initrd.gz"), b"initrd").unwrap();
    let text = cloudlet_testkit::hostile::netascii_text(16 << 20);
    std::fs::write(root.path().join("big.txt"), &text).unwrap();
    let srv = serve(root.path(), state.path());
    let (http, tftp) = (srv.http, srv.tftp);
    let mut rows = Vec::new();

    rows.push(measure(
        "100 bodies sent one byte at a time",
        &srv,
        || {
            let mut conns: Vec<TcpStream> = (0..100u8)
                .filter_map(|i| connect_from(Ipv4Addr::new(127, 0, 1, i + 1), http).ok())
                .collect();
            for c in &mut conns {
                let _ = c.write_all(b"POST /install/k8s-node1/0123/done HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n");
            }
            for _ in 0..3999 {
                for c in &mut conns {
                    let _ = c.write_all(b"x");
                }
            }
            conns
        },
        || ordinary(http),
    ));
    rows.push(measure(
        "600 slow headers from one address",
        &srv,
        || {
            slow_headers(
                http,
                "/boot/Ubuntu20.04/linux",
                (0..600).map(|_| Ipv4Addr::new(127, 0, 2, 1)),
            )
        },
        || ordinary(http),
    ));
    rows.push(measure(
        "600 slow headers from 600 addresses",
        &srv,
        || {
            slow_headers(
                http,
                "/boot/Ubuntu20.04/linux",
                (0..600u32)
                    .map(|i| Ipv4Addr::new(127, 0, 3 + (i / 250) as u8, 1 + (i % 250) as u8)),
            )
        },
        || ordinary(http),
    ));
    rows.push(measure(
        "50 clients that never read a 64 MiB kernel",
        &srv,
        || {
            (0..50u8)
                .filter_map(|i| {
                    let mut c = connect_from(Ipv4Addr::new(127, 0, 6, i + 1), http).ok()?;
                    c.write_all(b"GET /boot/Ubuntu20.04/linux HTTP/1.1\r\nHost: x\r\n\r\n")
                        .ok()?;
                    Some(c)
                })
                .collect::<Vec<_>>()
        },
        || ordinary(http),
    ));
    rows.push(measure(
        "256 netascii reads of 16 MiB left hanging",
        &srv,
        || {
            (0..256u32)
                .filter_map(|i| {
                    let s = UdpSocket::bind((
                        Ipv4Addr::new(127, 0, 7 + (i / 200) as u8, 1 + (i % 200) as u8),
                        0,
                    ))
                    .ok()?;
                    s.send_to(&rrq("big.txt", "netascii", &[]), tftp).ok()?;
                    Some(s)
                })
                .collect::<Vec<_>>()
        },
        || ordinary_tftp(tftp),
    ));
    rows.push(measure(
        "256 sessions asking timeout=255, one address",
        &srv,
        || {
            (0..256)
                .filter_map(|_| {
                    let s = UdpSocket::bind((Ipv4Addr::new(127, 0, 9, 1), 0)).ok()?;
                    s.send_to(&rrq("big.txt", "octet", &[("timeout", "255")]), tftp)
                        .ok()?;
                    Some(s)
                })
                .collect::<Vec<_>>()
        },
        || ordinary_tftp(tftp),
    ));

    println!(
        "`cloudlet pxe serve` under attack (resident memory of the server process, MiB; ordinary requests from another address answered during the attack)"
    );
    println!(
        "{:<46} {:>8} {:>8} {:>8} {:>10} {:>11}",
        "attack", "before", "peak", "after", "answered", "log lines"
    );
    for r in &rows {
        println!(
            "{:<46} {:>8.1} {:>8.1} {:>8.1} {:>7}/{} {:>11}",
            r.attack,
            r.before as f64 / 1024.0,
            r.peak as f64 / 1024.0,
            r.after as f64 / 1024.0,
            r.answered,
            r.asked,
            r.logged
        );
    }
    assert!(
        srv.child.id() > 0 && rss_kib(Some(srv.child.id())) > 0,
        "the server died during the attacks"
    );
}
