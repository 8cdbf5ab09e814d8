//! One request's path through fjord: route, pick an endpoint, rewrite headers, forward, and
//! stream the response back (or, for an `Upgrade`, splice the two connections together).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::access_log::{AccessLog, Record};
use crate::acme::Challenges;
use crate::acme::challenge::HTTP01_PREFIX;
use crate::balance;
use crate::counted::{Received, Sent};
use crate::error::ProxyError;
use crate::forwarded;
use crate::metrics::{self, METRICS, MethodLabel, Series};
use crate::middleware::{Ctx, Stop, compress};
use crate::router::normalize_host;
use crate::rule::RequestView;
use crate::snapshot::{Live, Target};
use crate::upstream::{self, Failed, Upstream};

/// A response on its way to the client: a backend's, one fjord made, or a backend's re-encoded
/// by a middleware (compression).
pub type ResponseBody =
    Either<upstream::Body, Either<Full<Bytes>, UnsyncBoxBody<Bytes, std::io::Error>>>;

/// A response body fjord makes itself.
pub fn full(bytes: Bytes) -> ResponseBody {
    Either::Right(Either::Left(Full::new(bytes)))
}

/// Shared by every connection of every entry point.
#[derive(Debug)]
pub struct Proxy {
    live: Arc<Live>,
    upstream: Upstream,
    acme: Arc<Challenges>,
    access_log: Option<AccessLog>,
}

static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Where a request went, for metrics and the access log.
#[derive(Default)]
struct Outcome {
    target: Option<Arc<Target>>,
    endpoint: Option<http::uri::Authority>,
    /// Request body bytes sent upstream so far, when the request has a body.
    received: Option<Arc<AtomicU64>>,
}

/// What the proxy needs to know of the entry point a request came in on.
#[derive(Debug)]
pub struct EntryPoint {
    pub name: Arc<str>,
    pub series: Series,
    /// Largest request body in bytes; 0 is unlimited.
    pub max_body: u64,
    /// Where requests for hosts with TLS are redirected, if anywhere.
    pub redirect: Option<Redirect>,
}

/// A redirect of plain-HTTP requests to a TLS entry point.
#[derive(Debug)]
pub struct Redirect {
    pub scheme: Box<str>,
    /// The port to put in the Location; `None` when it is the scheme's default.
    pub port: Option<u16>,
    /// 308 (permanent) or 307.
    pub permanent: bool,
}

impl Proxy {
    pub fn new(
        live: Arc<Live>,
        upstream: Upstream,
        acme: Arc<Challenges>,
        access_log: Option<AccessLog>,
    ) -> Self {
        Self {
            live,
            upstream,
            acme,
            access_log,
        }
    }

    /// Answers one request, which arrived at `started`; every failure becomes its error
    /// response here.
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        started: Instant,
        client: &forwarded::Client,
        entry: &EntryPoint,
    ) -> Response<Sent<ResponseBody>> {
        let method = req.method().clone();
        let websocket = req.headers().contains_key(header::UPGRADE);
        // A request id from the client is kept; otherwise one is made. The backend gets it, and
        // so does the client, with the response.
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
        let seen = self.access_log.as_ref().map(|_| {
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
            let ua = req.headers().get(header::USER_AGENT).cloned();
            (
                host.unwrap_or_default(),
                req.uri().clone(),
                ua,
                req.version(),
            )
        });
        let mut outcome = Outcome::default();
        let result = self
            .forward(req, started, client, entry, &mut outcome)
            .await;
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                match e.status() {
                    StatusCode::BAD_REQUEST
                    | StatusCode::NOT_FOUND
                    | StatusCode::PAYLOAD_TOO_LARGE => {
                        tracing::debug!(entrypoint = &*entry.name, error = %e, "request refused")
                    }
                    _ => tracing::warn!(entrypoint = &*entry.name, error = %e, "request failed"),
                }
                e.response()
            }
        };
        let mut response = response;
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
                method: MethodLabel::of(&method),
                websocket,
            };
            let record = |s: &Series| {
                let h = s.get(labels);
                h.record(took);
                h
            };
            [
                Some(record(&entry.series)),
                target.map(|t| record(&t.backend.series)),
                target.and_then(|t| t.series.as_ref()).map(record),
            ]
        };
        let log = self
            .access_log
            .clone()
            .zip(seen)
            .map(|(log, (host, uri, ua, version))| {
                let record = Record {
                    ended: jiff::Timestamp::UNIX_EPOCH,
                    entrypoint: Arc::clone(&entry.name),
                    target: outcome.target.clone(),
                    endpoint: outcome.endpoint.take(),
                    method,
                    host,
                    uri,
                    version,
                    status: response.status().as_u16(),
                    duration: took,
                    bytes: 0,
                    client_ip: client.ip(),
                    user_agent: ua,
                    request_id,
                };
                (log, Box::new(record))
            });
        let received = outcome.received;
        response.map(|body| Sent::new(body, received, series, log))
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        started: Instant,
        client: &forwarded::Client,
        entry: &EntryPoint,
        outcome: &mut Outcome,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        // The authority of an absolute-form or HTTP/2 request wins over a Host header
        // (RFC 9112 §3.2.2, RFC 9113 §8.3.1), for routing and for the backend alike.
        let authority = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        let from_uri = authority.is_some();
        let header_host = single_host(&req)?;
        let host = authority.or_else(|| header_host.cloned());
        // ACME HTTP-01 answers come before routing: no user route can shadow them.
        if req.uri().path().starts_with(HTTP01_PREFIX)
            && let Some(answer) = self.acme.http01(req.uri().path())
        {
            return Ok(plain(StatusCode::OK, Bytes::from(answer)));
        }
        if !self.live.is_ready() {
            return Err(ProxyError::NotReady);
        }
        let host_str = host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if let Some(redirect) = &entry.redirect
            && self.live.load().has_tls(host_str)
        {
            return Ok(redirect.response(host_str, req.uri()));
        }
        let target = self.route(&req, host_str, client, entry)?;
        outcome.target = Some(Arc::clone(&target));
        if let Some(why) = &target.broken {
            return Err(ProxyError::Misconfigured {
                route: target.source.clone(),
                why: why.clone(),
            });
        }
        let backend = &target.backend;
        if backend.endpoints.is_empty() {
            return Err(ProxyError::NoEndpoint {
                backend: backend.name.clone(),
                why: backend.unavailable.clone().unwrap_or_default(),
            });
        }

        // The route's middlewares, in order; any may answer instead of the backend. In-flight
        // slots they take are held until the response head is sent.
        let chain = &target.middlewares;
        let mut held = Vec::new();
        let mut origin = None;
        let mut compression = None;
        let mut limit = entry.max_body;
        if !chain.is_empty() {
            let ctx = Ctx {
                peer: client.ip(),
                tls: client.is_tls(),
                host: host_str,
            };
            for m in chain.iter() {
                match m.on_request(&mut req, &ctx, &mut held) {
                    Ok(()) => {}
                    Err(Stop::Error(e)) => {
                        let reason = match e {
                            ProxyError::RateLimited { .. } => "rate_limit",
                            ProxyError::TooManyInFlight { .. } => "in_flight",
                            ProxyError::Unauthorized { .. } => "unauthorized",
                            _ => "forbidden",
                        };
                        METRICS
                            .middleware_rejections
                            .with_label_values(&[&*m.name, reason])
                            .inc();
                        return Err(e);
                    }
                    Err(Stop::Reply(reply)) => return Ok(*reply),
                }
                if let Some(l) = m.body_limit().filter(|l| *l > 0) {
                    limit = if limit == 0 { l } else { limit.min(l) };
                }
            }
            origin = req.headers().get(header::ORIGIN).cloned();
            if let Some(spec) = chain.iter().find_map(|m| m.compress()) {
                let encoding = req
                    .headers()
                    .get(header::ACCEPT_ENCODING)
                    .and_then(compress::negotiate);
                compression = encoding.map(|e| (spec, e, req.method() == http::Method::HEAD));
            }
        }
        if limit > 0 && req.body().size_hint().lower() > limit {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        // HTTP/2 has no Upgrade; only an HTTP/1.1 client can switch protocols.
        let upgrade = (req.version() == Version::HTTP_11)
            .then(|| forwarded::upgrade_protocol(req.headers()))
            .flatten();
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        forwarded::request(&mut parts.headers, client, host.as_ref(), upgrade);
        if let Some(h) = host.filter(|_| from_uri || !parts.headers.contains_key(header::HOST)) {
            parts.headers.insert(header::HOST, h);
        }
        parts.version = Version::HTTP_11;
        // Origin-form: the endpoint is the connection's, and the authority is in the Host.
        parts.uri = Uri::from(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        // A request is sent again to another endpoint when no connection to its endpoint
        // could be made (it never left, body and all); under a retry middleware, one without a
        // body and with an idempotent method also after any failure before a response started.
        let endpoints = &backend.endpoints;
        let bodyless = body.is_end_stream();
        outcome.received = (!bodyless).then(Arc::default);
        let retry = chain
            .iter()
            .find_map(|m| m.retry())
            .filter(|_| bodyless && upstream::idempotent(&parts.method));
        let attempts = match retry {
            Some(r) => r.attempts.max(1),
            // A refused connection: the request never left, so it goes to another endpoint.
            None if endpoints.len() > 1 => 2,
            None => 1,
        };
        let first = endpoints
            .pick(balance::at(started), None)
            .ok_or_else(|| no_endpoint(&target))?;
        let limited = Limited::new(
            Received::new(body, outcome.received.clone()),
            usize::try_from(limit)
                .ok()
                .filter(|l| *l > 0)
                .unwrap_or(usize::MAX),
        );
        // A request the upstream client sends again after its pooled connection closed under it
        // counts as a retry, as one sent again here does.
        let resent = || {
            METRICS
                .service_retries
                .with_label_values(&[&*backend.name])
                .inc();
        };
        let endpoint = endpoints.get(first).ok_or_else(|| no_endpoint(&target))?;
        let request = Request::from_parts(parts, Either::Left(limited));
        // The retry middleware may send again a request that reached its endpoint: a copy of
        // its head is made before it leaves (it has no body). A request that never left needs
        // none, since the upstream client gives it back.
        let spare = (retry.is_some() && attempts > 1).then(|| upstream::head_copy(&request));
        // Boxed, the 1.4 KB exchange is built once on the heap, rather than inside this
        // future and so inside the request's, which are copied whole each time they move.
        let upstream = &self.upstream;
        let mut sent =
            Box::pin(upstream.send(request, &endpoint.authority, started, limit, &resent)).await;
        report(&target, first, &sent);
        let mut last = first;
        for attempt in 1..attempts {
            let retryable = match &sent {
                Err(Failed {
                    error: ProxyError::Connect { .. },
                    ..
                }) => true,
                Err(Failed {
                    error: ProxyError::Upstream { .. } | ProxyError::Timeout { .. },
                    ..
                }) => retry.is_some(),
                _ => false,
            };
            if !retryable {
                break;
            }
            let now = Instant::now();
            let next = match endpoints.pick(balance::at(now), Some(last)) {
                Some(n) => n,
                // One endpoint: a retry middleware tries it again; a refused connect does not.
                None if retry.is_some() => last,
                None => break,
            };
            let Some(endpoint) = endpoints.get(next) else {
                break;
            };
            if let Some(r) = retry {
                tokio::time::sleep(r.interval.saturating_mul(1 << (attempt - 1).min(16))).await;
            }
            // The request goes again as it is if it never left, else as a copy of its head.
            let again = match sent.as_mut().err().and_then(|failed| failed.unsent.take()) {
                Some(unsent) => *unsent,
                None => match &spare {
                    Some(spare) => upstream::head_copy(spare),
                    None => break,
                },
            };
            tracing::debug!(backend = &*backend.name, attempt, "retrying the request");
            resent();
            sent = Box::pin(upstream.send(again, &endpoint.authority, now, limit, &resent)).await;
            report(&target, next, &sent);
            last = next;
        }
        outcome.endpoint = endpoints.get(last).map(|e| e.authority.clone());
        let mut response = sent.map_err(|failed| failed.error)?;

        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            let Some(client_upgrade) = client_upgrade else {
                return Err(ProxyError::UnaskedUpgrade {
                    endpoint: backend.name.to_string(),
                });
            };
            tokio::spawn(tunnel(client_upgrade, hyper::upgrade::on(&mut response)));
        }
        forwarded::response(response.headers_mut(), switching);
        for m in chain.iter().rev() {
            m.on_response(response.headers_mut(), origin.as_ref());
        }
        drop(held);
        let response = response.map(Either::Left);
        Ok(match compression {
            Some((spec, encoding, head)) if !switching => spec.apply(encoding, head, response),
            _ => response,
        })
    }

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
        snapshot
            .route_request(&view, &entry.name)
            .cloned()
            .ok_or(ProxyError::NoRoute)
    }
}

impl Redirect {
    fn response(&self, host: &str, uri: &Uri) -> Response<ResponseBody> {
        let host = crate::router::normalize_host(host);
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let path = uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let location = format!("{}://{host}{port}{path}", self.scheme);
        let status = if self.permanent {
            StatusCode::PERMANENT_REDIRECT
        } else {
            StatusCode::TEMPORARY_REDIRECT
        };
        let mut response = plain(status, Bytes::new());
        if let Ok(v) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, v);
        }
        response
    }
}

/// The request's one Host header, if any. RFC 9112 §3.2 asks for a 400 when there are two
/// (fjord would route by the first, and a backend may read the last), when an HTTP/1.1 request
/// has none, or when its value is no `host[:port]`, which could otherwise reach a backend that
/// builds URLs from it.
fn single_host<B>(req: &Request<B>) -> Result<Option<&HeaderValue>, ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    match host {
        None if req.version() == Version::HTTP_11 && req.uri().authority().is_none() => {
            Err(ProxyError::BadRequest("no Host header"))
        }
        Some(h)
            if !h
                .as_bytes()
                .iter()
                .all(|&b| AUTHORITY_BYTES[usize::from(b)]) =>
        {
            Err(ProxyError::BadRequest("Host header is not host[:port]"))
        }
        _ => Ok(host),
    }
}

/// What a Host may hold (RFC 3986's reg-name, IP literal and port): letters, digits and
/// `-._~%!$&'()*+,;=:[]`; no `@`, `/`, `?`, `#`, space or control character. A table, as it
/// is read for each byte of every request's Host.
const AUTHORITY_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let more = b"-._~%!$&'()*+,;=:[]";
    let mut i = 0;
    while i < more.len() {
        table[more[i] as usize] = true;
        i += 1;
    }
    table
};

fn plain(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
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

/// Records how an attempt on endpoint `index` of the target's backend went in the endpoint's
/// health.
fn report(target: &Target, index: usize, sent: &Result<Response<upstream::Body>, Failed>) {
    let endpoints = &target.backend.endpoints;
    let Some(endpoint) = endpoints.get(index) else {
        return;
    };
    match sent {
        Ok(_) => {
            if endpoints.report_success(index) {
                server_up(target, endpoint.authority.as_str(), 1);
            }
        }
        // Only a failed connect says the endpoint is gone; a slow answer may be the request.
        Err(Failed {
            error: e @ ProxyError::Connect { source, .. },
            ..
        }) => {
            tracing::warn!(backend = &*target.backend.name, error = %e, "endpoint is backing off");
            endpoints.report_failure(index, balance::now());
            METRICS
                .service_connect_errors
                .with_label_values(&[&*target.backend.name, connect_error_kind(source)])
                .inc();
            server_up(target, endpoint.authority.as_str(), 0);
        }
        Err(_) => {}
    }
}

fn server_up(target: &Target, url: &str, up: i64) {
    METRICS
        .service_server_up
        .with_label_values(&[&*target.backend.name, url])
        .set(up);
}

/// `refused`, `timeout`, `dns` or `other`, from the I/O error under a connect failure.
fn connect_error_kind(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "refused",
        std::io::ErrorKind::TimedOut => "timeout",
        // The resolver's failures carry no kind of their own.
        _ if e.to_string().contains("lookup") => "dns",
        _ => "other",
    }
}

fn no_endpoint(target: &Target) -> ProxyError {
    ProxyError::NoEndpoint {
        backend: target.backend.name.clone(),
        why: "no endpoint to pick".into(),
    }
}

/// Splices an upgraded client connection to the upgraded backend connection until either ends.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
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
