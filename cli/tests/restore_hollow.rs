//! Disaster recovery end to end on the hollow cluster tier: a lab cloudlet made (kubeadm
//! control plane, a worker, an app) is backed up (cloudlet's state and an etcd snapshot),
//! then everything is destroyed — every process, every node's disk, the namespaces, the
//! lab's state directory. New machines come up at the same addresses (new host keys, as
//! after a reinstall), and `cloudlet restore` rebuilds the lab from its files, the backup
//! target and the keys: the kubeconfig issued before the disaster works again (same CA), the
//! objects written before the backup are back, the one written after it is not (the
//! data-loss window), and the timeline is printed. A second restore into the rebuilt lab is
//! refused without --force, and changes nothing.
#![allow(missing_docs, clippy::disallowed_methods, clippy::print_stderr)] // the restore's timeline is printed (seen with --no-capture)

use std::path::Path;
use std::process::Output;

use cloudlet_testkit::drill;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

mod common;
use common::client;

const KEY: &str = "restore-backup-key";

async fn cloudlet(vault: &str, args: &[&str]) -> Output {
    common::cloudlet_async(
        &[("CLOUDLET_VAULT_KEY", vault), ("CLOUDLET_BACKUP_KEY", KEY)],
        args,
    )
    .await
}

fn text(o: &Output) -> String {
    common::text(o, &[KEY])
}

fn journal(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(".cloudlet/restore/journal.json")).unwrap_or_default()
}

#[test]
fn a_lab_destroyed_after_its_backup_is_rebuilt_by_one_restore_with_its_data() {
    let work = tempfile::tempdir().unwrap();
    let (lab, target) = (work.path().join("lab.yaml"), work.path().join("nas"));
    let state = work.path().join(".cloudlet");
    let vault = common::vault_key();
    let l = lab.display().to_string();

    // Before: the lab made, its canaries written, backed up; one more canary after the backup.
    let before = drill::machines();
    drill::write_lab(&before, &lab, &target);
    before.report_installs(&state);
    let kubeconfig = before.block_on({
        let (vault, l) = (vault.clone(), l.clone());
        async move {
            let apply = cloudlet(&vault, &["apply", &l, "--yes"]).await;
            assert!(apply.status.success(), "{}", text(&apply));
            let kc = cloudlet(&vault, &["kubeconfig", &l, "--valid", "2h"]).await;
            assert!(kc.status.success(), "{}", text(&kc));
            let kc = String::from_utf8(kc.stdout).unwrap();
            let c = client(&kc).await;
            for i in 0..20 {
                drill::canary(&c, &format!("canary-{i}"), i).await;
            }
            // The writing canary: its sequence number and the time, every second, before,
            // during and after the backup, until the disaster.
            let writer = tokio::spawn(drill::write_every_second(c.clone()));
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            let run = cloudlet(&vault, &["backup", "run", &l]).await;
            assert!(run.status.success(), "{}", text(&run));
            drill::canary(&c, drill::AFTER_THE_BACKUP, 99).await;
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            writer.abort();
            let last = Api::<ConfigMap>::namespaced(c, "default")
                .get(drill::WRITER)
                .await
                .unwrap();
            (kc, drill::written(&last))
        }
    });
    let (kubeconfig, (last_seq, last_at)) = kubeconfig;

    // The disaster: every machine and everything on it, and the lab's state.
    drop(before);
    std::fs::remove_dir_all(&state).unwrap();

    // New machines at the same addresses, installed anew (new host keys reported).
    let after = drill::machines();
    // The same lab files; only the install user's key file is the new machines' (here each
    // set of hollow machines makes its own).
    drill::write_lab(&after, &lab, &target);
    after.report_installs(&state);
    let restore_began = std::time::Instant::now();
    let (restore, again, answering) = after.block_on({
        let (vault, l, kc) = (vault.clone(), l.clone(), kubeconfig.clone());
        async move {
            let restore = cloudlet(&vault, &["restore", &l, "--from", "nas"]).await;
            // RTO: from the restore's start until the canary answers again.
            let maps = Api::<ConfigMap>::namespaced(client(&kc).await, "default");
            while maps.get_opt(drill::WRITER).await.ok().flatten().is_none() {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let answering = restore_began.elapsed();
            let again = cloudlet(&vault, &["restore", &l, "--from", "nas"]).await;
            (restore, again, answering)
        }
    });
    let out = text(&restore);
    eprintln!("{out}");
    assert!(
        restore.status.success(),
        "{out}\n{}\n{}",
        after.tail("cp", 30),
        after.tail("w1", 10)
    );
    for line in [
        "restore: identity done in ",
        "restore: infrastructure done in ",
        "restore: cluster data done in ",
        "restore: reconcile done in ",
        "restore: verify done in ",
        "Timeline:",
        "Data-loss window",
    ] {
        assert!(out.contains(line), "`{line}` not in:\n{out}");
    }
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("cluster  snapshot ")),
        "{out}"
    );

    // Refused into a lab that is not empty, and nothing changed.
    let journal_before = journal(work.path());
    let t = text(&again);
    assert!(!again.status.success(), "{t}");
    assert!(
        t.contains("refusing to restore over the lab's state"),
        "{t}"
    );
    assert!(t.contains("--force"), "{t}");
    assert_eq!(journal(work.path()), journal_before);

    // The kubeconfig issued before the disaster works: same CA. The data is back.
    let (back, web) = after.block_on(async move {
        let c = client(&kubeconfig).await;
        let back = drill::read_back(&c, 20).await;
        let web = Api::<Deployment>::namespaced(c, "web")
            .get_opt("web")
            .await
            .unwrap();
        (back, web)
    });
    assert_eq!(back.seqs, (0..20).collect::<Vec<_>>());
    assert!(
        !back.after_the_backup,
        "written after the backup, so not restored"
    );
    assert!(web.is_some(), "the app is back");
    // RPO: what the writing canary wrote last before the disaster against what came back;
    // within the cluster class's schedule (1h), and no later than the backup.
    let (restored_seq, restored_at) = back.writer;
    assert!(restored_seq <= last_seq, "{restored_seq} > {last_seq}");
    let rpo = last_at - restored_at;
    assert!((0..=3600).contains(&rpo), "RPO {rpo}s");
    eprintln!(
        "canary: last written #{last_seq}, restored #{restored_seq}: RPO {rpo}s ({} writes lost); RTO {:.1}s (restore start to the canary answering)",
        last_seq - restored_seq,
        answering.as_secs_f64()
    );
}
