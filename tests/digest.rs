//! `digestAuth` (and ingress-nginx's `auth-type: digest`) as a browser meets it: a 401 with a
//! challenge, an answer computed from the password, the backend reached with the user's name;
//! a wrong password, a replayed answer and a foreign nonce refused; a nonce from one replica
//! accepted by another.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use md5::{Digest as _, Md5};
use support::{Echo, Fjord, Manifests, Reply, client, send, service};

fn hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The htdigest line for `user` with `password` in `realm`.
fn line(user: &str, realm: &str, password: &str) -> String {
    format!(
        "{user}:{realm}:{}",
        hex(&format!("{user}:{realm}:{password}"))
    )
}

async fn get(web: SocketAddr, host: &str, path: &str, authorization: Option<&str>) -> Reply {
    let mut req = Request::get(format!("http://{web}{path}")).header("host", host);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    send(&client(), req.body(Full::<Bytes>::default()).unwrap()).await
}

/// A parameter of a `WWW-Authenticate: Digest` challenge.
fn param(challenge: &str, name: &str) -> String {
    challenge
        .split(&format!("{name}=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// What a browser answers to `challenge` for a GET of `uri`, as request number `nc`.
fn answer(challenge: &str, user: &str, password: &str, uri: &str, nc: u32) -> String {
    let (realm, nonce, opaque) = (
        param(challenge, "realm"),
        param(challenge, "nonce"),
        param(challenge, "opaque"),
    );
    let ha1 = hex(&format!("{user}:{realm}:{password}"));
    let ha2 = hex(&format!("GET:{uri}"));
    let nc = format!("{nc:08x}");
    let response = hex(&format!("{ha1}:{nonce}:{nc}:0a4f113b:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"0a4f113b\", response=\"{response}\", opaque=\"{opaque}\""
    )
}

fn guarded(name: &str, host: &str, middleware: &str) -> String {
    support::through_middleware(name, host, middleware)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_and_wrong_replayed_or_foreign_answers_are_refused() {
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = Manifests::new();
    m.write("app.yaml", &service("app", app.addr));
    m.write(
        "users.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: digest-users, namespace: default}}\nstringData:\n  users: |\n    {}\n    {}\n",
            line("alice", "traefik", "wonderland"),
            line("bob", "other", "builder"),
        ),
    );
    m.write(
        "auth.yaml",
        &guarded(
            "auth",
            "digest.test",
            "  digestAuth: {secret: digest-users, realm: traefik, headerField: X-WebAuth-User, removeHeader: true}",
        ),
    );
    // Two replicas, as on two nodes: each accepts the other's nonces.
    let a = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let b = Fjord::start(m.path(), support::LOOPBACK_CONFIG);

    let asked = get(a.web, "digest.test", "/docs?x=1", None).await;
    assert_eq!(asked.status, 401);
    let challenge = asked.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Digest realm=\"traefik\""),
        "{challenge}"
    );
    assert!(challenge.contains("qop=\"auth\""), "{challenge}");

    let good = answer(&challenge, "alice", "wonderland", "/docs?x=1", 1);
    let ok = get(a.web, "digest.test", "/docs?x=1", Some(&good)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let seen = ok.json();
    assert_eq!(seen["headers"]["x-webauth-user"], "alice");
    assert!(
        seen["headers"].get("authorization").is_none(),
        "removeHeader"
    );

    let replayed = get(a.web, "digest.test", "/docs?x=1", Some(&good)).await;
    assert_eq!(replayed.status, 401, "the same count again is a replay");
    let next = answer(&challenge, "alice", "wonderland", "/docs?x=1", 2);
    assert_eq!(
        get(a.web, "digest.test", "/docs?x=1", Some(&next))
            .await
            .status,
        200
    );
    let on_b = answer(&challenge, "alice", "wonderland", "/docs?x=1", 3);
    assert_eq!(
        get(b.web, "digest.test", "/docs?x=1", Some(&on_b))
            .await
            .status,
        200,
        "replica b accepts replica a's nonce"
    );

    let wrong = answer(&challenge, "alice", "guess", "/docs?x=1", 4);
    assert_eq!(
        get(a.web, "digest.test", "/docs?x=1", Some(&wrong))
            .await
            .status,
        401
    );
    let other_uri = answer(&challenge, "alice", "wonderland", "/admin", 5);
    assert_eq!(
        get(a.web, "digest.test", "/docs?x=1", Some(&other_uri))
            .await
            .status,
        401
    );
    let other_realm = answer(
        &challenge.replace("traefik", "other"),
        "bob",
        "builder",
        "/",
        1,
    );
    assert_eq!(
        get(a.web, "digest.test", "/", Some(&other_realm))
            .await
            .status,
        401,
        "bob is of another realm"
    );
    let forged = answer(
        &challenge.replace(
            &param(&challenge, "nonce"),
            "5f5e100-00000000000000000000000000000000",
        ),
        "alice",
        "wonderland",
        "/",
        1,
    );
    assert_eq!(
        get(a.web, "digest.test", "/", Some(&forged)).await.status,
        401,
        "a nonce fjord never made"
    );
    let basic = get(
        a.web,
        "digest.test",
        "/",
        Some("Basic YWxpY2U6d29uZGVybGFuZA=="),
    )
    .await;
    assert_eq!(basic.status, 401, "basic credentials are not digest ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_nginx_auth_type_digest_is_honoured() {
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = Manifests::new();
    m.write("app.yaml", &service("app", app.addr));
    m.write(
        "secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: htdigest, namespace: default}}\nstringData:\n  auth: {}\n",
            line("carol", "Authentication Required", "pw")
        ),
    );
    let ingress = support::ingress("web", &[("nginx.test", "Prefix", "/", "app")]).replacen(
        "namespace: default}",
        "namespace: default, annotations: {nginx.ingress.kubernetes.io/auth-type: digest, nginx.ingress.kubernetes.io/auth-secret: htdigest}}",
        1,
    );
    m.write("web.yaml", &ingress);
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    let asked = get(fjord.web, "nginx.test", "/", None).await;
    assert_eq!(asked.status, 401);
    let challenge = asked.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("realm=\"Authentication Required\""),
        "{challenge}"
    );
    let ok = get(
        fjord.web,
        "nginx.test",
        "/",
        Some(&answer(&challenge, "carol", "pw", "/", 1)),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.backend().as_deref(), Some("app"));
}

#[test]
fn bad_users_are_refused_naming_the_field() {
    let m = Manifests::new();
    m.write("app.yaml", &service("app", "127.0.0.1:9".parse().unwrap()));
    m.write(
        "a.yaml",
        &guarded(
            "short",
            "a.test",
            "  digestAuth: {users: [\"alice:realm\"]}",
        ),
    );
    m.write(
        "b.yaml",
        &guarded(
            "realm",
            "b.test",
            &format!(
                "  digestAuth: {{users: [\"{}\"], realm: mine}}",
                line("a", "theirs", "p")
            ),
        ),
    );
    m.write("c.yaml", &guarded("none", "c.test", "  digestAuth: {}"));
    let (code, out) = support::check(m.path(), None);
    assert_ne!(code, 0);
    for (name, why) in [
        (
            "short",
            "spec.digestAuth.users: users line 1 is not user:realm:hash",
        ),
        ("realm", "no user is of realm \"mine\""),
        ("none", "spec.digestAuth needs users or a secret"),
    ] {
        support::assert_diagnostic(&out, &format!("Middleware default/{name}"), why);
    }
}
