//! Resolves a Service reference (name + port number or name) to the addresses fjord forwards to:
//! the ready endpoints of the Service's EndpointSlices, or an `ExternalName`'s DNS name.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ServicePort;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::Translation;
use crate::diagnostics::{Diagnostic, Severity};
use crate::model::middleware::{Kind, Middleware};
use crate::model::{
    BackendId, BackendSpec, BackendTls, EndpointAddr, EndpointSpec, PortRef, ServiceRef,
};
use crate::provider::Store;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Why a backend has nothing to forward to.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Problem {
    pub severity: Severity,
    pub message: String,
}

/// Looks Services up in a [`Store`], with its EndpointSlices indexed by Service.
pub(super) struct Resolver<'a> {
    store: &'a Store,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        let mut slices: HashMap<_, Vec<_>> = HashMap::new();
        for slice in store.endpoint_slices() {
            let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
            let labels = slice.metadata.labels.as_ref();
            if let Some(service) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                slices
                    .entry((ns, service.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        Self { store, slices }
    }

    /// The endpoints of `service` in `namespace` (its cluster IP alone with `cluster_ip`). A
    /// problem comes with a spec that has no endpoints and says why, so requests to it get a
    /// 503 rather than some other route.
    pub(super) fn resolve(
        &self,
        namespace: &str,
        service: &ServiceRef,
        cluster_ip: bool,
    ) -> (BackendSpec, Option<Problem>) {
        match self.endpoints(namespace, service, cluster_ip) {
            Ok(endpoints) if endpoints.is_empty() => {
                let why = format!(
                    "Service {namespace}/{} has no ready endpoints",
                    service.name
                );
                (
                    BackendSpec::unavailable(why.clone()),
                    Some(Problem::warning(why)),
                )
            }
            Ok(endpoints) => (
                BackendSpec {
                    endpoints,
                    unavailable: None,
                    tls: None,
                    http2: false,
                    members: Vec::new(),
                },
                None,
            ),
            Err(problem) => (
                BackendSpec::unavailable(problem.message.clone()),
                Some(problem),
            ),
        }
    }

    fn endpoints(
        &self,
        ns: &str,
        service: &ServiceRef,
        cluster_ip: bool,
    ) -> Result<Vec<EndpointSpec>, Problem> {
        let name = &service.name;
        let Some(svc) = self.store.service(ns, name) else {
            return Err(Problem::warning(format!("Service {ns}/{name} not found")));
        };
        let spec = svc.spec.as_ref();
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
        let port = find_port(ports, &service.port);

        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            let host = spec
                .and_then(|s| s.external_name.clone())
                .unwrap_or_default();
            if http::uri::Authority::try_from(format!("{host}:1")).is_err() || host.is_empty() {
                return Err(Problem::error(format!(
                    "Service {ns}/{name}: spec.externalName {host:?} is not a DNS name"
                )));
            }
            let port = match (&service.port, port) {
                (PortRef::Number(n), _) => *n,
                (PortRef::Name(_), Some(p)) => u16::try_from(p.port).unwrap_or(0),
                (PortRef::Name(p), None) => return Err(no_such_port(ns, name, p)),
            };
            return Ok(vec![EndpointSpec {
                addr: EndpointAddr::Dns { host, port },
                weight: 1,
                member: 0,
            }]);
        }

        let Some(port) = port else {
            return Err(match &service.port {
                PortRef::Number(n) => no_such_port(ns, name, n),
                PortRef::Name(p) => no_such_port(ns, name, p),
            });
        };
        if cluster_ip {
            return by_cluster_ip(ns, name, spec.and_then(|s| s.cluster_ip.as_deref()), port);
        }
        // EndpointSlice ports carry the Service port's name (empty for a lone unnamed port)
        // with the resolved target port number.
        let port_name = port.name.as_deref().unwrap_or_default();
        let mut out = Vec::new();
        for slice in self.slices.get(&(ns, name.as_str())).into_iter().flatten() {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let slice_port = slice.ports.iter().flatten().find(|p| {
                p.name.as_deref().unwrap_or_default() == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
            });
            let Some(number) = slice_port
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for endpoint in slice.endpoints.iter().flatten() {
                // A nil `ready` is "unknown", which consumers should treat as ready.
                let ready = endpoint.conditions.as_ref().and_then(|c| c.ready);
                if ready == Some(false) {
                    continue;
                }
                // Addresses of one endpoint are fungible: the first will do.
                let Some(ip) = endpoint
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                else {
                    continue;
                };
                let addr = EndpointAddr::Ip(SocketAddr::new(ip, number));
                if !out.iter().any(|e: &EndpointSpec| e.addr == addr) {
                    out.push(EndpointSpec {
                        addr,
                        weight: 1,
                        member: 0,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.addr.cmp(&b.addr));
        Ok(out)
    }
}

/// The one endpoint of Service `ns/name` reached at its cluster IP on `port`.
fn by_cluster_ip(
    ns: &str,
    name: &str,
    ip: Option<&str>,
    port: &ServicePort,
) -> Result<Vec<EndpointSpec>, Problem> {
    let Some(Ok(ip)) = ip.map(str::parse::<IpAddr>) else {
        return Err(Problem::error(format!(
            "Service {ns}/{name} has no cluster IP to reach it at (spec.clusterIP {:?}: headless, or not assigned, as in a manifests folder); drop service-upstream (nativeLB) to use its endpoints",
            ip.unwrap_or_default()
        )));
    };
    let port = u16::try_from(port.port).map_err(|_| {
        Problem::error(format!(
            "Service {ns}/{name}: port {} is out of range",
            port.port
        ))
    })?;
    Ok(vec![EndpointSpec {
        addr: EndpointAddr::Ip(SocketAddr::new(ip, port)),
        weight: 1,
        member: 0,
    }])
}

/// How a backend's endpoints are reached.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Reach<'t> {
    /// TLS to them, with its label.
    pub tls: Option<&'t (String, Arc<BackendTls>)>,
    /// At the Service's cluster IP, rather than at its endpoints.
    pub cluster_ip: bool,
    /// In HTTP/2 (gRPC): over TLS with `tls`, else with prior knowledge (h2c).
    pub http2: bool,
}

impl Reach<'_> {
    /// What a backend reached this way adds to its Service port's identity.
    fn label(&self) -> Option<String> {
        match (self.tls, self.http2) {
            (None, false) => None,
            (None, true) => Some("h2c".into()),
            (Some((label, _)), false) => Some(label.clone()),
            (Some((label, _)), true) => Some(format!("{label}+h2")),
        }
    }
}

/// The backend for weighted `services` (namespace, service, weight). One service is that
/// Service's port; several are one endpoint set in which each service's endpoints together get
/// the service's share of the weight. With `reach.tls` (its label and settings) the endpoints
/// are spoken to over TLS, and with `reach.cluster_ip` reached at the cluster IP, each as a
/// backend of its own.
pub(super) fn backend_for(
    resolver: &Resolver<'_>,
    services: &[(String, ServiceRef, u32)],
    reach: Reach<'_>,
    // Only a diagnostic names the field: formatted when there is one, not for every route.
    field: &dyn Fn() -> String,
    subject: &str,
    out: &mut Translation,
) -> BackendId {
    let (id, spec, problems) = resolve_all(resolver, services, reach);
    for p in problems {
        out.diagnostics.push(Diagnostic {
            severity: p.severity,
            subject: subject.to_owned(),
            message: format!("{}: {}; requests to it get 503", field(), p.message),
        });
    }
    out.config.backends.insert(id.clone(), spec);
    id
}

/// Backend `id`'s endpoints resolved again, as it was first made (its services, weights, TLS
/// and reach): for a change that touched only EndpointSlices.
pub(super) fn refresh(resolver: &Resolver<'_>, id: &BackendId, old: &BackendSpec) -> BackendSpec {
    let one = [(id.namespace.clone(), id.service.clone(), 1)];
    let services = if old.members.is_empty() {
        &one[..]
    } else {
        &old.members[..]
    };
    let tls = id.scheme.clone().zip(old.tls.clone());
    let reach = Reach {
        tls: tls.as_ref(),
        cluster_ip: id.cluster_ip,
        http2: old.http2,
    };
    resolve_all(resolver, services, reach).1
}

/// The backend for `services` reached as `reach` says, and the problems found on the way.
fn resolve_all(
    resolver: &Resolver<'_>,
    services: &[(String, ServiceRef, u32)],
    reach: Reach<'_>,
) -> (BackendId, BackendSpec, Vec<Problem>) {
    let Reach {
        tls,
        cluster_ip,
        http2,
    } = reach;
    let mut problems = Vec::new();
    let mut resolved = Vec::new();
    for (ns, service, weight) in services {
        let (mut spec, problem) = resolver.resolve(ns, service, cluster_ip);
        spec.tls = tls.map(|(_, t)| Arc::clone(t));
        spec.http2 = http2;
        problems.extend(problem);
        let id = BackendId {
            namespace: ns.clone(),
            service: service.clone(),
            scheme: reach.label(),
            cluster_ip,
        };
        resolved.push((id, spec, *weight));
    }
    if resolved.len() == 1
        && let Some((id, spec, _)) = resolved.pop()
    {
        return (id, spec, problems);
    }
    // Give each endpoint weight × (L / its service's endpoint count), L the least common
    // multiple of the counts, so shares follow the service weights exactly.
    let lcm = resolved
        .iter()
        .map(|(_, s, _)| s.endpoints.len() as u64)
        .filter(|n| *n > 0)
        .fold(1u64, |acc, n| {
            (acc / num_integer::gcd(acc, n))
                .saturating_mul(n)
                .min(1 << 20)
        });
    let mut endpoints = Vec::new();
    let mut names = Vec::new();
    for (member, (id, spec, weight)) in resolved.iter().enumerate() {
        names.push(format!("{id}@{weight}"));
        let n = spec.endpoints.len() as u64;
        for e in &spec.endpoints {
            let w = (u64::from(*weight) * lcm / n.max(1)).clamp(1, u64::from(u32::MAX));
            if *weight > 0 {
                endpoints.push(EndpointSpec {
                    addr: e.addr.clone(),
                    weight: u32::try_from(w).unwrap_or(u32::MAX),
                    member: u16::try_from(member).unwrap_or(u16::MAX),
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
        scheme: reach.label(),
        cluster_ip,
    };
    let unavailable = endpoints
        .is_empty()
        .then(|| "no service of the route has ready endpoints".to_owned());
    let spec = BackendSpec {
        endpoints,
        unavailable,
        tls: tls.map(|(_, t)| Arc::clone(t)),
        http2,
        members: services.to_vec(),
    };
    (id, spec, problems)
}

fn find_port<'s>(ports: &'s [ServicePort], wanted: &PortRef) -> Option<&'s ServicePort> {
    ports.iter().find(|p| match wanted {
        PortRef::Number(n) => p.port == i32::from(*n),
        PortRef::Name(name) => p.name.as_deref() == Some(name.as_str()),
    })
}

fn no_such_port(ns: &str, name: &str, port: impl std::fmt::Debug) -> Problem {
    Problem::error(format!("Service {ns}/{name} has no port {port:?}"))
}

impl Problem {
    fn warning(message: String) -> Self {
        Self {
            severity: Severity::Warning,
            message,
        }
    }

    fn error(message: String) -> Self {
        Self {
            severity: Severity::Error,
            message,
        }
    }
}

/// Lists the backends the `errors` middlewares of `chain` take their pages from, so the
/// snapshot has them; a missing one is named like a route's.
pub(super) fn error_backends(
    resolver: &Resolver<'_>,
    chain: &[Arc<Middleware>],
    subject: &str,
    out: &mut Translation,
) {
    for m in chain {
        if let Kind::Errors(pages) = &m.kind {
            let id = &pages.backend;
            backend_for(
                resolver,
                &[(id.namespace.clone(), id.service.clone(), 1)],
                Reach::default(),
                &|| format!("Middleware {}: spec.errors.service", m.name),
                subject,
                out,
            );
        }
    }
}
