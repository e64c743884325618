//! Repositories on an SFTP server, against OpenSSH's sshd (its `internal-sftp`) and stock
//! restic: restic reads what cloudlet writes there and cloudlet restores what restic wrote;
//! a repository restic made (with its `data/XX` directories) takes cloudlet's writes; a
//! server whose host key is not the known one is refused before anything is sent, as is a
//! client key the server does not take, each with ssh's own reason; a wrong repository key
//! writes nothing. The tests fail when sshd, ssh or restic is missing.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use cloudlet_backup::repo::{Location, Repo};
use cloudlet_backup::sftp::SftpLocation;
use cloudlet_backup::stage::Manifest;
use cloudlet_backup::{BackupError, blocking};
use cloudlet_testkit::sftp::SftpPeer;

const KEY: &str = "correct horse battery staple";

fn location(peer: &SftpPeer, path: &Path) -> SftpLocation {
    SftpLocation {
        host: "127.0.0.1".into(),
        port: peer.addr.port(),
        user: peer.user.clone(),
        path: path.to_str().unwrap().into(),
        identity: Some(peer.identity.clone()),
        known_hosts: Some(peer.known_hosts.clone()),
    }
}

fn restic(peer: &SftpPeer, path: &Path, args: &[&str], cache: &Path) -> String {
    let o = Command::new("restic")
        .arg("-r")
        .arg(format!(
            "sftp://{}@127.0.0.1:{}/{}",
            peer.user,
            peer.addr.port(),
            path.display()
        ))
        .arg("-o")
        .arg(format!("sftp.command={}", peer.ssh_command()))
        .args(args)
        .env("RESTIC_PASSWORD", KEY)
        .env("RESTIC_CACHE_DIR", cache)
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
    let mut seed = 7u64;
    for i in 0..25u64 {
        let len = if i == 0 {
            9 << 20
        } else {
            (i * 7919) % 150_000
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
async fn stock_restic_and_cloudlet_read_each_other_over_sftp() {
    let w = tempfile::tempdir().unwrap();
    let peer = SftpPeer::start(&w.path().join("sshd"));
    let src = w.path().join("src");
    let manifest = source(&src);
    // A directory the repository's parents do not exist for yet.
    let repo_dir = w.path().join("server/backups/home");
    let loc = Location::Sftp(location(&peer, &repo_dir));

    // cloudlet writes; restic lists, checks every byte and restores.
    let (l, s) = (loc.clone(), src.clone());
    let snap = blocking(move || {
        Repo::open_or_init(&l, KEY)?.backup(&s, "/cloudlet/home/state", "home", "state")
    })
    .await
    .unwrap();
    assert_eq!(snap.files, 26, "25 files and the manifest");
    assert!(
        repo_dir.join("config").is_file() && repo_dir.join("data/00").is_dir(),
        "restic's layout on the server"
    );
    let cache = w.path().join("restic-cache");
    let listed: serde_json::Value =
        serde_json::from_str(&restic(&peer, &repo_dir, &["snapshots", "--json"], &cache)).unwrap();
    assert_eq!(listed[0]["id"], snap.id.as_str());
    assert_eq!(listed[0]["tags"], serde_json::json!(["cloudlet:state"]));
    let checked = restic(&peer, &repo_dir, &["check", "--read-data"], &cache);
    assert!(checked.contains("no errors were found"), "{checked}");
    let out = w.path().join("by-restic");
    restic(
        &peer,
        &repo_dir,
        &["restore", &snap.id, "--target", out.to_str().unwrap()],
        &cache,
    );
    assert_eq!(
        manifest
            .differences(&out.join("cloudlet/home/state"))
            .unwrap(),
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
        &repo_dir,
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
        "L2 over SFTP finds nothing wrong"
    );
    let note = dest.join(other.strip_prefix("/").unwrap()).join("note");
    assert_eq!(std::fs::read(&note).unwrap(), b"written by restic\n");
    assert_eq!(
        std::fs::metadata(&note).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // A restore to scratch by cloudlet matches the manifest byte for byte and mode for mode.
    let (l, scratch) = (loc.clone(), w.path().join("scratch"));
    let (id, sc) = (snap.id.clone(), scratch.clone());
    blocking(move || Repo::open(&l, KEY)?.restore(&id, &sc))
        .await
        .unwrap();
    assert_eq!(
        manifest
            .differences(&scratch.join("cloudlet/home/state"))
            .unwrap(),
        Vec::<String>::new()
    );

    // A repository restic made itself takes cloudlet's snapshots.
    let theirs = w.path().join("server/made-by-restic");
    restic(&peer, &theirs, &["init"], &cache);
    let (l, s) = (Location::Sftp(location(&peer, &theirs)), src.clone());
    let snap =
        blocking(move || Repo::open(&l, KEY)?.backup(&s, "/cloudlet/home/state", "home", "state"))
            .await
            .unwrap();
    let checked = restic(&peer, &theirs, &["check", "--read-data"], &cache);
    assert!(checked.contains("no errors were found"), "{checked}");
    let listed = restic(&peer, &theirs, &["snapshots", "--json"], &cache);
    assert!(listed.contains(&snap.id), "{listed}");
    assert!(
        std::fs::read_dir(&theirs)
            .unwrap()
            .flatten()
            .chain(std::fs::read_dir(theirs.join("data")).unwrap().flatten())
            .all(|e| !e.file_name().to_string_lossy().contains(".tmp-")),
        "no temporary file is left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_key_a_refused_client_key_or_a_wrong_key_write_nothing() {
    let w = tempfile::tempdir().unwrap();
    let peer = SftpPeer::start(&w.path().join("sshd"));
    let src = w.path().join("src");
    source(&src);
    let repo_dir = w.path().join("server/repo");

    // A known_hosts that holds another key for the address: ssh stops before logging in.
    let other = w.path().join("other-host");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut parts = pubkey.split_whitespace();
    let wrong_known = w.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong_known,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            peer.addr.port(),
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    )
    .unwrap();
    let mut spoofed = location(&peer, &repo_dir);
    spoofed.known_hosts = Some(wrong_known);
    let (l, s) = (Location::Sftp(spoofed), src.clone());
    let e = blocking(move || Repo::open_or_init(&l, KEY)?.backup(&s, "/p", "h", "state"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ssh did not connect: Host key verification failed"),
        "{e}"
    );
    assert!(e.contains("the server's host key is not the one"), "{e}");
    assert!(e.contains("sftp://"), "the error names the target: {e}");
    assert!(!repo_dir.exists(), "nothing was written");

    // A host that is not known at all.
    let mut unknown = location(&peer, &repo_dir);
    unknown.known_hosts = Some(w.path().join("empty_known_hosts"));
    std::fs::write(w.path().join("empty_known_hosts"), "").unwrap();
    let (l, s) = (Location::Sftp(unknown), src.clone());
    let e = blocking(move || Repo::open_or_init(&l, KEY)?.backup(&s, "/p", "h", "state"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("holds no key for the server; add it (`ssh-keyscan -p"),
        "{e}"
    );
    assert!(!repo_dir.exists(), "nothing was written");

    // A client key the server does not take.
    let mut stranger = location(&peer, &repo_dir);
    stranger.identity = Some(other);
    let (l, s) = (Location::Sftp(stranger), src.clone());
    let e = blocking(move || Repo::open_or_init(&l, KEY)?.backup(&s, "/p", "h", "state"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Permission denied"), "{e}");
    assert!(e.contains("authorized_keys"), "{e}");
    assert!(!repo_dir.exists(), "nothing was written");

    // The right everything makes the repository; a wrong key then opens nothing and writes
    // nothing.
    let loc = Location::Sftp(location(&peer, &repo_dir));
    let (l, s) = (loc.clone(), src.clone());
    blocking(move || Repo::open_or_init(&l, KEY)?.backup(&s, "/p", "h", "state"))
        .await
        .unwrap();
    let before = cloudlet_testkit::files_of(&repo_dir);
    let (l, s) = (loc.clone(), src.clone());
    let e = blocking(move || Repo::open(&l, "not the key")?.backup(&s, "/p", "h", "state"))
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::WrongKey { .. }), "{e}");
    assert!(!e.to_string().contains(KEY));
    assert_eq!(
        cloudlet_testkit::files_of(&repo_dir),
        before,
        "nothing was written"
    );
}
