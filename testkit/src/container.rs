//! A pod's container run as a kubelet would run it, where no kubelet runs: a root of its own
//! (the host's programs bound in, `/etc` a copy), the pod's claims bound from host directories
//! at their mount paths (read-only where the mount says), its Secret volumes and its
//! environment read from the references of cloudlet's Secret (as the cluster provider reads
//! them at apply time), and its command run chrooted in a mount namespace. And a Job's
//! outcome written through the API, as the Job controller would write it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// Secrets by name, each key's value.
pub type Secrets = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// The values of cloudlet's Secret resource (a plan's body): each key read where its
/// reference (`cloudlet.dev/secretRefs`) says, as the cluster provider reads it at apply time.
pub fn from_refs(body: &Value) -> (String, BTreeMap<String, Vec<u8>>) {
    let name = body["metadata"]["name"]
        .as_str()
        .expect("a named Secret")
        .to_string();
    let mut out = BTreeMap::new();
    for (key, r) in body["cloudlet.dev/secretRefs"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let v = match (&r["env"], &r["file"]) {
            (Value::String(var), _) => std::env::var(var)
                .unwrap_or_else(|_| panic!("{key}: ${var} is not set"))
                .into_bytes(),
            (_, Value::String(f)) => {
                let b = std::fs::read(f).unwrap_or_else(|e| panic!("{key}: {f}: {e}"));
                if r["verbatim"] == "true" {
                    b
                } else {
                    b.trim_ascii().to_vec()
                }
            }
            _ => panic!("{key}: no reference in {body}"),
        };
        out.insert(key.clone(), v);
    }
    (name, out)
}

/// The values of a Secret read from the API server.
pub fn from_live(s: &k8s_openapi::api::core::v1::Secret) -> (String, BTreeMap<String, Vec<u8>>) {
    let name = s.metadata.name.clone().expect("a named Secret");
    let data = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    (name, data)
}

fn value(secrets: &Secrets, name: &str, key: &str) -> Vec<u8> {
    secrets
        .get(name)
        .and_then(|s| s.get(key))
        .unwrap_or_else(|| panic!("Secret {name} has no key {key}"))
        .clone()
}

/// The container's environment: literal values, and Secrets' keys.
pub fn env_of(container: &Value, secrets: &Secrets) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"]
            .as_str()
            .expect("an env entry has a name")
            .to_string();
        let r = &e["valueFrom"]["secretKeyRef"];
        let value = match (&e["value"], &r["name"], &r["key"]) {
            (Value::String(v), _, _) => v.clone(),
            (_, Value::String(s), Value::String(k)) => {
                String::from_utf8(value(secrets, s, k)).unwrap()
            }
            _ => panic!("{name}: no value"),
        };
        env.push((name, value));
    }
    env
}

/// Runs the first container of `pod` (a pod template: `{metadata, spec}`) under `root`, its
/// claims from `claims` (claim name → host directory), its Secret volumes and environment
/// from `secrets`. Returns what it printed and how it exited.
pub fn run_pod(
    root: &Path,
    pod: &Value,
    secrets: &Secrets,
    claims: &BTreeMap<String, PathBuf>,
) -> Output {
    run_pod_with(
        root,
        pod,
        &Kubelet {
            secrets: secrets.clone(),
            claims: claims.clone(),
            ..Kubelet::default()
        },
    )
}

/// What a kubelet gives a pod besides its spec: Secrets' and ConfigMaps' values, claims'
/// directories, the pod's service account (its token, the cluster's CA and the API server,
/// mounted and in the environment as Kubernetes does), the image's programs, and arguments a
/// test adds (`--rounds 1` for a pod that runs until stopped).
#[derive(Debug, Clone, Default)]
pub struct Kubelet {
    /// Secrets by name.
    pub secrets: Secrets,
    /// ConfigMaps by name, each key's text.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Claim name → host directory.
    pub claims: BTreeMap<String, PathBuf>,
    /// The service account's token, the cluster CA (PEM), and the API server's host and port.
    pub service_account: Option<(String, Vec<u8>, String, u16)>,
    /// Programs of the image: host file → path in the pod.
    pub binaries: Vec<(PathBuf, String)>,
    /// Arguments appended to the container's.
    pub extra_args: Vec<String>,
    /// Directories before the usual ones on `PATH`, as the image's `PATH` has them
    /// (`/usr/lib/postgresql/15/bin` for a postgres image).
    pub path: Vec<String>,
    /// `/etc/hosts` entries (name, address), as the kubelet writes them, standing in for the
    /// cluster's DNS (a Service's name).
    pub hosts: Vec<(String, String)>,
}

/// Writes `bytes` at `file` with `mode`.
fn put(file: &Path, bytes: &[u8], mode: u32) {
    if let Some(d) = file.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(file, bytes).unwrap();
    std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// The items of a Secret or ConfigMap source (every key when it lists none) written under
/// `dir`, as the kubelet writes them.
fn project(dir: &Path, source: &Value, values: &BTreeMap<String, Vec<u8>>, default_mode: u32) {
    match source["items"].as_array() {
        Some(items) => {
            for item in items {
                let key = item["key"].as_str().unwrap();
                let v = values
                    .get(key)
                    .unwrap_or_else(|| panic!("no key {key} for {source}"));
                let mode = item["mode"].as_u64().map_or(default_mode, |m| m as u32);
                put(&dir.join(item["path"].as_str().unwrap()), v, mode);
            }
        }
        None => {
            for (k, v) in values {
                put(&dir.join(k), v, default_mode);
            }
        }
    }
}

/// Runs `pod` under `root` with what `k` gives it (see [`Kubelet`]): its init containers in
/// order, then its first container, as long as each succeeds. What they printed, one after
/// the other, and how the last one run exited.
pub fn run_pod_with(root: &Path, pod: &Value, k: &Kubelet) -> Output {
    let mut all: Option<Output> = None;
    let init = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in init
        .iter()
        .chain(std::iter::once(&pod["spec"]["containers"][0]))
    {
        let o = run_container(root, pod, c, k);
        let ok = o.status.success();
        all = Some(match all {
            None => o,
            Some(mut a) => {
                a.stdout.extend(o.stdout);
                a.stderr.extend(o.stderr);
                a.status = o.status;
                a
            }
        });
        if !ok {
            break;
        }
    }
    all.expect("a pod has a container")
}

/// Runs the container `c` of `pod` under `root` (see [`run_pod_with`]).
fn run_container(root: &Path, pod: &Value, c: &Value, k: &Kubelet) -> Output {
    let spec = &pod["spec"];
    let secrets = &k.secrets;
    let config_map = |name: &str| -> BTreeMap<String, Vec<u8>> {
        k.config_maps
            .get(name)
            .unwrap_or_else(|| panic!("no ConfigMap {name}"))
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect()
    };
    let secret = |name: &str| -> BTreeMap<String, Vec<u8>> {
        secrets
            .get(name)
            .unwrap_or_else(|| panic!("no Secret {name}"))
            .clone()
    };
    for d in ["usr", "etc", "tmp", "dev", "proc", "secrets"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let r = root.display();
    let mut setup = String::from("set -e\n");
    for d in ["usr", "dev"] {
        setup.push_str(&format!("mount --rbind /{d} {r}/{d}\n"));
    }
    for l in ["bin", "sbin", "lib", "lib64"] {
        if Path::new("/").join(l).is_symlink() {
            let _ = std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l));
        }
    }
    // An image's /etc: its CA bundle, the users (ssh looks its user up) and the links that
    // name its programs (Debian's `awk` is one); its /tmp open to every user.
    setup.push_str(&format!(
        "mount -t tmpfs none {r}/etc\nmkdir -p {r}/etc/ssl\ncp -r /etc/ssl/. {r}/etc/ssl/ 2>/dev/null || true\ncp /etc/passwd /etc/group {r}/etc/\ncp -a /etc/alternatives {r}/etc/ 2>/dev/null || true\nchmod 1777 {r}/tmp\n"
    ));
    if !k.hosts.is_empty() {
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for (name, ip) in &k.hosts {
            hosts.push_str(&format!("{ip} {name}\n"));
        }
        let file = root.join("secrets").join("hosts");
        put(&file, hosts.as_bytes(), 0o644);
        setup.push_str(&format!("cp {} {r}/etc/hosts\n", file.display()));
    }
    // The image's programs: over a private /usr/local/bin of the pod's own.
    if !k.binaries.is_empty() {
        setup.push_str(&format!("mount -t tmpfs none {r}/usr/local/bin\n"));
        for (host, at) in &k.binaries {
            setup.push_str(&format!(
                "touch {r}{at}\nmount --bind {} {r}{at}\n",
                host.display()
            ));
        }
    }
    let volumes: BTreeMap<&str, &Value> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    let mut mounts: Vec<(String, String, bool, Option<String>)> = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["mountPath"].as_str().unwrap().to_string(),
                m["readOnly"] == true,
                m["subPath"].as_str().map(str::to_string),
            )
        })
        .collect();
    let mut env = env_of(c, secrets);
    if let Some((token, ca, host, port)) = &k.service_account {
        // As Kubernetes mounts a service account's token and tells the pod where the API is.
        let dir = root.join("secrets").join("kube-api-access");
        put(&dir.join("token"), token.as_bytes(), 0o644);
        put(&dir.join("ca.crt"), ca, 0o644);
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        put(&dir.join("namespace"), ns.as_bytes(), 0o644);
        mounts.push((
            String::new(),
            "/var/run/secrets/kubernetes.io/serviceaccount".into(),
            true,
            None,
        ));
        env.push(("KUBERNETES_SERVICE_HOST".into(), host.clone()));
        env.push(("KUBERNETES_SERVICE_PORT".into(), port.to_string()));
    }
    for (name, mount_path, read_only, sub_path) in &mounts {
        let at = format!("{r}{mount_path}");
        let ro = if *read_only { "-o ro " } else { "" };
        let from = if name.is_empty() {
            root.join("secrets").join("kube-api-access")
        } else {
            let v = volumes[name.as_str()];
            let dir = root.join("secrets").join(name);
            if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
                k.claims
                    .get(claim)
                    .unwrap_or_else(|| panic!("no directory for claim {claim}"))
                    .clone()
            } else if v["secret"].is_object() {
                // Modes as the kubelet sets them: the item's, else the volume's default (0644).
                let mode = v["secret"]["defaultMode"].as_u64().unwrap_or(0o644) as u32;
                let values = secret(v["secret"]["secretName"].as_str().unwrap());
                project(&dir, &v["secret"], &values, mode);
                dir
            } else if v["configMap"].is_object() {
                let mode = v["configMap"]["defaultMode"].as_u64().unwrap_or(0o644) as u32;
                let values = config_map(v["configMap"]["name"].as_str().unwrap());
                project(&dir, &v["configMap"], &values, mode);
                dir
            } else if v["projected"].is_object() {
                let mode = v["projected"]["defaultMode"].as_u64().unwrap_or(0o644) as u32;
                std::fs::create_dir_all(&dir).unwrap();
                for source in v["projected"]["sources"].as_array().into_iter().flatten() {
                    if source["secret"].is_object() {
                        let values = secret(source["secret"]["name"].as_str().unwrap());
                        project(&dir, &source["secret"], &values, mode);
                    } else if source["configMap"].is_object() {
                        let values = config_map(source["configMap"]["name"].as_str().unwrap());
                        project(&dir, &source["configMap"], &values, mode);
                    } else {
                        panic!("a projected source this runner does not know: {source}");
                    }
                }
                dir
            } else if v["emptyDir"].is_object() {
                std::fs::create_dir_all(&dir).unwrap();
                dir
            } else {
                panic!("a volume kind this runner does not know: {v}");
            }
        };
        match sub_path {
            // One file of the volume, bound where the mount says.
            Some(sub) => setup.push_str(&format!(
                "mkdir -p $(dirname {at})\ntouch {at}\nmount --bind {ro}{} {at}\n",
                from.join(sub).display()
            )),
            None => setup.push_str(&format!(
                "mkdir -p {at}\nmount --bind {ro}{} {at}\n",
                from.display()
            )),
        }
    }
    setup.push_str(&format!("exec chroot {r} \"$@\"\n"));
    let command: Vec<&str> = c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(c["args"].as_array().into_iter().flatten())
        .map(|a| a.as_str().unwrap())
        .chain(
            (c == &spec["containers"][0])
                .then_some(&k.extra_args)
                .into_iter()
                .flatten()
                .map(String::as_str),
        )
        .collect();
    let mut path = k.path.clone();
    path.push("/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &setup,
            "sh",
        ])
        .args(&command)
        .env_clear()
        .env("PATH", path.join(":"))
        .envs(env)
        .output()
        .expect("unshare runs")
}

/// Writes a Job's outcome through its status, as the Job controller does once its pod ended:
/// started and (when it succeeded) completed now, one pod succeeded or failed, and the
/// conditions that say so.
pub async fn finish_job(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    ok: bool,
    message: &str,
) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = if ok {
        json!({
            "startTime": now, "completionTime": now, "succeeded": 1, "active": 0,
            "ready": 0, "terminating": 0,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods", "lastTransitionTime": now, "lastProbeTime": now},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                 "message": message, "lastTransitionTime": now, "lastProbeTime": now},
            ],
        })
    } else {
        json!({
            "startTime": now, "failed": 1, "active": 0, "ready": 0, "terminating": 0,
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": message, "lastTransitionTime": now, "lastProbeTime": now},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": message, "lastTransitionTime": now, "lastProbeTime": now},
            ],
        })
    };
    Api::<Job>::namespaced(client.clone(), namespace)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap_or_else(|e| panic!("writing Job {namespace}/{name}'s status: {e}"));
}

/// Where the pods' Secrets come from.
#[derive(Clone)]
pub enum SecretSource {
    /// These values (a plan's Secrets, read with [`from_refs`]).
    Given(Secrets),
    /// The API server, as a kubelet reads them.
    Live,
}

/// A Job the [`kubelet`] ran.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// `NAMESPACE/NAME`.
    pub job: String,
    /// Whether its pod exited 0.
    pub ok: bool,
    /// The replicas of the workload its `label` names, when the Job ran (`None`: no such
    /// workload).
    pub workload_replicas: Option<i32>,
    /// What the pod printed on standard error.
    pub stderr: String,
}

/// Acts for the controllers and kubelets an API server without nodes lacks, until aborted: a
/// Deployment or StatefulSet scaled to 0 loses its pods, and each Job labelled `label` runs
/// once (as [`run_pod_with`] runs it, roots under `work`, with `base`'s claims, `PATH` and
/// hosts and the Secrets `source` gives), its outcome written to its status and recorded in
/// `runs`.
pub async fn kubelet(
    client: kube::Client,
    work: PathBuf,
    label: &'static str,
    base: Kubelet,
    source: SecretSource,
    runs: std::sync::Arc<std::sync::Mutex<Vec<JobRun>>>,
) {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use k8s_openapi::api::core::v1::{Pod, Secret};
    use kube::api::{DeleteParams, ListParams};
    let mut round = 0;
    loop {
        let mut scaled_down = Vec::new();
        for d in Api::<Deployment>::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
        {
            if d.spec.replicas == Some(0) {
                scaled_down.push((d.metadata.namespace.unwrap(), d.metadata.name.unwrap()));
            }
        }
        for s in Api::<StatefulSet>::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
        {
            if s.spec.replicas == Some(0) {
                scaled_down.push((s.metadata.namespace.unwrap(), s.metadata.name.unwrap()));
            }
        }
        for (ns, name) in &scaled_down {
            let pods = Api::<Pod>::namespaced(client.clone(), ns);
            let lp = ListParams::default().labels(&format!("app.kubernetes.io/name={name}"));
            for p in pods.list(&lp).await.unwrap() {
                let _ = pods
                    .delete(
                        &p.metadata.name.unwrap(),
                        &DeleteParams::default().grace_period(0),
                    )
                    .await;
            }
        }
        let lp = ListParams::default().labels(label);
        for j in Api::<Job>::all(client.clone()).list(&lp).await.unwrap() {
            if j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .is_some()
            {
                continue;
            }
            round += 1;
            let ns = j.metadata.namespace.clone().unwrap();
            let name = j.metadata.name.clone().unwrap();
            let workload = j
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(label))
                .cloned();
            let workload_replicas = match &workload {
                Some(w) => {
                    match Api::<Deployment>::namespaced(client.clone(), &ns)
                        .get_opt(w)
                        .await
                        .unwrap()
                    {
                        Some(d) => d.spec.replicas,
                        None => Api::<StatefulSet>::namespaced(client.clone(), &ns)
                            .get_opt(w)
                            .await
                            .unwrap()
                            .and_then(|s| s.spec.replicas),
                    }
                }
                None => None,
            };
            let template = j.spec.as_ref().unwrap().template.clone();
            let secrets = match &source {
                SecretSource::Given(s) => s.clone(),
                SecretSource::Live => {
                    let api = Api::<Secret>::namespaced(client.clone(), &ns);
                    let mut all = Secrets::new();
                    for s in api.list(&ListParams::default()).await.unwrap() {
                        let (n, v) = from_live(&s);
                        all.insert(n, v);
                    }
                    all
                }
            };
            let template = serde_json::to_value(&template).unwrap();
            let w = work.join(format!("job{round}"));
            let k = Kubelet {
                secrets,
                ..base.clone()
            };
            let o = tokio::task::spawn_blocking(move || run_pod_with(&w, &template, &k))
                .await
                .unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr).trim().to_string();
            let last = stderr.lines().last().unwrap_or("exited").to_string();
            finish_job(&client, &ns, &name, o.status.success(), &last).await;
            runs.lock().unwrap().push(JobRun {
                job: format!("{ns}/{name}"),
                ok: o.status.success(),
                workload_replicas,
                stderr,
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
