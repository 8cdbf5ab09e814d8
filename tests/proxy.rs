//! The proxy's behaviour on the wire: forwarded headers, HTTP/2, errors and their statuses,
//! limits, passive health, timeouts and graceful shutdown.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, StreamBody};
use support::{
    Echo, Fjord, LOOPBACK_CONFIG, Manifests, app, client, get, ingress, raw, send, service,
};

async fn echo(name: &str) -> Echo {
    Echo::start(name, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A loopback port nothing listens on.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn config(extra_web: &str, extra: &str) -> String {
    format!(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:0\"\n{extra_web}admin:\n  address: \"127.0.0.1:0\"\n{extra}"
    )
}

/// A request body for [`ClientConn`].
type TestBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn empty() -> TestBody {
    Full::default().map_err(|e| match e {}).boxed()
}

/// One client connection to fjord, over HTTP/1.1 or HTTP/2 with prior knowledge. One
/// connection is served by one worker, and so one upstream pool; the pool's tests run over
/// both, as HTTP/2 streams reach it from tasks of their own, several at a time.
enum ClientConn {
    Http1(hyper::client::conn::http1::SendRequest<TestBody>),
    Http2(hyper::client::conn::http2::SendRequest<TestBody>),
}

impl ClientConn {
    async fn open(web: SocketAddr, version: http::Version) -> Self {
        let stream = tokio::net::TcpStream::connect(web).await.unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        if version == http::Version::HTTP_2 {
            let executor = hyper_util::rt::TokioExecutor::new();
            let (sender, conn) = hyper::client::conn::http2::handshake(executor, io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Self::Http2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Self::Http1(sender)
        }
    }

    /// Sends `method path` to `app.test` (in Host or :authority) and returns the response
    /// once its head has arrived.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        length: Option<usize>,
        body: TestBody,
    ) -> http::Response<hyper::body::Incoming> {
        let mut req = Request::builder().method(method);
        if let Some(length) = length {
            req = req.header("content-length", length);
        }
        match self {
            Self::Http1(sender) => {
                sender.ready().await.unwrap();
                let req = req.uri(path).header("host", "app.test").body(body);
                sender.send_request(req.unwrap()).await.unwrap()
            }
            Self::Http2(sender) => {
                sender.ready().await.unwrap();
                let req = req.uri(format!("http://app.test{path}")).body(body);
                sender.send_request(req.unwrap()).await.unwrap()
            }
        }
    }

    /// `GET path`: the status and the whole body.
    async fn get(&mut self, path: &str) -> (u16, String) {
        let response = self.send("GET", path, None, empty()).await;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

const BOTH: [http::Version; 2] = [http::Version::HTTP_11, http::Version::HTTP_2];

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_are_set_and_hop_by_hop_headers_removed() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let req = Request::get(format!("http://{}/p?q=1", fjord.web))
        .header("host", "app.test")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "hop")
        .header("keep-alive", "timeout=5")
        .header("x-custom", "kept")
        .body(Full::default())
        .unwrap();
    let reply = send(&client(), req).await;
    assert_eq!(reply.status, 200);
    let seen = reply.json();
    let h = &seen["headers"];
    assert_eq!(seen["host"], "app.test");
    assert_eq!(seen["path"], "/p?q=1");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.test");
    assert_eq!(h["x-forwarded-port"], fjord.web.port().to_string());
    assert_eq!(h["x-custom"], "kept");
    for gone in ["x-secret", "keep-alive"] {
        assert!(h.get(gone).is_none(), "{gone} reached the backend: {h}");
    }
    assert_ne!(
        h.get("connection").and_then(|v| v.as_str()),
        Some("keep-alive, x-secret")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absolute_form_request_is_routed_and_forwarded_by_its_uri() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let answer = raw(
        fjord.web,
        b"GET http://app.test/abs?x=1 HTTP/1.1\r\nHost: elsewhere.test\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"host\": \"app.test\""), "{answer}");
    assert!(answer.contains("\"path\": \"/abs?x=1\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_peer_chain_is_appended_to() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(
        m.path(),
        &config("    forwardedHeaders: {trustedIPs: [127.0.0.0/8]}\n", ""),
    );
    let req = Request::get(format!("http://{}/", fjord.web))
        .header("host", "app.test")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .body(Full::default())
        .unwrap();
    let seen = send(&client(), req).await.json();
    assert_eq!(seen["headers"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_clients_reach_http1_backends() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    // As real HTTP/2 clients do, the host travels in :authority, not in a Host header.
    let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(fjord.web).await.unwrap());
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://app.test/h2?x=y")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = h2.send_request(req).await.unwrap();
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let reply = support::Reply {
        status,
        headers: http::HeaderMap::new(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = reply.json();
    assert_eq!(seen["backend"], "app");
    assert_eq!(
        seen["host"], "app.test",
        "the backend gets a Host header from :authority"
    );
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["path"], "/h2?x=y");
}

#[tokio::test(flavor = "multi_thread")]
async fn error_statuses() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    // 503: a Service without endpoints.
    m.write(
        "empty.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: empty}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n---\n{}",
            ingress("empty", &[("empty.test", "Prefix", "/", "empty")])
        ),
    );
    // 502: an endpoint that refuses connections.
    m.write(
        "dead.yaml",
        &format!(
            "{}---\n{}",
            service("dead", closed_port()),
            ingress("dead", &[("dead.test", "Prefix", "/", "dead")])
        ),
    );
    let fjord = Fjord::start(
        m.path(),
        &config(
            "",
            "serversTransport:\n  forwardingTimeouts: {responseHeaderTimeout: 300ms}\n",
        ),
    );
    let web = fjord.web;

    let r = get(web, "nothing.test", "/").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (404, "404 page not found\n")
    );
    let r = get(web, "empty.test", "/").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (503, "503 no available server\n")
    );
    let r = get(web, "dead.test", "/").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (502, "502 bad gateway\n")
    );
    let r = get(web, "app.test", "/delay/3000").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (504, "504 gateway timeout\n")
    );
    // A backend's own error statuses pass through untouched.
    let r = get(web, "app.test", "/status/503").await;
    assert_eq!(
        (r.status.as_u16(), r.backend().as_deref()),
        (503, Some("app"))
    );
}

/// A request whose host is ambiguous or malformed gets a 400 from fjord and never reaches a
/// backend: with two Host headers fjord would route by one while the backend may read the
/// other (RFC 9112 §3.2).
#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_or_malformed_hosts_get_400_and_never_reach_a_backend() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    // A catch-all route, which a request with no usable host would otherwise reach.
    m.write("all.yaml", &ingress("all", &[("", "Prefix", "/", "app")]));
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    for (what, head) in [
        (
            "two Host headers",
            "GET / HTTP/1.1\r\nHost: app.test\r\nHost: admin.test\r\n",
        ),
        ("no Host in HTTP/1.1", "GET / HTTP/1.1\r\n"),
        (
            "userinfo in Host",
            "GET / HTTP/1.1\r\nHost: app.test@evil.test\r\n",
        ),
        ("a path in Host", "GET / HTTP/1.1\r\nHost: app.test/x\r\n"),
        (
            "two Hosts beside an absolute URI",
            "GET http://app.test/ HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n",
        ),
    ] {
        let answer = raw(
            fjord.web,
            format!("{head}Connection: close\r\n\r\n").as_bytes(),
        );
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.ends_with("400 bad request\n"),
            "{what}: {answer}"
        );
    }
    assert_eq!(
        backend.connections(),
        0,
        "a rejected request reached the backend"
    );

    // One Host, with a port, or none from an HTTP/1.0 client: served.
    for head in [
        "GET / HTTP/1.1\r\nHost: app.test:80\r\n",
        "GET / HTTP/1.0\r\n",
    ] {
        let answer = raw(
            fjord.web,
            format!("{head}Connection: close\r\n\r\n").as_bytes(),
        );
        assert!(answer.contains(" 200 OK\r\n"), "{head}: {answer}");
        assert!(answer.contains("\"backend\": \"app\""), "{head}: {answer}");
    }
}

/// A pooled connection keeps the timer for its responses' heads from request to request, so
/// each request must still get the whole timeout: when the last request's deadline is still
/// ahead, and when it passed while the connection idled.
#[tokio::test(flavor = "multi_thread")]
async fn each_request_on_a_pooled_connection_gets_the_whole_response_header_timeout() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start_with_workers(
        m.path(),
        &config(
            "",
            "serversTransport:\n  forwardingTimeouts: {responseHeaderTimeout: 1s}\n",
        ),
        1,
    );
    let web = fjord.web;

    // The second answer comes 1.2 s after the first request began: past that one's deadline.
    assert_eq!(
        get(web, "app.test", "/delay/500").await.status.as_u16(),
        200
    );
    assert_eq!(
        get(web, "app.test", "/delay/700").await.status.as_u16(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        get(web, "app.test", "/delay/100").await.status.as_u16(),
        200
    );
    // The timeout still ends a slow answer.
    let r = get(web, "app.test", "/delay/3000").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (504, "504 gateway timeout\n")
    );
    assert_eq!(
        backend.connections(),
        1,
        "all four requests went over one pooled connection"
    );
}

/// `maxIdleConnsPerHost` caps the upstream connections kept for later requests; the others
/// close once their response is done.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_beyond_max_idle_conns_per_host_are_not_kept() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start_with_workers(
        m.path(),
        &config("", "serversTransport: {maxIdleConnsPerHost: 2}\n"),
        1,
    );
    let web = fjord.web;
    // Four requests at once need four connections.
    let burst =
        || futures_util::future::join_all((0..4).map(|_| get(web, "app.test", "/delay/500")));

    for r in burst().await {
        assert_eq!(r.status.as_u16(), 200);
    }
    assert_eq!(backend.connections(), 4);
    for r in burst().await {
        assert_eq!(r.status.as_u16(), 200);
    }
    assert_eq!(
        backend.connections(),
        6,
        "two connections were kept from the first four, and two more were opened"
    );
}

/// With two workers, each keeps half of `maxIdleConnsPerHost`: the limit is the process's.
/// One HTTP/2 connection keeps every request on the worker that accepted it.
#[tokio::test(flavor = "multi_thread")]
async fn each_worker_keeps_its_share_of_max_idle_conns_per_host() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start_with_workers(
        m.path(),
        &config("", "serversTransport: {maxIdleConnsPerHost: 4}\n"),
        2,
    );
    let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(fjord.web).await.unwrap());
    let (h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(conn);
    let burst = || {
        futures_util::future::join_all((0..4).map(|_| {
            let mut h2 = h2.clone();
            async move {
                let req = Request::get("http://app.test/delay/500")
                    .body(Full::<Bytes>::default())
                    .unwrap();
                h2.send_request(req).await.unwrap().status().as_u16()
            }
        }))
    };

    assert_eq!(burst().await, [200; 4]);
    assert_eq!(backend.connections(), 4);
    assert_eq!(burst().await, [200; 4]);
    assert_eq!(
        backend.connections(),
        6,
        "the worker kept two connections, its half of four, and opened two more"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn body_and_header_limits() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(
        m.path(),
        &config(
            "    limits: {maxRequestBodyBytes: 1024, maxRequestHeaderBytes: 16384}\n",
            "",
        ),
    );
    let post = |body: Vec<u8>| {
        Request::post(format!("http://{}/upload", fjord.web))
            .header("host", "app.test")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let small = send(&client(), post(vec![b'a'; 1000])).await;
    assert_eq!(
        (small.status.as_u16(), small.json()["body_bytes"].as_u64()),
        (200, Some(1000))
    );
    let big = send(&client(), post(vec![b'a'; 4096])).await;
    assert_eq!(big.status, 413, "declared length over the limit");

    // A chunked body with no declared length is cut off at the limit too.
    let chunks = (0..8).map(|_| {
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b'b'; 512])))
    });
    let req = Request::post(format!("http://{}/upload", fjord.web))
        .header("host", "app.test")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let streamed =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http()
            .request(req)
            .await
            .unwrap();
    assert_eq!(streamed.status(), 413);

    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "x".repeat(20_000)
    );
    let answer = raw(fjord.web, huge_header.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_endpoint_is_skipped_and_its_requests_retried_body_and_all() {
    let live = echo("live").await;
    let m = Manifests::new();
    m.write(
        "app.yaml",
        &format!(
            "{}---\n{}",
            service("app", live.addr).replace(
                "- addresses: [\"127.0.0.1\"]\n  conditions: {ready: true}\n",
                "- addresses: [\"127.0.0.1\"]\n  conditions: {ready: true}\n- addresses: [\"127.0.0.2\"]\n  conditions: {ready: true}\n- addresses: [\"127.0.0.3\"]\n  conditions: {ready: false}\n",
            ),
            ingress("app", &[("app.test", "Prefix", "/", "app")])
        ),
    );
    // Endpoints share the slice's port; the live backend listens on 127.0.0.1 only, so
    // 127.0.0.2 refuses, and 127.0.0.3 is not ready.
    assert!(
        TcpStream::connect(SocketAddr::new(
            "127.0.0.2".parse().unwrap(),
            live.addr.port()
        ))
        .is_err()
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    // Round robin sends one of the first two requests to 127.0.0.2. A POST with a body that
    // hit the refused connection never left, so it goes to the live endpoint whole.
    let client = client();
    for i in 0..20 {
        let req = Request::post(format!("http://{}/", fjord.web))
            .header("host", "app.test")
            .body(Full::new(Bytes::from(vec![b'x'; 1000])))
            .unwrap();
        let r = send(&client, req).await;
        assert_eq!(
            (r.status.as_u16(), r.backend().as_deref()),
            (200, Some("live")),
            "request {i}: {r:?}"
        );
        let echoed = r.json();
        assert_eq!(
            (echoed["method"].as_str(), echoed["body_bytes"].as_u64()),
            (Some("POST"), Some(1000))
        );
    }
    let line = fjord.wait_for_log("endpoint is backing off");
    assert!(line.contains("127.0.0.2"), "{line}");
    let get = get(fjord.web, "app.test", "/").await;
    assert_eq!(get.backend().as_deref(), Some("live"));
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slow_header_connections_are_closed() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(
        m.path(),
        &config(
            "    transport:\n      respondingTimeouts: {requestHeaderTimeout: 300ms, idleTimeout: 300ms}\n",
            "",
        ),
    );
    // Slowloris: half a request head, never finished.
    let started = Instant::now();
    let answer = raw(fjord.web, b"GET / HTTP/1.1\r\nHost: app.test\r\n");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "closed by fjord, not by the read timeout"
    );
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");

    // HTTP/2 idles out too: after its last request, fjord closes the connection (GOAWAY).
    let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(fjord.web).await.unwrap());
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get("http://app.test/")
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 200);
    let closed = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(closed.is_ok(), "idle h2 connection was not closed by fjord");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_requests_in_flight_then_exits_zero() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let mut fjord = Fjord::start(
        m.path(),
        &config("    transport: {lifeCycle: {graceTimeOut: 10s}}\n", ""),
    );
    let web = fjord.web;
    let admin = fjord.admin;
    let in_flight = tokio::spawn(async move { get(web, "app.test", "/delay/700").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    fjord.signal_term();
    fjord.wait_for_log("shutting down");
    // Draining: readiness fails, new connections are refused.
    let ready = raw(
        admin,
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(TcpStream::connect(web).is_err(), "still accepting");
    let reply = in_flight.await.unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.backend().as_deref()),
        (200, Some("app"))
    );
    assert_eq!(
        reply.headers.get("connection").map(|v| v.to_str().unwrap()),
        Some("close"),
        "the client is told not to send another request on the connection"
    );
    assert_eq!(fjord.wait_exit(Duration::from_secs(15)), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn external_name_services_are_resolved_when_connecting() {
    let backend = echo("external").await;
    let m = Manifests::new();
    m.write(
        "ext.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: ext}}\nspec: {{type: ExternalName, externalName: localhost}}\n---\n{}",
            ingress("ext", &[("ext.test", "Prefix", "/", "ext")])
                .replace("port: {name: http}", &format!("port: {{number: {}}}", backend.addr.port()))
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let reply = get(fjord.web, "ext.test", "/x").await;
    assert_eq!(
        (reply.status.as_u16(), reply.backend().as_deref()),
        (200, Some("external"))
    );
    assert_eq!(
        reply.json()["host"],
        "ext.test",
        "the client's Host, not the external name"
    );
    let health = raw(
        fjord.admin,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

/// The echo backend `pooled`. With `close_idle`, it closes a connection that idles that
/// long; without `keep_alive`, it answers `Connection: close` and closes after each response.
async fn counting_upstream(close_idle: Option<Duration>, keep_alive: bool) -> Echo {
    let options = support::echo::Options {
        keep_alive,
        close_idle,
    };
    Echo::start_with("pooled", "127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap()
}

/// Whether `body` is the `pooled` backend's answer.
fn pooled(body: &str) -> bool {
    body.contains("\"backend\": \"pooled\"")
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_reused_replaced_when_closed_and_closed_when_idle() {
    for version in BOTH {
        // An endpoint that closes connections idle for 400 ms: the next request must not
        // fail on the pooled connection the endpoint closed, but go out on a new one.
        let upstream = counting_upstream(Some(Duration::from_millis(400)), true).await;
        let m = app(upstream.addr);
        let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
        let mut conn = ClientConn::open(fjord.web, version).await;
        for _ in 0..5 {
            let (status, body) = conn.get("/").await;
            assert!(
                status == 200 && pooled(&body),
                "{version:?}: {status} {body}"
            );
        }
        let reused = upstream.connections();
        assert_eq!(reused, 1, "{version:?}: one connection, reused");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        for _ in 0..3 {
            let (status, body) = conn.get("/").await;
            assert_eq!(
                status, 200,
                "{version:?}: a closed pooled connection failed: {body}"
            );
        }
        let replaced = upstream.connections();
        assert_eq!(replaced, 2, "{version:?}: one new connection");

        // fjord closes pooled connections idle past idleConnTimeout itself.
        let upstream = counting_upstream(None, true).await;
        let m = app(upstream.addr);
        let fjord = Fjord::start(
            m.path(),
            &config(
                "",
                "serversTransport: {forwardingTimeouts: {idleConnTimeout: 300ms}}\n",
            ),
        );
        let mut conn = ClientConn::open(fjord.web, version).await;
        assert_eq!(conn.get("/").await.0, 200);
        assert_eq!(upstream.open(), 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while upstream.open() > 0 {
            assert!(
                Instant::now() < deadline,
                "{version:?}: the idle pooled connection stayed open"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(conn.get("/").await.0, 200);
        assert_eq!(upstream.connections(), 2, "{version:?}");
    }
}

/// Sockets to `to` whose peer has closed them and their own side has not (CLOSE_WAIT).
fn close_waits(to: SocketAddr) -> usize {
    let remote = format!(":{:04X}", to.port());
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    tcp.lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 3 && f[2].ends_with(&remote) && f[3] == "08")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_connection_the_endpoint_closed_is_closed_before_its_idle_timeout() {
    for version in BOTH {
        // An endpoint closing connections idle for 300 ms, under a 4 s idle timeout: the pool
        // must close its side when it next looks (every 2 s), not keep a dead socket for 4 s.
        let upstream = counting_upstream(Some(Duration::from_millis(300)), true).await;
        let addr = upstream.addr;
        let m = app(addr);
        let fjord = Fjord::start(
            m.path(),
            &config(
                "",
                "serversTransport: {forwardingTimeouts: {idleConnTimeout: 4s}}\n",
            ),
        );
        let mut conn = ClientConn::open(fjord.web, version).await;
        assert_eq!(conn.get("/").await.0, 200, "{version:?}");
        let answered = Instant::now();
        while upstream.open() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while close_waits(addr) > 0 {
            assert!(
                answered.elapsed() < Duration::from_millis(3500),
                "{version:?}: fjord kept the connection the endpoint closed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(conn.get("/").await.0, 200, "{version:?}");
    }
}

/// An endpoint that answers each connection's first request (`conn N`) and closes the
/// connection, unanswered, on reading its second, as one whose keep-alive timeout runs out just
/// as the request arrives. Returns its address and the requests it read (`METHOD /path`).
async fn closing_on_second_request() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        for n in 1.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut conn = tokio::io::BufReader::new(stream);
                for served in 0..2 {
                    let mut head = Vec::new();
                    loop {
                        let mut line = String::new();
                        if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push(line.trim_end().to_owned());
                    }
                    let length = head
                        .iter()
                        .find_map(|h| {
                            h.to_lowercase()
                                .strip_prefix("content-length:")
                                .map(str::to_owned)
                        })
                        .map_or(0, |v| v.trim().parse().unwrap());
                    let mut body = vec![0; length];
                    conn.read_exact(&mut body).await.unwrap();
                    let line = head[0].rsplit_once(' ').unwrap().0.to_owned();
                    log.lock().unwrap().push(line);
                    if served == 1 {
                        return;
                    }
                    let body = format!("conn {n}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    conn.get_mut().write_all(answer.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_safe_to_repeat_is_sent_again_when_the_endpoint_closes_its_pooled_connection() {
    for version in BOTH {
        let (addr, seen) = closing_on_second_request().await;
        let m = app(addr);
        let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
        let mut conn = ClientConn::open(fjord.web, version).await;
        let admin = fjord.admin;
        let retries = || async move {
            let metrics = get(admin, "localhost", "/metrics").await.body;
            metrics
                .lines()
                .find(|l| l.starts_with("fjord_service_retries_total{"))
                .map(str::to_owned)
        };
        assert_eq!(
            conn.get("/a").await,
            (200, "conn 1".to_owned()),
            "{version:?}"
        );
        // The pooled connection idles past a second: the endpoint may have closed it by then.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            conn.get("/b").await,
            (200, "conn 2".to_owned()),
            "{version:?}: a GET the endpoint dropped with its connection goes out again, on a new one"
        );
        let resent = r#"fjord_service_retries_total{service="default/app:http"} 1"#;
        assert_eq!(retries().await.as_deref(), Some(resent), "and is counted");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let hi = Full::new(Bytes::from_static(b"hi")).map_err(|e| match e {});
        let post = conn.send("POST", "/c", Some(2), hi.boxed()).await;
        assert_eq!(
            post.status(),
            502,
            "{version:?}: a POST is never sent twice"
        );
        assert_eq!(
            conn.get("/d").await,
            (200, "conn 3".to_owned()),
            "{version:?}"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            ["GET /a", "GET /b", "GET /b", "POST /c", "GET /d"],
            "{version:?}"
        );
        assert_eq!(
            retries().await.as_deref(),
            Some(resent),
            "{version:?}: only the GET went out again"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_closing_after_every_response_never_costs_a_request() {
    let upstream = counting_upstream(None, false).await;
    let m = app(upstream.addr);
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;
    let rounds = (0..8).map(|_| {
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..10 {
                statuses.push(get(web, "app.test", "/").await.status.as_u16());
            }
            statuses
        })
    });
    for round in rounds.collect::<Vec<_>>() {
        assert_eq!(round.await.unwrap(), [200; 10]);
    }
    assert_eq!(
        upstream.connections(),
        80,
        "a connection the endpoint closes is never reused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_still_sending_an_answered_upload_is_not_reused() {
    // An endpoint that answers 413 as soon as it has a request head, then reads no more: the
    // connection stays busy with the rest of the upload for as long as the client sends it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let m = app(addr);
    for version in BOTH {
        // One worker, so one upstream pool for both client connections.
        let fjord = Fjord::start_with_workers(
            m.path(),
            &config(
                "",
                "serversTransport: {forwardingTimeouts: {responseHeaderTimeout: 3s}}\n",
            ),
            1,
        );
        // A slow upload: a few bytes of a 100,000-byte body, then nothing.
        let mut upload = ClientConn::open(fjord.web, version).await;
        let first = Ok(http_body::Frame::data(Bytes::from_static(b"first bytes")));
        let rest = futures_util::stream::pending();
        let body = futures_util::StreamExt::chain(futures_util::stream::iter([first]), rest);
        let body = StreamBody::new(body).boxed();
        let answer = upload.send("POST", "/upload", Some(100_000), body).await;
        assert_eq!(answer.status(), 413, "{version:?}");

        // The next request must not wait on that busy connection (a 504 after 3 s).
        let mut next = ClientConn::open(fjord.web, version).await;
        let started = Instant::now();
        assert_eq!(
            next.get("/").await.0,
            413,
            "{version:?}: answered by the endpoint, on a new connection"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{version:?}: waited {:?} for a busy pooled connection",
            started.elapsed()
        );
        drop(upload);
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body: status, `x-backend`, body.
fn read_response(conn: &mut std::io::BufReader<TcpStream>) -> (u16, String, String) {
    use std::io::BufRead;
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        assert!(conn.read_line(&mut line).unwrap() > 0, "closed: {head:?}");
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_owned());
    }
    let header = |name: &str| {
        head.iter().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let len: usize = header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0; len];
    conn.read_exact(&mut body).unwrap();
    let status = head[0].split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        header("x-backend").unwrap_or_default(),
        String::from_utf8(body).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keep_alive_connection_parked_between_requests_loses_no_byte_and_no_time_limit() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(
        m.path(),
        &config(
            "    transport:\n      respondingTimeouts: {requestHeaderTimeout: 300ms, idleTimeout: 3s}\n",
            "",
        ),
    );
    let stream = TcpStream::connect(fjord.web).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut conn = std::io::BufReader::new(stream);

    // A request and the first half of the next in one write: fjord parks the connection after
    // the first answer with the half head already read, and must keep those bytes.
    writer
        .write_all(b"GET /one HTTP/1.1\r\nHost: app.test\r\n\r\nGET /two HTTP/1.1\r\nHo")
        .unwrap();
    let (status, backend, body) = read_response(&mut conn);
    assert_eq!((status, backend.as_str()), (200, "app"), "{body}");
    assert!(body.contains("\"path\": \"/one\""), "{body}");
    std::thread::sleep(Duration::from_millis(100));
    writer.write_all(b"st: app.test\r\n\r\n").unwrap();
    let (status, backend, body) = read_response(&mut conn);
    assert_eq!((status, backend.as_str()), (200, "app"), "{body}");
    assert!(body.contains("\"path\": \"/two\""), "{body}");

    // A whole request after `pause`, answered.
    let mut after = |pause: u64, path: &str| {
        std::thread::sleep(Duration::from_millis(pause));
        write!(writer, "GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap();
        let (status, _, body) = read_response(&mut conn);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("\"path\": \"{path}\"")), "{body}");
    };
    // Between requests only the idle timeout counts, not the time to send a request head.
    after(900, "/three");
    // A connection in use parks once it has gone a second without a request, and wakes up.
    after(1500, "/four");

    // Idle past the idle timeout: fjord closes the connection.
    let idle = Instant::now();
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0, "{rest:?}");
    assert!(idle.elapsed() < Duration::from_secs(9), "closed by fjord");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_holds_no_request_buffers() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;
    let open = |n: usize| {
        (0..n)
            .map(|_| {
                let stream = TcpStream::connect(web).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut conn = std::io::BufReader::new(stream);
                conn.get_mut()
                    .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
                    .unwrap();
                assert_eq!(read_response(&mut conn).0, 200);
                conn
            })
            .collect::<Vec<_>>()
    };
    // Warm up allocator arenas and the upstream pool first.
    let warm = open(50);
    let before = fjord.rss();
    const N: u64 = 400;
    let idle = open(N as usize);
    let per_connection = fjord.rss().saturating_sub(before) / N;
    // hyper's state and two 8 KiB buffers would be some 18 KB; parked, a connection keeps
    // its socket and a small task.
    assert!(
        per_connection < 6 * 1024,
        "{per_connection} bytes per idle connection"
    );
    drop((warm, idle));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_gets_request_header_timeout_from_its_first_byte() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(
        m.path(),
        &config(
            "    transport:\n      respondingTimeouts: {requestHeaderTimeout: 300ms, idleTimeout: 30s}\n",
            "",
        ),
    );
    let closed_within = |stream: &mut std::io::BufReader<TcpStream>| {
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        (started.elapsed(), rest)
    };
    let connect = || {
        let stream = TcpStream::connect(fjord.web).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        std::io::BufReader::new(stream)
    };

    // A new connection that never sends its first request is closed by the head timeout, not
    // kept for the 30 s idle timeout.
    let mut silent = connect();
    let (waited, rest) = closed_within(&mut silent);
    assert!(rest.is_empty(), "{rest:?}");
    assert!(waited < Duration::from_secs(10), "closed after {waited:?}");

    // After a request, half of the next head and then nothing: closed by the head timeout too.
    let mut conn = connect();
    conn.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut conn).0, 200);
    conn.get_mut().write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    let (waited, rest) = closed_within(&mut conn);
    assert!(waited < Duration::from_secs(10), "closed after {waited:?}");
    assert!(
        !String::from_utf8_lossy(&rest).contains(" 200 "),
        "{rest:?}"
    );
}

/// An upstream that streams: to `/stream`, one chunk, then the rest once `go` fires; to
/// `/big`, 1 MiB with a `Content-Length`. Counts the connections it accepted.
async fn streaming_upstream(go: Arc<tokio::sync::Notify>) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::<AtomicUsize>::default();
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let go = Arc::clone(&go);
            tokio::spawn(async move {
                let mut stream = tokio::io::BufReader::new(stream);
                loop {
                    let mut target = String::new();
                    let mut line = String::new();
                    while stream.read_line(&mut line).await.unwrap_or(0) > 2 {
                        if target.is_empty() {
                            target = line.split(' ').nth(1).unwrap_or_default().to_owned();
                        }
                        line.clear();
                    }
                    if target.is_empty() {
                        return;
                    }
                    let s = stream.get_mut();
                    if target == "/stream" {
                        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                        s.write_all(format!("{head}5\r\nfirst\r\n").as_bytes())
                            .await
                            .unwrap();
                        go.notified().await;
                        s.write_all(b"4\r\nlast\r\n0\r\n\r\n").await.unwrap();
                    } else {
                        let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
                        let head =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        s.write_all(head.as_bytes()).await.unwrap();
                        s.write_all(&body).await.unwrap();
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread")]
async fn response_bodies_stream_through_and_their_connection_is_reused() {
    for version in BOTH {
        let go = Arc::new(tokio::sync::Notify::new());
        let (addr, accepted) = streaming_upstream(Arc::clone(&go)).await;
        let m = app(addr);
        let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
        let mut conn = ClientConn::open(fjord.web, version).await;

        // The first chunk reaches the client while the endpoint holds back the rest.
        let mut response = conn.send("GET", "/stream", None, empty()).await;
        assert_eq!(response.status(), 200, "{version:?}");
        let first = tokio::time::timeout(Duration::from_secs(5), response.body_mut().frame())
            .await
            .expect("the first chunk was held back until the body ended")
            .unwrap()
            .unwrap();
        assert_eq!(first.into_data().unwrap(), "first", "{version:?}");
        go.notify_one();
        let rest = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(rest, "last", "{version:?}");

        // A large body arrives whole, on the same upstream connection.
        let big = conn.send("GET", "/big", None, empty()).await;
        let big = big.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(big.len(), 1 << 20, "{version:?}");
        assert!(
            big.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
            "{version:?}: the body was altered"
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "{version:?}: one upstream connection, reused"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn traffic_is_served_by_as_many_worker_threads_as_asked() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start_with_workers(m.path(), LOOPBACK_CONFIG, 3);
    fjord.wait_for_log("\"workers\":3");
    // A thread names itself once it first runs, which on a busy machine may be a moment
    // after it was started.
    let workers = || {
        let mut workers: Vec<String> = fjord
            .threads()
            .into_iter()
            .filter(|t| t.starts_with("fjord-worker-"))
            .collect();
        workers.sort();
        workers
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while workers().len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        workers(),
        ["fjord-worker-0", "fjord-worker-1", "fjord-worker-2"]
    );
    // Connections at once, each on whichever worker accepts it, all answered; rounds of them
    // until every worker has served some (which worker wins an accept is the scheduler's
    // choice, so a bound on rounds, not one round, makes this independent of luck).
    let served = |metrics: &str, worker: usize| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "fjord_worker_connections_total{{worker=\"{worker}\"}} "
                ))
            })
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut counts = [0; 3];
    for _ in 0..100 {
        let replies =
            futures_util::future::join_all((0..12).map(|_| get(fjord.web, "app.test", "/"))).await;
        assert!(
            replies
                .iter()
                .all(|r| r.status == 200 && r.backend().as_deref() == Some("app"))
        );
        let metrics = get(fjord.admin, "localhost", "/metrics").await.body;
        counts = [0, 1, 2].map(|w| served(&metrics, w));
        if counts.iter().all(|c| *c > 0) {
            break;
        }
    }
    assert!(
        counts.iter().all(|c| *c > 0),
        "connections served per worker: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_gets_400_and_an_h2c_upgrade_is_served_as_http1_without_it() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    m.write("all.yaml", &ingress("all", &[("", "Prefix", "/", "app")]));
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);

    // CONNECT: an answer (it used to get none), and nothing reaches a backend.
    let answer = raw(
        fjord.web,
        b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(backend.connections(), 0, "CONNECT reached the backend");

    // h2c: the backend sees a plain HTTP/1.1 request, with no Upgrade or HTTP2-Settings to
    // answer 101 to (which would tunnel HTTP/2 past routing and every middleware).
    let answer = raw(
        fjord.web,
        b"GET /x HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    let headers = seen["headers"].as_object().unwrap();
    assert!(
        !headers.contains_key("upgrade") && !headers.contains_key("http2-settings"),
        "{headers:?}"
    );
}
