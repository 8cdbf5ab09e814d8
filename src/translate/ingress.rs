//! Reads one Ingress into validated route rules: hosts, paths and the Service each points at.
//! Every problem is reported with its field path and value; any problem rejects the Ingress, as
//! the API server's validation would.

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::{HostMatch, PathMatch, PortRef, ServiceRef};

/// A validated Ingress.
#[derive(Debug, Default)]
pub struct Rules {
    pub paths: Vec<PathRule>,
    /// `spec.defaultBackend`.
    pub default_backend: Option<ServiceRef>,
    pub tls: Vec<TlsRule>,
}

/// One `spec.tls[i]`.
#[derive(Debug)]
pub struct TlsRule {
    /// `spec.tls[i]`, for diagnostics.
    pub field: String,
    /// Lowercase names, `*.` wildcards allowed.
    pub hosts: Vec<String>,
    pub secret_name: Option<String>,
}

/// One `rules[i].http.paths[j]`.
#[derive(Debug)]
pub struct PathRule {
    /// `spec.rules[i].http.paths[j]`, for diagnostics.
    pub field: String,
    pub host: HostMatch,
    pub path: PathMatch,
    pub service: ServiceRef,
}

/// Validates `ingress`; on failure, every problem found.
pub fn rules(ingress: &Ingress) -> Result<Rules, Vec<String>> {
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
