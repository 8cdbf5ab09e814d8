//! Writing back to the cluster in `--kubernetes` mode: the leader Lease, Ingress status from its
//! holder, and Events for rejected objects. Reading is the provider's job
//! ([`crate::provider::kubernetes`]); this is the other direction.

pub(crate) mod events;
pub(crate) mod lease;
pub(crate) mod members;
pub(crate) mod names;
pub(crate) mod status;

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::diagnostics::Diagnostic;
use crate::provider::{Object, ObjectKey, Store};
pub(crate) use events::Notice;
use status::Seen;

/// The Lease replicas compete for.
pub(crate) const LEASE_NAME: &str = "fjord-leader";

/// Where this replica stands in the cluster.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Addresses written to Ingress status (IPs or host names); none leaves status alone.
    pub publish: Vec<String>,
    /// fjord's own namespace, where its Lease lives.
    pub namespace: String,
    /// This replica's name in the Lease and on Events.
    pub identity: String,
}

impl Options {
    /// From the pod's environment: `POD_NAMESPACE` (else the service account's namespace, else
    /// `default`) and `POD_NAME` (else the host name and process id).
    pub fn from_env(publish: Vec<String>) -> Self {
        let namespace = std::env::var("POD_NAMESPACE")
            .ok()
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
            })
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        Self {
            publish,
            namespace,
            identity,
        }
    }
}

/// What each reload tells the cluster side.
pub(crate) struct Feedback {
    ingresses: watch::Sender<Arc<Vec<Seen>>>,
    notices: mpsc::Sender<Notice>,
}

impl Feedback {
    /// The Ingresses of fjord's class, as now in the store.
    pub(crate) fn ingresses(&self, seen: Vec<Seen>) {
        self.ingresses.send_if_modified(|old| {
            let changed = **old != seen;
            if changed {
                *old = Arc::new(seen);
            }
            changed
        });
    }

    /// Reports a new diagnostic about an Ingress or IngressRoute as an Event on it.
    pub(crate) fn notify(&self, d: &Diagnostic, store: &Store) {
        let Some((kind, rest)) = d.subject.split_once(' ') else {
            return;
        };
        let Some((namespace, name)) = rest.split_once('/') else {
            return;
        };
        let key = ObjectKey {
            kind: if kind == "Ingress" {
                "Ingress"
            } else {
                "IngressRoute"
            },
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        };
        let uid = store.get(&key).and_then(|o| match o {
            Object::Ingress(i) => i.metadata.uid.clone(),
            Object::IngressRoute(r) => r.metadata.uid.clone(),
            _ => None,
        });
        let Some(regarding) = events::reference(&d.subject, uid) else {
            return;
        };
        // A full queue means Events are already being dropped for rate; this one is too.
        let _ = self.notices.try_send(Notice {
            regarding,
            warning: true,
            // An error rejects the object (or a part of it); a warning says what is served
            // otherwise than it asks (an annotation not honoured, a path already taken).
            reason: if d.is_error() {
                "Rejected"
            } else {
                "NotHonoured"
            },
            action: "Translate",
            message: d.message.clone(),
        });
    }

    /// Where other parts of fjord send Events (ACME, on the objects asking for certificates).
    pub(crate) fn notices(&self) -> mpsc::Sender<Notice> {
        self.notices.clone()
    }
}

/// Starts the leader Lease, this replica's membership Lease (renewed once `ready`), the count
/// of live replicas, the status writer and the Event sender. The returned task ends once
/// `shutdown` fires and both Leases are released.
pub(crate) fn start(
    client: kube::Client,
    options: &Options,
    ready: watch::Receiver<bool>,
    shutdown: CancellationToken,
) -> (Feedback, JoinHandle<()>) {
    let (leader_tx, leader_rx) = watch::channel(false);
    let (ingresses_tx, ingresses_rx) = watch::channel(Arc::new(Vec::new()));
    let (notices_tx, notices_rx) = mpsc::channel(64);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &options.namespace);
    let elector = lease::Elector::new(leases.clone(), LEASE_NAME, &options.identity);
    let leader = tokio::spawn(elector.run(leader_tx, shutdown.clone()));
    let heartbeat = tokio::spawn(members::heartbeat(
        leases.clone(),
        options.identity.clone(),
        ready,
        shutdown.clone(),
    ));
    tokio::spawn(members::count(leases.clone(), shutdown.clone()));
    let lease_task = tokio::spawn(async move {
        let _ = tokio::join!(leader, heartbeat);
    });
    if !options.publish.is_empty() {
        tokio::spawn(status::publish(
            client.clone(),
            status::addresses(&options.publish),
            leader_rx,
            ingresses_rx,
            shutdown,
        ));
    }
    tokio::spawn(events::send(client, options.identity.clone(), notices_rx));
    (
        Feedback {
            ingresses: ingresses_tx,
            notices: notices_tx,
        },
        lease_task,
    )
}
