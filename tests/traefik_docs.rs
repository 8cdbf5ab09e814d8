//! Traefik's documented Kubernetes examples (tests/data/traefik-docs), with only `apiVersion`
//! changed, through `fjord check`: each object is accepted, or refused for the reason this
//! test names. What fjord accepts but does differently is a warning, never silence.
//!
//! A TraefikService is checked as the routes naming it are translated: `apps/wrr1-2` (from
//! service.md) is named by none; a route naming it is accepted (its one service's `scheme`,
//! `sticky` and deprecated `strategy` are read as a route's service's are).

mod support;

use base64::Engine as _;
use md5::Digest as _;
use support::{Manifests, check, service};

/// Objects the documentation's examples refuse, each with the words of its refusal: what
/// fjord does not do (yet), or what Traefik's own CRD would refuse too.
const REFUSED: &[(&str, &str)] = &[
    // Traefik's CRD types maxBodySize as an integer: the API server refuses "1M" too.
    (
        "TraefikService default/mirror1",
        "spec.mirroring.maxBodySize: invalid type: string \"1M\"",
    ),
    (
        "IngressRoute default/ingressroutebar-2",
        "TraefikService default/mirror1 not found",
    ),
    (
        "IngressRoute apps/test-name",
        "spec.parentRefs: multi-layer routing",
    ),
    // Traefik refuses a route to a Service without a port too ("ingressRoute service port
    // not defined"), whatever the Service's own ports.
    (
        "IngressRoute apps/test.route-2",
        "spec.routes[0].services[0].port is required",
    ),
    (
        "IngressRoute default/ingressroutebar-3",
        "spec.routes[0].services[0].port is required",
    ),
    // Its entry point is not one of the static configuration's, which Traefik refuses too.
    (
        "IngressRoute apps/test.route",
        "spec.entryPoints: \"foo\" is not an entry point of the static configuration",
    ),
];

/// The Services and Secrets the examples name, in the namespaces they name them.
fn supporting(m: &Manifests) {
    for (ns, name) in [
        ("default", "whoami"),
        ("default", "error-handler-service"),
        ("default", "svc1"),
        ("default", "svc2"),
        ("apps", "foo"),
        ("apps", "svc1"),
        ("apps", "svc2"),
        ("apps", "svc3"),
    ] {
        let svc = service(name, "127.0.0.1:1".parse().unwrap())
            .replace("namespace: default", &format!("namespace: {ns}"));
        m.write(&format!("svc-{ns}-{name}.yaml"), &svc);
    }
    let ca = support::tls::Ca::new();
    m.write(
        "supersecret.yaml",
        &ca.secret("supersecret", &["example.com", "example.net"])
            .replace(
                "{name: supersecret}",
                "{name: supersecret, namespace: apps}",
            ),
    );
    m.write(
        "users.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: secretName, namespace: default}\nstringData: {users: \"test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/\"}\n",
    );
    let hash: String = md5::Md5::digest(b"test:traefik:test")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    m.write(
        "digest.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: userssecret, namespace: default}}\ndata: {{users: {}}}\n",
            base64::engine::general_purpose::STANDARD.encode(format!("test:traefik:{hash}\n"))
        ),
    );
    m.write("redis-ca.yaml", &ca.ca_secret("redis-ca"));
    m.write(
        "redis-client-cert.yaml",
        &ca.secret("redis-client-cert", &["fjord"]),
    );
    m.write(
        "redis-credentials.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: redis-credentials, namespace: default}\nstringData: {password: secret}\n",
    );
    for name in ["secret-ca1", "secret-ca2"] {
        m.write(
            &format!("{name}.yaml"),
            &support::tls::Ca::new().ca_secret(name),
        );
    }
    m.write(
        "default-supersecret.yaml",
        &ca.secret("supersecret", &["example.com"]),
    );
    m.write(
        "opt.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: TLSOption\nmetadata: {name: opt, namespace: apps}\nspec: {minVersion: VersionTLS12}\n",
    );
    m.write(
        "middleware1.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {name: middleware1, namespace: apps}\nspec: {compress: {}}\n",
    );
}

#[test]
fn traefiks_documented_examples_are_accepted_or_refused_by_name() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/traefik-docs");
    let m = Manifests::new();
    let mut objects = Vec::new();
    for file in ["middlewares.yaml", "crds.yaml"] {
        let text = std::fs::read_to_string(docs.join(file)).unwrap();
        for doc in fjord::provider::manifests::parse_documents(&text).unwrap() {
            let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
            objects.push(format!(
                "{} {ns}/{}",
                doc["kind"].as_str().unwrap(),
                doc["metadata"]["name"].as_str().unwrap()
            ));
        }
        m.write(file, &text);
    }
    supporting(&m);
    // The middleware.md example references a Middleware in another namespace, which the
    // documentation says needs allowCrossNamespace.
    let config = m.write(
        "../fjord.yaml",
        "providers:\n  kubernetesCRD:\n    allowCrossNamespace: true\n  kubernetesIngress: {}\n",
    );
    let (_, out) = check(m.path(), Some(&config));
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error:")).collect();
    for object in &objects {
        let mine: Vec<&&str> = errors
            .iter()
            .filter(|l| l.starts_with(&format!("error: {object}:")))
            .collect();
        match REFUSED.iter().find(|(o, _)| o == object) {
            None => assert!(mine.is_empty(), "{object} is refused:\n{mine:#?}"),
            Some((_, why)) => assert!(
                mine.iter().any(|l| l.contains(why)),
                "{object} is not refused for {why:?}:\n{mine:#?}\n{out}"
            ),
        }
    }
    // Nothing else is refused: no supporting object, no object this test did not list.
    for line in &errors {
        assert!(
            REFUSED
                .iter()
                .any(|(o, _)| line.starts_with(&format!("error: {o}:"))),
            "{line}"
        );
    }
    // What fjord reads but does differently is named.
    for (object, words) in [
        (
            "IngressRoute default/testroute",
            "ServersTransport default/mytransport: spec: its TLS settings do nothing",
        ),
        (
            "Middleware default/test-ratelimit",
            "spec.rateLimit.redis.db is not used: several endpoints are a Redis Cluster",
        ),
        (
            "TLSOption default/mytlsoption",
            "\"TLS_RSA_WITH_AES_256_GCM_SHA384\" is not offered",
        ),
        (
            "IngressRoute apps/test-name-3",
            "strategy \"RoundRobin\" is deprecated",
        ),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("warning: {object}:")) && l.contains(words)),
            "{object}: {words}\n{out}"
        );
    }
    let accepted = objects.len() - REFUSED.len();
    assert!(accepted >= 50, "{accepted} of {} accepted", objects.len());
}
