//! Clients that misbehave on purpose, for the boot service's bound tests and the attack
//! benchmark: connections from chosen loopback addresses, half-sent request heads, raw TFTP
//! read requests with any mode and options, and a process's resident memory.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// A TCP connection to `to` from the loopback address `from` (127.0.0.0/8 holds many), made
/// within ten seconds (a full accept backlog retries SYNs), without Nagle's delay.
pub fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(from.into(), 0).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(10))?;
    let s: TcpStream = s.into();
    s.set_nodelay(true)?;
    Ok(s)
}

/// One connection from each address of `from` that sends half a request head for `path` and
/// stops: what a slowloris attack holds open.
pub fn slow_headers(
    http: SocketAddr,
    path: &str,
    from: impl Iterator<Item = Ipv4Addr>,
) -> Vec<TcpStream> {
    from.filter_map(|a| {
        let mut c = connect_from(a, http).ok()?;
        c.write_all(format!("GET {path} HTTP/1.1\r\nHo").as_bytes())
            .ok()?;
        Some(c)
    })
    .collect()
}

/// `len` bytes of text in 60-character lines: a netascii transfer converts every line end,
/// so a server that converts it all in memory first shows up in its resident memory.
pub fn netascii_text(len: u32) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if i % 61 == 60 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect()
}

/// A TFTP read request (RFC 1350) for `name` in `mode`, with options (RFC 2347).
pub fn rrq(name: &str, mode: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0u8, 1];
    for part in [name, mode]
        .into_iter()
        .chain(opts.iter().flat_map(|(k, v)| [*k, *v]))
    {
        p.extend_from_slice(part.as_bytes());
        p.push(0);
    }
    p
}

/// The resident memory of process `pid` (`None`: this process) in KiB; 0 when unreadable.
pub fn rss_kib(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".into(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `count` damaged copies of `good` (a few bytes overwritten each, seeded, so every run reads
/// the same copies), then every truncation of it: what a reader of network input meets on
/// stable Rust, beside its fuzz target.
pub fn damaged(good: &[u8], count: usize) -> Vec<Vec<u8>> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut out: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            let mut bytes = good.to_vec();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = usize::try_from(seed % good.len().max(1) as u64).unwrap_or(0);
                if let Some(b) = bytes.get_mut(i) {
                    *b = (seed >> 32) as u8;
                }
            }
            bytes
        })
        .collect();
    out.extend((0..good.len()).map(|n| good[..n].to_vec()));
    out
}
