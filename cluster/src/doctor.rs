//! `cloudlet doctor`'s cluster checks: nodes Ready, pods stuck in a state they will not
//! leave by themselves (the kubernetes-mixin alert rules' states and thresholds), the lab's
//! objects (rollouts, addresses, claims), the LoadBalancer addresses answering from where
//! cloudlet runs, and the certificates actually served (the API server's, each ingress
//! host's on its address).
//!
//! Every function reads the cluster once and returns findings; the facade runs them at once
//! with time limits.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use cloudlet_core::Domain;
use cloudlet_core::doctor::{Finding, Status, Thresholds, span};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt as _};

use cloudlet_core::error::chain;

use crate::health::{self, State};
use crate::kube_provider::PART_OF_LABEL;

const D: Option<Domain> = Some(Domain::Cluster);

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

fn since(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>, now: i64) -> u64 {
    t.map_or(0, |t| u64::try_from(now - t.0.as_second()).unwrap_or(0))
}

/// Every node: Ready, or why not and since when; cordoned or under pressure is a warning.
pub async fn nodes(client: &Client, now: i64) -> Result<Vec<Finding>, kube::Error> {
    let list = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    if list.items.is_empty() {
        return Ok(vec![
            Finding::new(
                "cluster.node",
                D,
                "nodes",
                Status::Fail,
                "the cluster has no nodes: nothing can run",
            )
            .fix("join the nodes (`cloudlet apply` for a cluster the lab makes)"),
        ]);
    }
    Ok(list.items.iter().map(|n| node(n, now)).collect())
}

/// One node's finding.
pub fn node(n: &Node, now: i64) -> Finding {
    let name = n.name_any();
    let subject = format!("node {name}");
    let conds = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let ready = conds.iter().find(|c| c.type_ == "Ready");
    match ready {
        Some(c) if c.status == "True" => {}
        other => {
            let (why, how_long) = other.map_or_else(
                || ("it has not reported yet".to_string(), 0),
                |c| {
                    (
                        format!(
                            "Ready is {}{}",
                            c.status,
                            c.message
                                .as_deref()
                                .or(c.reason.as_deref())
                                .map(|m| format!(": {m}"))
                                .unwrap_or_default()
                        ),
                        since(c.last_transition_time.as_ref(), now),
                    )
                },
            );
            return Finding::new(
                "cluster.node",
                D,
                subject,
                Status::Fail,
                format!("not Ready for {}: {why}", span(how_long)),
            )
            .fix(format!(
                "on {name}: `systemctl status kubelet` and `journalctl -u kubelet`; its pods are evicted after 5 minutes"
            ));
        }
    }
    let pressure: Vec<&str> = conds
        .iter()
        .filter(|c| c.type_.ends_with("Pressure") && c.status == "True")
        .map(|c| c.type_.as_str())
        .collect();
    if !pressure.is_empty() {
        return Finding::new(
            "cluster.node",
            D,
            subject,
            Status::Warn,
            format!("Ready, under {}", pressure.join(", ")),
        )
        .fix(format!(
            "free memory or disk on {name}: the kubelet evicts pods while it lasts"
        ));
    }
    if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        return Finding::new(
            "cluster.node",
            D,
            subject,
            Status::Warn,
            "Ready, cordoned: no new pods are placed on it",
        )
        .fix(format!(
            "`kubectl uncordon {name}` when its maintenance is over"
        ));
    }
    Finding::ok("cluster.node", D, subject, "Ready")
}

/// Every pod of the cluster, and the names of the nodes that are not Ready.
async fn pods_and_unready(
    client: &Client,
    now: i64,
) -> Result<(Vec<Pod>, Vec<String>), kube::Error> {
    let (pod_api, node_api, lp) = (
        Api::<Pod>::all(client.clone()),
        Api::<Node>::all(client.clone()),
        ListParams::default(),
    );
    let (pods, nodes) = futures::try_join!(pod_api.list(&lp), node_api.list(&lp))?;
    let not_ready = nodes
        .items
        .iter()
        .filter(|n| node(n, now).status == Status::Fail)
        .map(|n| n.name_any())
        .collect();
    Ok((pods.items, not_ready))
}

/// Every pod of the cluster that is stuck; one ok finding with the count when none is.
pub async fn pods(client: &Client, th: &Thresholds, now: i64) -> Result<Vec<Finding>, kube::Error> {
    let (pods, not_ready) = pods_and_unready(client, now).await?;
    let mut out: Vec<Finding> = pods
        .iter()
        .filter_map(|p| stuck(p, th, now, &not_ready))
        .collect();
    if out.is_empty() {
        out.push(Finding::ok(
            "cluster.pod",
            D,
            "pods",
            format!("{} pods, none stuck", pods.len()),
        ));
    }
    Ok(out)
}

/// Why `p` is stuck, or `None` when it is where it should be or still on its way within the
/// thresholds. `not_ready` names the nodes that are not Ready (a pod stuck Terminating there
/// waits for its node).
pub fn stuck(p: &Pod, th: &Thresholds, now: i64, not_ready: &[String]) -> Option<Finding> {
    let ns = p.namespace().unwrap_or_default();
    let name = p.name_any();
    let subject = format!("pod {ns}/{name}");
    let st = p.status.clone().unwrap_or_default();
    let phase = st.phase.clone().unwrap_or_else(|| "Pending".into());
    let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
    let fail = |evidence: String, fix: String| {
        Some(Finding::new("cluster.pod", D, subject.clone(), Status::Fail, evidence).fix(fix))
    };
    // Stuck Terminating: its deletion's grace period is over and it is still there.
    if let Some(deleted) = &p.metadata.deletion_timestamp {
        let over = now - deleted.0.as_second();
        if over > i64::try_from(th.terminating).unwrap_or(i64::MAX) {
            let finalizers = p.finalizers();
            let mut why = Vec::new();
            if !finalizers.is_empty() {
                why.push(format!("finalizers {}", finalizers.join(", ")));
            }
            if let Some(n) = node.as_ref().filter(|n| not_ready.contains(n)) {
                why.push(format!("its node {n} is not Ready"));
            }
            if why.is_empty() {
                why.push("its kubelet has not confirmed it stopped (a hung NFS unmount?)".into());
            }
            return fail(
                format!(
                    "Terminating {} past its grace period: {}",
                    span(over.unsigned_abs()),
                    why.join("; ")
                ),
                format!(
                    "find what holds it (`kubectl -n {ns} describe pod {name}`); if its node is gone for good: `kubectl -n {ns} delete pod {name} --force --grace-period=0`"
                ),
            );
        }
        return None;
    }
    if phase == "Succeeded" {
        return None;
    }
    let cond = |t: &str| st.conditions.iter().flatten().find(|c| c.type_ == t);
    let age = since(p.metadata.creation_timestamp.as_ref(), now);
    if phase == "Unknown" {
        return fail(
            format!(
                "phase Unknown: its node {} stopped reporting",
                node.as_deref().unwrap_or("?")
            ),
            "bring the node back, or remove it from the cluster so the pod is replaced".into(),
        );
    }
    if phase == "Failed" {
        let job = p
            .owner_references()
            .iter()
            .any(|o| o.kind == "Job" || o.kind == "CronJob");
        if job {
            // A Job's failed pods are its history; the Job's own status says more.
            return None;
        }
        return Some(
            Finding::new(
                "cluster.pod",
                D,
                subject.clone(),
                Status::Warn,
                format!(
                    "Failed{}",
                    st.reason
                        .as_deref()
                        .map(|r| format!(
                            ": {r}{}",
                            st.message
                                .as_deref()
                                .map(|m| format!(" ({m})"))
                                .unwrap_or_default()
                        ))
                        .unwrap_or_default()
                ),
            )
            .fix(format!(
                "a failed pod is not restarted: `kubectl -n {ns} delete pod {name}` once its cause is read"
            )),
        );
    }
    // Not scheduled.
    if let Some(c) = cond("PodScheduled").filter(|c| c.status == "False") {
        let waited = since(c.last_transition_time.as_ref(), now).max(age);
        if waited > th.pending {
            return fail(
                format!(
                    "Pending {}, not scheduled: {}",
                    span(waited),
                    c.message
                        .clone()
                        .or_else(|| c.reason.clone())
                        .unwrap_or_default()
                ),
                "give the scheduler somewhere to place it: free capacity, a matching node, a bindable claim".into(),
            );
        }
        return None;
    }
    // Containers waiting to run.
    let statuses = st
        .init_container_statuses
        .iter()
        .flatten()
        .chain(st.container_statuses.iter().flatten());
    for cs in statuses {
        let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = w.reason.clone().unwrap_or_else(|| "Waiting".into());
        let message = w
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let last = cs
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .map(|t| {
                format!(
                    "; last exit {}{}",
                    t.exit_code,
                    t.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        let evidence = format!(
            "container {}: {reason}{message}, {} restarts{last}",
            cs.name, cs.restart_count
        );
        match reason.as_str() {
            "CrashLoopBackOff" => {
                let status = if cs.restart_count >= 3 {
                    Status::Fail
                } else {
                    Status::Warn
                };
                return Some(
                    Finding::new("cluster.pod", D, subject.clone(), status, evidence).fix(format!(
                        "read why it exits: `kubectl -n {ns} logs {name} -c {} --previous`",
                        cs.name
                    )),
                );
            }
            "InvalidImageName" | "CreateContainerConfigError" | "CreateContainerError" => {
                return fail(
                    evidence,
                    format!(
                        "it cannot start as declared: fix the image or the Secret/ConfigMap it names (`kubectl -n {ns} describe pod {name}`)"
                    ),
                );
            }
            _ => {
                let waited = cond("PodScheduled")
                    .map_or(age, |c| since(c.last_transition_time.as_ref(), now));
                if waited > th.waiting {
                    let hint = match reason.as_str() {
                        "ImagePullBackOff" | "ErrImagePull" => {
                            "the image cannot be pulled: its name, tag, registry credentials, or the registry mirror"
                        }
                        "ContainerCreating" | "PodInitializing" => {
                            "often a volume that does not mount (an NFS export refused to the node): `kubectl describe pod` shows the mount error"
                        }
                        _ => "`kubectl describe pod` shows the kubelet's events",
                    };
                    return fail(
                        format!("{evidence}, for {}", span(waited)),
                        format!("{hint} (`kubectl -n {ns} describe pod {name}`)"),
                    );
                }
                if matches!(reason.as_str(), "ImagePullBackOff" | "ErrImagePull") {
                    return Some(
                        Finding::new("cluster.pod", D, subject.clone(), Status::Warn, evidence)
                            .fix("check the image's name and tag, and the registry"),
                    );
                }
            }
        }
    }
    // Running but not Ready: looks alive, serves nothing.
    if phase == "Running"
        && let Some(c) = cond("Ready").filter(|c| c.status == "False")
    {
        let how_long = since(c.last_transition_time.as_ref(), now);
        if how_long > th.not_ready {
            return fail(
                format!(
                    "Running but not Ready for {}{}",
                    span(how_long),
                    c.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                format!(
                    "its readiness probe fails: `kubectl -n {ns} describe pod {name}` shows the probe's last answer"
                ),
            );
        }
    }
    if phase == "Pending" && age > th.pending && cond("Ready").is_none_or(|c| c.status != "True") {
        return fail(
            format!(
                "Pending for {} on node {}",
                span(age),
                node.as_deref().unwrap_or("?")
            ),
            format!("`kubectl -n {ns} describe pod {name}` shows what it waits for"),
        );
    }
    None
}

/// Whether deleting `p` would unstick it: it is stuck (see [`stuck`]) in a state a new pod
/// does not inherit — a volume that never mounted, an image pull that never came, running
/// but never Ready, a lost node, evicted — and a controller (ReplicaSet, StatefulSet,
/// DaemonSet, Job) makes it again. A pod nobody remakes, one being deleted, or one that
/// cannot be placed is left alone.
pub fn deletable(p: &Pod, th: &Thresholds, now: i64, not_ready: &[String]) -> bool {
    let owned = p
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true));
    if !owned || p.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(f) = stuck(p, th, now, not_ready) else {
        return false;
    };
    f.status == Status::Fail
        && !f.evidence.contains("not scheduled")
        && !f.evidence.contains("CreateContainerConfigError")
        && !f.evidence.contains("InvalidImageName")
}

/// Deletes (or, with `dry_run`, names) every pod [`deletable`] finds: `namespace/name` with
/// the outcome of each.
pub async fn delete_stuck(
    client: &Client,
    th: &Thresholds,
    now: i64,
    dry_run: bool,
) -> Result<Vec<(String, Result<(), kube::Error>)>, kube::Error> {
    let (pods, not_ready) = pods_and_unready(client, now).await?;
    let mut out = Vec::new();
    for p in pods.iter().filter(|p| deletable(p, th, now, &not_ready)) {
        let ns = p.namespace().unwrap_or_default();
        let name = p.name_any();
        let r = if dry_run {
            Ok(())
        } else {
            Api::<Pod>::namespaced(client.clone(), &ns)
                .delete(&name, &Default::default())
                .await
                .map(|_| ())
        };
        out.push((format!("{ns}/{name}"), r));
    }
    Ok(out)
}

/// The lab's objects as `status` sees them: every one that is not ready, one finding each;
/// one ok finding with the count of the ready ones. A Progressing object is a warning (it may
/// get there), a Failed one a failure.
pub async fn objects(client: &Client, applyset: &str) -> Result<Vec<Finding>, kube::Error> {
    let found = health::check(client, applyset).await?;
    let ready = found.iter().filter(|f| f.state == State::Ready).count();
    let mut out: Vec<Finding> = found
        .iter()
        .filter(|f| f.state != State::Ready)
        .map(|f| {
            let status = if f.state == State::Failed {
                Status::Fail
            } else {
                Status::Warn
            };
            Finding::new(
                "cluster.object",
                D,
                format!("{} {}", f.id.kind, f.id.name),
                status,
                f.message.clone(),
            )
            .fix("`cloudlet status --wait 5m` follows it; `kubectl describe` shows its events")
        })
        .collect();
    out.push(Finding::ok(
        "cluster.object",
        D,
        "objects",
        format!("{ready} of {} of the lab's objects ready", found.len()),
    ));
    Ok(out)
}

/// Every TCP port of the lab's LoadBalancer Services, connected to on its address from
/// where cloudlet runs (MetalLB announces it, so it must answer here).
pub async fn vips(
    client: &Client,
    applyset: &str,
    limit: Duration,
) -> Result<Vec<Finding>, kube::Error> {
    let lp = ListParams::default().labels(&format!("{PART_OF_LABEL}={applyset}"));
    let services = Api::<Service>::all(client.clone()).list(&lp).await?;
    let mut probes = Vec::new();
    for s in &services.items {
        let spec = s.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() != Some("LoadBalancer") {
            continue;
        }
        for ip in health::load_balancer_ips(s)
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
        {
            for p in spec.ports.iter().flatten() {
                if p.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                    continue;
                }
                let Ok(port) = u16::try_from(p.port) else {
                    continue;
                };
                let svc = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
                probes.push((SocketAddr::new(ip, port), svc));
            }
        }
    }
    let checks = probes.into_iter().map(|(addr, svc)| async move {
        let subject = format!("vip {addr} ({svc})");
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Finding::ok("cluster.vip", D, subject, "accepts connections"),
            Ok(Err(e)) => Finding::new(
                "cluster.vip",
                D,
                subject,
                Status::Fail,
                format!("connecting: {e}"),
            )
            .fix(format!(
                "the address is announced but nothing answers: is {svc} backed by ready pods, and does `cloudlet status` show the node announcing it?"
            )),
            Err(_) => Finding::new(
                "cluster.vip",
                D,
                subject,
                Status::Fail,
                format!("no answer within {}s", limit.as_secs()),
            )
            .fix(
                "nothing answers ARP for it here: is MetalLB's speaker running on a node of this segment, and is the address in a pool of the segment cloudlet runs on?",
            ),
        }
    });
    Ok(futures::future::join_all(checks).await)
}

/// The certificate served at `addr` for `host`: how long it has left, and whether it names
/// the host. `subject` names the finding.
pub async fn served_certificate(
    subject: String,
    addr: SocketAddr,
    host: &str,
    th: &Thresholds,
    now: i64,
    limit: Duration,
) -> Finding {
    match cloudlet_transport::served::served(addr, host, limit).await {
        Err(e) => Finding::new(
            "cluster.certificate",
            D,
            subject,
            Status::Fail,
            cloudlet_core::error::chain(&e),
        )
        .fix(format!("nothing serves TLS for {host} at {addr}")),
        Ok(c) => certificate_finding(subject, host, &c, th, now),
    }
}

/// A served certificate judged: names the host, how long it has left.
pub fn certificate_finding(
    subject: String,
    host: &str,
    c: &cloudlet_transport::served::Served,
    th: &Thresholds,
    now: i64,
) -> Finding {
    let left = c.not_after - now;
    let days = left.div_euclid(86_400);
    let until = k8s_openapi::jiff::Timestamp::from_second(c.not_after)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| c.not_after.to_string());
    if !c.covers(host) {
        return Finding::new(
            "cluster.certificate",
            D,
            subject,
            Status::Fail,
            format!(
                "serves a certificate for {} (issuer {}), not for {host}",
                if c.dns_names.is_empty() {
                    c.subject.clone()
                } else {
                    c.dns_names.join(", ")
                },
                c.issuer
            ),
        )
        .fix(
            "the ingress controller serves its default certificate: is the host's TLS Secret issued (`kubectl get certificate -A`)?",
        );
    }
    let evidence = |s: &str| format!("{s} (until {until}, issuer {})", c.issuer);
    let renew = "renew it: cert-manager renews 30 days ahead (`kubectl get certificate -A`); a kubeadm control plane: `kubeadm certs renew all`";
    if left <= 0 {
        Finding::new(
            "cluster.certificate",
            D,
            subject,
            Status::Fail,
            evidence(&format!("expired {} ago", span(left.unsigned_abs()))),
        )
        .fix(renew)
    } else if days < i64::try_from(th.cert_fail_days).unwrap_or(i64::MAX) {
        Finding::new(
            "cluster.certificate",
            D,
            subject,
            Status::Fail,
            evidence(&format!("expires in {}", span(left.unsigned_abs()))),
        )
        .fix(renew)
    } else if days < i64::try_from(th.cert_warn_days).unwrap_or(i64::MAX) {
        Finding::new(
            "cluster.certificate",
            D,
            subject,
            Status::Warn,
            evidence(&format!("expires in {days} days")),
        )
        .fix(renew)
    } else {
        Finding::ok(
            "cluster.certificate",
            D,
            subject,
            evidence(&format!("valid for {days} more days")),
        )
    }
}

/// The serving certificate of each Ready node's kubelet, read on its address and port as
/// the node reports them (`InternalIP`, the kubelet endpoint, else 10250): a kubelet's
/// self-signed certificate lasts a year and is not renewed by `kubeadm certs renew`. Nodes
/// not Ready are left to their own finding.
pub async fn kubelet_certificates(
    client: &Client,
    th: &Thresholds,
    now: i64,
    limit: Duration,
) -> Result<Vec<Finding>, kube::Error> {
    let list = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let probes: Vec<_> = list
        .items
        .iter()
        .filter(|n| node(n, now).status != Status::Fail)
        .filter_map(|n| {
            let st = n.status.as_ref()?;
            let ip: IpAddr = st
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .parse()
                .ok()?;
            let port = st
                .daemon_endpoints
                .as_ref()
                .and_then(|d| d.kubelet_endpoint.as_ref())
                .map_or(10250, |e| e.port);
            let port = u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .unwrap_or(10250);
            let name = n.name_any();
            Some(async move {
                served_certificate(
                    format!("kubelet {name}"),
                    SocketAddr::new(ip, port),
                    &name,
                    th,
                    now,
                    limit,
                )
                .await
            })
        })
        .collect();
    Ok(futures::future::join_all(probes).await)
}

/// The certificate each of the lab's Ingresses serves for each of its TLS hosts, read on
/// port 443 of the address its status publishes.
pub async fn ingress_certificates(
    client: &Client,
    applyset: &str,
    th: &Thresholds,
    now: i64,
    limit: Duration,
) -> Result<Vec<Finding>, kube::Error> {
    let lp = ListParams::default().labels(&format!("{PART_OF_LABEL}={applyset}"));
    let ingresses = Api::<Ingress>::all(client.clone()).list(&lp).await?;
    let mut probes = Vec::new();
    for i in &ingresses.items {
        let ip: Option<IpAddr> = i
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .find_map(|x| x.ip.as_deref()?.parse().ok());
        let hosts: Vec<String> = i
            .spec
            .as_ref()
            .and_then(|s| s.tls.clone())
            .into_iter()
            .flatten()
            .flat_map(|t| t.hosts.unwrap_or_default())
            .collect();
        for h in hosts {
            probes.push((
                ip,
                h,
                format!("{}/{}", i.namespace().unwrap_or_default(), i.name_any()),
            ));
        }
    }
    let checks = probes.into_iter().map(|(ip, host, ing)| async move {
        let subject = format!("https://{host}");
        match ip {
            None => Finding::new(
                "cluster.certificate",
                D,
                subject,
                Status::Fail,
                format!("ingress {ing} has no address in its status: nothing serves {host}"),
            )
            .fix("is the ingress controller running, and did MetalLB give its Service an address?"),
            Some(ip) => {
                served_certificate(subject, SocketAddr::new(ip, 443), &host, th, now, limit).await
            }
        }
    });
    Ok(futures::future::join_all(checks).await)
}

/// One etcd member's answer to `POST /v3/maintenance/status` (its JSON gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdStatus {
    /// Its member id.
    pub member: String,
    /// The leader's member id (`0`: none).
    pub leader: String,
    /// Its version.
    pub version: String,
    /// Its database's size in bytes.
    pub db_size: u64,
    /// Its alarms and errors (`NOSPACE`, a corrupt member).
    pub errors: Vec<String>,
}

/// Reads a status answer; `None` when it is not one.
pub fn etcd_status(v: &serde_json::Value) -> Option<EtcdStatus> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Some(EtcdStatus {
        member: text(&v["header"]["member_id"])?,
        leader: text(&v["leader"]).unwrap_or_else(|| "0".into()),
        version: v["version"]
            .as_str()
            .unwrap_or("?")
            .chars()
            .take(32)
            .collect(),
        db_size: text(&v["dbSize"]).and_then(|s| s.parse().ok()).unwrap_or(0),
        errors: v["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .take(16)
            .filter_map(|e| e.as_str().map(|s| s.chars().take(300).collect()))
            .collect(),
    })
}

/// etcd's members, asked through their client addresses with the client certificate `tls`
/// carries: each member's status (reachable, its version, its leader, its alarms), then the
/// quorum — how many of the members the cluster lists answer, against how many it needs.
/// `members` are `(name, https://ADDRESS:2379)`.
pub async fn etcd(
    members: &[(String, String)],
    tls: &cloudlet_transport::tls::rustls::ClientConfig,
    limit: Duration,
) -> Vec<Finding> {
    use cloudlet_transport::http::{Http, Method};
    let ask = |url: String, path: &'static str| {
        let tls = tls.clone();
        async move {
            let http = Http::with_tls(&url, tls, Vec::new()).map_err(|e| chain(&e))?;
            match tokio::time::timeout(
                limit,
                http.json(Method::POST, path, Some(&serde_json::json!({}))),
            )
            .await
            {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(chain(&e)),
                Err(_) => Err(format!("no answer within {}s", limit.as_secs())),
            }
        }
    };
    let statuses = futures::future::join_all(members.iter().map(|(name, url)| {
        let ask = &ask;
        async move {
            (
                name.clone(),
                url.clone(),
                ask(url.clone(), "/v3/maintenance/status").await,
            )
        }
    }))
    .await;
    let mut out = Vec::new();
    let mut answering = 0usize;
    let mut leaders = std::collections::BTreeSet::new();
    let mut listed: Option<usize> = None;
    for (name, url, answer) in &statuses {
        let subject = format!("etcd {name}");
        let st = match answer {
            Err(e) => {
                out.push(
                    Finding::new("cluster.etcd", D, subject, Status::Fail, format!("{url}: {e}"))
                        .fix(format!(
                            "on {name}: is etcd running (`crictl ps --name etcd`, its static pod's log)?"
                        )),
                );
                continue;
            }
            Ok(v) => match etcd_status(v) {
                Some(st) => st,
                None => {
                    out.push(Finding::new(
                        "cluster.etcd",
                        D,
                        subject,
                        Status::Fail,
                        format!("{url} answered something that is not etcd's status"),
                    ));
                    continue;
                }
            },
        };
        answering += 1;
        if st.leader != "0" {
            leaders.insert(st.leader.clone());
        }
        if listed.is_none()
            && let Ok(v) = ask(url.clone(), "/v3/cluster/member/list").await
        {
            listed = v["members"].as_array().map(Vec::len);
        }
        let role = if st.leader == st.member {
            "the leader".to_string()
        } else if st.leader == "0" {
            "without a leader".to_string()
        } else {
            "a follower".to_string()
        };
        let evidence = format!(
            "etcd {}, {role}, database {} MiB",
            st.version,
            st.db_size.div_ceil(1 << 20)
        );
        out.push(if st.errors.is_empty() && st.leader != "0" {
            Finding::ok("cluster.etcd", D, subject, evidence)
        } else if st.errors.is_empty() {
            Finding::new("cluster.etcd", D, subject, Status::Fail, evidence)
                .fix("a member without a leader cannot serve writes: is a majority of members up and reaching each other on port 2380?")
        } else {
            Finding::new(
                "cluster.etcd",
                D,
                subject,
                Status::Fail,
                format!("{evidence}; alarms: {}", st.errors.join("; ")),
            )
            .fix("NOSPACE: compact and defragment (`etcdctl defrag`), then `etcdctl alarm disarm`")
        });
    }
    let members_n = listed.unwrap_or(0).max(members.len());
    let quorum = members_n / 2 + 1;
    let subject = "etcd quorum";
    out.push(if answering == members_n && leaders.len() == 1 {
        Finding::ok(
            "cluster.etcd",
            D,
            subject,
            format!("{answering} of {members_n} members answer, one leader"),
        )
    } else if answering >= quorum && leaders.len() <= 1 {
        Finding::new(
            "cluster.etcd",
            D,
            subject,
            Status::Warn,
            format!(
                "{answering} of {members_n} members answer: quorum holds ({quorum} needed), {} more lost loses it",
                answering + 1 - quorum
            ),
        )
        .fix("bring the member back, or replace it (`cloudlet apply` rejoins a reinstalled control plane)")
    } else {
        Finding::new(
            "cluster.etcd",
            D,
            subject,
            Status::Fail,
            format!(
                "{answering} of {members_n} members answer, {quorum} needed: quorum is lost, the API server cannot write"
            ),
        )
        .fix("bring members back until a majority runs; if they are gone for good, `cloudlet restore` from the cluster's etcd snapshot")
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn at(ago: i64) -> String {
        k8s_openapi::jiff::Timestamp::from_second(NOW - ago)
            .unwrap()
            .to_string()
    }

    fn pod(v: serde_json::Value) -> Pod {
        let mut base = json!({"metadata": {"name": "p", "namespace": "apps",
            "creationTimestamp": at(3 * 3600)}, "spec": {"containers": [], "nodeName": "n1"}});
        merge(&mut base, v);
        serde_json::from_value(base).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn judge(p: &Pod) -> Option<(Status, String)> {
        stuck(p, &Thresholds::default(), NOW, &["gone".to_string()]).map(|f| (f.status, f.evidence))
    }

    #[test]
    fn healthy_and_young_pods_are_not_stuck() {
        let running = pod(json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": at(7200)}]}}));
        assert_eq!(judge(&running), None);
        let not_ready_briefly = pod(json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": at(60)}]}}));
        assert_eq!(judge(&not_ready_briefly), None);
        let creating_briefly = pod(json!({"metadata": {"creationTimestamp": at(120)},
            "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": at(110)}],
            "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false,
              "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}}));
        assert_eq!(judge(&creating_briefly), None);
        let done = pod(json!({"status": {"phase": "Succeeded"}}));
        assert_eq!(judge(&done), None);
        let job_failed = pod(
            json!({"metadata": {"ownerReferences": [{"apiVersion": "batch/v1",
            "kind": "Job", "name": "j", "uid": "u"}]}, "status": {"phase": "Failed"}}),
        );
        assert_eq!(judge(&job_failed), None);
    }

    #[test]
    fn each_stuck_state_is_named_with_its_evidence() {
        let crash = pod(
            json!({"status": {"phase": "Running", "containerStatuses": [{"name": "web",
            "image": "i", "imageID": "", "ready": false, "restartCount": 7,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}),
        );
        let (s, e) = judge(&crash).unwrap();
        assert_eq!(s, Status::Fail);
        assert!(
            e.contains("CrashLoopBackOff")
                && e.contains("7 restarts")
                && e.contains("last exit 1 (Error)"),
            "{e}"
        );

        let unscheduled = pod(json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available", "lastTransitionTime": at(3600)}]}}));
        let (s, e) = judge(&unscheduled).unwrap();
        assert_eq!(s, Status::Fail);
        assert!(
            e.starts_with("Pending 3h, not scheduled: 0/3 nodes are available"),
            "{e}"
        );

        let mount = pod(json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": at(2 * 3600)}],
            "containerStatuses": [{"name": "db", "image": "i", "imageID": "", "ready": false,
              "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}}));
        let f = stuck(&mount, &Thresholds::default(), NOW, &[]).unwrap();
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.evidence.contains("ContainerCreating") && f.evidence.contains("2h"),
            "{}",
            f.evidence
        );
        assert!(f.fix.unwrap().contains("NFS"));

        let zombie = pod(json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False", "message": "containers with unready status: [web]",
             "lastTransitionTime": at(40 * 60)}]}}));
        let (s, e) = judge(&zombie).unwrap();
        assert_eq!(s, Status::Fail);
        assert!(e.starts_with("Running but not Ready for 40m"), "{e}");

        let hung = pod(json!({"metadata": {"deletionTimestamp": at(20 * 60),
            "finalizers": ["example.com/cleanup"]}, "spec": {"nodeName": "gone"},
            "status": {"phase": "Running"}}));
        let (s, e) = judge(&hung).unwrap();
        assert_eq!(s, Status::Fail);
        assert!(
            e.contains("Terminating 20m")
                && e.contains("example.com/cleanup")
                && e.contains("node gone is not Ready"),
            "{e}"
        );
        let leaving =
            pod(json!({"metadata": {"deletionTimestamp": at(30)}, "status": {"phase": "Running"}}));
        assert_eq!(judge(&leaving), None);

        let lost = pod(json!({"status": {"phase": "Unknown"}}));
        assert_eq!(judge(&lost).unwrap().0, Status::Fail);

        let pull = pod(
            json!({"metadata": {"creationTimestamp": at(60)}, "status": {"phase": "Pending",
            "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false,
              "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}),
        );
        assert_eq!(judge(&pull).unwrap().0, Status::Warn);
    }

    fn cert(names: &[&str], not_after: i64) -> cloudlet_transport::served::Served {
        cloudlet_transport::served::Served {
            subject: "CN=x".into(),
            issuer: "CN=lab CA".into(),
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            ip_addresses: Vec::new(),
            not_before: 0,
            not_after,
        }
    }

    #[test]
    fn certificates_are_judged_by_time_left_and_name() {
        let th = Thresholds::default();
        let f = |c| certificate_finding("s".into(), "git.lab", &c, &th, NOW);
        assert_eq!(f(cert(&["git.lab"], NOW + 90 * 86_400)).status, Status::Ok);
        assert_eq!(
            f(cert(&["git.lab"], NOW + 20 * 86_400)).status,
            Status::Warn
        );
        assert_eq!(f(cert(&["git.lab"], NOW + 3 * 86_400)).status, Status::Fail);
        let expired = f(cert(&["git.lab"], NOW - 86_400));
        assert_eq!(expired.status, Status::Fail);
        assert!(
            expired.evidence.starts_with("expired 1d ago"),
            "{}",
            expired.evidence
        );
        let wrong = f(cert(&["TRAEFIK DEFAULT CERT"], NOW + 90 * 86_400));
        assert_eq!(wrong.status, Status::Fail);
        assert!(wrong.evidence.contains("not for git.lab"));
    }
}
