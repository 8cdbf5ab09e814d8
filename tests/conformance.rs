//! Ingress spec conformance through real sockets: host rules, path rules, default backend,
//! conflicts and class filtering, each checked by which echo backend answered and what it saw.

mod support;

use support::suite::backends;
use support::{Fjord, LOOPBACK_CONFIG, Manifests, get, ingress, suite};

#[tokio::test(flavor = "multi_thread")]
async fn hosts_paths_default_backend_conflicts_and_classes() {
    let m = Manifests::new();
    let _echoes = suite::manifests(&m).await;
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let web = fjord.web;
    let cases = suite::CASES;

    let mut failures = Vec::new();
    for &(host, path, want) in cases {
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
