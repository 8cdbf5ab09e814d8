//! HTTPS to backends against a test backend with its own CA: an IngressRoute service's
//! `scheme: https` checked as a ServersTransport says (its CA from a Secret, its
//! `serverName`; a wrong name refused; CAs from ConfigMaps too, several trusted at once), the
//! same on a TraefikService's Services, and ingress-nginx's `backend-protocol: HTTPS`
//! (unverified by default, as nginx; `proxy-ssl-verify: on` with `proxy-ssl-secret` and
//! `proxy-ssl-name`). The same Service port over HTTP and HTTPS are two backends.

mod support;

use support::tls::Ca;
use support::{Echo, Fjord, Manifests, get, service};

fn route(name: &str, host: &str, service: &str) -> String {
    format!(
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  routes:\n  - match: Host(`{host}`)\n    services: [{service}]\n"
    )
}

fn transport(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: fjord.dev/v1alpha1\nkind: ServersTransport\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_are_checked_as_the_servers_transport_says() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["app.internal"]);
    let backend = Echo::start_tls("secure", support::tls::acceptor(&cert, &key))
        .await
        .unwrap();
    let plain = Echo::start("plain", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let m = Manifests::new();
    m.write("svc.yaml", &service("app", backend.addr));
    m.write("plain.yaml", &service("plainapp", plain.addr));
    m.write("ca.yaml", &ca.ca_secret("app-ca"));
    m.write(
        "good.yaml",
        &transport(
            "good",
            "{serverName: app.internal, rootCAs: [{secret: app-ca}]}",
        ),
    );
    m.write(
        "wrong.yaml",
        &transport(
            "wrong",
            "{serverName: other.internal, rootCAs: [{secret: app-ca}]}",
        ),
    );
    m.write(
        "skip.yaml",
        &transport("skip", "{insecureSkipVerify: true}"),
    );
    // The CA in a ConfigMap, and trusted beside another CA's Secret.
    m.write(
        "ca-cm.yaml",
        &ca.ca_secret("app-ca-cm")
            .replace("kind: Secret", "kind: ConfigMap")
            .replace("stringData:", "data:"),
    );
    m.write("other-ca.yaml", &Ca::new().ca_secret("other-ca"));
    m.write(
        "cm.yaml",
        &transport(
            "cm",
            "{serverName: app.internal, rootCAs: [{secret: other-ca}, {configMap: app-ca-cm}]}",
        ),
    );
    m.write(
        "other.yaml",
        &transport(
            "other",
            "{serverName: app.internal, rootCAs: [{secret: other-ca}]}",
        ),
    );
    m.write(
        "nocm.yaml",
        &transport("nocm", "{rootCAs: [{configMap: missing}]}"),
    );
    m.write(
        "routes.yaml",
        &[
            route(
                "a",
                "good.test",
                "{name: app, port: 80, scheme: https, serversTransport: good}",
            ),
            route(
                "b",
                "wrong.test",
                "{name: app, port: 80, scheme: https, serversTransport: wrong}",
            ),
            route(
                "c",
                "skip.test",
                "{name: app, port: 80, scheme: https, serversTransport: skip}",
            ),
            route("d", "system.test", "{name: app, port: 80, scheme: https}"),
            route("e", "plain.test", "{name: plainapp, port: 80}"),
            route("f", "split.test", "{name: split, kind: TraefikService}"),
            route(
                "g",
                "cm.test",
                "{name: app, port: 80, scheme: https, serversTransport: cm}",
            ),
            route(
                "h",
                "other.test",
                "{name: app, port: 80, scheme: https, serversTransport: other}",
            ),
            route(
                "i",
                "nocm.test",
                "{name: app, port: 80, scheme: https, serversTransport: nocm}",
            ),
        ]
        .join("---\n"),
    );
    // A TraefikService's Services say how they are reached, as a route's do.
    m.write(
        "split.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: TraefikService\nmetadata: {name: split, namespace: default}\nspec:\n  weighted:\n    services:\n    - {name: app, port: 80, scheme: https, serversTransport: good, weight: 3}\n    - {name: app, port: 80, scheme: https, serversTransport: good}\n",
    );
    // One worker: pools are per worker, and this one is to be seen reused.
    let fjord = Fjord::start_with_workers(m.path(), support::LOOPBACK_CONFIG, 1);
    let good = get(fjord.web, "good.test", "/x").await;
    assert_eq!(good.status, 200, "{good:?}");
    assert_eq!(good.backend().as_deref(), Some("secure"));
    assert_eq!(good.json()["path"], "/x");
    // Pooled: the second request reuses the TLS connection.
    assert_eq!(get(fjord.web, "good.test", "/").await.status, 200);
    assert_eq!(backend.connections(), 1, "one TLS connection, kept alive");
    for (host, why) in [
        ("wrong.test", "a certificate for another name"),
        (
            "system.test",
            "a CA the system does not trust, checked against the address",
        ),
    ] {
        let refused = get(fjord.web, host, "/").await;
        assert_eq!(refused.status, 502, "{host}: {why}");
        assert!(refused.backend().is_none());
    }
    assert_eq!(
        get(fjord.web, "skip.test", "/").await.backend().as_deref(),
        Some("secure")
    );
    assert_eq!(
        get(fjord.web, "plain.test", "/").await.backend().as_deref(),
        Some("plain")
    );
    let split = get(fjord.web, "split.test", "/y").await;
    assert_eq!(split.status, 200, "{split:?}");
    assert_eq!(split.backend().as_deref(), Some("secure"));
    let cm = get(fjord.web, "cm.test", "/").await;
    assert_eq!(cm.backend().as_deref(), Some("secure"), "{cm:?}");
    assert_eq!(
        get(fjord.web, "other.test", "/").await.status,
        502,
        "another CA alone is not trusted"
    );
    assert_eq!(get(fjord.web, "nocm.test", "/").await.status, 503);
    let line = fjord.wait_for_log("IngressRoute default/i");
    assert!(
        line.contains("rootCAs[0]: ConfigMap default/missing not found"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_nginx_backend_protocol_https_is_honoured() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["app.internal"]);
    let backend = Echo::start_tls("secure", support::tls::acceptor(&cert, &key))
        .await
        .unwrap();
    let m = Manifests::new();
    m.write("svc.yaml", &service("app", backend.addr));
    m.write("ca.yaml", &ca.ca_secret("app-ca"));
    let annotated = |name: &str, host: &str, annotations: &str| {
        support::ingress(name, &[(host, "Prefix", "/", "app")]).replacen(
            "namespace: default}",
            &format!("namespace: default, annotations: {{nginx.ingress.kubernetes.io/backend-protocol: HTTPS{annotations}}}}}"),
            1,
        )
    };
    m.write("a.yaml", &annotated("a", "unverified.test", ""));
    m.write(
        "b.yaml",
        &annotated(
            "b",
            "verified.test",
            ", nginx.ingress.kubernetes.io/proxy-ssl-verify: \"on\", nginx.ingress.kubernetes.io/proxy-ssl-secret: default/app-ca, nginx.ingress.kubernetes.io/proxy-ssl-name: app.internal",
        ),
    );
    m.write(
        "c.yaml",
        &annotated(
            "c",
            "misnamed.test",
            ", nginx.ingress.kubernetes.io/proxy-ssl-verify: \"on\", nginx.ingress.kubernetes.io/proxy-ssl-secret: app-ca, nginx.ingress.kubernetes.io/proxy-ssl-name: nope.internal",
        ),
    );
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    assert_eq!(
        get(fjord.web, "unverified.test", "/")
            .await
            .backend()
            .as_deref(),
        Some("secure"),
        "nginx does not verify backends unless told"
    );
    assert_eq!(
        get(fjord.web, "verified.test", "/")
            .await
            .backend()
            .as_deref(),
        Some("secure")
    );
    assert_eq!(get(fjord.web, "misnamed.test", "/").await.status, 502);
}

#[test]
fn bad_transports_are_refused_naming_the_field() {
    let m = Manifests::new();
    m.write("app.yaml", &service("app", "127.0.0.1:9".parse().unwrap()));
    m.write("t1.yaml", &transport("cm", "{rootCAs: [{configMap: cas}]}"));
    m.write(
        "t2.yaml",
        &transport("spiffe", "{spiffe: {ids: [\"spiffe://cluster/ns/app\"]}}"),
    );
    m.write(
        "routes.yaml",
        &[
            route(
                "a",
                "a.test",
                "{name: app, port: 80, scheme: https, serversTransport: cm}",
            ),
            route(
                "b",
                "b.test",
                "{name: app, port: 80, scheme: https, serversTransport: spiffe}",
            ),
            route(
                "c",
                "c.test",
                "{name: app, port: 80, scheme: https, serversTransport: missing}",
            ),
            route("d", "d.test", "{name: app, port: 80, scheme: wss}"),
        ]
        .join("---\n"),
    );
    let (code, out) = support::check(m.path(), None);
    assert_ne!(code, 0, "{out}");
    for (route, why) in [
        (
            "a",
            "rootCAs[0]: ConfigMap default/cas not found, or it has no tls.ca, ca.crt or ca key",
        ),
        (
            "b",
            "spec.spiffe: fjord does not check backends' certificates this way",
        ),
        ("c", "ServersTransport default/missing not found"),
        ("d", "scheme \"wss\" is not http, https or h2c"),
    ] {
        support::assert_diagnostic(&out, &format!("IngressRoute default/{route}"), why);
    }
}
