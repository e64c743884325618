//! `cloudlet backup`: run, list, verify, and the systemd units that run backups on their
//! schedules. Printing only: what a backup is lives in the facade.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use cloudlet::{Error, Lab};

#[derive(Subcommand, Debug)]
pub(crate) enum BackupCommand {
    /// Back up each class the lab declares (or those named) into its target now.
    Run {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// Only this class (`state`, `router`, `cluster`); repeat for more.
        #[arg(long = "class", value_name = "CLASS")]
        classes: Vec<String>,
    },
    /// The snapshots each target holds.
    List {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prove the backups, level by level: 0 the job ran, 1 a recent snapshot exists, 2 the
    /// repository checks out with its data read, 3 a restore to scratch matches the source, 4 a
    /// database dump answers the lab's query.
    Verify {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// The highest level to reach (0-4; 4 loads each app's database dump that has a
        /// query into a scratch server in the cluster and asks it).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=4))]
        level: u8,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write systemd units that run each class's backup on its schedule (a timer and a
    /// service per class), so backups run when cloudlet does not.
    InstallTimer {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// Where the units go.
        #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
        dir: PathBuf,
    },
}

impl BackupCommand {
    pub(crate) fn lab(&self) -> &Path {
        match self {
            BackupCommand::Run { lab, .. }
            | BackupCommand::List { lab, .. }
            | BackupCommand::Verify { lab, .. }
            | BackupCommand::InstallTimer { lab, .. } => lab,
        }
    }
}

fn json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub(crate) async fn run(lab: &Lab, cmd: &BackupCommand) -> Result<ExitCode, Error> {
    match cmd {
        BackupCommand::Run { classes, .. } => {
            let runs = lab.backup_run(classes).await?;
            let mut failed = false;
            for r in &runs {
                match (&r.snapshot, &r.error) {
                    (Some(s), _) => {
                        println!(
                            "ok {} → {}: snapshot {} ({} files, {} bytes) in {:.1}s",
                            r.class,
                            r.target,
                            &s.id[..8.min(s.id.len())],
                            s.files,
                            s.bytes,
                            r.seconds
                        );
                        if !r.forgotten.is_empty() {
                            println!("   retention forgot {} snapshot(s)", r.forgotten.len());
                        }
                    }
                    (None, e) => {
                        failed = true;
                        println!(
                            "!! {} → {}: failed after {:.1}s: {}",
                            r.class,
                            r.target,
                            r.seconds,
                            e.as_deref().unwrap_or("?")
                        );
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        BackupCommand::List { json: as_json, .. } => {
            let all = lab.backup_list().await?;
            if *as_json {
                json(&all);
                return Ok(ExitCode::SUCCESS);
            }
            for t in &all {
                println!("{} ({}):", t.target, t.repository);
                if t.snapshots.is_empty() {
                    println!("  no snapshots");
                }
                for s in &t.snapshots {
                    println!(
                        "  {}  {}  {:<8} {}  {} files, {} bytes",
                        &s.id[..8.min(s.id.len())],
                        s.time,
                        if s.class.is_empty() { "-" } else { &s.class },
                        s.host,
                        s.files,
                        s.bytes
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Verify {
            level,
            json: as_json,
            ..
        } => {
            let all = lab.backup_verify(*level).await?;
            let passed = all.iter().all(|v| v.passed(*level));
            if *as_json {
                json(&all);
            } else {
                for v in &all {
                    match &v.app {
                        Some(app) => println!("{} {app} → {}:", v.class, v.target),
                        None => println!("{} → {}:", v.class, v.target),
                    }
                    for l in &v.levels {
                        println!(
                            "  {} L{} {} ({:.2}s): {}",
                            if l.ok { "ok" } else { "!!" },
                            l.level,
                            l.name,
                            l.seconds,
                            l.detail
                        );
                    }
                }
            }
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        BackupCommand::InstallTimer { lab: path, dir } => {
            let bin = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cloudlet"));
            let lab_path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            let units = lab.backup_timer_units(&bin, &lab_path)?;
            std::fs::create_dir_all(dir).map_err(|e| Error::Render {
                path: dir.clone(),
                message: e.to_string(),
            })?;
            let mut timers = Vec::new();
            for (name, text) in &units {
                let p = dir.join(name);
                std::fs::write(&p, text).map_err(|e| Error::Render {
                    path: p.clone(),
                    message: e.to_string(),
                })?;
                println!("wrote {}", p.display());
                if name.ends_with(".timer") {
                    timers.push(name.clone());
                }
            }
            println!(
                "Start them with: systemctl daemon-reload && systemctl enable --now {}",
                timers.join(" ")
            );
            println!(
                "Put the keys the lab reads from the environment (the backup key, CLOUDLET_VAULT_KEY) in /etc/cloudlet/{}.env, readable by root only.",
                lab.model().name
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The newest run of each class, for `cloudlet status`; whether one failed.
pub(crate) fn print_status(lab: &Lab) -> bool {
    if lab.model().backup.is_none() {
        return false;
    }
    let runs = lab.backup_runs();
    println!("Backups:");
    if runs.is_empty() {
        println!("  .. no backup has run yet (`cloudlet backup run`)");
    }
    let mut failed = false;
    for r in &runs {
        let when = r.started;
        match &r.error {
            None => println!(
                "  ok {} → {}: snapshot {} at {when} (unix)",
                r.class,
                r.target,
                r.snapshot.as_deref().map_or("?", |s| &s[..8.min(s.len())])
            ),
            Some(e) => {
                failed = true;
                println!(
                    "  !! {} → {}: failed at {when} (unix): {e}",
                    r.class, r.target
                );
            }
        }
    }
    failed
}

/// `cloudlet restore`: each phase as it goes, then the timeline and the data-loss windows.
pub(crate) async fn restore(
    lab: &Lab,
    from: String,
    force: bool,
    resume: bool,
    wait: Option<cloudlet::core::types::Duration>,
) -> Result<ExitCode, Error> {
    if force && !resume {
        let would = lab.restore_would_overwrite();
        if !would.is_empty() {
            println!(
                "--force: overwriting {} file(s) of the lab's state in {}:",
                would.len(),
                lab.state_dir().display()
            );
            for p in would.iter().take(20) {
                println!("  {}", p.display());
            }
            if would.len() > 20 {
                println!("  ... and {} more", would.len() - 20);
            }
        }
        let apps = lab.restore_would_replace().await;
        if !apps.is_empty() {
            println!(
                "--force: replacing the volumes of {} running app(s) with their newest snapshot: {}",
                apps.len(),
                apps.join(", ")
            );
        }
    }
    let options = cloudlet::RestoreOptions {
        from,
        force,
        resume,
        verify_within: wait.map(|w| std::time::Duration::from_secs(w.0)),
        ..Default::default()
    };
    let mut on_event = |e: cloudlet::RestoreEvent| match e {
        cloudlet::RestoreEvent::Started(name) => println!("restore: {name} ..."),
        cloudlet::RestoreEvent::Finished(p) => println!(
            "restore: {} {} in {:.1}s: {}",
            p.name,
            if !p.ok {
                "FAILED"
            } else if p.skipped {
                "skipped"
            } else {
                "done"
            },
            p.seconds,
            p.detail
        ),
    };
    let restored = lab.restore(&options, &mut on_event).await?;
    println!("Timeline:");
    for p in &restored.phases {
        println!("  {:<15} {:>8.1}s", p.name, p.seconds);
    }
    println!("  {:<15} {:>8.1}s", "total", restored.seconds());
    println!("Data-loss window (written after the snapshot, not restored):");
    for w in &restored.windows {
        let class = match &w.app {
            Some(app) => format!("{} {app}", w.class),
            None => w.class.clone(),
        };
        println!(
            "  {:<8} snapshot {} taken {}s before the restore began",
            class,
            &w.snapshot[..8.min(w.snapshot.len())],
            w.seconds_before_restore
        );
    }
    Ok(ExitCode::SUCCESS)
}
