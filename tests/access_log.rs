//! Access log and request ids: JSON lines that parse and carry what an operator searches by, a
//! request id made when the client sent none, passed to the backend and returned, and query
//! strings redacted on request.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::{Echo, Fjord, Manifests, client, get, ingress, send, service};

#[tokio::test(flavor = "multi_thread")]
async fn json_access_log_lines_and_request_ids() {
    let m = Manifests::new();
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write(
        "app.yaml",
        &format!(
            "{}---\n{}",
            service("app", app.addr),
            ingress("app", &[("app.test", "Prefix", "/", "app")])
        ),
    );
    let config = format!(
        "{}accessLog: {{enabled: true, redactQuery: true}}\n",
        support::LOOPBACK_CONFIG
    );
    let fjord = Fjord::start(m.path(), &config);

    // The backend takes 200 ms: the logged duration covers the whole exchange.
    let reply = get(fjord.web, "app.test", "/delay/200?token=secret").await;
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    let body_len = reply.body.len() as u64;
    assert_eq!(id.len(), 32, "a generated id: {id}");
    assert!(
        id.bytes().all(|b| b.is_ascii_hexdigit()),
        "hex digits: {id}"
    );
    assert_eq!(
        reply.json()["headers"]["x-request-id"],
        id.as_str(),
        "the backend got the same id"
    );

    let req = Request::get(format!("http://{}/nope", fjord.web))
        .header("host", "other.test")
        .header("x-request-id", "client-id-1")
        .header("user-agent", "tester/1.0")
        .body(Full::<Bytes>::default())
        .unwrap();
    let reply = send(&client(), req).await;
    assert_eq!(
        (
            reply.status.as_u16(),
            reply.headers["x-request-id"].to_str().unwrap()
        ),
        (404, "client-id-1")
    );

    let lines = fjord.wait_for_stdout(2);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON line");
    assert_eq!(first["entrypoint"], "web");
    assert_eq!(first["router"], "default/app");
    assert_eq!(first["service"], "default/app:http");
    assert_eq!(first["endpoint"], app.addr.to_string());
    assert_eq!(first["method"], "GET");
    assert_eq!(first["host"], "app.test");
    assert_eq!(
        first["path"], "/delay/200?REDACTED",
        "the query is redacted"
    );
    assert_eq!(first["status"], 200);
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert_eq!(first["request_id"], id.as_str());
    let took = first["duration_ms"].as_f64().unwrap();
    assert!(took >= 200.0, "the backend's 200 ms are in it: {took} ms");
    assert_eq!(first["bytes"].as_u64(), Some(body_len));
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(
        (second["status"].as_u64(), second["router"].is_null()),
        (Some(404), true)
    );
    assert_eq!(
        (second["user_agent"].as_str(), second["request_id"].as_str()),
        (Some("tester/1.0"), Some("client-id-1"))
    );
}

/// An IngressRoute route's `observability` keeps its requests out of the access log and of the
/// service's series; the entry point still counts them.
#[tokio::test(flavor = "multi_thread")]
async fn a_routes_observability_switches_its_log_lines_and_series_off() {
    let m = Manifests::new();
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let quiet = Echo::start("quiet", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write("app.yaml", &service("app", app.addr));
    m.write("quiet.yaml", &service("quiet", quiet.addr));
    m.write(
        "routes.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: r, namespace: default}\nspec:\n  routes:\n  - match: Host(`health.test`)\n    services: [{name: quiet, port: 80}]\n    observability: {accessLogs: false, metrics: false, tracing: false}\n  - match: Host(`app.test`)\n    services: [{name: app, port: 80}]\n    observability: {tracing: false, traceVerbosity: minimal}\n",
    );
    let config = format!("{}accessLog: {{enabled: true}}\n", support::LOOPBACK_CONFIG);
    let fjord = Fjord::start(m.path(), &config);
    for _ in 0..3 {
        assert_eq!(
            get(fjord.web, "health.test", "/")
                .await
                .backend()
                .as_deref(),
            Some("quiet")
        );
    }
    assert_eq!(
        get(fjord.web, "app.test", "/").await.backend().as_deref(),
        Some("app")
    );
    // The app.test line comes last: once it is there, any health.test line would be too.
    fjord.wait_for_stdout(1);
    let lines = fjord.stdout();
    assert_eq!(
        lines.len(),
        1,
        "only app.test's request is logged: {lines:#?}"
    );
    assert!(lines[0].contains("app.test"), "{}", lines[0]);
    let metrics = get(fjord.admin, "localhost", "/metrics").await.body;
    assert!(
        !metrics.contains("default/quiet"),
        "quiet's service has no series:\n{metrics}"
    );
    assert!(metrics.contains("service=\"default/app:80\""), "{metrics}");
    let entry: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("fjord_entrypoint_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(entry, 4.0, "the entry point counts every request");
}
