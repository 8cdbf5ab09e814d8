//! The Ingress conformance suite: manifests covering host rules, path rules, the default
//! backend, conflicts and class filtering, and the backend each request must reach. Used by the
//! manifests-folder conformance test and by the `--kubernetes` equivalence test.

use super::{Echo, Manifests, ingress, service};

/// Echo backends named after their Services, and their manifests.
pub(crate) async fn backends(names: &[&str], manifests: &Manifests) -> Vec<Echo> {
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

/// Writes the suite's manifests into `m` and starts its echo backends (keep them alive).
pub(crate) async fn manifests(m: &Manifests) -> Vec<Echo> {
    let echoes = backends(
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
        m,
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

    echoes
}

/// (host, path, backend that must answer)
pub(crate) const CASES: &[(&str, &str, &str)] = &[
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
