//! The doctor's etcd check against a real three-member etcd (the version the API server
//! peers pin) with client-certificate TLS on loopback, as kubeadm runs it: all up, one
//! member down (quorum holds, one more loses it), two down (quorum lost).
#![allow(clippy::disallowed_methods)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cloudlet_cluster::doctor::etcd;
use cloudlet_core::doctor::{Finding, Status};
use cloudlet_testkit::apiserver::peers;
use cloudlet_testkit::https::{openssl, tls_config};

struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA, etcd's serving certificate for 127.0.0.1 and a client certificate, in `dir`.
fn certificates(dir: &Path) -> cloudlet_transport::tls::rustls::ClientConfig {
    let _ = tls_config(dir); // ca.crt/ca.key and srv.crt/srv.key for 127.0.0.1
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=cloudlet-doctor",
        ],
        dir,
    );
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "client.crt",
            "-extfile",
            "client.ext",
        ],
        dir,
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    cloudlet_transport::tls::mutual_config(
        &read("ca.crt"),
        &read("client.crt"),
        &read("client.key"),
    )
    .unwrap()
}

fn start(dir: &Path) -> (Vec<Member>, Vec<(String, String)>) {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (port(), port())).collect();
    let cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members = Vec::new();
    let mut urls = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let url = format!("https://127.0.0.1:{client}");
        let data = dir.join(format!("e{i}"));
        let child = Command::new(peers().join("etcd"))
            .args([
                "--name",
                &format!("e{i}"),
                "--data-dir",
                &data.display().to_string(),
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                "new",
                "--cert-file",
                &dir.join("srv.crt").display().to_string(),
                "--key-file",
                &dir.join("srv.key").display().to_string(),
                "--trusted-ca-file",
                &dir.join("ca.crt").display().to_string(),
                "--client-cert-auth",
                "--unsafe-no-fsync",
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        members.push(Member(child));
        urls.push((format!("e{i}"), url));
    }
    (members, urls)
}

fn find<'a>(found: &'a [Finding], subject: &str) -> &'a Finding {
    found
        .iter()
        .find(|f| f.subject == subject)
        .unwrap_or_else(|| panic!("no finding about {subject}: {found:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_quorum_are_read_through_etcds_api() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certificates(dir.path());
    let (mut members, urls) = start(dir.path());
    let limit = Duration::from_secs(2);
    // Up once every member answers with the same leader.
    let mut found = Vec::new();
    for _ in 0..100 {
        found = etcd(&urls, &tls, limit).await;
        if find(&found, "etcd quorum").status == Status::Ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        find(&found, "etcd quorum").evidence,
        "3 of 3 members answer, one leader"
    );
    let roles: Vec<&str> = ["e0", "e1", "e2"]
        .iter()
        .map(|m| find(&found, &format!("etcd {m}")).evidence.as_str())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| r.contains("the leader")).count(),
        1,
        "{roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| r.contains("a follower")).count(),
        2,
        "{roles:?}"
    );
    assert!(roles.iter().all(|r| r.starts_with("etcd 3.")), "{roles:?}");

    // Without a client certificate the members refuse (TLS client auth), and say so.
    let anonymous =
        cloudlet_transport::tls::client_config(Some(&dir.path().join("ca.crt"))).unwrap();
    let refused = etcd(&urls[..1], &anonymous, limit).await;
    assert_eq!(find(&refused, "etcd e0").status, Status::Fail);

    // One member down: it fails, the quorum holds with a warning.
    drop(members.pop());
    let mut found = Vec::new();
    for _ in 0..50 {
        found = etcd(&urls, &tls, limit).await;
        if find(&found, "etcd quorum").status == Status::Warn {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(find(&found, "etcd e2").status, Status::Fail);
    assert_eq!(find(&found, "etcd e0").status, Status::Ok);
    assert_eq!(
        find(&found, "etcd quorum").evidence,
        "2 of 3 members answer: quorum holds (2 needed), 1 more lost loses it"
    );

    // Two down: no leader, quorum lost.
    drop(members.pop());
    let mut found = Vec::new();
    for _ in 0..100 {
        found = etcd(&urls, &tls, limit).await;
        if find(&found, "etcd quorum").status == Status::Fail {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let q = find(&found, "etcd quorum");
    assert_eq!(q.status, Status::Fail);
    assert!(
        q.evidence
            .starts_with("1 of 3 members answer, 2 needed: quorum is lost"),
        "{}",
        q.evidence
    );
}
