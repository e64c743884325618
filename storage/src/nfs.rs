//! A small NFSv4.0 client for one question: can this address mount that export? It speaks
//! ONC RPC over TCP (record marking, `AUTH_SYS` as root, as the kubelet mounts) and sends one
//! COMPOUND: `PUTROOTFH`, a `LOOKUP` per component of the export's path (the pseudo file
//! system's path, which is the export's path on nfs-ganesha and the Linux server), `GETATTR`
//! of the type and the space attributes, and `ACCESS`. What the server answers is what a
//! mount would meet: a refused client, a wrong path, a security flavour it wants, or the
//! directory with its rights and free space. Every reply is bounded in size and time and
//! parsed without trusting a length it carries.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// The largest reply read (one COMPOUND of a few operations is well under 1 KiB).
pub const MAX_REPLY: usize = 64 * 1024;
/// The most components a path may have.
pub const MAX_COMPONENTS: usize = 64;

const NFS_PROGRAM: u32 = 100_003;
const NFS_V4: u32 = 4;
const PROC_COMPOUND: u32 = 1;
const AUTH_NONE: u32 = 0;
const AUTH_SYS: u32 = 1;

const OP_ACCESS: u32 = 3;
const OP_GETATTR: u32 = 9;
const OP_LOOKUP: u32 = 15;
const OP_PUTROOTFH: u32 = 24;

/// `ACCESS4_*` bits.
pub const ACCESS_READ: u32 = 0x01;
/// May look up names in the directory.
pub const ACCESS_LOOKUP: u32 = 0x02;
/// May change what exists.
pub const ACCESS_MODIFY: u32 = 0x04;
/// May add.
pub const ACCESS_EXTEND: u32 = 0x08;
/// May delete.
pub const ACCESS_DELETE: u32 = 0x10;

const FATTR_TYPE: u32 = 1;
const FATTR_SPACE_AVAIL: u32 = 42;
const FATTR_SPACE_FREE: u32 = 43;
const FATTR_SPACE_TOTAL: u32 = 44;

/// The space of the file system an export lives on, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Free for the user asking (what a write can use).
    pub avail: u64,
    /// Free in all.
    pub free: u64,
    /// The file system's size.
    pub total: u64,
}

/// What the server said about the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    /// The export's type (`directory` when all is well).
    pub kind: &'static str,
    /// The rights the server checked (`ACCESS4_*` bits).
    pub supported: u32,
    /// The rights granted of those.
    pub access: u32,
    /// The space attributes, when the server gave all three.
    pub space: Option<Space>,
}

/// Why the export could not be mounted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NfsError {
    /// No TCP connection.
    #[error("no connection to {server}: {reason}")]
    Connect {
        /// The NAS.
        server: SocketAddr,
        /// What the network said.
        reason: String,
    },
    /// Sending or reading failed mid-way.
    #[error("the connection to {server} broke: {reason}")]
    Io {
        /// The NAS.
        server: SocketAddr,
        /// What the network said.
        reason: String,
    },
    /// No reply within the time allowed.
    #[error("no answer from {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    /// The server does not serve NFSv4.
    #[error("the server does not serve NFSv4 (it serves versions {low} to {high})")]
    Version {
        /// Its lowest version.
        low: u32,
        /// Its highest.
        high: u32,
    },
    /// The server refused the RPC itself.
    #[error("the server refused the call: {0}")]
    Rpc(String),
    /// An operation of the COMPOUND failed.
    #[error("{op} {at}: {status}")]
    Nfs {
        /// Which operation.
        op: &'static str,
        /// The path reached when it failed.
        at: String,
        /// The server's status, by name.
        status: String,
    },
    /// The reply is not an answer to the call.
    #[error("the reply is malformed: {0}")]
    Malformed(&'static str),
    /// The path cannot be asked for.
    #[error("the path {0:?} is not an absolute path of at most {MAX_COMPONENTS} components")]
    Path(String),
}

impl NfsError {
    /// The NFSv4 status name, when an operation failed.
    pub fn status(&self) -> Option<&str> {
        match self {
            NfsError::Nfs { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// The components of an absolute path (`/mnt/main/mail` → `mnt`, `main`, `mail`).
fn components(path: &str) -> Result<Vec<&str>, NfsError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if !path.starts_with('/')
        || parts.len() > MAX_COMPONENTS
        || parts
            .iter()
            .any(|p| *p == "." || *p == ".." || p.len() > 255)
    {
        return Err(NfsError::Path(path.to_string()));
    }
    Ok(parts)
}

struct Xdr(Vec<u8>);

impl Xdr {
    fn u32(&mut self, v: u32) -> &mut Xdr {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn opaque(&mut self, b: &[u8]) -> &mut Xdr {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(b);
        self.0.resize(self.0.len() + (4 - b.len() % 4) % 4, 0);
        self
    }
}

/// The record-marked call with id `xid` asking about `path`: `PUTROOTFH`, `LOOKUP`s,
/// `GETATTR` (type, space) and `ACCESS` (`want`).
pub fn call(xid: u32, path: &str, want: u32) -> Result<Vec<u8>, NfsError> {
    let parts = components(path)?;
    let mut cred = Xdr(Vec::new());
    cred.u32(0).opaque(b"cloudlet").u32(0).u32(0).u32(0);
    let mut x = Xdr(vec![0; 4]);
    x.u32(xid)
        .u32(0)
        .u32(2)
        .u32(NFS_PROGRAM)
        .u32(NFS_V4)
        .u32(PROC_COMPOUND);
    x.u32(AUTH_SYS).opaque(&cred.0).u32(AUTH_NONE).u32(0);
    // COMPOUND4args: no tag, minor version 0, the operations.
    x.opaque(b"").u32(0);
    x.u32(u32::try_from(parts.len() + 3).unwrap_or(u32::MAX));
    x.u32(OP_PUTROOTFH);
    for p in &parts {
        x.u32(OP_LOOKUP).opaque(p.as_bytes());
    }
    x.u32(OP_GETATTR).u32(2).u32(1 << FATTR_TYPE).u32(
        (1 << (FATTR_SPACE_AVAIL - 32))
            | (1 << (FATTR_SPACE_FREE - 32))
            | (1 << (FATTR_SPACE_TOTAL - 32)),
    );
    x.u32(OP_ACCESS).u32(want);
    let len = u32::try_from(x.0.len() - 4).unwrap_or(u32::MAX);
    x.0[..4].copy_from_slice(&(0x8000_0000 | len).to_be_bytes());
    Ok(x.0)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, NfsError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<4>()
            .ok_or(NfsError::Malformed("it ends early"))?;
        self.0 = rest;
        Ok(u32::from_be_bytes(*head))
    }
    fn u64(&mut self) -> Result<u64, NfsError> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }
    fn opaque(&mut self, max: usize) -> Result<&[u8], NfsError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(NfsError::Malformed("a field is longer than allowed"));
        }
        let padded = len + (4 - len % 4) % 4;
        if self.0.len() < padded {
            return Err(NfsError::Malformed("it ends early"));
        }
        let (body, rest) = self.0.split_at(padded);
        self.0 = rest;
        Ok(&body[..len])
    }
}

/// An NFSv4 status by its name in RFC 7530.
fn status_name(s: u32) -> String {
    match s {
        1 => "NFS4ERR_PERM (not allowed)".into(),
        2 => "NFS4ERR_NOENT (no such path; a server also hides the exports a client may not mount)"
            .into(),
        5 => "NFS4ERR_IO".into(),
        13 => "NFS4ERR_ACCESS (permission denied)".into(),
        20 => "NFS4ERR_NOTDIR (not a directory)".into(),
        70 => "NFS4ERR_STALE".into(),
        10001 => "NFS4ERR_BADHANDLE".into(),
        10006 => "NFS4ERR_SERVERFAULT".into(),
        10008 => "NFS4ERR_DELAY (the server asks to try later)".into(),
        10013 => "NFS4ERR_GRACE (the server is in its grace period)".into(),
        10016 => "NFS4ERR_WRONGSEC (the export wants another security flavour than sys)".into(),
        10021 => "NFS4ERR_MINOR_VERS_MISMATCH (the server does not serve NFSv4.0)".into(),
        n => format!("NFSv4 status {n}"),
    }
}

fn op_name(op: u32) -> &'static str {
    match op {
        OP_PUTROOTFH => "PUTROOTFH",
        OP_LOOKUP => "LOOKUP",
        OP_GETATTR => "GETATTR",
        _ => "ACCESS",
    }
}

fn file_type(t: u32) -> &'static str {
    match t {
        1 => "regular file",
        2 => "directory",
        3 => "block device",
        4 => "character device",
        5 => "symbolic link",
        6 => "socket",
        7 => "fifo",
        _ => "unknown type",
    }
}

/// The reply (one record, its marks removed) to the call `xid` about `path`.
pub fn reply(bytes: &[u8], xid: u32, path: &str) -> Result<Mounted, NfsError> {
    if bytes.len() > MAX_REPLY {
        return Err(NfsError::Malformed(
            "it is larger than any answer to the call",
        ));
    }
    let parts = components(path)?;
    let mut r = Reader(bytes);
    if r.u32()? != xid {
        return Err(NfsError::Malformed("it answers another call"));
    }
    if r.u32()? != 1 {
        return Err(NfsError::Malformed("it is not a reply"));
    }
    match r.u32()? {
        0 => {}
        1 => {
            return Err(match r.u32()? {
                0 => NfsError::Rpc(format!(
                    "RPC version mismatch (it speaks {} to {})",
                    r.u32()?,
                    r.u32()?
                )),
                1 => NfsError::Rpc(
                    match r.u32()? {
                        1 | 2 => "the credentials were refused (AUTH_BADCRED/REJECTEDCRED)",
                        5 => {
                            "the credentials are too weak (AUTH_TOOWEAK: the export wants Kerberos, or a privileged source port)"
                        }
                        _ => "an authentication error",
                    }
                    .into(),
                ),
                _ => return Err(NfsError::Malformed("an unknown rejection")),
            });
        }
        _ => return Err(NfsError::Malformed("an unknown reply state")),
    }
    let _flavor = r.u32()?;
    r.opaque(400)?;
    match r.u32()? {
        0 => {}
        1 => {
            return Err(NfsError::Rpc(
                "the NFS program is not served (PROG_UNAVAIL)".into(),
            ));
        }
        2 => {
            return Err(NfsError::Version {
                low: r.u32()?,
                high: r.u32()?,
            });
        }
        3 => {
            return Err(NfsError::Rpc(
                "COMPOUND is not served (PROC_UNAVAIL)".into(),
            ));
        }
        4 => {
            return Err(NfsError::Rpc(
                "the server could not read the call (GARBAGE_ARGS)".into(),
            ));
        }
        _ => return Err(NfsError::Rpc("the server failed (SYSTEM_ERR)".into())),
    }
    let _status = r.u32()?;
    r.opaque(1024)?;
    let count = r.u32()? as usize;
    let expected: Vec<u32> = std::iter::once(OP_PUTROOTFH)
        .chain(parts.iter().map(|_| OP_LOOKUP))
        .chain([OP_GETATTR, OP_ACCESS])
        .collect();
    if count == 0 || count > expected.len() {
        return Err(NfsError::Malformed(
            "the number of results does not match the call",
        ));
    }
    let mut at = String::from("/");
    let mut out = Mounted {
        kind: "unknown type",
        supported: 0,
        access: 0,
        space: None,
    };
    for (i, want) in expected.iter().enumerate().take(count) {
        let op = r.u32()?;
        if op != *want {
            return Err(NfsError::Malformed(
                "a result of another operation than asked",
            ));
        }
        let status = r.u32()?;
        if status != 0 {
            return Err(NfsError::Nfs {
                op: op_name(op),
                at: if op == OP_LOOKUP {
                    format!("{}{}", at, parts[i - 1])
                } else {
                    at
                },
                status: status_name(status),
            });
        }
        match op {
            OP_LOOKUP => {
                at.push_str(parts[i - 1]);
                at.push('/');
            }
            OP_GETATTR => {
                let words = r.u32()? as usize;
                if words > 8 {
                    return Err(NfsError::Malformed("an attribute mask longer than allowed"));
                }
                let mut mask = [0u32; 8];
                for w in mask.iter_mut().take(words) {
                    *w = r.u32()?;
                }
                let mut vals = Reader(r.opaque(1024)?);
                let (mut avail, mut free, mut total) = (None, None, None);
                for bit in 0..(words * 32) {
                    if mask[bit / 32] & (1 << (bit % 32)) == 0 {
                        continue;
                    }
                    match u32::try_from(bit).unwrap_or(u32::MAX) {
                        FATTR_TYPE => out.kind = file_type(vals.u32()?),
                        FATTR_SPACE_AVAIL => avail = Some(vals.u64()?),
                        FATTR_SPACE_FREE => free = Some(vals.u64()?),
                        FATTR_SPACE_TOTAL => total = Some(vals.u64()?),
                        _ => {
                            return Err(NfsError::Malformed("an attribute that was not asked for"));
                        }
                    }
                }
                if let (Some(avail), Some(free), Some(total)) = (avail, free, total) {
                    out.space = Some(Space { avail, free, total });
                }
            }
            OP_ACCESS => {
                out.supported = r.u32()?;
                out.access = r.u32()?;
            }
            _ => {}
        }
    }
    if count < expected.len() {
        return Err(NfsError::Malformed("results are missing and none failed"));
    }
    Ok(out)
}

/// Binds a socket to `from` (any address when `None`), on a privileged port when this
/// process may (servers that want `secure` clients refuse others), else on any port.
fn bind(from: Option<IpAddr>, server: SocketAddr) -> std::io::Result<TcpSocket> {
    let ip = from.unwrap_or(if server.is_ipv4() {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    });
    let new = || {
        if ip.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
    };
    for port in (600..1024).rev() {
        let s = new()?;
        match s.bind(SocketAddr::new(ip, port)) {
            Ok(()) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => break,
            Err(e) => return Err(e),
        }
    }
    let s = new()?;
    s.bind(SocketAddr::new(ip, 0))?;
    Ok(s)
}

/// Asks `server` whether `path` mounts from `from` (this machine's own address when `None`),
/// within `limit`, wanting the rights `want`. Returns the local address it asked from too.
pub async fn probe(
    server: SocketAddr,
    from: Option<IpAddr>,
    path: &str,
    want: u32,
    limit: Duration,
) -> (Option<SocketAddr>, Result<Mounted, NfsError>) {
    let xid = ((std::process::id() & 0xffff) << 16) | 0x4e46;
    let request = match call(xid, path, want) {
        Ok(r) => r,
        Err(e) => return (None, Err(e)),
    };
    let mut local = None;
    let asked = async {
        let connect = |reason: std::io::Error| NfsError::Connect {
            server,
            reason: reason.to_string(),
        };
        let socket = bind(from, server).map_err(connect)?;
        let mut stream: TcpStream = socket.connect(server).await.map_err(connect)?;
        local = stream.local_addr().ok();
        let io = |reason: std::io::Error| NfsError::Io {
            server,
            reason: reason.to_string(),
        };
        stream.write_all(&request).await.map_err(io)?;
        let mut record = Vec::new();
        loop {
            let mut mark = [0u8; 4];
            stream.read_exact(&mut mark).await.map_err(io)?;
            let mark = u32::from_be_bytes(mark);
            let len = (mark & 0x7fff_ffff) as usize;
            if record.len() + len > MAX_REPLY {
                return Err(NfsError::Malformed(
                    "it is larger than any answer to the call",
                ));
            }
            let start = record.len();
            record.resize(start + len, 0);
            stream.read_exact(&mut record[start..]).await.map_err(io)?;
            if mark & 0x8000_0000 != 0 {
                break;
            }
        }
        reply(&record, xid, path)
    };
    let result = tokio::time::timeout(limit, asked)
        .await
        .unwrap_or(Err(NfsError::Timeout(server, limit)));
    (local, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as a server writes it: accepted, the COMPOUND's results.
    fn server_reply(xid: u32, results: &[(u32, u32, &[u32])]) -> Vec<u8> {
        let mut x = Xdr(Vec::new());
        x.u32(xid).u32(1).u32(0).u32(0).u32(0).u32(0);
        x.u32(results.last().map_or(0, |r| r.1)).opaque(b"");
        x.u32(u32::try_from(results.len()).unwrap());
        for (op, status, body) in results {
            x.u32(*op).u32(*status);
            for w in *body {
                x.u32(*w);
            }
        }
        x.0
    }

    #[test]
    fn a_served_directory_gives_its_rights_and_space() {
        let c = call(7, "/srv/mail", ACCESS_READ | ACCESS_LOOKUP).unwrap();
        assert_eq!(
            u32::from_be_bytes(c[..4].try_into().unwrap()) as usize,
            0x8000_0000 | (c.len() - 4)
        );
        // type directory; avail 1 GiB, free 2 GiB, total 4 GiB (as 16 bytes of values + 4).
        let attrs: &[u32] = &[2, 1 << 1, 0x1c00, 28, 2, 0, 1 << 30, 0, 2 << 30, 1, 0];
        let r = server_reply(
            7,
            &[
                (OP_PUTROOTFH, 0, &[]),
                (OP_LOOKUP, 0, &[]),
                (OP_LOOKUP, 0, &[]),
                (OP_GETATTR, 0, attrs),
                (OP_ACCESS, 0, &[3, 3]),
            ],
        );
        let m = reply(&r, 7, "/srv/mail").unwrap();
        assert_eq!(m.kind, "directory");
        assert_eq!((m.supported, m.access), (3, 3));
        assert_eq!(
            m.space,
            Some(Space {
                avail: 1 << 30,
                free: 2 << 30,
                total: 4 << 30
            })
        );
    }

    #[test]
    fn a_refused_lookup_names_the_path_and_the_status() {
        let r = server_reply(
            9,
            &[
                (OP_PUTROOTFH, 0, &[]),
                (OP_LOOKUP, 0, &[]),
                (OP_LOOKUP, 13, &[]),
            ],
        );
        let e = reply(&r, 9, "/srv/mail").unwrap_err();
        assert_eq!(
            e.to_string(),
            "LOOKUP /srv/mail: NFS4ERR_ACCESS (permission denied)"
        );
        assert!(reply(&r, 8, "/srv/mail").is_err(), "another call's id");
    }

    #[test]
    fn a_server_without_nfsv4_says_which_versions_it_has() {
        let mut x = Xdr(Vec::new());
        x.u32(5).u32(1).u32(0).u32(0).u32(0).u32(2).u32(2).u32(3);
        assert_eq!(
            reply(&x.0, 5, "/a").unwrap_err(),
            NfsError::Version { low: 2, high: 3 }
        );
    }

    #[test]
    fn paths_that_cannot_be_asked_for_are_refused() {
        for bad in ["relative", "/a/../b", "/./a"] {
            assert!(call(1, bad, 0).is_err(), "{bad}");
        }
        assert!(call(1, "/", 0).is_ok());
    }

    #[test]
    fn damaged_replies_are_errors_never_panics() {
        let attrs: &[u32] = &[2, 1 << 1, 0x1c00, 28, 2, 0, 1 << 30, 0, 2 << 30, 1, 0];
        let good = server_reply(
            3,
            &[
                (OP_PUTROOTFH, 0, &[]),
                (OP_LOOKUP, 0, &[]),
                (OP_GETATTR, 0, attrs),
                (OP_ACCESS, 0, &[3, 3]),
            ],
        );
        assert!(reply(&good, 3, "/x").is_ok());
        for b in cloudlet_testkit::hostile::damaged(&good, 5_000) {
            let _ = reply(&b, 3, "/x");
        }
    }
}
