//! docker-compose import: a compose project becomes app blocks of the lab.
//!
//! Done the way kompose should (see the field reference):
//! - every service becomes an app in one namespace per project, so services still reach
//!   each other by service name;
//! - ports split by protocol; HTTP ports get an ingress route (`SERVICE.DOMAIN`, covered by
//!   the lab's TLS); other published TCP and UDP ports go on the shared ingress VIP;
//!   unpublished ports stay inside the cluster;
//! - named volumes and bind mounts move to the lab's NFS export, one directory per source, so
//!   a source used by several services is one shared (ReadWriteMany) directory, not copies;
//! - `kompose.*` labels are honoured (`kompose.service.expose`, `kompose.service.type`,
//!   `kompose.volume.size`, `kompose.controller.type`);
//! - healthchecks become readiness and liveness probes, `depends_on` allowances and apply
//!   order, `${VAR}` values and compose secrets become secret references;
//! - the official database images (`postgres`, `mariadb`, `mysql`) get their data volume
//!   marked `database`, their port when others name them without one and, for a lab that
//!   backs up volumes, a `dump` of their database from the image's own variables;
//! - every key that is not carried over is reported by name, with its position.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cloudlet_core::diag::{Diagnostic, Severity};
use cloudlet_core::model::{
    App, AppPort, Dump, DumpKind, Expose, Health, Protocol, Resources, Route, SecretRef, Volume,
};
use cloudlet_core::source::{Node, NodeKind, Scalar, Sources, parse_yaml};
use cloudlet_core::types::{Duration, Size};
use cloudlet_core::yaml;

/// How a compose project maps onto the lab.
#[derive(Debug, Clone)]
pub struct ComposeOptions {
    /// The project name (default: the file's `name:`, else its directory's name).
    pub project: Option<String>,
    /// The DNS domain of the ingress hosts (`SERVICE.DOMAIN`).
    pub domain: String,
    /// The lab's storage export volumes go to.
    pub export: String,
    /// Volume size when no `kompose.volume.size` label says otherwise.
    pub default_size: Size,
    /// Whether services of the database images the import knows (`postgres`, `mariadb`,
    /// `mysql`) get a `dump` of their database, for a lab that backs up volumes
    /// (`backup.volumes`). Their data volumes are marked `database` either way.
    pub dumps: bool,
}

impl Default for ComposeOptions {
    fn default() -> Self {
        ComposeOptions {
            project: None,
            domain: "example.com".into(),
            export: "apps".into(),
            default_size: Size(Size::GIB),
            dumps: false,
        }
    }
}

/// A compose project as apps, with what did not carry over.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The project name (the namespace of its apps).
    pub project: String,
    /// The apps, by name.
    pub apps: BTreeMap<String, App>,
    /// One warning per compose key that was dropped or changed meaning, with its position.
    pub notes: Vec<Diagnostic>,
    /// The compose file's text, for rendering the notes.
    pub sources: Sources,
}

/// A compose file that cannot be imported.
#[derive(Debug, Clone)]
pub struct ComposeError {
    /// The problems, with positions.
    pub diagnostics: Vec<Diagnostic>,
    /// The compose file's text.
    pub sources: Sources,
}

impl std::fmt::Display for ComposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for d in &self.diagnostics {
            f.write_str(&d.render(&self.sources))?;
        }
        Ok(())
    }
}

impl std::error::Error for ComposeError {}

/// Container ports that speak HTTP in the images people run at home.
const HTTP_PORTS: [u16; 16] = [
    80, 3000, 5000, 5678, 8000, 8008, 8080, 8081, 8082, 8096, 8123, 8888, 9000, 9090, 51821, 2283,
];

/// Keys of a service that are not carried over, and why.
fn dropped_reason(key: &str) -> &'static str {
    match key {
        "container_name" => {
            "pods get names from their Deployment; the Service keeps the service name"
        }
        "hostname" | "domainname" => "pods take their name from Kubernetes",
        "restart" => "Kubernetes always restarts failed containers",
        "networks" | "network_mode" | "links" | "external_links" => {
            "apps of a project share a namespace and reach each other by service name; the lab's network policy says who may talk to whom"
        }
        "privileged" | "cap_add" | "cap_drop" | "security_opt" | "devices" | "sysctls" | "pid"
        | "ipc" | "userns_mode" => {
            "host privileges and devices are not granted by an import; add them to a raw manifest if the app truly needs them"
        }
        "env_file" => "env files are not read; put the values in `env:` or `secrets:` of the app",
        "logging" => "logs go to the cluster's log pipeline",
        "build" => "cloudlet does not build images; push the image and set `image:`",
        "extra_hosts" | "dns" | "dns_search" | "dns_opt" => {
            "name resolution comes from the cluster"
        }
        "stop_grace_period" | "stop_signal" => {
            "Kubernetes' termination grace period (30 s) applies"
        }
        "ulimits" | "shm_size" | "tmpfs" | "init" | "mem_limit" | "cpus" | "cpu_shares" => {
            "container runtime tuning is not carried over"
        }
        "user" | "working_dir" | "platform" | "pull_policy" | "profiles" | "stdin_open" | "tty"
        | "expose_ports" | "volumes_from" | "configs" | "scale" | "labels" => {
            "cloudlet has no equivalent in an app block"
        }
        _ => "cloudlet has no equivalent in an app block",
    }
}

struct Ctx<'a> {
    sources: &'a Sources,
    notes: Vec<Diagnostic>,
    errors: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn note(&mut self, node_mark: &Node, path: &str, message: String, help: &str) {
        let mut d = Diagnostic::at_location(
            Severity::Warning,
            "compose-dropped",
            Some(self.sources.location(node_mark.mark)),
            message,
        );
        d.path = Some(path.to_string());
        if !help.is_empty() {
            d = d.help(help);
        }
        self.notes.push(d);
    }

    fn error(&mut self, node: &Node, path: &str, message: String, help: &str) {
        let mut d = Diagnostic::at_location(
            Severity::Error,
            "compose-invalid",
            Some(self.sources.location(node.mark)),
            message,
        );
        d.path = Some(path.to_string());
        if !help.is_empty() {
            d = d.help(help);
        }
        self.errors.push(d);
    }
}

fn text(n: &Node) -> Option<String> {
    match &n.kind {
        NodeKind::Scalar(Scalar::Str(s)) => Some(s.clone()),
        NodeKind::Scalar(Scalar::Int(i)) => Some(i.to_string()),
        NodeKind::Scalar(Scalar::Float(f)) => Some(f.to_string()),
        NodeKind::Scalar(Scalar::Bool(b)) => Some(b.to_string()),
        _ => None,
    }
}

fn entries(n: &Node) -> &[(cloudlet_core::source::Key, Node)] {
    match &n.kind {
        NodeKind::Map(m) => m,
        _ => &[],
    }
}

fn items(n: &Node) -> &[Node] {
    match &n.kind {
        NodeKind::Seq(s) => s,
        _ => &[],
    }
}

/// A DNS label from a compose name (`my_service` → `my-service`).
fn label(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-').to_string();
    let mut out: String = out.chars().take(63).collect();
    if out.is_empty() {
        out = "x".into();
    }
    out
}

/// Splits a command string the way a shell would split plain words and quotes.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    any = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn command_of(n: &Node) -> Vec<String> {
    match &n.kind {
        NodeKind::Seq(items) => items.iter().filter_map(text).collect(),
        _ => text(n).map(|s| shell_words(&s)).unwrap_or_default(),
    }
}

/// A compose duration (`1m30s`, `10s`, `500ms`) in whole seconds, rounded up.
fn duration(s: &str) -> Option<Duration> {
    let mut total_ms: u64 = 0;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    if s.trim().is_empty() {
        return None;
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        let ms = match unit.as_str() {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "us" | "µs" => 0.001,
            _ => return None,
        };
        total_ms += (v * ms) as u64;
    }
    if !num.is_empty() {
        // A bare number is seconds.
        total_ms += (num.parse::<f64>().ok()? * 1000.0) as u64;
    }
    Some(Duration(total_ms.div_ceil(1000)))
}

/// `0.5` CPUs → `500m`.
fn cpu(s: &str) -> Option<String> {
    let v: f64 = s.trim().parse().ok()?;
    Some(format!("{}m", (v * 1000.0).round() as u64))
}

/// Compose memory (`512M`, `1g`, `1.5GB`, bytes) → a Kubernetes quantity (`512Mi`).
fn memory(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let v: f64 = s[..split].parse().ok()?;
    let bytes = match s[split..].trim_end_matches('b').trim_end_matches('i') {
        "" => v,
        "k" => v * 1024.0,
        "m" => v * 1024.0 * 1024.0,
        "g" => v * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let mib = (bytes / (1024.0 * 1024.0)).ceil() as u64;
    Some(crate::k8s::quantity_mib(mib))
}

/// An environment value that is a whole `${VAR}` / `$VAR` reference: the variable.
fn whole_reference(v: &str) -> Option<String> {
    let inner = v
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .or_else(|| v.strip_prefix('$'))?;
    let name = inner.split([':', '-', '?']).next()?;
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && inner.len() == name.len();
    ok.then(|| name.to_string())
}

struct PortSpec {
    target: u16,
    published: Option<u16>,
    protocol: Protocol,
    app_protocol: Option<String>,
}

/// Parses a short port (`[IP:][PUBLISHED[-END]:]TARGET[-END][/PROTO]`) into one spec per port.
fn short_ports(s: &str) -> Option<Vec<PortSpec>> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (s, "tcp"),
    };
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let range = |r: &str| -> Option<(u16, u16)> {
        match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => {
                let p = r.parse().ok()?;
                Some((p, p))
            }
        }
    };
    let (t0, t1) = range(parts[0])?;
    let published = match parts.get(1) {
        Some(p) if !p.is_empty() => Some(range(p)?),
        _ => None,
    };
    if t1 < t0 || t1 - t0 > 100 {
        return None;
    }
    Some(
        (t0..=t1)
            .enumerate()
            .map(|(i, target)| PortSpec {
                target,
                published: published.map(|(p0, _)| p0 + i as u16),
                protocol,
                app_protocol: None,
            })
            .collect(),
    )
}

/// Imports a compose file's text. `file` names it in messages; bind-mount and secret paths
/// stay relative to its directory.
pub fn import(file: &Path, source: &str, opts: &ComposeOptions) -> Result<Imported, ComposeError> {
    let mut sources = Sources::default();
    let fid = sources.add(file.to_path_buf(), Arc::from(source));
    let docs = match parse_yaml(fid, source) {
        Ok(d) => d,
        Err(errs) => {
            let diagnostics = errs.into_iter().map(|e| e.diagnostic(&sources)).collect();
            return Err(ComposeError {
                diagnostics,
                sources,
            });
        }
    };
    let mut cx = Ctx {
        sources: &sources,
        notes: Vec::new(),
        errors: Vec::new(),
    };
    let Some(root) = docs.first() else {
        return Err(ComposeError {
            diagnostics: vec![Diagnostic::at_location(
                Severity::Error,
                "compose-invalid",
                None,
                format!("{} is empty", file.display()),
            )],
            sources,
        });
    };
    let named = opts
        .project
        .clone()
        .or_else(|| root.get("name").and_then(text));
    let from_dir = || {
        let dir = file.canonicalize().ok()?.parent()?.to_path_buf();
        // As compose does: the directory's name, lower case, only `a-z0-9_-` kept.
        let name: String = dir
            .file_name()?
            .to_string_lossy()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            .collect();
        Some((name, dir))
    };
    let project = match named {
        Some(p) => label(&p),
        None => match from_dir() {
            Some((name, dir)) => {
                let project = label(&name);
                let others = sibling_compose_files(&dir, file);
                if !others.is_empty() {
                    let mut d = Diagnostic::at_location(
                        Severity::Warning,
                        "compose-project-name",
                        Some(sources.location(root.mark)),
                        format!(
                            "the project is named `{project}` after its directory, like {} in the same directory: their apps, namespaces and NAS folders would collide",
                            others.join(", ")
                        ),
                    );
                    d.help = Some("give each project its own name: `name:` at the top of the compose file, or `--project`".into());
                    cx.notes.push(d);
                }
                project
            }
            None => "compose".into(),
        },
    };

    for (k, v) in entries(root) {
        match k.name.as_str() {
            "services" | "volumes" | "secrets" | "name" => {}
            "version" => {}
            x if x.starts_with("x-") => {}
            other => cx.note(
                v,
                other,
                format!("top-level `{other}` is not carried over"),
                dropped_reason(other),
            ),
        }
    }
    let Some(services) = root.get("services") else {
        cx.error(
            root,
            "services",
            "a compose file needs `services:`".into(),
            "",
        );
        return Err(ComposeError {
            diagnostics: cx.errors,
            sources,
        });
    };
    let names: BTreeMap<String, String> = entries(services)
        .iter()
        .map(|(k, _)| (k.name.clone(), label(&k.name)))
        .collect();
    let top_secrets = root.get("secrets");
    let top_volumes = root.get("volumes");
    if let Some(tv) = top_volumes {
        for (k, v) in entries(tv) {
            for (opt, ov) in entries(v) {
                if matches!(
                    opt.name.as_str(),
                    "driver" | "driver_opts" | "external" | "name"
                ) {
                    cx.note(
                        ov,
                        &format!("volumes.{}.{}", k.name, opt.name),
                        format!("`{}` of volume `{}` is not carried over", opt.name, k.name),
                        "the volume lives on the lab's NFS export instead",
                    );
                }
            }
        }
    }

    let mut apps = BTreeMap::new();
    // Sources (named volumes, bind paths) → the directory they get on the export.
    let mut shared_ports: BTreeMap<(Protocol, u16), String> = BTreeMap::new();
    for (skey, svc) in entries(services) {
        let sname = &skey.name;
        let app_name = names[sname].clone();
        let sp = format!("services.{sname}");
        let mut app = App {
            image: String::new(),
            namespace: Some(project.clone()),
            replicas: 1,
            ports: Vec::new(),
            ingress: Vec::new(),
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            volumes: Vec::new(),
            resources: None,
            depends_on: Vec::new(),
            command: Vec::new(),
            args: Vec::new(),
            health: None,
            workload: cloudlet_core::model::Workload::Deployment,
            files: BTreeMap::new(),
            secret_files: BTreeMap::new(),
            dump: None,
        };
        // Labels first: they change how ports and volumes map.
        let mut labels: BTreeMap<String, String> = BTreeMap::new();
        if let Some(l) = svc.get("labels") {
            match &l.kind {
                NodeKind::Map(m) => {
                    for (k, v) in m {
                        labels.insert(k.name.clone(), text(v).unwrap_or_default());
                    }
                }
                NodeKind::Seq(s) => {
                    for it in s {
                        if let Some(t) = text(it) {
                            let (k, v) = t.split_once('=').unwrap_or((&t, ""));
                            labels.insert(k.to_string(), v.to_string());
                        }
                    }
                }
                _ => {}
            }
            let other: Vec<&String> = labels
                .keys()
                .filter(|k| !k.starts_with("kompose."))
                .collect();
            if !other.is_empty() {
                cx.note(
                    l,
                    &format!("{sp}.labels"),
                    format!(
                        "labels {} are not carried over",
                        other.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    ),
                    "cloudlet labels what it makes itself; add annotations through a raw manifest if a controller needs them",
                );
            }
        }
        let service_type = labels
            .get("kompose.service.type")
            .map(|s| s.to_ascii_lowercase());
        let expose_hosts: Vec<String> =
            match labels.get("kompose.service.expose").map(String::as_str) {
                None | Some("" | "false") => Vec::new(),
                Some("true") => vec![format!("{app_name}.{}", opts.domain)],
                Some(list) => list
                    .split(',')
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .collect(),
            };
        let size = labels
            .get("kompose.volume.size")
            .and_then(|s| {
                s.replace("Gi", "GiB")
                    .replace("Mi", "MiB")
                    .parse::<Size>()
                    .ok()
            })
            .unwrap_or(opts.default_size);
        for (lk, lv) in &labels {
            if lk == "kompose.controller.type" && lv == "statefulset" {
                app.workload = cloudlet_core::model::Workload::Statefulset;
            } else if lk == "kompose.controller.type" && lv != "deployment" {
                if let Some(l) = svc.get("labels") {
                    cx.note(
                        l,
                        &format!("{sp}.labels.{lk}"),
                        format!("`{lk}: {lv}` becomes a Deployment"),
                        "every node runs the app as a Deployment replica set; a daemonset needs a raw manifest",
                    );
                }
            } else if lk.starts_with("kompose.")
                && !matches!(
                    lk.as_str(),
                    "kompose.service.type"
                        | "kompose.service.expose"
                        | "kompose.volume.size"
                        | "kompose.controller.type"
                )
                && let Some(l) = svc.get("labels")
            {
                cx.note(
                    l,
                    &format!("{sp}.labels.{lk}"),
                    format!("`{lk}` is not carried over"),
                    "the lab's ingress class and TLS settings apply",
                );
            }
        }

        let mut port_specs: Vec<(PortSpec, &Node)> = Vec::new();
        // Compose secrets: (where listed, name, path in the container, variable, reference).
        let mut compose_secrets: Vec<(&Node, String, String, String, SecretRef)> = Vec::new();
        for (k, v) in entries(svc) {
            let kp = format!("{sp}.{}", k.name);
            match k.name.as_str() {
                "image" => app.image = text(v).unwrap_or_default(),
                "command" => app.args = command_of(v),
                "entrypoint" => app.command = command_of(v),
                "labels" => {}
                "environment" => match &v.kind {
                    NodeKind::Map(m) => {
                        for (ek, ev) in m {
                            env_entry(&mut cx, &mut app, &kp, &ek.name, text(ev), ev);
                        }
                    }
                    NodeKind::Seq(s) => {
                        for it in s {
                            if let Some(t) = text(it) {
                                match t.split_once('=') {
                                    Some((a, b)) => env_entry(
                                        &mut cx,
                                        &mut app,
                                        &kp,
                                        a,
                                        Some(b.to_string()),
                                        it,
                                    ),
                                    None => env_entry(&mut cx, &mut app, &kp, &t, None, it),
                                }
                            }
                        }
                    }
                    _ => {}
                },
                "ports" | "expose" => {
                    for (i, p) in items(v).iter().enumerate() {
                        let specs = match &p.kind {
                            NodeKind::Map(_) => {
                                let target =
                                    p.get("target").and_then(text).and_then(|t| t.parse().ok());
                                let published = p
                                    .get("published")
                                    .and_then(text)
                                    .and_then(|t| t.split('-').next().and_then(|x| x.parse().ok()));
                                let protocol = match p.get("protocol").and_then(text).as_deref() {
                                    Some("udp") => Protocol::Udp,
                                    _ => Protocol::Tcp,
                                };
                                target.map(|target| {
                                    vec![PortSpec {
                                        target,
                                        published,
                                        protocol,
                                        app_protocol: p.get("app_protocol").and_then(text),
                                    }]
                                })
                            }
                            _ => text(p).and_then(|t| {
                                if k.name == "expose" {
                                    // `expose:` ports are never published.
                                    short_ports(&t).map(|v| {
                                        v.into_iter()
                                            .map(|mut s| {
                                                s.published = None;
                                                s
                                            })
                                            .collect()
                                    })
                                } else {
                                    short_ports(&t)
                                }
                            }),
                        };
                        match specs {
                            Some(v) => port_specs.extend(v.into_iter().map(|s| (s, p))),
                            None => cx.error(
                                p,
                                &format!("{kp}[{i}]"),
                                "not a port".into(),
                                "write `PUBLISHED:TARGET[/udp]`, `TARGET`, or the long form with `target:`",
                            ),
                        }
                    }
                }
                "volumes" => {
                    let dir = file.parent().unwrap_or(Path::new(""));
                    for (i, vol) in items(v).iter().enumerate() {
                        volume_entry(
                            &mut cx,
                            &mut app,
                            &project,
                            opts,
                            size,
                            dir,
                            &format!("{kp}[{i}]"),
                            vol,
                        );
                    }
                }
                "depends_on" => {
                    let deps: Vec<String> = match &v.kind {
                        NodeKind::Seq(s) => s.iter().filter_map(text).collect(),
                        NodeKind::Map(m) => m.iter().map(|(k, _)| k.name.clone()).collect(),
                        _ => Vec::new(),
                    };
                    for d in deps {
                        match names.get(&d) {
                            Some(n) => app.depends_on.push(n.clone()),
                            None => cx.error(
                                v,
                                &kp,
                                format!("`{d}` is not a service of this project"),
                                "",
                            ),
                        }
                    }
                }
                "healthcheck" => app.health = health(&mut cx, &kp, v),
                "deploy" => deploy(&mut cx, &mut app, &kp, v),
                "secrets" => {
                    for s in items(v) {
                        let (source, target) = match &s.kind {
                            NodeKind::Map(_) => (
                                s.get("source").and_then(text).unwrap_or_default(),
                                s.get("target").and_then(text),
                            ),
                            _ => (text(s).unwrap_or_default(), None),
                        };
                        let var = label(target.as_deref().unwrap_or(&source))
                            .replace('-', "_")
                            .to_ascii_uppercase();
                        let def = top_secrets.and_then(|t| t.get(&source));
                        let r = def.and_then(|d| {
                            d.get("file")
                                .and_then(text)
                                .map(|f| {
                                    SecretRef::File(
                                        file.parent()
                                            .unwrap_or(Path::new(""))
                                            .join(f.trim_start_matches("./")),
                                    )
                                })
                                .or_else(|| d.get("environment").and_then(text).map(SecretRef::Env))
                        });
                        match r {
                            Some(r) => {
                                let at = match target.as_deref() {
                                    Some(t) if t.starts_with('/') => t.to_string(),
                                    Some(t) => format!("/run/secrets/{t}"),
                                    None => format!("/run/secrets/{source}"),
                                };
                                compose_secrets.push((s, source, at, var, r));
                            }
                            None => cx.error(
                                s,
                                &kp,
                                format!("secret `{source}` has no `file:` or `environment:` under the top-level `secrets:`"),
                                "",
                            ),
                        }
                    }
                }
                other if other.starts_with("x-") => {}
                other => cx.note(
                    v,
                    &kp,
                    format!("`{other}` of service `{sname}` is not carried over"),
                    dropped_reason(other),
                ),
            }
        }
        // A secret whose path a variable names (`POSTGRES_PASSWORD_FILE=/run/secrets/db`) is
        // mounted there, as compose does; any other is passed as a variable.
        for (node, source, at, var, r) in compose_secrets {
            if app.env.values().any(|v| *v == at) {
                app.secret_files.insert(at, r);
            } else {
                cx.note(
                    node,
                    &format!("{sp}.secrets"),
                    format!("secret `{source}` is passed as the environment variable {var}, not mounted at {at}"),
                    "apps that read *_FILE variables need their own setting changed; a variable whose value is the secret's path gets the file mounted there",
                );
                app.secrets.insert(var, r);
            }
        }
        if app.image.is_empty() {
            cx.error(
                svc,
                &sp,
                format!("service `{sname}` has no `image:`"),
                "cloudlet runs published images; build and push it, then set `image:`",
            );
        }

        // Ports: HTTP behind the ingress, other published ones on the shared VIP.
        let mut routed = false;
        for (spec, node) in port_specs {
            if app
                .ports
                .iter()
                .any(|p| p.port == spec.target && p.protocol == spec.protocol)
            {
                continue;
            }
            let http = spec.protocol == Protocol::Tcp
                && (spec
                    .app_protocol
                    .as_deref()
                    .is_some_and(|a| a.starts_with("http"))
                    || (!expose_hosts.is_empty() && !routed)
                    || HTTP_PORTS.contains(&spec.target));
            let mut expose = Expose::Cluster;
            if let Some(published) = spec.published {
                if service_type.as_deref() == Some("nodeport") {
                    cx.note(
                        node,
                        &format!("{sp}.ports"),
                        format!("NodePort for {} becomes a shared-VIP port", spec.target),
                        "MetalLB gives the lab stable addresses; node ports are not needed",
                    );
                }
                let internal = matches!(service_type.as_deref(), Some("clusterip" | "headless"));
                let lb = matches!(service_type.as_deref(), Some("loadbalancer" | "nodeport"));
                if internal {
                    // The label keeps it inside the cluster.
                } else if http && !lb && !routed {
                    let hosts = if expose_hosts.is_empty() {
                        vec![format!("{app_name}.{}", opts.domain)]
                    } else {
                        expose_hosts.clone()
                    };
                    for h in hosts {
                        let (host, path) = match h.split_once('/') {
                            Some((a, b)) => (a.to_string(), format!("/{b}")),
                            None => (h, "/".to_string()),
                        };
                        app.ingress.push(Route {
                            host,
                            path,
                            port: Some(spec.target),
                        });
                    }
                    routed = true;
                } else {
                    let key = (spec.protocol, spec.target);
                    match shared_ports.get(&key) {
                        Some(owner) => cx.note(
                            node,
                            &format!("{sp}.ports"),
                            format!(
                                "{} {} is already on the shared VIP for `{owner}`; it stays inside the cluster",
                                spec.protocol.as_str(),
                                spec.target
                            ),
                            "give one of them a VIP of its own (`expose: {vip: ...}`)",
                        ),
                        None => {
                            shared_ports.insert(key, app_name.clone());
                            expose = Expose::Shared;
                        }
                    }
                }
                if published != spec.target && expose == Expose::Shared {
                    cx.note(
                        node,
                        &format!("{sp}.ports"),
                        format!(
                            "published port {published} becomes {} on the shared VIP (the container's port)",
                            spec.target
                        ),
                        "forward the old port on the router if clients use it",
                    );
                }
            }
            app.ports.push(AppPort {
                name: None,
                port: spec.target,
                protocol: spec.protocol,
                expose,
            });
        }
        apps.insert(app_name, app);
    }
    reachable_by_name(&mut cx, &mut apps, services, &names);
    database_dumps(&mut cx, &mut apps, services, &names, opts);
    if !cx.errors.is_empty() {
        return Err(ComposeError {
            diagnostics: cx.errors,
            sources,
        });
    }
    let notes = cx.notes;
    Ok(Imported {
        project,
        apps,
        notes,
        sources,
    })
}

/// Other compose files in `dir` (top-level `services:`), by name, that would take the same
/// project name from it.
fn sibling_compose_files(dir: &Path, file: &Path) -> Vec<String> {
    let me = file.canonicalize().ok();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yml" || x == "yaml")
                && p.canonicalize().ok() != me
                && cloudlet_core::load::read_text(p).is_ok_and(|t| {
                    t.lines()
                        .any(|l| l.trim_end() == "services:" || l.starts_with("services:"))
                        && !t.lines().any(|l| l.starts_with("name:"))
                })
        })
        .filter_map(|p| p.file_name().map(|n| format!("`{}`", n.to_string_lossy())))
        .collect();
    out.sort();
    out
}

/// The ports others reach `host` on, read from their environment: `host:PORT` wherever the
/// name stands alone (`redis://cache:6379`, `DB=database:5432`).
fn ports_reached_on(host: &str, values: &[&str]) -> std::collections::BTreeSet<u16> {
    let mut out = std::collections::BTreeSet::new();
    for v in values {
        let mut from = 0;
        while let Some(i) = v[from..].find(host) {
            let at = from + i;
            let before = v[..at].chars().next_back();
            let after = &v[at + host.len()..];
            let alone = before
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'));
            if alone && let Some(rest) = after.strip_prefix(':') {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(p) = digits.parse::<u16>()
                    && p > 0
                {
                    out.insert(p);
                }
            }
            from = at + host.len();
        }
    }
    out
}

/// Whether `host` stands alone as a word in one of `values` (`DB_HOST: database`).
fn names_host(host: &str, values: &[&str]) -> bool {
    values.iter().any(|v| {
        v.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .any(|w| w == host)
    })
}

/// Compose services reach each other by name on any port the container listens on; in the
/// cluster a name needs a Service. A service that publishes and exposes nothing gets a
/// cluster-internal port for each port the others name it with (`cache:6379`); if they name
/// it without a port, or only depend on it, a warning says who cannot reach it.
fn reachable_by_name(
    cx: &mut Ctx<'_>,
    apps: &mut BTreeMap<String, App>,
    services: &Node,
    names: &BTreeMap<String, String>,
) {
    for (skey, svc) in entries(services) {
        let sname = &skey.name;
        let Some(app_name) = names.get(sname) else {
            continue;
        };
        if apps.get(app_name).is_none_or(|a| !a.ports.is_empty()) {
            continue;
        }
        let mut ports = std::collections::BTreeSet::new();
        let mut dependents = Vec::new();
        for (other, a) in apps.iter() {
            if other == app_name {
                continue;
            }
            let values: Vec<&str> = a.env.values().map(String::as_str).collect();
            let reached = ports_reached_on(sname, &values);
            if !reached.is_empty() || names_host(sname, &values) || a.depends_on.contains(app_name)
            {
                dependents.push(other.clone());
            }
            ports.extend(reached);
        }
        if dependents.is_empty() {
            continue;
        }
        let path = format!("services.{sname}");
        let who = dependents
            .iter()
            .map(|d| format!("`{d}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let known = apps.get(app_name).and_then(|a| known_database(&a.image));
        match (ports.is_empty(), known) {
            (true, Some(k)) => {
                ports.insert(k.port);
                cx.note(
                    svc,
                    &path,
                    format!(
                        "`{sname}` exposes no port; {} (the port of {} images) becomes a cluster Service port for {who}",
                        k.port, k.image
                    ),
                    "check the port, or add `expose:` to the service in the compose file",
                );
            }
            (true, None) => {
                cx.note(
                    svc,
                    &path,
                    format!(
                        "`{sname}` publishes and exposes no port, so {who} cannot reach it by name in the cluster"
                    ),
                    "add `expose: [PORT]` to the service in the compose file (or `ports:` to the app)",
                );
                continue;
            }
            (false, _) => {
                let list = ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                cx.note(
                    svc,
                    &path,
                    format!(
                        "`{sname}` exposes no port; {list} (how {who} reach it) becomes a cluster Service port"
                    ),
                    "check the port, or add `expose:` to the service in the compose file",
                );
            }
        }
        if let Some(app) = apps.get_mut(app_name) {
            for port in ports {
                app.ports.push(AppPort {
                    name: None,
                    port,
                    protocol: Protocol::Tcp,
                    expose: Expose::Cluster,
                });
            }
        }
    }
}

fn env_entry(
    cx: &mut Ctx<'_>,
    app: &mut App,
    path: &str,
    key: &str,
    value: Option<String>,
    node: &Node,
) {
    match value {
        None => {
            // `- KEY` takes the value from the environment compose runs in.
            app.secrets
                .insert(key.to_string(), SecretRef::Env(key.to_string()));
        }
        Some(v) => match whole_reference(&v) {
            Some(var) => {
                app.secrets.insert(key.to_string(), SecretRef::Env(var));
            }
            None if v.replace("$$", "").contains('$') => {
                cx.note(
                    node,
                    &format!("{path}.{key}"),
                    format!("`{key}` interpolates variables inside text; it is kept as written"),
                    "replace it with the final value, or with a whole `${VAR}` to read it from the environment at apply time",
                );
                app.env.insert(key.to_string(), v);
            }
            None => {
                app.env.insert(key.to_string(), v);
            }
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn volume_entry(
    cx: &mut Ctx<'_>,
    app: &mut App,
    project: &str,
    opts: &ComposeOptions,
    size: Size,
    dir: &Path,
    path: &str,
    node: &Node,
) {
    let (kind, source, target, read_only) = match &node.kind {
        NodeKind::Map(_) => (
            node.get("type")
                .and_then(text)
                .unwrap_or_else(|| "volume".into()),
            node.get("source").and_then(text),
            node.get("target").and_then(text).unwrap_or_default(),
            node.get("read_only")
                .is_some_and(|r| matches!(r.kind, NodeKind::Scalar(Scalar::Bool(true)))),
        ),
        _ => {
            let t = text(node).unwrap_or_default();
            let parts: Vec<&str> = t.split(':').collect();
            match parts.as_slice() {
                [target] => ("volume".into(), None, (*target).to_string(), false),
                [source, target] => (
                    bind_or_volume(source),
                    Some((*source).to_string()),
                    (*target).to_string(),
                    false,
                ),
                [source, target, mode, ..] => (
                    bind_or_volume(source),
                    Some((*source).to_string()),
                    (*target).to_string(),
                    mode.split(',').any(|m| m == "ro"),
                ),
                [] => ("volume".into(), None, String::new(), false),
            }
        }
    };
    if kind == "tmpfs" {
        cx.note(
            node,
            path,
            format!("tmpfs at {target} is not carried over"),
            "the container's own filesystem is scratch space already",
        );
        return;
    }
    let Some(source) = source.filter(|s| !s.is_empty()) else {
        cx.note(
            node,
            path,
            format!("the anonymous volume at {target} is not carried over"),
            "its data would be lost on every restart; give it a name to keep it on the NAS",
        );
        return;
    };
    let host_system = kind == "bind"
        && (source == "/"
            || [
                "/etc/",
                "/proc",
                "/sys",
                "/dev",
                "/run",
                "/var/run",
                "/var/lib/docker",
                "/lib/modules",
            ]
            .iter()
            .any(|p| source.starts_with(p)));
    if host_system && !source.contains("docker.sock") {
        cx.note(
            node,
            path,
            format!("the host path {source} is not mounted"),
            "pods do not see their node's system files; for the time zone set `TZ` in `env:`",
        );
        return;
    }
    if source.contains("docker.sock") {
        cx.note(
            node,
            path,
            format!("{source} is not mounted"),
            "there is no Docker engine on a Kubernetes node; apps that drive Docker need a redesign",
        );
        return;
    }
    let local = dir.join(source.trim_start_matches("./"));
    if kind == "bind" && !source.starts_with('/') && local.is_file() {
        cx.note(
            node,
            path,
            format!("the file {source} is mounted read-only from a ConfigMap at {target}"),
            "its contents are read from the lab directory at every apply; edit it there",
        );
        app.files.insert(target, local);
        return;
    }
    let (name, sub) = if kind == "bind" {
        let clean: String = source
            .trim_start_matches("./")
            .trim_start_matches('/')
            .trim_start_matches("~/")
            .to_string();
        let base = clean.rsplit('/').find(|p| !p.is_empty()).unwrap_or("data");
        let base = base.rsplit_once('.').map_or(base, |(b, _)| b);
        cx.note(
            node,
            path,
            format!(
                "bind mount {source} moves to the NAS at {}/{project}/{}",
                opts.export,
                clean.trim_end_matches('/')
            ),
            "copy the directory's contents there before the first start",
        );
        (
            label(base),
            format!("{project}/{}", clean.trim_end_matches('/')),
        )
    } else {
        (label(&source), format!("{project}/{}", label(&source)))
    };
    if read_only {
        cx.note(
            node,
            path,
            format!("`:ro` on {target} is not carried over"),
            "the volume is mounted read-write",
        );
    }
    let mut vname = name.clone();
    let mut n = 2;
    while app.volumes.iter().any(|v| v.name == vname) {
        vname = format!("{name}-{n}");
        n += 1;
    }
    app.volumes.push(Volume {
        name: vname,
        export: opts.export.clone(),
        sub_path: Some(sub),
        mount: target,
        size,
        sqlite: false,
        database: false,
        access: cloudlet_core::model::Access::default(),
        owner: None,
        mode: None,
        snapshots: None,
        retain: true,
    });
}

fn bind_or_volume(source: &str) -> String {
    if source.starts_with('/') || source.starts_with('.') || source.starts_with('~') {
        "bind".into()
    } else {
        "volume".into()
    }
}

fn health(cx: &mut Ctx<'_>, path: &str, node: &Node) -> Option<Health> {
    if node
        .get("disable")
        .is_some_and(|d| matches!(d.kind, NodeKind::Scalar(Scalar::Bool(true))))
    {
        return None;
    }
    let test = node.get("test")?;
    let command = match &test.kind {
        NodeKind::Seq(s) => {
            let words: Vec<String> = s.iter().filter_map(text).collect();
            match words.first().map(String::as_str) {
                Some("NONE") => return None,
                Some("CMD") => words[1..].to_vec(),
                Some("CMD-SHELL") => vec!["sh".into(), "-c".into(), words[1..].join(" ")],
                _ => words,
            }
        }
        _ => vec!["sh".into(), "-c".into(), text(test).unwrap_or_default()],
    };
    if command.is_empty() {
        return None;
    }
    let dur = |k: &str, d: u64, cx: &mut Ctx<'_>| -> Duration {
        match node.get(k).and_then(text) {
            Some(s) => duration(&s).unwrap_or_else(|| {
                cx.note(
                    node,
                    &format!("{path}.{k}"),
                    format!("`{s}` is not a duration; {d}s is used"),
                    "",
                );
                Duration(d)
            }),
            None => Duration(d),
        }
    };
    if let Some(si) = node.get("start_interval") {
        cx.note(
            si,
            &format!("{path}.start_interval"),
            "`start_interval` is not carried over".into(),
            "",
        );
    }
    Some(Health {
        command,
        interval: dur("interval", 30, cx),
        timeout: dur("timeout", 30, cx),
        retries: node
            .get("retries")
            .and_then(text)
            .and_then(|r| r.parse().ok())
            .unwrap_or(3),
        start_period: dur("start_period", 0, cx),
    })
}

fn deploy(cx: &mut Ctx<'_>, app: &mut App, path: &str, node: &Node) {
    for (k, v) in entries(node) {
        match k.name.as_str() {
            "replicas" => app.replicas = text(v).and_then(|r| r.parse().ok()).unwrap_or(1),
            "resources" => {
                for (rk, rv) in entries(v) {
                    match rk.name.as_str() {
                        "reservations" => {
                            let c = rv.get("cpus").and_then(text).and_then(|c| cpu(&c));
                            let m = rv.get("memory").and_then(text).and_then(|m| memory(&m));
                            app.resources = Some(Resources { cpu: c, memory: m });
                        }
                        other => cx.note(
                            rv,
                            &format!("{path}.resources.{other}"),
                            format!("deploy.resources.{other} is not carried over"),
                            "cloudlet sets requests (reservations); limits on a one-person cluster mostly cause OOM kills",
                        ),
                    }
                }
            }
            other => cx.note(
                v,
                &format!("{path}.{other}"),
                format!("deploy.{other} is not carried over"),
                "Kubernetes schedules and restarts the app itself",
            ),
        }
    }
}

/// The apps as a YAML fragment for a lab file (`cluster: apps: ...`), defaults left out.
pub fn to_yaml(imported: &Imported) -> String {
    let mut out = format!(
        "# Imported from docker-compose project `{}` by `cloudlet import compose`.\ncluster:\n  apps:\n",
        imported.project
    );
    for (name, app) in &imported.apps {
        let mut v = serde_json::to_value(app).unwrap_or_default();
        prune(&mut v);
        out.push_str(&format!("    {}:\n", yaml::scalar(name)));
        yaml::emit(&v, 6, &["expose", "resources", "health"], &mut out);
    }
    out
}

/// Removes what the lab format fills in by default.
fn prune(v: &mut serde_json::Value) {
    use serde_json::Value;
    if let Value::Object(m) = v {
        m.retain(|k, x| {
            prune(x);
            !(x.is_null()
                || x.as_array().is_some_and(Vec::is_empty)
                || x.as_object().is_some_and(serde_json::Map::is_empty)
                || (k == "replicas" && *x == 1)
                || (k == "expose" && *x == "cluster")
                || (k == "protocol" && *x == "tcp")
                || (k == "path" && *x == "/")
                || (k == "sqlite" && *x == false)
                || (k == "retries" && *x == 3)
                || ((k == "interval" || k == "timeout") && *x == "30s")
                || (k == "start_period" && *x == "0s")
                || (k == "workload" && *x == "deployment"))
        });
    } else if let Value::Array(a) = v {
        for x in a {
            prune(x);
        }
    }
}

/// An official database image the import knows: what dumps it, where it keeps its files, the
/// port it listens on.
struct KnownDatabase {
    image: &'static str,
    kind: DumpKind,
    data: &'static str,
    port: u16,
}

/// The database image `image` runs, if the import knows it (by its repository's last part:
/// `postgres:16`, `docker.io/library/mariadb:11.4`, `registry.lan:5000/mysql:8`).
fn known_database(image: &str) -> Option<KnownDatabase> {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    let repo = last.split(':').next().unwrap_or(last);
    match repo {
        "postgres" => Some(KnownDatabase {
            image: "postgres",
            kind: DumpKind::Postgres,
            data: "/var/lib/postgresql",
            port: 5432,
        }),
        "mariadb" | "mysql" => Some(KnownDatabase {
            image: if repo == "mysql" { "mysql" } else { "mariadb" },
            kind: DumpKind::Mysql,
            data: "/var/lib/mysql",
            port: 3306,
        }),
        _ => None,
    }
}

/// Whether a volume mounted at `mount` holds the files of a server keeping them in `data`
/// (one within the other: postgres 18 is mounted at `/var/lib/postgresql`, older ones at
/// `/var/lib/postgresql/data`).
fn holds(mount: &str, data: &str) -> bool {
    let (m, d) = (mount.trim_end_matches('/'), data.trim_end_matches('/'));
    m == d
        || m.strip_prefix(d).is_some_and(|r| r.starts_with('/'))
        || d.strip_prefix(m).is_some_and(|r| r.starts_with('/'))
}

/// Services of the database images the import knows: the volumes holding their files are
/// marked `database` (a copy of a running server's files may not load), and, when
/// `opts.dumps`, they get a `dump` of their database, named by the image's own variables
/// (`POSTGRES_DB`, `MARIADB_DATABASE`), with the password the image takes from a variable
/// that is a secret reference; what keeps one from being made is said.
fn database_dumps(
    cx: &mut Ctx<'_>,
    apps: &mut BTreeMap<String, App>,
    services: &Node,
    names: &BTreeMap<String, String>,
    opts: &ComposeOptions,
) {
    for (skey, svc) in entries(services) {
        let sname = &skey.name;
        let Some(app_name) = names.get(sname) else {
            continue;
        };
        let Some(app) = apps.get_mut(app_name) else {
            continue;
        };
        let Some(known) = known_database(&app.image) else {
            continue;
        };
        let data = match known.kind {
            DumpKind::Postgres => app.env.get("PGDATA").cloned(),
            _ => None,
        }
        .unwrap_or_else(|| known.data.to_string());
        let mut marked = false;
        for v in &mut app.volumes {
            if holds(&v.mount, &data) {
                v.database = true;
                marked = true;
            }
        }
        if !marked || !opts.dumps {
            continue;
        }
        let path = format!("services.{sname}.environment");
        let env = |k: &str| app.env.get(k).cloned();
        let secret = |keys: &[&str]| {
            keys.iter()
                .find(|k| app.secrets.contains_key(**k))
                .map(|k| k.to_string())
        };
        let (user, password, database, wanted) = match known.kind {
            DumpKind::Postgres => {
                let user = env("POSTGRES_USER").unwrap_or_else(|| "postgres".into());
                let database = env("POSTGRES_DB").unwrap_or_else(|| user.clone());
                let trust = env("POSTGRES_HOST_AUTH_METHOD").as_deref() == Some("trust");
                let password = secret(&["POSTGRES_PASSWORD"]);
                let ok = password.is_some() || trust;
                (
                    user,
                    password,
                    Some(database),
                    (!ok).then_some("POSTGRES_PASSWORD"),
                )
            }
            _ => {
                let database = env("MARIADB_DATABASE").or_else(|| env("MYSQL_DATABASE"));
                match secret(&["MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"]) {
                    Some(root) => ("root".to_string(), Some(root), database, None),
                    None => match (
                        env("MARIADB_USER").or_else(|| env("MYSQL_USER")),
                        secret(&["MARIADB_PASSWORD", "MYSQL_PASSWORD"]),
                    ) {
                        (Some(user), Some(pw)) => (user, Some(pw), database, None),
                        _ => (String::new(), None, database, Some("MARIADB_ROOT_PASSWORD")),
                    },
                }
            }
        };
        let node = svc.get("environment").unwrap_or(svc);
        if let Some(var) = wanted {
            let why = if app.env.contains_key(var) {
                format!("`{var}` is written in the compose file")
            } else if app.env.contains_key(&format!("{var}_FILE")) {
                format!("`{sname}` reads its password from a file (`{var}_FILE`)")
            } else {
                format!("`{sname}` has no `{var}` from the environment")
            };
            cx.note(
                node,
                &path,
                format!("`{sname}` gets no database dump: {why}, and the dump takes the password from a secret reference"),
                &format!("set `{var}: ${{DB_PASSWORD}}` in the compose file (cloudlet reads DB_PASSWORD where it runs), or give the app a `dump:` in the lab"),
            );
            continue;
        }
        let Some(database) = database else {
            cx.note(
                node,
                &path,
                format!(
                    "`{sname}` gets no database dump: it names no database (`MARIADB_DATABASE`)"
                ),
                "set `MARIADB_DATABASE`, or give the app a `dump:` in the lab",
            );
            continue;
        };
        if let Some(why) = known.kind.database_problem(&database) {
            cx.note(
                node,
                &path,
                format!(
                    "`{sname}` gets no database dump: `{database}` cannot be its database: {why}"
                ),
                "give the app a `dump:` in the lab with the database it should dump",
            );
            continue;
        }
        if app.ports.is_empty() {
            app.ports.push(AppPort {
                name: None,
                port: known.port,
                protocol: Protocol::Tcp,
                expose: Expose::Cluster,
            });
        }
        let default_user = matches!(
            (known.kind, user.as_str()),
            (DumpKind::Postgres, "postgres") | (DumpKind::Mysql, "root")
        );
        app.dump = Some(Dump {
            kind: known.kind,
            database: (database != *app_name).then_some(database),
            user: (!default_user).then_some(user),
            password,
            command: Vec::new(),
            verify: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_cpus_memory_words() {
        assert_eq!(duration("1m30s"), Some(Duration(90)));
        assert_eq!(duration("500ms"), Some(Duration(1)));
        assert_eq!(duration("10"), Some(Duration(10)));
        assert_eq!(duration("soon"), None);
        assert_eq!(cpu("0.5").as_deref(), Some("500m"));
        assert_eq!(memory("512M").as_deref(), Some("512Mi"));
        assert_eq!(memory("2g").as_deref(), Some("2Gi"));
        assert_eq!(memory("1.5GB").as_deref(), Some("1536Mi"));
        assert_eq!(
            shell_words(r#"sh -c "echo 'a b'" c\ d"#),
            vec!["sh", "-c", "echo 'a b'", "c d"]
        );
        assert_eq!(whole_reference("${DB_PASS}").as_deref(), Some("DB_PASS"));
        assert_eq!(whole_reference("$DB_PASS").as_deref(), Some("DB_PASS"));
        assert_eq!(whole_reference("x${DB_PASS}"), None);
    }

    #[test]
    fn short_port_forms() {
        let p = short_ports("127.0.0.1:8080:80").unwrap();
        assert_eq!((p[0].target, p[0].published), (80, Some(8080)));
        let p = short_ports("51820:51820/udp").unwrap();
        assert_eq!(p[0].protocol, Protocol::Udp);
        let p = short_ports("8000-8002:9000-9002").unwrap();
        assert_eq!(
            p.iter()
                .map(|s| (s.target, s.published.unwrap()))
                .collect::<Vec<_>>(),
            vec![(9000, 8000), (9001, 8001), (9002, 8002)]
        );
        assert_eq!(short_ports("80").unwrap()[0].published, None);
        assert!(short_ports("80/sctp").is_none());
        assert!(short_ports("http").is_none());
    }
}
