//! Error pages: Traefik's `errors` middleware (status ranges, `query` with `{status}`,
//! `statusRewrites`) and ingress-nginx's `custom-http-errors` with `default-backend` (the
//! original path and `X-Code` and friends), checked by what the client gets and what the
//! pages' backend was asked.

mod support;

use support::{Echo, Fjord, Manifests, get, service};

async fn echo(name: &'static str, m: &Manifests) -> Echo {
    support::echo_service(name, m).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_statuses_get_the_services_page_with_the_original_or_rewritten_status() {
    let m = Manifests::new();
    let _app = echo("app", &m).await;
    let _pages = echo("pages", &m).await;
    m.write(
        "errors.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {name: pages, namespace: default}\nspec:\n  errors:\n    status: [\"500-599\", \"418\"]\n    service: {name: pages, port: 80}\n    query: /errors/{status}.html?was={originalStatus}\n    statusRewrites: {\"418\": 410}\n",
    );
    m.write(
        "route.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: web, namespace: default}\nspec:\n  routes:\n  - match: Host(`app.test`)\n    middlewares: [{name: pages}]\n    services: [{name: app, port: 80}]\n",
    );
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let failed = get(fjord.web, "app.test", "/status/503").await;
    assert_eq!(failed.status, 503, "the original status");
    assert_eq!(
        failed.backend().as_deref(),
        Some("pages"),
        "the page's body"
    );
    let asked = failed.json();
    assert_eq!(asked["path"], "/errors/503.html?was=503");
    assert_eq!(asked["method"], "GET");
    assert_eq!(asked["host"], "app.test");

    let teapot = get(fjord.web, "app.test", "/status/418").await;
    assert_eq!(teapot.status, 410, "statusRewrites");
    assert_eq!(teapot.json()["path"], "/errors/410.html?was=418");

    let missing = get(fjord.web, "app.test", "/status/404").await;
    assert_eq!(
        (missing.status.as_u16(), missing.backend()),
        (404, Some("app".into())),
        "not listed"
    );
    let fine = get(fjord.web, "app.test", "/").await;
    assert_eq!(fine.backend().as_deref(), Some("app"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_nginx_custom_http_errors_ask_the_default_backend_as_nginx_does() {
    let m = Manifests::new();
    let _app = echo("app", &m).await;
    let _errors = echo("errors", &m).await;
    let ingress = support::ingress("web", &[("nginx.test", "Prefix", "/", "app")]).replacen(
        "namespace: default}",
        "namespace: default, annotations: {nginx.ingress.kubernetes.io/custom-http-errors: \"404,503\", nginx.ingress.kubernetes.io/default-backend: errors}}",
        1,
    );
    m.write("web.yaml", &ingress);
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let reply = support::send(
        &support::client(),
        http::Request::get(format!("http://{}/status/404?q=1", fjord.web))
            .header("host", "nginx.test")
            .header("accept", "application/json")
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.backend().as_deref(), Some("errors"));
    let asked = reply.json();
    assert_eq!(asked["path"], "/status/404?q=1", "the original path");
    let h = &asked["headers"];
    assert_eq!(h["x-code"], "404");
    assert_eq!(h["x-original-uri"], "/status/404?q=1");
    assert_eq!(h["x-namespace"], "default");
    assert_eq!(h["x-ingress-name"], "web");
    assert_eq!(h["x-service-name"], "app");
    assert_eq!(h["x-service-port"], "http");
    assert_eq!(h["x-format"], "application/json");
    let other = get(fjord.web, "nginx.test", "/status/500").await;
    assert_eq!(
        (other.status.as_u16(), other.backend()),
        (500, Some("app".into()))
    );
}

#[test]
fn bad_errors_settings_are_refused_naming_the_field() {
    let m = Manifests::new();
    m.write("app.yaml", &service("app", "127.0.0.1:9".parse().unwrap()));
    let middleware = |name: &str, spec: &str| {
        format!(
            "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  errors: {spec}\n"
        )
    };
    m.write(
        "a.yaml",
        &middleware(
            "range",
            "{status: [\"599-500\"], service: {name: app, port: 80}}",
        ),
    );
    m.write("b.yaml", &middleware("noservice", "{status: [\"500\"]}"));
    m.write(
        "c.yaml",
        &middleware(
            "query",
            "{status: [\"500\"], service: {name: app, port: 80}, query: \"errors\"}",
        ),
    );
    let (code, out) = support::check(m.path(), None);
    assert_ne!(code, 0, "{out}");
    for (name, why) in [
        (
            "range",
            "spec.errors.status[0] \"599-500\" is not a status or a range",
        ),
        ("noservice", "spec.errors.service is required"),
        ("query", "spec.errors.query \"errors\" is not a path"),
    ] {
        support::assert_diagnostic(&out, &format!("Middleware default/{name}"), why);
    }
}
