//! What a route's services must agree on: its endpoints are one set, reached one way (scheme,
//! transport, Host, cluster IP), chosen one way (strategy, sticky cookie) and through one
//! chain (the services' middlewares). Read from an IngressRoute route's services, and again
//! with the Services its TraefikServices reach. Pure.

use crate::crd::{self, MiddlewareRef};
use crate::model::{Balance, HostHeader, StickyCookie};

/// How a route's endpoints are reached and chosen, as its services agree.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Agreed {
    /// `scheme: https`: TLS to the endpoints.
    pub https: bool,
    /// `scheme: h2c`: HTTP/2 with prior knowledge.
    pub http2: bool,
    /// The ServersTransport named.
    pub transport: Option<String>,
    /// `nativeLB: true`: the Services' cluster IPs rather than their endpoints.
    pub cluster_ip: bool,
    /// `passHostHeader: false`: the endpoint's address as `Host`.
    pub endpoint_host: bool,
    /// `strategy`.
    pub balance: Balance,
    /// `sticky.cookie`.
    pub sticky: Option<StickyCookie>,
    /// `middlewares`, run after the route's.
    pub middlewares: Vec<MiddlewareRef>,
}

impl Agreed {
    /// The `Host` the backend gets.
    pub(super) fn host_header(&self) -> HostHeader {
        if self.endpoint_host {
            HostHeader::Endpoint
        } else {
            HostHeader::Client
        }
    }
}

/// What `services` (each with the field it is at) agree on, `field` naming them all; what
/// they disagree on, or set wrongly, goes to `errors`. A `kind: TraefikService` reference
/// takes no strategy (its spec balances).
pub(super) fn agreed(
    services: &[(&crd::RouteService, String)],
    field: &str,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Agreed {
    let Some((first, first_at)) = services.first() else {
        return Agreed::default();
    };
    let mut disagree = |what: &str, differs: bool| {
        if differs {
            errors.push(format!(
                "{field} disagree on {what}; the route has one set of endpoints, reached one way through one chain, so give one"
            ));
        }
    };
    let scheme = |s: &crd::RouteService| (s.scheme.clone(), s.servers_transport.clone());
    disagree(
        "scheme or serversTransport",
        services.iter().any(|(s, _)| scheme(s) != scheme(first)),
    );
    disagree(
        "passHostHeader",
        services.iter().any(|(s, _)| {
            s.pass_host_header.unwrap_or(true) != first.pass_host_header.unwrap_or(true)
        }),
    );
    disagree(
        "nativeLB",
        services
            .iter()
            .any(|(s, _)| s.native_lb.unwrap_or(false) != first.native_lb.unwrap_or(false)),
    );
    disagree(
        "middlewares",
        services
            .iter()
            .any(|(s, _)| s.middlewares != first.middlewares),
    );
    let (https, http2) = match first.scheme.as_deref() {
        None | Some("http") => (false, false),
        Some("h2c") => (false, true),
        Some("https") => (true, false),
        Some(other) => {
            errors.push(format!(
                "{first_at}.scheme {other:?} is not http, https or h2c"
            ));
            (false, false)
        }
    };
    Agreed {
        https,
        http2,
        transport: first.servers_transport.clone(),
        cluster_ip: first.native_lb.unwrap_or(false),
        endpoint_host: first.pass_host_header == Some(false),
        balance: balance(services, field, errors, warnings),
        sticky: sticky(services, errors),
        middlewares: first.middlewares.clone(),
    }
}

/// The services' sticky cookie, which they must agree on.
fn sticky(
    services: &[(&crd::RouteService, String)],
    errors: &mut Vec<String>,
) -> Option<StickyCookie> {
    let mut chosen: Option<StickyCookie> = None;
    for (s, at) in services {
        let Some(st) = &s.sticky else { continue };
        match super::ingressroute::sticky_cookie(st, at, &s.name) {
            Err(e) => errors.push(e),
            Ok(cookie) if chosen.as_ref().is_some_and(|c| *c != cookie) => {
                errors.push(format!(
                    "{at}.sticky differs from another service's of the route; the route has one set of endpoints, so give one cookie"
                ));
            }
            Ok(cookie) => chosen = Some(cookie),
        }
    }
    chosen
}

/// The services' `strategy` (wrr where they give none), which they must agree on.
fn balance(
    services: &[(&crd::RouteService, String)],
    field: &str,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Balance {
    let mut chosen = Vec::new();
    for (s, at) in services {
        let at = format!("{at}.strategy");
        let given = s.strategy.as_deref();
        if s.kind.as_deref() == Some("TraefikService") {
            if let Some(given) = given {
                errors.push(format!(
                    "{at} {given:?}: a strategy is read on a Kubernetes Service; a TraefikService balances as its spec says"
                ));
            }
            continue;
        }
        chosen.push(match given {
            None | Some("wrr") => Balance::RoundRobin,
            Some("RoundRobin") => {
                warnings.push(format!(
                    "{at} \"RoundRobin\" is deprecated; use wrr, which it is read as"
                ));
                Balance::RoundRobin
            }
            Some("p2c") => Balance::TwoChoices,
            Some("hrw") => Balance::ClientIp,
            Some("leasttime") => Balance::LeastTime,
            Some(other) => {
                errors.push(format!("{at} {other:?} is not wrr, p2c, hrw or leasttime"));
                continue;
            }
        });
    }
    if chosen.iter().any(|b| *b != chosen[0]) {
        errors.push(format!(
            "{field} disagree on strategy; the route has one set of endpoints, so give one"
        ));
    }
    chosen.first().copied().unwrap_or_default()
}
