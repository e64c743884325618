//! The bootstrap on the hollow cluster tier (`cloudlet_testkit::hollow`): nodes that are
//! network and mount namespaces with their own sshd, the control plane made by real kubeadm
//! (its phases write the certificates, kubeconfigs and static-pod manifests; the manifests
//! run as processes), workers joining through the real TLS bootstrap with kubemark's hollow
//! kubelet. kubemark rather than a real kubelet: a kubelet needs a container runtime and
//! cgroups that a namespace here does not have; kubemark runs the kubelet's own code for
//! bootstrap, registration and status with a fake runtime.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use cloudlet_cluster::bootstrap::{Access, Action, Bootstrap, Options, plan};
use cloudlet_cluster::bootstrap_token::outstanding;
use cloudlet_cluster::identity::Identity;
use cloudlet_core::vault::Vault;
use cloudlet_testkit::hollow::HollowLab;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::Api;
use kube::api::{WatchEvent, WatchParams};

fn lab(workers: &[&str]) -> cloudlet_core::Lab {
    let mut lab = cloudlet_testkit::seed::seed_lab_making_its_cluster();
    // Extra workers, on the same segment.
    let template = lab.machines["k8s-node1"].clone();
    let c = lab.cluster.as_mut().unwrap();
    c.workers.clear();
    for (i, w) in workers.iter().enumerate() {
        c.workers.push((*w).to_string());
        if !lab.machines.contains_key(*w) {
            let mut m = template.clone();
            m.nics[0].ip = Some(Ipv4Addr::new(10, 0, 20, 60 + u8::try_from(i).unwrap()));
            lab.machines.insert((*w).to_string(), m);
        }
    }
    lab
}

/// An outcome with every cause of its error.
fn chain(r: &Result<(), cloudlet_cluster::bootstrap::BootstrapError>) -> String {
    let Err(e) = r else { return "ok".into() };
    let mut out = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(&format!(": {s}"));
        src = s.source();
    }
    out
}

fn hollow(lab: &cloudlet_core::Lab) -> HollowLab {
    let c = lab.cluster.as_ref().unwrap();
    let nodes: Vec<(&str, Ipv4Addr)> = c
        .control_plane
        .iter()
        .chain(&c.workers)
        .map(|n| (n.as_str(), lab.machine_ip(n).unwrap()))
        .collect();
    HollowLab::start(&nodes, Ipv4Addr::new(10, 0, 20, 250), 24)
}

fn bootstrap(lab: &cloudlet_core::Lab, hollow: &HollowLab, identity: &Arc<Identity>) -> Bootstrap {
    bootstrap_within(lab, hollow, identity, Duration::from_secs(60))
}

/// A bootstrap that waits at most `window` for a node to answer.
fn bootstrap_within(
    lab: &cloudlet_core::Lab,
    hollow: &HollowLab,
    identity: &Arc<Identity>,
    window: Duration,
) -> Bootstrap {
    Bootstrap::new(
        Arc::new(lab.clone()),
        identity.clone(),
        Access {
            user: "root".into(),
            key: hollow.key.clone(),
            known_hosts: hollow.known_hosts.clone(),
            port: 22,
        },
        Options {
            window,
            parallel: 8,
            // No container runtime, swap or systemd in a namespace.
            ignore_preflight: vec!["all".into()],
        },
    )
}

/// Observes, plans and applies once, from the segment.
fn run(
    hollow: &HollowLab,
    b: &Bootstrap,
    lab: &cloudlet_core::Lab,
) -> (
    Vec<cloudlet_cluster::bootstrap::Step>,
    cloudlet_cluster::bootstrap::Report,
) {
    let (b, lab) = (b.clone(), lab.clone());
    hollow.block_on(async move {
        let steps = plan(&lab, &b.observe().await.unwrap());
        let report = b.apply(&steps).await;
        (steps, report)
    })
}

/// Waits until every named node is Ready; the names that are not, when time is up.
async fn ready(client: &kube::Client, names: &[String], wait: Duration) -> Vec<String> {
    let nodes = Api::<Node>::all(client.clone());
    let start = std::time::Instant::now();
    loop {
        let list = nodes
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let not: Vec<String> = names
            .iter()
            .filter(|n| {
                !list.iter().any(|o| {
                    o.metadata.name.as_deref() == Some(n.as_str())
                        && o.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                })
            })
            .cloned()
            .collect();
        if not.is_empty() || start.elapsed() > wait {
            return not;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[test]
fn installed_machines_become_a_cluster_and_a_reinstalled_worker_comes_back_as_the_same_node() {
    let lab = lab(&["k8s-node1", "k8s-node2"]);
    let mut hollow = hollow(&lab);
    let identity = Arc::new(Identity::generate().unwrap());
    let b = bootstrap(&lab, &hollow, &identity);

    // Interrupted after the init: the next run resumes from what it sees, with no second init.
    let steps = hollow.block_on({
        let (b, lab) = (b.clone(), lab.clone());
        async move { plan(&lab, &b.observe().await.unwrap()) }
    });
    let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["init k8s-master", "join k8s-node1", "join k8s-node2"]
    );
    let first = hollow.block_on({
        let (b, init) = (b.clone(), steps[..1].to_vec());
        async move { b.apply(&init).await }
    });
    assert!(first.is_success(), "{}", chain(&first.steps[0].1));
    let (steps, report) = run(&hollow, &b, &lab);
    let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["join k8s-node1", "join k8s-node2"]);
    for (s, r) in &report.steps {
        assert!(r.is_ok(), "{s}: {}\n{}", chain(r), hollow.tail(&s.node, 30));
    }
    let (not_ready, tokens, uid) = hollow.block_on({
        let b = b.clone();
        async move {
            let client = b.client().await.unwrap();
            let names: Vec<String> = ["k8s-master", "k8s-node1", "k8s-node2"]
                .map(String::from)
                .into();
            let not_ready = ready(&client, &names, Duration::from_secs(120)).await;
            let tokens = outstanding(&client).await.unwrap();
            let uid = Api::<Node>::all(client)
                .get("k8s-node1")
                .await
                .ok()
                .and_then(|n| n.metadata.uid);
            (not_ready, tokens, uid)
        }
    });
    assert!(
        not_ready.is_empty(),
        "not Ready: {not_ready:?}\n{}",
        hollow.tail("k8s-master", 20)
    );
    assert!(tokens.is_empty(), "tokens left: {tokens:?}");
    assert!(uid.is_some());

    // Applied again: everything has joined, nothing to do.
    let again = hollow.block_on({
        let (b, lab) = (b.clone(), lab.clone());
        async move { plan(&lab, &b.observe().await.unwrap()) }
    });
    assert!(again.is_empty(), "{again:?}");

    // A worker installed again: its stale Node goes, it rejoins under its name.
    hollow.reinstall("k8s-node1");
    let b = bootstrap(&lab, &hollow, &identity);
    let (steps, report, not_ready, tokens, minted, nodes) = hollow.block_on({
        let (b, lab) = (b.clone(), lab.clone());
        async move {
            let client = b.client().await.unwrap();
            // Every token Secret made while it runs, as the API server tells its watchers.
            let secrets = Api::<Secret>::namespaced(client.clone(), "kube-system");
            let from = secrets
                .list_metadata(&Default::default())
                .await
                .unwrap()
                .metadata
                .resource_version
                .unwrap();
            let mut stream = secrets
                .watch(&WatchParams::default().timeout(60), &from)
                .await
                .unwrap()
                .boxed();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let watching = tokio::spawn(async move {
                while let Some(Ok(e)) = stream.next().await {
                    if let WatchEvent::Added(s) = e
                        && s.type_.as_deref() == Some("bootstrap.kubernetes.io/token")
                    {
                        let _ = tx.send(s.metadata.labels.unwrap_or_default());
                    }
                }
            });
            let steps = plan(&lab, &b.observe().await.unwrap());
            let report = b.apply(&steps).await;
            let not_ready = ready(
                &client,
                &["k8s-node1".to_string()],
                Duration::from_secs(120),
            )
            .await;
            let tokens = outstanding(&client).await.unwrap();
            let nodes = Api::<Node>::all(client.clone())
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .len();
            tokio::time::sleep(Duration::from_secs(1)).await;
            watching.abort();
            let mut minted = Vec::new();
            while let Ok(labels) = rx.try_recv() {
                minted.push(labels);
            }
            (steps, report, not_ready, tokens, minted, nodes)
        }
    });
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(
        (steps[0].node.as_str(), steps[0].action),
        ("k8s-node1", Action::Rejoin)
    );
    for (s, r) in &report.steps {
        assert!(r.is_ok(), "{s}: {}\n{}", chain(r), hollow.tail(&s.node, 30));
    }
    assert!(not_ready.is_empty(), "{}", hollow.tail("k8s-node1", 30));
    assert!(tokens.is_empty(), "tokens left: {tokens:?}");
    assert_eq!(nodes, 3, "nothing duplicated");
    assert_eq!(
        minted.len(),
        1,
        "exactly one token for the rejoin: {minted:?}"
    );
    assert_eq!(
        minted[0].get("cloudlet.dev/join-node").map(String::as_str),
        Some("k8s-node1")
    );
}

fn members(hollow: &HollowLab, node: &str) -> Result<Vec<String>, String> {
    let out = hollow.exec(
        node,
        &[
            "curl",
            "-sS",
            "--fail-with-body",
            "--max-time",
            "10",
            "--cacert",
            "/etc/kubernetes/pki/etcd/ca.crt",
            "--cert",
            "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
            "--key",
            "/etc/kubernetes/pki/etcd/healthcheck-client.key",
            "-X",
            "POST",
            "-d",
            "{}",
            "https://127.0.0.1:2379/v3/cluster/member/list",
        ],
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    let mut urls: Vec<String> = v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["peerURLs"].as_array().cloned().unwrap_or_default())
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect();
    urls.sort();
    Ok(urls)
}

/// The seed's cluster with three control planes (10.0.20.10, .13, .14) behind the VIP
/// 10.0.20.9, on hollow machines; the VIP's address, as the VIP announcer would hold it, on
/// the first.
fn three_control_planes() -> (cloudlet_core::Lab, HollowLab, Ipv4Addr) {
    let mut lab = lab(&[]);
    let template = lab.machines["k8s-master"].clone();
    for (name, last) in [("k8s-cp2", 13), ("k8s-cp3", 14)] {
        let mut m = template.clone();
        m.nics[0].ip = Some(Ipv4Addr::new(10, 0, 20, last));
        lab.machines.insert(name.into(), m);
    }
    let vip = Ipv4Addr::new(10, 0, 20, 9);
    {
        let c = lab.cluster.as_mut().unwrap();
        c.control_plane = vec!["k8s-master".into(), "k8s-cp2".into(), "k8s-cp3".into()];
        c.kubernetes.as_mut().unwrap().endpoint = Some(vip);
    }
    let hollow = hollow(&lab);
    hollow.add_address("k8s-master", vip);
    (lab, hollow, vip)
}

/// The peer addresses of the control planes whose last octets are `ips`, sorted.
fn peers(ips: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = ips
        .iter()
        .map(|i| format!("https://10.0.20.{i}:2380"))
        .collect();
    v.sort();
    v
}

#[test]
fn three_control_planes_join_one_at_a_time_and_a_reinstalled_one_replaces_its_etcd_member_only_with_quorum()
 {
    let (lab, mut hollow, vip) = three_control_planes();
    let identity = Arc::new(Identity::generate().unwrap());
    let b = bootstrap(&lab, &hollow, &identity);
    let (steps, report) = run(&hollow, &b, &lab);
    let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "init k8s-master",
            "join k8s-cp2 (control plane)",
            "join k8s-cp3 (control plane)"
        ]
    );
    for (s, r) in &report.steps {
        assert!(r.is_ok(), "{s}: {}\n{}", chain(r), hollow.tail(&s.node, 30));
    }
    assert_eq!(
        members(&hollow, "k8s-master").unwrap(),
        peers(&[10, 13, 14])
    );
    // kube-vip announces the VIP from every control plane: its static pod, registered by each
    // kubelet (so the API server accepted its spec), on the interface holding the node's
    // address, with kubeadm's admin kubeconfig once the init is done.
    let vips = hollow.block_on({
        let b = b.clone();
        async move {
            let client = b.client().await.unwrap();
            let pods = Api::<Pod>::namespaced(client, "kube-system");
            let mut found = Vec::new();
            for cp in ["k8s-master", "k8s-cp2", "k8s-cp3"] {
                for _ in 0..300 {
                    if let Ok(p) = pods.get(&format!("kube-vip-{cp}")).await {
                        found.push(p);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            found
        }
    });
    assert_eq!(vips.len(), 3, "kube-vip's mirror pods: {}", vips.len());
    for p in &vips {
        let spec = p.spec.as_ref().unwrap();
        let env: Vec<(String, String)> = spec.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect();
        assert!(
            env.contains(&("address".into(), vip.to_string())),
            "{env:?}"
        );
        assert!(
            env.contains(&("vip_interface".into(), "eth0".into())),
            "{env:?}"
        );
        let kubeconfig = spec.volumes.as_ref().unwrap()[0]
            .host_path
            .as_ref()
            .unwrap()
            .path
            .clone();
        assert_eq!(kubeconfig, "/etc/kubernetes/admin.conf");
    }

    // k8s-cp3 installed again: its old member goes, it joins as a new one.
    hollow.reinstall("k8s-cp3");
    let b = bootstrap(&lab, &hollow, &identity);
    let (steps, report) = run(&hollow, &b, &lab);
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.node.as_str(), s.action))
            .collect::<Vec<_>>(),
        [("k8s-cp3", Action::Rejoin)]
    );
    for (s, r) in &report.steps {
        assert!(r.is_ok(), "{s}: {}\n{}", chain(r), hollow.tail(&s.node, 30));
    }
    assert_eq!(
        members(&hollow, "k8s-master").unwrap(),
        peers(&[10, 13, 14])
    );
    let not_ready = hollow.block_on({
        let b = b.clone();
        async move {
            let client = b.client().await.unwrap();
            ready(&client, &["k8s-cp3".to_string()], Duration::from_secs(120)).await
        }
    });
    assert!(not_ready.is_empty(), "{}", hollow.tail("k8s-cp3", 30));

    // Quorum lost (k8s-cp2 down) and k8s-cp3 installed again: refused, nothing touched.
    hollow.power_off("k8s-cp2");
    hollow.reinstall("k8s-cp3");
    let b = bootstrap(&lab, &hollow, &identity);
    let (_, report) = run(&hollow, &b, &lab);
    let cp3 = report
        .steps
        .iter()
        .find(|(s, _)| s.node == "k8s-cp3")
        .expect("k8s-cp3 has a step");
    let message = chain(&cp3.1);
    assert!(
        message.contains("etcd has lost quorum") && message.contains("k8s-cp3"),
        "{message}"
    );
    assert!(
        !hollow.etc("k8s-cp3").join("kubernetes").exists(),
        "nothing is written to a node that is refused"
    );
}

/// kubeadm's restore of a cluster of several control planes: one etcd snapshot restored onto
/// every member at once (each stopped first, each restored with its own name and the whole
/// membership, each started again): the three members form one cluster again, every API
/// server answers from the snapshot's data, and what was written after it is gone.
#[test]
fn three_control_planes_are_restored_from_one_etcd_snapshot_as_one_cluster_again() {
    let (lab, hollow, _) = three_control_planes();
    let identity = Arc::new(Identity::generate().unwrap());
    let b = bootstrap(&lab, &hollow, &identity);
    let (_, report) = run(&hollow, &b, &lab);
    for (s, r) in &report.steps {
        assert!(r.is_ok(), "{s}: {}\n{}", chain(r), hollow.tail(&s.node, 30));
    }
    let work = tempfile::tempdir().unwrap();
    let snapshot = work.path().join("etcd.db");
    hollow.block_on({
        let (b, identity, snapshot) = (b.clone(), identity.clone(), snapshot.clone());
        async move {
            let maps = Api::<ConfigMap>::namespaced(b.client().await.unwrap(), "default");
            maps.create(&Default::default(), &config_map("before"))
                .await
                .unwrap();
            let (cert, key) = identity
                .etcd_client("cloudlet-backup", Duration::from_secs(600))
                .unwrap();
            let tls =
                cloudlet_transport::tls::mutual_config(&identity.etcd_ca.cert, &cert, key.expose())
                    .unwrap();
            cloudlet_backup::etcd::snapshot(
                "https://10.0.20.13:2379",
                tls,
                &snapshot,
                cloudlet_backup::etcd::Limits::default(),
            )
            .await
            .unwrap();
            maps.create(&Default::default(), &config_map("after"))
                .await
                .unwrap();
        }
    });
    let restored = hollow.block_on({
        let (b, snapshot) = (b.clone(), snapshot.clone());
        async move { b.restore_etcd(&snapshot).await }
    });
    assert!(
        restored.is_ok(),
        "{}\n{}\n{}",
        chain(&restored),
        hollow.tail("k8s-master", 30),
        hollow.tail("k8s-cp3", 30)
    );
    for node in ["k8s-master", "k8s-cp2", "k8s-cp3"] {
        let mut found = members(&hollow, node);
        for _ in 0..60 {
            if found.as_ref().is_ok_and(|m| m == &peers(&[10, 13, 14])) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            found = members(&hollow, node);
        }
        assert_eq!(
            found,
            Ok(peers(&[10, 13, 14])),
            "{node}: {}",
            hollow.tail(node, 20)
        );
    }
    let (before, after) = hollow.block_on({
        let b = b.clone();
        async move {
            let maps = Api::<ConfigMap>::namespaced(b.client().await.unwrap(), "default");
            (
                maps.get_opt("before").await.unwrap(),
                maps.get_opt("after").await.unwrap(),
            )
        }
    });
    assert!(before.is_some(), "written before the snapshot: back");
    assert!(after.is_none(), "written after the snapshot: gone");
    for node in ["k8s-cp2", "k8s-cp3"] {
        assert!(
            hollow
                .etc(node)
                .join("kubernetes/manifests/etcd.yaml")
                .exists(),
            "{node}'s static pods are back"
        );
    }
}

fn config_map(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.data = Some([("k".to_string(), name.to_string())].into());
    cm
}

#[test]
fn a_node_answering_with_a_host_key_its_install_did_not_report_is_refused_by_name() {
    let lab = lab(&["k8s-node1"]);
    let mut hollow = hollow(&lab);
    let reported = std::fs::read_to_string(&hollow.known_hosts).unwrap();
    // Installed again outside cloudlet: a new host key nobody reported.
    hollow.reinstall("k8s-node1");
    std::fs::write(&hollow.known_hosts, reported).unwrap();
    let identity = Arc::new(Identity::generate().unwrap());
    let b = bootstrap(&lab, &hollow, &identity);
    let e = hollow
        .block_on(async move { b.observe().await.map(|_| ()) })
        .unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("k8s-node1") && message.contains("host key"),
        "{message}"
    );
}

#[test]
fn a_node_that_does_not_come_back_fails_only_itself() {
    let lab = lab(&["k8s-node1", "k8s-node2"]);
    let mut hollow = hollow(&lab);
    hollow.power_off("k8s-node2");
    let identity = Arc::new(Identity::generate().unwrap());
    let b = bootstrap_within(&lab, &hollow, &identity, Duration::from_secs(3));
    let (_, report) = run(&hollow, &b, &lab);
    let outcome = |n: &str| {
        report
            .steps
            .iter()
            .find(|(s, _)| s.node == n)
            .map(|(_, r)| chain(r))
            .unwrap()
    };
    assert_eq!(
        outcome("k8s-master"),
        "ok",
        "{}",
        hollow.tail("k8s-master", 20)
    );
    assert_eq!(
        outcome("k8s-node1"),
        "ok",
        "{}",
        hollow.tail("k8s-node1", 20)
    );
    let down = outcome("k8s-node2");
    assert!(
        down.starts_with("k8s-node2 did not answer over SSH within")
            && down.contains("cloudlet pxe status"),
        "{down}"
    );
}

#[test]
fn a_worker_cannot_join_while_the_api_server_is_down_and_is_told_why_by_name() {
    let lab = lab(&["k8s-node1"]);
    let mut hollow = hollow(&lab);
    let identity = Arc::new(Identity::generate().unwrap());
    // The init is recorded in the lab's vault, as the kubeadm backend keeps it.
    let state = tempfile::tempdir().unwrap();
    let vault = Vault::open(state.path().join("vault"), &cloudlet_core::vault::new_key()).unwrap();
    let b = bootstrap(&lab, &hollow, &identity).with_record(Arc::new(vault));
    let init = hollow.block_on({
        let (b, lab) = (b.clone(), lab.clone());
        async move {
            let steps = plan(&lab, &b.observe().await.unwrap());
            b.apply(&steps[..1]).await
        }
    });
    assert!(init.is_success(), "{}", chain(&init.steps[0].1));
    hollow.power_off("k8s-master");
    let (steps, report) = run(&hollow, &b, &lab);
    // The control plane does not answer: the record says the cluster exists, so it is down
    // and left alone (no second init); the worker is tried and told why.
    let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["join k8s-node1"]);
    let message = chain(&report.steps[0].1);
    assert!(
        message.contains("does not answer, so k8s-node1 cannot join")
            && message.contains("apply again"),
        "{message}"
    );
    assert!(
        !hollow.etc("k8s-node1").join("kubernetes/cloudlet").exists(),
        "nothing was written to the worker"
    );
}

#[test]
fn a_node_is_waited_for_until_its_install_reports_its_host_key() {
    let lab = lab(&["k8s-node1", "k8s-node2"]);
    let hollow = hollow(&lab);
    let all = std::fs::read_to_string(&hollow.known_hosts).unwrap();
    let without = |ips: &[&str]| -> String {
        all.lines()
            .filter(|l| !ips.iter().any(|ip| l.starts_with(&format!("{ip} "))))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    // Neither worker's install has reported yet; k8s-node1's does three seconds in.
    std::fs::write(&hollow.known_hosts, without(&["10.0.20.11", "10.0.20.12"])).unwrap();
    let later = (hollow.known_hosts.clone(), without(&["10.0.20.12"]));
    let reporter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        std::fs::write(&later.0, later.1).unwrap();
    });
    let identity = Arc::new(Identity::generate().unwrap());
    let b = bootstrap_within(&lab, &hollow, &identity, Duration::from_secs(15));
    let (steps, report) = run(&hollow, &b, &lab);
    reporter.join().unwrap();
    assert_eq!(steps.len(), 3, "{steps:?}");
    let outcome = |n: &str| {
        report
            .steps
            .iter()
            .find(|(s, _)| s.node == n)
            .map(|(_, r)| chain(r))
            .unwrap()
    };
    assert_eq!(
        outcome("k8s-node1"),
        "ok",
        "{}",
        hollow.tail("k8s-node1", 20)
    );
    let unknown = outcome("k8s-node2");
    assert!(
        unknown.starts_with("no host key is known for k8s-node2") && unknown.contains("pxe status"),
        "{unknown}"
    );
}
