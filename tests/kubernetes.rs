//! `fjord run --kubernetes` against the test API server (`support::apiserver`): objects created,
//! changed and deleted there change what fjord routes; readiness waits for the first sync; an
//! API server restart fails no request and watching resumes; a 410 relists; only TLS Secrets
//! are listed, and other Secrets only by name while a Middleware names them.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::apiserver::ApiServer;
use support::{Echo, Fjord, LOOPBACK_CONFIG, get, ingress, service, until_served};

/// fjord watching `api`, not yet waited on.
fn launch(api: &ApiServer, config: &str, extra: &[&str]) -> Fjord {
    let kubeconfig = api.kubeconfig();
    let mut args: Vec<&std::ffi::OsStr> = vec!["--kubernetes".as_ref(), "--kubeconfig".as_ref()];
    args.push(kubeconfig.as_os_str());
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    Fjord::launch(&args, config, &[])
}

async fn echo(name: &'static str) -> Echo {
    Echo::start(name, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_the_first_sync_then_changes_are_routed_within_a_second() {
    let api = ApiServer::start().await;
    let blue = echo("blue").await;
    let green = echo("green").await;
    api.apply_yaml(&service("blue", blue.addr));
    api.apply_yaml(&service("green", green.addr));
    api.apply_yaml(&ingress("app", &[("app.test", "Prefix", "/", "blue")]));

    // The API server is down when fjord starts: not ready, and a 503 rather than a 404.
    api.stop().await;
    let fjord = launch(&api, LOOPBACK_CONFIG, &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(fjord.admin, "localhost", "/readyz").await.status, 503);
    let early = get(fjord.web, "app.test", "/").await;
    assert_eq!(early.status, 503, "{early:?}");
    assert_eq!(early.headers["retry-after"], "1");

    api.restart().await;
    fjord.wait_ready();
    assert_eq!(
        get(fjord.web, "app.test", "/").await.backend().as_deref(),
        Some("blue"),
        "ready means the routes are there"
    );

    // Created, changed, deleted: each routed within a second.
    api.apply_yaml(&ingress("new", &[("new.test", "Prefix", "/", "green")]));
    let took = until_served(fjord.web, "new.test", Some("green")).await;
    assert!(
        took < Duration::from_secs(1),
        "created: {took:?} {:#?}",
        fjord.logs()
    );
    api.apply_yaml(&ingress("app", &[("app.test", "Prefix", "/", "green")]));
    let took = until_served(fjord.web, "app.test", Some("green")).await;
    assert!(
        took < Duration::from_secs(1),
        "changed: {took:?} {:#?}",
        fjord.logs()
    );
    api.delete("Ingress", "default", "new");
    let took = until_served(fjord.web, "new.test", None).await;
    assert!(took < Duration::from_secs(1), "deleted: {took:?}");

    // Endpoints move with their EndpointSlice.
    api.apply_yaml(&service("green", blue.addr));
    let took = until_served(fjord.web, "app.test", Some("blue")).await;
    assert!(took < Duration::from_secs(1), "endpoints: {took:?}");
}

/// A JSON object from a one-document YAML text.
fn object(yaml: &str) -> serde_json::Value {
    fjord::provider::manifests::parse_documents(yaml)
        .unwrap()
        .remove(0)
}

/// The value of the first series whose line starts with `prefix`.
fn metric(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_server_restart_fails_no_request_and_watching_resumes() {
    let api = ApiServer::start().await;
    let app = echo("app").await;
    api.apply_yaml(&service("app", app.addr));
    api.apply_yaml(&ingress("app", &[("app.test", "Prefix", "/", "app")]));
    let fjord = launch(&api, LOOPBACK_CONFIG, &[]);
    fjord.wait_ready();

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let traffic = {
        let (stop, sent, failed) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&failed));
        let web = fjord.web;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let reply = get(web, "app.test", "/").await;
                sent.fetch_add(1, Ordering::Relaxed);
                if reply.backend().as_deref() != Some("app") {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Down long enough for every watch to fail and back off at least once.
    api.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.restart().await;

    // Watching resumed: a change made after the restart is routed.
    api.apply_yaml(&ingress("later", &[("later.test", "Prefix", "/", "app")]));
    until_served(fjord.web, "later.test", Some("app")).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    assert!(sent > 50, "only {sent} requests");

    let metrics = get(fjord.admin, "localhost", "/metrics").await.body;
    let restarts = metric(
        &metrics,
        r#"fjord_kubernetes_watch_restarts_total{resource="ingresses"}"#,
    );
    assert!(restarts.is_some_and(|r| r >= 1.0), "{metrics}");
    assert!(
        metric(
            &metrics,
            r#"fjord_kubernetes_last_sync_timestamp_seconds{resource="ingresses"}"#
        )
        .is_some_and(|t| t > 1.7e9),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_410_expired_watch_makes_fjord_list_again() {
    let api = ApiServer::start().await;
    let (blue, green) = (echo("blue").await, echo("green").await);
    api.apply_yaml(&service("blue", blue.addr));
    api.apply_yaml(&service("green", green.addr));
    api.apply_yaml(&ingress("app", &[("app.test", "Prefix", "/", "blue")]));
    let fjord = launch(&api, LOOPBACK_CONFIG, &[]);
    fjord.wait_ready();
    let lists = |api: &ApiServer| {
        api.requests()
            .iter()
            .filter(|r| {
                r.starts_with("GET /apis/networking.k8s.io/v1/ingresses?")
                    && !r.contains("watch=true")
            })
            .count()
    };
    assert_eq!(lists(&api), 1);

    // Changed with no watch event and the history compacted: only a new list can see it.
    api.replace_unseen_and_expire(object(&ingress(
        "app",
        &[("app.test", "Prefix", "/", "green")],
    )));
    until_served(fjord.web, "app.test", Some("green")).await;
    assert_eq!(lists(&api), 2, "{:#?}", api.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn only_tls_secrets_are_listed_and_a_middleware_secret_is_watched_by_name() {
    let api = ApiServer::start().await;
    let app = echo("app").await;
    api.apply_yaml(&service("app", app.addr));
    api.apply_yaml(
        &ingress("app", &[("app.test", "Prefix", "/", "app")]).replacen(
            "namespace: default}",
            "namespace: default, annotations: {fjord.dev/middlewares: auth}}",
            1,
        ),
    );
    api.apply_yaml(
        "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {name: auth, namespace: default}\nspec:\n  basicAuth: {secret: users}\n",
    );
    // alice:secret (apr1)
    api.apply_yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: users, namespace: default}\ntype: Opaque\nstringData:\n  users: \"alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\"\n",
    );
    api.apply_yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: sh.helm.release.v1.big.v1, namespace: default}\ntype: helm.sh/release.v1\ndata: {release: aGVsbG8=}\n",
    );
    let fjord = launch(&api, LOOPBACK_CONFIG, &[]);
    fjord.wait_ready();

    let with = |auth: &'static str| {
        let req = http::Request::get(format!("http://{}/", fjord.web))
            .header("host", "app.test")
            .header("authorization", auth)
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap();
        async move { support::send(&support::client(), req).await }
    };
    assert_eq!(
        with("Basic YWxpY2U6c2VjcmV0").await.backend().as_deref(),
        Some("app"),
        "ready with the Middleware's Secret already read"
    );
    assert_eq!(with("Basic YWxpY2U6d3Jvbmc=").await.status, 401);

    // A new password is picked up through the by-name watch.
    api.apply_yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: users, namespace: default}\ntype: Opaque\nstringData:\n  users: \"alice:{SHA}0JQeaNqPOBUf+Gph/Fn3xc+fyqI=\"\n",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    // alice:other ({SHA})
    while with("Basic YWxpY2U6b3RoZXI=").await.status != 200 {
        assert!(Instant::now() < deadline, "the new password never worked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let secrets: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.contains("/secrets"))
        .collect();
    assert!(
        secrets
            .iter()
            .all(|r| r.contains("fieldSelector=type%3Dkubernetes.io%2Ftls")
                || (r.starts_with("GET /api/v1/namespaces/default/secrets?")
                    && r.contains("fieldSelector=metadata.name%3Dusers"))),
        "{secrets:#?}"
    );
    assert!(secrets.iter().any(|r| r.contains("metadata.name%3Dusers")));
}

/// The same objects served from a folder and from the API server route every request of the
/// conformance suite identically (status and backend), and as the suite expects.
#[tokio::test(flavor = "multi_thread")]
async fn manifests_and_kubernetes_route_the_conformance_suite_identically() {
    let m = support::Manifests::new();
    let _echoes = support::suite::manifests(&m).await;
    let api = ApiServer::start().await;
    api.apply_dir(m.path());
    let from_folder = Fjord::start(m.path(), LOOPBACK_CONFIG);
    let from_cluster = launch(&api, LOOPBACK_CONFIG, &[]);
    from_cluster.wait_ready();

    let mut differences = Vec::new();
    for &(host, path, want) in support::suite::CASES {
        let a = get(from_folder.web, host, path).await;
        let b = get(from_cluster.web, host, path).await;
        let seen = |r: &support::Reply| (r.status.as_u16(), r.backend());
        if seen(&a) != seen(&b) || a.backend().as_deref() != Some(want) {
            differences.push(format!(
                "{host}{path}: folder {:?}, cluster {:?}, want {want}",
                seen(&a),
                seen(&b)
            ));
        }
    }
    assert!(differences.is_empty(), "{differences:#?}");
    // The conflict is reported the same way.
    from_cluster.wait_for_log("is already served by Ingress default/zzz-old");
}
