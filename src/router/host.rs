//! Host matching: exact names in one hash map, `*.example.com` wildcards in another keyed by the
//! part after the first label, so a lookup is at most two hash probes whatever the host count.

use std::borrow::Cow;

use super::Table;

/// Tables per host rule kind; exact beats wildcard beats a rule without a host.
#[derive(Debug)]
pub(super) struct HostTable<T> {
    pub(super) exact: Table<T>,
    pub(super) wildcard: Table<T>,
    pub(super) any: Option<T>,
}

impl<T> Default for HostTable<T> {
    fn default() -> Self {
        Self {
            exact: Table::default(),
            wildcard: Table::default(),
            any: None,
        }
    }
}

impl<T> HostTable<T> {
    /// The entries whose rule matches `host` (already [`normalize`]d), most specific first.
    pub(super) fn candidates<'a>(&'a self, host: &str) -> impl Iterator<Item = &'a T> {
        let exact = self.exact.get(host);
        // `*.example.com` matches exactly one label more: the rest after the first dot. Looked
        // up only if the exact host's paths have no match, and only if there are wildcards.
        let wildcard = std::iter::once_with(move || {
            if self.wildcard.is_empty() {
                return None;
            }
            let (label, rest) = host.split_once('.')?;
            (!label.is_empty())
                .then(|| self.wildcard.get(rest))
                .flatten()
        });
        exact
            .into_iter()
            .chain(wildcard.flatten())
            .chain(self.any.as_ref())
    }
}

/// A request's host as rules compare it: without port or trailing dot, lowercase. Borrows when
/// the host is already in that form (the common case), so routing does not allocate.
pub fn normalize(authority: &str) -> Cow<'_, str> {
    let host = if authority.starts_with('[') {
        // An IPv6 literal keeps its brackets; only a port after them goes.
        authority
            .split_once(']')
            .map_or(authority, |(h, _)| &authority[..=h.len()])
    } else {
        // A plain loop: for a string this short, `split_once` costs more setting up its search.
        let port = authority.bytes().position(|b| b == b':');
        port.map_or(authority, |at| &authority[..at])
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_ports_case_and_trailing_dots() {
        assert_eq!(normalize("Shop.Example.COM:8080"), "shop.example.com");
        assert_eq!(normalize("shop.example.com."), "shop.example.com");
        assert_eq!(normalize("[::1]:8080"), "[::1]");
        assert!(matches!(normalize("a.b:1"), Cow::Borrowed("a.b")));
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let mut t = HostTable::default();
        t.wildcard.insert("example.com".into(), 1);
        assert_eq!(t.candidates("a.example.com").next(), Some(&1));
        assert_eq!(t.candidates("a.b.example.com").next(), None);
        assert_eq!(t.candidates("example.com").next(), None);
        assert_eq!(t.candidates(".example.com").next(), None);
    }
}
