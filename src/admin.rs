//! The admin server: `/healthz` (the process is up), `/readyz` (the first complete config is
//! live and fjord is not shutting down), `/metrics` (Prometheus) and `/acme` (each ACME certificate's names, expiry,
//! next attempt and last error, as JSON).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acme::Manager;
use crate::listener;
use crate::snapshot::Live;

/// Serves until `stop`. `draining` turns `/readyz` to 503 so load balancers stop sending
/// traffic while in-flight requests finish.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    live: Arc<Live>,
    acme: Arc<Manager>,
    draining: CancellationToken,
    stop: CancellationToken,
) {
    let tracker = TaskTracker::new();
    listener::accept(listener, stop, tracker, move |stream, _peer| {
        let live = Arc::clone(&live);
        let acme = Arc::clone(&acme);
        let draining = draining.clone();
        async move {
            let service = service_fn(move |req| {
                let response = answer(&req, &live, &acme, &draining);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        }
    })
    .await;
}

fn answer(
    req: &Request<Incoming>,
    live: &Live,
    acme: &Manager,
    draining: &CancellationToken,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/metrics" {
        let mut response = Response::new(Full::new(Bytes::from(crate::metrics::METRICS.render())));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return response;
    }
    if req.uri().path() == "/acme" {
        let json = serde_json::to_vec_pretty(&acme.status()).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(json)));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return response;
    }
    let (status, text) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n"),
        "/readyz" if draining.is_cancelled() => {
            (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        }
        "/readyz" if live.is_ready() => (StatusCode::OK, "ready\n"),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "no config loaded yet\n"),
        _ => (StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
