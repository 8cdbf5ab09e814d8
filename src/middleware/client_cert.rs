//! `passTLSClientCert`: the certificates a client presented (a TLSOption's `clientAuth`), or
//! the fields of them chosen, in the headers and format Traefik writes.

use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::CertificateDer;
use x509_parser::oid_registry;
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate, X509Name};
use x509_parser::x509::AttributeTypeAndValue;

use crate::model::middleware::{CertInfo, DnInfo, PassTlsClientCert};

static CERT: HeaderName = HeaderName::from_static("x-forwarded-tls-client-cert");
static CERT_INFO: HeaderName = HeaderName::from_static("x-forwarded-tls-client-cert-info");

/// Sets the headers for `certificates` (the client's own first). What the client sent in
/// them is removed first, certificate or not: the backend trusts these headers, so only
/// fjord writes them (Traefik leaves a client's own in place when it presented none).
pub(super) fn pass(
    spec: &PassTlsClientCert,
    certificates: &[CertificateDer<'_>],
    headers: &mut HeaderMap,
) {
    headers.remove(&CERT);
    headers.remove(&CERT_INFO);
    if certificates.is_empty() {
        return;
    }
    let joined = |each: &dyn Fn(&CertificateDer<'_>) -> String| {
        certificates.iter().map(each).collect::<Vec<_>>().join(",")
    };
    if spec.pem {
        // The PEM without its armour and line breaks: the DER in base64.
        let pem = joined(&|c| base64::engine::general_purpose::STANDARD.encode(c));
        insert(headers, &CERT, &pem);
    }
    if let Some(info) = &spec.info {
        let described = joined(&|c| describe(c, info));
        insert(headers, &CERT_INFO, &query_escape(&described));
    }
}

fn insert(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), value);
    }
}

/// `Subject="…";Issuer="…";SerialNumber="…";NB="…";NA="…";SAN="…"`, the fields chosen and
/// present, in that order; empty for a certificate that does not parse.
fn describe(der: &[u8], info: &CertInfo) -> String {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return String::new();
    };
    let mut fields = Vec::new();
    let names = [
        ("Subject", info.subject.as_ref(), cert.subject()),
        ("Issuer", info.issuer.as_ref(), cert.issuer()),
    ];
    for (field, chosen, name) in names {
        if let Some(dn) = chosen.map(|dn| distinguished(name, dn))
            && !dn.is_empty()
        {
            fields.push(format!("{field}=\"{dn}\""));
        }
    }
    if info.serial_number {
        fields.push(format!("SerialNumber=\"{}\"", cert.serial));
    }
    let validity = cert.validity();
    if info.not_before {
        fields.push(format!("NB=\"{}\"", validity.not_before.timestamp()));
    }
    if info.not_after {
        fields.push(format!("NA=\"{}\"", validity.not_after.timestamp()));
    }
    if info.sans {
        let sans = sans(&cert);
        if !sans.is_empty() {
            fields.push(format!("SAN=\"{}\"", sans.join(",")));
        }
    }
    fields.join(";")
}

/// `DC=…,C=…,ST=…,L=…,O=…,OU=…,SN=…,CN=…`, the parts chosen; a name's serial number and
/// common name are its last, as Go reads them.
fn distinguished(name: &X509Name<'_>, dn: &DnInfo) -> String {
    let mut parts = Vec::new();
    let mut add = |key: &str, values: Vec<&AttributeTypeAndValue<'_>>| {
        for value in values {
            if let Ok(v) = value.as_str()
                && !v.is_empty()
            {
                parts.push(format!("{key}={v}"));
            }
        }
    };
    let chosen = [
        (
            dn.domain_component,
            "DC",
            name.iter_by_oid(&oid_registry::OID_DOMAIN_COMPONENT)
                .collect(),
        ),
        (dn.country, "C", name.iter_country().collect()),
        (dn.province, "ST", name.iter_state_or_province().collect()),
        (dn.locality, "L", name.iter_locality().collect()),
        (dn.organization, "O", name.iter_organization().collect()),
        (
            dn.organizational_unit,
            "OU",
            name.iter_organizational_unit().collect(),
        ),
        (
            dn.serial_number,
            "SN",
            name.iter_by_oid(&oid_registry::OID_X509_SERIALNUMBER)
                .last()
                .into_iter()
                .collect(),
        ),
        (
            dn.common_name,
            "CN",
            name.iter_common_name().last().into_iter().collect(),
        ),
    ];
    for (on, key, values) in chosen {
        if on {
            add(key, values);
        }
    }
    parts.join(",")
}

/// DNS names, then e-mail addresses, IP addresses and URIs, as Go groups them.
fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    let mut found: Vec<(u8, String)> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((0, (*d).to_owned())),
            GeneralName::RFC822Name(e) => Some((1, (*e).to_owned())),
            GeneralName::IPAddress(ip) => ip_address(ip).map(|ip| (2, ip)),
            GeneralName::URI(u) => Some((3, (*u).to_owned())),
            _ => None,
        })
        .collect();
    // Stable: each group keeps the certificate's order.
    found.sort_by_key(|(group, _)| *group);
    found.into_iter().map(|(_, name)| name).collect()
}

fn ip_address(bytes: &[u8]) -> Option<String> {
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(ip.to_string())
}

/// As Go's `url.QueryEscape`, which Traefik escapes the info header with: form encoding, but
/// `*` escaped and `~` not.
fn query_escape(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('*', "%2A")
        .replace("%7E", "~")
}
