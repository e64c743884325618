//! Running a backend's own tools (`dnsmasq --test`, `exportfs -ra`, `kill -HUP`) on the
//! machine cloudlet runs on, or inside a namespace through a command prefix.

use std::process::Stdio;

/// Runs `args` under `prefix` (empty on the machine itself; `["ip", "netns", "exec", "NS"]`
/// inside a network namespace); its standard output, or on failure a message with the
/// command and what it printed.
pub async fn run(prefix: &[String], args: &[&str]) -> Result<String, String> {
    let mut all: Vec<&str> = prefix.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    let Some((program, rest)) = all.split_first() else {
        return Err("no command to run".into());
    };
    let out = tokio::process::Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{}: {e}", all.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
