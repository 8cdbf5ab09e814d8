//! Middlewares: compiled once per snapshot into a chain per route and run on the request
//! before it is forwarded (any may answer it instead) and on the response on its way back.
//!
//! A chain is a slice of enum values, not a stack of boxed services: a route without middleware
//! pays nothing, and one with middleware allocates nothing to run it.

pub mod basic_auth;
pub mod compress;
pub mod headers;
pub mod rate_limit;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode};
use ipnet::IpNet;
use regex::Regex;

use crate::crd;
use crate::error::ProxyError;
use crate::proxy::{ResponseBody, full};
use basic_auth::User;
use headers::HeadersSpec;
use rate_limit::{InFlight, InFlightGuard, IpStrategy, RateLimiter};

static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
static X_REPLACED_PATH: HeaderName = HeaderName::from_static("x-replaced-path");

/// A compiled middleware.
#[derive(Debug)]
pub struct Middleware {
    /// `namespace/name`.
    pub name: Box<str>,
    /// What it was compiled from: a reload keeps the running instance (and its state) while
    /// this is unchanged.
    pub source: crd::MiddlewareSpec,
    pub kind: Kind,
}

impl Middleware {
    /// Whether it holds state a reload must keep (buckets, counters). Only those are carried
    /// over; the others also depend on objects besides their spec (basicAuth's Secret), so
    /// the new compile is the one to use.
    pub fn has_state(&self) -> bool {
        matches!(self.kind, Kind::RateLimit(_) | Kind::InFlight(_))
    }
}

#[derive(Debug)]
pub enum Kind {
    RateLimit(Arc<RateLimiter>),
    InFlight(Arc<InFlight>),
    Headers(Box<HeadersSpec>),
    RedirectScheme {
        scheme: Box<str>,
        port: Option<Box<str>>,
        permanent: bool,
    },
    RedirectRegex {
        regex: Regex,
        replacement: String,
        permanent: bool,
    },
    StripPrefix(Vec<String>),
    StripPrefixRegex(Vec<Regex>),
    AddPrefix(String),
    ReplacePath(String),
    ReplacePathRegex(Regex, String),
    BasicAuth {
        users: Vec<User>,
        realm: String,
        remove_header: bool,
    },
    IpAllowList {
        ranges: Vec<IpNet>,
        strategy: IpStrategy,
    },
    /// Largest request body in bytes (413 past it).
    Buffering(u64),
    Retry(Retry),
    Compress(compress::CompressSpec),
}

/// How a failed request is sent again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubles for each further one.
    pub interval: Duration,
}

/// What a middleware sees of the connection.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub peer: IpAddr,
    pub tls: bool,
    /// The Host header or authority, as sent.
    pub host: &'a str,
}

/// Why the chain stopped: an error, or an answer of its own (a redirect, a CORS preflight).
pub enum Stop {
    Error(ProxyError),
    Reply(Box<Response<ResponseBody>>),
}

impl From<ProxyError> for Stop {
    fn from(e: ProxyError) -> Self {
        Stop::Error(e)
    }
}

impl Middleware {
    /// Runs on the request. In-flight slots taken are pushed on `held`, released when the
    /// request is done.
    pub fn on_request<B>(
        &self,
        req: &mut Request<B>,
        ctx: &Ctx<'_>,
        held: &mut Vec<InFlightGuard>,
    ) -> Result<(), Stop> {
        match &self.kind {
            Kind::RateLimit(limiter) => {
                let key = limiter.spec.source.key(ctx.peer, ctx.host, req.headers());
                if let Err(limited) = limiter.check(key, rate_limit::now()) {
                    return Err(ProxyError::RateLimited {
                        middleware: self.name.clone(),
                        retry_after: limited.retry_after,
                        quota: limiter.spec.average,
                        window: limiter.spec.period,
                    }
                    .into());
                }
            }
            Kind::InFlight(limiter) => {
                let key = limiter.source.key(ctx.peer, ctx.host, req.headers());
                match limiter.acquire(key) {
                    Some(guard) => held.push(guard),
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
                    let mut reply = empty(status);
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
                    let host = crate::router::normalize_host(ctx.host);
                    let port = port.as_deref().map(|p| format!(":{p}")).unwrap_or_default();
                    let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
                    return Err(redirect(
                        &format!("{scheme}://{host}{port}{path}"),
                        *permanent,
                        req.method(),
                    ));
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
            } => {
                let given = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .map(HeaderValue::as_bytes);
                if given.and_then(|g| basic_auth::check(users, g)).is_none() {
                    return Err(ProxyError::Unauthorized {
                        realm: realm.as_str().into(),
                    }
                    .into());
                }
                if *remove_header {
                    req.headers_mut().remove(header::AUTHORIZATION);
                }
            }
            Kind::IpAllowList { ranges, strategy } => {
                let ip = strategy.client_ip(ctx.peer, req.headers()).to_canonical();
                if !ranges.iter().any(|r| r.contains(&ip)) {
                    return Err(ProxyError::Forbidden {
                        middleware: self.name.clone(),
                    }
                    .into());
                }
            }
            // Applied by the proxy as it forwards, through `body_limit` and `retry`.
            Kind::Buffering(_) | Kind::Retry(_) | Kind::Compress(_) => {}
        }
        Ok(())
    }

    /// Runs on the response; `origin` is the request's `Origin` header (for CORS).
    pub fn on_response(&self, headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
        if let Kind::Headers(spec) = &self.kind {
            spec.on_response(headers, origin);
        }
    }

    /// The compression this middleware asks for, if any.
    pub fn compress(&self) -> Option<&compress::CompressSpec> {
        match &self.kind {
            Kind::Compress(c) => Some(c),
            _ => None,
        }
    }

    /// The retry policy this middleware sets, if any.
    pub fn retry(&self) -> Option<Retry> {
        match self.kind {
            Kind::Retry(r) => Some(r),
            _ => None,
        }
    }

    /// The request body limit this middleware sets, if any.
    pub fn body_limit(&self) -> Option<u64> {
        match self.kind {
            Kind::Buffering(limit) => Some(limit),
            _ => None,
        }
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
    let pq = match req.uri().query() {
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

fn empty(status: StatusCode) -> Response<ResponseBody> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
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
    let mut r = empty(status);
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Stop::Reply(Box::new(r))
}

/// Whole seconds, rounded up, at least 1: for `Retry-After` and friends.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
