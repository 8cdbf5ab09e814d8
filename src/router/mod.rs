//! The router: host, then path, to a target. Pure and generic over the target, so the snapshot
//! stores its compiled routes here and tests and benches use plain values.

mod host;
mod path;

pub use host::normalize as normalize_host;

use std::collections::HashMap;

use host::HostTable;
use path::PathTable;

use crate::model::{HostMatch, PathMatch};
use crate::rule::{RequestView, Rule};

/// The router's tables, keyed by hosts and paths from the cluster's rules. Clients only look
/// keys up and never add any, so SipHash's flood resistance buys nothing here; foldhash, seeded
/// per table, hashes a host or path in a fraction of its time.
type Table<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;

/// A compiled route table: IngressRoute rules first (by priority), then Ingress host and path
/// rules, then the default backend.
#[derive(Debug)]
pub struct Router<T> {
    hosts: HostTable<PathTable<T>>,
    default: Option<T>,
    /// Rules that pin their hosts, filed under each: only they are tried for that host.
    rules_by_host: Table<Vec<RuleEntry<T>>>,
    /// Rules that match any host (no `Host`, or `HostRegexp`, or a `Host` under `||`/`!`).
    rules_any: Vec<RuleEntry<T>>,
}

#[derive(Debug)]
struct RuleEntry<T> {
    /// Position in priority order: lower is tried first.
    rank: usize,
    rule: Rule,
    /// Served only on these entry points; on all when empty.
    entry_points: Box<[Box<str>]>,
    target: T,
}

impl<T> Router<T> {
    /// Builds the table. `routes` must not repeat a (host, path) pair; if one does, the first
    /// stays (translation already resolved conflicts).
    pub fn new(
        routes: impl IntoIterator<Item = (HostMatch, PathMatch, T)>,
        default: Option<T>,
    ) -> Self {
        let mut hosts: HostTable<PathTable<T>> = HostTable::default();
        for (host, path, target) in routes {
            let table = match host {
                HostMatch::Exact(h) => hosts.exact.entry(h.into_boxed_str()).or_default(),
                HostMatch::Wildcard(h) => hosts.wildcard.entry(h.into_boxed_str()).or_default(),
                HostMatch::Any => hosts.any.get_or_insert_with(PathTable::default),
            };
            let (map, key) = match path {
                PathMatch::Exact(p) => (&mut table.exact, p),
                PathMatch::Prefix(p) => (&mut table.prefix, p),
            };
            map.entry(key.into_boxed_str()).or_insert(target);
        }
        Self {
            hosts,
            default,
            rules_by_host: Table::default(),
            rules_any: Vec::new(),
        }
    }

    /// Adds rule routes, highest priority first.
    pub fn with_rules(mut self, rules: impl IntoIterator<Item = (Rule, Vec<String>, T)>) -> Self
    where
        T: Clone,
    {
        for (rank, (rule, entry_points, target)) in rules.into_iter().enumerate() {
            let entry_points: Box<[Box<str>]> = entry_points
                .into_iter()
                .map(String::into_boxed_str)
                .collect();
            match rule.hosts() {
                Some(hosts) => {
                    for host in hosts {
                        self.rules_by_host
                            .entry(host.into_boxed_str())
                            .or_default()
                            .push(RuleEntry {
                                rank,
                                rule: rule.clone(),
                                entry_points: entry_points.clone(),
                                target: target.clone(),
                            });
                    }
                }
                None => self.rules_any.push(RuleEntry {
                    rank,
                    rule,
                    entry_points,
                    target,
                }),
            }
        }
        self
    }

    /// The target for a request arriving on `entry_point`: the first rule route (by priority)
    /// that matches, among those filed under the request's host and those for any host; else
    /// the Ingress rules for its host and path.
    pub fn route_request(&self, view: &RequestView<'_>, entry_point: &str) -> Option<&T> {
        let mut pinned = self
            .rules_by_host
            .get(view.host)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .peekable();
        let mut any = self.rules_any.iter().peekable();
        loop {
            let next = match (pinned.peek(), any.peek()) {
                (Some(p), Some(a)) if p.rank < a.rank => pinned.next(),
                (Some(_), Some(_)) | (None, Some(_)) => any.next(),
                (Some(_), None) => pinned.next(),
                (None, None) => break,
            };
            let Some(entry) = next else { break };
            let served_here = entry.entry_points.is_empty()
                || entry.entry_points.iter().any(|e| &**e == entry_point);
            if served_here && entry.rule.matches(view) {
                return Some(&entry.target);
            }
        }
        self.lookup(view.host, view.path)
    }

    /// The target for a request to `host` (a Host header or authority, any case, port allowed)
    /// and `path` (without the query). A more specific host's rules are tried first; when none
    /// of its paths match, the wildcard's, then rules without a host, then the default backend.
    pub fn route(&self, host: &str, path: &str) -> Option<&T> {
        self.lookup(&host::normalize(host), path)
    }

    /// [`Router::route`] for a host already normalized.
    fn lookup(&self, host: &str, path: &str) -> Option<&T> {
        self.hosts
            .candidates(host)
            .find_map(|paths| paths.lookup(path))
            .or(self.default.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::parse;

    fn router() -> Router<&'static str> {
        Router::new(
            [
                (
                    HostMatch::Exact("a.example.com".into()),
                    PathMatch::Prefix("/app".into()),
                    "exact-app",
                ),
                (
                    HostMatch::Wildcard("example.com".into()),
                    PathMatch::Prefix(String::new()),
                    "wild-root",
                ),
                (
                    HostMatch::Wildcard("example.com".into()),
                    PathMatch::Prefix("/app".into()),
                    "wild-app",
                ),
                (
                    HostMatch::Any,
                    PathMatch::Exact("/health".into()),
                    "any-health",
                ),
            ],
            Some("default"),
        )
    }

    #[test]
    fn exact_host_beats_wildcard_then_falls_through() {
        let r = router();
        assert_eq!(r.route("A.Example.com:8080", "/app/x"), Some(&"exact-app"));
        assert_eq!(r.route("a.example.com", "/other"), Some(&"wild-root"));
        assert_eq!(r.route("b.example.com", "/app"), Some(&"wild-app"));
        assert_eq!(r.route("x.y.example.com", "/health"), Some(&"any-health"));
        assert_eq!(r.route("x.y.example.com", "/app"), Some(&"default"));
    }

    #[test]
    fn rules_go_by_priority_across_pinned_and_any_host_lists() {
        let rules = vec![
            (
                parse("Header(`X-Env`, `canary`)").unwrap(),
                vec![],
                "canary-anywhere",
            ),
            (
                parse("Host(`a.example.com`) && PathPrefix(`/api`)").unwrap(),
                vec![],
                "a-api",
            ),
            (
                parse("Host(`a.example.com`)").unwrap(),
                vec!["websecure".into()],
                "a-secure-only",
            ),
        ];
        let r = router().with_rules(rules);
        let headers = http::HeaderMap::new();
        let mut canary = http::HeaderMap::new();
        canary.insert("x-env", "canary".parse().unwrap());
        let view = |path, headers| RequestView {
            host: "a.example.com",
            path,
            query: None,
            method: &http::Method::GET,
            headers,
            client_ip: "127.0.0.1".parse().unwrap(),
        };
        assert_eq!(
            r.route_request(&view("/api/x", &canary), "web"),
            Some(&"canary-anywhere")
        );
        assert_eq!(
            r.route_request(&view("/api/x", &headers), "web"),
            Some(&"a-api")
        );
        assert_eq!(
            r.route_request(&view("/other", &headers), "websecure"),
            Some(&"a-secure-only")
        );
        assert_eq!(
            r.route_request(&view("/other", &headers), "web"),
            Some(&"wild-root"),
            "falls back to Ingress rules"
        );
    }
}
