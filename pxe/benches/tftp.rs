//! TFTP benchmark, side by side in one run (issue "PXE", measurements b and c):
//!
//! 1. a 64 MiB file over loopback, fetched by atftp from tftpd-hpa (the baseline, lockstep)
//!    and from cloudlet's server at the same block size (1432, iPXE's largest), then from
//!    cloudlet with windowsize 16 (RFC 7440; tftpd-hpa 5.2 has no windowsize);
//! 2. 200 atftp clients at once fetching 1 MiB each from cloudlet: all complete, median and
//!    p99 time, the server's memory.
//!
//! Needs Debian's tftpd-hpa and atftp (`.ci/run` installs them). `cargo bench -p cloudlet-pxe`.
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods
)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudlet_pxe::tftp::{Namespace, TftpConfig, TftpServer};

fn atftp(addr: SocketAddr, remote: &str, local: &Path, opts: &[&str]) -> Duration {
    let mut cmd = Command::new("atftp");
    for o in opts {
        cmd.args(["--option", o]);
    }
    cmd.args(["-g", "-r", remote, "-l"])
        .arg(local)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let st = cmd.status().expect("atftp runs");
    let took = t.elapsed();
    assert!(st.success(), "atftp {opts:?} from {addr} failed");
    took
}

/// A minimal TFTP client (blocking, in this process): RRQ with blksize and windowsize, ACK at
/// every window's end; returns the time and the bytes. Fast enough that the server, not the
/// client, sets the pace.
fn bench_get(addr: SocketAddr, name: &str, blksize: usize, window: u16) -> (Duration, Vec<u8>) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rrq = vec![0, 1];
    for part in [name, "octet", "blksize", &blksize.to_string()] {
        rrq.extend_from_slice(part.as_bytes());
        rrq.push(0);
    }
    if window > 1 {
        for part in ["windowsize", &window.to_string()] {
            rrq.extend_from_slice(part.as_bytes());
            rrq.push(0);
        }
    }
    let t = Instant::now();
    sock.send_to(&rrq, addr).unwrap();
    let mut buf = vec![0u8; blksize + 4];
    let (n, peer) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..2], &[0, 6], "an OACK");
    let _ = n;
    sock.connect(peer).unwrap();
    sock.send(&[0, 4, 0, 0]).unwrap();
    let mut data = Vec::with_capacity(64 << 20);
    let mut expect: u16 = 1;
    let mut in_window = 0u16;
    loop {
        let n = sock.recv(&mut buf).expect("the server keeps sending");
        assert_eq!(&buf[..2], &[0, 3], "DATA");
        let block = u16::from_be_bytes([buf[2], buf[3]]);
        assert_eq!(block, expect, "in order on loopback");
        data.extend_from_slice(&buf[4..n]);
        in_window += 1;
        let last = n - 4 < blksize;
        if last || in_window == window {
            let b = block.to_be_bytes();
            sock.send(&[0, 4, b[0], b[1]]).unwrap();
            in_window = 0;
        }
        if last {
            return (t.elapsed(), data);
        }
        expect = expect.wrapping_add(1);
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

struct Tftpd(Child);
impl Drop for Tftpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    for tool in ["atftp", "in.tftpd"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "{tool} is missing: install Debian's atftp and tftpd-hpa"
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("cloudlet-tftp-bench")
        .tempdir()
        .unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let big: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::fs::write(root.join("one.bin"), &big[..1 << 20]).unwrap();
    // tftpd-hpa drops to user `tftp`: the tree must be world-readable.
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir.path())
        .status()
        .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ns = Namespace::new().with_root(&root).unwrap();
    let cfg = TftpConfig {
        max_sessions: 512,
        ..TftpConfig::default()
    };
    let server = rt
        .block_on(TftpServer::bind("127.0.0.1:0".parse().unwrap(), ns, cfg))
        .unwrap();
    let ours = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = rt.spawn(server.run(async {
        let _ = stopped.await;
    }));

    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let theirs: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _tftpd = Tftpd(
        Command::new("in.tftpd")
            .args(["-L", "-a", &theirs.to_string(), "-s"])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("in.tftpd starts"),
    );
    std::thread::sleep(Duration::from_millis(300));

    let runs = 3;
    let measure = |addr: SocketAddr, opts: &[&str]| {
        let times: Vec<Duration> = (0..runs)
            .map(|_| {
                let f = out.join("big.bin");
                let t = atftp(addr, "big.bin", &f, opts);
                assert_eq!(std::fs::metadata(&f).unwrap().len(), big.len() as u64);
                std::fs::remove_file(&f).unwrap();
                t
            })
            .collect();
        median(times)
    };
    let hpa = measure(theirs, &["blksize 1432"]);
    let lock = measure(ours, &["blksize 1432"]);
    let win = measure(ours, &["blksize 1432", "windowsize 16"]);
    let mbps = |d: Duration| 64.0 / d.as_secs_f64();
    let ratio = |d: Duration| hpa.as_secs_f64() / d.as_secs_f64();
    println!("64 MiB over loopback, atftp client, median of {runs}:");
    println!("| server                         | time s | MiB/s  | vs tftpd-hpa |");
    println!("|--------------------------------|-------:|-------:|-------------:|");
    println!(
        "| tftpd-hpa 5.2, blksize 1432    | {:>6.2} | {:>6.1} |        1.00x |",
        hpa.as_secs_f64(),
        mbps(hpa)
    );
    println!(
        "| cloudlet, blksize 1432         | {:>6.2} | {:>6.1} | {:>11.2}x |",
        lock.as_secs_f64(),
        mbps(lock),
        ratio(lock)
    );
    println!(
        "| cloudlet, blksize 1432, win 16 | {:>6.2} | {:>6.1} | {:>11.2}x |",
        win.as_secs_f64(),
        mbps(win),
        ratio(win)
    );
    println!("targets: same blksize >= 1.5x, windowsize 16 >= 5x");

    // The same with a client that keeps up with any server (atftp's own per-block work sets
    // the pace above).
    let fast = |addr: SocketAddr, window: u16| {
        median(
            (0..runs)
                .map(|_| {
                    let (t, got) = bench_get(addr, "big.bin", 1432, window);
                    assert!(got == big, "the file arrived intact");
                    t
                })
                .collect(),
        )
    };
    let f_hpa = fast(theirs, 1);
    let f_lock = fast(ours, 1);
    let f_win = fast(ours, 16);
    let f_ratio = |d: Duration| f_hpa.as_secs_f64() / d.as_secs_f64();
    println!();
    println!("64 MiB over loopback, the bench's own minimal client, median of {runs}:");
    println!("| server                         | time s | MiB/s  | vs tftpd-hpa |");
    println!("|--------------------------------|-------:|-------:|-------------:|");
    println!(
        "| tftpd-hpa 5.2, blksize 1432    | {:>6.2} | {:>6.1} |        1.00x |",
        f_hpa.as_secs_f64(),
        mbps(f_hpa)
    );
    println!(
        "| cloudlet, blksize 1432         | {:>6.2} | {:>6.1} | {:>11.2}x |",
        f_lock.as_secs_f64(),
        mbps(f_lock),
        f_ratio(f_lock)
    );
    println!(
        "| cloudlet, blksize 1432, win 16 | {:>6.2} | {:>6.1} | {:>11.2}x |",
        f_win.as_secs_f64(),
        mbps(f_win),
        f_ratio(f_win)
    );

    // 200 clients at once.
    let rss_before = rss_kib();
    let t = Instant::now();
    let children: Vec<(Instant, Child)> = (0..200)
        .map(|i| {
            let child = Command::new("atftp")
                .args(["--option", "blksize 1432", "-g", "-r", "one.bin", "-l"])
                .arg(out.join(format!("c{i}")))
                .arg(ours.ip().to_string())
                .arg(ours.port().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("atftp starts");
            (Instant::now(), child)
        })
        .collect();
    let mut times = Vec::new();
    let mut failures = 0;
    let mut peak = rss_before;
    for (start, mut c) in children {
        let st = c.wait().unwrap();
        times.push(start.elapsed());
        peak = peak.max(rss_kib());
        if !st.success() {
            failures += 1;
        }
    }
    let wall = t.elapsed();
    let ok = (0..200)
        .filter(|i| std::fs::read(out.join(format!("c{i}"))).is_ok_and(|b| b == big[..1 << 20]))
        .count();
    times.sort();
    let med = times[times.len() / 2];
    let p99 = times[times.len() * 99 / 100];
    println!();
    println!("200 concurrent atftp clients, 1 MiB each from cloudlet:");
    println!(
        "| complete | failed | wall s | median s | p99 s | p99/median | bench process RSS before -> peak |"
    );
    println!(
        "|---------:|-------:|-------:|---------:|------:|-----------:|----------------------------------|"
    );
    println!(
        "| {ok:>8} | {failures:>6} | {:>6.2} | {:>8.2} | {:>5.2} | {:>9.2}x | {rss_before} KiB -> {peak} KiB |",
        wall.as_secs_f64(),
        med.as_secs_f64(),
        p99.as_secs_f64(),
        p99.as_secs_f64() / med.as_secs_f64(),
    );
    println!("targets: all complete, no errors, p99 within 2x the median, memory bounded");
    let _ = stop.send(());
    let stats = rt.block_on(handle).unwrap().unwrap();
    println!(
        "server: {} transfers completed, {} failed, {} refused as busy",
        stats.completed, stats.failed, stats.busy
    );
}
