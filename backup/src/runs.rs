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
