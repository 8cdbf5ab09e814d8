//! `forwardAuth`: an authentication server decides. fjord asks it with the request's headers
//! (and `X-Forwarded-*` saying what the client asked for); a 2xx lets the request through,
//! with the headers the Middleware names copied from the answer; anything else is the answer
//! the client gets, body, headers and `Location` included (how oauth2-proxy, Authelia and
//! Authentik send a client to their login page).
//!
//! The client is pooled per Middleware and made with it; the server's answer is bounded in
//! size and time, and a server that cannot be reached is a 500 (as Traefik answers), never a
//! request let through.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::Ctx;
use crate::body;
use crate::client_tls::tls_config;
use crate::error::ProxyError;
use crate::model::middleware::{ForwardAuthSpec, NginxAuth};

/// Longest the server may take to answer, as Traefik's client allows.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer body read from the server: a login page, not a download.
const MAX_BODY: usize = 1 << 20;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_AUTH_REQUEST_REDIRECT: HeaderName = HeaderName::from_static("x-auth-request-redirect");
static X_SENT_FROM: HeaderName = HeaderName::from_static("x-sent-from");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers of one hop, never sent on: RFC 9110 §7.6.1, plus those a `Connection` names.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

type AuthClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A forward auth and its client.
#[derive(Debug)]
pub struct ForwardAuth {
    /// Its settings.
    pub spec: ForwardAuthSpec,
    client: Result<AuthClient, String>,
}

/// The server let the request through: cookies of its answer the client's response gets.
#[derive(Debug, Default)]
pub(super) struct Allowed {
    pub(super) cookies: Vec<HeaderValue>,
}

impl ForwardAuth {
    /// A forward auth for `spec`, its client ready (connections are made on use).
    pub fn new(spec: ForwardAuthSpec) -> Arc<Self> {
        let client = tls_config(spec.tls.as_ref()).map(|tls| {
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .build();
            Client::builder(TokioExecutor::new()).build(connector)
        });
        Arc::new(Self { spec, client })
    }

    /// Asks the server about `req` (with its `body`, under `forwardBody`): through (with its
    /// headers copied onto `req`), or the server's answer for the client.
    pub(super) async fn check<B>(
        &self,
        req: &mut Request<B>,
        ctx: &Ctx<'_>,
        middleware: &str,
        body: Option<Bytes>,
    ) -> Result<Allowed, super::Stop> {
        let failed = |why: String| ProxyError::AuthServer {
            middleware: middleware.into(),
            why: why.into(),
        };
        let client = self.client.as_ref().map_err(|e| failed(e.clone()))?;
        let ask = self
            .request(req, ctx, body)
            .map_err(|e| failed(e.to_string()))?;
        let answer = tokio::time::timeout(TIMEOUT, async {
            let response = client.request(ask).await.map_err(|e| e.to_string())?;
            let (head, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((head, body))
        })
        .await
        .map_err(|_| failed(format!("no answer within {TIMEOUT:?}")))?;
        let (head, body) = answer.map_err(failed)?;
        if head.status.is_success() {
            self.copy_headers(&head.headers, req.headers_mut());
            return Ok(Allowed {
                cookies: self.cookies(&head.headers),
            });
        }
        Err(super::Stop::Reply(Box::new(
            self.refusal(req, ctx, head, body),
        )))
    }

    /// The question for the server: GET (or the client's method) at `address`, with the
    /// client's headers but those of one hop and `Host`, and `X-Forwarded-*` for what the
    /// client asked.
    fn request<B>(
        &self,
        req: &Request<B>,
        ctx: &Ctx<'_>,
        body: Option<Bytes>,
    ) -> Result<Request<Full<Bytes>>, http::Error> {
        let spec = &self.spec;
        let method = match &spec.nginx {
            Some(NginxAuth {
                method: Some(m), ..
            }) => m.clone(),
            _ if spec.preserve_method => req.method().clone(),
            _ => Method::GET,
        };
        let mut headers = forwardable(req.headers());
        if !spec.request_headers.is_empty() {
            headers.retain_names(&spec.request_headers);
        }
        let trusted = spec.trust_forward_header && ctx.trusted;
        let own = |name: &HeaderName| trusted.then(|| req.headers().get(name).cloned()).flatten();
        let uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let scheme = if ctx.tls { "https" } else { "http" };
        let peer = ctx.peer.to_canonical().to_string();
        let for_value = match own(&X_FORWARDED_FOR) {
            Some(prior) => format!("{}, {peer}", prior.to_str().unwrap_or_default()),
            None => peer.clone(),
        };
        let mut set = |name: &HeaderName, value: Option<HeaderValue>| match value {
            Some(v) => {
                headers.insert(name.clone(), v);
            }
            None => {
                headers.remove(name);
            }
        };
        set(&X_FORWARDED_FOR, HeaderValue::from_str(&for_value).ok());
        set(
            &X_FORWARDED_METHOD,
            own(&X_FORWARDED_METHOD).or_else(|| HeaderValue::from_str(req.method().as_str()).ok()),
        );
        set(
            &X_FORWARDED_PROTO,
            own(&X_FORWARDED_PROTO).or(Some(HeaderValue::from_static(scheme))),
        );
        set(&X_FORWARDED_PORT, own(&X_FORWARDED_PORT));
        set(
            &X_FORWARDED_HOST,
            own(&X_FORWARDED_HOST).or_else(|| HeaderValue::from_str(ctx.host).ok()),
        );
        set(
            &X_FORWARDED_URI,
            own(&X_FORWARDED_URI).or_else(|| HeaderValue::from_str(uri).ok()),
        );
        if spec.nginx.is_some() {
            let url = format!("{scheme}://{}{uri}", ctx.host);
            set(&X_ORIGINAL_URL, HeaderValue::from_str(&url).ok());
            set(
                &X_ORIGINAL_METHOD,
                HeaderValue::from_str(req.method().as_str()).ok(),
            );
            set(&X_AUTH_REQUEST_REDIRECT, HeaderValue::from_str(uri).ok());
            set(
                &X_SENT_FROM,
                Some(HeaderValue::from_static("nginx-ingress-controller")),
            );
            set(&X_REAL_IP, HeaderValue::from_str(&peer).ok());
        }
        let address = if spec.host_from_request {
            with_host(&spec.address, ctx.host)?
        } else {
            spec.address.clone()
        };
        if let Some(body) = &body {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let mut ask = Request::builder()
            .method(method)
            .uri(address)
            .body(Full::new(body.unwrap_or_default()))?;
        *ask.headers_mut() = headers;
        Ok(ask)
    }

    /// Copies the server's headers the Middleware names (and those its regex matches) onto
    /// the request, replacing the client's.
    fn copy_headers(&self, answer: &HeaderMap, request: &mut HeaderMap) {
        for name in &self.spec.response_headers {
            request.remove(name);
            for value in answer.get_all(name) {
                request.append(name.clone(), value.clone());
            }
        }
        if let Some(regex) = &self.spec.response_headers_regex {
            let matches = |name: &HeaderName| regex.is_match(&canonical(name.as_str()));
            let stale: Vec<HeaderName> = request.keys().filter(|n| matches(n)).cloned().collect();
            for name in stale {
                request.remove(&name);
            }
            for (name, value) in answer {
                if matches(name) {
                    request.append(name.clone(), value.clone());
                }
            }
        }
    }

    /// The answer's `Set-Cookie`s whose cookie `addAuthCookiesToResponse` names.
    fn cookies(&self, answer: &HeaderMap) -> Vec<HeaderValue> {
        if self.spec.add_cookies.is_empty() {
            return Vec::new();
        }
        answer
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|v| {
                cookie_name(v).is_some_and(|n| self.spec.add_cookies.iter().any(|c| c == n))
            })
            .cloned()
            .collect()
    }

    /// The server's refusal as the client gets it: status, headers but those of one hop, a
    /// `Location` resolved against `address` (unless kept as it is), the body. ingress-nginx's
    /// `auth-signin` turns a 401 into a redirect to the sign-in page instead.
    fn refusal<B>(
        &self,
        req: &Request<B>,
        ctx: &Ctx<'_>,
        head: http::response::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        if let Some(nginx) = &self.spec.nginx {
            return nginx_refusal(nginx, req, ctx, &head);
        }
        let mut reply = Response::new(Full::new(body));
        *reply.status_mut() = head.status;
        *reply.headers_mut() = forwardable(&head.headers);
        reply.headers_mut().remove(header::CONTENT_LENGTH);
        if let Some(location) = head.headers.get(header::LOCATION)
            && !self.spec.preserve_location
            && let Some(resolved) = location
                .to_str()
                .ok()
                .and_then(|l| resolve(&self.spec.address, l))
            && let Ok(value) = HeaderValue::from_str(&resolved)
        {
            reply.headers_mut().insert(header::LOCATION, value);
        }
        reply
    }
}

/// nginx's `auth_request` answer to a refusal: a 401 (with the server's `WWW-Authenticate`)
/// or, with `auth-signin`, a redirect there carrying the original URL; a 403; any other
/// status is the server's failure, a 500.
fn nginx_refusal<B>(
    nginx: &NginxAuth,
    req: &Request<B>,
    ctx: &Ctx<'_>,
    head: &http::response::Parts,
) -> Response<Full<Bytes>> {
    match head.status {
        StatusCode::UNAUTHORIZED => match &nginx.signin {
            Some(signin) => sign_in(signin, &nginx.signin_param, req, ctx),
            None => {
                let mut reply = body::text(
                    StatusCode::UNAUTHORIZED,
                    Bytes::from_static(b"401 unauthorized\n"),
                );
                if let Some(challenge) = head.headers.get(header::WWW_AUTHENTICATE) {
                    reply
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, challenge.clone());
                }
                reply
            }
        },
        StatusCode::FORBIDDEN => body::text(
            StatusCode::FORBIDDEN,
            Bytes::from_static(b"403 forbidden\n"),
        ),
        _ => body::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(b"500 internal server error\n"),
        ),
    }
}

/// `address` with the request's `host` for the placeholder translation put in `$host`'s
/// place, its port kept.
fn with_host(address: &http::Uri, host: &str) -> Result<http::Uri, http::Error> {
    let mut parts = address.clone().into_parts();
    if let Some(authority) = &parts.authority {
        let port = authority
            .port()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        parts.authority = Some(format!("{host}{port}").parse()?);
    }
    Ok(http::Uri::from_parts(parts)?)
}

/// ingress-nginx's redirect to `auth-signin`, its `$host`, `$request_uri` and
/// `$escaped_request_uri` the request's, with the original URL in `param` unless the page's
/// query already sets it (as nginx's `buildAuthSignURL` leaves it).
fn sign_in<B>(signin: &str, param: &str, req: &Request<B>, ctx: &Ctx<'_>) -> Response<Full<Bytes>> {
    let scheme = if ctx.tls { "https" } else { "http" };
    let uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let escaped: String = form_urlencoded::byte_serialize(uri.as_bytes()).collect();
    let page = signin
        .replace("$escaped_request_uri", &escaped)
        .replace("$request_uri", uri)
        .replace("$host", ctx.host);
    let query = page.split_once('?').map(|(_, q)| q);
    let has_param = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split_once('=').map_or(pair, |(k, _)| k) == param)
    });
    let location = if has_param {
        page
    } else {
        let original = format!("{scheme}://{}{uri}", ctx.host);
        let rd: String = form_urlencoded::byte_serialize(original.as_bytes()).collect();
        let separator = if query.is_some() { '&' } else { '?' };
        format!("{page}{separator}{param}={rd}")
    };
    let mut reply = body::empty(StatusCode::FOUND);
    if let Ok(location) = HeaderValue::from_str(&location) {
        reply.headers_mut().insert(header::LOCATION, location);
    }
    reply
}

/// `headers` without those of one hop (and those its `Connection` names), `Host` and
/// `Content-Length`.
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let mut out = headers.clone();
    for name in HOP_BY_HOP.iter().chain(&named) {
        out.remove(name);
    }
    out.remove(header::HOST);
    out.remove(header::CONTENT_LENGTH);
    out
}

trait RetainNames {
    fn retain_names(&mut self, names: &[HeaderName]);
}

impl RetainNames for HeaderMap {
    /// Keeps only the headers named in `names`.
    fn retain_names(&mut self, names: &[HeaderName]) {
        let drop: Vec<HeaderName> = self
            .keys()
            .filter(|k| !names.contains(k))
            .cloned()
            .collect();
        for name in drop {
            self.remove(&name);
        }
    }
}

/// A header name as Go writes it (`X-Auth-User`), which Traefik's regexes are written against.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The name of the cookie a `Set-Cookie` value sets.
fn cookie_name(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    Some(text.split(';').next()?.split('=').next()?.trim())
}

/// `location` resolved against `base` (RFC 3986 §5.2, for the forms servers send: absolute,
/// `//authority/path`, `/path`, and a path relative to the base's directory).
fn resolve(base: &Uri, location: &str) -> Option<String> {
    if location.parse::<Uri>().is_ok_and(|u| u.scheme().is_some()) {
        return Some(location.to_owned());
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    if let Some(rest) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Some(format!("{scheme}://{authority}{location}"));
    }
    let dir = base.path().rsplit_once('/').map_or("", |(dir, _)| dir);
    Some(format!("{scheme}://{authority}{dir}/{location}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_address() {
        let base: Uri = "http://auth.svc:4180/oauth2/auth".parse().unwrap();
        assert_eq!(
            resolve(&base, "/oauth2/start?rd=x").as_deref(),
            Some("http://auth.svc:4180/oauth2/start?rd=x")
        );
        assert_eq!(
            resolve(&base, "sign_in").as_deref(),
            Some("http://auth.svc:4180/oauth2/sign_in")
        );
        assert_eq!(
            resolve(&base, "https://login.example/").as_deref(),
            Some("https://login.example/")
        );
        assert_eq!(
            resolve(&base, "//login.example/x").as_deref(),
            Some("http://login.example/x")
        );
    }

    #[test]
    fn header_names_are_matched_as_go_writes_them() {
        assert_eq!(canonical("x-auth-user"), "X-Auth-User");
        assert_eq!(canonical("remote-groups"), "Remote-Groups");
    }
}
