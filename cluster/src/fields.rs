//! Server-side apply's field sets (`managedFields[].fieldsV1`) read against a live object.
//!
//! A fieldsV1 set is a tree: `f:<name>` for a map key, `k:<json>` for a list element found by
//! its merge key, `v:<json>` for a set element, `i:<n>` for an atomic list index, and `.`
//! for "this element itself". [`project`] keeps only the parts of a live object a manager
//! owns; [`leaves`] lists another manager's fields as paths in that projection, in the same
//! `a.b[0].c` form the planner's field changes use.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Live array paths → the indices of the elements the projection kept, in order.
pub(crate) type Kept = HashMap<String, Vec<usize>>;

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Whether a fieldsV1 node means "the whole value" (no children besides `.`).
fn is_leaf(sub: &Value) -> bool {
    match sub.as_object() {
        Some(m) => m.keys().all(|k| k == "."),
        None => true,
    }
}

/// The index of the element of `items` a list key (`k:`, `v:`, `i:`) names.
fn find(items: &[Value], key: &str) -> Option<usize> {
    if let Some(k) = key.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(k).ok()?;
        items.iter().position(|it| {
            want.iter()
                .all(|(name, v)| it.get(name).is_some_and(|x| x == v))
        })
    } else if let Some(v) = key.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        items.iter().position(|it| *it == want)
    } else if let Some(i) = key.strip_prefix("i:") {
        i.parse().ok().filter(|i: &usize| *i < items.len())
    } else {
        None
    }
}

/// The parts of `live` that the field set `fields` covers.
pub(crate) fn project(fields: &Value, live: &Value, kept: &mut Kept) -> Value {
    project_at(fields, live, "", kept)
}

fn project_at(fields: &Value, live: &Value, lpath: &str, kept: &mut Kept) -> Value {
    let Some(fm) = fields.as_object() else {
        return live.clone();
    };
    match live {
        Value::Object(obj) => {
            let mut out = Map::new();
            for (k, sub) in fm {
                let Some(name) = k.strip_prefix("f:") else {
                    continue;
                };
                let Some(lv) = obj.get(name) else { continue };
                let v = if is_leaf(sub) {
                    lv.clone()
                } else {
                    project_at(sub, lv, &join(lpath, name), kept)
                };
                out.insert(name.to_string(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut picked: Vec<(usize, &Value)> = fm
                .iter()
                .filter_map(|(k, sub)| find(items, k).map(|i| (i, sub)))
                .collect();
            picked.sort_by_key(|(i, _)| *i);
            picked.dedup_by_key(|(i, _)| *i);
            kept.insert(lpath.to_string(), picked.iter().map(|(i, _)| *i).collect());
            Value::Array(
                picked
                    .into_iter()
                    .map(|(i, sub)| {
                        if is_leaf(sub) {
                            items[i].clone()
                        } else {
                            project_at(sub, &items[i], &format!("{lpath}[{i}]"), kept)
                        }
                    })
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// The leaf fields of `fields` (another manager's set) as paths in the projection that
/// [`project`] made with `kept`. Elements of lists the projection dropped are skipped: no
/// planned change can name them.
pub(crate) fn leaves(fields: &Value, live: &Value, kept: &Kept, out: &mut Vec<String>) {
    leaves_at(fields, live, "", "", kept, out);
}

fn leaves_at(
    fields: &Value,
    live: &Value,
    lpath: &str,
    ppath: &str,
    kept: &Kept,
    out: &mut Vec<String>,
) {
    let Some(fm) = fields.as_object() else {
        return;
    };
    match live {
        Value::Object(obj) => {
            for (k, sub) in fm {
                let Some(name) = k.strip_prefix("f:") else {
                    continue;
                };
                let p = join(ppath, name);
                match obj.get(name) {
                    Some(lv) if !is_leaf(sub) => {
                        leaves_at(sub, lv, &join(lpath, name), &p, kept, out);
                    }
                    _ => out.push(p),
                }
            }
        }
        Value::Array(items) => {
            let Some(ours) = kept.get(lpath) else { return };
            for (k, sub) in fm {
                let Some(i) = find(items, k) else { continue };
                let Some(pos) = ours.iter().position(|&x| x == i) else {
                    continue;
                };
                let p = format!("{ppath}[{pos}]");
                if is_leaf(sub) {
                    out.push(p);
                } else {
                    leaves_at(sub, &items[i], &format!("{lpath}[{i}]"), &p, kept, out);
                }
            }
        }
        _ => {}
    }
}

/// Removes the value at `path` (as written by [`leaves`]) from `v`; list elements stay (a
/// removed element would shift the others), only fields inside them go.
pub(crate) fn remove_path(v: &mut Value, path: &str) {
    let mut cur = v;
    let mut rest = path;
    loop {
        // Next segment: a key up to '.' or '[', or an index.
        if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else { return };
            let Ok(i) = after[..end].parse::<usize>() else {
                return;
            };
            let tail = &after[end + 1..];
            let Some(next) = cur.get_mut(i) else { return };
            if tail.is_empty() {
                return;
            }
            cur = next;
            rest = tail.strip_prefix('.').unwrap_or(tail);
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        // Keys may contain dots (`metallb.io/loadBalancerIPs`): prefer the longest key that
        // exists.
        let (key, tail) = match cur.as_object() {
            Some(m) => {
                let mut best = (&rest[..end], &rest[end..]);
                for (i, _) in rest.match_indices('.') {
                    if i > end && m.contains_key(&rest[..i]) {
                        best = (&rest[..i], &rest[i..]);
                    }
                }
                if m.contains_key(rest) {
                    best = (rest, "");
                }
                best
            }
            None => return,
        };
        if tail.is_empty() {
            if let Some(m) = cur.as_object_mut() {
                m.remove(key);
            }
            return;
        }
        let Some(next) = cur.get_mut(key) else { return };
        cur = next;
        rest = tail.strip_prefix('.').unwrap_or(tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"a": "1", "b": "2"}},
            "spec": {
                "replicas": 2,
                "template": {"spec": {"containers": [
                    {"name": "sidecar", "image": "envoy:1"},
                    {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
                ]}}
            }
        })
    }

    #[test]
    fn projects_only_the_owned_fields_and_keyed_elements() {
        let ours = json!({
            "f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}
            }}}}
        });
        let mut kept = Kept::new();
        let p = project(&ours, &deployment(), &mut kept);
        assert_eq!(
            p,
            json!({
                "metadata": {"labels": {"a": "1"}},
                "spec": {"replicas": 2, "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80}]}
                ]}}}
            })
        );
        // Another manager's image of `web` is at index 0 of the projection, not 1.
        let keel = json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"web\"}": {"f:image": {}},
            "k:{\"name\":\"sidecar\"}": {"f:image": {}}
        }}}}});
        let mut out = Vec::new();
        leaves(&keel, &deployment(), &kept, &mut out);
        assert_eq!(out, vec!["spec.template.spec.containers[0].image"]);
    }

    #[test]
    fn removes_paths_with_dotted_keys_and_indices() {
        let mut v = json!({"metadata": {"annotations": {"metallb.io/allow-shared-ip": "x", "b": 1}},
            "spec": {"c": [{"image": "a", "name": "n"}]}});
        remove_path(&mut v, "metadata.annotations.metallb.io/allow-shared-ip");
        remove_path(&mut v, "spec.c[0].image");
        remove_path(&mut v, "spec.nothing.here");
        assert_eq!(
            v,
            json!({"metadata": {"annotations": {"b": 1}}, "spec": {"c": [{"name": "n"}]}})
        );
    }

    #[test]
    fn set_and_index_keys() {
        let live = json!({"a": ["x", "y"], "b": [1, 2, 3]});
        let f = json!({"f:a": {"v:\"y\"": {}}, "f:b": {"i:2": {}}});
        let mut kept = Kept::new();
        assert_eq!(project(&f, &live, &mut kept), json!({"a": ["y"], "b": [3]}));
    }
}
