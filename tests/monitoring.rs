//! The monitoring kit in `deploy/monitoring/` loads: the PrometheusRule's groups pass
//! `promtool check rules`, and every metric the Grafana dashboard queries is in fjord's live
//! `/metrics`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use support::tls::Ca;
use support::{Echo, Fjord, Manifests, get, service, tls_free_get};

fn deploy(file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/monitoring")
            .join(file),
    )
    .unwrap()
}

#[test]
fn alert_rules_pass_promtool() {
    let rule: serde_json::Value = serde_saphyr::from_str(&deploy("prometheusrule.yaml")).unwrap();
    assert_eq!(rule["kind"], "PrometheusRule");
    let dir = tempfile::tempdir().unwrap();
    let groups = dir.path().join("rules.yml");
    // JSON is YAML: the spec is what Prometheus reads as a rules file.
    std::fs::write(&groups, rule["spec"].to_string()).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&groups)
        .output()
        .expect("promtool is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 6 rules found"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboard_queries_exists() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana-dashboard.json")).expect("valid JSON");
    let mut wanted = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("fjord_"));
            wanted.extend(names.map(str::to_owned));
        }
    }
    assert!(wanted.len() >= 8, "{wanted:?}");

    // Traffic that makes every kind of series appear: a TLS certificate, a rate limit that
    // refuses, a service request.
    let m = Manifests::new();
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let ca = Ca::new();
    m.write("app.yaml", &service("app", app.addr));
    m.write("cert.yaml", &ca.secret("cert", &["app.test"]));
    m.write(
        "route.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {name: limit}\nspec: {rateLimit: {average: 1, period: 1h}}\n---\napiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: app}\nspec:\n  routes:\n  - match: Host(`app.test`)\n    middlewares: [{name: limit}]\n    services: [{name: app, port: 80}]\n  tls: {secretName: cert}\n",
    );
    let fjord = Fjord::start(m.path(), support::LOOPBACK_CONFIG);
    get(fjord.web, "app.test", "/").await;
    assert_eq!(get(fjord.web, "app.test", "/").await.status, 429);
    let metrics = tls_free_get(fjord.admin, "/metrics").await;
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| !metrics.contains(&format!("\n{name}")))
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
}
