//! The router: host, then path, to a target. Pure and generic over the target, so the snapshot
//! stores its compiled routes here and tests and benches use plain values.

mod host;
mod path;

pub use host::normalize as normalize_host;

use host::HostTable;
use path::PathTable;

use crate::translate::{HostMatch, PathMatch};

/// A compiled route table.
#[derive(Debug)]
pub struct Router<T> {
    hosts: HostTable<PathTable<T>>,
    default: Option<T>,
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
        Self { hosts, default }
    }

    /// The target for a request to `host` (a Host header or authority, any case, port allowed)
    /// and `path` (without the query). A more specific host's rules are tried first; when none
    /// of its paths match, the wildcard's, then rules without a host, then the default backend.
    pub fn route(&self, host: &str, path: &str) -> Option<&T> {
        let host = host::normalize(host);
        self.hosts
            .candidates(&host)
            .find_map(|paths| paths.lookup(path))
            .or(self.default.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
