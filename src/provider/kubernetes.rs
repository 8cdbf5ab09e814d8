//! The cluster provider: kube-rs watchers on the API server fill the same [`Store`] the
//! manifests folder fills. Each kind is listed, then watched; a failed watch is retried with
//! backoff and a 410 relists, while the last store keeps serving. Changes are batched: a burst
//! of events (a rollout's EndpointSlices) becomes one store handed on for one rebuild.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::{Loaded, Object, ObjectKey, Store};
use crate::crd::{IngressRoute, Middleware, ServersTransport, TLSOption, TLSStore, TraefikService};
use crate::metrics::{self, METRICS};

/// What to watch, from the command line.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// A kubeconfig file; without it, `KUBECONFIG`, `~/.kube/config`, then the in-cluster
    /// service account.
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces to watch; empty is all.
    pub namespaces: Vec<String>,
    /// Label selector for Ingresses and IngressRoutes, the objects that make routes; what they
    /// name (Services, Middlewares, Secrets) is read whatever its labels.
    pub labels: Option<String>,
}

/// A client for the API server `scope` names.
pub async fn client(scope: &Scope) -> anyhow::Result<Client> {
    let config = match &scope.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    Client::try_from(config).context("cannot build the Kubernetes client")
}

/// The kinds fjord watches, each with its own watcher(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    TlsSecret,
    IngressRoute,
    Middleware,
    TraefikService,
    ServersTransport,
    TlsOption,
    TlsStore,
    /// A Secret a Middleware names (basicAuth users, Redis credentials and CA), watched by name
    /// while referenced.
    NamedSecret,
    /// A ConfigMap a ServersTransport names (a CA), watched by name while referenced.
    NamedConfigMap,
}

impl Kind {
    /// Whether its objects are watched one by one, by name, while something names them.
    fn is_named(self) -> bool {
        matches!(self, Kind::NamedSecret | Kind::NamedConfigMap)
    }

    /// The `resource` label of the watch metrics.
    fn resource(self) -> &'static str {
        match self {
            Kind::Ingress => "ingresses",
            Kind::IngressClass => "ingressclasses",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::TlsSecret => "secrets",
            Kind::IngressRoute => "ingressroutes",
            Kind::Middleware => "middlewares",
            Kind::TraefikService => "traefikservices",
            Kind::ServersTransport => "serverstransports",
            Kind::TlsOption => "tlsoptions",
            Kind::TlsStore => "tlsstores",
            Kind::NamedSecret => "secrets-by-name",
            Kind::NamedConfigMap => "configmaps-by-name",
        }
    }
}

/// Who put an object in the store: a watcher's kind and namespace (or one named Secret). A
/// relist replaces exactly what its own watcher put there.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Origin {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
}

/// The store the watchers fill, and how the batching loop learns of changes.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// Objects by identity, with the watcher that owns each.
    objects: BTreeMap<ObjectKey, (Origin, Object)>,
    /// Watchers that have not finished their first list.
    syncing: BTreeSet<Origin>,
    /// Kinds changed since the last store was handed on.
    dirty: BTreeSet<Kind>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.notify_one();
    }

    /// The current objects, once every watcher has listed; `None` before.
    fn store(&self) -> Option<Store> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.syncing.iter().any(|o| !o.kind.is_named()) {
            return None;
        }
        let mut store = Store::default();
        for (_, object) in state.objects.values() {
            store.upsert(object.clone());
        }
        Some(store)
    }

    fn take_dirty(&self) -> BTreeSet<Kind> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut state.dirty)
    }

    fn named_syncing(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.syncing.iter().any(|o| o.kind.is_named())
    }
}

/// How long the batching loop waits for more events before it hands a store on, and the most
/// it waits while events keep coming.
const SETTLE: Duration = Duration::from_millis(100);
const MAX_SETTLE: Duration = Duration::from_secs(1);
/// How long a store waits for Secrets a Middleware has just started naming.
const NAMED_SECRET_WAIT: Duration = Duration::from_secs(5);

/// Watches the cluster and sends a complete [`Store`] after the first full sync and after
/// each batch of changes. The watchers live as long as the returned receiver is read.
pub fn watch(client: Client, scope: &Scope) -> mpsc::Receiver<Loaded> {
    let shared = Arc::new(Shared::default());
    let namespaces: Vec<Option<String>> = if scope.namespaces.is_empty() {
        vec![None]
    } else {
        scope.namespaces.iter().cloned().map(Some).collect()
    };
    let labels = scope.labels.clone();
    let mut tasks = Vec::new();
    let routes = || {
        let c = watcher::Config::default();
        match &labels {
            Some(l) => c.labels(l),
            None => c,
        }
    };
    let all = watcher::Config::default;
    for ns in &namespaces {
        let c = client.clone();
        tasks.push(spawn::<Ingress>(&c, &shared, Kind::Ingress, ns, routes()));
        tasks.push(spawn::<IngressRoute>(
            &c,
            &shared,
            Kind::IngressRoute,
            ns,
            routes(),
        ));
        tasks.push(spawn::<Service>(&c, &shared, Kind::Service, ns, all()));
        tasks.push(spawn::<EndpointSlice>(
            &c,
            &shared,
            Kind::EndpointSlice,
            ns,
            all(),
        ));
        tasks.push(spawn::<Middleware>(
            &c,
            &shared,
            Kind::Middleware,
            ns,
            all(),
        ));
        tasks.push(spawn::<TraefikService>(
            &c,
            &shared,
            Kind::TraefikService,
            ns,
            all(),
        ));
        tasks.push(spawn::<ServersTransport>(
            &c,
            &shared,
            Kind::ServersTransport,
            ns,
            all(),
        ));
        tasks.push(spawn::<TLSOption>(&c, &shared, Kind::TlsOption, ns, all()));
        tasks.push(spawn::<TLSStore>(&c, &shared, Kind::TlsStore, ns, all()));
        // Only TLS Secrets: a cluster's Helm release Secrets would otherwise fill memory.
        let tls = all().fields("type=kubernetes.io/tls");
        tasks.push(spawn::<Secret>(&c, &shared, Kind::TlsSecret, ns, tls));
    }
    tasks.push(spawn::<IngressClass>(
        &client,
        &shared,
        Kind::IngressClass,
        &None,
        all(),
    ));

    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(batch(client, shared, tasks, tx));
    rx
}

/// Hands a store on after each settled batch of changes, and keeps one watcher per Secret or
/// ConfigMap another object names.
async fn batch(
    client: Client,
    shared: Arc<Shared>,
    watchers: Vec<JoinHandle<()>>,
    tx: mpsc::Sender<Loaded>,
) {
    let mut first = true;
    let mut named: BTreeMap<(Kind, String, String), JoinHandle<()>> = BTreeMap::new();
    // While newly named Secrets are listed, the store waits for them, but not forever: a
    // Secret fjord may not read must not hold every other change back.
    let mut named_deadline: Option<tokio::time::Instant> = None;
    loop {
        match named_deadline {
            Some(at) => {
                let _ = tokio::time::timeout_at(at, shared.changed.notified()).await;
            }
            None => shared.changed.notified().await,
        }
        let started = tokio::time::Instant::now();
        // Settle: more events within SETTLE join this batch, up to MAX_SETTLE.
        while started.elapsed() < MAX_SETTLE {
            if tokio::time::timeout(SETTLE, shared.changed.notified())
                .await
                .is_err()
            {
                break;
            }
        }
        let Some(store) = shared.store() else {
            continue;
        };
        // Secrets and ConfigMaps named by other objects: start watching new ones, stop the ones
        // no longer named.
        let wanted: BTreeSet<(Kind, String, String)> = named_secrets(&store)
            .into_iter()
            .map(|(ns, name)| (Kind::NamedSecret, ns, name))
            .chain(
                named_config_maps(&store)
                    .into_iter()
                    .map(|(ns, name)| (Kind::NamedConfigMap, ns, name)),
            )
            .collect();
        named.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
                let origin = Origin {
                    kind: key.0,
                    namespace: Some(key.1.clone()),
                    name: Some(key.2.clone()),
                };
                shared.update(|s| {
                    s.objects.retain(|_, (o, _)| *o != origin);
                    s.syncing.remove(&origin);
                    s.dirty.insert(key.0);
                });
            }
            keep
        });
        let mut started_any = false;
        for key in wanted {
            if named.contains_key(&key) {
                continue;
            }
            let task = spawn_named(&client, &shared, &key);
            named.insert(key, task);
            started_any = true;
        }
        let now = tokio::time::Instant::now();
        if started_any {
            named_deadline = Some(now + NAMED_SECRET_WAIT);
            continue;
        }
        if shared.named_syncing() && named_deadline.is_some_and(|at| now < at) {
            continue;
        }
        named_deadline = None;
        // Rebuilt with any named Secrets listed meanwhile.
        let Some(store) = shared.store() else {
            continue;
        };
        let dirty = shared.take_dirty();
        let loaded = Loaded {
            store,
            diagnostics: Vec::new(),
            unreadable: Default::default(),
            endpoints_only: !first && dirty.iter().all(|k| *k == Kind::EndpointSlice),
        };
        first = false;
        if tx.send(loaded).await.is_err() {
            break;
        }
    }
    for task in watchers.iter().chain(named.values()) {
        task.abort();
    }
}

/// The ingress-nginx annotation naming an Ingress's basic-auth Secret (`NAME` or `NS/NAME`).
const NGINX_AUTH_SECRET: &str = "nginx.ingress.kubernetes.io/auth-secret";
/// The ingress-nginx annotation naming the Secret with a backend's CA and client certificate.
const NGINX_PROXY_SSL_SECRET: &str = "nginx.ingress.kubernetes.io/proxy-ssl-secret";

/// `(namespace, name)` of each non-TLS Secret a Middleware (basicAuth, a rate limit's Redis, a
/// forwardAuth's CA), or an Ingress's
/// ingress-nginx `auth-secret`, names.
fn named_secrets(store: &Store) -> BTreeSet<(String, String)> {
    let of_middlewares = store.middlewares().flat_map(|m| {
        let ns = m.metadata.namespace.clone().unwrap_or_default();
        let redis = m.spec.rate_limit.as_ref().and_then(|r| r.redis.as_ref());
        let redis_tls = redis.and_then(|r| r.tls.as_ref());
        let auth_tls = m.spec.forward_auth.as_ref().and_then(|f| f.tls.as_ref());
        [
            m.spec.basic_auth.as_ref().and_then(|b| b.secret.clone()),
            m.spec.digest_auth.as_ref().and_then(|d| d.secret.clone()),
            redis.and_then(|r| r.secret.clone()),
            redis_tls.and_then(|t| t.ca_secret.clone()),
            redis_tls.and_then(|t| t.cert_secret.clone()),
            auth_tls.and_then(|t| t.ca_secret.clone()),
            auth_tls.and_then(|t| t.cert_secret.clone()),
        ]
        .into_iter()
        .flatten()
        .map(move |name| (ns.clone(), name))
    });
    let of_ingresses = store.ingresses().flat_map(|i| {
        let ns = i.metadata.namespace.clone().unwrap_or_default();
        let annotations = i.metadata.annotations.as_ref();
        [NGINX_AUTH_SECRET, NGINX_PROXY_SSL_SECRET]
            .into_iter()
            .filter_map(move |key| {
                let named = annotations?.get(key)?.trim();
                Some(match named.split_once('/') {
                    Some((ns, name)) => (ns.to_owned(), name.to_owned()),
                    None => (ns.clone(), named.to_owned()),
                })
            })
    });
    let of_transports = store.servers_transports().flat_map(|t| {
        let ns = t.metadata.namespace.clone().unwrap_or_default();
        t.spec
            .root_cas
            .iter()
            .filter_map(|ca| ca.secret.clone())
            .chain(t.spec.root_cas_secrets.iter().cloned())
            .chain(t.spec.certificates_secrets.iter().cloned())
            .map(move |name| (ns.clone(), name))
            .collect::<Vec<_>>()
    });
    let of_tls_options = store.tls_options().flat_map(|t| {
        let ns = t.metadata.namespace.clone().unwrap_or_default();
        t.spec
            .client_auth
            .iter()
            .flat_map(|a| a.secret_names.clone())
            .map(move |name| (ns.clone(), name))
            .collect::<Vec<_>>()
    });
    of_middlewares
        .chain(of_ingresses)
        .chain(of_transports)
        .chain(of_tls_options)
        .filter(|(ns, name)| {
            store
                .secret(ns, name)
                .is_none_or(|s| s.type_.as_deref() != Some("kubernetes.io/tls"))
        })
        .collect()
}

/// A watch on one object named `(kind, namespace, name)`: a named Secret or ConfigMap.
fn spawn_named(
    client: &Client,
    shared: &Arc<Shared>,
    (kind, ns, name): &(Kind, String, String),
) -> JoinHandle<()> {
    let origin = Origin {
        kind: *kind,
        namespace: Some(ns.clone()),
        name: Some(name.clone()),
    };
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let shared = Arc::clone(shared);
    match kind {
        Kind::NamedConfigMap => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            start(api, config, origin, shared)
        }
        _ => {
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            start(api, config, origin, shared)
        }
    }
}

/// `(namespace, name)` of each ConfigMap a ServersTransport names (a CA).
fn named_config_maps(store: &Store) -> BTreeSet<(String, String)> {
    store
        .servers_transports()
        .flat_map(|t| {
            let ns = t.metadata.namespace.clone().unwrap_or_default();
            t.spec
                .root_cas
                .iter()
                .filter_map(|ca| ca.config_map.clone())
                .map(move |name| (ns.clone(), name))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn spawn<K>(
    client: &Client,
    shared: &Arc<Shared>,
    kind: Kind,
    namespace: &Option<String>,
    config: watcher::Config,
) -> JoinHandle<()>
where
    K: Resource<DynamicType = (), Scope: ScopeApi>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + 'static,
    Object: From<K>,
{
    let api = K::Scope::api(client.clone(), namespace.as_deref());
    let origin = Origin {
        kind,
        namespace: namespace.clone(),
        name: None,
    };
    start(api, config, origin, Arc::clone(shared))
}

/// Builds the `Api` for a kind: namespaced or cluster-wide.
trait ScopeApi {
    fn api<K: Resource<DynamicType = (), Scope = Self>>(client: Client, ns: Option<&str>)
    -> Api<K>;
}

impl ScopeApi for k8s_openapi::NamespaceResourceScope {
    fn api<K: Resource<DynamicType = (), Scope = Self>>(
        client: Client,
        ns: Option<&str>,
    ) -> Api<K> {
        match ns {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        }
    }
}

impl ScopeApi for k8s_openapi::ClusterResourceScope {
    fn api<K: Resource<DynamicType = (), Scope = Self>>(client: Client, _: Option<&str>) -> Api<K> {
        Api::all(client)
    }
}

/// Runs one watcher until aborted, applying its events to the store.
fn start<K>(
    api: Api<K>,
    config: watcher::Config,
    origin: Origin,
    shared: Arc<Shared>,
) -> JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    Object: From<K>,
{
    shared.update(|s| {
        s.syncing.insert(origin.clone());
    });
    tokio::spawn(async move {
        let resource = origin.kind.resource();
        let restarts = METRICS
            .kubernetes_watch_restarts
            .with_label_values(&[resource]);
        let last_sync = METRICS.kubernetes_last_sync.with_label_values(&[resource]);
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        let mut listed: Vec<Object> = Vec::new();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    // The store keeps what it has; the watcher retries with backoff, and a 410
                    // (history compacted) makes it list again.
                    restarts.inc();
                    let code = match &e {
                        watcher::Error::WatchError(status) => status.code,
                        _ => 0,
                    };
                    tracing::warn!(resource, namespace = ?origin.namespace, code, error = %e, "watch failed; serving the last known objects and retrying");
                    continue;
                }
            };
            match event {
                Event::Init => listed.clear(),
                Event::InitApply(o) => listed.push(slim(Object::from(o))),
                Event::InitDone => {
                    let objects = std::mem::take(&mut listed);
                    tracing::debug!(resource, namespace = ?origin.namespace, objects = objects.len(), "listed");
                    shared.update(|s| {
                        s.objects.retain(|_, (o, _)| *o != origin);
                        for object in objects {
                            s.objects.insert(object.key(), (origin.clone(), object));
                        }
                        s.syncing.remove(&origin);
                        s.dirty.insert(origin.kind);
                    });
                }
                Event::Apply(o) => {
                    let object = slim(Object::from(o));
                    shared.update(|s| {
                        s.objects.insert(object.key(), (origin.clone(), object));
                        s.dirty.insert(origin.kind);
                    });
                }
                Event::Delete(o) => {
                    let key = Object::from(o).key();
                    shared.update(|s| {
                        s.objects.remove(&key);
                        s.dirty.insert(origin.kind);
                    });
                }
            }
            last_sync.set(metrics::unix_now());
        }
    })
}

/// Drops what fjord never reads and the API server adds to every object: managed fields and
/// kubectl's copy of the last applied object, often larger than the object itself.
fn slim(mut object: Object) -> Object {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = &mut meta.annotations {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    object
}
