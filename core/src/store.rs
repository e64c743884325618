//! The state store under `.cloudlet/`: an apply journal and a lock.
//!
//! The store is not the source of truth — the infrastructure is, found through ownership
//! markers — so losing it loses no lab. It records what each apply did, step by step, so an
//! interrupted apply is visible and explainable, and it keeps two applies from running at
//! once. The journal is an append-only JSON-lines file: a record is one `write` call, a crash
//! can at worst leave a torn last line, which readers skip.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write};
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

/// A Unix time in milliseconds as UTC, `2026-12-04 14:34:05 UTC`.
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The lock file's record of its holder, made readable: `pid 42 since 1764858845000`
/// becomes `pid 42 since 2026-12-04 14:34:05 UTC`.
pub fn readable_holder(text: &str) -> String {
    let text = text.trim();
    match text.rsplit_once(" since ") {
        Some((who, ms)) => match ms.parse::<u64>() {
            Ok(ms) => format!("{who} since {}", format_utc(ms)),
            Err(_) => crate::diag::printable(text).into_owned(),
        },
        None => crate::diag::printable(text).into_owned(),
    }
}

/// Opens a file of the state directory. Links are not followed (a journal linked elsewhere
/// would be written outside the directory) and a FIFO or device is refused instead of
/// blocking on it.
fn open_state_file(path: &Path, opts: &mut OpenOptions) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = opts
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::other(
                    "it is a symbolic link; the state directory holds only cloudlet's own regular files (remove the link)",
                )
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "it is not a regular file; the state directory holds only cloudlet's own regular files (remove it)",
        ));
    }
    Ok(file)
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
        let mut file = open_state_file(
            &path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )
        .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                use std::io::Read as _;
                let mut text = String::new();
                let _ = (&file).take(512).read_to_string(&mut text);
                let holder = Some(readable_holder(&text)).filter(|s| !s.is_empty());
                return Err(EngineError::Locked { path, holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        writeln!(file, "pid {} since {}", std::process::id(), now_ms()).map_err(io)?;
        Ok(LockGuard { _file: file })
    }

    /// Whether another process holds the apply lock now: the same refusal `lock` gives,
    /// without keeping the lock, so a frontend can refuse before it plans.
    pub fn check_unlocked(&self) -> Result<(), EngineError> {
        self.lock().map(drop)
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
            let mut f = open_state_file(
                &path,
                OpenOptions::new().create(true).append(true).read(true),
            )
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

    /// Every readable record, oldest first. A line that is not a record (torn by a crash,
    /// not UTF-8, written by something else) is skipped with a warning.
    pub fn records(&self) -> Result<Vec<Record>, EngineError> {
        let path = self.journal_path();
        let file = match open_state_file(&path, OpenOptions::new().read(true)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(EngineError::Store { path, source }),
        };
        let mut out = Vec::new();
        let mut skipped = 0usize;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(|source| EngineError::Store {
                path: path.clone(),
                source,
            })?;
            match serde_json::from_slice::<Record>(&line) {
                Ok(r) => out.push(r),
                Err(_) if line.is_empty() => {}
                Err(_) => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(
                journal = %path.display(),
                skipped,
                "journal lines that are not records were skipped"
            );
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
    fn the_holder_is_shown_with_a_readable_time() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_764_858_845_000), "2025-12-04 14:34:05 UTC");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            readable_holder("pid 7 since 1764858845000\n"),
            "pid 7 since 2025-12-04 14:34:05 UTC"
        );
        let dir = tempfile::tempdir().unwrap();
        let a = StateStore::open(dir.path()).unwrap();
        let _g = a.lock().unwrap();
        match StateStore::open(dir.path()).unwrap().check_unlocked() {
            Err(e @ EngineError::Locked { .. }) => {
                let m = e.to_string();
                assert!(m.contains(" UTC"), "{m}");
                assert!(!m.contains("since 1"), "{m}");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[test]
    fn foreign_lines_links_and_fifos_in_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let rec = Record::End {
            apply: "a1".into(),
            at: 1,
            status: "ok".into(),
        };
        s.record(&rec, false).unwrap();
        // A line that is not UTF-8, and one that is not a record, in the middle.
        let mut f = OpenOptions::new()
            .append(true)
            .open(s.journal_path())
            .unwrap();
        f.write_all(b"\xff\xfe garbage\n{\"record\":\"nope\"}\n")
            .unwrap();
        drop(f);
        let s = StateStore::open(dir.path()).unwrap();
        s.record(&rec, false).unwrap();
        assert_eq!(s.records().unwrap(), vec![rec.clone(), rec.clone()]);

        // A journal linked outside the state directory is neither read nor written.
        let outside = tempfile::NamedTempFile::new().unwrap();
        let linked = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), linked.path().join("journal.jsonl")).unwrap();
        let s = StateStore::open(linked.path()).unwrap();
        let e = s.record(&rec, false).unwrap_err();
        assert!(crate::error::chain(&e).contains("symbolic link"), "{e}");
        assert!(s.records().is_err());
        assert_eq!(std::fs::metadata(outside.path()).unwrap().len(), 0);

        // A FIFO: refused at once instead of blocking.
        let fifo = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mkfifo")
            .arg(fifo.path().join("journal.jsonl"))
            .status()
            .unwrap();
        assert!(st.success());
        let s = StateStore::open(fifo.path()).unwrap();
        let e = s.records().unwrap_err();
        assert!(
            crate::error::chain(&e).contains("not a regular file"),
            "{e}"
        );
        assert!(s.record(&rec, false).is_err());
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
