//! The same router scenarios against every API backend: a FAKE pfSense (pfrest v2) and a FAKE
//! OPNsense with Kea and with dnsmasq (tests/support: neither can run here, both have no
//! simulator). The Linux router runs for real in tests/linux_router.rs.
//!
//! The seed's router: reservations for every VM, overrides for every app host, forwards for
//! WireGuard UDP 51820, mail and HTTPS to the ingress VIP; one apply per subsystem; a second
//! plan is empty; adding an app adds exactly one override; an entry made by hand survives
//! every apply and prune.
#![allow(missing_docs, clippy::disallowed_methods)]

mod support;

use support::seed_with;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cloudlet_core::engine::{ApplyOptions, Engine};
use cloudlet_core::provider::Provider;
use cloudlet_core::{Domain, Plan, Resource};
use cloudlet_network::opnsense::{OpnSense, OpnSenseOptions};
use cloudlet_network::pfsense::{PfSense, PfSenseOptions};
use serde_json::json;
use support::{opnsense_fake, pfsense_fake};

const KEY: &str = "cloudlet-test-key";
const SECRET: &str = "cloudlet-test-secret";
const PF_OVERRIDES: &str = "/api/v2/services/dns_resolver/host_overrides";

const NOTES: &str = "    notes:\n      image: ghcr.io/example/notes:1\n      ports: [{name: http, port: 8080}]\n      ingress: [{host: notes.example.com}]\n";

fn with_notes(name: &str, t: String) -> String {
    if name == "cluster.yaml" {
        format!("{t}{NOTES}")
    } else {
        t
    }
}

fn without_blog(name: &str, t: String) -> String {
    if name == "cluster.yaml" {
        let start = t.find("    blog:\n").unwrap();
        let end = t.find("    wireguard:\n").unwrap();
        format!("{}{}{NOTES}", &t[..start], &t[end..])
    } else {
        t.lines()
            .filter(|l| !l.contains("to: blog"))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

enum Fake {
    Pf(pfsense_fake::Fake),
    Opn(opnsense_fake::Fake),
}

impl Fake {
    async fn start(kind: &str, dir: &Path) -> Fake {
        match kind {
            "pfsense" => Fake::Pf(pfsense_fake::Fake::start(dir, KEY).await),
            dhcp => Fake::Opn(
                opnsense_fake::Fake::start(
                    dir,
                    KEY,
                    SECRET,
                    if dhcp == "opnsense-kea" {
                        "kea"
                    } else {
                        "dnsmasq"
                    },
                )
                .await,
            ),
        }
    }

    fn provider(&self) -> Arc<dyn Provider> {
        self.provider_with(false)
    }

    fn provider_with(&self, take_over: bool) -> Arc<dyn Provider> {
        match self {
            Fake::Pf(f) => Arc::new(
                PfSense::new(
                    "seed",
                    PfSenseOptions {
                        gui: None,
                        endpoint: f.endpoint.clone(),
                        api_key: KEY.into(),
                        ca: Some(f.ca.clone()),
                        take_over,
                        apply_timeout: Duration::from_secs(5),
                    },
                )
                .unwrap(),
            ),
            Fake::Opn(f) => Arc::new(
                OpnSense::new(
                    "seed",
                    OpnSenseOptions {
                        endpoint: f.endpoint.clone(),
                        key: KEY.into(),
                        secret: SECRET.into(),
                        ca: Some(f.ca.clone()),
                        reach_timeout: Duration::from_millis(300),
                        take_over,
                    },
                )
                .unwrap(),
            ),
        }
    }

    fn add_override_by_hand(&self) {
        match self {
            Fake::Pf(f) => f.add_by_hand(
                PF_OVERRIDES,
                json!({"host": "printer", "domain": "home.lan", "ip": ["10.0.10.50"], "descr": "by hand", "aliases": []}),
            ),
            Fake::Opn(f) => f.add_by_hand(
                "unbound",
                json!({"enabled": "1", "hostname": "printer", "domain": "home.lan", "rr": "A", "server": "10.0.10.50", "description": "by hand"}),
            ),
        }
    }

    /// Running host overrides as (host, address, description).
    fn overrides(&self) -> Vec<(String, String, String)> {
        match self {
            Fake::Pf(f) => {
                let st = f.state.lock().unwrap();
                st.live[PF_OVERRIDES]
                    .iter()
                    .map(|o| {
                        (
                            o["host"].as_str().unwrap().into(),
                            o["ip"][0].as_str().unwrap().into(),
                            o["descr"].as_str().unwrap().into(),
                        )
                    })
                    .collect()
            }
            Fake::Opn(f) => f
                .live("unbound")
                .iter()
                .map(|o| {
                    (
                        o["hostname"].as_str().unwrap().into(),
                        o["server"].as_str().unwrap().into(),
                        o["description"].as_str().unwrap().into(),
                    )
                })
                .collect(),
        }
    }

    /// Applies per subsystem (pfSense) or module (OPNsense), and whether anything is pending.
    fn applies(&self) -> (Vec<usize>, bool) {
        match self {
            Fake::Pf(f) => {
                let st = f.state.lock().unwrap();
                (
                    st.applies.values().copied().collect(),
                    !st.pending.is_empty() || st.config != st.live,
                )
            }
            Fake::Opn(f) => {
                let st = f.state.lock().unwrap();
                (
                    st.reconfigures.values().copied().collect(),
                    st.config != st.live || !st.unconfirmed.is_empty(),
                )
            }
        }
    }

    fn reservations(&self) -> usize {
        match self {
            Fake::Pf(f) => f
                .entries("/api/v2/services/dhcp_server/static_mappings")
                .len(),
            Fake::Opn(f) => {
                let st = f.state.lock().unwrap();
                st.live[st.dhcp].len()
            }
        }
    }
}

fn engine(p: Arc<dyn Provider>, state: &Path) -> Engine {
    cloudlet_testkit::engine::engine("seed", Domain::Router, p, state)
}

use cloudlet_testkit::engine::steps;

async fn apply_ok(e: &Engine, plan: &Plan) {
    let r = e.apply(plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
}

async fn scenario(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start(kind, dir.path()).await;
    fake.add_override_by_hand();
    let e = engine(fake.provider(), &dir.path().join("state"));
    let desired = seed_with(|_, t| t);
    let plan = e.plan(desired.clone()).await.unwrap();
    assert_eq!(
        plan.summary.create,
        desired.len(),
        "{kind}: {:?}",
        steps(&plan)
    );
    apply_ok(&e, &plan).await;
    let (applies, pending) = fake.applies();
    assert!(
        applies.iter().all(|n| *n == 1) && !applies.is_empty(),
        "{kind}: one apply per subsystem: {applies:?}"
    );
    assert!(!pending, "{kind}: everything written is running");
    let res = desired
        .iter()
        .filter(|r| &*r.id.kind == "dhcp-reservation")
        .count();
    assert_eq!(fake.reservations(), res, "{kind}");
    let ov = fake.overrides();
    assert!(
        ov.iter()
            .any(|(h, ip, _)| h == "blog" && ip == "10.0.20.200"),
        "{kind}: {ov:?}"
    );

    // A second plan, from a fresh provider, is empty.
    let e2 = engine(fake.provider(), &dir.path().join("state2"));
    let again = e2.plan(desired.clone()).await.unwrap();
    assert!(!again.summary.has_changes(), "{kind}: {:?}", steps(&again));

    // Adding an app with a host adds exactly one override.
    let more = seed_with(with_notes);
    let plan = e.plan(more).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec!["create router/dns-override/notes.example.com"],
        "{kind}"
    );
    apply_ok(&e, &plan).await;

    // Removing the blog deletes its override; the hand-made one survives.
    let fewer = seed_with(without_blog);
    let plan = e.plan(fewer.clone()).await.unwrap();
    assert!(
        steps(&plan).contains(&"delete router/dns-override/blog.example.com".to_string()),
        "{kind}: {:?}",
        steps(&plan)
    );
    apply_ok(&e, &plan).await;
    let ov = fake.overrides();
    assert!(
        ov.iter().any(|(h, _, d)| h == "printer" && d == "by hand"),
        "{kind}: {ov:?}"
    );
    assert!(!ov.iter().any(|(h, ..)| h == "blog"), "{kind}: {ov:?}");
    assert!(ov.iter().any(|(h, ..)| h == "notes"), "{kind}: {ov:?}");
    assert!(
        !e.plan(fewer).await.unwrap().summary.has_changes(),
        "{kind}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pfsense_runs_the_seed_scenario() {
    scenario("pfsense").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opnsense_with_kea_runs_the_seed_scenario() {
    scenario("opnsense-kea").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opnsense_with_dnsmasq_runs_the_seed_scenario() {
    scenario("opnsense-dnsmasq").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opnsense_firewall_change_that_cuts_cloudlet_off_reverts_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start("opnsense-kea", dir.path()).await;
    let e = engine(fake.provider(), &dir.path().join("state"));
    let desired = seed_with(|_, t| t);
    apply_ok(&e, &e.plan(desired.clone()).await.unwrap()).await;
    let Fake::Opn(f) = &fake else { unreachable!() };
    let rules_before = f.live("filter").len();

    // A rule that blocks everything to the router itself: applied, the API goes silent, the
    // change is not confirmed, and OPNsense's own timer puts the previous rules back.
    let mut lockout = desired.clone();
    lockout.push(Resource::new(
        cloudlet_core::ResourceId::new(Domain::Router, "firewall-rule", "intent-999"),
        json!({"interface": "k8s", "action": "deny", "protocol": "any", "source": "any", "destination": "(self)", "ports": []}),
    ));
    let plan = e.plan(lockout).await.unwrap();
    let report = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    let msg = format!("{:?}", report.failed);
    assert!(
        msg.contains("cut cloudlet off") && msg.contains("rolls it back"),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    {
        let st = f.state.lock().unwrap();
        assert_eq!(st.rollbacks, 1);
        assert!(!st.cut_off, "the router answers again");
        assert_eq!(
            st.live["filter"].len(),
            rules_before,
            "the blocking rule is gone"
        );
    }
    // And the lab without that rule plans empty again.
    assert!(!e.plan(desired).await.unwrap().summary.has_changes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_made_twin_is_refused_then_adopted_with_take_over_on_every_backend() {
    for kind in ["pfsense", "opnsense-kea"] {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::start(kind, dir.path()).await;
        // An override for the blog's host, made by hand before cloudlet.
        match &fake {
            Fake::Pf(f) => f.add_by_hand(
                PF_OVERRIDES,
                json!({"host": "blog", "domain": "example.com", "ip": ["10.0.20.9"], "descr": "old", "aliases": []}),
            ),
            Fake::Opn(f) => f.add_by_hand(
                "unbound",
                json!({"enabled": "1", "hostname": "blog", "domain": "example.com", "rr": "A", "server": "10.0.20.9", "description": "old"}),
            ),
        }
        let desired = seed_with(|_, t| t);
        let e = engine(fake.provider(), &dir.path().join("state"));
        let report = e
            .apply(
                &e.plan(desired.clone()).await.unwrap(),
                ApplyOptions::default(),
            )
            .await
            .unwrap();
        let failed: Vec<String> = report
            .failed
            .iter()
            .map(|(i, m)| format!("{i}: {m}"))
            .collect();
        assert!(
            failed.len() == 1
                && failed[0].contains("blog.example.com")
                && failed[0].contains("--take-over"),
            "{kind}: {failed:?}"
        );
        let e = engine(fake.provider_with(true), &dir.path().join("state"));
        apply_ok(&e, &e.plan(desired.clone()).await.unwrap()).await;
        let blog: Vec<_> = fake
            .overrides()
            .into_iter()
            .filter(|(h, ..)| h == "blog")
            .collect();
        assert_eq!(blog.len(), 1, "{kind}: adopted, not duplicated: {blog:?}");
        assert_eq!(blog[0].1, "10.0.20.200", "{kind}");
        assert!(blog[0].2.starts_with("cloudlet:seed "), "{kind}: marked");
        assert!(!fake.applies().1, "{kind}: nothing written but not running");
        assert!(
            !e.plan(desired).await.unwrap().summary.has_changes(),
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opnsense_hands_out_its_whole_config_xml_and_says_how_to_load_it_back() {
    use cloudlet_core::Imported;
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start("opnsense-kea", dir.path()).await;
    fake.add_override_by_hand();
    let p = fake.provider();
    let e = engine(p.clone(), &dir.path().join("state"));
    let plan = e.plan(seed_with(|_, t| t)).await.unwrap();
    apply_ok(&e, &plan).await;

    let files = p.export_config().await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].name, "config.xml");
    let xml = String::from_utf8(files[0].bytes.clone()).unwrap();
    assert!(xml.contains("<opnsense>"), "{xml}");
    // Everything on the box: cloudlet's entries and the one made by hand.
    assert!(
        xml.contains("blog.example.com") || xml.contains("&quot;blog&quot;"),
        "{xml}"
    );
    assert!(xml.contains("by hand"), "{xml}");

    // Its API has no way to load one: the file and the steps, nothing sent.
    let before = match &fake {
        Fake::Opn(f) => f.server_requests(),
        Fake::Pf(_) => unreachable!(),
    };
    let imported = p.import_config(&files).await.unwrap();
    let Imported::ByHand { file, how } = imported else {
        panic!("OPNsense cannot load a configuration over its API: {imported:?}")
    };
    assert_eq!(file, "config.xml");
    assert!(how.contains("System → Configuration → Backups"), "{how}");
    let after = match &fake {
        Fake::Opn(f) => f.server_requests(),
        Fake::Pf(_) => unreachable!(),
    };
    assert_eq!(before, after, "an import sends nothing");
    // A file that is not OPNsense's is refused.
    let mut wrong = files.clone();
    wrong[0].bytes = b"<?xml version=\"1.0\"?><pfsense></pfsense>".to_vec();
    let e = p.import_config(&wrong).await.unwrap_err().to_string();
    assert!(e.contains("not OPNsense's configuration"), "{e}");

    // Without the privilege the download needs, the error names it.
    if let Fake::Opn(f) = &fake {
        f.state.lock().unwrap().history_privilege = false;
    }
    let e = p.export_config().await.unwrap_err().to_string();
    assert!(e.contains("Diagnostics: Configuration History"), "{e}");
}
