//! proxyDHCP (PXE spec 2.1, RFC 4578): answers network-boot clients next to the router's DHCP
//! server, never handing out addresses.
//!
//! [`respond`] is the whole decision as a pure function over parsed packets (the server loop
//! only moves bytes): it answers only clients whose class identifier (option 60) starts with
//! `PXEClient` or `HTTPClient`, picks the boot program by architecture (option 93; 7 and 9
//! both mean x86-64 UEFI because firmware swaps them), and chains iPXE to an HTTP script only
//! when iPXE says it speaks HTTP (user class `iPXE` and feature 0x13 in option 175). A reply
//! sets yiaddr to 0, siaddr/sname/file and options 54, 60, 66, 67, 97 (echoed) and, for PXE
//! clients, option 43 with "boot the file, skip discovery" — both the port-67 and the
//! port-4011 exchanges are served. With [`ProxyOffer::Port4011`] the port-67 offer to a PXE
//! client names only this server (no file, no option 43), so the firmware asks again on
//! port 4011 and gets its file there.

use std::collections::HashSet;
use std::net::Ipv4Addr;

pub use cloudlet_core::model::ProxyOffer;
use dhcproto::v4::{DhcpOption, DhcpOptions, Message, MessageType, Opcode, OptionCode};

/// Why a datagram is not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a BOOTP header with the DHCP magic cookie.
    Short,
    /// An option's length does not fit it, or the option area is cut off.
    BadOption(u8),
    /// Option overload (52): options in sname/file, which PXE clients never use.
    Overload,
    /// The decoder refused it.
    Decode(String),
}

/// Decodes a DHCP datagram, after checking the option area first: dhcproto asserts (in debug
/// builds) on some fixed-length options, which a hostile packet must not reach (found by the
/// `dhcp_packet` fuzz target).
pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
    use dhcproto::{Decodable, Decoder};
    if buf.len() < 240 || buf[236..240] != [99, 130, 83, 99] {
        return Err(DecodeError::Short);
    }
    let mut i = 240;
    while i < buf.len() {
        let code = buf[i];
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = usize::from(*buf.get(i + 1).ok_or(DecodeError::BadOption(code))?);
        if i + 2 + len > buf.len() {
            return Err(DecodeError::BadOption(code));
        }
        let ok = match code {
            52 => return Err(DecodeError::Overload),
            80 => len == 0,
            81 => len >= 3,
            94 => len == 3,
            152..=155 => len == 4,
            _ => true,
        };
        if !ok {
            return Err(DecodeError::BadOption(code));
        }
        i += 2 + len;
    }
    Message::decode(&mut Decoder::new(buf)).map_err(|e| DecodeError::Decode(e.to_string()))
}

/// Client architectures (option 93) cloudlet distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Legacy BIOS (0).
    Bios,
    /// x86-64 UEFI (7, and 9 which firmware sends for the same thing).
    EfiX64,
    /// 32-bit x86 UEFI (6).
    EfiIa32,
    /// ARM64 UEFI (11).
    EfiArm64,
    /// UEFI HTTP boot, x86-64 (16).
    HttpBootX64,
    /// UEFI HTTP boot, ARM64 (19).
    HttpBootArm64,
    /// Anything else.
    Other(u16),
}

impl From<u16> for Arch {
    fn from(v: u16) -> Self {
        match v {
            0 => Arch::Bios,
            6 => Arch::EfiIa32,
            7 | 9 => Arch::EfiX64,
            11 => Arch::EfiArm64,
            16 => Arch::HttpBootX64,
            19 => Arch::HttpBootArm64,
            n => Arch::Other(n),
        }
    }
}

/// What to hand out.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This server's address on the boot segment (option 54, siaddr, option 66).
    pub server: Ipv4Addr,
    /// Boot file for BIOS clients (TFTP), e.g. `pxelinux.0` or `undionly.kpxe`.
    pub bios: String,
    /// Boot file for x86-64 UEFI clients (TFTP), e.g. `ipxe.efi`.
    pub efi_x64: String,
    /// Boot file for ARM64 UEFI clients (TFTP).
    pub efi_arm64: Option<String>,
    /// URL of the iPXE script, for iPXE clients that speak HTTP; `{mac}` in it becomes the
    /// client's MAC with hyphens (`52-54-00-12-34-56`), so each machine gets its own script
    /// without one more round trip. `None`: iPXE clients are treated like any PXE client
    /// (they get the BIOS/UEFI boot file, e.g. pxelinux over TFTP).
    pub ipxe_script: Option<String>,
    /// URL of the boot program for x86-64 UEFI HTTP boot clients.
    pub http_boot: Option<String>,
    /// URL of the boot program for ARM64 UEFI HTTP boot clients.
    pub http_boot_arm64: Option<String>,
    /// Only these MACs get an answer (the lab's machines); `None` answers every PXE client.
    pub known: Option<HashSet<[u8; 6]>>,
    /// What the offer on port 67 carries for PXE clients (HTTP boot clients always get
    /// their URL in it: they have no second exchange).
    pub offer: ProxyOffer,
}

/// The boot file a request gets, and how it asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Architecture.
    pub arch: Arch,
    /// Whether the client is iPXE with HTTP.
    pub ipxe_http: bool,
    /// The boot file name or URL.
    pub file: String,
}

fn class(msg: &Message) -> Option<&[u8]> {
    match msg.opts().get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => Some(v.as_slice()),
        _ => None,
    }
}

/// Whether iPXE announced HTTP support: user class `iPXE` and feature 0x13 in option 175.
fn ipxe_with_http(msg: &Message) -> bool {
    let is_ipxe = match msg.opts().get(OptionCode::UserClass) {
        // RFC 3004 user class data may be length-prefixed; iPXE sends the bare string.
        Some(DhcpOption::UserClass(v)) => v.windows(4).any(|w| w == b"iPXE"),
        _ => false,
    };
    if !is_ipxe {
        return false;
    }
    let Some(DhcpOption::Unknown(opt)) = msg.opts().get(OptionCode::Unknown(175)) else {
        return false;
    };
    let data = opt.data();
    let mut i = 0;
    while i + 1 < data.len() {
        let (code, len) = (data[i], usize::from(data[i + 1]));
        if code == 0x13 {
            return true;
        }
        i += 2 + len;
    }
    false
}

/// A MAC as `52-54-00-12-34-56` (the first six bytes of `chaddr`).
pub fn hyphenated(chaddr: &[u8]) -> String {
    chaddr
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join("-")
}

/// Decides what a request gets, or `None` when it is not ours to answer.
pub fn decide(msg: &Message, cfg: &ProxyConfig) -> Option<Decision> {
    if msg.opcode() != Opcode::BootRequest {
        return None;
    }
    let class = class(msg)?;
    let http_client = class.starts_with(b"HTTPClient");
    if !class.starts_with(b"PXEClient") && !http_client {
        return None;
    }
    if let Some(known) = &cfg.known {
        let mac: [u8; 6] = msg.chaddr().get(..6)?.try_into().ok()?;
        if !known.contains(&mac) {
            return None;
        }
    }
    let arch = match msg.opts().get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Arch::from(u16::from(*a)),
        _ => Arch::Bios,
    };
    let ipxe_http = ipxe_with_http(msg) && cfg.ipxe_script.is_some();
    let file = if let (true, Some(script)) = (ipxe_http, &cfg.ipxe_script) {
        script.replace("{mac}", &hyphenated(msg.chaddr()))
    } else if http_client || matches!(arch, Arch::HttpBootX64 | Arch::HttpBootArm64) {
        match arch {
            Arch::HttpBootArm64 | Arch::EfiArm64 => cfg.http_boot_arm64.clone()?,
            _ => cfg.http_boot.clone()?,
        }
    } else {
        match arch {
            Arch::Bios => cfg.bios.clone(),
            Arch::EfiX64 => cfg.efi_x64.clone(),
            Arch::EfiArm64 => cfg.efi_arm64.clone()?,
            _ => return None,
        }
    };
    Some(Decision {
        arch,
        ipxe_http,
        file,
    })
}

/// The reply to a request: an OFFER to a DISCOVER on port 67, an ACK to a REQUEST on port
/// 4011 (or to an INFORM). `None` when the request is not ours to answer.
pub fn respond(msg: &Message, cfg: &ProxyConfig) -> Option<Message> {
    let reply_type = match msg.opts().msg_type()? {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request | MessageType::Inform => MessageType::Ack,
        _ => return None,
    };
    let d = decide(msg, cfg)?;
    let mut r = Message::new_with_id(
        msg.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        cfg.server,
        msg.giaddr(),
        msg.chaddr()
            .get(..usize::from(msg.hlen().min(16)))
            .unwrap_or(&[]),
    );
    r.set_opcode(Opcode::BootReply);
    r.set_flags(msg.flags());
    r.set_sname_str(cfg.server.to_string());
    let http = class(msg).is_some_and(|c| c.starts_with(b"HTTPClient"));
    // The offer that only names this server: no file and no option 43 make a "BINL" offer,
    // after which PXE firmware asks siaddr on port 4011 for its file.
    let server_only =
        !http && reply_type == MessageType::Offer && cfg.offer == ProxyOffer::Port4011;
    if !server_only {
        r.set_fname_str(&d.file);
    }
    let mut opts = DhcpOptions::new();
    opts.insert(DhcpOption::MessageType(reply_type));
    opts.insert(DhcpOption::ServerIdentifier(cfg.server));
    opts.insert(DhcpOption::ClassIdentifier(if http {
        b"HTTPClient".to_vec()
    } else {
        b"PXEClient".to_vec()
    }));
    if !http && !server_only {
        // PXE discovery control (sub-option 6) = 8: boot the file in this reply, no discovery.
        opts.insert(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
    }
    opts.insert(DhcpOption::TFTPServerName(
        cfg.server.to_string().into_bytes(),
    ));
    if !server_only {
        opts.insert(DhcpOption::BootfileName(d.file.into_bytes()));
    }
    if let Some(DhcpOption::ClientMachineIdentifier(uuid)) =
        msg.opts().get(OptionCode::ClientMachineIdentifier)
    {
        opts.insert(DhcpOption::ClientMachineIdentifier(uuid.clone()));
    }
    r.set_opts(opts);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::Architecture;
    use dhcproto::{Encodable, Encoder};

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn cfg() -> ProxyConfig {
        ProxyConfig {
            server: Ipv4Addr::new(10, 0, 10, 20),
            bios: "undionly.kpxe".into(),
            efi_x64: "ipxe.efi".into(),
            efi_arm64: None,
            ipxe_script: Some("http://10.0.10.20/ipxe/{mac}".into()),
            http_boot: Some("http://10.0.10.20/ipxe.efi".into()),
            http_boot_arm64: Some("http://10.0.10.20/ipxe-arm64.efi".into()),
            known: Some(HashSet::from([MAC])),
            offer: ProxyOffer::BootFile,
        }
    }

    fn discover(class: &[u8], arch: Option<u16>, extra: Vec<DhcpOption>) -> Message {
        let mut m = Message::new_with_id(
            0xdead_beef,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &MAC,
        );
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Discover));
        m.opts_mut()
            .insert(DhcpOption::ClassIdentifier(class.to_vec()));
        if let Some(a) = arch {
            m.opts_mut()
                .insert(DhcpOption::ClientSystemArchitecture(Architecture::from(a)));
        }
        m.opts_mut()
            .insert(DhcpOption::ClientMachineIdentifier(vec![0; 17]));
        for o in extra {
            m.opts_mut().insert(o);
        }
        m
    }

    fn wire(m: &Message) -> Message {
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        decode(&buf).unwrap()
    }

    #[test]
    fn hostile_option_lengths_are_refused_before_decoding() {
        let mut buf = Vec::new();
        discover(b"PXEClient", Some(0), vec![])
            .encode(&mut Encoder::new(&mut buf))
            .unwrap();
        let end = buf.iter().rposition(|&b| b == 255).unwrap();
        let mut bad = buf[..end].to_vec();
        bad.extend_from_slice(&[155, 2, 0, 0, 255]); // BLQ end time must be 4 bytes
        assert_eq!(decode(&bad).unwrap_err(), DecodeError::BadOption(155));
        let mut cut = buf[..end].to_vec();
        cut.extend_from_slice(&[60, 40, b'P']);
        assert_eq!(decode(&cut).unwrap_err(), DecodeError::BadOption(60));
        assert_eq!(decode(&buf[..100]).unwrap_err(), DecodeError::Short);
    }

    #[test]
    fn bios_and_uefi_get_their_tftp_boot_file() {
        let r = respond(
            &wire(&discover(
                b"PXEClient:Arch:00000:UNDI:002001",
                Some(0),
                vec![],
            )),
            &cfg(),
        )
        .unwrap();
        let r = wire(&r);
        assert_eq!(r.opcode(), Opcode::BootReply);
        assert_eq!(r.xid(), 0xdead_beef);
        assert_eq!(
            r.yiaddr(),
            Ipv4Addr::UNSPECIFIED,
            "proxyDHCP never hands out addresses"
        );
        assert_eq!(r.siaddr(), Ipv4Addr::new(10, 0, 10, 20));
        assert_eq!(r.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(
            r.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(b"undionly.kpxe".to_vec()))
        );
        assert_eq!(
            r.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
        );
        assert_eq!(
            r.opts().get(OptionCode::VendorExtensions),
            Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
        );
        assert!(
            r.opts().get(OptionCode::ClientMachineIdentifier).is_some(),
            "option 97 is echoed"
        );
        for arch in [7, 9] {
            let r = respond(
                &discover(b"PXEClient:Arch:00007", Some(arch), vec![]),
                &cfg(),
            )
            .unwrap();
            assert_eq!(
                r.opts().get(OptionCode::BootfileName),
                Some(&DhcpOption::BootfileName(b"ipxe.efi".to_vec())),
                "arch {arch}"
            );
        }
    }

    #[test]
    fn the_port4011_offer_names_only_the_server_and_4011_gives_the_file() {
        let cfg = ProxyConfig {
            offer: ProxyOffer::Port4011,
            ..cfg()
        };
        let offer = wire(&respond(&wire(&discover(b"PXEClient", Some(7), vec![])), &cfg).unwrap());
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            offer.siaddr(),
            Ipv4Addr::new(10, 0, 10, 20),
            "the server to ask"
        );
        let fname = |m: &Message| {
            let f = m.fname().unwrap_or_default();
            f[..f.iter().position(|&b| b == 0).unwrap_or(f.len())].to_vec()
        };
        assert!(fname(&offer).is_empty(), "{:?}", offer.fname());
        assert!(offer.opts().get(OptionCode::BootfileName).is_none());
        assert!(
            offer.opts().get(OptionCode::VendorExtensions).is_none(),
            "no option 43: a BINL offer, so the firmware asks on 4011"
        );
        assert_eq!(
            offer.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
        );
        let mut req = discover(b"PXEClient", Some(7), vec![]);
        req.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Request));
        let ack = wire(&respond(&wire(&req), &cfg).unwrap());
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(
            ack.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(b"ipxe.efi".to_vec()))
        );
        assert_eq!(fname(&ack), b"ipxe.efi");
        assert_eq!(
            ack.opts().get(OptionCode::VendorExtensions),
            Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
        );
        // HTTP boot has no second exchange: its URL is in the offer whatever the mode.
        let http = respond(&discover(b"HTTPClient", Some(16), vec![]), &cfg).unwrap();
        assert_eq!(
            http.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(
                b"http://10.0.10.20/ipxe.efi".to_vec()
            ))
        );
    }

    #[test]
    fn ipxe_with_http_is_chained_to_the_script_and_without_http_is_not() {
        let feats = DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
            OptionCode::Unknown(175),
            vec![0x13, 1, 1, 0x10, 1, 2],
        ));
        let ipxe = vec![DhcpOption::UserClass(b"iPXE".to_vec()), feats];
        let r = respond(
            &discover(b"PXEClient:Arch:00000", Some(0), ipxe.clone()),
            &cfg(),
        )
        .unwrap();
        assert_eq!(
            r.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(
                b"http://10.0.10.20/ipxe/52-54-00-12-34-56".to_vec()
            )),
            "each machine's own script"
        );
        // Without a script (the pxelinux path) iPXE gets the BIOS boot file like any PXE ROM.
        let pxelinux = ProxyConfig {
            ipxe_script: None,
            bios: "pxelinux.0".into(),
            ..cfg()
        };
        let r = respond(&discover(b"PXEClient", Some(0), ipxe), &pxelinux).unwrap();
        assert_eq!(
            r.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(b"pxelinux.0".to_vec()))
        );
        let no_http = DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
            OptionCode::Unknown(175),
            vec![0x10, 1, 2],
        ));
        let r = respond(
            &discover(
                b"PXEClient",
                Some(0),
                vec![DhcpOption::UserClass(b"iPXE".to_vec()), no_http],
            ),
            &cfg(),
        )
        .unwrap();
        assert_eq!(
            r.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(b"undionly.kpxe".to_vec()))
        );
    }

    #[test]
    fn http_boot_clients_get_a_url_and_no_pxe_vendor_options() {
        let r = respond(
            &discover(b"HTTPClient:Arch:00016", Some(16), vec![]),
            &cfg(),
        )
        .unwrap();
        assert_eq!(
            r.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
        );
        assert_eq!(
            r.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(
                b"http://10.0.10.20/ipxe.efi".to_vec()
            ))
        );
        assert!(r.opts().get(OptionCode::VendorExtensions).is_none());
        // ARM64 HTTP boot firmware gets the ARM64 program, never the x86-64 one.
        let r = respond(
            &discover(b"HTTPClient:Arch:00019", Some(19), vec![]),
            &cfg(),
        )
        .unwrap();
        assert_eq!(
            r.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(
                b"http://10.0.10.20/ipxe-arm64.efi".to_vec()
            ))
        );
    }

    #[test]
    fn others_are_not_answered() {
        assert!(
            respond(&discover(b"MSFT 5.0", None, vec![]), &cfg()).is_none(),
            "not a PXE client"
        );
        let mut stranger = discover(b"PXEClient", Some(0), vec![]);
        stranger.set_chaddr(&[2, 0, 0, 0, 0, 1]);
        assert!(
            respond(&stranger, &cfg()).is_none(),
            "not a machine of the lab"
        );
        assert!(
            respond(&discover(b"PXEClient", Some(11), vec![]), &cfg()).is_none(),
            "no ARM64 boot file configured"
        );
        let mut req = discover(b"PXEClient", Some(0), vec![]);
        req.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Request));
        assert_eq!(
            respond(&req, &cfg()).unwrap().opts().msg_type(),
            Some(MessageType::Ack),
            "port 4011 exchange"
        );
        let mut rel = discover(b"PXEClient", Some(0), vec![]);
        rel.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Release));
        assert!(respond(&rel, &cfg()).is_none());
    }
}

/// The proxyDHCP service: UDP 67 (broadcast DISCOVERs, answered by broadcast) and UDP 4011
/// (unicast REQUESTs, answered to the sender), optionally bound to one interface.
pub struct ProxyDhcpServer {
    port67: tokio::net::UdpSocket,
    port4011: tokio::net::UdpSocket,
    config: ProxyConfig,
    observer: Option<Observer>,
}

/// Called for every request the server answers.
pub type Observer = std::sync::Arc<dyn Fn(&Answered) + Send + Sync>;

/// A request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The client's MAC.
    pub mac: [u8; 6],
    /// What it got.
    pub decision: Decision,
    /// Whether it came on port 4011 (the second exchange) rather than 67.
    pub port4011: bool,
}

impl std::fmt::Debug for ProxyDhcpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyDhcpServer")
            .field("config", &self.config)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl ProxyDhcpServer {
    /// Binds both ports on all addresses of `interface` (Linux `SO_BINDTODEVICE`), or of the
    /// host when `None`. Other DHCP servers on the segment keep working: this one only answers
    /// PXE clients and never offers an address. Call it inside the tokio runtime that runs
    /// the server.
    pub fn bind(interface: Option<&str>, config: ProxyConfig) -> std::io::Result<Self> {
        let open = |port: u16| -> std::io::Result<std::net::UdpSocket> {
            use socket2::{Domain, Protocol, Socket, Type};
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_address(true)?;
            s.set_broadcast(true)?;
            if let Some(dev) = interface {
                s.bind_device(Some(dev.as_bytes()))?;
            }
            s.set_nonblocking(true)?;
            s.bind(&std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
            Ok(s.into())
        };
        Ok(ProxyDhcpServer {
            port67: tokio::net::UdpSocket::from_std(open(67)?)?,
            port4011: tokio::net::UdpSocket::from_std(open(4011)?)?,
            config,
            observer: None,
        })
    }

    /// Calls `observer` for every request answered (it must not block).
    #[must_use]
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Answers until `shutdown` completes. Returns how many replies were sent.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<u64> {
        use dhcproto::{Encodable, Encoder};
        let mut sent = 0u64;
        let (mut b67, mut b4011) = (vec![0u8; 1500], vec![0u8; 1500]);
        tokio::pin!(shutdown);
        loop {
            let (n, peer, on4011) = tokio::select! {
                () = &mut shutdown => return Ok(sent),
                r = self.port67.recv_from(&mut b67) => { let (n, p) = r?; (n, p, false) }
                r = self.port4011.recv_from(&mut b4011) => { let (n, p) = r?; (n, p, true) }
            };
            let buf = if on4011 { &b4011[..n] } else { &b67[..n] };
            let msg = match decode(buf) {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(%peer, error = ?e, "ignoring a datagram that is not DHCP");
                    continue;
                }
            };
            let Some(reply) = respond(&msg, &self.config) else {
                continue;
            };
            if let (Some(obs), Some(decision), Some(mac)) = (
                &self.observer,
                decide(&msg, &self.config),
                msg.chaddr()
                    .get(..6)
                    .and_then(|m| <[u8; 6]>::try_from(m).ok()),
            ) {
                obs(&Answered {
                    mac,
                    decision,
                    port4011: on4011,
                });
            }
            let mut out = Vec::with_capacity(600);
            if reply.encode(&mut Encoder::new(&mut out)).is_err() {
                continue;
            }
            let r = if on4011 {
                self.port4011.send_to(&out, peer).await
            } else if msg.giaddr() != Ipv4Addr::UNSPECIFIED {
                self.port67.send_to(&out, (msg.giaddr(), 67)).await
            } else {
                // The client has no address yet: broadcast to the client port.
                self.port67.send_to(&out, (Ipv4Addr::BROADCAST, 68)).await
            };
            match r {
                Ok(_) => sent += 1,
                Err(e) => tracing::warn!(%peer, error = %e, "proxyDHCP reply failed"),
            }
        }
    }
}
