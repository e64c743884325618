//! Join tokens on a real API server (with bootstrap-token authentication on, as kubeadm
//! sets it): minted just before a join with at most 15 minutes to live, authenticating as
//! `system:bootstrap:<id>`, listed for their node, and refused once revoked.
#![allow(missing_docs, clippy::disallowed_methods)]

use std::time::Duration;

use cloudlet_cluster::bootstrap_token::{MAX_TTL, mint, outstanding, revoke};
use cloudlet_testkit::apiserver::ApiServer;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;

/// Who the API server says `client` is: from a refusal (401 unauthenticated, 403 with the
/// user's name).
async fn who(client: kube::Client) -> (u16, String) {
    match Api::<Pod>::namespaced(client, "default")
        .list(&Default::default())
        .await
    {
        Ok(_) => (200, String::new()),
        Err(kube::Error::Api(s)) => (s.code, s.message),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_live_at_most_15_minutes_authenticate_and_are_gone_once_revoked() {
    let server = ApiServer::start();
    let admin = server.client().await;
    let token = mint(&admin, "k8s-node1", Duration::from_secs(24 * 3600))
        .await
        .unwrap();
    // Asked for a day, given at most 15 minutes.
    let s = Api::<Secret>::namespaced(admin.clone(), "kube-system")
        .get(&format!("bootstrap-token-{}", token.id()))
        .await
        .unwrap();
    assert_eq!(s.type_.as_deref(), Some("bootstrap.kubernetes.io/token"));
    let data = s.data.unwrap();
    let expiration = String::from_utf8(data["expiration"].0.clone()).unwrap();
    let expires =
        time::OffsetDateTime::parse(&expiration, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(
        left <= time::Duration::try_from(MAX_TTL).unwrap() && left > time::Duration::ZERO,
        "{expiration}"
    );
    assert_eq!(
        outstanding(&admin).await.unwrap(),
        vec![(token.id().to_string(), "k8s-node1".to_string())]
    );
    // The token authenticates as its bootstrap user (authorization then refuses the list).
    let (code, message) = who(server.client_with_token(&token.expose()).await).await;
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(&format!("system:bootstrap:{}", token.id())),
        "{message}"
    );
    // Revoked: gone, and it no longer authenticates; revoking twice is fine.
    revoke(&admin, token.id()).await.unwrap();
    revoke(&admin, token.id()).await.unwrap();
    assert_eq!(outstanding(&admin).await.unwrap(), vec![]);
    // The API server's authenticator reads tokens from its Secret cache, which follows the
    // delete within moments: wait for it (generously), then the token is refused.
    let revoked = server.client_with_token(&token.expose()).await;
    let mut last = (0, String::new());
    for _ in 0..300 {
        last = who(revoked.clone()).await;
        if last.0 == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, 401, "{}", last.1);
}
