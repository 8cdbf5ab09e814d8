//! The model: what translation produces and the hot path reads. Routes with their targets,
//! backends and their endpoints, certificates, the names ACME must keep certified, and
//! middlewares described (not running: [`crate::snapshot`] instantiates them).
//!
//! Plain data, imported by both sides and importing neither.

pub mod middleware;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::sign::CertifiedKey;

use crate::rule::Rule;

/// What fjord routes: host/path rules to backends, and the backends' endpoints.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// One per (host, path); conflicts are already resolved.
    pub routes: Vec<Route>,
    /// IngressRoute routes, highest priority first (ties in a stable order).
    pub rule_routes: Vec<RuleRoute>,
    /// Takes what no route matches.
    pub default_backend: Option<Target>,
    /// The backends routes point at, by identity.
    pub backends: BTreeMap<BackendId, BackendSpec>,
    /// Certificates from Secrets, oldest Ingress first.
    pub certificates: Vec<TlsCert>,
    /// The TLSStore's default certificate: for a handshake whose name no certificate has,
    /// over the static configuration's.
    pub default_certificate: Option<TlsCert>,
    /// Names to obtain certificates for through ACME.
    pub acme: Vec<AcmeRequest>,
    /// The objects (`Ingress NAMESPACE/NAME`, `IngressRoute NAMESPACE/NAME`) asking for each
    /// ACME certificate: where its Events go.
    pub acme_requested_by: BTreeMap<AcmeRequest, BTreeSet<String>>,
    /// Hosts named in any `spec.tls`: plain-HTTP requests for them may be redirected.
    pub tls_hosts: BTreeSet<String>,
    /// The TLSOption each host is served with (`*.example.com` for a wildcard).
    pub tls_policies: BTreeMap<String, Arc<TlsPolicy>>,
    /// The TLSOption named `default`: every other host's.
    pub default_tls_policy: Option<Arc<TlsPolicy>>,
}

impl Config {
    /// Every route's target, Ingress routes first, then rule routes, then the default backend.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.routes
            .iter()
            .map(|r| &r.target)
            .chain(self.rule_routes.iter().map(|r| &r.target))
            .chain(self.default_backend.iter())
    }
}

/// How TLS is spoken with the clients of some hosts: a TLSOption, checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsPolicy {
    /// `namespace/name` of the TLSOption.
    pub name: String,
    /// Whether TLS 1.2 is spoken (TLS 1.3 always is).
    pub tls12: bool,
    /// Whether TLS 1.3 is spoken.
    pub tls13: bool,
    /// Cipher suites by IANA name, most preferred first; fjord's own when empty.
    pub cipher_suites: Vec<String>,
    /// Key exchange groups by Traefik's names, most preferred first; fjord's when empty.
    pub curves: Vec<String>,
    /// Client certificates are asked for and must chain to these CAs (DER); none: not asked.
    pub client_cas: Vec<Vec<u8>>,
    /// A client without a certificate is refused.
    pub client_cert_required: bool,
    /// A handshake for a name no certificate has is refused, not answered with the default.
    pub sni_strict: bool,
    /// ALPN protocols offered, most preferred first; fjord's (`h2`, `http/1.1`) when empty.
    pub alpn: Vec<String>,
    /// Whether sessions are resumed by tickets (the session cache is kept either way).
    pub session_tickets: bool,
}

/// Certificates an ACME resolver must keep valid, for one set of names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcmeRequest {
    /// The resolver (`certificatesResolvers` key) that obtains them.
    pub resolver: String,
    /// Sorted and without duplicates; the first names the certificate in storage.
    pub names: Vec<String>,
}

/// A host and path route from an Ingress.
#[derive(Clone, Debug)]
pub struct Route {
    /// The host it matches.
    pub host: HostMatch,
    /// The path it matches.
    pub path: PathMatch,
    /// Where it sends requests.
    pub target: Target,
}

/// A rule-based route from an IngressRoute.
#[derive(Clone, Debug)]
pub struct RuleRoute {
    /// The rule a request must match.
    pub rule: Rule,
    /// Higher wins; by default the rule's length.
    pub priority: i64,
    /// Entry points it is served on; all when empty.
    pub entry_points: Vec<String>,
    /// Where it sends requests.
    pub target: Target,
}

/// Where a route sends requests, through which middlewares, and which object asked for it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The object the route came from, as `namespace/name`.
    pub source: String,
    /// Its kind: `Ingress` or `IngressRoute`.
    pub kind: &'static str,
    /// The backend requests go to.
    pub backend: BackendId,
    /// Middlewares run in order on the request, in reverse on the response.
    pub middlewares: Vec<Arc<middleware::Middleware>>,
    /// Why the route must not be served as written (a missing or invalid middleware): it
    /// answers 503 rather than run without its auth or limit.
    pub broken: Option<String>,
    /// Sticky sessions: a client keeps the endpoint its cookie names.
    pub sticky: Option<Arc<StickyCookie>>,
    /// How an endpoint is chosen for each request.
    pub balance: Balance,
    /// Members of the backend ranked by client address once chosen (a highestRandomWeight
    /// in a weighted split): a request chosen for one of them goes to the endpoint among
    /// them that ranks highest for its client.
    pub ranked: Vec<std::ops::Range<u16>>,
    /// The `Host` the backend gets.
    pub host_header: HostHeader,
    /// Where a share of the requests is copied (mirroring TraefikServices).
    pub mirrors: Vec<Mirror>,
    /// Its own limits on the exchange with the backend, where it has them.
    pub timeouts: Timeouts,
    /// Whether its requests are logged and counted (an IngressRoute route's `observability`).
    pub observed: Observed,
    /// A failover TraefikService's fallback: where requests go when the backend has no ready
    /// endpoint, or answers with one of its statuses.
    pub fallback: Option<Fallback>,
}

/// How a route's endpoint is chosen for each request (a service's `strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin (`wrr`).
    #[default]
    RoundRobin,
    /// Each client address keeps to the endpoint that ranks highest for it (weighted
    /// rendezvous hashing), the same on every replica (`hrw`, a highestRandomWeight).
    ClientIp,
    /// Of two endpoints drawn at random, the one with fewer requests in flight (`p2c`).
    TwoChoices,
    /// The lowest mean time to a response head, times one more than the requests in flight,
    /// over the weight; ties in weighted round-robin order (`leasttime`).
    LeastTime,
}

impl Balance {
    /// Whether its choice reads the endpoints' requests in flight, which are then counted.
    pub fn counts_in_flight(self) -> bool {
        matches!(self, Self::TwoChoices | Self::LeastTime)
    }
}

/// A mirror of a mirroring TraefikService: a share of the requests its main service takes is
/// copied to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// The mirror's backend.
    pub backend: BackendId,
    /// Of the requests its main service takes, the percent copied.
    pub percent: u32,
    /// How a request with a body is copied.
    pub body: MirrorBody,
    /// The members of the route's backend its main service is ([`EndpointSpec::member`]):
    /// all of them, or a part of a weighted split's.
    pub of: std::ops::Range<u16>,
}

/// How a mirror copies a request with a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorBody {
    /// `mirrorBody: false`: its head alone.
    Head,
    /// `mirrorBody: true`: body and all when its declared length is at most this many bytes
    /// (`maxBodySize`; the body is then held whole in memory), else not at all.
    UpTo(u64),
}

/// The fallback of a failover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// The fallback Service's backend.
    pub backend: BackendId,
    /// Answers of the main backend (inclusive ranges) that send a request to the fallback.
    pub statuses: Vec<(u16, u16)>,
    /// A request body of a declared length up to this many bytes is held so that the
    /// request can go to the fallback after such an answer; 0: only requests without a body
    /// do.
    pub hold_body: u64,
}

/// What is recorded of a route's requests; both by default. The entry point's own series
/// count every request whatever its route says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Access log lines.
    pub access_logs: bool,
    /// The service's and the router's series.
    pub metrics: bool,
}

impl Default for Observed {
    fn default() -> Self {
        Self {
            access_logs: true,
            metrics: true,
        }
    }
}

/// A route's own limits on the exchange with its backend (ingress-nginx's
/// `proxy-*-timeout`); where one is unset, the static configuration's
/// `serversTransport.forwardingTimeouts` applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// For a new connection to be made.
    pub connect: Option<Duration>,
    /// For the response head, once the backend has the whole request.
    pub read: Option<Duration>,
    /// For the backend to take more of the request body when it has stopped taking it.
    pub send: Option<Duration>,
}

impl Timeouts {
    /// None of its own: the static configuration's throughout.
    pub const NONE: Self = Self {
        connect: None,
        read: None,
        send: None,
    };
}

/// The `Host` header a backend gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HostHeader {
    /// The client's (Traefik's `passHostHeader: true`, the default).
    #[default]
    Client,
    /// The endpoint's address (`passHostHeader: false`).
    Endpoint,
    /// This one (ingress-nginx's `upstream-vhost`).
    Fixed(http::HeaderValue),
}

/// A sticky-session cookie: its name and attributes. Its value names an endpoint by a hash of
/// its address, the same on every replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickyCookie {
    /// The cookie's name.
    pub name: String,
    /// `Path`; `/` by default.
    pub path: String,
    /// `Domain`, when set.
    pub domain: Option<String>,
    /// `Max-Age` in seconds; a session cookie when unset.
    pub max_age: Option<i64>,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `SameSite`: `None`, `Lax` or `Strict`.
    pub same_site: Option<String>,
}

impl StickyCookie {
    /// The `Set-Cookie` value naming the endpoint whose sticky value is `value`.
    pub fn set_cookie(&self, value: &str) -> String {
        let mut out = format!("{}={value}; Path={}", self.name, self.path);
        if let Some(d) = &self.domain {
            out.push_str(&format!("; Domain={d}"));
        }
        if let Some(age) = self.max_age {
            out.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        if let Some(s) = &self.same_site {
            out.push_str(&format!("; SameSite={s}"));
        }
        out
    }

    /// This cookie's value in a request's `Cookie` headers.
    pub fn value_in<'h>(&self, headers: &'h http::HeaderMap) -> Option<&'h str> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.name)
            .map(|(_, value)| value.trim_matches('"'))
    }
}

/// The host part of an Ingress rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostMatch {
    /// A lowercase DNS name.
    Exact(String),
    /// `*.example.com`, stored as `example.com`: exactly one more label.
    Wildcard(String),
    /// A rule without a host.
    Any,
}

/// The path part of an Ingress rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathMatch {
    /// Case-sensitive, trailing slash significant.
    Exact(String),
    /// Element-wise prefix, stored without a trailing slash (`/` is the empty string).
    Prefix(String),
}

/// A Service port, as an Ingress names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    /// The Service's name.
    pub name: String,
    /// The Service's port.
    pub port: PortRef,
}

/// A Service port by number or by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortRef {
    /// `port.number`.
    Number(u16),
    /// `port.name`.
    Name(String),
}

/// A Service port in a namespace: the identity of a backend, stable across reloads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId {
    /// The namespace of the Service.
    pub namespace: String,
    /// The Service and its port.
    pub service: ServiceRef,
    /// For an HTTPS backend, what its TLS settings come from (`https`, or the transport's
    /// name): the same Service port over plain HTTP and HTTPS are two backends.
    pub scheme: Option<String>,
    /// Reached at the Service's cluster IP rather than at its endpoints (ingress-nginx's
    /// `service-upstream`, Traefik's `nativeLB`): kube-proxy picks the endpoint.
    pub cluster_ip: bool,
}

impl BackendId {
    /// fjord's own API and dashboard (`api@internal`, `dashboard@internal`): served by the
    /// process, not by endpoints. No Service has an empty namespace, so it names no other.
    pub fn internal() -> Self {
        Self {
            namespace: String::new(),
            service: ServiceRef {
                name: "api@internal".into(),
                port: PortRef::Number(0),
            },
            scheme: None,
            cluster_ip: false,
        }
    }

    /// Whether this is [`BackendId::internal`].
    pub fn is_internal(&self) -> bool {
        self.namespace.is_empty()
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_internal() {
            return f.write_str(&self.service.name);
        }
        write!(f, "{}/{}:", self.namespace, self.service.name)?;
        match &self.service.port {
            PortRef::Number(n) => write!(f, "{n}")?,
            PortRef::Name(n) => write!(f, "{n}")?,
        }
        if let Some(scheme) = &self.scheme {
            write!(f, "@{scheme}")?;
        }
        if self.cluster_ip {
            write!(f, "@cluster-ip")?;
        }
        Ok(())
    }
}

/// A backend's endpoints; when there are none, why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendSpec {
    /// The ready endpoints; empty when none is.
    pub endpoints: Vec<EndpointSpec>,
    /// Why there are no endpoints, when there are none.
    pub unavailable: Option<String>,
    /// TLS to the endpoints (HTTPS backends).
    pub tls: Option<Arc<BackendTls>>,
    /// HTTP/2 to the endpoints (gRPC backends: `h2c`, or over TLS), rather than HTTP/1.1.
    pub http2: bool,
    /// The weighted Services (namespace, Service, weight) of a backend made of several, for
    /// resolving them again when only endpoints change; empty for one Service's.
    pub members: Vec<(String, ServiceRef, u32)>,
}

/// How fjord speaks TLS to a backend's endpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendTls {
    /// The name the endpoints' certificate is checked against (and sent as SNI); the
    /// endpoint's address when unset.
    pub server_name: Option<String>,
    /// Trust, client certificate, verification.
    pub client: middleware::ClientTls,
}

impl BackendSpec {
    /// No endpoints, and why.
    pub fn unavailable(why: String) -> Self {
        Self {
            endpoints: Vec::new(),
            unavailable: Some(why),
            tls: None,
            http2: false,
            members: Vec::new(),
        }
    }
}

/// One endpoint of a backend, with its share of requests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EndpointSpec {
    /// Where requests are sent.
    pub addr: EndpointAddr,
    /// Relative share of requests; at least 1.
    pub weight: u32,
    /// Which of its backend's [`BackendSpec::members`] it is an endpoint of (0 for a
    /// backend of one Service).
    pub member: u16,
}

/// An endpoint's address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointAddr {
    /// An address and port from an EndpointSlice.
    Ip(SocketAddr),
    /// An `ExternalName` Service, resolved when connecting.
    Dns {
        /// The DNS name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl fmt::Display for EndpointAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointAddr::Ip(addr) => write!(f, "{addr}"),
            EndpointAddr::Dns { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A certificate ready to serve, and the names it is served for.
#[derive(Clone, Debug)]
pub struct TlsCert {
    /// `namespace/name` of the Secret.
    pub secret: String,
    /// SNI names (`*.example.com` allowed): the Ingress's `spec.tls[].hosts`, or the
    /// certificate's own DNS names when those are empty.
    pub names: Vec<String>,
    /// The chain and key, ready for rustls.
    pub key: Arc<CertifiedKey>,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
}
