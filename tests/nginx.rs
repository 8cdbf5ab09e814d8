//! ingress-nginx's annotations on real sockets: each honoured one by what the client gets and
//! what the backend saw; each access-restricting one fjord cannot honour rejects its Ingress,
//! naming it, while a previous good version keeps serving; every other one is named.

mod support;

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use md5::Digest as _;
use support::{Echo, Fjord, LOOPBACK_CONFIG, Manifests, check, client, get, send, service};

/// An Ingress routing `host` to Service `app`, with `nginx.ingress.kubernetes.io/` annotations.
fn annotated(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    support::nginx_ingress(name, host, "app", annotations)
}

async fn setup() -> (Manifests, Echo) {
    let backend = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = Manifests::new();
    m.write("app.yaml", &service("app", backend.addr));
    (m, backend)
}

async fn request(
    fjord: &Fjord,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> support::Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", fjord.web))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(
        &client(),
        req.body(Full::new(Bytes::from_static(body))).unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn access_annotations_are_honoured() {
    let (m, _backend) = setup().await;
    m.write(
        "allow.yaml",
        &annotated(
            "allow",
            "allow.test",
            &[("whitelist-source-range", "127.0.0.0/8")],
        ),
    );
    m.write(
        "deny.yaml",
        &annotated(
            "deny",
            "deny.test",
            &[("whitelist-source-range", "10.0.0.0/8, 192.168.0.0/16")],
        ),
    );
    // alice:secret (apr1) in an auth-file Secret, and bob's in an auth-map one.
    m.write(
        "auth.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: htpasswd}\nstringData:\n  auth: \"alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\"\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: users}\nstringData:\n  bob: \"$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\"\n",
    );
    m.write(
        "file.yaml",
        &annotated(
            "file",
            "file.test",
            &[
                ("auth-type", "basic"),
                ("auth-secret", "htpasswd"),
                ("auth-realm", "Staff only"),
            ],
        ),
    );
    m.write(
        "map.yaml",
        &annotated(
            "map",
            "map.test",
            &[
                ("auth-type", "basic"),
                ("auth-secret", "default/users"),
                ("auth-secret-type", "auth-map"),
            ],
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(
        get(fjord.web, "allow.test", "/").await.backend().as_deref(),
        Some("app")
    );
    let denied = get(fjord.web, "deny.test", "/").await;
    assert_eq!((denied.status.as_u16(), denied.backend()), (403, None));

    let login = |who: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{who}:secret"))
        )
    };
    let anonymous = get(fjord.web, "file.test", "/").await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.headers["www-authenticate"],
        "Basic realm=\"Staff only\""
    );
    let alice = login("alice");
    let ok = request(
        &fjord,
        "GET",
        "file.test",
        "/",
        &[("authorization", &alice)],
        b"",
    )
    .await;
    assert_eq!(ok.backend().as_deref(), Some("app"));
    let bob = login("bob");
    let ok = request(
        &fjord,
        "GET",
        "map.test",
        "/",
        &[("authorization", &bob)],
        b"",
    )
    .await;
    assert_eq!(ok.backend().as_deref(), Some("app"));
    let wrong = request(
        &fjord,
        "GET",
        "map.test",
        "/",
        &[("authorization", &alice)],
        b"",
    )
    .await;
    assert_eq!(wrong.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_and_body_size_are_honoured() {
    let (m, _backend) = setup().await;
    // 1 request per minute with a burst of 1 × 2.
    m.write(
        "limited.yaml",
        &annotated(
            "limited",
            "limited.test",
            &[("limit-rpm", "1"), ("limit-burst-multiplier", "2")],
        ),
    );
    m.write(
        "small.yaml",
        &annotated("small", "small.test", &[("proxy-body-size", "1k")]),
    );
    m.write(
        "conns.yaml",
        &annotated("conns", "conns.test", &[("limit-connections", "1")]),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    // limit-connections counts per client address, as nginx's limit_conn does: another
    // client is served while this one has its one request in flight.
    let web = fjord.web;
    let slow = tokio::spawn(async move { get(web, "conns.test", "/delay/800").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = support::get_from(web, "conns.test", "/", "127.0.0.2".parse().unwrap()).await;
    assert_eq!(other.status, 200);
    assert_eq!(get(web, "conns.test", "/").await.status, 429);
    assert_eq!(slow.await.unwrap().status, 200);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(fjord.web, "limited.test", "/").await.status.as_u16());
    }
    // nginx answers 503 by default; fjord answers 429 with Retry-After (README).
    assert_eq!(statuses, [200, 200, 429, 429]);

    // limit-whitelist: the same limit does not count a listed peer.
    m.write(
        "exempt.yaml",
        &annotated(
            "exempt",
            "exempt.test",
            &[
                ("limit-rpm", "1"),
                ("limit-connections", "1"),
                ("limit-whitelist", "10.0.0.0/8, 127.0.0.1"),
            ],
        ),
    );
    m.write(
        "denied.yaml",
        &annotated(
            "denied",
            "denied.test",
            &[("denylist-source-range", "192.0.2.0/24,127.0.0.0/8")],
        ),
    );
    m.write(
        "other.yaml",
        &annotated(
            "other",
            "other.test",
            &[("denylist-source-range", "192.0.2.0/24")],
        ),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get(fjord.web, "other.test", "/").await.status == 404 {
        assert!(std::time::Instant::now() < deadline, "never reloaded");
    }
    for _ in 0..5 {
        assert_eq!(
            get(fjord.web, "exempt.test", "/").await.status,
            200,
            "exempt from the limit"
        );
    }
    let denied = get(fjord.web, "denied.test", "/").await;
    assert_eq!((denied.status.as_u16(), denied.backend()), (403, None));
    assert_eq!(
        get(fjord.web, "other.test", "/").await.backend().as_deref(),
        Some("app")
    );

    let big = request(&fjord, "POST", "small.test", "/", &[], &[b'x'; 2048]).await;
    assert_eq!((big.status.as_u16(), big.backend()), (413, None));
    let fits = request(&fjord, "POST", "small.test", "/", &[], &[b'x'; 1024]).await;
    assert_eq!(fits.json()["body_bytes"], 1024);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_honoured() {
    let (m, _backend) = setup().await;
    m.write(
        "moved.yaml",
        &annotated(
            "moved",
            "moved.test",
            &[("permanent-redirect", "https://new.example/$path")],
        ),
    );
    m.write(
        "away.yaml",
        &annotated(
            "away",
            "away.test",
            &[("temporal-redirect", "https://away.example/")],
        ),
    );
    m.write(
        "root.yaml",
        &annotated("root", "root.test", &[("app-root", "/app")]),
    );
    m.write(
        "forced.yaml",
        &annotated("forced", "forced.test", &[("force-ssl-redirect", "true")]),
    );
    let www = [("from-to-www-redirect", "true")];
    m.write("twin.yaml", &annotated("twin", "www.twin.test", &www));
    m.write("bare.yaml", &annotated("bare", "bare.test", &www));
    m.write("taken.yaml", &annotated("taken", "taken.test", &www));
    m.write(
        "www-taken.yaml",
        &annotated("www-taken", "www.taken.test", &[]),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let twin = get(fjord.web, "twin.test", "/a?b=1").await;
    assert_eq!(twin.status, 301);
    assert_eq!(twin.headers["location"], "http://www.twin.test/a?b=1");
    let bare = get(fjord.web, "www.bare.test", "/").await;
    assert_eq!(bare.headers["location"], "http://bare.test/");
    // A twin another Ingress serves is that Ingress's, as nginx leaves it.
    let taken = get(fjord.web, "www.taken.test", "/").await;
    assert_eq!(taken.backend().as_deref(), Some("app"));
    let moved = get(fjord.web, "moved.test", "/x?y=1").await;
    assert_eq!(moved.status, 301);
    assert_eq!(moved.headers["location"], "https://new.example/$path");
    let away = get(fjord.web, "away.test", "/x").await;
    assert_eq!(away.status, 302);
    assert_eq!(away.headers["location"], "https://away.example/");
    let root = get(fjord.web, "root.test", "/").await;
    assert_eq!(root.status, 302);
    assert_eq!(root.headers["location"], "http://root.test/app");
    assert_eq!(
        get(fjord.web, "root.test", "/app")
            .await
            .backend()
            .as_deref(),
        Some("app")
    );
    let forced = get(fjord.web, "forced.test", "/a?b").await;
    assert_eq!(forced.status, 301);
    assert_eq!(forced.headers["location"], "https://forced.test/a?b");
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_redirect_false_opts_out_of_the_entry_points_redirect() {
    let (m, _backend) = setup().await;
    let ca = support::tls::Ca::new();
    m.write(
        "cert.yaml",
        &ca.secret("cert", &["kept.test", "moved.test"]),
    );
    let with_tls = |name: &str, host: &str, annotations: &[(&str, &str)]| {
        annotated(name, host, annotations).replace(
            "  rules:\n",
            &format!("  tls:\n  - secretName: cert\n    hosts: [{host}]\n  rules:\n"),
        )
    };
    m.write(
        "kept.yaml",
        &with_tls("kept", "kept.test", &[("ssl-redirect", "false")]),
    );
    m.write("moved.yaml", &with_tls("moved", "moved.test", &[]));
    let config = "entryPoints:\n  web:\n    address: \"127.0.0.1:0\"\n    http:\n      redirections:\n        entryPoint: {to: websecure}\n  websecure:\n    address: \"127.0.0.1:0\"\n    exposedPort: 443\n    http:\n      tls: {}\nadmin:\n  address: \"127.0.0.1:0\"\n";
    let fjord = Fjord::start(m.path(), config);
    assert_eq!(
        get(fjord.web, "kept.test", "/").await.backend().as_deref(),
        Some("app")
    );
    let moved = get(fjord.web, "moved.test", "/").await;
    assert_eq!(moved.status, 308);
    assert_eq!(moved.headers["location"], "https://moved.test/");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_and_forwarded_prefix_are_honoured() {
    let (m, _backend) = setup().await;
    m.write(
        "cors.yaml",
        &annotated(
            "cors",
            "cors.test",
            &[
                ("enable-cors", "true"),
                ("cors-allow-origin", "https://ui.example"),
                ("cors-allow-methods", "GET, POST"),
                ("x-forwarded-prefix", "/shop"),
            ],
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let preflight = request(
        &fjord,
        "OPTIONS",
        "cors.test",
        "/",
        &[
            ("origin", "https://ui.example"),
            ("access-control-request-method", "POST"),
        ],
        b"",
    )
    .await;
    assert_eq!(preflight.backend(), None, "fjord answers the preflight");
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "https://ui.example"
    );
    assert!(
        preflight.headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert_eq!(
        preflight.headers["access-control-allow-credentials"],
        "true"
    );
    let simple = request(
        &fjord,
        "GET",
        "cors.test",
        "/",
        &[("origin", "https://ui.example")],
        b"",
    )
    .await;
    assert_eq!(
        simple.headers["access-control-allow-origin"],
        "https://ui.example"
    );
    assert_eq!(simple.json()["headers"]["x-forwarded-prefix"], "/shop");
}

#[tokio::test(flavor = "multi_thread")]
async fn what_fjord_cannot_honour_is_refused_or_named_and_a_good_version_keeps_serving() {
    let (m, _backend) = setup().await;
    m.write(
        "shop.yaml",
        &annotated(
            "shop",
            "shop.test",
            &[("whitelist-source-range", "127.0.0.1")],
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(
        get(fjord.web, "shop.test", "/").await.backend().as_deref(),
        Some("app")
    );
    // Each access-restricting annotation fjord cannot honour, added to the served Ingress:
    // refused, named, and the last good version keeps serving (and keeps its allow list).
    for (name, value) in [
        (
            "configuration-snippet",
            "more_set_headers \"X-Frame-Options: DENY\";",
        ),
        ("auth-signin", "https://login.example/"),
        ("limit-rate", "100"),
        ("auth-type", "ntlm"),
        ("satisfy", "any"),
        ("auth-tls-verify-client", "on"),
        ("global-rate-limit", "100"),
        ("enable-modsecurity", "true"),
    ] {
        m.write(
            "shop.yaml",
            &annotated(
                "shop",
                "shop.test",
                &[("whitelist-source-range", "127.0.0.1"), (name, value)],
            ),
        );
        let line = fjord.wait_for_log(&format!("nginx.ingress.kubernetes.io/{name}"));
        assert!(line.contains("Ingress default/shop"), "{line}");
        assert!(line.contains("last good version"), "{line}");
        assert_eq!(
            get(fjord.web, "shop.test", "/").await.backend().as_deref(),
            Some("app")
        );
    }
    // A new Ingress with one is not served at all.
    m.write(
        "new.yaml",
        &annotated("new", "new.test", &[("server-snippet", "return 200;")]),
    );
    let line = fjord.wait_for_log("Ingress default/new");
    assert!(line.contains("IngressNightmare"), "{line}");
    assert_eq!(get(fjord.web, "new.test", "/").await.status, 404);
}

/// Ingresses as ingress-nginx's documentation writes them: `fjord check` mentions every
/// annotation it does not honour, and passes none over.
#[test]
fn check_mentions_every_annotation_it_does_not_honour() {
    let m = Manifests::new();
    m.write("app.yaml", &service("app", "127.0.0.1:1".parse().unwrap()));
    let documented = [
        ("affinity-mode", "persistent"),
        ("session-cookie-name", "route"),
        ("backend-protocol", "FCGI"),
        ("proxy-next-upstream-tries", "3"),
        ("proxy-buffering", "on"),
        ("custom-http-errors", "404,503"),
        ("default-backend", "errors"),
        ("load-balance", "ewma"),
        ("proxy-next-upstream", "error timeout"),
        ("enable-access-log", "false"),
        ("proxy-ssl-verify", "on"),
        ("server-alias", "alias.example"),
        ("ssl-ciphers", "ECDHE-RSA-AES128-GCM-SHA256"),
        ("mirror-target", "http://mirror/$request_uri"),
    ];
    for (i, (name, value)) in documented.iter().enumerate() {
        m.write(
            &format!("i{i}.yaml"),
            &annotated(&format!("i{i}"), &format!("i{i}.test"), &[(name, value)]),
        );
    }
    let (code, out) = check(m.path(), None);
    let ok = code == 0;
    assert!(ok, "warnings only: {out}");
    for (i, (name, _)) in documented.iter().enumerate() {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("Ingress default/i{i}:")))
            .unwrap_or_else(|| panic!("{name} unmentioned: {out}"));
        assert!(
            line.starts_with("warning")
                && line.contains(&format!(
                    "nginx.ingress.kubernetes.io/{name} is not honoured"
                )),
            "{line}"
        );
    }
}

/// An Ingress for `host` with one path of type ImplementationSpecific, and annotations.
fn with_path(name: &str, host: &str, path: &str, annotations: &[(&str, &str)]) -> String {
    annotated(name, host, annotations)
        .replace(
            "path: /\n",
            &format!("path: {}\n", serde_json::to_string(path).unwrap()),
        )
        .replace("pathType: Prefix", "pathType: ImplementationSpecific")
}

#[tokio::test(flavor = "multi_thread")]
async fn regex_paths_and_rewrite_target_with_capture_groups() {
    let (m, _backend) = setup().await;
    m.write(
        "rewrite.yaml",
        &with_path(
            "rewrite",
            "rewrite.test",
            "/something(/|$)(.*)",
            &[("use-regex", "true"), ("rewrite-target", "/$2")],
        ),
    );
    m.write(
        "regex.yaml",
        &with_path(
            "regex",
            "regex.test",
            "/api/v[0-9]+/",
            &[("use-regex", "true")],
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    for (path, seen) in [
        ("/something/new", "/new"),
        ("/something", "/"),
        ("/SOMETHING/Case", "/Case"),
        ("/something/a/b?c=1", "/a/b?c=1"),
    ] {
        let reply = get(fjord.web, "rewrite.test", path).await;
        assert_eq!(reply.json()["path"], seen, "{path}");
    }
    assert_eq!(get(fjord.web, "rewrite.test", "/other").await.status, 404);
    assert_eq!(
        get(fjord.web, "regex.test", "/api/v2/x").await.json()["path"],
        "/api/v2/x"
    );
    assert_eq!(get(fjord.web, "regex.test", "/api/vx/").await.status, 404);

    // A path that is no regular expression rejects the Ingress, naming it.
    m.write(
        "broken.yaml",
        &with_path("broken", "broken.test", "/a(b", &[("use-regex", "true")]),
    );
    let line = fjord.wait_for_log("Ingress default/broken");
    assert!(
        line.contains("spec.rules[0].http.paths[0].path \\\"/a(b\\\""),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn canary_ingresses_take_their_weight_and_their_header() {
    let (m, _backend) = setup().await;
    let canary = Echo::start("canary", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write("canary-svc.yaml", &service("canary", canary.addr));
    let canary_of = |name: &str, host: &str, annotations: &[(&str, &str)]| {
        let mut all = vec![("canary", "true")];
        all.extend_from_slice(annotations);
        annotated(name, host, &all).replace("name: app,", "name: canary,")
    };
    for host in ["split", "header", "value", "cookie"] {
        m.write(
            &format!("{host}.yaml"),
            &annotated(host, &format!("{host}.test"), &[]),
        );
    }
    m.write(
        "split-canary.yaml",
        &canary_of("split-canary", "split.test", &[("canary-weight", "30")]),
    );
    m.write(
        "header-canary.yaml",
        &canary_of(
            "header-canary",
            "header.test",
            &[("canary-by-header", "X-Canary"), ("canary-weight", "100")],
        ),
    );
    m.write(
        "value-canary.yaml",
        &canary_of(
            "value-canary",
            "value.test",
            &[
                ("canary-by-header", "X-Env"),
                ("canary-by-header-value", "beta"),
            ],
        ),
    );
    m.write(
        "cookie-canary.yaml",
        &canary_of(
            "cookie-canary",
            "cookie.test",
            &[
                ("canary-by-header", "X-Canary"),
                ("canary-by-cookie", "beta_opt_in"),
            ],
        ),
    );
    m.write(
        "orphan.yaml",
        &canary_of("orphan", "orphan.test", &[("canary-weight", "50")]),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);

    let mut to_canary = 0;
    for _ in 0..100 {
        if get(fjord.web, "split.test", "/").await.backend().as_deref() == Some("canary") {
            to_canary += 1;
        }
    }
    assert!(
        (25..=35).contains(&to_canary),
        "{to_canary} of 100 to the canary"
    );

    let backend = |host: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let fjord = &fjord;
        async move {
            request(fjord, "GET", host, "/", headers, b"")
                .await
                .backend()
        }
    };
    // By header: always and never override the weight (here all of it to the canary).
    assert_eq!(
        backend("header.test", &[("x-canary", "always")])
            .await
            .as_deref(),
        Some("canary")
    );
    assert_eq!(
        backend("header.test", &[("x-canary", "never")])
            .await
            .as_deref(),
        Some("app")
    );
    assert_eq!(backend("header.test", &[]).await.as_deref(), Some("canary"));
    // By value: only that value; without a weight, everything else to the main Ingress.
    assert_eq!(
        backend("value.test", &[("x-env", "beta")]).await.as_deref(),
        Some("canary")
    );
    assert_eq!(
        backend("value.test", &[("x-env", "prod")]).await.as_deref(),
        Some("app")
    );
    assert_eq!(backend("value.test", &[]).await.as_deref(), Some("app"));
    // By cookie: `always` and `never`, in any of the client's cookies; the header comes first.
    for (headers, to) in [
        (&[("cookie", "a=1; beta_opt_in=always; b=2")][..], "canary"),
        (
            &[("cookie", "a=1"), ("cookie", "beta_opt_in=always")],
            "canary",
        ),
        (&[("cookie", "beta_opt_in=never")], "app"),
        (&[("cookie", "beta_opt_in=alwaysnot")], "app"),
        (&[("cookie", "not_beta_opt_in=always")], "app"),
        (
            &[("cookie", "beta_opt_in=always"), ("x-canary", "never")],
            "app",
        ),
        (
            &[("cookie", "beta_opt_in=never"), ("x-canary", "always")],
            "canary",
        ),
    ] {
        let got = backend("cookie.test", headers).await;
        assert_eq!(got.as_deref(), Some(to), "{headers:?}");
    }
    // A canary without a main Ingress is not served, and says so.
    assert_eq!(get(fjord.web, "orphan.test", "/").await.status, 404);
    let line = fjord.wait_for_log("Ingress default/orphan");
    assert!(line.contains("main Ingress"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_url_asks_as_nginx_does_and_answers_as_nginx_does() {
    let auth = support::auth::AuthServer::start().await;
    let (m, _backend) = setup().await;
    let url = format!("http://{}/verify", auth.addr);
    m.write(
        "plain.yaml",
        &annotated(
            "plain",
            "plain.test",
            &[
                ("auth-url", &url),
                ("auth-response-headers", "X-Auth-User, Remote-Email"),
            ],
        ),
    );
    m.write(
        "signin.yaml",
        &annotated(
            "signin",
            "signin.test",
            &[
                ("auth-url", &url),
                ("auth-method", "POST"),
                ("auth-signin", "https://login.example/start"),
            ],
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);

    let ok = request(
        &fjord,
        "PUT",
        "plain.test",
        "/docs/a?b=1",
        &[("authorization", "Bearer good"), ("x-auth-user", "mallory")],
        b"",
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let seen = ok.json();
    assert_eq!(seen["headers"]["x-auth-user"], "alice");
    assert_eq!(seen["headers"]["remote-email"], "alice@example.com");
    let asked = &auth.asked()[0];
    let h = |name: &str| {
        asked
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(asked.method, "GET");
    assert_eq!(
        h("x-original-url").as_deref(),
        Some("http://plain.test/docs/a?b=1")
    );
    assert_eq!(h("x-original-method").as_deref(), Some("PUT"));
    assert_eq!(h("x-auth-request-redirect").as_deref(), Some("/docs/a?b=1"));
    assert_eq!(
        h("x-sent-from").as_deref(),
        Some("nginx-ingress-controller")
    );
    assert_eq!(h("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(h("authorization").as_deref(), Some("Bearer good"));

    // nginx's own answers: 401 with the server's challenge, 403 without its body, a redirect
    // status from the server is a failure (500), and auth-signin turns a 401 into a redirect.
    let no = request(
        &fjord,
        "GET",
        "plain.test",
        "/",
        &[("authorization", "Basic x")],
        b"",
    )
    .await;
    assert_eq!(no.status, 401);
    assert_eq!(no.headers["www-authenticate"], "Bearer realm=\"test\"");
    let bad = request(
        &fjord,
        "GET",
        "plain.test",
        "/",
        &[("authorization", "Bearer bad")],
        b"",
    )
    .await;
    assert_eq!(bad.status, 403);
    assert!(
        !bad.body.contains("token revoked"),
        "nginx does not pass the body on"
    );
    let none = request(&fjord, "GET", "plain.test", "/", &[], b"").await;
    assert_eq!(none.status, 500);
    let redirected = request(
        &fjord,
        "GET",
        "signin.test",
        "/p?q=1",
        &[("authorization", "Basic x")],
        b"",
    )
    .await;
    assert_eq!(redirected.status, 302);
    assert_eq!(
        redirected.headers["location"],
        "https://login.example/start?rd=http%3A%2F%2Fsignin.test%2Fp%3Fq%3D1"
    );
    assert_eq!(auth.asked().last().unwrap().method, "POST", "auth-method");
}

/// The oauth2-proxy pattern ingress-nginx's documentation gives: `auth-url` at `$host`,
/// `auth-signin` with `$host` and `$escaped_request_uri`. fjord asks the Ingress's own host,
/// and refuses `$host` where a client could choose it.
#[tokio::test(flavor = "multi_thread")]
async fn auth_url_at_host_asks_the_ingresses_own_host() {
    let auth = support::auth::AuthServer::start().await;
    let (m, _backend) = setup().await;
    let port = auth.addr.port();
    let url = format!("http://$host:{port}/oauth2/auth");
    let signin = "https://$host/oauth2/start?rd=$escaped_request_uri";
    // `localhost` stands for the Ingress's host: it resolves to the auth server here.
    m.write(
        "dash.yaml",
        &annotated(
            "dash",
            "localhost",
            &[("auth-url", &url), ("auth-signin", signin)],
        ),
    );
    m.write(
        "wild.yaml",
        &annotated("wild", "*.wild.test", &[("auth-url", &url)]),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let ok = request(
        &fjord,
        "GET",
        "localhost",
        "/a",
        &[("authorization", "Bearer good")],
        b"",
    )
    .await;
    assert_eq!(ok.backend().as_deref(), Some("app"), "{ok:?}");
    assert_eq!(auth.asked()[0].uri, "/oauth2/auth");
    assert_eq!(auth.asked()[0].headers["host"], format!("localhost:{port}"));
    let out = request(
        &fjord,
        "GET",
        "localhost",
        "/p?q=1",
        &[("authorization", "Basic x")],
        b"",
    )
    .await;
    assert_eq!(out.status, 302);
    assert_eq!(
        out.headers["location"],
        "https://localhost/oauth2/start?rd=%2Fp%3Fq%3D1"
    );
    // A wildcard host would let a client name the server fjord asks: refused, and not served.
    let line = fjord.wait_for_log("Ingress default/wild");
    assert!(line.contains("wildcard host"), "{line}");
    assert_eq!(get(fjord.web, "a.wild.test", "/").await.status, 404);
}

/// A listener whose accept queue is full: a connection to it is never made.
fn unanswering_listener() -> (socket2::Socket, Vec<std::net::TcpStream>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        queued.push(s);
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    (socket, queued)
}

/// A backend that reads a request's head and then nothing more, never answering.
async fn unreading_backend() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            held.push(s);
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_timeouts_are_the_ingresses_own() {
    let (m, _backend) = setup().await;
    let (_full, _queued) = unanswering_listener();
    let full = _full.local_addr().unwrap().as_socket().unwrap();
    let (unreading, _task) = unreading_backend().await;
    m.write("full.yaml", &service("full", full));
    m.write("unreading.yaml", &service("unreading", unreading));
    m.write("hasty.yaml", &annotated("hasty", "hasty.test", &[]));
    m.write(
        "patient.yaml",
        &annotated("patient", "patient.test", &[("proxy-read-timeout", "5")]),
    );
    m.write(
        "connect.yaml",
        &annotated(
            "connect",
            "connect.test",
            &[("proxy-connect-timeout", "1"), ("proxy-read-timeout", "60")],
        )
        .replace("name: app,", "name: full,"),
    );
    m.write(
        "send.yaml",
        &annotated(
            "send",
            "send.test",
            &[("proxy-send-timeout", "1"), ("proxy-read-timeout", "60")],
        )
        .replace("name: app,", "name: unreading,"),
    );
    let config = format!(
        "{LOOPBACK_CONFIG}serversTransport:\n  forwardingTimeouts: {{dialTimeout: 60s, responseHeaderTimeout: 500ms}}\n"
    );
    let fjord = Fjord::start(m.path(), &config);

    // proxy-read-timeout: the Ingress waits longer for its backend's answer than the others.
    assert_eq!(
        get(fjord.web, "hasty.test", "/delay/1500").await.status,
        504
    );
    let patient = get(fjord.web, "patient.test", "/delay/1500").await;
    assert_eq!(patient.backend().as_deref(), Some("app"));

    // proxy-connect-timeout: 1 s, not the transport's 60 s; a 504, as nginx answers.
    let connect = get(fjord.web, "connect.test", "/").await;
    assert_eq!(connect.status, 504);
    fjord.wait_for_log("no connection within 1s");

    // proxy-send-timeout: a backend that stopped taking the body is given up on after 1 s,
    // though the response head may take 60.
    let answer = tokio::time::timeout(Duration::from_secs(30), post_to_unreading(fjord.web))
        .await
        .expect("no answer within 30 s: the send timeout was not applied");
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
}

/// Posts a body far larger than the sockets between fjord and the backend can hold, and reads
/// the answer while still sending.
async fn post_to_unreading(web: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let size = 256 << 20;
    let stream = tokio::net::TcpStream::connect(web).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!("POST / HTTP/1.1\r\nhost: send.test\r\ncontent-length: {size}\r\n\r\n");
    tokio::spawn(async move {
        write.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 1 << 16];
        for _ in 0..size / chunk.len() {
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn service_upstream_goes_to_the_cluster_ip() {
    let (m, _backend) = setup().await;
    let (_cluster, pod) = support::cluster_ip_service(&m, "kube").await;
    m.write("headless.yaml", &service("headless", pod.addr));
    let to = |name: &str, host: &str, service: &str, annotations: &[(&str, &str)]| {
        annotated(name, host, annotations).replace("name: app,", &format!("name: {service},"))
    };
    let upstream = [("service-upstream", "true")];
    m.write("via.yaml", &to("via", "via.test", "kube", &upstream));
    m.write("direct.yaml", &to("direct", "direct.test", "kube", &[]));
    m.write("none.yaml", &to("none", "none.test", "headless", &upstream));
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(
        get(fjord.web, "via.test", "/").await.backend().as_deref(),
        Some("cluster-ip")
    );
    assert_eq!(
        get(fjord.web, "direct.test", "/")
            .await
            .backend()
            .as_deref(),
        Some("pod")
    );
    // A Service without a cluster IP cannot be reached at one: a 503 that says why.
    assert_eq!(get(fjord.web, "none.test", "/").await.status, 503);
    let line = fjord.wait_for_log("Ingress default/none");
    assert!(line.contains("no cluster IP"), "{line}");
}

/// Annotations fjord honours: `fjord check` need not name them.
const HONOURED: &[&str] = &[
    "affinity",
    "session-cookie-name",
    "session-cookie-expires",
    "session-cookie-max-age",
    "session-cookie-secure",
    "session-cookie-samesite",
    "auth-type",
    "auth-secret",
    "auth-realm",
    "auth-url",
    "auth-method",
    "auth-response-headers",
    "auth-signin",
    "canary",
    "canary-weight",
    "canary-by-cookie",
    "canary-by-header",
    "canary-by-header-pattern",
    "canary-by-header-value",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "ssl-redirect",
    "force-ssl-redirect",
    "backend-protocol",
    "proxy-ssl-secret",
    "proxy-ssl-verify",
    "proxy-ssl-name",
    "rewrite-target",
    "use-regex",
    "app-root",
    "enable-cors",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-max-age",
    "cors-allow-credentials",
    "cors-allow-origin",
    "whitelist-source-range",
    "limit-rps",
    "limit-burst-multiplier",
    "limit-whitelist",
    "limit-connections",
    "permanent-redirect",
    "temporal-redirect",
    "from-to-www-redirect",
    "x-forwarded-prefix",
    "upstream-vhost",
    "custom-http-errors",
    "default-backend",
    "service-upstream",
];

/// The Ingresses of ingress-nginx's documentation (tests/data/ingress-nginx-docs): `fjord check`
/// honours or names every annotation on them, and honours those it claims to.
#[test]
fn check_honours_or_names_every_annotation_of_ingress_nginxs_documented_examples() {
    let docs =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ingress-nginx-docs");
    let m = Manifests::new();
    let mut ingresses = Vec::new();
    for file in ["examples.yaml", "user-guide.yaml"] {
        let text = std::fs::read_to_string(docs.join(file)).unwrap();
        for doc in fjord::provider::manifests::parse_documents(&text).unwrap() {
            if doc["kind"] == "Ingress" {
                let annotations = doc["metadata"]["annotations"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                ingresses.push((
                    doc["metadata"]["name"].as_str().unwrap().to_owned(),
                    annotations,
                ));
            }
        }
        m.write(file, &text);
    }
    // Most examples name no class: fjord's is the default, as a migrated cluster would set it.
    m.write(
        "class.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: fjord, annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}}\nspec: {controller: fjord.dev/ingress-controller}\n",
    );
    m.write(
        "http-svc.yaml",
        &service("http-svc", "127.0.0.1:1".parse().unwrap()),
    );
    m.write(
        "canary.yaml",
        &service("canary", "127.0.0.1:2".parse().unwrap()),
    );
    let ca = support::tls::Ca::new();
    m.write("backend-ca.yaml", &ca.ca_secret("backend-ca"));
    let hash: String = md5::Md5::digest(b"foo:Authentication Required:bar")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let digest = format!("foo:Authentication Required:{hash}\n");
    m.write(
        "digest.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: digest-auth, namespace: default}}\ndata: {{auth: {}}}\n",
            base64::engine::general_purpose::STANDARD.encode(digest)
        ),
    );
    let config = m.write(
        "../fjord.yaml",
        "providers:\n  kubernetesIngress:\n    alsoServeClasses: [nginx]\n",
    );
    let (_, out) = check(m.path(), Some(&config));
    let mut unnamed = Vec::new();
    for (name, annotations) in &ingresses {
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.contains(&format!("Ingress default/{name}:")))
            .collect();
        for key in annotations.keys() {
            let Some(short) = key.strip_prefix("nginx.ingress.kubernetes.io/") else {
                continue;
            };
            let named = lines.iter().any(|l| l.contains(key.as_str()));
            if HONOURED.contains(&short) {
                let against = lines.iter().find(|l| {
                    l.contains(&format!("{key} is not honoured"))
                        || l.contains(&format!("{key} is refused"))
                });
                assert!(
                    against.is_none(),
                    "{name}: {short} is claimed honoured: {against:?}"
                );
            } else if !named {
                unnamed.push(format!("{name}: {short}"));
            }
        }
    }
    assert!(unnamed.is_empty(), "unnamed: {unnamed:#?}\n{out}");
}
