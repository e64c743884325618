//! The SFTP peer for the backup tests: OpenSSH's own sshd in inetd mode (`sshd -i`), one per
//! connection accepted on a loopback port, with a host key and a client key made for the test
//! and the server's `internal-sftp`. Nothing is bound to port 22 and nothing of the machine's
//! SSH configuration is read or changed.
#![allow(unreachable_pub, clippy::disallowed_methods)]

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A running peer; stops accepting when dropped.
pub struct SftpPeer {
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    /// The user that logs in (the one running the tests).
    pub user: String,
    /// The client's private key.
    pub identity: PathBuf,
    /// A `known_hosts` file holding the server's host key.
    pub known_hosts: PathBuf,
    /// The server's host key as `known_hosts` holds it after the address (`KIND KEY`).
    pub host_key: String,
    /// Connections accepted so far.
    pub connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for SftpPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(st.success(), "ssh-keygen {}", path.display());
}

fn sshd() -> PathBuf {
    let p = PathBuf::from("/usr/sbin/sshd");
    assert!(
        p.is_file(),
        "sshd (openssh-server, with openssh-sftp-server) is installed"
    );
    p
}

impl SftpPeer {
    /// Starts the peer; its keys and configuration go to `dir`.
    pub fn start(dir: &Path) -> SftpPeer {
        std::fs::create_dir_all(dir).unwrap();
        let host_key = dir.join("host_ed25519");
        let identity = dir.join("id_ed25519");
        keygen(&host_key);
        keygen(&identity);
        std::fs::copy(identity.with_extension("pub"), dir.join("authorized_keys")).unwrap();
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "HostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nSubsystem sftp internal-sftp\nPidFile none\nLogLevel ERROR\n",
                host_key.display(),
                dir.join("authorized_keys").display()
            ),
        )
        .unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let mut parts = host_pub.split_whitespace();
        let (kind, key) = (parts.next().unwrap(), parts.next().unwrap());
        let host_key = format!("{kind} {key}");
        let known_hosts = dir.join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{} {host_key}\n", addr.port()),
        )
        .unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let (st, n, sshd) = (stop.clone(), connections.clone(), sshd());
        std::thread::spawn(move || {
            for c in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                n.fetch_add(1, Ordering::SeqCst);
                let out: OwnedFd = c.try_clone().unwrap().into();
                let inp: OwnedFd = c.into();
                let child = Command::new(&sshd)
                    .arg("-i")
                    .arg("-f")
                    .arg(&config)
                    .stdin(Stdio::from(inp))
                    .stdout(Stdio::from(out))
                    .stderr(Stdio::inherit())
                    .spawn();
                if let Ok(mut child) = child {
                    std::thread::spawn(move || child.wait());
                }
            }
        });
        SftpPeer {
            addr,
            user,
            identity,
            known_hosts,
            host_key,
            connections,
            stop,
        }
    }

    /// The command stock restic runs to reach this peer (`-o sftp.command=…`; Debian's
    /// restic predates `sftp.args`).
    pub fn ssh_command(&self) -> String {
        format!(
            "ssh -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -p {} -l {} 127.0.0.1 -s sftp",
            self.identity.display(),
            self.known_hosts.display(),
            self.addr.port(),
            self.user
        )
    }
}
