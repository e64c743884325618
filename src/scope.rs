//! What a plan covers — the whole lab, a few resources and what they need (`--target`), or
//! the removal of everything the lab owns (`destroy`) — and what cloudlet owns now.

use cloudlet_core::plan::{Action, Plan};
use cloudlet_core::resource::{Data, Domain, ResourceId};
use serde::Serialize;

use crate::{Error, Lab};

/// What [`Lab::plan_with`] plans.
///
/// A teardown keeps the machine that is the lab's NAS while it holds datasets the lab
/// retains (deleting the machine would delete them), and what needs that machine.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Plan the removal of everything the lab owns, as `cloudlet destroy` does: every
    /// resource cloudlet made and finds by its markers is deleted, in the reverse of the order
    /// it was made (the cluster's objects before the machines they run on, the router's and
    /// the NAS's settings before their machines). Data follows the lab's rules: what it
    /// retains is kept and listed, what it lets go is a data-loss step an apply runs only
    /// when allowed.
    pub destroy: bool,
    /// Narrow the plan to these resources and the steps they need (a create's dependencies,
    /// a delete's dependants), leaving everything else as it is: `domain/kind/name` as the
    /// plan prints it, `domain/kind` or `domain` for all of them. Empty: the whole lab.
    pub targets: Vec<String>,
}

/// A target of `--target`: a resource id or a prefix of one at a `/`.
#[derive(Debug, Clone)]
struct Target {
    domain: Domain,
    kind: Option<String>,
    name: Option<String>,
}

impl Target {
    fn parse(s: &str) -> Result<Target, Error> {
        let bad = |reason: String| Error::Target {
            target: s.to_string(),
            reason,
        };
        let mut parts = s.splitn(3, '/');
        let domain: Domain = parts.next().unwrap_or("").parse().map_err(bad)?;
        let kind = parts.next().map(str::to_string);
        let name = parts.next().map(str::to_string);
        if kind.as_deref() == Some("") || name.as_deref() == Some("") {
            return Err(bad(
                "expected `domain`, `domain/kind` or `domain/kind/name` (as `cloudlet plan` prints ids)".into(),
            ));
        }
        Ok(Target { domain, kind, name })
    }

    fn covers(&self, id: &ResourceId) -> bool {
        id.domain == self.domain
            && self.kind.as_deref().is_none_or(|k| *id.kind == *k)
            && self.name.as_deref().is_none_or(|n| *id.name == *n)
    }
}

/// One resource cloudlet owns, as its backend reports it (found by cloudlet's markers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owned {
    /// The resource.
    pub id: ResourceId,
    /// The backend that holds it (the domain's target kind: `vsphere`, `pfsense`, `local` ...).
    pub backend: String,
    /// Whether the lab still describes it (if not, the next plan deletes it, or keeps it
    /// when it holds data the lab retains).
    pub in_lab: bool,
    /// Whether deleting it would delete data the lab retains (datasets, volumes).
    pub retains_data: bool,
}

impl Lab {
    /// Plans what `options` say: the whole lab, the lab narrowed to targets, or its removal.
    /// A target that names nothing in the lab or the infrastructure is an error (a typo
    /// would otherwise plan nothing silently).
    pub async fn plan_with(&self, options: &PlanOptions) -> Result<Plan, Error> {
        let targets = options
            .targets
            .iter()
            .map(|t| Target::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        let mut plan = if options.destroy {
            self.plan_destroy(targets.is_empty()).await?
        } else {
            self.plan_holding(&[]).await?
        };
        // The NAS's machine holds the datasets a teardown keeps: it stays, with what needs it.
        let nas = self
            .model()
            .storage
            .as_ref()
            .and_then(|s| s.machine.clone());
        let keeps_data = plan.kept.iter().any(|id| id.domain == Domain::Storage);
        if let Some(nas) = nas.filter(|_| options.destroy && keeps_data) {
            let origin = plan.origin;
            plan = plan.without(|id| {
                id.domain == Domain::Hypervisor && &*id.kind == "vm" && *id.name == *nas
            });
            plan.origin = origin;
        }
        if targets.is_empty() {
            return Ok(plan);
        }
        let desired = if options.destroy {
            Vec::new()
        } else {
            self.desired()?
        };
        for (t, s) in targets.iter().zip(&options.targets) {
            let named = |id: &ResourceId| t.covers(id);
            let found = plan.steps.iter().any(|st| named(&st.id))
                || plan.kept.iter().any(named)
                || desired.iter().any(|r| named(&r.id));
            if !found {
                return Err(Error::Target {
                    target: s.clone(),
                    reason: if options.destroy {
                        "cloudlet owns no such resource (`cloudlet list` shows what it owns)".into()
                    } else {
                        "no resource of the lab or the infrastructure has this id (`cloudlet plan` prints the ids)".into()
                    },
                });
            }
        }
        let origin = plan.origin;
        plan = plan.narrowed(|id| targets.iter().any(|t| t.covers(id)));
        if options.destroy {
            // The teardown's order among what the targets take (a worker's removal does not
            // take the cluster's objects with it).
            let order = destroy_order(&plan, self.model());
            plan = plan.with_order(&order);
        }
        plan.origin = origin;
        plan.targets.clone_from(&options.targets);
        Ok(plan)
    }

    /// The plan that removes everything the lab owns, without the teardown's order when it
    /// is to be narrowed first.
    async fn plan_destroy(&self, ordered: bool) -> Result<Plan, Error> {
        let engine = self.shared_engine().await?;
        let mut plan = engine.plan(Vec::new()).await?;
        if ordered {
            let order = destroy_order(&plan, self.model());
            plan = plan.with_order(&order);
        }
        plan.destroy = true;
        self.made_here(&mut plan);
        Ok(plan)
    }

    /// Everything cloudlet owns in the lab's backends, found by its markers, each with whether
    /// the lab still describes it: what a teardown would remove, and what is left over.
    pub async fn owned(&self) -> Result<Vec<Owned>, Error> {
        self.fetch_platform().await?;
        let desired = self.desired()?;
        let engine = self.shared_engine().await?;
        let domains: Vec<Domain> = self.model().targets.each().map(|(d, _)| d).to_vec();
        let mut found = engine.observe_with(&domains, &desired).await?;
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found.dedup_by(|a, b| a.id == b.id);
        let wanted: std::collections::BTreeSet<&ResourceId> =
            desired.iter().map(|r| &r.id).collect();
        let backend = |d: Domain| {
            self.model()
                .targets
                .each()
                .into_iter()
                .find(|(x, _)| *x == d)
                .map(|(_, t)| t.kind.to_string())
                .unwrap_or_default()
        };
        Ok(found
            .into_iter()
            .map(|r| Owned {
                in_lab: wanted.contains(&r.id),
                retains_data: r.data == Data::Retain,
                backend: backend(r.id.domain),
                id: r.id,
            })
            .collect())
    }
}

/// The order a teardown needs beyond the resources' own dependencies: the cluster's objects
/// go before any machine (the cluster may run on them), and the router's and the NAS's
/// settings before the machine that is the router or the NAS. Pairs are (step, first).
fn destroy_order(plan: &Plan, lab: &cloudlet_core::Lab) -> Vec<(ResourceId, ResourceId)> {
    let deletes = || plan.steps.iter().filter(|s| s.action == Action::Delete);
    let vms: Vec<&ResourceId> = deletes()
        .filter(|s| s.id.domain == Domain::Hypervisor && &*s.id.kind == "vm")
        .map(|s| &s.id)
        .collect();
    let mut edges = Vec::new();
    let mut before = |vm: &ResourceId, domain: Domain| {
        for s in deletes().filter(|s| s.id.domain == domain) {
            edges.push((vm.clone(), s.id.clone()));
        }
    };
    for vm in &vms {
        before(vm, Domain::Cluster);
        let named = |m: Option<&String>| m.is_some_and(|m| **m == *vm.name);
        if named(lab.router.as_ref().and_then(|r| r.machine.as_ref())) {
            before(vm, Domain::Router);
        }
        if named(lab.storage.as_ref().and_then(|s| s.machine.as_ref())) {
            before(vm, Domain::Storage);
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_ids_or_their_prefixes() {
        let id = ResourceId::new(Domain::Hypervisor, "vm", "k8s-node1");
        for (t, covers) in [
            ("hypervisor", true),
            ("hypervisor/vm", true),
            ("hypervisor/vm/k8s-node1", true),
            ("hypervisor/vm/k8s-node2", false),
            ("hypervisor/network", false),
            ("cluster", false),
        ] {
            assert_eq!(Target::parse(t).unwrap().covers(&id), covers, "{t}");
        }
        for bad in ["", "vm/k8s-node1", "hypervisor//x", "hypervisor/vm/"] {
            let e = Target::parse(bad).unwrap_err();
            assert!(matches!(e, Error::Target { .. }), "{bad}: {e}");
        }
    }
}
