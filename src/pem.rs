//! Certificates and keys from PEM: a chain and its key read and checked to belong together,
//! and the leaf's names and expiry. Shared by Secrets, the default certificate and ACME.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A parsed certificate and key.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub key: Arc<CertifiedKey>,
    /// DNS names in the certificate's subjectAltName.
    pub dns_names: Vec<String>,
    pub not_after: i64,
}

/// Parses a PEM chain and key and checks they belong together.
pub(crate) fn parse_pem(chain: &[u8], key: &[u8]) -> Result<Parsed, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt is not a PEM certificate chain: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err("tls.crt holds no certificate".into());
    };
    let (dns_names, not_after) = leaf_facts(leaf)?;
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("tls.key is not a PEM private key: {e}"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("tls.crt and tls.key do not form a usable pair: {e}"))?;
    Ok(Parsed {
        key: Arc::new(key),
        dns_names,
        not_after,
    })
}

/// The leaf's DNS names and expiry.
pub(crate) fn leaf_facts(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("tls.crt leaf certificate does not parse: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(
            names
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    #[test]
    fn parses_a_pair_and_reads_its_names() {
        let (crt, key) = self_signed(&["a.example.com", "*.b.example.com"]);
        let parsed = parse_pem(crt.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(parsed.dns_names, ["a.example.com", "*.b.example.com"]);
        assert!(parsed.not_after > 0);
    }

    #[test]
    fn sec1_and_pkcs1_keys_are_read_too() {
        let data = |f: &str| {
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/").to_owned() + f)
                .unwrap()
        };
        let ec = parse_pem(&data("ec.crt"), &data("ec.key")).unwrap();
        assert_eq!(ec.dns_names, ["sec1.test"]);
        let rsa = parse_pem(&data("rsa.crt"), &data("rsa.key")).unwrap();
        assert_eq!(rsa.dns_names, ["pkcs1.test"]);
    }

    #[test]
    fn mismatched_or_garbage_input_is_named() {
        let (crt, _) = self_signed(&["a.example.com"]);
        let (_, other_key) = self_signed(&["b.example.com"]);
        let e = parse_pem(crt.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(e.contains("do not form a usable pair"), "{e}");
        let e = parse_pem(b"nope", other_key.as_bytes()).unwrap_err();
        assert!(e.contains("tls.crt holds no certificate"), "{e}");
        let e = parse_pem(crt.as_bytes(), b"nope").unwrap_err();
        assert!(e.contains("tls.key is not a PEM private key"), "{e}");
    }
}
