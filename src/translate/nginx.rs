//! ingress-nginx's annotations (`nginx.ingress.kubernetes.io/*`) on an Ingress fjord serves,
//! read onto fjord's own middlewares: each is honoured or named in a diagnostic, never dropped
//! without a word. One that restricts access and cannot be honoured rejects the Ingress, since
//! serving it would open to everyone what nginx kept closed. Snippets are nginx configuration:
//! they are never executed or interpreted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::middleware::{client_tls, compile_spec, forward_auth, net, secret_value};
use crate::crd;
use crate::htdigest;
use crate::htpasswd;
use crate::model::middleware::{
    ClientTls, ErrorPages, IpStrategy, Kind, Middleware, NginxAuth, NginxErrors,
};
use crate::model::{
    BackendTls, HostHeader, HostMatch, PathMatch, PortRef, ServiceRef, StickyCookie, Timeouts,
};
use crate::provider::Store;
use crate::rule::{self, Rule};

/// The annotations' common prefix.
pub(super) const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// What an Ingress's nginx annotations come to.
#[derive(Debug, Default)]
pub(super) struct Nginx {
    /// Middlewares run before those the Ingress names itself, in nginx's order: access
    /// (allow list, auth), limits, redirects, headers.
    pub chain: Vec<Arc<Middleware>>,
    /// `ssl-redirect: "false"`: its TLS hosts are not redirected to HTTPS.
    pub no_ssl_redirect: bool,
    /// `affinity: cookie`: sticky sessions.
    pub sticky: Option<Arc<StickyCookie>>,
    /// `upstream-vhost`: the `Host` the backend gets.
    pub host_header: HostHeader,
    /// `backend-protocol: HTTPS` or `GRPCS` (with `proxy-ssl-*`): TLS to the endpoints, with
    /// its label.
    pub backend_tls: Option<(String, Arc<BackendTls>)>,
    /// `backend-protocol: GRPC` or `GRPCS`: HTTP/2 to the endpoints.
    pub http2: bool,
    /// Its paths are case-insensitive regular expressions anchored at the start, as nginx's
    /// `location ~*` (`use-regex`, or `rewrite-target`, which implies it).
    pub regex_paths: bool,
    /// `rewrite-target`: what the whole path becomes, `$1` and on naming the path's groups.
    pub rewrite: Option<String>,
    /// `proxy-connect-timeout`, `proxy-read-timeout`, `proxy-send-timeout`.
    pub timeouts: Timeouts,
    /// `service-upstream`: the Services' cluster IPs rather than their endpoints.
    pub service_upstream: bool,
    /// `from-to-www-redirect`: each host's `www.` twin (or bare name) redirects to it.
    pub www_redirect: bool,
    /// `canary: "true"`: the Ingress takes a share of the traffic of the one with its host and
    /// path, rather than routes of its own.
    pub canary: Option<Canary>,
    /// What is not honoured, or honoured otherwise than nginx does.
    pub warnings: Vec<String>,
}

/// How a canary Ingress shares its main Ingress's traffic. nginx's precedence: the header
/// first, then the weight.
#[derive(Debug)]
pub(super) struct Canary {
    /// Requests sent to the canary, out of `total`.
    pub weight: u32,
    pub total: u32,
    pub header: Option<CanaryHeader>,
    /// `canary-by-cookie`: this cookie's `always` sends a request to the canary, its `never` to
    /// the main Ingress, after the header and before the weight.
    pub cookie: Option<String>,
}

/// `canary-by-header`, with its value or pattern.
#[derive(Debug)]
pub(super) enum CanaryHeader {
    /// `always` sends a request to the canary, `never` to the main Ingress; any other value
    /// leaves it to the weight.
    AlwaysNever(String),
    /// The header has this value (`canary-by-header-value`).
    Value(String, String),
    /// The header matches this regular expression (`canary-by-header-pattern`).
    Pattern(String, String),
}

/// The Ingress an annotation set belongs to.
pub(super) struct Owner<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub store: &'a Store,
    /// Whether `auth-secret` may name another namespace's Secret.
    pub allow_cross_namespace: bool,
    /// The Service (and port) the Ingress's first path goes to, for `X-Service-Name` and
    /// `X-Service-Port`.
    pub service: Option<String>,
    pub port: Option<String>,
    /// Whether every request it serves names one of its hosts exactly, so that `$host` can
    /// only be one of them.
    pub hosts_exact: bool,
}

/// Reads the nginx annotations among `annotations`; `Err` with every reason the Ingress cannot
/// be served as nginx would serve it.
pub(super) fn read(
    owner: &Owner<'_>,
    annotations: &BTreeMap<String, String>,
) -> Result<Nginx, Vec<String>> {
    let ours: BTreeMap<&str, &str> = annotations
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?, v.as_str())))
        .collect();
    let mut reading = Reading {
        owner,
        ours: &ours,
        out: Nginx::default(),
        errors: Vec::new(),
        used: Vec::new(),
    };
    reading.paths();
    reading.canary();
    reading.affinity();
    reading.upstream_vhost();
    reading.backend_protocol();
    reading.timeouts();
    reading.out.service_upstream = reading.flag("service-upstream") == Some(true);
    reading.access();
    reading.limits();
    reading.error_pages();
    reading.redirects();
    reading.headers();
    reading.the_rest();
    if reading.errors.is_empty() {
        Ok(reading.out)
    } else {
        Err(reading.errors)
    }
}

struct Reading<'a> {
    owner: &'a Owner<'a>,
    ours: &'a BTreeMap<&'a str, &'a str>,
    out: Nginx,
    errors: Vec<String>,
    /// Annotations read (honoured, or refused with a reason already).
    used: Vec<&'static str>,
}

impl<'a> Reading<'a> {
    /// The value of annotation `name`, marked as read.
    fn get(&mut self, name: &'static str) -> Option<&'a str> {
        let value = self.ours.get(name).copied()?;
        self.used.push(name);
        Some(value.trim())
    }

    fn flag(&mut self, name: &'static str) -> Option<bool> {
        let value = self.get(name)?;
        match value {
            "true" => Some(true),
            "false" => Some(false),
            other => {
                self.errors.push(format!(
                    "annotation {PREFIX}{name} {other:?} is not \"true\" or \"false\""
                ));
                None
            }
        }
    }

    fn number(&mut self, name: &'static str) -> Option<u64> {
        let value = self.get(name)?;
        match value.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.errors.push(format!(
                    "annotation {PREFIX}{name} {value:?} is not a whole number"
                ));
                None
            }
        }
    }

    /// Compiles `spec` as a Middleware named after the Ingress and `name`, onto the chain.
    fn add(&mut self, name: &'static str, spec: &crd::MiddlewareSpec) {
        let owner = self.owner;
        let id = format!("{}/{}@{name}", owner.namespace, owner.name);
        match compile_spec(&id, owner.namespace, spec, owner.store) {
            Ok(m) => self.out.chain.extend(m),
            Err(why) => self
                .errors
                .push(format!("annotation {PREFIX}{name}: {why}")),
        }
    }

    /// `use-regex` and `rewrite-target`.
    fn paths(&mut self) {
        let regex = self.flag("use-regex") == Some(true);
        self.out.rewrite = self.get("rewrite-target").map(str::to_owned);
        self.out.regex_paths = regex || self.out.rewrite.is_some();
    }

    /// `canary` and how it splits traffic.
    fn canary(&mut self) {
        let given = self.ours.keys().any(|k| k.starts_with("canary-"));
        if self.flag("canary") != Some(true) {
            if given {
                self.out.warnings.push(format!(
                    "annotations {PREFIX}canary-* are ignored without {PREFIX}canary: \"true\""
                ));
            }
            return;
        }
        let weight = self.number("canary-weight").unwrap_or(0);
        let total = self.number("canary-weight-total").unwrap_or(100);
        let (Ok(weight), Ok(total)) = (u32::try_from(weight), u32::try_from(total)) else {
            self.errors
                .push(format!("annotation {PREFIX}canary-weight is too large"));
            return;
        };
        if total == 0 || weight > total {
            self.errors.push(format!(
                "annotation {PREFIX}canary-weight {weight} is not between 0 and {PREFIX}canary-weight-total {total}"
            ));
            return;
        }
        let header = self.get("canary-by-header").map(str::to_owned);
        let value = self.get("canary-by-header-value").map(str::to_owned);
        let pattern = self.get("canary-by-header-pattern").map(str::to_owned);
        let header = header.map(|name| match (value, pattern) {
            (Some(v), _) => CanaryHeader::Value(name, v),
            (None, Some(p)) => CanaryHeader::Pattern(name, p),
            (None, None) => CanaryHeader::AlwaysNever(name),
        });
        let cookie = self.get("canary-by-cookie").map(str::to_owned);
        if let Some(c) = &cookie
            && !is_token(c)
        {
            return self.errors.push(format!(
                "annotation {PREFIX}canary-by-cookie {c:?} is not a cookie name"
            ));
        }
        self.out.canary = Some(Canary {
            weight,
            total,
            header,
            cookie,
        });
    }

    /// `backend-protocol: GRPC` (HTTP/2 with prior knowledge), and `HTTPS` or `GRPCS` with
    /// `proxy-ssl-secret` (CA and client certificate), `proxy-ssl-verify` (off by default, as
    /// in nginx) and `proxy-ssl-name`.
    fn backend_protocol(&mut self) {
        let protocol = self
            .ours
            .get("backend-protocol")
            .map(|p| p.trim().to_ascii_uppercase());
        let https = match protocol.as_deref() {
            Some("GRPC") => false,
            Some("HTTPS") | Some("GRPCS") => true,
            _ => return,
        };
        self.get("backend-protocol");
        self.out.http2 = protocol.as_deref() != Some("HTTPS");
        if !https {
            return;
        }
        let verify = match self.get("proxy-ssl-verify") {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => {
                let other = other.to_owned();
                return self.errors.push(format!(
                    "annotation {PREFIX}proxy-ssl-verify {other:?} is not on or off"
                ));
            }
        };
        let name = self.get("proxy-ssl-name").map(str::to_owned);
        if let Some(n) = &name
            && rustls::pki_types::ServerName::try_from(n.as_str()).is_err()
        {
            return self.errors.push(format!(
                "annotation {PREFIX}proxy-ssl-name {n:?} is not a host name"
            ));
        }
        let _ = self.get("proxy-ssl-server-name");
        for ignored in [
            "proxy-ssl-ciphers",
            "proxy-ssl-protocols",
            "proxy-ssl-verify-depth",
        ] {
            if self.get(ignored).is_some() {
                self.out.warnings.push(format!(
                    "annotation {PREFIX}{ignored} is not honoured: fjord's TLS to backends is rustls's safe defaults (TLS 1.2 and 1.3)"
                ));
            }
        }
        let owner = self.owner;
        let secret = self.get("proxy-ssl-secret").map(str::to_owned);
        let mut client = ClientTls {
            ca: None,
            client: None,
            insecure_skip_verify: !verify,
        };
        if let Some(secret) = &secret {
            let (ns, secret_name) = secret.split_once('/').unwrap_or((owner.namespace, secret));
            if ns != owner.namespace && !owner.allow_cross_namespace {
                return self.errors.push(format!(
                    "annotation {PREFIX}proxy-ssl-secret {secret:?} is in another namespace, and cross-namespace references are off (providers.kubernetesCRD.allowCrossNamespace)"
                ));
            }
            let has = |key: &str| secret_value(owner.store, ns, secret_name, key).is_ok();
            let crd_tls = crd::ClientTls {
                ca_secret: has("ca.crt").then(|| secret_name.to_owned()),
                cert_secret: (has("tls.crt") && has("tls.key")).then(|| secret_name.to_owned()),
                insecure_skip_verify: Some(!verify),
                ca_optional: None,
            };
            match client_tls(
                &crd_tls,
                ns,
                owner.store,
                &format!("{PREFIX}proxy-ssl-secret"),
            ) {
                Ok(c) => client = c,
                Err(why) => return self.errors.push(format!("annotation {why}")),
            }
            if owner.store.secret(ns, secret_name).is_none() {
                return self.errors.push(format!(
                    "annotation {PREFIX}proxy-ssl-secret: Secret {ns}/{secret_name} not found"
                ));
            }
        }
        if verify && client.ca.is_none() {
            self.out.warnings.push(format!(
                "annotation {PREFIX}proxy-ssl-verify \"on\" without a ca.crt in {PREFIX}proxy-ssl-secret checks the backend against the system's roots"
            ));
        }
        let label = format!(
            "https:{}{}{}",
            if verify { "verify" } else { "unverified" },
            secret
                .as_deref()
                .map(|s| format!(":{s}"))
                .unwrap_or_default(),
            name.as_deref().map(|n| format!(":{n}")).unwrap_or_default(),
        );
        self.out.backend_tls = Some((
            label,
            Arc::new(BackendTls {
                server_name: name,
                client,
            }),
        ));
    }

    /// `proxy-connect-timeout`, `proxy-read-timeout` and `proxy-send-timeout`, in seconds
    /// as nginx reads them. The read timeout bounds the wait for the response head; fjord
    /// sets no limit between the chunks of a response body (a stream may pause).
    fn timeouts(&mut self) {
        let mut seconds = |name: &'static str| {
            let n = self.number(name)?;
            if n == 0 {
                self.errors.push(format!(
                    "annotation {PREFIX}{name} \"0\" would time out every request; give seconds, at least 1"
                ));
                return None;
            }
            Some(Duration::from_secs(n))
        };
        self.out.timeouts = Timeouts {
            connect: seconds("proxy-connect-timeout"),
            read: seconds("proxy-read-timeout"),
            send: seconds("proxy-send-timeout"),
        };
    }

    /// `upstream-vhost`: the backend gets this `Host` (fixed text: nginx variables are not
    /// expanded).
    fn upstream_vhost(&mut self) {
        let Some(vhost) = self.get("upstream-vhost") else {
            return;
        };
        let value = (!vhost.contains('$'))
            .then(|| http::HeaderValue::from_str(vhost).ok())
            .flatten()
            .filter(|_| vhost.parse::<http::uri::Authority>().is_ok());
        match value {
            Some(v) => self.out.host_header = HostHeader::Fixed(v),
            None => {
                let vhost = vhost.to_owned();
                self.errors.push(format!(
                    "annotation {PREFIX}upstream-vhost {vhost:?} is not a host name (nginx variables are not expanded)"
                ));
            }
        }
    }

    /// `affinity: cookie` and its `session-cookie-*`: sticky sessions, persistent (a client
    /// stays on its endpoint while it is up, whatever `affinity-mode` says).
    fn affinity(&mut self) {
        let Some(affinity) = self.get("affinity") else {
            return;
        };
        if affinity != "cookie" {
            let affinity = affinity.to_owned();
            self.errors.push(format!(
                "annotation {PREFIX}affinity {affinity:?} is not \"cookie\""
            ));
            return;
        }
        let name = self
            .get("session-cookie-name")
            .unwrap_or("INGRESSCOOKIE")
            .to_owned();
        let path = self.get("session-cookie-path").unwrap_or("/").to_owned();
        let domain = self.get("session-cookie-domain").map(str::to_owned);
        // nginx sends both; Max-Age wins in browsers, so one is enough.
        let (max_age, expires) = (
            self.number("session-cookie-max-age"),
            self.number("session-cookie-expires"),
        );
        let max_age = max_age.or(expires).and_then(|a| i64::try_from(a).ok());
        let secure = self.flag("session-cookie-secure").unwrap_or(false);
        let same_site = self.get("session-cookie-samesite").map(str::to_owned);
        let same_site = match same_site.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("none") => Some("None".to_owned()),
            Some("lax") => Some("Lax".to_owned()),
            Some("strict") => Some("Strict".to_owned()),
            Some(other) => {
                self.errors.push(format!(
                    "annotation {PREFIX}session-cookie-samesite {other:?} is not None, Lax or Strict"
                ));
                return;
            }
        };
        if self.get("affinity-mode") == Some("balanced") {
            self.out.warnings.push(format!(
                "annotation {PREFIX}affinity-mode \"balanced\" is honoured as \"persistent\": a client keeps its endpoint while it is up, and is not moved when endpoints are added"
            ));
        }
        for ignored in [
            "session-cookie-change-on-failure",
            "session-cookie-conditional-samesite-none",
            "affinity-canary-behavior",
        ] {
            if self.get(ignored).is_some() {
                self.out.warnings.push(format!(
                    "annotation {PREFIX}{ignored} is not honoured: a client whose endpoint is down gets another and a new cookie"
                ));
            }
        }
        let valid = |v: &str| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_graphic() && !b";,=".contains(&b))
        };
        if !valid(&name) || !valid(&path) || domain.as_deref().is_some_and(|d| !valid(d)) {
            self.errors.push(format!(
                "annotations {PREFIX}session-cookie-name, -path and -domain must be cookie-safe text"
            ));
            return;
        }
        self.out.sticky = Some(Arc::new(StickyCookie {
            name,
            path,
            domain,
            max_age,
            secure,
            http_only: true,
            same_site,
        }));
    }

    /// `whitelist-source-range` (or `allowlist-source-range`) and basic authentication.
    fn access(&mut self) {
        for name in ["whitelist-source-range", "allowlist-source-range"] {
            if let Some(ranges) = self.get(name) {
                let spec = crd::MiddlewareSpec {
                    ip_allow_list: Some(crd::IpAllowList {
                        source_range: list(ranges),
                        ip_strategy: None,
                    }),
                    ..Default::default()
                };
                self.add(name, &spec);
            }
        }
        if let Some(ranges) = self.get("denylist-source-range") {
            match nets("denylist-source-range", ranges) {
                Ok(ranges) => self.out.chain.push(Arc::new(Middleware {
                    name: format!(
                        "{}/{}@denylist-source-range",
                        self.owner.namespace, self.owner.name
                    )
                    .into(),
                    kind: Kind::IpDenyList {
                        ranges,
                        strategy: IpStrategy::default(),
                    },
                })),
                Err(e) => self.errors.push(e),
            }
        }
        self.external_auth();
        match self.get("auth-type") {
            None => {}
            Some("basic") => self.password_auth(false),
            Some("digest") => self.password_auth(true),
            Some(other) => {
                let other = other.to_owned();
                self.errors.push(format!(
                    "annotation {PREFIX}auth-type {other:?} is not basic or digest; the Ingress would be served without authentication"
                ));
            }
        }
    }

    /// `auth-type: basic` or `digest` with `auth-secret` (`auth-secret-type`) and
    /// `auth-realm`.
    fn password_auth(&mut self, digest: bool) {
        let owner = self.owner;
        let kind = if digest { "digest" } else { "basic" };
        let Some(secret) = self.get("auth-secret").map(str::to_owned) else {
            self.errors.push(format!(
                "annotation {PREFIX}auth-type {kind:?} needs {PREFIX}auth-secret"
            ));
            return;
        };
        let (ns, name) = match secret.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => (owner.namespace, secret.as_str()),
        };
        if ns != owner.namespace && !owner.allow_cross_namespace {
            self.errors.push(format!(
                "annotation {PREFIX}auth-secret {secret:?} is in another namespace, and cross-namespace references are off (providers.kubernetesCRD.allowCrossNamespace)"
            ));
            return;
        }
        let text = match (self.get("auth-secret-type").unwrap_or("auth-file"), digest) {
            // htpasswd (or htdigest) lines under the key `auth`.
            ("auth-file", _) => secret_value(owner.store, ns, name, "auth"),
            // A key per user, its value the hash.
            ("auth-map", false) => auth_map(owner.store, ns, name),
            (other, _) => Err(format!(
                "{PREFIX}auth-secret-type {other:?} is not auth-file{}",
                if digest {
                    " (digest reads htdigest lines)"
                } else {
                    " or auth-map"
                }
            )),
        };
        let realm = self
            .get("auth-realm")
            .unwrap_or("Authentication Required")
            .to_owned();
        let kind = text.and_then(|text| {
            if !digest {
                let users = htpasswd::parse_users(&text)?;
                return Ok(Kind::BasicAuth {
                    users,
                    realm,
                    remove_header: false,
                    header_field: None,
                });
            }
            let users = htdigest::parse_users(&text)?;
            if !users.iter().any(|u| u.realm == realm) {
                return Err(format!(
                    "no user is of realm {realm:?} ({PREFIX}auth-realm), so nobody could log in"
                ));
            }
            Ok(Kind::DigestAuth {
                digest: Box::new(htdigest::Digest::new(users, realm)),
                remove_header: false,
                header_field: None,
            })
        });
        match kind {
            Ok(kind) => self.out.chain.push(Arc::new(Middleware {
                name: format!("{}/{}@auth-type", owner.namespace, owner.name).into(),
                kind,
            })),
            Err(why) => self
                .errors
                .push(format!("annotation {PREFIX}auth-secret: {why}")),
        }
    }

    /// `auth-url` (with `auth-method`, `auth-response-headers`, `auth-signin`,
    /// `auth-signin-redirect-param`), as a forwardAuth asking the way nginx's `auth_request`
    /// does.
    fn external_auth(&mut self) {
        let Some(url) = self.get("auth-url") else {
            return;
        };
        let Some((url, host_from_request)) = self.host_variable("auth-url", url) else {
            return;
        };
        let method = self.get("auth-method").map(str::to_owned);
        let method = match method.as_deref().map(str::parse::<http::Method>) {
            None => None,
            Some(Ok(m)) => Some(m),
            Some(Err(_)) => {
                self.errors.push(format!(
                    "annotation {PREFIX}auth-method {:?} is not an HTTP method",
                    method.unwrap_or_default()
                ));
                return;
            }
        };
        let headers = self
            .get("auth-response-headers")
            .map(list)
            .unwrap_or_default();
        let signin = self.get("auth-signin").map(str::to_owned);
        if let Some(signin) = &signin
            && let Err(why) = signin_variables(signin, self.owner.hosts_exact)
        {
            return self
                .errors
                .push(format!("annotation {PREFIX}auth-signin {signin:?}: {why}"));
        }
        let param = self
            .get("auth-signin-redirect-param")
            .unwrap_or("rd")
            .to_owned();
        for ignored in [
            "auth-cache-key",
            "auth-cache-duration",
            "auth-keepalive",
            "auth-keepalive-requests",
            "auth-keepalive-timeout",
            "auth-keepalive-share-vars",
            "auth-always-set-cookie",
            "auth-proxy-set-headers",
            "auth-request-redirect",
        ] {
            if self.get(ignored).is_some() {
                self.out.warnings.push(format!(
                    "annotation {PREFIX}{ignored} is not honoured: fjord asks the auth-url server on every request, as nginx without it does (a request it would let through is never refused for it)"
                ));
            }
        }
        let spec = crd::ForwardAuth {
            address: url,
            auth_response_headers: headers,
            ..Default::default()
        };
        let owner = self.owner;
        let mut auth = match forward_auth(&spec, owner.namespace, owner.store) {
            Ok(auth) => auth,
            Err(why) => {
                let why = why.replace("spec.forwardAuth.address", "its URL");
                self.errors
                    .push(format!("annotation {PREFIX}auth-url: {why}"));
                return;
            }
        };
        auth.host_from_request = host_from_request;
        auth.nginx = Some(NginxAuth {
            method,
            signin,
            signin_param: param,
        });
        self.out.chain.push(Arc::new(Middleware {
            name: format!("{}/{}@auth-url", owner.namespace, owner.name).into(),
            kind: Kind::ForwardAuth(Box::new(auth)),
        }));
    }

    /// `url` with nginx's `$host` as a placeholder host the request's replaces, and whether it
    /// had one; `None` (with the error) for any other variable, or for `$host` where a client
    /// could choose it (a wildcard or no host: it would make fjord ask any server it names).
    fn host_variable(&mut self, name: &'static str, url: &str) -> Option<(String, bool)> {
        let fixed = url.replace("$host", HOST_PLACEHOLDER);
        let why = if fixed.contains('$') {
            "uses nginx variables other than $host, which fjord does not expand (nothing from an annotation is interpreted as nginx configuration); give a fixed URL"
        } else if fixed != url && !self.owner.hosts_exact {
            "uses $host, but a rule of the Ingress has a wildcard host or none, so a client could make fjord ask any server it names; give a fixed URL"
        } else {
            let had = fixed != url;
            return Some((fixed, had));
        };
        self.errors
            .push(format!("annotation {PREFIX}{name} {url:?} {why}"));
        None
    }

    /// `limit-rps`, `limit-rpm` (with `limit-burst-multiplier`) and `limit-connections`.
    fn limits(&mut self) {
        let multiplier = self.number("limit-burst-multiplier").unwrap_or(5).max(1);
        let before = self.out.chain.len();
        for (name, period) in [("limit-rps", "1s"), ("limit-rpm", "1m")] {
            let Some(average) = self.number(name) else {
                continue;
            };
            let spec = crd::MiddlewareSpec {
                rate_limit: Some(crd::RateLimit {
                    average,
                    period: Some(IntOrString::String(period.into())),
                    burst: Some(average.saturating_mul(multiplier)),
                    ..Default::default()
                }),
                ..Default::default()
            };
            self.add(name, &spec);
        }
        if let Some(amount) = self.number("limit-connections") {
            let spec = crd::MiddlewareSpec {
                in_flight_req: Some(crd::InFlightReq {
                    amount,
                    // Per client address, as nginx's limit_conn on $binary_remote_addr.
                    source_criterion: Some(crd::SourceCriterion {
                        ip_strategy: Some(crd::IpStrategy::default()),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            };
            self.add("limit-connections", &spec);
        }
        self.limit_whitelist(before);
        if let Some(size) = self.get("proxy-body-size").map(str::to_owned) {
            match body_size(&size) {
                Some(bytes) => {
                    let spec = crd::MiddlewareSpec {
                        buffering: Some(crd::Buffering {
                            max_request_body_bytes: Some(bytes),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    self.add("proxy-body-size", &spec);
                }
                None => self.errors.push(format!(
                    "annotation {PREFIX}proxy-body-size {size:?} is not a size (0, 8k, 1m, 2g)"
                )),
            }
        }
    }

    /// `custom-http-errors` with `default-backend`: those statuses answered by the default
    /// backend, asked for the original path with nginx's `X-Code` and friends.
    fn error_pages(&mut self) {
        let Some(codes) = self.get("custom-http-errors") else {
            return;
        };
        let codes = list(codes);
        let Some(service) = self.get("default-backend").map(str::to_owned) else {
            return self.out.warnings.push(format!(
                "annotation {PREFIX}custom-http-errors is not honoured without {PREFIX}default-backend: fjord has no controller-wide default backend"
            ));
        };
        let owner = self.owner;
        let Some(port) = owner
            .store
            .service(owner.namespace, &service)
            .and_then(|s| s.spec.as_ref()?.ports.as_ref()?.first().map(|p| p.port))
            .and_then(|p| u16::try_from(p).ok())
        else {
            return self.errors.push(format!(
                "annotation {PREFIX}default-backend: Service {}/{service} not found, or it has no port",
                owner.namespace
            ));
        };
        let mut statuses = Vec::new();
        for code in &codes {
            match code.parse::<u16>() {
                Ok(c) if (100..=599).contains(&c) => statuses.push((c, c)),
                _ => {
                    return self.errors.push(format!(
                        "annotation {PREFIX}custom-http-errors: {code:?} is not a status"
                    ));
                }
            }
        }
        let pages = ErrorPages {
            statuses,
            backend: crate::model::BackendId {
                namespace: owner.namespace.to_owned(),
                service: ServiceRef {
                    name: service.clone(),
                    port: PortRef::Number(port),
                },
                scheme: None,
                cluster_ip: false,
            },
            query: "/".into(),
            rewrites: Vec::new(),
            nginx: Some(NginxErrors {
                namespace: owner.namespace.to_owned(),
                ingress: owner.name.to_owned(),
                service: owner.service.clone().unwrap_or_default(),
                port: owner.port.clone().unwrap_or_default(),
            }),
        };
        self.out.chain.push(Arc::new(Middleware {
            name: format!("{}/{}@custom-http-errors", owner.namespace, owner.name).into(),
            kind: Kind::Errors(Box::new(pages)),
        }));
    }

    /// `limit-whitelist`: the limits added from `from` on do not count these peers.
    fn limit_whitelist(&mut self, from: usize) {
        let Some(ranges) = self.get("limit-whitelist") else {
            return;
        };
        let ranges = match nets("limit-whitelist", ranges) {
            Ok(r) => r,
            Err(e) => return self.errors.push(e),
        };
        if self.out.chain.len() == from {
            self.out.warnings.push(format!(
                "annotation {PREFIX}limit-whitelist does nothing without limit-rps, limit-rpm or limit-connections"
            ));
        }
        for m in &mut self.out.chain[from..] {
            // Just compiled here, so not shared yet.
            let Some(m) = Arc::get_mut(m) else { continue };
            match &mut m.kind {
                Kind::RateLimit(spec) => spec.exempt.clone_from(&ranges),
                Kind::InFlight(spec) => spec.exempt.clone_from(&ranges),
                _ => {}
            }
        }
    }

    /// HTTPS, permanent and temporary redirects, and `app-root`.
    fn redirects(&mut self) {
        if self.flag("ssl-redirect") == Some(false) {
            self.out.no_ssl_redirect = true;
        }
        self.out.www_redirect = self.flag("from-to-www-redirect") == Some(true);
        if self.flag("force-ssl-redirect") == Some(true) {
            let spec = crd::MiddlewareSpec {
                redirect_scheme: Some(crd::RedirectScheme {
                    scheme: "https".into(),
                    port: None,
                    permanent: Some(true),
                }),
                ..Default::default()
            };
            self.add("force-ssl-redirect", &spec);
        }
        let code = self.number("permanent-redirect-code");
        for (name, permanent) in [("permanent-redirect", true), ("temporal-redirect", false)] {
            if let Some(to) = self.get(name).map(str::to_owned) {
                if permanent && code.is_some_and(|c| c != 301) {
                    self.out.warnings.push(format!(
                        "annotation {PREFIX}permanent-redirect-code: fjord answers 301 (308 for methods other than GET and HEAD)"
                    ));
                }
                self.redirect(name, "^.*$", &to.replace('$', "$$"), permanent);
            }
        }
        if let Some(root) = self.get("app-root").map(str::to_owned) {
            if root.starts_with('/') {
                let to = format!("${{1}}{}", root.replace('$', "$$"));
                self.redirect("app-root", "^(https?://[^/]+)/$", &to, false);
            } else {
                self.errors.push(format!(
                    "annotation {PREFIX}app-root {root:?} must start with '/'"
                ));
            }
        }
    }

    fn redirect(&mut self, name: &'static str, regex: &str, replacement: &str, permanent: bool) {
        let spec = crd::MiddlewareSpec {
            redirect_regex: Some(crd::RedirectRegex {
                regex: regex.into(),
                replacement: replacement.into(),
                permanent: Some(permanent),
            }),
            ..Default::default()
        };
        self.add(name, &spec);
    }

    /// CORS (`enable-cors` and `cors-*`) and `x-forwarded-prefix`.
    fn headers(&mut self) {
        let cors = self.flag("enable-cors") == Some(true);
        let origins = self.get("cors-allow-origin").unwrap_or("*").to_owned();
        let methods = self
            .get("cors-allow-methods")
            .unwrap_or("GET, PUT, POST, DELETE, PATCH, OPTIONS")
            .to_owned();
        let allow_headers = self
            .get("cors-allow-headers")
            .unwrap_or("DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization")
            .to_owned();
        let expose = self.get("cors-expose-headers").unwrap_or("").to_owned();
        let credentials = self.flag("cors-allow-credentials").unwrap_or(true);
        let max_age = self.number("cors-max-age").unwrap_or(1_728_000);
        let given = self.ours.keys().any(|k| k.starts_with("cors-"));
        if cors {
            let spec = crd::MiddlewareSpec {
                headers: Some(crd::Headers {
                    access_control_allow_origin_list: list(&origins),
                    access_control_allow_methods: list(&methods),
                    access_control_allow_headers: list(&allow_headers),
                    access_control_expose_headers: list(&expose),
                    access_control_allow_credentials: Some(credentials),
                    access_control_max_age: i64::try_from(max_age).ok(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            self.add("enable-cors", &spec);
        } else if given {
            self.out.warnings.push(format!(
                "annotations {PREFIX}cors-* are ignored without {PREFIX}enable-cors: \"true\", as nginx ignores them"
            ));
        }
        if let Some(prefix) = self.get("x-forwarded-prefix").map(str::to_owned) {
            let spec = crd::MiddlewareSpec {
                headers: Some(crd::Headers {
                    custom_request_headers: [("X-Forwarded-Prefix".to_owned(), prefix)].into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            self.add("x-forwarded-prefix", &spec);
        }
    }

    /// Every annotation not read above: refused when it restricts access or is a snippet, or
    /// would route traffic elsewhere than nginx did; else a warning saying it is not honoured.
    fn the_rest(&mut self) {
        let unread: Vec<(&str, &str)> = self
            .ours
            .iter()
            .filter(|(k, _)| !self.used.contains(k))
            .map(|(k, v)| (*k, *v))
            .collect();
        for (name, value) in unread {
            match verdict(name, value) {
                Verdict::Honoured => {}
                Verdict::Refused(why) => self
                    .errors
                    .push(format!("annotation {PREFIX}{name} is refused: {why}")),
                Verdict::Ignored(why) => self
                    .out
                    .warnings
                    .push(format!("annotation {PREFIX}{name} is not honoured: {why}")),
            }
        }
    }
}

/// The host `$host` stands for in a URL until a request gives its own.
pub(crate) const HOST_PLACEHOLDER: &str = "host.fjord.invalid";

/// Checks `auth-signin`'s nginx variables: `$host` (where only the Ingress's own hosts can be
/// it), `$request_uri` and `$escaped_request_uri`, expanded on each redirect.
fn signin_variables(signin: &str, hosts_exact: bool) -> Result<(), String> {
    let rest = signin
        .replace("$escaped_request_uri", "")
        .replace("$request_uri", "");
    if rest.replace("$host", "").contains('$') {
        return Err("uses nginx variables other than $host, $request_uri and $escaped_request_uri, which fjord does not expand".into());
    }
    if rest.contains("$host") && !hosts_exact {
        return Err("uses $host, but a rule of the Ingress has a wildcard host or none".into());
    }
    Ok(())
}

/// Whether `name` is an HTTP token, as cookie names are.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_|~".contains(&b))
}

/// The addresses and CIDRs of annotation `name`'s comma-separated `value`.
fn nets(name: &str, value: &str) -> Result<Vec<ipnet::IpNet>, String> {
    list(value)
        .iter()
        .map(|r| net(r).map_err(|e| format!("annotation {PREFIX}{name}: {e}")))
        .collect()
}

/// What becomes of an annotation fjord does not translate.
enum Verdict {
    /// What fjord does anyway.
    Honoured,
    Refused(String),
    Ignored(String),
}

fn verdict(name: &str, value: &str) -> Verdict {
    if name.ends_with("-snippet") || name == "configuration-snippet" {
        return Verdict::Refused(
            "a snippet is nginx configuration, which fjord never executes or interprets (running \
             such snippets is how IngressNightmare, CVE-2025-1974, took over clusters); express \
             it with fjord's Middlewares"
                .into(),
        );
    }
    // ModSecurity is a web application firewall: on, it refuses requests.
    let firewall = matches!(name, "enable-modsecurity" | "enable-owasp-core-rules")
        && value.trim() == "true"
        || name == "modsecurity-transaction-id";
    let restricts = name.starts_with("auth-")
        || name.starts_with("limit-")
        || name == "satisfy"
        || name.starts_with("global-rate-limit")
        || firewall;
    if restricts {
        let instead = match name {
            "auth-signin" | "auth-method" | "auth-response-headers" => {
                "it is read only with auth-url"
            }
            _ if firewall => {
                "fjord has no web application firewall; put one behind fjord, or drop the annotation knowingly"
            }
            _ if name.starts_with("auth-tls-") => {
                "fjord checks client certificates with a TLSOption's clientAuth, which an IngressRoute's tls.options names: serve the host from one"
            }
            _ => "fjord cannot enforce it",
        };
        return Verdict::Refused(format!(
            "it restricts access and {instead}; serving the Ingress without it would open it to everyone"
        ));
    }
    match (name, value) {
        ("backend-protocol", v) if v.eq_ignore_ascii_case("HTTP") => Verdict::Honoured,
        ("ssl-passthrough", "true") => Verdict::Refused(
            "TLS passthrough needs TCP routing by SNI, which fjord does not do; terminate TLS in fjord with the Ingress's spec.tls".into(),
        ),
        (n, _) if n.starts_with("session-cookie-") || n.starts_with("affinity-") => {
            Verdict::Ignored("it is read only with affinity: cookie".into())
        }
        (n, _) if n.starts_with("proxy-ssl-") => {
            Verdict::Ignored("it is read only with backend-protocol HTTPS or GRPCS".into())
        }
        // fjord streams responses and request bodies as they come: nginx's buffering "off".
        ("ssl-redirect", "true") | ("proxy-buffering" | "proxy-request-buffering", "off") => {
            Verdict::Honoured
        }
        ("proxy-buffering" | "proxy-request-buffering", _) => Verdict::Ignored(
            "fjord streams bodies as they come (nginx's \"off\"); a backend that needs a slow client's whole request first should use a buffering Middleware's maxRequestBodyBytes".into(),
        ),
        ("backend-protocol", _) => Verdict::Ignored(
            "fjord speaks HTTP, HTTPS, GRPC and GRPCS to backends; a backend expecting another protocol will fail".into(),
        ),
        _ => Verdict::Ignored("fjord has no equivalent yet".into()),
    }
}

/// `from-to-www-redirect` on `host`: its twin (`www.` added, or removed), and the middleware
/// sending the twin's requests to `host`, scheme, path and query kept, as nginx's
/// `return 308 $scheme://host$request_uri` does. `source` is the Ingress's `namespace/name`.
pub(super) fn www_alias(source: &str, host: &HostMatch) -> Option<(HostMatch, Arc<Middleware>)> {
    let HostMatch::Exact(host) = host else {
        return None;
    };
    let twin = match host.strip_prefix("www.") {
        Some(bare) => bare.to_owned(),
        None => format!("www.{host}"),
    };
    let regex = regex::Regex::new("^(https?)://[^/]+(.*)$").ok()?;
    let redirect = Middleware {
        name: format!("{source}@from-to-www-redirect:{twin}").into(),
        kind: Kind::RedirectRegex {
            regex,
            // A validated host name: no `$` to be read as a group.
            replacement: format!("${{1}}://{host}${{2}}"),
            permanent: true,
        },
    };
    Some((HostMatch::Exact(twin), Arc::new(redirect)))
}

/// The rule matching `path` as nginx matches a regular-expression location (`~*`: case
/// insensitive, anchored at the start only) on `host`.
pub(super) fn regex_rule(host: &HostMatch, path: &str) -> Result<Rule, String> {
    if path.contains('`') {
        return Err("contains a backtick".into());
    }
    let path = format!("PathRegexp(`(?i)^{path}`)");
    let text = host_matcher(host)
        .into_iter()
        .chain([path])
        .collect::<Vec<_>>()
        .join(" && ");
    rule::parse(&text).map_err(|e| e.to_string())
}

/// The rule matcher for an Ingress host: `Host`, `HostRegexp` for a wildcard (one label, as the
/// route table matches it), none for any host.
fn host_matcher(host: &HostMatch) -> Option<String> {
    match host {
        HostMatch::Exact(h) => Some(format!("Host(`{h}`)")),
        HostMatch::Wildcard(suffix) => {
            Some(format!("HostRegexp(`^[^.]+\\.{}$`)", regex::escape(suffix)))
        }
        HostMatch::Any => None,
    }
}

/// The rule matching requests for `host` and `path` (element-wise, as the route table matches
/// a prefix) whose header `matcher` matches: `Header(`name`, `value`)` or `HeaderRegexp(...)`.
fn header_rule(host: &HostMatch, path: &PathMatch, matcher: &str) -> Result<(Rule, i64), String> {
    let mut parts: Vec<String> = host_matcher(host).into_iter().collect();
    match path {
        PathMatch::Exact(p) => parts.push(format!("Path(`{p}`)")),
        PathMatch::Prefix(p) if p.is_empty() => {}
        PathMatch::Prefix(p) => parts.push(format!("PathRegexp(`^{}(/|$)`)", regex::escape(p))),
    }
    parts.push(matcher.to_owned());
    let text = parts.join(" && ");
    let priority = i64::try_from(text.len()).unwrap_or(i64::MAX);
    Ok((rule::parse(&text).map_err(|e| e.to_string())?, priority))
}

/// A rule sending requests by their header: to the canary, or to the main Ingress.
#[derive(Debug)]
pub(super) struct HeaderRoute {
    pub rule: Rule,
    /// The rule's length, as for an IngressRoute's.
    pub priority: i64,
    pub to_canary: bool,
}

/// The rules that send a request for `host` and `path` by its header or cookie. nginx looks at
/// the header first: rules go by priority, so the header's are raised above the cookie's.
pub(super) fn canary_rules(
    canary: &Canary,
    host: &HostMatch,
    path: &PathMatch,
) -> Result<Vec<HeaderRoute>, String> {
    let mut matchers = match &canary.header {
        None => Vec::new(),
        Some(CanaryHeader::AlwaysNever(name)) => vec![
            (header_matcher("Header", name, "always")?, true),
            (header_matcher("Header", name, "never")?, false),
        ],
        Some(CanaryHeader::Value(name, value)) => {
            vec![(header_matcher("Header", name, value)?, true)]
        }
        Some(CanaryHeader::Pattern(name, re)) => {
            vec![(header_matcher("HeaderRegexp", name, re)?, true)]
        }
    };
    let by_header = matchers.len();
    if let Some(cookie) = &canary.cookie {
        matchers.push((cookie_matcher(cookie, "always"), true));
        matchers.push((cookie_matcher(cookie, "never"), false));
    }
    let mut routes = matchers
        .into_iter()
        .map(|(m, to_canary)| {
            let (rule, priority) = header_rule(host, path, &m)?;
            Ok(HeaderRoute {
                rule,
                priority,
                to_canary,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let (header, cookie) = routes.split_at_mut(by_header);
    let floor = cookie.iter().map(|r| r.priority).max().unwrap_or(0);
    for r in header {
        r.priority = r.priority.max(floor.saturating_add(1));
    }
    Ok(routes)
}

/// `Header(...)` or `HeaderRegexp(...)` for `name` and `value`, refusing a backtick.
fn header_matcher(kind: &str, name: &str, value: &str) -> Result<String, String> {
    if name.contains('`') || value.contains('`') {
        return Err(format!(
            "{PREFIX}canary-by-header: a backtick cannot be matched"
        ));
    }
    Ok(format!("{kind}(`{name}`, `{value}`)"))
}

/// The matcher for cookie `name` (a validated cookie name) having `value`, in any of the
/// request's `Cookie` headers (HTTP/2 sends one per cookie).
fn cookie_matcher(name: &str, value: &str) -> String {
    format!(
        "HeaderRegexp(`Cookie`, `(?:^|;)\\s*{}={value}\\s*(?:;|$)`)",
        regex::escape(name)
    )
}

/// The middleware rewriting a path matched by the regular expression `path` to `target`, as
/// nginx's `rewrite` does: the whole path is replaced (the query is kept), `$1` is the first
/// group.
pub(super) fn rewrite(
    owner: &Owner<'_>,
    path: &str,
    target: &str,
) -> Result<Option<Arc<Middleware>>, String> {
    let spec = crd::MiddlewareSpec {
        replace_path_regex: Some(crd::ReplacePathRegex {
            regex: format!("(?i)^(?:{path}).*"),
            replacement: braced_groups(target),
        }),
        ..Default::default()
    };
    let id = format!("{}/{}@rewrite-target", owner.namespace, owner.name);
    compile_spec(&id, owner.namespace, &spec, owner.store)
        .map_err(|why| format!("annotation {PREFIX}rewrite-target: {why}"))
}

/// `$1` as `${1}`: the regex crate would read `$1abc` as a group named `1abc`.
fn braced_groups(target: &str) -> String {
    let mut out = String::with_capacity(target.len() + 8);
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str("${");
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                out.push(d);
            }
            out.push('}');
        } else {
            out.push(c);
        }
    }
    out
}

/// A comma-separated list, trimmed, empty items dropped.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// nginx's size: bytes, or with `k`, `m`, `g` (either case); `0` is no limit.
fn body_size(value: &str) -> Option<u64> {
    let (digits, unit) = match value.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&value[..i], c.to_ascii_lowercase()),
        _ => (value, 'b'),
    };
    let n: u64 = digits.parse().ok()?;
    let scale: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// An `auth-map` Secret (a key per user, its value the hash) as htpasswd lines.
fn auth_map(store: &Store, ns: &str, name: &str) -> Result<String, String> {
    let secret = store
        .secret(ns, name)
        .ok_or_else(|| format!("Secret {ns}/{name} not found"))?;
    let mut lines = String::new();
    for (user, hash) in secret.data.iter().flatten() {
        lines += &format!("{user}:{}\n", String::from_utf8_lossy(&hash.0));
    }
    for (user, hash) in secret.string_data.iter().flatten() {
        lines += &format!("{user}:{hash}\n");
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_braced() {
        assert_eq!(braced_groups("/$2"), "/${2}");
        assert_eq!(braced_groups("/v$1abc/$12"), "/v${1}abc/${12}");
        assert_eq!(braced_groups("/a$b"), "/a$b");
    }

    #[test]
    fn sizes_read_as_nginx_reads_them() {
        assert_eq!(body_size("0"), Some(0));
        assert_eq!(body_size("1024"), Some(1024));
        assert_eq!(body_size("8k"), Some(8192));
        assert_eq!(body_size("1m"), Some(1 << 20));
        assert_eq!(body_size("2G"), Some(2 << 30));
        assert_eq!(body_size("1x"), None);
        assert_eq!(body_size("m"), None);
    }

    fn read_all(pairs: &[(&str, &str)]) -> Result<Nginx, Vec<String>> {
        let store = Store::default();
        let owner = Owner {
            namespace: "shop",
            name: "web",
            store: &store,
            allow_cross_namespace: false,
            service: None,
            port: None,
            hosts_exact: true,
        };
        let annotations = pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), (*v).to_owned()))
            .collect();
        read(&owner, &annotations)
    }

    #[test]
    fn every_annotation_is_honoured_refused_or_warned_about() {
        let read = read_all(&[
            ("whitelist-source-range", "10.0.0.0/8, 192.168.1.1"),
            ("limit-rps", "5"),
            ("enable-cors", "true"),
            ("proxy-buffering", "on"),
            ("ssl-redirect", "true"),
        ])
        .unwrap();
        let names: Vec<&str> = read.chain.iter().map(|m| &*m.name).collect();
        assert_eq!(
            names,
            [
                "shop/web@whitelist-source-range",
                "shop/web@limit-rps",
                "shop/web@enable-cors"
            ]
        );
        assert_eq!(read.warnings.len(), 1, "{:?}", read.warnings);
        assert!(read.warnings[0].contains("proxy-buffering"));

        for (name, value) in [
            ("configuration-snippet", "more_set_headers \"X: y\";"),
            ("auth-url", "http://$remote_addr/verify"),
            ("auth-signin", "https://login.example/"),
            ("auth-type", "ntlm"),
            ("denylist-source-range", "not-a-cidr"),
            ("satisfy", "any"),
            ("limit-whitelist", "10.0.0.300"),
            ("ssl-passthrough", "true"),
            ("whitelist-source-range", "not-a-cidr"),
        ] {
            let errors = read_all(&[(name, value)]).unwrap_err();
            assert!(errors[0].contains(name), "{errors:?}");
        }
        let snippet = read_all(&[("server-snippet", "x")]).unwrap_err();
        assert!(snippet[0].contains("IngressNightmare"), "{snippet:?}");
    }
}
