//! The Linux NAS backends for real, through the engine.
//!
//! nfs-ganesha (Debian's, NFSv4 only) runs in a network namespace the test creates; a client
//! namespace holds two addresses, one a cluster node the lab allows and one it does not, and
//! reads the exports with libnfs's `nfs-ls`/`nfs-cat` from either (the route's source address
//! picks which). The kernel-server backend cannot serve here (no nfsd in this kernel): its file
//! is checked by `exportfs -ra` and read back with `exportfs -v`, inside a mount namespace of
//! its own so the host's export table is never touched.
#![allow(missing_docs, clippy::disallowed_methods)]

use cloudlet_testkit::shell::{ok, sh, tool};
use std::path::Path;
use std::process::{Child, Output};
use std::sync::Arc;
use std::time::Duration;

use cloudlet_core::engine::{ApplyOptions, Engine};
use cloudlet_core::error::EngineError;
use cloudlet_core::load::load_texts;
use cloudlet_core::provider::Provider;
use cloudlet_core::{Action, Domain, Plan};
use cloudlet_storage::linux_nas::{Flavor, LinuxNas, LinuxNasOptions};

/// The lab: one export for the cluster node, one app volume on it.
fn lab_text(root: &Path, allow: &str, app: bool, retain: bool) -> String {
    let root = root.display();
    let mut s = format!(
        r#"name: nas
site: {{domain: nas.lan}}
networks:
  lan: {{cidr: 10.78.0.0/24, gateway: 10.78.0.1}}
storage:
  kind: ganesha
  address: 10.78.0.2
  exports:
    mail: {{path: {root}/mail, allow: [{allow}], squash: none}}
machines:
  node1: {{cpus: 1, memory: 1GiB, nics: [{{network: lan, ip: 10.78.0.10}}]}}
  node2: {{cpus: 1, memory: 1GiB, nics: [{{network: lan, ip: 10.78.0.20}}]}}
cluster:
  control_plane: [node1]
"#
    );
    if app {
        s.push_str(&format!(
            r#"  apps:
    mailserver:
      image: docker.io/mailserver/docker-mailserver:15
      volumes:
        - {{name: data, export: mail, mount: /var/mail, size: 1GiB, owner: {{uid: 5000, gid: 5001}}, mode: "0750", retain: {retain}}}
"#
        ));
    }
    s
}

fn desired(text: &str) -> Vec<cloudlet_core::Resource> {
    let loaded =
        load_texts(vec![("lab.yaml".into(), text.to_string())], ".".into()).expect("loads");
    let report = cloudlet_core::validate::validate(&loaded.lab);
    assert!(
        report.iter().all(|d| !d.is_error()),
        "{:?}",
        report.iter().filter(|d| d.is_error()).collect::<Vec<_>>()
    );
    cloudlet_storage::expand(&loaded.lab)
}

struct Env {
    names: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.names {
            let _ = sh(&format!("ip netns del {n}"));
        }
    }
}

/// NAS namespace (10.78.0.2) and a client namespace holding 10.78.0.10 and 10.78.0.20.
fn namespaces() -> Env {
    let id = std::process::id() % 100_000;
    let (nas, cli) = (format!("clnas{id}"), format!("clnc{id}"));
    let env = Env {
        names: vec![nas.clone(), cli.clone()],
        children: Vec::new(),
    };
    for n in &env.names {
        ok(&format!("ip netns add {n} && ip -n {n} link set lo up"));
    }
    ok(&format!(
        "ip link add lan netns {nas} type veth peer name eth0 netns {cli}"
    ));
    ok(&format!(
        "ip -n {nas} addr add 10.78.0.2/24 dev lan && ip -n {nas} link set lan up"
    ));
    ok(&format!(
        "ip -n {cli} addr add 10.78.0.10/24 dev eth0 && ip -n {cli} addr add 10.78.0.20/24 dev eth0 && ip -n {cli} link set eth0 up"
    ));
    env
}

/// Starts nfs-ganesha in the NAS namespace (`env.names[0]`) with `conf` included, and waits
/// until it listens.
fn ganesha(env: &mut Env, dir: &Path, conf: &Path, pid: &Path) {
    let nas = env.names[0].clone();
    env.children
        .push(cloudlet_testkit::shell::ganesha(&nas, dir, conf, pid));
}

/// Lists `path` on the NAS from the client address `from`.
fn nfs_ls(cli: &str, from: &str, path: &str) -> Output {
    ok(&format!(
        "ip -n {cli} route replace 10.78.0.0/24 dev eth0 src {from}"
    ));
    sh(&format!(
        "ip netns exec {cli} timeout 20 nfs-ls 'nfs://10.78.0.2{path}?version=4'"
    ))
}

fn nfs_cat(cli: &str, from: &str, path: &str) -> Output {
    ok(&format!(
        "ip -n {cli} route replace 10.78.0.0/24 dev eth0 src {from}"
    ));
    sh(&format!(
        "ip netns exec {cli} timeout 20 nfs-cat 'nfs://10.78.0.2{path}?version=4'"
    ))
}

fn engine(provider: Arc<dyn Provider>, state: &Path) -> Engine {
    cloudlet_testkit::engine::engine("nas", Domain::Storage, provider, state)
}

async fn apply(e: &Engine, plan: &Plan, allow_data_loss: bool) -> Result<(), EngineError> {
    let report = e
        .apply(
            plan,
            ApplyOptions {
                allow_data_loss,
                ..ApplyOptions::default()
            },
        )
        .await?;
    assert!(report.is_success(), "{report:?}");
    Ok(())
}

use cloudlet_testkit::engine::steps;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ganesha_serves_the_labs_volumes_to_allowed_clients_and_keeps_data() {
    assert!(
        tool("ganesha.nfsd") && tool("nfs-ls") && tool("nfs-cat"),
        "needs Debian's nfs-ganesha, nfs-ganesha-vfs and libnfs-utils"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    let conf = dir.path().join("cloudlet.conf");
    std::fs::write(&conf, "").unwrap();
    let pid = dir.path().join("ganesha.pid");
    let mut env = namespaces();
    let (nas, cli) = (env.names[0].clone(), env.names[1].clone());
    ganesha(&mut env, dir.path(), &conf, &pid);

    let provider = Arc::new(LinuxNas::new(LinuxNasOptions {
        flavor: Flavor::Ganesha,
        config: conf.clone(),
        pid_file: pid.clone(),
        exec: vec!["ip".into(), "netns".into(), "exec".into(), nas.clone()],
    }));
    let e = engine(provider, &dir.path().join("state"));

    // Apply: the export's directory, the volume's directory with owner and mode, two exports.
    let plan = e
        .plan(desired(&lab_text(&root, "node1", true, true)))
        .await
        .unwrap();
    assert_eq!(plan.summary.create, 4, "{:?}", steps(&plan));
    apply(&e, &plan, false).await.unwrap();
    let vol = root.join("mail/mailserver/data");
    let meta = std::fs::metadata(&vol).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!((meta.uid(), meta.gid()), (5000, 5001));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o750);
    std::fs::write(vol.join("mailbox"), "hello from the lab\n").unwrap();
    let text = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(text.matches("EXPORT {").count(), 2, "{text}");
    assert!(text.contains("Clients = 10.78.0.10/32"), "{text}");

    // The allowed node reads the volume over NFSv4; the other address is refused.
    let volp = vol.display().to_string();
    let o = nfs_cat(&cli, "10.78.0.10", &format!("{volp}/mailbox"));
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("hello from the lab"),
        "allowed client: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let o = nfs_ls(&cli, "10.78.0.20", &volp);
    assert!(
        !o.status.success(),
        "a client the lab does not allow must be refused"
    );

    // A second plan is empty.
    let again = e
        .plan(desired(&lab_text(&root, "node1", true, true)))
        .await
        .unwrap();
    assert!(!again.summary.has_changes(), "{:?}", steps(&again));

    // A hand-made change of the volume's mode is drift, put back by the next apply.
    std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).unwrap();
    let drift = e
        .plan(desired(&lab_text(&root, "node1", true, true)))
        .await
        .unwrap();
    assert_eq!(
        steps(&drift),
        vec!["update storage/dataset/mail.mailserver.data"]
    );
    assert_eq!(drift.steps[0].changes[0].path, "mode");
    apply(&e, &drift, false).await.unwrap();
    assert_eq!(
        std::fs::metadata(&vol).unwrap().permissions().mode() & 0o7777,
        0o750
    );

    // Allowing node2 changes exactly the two exports; after the reload it reads too.
    let wider = e
        .plan(desired(&lab_text(&root, "node1, node2", true, true)))
        .await
        .unwrap();
    assert_eq!(
        steps(&wider),
        vec![
            "update storage/nfs-export/mail",
            "update storage/nfs-export/mail.mailserver.data"
        ]
    );
    apply(&e, &wider, false).await.unwrap();
    let o = nfs_ls(&cli, "10.78.0.20", &volp);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("mailbox"),
        "node2 after the change: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // Removing the app keeps its directory and every byte, and the plan says so.
    let gone = e
        .plan(desired(&lab_text(&root, "node1, node2", false, true)))
        .await
        .unwrap();
    assert_eq!(
        steps(&gone),
        vec!["delete storage/nfs-export/mail.mailserver.data"]
    );
    assert_eq!(
        gone.kept
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["storage/dataset/mail.mailserver.data"]
    );
    apply(&e, &gone, false).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(vol.join("mailbox")).unwrap(),
        "hello from the lab\n"
    );
    let text = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(
        text.matches("EXPORT {").count(),
        1,
        "the volume's own export is gone: {text}"
    );
    let o = nfs_ls(&cli, "10.78.0.10", &root.join("mail").display().to_string());
    assert!(o.status.success(), "the export itself still serves");
    // The kept directory stays on the books: a re-plan is empty and still lists it.
    let still = e
        .plan(desired(&lab_text(&root, "node1, node2", false, true)))
        .await
        .unwrap();
    assert!(!still.summary.has_changes() && still.kept.len() == 1);

    // Letting the data go takes `retain: false` in the lab and the permission on apply.
    let back = e
        .plan(desired(&lab_text(&root, "node1, node2", true, false)))
        .await
        .unwrap();
    apply(&e, &back, false).await.unwrap();
    let lossy = e
        .plan(desired(&lab_text(&root, "node1, node2", false, false)))
        .await
        .unwrap();
    let marked: Vec<String> = lossy
        .steps
        .iter()
        .filter(|s| s.data_loss)
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(marked, vec!["storage/dataset/mail.mailserver.data"]);
    let refused = apply(&e, &lossy, false).await.unwrap_err();
    assert!(matches!(refused, EngineError::DataLoss { .. }), "{refused}");
    assert!(
        vol.join("mailbox").exists(),
        "nothing deleted without the permission"
    );
    apply(&e, &lossy, true).await.unwrap();
    assert!(!vol.exists(), "deleted with the permission");
    assert!(
        root.join("mail").exists(),
        "the export's own directory stays"
    );
    let last = e
        .plan(desired(&lab_text(&root, "node1, node2", false, false)))
        .await
        .unwrap();
    assert!(
        !last.summary.has_changes() && last.kept.is_empty(),
        "{:?}",
        steps(&last)
    );
    assert!(last.steps.iter().all(|s| s.action != Action::Delete));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kernel_exports_file_round_trips_through_exportfs() {
    assert!(
        tool("exportfs") && tool("unshare"),
        "needs Debian's nfs-kernel-server"
    );
    let dir = tempfile::tempdir().unwrap();
    let (etc, lib, root) = (
        dir.path().join("exports.d"),
        dir.path().join("nfs-lib"),
        dir.path().join("data"),
    );
    for d in [&etc, &lib, &root] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::create_dir_all("/etc/exports.d").unwrap();
    // Every command runs in a mount namespace of its own where cloudlet's directory and a
    // scratch state directory stand in for the system's: the host's export table is untouched.
    let exec: Vec<String> = vec![
        "unshare".into(),
        "-m".into(),
        "sh".into(),
        "-c".into(),
        format!(
            "mount --bind {} /etc/exports.d && mount --bind {} /var/lib/nfs && exec \"$@\"",
            etc.display(),
            lib.display()
        ),
        "sh".into(),
    ];
    let provider = Arc::new(LinuxNas::new(LinuxNasOptions {
        flavor: Flavor::Kernel,
        config: etc.join("cloudlet.exports"),
        pid_file: dir.path().join("unused.pid"),
        exec: exec.clone(),
    }));
    let e = engine(provider, &dir.path().join("state"));
    let lab = lab_text(&root, "node1", true, true).replace("kind: ganesha", "kind: linux_nfs");
    let plan = e.plan(desired(&lab)).await.unwrap();
    apply(&e, &plan, false).await.unwrap();
    let file = std::fs::read_to_string(etc.join("cloudlet.exports")).unwrap();
    let vol = root.join("mail/mailserver/data").display().to_string();
    assert!(
        file.contains(&format!(
            "\"{vol}\" 10.78.0.10/32(rw,sync,no_subtree_check,no_root_squash,sec=sys)"
        )),
        "{file}"
    );
    let listed = ok(&format!(
        "unshare -m sh -c 'mount --bind {} /etc/exports.d && mount --bind {} /var/lib/nfs && exportfs -v'",
        etc.display(),
        lib.display()
    ));
    assert!(
        listed.contains(&vol) && listed.contains("10.78.0.10/32"),
        "{listed}"
    );
    assert!(listed.contains("no_root_squash"), "{listed}");
    let again = e.plan(desired(&lab)).await.unwrap();
    assert!(!again.summary.has_changes(), "{:?}", steps(&again));

    // A change exportfs refuses is rolled back: the previous file comes back.
    std::fs::write(
        etc.join("extra.exports"),
        format!("{} 10.0.0.0/8(rw,bogus_option)\n", root.display()),
    )
    .unwrap();
    let wider = e
        .plan(desired(
            &lab.replace("allow: [node1]", "allow: [node1, node2]"),
        ))
        .await
        .unwrap();
    let report = e.apply(&wider, ApplyOptions::default()).await.unwrap();
    assert!(
        !report.is_success(),
        "exportfs refuses the directory's other file"
    );
    let msg = format!("{:?}", report.failed);
    assert!(msg.contains("previous exports file was restored"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(etc.join("cloudlet.exports")).unwrap(),
        file
    );
}

/// A tmpfs of `mib` MiB mounted on `dir`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        ok(&format!(
            "mount -t tmpfs -o size={mib}m tmpfs {}",
            dir.display()
        ));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = sh(&format!("umount -l {}", self.0.display()));
    }
}

/// `cloudlet doctor`'s mount check for real: nfs-ganesha in a namespace behind a veth whose
/// near end holds this machine's address and node1's, so the check asks as node1 would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_mounts_each_export_from_a_nodes_address_and_reads_its_free_space() {
    use cloudlet_core::doctor::{Status, Thresholds};
    assert!(
        tool("ganesha.nfsd"),
        "needs Debian's nfs-ganesha and nfs-ganesha-vfs"
    );
    let dir = tempfile::tempdir().unwrap();
    let (fine, full, taken) = (
        dir.path().join("fine"),
        dir.path().join("full"),
        dir.path().join("taken"),
    );
    let _fine = Tmpfs::mount(&fine, 16);
    let _full = Tmpfs::mount(&full, 16);
    std::fs::create_dir_all(&taken).unwrap();
    // 15.5 of 16 MiB written: under 5% free.
    std::fs::write(full.join("fill"), vec![7u8; 31 << 19]).unwrap();
    let id = std::process::id() % 100_000;
    let (nas, near) = (format!("clnd{id}"), format!("cld{id}"));
    let mut env = Env {
        names: vec![nas.clone()],
        children: Vec::new(),
    };
    ok(&format!("ip netns add {nas} && ip -n {nas} link set lo up"));
    ok(&format!(
        "ip link add {near} type veth peer name lan netns {nas}"
    ));
    ok(&format!(
        "ip -n {nas} addr add 10.79.0.2/24 dev lan && ip -n {nas} link set lan up"
    ));
    ok(&format!(
        "ip addr add 10.79.0.1/24 dev {near} && ip addr add 10.79.0.10/32 dev {near} && ip link set {near} up"
    ));
    // The NAS as cloudlet writes it, but `taken` changed by hand to node2 only.
    let block = |id: u32, path: &Path, client: &str| {
        format!(
            "EXPORT {{\n  Export_Id = {id};\n  Path = \"{p}\";\n  Pseudo = \"{p}\";\n  Protocols = 4;\n  Transports = TCP;\n  SecType = sys;\n  Squash = No_Root_Squash;\n  Access_Type = None;\n  FSAL {{ Name = VFS; }}\n  CLIENT {{ Clients = {client}; Access_Type = RW; }}\n}}\n",
            p = path.display()
        )
    };
    let conf = dir.path().join("cloudlet.conf");
    std::fs::write(
        &conf,
        [
            block(1, &fine, "10.79.0.10/32"),
            block(2, &full, "10.79.0.10/32"),
            block(3, &taken, "10.79.0.20/32"),
        ]
        .concat(),
    )
    .unwrap();
    ganesha(&mut env, dir.path(), &conf, &dir.path().join("ganesha.pid"));

    let text = format!(
        r#"name: nas
site: {{domain: nas.lan}}
networks:
  lan: {{cidr: 10.79.0.0/24, gateway: 10.79.0.254}}
storage:
  kind: ganesha
  address: 10.79.0.2
  exports:
    fine: {{path: {fine}, allow: [node1], squash: none}}
    full: {{path: {full}, allow: [node1], squash: none}}
    taken: {{path: {taken}, allow: [node1], squash: none}}
    away: {{path: {taken}, allow: [node2]}}
machines:
  node1: {{cpus: 1, memory: 1GiB, nics: [{{network: lan, ip: 10.79.0.10}}]}}
  node2: {{cpus: 1, memory: 1GiB, nics: [{{network: lan, ip: 10.79.0.20}}]}}
cluster:
  control_plane: [node1]
  workers: [node2]
"#,
        fine = fine.display(),
        full = full.display(),
        taken = taken.display()
    );
    let lab = load_texts(vec![("lab.yaml".into(), text)], ".".into())
        .expect("loads")
        .lab;
    let t = Thresholds::default();
    let findings = cloudlet_storage::doctor::exports(&lab, Duration::from_secs(5), &t).await;
    let find = |check: &str, subject: &str| {
        findings
            .iter()
            .find(|f| f.check == check && f.subject == subject)
            .unwrap_or_else(|| panic!("{check} {subject}: {findings:#?}"))
            .clone()
    };
    let f = find("storage.mount", "export fine");
    assert_eq!(f.status, Status::Ok, "{f:?}");
    assert!(
        f.evidence.starts_with(&format!(
            "{} mounts over NFSv4 from 10.79.0.10 (node1) port ",
            fine.display()
        )) && f
            .evidence
            .ends_with(": a directory; root may read, lookup, modify, extend, delete"),
        "{f:?}"
    );
    let s = find("storage.space", "export fine");
    assert_eq!(s.status, Status::Ok, "{s:?}");
    assert!(s.evidence.ends_with("of 16.0 MiB free (100.0%)"), "{s:?}");

    assert_eq!(find("storage.mount", "export full").status, Status::Ok);
    let s = find("storage.space", "export full");
    assert_eq!(s.status, Status::Fail, "{s:?}");
    assert!(s.evidence.ends_with("of 16.0 MiB free (3.1%)"), "{s:?}");

    let f = find("storage.mount", "export taken");
    assert_eq!(f.status, Status::Fail, "{f:?}");
    assert!(
        f.evidence
            .contains("does not mount over NFSv4 from 10.79.0.10 (node1)")
            && f.evidence.contains("NFS4ERR_"),
        "{f:?}"
    );
    assert!(
        f.fix
            .as_deref()
            .unwrap()
            .contains("`cloudlet apply` puts the export"),
        "{f:?}"
    );
    assert!(
        !findings
            .iter()
            .any(|f| f.check == "storage.space" && f.subject == "export taken"),
        "no space read through a refused export"
    );

    let f = find("storage.mount", "export away");
    assert_eq!(f.status, Status::Warn, "{f:?}");
    assert!(
        f.evidence
            .contains("this machine (10.79.0.1) is not a client it allows (10.79.0.20/32)"),
        "{f:?}"
    );

    // The NAS's service down: every mount fails at once, with the way to bring it back.
    for c in &mut env.children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = sh(&format!("ip netns pids {nas} | xargs -r kill -9"));
    let findings = cloudlet_storage::doctor::exports(&lab, Duration::from_secs(5), &t).await;
    let down: Vec<_> = findings
        .iter()
        .filter(|f| f.check == "storage.mount" && f.status == Status::Fail)
        .collect();
    assert_eq!(down.len(), 3, "{findings:#?}");
    assert!(
        down.iter().all(|f| f
            .fix
            .as_deref()
            .unwrap()
            .starts_with("start the NAS's NFS service")),
        "{down:#?}"
    );
}
