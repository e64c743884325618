//! `cloudlet doctor`'s NAS checks that no API shows: each export asked over NFS, as a node
//! mounting it would ask ([`crate::nfs`]), from a node's address when one is on the machine
//! cloudlet runs on (it runs on a node, or `watch` runs in the cluster on the host's
//! network), else from this machine's own address when the export allows it; and the free
//! space of the file system under each export, as the server reports it to that client;
//! and each snapshot policy's newest snapshot, and each replication task's last run, against
//! its period.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use cloudlet_core::doctor::{Finding, Status, Thresholds, lateness, span};
use cloudlet_core::types::Cidr;
use cloudlet_core::{Domain, Lab};

use crate::nfs::{self, ACCESS_DELETE, ACCESS_EXTEND, ACCESS_LOOKUP, ACCESS_MODIFY, ACCESS_READ};

const D: Option<Domain> = Some(Domain::Storage);

/// Where one export is asked from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A node's address, on this machine.
    Node(String, Ipv4Addr),
    /// This machine's own address towards the NAS.
    Here(Ipv4Addr),
}

/// The cluster's nodes with their addresses.
fn nodes(lab: &Lab) -> Vec<(String, Ipv4Addr)> {
    lab.cluster
        .iter()
        .flat_map(|c| c.control_plane.iter().chain(&c.workers))
        .filter_map(|n| Some((n.clone(), lab.machine_ip(n)?)))
        .collect()
}

/// Whether `ip` is an address of this machine (a socket binds to it).
fn local(ip: Ipv4Addr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// The address this machine would use towards `nas` (no packet is sent).
fn here(nas: Ipv4Addr) -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((nas, 2049)).ok()?;
    match s.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// Where to ask an export allowing `clients` from: the first node on this machine it
/// allows, else this machine when it allows it.
pub fn source(
    nodes: &[(String, Ipv4Addr)],
    clients: &[Cidr],
    here: Option<Ipv4Addr>,
    local: impl Fn(Ipv4Addr) -> bool,
) -> Option<Source> {
    let allowed = |ip: Ipv4Addr| clients.iter().any(|c| c.contains(ip));
    nodes
        .iter()
        .find(|(_, ip)| allowed(*ip) && local(*ip))
        .map(|(n, ip)| Source::Node(n.clone(), *ip))
        .or_else(|| here.filter(|ip| allowed(*ip)).map(Source::Here))
}

fn rights(bits: u32) -> String {
    let names = [
        (ACCESS_READ, "read"),
        (ACCESS_LOOKUP, "lookup"),
        (ACCESS_MODIFY, "modify"),
        (ACCESS_EXTEND, "extend"),
        (ACCESS_DELETE, "delete"),
    ];
    let granted: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if granted.is_empty() {
        "no rights".into()
    } else {
        granted.join(", ")
    }
}

/// The space finding of the file system under an export.
pub fn space(export: &str, s: nfs::Space, t: &Thresholds) -> Finding {
    let (status, evidence) = cloudlet_core::doctor::free_space(s.avail, s.total, t);
    let subject = format!("export {export}");
    match status {
        Status::Fail => Finding::new("storage.space", D, subject, status, evidence).fix(
            "free space on the NAS now (old snapshots, a larger pool): writes are about to fail and databases on it to stop",
        ),
        Status::Warn => Finding::new("storage.space", D, subject, status, evidence)
            .fix("free space on the NAS or grow its pool before writes fail"),
        Status::Ok => Finding::ok("storage.space", D, subject, evidence),
    }
}

/// The findings of one export's answer.
fn mount_findings(
    export: &str,
    path: &str,
    read_only: bool,
    from: &str,
    asked: Option<SocketAddr>,
    result: Result<nfs::Mounted, nfs::NfsError>,
    t: &Thresholds,
) -> Vec<Finding> {
    let subject = format!("export {export}");
    let port = asked.map_or_else(String::new, |a| format!(" port {}", a.port()));
    match result {
        Ok(m) if m.kind != "directory" => vec![
            Finding::new(
                "storage.mount",
                D,
                subject,
                Status::Fail,
                format!("{path} is a {}, not a directory", m.kind),
            )
            .fix("the export's path must be a directory on the NAS: check `storage.exports` and the NAS"),
        ],
        Ok(m) if m.access & (ACCESS_READ | ACCESS_LOOKUP) != ACCESS_READ | ACCESS_LOOKUP => vec![
            Finding::new(
                "storage.mount",
                D,
                subject,
                Status::Fail,
                format!(
                    "{path} mounts over NFSv4 from {from}{port}, but root there may only {}",
                    rights(m.access)
                ),
            )
            .fix("the export's directory must be readable and searchable by the nodes' root (its mode, or `squash: none`)"),
        ],
        Ok(m) => {
            let mut out = vec![Finding::ok(
                "storage.mount",
                D,
                subject,
                format!(
                    "{path} mounts over NFSv4 from {from}{port}: a directory; root may {}{}",
                    rights(m.access),
                    if read_only { " (read-only export)" } else { "" }
                ),
            )];
            if let Some(s) = m.space {
                out.push(space(export, s, t));
            }
            out
        }
        Err(e) => {
            let fix = match (&e, e.status()) {
                (nfs::NfsError::Connect { .. } | nfs::NfsError::Timeout(..), _) => {
                    "start the NAS's NFS service and let the nodes reach port 2049 (the router's rules)".to_string()
                }
                (nfs::NfsError::Version { .. }, _) => {
                    "turn on NFSv4 on the NAS (TrueNAS: Services → NFS → Enabled Protocols)".to_string()
                }
                (_, Some(s)) if s.starts_with("NFS4ERR_ACCESS") || s.starts_with("NFS4ERR_PERM") || s.starts_with("NFS4ERR_NOENT") => format!(
                    "the NAS does not export {path} to {from}: `cloudlet apply` puts the export and its clients back (`cloudlet plan` shows the drift)"
                ),
                (_, Some(s)) if s.starts_with("NFS4ERR_WRONGSEC") => {
                    "the export wants Kerberos; cloudlet's nodes mount with sys: set the export's security to sys".to_string()
                }
                _ => "look at the NAS's NFS service log".to_string(),
            };
            vec![
                Finding::new(
                    "storage.mount",
                    D,
                    subject,
                    Status::Fail,
                    format!("{path} does not mount over NFSv4 from {from}{port}: {e}"),
                )
                .fix(fix),
            ]
        }
    }
}

/// Every export of the lab's NAS asked over NFS within `limit` each (all at once), from a
/// node's address or this machine's as [`source`] picks. Nothing when the lab has no NAS
/// address.
pub async fn exports(lab: &Lab, limit: Duration, t: &Thresholds) -> Vec<Finding> {
    let Some(st) = &lab.storage else {
        return Vec::new();
    };
    let Some(nas) = st
        .address
        .or_else(|| st.machine.as_deref().and_then(|m| lab.machine_ip(m)))
    else {
        return Vec::new();
    };
    let nodes = nodes(lab);
    let here = here(nas);
    let asks = st.exports.iter().map(|(name, e)| {
        let clients: Vec<Cidr> = crate::clients(lab, &e.allow)
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect();
        let from = source(&nodes, &clients, here, local);
        let want = if e.read_only {
            ACCESS_READ | ACCESS_LOOKUP
        } else {
            ACCESS_READ | ACCESS_LOOKUP | ACCESS_MODIFY | ACCESS_EXTEND | ACCESS_DELETE
        };
        async move {
            let Some(from) = from else {
                let me = here.map_or_else(|| "this machine".to_string(), |ip| format!("this machine ({ip})"));
                return vec![
                    Finding::new(
                        "storage.mount",
                        D,
                        format!("export {name}"),
                        Status::Warn,
                        format!(
                            "not checked: no node the export allows has its address here, and {me} is not a client it allows ({})",
                            if clients.is_empty() { "none".to_string() } else { clients.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ") }
                        ),
                    )
                    .fix("run `cloudlet doctor` on a node, or `cloudlet watch` in the cluster on the host's network, to check mounts as the nodes make them"),
                ];
            };
            let (ip, said) = match &from {
                Source::Node(n, ip) => (*ip, format!("{ip} ({n})")),
                Source::Here(ip) => (*ip, format!("{ip} (this machine)")),
            };
            let (asked, result) = nfs::probe(
                SocketAddr::from((nas, 2049)),
                Some(IpAddr::V4(ip)),
                &e.path,
                want,
                limit,
            )
            .await;
            mount_findings(name, &e.path, e.read_only, &said, asked, result, t)
        }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Each snapshot policy's newest snapshot against its period (sanoid's rule,
/// [`lateness`]): `status` is what the NAS reported for the lab's datasets, `now` Unix
/// seconds. A policy whose dataset the NAS does not list, or that has no snapshot yet, is a
/// warning (a task just made has not run).
pub fn snapshots(lab: &Lab, status: &[crate::VolumeStatus], now: i64) -> Vec<Finding> {
    crate::expand(lab)
        .iter()
        .filter(|r| &*r.id.kind == crate::SNAPSHOT_TASK)
        .filter_map(|r| {
            let v = r.body.value();
            Some((r.id.name.to_string(), v["path"].as_str()?.to_string(), v["every_s"].as_u64()?))
        })
        .map(|(name, path, every)| {
            let subject = format!("snapshots {name}");
            let schedule = span(every);
            let Some(ds) = status.iter().find(|s| s.path == path) else {
                return Finding::new(
                    "storage.snapshot",
                    D,
                    subject,
                    Status::Warn,
                    format!("the NAS lists no dataset at {path} (schedule: every {schedule})"),
                )
                .fix("`cloudlet apply` makes the dataset and its snapshot task");
            };
            let (Some(snap), Some(at)) = (&ds.latest_snapshot, ds.latest_snapshot_at) else {
                return Finding::new(
                    "storage.snapshot",
                    D,
                    subject,
                    Status::Warn,
                    format!("no snapshot of {path} yet (schedule: every {schedule})"),
                )
                .fix("is the periodic snapshot task enabled on the NAS (TrueNAS: Data Protection → Periodic Snapshot Tasks)?");
            };
            let age = u64::try_from(now.saturating_sub(at)).unwrap_or(0);
            let status = lateness(age, every);
            let f = Finding::new(
                "storage.snapshot",
                D,
                subject,
                status,
                format!("newest snapshot {snap} is {} old (schedule: every {schedule})", span(age)),
            );
            if status == Status::Ok {
                f
            } else {
                f.fix("the NAS's periodic snapshot task has stopped: look at its state (TrueNAS: Data Protection → Periodic Snapshot Tasks) and the pool's health")
            }
        })
        .collect()
}

/// Each replication task against its snapshot policy: its last run must have finished, no
/// longer ago than the policy's period allows ([`lateness`]); a failed run is a failure with
/// the NAS's error, a task the NAS does not have or that never ran is a warning.
pub fn replications(lab: &Lab, status: &[crate::ReplicationStatus], now: i64) -> Vec<Finding> {
    let all = crate::expand(lab);
    all.iter()
        .filter(|r| &*r.id.kind == crate::REPLICATION)
        .map(|r| {
            let name = r.id.name.to_string();
            let v = r.body.value();
            let to = v["to"].as_str().unwrap_or_default();
            let every = all
                .iter()
                .find(|t| &*t.id.kind == crate::SNAPSHOT_TASK && t.id.name == r.id.name)
                .and_then(|t| t.body.value()["every_s"].as_u64())
                .unwrap_or(86_400);
            let subject = format!("replication {name}");
            let Some(s) = status.iter().find(|s| s.name == name) else {
                return Finding::new(
                    "storage.replication",
                    D,
                    subject,
                    Status::Warn,
                    format!("the NAS has no replication task to {to}"),
                )
                .fix("`cloudlet apply` makes it (an SSH connection it names must exist on the NAS)");
            };
            match (s.state.as_str(), s.at) {
                ("ERROR", _) => Finding::new(
                    "storage.replication",
                    D,
                    subject,
                    Status::Fail,
                    format!(
                        "the last run to {to} failed: {}",
                        s.error.as_deref().unwrap_or("the NAS gives no reason")
                    ),
                )
                .fix("the copies are not being made: look at the task (TrueNAS: Data Protection → Replication Tasks), the target pool and the SSH connection"),
                ("FINISHED", Some(at)) => {
                    let age = u64::try_from(now.saturating_sub(at)).unwrap_or(0);
                    let status = lateness(age, every);
                    let f = Finding::new(
                        "storage.replication",
                        D,
                        subject,
                        status,
                        format!(
                            "last copied {} to {to} {} ago (snapshots every {})",
                            s.last_snapshot.as_deref().unwrap_or("nothing new"),
                            span(age),
                            span(every)
                        ),
                    );
                    if status == Status::Ok {
                        f
                    } else {
                        f.fix("the task has not run since: is it enabled, and is its snapshot task taking snapshots?")
                    }
                }
                (state, _) => Finding::new(
                    "storage.replication",
                    D,
                    subject,
                    Status::Warn,
                    format!("no finished run to {to} yet (state {state})"),
                )
                .fix("it runs after the next snapshot; a task that stays here is waiting on its snapshot task"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_node_the_export_allows_goes_first_then_this_machine() {
        let nodes = vec![
            ("n1".to_string(), Ipv4Addr::new(10, 0, 20, 11)),
            ("n2".to_string(), Ipv4Addr::new(10, 0, 20, 12)),
        ];
        let k8s: Vec<Cidr> = vec!["10.0.20.0/24".parse().unwrap()];
        let me = Some(Ipv4Addr::new(10, 0, 10, 50));
        assert_eq!(
            source(&nodes, &k8s, me, |ip| ip == Ipv4Addr::new(10, 0, 20, 12)),
            Some(Source::Node("n2".into(), Ipv4Addr::new(10, 0, 20, 12)))
        );
        assert_eq!(source(&nodes, &k8s, me, |_| false), None);
        let both: Vec<Cidr> = vec!["10.0.0.0/16".parse().unwrap()];
        assert_eq!(
            source(&nodes, &both, me, |_| false),
            Some(Source::Here(Ipv4Addr::new(10, 0, 10, 50)))
        );
        let only_n1: Vec<Cidr> = vec!["10.0.20.11/32".parse().unwrap()];
        assert_eq!(
            source(&nodes, &only_n1, me, |_| true).unwrap(),
            Source::Node("n1".into(), Ipv4Addr::new(10, 0, 20, 11))
        );
    }

    #[test]
    fn free_space_is_ok_then_a_warning_then_a_failure() {
        let t = Thresholds::default();
        let s = |avail| nfs::Space {
            avail,
            free: avail,
            total: 100 << 30,
        };
        let f = space("mail", s(40 << 30), &t);
        assert_eq!(f.status, Status::Ok);
        assert_eq!(f.evidence, "40.0 GiB of 100.0 GiB free (40.0%)");
        assert_eq!(space("mail", s(10 << 30), &t).status, Status::Warn);
        assert_eq!(space("mail", s(1 << 30), &t).status, Status::Fail);
    }
}
