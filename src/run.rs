//! `fjord run`: binds the entry points, loads the manifests, keeps the snapshot in step with the
//! folder, and on SIGTERM/SIGINT drains in-flight requests before exiting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acme::{self, Challenges};
use crate::admin;
use crate::cluster::{self, status::Seen};
use crate::config::StaticConfig;
use crate::diagnostics::Diagnostic;
use crate::listener;
use crate::metrics::METRICS;

use crate::provider::manifests::{self, ManifestsDir};
use crate::provider::{Loaded, kubernetes};
use crate::proxy::{Proxy, Redirect};
use crate::server::{self, Draining, Server};
use crate::snapshot::{self, Live, Snapshot};
use crate::tls;
use crate::translate::class::Classes;
use crate::translate::{self, LastGood};
use crate::upstream::Upstream;
use crate::workers::{self, Workers};

/// How long the folder must be quiet before a change is read.
const SETTLE: Duration = Duration::from_millis(100);

/// Runs the proxy on the manifests in `manifests` until SIGTERM or SIGINT.
/// Where the objects come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A folder of manifests, watched.
    Manifests(PathBuf),
    /// The API server, and how this replica writes back to it.
    Kubernetes(kubernetes::Scope, cluster::Options),
}

/// Runs fjord until SIGTERM or Ctrl-C: loads the objects from `source`, serves the
/// entry points, the admin server and ACME as `config` says.
pub async fn run(source: Source, config: StaticConfig) -> anyhow::Result<()> {
    // One crypto provider for every TLS user (the server, the ACME client): aws-lc-rs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let live = Arc::new(Live::default());
    let challenges = Arc::new(Challenges::default());
    let worker_count = workers::count();
    // In a cluster, the client comes first: ACME keeps its state in the API server.
    let cluster = match &source {
        Source::Kubernetes(scope, options) => Some(acme::Cluster {
            client: kubernetes::client(scope).await?,
            namespace: options.namespace.clone(),
            identity: options.identity.clone(),
        }),
        Source::Manifests(_) => None,
    };
    let acme = Arc::new(acme::Manager::new(
        &config,
        Arc::clone(&challenges),
        cluster.as_ref(),
    ));

    // The certificate a handshake for an unknown name gets, when some entry point speaks TLS.
    let default_certificate = match config.entry_points.values().any(|ep| ep.http.tls.is_some()) {
        true => Some(Arc::new(tls::default_certificate(&config.tls)?)),
        false => None,
    };
    let tls_config = if let Some(default) = &default_certificate {
        let resolver = Arc::new(tls::Resolver::new(
            Arc::clone(&live),
            Arc::clone(&challenges),
            Arc::clone(&default.key),
        ));
        let policies = Arc::new(tls::Policies::new(Arc::clone(&live), Arc::clone(&resolver)));
        Some((tls::server_config(resolver)?, policies))
    } else {
        None
    };

    let shared = admin::Shared {
        live: Arc::clone(&live),
        acme: Arc::clone(&acme),
        replica: replica(&source).into(),
        default_certificate,
    };
    let proxy = Arc::new(Proxy::new(
        Arc::clone(&live),
        Upstream::new(&config.servers_transport, worker_count),
        Arc::clone(&challenges),
        crate::access_log::AccessLog::start(&config.access_log),
        config
            .api
            .dashboard
            .then(|| admin::Internal::new(shared.clone())),
    ));
    // Bind everything before serving, so a taken port fails start-up naming the entry point.
    let mut bound = BTreeMap::new();
    for (name, ep) in &config.entry_points {
        let l = listener::bind(ep.address)
            .await
            .with_context(|| format!("entryPoints.{name}: cannot listen on {:?}", ep.address))?;
        tracing::info!(entrypoint = %name, address = %l.local_addr()?, tls = ep.http.tls.is_some(), "listening");
        // Handed to the workers, which register it with their own runtimes.
        bound.insert(name.clone(), l.into_std()?);
    }
    // The port clients reach each entry point on, for redirects to it.
    let ports: BTreeMap<String, u16> = bound
        .iter()
        .filter_map(|(name, l)| {
            let exposed = config.entry_points.get(name)?.exposed_port;
            Some((
                name.clone(),
                exposed.or(l.local_addr().ok().map(|a| a.port()))?,
            ))
        })
        .collect();
    let mut listeners = Vec::new();
    for (name, l) in bound {
        let Some(ep) = config.entry_points.get(&name) else {
            continue;
        };
        let tls = match (&ep.http.tls, &tls_config) {
            (Some(t), Some((server_config, policies))) => Some(server::Tls {
                config: Arc::clone(server_config),
                policies: Arc::clone(policies),
                handshake_timeout: t.handshake_timeout,
            }),
            _ => None,
        };
        let redirect = ep.http.redirections.entry_point.as_ref().map(|to| {
            let port = to.port().or_else(|| ports.get(&to.to).copied());
            let default_port = match to.scheme.as_str() {
                "https" => Some(443),
                "http" => Some(80),
                _ => None,
            };
            Redirect {
                scheme: to.scheme.as_str().into(),
                port: port
                    .filter(|p| Some(*p) != default_port)
                    .map(|p| p.to_string().into()),
                permanent: to.permanent,
            }
        });
        listeners.push((
            Arc::new(Server::new(&name, ep, Arc::clone(&proxy), tls, redirect)),
            l,
        ));
    }
    let api_listener = match (config.api.dashboard, config.api.address) {
        (true, Some(address)) => {
            let l = listener::bind(address)
                .await
                .with_context(|| format!("api.address: cannot listen on {address:?}"))?;
            tracing::info!(entrypoint = "api", address = %l.local_addr()?, "listening");
            Some(l)
        }
        _ => None,
    };
    // Bound last: once it listens, every other listener does.
    let admin_listener = listener::bind(config.admin.address)
        .await
        .with_context(|| format!("admin: cannot listen on {:?}", config.admin.address))?;
    tracing::info!(entrypoint = "admin", address = %admin_listener.local_addr()?, "listening");

    let draining = Draining::default();
    let stopped = CancellationToken::new();
    let mut admin_router = admin::probes(shared.clone(), draining.token().clone());
    // The API shows every route and backend: on the admin port only where that port is this
    // machine's alone, or where the operator says so.
    if config.api.dashboard && (config.admin.address.is_loopback() || config.api.insecure) {
        admin_router = admin_router.merge(admin::api(shared.clone()));
    }
    tokio::spawn(admin::serve(
        admin_listener.into_std()?,
        admin::layered(admin_router),
        stopped.clone(),
    ));
    if let Some(l) = api_listener {
        tokio::spawn(admin::serve(
            l.into_std()?,
            admin::layered(admin::api(shared)),
            stopped.clone(),
        ));
    }

    let mut options = translate::Options::from_config(&config);
    if let (Source::Kubernetes(_, cluster), true) = (&source, config.api.dashboard) {
        options.api = translate::ApiAccess::Namespace(cluster.namespace.clone());
    }
    let build = snapshot::Options {
        router_metrics: config.metrics.prometheus.add_routers_labels,
    };
    let mut apply = Apply {
        options,
        build,
        live: Arc::clone(&live),
        acme: Arc::clone(&acme),
        reported: BTreeSet::new(),
        last_good: LastGood::default(),
        cluster: None,
        config: None,
    };
    let mut lease = None;
    match source {
        Source::Manifests(folder) => {
            // Watched before the first load: a file written between the two would otherwise
            // wait for the next change to be seen. One written during the load is read twice.
            let (watcher, mut changes) = manifests::watch(&folder, SETTLE)
                .with_context(|| format!("cannot watch manifests folder {}", folder.display()))?;
            let mut dir = ManifestsDir::new(&folder);
            let loaded = dir
                .load()
                .with_context(|| format!("cannot read manifests folder {}", folder.display()))?;
            apply.apply(loaded);
            tokio::task::spawn_blocking(move || {
                let _watcher = watcher;
                while changes.wait() {
                    match changes.read_stable(&mut dir) {
                        Ok(loaded) => apply.apply(loaded),
                        Err(e) => {
                            METRICS.config_reloads.with_label_values(&["failure"]).inc();
                            tracing::error!(folder = %dir.root().display(), error = %e, "cannot read manifests folder; the current config stays");
                        }
                    }
                }
            });
        }
        Source::Kubernetes(scope, options) => {
            // Serving starts now, answering 503 until every watcher has listed and the first
            // snapshot is live: never a 404 for a route that exists.
            let Some(cluster) = cluster else {
                anyhow::bail!("the Kubernetes client was not made");
            };
            let client = cluster.client.clone();
            // A replica is a member once it can do its share: with ACME, answer challenges.
            let (ready_tx, ready) = tokio::sync::watch::channel(false);
            if config.certificates_resolvers.is_empty() {
                ready_tx.send_replace(true);
            } else {
                tokio::spawn(acme::secrets::serve(
                    cluster,
                    Arc::clone(&challenges),
                    acme.stored(),
                    ready_tx,
                    draining.token().clone(),
                ));
            }
            let (feedback, lease_task) =
                cluster::start(client.clone(), &options, ready, draining.token().clone());
            acme.send_events(feedback.notices());
            apply.cluster = Some(feedback);
            lease = Some(lease_task);
            let mut loads = kubernetes::watch(client, &scope);
            tokio::task::spawn_blocking(move || {
                while let Some(loaded) = loads.blocking_recv() {
                    apply.apply(loaded);
                }
            });
        }
    }

    let connections = TaskTracker::new();
    let workers = Workers::start(worker_count).context("cannot start the worker threads")?;
    let accepted: Arc<[_]> = (0..worker_count)
        .map(|w| {
            METRICS
                .worker_connections
                .with_label_values(&[&w.to_string()])
        })
        .collect();
    for (server, l) in listeners {
        let mut accepting = Vec::with_capacity(worker_count);
        for _ in 0..worker_count {
            let l = l
                .try_clone()
                .context("cannot hand a listening socket to a worker")?;
            let (shutdown, server) = (draining.clone(), Arc::clone(&server));
            let accepted = Arc::clone(&accepted);
            let serve = move |stream, peer| {
                // Counted by the thread that took the connection, which serves it to the end.
                if let Some(counter) = accepted.get(workers::current()) {
                    counter.inc();
                }
                Arc::clone(&server).serve(stream, peer, shutdown.clone())
            };
            accepting.push(listener::accept(
                l,
                draining.token().clone(),
                connections.clone(),
                serve,
            ));
        }
        workers.spawn_each(accepting);
    }
    tracing::info!(workers = worker_count, "serving");

    shutdown_signal().await;
    let grace = config
        .entry_points
        .values()
        .map(|ep| ep.transport.life_cycle.grace_time_out)
        .max()
        .unwrap_or_default();
    tracing::info!(grace = ?grace, open_connections = connections.len(), "shutting down: no new connections, finishing requests in flight");
    draining.begin();
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open_connections = connections.len(),
            "grace period over; closing the connections left"
        );
    }
    if let Some(lease) = lease {
        // The Lease is released on SIGTERM; give that write a moment to land.
        let _ = tokio::time::timeout(Duration::from_secs(2), lease).await;
    }
    stopped.cancel();
    // Closes what the grace period left open.
    tokio::task::spawn_blocking(move || workers.stop()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Puts what a provider loaded in force: translation, snapshot, certificates. Diagnostics are
/// logged when they first appear and when they go away, not on every reload.
struct Apply {
    options: translate::Options,
    build: snapshot::Options,
    live: Arc<Live>,
    acme: Arc<acme::Manager>,
    /// Diagnostics already logged.
    reported: BTreeSet<Diagnostic>,
    /// What was last served, kept when an update to it is invalid.
    last_good: LastGood,
    /// In `--kubernetes` mode: Ingress status and Events.
    cluster: Option<cluster::Feedback>,
    /// The config in force, for the endpoints-only path.
    config: Option<Arc<translate::Config>>,
}

impl Apply {
    fn apply(&mut self, loaded: Loaded) {
        let started = Instant::now();
        if loaded.endpoints_only
            && let Some(config) = &mut self.config
        {
            translate::refresh_endpoints(&loaded.store, Arc::make_mut(config));
            let snapshot = Snapshot::build(config, Some(&self.live.load()), self.build);
            self.live.store(snapshot);
            METRICS.config_reloads.with_label_values(&["success"]).inc();
            tracing::info!(
                backends = config.backends.len(),
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "endpoints updated"
            );
            return;
        }
        let mut store = loaded.store;
        let stood_in = self.last_good.stand_in(&mut store, &loaded.unreadable);
        let mut translation = translate::translate(&store, &self.options, &self.last_good);
        let reported = &mut self.reported;
        let diagnostics: BTreeSet<Diagnostic> = loaded
            .diagnostics
            .into_iter()
            .map(|mut d| {
                if stood_in.iter().any(|k| k.to_string() == d.subject) {
                    d.message.push_str("; still serving its last good version");
                }
                d
            })
            .chain(std::mem::take(&mut translation.diagnostics))
            .collect();
        for d in diagnostics.difference(reported) {
            if d.is_error() {
                tracing::error!(object = %d.subject, "{}", d.message);
            } else {
                tracing::warn!(object = %d.subject, "{}", d.message);
            }
        }
        for d in reported.difference(&diagnostics) {
            tracing::info!(object = %d.subject, "resolved: {}", d.message);
        }
        if let Some(cluster) = &self.cluster {
            for d in diagnostics.difference(reported) {
                cluster.notify(d, &store);
            }
            let options = &self.options;
            let classes = Classes::new(&store, &options.ingress_class, &options.also_serve_classes);
            cluster.ingresses(
                store
                    .ingresses()
                    .filter(|i| classes.accepts(i) == Ok(true))
                    .map(Seen::of)
                    .collect(),
            );
        }
        METRICS.config_reloads.with_label_values(&["success"]).inc();
        METRICS.config_last_success.set(crate::metrics::unix_now());
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        METRICS
            .config_diagnostics
            .with_label_values(&["error"])
            .set(i64::try_from(errors).unwrap_or(i64::MAX));
        METRICS
            .config_diagnostics
            .with_label_values(&["warning"])
            .set(i64::try_from(diagnostics.len() - errors).unwrap_or(i64::MAX));
        for cert in &translation.config.certificates {
            for name in &cert.names {
                METRICS
                    .tls_certs_not_after
                    .with_label_values(&[name])
                    .set(cert.not_after as f64);
            }
        }
        let config = Arc::new(std::mem::take(&mut translation.config));
        let snapshot = Snapshot::build(&config, Some(&self.live.load()), self.build)
            .with_diagnostics(diagnostics.iter().cloned().collect());
        let routes = snapshot.routes();
        self.live.store(snapshot);
        self.acme.apply(&config.acme, &config.acme_requested_by);
        tracing::info!(
            objects = store.len(),
            routes,
            errors = diagnostics.iter().filter(|d| d.is_error()).count(),
            warnings = diagnostics.iter().filter(|d| !d.is_error()).count(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "config loaded"
        );
        *reported = diagnostics;
        self.last_good = std::mem::take(&mut self.last_good).next(store, &translation);
        self.config = Some(config);
    }
}

/// This replica's name, for the API: the pod's in a cluster, the machine's otherwise.
fn replica(source: &Source) -> String {
    match source {
        Source::Kubernetes(_, options) => options.identity.clone(),
        Source::Manifests(_) => std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "standalone".into()),
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
