//! Why a request failed, and the one place that turns that into a response. Responses are short
//! and plain; details go to the log, never to the client.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::body;
use crate::clock::ceil_secs;

static RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
static RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A request fjord must not route: it could pick one host while the backend picks another.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("no route matches")]
    NoRoute,
    /// The request's host is served with other TLS settings (a TLSOption) than the name its
    /// connection's handshake was for: it could otherwise skip a client certificate check.
    #[error("host {host} is served with other TLS settings than the connection's")]
    Misdirected { host: Box<str> },
    /// The routes are not known yet (the first sync with the API server is under way): a 404
    /// now could be wrong.
    #[error("not ready: the configuration has not loaded yet")]
    NotReady,
    #[error("backend {backend} has no ready endpoint: {why}")]
    NoEndpoint { backend: Box<str>, why: Box<str> },
    #[error("connecting to {endpoint} failed: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream {endpoint} failed: {source}")]
    Upstream {
        endpoint: String,
        #[source]
        source: hyper::Error,
    },
    #[error("upstream {endpoint} sent no response head within {timeout:?}")]
    Timeout {
        endpoint: String,
        timeout: std::time::Duration,
    },
    #[error("upstream {endpoint} switched protocols though the client asked for no upgrade")]
    UnaskedUpgrade { endpoint: String },
    /// The client's request body is malformed (broken chunked framing) or broke off.
    #[error("the client's request body is malformed or broke off")]
    MalformedBody,
    /// The client paused its request body too long, or sent it slower than the entry point's
    /// minimum rate.
    #[error("the client sent its request body too slowly")]
    ClientBodyTimeout,
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// A buffering middleware's `maxResponseBodyBytes`: the backend's answer is not passed on.
    #[error(
        "backend {backend} answered with a body larger than {limit} bytes (buffering.maxResponseBodyBytes)"
    )]
    ResponseTooLarge { backend: Box<str>, limit: u64 },
    #[error("rate limit of middleware {middleware} exceeded")]
    RateLimited {
        middleware: Box<str>,
        retry_after: std::time::Duration,
        /// Requests per `window`, for the `RateLimit-Policy` header.
        quota: u64,
        window: std::time::Duration,
    },
    #[error("in-flight limit of middleware {middleware} reached")]
    TooManyInFlight { middleware: Box<str> },
    #[error("missing or wrong credentials")]
    Unauthorized { realm: Box<str> },
    #[error("client address not allowed by middleware {middleware}")]
    Forbidden { middleware: Box<str> },
    #[error("route {route} is not served: {why}")]
    Misconfigured { route: Box<str>, why: Box<str> },
    /// A forwardAuth's server could not be asked, or did not answer: the request is not let
    /// through.
    #[error("middleware {middleware}: the authentication server failed: {why}")]
    AuthServer { middleware: Box<str>, why: Box<str> },
    /// A forwardAuth sends the request body to its server, but not one this long: the
    /// request is refused, as Traefik refuses it.
    #[error(
        "middleware {middleware}: the request body is over the {limit} bytes sent to the authentication server"
    )]
    AuthBodyTooLarge { middleware: Box<str>, limit: u64 },
    /// A circuit breaker answers for a service that is failing.
    #[error("circuit breaker {middleware} is open")]
    CircuitOpen { middleware: Box<str>, status: u16 },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::MalformedBody => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::NoEndpoint { .. }
            | ProxyError::Misconfigured { .. }
            | ProxyError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RateLimited { .. } | ProxyError::TooManyInFlight { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ProxyError::Unauthorized { .. } | ProxyError::AuthBodyTooLarge { .. } => {
                StatusCode::UNAUTHORIZED
            }
            ProxyError::Forbidden { .. } => StatusCode::FORBIDDEN,
            // As nginx and Traefik answer a connection that timed out.
            ProxyError::Connect { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::Connect { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::UnaskedUpgrade { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::AuthServer { .. } | ProxyError::ResponseTooLarge { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ProxyError::CircuitOpen { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }

    /// Whether this is a refusal, by policy or for the client's own fault, rather than a
    /// failure of fjord's or a backend's: refusals go to the access log and the metrics, never
    /// to the warning log, which a client could otherwise fill at will.
    pub fn is_refusal(&self) -> bool {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::MalformedBody
            | ProxyError::NoRoute
            | ProxyError::Misdirected { .. }
            | ProxyError::NotReady
            | ProxyError::ClientBodyTimeout
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::RateLimited { .. }
            | ProxyError::TooManyInFlight { .. }
            | ProxyError::Unauthorized { .. }
            | ProxyError::AuthBodyTooLarge { .. }
            | ProxyError::Forbidden { .. }
            | ProxyError::CircuitOpen { .. } => true,
            ProxyError::NoEndpoint { .. }
            | ProxyError::Misconfigured { .. }
            | ProxyError::Connect { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::Timeout { .. }
            | ProxyError::UnaskedUpgrade { .. }
            | ProxyError::AuthServer { .. }
            | ProxyError::ResponseTooLarge { .. } => false,
        }
    }

    /// The response a client gets for this error.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let status = self.status();
        let text: Option<&'static str> = match status {
            StatusCode::BAD_REQUEST => Some("400 bad request\n"),
            StatusCode::NOT_FOUND => Some("404 page not found\n"),
            StatusCode::MISDIRECTED_REQUEST => Some("421 misdirected request\n"),
            StatusCode::SERVICE_UNAVAILABLE => Some("503 no available server\n"),
            StatusCode::GATEWAY_TIMEOUT => Some("504 gateway timeout\n"),
            StatusCode::PAYLOAD_TOO_LARGE => Some("413 request entity too large\n"),
            StatusCode::REQUEST_TIMEOUT => Some("408 request timeout\n"),
            StatusCode::TOO_MANY_REQUESTS => Some("429 too many requests\n"),
            StatusCode::UNAUTHORIZED => Some("401 unauthorized\n"),
            StatusCode::FORBIDDEN => Some("403 forbidden\n"),
            StatusCode::INTERNAL_SERVER_ERROR => Some("500 internal server error\n"),
            StatusCode::BAD_GATEWAY => Some("502 bad gateway\n"),
            // A circuit breaker's own status.
            _ => None,
        };
        let text = match text {
            Some(text) => Bytes::from_static(text.as_bytes()),
            None => {
                let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
                Bytes::from(format!("{} {reason}\n", status.as_u16()))
            }
        };
        let mut response = body::text(status, text);
        let headers = response.headers_mut();
        match self {
            ProxyError::RateLimited {
                middleware,
                retry_after,
                quota,
                window,
            } => {
                // Retry-After, and the IETF RateLimit fields: the policy (quota per window) and
                // what is left of it now (nothing, for `t` seconds).
                let wait = ceil_secs(*retry_after);
                let name = middleware.replace(['"', '\\'], "");
                let values = [
                    (header::RETRY_AFTER, wait.to_string()),
                    (
                        RATELIMIT_POLICY.clone(),
                        format!("\"{name}\";q={quota};w={}", ceil_secs(*window)),
                    ),
                    (RATELIMIT.clone(), format!("\"{name}\";r=0;t={wait}")),
                ];
                for (k, v) in values {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        headers.insert(k, v);
                    }
                }
            }
            ProxyError::Unauthorized { realm } => {
                let realm = realm.replace(['"', '\\'], "");
                if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ProxyError::NotReady => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        if matches!(
            self,
            ProxyError::BodyTooLarge { .. }
                | ProxyError::AuthBodyTooLarge { .. }
                | ProxyError::ClientBodyTimeout
                | ProxyError::MalformedBody
        ) {
            // The rest of the body was not read: the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
