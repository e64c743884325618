//! A small YAML writer for files cloudlet renders (lab fragments, cloud-init user-data):
//! block mappings, one item per line for lists of mappings, flow style for the rest, and every
//! string that could be read as something else JSON-quoted (JSON strings are YAML strings).

use serde_json::Value;

/// Words that YAML 1.1 readers (PyYAML, which cloud-init uses) or the 1.2 core schema (our
/// loader) read as booleans or null, compared without case.
const WORDS: &[&str] = &[
    "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~",
];

/// Whether a reader could take `s` as a number or a date: integers with `_` or a leading `0`
/// (octal in YAML 1.1), `0x`/`0o`/`0b` forms, floats with an exponent, timestamps.
fn numeric_looking(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    if !t.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let b = t.as_bytes();
    t.bytes().all(|c| c.is_ascii_digit() || c == b'_')
        || (b.len() > 1 && b[0] == b'0' && matches!(b[1], b'x' | b'X' | b'o' | b'O' | b'b' | b'B'))
        || (t
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'e' | b'E' | b'+' | b'-'))
            && t.matches('.').count() <= 1
            && !t.contains("--"))
        || (b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-')
}

/// A string as a YAML scalar: plain only when every reader gets the same string back (our
/// loader's YAML 1.2 core schema and YAML 1.1 readers such as PyYAML), JSON-quoted otherwise.
pub fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./@".contains(c))
        && !s.starts_with(['-', '.', '@'])
        && !WORDS.iter().any(|w| w.eq_ignore_ascii_case(s))
        && !numeric_looking(s)
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

/// Strings of every shape that YAML readers resolve to something else, for round-trip tests.
pub const TRICKY: &[&str] = &[
    "0x10",
    "0X1F",
    "0o17",
    "0b101",
    "017",
    "1_000",
    "+12",
    "-7",
    "1e3",
    "1.5e+3",
    "1.0",
    ".5",
    "True",
    "TRUE",
    "true",
    "Null",
    "NULL",
    "null",
    "~",
    "NO",
    "No",
    "no",
    "Off",
    "OFF",
    "on",
    "Y",
    "y",
    "n",
    "yes",
    "2024-01-01",
    "2024-01-01T10:00:00Z",
    ".inf",
    "-.inf",
    ".NaN",
    "",
    " ",
    "-",
    "- x",
    "a: b",
    "#x",
    "x #y",
    "'q'",
    "\"dq\"",
    "&a",
    "*a",
    "!tag",
    "%x",
    "@x",
    "`x",
    "|",
    ">",
    "[x]",
    "{x}",
    "10.0.20.1",
    "1.2.3",
    "web",
    "$6$salt$hash",
    "line\nbreak",
    "tab\there",
    "ünïcode",
    "=",
    "<<",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tricky_string_reads_back_as_itself() {
        for s in TRICKY {
            let text = format!("k: {}\n", scalar(s));
            let docs =
                crate::source::parse_yaml(0, &text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(
                docs[0].get("k").unwrap().kind,
                crate::source::NodeKind::Scalar(crate::source::Scalar::Str((*s).to_string())),
                "{text}"
            );
        }
    }

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
