//! TLSOptions read into the policies the TLS layer serves hosts with: versions, cipher suites,
//! groups, client certificates, ALPN, strict SNI. Each is checked whether or not a route names
//! it; one named `default` serves every host no route gives another.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::middleware::secret_value;
use super::{Cx, oldest_first};
use crate::crd::{ClientAuth, TLSOption};
use crate::diagnostics::Diagnostic;
use crate::model::TlsPolicy;
use crate::provider::Store;

/// Every TLSOption by (namespace, name): its policy, or why it cannot be served.
pub(super) type Policies = HashMap<(String, String), Result<Arc<TlsPolicy>, String>>;

/// Checks every TLSOption, naming what is wrong or deprecated, and sets the default one.
pub(super) fn compile_all(cx: &mut Cx<'_>) -> Policies {
    let mut options: Vec<&TLSOption> = cx.store.tls_options().collect();
    options.sort_by_key(|o| oldest_first(&o.metadata));
    let mut policies = Policies::new();
    for option in options {
        let ns = option
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = option.metadata.name.clone().unwrap_or_default();
        let subject = format!("TLSOption {ns}/{name}");
        let compiled = compile(cx.store, &ns, &name, option);
        match &compiled {
            Ok((_, warnings)) => {
                for w in warnings {
                    cx.out
                        .diagnostics
                        .push(Diagnostic::warning(&subject, w.clone()));
                }
            }
            Err(why) => cx.out.diagnostics.push(Diagnostic::error(
                &subject,
                format!("{why}; routes naming it answer 503"),
            )),
        }
        let compiled = compiled.map(|(p, _)| Arc::new(p));
        if name == "default" {
            match (&compiled, &cx.out.config.default_tls_policy) {
                (Ok(p), None) => cx.out.config.default_tls_policy = Some(Arc::clone(p)),
                (Ok(_), Some(first)) => cx.out.diagnostics.push(Diagnostic::warning(
                    &subject,
                    format!("ignored as the default: TLSOption {} is older", first.name),
                )),
                (Err(_), _) => {}
            }
        }
        policies.insert((ns, name), compiled);
    }
    policies
}

/// The policy of TLSOption `ns/name`, and warnings for what it sets that changes nothing.
fn compile(
    store: &Store,
    ns: &str,
    name: &str,
    option: &TLSOption,
) -> Result<(TlsPolicy, Vec<String>), String> {
    let spec = &option.spec;
    let mut warnings = Vec::new();
    let version = |field: &str, v: Option<&str>, default: u8| match v {
        None => Ok(default),
        Some("VersionTLS12") => Ok(2),
        Some("VersionTLS13") => Ok(3),
        Some(old @ ("VersionTLS10" | "VersionTLS11")) => Err(format!(
            "spec.{field} {old:?}: fjord speaks TLS 1.2 and 1.3 only (1.0 and 1.1 are broken and retired)"
        )),
        Some(other) => Err(format!(
            "spec.{field} {other:?} is not VersionTLS12 or VersionTLS13"
        )),
    };
    let min = version("minVersion", spec.min_version.as_deref(), 2)?;
    let max = version("maxVersion", spec.max_version.as_deref(), 3)?;
    if min > max {
        return Err("spec.minVersion is above spec.maxVersion".into());
    }
    let mut cipher_suites = Vec::new();
    for suite in &spec.cipher_suites {
        if crate::tls::cipher_suite(suite).is_some() {
            cipher_suites.push(suite.clone());
        } else if crate::tls::RETIRED_CIPHER_SUITES.contains(&suite.as_str()) {
            warnings.push(format!(
                "spec.cipherSuites: {suite:?} is not offered (CBC, RSA key exchange, RC4 and 3DES are not); the others listed are"
            ));
        } else {
            return Err(format!(
                "spec.cipherSuites: {suite:?} is not one fjord offers (ECDHE with AES-GCM or ChaCha20-Poly1305, and TLS 1.3's)"
            ));
        }
    }
    if cipher_suites.is_empty() && !spec.cipher_suites.is_empty() {
        return Err(
            "spec.cipherSuites: none of them is offered (CBC, RSA key exchange, RC4 and 3DES are not); list ECDHE suites with AES-GCM or ChaCha20-Poly1305"
                .into(),
        );
    }
    for c in &spec.curve_preferences {
        if crate::tls::curve(c).is_none() {
            return Err(format!(
                "spec.curvePreferences: {c:?} is not X25519, CurveP256, CurveP384 or X25519MLKEM768"
            ));
        }
    }
    let (client_cas, client_cert_required) = match &spec.client_auth {
        None => (Vec::new(), false),
        Some(auth) => client_auth(store, ns, auth)?,
    };
    if let Some(p) = spec
        .alpn_protocols
        .iter()
        .find(|p| p.is_empty() || p.len() > 255)
    {
        return Err(format!("spec.alpnProtocols: {p:?} is not a protocol name"));
    }
    if spec.prefer_server_cipher_suites.is_some() {
        warnings.push(
            "spec.preferServerCipherSuites is deprecated and changes nothing: fjord always prefers its own order"
                .into(),
        );
    }
    Ok((
        TlsPolicy {
            name: format!("{ns}/{name}"),
            tls12: min <= 2,
            tls13: max >= 3,
            cipher_suites,
            curves: spec.curve_preferences.clone(),
            client_cas,
            client_cert_required,
            sni_strict: spec.sni_strict.unwrap_or(false),
            alpn: spec.alpn_protocols.clone(),
            session_tickets: !spec.disable_session_tickets.unwrap_or(false),
        },
        warnings,
    ))
}

/// The CAs (DER) client certificates must chain to, and whether one is required.
fn client_auth(store: &Store, ns: &str, auth: &ClientAuth) -> Result<(Vec<Vec<u8>>, bool), String> {
    let required = match auth.client_auth_type.as_deref() {
        None | Some("NoClientCert") => return Ok((Vec::new(), false)),
        Some("VerifyClientCertIfGiven") => false,
        Some("RequireAndVerifyClientCert") => true,
        Some(unchecked @ ("RequestClientCert" | "RequireAnyClientCert")) => {
            return Err(format!(
                "spec.clientAuth.clientAuthType {unchecked:?} takes a certificate without checking it; fjord checks the certificates it asks for: use VerifyClientCertIfGiven or RequireAndVerifyClientCert with secretNames"
            ));
        }
        Some(other) => {
            return Err(format!(
                "spec.clientAuth.clientAuthType {other:?} is not NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ));
        }
    };
    if auth.secret_names.is_empty() {
        return Err("spec.clientAuth.secretNames is empty: client certificates need CAs to be checked against".into());
    }
    let mut cas = Vec::new();
    for secret in &auth.secret_names {
        let pem = ["tls.ca", "ca.crt", "ca"]
            .iter()
            .find_map(|key| secret_value(store, ns, secret, key).ok())
            .ok_or_else(|| {
                format!("spec.clientAuth.secretNames: Secret {ns}/{secret} not found, or it has no tls.ca, ca.crt or ca key")
            })?;
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
        match certs {
            Ok(certs) if !certs.is_empty() => {
                cas.extend(certs.into_iter().map(|c| c.as_ref().to_vec()));
            }
            _ => {
                return Err(format!(
                    "spec.clientAuth.secretNames: Secret {ns}/{secret} holds no PEM certificate"
                ));
            }
        }
    }
    Ok((cas, required))
}
