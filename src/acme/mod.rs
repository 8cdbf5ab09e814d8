//! Automatic certificates through ACME: one task per certificate that loads it from storage,
//! obtains it when missing, renews it when due, and backs off (exponentially, with jitter) when
//! the CA fails. The certificate in use keeps serving until a new one is in hand.
//!
//! The state lives in a directory ([`storage::Files`], standalone) or in the API server
//! ([`secrets::Secrets`], a DaemonSet), where one replica orders each certificate and every
//! replica answers the CA and serves the result.

pub(crate) mod challenge;
mod order;
pub(crate) mod secrets;
pub(crate) mod storage;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use instant_acme::{Account, CertificateIdentifier};
use rustls_pki_types::CertificateDer;

use serde::Serialize;
use tokio::sync::{mpsc, watch};

pub(crate) use challenge::Challenges;
use order::AcmeError;
pub(crate) use secrets::Cluster;
use secrets::Secrets;
use storage::{Answer, Files, Storage, Stored};

use crate::cluster::Notice;
use crate::config::{Acme, StaticConfig};
use crate::metrics::METRICS;
use crate::model::AcmeRequest;
use crate::pem::parse_pem;

/// First retry delay after a failure; doubles per failure in a row up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// What an operator sees of one certificate (`GET /acme` on the admin server).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct CertStatus {
    /// The ACME resolver (`certificatesResolvers` key).
    pub resolver: String,
    pub names: Vec<String>,
    /// Expiry of the certificate in use, seconds since the Unix epoch.
    pub not_after: Option<i64>,
    /// When the next order or renewal is due, seconds since the Unix epoch.
    pub next_attempt: Option<i64>,
    pub last_error: Option<String>,
    /// Certificates obtained from the CA since start, by this replica.
    pub issued: u64,
    /// `valid`, `ordering`, `waiting` (another replica orders it) or `failed`.
    pub state: &'static str,
    /// In a cluster: the replica holding the certificate's order Lease, when one does.
    pub lease_holder: Option<String>,
}

/// The ACME resolvers and the certificate tasks they run.
pub(crate) struct Manager {
    resolvers: HashMap<String, Arc<Resolver<Store>>>,
    challenges: Arc<Challenges>,
    status: Arc<DashMap<AcmeRequest, CertStatus>>,
    tasks: Mutex<HashMap<AcmeRequest, tokio::task::JoinHandle<()>>>,
    runtime: tokio::runtime::Handle,
    /// Bumped when a stored certificate changed: each task reads its own again.
    stored: watch::Sender<u64>,
    /// The objects asking for each certificate.
    requested_by: Arc<Mutex<BTreeMap<AcmeRequest, BTreeSet<String>>>>,
    /// In a cluster: where Events on those objects go.
    notices: OnceLock<mpsc::Sender<Notice>>,
}

/// Where a resolver keeps its state: a directory, or the cluster.
// One per resolver, made once: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Store {
    Files(Files),
    Cluster(Secrets),
}

/// What holds a certificate's lock.
enum Guard {
    File(
        #[expect(
            dead_code,
            reason = "held, not read: the file lock lasts as long as it"
        )]
        std::fs::File,
    ),
    Lease(secrets::Held),
}

impl Guard {
    /// Resolves when the lock is lost (a Lease that could not be renewed); never for a file.
    async fn lost(&self) {
        match self {
            Guard::File(_) => std::future::pending().await,
            Guard::Lease(held) => held.lost().await,
        }
    }
}

impl Storage for Store {
    type Guard = Guard;

    async fn account(&self) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            Store::Files(f) => f.account().await,
            Store::Cluster(c) => c.account().await,
        }
    }

    async fn put_account(&self, json: &[u8]) -> std::io::Result<()> {
        match self {
            Store::Files(f) => f.put_account(json).await,
            Store::Cluster(c) => c.put_account(json).await,
        }
    }

    async fn certificate(&self, primary: &str) -> std::io::Result<Option<Stored>> {
        match self {
            Store::Files(f) => f.certificate(primary).await,
            Store::Cluster(c) => c.certificate(primary).await,
        }
    }

    async fn put_certificate(
        &self,
        names: &[String],
        stored: &Stored,
        not_after: i64,
    ) -> std::io::Result<()> {
        match self {
            Store::Files(f) => f.put_certificate(names, stored, not_after).await,
            Store::Cluster(c) => c.put_certificate(names, stored, not_after).await,
        }
    }

    async fn lock(&self, primary: &str) -> std::io::Result<Guard> {
        match self {
            Store::Files(f) => f.lock(primary).await.map(Guard::File),
            Store::Cluster(c) => c.lock(primary).await.map(Guard::Lease),
        }
    }

    async fn lock_account(&self) -> std::io::Result<Guard> {
        match self {
            Store::Files(f) => f.lock_account().await.map(Guard::File),
            Store::Cluster(c) => c.lock_account().await.map(Guard::Lease),
        }
    }

    async fn present(&self, primary: &str, answers: &[Answer]) -> std::io::Result<()> {
        match self {
            Store::Files(f) => f.present(primary, answers).await,
            Store::Cluster(c) => c.present(primary, answers).await,
        }
    }

    async fn withdraw(&self, primary: &str) {
        match self {
            Store::Files(f) => f.withdraw(primary).await,
            Store::Cluster(c) => c.withdraw(primary).await,
        }
    }
}

impl Store {
    /// Who holds the order Lease of `primary`, in a cluster.
    fn holder(&self, primary: &str) -> Option<String> {
        match self {
            Store::Files(_) => None,
            Store::Cluster(c) => c.holders().of(primary),
        }
    }
}

struct Resolver<S> {
    name: String,
    config: Acme,
    storage: S,
    /// Created or restored on first use, then shared by the resolver's certificates.
    account: tokio::sync::Mutex<Option<Account>>,
}

impl Manager {
    /// Must be called within the runtime the tasks are to run on. With `cluster`, the state
    /// is kept in the API server, and each resolver's `storage` directory is only imported.
    pub(crate) fn new(
        config: &StaticConfig,
        challenges: Arc<Challenges>,
        cluster: Option<&Cluster>,
    ) -> Self {
        let resolvers = config
            .certificates_resolvers
            .iter()
            .map(|(name, r)| {
                let files = Files::new(&r.acme.storage);
                let storage = match cluster {
                    Some(c) => Store::Cluster(Secrets::new(c, name, &r.acme.ca_server, files)),
                    None => Store::Files(files),
                };
                let resolver = Resolver {
                    name: name.clone(),
                    config: r.acme.clone(),
                    storage,
                    account: tokio::sync::Mutex::new(None),
                };
                (name.clone(), Arc::new(resolver))
            })
            .collect();
        Self {
            resolvers,
            challenges,
            status: Arc::new(DashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
            stored: watch::Sender::new(0),
            requested_by: Arc::default(),
            notices: OnceLock::new(),
        }
    }

    /// Sends Events on the objects asking for certificates through `notices`, from then on.
    pub(crate) fn send_events(&self, notices: mpsc::Sender<Notice>) {
        let _ = self.notices.set(notices);
    }

    /// Bumped when a stored certificate changes, so every task reads its own again.
    pub(crate) fn stored(&self) -> watch::Sender<u64> {
        self.stored.clone()
    }

    /// Makes the running certificate tasks match `wanted`: new requests start a task (never a
    /// second one for the same request), requests gone away stop theirs.
    /// `requested_by` names the objects asking for each certificate, where its Events go.
    pub(crate) fn apply(
        &self,
        wanted: &[AcmeRequest],
        requested_by: &BTreeMap<AcmeRequest, BTreeSet<String>>,
    ) {
        if let Ok(mut by) = self.requested_by.lock() {
            by.clone_from(requested_by);
        }
        let Ok(mut tasks) = self.tasks.lock() else {
            return;
        };
        tasks.retain(|request, task| {
            let keep = wanted.contains(request);
            if !keep {
                task.abort();
                self.challenges.uninstall(&request.names);
                self.status.remove(request);
                tracing::info!(names = ?request.names, "acme: certificate no longer wanted");
            }
            keep
        });
        for request in wanted {
            if tasks.contains_key(request) {
                continue;
            }
            let Some(resolver) = self.resolvers.get(&request.resolver) else {
                continue; // translation reported it
            };
            let task = CertTask {
                resolver: Arc::clone(resolver),
                request: request.clone(),
                challenges: Arc::clone(&self.challenges),
                status: Arc::clone(&self.status),
                stored: self.stored.subscribe(),
                requested_by: Arc::clone(&self.requested_by),
                notices: self.notices.get().cloned(),
            };
            tasks.insert(request.clone(), self.runtime.spawn(task.run()));
        }
    }

    pub(crate) fn status(&self) -> Vec<CertStatus> {
        let mut all: Vec<CertStatus> = self
            .status
            .iter()
            .map(|e| {
                let mut status = e.value().clone();
                let primary = e
                    .key()
                    .names
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default();
                status.lease_holder = self
                    .resolvers
                    .get(&e.key().resolver)
                    .and_then(|r| r.storage.holder(primary));
                status
            })
            .collect();
        all.sort_by(|a, b| a.names.cmp(&b.names));
        all
    }
}

struct CertTask<S> {
    resolver: Arc<Resolver<S>>,
    request: AcmeRequest,
    challenges: Arc<Challenges>,
    status: Arc<DashMap<AcmeRequest, CertStatus>>,
    /// Changes when a stored certificate did (another replica obtained or renewed one).
    stored: watch::Receiver<u64>,
    requested_by: Arc<Mutex<BTreeMap<AcmeRequest, BTreeSet<String>>>>,
    notices: Option<mpsc::Sender<Notice>>,
}

/// What [`CertTask::obtain`] ended with: the certificate now installed, and whether this
/// instance ordered it.
struct Obtained {
    current: Option<Current>,
    ordered: bool,
}

/// A certificate in hand.
struct Current {
    not_before: i64,
    not_after: i64,
    leaf: CertificateDer<'static>,
}

impl CertTask<Store> {
    fn primary(&self) -> &str {
        self.request
            .names
            .first()
            .map(String::as_str)
            .unwrap_or_default()
    }

    async fn run(mut self) {
        let names = &self.request.names;
        self.update(|s| {
            s.resolver = self.resolver.name.clone();
            s.names = names.clone();
        });
        let mut failures = 0u32;
        // After a success, the next order waits at least a tenth of the new lifetime, even if a
        // CA hands out certificates that are due at once: never a tight loop against the CA.
        let mut earliest = 0;
        loop {
            let current = self.load().await;
            let due = match &current {
                Some(c) => self.renewal_time(c).await.max(earliest),
                None => now(),
            };
            self.update(|s| {
                s.next_attempt = Some(due);
                if current.is_some() {
                    s.state = "valid";
                }
            });
            if due > now() {
                let wait = Duration::from_secs(u64::try_from(due - now()).unwrap_or(0));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    // Another replica stored a certificate: this one may be it.
                    _ = self.stored.changed() => {}
                }
                continue;
            }
            match self.obtain(current.is_some()).await {
                Ok(Obtained { current, ordered }) => {
                    failures = 0;
                    if let Some(c) = &current {
                        earliest = now() + ((c.not_after - c.not_before) / 10).max(1);
                    }
                    // Found stored by another replica: that one counted the order.
                    if ordered {
                        METRICS.acme_orders.with_label_values(&["success"]).inc();
                        self.update(|s| s.issued += 1);
                        let until = current.as_ref().map_or(0, |c| c.not_after);
                        self.notify(
                            false,
                            "CertificateIssued",
                            format!(
                                "certificate for {} issued by {}, valid until {}",
                                names.join(", "),
                                self.resolver.config.ca_server,
                                jiff::Timestamp::from_second(until).unwrap_or_default()
                            ),
                        );
                    }
                    self.update(|s| s.last_error = None);
                }
                Err(e) => {
                    METRICS.acme_orders.with_label_values(&["failure"]).inc();
                    self.update(|s| s.state = "failed");
                    failures = failures.saturating_add(1);
                    let delay = backoff(failures, random_unit());
                    let e = e.describe(&self.resolver.config.ca_server);
                    tracing::warn!(
                        names = ?names,
                        error = %e,
                        failures,
                        retry_in_s = delay.as_secs_f64(),
                        "acme: obtaining a certificate failed; the current one (if any) keeps serving"
                    );
                    self.notify(
                        true,
                        "CertificateOrderFailed",
                        format!(
                            "certificate for {}: {e}; retrying in {} s",
                            names.join(", "),
                            delay.as_secs()
                        ),
                    );
                    self.update(|s| {
                        s.last_error = Some(e);
                        s.next_attempt =
                            Some(now() + i64::try_from(delay.as_secs()).unwrap_or(i64::MAX));
                    });
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Loads the stored certificate, installs it if it covers the names, and returns its dates.
    async fn load(&self) -> Option<Current> {
        let storage = &self.resolver.storage;
        let primary = self.primary();
        let stored = match storage.certificate(primary).await {
            Ok(stored) => stored?,
            Err(e) => {
                tracing::warn!(name = primary, error = %e, "acme: cannot read the stored certificate");
                return None;
            }
        };
        let parsed = match parse_pem(&stored.chain, &stored.key) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(name = primary, error = %e, "acme: stored certificate is unusable; ordering a new one");
                return None;
            }
        };
        if !self
            .request
            .names
            .iter()
            .all(|n| parsed.dns_names.contains(n))
        {
            return None; // the names changed: a new certificate is needed
        }
        let leaf = parsed.key.cert.first()?.clone();
        let (not_before, not_after) = validity(&leaf)?;
        self.challenges.install(&self.request.names, &parsed.key);
        self.update(|s| s.not_after = Some(not_after));
        for name in &self.request.names {
            METRICS
                .tls_certs_not_after
                .with_label_values(&[name])
                .set(not_after as f64);
        }
        METRICS
            .acme_certificate_expiry
            .with_label_values(&[&self.resolver.name, primary])
            .set(not_after as f64);
        Some(Current {
            not_before,
            not_after,
            leaf,
        })
    }

    /// When to renew: the CA's ACME Renewal Information window where it offers one, else when a
    /// third of the lifetime remains.
    async fn renewal_time(&self, current: &Current) -> i64 {
        let window = match (
            self.account().await,
            CertificateIdentifier::try_from(&current.leaf),
        ) {
            (Ok(account), Ok(id)) => match account.renewal_info(&id).await {
                Ok((info, _)) => Some((
                    info.suggested_window.start.unix_timestamp(),
                    info.suggested_window.end.unix_timestamp(),
                )),
                Err(_) => None, // no ARI at this CA
            },
            _ => None,
        };
        renewal_time(current.not_before, current.not_after, window, random_unit())
    }

    async fn account(&self) -> Result<Account, AcmeError> {
        let mut account = self.resolver.account.lock().await;
        if let Some(a) = account.as_ref() {
            return Ok(a.clone());
        }
        let a = order::account(&self.resolver.config, &self.resolver.storage).await?;
        *account = Some(a.clone());
        Ok(a)
    }

    /// Orders the certificate under the storage lock, unless another instance stored a fresh
    /// one while this one waited for the lock.
    async fn obtain(&self, renewing: bool) -> Result<Obtained, AcmeError> {
        let storage = &self.resolver.storage;
        let primary = self.primary().to_owned();
        self.update(|s| s.state = "waiting");
        let lock = storage.lock(&primary).await?;
        if let Some(c) = self.load().await
            && (!renewing || renewal_time(c.not_before, c.not_after, None, 0.0) > now())
        {
            return Ok(Obtained {
                current: Some(c),
                ordered: false,
            });
        }
        self.update(|s| s.state = "ordering");
        METRICS
            .acme_lease_held
            .with_label_values(&[&self.resolver.name, &primary])
            .set(1);
        let ordered = tokio::select! {
            ordered = self.order(renewing) => ordered,
            () = lock.lost() => Err(AcmeError::Other(format!(
                "lost the order Lease of {primary} (the API server was out of reach); another replica may take it over"
            ))),
        };
        METRICS
            .acme_lease_held
            .with_label_values(&[&self.resolver.name, &primary])
            .set(0);
        drop(lock);
        Ok(Obtained {
            current: ordered?,
            ordered: true,
        })
    }

    /// Orders the certificate and stores it.
    async fn order(&self, renewing: bool) -> Result<Option<Current>, AcmeError> {
        let storage = &self.resolver.storage;
        tracing::info!(names = ?self.request.names, renewing, "acme: ordering certificate");
        let account = self.account().await?;
        let (chain, key) = order::obtain(
            &account,
            &self.resolver.config,
            &self.request.names,
            &self.challenges,
            storage,
        )
        .await?;
        // Check before storing: never replace a working certificate with a broken one.
        let parsed = parse_pem(chain.as_bytes(), key.as_bytes()).map_err(AcmeError::Other)?;
        let stored = Stored {
            chain: chain.into_bytes(),
            key: key.into_bytes(),
        };
        storage
            .put_certificate(&self.request.names, &stored, parsed.not_after)
            .await?;
        Ok(self.load().await)
    }

    /// An Event on each object asking for the certificate, in a cluster.
    fn notify(&self, warning: bool, reason: &'static str, message: String) {
        let Some(notices) = &self.notices else {
            return;
        };
        let subjects = self
            .requested_by
            .lock()
            .ok()
            .and_then(|by| by.get(&self.request).cloned())
            .unwrap_or_default();
        for subject in subjects {
            if let Some(regarding) = crate::cluster::events::reference(&subject, None) {
                // A full queue is already over the Event rate: this one is dropped too.
                let _ = notices.try_send(Notice {
                    regarding,
                    warning,
                    reason,
                    action: "Order",
                    message: message.clone(),
                });
            }
        }
    }

    fn update(&self, f: impl FnOnce(&mut CertStatus)) {
        f(&mut self.status.entry(self.request.clone()).or_default());
    }
}

fn validity(leaf: &CertificateDer<'_>) -> Option<(i64, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Renewal time in Unix seconds: inside the ARI `window` at `jitter` (0..1) of its length, or
/// when a third of the lifetime is left.
fn renewal_time(not_before: i64, not_after: i64, window: Option<(i64, i64)>, jitter: f64) -> i64 {
    match window {
        Some((start, end)) if end > start => start + ((end - start) as f64 * jitter) as i64,
        _ => not_after - (not_after - not_before) / 3,
    }
}

/// The wait after `failures` failures in a row: doubling from [`BASE_BACKOFF`], capped, and
/// spread by `jitter` (0..1) over 50–150 % so that many instances do not retry in step.
fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = BASE_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(20))
        .min(MAX_BACKOFF);
    exp.mul_f64(0.5 + jitter)
}

/// A number in [0, 1) from the std hasher's per-process random keys: enough for jitter.
fn random_unit() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_a_third_of_the_lifetime_left_or_inside_the_ari_window() {
        assert_eq!(renewal_time(0, 90, None, 0.5), 60);
        assert_eq!(renewal_time(0, 90, Some((70, 80)), 0.0), 70);
        assert_eq!(renewal_time(0, 90, Some((70, 80)), 0.5), 75);
        assert_eq!(
            renewal_time(0, 90, Some((80, 70)), 0.5),
            60,
            "a nonsense window is ignored"
        );
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        assert_eq!(backoff(1, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(2, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(3, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(40, 0.5), MAX_BACKOFF);
        let r = random_unit();
        assert!((0.0..1.0).contains(&r));
    }
}
