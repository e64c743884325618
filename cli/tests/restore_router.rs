//! The router's configuration backed up and restored through the CLI:
//! - a real Linux router (dnsmasq + nftables) in a network namespace the test creates, with
//!   cloudlet run on the router as the backend expects: apply, a LAN client leases an address
//!   no lab file holds, `backup run` keeps the files and the leases, `verify` proves them up to
//!   L3; then the router loses everything (dnsmasq, its table, its files, its leases and
//!   cloudlet's state) and `cloudlet restore` brings it back with the client's lease;
//! - the seed's router on a FAKE pfSense (its web interface hands out config.xml) and on a
//!   FAKE OPNsense (neither can run here): the whole config.xml is backed up, and the restore
//!   saves it for loading by hand (neither API takes one) before applying the lab to the
//!   reinstalled box.
#![allow(missing_docs, clippy::disallowed_methods)]

use cloudlet_testkit::shell::{nslookup, ok, sh, tool, udhcpc};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use cloudlet_testkit::{opnsense_fake, pfsense_fake};

const KEY: &str = "router-restore-key";

mod common;

/// Namespaces the test made; what runs in them is killed and they are removed on drop.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = sh(&format!(
                "ip netns pids {n} | xargs -r kill -9; ip netns del {n}"
            ));
        }
    }
}

/// cloudlet run on the router (inside its namespace).
fn on_router(ns: &str, args: &[&str]) -> Output {
    let mut all = vec!["netns", "exec", ns, common::BIN];
    all.extend_from_slice(args);
    Command::new("ip")
        .args(&all)
        .env("CLOUDLET_BACKUP_KEY", KEY)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the CLI runs")
}

fn text(o: &Output) -> String {
    common::text(o, &[KEY])
}

fn linux_lab(work: &Path) -> std::path::PathBuf {
    let dir = work.join("lab");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("lab.yaml"),
        format!(
            r#"name: rt
site: {{domain: rt.lan}}
targets:
  router: {{kind: linux, dir: {router}, leases: {leases}}}
networks:
  wan: {{cidr: 192.168.77.0/24, gateway: 192.168.77.1, wan: true}}
  lan:
    cidr: 10.77.0.0/24
    gateway: 10.77.0.1
    dhcp: {{ranges: [10.77.0.100-10.77.0.150]}}
    dns: [10.77.0.1]
router:
  kind: linux
  machine: gw
  forwards:
    - {{port: 443, to: 10.77.0.30}}
machines:
  gw:
    cpus: 1
    memory: 1GiB
    nics:
      - {{network: wan, ip: 192.168.77.2}}
      - {{network: lan, ip: 10.77.0.1}}
  web:
    cpus: 1
    memory: 1GiB
    nics: [{{network: lan, ip: 10.77.0.30, mac: "52:54:00:77:00:30"}}]
backup:
  key: {{env: CLOUDLET_BACKUP_KEY}}
  targets:
    nas: {{dir: {nas}}}
  state: {{target: nas, every: 1h}}
  router: {{target: nas, every: 1h}}
"#,
            router = work.join("router").display(),
            leases = work.join("leases").display(),
            nas = work.join("nas").display(),
        ),
    )
    .unwrap();
    dir
}

fn lookup(ns: &str, name: &str) -> String {
    nslookup(ns, name, "10.77.0.1")
}

fn dnsmasq_runs(router_dir: &Path) -> bool {
    std::fs::read_to_string(router_dir.join("dnsmasq.pid"))
        .ok()
        .is_some_and(|pid| sh(&format!("kill -0 {}", pid.trim())).status.success())
}

#[test]
fn a_linux_router_comes_back_with_its_leases_from_cloudlet_restore() {
    assert!(
        tool("dnsmasq") && tool("nft") && tool("busybox"),
        ".ci/run installs dnsmasq-base, nftables and busybox"
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let id = std::process::id() % 100_000;
    let (r, l) = (format!("rrr{id}"), format!("rrl{id}"));
    let _ns = Namespaces(vec![r.clone(), l.clone()]);
    for n in [&r, &l] {
        ok(&format!("ip netns add {n} && ip -n {n} link set lo up"));
    }
    ok(&format!(
        "ip link add lan netns {r} type veth peer name eth0 netns {l}"
    ));
    ok(&format!(
        "ip -n {r} link add wan type veth peer name wanp && ip -n {r} link set wanp up && ip -n {r} addr add 192.168.77.2/24 dev wan && ip -n {r} link set wan up"
    ));
    ok(&format!(
        "ip -n {r} addr add 10.77.0.1/24 dev lan && ip -n {r} link set lan up"
    ));
    ok(&format!(
        "ip -n {l} link set eth0 address 52:54:00:77:00:99 && ip -n {l} link set eth0 up"
    ));
    let dir = linux_lab(w);
    let lab = dir.to_str().unwrap();

    let o = on_router(&r, &["apply", lab, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(dnsmasq_runs(&w.join("router")));
    // A client with no reservation: its address is the router's runtime state.
    let dynamic = udhcpc(&l, w, None);
    assert!(dynamic.starts_with("10.77.0.1"), "{dynamic}");
    assert!(lookup(&l, "web.rt.lan").contains("10.77.0.30"));

    let o = on_router(&r, &["backup", "run", lab]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("router"), "{t}");
    let o = on_router(&r, &["backup", "verify", lab, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let router = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "router")
        .expect("the router class is verified");
    assert_eq!(router["levels"].as_array().unwrap().len(), 4, "{router}");
    assert!(
        router["levels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ok"] == true),
        "{router}"
    );

    // Disaster: dnsmasq, the table, the router's files, its leases and cloudlet's state gone.
    let pid = std::fs::read_to_string(w.join("router/dnsmasq.pid")).unwrap();
    ok(&format!("kill {}", pid.trim()));
    ok(&format!("ip netns exec {r} nft delete table inet cloudlet"));
    std::fs::remove_dir_all(w.join("router")).unwrap();
    std::fs::remove_file(w.join("leases")).unwrap();
    std::fs::remove_dir_all(dir.join(".cloudlet")).unwrap();
    assert!(!lookup(&l, "web.rt.lan").contains("10.77.0.30"));

    let o = on_router(&r, &["restore", lab, "--from", "nas"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for line in [
        "restore: identity done in ",
        "restore: router done in ",
        "1 DHCP lease(s); dnsmasq and the nftables table running",
        "restore: infrastructure done in ",
        "  router   snapshot ",
    ] {
        assert!(t.contains(line), "`{line}` not in:\n{t}");
    }
    assert!(dnsmasq_runs(&w.join("router")));
    let leases = std::fs::read_to_string(w.join("leases")).unwrap();
    assert!(
        leases.contains(&format!("52:54:00:77:00:99 {dynamic}")),
        "{leases}"
    );
    assert!(lookup(&l, "web.rt.lan").contains("10.77.0.30"));
    let table = String::from_utf8_lossy(
        &sh(&format!("ip netns exec {r} nft list table inet cloudlet")).stdout,
    )
    .into_owned();
    assert!(table.contains("dnat ip to 10.77.0.30:443"), "{table}");
    // The restored router is what the lab says: nothing left to change.
    let o = on_router(&r, &["plan", lab]);
    assert!(text(&o).contains("No changes"), "{}", text(&o));
    let pid = std::fs::read_to_string(w.join("router/dnsmasq.pid")).unwrap();
    let _ = sh(&format!("kill {}", pid.trim()));
}

/// A fake router of either kind, as the restore sees it.
enum FakeRouter {
    Opn(opnsense_fake::Fake),
    Pf(pfsense_fake::Fake),
}

impl FakeRouter {
    /// Entries running on the box.
    fn served(&self) -> usize {
        match self {
            FakeRouter::Opn(f) => f.state.lock().unwrap().live.values().map(|m| m.len()).sum(),
            FakeRouter::Pf(f) => f.state.lock().unwrap().live.values().map(Vec::len).sum(),
        }
    }

    /// The box reinstalled: nothing configured.
    fn wipe(&self) {
        match self {
            FakeRouter::Opn(f) => {
                let mut s = f.state.lock().unwrap();
                s.live
                    .values_mut()
                    .for_each(std::collections::BTreeMap::clear);
                s.config
                    .values_mut()
                    .for_each(std::collections::BTreeMap::clear);
            }
            FakeRouter::Pf(f) => {
                let mut s = f.state.lock().unwrap();
                s.live.values_mut().for_each(Vec::clear);
                s.config.values_mut().for_each(Vec::clear);
            }
        }
    }
}

/// The seed with its router on a fake `kind` box, backed up, the box and cloudlet's state
/// lost, restored: config.xml saved for loading by hand, the lab applied to the fresh box.
async fn config_xml_saved_for_loading_by_hand(kind: &str) {
    const API_KEY: &str = "router-api-key";
    const API_SECRET: &str = "router-api-secret-value";
    const GUI_PASSWORD: &str = "router-gui-password";
    let work = tempfile::tempdir().unwrap();
    let dir = common::seed_lab(work.path());
    let (fake, endpoint, ca, target) = if kind == "opnsense" {
        let f = opnsense_fake::Fake::start(work.path(), API_KEY, API_SECRET, "dnsmasq").await;
        std::fs::write(
            dir.join("secrets/opnsense.txt"),
            format!("key={API_KEY}\nsecret={API_SECRET}\n"),
        )
        .unwrap();
        let (e, c) = (f.endpoint.clone(), f.ca.clone());
        (
            FakeRouter::Opn(f),
            e,
            c,
            "credentials: {file: secrets/opnsense.txt}",
        )
    } else {
        let f = pfsense_fake::Fake::start(work.path(), API_SECRET).await;
        {
            let mut s = f.state.lock().unwrap();
            s.gui_user = Some(("backup".into(), GUI_PASSWORD.into()));
            s.gui_backup_privilege = true;
        }
        std::fs::write(dir.join("secrets/pfrest.txt"), API_SECRET).unwrap();
        std::fs::write(
            dir.join("secrets/pfsense-gui.txt"),
            format!("backup:{GUI_PASSWORD}\n"),
        )
        .unwrap();
        let (e, c) = (f.endpoint.clone(), f.ca.clone());
        (
            FakeRouter::Pf(f),
            e,
            c,
            "credentials: {file: secrets/pfrest.txt}, gui_credentials: {file: secrets/pfsense-gui.txt}",
        )
    };
    let lab_yaml = std::fs::read_to_string(dir.join("lab.yaml"))
        .unwrap()
        .replace(
            "  router: {kind: local}",
            &format!(
                "  router: {{kind: {kind}, endpoint: {endpoint}, ca: {}, {target}}}",
                ca.display()
            ),
        )
        .replace("  kind: pfsense\n", &format!("  kind: {kind}\n"));
    assert!(lab_yaml.contains(&format!("kind: {kind}, endpoint")));
    std::fs::write(dir.join("lab.yaml"), lab_yaml).unwrap();
    std::fs::write(
        dir.join("backup.yaml"),
        format!(
            "backup:\n  key: {{env: CLOUDLET_BACKUP_KEY}}\n  targets:\n    nas: {{dir: {}}}\n  state: {{target: nas, every: 1h}}\n  router: {{target: nas, every: 1d}}\n",
            work.path().join("nas").display()
        ),
    )
    .unwrap();
    let l = dir.to_str().unwrap();
    let env = [("CLOUDLET_BACKUP_KEY", KEY)];
    let secrets = [KEY, API_SECRET, GUI_PASSWORD];

    let o = common::cloudlet_async(&env, &["apply", l, "--yes"]).await;
    assert!(o.status.success(), "{kind}: {}", common::text(&o, &secrets));
    let o = common::cloudlet_async(&env, &["backup", "run", l]).await;
    let t = common::text(&o, &secrets);
    assert!(o.status.success(), "{kind}: {t}");
    assert!(t.contains("ok router → nas: snapshot "), "{kind}: {t}");

    // The box reinstalled (same address, nothing configured); cloudlet's state gone.
    let served = fake.served();
    assert!(served > 0);
    fake.wipe();
    std::fs::remove_dir_all(dir.join(".cloudlet")).unwrap();

    let o = common::cloudlet_async(&env, &["restore", l, "--from", "nas"]).await;
    let t = common::text(&o, &secrets);
    assert!(o.status.success(), "{kind}: {t}");
    assert!(t.contains("restore: router done in "), "{t}");
    assert!(
        t.contains("load it by hand: config.xml is saved as "),
        "{t}"
    );
    assert!(t.contains("Backup"), "{t}");
    let saved = dir.join(".cloudlet/restore/router/config.xml");
    let xml = std::fs::read_to_string(&saved).unwrap();
    assert!(
        xml.contains(&format!("<{kind}>")) && xml.contains("blog"),
        "{xml}"
    );
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600,
        "the router's secrets are readable by the owner only"
    );
    // The infrastructure phase applied the lab to the fresh box.
    assert_eq!(
        fake.served(),
        served,
        "{kind}: the lab's router entries are back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pfsense_s_config_xml_comes_from_its_web_interface_and_is_saved_for_loading_by_hand() {
    config_xml_saved_for_loading_by_hand("pfsense").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opnsense_s_config_xml_is_backed_up_and_saved_for_loading_by_hand() {
    config_xml_saved_for_loading_by_hand("opnsense").await;
}
