//! Reads one Ingress into validated route rules: hosts, paths and the Service each points at.
//! Every problem is reported with its field path and value; any problem rejects the Ingress, as
//! the API server's validation would.

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::backend::{Reach, backend_for, error_backends};
use super::class::Classes;
use super::tls::{ingress_resolver, tls_of};
use super::{Cx, keep, middleware, nginx, oldest_first};
use crate::diagnostics::Diagnostic;
use crate::model::middleware::Middleware;
use crate::model::{Balance, HostMatch, PathMatch, PortRef, Route, RuleRoute, ServiceRef, Target};
use crate::provider::ObjectKey;
use crate::rule::Rule;

/// A validated Ingress.
#[derive(Debug, Default)]
pub(super) struct Rules {
    pub paths: Vec<PathRule>,
    /// `spec.defaultBackend`.
    pub default_backend: Option<ServiceRef>,
    pub tls: Vec<TlsRule>,
}

/// One `spec.tls[i]`.
#[derive(Debug)]
pub(super) struct TlsRule {
    /// `spec.tls[i]`, for diagnostics.
    pub field: String,
    /// Lowercase names, `*.` wildcards allowed.
    pub hosts: Vec<String>,
    pub secret_name: Option<String>,
}

/// One `rules[i].http.paths[j]`.
#[derive(Debug)]
pub(super) struct PathRule {
    /// `spec.rules[i].http.paths[j]`, for diagnostics.
    pub field: String,
    pub host: HostMatch,
    pub path: PathMatch,
    /// The path as written, for paths that are regular expressions.
    pub raw: String,
    /// Set when the path is a regular expression.
    pub regex: Option<RegexPath>,
    pub service: ServiceRef,
}

/// Validates `ingress`; on failure, every problem found.
pub(super) fn rules(ingress: &Ingress) -> Result<Rules, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = Rules::default();
    let Some(spec) = &ingress.spec else {
        return Err(vec!["has no spec".into()]);
    };
    if let Some(backend) = &spec.default_backend {
        out.default_backend = service_ref(backend, "spec.defaultBackend", &mut errors);
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let host = match rule.host.as_deref() {
            None | Some("") => Some(HostMatch::Any),
            Some(h) => match parse_host(h) {
                Ok(m) => Some(m),
                Err(why) => {
                    errors.push(format!("spec.rules[{i}].host {h:?} {why}"));
                    None
                }
            },
        };
        for (j, p) in rule.http.iter().flat_map(|h| &h.paths).enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let path = parse_path(p.path.as_deref(), &p.path_type)
                .map_err(|why| errors.push(format!("{field}.{why}")))
                .ok();
            let service = service_ref(&p.backend, &format!("{field}.backend"), &mut errors);
            if let (Some(host), Some(path), Some(service)) = (&host, path, service) {
                out.paths.push(PathRule {
                    field,
                    host: host.clone(),
                    path,
                    raw: p.path.clone().unwrap_or_else(|| "/".into()),
                    regex: None,
                    service,
                });
            }
        }
    }
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        let mut hosts = Vec::new();
        for (j, h) in tls.hosts.iter().flatten().enumerate() {
            match parse_host(h) {
                Ok(_) => hosts.push(h.clone()),
                Err(why) => errors.push(format!("spec.tls[{i}].hosts[{j}] {h:?} {why}")),
            }
        }
        out.tls.push(TlsRule {
            field: format!("spec.tls[{i}]"),
            hosts,
            secret_name: tls.secret_name.clone().filter(|s| !s.is_empty()),
        });
    }
    if errors.is_empty() && out.paths.is_empty() && out.default_backend.is_none() {
        errors.push("has neither spec.rules with paths nor spec.defaultBackend".into());
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A path rule whose path is a regular expression (nginx's `use-regex`), with its rewrite.
#[derive(Debug)]
pub(super) struct RegexPath {
    pub rule: Rule,
    pub rewrite: Option<Arc<Middleware>>,
}

/// Under nginx's `use-regex` or `rewrite-target`, the rules' paths as regular expressions,
/// each with its rewrite; every path that is not a valid one is an error.
fn regex_paths(
    owner: &nginx::Owner<'_>,
    mut rules: Rules,
    nginx: &nginx::Nginx,
) -> Result<Rules, Vec<String>> {
    if !nginx.regex_paths {
        return Ok(rules);
    }
    let mut errors = Vec::new();
    for p in &mut rules.paths {
        let made = nginx::regex_rule(&p.host, &p.raw).and_then(|rule| {
            let rewrite = match &nginx.rewrite {
                Some(target) => nginx::rewrite(owner, &p.raw, target)?,
                None => None,
            };
            Ok(RegexPath { rule, rewrite })
        });
        match made {
            Ok(r) => p.regex = Some(r),
            Err(why) => errors.push(format!(
                "{}.path {:?} as a regular expression ({}use-regex): {why}",
                p.field,
                p.raw,
                nginx::PREFIX
            )),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

fn service_ref(
    backend: &IngressBackend,
    field: &str,
    errors: &mut Vec<String>,
) -> Option<ServiceRef> {
    let Some(service) = &backend.service else {
        errors.push(if backend.resource.is_some() {
            format!("{field}.resource is not supported; use a service backend")
        } else {
            format!("{field}.service is missing")
        });
        return None;
    };
    let port = match (
        &service.port,
        service.port.as_ref().map(|p| (&p.number, &p.name)),
    ) {
        (_, Some((Some(n), None))) => match u16::try_from(*n) {
            Ok(n) if n > 0 => PortRef::Number(n),
            _ => {
                errors.push(format!(
                    "{field}.service.port.number {n} is not a port (1-65535)"
                ));
                return None;
            }
        },
        (_, Some((None, Some(name)))) if !name.is_empty() => PortRef::Name(name.clone()),
        (None, _) => {
            errors.push(format!("{field}.service.port is missing"));
            return None;
        }
        _ => {
            errors.push(format!(
                "{field}.service.port must have exactly one of number and name"
            ));
            return None;
        }
    };
    Some(ServiceRef {
        name: service.name.clone(),
        port,
    })
}

/// `a.example.com` or `*.example.com`: lowercase DNS labels, a wildcard only as the whole first
/// label, not an IP address (the Ingress spec's rules).
fn parse_host(host: &str) -> Result<HostMatch, &'static str> {
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    if name.len() > 253 || name.is_empty() {
        return Err("is not a valid DNS name");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address; Ingress hosts must be DNS names");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !name.split('.').all(label_ok) {
        return Err(
            "is not a valid DNS name (lowercase letters, digits, '-' and '.'; '*' only as the first label)",
        );
    }
    Ok(if wildcard {
        HostMatch::Wildcard(name.to_owned())
    } else {
        HostMatch::Exact(name.to_owned())
    })
}

fn parse_path(path: Option<&str>, path_type: &str) -> Result<PathMatch, String> {
    let exact = match path_type {
        "Exact" => true,
        "Prefix" | "ImplementationSpecific" => false,
        // A missing required string reads as empty.
        "" => return Err("pathType is required (Exact, Prefix or ImplementationSpecific)".into()),
        other => {
            return Err(format!(
                "pathType {other:?} is not Exact, Prefix or ImplementationSpecific"
            ));
        }
    };
    let path = match path {
        // The spec lets ImplementationSpecific omit the path; it then means everything.
        None | Some("") if path_type == "ImplementationSpecific" => "/",
        None | Some("") => return Err(format!("path is required for pathType {path_type}")),
        Some(p) => p,
    };
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with '/'"));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "path {path:?} contains whitespace or control characters"
        ));
    }
    Ok(if exact {
        PathMatch::Exact(path.to_owned())
    } else {
        // Prefix matching is element-wise, so a trailing slash in the rule means nothing.
        PathMatch::Prefix(path.trim_end_matches('/').to_owned())
    })
}

/// The Ingresses of fjord's class, oldest first: their paths become routes (the oldest
/// Ingress wins a host and path), their default backend the default route, their `tls` the
/// certificates and ACME names.
pub(super) fn translate_all(cx: &mut Cx<'_>) {
    let options = cx.options;
    let classes = Classes::new(
        cx.store,
        &options.ingress_class,
        &options.also_serve_classes,
    );
    let (store, allow) = (cx.store, cx.options.allow_cross_namespace);
    let no_annotations = BTreeMap::new();
    let checked = |ing: &Ingress| match classes.accepts(ing) {
        Ok(true) => {
            let annotations = ing.metadata.annotations.as_ref().unwrap_or(&no_annotations);
            let first = first_backend(ing);
            let owner = nginx::Owner {
                namespace: ing.metadata.namespace.as_deref().unwrap_or("default"),
                name: ing.metadata.name.as_deref().unwrap_or_default(),
                store,
                allow_cross_namespace: allow,
                service: first.as_ref().map(|(s, _)| s.clone()),
                port: first.map(|(_, p)| p),
                hosts_exact: hosts_exact(ing),
            };
            match (rules(ing), nginx::read(&owner, annotations)) {
                (Ok(rules), Ok(nginx)) => {
                    regex_paths(&owner, rules, &nginx).map(|r| Some((r, nginx)))
                }
                (rules, nginx) => Err([rules.err(), nginx.err()]
                    .into_iter()
                    .flatten()
                    .flatten()
                    .collect()),
            }
        }
        Ok(false) => Ok(None),
        Err(why) => Err(vec![why]),
    };
    let mut ingresses = Vec::new();
    for ing in cx.store.ingresses() {
        match checked(ing) {
            Ok(Some(rules)) => ingresses.push((ing, rules)),
            Ok(None) => {}
            Err(errors) => {
                let key = key(ing);
                let kept = cx
                    .last
                    .ingress(&key)
                    .and_then(|old| Some((old, checked(old).ok()??)));
                cx.reject(&subject(ing), key, errors, keep::suffix(kept.is_some()));
                ingresses.extend(kept);
            }
        }
    }
    ingresses.sort_by_key(|(i, _)| oldest_first(&i.metadata));

    // Canary Ingresses take a share of their main Ingress's routes instead of routes of their own.
    let (canaries, ingresses): (Vec<_>, Vec<_>) = ingresses
        .into_iter()
        .partition(|(_, (_, nginx))| nginx.canary.is_some());
    let mut shares = canary_shares(cx, &canaries);
    let mut owners: HashMap<(HostMatch, PathMatch), String> = HashMap::new();
    let mut default_owner: Option<String> = None;
    // Hosts some Ingress serves: `from-to-www-redirect` never takes one of them over.
    let mut served: HashSet<HostMatch> = ingresses
        .iter()
        .flat_map(|(_, (rules, _))| rules.paths.iter().map(|p| p.host.clone()))
        .collect();
    for (ing, (rules, nginx)) in ingresses {
        let subject = subject(ing);
        for warning in &nginx.warnings {
            cx.out
                .diagnostics
                .push(Diagnostic::warning(&subject, warning.clone()));
        }
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
                middleware::parse_annotation(v).and_then(|refs| cx.middlewares.chain(ns, &refs))
            }
        };
        let (chain, broken) = match chain {
            Ok(c) => ([nginx.chain.as_slice(), &c].concat(), None),
            Err(why) => {
                cx.out.diagnostics.push(Diagnostic::error(
                    &subject,
                    format!(
                        "annotation {}: {why}; its routes answer 503",
                        middleware::MIDDLEWARES_ANNOTATION
                    ),
                ));
                (Vec::new(), Some(why))
            }
        };
        error_backends(&cx.resolver, &chain, &subject, &mut cx.out);
        if let Some(why) = middleware::grpc_web_needs_http2(&chain, nginx.http2) {
            cx.out.diagnostics.push(Diagnostic::warning(&subject, why));
        }
        let use_backends = |field: &dyn Fn() -> String,
                            services: &[(String, ServiceRef, u32)],
                            cx: &mut Cx<'_>| {
            let backend = backend_for(
                &cx.resolver,
                services,
                Reach {
                    tls: nginx.backend_tls.as_ref(),
                    cluster_ip: nginx.service_upstream,
                    http2: nginx.http2,
                },
                &|| format!("{}.service", field()),
                &subject,
                &mut cx.out,
            );
            Target {
                source: source.clone(),
                kind: "Ingress",
                backend,
                middlewares: chain.clone(),
                broken: broken.clone(),
                sticky: nginx.sticky.clone(),
                balance: Balance::RoundRobin,
                host_header: nginx.host_header.clone(),
                mirrors: Vec::new(),
                ranked: Vec::new(),
                timeouts: nginx.timeouts,
                observed: crate::model::Observed::default(),
                fallback: None,
            }
        };
        let use_backend = |field: &dyn Fn() -> String, service: &ServiceRef, cx: &mut Cx<'_>| {
            use_backends(field, &[(ns.to_owned(), service.clone(), 1)], cx)
        };

        if let Some(service) = &rules.default_backend {
            match &default_owner {
                Some(owner) => cx.out.diagnostics.push(Diagnostic::warning(
                    &subject,
                    format!("spec.defaultBackend is ignored: Ingress {owner} is older and has one"),
                )),
                None => {
                    let target = use_backend(&|| "spec.defaultBackend".into(), service, cx);
                    cx.out.config.default_backend = Some(target);
                    default_owner = Some(source.clone());
                }
            }
        }
        let redirect = !nginx.no_ssl_redirect;
        tls_of(
            cx,
            &subject,
            ns,
            ingress_resolver(ing),
            &rules.tls,
            redirect,
        );
        if nginx.www_redirect
            && let Some(first) = rules.paths.first()
        {
            let field = || format!("{}.backend", first.field);
            for path in &rules.paths {
                let Some((alias, redirect)) = nginx::www_alias(&source, &path.host) else {
                    continue;
                };
                if served.insert(alias.clone()) {
                    let mut target = use_backend(&field, &first.service, cx);
                    target.middlewares = vec![redirect];
                    cx.out.config.routes.push(Route {
                        host: alias,
                        path: PathMatch::Prefix(String::new()),
                        target,
                    });
                }
            }
        }
        for rule in rules.paths {
            if let Some(regex) = rule.regex {
                let mut target =
                    use_backend(&|| format!("{}.backend", rule.field), &rule.service, cx);
                // The rewrite runs after the nginx annotations' middlewares, before the
                // Ingress's own.
                if let Some(rewrite) = regex.rewrite {
                    target.middlewares.insert(nginx.chain.len(), rewrite);
                }
                cx.out.config.rule_routes.push(RuleRoute {
                    priority: i64::try_from(rule.raw.len()).unwrap_or(i64::MAX),
                    rule: regex.rule,
                    entry_points: Vec::new(),
                    target,
                });
                continue;
            }
            let key = (rule.host.clone(), rule.path.clone());
            if let Some(owner) = owners.get(&key) {
                let why = if *owner == source {
                    "repeats an earlier path of this Ingress".to_owned()
                } else {
                    format!("is already served by Ingress {owner}, which is older")
                };
                cx.out.diagnostics.push(Diagnostic::warning(
                    &subject,
                    format!("{} ({}) {why}; ignored", rule.field, describe(&key)),
                ));
                continue;
            }
            let field = || format!("{}.backend", rule.field);
            let target = match shares.remove(&(ns.to_owned(), key.clone())) {
                None => use_backend(&field, &rule.service, cx),
                Some(share) => {
                    // The canary's header rules first, then the split by weight.
                    for r in share.by_header {
                        let service = if r.to_canary {
                            &share.service
                        } else {
                            &rule.service
                        };
                        let target = use_backend(&field, service, cx);
                        cx.out.config.rule_routes.push(RuleRoute {
                            priority: r.priority,
                            rule: r.rule,
                            entry_points: Vec::new(),
                            target,
                        });
                    }
                    let (canary, main) = (share.weight, share.total - share.weight);
                    let services: Vec<(String, ServiceRef, u32)> = [
                        (rule.service.clone(), main),
                        (share.service.clone(), canary),
                    ]
                    .into_iter()
                    .filter(|(_, w)| *w > 0)
                    .map(|(s, w)| (ns.to_owned(), s, w))
                    .collect();
                    use_backends(&field, &services, cx)
                }
            };
            owners.insert(key, source.clone());
            cx.out.config.routes.push(Route {
                host: rule.host,
                path: rule.path,
                target,
            });
        }
    }
    // Left over: canaries of no main Ingress. The HashMap's order is not stable; sort.
    let mut left: Vec<_> = shares.into_iter().collect();
    left.sort_by(|a, b| a.1.subject.cmp(&b.1.subject));
    for ((_, key), share) in left {
        cx.out.diagnostics.push(Diagnostic::warning(
            &share.subject,
            format!(
                "canary of {}: no Ingress of its namespace serves that, and a canary is served only beside its main Ingress, as nginx does; not served",
                describe(&key)
            ),
        ));
    }
}

/// A canary Ingress's share of one host and path: its Service, its weight, its header rules.
struct Share {
    subject: String,
    service: ServiceRef,
    weight: u32,
    total: u32,
    by_header: Vec<nginx::HeaderRoute>,
}

/// The canary Ingresses' shares, by namespace, host and path; the oldest canary wins one.
fn canary_shares(
    cx: &mut Cx<'_>,
    canaries: &[(&Ingress, (Rules, nginx::Nginx))],
) -> HashMap<(String, (HostMatch, PathMatch)), Share> {
    let mut shares = HashMap::new();
    for (ing, (rules, nginx)) in canaries {
        let subject = subject(ing);
        let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
        for warning in &nginx.warnings {
            cx.out
                .diagnostics
                .push(Diagnostic::warning(&subject, warning.clone()));
        }
        let Some(canary) = &nginx.canary else {
            continue;
        };
        for rule in &rules.paths {
            let by_header = nginx::canary_rules(canary, &rule.host, &rule.path);
            let by_header = by_header.unwrap_or_else(|why| {
                cx.out.diagnostics.push(Diagnostic::error(
                    &subject,
                    format!(
                        "{}: {why}; its requests are split by weight only",
                        rule.field
                    ),
                ));
                Vec::new()
            });
            let key = (ns.to_owned(), (rule.host.clone(), rule.path.clone()));
            shares.entry(key).or_insert_with(|| Share {
                subject: subject.clone(),
                service: rule.service.clone(),
                weight: canary.weight,
                total: canary.total,
                by_header,
            });
        }
    }
    shares
}

/// Whether every request `ing` serves names one of its hosts exactly: no wildcard, no rule
/// or default backend for any host.
fn hosts_exact(ing: &Ingress) -> bool {
    let Some(spec) = &ing.spec else {
        return false;
    };
    let rules = spec.rules.as_deref().unwrap_or_default();
    spec.default_backend.is_none()
        && !rules.is_empty()
        && rules.iter().all(|r| {
            r.host
                .as_deref()
                .is_some_and(|h| !h.is_empty() && !h.contains('*'))
        })
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

/// The Service and port of an Ingress's first path (or its default backend), as written.
fn first_backend(ing: &Ingress) -> Option<(String, String)> {
    let spec = ing.spec.as_ref()?;
    let backend = spec
        .rules
        .iter()
        .flatten()
        .filter_map(|r| r.http.as_ref())
        .flat_map(|h| &h.paths)
        .map(|p| &p.backend)
        .chain(spec.default_backend.as_ref())
        .find_map(|b| b.service.as_ref())?;
    let port = backend.port.as_ref().map(|p| {
        p.name
            .clone()
            .or_else(|| p.number.map(|n| n.to_string()))
            .unwrap_or_default()
    });
    Some((backend.name.clone(), port.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("a.example.com"),
            Ok(HostMatch::Exact("a.example.com".into()))
        );
        assert_eq!(
            parse_host("*.example.com"),
            Ok(HostMatch::Wildcard("example.com".into()))
        );
        for bad in [
            "A.example.com",
            "a..b",
            "*.*.b",
            "a.*.b",
            "-a.b",
            "10.0.0.1",
            "a_b.c",
            "*.",
        ] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            parse_path(Some("/foo/"), "Prefix"),
            Ok(PathMatch::Prefix("/foo".into()))
        );
        assert_eq!(
            parse_path(Some("/"), "Prefix"),
            Ok(PathMatch::Prefix(String::new()))
        );
        assert_eq!(
            parse_path(Some("/foo/"), "Exact"),
            Ok(PathMatch::Exact("/foo/".into()))
        );
        assert_eq!(
            parse_path(None, "ImplementationSpecific"),
            Ok(PathMatch::Prefix(String::new()))
        );
        assert_eq!(
            parse_path(Some("/x"), "Regex"),
            Err(r#"pathType "Regex" is not Exact, Prefix or ImplementationSpecific"#.into())
        );
        assert!(parse_path(Some("foo"), "Prefix").is_err());
        assert!(parse_path(None, "Exact").is_err());
    }
}
