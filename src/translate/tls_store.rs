//! The TLSStore named `default`, as Traefik reads it: its default certificate answers a
//! handshake whose name no other certificate has, and its certificates are served by the
//! names they hold.

use super::Cx;
use super::tls::certificate;
use crate::diagnostics::Diagnostic;

/// Reads the TLSStores, oldest first: the first named `default` is the one.
pub(super) fn translate_all(cx: &mut Cx<'_>) {
    let mut stores: Vec<_> = cx.store.tls_stores().cloned().collect();
    stores.sort_by(|a, b| super::oldest_first(&a.metadata).cmp(&super::oldest_first(&b.metadata)));
    let mut read: Option<String> = None;
    for store in stores {
        let ns = store.metadata.namespace.as_deref().unwrap_or("default");
        let name = store.metadata.name.as_deref().unwrap_or_default();
        let subject = format!("TLSStore {ns}/{name}");
        let refused = if name != "default" {
            Some("only the TLSStore named default is read (as in Traefik); rename it, or move its certificates there".to_owned())
        } else if let Some(first) = &read {
            Some(format!(
                "TLSStore {first} is older and is the one read; remove one"
            ))
        } else if store.spec.default_generated_cert.is_some() {
            Some("spec.defaultGeneratedCert: fjord does not obtain a default certificate through ACME; give spec.defaultCertificate".to_owned())
        } else {
            None
        };
        if let Some(why) = refused {
            cx.out.diagnostics.push(Diagnostic::error(&subject, why));
            continue;
        }
        read = Some(format!("{ns}/{name}"));
        for (i, c) in store.spec.certificates.iter().enumerate() {
            let field = format!("spec.certificates[{i}].secretName");
            if let Some(cert) = certificate(cx, &subject, ns, &c.secret_name, &field) {
                cx.out.config.certificates.push(cert);
            }
        }
        if let Some(c) = &store.spec.default_certificate {
            let field = "spec.defaultCertificate.secretName";
            cx.out.config.default_certificate =
                certificate(cx, &subject, ns, &c.secret_name, field);
        }
    }
}
