//! `cloudlet apply` on a lab whose cluster cloudlet makes (`targets.cluster.kind: kubeadm`),
//! on the hollow cluster tier: the plan shows the bootstrap beside everything else, the apply
//! makes the cluster (kubeadm init, then the joins) and goes on to the lab's apps in the same
//! run, `cloudlet kubeconfig` gives an admin kubeconfig, and a second plan has nothing to do.
//! No token, CA key or kubeconfig is in the output, the journal or the state directory (only
//! the vault holds the CA keys, encrypted).
#![allow(missing_docs, clippy::disallowed_methods)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use cloudlet_testkit::hollow::HollowLab;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::Api;

const BIN: &str = env!("CARGO_BIN_EXE_cloudlet");

/// Runs the CLI (from the segment's namespace) with the vault key in its environment.
async fn cloudlet(key: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .env("CLOUDLET_VAULT_KEY", key)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("the CLI runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file under `dir` except the vault's, as text.
fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "vault") {
                    stack.push(p);
                }
            } else {
                out.push((
                    p.clone(),
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned(),
                ));
            }
        }
    }
    out
}

#[test]
fn apply_makes_the_cluster_then_its_apps_in_one_run() {
    let hollow = HollowLab::start(
        &[
            ("cp", Ipv4Addr::new(10, 0, 20, 10)),
            ("w1", Ipv4Addr::new(10, 0, 20, 11)),
            ("w2", Ipv4Addr::new(10, 0, 20, 12)),
        ],
        Ipv4Addr::new(10, 0, 20, 250),
        24,
    );
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab.yaml");
    let apps = "  apps:\n    web:\n      image: nginx:1.27\n      replicas: 2\n      ports: [{name: http, port: 80}]\n";
    std::fs::write(&lab, hollow.lab_yaml(&["cp"], &["w1", "w2"], apps)).unwrap();
    // The machines were installed over the network: their installs reported their host keys.
    hollow.report_installs(&dir.path().join(".cloudlet"));
    let lab_arg = lab.display().to_string();

    let key = std::process::Command::new(BIN)
        .args(["key", "new"])
        .output()
        .unwrap();
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("AGE-SECRET-KEY-1"));

    let (plan, apply, kubeconfig, again) = hollow.block_on({
        let (key, lab_arg) = (key.clone(), lab_arg.clone());
        async move {
            let plan = cloudlet(&key, &["plan", &lab_arg]).await;
            // With every log line there is (trace): none may carry a secret.
            let apply = cloudlet(&key, &["apply", &lab_arg, "--yes", "-vvv"]).await;
            let kubeconfig = cloudlet(&key, &["kubeconfig", &lab_arg]).await;
            let again = cloudlet(&key, &["plan", &lab_arg]).await;
            (plan, apply, kubeconfig, again)
        }
    });
    let plan_text = text(&plan);
    assert!(plan.status.success(), "{plan_text}");
    for line in [
        "cluster/kubeadm-node/cp",
        "kubeadm init: the first control plane makes the cluster",
        "cluster/kubeadm-node/w1",
        "kubeadm join as a worker",
        "cluster/deployment/web.web",
    ] {
        assert!(
            plan_text.contains(line),
            "`{line}` not in the plan:\n{plan_text}"
        );
    }
    let apply_text = text(&apply);
    assert!(
        apply.status.success(),
        "{apply_text}\n{}\n{}",
        hollow.tail("cp", 30),
        hollow.tail("w1", 30)
    );
    assert!(kubeconfig.status.success(), "{}", text(&kubeconfig));
    let again_text = text(&again);
    assert!(again_text.contains("No changes"), "{again_text}");

    // The cluster, through the kubeconfig `cloudlet kubeconfig` gave.
    let kc = String::from_utf8(kubeconfig.stdout).unwrap();
    let (nodes, deployment, tokens) = hollow.block_on(async move {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::from_yaml(&kc).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let mut ready = Vec::new();
        for _ in 0..240 {
            ready = Api::<Node>::all(client.clone())
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .filter_map(|n| n.metadata.name)
                .collect::<Vec<_>>();
            if ready.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        ready.sort();
        let deployment = Api::<Deployment>::namespaced(client.clone(), "web")
            .get("web")
            .await
            .ok();
        let tokens: Vec<String> = Api::<Secret>::namespaced(client, "kube-system")
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|s| s.type_.as_deref() == Some("bootstrap.kubernetes.io/token"))
            .filter_map(|s| s.metadata.name)
            .collect();
        (ready, deployment, tokens)
    });
    assert_eq!(nodes, ["cp", "w1", "w2"]);
    assert!(deployment.is_some(), "the app was applied in the same run");
    assert!(tokens.is_empty(), "join tokens left: {tokens:?}");

    // Nothing secret outside the vault: not in what the CLI printed, not in the state
    // directory (journal, known hosts, rendered files), not left on the workers.
    for (what, t) in [
        ("plan", &plan_text),
        ("apply", &apply_text),
        ("second plan", &again_text),
    ] {
        assert!(!t.contains("PRIVATE KEY"), "{what} printed a key");
        assert!(!t.contains("token:"), "{what} printed a token");
        assert!(
            !t.contains("token-secret"),
            "{what} logged a token Secret's data"
        );
        assert!(!t.contains("client-key-data"), "{what} logged a kubeconfig");
        assert!(
            !t.contains("authorization:") && !t.contains("Authorization:"),
            "{what} logged a credential header"
        );
    }
    for (path, t) in files(&dir.path().join(".cloudlet")) {
        assert!(!t.contains("PRIVATE KEY"), "{} holds a key", path.display());
        assert!(
            !t.contains("client-key-data"),
            "{} holds a kubeconfig",
            path.display()
        );
    }
    for n in ["cp", "w1", "w2"] {
        // The link systemctl makes (it points into the node's own /etc).
        let wants = hollow
            .etc(n)
            .join("systemd/system/multi-user.target.wants/kubelet.service");
        assert_eq!(
            std::fs::read_link(&wants).ok(),
            Some(PathBuf::from("/etc/systemd/system/kubelet.service")),
            "the kubelet of {n} starts at boot"
        );
    }
    for w in ["w1", "w2"] {
        let pki = hollow.etc(w).join("kubernetes/pki");
        assert!(!pki.join("ca.key").exists(), "{w} has the CA key");
        let left: Vec<_> = std::fs::read_dir(hollow.etc(w).join("kubernetes/cloudlet"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{w} keeps {left:?}");
    }
}
