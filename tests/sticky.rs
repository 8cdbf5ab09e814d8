//! Sticky sessions: an IngressRoute service's `sticky.cookie` (and ingress-nginx's
//! `affinity: cookie`) keeps a client on the endpoint its cookie names, across reloads, an
//! endpoint added, and replicas; a client whose endpoint went away gets another and a new
//! cookie.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::{Echo, Fjord, Manifests, Reply, client, send, service_over};

async fn get(web: SocketAddr, host: &str, cookie: Option<&str>) -> Reply {
    let mut req = Request::get(format!("http://{web}/")).header("host", host);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    send(&client(), req.body(Full::<Bytes>::default()).unwrap()).await
}

fn route(sticky: &str) -> String {
    format!(
        r#"apiVersion: fjord.dev/v1alpha1
kind: IngressRoute
metadata: {{name: web, namespace: default}}
spec:
  routes:
  - match: Host(`sticky.test`)
    services:
    - name: app
      port: 80
      sticky: {sticky}
"#
    )
}

async fn backends(names: &[&'static str]) -> Vec<Echo> {
    let mut out = Vec::new();
    for name in names {
        out.push(
            Echo::start(name, "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap(),
        );
    }
    out
}

fn addrs(echoes: &[Echo]) -> Vec<SocketAddr> {
    echoes.iter().map(|e| e.addr).collect()
}

/// The `name=value` part of the response's `Set-Cookie`, and the whole header.
fn set_cookie(reply: &Reply) -> Option<(String, String)> {
    let header = reply.headers.get("set-cookie")?.to_str().ok()?.to_owned();
    Some((header.split(';').next()?.to_owned(), header))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_keeps_its_endpoint_across_reloads_endpoint_changes_and_replicas() {
    let echoes = backends(&["a", "b", "c", "d"]).await;
    let m = Manifests::new();
    m.write("app.yaml", &service_over("app", &addrs(&echoes[..3])));
    m.write(
        "route.yaml",
        &route("{cookie: {name: srv, secure: true, httpOnly: true, sameSite: lax, maxAge: 60}}"),
    );
    let a = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let b = Fjord::start(m.path(), support::LOOPBACK_CONFIG);

    let first = get(a.web, "sticky.test", None).await;
    let (cookie, header) = set_cookie(&first).expect("a new client gets a cookie");
    assert!(cookie.starts_with("srv="), "{header}");
    assert_eq!(
        header.strip_prefix(&cookie).unwrap(),
        "; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax"
    );
    let mine = first.backend().unwrap();
    assert!(
        !header.contains("127.0.0.1"),
        "the cookie does not give the address away"
    );
    for _ in 0..6 {
        let again = get(a.web, "sticky.test", Some(&cookie)).await;
        assert_eq!(again.backend().as_deref(), Some(mine.as_str()));
        assert!(
            again.headers.get("set-cookie").is_none(),
            "no new cookie while it holds"
        );
    }
    // Without the cookie, requests spread.
    let mut spread = BTreeSet::new();
    for _ in 0..6 {
        spread.insert(get(a.web, "sticky.test", None).await.backend().unwrap());
    }
    assert!(spread.len() > 1, "{spread:?}");
    // Another replica reads the same cookie the same way.
    assert_eq!(
        get(b.web, "sticky.test", Some(&cookie)).await.backend(),
        Some(mine.clone())
    );

    // An endpoint added (a reload with other endpoints): the client stays.
    m.write("app.yaml", &service_over("app", &addrs(&echoes)));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get(a.web, "sticky.test", None).await.backend().as_deref() != Some("d") {
        assert!(
            std::time::Instant::now() < deadline,
            "the new endpoint never served"
        );
    }
    for _ in 0..4 {
        assert_eq!(
            get(a.web, "sticky.test", Some(&cookie)).await.backend(),
            Some(mine.clone())
        );
    }

    // Its endpoint removed: another, and a cookie naming it.
    let rest: Vec<SocketAddr> = echoes
        .iter()
        .zip(["a", "b", "c", "d"])
        .filter(|(_, name)| *name != mine)
        .map(|(e, _)| e.addr)
        .collect();
    m.write("app.yaml", &service_over("app", &rest));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let moved = loop {
        let r = get(a.web, "sticky.test", Some(&cookie)).await;
        if r.backend().as_deref() != Some(mine.as_str()) {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the endpoint was never removed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let (new_cookie, _) = set_cookie(&moved).expect("a new cookie for the new endpoint");
    assert_ne!(new_cookie, cookie);
    let now = moved.backend();
    assert_eq!(
        get(a.web, "sticky.test", Some(&new_cookie)).await.backend(),
        now
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_nginx_affinity_cookie_is_honoured() {
    let echoes = backends(&["a", "b", "c"]).await;
    let m = Manifests::new();
    m.write("app.yaml", &service_over("app", &addrs(&echoes)));
    let ingress = support::ingress("web", &[("nginx.test", "Prefix", "/", "app")]).replacen(
        "namespace: default}",
        "namespace: default, annotations: {nginx.ingress.kubernetes.io/affinity: cookie, nginx.ingress.kubernetes.io/session-cookie-name: route, nginx.ingress.kubernetes.io/session-cookie-max-age: \"172800\", nginx.ingress.kubernetes.io/session-cookie-samesite: Strict}}",
        1,
    );
    m.write("web.yaml", &ingress);
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let first = get(fjord.web, "nginx.test", None).await;
    let (cookie, header) = set_cookie(&first).unwrap();
    assert!(cookie.starts_with("route="));
    assert!(
        header.ends_with("; Path=/; Max-Age=172800; HttpOnly; SameSite=Strict"),
        "{header}"
    );
    for _ in 0..5 {
        assert_eq!(
            get(fjord.web, "nginx.test", Some(&cookie)).await.backend(),
            first.backend()
        );
    }
}

#[test]
fn bad_sticky_settings_are_refused_naming_the_field() {
    let m = Manifests::new();
    m.write(
        "app.yaml",
        &service_over("app", &["127.0.0.1:9".parse().unwrap()]),
    );
    m.write(
        "route.yaml",
        &route("{cookie: {name: \"a b\", sameSite: sometimes}}"),
    );
    let (code, out) = support::check(m.path(), None);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("spec.routes[0].services[0].sticky.cookie.name \"a b\" is not a cookie name"),
        "{out}"
    );
}
