//! Volume backups as the plan holds them, proven by running them: the seed's apps with
//! volumes get a CronJob and a Secret of references; the CronJob's container (its command,
//! its environment, its mounts — the claims read-only, the store's CA) is run as a container
//! would run it, in a mount namespace with a root of its own, with stock restic (Debian's
//! package: the same program the image holds) against the S3-compatible peer; the snapshots
//! it makes are read back by cloudlet, and retention keeps what the lab says.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::Path;

use cloudlet_backup::repo::{Location, Repo};
use cloudlet_backup::s3::S3Location;
use cloudlet_testkit::container::{from_refs, run_pod};
use cloudlet_testkit::s3::{ACCESS_KEY, S3Peer, SECRET_KEY};
use serde_json::Value;

const KEY: &str = "volume-backup-key";

fn lab(peer: &S3Peer, work: &Path, registry: Option<&str>) -> cloudlet_core::Lab {
    lab_with(peer, work, registry, String::new())
}

/// [`lab`] with `apps` (YAML at the depth of the seed's apps) among its apps.
fn lab_with(
    peer: &S3Peer,
    work: &Path,
    registry: Option<&str>,
    apps: String,
) -> cloudlet_core::Lab {
    let secret = work.join("s3-secret");
    std::fs::write(&secret, SECRET_KEY).unwrap();
    let access = work.join("s3-access");
    std::fs::write(&access, ACCESS_KEY).unwrap();
    let key = work.join("backup-key");
    std::fs::write(&key, KEY).unwrap();
    let block = format!(
        "\nbackup:\n  key: {{file: {}}}\n  targets:\n    offsite:\n      s3: {{endpoint: {}, bucket: {}, prefix: vols, access_key: {{file: {}}}, secret_key: {{file: {}}}, ca: {}}}\n  volumes: {{target: offsite, every: 6h, keep: {{last: 2}}}}\n",
        key.display(),
        peer.endpoint,
        peer.bucket,
        access.display(),
        secret.display(),
        peer.ca.display()
    );
    cloudlet_testkit::seed::seed_lab(move |name, mut text| {
        if name == "cluster.yaml" {
            text = text.replacen("  apps:\n", &format!("  apps:\n{apps}"), 1);
            text.push_str(&block);
            if let Some(r) = registry {
                text = text.replace(
                    "cluster:\n",
                    &format!("cluster:\n  platform: {{registry: {r}}}\n"),
                );
            }
        }
        text
    })
}

/// The repository the lab's volume backups write, as cloudlet reads it.
fn location(peer: &S3Peer) -> Location {
    Location::S3(S3Location {
        endpoint: peer.endpoint.clone(),
        bucket: peer.bucket.clone(),
        prefix: "vols".into(),
        region: "us-east-1".into(),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        ca: Some(peer.ca.clone()),
    })
}

fn find<'a>(
    plan: &'a [cloudlet_core::Resource],
    kind: &str,
    name: &str,
) -> &'a cloudlet_core::Resource {
    plan.iter()
        .find(|r| &*r.id.kind == kind && &*r.id.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the plan"))
}

/// The volume snapshot of `app` (in its own namespace) in the repository at `loc`, found by
/// the tag the backup Job gives it.
async fn app_snapshot(loc: Location, app: &str) -> cloudlet_backup::repo::Snapshot {
    let snaps = cloudlet_backup::blocking(move || Repo::open(&loc, KEY)?.snapshots())
        .await
        .unwrap();
    let tag = format!("cloudlet-app:{app}/{app}");
    snaps
        .into_iter()
        .find(|s| s.tags.contains(&tag))
        .expect("the app's snapshot is tagged with it")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planned_cronjob_backs_up_an_apps_volumes_with_stock_restic() {
    let work = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(work.path(), "lab-volumes");
    let lab = lab(&peer, work.path(), None);
    let plan = cloudlet_cluster::expand(&lab);

    let job = find(&plan, "cronjob", "blog.blog-backup").body.value();
    let secret = find(&plan, "secret", "blog.blog-backup").body.value();
    assert_eq!(job["spec"]["schedule"], "0 */6 * * *");
    assert_eq!(job["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "docker.io/restic/restic:0.17.3");
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "blog-content"
    );
    assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["readOnly"], true);
    let text =
        serde_json::to_string(&plan.iter().map(|r| r.body.value()).collect::<Vec<_>>()).unwrap();
    assert!(
        !text.contains(SECRET_KEY) && !text.contains(KEY),
        "a secret is in the plan"
    );
    // The mail server has a volume too; apps without volumes get nothing.
    find(&plan, "cronjob", "mailserver.mailserver-backup");
    assert!(
        !plan
            .iter()
            .any(|r| &*r.id.kind == "cronjob" && r.id.name.contains("wireguard"))
    );

    let script = c["command"][2].as_str().unwrap().to_string();
    assert!(script.contains("restic --cacert"), "{script}");
    assert_eq!(c["command"][0], "/bin/sh");
    let template = &job["spec"]["jobTemplate"]["spec"]["template"];

    // The volume as it is on the NAS.
    let content = work.path().join("nas/blog/content");
    std::fs::create_dir_all(content.join("posts")).unwrap();
    std::fs::write(content.join("index.html"), b"<h1>home</h1>\n").unwrap();
    std::fs::write(content.join("posts/1.html"), vec![b'x'; 300_000]).unwrap();

    let loc = location(&peer);
    let mut ids = Vec::new();
    for round in 0..3 {
        std::fs::write(content.join("round"), format!("{round}\n")).unwrap();
        let o = run_pod(
            &work.path().join(format!("root{round}")),
            template,
            &BTreeMap::from([from_refs(&secret)]),
            &BTreeMap::from([("blog-content".to_string(), content.clone())]),
        );
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success(),
            "round {round}: the backup container failed:\n{out}"
        );
        assert!(!out.contains(SECRET_KEY) && !out.contains(KEY), "{out}");
        let l = loc.clone();
        let snaps = cloudlet_backup::blocking(move || Repo::open(&l, KEY)?.snapshots())
            .await
            .unwrap();
        ids.push(snaps.last().unwrap().id.clone());
    }
    let l = loc.clone();
    let dest = work.path().join("restored");
    let d = dest.clone();
    let last = ids[2].clone();
    let snaps = cloudlet_backup::blocking(move || {
        let repo = Repo::open(&l, KEY)?;
        repo.restore(&last, &d)?;
        repo.snapshots()
    })
    .await
    .unwrap();
    assert_eq!(
        snaps.len(),
        2,
        "keep: {{last: 2}} forgot the oldest: {snaps:?}"
    );
    assert!(!snaps.iter().any(|s| s.id == ids[0]));
    let s = &snaps[1];
    assert_eq!(s.class, "volumes");
    assert_eq!(s.host, "seed");
    assert_eq!(s.paths, vec!["/data".to_string()]);
    assert_eq!(
        std::fs::read(dest.join("content/index.html")).unwrap(),
        b"<h1>home</h1>\n"
    );
    assert_eq!(std::fs::read(dest.join("content/round")).unwrap(), b"2\n");
    assert_eq!(
        std::fs::read(dest.join("content/posts/1.html"))
            .unwrap()
            .len(),
        300_000
    );
}

#[test]
fn the_backup_image_comes_through_the_labs_registry() {
    let work = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(work.path(), "lab-volumes");
    let lab = lab(&peer, work.path(), Some("registry.lan:5000"));
    let plan = cloudlet_cluster::expand(&lab);
    let job = find(&plan, "cronjob", "blog.blog-backup").body.value();
    assert_eq!(
        job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.lan:5000/restic/restic:0.17.3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restore_job_holds_the_app_and_brings_its_volumes_back_with_stock_restic() {
    use cloudlet_cluster::volume_restore::{self, AppRestore, VolumeRestoreError};
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use kube::api::{Api, PostParams};
    use std::time::Duration;

    let work = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(work.path(), "lab-volumes");
    let lab = lab(&peer, work.path(), None);
    let plan = cloudlet_cluster::expand(&lab);
    let secrets = BTreeMap::from([from_refs(
        &find(&plan, "secret", "blog.blog-backup").body.value(),
    )]);
    let cron = find(&plan, "cronjob", "blog.blog-backup").body.value();

    // Backed up once, by the planned CronJob's container.
    let content = work.path().join("nas/blog/content");
    std::fs::create_dir_all(content.join("posts")).unwrap();
    std::fs::write(content.join("index.html"), b"<h1>home</h1>\n").unwrap();
    std::fs::write(content.join("posts/1.html"), vec![b'y'; 200_000]).unwrap();
    let before = cloudlet_testkit::files_of(&content);
    let claims = BTreeMap::from([("blog-content".to_string(), content.clone())]);
    let o = run_pod(
        &work.path().join("backup-root"),
        &cron["spec"]["jobTemplate"]["spec"]["template"],
        &secrets,
        &claims,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let loc = location(&peer);
    let snap = app_snapshot(loc, "blog").await;

    // The disaster: the volume comes back empty but for a file the app wrote on it since.
    std::fs::remove_dir_all(&content).unwrap();
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("written-after"), b"stray").unwrap();

    let server = cloudlet_testkit::apiserver::ApiServer::start();
    let client = server.client().await;
    let mut ns = Namespace::default();
    ns.metadata.name = Some("blog".into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let dep: Deployment =
        serde_json::from_value(find(&plan, "deployment", "blog.blog").body.value()).unwrap();
    let deps = Api::<Deployment>::namespaced(client.clone(), "blog");
    deps.create(&PostParams::default(), &dep).await.unwrap();
    // A pod of the app, running until its workload is scaled down.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "blog-1", "labels": {"app.kubernetes.io/name": "blog"}},
        "spec": {"containers": [{"name": "blog", "image": "nginx"}]},
    }))
    .unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), "blog");
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let app = &lab.cluster.as_ref().unwrap().apps["blog"];
    let job = cloudlet_cluster::volume_backup::restore_job(&lab, "blog", app, "blog", &snap.id)
        .expect("the app's volumes are backed up");
    let text = job.to_string();
    assert!(!text.contains(SECRET_KEY) && !text.contains(KEY), "{text}");
    let apps = vec![AppRestore {
        namespace: "blog".into(),
        app: "blog".into(),
        stateful: false,
        job,
    }];
    let runs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let acting = tokio::spawn(cloudlet_testkit::container::kubelet(
        client.clone(),
        work.path().join("jobs"),
        cloudlet_cluster::volume_backup::RESTORE_LABEL,
        cloudlet_testkit::container::Kubelet {
            claims: claims.clone(),
            ..Default::default()
        },
        cloudlet_testkit::container::SecretSource::Given(secrets.clone()),
        runs.clone(),
    ));

    volume_restore::hold(&client, &apps, Duration::from_secs(60))
        .await
        .unwrap();
    let held = deps.get("blog").await.unwrap();
    assert_eq!(held.spec.replicas, Some(0));
    assert!(
        pods.get_opt("blog-1").await.unwrap().is_none(),
        "hold returned while the app's pod was still there"
    );

    let done = volume_restore::restore(&client, &apps, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].app, "blog/blog");
    {
        let runs = runs.lock().unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].job, "blog/blog-restore");
        assert_eq!(
            runs[0].workload_replicas,
            Some(0),
            "the Job ran while the app was held"
        );
    }
    assert_eq!(
        cloudlet_testkit::files_of(&content),
        before,
        "the volume is exactly what was backed up"
    );

    // A snapshot that is not there: the Job fails, and the error names the app and the Job.
    let bad = cloudlet_cluster::volume_backup::restore_job(&lab, "blog", app, "blog", "0123abcd")
        .unwrap();
    let apps = vec![AppRestore {
        job: bad,
        ..apps[0].clone()
    }];
    let e = volume_restore::restore(&client, &apps, Duration::from_secs(120))
        .await
        .unwrap_err();
    acting.abort();
    let VolumeRestoreError::Failed { app, job, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!((app.as_str(), job.as_str()), ("blog/blog", "blog-restore"));
    let msg = e.to_string();
    assert!(
        msg.contains("kubectl -n blog logs job/blog-restore"),
        "{msg}"
    );
    assert!(!msg.contains(SECRET_KEY) && !msg.contains(KEY), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_go_to_an_sftp_target_with_the_labs_key_and_come_back_from_it() {
    use cloudlet_backup::sftp::SftpLocation;
    let work = tempfile::tempdir().unwrap();
    let peer = cloudlet_testkit::sftp::SftpPeer::start(&work.path().join("sftp"));
    let repo = work.path().join("repo");
    let key = work.path().join("backup-key");
    // With a newline at its end: the pod and cloudlet must still agree on the key.
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    let block = format!(
        "\nbackup:\n  key: {{file: {}}}\n  targets:\n    box:\n      sftp: {{host: 127.0.0.1, port: {}, user: {}, path: {}, identity: {}, known_hosts: {}}}\n  volumes: {{target: box, every: 6h}}\n",
        key.display(),
        peer.addr.port(),
        peer.user,
        repo.display(),
        peer.identity.display(),
        peer.known_hosts.display()
    );
    let lab = cloudlet_testkit::seed::seed_lab(move |name, mut text| {
        if name == "cluster.yaml" {
            text.push_str(&block);
        }
        text
    });
    let plan = cloudlet_cluster::expand(&lab);
    let secret = find(&plan, "secret", "blog.blog-backup").body.value();
    let cron = find(&plan, "cronjob", "blog.blog-backup").body.value();
    let template = &cron["spec"]["jobTemplate"]["spec"]["template"];
    let c = &template["spec"]["containers"][0];
    let script = c["command"][2].as_str().unwrap();
    assert!(
        script
            .contains("restic -o 'sftp.command=ssh -o BatchMode=yes -o StrictHostKeyChecking=yes"),
        "{script}"
    );
    assert!(
        !c["env"].to_string().contains("AWS_"),
        "no store keys for SFTP: {}",
        c["env"]
    );
    let private = std::fs::read_to_string(&peer.identity).unwrap();
    let text =
        serde_json::to_string(&plan.iter().map(|r| r.body.value()).collect::<Vec<_>>()).unwrap();
    assert!(
        !text.contains(private.lines().nth(1).unwrap()) && !text.contains(KEY),
        "a secret is in the plan"
    );

    // Backed up by the CronJob's container, through the server's SSH with the lab's key.
    let content = work.path().join("nas/blog/content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("index.html"), b"<h1>home</h1>\n").unwrap();
    std::fs::write(content.join("big"), vec![b'z'; 400_000]).unwrap();
    let before = cloudlet_testkit::files_of(&content);
    let secrets = BTreeMap::from([from_refs(&secret)]);
    let claims = BTreeMap::from([("blog-content".to_string(), content.clone())]);
    let o = run_pod(
        &work.path().join("root-backup"),
        template,
        &secrets,
        &claims,
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "the backup container failed:\n{said}");
    assert!(!said.contains(KEY), "{said}");
    assert!(peer.connections.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let loc = Location::Sftp(SftpLocation {
        host: "127.0.0.1".into(),
        port: peer.addr.port(),
        user: peer.user.clone(),
        path: repo.display().to_string(),
        identity: Some(peer.identity.clone()),
        known_hosts: Some(peer.known_hosts.clone()),
    });
    // Read by cloudlet over SFTP.
    let snap = app_snapshot(loc, "blog").await;

    // Lost, then brought back by the restore Job's container from the same server.
    std::fs::remove_dir_all(&content).unwrap();
    std::fs::create_dir_all(&content).unwrap();
    let app = &lab.cluster.as_ref().unwrap().apps["blog"];
    let job =
        cloudlet_cluster::volume_backup::restore_job(&lab, "blog", app, "blog", &snap.id).unwrap();
    let o = run_pod(
        &work.path().join("root-restore"),
        &job["spec"]["template"],
        &secrets,
        &claims,
    );
    assert!(
        o.status.success(),
        "the restore container failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(cloudlet_testkit::files_of(&content), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_dump_is_taken_into_the_same_snapshot_and_loads_into_a_new_database() {
    let work = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(work.path(), "lab-volumes");
    let password = "db-secret-pw";
    let pg = cloudlet_testkit::postgres::Postgres::start(work.path(), password);
    pg.psql(password, "postgres", "CREATE DATABASE wiki");
    pg.psql(
        password,
        "wiki",
        "CREATE TABLE pages (id serial PRIMARY KEY, title text NOT NULL); INSERT INTO pages (title) SELECT 'page ' || g FROM generate_series(1, 250) g",
    );
    let pwfile = work.path().join("db-password");
    std::fs::write(&pwfile, password).unwrap();

    let app = format!(
        "    wikidb:\n      image: docker.io/library/postgres:16\n      ports: [{{port: {}}}]\n      secrets: {{POSTGRES_PASSWORD: {{file: {}}}}}\n      volumes: [{{name: data, export: blog, mount: /var/lib/postgresql/data, size: 1GiB, database: true}}]\n      dump: {{kind: postgres, database: wiki, password: POSTGRES_PASSWORD}}\n",
        pg.port,
        pwfile.display()
    );
    let lab = lab_with(&peer, work.path(), Some("registry.lan:5000"), app);
    let diags = cloudlet_core::validate::validate(&lab);
    assert!(
        !diags.iter().any(|d| d.code == "backup-volumes-database"),
        "a database volume with a dump is no warning: {diags:?}"
    );
    let plan = cloudlet_cluster::expand(&lab);
    let cron = find(&plan, "cronjob", "wikidb.wikidb-backup").body.value();
    let template = &cron["spec"]["jobTemplate"]["spec"]["template"];
    let dump = &template["spec"]["initContainers"][0];
    // The app's own image (through the lab's registry), pg_dump through its Service, the
    // password from the app's Secret.
    assert_eq!(dump["image"], "registry.lan:5000/library/postgres:16");
    assert_eq!(dump["command"][0], "pg_dump");
    let env: BTreeMap<String, Value> = dump["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    assert_eq!(env["PGHOST"]["value"], "wikidb");
    assert_eq!(env["PGDATABASE"]["value"], "wiki");
    assert_eq!(
        env["PGPASSWORD"]["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "wikidb-secrets", "key": "POSTGRES_PASSWORD"})
    );
    // Other apps' backups have no dump.
    let blog = find(&plan, "cronjob", "blog.blog-backup").body.value();
    assert!(
        blog["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            .get("initContainers")
            .is_none()
    );

    // The backup pod as a kubelet runs it: the dump from the image's tools (the server's
    // own bin directory first on PATH, as the postgres image has it), the Service's name in
    // /etc/hosts, then stock restic over the volume and the dump.
    let data = work.path().join("nas/wikidb/data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("PG_VERSION"), "16\n").unwrap();
    // Its Secrets as the apply writes them, its claim, and the image's PATH and Service.
    let kubelet = cloudlet_testkit::container::Kubelet {
        secrets: BTreeMap::from([
            from_refs(&find(&plan, "secret", "wikidb.wikidb-backup").body.value()),
            from_refs(&find(&plan, "secret", "wikidb.wikidb-secrets").body.value()),
        ]),
        claims: BTreeMap::from([("wikidb-data".to_string(), data.clone())]),
        path: vec![pg.bin.display().to_string()],
        hosts: vec![("wikidb".into(), "127.0.0.1".into())],
        ..Default::default()
    };
    let (ok, out) = run(work.path().join("root"), template, &kubelet).await;
    assert!(ok, "{out}");
    assert!(!out.contains(password), "{out}");

    // Written after the backup: not in it.
    pg.psql(
        password,
        "wiki",
        "INSERT INTO pages (title) VALUES ('after')",
    );

    // One snapshot holds the volume and the dump; the dump loads into a new database and
    // answers with what was there at backup time.
    let loc = location(&peer);
    let snap = app_snapshot(loc.clone(), "wikidb").await;
    let dest = work.path().join("restored");
    let d = dest.clone();
    let id = snap.id.clone();
    cloudlet_backup::blocking(move || Repo::open(&loc, KEY)?.restore(&id, &d))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dest.join("data/PG_VERSION")).unwrap(),
        b"16\n"
    );
    let sql = dest.join("_dump/postgres-wiki.sql");
    let text = std::fs::read_to_string(&sql).unwrap();
    assert!(text.contains("CREATE TABLE public.pages"), "{text}");
    assert!(!text.contains("OWNER TO"), "dumped without owners");
    pg.psql(password, "postgres", "CREATE DATABASE wiki_restored");
    pg.load(password, "wiki_restored", &sql);
    assert_eq!(
        pg.psql(password, "wiki_restored", "SELECT count(*) FROM pages"),
        "250"
    );

    // The disaster: the database is gone, and the server's volume holds a stray file. The
    // restore Job leaves the server's volume empty (files copied from a running server may
    // not load: the server starts anew), then the load Job brings the dump back into it.
    pg.psql(password, "postgres", "DROP DATABASE wiki");
    std::fs::write(data.join("stray"), b"x").unwrap();
    let app = &lab.cluster.as_ref().unwrap().apps["wikidb"];
    let restore =
        cloudlet_cluster::volume_backup::restore_job(&lab, "wikidb", app, "wikidb", &snap.id)
            .unwrap();
    let script = restore["spec"]["template"]["spec"]["containers"][0]["command"][2]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        script.contains("--exclude '/_dump' --exclude '/data'"),
        "{script}"
    );
    for (i, job) in [
        restore,
        cloudlet_cluster::volume_backup::load_job(&lab, "wikidb", app, "wikidb", &snap.id)
            .expect("a postgres dump is loaded"),
    ]
    .into_iter()
    .enumerate()
    {
        let root = work.path().join(format!("restore-root{i}"));
        let (ok, out) = run(root, &job["spec"]["template"], &kubelet).await;
        assert!(ok, "job {i}: {out}");
        assert!(!out.contains(password), "{out}");
        if i == 0 {
            assert_eq!(
                std::fs::read_dir(&data).unwrap().count(),
                0,
                "the server's volume is left empty"
            );
        }
    }
    assert_eq!(
        pg.psql(password, "wiki", "SELECT count(*) FROM pages"),
        "250"
    );
    assert_eq!(
        pg.psql(password, "wiki", "SELECT title FROM pages WHERE id = 250"),
        "page 250"
    );

    // Level 4: the dump loaded into a scratch server inside the pod (the image's `postgres`
    // user runs it) and asked the lab's query; one that answers no row fails.
    for (query, answers) in [
        ("SELECT count(*) FROM pages", Some("answered: 250")),
        ("SELECT id FROM pages WHERE title = 'after'", None),
    ] {
        let mut def = app.clone();
        def.dump.as_mut().unwrap().verify = Some(query.into());
        let job =
            cloudlet_cluster::volume_backup::verify_job(&lab, "wikidb", &def, "wikidb", &snap.id)
                .expect("a query to ask");
        let root = work.path().join(format!("verify-{}", answers.is_some()));
        let (ok, out) = run(root, &job["spec"]["template"], &kubelet).await;
        assert!(!out.contains(password), "{out}");
        match answers {
            Some(line) => assert!(ok && out.contains(line), "{out}"),
            None => assert!(!ok && out.contains("the query answered no row"), "{out}"),
        }
    }
}

/// The `shop` app of the MariaDB tests: a real MariaDB server whose database `shop` has 300
/// orders (and what `extra` makes), the app with `dump` (YAML flow text) in a lab that backs up
/// volumes, its plan, and the kubelet that runs its pods (its Secrets, its claim, its
/// Service's name).
struct Shop {
    db: cloudlet_testkit::mariadb::Mariadb,
    lab: cloudlet_core::Lab,
    plan: Vec<cloudlet_core::Resource>,
    kubelet: cloudlet_testkit::container::Kubelet,
    data: std::path::PathBuf,
}

impl Shop {
    fn start(work: &Path, peer: &S3Peer, password: &str, extra: &str, dump: &str) -> Shop {
        let db = cloudlet_testkit::mariadb::Mariadb::start(work, password);
        db.sql(password, None, "CREATE DATABASE shop");
        db.sql(
            password,
            Some("shop"),
            &format!("CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, item VARCHAR(40) NOT NULL, note BLOB) ENGINE=InnoDB; INSERT INTO orders (item, note) SELECT CONCAT('item ', seq), UNHEX('00FF10') FROM seq_1_to_300{extra}"),
        );
        let pwfile = work.join("maria-password");
        std::fs::write(&pwfile, password).unwrap();
        let app = format!(
            "    shop:\n      image: docker.io/library/mariadb:11\n      ports: [{{port: {port}}}]\n      secrets: {{MARIADB_ROOT_PASSWORD: {{file: {}}}}}\n      volumes: [{{name: data, export: blog, mount: /var/lib/mysql, size: 1GiB, database: true}}]\n      dump: {}\n",
            pwfile.display(),
            dump.replace("{port}", &db.port.to_string()),
            port = db.port,
        );
        let lab = lab_with(peer, work, None, app);
        let diags = cloudlet_core::validate::validate(&lab);
        assert!(
            !diags
                .iter()
                .any(|d| d.severity == cloudlet_core::Severity::Error
                    || d.code == "backup-volumes-database"),
            "{diags:?}"
        );
        let plan = cloudlet_cluster::expand(&lab);
        let data = work.join("nas/shop/data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("ibdata1"), b"copied while running").unwrap();
        let kubelet = cloudlet_testkit::container::Kubelet {
            secrets: BTreeMap::from([
                from_refs(&find(&plan, "secret", "shop.shop-backup").body.value()),
                from_refs(&find(&plan, "secret", "shop.shop-secrets").body.value()),
            ]),
            claims: BTreeMap::from([("shop-data".to_string(), data.clone())]),
            hosts: vec![("shop".into(), "127.0.0.1".into())],
            ..Default::default()
        };
        Shop {
            db,
            lab,
            plan,
            kubelet,
            data,
        }
    }

    /// Runs the backup pod as a kubelet runs it (under `work/root`; the password never
    /// printed), writes an order after it, and restores the app's snapshot by cloudlet into
    /// `work/restored`: the snapshot and that directory.
    async fn back_up(
        &self,
        work: &Path,
        peer: &S3Peer,
        password: &str,
    ) -> (cloudlet_backup::repo::Snapshot, std::path::PathBuf) {
        let (ok, out) = run(work.join("root"), &self.backup_pod(), &self.kubelet).await;
        assert!(ok, "{out}");
        assert!(!out.contains(password), "{out}");
        // Written after the backup: not in it.
        self.db.sql(
            password,
            Some("shop"),
            "INSERT INTO orders (item) VALUES ('after')",
        );
        let loc = location(peer);
        let snap = app_snapshot(loc.clone(), "shop").await;
        let dest = work.join("restored");
        let (d, id) = (dest.clone(), snap.id.clone());
        cloudlet_backup::blocking(move || Repo::open(&loc, KEY)?.restore(&id, &d))
            .await
            .unwrap();
        (snap, dest)
    }

    /// The backup CronJob's pod template.
    fn backup_pod(&self) -> Value {
        find(&self.plan, "cronjob", "shop.shop-backup").body.value()["spec"]["jobTemplate"]["spec"]
            ["template"]
            .clone()
    }
}

/// MySQL-family databases through the `command` dump: the lab's `mariadb-dump` (MariaDB's
/// mysqldump) from the app's image with the app's Secret, against a real MariaDB server, into
/// the same snapshot as the volume; the dump loads into a new database with what was there at
/// backup time, and the password is never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_dump_by_command_is_taken_into_the_snapshot_and_loads_into_a_new_database() {
    let work = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(work.path(), "lab-volumes");
    let password = "maria-secret-pw";
    let shop = Shop::start(
        work.path(),
        &peer,
        password,
        "",
        "{kind: command, command: [sh, -c, 'MYSQL_PWD=\"$MARIADB_ROOT_PASSWORD\" mariadb-dump --no-defaults --single-transaction -h shop -P {port} -u root shop > \"$DUMP_DIR/shop.sql\"']}",
    );
    let db = &shop.db;
    let template = shop.backup_pod();
    assert_eq!(
        template["spec"]["initContainers"][0]["image"],
        "docker.io/library/mariadb:11"
    );

    // The backup pod as a kubelet runs it: the dump with the image's tools (Debian's
    // mariadb-dump here), the Service's name in /etc/hosts, then stock restic.
    let (_, dest) = shop.back_up(work.path(), &peer, password).await;
    assert_eq!(
        std::fs::read(dest.join("data/ibdata1")).unwrap(),
        b"copied while running"
    );
    let sql = dest.join("_dump/shop.sql");
    // Binary columns as written (this command has no --hex-blob).
    let text = String::from_utf8_lossy(&std::fs::read(&sql).unwrap()).into_owned();
    assert!(text.contains("CREATE TABLE `orders`"), "{text}");
    assert!(!text.contains(password));
    db.sql(password, None, "CREATE DATABASE shop_restored");
    db.load(password, "shop_restored", &sql);
    assert_eq!(
        db.sql(
            password,
            Some("shop_restored"),
            "SELECT count(*) FROM orders"
        ),
        "300"
    );
    assert_eq!(
        db.sql(
            password,
            Some("shop_restored"),
            "SELECT item FROM orders WHERE id = 300"
        ),
        "item 300"
    );
}

/// `pod` (a pod template) run as a kubelet runs it, under the root `root`: whether it
/// succeeded, and what it printed.
async fn run(
    root: std::path::PathBuf,
    pod: &Value,
    kubelet: &cloudlet_testkit::container::Kubelet,
) -> (bool, String) {
    let (p, k) = (pod.clone(), kubelet.clone());
    let o = tokio::task::spawn_blocking(move || {
        cloudlet_testkit::container::run_pod_with(&root, &p, &k)
    })
    .await
    .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), out)
}

/// `kind: mysql` against a real MariaDB server: the image's `mariadb-dump` through the app's
/// Service with the app's password into the same snapshot as the volume; on restore the
/// server's volume comes back empty and the load Job makes the database again from the dump;
/// level 4 loads the dump into a scratch server inside the pod and asks the lab's query (a
/// query that answers no row fails it). The password is never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_dump_is_loaded_back_on_restore_and_answers_in_a_scratch_server() {
    let work = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(work.path(), "lab-volumes");
    let password = "maria-kind-pw";
    let shop = Shop::start(
        work.path(),
        &peer,
        password,
        "; CREATE PROCEDURE total() SELECT count(*) FROM orders",
        "{kind: mysql, password: MARIADB_ROOT_PASSWORD, verify: 'SELECT count(*) FROM orders'}",
    );
    let (db, lab, kubelet, data) = (&shop.db, &shop.lab, &shop.kubelet, &shop.data);
    let template = shop.backup_pod();
    let dump = &template["spec"]["initContainers"][0];
    assert_eq!(dump["image"], "docker.io/library/mariadb:11");
    let env: BTreeMap<String, Value> = dump["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    assert_eq!(env["DB_HOST"]["value"], "shop");
    assert_eq!(env["DB_NAME"]["value"], "shop", "the app's name by default");
    assert_eq!(env["DB_USER"]["value"], "root");
    assert_eq!(
        env["MYSQL_PWD"]["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "shop-secrets", "key": "MARIADB_ROOT_PASSWORD"})
    );

    let (snap, dest) = shop.back_up(work.path(), &peer, password).await;
    let text = std::fs::read_to_string(dest.join("_dump/mysql-shop.sql")).unwrap();
    assert!(text.contains("CREATE TABLE `orders`"), "{text}");
    assert!(text.contains("PROCEDURE `total`"), "routines are dumped");
    assert!(!text.contains("CREATE DATABASE"), "loads into any database");
    assert!(!text.contains(password));

    // The disaster: the database is gone and the server's volume holds a stray file. The
    // restore Job leaves the server's volume empty, the load Job makes the database again.
    db.sql(password, None, "DROP DATABASE shop");
    std::fs::write(data.join("stray"), b"x").unwrap();
    let def = &lab.cluster.as_ref().unwrap().apps["shop"];
    let restore =
        cloudlet_cluster::volume_backup::restore_job(lab, "shop", def, "shop", &snap.id).unwrap();
    let load = cloudlet_cluster::volume_backup::load_job(lab, "shop", def, "shop", &snap.id)
        .expect("a mysql dump is loaded");
    for (i, job) in [restore, load].into_iter().enumerate() {
        let root = work.path().join(format!("restore-root{i}"));
        let (ok, out) = run(root, &job["spec"]["template"], kubelet).await;
        assert!(ok, "job {i}: {out}");
        assert!(!out.contains(password), "{out}");
        if i == 0 {
            assert_eq!(std::fs::read_dir(data).unwrap().count(), 0);
        }
    }
    assert_eq!(
        db.sql(password, Some("shop"), "SELECT count(*) FROM orders"),
        "300",
        "what was there at backup time, not what came after"
    );
    assert_eq!(
        db.sql(
            password,
            Some("shop"),
            "SELECT HEX(note) FROM orders WHERE id = 300"
        ),
        "00FF10"
    );
    assert_eq!(db.sql(password, Some("shop"), "CALL total()"), "300");

    // Level 4: a scratch server in the pod, the server the lab runs untouched.
    let verify = cloudlet_cluster::volume_backup::verify_job(lab, "shop", def, "shop", &snap.id)
        .expect("a query to ask");
    let (ok, out) = run(
        work.path().join("verify-root"),
        &verify["spec"]["template"],
        kubelet,
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("answered: 300"), "{out}");
    assert!(!out.contains(password), "{out}");
    let mut none = def.clone();
    none.dump.as_mut().unwrap().verify = Some("SELECT id FROM orders WHERE item = 'after'".into());
    let verify =
        cloudlet_cluster::volume_backup::verify_job(lab, "shop", &none, "shop", &snap.id).unwrap();
    let (ok, out) = run(
        work.path().join("verify-root-none"),
        &verify["spec"]["template"],
        kubelet,
    )
    .await;
    assert!(!ok, "a query that answers no row fails level 4: {out}");
    assert!(out.contains("the query answered no row"), "{out}");
}
