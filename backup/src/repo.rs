//! A backup repository in restic's format, through rustic_core: stock `restic` reads what
//! cloudlet writes, and cloudlet restores what restic wrote. One repository per target holds
//! every class; a snapshot's tags say its class (`cloudlet:state`, `cloudlet:cluster`) and its
//! host is the lab's name.
//!
//! rustic_core is synchronous: call these from a blocking thread (`spawn_blocking`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustic_backend::LocalBackend;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;

use sha2::{Digest as _, Sha256};

use crate::s3::{S3Backend, S3Location};
use crate::sftp::{SftpBackend, SftpLocation};
use crate::stage::{Entry, Manifest, hex, io};

/// The permission bits of a mode as restic stores it (Go's `os.FileMode`: setuid, setgid and
/// sticky in high bits of their own).
fn go_mode(m: u32) -> u32 {
    let mut out = m & 0o777;
    if m & (1 << 23) != 0 {
        out |= 0o4000;
    }
    if m & (1 << 22) != 0 {
        out |= 0o2000;
    }
    if m & (1 << 20) != 0 {
        out |= 0o1000;
    }
    out
}

/// `dest/rel` when `rel` stays inside `dest` (no root, no `..`).
fn safe_join(dest: &Path, rel: &Path) -> Option<PathBuf> {
    use std::path::Component;
    rel.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then(|| dest.join(rel))
}
use rustic_core::{
    BackupOptions, BlobId, CheckOptions, ConfigOptions, Credentials, KeepOptions, KeyOptions,
    LocalDestination, LsOptions, OpenStatus, PathList, Repository, RepositoryBackends,
    RepositoryOptions, RestoreOptions, SnapshotOptions,
    repofile::{BlobType, SnapshotFile},
};

use crate::BackupError;

/// The tag that marks a snapshot of `class`.
pub fn class_tag(class: &str) -> String {
    format!("cloudlet:{class}")
}

/// One snapshot, as `cloudlet backup list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// The full ID (restic shows the first 8 characters).
    pub id: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// When it was taken, in seconds since the Unix epoch.
    pub unix: i64,
    /// Its class (`state`, `cluster`), from its tags; empty for a snapshot cloudlet did not write.
    pub class: String,
    /// The host it names (the lab's name for cloudlet's).
    pub host: String,
    /// The paths it holds.
    pub paths: Vec<String>,
    /// Its tags (an app's volumes: `cloudlet-app:NAMESPACE/APP`).
    pub tags: Vec<String>,
    /// Files and bytes it read, when the writer recorded them.
    pub files: u64,
    /// Bytes read.
    pub bytes: u64,
}

impl Snapshot {
    fn from_file(s: &SnapshotFile) -> Snapshot {
        let tags: Vec<String> = s.tags.iter().map(ToString::to_string).collect();
        let class = tags
            .iter()
            .find_map(|t| t.strip_prefix("cloudlet:"))
            .unwrap_or_default()
            .to_string();
        let (files, bytes) = s.summary.as_ref().map_or((0, 0), |m| {
            (m.total_files_processed, m.total_bytes_processed)
        });
        Snapshot {
            id: s.id.to_hex().as_str().to_string(),
            time: s.time.timestamp().to_string(),
            unix: s.time.timestamp().as_second(),
            class,
            host: s.hostname.clone(),
            paths: s.paths.iter().map(ToString::to_string).collect(),
            tags,
            files,
            bytes,
        }
    }
}

/// Where a repository lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// A directory.
    Dir(PathBuf),
    /// A prefix of a bucket in an S3-compatible store.
    S3(S3Location),
    /// A directory on an SFTP server.
    Sftp(SftpLocation),
}

impl std::fmt::Display for Location {
    /// As restic names it (a path, or `s3:https://…`); never credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(d) => write!(f, "{}", d.display()),
            Location::S3(s) => write!(f, "{s}"),
            Location::Sftp(s) => write!(f, "{s}"),
        }
    }
}

/// An open repository.
pub struct Repo {
    location: Location,
    key: String,
    repo: Repository<OpenStatus>,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("location", &self.location.to_string())
            .finish_non_exhaustive()
    }
}

/// What went wrong in rustic_core, with what cloudlet was doing; never the key.
fn rustic(
    loc: &Location,
    doing: &'static str,
) -> impl Fn(Box<rustic_core::RusticError>) -> BackupError {
    let repo = loc.to_string();
    move |e| BackupError::Repository {
        repo: repo.clone(),
        doing,
        message: e.display_log().trim_start_matches("Error: ").to_string(),
    }
}

fn refused(loc: &Location, doing: &'static str, message: String) -> BackupError {
    BackupError::Repository {
        repo: loc.to_string(),
        doing,
        message,
    }
}

fn s3_backend(s: &S3Location) -> Result<S3Backend, BackupError> {
    let loc = Location::S3(s.clone());
    let rt = tokio::runtime::Handle::try_current().map_err(|_| {
        refused(
            &loc,
            "opening",
            "no async runtime to send requests on".into(),
        )
    })?;
    S3Backend::new(s.clone(), rt).map_err(|m| refused(&loc, "opening", m))
}

fn sftp_backend(s: &SftpLocation) -> Result<SftpBackend, BackupError> {
    let loc = Location::Sftp(s.clone());
    let rt = tokio::runtime::Handle::try_current()
        .map_err(|_| refused(&loc, "opening", "no async runtime to run ssh on".into()))?;
    SftpBackend::new(s.clone(), rt).map_err(|m| refused(&loc, "opening", m))
}

fn unopened(loc: &Location) -> Result<Repository<()>, BackupError> {
    let be: Arc<dyn rustic_core::WriteBackend> = match loc {
        Location::Dir(dir) => {
            let path = dir
                .to_str()
                .ok_or_else(|| refused(loc, "opening", "the path is not UTF-8".into()))?;
            Arc::new(LocalBackend::new(path, std::iter::empty()).map_err(rustic(loc, "opening"))?)
        }
        Location::S3(s) => Arc::new(s3_backend(s)?),
        Location::Sftp(s) => Arc::new(sftp_backend(s)?),
    };
    let backends = RepositoryBackends::new(be, None);
    // No local cache: what is checked and restored is read from the target itself.
    let opts = RepositoryOptions::default().no_cache(true);
    Repository::new(&opts, &backends).map_err(rustic(loc, "opening"))
}

/// Whether `loc` holds a repository (its `config` file). Asks the store for an S3 target
/// (from a blocking thread of a runtime).
pub fn exists(loc: &Location) -> Result<bool, BackupError> {
    match loc {
        Location::Dir(dir) => Ok(dir.join("config").is_file()),
        Location::S3(s) => s3_backend(s)?
            .has_config()
            .map_err(|m| refused(loc, "opening", m)),
        Location::Sftp(s) => sftp_backend(s)?
            .has_config()
            .map_err(|m| refused(loc, "opening", m)),
    }
}

impl Repo {
    /// Opens the repository at `dir` with `key`. A key that opens no key file of the
    /// repository is [`BackupError::WrongKey`], and nothing is written.
    pub fn open(loc: &Location, key: &str) -> Result<Repo, BackupError> {
        if !exists(loc)? {
            return Err(BackupError::NoRepository {
                repo: loc.to_string(),
            });
        }
        let repo = unopened(loc)?
            .open(&Credentials::password(key))
            .map_err(|e| {
                if e.is_incorrect_password() {
                    BackupError::WrongKey {
                        repo: loc.to_string(),
                    }
                } else {
                    rustic(loc, "opening")(e)
                }
            })?;
        Ok(Repo {
            location: loc.clone(),
            key: key.to_string(),
            repo,
        })
    }

    /// The repository opened again (rustic_core's index states consume it).
    fn reopened(&self) -> Result<Repository<OpenStatus>, BackupError> {
        unopened(&self.location)?
            .open(&Credentials::password(&self.key))
            .map_err(rustic(&self.location, "opening"))
    }

    /// Opens the repository at `dir`, making it first when the directory has none.
    pub fn open_or_init(loc: &Location, key: &str) -> Result<Repo, BackupError> {
        if exists(loc)? {
            return Repo::open(loc, key);
        }
        if let Location::Dir(dir) = loc {
            std::fs::create_dir_all(dir).map_err(|source| BackupError::Io {
                path: dir.clone(),
                doing: "making the repository's directory",
                source,
            })?;
        }
        let repo = unopened(loc)?
            .init(
                &Credentials::password(key),
                &KeyOptions::default(),
                &ConfigOptions::default(),
            )
            .map_err(rustic(loc, "making the repository"))?;
        tracing::info!(repo = %loc, "made a backup repository");
        Ok(Repo {
            location: loc.clone(),
            key: key.to_string(),
            repo,
        })
    }

    /// Where the repository is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Backs up the directory `source` as the path `as_path` (what a restore recreates),
    /// tagged with `class`, naming `host`.
    pub fn backup(
        &self,
        source: &Path,
        as_path: &str,
        host: &str,
        class: &str,
    ) -> Result<Snapshot, BackupError> {
        let err = rustic(&self.location, "backing up");
        let indexed = self.reopened()?.to_indexed_ids().map_err(&err)?;
        let src = source.to_str().ok_or_else(|| BackupError::Repository {
            repo: self.location.to_string(),
            doing: "backing up",
            message: format!("{} is not UTF-8", source.display()),
        })?;
        let paths = PathList::from_string(src)
            .map_err(&err)?
            .sanitize()
            .map_err(|e| BackupError::Repository {
                repo: self.location.to_string(),
                doing: "backing up",
                message: e.to_string(),
            })?;
        let snap = SnapshotOptions::default()
            .host(host.to_string())
            .add_tags(&class_tag(class))
            .and_then(|o| o.to_snapshot())
            .map_err(&err)?;
        let opts = BackupOptions::default().as_path(PathBuf::from(as_path));
        let s = indexed.backup(&opts, &paths, snap).map_err(&err)?;
        Ok(Snapshot::from_file(&s))
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>, BackupError> {
        let mut all: Vec<Snapshot> = self
            .repo
            .get_all_snapshots()
            .map_err(rustic(&self.location, "listing snapshots"))?
            .iter()
            .map(Snapshot::from_file)
            .collect();
        all.sort_by(|a, b| a.unix.cmp(&b.unix).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// Checks the repository: its structure (indexes, snapshots, trees), and with
    /// `read_data` every pack's content against its hashes. The problems found, empty when
    /// none.
    pub fn check(&self, read_data: bool) -> Result<Vec<String>, BackupError> {
        let found = self
            .repo
            .check(CheckOptions::default().read_data(read_data))
            .map_err(rustic(&self.location, "checking"))?;
        if found.is_ok().is_ok() {
            return Ok(Vec::new());
        }
        // Errors and the warnings beside them (rustic_core does not export the level type).
        Ok(found.0.iter().map(|(_, e)| e.to_string()).collect())
    }

    /// Restores the snapshot `id` (or a unique prefix of it) into `dest`, which is made.
    pub fn restore(&self, id: &str, dest: &Path) -> Result<(), BackupError> {
        let err = rustic(&self.location, "restoring");
        let repo = self.reopened()?.to_indexed().map_err(&err)?;
        let node = repo.node_from_snapshot_path(id, |_| true).map_err(&err)?;
        let ls = repo.ls(&node, &LsOptions::default()).map_err(&err)?;
        let dest_s = dest.to_str().ok_or_else(|| BackupError::Repository {
            repo: self.location.to_string(),
            doing: "restoring",
            message: format!("{} is not UTF-8", dest.display()),
        })?;
        let dest = LocalDestination::new(dest_s, true, !node.is_dir()).map_err(&err)?;
        let opts = RestoreOptions::default();
        let plan = repo
            .prepare_restore(&opts, ls.clone(), &dest, false)
            .map_err(&err)?;
        repo.restore(plan, &opts, ls, &dest).map_err(&err)
    }

    /// Restores the snapshot path `id` (`ID:PATH`, or an ID) into `dest` (made) as
    /// [`Repo::restore`] does, file by file on every core with one block (restic's chunk, at
    /// most 8 MiB) of each file in memory, hashing each file as it is written: what came out,
    /// as a manifest (SHA-256, size and permission bits of every regular file), without
    /// reading anything back. Each block must hash to its ID (the hash the writer took of that
    /// piece of the source) and each file must come out at the size the snapshot records, or
    /// the restore stops, naming the file. Directories and symbolic links are made; modes and
    /// modification times are set.
    pub fn restore_hashed(&self, id: &str, dest: &Path) -> Result<Manifest, BackupError> {
        use rayon::prelude::*;
        use rustic_core::repofile::NodeType;
        let err = rustic(&self.location, "restoring");
        let repo = self.reopened()?.to_indexed().map_err(&err)?;
        let root = repo.node_from_snapshot_path(id, |_| true).map_err(&err)?;
        std::fs::create_dir_all(dest).map_err(io(dest, "making"))?;
        let mut files = Vec::new();
        let mut dirs = vec![(dest.to_path_buf(), root.meta.mode)];
        for item in repo.ls(&root, &LsOptions::default()).map_err(&err)? {
            let (rel, node) = item.map_err(&err)?;
            let to = safe_join(dest, &rel).ok_or_else(|| {
                refused(
                    &self.location,
                    "restoring",
                    format!(
                        "the snapshot names a path outside the restore: {}",
                        rel.display()
                    ),
                )
            })?;
            match &node.node_type {
                NodeType::Dir => {
                    std::fs::create_dir_all(&to).map_err(io(&to, "making"))?;
                    dirs.push((to, node.meta.mode));
                }
                NodeType::Symlink { .. } => {
                    let target = node.node_type.to_link();
                    if let Some(parent) = to.parent() {
                        std::fs::create_dir_all(parent).map_err(io(parent, "making"))?;
                    }
                    std::os::unix::fs::symlink(target, &to).map_err(io(&to, "linking"))?;
                }
                NodeType::File => files.push((rel, to, node)),
                // Devices, FIFOs and sockets are not state cloudlet keeps.
                _ => {}
            }
        }
        let entries: Vec<(String, Entry)> = files
            .into_par_iter()
            .map(|(rel, to, node)| {
                let mut out = std::fs::File::create(&to).map_err(io(&to, "writing"))?;
                let mut h = Sha256::new();
                let mut at = 0_u64;
                // Blob by blob: each one's content must hash to its ID, the hash the writer
                // took of that piece of the source.
                for id in node.content.iter().flatten() {
                    let blob = repo
                        .get_blob_cached(&BlobId::from(*id), BlobType::Data)
                        .map_err(&err)?;
                    let got = Sha256::digest(&blob);
                    if hex(&got) != id.to_hex().as_str() {
                        return Err(refused(
                            &self.location,
                            "restoring",
                            format!(
                                "{}: a block does not hash to its ID {} (the data differs from what was backed up)",
                                rel.display(),
                                &id.to_hex()[..8]
                            ),
                        ));
                    }
                    h.update(&blob);
                    out.write_all(&blob).map_err(io(&to, "writing"))?;
                    at += blob.len() as u64;
                }
                if at != node.meta.size {
                    return Err(refused(
                        &self.location,
                        "restoring",
                        format!(
                            "{}: {at} bytes restored, the snapshot records {}",
                            rel.display(),
                            node.meta.size
                        ),
                    ));
                }
                let mode = go_mode(node.meta.mode.unwrap_or(0o644));
                out.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(io(&to, "setting the mode of"))?;
                if let Some(t) = &node.meta.mtime {
                    let when = std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(u64::try_from(t.as_second()).unwrap_or(0));
                    let _ = out.set_modified(when);
                }
                let rel = rel.to_string_lossy().replace('\\', "/");
                Ok((
                    rel,
                    Entry {
                        sha256: hex(&h.finalize()),
                        size: at,
                        mode,
                    },
                ))
            })
            .collect::<Result<_, BackupError>>()?;
        // Directory modes last: a read-only directory would refuse its own files.
        for (d, mode) in dirs.iter().rev() {
            if let Some(m) = mode {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(go_mode(*m)))
                    .map_err(io(d, "setting the mode of"))?;
            }
        }
        Ok(Manifest {
            class: String::new(),
            taken: 0,
            files: entries.into_iter().collect(),
        })
    }

    /// Forgets the snapshots of `class` and `host` that `keep` does not keep (nothing when it
    /// keeps all); their IDs. The data they alone held stays until a prune.
    pub fn forget(
        &self,
        class: &str,
        host: &str,
        keep: &cloudlet_core::model::Keep,
    ) -> Result<Vec<String>, BackupError> {
        if keep.keeps_all() {
            return Ok(Vec::new());
        }
        let err = rustic(&self.location, "forgetting snapshots");
        let tag = class_tag(class);
        let mut mine = self
            .repo
            .get_matching_snapshots(|s| s.hostname == host && s.tags.iter().any(|t| *t == tag))
            .map_err(&err)?;
        mine.sort_by(|a, b| a.time.cmp(&b.time));
        let n = |v: Option<u32>| v.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
        let opts = KeepOptions::default()
            .keep_last(n(keep.last))
            .keep_hourly(n(keep.hourly))
            .keep_daily(n(keep.daily))
            .keep_weekly(n(keep.weekly))
            .keep_monthly(n(keep.monthly));
        let now = rustic_core::jiff::Zoned::now();
        let verdicts = opts.apply(mine, &now).map_err(&err)?;
        let gone: Vec<_> = verdicts
            .iter()
            .filter(|v| !v.keep)
            .map(|v| v.snapshot.id)
            .collect();
        if !gone.is_empty() {
            self.repo.delete_snapshots(&gone).map_err(&err)?;
        }
        Ok(gone
            .iter()
            .map(|i| i.to_hex().as_str().to_string())
            .collect())
    }
}

/// A rustic_core backend error saying `what`.
pub(crate) fn backend_error(what: String) -> Box<rustic_core::RusticError> {
    rustic_core::RusticError::new(rustic_core::ErrorKind::Backend, "{what}")
        .attach_context("what", what)
}

/// Turns a store's listing (file names and sizes) into what rustic_core asks of a backend:
/// each file of type `tpe` with its ID (the config's is the default one), names that are not
/// IDs skipped, a file of 4 GiB or more refused — `at` names the store in that error.
pub(crate) fn listed(
    tpe: rustic_core::FileType,
    all: Vec<(String, u64)>,
    at: &dyn std::fmt::Display,
) -> rustic_core::RusticResult<Vec<(rustic_core::Id, u32)>> {
    let mut out = Vec::with_capacity(all.len());
    for (name, size) in all {
        let id = if tpe == rustic_core::FileType::Config {
            rustic_core::Id::default()
        } else {
            match rustic_core::Id::parse_some(&name, tpe) {
                Some(id) => id,
                None => continue,
            }
        };
        let size = u32::try_from(size)
            .map_err(|_| backend_error(format!("{name} on {at} is larger than 4 GiB")))?;
        out.push((id, size));
    }
    Ok(out)
}
