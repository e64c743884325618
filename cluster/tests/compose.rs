//! Compose import: five real-world-shaped compose projects become app blocks that validate
//! and that a real kube-apiserver accepts.
#![allow(clippy::disallowed_methods)]

use cloudlet_testkit::apiserver as support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cloudlet_cluster::compose::{self, ComposeOptions, Imported};
use cloudlet_cluster::{KubeOptions, KubeProvider, metallb};
use cloudlet_core::engine::{ApplyOptions, Engine};
use cloudlet_core::model::{Expose, Protocol, SecretRef};
use cloudlet_core::{Domain, Lab, Providers, StateStore};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};

const FILES: [&str; 5] = [
    "nextcloud.yml",
    "wg-easy.yml",
    "mailserver.yml",
    "gitea.yml",
    "monitoring.yml",
];

fn import(name: &str) -> Imported {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose");
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    let opts = ComposeOptions {
        project: Some(name.trim_end_matches(".yml").into()),
        ..ComposeOptions::default()
    };
    compose::import(&dir.join(name), &text, &opts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A compose text of project `p`, imported.
fn import_text(text: &str) -> Imported {
    let opts = ComposeOptions {
        project: Some("p".into()),
        ..ComposeOptions::default()
    };
    compose::import(Path::new("compose.yml"), text, &opts).unwrap()
}

fn notes(i: &Imported) -> Vec<String> {
    i.notes.iter().map(|d| d.message.clone()).collect()
}

fn has_note(i: &Imported, needle: &str) -> bool {
    i.notes.iter().any(|d| d.message.contains(needle))
}

/// The seed lab without its apps, with an `apps` export, plus the imported apps.
fn lab_with(i: &Imported) -> Lab {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    let mut text: Vec<(std::path::PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    text.sort();
    let mut lab = cloudlet_core::load::load_texts(text, dir).unwrap().lab;
    let storage = lab.storage.as_mut().unwrap();
    let mut export = storage.exports["mail"].clone();
    export.path = "/mnt/main/apps".into();
    storage.exports.insert("apps".into(), export);
    // The seed's forwards name the seed's apps, which make way for the imported ones.
    lab.router.as_mut().unwrap().forwards.clear();
    let c = lab.cluster.as_mut().unwrap();
    c.apps = i.apps.clone();
    lab
}

#[test]
fn every_project_validates_and_reports_what_it_drops() {
    for f in FILES {
        let i = import(f);
        let lab = lab_with(&i);
        let errors: Vec<String> = cloudlet_core::validate::validate(&lab)
            .into_iter()
            .filter(|d| d.is_error())
            .map(|d| format!("{}: {}", d.code, d.message))
            .collect();
        assert!(errors.is_empty(), "{f}: {errors:#?}");
        // Every note points into the compose file.
        for d in &i.notes {
            let loc = d.location.as_ref().expect("a position");
            assert!(loc.file.ends_with(f), "{}", loc.file.display());
            assert!(loc.line > 0);
        }
        // And the YAML written for the lab reads back as the same apps.
        let yaml = compose::to_yaml(&i);
        let back = cloudlet_core::load::load_texts(
            vec![(
                "apps.yaml".into(),
                format!("name: t\nsite: {{domain: t.lan, timezone: UTC}}\n{yaml}  control_plane: [a]\n  workers: []\n"),
            )],
            ".".into(),
        )
        .unwrap_or_else(|e| panic!("{f}: the written YAML does not load: {e:?}\n{yaml}"));
        assert_eq!(back.lab.cluster.unwrap().apps, i.apps, "{f}:\n{yaml}");
    }
}

#[test]
fn nextcloud_shares_one_directory_between_app_and_cron_and_reads_secrets_from_env() {
    let i = import("nextcloud.yml");
    let app = &i.apps["app"];
    let cron = &i.apps["cron"];
    let dir = |a: &cloudlet_core::model::App, mount: &str| {
        a.volumes
            .iter()
            .find(|v| v.mount == mount)
            .and_then(|v| v.sub_path.clone())
            .unwrap()
    };
    assert_eq!(dir(app, "/var/www/html"), "nextcloud/nextcloud");
    assert_eq!(dir(cron, "/var/www/html"), dir(app, "/var/www/html"));
    assert_eq!(dir(app, "/var/www/html/config"), "nextcloud/config");
    assert_eq!(cron.command, vec!["/cron.sh"]);
    assert_eq!(
        i.apps["db"].args,
        vec![
            "--transaction-isolation=READ-COMMITTED",
            "--log-bin=binlog",
            "--binlog-format=ROW"
        ]
    );
    // ${VAR} values are secret references, never copied text.
    assert_eq!(
        app.secrets["MYSQL_PASSWORD"],
        SecretRef::Env("MYSQL_PASSWORD".into())
    );
    assert_eq!(app.env["MYSQL_HOST"], "db");
    assert!(!app.env.contains_key("MYSQL_PASSWORD"));
    // The HTTP port is behind the ingress under the kompose host; redis stays inside.
    assert_eq!(app.ingress.len(), 1);
    assert_eq!(app.ingress[0].host, "cloud.example.com");
    assert_eq!(app.ingress[0].port, Some(80));
    assert_eq!(i.apps["redis"].ports[0].expose, Expose::Cluster);
    assert_eq!(app.depends_on, vec!["db", "redis"]);
    let h = i.apps["db"].health.as_ref().unwrap();
    assert_eq!(h.command[0], "healthcheck.sh");
    assert_eq!(
        (h.interval.0, h.timeout.0, h.retries, h.start_period.0),
        (10, 5, 5, 60)
    );
    assert_eq!(i.apps["db"].volumes[0].size.to_string(), "20GiB");
    for a in i.apps.values() {
        assert_eq!(a.namespace.as_deref(), Some("nextcloud"));
    }
    assert!(
        has_note(&i, "`restart` of service `db`"),
        "{:#?}",
        notes(&i)
    );
    assert!(has_note(&i, "labels `traefik.enable`"), "{:#?}", notes(&i));
}

#[test]
fn wireguard_udp_and_web_ui_split_by_protocol() {
    let i = import("wg-easy.yml");
    let wg = &i.apps["wg-easy"];
    let udp = wg.ports.iter().find(|p| p.port == 51820).unwrap();
    assert_eq!(
        (udp.protocol, &udp.expose),
        (Protocol::Udp, &Expose::Shared)
    );
    let ui = wg.ports.iter().find(|p| p.port == 51821).unwrap();
    assert_eq!((ui.protocol, &ui.expose), (Protocol::Tcp, &Expose::Cluster));
    assert_eq!(wg.ingress[0].host, "wg-easy.example.com");
    for k in ["container_name", "cap_add", "sysctls", "restart"] {
        assert!(has_note(&i, &format!("`{k}`")), "{k}: {:#?}", notes(&i));
    }
}

#[test]
fn mailserver_ports_go_on_the_shared_vip_and_host_paths_are_refused() {
    let i = import("mailserver.yml");
    let m = &i.apps["mailserver"];
    let shared: Vec<u16> = m
        .ports
        .iter()
        .filter(|p| p.expose == Expose::Shared)
        .map(|p| p.port)
        .collect();
    assert_eq!(shared, vec![25, 143, 465, 587, 993]);
    assert!(m.ingress.is_empty());
    assert_eq!(m.volumes.len(), 4, "{:#?}", m.volumes);
    assert!(has_note(&i, "the host path /etc/localtime is not mounted"));
    for k in ["hostname", "env_file", "stop_grace_period"] {
        assert!(has_note(&i, &format!("`{k}`")), "{k}: {:#?}", notes(&i));
    }
    let h = m.health.as_ref().unwrap();
    assert_eq!(h.command[..2], ["sh".to_string(), "-c".to_string()]);
}

#[test]
fn gitea_long_ports_labels_list_and_compose_secrets() {
    let i = import("gitea.yml");
    let s = &i.apps["server"];
    assert_eq!(s.ingress[0].host, "git.example.com");
    assert_eq!(s.ingress[0].port, Some(3000));
    let ssh = s.ports.iter().find(|p| p.port == 22).unwrap();
    assert_eq!(ssh.expose, Expose::Shared);
    assert!(has_note(&i, "published port 2222 becomes 22"));
    assert_eq!(s.volumes[0].size.to_string(), "5GiB");
    assert!(
        matches!(&s.secrets["ADMIN_TOKEN"], SecretRef::File(p) if p.ends_with("compose/secrets/admin_token.txt")),
        "{:?}",
        s.secrets
    );
    assert_eq!(
        s.secrets["GITEA__database__PASSWD"],
        SecretRef::Env("GITEA__database__PASSWD".into())
    );
    let db = &i.apps["db"];
    // POSTGRES_PASSWORD_FILE names the secret's path: the secret is mounted there.
    assert!(
        matches!(&db.secret_files["/run/secrets/db_password"], SecretRef::File(p) if p.ends_with("compose/secrets/db_password.txt")),
        "{:?}",
        db.secret_files
    );
    assert!(!db.secrets.contains_key("DB_PASSWORD"), "{:?}", db.secrets);
    let r = db.resources.as_ref().unwrap();
    assert_eq!(
        (r.cpu.as_deref(), r.memory.as_deref()),
        (Some("250m"), Some("256Mi"))
    );
    assert!(has_note(&i, "deploy.resources.limits"));
    assert!(has_note(&i, "`driver_opts` of volume `db`"));
    assert!(has_note(&i, "top-level `networks`"));
    assert!(
        has_note(&i, "`POSTGRES_PASSWORD` interpolates"),
        "{:#?}",
        notes(&i)
    );
}

#[test]
fn monitoring_host_network_exporter_and_docker_socket_are_reported() {
    let i = import("monitoring.yml");
    assert!(has_note(&i, "/var/run/docker.sock is not mounted"));
    let prom = &i.apps["prometheus"];
    assert!(
        prom.files["/etc/prometheus/prometheus.yml"].ends_with("compose/prometheus.yml"),
        "a single config file is a ConfigMap, not a NAS directory: {:?}",
        prom.files
    );
    assert!(
        !prom
            .volumes
            .iter()
            .any(|v| v.mount == "/etc/prometheus/prometheus.yml")
    );
    assert!(has_note(&i, "the host path / is not mounted"));
    assert!(has_note(&i, "`network_mode`"));
    assert!(has_note(&i, "`pid`"));
    assert!(has_note(&i, "`user`"));
    assert_eq!(
        i.apps["grafana"].workload,
        cloudlet_core::model::Workload::Statefulset,
        "kompose.controller.type: statefulset is honoured"
    );
    assert_eq!(i.apps["grafana"].ingress[0].host, "grafana.example.com");
    assert_eq!(
        i.apps["prometheus"].ingress[0].host,
        "prometheus.example.com"
    );
    let syslog: BTreeMap<(u16, Protocol), Expose> = i.apps["syslog"]
        .ports
        .iter()
        .map(|p| ((p.port, p.protocol), p.expose.clone()))
        .collect();
    assert_eq!(syslog[&(514, Protocol::Udp)], Expose::Shared);
    assert_eq!(syslog[&(601, Protocol::Tcp)], Expose::Shared);
}

#[test]
fn broken_compose_files_get_positions() {
    let bad = "services:\n  web:\n    ports: [\"http\"]\n    depends_on: [nope]\n";
    let e = compose::import(Path::new("bad.yml"), bad, &ComposeOptions::default()).unwrap_err();
    let msgs: Vec<String> = e
        .diagnostics
        .iter()
        .map(|d| format!("{}: {}", d.location.as_ref().unwrap(), d.message))
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("bad.yml:3:") && m.contains("not a port")),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("`nope` is not a service")),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("has no `image:`")),
        "{msgs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_projects_are_accepted_by_a_real_api_server() {
    let server = support::ApiServer::start();
    let client = server.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in metallb::crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("test-setup"),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    // File references are absolute here (the fixtures' directory).
    let secrets = tempfile::tempdir().unwrap();
    for f in FILES {
        let mut i = import(f);
        // The user's environment provides the referenced variables; here one every process has.
        for app in i.apps.values_mut() {
            for r in app.secrets.values_mut() {
                if let SecretRef::Env(v) = r {
                    *v = "PATH".into();
                }
            }
        }
        let lab = lab_with(&i);
        let state = tempfile::tempdir().unwrap();
        let e = Engine::new(
            lab.name.clone(),
            Providers::new().with(
                Domain::Cluster,
                Arc::new(KubeProvider::new(
                    client.clone(),
                    &lab.name,
                    KubeOptions {
                        secrets_dir: secrets.path().to_path_buf(),
                        ..KubeOptions::default()
                    },
                )),
            ),
            StateStore::open(state.path()).unwrap(),
        );
        // One project after the other in the same lab: each apply also prunes the last one.
        let desired: Vec<_> = cloudlet_cluster::expand(&lab)
            .into_iter()
            .filter(|r| {
                !r.id.kind.contains("ipaddresspool")
                    && !r.id.kind.contains("l2advertisement")
                    && !r.id.name.starts_with("metallb-system")
            })
            .collect();
        let plan = e.plan(desired.clone()).await.unwrap();
        let report = e.apply(&plan, ApplyOptions::default()).await.unwrap();
        assert!(report.failed.is_empty(), "{f}: {:#?}", report.failed);
        assert!(report.done.create >= i.apps.len() * 2, "{f}: {report:?}");
        if f == "gitea.yml" {
            // The secret file is mounted from the app's Secret, which holds the file's text.
            let d: k8s_openapi::api::apps::v1::Deployment =
                Api::namespaced(client.clone(), "gitea")
                    .get("db")
                    .await
                    .unwrap();
            let pod = d.spec.template.spec.unwrap();
            let vol = pod
                .volumes
                .unwrap()
                .into_iter()
                .find(|v| v.name == "cloudlet-secret-files")
                .unwrap();
            assert_eq!(
                vol.secret.unwrap().secret_name.as_deref(),
                Some("db-secrets")
            );
            let mount = pod.containers[0]
                .volume_mounts
                .clone()
                .unwrap()
                .into_iter()
                .find(|m| m.mount_path == "/run/secrets/db_password")
                .unwrap();
            assert_eq!(mount.sub_path.as_deref(), Some("file-0"));
            let sec: k8s_openapi::api::core::v1::Secret = Api::namespaced(client.clone(), "gitea")
                .get("db-secrets")
                .await
                .unwrap();
            assert_eq!(
                sec.data.unwrap()["file-0"].0,
                b"s3cret-db\n",
                "the file as it is, as compose mounts it"
            );
        }
        let again = e.plan(desired).await.unwrap();
        assert!(
            !again.summary.has_changes(),
            "{f}: {:?}",
            again
                .steps
                .iter()
                .map(|s| (&s.id, &s.changes))
                .collect::<Vec<_>>()
        );
    }
    // The last project applied is monitoring: its config file is a ConfigMap with the file's text.
    let cm: k8s_openapi::api::core::v1::ConfigMap = Api::namespaced(client.clone(), "monitoring")
        .get("prometheus-files")
        .await
        .unwrap();
    assert!(cm.data.unwrap()["f0"].contains("scrape_interval: 30s"));
}

#[test]
fn imported_values_keep_their_type_when_read_back() {
    let text = "services:\n  app:\n    image: busybox:1\n    environment:\n      HEX: \"0x10\"\n      T: \"True\"\n      N: \"Null\"\n      NO: \"NO\"\n      OFF: \"Off\"\n      DATE: \"2024-01-01\"\n      OCT: \"017\"\n";
    let imported = import_text(text);
    let yaml = compose::to_yaml(&imported);
    let lab = "name: t\nsite: {domain: t.lan}\ncluster: {control_plane: []}\n".to_string();
    let loaded = cloudlet_core::load::load_texts(
        vec![("lab.yaml".into(), lab), ("apps.yaml".into(), yaml.clone())],
        ".".into(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let env = &loaded.lab.cluster.unwrap().apps["app"].env;
    for (k, v) in [
        ("HEX", "0x10"),
        ("T", "True"),
        ("N", "Null"),
        ("NO", "NO"),
        ("OFF", "Off"),
        ("DATE", "2024-01-01"),
        ("OCT", "017"),
    ] {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{yaml}");
    }
}

#[test]
fn services_reached_by_name_get_a_cluster_port_or_a_warning() {
    let text = "services:\n  app:\n    image: app:1\n    ports: [\"8080:8080\"]\n    depends_on: [database, cache, worker]\n    environment:\n      DATABASE_URL: postgres://u@database:5432/app\n      REDIS_HOST: cache\n  database:\n    image: postgres:16\n  cache:\n    image: redis:7\n  worker:\n    image: worker:1\n    expose: [\"9000\"]\n  lonely:\n    image: busybox:1\n";
    let i = import_text(text);
    let db = &i.apps["database"];
    assert_eq!(db.ports.len(), 1, "{:?}", db.ports);
    assert_eq!(
        (db.ports[0].port, db.ports[0].expose.clone()),
        (5432, Expose::Cluster)
    );
    assert!(
        has_note(&i, "`database` exposes no port; 5432 (how `app` reach it)"),
        "{:?}",
        notes(&i)
    );
    // Named without a port: a warning that says who cannot reach it.
    assert!(i.apps["cache"].ports.is_empty());
    assert!(
        has_note(
            &i,
            "`cache` publishes and exposes no port, so `app` cannot reach it by name"
        ),
        "{:?}",
        notes(&i)
    );
    // `expose:` already makes a port; nobody needs `lonely`.
    assert_eq!(i.apps["worker"].ports[0].port, 9000);
    assert!(
        !notes(&i)
            .iter()
            .any(|n| n.contains("`lonely`") || n.contains("`worker` ")),
        "{:?}",
        notes(&i)
    );
}

#[test]
fn the_project_is_named_after_its_directory_as_compose_does_and_collisions_are_reported() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("My_App.v2");
    std::fs::create_dir(&dir).unwrap();
    let a = "services:\n  web:\n    image: nginx:1\n    volumes: [\"./config:/etc/web\"]\n";
    std::fs::write(dir.join("a.yml"), a).unwrap();
    std::fs::write(
        dir.join("b.yml"),
        "services:\n  api:\n    image: api:1\n    volumes: [\"./config:/etc/api\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("named.yml"),
        "name: other\nservices:\n  x:\n    image: x:1\n",
    )
    .unwrap();
    let opts = ComposeOptions::default();
    let i = compose::import(&dir.join("a.yml"), a, &opts).unwrap();
    // compose: lower case, only a-z0-9_- kept; then a DNS label for the namespace.
    assert_eq!(i.project, "my-appv2");
    let n: Vec<_> = i
        .notes
        .iter()
        .filter(|d| d.code == "compose-project-name")
        .collect();
    assert_eq!(n.len(), 1, "{:?}", notes(&i));
    assert!(
        n[0].message.contains("`b.yml`") && !n[0].message.contains("named.yml"),
        "{}",
        n[0].message
    );
    // Named projects are not warned about.
    let named = "name: mine\nservices:\n  web:\n    image: nginx:1\n";
    let i = compose::import(&dir.join("a.yml"), named, &opts).unwrap();
    assert_eq!(i.project, "mine");
    assert!(!i.notes.iter().any(|d| d.code == "compose-project-name"));
}

/// `text` (a compose file of project `p`) imported for a lab that backs up volumes.
fn import_dumped(name: &str, text: &str) -> Imported {
    let opts = ComposeOptions {
        project: Some(name.into()),
        dumps: true,
        ..ComposeOptions::default()
    };
    compose::import(Path::new("compose.yml"), text, &opts).unwrap()
}

#[test]
fn database_images_get_their_volume_marked_their_port_and_a_dump_from_their_variables() {
    use cloudlet_core::model::{Dump, DumpKind};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose");
    let text = std::fs::read_to_string(dir.join("nextcloud.yml")).unwrap();
    let i = import_dumped("nextcloud", &text);
    let db = &i.apps["db"];
    assert!(db.volumes[0].database, "{:?}", db.volumes);
    assert!(
        !i.apps["app"].volumes.iter().any(|v| v.database),
        "only the server's files"
    );
    // The app names it `MYSQL_HOST: db` without a port: the image's port.
    assert_eq!(db.ports.len(), 1);
    assert_eq!(
        (db.ports[0].port, &db.ports[0].expose),
        (3306, &Expose::Cluster)
    );
    assert!(
        has_note(
            &i,
            "3306 (the port of mariadb images) becomes a cluster Service port for `app`"
        ),
        "{:?}",
        notes(&i)
    );
    assert_eq!(
        db.dump,
        Some(Dump {
            kind: DumpKind::Mysql,
            database: Some("nextcloud".into()),
            user: None,
            password: Some("MYSQL_ROOT_PASSWORD".into()),
            command: Vec::new(),
            verify: None,
        })
    );
    // The lab it goes into (backing up volumes) takes it without a finding about it, and the
    // YAML written for the lab carries it.
    let mut lab = lab_with(&i);
    lab.backup = Some(
        serde_json::from_value(serde_json::json!({
            "key": {"env": "K"},
            "targets": {"s3t": {"s3": {"endpoint": "https://s3.lan", "bucket": "lab-backups", "access_key": {"env": "A"}, "secret_key": {"env": "S"}}}},
            "volumes": {"target": "s3t", "every": "6h"},
        }))
        .unwrap(),
    );
    let findings: Vec<String> = cloudlet_core::validate::validate(&lab)
        .into_iter()
        .filter(|d| {
            d.code.starts_with("dump") || d.code == "backup-volumes-database" || d.is_error()
        })
        .map(|d| format!("{}: {}", d.code, d.message))
        .collect();
    assert!(findings.is_empty(), "{findings:#?}");
    let yaml = compose::to_yaml(&i);
    assert!(yaml.contains("kind: mysql"), "{yaml}");

    // gitea's postgres: its password is a variable with a default (`${X:-gitea}`), kept as
    // written, which no secret reference carries: said, and no dump.
    let text = std::fs::read_to_string(dir.join("gitea.yml")).unwrap();
    let i = import_dumped("gitea", &text);
    let db = &i.apps["db"];
    assert!(db.volumes[0].database);
    assert!(db.dump.is_none(), "{:?} {:?}", db.dump, notes(&i));
    assert!(
        has_note(
            &i,
            "`db` gets no database dump: `POSTGRES_PASSWORD` is written in the compose file"
        ),
        "{:?}",
        notes(&i)
    );

    // Postgres by its variables; postgres 18's volume at /var/lib/postgresql; a custom
    // PGDATA; no port named by anyone: the image's port for the dump.
    let i = import_dumped(
        "p",
        "services:\n  wiki-db:\n    image: docker.io/library/postgres:18\n    environment:\n      POSTGRES_USER: wiki\n      POSTGRES_PASSWORD: ${WIKI_DB_PASSWORD}\n    volumes: [\"pg:/var/lib/postgresql\", \"logs:/logs\"]\n  other:\n    image: postgres:16\n    environment: {PGDATA: /srv/pg, POSTGRES_HOST_AUTH_METHOD: trust, POSTGRES_DB: other}\n    volumes: [\"./pg:/srv/pg\"]\nvolumes: {pg: {}, logs: {}}\n",
    );
    let db = &i.apps["wiki-db"];
    assert_eq!(
        db.volumes.iter().map(|v| v.database).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(db.ports[0].port, 5432);
    assert_eq!(
        db.dump.as_ref().map(|d| (
            d.kind,
            d.user.as_deref(),
            d.database.as_deref(),
            d.password.as_deref()
        )),
        Some((
            DumpKind::Postgres,
            Some("wiki"),
            Some("wiki"),
            Some("POSTGRES_PASSWORD")
        ))
    );
    let other = &i.apps["other"];
    assert!(other.volumes[0].database);
    assert_eq!(
        other.dump.as_ref().map(|d| (
            d.user.as_deref(),
            d.database.as_deref(),
            d.password.as_deref()
        )),
        Some((None, None, None)),
        "trust needs no password; the database is the app's name"
    );

    // What keeps a dump from being made is said where it is written.
    let i = import_dumped(
        "p",
        "services:\n  pg:\n    image: postgres:16\n    environment: {POSTGRES_PASSWORD: hunter2}\n    volumes: [\"d:/var/lib/postgresql/data\"]\n  maria:\n    image: mariadb:11\n    environment: {MARIADB_ROOT_PASSWORD: \"${ROOT_PW}\"}\n    volumes: [\"m:/var/lib/mysql\"]\n  bad:\n    image: mysql:8\n    environment: {MYSQL_ROOT_PASSWORD: \"${ROOT_PW}\", MYSQL_DATABASE: \"my.db\"}\n    volumes: [\"b:/var/lib/mysql\"]\nvolumes: {d: {}, m: {}, b: {}}\n",
    );
    assert!(
        i.apps
            .values()
            .all(|a| a.dump.is_none() && a.volumes[0].database)
    );
    assert!(
        has_note(
            &i,
            "`pg` gets no database dump: `POSTGRES_PASSWORD` is written in the compose file"
        ),
        "{:?}",
        notes(&i)
    );
    assert!(
        !notes(&i).iter().any(|n| n.contains("hunter2")),
        "{:?}",
        notes(&i)
    );
    assert!(
        has_note(&i, "`maria` gets no database dump: it names no database"),
        "{:?}",
        notes(&i)
    );
    assert!(
        has_note(&i, "`my.db` cannot be its database"),
        "{:?}",
        notes(&i)
    );

    // Without dumps (a lab that backs up no volumes): the volumes are marked, nothing more.
    let i = import_text(
        "services:\n  pg:\n    image: postgres:16\n    environment: {POSTGRES_PASSWORD: \"${PW}\"}\n    volumes: [\"d:/var/lib/postgresql/data\"]\nvolumes: {d: {}}\n",
    );
    assert!(i.apps["pg"].volumes[0].database);
    assert!(i.apps["pg"].dump.is_none());
}
