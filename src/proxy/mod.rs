//! One request's path through fjord, as stages in one direction: admit (Host, ACME challenge,
//! readiness, TLS redirect) → route → the middleware chain on the request → the exchange with
//! the upstream (pick, send, retry, health) → the chain on the response. Here the stages are
//! composed, and the outcome is recorded in metrics and the access log.

mod admit;
mod exchange;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::access_log::{AccessLog, Record};
use crate::acme::Challenges;
use crate::admin::Internal;
use crate::body;
use crate::counted::{Sent, Writes};
use crate::error::ProxyError;
use crate::forwarded;
use crate::metrics::{self, MethodLabel, Series};
use crate::middleware::{Ctx, Progress, Stop};
use crate::router::normalize_host;
use crate::rule::RequestView;
use crate::snapshot::{Live, Target};
use crate::throttle;
use crate::upload::Pace;
use crate::upstream::{self, Upstream};
use admit::Admission;

/// A response on its way to the client: a backend's, one fjord made, or a backend's re-encoded
/// by a middleware (compression).
pub(crate) type ResponseBody = body::ResponseBody<upstream::Body>;

/// Shared by every connection of every entry point.
#[derive(Debug)]
pub(crate) struct Proxy {
    live: Arc<Live>,
    upstream: Upstream,
    acme: Arc<Challenges>,
    access_log: Option<AccessLog>,
    /// The API and dashboard, for routes to `api@internal`, when `api.dashboard` is on.
    internal: Option<Internal>,
}

static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Where a request went, for metrics and the access log.
#[derive(Default)]
struct Outcome {
    target: Option<Arc<Target>>,
    sent: exchange::Sent,
}

/// What the proxy needs to know of the entry point a request came in on.
#[derive(Debug)]
pub(crate) struct EntryPoint {
    pub name: Arc<str>,
    pub series: Series,
    /// Largest request body in bytes; 0 is unlimited.
    pub max_body: u64,
    /// How fast a request body must arrive.
    pub pace: Pace,
    /// Where requests for hosts with TLS are redirected, if anywhere.
    pub redirect: Option<Redirect>,
}

/// A redirect of plain-HTTP requests to a TLS entry point.
#[derive(Debug)]
pub(crate) struct Redirect {
    pub scheme: Box<str>,
    /// The port to put in the Location; `None` when it is the scheme's default.
    pub port: Option<Box<str>>,
    /// 308 (permanent) or 307.
    pub permanent: bool,
}

impl Proxy {
    pub(crate) fn new(
        live: Arc<Live>,
        upstream: Upstream,
        acme: Arc<Challenges>,
        access_log: Option<AccessLog>,
        internal: Option<Internal>,
    ) -> Self {
        Self {
            live,
            upstream,
            acme,
            access_log,
            internal,
        }
    }

    /// Answers one request, which arrived at `started`; every failure becomes its error
    /// response here. Its body counts itself in `writes`, its connection's.
    ///
    /// A block, not an `async fn`, which would hold its arguments twice, the 264-byte request
    /// among them, for as long as the request lasts.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would hold its arguments twice"
    )]
    pub(crate) fn handle<'a>(
        &'a self,
        mut req: Request<Incoming>,
        started: Instant,
        client: &'a forwarded::Client,
        entry: &'a EntryPoint,
        writes: &'a Arc<Writes>,
    ) -> impl Future<Output = Response<Sent<ResponseBody>>> + 'a {
        async move {
            let method = MethodLabel::of(req.method());
            let websocket = req.headers().contains_key(header::UPGRADE);
            // A request id from the client is kept; otherwise one is made. The backend gets it,
            // and so does the client, with the response.
            let request_id = match req
                .headers()
                .get(&X_REQUEST_ID)
                .filter(|v| !v.is_empty() && v.len() <= 128)
            {
                Some(id) => id.clone(),
                None => {
                    let id = new_request_id();
                    req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
                    id
                }
            };
            // The access log's line is begun on the heap, so that what it keeps of the request
            // does not widen the request's future.
            let seen = self
                .access_log
                .as_ref()
                .map(|_| Box::new(begin_record(&req, entry, client)));
            let mut outcome = Outcome::default();
            let result = self
                .forward(req, started, client, entry, &mut outcome)
                .await;
            let mut response = match result {
                Ok(response) => response,
                Err(e) => {
                    log(&entry.name, &e);
                    body::own(e.response())
                }
            };
            // Unique per response, so never worth an HPACK table entry: indexing each one would
            // evict useful entries and lengthen every later lookup of the name.
            let mut id = request_id.clone();
            id.set_sensitive(true);
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
            let target = outcome.target.as_deref();
            let took = started.elapsed();
            let series = {
                let labels = metrics::Outcome {
                    code: response.status(),
                    method,
                    websocket,
                };
                let record = |s: &Series| {
                    let h = s.get(labels);
                    h.record(took);
                    h
                };
                // A route may keep its requests out of the service's and its own series.
                let counted = target.filter(|t| t.observed.metrics);
                [
                    Some(record(&entry.series)),
                    counted.map(|t| record(&t.backend.series)),
                    counted.and_then(|t| t.series.as_ref()).map(record),
                ]
            };
            let logged = target.is_none_or(|t| t.observed.access_logs);
            let seen = seen.filter(|_| logged);
            let log = self.access_log.clone().zip(seen).map(|(log, mut record)| {
                record.target = outcome.target.clone();
                record.endpoint = outcome.sent.endpoint.take();
                record.status = response.status().as_u16();
                record.duration = took;
                record.request_id = request_id;
                (log, record)
            });
            let received = outcome.sent.received;
            let writes = Arc::clone(writes);
            response.map(|body| Sent::new(body, received, series, log, writes))
        }
    }

    /// The request's stages, in order; any may answer it or fail it.
    ///
    /// A block, not an `async fn`: see [`Self::handle`].
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would hold its arguments twice"
    )]
    fn forward<'a>(
        &'a self,
        mut req: Request<Incoming>,
        started: Instant,
        client: &'a forwarded::Client,
        entry: &'a EntryPoint,
        outcome: &'a mut Outcome,
    ) -> impl Future<Output = Result<Response<ResponseBody>, ProxyError>> + 'a {
        async move {
            let host = match admit::admit(&req, entry, &self.live, &self.acme)? {
                Admission::Route(host) => host,
                Admission::Answer(response) => return Ok(body::own(*response)),
            };
            let host_str = host.as_str();
            let target = self.route(&req, host_str, client, entry)?;
            outcome.target = Some(Arc::clone(&target));
            let target = match servable(&target) {
                Ok(()) => target,
                // A failover's main backend with no ready endpoint: its fallback serves.
                Err(e) => {
                    let fallback = fallback_for(&target, e)?;
                    outcome.target = Some(Arc::clone(&fallback));
                    fallback
                }
            };
            let chain = &target.middlewares;
            // In a block of its own, so that what only the chain needs is not kept across the
            // exchange.
            let pass = {
                let ctx = Ctx {
                    peer: client.ip(),
                    trusted: client.is_trusted(),
                    tls: client.is_tls(),
                    host: host_str,
                    certificates: client.certificates(),
                    pace: entry.pace,
                };
                match chain.on_request(&mut req, &ctx, entry.max_body) {
                    Ok(Progress::Done(pass)) => pass,
                    Ok(Progress::Waits(pass, at)) => {
                        match chain.resume(&mut req, &ctx, pass, at).await {
                            Ok(pass) => pass,
                            Err(stop) => return stopped(stop),
                        }
                    }
                    Err(stop) => return stopped(stop),
                }
            };
            if target.internal {
                // Boxed: rare, and its state would otherwise widen every request's future.
                let response = Box::pin(self.answer_internal(req)).await;
                return Ok(chain.on_response(pass, body::own(response)));
            }
            let leg = exchange::Leg {
                upstream: &self.upstream,
                target: &target,
                pass: &pass,
                client,
                pace: entry.pace,
                started,
            };
            // An `errors` middleware asks for its page as the request asked for its answer.
            // Boxed, so the request's future holds a pointer, not a request, across the exchange.
            let asked = (!target.errors.is_empty()).then(|| Box::new(upstream::head_copy(&req)));
            let mut response = match exchange::exchange(leg, req, host, &mut outcome.sent).await {
                Ok(response) => response,
                Err(e) => {
                    // A circuit breaker counts the failure the client gets.
                    pass.outcome(e.status());
                    return Err(e);
                }
            };
            if let Some(asked) = asked {
                // Boxed: rare, and its state would otherwise widen every request's future.
                let page = exchange::error_page(&self.upstream, &target, asked, response, started);
                response = Box::pin(page).await;
            }
            if pass.sniff {
                // Boxed: rare, and its state would otherwise widen every request's future.
                Box::pin(exchange::sniff(&mut response)).await;
            }
            let response = match pass.response_limit {
                0 => response.map(Either::Left),
                // Boxed: rare, and its state would otherwise widen every request's future.
                limit => {
                    match Box::pin(exchange::held(response, limit, &target.backend.name)).await {
                        Ok(response) => response,
                        Err(e) => {
                            pass.outcome(e.status());
                            return Err(e);
                        }
                    }
                }
            };
            // Most routes have no middleware: their response is not moved through the chain.
            Ok(if chain.is_empty() {
                response
            } else {
                chain.on_response(pass, response)
            })
        }
    }

    /// fjord's own API and dashboard, for a route to `api@internal`.
    async fn answer_internal(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match &self.internal {
            Some(internal) => internal.answer(req).await,
            // Translation refuses such a route when the API is off; stay total anyway.
            None => body::empty(http::StatusCode::SERVICE_UNAVAILABLE),
        }
    }

    /// The route stage: the target for the request.
    fn route<B>(
        &self,
        req: &Request<B>,
        host: &str,
        client: &forwarded::Client,
        entry: &EntryPoint,
    ) -> Result<Arc<Target>, ProxyError> {
        let host = normalize_host(host);
        let view = RequestView {
            host: &host,
            path: req.uri().path(),
            query: req.uri().query(),
            method: req.method(),
            headers: req.headers(),
            client_ip: client.ip(),
        };
        let snapshot = self.live.load();
        // A TLS connection carries requests only for hosts served with the TLS settings its
        // handshake had: a host that asks for client certificates is not reached through a
        // connection made for a name that does not.
        if client.is_tls()
            && snapshot.has_tls_policies()
            && snapshot.tls_policy(&host).map(|p| p.name.as_str()) != client.tls_policy()
        {
            return Err(ProxyError::Misdirected { host: host.into() });
        }
        snapshot
            .route_request(&view, &entry.name)
            .cloned()
            .ok_or(ProxyError::NoRoute)
    }
}

/// A refusal is a debug line (the access log and metrics have it); a failure is a warning, at
/// most one per cause per [`throttle::INTERVAL`].
fn log(entrypoint: &str, e: &ProxyError) {
    if e.is_refusal() {
        tracing::debug!(entrypoint, error = %e, "request refused");
    } else if let Some(held_back) = throttle::admit(&e.to_string()) {
        tracing::warn!(entrypoint, error = %e, held_back, "request failed");
    }
}

/// The access log's line for `req` as it arrived; what its answer was is filled in later.
fn begin_record<B>(req: &Request<B>, entry: &EntryPoint, client: &forwarded::Client) -> Record {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    Record {
        ended: jiff::Timestamp::UNIX_EPOCH,
        entrypoint: Arc::clone(&entry.name),
        target: None,
        endpoint: None,
        method: req.method().clone(),
        host: host.unwrap_or_default(),
        uri: req.uri().clone(),
        version: req.version(),
        status: 0,
        duration: Duration::ZERO,
        bytes: 0,
        client_ip: client.ip(),
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
        request_id: HeaderValue::from_static(""),
    }
}

/// The answer of a chain that stopped the request.
fn stopped(stop: Stop) -> Result<Response<ResponseBody>, ProxyError> {
    match stop {
        Stop::Error(e) => Err(e),
        Stop::Reply(reply) => Ok(body::own(*reply)),
    }
}

/// Whether `target` can be served: its route is not broken, and its backend has endpoints.
fn servable(target: &Target) -> Result<(), ProxyError> {
    if let Some(why) = &target.broken {
        return Err(ProxyError::Misconfigured {
            route: target.source.clone(),
            why: why.clone(),
        });
    }
    let backend = &target.backend;
    if backend.endpoints.is_empty() && !target.internal {
        return Err(ProxyError::NoEndpoint {
            backend: backend.name.clone(),
            why: backend.unavailable.clone().unwrap_or_default(),
        });
    }
    Ok(())
}

/// The fallback that serves `target`'s request when its backend has none (`e`), or `e`.
fn fallback_for(target: &Target, e: ProxyError) -> Result<Arc<Target>, ProxyError> {
    match (&e, &target.fallback) {
        (ProxyError::NoEndpoint { .. }, Some(fallback)) => {
            servable(&fallback.target)?;
            Ok(Arc::clone(&fallback.target))
        }
        _ => Err(e),
    }
}

/// A request id: a per-process random prefix and a counter, 32 hex digits.
fn new_request_id() -> HeaderValue {
    use std::hash::{BuildHasher as _, Hasher as _};
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: LazyLock<u64> = LazyLock::new(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(u64::from(std::process::id()));
        h.finish()
    });
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    for (half, value) in id
        .chunks_exact_mut(16)
        .zip([*PREFIX, NEXT.fetch_add(1, Ordering::Relaxed)])
    {
        for (i, digit) in half.iter_mut().enumerate() {
            *digit = HEX[(value >> (60 - 4 * i)) as usize & 0xf];
        }
    }
    // Hex digits are always a valid value.
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_32_hex_digits_sharing_a_prefix_and_counting_up() {
        let ids: Vec<String> = (0..3)
            .map(|_| super::new_request_id().to_str().unwrap().to_owned())
            .collect();
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{id}"
            );
            assert_eq!(id[..16], ids[0][..16], "one prefix per process");
        }
        let counters: Vec<u64> = ids
            .iter()
            .map(|id| u64::from_str_radix(&id[16..], 16).unwrap())
            .collect();
        assert!(counters.windows(2).all(|w| w[1] > w[0]), "{ids:?}");
    }
}
