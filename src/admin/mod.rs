//! The admin server, an axum service behind tower layers (tracing, compression, a timeout):
//! `/healthz` (the process is up), `/readyz` (the first complete config is live and fjord is
//! not shutting down), `/metrics` (Prometheus), `/acme` (each ACME certificate's state), and,
//! when `api.dashboard` is on, the read-only API under `/api/` and the dashboard under
//! `/dashboard/`. The same API router answers routes to `api@internal` on the entry points.

mod api;
mod dashboard;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::acme::Manager;
use crate::snapshot::{Live, Snapshot};

/// Longest an admin request may take; every answer is made from memory.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Largest API or dashboard answer passed on through an entry point (they are far smaller).
const MOST_BYTES: usize = 16 << 20;

/// What the admin routes read: the snapshot in force, ACME's state, who this replica is.
#[derive(Clone)]
pub(crate) struct Shared {
    pub live: Arc<Live>,
    pub acme: Arc<Manager>,
    pub replica: Arc<str>,
    /// The static configuration's default certificate (or the one made at start), when an
    /// entry point speaks TLS.
    pub default_certificate: Option<Arc<crate::model::TlsCert>>,
}

impl Shared {
    fn facts(&self) -> api::Facts {
        api::Facts {
            replica: self.replica.to_string(),
            ready: self.live.is_ready(),
            now: jiff::Timestamp::now().as_second(),
        }
    }
}

/// Health, readiness, metrics and ACME status; `draining` turns `/readyz` to 503 so load
/// balancers stop sending traffic while in-flight requests finish.
pub(crate) fn probes(shared: Shared, draining: CancellationToken) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move |State(s): State<Shared>| async move {
                if draining.is_cancelled() {
                    (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                } else if s.live.is_ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "no config loaded yet\n")
                }
            }),
        )
        .route("/metrics", get(metrics))
        .route(
            "/acme",
            get(|State(s): State<Shared>| async move { pretty(&s.acme.status()) }),
        )
        .with_state(shared)
}

/// The read-only API and the dashboard.
pub(crate) fn api(shared: Shared) -> Router {
    Router::new()
        .route(
            "/api/overview",
            get(|State(s): State<Shared>| async move {
                let default = s.default_certificate.as_deref();
                pretty(&api::overview(
                    &s.live.load(),
                    default,
                    &s.acme.status(),
                    &s.facts(),
                ))
            }),
        )
        .route("/api/http/routers", list(api::routers))
        .route(
            "/api/http/routers/{*name}",
            named(api::routers, |r| &r.name, "router"),
        )
        .route("/api/http/services", list(api::services))
        .route(
            "/api/http/services/{*name}",
            named(api::services, |x| &x.name, "service"),
        )
        .route("/api/http/middlewares", list(api::middlewares))
        .route(
            "/api/http/middlewares/{*name}",
            named(api::middlewares, |m| &m.name, "middleware"),
        )
        .route(
            "/api/certificates",
            get(|State(s): State<Shared>| async move {
                let now = jiff::Timestamp::now().as_second();
                let default = s.default_certificate.as_deref();
                pretty(&api::certificates(
                    &s.live.load(),
                    default,
                    &s.acme.status(),
                    now,
                ))
            }),
        )
        .route(
            "/api/diagnostics",
            get(|State(s): State<Shared>| async move { pretty(&api::diagnostics(&s.live.load())) }),
        )
        .merge(dashboard::routes())
        .with_state(shared)
}

/// `router` with the layers every admin answer goes through.
pub(crate) fn layered(router: Router) -> Router {
    router.layer(CompressionLayer::new()).layer(
        tower::ServiceBuilder::new()
            .layer(TraceLayer::new_for_http())
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                TIMEOUT,
            )),
    )
}

/// Serves `router` on `listener` until `stop`.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    stop: CancellationToken,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin: cannot serve the listening socket");
            return;
        }
    };
    let served = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned());
    if let Err(e) = served.await {
        tracing::error!(error = %e, "admin server stopped");
    }
}

/// The API and dashboard as an entry point's route reaches them (`api@internal`).
#[derive(Clone, Debug)]
pub(crate) struct Internal(Router);

impl Internal {
    pub(crate) fn new(shared: Shared) -> Self {
        Self(layered(api(shared)))
    }

    /// Answers `req` as the admin server would.
    pub(crate) async fn answer<B>(&self, req: http::Request<B>) -> http::Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let Ok(response) = self.0.clone().oneshot(req.map(axum::body::Body::new)).await;
        let (parts, body) = response.into_parts();
        match Limited::new(body, MOST_BYTES).collect().await {
            Ok(collected) => http::Response::from_parts(parts, Full::new(collected.to_bytes())),
            Err(e) => {
                tracing::warn!(error = %e, "api@internal: cannot read the answer");
                crate::body::empty(http::StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::METRICS.render(),
    )
}

/// JSON, indented for people reading it with curl.
fn pretty<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "admin: cannot write JSON");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `GET`: every item `view` makes of the snapshot in force.
fn list<T: Serialize + 'static>(view: fn(&Snapshot) -> Vec<T>) -> MethodRouter<Shared> {
    get(move |State(s): State<Shared>| async move { pretty(&view(&s.live.load())) })
}

/// `GET {name}`: the item of `view` whose `name_of` is the path's, or a 404 naming the `what`.
fn named<T: Serialize + 'static>(
    view: fn(&Snapshot) -> Vec<T>,
    name_of: fn(&T) -> &String,
    what: &'static str,
) -> MethodRouter<Shared> {
    get(
        move |State(s): State<Shared>, Path(name): Path<String>| async move {
            one(view(&s.live.load()), |x| *name_of(x) == name, what, &name)
        },
    )
}

/// The one item of `all` that `is` picks, or a 404 naming what was asked for.
fn one<T: Serialize>(all: Vec<T>, is: impl Fn(&T) -> bool, what: &str, name: &str) -> Response {
    match all.iter().find(|x| is(x)) {
        Some(x) => pretty(x),
        None => {
            let mut response = pretty(&serde_json::json!({
                "message": format!("{what} not found: {name}"),
            }));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    }
}
