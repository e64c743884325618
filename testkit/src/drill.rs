//! A disaster-recovery drill on the hollow cluster tier, shared by the restore test and the
//! RTO benchmark: the machines (a control plane and a worker), the lab that backs up
//! cloudlet's state and the cluster into a directory, and the canaries — ConfigMaps written
//! before the backup, and a writer that writes its sequence number and the time every
//! second, so what it wrote last against what a restore brought back is the data-loss window
//! (RPO), and the moment it answers again ends the recovery time (RTO).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::hollow::HollowLab;

/// The writer canary's ConfigMap (in `default`).
pub const WRITER: &str = "writer";

/// The drill's machines, booted: `cp` (10.0.20.10) and `w1` (10.0.20.11).
pub fn machines() -> HollowLab {
    HollowLab::start(
        &[
            ("cp", Ipv4Addr::new(10, 0, 20, 10)),
            ("w1", Ipv4Addr::new(10, 0, 20, 11)),
        ],
        Ipv4Addr::new(10, 0, 20, 250),
        24,
    )
}

/// Writes the drill's lab at `lab` for `machines`: one app, cloudlet's state and the cluster
/// backed up hourly into the directory `target`, the key from `CLOUDLET_BACKUP_KEY`.
pub fn write_lab(machines: &HollowLab, lab: &Path, target: &Path) {
    let apps =
        "  apps:\n    web:\n      image: nginx:1.27\n      ports: [{name: http, port: 80}]\n";
    std::fs::write(
        lab,
        format!(
            "{}backup:\n  key: {{env: CLOUDLET_BACKUP_KEY}}\n  targets: {{nas: {{dir: {}}}}}\n  state: {{target: nas, every: 1h}}\n  cluster: {{target: nas, every: 1h}}\n",
            machines.lab_yaml(&["cp"], &["w1"], apps),
            target.display()
        ),
    )
    .expect("the lab is written");
}

/// A client of the cluster `kubeconfig` (its text) names.
pub async fn client(kubeconfig: &str) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(kubeconfig).expect("a kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("a usable kubeconfig");
    kube::Client::try_from(config).expect("a client")
}

/// Writes the canary `name` holding `seq` in `default`.
pub async fn canary(client: &kube::Client, name: &str, seq: u32) {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.data = Some([("seq".to_string(), seq.to_string())].into());
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &cm)
        .await
        .expect("the canary is written");
}

/// Writes the [`WRITER`] ConfigMap's sequence number and time every second, until dropped.
pub async fn write_every_second(c: kube::Client) {
    let maps = Api::<ConfigMap>::namespaced(c, "default");
    for seq in 0u64.. {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(WRITER.into());
        cm.data = Some(
            [
                ("seq".to_string(), seq.to_string()),
                ("at".to_string(), now.to_string()),
            ]
            .into(),
        );
        let _ = maps
            .patch(
                WRITER,
                &PatchParams::apply("canary").force(),
                &Patch::Apply(&cm),
            )
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The sequence number and time the writer's ConfigMap holds.
pub fn written(cm: &ConfigMap) -> (u64, i64) {
    let d = cm.data.as_ref().expect("the writer's data");
    (
        d["seq"].parse().expect("a sequence number"),
        d["at"].parse().expect("a time"),
    )
}
