//! Hot reload through real sockets: file edits, additions and removals take effect, and a
//! client loop running across many reloads sees no failed request, no dropped keep-alive
//! connection, and a WebSocket opened before the reloads keeps working.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::{Echo, Fjord, LOOPBACK_CONFIG, Manifests, get, ingress, service, until_served};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn edits_additions_and_removals_take_effect() {
    let m = Manifests::new();
    let a = Echo::start("a", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let b = Echo::start("b", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write("a.yaml", &service("a", a.addr));
    m.write("b.yaml", &service("b", b.addr));
    m.write(
        "app.yaml",
        &ingress("app", &[("app.test", "Prefix", "/", "a")]),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(
        get(fjord.web, "app.test", "/").await.backend().as_deref(),
        Some("a")
    );

    let mut slowest = Duration::ZERO;
    m.write(
        "app.yaml",
        &ingress("app", &[("app.test", "Prefix", "/", "b")]),
    );
    slowest = slowest.max(until_served(fjord.web, "app.test", Some("b")).await);
    m.write(
        "deep/new/extra.yml",
        &ingress("extra", &[("extra.test", "Prefix", "/", "a")]),
    );
    slowest = slowest.max(until_served(fjord.web, "extra.test", Some("a")).await);
    m.remove("deep/new/extra.yml");
    slowest = slowest.max(until_served(fjord.web, "extra.test", None).await);
    // Plain in-place writes (not rename) count too.
    std::fs::write(
        m.path().join("app.yaml"),
        ingress("app", &[("app.test", "Prefix", "/", "a")]),
    )
    .unwrap();
    slowest = slowest.max(until_served(fjord.web, "app.test", Some("a")).await);
    // The README's promise: a change applies within a second (the watch settles for 100 ms).
    assert!(
        slowest < Duration::from_secs(1),
        "slowest change took {slowest:?} to apply"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_under_load_drop_nothing() {
    let m = Manifests::new();
    let one = Echo::start("one", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let two = Echo::start("two", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write("svc.yaml", &service("app", one.addr));
    m.write(
        "app.yaml",
        &ingress("app", &[("app.test", "Prefix", "/", "app")]),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;

    // A WebSocket opened before any reload.
    let stream = tokio::net::TcpStream::connect(web).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        tokio_tungstenite::tungstenite::ClientRequestBuilder::new(
            "ws://app.test/ws".parse().unwrap(),
        ),
        stream,
    )
    .await
    .expect("websocket through fjord");
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .into_text()
            .unwrap()
            .as_str(),
        "one: before"
    );

    // Client loops, each on one keep-alive connection that must survive every reload.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for _ in 0..3 {
        let (stop, ok) = (Arc::clone(&stop), Arc::clone(&ok));
        loops.push(tokio::spawn(async move {
            let io = TokioIo::new(tokio::net::TcpStream::connect(web).await.unwrap());
            let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let req = Request::get("/load")
                    .header("host", "app.test")
                    .body(Empty::new())
                    .unwrap();
                match send.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.into_body().collect().await;
                        if status == 200 && body.is_ok() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures.push(format!("{status}"));
                        }
                    }
                    Err(e) => {
                        failures.push(format!("connection failed: {e}"));
                        break;
                    }
                }
            }
            failures
        }));
    }

    // 40 reloads: endpoints flip between the two backends, and unrelated files come and go.
    for i in 0..40 {
        let backend = if i % 2 == 0 { &two } else { &one };
        m.write("svc.yaml", &service("app", backend.addr));
        if i % 4 == 0 {
            m.write(
                &format!("noise-{i}.yaml"),
                &ingress(
                    &format!("noise-{i}"),
                    &[("noise.test", "Prefix", &format!("/n{i}"), "app")],
                ),
            );
        } else if i % 4 == 2 {
            m.remove(&format!("noise-{}.yaml", i - 2));
        }
        let want = if i % 2 == 0 { "two" } else { "one" };
        until_served(web, "app.test", Some(want)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        let failures = l.await.unwrap();
        assert!(
            failures.is_empty(),
            "failed requests during reloads: {failures:?}"
        );
    }
    let served = ok.load(Ordering::Relaxed);
    assert!(served > 40, "the loops ran: {served} requests");

    // The WebSocket still reaches the backend it was opened to.
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .into_text()
            .unwrap()
            .as_str(),
        "one: after"
    );
    let reloads = fjord
        .logs()
        .iter()
        .filter(|l| l.contains("config loaded"))
        .count();
    assert!(reloads >= 40, "{reloads} reloads");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_balanced_and_reloads_keep_the_upstream_pool() {
    let m = Manifests::new();
    let a = Echo::start("a", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let b = Echo::start("b", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write("svc.yaml", &support::service_over("app", &[a.addr, b.addr]));
    m.write(
        "app.yaml",
        &ingress("app", &[("app.test", "Prefix", "/", "app")]),
    );
    // One worker: each request here is a new connection that any worker could accept.
    let fjord = Fjord::start_with_workers(m.path(), LOOPBACK_CONFIG, 1);

    let mut order = Vec::new();
    for _ in 0..10 {
        order.push(get(fjord.web, "app.test", "/").await.backend().unwrap());
    }
    assert!(
        order.windows(2).all(|w| w[0] != w[1]),
        "round robin alternates: {order:?}"
    );
    assert_eq!(order.iter().filter(|b| *b == "a").count(), 5);

    // Ten reloads that leave the Service alone: its pooled connections stay open and reused.
    let before = a.connections() + b.connections();
    for i in 0..10 {
        m.write(
            "noise.yaml",
            &ingress(
                "noise",
                &[(&format!("noise{i}.test"), "Prefix", "/", "app")],
            ),
        );
        let host = format!("noise{i}.test");
        while get(fjord.web, &host, "/").await.status != 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let after = a.connections() + b.connections();
    assert!(
        before <= 4,
        "sequential requests reuse pooled connections: {before}"
    );
    assert!(
        after - before <= 2,
        "reloads did not drop the pool: {before} connections before, {after} after"
    );
}
