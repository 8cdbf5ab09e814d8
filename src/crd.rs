//! fjord's own kinds, `fjord.dev/v1alpha1` IngressRoute and Middleware, with the field names
//! Traefik's CRDs use, so moving a cluster over is a change of `apiVersion`. The CRD manifests
//! in `deploy/crds/` are generated from these types.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Rule-based routes: `match` rules over host, path, headers, method, query and client IP.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "fjord.dev",
    version = "v1alpha1",
    kind = "IngressRoute",
    namespaced,
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressRouteSpec {
    /// Entry points the routes listen on; all of them when empty.
    #[serde(default)]
    pub entry_points: Vec<String>,
    pub routes: Vec<Route>,
    pub tls: Option<RouteTls>,
    /// Traefik's multi-layer routing: read to be refused by name.
    #[serde(default)]
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub parent_refs: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// The rule, e.g. ``Host(`a.example.com`) && PathPrefix(`/api`)``.
    #[serde(rename = "match")]
    pub rule: String,
    /// Always `Rule`.
    pub kind: Option<String>,
    /// The rule language: `v3`, the only one fjord reads (Traefik v2's is refused).
    pub syntax: Option<String>,
    /// Higher is tried first; default the length of the rule.
    pub priority: Option<i64>,
    #[serde(default)]
    pub middlewares: Vec<MiddlewareRef>,
    #[serde(default)]
    pub services: Vec<RouteService>,
    /// What is recorded of the route's requests.
    pub observability: Option<Observability>,
}

/// A route's access logs and metrics switched off (both on by default). fjord has no tracing:
/// `tracing` and `traceVerbosity` are read and switch nothing.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Observability {
    pub access_logs: Option<bool>,
    pub metrics: Option<bool>,
    pub tracing: Option<bool>,
    /// `minimal` or `detailed`.
    pub trace_verbosity: Option<String>,
}

/// A Middleware by name, in the route's namespace unless `namespace` says otherwise.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MiddlewareRef {
    pub name: String,
    pub namespace: Option<String>,
}

/// A Service port, with its share of the route's traffic.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteService {
    /// `Service` (the default); `TraefikService` is not supported.
    pub kind: Option<String>,
    pub name: String,
    /// The Service port, by number or name; required for a Service.
    pub port: Option<IntOrString>,
    /// Relative share of requests; default 1.
    pub weight: Option<u32>,
    /// Another namespace than the route's; must be allowed by configuration.
    pub namespace: Option<String>,
    /// Sticky sessions: a cookie keeps a client on one endpoint.
    pub sticky: Option<Sticky>,
    /// Whether the backend gets the client's `Host` (default) or the endpoint's address.
    pub pass_host_header: Option<bool>,
    /// `http` (the default) or `https` to the endpoints.
    pub scheme: Option<String>,
    /// A ServersTransport in the route's namespace: how TLS to the endpoints is checked.
    pub servers_transport: Option<String>,
    /// Requests go to the Service's cluster IP, kube-proxy picking the endpoint, rather than
    /// to its endpoints (default false).
    #[serde(rename = "nativeLB")]
    pub native_lb: Option<bool>,
    /// How an endpoint is chosen: `wrr` (smooth weighted round robin, the default;
    /// `RoundRobin` is its deprecated name), `p2c` (of two endpoints drawn at random, the one
    /// with fewer requests in flight), `hrw` (each client address keeps to its
    /// highest-ranked endpoint) or `leasttime` (the lowest mean time to a response head,
    /// weighed by requests in flight and weight).
    pub strategy: Option<String>,
    /// How responses are passed on: fjord sends each chunk as it comes, whatever the
    /// `flushInterval`.
    pub response_forwarding: Option<ResponseForwarding>,
    /// Middlewares run after the route's, on requests to this service. A route runs one
    /// chain, so its services must agree on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middlewares: Vec<MiddlewareRef>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseForwarding {
    pub flush_interval: Option<IntOrString>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sticky {
    pub cookie: Option<StickyCookie>,
}

/// The sticky-session cookie.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StickyCookie {
    /// Default: `_` and a hash of the service.
    pub name: Option<String>,
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
    /// `none`, `lax` or `strict`.
    pub same_site: Option<String>,
    /// Seconds; a session cookie when unset (0 too).
    pub max_age: Option<i64>,
    /// Default `/`.
    pub path: Option<String>,
    pub domain: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteTls {
    pub secret_name: Option<String>,
    pub cert_resolver: Option<String>,
    #[serde(default)]
    pub domains: Vec<Domain>,
    /// The TLSOption its hosts are served with.
    pub options: Option<TlsOptionRef>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Domain {
    pub main: String,
    #[serde(default)]
    pub sans: Vec<String>,
}

/// How fjord speaks to a service's endpoints over TLS: the name their certificate is checked
/// against, the CAs trusted, a client certificate, or no check.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "fjord.dev",
    version = "v1alpha1",
    kind = "ServersTransport",
    namespaced,
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServersTransportSpec {
    /// Sent as SNI and checked against the certificate; the endpoint's address otherwise.
    pub server_name: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    /// CAs to trust instead of the system's: Secrets (`tls.ca`, `ca.crt` or `ca`).
    #[serde(default, rename = "rootCAs")]
    pub root_cas: Vec<RootCa>,
    /// Traefik v2's spelling of `rootCAs`: Secret names.
    #[serde(default, rename = "rootCAsSecrets")]
    pub root_cas_secrets: Vec<String>,
    /// `kubernetes.io/tls` Secrets with a client certificate (the first is used).
    #[serde(default)]
    pub certificates_secrets: Vec<String>,
    /// Not held per transport (the static configuration's applies): a warning.
    pub max_idle_conns_per_host: Option<i64>,
    pub forwarding_timeouts: Option<TransportTimeouts>,
    #[serde(rename = "disableHTTP2")]
    pub disable_http2: Option<bool>,
    #[serde(rename = "peerCertURI")]
    pub peer_cert_uri: Option<String>,
    pub spiffe: Option<serde_json::Value>,
}

/// A transport's limits on the exchange with its endpoints. `dialTimeout`,
/// `responseHeaderTimeout` and `writeTimeout` are held per route; the others are read with a
/// warning saying where fjord holds them.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransportTimeouts {
    pub dial_timeout: Option<IntOrString>,
    pub response_header_timeout: Option<IntOrString>,
    pub write_timeout: Option<IntOrString>,
    pub read_timeout: Option<IntOrString>,
    pub idle_conn_timeout: Option<IntOrString>,
    pub read_idle_timeout: Option<IntOrString>,
    pub ping_timeout: Option<IntOrString>,
}

/// The certificates served when no route's names the handshake's: the one named `default`
/// (in any namespace) is read, as in Traefik.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "fjord.dev",
    version = "v1alpha1",
    kind = "TLSStore",
    namespaced,
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsStoreSpec {
    /// The certificate for a handshake whose name no other certificate has.
    pub default_certificate: Option<StoreCertificate>,
    /// More certificates, served by the names they hold.
    #[serde(default)]
    pub certificates: Vec<StoreCertificate>,
    /// Traefik's ACME-generated default: read to be refused by name.
    pub default_generated_cert: Option<serde_json::Value>,
}

/// A `kubernetes.io/tls` Secret in the TLSStore's namespace.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreCertificate {
    pub secret_name: String,
}

/// How TLS is spoken with clients of the hosts that name it: versions, cipher suites, groups,
/// client certificates, ALPN. A TLSOption named `default` applies to every host that names
/// none.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "fjord.dev",
    version = "v1alpha1",
    kind = "TLSOption",
    namespaced,
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsOptionSpec {
    /// `VersionTLS12` (the default) or `VersionTLS13`.
    pub min_version: Option<String>,
    /// `VersionTLS12` or `VersionTLS13` (the default).
    pub max_version: Option<String>,
    /// IANA names (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, `TLS_AES_256_GCM_SHA384`), in
    /// order of preference; TLS 1.3's are always on when TLS 1.3 is.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// `X25519`, `CurveP256`, `CurveP384`, `X25519MLKEM768`, in order of preference.
    #[serde(default)]
    pub curve_preferences: Vec<String>,
    pub client_auth: Option<ClientAuth>,
    /// Refuse a handshake whose name no certificate has, rather than answer with the default
    /// certificate.
    pub sni_strict: Option<bool>,
    /// Protocols offered in ALPN, most preferred first (default `h2`, `http/1.1`).
    #[serde(default)]
    pub alpn_protocols: Vec<String>,
    /// Deprecated in Traefik; fjord always prefers its own order.
    pub prefer_server_cipher_suites: Option<bool>,
    pub disable_session_tickets: Option<bool>,
}

/// Client certificates: checked against the CAs of the named Secrets (`tls.ca`, `ca.crt` or
/// `ca`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAuth {
    #[serde(default)]
    pub secret_names: Vec<String>,
    /// `NoClientCert` (the default), `VerifyClientCertIfGiven` or
    /// `RequireAndVerifyClientCert`; the types that take a certificate unchecked are refused.
    pub client_auth_type: Option<String>,
}

/// A TLSOption by name, in the route's namespace unless `namespace` says otherwise.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsOptionRef {
    pub name: String,
    pub namespace: Option<String>,
}

/// A CA to trust: a Secret's or a ConfigMap's (`tls.ca`, `ca.crt` or `ca`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RootCa {
    pub secret: Option<String>,
    pub config_map: Option<String>,
}

/// A service made of services: a weighted split, or a main service whose requests are copied
/// to mirrors. Named from an IngressRoute's `services[]` with `kind: TraefikService`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "fjord.dev",
    version = "v1alpha1",
    kind = "TraefikService",
    namespaced,
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TraefikServiceSpec {
    pub weighted: Option<Weighted>,
    pub mirroring: Option<Mirroring>,
    pub failover: Option<Failover>,
    pub highest_random_weight: Option<HighestRandomWeight>,
}

/// Each client address kept to one of the services, chosen by weighted rendezvous hashing.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HighestRandomWeight {
    #[serde(default)]
    pub services: Vec<RouteService>,
}

/// Requests split among services by weight.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Weighted {
    #[serde(default)]
    pub services: Vec<RouteService>,
    pub sticky: Option<Sticky>,
}

/// Requests served by one service and copied to others.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mirroring {
    /// `Service` (the default) or `TraefikService`.
    pub kind: Option<String>,
    pub name: String,
    pub port: Option<IntOrString>,
    pub namespace: Option<String>,
    /// Whether a request's body is copied too (default true; bodies are not copied, so such
    /// requests are not mirrored unless this is false).
    pub mirror_body: Option<bool>,
    pub max_body_size: Option<i64>,
    #[serde(default)]
    pub mirrors: Vec<Mirror>,
}

/// A mirror: a share of the requests, copied.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mirror {
    pub kind: Option<String>,
    pub name: String,
    pub port: Option<IntOrString>,
    pub namespace: Option<String>,
    /// The share of requests copied, 0 to 100.
    pub percent: Option<u32>,
}

/// A main service, and a fallback for when it has no ready endpoint or answers with one of
/// `errors.status` (Traefik v3.7's shape).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Failover {
    pub service: RouteService,
    pub fallback: RouteService,
    pub errors: Option<FailoverErrors>,
}

/// Which answers of the main service send the request to the fallback.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailoverErrors {
    /// Statuses (`503`) and ranges (`500-504`).
    #[serde(default)]
    pub status: Vec<String>,
    /// A request body of a declared length up to this many bytes is held, so that the
    /// request can go to the fallback after an error status. Unset, 0 or -1: only requests
    /// without a body do.
    pub max_request_body_bytes: Option<i64>,
}

/// One middleware: exactly one of the fields is set.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "fjord.dev",
    version = "v1alpha1",
    kind = "Middleware",
    namespaced,
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MiddlewareSpec {
    pub rate_limit: Option<RateLimit>,
    pub in_flight_req: Option<InFlightReq>,
    pub headers: Option<Headers>,
    pub redirect_scheme: Option<RedirectScheme>,
    pub redirect_regex: Option<RedirectRegex>,
    pub strip_prefix: Option<StripPrefix>,
    pub strip_prefix_regex: Option<StripPrefixRegex>,
    pub add_prefix: Option<AddPrefix>,
    pub replace_path: Option<ReplacePath>,
    pub replace_path_regex: Option<ReplacePathRegex>,
    pub basic_auth: Option<BasicAuth>,
    pub digest_auth: Option<DigestAuth>,
    pub forward_auth: Option<ForwardAuth>,
    #[serde(rename = "ipAllowList")]
    pub ip_allow_list: Option<IpAllowList>,
    /// Deprecated: `ipAllowList` by its old name, accepted with a warning.
    #[serde(rename = "ipWhiteList")]
    pub ip_white_list: Option<IpAllowList>,
    pub compress: Option<Compress>,
    pub buffering: Option<Buffering>,
    pub retry: Option<Retry>,
    pub errors: Option<Errors>,
    pub chain: Option<Chain>,
    pub encoded_characters: Option<EncodedCharacters>,
    pub redirect_trailing_slash: Option<RedirectTrailingSlash>,
    pub query_parameters: Option<QueryParameters>,
    #[serde(rename = "passTLSClientCert")]
    pub pass_tls_client_cert: Option<PassTlsClientCert>,
    pub circuit_breaker: Option<CircuitBreaker>,
    /// A response without `Content-Type` gets one guessed from its first bytes.
    pub content_type: Option<ContentType>,
    pub grpc_web: Option<GrpcWeb>,
}

/// gRPC-Web calls from browsers, as gRPC to an HTTP/2 backend.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcWeb {
    /// Origins whose pages may call (`*`: any).
    #[serde(default)]
    pub allow_origins: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContentType {
    /// Deprecated in Traefik v3: `false` turns detection off (the middleware does nothing).
    pub auto_detect: Option<bool>,
}

/// Requests answered by fjord while the responses of the last ten seconds meet `expression`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    /// `NetworkErrorRatio() > 0.3`, `ResponseCodeRatio(500, 600, 0, 600) > 0.25`,
    /// `LatencyAtQuantileMS(50.0) > 100`, combined with `&&` and `||`.
    pub expression: String,
    /// Default 100ms.
    pub check_period: Option<IntOrString>,
    /// Default 10s.
    pub fallback_duration: Option<IntOrString>,
    /// Default 10s.
    pub recovery_duration: Option<IntOrString>,
    /// Default 503.
    pub response_code: Option<u16>,
}

/// The client's certificates (from a TLSOption's `clientAuth`) passed to the backend in
/// headers.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PassTlsClientCert {
    /// Each certificate, base64 DER, in `X-Forwarded-Tls-Client-Cert`.
    pub pem: Option<bool>,
    /// Chosen fields in `X-Forwarded-Tls-Client-Cert-Info`.
    pub info: Option<TlsClientCertInfo>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsClientCertInfo {
    pub not_after: Option<bool>,
    pub not_before: Option<bool>,
    pub sans: Option<bool>,
    pub serial_number: Option<bool>,
    pub subject: Option<TlsClientCertSubject>,
    pub issuer: Option<TlsClientCertIssuer>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsClientCertSubject {
    pub country: Option<bool>,
    pub province: Option<bool>,
    pub locality: Option<bool>,
    pub organization: Option<bool>,
    pub organizational_unit: Option<bool>,
    pub common_name: Option<bool>,
    pub serial_number: Option<bool>,
    pub domain_component: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsClientCertIssuer {
    pub country: Option<bool>,
    pub province: Option<bool>,
    pub locality: Option<bool>,
    pub organization: Option<bool>,
    pub common_name: Option<bool>,
    pub serial_number: Option<bool>,
    pub domain_component: Option<bool>,
}

/// Percent-encoded characters a request path may hold; each left out (or false) is refused
/// with a 400.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncodedCharacters {
    /// `%2F`.
    pub allow_encoded_slash: Option<bool>,
    /// `%5C`.
    pub allow_encoded_back_slash: Option<bool>,
    /// `%00`.
    pub allow_encoded_null_character: Option<bool>,
    /// `%3B`.
    pub allow_encoded_semicolon: Option<bool>,
    /// `%25`.
    pub allow_encoded_percent: Option<bool>,
    /// `%3F`.
    pub allow_encoded_question_mark: Option<bool>,
    /// `%23`.
    pub allow_encoded_hash: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedirectTrailingSlash {
    /// `add` or `remove`.
    pub mode: String,
    pub permanent: Option<bool>,
}

/// Query parameters deleted, then set, then added, before the request is forwarded.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryParameters {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub delete: Vec<String>,
}

/// Token bucket: `average` requests per `period` on average, bursts of up to `burst`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per period; 0 disables the limit.
    #[serde(default)]
    pub average: u64,
    /// A duration (`1s`, `1m`) or seconds; default 1s.
    pub period: Option<IntOrString>,
    /// Default 1.
    pub burst: Option<u64>,
    pub source_criterion: Option<SourceCriterion>,
    /// How the limit holds across replicas without Redis: `local` (the default; each replica
    /// lets the whole limit through) or `perReplica` (divided by the live replicas).
    pub distribution: Option<String>,
    /// Buckets shared by every replica in Redis or Valkey: the limit is exact cluster-wide.
    pub redis: Option<RateLimitRedis>,
}

/// The Redis (or Valkey) server of a cluster-wide rate limit.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitRedis {
    /// `host:port`: one server (a Service in front of the primary), or several nodes of a Redis
    /// Cluster, which tell fjord the rest (as Traefik reads several).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// A Secret in the Middleware's namespace with `password` (and optionally `username`).
    pub secret: Option<String>,
    /// The database selected after connecting; default 0.
    pub db: Option<i64>,
    pub tls: Option<ClientTls>,
    /// Longest a connection attempt takes; default 1s.
    pub dial_timeout: Option<IntOrString>,
    /// Longest a request waits for Redis before `onError` decides; default 100ms.
    pub read_timeout: Option<IntOrString>,
    /// Accepted for Traefik's sake: `readTimeout` bounds the whole round trip.
    pub write_timeout: Option<IntOrString>,
    /// Multiplexed connections, each carrying many requests at once; default 2.
    pub pool_size: Option<u32>,
    /// Accepted for Traefik's sake: connections are multiplexed, so none sits idle.
    pub min_idle_conns: Option<u32>,
    /// Caps `poolSize`.
    pub max_active_conns: Option<u32>,
    /// When Redis cannot answer in time: `local` (the default: this replica's own buckets,
    /// with the limit divided by the live replicas), `allow` or `deny`.
    pub on_error: Option<String>,
    /// Traefik's: `true` is `onError: deny`, `false` is `onError: allow`.
    pub deny_on_error: Option<bool>,
}

/// What counts as one client; default the client IP.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceCriterion {
    pub ip_strategy: Option<IpStrategy>,
    pub request_header_name: Option<String>,
    pub request_host: Option<bool>,
}

/// Which address in `X-Forwarded-For` is the client.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpStrategy {
    /// The address `depth` from the right of `X-Forwarded-For`.
    pub depth: Option<u32>,
    /// Addresses skipped from the right of `X-Forwarded-For`.
    #[serde(default, rename = "excludedIPs")]
    pub excluded_ips: Vec<String>,
    /// An IPv6 client counts as the first address of its subnet of this many bits.
    #[serde(rename = "ipv6Subnet")]
    pub ipv6_subnet: Option<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InFlightReq {
    pub amount: u64,
    pub source_criterion: Option<SourceCriterion>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    /// Set on the request; an empty value removes the header.
    #[serde(default)]
    pub custom_request_headers: BTreeMap<String, String>,
    /// Set on the response; an empty value removes the header.
    #[serde(default)]
    pub custom_response_headers: BTreeMap<String, String>,
    pub access_control_allow_credentials: Option<bool>,
    #[serde(default)]
    pub access_control_allow_headers: Vec<String>,
    #[serde(default)]
    pub access_control_allow_methods: Vec<String>,
    #[serde(default)]
    pub access_control_allow_origin_list: Vec<String>,
    #[serde(default)]
    pub access_control_expose_headers: Vec<String>,
    pub access_control_max_age: Option<i64>,
    pub add_vary_header: Option<bool>,
    pub sts_seconds: Option<i64>,
    pub sts_include_subdomains: Option<bool>,
    pub sts_preload: Option<bool>,
    pub frame_deny: Option<bool>,
    pub content_type_nosniff: Option<bool>,
    pub content_security_policy: Option<String>,
    pub referrer_policy: Option<String>,
    /// `X-Frame-Options` with this value (over `frameDeny`'s `DENY`).
    pub custom_frame_options_value: Option<String>,
    /// `X-XSS-Protection: 1; mode=block`, or `customBrowserXSSValue`.
    pub browser_xss_filter: Option<bool>,
    #[serde(rename = "customBrowserXSSValue")]
    pub custom_browser_xss_value: Option<String>,
    pub content_security_policy_report_only: Option<String>,
    pub permissions_policy: Option<String>,
    /// `Strict-Transport-Security` over plain HTTP too: what fjord does anyway.
    #[serde(rename = "forceSTSHeader")]
    pub force_sts_header: Option<bool>,
    /// Deprecated: `Feature-Policy`, sent as asked; use `permissionsPolicy`.
    pub feature_policy: Option<String>,
    /// Hosts a request may name; fjord does not check them, so a Middleware setting it is
    /// refused (it restricts access).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Removed in Traefik v3: accepted with a warning saying what to use instead.
    pub ssl_redirect: Option<bool>,
    pub ssl_temporary_redirect: Option<bool>,
    pub ssl_host: Option<String>,
    pub ssl_force_host: Option<bool>,
    pub is_development: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedirectScheme {
    pub scheme: String,
    pub port: Option<String>,
    pub permanent: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedirectRegex {
    pub regex: String,
    pub replacement: String,
    pub permanent: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StripPrefix {
    pub prefixes: Vec<String>,
    /// Deprecated in Traefik v3, where it does nothing: accepted with a warning.
    pub force_slash: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StripPrefixRegex {
    pub regex: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddPrefix {
    pub prefix: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplacePath {
    pub path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplacePathRegex {
    pub regex: String,
    pub replacement: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// A Secret in the Middleware's namespace whose `users` holds htpasswd lines.
    pub secret: Option<String>,
    /// htpasswd lines (`user:hash`) in the Middleware itself.
    #[serde(default)]
    pub users: Vec<String>,
    pub realm: Option<String>,
    pub remove_header: Option<bool>,
    /// A request header the backend gets the authenticated user's name in.
    pub header_field: Option<String>,
}

/// Digest authentication (RFC 7616, MD5): htdigest `user:realm:HA1` lines.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DigestAuth {
    /// A Secret in the Middleware's namespace whose `users` holds htdigest lines.
    pub secret: Option<String>,
    /// htdigest lines in the Middleware itself.
    #[serde(default)]
    pub users: Vec<String>,
    /// Default `fjord`; only users of this realm can log in.
    pub realm: Option<String>,
    pub remove_header: Option<bool>,
    /// A request header the backend gets the authenticated user's name in.
    pub header_field: Option<String>,
}

/// Delegates authentication to a server: a 2xx from it lets the request through.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForwardAuth {
    /// `http://` or `https://` URL of the authentication server.
    pub address: String,
    /// Take the client's `X-Forwarded-*` headers as they are (only from a peer in the entry
    /// point's `forwardedHeaders.trustedIPs`).
    pub trust_forward_header: Option<bool>,
    /// Copied from the authentication server's answer onto the request.
    #[serde(default)]
    pub auth_response_headers: Vec<String>,
    /// Response headers matching it are copied onto the request (and the client's removed).
    pub auth_response_headers_regex: Option<String>,
    /// Only these request headers are sent to the authentication server; all when empty.
    #[serde(default)]
    pub auth_request_headers: Vec<String>,
    /// Cookies the authentication server sets that are added to the client's response.
    #[serde(default)]
    pub add_auth_cookies_to_response: Vec<String>,
    /// A header of the authentication server's answer holding the user's name, for the
    /// access log.
    pub header_field: Option<String>,
    /// Send the request body too (not supported: refused).
    pub forward_body: Option<bool>,
    pub max_body_size: Option<i64>,
    /// Pass a relative `Location` on as it is, not resolved against `address`.
    pub preserve_location_header: Option<bool>,
    /// Ask with the client's method rather than GET.
    pub preserve_request_method: Option<bool>,
    pub tls: Option<ClientTls>,
}

/// TLS to a server fjord calls (an authentication server, Redis).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTls {
    /// A Secret with the CA certificates to trust (`tls.ca`, `ca.crt` or `ca`).
    pub ca_secret: Option<String>,
    /// A `kubernetes.io/tls` Secret with a client certificate, for mutual TLS.
    pub cert_secret: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    /// Deprecated in Traefik and meaningless for a client: accepted with a warning.
    pub ca_optional: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpAllowList {
    pub source_range: Vec<String>,
    pub ip_strategy: Option<IpStrategy>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Compress {
    #[serde(default)]
    pub excluded_content_types: Vec<String>,
    pub min_response_body_bytes: Option<u64>,
    /// Offered encodings, in order: `gzip`, `br` (`zstd` is not offered, with a warning).
    #[serde(default)]
    pub encodings: Vec<String>,
    /// Used when the client sends no `Accept-Encoding`, or `*`.
    pub default_encoding: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Buffering {
    pub max_request_body_bytes: Option<u64>,
    /// fjord streams bodies rather than hold them: the fields below are read, each with a
    /// warning saying what fjord does instead.
    pub mem_request_body_bytes: Option<i64>,
    pub max_response_body_bytes: Option<i64>,
    pub mem_response_body_bytes: Option<i64>,
    pub retry_expression: Option<String>,
    /// What fjord always does (it streams request and response bodies): accepted.
    pub disable_request_buffer: Option<bool>,
    pub disable_response_buffer: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    pub attempts: u32,
    pub initial_interval: Option<IntOrString>,
    /// No retry starts past this long after the request began.
    pub timeout: Option<IntOrString>,
    /// Response statuses (`503`, `500-599`) retried as a failure is.
    #[serde(default)]
    pub status: Vec<String>,
    /// A request body of a declared length up to this many bytes is held, so that the
    /// request can be retried. Unset, 0 or -1: requests with a body are not retried.
    pub max_request_body_bytes: Option<i64>,
    /// Only `status` is retried, not a broken connection or a late response.
    pub disable_retry_on_network_error: Option<bool>,
    /// Methods that are not idempotent (a POST without a body) are retried too.
    pub retry_non_idempotent_method: Option<bool>,
}

/// Error pages: a response whose status is listed is answered with a page from a service.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Errors {
    /// Statuses and ranges: `500-599`, `404`.
    #[serde(default)]
    pub status: Vec<String>,
    pub service: Option<ErrorsService>,
    /// The page's path and query at the service; `{status}` and `{originalStatus}` are
    /// replaced. Default `/`.
    pub query: Option<String>,
    /// Status → the status the client gets instead (`"418": 404`, or a range `"500-599"`).
    #[serde(default)]
    /// Each to a status, written as a number or a string.
    pub status_rewrites: BTreeMap<String, IntOrString>,
}

/// The service error pages come from.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorsService {
    pub name: String,
    pub port: Option<IntOrString>,
    pub namespace: Option<String>,
    /// `Service` (the default); a TraefikService is refused.
    pub kind: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Chain {
    pub middlewares: Vec<MiddlewareRef>,
}

/// The CRD manifests, as `deploy/crds/` holds them.
pub fn manifests() -> Vec<(&'static str, String)> {
    use kube::CustomResourceExt as _;
    [
        ("ingressroutes.yaml", IngressRoute::crd()),
        ("middlewares.yaml", Middleware::crd()),
        ("traefikservices.yaml", TraefikService::crd()),
        ("serverstransports.yaml", ServersTransport::crd()),
        ("tlsoptions.yaml", TLSOption::crd()),
        ("tlsstores.yaml", TLSStore::crd()),
    ]
        .into_iter()
        .map(|(file, crd)| {
            let yaml = serde_saphyr::to_string(&crd).unwrap_or_default();
            (file, format!("# Generated from src/crd.rs by `FJORD_UPDATE_CRDS=1 cargo test --test crds`; do not edit.\n{yaml}"))
        })
        .collect()
}
