//! `cloudlet backup` and `cloudlet restore` with a target on an SSH server (OpenSSH's sshd and
//! its `internal-sftp`, reached through a proxy that can cut it off): a server whose host key
//! is not the one the lab knows is refused with ssh's reason and nothing is sent; a server that
//! goes away in the middle of a backup is tried again, then recorded as a failed run that
//! `status` shows; once it is back, the backup runs, climbs the ladder to L3, and the lab's
//! state is restored from the server into an empty lab. The key appears in no output.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use cloudlet_testkit::s3::CuttingProxy;
use cloudlet_testkit::sftp::SftpPeer;

const KEY: &str = "an-sftp-backup-key-never-shown";

mod common;

fn cloudlet(args: &[&str]) -> Output {
    common::cloudlet(&[("CLOUDLET_BACKUP_KEY", KEY)], args)
}

fn text(o: &Output) -> String {
    common::text(o, &[KEY])
}

/// The seed with a backup block whose one target is the server behind `port`, with its host
/// key in the lab's `known_hosts`.
fn lab(work: &Path, peer: &SftpPeer, port: u16, repo: &Path) -> PathBuf {
    let dir = common::seed_lab(work);
    std::fs::copy(&peer.identity, dir.join("secrets/backup_ed25519")).unwrap();
    std::fs::write(
        dir.join("secrets/known_hosts"),
        format!("[127.0.0.1]:{port} {}\n", peer.host_key),
    )
    .unwrap();
    std::fs::write(
        dir.join("backup.yaml"),
        format!(
            "backup:\n  key: {{env: CLOUDLET_BACKUP_KEY}}\n  targets:\n    offsite:\n      sftp:\n        host: 127.0.0.1\n        port: {port}\n        user: {}\n        path: {}\n        identity: secrets/backup_ed25519\n        known_hosts: secrets/known_hosts\n  state: {{target: offsite, every: 1h, keep: {{last: 3}}}}\n",
            peer.user,
            repo.display()
        ),
    )
    .unwrap();
    dir
}

#[test]
fn an_sftp_target_checks_its_host_key_survives_a_cut_then_backs_up_and_restores() {
    let work = tempfile::tempdir().unwrap();
    let peer = SftpPeer::start(&work.path().join("sshd"));
    let proxy = CuttingProxy::start(peer.addr);
    let repo = work.path().join("server/backups/seed");
    let dir = lab(work.path(), &peer, proxy.addr.port(), &repo);
    let l = dir.to_str().unwrap();
    let o = cloudlet(&["apply", l, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));

    // The lab knows another host key for the server: refused before logging in.
    let known = std::fs::read_to_string(dir.join("secrets/known_hosts")).unwrap();
    std::fs::write(
        dir.join("secrets/known_hosts"),
        format!(
            "[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHn6Hn0gS1pE2t5yL6hV1xKj3wV9m5s0W7y4aJc3Zb2Q\n",
            proxy.addr.port()
        ),
    )
    .unwrap();
    let o = cloudlet(&["backup", "run", l]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("Host key verification failed"), "{t}");
    assert!(t.contains("check the key on the server's console"), "{t}");
    assert!(
        t.contains(&format!("sftp://{}@127.0.0.1:", peer.user)),
        "{t}"
    );
    assert!(!repo.exists(), "nothing reached the server");
    std::fs::write(dir.join("secrets/known_hosts"), known).unwrap();

    // State worth several packs: 6 MiB that does not compress.
    let state = dir.join(".cloudlet");
    let mut f = std::fs::File::create(state.join("bulk")).unwrap();
    let mut seed = 5u64;
    let bulk: Vec<u8> = (0..6 << 20)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as u8
        })
        .collect();
    f.write_all(&bulk).unwrap();
    drop(f);

    // The server goes away after 1 MiB of the backup: tried again, then a failed run.
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

    // Back again: the backup runs and is proven up to L3.
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
        format!(
            "sftp://{}@127.0.0.1:{}/{}",
            peer.user,
            proxy.addr.port(),
            repo.display()
        )
    );
    assert_eq!(list[0]["snapshots"].as_array().unwrap().len(), 1);

    // The machine's state is lost; it comes back from the server.
    std::fs::remove_dir_all(&state).unwrap();
    let o = cloudlet(&["restore", l, "--from", "offsite"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(std::fs::read(state.join("bulk")).unwrap(), bulk);
    assert!(state.join("journal.jsonl").is_file());
}
