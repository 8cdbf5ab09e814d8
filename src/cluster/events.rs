//! Kubernetes Events on an Ingress or IngressRoute: fjord rejects it (with the text `fjord
//! check` prints, when the diagnostic first appears, not on every reload), or a certificate it
//! asked for is issued or fails to be. Sent through kube-rs's `Recorder` (repeats become a
//! series), and capped at a steady rate so a flapping object cannot flood the API server.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// At most this many Events at once, refilled at one per `REFILL`.
const BURST: u32 = 10;
const REFILL: Duration = Duration::from_secs(6);

/// One Event to send.
#[derive(Debug)]
pub(crate) struct Notice {
    pub regarding: ObjectReference,
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

/// The object a diagnostic's or certificate's subject (`Ingress NS/NAME`, `IngressRoute
/// NS/NAME`) names, with its `uid` when known.
pub(crate) fn reference(subject: &str, uid: Option<String>) -> Option<ObjectReference> {
    let (kind, rest) = subject.split_once(' ')?;
    let api_version = match kind {
        "Ingress" => "networking.k8s.io/v1",
        "IngressRoute" => "fjord.dev/v1alpha1",
        _ => return None,
    };
    let (namespace, name) = rest.split_once('/')?;
    Some(ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid,
        ..ObjectReference::default()
    })
}

pub(crate) async fn send(client: kube::Client, identity: String, mut rx: mpsc::Receiver<Notice>) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "fjord.dev/ingress-controller".into(),
            instance: Some(identity),
        },
    );
    let mut tokens = BURST;
    let mut refilled = Instant::now();
    while let Some(r) = rx.recv().await {
        let earned = (refilled.elapsed().as_secs_f64() / REFILL.as_secs_f64()) as u32;
        if earned > 0 {
            tokens = (tokens + earned).min(BURST);
            refilled = Instant::now();
        }
        if tokens == 0 {
            tracing::debug!(object = ?r.regarding.name, "event dropped: over the Event rate");
            continue;
        }
        tokens -= 1;
        let mut note = r.message;
        // The API server caps a note at 1 kB.
        if note.len() > 1000 {
            let cut = (0..=1000)
                .rev()
                .find(|i| note.is_char_boundary(*i))
                .unwrap_or(0);
            note.truncate(cut);
        }
        let event = Event {
            type_: if r.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: r.reason.into(),
            note: Some(note),
            action: r.action.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &r.regarding).await {
            tracing::warn!(object = ?r.regarding.name, error = %e, "cannot publish an Event");
        }
    }
}
