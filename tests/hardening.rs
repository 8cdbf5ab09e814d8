//! Hardening, on real sockets: slow clients meet their deadlines and release their upstream
//! connections, protocol edges are answered as the client's fault and never dropped silently,
//! and configuration that would otherwise be silently wrong is served right or named.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::{Echo, Fjord, LOOPBACK_CONFIG, Manifests, app, check, get, ingress, raw, service};

async fn echo(name: &str) -> Echo {
    Echo::start(name, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// The JSON the echo backend answered with, from a raw HTTP/1.1 answer.
fn echoed(answer: &str) -> serde_json::Value {
    let body = &answer[answer.find("\r\n\r\n").expect(answer) + 4..];
    serde_json::from_str(body).expect(answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_cookies_are_joined_and_connection_cannot_strip_the_request_id() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);

    // HTTP/2 splits cookies into fields; an HTTP/1.1 backend must get them as one.
    let stream = tokio::net::TcpStream::connect(fjord.web).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://app.test/c")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = h2.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["headers"]["cookie"], "a=1; b=2; c=3", "{seen}");

    // A client naming X-Request-Id in Connection does not take fjord's id from the backend.
    let answer = raw(
        fjord.web,
        b"GET /id HTTP/1.1\r\nHost: app.test\r\nConnection: close, X-Request-Id\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let sent = echoed(&answer)["headers"]["x-request-id"].clone();
    let id = sent.as_str().unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(id.len(), 32, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains(&format!("x-request-id: {id}")),
        "the client gets the id the backend got: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_data_wrapped_over_lines_is_read_as_the_api_server_reads_it() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    // alice:secret (apr1), its base64 wrapped every 20 columns as `base64 -w 20` writes it.
    let users = base64::engine::general_purpose::STANDARD
        .encode("alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/");
    let wrapped: Vec<&str> = users
        .as_bytes()
        .chunks(20)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    m.write(
        "auth.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: users}}\ndata:\n  users: |\n    {}\n---\napiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {{name: auth}}\nspec:\n  basicAuth: {{secret: users}}\n---\napiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {{name: locked}}\nspec:\n  routes:\n  - match: Host(`locked.test`)\n    middlewares: [{{name: auth}}]\n    services: [{{name: app, port: 80}}]\n",
            wrapped.join("\n    ")
        ),
    );
    let (code, out) = check(m.path(), None);
    assert_eq!(code, 0, "{out}");
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(get(fjord.web, "locked.test", "/").await.status, 401);
    let login = base64::engine::general_purpose::STANDARD.encode("alice:secret");
    let answer = raw(
        fjord.web,
        format!(
            "GET / HTTP/1.1\r\nHost: locked.test\r\nAuthorization: Basic {login}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_of_many_documents_is_served_and_a_yaml_bomb_is_named() {
    let backend = echo("app").await;
    let m = Manifests::new();
    let mut bundle = String::new();
    for i in 0..1_500 {
        bundle += &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n---\n");
    }
    bundle += &service("app", backend.addr);
    bundle += "---\n";
    bundle += &ingress("app", &[("app.test", "Prefix", "/", "app")]);
    m.write("bundle.yaml", &bundle);
    let (code, out) = check(m.path(), None);
    assert_eq!(code, 0, "{out}");
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(get(fjord.web, "app.test", "/").await.status, 200);

    // Aliases that expand without end are still refused, in words an operator can act on.
    let bomb = Manifests::new();
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let prev = (b'a' + level - 1) as char;
        let this = (b'a' + level) as char;
        text += &format!(
            "{this}: &{this} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        );
    }
    bomb.write("bomb.yaml", &text);
    let (code, out) = check(bomb.path(), None);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("bomb.yaml"), "{out}");
    assert!(out.contains("YAML bombs"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ingress_route_naming_an_entry_point_the_config_lacks_is_an_error() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    m.write(
        "typo.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: typo}\nspec:\n  entryPoints: [web, websecur]\n  routes:\n  - match: Host(`typo.test`)\n    services: [{name: app, port: 80}]\n",
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let line = fjord.wait_for_log("websecur");
    assert!(
        line.contains("IngressRoute default/typo") && line.contains("not an entry point"),
        "{line}"
    );
    // The entry point it does name still serves it.
    assert_eq!(get(fjord.web, "typo.test", "/").await.status, 200);

    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), LOOPBACK_CONFIG).unwrap();
    let (code, text) = check(m.path(), Some(config.path()));
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("IngressRoute default/typo: spec.entryPoints: \"websecur\""),
        "{text}"
    );
}

/// fjord with one plain entry point, `web_extra` added to it (indented for `web`) and `extra`
/// at the top level.
fn start(m: &Manifests, web_extra: &str, extra: &str) -> Fjord {
    Fjord::start(
        m.path(),
        &format!(
            "entryPoints:\n  web:\n    address: \"127.0.0.1:0\"\n{web_extra}admin:\n  address: \"127.0.0.1:0\"\n{extra}"
        ),
    )
}

/// Waits until the backend holds no open connection from fjord.
async fn released(backend: &Echo) {
    for _ in 0..250 {
        if backend.open() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "fjord still holds {} upstream connection(s)",
        backend.open()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_chunked_body_is_the_clients_400_and_not_the_backends_502() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let answer = raw(
        fjord.web,
        b"POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let metrics = support::tls_free_get(fjord.admin, "/metrics").await;
    let service: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("fjord_service_requests_total"))
        .collect();
    assert_eq!(
        service,
        [r#"fjord_service_requests_total{code="400",method="POST",service="default/app:http"} 1"#],
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_with_a_chunked_body_reaches_the_backend_with_it() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    for method in ["GET", "POST"] {
        let answer = raw(
            fjord.web,
            format!("{method} /g HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").as_bytes(),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(echoed(&answer)["body_bytes"], 11, "{method}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_gets_408_by_its_deadline_and_releases_the_upstream_connection() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = start(
        &m,
        "    transport: {respondingTimeouts: {readTimeout: 1s}}\n    limits: {minRequestBodyRate: 1000}\n",
        "",
    );
    // A slowloris upload: 1 MB announced, 2 bytes every 100 ms (20 bytes/s).
    let mut conn = TcpStream::connect(fjord.web).unwrap();
    conn.write_all(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    let mut drip = conn.try_clone().unwrap();
    let dripping = std::thread::spawn(move || {
        while drip.write_all(b"ab").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let started = std::time::Instant::now();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The deadline is some 1 s away; the upstream's response header timeout (60 s) is not
    // what ended it.
    assert!(started.elapsed() < Duration::from_secs(20));
    released(&backend).await;
    let _ = conn.shutdown(std::net::Shutdown::Both);
    dripping.join().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_longer_than_the_response_header_timeout_is_answered() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = start(
        &m,
        "",
        "serversTransport:\n  forwardingTimeouts: {responseHeaderTimeout: 1s}\n",
    );
    // 256 KiB in four pieces, 600 ms apart: longer than the 1 s the backend has to answer once
    // it has the whole request.
    let mut conn = TcpStream::connect(fjord.web).unwrap();
    conn.write_all(
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 262144\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(600));
        conn.write_all(&[b'x'; 65536]).unwrap();
    }
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(echoed(&answer)["body_bytes"], 262144);
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_write_no_warning_and_a_failure_one_line_per_interval() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    m.write(
        "dead.yaml",
        &format!(
            "{}---\n{}",
            service("dead", closed),
            ingress("dead", &[("dead.test", "Prefix", "/", "dead")])
        ),
    );
    m.write(
        "limited.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {name: limit}\nspec:\n  rateLimit: {average: 1, period: 1h, burst: 1}\n---\napiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: limited}\nspec:\n  routes:\n  - match: Host(`limited.test`)\n    middlewares: [{name: limit}]\n    services: [{name: app, port: 80}]\n",
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let mut limited = 0;
    for _ in 0..30 {
        limited += usize::from(get(fjord.web, "limited.test", "/").await.status == 429);
    }
    assert_eq!(limited, 29);
    for _ in 0..30 {
        assert!(
            get(fjord.web, "dead.test", "/")
                .await
                .status
                .is_server_error()
        );
    }
    let warnings = || -> Vec<serde_json::Value> {
        fjord
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["level"] == "WARN")
            .collect()
    };
    let failed = |w: &serde_json::Value| w["message"] == "request failed";
    let seen = warnings();
    assert!(
        !seen.iter().any(|w| w.to_string().contains("rate limit")),
        "a refusal by policy is no warning: {seen:#?}"
    );
    // The failing backend's requests fail in one or two ways (a refused connection, then no
    // endpoint while it backs off): a line for each, not one per request.
    let lines = seen.iter().filter(|w| failed(w)).count();
    assert!((1..=2).contains(&lines), "{seen:#?}");

    // Past the interval, the next failure writes again, with the count of those held back.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    for _ in 0..2 {
        get(fjord.web, "dead.test", "/").await;
    }
    let held: u64 = warnings()
        .iter()
        .filter(|w| failed(w))
        .filter_map(|w| w["held_back"].as_u64())
        .sum();
    // 30 failures, two of them written: most of the other 28 are counted (a cause still
    // backing off may not write again yet, so not necessarily all).
    assert!(held >= 20, "{:#?}", warnings());
}

const SLOW_READERS: &str =
    "    transport: {respondingTimeouts: {writeTimeout: 1s, idleTimeout: 1s}}\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_closed_and_its_upstream_connection_released() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = start(&m, SLOW_READERS, "");
    // 64 MiB, far more than the socket buffers between fjord and a client that reads nothing.
    let size = 64 << 20;
    let mut conn = TcpStream::connect(fjord.web).unwrap();
    conn.write_all(format!("GET /bytes/{size} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(backend.open(), 1, "the response is under way");
    // Reading nothing, the client stalls the response; past the write timeout fjord closes
    // the connection, and the upstream one with it.
    released(&backend).await;
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    let ended = conn.read_to_end(&mut got);
    assert!(
        ended.is_ok() || ended.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection was closed"
    );
    assert!(got.len() < size, "{} bytes", got.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_client_with_a_closed_window_does_not_hold_upstream_connections() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = start(&m, SLOW_READERS, "");
    let stream = tokio::net::TcpStream::connect(fjord.web).await.unwrap();
    let mut builder =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.initial_stream_window_size(0);
    let (h2, conn) = builder
        .handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    let driving = tokio::spawn(conn);
    // 20 responses whose bodies can never flow: each holds an upstream connection.
    let mut held = Vec::new();
    for i in 0..20 {
        let mut h2 = h2.clone();
        held.push(tokio::spawn(async move {
            let req = Request::get(format!("http://app.test/bytes/{}", 100_000 + i))
                .body(Full::<Bytes>::default())
                .unwrap();
            let response = h2.send_request(req).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.is_err()
        }));
    }
    for _ in 0..250 {
        if backend.connections() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend.connections(), 20);
    released(&backend).await;
    for body in held {
        assert!(
            body.await.unwrap(),
            "the body ended with an error: fjord closed the connection"
        );
    }
    let _ = driving.await;
}

/// The value of the metric series `series` (its name and labels, as exposed), or 0.
async fn metric(fjord: &Fjord, series: &str) -> f64 {
    let metrics = support::tls_free_get(fjord.admin, "/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn past_max_connections_new_connections_are_closed_and_open_ones_served() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = start(&m, "    limits: {maxConnections: 5}\n", "");
    let open_series = r#"fjord_open_connections{entrypoint="web",protocol="http"}"#;
    let mut idle: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(fjord.web).unwrap())
        .collect();
    for _ in 0..250 {
        if metric(&fjord, open_series).await == 5.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&fjord, open_series).await, 5.0);

    // A sixth is closed at once, unanswered.
    let answer = raw(
        fjord.web,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(answer, "", "{answer}");
    assert_eq!(
        metric(
            &fjord,
            r#"fjord_entrypoint_connections_refused_total{entrypoint="web"}"#
        )
        .await,
        1.0
    );
    // Those open are served.
    let first = &mut idle[0];
    first
        .write_all(b"GET /open HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    first.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // One closed, a new one is let in.
    drop(idle.remove(0));
    let mut served = false;
    for _ in 0..250 {
        let answer = raw(
            fjord.web,
            b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        );
        if answer.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfinished_http2_header_block_gets_the_request_header_timeout() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = start(
        &m,
        "    transport: {respondingTimeouts: {requestHeaderTimeout: 1s}}\n",
        "",
    );
    let mut conn = TcpStream::connect(fjord.web).unwrap();
    let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    opening.extend([0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, empty
    // HEADERS on stream 1 with 3 bytes of its block (:method GET, :scheme http, :path /), and
    // no END_HEADERS: the rest would come in CONTINUATION frames, which never do.
    opening.extend([0, 0, 3, 0x1, 0x1, 0, 0, 0, 1, 0x82, 0x86, 0x84]);
    conn.write_all(&opening).unwrap();
    // hyper alone would wait for its keep-alive ping to go unanswered, some 50 s.
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut got = Vec::new();
    let ended = conn.read_to_end(&mut got);
    assert!(
        ended.is_ok()
            || ended
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "still open after 15 s: {ended:?}"
    );
    assert_eq!(backend.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_rewritten_in_place_never_takes_its_routes_away() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(get(fjord.web, "app.test", "/").await.status, 200);
    let file = m.path().join("app.yaml");
    let content = std::fs::read(&file).unwrap();
    // An editor saving in place: truncate, then write 50 ms later, every 150 ms. A reload
    // the quiet after a write lets through lands on the next truncate.
    let writer = std::thread::spawn(move || {
        for _ in 0..20 {
            let mut f = std::fs::File::create(&file).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            f.write_all(&content).unwrap();
            drop(f);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut statuses = std::collections::BTreeMap::new();
    while !writer.is_finished() {
        let status = get(fjord.web, "app.test", "/").await.status.as_u16();
        *statuses.entry(status).or_insert(0) += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.join().unwrap();
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_longer_than_the_write_timeout_still_finishes_a_slow_request() {
    let backend = echo("app").await;
    let m = app(backend.addr);
    let mut fjord = start(
        &m,
        "    transport: {respondingTimeouts: {writeTimeout: 1s}, lifeCycle: {graceTimeOut: 10s}}\n",
        "",
    );
    let web = fjord.web;
    // The backend takes 2.5 s: the connection closes meanwhile, but nothing waits on the
    // client, so the write timeout does not cut the request short.
    let in_flight = tokio::spawn(async move { get(web, "app.test", "/delay/2500").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    fjord.signal_term();
    let reply = in_flight.await.unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.backend().as_deref()),
        (200, Some("app"))
    );
    assert_eq!(fjord.wait_exit(Duration::from_secs(15)), Some(0));
}
