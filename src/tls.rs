//! TLS termination: the rustls server configuration (TLS 1.2 and 1.3, Mozilla "intermediate"
//! suites, session resumption, ALPN `h2`/`http/1.1`) and the SNI resolver: exact name, then a
//! certificate obtained through ACME, then wildcard, then the default certificate.

use std::sync::Arc;

use anyhow::Context as _;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;

use crate::acme::Challenges;
use crate::acme::challenge::ACME_TLS_ALPN;
use crate::config::Tls;
use crate::pem::parse_pem;
use crate::snapshot::Live;

/// Picks the certificate for each handshake from the live snapshot and the ACME state, so a
/// changed Secret or a renewed certificate applies to the next handshake.
#[derive(Debug)]
pub(crate) struct Resolver {
    live: Arc<Live>,
    acme: Arc<Challenges>,
    default: Arc<CertifiedKey>,
}

impl Resolver {
    pub(crate) fn new(live: Arc<Live>, acme: Arc<Challenges>, default: Arc<CertifiedKey>) -> Self {
        Self {
            live,
            acme,
            default,
        }
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands over the SNI name lowercased.
        let name = hello.server_name();
        let challenge = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if challenge {
            // Only the validation certificate answers a TLS-ALPN-01 probe; without one, fail.
            return self.acme.tls_alpn01(name?);
        }
        let Some(name) = name else {
            return Some(Arc::clone(&self.default));
        };
        let snapshot = self.live.load();
        let certs = snapshot.certificates();
        certs
            .exact(name)
            .cloned()
            .or_else(|| self.acme.issued(name))
            .or_else(|| certs.wildcard(name).cloned())
            .or_else(|| Some(Arc::clone(&self.default)))
    }
}

/// The server configuration shared by every TLS entry point.
pub(crate) fn server_config(resolver: Arc<Resolver>) -> anyhow::Result<Arc<ServerConfig>> {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    // Mozilla "intermediate" (ECDHE with AES-GCM or ChaCha20-Poly1305), in the server's order
    // rather than the client's, AES-128-GCM first as Go's TLS does: its SHA-256 key schedule
    // runs on the CPU's SHA extensions, where AES-256-GCM's SHA-384 does not, and HKDF with
    // SHA-384 was a sixth of the CPU of a handshake.
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::aws_lc_rs::default_provider()
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(16 * 1024);
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().context("TLS session tickets")?;
    Ok(Arc::new(config))
}

/// The certificate served when no other matches: the configured one, or a self-signed one
/// made at start.
pub(crate) fn default_certificate(config: &Tls) -> anyhow::Result<Arc<CertifiedKey>> {
    if let Some(files) = &config.default_certificate {
        let chain = std::fs::read(&files.cert_file).with_context(|| {
            format!(
                "tls.defaultCertificate.certFile {}",
                files.cert_file.display()
            )
        })?;
        let key = std::fs::read(&files.key_file).with_context(|| {
            format!(
                "tls.defaultCertificate.keyFile {}",
                files.key_file.display()
            )
        })?;
        let parsed =
            parse_pem(&chain, &key).map_err(|e| anyhow::anyhow!("tls.defaultCertificate: {e}"))?;
        return Ok(parsed.key);
    }
    let generated = rcgen::generate_simple_self_signed(vec!["default.fjord.invalid".to_owned()])
        .context("generating the default certificate")?;
    let parsed = parse_pem(
        generated.cert.pem().as_bytes(),
        generated.signing_key.serialize_pem().as_bytes(),
    )
    .map_err(|e| anyhow::anyhow!("the generated default certificate: {e}"))?;
    Ok(parsed.key)
}
