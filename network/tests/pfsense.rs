//! The pfSense backend against a FAKE pfSense (tests/support/pfsense_fake.rs): pfSense cannot
//! run here and has no simulator, so a stateful fake of the pfrest v2 API that copies its
//! documented quirks stands in. Every test talks HTTPS to it with the test's own CA.
#![allow(missing_docs, clippy::disallowed_methods)]

mod support;

use support::seed_with;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cloudlet_core::engine::{ApplyOptions, Engine};
use cloudlet_core::{Domain, Plan, Resource};
use cloudlet_network::pfsense::{PfSense, PfSenseOptions};
use serde_json::json;
use support::pfsense_fake::Fake;

const KEY: &str = "cloudlet-test-api-key";
const MAPPINGS: &str = "/api/v2/services/dhcp_server/static_mappings";

fn seed() -> Vec<Resource> {
    seed_with(|_, t| t)
}

fn provider(fake: &Fake, take_over: bool) -> Arc<PfSense> {
    Arc::new(
        PfSense::new(
            "seed",
            PfSenseOptions {
                gui: None,
                endpoint: fake.endpoint.clone(),
                api_key: KEY.into(),
                ca: Some(fake.ca.clone()),
                take_over,
                apply_timeout: Duration::from_secs(5),
            },
        )
        .unwrap(),
    )
}

fn engine(p: Arc<PfSense>, state: &Path) -> Engine {
    cloudlet_testkit::engine::engine("seed", Domain::Router, p, state)
}

use cloudlet_testkit::engine::steps;

async fn apply_ok(e: &Engine, plan: &Plan) {
    let r = e.apply(plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmarked_entry_with_a_labs_mac_is_adopted_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start(dir.path(), KEY).await;
    let desired = seed();
    let r = desired
        .iter()
        .find(|r| &*r.id.name == "k8s-node1.nic0")
        .unwrap()
        .body
        .value();
    fake.add_by_hand(
        MAPPINGS,
        json!({"parent_id": r["interface"], "mac": r["mac"].as_str().unwrap().to_uppercase(), "ipaddr": "10.0.20.99", "hostname": "old", "descr": "made in 2021"}),
    );
    let e = engine(provider(&fake, false), &dir.path().join("state"));
    let plan = e.plan(desired.clone()).await.unwrap();
    let report = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    let failed: Vec<String> = report
        .failed
        .iter()
        .map(|(i, m)| format!("{i}: {m}"))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("k8s-node1.nic0") && failed[0].contains("--take-over"),
        "{failed:?}"
    );
    assert_eq!(
        fake.entries(MAPPINGS)
            .iter()
            .filter(|m| m["hostname"] == "old")
            .count(),
        1
    );

    let e = engine(provider(&fake, true), &dir.path().join("state"));
    let plan = e.plan(desired.clone()).await.unwrap();
    apply_ok(&e, &plan).await;
    let mac = r["mac"].as_str().unwrap().to_ascii_lowercase();
    let same: Vec<_> = fake
        .entries(MAPPINGS)
        .into_iter()
        .filter(|m| m["mac"].as_str().unwrap().to_ascii_lowercase() == mac)
        .collect();
    assert_eq!(same.len(), 1, "adopted, not duplicated");
    assert_eq!(same[0]["ipaddr"], r["ip"]);
    assert!(
        same[0]["descr"]
            .as_str()
            .unwrap()
            .starts_with("cloudlet:seed ")
    );
    assert!(!e.plan(desired).await.unwrap().summary.has_changes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_a_dropped_commit_and_a_killed_apply_all_converge_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start(dir.path(), KEY).await;
    let desired = seed();
    let e = engine(provider(&fake, false), &dir.path().join("state"));

    // A 500 on the third write: that step fails; what did succeed is still applied, so
    // nothing is left written but not running, and the next apply makes just the one entry.
    fake.state.lock().unwrap().fail_write_at = Some(3);
    let plan = e.plan(desired.clone()).await.unwrap();
    let report = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert!(report.failed[0].1.contains("500"), "{:?}", report.failed);
    assert!(
        fake.state.lock().unwrap().pending.is_empty(),
        "the successful writes run"
    );
    let plan = e.plan(desired.clone()).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec![format!("create {}", report.failed[0].0)],
        "only the failed entry is left"
    );
    apply_ok(&e, &plan).await;
    assert!(fake.state.lock().unwrap().pending.is_empty());

    // The connection drops when the commit is sent: reported, and the next apply commits.
    let more = seed_with(|name, t| {
        if name == "cluster.yaml" {
            format!(
                "{t}    notes:\n      image: ghcr.io/example/notes:1\n      ports: [{{name: http, port: 8080}}]\n      ingress: [{{host: notes.example.com}}]\n"
            )
        } else {
            t
        }
    });
    fake.state.lock().unwrap().drop_next_apply = true;
    let plan = e.plan(more.clone()).await.unwrap();
    let report = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(
        report
            .failed
            .iter()
            .any(|(id, _)| id.to_string().contains("(finish)")),
        "{:?}",
        report.failed
    );
    let plan = e.plan(more.clone()).await.unwrap();
    assert_eq!(steps(&plan), vec!["delete router/uncommitted/dns_resolver"]);
    apply_ok(&e, &plan).await;

    // Killed mid-apply (the apply's future dropped between writes): no entry twice after the
    // next apply, which also commits what the killed one wrote.
    fake.state.lock().unwrap().write_delay = Duration::from_millis(30);
    let fresh = tempfile::tempdir().unwrap();
    let fake2 = Fake::start(fresh.path(), KEY).await;
    fake2.state.lock().unwrap().write_delay = Duration::from_millis(20);
    let e2 = engine(provider(&fake2, false), &fresh.path().join("state"));
    let plan = e2.plan(desired.clone()).await.unwrap();
    let killed = tokio::time::timeout(
        Duration::from_millis(300),
        e2.apply(&plan, ApplyOptions::default()),
    )
    .await;
    assert!(killed.is_err(), "the apply was cut off");
    let written = fake2.state.lock().unwrap().writes;
    assert!(
        written > 0 && written < desired.len(),
        "{written} of {}",
        desired.len()
    );
    fake2.state.lock().unwrap().write_delay = Duration::ZERO;
    // A write the killed apply had sent still lands (as on a real router): the next plan
    // observes after it has, or it would miss that entry and make it again.
    for _ in 0..500 {
        if fake2.state.lock().unwrap().in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake2.state.lock().unwrap().in_flight, 0);
    let e2 = engine(provider(&fake2, false), &fresh.path().join("state"));
    let plan = e2.plan(desired.clone()).await.unwrap();
    apply_ok(&e2, &plan).await;
    let st = fake2.state.lock().unwrap();
    let total: usize = st.config.values().map(Vec::len).sum();
    assert_eq!(total, desired.len(), "each entry exactly once");
    assert!(st.pending.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pfrest_the_error_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start(dir.path(), KEY).await;
    fake.state.lock().unwrap().pfrest_installed = false;
    let e = engine(provider(&fake, false), &dir.path().join("state"));
    let err = cloudlet_core::error::chain(&e.plan(seed()).await.unwrap_err());
    assert!(err.contains("pfSense-pkg-RESTAPI"), "{err}");
    // A wrong key is its own clear error; http:// is refused before anything is sent.
    let other = tempfile::tempdir().unwrap();
    let fake = Fake::start(other.path(), "other-key").await;
    let e = engine(provider(&fake, false), &dir.path().join("state2"));
    let err = cloudlet_core::error::chain(&e.plan(seed()).await.unwrap_err());
    assert!(err.contains("refused the API key"), "{err}");
    // The provider's own error keeps the status and says what kind of failure it is.
    let refused =
        cloudlet_core::Provider::observe(&*provider(&fake, false), cloudlet_core::Domain::Router)
            .await
            .unwrap_err();
    assert!(
        matches!(
            refused,
            cloudlet_core::ProviderError::Api {
                status: Some(401 | 403),
                fault: cloudlet_core::error::Fault::Unauthorized,
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(!refused.retryable());
    let plain = PfSense::new(
        "seed",
        PfSenseOptions {
            gui: None,
            endpoint: "http://127.0.0.1:1".into(),
            api_key: KEY.into(),
            ca: None,
            take_over: false,
            apply_timeout: Duration::from_secs(1),
        },
    );
    let e = plain.unwrap_err();
    assert!(
        matches!(
            e,
            cloudlet_network::Error::Client {
                source: cloudlet_transport::http::SetupError::NotHttps { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(cloudlet_core::error::chain(&e).contains("https://"));
}

/// Log lines written by the code under test, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_backend_request_is_logged_at_debug_without_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start(dir.path(), KEY).await;
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let e = engine(provider(&fake, false), &dir.path().join("state"));
    let plan = e.plan(seed()).await.unwrap();
    assert!(plan.summary.has_changes());
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let requests: Vec<&str> = text.lines().filter(|l| l.contains(" request ")).collect();
    assert!(!requests.is_empty(), "{text}");
    for l in &requests {
        assert!(l.contains("method=GET"), "{l}");
        assert!(l.contains("path=\"/api/v2/"), "{l}");
        assert!(l.contains("status=200"), "{l}");
        assert!(l.contains(" ms="), "{l}");
    }
    assert!(!text.contains(KEY), "the API key is never logged:\n{text}");
}

fn with_gui(fake: &Fake, user: &str, password: &str) -> Arc<PfSense> {
    Arc::new(
        PfSense::new(
            "seed",
            PfSenseOptions {
                gui: Some((user.into(), password.into())),
                endpoint: fake.endpoint.clone(),
                api_key: KEY.into(),
                ca: Some(fake.ca.clone()),
                take_over: false,
                apply_timeout: Duration::from_secs(5),
            },
        )
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_xml_comes_from_the_web_interface_with_its_session_and_csrf_token() {
    use cloudlet_core::{Imported, Provider};
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start(dir.path(), KEY).await;
    fake.add_by_hand(
        "/api/v2/services/dns_resolver/host_overrides",
        json!({"host": "printer", "domain": "home.lan", "ip": ["10.0.10.50"], "descr": "by hand", "aliases": []}),
    );
    let e = engine(provider(&fake, false), &dir.path().join("state"));
    let plan = e.plan(seed()).await.unwrap();
    apply_ok(&e, &plan).await;
    const PASSWORD: &str = "gui-password-9f3e";
    {
        let mut s = fake.state.lock().unwrap();
        s.gui_user = Some(("backup".into(), PASSWORD.into()));
        s.gui_backup_privilege = true;
    }

    // Without web credentials: the error says what to give.
    let err = provider(&fake, false)
        .export_config()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("gui_credentials"), "{err}");

    // The whole configuration: cloudlet's entries and the one made by hand.
    let files = with_gui(&fake, "backup", PASSWORD)
        .export_config()
        .await
        .unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].name, "config.xml");
    let xml = String::from_utf8(files[0].bytes.clone()).unwrap();
    assert!(xml.contains("<pfsense>"), "{xml}");
    assert!(
        xml.contains("by hand") && xml.contains("cloudlet:seed"),
        "{xml}"
    );
    assert!(
        !format!("{:?}", files[0]).contains("pfsense>"),
        "Debug hides content"
    );

    // A wrong password, and a user without the page's privilege: clear errors, no password
    // echoed.
    let err = with_gui(&fake, "backup", "wrong-password-1")
        .export_config()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused the user and password"), "{err}");
    assert!(!err.contains("wrong-password-1"), "{err}");
    fake.state.lock().unwrap().gui_backup_privilege = false;
    let err = with_gui(&fake, "backup", PASSWORD)
        .export_config()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("WebCfg - Diagnostics: Backup & Restore"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");

    // pfrest cannot load a configuration: the file and the steps.
    let imported = provider(&fake, false).import_config(&files).await.unwrap();
    let Imported::ByHand { file, how } = imported else {
        panic!("pfSense loads a configuration by hand: {imported:?}")
    };
    assert_eq!(file, "config.xml");
    assert!(how.contains("Diagnostics → Backup & Restore"), "{how}");
    let mut wrong = files.clone();
    wrong[0].bytes = b"<?xml version=\"1.0\"?><opnsense/>".to_vec();
    let err = provider(&fake, false)
        .import_config(&wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not pfSense's configuration"), "{err}");
}
