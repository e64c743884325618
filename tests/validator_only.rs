//! `cloudlet` without its `backends` feature: the lab language and the validator, as a crate
//! that only checks lab files (an editor plugin, a CI step) takes it. A project of its own
//! depends on the facade with `default-features = false` and is built and run here: it must
//! validate every backend's targets the way the full build does, and compile no network
//! stack (no HTTP, TLS, Kubernetes client, socket layer or backup store).
#![allow(missing_docs, clippy::disallowed_methods, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MAIN: &str = r#"
fn main() {
    let path = std::env::args().nth(1).expect("a lab");
    let lab = match cloudlet::Lab::load(&path) {
        Ok(lab) => lab,
        Err(e) => {
            println!("load: {}", e.message());
            std::process::exit(2);
        }
    };
    let report = lab.validate();
    for d in &report.diagnostics {
        println!("{d}");
        if let Some(help) = &d.help {
            println!("  help: {help}");
        }
    }
    println!("errors: {}", report.errors().count());
    let kinds: Vec<&str> = cloudlet::BACKENDS.iter().map(|b| b.kind).collect();
    println!("backends: {}", kinds.join(","));
    println!("schema: {}", cloudlet::schema()["$id"]);
    // Connecting is what this build leaves out: the hypervisor's backend says so.
    let model = lab.model();
    let target = &model.targets.hypervisor;
    let backend = cloudlet::core::backend::find(cloudlet::BACKENDS, target.kind.as_str()).unwrap();
    let dir = std::path::Path::new(".");
    let c = cloudlet::core::backend::Connection {
        lab: model,
        domain: cloudlet::Domain::Hypervisor,
        target,
        base_dir: dir,
        output_dir: dir,
        state_dir: dir,
        take_over: false,
    };
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match (backend.connect)(&c).as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok(_)) => println!("connect: a provider"),
        std::task::Poll::Ready(Err(e)) => println!("connect: {e}"),
        std::task::Poll::Pending => println!("connect: pending"),
    }
    std::process::exit(i32::from(report.has_errors()));
}
"#;

/// Crates of the full build that a validator must not compile.
const NETWORK_STACKS: [&str; 16] = [
    "cloudlet-transport",
    "cloudlet-pxe",
    "cloudlet-backup",
    "hyper",
    "hyper-util",
    "rustls",
    "tokio-rustls",
    "tokio-tungstenite",
    "kube",
    "kube-client",
    "k8s-openapi",
    "mio",
    "socket2",
    "hickory-proto",
    "rustic_core",
    "openssh-sftp-client",
];

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A project of its own that depends on this checkout's facade without its default features,
/// resolved from the workspace's lock file (no registry is asked).
fn project(dir: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"lab-check\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\ncloudlet = {{ path = {:?}, default-features = false }}\n\n[workspace]\n",
            repo.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), MAIN).unwrap();
    std::fs::copy(repo.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    dir.join("Cargo.toml")
}

#[test]
fn the_validator_alone_checks_every_backends_targets_without_a_network_stack() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = project(tmp.path());
    // Its own target directory below the workspace's: built once, then kept between runs.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/validator-only");

    let tree = ok(
        cargo()
            .args([
                "tree",
                "--offline",
                "-e",
                "normal,build",
                "--prefix",
                "none",
                "--manifest-path",
            ])
            .arg(&manifest)
            .output()
            .unwrap(),
        "cargo tree",
    );
    let mut crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    crates.sort_unstable();
    crates.dedup();
    let stacks: Vec<&str> = crates
        .iter()
        .copied()
        .filter(|c| NETWORK_STACKS.contains(c))
        .collect();
    assert!(stacks.is_empty(), "the validator compiles {stacks:?}");
    eprintln!("validator-only: {} crates", crates.len());

    let run = |lab: &Path| {
        cargo()
            .args(["run", "--offline", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target)
            .arg("--")
            .arg(lab)
            .output()
            .unwrap()
    };

    // The seed and a lab of real backends validate as they do in the full build.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let seed = ok(run(&examples.join("seed")), "the seed");
    assert!(seed.contains("errors: 0"), "{seed}");
    assert!(
        seed.contains("backends: local,vsphere,proxmox,libvirt,pfsense,opnsense,linux,truenas,ganesha,linux_nfs,kubernetes,kubeadm"),
        "{seed}"
    );
    assert!(
        seed.contains("schema: \"https://cloudlet.dev/schemas/lab.schema.json\""),
        "{seed}"
    );
    let real = examples.join("backends/vsphere-pfsense-truenas.yaml");
    let out = ok(run(&real), "the vSphere lab");
    assert!(out.contains("errors: 0"), "{out}");
    assert!(
        out.contains("connect: this build of cloudlet validates `vsphere` targets but has no client for them: build cloudlet with its `backends` feature"),
        "{out}"
    );
    // The `local` backend is in every build.
    assert!(seed.contains("connect: a provider"), "{seed}");

    // A target its backend's description refuses: the error, its position and the help
    // come from the backend's descriptor, which the validator has without the client.
    let text = std::fs::read_to_string(&real)
        .unwrap()
        .replace("endpoint: https://10.0.10.1", "endpoint: http://10.0.10.1")
        .replace("datacenter: Home", "datacentre: Home");
    let bad = tmp.path().join("lab.yaml");
    std::fs::write(&bad, &text).unwrap();
    let out = run(&bad);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("errors: 2"), "{stdout}");
    let line = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        stdout.contains(&format!("lab.yaml:{}:", line("http://10.0.10.1"))),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("lab.yaml:{}:17", line("datacentre"))),
        "{stdout}"
    );
    assert!(
        stdout.contains("the `vsphere` backend does not read `datacentre`")
            && stdout.contains("did you mean `datacenter`?"),
        "{stdout}"
    );
}
