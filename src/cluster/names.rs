//! Object names and label values made from free text (a resolver, a host, a replica's
//! identity): valid for the API server, and distinct when cut to length.

/// A name segment: lowercase letters, digits and `-`.
pub(crate) fn segment(text: &str) -> String {
    text.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A valid object name (DNS subdomain, at most 253 characters) for `text`.
pub(crate) fn object_name(text: &str) -> String {
    let name: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    shorten(name.trim_matches(|c: char| !c.is_ascii_alphanumeric()), 253)
}

/// A valid label value or annotation name (at most 63 characters) for `text`.
pub(crate) fn label_value(text: &str) -> String {
    let value: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    shorten(value.trim_matches(|c: char| !c.is_ascii_alphanumeric()), 63)
}

/// `text` cut to `max` characters, ending in a hash of the whole when it had to be cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    let hash = format!("{:08x}", h.finish() as u32);
    format!("{}-{hash}", &text[..max - hash.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_distinct() {
        assert_eq!(
            object_name("fjord-acme-cert.default.shop.test"),
            "fjord-acme-cert.default.shop.test"
        );
        assert_eq!(segment("Le_Prod"), "le-prod");
        let long = object_name(&format!("fjord-acme-cert.x.{}", "a".repeat(300)));
        assert_eq!(long.len(), 253);
        assert_ne!(
            long,
            object_name(&format!("fjord-acme-cert.x.{}b", "a".repeat(300)))
        );
        assert_eq!(label_value("fjord-0"), "fjord-0");
        assert!(label_value(&"p".repeat(100)).len() <= 63);
    }
}
