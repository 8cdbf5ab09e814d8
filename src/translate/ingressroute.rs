//! Reads one IngressRoute into validated rule routes. Any invalid route rejects the object, as
//! for an Ingress; the errors name the route and, for rules, the column.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::agreed::{Agreed, agreed};
use super::backend::{Reach, backend_for, error_backends};
use super::ingress::TlsRule;
use super::tls::tls_of;
use super::tls_option;
use super::traefik_service;
use super::{ApiAccess, Cx, keep, oldest_first};
use crate::crd::{self, IngressRoute, MiddlewareRef};
use crate::diagnostics::Diagnostic;
use crate::model::middleware::ClientTls;
use crate::model::{self, BackendTls, PortRef, ServiceRef, StickyCookie, Target};
use crate::provider::ObjectKey;
use crate::provider::Store;
use crate::rule::{self, Rule};

/// A validated IngressRoute.
#[derive(Debug)]
pub(super) struct Routes {
    pub entry_points: Vec<String>,
    pub routes: Vec<RuleRoute>,
    pub tls: Option<(TlsRule, Option<String>)>,
    /// `spec.tls.options`: the TLSOption (namespace, name) its TLS hosts are served with.
    pub tls_options: Option<(String, String)>,
    /// What it sets that is deprecated, with what to use instead.
    pub warnings: Vec<String>,
}

/// One `spec.routes[i]`.
#[derive(Debug)]
pub(super) struct RuleRoute {
    pub field: String,
    pub rule: Rule,
    pub priority: i64,
    pub middlewares: Vec<MiddlewareRef>,
    /// (namespace, service, weight).
    pub services: Vec<(String, ServiceRef, u32)>,
    /// TraefikServices named, (namespace, name, weight): expanded with the store.
    pub traefik_services: Vec<(String, String, u32)>,
    /// How its endpoints are reached and chosen, as its services agree (with the Services
    /// its TraefikServices reach, once expanded).
    pub agreed: Agreed,
    /// `observability`: whether its requests are logged and counted.
    pub observed: model::Observed,
    /// Its service is fjord's own API and dashboard (`api@internal`, `dashboard@internal`).
    pub internal: bool,
}

pub(super) fn routes(
    ir: &IngressRoute,
    ns: &str,
    allow_cross_namespace: bool,
) -> Result<Routes, Vec<String>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut routes = Vec::new();
    if !ir.spec.parent_refs.is_empty() {
        errors.push("spec.parentRefs: multi-layer routing (a route under another IngressRoute's routers) is not supported; give this IngressRoute's routes the full rule and middlewares instead".to_owned());
    }
    for (i, r) in ir.spec.routes.iter().enumerate() {
        let field = format!("spec.routes[{i}]");
        if let Some(kind) = r.kind.as_deref().filter(|k| *k != "Rule") {
            errors.push(format!("{field}.kind {kind:?} is not Rule"));
        }
        if let Some(syntax) = r.syntax.as_deref().filter(|s| *s != "v3") {
            errors.push(format!(
                "{field}.syntax {syntax:?}: fjord reads Traefik v3's rule language only; rewrite the rule for v3 (HostRegexp and PathRegexp take regular expressions, Headers is Header) and drop the field"
            ));
        }
        if let Some(v) = r
            .observability
            .as_ref()
            .and_then(|o| o.trace_verbosity.as_deref())
            .filter(|v| !matches!(*v, "minimal" | "detailed"))
        {
            errors.push(format!(
                "{field}.observability.traceVerbosity {v:?} is not minimal or detailed"
            ));
        }
        let parsed = match rule::parse(&r.rule) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(format!("{field}.match: {e}"));
                None
            }
        };
        if r.services.is_empty() {
            errors.push(format!("{field}.services is empty"));
        }
        let mut services = Vec::new();
        let mut traefik_services = Vec::new();
        let mut internal_service = false;
        let refs: Vec<(&crd::RouteService, String)> = r
            .services
            .iter()
            .enumerate()
            .map(|(j, s)| (s, format!("{field}.services[{j}]")))
            .collect();
        let agreed = agreed(
            &refs,
            &format!("{field}.services"),
            &mut errors,
            &mut warnings,
        );
        for (j, s) in r.services.iter().enumerate() {
            let sfield = format!("{field}.services[{j}]");
            errors.extend(forwarding(s, &sfield));
            let svc_ns = s.namespace.clone().unwrap_or_else(|| ns.to_owned());
            if svc_ns != ns && !allow_cross_namespace {
                errors.push(format!(
                    "{sfield}.namespace {svc_ns:?}: cross-namespace references are off (providers.kubernetesCRD.allowCrossNamespace)"
                ));
                continue;
            }
            match s.kind.as_deref() {
                None | Some("Service") => {}
                Some("TraefikService") if s.name.ends_with("@internal") => {
                    match internal(&s.name, r.services.len(), &sfield) {
                        Ok(()) => internal_service = true,
                        Err(e) => errors.push(e),
                    }
                    continue;
                }
                Some("TraefikService") => {
                    traefik_services.push((svc_ns, s.name.clone(), s.weight.unwrap_or(1)));
                    continue;
                }
                Some(kind) => {
                    errors.push(format!(
                        "{sfield}.kind {kind:?} is not Service or TraefikService"
                    ));
                    continue;
                }
            }
            let service = match service_ref(&s.name, s.port.as_ref(), &sfield) {
                Ok(service) => service,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            services.push((svc_ns, service, s.weight.unwrap_or(1)));
        }
        if let Some(rule) = parsed {
            routes.push(RuleRoute {
                field,
                priority: r
                    .priority
                    .unwrap_or(i64::try_from(r.rule.len()).unwrap_or(i64::MAX)),
                rule,
                middlewares: r.middlewares.clone(),
                services,
                traefik_services,
                agreed,
                observed: observed(r.observability.as_ref()),
                internal: internal_service,
            });
        }
    }
    let tls = ir.spec.tls.as_ref().map(|t| {
        let mut hosts: Vec<String> = t
            .domains
            .iter()
            .flat_map(|d| std::iter::once(d.main.clone()).chain(d.sans.iter().cloned()))
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if hosts.is_empty() {
            hosts = routes
                .iter()
                .filter_map(|r| r.rule.hosts())
                .flatten()
                .collect();
            hosts.sort();
            hosts.dedup();
        }
        let rule = TlsRule {
            field: "spec.tls".into(),
            hosts,
            secret_name: t.secret_name.clone().filter(|s| !s.is_empty()),
        };
        (rule, t.cert_resolver.clone())
    });
    let tls_options = ir
        .spec
        .tls
        .as_ref()
        .and_then(|t| t.options.as_ref())
        .map(|o| {
            (
                o.namespace.clone().unwrap_or_else(|| ns.to_owned()),
                o.name.clone(),
            )
        });
    if let Some((other, _)) = tls_options
        .as_ref()
        .filter(|(o, _)| o != ns && !allow_cross_namespace)
    {
        errors.push(format!(
            "spec.tls.options.namespace {other:?}: cross-namespace references are off (providers.kubernetesCRD.allowCrossNamespace)"
        ));
    }
    if errors.is_empty() {
        Ok(Routes {
            entry_points: ir.spec.entry_points.clone(),
            routes,
            tls,
            tls_options,
            warnings,
        })
    } else {
        Err(errors)
    }
}

/// Checks a route's internal service `name`, one of its `services` at `field`: fjord has
/// the API and dashboard (Traefik's `api@internal`, named `dashboard@internal` too), alone.
fn internal(name: &str, services: usize, field: &str) -> Result<(), String> {
    if !matches!(name, "api@internal" | "dashboard@internal") {
        return Err(format!(
            "{field}.name {name:?}: fjord's internal services are api@internal and dashboard@internal"
        ));
    }
    if services > 1 {
        return Err(format!("{field}: {name} must be the route's only service"));
    }
    Ok(())
}

/// Route `r`'s TraefikServices expanded, with how the Services they reach agree to be
/// reached and chosen merged into `r.agreed` (they must agree with the route's own Services);
/// why the route cannot be served, when it cannot.
fn expand(
    cx: &mut Cx<'_>,
    allow: bool,
    r: &mut RuleRoute,
    subject: &str,
) -> (traefik_service::Expanded, Option<String>) {
    if r.traefik_services.is_empty() {
        return (traefik_service::Expanded::default(), None);
    }
    let field = format!("{}.services", r.field);
    let expanded =
        match traefik_service::expand(cx.store, allow, &r.services, &r.traefik_services, &field) {
            Ok(e) => e,
            Err(why) => {
                cx.out.diagnostics.push(Diagnostic::error(
                    subject,
                    format!("{why}; the route answers 503"),
                ));
                return (traefik_service::Expanded::default(), Some(why));
            }
        };
    let mut warnings = expanded.warnings.clone();
    let mut errors = Vec::new();
    let reached = reached(r, &expanded, &mut errors, &mut warnings);
    for why in warnings {
        cx.out
            .diagnostics
            .push(Diagnostic::warning(subject, format!("{field}: {why}")));
    }
    for why in &errors {
        cx.out.diagnostics.push(Diagnostic::error(
            subject,
            format!("{field}: {why}; the route answers 503"),
        ));
    }
    r.agreed = reached;
    (expanded, errors.into_iter().next())
}

/// How route `r`'s endpoints are reached and chosen, with its TraefikServices `expanded`:
/// as the Services they reach agree, which must agree with the route's own Services.
fn reached(
    r: &RuleRoute,
    expanded: &traefik_service::Expanded,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Agreed {
    let leaves: Vec<(&crd::RouteService, String)> = expanded
        .options
        .iter()
        .map(|(s, at)| (s, at.clone()))
        .collect();
    let mut reached = agreed(
        &leaves,
        "the Services its TraefikServices reach",
        errors,
        warnings,
    );
    match (&reached.sticky, &expanded.sticky) {
        (Some(a), Some(b)) if a != b => errors.push(
            "a weighted TraefikService's sticky cookie differs from its services'; give one cookie"
                .into(),
        ),
        (None, Some(b)) => reached.sticky = Some(b.clone()),
        _ => {}
    }
    if expanded.by_client_ip || !expanded.ranked.is_empty() {
        if reached.balance != model::Balance::RoundRobin {
            errors.push("a highestRandomWeight's services take no strategy: it ranks their endpoints by client address".into());
        }
        if expanded.by_client_ip {
            reached.balance = model::Balance::ClientIp;
        }
    }
    if r.services.is_empty() {
        return reached;
    }
    // The route's own Services too: one endpoint set, reached one way.
    let sticky = r.agreed.sticky.clone().or(reached.sticky.clone());
    let unstuck = |a: &Agreed| Agreed {
        sticky: None,
        ..a.clone()
    };
    if unstuck(&reached) != unstuck(&r.agreed) {
        errors.push("the route's Services and the Services its TraefikServices reach disagree on scheme, serversTransport, passHostHeader, nativeLB, strategy or middlewares; the route has one set of endpoints, so give one".into());
    }
    Agreed {
        sticky,
        ..r.agreed.clone()
    }
}

/// What a route's ServersTransport gives it.
struct Transport {
    /// TLS to its endpoints (an HTTPS route's), with its label (`https`, or `https:NAME`).
    tls: Option<(String, Arc<BackendTls>)>,
    /// Its `forwardingTimeouts` that fjord holds per route.
    timeouts: model::Timeouts,
    /// What it sets that does nothing here.
    warnings: Vec<String>,
}

/// Route `r`'s transport: for HTTPS, TLS as the ServersTransport it names in `ns` says (or
/// the system's roots and the endpoint's address, `https`); for any scheme, its timeouts.
fn servers_transport(store: &Store, ns: &str, r: &Agreed) -> Result<Transport, String> {
    let Some(name) = r.transport.as_deref() else {
        let tls = BackendTls {
            server_name: None,
            client: ClientTls {
                ca: None,
                client: None,
                insecure_skip_verify: false,
            },
        };
        return Ok(Transport {
            tls: r.https.then(|| ("https".into(), Arc::new(tls))),
            timeouts: model::Timeouts::default(),
            warnings: Vec::new(),
        });
    };
    let t = store
        .servers_transport(ns, name)
        .ok_or_else(|| format!("ServersTransport {ns}/{name} not found"))?;
    let at = format!("ServersTransport {ns}/{name}: spec");
    let refused = [
        ("peerCertURI", t.spec.peer_cert_uri.is_some()),
        ("spiffe", t.spec.spiffe.is_some()),
    ];
    if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
        return Err(format!(
            "{at}.{field}: fjord does not check backends' certificates this way; remove it"
        ));
    }
    let (timeouts, mut warnings) = transport_timeouts(t, &at)?;
    if t.spec.disable_http2 == Some(false) {
        warnings.push(format!("{at}.disableHTTP2: false does nothing: fjord speaks HTTP/1.1 to HTTPS backends (scheme: h2c for HTTP/2 without TLS)"));
    }
    if t.spec.max_idle_conns_per_host.is_some() {
        warnings.push(format!("{at}.maxIdleConnsPerHost is not held per transport: the static configuration's serversTransport.maxIdleConnsPerHost applies"));
    }
    let tls_set = t.spec.server_name.is_some()
        || t.spec.insecure_skip_verify.is_some()
        || !t.spec.root_cas.is_empty()
        || !t.spec.root_cas_secrets.is_empty()
        || !t.spec.certificates_secrets.is_empty();
    if !r.https {
        if tls_set {
            // As in Traefik: a transport's TLS settings apply to HTTPS only.
            warnings.push(format!("{at}: its TLS settings do nothing, as the service is spoken to in plain HTTP (set scheme: https to use them)"));
        }
        return Ok(Transport {
            tls: None,
            timeouts,
            warnings,
        });
    }
    if t.spec.certificates_secrets.len() > 1 {
        return Err(format!("{at}.certificatesSecrets: give one Secret"));
    }
    let crd_tls = crd::ClientTls {
        ca_secret: None,
        cert_secret: t.spec.certificates_secrets.first().cloned(),
        insecure_skip_verify: t.spec.insecure_skip_verify,
        ca_optional: None,
    };
    let mut client = super::middleware::client_tls(&crd_tls, ns, store, &at)?;
    client.ca = root_cas(store, ns, t, &at)?;
    if let Some(server_name) = &t.spec.server_name
        && rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err()
    {
        return Err(format!(
            "{at}.serverName {server_name:?} is not a host name"
        ));
    }
    let tls = BackendTls {
        server_name: t.spec.server_name.clone(),
        client,
    };
    Ok(Transport {
        tls: Some((format!("https:{name}"), Arc::new(tls))),
        timeouts,
        warnings,
    })
}

/// The CAs a transport trusts, PEM, from each of its `rootCAs` (a Secret's or a ConfigMap's
/// `tls.ca`, `ca.crt` or `ca` key) and `rootCAsSecrets`; None when it names none (the system's
/// roots are trusted).
fn root_cas(
    store: &Store,
    ns: &str,
    t: &crd::ServersTransport,
    at: &str,
) -> Result<Option<Vec<u8>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let named = t
        .spec
        .root_cas
        .iter()
        .enumerate()
        .map(|(i, ca)| match (&ca.secret, &ca.config_map) {
            (Some(secret), None) => Ok((format!("{at}.rootCAs[{i}]"), secret, false)),
            (None, Some(map)) => Ok((format!("{at}.rootCAs[{i}]"), map, true)),
            _ => Err(format!(
                "{at}.rootCAs[{i}]: give one of secret and configMap"
            )),
        })
        .chain(
            t.spec
                .root_cas_secrets
                .iter()
                .enumerate()
                .map(|(i, s)| Ok((format!("{at}.rootCAsSecrets[{i}]"), s, false))),
        );
    let mut pem = Vec::new();
    for entry in named {
        let (field, name, config_map) = entry?;
        let (kind, text) = if config_map {
            ("ConfigMap", config_map_ca(store, ns, name))
        } else {
            ("Secret", secret_ca(store, ns, name))
        };
        let text = text.ok_or_else(|| {
            format!("{field}: {kind} {ns}/{name} not found, or it has no tls.ca, ca.crt or ca key")
        })?;
        if CertificateDer::pem_slice_iter(text.as_bytes())
            .next()
            .is_none()
            || CertificateDer::pem_slice_iter(text.as_bytes()).any(|c| c.is_err())
        {
            return Err(format!(
                "{field}: {kind} {ns}/{name} holds no PEM certificate"
            ));
        }
        pem.extend_from_slice(text.as_bytes());
        pem.push(b'\n');
    }
    Ok((!pem.is_empty()).then_some(pem))
}

/// The keys a CA is read from, in order.
const CA_KEYS: [&str; 3] = ["tls.ca", "ca.crt", "ca"];

/// A CA in Secret `ns/name`.
fn secret_ca(store: &Store, ns: &str, name: &str) -> Option<String> {
    CA_KEYS
        .iter()
        .find_map(|k| super::middleware::secret_value(store, ns, name, k).ok())
}

/// A CA in ConfigMap `ns/name`.
fn config_map_ca(store: &Store, ns: &str, name: &str) -> Option<String> {
    let data = store.config_map(ns, name)?.data.as_ref()?;
    CA_KEYS.iter().find_map(|k| data.get(*k).cloned())
}

/// A transport's `forwardingTimeouts`: those fjord holds per route, and a warning for each it
/// holds elsewhere. Traefik's 0 (no timeout) waits up to a day: fjord always bounds a wait.
fn transport_timeouts(
    t: &crd::ServersTransport,
    at: &str,
) -> Result<(model::Timeouts, Vec<String>), String> {
    let mut warnings = Vec::new();
    let Some(f) = &t.spec.forwarding_timeouts else {
        return Ok((model::Timeouts::default(), warnings));
    };
    let read = |v: &Option<IntOrString>, field: &str| -> Result<Option<Duration>, String> {
        v.as_ref()
            .map(|v| {
                super::middleware::duration(v)
                    .map(|d| if d.is_zero() { NO_TIMEOUT } else { d })
                    .map_err(|e| format!("{at}.forwardingTimeouts.{field} {e}"))
            })
            .transpose()
    };
    let timeouts = model::Timeouts {
        connect: read(&f.dial_timeout, "dialTimeout")?,
        read: read(&f.response_header_timeout, "responseHeaderTimeout")?,
        send: read(&f.write_timeout, "writeTimeout")?,
    };
    let pings = "fjord sends no HTTP/2 pings to backends";
    let elsewhere = [
        (
            &f.idle_conn_timeout,
            "idleConnTimeout",
            "the static configuration's serversTransport.forwardingTimeouts.idleConnTimeout applies",
        ),
        (
            &f.read_timeout,
            "readTimeout",
            "fjord bounds the wait for the response head (responseHeaderTimeout), not the pauses within its body",
        ),
        (&f.read_idle_timeout, "readIdleTimeout", pings),
        (&f.ping_timeout, "pingTimeout", pings),
    ];
    for (value, field, why) in elsewhere {
        if read(value, field)?.is_some() {
            warnings.push(format!(
                "{at}.forwardingTimeouts.{field} is not held per transport: {why}"
            ));
        }
    }
    Ok((timeouts, warnings))
}

/// What Traefik's "no timeout" (0) becomes.
const NO_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A service's `responseForwarding`: what fjord does anyway, or why not.
pub(super) fn forwarding(s: &crd::RouteService, field: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let interval = s
        .response_forwarding
        .as_ref()
        .and_then(|f| f.flush_interval.as_ref());
    // Negative is Traefik's "flush at once", which fjord always does.
    let negative = matches!(interval, Some(IntOrString::Int(n)) if *n < 0)
        || matches!(interval, Some(IntOrString::String(t)) if t.starts_with('-'));
    if let Some(v) = interval.filter(|_| !negative)
        && let Err(e) = super::middleware::duration(v)
    {
        errors.push(format!("{field}.responseForwarding.flushInterval {e}"));
    }
    errors
}

/// What a route's `observability` keeps recording: all of it unless switched off. fjord has
/// no tracing, so `tracing` and `traceVerbosity` switch nothing.
fn observed(o: Option<&crd::Observability>) -> model::Observed {
    let Some(o) = o else {
        return model::Observed::default();
    };
    model::Observed {
        access_logs: o.access_logs.unwrap_or(true),
        metrics: o.metrics.unwrap_or(true),
    }
}

/// A Service and its port, as a route or a TraefikService names them under `field`.
pub(super) fn service_ref(
    name: &str,
    port: Option<&IntOrString>,
    field: &str,
) -> Result<ServiceRef, String> {
    let port = match port {
        None => return Err(format!("{field}.port is required")),
        Some(IntOrString::Int(n)) => match u16::try_from(*n) {
            Ok(n) if n > 0 => PortRef::Number(n),
            _ => return Err(format!("{field}.port {n} is not a port (1-65535)")),
        },
        Some(IntOrString::String(name)) => match name.parse::<u16>() {
            Ok(n) if n > 0 => PortRef::Number(n),
            _ => PortRef::Name(name.clone()),
        },
    };
    Ok(ServiceRef {
        name: name.to_owned(),
        port,
    })
}

/// A service's `sticky.cookie`, checked.
pub(super) fn sticky_cookie(
    s: &crd::Sticky,
    field: &str,
    service: &str,
) -> Result<StickyCookie, String> {
    let Some(c) = &s.cookie else {
        return Err(format!("{field}.sticky needs a cookie"));
    };
    let name = match &c.name {
        Some(n)
            if n.is_empty()
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            return Err(format!(
                "{field}.sticky.cookie.name {n:?} is not a cookie name (letters, digits, - _ .)"
            ));
        }
        Some(n) => n.clone(),
        None => {
            use sha1::Digest as _;
            let digest = sha1::Sha1::digest(service.as_bytes());
            format!("_{:02x}{:02x}{:x}", digest[0], digest[1], digest[2] >> 4)
        }
    };
    let same_site = match c
        .same_site
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("") => None,
        Some("none") => Some("None".to_owned()),
        Some("lax") => Some("Lax".to_owned()),
        Some("strict") => Some("Strict".to_owned()),
        Some(other) => {
            return Err(format!(
                "{field}.sticky.cookie.sameSite {other:?} is not none, lax or strict"
            ));
        }
    };
    let attribute_ok = |v: &str| v.bytes().all(|b| b.is_ascii_graphic() && b != b';');
    let path = c.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || !attribute_ok(&path) {
        return Err(format!("{field}.sticky.cookie.path {path:?} is not a path"));
    }
    if let Some(d) = c.domain.as_deref().filter(|d| !attribute_ok(d)) {
        return Err(format!(
            "{field}.sticky.cookie.domain {d:?} is not a domain"
        ));
    }
    Ok(StickyCookie {
        name,
        path,
        domain: c.domain.clone(),
        max_age: c.max_age.filter(|a| *a != 0),
        secure: c.secure.unwrap_or(false),
        http_only: c.http_only.unwrap_or(false),
        same_site,
    })
}

/// Serves `hosts` with the TLSOption `named`; `Err` (and a diagnostic) when it cannot be, so
/// the routes answer 503 rather than be served without it (it may ask for client
/// certificates). A host another IngressRoute gave another TLSOption keeps the first.
fn assign_policy(
    cx: &mut Cx<'_>,
    subject: &str,
    policies: &tls_option::Policies,
    (ns, name): &(String, String),
    hosts: &[String],
) -> Result<(), String> {
    let policy = match policies.get(&(ns.clone(), name.clone())) {
        Some(Ok(policy)) => policy,
        found => {
            let why = match found {
                Some(_) => format!("TLSOption {ns}/{name} is invalid"),
                None => format!("TLSOption {ns}/{name} not found"),
            };
            cx.out.diagnostics.push(Diagnostic::error(
                subject,
                format!("spec.tls.options: {why}; the routes answer 503"),
            ));
            return Err(why);
        }
    };
    for host in hosts {
        match cx.out.config.tls_policies.get(host) {
            Some(first) if first.name != policy.name => cx.out.diagnostics.push(Diagnostic::warning(
                subject,
                format!(
                    "spec.tls.options: host {host} is served with TLSOption {}, which an older IngressRoute gave it",
                    first.name
                ),
            )),
            Some(_) => {}
            None => {
                cx.out
                    .config
                    .tls_policies
                    .insert(host.clone(), Arc::clone(policy));
            }
        }
    }
    Ok(())
}

/// An error for each of `named` that no entry point of the static configuration has: its
/// routes would never be reached there, and would answer 404 without a word.
fn unknown_entry_points(cx: &mut Cx<'_>, subject: &str, named: &[String]) {
    let configured = &cx.options.entry_points;
    for name in named.iter().filter(|n| !configured.contains(*n)) {
        let known: Vec<&str> = configured.iter().map(String::as_str).collect();
        cx.out.diagnostics.push(Diagnostic::error(
            subject,
            format!(
                "spec.entryPoints: {name:?} is not an entry point of the static configuration \
                 (it has {}); the routes are not served there",
                known.join(", ")
            ),
        ));
    }
}

/// The IngressRoutes, oldest first: rule routes with their middleware chains and weighted
/// services, highest priority first.
pub(super) fn translate_all(cx: &mut Cx<'_>, policies: &tls_option::Policies) {
    let allow = cx.options.allow_cross_namespace;
    let mut objects = Vec::new();
    for ir in cx.store.ingress_routes() {
        let ns = ir.metadata.namespace.as_deref().unwrap_or("default");
        match routes(ir, ns, allow) {
            Ok(parsed) => objects.push((ir, parsed)),
            Err(errors) => {
                let key = ObjectKey {
                    kind: "IngressRoute",
                    namespace: Some(ns.to_owned()),
                    name: ir.metadata.name.clone().unwrap_or_default(),
                };
                let kept = cx
                    .last
                    .ingress_route(&key)
                    .and_then(|old| Some((old, routes(old, ns, allow).ok()?)));
                let subject = format!("IngressRoute {ns}/{}", key.name);
                cx.reject(&subject, key, errors, keep::suffix(kept.is_some()));
                objects.extend(kept);
            }
        }
    }
    objects.sort_by_key(|(ir, _)| oldest_first(&ir.metadata));
    // After the rule routes of Ingresses with regular-expression paths, if any.
    let mut rule_routes = std::mem::take(&mut cx.out.config.rule_routes);
    for (ir, parsed) in objects {
        let ns = ir.metadata.namespace.as_deref().unwrap_or("default");
        let name = ir.metadata.name.as_deref().unwrap_or_default();
        let subject = format!("IngressRoute {ns}/{name}");
        for why in &parsed.warnings {
            cx.out
                .diagnostics
                .push(Diagnostic::warning(&subject, why.clone()));
        }
        unknown_entry_points(cx, &subject, &parsed.entry_points);
        if let Some((rule, cert_resolver)) = &parsed.tls {
            tls_of(
                cx,
                &subject,
                ns,
                cert_resolver.as_deref(),
                std::slice::from_ref(rule),
                true,
            );
        }
        let tls_broken = parsed.tls_options.as_ref().and_then(|named| {
            let hosts = parsed.tls.as_ref().map(|(rule, _)| rule.hosts.as_slice());
            assign_policy(cx, &subject, policies, named, hosts.unwrap_or_default()).err()
        });
        for mut r in parsed.routes {
            let (expanded, expand_broken) = expand(cx, allow, &mut r, &subject);
            let refs: Vec<MiddlewareRef> = r
                .middlewares
                .iter()
                .chain(&r.agreed.middlewares)
                .cloned()
                .collect();
            let (chain, broken) = match cx.middlewares.chain(ns, &refs) {
                Ok(c) => (c, None),
                Err(why) => {
                    cx.out.diagnostics.push(Diagnostic::error(
                        &subject,
                        format!("{}.middlewares: {why}; the route answers 503", r.field),
                    ));
                    (Vec::new(), Some(why))
                }
            };
            error_backends(&cx.resolver, &chain, &subject, &mut cx.out);
            if let Some(why) = super::middleware::grpc_web_needs_http2(&chain, r.agreed.http2) {
                cx.out.diagnostics.push(Diagnostic::warning(
                    &subject,
                    format!("{}.middlewares: {why}", r.field),
                ));
            }
            let mut broken = broken.or_else(|| tls_broken.clone()).or(expand_broken);
            let services = if r.traefik_services.is_empty() {
                &r.services
            } else {
                &expanded.services
            };
            let (tls, timeouts) = match servers_transport(cx.store, ns, &r.agreed) {
                Ok(Transport {
                    tls,
                    timeouts,
                    warnings,
                }) => {
                    for why in warnings {
                        cx.out.diagnostics.push(Diagnostic::warning(
                            &subject,
                            format!("{}.services: {why}", r.field),
                        ));
                    }
                    (tls, timeouts)
                }
                Err(why) => {
                    cx.out.diagnostics.push(Diagnostic::error(
                        &subject,
                        format!("{}.services: {why}; the route answers 503", r.field),
                    ));
                    broken = broken.or(Some(why));
                    (None, model::Timeouts::default())
                }
            };
            // The main Service and a failover's fallback are reached the same way.
            let reach = Reach {
                tls: tls.as_ref(),
                cluster_ip: r.agreed.cluster_ip,
                http2: r.agreed.http2,
            };
            let backend = if r.internal {
                let refused = match &cx.options.api {
                    ApiAccess::Anywhere => None,
                    ApiAccess::Namespace(own) if own == ns => None,
                    ApiAccess::Namespace(own) => Some(format!(
                        "api@internal is served only to IngressRoutes in fjord's own namespace {own:?}"
                    )),
                    ApiAccess::Off => Some(
                        "api@internal is off: the static configuration's api.dashboard is false"
                            .to_owned(),
                    ),
                };
                if let Some(why) = refused {
                    cx.out.diagnostics.push(Diagnostic::error(
                        &subject,
                        format!("{}.services: {why}; the route answers 503", r.field),
                    ));
                    broken = broken.or(Some(why));
                }
                let id = model::BackendId::internal();
                cx.out.config.backends.entry(id.clone()).or_default();
                id
            } else {
                backend_for(
                    &cx.resolver,
                    services,
                    reach,
                    &|| format!("{}.services", r.field),
                    &subject,
                    &mut cx.out,
                )
            };
            let mirrors = expanded
                .mirrors
                .iter()
                .map(|m| model::Mirror {
                    backend: backend_for(
                        &cx.resolver,
                        &[(m.namespace.clone(), m.service.clone(), 1)],
                        Reach::default(),
                        &|| format!("{}.services (a mirror)", r.field),
                        &subject,
                        &mut cx.out,
                    ),
                    percent: m.percent,
                    body: m.body,
                    of: m.of.clone(),
                })
                .collect();
            let fallback = expanded.fallback.as_ref().map(|f| {
                let backend = backend_for(
                    &cx.resolver,
                    &f.services,
                    reach,
                    &|| format!("{}.services (the failover's fallback)", r.field),
                    &subject,
                    &mut cx.out,
                );
                model::Fallback {
                    backend,
                    statuses: f.statuses.clone(),
                    hold_body: f.hold_body,
                }
            });
            rule_routes.push(model::RuleRoute {
                rule: r.rule,
                priority: r.priority,
                entry_points: parsed.entry_points.clone(),
                target: Target {
                    source: format!("{ns}/{name}"),
                    kind: "IngressRoute",
                    backend,
                    middlewares: chain,
                    broken,
                    host_header: r.agreed.host_header(),
                    sticky: r.agreed.sticky.map(Arc::new),
                    balance: r.agreed.balance,
                    ranked: expanded.ranked.clone(),
                    mirrors,
                    timeouts,
                    observed: r.observed,
                    fallback,
                },
            });
        }
    }
    // Stable: equal priorities keep the (age, namespace, name, index) order.
    rule_routes.sort_by_key(|r| std::cmp::Reverse(r.priority));
    cx.out.config.rule_routes = rule_routes;
}
