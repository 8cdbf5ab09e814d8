//! TLS termination: the rustls server configuration (TLS 1.2 and 1.3, Mozilla "intermediate"
//! suites, session resumption, ALPN `h2`/`http/1.1`), the one a TLSOption asks for, and the
//! SNI resolver: exact name, then a certificate obtained through ACME, then wildcard, then the
//! default certificate: the TLSStore's, else the static configuration's (none with `sniStrict`).

use std::sync::Arc;

use anyhow::Context as _;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;

use crate::acme::Challenges;
use crate::acme::challenge::ACME_TLS_ALPN;
use crate::config::Tls;
use crate::model::TlsPolicy;
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
        self.pick(&hello, false)
    }
}

impl Resolver {
    /// The certificate for `hello`; with `strict`, none (a failed handshake) rather than the
    /// default one for a name no certificate has.
    fn pick(&self, hello: &ClientHello<'_>, strict: bool) -> Option<Arc<CertifiedKey>> {
        // rustls hands over the SNI name lowercased.
        let name = hello.server_name();
        let challenge = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if challenge {
            // Only the validation certificate answers a TLS-ALPN-01 probe; without one, fail.
            return self.acme.tls_alpn01(name?);
        }
        let snapshot = self.live.load();
        let default = || {
            (!strict).then(|| {
                let store = snapshot.default_certificate();
                Arc::clone(store.unwrap_or(&self.default))
            })
        };
        let Some(name) = name else {
            return default();
        };
        let certs = snapshot.certificates();
        certs
            .exact(name)
            .cloned()
            .or_else(|| self.acme.issued(name))
            .or_else(|| certs.wildcard(name).cloned())
            .or_else(default)
    }
}

/// The server configurations of the TLSOptions in force, made on first use and kept while the
/// snapshot still serves their policy.
#[derive(Debug)]
pub(crate) struct Policies {
    live: Arc<Live>,
    resolver: Arc<Resolver>,
    made: std::sync::Mutex<Vec<(Arc<TlsPolicy>, Arc<ServerConfig>)>>,
}

impl Policies {
    pub(crate) fn new(live: Arc<Live>, resolver: Arc<Resolver>) -> Self {
        Self {
            live,
            resolver,
            made: std::sync::Mutex::default(),
        }
    }

    /// Whether some host has a TLSOption: a handshake must then read the client's name first.
    pub(crate) fn any(&self) -> bool {
        self.live.load().has_tls_policies()
    }

    /// The TLSOption a handshake for `name` is served with and its configuration; `None` for
    /// fjord's own. An error (the handshake fails) when its configuration cannot be made:
    /// never fjord's own instead, which might ask for less.
    pub(crate) fn for_name(
        &self,
        name: Option<&str>,
    ) -> anyhow::Result<Option<(Arc<TlsPolicy>, Arc<ServerConfig>)>> {
        let snapshot = self.live.load();
        let name = name.unwrap_or_default().to_ascii_lowercase();
        let Some(policy) = snapshot.tls_policy(&name) else {
            return Ok(None);
        };
        let mut made = self
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, config)) = made.iter().find(|(p, _)| **p == **policy) {
            return Ok(Some((Arc::clone(policy), Arc::clone(config))));
        }
        let config = policy_config(policy, Arc::clone(&self.resolver))?;
        // Policies that changed are not asked for again: keep the list to those that may be.
        if made.len() >= 64 {
            made.clear();
        }
        made.push((Arc::clone(policy), Arc::clone(&config)));
        Ok(Some((Arc::clone(policy), config)))
    }
}

/// A TLSOption's `sniStrict`: no default certificate.
#[derive(Debug)]
struct Strict(Arc<Resolver>);

impl ResolvesServerCert for Strict {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.pick(&hello, true)
    }
}

/// fjord's own cipher suites: Mozilla "intermediate" (ECDHE with AES-GCM or
/// ChaCha20-Poly1305), in the server's order rather than the client's, AES-128-GCM first as
/// Go's TLS does: its SHA-256 key schedule runs on the CPU's SHA extensions, where
/// AES-256-GCM's SHA-384 does not, and HKDF with SHA-384 was a sixth of the CPU of a
/// handshake.
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    rustls::crypto::CryptoProvider {
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
    }
}

/// The cipher suite of IANA (and Go) name `name`, if fjord offers it.
pub(crate) fn cipher_suite(name: &str) -> Option<rustls::SupportedCipherSuite> {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    Some(match name {
        "TLS_AES_128_GCM_SHA256" => TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// Go's names of the TLS 1.2 cipher suites fjord does not offer (CBC, RSA key exchange, RC4,
/// 3DES): a TLSOption listing them is served the others it lists.
pub(crate) const RETIRED_CIPHER_SUITES: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The key exchange group of Traefik's (Go's) name `name`, if fjord offers it.
pub(crate) fn curve(name: &str) -> Option<&'static dyn rustls::crypto::SupportedKxGroup> {
    use rustls::crypto::aws_lc_rs::kx_group;
    Some(match name {
        "X25519" => kx_group::X25519,
        "CurveP256" | "secp256r1" => kx_group::SECP256R1,
        "CurveP384" | "secp384r1" => kx_group::SECP384R1,
        "X25519MLKEM768" => kx_group::X25519MLKEM768,
        _ => return None,
    })
}

/// The server configuration for hosts served with TLSOption `policy` (checked in
/// translation: a name it kept is one fjord offers).
pub(crate) fn policy_config(
    policy: &TlsPolicy,
    resolver: Arc<Resolver>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let mut provider = provider();
    if !policy.cipher_suites.is_empty() {
        let chosen: Vec<_> = policy
            .cipher_suites
            .iter()
            .filter_map(|n| cipher_suite(n))
            .collect();
        // As in Go, naming only TLS 1.2's suites leaves TLS 1.3's on.
        let names13 = chosen
            .iter()
            .any(|s| s.version() == &rustls::version::TLS13);
        let tls13 = provider
            .cipher_suites
            .iter()
            .filter(|s| !names13 && s.version() == &rustls::version::TLS13)
            .copied();
        provider.cipher_suites = tls13.chain(chosen).collect();
    }
    if !policy.curves.is_empty() {
        provider.kx_groups = policy.curves.iter().filter_map(|n| curve(n)).collect();
    }
    let provider = Arc::new(provider);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        policy.tls13.then_some(&rustls::version::TLS13),
        policy.tls12.then_some(&rustls::version::TLS12),
    ]
    .into_iter()
    .flatten()
    .collect();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .with_context(|| format!("TLSOption {}", policy.name))?;
    let builder = if policy.client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for der in &policy.client_cas {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .with_context(|| format!("TLSOption {}: a client CA", policy.name))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = if policy.client_cert_required {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        builder.with_client_cert_verifier(
            verifier
                .build()
                .with_context(|| format!("TLSOption {}: client certificates", policy.name))?,
        )
    };
    let mut config = if policy.sni_strict {
        builder.with_cert_resolver(Arc::new(Strict(resolver)))
    } else {
        builder.with_cert_resolver(resolver)
    };
    config.ignore_client_order = true;
    config.alpn_protocols = if policy.alpn.is_empty() {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        policy.alpn.iter().map(|p| p.as_bytes().to_vec()).collect()
    };
    config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    config.session_storage = ServerSessionMemoryCache::new(16 * 1024);
    if policy.session_tickets {
        config.ticketer =
            rustls::crypto::aws_lc_rs::Ticketer::new().context("TLS session tickets")?;
    } else {
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// The server configuration shared by every TLS entry point.
pub(crate) fn server_config(resolver: Arc<Resolver>) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
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
pub(crate) fn default_certificate(config: &Tls) -> anyhow::Result<crate::model::TlsCert> {
    let (from, parsed) = if let Some(files) = &config.default_certificate {
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
        ("tls.defaultCertificate", parsed)
    } else {
        let generated =
            rcgen::generate_simple_self_signed(vec!["default.fjord.invalid".to_owned()])
                .context("generating the default certificate")?;
        let parsed = parse_pem(
            generated.cert.pem().as_bytes(),
            generated.signing_key.serialize_pem().as_bytes(),
        )
        .map_err(|e| anyhow::anyhow!("the generated default certificate: {e}"))?;
        ("self-signed at start", parsed)
    };
    Ok(crate::model::TlsCert {
        secret: from.into(),
        names: parsed.dns_names,
        key: parsed.key,
        not_after: parsed.not_after,
    })
}
