//! An SFTP server as a repository's backend (a NAS, another machine, a rented storage box):
//! restic's layout in a directory of the server, reached through the system's OpenSSH client
//! (`ssh -s HOST sftp`, as restic does), so ssh's keys, agent and configuration apply. Stock
//! restic reads what this writes with `-r sftp:USER@HOST:PATH`.
//!
//! The server's host key is always checked (`StrictHostKeyChecking=yes`, against the
//! target's `known_hosts` file or the user's); ssh never asks anything (`BatchMode`). Every
//! operation is bounded in time and every file read in size; a file is written under a
//! temporary name and renamed into place, so a dropped connection never leaves a partial
//! file under a name the repository trusts.
//!
//! rustic_core calls backends synchronously (from a blocking thread or its own worker
//! threads); each call runs on the runtime the backend was made on.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::repo::backend_error;
use openssh_sftp_client::error::SftpErrorKind;
use openssh_sftp_client::{Error as SftpError, Sftp, SftpOptions};
use rustic_core::{BytesList, FileType, Id, ReadBackend, RusticResult, WriteBackend};
use tokio::io::AsyncSeekExt as _;
use tokio::process::{Child, Command};

use cloudlet_transport::http::Bytes;

/// The largest file read whole (packs are read in parts; config, keys, snapshots and
/// indexes are small).
const MAX_FILE: u64 = 1 << 30;
/// Entries of one directory before its listing is refused as endless.
const MAX_ENTRIES: usize = 10_000_000;
/// How long one operation may take (a pack of restic's largest size over a slow link).
const OP_LIMIT: Duration = Duration::from_secs(300);
/// How long connecting and authenticating may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// How much of ssh's own messages is kept for errors.
const MAX_SSH_MESSAGES: u64 = 4096;

/// Where a repository lives on an SFTP server, and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct SftpLocation {
    /// The server's name or address.
    pub host: String,
    /// Its SSH port.
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The repository's directory: absolute, or relative to the user's home.
    pub path: String,
    /// A private key file to log in with (else ssh's own: the agent, `~/.ssh`).
    pub identity: Option<PathBuf>,
    /// The server's host key, as ssh's `known_hosts` (else the user's).
    pub known_hosts: Option<PathBuf>,
}

impl std::fmt::Debug for SftpLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for SftpLocation {
    /// As restic names it: `sftp:USER@HOST:PATH`, or `sftp://USER@HOST:PORT/PATH` on a port
    /// other than 22 (an absolute path then starts with `//`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&cloudlet_core::model::sftp_repository(
            &self.user, &self.host, self.port, &self.path,
        ))
    }
}

impl SftpLocation {
    /// Why this location cannot be handed to ssh, if it cannot: a host or user that ssh would
    /// read as an option, or characters no host name, user or path holds.
    pub fn refusal(&self) -> Option<String> {
        if !cloudlet_core::model::ssh_host_ok(&self.host) {
            return Some(format!("`{}` is not a host name or address", self.host));
        }
        if !cloudlet_core::model::ssh_user_ok(&self.user) {
            return Some(format!("`{}` is not a user name", self.user));
        }
        if self.path.is_empty() || self.path.chars().any(char::is_control) {
            return Some(format!("`{}` is not a directory's path", self.path));
        }
        if self.port == 0 {
            return Some("port 0 is not a port".into());
        }
        None
    }
}

/// The file ssh writes its messages to, read back for errors.
type Messages = Arc<Mutex<std::fs::File>>;

/// A repository on an SFTP server, through one ssh connection.
pub struct SftpBackend {
    loc: SftpLocation,
    rt: tokio::runtime::Handle,
    sftp: Sftp,
    /// The ssh process (killed when the backend goes).
    _ssh: Child,
    messages: Messages,
}

impl std::fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpBackend")
            .field("loc", &self.loc.to_string())
            .finish_non_exhaustive()
    }
}

fn not_found(e: &SftpError) -> bool {
    matches!(e, SftpError::SftpError(SftpErrorKind::NoSuchFile, _))
}

/// The ssh command that opens the SFTP subsystem on `loc`'s server.
pub fn ssh_command(loc: &SftpLocation) -> Command {
    let mut c = Command::new("ssh");
    c.args(cloudlet_core::model::ssh_args(
        &loc.host,
        loc.port,
        &loc.user,
        loc.identity.as_deref(),
        loc.known_hosts.as_deref(),
    ));
    c
}

impl SftpBackend {
    /// Connects to `loc`'s server (from a blocking thread of `rt`): starts ssh and opens the
    /// SFTP session. ssh's own complaint (an unknown host key, a refused key) is the error.
    pub fn new(loc: SftpLocation, rt: tokio::runtime::Handle) -> Result<SftpBackend, String> {
        if let Some(why) = loc.refusal() {
            return Err(why);
        }
        // ssh's messages go to an unnamed file, read back for errors.
        let log = tempfile::tempfile().map_err(|e| format!("a file for ssh's messages: {e}"))?;
        let to_ssh = log
            .try_clone()
            .map_err(|e| format!("a file for ssh's messages: {e}"))?;
        let messages: Messages = Arc::new(Mutex::new(log));
        let (sftp, ssh) = rt.block_on(async {
            let mut ssh = ssh_command(&loc)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(to_ssh))
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        "ssh (OpenSSH's client) is not installed: install it (`openssh-client`)"
                            .to_string()
                    }
                    _ => format!("starting ssh: {e}"),
                })?;
            let (Some(stdin), Some(stdout)) = (ssh.stdin.take(), ssh.stdout.take()) else {
                return Err("ssh's pipes were not open".to_string());
            };
            let opened =
                tokio::time::timeout(CONNECT_LIMIT, Sftp::new(stdin, stdout, SftpOptions::new()))
                    .await;
            match opened {
                Ok(Ok(sftp)) => Ok((sftp, ssh)),
                failed => {
                    // ssh has exited (or is killed now); its complaint says why.
                    let _ = ssh.start_kill();
                    let _ = tokio::time::timeout(Duration::from_secs(5), ssh.wait()).await;
                    Err(match failed {
                        Err(_) => format!(
                            "no SFTP session within {CONNECT_LIMIT:?}{}",
                            said(&messages)
                        ),
                        Ok(Err(e)) => refusal(&loc, &e, &messages),
                        Ok(Ok(_)) => unreachable!("handled above"),
                    })
                }
            }
        })?;
        Ok(SftpBackend {
            loc,
            rt,
            sftp,
            _ssh: ssh,
            messages,
        })
    }

    /// A file's path on the server.
    fn path(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => self.under("config"),
            FileType::Pack => self.under(&format!("data/{}/{}", &hex[..2], hex.as_str())),
            _ => self.under(&format!("{}/{}", tpe.dirname(), hex.as_str())),
        }
    }

    fn under(&self, name: &str) -> String {
        format!("{}/{name}", self.loc.path.trim_end_matches('/'))
    }

    /// Runs one operation, bounded in time; its error names the server and adds what ssh said.
    fn run<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, SftpError>>,
    ) -> RusticResult<T> {
        self.rt
            .block_on(async { tokio::time::timeout(OP_LIMIT, f).await })
            .map_err(|_| format!("{what} on {}: no answer within {OP_LIMIT:?}", self.loc))
            .and_then(|r| r.map_err(|e| self.failed(what, &e)))
            .map_err(backend_error)
    }

    fn failed(&self, what: &str, e: &SftpError) -> String {
        format!("{what} on {}: {e}{}", self.loc, said(&self.messages))
    }

    /// The names and sizes of the regular files in `dir`; none when it does not exist.
    async fn list_dir(&self, dir: &str) -> Result<Vec<(String, u64)>, SftpError> {
        use futures::StreamExt as _;
        let mut fs = self.sftp.fs();
        let d = match fs.open_dir(dir).await {
            Ok(d) => d,
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut entries = std::pin::pin!(d.read_dir());
        let mut out = Vec::new();
        while let Some(e) = entries.next().await {
            let e = e?;
            let m = e.metadata();
            if !m.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            if out.len() >= MAX_ENTRIES {
                return Err(SftpError::IOError(std::io::Error::other(format!(
                    "{dir} holds more than {MAX_ENTRIES} files"
                ))));
            }
            let name = e.filename().to_string_lossy().into_owned();
            out.push((name, m.len().unwrap_or(0)));
        }
        Ok(out)
    }

    /// `length` bytes from `offset` of the file at `path` (to its end when `None`, bounded).
    async fn read(&self, path: &str, offset: u64, length: Option<u64>) -> Result<Bytes, SftpError> {
        let mut f = self.sftp.open(path).await?;
        let want = match length {
            Some(n) => n,
            None => {
                let size = f.metadata().await?.len().unwrap_or(0);
                if size > MAX_FILE {
                    return Err(SftpError::IOError(std::io::Error::other(format!(
                        "{path} is larger than {MAX_FILE} bytes"
                    ))));
                }
                size.saturating_sub(offset)
            }
        };
        let mut out = bytes::BytesMut::with_capacity(usize::try_from(want).unwrap_or(0));
        let mut pos = offset;
        let end = offset + want;
        while pos < end {
            f.seek(SeekFrom::Start(pos)).await?;
            let n = u32::try_from(end - pos).unwrap_or(u32::MAX);
            match f.read(n, bytes::BytesMut::new()).await? {
                Some(b) if !b.is_empty() => {
                    pos += b.len() as u64;
                    out.extend_from_slice(&b);
                }
                _ => {
                    return Err(SftpError::IOError(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{path} ends at {pos}, before {end}"),
                    )));
                }
            }
        }
        f.close().await?;
        Ok(out.freeze())
    }

    /// Makes `dir` and the directories above it that are missing.
    async fn mkdir_all(&self, dir: &str) -> Result<(), SftpError> {
        let mut fs = self.sftp.fs();
        let mut sofar = String::new();
        for (i, part) in dir.split('/').enumerate() {
            if i > 0 {
                sofar.push('/');
            }
            sofar.push_str(part);
            if part.is_empty() || part == "." || part == ".." {
                continue;
            }
            match fs.metadata(&sofar).await {
                Ok(m) if m.file_type().is_some_and(|t| t.is_dir()) => {}
                Ok(_) => {
                    return Err(SftpError::IOError(std::io::Error::other(format!(
                        "{sofar} is not a directory"
                    ))));
                }
                Err(e) if not_found(&e) => match fs.create_dir(&sofar).await {
                    Ok(()) => {}
                    // Made meanwhile by another writer.
                    Err(_)
                        if fs
                            .metadata(&sofar)
                            .await
                            .is_ok_and(|m| m.file_type().is_some_and(|t| t.is_dir())) => {}
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes `content` to `path` under a temporary name, then renames it into place.
    async fn write(&self, path: &str, content: &BytesList) -> Result<(), SftpError> {
        let tmp = format!("{path}.tmp-{}", std::process::id());
        let mut f = match self.sftp.create(&tmp).await {
            Err(e) if not_found(&e) => {
                // A repository restic made without one of `data/XX`: make it.
                if let Some((dir, _)) = path.rsplit_once('/') {
                    self.mkdir_all(dir).await?;
                }
                self.sftp.create(&tmp).await?
            }
            r => r?,
        };
        for b in content.slice() {
            f.write_all(b).await?;
        }
        f.close().await?;
        let mut fs = self.sftp.fs();
        if let Err(e) = fs.rename(&tmp, path).await {
            // SFTP's plain rename refuses to replace: a file that is there holds the same
            // content (names are content hashes), except `config`, replaced on purpose.
            if fs.metadata(path).await.is_ok() {
                fs.remove_file(path).await?;
                fs.rename(&tmp, path).await?;
            } else {
                let _ = fs.remove_file(&tmp).await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether the repository's `config` exists.
    pub fn has_config(&self) -> Result<bool, String> {
        let path = self.under("config");
        self.rt.block_on(async {
            let mut fs = self.sftp.fs();
            match tokio::time::timeout(OP_LIMIT, fs.metadata(&path)).await {
                Err(_) => Err(format!("reading {path} on {}: no answer", self.loc)),
                Ok(Ok(_)) => Ok(true),
                Ok(Err(e)) if not_found(&e) => Ok(false),
                Ok(Err(e)) => Err(self.failed(&format!("reading {path}"), &e)),
            }
        })
    }
}

/// Why the session did not open: ssh's conclusion (its last line) when it said anything,
/// with what to do about a host key it refused.
fn refusal(loc: &SftpLocation, e: &SftpError, messages: &Messages) -> String {
    let all = said_text(messages);
    let Some(last) = all.lines().map(str::trim).rfind(|l| !l.is_empty()) else {
        return format!("opening the SFTP session: {e}");
    };
    let known = loc.known_hosts.as_ref().map_or_else(
        || "~/.ssh/known_hosts".to_string(),
        |k| k.display().to_string(),
    );
    let hint = if all.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        format!(
            ": the server's host key is not the one {known} holds; check the key on the server's console before replacing it"
        )
    } else if last.contains("Host key verification failed") {
        format!(
            ": {known} holds no key for the server; add it (`ssh-keyscan -p {} {}`, checked against the server's console)",
            loc.port, loc.host
        )
    } else if last.contains("Permission denied") {
        format!(
            ": the server does not take the key; add its public half to `{}`'s authorized_keys on the server",
            loc.user
        )
    } else {
        String::new()
    };
    format!("ssh did not connect: {last}{hint}")
}

/// What ssh said (its last messages, bounded).
fn said_text(messages: &Messages) -> String {
    use std::io::{Read as _, Seek as _};
    let mut f = messages
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let len = f.metadata().map_or(0, |m| m.len());
    let mut m = Vec::new();
    let _ = f
        .seek(SeekFrom::Start(len.saturating_sub(MAX_SSH_MESSAGES)))
        .and_then(|_| f.by_ref().take(MAX_SSH_MESSAGES).read_to_end(&mut m));
    String::from_utf8_lossy(&m).into_owned()
}

/// What ssh said, as a suffix of an error (` (ssh: …)`), if anything.
fn said(messages: &Messages) -> String {
    let text = said_text(messages);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(" (ssh: {})", text.replace(['\r', '\n'], " "))
    }
}

impl ReadBackend for SftpBackend {
    fn location(&self) -> String {
        self.loc.to_string()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        let all: Vec<(String, u64)> = match tpe {
            FileType::Config => {
                if !self.has_config().map_err(backend_error)? {
                    return Ok(Vec::new());
                }
                let size = self.run("reading config", async {
                    let mut fs = self.sftp.fs();
                    Ok(fs.metadata(self.under("config")).await?.len().unwrap_or(0))
                })?;
                vec![("config".into(), size)]
            }
            FileType::Pack => self.run("listing data", async {
                let mut all = Vec::new();
                for sub in self.list_subdirs(&self.under("data")).await? {
                    all.extend(self.list_dir(&self.under(&format!("data/{sub}"))).await?);
                }
                Ok(all)
            })?,
            _ => {
                let dir = self.under(tpe.dirname());
                self.run(&format!("listing {dir}"), self.list_dir(&dir))?
            }
        };
        crate::repo::listed(tpe, all, &self.loc)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = self.path(tpe, id);
        self.run(&format!("reading {path}"), self.read(&path, 0, None))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let path = self.path(tpe, id);
        self.run(
            &format!("reading {path} ({length} bytes at {offset})"),
            self.read(&path, u64::from(offset), Some(u64::from(length))),
        )
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.path(tpe, id)
    }
}

impl SftpBackend {
    /// The subdirectories of `dir` (restic's `data/00` … `data/ff`).
    async fn list_subdirs(&self, dir: &str) -> Result<Vec<String>, SftpError> {
        use futures::StreamExt as _;
        let mut fs = self.sftp.fs();
        let d = match fs.open_dir(dir).await {
            Ok(d) => d,
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut entries = std::pin::pin!(d.read_dir());
        let mut out = Vec::new();
        while let Some(e) = entries.next().await {
            let e = e?;
            let name = e.filename().to_string_lossy().into_owned();
            if e.metadata().file_type().is_some_and(|t| t.is_dir())
                && name.len() == 2
                && name.bytes().all(|c| c.is_ascii_hexdigit())
            {
                out.push(name);
            }
        }
        Ok(out)
    }
}

impl WriteBackend for SftpBackend {
    fn create(&self) -> RusticResult<()> {
        self.run("making the repository's directories", async {
            self.mkdir_all(&self.loc.path).await?;
            for d in ["keys", "snapshots", "index", "locks", "data"] {
                self.mkdir_all(&self.under(d)).await?;
            }
            for i in 0..=255u8 {
                self.mkdir_all(&self.under(&format!("data/{i:02x}")))
                    .await?;
            }
            Ok(())
        })
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let path = self.path(tpe, id);
        self.run(&format!("writing {path}"), self.write(&path, &content))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = self.path(tpe, id);
        self.run(&format!("removing {path}"), async {
            match self.sftp.fs().remove_file(&path).await {
                Err(e) if not_found(&e) => Ok(()),
                r => r,
            }
        })
    }
}
