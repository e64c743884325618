//! Plans: desired × observed, per resource, as an ordered graph.

use std::collections::BTreeSet;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::EngineError;
use crate::resource::{Data, Domain, Held, Resource, ResourceId};

/// The format version of saved plans.
pub const PLAN_FORMAT: u32 = 1;

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Make it.
    Create,
    /// Change it in place.
    Update,
    /// Remove it (it left the lab).
    Delete,
}

impl Action {
    /// The verb.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// One changed field: its path in the body and the values before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// A path such as `spec.replicas` or `nics[0].mac`.
    pub path: String,
    /// The value before (absent: the field is added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The value after (absent: the field is removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The resource.
    pub id: ResourceId,
    /// What happens to it.
    pub action: Action,
    /// Steps of this plan that must finish first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<ResourceId>,
    /// For updates: the fields that change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    /// The resource as it should be (create, update) or as it is (delete).
    pub resource: Resource,
    /// The step destroys data (a delete of something the lab let go with `retain: false`, or
    /// an update that lowers a grow-only field such as a disk's size): an apply runs it only
    /// when explicitly allowed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data_loss: bool,
}

/// Counts per action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Creates.
    pub create: usize,
    /// Updates.
    pub update: usize,
    /// Deletes.
    pub delete: usize,
    /// Resources already as desired.
    pub unchanged: usize,
    /// Fields another writer holds whose value differs from the lab's (reported, not changed).
    #[serde(default)]
    pub held: usize,
    /// Resources holding data that left the lab and are kept (not deleted).
    #[serde(default)]
    pub kept: usize,
    /// Steps that destroy data.
    #[serde(default)]
    pub data_loss: usize,
}

impl Summary {
    /// Whether the plan changes anything.
    pub fn has_changes(&self) -> bool {
        self.create + self.update + self.delete > 0
    }
}

/// A plan: ordered steps plus what it was computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Saved-plan format version.
    pub format: u32,
    /// The lab's name.
    pub lab: String,
    /// Digest of the desired resources.
    pub desired_digest: String,
    /// Digest of the observed resources of the planned domains.
    pub observed_digest: String,
    /// The domains that were observed.
    pub domains: Vec<Domain>,
    /// Counts.
    pub summary: Summary,
    /// The steps, in an order that respects `after`.
    pub steps: Vec<Step>,
    /// Fields that differ from the lab but that another writer holds: reported, left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldChange>,
    /// Resources holding data that left the lab: kept, with their data, and not deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<ResourceId>,
    /// The plan removes everything the lab owns (`cloudlet destroy`): it was computed against
    /// an empty lab.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destroy: bool,
    /// The plan was narrowed to these resources and the steps they wait for (`--target`);
    /// empty: the whole lab.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Which in-memory planning made this plan; never saved, so a plan read back from JSON has
    /// none. Not part of what the plan says: plans compare equal whatever their origin.
    #[serde(skip)]
    pub origin: PlanOrigin,
}

/// The in-process origin of a plan (see [`Plan::origin`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOrigin(pub Option<u64>);

impl PartialEq for PlanOrigin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A difference the plan leaves alone because another writer holds the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldChange {
    /// The resource.
    pub id: ResourceId,
    /// Who holds the field.
    pub by: String,
    /// The field, with its live value (`before`) and the lab's (`after`).
    #[serde(flatten)]
    pub change: FieldChange,
}

/// Digest of a set of resources, independent of their order.
///
/// Bodies are canonical text, so their bytes are hashed as they are.
pub fn digest(resources: &[Resource]) -> String {
    let mut sorted: Vec<&Resource> = resources.iter().collect();
    sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    digest_sorted(&sorted)
}

/// [`digest`] of resources already sorted by id: BLAKE3 over the BLAKE3 of each run of 1,024
/// resources, so the runs hash on all cores (and BLAKE3's SIMD lanes within a run).
fn digest_sorted(sorted: &[&Resource]) -> String {
    use rayon::prelude::*;
    let parts: Vec<[u8; 32]> = sorted
        .par_chunks(1024)
        .map(|chunk| {
            let size: usize = chunk.iter().map(|r| r.body.as_str().len() + 128).sum();
            let mut buf: Vec<u8> = Vec::with_capacity(size);
            for r in chunk {
                put_str(&mut buf, r.id.domain.as_str());
                put_str(&mut buf, &r.id.kind);
                put_str(&mut buf, &r.id.name);
                put_str(&mut buf, r.body.as_str());
                buf.extend_from_slice(&(r.depends_on.len() as u64).to_le_bytes());
                for d in &r.depends_on {
                    put_str(&mut buf, d.domain.as_str());
                    put_str(&mut buf, &d.kind);
                    put_str(&mut buf, &d.name);
                }
            }
            *blake3::hash(&buf).as_bytes()
        })
        .collect();
    let mut h = blake3::Hasher::new();
    h.update(&(sorted.len() as u64).to_le_bytes());
    for p in &parts {
        h.update(p);
    }
    h.finalize().to_hex().to_string()
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// The field-level difference between two bodies.
pub fn diff(before: &Value, after: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    diff_into(String::new(), before, after, &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn diff_into(path: String, a: &Value, b: &Value, out: &mut Vec<FieldChange>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (xa, yb) = (x.get(k), y.get(k));
                if xa == yb {
                    continue;
                }
                let p = join(&path, k);
                match (xa, yb) {
                    (Some(va), Some(vb)) => diff_into(p, va, vb, out),
                    (Some(va), None) => out.push(FieldChange {
                        path: p,
                        before: Some(va.clone()),
                        after: None,
                    }),
                    (None, Some(vb)) => out.push(FieldChange {
                        path: p,
                        before: None,
                        after: Some(vb.clone()),
                    }),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_into(format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ if a != b => out.push(FieldChange {
            path,
            before: Some(a.clone()),
            after: Some(b.clone()),
        }),
        _ => {}
    }
}

/// Computes the plan for `desired` against `observed` (both for `domains`).
pub fn compute(
    lab: &str,
    domains: Vec<Domain>,
    desired: Vec<Resource>,
    observed: Vec<Resource>,
) -> Result<Plan, EngineError> {
    // Both sides are sorted independently: side by side. Sorting moves 4-byte indices, not
    // resources; each resource then moves once.
    let (want, mut have) = rayon::join(|| sorted(desired), || sorted(observed));
    if let Some(w) = want.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(EngineError::DuplicateResource {
            id: w[0].id.clone(),
        });
    }
    have.dedup_by(|a, b| a.id == b.id);
    // The digests and the plan's shape (actions, diffs, edges, order) only read the sorted
    // resources: compute them at the same time, then move the resources into the steps.
    let (digests, shape) = rayon::join(
        || {
            let (w, h): (Vec<&Resource>, Vec<&Resource>) =
                (want.iter().collect(), have.iter().collect());
            rayon::join(|| digest_sorted(&w), || digest_sorted(&h))
        },
        || shape(&want, &have),
    );
    let (desired_digest, observed_digest) = digests;
    let Shape {
        entries,
        summary,
        after,
        order,
        held,
        kept,
    } = shape?;
    let ids: Vec<ResourceId> = entries
        .iter()
        .map(|e| match e.from {
            Origin::Want(i) => want[i].id.clone(),
            Origin::Have(i) => have[i].id.clone(),
        })
        .collect();
    let kept: Vec<ResourceId> = kept.into_iter().map(|i| have[i].id.clone()).collect();
    let mut want: Vec<Option<Resource>> = want.into_iter().map(Some).collect();
    let mut have: Vec<Option<Resource>> = have.into_iter().map(Some).collect();
    let mut entries: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
    let mut steps = Vec::with_capacity(order.len());
    for i in order {
        let Some(e) = entries[i].take() else { continue };
        let resource = match e.from {
            Origin::Want(j) => want[j].take(),
            Origin::Have(j) => have[j].take(),
        };
        let Some(resource) = resource else { continue };
        steps.push(Step {
            id: ids[i].clone(),
            action: e.action,
            after: after[i].iter().map(|&j| ids[j].clone()).collect(),
            changes: e.changes,
            data_loss: (e.action == Action::Delete && resource.data == Data::Disposable)
                || e.shrinks,
            resource,
        });
    }
    let mut domains = domains;
    domains.sort();
    domains.dedup();
    Ok(Plan {
        format: PLAN_FORMAT,
        lab: lab.to_string(),
        desired_digest,
        observed_digest,
        domains,
        summary,
        steps,
        held,
        kept,
        destroy: false,
        targets: Vec::new(),
        origin: PlanOrigin::default(),
    })
}

impl Plan {
    /// The plan narrowed to the steps whose resource `keep` selects and every step those wait
    /// for, transitively (a create's dependencies, a delete's dependants): applying it leaves
    /// the rest as it is. The counts are of the steps kept; held fields and kept resources
    /// are those `keep` selects.
    pub fn narrowed(mut self, keep: impl Fn(&ResourceId) -> bool) -> Plan {
        let index: FxHashMap<&ResourceId, usize> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (&s.id, i))
            .collect();
        let mut wanted = vec![false; self.steps.len()];
        let mut todo: Vec<usize> = (0..self.steps.len())
            .filter(|&i| keep(&self.steps[i].id))
            .collect();
        while let Some(i) = todo.pop() {
            if std::mem::replace(&mut wanted[i], true) {
                continue;
            }
            todo.extend(
                self.steps[i]
                    .after
                    .iter()
                    .filter_map(|a| index.get(a).copied()),
            );
        }
        drop(index);
        let mut i = 0;
        self.steps.retain(|_| {
            i += 1;
            wanted[i - 1]
        });
        self.held.retain(|h| keep(&h.id));
        self.kept.retain(|id| keep(id));
        self.recount();
        self
    }

    /// The plan without the steps whose resource `drop` selects, nor the steps that wait for
    /// them (transitively): those resources are left as they are and listed as kept.
    pub fn without(mut self, drop: impl Fn(&ResourceId) -> bool) -> Plan {
        let mut gone: FxHashSet<ResourceId> = FxHashSet::default();
        // Steps are in an order that respects `after`: one pass sees every step's waits first.
        for st in &self.steps {
            if drop(&st.id) || st.after.iter().any(|a| gone.contains(a)) {
                gone.insert(st.id.clone());
            }
        }
        self.steps.retain(|st| !gone.contains(&st.id));
        let mut kept: Vec<ResourceId> = gone.into_iter().collect();
        kept.sort();
        self.kept.extend(kept);
        self.recount();
        self
    }

    /// Adds ordering between steps: each `(step, first)` makes `step` wait for `first`,
    /// unless `first` already waits for `step` (directly or not), which would close a cycle.
    /// Pairs naming a resource without a step are ignored. The steps are reordered to match.
    pub fn with_order(mut self, edges: &[(ResourceId, ResourceId)]) -> Plan {
        let index: FxHashMap<ResourceId, usize> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        let mut after: Vec<Vec<usize>> = self
            .steps
            .iter()
            .map(|s| {
                s.after
                    .iter()
                    .filter_map(|a| index.get(a).copied())
                    .collect()
            })
            .collect();
        for (step, first) in edges {
            let (Some(&i), Some(&j)) = (index.get(step), index.get(first)) else {
                continue;
            };
            if i == j || after[i].contains(&j) || waits_for(&after, j, i) {
                continue;
            }
            after[i].push(j);
            self.steps[i].after.push(first.clone());
        }
        // Adding only edges that close no cycle keeps the graph acyclic.
        let order = topo_order(&after).unwrap_or_else(|_| (0..self.steps.len()).collect());
        let mut slots: Vec<Option<Step>> = self.steps.drain(..).map(Some).collect();
        self.steps = order.into_iter().filter_map(|i| slots[i].take()).collect();
        self
    }

    /// Counts the steps again (after narrowing); `unchanged` stays as planned.
    fn recount(&mut self) {
        let unchanged = self.summary.unchanged;
        let mut s = Summary {
            unchanged,
            held: self.held.len(),
            kept: self.kept.len(),
            ..Summary::default()
        };
        for step in &self.steps {
            match step.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Delete => s.delete += 1,
            }
            s.data_loss += usize::from(step.data_loss);
        }
        self.summary = s;
    }
}

/// Whether step `from` waits for step `to`, directly or through other steps.
fn waits_for(after: &[Vec<usize>], from: usize, to: usize) -> bool {
    let mut seen = vec![false; after.len()];
    let mut todo = vec![from];
    while let Some(i) = todo.pop() {
        if i == to {
            return true;
        }
        if !std::mem::replace(&mut seen[i], true) {
            todo.extend(after[i].iter().copied());
        }
    }
    false
}

/// Whether two dependency lists name the same resources (their order means nothing).
fn same_set(a: &[ResourceId], b: &[ResourceId]) -> bool {
    if a == b {
        return true;
    }
    let (mut x, mut y) = (a.to_vec(), b.to_vec());
    x.sort();
    x.dedup();
    y.sort();
    y.dedup();
    x == y
}

fn held_change(id: &ResourceId, h: &Held, c: &FieldChange) -> HeldChange {
    HeldChange {
        id: id.clone(),
        by: h.by.clone(),
        change: c.clone(),
    }
}

#[derive(Clone, Copy)]
enum Origin {
    Want(usize),
    Have(usize),
}

struct Entry {
    action: Action,
    from: Origin,
    changes: Vec<FieldChange>,
    /// An update that lowers a grow-only field.
    shrinks: bool,
}

/// Whether `c` lowers one of the `grow_only` fields.
fn shrinks(grow_only: &[String], c: &FieldChange) -> bool {
    let field = c.path.rsplit(['.', ']']).next().unwrap_or(&c.path);
    grow_only.iter().any(|g| g == field)
        && matches!(
            (
                c.before.as_ref().and_then(Value::as_f64),
                c.after.as_ref().and_then(Value::as_f64)
            ),
            (Some(b), Some(a)) if a < b
        )
}

struct Shape {
    /// One entry per step, sorted by id.
    entries: Vec<Entry>,
    summary: Summary,
    /// Per entry: the entries it waits for (sorted, unique).
    after: Vec<Vec<usize>>,
    /// Entry indices in apply order.
    order: Vec<usize>,
    held: Vec<HeldChange>,
    /// Observed resources (indices) kept although they left the lab.
    kept: Vec<usize>,
}

/// Merge-joins the sorted desired and observed resources into steps (by reference), finds
/// the edges between steps and orders them.
fn shape(want: &[Resource], have: &[Resource]) -> Result<Shape, EngineError> {
    let mut summary = Summary::default();
    let mut entries: Vec<Entry> = Vec::new();
    // Observed dependencies of updated resources, for delete ordering.
    let mut old_deps: Vec<(usize, &[ResourceId])> = Vec::new();
    // Desired resources that need no step (dependencies may point at them).
    let mut unchanged: FxHashSet<&ResourceId> = FxHashSet::default();
    let mut held: Vec<HeldChange> = Vec::new();
    let mut kept: Vec<usize> = Vec::new();
    let (mut wi, mut hi) = (0, 0);
    while wi < want.len() || hi < have.len() {
        let ord = match (want.get(wi), have.get(hi)) {
            (Some(w), Some(h)) => w.id.cmp(&h.id),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                summary.create += 1;
                entries.push(Entry {
                    action: Action::Create,
                    from: Origin::Want(wi),
                    changes: Vec::new(),
                    shrinks: false,
                });
                wi += 1;
            }
            std::cmp::Ordering::Greater if have[hi].data == Data::Retain => {
                summary.kept += 1;
                kept.push(hi);
                hi += 1;
            }
            std::cmp::Ordering::Greater => {
                summary.delete += 1;
                if have[hi].data == Data::Disposable {
                    summary.data_loss += 1;
                }
                entries.push(Entry {
                    action: Action::Delete,
                    from: Origin::Have(hi),
                    changes: Vec::new(),
                    shrinks: false,
                });
                hi += 1;
            }
            std::cmp::Ordering::Equal => {
                let (r, o) = (&want[wi], &have[hi]);
                let mut changes = if o.body == r.body {
                    Vec::new()
                } else {
                    diff(&o.body.value(), &r.body.value())
                };
                if !o.held.is_empty() {
                    changes.retain(|c| match o.held.iter().find(|h| h.covers(&c.path)) {
                        Some(h) => {
                            held.push(held_change(&r.id, h, c));
                            false
                        }
                        None => true,
                    });
                }
                if changes.is_empty() && !same_set(&o.depends_on, &r.depends_on) {
                    changes.push(FieldChange {
                        path: "(depends_on)".into(),
                        before: Some(serde_json::to_value(&o.depends_on).unwrap_or_default()),
                        after: Some(serde_json::to_value(&r.depends_on).unwrap_or_default()),
                    });
                }
                if changes.is_empty() {
                    summary.unchanged += 1;
                    unchanged.insert(&r.id);
                } else {
                    summary.update += 1;
                    if !o.depends_on.is_empty() {
                        old_deps.push((entries.len(), &o.depends_on));
                    }
                    let shrinks = changes.iter().any(|c| shrinks(&r.grow_only, c));
                    if shrinks {
                        summary.data_loss += 1;
                    }
                    entries.push(Entry {
                        action: Action::Update,
                        from: Origin::Want(wi),
                        changes,
                        shrinks,
                    });
                }
                wi += 1;
                hi += 1;
            }
        }
    }
    summary.held = held.len();
    let res = |e: &Entry| -> &Resource {
        match e.from {
            Origin::Want(i) => &want[i],
            Origin::Have(i) => &have[i],
        }
    };

    // Edges. Create/update: after its dependencies' steps. Delete: after the steps of
    // everything that (as observed) depends on it.
    let index: FxHashMap<&ResourceId, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (&res(e).id, i))
        .collect();
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
    for (i, e) in entries.iter().enumerate() {
        let r = res(e);
        for d in &r.depends_on {
            let Some(&j) = index.get(d) else {
                if e.action != Action::Delete && !unchanged.contains(d) {
                    return Err(EngineError::MissingDependency {
                        id: r.id.clone(),
                        dependency: d.clone(),
                    });
                }
                continue;
            };
            match e.action {
                Action::Create | Action::Update if entries[j].action == Action::Delete => {
                    return Err(EngineError::MissingDependency {
                        id: r.id.clone(),
                        dependency: d.clone(),
                    });
                }
                Action::Create | Action::Update => after[i].push(j),
                Action::Delete if entries[j].action == Action::Delete => after[j].push(i),
                Action::Delete => {}
            }
        }
    }
    for (i, deps) in &old_deps {
        for d in *deps {
            if let Some(&j) = index
                .get(d)
                .filter(|&&j| entries[j].action == Action::Delete)
            {
                after[j].push(*i);
            }
        }
    }
    for a in &mut after {
        a.sort_unstable();
        a.dedup();
    }
    let order = topo_order(&after).map_err(|stuck| EngineError::Cycle {
        id: res(&entries[stuck]).id.clone(),
    })?;
    Ok(Shape {
        entries,
        summary,
        after,
        order,
        held,
        kept,
    })
}

fn sorted(mut v: Vec<Resource>) -> Vec<Resource> {
    use rayon::prelude::*;
    let mut order: Vec<u32> = (0..u32::try_from(v.len()).unwrap_or(u32::MAX)).collect();
    order.par_sort_unstable_by(|&a, &b| v[a as usize].id.cmp(&v[b as usize].id));
    let mut slots: Vec<Option<Resource>> = v.drain(..).map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| slots[i as usize].take())
        .collect()
}

/// Kahn's algorithm with the ready set ordered by index (steps are sorted by id): the same
/// input always gives the same order.
/// Returns the order, or a step on a cycle.
fn topo_order(after: &[Vec<usize>]) -> Result<Vec<usize>, usize> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let n = after.len();
    let mut indegree: Vec<usize> = after.iter().map(Vec::len).collect();
    // Dependants in one flat array (CSR): start[i]..start[i + 1] are the steps waiting on i.
    let mut start = vec![0usize; n + 1];
    for a in after {
        for &j in a {
            start[j + 1] += 1;
        }
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut dependants = vec![0usize; start[n]];
    for (i, a) in after.iter().enumerate() {
        for &j in a {
            dependants[fill[j]] = i;
            fill[j] += 1;
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &d in &dependants[start[i]..start[i + 1]] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    if order.len() < n {
        return Err((0..n).find(|&i| indegree[i] > 0).unwrap_or(0));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(kind: &str, name: &str, body: Value) -> Resource {
        Resource::new(ResourceId::new(Domain::Cluster, kind, name), body)
    }

    #[test]
    fn field_level_diff() {
        let a = json!({"spec": {"replicas": 1, "image": "a", "ports": [80]}, "x": 1});
        let b = json!({"spec": {"replicas": 2, "image": "a", "ports": [80, 443]}, "y": 2});
        let d = diff(&a, &b);
        let paths: Vec<&str> = d.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, vec!["spec.ports", "spec.replicas", "x", "y"]);
        assert_eq!(d[1].before, Some(json!(1)));
        assert_eq!(d[2].after, None);
    }

    #[test]
    fn creates_follow_dependencies_and_deletes_reverse_them() {
        let ns = r("namespace", "a", json!({}));
        let dep = r("deployment", "a.a", json!({})).after(ns.id.clone());
        let plan = compute(
            "t",
            vec![Domain::Cluster],
            vec![dep.clone(), ns.clone()],
            vec![],
        )
        .unwrap();
        let order: Vec<String> = plan.steps.iter().map(|s| s.id.to_string()).collect();
        assert_eq!(order, vec!["cluster/namespace/a", "cluster/deployment/a.a"]);

        let plan = compute("t", vec![Domain::Cluster], vec![], vec![dep, ns]).unwrap();
        let order: Vec<String> = plan.steps.iter().map(|s| s.id.to_string()).collect();
        assert_eq!(order, vec!["cluster/deployment/a.a", "cluster/namespace/a"]);
        assert_eq!(plan.summary.delete, 2);
    }

    #[test]
    fn narrowing_keeps_a_target_and_what_it_waits_for() {
        let ns = r("namespace", "a", json!({}));
        let dep = r("deployment", "a.a", json!({})).after(ns.id.clone());
        let svc = r("service", "a.a", json!({})).after(ns.id.clone());
        let other = r("namespace", "b", json!({}));
        let all = vec![dep.clone(), ns.clone(), svc.clone(), other.clone()];
        let plan = compute("t", vec![Domain::Cluster], all.clone(), vec![]).unwrap();
        let narrowed = plan.narrowed(|id| *id == dep.id);
        let order: Vec<String> = narrowed.steps.iter().map(|s| s.id.to_string()).collect();
        assert_eq!(order, vec!["cluster/namespace/a", "cluster/deployment/a.a"]);
        assert_eq!(narrowed.summary.create, 2);
        // Deleting the namespace takes what depends on it first, and nothing else.
        let plan = compute("t", vec![Domain::Cluster], vec![other], all).unwrap();
        let narrowed = plan.narrowed(|id| *id == ns.id);
        let mut ids: Vec<String> = narrowed.steps.iter().map(|s| s.id.to_string()).collect();
        assert_eq!(ids.pop().as_deref(), Some("cluster/namespace/a"));
        ids.sort();
        assert_eq!(ids, vec!["cluster/deployment/a.a", "cluster/service/a.a"]);
        assert_eq!(narrowed.summary.delete, 3);
        assert_eq!(narrowed.summary.create, 0);
    }

    #[test]
    fn leaving_a_step_out_leaves_out_what_waits_for_it() {
        let ns = r("namespace", "a", json!({}));
        let dep = r("deployment", "a.a", json!({})).after(ns.id.clone());
        let other = r("namespace", "b", json!({}));
        let plan = compute("t", vec![], vec![], vec![dep, ns.clone(), other]).unwrap();
        // Deleting the deployment before the namespace: keep the deployment, and the
        // namespace (which waits for it) stays too.
        let plan = plan.without(|id| &*id.kind == "deployment");
        let ids: Vec<String> = plan.steps.iter().map(|s| s.id.to_string()).collect();
        assert_eq!(ids, vec!["cluster/namespace/b"]);
        assert_eq!(plan.kept.len(), 2);
        assert_eq!((plan.summary.delete, plan.summary.kept), (1, 2));
    }

    #[test]
    fn added_order_is_kept_unless_it_closes_a_cycle() {
        let a = r("namespace", "a", json!({}));
        let b = r("namespace", "b", json!({})).after(a.id.clone());
        let c = r("namespace", "c", json!({}));
        let plan = compute("t", vec![], vec![a.clone(), b.clone(), c.clone()], vec![]).unwrap();
        // a before c would be natural; make c first, and refuse b before a (a cycle).
        let plan = plan.with_order(&[(a.id.clone(), c.id.clone()), (a.id.clone(), b.id.clone())]);
        let order: Vec<String> = plan.steps.iter().map(|s| s.id.to_string()).collect();
        assert_eq!(
            order,
            vec![
                "cluster/namespace/c",
                "cluster/namespace/a",
                "cluster/namespace/b"
            ]
        );
        assert_eq!(plan.steps[1].after, vec![c.id.clone()]);
    }

    #[test]
    fn lowering_a_grow_only_field_is_data_loss() {
        let vm = |mib: u64| {
            let mut v = r(
                "vm",
                "a",
                json!({"disks": [{"size_mib": mib}], "memory_mib": mib}),
            );
            v.grow_only = vec!["size_mib".into()];
            v
        };
        let grow = compute("t", vec![], vec![vm(20)], vec![vm(10)]).unwrap();
        assert!(!grow.steps[0].data_loss);
        let shrink = compute("t", vec![], vec![vm(5)], vec![vm(10)]).unwrap();
        assert!(shrink.steps[0].data_loss);
        assert_eq!(shrink.summary.data_loss, 1);
        // memory_mib fell too, but it is not grow-only: one marked step, for the disk.
        assert_eq!(shrink.steps[0].changes.len(), 2);
    }

    #[test]
    fn unchanged_is_not_a_step() {
        let a = r("namespace", "a", json!({"x": 1}));
        let plan = compute("t", vec![Domain::Cluster], vec![a.clone()], vec![a]).unwrap();
        assert!(plan.steps.is_empty());
        assert_eq!(plan.summary.unchanged, 1);
        assert!(!plan.summary.has_changes());
    }

    #[test]
    fn cycles_and_dangling_dependencies_are_errors() {
        let a = r("x", "a", json!({})).after(ResourceId::new(Domain::Cluster, "x", "b"));
        let b = r("x", "b", json!({})).after(a.id.clone());
        assert!(matches!(
            compute("t", vec![], vec![a.clone(), b], vec![]),
            Err(EngineError::Cycle { .. })
        ));
        assert!(matches!(
            compute("t", vec![], vec![a], vec![]),
            Err(EngineError::MissingDependency { .. })
        ));
    }
}
