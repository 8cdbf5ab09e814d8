//! gRPC backends: ingress-nginx's `backend-protocol: GRPC` and `GRPCS` and an IngressRoute's
//! `scheme: h2c` speak HTTP/2 to the backend; a gRPC client's call goes through with its
//! message, and its trailers (`grpc-status`) come back. A browser's gRPC-Web call, binary or
//! text, goes through the grpcWeb middleware.

mod support;

use base64::Engine as _;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::grpc::{Grpc, call, frame};
use support::{Fjord, LOOPBACK_CONFIG, Manifests, client, get, send, service};

/// An Ingress for `host` to Service `service`, with `backend-protocol: protocol`.
fn with_protocol(name: &str, host: &str, service: &str, protocol: &str) -> String {
    support::nginx_ingress(name, host, service, &[("backend-protocol", protocol)])
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_calls_reach_http2_backends_and_their_trailers_come_back() {
    let ca = support::tls::Ca::new();
    let (cert, key) = ca.leaf(&["grpc.internal"]);
    let plain = Grpc::start("h2c", None).await;
    let secure = Grpc::start(
        "h2-tls",
        Some(support::tls::acceptor_with_alpn(&cert, &key, &[b"h2"])),
    )
    .await;
    let m = Manifests::new();
    m.write("plain.yaml", &service("plain", plain.addr));
    m.write("secure.yaml", &service("secure", secure.addr));
    m.write(
        "grpc.yaml",
        &with_protocol("grpc", "grpc.test", "plain", "GRPC"),
    );
    m.write(
        "grpcs.yaml",
        &with_protocol("grpcs", "grpcs.test", "secure", "GRPCS"),
    );
    m.write(
        "route.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: h2c, namespace: default}\nspec:\n  routes:\n  - match: Host(`route.test`)\n    services: [{name: plain, port: 80, scheme: h2c}]\n",
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);

    for (host, backend) in [
        ("grpc.test", "h2c"),
        ("grpcs.test", "h2-tls"),
        ("route.test", "h2c"),
    ] {
        let got = call(fjord.web, host, "/fjord.Echo/Say", b"hello").await;
        assert_eq!(got.status, 200, "{host}: {got:?}");
        assert_eq!(got.headers["x-backend"], backend, "{host}");
        assert_eq!(got.headers["x-seen-version"], "HTTP/2.0", "{host}");
        assert_eq!(got.headers["x-seen-te"], "trailers", "{host}");
        assert_eq!(got.headers["x-seen-authority"], host, "{host}");
        assert_eq!(
            &got.message[..],
            format!("{backend}: hello").as_bytes(),
            "{host}"
        );
        assert_eq!(got.trailers["grpc-status"], "0", "{host}: {got:?}");
        assert_eq!(got.trailers["grpc-message"], "done", "{host}");
    }
    // An HTTP/1.1 client reaches the HTTP/2 backend too.
    let plain_get = get(fjord.web, "grpc.test", "/").await;
    assert_eq!(plain_get.status, 200);
    assert_eq!(plain_get.headers["x-seen-version"], "HTTP/2.0");
    // Calls at once share the route's one multiplexed connection to the backend.
    let before = plain.connections();
    let calls = (0..8).map(|i| {
        call(
            fjord.web,
            "grpc.test",
            "/fjord.Echo/Say",
            format!("{i}").into_bytes().leak(),
        )
    });
    for got in futures_util::future::join_all(calls).await {
        assert_eq!(got.trailers["grpc-status"], "0");
    }
    assert_eq!(
        plain.connections(),
        before,
        "no new connection for calls at once"
    );
}

/// gRPC-Web's last message for these trailers.
fn trailer_frame(lines: &str) -> Vec<u8> {
    let mut out = vec![0x80];
    out.extend_from_slice(&u32::try_from(lines.len()).unwrap().to_be_bytes());
    out.extend_from_slice(lines.as_bytes());
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_calls_binary_and_text_reach_a_grpc_backend_and_preflights_are_answered() {
    let backend = Grpc::start("app", None).await;
    let m = Manifests::new();
    m.write("app.yaml", &service("app", backend.addr));
    m.write(
        "web.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {name: web, namespace: default}\nspec:\n  grpcWeb: {allowOrigins: [\"https://app.test\"]}\n",
    );
    m.write(
        "route.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: web, namespace: default}\nspec:\n  routes:\n  - match: Host(`web.test`)\n    middlewares: [{name: web}]\n    services: [{name: app, port: 80, scheme: h2c}]\n",
    );
    // The same route to an HTTP/1.1 service would fail every call: fjord check says so.
    let (_, printed) = support::check(m.path(), None);
    assert!(!printed.contains("needs an HTTP/2 backend"), "{printed}");
    let plain = Manifests::new();
    plain.write("app.yaml", &service("app", backend.addr));
    plain.write(
        "web.yaml",
        &std::fs::read_to_string(m.path().join("web.yaml")).unwrap(),
    );
    plain.write(
        "route.yaml",
        &std::fs::read_to_string(m.path().join("route.yaml"))
            .unwrap()
            .replace(", scheme: h2c", ""),
    );
    let (_, printed) = support::check(plain.path(), None);
    support::assert_diagnostic(
        &printed,
        "IngressRoute default/web",
        "spec.routes[0].middlewares: middleware default/web (grpcWeb) turns calls into gRPC, which needs an HTTP/2 backend",
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let b64 = base64::engine::general_purpose::STANDARD;
    let call_web = |content_type: &str, origin: &str, body: Bytes| {
        Request::post(format!("http://{}/echo.Echo/Say", fjord.web))
            .header("host", "web.test")
            .header("content-type", content_type)
            .header("origin", origin)
            .header("x-grpc-web", "1")
            .body(Full::new(body))
            .unwrap()
    };
    let mut expected = frame(b"app: hi").to_vec();
    expected.extend(trailer_frame("grpc-status: 0\r\ngrpc-message: done\r\n"));

    // Binary: the backend gets gRPC over HTTP/2; the page gets the message and the trailers.
    let reply = send(
        &client(),
        call_web(
            "application/grpc-web+proto",
            "https://app.test",
            frame(b"hi"),
        ),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers["x-seen-content-type"],
        "application/grpc+proto"
    );
    assert_eq!(reply.headers["x-seen-version"], "HTTP/2.0");
    // The backend answers `application/grpc`: the page gets its gRPC-Web form.
    assert_eq!(reply.headers["content-type"], "application/grpc-web");
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://app.test"
    );
    // (The test's reply holds text: the 0x80 flag is compared as the text it reads as; the
    // text call below checks every byte.)
    assert_eq!(reply.body, String::from_utf8_lossy(&expected));

    // Text: base64 both ways, each message of the answer encoded on its own.
    let reply = send(
        &client(),
        call_web(
            "application/grpc-web-text",
            "https://app.test",
            Bytes::from(b64.encode(frame(b"hi"))),
        ),
    )
    .await;
    assert_eq!(reply.headers["x-seen-content-type"], "application/grpc");
    assert_eq!(reply.headers["content-type"], "application/grpc-web-text");
    let decoded: Vec<u8> = reply
        .body
        .as_bytes()
        .chunks(4)
        .flat_map(|group| b64.decode(group).unwrap())
        .collect();
    assert_eq!(decoded, expected);

    // A page from another origin is refused, call and preflight alike.
    let refused = send(
        &client(),
        call_web(
            "application/grpc-web+proto",
            "https://evil.test",
            frame(b"hi"),
        ),
    )
    .await;
    assert_eq!(refused.status, 403);
    let preflight = |origin: &str| {
        Request::options(format!("http://{}/echo.Echo/Say", fjord.web))
            .header("host", "web.test")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-grpc-web")
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let ok = send(&client(), preflight("https://app.test")).await;
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.headers["access-control-allow-origin"],
        "https://app.test"
    );
    assert_eq!(
        ok.headers["access-control-allow-headers"],
        "content-type,x-grpc-web"
    );
    assert_eq!(
        send(&client(), preflight("https://evil.test")).await.status,
        403
    );
}
