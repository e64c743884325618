//! Printing: diagnostics, plans, progress and reports.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::process::ExitCode;

use cloudlet::core::LoadError;
use cloudlet::{Action, ApplyReport, Error, Event, Lab, Plan};
use indicatif::{ProgressBar, ProgressStyle};

pub(crate) fn validate(lab: &Lab, json: bool) -> ExitCode {
    let report = lab.validate();
    if json {
        println!("{}", report_json(&report));
    } else {
        for d in &report.diagnostics {
            eprint!("{}", d.render(lab.sources()));
        }
        let errors = report.errors().count();
        let warnings = report.diagnostics.len() - errors;
        if errors == 0 {
            println!(
                "lab `{}` is valid ({} machines, {} apps{})",
                lab.model().name,
                lab.model().machines.len(),
                lab.model().cluster.as_ref().map_or(0, |c| c.apps.len()),
                if warnings > 0 {
                    format!(", {warnings} warning(s)")
                } else {
                    String::new()
                }
            );
        } else {
            eprintln!("{errors} error(s), {warnings} warning(s)");
        }
    }
    if report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `validate --output json` of a lab that did not load: the same report, on stdout.
pub(crate) fn validate_failed(e: &Error) -> ExitCode {
    println!("{}", report_json(&cloudlet::Report::from_error(e)));
    ExitCode::from(1)
}

/// `validate --output json`: the format version, whether the lab is valid, the counts, and
/// every finding with its range (`location` to `end`), as `terraform validate -json` gives
/// editors and CI.
fn report_json(report: &cloudlet::Report) -> String {
    let errors = report.errors().count();
    serde_json::to_string_pretty(&serde_json::json!({
        "format": JSON_FORMAT,
        "valid": errors == 0,
        "error_count": errors,
        "warning_count": report.diagnostics.len() - errors,
        "diagnostics": report.diagnostics,
    }))
    .unwrap_or_default()
}

pub(crate) fn error(e: &Error, lab: Option<&Lab>) {
    match e {
        Error::Load(LoadError::Invalid {
            diagnostics,
            sources,
        }) => {
            for d in diagnostics {
                eprint!("{}", d.render(sources));
            }
            eprintln!("{} error(s)", diagnostics.len());
        }
        Error::Invalid { diagnostics } => {
            if let Some(lab) = lab {
                for d in diagnostics.iter().filter(|d| d.is_error()) {
                    eprint!("{}", d.render(lab.sources()));
                }
            }
            eprintln!("error: {e}");
        }
        other => eprintln!("error: {}", cloudlet::core::diag::printable(&chain(other))),
    }
}

/// When plans are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set (no-color.org).
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

static COLOR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Decides once, for this process, whether output is coloured.
pub(crate) fn set_color(choice: ColorChoice) {
    let on = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    };
    let _ = COLOR.set(on);
}

/// `text` in the SGR colour `code` when output is coloured.
fn paint(code: &str, text: &str) -> String {
    if COLOR.get().copied().unwrap_or(false) {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn sign(a: Action) -> &'static str {
    match a {
        Action::Create => "+",
        Action::Update => "~",
        Action::Delete => "-",
    }
}

/// Green for creates, yellow for updates, red for deletes (as terraform colours them).
fn action_color(a: Action) -> &'static str {
    match a {
        Action::Create => "32",
        Action::Update => "33",
        Action::Delete => "31",
    }
}

fn short(v: Option<&serde_json::Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(v) => {
            let s = v.to_string();
            if s.len() > 80 {
                format!("{}…", s.chars().take(79).collect::<String>())
            } else {
                s
            }
        }
    }
}

pub(crate) fn plan_text(p: &Plan) -> String {
    let mut s = String::new();
    if p.destroy {
        let _ = writeln!(
            s,
            "{}",
            paint(
                "1;31",
                &format!("Destroy: everything lab `{}` owns is removed.", p.lab)
            )
        );
    }
    if !p.targets.is_empty() {
        let _ = writeln!(
            s,
            "Targeted at {} and the steps they need; the rest of the lab is left as it is.",
            p.targets.join(", ")
        );
    }
    for step in &p.steps {
        let _ = writeln!(
            s,
            "  {} {}",
            paint(
                action_color(step.action),
                &format!("{} {:<6}", sign(step.action), step.action.as_str())
            ),
            step.id
        );
        if matches!(step.action, Action::Create | Action::Delete)
            && let Some(h) = cloudlet::headline(&step.resource)
        {
            let _ = writeln!(s, "        {h}");
        }
        if step.data_loss {
            let _ = writeln!(
                s,
                "        {}",
                paint(
                    "1;31",
                    "DATA LOSS: its data is deleted (the lab says `retain: false`)"
                )
            );
        }
        for c in &step.changes {
            let _ = writeln!(
                s,
                "        {}: {} → {}",
                c.path,
                short(c.before.as_ref()),
                short(c.after.as_ref())
            );
        }
    }
    if !p.held.is_empty() {
        let _ = writeln!(
            s,
            "Held by other writers (left as they are; --take-over plans them back):"
        );
        for h in &p.held {
            let _ = writeln!(
                s,
                "  ~ {} {}: {} (by {}; the lab says {})",
                h.id,
                h.change.path,
                short(h.change.before.as_ref()),
                h.by,
                short(h.change.after.as_ref())
            );
        }
    }
    if !p.kept.is_empty() {
        let _ = writeln!(
            s,
            "{}",
            if p.destroy {
                "Kept (hold data the lab retains, or are needed by what does; not deleted — `retain: false` lets data go):"
            } else {
                "Kept (left the lab but hold data, or objects cloudlet does not own; not deleted — `retain: false` lets data go, the log names the objects):"
            }
        );
        for id in &p.kept {
            let _ = writeln!(s, "  = {id}");
        }
    }
    let sm = p.summary;
    if sm.data_loss > 0 {
        let _ = writeln!(
            s,
            "{} step(s) delete data: apply needs --allow-data-loss.",
            sm.data_loss
        );
    }
    if sm.has_changes() {
        let _ = writeln!(
            s,
            "Plan for lab `{}`: {} to create, {} to update, {} to delete, {} unchanged.",
            p.lab, sm.create, sm.update, sm.delete, sm.unchanged
        );
    } else {
        let _ = writeln!(
            s,
            "No changes: the infrastructure matches lab `{}` ({} resources).",
            p.lab, sm.unchanged
        );
    }
    s
}

/// A plan as a Graphviz DOT graph: a node per step (its action and id, coloured by action), an
/// edge from each step to the steps that wait for it.
pub(crate) fn plan_dot(p: &Plan) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut s = String::new();
    let _ = writeln!(s, "digraph {} {{", quote(&format!("plan of {}", p.lab)));
    let _ = writeln!(
        s,
        "  rankdir=LR;\n  node [shape=box, style=rounded, fontname=monospace];"
    );
    let planned: std::collections::HashSet<String> =
        p.steps.iter().map(|st| st.id.to_string()).collect();
    for st in &p.steps {
        let color = match st.action {
            Action::Create => "darkgreen",
            Action::Update => "darkgoldenrod",
            Action::Delete => "red3",
        };
        let id = st.id.to_string();
        let _ = writeln!(
            s,
            "  {} [label={}, color={color}];",
            quote(&id),
            quote(&format!("{} {}", sign(st.action), id))
        );
    }
    for st in &p.steps {
        for before in &st.after {
            let b = before.to_string();
            // Edges between planned steps only: what is already as desired waits for nothing.
            if planned.contains(&b) {
                let _ = writeln!(s, "  {} -> {};", quote(&b), quote(&st.id.to_string()));
            }
        }
    }
    s.push_str("}\n");
    s
}

pub(crate) fn report_text(r: &ApplyReport) -> String {
    let mut s = String::new();
    for (id, e) in &r.failed {
        let _ = writeln!(s, "failed: {id}: {e}");
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(
            s,
            "{} step(s) did not run (they depend on a failed step or the apply was cancelled)",
            r.skipped.len()
        );
    }
    let d = r.done;
    let _ = writeln!(
        s,
        "Apply {}: {} created, {} updated, {} deleted, {} failed, {} skipped.",
        if r.is_success() {
            "complete"
        } else if r.cancelled {
            "cancelled"
        } else {
            "failed"
        },
        d.create,
        d.update,
        d.delete,
        r.failed.len(),
        r.skipped.len()
    );
    s
}

/// On a terminal: a bar with the steps in flight below it, and one line left per finished
/// step (as terraform does); plain lines otherwise.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    in_flight: std::sync::Mutex<Vec<String>>,
}

impl Progress {
    pub(crate) fn new(steps: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(steps as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            in_flight: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The bar's message: the steps in flight, oldest first.
    fn flight(&self, b: &ProgressBar, started: Option<String>, done: Option<&str>) {
        let mut f = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = started {
            f.push(s);
        }
        if let Some(d) = done {
            f.retain(|s| !s.ends_with(d));
        }
        let msg = match f.len() {
            0 => String::new(),
            1..=3 => f.join(", "),
            n => format!("{} and {} more in flight", f[..3].join(", "), n - 3),
        };
        b.set_message(msg);
    }

    pub(crate) fn event(&self, e: &Event) {
        match (&self.bar, e) {
            (Some(b), Event::StepStarted { id, action }) => {
                self.flight(b, Some(format!("{} {id}", action.as_str())), None)
            }
            (Some(b), Event::StepDone { id, action, millis }) => {
                b.println(format!("{} {id} ({millis} ms)", past(*action)));
                b.inc(1);
                self.flight(b, None, Some(&format!(" {id}")));
            }
            (Some(b), Event::StepSkipped { id, reason, .. }) => {
                b.println(format!("skipped {id}: {reason}"));
                b.inc(1);
                self.flight(b, None, Some(&format!(" {id}")));
            }
            (Some(b), Event::StepFailed { id, action, error }) => {
                b.println(format!("failed to {} {id}: {error}", action.as_str()));
                b.inc(1);
                self.flight(b, None, Some(&format!(" {id}")));
            }
            (Some(b), Event::Resumed { interrupted }) => b.println(resumed(interrupted)),
            (None, Event::StepDone { id, action, millis }) => {
                eprintln!("{} {id} ({millis} ms)", past(*action))
            }
            (None, Event::StepFailed { id, action, error }) => {
                eprintln!("failed to {} {id}: {error}", action.as_str())
            }
            (None, Event::StepSkipped { id, reason, .. }) => eprintln!("skipped {id}: {reason}"),
            (None, Event::Resumed { interrupted }) => eprintln!("{}", resumed(interrupted)),
            _ => {}
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The format version of the CLI's JSON-lines output (`apply`/`destroy --output json`).
pub(crate) const JSON_FORMAT: u32 = 1;

/// One JSON line on stdout: `value`'s fields with `format` and, unless `kind` is empty (the
/// value names its own `type`), `type`.
pub(crate) fn json_line(kind: &str, value: &impl serde::Serialize) {
    let v = serde_json::to_value(value).unwrap_or_default();
    let mut line = match v {
        serde_json::Value::Object(m) => m,
        other => {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), other);
            m
        }
    };
    line.insert("format".into(), JSON_FORMAT.into());
    if !kind.is_empty() {
        line.insert("type".into(), kind.into());
    }
    println!("{}", serde_json::Value::Object(line));
}

/// A plan as JSON lines: `plan` (lab, destroy, targets, counts), then a `planned_change` per
/// step (id, action, data loss, the changed fields' paths) and a `kept` per resource kept.
pub(crate) fn json_plan(p: &Plan) {
    json_line(
        "plan",
        &serde_json::json!({
            "lab": p.lab,
            "destroy": p.destroy,
            "targets": p.targets,
            "summary": p.summary,
        }),
    );
    for st in &p.steps {
        json_line(
            "planned_change",
            &serde_json::json!({
                "id": st.id,
                "action": st.action,
                "data_loss": st.data_loss,
                "after": st.after,
                "changes": st.changes.iter().map(|c| &c.path).collect::<Vec<_>>(),
            }),
        );
    }
    for id in &p.kept {
        json_line("kept", &serde_json::json!({ "id": id }));
    }
}

/// A failure as a JSON line: its stable code and its message with causes.
pub(crate) fn json_error(e: &Error) {
    json_line(
        "error",
        &serde_json::json!({
            "code": e.kind().code(),
            "message": cloudlet::core::diag::printable(&chain(e)).into_owned(),
        }),
    );
}

fn chain(e: &Error) -> String {
    let mut msg = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let _ = write!(msg, ": {c}");
        cur = c.source();
    }
    msg
}

/// `cloudlet list`: per backend, what cloudlet owns.
pub(crate) fn owned_text(lab: &Lab, owned: &[cloudlet::Owned]) -> String {
    let mut s = String::new();
    if owned.is_empty() {
        let _ = writeln!(
            s,
            "cloudlet owns nothing for lab `{}` in its backends.",
            lab.model().name
        );
        return s;
    }
    let mut last: Option<(cloudlet::core::resource::Domain, &str)> = None;
    for o in owned {
        let here = (o.id.domain, o.backend.as_str());
        if last != Some(here) {
            let _ = writeln!(s, "{} ({}):", o.id.domain, o.backend);
            last = Some(here);
        }
        let mut notes = Vec::new();
        if !o.in_lab {
            notes.push("not in the lab");
        }
        if o.retains_data {
            notes.push("holds retained data");
        }
        let _ = writeln!(
            s,
            "  {}/{}{}",
            o.id.kind,
            o.id.name,
            if notes.is_empty() {
                String::new()
            } else {
                format!("  ({})", notes.join(", "))
            }
        );
    }
    let gone = owned.iter().filter(|o| !o.in_lab).count();
    let _ = writeln!(
        s,
        "{} resource(s) owned by lab `{}`; {} not in the lab.",
        owned.len(),
        lab.model().name,
        gone
    );
    s
}

/// `cloudlet list --output json`.
pub(crate) fn owned_json(owned: &[cloudlet::Owned]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "format": JSON_FORMAT,
        "resources": owned,
    }))
    .unwrap_or_default()
}

fn resumed(i: &cloudlet::core::store::Interrupted) -> String {
    format!(
        "note: the previous apply ({}) was interrupted after {} step(s); {} step(s) in flight were re-observed and are planned again only if needed",
        i.apply,
        i.done,
        i.in_flight.len()
    )
}

fn past(a: Action) -> &'static str {
    match a {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Delete => "deleted",
    }
}

/// One line per boot service event.
pub(crate) fn pxe_event(e: &cloudlet::pxe::service::Event) -> String {
    use cloudlet::pxe::service::Event as E;
    let at = clock(now());
    match e {
        E::Dhcp {
            machine,
            file,
            port4011,
        } => format!(
            "{at}  {machine:<20} proxyDHCP{} → {file}",
            if *port4011 { " (port 4011)" } else { "" }
        ),
        E::Boot {
            machine,
            answer,
            via,
        } => format!(
            "{at}  {machine:<20} boots ({via}): {}",
            if *answer == "install" {
                "install"
            } else {
                "local disk (installed)"
            }
        ),
        E::Config { machine, file } => format!("{at}  {machine:<20} fetched its {file}"),
        E::Refused { machine, peer, why } => {
            format!("{at}  {machine:<20} REFUSED to {peer}: {why}")
        }
        E::Reported { machine, ok, note } => format!(
            "{at}  {machine:<20} {}{}",
            if *ok { "installed" } else { "install FAILED" },
            note.as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        ),
    }
}

fn now() -> u64 {
    cloudlet::core::store::now_ms() / 1000
}

/// `HH:MM:SS` (UTC) of a Unix time.
fn clock(t: u64) -> String {
    format!("{:02}:{:02}:{:02}", t / 3600 % 24, t / 60 % 60, t % 60)
}

/// A boot service event on standard error (during an apply).
pub(crate) fn print_pxe_event(e: &cloudlet::pxe::service::Event) {
    eprintln!("{}", pxe_event(e));
}

/// What the network installs came to while an apply served them.
pub(crate) fn installs_text(o: &cloudlet::InstallOutcome) -> String {
    let mut s = String::from("Network installs:\n");
    for m in &o.machines {
        let _ = writeln!(s, "{}", pxe_machine(m));
    }
    if !o.not_reported.is_empty() {
        let _ = writeln!(
            s,
            "Not installed after {}s: {} (see `cloudlet pxe status`; `cloudlet pxe serve` keeps serving)",
            o.waited.as_secs(),
            o.not_reported.join(", ")
        );
    }
    s
}

/// One line per network-installed machine.
pub(crate) fn pxe_machine(m: &cloudlet::PxeMachine) -> String {
    match &m.state {
        None => format!("  {:<20} {}  {:<12} not seen yet", m.name, m.mac, m.profile),
        Some(s) => {
            let ago = now().saturating_sub(s.since);
            let note = s
                .history
                .last()
                .and_then(|t| t.note.as_deref())
                .map(|n| format!("  ({n})"))
                .unwrap_or_default();
            format!(
                "  {:<20} {}  {:<12} {:<10} for {}  boots {}{note}",
                m.name,
                m.mac,
                m.profile,
                format!("{:?}", s.phase).to_lowercase(),
                human_age(ago),
                s.boots
            )
        }
    }
}

fn human_age(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{}m", s / 3600, s / 60 % 60),
        _ => format!("{}d", s / 86400),
    }
}

/// `doctor`'s findings: grouped by domain, the worst first within each check, a fix under
/// every finding that is not ok, then the counts.
pub(crate) fn doctor_text(d: &cloudlet::Diagnosis) -> String {
    use cloudlet::core::doctor::Status;
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut group: Option<Option<cloudlet::Domain>> = None;
    for f in &d.findings {
        if group != Some(f.domain) {
            group = Some(f.domain);
            let _ = writeln!(out, "{}:", f.domain.map_or("backups", |d| d.as_str()));
        }
        let mark = match f.status {
            Status::Ok => paint("32", "ok  "),
            Status::Warn => paint("33", "warn"),
            Status::Fail => paint("1;31", "FAIL"),
        };
        let _ = writeln!(out, "  {mark} {}: {}", f.subject, f.evidence);
        if let Some(fix) = &f.fix {
            let _ = writeln!(out, "       fix: {fix}");
        }
    }
    let _ = writeln!(
        out,
        "{} ok, {} warning(s), {} failure(s) in {:.2}s.",
        d.counts.ok, d.counts.warn, d.counts.fail, d.seconds
    );
    out
}

/// One line for a watch event (`None` for what a person need not read).
pub(crate) fn watch_event(e: &cloudlet::WatchEvent) -> Option<String> {
    use cloudlet::WatchEvent;
    Some(match e {
        WatchEvent::Round { round, diagnosis } => format!(
            "round {round}: {} ok, {} warning(s), {} failure(s) in {:.2}s",
            diagnosis.counts.ok, diagnosis.counts.warn, diagnosis.counts.fail, diagnosis.seconds
        ),
        WatchEvent::Changed(c) => {
            let fix = c
                .fix
                .as_deref()
                .map(|f| format!("\n       fix: {f}"))
                .unwrap_or_default();
            format!("  {}{fix}", c.line())
        }
        WatchEvent::Leading { me } => format!("leading: this watch ({me}) holds the Lease"),
        WatchEvent::Following { leader } => {
            format!("following: {leader} holds the Lease; waiting to take over")
        }
        WatchEvent::Notified {
            host,
            error: Some(e),
            ..
        } => format!("  webhook to {host} failed: {e}"),
        WatchEvent::Remediated {
            action,
            dry_run,
            error,
        } => match (dry_run, error) {
            (true, _) => format!("  would {action} (dry run)"),
            (false, None) => format!("  did: {action}"),
            (false, Some(e)) => format!("  could not {action}: {e}"),
        },
        _ => return None,
    })
}
