//! A small YAML writer for files cloudlet renders (lab fragments, cloud-init user-data):
//! block mappings, one item per line for lists of mappings, flow style for the rest, and every
//! string that could be read as something else JSON-quoted (JSON strings are YAML strings).

use serde_json::Value;

/// A string as a YAML scalar: plain when it cannot be mistaken for another type, quoted
/// otherwise.
pub fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./@".contains(c))
        && !s.starts_with(['-', '.', '@'])
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~" | "y" | "n"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// A value in flow style on one line.
pub fn inline(v: &Value) -> String {
    match v {
        Value::String(s) => scalar(s),
        Value::Array(a) => format!("[{}]", a.iter().map(inline).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, x)| format!("{}: {}", scalar(k), inline(x)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// Writes the mapping `v` in block style at `indent` spaces; the values of `inline_keys` and of
/// lists that hold no mapping are written in flow style, lists of mappings one item per line.
pub fn emit(v: &Value, indent: usize, inline_keys: &[&str], out: &mut String) {
    let pad = " ".repeat(indent);
    if let Value::Object(m) = v {
        for (k, x) in m {
            match x {
                Value::Object(o) if !o.is_empty() && !inline_keys.contains(&k.as_str()) => {
                    out.push_str(&format!("{pad}{}:\n", scalar(k)));
                    emit(x, indent + 2, inline_keys, out);
                }
                Value::Array(a) if a.iter().any(Value::is_object) => {
                    out.push_str(&format!("{pad}{}:\n", scalar(k)));
                    for it in a {
                        out.push_str(&format!("{pad}  - {}\n", inline(it)));
                    }
                }
                _ => out.push_str(&format!("{pad}{}: {}\n", scalar(k), inline(x))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambiguous_strings_are_quoted() {
        assert_eq!(scalar("web"), "web");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("1.0"), "\"1.0\"");
        assert_eq!(scalar("$6$salt$hash"), "\"$6$salt$hash\"");
        assert_eq!(scalar("a: b"), "\"a: b\"");
        let mut out = String::new();
        emit(
            &serde_json::json!({"a": {"b": [1, "x"], "c": [{"d": "e f"}]}, "g": {}}),
            0,
            &[],
            &mut out,
        );
        assert_eq!(out, "a:\n  b: [1, x]\n  c:\n    - {d: \"e f\"}\ng: {}\n");
    }
}
