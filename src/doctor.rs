//! `cloudlet doctor`: every domain's checks against the running lab, all at once, each within
//! a time limit, so half a lab down still answers in the time of one limit. The checks
//! themselves live with their domain ([`cluster::doctor`], [`cloudlet_backup::runs::freshness`]);
//! here they are gathered: each backend reached and observed, drift from one plan over what
//! answered, the machines installing, the backups' age.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use cloudlet_core::doctor::{FINDINGS_FORMAT, Finding, Status, Thresholds, span};
use cloudlet_core::error::chain;
use cloudlet_core::{Domain, Resource};
use futures::StreamExt as _;
use serde::Serialize;

use crate::{Lab, cluster, hypervisor, network, storage};

/// How `doctor` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoctorOptions {
    /// The most one check may take (a backend that does not answer fails its checks after
    /// it, and only its own).
    pub timeout: Duration,
    /// How many checks run at once (1: one after the other).
    pub concurrency: usize,
    /// When a state counts as stuck.
    pub thresholds: Thresholds,
}

impl Default for DoctorOptions {
    fn default() -> DoctorOptions {
        DoctorOptions {
            timeout: Duration::from_secs(10),
            concurrency: 32,
            thresholds: Thresholds::default(),
        }
    }
}

/// How many findings of each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Ok.
    pub ok: usize,
    /// Warnings.
    pub warn: usize,
    /// Failures.
    pub fail: usize,
}

/// What `doctor` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    /// The shape's version ([`FINDINGS_FORMAT`]).
    pub format: u32,
    /// The lab.
    pub lab: String,
    /// The worst finding's status.
    pub status: Status,
    /// Findings per status.
    pub counts: Counts,
    /// How long the checks took, in seconds.
    pub seconds: f64,
    /// Changes from the lab per domain that answered (what `cloudlet plan` would show).
    pub drift: std::collections::BTreeMap<Domain, usize>,
    /// Every finding: by domain (the lab-wide ones last), then check, then subject.
    pub findings: Vec<Finding>,
}

type Check<'a> = Pin<Box<dyn Future<Output = Vec<Finding>> + Send + 'a>>;

impl Lab {
    /// Checks the running lab: each domain's backend reached and observed, drift, the host's
    /// capacity as the hypervisor reports it, the
    /// cluster's nodes, stuck pods, objects, addresses and served certificates, machines
    /// stuck installing, each NAS export mounted over NFS and its free space, and the
    /// backups' age. Never fails: what cannot be checked is a
    /// finding too.
    pub async fn doctor(&self, options: &DoctorOptions) -> Diagnosis {
        let start = Instant::now();
        let limit = options.timeout;
        let drift = std::sync::Mutex::new(std::collections::BTreeMap::new());
        let mut checks: Vec<(&'static str, Option<Domain>, Check<'_>)> = vec![(
            "observe",
            None,
            Box::pin(self.observe_and_drift(limit, &drift)),
        )];
        if self.has_live_cluster() {
            checks.extend(self.cluster_checks(options));
        }
        // Inside the cluster the etcd CA (in the vault), the install records and the backup
        // runs' records (in the state directory) are the applying machine's.
        let here = !self.options.in_cluster;
        if self.makes_cluster() && here {
            checks.push((
                "cluster.etcd",
                Some(Domain::Cluster),
                Box::pin(self.etcd_members(limit / 2)),
            ));
        }
        let hv = &self.model().targets.hypervisor;
        if !self.model().hosts.is_empty()
            && cloudlet_core::backend::find(crate::BACKENDS, hv.kind.as_str())
                .is_some_and(|b| b.can(cloudlet_core::backend::Capability::HostUsage))
        {
            checks.push((
                "hypervisor.capacity",
                Some(Domain::Hypervisor),
                Box::pin(self.host_capacity(&options.thresholds)),
            ));
        }
        if !pxe::network_installs(self.model()).is_empty() && here {
            checks.push((
                "pxe.install",
                Some(Domain::Pxe),
                Box::pin(async move { self.installs_stuck(&options.thresholds) }),
            ));
        }
        // The PXE server runs when the lab's machines do (a hypervisor target), or where
        // `pxe.serve` says.
        if let Some(server) = pxe::doctor::server(self.model()).filter(|_| {
            self.model().targets.hypervisor.kind.as_str() != "local"
                || self.model().pxe.as_ref().is_some_and(|p| p.serve.is_some())
        }) {
            checks.push((
                "pxe.serve",
                Some(Domain::Pxe),
                Box::pin(
                    async move { vec![pxe::doctor::menu(self.model(), server, limit / 2).await] },
                ),
            ));
        }
        if self.model().targets.storage.kind.as_str() != "local"
            && self
                .model()
                .storage
                .as_ref()
                .is_some_and(|s| !s.exports.is_empty())
        {
            checks.push((
                "storage.mount",
                Some(Domain::Storage),
                Box::pin(storage::doctor::exports(
                    self.model(),
                    limit / 2,
                    &options.thresholds,
                )),
            ));
            checks.push((
                "storage.snapshot",
                Some(Domain::Storage),
                Box::pin(self.snapshots_fresh()),
            ));
            if storage::expand(self.model())
                .iter()
                .any(|r| &*r.id.kind == storage::REPLICATION)
            {
                checks.push((
                    "storage.replication",
                    Some(Domain::Storage),
                    Box::pin(self.replications_fresh()),
                ));
            }
        }
        if let Some((resolver, names)) = self.dns_names() {
            checks.push((
                "router.dns",
                Some(Domain::Router),
                Box::pin(async move {
                    network::doctor::names_resolve(resolver, &names, limit / 2).await
                }),
            ));
        }
        if self.model().backup.is_some() {
            checks.push(("backup.fresh", None, Box::pin(self.backups_fresh())));
        }
        // The futures are made first (nothing runs until polled), so the stream holds no
        // closure over borrowed items (which a spawned, `Send` future could not prove).
        let bounded_checks: Vec<_> = checks
            .into_iter()
            .map(|(name, domain, check)| bounded(name, domain, check, limit))
            .collect();
        let mut findings: Vec<Finding> = futures::stream::iter(bounded_checks)
            .buffer_unordered(options.concurrency.max(1))
            .flat_map(futures::stream::iter)
            .collect()
            .await;
        findings.sort_by(|a, b| {
            let d = |f: &Finding| f.domain.map_or(usize::MAX, |d| d as usize);
            (d(a), &a.check, &a.subject).cmp(&(d(b), &b.check, &b.subject))
        });
        let mut counts = Counts::default();
        for f in &findings {
            match f.status {
                Status::Ok => counts.ok += 1,
                Status::Warn => counts.warn += 1,
                Status::Fail => counts.fail += 1,
            }
        }
        Diagnosis {
            format: FINDINGS_FORMAT,
            lab: self.model().name.clone(),
            status: cloudlet_core::doctor::worst(&findings),
            counts,
            seconds: start.elapsed().as_secs_f64(),
            drift: drift
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            findings,
        }
    }

    /// Each domain's backend connected to and observed within `limit`; then one plan over
    /// what answered (a domain that did not counts as it is wanted), its changes per domain.
    async fn observe_and_drift(
        &self,
        limit: Duration,
        drift: &std::sync::Mutex<std::collections::BTreeMap<Domain, usize>>,
    ) -> Vec<Finding> {
        let lab = self.model();
        let mut out = Vec::new();
        let desired = match self.fetch_platform().await.and_then(|()| self.desired()) {
            Ok(d) => d,
            Err(e) => {
                return vec![
                    Finding::new(
                        "lab.drift",
                        None,
                        "lab",
                        Status::Fail,
                        crate::Report::from_error(&e)
                            .errors()
                            .next()
                            .map_or_else(|| chain(&e), |d| d.message.clone()),
                    )
                    .fix("`cloudlet validate` shows what to fix"),
                ];
            }
        };
        if self.makes_cluster()
            && !self.options.in_cluster
            && let Err(e) = self.write_known_hosts()
        {
            out.push(Finding::new(
                "cluster.reachable",
                Some(Domain::Cluster),
                "known hosts",
                Status::Fail,
                chain(&e),
            ));
        }
        let out_dir = self.output_dir();
        let observations = lab.targets.each().map(|(domain, target)| {
            let (desired, out_dir) = (&desired, &out_dir);
            async move {
                let mine: Vec<Resource> = desired
                    .iter()
                    .filter(|r| r.id.domain == domain)
                    .cloned()
                    .collect();
                let began = Instant::now();
                let observed = tokio::time::timeout(limit, async {
                    let p = self.provider_for(domain, target, out_dir).await?;
                    p.observe_with(domain, &mine).await.map_err(|source| {
                        crate::Error::Engine(cloudlet_core::EngineError::Observe { domain, source })
                    })
                })
                .await;
                (
                    domain,
                    target.kind.as_str(),
                    began.elapsed(),
                    observed,
                    mine,
                )
            }
        });
        let mut observed_all = Vec::new();
        let mut answered = Vec::new();
        for (domain, kind, took, observed, mine) in futures::future::join_all(observations).await {
            if self.options.in_cluster && kind == "local" {
                // Files on the applying machine: taken as wanted, nothing said about them.
                observed_all.extend(mine);
                continue;
            }
            let check = format!("{}.reachable", domain.as_str());
            let subject = format!("{} ({kind})", domain.as_str());
            match observed {
                Ok(Ok(mut found)) => {
                    found.retain(|r| r.id.domain == domain);
                    if kind != "local" {
                        out.push(Finding::ok(
                            check,
                            Some(domain),
                            subject,
                            format!(
                                "answered in {:.2}s with {} managed object(s)",
                                took.as_secs_f64(),
                                found.len()
                            ),
                        ));
                    }
                    observed_all.extend(found);
                    answered.push(domain);
                }
                Ok(Err(e)) => {
                    out.push(
                        Finding::new(check, Some(domain), subject, Status::Fail, chain(&e)).fix(
                            format!(
                                "check `targets.{}`: its address, credentials and that the service runs",
                                domain.as_str()
                            ),
                        ),
                    );
                    observed_all.extend(mine);
                }
                Err(_) => {
                    out.push(
                        Finding::new(
                            check,
                            Some(domain),
                            subject,
                            Status::Fail,
                            format!("no answer within {}s", limit.as_secs()),
                        )
                        .fix(format!(
                            "is `targets.{}`'s address reachable from here?",
                            domain.as_str()
                        )),
                    );
                    observed_all.extend(mine);
                }
            }
        }
        let mut domains: Vec<Domain> = lab.targets.each().into_iter().map(|(d, _)| d).collect();
        domains.sort();
        let plan = match cloudlet_core::plan::compute(&lab.name, domains, desired, observed_all) {
            Ok(p) => p,
            Err(e) => {
                out.push(Finding::new(
                    "lab.drift",
                    None,
                    "lab",
                    Status::Fail,
                    format!("the plan could not be made: {}", chain(&e)),
                ));
                return out;
            }
        };
        for domain in answered {
            let steps: Vec<&cloudlet_core::Step> = plan
                .steps
                .iter()
                .filter(|s| s.id.domain == domain)
                .collect();
            let changes: Vec<String> = steps
                .iter()
                .map(|s| format!("{} {}", s.action.as_str(), s.id))
                .collect();
            let per_action: Vec<String> = [
                cloudlet_core::Action::Create,
                cloudlet_core::Action::Update,
                cloudlet_core::Action::Delete,
            ]
            .into_iter()
            .filter_map(|a| {
                let n = steps.iter().filter(|s| s.action == a).count();
                (n > 0).then(|| format!("{n} to {}", a.as_str()))
            })
            .collect();
            drift
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(domain, steps.len());
            let check = format!("{}.drift", domain.as_str());
            let subject = domain.as_str().to_string();
            out.push(if changes.is_empty() {
                Finding::ok(check, Some(domain), subject, "matches the lab")
            } else {
                let shown: Vec<&str> = changes.iter().take(5).map(String::as_str).collect();
                Finding::new(
                    check,
                    Some(domain),
                    subject,
                    Status::Warn,
                    format!(
                        "{} change(s) from the lab ({}): {}{}",
                        changes.len(),
                        per_action.join(", "),
                        shown.join(", "),
                        if changes.len() > 5 { ", ..." } else { "" }
                    ),
                )
                .fix("`cloudlet plan` shows them; `cloudlet apply` puts the lab back")
            });
        }
        out
    }

    fn cluster_checks<'a>(
        &'a self,
        options: &'a DoctorOptions,
    ) -> Vec<(&'static str, Option<Domain>, Check<'a>)> {
        let th = &options.thresholds;
        let limit = options.timeout;
        let d = Some(Domain::Cluster);
        // Each check connects on its own: a kubeconfig that cannot be read fails each.
        let failed = move |name: &'static str, e: crate::Error| {
            vec![
                Finding::new(name, d, "cluster", Status::Fail, chain(&e))
                    .fix("check `targets.cluster` and its kubeconfig"),
            ]
        };
        let kube_failed = move |name: &'static str, e: kube::Error| {
            vec![Finding::new(
                name,
                d,
                "cluster",
                Status::Fail,
                format!("the API server: {}", chain(&e)),
            )]
        };
        vec![
            (
                "cluster.node",
                d,
                Box::pin(async move {
                    match self.live_cluster().await {
                        Ok(Some((c, _))) => cluster::doctor::nodes(&c, cluster::doctor::now())
                            .await
                            .unwrap_or_else(|e| kube_failed("cluster.node", e)),
                        Ok(None) => Vec::new(),
                        Err(e) => failed("cluster.node", e),
                    }
                }),
            ),
            (
                "cluster.pod",
                d,
                Box::pin(async move {
                    match self.live_cluster().await {
                        Ok(Some((c, _))) => cluster::doctor::pods(&c, th, cluster::doctor::now())
                            .await
                            .unwrap_or_else(|e| kube_failed("cluster.pod", e)),
                        Ok(None) => Vec::new(),
                        Err(e) => failed("cluster.pod", e),
                    }
                }),
            ),
            (
                "cluster.object",
                d,
                Box::pin(async move {
                    match self.live_cluster().await {
                        Ok(Some((c, set))) => cluster::doctor::objects(&c, &set)
                            .await
                            .unwrap_or_else(|e| kube_failed("cluster.object", e)),
                        Ok(None) => Vec::new(),
                        Err(e) => failed("cluster.object", e),
                    }
                }),
            ),
            (
                "cluster.vip",
                d,
                Box::pin(async move {
                    match self.live_cluster().await {
                        Ok(Some((c, set))) => cluster::doctor::vips(&c, &set, limit / 2)
                            .await
                            .unwrap_or_else(|e| kube_failed("cluster.vip", e)),
                        Ok(None) => Vec::new(),
                        Err(e) => failed("cluster.vip", e),
                    }
                }),
            ),
            (
                "cluster.certificate",
                d,
                Box::pin(async move {
                    let now = cluster::doctor::now();
                    let (c, set, endpoint) = match self.live_cluster_endpoint().await {
                        Ok(Some(x)) => x,
                        Ok(None) => return Vec::new(),
                        Err(e) => return failed("cluster.certificate", e),
                    };
                    let mut out = Vec::new();
                    if let Some((addr, host)) = endpoint {
                        out.push(
                            cluster::doctor::served_certificate(
                                format!("api server {host}"),
                                addr,
                                &host,
                                th,
                                now,
                                limit / 2,
                            )
                            .await,
                        );
                    }
                    let (ingresses, kubelets) = futures::join!(
                        cluster::doctor::ingress_certificates(&c, &set, th, now, limit / 2),
                        cluster::doctor::kubelet_certificates(&c, th, now, limit / 2)
                    );
                    for found in [ingresses, kubelets] {
                        match found {
                            Ok(f) => out.extend(f),
                            Err(e) => out.extend(kube_failed("cluster.certificate", e)),
                        }
                    }
                    out
                }),
            ),
        ]
    }

    /// The resolver the lab hands out (the first `dns` of a segment with DHCP, else the
    /// router machine's address) and every name the lab gives the router, with its address;
    /// `None` when the router is not a live backend or has no names.
    fn dns_names(&self) -> Option<(std::net::SocketAddr, Vec<(String, std::net::Ipv4Addr)>)> {
        let lab = self.model();
        if lab.targets.router.kind.as_str() == "local" {
            return None;
        }
        let router = lab.router.as_ref()?;
        let resolver = lab
            .networks
            .values()
            .filter(|n| n.dhcp.is_some())
            .find_map(|n| n.dns.first().copied())
            .or_else(|| lab.machine_ip(router.machine.as_deref()?))?;
        let names: Vec<(String, std::net::Ipv4Addr)> = network::expand(lab)
            .iter()
            .filter(|r| &*r.id.kind == "dns-override")
            .filter_map(|r| {
                let v = r.body.value();
                Some((
                    v["host"].as_str()?.to_string(),
                    v["address"].as_str()?.parse().ok()?,
                ))
            })
            .collect();
        (!names.is_empty()).then(|| ((resolver, 53).into(), names))
    }

    /// Each snapshot policy's newest snapshot on the NAS against its period.
    async fn snapshots_fresh(&self) -> Vec<Finding> {
        if !storage::expand(self.model())
            .iter()
            .any(|r| &*r.id.kind == storage::SNAPSHOT_TASK)
        {
            return Vec::new();
        }
        match self.storage_status().await {
            Ok(status) => {
                let now = crate::restore::now();
                storage::doctor::snapshots(self.model(), &status, now)
            }
            Err(e) => vec![Finding::new(
                "storage.snapshot",
                Some(Domain::Storage),
                "snapshots",
                Status::Fail,
                chain(&e),
            )
            .fix("the NAS's API must answer to list its snapshots (`storage.reachable` says why not)")],
        }
    }

    /// Each replication task's last run on the NAS against its snapshot policy.
    async fn replications_fresh(&self) -> Vec<Finding> {
        match self.storage_replications().await {
            Ok(status) => {
                let now = crate::restore::now();
                storage::doctor::replications(self.model(), &status, now)
            }
            Err(e) => vec![Finding::new(
                "storage.replication",
                Some(Domain::Storage),
                "replications",
                Status::Fail,
                chain(&e),
            )
            .fix("the NAS's API must answer to list its replication tasks (`storage.reachable` says why not)")],
        }
    }

    /// What the hypervisor reports of where it makes the lab's VMs, against the lab's hosts.
    async fn host_capacity(&self, th: &Thresholds) -> Vec<Finding> {
        let out = self.output_dir();
        let target = &self.model().targets.hypervisor;
        let usage = async {
            let p = self.provider_for(Domain::Hypervisor, target, &out).await?;
            p.host_usage().await.map_err(|source| {
                crate::Error::Engine(cloudlet_core::EngineError::Observe {
                    domain: Domain::Hypervisor,
                    source,
                })
            })
        };
        match usage.await {
            Ok(u) => hypervisor::doctor::capacity(self.model(), &u, th),
            Err(e) => vec![
                Finding::new(
                    "hypervisor.capacity",
                    Some(Domain::Hypervisor),
                    "capacity",
                    Status::Fail,
                    chain(&e),
                )
                .fix("the hypervisor must answer to report its capacity (`hypervisor.reachable` says why not)"),
            ],
        }
    }

    /// The etcd members of the cluster cloudlet made (one per control plane, on port 2379),
    /// asked with a client certificate of the cluster's etcd CA.
    async fn etcd_members(&self, limit: Duration) -> Vec<Finding> {
        let lab = self.model();
        let members: Vec<(String, String)> = lab
            .cluster
            .iter()
            .flat_map(|c| c.control_plane.iter())
            .filter_map(|cp| Some((cp.clone(), format!("https://{}:2379", lab.machine_ip(cp)?))))
            .collect();
        match self.etcd_tls("cloudlet-doctor") {
            Ok(tls) => cluster::doctor::etcd(&members, &tls, limit).await,
            Err(e) => vec![
                Finding::new("cluster.etcd", Some(Domain::Cluster), "etcd", Status::Fail, e)
                    .fix("etcd is asked with a certificate of the cluster's etcd CA: give cloudlet the vault key (CLOUDLET_VAULT_KEY)"),
            ],
        }
    }

    /// Machines whose network install has not moved on within the threshold.
    fn installs_stuck(&self, th: &Thresholds) -> Vec<Finding> {
        let d = Some(Domain::Pxe);
        let machines = match self.pxe_status() {
            Ok(m) => m,
            Err(e) => {
                return vec![Finding::new(
                    "pxe.install",
                    d,
                    "install state",
                    Status::Fail,
                    chain(&e),
                )];
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut out = Vec::new();
        for m in &machines {
            let Some(state) = &m.state else { continue };
            let stuck_in = now.saturating_sub(state.since);
            use pxe::install::Phase;
            let subject = format!("machine {}", m.name);
            match state.phase {
                Phase::Booting | Phase::Installing if stuck_in > th.installing => out.push(
                    Finding::new(
                        "pxe.install",
                        d,
                        subject,
                        Status::Fail,
                        format!("{:?} for {}", state.phase, span(stuck_in)),
                    )
                    .fix(format!(
                        "look at its console; `cloudlet pxe reinstall {}` starts over",
                        m.name
                    )),
                ),
                Phase::Failed => out.push(
                    Finding::new(
                        "pxe.install",
                        d,
                        subject,
                        Status::Fail,
                        format!("its install failed {} ago", span(stuck_in)),
                    )
                    .fix(format!("`cloudlet pxe reinstall {}`", m.name)),
                ),
                _ => {}
            }
        }
        let installed = machines
            .iter()
            .filter(|m| {
                m.state
                    .as_ref()
                    .is_some_and(|s| s.phase == pxe::install::Phase::Installed)
            })
            .count();
        if out.is_empty() {
            out.push(Finding::ok(
                "pxe.install",
                d,
                "installs",
                format!(
                    "{installed} of {} network-installed machines installed, none stuck",
                    machines.len()
                ),
            ));
        }
        out
    }

    /// Each class's newest backup against its schedule, and each app's volume backup's
    /// newest run.
    async fn backups_fresh(&self) -> Vec<Finding> {
        let Some(b) = &self.model().backup else {
            return Vec::new();
        };
        let runs = cloudlet_backup::runs::read(&self.state_dir());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut out: Vec<Finding> = if self.options.in_cluster {
            Vec::new()
        } else {
            b.classes()
                .into_iter()
                .map(|(name, class)| {
                    cloudlet_backup::runs::freshness(name, class.every.0, &runs, now)
                })
                .collect()
        };
        if b.volumes.is_some() {
            let apps: Vec<(String, String)> = self
                .volume_apps()
                .map(|(name, app)| {
                    (
                        cloudlet_core::model::Lab::app_namespace(name, app).to_string(),
                        name.to_string(),
                    )
                })
                .collect();
            if !apps.is_empty() {
                match self.live_cluster().await {
                    Ok(Some((c, _))) => {
                        for (ns, app) in apps {
                            let subject = format!("backup volumes of {ns}/{app}");
                            out.push(
                                match cluster::volume_backup::last_run(&c, &ns, &app).await {
                                    Ok((true, said)) => {
                                        Finding::ok("backup.volumes", None, subject, said)
                                    }
                                    Ok((false, said)) => Finding::new(
                                        "backup.volumes",
                                        None,
                                        subject,
                                        Status::Fail,
                                        said,
                                    )
                                    .fix(format!(
                                        "`kubectl -n {ns} get jobs` and the newest Job's logs"
                                    )),
                                    Err(e) => Finding::new(
                                        "backup.volumes",
                                        None,
                                        subject,
                                        Status::Fail,
                                        chain(&e),
                                    ),
                                },
                            );
                        }
                    }
                    Ok(None) => {}
                    Err(e) => out.push(Finding::new(
                        "backup.volumes",
                        None,
                        "backup volumes",
                        Status::Fail,
                        chain(&e),
                    )),
                }
            }
        }
        out
    }
}

/// `check` within its time limit (the observation holds its own limit per domain, plus the
/// plan, so it gets two); past it, one failure says so.
async fn bounded(
    name: &'static str,
    domain: Option<Domain>,
    check: Check<'_>,
    limit: Duration,
) -> Vec<Finding> {
    let outer = if name == "observe" { limit * 2 } else { limit };
    match tokio::time::timeout(outer, check).await {
        Ok(f) => f,
        Err(_) => vec![
            Finding::new(
                name,
                domain,
                name,
                Status::Fail,
                format!("no answer within {}s", outer.as_secs()),
            )
            .fix("the backend behind it hangs: check it, or give more time with --timeout"),
        ],
    }
}

use crate::pxe;
