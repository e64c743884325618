//! `cloudlet backup` and `cloudlet restore` with an off-site target in an S3-compatible store
//! (gofakes3 behind the AWS SDK's Signature V4 check, over TLS, reached through a proxy that
//! can cut it off): a store that goes away in the middle of a backup is tried again, then
//! recorded as a failed run that `status` shows, and the repository stays whole; once it is
//! back, the backup runs, climbs the ladder to L3, and the lab's state is restored from the
//! store into an empty lab. No key and no store secret appears in any output.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use cloudlet_testkit::s3::{ACCESS_KEY, CuttingProxy, S3Peer, SECRET_KEY};

const KEY: &str = "an-offsite-backup-key";

mod common;

fn cloudlet(args: &[&str]) -> Output {
    common::cloudlet(
        &[
            ("CLOUDLET_BACKUP_KEY", KEY),
            ("LAB_S3_ACCESS_KEY", ACCESS_KEY),
        ],
        args,
    )
}

fn text(o: &Output) -> String {
    common::text(o, &[KEY, SECRET_KEY])
}

/// The seed with a backup block whose one target is the store behind `endpoint`.
fn lab(work: &Path, endpoint: &str, ca: &Path) -> PathBuf {
    let dir = common::seed_lab(work);
    std::fs::write(dir.join("secrets/s3-secret"), format!("{SECRET_KEY}\n")).unwrap();
    std::fs::write(
        dir.join("backup.yaml"),
        format!(
            "backup:\n  key: {{env: CLOUDLET_BACKUP_KEY}}\n  targets:\n    offsite:\n      s3:\n        endpoint: {endpoint}\n        bucket: lab-backups\n        prefix: home/seed\n        access_key: {{env: LAB_S3_ACCESS_KEY}}\n        secret_key: {{file: secrets/s3-secret}}\n        ca: {}\n  state: {{target: offsite, every: 1h, keep: {{last: 3}}}}\n",
            ca.display()
        ),
    )
    .unwrap();
    dir
}

#[test]
fn an_s3_target_cut_off_mid_backup_fails_loudly_then_backs_up_and_restores() {
    let work = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(work.path(), "lab-backups");
    let proxy = CuttingProxy::start(peer.addr);
    let dir = lab(work.path(), &format!("https://{}", proxy.addr), &peer.ca);
    let l = dir.to_str().unwrap();
    let o = cloudlet(&["apply", l, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    // State worth several requests: 6 MiB that does not compress.
    let state = dir.join(".cloudlet");
    let mut f = std::fs::File::create(state.join("bulk")).unwrap();
    let mut seed = 3u64;
    let bulk: Vec<u8> = (0..6 << 20)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as u8
        })
        .collect();
    f.write_all(&bulk).unwrap();
    drop(f);

    // The store goes away after 1 MiB of the backup: tried again, then a failed run.
    proxy.cut_after(1 << 20);
    let o = cloudlet(&["backup", "run", l]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.starts_with("!! state → offsite: failed after "), "{t}");
    assert!(proxy.refused() > 0, "the backup tried again while cut off");
    let o = cloudlet(&["status", l]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("  !! state → offsite: failed at "),
        "{}",
        text(&o)
    );

    // Back again: the repository the cut left behind still checks out, the backup runs and
    // is proven up to L3.
    proxy.heal();
    let o = cloudlet(&["backup", "run", l]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.starts_with("ok state → offsite: snapshot "), "{t}");
    let o = cloudlet(&["backup", "verify", l]);
    let v = text(&o);
    assert!(o.status.success(), "{v}");
    assert!(v.contains("ok L2 the repository checks out"), "{v}");
    assert!(
        v.contains("ok L3 a restore to scratch matches the source"),
        "{v}"
    );
    let o = cloudlet(&["backup", "list", l, "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        list[0]["repository"],
        format!("s3:https://{}/lab-backups/home/seed", proxy.addr)
    );
    assert_eq!(list[0]["snapshots"].as_array().unwrap().len(), 1);

    // The machine's state is lost; it comes back from the store.
    std::fs::remove_dir_all(&state).unwrap();
    let o = cloudlet(&["restore", l, "--from", "offsite"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(std::fs::read(state.join("bulk")).unwrap(), bulk);
    assert!(state.join("journal.jsonl").is_file());

    // A wrong store secret: the store's refusal, by name, the secret nowhere.
    std::fs::write(dir.join("secrets/s3-secret"), "not-the-store-secret\n").unwrap();
    let o = cloudlet(&["backup", "list", l]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("SignatureDoesNotMatch"), "{t}");
    assert!(!t.contains("not-the-store-secret"), "{t}");
}
