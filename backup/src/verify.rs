//! The verification ladder: each level proves more than the one below it, and records how
//! long it took.
//!
//! - L0: the newest run of the class succeeded.
//! - L1: a snapshot of the class exists, younger than twice its schedule.
//! - L2: the repository checks out with every pack's data read and hashed (a flipped byte
//!   inside a pack passes L1 and fails here).
//! - L3: the newest snapshot restored to scratch matches, file by file, the manifest taken
//!   from the source at backup time (content, size and mode); for an app's volumes, which
//!   stock restic writes without a manifest, every block matches the hash restic took of the
//!   source (its ID) and every file comes out at the size the snapshot records.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::repo::{Repo, Snapshot};
use crate::runs::Run;
use crate::stage::Manifest;

/// One level's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// 0 to 4 (4 only for an app whose database dump the lab gives a query).
    pub level: u8,
    /// What it proves.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// How long it took.
    pub seconds: f64,
}

/// The highest level there is.
pub const HIGHEST: u8 = 4;

/// What a class is, for the ladder.
#[derive(Debug, Clone)]
pub struct Class<'a> {
    /// Its name.
    pub name: &'a str,
    /// The lab's name (its snapshots' host).
    pub host: &'a str,
    /// Its schedule, in seconds.
    pub every: u64,
    /// The path its snapshots hold (`/cloudlet/LAB/CLASS`).
    pub as_path: &'a str,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// L0: whether the newest recorded run of `class` succeeded.
pub fn level0(class: &Class<'_>, runs: &[Run]) -> Level {
    let t = Instant::now();
    let last = runs.iter().rev().find(|r| r.class == class.name);
    let (ok, detail) = match last {
        None => (false, "no run recorded".to_string()),
        Some(r) => match &r.error {
            Some(e) => (false, format!("the newest run failed: {e}")),
            None => (
                true,
                format!(
                    "the newest run made {}",
                    short(r.snapshot.as_deref().unwrap_or("?"))
                ),
            ),
        },
    };
    Level {
        level: 0,
        name: "the job ran",
        ok,
        detail,
        seconds: t.elapsed().as_secs_f64(),
    }
}

/// The ladder when the repository cannot be opened: L0 as found, then (when L0 passed and
/// more was asked) L1 failed with why.
pub fn unopened(zero: Level, up_to: u8, why: &crate::BackupError) -> Vec<Level> {
    let ok = zero.ok;
    let mut out = vec![zero];
    if ok && up_to > 0 {
        out.push(Level {
            level: 1,
            name: "a recent snapshot exists",
            ok: false,
            detail: why.to_string(),
            seconds: 0.0,
        });
    }
    out
}

/// Climbs the ladder for `class` up to `up_to`, stopping at the first level that fails;
/// `scratch` is where L3 restores (emptied by the caller).
pub fn ladder(
    repo: &Repo,
    class: &Class<'_>,
    runs: &[Run],
    up_to: u8,
    scratch: &Path,
) -> Vec<Level> {
    let subject = Subject {
        what: format!("`{}`", class.name),
        every: class.every,
        select: &|s: &Snapshot| s.class == class.name && s.host == class.host,
        proof: Proof::Manifest {
            as_path: class.as_path,
        },
    };
    climb(
        repo,
        &subject,
        level0(class, runs),
        up_to,
        scratch,
        &mut None,
    )
}

/// How L3 proves a restore.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    /// Against the manifest the snapshot holds at `as_path` (cloudlet's classes).
    Manifest {
        /// The path the class's snapshots hold.
        as_path: &'a str,
    },
    /// Block by block against the hashes the writer took of the source (each block's ID),
    /// every file at the size the snapshot records (app volumes, written by stock restic).
    Blocks,
}

/// What a ladder climbs for: a class of cloudlet's, or an app's volumes.
pub struct Subject<'a> {
    /// How levels name it (`` `state` ``, `the volumes of blog/blog`).
    pub what: String,
    /// Its schedule, in seconds.
    pub every: u64,
    /// Which snapshots are its.
    pub select: &'a dyn Fn(&Snapshot) -> bool,
    /// How L3 proves a restore.
    pub proof: Proof<'a>,
}

/// Climbs from `zero` (L0, found by the caller) up to `up_to` for `subject`, stopping at the
/// first level that fails; `scratch` is where L3 restores. `checked` holds L2's outcome for
/// the repository once found, so ladders over one repository read its data once.
pub fn climb(
    repo: &Repo,
    subject: &Subject<'_>,
    zero: Level,
    up_to: u8,
    scratch: &Path,
    checked: &mut Option<(bool, String)>,
) -> Vec<Level> {
    let ok = zero.ok;
    let mut out = vec![zero];
    if !ok || up_to == 0 {
        return out;
    }
    let mut step = |level: u8, name: &'static str, f: &mut dyn FnMut() -> (bool, String)| {
        let t = Instant::now();
        let (ok, detail) = f();
        out.push(Level {
            level,
            name,
            ok,
            detail,
            seconds: t.elapsed().as_secs_f64(),
        });
        ok
    };
    let snapshots = repo.snapshots();
    let mut newest_id = None;
    if !step(1, "a recent snapshot exists", &mut || match &snapshots {
        Err(e) => (false, e.to_string()),
        Ok(all) => match all
            .iter()
            .filter(|s| (subject.select)(s))
            .max_by_key(|s| s.unix)
        {
            None => (false, format!("no snapshot of {}", subject.what)),
            Some(s) => {
                let age = now() - s.unix;
                newest_id = Some(s.id.clone());
                let limit = i64::try_from(subject.every.saturating_mul(2)).unwrap_or(i64::MAX);
                (
                    age <= limit,
                    format!(
                        "{} taken {age}s ago (at most {limit}s allowed)",
                        short(&s.id)
                    ),
                )
            }
        },
    }) || up_to == 1
    {
        return out;
    }
    if !step(
        2,
        "the repository checks out with its data read",
        &mut || {
            checked
                .get_or_insert_with(|| match repo.check(true) {
                    Err(e) => (false, e.to_string()),
                    Ok(found) if found.is_empty() => (true, "no errors".into()),
                    Ok(found) => (false, found.join("; ")),
                })
                .clone()
        },
    ) || up_to == 2
    {
        return out;
    }
    let id = newest_id.unwrap_or_default();
    step(
        3,
        "a restore to scratch matches the source",
        &mut || match subject.proof {
            Proof::Manifest { as_path } => {
                let restored = repo
                    .restore_hashed(&format!("{id}:{as_path}"), scratch)
                    .and_then(|got| {
                        Manifest::read(scratch, short(&id))
                            .map(|m| (m.files.len(), m.compare(&got)))
                    });
                match restored {
                    Err(e) => (false, e.to_string()),
                    Ok((n, d)) if d.is_empty() => {
                        (true, format!("{} files of {} match", n, short(&id)))
                    }
                    Ok((_, d)) => (false, d.join("; ")),
                }
            }
            Proof::Blocks => match repo.restore_hashed(&id, scratch) {
                Err(e) => (false, e.to_string()),
                Ok(got) => (
                    true,
                    format!(
                        "{} files ({} bytes) of {} restored, every block matching the hash taken from the source",
                        got.files.len(),
                        got.files.values().map(|e| e.size).sum::<u64>(),
                        short(&id)
                    ),
                ),
            },
        },
    );
    out
}

/// restic's short form of a snapshot ID.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}
