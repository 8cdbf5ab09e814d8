//! A route's `strategy`: `p2c` keeps requests off an endpoint still sending a response,
//! `leasttime` off one slow to answer, `hrw` keeps each client to one endpoint; what cannot be
//! honoured is refused by name and `RoundRobin` is warned of as deprecated.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::{Echo, Fjord, Manifests, client, get, service_over};
use tokio::net::TcpListener;
use tokio::sync::watch;

const API_CONFIG: &str = "entryPoints:\n  web:\n    address: \"127.0.0.1:0\"\nadmin:\n  address: \"127.0.0.1:0\"\napi:\n  dashboard: true\n";

fn route(name: &str, host: &str, service: &str) -> String {
    format!(
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  routes:\n  - match: Host(`{host}`)\n    services: [{service}]\n"
    )
}

/// A backend named `slow`: each answer's head comes `delay` after its request, and its body
/// (one chunk, then the end) once `open` is true.
async fn slow_backend(delay: Duration, open: watch::Receiver<bool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let open = open.clone();
            let service = service_fn(move |_: Request<Incoming>| {
                let mut open = open.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    let body = futures_util::stream::once(async move {
                        let _ = open.wait_for(|o| *o).await;
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"slow\n")))
                    });
                    let response = Response::builder()
                        .header("x-backend", "slow")
                        .body(StreamBody::new(body))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// The `x-backend` of a GET to `host`, its body left unread.
async fn head(fjord: &Fjord, host: &str) -> (String, Response<Incoming>) {
    let req = Request::get(format!("http://{}/", fjord.web))
        .header("host", host)
        .body(http_body_util::Full::<Bytes>::default())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client().request(req))
        .await
        .expect("a response head")
        .unwrap();
    let backend = response.headers()["x-backend"].to_str().unwrap().to_owned();
    (backend, response)
}

/// The API's endpoints of Service `app`'s port 80: each one's requests in flight.
async fn endpoints(fjord: &Fjord) -> BTreeMap<String, i64> {
    let reply = get(
        fjord.admin,
        "localhost",
        "/api/http/services/default/app:80",
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let service: Value = reply.json();
    service["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap().to_owned(),
                e["inFlight"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// fjord serving `host` by `strategy` over Service `app`: endpoint `slow` and an echo backend
/// `fast` (returned, with the manifests, to keep).
async fn slow_and_fast(slow: SocketAddr, host: &str, strategy: &str) -> (Fjord, Echo, Manifests) {
    let fast = Echo::start("fast", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = Manifests::new();
    m.write("app.yaml", &service_over("app", &[slow, fast.addr]));
    let service = format!("{{name: app, port: 80, strategy: {strategy}}}");
    m.write("route.yaml", &route("app", host, &service));
    (Fjord::start(m.path(), API_CONFIG), fast, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_sends_nothing_to_an_endpoint_still_sending_a_response_until_it_is_done() {
    let (open, opened) = watch::channel(false);
    let slow = slow_backend(Duration::ZERO, opened).await;
    let (fjord, fast, _m) = slow_and_fast(slow, "p2c.test", "p2c").await;

    // Until one lands on `slow`, whose body then stays unsent: it is in flight there.
    let mut held = None;
    for _ in 0..60 {
        let (backend, response) = head(&fjord, "p2c.test").await;
        if backend == "slow" {
            held = Some(response);
            break;
        }
        response.into_body().collect().await.unwrap();
    }
    let held = held.expect("p2c chose `slow` at some point of 60 requests");
    let in_flight = endpoints(&fjord).await;
    assert_eq!(in_flight[&slow.to_string()], 1, "{in_flight:?}");
    assert_eq!(in_flight[&fast.addr.to_string()], 0, "{in_flight:?}");

    // With two endpoints, p2c weighs both each time: fewer in flight wins every request.
    for i in 0..20 {
        let (backend, response) = head(&fjord, "p2c.test").await;
        assert_eq!(backend, "fast", "request {i} went to the busy endpoint");
        response.into_body().collect().await.unwrap();
    }

    // Its body sent, `slow` is idle again and has its share.
    open.send(true).unwrap();
    let body = held.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"slow\n");
    let mut seen = BTreeMap::<String, u32>::new();
    for _ in 0..40 {
        let (backend, response) = head(&fjord, "p2c.test").await;
        response.into_body().collect().await.unwrap();
        *seen.entry(backend).or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        2,
        "both endpoints serve once neither is busy: {seen:?}"
    );
    let in_flight = endpoints(&fjord).await;
    assert!(in_flight.values().all(|n| *n == 0), "{in_flight:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leasttime_sends_requests_to_the_endpoint_quicker_to_answer() {
    let (_open, opened) = watch::channel(true);
    let slow = slow_backend(Duration::from_millis(300), opened).await;
    let (fjord, _fast, _m) = slow_and_fast(slow, "lt.test", "leasttime").await;
    let mut seen = BTreeMap::<String, u32>::new();
    for _ in 0..30 {
        let (backend, response) = head(&fjord, "lt.test").await;
        response.into_body().collect().await.unwrap();
        *seen.entry(backend).or_default() += 1;
    }
    // Each is tried once (an endpoint with no time yet scores 0); then `fast` has the lower
    // mean time to a head, 300 ms lower, and takes every request.
    assert_eq!(seen.get("slow"), Some(&1), "{seen:?}");
    assert_eq!(seen.get("fast"), Some(&29), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hrw_keeps_each_client_address_to_one_endpoint() {
    let a = Echo::start("a", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let b = Echo::start("b", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = Manifests::new();
    m.write("app.yaml", &service_over("app", &[a.addr, b.addr]));
    m.write(
        "route.yaml",
        &route("app", "hrw.test", "{name: app, port: 80, strategy: hrw}"),
    );
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let mut clients = BTreeMap::<String, u32>::new();
    for from in 1..=16u8 {
        let ip = std::net::IpAddr::from([127, 0, 0, from]);
        let first = support::get_from(fjord.web, "hrw.test", "/", ip)
            .await
            .backend()
            .unwrap();
        for _ in 0..3 {
            let again = support::get_from(fjord.web, "hrw.test", "/", ip)
                .await
                .backend()
                .unwrap();
            assert_eq!(again, first, "client {ip}");
        }
        *clients.entry(first).or_default() += 1;
    }
    assert_eq!(clients.len(), 2, "both endpoints have clients: {clients:?}");
}

#[test]
fn check_names_a_strategy_it_cannot_honour_and_warns_of_round_robin() {
    let m = Manifests::new();
    m.write(
        "app.yaml",
        &service_over("app", &["127.0.0.1:9".parse().unwrap()]),
    );
    m.write(
        "old.yaml",
        &route(
            "old",
            "old.test",
            "{name: app, port: 80, strategy: RoundRobin}",
        ),
    );
    m.write(
        "bad.yaml",
        &route("bad", "bad.test", "{name: app, port: 80, strategy: random}"),
    );
    m.write(
        "mixed.yaml",
        &route(
            "mixed",
            "mixed.test",
            "{name: app, port: 80, strategy: p2c}, {name: app, port: 80, strategy: leasttime}",
        ),
    );
    m.write(
        "split.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: TraefikService\nmetadata: {name: split, namespace: default}\nspec:\n  weighted: {services: [{name: app, port: 80, strategy: RoundRobin}]}\n",
    );
    m.write(
        "split-route.yaml",
        &route(
            "old-split",
            "split.test",
            "{name: split, kind: TraefikService}",
        ),
    );
    let (code, stdout) = support::check(m.path(), None);
    assert_eq!(code, 1, "{stdout}");
    for line in [
        "warning: IngressRoute default/old: spec.routes[0].services[0].strategy \"RoundRobin\" is deprecated; use wrr, which it is read as",
        "warning: IngressRoute default/old-split: spec.routes[0].services: TraefikService default/split: spec.weighted.services[0].strategy \"RoundRobin\" is deprecated; use wrr, which it is read as",
        "error: IngressRoute default/bad: spec.routes[0].services[0].strategy \"random\" is not wrr, p2c, hrw or leasttime",
        "error: IngressRoute default/mixed: spec.routes[0].services disagree on strategy",
    ] {
        assert!(stdout.contains(line), "{line}\n---\n{stdout}");
    }
}
