//! The read-only API and the dashboard: each endpoint's JSON for a fixed set of manifests (a
//! rejected Ingress and a certificate near expiry among them), a reload changing the answer,
//! nothing secret in any answer, the API off by default, `api@internal` behind basicAuth on an
//! entry point, and the page in a real browser (Debian's Chromium, over WebDriver).

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::tls::Ca;
use support::{Echo, Fjord, Manifests, get, ingress, request_with, service};

/// alice:secret, apr1.
const ALICE: &str = "alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/";

const API_CONFIG: &str = "entryPoints:\n  web:\n    address: \"127.0.0.1:0\"\n  websecure:\n    address: \"127.0.0.1:0\"\n    http: {tls: {}}\nadmin:\n  address: \"127.0.0.1:0\"\napi:\n  dashboard: true\n";

/// The fixed set: a served Ingress with a certificate five days from expiry, a rejected one,
/// and the dashboard routed through basicAuth.
fn manifests(backend: SocketAddr) -> Manifests {
    let m = Manifests::new();
    m.write("web.yaml", &service("web", backend));
    let mut shop = ingress("shop", &[("shop.test", "Prefix", "/", "web")]);
    shop.push_str("  tls:\n  - hosts: [shop.test]\n    secretName: shop-tls\n");
    m.write("shop.yaml", &shop);
    m.write(
        "shop-tls.yaml",
        &Ca::new().secret_expiring("shop-tls", &["shop.test"], 5),
    );
    m.write(
        "broken.yaml",
        &ingress("broken", &[("Bad_Host", "Prefix", "/", "web")]),
    );
    m.write(
        "dashboard.yaml",
        &format!(
            "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {{name: admins, namespace: default}}\nspec:\n  basicAuth: {{users: [\"{ALICE}\"]}}\n---\napiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {{name: dashboard, namespace: default}}\nspec:\n  routes:\n  - match: Host(`dash.test`) && (PathPrefix(`/api`) || PathPrefix(`/dashboard`))\n    middlewares: [{{name: admins}}]\n    services: [{{kind: TraefikService, name: dashboard@internal}}]\n"
        ),
    );
    m
}

async fn json(fjord: &Fjord, path: &str) -> Value {
    let reply = get(fjord.admin, "localhost", path).await;
    assert_eq!(reply.status, 200, "{path}: {reply:?}");
    assert_eq!(reply.headers["content-type"], "application/json", "{path}");
    reply.json()
}

fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_shows_what_is_served_and_why_not() {
    let echo = Echo::start("web", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = manifests(echo.addr);
    let fjord = Fjord::start(m.path(), API_CONFIG);
    // A request, so the service's counters move.
    assert_eq!(get(fjord.web, "shop.test", "/").await.status, 200);

    let overview = json(&fjord, "/api/overview").await;
    assert_eq!(overview["version"], env!("CARGO_PKG_VERSION"));
    assert!(!overview["replica"].as_str().unwrap().is_empty());
    assert_eq!(overview["ready"], true);
    assert_eq!(overview["routers"]["total"], 2, "{overview:#}");
    assert_eq!(overview["middlewares"], serde_json::json!({"total": 1}));
    assert_eq!(overview["certificates"]["total"], 2, "{overview:#}");
    assert_eq!(overview["certificates"]["expiringSoon"], 1);
    assert_eq!(overview["diagnostics"]["errors"], 1, "{overview:#}");

    let routers = json(&fjord, "/api/http/routers").await;
    let shop = named(&routers, "default-shop-0@ingress");
    assert_eq!(shop["source"], "Ingress default/shop");
    assert_eq!(shop["host"], "shop.test");
    assert_eq!(shop["path"], "/");
    assert_eq!(shop["pathType"], "Prefix");
    assert_eq!(shop["tls"], true);
    assert_eq!(shop["service"], "default/web:http");
    assert_eq!(shop["status"], "enabled");
    assert_eq!(shop["requests"]["total"], 1);
    let dash = named(&routers, "default-dashboard-0@ingressroute");
    assert_eq!(
        dash["rule"],
        "Host(`dash.test`) && (PathPrefix(`/api`) || PathPrefix(`/dashboard`))"
    );
    assert_eq!(dash["middlewares"], serde_json::json!(["default/admins"]));
    assert_eq!(dash["service"], "api@internal");
    let one = json(&fjord, "/api/http/routers/default-shop-0@ingress").await;
    assert_eq!(one["host"], "shop.test");
    let missing = get(fjord.admin, "localhost", "/api/http/routers/nope@ingress").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("router not found: nope@ingress"));

    let services = json(&fjord, "/api/http/services").await;
    let web = named(&services, "default/web:http");
    assert_eq!(web["status"], "enabled");
    assert_eq!(web["protocol"], "http");
    assert_eq!(web["endpoints"][0]["address"], echo.addr.to_string());
    assert_eq!(web["endpoints"][0]["healthy"], true);
    assert_eq!(web["usedBy"], serde_json::json!(["default-shop-0@ingress"]));
    let by_name = json(&fjord, "/api/http/services/default/web:http").await;
    assert_eq!(by_name["name"], "default/web:http");

    let middlewares = json(&fjord, "/api/http/middlewares").await;
    let admins = named(&middlewares, "default/admins");
    assert_eq!(admins["type"], "basicAuth");
    assert_eq!(
        admins["usedBy"],
        serde_json::json!(["default-dashboard-0@ingressroute"])
    );

    let certificates = json(&fjord, "/api/certificates").await;
    let cert = &certificates[0];
    assert_eq!(cert["names"], serde_json::json!(["shop.test"]));
    assert_eq!(cert["source"], "Secret");
    assert_eq!(cert["from"], "default/shop-tls");
    assert_eq!(cert["issuer"], "CN=fjord test CA");
    assert_eq!(cert["expiringSoon"], true);
    // What a handshake for an unknown name gets.
    let fallback = &certificates[1];
    assert_eq!(fallback["source"], "default");
    assert_eq!(fallback["from"], "self-signed at start");
    assert_eq!(
        fallback["names"],
        serde_json::json!(["default.fjord.invalid"])
    );
    assert_eq!(fallback["expiringSoon"], false);

    // The rejected Ingress, in the words `fjord check` prints.
    let diagnostics = json(&fjord, "/api/diagnostics").await;
    let broken = diagnostics
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["object"] == "Ingress default/broken")
        .unwrap_or_else(|| panic!("{diagnostics:#}"));
    assert_eq!(broken["severity"], "error");
    let (_, printed) = support::check(m.path(), None);
    assert!(
        printed.lines().any(|l| l == broken["text"]),
        "{broken:#} is not a line of fjord check's: {printed}"
    );

    // Nothing secret in any answer: no password hash, no key.
    for path in [
        "/api/overview",
        "/api/http/routers",
        "/api/http/services",
        "/api/http/middlewares",
        "/api/certificates",
        "/api/diagnostics",
    ] {
        let body = get(fjord.admin, "localhost", path).await.body;
        assert!(!body.contains("$apr1$"), "{path}: {body}");
        assert!(!body.contains("PRIVATE KEY"), "{path}: {body}");
    }

    // Behind tower-http's layers: compressed for a client that takes gzip.
    let gzipped = request_with(
        fjord.admin,
        "GET",
        "localhost",
        "/api/http/routers",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(gzipped.headers["content-encoding"], "gzip");

    // A reload changes the answer.
    m.write(
        "more.yaml",
        &ingress("more", &[("more.test", "Prefix", "/api", "web")]),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let routers = json(&fjord, "/api/http/routers").await;
        if let Some(more) = routers
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "default-more-0@ingress")
        {
            assert_eq!(more["pathType"], "Prefix");
            assert_eq!(more["path"], "/api");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload never showed: {routers:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_is_off_unless_switched_on_and_then_on_its_own_address() {
    let echo = Echo::start("web", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = manifests(echo.addr);
    let off = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    for path in ["/api/overview", "/dashboard/"] {
        assert_eq!(
            get(off.admin, "localhost", path).await.status,
            404,
            "{path}"
        );
    }
    // The route to the API is refused by name, and answers 503, not the API.
    let (_, printed) = support::check(m.path(), None);
    support::assert_diagnostic(
        &printed,
        "IngressRoute default/dashboard",
        "api@internal is off: the static configuration's api.dashboard is false",
    );
    let refused = request_with(
        off.web,
        "GET",
        "dash.test",
        "/api/overview",
        &[("authorization", "Basic YWxpY2U6c2VjcmV0")],
    )
    .await;
    assert_eq!(refused.status, 503);
    // A listener of its own, beside the admin server's probes.
    let config = format!("{API_CONFIG}  address: \"127.0.0.1:0\"\n");
    let on = Fjord::start(m.path(), &config);
    let api = on.addrs["api"];
    let overview = get(api, "localhost", "/api/overview").await;
    assert_eq!(overview.status, 200);
    assert_eq!(overview.json()["routers"]["total"], 2);
    assert_eq!(get(api, "localhost", "/metrics").await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_internal_behind_basic_auth() {
    let echo = Echo::start("web", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = manifests(echo.addr);
    let fjord = Fjord::start(m.path(), API_CONFIG);
    let anonymous = get(fjord.web, "dash.test", "/dashboard/").await;
    assert_eq!(anonymous.status, 401);
    assert!(!anonymous.body.contains("<title>fjord"));
    let alice = [("authorization", "Basic YWxpY2U6c2VjcmV0")];
    let page = request_with(fjord.web, "GET", "dash.test", "/dashboard/", &alice).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>fjord</title>"), "{page:?}");
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let overview = request_with(fjord.web, "GET", "dash.test", "/api/overview", &alice).await;
    assert_eq!(overview.status, 200);
    assert_eq!(overview.json()["routers"]["total"], 2);
    // Its requests are counted like any route's.
    let metrics = get(fjord.admin, "localhost", "/metrics").await.body;
    assert!(
        metrics.contains(
            "fjord_service_requests_total{code=\"200\",method=\"GET\",service=\"api@internal\"}"
        ),
        "{metrics}"
    );
}

/// Debian's Chromium driven by Debian's ChromeDriver, both started here on loopback.
struct Browser {
    driver: Child,
    client: fantoccini::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; .ci/run installs it)");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1200",
        ]
        .map(str::to_owned)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"binary": "/usr/bin/chromium", "args": args}),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match fantoccini::ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session: {e}"),
            }
        };
        Browser {
            driver,
            client,
            _profile: profile,
        }
    }

    /// The page's visible text once `check` holds of it (up to 20 s).
    async fn text_when(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self
                .client
                .find(fantoccini::Locator::Css("body"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if check(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "never saw {what}: {text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_sees_routes_reasons_expiry_and_updates_in_chromium() {
    let echo = Echo::start("web", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = manifests(echo.addr);
    let fjord = Fjord::start(m.path(), API_CONFIG);
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("http://{}/dashboard", fjord.admin))
        .await
        .unwrap();
    let text = browser
        .text_when("the routes", |t| t.contains("default-shop-0@ingress"))
        .await;
    assert!(text.contains("default-dashboard-0@ingressroute"), "{text}");
    assert!(text.contains("shop.test/"), "{text}");
    // The rejected Ingress's reason, as fjord check words it, at the top.
    let (_, printed) = support::check(m.path(), None);
    let reason = printed
        .lines()
        .find(|l| l.contains("Ingress default/broken"))
        .unwrap();
    let message = reason.split_once("Ingress default/broken: ").unwrap().1;
    assert!(text.contains(message), "{message} not in {text}");
    let diagnostics = c
        .find(fantoccini::Locator::Css("#diagnostics"))
        .await
        .unwrap();
    assert!(diagnostics.is_displayed().await.unwrap());
    // The certificate five days from expiry is highlighted and says so.
    let expiring = c
        .find_all(fantoccini::Locator::Css("#certificates tr.expiring"))
        .await
        .unwrap();
    assert_eq!(expiring.len(), 1);
    let row = expiring[0].text().await.unwrap();
    assert!(row.contains("shop.test"), "{row}");
    assert!(
        row.contains("in 4 days") || row.contains("in 5 days"),
        "{row}"
    );
    // The page follows a change to the manifests, with no reload.
    m.write(
        "more.yaml",
        &ingress("more", &[("more.test", "Prefix", "/", "web")]),
    );
    browser
        .text_when("the new route", |t| t.contains("default-more-0@ingress"))
        .await;
    // The screenshot is kept as the test's artifact.
    let png = c.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    c.clone().close().await.unwrap();
}
