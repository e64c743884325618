//! Each network-installed machine's install state, persisted in the state store:
//! discovered → booting → installing → installed, or failed, with timestamps.
//!
//! - A machine that asks for its boot program gets the installer only while it is not
//!   installed, with a fresh per-boot token that its install config URL carries and that is
//!   valid for the install window; once `installed`, every later boot gets "boot from local
//!   disk" (one-shot install: no reinstall loop) until a reinstall is asked for explicitly.
//! - A machine that boots but never fetches its install config, or installs for longer than
//!   the install window, is `failed` with the reason; its next boot starts over.
//! - Every change is written to `installs.json` (a temporary file renamed over it), so a
//!   restarted boot service knows what it knew.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a machine is in its install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Seen asking for a network boot (DHCP).
    Discovered,
    /// Its boot program asked for the installer.
    Booting,
    /// Its installer fetched its install config.
    Installing,
    /// It reported a finished install.
    Installed,
    /// It reported a failure, or a window passed.
    Failed,
}

/// One transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The phase entered.
    pub phase: Phase,
    /// When (seconds since the Unix epoch).
    pub at: u64,
    /// Why, for failures and notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A machine's install state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The MAC it boots with.
    pub mac: String,
    /// The current phase.
    pub phase: Phase,
    /// Since when.
    pub since: u64,
    /// The current boot's token (while booting or installing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The address its current boot asked from: the install config and the report are
    /// accepted only from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Network boots seen.
    pub boots: u32,
    /// The SSH host key its last successful install reported (`ssh-ed25519 AAAA...`): what
    /// cloudlet verifies it by from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// Every transition, oldest first (the last 50).
    pub history: Vec<Transition>,
}

/// A reported SSH host key in OpenSSH's public form (`TYPE BASE64`, the installer sends
/// `TYPE:BASE64` so the report stays one word), or `None` when it is not one.
pub fn parse_host_key(said: &str) -> Option<String> {
    const TYPES: &[&str] = &[
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
    ];
    let (ty, b64) = said.split_once([':', ' '])?;
    let ok = TYPES.contains(&ty)
        && (16..=1024).contains(&b64.len())
        && b64
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    ok.then(|| format!("{ty} {b64}"))
}

/// What a machine that network-boots is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootAnswer {
    /// Install, with this boot's token for the install config URL.
    Install {
        /// The per-boot token.
        token: String,
    },
    /// Boot from the local disk: it is installed.
    LocalDisk,
}

/// Why a request about a machine's install is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The machine is not one the boot service installs.
    #[error("`{0}` is not a machine this boot service installs")]
    Unknown(String),
    /// The token is not this boot's, it comes from another address, or its window passed.
    #[error(
        "the token for `{0}` is not valid (another boot's, from another address, or its install window passed)"
    )]
    BadToken(String),
    /// The machine was never seen asking for a network boot over DHCP.
    #[error("`{0}` was not seen asking for a network boot (DHCP) first")]
    NotSeen(String),
    /// The system's random source failed.
    #[error("no token can be made: the system's random source failed ({0})")]
    Random(String),
    /// A boot asked from an address other than the one the lab declares for the machine.
    #[error(
        "`{name}` booted from {peer}, but the lab gives it {declared}; install configs go only to the machine's own address"
    )]
    WrongAddress {
        /// The machine.
        name: String,
        /// Where the request came from.
        peer: IpAddr,
        /// The machine's address in the lab.
        declared: IpAddr,
    },
    /// A boot from another address while one is in progress: it does not replace it.
    #[error(
        "`{name}` is already installing from {current}; a boot from {peer} is refused until that install ends or its window passes (`cloudlet pxe reinstall` starts over)"
    )]
    InProgress {
        /// The machine.
        name: String,
        /// Where the request came from.
        peer: IpAddr,
        /// The address of the boot in progress.
        current: IpAddr,
    },
    /// Another boot service (or reinstall) holds the state directory.
    #[error("the install state {} is in use by a running boot service ({holder}); stop it first, or run this against that service's lab", path.display())]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// Who holds it.
        holder: String,
    },
    /// The state file could not be written.
    #[error("writing the install state {path}: {message}")]
    Store {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

/// How long each phase may last.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// From the boot program to the install config being fetched.
    pub boot: Duration,
    /// From the install config to the report.
    pub install: Duration,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            boot: Duration::from_secs(15 * 60),
            install: Duration::from_secs(2 * 60 * 60),
        }
    }
}

/// The install states of a lab's machines.
#[derive(Debug)]
pub struct Installs {
    path: PathBuf,
    windows: Windows,
    machines: BTreeMap<String, Machine>,
    /// The exclusive lock of the state directory, for a writer that keeps the state in
    /// memory (the boot service, a reinstall).
    _lock: Option<std::fs::File>,
}

const HISTORY: usize = 50;

/// Seconds within which a boot asking again is the same boot.
pub const REPEAT: u64 = 10;

/// 128 bits from the system's random source, as hex.
fn token() -> Result<String, InstallError> {
    let mut b = [0u8; 16];
    // Without the system's randomness no token could be trusted: no install then.
    getrandom::fill(&mut b).map_err(|e| InstallError::Random(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Installs {
    /// The states kept in `dir/installs.json` (empty when there is none yet).
    pub fn open(dir: &Path, windows: Windows) -> Result<Installs, InstallError> {
        let path = dir.join("installs.json");
        let machines = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| InstallError::Store {
                path: path.clone(),
                message: format!("not an install state file: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(InstallError::Store {
                    path,
                    message: e.to_string(),
                });
            }
        };
        Ok(Installs {
            path,
            windows,
            machines,
            _lock: None,
        })
    }

    /// Opens the states to change them, holding `dir/lock` until dropped: a second boot
    /// service, or a reinstall while one runs, is refused with who holds it instead of
    /// overwriting each other's state.
    pub fn open_exclusive(dir: &Path, windows: Windows) -> Result<Installs, InstallError> {
        use std::io::{Read as _, Write as _};
        let path = dir.join("lock");
        let store = |e: std::io::Error| InstallError::Store {
            path: path.clone(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(store)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(store)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = (&file).take(512).read_to_string(&mut text);
                return Err(InstallError::Busy {
                    path,
                    holder: cloudlet_core::store::readable_holder(&text),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(store(e)),
        }
        file.set_len(0).map_err(store)?;
        writeln!(
            file,
            "pid {} since {}",
            std::process::id(),
            cloudlet_core::store::now_ms()
        )
        .map_err(store)?;
        let mut installs = Installs::open(dir, windows)?;
        installs._lock = Some(file);
        Ok(installs)
    }

    /// Every machine's state.
    pub fn machines(&self) -> &BTreeMap<String, Machine> {
        &self.machines
    }

    fn save(&self) -> Result<(), InstallError> {
        let store = |e: std::io::Error| InstallError::Store {
            path: self.path.clone(),
            message: e.to_string(),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(store)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&self.machines).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(store)?;
        std::fs::rename(&tmp, &self.path).map_err(store)
    }

    fn enter(&mut self, name: &str, phase: Phase, now: u64, note: Option<String>) {
        if let Some(m) = self.machines.get_mut(name) {
            m.phase = phase;
            m.since = now;
            if !matches!(phase, Phase::Booting | Phase::Installing) {
                m.token = None;
            }
            m.history.push(Transition {
                phase,
                at: now,
                note,
            });
            if m.history.len() > HISTORY {
                m.history.remove(0);
            }
        }
    }

    /// The machine `name` with `mac` asked for a network boot.
    pub fn discovered(&mut self, name: &str, mac: &str, now: u64) -> Result<(), InstallError> {
        let m = self
            .machines
            .entry(name.to_string())
            .or_insert_with(|| Machine {
                mac: mac.to_ascii_lowercase(),
                phase: Phase::Discovered,
                since: now,
                token: None,
                ip: None,
                boots: 0,
                host_key: None,
                history: vec![Transition {
                    phase: Phase::Discovered,
                    at: now,
                    note: None,
                }],
            });
        m.mac = mac.to_ascii_lowercase();
        self.save()
    }

    /// The machine's boot program, at `peer`, asks what to boot: the installer with a fresh
    /// token, or the local disk once it is installed. A machine never seen at DHCP is
    /// refused. The same boot asking again within [`REPEAT`] seconds (a retransmitted or
    /// repeated request) gets the same token. With `declared` (the machine's address in the
    /// lab, its DHCP reservation) only that address is answered; without it, a boot from
    /// another address never replaces one in progress.
    pub fn boot(
        &mut self,
        name: &str,
        peer: IpAddr,
        declared: Option<IpAddr>,
        now: u64,
    ) -> Result<BootAnswer, InstallError> {
        self.expire(now)?;
        if let Some(declared) = declared
            && declared != peer
        {
            return Err(InstallError::WrongAddress {
                name: name.to_string(),
                peer,
                declared,
            });
        }
        let m = self
            .machines
            .get_mut(name)
            .ok_or_else(|| InstallError::NotSeen(name.to_string()))?;
        if matches!(m.phase, Phase::Booting | Phase::Installing)
            && m.token.is_some()
            && let Some(current) = m.ip.filter(|ip| *ip != peer)
        {
            return Err(InstallError::InProgress {
                name: name.to_string(),
                peer,
                current,
            });
        }
        if m.phase == Phase::Installed {
            m.boots += 1;
            self.save()?;
            return Ok(BootAnswer::LocalDisk);
        }
        if m.phase == Phase::Booting
            && m.ip == Some(peer)
            && now.saturating_sub(m.since) <= REPEAT
            && let Some(t) = &m.token
        {
            return Ok(BootAnswer::Install { token: t.clone() });
        }
        m.boots += 1;
        let t = token()?;
        m.token = Some(t.clone());
        m.ip = Some(peer);
        self.enter(name, Phase::Booting, now, None);
        self.save()?;
        Ok(BootAnswer::Install { token: t })
    }

    /// Whether `token` is the current boot's token of `name`, presented from the address
    /// that boot came from, within its window.
    pub fn valid(&self, name: &str, token: &str, peer: IpAddr, now: u64) -> bool {
        self.machines.get(name).is_some_and(|m| {
            let window = match m.phase {
                Phase::Booting => self.windows.boot,
                Phase::Installing => self.windows.install,
                _ => return false,
            };
            m.token.as_deref().is_some_and(|t| same(t, token))
                && m.ip == Some(peer)
                && now.saturating_sub(m.since) <= window.as_secs()
        })
    }

    /// The installer at `peer` fetched the install config with `token`.
    pub fn config_fetched(
        &mut self,
        name: &str,
        token: &str,
        peer: IpAddr,
        now: u64,
    ) -> Result<(), InstallError> {
        if !self.valid(name, token, peer, now) {
            return Err(InstallError::BadToken(name.to_string()));
        }
        if self.machines.get(name).map(|m| m.phase) == Some(Phase::Booting) {
            self.enter(name, Phase::Installing, now, None);
            self.save()?;
        }
        Ok(())
    }

    /// The installer reports its end: installed (with the host key the installed system
    /// has, when it sent one), or failed with `note`.
    #[allow(clippy::too_many_arguments)]
    pub fn report(
        &mut self,
        name: &str,
        token: &str,
        peer: IpAddr,
        ok: bool,
        note: Option<String>,
        host_key: Option<String>,
        now: u64,
    ) -> Result<(), InstallError> {
        if !self.valid(name, token, peer, now) {
            return Err(InstallError::BadToken(name.to_string()));
        }
        let phase = if ok { Phase::Installed } else { Phase::Failed };
        self.enter(name, phase, now, note);
        if ok && let Some(m) = self.machines.get_mut(name) {
            // A new install has new host keys: what it reports replaces what was known.
            m.host_key = host_key;
        }
        self.save()
    }

    /// `known_hosts` lines (OpenSSH) for the installed machines whose host key is known,
    /// each under the address `address_of` gives it (`None`: left out) and `port`.
    pub fn known_hosts(&self, address_of: impl Fn(&str) -> Option<IpAddr>, port: u16) -> String {
        let mut out = String::new();
        for (name, m) in &self.machines {
            let (Some(key), Some(ip)) = (&m.host_key, address_of(name)) else {
                continue;
            };
            if m.phase != Phase::Installed {
                continue;
            }
            let host = if port == 22 {
                ip.to_string()
            } else {
                format!("[{ip}]:{port}")
            };
            out.push_str(&format!("{host} {key}\n"));
        }
        out
    }

    /// Asks for `name` to be installed again at its next network boot.
    pub fn reinstall(&mut self, name: &str, now: u64) -> Result<(), InstallError> {
        if !self.machines.contains_key(name) {
            return Err(InstallError::Unknown(name.to_string()));
        }
        self.enter(
            name,
            Phase::Discovered,
            now,
            Some("reinstall asked for".into()),
        );
        self.save()
    }

    /// Fails the machines whose window passed.
    pub fn expire(&mut self, now: u64) -> Result<(), InstallError> {
        let late: Vec<(String, &'static str)> = self
            .machines
            .iter()
            .filter_map(|(n, m)| {
                let age = now.saturating_sub(m.since);
                match m.phase {
                    Phase::Booting if age > self.windows.boot.as_secs() => {
                        Some((n.clone(), "booted but never fetched its install config"))
                    }
                    Phase::Installing if age > self.windows.install.as_secs() => {
                        Some((n.clone(), "did not report the end of its install in time"))
                    }
                    _ => None,
                }
            })
            .collect();
        if late.is_empty() {
            return Ok(());
        }
        for (n, why) in late {
            self.enter(&n, Phase::Failed, now, Some(why.into()));
        }
        self.save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 20, 101));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 20, 102));

    fn windows() -> Windows {
        Windows {
            boot: Duration::from_secs(60),
            install: Duration::from_secs(600),
        }
    }

    #[test]
    fn one_install_then_local_boots_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Installs::open(dir.path(), windows()).unwrap();
        s.discovered("k8s-1", "52:54:00:AA:00:01", 100).unwrap();
        let BootAnswer::Install { token } = s.boot("k8s-1", IP, None, 101).unwrap() else {
            panic!("installs first");
        };
        assert_eq!(token.len(), 32);
        assert!(!s.valid("k8s-1", "0000", IP, 102), "another token");
        assert!(!s.valid("k8s-2", &token, IP, 102), "another machine");
        assert!(
            !s.valid("k8s-1", &token, OTHER, 102),
            "another address with the right token"
        );
        assert_eq!(
            s.boot("k8s-1", IP, None, 105).unwrap(),
            BootAnswer::Install {
                token: token.clone()
            },
            "the same boot asking again keeps its token"
        );
        s.config_fetched("k8s-1", &token, IP, 110).unwrap();
        assert_eq!(s.machines()["k8s-1"].phase, Phase::Installing);
        s.report("k8s-1", &token, IP, true, None, None, 400)
            .unwrap();
        // Restarted service: the state is read back; the machine boots from disk from now on.
        let mut again = Installs::open(dir.path(), windows()).unwrap();
        assert_eq!(again.machines()["k8s-1"].phase, Phase::Installed);
        assert_eq!(
            again.boot("k8s-1", IP, None, 500).unwrap(),
            BootAnswer::LocalDisk
        );
        assert_eq!(
            again.boot("k8s-1", IP, None, 900).unwrap(),
            BootAnswer::LocalDisk
        );
        assert!(
            !again.valid("k8s-1", &token, IP, 501),
            "the token ended with the install"
        );
        let phases: Vec<Phase> = again.machines()["k8s-1"]
            .history
            .iter()
            .map(|t| t.phase)
            .collect();
        assert_eq!(
            phases,
            vec![
                Phase::Discovered,
                Phase::Booting,
                Phase::Installing,
                Phase::Installed
            ]
        );
        again.reinstall("k8s-1", 1000).unwrap();
        assert!(matches!(
            again.boot("k8s-1", IP, None, 1001).unwrap(),
            BootAnswer::Install { .. }
        ));
    }

    #[test]
    fn windows_fail_machines_and_tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Installs::open(dir.path(), windows()).unwrap();
        s.discovered("a", "52:54:00:aa:00:02", 0).unwrap();
        let BootAnswer::Install { token } = s.boot("a", IP, None, 0).unwrap() else {
            panic!()
        };
        assert!(s.valid("a", &token, IP, 60));
        assert!(!s.valid("a", &token, IP, 61), "the boot window passed");
        assert_eq!(
            s.config_fetched("a", &token, IP, 61),
            Err(InstallError::BadToken("a".into()))
        );
        s.expire(61).unwrap();
        let m = &s.machines()["a"];
        assert_eq!(m.phase, Phase::Failed);
        assert_eq!(
            m.history.last().unwrap().note.as_deref(),
            Some("booted but never fetched its install config")
        );
        // The next boot starts over with a new token; a failed report is recorded as such.
        let BootAnswer::Install { token: t2 } = s.boot("a", IP, None, 100).unwrap() else {
            panic!()
        };
        assert_ne!(t2, token);
        s.config_fetched("a", &t2, IP, 101).unwrap();
        s.report(
            "a",
            &t2,
            IP,
            false,
            Some("disk not found".into()),
            None,
            150,
        )
        .unwrap();
        assert_eq!(s.machines()["a"].phase, Phase::Failed);
        assert_eq!(
            s.boot("nobody", IP, None, 1),
            Err(InstallError::NotSeen("nobody".into()))
        );
        assert!(Installs::open(dir.path(), windows()).is_ok());
        std::fs::write(dir.path().join("installs.json"), "{not json").unwrap();
        assert!(matches!(
            Installs::open(dir.path(), windows()),
            Err(InstallError::Store { .. })
        ));
    }

    #[test]
    fn another_address_cannot_take_over_an_install() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Installs::open(dir.path(), windows()).unwrap();
        s.discovered("a", "52:54:00:aa:00:01", 0).unwrap();
        // The lab declares the machine's address: nobody else is answered.
        assert!(matches!(
            s.boot("a", OTHER, Some(IP), 1),
            Err(InstallError::WrongAddress { .. })
        ));
        let BootAnswer::Install { token } = s.boot("a", IP, Some(IP), 2).unwrap() else {
            panic!("installs");
        };
        // Without a declared address: a boot in progress is not replaced by another
        // address, and its token keeps working.
        let BootAnswer::Install { token: t2 } = s.boot("a", IP, None, 3).unwrap() else {
            panic!("installs");
        };
        assert_eq!(token, t2);
        assert!(matches!(
            s.boot("a", OTHER, None, 30),
            Err(InstallError::InProgress { current, .. }) if current == IP
        ));
        assert!(s.valid("a", &token, IP, 31));
        s.config_fetched("a", &token, IP, 32).unwrap();
        assert!(matches!(
            s.boot("a", OTHER, None, 40),
            Err(InstallError::InProgress { .. })
        ));
        s.report("a", &token, IP, true, None, None, 50).unwrap();
        assert_eq!(s.machines()["a"].phase, Phase::Installed);
    }

    #[test]
    fn one_writer_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let held = Installs::open_exclusive(dir.path(), windows()).unwrap();
        match Installs::open_exclusive(dir.path(), windows()) {
            Err(e @ InstallError::Busy { .. }) => {
                let m = e.to_string();
                assert!(m.contains(&format!("pid {}", std::process::id())), "{m}");
                assert!(m.contains(" UTC"), "{m}");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        // Readers are not kept out.
        assert!(Installs::open(dir.path(), windows()).is_ok());
        drop(held);
        assert!(Installs::open_exclusive(dir.path(), windows()).is_ok());
    }
}
