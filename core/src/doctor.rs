//! `cloudlet doctor`'s findings: what each domain's checks say about the running lab, as data
//! (a check's stable name, what it looked at, ok / warn / fail, the evidence, the fix). The
//! checks live with their domain; the facade runs them at once with time limits, and the
//! frontends print them.

use serde::{Deserialize, Serialize};

use crate::resource::Domain;

/// The version of the findings' JSON shape (`cloudlet doctor --output json`): it changes only
/// when a field changes meaning or goes away.
pub const FINDINGS_FORMAT: u32 = 1;

/// How a check came out. Ordered: the worst of several is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// As the lab wants it.
    Ok,
    /// Works, but will not for long or not as declared (a certificate near its end, a backup
    /// late, drift).
    Warn,
    /// Broken or unreachable.
    Fail,
}

impl Status {
    /// `ok`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of one check about one subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The check's stable name (`cluster.pod`, `router.reachable`): what `--output json`
    /// readers and `watch`'s alerts key on.
    pub check: String,
    /// The domain it belongs to; `None` for the lab as a whole (its backups).
    pub domain: Option<Domain>,
    /// What was looked at (`pod apps/web-5d8f-x2`, `node cp1`, `backup state`).
    pub subject: String,
    /// How it came out.
    pub status: Status,
    /// What was seen, in words, with the numbers.
    pub evidence: String,
    /// What to do about it (absent when all is well).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    /// A finding with no fix.
    pub fn new(
        check: impl Into<String>,
        domain: Option<Domain>,
        subject: impl Into<String>,
        status: Status,
        evidence: impl Into<String>,
    ) -> Finding {
        Finding {
            check: check.into(),
            domain,
            subject: subject.into(),
            status,
            evidence: evidence.into(),
            fix: None,
        }
    }

    /// An ok finding.
    pub fn ok(
        check: impl Into<String>,
        domain: Option<Domain>,
        subject: impl Into<String>,
        evidence: impl Into<String>,
    ) -> Finding {
        Finding::new(check, domain, subject, Status::Ok, evidence)
    }

    /// This finding with `fix`.
    #[must_use]
    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// When a state counts as stuck, and how near an end counts as near. The defaults are the
/// thresholds people already alert on (kubernetes-mixin's rules, cert-manager's renewal
/// window, sanoid's freshness).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    /// A pod Pending (unscheduled or waiting for its volumes) this long is stuck (seconds).
    pub pending: u64,
    /// A container waiting to start (ContainerCreating — often an NFS mount — or an image
    /// pull) this long is stuck (seconds).
    pub waiting: u64,
    /// A Running pod not Ready this long is dead but looks alive (seconds).
    pub not_ready: u64,
    /// A pod still there this long after its deletion's grace period is stuck Terminating
    /// (seconds).
    pub terminating: u64,
    /// A certificate ending within this many days is a warning.
    pub cert_warn_days: u64,
    /// A certificate ending within this many days (or ended) is a failure.
    pub cert_fail_days: u64,
    /// A machine installing this long is stuck (seconds).
    pub installing: u64,
    /// A NAS file system with less than this share free (percent) is a warning.
    pub space_warn_percent: u8,
    /// With less than this share free (percent), a failure: writes are about to fail.
    pub space_fail_percent: u8,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            pending: 15 * 60,
            waiting: 60 * 60,
            not_ready: 15 * 60,
            terminating: 5 * 60,
            cert_warn_days: 30,
            cert_fail_days: 7,
            installing: 60 * 60,
            space_warn_percent: 15,
            space_fail_percent: 5,
        }
    }
}

/// How late something made every `every` seconds is at `age` seconds (sanoid's rule for
/// snapshots, used for backups too): past 1.5 periods a warning, past 3 a failure.
pub fn lateness(age: u64, every: u64) -> Status {
    if age > every.saturating_mul(3) {
        Status::Fail
    } else if age > every.saturating_add(every / 2) {
        Status::Warn
    } else {
        Status::Ok
    }
}

/// Bytes in words: `512 B`, `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// How a file system or datastore with `free` of `total` bytes stands against the
/// thresholds, with the evidence in words (`40.0 GiB of 100.0 GiB free (40.0%)`).
pub fn free_space(free: u64, total: u64, t: &Thresholds) -> (Status, String) {
    let pct = if total == 0 {
        0.0
    } else {
        free as f64 * 100.0 / total as f64
    };
    let evidence = format!("{} of {} free ({pct:.1}%)", bytes(free), bytes(total));
    let status = if pct < f64::from(t.space_fail_percent) {
        Status::Fail
    } else if pct < f64::from(t.space_warn_percent) {
        Status::Warn
    } else {
        Status::Ok
    };
    (status, evidence)
}

/// A span of seconds in words: `45s`, `12m`, `3h 5m`, `2d 4h`.
pub fn span(seconds: u64) -> String {
    let (d, h, m) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The worst status of `findings` (`Ok` for none).
pub fn worst<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> Status {
    findings
        .into_iter()
        .map(|f| f.status)
        .max()
        .unwrap_or(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_people_write_them() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(60), "1m");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(3600 + 5 * 60 + 7), "1h 5m");
        assert_eq!(span(86_400 * 2 + 3600 * 4 + 60), "2d 4h");
        assert_eq!(span(86_400), "1d");
    }

    #[test]
    fn the_worst_status_wins_and_the_shape_is_stable() {
        let a = Finding::ok("x.reachable", Some(Domain::Router), "router", "answered");
        let b = Finding::new("x.pod", None, "pod a/b", Status::Fail, "stuck").fix("delete it");
        assert_eq!(worst([&a]), Status::Ok);
        assert_eq!(worst([&a, &b]), Status::Fail);
        assert_eq!(worst([]), Status::Ok);
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            serde_json::json!({"check": "x.pod", "domain": null, "subject": "pod a/b",
                "status": "fail", "evidence": "stuck", "fix": "delete it"})
        );
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"check": "x.reachable", "domain": "router", "subject": "router",
                "status": "ok", "evidence": "answered"})
        );
    }
}
