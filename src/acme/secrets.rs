//! ACME state in the API server, for a DaemonSet (`--kubernetes`): every replica shares it, in
//! fjord's own namespace, with no volume and no cluster-wide write.
//!
//! - The account: an Opaque Secret per resolver, `fjord-acme-account.RESOLVER`.
//! - Each certificate: a `kubernetes.io/tls` Secret, `fjord-acme-cert.RESOLVER.PRIMARY`,
//!   labelled `fjord.dev/acme=certificate` and annotated with its names, resolver, CA and
//!   expiry, so `kubectl get secrets -l fjord.dev/acme` lists what fjord manages.
//! - One order per certificate in the cluster: a `coordination.k8s.io/v1` Lease,
//!   `fjord-acme.RESOLVER.PRIMARY`; its holder orders, the others wait and then find the
//!   certificate stored. A holder that dies stops renewing, and another replica takes over.
//! - Challenge answers: an Opaque Secret per order, `fjord-acme-challenge.RESOLVER.PRIMARY`,
//!   which every replica watches ([`serve`]), installs, and acknowledges with an annotation.
//!   The orderer tells the CA to look once every live replica has acknowledged; a replica is
//!   live while it renews its own Lease, `fjord-replica.IDENTITY`.
//!
//! A directory an earlier version kept (its `storage`) is read once, when the cluster has no
//! account or certificate yet, and imported: moving in orders nothing again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::{self, Event, ExponentialBackoff};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::challenge::Challenges;
use super::storage::{Answer, Files, Storage, Stored};
use crate::cluster::lease::{Elector, RETRY};
use crate::cluster::members::{self, REPLICA_LABEL};
use crate::cluster::names::{label_value, object_name, segment};

/// The label every object of fjord's ACME state carries, with what it is.
const ACME_LABEL: &str = "fjord.dev/acme";
/// Where replicas acknowledge a challenge: `ack.fjord.dev/IDENTITY: CHALLENGE-ID`.
const ACK_PREFIX: &str = "ack.fjord.dev/";
/// Which publication of a challenge Secret an acknowledgement is for.
const CHALLENGE_ID: &str = "fjord.dev/challenge-id";
/// How long the orderer waits for every replica to acknowledge a challenge.
const PRESENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster store of one resolver.
pub(crate) struct Secrets {
    secrets: Api<Secret>,
    leases: Api<Lease>,
    resolver: String,
    ca_server: String,
    identity: String,
    /// The directory an earlier version kept this resolver's state in.
    legacy: Files,
    /// Whether this replica holds each certificate's Lease now, for `GET /acme`.
    holders: Arc<Holders>,
}

/// Who holds each certificate's Lease, as this replica last saw it.
#[derive(Debug, Default)]
pub(crate) struct Holders(std::sync::Mutex<HashMap<String, String>>);

impl Holders {
    /// The holder of the Lease of `primary`'s order, when one is known.
    pub(crate) fn of(&self, primary: &str) -> Option<String> {
        self.0.lock().ok()?.get(primary).cloned()
    }

    fn set(&self, primary: &str, holder: Option<&str>) {
        if let Ok(mut map) = self.0.lock() {
            match holder {
                Some(h) => map.insert(primary.to_owned(), h.to_owned()),
                None => map.remove(primary),
            };
        }
    }
}

/// Where this replica's ACME state lives in the cluster.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub client: kube::Client,
    /// fjord's own namespace.
    pub namespace: String,
    /// This replica's name.
    pub identity: String,
}

impl Secrets {
    pub(crate) fn new(cluster: &Cluster, resolver: &str, ca_server: &str, legacy: Files) -> Self {
        Self {
            secrets: Api::namespaced(cluster.client.clone(), &cluster.namespace),
            leases: Api::namespaced(cluster.client.clone(), &cluster.namespace),
            resolver: resolver.to_owned(),
            ca_server: ca_server.to_owned(),
            identity: cluster.identity.clone(),
            legacy,
            holders: Arc::default(),
        }
    }

    pub(crate) fn holders(&self) -> Arc<Holders> {
        Arc::clone(&self.holders)
    }

    fn name(&self, what: &str, primary: Option<&str>) -> String {
        let resolver = segment(&self.resolver);
        match primary {
            Some(p) => object_name(&format!("{what}.{resolver}.{p}")),
            None => object_name(&format!("{what}.{resolver}")),
        }
    }

    fn meta(&self, name: String, kind: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    "fjord".to_owned(),
                ),
                (ACME_LABEL.to_owned(), kind.to_owned()),
                ("fjord.dev/resolver".to_owned(), label_value(&self.resolver)),
            ])),
            annotations: Some(BTreeMap::from([
                ("fjord.dev/resolver".to_owned(), self.resolver.clone()),
                ("fjord.dev/ca-server".to_owned(), self.ca_server.clone()),
            ])),
            ..ObjectMeta::default()
        }
    }

    /// The value at `key` of the Secret `name`, if both exist.
    async fn data(&self, name: &str, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        let secret = self.secrets.get_opt(name).await.map_err(api_error)?;
        Ok(secret
            .and_then(|s| s.data)
            .and_then(|mut d| d.remove(key))
            .map(|b| b.0))
    }

    /// Creates or replaces the Secret `secret` names, retrying a write that lost a race.
    async fn upsert(&self, mut secret: Secret) -> std::io::Result<()> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        for _ in 0..5 {
            let result = match self.secrets.get_opt(&name).await.map_err(api_error)? {
                None => self.secrets.create(&PostParams::default(), &secret).await,
                Some(current) => {
                    secret.metadata.resource_version = current.metadata.resource_version;
                    self.secrets
                        .replace(&name, &PostParams::default(), &secret)
                        .await
                }
            };
            match result {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(api_error(e)),
            }
        }
        Err(std::io::Error::other(format!(
            "Secret {name}: five writes in a row lost a race with another replica"
        )))
    }

    /// The names of the live replicas, from their Leases.
    async fn live_replicas(&self) -> std::io::Result<Vec<String>> {
        let leases = self
            .leases
            .list(&ListParams::default().labels(&format!("{REPLICA_LABEL}=true")))
            .await
            .map_err(api_error)?;
        Ok(members::live(&leases.items, Timestamp::now())
            .into_iter()
            .map(str::to_owned)
            .collect())
    }
}

impl Storage for Secrets {
    type Guard = Held;

    async fn account(&self) -> std::io::Result<Option<Vec<u8>>> {
        let name = self.name("fjord-acme-account", None);
        if let Some(json) = self.data(&name, "account.json").await? {
            return Ok(Some(json));
        }
        let Some(json) = self.legacy.account().await.ok().flatten() else {
            return Ok(None);
        };
        tracing::info!(resolver = %self.resolver, secret = %name, "acme: importing the account from the directory store");
        self.put_account(&json).await?;
        Ok(Some(json))
    }

    async fn put_account(&self, json: &[u8]) -> std::io::Result<()> {
        let name = self.name("fjord-acme-account", None);
        self.upsert(Secret {
            metadata: self.meta(name, "account"),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                "account.json".to_owned(),
                ByteString(json.to_vec()),
            )])),
            ..Secret::default()
        })
        .await
    }

    async fn certificate(&self, primary: &str) -> std::io::Result<Option<Stored>> {
        let name = self.name("fjord-acme-cert", Some(primary));
        let secret = self.secrets.get_opt(&name).await.map_err(api_error)?;
        if let Some(mut data) = secret.and_then(|s| s.data)
            && let (Some(chain), Some(key)) = (data.remove("tls.crt"), data.remove("tls.key"))
        {
            return Ok(Some(Stored {
                chain: chain.0,
                key: key.0,
            }));
        }
        let Some(stored) = self.legacy.certificate(primary).await.ok().flatten() else {
            return Ok(None);
        };
        let Ok(parsed) = crate::pem::parse_pem(&stored.chain, &stored.key) else {
            return Ok(None);
        };
        tracing::info!(name = primary, secret = %name, "acme: importing the certificate from the directory store");
        self.put_certificate(&parsed.dns_names, &stored, parsed.not_after)
            .await?;
        Ok(Some(stored))
    }

    async fn put_certificate(
        &self,
        names: &[String],
        stored: &Stored,
        not_after: i64,
    ) -> std::io::Result<()> {
        let primary = names.first().map(String::as_str).unwrap_or_default();
        let mut meta = self.meta(self.name("fjord-acme-cert", Some(primary)), "certificate");
        let annotations = meta.annotations.get_or_insert_default();
        annotations.insert("fjord.dev/names".into(), names.join(","));
        if let Ok(t) = Timestamp::from_second(not_after) {
            annotations.insert("fjord.dev/not-after".into(), t.to_string());
        }
        self.upsert(Secret {
            metadata: meta,
            type_: Some("kubernetes.io/tls".into()),
            data: Some(BTreeMap::from([
                ("tls.crt".to_owned(), ByteString(stored.chain.clone())),
                ("tls.key".to_owned(), ByteString(stored.key.clone())),
            ])),
            ..Secret::default()
        })
        .await
    }

    async fn lock(&self, primary: &str) -> std::io::Result<Held> {
        self.lease(&self.name("fjord-acme", Some(primary)), primary)
            .await
    }

    async fn lock_account(&self) -> std::io::Result<Held> {
        self.lease(&self.name("fjord-acme-account", None), "account")
            .await
    }

    async fn present(&self, primary: &str, answers: &[Answer]) -> std::io::Result<()> {
        let name = self.name("fjord-acme-challenge", Some(primary));
        let id = format!("{:016x}", rand_id());
        let mut meta = self.meta(name.clone(), "challenge");
        meta.annotations
            .get_or_insert_default()
            .insert(CHALLENGE_ID.into(), id.clone());
        let json = serde_json::to_vec(answers).map_err(std::io::Error::other)?;
        self.upsert(Secret {
            metadata: meta,
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                "answers.json".to_owned(),
                ByteString(json),
            )])),
            ..Secret::default()
        })
        .await?;
        let deadline = tokio::time::Instant::now() + PRESENT_TIMEOUT;
        loop {
            let missing = self.unacknowledged(&name, &id).await;
            match missing {
                Ok(missing) if missing.is_empty() => {
                    tracing::info!(
                        name = primary,
                        "acme: every live replica answers the challenge"
                    );
                    return Ok(());
                }
                Ok(missing) if tokio::time::Instant::now() >= deadline => {
                    return Err(std::io::Error::other(format!(
                        "replica(s) {} did not acknowledge the challenge for {primary} within {} s; the CA was not asked to validate",
                        missing.join(", "),
                        PRESENT_TIMEOUT.as_secs()
                    )));
                }
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn withdraw(&self, primary: &str) {
        let name = self.name("fjord-acme-challenge", Some(primary));
        match self.secrets.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(secret = %name, error = %e, "acme: cannot withdraw the challenge answers");
            }
        }
    }
}

impl Secrets {
    /// Waits until this replica holds the Lease `name`, which guards `what`, and keeps it
    /// renewed until the returned guard drops.
    async fn lease(&self, name: &str, what: &str) -> std::io::Result<Held> {
        let mut elector = Elector::new(self.leases.clone(), name, &self.identity);
        loop {
            match elector.acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => self.holders.set(what, elector.holder().as_deref()),
                // An API outage: wait it out; the holder, if any, cannot renew either.
                Err(e) => {
                    tracing::warn!(lease = %name, error = %e, "acme: cannot read the order Lease");
                }
            }
            tokio::time::sleep(RETRY).await;
        }
        self.holders.set(what, Some(&self.identity));
        Ok(Held::new(elector, what, Arc::clone(&self.holders)))
    }

    /// The live replicas that have not acknowledged publication `id` of the challenge Secret.
    async fn unacknowledged(&self, name: &str, id: &str) -> std::io::Result<Vec<String>> {
        let live = self.live_replicas().await?;
        let secret = self.secrets.get_opt(name).await.map_err(api_error)?;
        let acks = secret
            .and_then(|s| s.metadata.annotations)
            .unwrap_or_default();
        Ok(live
            .into_iter()
            .filter(|replica| acks.get(&ack_key(replica)).map(String::as_str) != Some(id))
            .collect())
    }
}

/// The Lease on a certificate's order, renewed while held and released when dropped. `lost`
/// turns true when it could not be renewed for long enough that another replica may take it:
/// the order must stop then.
pub(crate) struct Held {
    stop: CancellationToken,
    lost: watch::Receiver<bool>,
}

impl Held {
    fn new(mut elector: Elector, primary: &str, holders: Arc<Holders>) -> Self {
        let stop = CancellationToken::new();
        let (lost_tx, lost) = watch::channel(false);
        let token = stop.clone();
        let primary = primary.to_owned();
        tokio::spawn(async move {
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    () = tokio::time::sleep(RETRY) => {}
                }
                match elector.acquire_or_renew().await {
                    Ok(true) => renewed = tokio::time::Instant::now(),
                    Ok(false) => {
                        lost_tx.send_replace(true);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(name = %primary, error = %e, "acme: cannot renew the order Lease");
                        if renewed.elapsed() >= crate::cluster::lease::RENEW_DEADLINE {
                            lost_tx.send_replace(true);
                        }
                    }
                }
            }
            elector.release().await;
            holders.set(&primary, None);
        });
        Self { stop, lost }
    }

    /// Resolves once the Lease is lost.
    pub(crate) async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|l| *l).await;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Runs this replica's side of the cluster store until `shutdown`: answers the challenges
/// other replicas publish (acknowledging each), says when a certificate Secret changes, and
/// says on `listed` once the challenges are listed (its membership Lease waits for that, so
/// orderers wait only for replicas that can answer).
pub(crate) async fn serve(
    cluster: Cluster,
    challenges: Arc<Challenges>,
    stored: watch::Sender<u64>,
    listed: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let certificates = tokio::spawn(watch_certificates(secrets.clone(), stored));
    tokio::select! {
        () = answer_challenges(secrets, &cluster.identity, &challenges, listed) => {}
        () = shutdown.cancelled() => {}
    }
    certificates.abort();
}

/// Installs every published challenge's answers and acknowledges them.
async fn answer_challenges(
    secrets: Api<Secret>,
    identity: &str,
    challenges: &Challenges,
    listed: watch::Sender<bool>,
) {
    let config = watcher::Config::default().labels(&format!("{ACME_LABEL}=challenge"));
    let mut stream = watcher::watcher(secrets.clone(), config)
        .backoff(quick_backoff())
        .boxed();
    let mut installed: HashMap<String, Vec<Answer>> = HashMap::new();
    let mut relisted: Option<HashMap<String, Vec<Answer>>> = None;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "acme: the challenge watch failed; retrying");
                continue;
            }
        };
        match event {
            Event::Init => relisted = Some(HashMap::new()),
            Event::InitApply(s) => {
                let (name, answers) = take(&s, identity, challenges, &secrets).await;
                relisted.get_or_insert_default().insert(name, answers);
            }
            Event::InitDone => {
                let fresh = relisted.take().unwrap_or_default();
                for (name, old) in &installed {
                    if !fresh.contains_key(name) {
                        old.iter().for_each(|a| a.uninstall(challenges));
                    }
                }
                installed = fresh;
                listed.send_replace(true);
            }
            Event::Apply(s) => {
                let (name, answers) = take(&s, identity, challenges, &secrets).await;
                if let Some(old) = installed.insert(name, answers.clone()) {
                    old.iter()
                        .filter(|a| !answers.contains(a))
                        .for_each(|a| a.uninstall(challenges));
                }
            }
            Event::Delete(s) => {
                let name = s.metadata.name.unwrap_or_default();
                if let Some(old) = installed.remove(&name) {
                    old.iter().for_each(|a| a.uninstall(challenges));
                }
            }
        }
    }
}

/// Installs the answers of a challenge Secret and acknowledges its publication.
async fn take(
    secret: &Secret,
    identity: &str,
    challenges: &Challenges,
    secrets: &Api<Secret>,
) -> (String, Vec<Answer>) {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let answers: Vec<Answer> = secret
        .data
        .as_ref()
        .and_then(|d| d.get("answers.json"))
        .and_then(|json| serde_json::from_slice(&json.0).ok())
        .unwrap_or_default();
    let mut ok = true;
    for answer in &answers {
        if let Err(e) = answer.install(challenges) {
            tracing::warn!(secret = %name, error = %e, "acme: cannot give a published challenge answer");
            ok = false;
        }
    }
    let annotations = secret.metadata.annotations.as_ref();
    let id = annotations.and_then(|a| a.get(CHALLENGE_ID));
    let acked = annotations.and_then(|a| a.get(&ack_key(identity)));
    if let Some(id) = id.filter(|id| ok && Some(*id) != acked) {
        let patch = serde_json::json!({"metadata": {"annotations": {ack_key(identity): id}}});
        if let Err(e) = secrets
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(secret = %name, error = %e, "acme: cannot acknowledge a challenge");
        }
    }
    (name, answers)
}

/// Bumps `stored` whenever a certificate Secret is written, so each certificate task reads
/// its certificate again.
async fn watch_certificates(secrets: Api<Secret>, stored: watch::Sender<u64>) {
    let config = watcher::Config::default().labels(&format!("{ACME_LABEL}=certificate"));
    let mut stream = watcher::watcher(secrets, config)
        .backoff(quick_backoff())
        .boxed();
    while let Some(event) = stream.next().await {
        if let Ok(Event::Apply(_) | Event::InitDone) = event {
            stored.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// How the ACME watches retry after an API outage: at most 2 s apart, not kube's 30 s, since
/// an orderer waits for this replica's acknowledgement (and a certificate for its Secret).
fn quick_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    let builder = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(2))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(builder.into(), Duration::from_secs(60))
}

/// The annotation in which `identity` acknowledges a challenge.
fn ack_key(identity: &str) -> String {
    format!("{ACK_PREFIX}{}", label_value(identity))
}

/// A number no other publication of a challenge uses.
fn rand_id() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

fn api_error(e: kube::Error) -> std::io::Error {
    std::io::Error::other(format!("API server: {e}"))
}
