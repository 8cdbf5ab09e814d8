//! gRPC backends: ingress-nginx's `backend-protocol: GRPC` and `GRPCS` and an IngressRoute's
//! `scheme: h2c` speak HTTP/2 to the backend; a gRPC client's call goes through with its
//! message, and its trailers (`grpc-status`) come back.

mod support;

use support::grpc::{Grpc, call};
use support::{Fjord, LOOPBACK_CONFIG, Manifests, get, service};

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
