//! The facade's freshness rule, the same for every frontend: a plan the lab just made applies
//! as it is; a saved one (or one applied already) only while the infrastructure is unchanged.
#![allow(missing_docs, clippy::disallowed_methods)] // #[tokio::test] builds a runtime

fn seed_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed");
    for e in std::fs::read_dir(seed).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_plans_are_checked_for_freshness_by_the_facade() {
    let dir = seed_copy();
    let lab = cloudlet::Lab::load(dir.path()).unwrap();
    let plan = lab.plan().await.unwrap();
    let saved = dir.path().join("plan.json");
    cloudlet::write_plan(&saved, &plan).unwrap();
    // A saved plan, read back by another Lab while the world is unchanged: applies.
    let other = cloudlet::Lab::load(dir.path()).unwrap();
    let report = other
        .apply(&cloudlet::read_plan(&saved).unwrap(), Default::default())
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    // The world changed: the saved copy is refused, whoever reads it.
    let stale = |e: cloudlet::Error| {
        assert_eq!(e.kind(), cloudlet::ErrorKind::StalePlan, "{e}");
        assert_eq!(e.kind().code(), "PLAN_STALE");
        assert!(e.to_string().contains("infrastructure changed"), "{e}");
    };
    let copy = cloudlet::read_plan(&saved).unwrap();
    stale(lab.apply(&copy, Default::default()).await.unwrap_err());
    // The plan `lab` made in memory applies once as it is (plan, then apply, in one
    // command); applied again, it is checked like any other.
    assert!(
        lab.apply(&plan, Default::default())
            .await
            .unwrap()
            .is_success()
    );
    stale(lab.apply(&plan, Default::default()).await.unwrap_err());
}
