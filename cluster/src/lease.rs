//! A lock shared through the cluster: a `coordination.k8s.io/v1` Lease, taken and renewed the
//! way client-go's leader election does (optimistic concurrency on the object's
//! resourceVersion; a holder that stops renewing loses it once `leaseDurationSeconds` have
//! passed since its last renewal). Two machines applying the same lab, or two replicas of
//! `watch`, are kept apart by it — a file lock only keeps apart what runs on one machine.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

/// The namespace the lab's Leases live in (next to its ApplySet parent).
pub const NAMESPACE: &str = "default";

/// The Lease an apply of `lab` holds while it runs.
pub fn apply_lease(lab: &str) -> String {
    format!("cloudlet-{lab}-apply")
}

/// The Lease the leader of `lab`'s watch replicas holds.
pub fn watch_lease(lab: &str) -> String {
    format!("cloudlet-{lab}-watch")
}

/// Who this process is, for a Lease's `holderIdentity`: the host (the pod's name in a
/// cluster), the process id and a random part, so two processes never share one.
pub fn identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown-host".into());
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    format!(
        "{host} pid {} {:08x}",
        std::process::id(),
        u32::from_be_bytes(r)
    )
}

/// Who holds a Lease, when it is not us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its `holderIdentity`.
    pub identity: String,
    /// Seconds until it expires unless renewed.
    pub expires_in: i64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (it expires in {}s unless renewed)",
            self.identity,
            self.expires_in.max(0)
        )
    }
}

/// One Lease, as one holder sees it.
#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    me: String,
    duration: Duration,
}

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLock")
            .field("name", &self.name)
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

fn micro(t: Timestamp) -> MicroTime {
    MicroTime(t)
}

impl LeaseLock {
    /// The Lease `name` in [`NAMESPACE`], held as `me` for `duration` per renewal.
    pub fn new(client: Client, name: &str, me: &str, duration: Duration) -> LeaseLock {
        LeaseLock {
            api: Api::namespaced(client, NAMESPACE),
            name: name.to_string(),
            me: me.to_string(),
            duration,
        }
    }

    /// This holder's identity.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// How long one renewal holds it.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Takes the Lease, or renews it when it is ours: `Ok(None)` when we hold it now,
    /// `Ok(Some(holder))` when someone else holds it and has not let it expire. A race lost
    /// to another taker (a conflict on write) is theirs.
    pub async fn try_acquire(&self) -> Result<Option<Holder>, kube::Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    labels: Some(
                        [(
                            "app.kubernetes.io/managed-by".to_string(),
                            "cloudlet".to_string(),
                        )]
                        .into(),
                    ),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.me.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(micro(now)),
                    renew_time: Some(micro(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(s)) if s.code == 409 => self.holder().await,
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let renewed = spec.renew_time.as_ref().map_or(0, |t| t.0.as_second());
        let held_for = i64::from(spec.lease_duration_seconds.unwrap_or(0));
        let expires_in = renewed + held_for - now.as_second();
        let mine = holder.as_deref() == Some(self.me.as_str());
        if let Some(h) = &holder
            && !mine
            && expires_in > 0
        {
            return Ok(Some(Holder {
                identity: h.clone(),
                expires_in,
            }));
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.me.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: if mine {
                spec.acquire_time
            } else {
                Some(micro(now))
            },
            renew_time: Some(micro(now)),
            lease_transitions: Some(if mine { transitions } else { transitions + 1 }),
            ..spec
        });
        // The resourceVersion read is sent back: a write by anyone since is a conflict.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 409 => self.holder().await,
            Err(e) => Err(e),
        }
    }

    /// Who holds it now (`None`: nobody, or us).
    async fn holder(&self) -> Result<Option<Holder>, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            return Ok(None);
        };
        let spec = lease.spec.unwrap_or_default();
        let now = Timestamp::now().as_second();
        Ok(spec
            .holder_identity
            .filter(|h| !h.is_empty() && *h != self.me)
            .map(|identity| Holder {
                identity,
                expires_in: spec.renew_time.map_or(0, |t| t.0.as_second())
                    + i64::from(spec.lease_duration_seconds.unwrap_or(0))
                    - now,
            }))
    }

    /// Writes `value` as the annotation `key` of the Lease, when it is ours (what a leader
    /// leaves for the next one). A write that races another holder is dropped: `Ok(false)`.
    pub async fn note(&self, key: &str, value: &str) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
            return Ok(false);
        }
        lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value.to_string());
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The annotation `key` of the Lease, whoever wrote it.
    pub async fn noted(&self, key: &str) -> Result<Option<String>, kube::Error> {
        Ok(self
            .api
            .get_opt(&self.name)
            .await?
            .and_then(|l| l.metadata.annotations?.remove(key)))
    }

    /// Lets it go, when it is ours (as client-go does: no holder, so the next taker need not
    /// wait for it to expire).
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Holds the Lease while `work` runs, renewing it every third of its duration: `work`'s
    /// output, or `Err(holder)` without running it when another holder has it. If a renewal
    /// finds it lost (the API server unreachable past the duration, another taker), `work`
    /// is dropped and the loss is the error.
    pub async fn hold<F: std::future::Future>(&self, work: F) -> Result<F::Output, HoldError> {
        if let Some(h) = self.try_acquire().await.map_err(HoldError::Api)? {
            return Err(HoldError::Held(h));
        }
        let renew = async {
            loop {
                tokio::time::sleep(self.duration / 3).await;
                match self.try_acquire().await {
                    Ok(None) => {}
                    Ok(Some(h)) => return HoldError::Lost(h.identity),
                    // A renewal that fails is tried again; the Lease lasts its duration.
                    Err(e) => tracing::warn!(lease = %self.name, error = %e, "renewing the lease"),
                }
            }
        };
        let out = tokio::select! {
            out = work => Ok(out),
            lost = renew => Err(lost),
        };
        if out.is_ok() {
            let _ = self.release().await;
        }
        out
    }
}

/// Why [`LeaseLock::hold`] did not run its work to the end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HoldError {
    /// Another holder has it.
    #[error("held by {0}")]
    Held(Holder),
    /// It was taken over while the work ran.
    #[error("lost to {0} while holding it")]
    Lost(String),
    /// The API server refused or could not be reached.
    #[error("the Lease")]
    Api(#[source] kube::Error),
}
