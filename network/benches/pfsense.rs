//! 500 DHCP reservations + 500 DNS overrides against the FAKE pfSense (its pfrest v2 API,
//! tests/support/pfsense_fake.rs): cloudlet's plan and apply beside the one-object-at-a-time
//! approach (write, then apply, per object), in the same run. Requests and applies are
//! counted by the fake.
//!
//! Targets: one list per collection in a plan, exactly one apply per subsystem, a no-op
//! re-plan with zero writes. `cargo bench -p cloudlet-network --bench pfsense`.
#![allow(clippy::print_stdout, clippy::disallowed_methods, missing_docs)]

use cloudlet_testkit as support;
use support::pfsense_fake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudlet_core::engine::{ApplyOptions, Engine};
use cloudlet_core::{Domain, Provider, Providers, Resource, ResourceId, StateStore};
use cloudlet_network::pfsense::{PfSense, PfSenseOptions};
use cloudlet_transport::http::{Http, Method};
use serde_json::json;

const N: usize = 500;
const KEY: &str = "bench-key";

fn desired() -> Vec<Resource> {
    let mut out = Vec::new();
    for i in 0..N {
        let ip = format!("10.80.{}.{}", i / 250, i % 250 + 2);
        out.push(Resource::new(
            ResourceId::new(Domain::Router, "dhcp-reservation", format!("m{i}.nic0")),
            json!({"interface": "lan", "mac": format!("52:54:00:80:{:02x}:{:02x}", i / 256, i % 256), "ip": ip, "hostname": format!("m{i}")}),
        ));
        out.push(Resource::new(
            ResourceId::new(
                Domain::Router,
                "dns-override",
                format!("app{i}.example.com"),
            ),
            json!({"host": format!("app{i}.example.com"), "address": "10.80.3.200"}),
        ));
    }
    out
}

fn counts(fake: &pfsense_fake::Fake) -> (usize, usize, usize) {
    let st = fake.state.lock().unwrap();
    (st.requests, st.applies.values().sum(), st.writes)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let want = desired();

    // cloudlet
    let fake = pfsense_fake::Fake::start(dir.path(), KEY).await;
    let p = Arc::new(
        PfSense::new(
            "bench",
            PfSenseOptions {
                gui: None,
                endpoint: fake.endpoint.clone(),
                api_key: KEY.into(),
                ca: Some(fake.ca.clone()),
                take_over: false,
                apply_timeout: Duration::from_secs(30),
            },
        )
        .unwrap(),
    );
    let e = Engine::new(
        "bench",
        Providers::new().with(Domain::Router, p.clone() as Arc<dyn Provider>),
        StateStore::open(dir.path().join("state")).unwrap(),
    );
    let t = Instant::now();
    let plan = e.plan(want.clone()).await.unwrap();
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    let took = t.elapsed();
    assert!(r.is_success(), "{r:?}");
    let (req, applies, writes) = counts(&fake);
    let t = Instant::now();
    let again = e.plan(want.clone()).await.unwrap();
    let replan = t.elapsed();
    assert!(!again.summary.has_changes());
    let (req2, _, writes2) = counts(&fake);

    // One object at a time: write, then apply its subsystem, for every object.
    let dir2 = tempfile::tempdir().unwrap();
    let fake2 = pfsense_fake::Fake::start(dir2.path(), KEY).await;
    let http = Http::new(
        &fake2.endpoint,
        Some(&fake2.ca),
        vec![("x-api-key".into(), KEY.into())],
    )
    .unwrap();
    let t = Instant::now();
    for r in &want {
        let v = r.body.value();
        let (path, body, apply) = if &*r.id.kind == "dhcp-reservation" {
            (
                "/api/v2/services/dhcp_server/static_mapping",
                json!({"parent_id": "lan", "mac": v["mac"], "ipaddr": v["ip"], "hostname": v["hostname"], "descr": "one at a time"}),
                "/api/v2/services/dhcp_server/apply",
            )
        } else {
            let host = v["host"].as_str().unwrap();
            let (h, d) = host.split_once('.').unwrap();
            (
                "/api/v2/services/dns_resolver/host_override",
                json!({"host": h, "domain": d, "ip": [v["address"]], "descr": "one at a time"}),
                "/api/v2/services/dns_resolver/apply",
            )
        };
        http.json(Method::POST, path, Some(&body)).await.unwrap();
        http.json(Method::POST, apply, Some(&json!({"async": false})))
            .await
            .unwrap();
    }
    let took2 = t.elapsed();
    let (breq, bapplies, bwrites) = counts(&fake2);

    println!("{N} reservations + {N} overrides on the fake pfSense");
    println!("| approach | requests | writes | applies | time |");
    println!("|---|---|---|---|---|");
    println!(
        "| cloudlet plan + apply | {req} | {writes} | {applies} | {} |",
        ms(took)
    );
    println!(
        "| one object at a time (write, apply) | {breq} | {bwrites} | {bapplies} | {} |",
        ms(took2)
    );
    println!(
        "| cloudlet no-op re-plan | {} | {} | 0 | {} |",
        req2 - req,
        writes2 - writes,
        ms(replan)
    );
    println!(
        "applies: {}x fewer; time: {:.1}x",
        bapplies / applies.max(1),
        took2.as_secs_f64() / took.as_secs_f64()
    );
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
