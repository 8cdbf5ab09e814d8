//! The rule language of IngressRoute (Traefik's, so existing rules carry over): matchers on the
//! host, path, method, headers, query and client IP, combined with `&&`, `||`, `!` and
//! parentheses. Pure: a rule is parsed once per snapshot and evaluated against a borrowed view
//! of the request.

mod parse;

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, Method};
use ipnet::IpNet;
use regex::Regex;

pub use parse::{ParseError, parse};

/// Largest compiled regex (bytes), so a hostile rule cannot make a huge automaton.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A parsed rule: matchers combined with `&&`, `||` and `!`.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Both match.
    And(Box<Rule>, Box<Rule>),
    /// Either matches.
    Or(Box<Rule>, Box<Rule>),
    /// The rule does not match.
    Not(Box<Rule>),
    /// One matcher.
    Matcher(Matcher),
}

/// One matcher of the rule language.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Any of these hosts, lowercase, compared case-insensitively.
    Host(Vec<String>),
    /// `HostRegexp(`re`)`.
    HostRegexp(Regex),
    /// The exact path.
    Path(String),
    /// A string prefix of the path (`/api` matches `/apis` too, as in Traefik).
    PathPrefix(String),
    /// `PathRegexp(`re`)`.
    PathRegexp(Regex),
    /// `Method(`GET`)`.
    Method(Method),
    /// `Header(`name`, `value`)`.
    Header(HeaderName, String),
    /// `HeaderRegexp(`name`, `re`)`.
    HeaderRegexp(HeaderName, Regex),
    /// A query parameter (decoded), with this value or, without one, present at all.
    Query(String, Option<String>),
    /// `QueryRegexp(`name`, `re`)`.
    QueryRegexp(String, Regex),
    /// `ClientIP(`range`)`.
    ClientIp(IpNet),
}

/// The rule written back in the rule language, for people reading what is served (the API):
/// `&&` binds tighter than `||`, so only an `||` under an `&&` or a `!` needs parentheses.
impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let grouped = |r: &Rule, f: &mut std::fmt::Formatter<'_>| match r {
            Rule::Or(..) | Rule::And(..) => write!(f, "({r})"),
            _ => write!(f, "{r}"),
        };
        match self {
            Rule::And(a, b) => {
                for (i, r) in [a, b].into_iter().enumerate() {
                    if i > 0 {
                        f.write_str(" && ")?;
                    }
                    match **r {
                        Rule::Or(..) => write!(f, "({r})")?,
                        _ => write!(f, "{r}")?,
                    }
                }
                Ok(())
            }
            Rule::Or(a, b) => write!(f, "{a} || {b}"),
            Rule::Not(r) => {
                f.write_str("!")?;
                grouped(r, f)
            }
            Rule::Matcher(m) => write!(f, "{m}"),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matcher::Host(hosts) => {
                f.write_str("Host(")?;
                for (i, h) in hosts.iter().enumerate() {
                    let sep = if i > 0 { ", " } else { "" };
                    write!(f, "{sep}`{h}`")?;
                }
                f.write_str(")")
            }
            Matcher::HostRegexp(re) => write!(f, "HostRegexp(`{re}`)"),
            Matcher::Path(p) => write!(f, "Path(`{p}`)"),
            Matcher::PathPrefix(p) => write!(f, "PathPrefix(`{p}`)"),
            Matcher::PathRegexp(re) => write!(f, "PathRegexp(`{re}`)"),
            Matcher::Method(m) => write!(f, "Method(`{m}`)"),
            Matcher::Header(n, v) => write!(f, "Header(`{n}`, `{v}`)"),
            Matcher::HeaderRegexp(n, re) => write!(f, "HeaderRegexp(`{n}`, `{re}`)"),
            Matcher::Query(n, Some(v)) => write!(f, "Query(`{n}`, `{v}`)"),
            Matcher::Query(n, None) => write!(f, "Query(`{n}`)"),
            Matcher::QueryRegexp(n, re) => write!(f, "QueryRegexp(`{n}`, `{re}`)"),
            Matcher::ClientIp(net) => write!(f, "ClientIP(`{net}`)"),
        }
    }
}

/// What a rule looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Normalized: lowercase, no port.
    pub host: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query, if any.
    pub query: Option<&'a str>,
    /// The method.
    pub method: &'a Method,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub client_ip: IpAddr,
}

impl Matcher {
    /// Builds matcher `name` from its arguments; the error says what is wrong with them.
    fn new(name: &str, args: Vec<String>) -> Result<Self, String> {
        let want = |n: usize, what: &str| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "{name} takes {n} value{} ({what}), got {}",
                    if n == 1 { "" } else { "s" },
                    args.len()
                ))
            }
        };
        let regex = |s: &str| {
            regex::RegexBuilder::new(s)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    format!(
                        "{name}: bad regular expression `{s}`: {}",
                        e.to_string().lines().last().unwrap_or_default()
                    )
                })
        };
        let header = |s: &str| {
            HeaderName::from_bytes(s.as_bytes())
                .map_err(|_| format!("{name}: `{s}` is not a header name"))
        };
        let mut a = args.clone().into_iter();
        let mut next = || a.next().unwrap_or_default();
        Ok(match name {
            "Host" => {
                if args.is_empty() {
                    return Err("Host takes at least 1 value (host)".into());
                }
                Matcher::Host(args.iter().map(|h| h.to_ascii_lowercase()).collect())
            }
            "HostRegexp" => {
                want(1, "regular expression")?;
                Matcher::HostRegexp(regex(&next())?)
            }
            "Path" | "PathPrefix" => {
                want(1, "path")?;
                let p = next();
                if !p.starts_with('/') {
                    return Err(format!("{name}: `{p}` must start with '/'"));
                }
                if name == "Path" {
                    Matcher::Path(p)
                } else {
                    Matcher::PathPrefix(p)
                }
            }
            "PathRegexp" => {
                want(1, "regular expression")?;
                Matcher::PathRegexp(regex(&next())?)
            }
            "Method" => {
                want(1, "method")?;
                let m = next();
                Matcher::Method(
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|_| format!("Method: `{m}` is not a method"))?,
                )
            }
            "Header" => {
                want(2, "name, value")?;
                Matcher::Header(header(&next())?, next())
            }
            "HeaderRegexp" => {
                want(2, "name, regular expression")?;
                Matcher::HeaderRegexp(header(&next())?, regex(&next())?)
            }
            "Query" => match args.len() {
                1 => Matcher::Query(next(), None),
                2 => Matcher::Query(next(), Some(next())),
                n => {
                    return Err(format!(
                        "Query takes 1 or 2 values (name[, value]), got {n}"
                    ));
                }
            },
            "QueryRegexp" => {
                want(2, "name, regular expression")?;
                Matcher::QueryRegexp(next(), regex(&next())?)
            }
            "ClientIP" => {
                want(1, "IP or CIDR")?;
                let s = next();
                let net = s
                    .parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("ClientIP: `{s}` is not an IP or CIDR"))?;
                Matcher::ClientIp(net)
            }
            other => return Err(format!("unknown matcher `{other}`")),
        })
    }

    fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Matcher::Host(hosts) => hosts.iter().any(|h| h == req.host),
            Matcher::HostRegexp(re) => re.is_match(req.host),
            Matcher::Path(p) => req.path == p,
            Matcher::PathPrefix(p) => req.path.starts_with(p.as_str()),
            Matcher::PathRegexp(re) => re.is_match(req.path),
            Matcher::Method(m) => req.method == m,
            Matcher::Header(name, value) => req
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.as_bytes() == value.as_bytes()),
            Matcher::HeaderRegexp(name, re) => req
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| re.is_match(v))),
            Matcher::Query(key, value) => query(req).any(|(k, v)| {
                k == key.as_str() && value.as_ref().is_none_or(|want| v == want.as_str())
            }),
            Matcher::QueryRegexp(key, re) => {
                query(req).any(|(k, v)| k == key.as_str() && re.is_match(&v))
            }
            Matcher::ClientIp(net) => net.contains(&req.client_ip.to_canonical()),
        }
    }
}

fn query<'a>(req: &RequestView<'a>) -> form_urlencoded::Parse<'a> {
    form_urlencoded::parse(req.query.unwrap_or_default().as_bytes())
}

impl Rule {
    /// Whether `req` matches the rule.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Rule::And(a, b) => a.matches(req) && b.matches(req),
            Rule::Or(a, b) => a.matches(req) || b.matches(req),
            Rule::Not(r) => !r.matches(req),
            Rule::Matcher(m) => m.matches(req),
        }
    }

    /// The exact hosts a request must have for the rule to match, if the rule pins them: the
    /// router files the rule under those hosts and never looks at it for others.
    pub fn hosts(&self) -> Option<Vec<String>> {
        match self {
            Rule::Matcher(Matcher::Host(h)) => Some(h.clone()),
            Rule::And(a, b) => match (a.hosts(), b.hosts()) {
                (Some(x), Some(y)) => Some(x.into_iter().filter(|h| y.contains(h)).collect()),
                (x, y) => x.or(y),
            },
            Rule::Or(a, b) => {
                let (mut x, y) = (a.hosts()?, b.hosts()?);
                x.extend(y);
                x.sort();
                x.dedup();
                Some(x)
            }
            Rule::Not(_) | Rule::Matcher(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_written_back_as_it_parses() {
        for rule in [
            "Host(`a.test`, `b.test`) && (PathPrefix(`/api`) || Path(`/x`))",
            "!(Method(`POST`) || Header(`x-env`, `canary`)) && ClientIP(`10.0.0.0/8`)",
            "Query(`debug`) || Query(`v`, `2`) || QueryRegexp(`id`, `^[0-9]+$`)",
            "HeaderRegexp(`x-id`, `^a`) && !PathRegexp(`^/private`)",
        ] {
            let written = parse(rule).unwrap().to_string();
            assert_eq!(written, rule);
            assert_eq!(parse(&written).unwrap().to_string(), written);
        }
    }

    fn view<'a>(
        headers: &'a HeaderMap,
        method: &'a Method,
        path: &'a str,
        query: Option<&'a str>,
    ) -> RequestView<'a> {
        RequestView {
            host: "shop.example.com",
            path,
            query,
            method,
            headers,
            client_ip: "10.1.2.3".parse().unwrap(),
        }
    }

    fn check(
        rule: &str,
        path: &str,
        query: Option<&str>,
        headers: &[(&'static str, &'static str)],
    ) -> bool {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, v.parse().unwrap());
        }
        let m = Method::GET;
        parse(rule).unwrap().matches(&view(&h, &m, path, query))
    }

    #[test]
    fn every_matcher() {
        assert!(check("Host(`Shop.Example.com`)", "/", None, &[]));
        assert!(!check("Host(`other.com`)", "/", None, &[]));
        assert!(check(
            "HostRegexp(`^[a-z]+\\.example\\.com$`)",
            "/",
            None,
            &[]
        ));
        assert!(check("Path(`/a`)", "/a", None, &[]) && !check("Path(`/a`)", "/a/", None, &[]));
        assert!(check("PathPrefix(`/api`)", "/apis", None, &[]));
        assert!(check("PathRegexp(`\\.(png|jpg)$`)", "/x/y.png", None, &[]));
        assert!(check("Method(`get`)", "/", None, &[]) && !check("Method(`POST`)", "/", None, &[]));
        assert!(check(
            "Header(`X-Env`, `canary`)",
            "/",
            None,
            &[("x-env", "canary")]
        ));
        assert!(!check(
            "Header(`X-Env`, `canary`)",
            "/",
            None,
            &[("x-env", "Canary")]
        ));
        assert!(check(
            "HeaderRegexp(`User-Agent`, `curl/.*`)",
            "/",
            None,
            &[("user-agent", "curl/8.0")]
        ));
        assert!(check("Query(`debug`)", "/", Some("a=1&debug"), &[]));
        assert!(check("Query(`q`, `a b`)", "/", Some("q=a+b"), &[]));
        assert!(!check("Query(`q`, `x`)", "/", Some("q=y"), &[]));
        assert!(check(
            "QueryRegexp(`id`, `^[0-9]+$`)",
            "/",
            Some("id=42"),
            &[]
        ));
        assert!(
            check("ClientIP(`10.0.0.0/8`)", "/", None, &[])
                && check("ClientIP(`10.1.2.3`)", "/", None, &[])
        );
        assert!(!check("ClientIP(`192.168.0.0/16`)", "/", None, &[]));
        assert!(check(
            "Host(`shop.example.com`) && !Method(`POST`) && (Path(`/x`) || PathPrefix(`/y`))",
            "/y/1",
            None,
            &[]
        ));
    }

    #[test]
    fn hosts_pin_the_rule_only_when_every_match_needs_them() {
        let hosts = |r: &str| parse(r).unwrap().hosts();
        assert_eq!(hosts("Host(`a`) && Path(`/`)"), Some(vec!["a".into()]));
        assert_eq!(
            hosts("Host(`a`) || Host(`b`)"),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(hosts("Host(`a`) || Path(`/`)"), None);
        assert_eq!(hosts("!Host(`a`)"), None);
        assert_eq!(hosts("Header(`x`, `y`)"), None);
    }
}
