//! `cloudlet restore` brings the apps' volumes back: the seed on a real kube-apiserver (an
//! existing cluster, `targets.cluster.kind: kubernetes`) backs up its apps' volumes through
//! the CronJobs it applied (their pods run by the test, as a kubelet would, with stock
//! restic, against the S3-compatible peer); then the cluster and the volumes are lost — a new
//! API server, empty claims but for a file written since — and the restore applies the lab
//! with the apps held at 0 replicas, runs one restore Job per app while they are held, and
//! scales them up again: every volume is exactly what was backed up, and each app's data-loss
//! window is journaled. No key and no store secret appears in any output.
#![allow(missing_docs, clippy::disallowed_methods, clippy::print_stderr)] // the data-loss windows are printed (seen with --no-capture)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use cloudlet_testkit::apiserver::ApiServer;
use cloudlet_testkit::container::{self, JobRun, SecretSource};
use cloudlet_testkit::drill;
use cloudlet_testkit::s3::{ACCESS_KEY, S3Peer, SECRET_KEY};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::{Api, ListParams};

mod common;

const KEY: &str = "volumes-restore-key";

async fn cloudlet(args: &[&str]) -> Output {
    common::cloudlet_async(&[("CLOUDLET_BACKUP_KEY", KEY)], args).await
}

fn text(o: &Output) -> String {
    common::text(o, &[KEY, SECRET_KEY])
}

/// The seed on the API server behind `kubeconfig`, its apps' volumes backed up to the store.
fn lab(work: &Path, kubeconfig: &Path, peer: &S3Peer) -> PathBuf {
    let dir = common::seed_lab(work);
    let edit = |name: &str, f: &dyn Fn(String) -> String| {
        let p = dir.join(name);
        std::fs::write(&p, f(std::fs::read_to_string(&p).unwrap())).unwrap();
    };
    edit("lab.yaml", &|t| {
        t.replace(
            "  cluster: {kind: local}",
            "  cluster: {kind: kubernetes, credentials: {file: kubeconfig}}",
        )
    });
    edit("cluster.yaml", &|t| {
        // The seed's env-referenced secret reads a variable every process has; the platform
        // is the cluster's own (MetalLB's CRDs come with the manifests).
        t.replace("{env: WIREGUARD_PRIVATE_KEY}", "{env: PATH}")
            + "  manifests: [manifests]\n  platform: {metallb: {external: true}, traefik: {external: true}}\n"
    });
    std::fs::copy(kubeconfig, dir.join("kubeconfig")).unwrap();
    cloudlet_testkit::seed::metallb_crds(&dir);
    std::fs::write(dir.join("secrets/s3-access"), ACCESS_KEY).unwrap();
    std::fs::write(dir.join("secrets/s3-secret"), SECRET_KEY).unwrap();
    std::fs::write(
        dir.join("backup.yaml"),
        format!(
            "backup:\n  key: {{env: CLOUDLET_BACKUP_KEY}}\n  targets:\n    offsite:\n      s3: {{endpoint: {}, bucket: {}, prefix: vols, access_key: {{file: secrets/s3-access}}, secret_key: {{file: secrets/s3-secret}}, ca: {}}}\n  volumes: {{target: offsite, every: 6h, keep: {{last: 3}}}}\n",
            peer.endpoint,
            peer.bucket,
            peer.ca.display()
        ),
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_brings_each_apps_volumes_back_while_the_app_is_held() {
    let work = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(work.path(), "lab-volumes");
    let server = ApiServer::start();
    let dir = lab(work.path(), &server.kubeconfig, &peer);
    let l = dir.to_str().unwrap();

    let o = cloudlet(&["apply", l, "--yes"]).await;
    assert!(o.status.success(), "{}", text(&o));

    // The apps' volumes, as the NAS holds them.
    let blog = work.path().join("nas/blog-content");
    let mail = work.path().join("nas/mailserver-data");
    std::fs::create_dir_all(blog.join("posts")).unwrap();
    std::fs::write(blog.join("index.html"), b"<h1>home</h1>\n").unwrap();
    std::fs::write(blog.join("posts/1.html"), vec![b'p'; 150_000]).unwrap();
    std::fs::create_dir_all(mail.join("cur")).unwrap();
    std::fs::write(mail.join("cur/1.eml"), b"Subject: hello\n\nbody\n").unwrap();
    let claims = BTreeMap::from([
        ("blog-content".to_string(), blog.clone()),
        ("mailserver-data".to_string(), mail.clone()),
    ]);
    let (blog_before, mail_before) = (
        cloudlet_testkit::files_of(&blog),
        cloudlet_testkit::files_of(&mail),
    );
    // The volume's canary: its sequence number and the time, a line every second, before,
    // during and after the backup, until the disaster.
    let canary_file = blog.join(CANARY);
    let canary = drill::Canary::start({
        let f = canary_file.clone();
        move |seq, at| drill::append_line(&f, seq, at)
    });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    // Each applied CronJob's pod, run once with the Secrets the apply wrote.
    let client = server.client().await;
    let crons = Api::<CronJob>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(
        crons.items.len(),
        2,
        "a backup CronJob per app with volumes"
    );
    for (i, c) in crons.items.iter().enumerate() {
        let ns = c.metadata.namespace.clone().unwrap();
        let mut secrets = container::Secrets::new();
        for s in Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .unwrap()
        {
            let (n, v) = container::from_live(&s);
            secrets.insert(n, v);
        }
        let pod =
            serde_json::to_value(&c.spec.job_template.spec.as_ref().unwrap().template).unwrap();
        let (root, c) = (work.path().join(format!("backup{i}")), claims.clone());
        let o = tokio::task::spawn_blocking(move || container::run_pod(&root, &pod, &secrets, &c))
            .await
            .unwrap();
        let out = text(&o);
        assert!(o.status.success(), "the backup pod failed: {out}");
    }

    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (last_seq, last_at) = canary.stop();
    let written = std::fs::read_to_string(&canary_file).unwrap();

    // `backup verify` proves each app's volumes: L0 asks the CronJob, which has no successful
    // run until its controller (here: the test) records one.
    let o = cloudlet(&["backup", "verify", l]).await;
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("volumes blog/blog → offsite:") && t.contains("has no successful run yet"),
        "{t}"
    );
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    for c in &crons.items {
        Api::<CronJob>::namespaced(client.clone(), c.metadata.namespace.as_deref().unwrap())
            .patch_status(
                c.metadata.name.as_deref().unwrap(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({"status": {
                    "lastScheduleTime": now, "lastSuccessfulTime": now,
                }})),
            )
            .await
            .unwrap();
    }
    let o = cloudlet(&["backup", "verify", l, "--json"]).await;
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let verified: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let apps: Vec<&str> = verified
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["app"].as_str().unwrap())
        .collect();
    assert_eq!(apps, ["blog/blog", "mailserver/mailserver"], "{t}");
    for v in verified.as_array().unwrap() {
        let l3 = &v["levels"][3];
        assert_eq!(l3["ok"], true, "{v}");
        assert!(
            l3["detail"]
                .as_str()
                .unwrap()
                .contains("every block matching the hash taken from the source"),
            "{v}"
        );
    }

    // A restore while the apps run (the lab's state lost, the cluster and its volumes not)
    // would replace their data with the snapshot: refused, naming them, and nothing changes.
    std::fs::remove_dir_all(dir.join(".cloudlet")).unwrap();
    let o = cloudlet(&["restore", l, "--from", "offsite"]).await;
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("2 app(s) run in the cluster with volumes a restore would replace")
            && t.contains("blog/blog, mailserver/mailserver")
            && t.contains("--force"),
        "{t}"
    );
    assert_eq!(without_canary(&blog), blog_before);
    assert_eq!(std::fs::read_to_string(&canary_file).unwrap(), written);
    let d: Deployment = Api::namespaced(client.clone(), "blog")
        .get("blog")
        .await
        .unwrap();
    assert_eq!(d.spec.replicas, Some(2), "the app was not held");
    assert!(!dir.join(".cloudlet/restore").exists(), "nothing journaled");

    // The disaster: the cluster is gone (a new, empty API server takes its place, its
    // kubeconfig the lab's), and so are the volumes' files and the lab's state; a file has
    // been written on one of the new, empty volumes since.
    drop(client);
    drop(server);
    let server = ApiServer::start();
    std::fs::copy(&server.kubeconfig, dir.join("kubeconfig")).unwrap();
    for d in [&blog, &mail] {
        std::fs::remove_dir_all(d).unwrap();
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(blog.join("written-after"), b"stray").unwrap();
    let _ = std::fs::remove_dir_all(dir.join(".cloudlet"));

    let client = server.client().await;
    let runs: Arc<Mutex<Vec<JobRun>>> = Arc::default();
    let acting = tokio::spawn(container::kubelet(
        client.clone(),
        work.path().join("jobs"),
        cloudlet::cluster::volume_backup::RESTORE_LABEL,
        container::Kubelet {
            claims: claims.clone(),
            ..Default::default()
        },
        SecretSource::Live,
        runs.clone(),
    ));
    let o = cloudlet(&["restore", l, "--from", "offsite", "--wait", "1s"]).await;
    acting.abort();
    let t = text(&o);
    for line in [
        "restore: infrastructure done in ",
        "restore: volumes done in ",
        "blog/blog from snapshot ",
        "mailserver/mailserver from snapshot ",
        "restore: reconcile done in ",
        // No controllers run on this API server: nothing becomes ready, and the verify
        // phase says so once its wait is over.
        "restore: verify FAILED in ",
        "cluster/deployment/blog.blog — not ready after 1s",
    ] {
        assert!(t.contains(line), "`{line}` not in:\n{t}");
    }
    assert!(!o.status.success(), "{t}");
    // The data-loss window of each app's volumes, in the journal.
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(".cloudlet/restore/journal.json")).unwrap())
            .unwrap();
    let apps: Vec<&str> = journal["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["class"] == "volumes")
        .map(|w| w["app"].as_str().unwrap())
        .collect();
    assert_eq!(apps.len(), 2, "{journal}");
    assert!(apps.contains(&"blog/blog") && apps.contains(&"mailserver/mailserver"));
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 2, "one restore Job per app: {runs:?}");
    for r in &runs {
        assert!(r.ok, "{r:?}");
        assert_eq!(
            r.workload_replicas,
            Some(0),
            "{}: the Job ran while its app was held",
            r.job
        );
        for s in [KEY, SECRET_KEY] {
            assert!(!r.stderr.contains(s), "{}", r.stderr);
        }
    }
    assert_eq!(
        without_canary(&blog),
        blog_before,
        "the blog's volume is what was backed up"
    );
    // The canary's file as the backup read it: what was written up to a line, no torn line,
    // and its data-loss window within the volumes' schedule (6h).
    let restored = std::fs::read_to_string(&canary_file).unwrap();
    assert!(
        written.starts_with(&restored) && restored.ends_with('\n'),
        "the restored canary is a whole prefix of what was written:\n{restored}\n---\n{written}"
    );
    let (restored_seq, restored_at) = drill::last_line(&restored).expect("canary lines restored");
    assert!(restored_seq <= last_seq);
    let rpo = last_at - restored_at;
    assert!((0..=6 * 3600).contains(&rpo), "RPO {rpo}s");
    eprintln!(
        "volume canary: last written #{last_seq}, restored #{restored_seq}: RPO {rpo}s ({} lines lost)",
        last_seq - restored_seq
    );
    assert_eq!(
        cloudlet_testkit::files_of(&mail),
        mail_before,
        "the mail volume is what was backed up"
    );
    // The apps scaled up again by the reconcile.
    let d: Deployment = Api::namespaced(client.clone(), "blog")
        .get("blog")
        .await
        .unwrap();
    assert_eq!(d.spec.replicas, Some(2), "the seed's two replicas");
}

/// The volume canary's file (in the blog's volume).
const CANARY: &str = "canary.log";

/// The files of `dir` without the volume canary's.
fn without_canary(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = cloudlet_testkit::files_of(dir);
    files.remove(CANARY);
    files
}

/// The postgres app of the dump test, at the test server's port, its password from a file of
/// the lab.
fn with_database(dir: &Path, port: u16, password: &str) {
    std::fs::write(dir.join("secrets/db-password"), password).unwrap();
    let p = dir.join("cluster.yaml");
    let t = std::fs::read_to_string(&p).unwrap().replacen(
        "  apps:\n",
        &format!(
            "  apps:\n    wikidb:\n      image: docker.io/library/postgres:16\n      ports: [{{port: {port}}}]\n      secrets: {{POSTGRES_PASSWORD: {{file: secrets/db-password}}}}\n      volumes: [{{name: data, export: blog, mount: /var/lib/postgresql/data, size: 1GiB, database: true}}]\n      dump: {{kind: postgres, database: wiki, password: POSTGRES_PASSWORD, verify: \"SELECT count(*) FROM pages\"}}\n"
        ),
        1,
    );
    std::fs::write(&p, t).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_loads_each_database_dump_before_the_other_apps_start() {
    let work = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(work.path(), "lab-volumes");
    let password = "restore-db-pw";
    let pg = std::sync::Arc::new(cloudlet_testkit::postgres::Postgres::start(
        work.path(),
        password,
    ));
    pg.psql(password, "postgres", "CREATE DATABASE wiki");
    pg.psql(
        password,
        "wiki",
        "CREATE TABLE pages (id serial PRIMARY KEY, title text); INSERT INTO pages (title) SELECT 'p' || g FROM generate_series(1, 120) g; CREATE TABLE canary (seq bigint PRIMARY KEY, at bigint NOT NULL)",
    );
    let server = ApiServer::start();
    let dir = lab(work.path(), &server.kubeconfig, &peer);
    with_database(&dir, pg.port, password);
    let l = dir.to_str().unwrap();
    let o = cloudlet(&["apply", l, "--yes"]).await;
    assert!(o.status.success(), "{}", text(&o));

    // The database server's files on the NAS, and the other apps' volumes.
    let db_files = work.path().join("nas/wikidb-data");
    std::fs::create_dir_all(&db_files).unwrap();
    std::fs::write(db_files.join("PG_VERSION"), b"16\n").unwrap();
    let mut base = container::Kubelet {
        claims: BTreeMap::from([
            ("blog-content".to_string(), work.path().join("nas/blog")),
            ("mailserver-data".to_string(), work.path().join("nas/mail")),
            ("wikidb-data".to_string(), db_files.clone()),
        ]),
        // The postgres image's tools, and its Service's name.
        path: vec![pg.bin.display().to_string()],
        hosts: vec![("wikidb".into(), "127.0.0.1".into())],
        ..Default::default()
    };
    for d in base.claims.values() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(work.path().join("nas/blog/index.html"), b"home\n").unwrap();

    // The database's canary: a row with its sequence number and the time every second,
    // before, during and after the dump, until the disaster.
    let canary = drill::Canary::start({
        let pg = pg.clone();
        move |seq, at| {
            pg.psql(
                password,
                "wiki",
                &format!("INSERT INTO canary VALUES ({seq}, {at})"),
            );
        }
    });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    // The wikidb CronJob's pod: the dump, then restic, as its kubelet would run them.
    let client = server.client().await;
    let cron = Api::<CronJob>::namespaced(client.clone(), "wikidb")
        .get("wikidb-backup")
        .await
        .unwrap();
    for s in Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), "wikidb")
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        let (n, v) = container::from_live(&s);
        base.secrets.insert(n, v);
    }
    let pod =
        serde_json::to_value(&cron.spec.job_template.spec.as_ref().unwrap().template).unwrap();
    let (root, k) = (work.path().join("backup"), base.clone());
    let o = tokio::task::spawn_blocking(move || container::run_pod_with(&root, &pod, &k))
        .await
        .unwrap();
    let out = common::text(&o, &[KEY, SECRET_KEY, password]);
    assert!(o.status.success(), "the backup pod failed: {out}");
    pg.psql(
        password,
        "wiki",
        "INSERT INTO pages (title) VALUES ('after the backup')",
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (last_seq, last_at) = canary.stop();

    // Level 4: the dump loaded into a scratch server in a Job and asked the lab's query; a
    // query that answers no row fails it.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    Api::<CronJob>::namespaced(client.clone(), "wikidb")
        .patch_status(
            "wikidb-backup",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"status": {
                "lastScheduleTime": now, "lastSuccessfulTime": now,
            }})),
        )
        .await
        .unwrap();
    let l4 = |query: &'static str| {
        let (dir, base, client) = (dir.clone(), base.clone(), client.clone());
        let jobs = work.path().join(format!("verify-{}", query.len()));
        async move {
            let p = dir.join("cluster.yaml");
            let t = std::fs::read_to_string(&p).unwrap();
            let from = t
                .split("verify: \"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string();
            std::fs::write(&p, t.replace(&from, query)).unwrap();
            let runs: Arc<Mutex<Vec<JobRun>>> = Arc::default();
            let acting = tokio::spawn(container::kubelet(
                client,
                jobs,
                cloudlet::cluster::volume_backup::RESTORE_LABEL,
                base,
                SecretSource::Live,
                runs,
            ));
            let o = cloudlet(&[
                "backup",
                "verify",
                dir.to_str().unwrap(),
                "--level",
                "4",
                "--json",
            ])
            .await;
            acting.abort();
            let all: serde_json::Value =
                serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
            all.as_array()
                .unwrap()
                .iter()
                .find(|v| v["app"] == "wikidb/wikidb")
                .unwrap()
                .clone()
        }
    };
    let v = l4("SELECT count(*) FROM pages").await;
    let levels = v["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 5, "{v}");
    assert_eq!(levels[4]["ok"], true, "{v}");
    assert!(
        levels[4]["detail"]
            .as_str()
            .unwrap()
            .contains("answered the lab's query"),
        "{v}"
    );
    let v = l4("SELECT 1 WHERE false").await;
    let last = v["levels"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["level"].as_u64(), last["ok"].as_bool()),
        (Some(4), Some(false)),
        "{v}"
    );
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .contains("the query answered no row"),
        "{v}"
    );

    // The disaster: the cluster, the lab's state, the database and its server's files.
    drop(client);
    drop(server);
    let server = ApiServer::start();
    std::fs::copy(&server.kubeconfig, dir.join("kubeconfig")).unwrap();
    let _ = std::fs::remove_dir_all(dir.join(".cloudlet"));
    pg.psql(password, "postgres", "DROP DATABASE wiki");
    std::fs::write(db_files.join("stray"), b"x").unwrap();

    let client = server.client().await;
    let runs: Arc<Mutex<Vec<JobRun>>> = Arc::default();
    let acting = tokio::spawn(container::kubelet(
        client.clone(),
        work.path().join("jobs"),
        cloudlet::cluster::volume_backup::RESTORE_LABEL,
        container::Kubelet {
            secrets: container::Secrets::new(),
            ..base
        },
        SecretSource::Live,
        runs.clone(),
    ));
    let o = cloudlet(&["restore", l, "--from", "offsite", "--wait", "1s"]).await;
    acting.abort();
    let t = common::text(&o, &[KEY, SECRET_KEY, password]);
    for line in [
        "restore: volumes done in ",
        "restore: databases done in ",
        "dumps loaded into wikidb/wikidb from snapshot ",
        "restore: reconcile done in ",
    ] {
        assert!(t.contains(line), "`{line}` not in:\n{t}");
    }
    // The server's files did not come back (it starts anew); the dump did, with what was
    // there at backup time.
    assert_eq!(std::fs::read_dir(&db_files).unwrap().count(), 0);
    assert_eq!(
        pg.psql(password, "wiki", "SELECT count(*) FROM pages"),
        "120"
    );
    // The canary's rows as the dump took them: every one up to the last, none torn, and the
    // data-loss window within the schedule (6h).
    let newest = pg.psql(
        password,
        "wiki",
        "SELECT seq || ' ' || at || ' ' || (SELECT count(*) FROM canary) FROM canary ORDER BY seq DESC LIMIT 1",
    );
    let mut f = newest.split_whitespace();
    let mut next = || f.next().unwrap_or_else(|| panic!("{newest}"));
    let restored_seq: u64 = next().parse().unwrap();
    let restored_at: i64 = next().parse().unwrap();
    let rows: u64 = next().parse().unwrap();
    assert_eq!(rows, restored_seq + 1, "no row missing before the newest");
    assert!(restored_seq <= last_seq, "{restored_seq} > {last_seq}");
    let rpo = last_at - restored_at;
    assert!((0..=6 * 3600).contains(&rpo), "RPO {rpo}s");
    eprintln!(
        "database canary: last written #{last_seq}, restored #{restored_seq}: RPO {rpo}s ({} rows lost)",
        last_seq - restored_seq
    );
    let runs = runs.lock().unwrap().clone();
    let load = runs
        .iter()
        .find(|r| r.job == "wikidb/wikidb-load-dump")
        .unwrap_or_else(|| panic!("the load Job ran: {runs:?}"));
    assert!(load.ok, "{load:?}");
    assert_eq!(
        load.workload_replicas,
        Some(1),
        "the database server runs while its dump is loaded"
    );
    let restore = runs
        .iter()
        .find(|r| r.job == "wikidb/wikidb-restore")
        .unwrap();
    assert_eq!(
        restore.workload_replicas,
        Some(0),
        "held while its volume came back"
    );
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(".cloudlet/restore/journal.json")).unwrap())
            .unwrap();
    assert!(
        journal["windows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["class"] == "database" && w["app"] == "wikidb/wikidb"),
        "{journal}"
    );
}
