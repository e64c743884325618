//! `cloudlet pxe serve | status | reinstall` on the seed lab, on loopback: a machine's boot
//! script, its install config under its token and its callback through the running CLI (curl
//! as the machine), the events it prints, the state `pxe status` reads afterwards, a
//! reinstall, and the error when the boot server's address is not this host's.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn seed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed")
}

fn cloudlet(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloudlet"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("runs")
}

fn status(state: &Path) -> serde_json::Value {
    let s = seed();
    let o = cloudlet(
        state,
        &["pxe", "status", s.to_str().unwrap(), "--output", "json"],
    );
    assert!(o.status.success(), "{o:?}");
    serde_json::from_slice(&o.stdout).unwrap()
}

fn curl(args: &[&str]) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn serve_install_status_reinstall() {
    let st = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("Ubuntu20.04")).unwrap();
    std::fs::write(root.path().join("Ubuntu20.04/linux"), b"kernel").unwrap();
    std::fs::write(root.path().join("Ubuntu20.04/initrd.gz"), b"initrd").unwrap();
    let s = seed();
    let seed = s.to_str().unwrap();

    let before = status(st.path());
    let machines = before.as_array().unwrap();
    let names: Vec<&str> = machines
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["k8s-master", "k8s-node1", "k8s-node2"]);
    assert!(machines.iter().all(|m| m["state"].is_null()), "{before}");
    let node1 = &machines[1];
    let mac = node1["mac"].as_str().unwrap().replace(':', "-");

    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudlet"))
        .arg("--state-dir")
        .arg(st.path())
        .args([
            "pxe",
            "serve",
            seed,
            "--address",
            "127.0.0.1",
            "--no-proxy-dhcp",
        ])
        .args([
            "--http-port",
            "0",
            "--tftp-port",
            "0",
            "--output",
            "json",
            "--root",
        ])
        .arg(root.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    err.read_line(&mut banner).unwrap();
    assert!(
        banner.starts_with("serving network installs: HTTP 127.0.0.1:"),
        "{banner}"
    );
    let http = banner
        .split("HTTP ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap()
        .to_string();
    assert!(banner.contains("proxyDHCP off"), "{banner}");

    let (code, script) = curl(&[&format!("http://{http}/ipxe/{mac}")]);
    assert_eq!(code, 200, "{script}");
    let token = script
        .split("/install/k8s-node1/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("{script}"))
        .to_string();
    let (code, ks) = curl(&[&format!("http://{http}/install/k8s-node1/{token}/config")]);
    assert_eq!(code, 200);
    assert!(
        ks.contains("network --device=link --activate --bootproto=static --ip=10.0.20.11"),
        "{ks}"
    );
    let (code, _) = curl(&[
        "-d",
        "installed",
        &format!("http://{http}/install/k8s-node1/{token}/done"),
    ]);
    assert_eq!(code, 200);

    // The events, as JSON lines, up to the report.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut events = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let e: serde_json::Value = serde_json::from_str(&line).unwrap();
        let last = e["event"] == "reported";
        events.push(e);
        if last {
            break;
        }
    }
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["boot", "config", "reported"], "{events:?}");
    assert_eq!(events[2]["machine"], "k8s-node1");
    assert_eq!(events[2]["ok"], true);

    // Ctrl-C stops it cleanly.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let code = child.wait().unwrap();
    assert!(code.success(), "{code:?}");

    let after = status(st.path());
    let n1 = &after.as_array().unwrap()[1];
    assert_eq!(n1["state"]["phase"], "installed", "{after}");
    assert_eq!(n1["state"]["boots"], 1);
    let o = cloudlet(st.path(), &["pxe", "status", seed]);
    let human = String::from_utf8_lossy(&o.stdout);
    assert!(
        human
            .lines()
            .any(|l| l.contains("k8s-node1") && l.contains("installed")),
        "{human}"
    );
    assert!(
        human
            .lines()
            .any(|l| l.contains("k8s-master") && l.contains("not seen yet")),
        "{human}"
    );

    let o = cloudlet(st.path(), &["pxe", "reinstall", seed, "k8s-node1"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(status(st.path())[1]["state"]["phase"], "discovered");
    let o = cloudlet(st.path(), &["pxe", "reinstall", seed, "k8s-node9"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("k8s-node9"),
        "{o:?}"
    );

    // Without --address the lab's boot server machine's address is used: not this host's.
    let o = cloudlet(
        st.path(),
        &[
            "pxe",
            "serve",
            seed,
            "--no-proxy-dhcp",
            "--http-port",
            "0",
            "--tftp-port",
            "0",
        ],
    );
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("binding HTTP on 10.0.10.20") && e.contains("this host has no such address"),
        "{e}"
    );
}
