//! Static configuration (restart to change), in the shape K3s users know from Traefik. Every key
//! has a default; an unknown key is an error that names it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StaticConfig {
    /// Where fjord accepts traffic; default `web` on `:8080`.
    pub entry_points: BTreeMap<String, EntryPoint>,
    pub admin: Admin,
    pub api: Api,
    pub servers_transport: ServersTransport,
    pub providers: Providers,
    pub log: Log,
    pub access_log: AccessLogConfig,
    pub metrics: MetricsConfig,
    pub tls: Tls,
    /// ACME certificate resolvers by name; Ingresses pick one with `fjord.dev/cert-resolver`,
    /// or get `default` with `kubernetes.io/tls-acme: "true"`.
    pub certificates_resolvers: BTreeMap<String, CertificatesResolver>,
}

impl Default for StaticConfig {
    fn default() -> Self {
        let websecure = EntryPoint {
            address: Address::Any(8443),
            http: EntryPointHttp {
                tls: Some(EntryPointTls::default()),
                ..EntryPointHttp::default()
            },
            ..EntryPoint::default()
        };
        Self {
            entry_points: [
                ("web".to_owned(), EntryPoint::default()),
                ("websecure".to_owned(), websecure),
            ]
            .into(),
            admin: Admin::default(),
            api: Api::default(),
            servers_transport: ServersTransport::default(),
            providers: Providers::default(),
            log: Log::default(),
            access_log: AccessLogConfig::default(),
            metrics: MetricsConfig::default(),
            tls: Tls::default(),
            certificates_resolvers: BTreeMap::new(),
        }
    }
}

/// TLS settings shared by every TLS entry point.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Tls {
    /// Served when no certificate matches the SNI name; without it, a self-signed one is
    /// generated at start.
    pub default_certificate: Option<CertificateFiles>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertificateFiles {
    /// PEM certificate chain.
    pub cert_file: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: std::path::PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertificatesResolver {
    pub acme: Acme,
}

/// An ACME account and how to prove control of names.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Acme {
    /// Contact address for the account.
    #[serde(default)]
    pub email: String,
    /// The CA's directory URL. Default Let's Encrypt production.
    #[serde(default = "lets_encrypt")]
    pub ca_server: String,
    /// PEM files to trust for the directory's own HTTPS (a test CA such as Pebble).
    #[serde(default)]
    pub ca_certificates: Vec<std::path::PathBuf>,
    /// Directory where the account and certificates are kept (key files 0600).
    pub storage: std::path::PathBuf,
    #[serde(default)]
    pub key_type: KeyType,
    /// ACME profile to ask for; empty for the CA's default.
    #[serde(default)]
    pub profile: String,
    pub http_challenge: Option<HttpChallenge>,
    pub tls_challenge: Option<TlsChallenge>,
}

fn lets_encrypt() -> String {
    "https://acme-v02.api.letsencrypt.org/directory".to_owned()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum KeyType {
    #[default]
    EC256,
    EC384,
    RSA2048,
    RSA4096,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpChallenge {
    /// The plain-HTTP entry point the CA reaches (it must listen on port 80 in production).
    pub entry_point: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsChallenge {}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EntryPoint {
    /// `:8080` (every address, IPv6 and IPv4) or `IP:PORT`.
    #[serde(deserialize_with = "address")]
    pub address: Address,
    /// The port clients reach this entry point on, when a host port, a Service or NAT
    /// publishes it on another than it listens on (443 in front of 8443): redirects to it
    /// name this one. Default: the listening port.
    pub exposed_port: Option<u16>,
    pub forwarded_headers: ForwardedHeaders,
    pub transport: EntryPointTransport,
    pub limits: Limits,
    pub http: EntryPointHttp,
}

impl Default for EntryPoint {
    fn default() -> Self {
        Self {
            address: Address::Any(8080),
            exposed_port: None,
            forwarded_headers: ForwardedHeaders::default(),
            transport: EntryPointTransport::default(),
            limits: Limits::default(),
            http: EntryPointHttp::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EntryPointHttp {
    /// Present: the entry point terminates TLS.
    pub tls: Option<EntryPointTls>,
    pub redirections: Redirections,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EntryPointTls {
    /// A client must finish the TLS handshake within this. Default 10s.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
}

impl Default for EntryPointTls {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Redirections {
    /// Redirect requests for hosts that have TLS to another (TLS) entry point.
    pub entry_point: Option<RedirectTo>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedirectTo {
    /// The entry point to redirect to, e.g. `websecure` (its `exposedPort`, else the port it
    /// listens on), or a port, `:443`.
    pub to: String,
    /// Default `https`.
    #[serde(default = "https")]
    pub scheme: String,
    /// 308 when true (the default), 307 when false: both keep the method and body.
    #[serde(default = "yes")]
    pub permanent: bool,
}

impl RedirectTo {
    /// The port `to` names itself, when it is one (`:443`).
    pub fn port(&self) -> Option<u16> {
        self.to.strip_prefix(':')?.parse().ok().filter(|p| *p > 0)
    }
}

fn https() -> String {
    "https".to_owned()
}

fn yes() -> bool {
    true
}

/// A listening address.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Address {
    /// `:PORT`: every local address.
    Any(u16),
    Socket(SocketAddr),
}

impl Address {
    /// Whether only this machine can connect to it.
    pub fn is_loopback(&self) -> bool {
        matches!(self, Self::Socket(a) if a.ip().is_loopback())
    }
}

/// Which clients' `X-Forwarded-*` headers are believed.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ForwardedHeaders {
    /// Peers (IPs or CIDRs) whose `X-Forwarded-*` headers are kept and appended to; from any
    /// other peer they are replaced. Default: none.
    #[serde(rename = "trustedIPs", deserialize_with = "ip_nets")]
    pub trusted_ips: Vec<IpNet>,
    /// Trust every peer. Default false.
    pub insecure: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EntryPointTransport {
    pub responding_timeouts: RespondingTimeouts,
    pub life_cycle: LifeCycle,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RespondingTimeouts {
    /// Time to receive a complete HTTP/1.1 request head, from its first byte; between requests
    /// on a keep-alive connection only `idle_timeout` counts. Default 60s.
    #[serde(deserialize_with = "duration")]
    pub request_header_timeout: Duration,
    /// A connection with no request in flight for this long is closed. Default 180s.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// The longest a request body may pause (408 past it), and the grace before
    /// `limits.minRequestBodyRate` applies; 0s is none. Default 60s. Unlike Traefik's, not a
    /// limit on the whole body: an upload that keeps coming may take as long as it needs.
    #[serde(deserialize_with = "duration")]
    pub read_timeout: Duration,
    /// The longest a client may go without taking more of a response it is sent, or of what a
    /// closing connection has left to flush; past it, the connection is closed. 0s is none.
    /// Default 60s. Like nginx's `send_timeout`, not a limit on the whole response.
    #[serde(deserialize_with = "duration")]
    pub write_timeout: Duration,
}

impl Default for RespondingTimeouts {
    fn default() -> Self {
        Self {
            request_header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(180),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LifeCycle {
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish. Default 10s.
    #[serde(rename = "graceTimeOut", deserialize_with = "duration")]
    pub grace_time_out: Duration,
}

impl Default for LifeCycle {
    fn default() -> Self {
        Self {
            grace_time_out: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Limits {
    /// Largest request head (request line and headers) in bytes; larger gets 431. Default 64 KiB,
    /// at least 8 KiB.
    pub max_request_header_bytes: usize,
    /// Largest request body in bytes; larger gets 413. 0 (the default) is unlimited.
    pub max_request_body_bytes: u64,
    /// Bytes per second a request body must average after its grace
    /// (`respondingTimeouts.readTimeout`); slower gets 408. 0 is no minimum. Default 240, as
    /// Kestrel's: a slow mobile link sends far more, a slowloris far less.
    pub min_request_body_rate: u64,
    /// Client connections open at once (TLS handshakes included); past it, a new connection is
    /// closed as soon as it is accepted, and the ones open keep being served. 0 (the default)
    /// is no limit but the process's file descriptors.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_header_bytes: 64 * 1024,
            max_request_body_bytes: 0,
            min_request_body_rate: 240,
            max_connections: 0,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Admin {
    /// `/healthz` and `/readyz`; default `127.0.0.1:9180`.
    #[serde(deserialize_with = "address")]
    pub address: Address,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            address: Address::Socket(SocketAddr::from(([127, 0, 0, 1], 9180))),
        }
    }
}

/// The read-only API and the dashboard, as Traefik's `api` section: off by default, since
/// they show every route and backend address; on, they never show a secret.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Api {
    /// Serves them: to IngressRoutes as `api@internal` (or `dashboard@internal`), on the admin
    /// server when its address is a loopback one, and on `address` when set.
    pub dashboard: bool,
    /// Serves them on the admin server whatever its address (the pod network, in `deploy/`).
    pub insecure: bool,
    /// A listener of their own, such as `127.0.0.1:9181` for `kubectl port-forward`.
    #[serde(default, deserialize_with = "optional_address")]
    pub address: Option<Address>,
}

/// How fjord talks to backends.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServersTransport {
    pub forwarding_timeouts: ForwardingTimeouts,
    /// Idle keep-alive connections kept per endpoint, shared evenly by the worker threads
    /// (each keeps its share, rounded up). Default 200, as Traefik's.
    pub max_idle_conns_per_host: usize,
}

impl Default for ServersTransport {
    fn default() -> Self {
        Self {
            forwarding_timeouts: ForwardingTimeouts::default(),
            max_idle_conns_per_host: 200,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ForwardingTimeouts {
    /// TCP connect to an endpoint. Default 5s.
    #[serde(deserialize_with = "duration")]
    pub dial_timeout: Duration,
    /// From the request sent to the response head received; past it, 504. Default 60s.
    #[serde(deserialize_with = "duration")]
    pub response_header_timeout: Duration,
    /// An idle pooled connection to an endpoint is closed after this. Default 90s.
    #[serde(deserialize_with = "duration")]
    pub idle_conn_timeout: Duration,
}

impl Default for ForwardingTimeouts {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(5),
            response_header_timeout: Duration::from_secs(60),
            idle_conn_timeout: Duration::from_secs(90),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Providers {
    pub kubernetes_ingress: KubernetesIngress,
    #[serde(rename = "kubernetesCRD")]
    pub kubernetes_crd: KubernetesCrd,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct KubernetesCrd {
    /// Whether an IngressRoute may name Services in other namespaces. Default false.
    pub allow_cross_namespace: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct KubernetesIngress {
    /// The IngressClass name fjord serves even without an IngressClass object. Default `fjord`.
    pub ingress_class: String,
    /// Other controllers' classes served too, so a cluster can move off one (`[nginx]`)
    /// without editing every Ingress at once; their `nginx.ingress.kubernetes.io/*`
    /// annotations are read as on any Ingress. Default none.
    pub also_serve_classes: Vec<String>,
}

impl Default for KubernetesIngress {
    fn default() -> Self {
        Self {
            ingress_class: "fjord".to_owned(),
            also_serve_classes: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Log {
    /// A `RUST_LOG`-style filter (`info`, `fjord=debug,hyper=warn`); `RUST_LOG` wins. Default `info`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// The per-request access log, on stdout.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AccessLogConfig {
    /// Default false.
    pub enabled: bool,
    pub format: AccessLogFormat,
    /// Write `?REDACTED` instead of query strings (tokens often travel there). Default false.
    pub redact_query: bool,
}

/// Metrics settings; Traefik's `metrics.prometheus` shape.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MetricsConfig {
    pub prometheus: PrometheusConfig,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PrometheusConfig {
    /// Adds `fjord_router_*` series, one set per route source: useful, but they multiply the
    /// series count by the number of Ingresses. Default false.
    pub add_routers_labels: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    #[default]
    Json,
    /// Common Log Format, with request id, router, service and duration appended.
    Common,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl StaticConfig {
    /// Reads `path`, or the defaults when there is none.
    /// The configuration in `paths`, in order: a later file's keys override an earlier one's,
    /// maps merged key by key (so a kustomize component can add one file of ACME resolvers
    /// beside the base's). Each file is checked alone first, so an unknown key names its file.
    pub fn load(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let mut merged = serde_json::Value::Object(serde_json::Map::new());
        for path in paths {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            Self::parse(&text).with_context(|| format!("config {}", path.display()))?;
            if !text.trim().is_empty() {
                let value: serde_json::Value = serde_saphyr::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
                merge(&mut merged, value);
            }
        }
        let config: Self = serde_json::from_value(merged).map_err(|e| {
            let files: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            anyhow::anyhow!("config {}: {e}", files.join(" + "))
        })?;
        config.checked()
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?
        };
        config.checked()
    }

    /// What the keys cannot say alone: entry points exist, redirects name one, limits are sane.
    fn checked(self) -> anyhow::Result<Self> {
        let config = self;
        if config.entry_points.is_empty() {
            anyhow::bail!("entryPoints: at least one entry point is needed");
        }
        if !config.api.dashboard && (config.api.insecure || config.api.address.is_some()) {
            anyhow::bail!(
                "api.insecure and api.address say where the API and dashboard are served, but api.dashboard is false: set it to true, or remove them"
            );
        }
        for (name, ep) in &config.entry_points {
            if let Some(to) = &ep.http.redirections.entry_point
                && to.port().is_none()
                && !config.entry_points.contains_key(&to.to)
            {
                anyhow::bail!(
                    "entryPoints.{name}.http.redirections.entryPoint.to: {:?} is neither an entry point nor a port (\":443\")",
                    to.to
                );
            }
            if ep.limits.max_request_header_bytes < 8192 {
                anyhow::bail!(
                    "entryPoints.{name}.limits.maxRequestHeaderBytes {} is below the minimum 8192",
                    ep.limits.max_request_header_bytes
                );
            }
        }
        for (name, r) in &config.certificates_resolvers {
            let acme = &r.acme;
            match (&acme.http_challenge, &acme.tls_challenge) {
                (Some(h), None) => {
                    let ep = config.entry_points.get(&h.entry_point);
                    if ep.is_none_or(|ep| ep.http.tls.is_some()) {
                        anyhow::bail!(
                            "certificatesResolvers.{name}.acme.httpChallenge.entryPoint: {:?} is not a plain-HTTP entry point",
                            h.entry_point
                        );
                    }
                }
                (None, Some(_)) => {
                    if !config.entry_points.values().any(|ep| ep.http.tls.is_some()) {
                        anyhow::bail!(
                            "certificatesResolvers.{name}.acme.tlsChallenge needs a TLS entry point"
                        );
                    }
                }
                _ => anyhow::bail!(
                    "certificatesResolvers.{name}.acme: set exactly one of httpChallenge and tlsChallenge"
                ),
            }
        }
        Ok(config)
    }
}

fn address<'de, D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
    let s = String::deserialize(d)?;
    if let Some(port) = s.strip_prefix(':') {
        return port
            .parse()
            .map(Address::Any)
            .map_err(|_| serde::de::Error::custom(format!("address {s:?}: bad port")));
    }
    s.parse().map(Address::Socket).map_err(|_| {
        serde::de::Error::custom(format!("address {s:?} is not \":PORT\" or \"IP:PORT\""))
    })
}

/// `over` laid over `base`: maps merged key by key, anything else replaced.
fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

fn optional_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Address>, D::Error> {
    address(d).map(Some)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => humantime::parse_duration(&t).map_err(|e| {
            serde::de::Error::custom(format!(
                "duration {t:?}: {e} (use e.g. \"30s\", \"1m\", \"500ms\")"
            ))
        }),
    }
}

fn ip_nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .into_iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IP or CIDR")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_the_api_is_served_needs_it_switched_on() {
        let e = StaticConfig::parse("api: {address: \"127.0.0.1:9181\"}\n").unwrap_err();
        assert!(e.to_string().contains("api.dashboard is false"), "{e}");
        let c =
            StaticConfig::parse("api: {dashboard: true, address: \"127.0.0.1:9181\"}\n").unwrap();
        assert!(c.api.dashboard && c.api.address.is_some());
    }

    #[test]
    fn later_files_override_earlier_ones_maps_merged() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("fjord.yaml");
        let acme = dir.path().join("acme.yaml");
        std::fs::write(
            &base,
            "entryPoints:\n  web: {address: \":8080\"}\nadmin: {address: \"127.0.0.1:9180\"}\nlog: {format: json}\n",
        )
        .unwrap();
        std::fs::write(
            &acme,
            "certificatesResolvers:\n  default:\n    acme: {email: ops@example.com, storage: /var/lib/fjord/acme, httpChallenge: {entryPoint: web}}\nlog: {level: debug}\n",
        )
        .unwrap();
        let c = StaticConfig::load(&[base.clone(), acme.clone()]).unwrap();
        assert!(c.certificates_resolvers.contains_key("default"));
        assert_eq!(c.log.level, "debug");
        assert_eq!(
            c.log.format,
            LogFormat::Json,
            "the base's sibling key is kept"
        );
        assert_eq!(c.entry_points.len(), 1);
        std::fs::write(&acme, "certificatesResolver: {}\n").unwrap();
        let e = format!(
            "{:#}",
            StaticConfig::load(&[base, acme.clone()]).unwrap_err()
        );
        assert!(e.contains(&acme.display().to_string()), "{e}");
        assert!(e.contains("certificatesResolver"), "{e}");
    }

    #[test]
    fn a_redirect_names_an_entry_point_or_a_port() {
        let config = |to: &str| {
            StaticConfig::parse(&format!(
                "entryPoints:\n  web:\n    http: {{redirections: {{entryPoint: {{to: \"{to}\"}}}}}}\n  websecure:\n    exposedPort: 443\n    http: {{tls: {{}}}}\n"
            ))
        };
        assert!(config("websecure").is_ok());
        let port = config(":4443").unwrap();
        let to = port.entry_points["web"]
            .http
            .redirections
            .entry_point
            .as_ref();
        assert_eq!(to.and_then(RedirectTo::port), Some(4443));
        for bad in ["websecur", ":https", ":0"] {
            let e = config(bad).unwrap_err().to_string();
            assert!(
                e.contains("redirections.entryPoint.to") && e.contains(bad),
                "{e}"
            );
        }
    }

    #[test]
    fn defaults_and_traefik_shape() {
        let c = StaticConfig::parse(
            "entryPoints:\n  web:\n    address: \":9000\"\n    forwardedHeaders: {trustedIPs: [10.0.0.0/8, 192.168.1.1]}\n    transport: {lifeCycle: {graceTimeOut: 3s}}\nadmin: {address: \"127.0.0.1:0\"}\n",
        )
        .unwrap();
        let web = &c.entry_points["web"];
        assert_eq!(web.address, Address::Any(9000));
        assert_eq!(web.forwarded_headers.trusted_ips.len(), 2);
        assert_eq!(
            web.transport.life_cycle.grace_time_out,
            Duration::from_secs(3)
        );
        assert_eq!(
            web.transport.responding_timeouts.idle_timeout,
            Duration::from_secs(180)
        );
        assert_eq!(c.providers.kubernetes_ingress.ingress_class, "fjord");
        let defaults = StaticConfig::parse("").unwrap();
        assert_eq!(defaults.entry_points["web"].address, Address::Any(8080));
        assert_eq!(
            defaults.entry_points["websecure"].address,
            Address::Any(8443)
        );
        assert!(defaults.entry_points["websecure"].http.tls.is_some());
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = StaticConfig::parse("entryPoints:\n  web:\n    adress: \":80\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("adress"), "{e:#}");
        let e = StaticConfig::parse("admn: {}\n").unwrap_err();
        assert!(format!("{e:#}").contains("admn"), "{e:#}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = StaticConfig::parse("entryPoints: {web: {address: \"localhost\"}}\n").unwrap_err();
        assert!(format!("{e:#}").contains("\"localhost\""), "{e:#}");
        let e =
            StaticConfig::parse("serversTransport: {forwardingTimeouts: {dialTimeout: soon}}\n")
                .unwrap_err();
        assert!(format!("{e:#}").contains("\"soon\""), "{e:#}");
    }
}
