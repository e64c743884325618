//! What cloudlet writes as YAML (compose imports, cloud-init user-data) reads back as the
//! same strings in a YAML 1.1 reader: PyYAML, the one cloud-init uses.
#![allow(missing_docs)]

use std::io::Write as _;
use std::process::{Command, Stdio};

#[test]
fn pyyaml_reads_every_tricky_string_back_as_itself() {
    let mut map = serde_json::Map::new();
    for (i, s) in cloudlet_core::yaml::TRICKY.iter().enumerate() {
        map.insert(format!("v{i}"), serde_json::Value::String((*s).to_string()));
        map.insert((*s).to_string(), serde_json::Value::from(i));
    }
    let value = serde_json::Value::Object(map);
    let mut text = String::new();
    cloudlet_core::yaml::emit(&value, 0, &[], &mut text);
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read()), default=str))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML (Debian's python3-yaml)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML could not read:\n{text}");
    let back: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back, value, "written as:\n{text}");
}
