//! Boot menus and install configs as text: pxelinux (menu and per-MAC files), iPXE scripts
//! and kickstart files. Pure functions over the lab model; passwords appear only as the crypt
//! hashes the lab holds (validation refuses anything else).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use cloudlet_core::model::{InstallUser, Lab, Machine, Profile};

/// Where booting machines fetch kernels, initrds and install configs over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootServer {
    /// `http://ADDRESS[:PORT]` of the boot service, without a trailing slash.
    pub base_url: String,
    /// This boot's token: cloudlet's boot service serves a machine's install config only
    /// under the URL with the token of its current boot. `None` renders token-less URLs,
    /// for a boot server run by other software.
    pub token: Option<String>,
}

impl BootServer {
    /// The boot server of a lab: the PXE machine's first address, or none when the lab has
    /// no PXE server machine.
    pub fn of(lab: &Lab) -> Option<BootServer> {
        let ip: Ipv4Addr = lab.machine_ip(lab.pxe.as_ref()?.server.as_deref()?)?;
        Some(BootServer {
            base_url: format!("http://{ip}"),
            token: None,
        })
    }

    /// The same server with the token of one boot.
    #[must_use]
    pub fn with_token(&self, token: &str) -> BootServer {
        BootServer {
            base_url: self.base_url.clone(),
            token: Some(token.to_string()),
        }
    }

    /// The directory of a machine's install files, with a trailing slash (cloud-init's
    /// NoCloud seed: `user-data`, `meta-data`, `vendor-data` under it).
    pub fn install_dir(&self, machine: &str) -> String {
        match &self.token {
            Some(t) => format!("{}/install/{machine}/{t}/", self.base_url),
            None => format!("{}/install/{machine}/", self.base_url),
        }
    }

    /// The install config URL of a machine (served only to that machine).
    pub fn install_url(&self, machine: &str) -> String {
        format!("{}config", self.install_dir(machine))
    }

    /// The callback a machine calls when its install finished (POST; a body starting with
    /// `failed` reports a failed install).
    pub fn callback_url(&self, machine: &str) -> String {
        format!("{}done", self.install_dir(machine))
    }
}

fn header(s: &mut String, lab: &Lab, machine: &str) {
    let _ = writeln!(
        s,
        "# rendered by cloudlet for {machine}.{}; do not edit",
        lab.site.domain
    );
}

fn profile_label<'a>(name: &'a str, p: &'a Profile) -> &'a str {
    p.label.as_deref().unwrap_or(name)
}

/// `pxelinux.cfg/default`: local boot first, then every profile; the lab's default entry is
/// marked (local boot when none is named).
pub fn pxelinux_menu(lab: &Lab) -> String {
    let mut s = String::new();
    let Some(pxe) = &lab.pxe else { return s };
    let timeout = pxe.menu.timeout.unwrap_or(5);
    let _ = writeln!(
        s,
        "# rendered by cloudlet for lab {}; do not edit",
        lab.name
    );
    let _ = writeln!(s, "DEFAULT menu.c32");
    let _ = writeln!(s, "PROMPT 0");
    let _ = writeln!(s, "TIMEOUT {}", u64::from(timeout) * 10);
    let _ = writeln!(
        s,
        "MENU TITLE {}",
        pxe.menu.title.as_deref().unwrap_or("cloudlet network boot")
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "LABEL local");
    let _ = writeln!(s, "  MENU LABEL Boot from local disk");
    if pxe.menu.default.is_none() {
        let _ = writeln!(s, "  MENU DEFAULT");
    }
    let _ = writeln!(s, "  LOCALBOOT 0");
    for (name, p) in &pxe.profiles {
        let _ = writeln!(s);
        let _ = writeln!(s, "LABEL {name}");
        let _ = writeln!(s, "  MENU LABEL {}", profile_label(name, p));
        if pxe.menu.default.as_deref() == Some(name.as_str()) {
            let _ = writeln!(s, "  MENU DEFAULT");
        }
        let _ = writeln!(s, "  KERNEL {}", p.kernel);
        let mut append = format!("initrd={}", p.initrd);
        if let Some(extra) = &p.append {
            let _ = write!(append, " {extra}");
        }
        let _ = writeln!(s, "  APPEND {append}");
    }
    s
}

/// Kernel command line of a machine's install: the profile's, plus where to fetch the
/// install config and the hostname.
pub fn install_cmdline(
    lab: &Lab,
    machine: &str,
    p: &Profile,
    server: Option<&BootServer>,
) -> String {
    let mut c = String::new();
    if let Some(extra) = &p.append {
        c.push_str(extra);
        c.push(' ');
    }
    if let Some(srv) = server {
        let url = srv.install_url(machine);
        match p.format {
            cloudlet_core::model::InstallFormat::Kickstart => {
                let _ = write!(c, "ks={url} ");
            }
            cloudlet_core::model::InstallFormat::Autoinstall => {
                // cloud-init's NoCloud datasource; `cloud-config-url=/dev/null` stops
                // cloud-init downloading the ISO a second time.
                let _ = write!(
                    c,
                    "autoinstall ds=nocloud-net;s={} cloud-config-url=/dev/null ",
                    srv.install_dir(machine)
                );
            }
            cloudlet_core::model::InstallFormat::Preseed => {
                let _ = write!(c, "auto=true priority=critical url={url} ");
            }
        }
    }
    let _ = write!(c, "hostname={machine} domain={}", lab.site.domain);
    c
}

/// `pxelinux.cfg/01-<mac>`: this machine installs with its profile, no menu.
pub fn pxelinux_machine(
    lab: &Lab,
    machine: &str,
    p: &Profile,
    server: Option<&BootServer>,
) -> String {
    let mut s = String::new();
    header(&mut s, lab, machine);
    let _ = writeln!(s, "DEFAULT install");
    let _ = writeln!(s, "PROMPT 0");
    let _ = writeln!(s, "LABEL install");
    let _ = writeln!(s, "  KERNEL {}", p.kernel);
    let _ = writeln!(
        s,
        "  APPEND initrd={} {}",
        p.initrd,
        install_cmdline(lab, machine, p, server)
    );
    s
}

/// `pxelinux.cfg/01-<mac>` once a machine is installed: boot the local disk.
pub fn pxelinux_local() -> String {
    "DEFAULT local\nPROMPT 0\nLABEL local\n  LOCALBOOT 0\n".to_string()
}

/// The iPXE script of a machine that is installed: leave iPXE so the firmware boots the next
/// device (the local disk).
pub fn ipxe_local() -> String {
    "#!ipxe\necho installed: booting from the local disk\nexit 0\n".to_string()
}

/// The iPXE script that sends a machine to its own script (for DHCP servers that hand every
/// iPXE client the same URL).
pub fn ipxe_chain(server: &BootServer) -> String {
    format!(
        "#!ipxe\nchain {}/ipxe/${{net0/mac:hexhyp}}\n",
        server.base_url
    )
}

/// The GRUB config of a machine's UEFI install (`grub/grub.cfg-01-<mac>`; GRUB's network
/// image asks for it first): kernel and initrd over TFTP.
pub fn grub_machine(lab: &Lab, machine: &str, p: &Profile, server: &BootServer) -> String {
    // Over TFTP from the boot service's address: Debian's signed GRUB network images have
    // no `http` module (`(http,…)` is "disk not found" there), and TFTP is what they came by.
    let host = server
        .base_url
        .strip_prefix("http://")
        .unwrap_or(&server.base_url);
    let host = host.split(':').next().unwrap_or(host);
    let mut s = String::new();
    header(&mut s, lab, machine);
    let _ = writeln!(s, "set default=0\nset timeout=0");
    let _ = writeln!(s, "menuentry 'Install {machine}' {{");
    // `;` ends a GRUB command: such words are quoted (GRUB removes the quotes).
    let cmdline: Vec<String> = install_cmdline(lab, machine, p, Some(server))
        .split(' ')
        .map(|w| {
            if w.contains(';') {
                format!("'{w}'")
            } else {
                w.to_string()
            }
        })
        .collect();
    let _ = writeln!(
        s,
        "  linux (tftp,{host})/{} {}",
        p.kernel,
        cmdline.join(" ")
    );
    let _ = writeln!(s, "  initrd (tftp,{host})/{}", p.initrd);
    let _ = writeln!(s, "}}");
    s
}

/// `grub/grub.cfg`, the config Debian's signed GRUB network images read (their prefix is
/// `/grub` on the server they came from, and they look for no per-MAC file themselves): it
/// hands each machine to its own config, `grub.cfg-01-MAC` next to it (`net_default_mac` is the
/// MAC of the NIC GRUB booted from; the service takes the MAC with colons as with hyphens).
/// The same for every machine, and no secret in it.
pub fn grub_dispatch() -> String {
    "# cloudlet: each machine boots from its own config next to this one\nset timeout=0\nconfigfile $prefix/grub.cfg-01-$net_default_mac\n".to_string()
}

/// The GRUB config of an installed machine: back to the firmware, which boots the disk.
pub fn grub_local() -> String {
    "set timeout=0\nmenuentry 'Boot from local disk' {\n  exit\n}\n".to_string()
}

/// The iPXE script of a machine's install (kernel and initrd over HTTP).
pub fn ipxe_machine(lab: &Lab, machine: &str, p: &Profile, server: &BootServer) -> String {
    format!(
        "#!ipxe\n# rendered by cloudlet for {machine}.{}\nkernel {}/boot/{} initrd={} {}\ninitrd {}/boot/{}\nboot\n",
        lab.site.domain,
        server.base_url,
        p.kernel,
        p.initrd.rsplit('/').next().unwrap_or(&p.initrd),
        install_cmdline(lab, machine, p, Some(server)),
        server.base_url,
        p.initrd,
    )
}

/// A user's password that cannot be read or hashed (the password itself is never shown).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The system gave no randomness for a salt.
    #[error("no random salt: {0}")]
    Random(String),
    /// The hasher refused.
    #[error("hashing failed: {0}")]
    Hash(String),
    /// The password's file or variable cannot be read.
    #[error("the password of user `{user}`")]
    Read {
        /// The user.
        user: String,
        /// Why.
        #[source]
        source: cloudlet_core::error::SecretError,
    },
    /// The password is empty.
    #[error("the password of user `{user}` ({from}) is empty")]
    Empty {
        /// The user.
        user: String,
        /// Where it was read from (`env NAME`, `file PATH`).
        from: String,
    },
}

/// A SHA-512 crypt hash (`$6$rounds=5000$SALT$...`) of `password` with a fresh random
/// 16-character salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    use sha_crypt::{CustomizedPasswordHasher, Params, ShaCrypt};
    let mut salt = [0u8; 12];
    getrandom::fill(&mut salt).map_err(|e| PasswordError::Random(e.to_string()))?;
    ShaCrypt::SHA512
        .hash_password_customized(password.as_bytes(), &salt, None, None, Params::RECOMMENDED)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// `p` with the password of every `password_from` user read (relative files from
/// `base_dir`) and hashed; the password itself is dropped at once.
pub fn with_hashed_passwords(
    p: &Profile,
    base_dir: &std::path::Path,
) -> Result<Profile, PasswordError> {
    let mut p = p.clone();
    for u in &mut p.users {
        if u.password_hash.is_none()
            && let Some(from) = &u.password_from
        {
            let password = from.read(base_dir).map_err(|source| PasswordError::Read {
                user: u.name.clone(),
                source,
            })?;
            if password.is_empty() {
                return Err(PasswordError::Empty {
                    user: u.name.clone(),
                    from: from.describe(),
                });
            }
            u.password_hash = Some(hash_password(&password)?);
        }
    }
    Ok(p)
}

/// What runs at the end of `machine`'s install: the Kubernetes node preparation when it is a
/// node of a cluster the lab makes, then the profile's own `post`.
fn post_script(lab: &Lab, machine: &str, p: &Profile) -> Option<String> {
    let prep = crate::node_prep::script(lab, machine, crate::node_prep::Family::of(p.format));
    match (prep, &p.post) {
        (None, None) => None,
        (Some(a), None) => Some(a),
        (None, Some(b)) => Some(b.clone()),
        (Some(a), Some(b)) => Some(format!("{a}{b}")),
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn user_lines(s: &mut String, u: &InstallUser) {
    let mut line = format!("user --name={}", u.name);
    if u.sudo {
        line.push_str(" --groups=sudo,wheel");
    }
    match &u.password_hash {
        Some(h) => {
            let _ = write!(line, " --iscrypted --password={h}");
        }
        None => line.push_str(" --lock"),
    }
    if u.password_hash.is_none()
        && let Some(from) = &u.password_from
    {
        let _ = writeln!(
            s,
            "# the password of {} ({}) is hashed in by cloudlet's boot service",
            u.name,
            from.describe()
        );
    }
    let _ = writeln!(s, "{line}");
    for k in &u.ssh_keys {
        let _ = writeln!(s, "sshkey --username={} {}", u.name, quote(k));
    }
}

/// A kickstart file for `machine` (the seed's flow): language and keyboard, time zone,
/// locked root, users with crypt hashes and SSH keys, static network from the lab, whole-disk
/// partitioning, packages, the profile's `%post`, and a callback when done.
pub fn kickstart(
    lab: &Lab,
    machine: &str,
    m: &Machine,
    p: &Profile,
    server: Option<&BootServer>,
) -> String {
    let mut s = String::new();
    header(&mut s, lab, machine);
    let _ = writeln!(s, "lang en_US.UTF-8");
    let _ = writeln!(s, "keyboard us");
    let _ = writeln!(s, "timezone {} --utc", lab.site.timezone);
    let _ = writeln!(s, "rootpw --lock");
    for u in &p.users {
        user_lines(&mut s, u);
    }
    let mut line = String::from("network --device=link --activate");
    match static_net(lab, m) {
        Some(n) => {
            let _ = write!(
                line,
                " --bootproto=static --ip={} --netmask={}",
                n.ip,
                netmask(n.prefix)
            );
            if let Some(gw) = n.gateway {
                let _ = write!(line, " --gateway={gw}");
            }
            if !n.dns.is_empty() {
                let _ = write!(line, " --nameserver={}", n.dns.join(","));
            }
        }
        None => line.push_str(" --bootproto=dhcp"),
    }
    let _ = write!(line, " --hostname={machine}.{}", lab.site.domain);
    let _ = writeln!(s, "{line}");
    let _ = writeln!(s, "firewall --enabled --ssh");
    let _ = writeln!(s, "bootloader --location=mbr");
    let _ = writeln!(s, "zerombr");
    let _ = writeln!(s, "clearpart --all --initlabel");
    let _ = writeln!(s, "part / --fstype={} --size=1 --grow", p.fstype);
    let _ = writeln!(s, "text");
    let _ = writeln!(s, "skipx");
    let _ = writeln!(s, "reboot");
    let _ = writeln!(s);
    let _ = writeln!(s, "%packages");
    for pkg in &p.packages {
        let _ = writeln!(s, "{pkg}");
    }
    let _ = writeln!(s, "%end");
    let _ = writeln!(s);
    let _ = writeln!(s, "%post --interpreter=/bin/sh");
    if let Some(post) = &post_script(lab, machine, p) {
        s.push_str(post);
        if !post.ends_with('\n') {
            s.push('\n');
        }
    }
    if let Some(srv) = server {
        // The installed system's host key goes with the report: cloudlet verifies the machine
        // by it from then on.
        let _ = writeln!(s, "ssh-keygen -A >/dev/null 2>&1 || true");
        let _ = writeln!(s, "{}", callback_line(srv, machine, &installed_body("")));
    }
    let _ = writeln!(s, "%end");
    s
}

/// A machine's static address on its first addressed NIC, from the lab.
struct StaticNet {
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    dns: Vec<String>,
}

fn static_net(lab: &Lab, m: &Machine) -> Option<StaticNet> {
    let nic = m.nics.iter().find(|n| n.ip.is_some())?;
    let net = lab.networks.get(&nic.network)?;
    Some(StaticNet {
        ip: nic.ip?,
        prefix: net.cidr.prefix,
        gateway: net.gateway,
        dns: net.dns.iter().map(ToString::to_string).collect(),
    })
}

fn netmask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

/// The shell line of an install's callback: POST `installed` (busybox wget or curl).
/// The report of a finished install as one shell word: `installed` and the installed
/// system's ed25519 host key (under `root`, the target's mount point) as `TYPE:BASE64`.
fn installed_body(root: &str) -> String {
    format!(
        "\"installed hostkey=$(cut -d' ' -f1,2 {root}/etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null | tr ' ' :)\""
    )
}

fn callback_line(server: &BootServer, machine: &str, body: &str) -> String {
    let url = server.callback_url(machine);
    format!("wget -q -O /dev/null --post-data={body} {url} || curl -fsS -d {body} {url} || true")
}

/// Ubuntu autoinstall as cloud-init user-data (`#cloud-config`, NoCloud): locale, keyboard,
/// the lab's static network matched by MAC, whole-disk storage, packages, users with crypt
/// hashes and SSH keys (in `user-data`, so no `identity` section is needed), the time zone,
/// the profile's post commands in the target, and callbacks on success and on error.
pub fn autoinstall(
    lab: &Lab,
    machine: &str,
    m: &Machine,
    p: &Profile,
    server: Option<&BootServer>,
) -> String {
    use serde_json::{Value, json};
    let users: Vec<Value> = p
        .users
        .iter()
        .map(|u| {
            let mut o = json!({
                "name": u.name,
                "shell": "/bin/bash",
                "lock_passwd": u.password_hash.is_none(),
            });
            if let Some(h) = &u.password_hash {
                o["passwd"] = json!(h);
            }
            if !u.ssh_keys.is_empty() {
                o["ssh_authorized_keys"] = json!(u.ssh_keys);
            }
            if u.sudo {
                o["sudo"] = json!("ALL=(ALL) NOPASSWD:ALL");
            }
            o
        })
        .collect();
    let mut ai = json!({
        "version": 1,
        "locale": "en_US.UTF-8",
        "keyboard": {"layout": "us"},
        "ssh": {"install-server": true, "allow-pw": false},
        "storage": {"layout": {"name": "direct"}},
        "user-data": {
            "hostname": machine,
            "fqdn": format!("{machine}.{}", lab.site.domain),
            "timezone": lab.site.timezone,
            "disable_root": true,
            // Keep the host keys the install made (and reported): cloudlet verifies by them.
            "ssh_deletekeys": false,
            "users": users,
        },
    });
    if let (Some(n), Some(nic)) = (static_net(lab, m), m.nics.first()) {
        let mac = lab
            .nic_mac(machine, 0, nic)
            .to_string()
            .to_ascii_lowercase();
        let mut eth = json!({
            "match": {"macaddress": mac},
            "set-name": "lan0",
            "addresses": [format!("{}/{}", n.ip, n.prefix)],
        });
        if let Some(gw) = n.gateway {
            eth["routes"] = json!([{"to": "default", "via": gw.to_string()}]);
        }
        if !n.dns.is_empty() {
            eth["nameservers"] = json!({"addresses": n.dns, "search": [lab.site.domain]});
        }
        ai["network"] = json!({"version": 2, "ethernets": {"lan0": eth}});
    }
    if !p.packages.is_empty() {
        ai["packages"] = json!(p.packages);
    }
    let mut late: Vec<String> = Vec::new();
    if let Some(post) = &post_script(lab, machine, p) {
        late.push(format!(
            "curtin in-target --target=/target -- sh -c {}",
            sh_quote(post)
        ));
    }
    if let Some(srv) = server {
        late.push("curtin in-target --target=/target -- ssh-keygen -A".into());
        late.push(callback_line(srv, machine, &installed_body("/target")));
        ai["error-commands"] = json!([callback_line(srv, machine, "failed")]);
    }
    if !late.is_empty() {
        ai["late-commands"] = json!(late);
    }
    let mut s = String::from("#cloud-config\n");
    header(&mut s, lab, machine);
    cloudlet_core::yaml::emit(
        &json!({"autoinstall": ai}),
        0,
        &["match", "keyboard", "layout"],
        &mut s,
    );
    s
}

/// cloud-init's `meta-data` of a machine (NoCloud): its instance id and host name.
pub fn meta_data(machine: &str) -> String {
    format!("instance-id: {machine}\nlocal-hostname: {machine}\n")
}

/// A shell word holding `s` (single quotes).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A Debian preseed file: locale, keyboard, the lab's static network, host and domain, the
/// mirror, time zone, no root login, the first user with its crypt hash (others added in the
/// target), whole-disk partitioning, packages, then SSH keys, the profile's post commands and
/// the callback as the late command.
pub fn preseed(
    lab: &Lab,
    machine: &str,
    m: &Machine,
    p: &Profile,
    server: Option<&BootServer>,
) -> String {
    let mut s = String::new();
    header(&mut s, lab, machine);
    let mut d = |k: &str, t: &str, v: &str| {
        let _ = writeln!(s, "d-i {k} {t} {v}");
    };
    d("debian-installer/locale", "string", "en_US.UTF-8");
    d("keyboard-configuration/xkb-keymap", "select", "us");
    d("netcfg/choose_interface", "select", "auto");
    if let Some(n) = static_net(lab, m) {
        d("netcfg/disable_autoconfig", "boolean", "true");
        d("netcfg/get_ipaddress", "string", &n.ip.to_string());
        d(
            "netcfg/get_netmask",
            "string",
            &netmask(n.prefix).to_string(),
        );
        if let Some(gw) = n.gateway {
            d("netcfg/get_gateway", "string", &gw.to_string());
        }
        d("netcfg/get_nameservers", "string", &n.dns.join(" "));
        d("netcfg/confirm_static", "boolean", "true");
    }
    d("netcfg/get_hostname", "string", machine);
    d("netcfg/get_domain", "string", &lab.site.domain);
    d("mirror/country", "string", "manual");
    d("mirror/http/hostname", "string", "deb.debian.org");
    d("mirror/http/directory", "string", "/debian");
    d("mirror/http/proxy", "string", "");
    d("clock-setup/utc", "boolean", "true");
    d("time/zone", "string", &lab.site.timezone);
    d("passwd/root-login", "boolean", "false");
    let mut late: Vec<String> = Vec::new();
    for (i, u) in p.users.iter().enumerate() {
        if i == 0 {
            d("passwd/username", "string", &u.name);
            d("passwd/user-fullname", "string", &u.name);
            match &u.password_hash {
                Some(h) => d("passwd/user-password-crypted", "password", h),
                None => d("passwd/user-password-crypted", "password", "!"),
            }
        } else {
            late.push(format!(
                "in-target useradd -m -s /bin/bash {}{}",
                u.password_hash
                    .as_ref()
                    .map(|h| format!("-p {} ", sh_quote(h)))
                    .unwrap_or_default(),
                u.name
            ));
        }
        if u.sudo {
            late.push(format!("in-target usermod -aG sudo {}", u.name));
        }
        for k in &u.ssh_keys {
            late.push(format!(
                "in-target sh -c {}",
                sh_quote(&format!(
                    "mkdir -p ~{n}/.ssh && echo {} >> ~{n}/.ssh/authorized_keys && chown -R {n}: ~{n}/.ssh && chmod 700 ~{n}/.ssh",
                    sh_quote(k),
                    n = u.name
                ))
            ));
        }
    }
    d("partman-auto/method", "string", "regular");
    d("partman-auto/choose_recipe", "select", "atomic");
    d("partman/default_filesystem", "string", &p.fstype);
    d(
        "partman-partitioning/confirm_write_new_label",
        "boolean",
        "true",
    );
    d("partman/choose_partition", "select", "finish");
    d("partman/confirm", "boolean", "true");
    d("partman/confirm_nooverwrite", "boolean", "true");
    d("tasksel/first", "multiselect", "standard, ssh-server");
    if !p.packages.is_empty() {
        d("pkgsel/include", "string", &p.packages.join(" "));
    }
    d("grub-installer/bootdev", "string", "default");
    if let Some(post) = &post_script(lab, machine, p) {
        // A late command is one line: a script of many goes in base64.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(post);
        late.push(format!(
            "echo {b64} | base64 -d > /target/tmp/cloudlet-post.sh"
        ));
        late.push("in-target sh /tmp/cloudlet-post.sh".into());
    }
    if let Some(srv) = server {
        late.push("in-target ssh-keygen -A".into());
        late.push(callback_line(srv, machine, &installed_body("/target")));
    }
    if !late.is_empty() {
        d("preseed/late_command", "string", &late.join("; "));
    }
    d("finish-install/reboot_in_progress", "note", "");
    s
}

/// A machine's install config in its profile's format (kickstart, autoinstall user-data or
/// preseed).
pub fn install_config(
    lab: &Lab,
    machine: &str,
    m: &Machine,
    p: &Profile,
    server: Option<&BootServer>,
) -> String {
    match p.format {
        cloudlet_core::model::InstallFormat::Kickstart => kickstart(lab, machine, m, p, server),
        cloudlet_core::model::InstallFormat::Autoinstall => autoinstall(lab, machine, m, p, server),
        cloudlet_core::model::InstallFormat::Preseed => preseed(lab, machine, m, p, server),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Lab {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/seed");
        cloudlet_core::load(std::path::Path::new(dir)).unwrap().lab
    }

    #[test]
    fn menu_has_local_boot_and_the_default_profile() {
        let lab = seed();
        let m = pxelinux_menu(&lab);
        assert!(
            m.contains("LABEL local\n  MENU LABEL Boot from local disk\n  LOCALBOOT 0\n"),
            "{m}"
        );
        assert!(m.contains("LABEL ubuntu2004\n  MENU LABEL Ubuntu 20.04\n  MENU DEFAULT\n  KERNEL Ubuntu20.04/linux\n  APPEND initrd=Ubuntu20.04/initrd.gz\n"), "{m}");
        assert!(m.contains("TIMEOUT 50\n"));
    }

    #[test]
    fn per_machine_boot_files_point_at_the_install_config() {
        let lab = seed();
        let srv = BootServer::of(&lab).unwrap();
        assert_eq!(srv.base_url, "http://10.0.10.20");
        let p = &lab.pxe.as_ref().unwrap().profiles["ubuntu2004"];
        let cfg = pxelinux_machine(&lab, "k8s-node1", p, Some(&srv));
        assert!(cfg.contains("APPEND initrd=Ubuntu20.04/initrd.gz ks=http://10.0.10.20/install/k8s-node1/config hostname=k8s-node1 domain=home.lan\n"), "{cfg}");
        let ipxe = ipxe_machine(&lab, "k8s-node1", p, &srv);
        assert!(ipxe.starts_with("#!ipxe\n"));
        assert!(
            ipxe.contains("kernel http://10.0.10.20/boot/Ubuntu20.04/linux initrd=initrd.gz ks="),
            "{ipxe}"
        );
        assert!(ipxe.contains("initrd http://10.0.10.20/boot/Ubuntu20.04/initrd.gz\nboot\n"));
    }

    #[test]
    fn kickstart_carries_hashes_keys_network_and_callback() {
        let lab = seed();
        let srv = BootServer::of(&lab).unwrap();
        let p = &lab.pxe.as_ref().unwrap().profiles["ubuntu2004"];
        let m = &lab.machines["k8s-node1"];
        let ks = kickstart(&lab, "k8s-node1", m, p, Some(&srv));
        assert!(ks.contains("timezone Europe/Sofia --utc\n"));
        assert!(ks.contains("rootpw --lock\n"));
        assert!(
            ks.contains(
                "user --name=wizard --groups=sudo,wheel --iscrypted --password=$6$cloudletseed$"
            ),
            "{ks}"
        );
        assert!(
            ks.contains("sshkey --username=wizard \"ssh-ed25519 AAAAC3"),
            "{ks}"
        );
        assert!(ks.contains("network --device=link --activate --bootproto=static --ip=10.0.20.11 --netmask=255.255.255.0 --gateway=10.0.20.1 --nameserver=10.0.20.1 --hostname=k8s-node1.home.lan\n"), "{ks}");
        assert!(ks.contains("part / --fstype=ext4 --size=1 --grow\n"));
        assert!(ks.contains("%packages\nopenssh-server\npython3\nnfs-common\n%end\n"));
        assert!(ks.contains("ln -sf /usr/bin/python3 /usr/bin/python\n"));
        assert!(ks.contains("http://10.0.10.20/install/k8s-node1/done"));
        assert!(!ks.contains("plaintext") && !ks.contains("password --plaintext"));
    }

    #[test]
    fn the_install_report_carries_the_host_key_openssh_made() {
        let root = tempfile::tempdir().unwrap();
        let ssh = root.path().join("etc/ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let key = ssh.join("ssh_host_ed25519_key");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "root@vm1", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        // The body as the installer's shell expands it.
        let body = installed_body(&root.path().display().to_string());
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf '%s' {body}")])
            .output()
            .unwrap();
        let said = String::from_utf8(out.stdout).unwrap();
        let word = said.strip_prefix("installed hostkey=").unwrap();
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let want: Vec<&str> = public.split_whitespace().take(2).collect();
        assert_eq!(
            crate::install::parse_host_key(word),
            Some(want.join(" ")),
            "{said}"
        );
        // Not a key: nothing is kept.
        assert_eq!(crate::install::parse_host_key("ssh-ed25519:"), None);
        assert_eq!(
            crate::install::parse_host_key("x:AAAAAAAAAAAAAAAAAAAA"),
            None
        );
        assert_eq!(
            crate::install::parse_host_key("ssh-ed25519:AAAA;rm -rf /AAAAAAAAAA"),
            None
        );
    }

    #[test]
    fn nodes_of_a_cluster_cloudlet_makes_are_prepared_in_every_format() {
        use cloudlet_core::model::InstallFormat as F;
        let mut lab = seed();
        let plain = lab.clone();
        lab.cluster.as_mut().unwrap().kubernetes =
            Some(serde_json::from_value(serde_json::json!({"version": "v1.36.3"})).unwrap());
        let m = lab.machines["k8s-node1"].clone();
        for (format, needle) in [
            (F::Kickstart, "'kubeadm-1.36.3'".to_string()),
            (F::Autoinstall, "kubeadm=1.36.3-*".to_string()),
            // A preseed late command carries the script in base64.
            (F::Preseed, {
                use base64::Engine as _;
                let post = post_script(&lab, "k8s-node1", &profile(&lab, F::Preseed)).unwrap();
                assert!(post.contains("kubeadm=1.36.3-*"), "{post}");
                base64::engine::general_purpose::STANDARD.encode(post)
            }),
        ] {
            let p = profile(&lab, format);
            let text = install_config(&lab, "k8s-node1", &m, &p, None);
            assert!(text.contains(&needle), "{format:?}: {text}");
            // Without `cluster.kubernetes` the same machine installs as before.
            let before = install_config(&plain, "k8s-node1", &m, &p, None);
            assert!(!before.contains("kubeadm"), "{format:?}: {before}");
        }
    }

    fn profile(lab: &Lab, format: cloudlet_core::model::InstallFormat) -> Profile {
        let mut p = lab.pxe.as_ref().unwrap().profiles["ubuntu2004"].clone();
        p.format = format;
        p
    }

    #[test]
    fn tokens_go_into_every_url_of_a_boot() {
        let lab = seed();
        let srv = BootServer::of(&lab).unwrap().with_token("abc123");
        assert_eq!(
            srv.install_url("k8s-node1"),
            "http://10.0.10.20/install/k8s-node1/abc123/config"
        );
        assert_eq!(
            srv.callback_url("k8s-node1"),
            "http://10.0.10.20/install/k8s-node1/abc123/done"
        );
        let p = profile(&lab, cloudlet_core::model::InstallFormat::Autoinstall);
        let grub = grub_machine(&lab, "k8s-node1", &p, &srv);
        assert!(
            grub.contains("  linux (tftp,10.0.10.20)/Ubuntu20.04/linux autoinstall 'ds=nocloud-net;s=http://10.0.10.20/install/k8s-node1/abc123/' cloud-config-url=/dev/null hostname=k8s-node1"),
            "{grub}"
        );
        assert!(grub.contains("  initrd (tftp,10.0.10.20)/Ubuntu20.04/initrd.gz\n"));
        assert!(grub_local().contains("exit"));
        assert!(ipxe_local().starts_with("#!ipxe\n") && ipxe_local().contains("exit"));
    }

    #[test]
    fn autoinstall_is_yaml_with_hashes_network_and_callbacks() {
        let lab = seed();
        let srv = BootServer::of(&lab).unwrap().with_token("t0k");
        let p = profile(&lab, cloudlet_core::model::InstallFormat::Autoinstall);
        let m = &lab.machines["k8s-node1"];
        let ud = autoinstall(&lab, "k8s-node1", m, &p, Some(&srv));
        assert!(ud.starts_with("#cloud-config\n"), "{ud}");
        let docs =
            cloudlet_core::source::parse_yaml(0, &ud).unwrap_or_else(|e| panic!("{e:?}\n{ud}"));
        let v: serde_json::Value = cloudlet_core::de::from_node(&docs[0]).unwrap();
        let ai = &v["autoinstall"];
        assert_eq!(ai["version"], 1);
        assert_eq!(ai["user-data"]["timezone"], "Europe/Sofia");
        let u = &ai["user-data"]["users"][0];
        assert_eq!(u["name"], "wizard");
        assert!(
            u["passwd"]
                .as_str()
                .unwrap()
                .starts_with("$6$cloudletseed$")
        );
        assert!(
            u["ssh_authorized_keys"][0]
                .as_str()
                .unwrap()
                .starts_with("ssh-ed25519 ")
        );
        let eth = &ai["network"]["ethernets"]["lan0"];
        assert_eq!(eth["addresses"][0], "10.0.20.11/24");
        assert_eq!(eth["routes"][0]["via"], "10.0.20.1");
        assert!(eth["match"]["macaddress"].as_str().unwrap().contains(':'));
        assert_eq!(ai["packages"][0], "openssh-server");
        let late = ai["late-commands"].as_array().unwrap();
        assert!(late[0].as_str().unwrap().starts_with("curtin in-target"));
        // The host keys are made, then the report carries the ed25519 one.
        assert_eq!(
            late[1].as_str().unwrap(),
            "curtin in-target --target=/target -- ssh-keygen -A"
        );
        let report = late[2].as_str().unwrap();
        assert!(report.contains("http://10.0.10.20/install/k8s-node1/t0k/done"));
        assert!(
            report.contains("hostkey=$(cut -d' ' -f1,2 /target/etc/ssh/ssh_host_ed25519_key.pub"),
            "{report}"
        );
        assert_eq!(ai["user-data"]["ssh_deletekeys"], false);
        assert!(
            ai["error-commands"][0]
                .as_str()
                .unwrap()
                .contains("--post-data=failed")
        );
        assert_eq!(
            meta_data("k8s-node1"),
            "instance-id: k8s-node1\nlocal-hostname: k8s-node1\n"
        );
    }

    #[test]
    fn preseed_has_static_network_crypted_user_and_late_command() {
        let lab = seed();
        let srv = BootServer::of(&lab).unwrap().with_token("t0k");
        let p = profile(&lab, cloudlet_core::model::InstallFormat::Preseed);
        let m = &lab.machines["k8s-node1"];
        let ps = preseed(&lab, "k8s-node1", m, &p, Some(&srv));
        for line in [
            "d-i netcfg/get_ipaddress string 10.0.20.11\n",
            "d-i netcfg/get_netmask string 255.255.255.0\n",
            "d-i netcfg/get_gateway string 10.0.20.1\n",
            "d-i netcfg/get_hostname string k8s-node1\n",
            "d-i time/zone string Europe/Sofia\n",
            "d-i passwd/root-login boolean false\n",
            "d-i passwd/username string wizard\n",
            "d-i pkgsel/include string openssh-server python3 nfs-common\n",
        ] {
            assert!(ps.contains(line), "{line:?} missing:\n{ps}");
        }
        assert!(ps.contains("d-i passwd/user-password-crypted password $6$cloudletseed$"));
        let late = ps
            .lines()
            .find(|l| l.starts_with("d-i preseed/late_command string "))
            .unwrap();
        assert!(late.contains("authorized_keys"), "{late}");
        assert!(
            late.contains("http://10.0.10.20/install/k8s-node1/t0k/done"),
            "{late}"
        );
        assert!(
            !ps.contains("password string"),
            "no plaintext password question"
        );
        assert!(
            late.contains(
                "| base64 -d > /target/tmp/cloudlet-post.sh; in-target sh /tmp/cloudlet-post.sh"
            ),
            "{late}"
        );
        assert_eq!(
            ps.lines()
                .filter(|l| !l.starts_with("d-i ") && !l.starts_with('#'))
                .count(),
            0,
            "{ps}"
        );
    }

    #[test]
    fn passwords_from_secrets_are_hashed_at_render_time_and_verify_with_libc_crypt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ops.pw"), "correct horse\n").unwrap();
        let lab = seed();
        let mut p = lab.pxe.as_ref().unwrap().profiles["ubuntu2004"].clone();
        p.users[0].password_hash = None;
        p.users[0].password_from = Some(cloudlet_core::model::SecretRef::File("ops.pw".into()));
        let m = &lab.machines["k8s-node1"];
        let unhashed = kickstart(&lab, "k8s-node1", m, &p, None);
        assert!(unhashed.contains("# the password of wizard (file ops.pw) is hashed in by cloudlet's boot service\nuser --name=wizard --groups=sudo,wheel --lock\n"), "{unhashed}");
        let hashed = with_hashed_passwords(&p, dir.path()).unwrap();
        let h = hashed.users[0].password_hash.clone().unwrap();
        assert!(h.starts_with("$6$rounds=5000$"), "{h}");
        let again = with_hashed_passwords(&p, dir.path()).unwrap();
        assert_ne!(
            again.users[0].password_hash.as_ref(),
            Some(&h),
            "a fresh salt each time"
        );
        let ks = kickstart(&lab, "k8s-node1", m, &hashed, None);
        assert!(
            ks.contains(&format!("--iscrypted --password={h}\n")),
            "{ks}"
        );
        assert!(!ks.contains("correct horse"));
        // The C library's crypt(3), through Python, accepts the password and refuses another.
        let check = |pw: &str| {
            let o = std::process::Command::new("python3")
                .args([
                    "-W",
                    "ignore",
                    "-c",
                    "import crypt,sys; print(crypt.crypt(sys.argv[1], sys.argv[2]) == sys.argv[2])",
                    pw,
                    &h,
                ])
                .output()
                .expect("python3 runs");
            String::from_utf8_lossy(&o.stdout).trim() == "True"
        };
        assert!(check("correct horse"));
        assert!(!check("correct horse battery"));
        p.users[0].password_from = Some(cloudlet_core::model::SecretRef::Env(
            "CLOUDLET_TEST_NO_SUCH_VAR".into(),
        ));
        let err = cloudlet_core::error::chain(&with_hashed_passwords(&p, dir.path()).unwrap_err());
        assert_eq!(
            err,
            "the password of user `wizard`: the environment variable CLOUDLET_TEST_NO_SUCH_VAR is not set"
        );
    }
}
