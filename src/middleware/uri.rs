//! What middlewares check or rewrite in a request's URI as sent: encoded characters in the
//! path, a trailing slash, the query's parameters. Pure functions over the raw strings, so
//! that what a middleware leaves alone keeps its exact encoding.

use crate::model::middleware::QueryParameters;

/// Whether `path` (raw, as sent) holds one of `denied` percent-encoded, or a `%` not
/// followed by two characters: Traefik's `encodedCharacters` answers both with a 400, so that
/// fjord and a backend cannot read one path two ways (`/admin%2Fx` as one segment or two).
pub(super) fn encoded_refused(path: &str, denied: &[u8]) -> bool {
    let bytes = path.as_bytes();
    let mut i = 0;
    while let Some(at) = bytes[i..].iter().position(|&b| b == b'%') {
        let start = i + at;
        let Some(&[high, low]) = bytes.get(start + 1..start + 3) else {
            return true;
        };
        if let (Some(high), Some(low)) = (hex(high), hex(low))
            && denied.contains(&(high << 4 | low))
        {
            return true;
        }
        i = start + 3;
    }
    false
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The path `redirectTrailingSlash` sends a client to, if any: `path` with a slash added
/// (`add`) or its one trailing slash removed, never for `/` itself. A path ending in two
/// slashes is left alone in `remove`, as Traefik's rule leaves it.
pub(super) fn trailing_slash(path: &str, add: bool) -> Option<String> {
    if path.len() < 2 {
        return None;
    }
    match (add, path.strip_suffix('/')) {
        (true, None) => Some(format!("{path}/")),
        (false, Some(rest)) if !rest.ends_with('/') => Some(rest.to_owned()),
        _ => None,
    }
}

/// `query` after `q`: deleted names go, each set name's first occurrence takes the new value
/// (the others go), set names not present and then added ones are appended, in name order.
/// Names are matched decoded; the pairs not touched keep their order and their encoding, for
/// backends that sign the query.
pub(super) fn rewrite_query(query: &str, q: &QueryParameters) -> String {
    let mut pairs: Vec<String> = Vec::new();
    let mut replaced = vec![false; q.set.len()];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let name = decoded_name(pair);
        if q.delete.contains(&name) {
            continue;
        }
        match q.set.iter().position(|(n, _)| *n == name) {
            Some(i) if replaced[i] => {}
            Some(i) => {
                replaced[i] = true;
                pairs.push(encode(&q.set[i]));
            }
            None => pairs.push(pair.to_owned()),
        }
    }
    let missing = q.set.iter().zip(&replaced).filter(|(_, r)| !**r);
    pairs.extend(missing.map(|(pair, _)| encode(pair)));
    pairs.extend(q.add.iter().map(encode));
    pairs.join("&")
}

fn decoded_name(pair: &str) -> String {
    let name = pair.split_once('=').map_or(pair, |(n, _)| n);
    form_urlencoded::parse(format!("{name}=").as_bytes())
        .next()
        .map_or_else(|| name.to_owned(), |(n, _)| n.into_owned())
}

fn encode((name, value): &(String, String)) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair(name, value)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_characters_are_refused_in_either_case_and_a_broken_escape_too() {
        let denied = [b'/', b'\\'];
        assert!(encoded_refused("/a%2Fb", &denied));
        assert!(encoded_refused("/a%2fb", &denied));
        assert!(encoded_refused("/a%5c", &denied));
        assert!(encoded_refused("/a%2", &denied));
        assert!(!encoded_refused("/a%20b/%3B", &denied));
        assert!(!encoded_refused("/plain/path", &denied));
        // `%25` is a percent, not the start of the `%2F` after it.
        assert!(!encoded_refused("/a%252F", &denied));
        assert!(encoded_refused("/a%252F", b"%"));
    }

    #[test]
    fn a_trailing_slash_is_added_or_removed_but_never_on_the_root() {
        assert_eq!(trailing_slash("/about", true).as_deref(), Some("/about/"));
        assert_eq!(trailing_slash("/about/", true), None);
        assert_eq!(trailing_slash("/", true), None);
        assert_eq!(trailing_slash("/about/", false).as_deref(), Some("/about"));
        assert_eq!(trailing_slash("/about", false), None);
        assert_eq!(trailing_slash("/", false), None);
        assert_eq!(trailing_slash("/about//", false), None);
    }

    fn spec(delete: &[&str], set: &[(&str, &str)], add: &[(&str, &str)]) -> QueryParameters {
        let owned = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        QueryParameters {
            delete: delete.iter().map(|d| (*d).to_owned()).collect(),
            set: owned(set),
            add: owned(add),
        }
    }

    #[test]
    fn query_parameters_are_deleted_set_and_added_as_traefiks_documentation_shows() {
        let q = spec(&["fbclid"], &[("c", "6")], &[("d", "4")]);
        assert_eq!(rewrite_query("a=1&c=3&fbclid=abc", &q), "a=1&c=6&d=4");
        assert_eq!(rewrite_query("", &q), "c=6&d=4");
        // Set replaces every value where the first was; add keeps what is there.
        let q = spec(&[], &[("a", "5")], &[("a", "10")]);
        assert_eq!(rewrite_query("x=0&a=1&a=2", &q), "x=0&a=5&a=10");
        // Names match decoded; untouched pairs keep their encoding.
        let q = spec(&["fbclid"], &[], &[("n", "a b&c")]);
        assert_eq!(
            rewrite_query("f%62clid=1&k=%7E%20", &q),
            "k=%7E%20&n=a+b%26c"
        );
    }
}
