//! TLSOptions on real handshakes: a host's minimum version, its client certificates (checked
//! against the CA its Secret names), its ALPN; the `default` TLSOption's strict SNI; a request
//! for a host with other TLS settings than its connection's handshake is a 421; a route naming
//! a TLSOption that is missing answers 503 rather than be served without it.

mod support;

use std::sync::Arc;

use base64::Engine as _;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::tls::{Ca, https_get, https_get_host};
use support::{Echo, Fjord, Manifests, service};

const CONFIG: &str = "entryPoints:\n  websecure:\n    address: \"127.0.0.1:0\"\n    http:\n      tls: {}\nadmin:\n  address: \"127.0.0.1:0\"\n";

fn route(name: &str, host: &str, options: &str) -> String {
    format!(
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  routes:\n  - match: Host(`{host}`)\n    services: [{{name: app, port: 80}}]\n  tls:\n    secretName: cert\n    options: {options}\n"
    )
}

fn option(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: fjord.dev/v1alpha1\nkind: TLSOption\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n"
    )
}

/// A client config trusting `ca`, speaking only `versions`, with `cert` (PEM chain and key).
fn client(
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
    cert: Option<&(String, String)>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match cert {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(chain.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_options_set_versions_client_certificates_alpn_and_strict_sni() {
    let m = Manifests::new();
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write("app.yaml", &service("app", app.addr));
    let ca = Ca::new();
    let hosts = ["modern.test", "mtls.test", "plain.test", "missing.test"];
    m.write("cert.yaml", &ca.secret("cert", &hosts));
    let clients = Ca::new();
    m.write("clients.yaml", &clients.ca_secret("client-ca"));
    m.write(
        "modern.yaml",
        &option(
            "modern",
            "{minVersion: VersionTLS13, alpnProtocols: [http/1.1]}",
        ),
    );
    m.write(
        "mtls.yaml",
        &option(
            "mtls",
            "{clientAuth: {secretNames: [client-ca], clientAuthType: RequireAndVerifyClientCert}}",
        ),
    );
    m.write("default.yaml", &option("default", "{sniStrict: true}"));
    m.write("r1.yaml", &route("modern", "modern.test", "{name: modern}"));
    m.write("r2.yaml", &route("mtls", "mtls.test", "{name: mtls}"));
    m.write(
        "r3.yaml",
        &route("missing", "missing.test", "{name: nowhere}"),
    );
    m.write(
        "r4.yaml",
        &route("plain", "plain.test", "null").replace("    options: null\n", ""),
    );
    let fjord = Fjord::start(m.path(), CONFIG);
    let web = fjord.addrs["websecure"];
    let tls12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let any: &[&rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];

    // minVersion: a TLS 1.2 client is refused for modern.test, served for plain.test.
    let old = https_get(web, "modern.test", client(&ca, tls12, None, &[]), "/").await;
    assert!(
        old.is_err(),
        "TLS 1.2 to modern.test: {:?}",
        old.map(|s| s.reply.status)
    );
    let plain = https_get(web, "plain.test", client(&ca, tls12, None, &[]), "/")
        .await
        .unwrap();
    assert_eq!(plain.reply.backend().as_deref(), Some("app"));
    // alpnProtocols: modern.test offers HTTP/1.1 only, though the client would take h2.
    let seen = https_get(
        web,
        "modern.test",
        client(&ca, any, None, &[b"h2", b"http/1.1"]),
        "/",
    )
    .await
    .unwrap();
    assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(seen.reply.backend().as_deref(), Some("app"));

    // clientAuth: no certificate, or one from another CA, fails; the CA's is served.
    let none = https_get(web, "mtls.test", client(&ca, any, None, &[]), "/").await;
    assert!(
        none.is_err(),
        "no client certificate: {:?}",
        none.map(|s| s.reply.status)
    );
    let stranger = ca.leaf(&["client.test"]);
    let wrong = https_get(
        web,
        "mtls.test",
        client(&ca, any, Some(&stranger), &[]),
        "/",
    )
    .await;
    assert!(wrong.is_err(), "a certificate of another CA");
    let member = clients.leaf(&["client.test"]);
    let good = https_get(web, "mtls.test", client(&ca, any, Some(&member), &[]), "/")
        .await
        .unwrap();
    assert_eq!(good.reply.backend().as_deref(), Some("app"));

    // A connection made for plain.test (no client certificate) cannot carry mtls.test's
    // requests: 421, as Traefik answers.
    let fronted = https_get_host(
        web,
        "plain.test",
        "mtls.test",
        client(&ca, any, None, &[]),
        "/",
    )
    .await
    .unwrap();
    assert_eq!(fronted.reply.status, 421);

    // The default TLSOption's sniStrict: a name no certificate has fails the handshake.
    let unknown = https_get(
        web,
        "nothing.test",
        support::tls::insecure_client_config(&[]),
        "/",
    )
    .await;
    assert!(
        unknown.is_err(),
        "sniStrict: {:?}",
        unknown.map(|s| s.names)
    );

    // A TLSOption that is missing: 503, never served without it.
    let missing = https_get(web, "missing.test", client(&ca, any, None, &[]), "/")
        .await
        .unwrap();
    assert_eq!(missing.reply.status, 503);
    let line = fjord.wait_for_log("IngressRoute default/missing");
    assert!(
        line.contains("TLSOption default/nowhere not found"),
        "{line}"
    );
}

#[test]
fn check_names_what_a_tls_option_cannot_be() {
    let m = Manifests::new();
    m.write("old.yaml", &option("old", "{minVersion: VersionTLS11}"));
    m.write(
        "cbc.yaml",
        &option("cbc", "{cipherSuites: [TLS_RSA_WITH_AES_128_CBC_SHA]}"),
    );
    m.write(
        "any.yaml",
        &option(
            "any",
            "{clientAuth: {clientAuthType: RequireAnyClientCert}}",
        ),
    );
    m.write(
        "nosecret.yaml",
        &option(
            "nosecret",
            "{clientAuth: {clientAuthType: RequireAndVerifyClientCert}}",
        ),
    );
    m.write(
        "deprecated.yaml",
        &option("deprecated", "{preferServerCipherSuites: true}"),
    );
    m.write(
        "mixed.yaml",
        &option(
            "mixed",
            "{cipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_256_GCM_SHA384]}",
        ),
    );
    m.write(
        "typo.yaml",
        &option("typo", "{cipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM]}"),
    );
    let (code, out) = support::check(m.path(), None);
    assert_ne!(code, 0, "{out}");
    for (subject, words) in [
        ("TLSOption default/old", "1.0 and 1.1 are broken"),
        ("TLSOption default/cbc", "none of them is offered"),
        (
            "TLSOption default/typo",
            "\"TLS_ECDHE_RSA_WITH_AES_128_GCM\" is not one fjord offers",
        ),
        (
            "TLSOption default/mixed",
            "\"TLS_RSA_WITH_AES_256_GCM_SHA384\" is not offered (CBC, RSA key exchange, RC4 and 3DES are not); the others listed are",
        ),
        ("TLSOption default/any", "without checking it"),
        ("TLSOption default/nosecret", "secretNames is empty"),
        (
            "TLSOption default/deprecated",
            "preferServerCipherSuites is deprecated",
        ),
    ] {
        support::assert_diagnostic(&out, subject, words);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pass_tls_client_cert_gives_the_backend_the_clients_certificate_and_never_a_forged_one() {
    let m = Manifests::new();
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write("app.yaml", &service("app", app.addr));
    let ca = Ca::new();
    m.write("cert.yaml", &ca.secret("cert", &["mtls.test"]));
    let clients = Ca::new();
    m.write("clients.yaml", &clients.ca_secret("client-ca"));
    m.write(
        "mtls.yaml",
        &option(
            "mtls",
            "{clientAuth: {secretNames: [client-ca], clientAuthType: VerifyClientCertIfGiven}}",
        ),
    );
    m.write(
        "pass.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {name: pass, namespace: default}\nspec:\n  passTLSClientCert:\n    pem: true\n    info:\n      notAfter: true\n      sans: true\n      serialNumber: true\n      subject: {commonName: true, country: true}\n      issuer: {commonName: true}\n",
    );
    m.write(
        "route.yaml",
        &route("mtls", "mtls.test", "{name: mtls}").replace(
            "    services:",
            "    middlewares: [{name: pass}]\n    services:",
        ),
    );
    let fjord = Fjord::start(m.path(), CONFIG);
    let web = fjord.addrs["websecure"];
    let any: &[&rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    let forged = [
        ("x-forwarded-tls-client-cert", "Zm9yZ2Vk"),
        (
            "x-forwarded-tls-client-cert-info",
            "Subject%3D%22CN%3Dadmin%22",
        ),
    ];

    // With a certificate: its DER in base64, and the chosen fields, URL-escaped.
    let member = clients.leaf(&["client.test"]);
    let seen = support::tls::https_get_with(
        web,
        ("mtls.test", "mtls.test"),
        client(&ca, any, Some(&member), &[]),
        "/",
        &forged,
    )
    .await
    .unwrap();
    assert_eq!(seen.reply.status, 200);
    let headers = &seen.reply.json()["headers"];
    let der = CertificateDer::from_pem_slice(member.0.as_bytes()).unwrap();
    assert_eq!(
        headers["x-forwarded-tls-client-cert"],
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let info = format!(
        "Subject=\"CN=rcgen self signed cert\";Issuer=\"CN=fjord test CA\";SerialNumber=\"{}\";NA=\"{}\";SAN=\"client.test\"",
        cert.serial,
        cert.validity().not_after.timestamp()
    );
    let escaped: String = form_urlencoded::byte_serialize(info.as_bytes()).collect();
    assert_eq!(
        headers["x-forwarded-tls-client-cert-info"],
        escaped.as_str()
    );

    // Without one, a client's own headers do not reach the backend.
    let seen = support::tls::https_get_with(
        web,
        ("mtls.test", "mtls.test"),
        client(&ca, any, None, &[]),
        "/",
        &forged,
    )
    .await
    .unwrap();
    assert_eq!(seen.reply.status, 200);
    let headers = &seen.reply.json()["headers"];
    assert!(
        headers.get("x-forwarded-tls-client-cert").is_none(),
        "{headers}"
    );
    assert!(
        headers.get("x-forwarded-tls-client-cert-info").is_none(),
        "{headers}"
    );
}
