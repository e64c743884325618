//! The doctor's resolution check against a real resolver: dnsmasq (the Linux router's) on
//! loopback with the lab's names, one of them changed by hand, one missing — and a resolver
//! that never answers.
#![allow(clippy::disallowed_methods)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cloudlet_core::doctor::Status;
use cloudlet_network::doctor::{Answer, names_resolve, resolve};
use cloudlet_testkit::shell::tool;

struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn dnsmasq(records: &[&str]) -> (Dnsmasq, SocketAddr) {
    assert!(tool("dnsmasq"), ".ci/run installs dnsmasq-base");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = vec![
        "--keep-in-foreground".to_string(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--bind-interfaces".into(),
        "--listen-address=127.0.0.1".into(),
        format!("--port={port}"),
        "--pid-file=".into(),
        "--user=root".into(),
        "--local=/rt.lan/".into(),
        "--local=/example.com/".into(),
    ];
    args.extend(records.iter().map(|r| format!("--host-record={r}")));
    let child = Command::new("dnsmasq")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = Dnsmasq(child);
    // Up once it answers anything.
    for _ in 0..50 {
        if resolve(addr, "probe.rt.lan", Duration::from_millis(300))
            .await
            .is_ok()
        {
            return (server, addr);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("dnsmasq did not start on {addr}");
}

#[tokio::test]
async fn names_are_asked_of_the_resolver_and_compared_with_the_lab() {
    let (_server, addr) = dnsmasq(&[
        "web.rt.lan,10.77.0.30",
        // Changed on the router by hand: the lab says 10.0.20.200.
        "blog.example.com,10.0.20.99",
    ])
    .await;
    assert_eq!(
        resolve(addr, "web.rt.lan", Duration::from_secs(2)).await,
        Ok(Answer::Addresses(vec![Ipv4Addr::new(10, 77, 0, 30)]))
    );
    let names = vec![
        ("web.rt.lan".to_string(), Ipv4Addr::new(10, 77, 0, 30)),
        (
            "blog.example.com".to_string(),
            Ipv4Addr::new(10, 0, 20, 200),
        ),
        ("mail.rt.lan".to_string(), Ipv4Addr::new(10, 77, 0, 40)),
    ];
    let found = names_resolve(addr, &names, Duration::from_secs(2)).await;
    assert_eq!(found.len(), 3);
    assert_eq!(found[0].status, Status::Ok);
    assert_eq!(
        found[0].evidence,
        format!("resolves to 10.77.0.30 through {addr}")
    );
    assert_eq!(found[1].status, Status::Fail);
    assert_eq!(
        found[1].evidence,
        format!("resolves to 10.0.20.99 through {addr}; the lab says 10.0.20.200")
    );
    assert!(found[1].fix.as_deref().unwrap().contains("by hand"));
    assert_eq!(found[2].status, Status::Fail);
    assert!(
        found[2].evidence.contains("does not exist"),
        "{}",
        found[2].evidence
    );
}

#[tokio::test]
async fn a_resolver_that_never_answers_fails_within_the_limit() {
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let names = vec![("web.rt.lan".to_string(), Ipv4Addr::new(10, 77, 0, 30))];
    let found = names_resolve(addr, &names, Duration::from_secs(1)).await;
    assert_eq!(found[0].status, Status::Fail);
    assert_eq!(
        found[0].evidence,
        format!("{addr} did not answer within 1s")
    );
    // It was asked three times (a lost datagram is retried), and nothing else was sent.
    let mut buf = [0u8; 600];
    let mut seen = 0;
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(50), silent.recv_from(&mut buf)).await
    {
        seen += 1;
    }
    assert_eq!(seen, 3);
}
