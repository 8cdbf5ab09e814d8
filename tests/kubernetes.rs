//! `fjord run --kubernetes` against the test API server (`support::apiserver`): objects created,
//! changed and deleted there change what fjord routes; readiness waits for the first sync; an
//! API server restart fails no request and watching resumes; a 410 relists; only TLS Secrets
//! are listed, and other Secrets only by name while a Middleware names them (ConfigMaps too,
//! while a ServersTransport names one as a CA).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::apiserver::ApiServer;
use support::{Echo, Fjord, LOOPBACK_CONFIG, get, ingress, service, until_served};

/// fjord watching `api`, not yet waited on.
fn launch(api: &ApiServer, config: &str, extra: &[&str]) -> Fjord {
    launch_as(api, config, extra, "fjord-test")
}

/// Like [`launch`], as pod `pod` in namespace `fjord-system`.
fn launch_as(api: &ApiServer, config: &str, extra: &[&str], pod: &str) -> Fjord {
    let kubeconfig = api.kubeconfig();
    let mut args: Vec<&std::ffi::OsStr> = vec!["--kubernetes".as_ref(), "--kubeconfig".as_ref()];
    args.push(kubeconfig.as_os_str());
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    Fjord::launch(
        &args,
        config,
        &[("POD_NAME", pod), ("POD_NAMESPACE", "fjord-system")],
    )
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
    support::assert_rbac_allows(&api);

    // Once no Middleware names the Secret, its watch ends.
    let by_name = |api: &ApiServer| {
        api.open_watches()
            .iter()
            .filter(|w| w.starts_with("secrets?metadata.name=users"))
            .count()
    };
    assert_eq!(by_name(&api), 1, "{:?}", api.open_watches());
    api.apply_yaml(
        "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {name: auth, namespace: default}\nspec:\n  headers: {customRequestHeaders: {X-Auth: none}}\n",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while by_name(&api) > 0 {
        assert!(Instant::now() < deadline, "{:?}", api.open_watches());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        with("Basic YWxpY2U6d3Jvbmc=").await.backend().as_deref(),
        Some("app"),
        "the route no longer asks for credentials"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_servers_transports_configmap_ca_is_watched_by_name() {
    let api = ApiServer::start().await;
    let ca = support::tls::Ca::new();
    let (cert, key) = ca.leaf(&["app.internal"]);
    let backend = Echo::start_tls("secure", support::tls::acceptor(&cert, &key))
        .await
        .unwrap();
    api.apply_yaml(&service("app", backend.addr));
    let other = support::tls::Ca::new();
    let config_map = |ca: &support::tls::Ca| {
        ca.ca_secret("app-ca")
            .replace("kind: Secret", "kind: ConfigMap")
            .replace("stringData:", "data:")
    };
    // First a ConfigMap with another CA: the backend's certificate is not trusted.
    api.apply_yaml(&config_map(&other));
    api.apply_yaml(
        "apiVersion: fjord.dev/v1alpha1\nkind: ServersTransport\nmetadata: {name: tls, namespace: default}\nspec: {serverName: app.internal, rootCAs: [{configMap: app-ca}]}\n",
    );
    api.apply_yaml(
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: app, namespace: default}\nspec:\n  routes:\n  - match: Host(`app.test`)\n    services: [{name: app, port: 80, scheme: https, serversTransport: tls}]\n",
    );
    let fjord = launch(&api, LOOPBACK_CONFIG, &[]);
    fjord.wait_ready();
    assert_eq!(get(fjord.web, "app.test", "/").await.status, 502);
    // The ConfigMap changes to the backend's CA: picked up through its by-name watch.
    api.apply_yaml(&config_map(&ca));
    until_served(fjord.web, "app.test", Some("secure")).await;
    let config_maps: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.contains("/configmaps"))
        .collect();
    assert!(
        !config_maps.is_empty()
            && config_maps
                .iter()
                .all(|r| r.contains("fieldSelector=metadata.name%3Dapp-ca")),
        "only the named ConfigMap is read: {config_maps:#?}"
    );
    support::assert_rbac_allows(&api);
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

/// Ingress status is written once, by the Lease holder only, with two replicas running; when
/// the holder stops, it releases the Lease and the other replica takes over.
#[tokio::test(flavor = "multi_thread")]
async fn status_is_written_once_by_the_lease_holder() {
    let api = ApiServer::start().await;
    let app = echo("app").await;
    api.apply_yaml(&service("app", app.addr));
    api.apply_yaml(&ingress("app", &[("app.test", "Prefix", "/", "app")]));
    // Another controller's Ingress is never touched.
    api.apply_yaml(
        &ingress("theirs", &[("theirs.test", "Prefix", "/", "app")])
            .replace("ingressClassName: fjord", "ingressClassName: nginx"),
    );
    let publish = [
        "--publish-address",
        "127.0.0.10",
        "--publish-address",
        "edge.test",
    ];
    let mut a = launch_as(&api, LOOPBACK_CONFIG, &publish, "fjord-a");
    a.wait_ready();
    let b = launch_as(&api, LOOPBACK_CONFIG, &publish, "fjord-b");
    b.wait_ready();

    let status_of = |name: &str| {
        api.get("Ingress", "default", name).unwrap()["status"]["loadBalancer"]["ingress"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of("app").is_null() {
        assert!(Instant::now() < deadline, "no status written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status_of("app"),
        serde_json::json!([{"ip": "127.0.0.10"}, {"hostname": "edge.test"}])
    );
    // Long enough for both replicas to go through several Lease rounds and reloads.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = |api: &ApiServer, name: &str| {
        let path = format!("/apis/networking.k8s.io/v1/namespaces/default/ingresses/{name}/status");
        api.requests()
            .iter()
            .filter(|r| (r.starts_with("PATCH ") || r.starts_with("PUT ")) && r.contains(&path))
            .count()
    };
    assert_eq!(writes(&api, "app"), 1, "{:#?}", api.requests());
    assert_eq!(writes(&api, "theirs"), 0);
    assert!(status_of("theirs").is_null());

    // fjord-a was running alone when the Lease was first taken.
    let lease = api.get("Lease", "fjord-system", "fjord-leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "fjord-a");
    let wrote = |f: &Fjord| f.logs().iter().any(|l| l.contains("status written"));
    assert!(wrote(&a) && !wrote(&b), "only the holder writes status");

    // The holder stops and releases the Lease; the other takes over and writes new status.
    a.signal_term();
    assert_eq!(a.wait_exit(Duration::from_secs(15)), Some(0));
    api.apply_yaml(&ingress("later", &[("later.test", "Prefix", "/", "app")]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of("later").is_null() {
        assert!(
            Instant::now() < deadline,
            "fjord-b never took over: {:#?}",
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lease = api.get("Lease", "fjord-system", "fjord-leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "fjord-b");
    // The line is logged once the write has returned, so it may trail the status a little.
    b.wait_for_log("status written");
    support::assert_rbac_allows(&api);
}

/// A rejected Ingress gets a Warning Event with the text `fjord check` prints, once, not on
/// every reload; `--namespace` and `--selector` restrict what is watched.
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_ingress_gets_an_event_and_namespace_and_labels_restrict() {
    let api = ApiServer::start().await;
    let app = echo("app").await;
    api.apply_yaml(&service("app", app.addr));
    let labelled = |name: &str, host: &str, ns: &str, team: &str| {
        ingress(name, &[(host, "Prefix", "/", "app")]).replacen(
            "namespace: default}",
            &format!("namespace: {ns}, labels: {{team: {team}}}}}"),
            1,
        )
    };
    api.apply_yaml(&labelled("web", "web.test", "default", "web"));
    api.apply_yaml(&labelled("other-team", "other.test", "default", "data"));
    api.apply_yaml(&labelled("elsewhere", "elsewhere.test", "other", "web"));
    api.apply_yaml(&labelled("bad", "bad.test", "default", "web").replace("path: /", "path: nope"));
    let fjord = launch(
        &api,
        LOOPBACK_CONFIG,
        &["--namespace", "default", "--selector", "team=web"],
    );
    fjord.wait_ready();
    assert_eq!(
        get(fjord.web, "web.test", "/").await.backend().as_deref(),
        Some("app")
    );
    assert_eq!(
        get(fjord.web, "other.test", "/").await.status,
        404,
        "other label"
    );
    assert_eq!(
        get(fjord.web, "elsewhere.test", "/").await.status,
        404,
        "other namespace"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = api.list("Event");
        if !events.is_empty() || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["reason"], "Rejected");
    assert_eq!(e["regarding"]["kind"], "Ingress");
    assert_eq!(e["regarding"]["name"], "bad");
    assert_eq!(e["regarding"]["namespace"], "default");
    assert!(e["regarding"]["uid"].is_string());
    assert_eq!(
        e["note"],
        "spec.rules[0].http.paths[0].path \"nope\" must start with '/'"
    );

    // More reloads, the same rejection: no new Event.
    api.apply_yaml(&labelled("web2", "web2.test", "default", "web"));
    until_served(fjord.web, "web2.test", Some("app")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.list("Event").len(), 1);
    assert!(
        api.requests()
            .iter()
            .filter(|r| r.starts_with("GET /apis/networking.k8s.io/v1/"))
            .all(|r| r.contains("/namespaces/default/") || r.contains("ingressclasses")),
        "{:#?}",
        api.requests()
    );
    support::assert_rbac_allows(&api);
}

#[test]
fn deploy_manifests_decode_strictly_and_the_config_loads() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
    use k8s_openapi::api::networking::v1::{IngressClass, NetworkPolicy};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use serde_json::Value;

    /// Decodes `doc` as `T` and fails if any field was not understood.
    fn strict<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
        fn covered(original: &Value, decoded: &Value, at: &str) {
            match (original, decoded) {
                (Value::Object(o), Value::Object(d)) => {
                    for (k, v) in o {
                        let next = d.get(k).unwrap_or_else(|| panic!("unknown field {at}.{k}"));
                        covered(v, next, &format!("{at}.{k}"));
                    }
                }
                (Value::Array(o), Value::Array(d)) => {
                    for (i, (o, d)) in o.iter().zip(d).enumerate() {
                        covered(o, d, &format!("{at}[{i}]"));
                    }
                }
                _ => {}
            }
        }
        let typed: T = serde_json::from_value(doc.clone()).unwrap();
        covered(doc, &serde_json::to_value(&typed).unwrap(), "");
        typed
    }

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let kustomization = std::fs::read_to_string(dir.join("kubernetes/kustomization.yaml")).unwrap();
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(dir.join("kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name == "kustomization.yaml" {
            continue;
        }
        assert!(
            kustomization.contains(&format!("- {name}")),
            "{name} is not in deploy/kubernetes/kustomization.yaml"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in fjord::provider::manifests::parse_documents(&text).unwrap() {
            let kind = doc["kind"].as_str().unwrap().to_owned();
            match kind.as_str() {
                "Namespace" => drop(strict::<Namespace>(&doc)),
                "Service" => drop(strict::<Service>(&doc)),
                "NetworkPolicy" => drop(strict::<NetworkPolicy>(&doc)),
                "ServiceAccount" => drop(strict::<ServiceAccount>(&doc)),
                "ClusterRole" => drop(strict::<ClusterRole>(&doc)),
                "ClusterRoleBinding" => drop(strict::<ClusterRoleBinding>(&doc)),
                "Role" => drop(strict::<Role>(&doc)),
                "RoleBinding" => drop(strict::<RoleBinding>(&doc)),
                "IngressClass" => {
                    let class = strict::<IngressClass>(&doc);
                    assert_eq!(
                        class.spec.unwrap().controller.as_deref(),
                        Some("fjord.dev/ingress-controller")
                    );
                }
                "ConfigMap" => {
                    let map = strict::<ConfigMap>(&doc);
                    let config = &map.data.unwrap()["fjord.yaml"];
                    let file = tempfile::NamedTempFile::new().unwrap();
                    std::fs::write(file.path(), config).unwrap();
                    fjord::config::StaticConfig::load(&[file.path().to_owned()])
                        .unwrap_or_else(|e| panic!("the ConfigMap's fjord.yaml: {e:#}"));
                }
                "DaemonSet" => {
                    use clap::Parser as _;
                    let ds = strict::<DaemonSet>(&doc);
                    let pod = ds.spec.template.spec.unwrap();
                    assert_eq!(pod.service_account_name.as_deref(), Some("fjord"));
                    let main = &pod.containers[0];
                    // Every argument is one fjord's command line takes.
                    let args = main.args.clone().unwrap();
                    let argv = std::iter::once("fjord".to_owned()).chain(args.clone());
                    if let Err(e) = fjord::cli::Cli::try_parse_from(argv) {
                        panic!("container {}: {args:?}: {e}", main.name);
                    }
                    assert!(args.contains(&"--kubernetes".to_owned()));
                    // ACME state lives in the API server: no node volume, nothing to prepare.
                    assert!(pod.init_containers.is_none());
                    assert!(
                        pod.volumes.iter().flatten().all(|v| v.host_path.is_none()),
                        "no hostPath"
                    );
                }
                other => panic!("unexpected kind {other} in {name}"),
            }
            kinds.push(kind);
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet",
            "IngressClass",
            "Namespace",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
}

/// A rollout touching 50 EndpointSlices at once is one rebuild, not 50, and the cheap one:
/// routes stand, only endpoints are resolved again.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_endpoint_changes_is_one_rebuild() {
    let api = ApiServer::start().await;
    let (blue, green) = (echo("blue").await, echo("green").await);
    for i in 0..50 {
        api.apply_yaml(&service(&format!("svc{i}"), blue.addr));
    }
    api.apply_yaml(&ingress("app", &[("app.test", "Prefix", "/", "svc49")]));
    let fjord = launch(&api, LOOPBACK_CONFIG, &[]);
    fjord.wait_ready();
    let reloads =
        |metrics: &str| metric(metrics, r#"fjord_config_reloads_total{result="success"}"#).unwrap();
    let before = reloads(&get(fjord.admin, "localhost", "/metrics").await.body);

    for i in 0..50 {
        for doc in
            fjord::provider::manifests::parse_documents(&service(&format!("svc{i}"), green.addr))
                .unwrap()
        {
            if doc["kind"] == "EndpointSlice" {
                api.apply(doc);
            }
        }
    }
    until_served(fjord.web, "app.test", Some("green")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = reloads(&get(fjord.admin, "localhost", "/metrics").await.body);
    assert_eq!(after - before, 1.0, "rebuilds for one burst");
    let count = |needle: &str| fjord.logs().iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("endpoints updated"), 1);
    assert_eq!(
        count("config loaded"),
        1,
        "only the first load was a full one"
    );

    // A Service change takes the full path.
    api.apply_yaml(&service("svc49", blue.addr));
    until_served(fjord.web, "app.test", Some("blue")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while count("config loaded") < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The EndpointSlices of `service(name, addr)`, alone: a change to them is endpoints-only.
fn slice_of(name: &str, addr: std::net::SocketAddr) -> serde_json::Value {
    fjord::provider::manifests::parse_documents(&service(name, addr))
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "EndpointSlice")
        .unwrap()
}

/// An endpoints-only change resolves each backend as it was made: a route split over two
/// Services keeps both, an HTTPS backend keeps its TLS, a cluster-IP backend keeps its reach.
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_change_keeps_how_each_backend_was_made() {
    let api = ApiServer::start().await;
    let (a, b, c) = (echo("a").await, echo("b").await, echo("c").await);
    let ca = support::tls::Ca::new();
    let (cert, key) = ca.leaf(&["secure.internal"]);
    let tls1 = Echo::start_tls("tls1", support::tls::acceptor(&cert, &key))
        .await
        .unwrap();
    let tls2 = Echo::start_tls("tls2", support::tls::acceptor(&cert, &key))
        .await
        .unwrap();
    api.apply_yaml(&service("a", a.addr));
    api.apply_yaml(&service("b", b.addr));
    api.apply_yaml(&service("secure", tls1.addr));
    api.apply_yaml(
        "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: split, namespace: default}\nspec:\n  routes:\n  - match: Host(`split.test`)\n    services: [{name: a, port: 80}, {name: b, port: 80}]\n",
    );
    api.apply_yaml(&support::nginx_ingress(
        "secure",
        "secure.test",
        "secure",
        &[("backend-protocol", "HTTPS")],
    ));
    let fjord = launch(&api, LOOPBACK_CONFIG, &[]);
    fjord.wait_ready();
    let answered = |host: &'static str| {
        let web = fjord.web;
        async move {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..4 {
                let r = get(web, host, "/").await;
                seen.insert(r.backend().unwrap_or_else(|| format!("{}", r.status)));
            }
            seen.into_iter().collect::<Vec<_>>()
        }
    };
    assert_eq!(answered("split.test").await, ["a", "b"]);
    assert_eq!(answered("secure.test").await, ["tls1"]);

    api.apply(slice_of("b", c.addr));
    api.apply(slice_of("secure", tls2.addr));
    until_served(fjord.web, "secure.test", Some("tls2")).await;
    assert_eq!(answered("split.test").await, ["a", "c"]);
    assert_eq!(answered("secure.test").await, ["tls2"]);
    assert_eq!(
        fjord
            .logs()
            .iter()
            .filter(|l| l.contains("config loaded"))
            .count(),
        1,
        "the change took the endpoints-only path"
    );
}

/// Many objects rejected at once make at most a burst of 10 Events, not one each.
#[tokio::test(flavor = "multi_thread")]
async fn events_are_capped_when_many_objects_are_rejected_at_once() {
    let api = ApiServer::start().await;
    let app = echo("app").await;
    api.apply_yaml(&service("app", app.addr));
    for i in 0..15 {
        api.apply_yaml(
            &ingress(&format!("bad{i}"), &[("bad.test", "Prefix", "/", "app")])
                .replace("path: /", "path: nope"),
        );
    }
    let fjord = launch(&api, LOOPBACK_CONFIG, &[]);
    fjord.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.list("Event").len() < 10 {
        assert!(Instant::now() < deadline, "{}", api.list("Event").len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(api.list("Event").len(), 10);
}

/// ingress-nginx annotations in a cluster: an Ingress of class `nginx` is served when the
/// operator says so, one fjord must refuse gets a Rejected Event, one it does not honour a
/// NotHonoured Event.
#[tokio::test(flavor = "multi_thread")]
async fn nginx_annotations_fjord_cannot_honour_are_events_on_the_ingress() {
    let api = ApiServer::start().await;
    let app = echo("app").await;
    api.apply_yaml(&service("app", app.addr));
    let nginx = |name: &str, host: &str, annotation: &str| {
        ingress(name, &[(host, "Prefix", "/", "app")])
            .replacen(
                "namespace: default}",
                &format!("namespace: default, annotations: {{{annotation}}}}}"),
                1,
            )
            .replace("ingressClassName: fjord", "ingressClassName: nginx")
    };
    api.apply_yaml(&nginx(
        "snippet",
        "snippet.test",
        "nginx.ingress.kubernetes.io/configuration-snippet: \"return 200;\"",
    ));
    api.apply_yaml(&nginx(
        "buffered",
        "buffered.test",
        "nginx.ingress.kubernetes.io/proxy-buffering: \"on\"",
    ));
    // Basic auth from a Secret only the annotation names: fjord watches it by name.
    api.apply_yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: htpasswd, namespace: default}\nstringData:\n  auth: \"alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\"\n",
    );
    api.apply_yaml(&nginx(
        "locked",
        "locked.test",
        "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: htpasswd",
    ));
    let config = format!(
        "{LOOPBACK_CONFIG}providers:\n  kubernetesIngress:\n    alsoServeClasses: [nginx]\n"
    );
    let fjord = launch(&api, &config, &[]);
    fjord.wait_ready();
    assert_eq!(
        get(fjord.web, "buffered.test", "/")
            .await
            .backend()
            .as_deref(),
        Some("app"),
        "class nginx is served"
    );
    assert_eq!(get(fjord.web, "snippet.test", "/").await.status, 404);
    assert_eq!(get(fjord.web, "locked.test", "/").await.status, 401);
    let login = "Basic YWxpY2U6c2VjcmV0"; // alice:secret
    let req = http::Request::get(format!("http://{}/", fjord.web))
        .header("host", "locked.test")
        .header("authorization", login)
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    let reply = support::send(&support::client(), req).await;
    assert_eq!(reply.backend().as_deref(), Some("app"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = api.list("Event");
        if events.len() >= 2 || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let of = |name: &str| {
        events
            .iter()
            .find(|e| e["regarding"]["name"] == name)
            .unwrap_or_else(|| panic!("no Event on {name}: {events:#?}"))
    };
    let rejected = of("snippet");
    assert_eq!(
        (&rejected["type"], &rejected["reason"]),
        (&"Warning".into(), &"Rejected".into())
    );
    assert!(
        rejected["note"]
            .as_str()
            .unwrap()
            .contains("configuration-snippet")
    );
    let ignored = of("buffered");
    assert_eq!(ignored["reason"], "NotHonoured");
    assert!(
        ignored["note"]
            .as_str()
            .unwrap()
            .contains("proxy-buffering")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn api_internal_is_served_only_to_fjords_own_namespace() {
    let api = ApiServer::start().await;
    let route = |ns: &str, name: &str, host: &str| {
        format!(
            "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  routes:\n  - match: Host(`{host}`)\n    services: [{{kind: TraefikService, name: api@internal}}]\n"
        )
    };
    api.apply_yaml(&route("fjord-system", "dashboard", "dash.test"));
    api.apply_yaml(&route("default", "peek", "peek.test"));
    let config = format!("{LOOPBACK_CONFIG}api:\n  dashboard: true\n");
    let fjord = launch(&api, &config, &[]);
    fjord.wait_ready();
    let own = get(fjord.web, "dash.test", "/api/overview").await;
    assert_eq!(own.status, 200, "{own:?}");
    assert_eq!(own.json()["replica"], "fjord-test");
    // A tenant cannot publish the cluster's routes and backends.
    let tenant = get(fjord.web, "peek.test", "/api/overview").await;
    assert_eq!(tenant.status, 503, "{tenant:?}");
    let diagnostics = get(fjord.admin, "localhost", "/api/diagnostics")
        .await
        .json();
    assert!(
        diagnostics.as_array().unwrap().iter().any(|d| d["object"]
            == "IngressRoute default/peek"
            && d["message"]
                .as_str()
                .unwrap()
                .contains("api@internal is served only to IngressRoutes in fjord's own namespace \"fjord-system\"")),
        "{diagnostics:#}"
    );
}
