//! Path matching per the Ingress spec: `Exact` is a string compare; `Prefix` is element-wise
//! (`/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`) and the longest prefix wins.
//! Prefixes live in a hash map, so a lookup costs one probe per path element, whatever the
//! number of rules.

use super::Table;

#[derive(Debug)]
pub(super) struct PathTable<T> {
    pub(super) exact: Table<T>,
    /// Keyed without the trailing slash; the root `/` is the empty string.
    pub(super) prefix: Table<T>,
}

impl<T> Default for PathTable<T> {
    fn default() -> Self {
        Self {
            exact: Table::default(),
            prefix: Table::default(),
        }
    }
}

impl<T> PathTable<T> {
    /// The entry for `path` (no query): an exact rule first, then the longest prefix.
    pub(super) fn lookup(&self, path: &str) -> Option<&T> {
        if let Some(t) = self.exact.get(path) {
            return Some(t);
        }
        if self.prefix.is_empty() {
            return None;
        }
        // `/foo/bar/` is the elements foo, bar: try `/foo/bar`, `/foo`, then the root.
        let mut candidate = path.trim_end_matches('/');
        loop {
            if let Some(t) = self.prefix.get(candidate) {
                return Some(t);
            }
            match candidate.rfind('/') {
                Some(i) => candidate = &candidate[..i],
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(exact: &[&str], prefix: &[&str]) -> PathTable<String> {
        let mut t = PathTable::default();
        for p in exact {
            t.exact.insert((*p).into(), format!("exact {p}"));
        }
        for p in prefix {
            t.prefix.insert((*p).into(), format!("prefix {p}"));
        }
        t
    }

    fn hit(t: &PathTable<String>, path: &str) -> Option<String> {
        t.lookup(path).cloned()
    }

    #[test]
    fn prefix_is_element_wise_and_longest_wins() {
        let t = table(&[], &["/foo", "/foo/bar"]);
        assert_eq!(hit(&t, "/foo").as_deref(), Some("prefix /foo"));
        assert_eq!(hit(&t, "/foo/").as_deref(), Some("prefix /foo"));
        assert_eq!(hit(&t, "/foo/baz").as_deref(), Some("prefix /foo"));
        assert_eq!(hit(&t, "/foo/bar/x").as_deref(), Some("prefix /foo/bar"));
        assert_eq!(hit(&t, "/foobar"), None);
        assert_eq!(hit(&t, "/"), None);
    }

    #[test]
    fn root_prefix_matches_everything_and_exact_beats_prefix() {
        let t = table(&["/foo", "/bar/"], &["", "/foo"]);
        assert_eq!(hit(&t, "/anything").as_deref(), Some("prefix "));
        assert_eq!(hit(&t, "/").as_deref(), Some("prefix "));
        assert_eq!(hit(&t, "/foo").as_deref(), Some("exact /foo"));
        assert_eq!(hit(&t, "/foo/").as_deref(), Some("prefix /foo"));
        assert_eq!(hit(&t, "/bar/").as_deref(), Some("exact /bar/"));
        assert_eq!(hit(&t, "/bar").as_deref(), Some("prefix "));
    }

    #[test]
    fn exact_is_case_sensitive() {
        let t = table(&["/Foo"], &[]);
        assert_eq!(hit(&t, "/foo"), None);
        assert_eq!(hit(&t, "/Foo").as_deref(), Some("exact /Foo"));
    }
}
