//! `doctor`'s capacity check: what the hypervisor reports it has and what every VM on it
//! takes, against what the lab's `hosts` declare. Validation checks the lab's machines
//! against the declared numbers; only the host itself knows whether those numbers are true
//! and what other VMs take besides the lab's.

use cloudlet_core::doctor::{Finding, Status, Thresholds, bytes, free_space};
use cloudlet_core::model::Lab;
use cloudlet_core::types::Size;
use cloudlet_core::{Domain, HostUsage};

const CHECK: &str = "hypervisor.capacity";

/// One dimension (vCPUs, memory, disk) of the comparison.
struct Dimension {
    what: &'static str,
    key: &'static str,
    /// What the lab's hosts declare, and that times their overcommit.
    declared: u64,
    allowed: f64,
    overcommit: f64,
    /// What the hypervisor reports it has (none for a datastore it did not report).
    real: Option<u64>,
    /// The lab's VMs as they are, other VMs, the lab's machines not made yet.
    ours: (u64, usize),
    others: (u64, usize),
    planned: (u64, usize),
    show: fn(u64) -> String,
}

/// Sizes as the lab writes them when whole GiB (`8GiB`), else in words (`73.1 GiB`).
fn size(n: u64) -> String {
    if n.is_multiple_of(1 << 30) {
        Size(n).to_string()
    } else {
        bytes(n)
    }
}

fn count(n: u64) -> String {
    n.to_string()
}

impl Dimension {
    fn need(&self) -> u64 {
        self.ours.0 + self.others.0 + self.planned.0
    }

    fn finding(&self, label: &str, reported: &str) -> Finding {
        let show = self.show;
        let need = self.need();
        let mut parts = vec![format!(
            "{} the lab's in {} VM(s)",
            show(self.ours.0),
            self.ours.1
        )];
        if self.others.1 > 0 {
            parts.push(format!(
                "{} in {} other VM(s)",
                show(self.others.0),
                self.others.1
            ));
        }
        if self.planned.1 > 0 {
            parts.push(format!(
                "{} for {} machine(s) not made yet",
                show(self.planned.0),
                self.planned.1
            ));
        }
        let real = self.real.map_or_else(
            || "not reported".to_string(),
            |r| format!("{} has {}", reported, show(r)),
        );
        let evidence = format!(
            "{} {} taken or wanted ({}); the lab declares {} (overcommit {}); {real}",
            show(need),
            self.what,
            parts.join(", "),
            show(self.declared),
            self.overcommit,
        );
        let subject = format!("{label} {}", self.what);
        let host_limit = self.real.map(|r| r as f64 * self.overcommit);
        if let Some(limit) = host_limit
            && need as f64 > limit
        {
            return Finding::new(CHECK, Some(Domain::Hypervisor), subject, Status::Fail, evidence)
                .fix(format!(
                    "the host cannot hold them: shrink or remove VMs{}, move machines to another host, or raise `overcommit.{}`",
                    if self.others.1 > 0 { " (other VMs count too)" } else { "" },
                    self.key
                ));
        }
        if need as f64 > self.allowed {
            return Finding::new(CHECK, Some(Domain::Hypervisor), subject, Status::Warn, evidence)
                .fix(format!(
                    "with the other VMs the host is past what `hosts.{label}.{}` declares: raise it to what the host gives the lab, or shrink VMs",
                    self.key
                ));
        }
        if let Some(r) = self.real
            && self.declared > r
        {
            return Finding::new(CHECK, Some(Domain::Hypervisor), subject, Status::Warn, evidence)
                .fix(format!(
                    "the lab declares more than the host has, so validation's capacity check trusts a wrong number: set `hosts.{label}.{}` to {} or less",
                    self.key,
                    show(r)
                ));
        }
        Finding::ok(CHECK, Some(Domain::Hypervisor), subject, evidence)
    }
}

/// The capacity findings for where the hypervisor makes the lab's VMs: vCPUs, memory and
/// disk wanted (the lab's VMs as they are, every other VM there, the lab's machines not made
/// yet) against what the host reports (a failure past it, overcommit counted) and what the
/// lab's hosts declare (a warning past it, or when the lab declares more than the host has);
/// the datastore's free space against the thresholds. Empty when the lab declares no hosts.
pub fn capacity(lab: &Lab, usage: &HostUsage, th: &Thresholds) -> Vec<Finding> {
    if lab.hosts.is_empty() {
        return Vec::new();
    }
    let label = lab.hosts.keys().cloned().collect::<Vec<_>>().join("+");
    let sum = |f: &dyn Fn(&cloudlet_core::model::Host) -> (u64, f64)| {
        lab.hosts.values().fold((0u64, 0f64), |(d, a), h| {
            let (n, oc) = f(h);
            (d + n, a + n as f64 * oc)
        })
    };
    let (cpu_declared, cpu_allowed) = sum(&|h| (u64::from(h.cpus), h.overcommit.cpu));
    let (mem_declared, mem_allowed) = sum(&|h| (h.memory.0, h.overcommit.memory));
    let (disk_declared, disk_allowed) = sum(&|h| (h.storage.0, h.overcommit.storage));
    // One overcommit to show and to apply to the host's own numbers: the declared average.
    let ratio = |d: u64, a: f64| if d == 0 { 1.0 } else { a / d as f64 };

    let ours: Vec<_> = usage.vms.iter().filter(|v| v.lab).collect();
    let others: Vec<_> = usage.vms.iter().filter(|v| !v.lab).collect();
    let planned: Vec<_> = lab
        .machines
        .iter()
        .filter(|(name, _)| !ours.iter().any(|v| &v.name == *name))
        .map(|(_, m)| m)
        .collect();
    let tally = |vms: &[&cloudlet_core::VmUsage], f: fn(&cloudlet_core::VmUsage) -> u64| {
        (vms.iter().map(|v| f(v)).sum::<u64>(), vms.len())
    };
    let planned_tally = |f: &dyn Fn(&cloudlet_core::model::Machine) -> u64| {
        (planned.iter().map(|m| f(m)).sum::<u64>(), planned.len())
    };
    let dims = [
        Dimension {
            what: "vCPUs",
            key: "cpus",
            declared: cpu_declared,
            allowed: cpu_allowed,
            overcommit: ratio(cpu_declared, cpu_allowed),
            real: Some(u64::from(usage.cpus)),
            ours: tally(&ours, |v| u64::from(v.cpus)),
            others: tally(&others, |v| u64::from(v.cpus)),
            planned: planned_tally(&|m| u64::from(m.cpus)),
            show: count,
        },
        Dimension {
            what: "memory",
            key: "memory",
            declared: mem_declared,
            allowed: mem_allowed,
            overcommit: ratio(mem_declared, mem_allowed),
            real: Some(usage.memory),
            ours: tally(&ours, |v| v.memory),
            others: tally(&others, |v| v.memory),
            planned: planned_tally(&|m| m.memory.0),
            show: size,
        },
        Dimension {
            what: "disk",
            key: "storage",
            declared: disk_declared,
            allowed: disk_allowed,
            overcommit: ratio(disk_declared, disk_allowed),
            real: usage.datastore.as_ref().map(|d| d.capacity),
            ours: tally(&ours, |v| v.disk),
            others: tally(&others, |v| v.disk),
            planned: planned_tally(&|m| m.disks.iter().map(|d| d.size.0).sum()),
            show: size,
        },
    ];
    let reported = format!("`{}`", usage.name);
    let mut out: Vec<Finding> = dims.iter().map(|d| d.finding(&label, &reported)).collect();
    if let Some(ds) = &usage.datastore {
        let (status, evidence) = free_space(ds.free, ds.capacity, th);
        let subject = format!("datastore {}", ds.name);
        out.push(match status {
            Status::Fail => Finding::new(CHECK, Some(Domain::Hypervisor), subject, status, evidence).fix(
                "thin disks that grow now fail their writes: free space on the datastore or move disks off it",
            ),
            Status::Warn => Finding::new(CHECK, Some(Domain::Hypervisor), subject, status, evidence)
                .fix("free space on the datastore before thin disks fill it"),
            Status::Ok => Finding::ok(CHECK, Some(Domain::Hypervisor), subject, evidence),
        });
    }
    out
}
