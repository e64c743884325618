//! Benchmark: `cloudlet restore` as users run it (the CLI, on a lab whose `state` class holds
//! 1 GiB in 1,000 files) against stock `restic restore` of the same snapshot from the same
//! repository, in the same run, alternating round by round (which goes first alternates too).
//! cloudlet's run does more than restic's: it proves the restored files against the
//! snapshot's manifest (hashing each file as it writes it) before putting them in place, and
//! runs the lab's other phases (an apply of a lab with nothing else in it). The data is incompressible, backed up once by
//! `cloudlet backup run`. `cargo bench -p cloudlet-cli --bench restore` (restic from Debian's
//! package; `BENCH_MIB` to change the total).
#![allow(clippy::print_stdout, clippy::disallowed_methods, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

const ROUNDS: usize = 3;
const FILES: usize = 1000;
const KEY: &str = "bench-key";
const BIN: &str = env!("CARGO_BIN_EXE_cloudlet");

fn write_data(dir: &Path, total: usize) {
    let per = total / FILES;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..FILES {
        let sub = dir.join(format!("d{:02}", i % 50));
        std::fs::create_dir_all(&sub).unwrap();
        let mut bytes = vec![0u8; per];
        for chunk in bytes.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let b = seed.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        std::fs::write(sub.join(format!("f{i:04}")), bytes).unwrap();
    }
}

fn size_of(dir: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                n += m.len();
            }
        }
    }
    n
}

fn cloudlet(args: &[&str]) -> Output {
    let o = Command::new(BIN)
        .args(args)
        .env("CLOUDLET_BACKUP_KEY", KEY)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mib: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let work = tempfile::tempdir().unwrap();
    let (lab, repo, cache) = (
        work.path().join("lab"),
        work.path().join("repo"),
        work.path().join("cache"),
    );
    std::fs::create_dir_all(&lab).unwrap();
    std::fs::write(
        lab.join("lab.yaml"),
        format!(
            "name: bench\nsite: {{domain: bench.lan}}\nbackup:\n  key: {{env: CLOUDLET_BACKUP_KEY}}\n  targets: {{nas: {{dir: {}}}}}\n  state: {{target: nas, every: 1h}}\n",
            repo.display()
        ),
    )
    .unwrap();
    let state = lab.join(".cloudlet");
    write_data(&state.join("data"), mib << 20);
    let total = size_of(&state.join("data"));
    let l = lab.to_str().unwrap();
    let t = Instant::now();
    cloudlet(&["backup", "run", l]);
    let backup_s = t.elapsed().as_secs_f64();
    let listed: serde_json::Value =
        serde_json::from_slice(&cloudlet(&["backup", "list", l, "--json"]).stdout).unwrap();
    let id = listed[0]["snapshots"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    println!(
        "snapshot {}: {FILES} files, {:.0} MiB, backed up by `cloudlet backup run` in {backup_s:.1}s",
        &id[..8],
        total as f64 / 1_048_576.0
    );
    let ours = |round: usize| {
        std::fs::remove_dir_all(&state).unwrap();
        let t = Instant::now();
        cloudlet(&["restore", l, "--from", "nas"]);
        let s = t.elapsed().as_secs_f64();
        assert_eq!(
            size_of(&state.join("data")),
            total,
            "round {round}: cloudlet restored everything"
        );
        s
    };
    let theirs = |round: usize| {
        let to = work.path().join(format!("restic{round}"));
        let t = Instant::now();
        let o = Command::new("restic")
            .arg("-r")
            .arg(&repo)
            .args(["restore", &id, "--target"])
            .arg(&to)
            .env("RESTIC_PASSWORD", KEY)
            .env("RESTIC_CACHE_DIR", &cache)
            .output()
            .expect("restic is installed");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s = t.elapsed().as_secs_f64();
        assert_eq!(
            size_of(&to.join("cloudlet/bench/state/data")),
            total,
            "round {round}: restic restored everything"
        );
        std::fs::remove_dir_all(&to).unwrap();
        s
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    println!("round  cloudlet restore (s)  restic restore (s)");
    for round in 0..ROUNDS {
        let (x, y) = if round % 2 == 0 {
            let x = ours(round);
            (x, theirs(round))
        } else {
            let y = theirs(round);
            (ours(round), y)
        };
        println!("{round:>5}  {x:>20.2}  {y:>18.2}");
        a.push(x);
        b.push(y);
    }
    let (m1, m2) = (median(&mut a), median(&mut b));
    let mibf = total as f64 / 1_048_576.0;
    println!("median {m1:>20.2}  {m2:>18.2}");
    println!(
        "throughput: cloudlet {:.0} MiB/s, restic {:.0} MiB/s; restic/cloudlet time ratio {:.2} (>= 1 is parity or better)",
        mibf / m1,
        mibf / m2,
        m2 / m1
    );
}
