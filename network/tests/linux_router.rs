//! The Linux router backend for real: the rendered dnsmasq and nftables files are checked by
//! the tools themselves, then run in network namespaces the test creates (a router with a WAN
//! and a LAN side, a LAN client and a WAN client): DHCP reservations, DNS records and port
//! forwards work, and a port that is not forwarded is refused. Traffic stays inside the
//! namespaces.
#![allow(missing_docs, clippy::disallowed_methods)]

use cloudlet_testkit::shell::{dhcp_lease, nslookup, ok, sh, tool, udhcpc};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudlet_core::load::load_texts;
use cloudlet_network::linux_files::{LinuxOptions, dnsmasq_conf, nftables};

const LAB: &str = r#"name: rt
site: {domain: rt.lan}
networks:
  wan: {cidr: 192.168.77.0/24, gateway: 192.168.77.1, wan: true}
  lan:
    cidr: 10.77.0.0/24
    gateway: 10.77.0.1
    dhcp: {ranges: [10.77.0.100-10.77.0.150]}
    dns: [10.77.0.1]
router:
  kind: linux
  machine: gw
  forwards:
    - {port: 443, to: 10.77.0.30}
    - {port: 51820, protocol: udp, to: 10.77.0.30}
  firewall:
    - {from: wan, to: lan, action: deny}
machines:
  gw:
    cpus: 1
    memory: 1GiB
    nics:
      - {network: wan, ip: 192.168.77.2}
      - {network: lan, ip: 10.77.0.1}
  web:
    cpus: 1
    memory: 1GiB
    nics: [{network: lan, ip: 10.77.0.30, mac: "52:54:00:77:00:30"}]
"#;

fn rendered(dir: &Path) -> (String, String) {
    let lab = load_texts(vec![("rt.yaml".into(), LAB.into())], ".".into())
        .unwrap()
        .lab;
    let router = cloudlet_network::expand(&lab);
    let opts = LinuxOptions {
        dns_port: 53,
        lease_file: dir.join("leases").display().to_string(),
    };
    (dnsmasq_conf(&lab, &router, &opts), nftables(&lab, &router))
}

#[test]
fn rendered_configs_pass_the_tools_own_checks() {
    assert!(
        tool("dnsmasq") && tool("nft"),
        ".ci/run installs dnsmasq-base and nftables"
    );
    let dir = tempfile::tempdir().unwrap();
    let (dnsmasq, nft) = rendered(dir.path());
    assert!(
        dnsmasq.contains("dhcp-host=52:54:00:77:00:30,10.77.0.30,web\n"),
        "{dnsmasq}"
    );
    assert!(
        dnsmasq.contains("host-record=web.rt.lan,10.77.0.30\n"),
        "{dnsmasq}"
    );
    assert!(
        nft.contains("iifname \"wan\" udp dport 51820 dnat ip to 10.77.0.30:51820"),
        "{nft}"
    );
    std::fs::write(dir.path().join("dnsmasq.conf"), &dnsmasq).unwrap();
    std::fs::write(dir.path().join("rules.nft"), &nft).unwrap();
    ok(&format!(
        "dnsmasq --test --conf-file={}",
        dir.path().join("dnsmasq.conf").display()
    ));
    // `nft -c` checks in a namespace of our own, so the check never touches the host's rules.
    let ns = format!("clt-chk-{}", std::process::id());
    ok(&format!("ip netns add {ns}"));
    let o = sh(&format!(
        "ip netns exec {ns} nft -c -f {}",
        dir.path().join("rules.nft").display()
    ));
    let _ = sh(&format!("ip netns del {ns}"));
    assert!(
        o.status.success(),
        "nft -c: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A broken file is refused by the same check.
    std::fs::write(
        dir.path().join("bad.nft"),
        nft.replace("dnat ip to", "dnat ipp to"),
    )
    .unwrap();
    ok(&format!("ip netns add {ns}"));
    let o = sh(&format!(
        "ip netns exec {ns} nft -c -f {}",
        dir.path().join("bad.nft").display()
    ));
    let _ = sh(&format!("ip netns del {ns}"));
    assert!(!o.status.success(), "a broken ruleset must fail the check");
}

/// Starts `args` inside namespace `ns`, output discarded.
fn spawn_in(ns: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts")
}

struct Netns {
    names: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.names {
            let _ = sh(&format!("ip netns del {n}"));
        }
    }
}

impl Netns {
    /// The router, LAN and WAN namespace names.
    fn rlw(&self) -> (String, String, String) {
        (
            self.names[0].clone(),
            self.names[1].clone(),
            self.names[2].clone(),
        )
    }
}

/// A router namespace with a LAN and a WAN side (interfaces named after the lab's networks),
/// a LAN client with the reserved MAC and a WAN client; forwarding on in the router.
fn topology(prefix: &str) -> Netns {
    let id = std::process::id() % 100_000;
    let (r, l, w) = (
        format!("{prefix}r{id}"),
        format!("{prefix}l{id}"),
        format!("{prefix}w{id}"),
    );
    let env = Netns {
        names: vec![r.clone(), l.clone(), w.clone()],
        children: Vec::new(),
    };
    for n in &env.names {
        ok(&format!("ip netns add {n} && ip -n {n} link set lo up"));
    }
    ok(&format!(
        "ip link add lan netns {r} type veth peer name eth0 netns {l}"
    ));
    ok(&format!(
        "ip link add wan netns {r} type veth peer name eth0 netns {w}"
    ));
    ok(&format!(
        "ip -n {l} link set eth0 address 52:54:00:77:00:30"
    ));
    ok(&format!(
        "ip -n {r} addr add 10.77.0.1/24 dev lan && ip -n {r} addr add 192.168.77.2/24 dev wan && ip -n {r} link set lan up && ip -n {r} link set wan up"
    ));
    ok(&format!(
        "ip -n {w} addr add 192.168.77.50/24 dev eth0 && ip -n {w} link set eth0 up"
    ));
    ok(&format!("ip -n {l} link set eth0 up"));
    ok(&format!(
        "ip netns exec {r} sysctl -qw net.ipv4.ip_forward=1"
    ));
    env
}

#[test]
fn a_linux_router_in_namespaces_serves_reservations_dns_and_forwards() {
    assert!(tool("dnsmasq") && tool("nft") && tool("busybox"));
    let dir = tempfile::tempdir().unwrap();
    let (dnsmasq, nft) = rendered(dir.path());
    let conf = dir.path().join("dnsmasq.conf");
    let rules = dir.path().join("rules.nft");
    std::fs::write(&conf, &dnsmasq).unwrap();
    std::fs::write(&rules, &nft).unwrap();

    let mut env = topology("cl");
    let (r, l, w) = env.rlw();
    ok(&format!("ip netns exec {r} nft -f {}", rules.display()));
    env.children.push(
        Command::new("ip")
            .args(["netns", "exec", &r, "dnsmasq", "--no-daemon", "--log-dhcp"])
            .arg(format!("--conf-file={}", conf.display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));

    // DHCP: the LAN client with the reserved MAC gets the reserved address.
    let lease = dhcp_lease(&l, dir.path(), None);
    assert_eq!((&*lease.ip, &*lease.router), ("10.77.0.30", "10.77.0.1"));
    ok(&format!("ip -n {l} route add default via {}", lease.router));

    // DNS: machine names resolve to their addresses.
    let o = sh(&format!(
        "ip netns exec {l} busybox nslookup gw.rt.lan 10.77.0.1"
    ));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("192.168.77.2"), "{out}");
    let o = sh(&format!(
        "ip netns exec {l} busybox nslookup web.rt.lan 10.77.0.1"
    ));
    assert!(String::from_utf8_lossy(&o.stdout).contains("10.77.0.30"));

    // Forwards: a WAN client reaches the LAN service on TCP 443 through the router's WAN
    // address; a port that is not forwarded does not get through.
    let mut server = spawn_in(
        &l,
        &[
            "busybox",
            "nc",
            "-l",
            "-p",
            "443",
            "-e",
            "echo",
            "hello-from-lan",
        ],
    );
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let o = sh(&format!(
        "ip netns exec {w} busybox nc -w 3 192.168.77.2 443 </dev/null"
    ));
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hello-from-lan"),
        "forwarded TCP 443 did not reach the LAN service: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    env.children.push(spawn_in(
        &l,
        &[
            "busybox",
            "nc",
            "-l",
            "-p",
            "8443",
            "-e",
            "echo",
            "should-not-see",
        ],
    ));
    std::thread::sleep(Duration::from_millis(200));
    let o = sh(&format!(
        "ip netns exec {w} busybox nc -w 2 192.168.77.2 8443 </dev/null"
    ));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("should-not-see"));
    // Even straight to the LAN address, WAN -> LAN is denied by the lab's intent.
    ok(&format!(
        "ip -n {w} route add 10.77.0.0/24 via 192.168.77.2"
    ));
    let o = sh(&format!(
        "ip netns exec {w} busybox nc -w 2 10.77.0.30 8443 </dev/null"
    ));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("should-not-see"));
}

/// The LAN a bridge on the router (its ports the LAN's hosts, as on a home router or a
/// hypervisor's router VM with a bridged segment), bridged frames passing netfilter
/// (`br_netfilter`, which container runtimes load): hosts on the LAN still reach each other
/// once the table is loaded — traffic within a segment is not the router's to filter, and
/// the forward chain's drop policy must not cut it — while WAN to LAN stays denied.
#[test]
fn hosts_on_a_bridged_lan_reach_each_other_through_the_routers_table() {
    assert!(tool("nft") && tool("busybox"));
    let dir = tempfile::tempdir().unwrap();
    let (_, nft) = rendered(dir.path());
    let rules = dir.path().join("rules.nft");
    std::fs::write(&rules, &nft).unwrap();
    let id = std::process::id() % 100_000;
    let (r, a, b, w) = (
        format!("brr{id}"),
        format!("bra{id}"),
        format!("brb{id}"),
        format!("brw{id}"),
    );
    let _env = Netns {
        names: vec![r.clone(), a.clone(), b.clone(), w.clone()],
        children: Vec::new(),
    };
    for n in [&r, &a, &b, &w] {
        ok(&format!("ip netns add {n} && ip -n {n} link set lo up"));
    }
    ok(&format!(
        "ip -n {r} link add lan type bridge && ip -n {r} addr add 10.77.0.1/24 dev lan && ip -n {r} link set lan up"
    ));
    for (i, (n, ip)) in [(&a, "10.77.0.40"), (&b, "10.77.0.41")].iter().enumerate() {
        ok(&format!(
            "ip link add p{i} netns {r} type veth peer name eth0 netns {n} && \
             ip -n {r} link set p{i} master lan && ip -n {r} link set p{i} up && \
             ip -n {n} addr add {ip}/24 dev eth0 && ip -n {n} link set eth0 up && \
             ip -n {n} route add default via 10.77.0.1"
        ));
    }
    ok(&format!(
        "ip link add wan netns {r} type veth peer name eth0 netns {w} && \
         ip -n {r} addr add 192.168.77.2/24 dev wan && ip -n {r} link set wan up && \
         ip -n {w} addr add 192.168.77.50/24 dev eth0 && ip -n {w} link set eth0 up && \
         ip -n {w} route add 10.77.0.0/24 via 192.168.77.2"
    ));
    let bridged = sh(&format!(
        "ip netns exec {r} sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1"
    ));
    assert!(
        bridged.status.success(),
        "the kernel's br_netfilter must be loaded (modprobe br_netfilter): {}",
        String::from_utf8_lossy(&bridged.stderr)
    );
    ok(&format!("ip netns exec {r} nft -f {}", rules.display()));

    let answer = |from: &str, to: &str| {
        let mut server = spawn_in(
            &b,
            &[
                "busybox",
                "nc",
                "-l",
                "-p",
                "8080",
                "-e",
                "echo",
                "hello-from-b",
            ],
        );
        std::thread::sleep(Duration::from_millis(200));
        let o = sh(&format!(
            "ip netns exec {from} busybox nc -w 2 {to} 8080 </dev/null"
        ));
        let _ = server.kill();
        let _ = server.wait();
        String::from_utf8_lossy(&o.stdout).contains("hello-from-b")
    };
    assert!(
        answer(&a, "10.77.0.41"),
        "a host on the bridged LAN reaches another"
    );
    assert!(
        !answer(&w, "10.77.0.41"),
        "WAN to LAN stays denied by the lab's firewall"
    );
}

mod live {
    //! The live backend (`router_linux`) through the engine: apply, re-plan, change, and a
    //! broken change refused before it reaches the running router.
    use super::*;
    use std::sync::Arc;

    use cloudlet_core::engine::{ApplyOptions, Engine};
    use cloudlet_core::resource::Body;
    use cloudlet_core::{Domain, Provider, Providers, Resource, ResourceId, StateStore};
    use cloudlet_network::router_linux::{LinuxRouter, LinuxRouterOptions};
    use cloudlet_transport::exec::Host;

    fn lab(text: &str) -> cloudlet_core::Lab {
        load_texts(vec![("rt.yaml".into(), text.into())], ".".into())
            .unwrap()
            .lab
    }

    fn in_ns(ns: &str) -> Host {
        Host::Local {
            prefix: vec!["ip".into(), "netns".into(), "exec".into(), ns.into()],
        }
    }

    fn router(lab: &cloudlet_core::Lab, dir: &Path, ns: &str) -> Arc<LinuxRouter> {
        router_on(lab, dir, in_ns(ns))
    }

    fn router_on(lab: &cloudlet_core::Lab, dir: &Path, host: Host) -> Arc<LinuxRouter> {
        Arc::new(LinuxRouter::new(
            Arc::new(lab.clone()),
            LinuxRouterOptions {
                dir: dir.join("cloudlet"),
                host,
                render: LinuxOptions {
                    dns_port: 53,
                    lease_file: dir.join("leases").display().to_string(),
                },
            },
        ))
    }

    async fn converge(p: &Arc<LinuxRouter>, lab: &cloudlet_core::Lab, state: &Path) -> usize {
        let e = Engine::new(
            lab.name.clone(),
            Providers::new().with(Domain::Router, p.clone()),
            StateStore::open(state).unwrap(),
        );
        // What the facade plans for this backend (it can name the boot server).
        let desired = || {
            let mut r = cloudlet_network::expand(lab);
            r.extend(cloudlet_network::boot_servers(lab));
            r
        };
        let plan = e.plan(desired()).await.unwrap();
        let report = e.apply(&plan, ApplyOptions::default()).await.unwrap();
        assert!(report.failed.is_empty(), "{:#?}", report.failed);
        let again = e.plan(desired()).await.unwrap();
        assert!(
            !again.summary.has_changes(),
            "a second plan is empty: {:?}",
            again.steps
        );
        plan.steps.len()
    }

    fn lookup(l: &str, name: &str) -> String {
        nslookup(l, name, "10.77.0.1")
    }

    fn reach(l: &str, w: &str, port: u16) -> bool {
        let mut server = spawn_in(
            l,
            &[
                "busybox",
                "nc",
                "-l",
                "-p",
                &port.to_string(),
                "-e",
                "echo",
                "hello-from-lan",
            ],
        );
        std::thread::sleep(Duration::from_millis(200));
        let o = sh(&format!(
            "ip netns exec {w} busybox nc -w 2 192.168.77.2 {port} </dev/null"
        ));
        let _ = server.kill();
        let _ = server.wait();
        String::from_utf8_lossy(&o.stdout).contains("hello-from-lan")
    }

    /// A machine that installs over the network on a segment the boot server is on: the
    /// router's DHCP server names the boot server as next-server (Debian's GRUB network
    /// image takes its server from there only), and stops when the lab no longer asks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn network_installs_get_the_boot_server_as_next_server() {
        assert!(tool("dnsmasq") && tool("nft") && tool("busybox"));
        let dir = tempfile::tempdir().unwrap();
        let env = topology("cb");
        let (r, l, _w) = env.rlw();
        let state = dir.path().join("state");
        let text = LAB.replace(
            "mac: \"52:54:00:77:00:30\"}]\n",
            "mac: \"52:54:00:77:00:30\"}]\n    install: p\npxe:\n  serve: {address: 10.77.0.5}\n",
        );
        let booting = lab(&text);
        assert_eq!(
            cloudlet_network::boot_servers(&booting).len(),
            1,
            "one boot segment"
        );
        converge(&router(&booting, dir.path(), &r), &booting, &state).await;
        let lease = dhcp_lease(&l, dir.path(), None);
        assert_eq!((&*lease.ip, &*lease.siaddr), ("10.77.0.30", "10.77.0.5"));

        // Without network installs the segment's clients get dnsmasq's own address again.
        let plain = lab(LAB);
        assert!(cloudlet_network::boot_servers(&plain).is_empty());
        converge(&router(&plain, dir.path(), &r), &plain, &state).await;
        let _ = sh(&format!("ip -n {l} addr flush dev eth0"));
        let lease = dhcp_lease(&l, dir.path(), None);
        assert_eq!((&*lease.ip, &*lease.siaddr), ("10.77.0.30", "10.77.0.1"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_live_backend_applies_changes_and_refuses_a_broken_one() {
        assert!(tool("dnsmasq") && tool("nft") && tool("busybox"));
        let dir = tempfile::tempdir().unwrap();
        let env = topology("cp");
        let (r, l, w) = env.rlw();

        // 1. From nothing: cloudlet writes its files, starts dnsmasq, loads its table.
        let first = lab(LAB);
        let p = router(&first, dir.path(), &r);
        let state = dir.path().join("state");
        let steps = converge(&p, &first, &state).await;
        assert!(steps >= 4, "{steps}");
        let lease = dhcp_lease(&l, dir.path(), None);
        assert_eq!(lease.ip, "10.77.0.30");
        ok(&format!("ip -n {l} route add default via {}", lease.router));
        assert!(lookup(&l, "web.rt.lan").contains("10.77.0.30"));
        assert!(reach(&l, &w, 443), "TCP 443 is forwarded");

        // 2. Change a reservation and a record, remove a forward: one commit, reloaded.
        let changed = LAB
            .replace("10.77.0.30, mac", "10.77.0.31, mac")
            .replace("    - {port: 443, to: 10.77.0.30}\n", "")
            .replace(
                "{port: 51820, protocol: udp, to: 10.77.0.30}",
                "{port: 51820, protocol: udp, to: 10.77.0.31}",
            );
        let second = lab(&changed);
        let p = router(&second, dir.path(), &r);
        converge(&p, &second, &state).await;
        assert!(
            lookup(&l, "web.rt.lan").contains("10.77.0.31"),
            "{}",
            lookup(&l, "web.rt.lan")
        );
        assert!(!reach(&l, &w, 443), "the removed forward is gone");
        let hosts = std::fs::read_to_string(dir.path().join("cloudlet/dhcp-hosts")).unwrap();
        assert!(
            hosts.contains("52:54:00:77:00:30,10.77.0.31,web"),
            "{hosts}"
        );

        // 3. A change the tools reject never reaches the running router.
        let pid = p.dnsmasq_pid().await.expect("dnsmasq runs");
        p.observe(Domain::Router).await.unwrap();
        let bad = Resource::new(
            ResourceId::new(Domain::Router, "port-forward", "bogus"),
            Body::from(serde_json::json!({
                "interface": "wan", "protocol": "bogus", "port": 1, "target": "10.77.0.31", "target_port": 1
            })),
        );
        p.create(&bad).await.unwrap();
        let e = p.finish(Domain::Router).await.unwrap_err().to_string();
        assert!(
            e.contains("nftables ruleset is invalid; nothing changed"),
            "{e}"
        );
        assert_eq!(p.dnsmasq_pid().await.as_deref(), Some(pid.as_str()));
        assert!(lookup(&l, "web.rt.lan").contains("10.77.0.31"));
        let live = std::fs::read_to_string(dir.path().join("cloudlet/rules.nft")).unwrap();
        assert!(!live.contains("bogus"));
        // The next plan still sees the router as it is, so it converges.
        let p = router(&second, dir.path(), &r);
        converge(&p, &second, &state).await;

        // 4. A change that passes the checks but leaves the router unable to serve (dnsmasq
        //    cannot create its new lease file) is rolled back by itself.
        let moved = Arc::new(LinuxRouter::new(
            Arc::new(second.clone()),
            LinuxRouterOptions {
                dir: dir.path().join("cloudlet"),
                host: in_ns(&r),
                render: LinuxOptions {
                    dns_port: 53,
                    lease_file: dir.path().join("no-such-dir/leases").display().to_string(),
                },
            },
        ));
        moved.observe(Domain::Router).await.unwrap();
        moved
            .create(&Resource::new(
                ResourceId::new(Domain::Router, "dns-override", "extra.rt.lan"),
                Body::from(serde_json::json!({"host": "extra.rt.lan", "address": "10.77.0.99"})),
            ))
            .await
            .unwrap();
        let e = moved.finish(Domain::Router).await.unwrap_err().to_string();
        assert!(
            e.contains("the previous configuration was put back and is serving"),
            "{e}"
        );
        assert!(
            lookup(&l, "web.rt.lan").contains("10.77.0.31"),
            "DNS on port 53 is back"
        );
        assert!(!lookup(&l, "extra.rt.lan").contains("10.77.0.99"));
        p.stop_dnsmasq().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_router_comes_back_from_its_exported_configuration_with_its_leases() {
        use cloudlet_core::{ConfigFile, Imported};
        assert!(tool("dnsmasq") && tool("nft") && tool("busybox"));
        let dir = tempfile::tempdir().unwrap();
        let env = topology("cb");
        let (r, l, _w) = env.rlw();
        let first = lab(LAB);
        let p = router(&first, dir.path(), &r);
        converge(&p, &first, &dir.path().join("state")).await;

        // A client without a reservation takes an address from the range: runtime state
        // that is in no lab file.
        ok(&format!(
            "ip -n {l} link set eth0 down && ip -n {l} link set eth0 address 52:54:00:77:00:99 && ip -n {l} link set eth0 up"
        ));
        let dynamic = udhcpc(&l, dir.path(), None);
        assert!(dynamic.starts_with("10.77.0.1"), "{dynamic}");

        let files = p.export_config().await.unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["dnsmasq.conf", "dhcp-hosts", "hosts", "rules.nft", "leases"]
        );
        let leases = String::from_utf8(files[4].bytes.clone()).unwrap();
        assert!(
            leases.contains(&format!("52:54:00:77:00:99 {dynamic}")),
            "{leases}"
        );
        assert!(
            !format!("{:?}", files[0]).contains("dhcp-range"),
            "Debug never shows content"
        );

        // Disaster: dnsmasq gone, the table gone, the files and the leases gone.
        p.stop_dnsmasq().await;
        ok(&format!("ip netns exec {r} nft delete table inet cloudlet"));
        std::fs::remove_dir_all(dir.path().join("cloudlet")).unwrap();
        std::fs::remove_file(dir.path().join("leases")).unwrap();
        assert!(
            lookup(&l, "web.rt.lan").is_empty() || !lookup(&l, "web.rt.lan").contains("10.77.0.30")
        );

        // A backup that holds nothing of the router is refused before anything changes.
        let fresh = router(&first, dir.path(), &r);
        let e = fresh
            .import_config(&[ConfigFile {
                name: "other".into(),
                bytes: b"x".to_vec(),
            }])
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("none of dnsmasq.conf"), "{e}");
        assert!(!dir.path().join("cloudlet").exists());

        let imported = fresh.import_config(&files).await.unwrap();
        let Imported::Live { detail } = imported else {
            panic!("the Linux router loads its configuration: {imported:?}")
        };
        assert!(detail.contains("1 DHCP lease(s)"), "{detail}");
        assert!(fresh.dnsmasq_pid().await.is_some(), "dnsmasq runs again");
        assert!(lookup(&l, "web.rt.lan").contains("10.77.0.30"));
        let table = String::from_utf8_lossy(
            &sh(&format!("ip netns exec {r} nft list table inet cloudlet")).stdout,
        )
        .into_owned();
        assert!(
            table.contains("dnat ip to 10.77.0.30:443"),
            "the forward is back in the loaded table: {table}"
        );
        let back = std::fs::read_to_string(dir.path().join("leases")).unwrap();
        assert!(back.contains("52:54:00:77:00:99"), "{back}");

        // dnsmasq holds the restored lease: another client (the same link with another MAC)
        // asking for that address is given another one.
        ok(&format!(
            "ip -n {l} addr flush dev eth0 && ip -n {l} link set eth0 down && ip -n {l} link set eth0 address 52:54:00:77:00:98 && ip -n {l} link set eth0 up"
        ));
        let got = udhcpc(&l, dir.path(), Some(&dynamic));
        assert_ne!(got, dynamic, "the restored lease is the first client's");
        assert!(got.starts_with("10.77.0.1"), "{got}");
        // The plan over the restored router is empty: the backup held what the lab says.
        converge(&fresh, &first, &dir.path().join("state2")).await;
        fresh.stop_dnsmasq().await;
    }

    /// A real OpenSSH server on a loopback port, trusting one key of the test's own.
    struct Sshd {
        child: std::process::Child,
        host: Host,
    }

    impl Drop for Sshd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn sshd(dir: &Path, remote_prefix: Vec<String>) -> Sshd {
        let d = dir.join("ssh");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        for k in ["host_key", "client_key"] {
            ok(&format!(
                "ssh-keygen -q -t ed25519 -N '' -f {}",
                d.join(k).display()
            ));
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}"),
        )
        .unwrap();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\nPidFile {pid}\n",
                hk = d.join("host_key").display(),
                ak = d.join("authorized_keys").display(),
                pid = d.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "sshd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let host = Host::Ssh {
            destination: "root@127.0.0.1".into(),
            options: vec![
                "-p".into(),
                port.to_string(),
                "-i".into(),
                d.join("client_key").display().to_string(),
                "-o".into(),
                format!("UserKnownHostsFile={}", d.join("known_hosts").display()),
                "-o".into(),
                "StrictHostKeyChecking=yes".into(),
            ],
            prefix: remote_prefix,
        };
        Sshd { child, host }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_live_backend_works_over_ssh() {
        assert!(
            tool("dnsmasq")
                && tool("nft")
                && tool("busybox")
                && Path::new("/usr/sbin/sshd").exists(),
            "needs dnsmasq, nftables, busybox and Debian's openssh-server"
        );
        let dir = tempfile::tempdir().unwrap();
        let env = topology("cs");
        let (r, l, _w) = env.rlw();
        // Over SSH to this machine's loopback, then into the router's namespace: every file
        // cloudlet reads or writes and every command goes through ssh.
        let ssh = sshd(
            dir.path(),
            vec!["ip".into(), "netns".into(), "exec".into(), r.clone()],
        );
        let first = lab(LAB);
        let p = router_on(&first, dir.path(), ssh.host.clone());
        let steps = converge(&p, &first, &dir.path().join("state")).await;
        assert!(steps >= 4, "{steps}");
        let running = p.dnsmasq_pid().await;
        ok(&format!("ip -n {l} addr add 10.77.0.99/24 dev eth0"));
        let answer = lookup(&l, "web.rt.lan");
        assert!(
            answer.contains("10.77.0.30"),
            "{answer} (dnsmasq pid {running:?}; {})",
            String::from_utf8_lossy(&sh(&format!("ip netns exec {r} ss -lunp")).stdout)
        );
        assert!(dir.path().join("cloudlet/dnsmasq.conf").exists());
        // A host key that does not match is refused: nothing runs.
        let Host::Ssh {
            destination,
            mut options,
            prefix,
        } = ssh.host.clone()
        else {
            unreachable!()
        };
        let wrong = dir.path().join("ssh/wrong_known_hosts");
        std::fs::write(&wrong, "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOtherKeyOtherKeyOtherKeyOtherKey0\n").unwrap();
        for o in &mut options {
            if o.starts_with("UserKnownHostsFile=") {
                *o = format!("UserKnownHostsFile={}", wrong.display());
            }
        }
        let bad = Host::Ssh {
            destination,
            options,
            prefix,
        };
        assert!(
            bad.run(&["true"]).await.is_err(),
            "an unknown host key is refused"
        );
        p.stop_dnsmasq().await;
    }
}
