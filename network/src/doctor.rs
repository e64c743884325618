//! `cloudlet doctor`'s router check that no API shows: every name the lab gives the router
//! (machines, app hosts) asked of the resolver the lab hands out, over real DNS, and the
//! answer compared with the lab's address. A record changed by hand, a resolver that lost
//! its overrides, or one that does not answer at all shows here before an app breaks.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use cloudlet_core::Domain;
use cloudlet_core::doctor::{Finding, Status};
use futures::StreamExt as _;
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

const D: Option<Domain> = Some(Domain::Router);

/// The largest answer read (a plain DNS answer over UDP is at most 512 bytes; EDNS ones
/// rarely pass 4 KiB).
pub const MAX_ANSWER: usize = 4096;

/// What the resolver said about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Its IPv4 addresses (empty: the name exists without one).
    Addresses(Vec<Ipv4Addr>),
    /// The name does not exist.
    NoSuchName,
    /// Another error code (SERVFAIL, REFUSED).
    Error(String),
}

/// A query for `host`'s A records with id `id`, asking for recursion.
pub fn query(host: &str, id: u16) -> Option<Vec<u8>> {
    let name = Name::from_ascii(host).ok()?;
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, RecordType::A));
    m.to_vec().ok()
}

/// The answer in `bytes` to the query with id `id`; `None` when it is not one (another id,
/// not a response, not DNS).
pub fn answer(bytes: &[u8], id: u16) -> Option<Answer> {
    if bytes.len() > MAX_ANSWER {
        return None;
    }
    let m = Message::from_vec(bytes).ok()?;
    if m.metadata.id != id || m.metadata.message_type != MessageType::Response {
        return None;
    }
    Some(match m.metadata.response_code {
        ResponseCode::NoError => Answer::Addresses(
            m.answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect(),
        ),
        ResponseCode::NXDomain => Answer::NoSuchName,
        other => Answer::Error(other.to_string()),
    })
}

/// Asks `resolver` for `host` over UDP within `limit` (three tries spread over it).
pub async fn resolve(resolver: SocketAddr, host: &str, limit: Duration) -> Result<Answer, String> {
    let bind: SocketAddr = if resolver.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("a UDP socket: {e}"))?;
    socket
        .connect(resolver)
        .await
        .map_err(|e| format!("{resolver}: {e}"))?;
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5eed, |d| (d.subsec_nanos() >> 8) as u16);
    let q = query(host, id).ok_or_else(|| format!("`{host}` is not a DNS name"))?;
    let mut buf = vec![0u8; MAX_ANSWER + 1];
    let tries = 3u32;
    for _ in 0..tries {
        socket
            .send(&q)
            .await
            .map_err(|e| format!("sending to {resolver}: {e}"))?;
        let wait = tokio::time::sleep(limit / tries);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                got = socket.recv(&mut buf) => {
                    let n = got.map_err(|e| format!("{resolver}: {e}"))?;
                    // Anything that is not our answer (a late reply, noise) is read past.
                    if let Some(a) = answer(&buf[..n], id) {
                        return Ok(a);
                    }
                }
            }
        }
    }
    Err(format!(
        "{resolver} did not answer within {}s",
        limit.as_secs()
    ))
}

/// Each `(name, address)` the lab gives the router, asked of `resolver`: one finding per
/// name, at most 16 questions in flight.
pub async fn names_resolve(
    resolver: SocketAddr,
    names: &[(String, Ipv4Addr)],
    limit: Duration,
) -> Vec<Finding> {
    futures::stream::iter(names.iter().cloned())
        .map(|(host, want)| async move {
            let subject = format!("dns {host}");
            match resolve(resolver, &host, limit).await {
                Ok(Answer::Addresses(got)) if got.contains(&want) => Finding::ok(
                    "router.dns",
                    D,
                    subject,
                    format!("resolves to {want} through {resolver}"),
                ),
                Ok(Answer::Addresses(got)) if got.is_empty() => Finding::new(
                    "router.dns",
                    D,
                    subject,
                    Status::Fail,
                    format!("{resolver} knows the name but gives no IPv4 address; the lab says {want}"),
                )
                .fix("`cloudlet apply` sets the router's DNS entry again"),
                Ok(Answer::Addresses(got)) => Finding::new(
                    "router.dns",
                    D,
                    subject,
                    Status::Fail,
                    format!(
                        "resolves to {} through {resolver}; the lab says {want}",
                        got.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    ),
                )
                .fix("the entry was changed on the router by hand: `cloudlet plan` shows it, `cloudlet apply` sets it back"),
                Ok(Answer::NoSuchName) => Finding::new(
                    "router.dns",
                    D,
                    subject,
                    Status::Fail,
                    format!("{resolver} says the name does not exist; the lab says {want}"),
                )
                .fix("`cloudlet apply` makes the router's DNS entry; is the router's resolver the one the lab hands out?"),
                Ok(Answer::Error(code)) => Finding::new(
                    "router.dns",
                    D,
                    subject,
                    Status::Fail,
                    format!("{resolver} answered {code}"),
                )
                .fix("look at the router's resolver (its log, its upstreams)"),
                Err(e) => Finding::new("router.dns", D, subject, Status::Fail, e)
                    .fix("is the router's resolver running and reachable from here on port 53?"),
            }
        })
        .buffered(16)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_reads_back_and_only_its_own_answer_counts() {
        let q = query("web.rt.lan", 0x1234).unwrap();
        // A query is not an answer.
        assert_eq!(answer(&q, 0x1234), None);
        let mut m = Message::from_vec(&q).unwrap();
        m.metadata.message_type = MessageType::Response;
        let name = Name::from_ascii("web.rt.lan").unwrap();
        m.answers.push(hickory_proto::rr::Record::from_rdata(
            name,
            60,
            RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(10, 77, 0, 30))),
        ));
        let bytes = m.to_vec().unwrap();
        assert_eq!(
            answer(&bytes, 0x1234),
            Some(Answer::Addresses(vec![Ipv4Addr::new(10, 77, 0, 30)]))
        );
        assert_eq!(answer(&bytes, 0x1235), None, "another id");
        m.metadata.response_code = ResponseCode::NXDomain;
        m.answers.clear();
        assert_eq!(
            answer(&m.to_vec().unwrap(), 0x1234),
            Some(Answer::NoSuchName)
        );
        assert_eq!(answer(b"", 0x1234), None);
        assert_eq!(answer(&[0xff; 5000], 0x1234), None);
        assert!(query("a..b", 1).is_none());
    }

    /// What the fuzz target checks, on stable: every truncation of a real answer and 5,000
    /// damaged copies read without a panic, and only a response with the query's id counts.
    #[test]
    fn damaged_answers_never_panic() {
        let q = query("web.rt.lan", 0x4242).unwrap();
        let mut m = Message::from_vec(&q).unwrap();
        m.metadata.message_type = MessageType::Response;
        for i in 0..3u8 {
            m.answers.push(hickory_proto::rr::Record::from_rdata(
                Name::from_ascii("web.rt.lan").unwrap(),
                60,
                RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(10, 77, 0, i))),
            ));
        }
        let good = m.to_vec().unwrap();
        for bytes in cloudlet_testkit::hostile::damaged(&good, 5000) {
            if let Some(Answer::Addresses(v)) = answer(&bytes, 0x4242) {
                assert_eq!(u16::from_be_bytes([bytes[0], bytes[1]]), 0x4242);
                assert!(v.len() * 12 <= bytes.len());
            }
        }
    }
}
