//! Metrics as Prometheus sees them: the live `/metrics` passes `promtool check metrics`, a 200,
//! a 404, a 429 and a 502 each move the right series, and a real Prometheus server scraping
//! fjord answers a query for them.

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::pebble::free_port;
use support::{Echo, Fjord, LOOPBACK_CONFIG, Manifests, get, service, tls_free_get};

async fn traffic() -> (Manifests, Echo, Fjord) {
    let m = Manifests::new();
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write("app.yaml", &service("app", app.addr));
    m.write(
        "dead.yaml",
        &service("dead", "127.0.0.1:1".parse().unwrap()),
    );
    m.write(
        "limit.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {name: limit}\nspec: {rateLimit: {average: 1, period: 1h, burst: 1}}\n",
    );
    m.write(
        "routes.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: app}\nspec:\n  routes:\n  - match: Host(`app.test`)\n    services: [{name: app, port: 80}]\n  - match: Host(`limited.test`)\n    middlewares: [{name: limit}]\n    services: [{name: app, port: 80}]\n  - match: Host(`dead.test`)\n    services: [{name: dead, port: 80}]\n",
    );
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(get(fjord.web, "app.test", "/").await.status, 200);
    assert_eq!(
        get(fjord.web, "nothing.test", "/secret/path?token=x")
            .await
            .status,
        404
    );
    assert_eq!(get(fjord.web, "limited.test", "/").await.status, 200);
    assert_eq!(get(fjord.web, "limited.test", "/").await.status, 429);
    assert_eq!(get(fjord.web, "dead.test", "/").await.status, 502);
    (m, app, fjord)
}

/// The value of the series whose line starts with `series` (labels in Prometheus' sorted order).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_outcome_moves_the_right_series_and_promtool_accepts_them() {
    let (_m, _app, fjord) = traffic().await;
    let metrics = tls_free_get(fjord.admin, "/metrics").await;
    let expect = [
        (
            r#"fjord_entrypoint_requests_total{code="200",entrypoint="web",method="GET",protocol="http"}"#,
            2.0,
        ),
        (
            r#"fjord_entrypoint_requests_total{code="404",entrypoint="web",method="GET",protocol="http"}"#,
            1.0,
        ),
        (
            r#"fjord_entrypoint_requests_total{code="429",entrypoint="web",method="GET",protocol="http"}"#,
            1.0,
        ),
        (
            r#"fjord_entrypoint_requests_total{code="502",entrypoint="web",method="GET",protocol="http"}"#,
            1.0,
        ),
        (
            r#"fjord_service_requests_total{code="200",method="GET",service="default/app:80"}"#,
            2.0,
        ),
        (
            r#"fjord_service_requests_total{code="429",method="GET",service="default/app:80"}"#,
            1.0,
        ),
        (
            r#"fjord_service_requests_total{code="502",method="GET",service="default/dead:80"}"#,
            1.0,
        ),
        (
            r#"fjord_middleware_rejections_total{middleware="default/limit",reason="rate_limit"}"#,
            1.0,
        ),
        (
            r#"fjord_service_connect_errors_total{kind="refused",service="default/dead:80"}"#,
            1.0,
        ),
        (
            r#"fjord_service_server_up{service="default/dead:80",url="127.0.0.1:1"}"#,
            0.0,
        ),
        (r#"fjord_config_reloads_total{result="success"}"#, 1.0),
        (r#"fjord_config_diagnostics{severity="error"}"#, 0.0),
        (r#"fjord_build_info{version=""#, 1.0),
    ];
    let mut wrong = Vec::new();
    for (series, want) in expect {
        let got = if series.ends_with('"') {
            metrics
                .lines()
                .find(|l| l.starts_with(series))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        } else {
            value(&metrics, series)
        };
        if got != Some(want) {
            wrong.push(format!("{series}: want {want}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\n{metrics}");
    assert!(metrics.contains("fjord_entrypoint_request_duration_seconds_bucket{code=\"200\""));
    assert!(metrics.contains("process_resident_memory_bytes"));
    assert!(
        !metrics.contains("secret") && !metrics.contains("127.0.0.1\""),
        "no path or client IP as a label"
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scrapes_fjord() {
    let (_m, _app, fjord) = traffic().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n- job_name: fjord\n  static_configs: [{{targets: [\"{}\"]}}]\n", fjord.admin),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus) is installed");
    support::pebble::wait_listening(port);
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let query = "/api/v1/query?query=sum%20by%20(code)%20(fjord_entrypoint_requests_total)";
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let body = tokio::time::timeout(Duration::from_secs(5), async {
            tls_free_get(api, query).await
        })
        .await
        .unwrap_or_default();
        if body.contains("\"code\":\"502\"") && body.contains("\"code\":\"429\"") {
            break body;
        }
        if Instant::now() > deadline {
            let _ = prometheus.kill();
            panic!("Prometheus never returned fjord's series: {body}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let by_code: std::collections::BTreeMap<String, String> = json["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["code"].as_str().unwrap().to_owned(),
                r["value"][1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(by_code["200"], "2");
    assert_eq!(by_code["404"], "1");
    assert_eq!(by_code["429"], "1");
    assert_eq!(by_code["502"], "1");
}

/// Byte counters count what was streamed: a chunked request body and a compressed (chunked)
/// response, neither with a `Content-Length`. A made-up method is counted as `OTHER`, so clients
/// cannot invent series, and router series appear when the configuration asks for them. The
/// access log's `bytes` are the bytes sent too.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_bytes_other_methods_and_opt_in_router_series() {
    use bytes::Bytes;
    use http_body_util::{BodyExt as _, StreamBody};
    use hyper::body::Frame;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let m = Manifests::new();
    let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write("app.yaml", &service("app", app.addr));
    m.write(
        "gz.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {name: gz}\nspec: {compress: {minResponseBodyBytes: 10}}\n",
    );
    m.write(
        "routes.yaml",
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: app}\nspec:\n  routes:\n  - match: Host(`app.test`)\n    middlewares: [{name: gz}]\n    services: [{name: app, port: 80}]\n",
    );
    let config = format!(
        "{LOOPBACK_CONFIG}metrics:\n  prometheus:\n    addRoutersLabels: true\naccessLog: {{enabled: true}}\n"
    );
    let fjord = Fjord::start(m.path(), &config);

    type Chunks = StreamBody<
        futures_util::stream::Iter<
            std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>,
        >,
    >;
    let client: Client<_, Chunks> = Client::builder(TokioExecutor::new()).build_http();
    let chunks = vec![
        Ok(Frame::data(Bytes::from(vec![b'a'; 7000]))),
        Ok(Frame::data(Bytes::from(vec![b'b'; 3000]))),
    ];
    let req = hyper::Request::post(format!("http://{}/upload", fjord.web))
        .header("host", "app.test")
        .header("accept-encoding", "gzip")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let response = client.request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert!(!response.headers().contains_key("content-length"));
    let sent = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len();

    let req = hyper::Request::builder()
        .method("BREW")
        .uri(format!("http://{}/", fjord.web))
        .header("host", "app.test")
        .body(StreamBody::new(futures_util::stream::iter(Vec::new())))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 200);

    // The response body is counted when it ends, just after the client has read it.
    let labels = r#"{code="200",entrypoint="web",method="POST",protocol="http"}"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let metrics = tls_free_get(fjord.admin, "/metrics").await;
        if value(
            &metrics,
            &format!("fjord_entrypoint_responses_bytes_total{labels}"),
        )
        .is_some()
            || Instant::now() > deadline
        {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let expect = [
        (format!("fjord_entrypoint_requests_bytes_total{labels}"), 10_000.0),
        (format!("fjord_entrypoint_responses_bytes_total{labels}"), sent as f64),
        (
            r#"fjord_service_requests_bytes_total{code="200",method="POST",service="default/app:80"}"#.into(),
            10_000.0,
        ),
        (
            r#"fjord_service_responses_bytes_total{code="200",method="POST",service="default/app:80"}"#.into(),
            sent as f64,
        ),
        (
            r#"fjord_router_requests_total{code="200",method="POST",router="default/app",service="default/app:80"}"#.into(),
            1.0,
        ),
        (
            r#"fjord_entrypoint_requests_total{code="200",entrypoint="web",method="OTHER",protocol="http"}"#.into(),
            1.0,
        ),
    ];
    for (series, want) in &expect {
        assert_eq!(value(&metrics, series), Some(*want), "{series}\n{metrics}");
    }
    assert!(!metrics.contains("BREW"), "{metrics}");
    let line: serde_json::Value = serde_json::from_str(&fjord.wait_for_stdout(1)[0]).unwrap();
    assert_eq!(
        (line["method"].as_str(), line["bytes"].as_u64()),
        (Some("POST"), Some(sent as u64))
    );
}
