//! The lab format's reference in Markdown, generated from the JSON Schema's descriptions (the
//! model's doc comments): one section per type, a table of its keys with their types and
//! whether they are required. `cloudlet schema --markdown` prints it; `docs/lab-format.md` is
//! it, kept current by a test.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// The reference of the lab format as Markdown.
pub fn schema_reference() -> String {
    let schema = crate::schema();
    let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "# The lab format\n");
    let _ = writeln!(
        out,
        "Generated from the JSON Schema (`cloudlet schema`, `{}`) by `cloudlet schema --markdown`; do not edit by hand.\n",
        crate::SCHEMA_ID
    );
    let _ = writeln!(out, "{}\n", text(&schema["description"]));
    let _ = writeln!(out, "## The root\n");
    keys(&mut out, &schema);
    for (name, def) in &defs {
        let _ = writeln!(out, "## {name}\n");
        let about = text(&def["description"]);
        if !about.is_empty() {
            let _ = writeln!(out, "{about}\n");
        }
        if def.get("properties").is_some() {
            keys(&mut out, def);
        } else if let Some(variants) = def
            .get("oneOf")
            .or_else(|| def.get("anyOf"))
            .and_then(Value::as_array)
        {
            let _ = writeln!(out, "One of:\n");
            for v in variants {
                let about = text(&v["description"]);
                let _ = writeln!(
                    out,
                    "- {}{}",
                    type_of(v),
                    if about.is_empty() {
                        String::new()
                    } else {
                        format!(": {about}")
                    }
                );
            }
            out.push('\n');
        } else {
            let _ = writeln!(out, "Type: {}.\n", type_of(def));
        }
    }
    out
}

/// The table of an object's keys.
fn keys(out: &mut String, def: &Value) {
    let empty = Map::new();
    let props = def["properties"].as_object().unwrap_or(&empty);
    let required: Vec<&str> = def["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "| key | type | required | what it is |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (key, v) in props {
        let _ = writeln!(
            out,
            "| `{key}` | {} | {} | {} |",
            type_of(v),
            if required.contains(&key.as_str()) {
                "yes"
            } else {
                ""
            },
            cell(&text(&v["description"]))
        );
    }
    if let Some(extra) = def.get("additionalProperties").filter(|a| a.is_object()) {
        let _ = writeln!(
            out,
            "| *(other keys)* | {} |  | {} |",
            type_of(extra),
            cell(&text(&extra["description"]))
        );
    }
    out.push('\n');
}

/// A schema's type in words, with links to the sections of named types.
fn type_of(v: &Value) -> String {
    if let Some(r) = v["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    for alt in ["anyOf", "oneOf"] {
        if let Some(a) = v[alt].as_array() {
            let kinds: Vec<String> = a
                .iter()
                .filter(|x| x["type"] != "null")
                .map(type_of)
                .collect();
            return kinds.join(" or ");
        }
    }
    if let Some(c) = v.get("const") {
        return format!("`{c}`");
    }
    if let Some(e) = v["enum"].as_array() {
        let vals: Vec<String> = e.iter().map(|x| format!("`{x}`")).collect();
        return vals.join(", ");
    }
    let ty = match &v["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => String::new(),
    };
    match ty.as_str() {
        "array" => format!("list of {}", type_of(&v["items"])),
        "object" => match v.get("additionalProperties").filter(|a| a.is_object()) {
            Some(values) if v.get("properties").is_none() => {
                format!("map of name → {}", type_of(values))
            }
            _ => "mapping".into(),
        },
        "" => "any".into(),
        other => other.to_string(),
    }
}

/// A description as one paragraph, rustdoc links as plain code.
fn text(v: &Value) -> String {
    let s = v.as_str().unwrap_or("");
    let joined = s.split('\n').map(str::trim).collect::<Vec<_>>().join(" ");
    joined.replace("[`", "`").replace("`]", "`")
}

/// Text fit for a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_read_as_words_with_links() {
        assert_eq!(
            type_of(&json!({"$ref": "#/$defs/Machine"})),
            "[Machine](#machine)"
        );
        assert_eq!(
            type_of(&json!({"anyOf": [{"$ref": "#/$defs/Size"}, {"type": "null"}]})),
            "[Size](#size)"
        );
        assert_eq!(
            type_of(&json!({"type": "array", "items": {"type": "string"}})),
            "list of string"
        );
        assert_eq!(
            type_of(&json!({"type": "object", "additionalProperties": {"$ref": "#/$defs/App"}})),
            "map of name → [App](#app)"
        );
        assert_eq!(type_of(&json!({"type": ["integer", "null"]})), "integer");
        assert_eq!(
            type_of(&json!({"enum": ["tcp", "udp"]})),
            "`\"tcp\"`, `\"udp\"`"
        );
        assert_eq!(
            text(&json!("See [`crate::backend`]\n  for more.")),
            "See `crate::backend` for more."
        );
        assert_eq!(cell("a | b"), "a \\| b");
    }
}
