//! The snapshot: a [`Config`] compiled into what the hot path reads (the route table and each
//! backend's endpoint set), immutable, and swapped atomically by [`Live`]. A request keeps the
//! route target it started with, whatever reloads happen meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use crate::balance::EndpointSet;
use crate::diagnostics::Diagnostic;
use crate::metrics::{METRICS, Series};
use crate::middleware::{self, Chain, Middleware};
use crate::model::{self, BackendId, BackendSpec, Config, HostHeader, StickyCookie};
use crate::router::{Router, normalize_host};
use crate::rule::RequestView;

mod certs;
pub use certs::CertTable;

/// A backend as the hot path sees it.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port`, for logs.
    pub name: Box<str>,
    /// The endpoints, with their round-robin position and health.
    pub endpoints: EndpointSet,
    /// Why there are no endpoints, when there are none.
    pub unavailable: Option<Box<str>>,
    /// Its request series; kept when its endpoints change.
    pub series: Arc<Series>,
}

/// What a route points at.
#[derive(Debug)]
pub struct Target {
    /// `namespace/name` of the object the route came from.
    pub source: Box<str>,
    /// Where requests go.
    pub backend: Arc<Backend>,
    /// The middlewares, in order.
    pub middlewares: Chain,
    /// Why the route answers 503 instead of being served.
    pub broken: Option<Box<str>>,
    /// Router-level request series, when asked for (they multiply series by routes).
    pub series: Option<Series>,
    /// Sticky sessions, when the route asks for them.
    pub sticky: Option<Arc<StickyCookie>>,
    /// How an endpoint is chosen for each request.
    pub balance: model::Balance,
    /// Members of the backend ranked by client address once chosen.
    pub ranked: Box<[std::ops::Range<u16>]>,
    /// The `Host` the backend gets.
    pub host_header: HostHeader,
    /// Where a copy of a share of the requests goes.
    pub mirrors: Box<[Mirror]>,
    /// The longest request body a mirror copies (held whole to be copied); 0: none.
    pub mirror_hold: u64,
    /// The chain's `errors` middlewares, in order, each with its pages' backend.
    pub errors: Box<[(Arc<Middleware>, Arc<Backend>)]>,
    /// Its own limits on the exchange with the backend.
    pub timeouts: model::Timeouts,
    /// Whether its requests are logged and counted.
    pub observed: model::Observed,
    /// fjord's own API and dashboard answer its requests, not a backend.
    pub internal: bool,
    /// A failover's fallback, when the route has one.
    pub fallback: Option<Box<Fallback>>,
}

/// A mirror, as the hot path sees it.
#[derive(Debug)]
pub struct Mirror {
    /// Where the copies go.
    pub backend: Arc<Backend>,
    /// Of the requests its main service takes, the percent copied.
    pub percent: u32,
    /// How a request with a body is copied.
    pub body: model::MirrorBody,
    /// The members of the route's backend whose requests it copies.
    pub of: std::ops::Range<u16>,
    /// Requests its main service has taken: they are copied evenly spread over this count.
    pub seen: std::sync::atomic::AtomicU64,
}

impl Mirror {
    /// Whether a request to `member` of the route's backend, with a body of `body` bytes
    /// held whole (None: not held) or none, is copied here: each mirror spreads its share
    /// evenly over the requests its main service takes that it can copy (request n is copied
    /// when the count of copies due rises at n).
    pub fn copies(&self, member: u16, has_body: bool, body: Option<u64>) -> bool {
        let copyable = match self.body {
            _ if !has_body => true,
            model::MirrorBody::Head => true,
            model::MirrorBody::UpTo(limit) => body.is_some_and(|n| n <= limit),
        };
        if !copyable || !self.of.contains(&member) {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        let p = u64::from(self.percent);
        (n + 1) * p / 100 != n * p / 100
    }
}

/// Where a failover sends what its main backend cannot serve.
#[derive(Debug)]
pub struct Fallback {
    /// The route's target, with the fallback's backend.
    pub target: Arc<Target>,
    /// The main backend's answers that send a request here.
    pub statuses: Box<[(u16, u16)]>,
    /// The largest request body held to be sent here after such an answer.
    pub hold_body: u64,
}

impl Fallback {
    /// Whether the main backend's answer `status` sends the request here.
    pub fn takes(&self, status: http::StatusCode) -> bool {
        let s = status.as_u16();
        self.statuses
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&s))
    }
}

/// How a snapshot is built, from the static configuration.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Whether each route gets `fjord_router_*` series.
    pub router_metrics: bool,
}

/// An immutable, compiled config.
#[derive(Debug)]
pub struct Snapshot {
    /// What it was compiled from, and what was said about the objects: for the API, which
    /// shows what is served from the snapshot that serves it.
    config: Arc<Config>,
    diagnostics: Arc<[Diagnostic]>,
    router: Router<Arc<Target>>,
    backends: HashMap<BackendId, Arc<Backend>>,
    /// By name, so a reload can keep one whose spec did not change (and its state).
    middlewares: HashMap<Box<str>, Arc<Middleware>>,
    routes: usize,
    certificates: CertTable,
    /// The TLSStore's default certificate.
    default_certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    /// Hosts with TLS, for plain-HTTP redirects: exact names, and wildcards by their suffix.
    tls_hosts: std::collections::HashSet<Box<str>>,
    tls_wildcards: std::collections::HashSet<Box<str>>,
    /// TLSOptions by host, wildcards by their suffix, and the default one.
    tls_policies: HashMap<Box<str>, Arc<model::TlsPolicy>>,
    tls_policy_wildcards: HashMap<Box<str>, Arc<model::TlsPolicy>>,
    default_tls_policy: Option<Arc<model::TlsPolicy>>,
}

impl Snapshot {
    /// Compiles `config`. Backends whose endpoints did not change are taken from `previous`
    /// as they are, so their round-robin position and endpoint health carry over; the
    /// connection pool is keyed by endpoint address and carries over on its own.
    pub fn build(config: &Arc<Config>, previous: Option<&Snapshot>, options: Options) -> Self {
        let backends: HashMap<BackendId, Arc<Backend>> = config
            .backends
            .iter()
            .map(|(id, spec)| {
                let old = previous.and_then(|p| p.backends.get(id));
                (id.clone(), backend(id, spec, old))
            })
            .collect();
        // One running instance per middleware, shared by the routes that use it (but a circuit
        // breaker, one per route, as Traefik has it); a stateful one whose spec did not change
        // is the previous snapshot's, buckets, counters and windows kept.
        let mut middlewares: HashMap<Box<str>, Arc<Middleware>> = HashMap::new();
        for (t, m) in config
            .targets()
            .flat_map(|t| t.middlewares.iter().map(move |m| (t, m)))
        {
            let key = instance(m, t);
            middlewares.entry(key.clone()).or_insert_with(|| {
                match previous.and_then(|p| p.middlewares.get(&key)) {
                    Some(old) if old.keeps(m) => Arc::clone(old),
                    _ => Arc::new(Middleware::new(m)),
                }
            });
        }
        // `t` sending to backend `id` (its own, or its failover's fallback).
        let target_to = |t: &model::Target, id: &BackendId| {
            let backend = backends.get(id).cloned().unwrap_or_else(|| {
                // Translation always lists the backends its routes use; stay total anyway.
                backend(
                    id,
                    &BackendSpec::unavailable("backend missing from the config".into()),
                    None,
                )
            });
            let chain: Chain = t
                .middlewares
                .iter()
                .filter_map(|m| middlewares.get(&instance(m, t)).cloned())
                .collect();
            let errors = chain
                .iter()
                .filter_map(|m| match &m.kind {
                    middleware::Kind::Errors(pages) => {
                        Some((Arc::clone(m), backends.get(&pages.backend).cloned()?))
                    }
                    _ => None,
                })
                .collect();
            Target {
                source: t.source.as_str().into(),
                series: options
                    .router_metrics
                    .then(|| METRICS.router(&t.source, &backend.name)),
                backend,
                middlewares: chain,
                broken: t.broken.as_deref().map(Into::into),
                sticky: t.sticky.clone(),
                balance: t.balance,
                ranked: t.ranked.iter().cloned().collect(),
                host_header: t.host_header.clone(),
                mirrors: t
                    .mirrors
                    .iter()
                    .filter_map(|m| {
                        Some(Mirror {
                            backend: backends.get(&m.backend).cloned()?,
                            percent: m.percent,
                            body: m.body,
                            of: m.of.clone(),
                            seen: Default::default(),
                        })
                    })
                    .collect(),
                mirror_hold: t
                    .mirrors
                    .iter()
                    .filter_map(|m| match m.body {
                        model::MirrorBody::UpTo(n) => Some(n),
                        model::MirrorBody::Head => None,
                    })
                    .max()
                    .unwrap_or(0),
                timeouts: t.timeouts,
                observed: t.observed,
                internal: id.is_internal(),
                errors,
                fallback: None,
            }
        };
        let target = |t: &model::Target| {
            let mut main = target_to(t, &t.backend);
            main.fallback = t.fallback.as_ref().map(|f| {
                let mut fallback = target_to(t, &f.backend);
                // The mirrors copy what the main service takes.
                fallback.mirrors = Box::default();
                fallback.mirror_hold = 0;
                Box::new(Fallback {
                    target: Arc::new(fallback),
                    statuses: f.statuses.iter().copied().collect(),
                    hold_body: f.hold_body,
                })
            });
            Arc::new(main)
        };
        let routes = config
            .routes
            .iter()
            .map(|r| (r.host.clone(), r.path.clone(), target(&r.target)));
        let rules = config
            .rule_routes
            .iter()
            .map(|r| (r.rule.clone(), r.entry_points.clone(), target(&r.target)));
        let router =
            Router::new(routes, config.default_backend.as_ref().map(&target)).with_rules(rules);
        Self {
            config: Arc::clone(config),
            diagnostics: previous.map_or_else(
                || Arc::new([]) as Arc<[Diagnostic]>,
                |p| Arc::clone(&p.diagnostics),
            ),
            router,
            middlewares,
            backends,
            routes: config.routes.len(),
            certificates: CertTable::new(&config.certificates),
            default_certificate: config
                .default_certificate
                .as_ref()
                .map(|c| Arc::clone(&c.key)),
            tls_hosts: config
                .tls_hosts
                .iter()
                .filter(|h| !h.starts_with("*."))
                .map(|h| h.as_str().into())
                .collect(),
            tls_wildcards: config
                .tls_hosts
                .iter()
                .filter_map(|h| h.strip_prefix("*."))
                .map(Into::into)
                .collect(),
            tls_policies: config
                .tls_policies
                .iter()
                .filter(|(h, _)| !h.starts_with("*."))
                .map(|(h, p)| (h.as_str().into(), Arc::clone(p)))
                .collect(),
            tls_policy_wildcards: config
                .tls_policies
                .iter()
                .filter_map(|(h, p)| Some((h.strip_prefix("*.")?.into(), Arc::clone(p))))
                .collect(),
            default_tls_policy: config.default_tls_policy.clone(),
        }
    }

    /// The snapshot with `diagnostics`, what translation said of the objects it came from
    /// (otherwise it keeps its predecessor's: an endpoints-only change says nothing new).
    #[must_use]
    pub fn with_diagnostics(mut self, diagnostics: Arc<[Diagnostic]>) -> Self {
        self.diagnostics = diagnostics;
        self
    }

    /// The config it was compiled from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What translation said of the objects, errors first.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The running backend `id`, with its endpoints' health and its request series.
    pub fn backend(&self, id: &BackendId) -> Option<&Arc<Backend>> {
        self.backends.get(id)
    }

    /// Whether some host is served with a TLSOption of its own (or a default one).
    pub fn has_tls_policies(&self) -> bool {
        self.default_tls_policy.is_some() || !self.tls_policies.is_empty()
    }

    /// The TLSOption `name` (an SNI name or a Host header's host, lowercase) is served with:
    /// its own, a wildcard's, or the default; `None` is fjord's built-in TLS.
    pub fn tls_policy(&self, name: &str) -> Option<&Arc<model::TlsPolicy>> {
        self.tls_policies
            .get(name)
            .or_else(|| {
                let (_, rest) = name.split_once('.')?;
                self.tls_policy_wildcards.get(rest)
            })
            .or(self.default_tls_policy.as_ref())
    }

    /// The certificates from Secrets, by SNI name.
    pub fn certificates(&self) -> &CertTable {
        &self.certificates
    }

    /// The TLSStore's default certificate, if one is given.
    pub fn default_certificate(&self) -> Option<&Arc<rustls::sign::CertifiedKey>> {
        self.default_certificate.as_ref()
    }

    /// Whether `host` (a Host header: any case, port allowed) is named in some Ingress's TLS.
    pub fn has_tls(&self, host: &str) -> bool {
        if self.tls_hosts.is_empty() && self.tls_wildcards.is_empty() {
            return false;
        }
        let host = normalize_host(host);
        self.tls_hosts.contains(&*host)
            || host
                .split_once('.')
                .is_some_and(|(_, rest)| self.tls_wildcards.contains(rest))
    }

    /// The target for a request to `host` and `path` (Ingress rules only).
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Target>> {
        self.router.route(host, path)
    }

    /// The target for a request arriving on `entry_point`.
    pub fn route_request(&self, view: &RequestView<'_>, entry_point: &str) -> Option<&Arc<Target>> {
        self.router.route_request(view, entry_point)
    }

    /// How many host and path routes there are.
    pub fn routes(&self) -> usize {
        self.routes
    }
}

/// The key of `m`'s running instance for target `t`: its name, and for a circuit breaker the
/// object and the backend of the route too, so that one failing service does not open the
/// circuit of another (Traefik has one per router).
fn instance(m: &model::middleware::Middleware, t: &model::Target) -> Box<str> {
    match m.kind {
        model::middleware::Kind::CircuitBreaker(_) => {
            format!("{}\0{}\0{}", m.name, t.source, t.backend).into()
        }
        _ => m.name.clone(),
    }
}

fn backend(id: &BackendId, spec: &BackendSpec, old: Option<&Arc<Backend>>) -> Arc<Backend> {
    match old {
        Some(old)
            if old
                .endpoints
                .is_for(&spec.endpoints, (spec.tls.as_ref(), spec.http2))
                && old.unavailable.as_deref() == spec.unavailable.as_deref() =>
        {
            Arc::clone(old)
        }
        _ => {
            let name: Box<str> = id.to_string().into();
            Arc::new(Backend {
                series: old.map_or_else(
                    || Arc::new(METRICS.service(&name)),
                    |o| Arc::clone(&o.series),
                ),
                name,
                endpoints: EndpointSet::new(
                    &spec.endpoints,
                    (spec.tls.as_ref(), spec.http2),
                    old.map(|o| &o.endpoints),
                ),
                unavailable: spec.unavailable.as_deref().map(Into::into),
            })
        }
    }
}

/// The snapshot in force, and whether the first complete config has been loaded.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Snapshot>,
    ready: AtomicBool,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            current: ArcSwap::from_pointee(Snapshot::build(
                &Arc::default(),
                None,
                Options::default(),
            )),
            ready: AtomicBool::new(false),
        }
    }
}

impl Live {
    /// The snapshot in force.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Puts `snapshot` in force and marks fjord ready.
    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
        self.ready.store(true, Ordering::Release);
    }

    /// Whether the first complete config has been loaded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        EndpointAddr, EndpointSpec, HostMatch, PathMatch, PortRef, Route, ServiceRef,
    };

    fn config(ports: &[u16]) -> Config {
        let id = BackendId {
            namespace: "default".into(),
            service: ServiceRef {
                name: "web".into(),
                port: PortRef::Number(80),
            },
            scheme: None,
            cluster_ip: false,
        };
        let spec = BackendSpec {
            endpoints: ports
                .iter()
                .map(|p| EndpointSpec {
                    addr: EndpointAddr::Ip(([127, 0, 0, 1], *p).into()),
                    weight: 1,
                    member: 0,
                })
                .collect(),
            unavailable: None,
            tls: None,
            http2: false,
            members: Vec::new(),
        };
        Config {
            routes: vec![Route {
                host: HostMatch::Any,
                path: PathMatch::Prefix(String::new()),
                target: model::Target {
                    source: "default/web".into(),
                    kind: "Ingress",
                    backend: id.clone(),
                    middlewares: Vec::new(),
                    broken: None,
                    sticky: None,
                    balance: model::Balance::RoundRobin,
                    ranked: Vec::new(),
                    host_header: model::HostHeader::Client,
                    mirrors: Vec::new(),
                    timeouts: model::Timeouts::default(),
                    observed: model::Observed::default(),
                    fallback: None,
                },
            }],
            default_backend: None,
            backends: [(id, spec)].into(),
            ..Config::default()
        }
    }

    fn backend_of(s: &Snapshot) -> Arc<Backend> {
        Arc::clone(&s.route("x", "/").unwrap().backend)
    }

    #[test]
    fn unchanged_backends_are_kept_across_a_rebuild() {
        let a = Snapshot::build(&Arc::new(config(&[1, 2])), None, Options::default());
        let b = Snapshot::build(&Arc::new(config(&[1, 2])), Some(&a), Options::default());
        assert!(Arc::ptr_eq(&backend_of(&a), &backend_of(&b)));
        let c = Snapshot::build(&Arc::new(config(&[1, 3])), Some(&b), Options::default());
        assert!(!Arc::ptr_eq(&backend_of(&b), &backend_of(&c)));
    }
}
