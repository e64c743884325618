//! Traefik, the ingress controller. Upstream publishes its CRDs and RBAC as files of the
//! release; the Deployment, its ServiceAccount and the IngressClass are cloudlet's own (the
//! Helm chart is Traefik's only other form). Its LoadBalancer Service on the ingress VIP is the
//! lab's (see `cloudlet_core::lb`): ports 80 and 443 to the entry points 8000 and 8443, so
//! the controller runs without privileges.

use cloudlet_core::lb::APP_LABEL;
use cloudlet_core::model::Lab;
use serde_json::{Value, json};

use super::{Context, Definition, File, Release};

/// The ServiceAccount upstream's RBAC binds.
pub const SERVICE_ACCOUNT: &str = "traefik-ingress-controller";
/// The controller name of Traefik's IngressClass.
pub const CONTROLLER: &str = "traefik.io/ingress-controller";
/// The entry points' ports in the pod (the Service maps 80 and 443 to them).
pub const WEB_PORT: u16 = 8000;
/// See [`WEB_PORT`].
pub const WEBSECURE_PORT: u16 = 8443;

macro_rules! file {
    ($v:literal, $name:literal, $sha:literal) => {
        File {
            url: concat!(
                "https://raw.githubusercontent.com/traefik/traefik/",
                $v,
                "/docs/content/reference/dynamic-configuration/",
                $name
            ),
            sha256: Some($sha),
        }
    };
}

/// Traefik.
pub static COMPONENT: Definition = Definition {
    key: "traefik",
    title: "Traefik",
    source: "github.com/traefik/traefik: docs/content/reference/dynamic-configuration/kubernetes-crd-{definition-v1,rbac}.yml of the release tag; the Deployment and IngressClass are cloudlet's",
    releases: &[Release {
        version: "v3.7.9",
        files: &[
            file!(
                "v3.7.9",
                "kubernetes-crd-definition-v1.yml",
                "1d5e8558803804562238b0d4a57174aadd6d87c36e3c4c55199ebcc356a9406c"
            ),
            file!(
                "v3.7.9",
                "kubernetes-crd-rbac.yml",
                "01e592c73d42c225351fe41b40162fc77ec5239773e7d7be81d40bba08f65f27"
            ),
        ],
    }],
    upstream_namespace: Some("default"),
    namespace,
    adapt,
};

fn namespace(lab: &Lab) -> String {
    lab.cluster
        .as_ref()
        .and_then(|c| c.ingress.as_ref())
        .map_or_else(|| "traefik".into(), |i| i.namespace.clone())
}

fn adapt(cx: &Context<'_>, objects: &mut Vec<Value>) -> Result<(), String> {
    let ns = cx.namespace.as_str();
    let ing = cx.lab.cluster.as_ref().and_then(|c| c.ingress.as_ref());
    let class = ing.map_or("traefik", |i| i.class.as_str());
    let labels = json!({APP_LABEL: class});
    let tag = cx.version.trim_start_matches('v');
    let mut args = vec![
        format!("--entryPoints.web.address=:{WEB_PORT}"),
        format!("--entryPoints.websecure.address=:{WEBSECURE_PORT}"),
        "--entryPoints.websecure.http.tls=true".to_string(),
        "--ping=true".to_string(),
        "--providers.kubernetesingress=true".to_string(),
        format!("--providers.kubernetesingress.ingressClass={class}"),
        "--providers.kubernetescrd=true".to_string(),
        "--log.level=INFO".to_string(),
    ];
    if let Some(i) = ing {
        // The Ingresses' status shows the VIP they are reached on.
        args.push(format!(
            "--providers.kubernetesingress.ingressEndpoint.ip={}",
            i.ip
        ));
    }
    objects.push(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
    }));
    objects.push(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": SERVICE_ACCOUNT, "namespace": ns}
    }));
    objects.push(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": class},
        "spec": {"controller": CONTROLLER}
    }));
    objects.push(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": class, "namespace": ns, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532},
                    "containers": [{
                        "name": "traefik",
                        "image": format!("docker.io/library/traefik:v{tag}"),
                        "args": args,
                        "ports": [
                            {"name": "web", "containerPort": WEB_PORT},
                            {"name": "websecure", "containerPort": WEBSECURE_PORT},
                            {"name": "traefik", "containerPort": 8080}
                        ],
                        "readinessProbe": {"httpGet": {"path": "/ping", "port": 8080}, "periodSeconds": 5},
                        "livenessProbe": {"httpGet": {"path": "/ping", "port": 8080}, "periodSeconds": 10},
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}
                        }
                    }]
                }
            }
        }
    }));
    Ok(())
}
