//! The `cloudlet` binary end to end: validate, plan, apply, saved plans, render, schema,
//! completions, an apply killed in the middle, and `pxe serve | status | reinstall` on
//! loopback.
#![allow(missing_docs, clippy::disallowed_methods)] // a plain test thread may sleep while it polls a child process

use std::fmt::Write as _;
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

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn validate_plan_apply_replan_on_the_seed() {
    let st = tempfile::tempdir().unwrap();
    let s = seed();
    let seed = s.to_str().unwrap();
    let o = cloudlet(st.path(), &["validate", seed]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("lab `seed` is valid (7 machines, 3 apps)"));

    let o = cloudlet(st.path(), &["plan", seed, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    for id in [
        "hypervisor/vm/k8s-node1",
        "router/dhcp-reservation/k8s-node1.nic0",
        "router/port-forward/udp-51820",
        "pxe/install-config/k8s-master",
        "storage/nfs-export/mail",
        "cluster/service/wireguard.wireguard-lb",
        "cluster/ingress/blog.blog",
        "cluster/ipaddresspool/metallb-system.default",
    ] {
        assert!(out.contains(id), "plan lacks {id}:\n{out}");
    }
    // A reviewer sees what matters of each new resource under its line.
    for (id, headline) in [
        (
            "hypervisor/vm/k8s-master",
            "4 CPUs, 8 GiB memory, disks 64 GiB, NICs on k8s",
        ),
        (
            "router/port-forward/tcp-25",
            "tcp/25 on dwan → 10.0.20.200:25",
        ),
        (
            "storage/dataset/blog",
            "/mnt/main/blog (its data is kept when it leaves the lab)",
        ),
        (
            "cluster/deployment/blog.blog",
            "docker.io/viktorbarzin/blog:latest, 2 replica(s)",
        ),
        (
            "cluster/service/mailserver.mailserver-lb",
            "LoadBalancer 10.0.20.200, ports 25/TCP 587/TCP 993/TCP",
        ),
    ] {
        let line = format!("create {id}\n        {headline}\n");
        assert!(out.contains(&line), "plan lacks {line:?}:\n{out}");
    }

    let o = cloudlet(st.path(), &["apply", seed]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "no --yes and no terminal: refused"
    );
    assert!(text(&o).contains("pass --yes"));

    let o = cloudlet(st.path(), &["apply", seed, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Apply complete: 86 created"),
        "{}",
        text(&o)
    );

    let o = cloudlet(st.path(), &["plan", seed, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("No changes"));
    let svc = std::fs::read_to_string(
        st.path()
            .join("local/cluster/service/wireguard.wireguard-lb.json"),
    )
    .unwrap();
    assert!(svc.contains("\"metallb.io/allow-shared-ip\": \"shared\""));
    assert!(svc.contains("\"metallb.io/loadBalancerIPs\": \"10.0.20.200\""));
}

#[test]
fn plan_json_is_deterministic_and_saved_plans_go_stale() {
    let st = tempfile::tempdir().unwrap();
    let lab = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(seed()).unwrap() {
        let f = f.unwrap();
        if f.path().extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(f.path(), lab.path().join(f.file_name())).unwrap();
        }
    }
    let l = lab.path().to_str().unwrap();
    let a = cloudlet(st.path(), &["plan", l, "--output", "json"]);
    let b = cloudlet(st.path(), &["plan", l, "--output", "json"]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout, "byte-identical plans");
    let plan: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(plan["summary"]["create"], 86);

    let saved = st.path().join("plan.json");
    let o = cloudlet(st.path(), &["plan", l, "--out", saved.to_str().unwrap()]);
    assert!(o.status.success());
    // The lab changes after the plan was saved: the plan is refused.
    let cluster = lab.path().join("cluster.yaml");
    let c = std::fs::read_to_string(&cluster)
        .unwrap()
        .replace("replicas: 2", "replicas: 3");
    std::fs::write(&cluster, c).unwrap();
    let o = cloudlet(
        st.path(),
        &["apply", l, "--plan", saved.to_str().unwrap(), "--yes"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("the saved plan is stale: the lab files changed"),
        "{}",
        text(&o)
    );
    // A fresh saved plan applies; changing one app's replicas updates exactly that Deployment.
    let o = cloudlet(st.path(), &["plan", l, "--out", saved.to_str().unwrap()]);
    assert!(o.status.success());
    let o = cloudlet(
        st.path(),
        &["apply", l, "--plan", saved.to_str().unwrap(), "--yes"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let c = std::fs::read_to_string(&cluster)
        .unwrap()
        .replace("replicas: 3", "replicas: 4");
    std::fs::write(&cluster, c).unwrap();
    let o = cloudlet(st.path(), &["plan", l]);
    let out = text(&o);
    assert!(
        out.contains("~ update cluster/deployment/blog.blog"),
        "{out}"
    );
    assert!(out.contains("spec.replicas: 3 → 4"), "{out}");
    assert!(
        out.contains("0 to create, 1 to update, 0 to delete, 85 unchanged"),
        "{out}"
    );
}

#[test]
fn a_broken_lab_reports_file_line_column_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("lab.yaml");
    std::fs::write(
        &f,
        "name: t\nsite: {domain: t.lan}\nmachines:\n  a: {cpus: 1, memroy: 1GiB}\n",
    )
    .unwrap();
    let o = cloudlet(dir.path(), &["validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o);
    assert!(
        out.contains("error[unknown-key]: unknown key `memroy`; did you mean `memory`?"),
        "{out}"
    );
    assert!(out.contains("lab.yaml:4:16"), "{out}");
    assert!(out.contains("4 |   a: {cpus: 1, memroy: 1GiB}"), "{out}");
    assert!(out.contains("help: keys allowed here"), "{out}");

    std::fs::write(&f, "name: t\nsite: {domain: t.lan}\nnetworks:\n  lan: {cidr: 10.0.0.0/24}\nmachines:\n  a: {cpus: 1, memory: 1GiB, nics: [{network: lan, ip: 10.0.1.5}]}\n").unwrap();
    let o = cloudlet(
        dir.path(),
        &["validate", f.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "address-outside-network");
    assert_eq!(d["location"]["line"], 6);
    assert_eq!(d["location"]["column"], 56);
    let o = cloudlet(dir.path(), &["plan", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "plan refuses an invalid lab");
}

#[test]
fn render_schema_and_completions() {
    let st = tempfile::tempdir().unwrap();
    let out = st.path().join("rendered");
    let o = cloudlet(
        st.path(),
        &[
            "render",
            seed().to_str().unwrap(),
            "--dir",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let pxe = std::fs::read_to_string(out.join("pxe/install-config/k8s-node1.json")).unwrap();
    assert!(
        pxe.contains("$6$cloudletseed$"),
        "install configs carry the hash"
    );
    assert!(!pxe.contains("hunter2"));
    // Artifacts as the boot service serves them.
    let menu = std::fs::read_to_string(out.join("files/pxe/pxelinux.cfg/default")).unwrap();
    assert!(
        menu.contains("LABEL ubuntu2004\n  MENU LABEL Ubuntu 20.04\n  MENU DEFAULT\n"),
        "{menu}"
    );
    let ks = std::fs::read_to_string(out.join("files/pxe/install/k8s-node1/ks.cfg")).unwrap();
    assert!(
        ks.contains("--iscrypted --password=$6$cloudletseed$"),
        "{ks}"
    );
    let per_mac = std::fs::read_dir(out.join("files/pxe/pxelinux.cfg"))
        .unwrap()
        .count();
    assert_eq!(
        per_mac, 4,
        "the menu and one file per network-booting machine"
    );
    assert!(out.join("files/pxe/ipxe/k8s-master.ipxe").exists());

    let o = cloudlet(st.path(), &["schema"]);
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(schema["title"], "cloudlet lab");
    assert!(schema["properties"]["machines"].is_object());
    // A schema for each file of a lab: no root key is required (a directory lab has `name`
    // and `site` in one file); the description says the merged lab needs them.
    assert!(schema.get("required").is_none());
    assert!(
        schema["description"]
            .as_str()
            .unwrap()
            .contains("needs `name` and `site`")
    );

    let o = cloudlet(st.path(), &["completions", "bash"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("complete -F"));
}

fn big_lab(dir: &Path, apps: usize) {
    let mut s = String::from(
        "name: big\nsite: {domain: big.lan}\nnetworks:\n  k8s: {cidr: 10.1.0.0/16}\nmachines:\n  cp: {cpus: 2, memory: 4GiB, nics: [{network: k8s, ip: 10.1.0.10}]}\ncluster:\n  control_plane: [cp]\n  network_policy: {default_deny: false}\n  apps:\n",
    );
    for i in 0..apps {
        let _ = writeln!(
            s,
            "    app{i}: {{image: \"img:{i}\", ports: [{{port: 80}}]}}"
        );
    }
    std::fs::write(dir.join("lab.yaml"), s).unwrap();
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            n += count_files(&p);
        } else if p.extension().is_some_and(|x| x == "json")
            && !e.file_name().to_string_lossy().starts_with('.')
        {
            n += 1;
        }
    }
    n
}

#[test]
fn crash_in_the_middle_of_an_apply_then_converge() {
    let lab = tempfile::tempdir().unwrap();
    let st = tempfile::tempdir().unwrap();
    big_lab(lab.path(), 1500);
    let l = lab.path().to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudlet"))
        .arg("--state-dir")
        .arg(st.path())
        .args(["apply", l, "--yes", "--concurrency", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = st.path().join("local");
    let t = Instant::now();
    while count_files(&out) < 300 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "apply never got going"
        );
        if child.try_wait().unwrap().is_some() {
            panic!("apply finished before it could be killed; make the lab bigger");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = count_files(&out);
    // 1,500 apps x (namespace, deployment, service) + the node's VM and its network
    let total = 4502;
    assert!(partial < total, "killed mid-way ({partial} files)");

    let o = cloudlet(st.path(), &["apply", l, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("the previous apply") && t.contains("was interrupted"),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "Apply complete: {} created, 0 updated",
            total - partial
        )),
        "{t}"
    );
    assert_eq!(count_files(&out), total, "every resource exactly once");
    let o = cloudlet(st.path(), &["plan", l, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The journal holds both applies; the first has no end record.
    let journal = std::fs::read_to_string(st.path().join("journal.jsonl")).unwrap();
    assert_eq!(journal.matches("\"record\":\"begin\"").count(), 2);
    assert_eq!(journal.matches("\"record\":\"end\"").count(), 1);
}

fn copy_seed() -> tempfile::TempDir {
    let lab = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(seed()).unwrap() {
        let f = f.unwrap();
        if f.path().extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(f.path(), lab.path().join(f.file_name())).unwrap();
        }
    }
    lab
}

#[test]
fn removing_an_app_prunes_exactly_its_objects() {
    let st = tempfile::tempdir().unwrap();
    let lab = copy_seed();
    let l = lab.path().to_str().unwrap();
    assert!(cloudlet(st.path(), &["apply", l, "--yes"]).status.success());
    // A file cloudlet did not write sits among its output and must survive the prune.
    let hand = st
        .path()
        .join("local/cluster/deployment/blog.handmade.json");
    std::fs::write(&hand, "{\"kind\": \"Deployment\"}").unwrap();

    let cluster = lab.path().join("cluster.yaml");
    let yaml = std::fs::read_to_string(&cluster).unwrap();
    let start = yaml.find("    blog:\n").unwrap();
    let end = yaml.find("    wireguard:\n").unwrap();
    std::fs::write(&cluster, format!("{}{}", &yaml[..start], &yaml[end..])).unwrap();

    let o = cloudlet(st.path(), &["plan", l, "--output", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(steps.iter().all(|s| s["action"] == "delete"), "{ids:?}");
    assert_eq!(
        ids.iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        [
            "cluster/deployment/blog.blog",
            "cluster/ingress/blog.blog",
            "cluster/namespace/blog",
            "cluster/networkpolicy/blog.default-deny",
            "cluster/persistentvolume/blog-blog-content",
            "cluster/persistentvolumeclaim/blog.blog-content",
            "cluster/service/blog.blog",
            "router/dns-override/blog.example.com",
            "storage/nfs-export/blog.blog.content",
        ]
        .into_iter()
        .collect()
    );
    // The volume's dataset holds data: kept, and the plan says so.
    assert_eq!(
        plan["kept"],
        serde_json::json!(["storage/dataset/blog.blog.content"])
    );
    assert_eq!(plan["summary"]["kept"], 1);
    // Dependants go first: the namespace is deleted after everything in it.
    let ns = ids
        .iter()
        .position(|i| *i == "cluster/namespace/blog")
        .unwrap();
    for (i, id) in ids.iter().enumerate() {
        let namespaced = id.starts_with("cluster/") && id.contains("/blog.");
        assert!(
            !namespaced || i < ns,
            "{id} is deleted after its namespace: {ids:?}"
        );
    }
    assert!(cloudlet(st.path(), &["apply", l, "--yes"]).status.success());
    assert!(
        hand.exists(),
        "a file without cloudlet's marker is never pruned"
    );
    let o = cloudlet(st.path(), &["plan", l, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn a_real_backend_without_its_credentials_is_a_clear_error() {
    let st = tempfile::tempdir().unwrap();
    let lab = copy_seed();
    let f = lab.path().join("lab.yaml");
    let yaml = std::fs::read_to_string(&f).unwrap().replace(
        "  hypervisor: {kind: local}",
        "  hypervisor: {kind: vsphere, endpoint: \"https://vcenter.home.lan/sdk\", credentials: {env: VSPHERE_PASSWORD}}",
    );
    std::fs::write(&f, yaml).unwrap();
    let l = lab.path().to_str().unwrap();
    assert!(cloudlet(st.path(), &["validate", l]).status.success());
    let o = cloudlet(st.path(), &["plan", l]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("no provider for the hypervisor domain: the credentials: the environment variable VSPHERE_PASSWORD is not set"),
        "{}",
        text(&o)
    );
}

fn pxe_status_json(state: &Path) -> serde_json::Value {
    let s = seed();
    let o = cloudlet(
        state,
        &["pxe", "status", s.to_str().unwrap(), "--output", "json"],
    );
    assert!(o.status.success(), "{o:?}");
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The seed's `k8s-node1` address: the boot service answers the machine only from there.
const NODE1: &str = "10.0.20.11";

/// A network namespace whose loopback also holds `NODE1`, removed when dropped.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("cl-cli-{}", std::process::id());
        let sh = |cmd: String| {
            let o = Command::new("sh").args(["-c", &cmd]).output().unwrap();
            assert!(o.status.success(), "{cmd}: {o:?}");
        };
        sh(format!("ip netns add {name}"));
        let ns = Netns(name);
        sh(format!(
            "ip -n {} link set lo up && ip -n {} addr add {NODE1}/32 dev lo",
            ns.0, ns.0
        ));
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// curl inside `ns`, from the machine's address.
fn curl(ns: &Netns, args: &[&str]) -> (u16, String) {
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.0, "curl", "--interface", NODE1])
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

    let before = pxe_status_json(st.path());
    let machines = before.as_array().unwrap();
    let names: Vec<&str> = machines
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["k8s-master", "k8s-node1", "k8s-node2"]);
    assert!(machines.iter().all(|m| m["state"].is_null()), "{before}");
    let node1 = &machines[1];
    let mac = node1["mac"].as_str().unwrap().replace(':', "-");

    // The service runs where the machine's address is: a namespace of the test's own.
    let ns = Netns::new();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0, env!("CARGO_BIN_EXE_cloudlet")])
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

    let (code, script) = curl(&ns, &[&format!("http://{http}/ipxe/{mac}")]);
    assert_eq!(code, 200, "{script}");
    let token = script
        .split("/install/k8s-node1/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("{script}"))
        .to_string();
    // The token is a credential for the install config: the status shows the boot, not it.
    let booting = pxe_status_json(st.path());
    assert_eq!(booting[1]["state"]["phase"], "booting", "{booting}");
    assert!(!booting.to_string().contains(&token), "{booting}");
    let (code, ks) = curl(
        &ns,
        &[&format!("http://{http}/install/k8s-node1/{token}/config")],
    );
    assert_eq!(code, 200);
    assert!(
        ks.contains("network --device=link --activate --bootproto=static --ip=10.0.20.11"),
        "{ks}"
    );
    let (code, _) = curl(
        &ns,
        &[
            "-d",
            "installed",
            &format!("http://{http}/install/k8s-node1/{token}/done"),
        ],
    );
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

    // A reinstall while the service runs is refused, naming the holder, not silently lost.
    let o = cloudlet(st.path(), &["pxe", "reinstall", seed, "k8s-node1"]);
    assert!(!o.status.success(), "{o:?}");
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("in use by a running boot service"), "{said}");
    assert!(said.contains(&format!("pid {}", child.id())), "{said}");

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

    let after = pxe_status_json(st.path());
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
    assert_eq!(
        pxe_status_json(st.path())[1]["state"]["phase"],
        "discovered"
    );
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

#[test]
fn validate_json_reports_load_errors_as_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("lab.yaml");
    // (file bytes, diagnostic code, line, column and end column when the problem has one)
    type Case<'a> = (&'a [u8], &'a str, Option<(u64, u64, u64)>);
    let cases: [Case<'_>; 7] = [
        (b"name: t\nsite: {domain: t.lan\n", "yaml", Some((3, 1, 1))),
        (
            b"name: t\nsite: {domain: t.lan}\nmachines:\n  a: {cpus: x}\n",
            "type",
            Some((4, 13, 14)),
        ),
        (
            b"name: t\nsite: {domain: t.lan}\nbogus: 1\n",
            "unknown-key",
            Some((3, 1, 6)),
        ),
        (
            b"name: t\nsite: {domain: t.lan}\nmachines:\n  a: {cpus: 1, memroy: 1GiB}\n",
            "unknown-key",
            Some((4, 16, 22)),
        ),
        (b"name: t\nname: u\n", "yaml", Some((2, 1, 5))),
        (
            b"name: t\nsite: {domain: t.lan}\n\tmachines: {}\n",
            "yaml",
            None,
        ),
        (
            b"name: t\nsite: {domain: \xff}\n",
            "encoding",
            Some((2, 16, 16)),
        ),
    ];
    for (bytes, code, at) in cases {
        std::fs::write(&f, bytes).unwrap();
        let o = cloudlet(
            dir.path(),
            &["validate", f.to_str().unwrap(), "--output", "json"],
        );
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&o)));
        let d = &v["diagnostics"][0];
        assert_eq!(d["code"], code, "{v:#}");
        assert_eq!(d["severity"], "error");
        if let Some((line, column, end)) = at {
            assert_eq!(d["location"]["line"], line, "{v:#}");
            assert_eq!(d["location"]["column"], column, "{v:#}");
            if end > column {
                assert_eq!(
                    d["end"],
                    serde_json::json!({"line": line, "column": end}),
                    "{v:#}"
                );
            }
        }
        assert_eq!(v["format"], 1, "{v:#}");
        assert_eq!(v["valid"], false);
        assert_eq!(v["error_count"], v["diagnostics"].as_array().unwrap().len());
    }
    // Not even a file: still JSON.
    let missing = dir.path().join("missing.yaml");
    let o = cloudlet(
        dir.path(),
        &["validate", missing.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["diagnostics"][0]["code"], "io");
    let m = v["diagnostics"][0]["message"].as_str().unwrap();
    assert_eq!(m.matches("No such file").count(), 1, "{m}");
}

#[test]
fn a_plan_cut_short_by_its_reader_exits_quietly() {
    let state = tempfile::tempdir().unwrap();
    let lab = tempfile::tempdir().unwrap();
    // A plan far larger than a pipe's buffer, so writing it must meet the closed pipe.
    big_lab(lab.path(), 3000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudlet"))
        .arg("--state-dir")
        .arg(state.path())
        .args(["plan", lab.path().to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe as `head -1` does.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        first.starts_with('+') || first.contains("create"),
        "{first}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(141), "{err}");
}

#[test]
fn a_held_lock_refuses_apply_before_the_plan_with_a_readable_time() {
    let lab = copy_seed();
    let state = tempfile::tempdir().unwrap();
    let lock = state.path().join("lock");
    std::fs::write(&lock, "pid 4242 since 1764858845000\n").unwrap();
    // Blocking, so the probes below cannot make it give up.
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until flock holds it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = Command::new("flock")
            .arg("-n")
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap();
        assert!(Instant::now() < deadline, "flock never took the lock");
        if !probe.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = cloudlet(
        state.path(),
        &["apply", lab.path().to_str().unwrap(), "--yes"],
    );
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o);
    assert!(out.contains("another apply is running"), "{out}");
    assert!(
        out.contains("pid 4242 since 2025-12-04 14:34:05 UTC"),
        "{out}"
    );
    assert!(!out.contains("create"), "the plan was printed first: {out}");
}

#[test]
fn plans_are_coloured_when_asked_and_never_when_piped_by_default() {
    let st = tempfile::tempdir().unwrap();
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/seed");
    let always = cloudlet(st.path(), &["--color", "always", "plan", seed]);
    let out = String::from_utf8_lossy(&always.stdout);
    assert!(
        out.contains("\x1b[32m+ create\x1b[0m hypervisor/vm/k8s-master"),
        "{out}"
    );
    // Piped (as here) and `auto`: plain; `never`: plain; NO_COLOR is honoured too.
    for args in [&["plan", seed][..], &["--color", "never", "plan", seed][..]] {
        let o = cloudlet(st.path(), args);
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains('\x1b'),
            "{args:?}"
        );
    }
    // On a terminal (util-linux `script` gives it one), `auto` colours unless NO_COLOR is set.
    let on_tty = |no_color: Option<&str>| {
        let cmd = format!(
            "{} --state-dir {} plan {seed}",
            env!("CARGO_BIN_EXE_cloudlet"),
            st.path().display()
        );
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]).stdin(Stdio::null());
        c.env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        String::from_utf8_lossy(&c.output().expect("script runs").stdout).into_owned()
    };
    assert!(
        on_tty(None).contains("\x1b[32m+ create"),
        "{}",
        on_tty(None)
    );
    assert!(!on_tty(Some("1")).contains('\x1b'));
}

#[test]
fn a_saved_plan_is_shown_as_planned_and_drawn_as_a_graph_graphviz_reads() {
    let state = tempfile::tempdir().unwrap();
    let st = state.path().to_str().unwrap();
    let saved = state.path().join("plan.json");
    let seed = seed();
    let seed = seed.to_str().unwrap();
    let planned = cloudlet(
        state.path(),
        &["plan", seed, "--out", saved.to_str().unwrap()],
    );
    assert!(planned.status.success(), "{}", text(&planned));
    // `show` prints what `plan` printed (without the line about saving it).
    let shown = cloudlet(state.path(), &["show", saved.to_str().unwrap()]);
    assert!(shown.status.success(), "{}", text(&shown));
    let planned_text = String::from_utf8_lossy(&planned.stdout);
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        planned_text.starts_with(shown_text.as_ref()),
        "{shown_text}"
    );
    assert!(shown_text.contains("86 to create"), "{shown_text}");
    let missing = cloudlet(state.path(), &["show", &format!("{st}/nothing.json")]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("nothing.json"),
        "{}",
        text(&missing)
    );

    // The graph of the same plan: Graphviz reads it, with a node per step and the plan's edges.
    let graph = cloudlet(
        state.path(),
        &["graph", seed, "--plan", saved.to_str().unwrap()],
    );
    assert!(graph.status.success(), "{}", text(&graph));
    let dot = String::from_utf8(graph.stdout).unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    let nodes = dot.lines().filter(|l| l.contains(" [label=")).count();
    assert_eq!(nodes, steps.len());
    assert!(
        dot.contains(" -> \"hypervisor/vm/k8s-master\";"),
        "what a VM waits for: {dot}"
    );
    let mut rendered = std::process::Command::new("dot")
        .args(["-Tplain"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("Graphviz's dot runs (graphviz)");
    use std::io::Write as _;
    rendered
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let out = rendered.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        plain.lines().filter(|l| l.starts_with("node ")).count(),
        steps.len()
    );
}

/// A free port on loopback for `proto` (`tcp` or `udp`).
fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// `NAME` fetched with tftp-hpa from the server on loopback `port` into `to`.
fn tftp_get(port: u16, name: &str, to: &Path) {
    let o = Command::new("tftp")
        .args([
            "127.0.0.1",
            &port.to_string(),
            "-m",
            "binary",
            "-c",
            "get",
            name,
        ])
        .arg(to)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `cloudlet pxe serve --files DIR` with `args`, once it says what it serves; killed when
/// dropped.
struct FileServer(std::process::Child);

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_files(dir: &Path, args: &[&str]) -> (FileServer, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudlet"))
        .args(["pxe", "serve", "--files"])
        .arg(dir)
        .args(["--address", "127.0.0.1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (FileServer(child), line)
}

#[test]
fn pxe_serve_files_is_a_plain_boot_server_over_tftp_and_http_or_tftp_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("boot");
    std::fs::create_dir_all(root.join("efi")).unwrap();
    let program: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("efi/grubx64.efi"), &program).unwrap();
    std::fs::write(dir.path().join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();
    let (tftp, http) = (free_port(true), free_port(false));
    let (_server, said) = serve_files(
        &root,
        &[
            "--tftp-port",
            &tftp.to_string(),
            "--http-port",
            &http.to_string(),
        ],
    );
    assert!(
        said.contains(&format!("TFTP 127.0.0.1:{tftp}"))
            && said.contains(&format!("HTTP 127.0.0.1:{http}")),
        "{said}"
    );
    // tftp-hpa over TFTP and curl over HTTP: the same bytes.
    let got = dir.path().join("got");
    tftp_get(tftp, "efi/grubx64.efi", &got);
    assert_eq!(std::fs::read(&got).unwrap(), program);
    let o = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{http}/efi/grubx64.efi")])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(o.stdout, program);
    // Nothing outside the directory: a symlink out of it and `..` are refused.
    for path in ["escape", "../secret"] {
        let o = Command::new("curl")
            .args([
                "-s",
                "--path-as-is",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://127.0.0.1:{http}/{path}"),
            ])
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(code == "403" || code == "404", "{path}: {code}");
    }
    drop(_server);

    // TFTP alone: nothing listens for HTTP.
    let (tftp, http) = (free_port(true), free_port(false));
    let (_server, said) = serve_files(
        &root,
        &[
            "--tftp-port",
            &tftp.to_string(),
            "--no-http",
            "--http-port",
            &http.to_string(),
        ],
    );
    assert!(said.contains("HTTP off"), "{said}");
    std::fs::remove_file(&got).unwrap();
    tftp_get(tftp, "efi/grubx64.efi", &got);
    assert_eq!(std::fs::read(&got).unwrap(), program);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", http)).is_err(),
        "HTTP is off"
    );
}

/// `cloudlet list --output json`: the ids cloudlet owns, with whether the lab describes them.
fn owned(st: &Path, lab: &str) -> Vec<(String, bool)> {
    let o = cloudlet(st, &["list", lab, "--output", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format"], 1);
    v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["in_lab"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The JSON lines of `apply`/`destroy --output json`, each checked for its format.
fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(v["format"], 1, "{l}");
            assert!(v["type"].is_string(), "{l}");
            v
        })
        .collect()
}

#[test]
fn destroy_removes_what_the_lab_owns_keeps_retained_data_and_apply_makes_it_again() {
    let st = tempfile::tempdir().unwrap();
    let lab = copy_seed();
    let l = lab.path().to_str().unwrap();
    // Nothing made yet: nothing owned.
    assert!(owned(st.path(), l).is_empty());
    assert!(cloudlet(st.path(), &["apply", l, "--yes"]).status.success());
    let all = owned(st.path(), l);
    assert_eq!(all.len(), 86, "{all:?}");
    assert!(all.iter().all(|(_, in_lab)| *in_lab));
    let o = cloudlet(st.path(), &["list", l]);
    let listed = text(&o);
    assert!(
        listed.contains("hypervisor (local):\n  network/dlan\n"),
        "{listed}"
    );
    assert!(
        listed.contains("  dataset/mail  (holds retained data)"),
        "{listed}"
    );

    // Without --yes and without a terminal: refused, nothing removed.
    let o = cloudlet(st.path(), &["destroy", l]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("Destroy: everything lab `seed` owns is removed."));
    assert_eq!(owned(st.path(), l).len(), 86);

    // The teardown, as events.
    let o = cloudlet(st.path(), &["destroy", l, "--yes", "--output", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let events = json_lines(&o);
    assert_eq!(events[0]["type"], "plan");
    assert_eq!(events[0]["destroy"], true);
    let kept: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "kept")
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    // The datasets stay, and so does the NAS's machine that holds them, with what it needs.
    for id in [
        "storage/dataset/mail",
        "storage/dataset/blog.blog.content",
        "hypervisor/vm/truenas",
        "router/dhcp-reservation/truenas.nic0",
    ] {
        assert!(kept.contains(&id), "{id} not kept: {kept:?}");
    }
    let done: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "step_done")
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let deletes = events
        .iter()
        .filter(|e| e["type"] == "planned_change")
        .count();
    assert_eq!(done.len(), deletes);
    assert_eq!(deletes + kept.len(), 86);
    // The cluster's objects go before any machine; the router's settings before the router.
    let last_cluster = done
        .iter()
        .rposition(|i| i.starts_with("cluster/"))
        .unwrap();
    let first_vm = done
        .iter()
        .position(|i| i.starts_with("hypervisor/vm/"))
        .unwrap();
    assert!(last_cluster < first_vm, "{done:?}");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "finished", "{last}");
    assert_eq!(last["report"]["failed"], serde_json::json!([]));
    let left: Vec<String> = owned(st.path(), l).into_iter().map(|(i, _)| i).collect();
    let mut kept_sorted: Vec<String> = kept.iter().map(|s| s.to_string()).collect();
    kept_sorted.sort();
    assert_eq!(left, kept_sorted);
    // Destroyed again: nothing more to remove.
    let o = cloudlet(st.path(), &["destroy", l, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("No changes"), "{}", text(&o));

    // apply makes the lab again.
    let o = cloudlet(st.path(), &["apply", l, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(owned(st.path(), l).len(), 86);
    let o = cloudlet(st.path(), &["plan", l, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Data the lab lets go is deleted only when allowed.
    let storage = lab.path().join("storage.yaml");
    let yaml = std::fs::read_to_string(&storage).unwrap();
    std::fs::write(
        &storage,
        yaml.replace(
            "      snapshots: {every: 1h, keep: 48}\n",
            "      snapshots: {every: 1h, keep: 48}\n      retain: false\n",
        ),
    )
    .unwrap();
    assert!(cloudlet(st.path(), &["apply", l, "--yes"]).status.success());
    let o = cloudlet(st.path(), &["destroy", l, "--yes", "--output", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let events = json_lines(&o);
    let err = events.last().unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "DATA_LOSS");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("storage/dataset/mail"),
        "{err}"
    );
    assert_eq!(
        owned(st.path(), l).len(),
        86,
        "a refused teardown changes nothing"
    );
    let o = cloudlet(
        st.path(),
        &[
            "destroy",
            l,
            "--yes",
            "--allow-data-loss",
            "--target",
            "storage/dataset/mail",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let left: Vec<String> = owned(st.path(), l).into_iter().map(|(i, _)| i).collect();
    assert!(!left.contains(&"storage/dataset/mail".to_string()));
    assert!(left.contains(&"storage/dataset/blog".to_string()));
}

#[test]
fn target_narrows_plan_and_apply_to_a_resource_and_what_it_needs() {
    let st = tempfile::tempdir().unwrap();
    let lab = copy_seed();
    let l = lab.path().to_str().unwrap();
    let o = cloudlet(
        st.path(),
        &[
            "plan",
            l,
            "--target",
            "hypervisor/vm/k8s-node1",
            "--output",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        plan["targets"],
        serde_json::json!(["hypervisor/vm/k8s-node1"])
    );
    let mut ids: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    // The machine, its segment, its address reservation and its network install.
    assert_eq!(
        ids,
        [
            "hypervisor/network/k8s",
            "hypervisor/vm/k8s-node1",
            "pxe/boot-entry/k8s-node1",
            "pxe/install-config/k8s-node1",
            "pxe/menu/default",
            "router/dhcp-reservation/k8s-node1.nic0",
        ]
    );
    assert_eq!(plan["summary"]["create"], 6);

    let o = cloudlet(
        st.path(),
        &[
            "apply",
            l,
            "--yes",
            "--target",
            "hypervisor/vm/k8s-node1",
            "--output",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let events = json_lines(&o);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "plan");
    assert_eq!(kinds.iter().filter(|k| **k == "planned_change").count(), 6);
    assert_eq!(kinds.iter().filter(|k| **k == "step_done").count(), 6);
    assert_eq!(kinds.last(), Some(&"finished"));
    let made: Vec<String> = owned(st.path(), l).into_iter().map(|(i, _)| i).collect();
    assert_eq!(made.len(), 6, "{made:?}");
    // A whole domain, then the rest.
    let o = cloudlet(st.path(), &["apply", l, "--yes", "--target", "cluster"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        owned(st.path(), l)
            .iter()
            .any(|(i, _)| i == "cluster/deployment/blog.blog")
    );
    let o = cloudlet(st.path(), &["plan", l, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "the rest is still to make");

    // A target that names nothing, or is no id: an error, nothing planned.
    for (bad, says) in [
        (
            "hypervisor/vm/k8s-node9",
            "no resource of the lab or the infrastructure",
        ),
        ("machines/k8s-node1", "unknown domain `machines`"),
    ] {
        let o = cloudlet(st.path(), &["apply", l, "--yes", "--target", bad]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains(&format!("target `{bad}`")),
            "{}",
            text(&o)
        );
        assert!(text(&o).contains(says), "{}", text(&o));
    }
    // JSON output never prompts.
    let o = cloudlet(st.path(), &["apply", l, "--output", "json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("pass --yes"), "{}", text(&o));
}

#[test]
fn verbose_plans_and_applies_log_each_backend_and_step_without_colour_when_piped() {
    let st = tempfile::tempdir().unwrap();
    let lab = copy_seed();
    let l = lab.path().to_str().unwrap();
    let o = cloudlet(st.path(), &["apply", l, "--yes", "-vv"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(!log.contains('\u{1b}'), "colour on a pipe: {log}");
    for domain in ["hypervisor", "router", "pxe", "storage", "cluster"] {
        assert!(
            log.lines()
                .any(|l| l.contains("observed") && l.contains(&format!("domain={domain}"))),
            "{domain} not logged: {log}"
        );
    }
    assert!(log.contains("planned lab=seed create=86"), "{log}");
    assert_eq!(
        log.lines().filter(|l| l.contains("step done")).count(),
        86,
        "{log}"
    );
    let o = cloudlet(st.path(), &["plan", l, "-v"]);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains("planned lab=seed create=0 update=0 delete=0 unchanged=86"),
        "{log}"
    );
    assert!(!log.contains("observed"), "debug lines at -v: {log}");
}

/// Database services of a compose project: `import compose --dumps` gives them a dump of
/// their database, and a lab that imports the project and backs up volumes plans a backup
/// whose first container dumps it with the image's own tool.
#[test]
fn compose_database_services_get_a_dump_when_the_lab_backs_up_volumes() {
    let st = tempfile::tempdir().unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster/tests/compose/nextcloud.yml");
    let f = file.to_str().unwrap();
    let o = cloudlet(st.path(), &["import", "compose", f, "--dumps"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "kind: mysql",
        "database: nextcloud",
        "password: MYSQL_ROOT_PASSWORD",
        "database: true",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let o = cloudlet(st.path(), &["import", "compose", f]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("database: true") && !out.contains("dump:"),
        "{out}"
    );

    let lab = copy_seed();
    std::fs::copy(&file, lab.path().join("nextcloud.yml")).unwrap();
    let cluster = lab.path().join("cluster.yaml");
    let c = std::fs::read_to_string(&cluster).unwrap().replacen(
        "cluster:\n",
        "cluster:\n  compose:\n    nextcloud: {file: nextcloud.yml, export: blog}\n",
        1,
    );
    std::fs::write(&cluster, c).unwrap();
    std::fs::write(
        lab.path().join("backup.yaml"),
        "backup:\n  key: {env: CLOUDLET_BACKUP_KEY}\n  targets:\n    offsite:\n      s3: {endpoint: \"https://s3.lan\", bucket: lab-backups, access_key: {env: S3_ACCESS}, secret_key: {env: S3_SECRET}}\n  volumes: {target: offsite, every: 6h}\n",
    )
    .unwrap();
    let l = lab.path().to_str().unwrap();
    let o = cloudlet(st.path(), &["validate", l, "--output", "json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let codes: Vec<&str> = v["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["code"].as_str())
        .collect();
    assert_eq!(v["valid"], true, "{v}");
    assert!(
        !codes
            .iter()
            .any(|c| c.starts_with("dump") || *c == "backup-volumes-database"),
        "{v}"
    );
    let o = cloudlet(st.path(), &["plan", l, "--output", "json"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("db-backup"), "{out}");
    assert!(
        out.contains("mariadb-dump"),
        "the dump runs in the db's backup: {out}"
    );
}
