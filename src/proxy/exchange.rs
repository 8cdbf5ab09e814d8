//! The exchange with the upstream: the request made ready to leave (forwarded headers, Host,
//! origin form, body limit), an endpoint picked, the request sent and, when it failed in a
//! way that allows it, sent again to another; each attempt reported to the endpoint's health.
//! A `101` answer splices the client's connection to the backend's.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::admit::Host;
use crate::balance::InFlight;
use crate::breaker::Metric;
use crate::clock;
use crate::error::ProxyError;
use crate::forwarded;
use crate::metrics::METRICS;
use crate::middleware::{Pass, content_type};
use crate::model::middleware::Retry;
use crate::model::{HostHeader, MirrorBody, Timeouts};
use crate::snapshot::{Fallback, Target};
use crate::upload::{Pace, Progress, Received};
use crate::upstream::{self, Failed, Outgoing, RequestBody, Upstream};

/// Where a request went: its endpoint, and how much of its body was sent.
#[derive(Default)]
pub(super) struct Sent {
    pub(super) endpoint: Option<http::uri::Authority>,
    pub(super) received: Option<Arc<Progress>>,
}

/// What an exchange works with, besides the request.
pub(super) struct Leg<'a> {
    pub(super) upstream: &'a Upstream,
    pub(super) target: &'a Target,
    /// What the middleware chain decided: the body limit and the retry policy.
    pub(super) pass: &'a Pass<'a>,
    pub(super) client: &'a forwarded::Client,
    /// How fast the client must send its body.
    pub(super) pace: Pace,
    /// When the request arrived.
    pub(super) started: Instant,
}

/// Sends `req` to an endpoint of the target's backend, and again to another while it may:
/// when no connection to its endpoint could be made (it never left, body and all), and under a
/// retry middleware, for a request without a body and with an idempotent method, also after
/// any failure before a response started. A body known to be larger than the chain allows is
/// refused first. Returns the backend's response, its hop-by-hop headers removed; `sent`
/// records where the request went.
///
/// One future from the request to the response: the request moves into the upstream
/// client's boxed exchange once, not through a future per step, each a copy of it.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would hold its arguments twice, the 264-byte request among them"
)]
pub(super) fn exchange<'a>(
    leg: Leg<'a>,
    mut req: Request<Incoming>,
    host: Host,
    sent: &'a mut Sent,
) -> impl Future<Output = Result<Response<upstream::Body>, ProxyError>> + 'a {
    async move {
        let Leg {
            upstream,
            target,
            pass,
            client,
            pace,
            started,
        } = leg;
        let limit = pass.body_limit;
        // A forwardAuth may have read the body whole already.
        let held = pass.body.as_deref();
        let declared =
            held.map_or_else(|| req.body().size_hint().lower(), |h| h.bytes.len() as u64);
        if limit > 0 && declared > limit {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        // HTTP/2 has no Upgrade; only an HTTP/1.1 client can switch protocols.
        let protocol = (req.version() == Version::HTTP_11)
            .then(|| forwarded::upgrade_protocol(req.headers()))
            .flatten();
        let upgrade = protocol.is_some().then(|| hyper::upgrade::on(&mut req));
        let bodyless = held.map_or_else(|| req.body().is_end_stream(), |h| h.bytes.is_empty());
        // Sticky sessions: the endpoint the client's cookie names, while it is up.
        let stuck: Option<Box<str>> = target
            .sticky
            .as_ref()
            .and_then(|s| s.value_in(req.headers()))
            .map(Into::into);
        sent.received = match held {
            Some(h) => Some(Arc::clone(&h.progress)),
            None => (!bodyless).then(Arc::default),
        };
        let body = match held {
            Some(h) => Outbound::Held(h.bytes.clone()),
            None => Outbound::Streamed(sent.received.clone(), pace, limit),
        };
        let mut request = outgoing(req, host, client, protocol, body);
        // ingress-nginx's `upstream-vhost`: the backend's Host, the client's still in
        // X-Forwarded-Host.
        if let HostHeader::Fixed(value) = &target.host_header {
            request.headers_mut().insert(header::HOST, value.clone());
        }
        let (retry, fails_over, mirrored) = resends(pass.retry, target, &request, bodyless);
        if !bodyless && upgrade.is_none() && (retry.is_some() || fails_over || mirrored) {
            // Boxed: rare, and its state would otherwise widen every request's future.
            request = Box::pin(upstream::hold_body(request, limit)).await?;
        }
        let backend = &target.backend;
        let endpoints = &backend.endpoints;
        let attempts = match retry {
            Some(r) => r.attempts.max(1),
            // A refused connection: the request never left, so it goes to another endpoint.
            None if endpoints.len() > 1 => 2,
            None => 1,
        };
        let now = clock::at(started);
        let (first, endpoint) = stuck
            .as_deref()
            .and_then(|value| endpoints.stuck(value, now))
            .or_else(|| {
                let chosen = endpoints.choose(target.balance, client.ip(), now, None);
                if target.ranked.is_empty() {
                    return chosen;
                }
                ranked(target, chosen?, client.ip(), now)
            })
            .and_then(|i| Some((i, endpoints.get(i)?)))
            .ok_or_else(|| no_endpoint(target))?;
        if !target.mirrors.is_empty() && upgrade.is_none() {
            mirror(
                upstream,
                target,
                &request,
                (endpoint.member, !bodyless),
                started,
            );
        }
        // A request the upstream client sends again after its pooled connection closed under it
        // counts as a retry, as one sent again here does.
        let resent = || {
            METRICS
                .service_retries
                .with_label_values(&[&*backend.name])
                .inc();
        };
        // The retry middleware may send again a request that reached its endpoint, and a
        // failover send it to its fallback after an error status: a copy is made before it
        // leaves (its head, and its body when held). A request that never left needs none,
        // since the upstream client gives it back. Boxed: the rare copy would otherwise widen
        // every request's future by a request.
        let spare = ((retry.is_some() && attempts > 1) || fails_over)
            .then(|| Box::new(upstream::copy(&request)));
        // Boxed, the 1.4 KB exchange is built once on the heap, rather than inside this
        // future and so inside the request's, which are copied whole each time they move.
        let progress = sent.received.as_deref();
        let timeouts = &target.timeouts;
        let to = |endpoint, started| {
            outgoing_to(endpoint, endpoints, started, progress, limit, timeouts)
        };
        let by_endpoint = target.host_header == HostHeader::Endpoint;
        if by_endpoint {
            endpoint_host(&mut request, endpoint);
        }
        // Boxed: held across the send, it would otherwise widen every request's future.
        let counted = target.balance.counts_in_flight();
        let flight = counted
            .then(|| Some(Box::new((endpoints.in_flight(first)?, Instant::now()))))
            .flatten();
        let mut result = Box::pin(upstream.send(request, to(endpoint, started), &resent)).await;
        hold(&mut result, flight);
        report(target, first, &result);
        let mut last = first;
        for attempt in 1..attempts {
            let late = retry
                .and_then(|r| r.timeout)
                .is_some_and(|t| started.elapsed() >= t);
            if late || !retryable(&result, retry, attempt) {
                break;
            }
            let now = Instant::now();
            let next =
                match endpoints.choose(target.balance, client.ip(), clock::at(now), Some(last)) {
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
            let mut again = match result
                .as_mut()
                .err()
                .and_then(|failed| failed.unsent.take())
            {
                Some(unsent) => *unsent,
                None => match &spare {
                    Some(spare) => upstream::copy(spare),
                    None => break,
                },
            };
            if by_endpoint {
                endpoint_host(&mut again, endpoint);
            }
            tracing::debug!(backend = &*backend.name, attempt, "retrying the request");
            resent();
            let flight = counted
                .then(|| Some(Box::new((endpoints.in_flight(next)?, now))))
                .flatten();
            result = Box::pin(upstream.send(again, to(endpoint, now), &resent)).await;
            hold(&mut result, flight);
            report(target, next, &result);
            last = next;
        }
        sent.endpoint = endpoints.get(last).map(|e| e.authority.clone());
        let mut response = result.map_err(|failed| failed.error)?;
        let mut fell_back = false;
        if let Some(spare) = &spare
            && let Some(fallback) = target.fallback.as_deref()
            && fallback.takes(response.status())
            && upgrade.is_none()
        {
            let again = upstream::copy(spare);
            if let Some((answer, endpoint)) =
                Box::pin(failover(upstream, fallback, again, started)).await
            {
                response = answer;
                sent.endpoint = Some(endpoint);
                fell_back = true;
            }
        }
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            let Some(client_upgrade) = upgrade else {
                return Err(ProxyError::UnaskedUpgrade {
                    endpoint: backend.name.to_string(),
                });
            };
            tokio::spawn(tunnel(client_upgrade, hyper::upgrade::on(&mut response)));
        }
        forwarded::response(response.headers_mut(), switching);
        if let Some(sticky) = &target.sticky
            && !fell_back
            && let Some(answered) = endpoints.get(last)
            && stuck.as_deref() != Some(&*answered.sticky)
            && let Ok(cookie) = HeaderValue::from_str(&sticky.set_cookie(&answered.sticky))
        {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        Ok(response)
    }
}

/// A `contentType` middleware's guess: a response without a `Content-Type`, whose status
/// allows a body, gets the type its first bytes say (its first frame, not waited on past it);
/// one with an empty body gets none, as from Traefik.
pub(super) async fn sniff(response: &mut Response<upstream::Body>) {
    let status = response.status();
    if response.headers().contains_key(header::CONTENT_TYPE)
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return;
    }
    let guessed = match response.body_mut().peek().await {
        Some(first) if !first.is_empty() => content_type::sniff(first),
        _ => return,
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(guessed));
}

/// The response with its body read whole, for a buffering middleware's `maxResponseBodyBytes`:
/// an error instead when the body is larger than `limit`, declared or sent. A switched
/// protocol's connection is passed on as it is. The body's trailers are not kept.
pub(super) async fn held(
    response: Response<upstream::Body>,
    limit: u64,
    backend: &str,
) -> Result<Response<super::ResponseBody>, ProxyError> {
    let too_large = || ProxyError::ResponseTooLarge {
        backend: backend.into(),
        limit,
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(response.map(Either::Left));
    }
    if response.body().size_hint().lower() > limit {
        return Err(too_large());
    }
    let (mut parts, body) = response.into_parts();
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let bytes = match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Err(match e.downcast::<hyper::Error>() {
                Ok(source) => ProxyError::Upstream {
                    endpoint: backend.to_owned(),
                    source: *source,
                },
                Err(_) => too_large(),
            });
        }
    };
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let body = Either::Right(Either::Left(http_body_util::Full::new(bytes)));
    Ok(Response::from_parts(parts, body))
}

/// Endpoint `chosen` of the target's backend, or when it is one of members a
/// highestRandomWeight ranks, the endpoint among them that ranks highest for `client`.
fn ranked(target: &Target, chosen: usize, client: std::net::IpAddr, now: u64) -> Option<usize> {
    let endpoints = &target.backend.endpoints;
    let member = endpoints.get(chosen)?.member;
    match target.ranked.iter().find(|r| r.contains(&member)) {
        Some(members) => endpoints.rendezvous(client, now, members).or(Some(chosen)),
        None => Some(chosen),
    }
}

/// What may send the request again: the retry middleware, for a method it retries, whether
/// a failover's fallback takes it after an error status, and whether a mirror copies its
/// body. One with a body goes again only when its declared length is within what they hold
/// ([`Retry::hold_body`], [`Fallback::hold_body`], [`Target::mirror_hold`]); the body is then
/// read whole first.
fn resends<'r>(
    retry: Option<&'r Retry>,
    target: &Target,
    request: &Request<RequestBody>,
    bodyless: bool,
) -> (Option<&'r Retry>, bool, bool) {
    let held = |limit: u64| {
        bodyless
            || request
                .body()
                .size_hint()
                .exact()
                .is_some_and(|n| limit > 0 && n <= limit)
    };
    let method = request.method();
    let retry =
        retry.filter(|r| (r.non_idempotent || upstream::idempotent(method)) && held(r.hold_body));
    let fails_over = target
        .fallback
        .as_deref()
        .is_some_and(|f| !f.statuses.is_empty() && held(f.hold_body));
    let mirrored = !bodyless && held(target.mirror_hold);
    (retry, fails_over, mirrored)
}

/// Whether a failed attempt, the `attempts`th, may be sent again: a refused connection always
/// (the request never left), a failure before a response started only under a retry
/// middleware that retries those, and a response only when its status is one the retry
/// middleware lists; under a `retryExpression`, what it says of the attempts and the status
/// (a failure's 502 or 504).
fn retryable(
    result: &Result<Response<upstream::Body>, Failed>,
    retry: Option<&Retry>,
    attempts: u32,
) -> bool {
    if let Some(condition) = retry.and_then(|r| r.condition.as_ref())
        && !matches!(
            result,
            Err(Failed {
                error: ProxyError::Connect { .. },
                ..
            })
        )
    {
        let status = match result {
            Ok(response) => response.status(),
            Err(failed) => failed.error.status(),
        };
        return condition.holds(&|metric| match metric {
            Metric::Attempts => f64::from(attempts),
            Metric::ResponseCode => f64::from(status.as_u16()),
            Metric::NetworkError => f64::from(u8::from(matches!(
                status,
                StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
            ))),
            _ => 0.0,
        });
    }
    match result {
        Err(Failed {
            error: ProxyError::Connect { .. },
            ..
        }) => true,
        Err(Failed {
            error: ProxyError::Upstream { .. } | ProxyError::Timeout { .. },
            ..
        }) => retry.is_some_and(|r| r.network),
        Ok(response) => retry.is_some_and(|r| r.retries_status(response.status())),
        _ => false,
    }
}

/// The body a request leaves with.
enum Outbound {
    /// Read whole already (by a forwardAuth that sent it to its server).
    Held(Bytes),
    /// Still coming from the client: counted in its progress, at the entry point's pace, and
    /// limited to so many bytes (0: unlimited).
    Streamed(Option<Arc<Progress>>, Pace, u64),
}

/// The request as it leaves for the upstream: forwarded headers set, the Host made the one
/// it was routed by, in origin form over HTTP/1.1, its body counted and limited.
fn outgoing(
    req: Request<Incoming>,
    host: Host,
    client: &forwarded::Client,
    upgrade: Option<http::HeaderValue>,
    outbound: Outbound,
) -> Request<RequestBody> {
    let (mut parts, body) = req.into_parts();
    forwarded::request(&mut parts.headers, client, host.value.as_ref(), upgrade);
    // hyper's client sends a GET or HEAD body of unknown length as none unless the framing is
    // set: such a body (chunked from the client) goes on as it came, never silently dropped.
    if matches!(parts.method, Method::GET | Method::HEAD)
        && !body.is_end_stream()
        && body.size_hint().exact().is_none()
    {
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    if let Some(h) = host
        .value
        .filter(|_| host.from_uri || !parts.headers.contains_key(header::HOST))
    {
        parts.headers.insert(header::HOST, h);
    }
    if parts.version == Version::HTTP_2 {
        forwarded::join_cookies(&mut parts.headers);
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
    let body = match outbound {
        Outbound::Held(bytes) => {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            Either::Right(Full::new(bytes))
        }
        Outbound::Streamed(received, pace, limit) => Either::Left(Limited::new(
            Received::new(body, received, pace),
            usize::try_from(limit)
                .ok()
                .filter(|l| *l > 0)
                .unwrap_or(usize::MAX),
        )),
    };
    Request::from_parts(parts, body)
}

/// Sends a copy of `request`, on its way to an endpoint of `member` of the target's backend,
/// to each mirror of that member whose share it falls in, without waiting: the answers are
/// read and dropped, and a mirror that fails fails alone. A request with a body goes with it
/// when it is held whole and within the mirror's `maxBodySize`, as its head alone under
/// `mirrorBody: false`, and not at all otherwise.
fn mirror(
    upstream: &Upstream,
    target: &Target,
    request: &Request<RequestBody>,
    (member, has_body): (u16, bool),
    started: Instant,
) {
    let held = match request.body() {
        Either::Right(held) => Some(held.size_hint().lower()),
        Either::Left(_) => None,
    };
    for m in &target.mirrors {
        if !m.copies(member, has_body, held) {
            continue;
        }
        let backend = &m.backend;
        let Some(endpoint) = backend
            .endpoints
            .pick(clock::at(started), None)
            .and_then(|i| backend.endpoints.get(i))
        else {
            continue;
        };
        let copy = match m.body {
            MirrorBody::UpTo(_) => upstream::copy(request),
            MirrorBody::Head => {
                let mut head = upstream::head_copy(request);
                head.headers_mut().remove(header::CONTENT_LENGTH);
                head.headers_mut().remove(header::TRANSFER_ENCODING);
                head
            }
        };
        let (upstream, endpoint) = (upstream.clone(), endpoint.authority.clone());
        let name = backend.name.clone();
        tokio::spawn(async move {
            let to = Outgoing {
                endpoint: &endpoint,
                key: &endpoint,
                tls: None,
                started,
                progress: None,
                body_limit: 0,
                timeouts: &Timeouts::NONE,
                // Mirrors are Services reached plainly (see translation's mirrors).
                http2: false,
            };
            match upstream.send(copy, to, &|| {}).await {
                Ok(response) => {
                    let mut body = std::pin::pin!(response.into_body());
                    while let Some(Ok(_)) =
                        std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await
                    {
                    }
                }
                Err(failed) => {
                    tracing::debug!(mirror = &*name, error = %failed.error, "mirror failed");
                }
            }
        });
    }
}

/// The page of the first `errors` middleware of `target` that answers `response`'s status,
/// asked for with the head of the client's request (`asked`), its path the middleware's
/// query (the original path for ingress-nginx's `custom-http-errors`); the client gets it
/// with the original (or rewritten) status. When the page cannot be had, the original answer
/// stands.
pub(super) async fn error_page(
    upstream: &Upstream,
    target: &Target,
    asked: Box<Request<RequestBody>>,
    response: Response<upstream::Body>,
    started: Instant,
) -> Response<upstream::Body> {
    let mut asked = *asked;
    let status = response.status().as_u16();
    let Some((pages, backend, answer)) =
        target.errors.iter().find_map(|(m, backend)| match &m.kind {
            crate::middleware::Kind::Errors(pages) => {
                Some((pages, backend, pages.answers(status)?))
            }
            _ => None,
        })
    else {
        return response;
    };
    let original = asked
        .uri()
        .path_and_query()
        .map_or("/", PathAndQuery::as_str)
        .to_owned();
    let path = match &pages.nginx {
        Some(_) => original.clone(),
        None => pages
            .query
            .replace("{status}", &answer.to_string())
            .replace("{originalStatus}", &status.to_string()),
    };
    let Ok(uri) = path.parse::<Uri>() else {
        return response;
    };
    *asked.uri_mut() = uri;
    *asked.method_mut() = Method::GET;
    asked.headers_mut().remove(header::CONTENT_LENGTH);
    asked.headers_mut().remove(header::TRANSFER_ENCODING);
    if let Some(nginx) = &pages.nginx {
        let format = asked
            .headers()
            .get(header::ACCEPT)
            .cloned()
            .unwrap_or(HeaderValue::from_static("text/html"));
        let headers = asked.headers_mut();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(header::HeaderName::from_static(name), v);
            }
        };
        set("x-code", &status.to_string());
        set("x-original-uri", &original);
        set("x-namespace", &nginx.namespace);
        set("x-ingress-name", &nginx.ingress);
        set("x-service-name", &nginx.service);
        set("x-service-port", &nginx.port);
        headers.insert(header::HeaderName::from_static("x-format"), format);
    }
    let endpoints = &backend.endpoints;
    let Some(endpoint) = endpoints
        .pick(clock::at(started), None)
        .and_then(|i| endpoints.get(i))
    else {
        return response;
    };
    let to = outgoing_to(
        endpoint,
        endpoints,
        Instant::now(),
        None,
        0,
        &Timeouts::NONE,
    );
    match Box::pin(upstream.send(asked, to, &|| {})).await {
        Ok(mut page) => {
            drop(response);
            *page.status_mut() = StatusCode::from_u16(answer).unwrap_or(StatusCode::BAD_GATEWAY);
            forwarded::response(page.headers_mut(), false);
            page
        }
        Err(failed) => {
            tracing::debug!(backend = &*backend.name, error = %failed.error, "error page not had; the original answer stands");
            response
        }
    }
}

/// A failover's fallback asked for what the main backend answered with an error status
/// (`request`: a copy of the request's head, as it went there): its answer and endpoint, or
/// `None` when it has no endpoint or fails, and the main's answer stands.
async fn failover(
    upstream: &Upstream,
    fallback: &Fallback,
    mut request: Request<RequestBody>,
    started: Instant,
) -> Option<(Response<upstream::Body>, Authority)> {
    let target = &fallback.target;
    let endpoints = &target.backend.endpoints;
    let index = endpoints.pick(clock::at(started), None)?;
    let endpoint = endpoints.get(index)?;
    if target.host_header == HostHeader::Endpoint {
        endpoint_host(&mut request, endpoint);
    }
    let to = outgoing_to(
        endpoint,
        endpoints,
        Instant::now(),
        None,
        0,
        &target.timeouts,
    );
    let sent = Box::pin(upstream.send(request, to, &|| {})).await;
    report(target, index, &sent);
    match sent {
        Ok(answer) => Some((answer, endpoint.authority.clone())),
        Err(failed) => {
            tracing::debug!(backend = &*target.backend.name, error = %failed.error, "failover: the fallback failed too; the main answer stands");
            None
        }
    }
}

/// Where an attempt goes: `endpoint`, as its `set` is spoken to, under the route's `timeouts`.
fn outgoing_to<'a>(
    endpoint: &'a crate::balance::Endpoint,
    set: &'a crate::balance::EndpointSet,
    started: Instant,
    progress: Option<&'a Progress>,
    body_limit: u64,
    timeouts: &'a Timeouts,
) -> Outgoing<'a> {
    Outgoing {
        endpoint: &endpoint.authority,
        key: &endpoint.pool_key,
        tls: set.tls.as_ref(),
        started,
        progress,
        body_limit,
        timeouts,
        http2: set.http2,
    }
}

/// `passHostHeader: false`: the endpoint's address is the request's `Host`.
fn endpoint_host<B>(request: &mut Request<B>, endpoint: &crate::balance::Endpoint) {
    if let Ok(value) = HeaderValue::from_str(endpoint.authority.as_str()) {
        request.headers_mut().insert(header::HOST, value);
    }
}

/// Keeps an answered attempt counted in flight to its endpoint until its body ends, and
/// records its time to the response head, for the strategies that read them.
fn hold(
    result: &mut Result<Response<upstream::Body>, Failed>,
    flight: Option<Box<(InFlight, Instant)>>,
) {
    if let (Ok(response), Some(flight)) = (result, flight) {
        let (flight, since) = *flight;
        flight.answered(since);
        response.body_mut().hold(flight);
    }
}

/// Tells the balancer how an attempt on endpoint `index` went.
fn report(target: &Target, index: usize, sent: &Result<Response<upstream::Body>, Failed>) {
    let outcome = sent.as_ref().map(|_| ()).map_err(|failed| &failed.error);
    target
        .backend
        .endpoints
        .report(&target.backend.name, index, outcome);
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
