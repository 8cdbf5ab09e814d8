//! The read-only API's answers, made from the snapshot in force (the one serving requests)
//! and the ACME manager's status: pure views, shaped like Traefik's API so that its scripts
//! carry over. Nothing secret is in them: no key, no Secret's data, no password hash.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::acme::CertStatus;
use crate::diagnostics::{Diagnostic, Severity};
use crate::model::{self, BackendId, HostMatch, PathMatch, Target};
use crate::snapshot::Snapshot;

/// A certificate this close to expiry is flagged (`expiringSoon`), as ACME renews 30 days
/// ahead and a Secret's owner needs time to act.
const EXPIRING_SOON_SECS: i64 = 14 * 24 * 3600;

/// What the process knows of itself.
#[derive(Clone, Debug)]
pub(crate) struct Facts {
    /// This replica's name (the pod's, in a cluster).
    pub replica: String,
    /// Whether the first complete config is live.
    pub ready: bool,
    /// Now, seconds since the Unix epoch.
    pub now: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Overview {
    version: &'static str,
    replica: String,
    ready: bool,
    routers: Count,
    services: Count,
    middlewares: Total,
    certificates: CertCount,
    diagnostics: DiagCount,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Count {
    total: usize,
    /// Those that answer 503: broken routes, services without endpoints.
    errors: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Total {
    total: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CertCount {
    total: usize,
    expiring_soon: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DiagCount {
    errors: usize,
    warnings: usize,
}

/// A route, named as Traefik names its routers: `namespace-object-N@kind`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Router {
    pub name: String,
    /// `Ingress default/shop`.
    source: String,
    /// An IngressRoute's rule (or an Ingress's regular-expression path, as a rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<i64>,
    /// Empty: every entry point.
    entry_points: Vec<String>,
    /// Whether its host is named in some `spec.tls` (plain HTTP may redirect to HTTPS).
    tls: bool,
    middlewares: Vec<String>,
    service: String,
    /// A failover's fallback service.
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<String>,
    /// `enabled`, or `error` when it answers 503 (`error` says why).
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Its service's requests so far (the dashboard's rates).
    requests: Requests,
}

#[derive(Serialize, Clone, Copy, Default)]
#[serde(rename_all = "camelCase")]
struct Requests {
    total: u64,
    server_errors: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Service {
    /// `namespace/service:port`, with `@https` or `@cluster-ip` when so reached.
    pub name: String,
    /// `enabled`, or `error` with no endpoint to send to.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// `http`, `h2c` or `https`; `internal` for fjord's own API.
    protocol: &'static str,
    endpoints: Vec<EndpointView>,
    used_by: Vec<String>,
    requests: Requests,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EndpointView {
    address: String,
    weight: u32,
    /// Ready in its EndpointSlice and not backing off after failed connects.
    healthy: bool,
    failures: u32,
    /// Requests in flight to it from routes balancing by `p2c` or `leasttime` (others are
    /// not counted).
    in_flight: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Middleware {
    pub name: String,
    /// The Middleware CRD's field: `rateLimit`, `basicAuth`…
    r#type: &'static str,
    used_by: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Certificate {
    names: Vec<String>,
    /// `Secret`, `TLSStore` (its default certificate), `ACME`, or `default` (the static
    /// configuration's, or one made at start).
    source: &'static str,
    /// The Secret (`namespace/name`), TLSStore or ACME resolver it comes from.
    from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    /// Seconds since the Unix epoch, and as RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    expiring_soon: bool,
    /// ACME's: `valid`, `ordering`, `waiting` or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DiagnosticView {
    /// `error` or `warning`.
    severity: &'static str,
    /// `Ingress default/shop`.
    object: String,
    message: String,
    /// The line `fjord check` prints.
    text: String,
}

pub(crate) fn overview(
    s: &Snapshot,
    default: Option<&model::TlsCert>,
    acme: &[CertStatus],
    facts: &Facts,
) -> Overview {
    let routes = routers(s);
    let services = services(s);
    let certificates = certificates(s, default, acme, facts.now);
    let errors = s.diagnostics().iter().filter(|d| d.is_error()).count();
    Overview {
        version: env!("CARGO_PKG_VERSION"),
        replica: facts.replica.clone(),
        ready: facts.ready,
        routers: Count {
            total: routes.len(),
            errors: routes.iter().filter(|r| r.error.is_some()).count(),
        },
        services: Count {
            total: services.len(),
            errors: services.iter().filter(|s| s.error.is_some()).count(),
        },
        middlewares: Total {
            total: middlewares(s).len(),
        },
        certificates: CertCount {
            total: certificates.len(),
            expiring_soon: certificates.iter().filter(|c| c.expiring_soon).count(),
        },
        diagnostics: DiagCount {
            errors,
            warnings: s.diagnostics().len() - errors,
        },
    }
}

/// Every route, Ingress routes first, then rule routes in the order they are tried, then the
/// default backend.
pub(crate) fn routers(s: &Snapshot) -> Vec<Router> {
    let config = s.config();
    let mut seen: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let mut name = |t: &Target| {
        let n = seen.entry((t.kind, t.source.clone())).or_default();
        let name = format!(
            "{}-{}@{}",
            t.source.replace('/', "-"),
            n,
            t.kind.to_ascii_lowercase()
        );
        *n += 1;
        name
    };
    let mut out = Vec::new();
    for r in &config.routes {
        let host = match &r.host {
            HostMatch::Exact(h) => Some(h.clone()),
            HostMatch::Wildcard(h) => Some(format!("*.{h}")),
            HostMatch::Any => None,
        };
        let (path, path_type) = match &r.path {
            PathMatch::Exact(p) => (p.clone(), "Exact"),
            // Stored without its trailing slash; `/` as the empty string.
            PathMatch::Prefix(p) if p.is_empty() => ("/".to_owned(), "Prefix"),
            PathMatch::Prefix(p) => (p.clone(), "Prefix"),
        };
        let tls = host.as_deref().is_some_and(|h| s.has_tls(h));
        let mut router = router(s, name(&r.target), &r.target, tls);
        router.host = host;
        router.path = Some(path);
        router.path_type = Some(path_type);
        out.push(router);
    }
    for r in &config.rule_routes {
        let tls = r
            .rule
            .hosts()
            .is_some_and(|hosts| hosts.iter().any(|h| s.has_tls(h)));
        let mut router = router(s, name(&r.target), &r.target, tls);
        router.rule = Some(r.rule.to_string());
        router.priority = Some(r.priority);
        router.entry_points.clone_from(&r.entry_points);
        out.push(router);
    }
    if let Some(t) = &config.default_backend {
        out.push(router(s, "default-backend@ingress".into(), t, false));
    }
    out
}

fn router(s: &Snapshot, name: String, t: &Target, tls: bool) -> Router {
    // A failover's route is served while either of its services has an endpoint.
    let no_endpoint = match &t.fallback {
        Some(f) => unavailable(s, &t.backend).and(unavailable(s, &f.backend)),
        None => unavailable(s, &t.backend),
    };
    let error = t.broken.clone().or(no_endpoint);
    Router {
        name,
        source: format!("{} {}", t.kind, t.source),
        rule: None,
        host: None,
        path: None,
        path_type: None,
        priority: None,
        entry_points: Vec::new(),
        tls,
        middlewares: t.middlewares.iter().map(|m| m.name.to_string()).collect(),
        service: t.backend.to_string(),
        fallback: t.fallback.as_ref().map(|f| f.backend.to_string()),
        status: if error.is_some() { "error" } else { "enabled" },
        error,
        requests: requests(s, &t.backend),
    }
}

/// Why `id` has no endpoint to send to, if it has none.
fn unavailable(s: &Snapshot, id: &BackendId) -> Option<String> {
    if id.is_internal() {
        return None;
    }
    match s.backend(id) {
        Some(b) if !b.endpoints.is_empty() => None,
        Some(b) => Some(
            b.unavailable
                .as_deref()
                .unwrap_or("no ready endpoint")
                .to_owned(),
        ),
        None => Some("backend missing from the config".into()),
    }
}

fn requests(s: &Snapshot, id: &BackendId) -> Requests {
    s.backend(id).map_or_else(Requests::default, |b| {
        let (total, server_errors) = b.series.totals();
        Requests {
            total,
            server_errors,
        }
    })
}

/// Every backend, by name, with the routes that use it.
pub(crate) fn services(s: &Snapshot) -> Vec<Service> {
    let now = crate::clock::now();
    // By service, in one pass: a cluster may have thousands of each.
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in routers(s) {
        if let Some(fallback) = r.fallback {
            users.entry(fallback).or_default().push(r.name.clone());
        }
        users.entry(r.service).or_default().push(r.name);
    }
    s.config()
        .backends
        .iter()
        .map(|(id, spec)| {
            let name = id.to_string();
            let endpoints = s.backend(id).map_or_else(Vec::new, |b| {
                (0..b.endpoints.len())
                    .filter_map(|i| b.endpoints.get(i))
                    .map(|e| EndpointView {
                        address: e.authority.to_string(),
                        weight: e.weight(),
                        healthy: e.is_up(now),
                        failures: e.failures(),
                        in_flight: e.in_flight(),
                    })
                    .collect()
            });
            let error = unavailable(s, id);
            Service {
                used_by: users.remove(&name).unwrap_or_default(),
                name,
                status: if error.is_some() { "error" } else { "enabled" },
                error,
                protocol: match (id.is_internal(), spec.tls.is_some(), spec.http2) {
                    (true, ..) => "internal",
                    (false, true, _) => "https",
                    (false, false, true) => "h2c",
                    (false, false, false) => "http",
                },
                endpoints,
                requests: requests(s, id),
            }
        })
        .collect()
}

/// Every middleware some route uses, by name.
pub(crate) fn middlewares(s: &Snapshot) -> Vec<Middleware> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in routers(s) {
        for m in r.middlewares {
            users.entry(m).or_default().push(r.name.clone());
        }
    }
    let mut all: BTreeMap<&str, &model::middleware::Middleware> = BTreeMap::new();
    for m in s.config().targets().flat_map(|t| t.middlewares.iter()) {
        all.entry(&m.name).or_insert(m);
    }
    all.into_values()
        .map(|m| Middleware {
            name: m.name.to_string(),
            r#type: m.kind.type_name(),
            used_by: users.remove(&*m.name).unwrap_or_default(),
        })
        .collect()
}

/// Every certificate fjord serves: from Secrets, the TLSStore's default, ACME's, and the
/// static default (for a handshake no other certificate matches).
pub(crate) fn certificates(
    s: &Snapshot,
    default: Option<&model::TlsCert>,
    acme: &[CertStatus],
    now: i64,
) -> Vec<Certificate> {
    let config = s.config();
    let stored = |c: &model::TlsCert, source: &'static str| Certificate {
        names: c.names.clone(),
        source,
        from: c.secret.clone(),
        issuer: c.key.cert.first().and_then(|der| issuer(der)),
        not_after: Some(c.not_after),
        expires: rfc3339(c.not_after),
        expiring_soon: c.not_after - now < EXPIRING_SOON_SECS,
        state: None,
        last_error: None,
        next_attempt: None,
    };
    let from_secrets = config.certificates.iter().map(|c| stored(c, "Secret"));
    let store = config
        .default_certificate
        .iter()
        .map(|c| stored(c, "TLSStore"));
    let fallback = default.into_iter().map(|c| stored(c, "default"));
    let from_acme = acme.iter().map(|a| Certificate {
        names: a.names.clone(),
        source: "ACME",
        from: a.resolver.clone(),
        issuer: None,
        not_after: a.not_after,
        expires: a.not_after.and_then(rfc3339),
        expiring_soon: a.not_after.is_some_and(|t| t - now < EXPIRING_SOON_SECS),
        state: Some(a.state),
        last_error: a.last_error.clone(),
        next_attempt: a.next_attempt.and_then(rfc3339),
    });
    from_secrets
        .chain(store)
        .chain(from_acme)
        .chain(fallback)
        .collect()
}

/// Every diagnostic, errors first, as `fjord check` prints them.
pub(crate) fn diagnostics(s: &Snapshot) -> Vec<DiagnosticView> {
    s.diagnostics().iter().map(diagnostic).collect()
}

fn diagnostic(d: &Diagnostic) -> DiagnosticView {
    DiagnosticView {
        severity: match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        },
        object: d.subject.clone(),
        message: d.message.clone(),
        text: d.to_string(),
    }
}

fn issuer(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.issuer().to_string())
}

fn rfc3339(secs: i64) -> Option<String> {
    jiff::Timestamp::from_second(secs)
        .ok()
        .map(|t| t.to_string())
}
