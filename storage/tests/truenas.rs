//! The TrueNAS backend against a FAKE TrueNAS (tests/support/truenas_fake.rs): TrueNAS
//! cannot run here and has no simulator, so a stateful fake of its JSON-RPC WebSocket API that
//! copies the documented quirks stands in. Every test talks TLS to it with the test's own CA.
#![allow(missing_docs, clippy::disallowed_methods)]

use cloudlet_testkit::seed;
use cloudlet_testkit::truenas_fake;

use std::path::Path;
use std::sync::Arc;

use cloudlet_core::engine::{ApplyOptions, Engine};
use cloudlet_core::provider::Provider;
use cloudlet_core::{Domain, Plan, Resource};
use cloudlet_storage::truenas::{Connect, TrueNas};
use truenas_fake::Fake;

const KEY: &str = "1-cloudlet-test-key";

/// The seed's storage, with `edit` applied to (file name, text) pairs first.
fn seed_storage(edit: impl Fn(&str, String) -> String) -> Vec<Resource> {
    cloudlet_storage::expand(&seed::seed_lab(edit))
}

fn provider(fake: &Fake) -> Arc<TrueNas> {
    Arc::new(TrueNas::new(
        "seed",
        Connect {
            endpoint: fake.endpoint.clone(),
            api_key: KEY.into(),
            ca: Some(fake.ca.clone()),
        },
    ))
}

fn engine(p: Arc<TrueNas>, state: &Path) -> Engine {
    cloudlet_testkit::engine::engine("seed", Domain::Storage, p, state)
}

use cloudlet_testkit::engine::steps;

async fn apply_ok(e: &Engine, plan: &Plan) {
    let r = e.apply(plan, ApplyOptions::default()).await.unwrap();
    assert!(r.is_success(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_volumes_apply_replan_empty_narrow_and_keep_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start(dir.path(), "25.10.1", KEY).await;
    let p = provider(&fake);
    let e = engine(p.clone(), &dir.path().join("state"));

    let plan = e.plan(seed_storage(|_, t| t)).await.unwrap();
    assert_eq!(plan.summary.create, 10, "{:?}", steps(&plan));
    apply_ok(&e, &plan).await;
    {
        let st = fake.state.lock().unwrap();
        let names: Vec<&str> = st.datasets.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            vec![
                "main",
                "main/blog",
                "main/blog/blog",
                "main/blog/blog/content",
                "main/mail",
                "main/mail/mailserver",
                "main/mail/mailserver/data"
            ],
            "the volumes' parents come from create_ancestors"
        );
        let data = &st.datasets["main/mail/mailserver/data"];
        assert_eq!(data.props["quota"].0, serde_json::json!(10u64 << 30));
        assert_eq!(data.user["org.cloudlet:lab"], "seed");
        let share = st
            .shares
            .values()
            .find(|s| s["path"] == "/mnt/main/mail/mailserver/data")
            .unwrap();
        assert_eq!(share["networks"], serde_json::json!(["10.0.20.0/24"]));
        assert_eq!(share["comment"], "cloudlet-seed-mail.mailserver.data");
        let task = st
            .tasks
            .values()
            .find(|t| t["dataset"] == "main/mail")
            .unwrap();
        assert_eq!(task["recursive"], true);
        assert_eq!(
            (
                task["lifetime_value"].as_u64(),
                task["lifetime_unit"].as_str()
            ),
            (Some(2), Some("DAY"))
        );
        assert_eq!(task["schedule"]["hour"], "*");
    }

    // A second plan (from a fresh provider: login, version, one query per collection) is
    // empty and writes nothing.
    let p2 = provider(&fake);
    let e2 = engine(p2.clone(), &dir.path().join("state2"));
    let before = fake.calls().len();
    let again = e2.plan(seed_storage(|_, t| t)).await.unwrap();
    assert!(!again.summary.has_changes(), "{:?}", steps(&again));
    let calls = fake.calls()[before..].to_vec();
    assert_eq!(
        calls,
        vec![
            "auth.login_with_api_key",
            "system.version",
            "pool.dataset.query",
            "sharing.nfs.query",
            "pool.snapshottask.query",
            "replication.query"
        ]
    );
    assert_eq!(p2.writes(), 0);

    // Allowing only the cluster's nodes on the mail export changes exactly its two exports.
    let narrow = |name: &str, t: String| {
        if name == "storage.yaml" {
            t.replacen(
                "allow: [k8s]",
                "allow: [k8s-master, k8s-node1, k8s-node2]",
                1,
            )
        } else {
            t
        }
    };
    let plan = e.plan(seed_storage(narrow)).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec![
            "update storage/nfs-export/mail",
            "update storage/nfs-export/mail.mailserver.data"
        ]
    );
    apply_ok(&e, &plan).await;
    {
        let st = fake.state.lock().unwrap();
        let share = st
            .shares
            .values()
            .find(|s| s["path"] == "/mnt/main/mail")
            .unwrap();
        assert_eq!(share["networks"], serde_json::json!([]));
        assert_eq!(share["hosts"].as_array().unwrap().len(), 3);
        assert_eq!(share["expose_snapshots"], false, "server defaults stay");
    }
    assert!(
        !e.plan(seed_storage(narrow))
            .await
            .unwrap()
            .summary
            .has_changes()
    );

    // Removing the mail server keeps its dataset and its snapshots, and the plan says so.
    fake.take_snapshot(
        "main/mail/mailserver/data",
        "cloudlet-seed-mail-20261127-0900",
    );
    let no_mail = |name: &str, t: String| {
        let t = narrow(name, t);
        if name == "cluster.yaml" {
            let start = t.find("    mailserver:\n").unwrap();
            t[..start].to_string()
        } else {
            // The router's forwards to it go with it.
            t.lines()
                .filter(|l| !l.contains("to: mailserver"))
                .map(|l| format!("{l}\n"))
                .collect()
        }
    };
    let plan = e.plan(seed_storage(no_mail)).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec!["delete storage/nfs-export/mail.mailserver.data"]
    );
    assert_eq!(
        plan.kept
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["storage/dataset/mail.mailserver.data"]
    );
    apply_ok(&e, &plan).await;
    let st = fake.state.lock().unwrap();
    assert!(st.datasets.contains_key("main/mail/mailserver/data"));
    assert_eq!(st.snapshots.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_connection_dropped_is_found_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start(dir.path(), "25.10.1", KEY).await;
    let e = engine(provider(&fake), &dir.path().join("state"));
    let owned = |name: &str, t: String| {
        if name == "cluster.yaml" {
            t.replace(
                "mount: /var/mail, size: 10GiB}",
                "mount: /var/mail, size: 10GiB, owner: {uid: 5000, gid: 5000}, mode: \"0750\"}",
            )
        } else {
            t
        }
    };
    fake.drop_during_job
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let plan = e.plan(seed_storage(owned)).await.unwrap();
    // One step at a time: the dropped connection then fails exactly the step whose job it
    // carried, whatever else a loaded machine would have had in flight on it.
    let one_at_a_time = ApplyOptions {
        concurrency: 1,
        ..ApplyOptions::default()
    };
    let report = e.apply(&plan, one_at_a_time).await.unwrap();
    let failed: Vec<String> = report.failed.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(
        failed,
        vec!["storage/dataset/mail.mailserver.data"],
        "{report:?}"
    );
    assert!(report.failed[0].1.contains("closed"), "{report:?}");

    // The job went on without its connection and finished.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    {
        let st = fake.state.lock().unwrap();
        assert_eq!(st.jobs.len(), 1);
        assert_eq!(st.jobs.values().next().unwrap()["state"], "SUCCESS");
        let d = &st.datasets["main/mail/mailserver/data"];
        assert_eq!((d.uid, d.mode), (5000, 0o750));
    }
    // The next apply finds that job's result instead of running it again.
    let plan = e.plan(seed_storage(owned)).await.unwrap();
    assert!(
        steps(&plan).contains(&"update storage/dataset/mail.mailserver.data".to_string()),
        "{:?}",
        steps(&plan)
    );
    apply_ok(&e, &plan).await;
    assert_eq!(
        fake.state.lock().unwrap().jobs.len(),
        1,
        "no second setperm job"
    );
    let last = e.plan(seed_storage(owned)).await.unwrap();
    assert!(!last.summary.has_changes(), "{:?}", steps(&last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_properties_are_set_locally_and_unset_with_inherit() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start(dir.path(), "25.04.2", KEY).await;
    let e = engine(provider(&fake), &dir.path().join("state"));
    let db = |name: &str, t: String| {
        if name == "cluster.yaml" {
            t.replace("size: 10GiB}", "size: 10GiB, database: true}")
        } else {
            t
        }
    };
    let plan = e.plan(seed_storage(db)).await.unwrap();
    apply_ok(&e, &plan).await;
    {
        let st = fake.state.lock().unwrap();
        let d = &st.datasets["main/mail/mailserver/data"];
        assert_eq!(d.props["recordsize"], (serde_json::json!("16K"), "LOCAL"));
    }
    assert!(
        !e.plan(seed_storage(db))
            .await
            .unwrap()
            .summary
            .has_changes()
    );
    // An inherited value is not drift: only what is set on the dataset itself counts.
    let plan = e.plan(seed_storage(|_, t| t)).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec!["update storage/dataset/mail.mailserver.data"]
    );
    apply_ok(&e, &plan).await;
    {
        let st = fake.state.lock().unwrap();
        let d = &st.datasets["main/mail/mailserver/data"];
        assert!(!d.props.contains_key("recordsize") && !d.props.contains_key("atime"));
    }
    assert!(
        !e.plan(seed_storage(|_, t| t))
            .await
            .unwrap()
            .summary
            .has_changes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_listed_with_the_method_of_the_release() {
    for (version, method) in [
        ("25.04.2", "zfs.snapshot.query"),
        ("25.10.1", "pool.snapshot.query"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::start(dir.path(), version, KEY).await;
        let p = provider(&fake);
        let e = engine(p.clone(), &dir.path().join("state"));
        apply_ok(&e, &e.plan(seed_storage(|_, t| t)).await.unwrap()).await;
        fake.take_snapshot("main/mail", "cloudlet-seed-mail-20261127-0800");
        fake.take_snapshot("main/mail", "cloudlet-seed-mail-20261127-0900");
        let snaps = p.snapshots("main/mail").await.unwrap();
        assert_eq!(
            snaps.last().map(String::as_str),
            Some("main/mail@cloudlet-seed-mail-20261127-0900"),
            "{version}"
        );
        assert!(fake.calls().iter().any(|c| c == method), "{version}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_never_goes_over_plain_ws_and_tls_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start(dir.path(), "25.10.1", KEY).await;
    let plain = Arc::new(TrueNas::new(
        "seed",
        Connect {
            endpoint: fake.plain_endpoint.clone(),
            api_key: KEY.into(),
            ca: None,
        },
    ));
    let e = plain.observe(Domain::Storage).await.unwrap_err();
    assert!(e.to_string().contains("revokes"), "{e}");
    assert_eq!(fake.state.lock().unwrap().plain_logins, 0);
    assert!(fake.calls().is_empty(), "nothing was sent");

    // Without the test's CA the certificate is refused.
    let untrusted = Arc::new(TrueNas::new(
        "seed",
        Connect {
            endpoint: fake.endpoint.clone(),
            api_key: KEY.into(),
            ca: None,
        },
    ));
    let e = untrusted.observe(Domain::Storage).await.unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");
    assert!(fake.calls().is_empty());

    // A wrong key is a clear error.
    let wrong = Arc::new(TrueNas::new(
        "seed",
        Connect {
            endpoint: fake.endpoint.clone(),
            api_key: "2-wrong".into(),
            ca: Some(fake.ca.clone()),
        },
    ));
    let e = wrong.observe(Domain::Storage).await.unwrap_err();
    assert!(e.to_string().contains("not accepted"), "{e}");
}

/// Asserts that a plan of the seed with `edit` has nothing to do.
async fn unchanged(e: &Engine, edit: impl Fn(&str, String) -> String) {
    let plan = e.plan(seed_storage(edit)).await.unwrap();
    assert!(!plan.summary.has_changes(), "{:?}", steps(&plan));
}

/// The seed with the mail export's snapshots replicated to another pool of the NAS (kept 30
/// days) and the blog's over the SSH connection `offsite` (kept as the source's).
fn replicated(name: &str, t: String) -> String {
    if name == "storage.yaml" {
        t.replace(
            "snapshots: {every: 1h, keep: 48}",
            "snapshots: {every: 1h, keep: 48, replicate: {to: backup/lab/mail, keep_for: 30d}}",
        )
        .replace(
            "snapshots: {every: 1d, keep: 14}",
            "snapshots: {every: 1d, keep: 14, replicate: {to: tank/seed/blog, ssh: offsite}}",
        )
    } else {
        t
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_replicated_by_tasks_bound_to_their_snapshot_task() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::start(dir.path(), "25.10.1", KEY).await;
    let p = provider(&fake);
    let e = engine(p.clone(), &dir.path().join("state"));

    // An SSH connection the NAS does not have: the step fails saying where to make it, and
    // the rest of the lab is applied.
    let plan = e.plan(seed_storage(replicated)).await.unwrap();
    let s = steps(&plan);
    assert!(
        s.contains(&"create storage/replication/mail".to_string()),
        "{s:?}"
    );
    assert!(
        s.contains(&"create storage/replication/blog".to_string()),
        "{s:?}"
    );
    let r = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    let failed: Vec<String> = r
        .failed
        .iter()
        .map(|(id, e)| format!("{id}: {e}"))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("storage/replication/blog")
            && failed[0].contains("no SSH connection named `offsite`")
            && failed[0].contains("Credentials → Backup Credentials → SSH Connections"),
        "{failed:?}"
    );
    fake.add_ssh_connection("offsite");
    let plan = e.plan(seed_storage(replicated)).await.unwrap();
    assert_eq!(steps(&plan), vec!["create storage/replication/blog"]);
    apply_ok(&e, &plan).await;
    {
        let st = fake.state.lock().unwrap();
        let by_name = |n: &str| {
            st.replications
                .values()
                .find(|r| r["name"] == n)
                .unwrap_or_else(|| panic!("no {n}"))
                .clone()
        };
        let mail = by_name("cloudlet-seed-mail");
        let task = st
            .tasks
            .values()
            .find(|t| t["dataset"] == "main/mail")
            .unwrap();
        assert_eq!(
            mail["periodic_snapshot_tasks"],
            serde_json::json!([task["id"]])
        );
        assert_eq!(
            (
                &mail["transport"],
                &mail["ssh_credentials"],
                &mail["source_datasets"],
                &mail["target_dataset"]
            ),
            (
                &serde_json::json!("LOCAL"),
                &serde_json::Value::Null,
                &serde_json::json!(["main/mail"]),
                &serde_json::json!("backup/lab/mail")
            )
        );
        assert_eq!(
            (
                &mail["retention_policy"],
                &mail["lifetime_value"],
                &mail["lifetime_unit"]
            ),
            (
                &serde_json::json!("CUSTOM"),
                &serde_json::json!(30),
                &serde_json::json!("DAY")
            )
        );
        assert_eq!(
            (&mail["recursive"], &mail["auto"], &mail["readonly"]),
            (
                &serde_json::json!(true),
                &serde_json::json!(true),
                &serde_json::json!("SET")
            )
        );
        let blog = by_name("cloudlet-seed-blog");
        assert_eq!(
            (&blog["transport"], &blog["retention_policy"]),
            (&serde_json::json!("SSH"), &serde_json::json!("SOURCE"))
        );
        assert!(blog["ssh_credentials"].is_i64());
    }
    // Listed with its connection and snapshot tasks as objects, read back as the lab says.
    unchanged(&e, replicated).await;

    // Someone disables the task, then deletes its snapshot task by hand: the plan puts each back.
    {
        let mut st = fake.state.lock().unwrap();
        let id = *st
            .replications
            .iter()
            .find(|(_, r)| r["name"] == "cloudlet-seed-mail")
            .unwrap()
            .0;
        st.replications.get_mut(&id).unwrap()["enabled"] = serde_json::json!(false);
    }
    let plan = e.plan(seed_storage(replicated)).await.unwrap();
    assert_eq!(steps(&plan), vec!["update storage/replication/mail"]);
    apply_ok(&e, &plan).await;
    unchanged(&e, replicated).await;
    {
        let mut st = fake.state.lock().unwrap();
        let id = *st
            .tasks
            .iter()
            .find(|(_, t)| t["dataset"] == "main/mail")
            .unwrap()
            .0;
        st.tasks.remove(&id);
        for r in st.replications.values_mut() {
            r["periodic_snapshot_tasks"]
                .as_array_mut()
                .unwrap()
                .retain(|t| t.as_i64() != Some(id));
        }
    }
    let plan = e.plan(seed_storage(replicated)).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec![
            "create storage/snapshot-task/mail",
            "update storage/replication/mail"
        ],
        "the new snapshot task first, then the replication bound to it again"
    );
    apply_ok(&e, &plan).await;
    unchanged(&e, replicated).await;

    // A run copies the snapshots; a local target whose pool is missing fails, and says so.
    fake.take_snapshot("main/mail", "cloudlet-seed-mail-20261207-0100");
    fake.run_replications(1_796_000_000);
    {
        let st = fake.state.lock().unwrap();
        let mail = st
            .replications
            .values()
            .find(|r| r["name"] == "cloudlet-seed-mail")
            .unwrap();
        assert_eq!(mail["state"]["state"], "ERROR");
        assert!(
            mail["state"]["error"]
                .as_str()
                .unwrap()
                .contains("backup/lab"),
            "{mail}"
        );
    }
    fake.add_pool("backup");
    {
        let mut st = fake.state.lock().unwrap();
        st.datasets
            .insert("backup/lab".into(), truenas_fake::Dataset::default());
    }
    fake.run_replications(1_796_000_060);
    {
        let st = fake.state.lock().unwrap();
        assert!(
            st.snapshots
                .iter()
                .any(|(d, n, _)| d == "backup/lab/mail" && n == "cloudlet-seed-mail-20261207-0100")
        );
        let mail = st
            .replications
            .values()
            .find(|r| r["name"] == "cloudlet-seed-mail")
            .unwrap();
        assert_eq!(mail["state"]["state"], "FINISHED");
    }

    // Without `replicate`, the tasks go (before the snapshot tasks they are bound to); the
    // copies stay.
    let plan = e.plan(seed_storage(|_, t| t)).await.unwrap();
    assert_eq!(
        steps(&plan),
        vec![
            "delete storage/replication/blog",
            "delete storage/replication/mail"
        ]
    );
    apply_ok(&e, &plan).await;
    let st = fake.state.lock().unwrap();
    assert!(st.replications.is_empty());
    assert!(st.snapshots.iter().any(|(d, _, _)| d == "backup/lab/mail"));
    assert_eq!(st.tasks.len(), 2, "the snapshot tasks stay");
}
