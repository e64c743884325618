//! Volume backups as the plan holds them, proven by running them: the seed's apps with
//! volumes get a CronJob and a Secret of references; the CronJob's container (its command,
//! its environment, its mounts — the claims read-only, the store's CA) is run as a container
//! would run it, in a mount namespace with a root of its own, with stock restic (Debian's
//! package: the same program the image holds) against the S3-compatible peer; the snapshots
//! it makes are read back by cloudlet, and retention keeps what the lab says.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;

use cloudlet_backup::repo::{Location, Repo};
use cloudlet_backup::s3::S3Location;
use cloudlet_testkit::s3::{ACCESS_KEY, S3Peer, SECRET_KEY};
use serde_json::Value;

const KEY: &str = "volume-backup-key";

fn lab(peer: &S3Peer, work: &Path, registry: Option<&str>) -> cloudlet_core::Lab {
    let secret = work.join("s3-secret");
    std::fs::write(&secret, SECRET_KEY).unwrap();
    let access = work.join("s3-access");
    std::fs::write(&access, ACCESS_KEY).unwrap();
    let key = work.join("backup-key");
    std::fs::write(&key, KEY).unwrap();
    let block = format!(
        "\nbackup:\n  key: {{file: {}}}\n  targets:\n    offsite:\n      s3: {{endpoint: {}, bucket: {}, prefix: vols, access_key: {{file: {}}}, secret_key: {{file: {}}}, ca: {}}}\n  volumes: {{target: offsite, every: 6h, keep: {{last: 2}}}}\n",
        key.display(),
        peer.endpoint,
        peer.bucket,
        access.display(),
        secret.display(),
        peer.ca.display()
    );
    cloudlet_testkit::seed::seed_lab(move |name, mut text| {
        if name == "cluster.yaml" {
            text.push_str(&block);
            if let Some(r) = registry {
                text = text.replace(
                    "cluster:\n",
                    &format!("cluster:\n  platform: {{registry: {r}}}\n"),
                );
            }
        }
        text
    })
}

fn find<'a>(
    plan: &'a [cloudlet_core::Resource],
    kind: &str,
    name: &str,
) -> &'a cloudlet_core::Resource {
    plan.iter()
        .find(|r| &*r.id.kind == kind && &*r.id.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the plan"))
}

/// Runs `script` as the backup container would: a root of its own holding the host's
/// programs, `/data/VOLUME` bound from `volumes`, the CA at its path, `env` only.
fn run_container(
    root: &Path,
    script: &str,
    env: &[(String, String)],
    volumes: &[(String, &Path)],
    ca: &Path,
) -> std::process::Output {
    for d in ["usr", "etc", "tmp", "dev", "proc", "etc-cloudlet"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut setup = String::from("set -e\n");
    for d in ["usr", "dev"] {
        setup.push_str(&format!("mount --rbind /{d} {}/{d}\n", root.display()));
    }
    for l in ["bin", "sbin", "lib", "lib64"] {
        if Path::new("/").join(l).is_symlink() {
            let _ = std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l));
        }
    }
    std::fs::create_dir_all(root.join("etc-cloudlet")).unwrap();
    for (name, src) in volumes {
        let at = root.join("data").join(name);
        std::fs::create_dir_all(&at).unwrap();
        setup.push_str(&format!(
            "mount --bind -o ro {} {}\n",
            src.display(),
            at.display()
        ));
    }
    let ca_dir = root.join("cloudlet-ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::copy(ca, ca_dir.join("ca.crt")).unwrap();
    setup.push_str(&format!(
        "mount -t tmpfs none {r}/etc\nmkdir -p {r}/etc/cloudlet-backup {r}/etc/ssl\ncp -r /etc/ssl/. {r}/etc/ssl/ 2>/dev/null || true\nmount --bind {r}/cloudlet-ca {r}/etc/cloudlet-backup\nexec chroot {r} /bin/sh -c \"$CLOUDLET_SCRIPT\"\n",
        r = root.display()
    ));
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &setup])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("CLOUDLET_SCRIPT", script)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("unshare runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planned_cronjob_backs_up_an_apps_volumes_with_stock_restic() {
    let work = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(work.path(), "lab-volumes");
    let lab = lab(&peer, work.path(), None);
    let plan = cloudlet_cluster::expand(&lab);

    let job = find(&plan, "cronjob", "blog.blog-backup").body.value();
    let secret = find(&plan, "secret", "blog.blog-backup").body.value();
    assert_eq!(job["spec"]["schedule"], "0 */6 * * *");
    assert_eq!(job["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "docker.io/restic/restic:0.17.3");
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "blog-content"
    );
    assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["readOnly"], true);
    let text =
        serde_json::to_string(&plan.iter().map(|r| r.body.value()).collect::<Vec<_>>()).unwrap();
    assert!(
        !text.contains(SECRET_KEY) && !text.contains(KEY),
        "a secret is in the plan"
    );
    // The mail server has a volume too; apps without volumes get nothing.
    find(&plan, "cronjob", "mailserver.mailserver-backup");
    assert!(
        !plan
            .iter()
            .any(|r| &*r.id.kind == "cronjob" && r.id.name.contains("wireguard"))
    );

    // The container's environment: literal values, and the Secret's keys read where its
    // references say (as the provider does at apply time).
    let refs = &secret["cloudlet.dev/secretRefs"];
    let mut env = Vec::new();
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = match (&e["value"], &e["valueFrom"]["secretKeyRef"]["key"]) {
            (Value::String(v), _) => v.clone(),
            (_, Value::String(k)) => match (&refs[k.as_str()]["env"], &refs[k.as_str()]["file"]) {
                (Value::String(var), _) => std::env::var(var).unwrap(),
                (_, Value::String(f)) => std::fs::read_to_string(f).unwrap().trim().to_string(),
                _ => panic!("{k}: no reference"),
            },
            _ => panic!("{name}: no value"),
        };
        env.push((name, value));
    }
    let script = c["command"][2].as_str().unwrap().to_string();
    assert_eq!(c["command"][0], "/bin/sh");

    // The volume as it is on the NAS.
    let content = work.path().join("nas/blog/content");
    std::fs::create_dir_all(content.join("posts")).unwrap();
    std::fs::write(content.join("index.html"), b"<h1>home</h1>\n").unwrap();
    std::fs::write(content.join("posts/1.html"), vec![b'x'; 300_000]).unwrap();

    let loc = Location::S3(S3Location {
        endpoint: peer.endpoint.clone(),
        bucket: peer.bucket.clone(),
        prefix: "vols".into(),
        region: "us-east-1".into(),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        ca: Some(peer.ca.clone()),
    });
    let mut ids = Vec::new();
    for round in 0..3 {
        std::fs::write(content.join("round"), format!("{round}\n")).unwrap();
        let o = run_container(
            &work.path().join(format!("root{round}")),
            &script,
            &env,
            &[("content".to_string(), content.as_path())],
            &peer.ca,
        );
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success(),
            "round {round}: the backup container failed:\n{out}"
        );
        assert!(!out.contains(SECRET_KEY) && !out.contains(KEY), "{out}");
        let l = loc.clone();
        let snaps = cloudlet_backup::blocking(move || Repo::open(&l, KEY)?.snapshots())
            .await
            .unwrap();
        ids.push(snaps.last().unwrap().id.clone());
    }
    let l = loc.clone();
    let dest = work.path().join("restored");
    let d = dest.clone();
    let last = ids[2].clone();
    let snaps = cloudlet_backup::blocking(move || {
        let repo = Repo::open(&l, KEY)?;
        repo.restore(&last, &d)?;
        repo.snapshots()
    })
    .await
    .unwrap();
    assert_eq!(
        snaps.len(),
        2,
        "keep: {{last: 2}} forgot the oldest: {snaps:?}"
    );
    assert!(!snaps.iter().any(|s| s.id == ids[0]));
    let s = &snaps[1];
    assert_eq!(s.class, "volumes");
    assert_eq!(s.host, "seed");
    assert_eq!(s.paths, vec!["/data".to_string()]);
    assert_eq!(
        std::fs::read(dest.join("content/index.html")).unwrap(),
        b"<h1>home</h1>\n"
    );
    assert_eq!(std::fs::read(dest.join("content/round")).unwrap(), b"2\n");
    assert_eq!(
        std::fs::read(dest.join("content/posts/1.html"))
            .unwrap()
            .len(),
        300_000
    );
}

#[test]
fn the_backup_image_comes_through_the_labs_registry() {
    let work = tempfile::tempdir().unwrap();
    let peer = S3Peer::start(work.path(), "lab-volumes");
    let lab = lab(&peer, work.path(), Some("registry.lan:5000"));
    let plan = cloudlet_cluster::expand(&lab);
    let job = find(&plan, "cronjob", "blog.blog-backup").body.value();
    assert_eq!(
        job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.lan:5000/restic/restic:0.17.3"
    );
}
