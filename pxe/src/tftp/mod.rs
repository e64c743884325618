//! A read-only TFTP server: RFC 1350 with options (RFC 2347), blksize (2348), tsize and
//! timeout (2349) and windowsize (7440); block numbers roll over past 65535; sessions are
//! bounded in number and memory (one block buffer each); files come from a [`Namespace`].
//!
//! The server is a future ([`TftpServer::run`]) that reads requests on the well-known port and
//! runs each transfer as a task of its own on the runtime, with a socket of its own: a
//! transfer's packets are handled on the worker thread that saw them arrive, and transfers
//! spread over every core. It stops when its shutdown future completes, and the transfers in
//! flight with it.

pub mod namespace;
pub mod packet;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinSet;

pub use namespace::{Dynamic, Namespace, Refusal, Source};
use packet::{ErrorCode, Packet};

/// Limits and defaults of the server.
#[derive(Debug, Clone)]
pub struct TftpConfig {
    /// Transfers at once; further requests are refused with "server busy".
    pub max_sessions: usize,
    /// Retransmission timeout when the client does not ask for one.
    pub timeout: Duration,
    /// Retransmissions of one window before the transfer is abandoned.
    pub retries: u32,
    /// Largest block size granted.
    pub max_blksize: u16,
    /// Largest window granted (RFC 7440).
    pub max_window: u16,
    /// Longest retransmission timeout a client may ask for (RFC 2349 allows 255 s); a longer
    /// one is not granted, so a stalled session gives its slot back within seconds.
    pub max_timeout: Duration,
    /// Transfers at once from one client address, so one client cannot take every slot.
    pub max_sessions_per_client: usize,
}

impl Default for TftpConfig {
    fn default() -> Self {
        TftpConfig {
            max_sessions: 256,
            timeout: Duration::from_secs(1),
            retries: 5,
            max_blksize: packet::MAX_BLKSIZE,
            max_window: 64,
            max_timeout: Duration::from_secs(5),
            max_sessions_per_client: 8,
        }
    }
}

/// Counters of a server run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TftpStats {
    /// Transfers that completed.
    pub completed: u64,
    /// Transfers that failed (timeout, client error, refused file).
    pub failed: u64,
    /// Requests refused because the server was busy.
    pub busy: u64,
    /// Payload bytes sent in completed transfers.
    pub bytes: u64,
}

/// What happened to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TftpEvent {
    /// A file was sent completely.
    Served {
        /// The client.
        peer: SocketAddr,
        /// The file.
        name: String,
        /// Bytes sent.
        bytes: u64,
    },
    /// A transfer did not complete (refused, timed out, aborted by the client).
    Failed {
        /// The client.
        peer: SocketAddr,
        /// The file.
        name: String,
        /// Why.
        reason: String,
    },
}

/// A bound TFTP server.
#[derive(Debug)]
pub struct TftpServer {
    socket: UdpSocket,
    namespace: Arc<Namespace>,
    config: TftpConfig,
    events: Option<tokio::sync::mpsc::Sender<TftpEvent>>,
}

/// Why a transfer ended early.
#[derive(Debug)]
enum SessionError {
    Io(std::io::Error),
    Timeout,
    Client(String),
    Refused,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Io(e) => write!(f, "i/o: {e}"),
            SessionError::Timeout => f.write_str("client stopped answering"),
            SessionError::Client(m) => write!(f, "client error: {m}"),
            SessionError::Refused => f.write_str("request refused"),
        }
    }
}

impl From<std::io::Error> for SessionError {
    fn from(e: std::io::Error) -> Self {
        SessionError::Io(e)
    }
}

struct Request {
    peer: SocketAddr,
    local: IpAddr,
    filename: String,
    netascii: bool,
    options: Vec<(String, String)>,
}

impl TftpServer {
    /// Binds the server's well-known socket (use port 69, or 0 for any).
    pub async fn bind(
        addr: SocketAddr,
        namespace: Namespace,
        config: TftpConfig,
    ) -> std::io::Result<Self> {
        Ok(TftpServer {
            socket: UdpSocket::bind(addr).await?,
            namespace: Arc::new(namespace),
            config,
            events: None,
        })
    }

    /// Reports every finished request on `events` (dropped when the channel is full, so a
    /// slow reader never stalls transfers).
    #[must_use]
    pub fn with_events(mut self, events: tokio::sync::mpsc::Sender<TftpEvent>) -> Self {
        self.events = Some(events);
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves until `shutdown` completes; transfers in flight are dropped then.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<TftpStats> {
        let mut stats = TftpStats::default();
        // Each transfer is a task: it runs where its socket's readiness is reported, on any
        // core. Dropping the set (at shutdown) aborts the transfers in flight.
        let mut sessions: JoinSet<(SocketAddr, String, Result<u64, SessionError>)> = JoinSet::new();
        let mut per_client: std::collections::HashMap<IpAddr, usize> =
            std::collections::HashMap::new();
        // Which client each transfer task serves, to give its share back however it ends.
        let mut clients: std::collections::HashMap<tokio::task::Id, IpAddr> =
            std::collections::HashMap::new();
        let lengths = NetasciiLengths::default();
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut buf = vec![0u8; 1024];
        let local_ip = self.socket.local_addr()?.ip();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(joined) = sessions.join_next_with_id(), if !sessions.is_empty() => {
                    let id = match &joined {
                        Ok((id, _)) => *id,
                        Err(e) => e.id(),
                    };
                    if let Some(ip) = clients.remove(&id)
                        && let Some(n) = per_client.get_mut(&ip)
                    {
                        *n -= 1;
                        if *n == 0 {
                            per_client.remove(&ip);
                        }
                    }
                    let (peer, name, result) = match joined {
                        Ok((_, done)) => done,
                        Err(e) => {
                            stats.failed += 1;
                            tracing::error!(error = %e, "tftp transfer task failed");
                            continue;
                        }
                    };
                    let result: Result<u64, SessionError> = result;
                    let event = match result {
                        Ok(bytes) => {
                            stats.completed += 1;
                            stats.bytes += bytes;
                            TftpEvent::Served { peer, name, bytes }
                        }
                        Err(e) => {
                            stats.failed += 1;
                            tracing::debug!(error = %e, "tftp transfer failed");
                            TftpEvent::Failed { peer, name, reason: e.to_string() }
                        }
                    };
                    if let Some(tx) = &self.events {
                        let _ = tx.try_send(event);
                    }
                }
                r = self.socket.recv_from(&mut buf) => {
                    let (n, peer) = match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "tftp receive failed");
                            continue;
                        }
                    };
                    let reply = match packet::parse(&buf[..n]) {
                        Ok(Packet::Rrq { filename, mode, options }) => {
                            if mode != "octet" && mode != "netascii" {
                                Some(packet::error(ErrorCode::IllegalOperation, "mode must be octet or netascii"))
                            } else if sessions.len() >= self.config.max_sessions
                                || per_client.get(&peer.ip()).copied().unwrap_or(0)
                                    >= self.config.max_sessions_per_client
                            {
                                stats.busy += 1;
                                Some(packet::error(ErrorCode::Undefined, "server busy, try again"))
                            } else {
                                *per_client.entry(peer.ip()).or_default() += 1;
                                let req = Request {
                                    peer,
                                    local: local_ip,
                                    filename: filename.to_string(),
                                    netascii: mode == "netascii",
                                    options: options.into_iter().map(|(k, v)| (k, v.to_string())).collect(),
                                };
                                let (ns, cfg) = (self.namespace.clone(), self.config.clone());
                                let lengths = lengths.clone();
                                let active = active.clone();
                                let task = sessions.spawn(async move {
                                    let (p, n) = (req.peer, req.filename.clone());
                                    let r: Result<u64, SessionError> = session(req, ns, cfg, lengths, active).await;
                                    (p, n, r)
                                });
                                clients.insert(task.id(), peer.ip());
                                None
                            }
                        }
                        Ok(Packet::Wrq) => Some(packet::error(ErrorCode::AccessViolation, "read-only server")),
                        Ok(_) => None, // stray ACK/DATA for a finished transfer: ignore
                        Err(e) => Some(packet::error(ErrorCode::IllegalOperation, &e.to_string())),
                    };
                    if let Some(reply) = reply {
                        let _ = self.socket.send_to(&reply, peer).await;
                    }
                }
            }
        }
        Ok(stats)
    }
}

/// What one byte becomes in netascii: LF -> CR LF, CR -> CR NUL.
fn netascii_of(b: u8) -> ([u8; 2], usize) {
    match b {
        b'\n' => (*b"\r\n", 2),
        b'\r' => (*b"\r\0", 2),
        _ => ([b, 0], 1),
    }
}

/// A file read as netascii while it is sent: nothing is converted ahead, so a session holds
/// one read buffer whatever the file's size.
struct Netascii {
    /// The file.
    source: Source,
    /// Length after conversion.
    len: u64,
    /// A raw offset and the converted offset it starts at: where the last read began. The
    /// window only moves forward (or is sent again from the same block), so reads resume
    /// here instead of converting from the start.
    raw: u64,
    conv: u64,
}

/// The raw bytes read at once while converting.
const NETASCII_READ: usize = 16 * 1024;

/// Converted lengths of files already measured, by file identity (device, inode, change time,
/// length): many sessions of one file measure it once.
pub(crate) type NetasciiLengths =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(u64, u64, i64, i64, u64), u64>>>;

/// The identity of an open file, for [`NetasciiLengths`].
fn file_key(source: &Source) -> Option<(u64, u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    match source {
        Source::File(f, len) => {
            let m = f.metadata().ok()?;
            Some((m.dev(), m.ino(), m.ctime(), m.ctime_nsec(), *len))
        }
        Source::Memory(_) => None,
    }
}

impl Netascii {
    /// Measures the converted length in one streaming pass, or takes it from `lengths`.
    fn new(source: Source, lengths: &NetasciiLengths) -> std::io::Result<Self> {
        let key = file_key(&source);
        if let Some(len) = key.and_then(|k| {
            lengths
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&k)
                .copied()
        }) {
            return Ok(Netascii {
                source,
                len,
                raw: 0,
                conv: 0,
            });
        }
        let mut buf = vec![0u8; NETASCII_READ];
        let (mut raw, mut len) = (0u64, 0u64);
        loop {
            let n = source.read_at(&mut buf, raw)?;
            if n == 0 {
                break;
            }
            raw += n as u64;
            len += n as u64
                + buf[..n]
                    .iter()
                    .filter(|&&b| b == b'\n' || b == b'\r')
                    .count() as u64;
        }
        Ok(Netascii {
            source,
            len,
            raw: 0,
            conv: 0,
        })
    }

    /// Fills `out` with the converted bytes from converted offset `offset`.
    fn read_at(&mut self, out: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset < self.conv {
            (self.raw, self.conv) = (0, 0);
        }
        let mut buf = vec![0u8; NETASCII_READ];
        let (mut raw, mut conv) = (self.raw, self.conv);
        let mut filled = 0;
        while filled < out.len() {
            let n = self.source.read_at(&mut buf, raw)?;
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                let (bytes, k) = netascii_of(b);
                if conv + k as u64 <= offset {
                    // Entirely before the offset: the next read may start after it.
                    (self.raw, self.conv) = (raw + 1, conv + k as u64);
                } else {
                    for (i, &e) in bytes[..k].iter().enumerate() {
                        if conv + i as u64 >= offset && filled < out.len() {
                            out[filled] = e;
                            filled += 1;
                        }
                    }
                }
                raw += 1;
                conv += k as u64;
                if filled == out.len() {
                    break;
                }
            }
        }
        Ok(filled)
    }
}

/// What a session sends: the file as it is, or converted to netascii on the way.
enum Payload {
    Octet(Source),
    Netascii(Netascii),
}

impl Payload {
    fn len(&self) -> u64 {
        match self {
            Payload::Octet(s) => s.len(),
            Payload::Netascii(n) => n.len,
        }
    }

    fn read_at(&mut self, out: &mut [u8], offset: u64) -> std::io::Result<usize> {
        match self {
            Payload::Octet(s) => s.read_at(out, offset),
            Payload::Netascii(n) => n.read_at(out, offset),
        }
    }
}

/// The most bytes one segmented send may carry (a UDP datagram's limit).
const GSO_MAX_BYTES: usize = 65_000;

/// Asks the kernel to split sends on `sock` into datagrams of `size` bytes (UDP GSO, Linux
/// 4.18+). False where it is not supported: then every datagram is its own send.
fn gso_segments(sock: &UdpSocket, size: usize) -> bool {
    let Ok(size) = i32::try_from(size) else {
        return false;
    };
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::UdpGsoSegment, &size).is_ok()
}

/// Polls a session's socket for a short while before parking its task: in lockstep a client
/// on this host or a fast link answers within tens of microseconds, sooner than a parked
/// thread wakes up. Only while few transfers run (at most one per two cores), within a
/// budget of its own, and not again after repeated misses (a slow link's ACKs come too late
/// for polling to pay, so it pauses for a while): a burst of transfers never spins.
struct Poll {
    active: Arc<std::sync::atomic::AtomicUsize>,
    spinners: usize,
    misses: u32,
    /// Answers to wait for parked before polling again.
    paused: u32,
}

/// How long one poll may spin.
const POLL_BUDGET: Duration = Duration::from_micros(150);
/// Misses in a row after which a session pauses polling ...
const POLL_MISSES: u32 = 4;
/// ... for this many answers.
const POLL_PAUSE: u32 = 256;

impl Poll {
    /// The answer, if one comes within the budget (`None`: park as usual).
    fn recv(&mut self, sock: &UdpSocket, buf: &mut [u8]) -> Option<std::io::Result<usize>> {
        if self.paused > 0 {
            self.paused -= 1;
            return None;
        }
        if self.active.load(std::sync::atomic::Ordering::Relaxed) > self.spinners {
            return None;
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(sock);
        let start = std::time::Instant::now();
        loop {
            // A direct, non-blocking read: tokio's readiness is only refreshed by its driver.
            match nix::sys::socket::recv(fd, buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT) {
                Ok(n) => {
                    self.misses = 0;
                    return Some(Ok(n));
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {
                    if start.elapsed() > POLL_BUDGET {
                        self.misses += 1;
                        if self.misses >= POLL_MISSES {
                            self.misses = 0;
                            self.paused = POLL_PAUSE;
                        }
                        return None;
                    }
                    std::hint::spin_loop();
                }
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

/// Counts a running transfer for [`Poll`] until dropped.
struct Active(Arc<std::sync::atomic::AtomicUsize>);

impl Active {
    fn new(n: &Arc<std::sync::atomic::AtomicUsize>) -> Active {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Active(n.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn session(
    req: Request,
    ns: Arc<Namespace>,
    cfg: TftpConfig,
    lengths: NetasciiLengths,
    active: Arc<std::sync::atomic::AtomicUsize>,
) -> Result<u64, SessionError> {
    let _counted = Active::new(&active);
    let mut poll = Poll {
        active,
        spinners: std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
        misses: 0,
        paused: 0,
    };
    let sock = UdpSocket::bind(SocketAddr::new(req.local, 0)).await?;
    sock.connect(req.peer).await?;
    let source = match ns.open_for(&req.filename, Some(req.peer.ip())) {
        Ok(s) => s,
        Err(Refusal::NotFound) => {
            sock.send(&packet::error(ErrorCode::NotFound, "file not found"))
                .await?;
            return Err(SessionError::Refused);
        }
        Err(Refusal::Forbidden(why)) => {
            tracing::warn!(peer = %req.peer, name = %req.filename.escape_debug(), why, "tftp request refused");
            sock.send(&packet::error(ErrorCode::AccessViolation, why))
                .await?;
            return Err(SessionError::Refused);
        }
    };
    let mut source = if req.netascii {
        Payload::Netascii(Netascii::new(source, &lengths)?)
    } else {
        Payload::Octet(source)
    };
    let size = source.len();

    // Option negotiation (RFC 2347): grant what is valid, ignore the rest.
    let mut blksize: u16 = 512;
    let mut window: u16 = 1;
    let mut timeout = cfg.timeout;
    let mut granted: Vec<(&str, String)> = Vec::new();
    for (name, value) in &req.options {
        match name.as_str() {
            "blksize" => {
                if let Ok(v) = value.parse::<u32>()
                    && v >= u32::from(packet::MIN_BLKSIZE)
                {
                    blksize = u16::try_from(v.min(u32::from(cfg.max_blksize))).unwrap_or(512);
                    granted.push(("blksize", blksize.to_string()));
                }
            }
            "tsize" if value == "0" => {
                granted.push(("tsize", size.to_string()));
            }
            "timeout" => {
                // Granted as asked or not at all (RFC 2349): a longer one than the server
                // allows is ignored and the default used.
                if let Ok(v @ 1..=255) = value.parse::<u64>()
                    && Duration::from_secs(v) <= cfg.max_timeout
                {
                    timeout = Duration::from_secs(v);
                    granted.push(("timeout", v.to_string()));
                }
            }
            "windowsize" => {
                if let Ok(v) = value.parse::<u32>()
                    && v >= 1
                {
                    window = u16::try_from(v.min(u32::from(cfg.max_window))).unwrap_or(1);
                    granted.push(("windowsize", window.to_string()));
                }
            }
            _ => {}
        }
    }
    let mut rbuf = vec![0u8; 1024];
    if !granted.is_empty() {
        let oack = packet::oack(&granted);
        let mut tries = 0;
        loop {
            sock.send(&oack).await?;
            match tokio::time::timeout(timeout, sock.recv(&mut rbuf)).await {
                Err(_) => {
                    tries += 1;
                    if tries > cfg.retries {
                        return Err(SessionError::Timeout);
                    }
                }
                Ok(n) => match packet::parse(&rbuf[..n?]) {
                    Ok(Packet::Ack { block: 0 }) => break,
                    Ok(Packet::Error { message, .. }) => {
                        return Err(SessionError::Client(message.to_string()));
                    }
                    _ => {}
                },
            }
        }
    }

    // Blocks are numbered from 1; the last one is shorter than blksize (possibly empty).
    let bs = u64::from(blksize);
    let last: u64 = size / bs + 1;
    let mut base: u64 = 1;
    // A window's packets are built back to back in `out`; with UDP segmentation offload the
    // kernel splits one send into the window's datagrams (one syscall per window instead of
    // one per block), else they go one send each.
    let pkt = usize::from(blksize) + 4;
    let gso = window > 1 && gso_segments(&sock, pkt);
    let per_send = if gso {
        (GSO_MAX_BYTES / pkt).clamp(1, 64)
    } else {
        1
    };
    let mut out = Vec::with_capacity(pkt * usize::from(window));
    let mut chunk = vec![0u8; usize::from(blksize) * usize::from(window)];
    let mut tries = 0;
    loop {
        let end = (base + u64::from(window) - 1).min(last);
        // One read for the whole window.
        let offset = (base - 1) * bs;
        let want =
            usize::try_from(((end - base + 1) * bs).min(size.saturating_sub(offset))).unwrap_or(0);
        let got = source.read_at(&mut chunk[..want], offset)?;
        out.clear();
        let mut starts = Vec::with_capacity(usize::from(window) + 1);
        for b in base..=end {
            let from = usize::try_from((b - base) * bs)
                .unwrap_or(usize::MAX)
                .min(got);
            let to = (from + usize::from(blksize)).min(got);
            starts.push(out.len());
            packet::data_append(&mut out, (b & 0xffff) as u16, &chunk[from..to]);
        }
        starts.push(out.len());
        for group in starts.windows(2).collect::<Vec<_>>().chunks(per_send) {
            let (a, z) = (group[0][0], group[group.len() - 1][1]);
            sock.send(&out[a..z]).await?;
        }
        // Wait for the ACK that moves the window.
        loop {
            let polled = poll.recv(&sock, &mut rbuf);
            let n = match polled {
                Some(r) => r?,
                None => match tokio::time::timeout(timeout, sock.recv(&mut rbuf)).await {
                    Err(_) => {
                        tries += 1;
                        if tries > cfg.retries {
                            return Err(SessionError::Timeout);
                        }
                        break; // resend the window from `base`
                    }
                    Ok(r) => r?,
                },
            };
            match packet::parse(&rbuf[..n]) {
                Ok(Packet::Ack { block }) => {
                    // Map the 16-bit block number into [base - 1, end].
                    let span = end - (base - 1);
                    let delta = u64::from(block.wrapping_sub(((base - 1) & 0xffff) as u16));
                    if delta > span {
                        continue; // an old duplicate
                    }
                    let acked = base - 1 + delta;
                    if acked == last {
                        return Ok(size);
                    }
                    if acked >= base {
                        base = acked + 1;
                        tries = 0;
                        break;
                    }
                    // The client saw nothing new: resend from base after the timeout,
                    // unless a later ACK arrives first (RFC 7440 section 4).
                }
                Ok(Packet::Error { message, .. }) => {
                    return Err(SessionError::Client(message.to_string()));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(data: &[u8]) -> Vec<u8> {
        data.iter()
            .flat_map(|&b| {
                let (bytes, k) = netascii_of(b);
                bytes[..k].to_vec()
            })
            .collect()
    }

    #[test]
    fn netascii_conversion_streams_in_any_window() {
        assert_eq!(whole(b"a\nb\rc"), b"a\r\nb\r\0c");
        // Every byte value, with runs of line ends across the read buffer's boundaries.
        let mut raw: Vec<u8> = (0..=255u8).cycle().take(3 * NETASCII_READ + 7).collect();
        raw.extend(std::iter::repeat_n(b'\n', NETASCII_READ + 3));
        let want = whole(&raw);
        for step in [1usize, 511, 512, 1428, 65_464] {
            let mut n = Netascii::new(
                Source::Memory(Arc::from(raw.clone())),
                &NetasciiLengths::default(),
            )
            .unwrap();
            assert_eq!(n.len, want.len() as u64);
            let mut got = Vec::new();
            let mut off = 0u64;
            loop {
                let mut buf = vec![0u8; step];
                let k = n.read_at(&mut buf, off).unwrap();
                // Read the same window again, as a retransmission does.
                let mut again = vec![0u8; step];
                assert_eq!(n.read_at(&mut again, off).unwrap(), k);
                assert_eq!(again[..k], buf[..k]);
                got.extend_from_slice(&buf[..k]);
                off += k as u64;
                if k < step {
                    break;
                }
            }
            assert_eq!(got, want, "step {step}");
        }
    }
}
