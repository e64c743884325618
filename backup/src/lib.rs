//! cloudlet's backups.
//!
//! - [`repo`]: repositories in restic's format (through rustic_core), one per target, every
//!   class in it told apart by tags; stock `restic` reads them.
//! - [`sftp`]: an SFTP server as a repository's backend (through the system's OpenSSH client).
//! - [`s3`]: an S3-compatible store as a repository's backend (Signature V4 over the
//!   project's HTTPS client).
//! - [`stage`]: what a class backs up, staged as a directory with a manifest of every file's
//!   SHA-256 and mode, so a restore can be proven byte for byte.
//! - [`etcd`]: a snapshot of etcd through its API (the gateway's `maintenance/snapshot`),
//!   checked against the hash etcd appends.
//! - [`verify`]: the verification ladder — L0 the job ran, L1 a recent snapshot exists,
//!   L2 the repository checks out with its data read, L3 a restore to scratch matches the
//!   manifest — each level with its time.
//! - [`runs`]: the record of runs that `status` and L0 read.

pub mod etcd;
pub mod repo;
pub mod runs;
pub mod s3;
pub mod sftp;
pub mod stage;
pub mod verify;

use std::path::PathBuf;

/// What went wrong with a backup; never holds the key.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The key opens no key file of the repository.
    #[error(
        "the backup key does not open the repository at {repo}: give the key it was made with (nothing was written)"
    )]
    WrongKey {
        /// The repository.
        repo: String,
    },
    /// There is no repository where one was expected.
    #[error("no backup repository at {repo}")]
    NoRepository {
        /// Where one was looked for.
        repo: String,
    },
    /// The repository refused or failed.
    #[error("{doing} the repository at {repo}: {message}")]
    Repository {
        /// The repository (its path, or its `s3:` address).
        repo: String,
        /// What cloudlet was doing.
        doing: &'static str,
        /// What rustic_core said.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{doing} {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What cloudlet was doing.
        doing: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// etcd did not give a whole snapshot.
    #[error("etcd snapshot from {endpoint}: {message}")]
    Etcd {
        /// The etcd endpoint.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// A snapshot holds no manifest, or one that cannot be read.
    #[error("snapshot {snapshot}: {message}")]
    Manifest {
        /// The snapshot.
        snapshot: String,
        /// What is wrong.
        message: String,
    },
    /// A device did not hand out its configuration, or handed out one that cannot be kept.
    #[error("the {device}'s configuration")]
    Device {
        /// The device (`router`).
        device: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The objects of a cluster cloudlet did not make could not be read through its API.
    #[error("the cluster's objects")]
    Objects {
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The blocking task running rustic_core failed.
    #[error("the backup task stopped: {0}")]
    Task(String),
}

/// Runs `f` (rustic_core's synchronous work) on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackupError::Task(e.to_string()))?
}
