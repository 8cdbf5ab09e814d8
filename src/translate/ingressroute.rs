//! Reads one IngressRoute into validated rule routes. Any invalid route rejects the object, as
//! for an Ingress; the errors name the route and, for rules, the column.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::ingress::TlsRule;
use super::{PortRef, ServiceRef};
use crate::crd::{IngressRoute, MiddlewareRef};
use crate::rule::{self, Rule};

/// A validated IngressRoute.
#[derive(Debug)]
pub struct Routes {
    pub entry_points: Vec<String>,
    pub routes: Vec<RuleRoute>,
    pub tls: Option<(TlsRule, Option<String>)>,
}

/// One `spec.routes[i]`.
#[derive(Debug)]
pub struct RuleRoute {
    pub field: String,
    pub rule: Rule,
    pub priority: i64,
    pub middlewares: Vec<MiddlewareRef>,
    /// (namespace, service, weight).
    pub services: Vec<(String, ServiceRef, u32)>,
}

pub fn routes(
    ir: &IngressRoute,
    ns: &str,
    allow_cross_namespace: bool,
) -> Result<Routes, Vec<String>> {
    let mut errors = Vec::new();
    let mut routes = Vec::new();
    for (i, r) in ir.spec.routes.iter().enumerate() {
        let field = format!("spec.routes[{i}]");
        if let Some(kind) = r.kind.as_deref().filter(|k| *k != "Rule") {
            errors.push(format!("{field}.kind {kind:?} is not Rule"));
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
        for (j, s) in r.services.iter().enumerate() {
            let sfield = format!("{field}.services[{j}]");
            let svc_ns = s.namespace.clone().unwrap_or_else(|| ns.to_owned());
            if svc_ns != ns && !allow_cross_namespace {
                errors.push(format!(
                    "{sfield}.namespace {svc_ns:?}: cross-namespace references are off (providers.kubernetesCRD.allowCrossNamespace)"
                ));
                continue;
            }
            let port = match &s.port {
                IntOrString::Int(n) => match u16::try_from(*n) {
                    Ok(n) if n > 0 => PortRef::Number(n),
                    _ => {
                        errors.push(format!("{sfield}.port {n} is not a port (1-65535)"));
                        continue;
                    }
                },
                IntOrString::String(name) => match name.parse::<u16>() {
                    Ok(n) if n > 0 => PortRef::Number(n),
                    _ => PortRef::Name(name.clone()),
                },
            };
            let service = ServiceRef {
                name: s.name.clone(),
                port,
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
    if errors.is_empty() {
        Ok(Routes {
            entry_points: ir.spec.entry_points.clone(),
            routes,
            tls,
        })
    } else {
        Err(errors)
    }
}
