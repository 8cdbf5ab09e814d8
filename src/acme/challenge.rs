//! What the CA checks while an order is pending, and the certificates fjord has obtained: all
//! shared with the hot path (HTTP-01 answers, the SNI resolver) through concurrent maps.

use std::sync::Arc;

use dashmap::DashMap;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// ALPN protocol of the TLS-ALPN-01 challenge.
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// Path prefix of HTTP-01 challenge requests.
pub(crate) const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// Challenge answers and obtained certificates.
#[derive(Debug, Default)]
pub(crate) struct Challenges {
    /// HTTP-01: token → key authorization.
    http01: DashMap<String, String>,
    /// TLS-ALPN-01: DNS name → challenge certificate.
    tls_alpn01: DashMap<String, Arc<CertifiedKey>>,
    /// Obtained certificates by DNS name.
    issued: DashMap<String, Arc<CertifiedKey>>,
}

impl Challenges {
    /// The key authorization for an HTTP-01 request path, if it is one fjord is answering.
    pub(crate) fn http01(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        self.http01.get(token).map(|v| v.clone())
    }

    pub(crate) fn tls_alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.tls_alpn01.get(name).map(|v| Arc::clone(&v))
    }

    pub(crate) fn issued(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.issued.get(name).map(|v| Arc::clone(&v))
    }

    pub(super) fn set_http01(&self, token: &str, key_authorization: &str) {
        self.http01
            .insert(token.to_owned(), key_authorization.to_owned());
    }

    pub(super) fn clear_http01(&self, token: &str) {
        self.http01.remove(token);
    }

    /// Builds and serves the TLS-ALPN-01 certificate for `name` (RFC 8737): self-signed, with the
    /// key authorization's SHA-256 digest in the critical acmeIdentifier extension.
    pub(super) fn set_tls_alpn01(&self, name: &str, digest: &[u8]) -> Result<(), String> {
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        // `CertifiedKey::from_der` would reject the critical extension it does not know.
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::aws_lc_rs::default_provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| e.to_string())?;
        let certified = CertifiedKey::new(vec![cert.der().clone()], signing);
        self.tls_alpn01.insert(name.to_owned(), Arc::new(certified));
        Ok(())
    }

    pub(super) fn clear_tls_alpn01(&self, name: &str) {
        self.tls_alpn01.remove(name);
    }

    pub(super) fn install(&self, names: &[String], key: &Arc<CertifiedKey>) {
        for name in names {
            self.issued.insert(name.clone(), Arc::clone(key));
        }
    }

    pub(super) fn uninstall(&self, names: &[String]) {
        for name in names {
            self.issued.remove(name);
        }
    }
}
