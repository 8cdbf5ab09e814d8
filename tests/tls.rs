//! TLS termination on real sockets: SNI exact / wildcard / default, h2 by ALPN, old protocol
//! versions refused, the handshake timeout, Secret rotation under load, a broken Secret keeping
//! its last good certificate, and the plain-HTTP redirect.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::tls::{Ca, client_config, https_get, insecure_client_config};
use support::{Echo, Fjord, Manifests, get, ingress, service};

const CONFIG: &str = "entryPoints:\n  web:\n    address: \"127.0.0.1:0\"\n    http:\n      redirections:\n        entryPoint: {to: websecure}\n  websecure:\n    address: \"127.0.0.1:0\"\n    http:\n      tls: {handshakeTimeout: 500ms}\nadmin:\n  address: \"127.0.0.1:0\"\n";

/// An Ingress for `hosts` with `spec.tls` entries `(secret, hosts)`.
fn tls_ingress(name: &str, hosts: &[&str], tls: &[(&str, &[&str])]) -> String {
    let rules: Vec<_> = hosts.iter().map(|h| (*h, "Prefix", "/", "app")).collect();
    let mut out = ingress(name, &rules);
    out = out.replace("  rules:\n", &{
        let mut t = String::from("  tls:\n");
        for (secret, names) in tls {
            t.push_str(&format!(
                "  - secretName: {secret}\n    hosts: [{}]\n",
                names.join(", ")
            ));
        }
        t + "  rules:\n"
    });
    out
}

struct Setup {
    m: Manifests,
    ca: Ca,
    fjord: Fjord,
    _app: Echo,
}

async fn setup() -> Setup {
    setup_with(CONFIG).await
}

/// [`setup`] under another static configuration.
async fn setup_with(config: &str) -> Setup {
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let ca = Ca::new();
    let m = Manifests::new();
    m.write("app.yaml", &service("app", app.addr));
    m.write("shop-cert.yaml", &ca.secret("shop-cert", &["shop.test"]));
    m.write("wild-cert.yaml", &ca.secret("wild-cert", &["*.apps.test"]));
    m.write(
        "ingress.yaml",
        &tls_ingress(
            "web",
            &["shop.test", "x.apps.test", "plain.test"],
            &[
                ("shop-cert", &["shop.test"]),
                ("wild-cert", &["\"*.apps.test\""]),
            ],
        ),
    );
    let fjord = Fjord::start(m.path(), config);
    Setup {
        m,
        ca,
        fjord,
        _app: app,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_exact_wildcard_or_default_and_alpn_offers_h2() {
    let s = setup().await;
    let websecure = s.fjord.addrs["websecure"];
    let trust = client_config(&[s.ca.der()], &[b"http/1.1"]);

    let seen = https_get(websecure, "shop.test", Arc::clone(&trust), "/p")
        .await
        .unwrap();
    assert_eq!(seen.names, ["shop.test"]);
    assert_eq!(seen.reply.status, 200);
    assert_eq!(
        seen.suite,
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
        "the server's order wins over the client's, which lists AES-256 first"
    );
    // A client without AES hardware offers ChaCha20 alone, and gets it.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.ca.der()).unwrap();
    let chacha = rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            rustls::crypto::aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let chacha = rustls::ClientConfig::builder_with_provider(Arc::new(chacha))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let seen = https_get(websecure, "shop.test", Arc::new(chacha), "/p")
        .await
        .unwrap();
    assert_eq!(
        (seen.reply.status.as_u16(), seen.suite),
        (
            200,
            Some(rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256)
        )
    );
    let echo = seen.reply.json();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    assert_eq!(echo["host"], "shop.test");

    let seen = https_get(websecure, "x.apps.test", Arc::clone(&trust), "/")
        .await
        .unwrap();
    assert_eq!(seen.names, ["*.apps.test"]);
    assert_eq!(seen.reply.backend().as_deref(), Some("app"));

    let seen = https_get(websecure, "nothing.test", insecure_client_config(&[]), "/")
        .await
        .unwrap();
    assert_eq!(
        seen.names,
        ["default.fjord.invalid"],
        "unknown names get the default certificate"
    );
    assert_eq!(seen.reply.status, 404);

    let seen = https_get(
        websecure,
        "shop.test",
        client_config(&[s.ca.der()], &[b"h2", b"http/1.1"]),
        "/h2",
    )
    .await
    .unwrap();
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(
        (
            seen.reply.status.as_u16(),
            seen.reply.json()["path"].as_str()
        ),
        (200, Some("/h2"))
    );

    // A returning client resumes its session instead of a full handshake.
    let resuming = support::tls::resuming_client_config(&[s.ca.der()], &[b"http/1.1"]);
    let first = https_get(websecure, "shop.test", Arc::clone(&resuming), "/")
        .await
        .unwrap();
    let second = https_get(websecure, "shop.test", resuming, "/")
        .await
        .unwrap();
    assert!(!first.resumed && second.resumed, "session resumption");
    assert_eq!(second.reply.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn old_protocol_versions_are_refused_and_a_silent_client_is_dropped() {
    let s = setup().await;
    let websecure = s.fjord.addrs["websecure"];
    // A ClientHello offering at most TLS 1.1 (legacy_version 0x0302, no supported_versions).
    let mut hello = vec![0x03, 0x02];
    hello.extend([7u8; 32]); // random
    hello.push(0); // session id
    hello.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    hello.extend([0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, (hello.len() >> 8) as u8, hello.len() as u8];
    handshake.extend(&hello);
    let mut record = vec![
        0x16,
        0x03,
        0x01,
        (handshake.len() >> 8) as u8,
        handshake.len() as u8,
    ];
    record.extend(&handshake);
    let mut stream = TcpStream::connect(websecure).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(&record).unwrap();
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(answer[0], 0x15, "an alert, not a ServerHello: {answer:?}");
    assert_eq!(answer[5], 2, "a fatal alert: {answer:?}");

    // A client that connects and never speaks is dropped after the handshake timeout.
    let mut silent = TcpStream::connect(websecure).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let started = Instant::now();
    let read = silent.read(&mut [0u8; 16]);
    assert!(matches!(read, Ok(0)), "closed by fjord: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(7));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_applies_to_new_handshakes_without_failures_and_a_broken_one_is_ignored() {
    let s = setup().await;
    let websecure = s.fjord.addrs["websecure"];
    let trust = client_config(&[s.ca.der()], &[b"http/1.1"]);
    let first = https_get(websecure, "shop.test", Arc::clone(&trust), "/")
        .await
        .unwrap()
        .serial;

    // New handshakes in a loop while the Secret is replaced.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loop_trust = Arc::clone(&trust);
    let flag = Arc::clone(&stop);
    let load = tokio::spawn(async move {
        let mut failures = Vec::new();
        let mut count = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            match https_get(websecure, "shop.test", Arc::clone(&loop_trust), "/").await {
                Ok(seen) if seen.reply.status == 200 => count += 1,
                Ok(seen) => failures.push(format!("status {}", seen.reply.status)),
                Err(e) => failures.push(e),
            }
        }
        (count, failures)
    });
    s.m.write("shop-cert.yaml", &s.ca.secret("shop-cert", &["shop.test"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let rotated = loop {
        let serial = https_get(websecure, "shop.test", Arc::clone(&trust), "/")
            .await
            .unwrap()
            .serial;
        if serial != first {
            break serial;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (count, failures) = load.await.unwrap();
    assert!(failures.is_empty(), "failed during rotation: {failures:?}");
    assert!(count > 0);

    // A broken Secret: diagnostic, and the last good certificate stays.
    s.m.write(
        "shop-cert.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: shop-cert}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: garbage\n  tls.key: garbage\n",
    );
    s.fjord
        .wait_for_log("still serving its last good certificate");
    let serial = https_get(websecure, "shop.test", Arc::clone(&trust), "/")
        .await
        .unwrap()
        .serial;
    assert_eq!(serial, rotated);
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_redirects_only_hosts_with_tls() {
    let s = setup().await;
    let port = s.fjord.addrs["websecure"].port();
    let reply = get(s.fjord.web, "shop.test", "/cart?id=1").await;
    assert_eq!(reply.status, 308);
    assert_eq!(
        reply.headers["location"],
        format!("https://shop.test:{port}/cart?id=1")
    );
    let reply = get(s.fjord.web, "x.apps.test", "/").await;
    assert_eq!(
        reply.headers["location"],
        format!("https://x.apps.test:{port}/")
    );
    let reply = get(s.fjord.web, "plain.test", "/").await;
    assert_eq!(
        (reply.status.as_u16(), reply.backend().as_deref()),
        (200, Some("app"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_name_the_port_clients_reach_not_the_listening_one() {
    // As deploy/ runs it: websecure listens on one port and is published on 443; another
    // entry point names its port outright.
    let config = "entryPoints:\n  web:\n    address: \"127.0.0.1:0\"\n    http:\n      redirections:\n        entryPoint: {to: websecure}\n  alt:\n    address: \"127.0.0.1:0\"\n    http:\n      redirections:\n        entryPoint: {to: \":4443\", permanent: false}\n  websecure:\n    address: \"127.0.0.1:0\"\n    exposedPort: 443\n    http:\n      tls: {}\nadmin:\n  address: \"127.0.0.1:0\"\n";
    let s = setup_with(config).await;
    let fjord = &s.fjord;
    let reply = get(fjord.web, "shop.test", "/cart?id=1").await;
    assert_eq!(reply.status, 308);
    assert_eq!(reply.headers["location"], "https://shop.test/cart?id=1");
    let reply = get(fjord.addrs["alt"], "shop.test", "/x").await;
    assert_eq!(reply.status, 307);
    assert_eq!(reply.headers["location"], "https://shop.test:4443/x");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ingress_route_serves_its_tls_secret() {
    let s = setup().await;
    s.m.write("api-cert.yaml", &s.ca.secret("api-cert", &["api.test"]));
    s.m.write(
        "api.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: api}\nspec:\n  entryPoints: [websecure]\n  routes:\n  - match: Host(`api.test`)\n    services: [{name: app, port: 80}]\n  tls: {secretName: api-cert}\n",
    );
    let websecure = s.fjord.addrs["websecure"];
    let trust = client_config(&[s.ca.der()], &[b"http/1.1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        if let Ok(seen) = https_get(websecure, "api.test", Arc::clone(&trust), "/").await {
            break seen;
        }
        assert!(Instant::now() < deadline, "never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (seen.names.as_slice(), seen.reply.status.as_u16()),
        (&["api.test".to_owned()][..], 200)
    );
    // Its hosts have TLS now, so plain HTTP is redirected to it.
    let plain = get(s.fjord.web, "api.test", "/x").await;
    assert_eq!(plain.status, 308);
    assert_eq!(
        plain.headers["location"],
        format!("https://api.test:{}/x", websecure.port())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_tls_stores_certificate_answers_unknown_names_and_others_are_refused() {
    let s = setup().await;
    let websecure = s.fjord.addrs["websecure"];
    let store = |name: &str, spec: &str| {
        format!(
            "apiVersion: fjord.dev/v1alpha1\nkind: TLSStore\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n"
        )
    };
    s.m.write(
        "fallback-cert.yaml",
        &s.ca.secret("fallback-cert", &["fallback.test"]),
    );
    s.m.write(
        "extra-cert.yaml",
        &s.ca.secret("extra-cert", &["extra.test"]),
    );
    s.m.write(
        "store.yaml",
        &store(
            "default",
            "{defaultCertificate: {secretName: fallback-cert}, certificates: [{secretName: extra-cert}]}",
        ),
    );
    s.m.write(
        "other-store.yaml",
        &store("other", "{defaultCertificate: {secretName: extra-cert}}"),
    );
    let names = |sni: &'static str| async move {
        https_get(websecure, sni, insecure_client_config(&[]), "/")
            .await
            .unwrap()
            .names
    };
    // The reload is picked up: poll until the store's certificate answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    while names("nothing.test").await != ["fallback.test"] {
        assert!(Instant::now() < deadline, "the TLSStore never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its certificates are served by their names; a route's own still wins its name.
    assert_eq!(names("extra.test").await, ["extra.test"]);
    assert_eq!(names("shop.test").await, ["shop.test"]);
    let line = s.fjord.wait_for_log("TLSStore default/other");
    assert!(
        line.contains("only the TLSStore named default is read"),
        "{line}"
    );
    // Without the store, the static configuration's default again.
    s.m.remove("store.yaml");
    while names("nothing.test").await != ["default.fjord.invalid"] {
        assert!(Instant::now() < deadline, "the default never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
