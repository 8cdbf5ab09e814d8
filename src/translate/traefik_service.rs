//! TraefikServices expanded into what a route's target holds: a weighted split becomes the
//! shares of the Services under it (nested splits multiplied out), a mirroring its main
//! service and the mirrors a share of requests is copied to. Pure: the store in, the lists out.

use super::ingressroute::{service_ref, sticky_cookie};
use crate::crd;
use crate::model::{ServiceRef, StickyCookie};
use crate::provider::Store;

/// How deep TraefikServices may nest: deeper is surely a mistake, and a cycle is caught sooner.
const MAX_DEPTH: usize = 8;

/// A route's services with its TraefikServices expanded.
#[derive(Debug, Default)]
pub(super) struct Expanded {
    /// (namespace, Service, weight), the weights in thousandths of the route's requests.
    pub services: Vec<(String, ServiceRef, u32)>,
    /// (namespace, Service, percent): requests copied there.
    pub mirrors: Vec<(String, ServiceRef, u32)>,
    /// Whether requests with a body are mirrored (body and all).
    pub mirror_body: bool,
    /// A weighted split's sticky cookie.
    pub sticky: Option<StickyCookie>,
    /// A highestRandomWeight's: each client address keeps to its highest-ranked endpoint.
    pub by_client_ip: bool,
    /// A failover's fallback.
    pub fallback: Option<FallbackService>,
    /// What a TraefikService sets that fjord reads but cannot honour.
    pub warnings: Vec<String>,
}

/// A failover's fallback Service (namespace, Service) and the main's answers (status ranges)
/// that send a request to it.
#[derive(Debug)]
pub(super) struct FallbackService {
    pub namespace: String,
    pub service: ServiceRef,
    pub statuses: Vec<(u16, u16)>,
    /// The largest request body held to be sent again (0: none).
    pub hold_body: u64,
}

/// Expands a route's `services` (plain) and `traefik` (TraefikServices named), each with its
/// weight, from namespace `ns`.
pub(super) fn expand(
    store: &Store,
    allow_cross_namespace: bool,
    services: &[(String, ServiceRef, u32)],
    traefik: &[(String, String, u32)],
    field: &str,
) -> Result<Expanded, String> {
    let mut out = Expanded::default();
    let total: u64 = services
        .iter()
        .map(|s| u64::from(s.2))
        .chain(traefik.iter().map(|t| u64::from(t.2)))
        .sum::<u64>()
        .max(1);
    let mut leaves: Vec<(String, ServiceRef, f64)> = services
        .iter()
        .map(|(ns, s, w)| (ns.clone(), s.clone(), *w as f64 / total as f64))
        .collect();
    let cx = Cx {
        store,
        allow_cross_namespace,
    };
    for (ns, name, weight) in traefik {
        let share = f64::from(*weight) / total as f64;
        let object = cx.get(ns, name, field)?;
        let alone = services.len() + traefik.len() == 1;
        if let Some(m) = &object.spec.mirroring {
            if !alone {
                return Err(format!(
                    "{field}: TraefikService {ns}/{name} mirrors; a mirroring is honoured as a route's only service"
                ));
            }
            cx.mirroring(ns, name, m, &mut out, &mut leaves)?;
        } else if let Some(f) = &object.spec.failover {
            if !alone {
                return Err(format!(
                    "{field}: TraefikService {ns}/{name} is a failover; it is honoured as a route's only service"
                ));
            }
            cx.failover(ns, name, f, &mut out, &mut leaves)?;
        } else if let Some(h) = &object.spec.highest_random_weight {
            if !alone {
                return Err(format!(
                    "{field}: TraefikService {ns}/{name} is a highestRandomWeight; it is honoured as a route's only service"
                ));
            }
            cx.highest_random_weight(ns, name, h, &mut leaves)?;
            out.by_client_ip = true;
        } else {
            cx.split(ns, name, share, 0, &mut vec![], &mut out, &mut leaves)?;
        }
    }
    out.services = leaves
        .into_iter()
        .filter(|l| l.2 > 0.0)
        .map(|(ns, s, share)| (ns, s, ((share * 1000.0).round() as u32).max(1)))
        .collect();
    Ok(out)
}

struct Cx<'a> {
    store: &'a Store,
    allow_cross_namespace: bool,
}

impl Cx<'_> {
    fn get(&self, ns: &str, name: &str, field: &str) -> Result<&crd::TraefikService, String> {
        let object = self
            .store
            .traefik_service(ns, name)
            .ok_or_else(|| format!("{field}: TraefikService {ns}/{name} not found"))?;
        let set = [
            object.spec.weighted.is_some(),
            object.spec.mirroring.is_some(),
            object.spec.highest_random_weight.is_some(),
            object.spec.failover.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(format!(
                "TraefikService {ns}/{name}: spec must set exactly one of weighted, mirroring, highestRandomWeight and failover"
            ));
        }
        Ok(object)
    }

    /// The namespace a child reference resolves in, if the walls allow it.
    fn namespace(&self, of: &str, given: Option<&String>, field: &str) -> Result<String, String> {
        let ns = given.cloned().unwrap_or_else(|| of.to_owned());
        if ns != of && !self.allow_cross_namespace {
            return Err(format!(
                "{field}.namespace {ns:?}: cross-namespace references are off (providers.kubernetesCRD.allowCrossNamespace)"
            ));
        }
        Ok(ns)
    }

    /// A weighted TraefikService's Services, each with `share` of its parent's share.
    #[expect(
        clippy::too_many_arguments,
        reason = "the walk carries its place, its share and its two outputs"
    )]
    fn split(
        &self,
        ns: &str,
        name: &str,
        share: f64,
        depth: usize,
        visiting: &mut Vec<String>,
        out: &mut Expanded,
        leaves: &mut Vec<(String, ServiceRef, f64)>,
    ) -> Result<(), String> {
        let id = format!("{ns}/{name}");
        if visiting.contains(&id) || depth > MAX_DEPTH {
            visiting.push(id);
            return Err(format!(
                "TraefikServices nest in a cycle or too deep: {}",
                visiting.join(" -> ")
            ));
        }
        let object = self.get(ns, name, &format!("TraefikService {id}"))?;
        let Some(weighted) = &object.spec.weighted else {
            return Err(format!(
                "TraefikService {id} is not a weighted split; a mirroring or highestRandomWeight is honoured as a route's only service, not inside a weighted split"
            ));
        };
        if let Some(sticky) = &weighted.sticky {
            let cookie =
                sticky_cookie(sticky, &format!("TraefikService {id}: spec.weighted"), name)?;
            if out.sticky.as_ref().is_some_and(|c| *c != cookie) {
                return Err(format!(
                    "TraefikService {id}: spec.weighted.sticky differs from another's of the route; give one cookie"
                ));
            }
            out.sticky = Some(cookie);
        }
        let total = total_weight(&weighted.services);
        visiting.push(id.clone());
        for (i, child) in weighted.services.iter().enumerate() {
            let field = format!("TraefikService {id}: spec.weighted.services[{i}]");
            let child_share = share * f64::from(child.weight.unwrap_or(1)) / total as f64;
            let child_ns = self.namespace(ns, child.namespace.as_ref(), &field)?;
            unhonoured_options(child, &field)?;
            match child.kind.as_deref() {
                None | Some("Service") => {
                    let service = service_ref(&child.name, child.port.as_ref(), &field)?;
                    leaves.push((child_ns, service, child_share));
                }
                Some("TraefikService") => {
                    self.split(
                        &child_ns,
                        &child.name,
                        child_share,
                        depth + 1,
                        visiting,
                        out,
                        leaves,
                    )?;
                }
                Some(kind) => {
                    return Err(format!(
                        "{field}.kind {kind:?} is not Service or TraefikService"
                    ));
                }
            }
        }
        visiting.pop();
        Ok(())
    }

    /// A highestRandomWeight TraefikService: its Services, each with its weight's share.
    fn highest_random_weight(
        &self,
        ns: &str,
        name: &str,
        h: &crd::HighestRandomWeight,
        leaves: &mut Vec<(String, ServiceRef, f64)>,
    ) -> Result<(), String> {
        let field = format!("TraefikService {ns}/{name}: spec.highestRandomWeight");
        let total = total_weight(&h.services);
        for (i, child) in h.services.iter().enumerate() {
            let field = format!("{field}.services[{i}]");
            if child.kind.as_deref().is_some_and(|k| k != "Service") {
                return Err(format!(
                    "{field}.kind: fjord ranks the endpoints of Services; a TraefikService here is not supported"
                ));
            }
            unhonoured_options(child, &field)?;
            let child_ns = self.namespace(ns, child.namespace.as_ref(), &field)?;
            let share = f64::from(child.weight.unwrap_or(1)) / total as f64;
            leaves.push((
                child_ns,
                service_ref(&child.name, child.port.as_ref(), &field)?,
                share,
            ));
        }
        Ok(())
    }

    /// A mirroring TraefikService: its main service takes the route's requests, its mirrors
    /// a copy of their share.
    fn mirroring(
        &self,
        ns: &str,
        name: &str,
        m: &crd::Mirroring,
        out: &mut Expanded,
        leaves: &mut Vec<(String, ServiceRef, f64)>,
    ) -> Result<(), String> {
        let field = format!("TraefikService {ns}/{name}: spec.mirroring");
        let main_ns = self.namespace(ns, m.namespace.as_ref(), &field)?;
        match m.kind.as_deref() {
            None | Some("Service") => {
                leaves.push((main_ns, service_ref(&m.name, m.port.as_ref(), &field)?, 1.0));
            }
            Some("TraefikService") => {
                self.split(
                    &main_ns,
                    &m.name,
                    1.0,
                    1,
                    &mut vec![format!("{ns}/{name}")],
                    out,
                    leaves,
                )?;
            }
            Some(kind) => {
                return Err(format!(
                    "{field}.kind {kind:?} is not Service or TraefikService"
                ));
            }
        }
        if m.max_body_size.is_some_and(|s| s >= 0) {
            return Err(format!(
                "{field}.maxBodySize: request bodies are not copied to mirrors; remove it, and set mirrorBody: false to mirror the heads of requests with a body"
            ));
        }
        out.mirror_body = m.mirror_body.unwrap_or(true);
        for (i, mirror) in m.mirrors.iter().enumerate() {
            let field = format!("{field}.mirrors[{i}]");
            if mirror.kind.as_deref().is_some_and(|k| k != "Service") {
                return Err(format!("{field}.kind: a mirror must be a Service"));
            }
            let percent = mirror.percent.unwrap_or(0);
            if percent > 100 {
                return Err(format!("{field}.percent {percent} is over 100"));
            }
            let mirror_ns = self.namespace(ns, mirror.namespace.as_ref(), &field)?;
            out.mirrors.push((
                mirror_ns,
                service_ref(&mirror.name, mirror.port.as_ref(), &field)?,
                percent,
            ));
        }
        Ok(())
    }

    /// A failover TraefikService: its main Service takes the route's requests; its fallback
    /// those the main has no ready endpoint for (Kubernetes' readiness stands in for
    /// Traefik's health check) and, without a body, those it answers with `errors.status`.
    fn failover(
        &self,
        ns: &str,
        name: &str,
        f: &crd::Failover,
        out: &mut Expanded,
        leaves: &mut Vec<(String, ServiceRef, f64)>,
    ) -> Result<(), String> {
        let field = format!("TraefikService {ns}/{name}: spec.failover");
        let one = |s: &crd::RouteService, at: &str| -> Result<(String, ServiceRef), String> {
            let at = format!("{field}.{at}");
            if s.kind.as_deref().is_some_and(|k| k != "Service") {
                return Err(format!(
                    "{at}.kind: fjord fails over between Services; a TraefikService here is not supported"
                ));
            }
            unhonoured_options(s, &at)?;
            let service_ns = self.namespace(ns, s.namespace.as_ref(), &at)?;
            Ok((service_ns, service_ref(&s.name, s.port.as_ref(), &at)?))
        };
        let (main_ns, main) = one(&f.service, "service")?;
        let (fallback_ns, fallback) = one(&f.fallback, "fallback")?;
        let mut statuses = Vec::new();
        let mut hold_body = 0;
        if let Some(errors) = &f.errors {
            for (i, status) in errors.status.iter().enumerate() {
                statuses.push(super::middleware::status_range(
                    status,
                    &format!("{field}.errors.status[{i}]"),
                )?);
            }
            let at = format!("{field}.errors.maxRequestBodyBytes");
            hold_body = super::middleware::hold_body(errors.max_request_body_bytes, &at)?;
            if errors.max_request_body_bytes == Some(-1) {
                out.warnings
                    .push(format!("{at} {}", super::middleware::UNBOUNDED_HOLD));
            }
        }
        leaves.push((main_ns, main, 1.0));
        out.fallback = Some(FallbackService {
            namespace: fallback_ns,
            service: fallback,
            statuses,
            hold_body,
        });
        Ok(())
    }
}

/// The sum of `services`' weights (1 each by default), at least 1.
fn total_weight(services: &[crd::RouteService]) -> u64 {
    services
        .iter()
        .map(|s| u64::from(s.weight.unwrap_or(1)))
        .sum::<u64>()
        .max(1)
}

/// Refuses what a weighted TraefikService's service sets that fjord reads only on a route's
/// services (its endpoints are one set, reached one way): rather than drop it unseen.
fn unhonoured_options(child: &crd::RouteService, field: &str) -> Result<(), String> {
    let set = [
        (
            "scheme",
            child.scheme.as_deref().is_some_and(|s| s != "http"),
        ),
        ("serversTransport", child.servers_transport.is_some()),
        ("passHostHeader", child.pass_host_header == Some(false)),
        ("sticky", child.sticky.is_some()),
        ("nativeLB", child.native_lb == Some(true)),
        (
            "strategy",
            !matches!(child.strategy.as_deref(), None | Some("wrr" | "RoundRobin")),
        ),
    ];
    if let Some((option, _)) = set.iter().find(|(_, on)| *on) {
        return Err(format!(
            "{field}.{option} is read on an IngressRoute's services only (a route's endpoints are reached one way); set it there (sticky: on spec.weighted.sticky)"
        ));
    }
    match super::ingressroute::forwarding(child, field)
        .into_iter()
        .next()
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
