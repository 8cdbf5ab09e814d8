//! Middlewares: compiled once per snapshot into a chain per route and run on the request
//! before it is forwarded (any may answer it instead) and on the response on its way back.
//!
//! A chain is a slice of enum values, not a stack of boxed services: a route without middleware
//! pays nothing, and one with middleware allocates nothing to run it.

mod client_cert;
pub mod compress;
pub mod content_type;
mod digest;
pub mod forward_auth;
mod grpc_web;
pub mod headers;
pub mod rate_limit;
mod uri;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;

use crate::body::{self, ResponseBody};
use crate::breaker::Breaker;
use crate::error::ProxyError;
use crate::htpasswd;
use crate::metrics::METRICS;
use crate::model::middleware::{self as model, CompressSpec, Retry};
use crate::upload::{Pace, Received, client_body_error};
use compress::Encoding;
use forward_auth::ForwardAuth;
use rate_limit::{InFlight, InFlightGuard, RateLimiter};

static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
static X_REPLACED_PATH: HeaderName = HeaderName::from_static("x-replaced-path");

/// A middleware of a snapshot: its description, with the running state of a limit.
#[derive(Debug)]
pub struct Middleware {
    /// `namespace/name`.
    pub name: Box<str>,
    /// What it does, with its state.
    pub kind: Kind,
}

/// What a running middleware does; a limit holds its buckets or counters, a forward auth its
/// client, a circuit breaker its window.
pub type Kind = model::Kind<Arc<RateLimiter>, Arc<InFlight>, Arc<ForwardAuth>, Mutex<Breaker>>;

impl Middleware {
    /// A running instance of `described`, with fresh state.
    pub fn new(described: &model::Middleware) -> Self {
        Self {
            name: described.name.clone(),
            kind: described.kind.with_state(
                |spec| RateLimiter::new(spec.clone(), &described.name),
                |spec| InFlight::new(spec.clone()),
                |spec| ForwardAuth::new(spec.clone()),
                |settings| Mutex::new(Breaker::new(settings.clone(), Instant::now())),
            ),
        }
    }

    /// Whether this instance runs `described` and holds state a reload must keep (buckets,
    /// counters). Only such are carried over; the others may depend on objects besides their
    /// spec (basicAuth's Secret), so the new description is the one to use.
    pub fn keeps(&self, described: &model::Middleware) -> bool {
        self.name == described.name
            && match (&self.kind, &described.kind) {
                (Kind::RateLimit(running), model::Kind::RateLimit(spec)) => running.spec == *spec,
                (Kind::InFlight(running), model::Kind::InFlight(spec)) => running.spec == *spec,
                (Kind::CircuitBreaker(running), model::Kind::CircuitBreaker(settings)) => {
                    lock(running).settings() == &**settings
                }
                _ => false,
            }
    }
}

/// What a middleware sees of the connection.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The peer's address.
    pub peer: IpAddr,
    /// Whether the peer's `X-Forwarded-*` headers are trusted (`forwardedHeaders.trustedIPs`).
    pub trusted: bool,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The Host header or authority, as sent.
    pub host: &'a str,
    /// The certificates the client presented in its TLS handshake, its own first.
    pub certificates: &'a [rustls::pki_types::CertificateDer<'static>],
    /// How fast the client must send its body (for one a forwardAuth reads).
    pub(crate) pace: Pace,
}

/// Why the chain stopped: an error, or an answer of its own (a redirect, a CORS preflight).
pub enum Stop {
    /// A refusal.
    Error(ProxyError),
    /// A response of the middleware's own.
    Reply(Box<Response<Full<Bytes>>>),
}

impl Stop {
    /// The status the client gets.
    fn status(&self) -> StatusCode {
        match self {
            Stop::Error(e) => e.status(),
            Stop::Reply(reply) => reply.status(),
        }
    }
}

impl From<ProxyError> for Stop {
    fn from(e: ProxyError) -> Self {
        Stop::Error(e)
    }
}

/// Where a chain stands on a request: through, or stopped to wait at a middleware.
pub enum Progress<'c> {
    /// Every middleware let the request through.
    Done(Pass<'c>),
    /// The middleware at this index must wait: finish with [`Chain::resume`].
    Waits(Pass<'c>, usize),
}

/// What one middleware did without waiting.
enum Step {
    Done,
    /// It must wait (Redis, an authentication server): [`Middleware::wait`] does it.
    Wait,
}

/// A route's middlewares, in order. A route without any pays nothing; one with some
/// allocates nothing to run them (but a `Vec` for in-flight slots, when one is taken).
#[derive(Debug, Default)]
pub struct Chain(Box<[Arc<Middleware>]>);

/// What the chain decided on the request for the rest of the exchange: how large a body may
/// be, whether to retry, and what to do on the response. In-flight slots are held until it is
/// dropped, once the response head is sent.
#[derive(Debug)]
pub struct Pass<'c> {
    /// Largest request body in bytes; 0 is unlimited.
    pub body_limit: u64,
    /// Largest response body in bytes, the response held whole to be measured; 0 is
    /// unlimited and streamed.
    pub response_limit: u64,
    /// A response without a `Content-Type` gets one guessed from its first bytes.
    pub sniff: bool,
    /// How to retry a failed request, when a retry middleware says.
    pub retry: Option<&'c Retry>,
    held: Vec<Held<'c>>,
    /// The request's `Origin`, for CORS.
    origin: Option<HeaderValue>,
    /// Compression to apply, and whether the request was a HEAD.
    compression: Option<(&'c CompressSpec, Encoding, bool)>,
    /// A gRPC-Web call's answer is written back as gRPC-Web.
    grpc_web: Option<grpc_web::Mode>,
    /// Cookies forward auths set on the response, each with the names it replaces.
    auth_cookies: Vec<(&'c [String], Vec<HeaderValue>)>,
    /// The request body, read whole for a forwardAuth that sent it to its server: the
    /// request goes on with it.
    pub body: Option<Box<HeldBody>>,
}

/// A request body read whole from the client, and how it came.
#[derive(Debug)]
pub struct HeldBody {
    /// The body.
    pub bytes: Bytes,
    /// Its reading, as the exchange reports a body it sends.
    pub(crate) progress: Arc<crate::upload::Progress>,
}

/// What a request holds until its response head: an in-flight slot, or a circuit breaker's
/// watch on what comes back.
#[derive(Debug)]
enum Held<'c> {
    Slot(#[expect(dead_code, reason = "held for its drop, which frees the slot")] InFlightGuard),
    /// The breaker, and when the request went through it.
    Watch(&'c Mutex<Breaker>, Instant),
}

impl Pass<'_> {
    /// Tells the circuit breakers the request went through what came back: `status`, from the
    /// backend or whatever answered after them.
    pub fn outcome(&self, status: StatusCode) {
        for held in &self.held {
            if let Held::Watch(breaker, since) = held {
                let now = Instant::now();
                lock(breaker).record(now, status.as_u16(), now.saturating_duration_since(*since));
            }
        }
    }
}

/// A breaker's lock: its state stays consistent whatever panicked while holding it.
fn lock(breaker: &Mutex<Breaker>) -> MutexGuard<'_, Breaker> {
    breaker.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FromIterator<Arc<Middleware>> for Chain {
    fn from_iter<I: IntoIterator<Item = Arc<Middleware>>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Chain {
    /// The middlewares, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Middleware>> {
        self.0.iter()
    }

    /// Whether the route has no middleware.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs the middlewares on the request, in order; any may answer it instead. `body_limit`
    /// is the entry point's (0 unlimited); a buffering middleware may lower it. Runs without
    /// waiting until a middleware must (a rate limit on Redis, a forward auth): then the rest
    /// is for [`Self::resume`], so a chain that never waits costs no future.
    pub fn on_request<B>(
        &self,
        req: &mut Request<B>,
        ctx: &Ctx<'_>,
        body_limit: u64,
    ) -> Result<Progress<'_>, Stop> {
        let pass = Pass {
            body_limit,
            response_limit: 0,
            sniff: false,
            retry: None,
            held: Vec::new(),
            origin: None,
            compression: None,
            grpc_web: None,
            auth_cookies: Vec::new(),
            body: None,
        };
        if self.0.is_empty() {
            return Ok(Progress::Done(pass));
        }
        self.run(req, ctx, pass, 0)
    }

    /// Finishes a chain that stopped to wait at middleware `at`: that one, then the rest.
    pub async fn resume<'c>(
        &'c self,
        req: &mut Request<Incoming>,
        ctx: &Ctx<'_>,
        mut pass: Pass<'c>,
        mut at: usize,
    ) -> Result<Pass<'c>, Stop> {
        while let Some(m) = self.0.get(at) {
            if let Err(stop) = m.wait(req, ctx, &mut pass).await {
                pass.outcome(stop.status());
                return Err(refused(m, stop));
            }
            match self.run(req, ctx, pass, at + 1)? {
                Progress::Done(done) => return Ok(done),
                Progress::Waits(waiting, next) => (pass, at) = (waiting, next),
            }
        }
        Ok(pass)
    }

    /// Runs the middlewares from `from` on, until one must wait.
    fn run<'c, B>(
        &'c self,
        req: &mut Request<B>,
        ctx: &Ctx<'_>,
        mut pass: Pass<'c>,
        from: usize,
    ) -> Result<Progress<'c>, Stop> {
        for (i, m) in self.0.iter().enumerate().skip(from) {
            match m.on_request(req, ctx, &mut pass) {
                Ok(Step::Done) => {}
                Ok(Step::Wait) => return Ok(Progress::Waits(pass, i)),
                Err(stop) => {
                    pass.outcome(stop.status());
                    return Err(refused(m, stop));
                }
            }
            match &m.kind {
                Kind::Buffering {
                    request,
                    response,
                    retry,
                } => {
                    pass.body_limit = tighter(pass.body_limit, *request);
                    pass.response_limit = tighter(pass.response_limit, *response);
                    if let Some(r) = retry {
                        pass.retry.get_or_insert(r);
                    }
                }
                Kind::Retry(r) => {
                    pass.retry.get_or_insert(r);
                }
                Kind::ContentType => pass.sniff = true,
                _ => {}
            }
        }
        pass.origin = req.headers().get(header::ORIGIN).cloned();
        let compress = self.0.iter().find_map(|m| match &m.kind {
            Kind::Compress(c) => Some(c),
            _ => None,
        });
        if let Some(spec) = compress {
            let encoding = spec.negotiate(req.headers().get(header::ACCEPT_ENCODING));
            pass.compression = encoding.map(|e| (spec, e, req.method() == Method::HEAD));
        }
        Ok(Progress::Done(pass))
    }

    /// Runs every middleware on the response, in reverse order, and releases what the request
    /// held. A switched protocol (`101`) is never compressed.
    pub fn on_response<U>(
        &self,
        pass: Pass<'_>,
        mut response: Response<ResponseBody<U>>,
    ) -> Response<ResponseBody<U>>
    where
        U: http_body::Body<Data = Bytes> + Send + 'static,
        U::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        pass.outcome(response.status());
        for m in self.0.iter().rev() {
            if let Kind::Headers(spec) = &m.kind {
                spec.on_response(response.headers_mut(), pass.origin.as_ref());
            }
        }
        for (names, cookies) in pass.auth_cookies {
            set_cookies(response.headers_mut(), names, cookies);
        }
        if let Some(mode) = pass.grpc_web {
            response = grpc_web::on_response(mode, pass.origin.as_ref(), response);
        }
        drop(pass.held);
        match pass.compression {
            Some((spec, encoding, head))
                if response.status() != StatusCode::SWITCHING_PROTOCOLS =>
            {
                spec.apply(encoding, head, response)
            }
            _ => response,
        }
    }
}

/// The tighter of two limits, 0 being none.
fn tighter(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, l) | (l, 0) => l,
        (a, b) => a.min(b),
    }
}

/// Whether the peer is in a limit's exempt ranges.
fn exempt(ranges: &[ipnet::IpNet], ctx: &Ctx<'_>) -> bool {
    !ranges.is_empty() && ranges.iter().any(|r| r.contains(&ctx.peer.to_canonical()))
}

/// Counts `m`'s refusal in `fjord_middleware_rejections_total`, and passes it on.
fn refused(m: &Middleware, stop: Stop) -> Stop {
    let reason = match (&stop, &m.kind) {
        (Stop::Error(e), _) => Some(rejection(e)),
        (Stop::Reply(_), Kind::ForwardAuth(_)) => Some("forward_auth"),
        (Stop::Reply(_), Kind::DigestAuth { .. }) => Some("unauthorized"),
        (Stop::Reply(_), _) => None,
    };
    if let Some(reason) = reason {
        METRICS
            .middleware_rejections
            .with_label_values(&[&*m.name, reason])
            .inc();
    }
    stop
}

/// What the backend gets of an authenticated request: the user's name in `field`, and no
/// `Authorization` when the middleware removes it.
fn authenticated(headers: &mut HeaderMap, user: &str, field: Option<&HeaderName>, remove: bool) {
    if let Some(field) = field {
        match HeaderValue::from_str(user) {
            Ok(user) => headers.insert(field.clone(), user),
            // A name that is no header value is not passed on as another's.
            Err(_) => headers.remove(field),
        };
    }
    if remove {
        headers.remove(header::AUTHORIZATION);
    }
}

/// Replaces the response's cookies named in `names` with a forward auth's `cookies`.
fn set_cookies(headers: &mut HeaderMap, names: &[String], cookies: Vec<HeaderValue>) {
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            let name = v
                .to_str()
                .ok()
                .and_then(|t| t.split(';').next()?.split('=').next())
                .map(str::trim);
            !name.is_some_and(|n| names.iter().any(|c| c == n))
        })
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in kept.into_iter().chain(cookies) {
        headers.append(header::SET_COOKIE, value);
    }
}

/// The `reason` label of a middleware's refusal.
fn rejection(e: &ProxyError) -> &'static str {
    match e {
        ProxyError::RateLimited { .. } => "rate_limit",
        ProxyError::TooManyInFlight { .. } => "in_flight",
        ProxyError::Unauthorized { .. } | ProxyError::AuthBodyTooLarge { .. } => "unauthorized",
        ProxyError::ClientBodyTimeout | ProxyError::MalformedBody => "client_body",
        ProxyError::AuthServer { .. } => "auth_server",
        ProxyError::CircuitOpen { .. } => "circuit_open",
        _ => "forbidden",
    }
}

impl Middleware {
    /// The part of [`Self::on_request`] that waits: a rate limit on Redis asks it, a forward
    /// auth its server.
    async fn wait<'c>(
        &'c self,
        req: &mut Request<Incoming>,
        ctx: &Ctx<'_>,
        pass: &mut Pass<'c>,
    ) -> Result<(), Stop> {
        match &self.kind {
            Kind::RateLimit(limiter) => {
                let key = limiter
                    .spec
                    .source
                    .key(ctx.peer, ctx.trusted, ctx.host, req.headers());
                let verdict = limiter.admit(key, &self.name).await;
                verdict.map_err(|limited| self.limited(limiter, limited))
            }
            Kind::ForwardAuth(auth) => {
                let body = match auth.spec.forward_body {
                    Some(limit) => self.hold_body(req, ctx, pass, limit).await?,
                    None => None,
                };
                let allowed = auth.check(req, ctx, &self.name, body).await?;
                if !allowed.cookies.is_empty() {
                    pass.auth_cookies
                        .push((&auth.spec.add_cookies, allowed.cookies));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The request's body for a forwardAuth that sends it, at most `limit` bytes (a longer
    /// one is refused): read whole from the client once, under the entry point's pace, for
    /// every such forwardAuth of the chain and the backend. None for a request without one.
    async fn hold_body(
        &self,
        req: &mut Request<Incoming>,
        ctx: &Ctx<'_>,
        pass: &mut Pass<'_>,
        limit: u64,
    ) -> Result<Option<Bytes>, Stop> {
        let too_large = || ProxyError::AuthBodyTooLarge {
            middleware: self.name.clone(),
            limit,
        };
        if let Some(held) = &pass.body {
            return match held.bytes.len() as u64 <= limit {
                true => Ok(Some(held.bytes.clone())),
                false => Err(too_large().into()),
            };
        }
        if req.body().is_end_stream() {
            // Nothing to send, nor to hold: the request goes on as it came.
            return Ok(None);
        }
        if req.body().size_hint().lower() > limit {
            return Err(too_large().into());
        }
        let progress = Arc::<crate::upload::Progress>::default();
        let received = Received::new(req.body_mut(), Some(Arc::clone(&progress)), ctx.pace);
        let cap = usize::try_from(limit).unwrap_or(usize::MAX);
        let bytes = match Limited::new(received, cap).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return Err(match client_body_error(&*e, limit) {
                    Some(ProxyError::BodyTooLarge { .. }) => too_large(),
                    other => other.unwrap_or(ProxyError::MalformedBody),
                }
                .into());
            }
        };
        pass.body = Some(Box::new(HeldBody {
            bytes: bytes.clone(),
            progress,
        }));
        Ok(Some(bytes))
    }

    /// A rate limit's refusal.
    fn limited(&self, limiter: &RateLimiter, limited: rate_limit::Limited) -> Stop {
        ProxyError::RateLimited {
            middleware: self.name.clone(),
            retry_after: limited.retry_after,
            quota: limiter.spec.average,
            window: limiter.spec.period,
        }
        .into()
    }

    /// Runs on the request, or says it must [`Self::wait`]. In-flight slots taken are held
    /// by `pass`, released when the request is done.
    fn on_request<'c, B>(
        &'c self,
        req: &mut Request<B>,
        ctx: &Ctx<'_>,
        pass: &mut Pass<'c>,
    ) -> Result<Step, Stop> {
        match &self.kind {
            Kind::RateLimit(limiter) if exempt(&limiter.spec.exempt, ctx) => {}
            Kind::InFlight(limiter) if exempt(&limiter.spec.exempt, ctx) => {}
            Kind::RateLimit(limiter) if limiter.is_shared() => return Ok(Step::Wait),
            Kind::ForwardAuth(_) => return Ok(Step::Wait),
            Kind::RateLimit(limiter) => {
                let key = limiter
                    .spec
                    .source
                    .key(ctx.peer, ctx.trusted, ctx.host, req.headers());
                if let Err(limited) = limiter.admit_now(key) {
                    return Err(self.limited(limiter, limited));
                }
            }
            Kind::InFlight(limiter) => {
                let key = limiter
                    .spec
                    .source
                    .key(ctx.peer, ctx.trusted, ctx.host, req.headers());
                match limiter.acquire(key) {
                    Some(guard) => pass.held.push(Held::Slot(guard)),
                    None => {
                        return Err(ProxyError::TooManyInFlight {
                            middleware: self.name.clone(),
                        }
                        .into());
                    }
                }
            }
            Kind::Headers(spec) => {
                if let Some((status, headers)) = spec.preflight(req.method(), req.headers()) {
                    let mut reply = body::empty(status);
                    reply.headers_mut().extend(headers);
                    return Err(Stop::Reply(Box::new(reply)));
                }
                spec.on_request(req.headers_mut());
            }
            Kind::RedirectScheme {
                scheme,
                port,
                permanent,
            } => {
                let current = if ctx.tls { "https" } else { "http" };
                if current != &**scheme {
                    let to = location(scheme, ctx.host, port.as_deref(), req.uri());
                    return Err(redirect(&to, *permanent, req.method()));
                }
            }
            Kind::RedirectRegex {
                regex,
                replacement,
                permanent,
            } => {
                let scheme = if ctx.tls { "https" } else { "http" };
                let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
                let url = format!("{scheme}://{}{path}", ctx.host);
                if regex.is_match(&url) {
                    let location = regex.replace(&url, replacement.as_str());
                    return Err(redirect(&location, *permanent, req.method()));
                }
            }
            Kind::StripPrefix(prefixes) => {
                let path = req.uri().path();
                if let Some(prefix) = prefixes.iter().find(|p| path.starts_with(p.as_str())) {
                    strip(req, prefix.len());
                }
            }
            Kind::StripPrefixRegex(regexes) => {
                let path = req.uri().path();
                if let Some(end) = regexes
                    .iter()
                    .find_map(|r| r.find(path).filter(|m| m.start() == 0))
                    .map(|m| m.end())
                {
                    strip(req, end);
                }
            }
            Kind::AddPrefix(prefix) => {
                let new = format!("{}{}", prefix.trim_end_matches('/'), req.uri().path());
                set_path(req, &new);
            }
            Kind::ReplacePath(path) => {
                let original = req.uri().path().to_owned();
                set_header(req.headers_mut(), &X_REPLACED_PATH, &original);
                set_path(req, path);
            }
            Kind::ReplacePathRegex(regex, replacement) => {
                let original = req.uri().path().to_owned();
                if regex.is_match(&original) {
                    let new = regex.replace(&original, replacement.as_str()).into_owned();
                    set_header(req.headers_mut(), &X_REPLACED_PATH, &original);
                    set_path(req, &new);
                }
            }
            Kind::BasicAuth {
                users,
                realm,
                remove_header,
                header_field,
            } => {
                let given = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .map(HeaderValue::as_bytes);
                let Some(user) = given.and_then(|g| htpasswd::check(users, g)) else {
                    return Err(ProxyError::Unauthorized {
                        realm: realm.as_str().into(),
                    }
                    .into());
                };
                authenticated(
                    req.headers_mut(),
                    user,
                    header_field.as_ref(),
                    *remove_header,
                );
            }
            Kind::DigestAuth {
                digest,
                remove_header,
                header_field,
            } => {
                let user = digest::check(digest, req)?;
                authenticated(
                    req.headers_mut(),
                    user,
                    header_field.as_ref(),
                    *remove_header,
                );
            }
            Kind::IpDenyList { ranges, strategy } => {
                let ip = strategy.client_ip(ctx.peer, ctx.trusted, req.headers());
                if ip.is_some_and(|ip| ranges.iter().any(|r| r.contains(&ip.to_canonical()))) {
                    return Err(ProxyError::Forbidden {
                        middleware: self.name.clone(),
                    }
                    .into());
                }
            }
            Kind::IpAllowList { ranges, strategy } => {
                let ip = strategy.client_ip(ctx.peer, ctx.trusted, req.headers());
                if !ip.is_some_and(|ip| ranges.iter().any(|r| r.contains(&ip.to_canonical()))) {
                    return Err(ProxyError::Forbidden {
                        middleware: self.name.clone(),
                    }
                    .into());
                }
            }
            Kind::EncodedCharacters(denied) => {
                if uri::encoded_refused(req.uri().path(), denied) {
                    return Err(ProxyError::BadRequest(
                        "the path holds a percent-encoded character its route refuses",
                    )
                    .into());
                }
            }
            Kind::RedirectTrailingSlash { add, permanent } => {
                if let Some(path) = uri::trailing_slash(req.uri().path(), *add) {
                    let scheme = if ctx.tls { "https" } else { "http" };
                    let query = req.uri().query().map(|q| format!("?{q}"));
                    let to = format!("{scheme}://{}{path}{}", ctx.host, query.unwrap_or_default());
                    return Err(redirect(&to, *permanent, req.method()));
                }
            }
            Kind::CircuitBreaker(breaker) => {
                let now = Instant::now();
                let mut breaker_state = lock(breaker);
                if !breaker_state.admit(now) {
                    return Err(ProxyError::CircuitOpen {
                        middleware: self.name.clone(),
                        status: breaker_state.settings().response_code,
                    }
                    .into());
                }
                drop(breaker_state);
                pass.held.push(Held::Watch(breaker, now));
            }
            Kind::GrpcWeb(spec) => {
                let mode = grpc_web::on_request(spec, &self.name, req)?;
                pass.grpc_web = pass.grpc_web.or(mode);
            }
            Kind::PassTlsClientCert(spec) => {
                client_cert::pass(spec, ctx.certificates, req.headers_mut());
            }
            Kind::QueryParameters(q) => {
                let query = uri::rewrite_query(req.uri().query().unwrap_or_default(), q);
                let path = req.uri().path().to_owned();
                set_path_and_query(req, &path, (!query.is_empty()).then_some(&query));
            }
            // Settings of the exchange, gathered by the chain into its `Pass` (or by the
            // snapshot into its target, for error pages).
            Kind::Buffering { .. }
            | Kind::Retry(_)
            | Kind::ContentType
            | Kind::Compress(_)
            | Kind::Errors(_) => {}
        }
        Ok(Step::Done)
    }
}

/// Removes the first `len` bytes of the path, telling the backend with `X-Forwarded-Prefix`.
fn strip<B>(req: &mut Request<B>, len: usize) {
    let path = req.uri().path().to_owned();
    let (prefix, rest) = path.split_at(len.min(path.len()));
    let new = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    };
    set_header(
        req.headers_mut(),
        &X_FORWARDED_PREFIX,
        prefix.trim_end_matches('/'),
    );
    set_path(req, &new);
}

fn set_path<B>(req: &mut Request<B>, path: &str) {
    let query = req.uri().query().map(str::to_owned);
    set_path_and_query(req, path, query.as_ref());
}

fn set_path_and_query<B>(req: &mut Request<B>, path: &str, query: Option<&String>) {
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = PathAndQuery::try_from(pq) {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

fn set_header(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), v);
    }
}

/// `scheme://host[:port]/path?query`: where a request for `host` (normalized: lowercase, its
/// own port dropped) and `uri` goes on another scheme.
pub fn location(scheme: &str, host: &str, port: Option<&str>, uri: &Uri) -> String {
    let host = crate::router::normalize_host(host);
    let path = uri.path_and_query().map_or("/", PathAndQuery::as_str);
    match port {
        Some(port) => format!("{scheme}://{host}:{port}{path}"),
        None => format!("{scheme}://{host}{path}"),
    }
}

/// 301/302 for GET and HEAD, 308/307 for other methods (which must keep their body).
fn redirect(location: &str, permanent: bool, method: &Method) -> Stop {
    let safe = method == Method::GET || method == Method::HEAD;
    let status = match (permanent, safe) {
        (true, true) => StatusCode::MOVED_PERMANENTLY,
        (true, false) => StatusCode::PERMANENT_REDIRECT,
        (false, true) => StatusCode::FOUND,
        (false, false) => StatusCode::TEMPORARY_REDIRECT,
    };
    let mut r = body::empty(status);
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Stop::Reply(Box::new(r))
}
