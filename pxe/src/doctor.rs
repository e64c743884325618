//! `cloudlet doctor`'s boot service check: the PXE server asked over TFTP, as a booting
//! machine asks it, for the boot menu (`pxelinux.cfg/default`), read to its end and compared
//! with the menu this lab renders. A server that does not answer, refuses the file or serves
//! another lab's menu shows here before a machine fails to install.

use std::net::SocketAddr;
use std::time::Duration;

use cloudlet_core::Domain;
use cloudlet_core::doctor::{Finding, Status};
use cloudlet_core::model::Lab;
use tokio::net::UdpSocket;

use crate::tftp::packet::{self, Packet};

const D: Option<Domain> = Some(Domain::Pxe);
/// The file asked for.
pub const MENU: &str = "pxelinux.cfg/default";
/// The most read of it (a menu is a few KiB).
pub const MAX_MENU: usize = 1 << 20;
/// How long one packet is waited for before the last one is sent again.
const RESEND: Duration = Duration::from_secs(1);

/// Why the file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    /// The server answered with a TFTP error.
    #[error("the server refused it: TFTP error {code} {message:?}")]
    Refused {
        /// Its code.
        code: u16,
        /// Its message.
        message: String,
    },
    /// Nothing came back in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The network refused (nothing listens, no route).
    #[error("{0}")]
    Io(String),
    /// Longer than [`MAX_MENU`].
    #[error("longer than {MAX_MENU} bytes")]
    TooLong,
}

/// Reads `name` from the TFTP server `server` (plain RFC 1350: 512-byte blocks, each
/// acknowledged; the server's port for the transfer taken from its first answer, packets from
/// elsewhere ignored), within `limit`.
pub async fn read(server: SocketAddr, name: &str, limit: Duration) -> Result<Vec<u8>, ReadError> {
    let io = |e: std::io::Error| ReadError::Io(e.to_string());
    let socket = UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .await
    .map_err(io)?;
    let mut rrq = vec![0, 1];
    rrq.extend_from_slice(name.as_bytes());
    rrq.extend_from_slice(b"\0octet\0");
    let transfer = async {
        let mut out = Vec::new();
        let mut last = rrq.clone();
        let mut to = server;
        let mut tid: Option<SocketAddr> = None;
        let mut want: u16 = 1;
        let mut buf = vec![0u8; 516 + 4];
        socket.send_to(&last, to).await.map_err(io)?;
        loop {
            let got = tokio::time::timeout(RESEND, socket.recv_from(&mut buf)).await;
            let (n, from) = match got {
                Err(_) => {
                    socket.send_to(&last, to).await.map_err(io)?;
                    continue;
                }
                Ok(r) => r.map_err(io)?,
            };
            if from.ip() != server.ip() || tid.is_some_and(|t| t != from) {
                continue;
            }
            match packet::parse(&buf[..n]) {
                Ok(Packet::Error { code, message }) => {
                    return Err(ReadError::Refused {
                        code,
                        message: message.chars().take(200).collect(),
                    });
                }
                Ok(Packet::Data { block, data }) if block == want => {
                    tid = Some(from);
                    to = from;
                    if out.len() + data.len() > MAX_MENU {
                        let _ = socket
                            .send_to(&packet::error(packet::ErrorCode::Undefined, "too long"), to)
                            .await;
                        return Err(ReadError::TooLong);
                    }
                    out.extend_from_slice(data);
                    last = vec![0, 4];
                    last.extend_from_slice(&block.to_be_bytes());
                    socket.send_to(&last, to).await.map_err(io)?;
                    if data.len() < 512 {
                        return Ok(out);
                    }
                    want = want.wrapping_add(1);
                }
                // A repeated block (our ACK was lost) or anything else: not an answer.
                _ => {}
            }
        }
    };
    tokio::time::timeout(limit, transfer)
        .await
        .unwrap_or(Err(ReadError::Timeout(limit)))
}

/// Where the lab's PXE server answers TFTP: `pxe.serve.address` (else the `pxe.server`
/// machine's address) and `pxe.serve.tftp_port` (else 69). `None` when no machine serves
/// network boot continuously (cloudlet serving it only during `apply`).
pub fn server(lab: &Lab) -> Option<SocketAddr> {
    let pxe = lab.pxe.as_ref()?;
    let machine = pxe.server.as_deref()?;
    let ip = pxe
        .serve
        .as_ref()
        .map(|s| s.address)
        .or_else(|| lab.machine_ip(machine))?;
    let port = pxe.serve.as_ref().map_or(69, |s| s.tftp_port);
    Some(SocketAddr::from((ip, port)))
}

/// The PXE server's boot menu read over TFTP within `limit` and compared with the lab's.
pub async fn menu(lab: &Lab, server: SocketAddr, limit: Duration) -> Finding {
    let subject = format!("boot menu on {server}");
    let want = crate::render::pxelinux_menu(lab);
    match read(server, MENU, limit).await {
        Ok(got) if got == want.as_bytes() => Finding::ok(
            "pxe.serve",
            D,
            subject,
            format!("{MENU} read over TFTP: {} bytes, as the lab renders it", got.len()),
        ),
        Ok(got) => Finding::new(
            "pxe.serve",
            D,
            subject,
            Status::Warn,
            format!(
                "{MENU} read over TFTP is not the lab's menu ({} bytes served, {} rendered)",
                got.len(),
                want.len()
            ),
        )
        .fix("the boot service runs an older lab: restart `cloudlet boot` with this one"),
        Err(e) => Finding::new(
            "pxe.serve",
            D,
            subject,
            Status::Fail,
            format!("{MENU} over TFTP: {e}"),
        )
        .fix(match e {
            ReadError::Refused { .. } => {
                "the TFTP server there is not cloudlet's boot service: run `cloudlet boot` on the PXE server"
            }
            _ => {
                "start the boot service on the PXE server (`cloudlet boot`) and let UDP port 69 through to it"
            }
        }),
    }
}
