//! An etcd snapshot through etcd's API, on a real etcd under a real kube-apiserver: objects
//! written, snapshot taken, everything wiped, the snapshot restored by etcdutl into a new data
//! directory, a new API server on it serves the objects again.
#![allow(missing_docs, clippy::disallowed_methods)]

use cloudlet_backup::etcd::{self, Limits};
use cloudlet_testkit::apiserver::{ApiServer, peers};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

fn tls() -> cloudlet_transport::tls::rustls::ClientConfig {
    cloudlet_transport::tls::client_config(None).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_taken_through_the_api_restores_into_a_cluster_that_serves_the_objects_again() {
    let work = tempfile::tempdir().unwrap();
    let snap = work.path().join("etcd.db");
    let server = ApiServer::start();
    let client = server.client().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..50 {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("canary-{i}"));
        cm.data = Some([("seq".to_string(), i.to_string())].into());
        maps.create(&PostParams::default(), &cm).await.unwrap();
    }

    let taken = etcd::snapshot(&server.etcd_url, tls(), &snap, Limits::default())
        .await
        .unwrap();
    assert!(taken.bytes > 0);
    assert!(taken.version.starts_with("3."), "{taken:?}");
    assert_eq!(
        std::fs::metadata(&snap).unwrap().len(),
        taken.bytes + 32,
        "the database and etcd's hash"
    );
    // Too small a limit is refused, not cut.
    let err = etcd::snapshot(
        &server.etcd_url,
        tls(),
        &work.path().join("small.db"),
        Limits {
            max_bytes: 4096,
            ..Limits::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    drop(server);

    // etcdutl (etcd's own restore) accepts the file, checking etcd's hash.
    let data = work.path().join("restored");
    let o = std::process::Command::new(peers().join("etcdutl"))
        .args(["snapshot", "restore", snap.to_str().unwrap(), "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let server = ApiServer::start_from(Some(&data), &[]);
    let maps: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
    for i in [0, 17, 49] {
        let cm = maps.get(&format!("canary-{i}")).await.unwrap();
        assert_eq!(cm.data.unwrap()["seq"], i.to_string());
    }
}

#[tokio::test]
async fn an_address_that_is_not_etcd_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let err = etcd::snapshot(&url, tls(), &work.path().join("x.db"), Limits::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("etcd snapshot from {url}")),
        "{err}"
    );
    let err = etcd::snapshot(
        "ftp://x",
        tls(),
        &work.path().join("x.db"),
        Limits::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not an http(s) address"), "{err}");
}
