//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go does it: the holder
//! renews every 2 s, a candidate takes over once the record has not changed for the lease
//! duration (15 s) by its own clock (so clock skew between nodes does not matter), every write
//! is guarded by `resourceVersion`, and the holder releases the Lease when it shuts down.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a Lease is held without renewal.
pub(crate) const LEASE_DURATION: Duration = Duration::from_secs(15);
/// A holder that cannot renew for this long stops acting as leader.
pub(crate) const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the holder renews and candidates try.
pub(crate) const RETRY: Duration = Duration::from_secs(2);

pub(crate) struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// The record last seen, and when (by our clock) it last changed.
    observed: Option<(Record, Instant)>,
}

/// What a Lease says: its holder and when it last renewed.
type Record = (Option<String>, Option<Timestamp>);

impl Elector {
    pub(crate) fn new(api: Api<Lease>, name: &str, identity: &str) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            observed: None,
        }
    }

    /// Runs until `shutdown`, telling `leader` whether this replica holds the Lease. A held
    /// Lease is released on shutdown, so another replica takes over at once.
    pub(crate) async fn run(mut self, leader: watch::Sender<bool>, shutdown: CancellationToken) {
        let mut renewed: Option<Instant> = None;
        loop {
            let held = match self.acquire_or_renew().await {
                Ok(true) => {
                    renewed = Some(Instant::now());
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "cannot read or renew the leader Lease");
                    // Still the leader until the renew deadline: a blip is not a hand-over.
                    renewed.is_some_and(|at| at.elapsed() < RENEW_DEADLINE)
                }
            };
            if !held {
                renewed = None;
            }
            leader.send_if_modified(|was| {
                if *was == held {
                    false
                } else {
                    tracing::info!(lease = %self.name, identity = %self.identity, leader = held, "leadership changed");
                    *was = held;
                    true
                }
            });
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                () = shutdown.cancelled() => {
                    if held {
                        self.release().await;
                    }
                    leader.send_replace(false);
                    return;
                }
            }
        }
    }

    /// The holder the Lease named when last read.
    pub(crate) fn holder(&self) -> Option<String> {
        self.observed
            .as_ref()
            .and_then(|((holder, _), _)| holder.clone())
    }

    /// Takes or renews the Lease; `Ok(false)` when another replica holds it.
    pub(crate) async fn acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let read = match self.api.get_opt(&self.name).await {
            Ok(read) => read,
            Err(e) => {
                // Time unseen does not count: after an outage, a holder gets a full lease
                // duration to renew before a candidate takes over.
                self.observed = None;
                return Err(e);
            }
        };
        let Some(mut lease) = read else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let record: Record = (
            spec.holder_identity.clone().filter(|h| !h.is_empty()),
            spec.renew_time.as_ref().map(|t| t.0),
        );
        let changed_at = match &self.observed {
            Some((seen, at)) if *seen == record => *at,
            _ => Instant::now(),
        };
        self.observed = Some((record.clone(), changed_at));
        if record.0.as_deref() != Some(&*self.identity) {
            let duration = spec
                .lease_duration_seconds
                .map_or(LEASE_DURATION, |s| Duration::from_secs(s.max(1) as u64));
            if record.0.is_some() && changed_at.elapsed() < duration {
                return Ok(false);
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
        conflict_is_false(
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await,
        )
    }

    /// Gives the Lease up, if this replica holds it, so another may take it at once.
    pub(crate) async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(&*self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "Lease released"),
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "cannot release the Lease");
            }
        }
    }
}

/// A write that lost a race (409 Conflict, or AlreadyExists) means someone else holds it.
fn conflict_is_false<T>(result: Result<T, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
