//! TLS from Ingresses and IngressRoutes: certificates from `kubernetes.io/tls` Secrets named in
//! `tls`, and the names to obtain through ACME for those that ask a certificate resolver.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;

use super::{Cx, ingress};
use crate::diagnostics::Diagnostic;
use crate::model::{AcmeRequest, TlsCert};
use crate::pem::{Parsed, parse_pem};
use crate::provider::ObjectKey;

/// Annotation naming the ACME certificate resolver for an Ingress's `spec.tls` hosts.
pub const CERT_RESOLVER_ANNOTATION: &str = "fjord.dev/cert-resolver";
/// cert-manager's convention: `"true"` asks for the `default` resolver.
pub const TLS_ACME_ANNOTATION: &str = "kubernetes.io/tls-acme";

/// Reads a TLS Secret's `tls.crt` (PEM chain) and `tls.key` (PKCS#8, PKCS#1 or SEC1 PEM).
pub fn parse_secret(secret: &Secret) -> Result<Parsed, String> {
    // `stringData` is how hand-written manifests carry PEM; the API server would fold it into
    // `data`, which wins where both have a key.
    let data = secret.data.as_ref();
    let strings = secret.string_data.as_ref();
    let field = |k: &str| {
        data.and_then(|d| d.get(k))
            .map(|b| b.0.as_slice())
            .or_else(|| {
                strings
                    .and_then(|s| s.get(k))
                    .map(std::string::String::as_bytes)
            })
    };
    let (Some(crt), Some(key)) = (field("tls.crt"), field("tls.key")) else {
        return Err("data must have tls.crt and tls.key".into());
    };
    parse_pem(crt, key)
}

/// The ACME resolver an Ingress asks for by annotation.
pub(super) fn ingress_resolver(ing: &Ingress) -> Option<&str> {
    let annotations = ing.metadata.annotations.as_ref();
    let annotation = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
    match (
        annotation(CERT_RESOLVER_ANNOTATION),
        annotation(TLS_ACME_ANNOTATION),
    ) {
        (Some(r), _) => Some(r),
        (None, Some("true")) => Some("default"),
        _ => None,
    }
}

/// The certificates or ACME names a `tls` section asks for. A TLS Secret that does not parse
/// is served as its last good version, when there is one.
pub(super) fn tls_of(
    cx: &mut Cx<'_>,
    subject: &str,
    ns: &str,
    resolver: Option<&str>,
    rules: &[ingress::TlsRule],
    redirect: bool,
) {
    if let Some(r) = resolver
        && !cx.options.resolvers.contains(r)
    {
        cx.out.diagnostics.push(Diagnostic::error(
            subject,
            format!("certificate resolver {r:?} is not configured (certificatesResolvers); no certificate is obtained"),
        ));
    }
    for rule in rules {
        // Hosts plain HTTP is redirected for, unless the object opts out.
        if redirect {
            cx.out.config.tls_hosts.extend(rule.hosts.iter().cloned());
        }
        if let Some(resolver) = resolver.filter(|r| cx.options.resolvers.contains(*r)) {
            let (wild, names): (Vec<_>, Vec<_>) = rule
                .hosts
                .iter()
                .cloned()
                .partition(|h| h.starts_with("*."));
            for w in wild {
                cx.out.diagnostics.push(Diagnostic::error(
                    subject,
                    format!("{}.hosts {w:?}: a wildcard needs the DNS-01 challenge, which fjord does not do; use a Secret", rule.field),
                ));
            }
            let mut names = names;
            names.sort();
            names.dedup();
            if !names.is_empty() {
                let request = AcmeRequest {
                    resolver: resolver.to_owned(),
                    names,
                };
                cx.out
                    .config
                    .acme_requested_by
                    .entry(request.clone())
                    .or_default()
                    .insert(subject.to_owned());
                cx.out.config.acme.push(request);
            }
            continue;
        }
        let Some(secret_name) = &rule.secret_name else {
            if resolver.is_none() {
                cx.out.diagnostics.push(Diagnostic::warning(
                    subject,
                    format!("{} has no secretName and no certificate resolver; the default certificate is served", rule.field),
                ));
            }
            continue;
        };
        let field = format!("{}.secretName", rule.field);
        let Some(mut cert) = certificate(cx, subject, ns, secret_name, &field) else {
            continue;
        };
        if !rule.hosts.is_empty() {
            cert.names.clone_from(&rule.hosts);
        }
        cx.out.config.certificates.push(cert);
    }
}

/// The certificate in TLS Secret `ns/name`, named by its DNS names, that `subject`'s `field`
/// names. One that is missing or does not parse is an error on `subject`, and its last good
/// version is served, when there is one.
pub(super) fn certificate(
    cx: &mut Cx<'_>,
    subject: &str,
    ns: &str,
    name: &str,
    field: &str,
) -> Option<TlsCert> {
    let id = format!("{ns}/{name}");
    let parsed = match cx.store.secret(ns, name) {
        None => Err(format!("Secret {id} not found")),
        Some(secret) => parse_secret(secret).map_err(|e| format!("Secret {id}: {e}")),
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err(why) => {
            let kept = cx
                .last
                .secret(ns, name)
                .and_then(|old| parse_secret(old).ok());
            let key = ObjectKey {
                kind: "Secret",
                namespace: Some(ns.to_owned()),
                name: name.to_owned(),
            };
            let suffix = match kept {
                Some(_) => "; still serving its last good certificate",
                None => "",
            };
            cx.reject(subject, key, vec![format!("{field}: {why}")], suffix);
            kept?
        }
    };
    Some(TlsCert {
        secret: id,
        names: parsed.dns_names,
        key: parsed.key,
        not_after: parsed.not_after,
    })
}
