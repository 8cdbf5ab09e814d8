//! Ingress spec conformance through real sockets: host rules, path rules, default backend,
//! conflicts and class filtering, each checked by which echo backend answered and what it saw.

mod support;

use support::{Echo, Fjord, LOOPBACK_CONFIG, Manifests, get, ingress, service};

/// Echo backends named after their Services, and their manifests.
async fn backends(names: &[&str], manifests: &Manifests) -> Vec<Echo> {
    let mut out = Vec::new();
    for name in names {
        let echo = Echo::start(name, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        manifests.write(&format!("services/{name}.yaml"), &service(name, echo.addr));
        out.push(echo);
    }
    out
}

fn timestamped(name: &str, created: &str, host: &str, svc: &str) -> String {
    ingress(name, &[(host, "Prefix", "/", svc)]).replacen(
        "namespace: default}",
        &format!("namespace: default, creationTimestamp: \"{created}\"}}"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_paths_default_backend_conflicts_and_classes() {
    let m = Manifests::new();
    let _echoes = backends(
        &[
            "root",
            "exact-foo",
            "prefix-foo",
            "foo-bar",
            "exact-slash",
            "wildcard",
            "anyhost",
            "fallback",
            "legacy",
            "old",
            "new",
        ],
        &m,
    )
    .await;
    m.write(
        "shop.yaml",
        &ingress(
            "shop",
            &[
                ("shop.example.com", "Prefix", "/", "root"),
                ("shop.example.com", "Exact", "/foo", "exact-foo"),
                ("shop.example.com", "Prefix", "/foo", "prefix-foo"),
                (
                    "shop.example.com",
                    "ImplementationSpecific",
                    "/foo/bar/",
                    "foo-bar",
                ),
                ("shop.example.com", "Exact", "/exact/", "exact-slash"),
            ],
        ),
    );
    m.write(
        "wild.yaml",
        &ingress("wild", &[("*.example.com", "Prefix", "/", "wildcard")]),
    );
    m.write(
        "any.yaml",
        &ingress("any", &[("", "Prefix", "/anyhost", "anyhost")]),
    );
    m.write(
        "fallback.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: fallback}\nspec:\n  ingressClassName: fjord\n  defaultBackend: {service: {name: fallback, port: {number: 80}}}\n",
    );
    // Class filtering: another controller's class, the legacy annotation, no class at all.
    m.write(
        "classes.yaml",
        &format!(
            "{}---\n{}---\n{}",
            ingress("nginx", &[("nginx.test", "Prefix", "/", "root")])
                .replace("ingressClassName: fjord", "ingressClassName: nginx"),
            ingress("legacy", &[("legacy.test", "Prefix", "/", "legacy")]).replace(
                "namespace: default}\nspec:\n  ingressClassName: fjord",
                "namespace: default, annotations: {kubernetes.io/ingress.class: fjord}}\nspec:"
            ),
            ingress("classless", &[("classless.test", "Prefix", "/", "root")])
                .replace("  ingressClassName: fjord\n", ""),
        ),
    );
    // Same host and path twice: the older Ingress wins, whatever the names say.
    m.write(
        "conflict-a.yaml",
        &timestamped("aaa-new", "2024-05-01T00:00:00Z", "conflict.test", "new"),
    );
    m.write(
        "conflict-z.yaml",
        &timestamped("zzz-old", "2020-05-01T00:00:00Z", "conflict.test", "old"),
    );

    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;

    // (host, path, backend that must answer)
    let cases = [
        ("shop.example.com", "/", "root"),
        ("shop.example.com", "/foo", "exact-foo"),
        ("shop.example.com", "/foo/", "prefix-foo"),
        ("shop.example.com", "/foo/baz", "prefix-foo"),
        ("shop.example.com", "/foobar", "root"),
        ("shop.example.com", "/FOO", "root"),
        ("shop.example.com", "/foo/bar", "foo-bar"),
        ("shop.example.com", "/foo/bar/", "foo-bar"),
        ("shop.example.com", "/foo/bar/baz", "foo-bar"),
        ("shop.example.com", "/foo/barbaz", "prefix-foo"),
        ("shop.example.com", "/exact/", "exact-slash"),
        ("shop.example.com", "/exact", "root"),
        ("shop.example.com", "/anyhost", "root"),
        ("SHOP.Example.COM:8080", "/foo", "exact-foo"),
        ("x.example.com", "/anything", "wildcard"),
        ("x.example.com", "/anyhost/x", "wildcard"),
        ("a.b.example.com", "/", "fallback"),
        ("example.com", "/", "fallback"),
        ("a.b.example.com", "/anyhost/x", "anyhost"),
        ("unknown.test", "/anyhost", "anyhost"),
        ("unknown.test", "/anyhostile", "fallback"),
        ("nginx.test", "/", "fallback"),
        ("legacy.test", "/", "legacy"),
        ("classless.test", "/", "fallback"),
        ("conflict.test", "/", "old"),
    ];
    let mut failures = Vec::new();
    for (host, path, want) in cases {
        let reply = get(web, host, path).await;
        if reply.backend().as_deref() != Some(want) {
            failures.push(format!(
                "{host}{path}: want {want}, got {:?} ({})",
                reply.backend(),
                reply.status
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // The backend sees the Host header and the path (with query) exactly as sent.
    let reply = get(web, "SHOP.Example.COM:8080", "/foo/bar/?q=1&r=%20x").await;
    let seen = reply.json();
    assert_eq!(seen["host"], "SHOP.Example.COM:8080");
    assert_eq!(seen["path"], "/foo/bar/?q=1&r=%20x");

    // The loser of the conflict is reported, naming the winner.
    fjord.wait_for_log("is already served by Ingress default/zzz-old");
}

#[tokio::test(flavor = "multi_thread")]
async fn default_ingress_class_takes_classless_ingresses_and_a_foreign_class_named_fjord_does_not()
{
    let m = Manifests::new();
    let _echoes = backends(&["mine", "theirs"], &m).await;
    m.write(
        "classes.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: edge\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}\nspec: {controller: fjord.dev/ingress-controller}\n---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: fjord}\nspec: {controller: traefik.io/ingress-controller}\n",
    );
    m.write(
        "ingresses.yaml",
        &format!(
            "{}---\n{}",
            ingress("mine", &[("mine.test", "Prefix", "/", "mine")])
                .replace("  ingressClassName: fjord\n", ""),
            ingress("theirs", &[("theirs.test", "Prefix", "/", "theirs")]),
        ),
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(
        get(fjord.web, "mine.test", "/").await.backend().as_deref(),
        Some("mine")
    );
    let reply = get(fjord.web, "theirs.test", "/").await;
    assert_eq!(
        reply.status, 404,
        "class fjord belongs to another controller here"
    );
    assert_eq!(reply.body, "404 page not found\n");
}
