//! TFTP as users run it: the `cloudlet` binary's `pxe serve --files DIR --no-http` against
//! tftpd-hpa (Debian's `in.tftpd`) and dnsmasq's TFTP server serving the same directory on
//! loopback, the clients interleaved round by round (these machines are noisy), medians and
//! ratios printed.
//!
//! 1. 64 MiB, one transfer at a time: curl at blksize 512 and 1468, atftp at blksize 1432,
//!    lockstep on every server; atftp with windowsize 16 (RFC 7440) on cloudlet against the
//!    others' lockstep at the same blksize (tftpd-hpa 5.2 has no windowsize; dnsmasq's TFTP
//!    is asked for it and answers in lockstep).
//! 2. 200 transfers of 1 MiB at once, from 200 client addresses (127.0.1.1 ..), as 200
//!    machines booting: every transfer's time, median and p99 per server, and the memory of
//!    cloudlet's process before, at its peak and after the burst.
//!
//! Targets (the network boot issue): lockstep ≥ 1.5× tftpd-hpa at the same blksize,
//! windowsize 16 ≥ 5× tftpd-hpa's lockstep, the burst all complete with a median no worse than
//! tftpd-hpa's, p99 ≤ 2× the median and memory back to its start.
//!
//! Needs Debian's tftpd-hpa, dnsmasq, atftp and curl; dnsmasq's TFTP port is fixed, so it
//! serves 127.0.0.2:69. `cargo bench -p cloudlet-cli --bench tftp`
//! (`CLOUDLET_BENCH_ROUNDS`, default 5).
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIG: u64 = 64 << 20;
const ONE: u64 = 1 << 20;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client's command fetching `name` from `addr` into `to`.
#[derive(Clone, Copy)]
enum Client {
    Curl { blksize: u16 },
    Atftp { blksize: u16, window: u16 },
}

impl Client {
    fn command(self, addr: SocketAddr, name: &str, to: &Path, from: Option<&str>) -> Command {
        match self {
            Client::Curl { blksize } => {
                let mut c = Command::new("curl");
                c.args(["-sS", "--fail", "--tftp-blksize", &blksize.to_string()]);
                if let Some(ip) = from {
                    c.args(["--interface", ip]);
                }
                c.arg(format!("tftp://{addr}/{name}")).arg("-o").arg(to);
                c
            }
            Client::Atftp { blksize, window } => {
                let mut c = Command::new("atftp");
                c.args(["--option", &format!("blksize {blksize}")]);
                if window > 1 {
                    c.args(["--option", &format!("windowsize {window}")]);
                }
                c.args(["-g", "-r", name, "-l"])
                    .arg(to)
                    .arg(addr.ip().to_string())
                    .arg(addr.port().to_string());
                c
            }
        }
    }

    /// One transfer, timed; the file must arrive whole.
    fn fetch(self, addr: SocketAddr, name: &str, to: &Path, len: u64) -> Duration {
        let mut cmd = self.command(addr, name, to, None);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let t = Instant::now();
        let st = cmd.status().expect("the client runs");
        let took = t.elapsed();
        assert!(st.success(), "{name} from {addr} failed");
        assert_eq!(std::fs::metadata(to).map(|m| m.len()).unwrap_or(0), len);
        std::fs::remove_file(to).unwrap();
        took
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// 200 transfers of `one.bin` at once, each from an address of its own; every transfer's
/// time and the number that failed.
fn burst(addr: SocketAddr, out: &Path, tag: &str) -> (Vec<Duration>, usize) {
    let children: Vec<(Instant, PathBuf, Child)> = (1..=200u32)
        .map(|i| {
            let to = out.join(format!("{tag}-{i}"));
            let from = format!("127.0.1.{i}");
            let child = Client::Curl { blksize: 1468 }
                .command(addr, "one.bin", &to, Some(&from))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("curl starts");
            (Instant::now(), to, child)
        })
        .collect();
    let mut times = Vec::new();
    let mut failed = 0;
    for (start, to, mut c) in children {
        let ok = c.wait().unwrap().success();
        times.push(start.elapsed());
        let whole = std::fs::metadata(&to).is_ok_and(|m| m.len() == ONE);
        if !ok || !whole {
            failed += 1;
        }
        let _ = std::fs::remove_file(&to);
    }
    (times, failed)
}

fn main() {
    for tool in ["in.tftpd", "dnsmasq", "atftp", "curl"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "{tool} is missing: install Debian's tftpd-hpa, dnsmasq, atftp and curl"
        );
    }
    let rounds: usize = std::env::var("CLOUDLET_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::Builder::new()
        .prefix("cloudlet-tftp-bench")
        .tempdir()
        .unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let big: Vec<u8> = (0..BIG as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::fs::write(root.join("one.bin"), &big[..ONE as usize]).unwrap();
    drop(big);
    // tftpd-hpa drops to user `tftp`: the tree must be world-readable.
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir.path())
        .status()
        .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    let hpa: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let _tftpd = Killed(
        Command::new("in.tftpd")
            .args(["-L", "-a", &hpa.to_string(), "-s"])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("in.tftpd starts"),
    );
    // dnsmasq's TFTP port is fixed (69): on an address of its own.
    let dnsm: SocketAddr = "127.0.0.2:69".parse().unwrap();
    let _dnsmasq = Killed(
        Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--port=0",
                "--conf-file=/dev/null",
                "--bind-interfaces",
                "--listen-address=127.0.0.2",
                "--user=root",
                "--enable-tftp",
                "--tftp-no-fail",
                "--pid-file=",
            ])
            .arg(format!("--tftp-root={}", root.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts"),
    );
    let ours: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let cloudlet = Killed(
        Command::new(env!("CARGO_BIN_EXE_cloudlet"))
            .args(["pxe", "serve", "--files"])
            .arg(&root)
            .args(["--no-http", "--address", "127.0.0.1", "--tftp-port"])
            .arg(ours.port().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cloudlet pxe serve starts"),
    );
    let pid = cloudlet.0.id();
    // Both answer before anything is timed.
    let probe = out.join("probe");
    for addr in [hpa, dnsm, ours] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = Client::Curl { blksize: 1468 }
                .command(addr, "one.bin", &probe, None)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "{addr} does not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // 1. One transfer at a time, interleaved: each round runs every case on both servers,
    //    the server order alternating by round.
    let cases: [(&str, Client, Client); 4] = [
        (
            "curl, blksize 512",
            Client::Curl { blksize: 512 },
            Client::Curl { blksize: 512 },
        ),
        (
            "curl, blksize 1468",
            Client::Curl { blksize: 1468 },
            Client::Curl { blksize: 1468 },
        ),
        (
            "atftp, blksize 1432",
            Client::Atftp {
                blksize: 1432,
                window: 1,
            },
            Client::Atftp {
                blksize: 1432,
                window: 1,
            },
        ),
        (
            "atftp, blksize 1432; cloudlet windowsize 16",
            Client::Atftp {
                blksize: 1432,
                window: 1,
            },
            Client::Atftp {
                blksize: 1432,
                window: 16,
            },
        ),
    ];
    // Per case: tftpd-hpa, dnsmasq, cloudlet.
    let mut times: Vec<[Vec<Duration>; 3]> = vec![Default::default(); 4];
    let to = out.join("big.bin");
    for round in 0..rounds {
        for (i, (_, theirs, mine)) in cases.iter().enumerate() {
            // The servers' order turns by round.
            for k in 0..3 {
                let s = (k + round) % 3;
                let took = match s {
                    0 => theirs.fetch(hpa, "big.bin", &to, BIG),
                    1 => theirs.fetch(dnsm, "big.bin", &to, BIG),
                    _ => mine.fetch(ours, "big.bin", &to, BIG),
                };
                times[i][s].push(took);
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    println!(
        "64 MiB over loopback, one transfer at a time, median of {rounds} interleaved rounds:"
    );
    println!(
        "| client                                      | tftpd-hpa s | dnsmasq s | cloudlet s | cloudlet MiB/s | vs tftpd-hpa | vs dnsmasq | target |"
    );
    println!(
        "|---------------------------------------------|------------:|----------:|-----------:|---------------:|-------------:|-----------:|-------:|"
    );
    for (i, (name, ..)) in cases.iter().enumerate() {
        let [a, d, b] = &mut times[i];
        let (a, d, b) = (median(a), median(d), median(b));
        println!(
            "| {name:<43} | {:>11.2} | {:>9.2} | {:>10.2} | {:>14.1} | {:>11.2}x | {:>9.2}x | {:>6} |",
            a.as_secs_f64(),
            d.as_secs_f64(),
            b.as_secs_f64(),
            64.0 / b.as_secs_f64(),
            a.as_secs_f64() / b.as_secs_f64(),
            d.as_secs_f64() / b.as_secs_f64(),
            if i == 3 { ">= 5x" } else { ">= 1.5x" }
        );
    }

    // 2. The burst, twice per server, interleaved.
    let rss_start = rss_kib(pid);
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_start));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let (mut hpa_times, mut our_times) = (Vec::new(), Vec::new());
    let (mut hpa_failed, mut our_failed) = (0, 0);
    for round in 0..2 {
        let mut run_hpa = |n| {
            let (t, f) = burst(hpa, &out, &format!("hpa{n}"));
            hpa_times.extend(t);
            hpa_failed += f;
        };
        let mut run_ours = |n| {
            let (t, f) = burst(ours, &out, &format!("ours{n}"));
            our_times.extend(t);
            our_failed += f;
        };
        if round % 2 == 0 {
            run_hpa(round);
            run_ours(round);
        } else {
            run_ours(round);
            run_hpa(round);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let rss_end = rss_kib(pid);
    let stat = |t: &mut Vec<Duration>| {
        t.sort();
        (t[t.len() / 2], t[t.len() * 99 / 100])
    };
    let (hm, hp) = stat(&mut hpa_times);
    let (om, op) = stat(&mut our_times);
    println!();
    println!(
        "200 transfers of 1 MiB at once (curl, blksize 1468, 200 client addresses), 2 bursts per server interleaved:"
    );
    println!("| server    | complete | failed | median s | p99 s | p99/median |");
    println!("|-----------|---------:|-------:|---------:|------:|-----------:|");
    for (name, t, f, m, p) in [
        ("tftpd-hpa", &hpa_times, hpa_failed, hm, hp),
        ("cloudlet", &our_times, our_failed, om, op),
    ] {
        println!(
            "| {name:<9} | {:>8} | {f:>6} | {:>8.3} | {:>5.3} | {:>9.2}x |",
            t.len() - f,
            m.as_secs_f64(),
            p.as_secs_f64(),
            p.as_secs_f64() / m.as_secs_f64()
        );
    }
    println!(
        "cloudlet median / tftpd-hpa median: {:.2} (target <= 1); cloudlet's memory: {rss_start} KiB at the start, {} KiB at the peak, {rss_end} KiB after the bursts",
        om.as_secs_f64() / hm.as_secs_f64(),
        peak.load(std::sync::atomic::Ordering::Relaxed)
    );
}
