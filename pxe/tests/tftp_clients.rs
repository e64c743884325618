//! The TFTP server against TFTP clients that are not ours: tftp-hpa, curl, busybox and atftp,
//! each with and without options, on loopback.
#![allow(missing_docs, clippy::disallowed_methods)] // #[tokio::test] builds a runtime

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cloudlet_pxe::tftp::{Namespace, TftpConfig, TftpServer, TftpStats};
use tokio::sync::oneshot;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

struct Fixture {
    dir: tempfile::TempDir,
    files: Vec<(String, Vec<u8>)>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("ubuntu")).unwrap();
    let files = vec![
        (
            "small.txt".to_string(),
            b"DEFAULT local\nLABEL local\n  LOCALBOOT 0\n".to_vec(),
        ),
        ("ubuntu/linux".to_string(), pattern(300_001, 1)),
        ("exact512".to_string(), pattern(512 * 20, 2)), // a multiple of the default blksize: ends with an empty block
        ("rollover.bin".to_string(), pattern(512 * 65_536 + 100, 3)), // more than 65535 blocks at 512 bytes
    ];
    for (name, data) in &files {
        std::fs::write(root.join(name), data).unwrap();
    }
    std::fs::write(dir.path().join("secret"), b"secret").unwrap();
    Fixture { dir, files }
}

async fn serve(
    root: &Path,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<TftpStats>,
) {
    let ns = Namespace::new().with_root(root).unwrap();
    let server = TftpServer::bind("127.0.0.1:0".parse().unwrap(), ns, TftpConfig::default())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let h = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap()
    });
    (addr, tx, h)
}

async fn run(cmd: Vec<String>) -> std::process::Output {
    tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .output(),
    )
    .await
    .expect("client finished in time")
    .expect("client runs")
}

fn clients(addr: SocketAddr, remote: &str, local: &Path) -> Vec<(&'static str, Vec<String>)> {
    let (h, p) = (addr.ip().to_string(), addr.port().to_string());
    let l = local.display().to_string();
    let url = format!("tftp://{h}:{p}/{remote}");
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
    vec![
        (
            "tftp-hpa (no options)",
            s(&["tftp", "-m", "binary", &h, &p, "-c", "get", remote, &l]),
        ),
        (
            "curl (no options)",
            s(&["curl", "-sS", "--tftp-no-options", "-o", &l, &url]),
        ),
        (
            "curl (tsize, blksize 1432)",
            s(&["curl", "-sS", "--tftp-blksize", "1432", "-o", &l, &url]),
        ),
        (
            "busybox (no options)",
            s(&["busybox", "tftp", "-g", "-r", remote, "-l", &l, &h, &p]),
        ),
        (
            "busybox (blksize 1432)",
            s(&[
                "busybox", "tftp", "-b", "1432", "-g", "-r", remote, "-l", &l, &h, &p,
            ]),
        ),
        (
            "atftp (no options)",
            s(&["atftp", "-g", "-r", remote, "-l", &l, &h, &p]),
        ),
        (
            "atftp (blksize 1432, tsize)",
            s(&[
                "atftp",
                "--option",
                "blksize 1432",
                "--option",
                "tsize 0",
                "-g",
                "-r",
                remote,
                "-l",
                &l,
                &h,
                &p,
            ]),
        ),
        (
            "atftp (windowsize 16)",
            s(&[
                "atftp",
                "--option",
                "blksize 1432",
                "--option",
                "windowsize 16",
                "-g",
                "-r",
                remote,
                "-l",
                &l,
                &h,
                &p,
            ]),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_clients_fetch_every_file_with_and_without_options() {
    for tool in ["tftp", "curl", "busybox", "atftp"] {
        assert!(
            have(tool),
            "{tool} is missing: .ci/run installs tftp-hpa, curl, busybox and atftp"
        );
    }
    let fx = fixture();
    let (addr, stop, handle) = serve(&fx.dir.path().join("root")).await;
    let out_dir = fx.dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let mut transfers = 0;
    for (name, data) in &fx.files {
        for (client, cmd) in clients(addr, name, &out_dir.join("got")) {
            // The rollover file is 32 MiB: fetch it with the clients that negotiate large
            // blocks only... except one that must roll over at 512-byte blocks.
            if name == "rollover.bin"
                && !(client.contains("1432") || client == "busybox (no options)")
            {
                continue;
            }
            let o = run(cmd).await;
            let got = std::fs::read(out_dir.join("got")).unwrap_or_default();
            assert!(
                o.status.success() && got == *data,
                "{client} fetching {name}: status {:?}, {} of {} bytes, stderr: {}",
                o.status,
                got.len(),
                data.len(),
                String::from_utf8_lossy(&o.stderr)
            );
            std::fs::remove_file(out_dir.join("got")).unwrap();
            transfers += 1;
        }
    }
    let _ = stop.send(());
    let stats = handle.await.unwrap();
    assert_eq!(stats.completed, transfers);
    assert_eq!(stats.failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_and_missing_files_are_refused_over_the_wire() {
    assert!(have("curl") && have("atftp"));
    let fx = fixture();
    let (addr, stop, handle) = serve(&fx.dir.path().join("root")).await;
    let out = fx.dir.path().join("x");
    // curl's exit codes: 69 = TFTP access violation, 68 = TFTP file not found.
    for (name, expect) in [
        ("../secret", 69),
        ("missing", 68),
        ("ubuntu/../../secret", 69),
    ] {
        let url = format!("tftp://{}/{}", addr, name);
        let o = run(vec![
            "curl".into(),
            "-sS".into(),
            "--path-as-is".into(),
            "-o".into(),
            out.display().to_string(),
            url,
        ])
        .await;
        assert_eq!(
            o.status.code(),
            Some(expect),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(std::fs::read(&out).map(|b| b != b"secret").unwrap_or(true));
    }
    let _ = stop.send(());
    let stats = handle.await.unwrap();
    assert_eq!(stats.completed, 0);
    assert_eq!(stats.failed, 3);
}
