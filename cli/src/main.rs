//! `cloudlet`: validate, plan, apply and render a lab. Argument parsing and printing only;
#![allow(clippy::disallowed_methods)] // the CLI owns the process and its one tokio runtime
//! everything else is the `cloudlet` library.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod backup;
mod output;

// Planning builds and drops hundreds of thousands of small JSON values; mimalloc does that
// several times faster than glibc's malloc (see benches/plan.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use cloudlet::{ApplyOptions, Cancel, Error, Lab, Options};

/// cloudlet turns one declarative description of a self-hosted cloud into running infrastructure.
#[derive(Parser, Debug)]
#[command(name = "cloudlet", version, about)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); `CLOUDLET_LOG` takes a tracing filter.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// The state directory (default: `.cloudlet/` next to the lab).
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where the local backend renders (default: `STATE_DIR/local`).
    #[arg(long, global = true, value_name = "DIR")]
    local_dir: Option<PathBuf>,
    /// Take over what cloudlet did not make: fields another writer holds (an image updater,
    /// an autoscaler) are planned back to the lab's values and forced on apply instead of
    /// being reported as held, and router entries made by hand with a lab entry's key (the
    /// same MAC, the same host name) are adopted and marked instead of refused.
    #[arg(long, global = true)]
    take_over: bool,
    /// Colour in plans: `auto` on a terminal unless `NO_COLOR` is set, `always`, `never`.
    #[arg(long, global = true, value_enum, default_value_t = output::ColorChoice::Auto)]
    color: output::ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Print a new vault key (an age X25519 identity). Keep it outside the lab and its state
    /// directory, give it to cloudlet as `CLOUDLET_VAULT_KEY` or in the file
    /// `CLOUDLET_VAULT_KEY_FILE` names, and escrow it: it is what restores the lab's secrets.
    New,
}

#[derive(Subcommand, Debug)]
enum PlatformCommand {
    /// Every release of the platform's components this build knows, one file a line:
    /// component, version, URL and SHA-256 (`-` where the lab must give it), tab-separated.
    /// `scripts/platform-pins.sh` checks them against upstream (the release step).
    Releases,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum RemediateWhat {
    Drift,
    StuckPods,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

/// What `apply` and `destroy` share.
#[derive(clap::Args, Debug)]
struct RunFlags {
    /// Do not ask for confirmation.
    #[arg(long, short)]
    yes: bool,
    /// Steps in flight at once.
    #[arg(long, default_value_t = cloudlet::DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Run the plan's data-loss steps (deleting datasets or directories the lab marks
    /// `retain: false`); without it such a plan is refused before anything changes.
    #[arg(long)]
    allow_data_loss: bool,
    /// Only this resource and the steps it needs (a create's dependencies, a delete's
    /// dependants): `domain/kind/name` as the plan prints it, `domain/kind` or `domain`.
    /// Repeat for more.
    #[arg(long, value_name = "ID")]
    target: Vec<String>,
    /// `human`, or `json`: one event per line (the plan's changes, each step, the outcome),
    /// each with `format`; needs `--yes`.
    #[arg(long, short, value_enum, default_value_t = Format::Human)]
    output: Format,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check the whole lab and report every problem at once.
    Validate {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Human)]
        output: Format,
    },
    /// Show what apply would create, change or remove.
    Plan {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Human)]
        output: Format,
        /// Save the plan to apply it later with `apply --plan`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Plan the removal of everything the lab owns (what `cloudlet destroy` would do).
        #[arg(long)]
        destroy: bool,
        /// Only this resource and the steps it needs (`domain/kind/name` as the plan prints
        /// it, or `domain/kind`, `domain` for all of them). Repeat for more.
        #[arg(long, value_name = "ID")]
        target: Vec<String>,
    },
    /// Print a plan saved with `plan --out` as `plan` shows it (or as JSON).
    Show {
        /// The saved plan.
        plan: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Human)]
        output: Format,
    },
    /// The plan's steps and the order between them as a Graphviz DOT graph (`cloudlet graph
    /// | dot -Tsvg > plan.svg`): of the lab against what exists now, or of a saved plan.
    Graph {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// A saved plan instead of planning now.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
    },
    /// Make the infrastructure match the lab.
    Apply {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// Apply this saved plan (refused if the lab or the infrastructure changed since).
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        #[command(flatten)]
        run: RunFlags,
        /// After applying, wait this long (`90s`, `5m`) for the cluster's objects to become
        /// ready, and report what is not.
        #[arg(long, value_name = "DURATION")]
        wait: Option<cloudlet::core::types::Duration>,
    },
    /// Remove everything cloudlet made for the lab, found by its markers, in the reverse of
    /// the order it was made. What holds data the lab retains is kept and listed; what the lab
    /// lets go (`retain: false`) is deleted only with `--allow-data-loss`. cloudlet's own
    /// state (the journal, the cluster's identity, install state) stays: `apply` makes the
    /// lab again.
    Destroy {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        #[command(flatten)]
        run: RunFlags,
    },
    /// What cloudlet owns in the lab's backends (found by its markers), per backend: each
    /// resource, whether the lab still describes it, and whether it holds retained data.
    List {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Human)]
        output: Format,
    },
    /// Health of the lab's cluster objects: rollouts, LoadBalancer addresses (with MetalLB's
    /// reason when it has none), ingress backends without endpoints, unbound claims.
    Status {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// Check again until nothing is progressing, at most this long (`90s`, `5m`).
        #[arg(long, value_name = "DURATION")]
        wait: Option<cloudlet::core::types::Duration>,
    },
    /// Check the running lab: every backend reached and observed, drift, the cluster's nodes,
    /// stuck pods, objects, LoadBalancer addresses and served certificates, machines stuck
    /// installing, backups' age. Each finding with its evidence and fix. Exit 0 all ok, 1
    /// warnings, 2 failures (or the lab cannot be read).
    Doctor {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// Output format (`json`: the findings with a format version, stable for tools).
        #[arg(long, short, value_enum, default_value_t = Format::Human)]
        output: Format,
        /// The most one check may take (`10s`, `1m`): a backend that does not answer fails
        /// its own checks after it, and only those.
        #[arg(long, value_name = "DURATION", default_value = "10s")]
        timeout: cloudlet::core::types::Duration,
        /// Checks run at once (1: one after the other).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Run inside the lab's cluster, as the watch's pod does (see `watch --in-cluster`).
        #[arg(long)]
        in_cluster: bool,
    },
    /// Doctor on an interval: each change of a finding's state printed and sent to the
    /// webhooks (one message per change), OpenMetrics on `/metrics` and `/healthz` with
    /// `--listen`, drift re-applied and stuck pods deleted with `--remediate`. Runs until
    /// interrupted (or `--rounds`).
    Watch {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// Between rounds (`30s`, `1m`, `5m`).
        #[arg(long, value_name = "DURATION", default_value = "1m")]
        interval: cloudlet::core::types::Duration,
        /// The most one check may take.
        #[arg(long, value_name = "DURATION", default_value = "10s")]
        timeout: cloudlet::core::types::Duration,
        /// Serve `/metrics` and `/healthz` on this address (`127.0.0.1:9464`).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// A webhook: `FORMAT=VAR` reads the URL from the environment variable VAR,
        /// `FORMAT=@FILE` from a file (webhook URLs hold secrets, so never on the command
        /// line); FORMAT is json, ntfy, matrix or slack. Repeat for more.
        #[arg(long, value_name = "FORMAT=VAR")]
        webhook: Vec<String>,
        /// Put right by itself: `drift` (apply the lab when it drifted, never a plan that
        /// loses data) and `stuck-pods` (delete pods stuck past their threshold that a
        /// controller makes again). Repeat for both.
        #[arg(long, value_enum)]
        remediate: Vec<RemediateWhat>,
        /// Say what remediation would do; do nothing.
        #[arg(long)]
        dry_run: bool,
        /// Stop after this many rounds.
        #[arg(long)]
        rounds: Option<u64>,
        /// Elect a leader through a Lease in the lab's cluster, held this long per renewal
        /// (`15s`): of several watches of the lab (replicas, machines), only the holder
        /// checks, sends and remediates; another takes over when it stops renewing.
        #[arg(long, value_name = "DURATION")]
        lease: Option<cloudlet::core::types::Duration>,
        /// Output: `human` lines, or `json`: one event per line.
        #[arg(long, short, value_enum, default_value_t = Format::Human)]
        output: Format,
        /// Run inside the lab's cluster (the watch's pod): the cluster through the pod's
        /// service account; the nodes cloudlet made, etcd, installs, backup runs and domains
        /// rendered to local files are the applying machine's and left out.
        #[arg(long)]
        in_cluster: bool,
    },
    /// An admin kubeconfig for the cluster cloudlet makes (`targets.cluster.kind: kubeadm`),
    /// printed: a client certificate from the cluster CA, issued now and short-lived (ask
    /// again for a new one). It holds a private key: redirect it to a file only you read.
    Kubeconfig {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// How long its certificate is valid (`1h`, `12h`; at most `24h`).
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        valid: cloudlet::core::types::Duration,
    },
    /// The lab's vault key: what encrypts the secrets cloudlet makes (the cluster's CAs).
    Key {
        #[command(subcommand)]
        what: KeyCommand,
    },
    /// Rebuild the lab from its files and a backup target: cloudlet's state, the
    /// infrastructure, the cluster with its data; each phase timed and journaled.
    Restore {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// The backup target to restore from (a name under `backup.targets`).
        #[arg(long, value_name = "TARGET")]
        from: String,
        /// Overwrite the lab's state although it is not empty (what is overwritten is listed).
        #[arg(long)]
        force: bool,
        /// Go on with a restore that stopped, skipping the phases it finished.
        #[arg(long)]
        resume: bool,
        /// How long the verify phase waits for the cluster's objects to become ready
        /// (`90s`, `5m`; default 10m).
        #[arg(long, value_name = "DURATION")]
        wait: Option<cloudlet::core::types::Duration>,
    },
    /// Backups: run them, list them, prove them by restoring, schedule them.
    Backup {
        #[command(subcommand)]
        what: backup::BackupCommand,
    },
    /// The platform's components (Calico, MetalLB, Traefik, csi-driver-nfs, cert-manager).
    Platform {
        #[command(subcommand)]
        what: PlatformCommand,
    },
    /// Write every artifact of the lab to a directory.
    Render {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// The directory to write to.
        #[arg(long, short, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Turn something that exists into lab files.
    Import {
        #[command(subcommand)]
        what: Import,
    },
    /// The lab's NAS.
    Storage {
        #[command(subcommand)]
        what: StorageCmd,
    },
    /// Network install: the boot service and the machines' install state.
    Pxe {
        #[command(subcommand)]
        what: PxeCmd,
    },
    /// Print the JSON Schema of the lab format.
    Schema {
        /// The lab format's reference in Markdown instead (each type, its keys, their types
        /// and descriptions), as `docs/lab-format.md` has it.
        #[arg(long)]
        markdown: bool,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
enum StorageCmd {
    /// Volumes as the NAS has them: path, who may mount, usage, newest snapshot, and whether
    /// their data stays when they leave the lab.
    Status {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Human)]
        output: Format,
    },
}

#[derive(Subcommand, Debug)]
enum PxeCmd {
    /// Run the network boot service next to the router's DHCP server: proxyDHCP (PXE clients
    /// only, never addresses), TFTP and HTTP. Each machine of the lab that boots from the
    /// network gets its boot program, a script or config rendered for this boot, its kernel
    /// and initrd, and its install config (only it, with a per-boot token); after it reports
    /// `installed` it boots from its disk. Runs until Ctrl-C; events are printed as they happen.
    Serve {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// This host's address on the boot segment (default: `pxe.serve.address`, else the
        /// address of the lab's `pxe.server` machine).
        #[arg(long)]
        address: Option<std::net::Ipv4Addr>,
        /// The interface of the boot segment (proxyDHCP binds to it).
        #[arg(long, short)]
        interface: Option<String>,
        /// The directory of boot programs, kernels and initrds (served read-only; default
        /// `pxe.serve.root`, else `boot` next to the lab).
        #[arg(long)]
        root: Option<PathBuf>,
        /// Do not run proxyDHCP (the router's DHCP server points machines here itself).
        #[arg(long)]
        no_proxy_dhcp: bool,
        /// How iPXE clients boot: their own script over HTTP (default), or pxelinux over TFTP.
        #[arg(long, value_enum)]
        loader: Option<LoaderArg>,
        /// HTTP port (default 80).
        #[arg(long)]
        http_port: Option<u16>,
        /// TFTP port (default 69).
        #[arg(long)]
        tftp_port: Option<u16>,
        /// A plain boot server instead: the files under DIR over TFTP and HTTP, read-only,
        /// without a lab (no proxyDHCP, no install state; `--address` defaults to every
        /// address).
        #[arg(long, value_name = "DIR")]
        files: Option<PathBuf>,
        /// With `--files`: TFTP only.
        #[arg(long, requires = "files")]
        no_http: bool,
        /// Print events as JSON lines.
        #[arg(long, short, value_enum, default_value_t = Format::Human)]
        output: Format,
    },
    /// Each network-installed machine: MAC, profile, install phase and since when.
    Status {
        /// A lab file or directory.
        #[arg(default_value = ".")]
        lab: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Human)]
        output: Format,
    },
    /// Install a machine again at its next network boot.
    Reinstall {
        /// A lab file or directory.
        lab: PathBuf,
        /// The machine.
        machine: String,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LoaderArg {
    Ipxe,
    Pxelinux,
}

#[derive(Subcommand, Debug)]
enum Import {
    /// A docker-compose project as app blocks: every service an app in one namespace, HTTP
    /// ports behind the ingress, other ports on the shared VIP, volumes on the NAS export.
    /// What does not carry over is reported by key, with its position.
    Compose {
        /// The compose file.
        file: PathBuf,
        /// The project name (default: the file's `name:`, else its directory's name).
        #[arg(long)]
        project: Option<String>,
        /// The domain of the ingress hosts (`SERVICE.DOMAIN`).
        #[arg(long, default_value = "example.com")]
        domain: String,
        /// The lab's storage export the volumes go to.
        #[arg(long, default_value = "apps")]
        export: String,
        /// Give services of the postgres, mariadb and mysql images a `dump` of their database
        /// (for a lab that backs up volumes: `backup.volumes`).
        #[arg(long)]
        dumps: bool,
        /// Write the app blocks to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn import_compose(
    file: &PathBuf,
    options: cloudlet::compose::ComposeOptions,
    out: Option<&PathBuf>,
) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: reading {}: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    match cloudlet::compose::import(file, &text, &options) {
        Err(e) => {
            eprint!("{e}");
            ExitCode::from(1)
        }
        Ok(imported) => {
            for n in &imported.notes {
                eprint!("{}", n.render(&imported.sources));
            }
            let yaml = cloudlet::compose::to_yaml(&imported);
            match out {
                Some(path) => {
                    if let Err(e) = std::fs::write(path, &yaml) {
                        eprintln!("error: writing {}: {e}", path.display());
                        return ExitCode::from(1);
                    }
                    eprintln!(
                        "wrote {} app(s) of project `{}` to {} ({} note(s) above)",
                        imported.apps.len(),
                        imported.project,
                        path.display(),
                        imported.notes.len()
                    );
                }
                None => print!("{yaml}"),
            }
            ExitCode::SUCCESS
        }
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("CLOUDLET_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::new(f),
        _ => EnvFilter::new(match verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }),
    };
    // Colour only on a terminal, and never with `NO_COLOR` (no-color.org).
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Output cut short by its reader (`cloudlet plan | head`) ends the process quietly, as
/// other command-line tools do, instead of a panic message: Rust ignores SIGPIPE, so the
/// failed write panics inside `println!`.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            // 128 + SIGPIPE, what a shell reports for a tool the pipe ended.
            std::process::exit(141);
        }
        default(info);
    }));
}

#[tokio::main]
async fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    output::set_color(cli.color);
    let opts = Options {
        state_dir: cli.state_dir.clone(),
        output_dir: cli.local_dir.clone(),
        take_over: cli.take_over,
        // CLOUDLET_CACHE_DIR moves the release cache (see README).
        cache_dir: None,
        in_cluster: matches!(
            cli.command,
            Command::Watch {
                in_cluster: true,
                ..
            } | Command::Doctor {
                in_cluster: true,
                ..
            }
        ),
    };
    let load = |path: &PathBuf| Lab::load(path).map(|l| l.with_options(opts.clone()));
    let result = match cli.command {
        Command::Validate { lab, output } => match load(&lab) {
            Ok(lab) => Ok(output::validate(&lab, output == Format::Json)),
            Err(e) if output == Format::Json => Ok(output::validate_failed(&e)),
            Err(e) => Err((e, None)),
        },
        Command::Plan {
            lab,
            output,
            out,
            detailed_exitcode,
            destroy,
            target,
        } => match load(&lab) {
            Ok(lab) => plan(
                &lab,
                &cloudlet::PlanOptions {
                    destroy,
                    targets: target,
                },
                output == Format::Json,
                out,
                detailed_exitcode,
            )
            .await
            .map_err(|e| (e, Some(lab))),
            Err(e) => Err((e, None)),
        },
        Command::Destroy { lab, run } => match load(&lab) {
            Ok(lab) => apply(&lab, ApplyArgs::new(None, true, run))
                .await
                .map_err(|e| (e, Some(lab))),
            Err(e) => Err((e, None)),
        },
        Command::List { lab, output } => match load(&lab) {
            Ok(lab) => match lab.owned().await {
                Ok(owned) => {
                    if output == Format::Json {
                        println!("{}", output::owned_json(&owned));
                    } else {
                        print!("{}", output::owned_text(&lab, &owned));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err((e, Some(lab))),
            },
            Err(e) => Err((e, None)),
        },
        Command::Apply {
            lab,
            plan,
            run,
            wait,
        } => match load(&lab) {
            Ok(lab) => match apply(&lab, ApplyArgs::new(plan, false, run)).await {
                Ok(code) if code == ExitCode::SUCCESS && wait.is_some() => {
                    status(&lab, wait).await.map_err(|e| (e, Some(lab)))
                }
                Ok(code) => Ok(code),
                Err(e) => Err((e, Some(lab))),
            },
            Err(e) => Err((e, None)),
        },
        Command::Doctor {
            lab,
            output,
            timeout,
            concurrency,
            in_cluster: _,
        } => match load(&lab) {
            Ok(lab) => {
                let d = lab
                    .doctor(&cloudlet::DoctorOptions {
                        timeout: std::time::Duration::from_secs(timeout.0.max(1)),
                        concurrency,
                        ..Default::default()
                    })
                    .await;
                if output == Format::Json {
                    println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
                } else {
                    print!("{}", output::doctor_text(&d));
                }
                Ok(ExitCode::from(match d.status {
                    cloudlet::core::doctor::Status::Ok => 0,
                    cloudlet::core::doctor::Status::Warn => 1,
                    cloudlet::core::doctor::Status::Fail => 2,
                }))
            }
            Err(e) => {
                output::error(&e, None);
                return ExitCode::from(2);
            }
        },
        Command::Watch {
            lab,
            interval,
            timeout,
            listen,
            webhook,
            remediate,
            dry_run,
            rounds,
            lease,
            output,
            in_cluster: _,
        } => match load(&lab) {
            Ok(lab) => {
                let options = watch_options(
                    interval, timeout, &webhook, &remediate, dry_run, rounds,
                )
                .map(|o| cloudlet::WatchOptions {
                    lease: lease.map(|d| std::time::Duration::from_secs(d.0.max(3))),
                    ..o
                });
                match options {
                    Ok(options) => watch(&lab, &options, listen, output)
                        .await
                        .map_err(|e| (e, Some(lab))),
                    Err(message) => {
                        eprintln!("error: {message}");
                        return ExitCode::from(2);
                    }
                }
            }
            Err(e) => Err((e, None)),
        },
        Command::Status { lab, wait } => match load(&lab) {
            Ok(lab) => status(&lab, wait).await.map_err(|e| (e, Some(lab))),
            Err(e) => Err((e, None)),
        },
        Command::Show { plan, output } => match cloudlet::read_plan(&plan) {
            Ok(p) => {
                if output == Format::Json {
                    println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
                } else {
                    print!("{}", output::plan_text(&p));
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err((e, None)),
        },
        Command::Graph { lab, plan } => {
            let planned = match plan {
                Some(path) => cloudlet::read_plan(&path).map_err(|e| (e, None)),
                None => match load(&lab) {
                    Ok(lab) => lab.plan().await.map_err(|e| (e, Some(lab))),
                    Err(e) => Err((e, None)),
                },
            };
            planned.map(|p| {
                print!("{}", output::plan_dot(&p));
                ExitCode::SUCCESS
            })
        }
        Command::Kubeconfig { lab, valid } => match load(&lab) {
            Ok(lab) => {
                let valid = std::time::Duration::from_secs(valid.0.min(24 * 3600));
                match lab.kubeconfig(valid) {
                    Ok(k) => {
                        print!("{}", k.expose());
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => Err((e, Some(lab))),
                }
            }
            Err(e) => Err((e, None)),
        },
        Command::Key {
            what: KeyCommand::New,
        } => {
            println!("{}", cloudlet::core::vault::new_key());
            eprintln!(
                "cloudlet: a new vault key; keep it outside the lab, set CLOUDLET_VAULT_KEY to it (or CLOUDLET_VAULT_KEY_FILE to a file holding it), and escrow a copy"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            lab,
            from,
            force,
            resume,
            wait,
        } => match load(&lab) {
            Ok(lab) => backup::restore(&lab, from, force, resume, wait)
                .await
                .map_err(|e| (e, Some(lab))),
            Err(e) => Err((e, None)),
        },
        Command::Backup { what } => match load(&what.lab().to_path_buf()) {
            Ok(lab) => backup::run(&lab, &what).await.map_err(|e| (e, Some(lab))),
            Err(e) => Err((e, None)),
        },
        Command::Platform {
            what: PlatformCommand::Releases,
        } => {
            for d in cloudlet::cluster::platform::COMPONENTS {
                for r in d.releases {
                    for f in r.files {
                        println!(
                            "{}\t{}\t{}\t{}",
                            d.key,
                            r.version,
                            f.url,
                            f.sha256.unwrap_or("-")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Render { lab, dir } => match load(&lab) {
            Ok(lab) => match lab.render(&dir).await {
                Ok(n) => {
                    println!("rendered {n} resources to {}", dir.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err((e, Some(lab))),
            },
            Err(e) => Err((e, None)),
        },
        Command::Storage {
            what: StorageCmd::Status { lab, output },
        } => match load(&lab) {
            Ok(lab) => storage_status(&lab, output)
                .await
                .map_err(|e| (e, Some(lab))),
            Err(e) => Err((e, None)),
        },
        Command::Pxe { what } => pxe(what, &opts).await,
        Command::Import {
            what:
                Import::Compose {
                    file,
                    project,
                    domain,
                    export,
                    dumps,
                    out,
                },
        } => Ok(import_compose(
            &file,
            cloudlet::compose::ComposeOptions {
                project,
                domain,
                export,
                dumps,
                ..Default::default()
            },
            out.as_ref(),
        )),
        Command::Schema { markdown: true } => {
            print!("{}", cloudlet::schema_reference());
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema { markdown: false } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&cloudlet::schema()).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "cloudlet",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err((e, lab)) => {
            output::error(&e, lab.as_ref());
            ExitCode::from(1)
        }
    }
}

async fn plan(
    lab: &Lab,
    scope: &cloudlet::PlanOptions,
    json: bool,
    out: Option<PathBuf>,
    detailed: bool,
) -> Result<ExitCode, Error> {
    let p = lab.plan_with(scope).await?;
    if let Some(path) = &out {
        cloudlet::write_plan(path, &p)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
    } else {
        print!("{}", output::plan_text(&p));
        if let Some(path) = &out {
            println!(
                "Saved the plan to {}; apply it with `cloudlet apply --plan {}`.",
                path.display(),
                path.display()
            );
        }
    }
    Ok(if detailed && p.summary.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

async fn pxe(what: PxeCmd, opts: &Options) -> Result<ExitCode, (Error, Option<Lab>)> {
    if let PxeCmd::Serve {
        files: Some(dir),
        address,
        http_port,
        tftp_port,
        no_http,
        ..
    } = &what
    {
        return Ok(serve_files(
            dir,
            address.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            tftp_port.unwrap_or(69),
            (!no_http).then_some(http_port.unwrap_or(80)),
        )
        .await);
    }
    let path = match &what {
        PxeCmd::Serve { lab, .. } | PxeCmd::Status { lab, .. } | PxeCmd::Reinstall { lab, .. } => {
            lab.clone()
        }
    };
    let lab = Lab::load(&path)
        .map(|l| l.with_options(opts.clone()))
        .map_err(|e| (e, None))?;
    let r = match what {
        PxeCmd::Status { output, .. } => pxe_status(&lab, output),
        PxeCmd::Reinstall { machine, .. } => lab.pxe_reinstall(&machine).map(|()| {
            println!("{machine} installs again at its next network boot.");
            ExitCode::SUCCESS
        }),
        PxeCmd::Serve {
            address,
            interface,
            root,
            no_proxy_dhcp,
            loader,
            http_port,
            tftp_port,
            output,
            ..
        } => {
            let here = std::env::current_dir().unwrap_or_default();
            let options = cloudlet::BootOptions {
                address,
                interface,
                root: root.map(|r| here.join(r)),
                proxy_dhcp: no_proxy_dhcp.then_some(false),
                loader: loader.map(|l| match l {
                    LoaderArg::Ipxe => cloudlet::core::model::BootLoader::Ipxe,
                    LoaderArg::Pxelinux => cloudlet::core::model::BootLoader::Pxelinux,
                }),
                http_port,
                tftp_port,
            };
            let cfg = match lab.boot_config(&options) {
                Ok(c) => c,
                Err(e) => return Err((e, Some(lab))),
            };
            pxe_serve(&lab, cfg, output).await
        }
    };
    r.map_err(|e| (e, Some(lab)))
}

/// `pxe serve --files DIR`: a plain boot server until Ctrl-C.
async fn serve_files(
    dir: &std::path::Path,
    address: std::net::Ipv4Addr,
    tftp_port: u16,
    http_port: Option<u16>,
) -> ExitCode {
    use cloudlet::pxe::{service::FileServer, tftp::TftpConfig};
    let server = match FileServer::bind(
        address,
        dir,
        tftp_port,
        http_port,
        TftpConfig::default(),
        cloudlet::pxe::http::Limits::default(),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", cloudlet::core::error::chain(&e));
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "serving {} read-only: TFTP {}, HTTP {}; Ctrl-C stops",
        dir.display(),
        server
            .tftp_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        match server.http_addr() {
            Some(a) => a.map(|a| a.to_string()).unwrap_or_default(),
            None => "off".into(),
        }
    );
    match server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: the boot server stopped: {e}");
            ExitCode::from(1)
        }
    }
}

async fn pxe_serve(
    lab: &Lab,
    cfg: cloudlet::pxe::service::BootConfig,
    output: Format,
) -> Result<ExitCode, Error> {
    let (proxy, iface) = (cfg.proxy_dhcp, cfg.interface.clone());
    let svc = lab.boot_service(cfg).await?;
    let mut events = svc.events();
    eprintln!(
        "serving network installs: HTTP {}, TFTP {}, proxyDHCP {}; state in {}; Ctrl-C stops",
        svc.http_addr().map(|a| a.to_string()).unwrap_or_default(),
        svc.tftp_addr().map(|a| a.to_string()).unwrap_or_default(),
        match (proxy, iface) {
            (false, _) => "off".to_string(),
            (true, Some(i)) => format!("on {i}"),
            (true, None) => "on every interface".to_string(),
        },
        lab.pxe_state_dir().display()
    );
    let print = async move {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if output == Format::Json {
                        println!("{}", serde_json::to_string(&e).unwrap_or_default());
                    } else {
                        println!("{}", output::pxe_event(&e));
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("({n} events not shown: the terminal was too slow)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    };
    let serve = svc.run(async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("\nstopping");
    });
    let (r, ()) = tokio::join!(serve, print);
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: the boot service stopped: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Records as pretty JSON, or one line each (`none` when there are none), then `footer`.
fn print_records<T: serde::Serialize>(
    output: Format,
    items: &[T],
    none: &str,
    line: impl Fn(&T) -> String,
    footer: Option<String>,
) -> ExitCode {
    if output == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(items).unwrap_or_default()
        );
    } else if items.is_empty() {
        println!("{none}");
    } else {
        for it in items {
            println!("{}", line(it));
        }
        if let Some(f) = footer {
            println!("{f}");
        }
    }
    ExitCode::SUCCESS
}

fn pxe_status(lab: &Lab, output: Format) -> Result<ExitCode, Error> {
    let machines = lab.pxe_status()?;
    Ok(print_records(
        output,
        &machines,
        "No machine of this lab installs over the network.",
        output::pxe_machine,
        None,
    ))
}

async fn storage_status(lab: &Lab, output: Format) -> Result<ExitCode, Error> {
    let volumes = lab.storage_status().await?;
    let footer = format!("{} volume(s).", volumes.len());
    Ok(print_records(
        output,
        &volumes,
        "No volumes: the storage target is not a NAS, or nothing is applied yet.",
        |v| {
            let used = v.used_bytes.map_or_else(
                || "?".to_string(),
                |b| format!("{:.1} MiB", b as f64 / 1048576.0),
            );
            format!(
                "  {:<32} {:<40} {:>12}  {}  {}{}",
                v.name,
                v.path,
                used,
                if v.exported_to.is_empty() {
                    "not exported".to_string()
                } else {
                    format!("→ {}", v.exported_to.join(", "))
                },
                v.latest_snapshot
                    .as_deref()
                    .map_or_else(|| "no snapshot".to_string(), |s| format!("latest {s}")),
                if v.retain { "" } else { "  (retain: false)" }
            )
        },
        Some(footer),
    ))
}

/// The watch's options from the command line; a webhook URL is read from where its flag
/// says, and never printed.
fn watch_options(
    interval: cloudlet::core::types::Duration,
    timeout: cloudlet::core::types::Duration,
    webhooks: &[String],
    remediate: &[RemediateWhat],
    dry_run: bool,
    rounds: Option<u64>,
) -> Result<cloudlet::WatchOptions, String> {
    let mut hooks = Vec::new();
    for w in webhooks {
        let (format, from) = w
            .split_once('=')
            .ok_or_else(|| format!("--webhook {w}: expected FORMAT=VAR or FORMAT=@FILE"))?;
        let format: cloudlet::WebhookFormat =
            format.parse().map_err(|e| format!("--webhook: {e}"))?;
        let url = match from.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .map_err(|e| format!("--webhook {format:?}: reading {file}: {e}"))?,
            None => std::env::var(from)
                .map_err(|_| format!("--webhook: the environment variable {from} is not set"))?,
        };
        hooks.push(cloudlet::Webhook {
            format,
            url: url.trim().to_string(),
        });
    }
    Ok(cloudlet::WatchOptions {
        interval: std::time::Duration::from_secs(interval.0.max(1)),
        doctor: cloudlet::DoctorOptions {
            timeout: std::time::Duration::from_secs(timeout.0.max(1)),
            ..Default::default()
        },
        webhooks: hooks,
        remediate: cloudlet::Remediate {
            drift: remediate.contains(&RemediateWhat::Drift),
            stuck_pods: remediate.contains(&RemediateWhat::StuckPods),
            dry_run,
        },
        rounds,
        lease: None,
    })
}

async fn watch(
    lab: &Lab,
    options: &cloudlet::WatchOptions,
    listen: Option<std::net::SocketAddr>,
    output: Format,
) -> Result<ExitCode, Error> {
    let listener = match listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                if output == Format::Human {
                    println!("Serving /metrics and /healthz on http://{addr}");
                }
                Some(l)
            }
            Err(e) => {
                eprintln!("error: cannot listen on {addr}: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        None => None,
    };
    let print = move |e: &cloudlet::WatchEvent| {
        if output == Format::Json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else if let Some(line) = output::watch_event(e) {
            println!("{line}");
        }
    };
    // Ctrl-C, or SIGTERM as Kubernetes stops a pod: the Lease is let go either way.
    let stop = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    lab.watch(options, listener, &print, stop).await?;
    Ok(ExitCode::SUCCESS)
}

async fn status(
    lab: &Lab,
    wait: Option<cloudlet::core::types::Duration>,
) -> Result<ExitCode, Error> {
    use cloudlet::cluster::health::State;
    let backups_failed = backup::print_status(lab);
    if !lab.has_live_cluster() {
        println!("The cluster target is not Kubernetes: there is nothing to check.");
        return Ok(if backups_failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let found = lab
        .cluster_health(wait.map(|d| std::time::Duration::from_secs(d.0)))
        .await?;
    let platform = lab.platform_status().await?;
    if !platform.components.is_empty() {
        println!("Platform:");
        for c in &platform.components {
            let mark = match c.state {
                State::Ready => "ok",
                State::Progressing => "..",
                State::Failed => "!!",
            };
            println!(
                "  {mark} {} {} — {}",
                c.key,
                c.version.as_deref().unwrap_or("(version unknown)"),
                c.message
            );
        }
    }
    for a in &platform.announcements {
        println!(
            "  {} ({}) is announced from node {}",
            a.ip, a.service, a.node
        );
    }
    if !platform.components.is_empty() || !platform.announcements.is_empty() {
        println!("Objects:");
    }
    let mut counts = [0usize; 3];
    for f in &found {
        let (mark, i) = match f.state {
            State::Ready => ("ok", 0),
            State::Progressing => ("..", 1),
            State::Failed => ("!!", 2),
        };
        counts[i] += 1;
        println!("  {mark} {} — {}", f.id, f.message);
    }
    println!(
        "{} ready, {} progressing, {} failed.",
        counts[0], counts[1], counts[2]
    );
    Ok(if counts[2] > 0 || backups_failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `apply` and `destroy` were asked.
struct ApplyArgs {
    saved: Option<PathBuf>,
    scope: cloudlet::PlanOptions,
    yes: bool,
    concurrency: usize,
    allow_data_loss: bool,
    json: bool,
}

impl ApplyArgs {
    fn new(saved: Option<PathBuf>, destroy: bool, run: RunFlags) -> ApplyArgs {
        ApplyArgs {
            saved,
            scope: cloudlet::PlanOptions {
                destroy,
                targets: run.target,
            },
            yes: run.yes,
            concurrency: run.concurrency,
            allow_data_loss: run.allow_data_loss,
            json: run.output == Format::Json,
        }
    }
}

async fn apply(lab: &Lab, args: ApplyArgs) -> Result<ExitCode, Error> {
    let json = args.json;
    let r = apply_inner(lab, args).await;
    if json && let Err(e) = &r {
        output::json_error(e);
    }
    r
}

async fn apply_inner(lab: &Lab, args: ApplyArgs) -> Result<ExitCode, Error> {
    let ApplyArgs {
        saved,
        scope,
        yes,
        concurrency,
        allow_data_loss,
        json,
    } = args;
    if json && !yes {
        eprintln!("error: `--output json` does not ask for confirmation; pass --yes");
        return Ok(ExitCode::from(1));
    }
    // Another apply's lock refuses this one before anything is planned or printed.
    lab.check_unlocked()?;
    // A saved plan is checked for freshness by the facade's apply, as for every frontend.
    let p = match &saved {
        Some(path) => cloudlet::read_plan(path)?,
        None => lab.plan_with(&scope).await?,
    };
    let pxe_event = |e: &cloudlet::pxe::service::Event| {
        if json {
            output::json_line("boot", e);
        } else {
            output::print_pxe_event(e);
        }
    };
    if json {
        output::json_plan(&p);
    }
    if !p.summary.has_changes() {
        if !json {
            println!(
                "No changes: the infrastructure matches the lab ({} resources).",
                p.summary.unchanged
            );
        }
        // With `pxe.serve`, machines not installed yet (bare metal powered on by hand) are
        // still served: the facade's apply does that for a plan without changes too.
        let applied = lab
            .apply_with(&p, ApplyOptions::default(), Some(&pxe_event))
            .await?;
        if let Some(o) = &applied.installs {
            if json {
                output::json_line("installs", o);
            } else {
                print!("{}", output::installs_text(o));
            }
        }
        return Ok(if applied.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if !json && (saved.is_none() || !yes) {
        print!("{}", output::plan_text(&p));
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "error: refusing to apply without confirmation: stdin is not a terminal; pass --yes"
            );
            return Ok(ExitCode::from(1));
        }
        eprint!(
            "{} [y/N] ",
            if p.destroy {
                "Destroy these resources?"
            } else {
                "Apply these changes?"
            }
        );
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("Nothing applied.");
            return Ok(ExitCode::from(1));
        }
    }
    let cancel = Cancel::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\ncancelling: running steps finish, no new step starts (Ctrl-C again to abort)"
            );
            c2.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let progress = (!json).then(|| output::Progress::new(p.steps.len()));
    let sink = |e: &cloudlet::Event| match &progress {
        Some(progress) => progress.event(e),
        None => output::json_line("", e),
    };
    // With `pxe.serve` the facade's apply runs the lab's boot service during the apply and
    // until the network installs have reported; its events are printed as they come.
    let applied = lab
        .apply_with(
            &p,
            ApplyOptions {
                concurrency,
                on_event: Some(&sink),
                cancel,
                allow_data_loss,
                ..ApplyOptions::default()
            },
            Some(&pxe_event),
        )
        .await?;
    if let Some(progress) = progress {
        progress.finish();
        print!("{}", output::report_text(&applied.report));
    }
    if let Some(outcome) = &applied.installs {
        if json {
            output::json_line("installs", outcome);
        } else {
            print!("{}", output::installs_text(outcome));
        }
    }
    Ok(if applied.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
