//! Middlewares as translation describes them: settings checked and compiled (regexes, header
//! names, ranges), but no running state. The behaviour is in [`crate::middleware`]; the state
//! that must outlive a snapshot (rate-limit buckets, in-flight counters) is made by
//! [`crate::snapshot`], which fills the `R` and `F` of [`Kind`].

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use ipnet::IpNet;
use regex::Regex;

use crate::breaker;
use crate::htdigest::Digest;
use crate::htpasswd::User;

/// A described middleware.
#[derive(Clone, Debug)]
pub struct Middleware {
    /// `namespace/name`.
    pub name: Box<str>,
    /// What it does.
    pub kind: Kind,
}

/// What a middleware does. `R`, `F`, `A` and `C` are what a rate limit, an in-flight limit, a
/// forward auth and a circuit breaker hold: their settings here, their running state (buckets,
/// counters, a client, a window) in a snapshot's chain.
#[derive(Clone, Debug)]
pub enum Kind<
    R = RateLimitSpec,
    F = InFlightSpec,
    A = Box<ForwardAuthSpec>,
    C = Box<breaker::Settings>,
> {
    /// `rateLimit`: requests per period per source.
    RateLimit(R),
    /// `inFlightReq`: requests at once per source.
    InFlight(F),
    /// `headers`: request, response, security and CORS headers.
    Headers(Box<HeadersSpec>),
    /// `redirectScheme`: to another scheme (and port).
    RedirectScheme {
        /// `http` or `https`.
        scheme: Box<str>,
        /// The port in the Location; none keeps the scheme's default.
        port: Option<Box<str>>,
        /// 301/308 rather than 302/307.
        permanent: bool,
    },
    /// `redirectRegex`: the URL rewritten by a regex.
    RedirectRegex {
        /// Matched against the whole URL.
        regex: Regex,
        /// With `$1`-style references to the regex's groups.
        replacement: String,
        /// 301/308 rather than 302/307.
        permanent: bool,
    },
    /// `stripPrefix`: the first of these prefixes the path starts with is removed.
    StripPrefix(Vec<String>),
    /// `stripPrefixRegex`: the first regex match at the path's start is removed.
    StripPrefixRegex(Vec<Regex>),
    /// `addPrefix`: this is put before the path.
    AddPrefix(String),
    /// `replacePath`: the path becomes this.
    ReplacePath(String),
    /// `replacePathRegex`: the path rewritten by a regex and replacement.
    ReplacePathRegex(Regex, String),
    /// `basicAuth`: credentials checked against htpasswd users.
    BasicAuth {
        /// From the Secret's `users`.
        users: Vec<User>,
        /// Sent in `WWW-Authenticate`.
        realm: String,
        /// Whether the backend gets no `Authorization` header.
        remove_header: bool,
        /// The header the backend gets the user's name in.
        header_field: Option<http::HeaderName>,
    },
    /// `digestAuth`: credentials checked against htdigest users.
    DigestAuth {
        /// The realm, its users and nonce key.
        digest: Box<Digest>,
        /// Whether the backend gets no `Authorization` header.
        remove_header: bool,
        /// The header the backend gets the user's name in.
        header_field: Option<http::HeaderName>,
    },
    /// `forwardAuth`: an authentication server decides.
    ForwardAuth(A),
    /// ingress-nginx's `denylist-source-range`: clients in these ranges are refused (403).
    IpDenyList {
        /// The refused ranges.
        ranges: Vec<IpNet>,
        /// Where the client address is read.
        strategy: IpStrategy,
    },
    /// `ipAllowList`: only clients in these ranges are served.
    IpAllowList {
        /// The allowed ranges.
        ranges: Vec<IpNet>,
        /// Where the client address is read.
        strategy: IpStrategy,
    },
    /// `buffering`: the largest bodies in bytes; 0 is no limit.
    Buffering {
        /// The request's (413 past it).
        request: u64,
        /// The response's, held whole to be measured (500 past it).
        response: u64,
        /// `retryExpression`: when the request is sent again.
        retry: Option<Box<Retry>>,
    },
    /// `retry`: how a failed request is sent again.
    Retry(Retry),
    /// `errors`: a response with one of these statuses is answered with a page from a
    /// service.
    Errors(Box<ErrorPages>),
    /// `compress`: gzip or brotli responses.
    Compress(CompressSpec),
    /// `encodedCharacters`: a path holding one of these bytes percent-encoded is refused (400).
    EncodedCharacters(Box<[u8]>),
    /// `redirectTrailingSlash`: a path other than `/` redirected to end in a slash, or not.
    RedirectTrailingSlash {
        /// Add the slash (`add`), rather than remove it (`remove`).
        add: bool,
        /// 301/308 rather than 302/307.
        permanent: bool,
    },
    /// `queryParameters`: the query's parameters deleted, set and added, in that order.
    QueryParameters(Box<QueryParameters>),
    /// `passTLSClientCert`: the client's certificates, or what they say, in headers.
    PassTlsClientCert(Box<PassTlsClientCert>),
    /// `circuitBreaker`: requests answered by fjord while what comes back says the service
    /// is failing.
    CircuitBreaker(C),
    /// `grpcWeb`: gRPC-Web calls to gRPC and their answers back.
    GrpcWeb(Box<GrpcWebSpec>),
    /// `contentType`: a response without a `Content-Type` gets one guessed from its first
    /// bytes.
    ContentType,
}

/// Where `grpcWeb` takes calls from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GrpcWebSpec {
    /// Origins allowed (`*`: any); a call or preflight from another is refused (403).
    pub allow_origins: Vec<String>,
}

impl GrpcWebSpec {
    /// Whether a page from `origin` may call.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        self.allow_origins
            .iter()
            .any(|o| o == "*" || o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
    }
}

/// What `passTLSClientCert` passes of a client's certificates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassTlsClientCert {
    /// Each certificate's DER in base64, in `X-Forwarded-Tls-Client-Cert`.
    pub pem: bool,
    /// The fields chosen, in `X-Forwarded-Tls-Client-Cert-Info`.
    pub info: Option<CertInfo>,
}

/// The fields of a certificate `passTLSClientCert`'s `info` chooses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CertInfo {
    /// `NA`: the end of its validity, in Unix seconds.
    pub not_after: bool,
    /// `NB`: the start of its validity, in Unix seconds.
    pub not_before: bool,
    /// `SAN`: its subject alternative names.
    pub sans: bool,
    /// `SerialNumber`: the certificate's, in decimal.
    pub serial_number: bool,
    /// `Subject`: these parts of its subject.
    pub subject: Option<DnInfo>,
    /// `Issuer`: these parts of its issuer.
    pub issuer: Option<DnInfo>,
}

/// The parts of a distinguished name chosen (an issuer has no `organizationalUnit`).
#[derive(Clone, Debug, Default, PartialEq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "one switch per part, as the CRD has them"
)]
pub struct DnInfo {
    /// `C`.
    pub country: bool,
    /// `ST`.
    pub province: bool,
    /// `L`.
    pub locality: bool,
    /// `O`.
    pub organization: bool,
    /// `OU`.
    pub organizational_unit: bool,
    /// `CN`.
    pub common_name: bool,
    /// `SN`.
    pub serial_number: bool,
    /// `DC`.
    pub domain_component: bool,
}

/// What `queryParameters` does to a request's query.
#[derive(Clone, Debug, Default)]
pub struct QueryParameters {
    /// Names whose every value is removed (matched decoded).
    pub delete: Vec<String>,
    /// Each replaces every value of its name, where the first was; appended when absent.
    pub set: Vec<(String, String)>,
    /// Appended, whatever is there already.
    pub add: Vec<(String, String)>,
}

impl Kind {
    /// Its type as the Middleware CRD names it (`rateLimit`, `basicAuth`…); ingress-nginx's
    /// deny list, which has no CRD field, as `ipDenyList`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::RateLimit(_) => "rateLimit",
            Kind::InFlight(_) => "inFlightReq",
            Kind::Headers(_) => "headers",
            Kind::RedirectScheme { .. } => "redirectScheme",
            Kind::RedirectRegex { .. } => "redirectRegex",
            Kind::StripPrefix(_) => "stripPrefix",
            Kind::StripPrefixRegex(_) => "stripPrefixRegex",
            Kind::AddPrefix(_) => "addPrefix",
            Kind::ReplacePath(_) => "replacePath",
            Kind::ReplacePathRegex(..) => "replacePathRegex",
            Kind::BasicAuth { .. } => "basicAuth",
            Kind::DigestAuth { .. } => "digestAuth",
            Kind::ForwardAuth(_) => "forwardAuth",
            Kind::IpDenyList { .. } => "ipDenyList",
            Kind::IpAllowList { .. } => "ipAllowList",
            Kind::Buffering { .. } => "buffering",
            Kind::Retry(_) => "retry",
            Kind::Errors(_) => "errors",
            Kind::Compress(_) => "compress",
            Kind::EncodedCharacters(_) => "encodedCharacters",
            Kind::RedirectTrailingSlash { .. } => "redirectTrailingSlash",
            Kind::QueryParameters(_) => "queryParameters",
            Kind::PassTlsClientCert(_) => "passTLSClientCert",
            Kind::CircuitBreaker(_) => "circuitBreaker",
            Kind::GrpcWeb(_) => "grpcWeb",
            Kind::ContentType => "contentType",
        }
    }

    /// The same middleware with its state: `rate`, `flight`, `auth` and `breaker` make it
    /// from the settings.
    pub fn with_state<R, F, A, C>(
        &self,
        rate: impl FnOnce(&RateLimitSpec) -> R,
        flight: impl FnOnce(&InFlightSpec) -> F,
        auth: impl FnOnce(&ForwardAuthSpec) -> A,
        breaker: impl FnOnce(&breaker::Settings) -> C,
    ) -> Kind<R, F, A, C> {
        match self {
            Kind::CircuitBreaker(settings) => Kind::CircuitBreaker(breaker(settings)),
            Kind::RateLimit(spec) => Kind::RateLimit(rate(spec)),
            Kind::InFlight(spec) => Kind::InFlight(flight(spec)),
            Kind::ForwardAuth(spec) => Kind::ForwardAuth(auth(spec)),
            Kind::Headers(h) => Kind::Headers(h.clone()),
            Kind::RedirectScheme {
                scheme,
                port,
                permanent,
            } => Kind::RedirectScheme {
                scheme: scheme.clone(),
                port: port.clone(),
                permanent: *permanent,
            },
            Kind::RedirectRegex {
                regex,
                replacement,
                permanent,
            } => Kind::RedirectRegex {
                regex: regex.clone(),
                replacement: replacement.clone(),
                permanent: *permanent,
            },
            Kind::StripPrefix(p) => Kind::StripPrefix(p.clone()),
            Kind::StripPrefixRegex(r) => Kind::StripPrefixRegex(r.clone()),
            Kind::AddPrefix(p) => Kind::AddPrefix(p.clone()),
            Kind::ReplacePath(p) => Kind::ReplacePath(p.clone()),
            Kind::ReplacePathRegex(r, s) => Kind::ReplacePathRegex(r.clone(), s.clone()),
            Kind::BasicAuth {
                users,
                realm,
                remove_header,
                header_field,
            } => Kind::BasicAuth {
                users: users.clone(),
                realm: realm.clone(),
                remove_header: *remove_header,
                header_field: header_field.clone(),
            },
            Kind::DigestAuth {
                digest,
                remove_header,
                header_field,
            } => Kind::DigestAuth {
                digest: digest.clone(),
                remove_header: *remove_header,
                header_field: header_field.clone(),
            },
            Kind::IpDenyList { ranges, strategy } => Kind::IpDenyList {
                ranges: ranges.clone(),
                strategy: strategy.clone(),
            },
            Kind::IpAllowList { ranges, strategy } => Kind::IpAllowList {
                ranges: ranges.clone(),
                strategy: strategy.clone(),
            },
            Kind::Buffering {
                request,
                response,
                retry,
            } => Kind::Buffering {
                request: *request,
                response: *response,
                retry: retry.clone(),
            },
            Kind::Retry(r) => Kind::Retry(r.clone()),
            Kind::Errors(e) => Kind::Errors(e.clone()),
            Kind::Compress(c) => Kind::Compress(c.clone()),
            Kind::EncodedCharacters(denied) => Kind::EncodedCharacters(denied.clone()),
            Kind::RedirectTrailingSlash { add, permanent } => Kind::RedirectTrailingSlash {
                add: *add,
                permanent: *permanent,
            },
            Kind::QueryParameters(q) => Kind::QueryParameters(q.clone()),
            Kind::PassTlsClientCert(p) => Kind::PassTlsClientCert(p.clone()),
            Kind::GrpcWeb(g) => Kind::GrpcWeb(g.clone()),
            Kind::ContentType => Kind::ContentType,
        }
    }
}

/// A rate limit's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimitSpec {
    /// Requests per `period` on average; at least 1 (0 is translated to no middleware).
    pub average: u64,
    /// The period `average` is counted over.
    pub period: Duration,
    /// Requests allowed at once after a quiet spell; at least 1.
    pub burst: u64,
    /// What a client is, for the limit.
    pub source: Source,
    /// Where the buckets are, and so how far the limit holds across replicas.
    pub distribution: Distribution,
    /// Peers the limit does not count (ingress-nginx's `limit-whitelist`).
    pub exempt: Vec<IpNet>,
}

/// Where a rate limit's buckets are.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Distribution {
    /// In this process: each replica lets the whole limit through.
    #[default]
    Local,
    /// In this process, with the limit divided by the number of live replicas: exact when
    /// traffic spreads evenly over them.
    PerReplica,
    /// In Redis, shared by every replica: exact.
    Redis(Box<RedisSpec>),
}

/// A Redis (or Valkey) server holding rate-limit buckets.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisSpec {
    /// `host:port`: one server, or (several) the nodes a Redis Cluster is first asked about.
    pub endpoints: Vec<String>,
    /// From the Middleware's Secret, when it names one.
    pub username: Option<String>,
    /// From the Middleware's Secret, when it names one.
    pub password: Option<Redacted>,
    /// The database selected after connecting.
    pub db: i64,
    /// TLS to the server, when set.
    pub tls: Option<ClientTls>,
    /// Longest a connection attempt takes.
    pub dial_timeout: Duration,
    /// Longest a request waits for Redis's answer before `on_error` decides.
    pub read_timeout: Duration,
    /// Multiplexed connections, each carrying many requests at once.
    pub pool_size: usize,
    /// What a request gets when Redis cannot answer in time.
    pub on_error: OnError,
}

/// TLS to a server fjord calls (Redis, an authentication server): PEM text from Secrets.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientTls {
    /// CA certificates to trust instead of the system's.
    pub ca: Option<Vec<u8>>,
    /// A client certificate chain and its key, for mutual TLS.
    pub client: Option<(Vec<u8>, Redacted)>,
    /// Whether the server's certificate goes unchecked.
    pub insecure_skip_verify: bool,
}

/// What a rate limit does when its Redis cannot answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// Let the request through.
    Allow,
    /// Refuse it (429).
    Deny,
    /// Count it locally against the limit divided by the live replicas.
    #[default]
    Local,
}

/// A secret value: compared, but never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An `errors` middleware's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorPages {
    /// The statuses answered with a page, as inclusive ranges.
    pub statuses: Vec<(u16, u16)>,
    /// Where the pages are.
    pub backend: crate::model::BackendId,
    /// The page's path and query, `{status}` and `{originalStatus}` replaced; ingress-nginx's
    /// manner asks for the original path instead.
    pub query: String,
    /// (from, to, status) ranges: a status in one is answered as `status`.
    pub rewrites: Vec<(u16, u16, u16)>,
    /// ingress-nginx's `custom-http-errors`: the original path, and `X-Code`, `X-Format`,
    /// `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`,
    /// `X-Service-Port` for the page's backend.
    pub nginx: Option<NginxErrors>,
}

/// What ingress-nginx tells its default backend about the error.
#[derive(Clone, Debug, PartialEq)]
pub struct NginxErrors {
    /// The Ingress's namespace.
    pub namespace: String,
    /// The Ingress's name.
    pub ingress: String,
    /// The Service the request was for, and its port.
    pub service: String,
    /// Its port, as written.
    pub port: String,
}

impl ErrorPages {
    /// Whether `status` gets a page, and the status the client gets with it.
    pub fn answers(&self, status: u16) -> Option<u16> {
        self.statuses
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&status))
            .then(|| {
                self.rewrites
                    .iter()
                    .find(|(from, to, _)| (*from..=*to).contains(&status))
                    .map_or(status, |r| r.2)
            })
    }
}

/// A forward auth's settings.
#[derive(Clone, Debug)]
pub struct ForwardAuthSpec {
    /// The authentication server: an absolute `http` or `https` URL.
    pub address: http::Uri,
    /// ingress-nginx's `$host` in `auth-url`: the address's host is the request's (an
    /// Ingress's own exact host, never one a client chose).
    pub host_from_request: bool,
    /// Whether a trusted peer's `X-Forwarded-*` headers are passed on as they are.
    pub trust_forward_header: bool,
    /// Request headers sent to the server; all (but hop-by-hop ones) when empty.
    pub request_headers: Vec<HeaderName>,
    /// The server's headers copied onto the request.
    pub response_headers: Vec<HeaderName>,
    /// The server's headers matching it are copied onto the request.
    pub response_headers_regex: Option<Regex>,
    /// Cookies the server sets that reach the client's response.
    pub add_cookies: Vec<String>,
    /// Whether a relative `Location` is passed on as it is.
    pub preserve_location: bool,
    /// Whether the server is asked with the client's method rather than GET.
    pub preserve_method: bool,
    /// `forwardBody`: the request body is sent to the server too, when it is at most this
    /// many bytes (held whole in memory first); a longer one is refused with a 401.
    pub forward_body: Option<u64>,
    /// TLS to the server, for an `https` address.
    pub tls: Option<ClientTls>,
    /// ingress-nginx's `auth-url` manner: the original URL and method in `X-Original-URL`,
    /// `X-Original-Method`, `X-Auth-Request-Redirect`, `X-Sent-From`, `X-Real-IP`.
    pub nginx: Option<NginxAuth>,
}

/// What ingress-nginx's `auth-url` does besides Traefik's forwardAuth: the server's 401 and
/// 403 become fjord's own, any other refusal a 500, as nginx's `auth_request` answers.
#[derive(Clone, Debug, Default)]
pub struct NginxAuth {
    /// `auth-method`: the method the server is asked with (GET when unset).
    pub method: Option<http::Method>,
    /// `auth-signin`: where a 401 from the server sends the client instead.
    pub signin: Option<String>,
    /// `auth-signin-redirect-param`: the query parameter holding the original URL (`rd`).
    pub signin_param: String,
}

/// An in-flight limit's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct InFlightSpec {
    /// Requests at once per source; at least 1.
    pub amount: u64,
    /// What a client is, for the limit.
    pub source: Source,
    /// Peers the limit does not count (ingress-nginx's `limit-whitelist`).
    pub exempt: Vec<IpNet>,
}

/// What identifies a client for a limit.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// The peer address, or one from `X-Forwarded-For` chosen by the strategy.
    ClientIp(IpStrategy),
    /// The value of this request header.
    RequestHeader(HeaderName),
    /// The request's host.
    RequestHost,
}

/// How to find the client in `X-Forwarded-For` (Traefik's `ipStrategy`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IpStrategy {
    /// Take the address `depth` from the right; 0 uses the peer address.
    pub depth: usize,
    /// Skip these from the right and take the first one left.
    pub excluded: Vec<IpNet>,
    /// An IPv6 client (found by `depth` or as the peer) is its subnet of this many bits:
    /// clients of one /64 share a bucket.
    pub ipv6_subnet: Option<u8>,
}

/// Compiled `headers` settings; names and values already validated.
#[derive(Clone, Debug, Default)]
pub struct HeadersSpec {
    /// `None` removes the header.
    pub request: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Response headers set; `None` removes the header.
    pub response: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Security headers set on every response.
    pub security: Vec<(HeaderName, HeaderValue)>,
    /// CORS settings, when any origin is allowed.
    pub cors: Option<Cors>,
}

/// CORS settings of a `headers` middleware.
#[derive(Clone, Debug, Default)]
pub struct Cors {
    /// Allowed origins; `*` allows any.
    pub origins: Vec<String>,
    /// `Access-Control-Allow-Methods` for preflights.
    pub methods: Option<HeaderValue>,
    /// `Access-Control-Allow-Headers` for preflights.
    pub headers: Option<HeaderValue>,
    /// `Access-Control-Expose-Headers` on responses.
    pub expose: Option<HeaderValue>,
    /// Whether credentials are allowed (and `*` echoes the origin).
    pub credentials: bool,
    /// `Access-Control-Max-Age` for preflights.
    pub max_age: Option<HeaderValue>,
    /// Whether responses get `Vary: Origin`.
    pub vary: bool,
}

/// How a failed request is sent again.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubles for each further one.
    pub interval: Duration,
    /// Response statuses (inclusive ranges) retried as a failure is.
    pub statuses: Box<[(u16, u16)]>,
    /// Whether a broken connection or a late response head is retried.
    pub network: bool,
    /// Whether methods that are not idempotent (a POST without a body) are retried too.
    pub non_idempotent: bool,
    /// No retry starts past this long after the request began.
    pub timeout: Option<Duration>,
    /// A request body of a declared length up to this many bytes is held to be sent again;
    /// 0: bodies are streamed, and requests with one are not retried.
    pub hold_body: u64,
    /// A buffering middleware's `retryExpression`: retried when it holds of the attempts made
    /// and the last one's status, rather than by `statuses` and `network`.
    pub condition: Option<crate::breaker::Expression>,
}

impl Retry {
    /// Whether a response with `status` is retried.
    pub fn retries_status(&self, status: http::StatusCode) -> bool {
        let s = status.as_u16();
        self.statuses.iter().any(|(a, b)| (*a..=*b).contains(&s))
    }
}

/// The compress middleware's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CompressSpec {
    /// Responses that declare a smaller length are sent as they are. Default 1024.
    pub min_bytes: u64,
    /// Content types ([`media_type`]s) never compressed.
    pub excluded: Vec<String>,
    /// The encodings offered (`gzip`, `br`); both by default.
    pub encodings: Vec<String>,
    /// The encoding used when the client sends no `Accept-Encoding` or `*`.
    pub default_encoding: Option<String>,
}

/// A content type without parameters, lowercase: `Text/HTML; charset=utf-8` is `text/html`.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}
