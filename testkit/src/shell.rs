//! Shell commands for tests that build their own peers (namespaces, daemons): run one, run one
//! that must succeed, ask whether a tool is installed.

use std::process::{Command, Output};

/// Runs `cmd` with `sh -c`; its output, whatever its status.
pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("sh runs")
}

/// Runs `cmd` with `sh -c`, failing the test (with what it printed) unless it succeeds; its
/// standard output.
pub fn ok(cmd: &str) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether `name` is on the `PATH`.
pub fn tool(name: &str) -> bool {
    sh(&format!("command -v {name}")).status.success()
}
