//! Engine tests against an in-process test provider (a stateful store of resources that can
//! be told to fail or to slow down, and that counts what runs at once).
#![allow(clippy::disallowed_methods, missing_docs)] // #[tokio::test] builds a runtime

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cloudlet_core::engine::{ApplyOptions, Cancel, Engine, Event};
use cloudlet_core::error::{EngineError, ProviderError};
use cloudlet_core::plan::{Action, FieldChange};
use cloudlet_core::provider::{Provider, Providers};
use cloudlet_core::resource::{Data, Domain, Resource, ResourceId};
use cloudlet_core::store::StateStore;
use serde_json::json;

#[derive(Default)]
struct TestProvider {
    items: Mutex<BTreeMap<ResourceId, Resource>>,
    calls: Mutex<Vec<(Action, ResourceId)>>,
    fail: Mutex<HashSet<ResourceId>>,
    delay: Duration,
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// Finish also after failed steps.
    partial: bool,
    /// Every step fails as a backend that cannot be reached.
    down: std::sync::atomic::AtomicBool,
    finished: AtomicUsize,
}

impl TestProvider {
    fn with_delay(ms: u64) -> Self {
        TestProvider {
            delay: Duration::from_millis(ms),
            ..Default::default()
        }
    }
    async fn op(&self, action: Action, r: &Resource) -> Result<(), ProviderError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.calls.lock().unwrap().push((action, r.id.clone()));
        if self.down.load(Ordering::SeqCst) {
            return Err(ProviderError::Unreachable {
                endpoint: "https://10.0.20.10:6443".into(),
                message: format!("creating {}: connection refused", r.id),
            });
        }
        if self.fail.lock().unwrap().contains(&r.id) {
            return Err(ProviderError::Backend {
                message: format!("injected failure on {}", r.id),
                retryable: false,
            });
        }
        let mut items = self.items.lock().unwrap();
        match action {
            Action::Create | Action::Update => {
                items.insert(r.id.clone(), r.clone());
            }
            Action::Delete => {
                items.remove(&r.id);
            }
        }
        Ok(())
    }
    fn calls(&self) -> Vec<(Action, ResourceId)> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Provider for TestProvider {
    fn name(&self) -> &str {
        "test"
    }
    async fn observe(&self, domain: Domain) -> Result<Vec<Resource>, ProviderError> {
        Ok(self
            .items
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.id.domain == domain)
            .cloned()
            .collect())
    }
    async fn create(&self, r: &Resource) -> Result<(), ProviderError> {
        self.op(Action::Create, r).await
    }
    async fn update(&self, r: &Resource, _c: &[FieldChange]) -> Result<(), ProviderError> {
        self.op(Action::Update, r).await
    }
    async fn delete(&self, r: &Resource) -> Result<(), ProviderError> {
        self.op(Action::Delete, r).await
    }
    async fn finish(&self, _d: Domain) -> Result<(), ProviderError> {
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn commits_partial_applies(&self) -> bool {
        self.partial
    }
}

fn id(kind: &str, name: &str) -> ResourceId {
    ResourceId::new(Domain::Cluster, kind, name)
}

fn res(kind: &str, name: &str, deps: &[ResourceId]) -> Resource {
    let mut r = Resource::new(id(kind, name), json!({"name": name}));
    for d in deps {
        r = r.after(d.clone());
    }
    r
}

fn engine(p: &Arc<TestProvider>, dir: &std::path::Path) -> Engine {
    let providers = Providers::new().with(Domain::Cluster, p.clone() as Arc<dyn Provider>);
    Engine::new("t", providers, StateStore::open(dir).unwrap())
}

/// ns <- {a, b}; a <- a2
fn graph() -> Vec<Resource> {
    let ns = id("namespace", "ns");
    let a = id("deployment", "a");
    vec![
        res("namespace", "ns", &[]),
        res("deployment", "a", std::slice::from_ref(&ns)),
        res("deployment", "b", std::slice::from_ref(&ns)),
        res("service", "a2", &[a]),
    ]
}

#[tokio::test]
async fn apply_respects_dependencies_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TestProvider::default());
    let e = engine(&p, dir.path());
    let plan = e.plan(graph()).await.unwrap();
    assert_eq!(plan.summary.create, 4);
    let report = e.apply(&plan, ApplyOptions::default()).await.unwrap();
    assert!(report.is_success(), "{report:?}");
    let calls = p.calls();
    let pos = |n: &str| calls.iter().position(|(_, i)| &*i.name == n).unwrap();
    assert!(pos("ns") < pos("a") && pos("ns") < pos("b") && pos("a") < pos("a2"));
    let again = e.plan(graph()).await.unwrap();
    assert!(!again.summary.has_changes(), "a second plan is empty");
    assert_eq!(again.summary.unchanged, 4);
}

#[tokio::test]
async fn concurrency_is_bounded_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TestProvider::with_delay(20));
    let e = engine(&p, dir.path());
    let many: Vec<Resource> = (0..40)
        .map(|i| res("configmap", &format!("c{i:02}"), &[]))
        .collect();
    let plan = e.plan(many).await.unwrap();
    let report = e
        .apply(
            &plan,
            ApplyOptions {
                concurrency: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(report.is_success());
    assert_eq!(
        p.max_running.load(Ordering::SeqCst),
        5,
        "never more than the bound, and the bound is reached"
    );
}

#[tokio::test]
async fn a_failure_skips_dependants_but_not_independent_branches() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TestProvider::default());
    p.fail.lock().unwrap().insert(id("deployment", "a"));
    let e = engine(&p, dir.path());
    let plan = e.plan(graph()).await.unwrap();
    let events = Mutex::new(Vec::new());
    let sink = |ev: &Event| events.lock().unwrap().push(ev.clone());
    let report = e
        .apply(
            &plan,
            ApplyOptions {
                on_event: Some(&sink),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, id("deployment", "a"));
    assert!(report.failed[0].1.contains("injected failure"));
    assert_eq!(report.skipped, vec![id("service", "a2")]);
    assert_eq!(report.done.create, 2, "ns and b were created");
    let events = events.into_inner().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::StepSkipped { id, .. } if &*id.name == "a2"))
    );
    assert!(matches!(events.last(), Some(Event::Finished { .. })));
    // The next apply converges once the fault is gone.
    p.fail.lock().unwrap().clear();
    let plan = e.plan(graph()).await.unwrap();
    assert_eq!(plan.summary.create, 2);
    assert!(
        e.apply(&plan, ApplyOptions::default())
            .await
            .unwrap()
            .is_success()
    );
}

#[tokio::test]
async fn removing_from_the_lab_deletes_in_reverse_dependency_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TestProvider::default());
    let e = engine(&p, dir.path());
    let plan = e.plan(graph()).await.unwrap();
    e.apply(&plan, ApplyOptions::default()).await.unwrap();
    let before = p.calls().len();
    let plan = e.plan(vec![]).await.unwrap();
    assert_eq!(plan.summary.delete, 4);
    e.apply(&plan, ApplyOptions::default()).await.unwrap();
    let calls: Vec<_> = p.calls()[before..].to_vec();
    let pos = |n: &str| calls.iter().position(|(_, i)| &*i.name == n).unwrap();
    assert!(pos("a2") < pos("a") && pos("a") < pos("ns") && pos("b") < pos("ns"));
    assert!(calls.iter().all(|(a, _)| *a == Action::Delete));
}

#[tokio::test]
async fn updates_carry_field_level_changes() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TestProvider::default());
    let e = engine(&p, dir.path());
    let v1 = vec![Resource::new(
        id("deployment", "web"),
        json!({"spec": {"replicas": 1, "image": "a:1"}}),
    )];
    e.apply(&e.plan(v1).await.unwrap(), ApplyOptions::default())
        .await
        .unwrap();
    let v2 = vec![Resource::new(
        id("deployment", "web"),
        json!({"spec": {"replicas": 1, "image": "a:2"}}),
    )];
    let plan = e.plan(v2).await.unwrap();
    assert_eq!(plan.summary.update, 1);
    let ch = &plan.steps[0].changes;
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].path, "spec.image");
    assert_eq!(ch[0].before, Some(json!("a:1")));
    assert_eq!(ch[0].after, Some(json!("a:2")));
}

#[tokio::test]
async fn plans_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TestProvider::default());
    let e = engine(&p, dir.path());
    let mut rs: Vec<Resource> = (0..200)
        .map(|i| res("configmap", &format!("c{i}"), &[id("namespace", "ns")]))
        .collect();
    rs.push(res("namespace", "ns", &[]));
    let a = serde_json::to_vec(&e.plan(rs.clone()).await.unwrap()).unwrap();
    rs.reverse();
    let b = serde_json::to_vec(&e.plan(rs).await.unwrap()).unwrap();
    assert_eq!(
        a, b,
        "same input in another order gives a byte-identical plan"
    );
}

#[tokio::test]
async fn a_second_apply_is_refused_while_one_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TestProvider::with_delay(200));
    let e1 = engine(&p, dir.path());
    let e2 = engine(&p, dir.path());
    let plan = e1.plan(graph()).await.unwrap();
    let first = e1.apply(&plan, ApplyOptions::default());
    let second = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        e2.apply(&plan, ApplyOptions::default()).await
    };
    let (r1, r2) = tokio::join!(first, second);
    assert!(r1.unwrap().is_success());
    match r2 {
        Err(EngineError::Locked { holder, .. }) => {
            assert!(holder.unwrap().contains("pid"));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[tokio::test]
async fn cancel_stops_new_steps_and_reports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TestProvider::with_delay(30));
    let e = engine(&p, dir.path());
    let many: Vec<Resource> = (0..20)
        .map(|i| res("configmap", &format!("c{i:02}"), &[]))
        .collect();
    let plan = e.plan(many).await.unwrap();
    let cancel = Cancel::new();
    let c2 = cancel.clone();
    let sink = move |ev: &Event| {
        if matches!(ev, Event::StepDone { .. }) {
            c2.cancel();
        }
    };
    let report = e
        .apply(
            &plan,
            ApplyOptions {
                concurrency: 2,
                on_event: Some(&sink),
                cancel,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(report.cancelled);
    assert_eq!(report.done.create, 2, "the two steps in flight finished");
    assert_eq!(report.skipped.len(), 18);
    let records = e.store().records().unwrap();
    assert!(records.iter().any(
        |r| matches!(r, cloudlet_core::store::Record::End { status, .. } if status == "cancelled")
    ));
}

#[tokio::test]
async fn a_stale_saved_plan_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TestProvider::default());
    let e = engine(&p, dir.path());
    let plan = e.plan(graph()).await.unwrap();
    // Somebody changes the infrastructure after the plan was saved.
    p.items
        .lock()
        .unwrap()
        .insert(id("namespace", "ns"), res("namespace", "ns", &[]));
    let r = e
        .apply(
            &plan,
            ApplyOptions {
                verify_fresh: true,
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(EngineError::StalePlan { .. })), "{r:?}");
}

#[tokio::test]
async fn an_interrupted_apply_is_reported_and_the_next_converges_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TestProvider::with_delay(10));
    let e = engine(&p, dir.path());
    let many: Vec<Resource> = (0..30)
        .map(|i| res("configmap", &format!("c{i:02}"), &[]))
        .collect();
    let plan = e.plan(many.clone()).await.unwrap();
    // Drop the apply future mid-way (after five steps finished, however slow the machine
    // is): the in-process equivalent of a killed process.
    let done = std::sync::atomic::AtomicUsize::new(0);
    let enough = tokio::sync::Notify::new();
    let count = |ev: &Event| {
        if matches!(ev, Event::StepDone { .. })
            && done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == 5
        {
            enough.notify_one();
        }
    };
    tokio::select! {
        _ = e.apply(
            &plan,
            ApplyOptions {
                concurrency: 2,
                on_event: Some(&count),
                ..Default::default()
            },
        ) => panic!("the apply finished before it was interrupted"),
        _ = enough.notified() => {}
    }
    let interrupted = e
        .store()
        .interrupted()
        .unwrap()
        .expect("the journal shows an unfinished apply");
    assert!(interrupted.done > 0 && interrupted.done < 30);
    let created_before = p.calls().len();
    let events = Mutex::new(Vec::new());
    let sink = |ev: &Event| events.lock().unwrap().push(ev.clone());
    let plan = e.plan(many).await.unwrap();
    assert_eq!(plan.summary.create + plan.summary.unchanged, 30);
    e.apply(
        &plan,
        ApplyOptions {
            on_event: Some(&sink),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        events.lock().unwrap().first(),
        Some(Event::Resumed { .. })
    ));
    let calls = p.calls();
    let mut seen = HashSet::new();
    for (a, i) in &calls {
        assert_eq!(*a, Action::Create);
        assert!(seen.insert(i.clone()), "{i} created twice");
    }
    assert_eq!(seen.len(), 30);
    assert!(created_before < 30);
    assert!(e.store().interrupted().unwrap().is_none());
}

#[tokio::test]
async fn data_that_leaves_the_lab_is_kept_unless_the_lab_lets_it_go_and_the_apply_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TestProvider::default());
    let e = engine(&p, dir.path());
    let kept = res("dataset", "kept", &[]).holding(Data::Retain);
    let gone = res("dataset", "gone", &[]).holding(Data::Disposable);
    let share = res("export", "kept", std::slice::from_ref(&kept.id));
    let plan = e
        .plan(vec![kept.clone(), gone.clone(), share])
        .await
        .unwrap();
    e.apply(&plan, ApplyOptions::default()).await.unwrap();

    // Everything leaves the lab: the retained dataset stays and is listed, the export goes,
    // the disposable dataset is a delete marked as data loss.
    let plan = e.plan(vec![]).await.unwrap();
    assert_eq!(plan.kept, vec![kept.id.clone()]);
    assert_eq!(
        (
            plan.summary.kept,
            plan.summary.delete,
            plan.summary.data_loss
        ),
        (1, 2, 1)
    );
    let lossy: Vec<_> = plan
        .steps
        .iter()
        .filter(|s| s.data_loss)
        .map(|s| &s.id)
        .collect();
    assert_eq!(lossy, vec![&gone.id]);

    // Without the permission nothing runs, not even the harmless delete.
    let before = p.calls().len();
    let err = e.apply(&plan, ApplyOptions::default()).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::DataLoss { ids } if ids == std::slice::from_ref(&gone.id)),
        "{err}"
    );
    assert!(err.to_string().contains("--allow-data-loss"), "{err}");
    assert_eq!(p.calls().len(), before);

    let report = e
        .apply(
            &plan,
            ApplyOptions {
                allow_data_loss: true,
                ..ApplyOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let left: Vec<_> = p.items.lock().unwrap().keys().cloned().collect();
    assert_eq!(
        left,
        vec![kept.id.clone()],
        "only the retained dataset is left"
    );
    let again = e.plan(vec![]).await.unwrap();
    assert!(!again.summary.has_changes() && again.kept == vec![kept.id]);
}

#[tokio::test]
async fn finish_runs_after_failed_steps_only_for_backends_that_commit_partial_applies() {
    for partial in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let p = Arc::new(TestProvider {
            partial,
            ..TestProvider::default()
        });
        p.fail.lock().unwrap().insert(id("deployment", "b"));
        let e = engine(&p, dir.path());
        let plan = e.plan(graph()).await.unwrap();
        let report = e.apply(&plan, ApplyOptions::default()).await.unwrap();
        assert_eq!(report.failed.len(), 1);
        assert_eq!(
            p.finished.load(Ordering::SeqCst),
            usize::from(partial),
            "partial={partial}"
        );
        // A cancelled apply never finishes.
        let cancel = Cancel::new();
        cancel.cancel();
        let plan = e.plan(graph()).await.unwrap();
        let r = e
            .apply(
                &plan,
                ApplyOptions {
                    cancel,
                    ..ApplyOptions::default()
                },
            )
            .await
            .unwrap();
        assert!(r.cancelled);
        assert_eq!(p.finished.load(Ordering::SeqCst), usize::from(partial));
    }
}

#[tokio::test]
async fn an_unreachable_backend_stops_its_domain_with_one_cause() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TestProvider::with_delay(5));
    p.down.store(true, Ordering::SeqCst);
    let e = engine(&p, dir.path());
    let desired: Vec<Resource> = (0..50)
        .map(|i| res("configmap", &format!("c{i}"), &[]))
        .collect();
    let plan = e.plan(desired).await.unwrap();
    let events = Mutex::new(Vec::new());
    let sink = |ev: &Event| events.lock().unwrap().push(ev.clone());
    let report = e
        .apply(
            &plan,
            ApplyOptions {
                concurrency: 4,
                on_event: Some(&sink),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Only the steps already in flight when the first failed reached the backend.
    assert!(report.failed.len() <= 4, "{:?}", report.failed);
    assert!(p.calls().len() <= 4, "{}", p.calls().len());
    assert_eq!(report.failed.len() + report.skipped.len(), 50);
    assert!(
        report.failed[0]
            .1
            .contains("cannot reach https://10.0.20.10:6443"),
        "{}",
        report.failed[0].1
    );
    let events = events.into_inner().unwrap();
    let reasons: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepSkipped { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), report.skipped.len());
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("the cluster backend https://10.0.20.10:6443 cannot be reached")),
        "{reasons:?}"
    );
}
