//! TraefikService: a weighted split (nested splits multiplied out), a mirroring whose copies
//! are checked on the mirror's side (alone, and as one branch of a split), a
//! highestRandomWeight that keeps each client to one service on every replica, a failover
//! whose fallback takes what the main service cannot serve (Services, or splits); what is not
//! supported is refused by name.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::auth::AuthServer;
use support::{Echo, Fjord, Manifests, client, get, send, service};

fn route(name: &str, host: &str, services: &str) -> String {
    format!(
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  routes:\n  - match: Host(`{host}`)\n    services: {services}\n"
    )
}

fn traefik_service(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: fjord.dev/v1alpha1\nkind: TraefikService\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}\n"
    )
}

async fn echo(name: &'static str, m: &Manifests) -> Echo {
    support::echo_service(name, m).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn highest_random_weight_keeps_each_client_to_one_service_on_every_replica() {
    let m = Manifests::new();
    let _a = echo("a", &m).await;
    let _b = echo("b", &m).await;
    m.write(
        "hrw.yaml",
        &traefik_service(
            "hrw",
            "  highestRandomWeight:\n    services:\n    - {name: a, port: 80, weight: 1}\n    - {name: b, port: 80, weight: 1}",
        ),
    );
    m.write(
        "route.yaml",
        &route("web", "hrw.test", "[{name: hrw, kind: TraefikService}]"),
    );
    // Two replicas on the same manifests, as two nodes of the DaemonSet.
    let one = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let two = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let ask = |web: std::net::SocketAddr, from: u8| async move {
        let ip = std::net::IpAddr::from([127, 0, 0, from]);
        support::get_from(web, "hrw.test", "/", ip)
            .await
            .backend()
            .unwrap()
    };
    let mut served: BTreeMap<String, u32> = BTreeMap::new();
    for from in 1..=20 {
        let first = ask(one.web, from).await;
        for web in [one.web, two.web, one.web] {
            assert_eq!(ask(web, from).await, first, "client 127.0.0.{from}");
        }
        *served.entry(first).or_default() += 1;
    }
    assert_eq!(served.len(), 2, "both services have clients: {served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_highest_random_weight_inside_a_split_keeps_each_client_to_one_of_its_services() {
    let m = Manifests::new();
    let _a = echo("a", &m).await;
    let _b = echo("b", &m).await;
    let _c = echo("c", &m).await;
    m.write(
        "split.yaml",
        &traefik_service(
            "split",
            "  weighted:\n    services:\n    - {name: a, port: 80}\n    - {name: hrw, kind: TraefikService}",
        ),
    );
    m.write(
        "hrw.yaml",
        &traefik_service(
            "hrw",
            "  highestRandomWeight:\n    services:\n    - {name: b, port: 80}\n    - {name: c, port: 80}",
        ),
    );
    m.write(
        "route.yaml",
        &route("web", "split.test", "[{name: split, kind: TraefikService}]"),
    );
    let (code, out) = support::check(m.path(), None);
    assert_eq!(code, 0, "{out}");
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let mut total: BTreeMap<String, u32> = BTreeMap::new();
    let mut ranked_to: BTreeMap<String, u32> = BTreeMap::new();
    for from in 1..=16u8 {
        let ip = std::net::IpAddr::from([127, 0, 0, from]);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let backend = support::get_from(fjord.web, "split.test", "/", ip)
                .await
                .backend()
                .unwrap();
            *total.entry(backend.clone()).or_default() += 1;
            seen.insert(backend);
        }
        let ranked: Vec<&String> = seen.iter().filter(|b| *b != "a").collect();
        assert!(
            ranked.len() <= 1,
            "client {ip} keeps to one of the ranked services: {seen:?}"
        );
        if let Some(b) = ranked.first() {
            *ranked_to.entry((*b).clone()).or_default() += 1;
        }
    }
    assert_eq!(
        total["a"], 32,
        "the split gives the service half: {total:?}"
    );
    assert_eq!(
        ranked_to.len(),
        2,
        "both ranked services have clients: {ranked_to:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_split_with_a_nested_one_shares_requests_by_the_product_of_weights() {
    let m = Manifests::new();
    let _stable = echo("stable", &m).await;
    let _c1 = echo("c1", &m).await;
    let _c2 = echo("c2", &m).await;
    m.write(
        "split.yaml",
        &traefik_service(
            "split",
            "  weighted:\n    services:\n    - {name: stable, port: 80, weight: 3}\n    - {name: canaries, kind: TraefikService, weight: 1}",
        ),
    );
    m.write(
        "canaries.yaml",
        &traefik_service(
            "canaries",
            "  weighted:\n    services:\n    - {name: c1, port: 80}\n    - {name: c2, port: 80}",
        ),
    );
    m.write(
        "route.yaml",
        &route("web", "split.test", "[{name: split, kind: TraefikService}]"),
    );
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..80 {
        let backend = get(fjord.web, "split.test", "/").await.backend().unwrap();
        *seen.entry(backend).or_default() += 1;
    }
    assert_eq!(
        seen,
        BTreeMap::from([("c1".into(), 10), ("c2".into(), 10), ("stable".into(), 60)]),
        "3/4 stable, 1/8 each canary, in smooth order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_gets_its_share_of_copies_and_the_client_only_the_main_answer() {
    let m = Manifests::new();
    let _main = echo("main", &m).await;
    let shadow = AuthServer::start().await;
    m.write("svc-shadow.yaml", &service("shadow", shadow.addr));
    m.write(
        "mirror.yaml",
        &traefik_service(
            "mirrored",
            "  mirroring:\n    name: main\n    port: 80\n    mirrorBody: false\n    mirrors:\n    - {name: shadow, port: 80, percent: 50}",
        ),
    );
    m.write(
        "whole.yaml",
        &traefik_service(
            "bodies",
            "  mirroring:\n    name: main\n    port: 80\n    mirrors:\n    - {name: shadow, port: 80, percent: 100}",
        ),
    );
    m.write(
        "heads.yaml",
        &traefik_service(
            "heads",
            "  mirroring:\n    name: main\n    port: 80\n    mirrorBody: false\n    mirrors:\n    - {name: shadow, port: 80, percent: 100}",
        ),
    );
    m.write(
        "route3.yaml",
        &route(
            "web3",
            "heads.test",
            "[{name: heads, kind: TraefikService}]",
        ),
    );
    m.write(
        "sized.yaml",
        &traefik_service(
            "sized",
            "  mirroring:\n    name: main\n    port: 80\n    maxBodySize: 10\n    mirrors:\n    - {name: shadow, port: 80, percent: 100}",
        ),
    );
    m.write(
        "route4.yaml",
        &route(
            "web4",
            "sized.test",
            "[{name: sized, kind: TraefikService}]",
        ),
    );
    m.write(
        "route.yaml",
        &route(
            "web",
            "mirror.test",
            "[{name: mirrored, kind: TraefikService}]",
        ),
    );
    m.write(
        "route2.yaml",
        &route(
            "web2",
            "bodies.test",
            "[{name: bodies, kind: TraefikService}]",
        ),
    );
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    for i in 0..20 {
        let reply = get(fjord.web, "mirror.test", &format!("/n/{i}")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.backend().as_deref(),
            Some("main"),
            "the client gets the main answer"
        );
    }
    let post = Request::post(format!("http://{}/form", fjord.web))
        .header("host", "mirror.test")
        .body(Full::new(Bytes::from_static(b"a=1&b=2")))
        .unwrap();
    assert_eq!(
        send(&client(), post).await.backend().as_deref(),
        Some("main")
    );
    let wait = |n: usize| {
        let shadow = &shadow;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while shadow.asked().len() < n {
                assert!(
                    Instant::now() < deadline,
                    "the mirror saw {:?}",
                    shadow.asked()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait(10).await;
    let asked = shadow.asked();
    let gets: Vec<&str> = asked
        .iter()
        .filter(|a| a.method == "GET")
        .map(|a| a.uri.as_str())
        .collect();
    assert_eq!(gets.len(), 10, "half of 20: {gets:?}");
    assert!(gets.iter().all(|u| u.starts_with("/n/")));
    let first = &asked[0];
    assert_eq!(
        first.headers["host"], "mirror.test",
        "the copy is the request as the backend gets it"
    );
    assert_eq!(first.headers["x-forwarded-for"], "127.0.0.1");

    // Bodies are not copied: with mirrorBody the request is not mirrored at all, without it
    // the mirror gets the head alone.
    let before = shadow.asked().len();
    let post = Request::post(format!("http://{}/form", fjord.web))
        .header("host", "bodies.test")
        .body(Full::new(Bytes::from_static(b"a=1")))
        .unwrap();
    assert_eq!(
        send(&client(), post).await.backend().as_deref(),
        Some("main")
    );
    let get_one = get(fjord.web, "bodies.test", "/after").await;
    assert_eq!(get_one.status, 200);
    wait(before + 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after: Vec<_> = shadow.asked()[before..]
        .iter()
        .map(|a| (a.method.to_string(), a.uri.clone()))
        .collect();
    assert_eq!(
        after,
        [("GET".to_owned(), "/after".to_owned())],
        "the POST with a body was not copied"
    );
    let post = Request::post(format!("http://{}/heads", fjord.web))
        .header("host", "heads.test")
        .body(Full::new(Bytes::from_static(b"a=1")))
        .unwrap();
    assert_eq!(
        send(&client(), post).await.backend().as_deref(),
        Some("main")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let head = loop {
        if let Some(p) = shadow.asked().into_iter().find(|a| a.uri == "/heads") {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the POST's head never reached the mirror"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(head.method, "POST");
    assert!(
        head.headers.get("content-length").is_none(),
        "mirrorBody: false sends the head alone"
    );

    // With maxBodySize, a body of a declared length within it is copied too; a longer one or
    // one of undeclared length is not mirrored, and the main service gets each whole.
    let sized = |path: &str, body: Full<Bytes>| {
        Request::post(format!("http://{}{path}", fjord.web))
            .header("host", "sized.test")
            .body(body)
            .unwrap()
    };
    for (path, body) in [("/short", &b"a=1&b=2"[..]), ("/long", &b"a=1&b=2&c=3"[..])] {
        let reply = send(&client(), sized(path, Full::new(Bytes::from_static(body)))).await;
        assert_eq!(reply.backend().as_deref(), Some("main"));
        assert_eq!(reply.json()["body_bytes"].as_u64(), Some(body.len() as u64));
    }
    let reply = support::post_chunked(fjord.web, "sized.test", "/chunked", &[], &[b"x=1"]).await;
    assert_eq!(reply.json()["body_bytes"].as_u64(), Some(3));
    let deadline = Instant::now() + Duration::from_secs(10);
    let short = loop {
        if let Some(p) = shadow.asked().into_iter().find(|a| a.uri == "/short") {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the short POST never reached the mirror"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (short.method.as_str(), &short.body[..]),
        ("POST", &b"a=1&b=2"[..])
    );
    assert_eq!(short.headers["content-length"], "7");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let copied: Vec<String> = shadow.asked().into_iter().map(|a| a.uri).collect();
    assert!(
        !copied.iter().any(|u| u == "/long" || u == "/chunked"),
        "bodies past maxBodySize or of undeclared length are not mirrored: {copied:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirroring_inside_a_weighted_split_copies_only_what_its_main_service_takes() {
    // Traefik's documented shape: a split over a Service, a nested split and a mirroring.
    let m = Manifests::new();
    let _a = echo("a", &m).await;
    let _b = echo("b", &m).await;
    let _c = echo("c", &m).await;
    let _d = echo("d", &m).await;
    let shadow = AuthServer::start().await;
    m.write("svc-shadow.yaml", &service("shadow", shadow.addr));
    m.write(
        "wrr1.yaml",
        &traefik_service(
            "wrr1",
            "  weighted:\n    services:\n    - {name: a, port: 80}\n    - {name: wrr2, kind: TraefikService}\n    - {name: mirror1, kind: TraefikService}",
        ),
    );
    m.write(
        "wrr2.yaml",
        &traefik_service(
            "wrr2",
            "  weighted:\n    services:\n    - {name: b, port: 80}\n    - {name: c, port: 80}",
        ),
    );
    m.write(
        "mirror1.yaml",
        &traefik_service(
            "mirror1",
            "  mirroring:\n    name: d\n    port: 80\n    mirrors:\n    - {name: shadow, port: 80, percent: 50}",
        ),
    );
    m.write(
        "route.yaml",
        &route("web", "split.test", "[{name: wrr1, kind: TraefikService}]"),
    );
    let (code, out) = support::check(m.path(), None);
    assert_eq!(code, 0, "{out}");
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let mut by_backend: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..60 {
        let path = format!("/n/{i}");
        let reply = get(fjord.web, "split.test", &path).await;
        assert_eq!(reply.status, 200);
        by_backend
            .entry(reply.backend().unwrap())
            .or_default()
            .push(path);
    }
    let count = |b: &str| by_backend.get(b).map_or(0, Vec::len);
    assert!(
        (19..=21).contains(&count("a")) && (19..=21).contains(&count("d")),
        "a third each to a and the mirroring's main: {by_backend:?}"
    );
    assert!((9..=11).contains(&count("b")) && (9..=11).contains(&count("c")));
    // Half of what d took, and nothing else, is copied to the mirror.
    let copied = count("d") / 2;
    let deadline = Instant::now() + Duration::from_secs(10);
    while shadow.asked().len() < copied {
        assert!(Instant::now() < deadline, "{:?}", shadow.asked());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mirrored: Vec<String> = shadow.asked().into_iter().map(|a| a.uri).collect();
    assert_eq!(mirrored.len(), copied, "{mirrored:?}");
    assert!(
        mirrored.iter().all(|p| by_backend["d"].contains(p)),
        "only requests d served are copied: {mirrored:?}, d took {:?}",
        by_backend["d"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_between_weighted_splits_falls_back_to_the_fallbacks_split() {
    let m = Manifests::new();
    let (main, _task) = failing_main().await;
    m.write("main.yaml", &service("main", main));
    let _steady = echo("steady", &m).await;
    let _b1 = echo("b1", &m).await;
    let _b2 = echo("b2", &m).await;
    m.write(
        "down.yaml",
        &service("down", "127.0.0.1:9".parse().unwrap()).replace("ready: true", "ready: false"),
    );
    let split = |name: &str, one: &str, two: &str| {
        traefik_service(
            name,
            &format!(
                "  weighted:\n    services:\n    - {{name: {one}, port: 80}}\n    - {{name: {two}, port: 80}}"
            ),
        )
    };
    m.write("mains.yaml", &split("mains", "main", "steady"));
    m.write("backups.yaml", &split("backups", "b1", "b2"));
    m.write("downs.yaml", &split("downs", "down", "down"));
    let failover = |name: &str, main: &str| {
        traefik_service(
            name,
            &format!(
                "  failover:\n    service: {{name: {main}, kind: TraefikService}}\n    fallback: {{name: backups, kind: TraefikService}}\n    errors: {{status: [\"503\"]}}"
            ),
        )
    };
    m.write("fo.yaml", &failover("fo", "mains"));
    m.write("gone.yaml", &failover("gone", "downs"));
    m.write(
        "r-fo.yaml",
        &route("fo", "fo.test", "[{name: fo, kind: TraefikService}]"),
    );
    m.write(
        "r-gone.yaml",
        &route("gone", "gone.test", "[{name: gone, kind: TraefikService}]"),
    );
    let (code, out) = support::check(m.path(), None);
    assert_eq!(code, 0, "{out}");
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..20 {
        let reply = get(fjord.web, "fo.test", "/cart").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        *seen.entry(reply.backend().unwrap()).or_default() += 1;
    }
    assert_eq!(
        seen,
        BTreeMap::from([("b1".into(), 5), ("b2".into(), 5), ("steady".into(), 10)]),
        "the main split's failing half goes over to the fallback's split"
    );
    // No ready endpoint in the main split: the fallback split serves everything.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..10 {
        let reply = get(fjord.web, "gone.test", "/x").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        *seen.entry(reply.backend().unwrap()).or_default() += 1;
    }
    assert_eq!(seen, BTreeMap::from([("b1".into(), 5), ("b2".into(), 5)]));
}

/// A backend that answers 503 to everything but `/ok`, which it answers 200 `main`.
async fn failing_main() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let status = if req.uri().path() == "/ok" { 200 } else { 503 };
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .status(status)
                            .header("x-backend", "main")
                            .body(Full::new(Bytes::from_static(b"main")))
                            .unwrap(),
                    )
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failover_sends_what_the_main_service_cannot_serve_to_its_fallback() {
    let m = Manifests::new();
    let (main, _task) = failing_main().await;
    m.write("main.yaml", &service("main", main));
    let _backup = echo("backup", &m).await;
    // A Service whose one endpoint is not ready.
    m.write(
        "down.yaml",
        &service("down", "127.0.0.1:9".parse().unwrap()).replace("ready: true", "ready: false"),
    );
    let failover = |name: &str, main: &str, errors: &str| {
        traefik_service(
            name,
            &format!(
                "  failover:\n    service: {{name: {main}, port: 80}}\n    fallback: {{name: backup, port: 80}}\n    errors: {errors}"
            ),
        )
    };
    m.write(
        "fo.yaml",
        &failover("fo", "main", "{status: [\"500-503\"]}"),
    );
    m.write(
        "narrow.yaml",
        &failover("narrow", "main", "{status: [\"500\"]}"),
    );
    m.write(
        "gone.yaml",
        &failover("gone", "down", "{status: [\"500-599\"]}"),
    );
    m.write(
        "held.yaml",
        &failover(
            "held",
            "main",
            "{status: [\"503\"], maxRequestBodyBytes: 10}",
        ),
    );
    for (name, host) in [
        ("fo", "fo.test"),
        ("narrow", "narrow.test"),
        ("gone", "gone.test"),
        ("held", "held.test"),
    ] {
        m.write(
            &format!("r-{name}.yaml"),
            &route(
                name,
                host,
                &format!("[{{name: {name}, kind: TraefikService}}]"),
            ),
        );
    }
    let (code, out) = support::check(m.path(), None);
    assert_eq!(code, 0, "{out}");
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);

    // The main Service answers what it can.
    let ok = get(fjord.web, "fo.test", "/ok").await;
    assert_eq!((ok.status.as_u16(), ok.body.as_str()), (200, "main"));
    // A listed error status: the request goes to the fallback, which answers.
    let failed_over = get(fjord.web, "fo.test", "/cart").await;
    assert_eq!(failed_over.status, 200, "{failed_over:?}");
    assert_eq!(failed_over.backend().as_deref(), Some("backup"));
    assert_eq!(failed_over.json()["path"], "/cart");
    // A request with a body is not sent twice: the main's answer stands.
    let posted = send(
        &client(),
        Request::post(format!("http://{}/cart", fjord.web))
            .header("host", "fo.test")
            .body(Full::new(Bytes::from_static(b"order")))
            .unwrap(),
    )
    .await;
    assert_eq!(
        (posted.status.as_u16(), posted.body.as_str()),
        (503, "main")
    );
    // Unless the failover holds bodies that long: then it goes over, body and all.
    let post = |body: &'static [u8]| {
        Request::post(format!("http://{}/cart", fjord.web))
            .header("host", "held.test")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()
    };
    let held = send(&client(), post(b"order")).await;
    assert_eq!(held.status, 200, "{held:?}");
    assert_eq!(held.backend().as_deref(), Some("backup"));
    assert_eq!(
        (
            held.json()["method"].as_str(),
            held.json()["body_bytes"].as_u64()
        ),
        (Some("POST"), Some(5))
    );
    let longer = send(&client(), post(b"eleven byte")).await;
    assert_eq!(
        (longer.status.as_u16(), longer.body.as_str()),
        (503, "main"),
        "a body longer than the failover holds is sent once"
    );
    // A status the failover does not list stands too.
    let unlisted = get(fjord.web, "narrow.test", "/cart").await;
    assert_eq!(
        (unlisted.status.as_u16(), unlisted.body.as_str()),
        (503, "main")
    );
    // No ready endpoint in the main Service: the fallback serves every request.
    let gone = get(fjord.web, "gone.test", "/x").await;
    assert_eq!(gone.status, 200, "{gone:?}");
    assert_eq!(gone.backend().as_deref(), Some("backup"));
    // The metrics say which service answered.
    let metrics = get(fjord.admin, "localhost", "/metrics").await.body;
    assert!(
        metrics.contains("fjord_service_requests_total{code=\"200\",method=\"GET\",service=\"default/backup:80\"}"),
        "{metrics}"
    );
}

#[test]
fn what_is_not_supported_is_refused_by_name() {
    let m = Manifests::new();
    m.write("app.yaml", &service("app", "127.0.0.1:9".parse().unwrap()));
    m.write(
        "fo.yaml",
        &traefik_service(
            "fo",
            "  failover: {service: {name: app, port: 80}, fallback: {name: mi, kind: TraefikService}}",
        ),
    );
    m.write(
        "mi.yaml",
        &traefik_service(
            "mi",
            "  mirroring: {name: app, port: 80, mirrors: [{name: app, port: 80, percent: 10}]}",
        ),
    );
    m.write(
        "inner-fo.yaml",
        &traefik_service(
            "inner-fo",
            "  failover: {service: {name: app, port: 80}, fallback: {name: app, port: 80}}",
        ),
    );
    m.write(
        "outer.yaml",
        &traefik_service(
            "outer",
            "  weighted: {services: [{name: app, port: 80}, {name: inner-fo, kind: TraefikService}]}",
        ),
    );
    m.write(
        "r4.yaml",
        &route("r4", "d.test", "[{name: outer, kind: TraefikService}]"),
    );
    m.write(
        "chained.yaml",
        &traefik_service(
            "chained",
            "  weighted: {services: [{name: app, port: 80, middlewares: [{name: some}]}, {name: app, port: 80}]}",
        ),
    );
    m.write(
        "r5.yaml",
        &route("r5", "e.test", "[{name: chained, kind: TraefikService}]"),
    );
    m.write(
        "loop-a.yaml",
        &traefik_service(
            "la",
            "  weighted:\n    services: [{name: lb, kind: TraefikService}]",
        ),
    );
    m.write(
        "loop-b.yaml",
        &traefik_service(
            "lb",
            "  weighted:\n    services: [{name: la, kind: TraefikService}]",
        ),
    );
    m.write(
        "r1.yaml",
        &route("r1", "a.test", "[{name: fo, kind: TraefikService}]"),
    );
    m.write(
        "r2.yaml",
        &route("r2", "b.test", "[{name: la, kind: TraefikService}]"),
    );
    m.write(
        "r3.yaml",
        &route("r3", "c.test", "[{name: missing, kind: TraefikService}]"),
    );
    let (code, out) = support::check(m.path(), None);
    assert_ne!(code, 0, "{out}");
    for (route, why) in [
        (
            "r1",
            "spec.failover.fallback: a mirroring or sticky cookie under a failover's fallback is not honoured",
        ),
        (
            "r4",
            "TraefikService default/inner-fo is a failover; it is honoured as a route's only service",
        ),
        (
            "r2",
            "nest in a cycle or too deep: default/la -> default/lb -> default/la",
        ),
        ("r3", "TraefikService default/missing not found"),
        (
            "r5",
            "the Services its TraefikServices reach disagree on middlewares",
        ),
    ] {
        support::assert_diagnostic(&out, &format!("IngressRoute default/{route}"), why);
    }
}
