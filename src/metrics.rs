//! Prometheus metrics, named after Traefik's so existing dashboards and habits carry over:
//! `fjord_entrypoint_*`, `fjord_service_*`, connections, TLS, middlewares, config and
//! certificates, plus the process collector. Never a path or a client address as a label.

use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Method, StatusCode};
use prometheus::core::Collector;
use prometheus::{
    Encoder as _, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Request duration buckets in seconds (Traefik's defaults).
const BUCKETS: &[f64] = &[0.1, 0.3, 1.2, 5.0];

/// All of fjord's metrics, in one registry.
pub struct Metrics {
    registry: Registry,
    entrypoint: Family,
    service: Family,
    router: Family,
    /// `fjord_service_retries_total`, by service.
    pub service_retries: IntCounterVec,
    /// `fjord_service_connect_errors_total`, by service and kind.
    pub service_connect_errors: IntCounterVec,
    /// `fjord_service_server_up`, by service and endpoint.
    pub service_server_up: IntGaugeVec,
    /// `fjord_open_connections`, by entry point and protocol.
    pub open_connections: IntGaugeVec,
    /// `fjord_worker_connections_total`, by worker thread.
    pub worker_connections: IntCounterVec,
    /// `fjord_entrypoint_connections_refused_total`, by entry point: closed at once, its
    /// `maxConnections` reached.
    pub connections_refused: IntCounterVec,
    /// `fjord_tls_handshakes_total`, by entry point, TLS version and result.
    pub tls_handshakes: IntCounterVec,
    /// `fjord_middleware_rejections_total`, by middleware and reason.
    pub middleware_rejections: IntCounterVec,
    /// `fjord_config_reloads_total`, by result.
    pub config_reloads: IntCounterVec,
    /// `fjord_config_last_reload_success_timestamp_seconds`.
    pub config_last_success: Gauge,
    /// `fjord_config_diagnostics`, by severity.
    pub config_diagnostics: IntGaugeVec,
    /// `fjord_tls_certs_not_after_seconds`, by name.
    pub tls_certs_not_after: GaugeVec,
    /// `fjord_acme_orders_total`, by result.
    pub acme_orders: IntCounterVec,
    /// `fjord_acme_certificate_expiry_timestamp_seconds`, by resolver and certificate.
    pub acme_certificate_expiry: GaugeVec,
    /// `fjord_acme_lease_held`, by resolver and certificate: 1 on the replica ordering it.
    pub acme_lease_held: IntGaugeVec,
    /// `fjord_access_log_dropped_total`.
    pub access_log_dropped: prometheus::IntCounter,
    /// `fjord_kubernetes_watch_restarts_total`, by resource.
    pub kubernetes_watch_restarts: IntCounterVec,
    /// `fjord_kubernetes_last_sync_timestamp_seconds`, by resource.
    pub kubernetes_last_sync: GaugeVec,
    /// `fjord_rate_limit_backend_errors_total`, by middleware and reason: Redis did not answer
    /// a rate limit in time, and `onError` decided.
    pub rate_limit_backend_errors: IntCounterVec,
    /// `fjord_replicas`: live fjord replicas, as this one counts them (1 standalone).
    pub replicas: IntGauge,
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Registers `metric` and hands it back. Names and labels are constants, so building one cannot
/// fail: a failure is a bug caught by the first test that touches metrics.
fn registered<T: Collector + Clone + 'static>(r: &Registry, metric: prometheus::Result<T>) -> T {
    let m = metric.unwrap_or_else(|e| panic!("metric: {e}"));
    let _ = r.register(Box::new(m.clone()));
    m
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(r, IntCounterVec::new(Opts::new(name, help), labels))
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
    registered(r, HistogramVec::new(opts, labels))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(r, IntGaugeVec::new(Opts::new(name, help), labels))
}

/// A gauge family holding seconds (timestamps), not counts.
fn seconds_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    registered(r, GaugeVec::new(Opts::new(name, help), labels))
}

/// Now, in Unix seconds: the value of the `*_timestamp_seconds` gauges.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let m = Self {
            entrypoint: Family::new(&r, "entrypoint", &["entrypoint"], true),
            service: Family::new(&r, "service", &["service"], false),
            router: Family::new(&r, "router", &["router", "service"], false),
            service_retries: counter(
                &r,
                "fjord_service_retries_total",
                "Requests sent again to a service.",
                &["service"],
            ),
            service_connect_errors: counter(
                &r,
                "fjord_service_connect_errors_total",
                "Failed connections to a service's endpoints.",
                &["service", "kind"],
            ),
            service_server_up: gauge_vec(
                &r,
                "fjord_service_server_up",
                "1 while an endpoint is not backing off after a failed connect.",
                &["service", "url"],
            ),
            open_connections: gauge_vec(
                &r,
                "fjord_open_connections",
                "Client connections open now.",
                &["entrypoint", "protocol"],
            ),
            worker_connections: counter(
                &r,
                "fjord_worker_connections_total",
                "Client connections accepted, by the worker thread that serves them.",
                &["worker"],
            ),
            connections_refused: counter(
                &r,
                "fjord_entrypoint_connections_refused_total",
                "Client connections closed as soon as accepted, the entry point's maxConnections reached.",
                &["entrypoint"],
            ),
            tls_handshakes: counter(
                &r,
                "fjord_tls_handshakes_total",
                "TLS handshakes by protocol version and result.",
                &["entrypoint", "version", "result"],
            ),
            middleware_rejections: counter(
                &r,
                "fjord_middleware_rejections_total",
                "Requests a middleware refused.",
                &["middleware", "reason"],
            ),
            config_reloads: counter(
                &r,
                "fjord_config_reloads_total",
                "Configuration loads by result.",
                &["result"],
            ),
            config_last_success: registered(
                &r,
                Gauge::new(
                    "fjord_config_last_reload_success_timestamp_seconds",
                    "When the configuration last loaded.",
                ),
            ),
            config_diagnostics: gauge_vec(
                &r,
                "fjord_config_diagnostics",
                "Diagnostics of the configuration in force, by severity.",
                &["severity"],
            ),
            tls_certs_not_after: seconds_vec(
                &r,
                "fjord_tls_certs_not_after_seconds",
                "Expiry of a served certificate (Unix seconds).",
                &["name"],
            ),
            acme_certificate_expiry: seconds_vec(
                &r,
                "fjord_acme_certificate_expiry_timestamp_seconds",
                "When each ACME certificate expires, by its first name.",
                &["resolver", "certificate"],
            ),
            acme_lease_held: gauge_vec(
                &r,
                "fjord_acme_lease_held",
                "1 while this replica holds a certificate's order Lease and orders it.",
                &["resolver", "certificate"],
            ),
            acme_orders: counter(
                &r,
                "fjord_acme_orders_total",
                "ACME orders by result.",
                &["result"],
            ),
            access_log_dropped: registered(
                &r,
                IntCounter::new(
                    "fjord_access_log_dropped_total",
                    "Access log lines dropped because the writer fell behind.",
                ),
            ),
            kubernetes_watch_restarts: counter(
                &r,
                "fjord_kubernetes_watch_restarts_total",
                "Watches of the API server that failed and were retried, by resource.",
                &["resource"],
            ),
            kubernetes_last_sync: seconds_vec(
                &r,
                "fjord_kubernetes_last_sync_timestamp_seconds",
                "When a watch of the API server last listed or delivered an event.",
                &["resource"],
            ),
            rate_limit_backend_errors: counter(
                &r,
                "fjord_rate_limit_backend_errors_total",
                "Rate-limit checks Redis did not answer in time, by middleware and reason (timeout, unavailable, error).",
                &["middleware", "reason"],
            ),
            replicas: registered(
                &r,
                IntGauge::new(
                    "fjord_replicas",
                    "Live fjord replicas as this one counts them; perReplica limits are divided by it.",
                ),
            ),
            registry: r,
        };
        let info = registered(
            &m.registry,
            IntGauge::with_opts(
                Opts::new("fjord_build_info", "Always 1; the version is a label.")
                    .const_label("version", env!("CARGO_PKG_VERSION")),
            ),
        );
        info.set(1);
        m.replicas.set(1);
        // Known label sets start at zero, so rates and alerts see them before the first event.
        for result in ["success", "failure"] {
            m.acme_orders.with_label_values(&[result]);
            m.config_reloads.with_label_values(&[result]);
        }
        let _ = m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        m
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    /// The request series of an entry point, resolved now; see [`Series`].
    pub fn entrypoint(&'static self, name: &str) -> Series {
        Series::new(&self.entrypoint, &[name])
    }

    /// The request series of a service (`namespace/name:port`).
    pub fn service(&'static self, name: &str) -> Series {
        Series::new(&self.service, &[name])
    }

    /// The request series of a router (the object a route came from) and its service; opt-in,
    /// as there can be many.
    pub fn router(&'static self, router: &str, service: &str) -> Series {
        Series::new(&self.router, &[router, service])
    }
}

/// The four request series of one level (entry point, service or router): count, duration to
/// the response head, and body bytes both ways. Labels are the level's own, then `code` and
/// `method`, then `protocol` for entry points.
struct Family {
    requests: IntCounterVec,
    duration: HistogramVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    protocol: bool,
}

impl Family {
    fn new(r: &Registry, level: &str, own: &[&str], protocol: bool) -> Self {
        let mut labels = own.to_vec();
        labels.extend(["code", "method"]);
        if protocol {
            labels.push("protocol");
        }
        Self {
            requests: counter(
                r,
                &format!("fjord_{level}_requests_total"),
                &format!("Requests, by {level}."),
                &labels,
            ),
            duration: histogram(
                r,
                &format!("fjord_{level}_request_duration_seconds"),
                &format!("Time to the response head, by {level}."),
                &labels,
            ),
            request_bytes: counter(
                r,
                &format!("fjord_{level}_requests_bytes_total"),
                &format!("Request body bytes received, by {level}."),
                &labels,
            ),
            response_bytes: counter(
                r,
                &format!("fjord_{level}_responses_bytes_total"),
                &format!("Response body bytes sent, by {level}."),
                &labels,
            ),
            protocol,
        }
    }
}

/// What a request adds to a series' own labels.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// The response status.
    pub code: StatusCode,
    /// The request method.
    pub method: MethodLabel,
    /// Whether the request was a protocol upgrade.
    pub websocket: bool,
}

impl Outcome {
    /// A small integer naming the label set, for the cache.
    fn key(self) -> u32 {
        u32::from(self.code.as_u16()) << 8
            | u32::from(self.method as u8) << 1
            | u32::from(self.websocket)
    }
}

/// The `method` label: the standard methods, and `OTHER` for the rest, so a client inventing
/// methods cannot invent series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodLabel {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `CONNECT`.
    Connect,
    /// `OPTIONS`.
    Options,
    /// `TRACE`.
    Trace,
    /// `PATCH`.
    Patch,
    /// Any other method.
    Other,
}

impl MethodLabel {
    /// The label for `method`.
    pub fn of(method: &Method) -> Self {
        match method.as_str() {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "CONNECT" => Self::Connect,
            "OPTIONS" => Self::Options,
            "TRACE" => Self::Trace,
            "PATCH" => Self::Patch,
            _ => Self::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
            Self::Other => "OTHER",
        }
    }
}

/// One entry point's, service's or router's request series, with its own labels resolved when
/// it is made (at start, or when a snapshot is built). Each outcome (code, method, protocol)
/// it sees is resolved once and cached, so recording a request is a search among a few small
/// integers and some atomic adds: no label string is hashed or allocated per request.
pub struct Series {
    family: &'static Family,
    own: Box<[Box<str>]>,
    seen: ArcSwap<Vec<(u32, Arc<Handles>)>>,
    adding: Mutex<()>,
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series").field("own", &self.own).finish()
    }
}

/// The resolved series for one outcome.
#[derive(Debug)]
pub struct Handles {
    requests: IntCounter,
    duration: Histogram,
    request_bytes: IntCounter,
    response_bytes: IntCounter,
}

impl Handles {
    /// Counts the request and its time to the response head.
    pub fn record(&self, took: Duration) {
        self.requests.inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Adds body bytes, once the bodies are done.
    pub fn bytes(&self, received: u64, sent: u64) {
        if received > 0 {
            self.request_bytes.inc_by(received);
        }
        if sent > 0 {
            self.response_bytes.inc_by(sent);
        }
    }
}

impl Series {
    fn new(family: &'static Family, own: &[&str]) -> Self {
        Self {
            family,
            own: own.iter().map(|&l| l.into()).collect(),
            seen: ArcSwap::from_pointee(Vec::new()),
            adding: Mutex::new(()),
        }
    }

    /// Requests counted so far, and how many of them were answered with a 5xx: read by the
    /// dashboard, which makes rates of them.
    pub fn totals(&self) -> (u64, u64) {
        self.seen
            .load()
            .iter()
            .fold((0, 0), |(all, failed), (key, h)| {
                let n = h.requests.get();
                // The key's status code is its bits above the eighth (`Outcome::key`).
                (all + n, if key >> 8 >= 500 { failed + n } else { failed })
            })
    }

    /// The handles for `outcome`, resolved on first use.
    pub fn get(&self, outcome: Outcome) -> Arc<Handles> {
        let key = outcome.key();
        let find = |seen: &[(u32, Arc<Handles>)]| {
            seen.binary_search_by_key(&key, |(k, _)| *k)
                .ok()
                .map(|i| Arc::clone(&seen[i].1))
        };
        if let Some(h) = find(&self.seen.load()) {
            return h;
        }
        // Rare: the first request with this outcome. One writer at a time, so none is lost.
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = self.seen.load_full();
        if let Some(h) = find(&seen) {
            return h;
        }
        let mut labels: Vec<&str> = self.own.iter().map(|l| &**l).collect();
        labels.extend([outcome.code.as_str(), outcome.method.as_str()]);
        if self.family.protocol {
            labels.push(if outcome.websocket {
                "websocket"
            } else {
                "http"
            });
        }
        let f = self.family;
        let handles = Arc::new(Handles {
            requests: f.requests.with_label_values(&labels),
            duration: f.duration.with_label_values(&labels),
            request_bytes: f.request_bytes.with_label_values(&labels),
            response_bytes: f.response_bytes.with_label_values(&labels),
        });
        let mut grown = Vec::with_capacity(seen.len() + 1);
        grown.extend(seen.iter().cloned());
        let at = grown.partition_point(|(k, _)| *k < key);
        grown.insert(at, (key, Arc::clone(&handles)));
        self.seen.store(Arc::new(grown));
        handles
    }
}
