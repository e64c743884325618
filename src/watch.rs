//! `cloudlet watch`: [`Lab::doctor`] on an interval, so drift and stuck pods are noticed
//! without anyone running plan. Each round's findings are compared with the last round's:
//! every change of state (new, worse, better, gone) is one event and one message to each
//! webhook. OpenMetrics on `/metrics` (a gauge per finding, drift per domain, the last
//! apply, backup age) and `/healthz` (the last round is recent). Optional remediation:
//! re-apply drift, delete pods stuck past their threshold — each with a dry run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudlet_core::doctor::{Finding, Status};
use cloudlet_core::error::chain;
use cloudlet_core::{ApplyOptions, Domain};
use serde::Serialize;

use crate::{DoctorOptions, Error, Lab, cluster};

/// Where a webhook posts, and in which shape. The URL usually holds a secret (a Slack
/// webhook's path, an ntfy topic): it is never printed; `Debug` and events show its host.
#[derive(Clone)]
pub struct Webhook {
    /// The payload's shape.
    pub format: WebhookFormat,
    /// `https://...` (verified TLS, like every backend).
    pub url: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("format", &self.format)
            .field("host", &self.host())
            .finish()
    }
}

impl Webhook {
    /// The URL's host (what may be shown).
    pub fn host(&self) -> String {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        rest.split(['/', '?'])
            .next()
            .unwrap_or_default()
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

pub use cloudlet_core::model::WebhookFormat;

/// What `watch` may put right by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remediate {
    /// Re-apply the lab when a domain drifted (a plan with data loss is never applied).
    pub drift: bool,
    /// Delete pods stuck past their threshold that a controller makes again
    /// ([`cluster::doctor::deletable`]).
    pub stuck_pods: bool,
    /// Say what would be done; do nothing.
    pub dry_run: bool,
}

/// How `watch` runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Between the start of one round and the next.
    pub interval: Duration,
    /// Each round's doctor.
    pub doctor: DoctorOptions,
    /// Where changes are sent.
    pub webhooks: Vec<Webhook>,
    /// What is put right.
    pub remediate: Remediate,
    /// Stop after this many rounds (`None`: until stopped).
    pub rounds: Option<u64>,
    /// Take part in leader election through a Lease in the lab's cluster, held this long per
    /// renewal: of several watches of one lab (replicas, machines), only the holder checks,
    /// sends and remediates; another takes over once the holder stops renewing.
    pub lease: Option<Duration>,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            interval: Duration::from_secs(60),
            doctor: DoctorOptions::default(),
            webhooks: Vec::new(),
            remediate: Remediate::default(),
            rounds: None,
            lease: None,
        }
    }
}

/// A finding that changed state between two rounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The check.
    pub check: String,
    /// Its domain.
    pub domain: Option<Domain>,
    /// What it is about.
    pub subject: String,
    /// Its status before (`None`: not seen before).
    pub from: Option<Status>,
    /// Its status now (`None`: gone — the pod was deleted, the object left the lab).
    pub to: Option<Status>,
    /// The evidence now (before, when gone).
    pub evidence: String,
    /// The fix, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Change {
    /// One line: `FAIL pod apps/web: CrashLoopBackOff ... (was ok)`.
    pub fn line(&self) -> String {
        let now = self.to.map_or("GONE", |s| match s {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        });
        let was = self.from.map_or("new".to_string(), |s| format!("was {s}"));
        format!("{now} {}: {} ({was})", self.subject, self.evidence)
    }
}

/// What a watch reports as it goes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WatchEvent {
    /// A round ended.
    Round {
        /// Its number, from 1.
        round: u64,
        /// What the doctor found.
        diagnosis: crate::Diagnosis,
    },
    /// A finding changed state.
    Changed(Change),
    /// A webhook was sent one change.
    Notified {
        /// Its host.
        host: String,
        /// The HTTP status it answered.
        status: Option<u16>,
        /// Why it was not delivered.
        error: Option<String>,
    },
    /// This watch holds the Lease: it checks, sends and remediates from now on.
    Leading {
        /// Its identity in the Lease.
        me: String,
    },
    /// Another watch holds the Lease: this one waits to take over.
    Following {
        /// The holder.
        leader: String,
    },
    /// Something was put right (or, in a dry run, would have been).
    Remediated {
        /// What.
        action: String,
        /// Only said, not done.
        dry_run: bool,
        /// Why it failed.
        error: Option<String>,
    },
}

/// What `/metrics` and `/healthz` serve, rewritten after each round.
#[derive(Debug, Default)]
struct Exposed {
    metrics: String,
    /// Unix seconds of the last round's end.
    last_round: u64,
    /// Unix seconds of the loop's last turn: a round's end, or a follower's try for the
    /// Lease (a follower runs no rounds and is as alive as the leader).
    alive: u64,
}

type Key = (String, String);

impl Lab {
    /// Runs [`Lab::doctor`] every `options.interval` until `stop` resolves (or the rounds
    /// are done), handing each event to `on_event`. With `metrics`, serves `/metrics`
    /// (OpenMetrics) and `/healthz` on that listener meanwhile.
    pub async fn watch(
        &self,
        options: &WatchOptions,
        metrics: Option<tokio::net::TcpListener>,
        on_event: &(dyn Fn(&WatchEvent) + Sync),
        stop: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let hooks = options
            .webhooks
            .iter()
            .map(|w| Ok((w.clone(), webhook_client(w)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let exposed = Arc::new(Mutex::new(Exposed::default()));
        let lease = match options.lease {
            None => None,
            Some(duration) => {
                let Some((client, _)) = self.live_cluster().await? else {
                    return Err(Error::Kubeadm(cluster::kubeadm::KubeadmError::NotMade));
                };
                Some(cluster::lease::LeaseLock::new(
                    client,
                    &cluster::lease::watch_lease(&self.model().name),
                    &cluster::lease::identity(),
                    duration,
                ))
            }
        };
        let rounds = self.watch_rounds(options, &hooks, &exposed, on_event, lease.as_ref());
        let serve = async {
            match metrics {
                Some(l) => serve_metrics(l, &exposed, options.interval).await,
                None => std::future::pending::<()>().await,
            }
        };
        let out = tokio::select! {
            r = rounds => r,
            () = serve => Ok(()),
            () = stop => Ok(()),
        };
        if let Some(l) = &lease {
            // The next replica takes over at once instead of after the Lease's duration.
            let _ = l.release().await;
        }
        out
    }

    async fn watch_rounds(
        &self,
        options: &WatchOptions,
        hooks: &[(Webhook, cloudlet_transport::http::Http)],
        exposed: &Mutex<Exposed>,
        on_event: &(dyn Fn(&WatchEvent) + Sync),
        lease: Option<&cluster::lease::LeaseLock>,
    ) -> Result<(), Error> {
        let mut previous: Option<BTreeMap<Key, Finding>> = None;
        let mut round = 0u64;
        let mut next = tokio::time::Instant::now();
        let mut leading: Option<bool> = None;
        let mut renewed = tokio::time::Instant::now();
        loop {
            if let Some(l) = lease {
                let lead = match l.try_acquire().await {
                    Ok(None) => {
                        renewed = tokio::time::Instant::now();
                        true
                    }
                    Ok(Some(h)) => {
                        if leading != Some(false) {
                            on_event(&WatchEvent::Following { leader: h.identity });
                        }
                        false
                    }
                    // Not renewed: leading only while the last renewal lasts.
                    Err(e) => {
                        tracing::warn!(error = %chain(&e), "renewing the watch's Lease");
                        leading == Some(true) && renewed.elapsed() < l.duration()
                    }
                };
                if lead && leading != Some(true) {
                    on_event(&WatchEvent::Leading {
                        me: l.me().to_string(),
                    });
                    // A new leader starts from the states the last one left on the Lease
                    // (nothing reported twice, a recovery in between still reported), else
                    // from what it sees now.
                    previous = match l.noted(STATES_ANNOTATION).await {
                        Ok(Some(text)) => left_states(&text),
                        Ok(None) => None,
                        Err(e) => {
                            tracing::warn!(error = %chain(&e), "reading the states the last leader left");
                            None
                        }
                    };
                }
                leading = Some(lead);
                if !lead {
                    exposed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .alive = unix_now();
                    tokio::time::sleep(l.duration() / 3).await;
                    next = tokio::time::Instant::now();
                    continue;
                }
            }
            round += 1;
            let d = self.doctor(&options.doctor).await;
            let now: BTreeMap<Key, Finding> = d
                .findings
                .iter()
                .map(|f| ((f.check.clone(), f.subject.clone()), f.clone()))
                .collect();
            let changes = changes(previous.as_ref(), &now);
            for c in &changes {
                on_event(&WatchEvent::Changed(c.clone()));
                for (hook, client) in hooks {
                    let outcome = send(self.model().name.as_str(), hook, client, c).await;
                    let (status, error) = match outcome {
                        Ok(s) => (Some(s), None),
                        Err((s, e)) => (s, Some(e)),
                    };
                    on_event(&WatchEvent::Notified {
                        host: hook.host(),
                        status,
                        error,
                    });
                }
            }
            if let Some(l) = lease
                && let Err(e) = l.note(STATES_ANNOTATION, &states_left(&now)).await
            {
                tracing::warn!(error = %chain(&e), "leaving the states on the Lease");
            }
            self.remediate(options, &d, on_event).await;
            let text = self.metrics_text(&d, round);
            {
                let mut e = exposed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                e.metrics = text;
                e.last_round = unix_now();
                e.alive = e.last_round;
            }
            on_event(&WatchEvent::Round {
                round,
                diagnosis: d,
            });
            previous = Some(now);
            if options.rounds.is_some_and(|n| round >= n) {
                return Ok(());
            }
            next += options.interval;
            // Until the next round, the Lease is renewed every third of its duration.
            loop {
                let now = tokio::time::Instant::now();
                if now >= next {
                    break;
                }
                match lease {
                    Some(l) if next - now > l.duration() / 3 => {
                        tokio::time::sleep(l.duration() / 3).await;
                        match l.try_acquire().await {
                            Ok(None) => renewed = tokio::time::Instant::now(),
                            Ok(Some(h)) => {
                                on_event(&WatchEvent::Following { leader: h.identity });
                                leading = Some(false);
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(error = %chain(&e), "renewing the watch's Lease")
                            }
                        }
                    }
                    _ => tokio::time::sleep_until(next).await,
                }
            }
        }
    }

    async fn remediate(
        &self,
        options: &WatchOptions,
        d: &crate::Diagnosis,
        on_event: &(dyn Fn(&WatchEvent) + Sync),
    ) {
        let r = options.remediate;
        let dry_run = r.dry_run;
        if r.stuck_pods
            && d.findings
                .iter()
                .any(|f| f.check == "cluster.pod" && f.status == Status::Fail)
        {
            match self.live_cluster().await {
                Ok(Some((client, _))) => match cluster::doctor::delete_stuck(
                    &client,
                    &options.doctor.thresholds,
                    cluster::doctor::now(),
                    dry_run,
                )
                .await
                {
                    Ok(done) => {
                        for (pod, res) in done {
                            on_event(&WatchEvent::Remediated {
                                action: format!("delete stuck pod {pod}"),
                                dry_run,
                                error: res.err().map(|e| chain(&e)),
                            });
                        }
                    }
                    Err(e) => on_event(&WatchEvent::Remediated {
                        action: "delete stuck pods".into(),
                        dry_run,
                        error: Some(chain(&e)),
                    }),
                },
                Ok(None) => {}
                Err(e) => on_event(&WatchEvent::Remediated {
                    action: "delete stuck pods".into(),
                    dry_run,
                    error: Some(chain(&e)),
                }),
            }
        }
        if r.drift && d.drift.values().any(|n| *n > 0) {
            let changes: usize = d.drift.values().sum();
            let action = format!("apply the lab ({changes} change(s) of drift)");
            if dry_run {
                on_event(&WatchEvent::Remediated {
                    action,
                    dry_run,
                    error: None,
                });
                return;
            }
            let outcome = async {
                let plan = self.plan().await.map_err(|e| e.message())?;
                if plan.steps.iter().any(|s| s.data_loss) {
                    return Err("the plan would lose data: left for a person to apply".to_string());
                }
                let applied = self
                    .apply(&plan, ApplyOptions::default())
                    .await
                    .map_err(|e| e.message())?;
                if applied.is_success() {
                    Ok(())
                } else {
                    Err(format!("{} step(s) failed", applied.failed.len()))
                }
            }
            .await;
            on_event(&WatchEvent::Remediated {
                action,
                dry_run,
                error: outcome.err(),
            });
        }
    }

    /// The OpenMetrics text for a round.
    fn metrics_text(&self, d: &crate::Diagnosis, round: u64) -> String {
        let mut m = String::new();
        let lab = esc(&d.lab);
        let _ = writeln!(
            m,
            "# TYPE cloudlet_check_status gauge\n# HELP cloudlet_check_status Each finding of the last doctor round: 0 ok, 1 warn, 2 fail."
        );
        for f in &d.findings {
            let _ = writeln!(
                m,
                "cloudlet_check_status{{lab=\"{lab}\",check=\"{}\",domain=\"{}\",subject=\"{}\"}} {}",
                esc(&f.check),
                f.domain.map_or("lab", |d| d.as_str()),
                esc(&f.subject),
                f.status as u8
            );
        }
        let _ = writeln!(
            m,
            "# TYPE cloudlet_findings gauge\n# HELP cloudlet_findings Findings of the last round per status."
        );
        for (s, n) in [
            ("ok", d.counts.ok),
            ("warn", d.counts.warn),
            ("fail", d.counts.fail),
        ] {
            let _ = writeln!(m, "cloudlet_findings{{lab=\"{lab}\",status=\"{s}\"}} {n}");
        }
        let _ = writeln!(
            m,
            "# TYPE cloudlet_drift_changes gauge\n# HELP cloudlet_drift_changes Changes from the lab per domain that answered."
        );
        for (domain, n) in &d.drift {
            let _ = writeln!(
                m,
                "cloudlet_drift_changes{{lab=\"{lab}\",domain=\"{}\"}} {n}",
                domain.as_str()
            );
        }
        if let Some(at) = self.last_apply() {
            let _ = writeln!(
                m,
                "# TYPE cloudlet_last_apply_timestamp_seconds gauge\n# HELP cloudlet_last_apply_timestamp_seconds When the last apply ended.\n# UNIT cloudlet_last_apply_timestamp_seconds seconds\ncloudlet_last_apply_timestamp_seconds{{lab=\"{lab}\"}} {}",
                at as f64 / 1000.0
            );
        }
        if let Some(b) = &self.model().backup {
            let runs = cloudlet_backup::runs::read(&self.state_dir());
            let now = unix_now();
            let _ = writeln!(
                m,
                "# TYPE cloudlet_backup_age_seconds gauge\n# HELP cloudlet_backup_age_seconds Age of each class's newest successful backup.\n# UNIT cloudlet_backup_age_seconds seconds"
            );
            for (class, _) in b.classes() {
                if let Some(r) = runs
                    .iter()
                    .rev()
                    .find(|r| r.class == class && r.error.is_none())
                {
                    let _ = writeln!(
                        m,
                        "cloudlet_backup_age_seconds{{lab=\"{lab}\",class=\"{class}\"}} {}",
                        now.saturating_sub(r.started)
                    );
                }
            }
        }
        let _ = writeln!(
            m,
            "# TYPE cloudlet_doctor_duration_seconds gauge\n# UNIT cloudlet_doctor_duration_seconds seconds\ncloudlet_doctor_duration_seconds{{lab=\"{lab}\"}} {:.3}",
            d.seconds
        );
        let _ = writeln!(
            m,
            "# TYPE cloudlet_watch_rounds counter\ncloudlet_watch_rounds_total{{lab=\"{lab}\"}} {round}"
        );
        m.push_str("# EOF\n");
        m
    }

    /// When the last apply ended (Unix milliseconds), from the journal.
    fn last_apply(&self) -> Option<u64> {
        let store = cloudlet_core::StateStore::open(self.state_dir()).ok()?;
        store.records().ok()?.iter().rev().find_map(|r| match r {
            cloudlet_core::store::Record::End { at, .. } => Some(*at),
            _ => None,
        })
    }
}

/// The annotation of the watch's Lease where the leader leaves the states it reported.
pub(crate) const STATES_ANNOTATION: &str = "cloudlet.dev/watch-states";
/// The most findings left there (the annotations of an object hold 256 KiB in all).
const MAX_LEFT: usize = 500;
/// The most characters of a finding's evidence left there.
const MAX_LEFT_EVIDENCE: usize = 200;

/// The findings that are not ok, as the next leader reads them ([`left_states`]): ok ones
/// are what a leader assumes of anything it has not heard of.
fn states_left(now: &BTreeMap<Key, Finding>) -> String {
    let left: Vec<Finding> = now
        .values()
        .filter(|f| f.status != Status::Ok)
        .take(MAX_LEFT)
        .map(|f| Finding {
            evidence: f.evidence.chars().take(MAX_LEFT_EVIDENCE).collect(),
            fix: None,
            ..f.clone()
        })
        .collect();
    serde_json::to_string(&left).unwrap_or_else(|_| "[]".into())
}

/// The states another leader left; `None` when they do not read (then the new leader starts
/// from what it sees).
fn left_states(text: &str) -> Option<BTreeMap<Key, Finding>> {
    if text.len() > 256 * 1024 {
        return None;
    }
    let left: Vec<Finding> = serde_json::from_str(text).ok()?;
    Some(
        left.into_iter()
            .take(MAX_LEFT)
            .map(|f| ((f.check.clone(), f.subject.clone()), f))
            .collect(),
    )
}

/// Every change between two rounds' findings. The first round (`previous` is `None`)
/// reports only what is not ok: a healthy lab starts quietly.
pub(crate) fn changes(
    previous: Option<&BTreeMap<Key, Finding>>,
    now: &BTreeMap<Key, Finding>,
) -> Vec<Change> {
    let mut out = Vec::new();
    let change = |f: &Finding, from: Option<Status>, to: Option<Status>| Change {
        check: f.check.clone(),
        domain: f.domain,
        subject: f.subject.clone(),
        from,
        to,
        evidence: f.evidence.clone(),
        fix: if to.is_some_and(|s| s != Status::Ok) {
            f.fix.clone()
        } else {
            None
        },
    };
    for (k, f) in now {
        let before = previous.and_then(|p| p.get(k)).map(|f| f.status);
        let first = previous.is_none();
        if before != Some(f.status) && !(first && f.status == Status::Ok) {
            // A new ok finding after the first round is news only when it replaces nothing:
            // a check that appears healthy (a new pod count) is not a change of state.
            if !first && before.is_none() && f.status == Status::Ok {
                continue;
            }
            out.push(change(f, before, Some(f.status)));
        }
    }
    if let Some(p) = previous {
        for (k, f) in p {
            if !now.contains_key(k) && f.status != Status::Ok {
                out.push(change(f, Some(f.status), None));
            }
        }
    }
    out
}

fn webhook_client(w: &Webhook) -> Result<cloudlet_transport::http::Http, Error> {
    // The origin only: the path (often the secret) goes with each request, never in errors.
    let scheme = w.url.split_once("://").map_or("", |(s, _)| s);
    let origin = format!("{scheme}://{}", w.host());
    cloudlet_transport::http::Http::new(&origin, None, Vec::new()).map_err(|source| {
        Error::Webhook {
            host: w.host(),
            source,
        }
    })
}

/// The path (with its query) of an `https://host/path?query` URL.
fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    match rest.find('/') {
        Some(i) => rest[i..].to_string(),
        None => "/".into(),
    }
}

/// The body a webhook of `format` gets for `c`, and the path it is posted to.
pub(crate) fn payload(lab: &str, hook: &Webhook, c: &Change) -> (String, serde_json::Value) {
    let title = format!(
        "cloudlet {lab}: {} {}",
        c.to.map_or("gone", Status::as_str),
        c.subject
    );
    let text = format!(
        "{}{}",
        c.line(),
        c.fix
            .as_deref()
            .map(|f| format!("\nfix: {f}"))
            .unwrap_or_default()
    );
    let path = path_of(&hook.url);
    match hook.format {
        WebhookFormat::Json => (
            path,
            serde_json::json!({"lab": lab, "change": c, "at": unix_now()}),
        ),
        WebhookFormat::Slack => (
            path,
            serde_json::json!({ "text": format!("*{title}*\n{text}") }),
        ),
        WebhookFormat::Matrix => (
            path,
            serde_json::json!({
                "text": format!("{title}\n{text}"),
                "html": format!("<b>{}</b><br>{}", html(&title), html(&text).replace('\n', "<br>")),
            }),
        ),
        WebhookFormat::Ntfy => {
            let topic = path.trim_start_matches('/').to_string();
            let priority = match c.to {
                Some(Status::Fail) => 5,
                Some(Status::Warn) => 4,
                _ => 3,
            };
            let tag = match c.to {
                Some(Status::Fail) => "rotating_light",
                Some(Status::Warn) => "warning",
                _ => "white_check_mark",
            };
            (
                "/".into(),
                serde_json::json!({
                    "topic": topic, "title": title, "message": text,
                    "priority": priority, "tags": [tag],
                }),
            )
        }
    }
}

async fn send(
    lab: &str,
    hook: &Webhook,
    client: &cloudlet_transport::http::Http,
    c: &Change,
) -> Result<u16, (Option<u16>, String)> {
    let (path, body) = payload(lab, hook, c);
    let answer = tokio::time::timeout(
        Duration::from_secs(15),
        client.send_bounded(
            cloudlet_transport::http::Method::POST,
            &path,
            &[("content-type", "application/json")],
            body.to_string().into(),
            64 * 1024,
        ),
    )
    .await
    .map_err(|_| (None, "no answer within 15s".to_string()))?
    .map_err(|e| (None, chain(&e)))?;
    if (200..300).contains(&answer.status) {
        Ok(answer.status)
    } else {
        Err((
            Some(answer.status),
            format!("answered HTTP {}", answer.status),
        ))
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves `/metrics` and `/healthz` on `listener` (at most 16 connections at once, each
/// request read within 10 seconds) until dropped.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    exposed: &Mutex<Exposed>,
    interval: Duration,
) {
    use futures::StreamExt as _;
    use futures::stream::FuturesUnordered;
    let mut conns = FuturesUnordered::new();
    loop {
        tokio::select! {
            accepted = listener.accept(), if conns.len() < 16 => {
                let Ok((tcp, _)) = accepted else { continue };
                conns.push(serve_one(tcp, exposed, interval));
            }
            Some(()) = conns.next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_one(tcp: tokio::net::TcpStream, exposed: &Mutex<Exposed>, interval: Duration) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tcp;
    // One request per connection: its head, bounded, within 10 seconds.
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = tcp.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(())
    })
    .await;
    if !matches!(read, Ok(Some(()))) {
        return;
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = {
        let e = exposed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (method, path.split('?').next().unwrap_or("")) {
            ("GET", "/metrics") if e.last_round > 0 => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                e.metrics.clone(),
            ),
            ("GET", "/metrics") => (
                "503 Service Unavailable",
                "text/plain",
                "the first round has not ended\n".into(),
            ),
            ("GET", "/healthz") => {
                // Healthy while the loop turns: a round (the leader) or a try for the Lease (a
                // follower) within three intervals.
                let late = interval.as_secs().saturating_mul(3).max(30);
                if e.alive > 0 && unix_now().saturating_sub(e.alive) <= late {
                    ("200 OK", "text/plain", "ok\n".into())
                } else {
                    (
                        "503 Service Unavailable",
                        "text/plain",
                        "no round has ended recently\n".into(),
                    )
                }
            }
            ("GET", _) => (
                "404 Not Found",
                "text/plain",
                "/metrics or /healthz\n".into(),
            ),
            _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        }
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.write_all(reply.as_bytes())).await;
    let _ = tcp.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(check: &str, subject: &str, status: Status) -> ((String, String), Finding) {
        (
            (check.into(), subject.into()),
            Finding::new(check, Some(Domain::Cluster), subject, status, "e").fix("do x"),
        )
    }

    #[test]
    fn one_change_per_change_of_state() {
        let r1: BTreeMap<_, _> = [
            f("cluster.pod", "pods", Status::Ok),
            f("cluster.node", "node a", Status::Fail),
        ]
        .into();
        let first = changes(None, &r1);
        assert_eq!(first.len(), 1, "a healthy start is quiet: {first:?}");
        assert_eq!(first[0].to, Some(Status::Fail));
        assert_eq!(changes(Some(&r1), &r1), vec![], "nothing changed");
        let r2: BTreeMap<_, _> = [
            f("cluster.pod", "pod x/y", Status::Fail),
            f("cluster.node", "node a", Status::Ok),
        ]
        .into();
        let c = changes(Some(&r1), &r2);
        let lines: Vec<String> = c.iter().map(Change::line).collect();
        assert_eq!(
            lines,
            vec![
                "OK node a: e (was fail)".to_string(),
                "FAIL pod x/y: e (new)".to_string(),
            ]
        );
        assert_eq!(c[0].fix, None, "an ok change needs no fix");
        assert_eq!(c[1].fix.as_deref(), Some("do x"));
        let r3: BTreeMap<_, _> = [f("cluster.node", "node a", Status::Ok)].into();
        let gone = changes(Some(&r2), &r3);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].line(), "GONE pod x/y: e (was fail)");
    }

    #[test]
    fn payloads_follow_each_service_and_hide_nothing_they_need() {
        let c = Change {
            check: "cluster.pod".into(),
            domain: Some(Domain::Cluster),
            subject: "pod a/<b>".into(),
            from: Some(Status::Ok),
            to: Some(Status::Fail),
            evidence: "CrashLoopBackOff".into(),
            fix: Some("read its logs".into()),
        };
        let hook = |format, url: &str| Webhook {
            format,
            url: url.into(),
        };
        let (path, ntfy) = payload(
            "seed",
            &hook(WebhookFormat::Ntfy, "https://ntfy.example/lab-alerts"),
            &c,
        );
        assert_eq!(path, "/");
        assert_eq!(ntfy["topic"], "lab-alerts");
        assert_eq!(ntfy["priority"], 5);
        assert_eq!(ntfy["title"], "cloudlet seed: fail pod a/<b>");
        let (path, slack) = payload(
            "seed",
            &hook(
                WebhookFormat::Slack,
                "https://hooks.example/services/T0/B0/secret",
            ),
            &c,
        );
        assert_eq!(path, "/services/T0/B0/secret");
        assert!(
            slack["text"]
                .as_str()
                .unwrap()
                .contains("fix: read its logs")
        );
        let (_, matrix) = payload(
            "seed",
            &hook(
                WebhookFormat::Matrix,
                "https://hookshot.example/webhook/abc",
            ),
            &c,
        );
        assert!(matrix["html"].as_str().unwrap().contains("pod a/&lt;b&gt;"));
        let (_, json) = payload(
            "seed",
            &hook(WebhookFormat::Json, "https://x.example/h"),
            &c,
        );
        assert_eq!(json["change"]["to"], "fail");
        assert_eq!(json["change"]["from"], "ok");
        let w = hook(
            WebhookFormat::Slack,
            "https://user:pw@hooks.example/services/T0/B0/secret",
        );
        assert_eq!(w.host(), "hooks.example");
        assert!(!format!("{w:?}").contains("secret"));
        let plain = hook(
            WebhookFormat::Slack,
            "http://user:pw@hooks.example/services/secret",
        );
        let e = webhook_client(&plain).unwrap_err();
        let said = format!("{}: {}", e, chain(&e));
        assert!(
            said.contains("hooks.example") && said.contains("https://"),
            "{said}"
        );
        assert!(!said.contains("secret") && !said.contains("pw"), "{said}");
    }

    #[test]
    fn a_new_leader_reports_only_what_changed_since_the_last_one_left() {
        let before: BTreeMap<_, _> = [
            f("cluster.node", "node a", Status::Fail),
            f("cluster.node", "node b", Status::Ok),
            f("storage.space", "export x", Status::Warn),
        ]
        .into();
        let left = left_states(&states_left(&before)).unwrap();
        assert_eq!(left.len(), 2, "only what is not ok is left");
        let now: BTreeMap<_, _> = [
            f("cluster.node", "node a", Status::Fail),
            f("cluster.node", "node b", Status::Ok),
            f("storage.space", "export x", Status::Ok),
        ]
        .into();
        let c = changes(Some(&left), &now);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(
            (c[0].subject.as_str(), c[0].from, c[0].to),
            ("export x", Some(Status::Warn), Some(Status::Ok))
        );
        assert!(left_states("not json").is_none());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
