//! Kubernetes objects in, routing [`Config`] and diagnostics out. Pure: no I/O, no clock.
//!
//! One bad object yields diagnostics naming it and is left out; the rest are translated.

mod backend;
pub mod class;
mod ingress;
mod ingressroute;
pub mod middleware;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use crate::diagnostics::Diagnostic;
use crate::middleware::Middleware;
use crate::provider::{Object, ObjectKey, Store};
use crate::rule::Rule;

/// Settings of the translation that come from the static configuration.
#[derive(Clone, Debug)]
pub struct Options {
    /// The IngressClass name served even when no IngressClass object exists; default `fjord`.
    pub ingress_class: String,
    /// The configured ACME certificate resolvers.
    pub resolvers: BTreeSet<String>,
    /// Whether an IngressRoute may send traffic to Services of other namespaces.
    pub allow_cross_namespace: bool,
}

impl Options {
    pub fn from_config(config: &crate::config::StaticConfig) -> Self {
        Self {
            ingress_class: config.providers.kubernetes_ingress.ingress_class.clone(),
            resolvers: config.certificates_resolvers.keys().cloned().collect(),
            allow_cross_namespace: config.providers.kubernetes_crd.allow_cross_namespace,
        }
    }
}

/// Annotation naming the ACME certificate resolver for an Ingress's `spec.tls` hosts.
pub const CERT_RESOLVER_ANNOTATION: &str = "fjord.dev/cert-resolver";
/// cert-manager's convention: `"true"` asks for the `default` resolver.
pub const TLS_ACME_ANNOTATION: &str = "kubernetes.io/tls-acme";

/// What fjord routes: host/path rules to backends, and the backends' endpoints.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// One per (host, path); conflicts are already resolved.
    pub routes: Vec<Route>,
    /// IngressRoute routes, highest priority first (ties in a stable order).
    pub rule_routes: Vec<RuleRoute>,
    /// Takes what no route matches.
    pub default_backend: Option<Target>,
    pub backends: BTreeMap<BackendId, BackendSpec>,
    /// Certificates from Secrets, oldest Ingress first.
    pub certificates: Vec<tls::TlsCert>,
    /// Names to obtain certificates for through ACME.
    pub acme: Vec<AcmeRequest>,
    /// Hosts named in any `spec.tls`: plain-HTTP requests for them may be redirected.
    pub tls_hosts: BTreeSet<String>,
}

/// Certificates an ACME resolver must keep valid, for one set of names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcmeRequest {
    pub resolver: String,
    /// Sorted and without duplicates; the first names the certificate in storage.
    pub names: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Route {
    pub host: HostMatch,
    pub path: PathMatch,
    pub target: Target,
}

/// A rule-based route from an IngressRoute.
#[derive(Clone, Debug)]
pub struct RuleRoute {
    pub rule: Rule,
    pub priority: i64,
    /// Entry points it is served on; all when empty.
    pub entry_points: Vec<String>,
    pub target: Target,
}

/// Where a route sends requests, through which middlewares, and which object asked for it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The object the route came from, as `namespace/name`.
    pub source: String,
    pub backend: BackendId,
    pub middlewares: Vec<Arc<Middleware>>,
    /// Why the route must not be served as written (a missing or invalid middleware): it
    /// answers 503 rather than run without its auth or limit.
    pub broken: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostMatch {
    /// A lowercase DNS name.
    Exact(String),
    /// `*.example.com`, stored as `example.com`: exactly one more label.
    Wildcard(String),
    /// A rule without a host.
    Any,
}

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
    pub name: String,
    pub port: PortRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// A Service port in a namespace: the identity of a backend, stable across reloads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId {
    pub namespace: String,
    pub service: ServiceRef,
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:", self.namespace, self.service.name)?;
        match &self.service.port {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(n) => write!(f, "{n}"),
        }
    }
}

/// A backend's endpoints; when there are none, why.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendSpec {
    pub endpoints: Vec<EndpointSpec>,
    pub unavailable: Option<String>,
}

impl BackendSpec {
    fn unavailable(why: String) -> Self {
        Self {
            endpoints: Vec::new(),
            unavailable: Some(why),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EndpointSpec {
    pub addr: EndpointAddr,
    /// Relative share of requests; at least 1.
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointAddr {
    Ip(SocketAddr),
    /// An `ExternalName` Service, resolved when connecting.
    Dns {
        host: String,
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

/// The result of [`translate`].
#[derive(Debug, Default)]
pub struct Translation {
    pub config: Config,
    pub diagnostics: Vec<Diagnostic>,
    /// Ingresses left out as a whole.
    pub rejected: BTreeSet<ObjectKey>,
    /// TLS Secrets (`namespace/name`) that did not parse, with the names they were wanted for.
    pub broken_secrets: BTreeMap<String, Vec<String>>,
}

impl Translation {
    /// Whether any object, or part of one, was rejected.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Translates the objects of `store` into a routing config.
/// Re-resolves every backend's endpoints from `store`, leaving the routes as they are: the
/// cheap path for a change that touched only EndpointSlices.
pub fn refresh_endpoints(store: &Store, config: &mut Config) {
    let resolver = backend::Resolver::new(store);
    for (id, spec) in &mut config.backends {
        *spec = resolver.resolve(&id.namespace, &id.service).0;
    }
}

pub fn translate(store: &Store, options: &Options) -> Translation {
    let classes = class::Classes::new(store, &options.ingress_class);
    let resolver = backend::Resolver::new(store);
    let mut out = Translation::default();
    let mut middlewares = middleware::Middlewares::new(store);
    middlewares.check_all(&mut out.diagnostics);

    let mut ingresses = Vec::new();
    for ing in store.ingresses() {
        match classes.accepts(ing) {
            Ok(true) => ingresses.push(ing),
            Ok(false) => {}
            Err(why) => {
                out.diagnostics.push(Diagnostic::error(subject(ing), why));
                out.rejected.insert(key(ing));
            }
        }
    }
    // Conflicts go to the oldest Ingress, then by namespace/name; objects without a
    // creationTimestamp (a manifests folder) count as newest.
    ingresses.sort_by_key(|i| {
        let created = i.metadata.creation_timestamp.as_ref();
        (
            created.is_none(),
            created,
            &i.metadata.namespace,
            &i.metadata.name,
        )
    });

    let mut owners: HashMap<(HostMatch, PathMatch), String> = HashMap::new();
    let mut default_owner: Option<String> = None;
    for ing in ingresses {
        let subject = subject(ing);
        let rules = match ingress::rules(ing) {
            Ok(rules) => rules,
            Err(errors) => {
                for e in errors {
                    out.diagnostics.push(Diagnostic::error(&subject, e));
                }
                out.rejected.insert(key(ing));
                continue;
            }
        };
        let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
        let source = format!("{ns}/{}", ing.metadata.name.as_deref().unwrap_or_default());
        let annotation = ing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(middleware::MIDDLEWARES_ANNOTATION));
        let chain = match annotation {
            None => Ok(Vec::new()),
            Some(v) => {
                middleware::parse_annotation(v).and_then(|refs| middlewares.chain(ns, &refs))
            }
        };
        let (chain, broken) = match chain {
            Ok(c) => (c, None),
            Err(why) => {
                out.diagnostics.push(Diagnostic::error(
                    &subject,
                    format!(
                        "annotation {}: {why}; its routes answer 503",
                        middleware::MIDDLEWARES_ANNOTATION
                    ),
                ));
                (Vec::new(), Some(why))
            }
        };
        let use_backend =
            |field: &dyn Fn() -> String, service: &ServiceRef, out: &mut Translation| {
                let backend = backend_for(
                    &resolver,
                    &[(ns.to_owned(), service.clone(), 1)],
                    &|| format!("{}.service", field()),
                    &subject,
                    out,
                );
                Target {
                    source: source.clone(),
                    backend,
                    middlewares: chain.clone(),
                    broken: broken.clone(),
                }
            };

        if let Some(service) = &rules.default_backend {
            match &default_owner {
                Some(owner) => out.diagnostics.push(Diagnostic::warning(
                    &subject,
                    format!("spec.defaultBackend is ignored: Ingress {owner} is older and has one"),
                )),
                None => {
                    let target = use_backend(&|| "spec.defaultBackend".into(), service, &mut out);
                    out.config.default_backend = Some(target);
                    default_owner = Some(source.clone());
                }
            }
        }
        tls_of(
            &subject,
            ns,
            ingress_resolver(ing),
            &rules.tls,
            store,
            options,
            &mut out,
        );
        for rule in rules.paths {
            let key = (rule.host.clone(), rule.path.clone());
            if let Some(owner) = owners.get(&key) {
                let why = if *owner == source {
                    "repeats an earlier path of this Ingress".to_owned()
                } else {
                    format!("is already served by Ingress {owner}, which is older")
                };
                out.diagnostics.push(Diagnostic::warning(
                    &subject,
                    format!("{} ({}) {why}; ignored", rule.field, describe(&key)),
                ));
                continue;
            }
            let target = use_backend(
                &|| format!("{}.backend", rule.field),
                &rule.service,
                &mut out,
            );
            owners.insert(key, source.clone());
            out.config.routes.push(Route {
                host: rule.host,
                path: rule.path,
                target,
            });
        }
    }
    ingress_routes(store, options, &resolver, &mut middlewares, &mut out);
    out.config.acme.sort();
    out.config.acme.dedup();
    // Errors first, then by object: a stable listing for `fjord check` and the logs.
    out.diagnostics.sort();
    out
}

/// The IngressRoutes: rule routes with their middleware chains and weighted services.
fn ingress_routes(
    store: &Store,
    options: &Options,
    resolver: &backend::Resolver<'_>,
    middlewares: &mut middleware::Middlewares<'_>,
    out: &mut Translation,
) {
    let mut objects: Vec<_> = store.ingress_routes().collect();
    objects.sort_by_key(|i| {
        let created = i.metadata.creation_timestamp.as_ref();
        (
            created.is_none(),
            created,
            &i.metadata.namespace,
            &i.metadata.name,
        )
    });
    let mut rule_routes = Vec::new();
    for ir in objects {
        let ns = ir.metadata.namespace.as_deref().unwrap_or("default");
        let name = ir.metadata.name.as_deref().unwrap_or_default();
        let subject = format!("IngressRoute {ns}/{name}");
        let parsed = match ingressroute::routes(ir, ns, options.allow_cross_namespace) {
            Ok(p) => p,
            Err(errors) => {
                for e in errors {
                    out.diagnostics.push(Diagnostic::error(&subject, e));
                }
                out.rejected.insert(ObjectKey {
                    kind: "IngressRoute",
                    namespace: Some(ns.to_owned()),
                    name: name.to_owned(),
                });
                continue;
            }
        };
        if let Some((rule, cert_resolver)) = &parsed.tls {
            tls_of(
                &subject,
                ns,
                cert_resolver.as_deref(),
                std::slice::from_ref(rule),
                store,
                options,
                out,
            );
        }
        for r in parsed.routes {
            let (chain, broken) = match middlewares.chain(ns, &r.middlewares) {
                Ok(c) => (c, None),
                Err(why) => {
                    out.diagnostics.push(Diagnostic::error(
                        &subject,
                        format!("{}.middlewares: {why}; the route answers 503", r.field),
                    ));
                    (Vec::new(), Some(why))
                }
            };
            let backend = backend_for(
                resolver,
                &r.services,
                &|| format!("{}.services", r.field),
                &subject,
                out,
            );
            rule_routes.push(RuleRoute {
                rule: r.rule,
                priority: r.priority,
                entry_points: parsed.entry_points.clone(),
                target: Target {
                    source: format!("{ns}/{name}"),
                    backend,
                    middlewares: chain,
                    broken,
                },
            });
        }
    }
    // Stable: equal priorities keep the (age, namespace, name, index) order.
    rule_routes.sort_by_key(|r| std::cmp::Reverse(r.priority));
    out.config.rule_routes = rule_routes;
}

/// The backend for weighted `services` (namespace, service, weight). One service is that
/// Service's port; several are one endpoint set in which each service's endpoints together get
/// the service's share of the weight.
fn backend_for(
    resolver: &backend::Resolver<'_>,
    services: &[(String, ServiceRef, u32)],
    // Only a diagnostic names the field: formatted when there is one, not for every route.
    field: &dyn Fn() -> String,
    subject: &str,
    out: &mut Translation,
) -> BackendId {
    let mut resolved = Vec::new();
    for (ns, service, weight) in services {
        let (spec, problem) = resolver.resolve(ns, service);
        if let Some(p) = problem {
            out.diagnostics.push(Diagnostic {
                severity: p.severity,
                subject: subject.to_owned(),
                message: format!("{}: {}; requests to it get 503", field(), p.message),
            });
        }
        let id = BackendId {
            namespace: ns.clone(),
            service: service.clone(),
        };
        resolved.push((id, spec, *weight));
    }
    if resolved.len() == 1
        && let Some((id, spec, _)) = resolved.pop()
    {
        out.config.backends.insert(id.clone(), spec);
        return id;
    }
    // Give each endpoint weight × (L / its service's endpoint count), L the least common
    // multiple of the counts, so shares follow the service weights exactly.
    let lcm = resolved
        .iter()
        .map(|(_, s, _)| s.endpoints.len() as u64)
        .filter(|n| *n > 0)
        .fold(1u64, |acc, n| {
            (acc / gcd(acc, n)).saturating_mul(n).min(1 << 20)
        });
    let mut endpoints = Vec::new();
    let mut names = Vec::new();
    for (id, spec, weight) in &resolved {
        names.push(format!("{id}@{weight}"));
        let n = spec.endpoints.len() as u64;
        for e in &spec.endpoints {
            let w = (u64::from(*weight) * lcm / n.max(1)).clamp(1, u64::from(u32::MAX));
            if *weight > 0 {
                endpoints.push(EndpointSpec {
                    addr: e.addr.clone(),
                    weight: u32::try_from(w).unwrap_or(u32::MAX),
                });
            }
        }
    }
    let id = BackendId {
        namespace: resolved
            .first()
            .map(|(id, _, _)| id.namespace.clone())
            .unwrap_or_default(),
        service: ServiceRef {
            name: names.join("+"),
            port: PortRef::Name("weighted".into()),
        },
    };
    let unavailable = endpoints
        .is_empty()
        .then(|| "no service of the route has ready endpoints".to_owned());
    out.config.backends.insert(
        id.clone(),
        BackendSpec {
            endpoints,
            unavailable,
        },
    );
    id
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The ACME resolver an Ingress asks for by annotation.
fn ingress_resolver(ing: &Ingress) -> Option<&str> {
    let annotations = ing.metadata.annotations.as_ref();
    let annotation = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
    match (
        annotation(CERT_RESOLVER_ANNOTATION),
        annotation(TLS_ACME_ANNOTATION),
    ) {
        (Some(r), _) => Some(r),
        (None, Some("true")) => Some("default"),
        _ => None,
    }
}

/// The certificates or ACME names a `tls` section asks for.
fn tls_of(
    subject: &str,
    ns: &str,
    resolver: Option<&str>,
    rules: &[ingress::TlsRule],
    store: &Store,
    options: &Options,
    out: &mut Translation,
) {
    if let Some(r) = resolver
        && !options.resolvers.contains(r)
    {
        out.diagnostics.push(Diagnostic::error(
            subject,
            format!("certificate resolver {r:?} is not configured (certificatesResolvers); no certificate is obtained"),
        ));
    }
    for rule in rules {
        out.config.tls_hosts.extend(rule.hosts.iter().cloned());
        if let Some(resolver) = resolver.filter(|r| options.resolvers.contains(*r)) {
            let (wild, names): (Vec<_>, Vec<_>) = rule
                .hosts
                .iter()
                .cloned()
                .partition(|h| h.starts_with("*."));
            for w in wild {
                out.diagnostics.push(Diagnostic::error(
                    subject,
                    format!("{}.hosts {w:?}: a wildcard needs the DNS-01 challenge, which fjord does not do; use a Secret", rule.field),
                ));
            }
            let mut names = names;
            names.sort();
            names.dedup();
            if !names.is_empty() {
                out.config.acme.push(AcmeRequest {
                    resolver: resolver.to_owned(),
                    names,
                });
            }
            continue;
        }
        let Some(secret_name) = &rule.secret_name else {
            if resolver.is_none() {
                out.diagnostics.push(Diagnostic::warning(
                    subject,
                    format!("{} has no secretName and no certificate resolver; the default certificate is served", rule.field),
                ));
            }
            continue;
        };
        let id = format!("{ns}/{secret_name}");
        let parsed = match store.secret(ns, secret_name) {
            None => Err(format!("Secret {id} not found")),
            Some(secret) => tls::parse_secret(secret).map_err(|e| format!("Secret {id}: {e}")),
        };
        match parsed {
            Ok(p) => {
                let names = if rule.hosts.is_empty() {
                    p.dns_names
                } else {
                    rule.hosts.clone()
                };
                out.config.certificates.push(tls::TlsCert {
                    secret: id,
                    names,
                    key: p.key,
                    not_after: p.not_after,
                });
            }
            Err(why) => {
                out.diagnostics.push(Diagnostic::error(
                    subject,
                    format!("{}.secretName: {why}", rule.field),
                ));
                out.broken_secrets
                    .entry(id)
                    .or_default()
                    .extend(rule.hosts.iter().cloned());
            }
        }
    }
}

/// What was last served, for [`translate_keeping`].
#[derive(Clone, Debug, Default)]
pub struct LastGood {
    /// Ingresses last accepted.
    pub ingresses: Store,
    /// Certificates last read from each TLS Secret, by `namespace/name`.
    pub certificates: BTreeMap<String, tls::TlsCert>,
}

/// Like [`translate`], but an invalid update keeps what was last served: an Ingress whose new
/// version is rejected is served as its last accepted version, and a TLS Secret that stops
/// parsing keeps its last good certificate. Returns what to hand the next call.
pub fn translate_keeping(
    store: &Store,
    options: &Options,
    last: &LastGood,
) -> (Translation, LastGood) {
    let first = translate(store, options);
    let kept: Vec<&Object> = first
        .rejected
        .iter()
        .filter_map(|k| last.ingresses.get(k))
        .collect();
    let (mut out, accepted) = if kept.is_empty() {
        let accepted = accepted_ingresses(store, &first.rejected);
        (first, accepted)
    } else {
        let mut patched = store.clone();
        for old in &kept {
            patched.upsert((*old).clone());
        }
        let mut second = translate(&patched, options);
        let kept: BTreeSet<String> = kept.iter().map(|o| o.key().to_string()).collect();
        // The diagnostics about a kept Ingress are those of its new, rejected version.
        second.diagnostics.retain(|d| !kept.contains(&d.subject));
        for mut d in first
            .diagnostics
            .into_iter()
            .filter(|d| kept.contains(&d.subject))
        {
            d.message.push_str("; still serving its last good version");
            second.diagnostics.push(d);
        }
        let accepted = accepted_ingresses(&patched, &second.rejected);
        (second, accepted)
    };
    for (secret, hosts) in &out.broken_secrets {
        if let Some(old) = last.certificates.get(secret) {
            let mut cert = old.clone();
            if !hosts.is_empty() {
                cert.names = hosts.clone();
            }
            out.config.certificates.push(cert);
            for d in out
                .diagnostics
                .iter_mut()
                .filter(|d| d.message.contains(&format!("Secret {secret}")))
            {
                d.message
                    .push_str("; still serving its last good certificate");
            }
        }
    }
    out.diagnostics.sort();
    let certificates = out
        .config
        .certificates
        .iter()
        .map(|c| (c.secret.clone(), c.clone()))
        .collect();
    (
        out,
        LastGood {
            ingresses: accepted,
            certificates,
        },
    )
}

/// The Ingresses and IngressRoutes of `store` that were not rejected.
fn accepted_ingresses(store: &Store, rejected: &BTreeSet<ObjectKey>) -> Store {
    let mut accepted = Store::default();
    for ing in store.ingresses() {
        if !rejected.contains(&key(ing)) {
            accepted.upsert(Object::Ingress(ing.clone()));
        }
    }
    for ir in store.ingress_routes() {
        let object = Object::IngressRoute(ir.clone());
        if !rejected.contains(&object.key()) {
            accepted.upsert(object);
        }
    }
    accepted
}

fn key(ing: &Ingress) -> ObjectKey {
    ObjectKey {
        kind: "Ingress",
        namespace: ing.metadata.namespace.clone(),
        name: ing.metadata.name.clone().unwrap_or_default(),
    }
}

fn subject(ing: &Ingress) -> String {
    format!(
        "Ingress {}/{}",
        ing.metadata.namespace.as_deref().unwrap_or("default"),
        ing.metadata.name.as_deref().unwrap_or_default()
    )
}

fn describe((host, path): &(HostMatch, PathMatch)) -> String {
    let host = match host {
        HostMatch::Exact(h) => format!("host {h:?}"),
        HostMatch::Wildcard(h) => format!("host \"*.{h}\""),
        HostMatch::Any => "any host".to_owned(),
    };
    match path {
        PathMatch::Exact(p) => format!("{host}, Exact {p:?}"),
        PathMatch::Prefix(p) if p.is_empty() => format!("{host}, Prefix \"/\""),
        PathMatch::Prefix(p) => format!("{host}, Prefix {p:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::decode::{Decoded, decode};

    fn store(yaml: &str) -> Store {
        let mut store = Store::default();
        for doc in serde_saphyr::from_multiple::<serde_json::Value>(yaml).unwrap() {
            let mut out = Vec::new();
            decode(doc, "test.yaml", &mut out);
            for d in out {
                match d {
                    Decoded::Object(o) => store.insert(o).unwrap(),
                    other => panic!("{other:?}"),
                }
            }
        }
        store
    }

    fn options() -> Options {
        Options {
            ingress_class: "fjord".into(),
            resolvers: ["default".to_owned()].into(),
            allow_cross_namespace: false,
        }
    }

    const INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: shop}\nspec:\n  ingressClassName: fjord\n  rules:\n  - host: shop.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}\n";

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - {name: metrics, port: 9090, targetPort: 9090}\n  - {name: http, port: 80, targetPort: web}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\nports:\n- {name: metrics, port: 9090}\n- {name: http, port: 8080}\nendpoints:\n- addresses: [10.0.0.1]\n  conditions: {ready: true}\n- addresses: [10.0.0.2]\n- addresses: [10.0.0.3]\n  conditions: {ready: false}\n";

    fn endpoints(t: &Translation) -> Vec<String> {
        let backend = &t.config.routes[0].target.backend;
        t.config.backends[backend]
            .endpoints
            .iter()
            .map(|e| e.addr.to_string())
            .collect()
    }

    #[test]
    fn named_port_maps_through_the_slice_and_only_ready_endpoints_count() {
        let t = translate(&store(&format!("{INGRESS}---\n{SERVICE}")), &options());
        assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
        // 10.0.0.2 has no `ready` condition: unknown counts as ready.
        assert_eq!(endpoints(&t), ["10.0.0.1:8080", "10.0.0.2:8080"]);
    }

    #[test]
    fn external_name_services_resolve_by_dns() {
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {type: ExternalName, externalName: api.example.net, ports: [{name: http, port: 443}]}\n";
        let t = translate(&store(&format!("{INGRESS}---\n{svc}")), &options());
        assert_eq!(endpoints(&t), ["api.example.net:443"]);
    }

    #[test]
    fn acme_names_come_from_annotated_ingresses_and_wildcards_are_refused() {
        let ing = INGRESS
            .replace(
                "metadata: {name: shop}",
                "metadata: {name: shop, annotations: {kubernetes.io/tls-acme: \"true\"}}",
            )
            .replace(
                "  rules:\n",
                "  tls:\n  - hosts: [shop.test, \"*.shop.test\", www.shop.test]\n  rules:\n",
            );
        let t = translate(&store(&format!("{ing}---\n{SERVICE}")), &options());
        assert_eq!(
            t.config.acme,
            [AcmeRequest {
                resolver: "default".into(),
                names: vec!["shop.test".into(), "www.shop.test".into()],
            }]
        );
        let d: Vec<String> = t.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            d,
            [
                r#"error: Ingress default/shop: spec.tls[0].hosts "*.shop.test": a wildcard needs the DNS-01 challenge, which fjord does not do; use a Secret"#
            ]
        );
        let unknown = ing.replace(
            "kubernetes.io/tls-acme: \"true\"",
            "fjord.dev/cert-resolver: staging",
        );
        let t = translate(&store(&format!("{unknown}---\n{SERVICE}")), &options());
        assert!(t.config.acme.is_empty());
        assert!(
            t.diagnostics[0]
                .message
                .contains(r#"certificate resolver "staging" is not configured"#)
        );
    }

    #[test]
    fn ingress_route_tls_asks_a_resolver_for_its_rule_hosts_and_cross_namespace_needs_consent() {
        let ir = "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: shop}\nspec:\n  routes:\n  - match: Host(`shop.test`) || Host(`www.shop.test`)\n    services: [{name: web, port: http}]\n  tls: {certResolver: default}\n";
        let t = translate(&store(&format!("{ir}---\n{SERVICE}")), &options());
        assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
        assert_eq!(t.config.acme[0].names, ["shop.test", "www.shop.test"]);
        assert_eq!(t.config.rule_routes.len(), 1);

        let cross = ir.replace(
            "{name: web, port: http}",
            "{name: web, port: http, namespace: other}",
        );
        let t = translate(&store(&cross), &options());
        assert!(t.config.rule_routes.is_empty());
        assert!(
            t.diagnostics[0]
                .message
                .contains("cross-namespace references are off"),
            "{:?}",
            t.diagnostics
        );
        let allowed = Options {
            allow_cross_namespace: true,
            ..options()
        };
        assert_eq!(
            translate(&store(&cross), &allowed).config.rule_routes.len(),
            1
        );
    }

    #[test]
    fn rule_priority_is_the_rule_length_unless_set() {
        let ir = "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: shop}\nspec:\n  routes:\n  - match: Host(`shop.test`)\n    priority: 1000\n    services: [{name: web, port: http}]\n  - match: Host(`shop.test`) && PathPrefix(`/api`)\n    services: [{name: web, port: http}]\n  - match: PathPrefix(`/x`)\n    services: [{name: web, port: http}]\n";
        let t = translate(&store(&format!("{ir}---\n{SERVICE}")), &options());
        let priorities: Vec<i64> = t.config.rule_routes.iter().map(|r| r.priority).collect();
        assert_eq!(
            priorities,
            [1000, 39, 16],
            "explicit first, then by rule length"
        );
    }

    #[test]
    fn a_rejected_edit_keeps_the_last_good_version() {
        let good = store(&format!("{INGRESS}---\n{SERVICE}"));
        let (t, accepted) = translate_keeping(&good, &options(), &LastGood::default());
        assert_eq!(t.config.routes.len(), 1);
        assert_eq!(accepted.ingresses.len(), 1);

        let bad = store(&format!(
            "{}---\n{SERVICE}",
            INGRESS.replace("Prefix", "Regex")
        ));
        let (t, accepted) = translate_keeping(&bad, &options(), &accepted);
        assert_eq!(
            t.config.routes.len(),
            1,
            "the last good version still routes"
        );
        assert_eq!(t.diagnostics.len(), 1);
        let d = t.diagnostics[0].to_string();
        assert!(
            d.contains("\"Regex\" is not Exact")
                && d.ends_with("still serving its last good version"),
            "{d}"
        );

        // Without a last good version, a rejected Ingress is simply left out.
        let (t, _) = translate_keeping(&bad, &options(), &LastGood::default());
        assert!(t.config.routes.is_empty());
        // Deleting the Ingress removes its routes, whatever was accepted before.
        let (t, _) = translate_keeping(&store(SERVICE), &options(), &accepted);
        assert!(t.config.routes.is_empty());
    }
}
