//! The first stage of a request: is it one fjord may route? A request whose Host is ambiguous,
//! or a CONNECT, is refused; an ACME challenge is answered before any route can shadow it; nothing is routed
//! before the first configuration has loaded; a request for a host with TLS that came over
//! plain HTTP is redirected when the entry point says so.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Full;

use super::{EntryPoint, Redirect};
use crate::acme::Challenges;
use crate::acme::challenge::HTTP01_PREFIX;
use crate::body;
use crate::error::ProxyError;
use crate::middleware;
use crate::snapshot::Live;

/// The host a request is for: its URI's authority, or else its one Host header.
pub(super) struct Host {
    pub(super) value: Option<HeaderValue>,
    /// Whether it came from the URI (absolute form, HTTP/2), so a Host header must be set to it.
    pub(super) from_uri: bool,
}

impl Host {
    /// As text; empty when there is none, or it is not text.
    pub(super) fn as_str(&self) -> &str {
        self.value
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
    }
}

/// What admission decided: route the request, or answer it here.
pub(super) enum Admission {
    Route(Host),
    /// Boxed: rare (an ACME answer, a redirect), it would otherwise widen every admission.
    Answer(Box<Response<Full<Bytes>>>),
}

/// Admits `req`, which came in on `entry`.
pub(super) fn admit<B>(
    req: &Request<B>,
    entry: &EntryPoint,
    live: &Live,
    acme: &Challenges,
) -> Result<Admission, ProxyError> {
    // The authority of an absolute-form or HTTP/2 request wins over a Host header
    // (RFC 9112 §3.2.2, RFC 9113 §8.3.1), for routing and for the backend alike.
    let authority = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    let from_uri = authority.is_some();
    // No route carries a tunnel: a CONNECT forwarded as `CONNECT /` got no answer at all.
    if req.method() == Method::CONNECT {
        return Err(ProxyError::BadRequest("CONNECT is not proxied"));
    }
    let header_host = single_host(req)?;
    let host = Host {
        value: authority.or_else(|| header_host.cloned()),
        from_uri,
    };
    // ACME HTTP-01 answers come before routing: no user route can shadow them.
    if req.uri().path().starts_with(HTTP01_PREFIX)
        && let Some(answer) = acme.http01(req.uri().path())
    {
        return Ok(Admission::Answer(Box::new(body::text(
            StatusCode::OK,
            Bytes::from(answer),
        ))));
    }
    if !live.is_ready() {
        return Err(ProxyError::NotReady);
    }
    if let Some(redirect) = &entry.redirect
        && live.load().has_tls(host.as_str())
    {
        return Ok(Admission::Answer(Box::new(
            redirect.response(host.as_str(), req),
        )));
    }
    Ok(Admission::Route(host))
}

impl Redirect {
    fn response<B>(&self, host: &str, req: &Request<B>) -> Response<Full<Bytes>> {
        let location = middleware::location(&self.scheme, host, self.port.as_deref(), req.uri());
        let status = if self.permanent {
            StatusCode::PERMANENT_REDIRECT
        } else {
            StatusCode::TEMPORARY_REDIRECT
        };
        let mut response = body::text(status, Bytes::new());
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
