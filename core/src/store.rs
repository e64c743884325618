//! The state store under `.cloudlet/`: an apply journal and a lock.
//!
//! The store is not the source of truth — the infrastructure is, found through ownership
//! markers — so losing it loses no lab. It records what each apply did, step by step, so an
//! interrupted apply is visible and explainable, and it keeps two applies from running at
//! once. The journal is an append-only JSON-lines file: a record is one `write` call, a crash
//! can at worst leave a torn last line, which readers skip.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::plan::Action;
use crate::resource::ResourceId;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// An apply began.
    Begin {
        /// Apply id.
        apply: String,
        /// Unix milliseconds.
        at: u64,
        /// Number of steps.
        steps: usize,
        /// The plan's desired digest.
        desired: String,
    },
    /// A step started.
    Started {
        /// Apply id.
        apply: String,
        /// Resource.
        id: ResourceId,
        /// Action.
        action: Action,
    },
    /// A step finished.
    Done {
        /// Apply id.
        apply: String,
        /// Resource.
        id: ResourceId,
        /// Action.
        action: Action,
    },
    /// A step failed.
    Failed {
        /// Apply id.
        apply: String,
        /// Resource.
        id: ResourceId,
        /// Action.
        action: Action,
        /// The error.
        error: String,
    },
    /// The apply ended.
    End {
        /// Apply id.
        apply: String,
        /// Unix milliseconds.
        at: u64,
        /// `ok`, `failed` or `cancelled`.
        status: String,
    },
}

/// An apply that began but never ended (the process died or was killed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interrupted {
    /// Its id.
    pub apply: String,
    /// Steps it started but did not finish: their outcome is unknown until re-observed.
    pub in_flight: Vec<ResourceId>,
    /// Steps it finished.
    pub done: usize,
}

/// The state directory of a lab.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    journal: Mutex<Option<File>>,
}

/// Holds the apply lock until dropped.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl StateStore {
    /// Opens (and creates) the state directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, EngineError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| EngineError::Store {
            path: dir.clone(),
            source,
        })?;
        Ok(StateStore {
            dir,
            journal: Mutex::new(None),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }

    /// Takes the apply lock, or fails at once if another process holds it.
    pub fn lock(&self) -> Result<LockGuard, EngineError> {
        let path = self.dir.join("lock");
        let io = |source| EngineError::Store {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty());
                return Err(EngineError::Locked { path, holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        writeln!(file, "pid {} since {}", std::process::id(), now_ms()).map_err(io)?;
        Ok(LockGuard { _file: file })
    }

    /// Appends a record. `durable` also syncs it to disk (used for begin, end and failures).
    pub fn record(&self, rec: &Record, durable: bool) -> Result<(), EngineError> {
        let path = self.journal_path();
        let io = |source| EngineError::Store {
            path: path.clone(),
            source,
        };
        let mut guard = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)
                .map_err(io)?;
            // A crash may have left a torn last line: end it so the next record stands alone.
            let len = f.metadata().map_err(io)?.len();
            if len > 0 {
                use std::io::{Read, Seek, SeekFrom};
                let mut last = [0u8; 1];
                f.seek(SeekFrom::Start(len - 1)).map_err(io)?;
                f.read_exact(&mut last).map_err(io)?;
                if last[0] != b'\n' {
                    f.write_all(b"\n").map_err(io)?;
                }
            }
            *guard = Some(f);
        }
        let Some(f) = guard.as_mut() else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(rec).unwrap_or_default();
        line.push(b'\n');
        f.write_all(&line).map_err(io)?;
        if durable {
            f.sync_data().map_err(io)?;
        }
        Ok(())
    }

    /// Every readable record, oldest first (a torn last line is skipped).
    pub fn records(&self) -> Result<Vec<Record>, EngineError> {
        let path = self.journal_path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(EngineError::Store { path, source }),
        };
        let mut out = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|source| EngineError::Store {
                path: path.clone(),
                source,
            })?;
            if let Ok(r) = serde_json::from_str::<Record>(&line) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The last apply, if it began and never ended.
    pub fn interrupted(&self) -> Result<Option<Interrupted>, EngineError> {
        let records = self.records()?;
        let Some(begin) = records
            .iter()
            .rposition(|r| matches!(r, Record::Begin { .. }))
        else {
            return Ok(None);
        };
        let Record::Begin { apply, .. } = &records[begin] else {
            return Ok(None);
        };
        let mut started: Vec<ResourceId> = Vec::new();
        let mut done = 0;
        for r in &records[begin..] {
            match r {
                Record::End { apply: a, .. } if a == apply => return Ok(None),
                Record::Started { apply: a, id, .. } if a == apply => started.push(id.clone()),
                Record::Done { apply: a, id, .. } | Record::Failed { apply: a, id, .. }
                    if a == apply =>
                {
                    done += 1;
                    started.retain(|s| s != id);
                }
                _ => {}
            }
        }
        Ok(Some(Interrupted {
            apply: apply.clone(),
            in_flight: started,
            done,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Domain;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = StateStore::open(dir.path()).unwrap();
        let b = StateStore::open(dir.path()).unwrap();
        let g = a.lock().unwrap();
        match b.lock() {
            Err(EngineError::Locked { holder, .. }) => {
                assert!(holder.unwrap().contains(&std::process::id().to_string()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(g);
        b.lock().unwrap();
    }

    #[test]
    fn interrupted_apply_is_detected_and_torn_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let id = ResourceId::new(Domain::Cluster, "namespace", "a");
        let id2 = ResourceId::new(Domain::Cluster, "namespace", "b");
        s.record(
            &Record::Begin {
                apply: "1".into(),
                at: 0,
                steps: 2,
                desired: String::new(),
            },
            true,
        )
        .unwrap();
        s.record(
            &Record::Started {
                apply: "1".into(),
                id: id.clone(),
                action: Action::Create,
            },
            false,
        )
        .unwrap();
        s.record(
            &Record::Done {
                apply: "1".into(),
                id: id.clone(),
                action: Action::Create,
            },
            false,
        )
        .unwrap();
        s.record(
            &Record::Started {
                apply: "1".into(),
                id: id2.clone(),
                action: Action::Create,
            },
            false,
        )
        .unwrap();
        drop(s);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("journal.jsonl"))
            .unwrap();
        f.write_all(b"{\"record\":\"done\",\"app").unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let i = s.interrupted().unwrap().unwrap();
        s.record(
            &Record::Done {
                apply: "1".into(),
                id: id2.clone(),
                action: Action::Create,
            },
            false,
        )
        .unwrap();
        assert!(
            s.interrupted().unwrap().unwrap().in_flight.is_empty(),
            "a record after a torn line is readable"
        );
        assert_eq!(i.in_flight, vec![id2.clone()]);
        assert_eq!(i.done, 1);
        s.record(
            &Record::End {
                apply: "1".into(),
                at: 1,
                status: "ok".into(),
            },
            true,
        )
        .unwrap();
        assert!(s.interrupted().unwrap().is_none());
    }
}
