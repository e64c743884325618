//! Health of what cloudlet applied: rollouts like `kubectl rollout status`, for every object
//! at once, plus the failures people chase by hand — a LoadBalancer Service MetalLB gave no
//! address (with MetalLB's own reason from its events and ConfigurationState), an ingress
//! host whose backend has no ready endpoint, a claim that is not bound.

use std::collections::BTreeMap;
use std::time::Duration;

use cloudlet_core::{Domain, ResourceId};
use futures::future::try_join_all;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Service};
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
    let daemons: Api<DaemonSet> = Api::all(client.clone());
    let (d, ss, ds, s, i, c) = futures::try_join!(
        deployments.list(&lp),
        sets.list(&lp),
        daemons.list(&lp),
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
    for d in &ds.items {
        out.push(daemon_set(d));
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

pub(crate) fn deployment(d: &Deployment) -> Finding {
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

pub(crate) fn daemon_set(d: &DaemonSet) -> Finding {
    let meta = d.meta();
    let (ns, name) = (
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    );
    let st = d.status.clone().unwrap_or_default();
    let want = st.desired_number_scheduled;
    let (state, message) = if st.observed_generation.unwrap_or(0) < meta.generation.unwrap_or(0) {
        (
            State::Progressing,
            "waiting for the controller to see the new spec".into(),
        )
    } else if st.updated_number_scheduled.unwrap_or(0) < want {
        (
            State::Progressing,
            format!(
                "{} of {want} nodes run the new pods",
                st.updated_number_scheduled.unwrap_or(0)
            ),
        )
    } else if st.number_available.unwrap_or(0) < want {
        (
            State::Progressing,
            format!(
                "{} of {want} nodes' pods available",
                st.number_available.unwrap_or(0)
            ),
        )
    } else {
        (
            State::Ready,
            format!("{want} of {want} nodes' pods available"),
        )
    };
    finding("daemonset", ns, name, state, message)
}

/// What keeps the pods `selector` picks in `ns` from being ready, one line per pod that is
/// not: the scheduler's message for a pending pod, a container's waiting reason
/// (ImagePullBackOff, CrashLoopBackOff) with its message, a failed readiness. Empty when
/// every pod is ready; one line saying so when there are no pods at all.
pub async fn pod_problems(client: &Client, ns: &str, selector: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(selector).limit(50);
    let list = match pods.list(&lp).await {
        Ok(l) => l,
        Err(e) => return vec![format!("its pods could not be listed: {e}")],
    };
    if list.items.is_empty() {
        return vec![format!(
            "no pods match {selector} in {ns} (none were made: is the controller manager running, and does a node match?)"
        )];
    }
    let mut out = Vec::new();
    for p in &list.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        let st = p.status.clone().unwrap_or_default();
        let cond = |t: &str| {
            st.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == t)
                .cloned()
        };
        if let Some(c) = cond("PodScheduled").filter(|c| c.status == "False") {
            out.push(format!(
                "pod {ns}/{name}: Pending: {}",
                c.message.unwrap_or_else(|| c.reason.unwrap_or_default())
            ));
            continue;
        }
        let statuses = st
            .init_container_statuses
            .iter()
            .flatten()
            .chain(st.container_statuses.iter().flatten());
        let mut said = false;
        for cs in statuses {
            let state = cs.state.clone().unwrap_or_default();
            if let Some(w) = state.waiting {
                let reason = w.reason.unwrap_or_else(|| "Waiting".into());
                let last = cs
                    .last_state
                    .as_ref()
                    .and_then(|l| l.terminated.as_ref())
                    .map(|t| {
                        format!(
                            " (last exit {}{})",
                            t.exit_code,
                            t.reason
                                .as_deref()
                                .map(|r| format!(", {r}"))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                out.push(format!(
                    "pod {ns}/{name}: container {}: {reason}{}{last}",
                    cs.name,
                    w.message.map(|m| format!(": {m}")).unwrap_or_default()
                ));
                said = true;
            } else if let Some(t) = state.terminated
                && t.exit_code != 0
            {
                out.push(format!(
                    "pod {ns}/{name}: container {}: exited {}{}",
                    cs.name,
                    t.exit_code,
                    t.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                ));
                said = true;
            }
        }
        let ready = cond("Ready").is_some_and(|c| c.status == "True");
        if !said && !ready {
            out.push(format!(
                "pod {ns}/{name}: {} and not ready{}",
                st.phase.clone().unwrap_or_else(|| "Pending".into()),
                cond("Ready")
                    .and_then(|c| c.message)
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}

/// The label selector of a workload's pods (`a=b,c=d`).
fn selector_of(labels: Option<&BTreeMap<String, String>>) -> String {
    labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits until the workload `kind` (`Deployment`, `DaemonSet`, `StatefulSet`) `ns/name` is
/// rolled out and available, checking every `every`. After `window` the error says what it
/// last was and what keeps each pod from being ready.
pub async fn wait_ready(
    client: &Client,
    kind: &str,
    ns: &str,
    name: &str,
    window: Duration,
    every: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + window;
    loop {
        let (f, selector) = match kind {
            "Deployment" => {
                let d = Api::<Deployment>::namespaced(client.clone(), ns)
                    .get(name)
                    .await
                    .map_err(|e| format!("reading deployment {ns}/{name}: {e}"))?;
                let sel = selector_of(d.spec.selector.match_labels.as_ref());
                (deployment(&d), sel)
            }
            "DaemonSet" => {
                let d = Api::<DaemonSet>::namespaced(client.clone(), ns)
                    .get(name)
                    .await
                    .map_err(|e| format!("reading daemonset {ns}/{name}: {e}"))?;
                let sel = selector_of(d.spec.selector.match_labels.as_ref());
                (daemon_set(&d), sel)
            }
            "StatefulSet" => {
                let s = Api::<StatefulSet>::namespaced(client.clone(), ns)
                    .get(name)
                    .await
                    .map_err(|e| format!("reading statefulset {ns}/{name}: {e}"))?;
                let sel = selector_of(s.spec.selector.match_labels.as_ref());
                (stateful_set(&s), sel)
            }
            _ => return Ok(()),
        };
        if f.state == State::Ready {
            return Ok(());
        }
        if f.state == State::Failed || tokio::time::Instant::now() >= deadline {
            let pods = pod_problems(client, ns, &selector).await;
            return Err(format!(
                "{} {ns}/{name} is not ready after {}s: {}{}",
                kind.to_ascii_lowercase(),
                window.as_secs(),
                f.message,
                if pods.is_empty() {
                    String::new()
                } else {
                    format!("; {}", pods.join("; "))
                }
            ));
        }
        tokio::time::sleep(every).await;
    }
}

/// The addresses a LoadBalancer Service's status publishes.
pub fn load_balancer_ips(s: &Service) -> Vec<String> {
    s.status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
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
    let ips = load_balancer_ips(s);
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
