//! Membership: each replica renews a Lease of its own, `fjord-replica.IDENTITY` (label
//! `fjord.dev/replica=true`), while it serves; a Lease renewed within [`LIVE_FOR`] is a live
//! replica. ACME's orderer waits for the live replicas to answer a challenge, and limits with
//! `perReplica` (or a Redis limit's `onError: local`) divide by how many there are.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::names::{object_name, segment};
use crate::replicas;

/// The label of the replicas' own Leases.
pub(crate) const REPLICA_LABEL: &str = "fjord.dev/replica";
/// How often a replica renews its own Lease.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a Lease not renewed still counts as a live replica.
const LIVE_FOR: Duration = Duration::from_secs(20);

/// The holders of the live replicas' Leases among `leases`, at `now`.
pub(crate) fn live<'a>(
    leases: impl IntoIterator<Item = &'a Lease>,
    now: Timestamp,
) -> Vec<&'a str> {
    let live_for = SignedDuration::try_from(LIVE_FOR).unwrap_or_default();
    leases
        .into_iter()
        .filter_map(|l| {
            let spec = l.spec.as_ref()?;
            let renewed = spec.renew_time.as_ref()?.0;
            (renewed + live_for > now).then_some(spec.holder_identity.as_deref()?)
        })
        .collect()
}

/// Counts the live replicas into [`replicas::set`] until `shutdown`: at every change to their
/// Leases, and every [`HEARTBEAT`] (a Lease that stops being renewed expires without an
/// event). Until the first list, and while the API server is out of reach, the last count
/// stands.
pub(crate) async fn count(leases: Api<Lease>, shutdown: CancellationToken) {
    let config = watcher::Config::default().labels(&format!("{REPLICA_LABEL}=true"));
    let mut stream = watcher::watcher(leases, config).default_backoff().boxed();
    let mut known: HashMap<String, Lease> = HashMap::new();
    let mut relisting: Option<HashMap<String, Lease>> = None;
    let mut tick = tokio::time::interval(HEARTBEAT);
    let mut last = 0;
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(Event::Apply(l) | Event::InitApply(l))) => {
                    let into = relisting.as_mut().unwrap_or(&mut known);
                    into.insert(l.metadata.name.clone().unwrap_or_default(), l);
                }
                Some(Ok(Event::Delete(l))) => {
                    known.remove(l.metadata.name.as_deref().unwrap_or_default());
                }
                Some(Ok(Event::Init)) => relisting = Some(HashMap::new()),
                Some(Ok(Event::InitDone)) => {
                    if let Some(listed) = relisting.take() {
                        known = listed;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "replicas: the Lease watch failed; retrying");
                    continue;
                }
                None => return,
            },
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if relisting.is_some() {
            continue;
        }
        let n = live(known.values(), Timestamp::now()).len() as u64;
        if n != last {
            tracing::info!(replicas = n.max(1), "replicas: live count changed");
            replicas::set(n);
            last = n;
        }
    }
}

/// Renews this replica's Lease from the moment it is `ready` until `shutdown`, then deletes
/// it. With ACME on, ready means its challenge watch has listed: an orderer waits only for
/// replicas that can answer.
pub(crate) async fn heartbeat(
    leases: Api<Lease>,
    identity: String,
    mut ready: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    tokio::select! {
        _ = ready.wait_for(|r| *r) => {}
        () = shutdown.cancelled() => return,
    }
    let name = object_name(&format!("fjord-replica.{}", segment(&identity)));
    loop {
        let now = Timestamp::now();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    REPLICA_LABEL.to_owned(),
                    "true".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.clone()),
                lease_duration_seconds: Some(LIVE_FOR.as_secs() as i32),
                renew_time: Some(MicroTime(now)),
                ..LeaseSpec::default()
            }),
        };
        let written = match leases.get_opt(&name).await {
            Ok(None) => leases
                .create(&PostParams::default(), &lease)
                .await
                .map(drop),
            Ok(Some(current)) => {
                let mut lease = lease;
                lease.metadata.resource_version = current.metadata.resource_version;
                leases
                    .replace(&name, &PostParams::default(), &lease)
                    .await
                    .map(drop)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::warn!(lease = %name, error = %e, "cannot renew this replica's Lease");
        }
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT) => {}
            () = shutdown.cancelled() => break,
        }
    }
    if let Err(e) = leases.delete(&name, &DeleteParams::default()).await {
        tracing::warn!(lease = %name, error = %e, "cannot delete this replica's Lease");
    }
}
