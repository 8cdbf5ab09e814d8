//! Automatic HTTPS end to end against a real ACME CA (Pebble): fjord orders a certificate for an
//! Ingress that asks for one, proves control over HTTP-01 or TLS-ALPN-01 against itself, serves
//! it, reloads it from storage after a restart, renews it without a failed request, and keeps
//! serving through a CA outage.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use support::pebble::{Pebble, free_port};
use support::tls::{Seen, client_config, https_get, insecure_client_config};
use support::{Echo, Fjord, Manifests, ingress, service};

fn config(web: u16, websecure: u16, pebble: &Pebble, storage: &Path, challenge: &str) -> String {
    format!(
        r#"entryPoints:
  web: {{address: "127.0.0.1:{web}"}}
  websecure: {{address: "127.0.0.1:{websecure}", http: {{tls: {{}}}}}}
admin: {{address: "127.0.0.1:0"}}
certificatesResolvers:
  default:
    acme:
      email: ops@example.com
      caServer: "{}"
      caCertificates: ["{}"]
      storage: "{}"
      {challenge}
"#,
        pebble.directory,
        pebble.listener_ca.display(),
        storage.display(),
    )
}

const HTTP01: &str = "httpChallenge: {entryPoint: web}";
const TLS_ALPN01: &str = "tlsChallenge: {}";

async fn manifests() -> (Manifests, Echo) {
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = Manifests::new();
    m.write("app.yaml", &service("app", app.addr));
    let ing = ingress("shop", &[("shop.test", "Prefix", "/", "app")])
        .replace(
            "namespace: default}",
            "namespace: default, annotations: {kubernetes.io/tls-acme: \"true\"}}",
        )
        .replace("  rules:\n", "  tls:\n  - hosts: [shop.test]\n  rules:\n");
    m.write("shop.yaml", &ing);
    (m, app)
}

/// Polls until `shop.test` is served over HTTPS with a certificate `root` vouches for.
async fn until_trusted(fjord: &Fjord, root: &CertificateDer<'static>, within: Duration) -> Seen {
    let websecure = fjord.addrs["websecure"];
    let deadline = Instant::now() + within;
    loop {
        match https_get(
            websecure,
            "shop.test",
            client_config(std::slice::from_ref(root), &[b"http/1.1"]),
            "/",
        )
        .await
        {
            Ok(seen) => return seen,
            Err(e) => assert!(
                Instant::now() < deadline,
                "never served a trusted certificate ({e}): {:#?}",
                fjord.logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn obtains_serves_and_reloads(challenge: &str) {
    let (web, websecure) = (free_port(), free_port());
    let pebble = Pebble::start(web, websecure, None);
    let root = pebble.issuing_root().await;
    let (m, _app) = manifests().await;
    let storage = tempfile::tempdir().unwrap();
    let config = config(web, websecure, &pebble, storage.path(), challenge);

    let fjord = Fjord::start(m.path(), &config);
    let seen = until_trusted(&fjord, &root, Duration::from_secs(60)).await;
    assert_eq!(seen.names, ["shop.test"]);
    assert_eq!(
        (seen.reply.status.as_u16(), seen.reply.backend().as_deref()),
        (200, Some("app"))
    );
    fjord.wait_for_log("acme: certificate issued");
    let key = std::fs::metadata(storage.path().join("certs/shop.test.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
    let status = support::tls_free_get(fjord.admin, "/acme").await;
    assert!(
        status.contains("\"not_after\": 1") && status.contains("\"issued\": 1"),
        "{status}"
    );
    drop(fjord);

    // Restarted on the same storage: the certificate is loaded, not ordered again.
    let fjord = Fjord::start(m.path(), &config);
    let again = until_trusted(&fjord, &root, Duration::from_secs(10)).await;
    assert_eq!(again.serial, seen.serial);
    assert!(
        !fjord
            .logs()
            .iter()
            .any(|l| l.contains("acme: ordering certificate") || l.contains("account created")),
        "{:#?}",
        fjord.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http01_obtains_serves_and_reloads_from_storage() {
    obtains_serves_and_reloads(HTTP01).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_alpn01_obtains_serves_and_reloads_from_storage() {
    obtains_serves_and_reloads(TLS_ALPN01).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_lived_certificate_is_renewed_without_a_failed_request_and_survives_a_ca_outage() {
    let (web, websecure) = (free_port(), free_port());
    let mut pebble = Pebble::start(web, websecure, Some(12));
    let root = pebble.issuing_root().await;
    let (m, _app) = manifests().await;
    let storage = tempfile::tempdir().unwrap();
    let fjord = Fjord::start(
        m.path(),
        &config(web, websecure, &pebble, storage.path(), HTTP01),
    );
    let first = until_trusted(&fjord, &root, Duration::from_secs(60)).await;

    // Handshakes in a loop while the certificate is renewed.
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, addr, trust) = (
        Arc::clone(&stop),
        fjord.addrs["websecure"],
        client_config(std::slice::from_ref(&root), &[b"http/1.1"]),
    );
    let load = tokio::spawn(async move {
        let mut failures = Vec::new();
        while !flag.load(Ordering::Relaxed) {
            match https_get(addr, "shop.test", Arc::clone(&trust), "/").await {
                Ok(seen) if seen.reply.status == 200 => {}
                Ok(seen) => failures.push(format!("status {}", seen.reply.status)),
                Err(e) => failures.push(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        failures
    });
    let deadline = Instant::now() + Duration::from_secs(40);
    let renewed = loop {
        let seen = until_trusted(&fjord, &root, Duration::from_secs(10)).await;
        if seen.serial != first.serial {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "never renewed: {:#?}",
            fjord.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let failures = load.await.unwrap();
    assert!(
        failures.is_empty(),
        "requests failed during renewal: {failures:?}"
    );

    // The CA goes away: renewal fails and backs off; the certificate in hand keeps serving.
    pebble.stop();
    let line = fjord.wait_for_log_within("obtaining a certificate failed", Duration::from_secs(30));
    assert!(line.contains("retry_in_s"), "{line}");
    let still = https_get(
        fjord.addrs["websecure"],
        "shop.test",
        insecure_client_config(&[]),
        "/",
    )
    .await
    .unwrap();
    assert_eq!(still.serial, renewed.serial);
    let status = support::tls_free_get(fjord.admin, "/acme").await;
    assert!(status.contains("\"last_error\": \""), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_ca_backs_off_and_the_default_certificate_is_served() {
    let (m, _app) = manifests().await;
    let storage = tempfile::tempdir().unwrap();
    let closed = free_port();
    let config = format!(
        "entryPoints:\n  web: {{address: \"127.0.0.1:0\"}}\n  websecure: {{address: \"127.0.0.1:0\", http: {{tls: {{}}}}}}\nadmin: {{address: \"127.0.0.1:0\"}}\ncertificatesResolvers:\n  default:\n    acme:\n      caServer: \"https://127.0.0.1:{closed}/dir\"\n      storage: \"{}\"\n      httpChallenge: {{entryPoint: web}}\n",
        storage.path().display()
    );
    let fjord = Fjord::start(m.path(), &config);
    let seen = https_get(
        fjord.addrs["websecure"],
        "shop.test",
        insecure_client_config(&[]),
        "/",
    )
    .await
    .unwrap();
    assert_eq!(seen.names, ["default.fjord.invalid"]);
    assert_eq!(seen.reply.backend().as_deref(), Some("app"));
    // Two failures, the second after a longer wait than nothing: a backoff, not a tight loop.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failures: Vec<String> = fjord
            .logs()
            .into_iter()
            .filter(|l| l.contains("obtaining a certificate failed"))
            .collect();
        if failures.len() >= 2 {
            assert!(
                failures[0].contains("\"failures\":1") && failures[1].contains("\"failures\":2"),
                "{failures:#?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{:#?}", fjord.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failures = fjord
        .logs()
        .iter()
        .filter(|l| l.contains("obtaining a certificate failed"))
        .count();
    assert!(
        failures <= 3,
        "retries are spaced out: {failures} in a few seconds"
    );
    // What failed, where: the CA's URL and the refused connection, not only "client error".
    let status = support::tls_free_get(fjord.admin, "/acme").await;
    let expected = format!(
        "\"last_error\": \"ACME server https://127.0.0.1:{closed}/dir: client error (Connect): tcp connect error: Connection refused (os error 111)\""
    );
    assert!(status.contains(&expected), "{status}");
}
