//! The network boot service of a lab: proxyDHCP, TFTP and HTTP over one shared install state.
//!
//! A machine of the lab that powers on with network boot
//! 1. is answered by proxyDHCP (only PXE/HTTP boot clients with the lab's MACs; the router's
//!    DHCP server keeps handing out addresses) and recorded as `discovered`;
//! 2. gets its boot program: iPXE with HTTP is sent to its own script (`/ipxe/<mac>`), other
//!    PXE ROMs get the BIOS or UEFI boot file over TFTP (pxelinux or GRUB), which asks for its
//!    per-MAC config (`pxelinux.cfg/01-<mac>`, `grub/grub.cfg-01-<mac>`);
//! 3. that script or config is rendered for this boot: kernel, initrd and a command line whose
//!    install config URL carries a fresh per-boot token — or "boot from local disk" once the
//!    machine is installed;
//! 4. its installer fetches the install config, served only under that token, only to the
//!    address the boot came from, within the install window (`installing`);
//! 5. it POSTs to its callback URL: `installed` (every later boot gets the local disk) or
//!    `failed ...`.
//!
//! Every step is an [`Event`]; the state is persisted (see [`crate::install`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cloudlet_core::model::{Lab, Machine, Profile};
use serde::Serialize;

use crate::http::{self, Handler, HttpServer, Reply};
use crate::install::{BootAnswer, InstallError, Installs, Windows};
use crate::proxy_dhcp::{ProxyConfig, ProxyDhcpServer};
use crate::render::{self, BootServer};
use crate::tftp::{Dynamic, Namespace, TftpConfig, TftpServer};

/// How iPXE clients boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Loader {
    /// iPXE with HTTP gets its own script over HTTP (kernel and initrd over HTTP).
    Ipxe,
    /// Every client gets the TFTP boot file (pxelinux / GRUB) and its per-MAC config.
    Pxelinux,
}

/// Where and how the boot service runs.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// The service's address on the boot segment (proxyDHCP's server id, TFTP, HTTP).
    pub address: Ipv4Addr,
    /// The interface of the boot segment (proxyDHCP binds to it); `None`: every interface.
    pub interface: Option<String>,
    /// Whether to run proxyDHCP (off when the router's DHCP server points at this service).
    pub proxy_dhcp: bool,
    /// What proxyDHCP's offer on port 67 carries.
    pub proxy_offer: crate::proxy_dhcp::ProxyOffer,
    /// HTTP port.
    pub http_port: u16,
    /// TFTP port.
    pub tftp_port: u16,
    /// How iPXE clients boot.
    pub loader: Loader,
    /// Boot files: boot programs, kernels and initrds (read-only, never walked).
    pub root: PathBuf,
    /// Where the install state is kept.
    pub state_dir: PathBuf,
    /// The directory relative `password_from` files are read from (the lab's).
    pub secrets_dir: PathBuf,
    /// Boot file for BIOS PXE ROMs.
    pub bios_file: String,
    /// Boot file for x86-64 UEFI PXE ROMs.
    pub efi_file: String,
    /// Boot file for ARM64 UEFI PXE ROMs.
    pub efi_arm64_file: String,
    /// Phase windows.
    pub windows: Windows,
    /// TFTP limits.
    pub tftp: TftpConfig,
    /// HTTP limits.
    pub http: http::Limits,
}

impl BootConfig {
    /// Defaults: proxyDHCP on, HTTP 80, TFTP 69, iPXE over HTTP, `pxelinux.0` for BIOS ROMs,
    /// `grubnetx64.efi` for x86-64 UEFI ones and `grubnetaa64.efi` for ARM64 UEFI ones
    /// (Debian's signed GRUB network images; UEFI HTTP boot gets the same files over HTTP).
    pub fn new(address: Ipv4Addr, root: PathBuf, state_dir: PathBuf) -> BootConfig {
        BootConfig {
            address,
            interface: None,
            proxy_dhcp: true,
            proxy_offer: crate::proxy_dhcp::ProxyOffer::BootFile,
            http_port: 80,
            tftp_port: 69,
            loader: Loader::Ipxe,
            root,
            state_dir,
            secrets_dir: PathBuf::from("."),
            bios_file: "pxelinux.0".into(),
            efi_file: "grubnetx64.efi".into(),
            efi_arm64_file: "grubnetaa64.efi".into(),
            windows: Windows::default(),
            tftp: TftpConfig::default(),
            http: http::Limits::default(),
        }
    }

    fn base_url(&self, port: u16) -> String {
        if port == 80 {
            format!("http://{}", self.address)
        } else {
            format!("http://{}:{port}", self.address)
        }
    }
}

/// Something the boot service did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// proxyDHCP answered a machine.
    Dhcp {
        /// The machine.
        machine: String,
        /// The boot file or script URL it got.
        file: String,
        /// Whether it asked on port 4011 (the second exchange UEFI firmware makes).
        port4011: bool,
    },
    /// A machine's boot program asked what to boot.
    Boot {
        /// The machine.
        machine: String,
        /// `install` or `local_disk`.
        answer: &'static str,
        /// `ipxe`, `pxelinux` or `grub`.
        via: &'static str,
    },
    /// A machine fetched its install config.
    Config {
        /// The machine.
        machine: String,
        /// The file (`config`, `user-data`, `meta-data`, `vendor-data`).
        file: String,
    },
    /// A request for an install config or a report was refused.
    Refused {
        /// The machine named in the request.
        machine: String,
        /// The client.
        peer: IpAddr,
        /// Why.
        why: String,
    },
    /// A machine reported the end of its install.
    Reported {
        /// The machine.
        machine: String,
        /// Whether it is installed.
        ok: bool,
        /// What it said besides.
        note: Option<String>,
    },
}

struct Target {
    name: String,
    machine: Machine,
    profile: Profile,
    /// The address the lab gives its boot NIC (its DHCP reservation), if any.
    address: Option<IpAddr>,
}

struct Shared {
    lab: Lab,
    server: BootServer,
    proxy_dhcp: bool,
    installs: Mutex<Installs>,
    by_mac: HashMap<String, Target>,
    events: tokio::sync::broadcast::Sender<Event>,
}

fn now() -> u64 {
    cloudlet_core::store::now_ms() / 1000
}

/// `52-54-00-12-34-56` from `01-52-54-00-12-34-56` or `52:54:00:12:34:56`, lower case.
fn mac_key(s: &str) -> Option<String> {
    let s = s.strip_prefix("01-").unwrap_or(s);
    let hex: Vec<&str> = s.split(['-', ':']).collect();
    (hex.len() == 6
        && hex
            .iter()
            .all(|h| h.len() == 2 && h.bytes().all(|b| b.is_ascii_hexdigit())))
    .then(|| hex.join("-").to_ascii_lowercase())
}

/// The machines of a lab that install over the network, by MAC (`aa-bb-...`).
fn targets(lab: &Lab) -> HashMap<String, Target> {
    crate::network_installs(lab)
        .into_iter()
        .filter_map(|n| {
            let key = mac_key(&n.mac(lab))?;
            Some((
                key,
                Target {
                    name: n.name.to_string(),
                    machine: n.machine.clone(),
                    profile: n.profile.clone(),
                    address: n.nic.ip.map(IpAddr::V4),
                },
            ))
        })
        .collect()
}

impl Shared {
    fn emit(&self, e: Event) {
        tracing::info!(event = ?e, "boot service");
        let _ = self.events.send(e);
    }

    fn installs(&self) -> std::sync::MutexGuard<'_, Installs> {
        // A panic while holding the lock leaves a consistent map (every change is one
        // assignment followed by a save): keep serving.
        self.installs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the machine with `mac` boots now, asked from `peer`.
    fn boot(&self, mac: &str, peer: IpAddr, via: &'static str) -> Option<(&Target, BootAnswer)> {
        let t = self.by_mac.get(mac)?;
        let mut installs = self.installs();
        if !self.proxy_dhcp && !installs.machines().contains_key(&t.name) {
            // Without our proxyDHCP the router's DHCP sent it here: its first request is
            // its discovery.
            if let Err(e) = installs.discovered(&t.name, mac, now()) {
                tracing::warn!(error = %e, "install state not written");
            }
        }
        let answer = match installs.boot(&t.name, peer, t.address, now()) {
            Ok(a) => a,
            Err(e) => {
                drop(installs);
                self.emit(Event::Refused {
                    machine: t.name.clone(),
                    peer,
                    why: e.to_string(),
                });
                return None;
            }
        };
        drop(installs);
        self.emit(Event::Boot {
            machine: t.name.clone(),
            answer: match answer {
                BootAnswer::Install { .. } => "install",
                BootAnswer::LocalDisk => "local_disk",
            },
            via,
        });
        Some((t, answer))
    }

    fn target_by_name(&self, name: &str) -> Option<&Target> {
        self.by_mac.values().find(|t| t.name == name)
    }

    fn install_file(
        &self,
        req: &http::Request,
        name: &str,
        token: &str,
        file: &str,
        post: bool,
    ) -> Reply {
        let peer = req.peer.ip();
        let Some(t) = self.target_by_name(name) else {
            return Reply::not_found(format!("no machine `{name}` installs here"));
        };
        let refuse = |e: InstallError| {
            self.emit(Event::Refused {
                machine: name.to_string(),
                peer,
                why: e.to_string(),
            });
            Reply::forbidden(e.to_string())
        };
        let server = self.server.with_token(token);
        match (post, file) {
            (false, "config" | "user-data") => {
                if let Err(e) = self.installs().config_fetched(name, token, peer, now()) {
                    return refuse(e);
                }
                self.emit(Event::Config {
                    machine: name.to_string(),
                    file: file.to_string(),
                });
                Reply::ok(
                    "text/plain",
                    render::install_config(&self.lab, name, &t.machine, &t.profile, Some(&server)),
                )
            }
            (false, "meta-data" | "vendor-data") => {
                if !self.installs().valid(name, token, peer, now()) {
                    return refuse(InstallError::BadToken(name.to_string()));
                }
                self.emit(Event::Config {
                    machine: name.to_string(),
                    file: file.to_string(),
                });
                // cloud-init asks for both; vendor-data is optional and served empty.
                let body = if file == "meta-data" {
                    render::meta_data(name)
                } else {
                    String::new()
                };
                Reply::ok("text/plain", body)
            }
            (true, "done") => {
                let said = String::from_utf8_lossy(&req.body).trim().to_string();
                let ok = !said.starts_with("failed");
                // `installed hostkey=TYPE:BASE64 ...`: the host key is kept apart, the rest
                // is the note.
                let host_key = said
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("hostkey="))
                    .and_then(crate::install::parse_host_key);
                let rest: Vec<&str> = said
                    .split_whitespace()
                    .filter(|w| !w.starts_with("hostkey="))
                    .collect();
                let rest = rest.join(" ");
                let note = match rest.as_str() {
                    "" | "installed" => None,
                    _ => Some(rest.chars().take(500).collect::<String>()),
                };
                if let Err(e) =
                    self.installs()
                        .report(name, token, peer, ok, note.clone(), host_key, now())
                {
                    return refuse(e);
                }
                self.emit(Event::Reported {
                    machine: name.to_string(),
                    ok,
                    note,
                });
                Reply::ok("text/plain", "recorded\n".into())
            }
            _ => Reply::not_found(format!("no install file `{file}`")),
        }
    }

    /// The per-MAC boot configs of pxelinux and GRUB, rendered for this boot, and GRUB's
    /// dispatcher to them.
    fn boot_config(&self, name: &str, peer: IpAddr) -> Option<Arc<[u8]>> {
        if let Some(mac) = name.strip_prefix("pxelinux.cfg/").and_then(mac_key) {
            let (t, answer) = self.boot(&mac, peer, "pxelinux")?;
            let text = match answer {
                BootAnswer::Install { token } => render::pxelinux_machine(
                    &self.lab,
                    &t.name,
                    &t.profile,
                    Some(&self.server.with_token(&token)),
                ),
                BootAnswer::LocalDisk => render::pxelinux_local(),
            };
            return Some(Arc::from(text.into_bytes()));
        }
        if name == "grub/grub.cfg" {
            return Some(Arc::from(render::grub_dispatch().into_bytes()));
        }
        if let Some(mac) = name.strip_prefix("grub/grub.cfg-").and_then(mac_key) {
            let (t, answer) = self.boot(&mac, peer, "grub")?;
            let text = match answer {
                BootAnswer::Install { token } => render::grub_machine(
                    &self.lab,
                    &t.name,
                    &t.profile,
                    &self.server.with_token(&token),
                ),
                BootAnswer::LocalDisk => render::grub_local(),
            };
            return Some(Arc::from(text.into_bytes()));
        }
        None
    }
}

/// What an HTTP request of the boot service asks for, from its method and path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET /install/MACHINE/TOKEN/FILE` or `POST .../done`.
    Install {
        /// The machine named.
        machine: &'a str,
        /// The token presented.
        token: &'a str,
        /// `config`, `user-data`, `meta-data`, `vendor-data` or `done`.
        file: &'a str,
        /// Whether it is the callback (POST).
        post: bool,
    },
    /// `GET /boot.ipxe`: the chain to each machine's own script.
    Chain,
    /// `GET /ipxe/MAC`: a machine's script (`MAC` normalized to `aa-bb-...`).
    Script(String),
    /// A file of the namespace (`/boot/NAME` or `/NAME`).
    File(&'a str),
    /// Nothing served here, and why.
    NotFound(&'static str),
}

/// Routes a request. Install paths must have exactly three segments; a machine name or token
/// with anything but letters, digits and `-` is refused here, before any lookup.
pub fn route(post: bool, path: &str) -> Route<'_> {
    let path = path.strip_prefix('/').unwrap_or(path);
    if let Some(rest) = path.strip_prefix("install/") {
        let parts: Vec<&str> = rest.split('/').collect();
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        return match parts.as_slice() {
            [machine, token, file] if plain(machine) && plain(token) => {
                let served = if post {
                    *file == "done"
                } else {
                    matches!(*file, "config" | "user-data" | "meta-data" | "vendor-data")
                };
                if served {
                    Route::Install {
                        machine,
                        token,
                        file,
                        post,
                    }
                } else {
                    Route::NotFound(
                        "install files are config, user-data, meta-data, vendor-data; POST done",
                    )
                }
            }
            _ => Route::NotFound("install files are /install/MACHINE/TOKEN/FILE"),
        };
    }
    if post {
        return Route::NotFound("only install callbacks are posted");
    }
    if path == "boot.ipxe" {
        return Route::Chain;
    }
    if let Some(mac) = path.strip_prefix("ipxe/") {
        return mac_key(mac).map_or(Route::NotFound("scripts are /ipxe/MAC"), Route::Script);
    }
    Route::File(path.strip_prefix("boot/").unwrap_or(path))
}

struct Files {
    shared: Arc<Shared>,
}

impl Dynamic for Files {
    fn open(&self, name: &str, peer: IpAddr) -> Option<Arc<[u8]>> {
        self.shared.boot_config(name, peer)
    }
}

struct Web {
    shared: Arc<Shared>,
    namespace: Namespace,
}

impl Handler for Web {
    fn handle(&self, req: &http::Request) -> Reply {
        let s = &self.shared;
        match route(req.method == hyper::Method::POST, &req.path) {
            Route::Install {
                machine,
                token,
                file,
                post,
            } => s.install_file(req, machine, token, file, post),
            Route::Chain => Reply::ok("text/plain", render::ipxe_chain(&s.server)),
            Route::Script(mac) => match s.boot(&mac, req.peer.ip(), "ipxe") {
                Some((t, BootAnswer::Install { token })) => Reply::ok(
                    "text/plain",
                    render::ipxe_machine(&s.lab, &t.name, &t.profile, &s.server.with_token(&token)),
                ),
                Some((_, BootAnswer::LocalDisk)) => Reply::ok("text/plain", render::ipxe_local()),
                None => Reply::not_found("no machine of this lab boots with that MAC here"),
            },
            // Kernels and initrds under /boot/, boot programs and per-MAC configs by name.
            Route::File(name) => match self.namespace.open_for(name, Some(req.peer.ip())) {
                Ok(src) => Reply::File(src),
                Err(crate::tftp::Refusal::NotFound) => Reply::not_found("no such file"),
                Err(crate::tftp::Refusal::Forbidden(why)) => Reply::forbidden(why),
            },
            Route::NotFound(why) => Reply::not_found(why),
        }
    }
}

/// The events of a running boot service, in order; ends when the service stops.
#[derive(Debug)]
pub struct Events(tokio::sync::broadcast::Receiver<Event>);

impl Events {
    /// The next event, or `None` once the service stopped.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.0.recv().await {
                Ok(e) => return Some(e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "boot service events dropped: the reader was slow"
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Why the boot service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A socket could not be bound.
    #[error("binding {what}: {message}")]
    Bind {
        /// Which service, on which address.
        what: String,
        /// The cause and what to do.
        message: String,
    },
    /// The boot files directory is missing.
    #[error("boot files directory {0}: {1}")]
    Root(PathBuf, std::io::Error),
    /// The install state could not be read.
    #[error(transparent)]
    State(#[from] InstallError),
    /// The service's settings are incomplete.
    #[error("{0}")]
    Config(String),
    /// The service stopped, or its sockets could not be read, while a caller still needed it.
    #[error("the boot service stopped: {0}")]
    Stopped(String),
    /// A user's password could not be read or hashed.
    #[error(transparent)]
    Password(#[from] render::PasswordError),
    /// The lab has nothing to serve.
    #[error(
        "the lab has no machine that installs over the network (boot: [network, ...] and install: PROFILE)"
    )]
    Nothing,
}

/// A bound boot service.
pub struct BootService {
    shared: Arc<Shared>,
    proxy: Option<ProxyDhcpServer>,
    tftp: TftpServer,
    http: HttpServer,
}

impl std::fmt::Debug for BootService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootService")
            .field("proxy", &self.proxy)
            .field("tftp", &self.tftp)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

/// A failed bind of `what` on `ip:port`, with what to do about it.
fn bind_error(
    what: &str,
    ip: IpAddr,
    port: u16,
) -> impl Fn(std::io::Error) -> ServiceError + use<> {
    let what = if port == 0 {
        format!("{what} on {ip}")
    } else {
        format!("{what} on {ip}:{port}")
    };
    move |e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "; ports below 1024 need root or CAP_NET_BIND_SERVICE"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "; this host has no such address: pass the host's address on the boot segment"
            }
            std::io::ErrorKind::AddrInUse => {
                "; another server (dnsmasq, tftpd, a web server) holds the port"
            }
            _ => "",
        };
        ServiceError::Bind {
            what: what.clone(),
            message: format!("{e}{hint}"),
        }
    }
}

/// A plain boot server: the files under a directory over TFTP and, unless left off, HTTP —
/// read-only, with the lab service's bounds and file rules (no `..`, absolute paths or
/// symlink escapes, regular files only) — for machines that boot without a lab to install
/// them: no proxyDHCP (the router's DHCP names this server and the file), no install state.
pub struct FileServer {
    tftp: TftpServer,
    http: Option<HttpServer>,
}

impl std::fmt::Debug for FileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileServer")
            .field("tftp", &self.tftp.local_addr().ok())
            .field(
                "http",
                &self.http.as_ref().and_then(|h| h.local_addr().ok()),
            )
            .finish()
    }
}

/// HTTP of a [`FileServer`]: `GET /NAME` (or `/boot/NAME`) from the directory.
struct Plain(Namespace);

impl Handler for Plain {
    fn handle(&self, req: &http::Request) -> Reply {
        if req.method != hyper::Method::GET && req.method != hyper::Method::HEAD {
            return Reply::not_found("files only: GET /NAME");
        }
        let path = req.path.strip_prefix('/').unwrap_or(&req.path);
        match self.0.open_for(
            path.strip_prefix("boot/").unwrap_or(path),
            Some(req.peer.ip()),
        ) {
            Ok(src) => Reply::File(src),
            Err(crate::tftp::Refusal::NotFound) => Reply::not_found("no such file"),
            Err(crate::tftp::Refusal::Forbidden(why)) => Reply::forbidden(why),
        }
    }
}

impl FileServer {
    /// Binds TFTP on `address:tftp_port` and, with `http_port`, HTTP, over `root`.
    pub async fn bind(
        address: Ipv4Addr,
        root: &std::path::Path,
        tftp_port: u16,
        http_port: Option<u16>,
        tftp: TftpConfig,
        limits: http::Limits,
    ) -> Result<FileServer, ServiceError> {
        let ip = IpAddr::V4(address);
        let namespace = Namespace::new()
            .with_root(root)
            .map_err(|e| ServiceError::Root(root.to_path_buf(), e))?;
        let tftp = TftpServer::bind(SocketAddr::new(ip, tftp_port), namespace.clone(), tftp)
            .await
            .map_err(bind_error("TFTP", ip, tftp_port))?;
        let http = match http_port {
            None => None,
            Some(port) => {
                let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, port))
                    .await
                    .map_err(bind_error("HTTP", ip, port))?;
                Some(HttpServer::from_listener(
                    listener,
                    Arc::new(Plain(namespace)),
                    limits,
                ))
            }
        };
        Ok(FileServer { tftp, http })
    }

    /// The TFTP address (with the port actually bound).
    pub fn tftp_addr(&self) -> std::io::Result<SocketAddr> {
        self.tftp.local_addr()
    }

    /// The HTTP address, when HTTP is on.
    pub fn http_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.http.as_ref().map(HttpServer::local_addr)
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
        let stop = Stop::new();
        let services = async {
            let http = async {
                match self.http {
                    Some(h) => h.run(stop.stopped()).await,
                    None => Ok(()),
                }
            };
            let (t, h) = tokio::join!(self.tftp.run(stop.stopped()), http);
            t.map(|_| ()).and(h)
        };
        stop.until(Box::pin(services), shutdown).await
    }
}

/// One stop signal for the servers of a service.
struct Stop(tokio::sync::watch::Sender<bool>);

impl Stop {
    fn new() -> Stop {
        Stop(tokio::sync::watch::channel(false).0)
    }

    /// Completes once the service stops.
    fn stopped(&self) -> impl std::future::Future<Output = ()> + use<> {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Runs `services` until they end, or until `shutdown` completes: then stops them and
    /// waits for them to finish.
    async fn until(
        &self,
        services: impl std::future::Future<Output = std::io::Result<()>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        tokio::pin!(services);
        tokio::select! {
            r = &mut services => r,
            () = shutdown => {
                let _ = self.0.send(true);
                services.await
            }
        }
    }
}

impl BootService {
    /// Binds proxyDHCP (when asked), TFTP and HTTP for `lab` and opens its install state.
    /// Call it inside the runtime that will run it.
    pub async fn bind(lab: &Lab, config: BootConfig) -> Result<BootService, ServiceError> {
        let mut by_mac = targets(lab);
        if by_mac.is_empty() {
            return Err(ServiceError::Nothing);
        }
        // `password_from` secrets are read and hashed once, here; only hashes are kept.
        for t in by_mac.values_mut() {
            t.profile = render::with_hashed_passwords(&t.profile, &config.secrets_dir)
                .map_err(ServiceError::Password)?;
        }
        let installs = Installs::open_exclusive(&config.state_dir, config.windows)?;
        let ip = IpAddr::V4(config.address);
        let bind = |what: &str, port: u16| bind_error(what, ip, port);
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, config.http_port))
            .await
            .map_err(bind("HTTP", config.http_port))?;
        let port = listener
            .local_addr()
            .map_err(bind("HTTP", config.http_port))?
            .port();
        let server = BootServer {
            base_url: config.base_url(port),
            token: None,
        };
        let (events, _) = tokio::sync::broadcast::channel(256);
        let known = by_mac
            .keys()
            .filter_map(|k| {
                let b: Vec<u8> = k
                    .split('-')
                    .filter_map(|h| u8::from_str_radix(h, 16).ok())
                    .collect();
                <[u8; 6]>::try_from(b).ok()
            })
            .collect();
        let shared = Arc::new(Shared {
            lab: lab.clone(),
            server: server.clone(),
            proxy_dhcp: config.proxy_dhcp,
            installs: Mutex::new(installs),
            by_mac,
            events,
        });
        let namespace = Namespace::new()
            .with_root(&config.root)
            .map_err(|e| ServiceError::Root(config.root.clone(), e))?
            .with_file(
                "pxelinux.cfg/default",
                render::pxelinux_menu(lab).into_bytes(),
            )
            .with_dynamic(Arc::new(Files {
                shared: shared.clone(),
            }));
        let tftp = TftpServer::bind(
            SocketAddr::new(ip, config.tftp_port),
            namespace.clone(),
            config.tftp.clone(),
        )
        .await
        .map_err(bind("TFTP", config.tftp_port))?;
        let http = HttpServer::from_listener(
            listener,
            Arc::new(Web {
                shared: shared.clone(),
                namespace,
            }),
            config.http,
        );
        let proxy = if config.proxy_dhcp {
            let cfg = ProxyConfig {
                server: config.address,
                bios: config.bios_file.clone(),
                efi_x64: config.efi_file.clone(),
                efi_arm64: Some(config.efi_arm64_file.clone()),
                ipxe_script: (config.loader == Loader::Ipxe)
                    .then(|| format!("{}/ipxe/{{mac}}", server.base_url)),
                // UEFI HTTP boot: the UEFI boot program over HTTP from the same files.
                http_boot: Some(format!("{}/boot/{}", server.base_url, config.efi_file)),
                http_boot_arm64: Some(format!(
                    "{}/boot/{}",
                    server.base_url, config.efi_arm64_file
                )),
                known: Some(known),
                offer: config.proxy_offer,
            };
            let observed = shared.clone();
            Some(
                ProxyDhcpServer::bind(config.interface.as_deref(), cfg)
                    .map_err(bind("proxyDHCP", 67))?
                    .with_observer(Arc::new(move |a| {
                        let mac = crate::proxy_dhcp::hyphenated(&a.mac);
                        let Some(t) = observed.by_mac.get(&mac) else {
                            return;
                        };
                        if let Err(e) = observed.installs().discovered(&t.name, &mac, now()) {
                            tracing::warn!(error = %e, "install state not written");
                        }
                        observed.emit(Event::Dhcp {
                            machine: t.name.clone(),
                            file: a.decision.file.clone(),
                            port4011: a.port4011,
                        });
                    })),
            )
        } else {
            None
        };
        Ok(BootService {
            shared,
            proxy,
            tftp,
            http,
        })
    }

    /// Events from now on (a slow reader misses the oldest ones, never stalls the service).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Events from now on, as a stream that skips what a slow reader missed and ends when
    /// the service stops.
    pub fn event_stream(&self) -> Events {
        Events(self.events())
    }

    /// The HTTP address (with the port actually bound).
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The TFTP address (with the port actually bound).
    pub fn tftp_addr(&self) -> std::io::Result<SocketAddr> {
        self.tftp.local_addr()
    }

    /// Every machine's install state now.
    pub fn machines(&self) -> std::collections::BTreeMap<String, crate::install::Machine> {
        self.shared.installs().machines().clone()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
        let stop = Stop::new();
        let services = async {
            let proxy = async {
                match self.proxy {
                    Some(p) => p.run(stop.stopped()).await.map(|_| ()),
                    None => Ok(()),
                }
            };
            let (t, h, p) = tokio::join!(
                self.tftp.run(stop.stopped()),
                self.http.run(stop.stopped()),
                proxy
            );
            t.map(|_| ()).and(h).and(p)
        };
        stop.until(Box::pin(services), shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(false, "/install/vm1/ab12/config"),
            Route::Install {
                machine: "vm1",
                token: "ab12",
                file: "config",
                post: false
            }
        );
        assert!(matches!(
            route(true, "/install/vm1/ab12/done"),
            Route::Install { post: true, .. }
        ));
        for bad in [
            "/install/vm1/ab12/done",
            "/install/vm1/ab12/../config",
            "/install/../ab12/config",
            "/install/vm1/ab%2e/config",
            "/install/vm1/ab12/config/x",
            "/install/vm1//config",
            "/install/vm1/ab12/secret",
        ] {
            assert!(matches!(route(false, bad), Route::NotFound(_)), "{bad}");
        }
        assert!(matches!(
            route(true, "/install/vm1/ab12/config"),
            Route::NotFound(_)
        ));
        assert!(matches!(route(true, "/boot/vmlinuz"), Route::NotFound(_)));
        assert_eq!(route(false, "/boot.ipxe"), Route::Chain);
        assert_eq!(
            route(false, "/ipxe/52:54:00:AA:bb:cc"),
            Route::Script("52-54-00-aa-bb-cc".into())
        );
        assert_eq!(route(false, "/boot/a/vmlinuz"), Route::File("a/vmlinuz"));
        assert_eq!(route(false, "/pxelinux.0"), Route::File("pxelinux.0"));
    }

    #[test]
    fn mac_keys() {
        assert_eq!(
            mac_key("01-52-54-00-AA-bb-cc").as_deref(),
            Some("52-54-00-aa-bb-cc")
        );
        assert_eq!(
            mac_key("52:54:00:aa:bb:cc").as_deref(),
            Some("52-54-00-aa-bb-cc")
        );
        assert_eq!(mac_key("C0A80001"), None);
        assert_eq!(mac_key("52-54-00-aa-bb"), None);
        assert_eq!(mac_key("52-54-00-aa-bb-zz"), None);
    }
}
