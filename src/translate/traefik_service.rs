//! TraefikServices expanded into what a route's target holds: a weighted split becomes the
//! shares of the Services under it (nested splits multiplied out), a mirroring its main
//! service's and the mirrors a share of them is copied to, each mirror knowing which of the
//! route's Services its main is. Pure: the store in, the lists out.

use std::ops::Range;

use super::ingressroute::{service_ref, sticky_cookie};
use crate::crd;
use crate::model::{MirrorBody, ServiceRef, StickyCookie};
use crate::provider::Store;

/// How deep TraefikServices may nest: deeper is surely a mistake, and a cycle is caught sooner.
const MAX_DEPTH: usize = 8;

/// A route's services with its TraefikServices expanded.
#[derive(Debug, Default)]
pub(super) struct Expanded {
    /// (namespace, Service, weight): the members of the route's backend, in order, the
    /// weights in thousandths of the route's requests.
    pub services: Vec<(String, ServiceRef, u32)>,
    /// Where mirrorings copy requests.
    pub mirrors: Vec<MirrorOf>,
    /// A weighted split's sticky cookie.
    pub sticky: Option<StickyCookie>,
    /// A highestRandomWeight's over the whole route: each client address keeps to its
    /// highest-ranked endpoint.
    pub by_client_ip: bool,
    /// The members ranked so of a part of the route (a highestRandomWeight in a split).
    pub ranked: Vec<Range<u16>>,
    /// A failover's fallback.
    pub fallback: Option<FallbackService>,
    /// The Services reached, as named (with the field naming each): how they are reached and
    /// chosen, which they must agree on.
    pub options: Vec<(crd::RouteService, String)>,
    /// What a TraefikService sets that fjord reads but cannot honour.
    pub warnings: Vec<String>,
}

/// A mirror: the Service (in its namespace) a share of its main service's requests is
/// copied to.
#[derive(Debug)]
pub(super) struct MirrorOf {
    pub namespace: String,
    pub service: ServiceRef,
    pub percent: u32,
    /// How a request with a body is copied.
    pub body: MirrorBody,
    /// The members of the route's backend its main service is.
    pub of: Range<u16>,
}

/// A failover's fallback Services (namespace, Service, weight) and the main's answers
/// (status ranges) that send a request to it.
#[derive(Debug)]
pub(super) struct FallbackService {
    pub services: Vec<(String, ServiceRef, u32)>,
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
    let total: u64 = services
        .iter()
        .map(|s| u64::from(s.2))
        .chain(traefik.iter().map(|t| u64::from(t.2)))
        .sum::<u64>()
        .max(1);
    let mut walk = Walk {
        store,
        allow_cross_namespace,
        visiting: Vec::new(),
        leaves: services
            .iter()
            .map(|(ns, s, w)| (ns.clone(), s.clone(), *w as f64 / total as f64))
            .collect(),
        out: Expanded::default(),
    };
    let alone = services.len() + traefik.len() == 1;
    for (ns, name, weight) in traefik {
        let share = f64::from(*weight) / total as f64;
        let object = walk.get(ns, name, field)?;
        if let Some(f) = &object.spec.failover {
            if !alone {
                return Err(format!(
                    "{field}: TraefikService {ns}/{name} is a failover; it is honoured as a route's only service"
                ));
            }
            walk.failover(ns, name, f)?;
        } else {
            walk.node(ns, name, share, field)?;
        }
    }
    let mut out = walk.out;
    // Ranking the whole route is ranking its endpoint set.
    if out
        .ranked
        .first()
        .is_some_and(|r| usize::from(r.end - r.start) == walk.leaves.len())
    {
        out.ranked.clear();
        out.by_client_ip = true;
    }
    out.services = weights(walk.leaves);
    Ok(out)
}

/// The walk down a route's TraefikServices: the Services reached, each with its share of the
/// route's requests, and what the TraefikServices on the way set.
struct Walk<'a> {
    store: &'a Store,
    allow_cross_namespace: bool,
    /// The TraefikServices above the one walked, to catch a cycle.
    visiting: Vec<String>,
    /// (namespace, Service, share of the route's requests).
    leaves: Vec<(String, ServiceRef, f64)>,
    out: Expanded,
}

impl<'a> Walk<'a> {
    fn get(&self, ns: &str, name: &str, field: &str) -> Result<&'a crd::TraefikService, String> {
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

    /// TraefikService `ns/name` (named at `field`) taking `share` of the route's requests: a
    /// weighted split or a mirroring, walked down to its Services.
    fn node(&mut self, ns: &str, name: &str, share: f64, field: &str) -> Result<(), String> {
        let id = format!("{ns}/{name}");
        if self.visiting.contains(&id) || self.visiting.len() > MAX_DEPTH {
            self.visiting.push(id);
            return Err(format!(
                "TraefikServices nest in a cycle or too deep: {}",
                self.visiting.join(" -> ")
            ));
        }
        let object = self.get(ns, name, field)?;
        self.visiting.push(id.clone());
        if let Some(weighted) = &object.spec.weighted {
            self.weighted(ns, name, weighted, share)?;
        } else if let Some(m) = &object.spec.mirroring {
            self.mirroring(ns, name, m, share)?;
        } else if let Some(h) = &object.spec.highest_random_weight {
            let first = member(self.leaves.len(), field)?;
            self.highest_random_weight(ns, name, h, share)?;
            self.out
                .ranked
                .push(first..member(self.leaves.len(), field)?);
        } else {
            return Err(format!(
                "{field}: TraefikService {id} is a failover; it is honoured as a route's only service, not inside a weighted split, a mirroring or another failover"
            ));
        }
        self.visiting.pop();
        Ok(())
    }

    /// A reference to a Service or a TraefikService (under `ns`, at `field`) taking `share`.
    fn branch(
        &mut self,
        ns: &str,
        to: &crd::RouteService,
        share: f64,
        field: &str,
    ) -> Result<(), String> {
        let to_ns = self.namespace(ns, to.namespace.as_ref(), field)?;
        match to.kind.as_deref() {
            None | Some("Service") => {
                if let Some(e) = super::ingressroute::forwarding(to, field)
                    .into_iter()
                    .next()
                {
                    return Err(e);
                }
                let service = service_ref(&to.name, to.port.as_ref(), field)?;
                self.leaves.push((to_ns, service, share));
                self.out.options.push((to.clone(), field.to_owned()));
                Ok(())
            }
            Some("TraefikService") => {
                unhonoured_options(to, field)?;
                self.node(&to_ns, &to.name, share, field)
            }
            Some(kind) => Err(format!(
                "{field}.kind {kind:?} is not Service or TraefikService"
            )),
        }
    }

    /// A weighted TraefikService's services, each with its part of `share`.
    fn weighted(
        &mut self,
        ns: &str,
        name: &str,
        weighted: &crd::Weighted,
        share: f64,
    ) -> Result<(), String> {
        let id = format!("{ns}/{name}");
        if let Some(sticky) = &weighted.sticky {
            let cookie =
                sticky_cookie(sticky, &format!("TraefikService {id}: spec.weighted"), name)?;
            if self.out.sticky.as_ref().is_some_and(|c| *c != cookie) {
                return Err(format!(
                    "TraefikService {id}: spec.weighted.sticky differs from another's of the route; give one cookie"
                ));
            }
            self.out.sticky = Some(cookie);
        }
        let total = total_weight(&weighted.services);
        for (i, child) in weighted.services.iter().enumerate() {
            let field = format!("TraefikService {id}: spec.weighted.services[{i}]");
            let child_share = share * f64::from(child.weight.unwrap_or(1)) / total as f64;
            self.branch(ns, child, child_share, &field)?;
        }
        Ok(())
    }

    /// A highestRandomWeight TraefikService taking `share` of the route's requests: its
    /// Services, each with its weight's part of it.
    fn highest_random_weight(
        &mut self,
        ns: &str,
        name: &str,
        h: &crd::HighestRandomWeight,
        share: f64,
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
            let child_share = share * f64::from(child.weight.unwrap_or(1)) / total as f64;
            self.branch(ns, child, child_share, &field)?;
        }
        Ok(())
    }

    /// A mirroring TraefikService: its main service takes `share` of the route's requests,
    /// its mirrors a copy of a part of them.
    fn mirroring(
        &mut self,
        ns: &str,
        name: &str,
        m: &crd::Mirroring,
        share: f64,
    ) -> Result<(), String> {
        let field = format!("TraefikService {ns}/{name}: spec.mirroring");
        let main_ns = self.namespace(ns, m.namespace.as_ref(), &field)?;
        let first = member(self.leaves.len(), &field)?;
        match m.kind.as_deref() {
            None | Some("Service") => {
                let service = service_ref(&m.name, m.port.as_ref(), &field)?;
                self.leaves.push((main_ns, service, share));
            }
            Some("TraefikService") => self.node(&main_ns, &m.name, share, &field)?,
            Some(kind) => {
                return Err(format!(
                    "{field}.kind {kind:?} is not Service or TraefikService"
                ));
            }
        }
        let of = first..member(self.leaves.len(), &field)?;
        let body = self.mirror_body(m, &field)?;
        for (i, mirror) in m.mirrors.iter().enumerate() {
            let field = format!("{field}.mirrors[{i}]");
            if mirror.kind.as_deref().is_some_and(|k| k != "Service") {
                return Err(format!("{field}.kind: a mirror must be a Service"));
            }
            let percent = mirror.percent.unwrap_or(0);
            if percent > 100 {
                return Err(format!("{field}.percent {percent} is over 100"));
            }
            self.out.mirrors.push(MirrorOf {
                namespace: self.namespace(ns, mirror.namespace.as_ref(), &field)?,
                service: service_ref(&mirror.name, mirror.port.as_ref(), &field)?,
                percent,
                body,
                of: of.clone(),
            });
        }
        Ok(())
    }

    /// How a mirroring's mirrors copy a request with a body: under `mirrorBody` (the
    /// default), body and all when its declared length is within `maxBodySize`. Traefik's
    /// default, -1, copies bodies of any size; fjord holds none unbounded, and says so.
    fn mirror_body(&mut self, m: &crd::Mirroring, field: &str) -> Result<MirrorBody, String> {
        let at = format!("{field}.maxBodySize");
        if !m.mirror_body.unwrap_or(true) {
            if m.max_body_size.is_some() {
                self.out.warnings.push(format!(
                    "{at} does nothing with mirrorBody: false (the head alone is copied)"
                ));
            }
            return Ok(MirrorBody::Head);
        }
        match m.max_body_size {
            None | Some(-1) => {
                self.out.warnings.push(format!(
                    "{at} unset or -1: fjord holds no request body of unbounded size, so requests with a body are not mirrored; give a limit in bytes, or mirrorBody: false to copy their heads"
                ));
                Ok(MirrorBody::UpTo(0))
            }
            Some(n) => u64::try_from(n)
                .map(MirrorBody::UpTo)
                .map_err(|_| format!("{at} {n} is negative (give a limit in bytes, or -1)")),
        }
    }

    /// A failover TraefikService: its main service takes the route's requests; its fallback
    /// those the main has no ready endpoint for (Kubernetes' readiness stands in for
    /// Traefik's health check) and, without a body, those it answers with `errors.status`.
    /// Either may be a weighted split; the fallback's may not mirror.
    fn failover(&mut self, ns: &str, name: &str, f: &crd::Failover) -> Result<(), String> {
        let field = format!("TraefikService {ns}/{name}: spec.failover");
        self.visiting.push(format!("{ns}/{name}"));
        self.branch(ns, &f.service, 1.0, &format!("{field}.service"))?;
        let mut fallback = Walk {
            store: self.store,
            allow_cross_namespace: self.allow_cross_namespace,
            visiting: self.visiting.clone(),
            leaves: Vec::new(),
            out: Expanded::default(),
        };
        fallback.branch(ns, &f.fallback, 1.0, &format!("{field}.fallback"))?;
        if !fallback.out.mirrors.is_empty() || fallback.out.sticky.is_some() {
            return Err(format!(
                "{field}.fallback: a mirroring or sticky cookie under a failover's fallback is not honoured (mirrors copy, and cookies keep to, what the main service takes)"
            ));
        }
        // The fallback is reached as the main is.
        self.out.options.append(&mut fallback.out.options);
        self.out.warnings.append(&mut fallback.out.warnings);
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
                self.out
                    .warnings
                    .push(format!("{at} {}", super::middleware::UNBOUNDED_HOLD));
            }
        }
        self.out.fallback = Some(FallbackService {
            services: weights(fallback.leaves),
            statuses,
            hold_body,
        });
        self.visiting.pop();
        Ok(())
    }
}

/// Leaves' shares as weights in thousandths (at least 1 where the share is not nothing).
fn weights(leaves: Vec<(String, ServiceRef, f64)>) -> Vec<(String, ServiceRef, u32)> {
    leaves
        .into_iter()
        .map(|(ns, s, share)| {
            let weight = if share > 0.0 {
                ((share * 1000.0).round() as u32).max(1)
            } else {
                0
            };
            (ns, s, weight)
        })
        .collect()
}

/// Leaf `index` as a member of the route's backend (below [`crate::balance::ALL_MEMBERS`]'s
/// end).
fn member(index: usize, field: &str) -> Result<u16, String> {
    u16::try_from(index)
        .ok()
        .filter(|m| *m < u16::MAX)
        .ok_or_else(|| format!("{field}: the route reaches over 65534 Services"))
}

/// The sum of `services`' weights (1 each by default), at least 1.
fn total_weight(services: &[crd::RouteService]) -> u64 {
    services
        .iter()
        .map(|s| u64::from(s.weight.unwrap_or(1)))
        .sum::<u64>()
        .max(1)
}

/// Refuses what a reference to a TraefikService sets of a Service's options: the
/// TraefikService reaches its services as its spec and theirs say, rather than drop it unseen.
fn unhonoured_options(to: &crd::RouteService, field: &str) -> Result<(), String> {
    let set = [
        ("scheme", to.scheme.is_some()),
        ("serversTransport", to.servers_transport.is_some()),
        ("passHostHeader", to.pass_host_header.is_some()),
        ("sticky", to.sticky.is_some()),
        ("nativeLB", to.native_lb.is_some()),
        ("strategy", to.strategy.is_some()),
        ("middlewares", !to.middlewares.is_empty()),
        ("responseForwarding", to.response_forwarding.is_some()),
    ];
    match set.iter().find(|(_, on)| *on) {
        Some((option, _)) => Err(format!(
            "{field}.{option} is read on a Kubernetes Service; a TraefikService reaches its services as their own options say"
        )),
        None => Ok(()),
    }
}
