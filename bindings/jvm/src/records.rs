//! The records the JVM binding returns: Kotlin data classes (Java beans with getters) of the
//! facade's results. Each is read from the facade's own serialization (the JSON every frontend
//! shows), so the shapes match the CLI's `--output json` and the Python and Node records;
//! values of no fixed shape (a field's before and after, an event's other fields) stay JSON
//! text. Numbers are signed (`Long`, `Int`, `Double`) so Java sees plain getters.

use std::collections::HashMap;

use serde::Deserialize;

/// Reads a record of this module from a facade value through its serialization.
pub(crate) fn from<T: serde::Serialize, R: serde::de::DeserializeOwned>(
    v: &T,
) -> Result<R, crate::CloudletException> {
    serde_json::to_value(v)
        .and_then(serde_json::from_value)
        .map_err(|e| crate::CloudletException::Backend {
            reason: format!("the library's result does not convert: {e}"),
        })
}

/// A place in a lab file.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct Location {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: i64,
    /// 1-based column.
    pub column: i64,
}

/// Where a diagnostic's span ends.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct Position {
    /// 1-based line.
    pub line: i64,
    /// 1-based column, just past the span.
    pub column: i64,
}

/// One finding of validation: `severity` is `error` or `warning`, `code` is stable.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct Diagnostic {
    /// `error` or `warning`.
    pub severity: String,
    /// The stable code.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// Where it starts.
    pub location: Option<Location>,
    /// Where it ends.
    #[serde(default)]
    pub end: Option<Position>,
    /// The key path in the lab (`machines.k8s-node1.nics[0]`).
    pub path: Option<String>,
    /// How to fix it.
    pub help: Option<String>,
}

/// One field a step changes; `before` and `after` are JSON values (absent: no value).
#[derive(Debug, Clone, uniffi::Record)]
pub struct FieldChange {
    /// The field's path.
    pub path: String,
    /// Its live value, as JSON.
    pub before: Option<String>,
    /// The lab's value, as JSON.
    pub after: Option<String>,
}

#[derive(Deserialize)]
struct RawChange {
    path: String,
    #[serde(default)]
    before: Option<serde_json::Value>,
    #[serde(default)]
    after: Option<serde_json::Value>,
}

impl From<RawChange> for FieldChange {
    fn from(c: RawChange) -> Self {
        FieldChange {
            path: c.path,
            before: c.before.map(|v| v.to_string()),
            after: c.after.map(|v| v.to_string()),
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Step {
    /// The resource (`hypervisor/vm/k8s-node1`).
    pub id: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    /// The fields it changes (an update's).
    pub changes: Vec<FieldChange>,
    /// The steps it runs after.
    pub after: Vec<String>,
    /// Whether it deletes data.
    pub data_loss: bool,
}

#[derive(Deserialize)]
struct RawStep {
    id: String,
    action: String,
    #[serde(default)]
    changes: Vec<RawChange>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    data_loss: bool,
}

impl From<RawStep> for Step {
    fn from(s: RawStep) -> Self {
        Step {
            id: s.id,
            action: s.action,
            changes: s.changes.into_iter().map(Into::into).collect(),
            after: s.after,
            data_loss: s.data_loss,
        }
    }
}

/// Counts of a plan or of what an apply did.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct Summary {
    /// Resources created.
    pub create: i64,
    /// Resources updated.
    pub update: i64,
    /// Resources deleted.
    pub delete: i64,
    /// Resources already as the lab has them.
    pub unchanged: i64,
    /// Differences left alone because another writer holds the field.
    pub held: i64,
    /// Resources a destroy keeps (their data is retained).
    pub kept: i64,
    /// Steps that delete data.
    pub data_loss: i64,
}

/// A difference the plan leaves alone because another writer (`by`) holds the field.
#[derive(Debug, Clone, uniffi::Record)]
pub struct HeldChange {
    /// The resource.
    pub id: String,
    /// Who holds the field.
    pub by: String,
    /// The field, its live value and the lab's.
    pub change: FieldChange,
}

#[derive(Deserialize)]
struct RawHeld {
    id: String,
    by: String,
    #[serde(flatten)]
    change: RawChange,
}

/// The parts of a plan that frontends read (the plan object keeps the rest).
#[derive(Deserialize)]
pub(crate) struct RawPlan {
    #[serde(default)]
    steps: Vec<RawStep>,
    #[serde(default)]
    held: Vec<RawHeld>,
}

impl RawPlan {
    pub(crate) fn steps(self) -> (Vec<Step>, Vec<HeldChange>) {
        (
            self.steps.into_iter().map(Into::into).collect(),
            self.held
                .into_iter()
                .map(|h| HeldChange {
                    id: h.id,
                    by: h.by,
                    change: h.change.into(),
                })
                .collect(),
        )
    }
}

/// A resource cloudlet owns in a backend (found by its marker); `inLab` is false for one the
/// lab no longer declares, `retainsData` for one a destroy keeps.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct Owned {
    /// The resource.
    pub id: String,
    /// The backend holding it.
    pub backend: String,
    /// Whether the lab still declares it.
    pub in_lab: bool,
    /// Whether it holds data the lab retains.
    pub retains_data: bool,
}

/// A step that failed, with its error and causes.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct Failure {
    /// The resource.
    pub id: String,
    /// The error.
    pub error: String,
}

/// What an apply did; `success` when nothing failed, was skipped or cancelled.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct ApplyReport {
    /// The apply's id.
    pub apply: String,
    /// What was done.
    pub done: Summary,
    /// The steps that failed.
    pub failed: Vec<Failure>,
    /// The steps skipped because a step they need failed.
    pub skipped: Vec<String>,
    /// Whether it was cancelled.
    pub cancelled: bool,
    /// Nothing failed, was skipped or cancelled.
    #[serde(default)]
    pub success: bool,
}

/// Progress of an apply: `type` is started, step_started, step_done, step_failed,
/// step_skipped, finished or resumed; `data` has its other fields as a JSON object.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Event {
    /// What happened.
    pub r#type: String,
    /// The resource, for a step's event.
    pub id: Option<String>,
    /// The step's action.
    pub action: Option<String>,
    /// The other fields (`millis`, `error`, `apply`, `steps`, ...) as a JSON object.
    pub data: String,
}

/// What the boot service did: `event` is dhcp, boot, config, refused or reported; `data` has
/// the rest (file, answer, via, peer, why, ok, note) as a JSON object.
#[derive(Debug, Clone, uniffi::Record)]
pub struct BootEvent {
    /// What happened.
    pub event: String,
    /// The machine it concerns.
    pub machine: String,
    /// The other fields, as a JSON object.
    pub data: String,
}

/// Splits an event's JSON object into named fields and the rest.
fn split(v: serde_json::Value, names: &[&str]) -> (HashMap<String, Option<String>>, String) {
    let mut obj = match v {
        serde_json::Value::Object(o) => o,
        other => {
            let mut o = serde_json::Map::new();
            o.insert("value".into(), other);
            o
        }
    };
    let named = names
        .iter()
        .map(|n| {
            let s = obj.remove(*n).map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
            ((*n).to_string(), s)
        })
        .collect();
    (named, serde_json::Value::Object(obj).to_string())
}

impl Event {
    pub(crate) fn of(e: &cloudlet::Event) -> Event {
        let (mut n, data) = split(
            serde_json::to_value(e).unwrap_or_default(),
            &["type", "id", "action"],
        );
        Event {
            r#type: n.remove("type").flatten().unwrap_or_default(),
            id: n.remove("id").flatten(),
            action: n.remove("action").flatten(),
            data,
        }
    }
}

impl BootEvent {
    pub(crate) fn of<T: serde::Serialize>(e: &T) -> BootEvent {
        let (mut n, data) = split(
            serde_json::to_value(e).unwrap_or_default(),
            &["event", "machine"],
        );
        BootEvent {
            event: n.remove("event").flatten().unwrap_or_default(),
            machine: n.remove("machine").flatten().unwrap_or_default(),
            data,
        }
    }
}

/// One finding of the doctor: a check's stable name, what it looked at, `ok`/`warn`/`fail`,
/// the evidence and the fix (none when all is well).
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct DoctorFinding {
    /// The check's stable name.
    pub check: String,
    /// The domain it belongs to.
    pub domain: Option<String>,
    /// What it looked at.
    pub subject: String,
    /// `ok`, `warn` or `fail`.
    pub status: String,
    /// What it saw.
    pub evidence: String,
    /// How to fix it.
    #[serde(default)]
    pub fix: Option<String>,
}

/// What the doctor found: the worst status, counts per status, seconds taken, drift per
/// domain and every finding.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct Diagnosis {
    /// The format's version.
    pub format: i64,
    /// The lab.
    pub lab: String,
    /// The worst status.
    pub status: String,
    /// Findings per status.
    pub counts: HashMap<String, i64>,
    /// Seconds taken.
    pub seconds: f64,
    /// Resources that differ from the lab, per domain.
    pub drift: HashMap<String, i64>,
    /// Every finding.
    pub findings: Vec<DoctorFinding>,
}

/// A dataset (or directory) of the lab as the NAS has it.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct VolumeStatus {
    /// The volume.
    pub name: String,
    /// Its path on the NAS.
    pub path: String,
    /// The networks it is exported to.
    pub exported_to: Vec<String>,
    /// Bytes used, where the NAS says.
    pub used_bytes: Option<i64>,
    /// Its latest snapshot.
    pub latest_snapshot: Option<String>,
    /// Whether a destroy keeps it.
    pub retain: bool,
}

/// A snapshot in a backup repository (restic's format); `className` is cloudlet's class
/// (`state`, `cluster`, `volumes`), empty for one cloudlet did not write.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct Snapshot {
    /// The full ID.
    pub id: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// When it was taken, seconds since the Unix epoch.
    pub unix: i64,
    /// cloudlet's class.
    #[serde(rename = "class")]
    pub class_name: String,
    /// The host it names.
    pub host: String,
    /// The paths it holds.
    pub paths: Vec<String>,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Files it read.
    pub files: i64,
    /// Bytes it read.
    pub bytes: i64,
}

/// One class's backup run: its snapshot, or why it failed after its attempts.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct BackupRun {
    /// The class.
    #[serde(rename = "class")]
    pub class_name: String,
    /// The target.
    pub target: String,
    /// The snapshot made.
    pub snapshot: Option<Snapshot>,
    /// Why it failed.
    pub error: Option<String>,
    /// Seconds taken, attempts included.
    pub seconds: f64,
    /// Snapshots retention forgot.
    pub forgotten: Vec<String>,
}

/// The snapshots one backup target holds.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct TargetSnapshots {
    /// The target.
    pub target: String,
    /// Its repository (never with credentials).
    pub repository: String,
    /// Its snapshots, oldest first.
    pub snapshots: Vec<Snapshot>,
}

/// One rung of the verification ladder (0 the job ran ... 4 a restored dump answers).
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct Level {
    /// The level.
    pub level: i32,
    /// What it proves.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// Seconds taken.
    pub seconds: f64,
}

/// One class's climb up the ladder.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct Verified {
    /// The class.
    #[serde(rename = "class")]
    pub class_name: String,
    /// For volumes, the app whose volumes were proven.
    #[serde(default)]
    pub app: Option<String>,
    /// The target.
    pub target: String,
    /// Each level reached, the failed one last.
    pub levels: Vec<Level>,
}

/// One phase of a restore.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct RestorePhase {
    /// Its name.
    pub name: String,
    /// Whether it finished.
    pub ok: bool,
    /// Whether it was skipped.
    pub skipped: bool,
    /// Seconds taken.
    pub seconds: f64,
    /// What it did or why it failed.
    pub detail: String,
}

/// What a restored class can have lost: what was written after its snapshot.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct LossWindow {
    /// The class.
    #[serde(rename = "class")]
    pub class_name: String,
    /// For volumes, the app.
    #[serde(default)]
    pub app: Option<String>,
    /// The snapshot restored.
    pub snapshot: String,
    /// When it was taken, seconds since the Unix epoch.
    pub taken: i64,
    /// How long before the restore began it was taken.
    pub seconds_before_restore: i64,
}

/// What a restore did; `success` when every phase finished.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct Restored {
    /// The target it restored from.
    pub from: String,
    /// When it began, seconds since the Unix epoch.
    pub started: i64,
    /// Each phase, in order.
    pub phases: Vec<RestorePhase>,
    /// Each restored class's data-loss window.
    pub windows: Vec<LossWindow>,
    /// Every phase finished.
    #[serde(default)]
    pub success: bool,
}

/// One transition of a machine's install.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct Transition {
    /// The phase entered.
    pub phase: String,
    /// When, seconds since the Unix epoch.
    pub at: i64,
    /// What happened.
    #[serde(default)]
    pub note: Option<String>,
}

/// Where a machine's network install is: `phase` is discovered, booting, installing,
/// installed or failed.
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct InstallState {
    /// The phase.
    pub phase: String,
    /// Since when, seconds since the Unix epoch.
    pub since: i64,
    /// Network boots seen.
    pub boots: i64,
    /// The address its current boot asked from.
    #[serde(default)]
    pub ip: Option<String>,
    /// Every transition, oldest first.
    pub history: Vec<Transition>,
}

/// A machine that installs over the network and its install state (none until the boot
/// service first sees it).
#[derive(Debug, Clone, Deserialize, uniffi::Record)]
pub struct PxeMachine {
    /// The machine.
    pub name: String,
    /// The MAC it boots with.
    pub mac: String,
    /// Its install profile.
    pub profile: String,
    /// Its install state.
    pub state: Option<InstallState>,
}

/// How to run the boot service; every field left out takes the lab's value, then the
/// default. `loader` is `ipxe`, `pxelinux` or `grub`.
#[derive(Debug, Clone, Default, serde::Serialize, uniffi::Record)]
pub struct BootOptions {
    /// The address to serve on.
    #[uniffi(default = None)]
    pub address: Option<String>,
    /// The interface to serve on.
    #[uniffi(default = None)]
    pub interface: Option<String>,
    /// The directory of boot files.
    #[uniffi(default = None)]
    pub root: Option<String>,
    /// Whether to answer DHCP as a proxy.
    #[uniffi(default = None)]
    pub proxy_dhcp: Option<bool>,
    /// The boot loader.
    #[uniffi(default = None)]
    pub loader: Option<String>,
    /// The HTTP port (0: any free one).
    #[uniffi(default = None)]
    pub http_port: Option<i32>,
    /// The TFTP port (0: any free one).
    #[uniffi(default = None)]
    pub tftp_port: Option<i32>,
}

impl BootOptions {
    /// The facade's options: the facade checks every value (an address that is not one, a
    /// port out of range, an unknown loader are its errors).
    pub(crate) fn to_facade(&self) -> Result<cloudlet::BootOptions, crate::CloudletException> {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let serde_json::Value::Object(o) = &mut v {
            o.retain(|_, v| !v.is_null());
        }
        serde_json::from_value(v).map_err(|e| crate::CloudletException::Boot {
            reason: format!("boot options: {e}"),
        })
    }
}
