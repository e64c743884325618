//! The engine: observe, plan, and apply a plan as a graph with bounded concurrency.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::error::{EngineError, ProviderError};
use crate::plan::{self, Action, Plan, Summary};
use crate::provider::Providers;
use crate::resource::{Domain, Resource, ResourceId};
use crate::store::{Interrupted, Record, StateStore, now_ms};

/// Progress of an apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The previous apply was interrupted; its unfinished steps are re-observed, not repeated blindly.
    Resumed {
        /// The interrupted apply.
        interrupted: Interrupted,
    },
    /// The apply started.
    Started {
        /// Apply id.
        apply: String,
        /// Steps to run.
        steps: usize,
    },
    /// A step started.
    StepStarted {
        /// Resource.
        id: ResourceId,
        /// Action.
        action: Action,
    },
    /// A step succeeded.
    StepDone {
        /// Resource.
        id: ResourceId,
        /// Action.
        action: Action,
        /// Milliseconds it took.
        millis: u64,
    },
    /// A step failed.
    StepFailed {
        /// Resource.
        id: ResourceId,
        /// Action.
        action: Action,
        /// The error, with its causes.
        error: String,
    },
    /// A step did not run.
    StepSkipped {
        /// Resource.
        id: ResourceId,
        /// Action.
        action: Action,
        /// Why (a failed dependency, or cancellation).
        reason: String,
    },
    /// The apply ended.
    Finished {
        /// The outcome.
        report: ApplyReport,
    },
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Apply id (as in the journal).
    pub apply: String,
    /// Steps that succeeded, per action.
    pub done: Summary,
    /// Steps that failed, with their errors.
    pub failed: Vec<(ResourceId, String)>,
    /// Steps that did not run.
    pub skipped: Vec<ResourceId>,
    /// Whether the apply was cancelled.
    pub cancelled: bool,
}

impl ApplyReport {
    /// Whether every step succeeded.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && !self.cancelled
    }
}

/// Cancels an apply: steps not yet started are skipped; running ones finish.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A fresh token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Receives progress events.
pub type EventSink<'a> = &'a (dyn Fn(&Event) + Send + Sync);

/// Options of an apply.
#[derive(Clone, Default)]
pub struct ApplyOptions<'a> {
    /// Steps in flight at once (0 means the default, 16).
    pub concurrency: usize,
    /// Progress events.
    pub on_event: Option<EventSink<'a>>,
    /// Cancellation.
    pub cancel: Cancel,
    /// Re-observe first and refuse the plan if the infrastructure changed since it was made.
    pub verify_fresh: bool,
    /// Run steps that destroy data ([`crate::Step::data_loss`]); without it a plan that
    /// has any is refused before anything runs.
    pub allow_data_loss: bool,
}

/// How many steps an apply runs at once unless told otherwise (`ApplyOptions::concurrency`
/// of 0): the one default every frontend uses.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// The engine: providers plus the state store.
pub struct Engine {
    lab: String,
    providers: Providers,
    store: StateStore,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("lab", &self.lab)
            .field("providers", &self.providers)
            .field("store", &self.store.dir())
            .finish()
    }
}

use crate::error::chain;

impl Engine {
    /// An engine for the lab `lab`.
    pub fn new(lab: impl Into<String>, providers: Providers, store: StateStore) -> Self {
        Engine {
            lab: lab.into(),
            providers,
            store,
        }
    }

    /// The state store.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// Observes `domains`, all at once.
    pub async fn observe(&self, domains: &[Domain]) -> Result<Vec<Resource>, EngineError> {
        self.observe_with(domains, &[]).await
    }

    /// Observes `domains`, all at once, telling each provider what the lab wants there.
    pub async fn observe_with(
        &self,
        domains: &[Domain],
        desired: &[Resource],
    ) -> Result<Vec<Resource>, EngineError> {
        let futs = domains.iter().map(|d| async move {
            let p = self.providers.get(*d).ok_or(EngineError::NoProvider {
                domain: *d,
                source: crate::backend::ConnectError::NotConfigured,
            })?;
            let mine: Vec<Resource> = desired
                .iter()
                .filter(|r| r.id.domain == *d)
                .cloned()
                .collect();
            let started = std::time::Instant::now();
            let mut found = p
                .observe_with(*d, &mine)
                .await
                .map_err(|source| EngineError::Observe { domain: *d, source })?;
            found.retain(|r| r.id.domain == *d);
            tracing::debug!(
                domain = %d,
                backend = p.name(),
                resources = found.len(),
                ms = started.elapsed().as_millis() as u64,
                "observed"
            );
            Ok::<_, EngineError>(found)
        });
        let mut out = Vec::new();
        for r in join_all(futs).await {
            out.extend(r?);
        }
        Ok(out)
    }

    /// Plans `desired` against what exists. Every domain with a provider is observed, so
    /// resources that left the lab are planned for deletion.
    pub async fn plan(&self, desired: Vec<Resource>) -> Result<Plan, EngineError> {
        let mut domains: Vec<Domain> = self.providers.domains().collect();
        for r in &desired {
            if !domains.contains(&r.id.domain) {
                domains.push(r.id.domain);
            }
        }
        domains.sort();
        let started = std::time::Instant::now();
        let observed = self.observe_with(&domains, &desired).await?;
        let plan = plan::compute(&self.lab, domains, desired, observed)?;
        let s = plan.summary;
        tracing::info!(
            lab = %self.lab,
            create = s.create,
            update = s.update,
            delete = s.delete,
            unchanged = s.unchanged,
            ms = started.elapsed().as_millis() as u64,
            "planned"
        );
        Ok(plan)
    }

    /// Applies a plan.
    pub async fn apply(
        &self,
        plan: &Plan,
        opts: ApplyOptions<'_>,
    ) -> Result<ApplyReport, EngineError> {
        if plan.format != plan::PLAN_FORMAT {
            return Err(EngineError::PlanFormat {
                found: plan.format,
                expected: plan::PLAN_FORMAT,
            });
        }
        if !opts.allow_data_loss {
            let lost: Vec<ResourceId> = plan
                .steps
                .iter()
                .filter(|s| s.data_loss)
                .map(|s| s.id.clone())
                .collect();
            if !lost.is_empty() {
                return Err(EngineError::DataLoss { ids: lost });
            }
        }
        let _lock = self.store.lock()?;
        let emit = |e: Event| {
            if let Some(f) = opts.on_event {
                f(&e);
            }
        };
        if let Some(i) = self.store.interrupted()? {
            tracing::warn!(apply = %i.apply, in_flight = i.in_flight.len(), "previous apply was interrupted; its unfinished steps were re-observed by this plan");
            emit(Event::Resumed { interrupted: i });
        }
        if opts.verify_fresh {
            let desired: Vec<Resource> = plan
                .steps
                .iter()
                .filter(|s| s.action != Action::Delete)
                .map(|s| s.resource.clone())
                .collect();
            let observed = self.observe_with(&plan.domains, &desired).await?;
            let now = plan::digest(&observed);
            if now != plan.observed_digest {
                return Err(EngineError::StalePlan {
                    reason: "the infrastructure changed since the plan was made".into(),
                });
            }
        }
        let apply_id = format!("{}-{}", now_ms(), std::process::id());
        self.store.record(
            &Record::Begin {
                apply: apply_id.clone(),
                at: now_ms(),
                steps: plan.steps.len(),
                desired: plan.desired_digest.clone(),
            },
            true,
        )?;
        emit(Event::Started {
            apply: apply_id.clone(),
            steps: plan.steps.len(),
        });

        let n = plan.steps.len();
        let index: HashMap<&ResourceId, usize> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (&s.id, i))
            .collect();
        let mut waiting: Vec<usize> = vec![0; n];
        let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, s) in plan.steps.iter().enumerate() {
            for d in &s.after {
                if let Some(&j) = index.get(d) {
                    waiting[i] += 1;
                    dependants[j].push(i);
                }
            }
        }
        let mut ready: BTreeSet<usize> = (0..n).filter(|i| waiting[*i] == 0).collect();
        let mut dead = vec![false; n];
        let limit = if opts.concurrency == 0 {
            DEFAULT_CONCURRENCY
        } else {
            opts.concurrency
        };
        let mut report = ApplyReport {
            apply: apply_id.clone(),
            ..ApplyReport::default()
        };
        let mut inflight = FuturesUnordered::new();
        // Domains whose backend could not be reached: their remaining steps are skipped
        // with that one cause instead of each failing (and being logged) on its own.
        let mut unreachable: HashMap<Domain, String> = HashMap::new();
        loop {
            while inflight.len() < limit && !opts.cancel.is_cancelled() {
                let Some(i) = ready.pop_first() else { break };
                let step = &plan.steps[i];
                if let Some(cause) = unreachable.get(&step.id.domain) {
                    let reason = format!("not started: {cause}");
                    let mut stack = vec![i];
                    while let Some(d) = stack.pop() {
                        if dead[d] {
                            continue;
                        }
                        dead[d] = true;
                        ready.remove(&d);
                        report.skipped.push(plan.steps[d].id.clone());
                        emit(Event::StepSkipped {
                            id: plan.steps[d].id.clone(),
                            action: plan.steps[d].action,
                            reason: reason.clone(),
                        });
                        stack.extend(dependants[d].iter().copied());
                    }
                    continue;
                }
                self.store.record(
                    &Record::Started {
                        apply: apply_id.clone(),
                        id: step.id.clone(),
                        action: step.action,
                    },
                    false,
                )?;
                emit(Event::StepStarted {
                    id: step.id.clone(),
                    action: step.action,
                });
                inflight.push(async move {
                    let t = Instant::now();
                    let r = self.run_step(step).await;
                    (i, r, t.elapsed())
                });
            }
            let Some((i, result, took)) = inflight.next().await else {
                break;
            };
            let step = &plan.steps[i];
            match result {
                Ok(()) => {
                    self.store.record(
                        &Record::Done {
                            apply: apply_id.clone(),
                            id: step.id.clone(),
                            action: step.action,
                        },
                        false,
                    )?;
                    match step.action {
                        Action::Create => report.done.create += 1,
                        Action::Update => report.done.update += 1,
                        Action::Delete => report.done.delete += 1,
                    }
                    emit(Event::StepDone {
                        id: step.id.clone(),
                        action: step.action,
                        millis: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    });
                    for &d in &dependants[i] {
                        waiting[d] -= 1;
                        if waiting[d] == 0 && !dead[d] {
                            ready.insert(d);
                        }
                    }
                }
                Err(e) => {
                    let msg = chain(&e);
                    if let ProviderError::Unreachable { endpoint, .. } = &e {
                        let domain = step.id.domain;
                        if let std::collections::hash_map::Entry::Vacant(v) =
                            unreachable.entry(domain)
                        {
                            tracing::error!(%domain, error = %msg, "the backend cannot be reached: no further step of this domain starts");
                            v.insert(format!("the {domain} backend {endpoint} cannot be reached"));
                        } else {
                            tracing::debug!(id = %step.id, error = %msg, "step failed");
                        }
                    } else {
                        tracing::error!(id = %step.id, action = step.action.as_str(), error = %msg, "step failed");
                    }
                    self.store.record(
                        &Record::Failed {
                            apply: apply_id.clone(),
                            id: step.id.clone(),
                            action: step.action,
                            error: msg.clone(),
                        },
                        true,
                    )?;
                    emit(Event::StepFailed {
                        id: step.id.clone(),
                        action: step.action,
                        error: msg.clone(),
                    });
                    report.failed.push((step.id.clone(), msg));
                    // Everything downstream is skipped; independent branches go on.
                    let mut stack = dependants[i].clone();
                    while let Some(d) = stack.pop() {
                        if dead[d] {
                            continue;
                        }
                        dead[d] = true;
                        report.skipped.push(plan.steps[d].id.clone());
                        emit(Event::StepSkipped {
                            id: plan.steps[d].id.clone(),
                            action: plan.steps[d].action,
                            reason: format!("depends on {}, which failed", step.id),
                        });
                        stack.extend(dependants[d].iter().copied());
                    }
                }
            }
        }
        if opts.cancel.is_cancelled() {
            report.cancelled = true;
            let mut left: Vec<usize> = (0..n)
                .filter(|i| !dead[*i])
                .filter(|i| {
                    let id = &plan.steps[*i].id;
                    !report.failed.iter().any(|(f, _)| f == id)
                })
                .collect();
            // Steps that never started: ready ones and those still waiting.
            left.retain(|i| ready.contains(i) || waiting[*i] > 0);
            for i in left {
                report.skipped.push(plan.steps[i].id.clone());
                emit(Event::StepSkipped {
                    id: plan.steps[i].id.clone(),
                    action: plan.steps[i].action,
                    reason: "cancelled".into(),
                });
            }
        }
        report.skipped.sort();
        let clean = !report.cancelled && report.failed.is_empty();
        if !report.cancelled {
            for d in &plan.domains {
                let Some(p) = self.providers.get(*d) else {
                    continue;
                };
                // After a failed step, only backends that commit what did succeed (a router
                // applying its pending changes) finish; the others wait for a clean apply.
                if !clean && !p.commits_partial_applies() {
                    continue;
                }
                if let Err(e) = p.finish(*d).await {
                    let msg = chain(&e);
                    tracing::error!(domain = %d, error = %msg, "finishing the apply failed");
                    report
                        .failed
                        .push((ResourceId::new(*d, "(finish)", p.name()), msg));
                }
            }
        }
        let status = if report.cancelled {
            "cancelled"
        } else if report.failed.is_empty() {
            "ok"
        } else {
            "failed"
        };
        self.store.record(
            &Record::End {
                apply: apply_id,
                at: now_ms(),
                status: status.into(),
            },
            true,
        )?;
        emit(Event::Finished {
            report: report.clone(),
        });
        Ok(report)
    }

    async fn run_step(&self, step: &plan::Step) -> Result<(), ProviderError> {
        let p = self
            .providers
            .get(step.id.domain)
            .ok_or_else(|| ProviderError::Backend {
                message: format!("no provider for the {} domain", step.id.domain),
                retryable: false,
            })?;
        let span = tracing::debug_span!("step", id = %step.id, action = step.action.as_str());
        async move {
            let started = std::time::Instant::now();
            let r = match step.action {
                Action::Create => p.create(&step.resource).await,
                Action::Update => p.update(&step.resource, &step.changes).await,
                Action::Delete => p.delete(&step.resource).await,
            };
            if r.is_ok() {
                tracing::debug!(
                    backend = p.name(),
                    ms = started.elapsed().as_millis() as u64,
                    "step done"
                );
            }
            r
        }
        .instrument(span)
        .await
    }
}
