//! Prometheus metrics, named after Traefik's so existing dashboards and habits carry over:
//! `fjord_entrypoint_*`, `fjord_service_*`, connections, TLS, middlewares, config and
//! certificates, plus the process collector. Never a path or a client address as a label.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder as _, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Request duration buckets in seconds (Traefik's defaults).
const BUCKETS: &[f64] = &[0.1, 0.3, 1.2, 5.0];

/// All of fjord's metrics, in one registry.
pub struct Metrics {
    registry: Registry,
    pub entrypoint_requests: IntCounterVec,
    pub entrypoint_duration: HistogramVec,
    pub entrypoint_request_bytes: IntCounterVec,
    pub entrypoint_response_bytes: IntCounterVec,
    pub service_requests: IntCounterVec,
    pub service_duration: HistogramVec,
    pub service_retries: IntCounterVec,
    pub service_connect_errors: IntCounterVec,
    pub service_server_up: IntGaugeVec,
    pub open_connections: IntGaugeVec,
    pub tls_handshakes: IntCounterVec,
    pub middleware_rejections: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_last_success: Gauge,
    pub config_diagnostics: IntGaugeVec,
    pub tls_certs_not_after: GaugeVec,
    pub acme_orders: IntCounterVec,
    pub access_log_dropped: prometheus::IntCounter,
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(c.clone()));
    c
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(h.clone()));
    h
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(g.clone()));
    g
}

impl Metrics {
    // The names and labels are constants: building them cannot fail, so a failure is a bug
    // caught by the first test that touches metrics.
    fn new() -> Self {
        let r = Registry::new();
        let m = Self {
            entrypoint_requests: counter(
                &r,
                "fjord_entrypoint_requests_total",
                "Requests received by an entry point.",
                &["entrypoint", "code", "method", "protocol"],
            ),
            entrypoint_duration: histogram(
                &r,
                "fjord_entrypoint_request_duration_seconds",
                "Time to the response head, by entry point.",
                &["entrypoint", "code", "method", "protocol"],
            ),
            entrypoint_request_bytes: counter(
                &r,
                "fjord_entrypoint_requests_bytes_total",
                "Declared request body bytes, by entry point.",
                &["entrypoint", "code", "method", "protocol"],
            ),
            entrypoint_response_bytes: counter(
                &r,
                "fjord_entrypoint_responses_bytes_total",
                "Declared response body bytes, by entry point.",
                &["entrypoint", "code", "method", "protocol"],
            ),
            service_requests: counter(
                &r,
                "fjord_service_requests_total",
                "Requests routed to a service (namespace/name:port).",
                &["service", "code", "method"],
            ),
            service_duration: histogram(
                &r,
                "fjord_service_request_duration_seconds",
                "Time to the response head, by service.",
                &["service", "code", "method"],
            ),
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
            config_last_success: {
                let g = Gauge::new(
                    "fjord_config_last_reload_success_timestamp_seconds",
                    "When the configuration last loaded.",
                )
                .unwrap_or_else(|e| panic!("{e}"));
                let _ = r.register(Box::new(g.clone()));
                g
            },
            config_diagnostics: gauge_vec(
                &r,
                "fjord_config_diagnostics",
                "Diagnostics of the configuration in force, by severity.",
                &["severity"],
            ),
            tls_certs_not_after: {
                let g = GaugeVec::new(
                    Opts::new(
                        "fjord_tls_certs_not_after_seconds",
                        "Expiry of a served certificate (Unix seconds).",
                    ),
                    &["name"],
                )
                .unwrap_or_else(|e| panic!("{e}"));
                let _ = r.register(Box::new(g.clone()));
                g
            },
            acme_orders: counter(
                &r,
                "fjord_acme_orders_total",
                "ACME orders by result.",
                &["result"],
            ),
            access_log_dropped: {
                let c = prometheus::IntCounter::new(
                    "fjord_access_log_dropped_total",
                    "Access log lines dropped because the writer fell behind.",
                )
                .unwrap_or_else(|e| panic!("{e}"));
                let _ = r.register(Box::new(c.clone()));
                c
            },
            registry: r,
        };
        let info = IntGauge::with_opts(
            Opts::new("fjord_build_info", "Always 1; the version is a label.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        info.set(1);
        // Known label sets start at zero, so rates and alerts see them before the first event.
        for result in ["success", "failure"] {
            m.acme_orders.with_label_values(&[result]);
            m.config_reloads.with_label_values(&[result]);
        }
        let _ = m.registry.register(Box::new(info));
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

    /// Records one request at an entry point; `labels` are entrypoint, code, method, protocol.
    pub fn request(&self, labels: [&str; 4], took: Duration, req_bytes: u64, resp_bytes: u64) {
        self.entrypoint_requests.with_label_values(&labels).inc();
        self.entrypoint_duration
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
        if req_bytes > 0 {
            self.entrypoint_request_bytes
                .with_label_values(&labels)
                .inc_by(req_bytes);
        }
        if resp_bytes > 0 {
            self.entrypoint_response_bytes
                .with_label_values(&labels)
                .inc_by(resp_bytes);
        }
    }

    /// Records one request routed to `service`.
    pub fn service(&self, service: &str, code: &str, method: &str, took: Duration) {
        let labels = [service, code, method];
        self.service_requests.with_label_values(&labels).inc();
        self.service_duration
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
    }
}
