//! cloudlet's repositories against stock restic (Debian's package): restic reads what
//! cloudlet writes and cloudlet restores what restic wrote; the verification ladder catches a
//! flipped byte inside a pack at L2 (L1 passes), and a wrong key is refused with nothing
//! written. The tests fail when restic is missing (CI installs it).
#![allow(missing_docs, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use cloudlet_backup::repo::{Location, Repo};
use cloudlet_backup::runs::Run;
use cloudlet_backup::stage::Manifest;
use cloudlet_backup::verify::{Class, ladder};
use cloudlet_backup::{BackupError, stage};

const KEY: &str = "correct horse battery staple";

fn restic(repo: &Path, args: &[&str]) -> String {
    let o = Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", KEY)
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
        .output()
        .expect("stock restic is installed (apt-get install restic)");
    assert!(
        o.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A tree of files of several sizes, modes and depths, with its manifest written into it.
fn source(dir: &Path) -> Manifest {
    std::fs::create_dir_all(dir.join("vault/keys")).unwrap();
    std::fs::create_dir_all(dir.join("pxe")).unwrap();
    let mut seed = 7u64;
    for i in 0..40 {
        let len = (i * 7919) % 300_000;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (seed >> 33) as u8
            })
            .collect();
        let p = if i % 3 == 0 {
            dir.join(format!("vault/keys/k{i}"))
        } else {
            dir.join(format!("pxe/f{i}"))
        };
        std::fs::write(&p, bytes).unwrap();
        let mode = if i % 3 == 0 { 0o600 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::write(dir.join("journal.jsonl"), "{}\n").unwrap();
    std::fs::set_permissions(
        dir.join("journal.jsonl"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let m = Manifest::of(dir, "state", 1).unwrap();
    m.write(dir).unwrap();
    m
}

fn class() -> Class<'static> {
    Class {
        name: "state",
        host: "home",
        every: 3600,
        as_path: "/cloudlet/home/state",
    }
}

fn ran(snapshot: &str) -> Vec<Run> {
    vec![Run {
        class: "state".into(),
        target: "nas".into(),
        started: 0,
        seconds: 0.1,
        snapshot: Some(snapshot.into()),
        error: None,
    }]
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
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
fn stock_restic_reads_what_cloudlet_writes() {
    let w = tempfile::tempdir().unwrap();
    let (src, repo_dir) = (w.path().join("src"), w.path().join("repo"));
    let manifest = source(&src);
    let repo = Repo::open_or_init(&Location::Dir(repo_dir.clone()), KEY).unwrap();
    let snap = repo
        .backup(&src, "/cloudlet/home/state", "home", "state")
        .unwrap();
    assert_eq!(snap.class, "state");
    assert_eq!(snap.files, 42, "40 files, the journal, the manifest");

    let listed: serde_json::Value =
        serde_json::from_str(&restic(&repo_dir, &["snapshots", "--json"])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], snap.id.as_str());
    assert_eq!(listed[0]["hostname"], "home");
    assert_eq!(listed[0]["tags"], serde_json::json!(["cloudlet:state"]));
    assert_eq!(
        listed[0]["paths"],
        serde_json::json!(["/cloudlet/home/state"])
    );
    let checked = restic(&repo_dir, &["check", "--read-data"]);
    assert!(checked.contains("no errors were found"), "{checked}");

    let out = w.path().join("restored-by-restic");
    restic(
        &repo_dir,
        &["restore", &snap.id, "--target", out.to_str().unwrap()],
    );
    let restored = out.join("cloudlet/home/state");
    assert_eq!(Manifest::read(&restored, &snap.id).unwrap(), manifest);
    assert_eq!(
        manifest.differences(&restored).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn cloudlet_restores_what_stock_restic_wrote() {
    let w = tempfile::tempdir().unwrap();
    let (src, repo_dir) = (w.path().join("src"), w.path().join("repo"));
    let manifest = source(&src);
    restic(&repo_dir, &["init"]);
    restic(
        &repo_dir,
        &["backup", "--host", "other", src.to_str().unwrap()],
    );

    let repo = Repo::open(&Location::Dir(repo_dir.clone()), KEY).unwrap();
    let snaps = repo.snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].host, "other");
    assert_eq!(snaps[0].class, "", "not one of cloudlet's");
    let out = w.path().join("restored");
    repo.restore(&format!("{}:{}", snaps[0].id, src.display()), &out)
        .unwrap();
    assert_eq!(manifest.differences(&out).unwrap(), Vec::<String>::new());
    assert!(repo.check(true).unwrap().is_empty());
}

#[test]
fn a_flipped_byte_inside_a_pack_passes_level_1_and_is_caught_at_level_2() {
    let w = tempfile::tempdir().unwrap();
    let (src, repo_dir, scratch) = (
        w.path().join("src"),
        w.path().join("repo"),
        w.path().join("scratch"),
    );
    source(&src);
    let repo = Repo::open_or_init(&Location::Dir(repo_dir.clone()), KEY).unwrap();
    let snap = repo
        .backup(&src, "/cloudlet/home/state", "home", "state")
        .unwrap();

    // Whole: every level passes, L3 restoring every file and matching the manifest.
    let levels = ladder(&repo, &class(), &ran(&snap.id), 3, &scratch);
    assert_eq!(levels.len(), 4, "{levels:#?}");
    assert!(levels.iter().all(|l| l.ok), "{levels:#?}");
    assert!(levels[3].detail.starts_with("41 files of"), "{levels:#?}");

    // One byte flipped in the middle of the largest pack.
    let pack = files(&repo_dir.join("data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::set_permissions(&pack, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&pack, bytes).unwrap();

    let repo = Repo::open(&Location::Dir(repo_dir.clone()), KEY).unwrap();
    let levels = ladder(
        &repo,
        &class(),
        &ran(&snap.id),
        3,
        &w.path().join("scratch2"),
    );
    assert!(levels[0].ok && levels[1].ok, "{levels:#?}");
    assert_eq!(
        levels.len(),
        3,
        "the ladder stops at the failed level: {levels:#?}"
    );
    assert!(!levels[2].ok, "{levels:#?}");
    let name = pack.file_name().unwrap().to_string_lossy();
    assert!(
        levels[2].detail.contains(&name[..8]),
        "the damaged pack is named: {}",
        levels[2].detail
    );
    // Stock restic agrees.
    let o = Command::new("restic")
        .arg("-r")
        .arg(&repo_dir)
        .args(["check", "--read-data"])
        .env("RESTIC_PASSWORD", KEY)
        .env("RESTIC_CACHE_DIR", w.path().join("rc"))
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn a_wrong_key_is_refused_by_name_and_nothing_is_written() {
    let w = tempfile::tempdir().unwrap();
    let (src, repo_dir) = (w.path().join("src"), w.path().join("repo"));
    source(&src);
    Repo::open_or_init(&Location::Dir(repo_dir.clone()), KEY)
        .unwrap()
        .backup(&src, "/cloudlet/home/state", "home", "state")
        .unwrap();
    let before: Vec<(PathBuf, Vec<u8>)> = files(&repo_dir)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    for open in [Repo::open, Repo::open_or_init] {
        let err = open(&Location::Dir(repo_dir.clone()), "not the key").unwrap_err();
        assert!(matches!(err, BackupError::WrongKey { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("does not open the repository"), "{text}");
        assert!(!text.contains("not the key"), "the key was echoed: {text}");
    }
    let after: Vec<(PathBuf, Vec<u8>)> = files(&repo_dir)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn retention_forgets_exactly_the_snapshots_no_rule_keeps() {
    let w = tempfile::tempdir().unwrap();
    let (src, repo_dir) = (w.path().join("src"), w.path().join("repo"));
    source(&src);
    let repo = Repo::open_or_init(&Location::Dir(repo_dir.clone()), KEY).unwrap();
    let mut made = Vec::new();
    for i in 0..4 {
        std::fs::write(src.join("journal.jsonl"), format!("{i}\n")).unwrap();
        made.push(
            repo.backup(&src, "/cloudlet/home/state", "home", "state")
                .unwrap()
                .id,
        );
    }
    // Another lab's snapshots in the same repository are not this lab's to forget.
    repo.backup(&src, "/cloudlet/other/state", "other", "state")
        .unwrap();
    let keep = cloudlet_core::model::Keep {
        last: Some(2),
        ..Default::default()
    };
    let mut gone = repo.forget("state", "home", &keep).unwrap();
    gone.sort();
    let mut want = made[..2].to_vec();
    want.sort();
    assert_eq!(gone, want);
    let left: Vec<String> = repo
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left.len(), 3);
    assert!(left.contains(&made[2]) && left.contains(&made[3]));
    let _ = stage::MANIFEST;
}

/// The restore that hashes as it writes gives back what restic wrote — files with their
/// modes (setuid and sticky included), directories with theirs, symbolic links — and its
/// manifest of what it wrote is the one the source makes.
#[test]
fn the_hashing_restore_brings_back_what_restic_wrote() {
    let w = tempfile::tempdir().unwrap();
    let (src, repo_dir) = (w.path().join("src"), w.path().join("repo"));
    std::fs::create_dir_all(src.join("keys/empty")).unwrap();
    let big: Vec<u8> = (0..11_000_000_u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("keys/big"), &big).unwrap();
    std::fs::write(src.join("tool"), b"#!/bin/sh\n").unwrap();
    std::fs::write(src.join("zero"), b"").unwrap();
    std::fs::set_permissions(src.join("tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(src.join("keys"), std::fs::Permissions::from_mode(0o1750)).unwrap();
    std::os::unix::fs::symlink("keys/big", src.join("link")).unwrap();
    let expected = Manifest::of(&src, "", 0).unwrap();
    restic(&repo_dir, &["init"]);
    restic(&repo_dir, &["backup", src.to_str().unwrap()]);
    let repo = Repo::open(&Location::Dir(repo_dir.clone()), KEY).unwrap();
    let id = repo.snapshots().unwrap()[0].id.clone();
    let dest = w.path().join("out");
    let got = repo
        .restore_hashed(&format!("{id}:{}", src.display()), &dest)
        .unwrap();
    assert_eq!(
        got.files, expected.files,
        "what was written is what was backed up"
    );
    assert_eq!(expected.compare(&got), Vec::<String>::new());
    assert_eq!(std::fs::read(dest.join("keys/big")).unwrap(), big);
    let mode = |p: &str| {
        std::fs::metadata(dest.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("tool"), 0o4755);
    assert_eq!(mode("keys"), 0o1750);
    assert!(dest.join("keys/empty").is_dir());
    assert_eq!(
        std::fs::read_link(dest.join("link")).unwrap(),
        Path::new("keys/big")
    );
}
