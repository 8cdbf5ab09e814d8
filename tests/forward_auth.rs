//! `forwardAuth` against a real authentication server in the test: it allows (its headers
//! and cookies reach the backend and the client), denies with a body and headers, redirects to
//! its login page, fails (500, never let through), and speaks TLS with a CA from a Secret
//! (refusing a certificate for another name). What the server is asked follows Traefik's
//! `X-Forwarded-*`, and a client cannot forge them unless its address is trusted.

mod support;

use support::auth::AuthServer;
use support::tls::Ca;
use support::{Echo, Fjord, Manifests, Reply, service, tls_free_get};

/// A forwardAuth Middleware `name` with `settings`, and an Ingress for `host` using it.
fn guarded(name: &str, host: &str, settings: &str) -> String {
    support::through_middleware(name, host, &format!("  forwardAuth:\n{settings}"))
}

async fn request(
    fjord: &Fjord,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    support::request_with(fjord.web, method, host, path, headers).await
}

struct Setup {
    fjord: Fjord,
    auth: AuthServer,
    _app: Echo,
    _m: Manifests,
}

/// fjord with an app behind `auth.test`, guarded by a forwardAuth at the test's server with
/// `extra` settings.
async fn setup(extra: &str) -> Setup {
    let auth = AuthServer::start().await;
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = Manifests::new();
    m.write("app.yaml", &service("app", app.addr));
    m.write(
        "auth.yaml",
        &guarded(
            "auth",
            "auth.test",
            &format!("    address: http://{}/oauth2/auth\n{extra}", auth.addr),
        ),
    );
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    Setup {
        fjord,
        auth,
        _app: app,
        _m: m,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_requests_carry_the_servers_headers_and_cookies_and_forged_ones_are_replaced() {
    let s = setup(
        "    authResponseHeaders: [X-Auth-User]\n    authResponseHeadersRegex: ^Remote-\n    addAuthCookiesToResponse: [_session]\n",
    )
    .await;
    let reply = request(
        &s.fjord,
        "POST",
        "auth.test",
        "/cookie/_session?q=1",
        &[
            ("authorization", "Bearer good"),
            ("x-auth-user", "mallory"),
            ("remote-email", "forged@example.com"),
            ("x-forwarded-uri", "/forged"),
            ("cookie", "a=b"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = reply.json();
    assert_eq!(
        seen["headers"]["x-auth-user"], "alice",
        "the server's, not the client's"
    );
    assert_eq!(seen["headers"]["remote-email"], "alice@example.com");
    assert_eq!(seen["headers"]["remote-groups"], "admins", "by the regex");
    let cookies: Vec<&str> = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        cookies,
        ["_session=s1; Path=/; HttpOnly"],
        "the server's _session replaces the backend's; tracking is not named"
    );

    let asked = s.auth.asked();
    assert_eq!(asked.len(), 1);
    let q = &asked[0];
    assert_eq!(
        q.method, "GET",
        "asked with GET whatever the client's method"
    );
    assert_eq!(q.uri, "/oauth2/auth");
    let h = |name: &str| q.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(h("x-forwarded-method").as_deref(), Some("POST"));
    assert_eq!(
        h("x-forwarded-uri").as_deref(),
        Some("/cookie/_session?q=1"),
        "not the forged one"
    );
    assert_eq!(h("x-forwarded-host").as_deref(), Some("auth.test"));
    assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(h("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(h("authorization").as_deref(), Some("Bearer good"));
    assert_eq!(h("cookie").as_deref(), Some("a=b"));
    assert_eq!(
        h("host"),
        Some(s.auth.addr.to_string()),
        "the server's own host"
    );
    assert_eq!(h("content-length"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_reaches_the_client_with_its_body_and_headers_and_the_backend_never_sees_it() {
    let s = setup("").await;
    let reply = request(
        &s.fjord,
        "GET",
        "auth.test",
        "/",
        &[("authorization", "Bearer bad")],
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body, "denied: token revoked\n");
    assert_eq!(reply.headers["x-auth-reason"], "token revoked");
    assert!(
        reply.headers.get("x-backend").is_none(),
        "the backend never answered"
    );
    let other = request(
        &s.fjord,
        "GET",
        "auth.test",
        "/",
        &[("authorization", "Basic x")],
    )
    .await;
    assert_eq!(other.status, 401);
    assert_eq!(other.headers["www-authenticate"], "Bearer realm=\"test\"");
    let metrics = tls_free_get(s.fjord.admin, "/metrics").await;
    assert!(
        metrics.contains(r#"fjord_middleware_rejections_total{middleware="default/auth",reason="forward_auth"} 2"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_the_login_page_is_resolved_against_the_address_unless_kept() {
    let s = setup("").await;
    let reply = request(&s.fjord, "GET", "auth.test", "/private", &[]).await;
    assert_eq!(reply.status, 302);
    assert_eq!(
        reply.headers["location"],
        format!("http://{}/oauth2/start?rd=%2F", s.auth.addr).as_str()
    );
    assert!(reply.body.contains("/oauth2/start"));
    let kept = setup("    preserveLocationHeader: true\n").await;
    let reply = request(&kept.fjord, "GET", "auth.test", "/private", &[]).await;
    assert_eq!(reply.headers["location"], "/oauth2/start?rd=%2F");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_method_and_request_headers_asked_with_are_the_middlewares_choice() {
    let s =
        setup("    preserveRequestMethod: true\n    authRequestHeaders: [Authorization]\n").await;
    let reply = request(
        &s.fjord,
        "DELETE",
        "auth.test",
        "/",
        &[("authorization", "Bearer good"), ("cookie", "a=b")],
    )
    .await;
    assert_eq!(reply.status, 200);
    let q = &s.auth.asked()[0];
    assert_eq!(q.method, "DELETE");
    assert!(
        q.headers.get("cookie").is_none(),
        "only authRequestHeaders are sent"
    );
    assert_eq!(q.headers["authorization"], "Bearer good");
    assert_eq!(
        q.headers["x-forwarded-method"], "DELETE",
        "fjord's own are always sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_the_request_with_500_and_never_lets_it_through() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = Manifests::new();
    m.write("app.yaml", &service("app", app.addr));
    m.write(
        "auth.yaml",
        &guarded(
            "auth",
            "auth.test",
            &format!("    address: http://{closed}/auth\n"),
        ),
    );
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let reply = request(
        &fjord,
        "GET",
        "auth.test",
        "/",
        &[("authorization", "Bearer good")],
    )
    .await;
    assert_eq!(reply.status, 500);
    assert!(reply.headers.get("x-backend").is_none());
    let line = fjord.wait_for_log("the authentication server failed");
    assert!(line.contains("default/auth"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_the_ca_from_a_secret_and_a_wrong_name_refused() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["auth.internal", "127.0.0.1"]);
    let auth = AuthServer::start_tls(&cert, &key).await;
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = Manifests::new();
    m.write("app.yaml", &service("app", app.addr));
    let indented: String = ca.pem.lines().map(|l| format!("    {l}\n")).collect();
    m.write(
        "ca.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: auth-ca, namespace: default}}\nstringData:\n  ca.crt: |\n{indented}"
        ),
    );
    let port = auth.addr.port();
    m.write(
        "good.yaml",
        &guarded(
            "good",
            "good.test",
            &format!(
                "    address: https://127.0.0.1:{port}/auth\n    tls: {{caSecret: auth-ca}}\n"
            ),
        ),
    );
    // The same server by a name its certificate does not hold.
    m.write(
        "wrong.yaml",
        &guarded(
            "wrong",
            "wrong.test",
            &format!(
                "    address: https://localhost:{port}/auth\n    tls: {{caSecret: auth-ca}}\n"
            ),
        ),
    );
    // No CA: the system's roots do not know the test's CA.
    m.write(
        "system.yaml",
        &guarded(
            "system",
            "system.test",
            &format!("    address: https://127.0.0.1:{port}/auth\n"),
        ),
    );
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let ok = request(
        &fjord,
        "GET",
        "good.test",
        "/",
        &[("authorization", "Bearer good")],
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(auth.asked().len(), 1);
    for host in ["wrong.test", "system.test"] {
        let refused = request(
            &fjord,
            "GET",
            host,
            "/",
            &[("authorization", "Bearer good")],
        )
        .await;
        assert_eq!(refused.status, 500, "{host}: the handshake must fail");
    }
    assert_eq!(
        auth.asked().len(),
        1,
        "no question reached the server over a bad handshake"
    );
}

#[test]
fn bad_settings_are_refused_naming_the_field_and_deprecated_ones_warned() {
    let m = Manifests::new();
    m.write("app.yaml", &service("app", "127.0.0.1:9".parse().unwrap()));
    let cases = [
        (
            "relative",
            "    address: /auth\n",
            "spec.forwardAuth.address \"/auth\" is not an absolute",
        ),
        (
            "ftp",
            "    address: ftp://a/b\n",
            "is not an absolute http:// or https:// URL",
        ),
        (
            "body",
            "    address: http://a/\n    forwardBody: true\n    maxBodySize: -2\n",
            "spec.forwardAuth.maxBodySize -2 is negative",
        ),
        (
            "header",
            "    address: http://a/\n    authResponseHeaders: [\"bad header\"]\n",
            "spec.forwardAuth.authResponseHeaders[0] \"bad header\" is not a header name",
        ),
        (
            "regex",
            "    address: http://a/\n    authResponseHeadersRegex: \"(\"\n",
            "spec.forwardAuth.authResponseHeadersRegex",
        ),
        (
            "ca",
            "    address: https://a/\n    tls: {caSecret: missing}\n",
            "spec.forwardAuth.tls.caSecret: Secret default/missing not found",
        ),
    ];
    for (name, settings, _) in &cases {
        m.write(
            &format!("{name}.yaml"),
            &guarded(name, &format!("{name}.test"), settings),
        );
    }
    m.write(
        "warned.yaml",
        &guarded(
            "warned",
            "warned.test",
            "    address: http://a/\n    headerField: X-User\n",
        ),
    );
    let (code, out) = support::check(m.path(), None);
    assert_ne!(code, 0, "{out}");
    for (name, _, why) in &cases {
        support::assert_diagnostic(&out, &format!("Middleware default/{name}"), why);
    }
    m.write(
        "unbounded.yaml",
        &guarded(
            "unbounded",
            "unbounded.test",
            "    address: http://a/\n    forwardBody: true\n",
        ),
    );
    let (_, out) = support::check(m.path(), None);
    for (name, words) in [
        ("warned", "headerField does nothing"),
        (
            "unbounded",
            "spec.forwardAuth.maxBodySize unset or -1: fjord holds no body unbounded, so it sends bodies up to 1 MiB",
        ),
    ] {
        assert!(
            out.lines().any(
                |l| l.starts_with(&format!("warning: Middleware default/{name}:"))
                    && l.contains(words)
            ),
            "{name}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_body_sends_the_body_to_the_server_and_the_backend_and_refuses_a_longer_one() {
    let s = setup("    forwardBody: true\n    maxBodySize: 16\n").await;
    let post = |path: &str, body: &'static [u8]| {
        http::Request::post(format!("http://{}{path}", s.fjord.web))
            .header("host", "auth.test")
            .header("authorization", "Bearer good")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(body)))
            .unwrap()
    };
    let allowed = support::send(&support::client(), post("/form", b"hello=world")).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let seen = allowed.json();
    assert_eq!(
        (seen["method"].as_str(), seen["body_bytes"].as_u64()),
        (Some("POST"), Some(11)),
        "the backend gets the body the server saw"
    );
    let asked = s.auth.asked();
    let question = asked.last().unwrap();
    assert_eq!(&question.body[..], b"hello=world");
    assert_eq!(question.headers["content-length"], "11");
    assert_eq!(
        question.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    // The server decides with the body: a denial still reaches the client.
    let denied = send_denied(&s).await;
    assert_eq!(denied.status, 403);
    // A body past maxBodySize is refused with a 401, as Traefik refuses it, unasked.
    let before = s.auth.asked().len();
    let long = support::send(&support::client(), post("/form", b"seventeen bytes!!")).await;
    assert_eq!(long.status, 401, "{long:?}");
    assert_eq!(s.auth.asked().len(), before, "the server is not asked");
    // A chunked body (no declared length) within it is read whole and sent on too.
    let reply = support::post_chunked(
        s.fjord.web,
        "auth.test",
        "/chunked",
        &[("authorization", "Bearer good")],
        &[b"a=1&", b"b=2"],
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["body_bytes"].as_u64(), Some(7));
    assert_eq!(&s.auth.asked().last().unwrap().body[..], b"a=1&b=2");
}

/// A POST with a body the server denies (`Bearer bad`).
async fn send_denied(s: &Setup) -> Reply {
    let req = http::Request::post(format!("http://{}/form", s.fjord.web))
        .header("host", "auth.test")
        .header("authorization", "Bearer bad")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x=1")))
        .unwrap();
    support::send(&support::client(), req).await
}
