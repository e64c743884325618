//! Benchmark: restoring a snapshot of 1 GiB in 1,000 files with cloudlet (`Repo::restore`, the
//! path `cloudlet restore` and `backup verify`'s L3 take) against stock `restic restore` of
//! the same snapshot from the same repository, in the same run, the two alternating round by
//! round (which goes first alternates too). The data is incompressible (seeded pseudo-random
//! bytes), written once, backed up once by cloudlet; each restore goes to a fresh directory
//! and is checked by size. Goal: at least parity. `cargo bench -p cloudlet-backup --bench
//! restore` (restic from Debian's package; `BENCH_MIB` to change the total).
#![allow(clippy::print_stdout, clippy::disallowed_methods, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use cloudlet_backup::repo::Repo;

const ROUNDS: usize = 3;
const FILES: usize = 1000;
const KEY: &str = "bench-key";

fn write_source(dir: &Path, total: usize) {
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

fn cloudlet_restore(repo: &Path, id: &str, to: &Path) -> f64 {
    let t = Instant::now();
    Repo::open(repo, KEY)
        .unwrap()
        .restore(&format!("{id}:/bench"), to)
        .unwrap();
    t.elapsed().as_secs_f64()
}

fn restic_restore(repo: &Path, id: &str, to: &Path, cache: &Path) -> f64 {
    let t = Instant::now();
    let o = Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(["restore", id, "--target"])
        .arg(to)
        .env("RESTIC_PASSWORD", KEY)
        .env("RESTIC_CACHE_DIR", cache)
        .output()
        .expect("restic is installed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    t.elapsed().as_secs_f64()
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
    let (src, repo, cache) = (
        work.path().join("src"),
        work.path().join("repo"),
        work.path().join("cache"),
    );
    write_source(&src, mib << 20);
    let total = size_of(&src);
    let t = Instant::now();
    let snap = Repo::open_or_init(&repo, KEY)
        .unwrap()
        .backup(&src, "/bench", "bench", "state")
        .unwrap();
    let backup_s = t.elapsed().as_secs_f64();
    println!(
        "snapshot {}: {FILES} files, {:.0} MiB, backed up by cloudlet in {backup_s:.1}s",
        &snap.id[..8],
        total as f64 / 1048576.0
    );
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    println!("round  cloudlet (s)  restic restore (s)");
    for round in 0..ROUNDS {
        let a = work.path().join(format!("a{round}"));
        let b = work.path().join(format!("b{round}"));
        let (x, y) = if round % 2 == 0 {
            let x = cloudlet_restore(&repo, &snap.id, &a);
            (x, restic_restore(&repo, &snap.id, &b, &cache))
        } else {
            let y = restic_restore(&repo, &snap.id, &b, &cache);
            (cloudlet_restore(&repo, &snap.id, &a), y)
        };
        assert_eq!(size_of(&a), total, "cloudlet restored everything");
        assert_eq!(size_of(&b), total, "restic restored everything");
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
        println!("{round:>5}  {x:>12.2}  {y:>18.2}");
        ours.push(x);
        theirs.push(y);
    }
    let (m1, m2) = (median(&mut ours), median(&mut theirs));
    let mibf = total as f64 / 1048576.0;
    println!("median {m1:>12.2}  {m2:>18.2}");
    println!(
        "throughput: cloudlet {:.0} MiB/s, restic {:.0} MiB/s; restic/cloudlet time ratio {:.2} (>= 1 is parity or better)",
        mibf / m1,
        mibf / m2,
        m2 / m1
    );
}
