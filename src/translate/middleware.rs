//! Middleware objects compiled into runnable middlewares, and middleware references (from an
//! IngressRoute route, a chain, or an Ingress's `fjord.dev/middlewares` annotation) resolved
//! into flat chains, with cycles found and reported.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::breaker;
use crate::crd::{self, MiddlewareRef};
use crate::diagnostics::Diagnostic;
use crate::htdigest;
use crate::htpasswd;
use crate::model::middleware::{
    CertInfo, ClientTls, CompressSpec, Cors, Distribution, DnInfo, ErrorPages, ForwardAuthSpec,
    GrpcWebSpec, HeadersSpec, InFlightSpec, IpStrategy, Kind, Middleware, OnError,
    PassTlsClientCert, QueryParameters, RateLimitSpec, Redacted, RedisSpec, Retry, Source,
    media_type,
};
use crate::provider::Store;

/// Annotation attaching middlewares to every path of an Ingress, in order.
pub const MIDDLEWARES_ANNOTATION: &str = "fjord.dev/middlewares";

/// A compiled Middleware object.
enum Compiled {
    One(Arc<Middleware>),
    /// `rateLimit` with `average: 0`: nothing to do.
    Nothing,
    Chain(Vec<MiddlewareRef>),
}

/// The Middleware objects of a store, compiled on first use.
pub struct Middlewares<'a> {
    store: &'a Store,
    /// Whether a reference may name a Middleware in another namespace.
    allow_cross_namespace: bool,
    compiled: HashMap<String, Result<Arc<Compiled>, String>>,
}

impl<'a> Middlewares<'a> {
    /// The Middlewares of `store`, none compiled yet; references across namespaces are
    /// refused unless `allow_cross_namespace`.
    pub fn new(store: &'a Store, allow_cross_namespace: bool) -> Self {
        Self {
            store,
            allow_cross_namespace,
            compiled: HashMap::new(),
        }
    }

    /// Compiles every Middleware, so each invalid one is reported even if nothing uses it, and
    /// warns of the deprecated fields each uses.
    pub fn check_all(&mut self, diagnostics: &mut Vec<Diagnostic>) {
        let ids: Vec<(String, String, Vec<&str>)> = self
            .store
            .middlewares()
            .map(|m| {
                let ns = m
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let name = m.metadata.name.clone().unwrap_or_default();
                (ns, name, deprecated(&m.spec))
            })
            .collect();
        for (ns, name, deprecated) in ids {
            let subject = format!("Middleware {ns}/{name}");
            if let Err(why) = self.compile(&ns, &name) {
                diagnostics.push(Diagnostic::error(&subject, why));
            }
            for warning in deprecated {
                diagnostics.push(Diagnostic::warning(&subject, warning));
            }
        }
    }

    /// The flat chain for `refs`, made from namespace `ns`.
    pub fn chain(
        &mut self,
        ns: &str,
        refs: &[MiddlewareRef],
    ) -> Result<Vec<Arc<Middleware>>, String> {
        let mut out = Vec::new();
        let mut visiting = Vec::new();
        for r in refs {
            self.expand(ns, r, &mut visiting, &mut out)?;
        }
        Ok(out)
    }

    fn expand(
        &mut self,
        ns: &str,
        r: &MiddlewareRef,
        visiting: &mut Vec<String>,
        out: &mut Vec<Arc<Middleware>>,
    ) -> Result<(), String> {
        let ref_ns = r.namespace.as_deref().unwrap_or(ns);
        let id = format!("{ref_ns}/{}", r.name);
        // Namespaces are walls: another namespace's Middleware only where the operator allows.
        if ref_ns != ns && !self.allow_cross_namespace {
            return Err(format!(
                "Middleware {id} is in another namespace than {ns}, and cross-namespace references are off (providers.kubernetesCRD.allowCrossNamespace)"
            ));
        }
        if visiting.contains(&id) {
            visiting.push(id);
            return Err(format!(
                "middleware chain has a cycle: {}",
                visiting.join(" -> ")
            ));
        }
        let compiled = match self.compile(ref_ns, &r.name) {
            Ok(c) => c,
            Err(why) => return Err(format!("Middleware {id}: {why}")),
        };
        match &*compiled {
            Compiled::One(m) => out.push(Arc::clone(m)),
            Compiled::Nothing => {}
            Compiled::Chain(refs) => {
                visiting.push(id);
                for inner in refs {
                    self.expand(ref_ns, inner, visiting, out)?;
                }
                visiting.pop();
            }
        }
        Ok(())
    }

    fn compile(&mut self, ns: &str, name: &str) -> Result<Arc<Compiled>, String> {
        let id = format!("{ns}/{name}");
        if let Some(done) = self.compiled.get(&id) {
            return done.clone();
        }
        let result = match self.store.middleware(ns, name) {
            None => Err("not found".to_owned()),
            Some(m) => compile(&id, ns, &m.spec, self.store).map(Arc::new),
        };
        self.compiled.insert(id, result.clone());
        result
    }
}

/// Parses `fjord.dev/middlewares: "a, other-ns/b"`.
pub fn parse_annotation(value: &str) -> Result<Vec<MiddlewareRef>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (namespace, name) = match s.split_once('/') {
                Some((ns, name)) => (Some(ns.to_owned()), name),
                None => (None, s),
            };
            if name.is_empty() || name.contains('/') || namespace.as_deref() == Some("") {
                return Err(format!(
                    "annotation {MIDDLEWARES_ANNOTATION}: {s:?} is not NAME or NAMESPACE/NAME"
                ));
            }
            Ok(MiddlewareRef {
                name: name.to_owned(),
                namespace,
            })
        })
        .collect()
}

/// The text under `key` in Secret `ns/name`, from `data` or `stringData`.
pub(super) fn secret_value(
    store: &Store,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<String, String> {
    let secret = store
        .secret(ns, name)
        .ok_or_else(|| format!("Secret {ns}/{name} not found"))?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        })
        .ok_or_else(|| format!("Secret {ns}/{name} has no {key} key"))
}

/// A Middleware spec made by fjord itself (from another controller's annotations), compiled
/// as a Middleware object is, under the name `id`; `None` when it does nothing.
pub(super) fn compile_spec(
    id: &str,
    ns: &str,
    spec: &crd::MiddlewareSpec,
    store: &Store,
) -> Result<Option<Arc<Middleware>>, String> {
    match compile(id, ns, spec, store)? {
        Compiled::One(m) => Ok(Some(m)),
        Compiled::Nothing => Ok(None),
        Compiled::Chain(_) => Err("a chain is not made here".into()),
    }
}

fn compile(
    id: &str,
    ns: &str,
    spec: &crd::MiddlewareSpec,
    store: &Store,
) -> Result<Compiled, String> {
    let set: Vec<&str> = [
        ("rateLimit", spec.rate_limit.is_some()),
        ("inFlightReq", spec.in_flight_req.is_some()),
        ("headers", spec.headers.is_some()),
        ("redirectScheme", spec.redirect_scheme.is_some()),
        ("redirectRegex", spec.redirect_regex.is_some()),
        ("stripPrefix", spec.strip_prefix.is_some()),
        ("stripPrefixRegex", spec.strip_prefix_regex.is_some()),
        ("addPrefix", spec.add_prefix.is_some()),
        ("replacePath", spec.replace_path.is_some()),
        ("replacePathRegex", spec.replace_path_regex.is_some()),
        ("basicAuth", spec.basic_auth.is_some()),
        ("digestAuth", spec.digest_auth.is_some()),
        ("forwardAuth", spec.forward_auth.is_some()),
        ("ipAllowList", spec.ip_allow_list.is_some()),
        ("ipWhiteList", spec.ip_white_list.is_some()),
        ("compress", spec.compress.is_some()),
        ("buffering", spec.buffering.is_some()),
        ("retry", spec.retry.is_some()),
        ("errors", spec.errors.is_some()),
        ("chain", spec.chain.is_some()),
        ("encodedCharacters", spec.encoded_characters.is_some()),
        (
            "redirectTrailingSlash",
            spec.redirect_trailing_slash.is_some(),
        ),
        ("queryParameters", spec.query_parameters.is_some()),
        ("passTLSClientCert", spec.pass_tls_client_cert.is_some()),
        ("circuitBreaker", spec.circuit_breaker.is_some()),
        ("contentType", spec.content_type.is_some()),
        ("grpcWeb", spec.grpc_web.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, on)| on.then_some(n))
    .collect();
    if set.len() != 1 {
        return Err(format!(
            "spec must set exactly one middleware kind; it sets {}",
            if set.is_empty() {
                "none".to_owned()
            } else {
                set.join(", ")
            }
        ));
    }
    let kind = if let Some(r) = &spec.rate_limit {
        if r.average == 0 {
            return Ok(Compiled::Nothing);
        }
        let period = match &r.period {
            None => Duration::from_secs(1),
            Some(p) => duration(p).map_err(|e| format!("spec.rateLimit.period {e}"))?,
        };
        if period.is_zero() {
            return Err("spec.rateLimit.period must be more than 0".into());
        }
        let burst = r.burst.unwrap_or(1).max(1);
        let source = source(
            r.source_criterion.as_ref(),
            "spec.rateLimit.sourceCriterion",
            Source::ClientIp(IpStrategy::default()),
        )?;
        Kind::RateLimit(RateLimitSpec {
            average: r.average,
            period,
            burst,
            source,
            distribution: distribution(r, ns, store)?,
            exempt: Vec::new(),
        })
    } else if let Some(f) = &spec.in_flight_req {
        if f.amount == 0 {
            return Err("spec.inFlightReq.amount must be at least 1".into());
        }
        Kind::InFlight(InFlightSpec {
            amount: f.amount,
            source: source(
                f.source_criterion.as_ref(),
                "spec.inFlightReq.sourceCriterion",
                Source::RequestHost,
            )?,
            exempt: Vec::new(),
        })
    } else if let Some(h) = &spec.headers {
        Kind::Headers(Box::new(headers(h)?))
    } else if let Some(r) = &spec.redirect_scheme {
        if !matches!(r.scheme.as_str(), "http" | "https") {
            return Err(format!(
                "spec.redirectScheme.scheme {:?} is not http or https",
                r.scheme
            ));
        }
        if let Some(p) = &r.port
            && p.parse::<u16>().is_err()
        {
            return Err(format!("spec.redirectScheme.port {p:?} is not a port"));
        }
        Kind::RedirectScheme {
            scheme: r.scheme.as_str().into(),
            port: r.port.as_deref().map(Into::into),
            permanent: r.permanent.unwrap_or(false),
        }
    } else if let Some(r) = &spec.redirect_regex {
        Kind::RedirectRegex {
            regex: regex(&r.regex, "spec.redirectRegex.regex")?,
            replacement: r.replacement.clone(),
            permanent: r.permanent.unwrap_or(false),
        }
    } else if let Some(s) = &spec.strip_prefix {
        for (i, p) in s.prefixes.iter().enumerate() {
            if !p.starts_with('/') {
                return Err(format!(
                    "spec.stripPrefix.prefixes[{i}] {p:?} must start with '/'"
                ));
            }
        }
        Kind::StripPrefix(s.prefixes.clone())
    } else if let Some(s) = &spec.strip_prefix_regex {
        let regexes = s
            .regex
            .iter()
            .enumerate()
            .map(|(i, r)| regex(r, &format!("spec.stripPrefixRegex.regex[{i}]")))
            .collect::<Result<_, _>>()?;
        Kind::StripPrefixRegex(regexes)
    } else if let Some(a) = &spec.add_prefix {
        if !a.prefix.starts_with('/') {
            return Err(format!(
                "spec.addPrefix.prefix {:?} must start with '/'",
                a.prefix
            ));
        }
        Kind::AddPrefix(a.prefix.clone())
    } else if let Some(r) = &spec.replace_path {
        if !r.path.starts_with('/') {
            return Err(format!(
                "spec.replacePath.path {:?} must start with '/'",
                r.path
            ));
        }
        Kind::ReplacePath(r.path.clone())
    } else if let Some(r) = &spec.replace_path_regex {
        Kind::ReplacePathRegex(
            regex(&r.regex, "spec.replacePathRegex.regex")?,
            r.replacement.clone(),
        )
    } else if let Some(b) = &spec.basic_auth {
        Kind::BasicAuth {
            users: basic_auth_users(b, ns, store)?,
            realm: b.realm.clone().unwrap_or_else(|| "traefik".into()),
            remove_header: b.remove_header.unwrap_or(false),
            header_field: b
                .header_field
                .as_deref()
                .map(|h| {
                    HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                        format!("spec.basicAuth.headerField {h:?} is not a header name")
                    })
                })
                .transpose()?,
        }
    } else if let Some(e) = &spec.errors {
        Kind::Errors(Box::new(error_pages(e, ns)?))
    } else if let Some(d) = &spec.digest_auth {
        let realm = d.realm.clone().unwrap_or_else(|| "traefik".into());
        let users = digest_users(d, ns, store)?;
        if !users.iter().any(|u| u.realm == realm) {
            return Err(format!(
                "spec.digestAuth: no user is of realm {realm:?} (the htdigest lines' second field), so nobody could log in"
            ));
        }
        Kind::DigestAuth {
            digest: Box::new(htdigest::Digest::new(users, realm)),
            remove_header: d.remove_header.unwrap_or(false),
            header_field: d
                .header_field
                .as_deref()
                .map(|h| {
                    HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                        format!("spec.digestAuth.headerField {h:?} is not a header name")
                    })
                })
                .transpose()?,
        }
    } else if let Some(f) = &spec.forward_auth {
        Kind::ForwardAuth(Box::new(forward_auth(f, ns, store)?))
    } else if let Some(a) = spec.ip_allow_list.as_ref().or(spec.ip_white_list.as_ref()) {
        let ranges = a
            .source_range
            .iter()
            .enumerate()
            .map(|(i, r)| net(r).map_err(|e| format!("spec.ipAllowList.sourceRange[{i}] {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if ranges.is_empty() {
            return Err("spec.ipAllowList.sourceRange is empty: nothing would be allowed".into());
        }
        Kind::IpAllowList {
            ranges,
            strategy: ip_strategy(a.ip_strategy.as_ref(), "spec.ipAllowList.ipStrategy")?,
        }
    } else if let Some(c) = &spec.compress {
        let known = |e: &str| matches!(e, "gzip" | "br");
        let encodings: Vec<String> = if c.encodings.is_empty() {
            vec!["gzip".into(), "br".into()]
        } else {
            for (i, e) in c.encodings.iter().enumerate() {
                if !known(e) && e != "zstd" {
                    return Err(format!(
                        "spec.compress.encodings[{i}] {e:?} is not gzip, br or zstd"
                    ));
                }
            }
            c.encodings.iter().filter(|e| known(e)).cloned().collect()
        };
        if encodings.is_empty() {
            return Err("spec.compress.encodings offers only zstd, which fjord does not speak; add gzip or br".into());
        }
        if let Some(d) = c
            .default_encoding
            .as_deref()
            .filter(|d| !encodings.iter().any(|e| e == d))
        {
            return Err(format!(
                "spec.compress.defaultEncoding {d:?} is not among the encodings offered ({})",
                encodings.join(", ")
            ));
        }
        Kind::Compress(CompressSpec {
            min_bytes: c.min_response_body_bytes.unwrap_or(1024),
            excluded: c
                .excluded_content_types
                .iter()
                .map(|t| media_type(t))
                .collect(),
            encodings,
            default_encoding: c.default_encoding.clone(),
        })
    } else if let Some(r) = &spec.retry {
        Kind::Retry(retry(r)?)
    } else if let Some(b) = &spec.buffering {
        let request = b.max_request_body_bytes.unwrap_or(0);
        Kind::Buffering {
            request,
            response: u64::try_from(b.max_response_body_bytes.unwrap_or(0)).map_err(|_| {
                "spec.buffering.maxResponseBodyBytes must not be negative (0 is no limit)"
                    .to_owned()
            })?,
            retry: b
                .retry_expression
                .as_deref()
                .filter(|e| !e.trim().is_empty())
                .map(|e| retry_expression(e, request))
                .transpose()?
                .map(Box::new),
        }
    } else if let Some(c) = &spec.chain {
        return Ok(Compiled::Chain(c.middlewares.clone()));
    } else if let Some(e) = &spec.encoded_characters {
        Kind::EncodedCharacters(encoded_denied(e))
    } else if let Some(r) = &spec.redirect_trailing_slash {
        let add = match r.mode.as_str() {
            "add" => true,
            "remove" => false,
            other => {
                return Err(format!(
                    "spec.redirectTrailingSlash.mode {other:?} is not add or remove"
                ));
            }
        };
        Kind::RedirectTrailingSlash {
            add,
            permanent: r.permanent.unwrap_or(false),
        }
    } else if let Some(q) = &spec.query_parameters {
        Kind::QueryParameters(Box::new(query_parameters(q)?))
    } else if let Some(g) = &spec.grpc_web {
        Kind::GrpcWeb(Box::new(GrpcWebSpec {
            allow_origins: g.allow_origins.clone(),
        }))
    } else if let Some(c) = &spec.content_type {
        // `autoDetect: false` turns detection off, as Traefik reads it: nothing to run.
        if c.auto_detect == Some(false) {
            return Ok(Compiled::Nothing);
        }
        Kind::ContentType
    } else if let Some(c) = &spec.circuit_breaker {
        Kind::CircuitBreaker(Box::new(circuit_breaker(c)?))
    } else if let Some(p) = &spec.pass_tls_client_cert {
        Kind::PassTlsClientCert(Box::new(pass_tls_client_cert(p)))
    } else {
        let which = set.first().copied().unwrap_or_default();
        return Err(format!("{which} is not supported by this version of fjord"));
    };
    Ok(Compiled::One(Arc::new(Middleware {
        name: id.into(),
        kind,
    })))
}

/// The bytes `encodedCharacters` refuses percent-encoded in a path: all it does not allow.
fn encoded_denied(e: &crd::EncodedCharacters) -> Box<[u8]> {
    [
        (e.allow_encoded_slash, b'/'),
        (e.allow_encoded_back_slash, b'\\'),
        (e.allow_encoded_null_character, 0),
        (e.allow_encoded_semicolon, b';'),
        (e.allow_encoded_percent, b'%'),
        (e.allow_encoded_question_mark, b'?'),
        (e.allow_encoded_hash, b'#'),
    ]
    .into_iter()
    .filter(|(allowed, _)| !allowed.unwrap_or(false))
    .map(|(_, byte)| byte)
    .collect()
}

/// `queryParameters`, checked as Traefik checks it: no empty name, and no name both deleted
/// and set or added (which would be a contradiction, not an order).
fn query_parameters(q: &crd::QueryParameters) -> Result<QueryParameters, String> {
    for (i, name) in q.delete.iter().enumerate() {
        if name.is_empty() {
            return Err(format!("spec.queryParameters.delete[{i}] is empty"));
        }
    }
    for (field, params) in [("set", &q.set), ("add", &q.add)] {
        for name in params.keys() {
            if name.is_empty() {
                return Err(format!("spec.queryParameters.{field} has an empty name"));
            }
            if q.delete.contains(name) {
                return Err(format!(
                    "spec.queryParameters: {name:?} is both in {field} and in delete"
                ));
            }
        }
    }
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    Ok(QueryParameters {
        delete: q.delete.clone(),
        set: pairs(&q.set),
        add: pairs(&q.add),
    })
}

fn circuit_breaker(c: &crd::CircuitBreaker) -> Result<breaker::Settings, String> {
    let expression = breaker::Expression::parse(&c.expression).map_err(|e| {
        format!(
            "spec.circuitBreaker.expression {:?} does not parse: {e}",
            c.expression
        )
    })?;
    let period = |value: &Option<IntOrString>, field: &str, default: Duration| match value {
        None => Ok(default),
        Some(v) => duration(v).map_err(|e| format!("spec.circuitBreaker.{field} {e}")),
    };
    let response_code = c.response_code.unwrap_or(503);
    if !(200..600).contains(&response_code) {
        return Err(format!(
            "spec.circuitBreaker.responseCode {response_code} is not a status between 200 and 599"
        ));
    }
    Ok(breaker::Settings {
        expression,
        check_period: period(&c.check_period, "checkPeriod", Duration::from_millis(100))?,
        fallback: period(
            &c.fallback_duration,
            "fallbackDuration",
            Duration::from_secs(10),
        )?,
        recovery: period(
            &c.recovery_duration,
            "recoveryDuration",
            Duration::from_secs(10),
        )?,
        response_code,
    })
}

fn pass_tls_client_cert(p: &crd::PassTlsClientCert) -> PassTlsClientCert {
    let on = |b: Option<bool>| b.unwrap_or(false);
    PassTlsClientCert {
        pem: on(p.pem),
        info: p.info.as_ref().map(|i| CertInfo {
            not_after: on(i.not_after),
            not_before: on(i.not_before),
            sans: on(i.sans),
            serial_number: on(i.serial_number),
            subject: i.subject.as_ref().map(|d| DnInfo {
                country: on(d.country),
                province: on(d.province),
                locality: on(d.locality),
                organization: on(d.organization),
                organizational_unit: on(d.organizational_unit),
                common_name: on(d.common_name),
                serial_number: on(d.serial_number),
                domain_component: on(d.domain_component),
            }),
            issuer: i.issuer.as_ref().map(|d| DnInfo {
                country: on(d.country),
                province: on(d.province),
                locality: on(d.locality),
                organization: on(d.organization),
                organizational_unit: false,
                common_name: on(d.common_name),
                serial_number: on(d.serial_number),
                domain_component: on(d.domain_component),
            }),
        }),
    }
}

/// basicAuth's users: the Secret's `users` lines, then those inline; at least one of the two.
fn basic_auth_users(
    b: &crd::BasicAuth,
    ns: &str,
    store: &Store,
) -> Result<Vec<htpasswd::User>, String> {
    let mut users = Vec::new();
    if !b.users.is_empty() {
        users = htpasswd::parse_users(&b.users.join("\n"))
            .map_err(|e| format!("spec.basicAuth.users: {e}"))?;
    }
    let Some(secret) = &b.secret else {
        if users.is_empty() {
            return Err("spec.basicAuth needs users or a secret".into());
        }
        return Ok(users);
    };
    let field = |why| format!("spec.basicAuth.secret: {why}");
    let basic = store
        .secret(ns, secret)
        .is_some_and(|s| s.type_.as_deref() == Some("kubernetes.io/basic-auth"));
    if basic {
        // One user, in clear: `username` and `password`.
        let name = secret_value(store, ns, secret, "username").map_err(field)?;
        let password = secret_value(store, ns, secret, "password").map_err(field)?;
        users.push(htpasswd::User::plain(&name, &password));
    } else {
        let text = secret_value(store, ns, secret, "users").map_err(field)?;
        users.extend(
            htpasswd::parse_users(&text)
                .map_err(|e| field(format!("Secret {ns}/{secret}: {e}")))?,
        );
    }
    Ok(users)
}

/// The longest request body a forwardAuth with `forwardBody` sends when it gives no
/// `maxBodySize` (or -1, Traefik's unbounded default): fjord holds no body unbounded.
const FORWARD_BODY_DEFAULT: u64 = 1 << 20;

/// A forwardAuth's settings, checked: an absolute http(s) address, header names, the regex,
/// TLS from Secrets, how much of a body is sent.
pub(super) fn forward_auth(
    f: &crd::ForwardAuth,
    ns: &str,
    store: &Store,
) -> Result<ForwardAuthSpec, String> {
    let address: http::Uri = f
        .address
        .parse()
        .map_err(|e| format!("spec.forwardAuth.address {:?}: {e}", f.address))?;
    if !matches!(address.scheme_str(), Some("http" | "https")) || address.authority().is_none() {
        return Err(format!(
            "spec.forwardAuth.address {:?} is not an absolute http:// or https:// URL",
            f.address
        ));
    }
    let forward_body = match (f.forward_body, f.max_body_size) {
        (Some(true), None | Some(-1)) => Some(FORWARD_BODY_DEFAULT),
        (Some(true), Some(n)) => Some(u64::try_from(n).map_err(|_| {
            format!("spec.forwardAuth.maxBodySize {n} is negative (give a limit in bytes, or -1)")
        })?),
        _ => None,
    };
    let names = |list: &[String], field: &str| {
        list.iter()
            .enumerate()
            .map(|(i, h)| {
                HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    format!("spec.forwardAuth.{field}[{i}] {h:?} is not a header name")
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(ForwardAuthSpec {
        host_from_request: false,
        request_headers: names(&f.auth_request_headers, "authRequestHeaders")?,
        response_headers: names(&f.auth_response_headers, "authResponseHeaders")?,
        response_headers_regex: f
            .auth_response_headers_regex
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(|r| regex(r, "spec.forwardAuth.authResponseHeadersRegex"))
            .transpose()?,
        add_cookies: f.add_auth_cookies_to_response.clone(),
        trust_forward_header: f.trust_forward_header.unwrap_or(false),
        preserve_location: f.preserve_location_header.unwrap_or(false),
        preserve_method: f.preserve_request_method.unwrap_or(false),
        forward_body,
        tls: f
            .tls
            .as_ref()
            .map(|t| client_tls(t, ns, store, "spec.forwardAuth.tls"))
            .transpose()?,
        nginx: None,
        address,
    })
}

/// Where a rate limit's buckets are: `redis` wins over `distribution`, which may then only be
/// `local` (what `onError: local` falls back on is always divided by the replicas).
fn distribution(r: &crd::RateLimit, ns: &str, store: &Store) -> Result<Distribution, String> {
    let spread = match r.distribution.as_deref() {
        None | Some("local") => Distribution::Local,
        Some("perReplica") => Distribution::PerReplica,
        Some(other) => {
            return Err(format!(
                "spec.rateLimit.distribution {other:?} is not local or perReplica"
            ));
        }
    };
    let Some(redis) = &r.redis else {
        return Ok(spread);
    };
    if spread == Distribution::PerReplica {
        return Err("spec.rateLimit sets both redis and distribution: perReplica; with redis the limit is exact across replicas, so remove distribution".into());
    }
    Ok(Distribution::Redis(Box::new(redis_spec(redis, ns, store)?)))
}

/// A rate limit's Redis: one server or a Redis Cluster's nodes (as Traefik reads several
/// endpoints), credentials and certificates from Secrets, timeouts.
fn redis_spec(r: &crd::RateLimitRedis, ns: &str, store: &Store) -> Result<RedisSpec, String> {
    if r.endpoints.is_empty() {
        return Err("spec.rateLimit.redis.endpoints is empty; give the server's host:port".into());
    }
    let endpoints = r
        .endpoints
        .iter()
        .map(|e| endpoint(e))
        .collect::<Result<Vec<_>, _>>()?;
    // A Redis Cluster has database 0 only: another is warned of, and not selected.
    let db = if endpoints.len() > 1 {
        0
    } else {
        r.db.unwrap_or(0)
    };
    let (username, password) = match &r.secret {
        None => (None, None),
        Some(name) => {
            let field = |why| format!("spec.rateLimit.redis.secret: {why}");
            let password = secret_value(store, ns, name, "password").map_err(field)?;
            let username = secret_value(store, ns, name, "username").ok();
            (username, Some(Redacted(password)))
        }
    };
    let time = |v: &Option<IntOrString>, field: &str, default: Duration| match v {
        None => Ok(default),
        Some(v) => match duration(v) {
            Ok(d) if d.is_zero() => {
                Err(format!("spec.rateLimit.redis.{field} must be more than 0"))
            }
            Ok(d) => Ok(d),
            Err(e) => Err(format!("spec.rateLimit.redis.{field} {e}")),
        },
    };
    let deny = r
        .deny_on_error
        .map(|deny| if deny { "deny" } else { "allow" });
    if let (Some(on_error), Some(deny)) = (&r.on_error, deny)
        && on_error != deny
    {
        return Err(format!(
            "spec.rateLimit.redis.onError {on_error:?} and denyOnError (Traefik's name for onError: {deny}) disagree"
        ));
    }
    let on_error = match r.on_error.as_deref().or(deny) {
        None | Some("local") => OnError::Local,
        Some("allow") => OnError::Allow,
        Some("deny") => OnError::Deny,
        Some(other) => {
            return Err(format!(
                "spec.rateLimit.redis.onError {other:?} is not local, allow or deny"
            ));
        }
    };
    let pool = r
        .pool_size
        .unwrap_or(2)
        .min(r.max_active_conns.unwrap_or(u32::MAX));
    Ok(RedisSpec {
        endpoints,
        username,
        password,
        db,
        tls: r
            .tls
            .as_ref()
            .map(|t| client_tls(t, ns, store, "spec.rateLimit.redis.tls"))
            .transpose()?,
        dial_timeout: time(&r.dial_timeout, "dialTimeout", Duration::from_secs(1))?,
        read_timeout: time(&r.read_timeout, "readTimeout", Duration::from_millis(100))?,
        pool_size: usize::try_from(pool.clamp(1, 64)).unwrap_or(1),
        on_error,
    })
}

/// `host:port`, checked: the port a number, the host a name or an address.
fn endpoint(text: &str) -> Result<String, String> {
    let bad = |why: &str| format!("spec.rateLimit.redis.endpoints {text:?} {why}");
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| bad("is not host:port"))?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad("has no valid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !name_ok && host.parse::<std::net::IpAddr>().is_err() {
        return Err(bad("has no valid host"));
    }
    Ok(text.to_owned())
}

/// TLS to a server fjord calls: the CA and client certificate from Secrets, checked to be PEM
/// now so a bad one is reported on the Middleware (at `at`), not at the first request.
pub(super) fn client_tls(
    t: &crd::ClientTls,
    ns: &str,
    store: &Store,
    at: &str,
) -> Result<ClientTls, String> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let ca = match &t.ca_secret {
        None => None,
        Some(name) => {
            let field = |why| format!("{at}.caSecret: {why}");
            if store.secret(ns, name).is_none() {
                return Err(field(format!("Secret {ns}/{name} not found")));
            }
            let pem = ["tls.ca", "ca.crt", "ca"]
                .iter()
                .find_map(|k| secret_value(store, ns, name, k).ok())
                .ok_or_else(|| {
                    field(format!(
                        "Secret {ns}/{name} has no tls.ca, ca.crt or ca key"
                    ))
                })?;
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes()).count();
            if certs == 0 || CertificateDer::pem_slice_iter(pem.as_bytes()).any(|c| c.is_err()) {
                return Err(field(format!(
                    "Secret {ns}/{name} holds no PEM certificate"
                )));
            }
            Some(pem.into_bytes())
        }
    };
    let client = match &t.cert_secret {
        None => None,
        Some(name) => {
            let field = |why| format!("{at}.certSecret: {why}");
            let cert = secret_value(store, ns, name, "tls.crt").map_err(field)?;
            let key = secret_value(store, ns, name, "tls.key").map_err(field)?;
            if CertificateDer::pem_slice_iter(cert.as_bytes())
                .next()
                .is_none_or(|c| c.is_err())
            {
                return Err(field(format!(
                    "Secret {ns}/{name}: tls.crt is not a PEM certificate"
                )));
            }
            if PrivateKeyDer::from_pem_slice(key.as_bytes()).is_err() {
                return Err(field(format!(
                    "Secret {ns}/{name}: tls.key is not a PEM private key"
                )));
            }
            Some((cert.into_bytes(), Redacted(key)))
        }
    };
    Ok(ClientTls {
        ca,
        client,
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
    })
}

/// A `retry` middleware, Traefik v3.7's fields included.
fn retry(r: &crd::Retry) -> Result<Retry, String> {
    if r.attempts == 0 {
        return Err("spec.retry.attempts must be at least 1".into());
    }
    let interval = match &r.initial_interval {
        None => Duration::from_millis(100),
        Some(i) => duration(i).map_err(|e| format!("spec.retry.initialInterval {e}"))?,
    };
    let timeout = r
        .timeout
        .as_ref()
        .map(|t| duration(t).map_err(|e| format!("spec.retry.timeout {e}")))
        .transpose()?
        .filter(|t| !t.is_zero());
    let statuses = r
        .status
        .iter()
        .enumerate()
        .map(|(i, s)| status_range(s, &format!("spec.retry.status[{i}]")))
        .collect::<Result<Box<[_]>, _>>()?;
    let network = !r.disable_retry_on_network_error.unwrap_or(false);
    if !network && statuses.is_empty() {
        return Err(
            "spec.retry.disableRetryOnNetworkError with no spec.retry.status would retry nothing"
                .into(),
        );
    }
    Ok(Retry {
        attempts: r.attempts,
        interval,
        statuses,
        network,
        non_idempotent: r.retry_non_idempotent_method.unwrap_or(false),
        timeout,
        hold_body: hold_body(r.max_request_body_bytes, "spec.retry.maxRequestBodyBytes")?,
        condition: None,
    })
}

/// Most tries a `retryExpression` makes, the first included, whatever it says (as Traefik's).
const RETRY_EXPRESSION_ATTEMPTS: u32 = 10;

/// A buffering middleware's `retryExpression`: the request (its body, up to the
/// middleware's `request` limit, held) is sent again, whatever its method, while the
/// expression holds of the attempts made and the last one's status.
fn retry_expression(text: &str, request: u64) -> Result<Retry, String> {
    let condition = crate::breaker::Expression::parse_retry(text)
        .map_err(|e| format!("spec.buffering.retryExpression {text:?}: {e}"))?;
    Ok(Retry {
        attempts: RETRY_EXPRESSION_ATTEMPTS,
        interval: Duration::ZERO,
        statuses: Box::default(),
        network: false,
        non_idempotent: true,
        timeout: None,
        hold_body: request,
        condition: Some(condition),
    })
}

/// A `maxRequestBodyBytes` that lets a request be sent again (a retry's, a failover's):
/// bodies of a declared length up to it are held in memory; 0 holds none. Traefik's default,
/// -1, holds bodies of any size; fjord holds none unbounded ([`UNBOUNDED_HOLD`] says so).
pub(super) fn hold_body(given: Option<i64>, field: &str) -> Result<u64, String> {
    match given {
        None | Some(-1) => Ok(0),
        Some(n) => u64::try_from(n)
            .map_err(|_| format!("{field} {n} is negative (give a limit in bytes, or -1)")),
    }
}

/// The warning for a `maxRequestBodyBytes` of -1, after its field.
pub(super) const UNBOUNDED_HOLD: &str = "-1: fjord holds no request body of unbounded size, so requests with a body are not sent again; give a limit in bytes";

/// A status (`404`) or a range of statuses (`500-599`) as Traefik writes them, at `field`.
pub(super) fn status_range(text: &str, field: &str) -> Result<(u16, u16), String> {
    let (from, to) = text.split_once('-').unwrap_or((text, text));
    let parse = |t: &str| {
        t.trim()
            .parse::<u16>()
            .ok()
            .filter(|s| (100..=599).contains(s))
    };
    match (parse(from), parse(to)) {
        (Some(a), Some(b)) if a <= b => Ok((a, b)),
        _ => Err(format!(
            "{field} {text:?} is not a status or a range of statuses (500-599)"
        )),
    }
}

/// An `errors` middleware: its statuses and rewrites as ranges, its service's backend.
fn error_pages(e: &crd::Errors, ns: &str) -> Result<ErrorPages, String> {
    let range = status_range;
    if e.status.is_empty() {
        return Err("spec.errors.status is empty: no response would get a page".into());
    }
    let statuses = e
        .status
        .iter()
        .enumerate()
        .map(|(i, s)| range(s, &format!("spec.errors.status[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rewrites = Vec::new();
    for (from, to) in &e.status_rewrites {
        let (a, b) = range(from, "spec.errors.statusRewrites key")?;
        let status = match to {
            IntOrString::Int(n) => u16::try_from(*n).ok(),
            IntOrString::String(s) => s.trim().parse().ok(),
        }
        .filter(|n| (100..=599).contains(n));
        let Some(status) = status else {
            return Err(format!(
                "spec.errors.statusRewrites {from:?}: {to:?} is not a status"
            ));
        };
        rewrites.push((a, b, status));
    }
    let Some(service) = &e.service else {
        return Err("spec.errors.service is required".into());
    };
    if service.kind.as_deref().is_some_and(|k| k != "Service") {
        return Err("spec.errors.service.kind: error pages come from a Service".into());
    }
    let service_ns = service.namespace.clone().unwrap_or_else(|| ns.to_owned());
    if service_ns != ns {
        return Err("spec.errors.service.namespace: error pages come from a Service in the Middleware's namespace".into());
    }
    let service = super::ingressroute::service_ref(
        &service.name,
        service.port.as_ref(),
        "spec.errors.service",
    )?;
    let query = e.query.clone().unwrap_or_else(|| "/".into());
    if !query.starts_with('/') || query.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(format!(
            "spec.errors.query {query:?} is not a path (and query)"
        ));
    }
    Ok(ErrorPages {
        statuses,
        backend: crate::model::BackendId {
            namespace: service_ns,
            service,
            scheme: None,
            cluster_ip: false,
        },
        query,
        rewrites,
        nginx: None,
    })
}

/// digestAuth's users: the Secret's `users` lines, then those inline; at least one of the two.
fn digest_users(
    d: &crd::DigestAuth,
    ns: &str,
    store: &Store,
) -> Result<Vec<htdigest::DigestUser>, String> {
    let mut users = Vec::new();
    if !d.users.is_empty() {
        users = htdigest::parse_users(&d.users.join("\n"))
            .map_err(|e| format!("spec.digestAuth.users: {e}"))?;
    }
    match &d.secret {
        None if users.is_empty() => Err("spec.digestAuth needs users or a secret".into()),
        None => Ok(users),
        Some(secret) => {
            let field = |why| format!("spec.digestAuth.secret: {why}");
            let text = secret_value(store, ns, secret, "users").map_err(field)?;
            users.extend(
                htdigest::parse_users(&text)
                    .map_err(|e| field(format!("Secret {ns}/{secret}: {e}")))?,
            );
            Ok(users)
        }
    }
}

/// Deprecated fields a Middleware uses, each with what to use instead: accepted, and warned of.
fn deprecated(spec: &crd::MiddlewareSpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    if spec.ip_white_list.is_some() {
        out.push("spec.ipWhiteList is deprecated; use ipAllowList, which it is read as");
    }
    if let Some(h) = &spec.headers {
        if h.feature_policy.is_some() {
            out.push("spec.headers.featurePolicy is deprecated; use permissionsPolicy (Feature-Policy is still sent)");
        }
        let removed = [
            h.ssl_redirect.is_some(),
            h.ssl_temporary_redirect.is_some(),
            h.ssl_host.is_some(),
            h.ssl_force_host.is_some(),
        ];
        if removed.contains(&true) {
            out.push("spec.headers.sslRedirect, sslTemporaryRedirect, sslHost and sslForceHost were removed in Traefik v3 and do nothing here; use a redirectScheme Middleware");
        }
        if h.is_development.is_some() {
            out.push("spec.headers.isDevelopment does nothing in fjord; remove it");
        }
    }
    if spec
        .compress
        .as_ref()
        .is_some_and(|c| c.encodings.iter().any(|e| e == "zstd"))
    {
        out.push("spec.compress.encodings: zstd is not offered (fjord compresses with gzip and br); the others are");
    }
    if let Some(f) = &spec.forward_auth {
        if f.header_field.is_some() {
            out.push("spec.forwardAuth.headerField does nothing: fjord's access log has no user field; use authResponseHeaders to pass the user to the backend");
        }
        match (f.forward_body == Some(true), f.max_body_size) {
            (false, Some(_)) => out.push("spec.forwardAuth.maxBodySize does nothing without forwardBody: the body is not sent to the authentication server"),
            (true, None | Some(-1)) => out.push("spec.forwardAuth.maxBodySize unset or -1: fjord holds no body unbounded, so it sends bodies up to 1 MiB and refuses longer ones with a 401, as past a maxBodySize; give a limit in bytes"),
            _ => {}
        }
        if f.tls.as_ref().is_some_and(|t| t.ca_optional.is_some()) {
            out.push("spec.forwardAuth.tls.caOptional is deprecated and does nothing (client authentication is the server's choice); remove it");
        }
    }
    if let Some(redis) = spec.rate_limit.as_ref().and_then(|r| r.redis.as_ref()) {
        if redis.write_timeout.is_some() {
            out.push("spec.rateLimit.redis.writeTimeout is not used on its own: readTimeout bounds the whole round trip to Redis");
        }
        if redis.min_idle_conns.is_some() {
            out.push("spec.rateLimit.redis.minIdleConns does nothing: fjord's poolSize connections are multiplexed and always open");
        }
        if redis.endpoints.len() > 1 && redis.db.is_some_and(|db| db != 0) {
            out.push("spec.rateLimit.redis.db is not used: several endpoints are a Redis Cluster, which has database 0 only (Traefik ignores it too)");
        }
    }
    if spec
        .strip_prefix
        .as_ref()
        .is_some_and(|s| s.force_slash.is_some())
    {
        out.push("spec.stripPrefix.forceSlash is deprecated and does nothing (as in Traefik v3); remove it");
    }
    if let Some(b) = &spec.buffering {
        let held = [
            ("memRequestBodyBytes", b.mem_request_body_bytes.is_some()),
            ("memResponseBodyBytes", b.mem_response_body_bytes.is_some()),
        ];
        if held.iter().any(|(_, set)| *set) {
            out.push("spec.buffering.memRequestBodyBytes and memResponseBodyBytes do nothing: fjord streams request bodies, and holds a response whole in memory (never on disk) only under maxResponseBodyBytes");
        }
        if b.retry_expression.is_some() && b.max_request_body_bytes.unwrap_or(0) == 0 {
            out.push("spec.buffering.retryExpression: without maxRequestBodyBytes fjord holds no request body (it holds none unbounded), so requests with a body are not sent again; give a limit in bytes");
        }
    }
    match spec.content_type.as_ref().and_then(|c| c.auto_detect) {
        Some(false) => out.push("spec.contentType.autoDetect is deprecated; false turns detection off, so this middleware does nothing (as in Traefik v3): remove it"),
        Some(true) => out.push("spec.contentType.autoDetect is deprecated; the middleware alone turns detection on: remove the field"),
        None => {}
    }
    if spec
        .retry
        .as_ref()
        .is_some_and(|r| r.max_request_body_bytes == Some(-1))
    {
        out.push(
            "spec.retry.maxRequestBodyBytes -1: fjord holds no request body of unbounded size, so requests with a body are not retried; give a limit in bytes",
        );
    }
    out
}

fn headers(h: &crd::Headers) -> Result<HeadersSpec, String> {
    let pairs = |map: &std::collections::BTreeMap<String, String>, field: &str| {
        map.iter()
            .map(|(k, v)| {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| format!("spec.headers.{field}: {k:?} is not a header name"))?;
                let value = if v.is_empty() {
                    None
                } else {
                    Some(HeaderValue::from_str(v).map_err(|_| {
                        format!("spec.headers.{field}.{k}: {v:?} is not a header value")
                    })?)
                };
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, String>>()
    };
    let value = |v: String, field: &str| {
        HeaderValue::from_str(&v)
            .map_err(|_| format!("spec.headers.{field}: {v:?} is not a header value"))
    };
    let mut security = Vec::new();
    if let Some(secs) = h.sts_seconds.filter(|s| *s > 0) {
        let mut v = format!("max-age={secs}");
        if h.sts_include_subdomains == Some(true) {
            v.push_str("; includeSubDomains");
        }
        if h.sts_preload == Some(true) {
            v.push_str("; preload");
        }
        security.push((
            http::header::STRICT_TRANSPORT_SECURITY,
            value(v, "stsSeconds")?,
        ));
    }
    if !h.allowed_hosts.is_empty() {
        return Err("spec.headers.allowedHosts restricts access by Host, which fjord does not check here; route by Host instead (an IngressRoute's Host rule)".into());
    }
    use http::header::{
        CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
        X_XSS_PROTECTION,
    };
    // Each header: its value as given, else a flag's standard value.
    let given = [
        (
            X_FRAME_OPTIONS,
            &h.custom_frame_options_value,
            "customFrameOptionsValue",
            h.frame_deny,
            "DENY",
        ),
        (
            X_XSS_PROTECTION,
            &h.custom_browser_xss_value,
            "customBrowserXSSValue",
            h.browser_xss_filter,
            "1; mode=block",
        ),
        (
            X_CONTENT_TYPE_OPTIONS,
            &None,
            "",
            h.content_type_nosniff,
            "nosniff",
        ),
        (
            CONTENT_SECURITY_POLICY,
            &h.content_security_policy,
            "contentSecurityPolicy",
            None,
            "",
        ),
        (
            HeaderName::from_static("content-security-policy-report-only"),
            &h.content_security_policy_report_only,
            "contentSecurityPolicyReportOnly",
            None,
            "",
        ),
        (
            REFERRER_POLICY,
            &h.referrer_policy,
            "referrerPolicy",
            None,
            "",
        ),
        (
            HeaderName::from_static("permissions-policy"),
            &h.permissions_policy,
            "permissionsPolicy",
            None,
            "",
        ),
        (
            HeaderName::from_static("feature-policy"),
            &h.feature_policy,
            "featurePolicy",
            None,
            "",
        ),
    ];
    for (name, custom, field, flag, standard) in given {
        match custom.clone().filter(|v| !v.is_empty()) {
            Some(v) => security.push((name, value(v, field)?)),
            None if flag == Some(true) => security.push((name, HeaderValue::from_static(standard))),
            None => {}
        }
    }
    let list = |l: &[String], field: &str| -> Result<Option<HeaderValue>, String> {
        if l.is_empty() {
            Ok(None)
        } else {
            value(l.join(", "), field).map(Some)
        }
    };
    let cors = if h.access_control_allow_origin_list.is_empty() {
        None
    } else {
        Some(Cors {
            origins: h.access_control_allow_origin_list.clone(),
            methods: list(&h.access_control_allow_methods, "accessControlAllowMethods")?,
            headers: list(&h.access_control_allow_headers, "accessControlAllowHeaders")?,
            expose: list(
                &h.access_control_expose_headers,
                "accessControlExposeHeaders",
            )?,
            credentials: h.access_control_allow_credentials == Some(true),
            max_age: h
                .access_control_max_age
                .map(|a| HeaderValue::from(a.max(0))),
            vary: h.add_vary_header == Some(true),
        })
    };
    Ok(HeadersSpec {
        request: pairs(&h.custom_request_headers, "customRequestHeaders")?,
        response: pairs(&h.custom_response_headers, "customResponseHeaders")?,
        security,
        cors,
    })
}

/// What a limit counts as one client; `unset` when `sourceCriterion` sets nothing (Traefik's
/// defaults: the client IP for rateLimit, the request's host for inFlightReq).
fn source(c: Option<&crd::SourceCriterion>, field: &str, unset: Source) -> Result<Source, String> {
    let Some(c) = c else {
        return Ok(unset);
    };
    match (
        &c.ip_strategy,
        &c.request_header_name,
        c.request_host == Some(true),
    ) {
        (None, None, false) => Ok(unset),
        (s, None, false) => Ok(Source::ClientIp(ip_strategy(
            s.as_ref(),
            &format!("{field}.ipStrategy"),
        )?)),
        (None, Some(h), false) => HeaderName::from_bytes(h.as_bytes())
            .map(Source::RequestHeader)
            .map_err(|_| format!("{field}.requestHeaderName {h:?} is not a header name")),
        (None, None, true) => Ok(Source::RequestHost),
        _ => Err(format!(
            "{field}: set one of ipStrategy, requestHeaderName and requestHost"
        )),
    }
}

fn ip_strategy(s: Option<&crd::IpStrategy>, field: &str) -> Result<IpStrategy, String> {
    let Some(s) = s else {
        return Ok(IpStrategy::default());
    };
    let excluded = s
        .excluded_ips
        .iter()
        .enumerate()
        .map(|(i, e)| net(e).map_err(|why| format!("{field}.excludedIPs[{i}] {why}")))
        .collect::<Result<_, _>>()?;
    if let Some(bits) = s.ipv6_subnet.filter(|b| *b == 0 || *b > 128) {
        return Err(format!(
            "{field}.ipv6Subnet {bits} is not a prefix length (1-128)"
        ));
    }
    Ok(IpStrategy {
        depth: usize::try_from(s.depth.unwrap_or(0)).unwrap_or(0),
        excluded,
        ipv6_subnet: s.ipv6_subnet,
    })
}

/// An address or a CIDR.
pub(super) fn net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP or CIDR"))
}

fn regex(s: &str, field: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(s)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            format!(
                "{field} {s:?} is not a regular expression: {}",
                e.to_string().lines().last().unwrap_or_default()
            )
        })
}

/// A duration as Traefik writes it: a number of seconds or a string like `1s`, `500ms`, `1m`.
pub fn duration(v: &IntOrString) -> Result<Duration, String> {
    match v {
        IntOrString::Int(s) => u64::try_from(*s)
            .map(Duration::from_secs)
            .map_err(|_| format!("{s} is negative")),
        IntOrString::String(s) => humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}")),
    }
}

/// A warning when `chain` has a grpcWeb middleware but its backend is spoken to in HTTP/1.1:
/// gRPC needs HTTP/2, so every call would fail at the backend.
pub(super) fn grpc_web_needs_http2(chain: &[Arc<Middleware>], http2: bool) -> Option<String> {
    let m = chain
        .iter()
        .find(|m| matches!(m.kind, Kind::GrpcWeb(_)))
        .filter(|_| !http2)?;
    Some(format!(
        "middleware {} (grpcWeb) turns calls into gRPC, which needs an HTTP/2 backend: set scheme: h2c on the service (IngressRoute) or backend-protocol GRPC (Ingress); over HTTP/1.1 every call fails",
        m.name
    ))
}
