//! `cloudlet restore` on the seed (every target local, so the phases run without machines):
//! a restore into a lab that is not empty is refused and changes nothing; a damaged snapshot
//! stops the restore at the phase that needs it, naming the snapshot, and the restore resumes
//! once a good backup exists; `--force` says what it overwrites.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

const KEY: &str = "seed-restore-key";

mod common;

fn cloudlet(args: &[&str]) -> Output {
    common::cloudlet(&[("CLOUDLET_BACKUP_KEY", KEY)], args)
}

fn text(o: &Output) -> String {
    common::text(o, &[KEY])
}

fn seed_with_backup(work: &Path) -> PathBuf {
    let dir = common::seed_lab(work);
    std::fs::write(
        dir.join("backup.yaml"),
        format!(
            "backup:\n  key: {{env: CLOUDLET_BACKUP_KEY}}\n  targets:\n    nas: {{dir: {}}}\n  state: {{target: nas, every: 1h}}\n",
            work.join("nas").display()
        ),
    )
    .unwrap();
    dir
}

/// Every file under `dir` with its content.
fn snapshot_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn restore_refuses_a_full_lab_stops_at_a_damaged_snapshot_and_resumes() {
    let work = tempfile::tempdir().unwrap();
    let dir = seed_with_backup(work.path());
    let l = dir.to_str().unwrap();
    let state = dir.join(".cloudlet");
    let o = cloudlet(&["apply", l, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cloudlet(&["backup", "run", l]);
    assert!(o.status.success(), "{}", text(&o));
    let journal = std::fs::read(state.join("journal.jsonl")).unwrap();

    // Into the lab as it is: refused, listing what would be overwritten; nothing changes.
    let before = snapshot_of(&state);
    let o = cloudlet(&["restore", l, "--from", "nas"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("refusing to restore over the lab's state"),
        "{t}"
    );
    assert!(t.contains("journal.jsonl"), "{t}");
    assert_eq!(snapshot_of(&state), before, "the refusal changed the state");

    // The state lost; the snapshot's data damaged (a pack cut short).
    std::fs::remove_dir_all(&state).unwrap();
    let packs: Vec<PathBuf> = snapshot_of(&work.path().join("nas/data"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let saved: Vec<(PathBuf, Vec<u8>)> = packs
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    for p in &packs {
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_len(len / 2).unwrap();
    }
    let o = cloudlet(&["restore", l, "--from", "nas"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("restore: identity FAILED"), "{t}");
    assert!(t.contains("restore phase `identity` failed"), "{t}");
    assert!(t.contains("--resume"), "{t}");
    let listed = cloudlet(&["backup", "list", l, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let id = v[0]["snapshots"][0]["id"].as_str().unwrap().to_string();
    assert!(
        t.contains(&format!("snapshot {id}")),
        "the snapshot is named:\n{t}"
    );
    assert!(
        !t.contains("restore: infrastructure"),
        "later phases ran:\n{t}"
    );
    // Without --resume (or --force), a stopped restore is not started over by mistake.
    let o = cloudlet(&["restore", l, "--from", "nas"]);
    assert!(text(&o).contains("resume it with --resume"), "{}", text(&o));

    // The cause fixed (the target's data back, as from a second copy); resumed.
    for (p, bytes) in &saved {
        std::fs::write(p, bytes).unwrap();
    }
    let o = cloudlet(&["restore", l, "--from", "nas", "--resume"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for line in [
        "restore: identity done in ",
        "restore: infrastructure done in ",
        "restore: cluster data skipped",
        "restore: volumes skipped",
        "restore: reconcile done in ",
        "restore: verify skipped",
        "Timeline:",
        "  state    snapshot ",
    ] {
        assert!(t.contains(line), "`{line}` not in:\n{t}");
    }
    assert_eq!(
        std::fs::read(state.join("journal.jsonl")).unwrap()[..journal.len()],
        journal[..],
        "the journal from before the loss is back"
    );

    // --force over a full lab: what it overwrites is said first.
    let o = cloudlet(&["restore", l, "--from", "nas", "--force"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.starts_with("--force: overwriting "), "{t}");
}
