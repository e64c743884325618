//! How the platform is doing: each installed component with its release and the health of
//! its workloads, and which node announces each LoadBalancer address (MetalLB's
//! ServiceL2Status).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use kube::{Client, Resource as _};
use serde::Serialize;

use super::{COMPONENT_LABEL, RELEASE_ANNOTATION};
use crate::health::{self, State};
use crate::kube_provider::PART_OF_LABEL;

/// One component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Component {
    /// Its key (`metallb`).
    pub key: String,
    /// The release its workloads came from (`v0.16.1`).
    pub version: Option<String>,
    /// The worst state of its workloads.
    pub state: State,
    /// What its workloads say: all ready, or the first that is not.
    pub message: String,
}

/// A LoadBalancer address and the node that answers ARP for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Announcement {
    /// The address.
    pub ip: String,
    /// The Service (`namespace/name`).
    pub service: String,
    /// The node announcing it.
    pub node: String,
}

/// The platform's health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Each component cloudlet installed, by key.
    pub components: Vec<Component>,
    /// Each announced address.
    pub announcements: Vec<Announcement>,
}

/// Reads the platform's health from the cluster: the components of the ApplySet `applyset`.
pub async fn check(client: &Client, applyset: &str) -> Result<Status, kube::Error> {
    let lp = ListParams::default().labels(&format!("{PART_OF_LABEL}={applyset},{COMPONENT_LABEL}"));
    let deployments: Api<Deployment> = Api::all(client.clone());
    let daemons: Api<DaemonSet> = Api::all(client.clone());
    let (d, ds) = futures::try_join!(deployments.list(&lp), daemons.list(&lp))?;
    let mut by: BTreeMap<String, (Option<String>, Vec<health::Finding>)> = BTreeMap::new();
    let mut add = |meta: &kube::api::ObjectMeta, f: health::Finding| {
        let key = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(COMPONENT_LABEL))
            .cloned()
            .unwrap_or_default();
        let version = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(RELEASE_ANNOTATION))
            .and_then(|r| r.split_once(' ').map(|(_, v)| v.to_string()));
        let e = by.entry(key).or_default();
        if e.0.is_none() {
            e.0 = version;
        }
        e.1.push(f);
    };
    for x in &d.items {
        add(x.meta(), health::deployment(x));
    }
    for x in &ds.items {
        add(x.meta(), health::daemon_set(x));
    }
    let components = by
        .into_iter()
        .map(|(key, (version, findings))| {
            let state = findings
                .iter()
                .map(|f| f.state)
                .max()
                .unwrap_or(State::Ready);
            let message = match findings.iter().find(|f| f.state != State::Ready) {
                Some(f) => format!("{}: {}", f.id, f.message),
                None => format!("{} workload(s) ready", findings.len()),
            };
            Component {
                key,
                version,
                state,
                message,
            }
        })
        .collect();
    Ok(Status {
        components,
        announcements: announcements(client).await?,
    })
}

/// MetalLB's ServiceL2Status objects joined with the Services' addresses; none where MetalLB
/// (or that kind) is not installed.
async fn announcements(client: &Client) -> Result<Vec<Announcement>, kube::Error> {
    let ar = ApiResource {
        group: "metallb.io".into(),
        version: "v1beta1".into(),
        api_version: "metallb.io/v1beta1".into(),
        kind: "ServiceL2Status".into(),
        plural: "servicel2statuses".into(),
    };
    let statuses = match Api::<DynamicObject>::all_with(client.clone(), &ar)
        .list(&ListParams::default())
        .await
    {
        Ok(l) => l.items,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for s in statuses {
        let st = &s.data["status"];
        let (Some(name), Some(ns), Some(node)) = (
            st["serviceName"].as_str(),
            st["serviceNamespace"].as_str(),
            st["node"].as_str(),
        ) else {
            continue;
        };
        let svc = Api::<Service>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?;
        let ips: Vec<String> = svc
            .and_then(|s| s.status)
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip)
            .collect();
        for ip in ips {
            out.push(Announcement {
                ip,
                service: format!("{ns}/{name}"),
                node: node.to_string(),
            });
        }
    }
    out.sort_by(|a, b| (&a.ip, &a.service).cmp(&(&b.ip, &b.service)));
    Ok(out)
}
