//! Repositories in an S3-compatible store, against a real S3 implementation (gofakes3 behind
//! the AWS SDK's Signature V4 check, over TLS) and stock restic: restic reads what cloudlet
//! writes there and cloudlet restores what restic wrote; listings page past 1,000 keys; a
//! wrong secret is refused by the store and never shown; a wrong repository key writes
//! nothing. The tests fail when the peer cannot be built or restic is missing.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use cloudlet_backup::repo::{Location, Repo};
use cloudlet_backup::s3::{S3Backend, S3Location};
use cloudlet_backup::stage::Manifest;
use cloudlet_backup::{BackupError, blocking};
use cloudlet_testkit::s3::{ACCESS_KEY, S3Peer, SECRET_KEY};
use rustic_core::{FileType, Id, ReadBackend as _, WriteBackend as _};

const KEY: &str = "correct horse battery staple";

fn location(peer: &S3Peer, prefix: &str) -> S3Location {
    S3Location {
        endpoint: peer.endpoint.clone(),
        bucket: peer.bucket.clone(),
        prefix: prefix.into(),
        region: "us-east-1".into(),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        ca: Some(peer.ca.clone()),
    }
}

fn restic(peer: &S3Peer, prefix: &str, args: &[&str], cache: &Path) -> String {
    let o = Command::new("restic")
        .arg("-r")
        .arg(format!("s3:{}/{}/{prefix}", peer.endpoint, peer.bucket))
        .arg("--cacert")
        .arg(&peer.ca)
        .args(args)
        .env("RESTIC_PASSWORD", KEY)
        .env("RESTIC_CACHE_DIR", cache)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .expect("stock restic is installed (apt-get install restic)");
    assert!(
        o.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Files of several sizes (one larger than a pack's first size, so reads come in parts) and
/// modes, with the manifest written into the tree.
fn source(dir: &Path) -> Manifest {
    std::fs::create_dir_all(dir.join("vault")).unwrap();
    let mut seed = 11u64;
    for i in 0..30u64 {
        let len = if i == 0 {
            9 << 20
        } else {
            (i * 7919) % 200_000
        };
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (seed >> 33) as u8
            })
            .collect();
        let p = dir.join(format!("vault/f{i}"));
        std::fs::write(&p, bytes).unwrap();
        let mode = if i % 2 == 0 { 0o600 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let m = Manifest::of(dir, "state", 1).unwrap();
    m.write(dir).unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_restic_and_cloudlet_read_each_other_in_an_s3_store() {
    let w = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(w.path(), "backups");
    let src = w.path().join("src");
    let manifest = source(&src);
    let loc = Location::S3(location(&peer, "labs/home"));

    // cloudlet writes; restic lists, checks every byte and restores.
    let (l, s) = (loc.clone(), src.clone());
    let snap = blocking(move || {
        Repo::open_or_init(&l, KEY)?.backup(&s, "/cloudlet/home/state", "home", "state")
    })
    .await
    .unwrap();
    assert_eq!(snap.files, 31, "30 files and the manifest");
    let cache = w.path().join("restic-cache");
    let listed: serde_json::Value = serde_json::from_str(&restic(
        &peer,
        "labs/home",
        &["snapshots", "--json"],
        &cache,
    ))
    .unwrap();
    assert_eq!(listed[0]["id"], snap.id.as_str());
    assert_eq!(listed[0]["tags"], serde_json::json!(["cloudlet:state"]));
    let checked = restic(&peer, "labs/home", &["check", "--read-data"], &cache);
    assert!(checked.contains("no errors were found"), "{checked}");
    let out = w.path().join("by-restic");
    restic(
        &peer,
        "labs/home",
        &["restore", &snap.id, "--target", out.to_str().unwrap()],
        &cache,
    );
    let restored = out.join("cloudlet/home/state");
    assert_eq!(
        manifest.differences(&restored).unwrap(),
        Vec::<String>::new(),
        "restic restored every byte and mode cloudlet wrote"
    );

    // restic writes into the same repository; cloudlet restores it and checks the data.
    let other = w.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("note"), b"written by restic\n").unwrap();
    std::fs::set_permissions(other.join("note"), std::fs::Permissions::from_mode(0o640)).unwrap();
    restic(
        &peer,
        "labs/home",
        &["backup", other.to_str().unwrap(), "--host", "elsewhere"],
        &cache,
    );
    let (l, dest) = (loc.clone(), w.path().join("by-cloudlet"));
    let d = dest.clone();
    let (all, problems) = blocking(move || {
        let repo = Repo::open(&l, KEY)?;
        let all = repo.snapshots()?;
        let theirs = all
            .iter()
            .find(|s| s.host == "elsewhere")
            .unwrap()
            .id
            .clone();
        repo.restore(&theirs, &d)?;
        Ok((all, repo.check(true)?))
    })
    .await
    .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        problems,
        Vec::<String>::new(),
        "L2 over S3 finds nothing wrong"
    );
    let note = dest.join(other.strip_prefix("/").unwrap()).join("note");
    assert_eq!(std::fs::read(&note).unwrap(), b"written by restic\n");
    assert_eq!(
        std::fs::metadata(&note).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_past_a_thousand_keys() {
    let w = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(w.path(), "pages");
    let be = S3Backend::new(location(&peer, "r"), tokio::runtime::Handle::current()).unwrap();
    let listed = blocking(move || {
        be.create().unwrap();
        let mut ids = Vec::new();
        for i in 0..1_234_u32 {
            let mut hex = format!("{i:08x}");
            hex.push_str(&"ab".repeat(28));
            let id: Id = hex.parse().unwrap();
            be.write_bytes(FileType::Pack, &id, false, i.to_le_bytes().to_vec().into())
                .unwrap();
            ids.push(id);
        }
        let mut listed = be.list_with_size(FileType::Pack).unwrap();
        listed.sort();
        let part = be
            .read_partial(FileType::Pack, &ids[7], false, 1, 2)
            .unwrap();
        assert_eq!(part.as_ref(), &7_u32.to_le_bytes()[1..3]);
        be.remove(FileType::Pack, &ids[0], false).unwrap();
        let after = be.list(FileType::Pack).unwrap().len();
        Ok::<_, BackupError>((listed, ids, after))
    })
    .await
    .unwrap();
    let (listed, mut ids, after) = listed;
    ids.sort();
    assert_eq!(listed.len(), 1_234, "every page was read");
    assert!(listed.iter().map(|(i, _)| *i).eq(ids.iter().copied()));
    assert!(listed.iter().all(|(_, size)| *size == 4));
    assert_eq!(after, 1_233);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_or_key_is_refused_and_never_shown() {
    let w = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(w.path(), "refusals");
    let src = w.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let good = Location::S3(location(&peer, ""));
    let l = good.clone();
    blocking(move || Repo::open_or_init(&l, KEY).map(drop))
        .await
        .unwrap();

    let mut bad = location(&peer, "");
    bad.secret_key = "not-the-secret-key".into();
    let bad = Location::S3(bad);
    let err = blocking(move || Repo::open(&bad, KEY).map(drop))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    assert!(text.contains("HTTP 403"), "{text}");
    assert!(
        !text.contains("not-the-secret-key"),
        "the secret was echoed: {text}"
    );
    assert!(!text.contains(SECRET_KEY), "{text}");

    let l = good.clone();
    let err = blocking(move || Repo::open(&l, "not the key").map(drop))
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::WrongKey { .. }), "{err:?}");
    assert!(err.to_string().contains("s3:https://127.0.0.1:"), "{err}");

    // An untrusted certificate is refused before anything is sent.
    let mut untrusted = location(&peer, "");
    untrusted.ca = None;
    let untrusted = Location::S3(untrusted);
    let err = blocking(move || Repo::open(&untrusted, KEY).map(drop))
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}
