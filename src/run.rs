//! `fjord run`: binds the entry points, loads the manifests, keeps the snapshot in step with the
//! folder, and on SIGTERM/SIGINT drains in-flight requests before exiting.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::StaticConfig;
use crate::diagnostics::Diagnostic;
use crate::listener;
use crate::provider::Store;
use crate::provider::manifests::{self, ManifestsDir};
use crate::proxy::Proxy;
use crate::server::Server;
use crate::snapshot::{Live, Snapshot};
use crate::translate::{self, translate_keeping};
use crate::upstream::Upstream;

/// How long the folder must be quiet before a change is read.
const SETTLE: Duration = Duration::from_millis(100);

/// Runs the proxy on the manifests in `manifests` until SIGTERM or SIGINT.
pub async fn run(manifests: PathBuf, config: StaticConfig) -> anyhow::Result<()> {
    let live = Arc::new(Live::default());
    let proxy = Arc::new(Proxy::new(
        Arc::clone(&live),
        Upstream::new(&config.servers_transport),
    ));

    // Bind everything before serving, so a taken port fails start-up naming the entry point.
    let mut listeners = Vec::new();
    for (name, ep) in &config.entry_points {
        let l = listener::bind(ep.address)
            .await
            .with_context(|| format!("entryPoints.{name}: cannot listen on {:?}", ep.address))?;
        tracing::info!(entrypoint = %name, address = %l.local_addr()?, "listening");
        listeners.push((Arc::new(Server::new(name, ep, Arc::clone(&proxy))), l));
    }
    let admin = listener::bind(config.admin.address)
        .await
        .with_context(|| format!("admin: cannot listen on {:?}", config.admin.address))?;
    tracing::info!(entrypoint = "admin", address = %admin.local_addr()?, "listening");

    let draining = CancellationToken::new();
    let stopped = CancellationToken::new();
    tokio::spawn(crate::admin::serve(
        admin,
        Arc::clone(&live),
        draining.clone(),
        stopped.clone(),
    ));

    let options = translate::Options {
        ingress_class: config.providers.kubernetes_ingress.ingress_class.clone(),
    };
    let mut dir = ManifestsDir::new(&manifests);
    let mut state = LoadState::default();
    load(&mut dir, &options, &live, &mut state)
        .with_context(|| format!("cannot read manifests folder {}", manifests.display()))?;
    let (watcher, mut changes) = manifests::watch(&manifests, SETTLE)
        .with_context(|| format!("cannot watch manifests folder {}", manifests.display()))?;
    let reload_live = Arc::clone(&live);
    tokio::task::spawn_blocking(move || {
        let _watcher = watcher;
        while changes.blocking_recv().is_some() {
            if let Err(e) = load(&mut dir, &options, &reload_live, &mut state) {
                tracing::error!(folder = %dir.root().display(), error = %e, "cannot read manifests folder; the current config stays");
            }
        }
    });

    let connections = TaskTracker::new();
    for (server, l) in listeners {
        let shutdown = draining.clone();
        tokio::spawn(listener::accept(
            l,
            draining.clone(),
            connections.clone(),
            move |stream, peer| Arc::clone(&server).serve(stream, peer, shutdown.clone()),
        ));
    }

    shutdown_signal().await;
    let grace = config
        .entry_points
        .values()
        .map(|ep| ep.transport.life_cycle.grace_time_out)
        .max()
        .unwrap_or_default();
    tracing::info!(grace = ?grace, open_connections = connections.len(), "shutting down: no new connections, finishing requests in flight");
    draining.cancel();
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
    stopped.cancel();
    tracing::info!("stopped");
    Ok(())
}

/// What one load hands the next.
#[derive(Default)]
struct LoadState {
    /// Diagnostics already logged.
    reported: BTreeSet<Diagnostic>,
    /// The Ingresses last accepted, kept when their next version is rejected.
    accepted: Store,
}

/// Reads the folder, translates it and puts the result in force. Diagnostics are logged when
/// they first appear and when they go away, not on every reload.
fn load(
    dir: &mut ManifestsDir,
    options: &translate::Options,
    live: &Live,
    state: &mut LoadState,
) -> std::io::Result<()> {
    let started = Instant::now();
    let loaded = dir.load()?;
    let (translation, accepted) = translate_keeping(&loaded.store, options, &state.accepted);
    state.accepted = accepted;
    let reported = &mut state.reported;
    let diagnostics: BTreeSet<Diagnostic> = loaded
        .diagnostics
        .into_iter()
        .chain(translation.diagnostics)
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
    let snapshot = Snapshot::build(&translation.config, Some(&live.load()));
    let routes = snapshot.routes();
    live.store(snapshot);
    tracing::info!(
        objects = loaded.store.len(),
        routes,
        errors = diagnostics.iter().filter(|d| d.is_error()).count(),
        warnings = diagnostics.iter().filter(|d| !d.is_error()).count(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "config loaded"
    );
    *reported = diagnostics;
    Ok(())
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
