//! Health of what cloudlet applied: rollouts like `kubectl rollout status`, for every object
//! at once, plus the failures people chase by hand — a LoadBalancer Service MetalLB gave no
//! address (with MetalLB's own reason from its events and ConfigurationState), an ingress
//! host whose backend has no ready endpoint, a claim that is not bound.

use std::collections::BTreeMap;
use std::time::Duration;

use cloudlet_core::{Domain, ResourceId};
use futures::future::try_join_all;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use kube::{Client, Resource as _};
use serde::Serialize;

use crate::kube_provider::PART_OF_LABEL;

/// How an object is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Done and serving.
    Ready,
    /// Still on its way (a rollout, an address, a binding).
    Progressing,
    /// Stuck: it will not get there without a change.
    Failed,
}

/// The health of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The object.
    pub id: ResourceId,
    /// Its state.
    pub state: State,
    /// What is going on, in words.
    pub message: String,
}

fn id(kind: &str, ns: Option<&str>, name: &str) -> ResourceId {
    ResourceId::new(
        Domain::Cluster,
        kind,
        match ns {
            Some(ns) => format!("{ns}.{name}"),
            None => name.to_string(),
        },
    )
}

fn finding(kind: &str, ns: Option<&str>, name: &str, state: State, message: String) -> Finding {
    Finding {
        id: id(kind, ns, name),
        state,
        message,
    }
}

/// Checks every Deployment, LoadBalancer Service, Ingress and claim of the ApplySet once.
pub async fn check(client: &Client, applyset: &str) -> Result<Vec<Finding>, kube::Error> {
    let lp = ListParams::default().labels(&format!("{PART_OF_LABEL}={applyset}"));
    let deployments: Api<Deployment> = Api::all(client.clone());
    let services: Api<Service> = Api::all(client.clone());
    let ingresses: Api<Ingress> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let sets: Api<StatefulSet> = Api::all(client.clone());
    let (d, ss, s, i, c) = futures::try_join!(
        deployments.list(&lp),
        sets.list(&lp),
        services.list(&lp),
        ingresses.list(&lp),
        claims.list(&lp)
    )?;
    let mut out = Vec::new();
    for d in &d.items {
        out.push(deployment(d));
    }
    for s in &ss.items {
        out.push(stateful_set(s));
    }
    let metallb = metallb_errors(client).await;
    let lb: Vec<&Service> = s
        .items
        .iter()
        .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        .collect();
    let lb_findings = try_join_all(lb.iter().map(|s| load_balancer(client, s, &metallb))).await?;
    out.extend(lb_findings);
    let backends = try_join_all(i.items.iter().map(|ing| ingress(client, ing))).await?;
    out.extend(backends);
    for c in &c.items {
        let phase = c
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into());
        let meta = c.meta();
        out.push(finding(
            "persistentvolumeclaim",
            meta.namespace.as_deref(),
            meta.name.as_deref().unwrap_or_default(),
            match phase.as_str() {
                "Bound" => State::Ready,
                "Lost" => State::Failed,
                _ => State::Progressing,
            },
            match phase.as_str() {
                "Bound" => "bound".into(),
                "Lost" => "its volume is lost".into(),
                other => format!("{other}: not bound to its volume yet"),
            },
        ));
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn deployment(d: &Deployment) -> Finding {
    let meta = d.meta();
    let (ns, name) = (
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    );
    let want = d.spec.replicas.unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let generation = meta.generation.unwrap_or(0);
    let stuck = st.conditions.iter().flatten().find(|c| {
        let (t, st) = (c.type_.as_deref(), c.status.as_deref());
        t == Some("Progressing") && st == Some("False")
            || t == Some("ReplicaFailure") && st == Some("True")
    });
    let (state, message) = if let Some(c) = stuck {
        (
            State::Failed,
            format!(
                "{}: {}",
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default()
            ),
        )
    } else if st.observed_generation.unwrap_or(0) < generation {
        (
            State::Progressing,
            "waiting for the controller to see the new spec".into(),
        )
    } else if st.updated_replicas.unwrap_or(0) < want {
        (
            State::Progressing,
            format!(
                "{} of {want} replicas updated",
                st.updated_replicas.unwrap_or(0)
            ),
        )
    } else if st.available_replicas.unwrap_or(0) < want {
        (
            State::Progressing,
            format!(
                "{} of {want} updated replicas available",
                st.available_replicas.unwrap_or(0)
            ),
        )
    } else {
        (State::Ready, format!("{want} of {want} replicas available"))
    };
    finding("deployment", ns, name, state, message)
}

fn stateful_set(s: &StatefulSet) -> Finding {
    let meta = s.meta();
    let (ns, name) = (
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    );
    let want = s.spec.replicas.unwrap_or(1);
    let st = s.status.clone().unwrap_or_default();
    let (state, message) = if st.observed_generation.unwrap_or(0) < meta.generation.unwrap_or(0) {
        (
            State::Progressing,
            "waiting for the controller to see the new spec".into(),
        )
    } else if st.updated_replicas.unwrap_or(0) < want || st.current_revision != st.update_revision {
        (
            State::Progressing,
            format!(
                "{} of {want} pods updated",
                st.updated_replicas.unwrap_or(0)
            ),
        )
    } else if st.ready_replicas.unwrap_or(0) < want {
        (
            State::Progressing,
            format!("{} of {want} pods ready", st.ready_replicas.unwrap_or(0)),
        )
    } else {
        (State::Ready, format!("{want} of {want} pods ready"))
    };
    finding("statefulset", ns, name, state, message)
}

/// MetalLB's ConfigurationState errors, when MetalLB runs a version that has them.
async fn metallb_errors(client: &Client) -> Vec<String> {
    let ar = ApiResource {
        group: "metallb.io".into(),
        version: "v1beta1".into(),
        api_version: "metallb.io/v1beta1".into(),
        kind: "ConfigurationState".into(),
        plural: "configurationstates".into(),
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    list.items
        .iter()
        .filter(|o| o.data["status"]["result"] != "Valid" && !o.data["status"]["result"].is_null())
        .map(|o| {
            format!(
                "MetalLB configuration {}: {}",
                o.metadata.name.clone().unwrap_or_default(),
                o.data["status"]["errorSummary"]
                    .as_str()
                    .unwrap_or("invalid")
            )
        })
        .collect()
}

async fn load_balancer(
    client: &Client,
    s: &Service,
    metallb: &[String],
) -> Result<Finding, kube::Error> {
    let meta = s.meta();
    let (ns, name) = (
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    );
    let ips: Vec<String> = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip)
        .collect();
    if !ips.is_empty() {
        return Ok(finding(
            "service",
            ns,
            name,
            State::Ready,
            format!("on {}", ips.join(", ")),
        ));
    }
    // MetalLB says why in the Service's events.
    let events: Api<Event> = Api::namespaced(client.clone(), ns.unwrap_or("default"));
    let ev = events
        .list(&ListParams::default().fields(&format!(
            "involvedObject.name={name},involvedObject.kind=Service"
        )))
        .await?;
    let failed = ev
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("AllocationFailed"))
        .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
    Ok(match (failed, metallb.first()) {
        (Some(e), _) => finding(
            "service",
            ns,
            name,
            State::Failed,
            format!(
                "MetalLB could not allocate an address: {}",
                e.message.clone().unwrap_or_default()
            ),
        ),
        (None, Some(m)) => finding("service", ns, name, State::Failed, m.clone()),
        (None, None) => finding(
            "service",
            ns,
            name,
            State::Progressing,
            "no external address yet (is MetalLB running, and is the address in a pool?)".into(),
        ),
    })
}

async fn ingress(client: &Client, ing: &Ingress) -> Result<Finding, kube::Error> {
    let meta = ing.meta();
    let (ns, name) = (
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default(),
    );
    // host → backend services.
    let mut backends: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rule in ing
        .spec
        .as_ref()
        .and_then(|s| s.rules.clone())
        .unwrap_or_default()
    {
        for p in rule.http.map(|h| h.paths).unwrap_or_default() {
            if let Some(svc) = p.backend.service {
                backends
                    .entry(rule.host.clone().unwrap_or_else(|| "*".into()))
                    .or_default()
                    .push(svc.name);
            }
        }
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let mut empty = Vec::new();
    for (host, svcs) in &backends {
        for svc in svcs {
            let l = slices
                .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc}")))
                .await?;
            let ready = l
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .any(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true));
            if !ready {
                empty.push(format!("{host} → {svc}"));
            }
        }
    }
    Ok(if empty.is_empty() {
        finding(
            "ingress",
            Some(ns),
            name,
            State::Ready,
            "every backend has a ready endpoint".into(),
        )
    } else {
        finding(
            "ingress",
            Some(ns),
            name,
            State::Progressing,
            format!("no ready endpoint behind {}", empty.join(", ")),
        )
    })
}

/// Checks until nothing is progressing or `timeout` passes; what still progresses then is
/// reported as failed (stuck), with its last message.
pub async fn wait(
    client: &Client,
    applyset: &str,
    timeout: Duration,
) -> Result<Vec<Finding>, kube::Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut found = check(client, applyset).await?;
        let progressing = found.iter().any(|f| f.state == State::Progressing);
        if !progressing {
            return Ok(found);
        }
        if tokio::time::Instant::now() >= deadline {
            for f in &mut found {
                if f.state == State::Progressing {
                    f.state = State::Failed;
                    f.message = format!("not ready after {}s: {}", timeout.as_secs(), f.message);
                }
            }
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_secs(2).min(timeout)).await;
    }
}
