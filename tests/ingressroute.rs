//! IngressRoute and Middleware through real sockets: header canary routing, weighted services,
//! and each middleware asserted by status, headers and what the backend received.

mod support;

use base64::Engine as _;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::{Echo, Fjord, LOOPBACK_CONFIG, Manifests, client, get, send, service};

async fn echo(name: &str, m: &Manifests) -> Echo {
    let e = Echo::start(name, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write(&format!("svc-{name}.yaml"), &service(name, e.addr));
    e
}

fn route(name: &str, routes: &str) -> String {
    format!(
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {{name: {name}}}\nspec:\n  routes:\n{routes}"
    )
}

fn middleware(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {{name: {name}}}\nspec:\n  {spec}\n"
    )
}

/// A route for `host` through middleware `mw` to Service `app`.
fn through(host: &str, mw: &str) -> String {
    format!(
        "  - match: Host(`{host}`)\n    middlewares: [{{name: {mw}}}]\n    services: [{{name: app, port: 80}}]\n"
    )
}

async fn get_with(
    web: std::net::SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> support::Reply {
    let mut req = Request::get(format!("http://{web}{path}")).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&client(), req.body(Full::<Bytes>::default()).unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn header_canary_and_weighted_services() {
    let m = Manifests::new();
    let _s = (
        echo("stable", &m).await,
        echo("canary", &m).await,
        echo("a", &m).await,
        echo("b", &m).await,
    );
    m.write(
        "routes.yaml",
        &route(
            "app",
            "  - match: Host(`app.test`) && Header(`X-Env`, `canary`)\n    services: [{name: canary, port: 80}]\n  - match: Host(`app.test`)\n    services: [{name: stable, port: http}]\n  - match: Host(`split.test`)\n    services: [{name: a, port: 80, weight: 3}, {name: b, port: 80, weight: 1}]\n",
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;
    assert_eq!(
        get_with(web, "app.test", "/", &[("x-env", "canary")])
            .await
            .backend()
            .as_deref(),
        Some("canary")
    );
    assert_eq!(
        get_with(web, "app.test", "/", &[("x-env", "prod")])
            .await
            .backend()
            .as_deref(),
        Some("stable")
    );
    assert_eq!(
        get(web, "app.test", "/").await.backend().as_deref(),
        Some("stable")
    );
    assert_eq!(get(web, "other.test", "/").await.status, 404);
    let mut split = Vec::new();
    for _ in 0..8 {
        split.push(get(web, "split.test", "/").await.backend().unwrap());
    }
    assert_eq!(
        split.iter().filter(|b| *b == "a").count(),
        6,
        "3:1 weights: {split:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_answers_429_with_headers_and_keeps_its_bucket_across_100_reloads() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "limit.yaml",
        &middleware("limit", "rateLimit: {average: 1, period: 1h, burst: 5}"),
    );
    m.write(
        "routes.yaml",
        &route("app", "  - match: Host(`app.test`)\n    middlewares: [{name: limit}]\n    services: [{name: app, port: 80}]\n"),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    for i in 0..3 {
        assert_eq!(
            get(fjord.web, "app.test", "/").await.status,
            200,
            "request {i}"
        );
    }
    // 100 unrelated changes, each applied before the next.
    for i in 0..100 {
        m.write(
            "noise.yaml",
            &route(
                "noise",
                &format!(
                    "  - match: Host(`noise{i}.test`)\n    services: [{{name: app, port: 80}}]\n"
                ),
            ),
        );
        let host = format!("noise{i}.test");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while get(fjord.web, &host, "/").await.status != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "reload {i} never applied"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The bucket survived: two tokens of five are left, then the limit answers.
    assert_eq!(get(fjord.web, "app.test", "/").await.status, 200);
    assert_eq!(get(fjord.web, "app.test", "/").await.status, 200);
    let limited = get(fjord.web, "app.test", "/").await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body, "429 too many requests\n");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(
        limited.headers["ratelimit-policy"],
        "\"default/limit\";q=1;w=3600"
    );
    assert_eq!(
        limited.headers["ratelimit"],
        format!("\"default/limit\";r=0;t={retry}")
    );
    assert!(limited.backend().is_none(), "the backend never saw it");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_of_headers_auth_and_prefix_stripping() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    // alice:secret (apr1), made with `openssl passwd -apr1 -salt abcdefgh secret`
    m.write(
        "auth.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: users}\nstringData:\n  users: \"alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\"\n",
    );
    m.write(
        "auth-mw.yaml",
        &middleware(
            "auth",
            "basicAuth: {secret: users, realm: shop, removeHeader: true}",
        ),
    );
    m.write(
        "headers-mw.yaml",
        &middleware(
            "hdrs",
            "headers: {customRequestHeaders: {X-Team: shop, User-Agent: \"\"}, customResponseHeaders: {X-Served-By: fjord, Server: \"\"}, frameDeny: true, stsSeconds: 600, accessControlAllowOriginList: [\"https://ui.test\"], accessControlAllowMethods: [GET, POST]}",
        ),
    );
    m.write(
        "strip-mw.yaml",
        &middleware("strip", "stripPrefix: {prefixes: [/shop]}"),
    );
    m.write(
        "chain-mw.yaml",
        &middleware(
            "secure",
            "chain: {middlewares: [{name: hdrs}, {name: auth}, {name: strip}]}",
        ),
    );
    m.write(
        "routes.yaml",
        &route("app", "  - match: Host(`app.test`) && PathPrefix(`/shop`)\n    middlewares: [{name: secure}]\n    services: [{name: app, port: 80}]\n"),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;

    let denied = get(web, "app.test", "/shop/cart").await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.headers["www-authenticate"], "Basic realm=\"shop\"");
    let wrong = get_with(
        web,
        "app.test",
        "/shop/cart",
        &[("authorization", "Basic YWxpY2U6d3Jvbmc=")],
    )
    .await;
    assert_eq!(wrong.status, 401);

    // alice:secret
    let ok = get_with(
        web,
        "app.test",
        "/shop/cart?x=1",
        &[
            ("authorization", "Basic YWxpY2U6c2VjcmV0"),
            ("user-agent", "curl"),
            ("origin", "https://ui.test"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let seen = ok.json();
    assert_eq!(seen["path"], "/cart?x=1");
    assert_eq!(seen["headers"]["x-forwarded-prefix"], "/shop");
    assert_eq!(seen["headers"]["x-team"], "shop");
    assert!(
        seen["headers"].get("user-agent").is_none(),
        "empty value removes: {}",
        seen["headers"]
    );
    assert!(
        seen["headers"].get("authorization").is_none(),
        "removeHeader"
    );
    assert_eq!(ok.headers["x-served-by"], "fjord");
    assert_eq!(ok.headers["x-frame-options"], "DENY");
    assert_eq!(ok.headers["strict-transport-security"], "max-age=600");
    assert_eq!(ok.headers["access-control-allow-origin"], "https://ui.test");

    // A CORS preflight is answered by fjord, before auth.
    let pre = get_with(
        web,
        "app.test",
        "/shop/cart",
        &[
            ("origin", "https://ui.test"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    let preflight = {
        let req = Request::builder()
            .method("OPTIONS")
            .uri(format!("http://{web}/shop/cart"))
            .header("host", "app.test")
            .header("origin", "https://ui.test")
            .header("access-control-request-method", "POST")
            .body(Full::<Bytes>::default())
            .unwrap();
        send(&client(), req).await
    };
    assert_eq!(pre.status, 401, "a GET is no preflight");
    assert_eq!(preflight.status, 200);
    assert_eq!(
        preflight.headers["access-control-allow-methods"],
        "GET, POST"
    );
    assert!(preflight.backend().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_lists_redirects_rewrites_in_flight_and_broken_references() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "deny.yaml",
        &middleware("office", "ipAllowList: {sourceRange: [10.0.0.0/8]}"),
    );
    m.write(
        "local.yaml",
        &middleware(
            "local",
            "ipAllowList: {sourceRange: [127.0.0.0/8, \"::1\"]}",
        ),
    );
    m.write(
        "https.yaml",
        &middleware(
            "https",
            "redirectScheme: {scheme: https, port: \"8443\", permanent: true}",
        ),
    );
    m.write(
        "replace.yaml",
        &middleware("replace", "replacePath: {path: /health}"),
    );
    m.write("add.yaml", &middleware("add", "addPrefix: {prefix: /v2}"));
    m.write(
        "regex.yaml",
        &middleware(
            "rx",
            "replacePathRegex: {regex: \"^/old/(.*)\", replacement: \"/new/$1\"}",
        ),
    );
    m.write("one.yaml", &middleware("one", "inFlightReq: {amount: 1}"));
    m.write(
        "loop-a.yaml",
        &middleware("loop-a", "chain: {middlewares: [{name: loop-b}]}"),
    );
    m.write(
        "loop-b.yaml",
        &middleware("loop-b", "chain: {middlewares: [{name: loop-a}]}"),
    );
    let r = through;
    m.write(
        "routes.yaml",
        &route(
            "app",
            &[
                r("office.test", "office"),
                r("local.test", "local"),
                r("https.test", "https"),
                r("replace.test", "replace"),
                r("add.test", "add"),
                r("rx.test", "rx"),
                r("one.test", "one"),
                r("missing.test", "nope"),
                r("loop.test", "loop-a"),
            ]
            .concat(),
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;

    let r = get(web, "office.test", "/").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (403, "403 forbidden\n")
    );
    assert_eq!(
        get(web, "local.test", "/").await.backend().as_deref(),
        Some("app")
    );
    let r = get(web, "https.test", "/a?b=c").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://https.test:8443/a?b=c");
    let seen = get(web, "replace.test", "/anything").await.json();
    assert_eq!(
        (
            seen["path"].as_str(),
            seen["headers"]["x-replaced-path"].as_str()
        ),
        (Some("/health"), Some("/anything"))
    );
    assert_eq!(
        get(web, "add.test", "/users").await.json()["path"],
        "/v2/users"
    );
    assert_eq!(
        get(web, "rx.test", "/old/a/b").await.json()["path"],
        "/new/a/b"
    );

    // One request in flight per host (Traefik's default source for inFlightReq): a second
    // concurrent one is refused, though it comes from another client.
    let slow = tokio::spawn(async move { get(web, "one.test", "/delay/800").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = support::get_from(web, "one.test", "/", "127.0.0.2".parse().unwrap()).await;
    assert_eq!(other.status, 429);
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(
        get(web, "one.test", "/").await.status,
        200,
        "the slot was released"
    );

    // A missing middleware or a cycle: the route is not served without it.
    let r = get(web, "missing.test", "/").await;
    assert_eq!((r.status.as_u16(), r.backend()), (503, None));
    assert_eq!(get(web, "loop.test", "/").await.status, 503);
    fjord.wait_for_log(
        "spec.routes[7].middlewares: Middleware default/nope: not found; the route answers 503",
    );
    fjord.wait_for_log(
        "middleware chain has a cycle: default/loop-a -> default/loop-b -> default/loop-a",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ingress_annotation_attaches_middlewares_and_check_reports_bad_rules() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "hdr.yaml",
        &middleware(
            "tag",
            "headers: {customRequestHeaders: {X-Tagged: \"yes\"}}",
        ),
    );
    m.write("v1.yaml", &middleware("v1", "addPrefix: {prefix: /v1}"));
    m.write("v2.yaml", &middleware("v2", "addPrefix: {prefix: /v2}"));
    // In order, each as often as named, by name or by namespace/name.
    m.write(
        "ing.yaml",
        &support::ingress("app", &[("app.test", "Prefix", "/", "app")]).replace(
            "namespace: default}",
            "namespace: default, annotations: {fjord.dev/middlewares: \"tag, v1, default/v2, v2\"}}",
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let seen = get(fjord.web, "app.test", "/x").await.json();
    assert_eq!(seen["headers"]["x-tagged"], "yes");
    assert_eq!(
        seen["path"], "/v2/v2/v1/x",
        "v1 first, then v2 twice, each adding its prefix before the last"
    );

    m.write(
        "bad.yaml",
        &route(
            "bad",
            "  - match: Host(`a`) && Heder(`x`,`y`)\n    services: [{name: app, port: 80}]\n",
        ),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fjord"))
        .arg("check")
        .arg(m.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("error: IngressRoute default/bad: spec.routes[0].match: rule `Host(`a`) && Heder(`x`,`y`)`: unknown matcher `Heder` at column 14"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_resends_idempotent_bodyless_requests_before_a_response_started() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "retry.yaml",
        &middleware("retry", "retry: {attempts: 3, initialInterval: 10ms}"),
    );
    m.write(
        "routes.yaml",
        &route(
            "app",
            "  - match: Host(`retry.test`)\n    middlewares: [{name: retry}]\n    services: [{name: app, port: 80}]\n  - match: Host(`plain.test`)\n    services: [{name: app, port: 80}]\n",
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;
    // The backend drops the first request for each key without answering.
    let r = get(web, "retry.test", "/reset-once/a").await;
    assert_eq!(
        (r.status.as_u16(), r.backend().as_deref()),
        (200, Some("app"))
    );
    assert_eq!(
        get(web, "plain.test", "/reset-once/b").await.status,
        502,
        "no retry without the middleware"
    );
    let post = Request::post(format!("http://{web}/reset-once/c"))
        .header("host", "retry.test")
        .body(Full::new(Bytes::from_static(b"order")))
        .unwrap();
    assert_eq!(
        send(&client(), post).await.status,
        502,
        "a request with a body is not sent twice"
    );
}

/// A buffering middleware's `retryExpression`: the request (body and all, within
/// maxRequestBodyBytes) is sent again while the expression holds of the attempts made and the
/// last status, whatever the method; a bad expression is named.
#[tokio::test(flavor = "multi_thread")]
async fn buffering_retry_expression_resends_while_it_holds() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "mw.yaml",
        &[
            middleware(
                "network",
                "buffering: {maxRequestBodyBytes: 1024, retryExpression: \"IsNetworkError() && Attempts() < 2\"}",
            ),
            middleware(
                "busy",
                "buffering: {maxRequestBodyBytes: 1024, retryExpression: \"ResponseCode() == 503 && Attempts() <= 2\"}",
            ),
        ]
        .join("---\n"),
    );
    m.write(
        "routes.yaml",
        &route(
            "app",
            &[
                through("network.test", "network"),
                through("busy.test", "busy"),
            ]
            .concat(),
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;
    // The backend drops the first request for each key: a 502, which the expression retries.
    let r = get(web, "network.test", "/reset-once/a").await;
    assert_eq!(
        (r.status.as_u16(), r.backend().as_deref()),
        (200, Some("app"))
    );
    // A POST too, with its body, held within maxRequestBodyBytes.
    let post = Request::post(format!("http://{web}/reset-once/b"))
        .header("host", "network.test")
        .body(Full::new(Bytes::from_static(b"order")))
        .unwrap();
    let posted = send(&client(), post).await;
    assert_eq!(posted.status, 200, "{posted:?}");
    assert_eq!(posted.json()["body_bytes"], 5);
    // A 503 is no network error: the answer stands.
    assert_eq!(
        get(web, "network.test", "/unavailable-once/c").await.status,
        503
    );
    // Where the expression names the status, it is retried.
    let busy = get(web, "busy.test", "/unavailable-once/d").await;
    assert_eq!(
        (busy.status.as_u16(), busy.backend().as_deref()),
        (200, Some("app"))
    );
    assert_eq!(get(web, "busy.test", "/reset-once/e").await.status, 502);

    m.write(
        "bad.yaml",
        &middleware("bad", "buffering: {retryExpression: \"Attempts() <\"}"),
    );
    m.write(
        "unbounded.yaml",
        &middleware(
            "unbounded",
            "buffering: {retryExpression: \"IsNetworkError()\"}",
        ),
    );
    let (_, out) = support::check(m.path(), None);
    support::assert_diagnostic(
        &out,
        "Middleware default/bad",
        "spec.buffering.retryExpression \"Attempts() <\": at byte 12: expected a number",
    );
    support::assert_diagnostic(
        &out,
        "Middleware default/unbounded",
        "without maxRequestBodyBytes fjord holds no request body",
    );
}

/// Traefik v3.7's retry fields: listed statuses retried, network errors not when switched off,
/// a bodyless POST when asked for, a POST with a body within maxRequestBodyBytes (held whole
/// and sent again, body and all), one with a longer body never twice.
#[tokio::test(flavor = "multi_thread")]
async fn retry_on_listed_statuses_and_methods_as_asked() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "on-status.yaml",
        &middleware(
            "on-status",
            "retry: {attempts: 2, initialInterval: 1ms, status: [\"502-504\"], disableRetryOnNetworkError: true, retryNonIdempotentMethod: true, timeout: 30s, maxRequestBodyBytes: 1024}",
        ),
    );
    m.write(
        "routes.yaml",
        &route("app", &through("status.test", "on-status")),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;
    // A 503 is retried, and the client gets the second answer.
    let r = get(web, "status.test", "/unavailable-once/a").await;
    assert_eq!(
        (r.status.as_u16(), r.backend().as_deref()),
        (200, Some("app"))
    );
    // A status not listed is passed on.
    assert_eq!(get(web, "status.test", "/status/500").await.status, 500);
    // Network errors are not retried when switched off.
    assert_eq!(get(web, "status.test", "/reset-once/b").await.status, 502);
    // retryNonIdempotentMethod: a POST without a body is retried.
    let post = Request::post(format!("http://{web}/unavailable-once/c"))
        .header("host", "status.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&client(), post).await.status, 200);
    let with_body = |path: &str, body: Bytes| {
        Request::post(format!("http://{web}{path}"))
            .header("host", "status.test")
            .body(Full::new(body))
            .unwrap()
    };
    let again = send(
        &client(),
        with_body("/unavailable-once/d", Bytes::from_static(b"order")),
    )
    .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        again.json()["body_bytes"],
        5,
        "the second attempt carries the body"
    );
    let long = send(
        &client(),
        with_body("/unavailable-once/e", Bytes::from(vec![b'x'; 1025])),
    )
    .await;
    assert_eq!(long.status, 503, "a body longer than held is sent once");
}

#[tokio::test(flavor = "multi_thread")]
async fn compress_by_accept_encoding_above_a_size_except_excluded_types() {
    use tokio::io::AsyncReadExt as _;
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "gz.yaml",
        &middleware("gz", "compress: {minResponseBodyBytes: 100}"),
    );
    m.write(
        "big.yaml",
        &middleware("big", "compress: {minResponseBodyBytes: 100000}"),
    );
    m.write(
        "nojson.yaml",
        &middleware(
            "nojson",
            "compress: {minResponseBodyBytes: 100, excludedContentTypes: [application/json]}",
        ),
    );
    let r = through;
    m.write(
        "routes.yaml",
        &route(
            "app",
            &[
                r("gz.test", "gz"),
                r("big.test", "big"),
                r("nojson.test", "nojson"),
            ]
            .concat(),
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;

    let raw = |host: &'static str, accept: &'static str| async move {
        let req = Request::get(format!("http://{web}/x"))
            .header("host", host)
            .header("accept-encoding", accept);
        let resp = client()
            .request(req.body(Full::<Bytes>::default()).unwrap())
            .await
            .unwrap();
        let headers = resp.headers().clone();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (headers, body)
    };
    let (h, body) = raw("gz.test", "gzip").await;
    assert_eq!(h["content-encoding"], "gzip");
    assert!(h.get("content-length").is_none());
    assert!(h.get_all("vary").iter().any(|v| v == "Accept-Encoding"));
    let mut plain = String::new();
    async_compression::tokio::bufread::GzipDecoder::new(&body[..])
        .read_to_string(&mut plain)
        .await
        .unwrap();
    let seen: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(
        (
            seen["backend"].as_str(),
            seen["headers"]["accept-encoding"].as_str()
        ),
        (Some("app"), Some("gzip"))
    );

    let (h, body) = raw("gz.test", "gzip;q=0.5, br").await;
    assert_eq!(h["content-encoding"], "br");
    let mut plain = String::new();
    async_compression::tokio::bufread::BrotliDecoder::new(&body[..])
        .read_to_string(&mut plain)
        .await
        .unwrap();
    assert!(plain.contains("\"backend\": \"app\""));

    assert!(
        raw("gz.test", "identity")
            .await
            .0
            .get("content-encoding")
            .is_none()
    );
    assert!(
        raw("big.test", "gzip")
            .await
            .0
            .get("content-encoding")
            .is_none(),
        "under the minimum size"
    );
    assert!(
        raw("nojson.test", "gzip")
            .await
            .0
            .get("content-encoding")
            .is_none(),
        "excluded type"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn regex_redirects_regex_prefix_stripping_and_body_buffering_limits() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write("rr.yaml", &middleware("rr", "redirectRegex: {regex: \"^http://old.test/(.*)\", replacement: \"https://new.test/$1\"}"));
    m.write(
        "spr.yaml",
        &middleware("spr", "stripPrefixRegex: {regex: [\"/api/v[0-9]+\"]}"),
    );
    m.write(
        "buf.yaml",
        &middleware("buf", "buffering: {maxRequestBodyBytes: 10}"),
    );
    let r = through;
    m.write(
        "routes.yaml",
        &route(
            "app",
            &[
                r("old.test", "rr"),
                r("spr.test", "spr"),
                r("buf.test", "buf"),
            ]
            .concat(),
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;
    let moved = get(web, "old.test", "/a/b?c=d").await;
    assert_eq!(
        (
            moved.status.as_u16(),
            moved.headers["location"].to_str().unwrap()
        ),
        (302, "https://new.test/a/b?c=d")
    );
    let seen = get(web, "spr.test", "/api/v2/users").await.json();
    assert_eq!(
        (
            seen["path"].as_str(),
            seen["headers"]["x-forwarded-prefix"].as_str()
        ),
        (Some("/users"), Some("/api/v2"))
    );
    let post = |len: usize| {
        Request::post(format!("http://{web}/"))
            .header("host", "buf.test")
            .body(Full::new(Bytes::from(vec![b'x'; len])))
            .unwrap()
    };
    assert_eq!(send(&client(), post(10)).await.status, 200);
    assert_eq!(send(&client(), post(11)).await.status, 413);
}

/// A backend writing `answer(path)` as the whole of its response, then closing.
async fn raw_backend(answer: fn(&str) -> Vec<u8>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head);
                let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                let _ = stream.write_all(&answer(&path)).await;
            });
        }
    });
    addr
}

/// `GET /N`: N bytes of `x` in chunks of 100, no length declared.
fn chunked(path: &str) -> Vec<u8> {
    let n: usize = path[1..].parse().unwrap();
    let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-backend: chunky\r\nconnection: close\r\n\r\n".to_vec();
    for start in (0..n).step_by(100) {
        let len = (n - start).min(100);
        out.extend_from_slice(format!("{len:x}\r\n{}\r\n", "x".repeat(len)).as_bytes());
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn buffering_holds_a_response_up_to_max_response_body_bytes_and_answers_500_past_it() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "svc-chunky.yaml",
        &service("chunky", raw_backend(chunked).await),
    );
    m.write(
        "held.yaml",
        &middleware("held", "buffering: {maxResponseBodyBytes: 600}"),
    );
    m.write(
        "routes.yaml",
        &route(
            "app",
            &[
                through("declared.test", "held"),
                "  - match: Host(`chunked.test`)\n    middlewares: [{name: held}]\n    services: [{name: chunky, port: 80}]\n".to_owned(),
            ]
            .concat(),
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;
    // A declared length: within the limit it passes, past it the body is not read at all.
    let within = get(web, "declared.test", "/bytes/600").await;
    assert_eq!((within.status.as_u16(), within.body.len()), (200, 600));
    let past = get(web, "declared.test", "/bytes/601").await;
    assert_eq!(past.status, 500);
    assert_eq!(past.body, "500 internal server error\n");
    // No length declared: held whole and sent with its length, or refused once it exceeds.
    let within = get(web, "chunked.test", "/550").await;
    assert_eq!((within.status.as_u16(), within.body.len()), (200, 550));
    assert_eq!(within.headers["content-length"], "550");
    assert!(within.headers.get("transfer-encoding").is_none());
    assert_eq!(within.headers["x-backend"], "chunky");
    let past = get(web, "chunked.test", "/700").await;
    assert_eq!(past.status, 500);
    assert_eq!(past.body, "500 internal server error\n");
    assert!(
        past.headers.get("x-backend").is_none(),
        "nothing of the backend's answer reaches the client"
    );
}

/// Bodies without a `Content-Type` (but `/typed`), by path.
fn untyped(path: &str) -> Vec<u8> {
    let (typed, body): (bool, &[u8]) = match path {
        "/html" => (false, b"\n  <!DOCTYPE html><p>hello</p>"),
        "/png" => (false, b"\x89PNG\r\n\x1A\n\x00\x00\x00\x0DIHDR"),
        "/typed" => (true, b"<html><p>styled?</p>"),
        _ => (false, b""),
    };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{}connection: close\r\n\r\n",
        body.len(),
        if typed {
            "content-type: text/css\r\n"
        } else {
            ""
        }
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn content_type_guesses_a_missing_type_from_the_first_bytes_as_traefik_does() {
    let m = Manifests::new();
    m.write("svc-app.yaml", &service("app", raw_backend(untyped).await));
    m.write("sniff.yaml", &middleware("sniff", "contentType: {}"));
    m.write(
        "off.yaml",
        &middleware("nodetect", "contentType: {autoDetect: false}"),
    );
    m.write(
        "held.yaml",
        &middleware("held", "buffering: {maxResponseBodyBytes: 1000}"),
    );
    m.write(
        "routes.yaml",
        &route(
            "app",
            &[
                through("sniff.test", "sniff"),
                through("off.test", "nodetect"),
                "  - match: Host(`held.test`)\n    middlewares: [{name: held}, {name: sniff}]\n    services: [{name: app, port: 80}]\n".to_owned(),
                "  - match: Host(`plain.test`)\n    services: [{name: app, port: 80}]\n".to_owned(),
            ]
            .concat(),
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;
    let type_of = |host: &'static str, path: &'static str| async move {
        let reply = get(web, host, path).await;
        assert_eq!(reply.status, 200, "{host}{path}");
        reply
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    for host in ["sniff.test", "held.test"] {
        assert_eq!(
            type_of(host, "/html").await.as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(type_of(host, "/png").await.as_deref(), Some("image/png"));
        assert_eq!(
            type_of(host, "/typed").await.as_deref(),
            Some("text/css"),
            "a type given stands"
        );
        assert_eq!(
            type_of(host, "/empty").await,
            None,
            "no body, nothing to guess from"
        );
    }
    let html = get(web, "sniff.test", "/html").await;
    assert_eq!(
        html.body, "\n  <!DOCTYPE html><p>hello</p>",
        "the bytes read ahead are sent"
    );
    assert_eq!(
        html.headers["content-length"], "30",
        "the length counts them"
    );
    for host in ["off.test", "plain.test"] {
        assert_eq!(type_of(host, "/html").await, None, "{host}: no guessing");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spoofed_forwarded_for_passes_no_allow_list_and_escapes_no_rate_limit() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "office.yaml",
        &middleware(
            "office",
            "ipAllowList: {sourceRange: [192.168.0.0/16], ipStrategy: {depth: 1}}",
        ),
    );
    m.write(
        "limit.yaml",
        &middleware(
            "limit",
            "rateLimit: {average: 1, period: 1m, burst: 1, sourceCriterion: {ipStrategy: {depth: 1}}}",
        ),
    );
    let r = through;
    m.write(
        "routes.yaml",
        &route(
            "app",
            &[r("office.test", "office"), r("limit.test", "limit")].concat(),
        ),
    );
    let status = |web, host: &'static str, xff: &'static str| async move {
        get_with(web, host, "/", &[("x-forwarded-for", xff)])
            .await
            .status
            .as_u16()
    };

    // An untrusted client's X-Forwarded-For is not what the middlewares read: at depth 1 there
    // is no client address, so the allow list refuses and every such request shares a bucket.
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(status(fjord.web, "office.test", "192.168.1.7").await, 403);
    assert_eq!(status(fjord.web, "limit.test", "1.1.1.1").await, 200);
    assert_eq!(
        status(fjord.web, "limit.test", "2.2.2.2").await,
        429,
        "a rotated header is the same client"
    );
    drop(fjord);

    // From a trusted proxy, the chain is read.
    let trusted = "entryPoints:\n  web:\n    address: \"127.0.0.1:0\"\n    forwardedHeaders: {trustedIPs: [127.0.0.0/8]}\nadmin:\n  address: \"127.0.0.1:0\"\n";
    let fjord = Fjord::start(m.path(), trusted);
    assert_eq!(status(fjord.web, "office.test", "192.168.1.7").await, 200);
    assert_eq!(status(fjord.web, "office.test", "10.1.1.1").await, 403);
    assert_eq!(status(fjord.web, "limit.test", "1.1.1.1").await, 200);
    assert_eq!(status(fjord.web, "limit.test", "2.2.2.2").await, 200);
    assert_eq!(status(fjord.web, "limit.test", "1.1.1.1").await, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_namespaces_middleware_is_refused_unless_the_operator_allows_it() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "team-b.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {name: tag, namespace: team-b}\nspec:\n  headers: {customRequestHeaders: {X-From: team-b}}\n",
    );
    m.write(
        "routes.yaml",
        &route(
            "app",
            "  - match: Host(`app.test`)\n    middlewares: [{name: tag, namespace: team-b}]\n    services: [{name: app, port: 80}]\n",
        ),
    );
    // Off by default: the route is not served without its middleware, and check says why.
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let r = get(fjord.web, "app.test", "/").await;
    assert_eq!((r.status.as_u16(), r.backend()), (503, None));
    drop(fjord);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fjord"))
        .arg("check")
        .arg(m.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("IngressRoute default/app: spec.routes[0].middlewares: Middleware team-b/tag is in another namespace than default, and cross-namespace references are off"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1));

    // Allowed by the operator: the middleware applies.
    let allowed =
        format!("{LOOPBACK_CONFIG}providers:\n  kubernetesCRD: {{allowCrossNamespace: true}}\n");
    let fjord = Fjord::start(m.path(), &allowed);
    let seen = get(fjord.web, "app.test", "/").await.json();
    assert_eq!(seen["headers"]["x-from"], "team-b");
}

/// Traefik configurations as Traefik's documentation writes them: deprecated names accepted with
/// a warning naming the replacement, inline users with the user's name passed on, and what fjord
/// does not read refused by name.
#[tokio::test(flavor = "multi_thread")]
async fn traefik_spellings_are_read_and_what_is_not_is_named() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "old-allow.yaml",
        &middleware("old-allow", "ipWhiteList: {sourceRange: [127.0.0.1/32]}"),
    );
    m.write(
        "strip.yaml",
        &middleware(
            "strip",
            "stripPrefix: {prefixes: [/api], forceSlash: false}",
        ),
    );
    // alice:secret (apr1), inline.
    m.write(
        "inline.yaml",
        &middleware(
            "inline",
            "basicAuth: {users: [\"alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\"], headerField: X-WebAuth-User}",
        ),
    );
    // bob:hunter2, in a kubernetes.io/basic-auth Secret.
    m.write(
        "bob.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bob}\ntype: kubernetes.io/basic-auth\nstringData: {username: bob, password: hunter2}\n",
    );
    m.write(
        "bob-auth.yaml",
        &middleware("bob-auth", "basicAuth: {secret: bob}"),
    );
    m.write(
        "bob-route.yaml",
        &route("bob", "  - match: Host(`bob.test`)\n    middlewares: [{name: bob-auth}]\n    services: [{name: app, port: 80}]\n"),
    );
    m.write(
        "routes.yaml",
        &route(
            "app",
            "  - match: Host(`app.test`)\n    syntax: v3\n    middlewares: [{name: old-allow}, {name: strip}, {name: inline}]\n    services: [{kind: Service, name: app, port: 80}]\n",
        ),
    );
    m.write(
        "v2.yaml",
        &route(
            "v2",
            "  - match: Host(`v2.test`)\n    syntax: v2\n    services: [{name: app, port: 80}]\n",
        ),
    );
    m.write(
        "weighted.yaml",
        &route("weighted", "  - match: Host(`w.test`)\n    services: [{kind: TraefikService, name: canary-split}]\n"),
    );
    m.write(
        "forwarding.yaml",
        &route("forwarding", "  - match: Host(`flush.test`)\n    services: [{name: app, port: 80, strategy: wrr, responseForwarding: {flushInterval: 100ms}}]\n"),
    );
    m.write(
        "held.yaml",
        &middleware(
            "held",
            "buffering: {maxRequestBodyBytes: 10, memRequestBodyBytes: 1000, maxResponseBodyBytes: 100, retryExpression: \"IsNetworkError() && Attempts() < 2\"}",
        ),
    );
    m.write(
        "random.yaml",
        &route(
            "random",
            "  - match: Host(`random.test`)\n    services: [{name: app, port: 80, strategy: random}]\n",
        ),
    );
    m.write(
        "inner-https.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: TraefikService\nmetadata: {name: inner-https}\nspec:\n  weighted:\n    services: [{name: app, port: 80, scheme: https}, {name: app, port: 80}]\n",
    );
    m.write(
        "inner.yaml",
        &route("inner", "  - match: Host(`inner.test`)\n    services: [{kind: TraefikService, name: inner-https}]\n"),
    );
    m.write(
        "autodetect.yaml",
        &middleware("autodetect", "contentType: {autoDetect: true}"),
    );
    m.write("ct.yaml", &route("ct", &through("ct.test", "autodetect")));
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    // contentType is read, warned of, and leaves the route served.
    assert_eq!(
        get(fjord.web, "ct.test", "/").await.backend().as_deref(),
        Some("app")
    );
    // fjord passes each chunk on as it comes: any flushInterval is what it does already.
    assert_eq!(
        get(fjord.web, "flush.test", "/").await.backend().as_deref(),
        Some("app")
    );
    let login = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:secret")
    );
    let reply = get_with(
        fjord.web,
        "app.test",
        "/api/x",
        &[("authorization", &login), ("x-webauth-user", "mallory")],
    )
    .await;
    assert_eq!(reply.backend().as_deref(), Some("app"));
    let seen = reply.json();
    assert_eq!(seen["path"], "/x", "stripped");
    assert_eq!(seen["headers"]["x-webauth-user"], "alice", "{seen}");
    assert_eq!(get(fjord.web, "app.test", "/api/x").await.status, 401);
    let bob = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bob:hunter2")
    );
    let reply = get_with(fjord.web, "bob.test", "/", &[("authorization", &bob)]).await;
    assert_eq!(reply.backend().as_deref(), Some("app"));
    let wrong = get_with(fjord.web, "bob.test", "/", &[("authorization", &login)]).await;
    assert_eq!(wrong.status, 401);

    for (object, words) in [
        (
            "Middleware default/old-allow",
            "ipWhiteList is deprecated; use ipAllowList",
        ),
        ("Middleware default/strip", "forceSlash is deprecated"),
        (
            "IngressRoute default/v2",
            "spec.routes[0].syntax \\\"v2\\\"",
        ),
        (
            "IngressRoute default/weighted",
            "TraefikService default/canary-split not found; the route answers 503",
        ),
        ("Middleware default/held", "memResponseBodyBytes do nothing"),
        (
            "Middleware default/autodetect",
            "spec.contentType.autoDetect is deprecated; the middleware alone turns detection on",
        ),
        (
            "IngressRoute default/random",
            "strategy \\\"random\\\" is not wrr, p2c, hrw or leasttime",
        ),
        (
            "IngressRoute default/inner",
            "the Services its TraefikServices reach disagree on scheme or serversTransport",
        ),
    ] {
        let line = fjord.wait_for_log(words);
        assert!(line.contains(object), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn traefik_security_headers_are_sent_and_removed_options_named() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "secure.yaml",
        &middleware(
            "secure",
            "headers: {frameDeny: true, customFrameOptionsValue: SAMEORIGIN, browserXssFilter: true, permissionsPolicy: \"camera=()\", contentSecurityPolicyReportOnly: \"default-src 'self'\", featurePolicy: \"vibrate 'none'\", forceSTSHeader: true, sslRedirect: true}",
        ),
    );
    m.write(
        "hosts.yaml",
        &middleware("hosts", "headers: {allowedHosts: [app.test]}"),
    );
    m.write("routes.yaml", &route("app", &through("app.test", "secure")));
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let reply = get(fjord.web, "app.test", "/").await;
    assert_eq!(reply.backend().as_deref(), Some("app"));
    let h = &reply.headers;
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");
    assert_eq!(h["x-xss-protection"], "1; mode=block");
    assert_eq!(h["permissions-policy"], "camera=()");
    assert_eq!(
        h["content-security-policy-report-only"],
        "default-src 'self'"
    );
    assert_eq!(h["feature-policy"], "vibrate 'none'");
    for words in [
        "featurePolicy is deprecated; use permissionsPolicy",
        "sslRedirect",
    ] {
        let line = fjord.wait_for_log(words);
        assert!(line.contains("Middleware default/secure"), "{line}");
    }
    let line = fjord.wait_for_log("Middleware default/hosts");
    assert!(line.contains("allowedHosts restricts access"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pass_host_header_false_sends_the_endpoints_address_and_nginx_upstream_vhost_a_fixed_one() {
    let m = Manifests::new();
    let app = echo("app", &m).await;
    m.write(
        "routes.yaml",
        &route(
            "hosts",
            "  - match: Host(`keep.test`)\n    services: [{name: app, port: 80}]\n  - match: Host(`own.test`)\n    services: [{name: app, port: 80, passHostHeader: false}]\n",
        ),
    );
    let vhost = support::ingress("vhost", &[("vhost.test", "Prefix", "/", "app")]).replacen(
        "namespace: default}",
        "namespace: default, annotations: {nginx.ingress.kubernetes.io/upstream-vhost: internal.example}}",
        1,
    );
    m.write("vhost.yaml", &vhost);
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let keep = get(fjord.web, "keep.test", "/").await.json();
    assert_eq!(keep["host"], "keep.test");
    let own = get(fjord.web, "own.test", "/").await.json();
    assert_eq!(own["host"], app.addr.to_string(), "the endpoint's address");
    assert_eq!(own["headers"]["x-forwarded-host"], "own.test");
    let fixed = get(fjord.web, "vhost.test", "/").await.json();
    assert_eq!(fixed["host"], "internal.example");
    assert_eq!(
        fixed["headers"]["x-forwarded-host"], "vhost.test",
        "the client's, as nginx sends it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compress_offers_only_its_encodings_and_uses_its_default_without_accept_encoding() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "mw.yaml",
        &middleware(
            "squeeze",
            "compress: {encodings: [zstd, gzip], defaultEncoding: gzip, minResponseBodyBytes: 100}",
        ),
    );
    m.write("route.yaml", &route("web", &through("zip.test", "squeeze")));
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let encoding = |reply: &support::Reply| {
        reply
            .headers
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let br = get_with(
        fjord.web,
        "zip.test",
        "/bytes/2000",
        &[("accept-encoding", "br")],
    )
    .await;
    assert_eq!(encoding(&br), None, "br is not offered");
    assert_eq!(br.body.len(), 2000);
    let none = get(fjord.web, "zip.test", "/bytes/2000").await;
    assert_eq!(
        encoding(&none).as_deref(),
        Some("gzip"),
        "the default, with no Accept-Encoding"
    );
    let star = get_with(
        fjord.web,
        "zip.test",
        "/bytes/2000",
        &[("accept-encoding", "*")],
    )
    .await;
    assert_eq!(encoding(&star).as_deref(), Some("gzip"));
    let (_, out) = support::check(m.path(), None);
    support::assert_diagnostic(&out, "Middleware default/squeeze", "zstd is not offered");
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_subnet_makes_an_ipv6_client_its_subnet() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "mw.yaml",
        &[
            middleware(
                "subnet",
                "ipAllowList: {sourceRange: [\"::/128\"], ipStrategy: {ipv6Subnet: 64}}",
            ),
            middleware("exact", "ipAllowList: {sourceRange: [\"::/128\"]}"),
        ]
        .join("---\n"),
    );
    m.write(
        "route.yaml",
        &route(
            "web",
            &format!(
                "{}{}",
                through("subnet.test", "subnet"),
                through("exact.test", "exact")
            ),
        ),
    );
    let config =
        "entryPoints:\n  web:\n    address: \"[::1]:0\"\nadmin:\n  address: \"127.0.0.1:0\"\n";
    let fjord = Fjord::start(m.path(), config);
    assert_eq!(
        get(fjord.web, "subnet.test", "/")
            .await
            .backend()
            .as_deref(),
        Some("app"),
        "::1 counts as ::, the first address of its /64"
    );
    assert_eq!(get(fjord.web, "exact.test", "/").await.status, 403);
}

/// `nativeLB: true`: requests go to the Service's cluster IP, not to its endpoints.
#[tokio::test(flavor = "multi_thread")]
async fn native_lb_goes_to_the_cluster_ip() {
    let m = Manifests::new();
    let (_cluster, _pod) = support::cluster_ip_service(&m, "kube").await;
    m.write(
        "routes.yaml",
        &route(
            "kube",
            "  - match: Host(`native.test`)\n    services: [{name: kube, port: http, nativeLB: true}]\n  - match: Host(`pods.test`)\n    services: [{name: kube, port: http}]\n",
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(
        get(fjord.web, "native.test", "/")
            .await
            .backend()
            .as_deref(),
        Some("cluster-ip")
    );
    assert_eq!(
        get(fjord.web, "pods.test", "/").await.backend().as_deref(),
        Some("pod")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn encoded_characters_trailing_slash_redirects_and_query_parameters() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "enc.yaml",
        &middleware("enc", "encodedCharacters: {allowEncodedSlash: true}"),
    );
    m.write(
        "slash.yaml",
        &middleware(
            "slash",
            "redirectTrailingSlash: {mode: add, permanent: true}",
        ),
    );
    m.write(
        "query.yaml",
        &middleware(
            "query",
            "queryParameters: {set: {c: \"6\"}, add: {d: \"4\"}, delete: [fbclid]}",
        ),
    );
    let r = through;
    m.write(
        "routes.yaml",
        &route(
            "app",
            &[
                r("enc.test", "enc"),
                r("slash.test", "slash"),
                r("query.test", "query"),
            ]
            .concat(),
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;

    // Allowed: an encoded slash reaches the backend as sent. Refused: the rest Traefik lists.
    let seen = get(web, "enc.test", "/files/a%2Fb").await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.json()["path"], "/files/a%2Fb");
    for path in ["/a%5Cb", "/a%3bb", "/a%00", "/a%25", "/a%3F", "/a%23"] {
        let refused = get(web, "enc.test", path).await;
        assert_eq!((path, refused.status.as_u16()), (path, 400));
        assert_eq!(refused.body, "400 bad request\n");
    }
    assert_eq!(get(web, "enc.test", "/a%20b").await.status, 200);

    let moved = get(web, "slash.test", "/about?q=1").await;
    assert_eq!(
        (
            moved.status.as_u16(),
            moved.headers["location"].to_str().unwrap()
        ),
        (301, "http://slash.test/about/?q=1")
    );
    let post = Request::post(format!("http://{web}/form"))
        .header("host", "slash.test")
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(send(&client(), post).await.status, 308);
    for path in ["/", "/about/"] {
        let seen = get(web, "slash.test", path).await;
        assert_eq!((path, seen.json()["path"].as_str()), (path, Some(path)));
    }

    let seen = get(web, "query.test", "/foo?a=1&c=3&fbclid=abc")
        .await
        .json();
    assert_eq!(seen["path"], "/foo?a=1&c=6&d=4");
    let seen = get(web, "query.test", "/foo").await.json();
    assert_eq!(seen["path"], "/foo?c=6&d=4");
}

#[tokio::test(flavor = "multi_thread")]
async fn circuit_breakers_open_on_their_condition_answer_for_the_service_and_close_again() {
    let m = Manifests::new();
    let _app = echo("app", &m).await;
    let _other = echo("other", &m).await;
    m.write(
        "dead.yaml",
        &service("dead", "127.0.0.1:1".parse().unwrap()),
    );
    m.write(
        "errors.yaml",
        &middleware(
            "errors",
            "circuitBreaker: {expression: \"ResponseCodeRatio(500, 600, 0, 600) > 0.5\", fallbackDuration: 2s, recoveryDuration: 1ms}",
        ),
    );
    m.write(
        "network.yaml",
        &middleware(
            "network",
            "circuitBreaker: {expression: \"NetworkErrorRatio() > 0.5\", responseCode: 418, fallbackDuration: 1m}",
        ),
    );
    let to = |host: &str, mw: &str, svc: &str| {
        format!(
            "  - match: Host(`{host}`)\n    middlewares: [{{name: {mw}}}]\n    services: [{{name: {svc}, port: 80}}]\n"
        )
    };
    m.write("app.yaml", &route("app", &to("app.test", "errors", "app")));
    m.write(
        "other.yaml",
        &route("other", &to("other.test", "errors", "other")),
    );
    m.write(
        "dead-route.yaml",
        &route("dead", &to("dead.test", "network", "dead")),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;

    // One 500 trips it: the next request is answered by fjord, and the backend never sees it.
    assert_eq!(get(web, "app.test", "/status/500").await.status, 500);
    let open = get(web, "app.test", "/").await;
    assert_eq!(
        (open.status.as_u16(), open.body.as_str()),
        (503, "503 no available server\n")
    );
    assert_eq!(open.backend(), None);
    // Another route with the same middleware has its own breaker.
    assert_eq!(
        get(web, "other.test", "/").await.backend().as_deref(),
        Some("other")
    );

    // After the fallback duration (and a recovery of 1 ms) the service is asked again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reply = get(web, "app.test", "/").await;
        if reply.backend().as_deref() == Some("app") {
            break;
        }
        assert_eq!(reply.status, 503);
        assert!(
            std::time::Instant::now() < deadline,
            "the breaker never closed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A backend that cannot be reached: one 502, then the breaker's own status.
    assert_eq!(get(web, "dead.test", "/").await.status, 502);
    let open = get(web, "dead.test", "/").await;
    assert_eq!(
        (open.status.as_u16(), open.body.as_str()),
        (418, "418 i'm a teapot\n")
    );
    let metrics = support::tls_free_get(fjord.admin, "/metrics").await;
    assert!(
        metrics.contains(r#"fjord_middleware_rejections_total{middleware="default/network",reason="circuit_open"} 1"#),
        "{metrics}"
    );

    // An expression fjord cannot read is named where it fails.
    let bad = Manifests::new();
    bad.write(
        "bad.yaml",
        &middleware(
            "bad",
            "circuitBreaker: {expression: \"NetworkErrorRatio() > 0.5 && Latency(50) > 3\"}",
        ),
    );
    let (_, out) = support::check(bad.path(), None);
    assert!(
        out.contains("Middleware default/bad: spec.circuitBreaker.expression \"NetworkErrorRatio() > 0.5 && Latency(50) > 3\" does not parse: at byte 29"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_servers_transports_timeouts_bound_its_routes_and_the_rest_are_named() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "transport.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: ServersTransport\nmetadata: {name: quick, namespace: default}\nspec:\n  forwardingTimeouts: {dialTimeout: 1s, responseHeaderTimeout: 300ms, idleConnTimeout: 10s}\n  maxIdleConnsPerHost: 4\n",
    );
    m.write(
        "routes.yaml",
        &route(
            "app",
            "  - match: Host(`quick.test`)\n    services: [{name: app, port: 80, serversTransport: quick}]\n  - match: Host(`patient.test`)\n    services: [{name: app, port: 80}]\n",
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    // The transport's responseHeaderTimeout: a backend slower than it is a 504.
    let late = get(fjord.web, "quick.test", "/delay/1500").await;
    assert_eq!((late.status.as_u16(), late.backend()), (504, None));
    assert_eq!(get(fjord.web, "quick.test", "/delay/10").await.status, 200);
    // A route without the transport waits as the static configuration says (60 s).
    assert_eq!(
        get(fjord.web, "patient.test", "/delay/1500").await.status,
        200
    );
    for words in [
        "forwardingTimeouts.idleConnTimeout is not held per transport",
        "maxIdleConnsPerHost is not held per transport",
    ] {
        let line = fjord.wait_for_log(words);
        assert!(line.contains("IngressRoute default/app"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_services_middlewares_run_after_the_routes_and_services_must_agree_on_them() {
    let m = Manifests::new();
    let _e = echo("app", &m).await;
    m.write(
        "mw.yaml",
        &[
            middleware("route-prefix", "addPrefix: {prefix: /route}"),
            middleware("service-prefix", "addPrefix: {prefix: /service}"),
            middleware("tag", "headers: {customRequestHeaders: {X-Tag: service}}"),
        ]
        .join("---\n"),
    );
    m.write(
        "routes.yaml",
        &route(
            "app",
            "  - match: Host(`app.test`)\n    middlewares: [{name: route-prefix}]\n    services:\n    - {name: app, port: 80, middlewares: [{name: service-prefix}, {name: tag}]}\n",
        ),
    );
    m.write(
        "split.yaml",
        &route(
            "split",
            "  - match: Host(`split.test`)\n    services:\n    - {name: app, port: 80, middlewares: [{name: tag}]}\n    - {name: app, port: 80}\n",
        ),
    );
    // A TraefikService's Services run theirs the same way.
    m.write(
        "canary.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: TraefikService\nmetadata: {name: canary}\nspec:\n  weighted:\n    services:\n    - {name: app, port: 80, weight: 3, middlewares: [{name: tag}]}\n    - {name: app, port: 80, middlewares: [{name: tag}]}\n",
    );
    m.write(
        "canary-route.yaml",
        &route(
            "canary",
            "  - match: Host(`canary.test`)\n    middlewares: [{name: route-prefix}]\n    services: [{name: canary, kind: TraefikService}]\n",
        ),
    );
    let (code, out) = support::check(m.path(), None);
    assert_ne!(code, 0, "{out}");
    support::assert_diagnostic(
        &out,
        "IngressRoute default/split",
        "spec.routes[0].services disagree on middlewares; the route has one set of endpoints, reached one way through one chain",
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let reply = get(fjord.web, "app.test", "/x").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = reply.json();
    assert_eq!(
        seen["path"], "/service/route/x",
        "the route's middleware ran first, the service's after it"
    );
    assert_eq!(seen["headers"]["x-tag"], "service");
    let canary = get(fjord.web, "canary.test", "/c").await.json();
    assert_eq!(
        (canary["path"].as_str(), canary["headers"]["x-tag"].as_str()),
        (Some("/route/c"), Some("service"))
    );
    // The route whose services disagree is not served without them.
    assert_eq!(get(fjord.web, "split.test", "/").await.status, 404);
}
