//! cert-manager from its release's static manifest, and the ACME ClusterIssuer the ingress
//! certificate names (`cluster.ingress.tls.cluster_issuer`): HTTP-01 through the ingress
//! controller, or DNS-01 through Cloudflare for wildcards, its API token a Secret whose value
//! the provider reads from the lab's reference at apply time.

use serde_json::{Value, json};

use super::{Context, Definition, File, Release};

/// The Secret holding the Cloudflare API token.
pub const CLOUDFLARE_SECRET: &str = "cloudflare-api-token";

/// cert-manager.
pub static COMPONENT: Definition = Definition {
    key: "cert_manager",
    title: "cert-manager",
    source: "github.com/cert-manager/cert-manager: the release's cert-manager.yaml asset",
    releases: &[Release {
        version: "v1.21.1",
        // A release asset, built at release time: its checksum is read from the release
        // page in the release step; until then the lab gives it.
        files: &[File {
            url: "https://github.com/cert-manager/cert-manager/releases/download/v1.21.1/cert-manager.yaml",
            sha256: None,
        }],
    }],
    upstream_namespace: Some("cert-manager"),
    namespace: |_| "cert-manager".into(),
    adapt,
};

fn adapt(cx: &Context<'_>, objects: &mut Vec<Value>) -> Result<(), String> {
    let Some(acme) = &cx.settings.acme else {
        return Ok(());
    };
    let Some(ing) = cx.lab.cluster.as_ref().and_then(|c| c.ingress.as_ref()) else {
        return Ok(());
    };
    let Some(issuer) = ing.tls.as_ref().and_then(|t| t.cluster_issuer.as_ref()) else {
        return Ok(());
    };
    let solver = match &acme.cloudflare {
        Some(token) => {
            let (how, at) = match token {
                cloudlet_core::model::SecretRef::Env(v) => ("env", v.clone()),
                cloudlet_core::model::SecretRef::File(f) => ("file", f.display().to_string()),
            };
            objects.push(json!({
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": CLOUDFLARE_SECRET, "namespace": cx.namespace},
                "cloudlet.dev/secretRefs": {"api-token": {how: at}}
            }));
            json!({"dns01": {"cloudflare": {"apiTokenSecretRef": {"name": CLOUDFLARE_SECRET, "key": "api-token"}}}})
        }
        None => json!({"http01": {"ingress": {"ingressClassName": ing.class}}}),
    };
    objects.push(json!({
        "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
        "metadata": {"name": issuer},
        "spec": {"acme": {
            "email": acme.email,
            "server": acme.server,
            "privateKeySecretRef": {"name": format!("{issuer}-account-key")},
            "solvers": [solver]
        }}
    }));
    Ok(())
}
