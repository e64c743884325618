//! `cloudlet backup` end to end on the seed (every target local): apply makes the lab's
//! state, `backup run` writes it into a repository stock restic reads, `list` and `verify`
//! (L0-L3) show and prove it, a flipped byte inside a pack fails L2, an unreachable target is
//! retried then recorded as failed and shown by `status`, a wrong key is refused with nothing
//! written, and `install-timer` writes units whose schedules systemd reads as the lab's. The
//! key appears in no output.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KEY: &str = "a-backup-key-that-must-never-be-printed";

mod common;

fn cloudlet(args: &[&str]) -> Output {
    common::cloudlet(&[], args)
}

fn text(o: &Output) -> String {
    common::text(o, &[KEY])
}

/// The seed with a backup block: the key in a file, the target `target`.
fn lab(work: &Path, target: &Path) -> PathBuf {
    let dir = common::seed_lab(work);
    std::fs::write(dir.join("secrets/backup-key"), format!("{KEY}\n")).unwrap();
    std::fs::write(
        dir.join("backup.yaml"),
        format!(
            "backup:\n  key: {{file: secrets/backup-key}}\n  targets:\n    nas: {{dir: {}}}\n  state: {{target: nas, every: 1h, keep: {{last: 5}}}}\n",
            target.display()
        ),
    )
    .unwrap();
    dir
}

fn restic(repo: &Path, args: &[&str]) -> Output {
    Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", KEY)
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
        .output()
        .expect("stock restic is installed")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn backups_run_list_verify_and_fail_loudly() {
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("nas");
    let dir = lab(work.path(), &target);
    let l = dir.to_str().unwrap();
    if !dir.join("secrets/postmaster-password").exists() {
        std::fs::write(dir.join("secrets/postmaster-password"), "pw").unwrap();
    }
    let o = cloudlet(&["apply", l, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));

    // Nothing ran yet: L0 fails, status says so.
    let o = cloudlet(&["backup", "verify", l, "--level", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("!! L0 the job ran"), "{}", text(&o));

    let o = cloudlet(&["backup", "run", l]);
    let run = text(&o);
    assert!(o.status.success(), "{run}");
    assert!(run.starts_with("ok state → nas: snapshot "), "{run}");

    // Stock restic sees the snapshot, with the lab's journal in it.
    let o = restic(&target, &["ls", "latest"]);
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "/cloudlet/seed/state/journal.jsonl",
        "/cloudlet/seed/state/cloudlet-manifest.json",
    ] {
        assert!(listing.lines().any(|x| x == f), "{f} not in:\n{listing}");
    }
    assert!(
        !listing.contains("/state/lock") && !listing.contains("/state/local/"),
        "{listing}"
    );

    let o = cloudlet(&["backup", "list", l, "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["target"], "nas");
    assert_eq!(list[0]["snapshots"][0]["class"], "state");
    assert_eq!(list[0]["snapshots"][0]["host"], "seed");

    let o = cloudlet(&["backup", "verify", l]);
    let verified = text(&o);
    assert!(o.status.success(), "{verified}");
    for line in [
        "ok L0 the job ran",
        "ok L1 a recent snapshot exists",
        "ok L2 the repository checks out with its data read",
        "ok L3 a restore to scratch matches the source",
    ] {
        assert!(verified.contains(line), "`{line}` not in:\n{verified}");
    }
    let o = cloudlet(&["status", l]);
    assert!(
        text(&o).contains("Backups:\n  ok state → nas: snapshot "),
        "{}",
        text(&o)
    );

    // A flipped byte inside a pack: L1 still passes, L2 catches it.
    let pack = files(&target.join("data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::set_permissions(&pack, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&pack, bytes).unwrap();
    let o = cloudlet(&["backup", "verify", l, "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let levels = v[0]["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 3, "{v:#}");
    assert_eq!(levels[1]["ok"], true);
    assert_eq!(levels[2]["ok"], false);

    // A wrong key: refused, by name, nothing written.
    let before: Vec<(PathBuf, Vec<u8>)> = files(&target)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    std::fs::write(dir.join("secrets/backup-key"), "the wrong key\n").unwrap();
    let o = cloudlet(&["backup", "run", l]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("does not open the repository"), "{t}");
    assert!(!t.contains("the wrong key"), "{t}");
    let after: Vec<(PathBuf, Vec<u8>)> = files(&target)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    assert_eq!(before, after, "the repository changed");
    std::fs::write(dir.join("secrets/backup-key"), format!("{KEY}\n")).unwrap();

    // An unreachable target (here: a file where the directory should be) is tried again,
    // then recorded as failed; status shows it and exits non-zero.
    std::fs::rename(&target, work.path().join("nas-away")).unwrap();
    std::fs::write(&target, "not a directory").unwrap();
    let o = cloudlet(&["backup", "run", l]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.starts_with("!! state → nas: failed after "), "{t}");
    let o = cloudlet(&["status", l]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("  !! state → nas: failed at "),
        "{}",
        text(&o)
    );
    let o = cloudlet(&["backup", "verify", l, "--level", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("!! L0 the job ran"), "{}", text(&o));
}

#[test]
fn the_timer_units_keep_the_labs_schedules() {
    let work = tempfile::tempdir().unwrap();
    let dir = lab(work.path(), &work.path().join("nas"));
    let units = work.path().join("units");
    let o = cloudlet(&[
        "backup",
        "install-timer",
        dir.to_str().unwrap(),
        "--dir",
        units.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let service =
        std::fs::read_to_string(units.join("cloudlet-backup-seed-state.service")).unwrap();
    assert!(
        service.contains(&format!(
            "backup run {} --class state",
            std::fs::canonicalize(&dir).unwrap().display()
        )),
        "{service}"
    );
    let timer = std::fs::read_to_string(units.join("cloudlet-backup-seed-state.timer")).unwrap();
    assert!(timer.contains("OnCalendar=*-*-* 00/1:00:00\n"), "{timer}");

    // Each schedule the lab can say, read by systemd: consecutive elapses `every` apart.
    for (every, secs) in [
        ("15m", 900),
        ("30m", 1800),
        ("1h", 3600),
        ("6h", 21_600),
        ("1d", 86_400),
        ("7d", 604_800),
    ] {
        let e: cloudlet::core::types::Duration = every.parse().unwrap();
        let expr = cloudlet::on_calendar(e.0);
        let o = Command::new("systemd-analyze")
            .args(["calendar", "--iterations=3", &expr])
            .env("TZ", "UTC")
            .output()
            .expect("systemd-analyze (systemd) is installed");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "{expr}: {out}");
        let times: Vec<i64> = out
            .lines()
            .filter_map(|l| {
                l.split_once(": ")
                    .filter(|(k, _)| k.contains("elapse") || k.contains("Iter."))
            })
            .map(|(_, v)| {
                let d = Command::new("date")
                    .args(["-u", "-d", v.trim(), "+%s"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&d.stdout).trim().parse().unwrap()
            })
            .collect();
        assert_eq!(times.len(), 3, "{expr}: {out}");
        assert_eq!(times[1] - times[0], secs, "{every} → {expr}");
        assert_eq!(times[2] - times[1], secs, "{every} → {expr}");
    }
}
