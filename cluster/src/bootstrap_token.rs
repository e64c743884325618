//! Bootstrap tokens minted just before a node joins and revoked right after (k0sctl's and
//! Cluster API's way, never kubeadm's 24-hour default): a `bootstrap-token-<id>` Secret in
//! `kube-system` that expires within [`MAX_TTL`], labelled with the node it is for, so an
//! interrupted bootstrap finds and revokes what it left. The token's secret half is only in
//! that Secret and in the node's join configuration: never in a log, a plan or an error.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

use crate::kubeadm::Token;

/// The longest a token lives.
pub const MAX_TTL: Duration = Duration::from_secs(15 * 60);

/// The label naming the node a token is for.
pub const NODE_LABEL: &str = "cloudlet.dev/join-node";

/// A token that cannot be minted, listed or revoked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token could be made.
    #[error(transparent)]
    Make(#[from] crate::kubeadm::KubeadmError),
    /// The API server refused or could not be reached.
    #[error("{what} through the API server")]
    Api {
        /// What was being done (`minting the join token of k8s-node1`).
        what: String,
        /// What kube said.
        #[source]
        source: kube::Error,
    },
}

fn secrets(client: &kube::Client) -> Api<Secret> {
    Api::namespaced(client.clone(), "kube-system")
}

/// Mints a token for `node`'s join, valid for `ttl` (at most [`MAX_TTL`]).
pub async fn mint(client: &kube::Client, node: &str, ttl: Duration) -> Result<Token, TokenError> {
    let token = Token::generate()?;
    let ttl = ttl.min(MAX_TTL);
    let expires = time::OffsetDateTime::now_utc()
        + time::Duration::try_from(ttl).unwrap_or(time::Duration::minutes(15));
    let expiration = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let data: BTreeMap<String, String> = [
        ("token-id", token.id().to_string()),
        ("token-secret", token.secret().to_string()),
        ("expiration", expiration),
        ("usage-bootstrap-authentication", "true".into()),
        ("usage-bootstrap-signing", "true".into()),
        (
            "auth-extra-groups",
            "system:bootstrappers:kubeadm:default-node-token".into(),
        ),
        ("description", format!("cloudlet: the join of {node}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let s = Secret {
        metadata: ObjectMeta {
            name: Some(format!("bootstrap-token-{}", token.id())),
            namespace: Some("kube-system".into()),
            labels: Some(
                [
                    (NODE_LABEL.to_string(), node.to_string()),
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "cloudlet".to_string(),
                    ),
                ]
                .into_iter()
                .collect(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some("bootstrap.kubernetes.io/token".into()),
        string_data: Some(data),
        ..Secret::default()
    };
    secrets(client)
        .create(&PostParams::default(), &s)
        .await
        .map_err(|source| TokenError::Api {
            what: format!("minting the join token of {node}"),
            source,
        })?;
    Ok(token)
}

/// Revokes the token `id` (gone already is fine).
pub async fn revoke(client: &kube::Client, id: &str) -> Result<(), TokenError> {
    match secrets(client)
        .delete(&format!("bootstrap-token-{id}"), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(TokenError::Api {
            what: format!("revoking bootstrap token {id}"),
            source,
        }),
    }
}

/// The tokens cloudlet minted that still exist: (token id, node), for revoking what an
/// interrupted bootstrap left behind.
pub async fn outstanding(client: &kube::Client) -> Result<Vec<(String, String)>, TokenError> {
    let list = secrets(client)
        .list(&ListParams::default().labels(NODE_LABEL))
        .await
        .map_err(|source| TokenError::Api {
            what: "listing cloudlet's join tokens".into(),
            source,
        })?;
    let mut out: Vec<(String, String)> = list
        .items
        .into_iter()
        .filter_map(|s| {
            let name = s.metadata.name?;
            let id = name.strip_prefix("bootstrap-token-")?.to_string();
            let node = s.metadata.labels?.get(NODE_LABEL)?.clone();
            Some((id, node))
        })
        .collect();
    out.sort();
    Ok(out)
}
