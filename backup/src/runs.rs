//! The record of backup runs (`STATE/backup/runs.jsonl`, one JSON object a line, appended):
//! what level 0 of the ladder and `status` read. It holds no secret: class, target, times,
//! the snapshot made or the error.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::BackupError;

/// The record's file under the state directory.
pub fn path(state: &Path) -> PathBuf {
    state.join("backup").join("runs.jsonl")
}

/// The most runs read back (the newest).
pub const KEPT: usize = 1000;

/// One run of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The class.
    pub class: String,
    /// The target's name.
    pub target: String,
    /// When it started (seconds since the Unix epoch).
    pub started: u64,
    /// How long it took.
    pub seconds: f64,
    /// The snapshot it made.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// Appends `run` to the record under `state`.
pub fn record(state: &Path, run: &Run) -> Result<(), BackupError> {
    let p = path(state);
    let io = |source| BackupError::Io {
        path: p.clone(),
        doing: "recording a backup run in",
        source,
    };
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .map_err(io)?;
    let mut line = serde_json::to_vec(run).expect("a run serializes");
    line.push(b'\n');
    f.write_all(&line).map_err(io)
}

/// The newest [`KEPT`] runs under `state`, oldest first; lines that are not runs (a write
/// cut short) are skipped.
pub fn read(state: &Path) -> Vec<Run> {
    let text = std::fs::read_to_string(path(state)).unwrap_or_default();
    let mut runs: Vec<Run> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let extra = runs.len().saturating_sub(KEPT);
    runs.drain(..extra);
    runs
}

/// How fresh a class's backups are, for `cloudlet doctor`: its newest successful run against
/// its schedule (`every`, seconds). Later than half a period past it is a warning, later than
/// three periods (or never) a failure — sanoid's freshness rule, scaled to the schedule. A
/// newest run that failed is said, and is at least a warning.
pub fn freshness(
    class: &str,
    every: u64,
    runs: &[Run],
    now: u64,
) -> cloudlet_core::doctor::Finding {
    use cloudlet_core::doctor::{Finding, Status, span};
    let subject = format!("backup {class}");
    let mine: Vec<&Run> = runs.iter().filter(|r| r.class == class).collect();
    let good = mine.iter().rev().find(|r| r.error.is_none());
    let newest_failed = mine.last().and_then(|r| r.error.as_ref().map(|e| (r, e)));
    let failed_note = newest_failed
        .map(|(r, e)| {
            format!(
                "; the newest run, {} ago, failed: {e}",
                span(now.saturating_sub(r.started))
            )
        })
        .unwrap_or_default();
    let schedule = span(every);
    let Some(good) = good else {
        return Finding::new(
            "backup.fresh",
            None,
            subject,
            Status::Fail,
            format!("no successful backup yet (schedule: every {schedule}){failed_note}"),
        )
        .fix(format!(
            "`cloudlet backup run --class {class}` now; `cloudlet backup install-timer` runs it on its schedule"
        ));
    };
    let age = now.saturating_sub(good.started);
    let snapshot = good
        .snapshot
        .as_deref()
        .map_or("?", |s| &s[..8.min(s.len())]);
    let evidence = format!(
        "newest snapshot {snapshot} to {} is {} old (schedule: every {schedule}){failed_note}",
        good.target,
        span(age)
    );
    let status = match cloudlet_core::doctor::lateness(age, every) {
        Status::Ok if newest_failed.is_some() => Status::Warn,
        s => s,
    };
    let finding = Finding::new("backup.fresh", None, subject, status, evidence);
    if status == Status::Ok {
        finding
    } else {
        finding.fix(format!(
            "is its timer running (`systemctl list-timers 'cloudlet-backup-*'`)? `cloudlet backup run --class {class}` makes one now"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlet_core::doctor::Status;

    fn run(class: &str, started: u64, error: Option<&str>) -> Run {
        Run {
            class: class.into(),
            target: "nas".into(),
            started,
            seconds: 1.0,
            snapshot: error.is_none().then(|| "0123456789abcdef".into()),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn freshness_follows_the_schedule() {
        let now = 1_000_000;
        let hourly = 3600;
        let f = |runs: &[Run]| freshness("state", hourly, runs, now);
        let never = f(&[]);
        assert_eq!(never.status, Status::Fail);
        assert!(never.evidence.starts_with("no successful backup yet"));
        assert_eq!(f(&[run("state", now - 3000, None)]).status, Status::Ok);
        let late = f(&[run("state", now - 2 * 3600, None)]);
        assert_eq!(late.status, Status::Warn);
        assert!(
            late.evidence.contains("01234567 to nas is 2h old"),
            "{}",
            late.evidence
        );
        assert_eq!(
            f(&[run("state", now - 4 * 3600, None)]).status,
            Status::Fail
        );
        // Another class's runs do not count.
        assert_eq!(f(&[run("cluster", now - 60, None)]).status, Status::Fail);
        // A failed newest run is said, and warns even when the one before is fresh.
        let failed = f(&[
            run("state", now - 1800, None),
            run("state", now - 60, Some("target unreachable")),
        ]);
        assert_eq!(failed.status, Status::Warn);
        assert!(
            failed.evidence.contains("failed: target unreachable"),
            "{}",
            failed.evidence
        );
    }
}
