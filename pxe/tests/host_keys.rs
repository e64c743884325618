//! The host key an install reports becomes a `known_hosts` line that OpenSSH verifies the
//! machine by: a real sshd with that key is accepted, one with another key is refused as a
//! changed host identity, and a reinstall's new key replaces the old one.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cloudlet_pxe::install::{BootAnswer, Installs, Windows, parse_host_key};
use cloudlet_testkit::hollow::ssh_keygen;

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Sshd(Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sshd(dir: &Path, host_key: &Path, port: u16) -> Sshd {
    std::fs::create_dir_all("/run/sshd").unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-p", &port.to_string(), "-h"])
        .arg(host_key)
        .args([
            "-o",
            "ListenAddress=127.0.0.1",
            "-o",
            &format!("AuthorizedKeysFile={}", dir.join("authorized").display()),
            "-o",
            "StrictModes=no",
            "-o",
            &format!("PidFile={}", dir.join(format!("sshd-{port}.pid")).display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd runs (openssh-server)");
    // Listening once a connection is accepted.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Sshd(child)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `ssh ... echo hello` with cloudlet's known_hosts: its output and error text.
fn ssh(dir: &Path, known_hosts: &Path, port: u16) -> (bool, String) {
    let o = Command::new("ssh")
        .args(["-p", &port.to_string(), "-i"])
        .arg(dir.join("user"))
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &format!("UserKnownHostsFile={}", known_hosts.display()),
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "root@127.0.0.1",
            "echo",
            "hello",
        ])
        .output()
        .unwrap();
    (
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "hello",
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// One install of `name` that reports `host_key` (as the installer sends it).
fn install(s: &mut Installs, name: &str, host_key: &str, now: u64) {
    s.discovered(name, "52:54:00:aa:00:01", now).unwrap();
    let BootAnswer::Install { token } = s.boot(name, IP, None, now + 1).unwrap() else {
        panic!("installs");
    };
    s.config_fetched(name, &token, IP, now + 2).unwrap();
    let reported = parse_host_key(&host_key.replace(' ', ":"));
    assert!(reported.is_some(), "{host_key}");
    s.report(name, &token, IP, true, None, reported, now + 3)
        .unwrap();
}

#[test]
fn openssh_verifies_a_machine_by_the_host_key_its_install_reported() {
    let dir = tempfile::tempdir().unwrap();
    let user = ssh_keygen(&dir.path().join("user"));
    std::fs::write(dir.path().join("authorized"), format!("{user}\n")).unwrap();
    let first = ssh_keygen(&dir.path().join("host1"));
    let state = dir.path().join("state");
    let mut installs = Installs::open(&state, Windows::default()).unwrap();
    install(&mut installs, "vm1", &first, 100);
    let port = free_port();
    let known = dir.path().join("known_hosts");
    std::fs::write(&known, installs.known_hosts(|_| Some(IP), port)).unwrap();

    let _server = sshd(dir.path(), &dir.path().join("host1"), port);
    let (ok, err) = ssh(dir.path(), &known, port);
    assert!(ok, "{err}");

    // Something else answering at that address with another key is refused.
    drop(_server);
    let other = ssh_keygen(&dir.path().join("host2"));
    let port2 = free_port();
    std::fs::write(&known, installs.known_hosts(|_| Some(IP), port2)).unwrap();
    let _impostor = sshd(dir.path(), &dir.path().join("host2"), port2);
    let (ok, err) = ssh(dir.path(), &known, port2);
    assert!(!ok);
    assert!(
        err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{err}"
    );

    // A reinstall reports the new key: it replaces the old, and the machine is accepted.
    let mut installs = Installs::open(&state, Windows::default()).unwrap();
    installs.reinstall("vm1", 200).unwrap();
    install(&mut installs, "vm1", &other, 201);
    std::fs::write(&known, installs.known_hosts(|_| Some(IP), port2)).unwrap();
    let (ok, err) = ssh(dir.path(), &known, port2);
    assert!(ok, "{err}");
    assert_eq!(
        Installs::open(&state, Windows::default())
            .unwrap()
            .machines()["vm1"]
            .host_key
            .as_deref(),
        Some(other.as_str())
    );
}
