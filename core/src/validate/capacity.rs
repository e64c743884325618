//! What the hosts can hold and where the Kubernetes nodes sit.

#![allow(clippy::wildcard_imports)]

use super::*;

impl<'a> Validator<'a> {
    pub(super) fn capacity(&mut self) {
        let lab = self.lab;
        let mut used: BTreeMap<&str, (u64, u64, u64, Vec<&str>)> = BTreeMap::new();
        for (name, m) in &lab.machines {
            if let Some(h) = lab.machine_host(m) {
                let e = used.entry(h).or_default();
                e.0 += u64::from(m.cpus);
                e.1 += m.memory.0;
                e.2 += m.disks.iter().map(|d| d.size.0).sum::<u64>();
                e.3.push(name);
            }
            if m.cpus == 0 {
                self.push(Diagnostic::error(
                    "capacity",
                    path!["machines", name, "cpus"],
                    "a machine needs at least one vCPU",
                ));
            }
        }
        for (h, (cpu, mem, disk, _)) in used {
            let Some(host) = lab.hosts.get(h) else {
                continue;
            };
            let hp = path!["hosts", h];
            let checks = [
                (
                    "vCPUs",
                    cpu as f64,
                    f64::from(host.cpus) * host.overcommit.cpu,
                    "cpu",
                    cpu.to_string(),
                    host.cpus.to_string(),
                ),
                (
                    "memory",
                    mem as f64,
                    host.memory.0 as f64 * host.overcommit.memory,
                    "memory",
                    crate::types::Size(mem).to_string(),
                    host.memory.to_string(),
                ),
                (
                    "disk",
                    disk as f64,
                    host.storage.0 as f64 * host.overcommit.storage,
                    "storage",
                    crate::types::Size(disk).to_string(),
                    host.storage.to_string(),
                ),
            ];
            for (what, want, have, key, want_s, have_s) in checks {
                if want > have {
                    self.out.push(
                        Diagnostic::error_at_key(
                            "capacity",
                            hp.clone(),
                            format!("the machines on host `{h}` need {want_s} of {what}; it has {have_s} (overcommit {})",
                                match key { "cpu" => host.overcommit.cpu, "memory" => host.overcommit.memory, _ => host.overcommit.storage }),
                        )
                        .help(format!("shrink the machines, move some to another host, or raise `overcommit.{key}`")),
                    );
                }
            }
        }
    }

    pub(super) fn cluster_nodes(&mut self) {
        let lab = self.lab;
        let Some(c) = &lab.cluster else { return };
        let machines: Vec<&str> = lab.machines.keys().map(String::as_str).collect();
        if c.control_plane.is_empty() {
            self.push(
                Diagnostic::error(
                    "cluster-nodes",
                    path!["cluster", "control_plane"],
                    "the cluster has no control-plane node",
                )
                .help("list at least one machine under `control_plane:`"),
            );
        }
        let mut seen: HashMap<&str, (&str, TreePath)> = HashMap::new();
        let lists = [("control_plane", &c.control_plane), ("workers", &c.workers)];
        for (key, list) in lists {
            for (i, n) in list.iter().enumerate() {
                let p = path!["cluster", key, i];
                if !lab.machines.contains_key(n) {
                    self.unknown("unknown-machine", p.clone(), "machine", n, machines.clone());
                    continue;
                }
                if let Some((prev_key, prev)) = seen.insert(n.as_str(), (key, p.clone())) {
                    let message = if prev_key == key {
                        format!("machine `{n}` is listed twice as a cluster node")
                    } else {
                        format!("machine `{n}` is both a control-plane node and a worker")
                    };
                    self.push(
                        Diagnostic::error("cluster-nodes", p.clone(), message)
                            .related(prev, "first listed")
                            .help("a control-plane node runs workloads too when it has no taint; list each machine once"),
                    );
                }
                if lab.machine_ip(n).is_none() {
                    self.push(
                        Diagnostic::error("cluster-nodes", p, format!("cluster node `{n}` has no address"))
                            .help("give the node a NIC with `ip:` so MetalLB, NFS exports and the router can refer to it"),
                    );
                }
            }
        }
    }
}
