//! Shell commands for tests that build their own peers (namespaces, daemons): run one, run one
//! that must succeed, ask whether a tool is installed.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// What a DHCP server told busybox `udhcpc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address (`yiaddr`), which the client also puts on its `eth0`.
    pub ip: String,
    /// The gateway (option 3), empty when none was given.
    pub router: String,
    /// next-server (the BOOTP `siaddr`).
    pub siaddr: String,
}

/// A lease for `eth0` in the namespace `ns` (asking for `want` if given), with what the
/// server said besides the address.
pub fn dhcp_lease(ns: &str, scratch: &std::path::Path, want: Option<&str>) -> Lease {
    let script = scratch.join(format!("udhcpc-{ns}.sh"));
    let got = scratch.join(format!("got-{ns}"));
    let _ = std::fs::remove_file(&got);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = bound ]; then echo \"$ip,$router,$siaddr\" > {}; ip addr add $ip/24 dev $interface 2>/dev/null; fi\n",
            got.display()
        ),
    )
    .expect("the script is written");
    ok(&format!("chmod +x {}", script.display()));
    let ask = want.map(|ip| format!("-r {ip}")).unwrap_or_default();
    ok(&format!(
        "ip netns exec {ns} busybox udhcpc -i eth0 -n -q -f -t 5 -T 1 {ask} -s {}",
        script.display()
    ));
    let text = std::fs::read_to_string(&got).expect("udhcpc bound an address");
    let mut f = text.trim().split(',').map(str::to_string);
    Lease {
        ip: f.next().unwrap_or_default(),
        router: f.next().unwrap_or_default(),
        siaddr: f.next().unwrap_or_default(),
    }
}

/// A DHCP lease for `eth0` of the namespace `ns` from busybox `udhcpc` (asking for `want`, if
/// given): the address it was given, which the interface then holds. `scratch` keeps the
/// client's script.
pub fn udhcpc(ns: &str, scratch: &std::path::Path, want: Option<&str>) -> String {
    dhcp_lease(ns, scratch, want).ip
}

/// What busybox `nslookup NAME SERVER` printed in the namespace `ns`.
pub fn nslookup(ns: &str, name: &str, server: &str) -> String {
    String::from_utf8_lossy(
        &sh(&format!(
            "ip netns exec {ns} busybox nslookup {name} {server}"
        ))
        .stdout,
    )
    .into_owned()
}

/// Starts nfs-ganesha (Debian's, NFSv4 only, no grace period) in the namespace `ns` as a
/// fresh install runs it: its main configuration in `dir` includes `include` (cloudlet's
/// exports file), its pid file is `pid` and its log `dir/ganesha.log`. Waits until it listens.
pub fn ganesha(ns: &str, dir: &Path, include: &Path, pid: &Path) -> Child {
    let main = dir.join("ganesha.conf");
    std::fs::write(
        &main,
        format!(
            "NFS_CORE_PARAM {{ Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; }}\n\
             NFSV4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = \"{}\"; }}\n\
             NFS_KRB5 {{ Active_krb5 = false; }}\n\
             %include \"{}\"\n",
            dir.join("recovery").display(),
            include.display()
        ),
    )
    .expect("ganesha's configuration is written");
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "ganesha.nfsd", "-F", "-f"])
        .arg(&main)
        .arg("-p")
        .arg(pid)
        .arg("-L")
        .arg(dir.join("ganesha.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ganesha starts");
    let t = Instant::now();
    while !sh(&format!("ip netns exec {ns} ss -ltn | grep -q ':2049 '"))
        .status
        .success()
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "ganesha did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}
