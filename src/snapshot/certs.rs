//! The certificates of a snapshot, by SNI name: from Secrets, compiled once per snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::model::TlsCert;

/// Certificates from Secrets by SNI name, compiled once per snapshot.
#[derive(Debug, Default)]
pub struct CertTable {
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
}

impl CertTable {
    /// The first certificate listed for a name wins (translation lists the oldest Ingress first).
    pub fn new(certs: &[TlsCert]) -> Self {
        let mut table = Self::default();
        for cert in certs {
            for name in &cert.names {
                let name = name.to_ascii_lowercase();
                let (map, key) = match name.strip_prefix("*.") {
                    Some(rest) => (&mut table.wildcard, rest.to_owned()),
                    None => (&mut table.exact, name),
                };
                map.entry(key.into_boxed_str())
                    .or_insert_with(|| Arc::clone(&cert.key));
            }
        }
        table
    }

    pub(crate) fn exact(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        self.exact.get(name)
    }

    pub(crate) fn wildcard(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let (_, rest) = name.split_once('.')?;
        self.wildcard.get(rest)
    }
}
