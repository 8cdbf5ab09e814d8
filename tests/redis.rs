//! Rate limits that hold across replicas: three fjord processes on 127.0.0.1, 127.0.0.2 and
//! 127.0.0.3 (the same ports, as three nodes) share one Middleware's buckets in Debian's
//! `redis-server`, with a password, then over TLS; Redis killed and restarted under load, with
//! each `onError`; `perReplica` following the replicas the API server reports; a Redis Cluster
//! of three nodes holding the buckets by slot.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::apiserver::ApiServer;
use support::pebble::free_port_on;
use support::redis::Redis;
use support::tls::Ca;
use support::{Echo, Fjord, Manifests, Reply, get, send, service, tls_free_get};

const NODES: [&str; 3] = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];

/// A rate-limit Middleware `name` (`limit`: the lines under `rateLimit:`), and an Ingress for
/// `host` using it.
fn limited(name: &str, host: &str, limit: &str) -> String {
    support::through_middleware(name, host, &format!("  rateLimit:\n{limit}"))
}

/// The Secret holding Redis's password.
fn auth_secret(password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: redis-auth, namespace: default}}\nstringData: {{password: {password}}}\n"
    )
}

/// Three replicas on the same port of three loopback addresses, serving `manifests`.
fn nodes(manifests: &Manifests) -> Vec<Fjord> {
    let port = free_port_on(&NODES);
    NODES
        .iter()
        .map(|ip| {
            let config = format!(
                "entryPoints:\n  web: {{address: \"{ip}:{port}\"}}\nadmin: {{address: \"{ip}:0\"}}\n"
            );
            Fjord::start(manifests.path(), &config)
        })
        .collect()
}

/// One replica serving `manifests`.
fn node(manifests: &Manifests) -> Fjord {
    Fjord::start(manifests.path(), support::LOOPBACK_CONFIG)
}

async fn app() -> Echo {
    Echo::start("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// The value of `metric` with `labels` on `fjord`'s admin server (0 when absent).
async fn metric(fjord: &Fjord, metric: &str, labels: &str) -> f64 {
    let text = tls_free_get(fjord.admin, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_limit_through_redis_and_a_client_keeps_its_bucket_across_them() {
    let redis = Redis::start("s3cret-pass");
    let app = app().await;
    let m = Manifests::new();
    m.write("app.yaml", &service("app", app.addr));
    m.write("auth.yaml", &auth_secret("s3cret-pass"));
    let redis_block = |extra: &str| {
        format!(
            "    redis: {{endpoints: [\"{}\"], secret: redis-auth, readTimeout: 2s{extra}}}",
            redis.endpoint()
        )
    };
    m.write(
        "fast.yaml",
        &limited(
            "fast",
            "fast.test",
            &format!(
                "    average: 20\n    period: 1s\n    burst: 5\n{}",
                redis_block("")
            ),
        ),
    );
    m.write(
        "slow.yaml",
        &limited(
            "slow",
            "slow.test",
            &format!(
                "    average: 1\n    period: 1h\n    burst: 3\n{}",
                redis_block("")
            ),
        ),
    );
    let nodes = nodes(&m);
    let web: Vec<SocketAddr> = nodes.iter().map(|n| n.web).collect();

    // A burst of 3 on node 1, then the same client on nodes 2 and 3: its bucket went with it.
    for _ in 0..3 {
        assert_eq!(get(web[0], "slow.test", "/").await.status, 200);
    }
    let refused = get(web[1], "slow.test", "/").await;
    assert_eq!(refused.status, 429, "node 2 knew the bucket was empty");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(
        refused.headers["ratelimit-policy"], "\"default/slow\";q=1;w=3600",
        "the same headers as a local limit"
    );
    assert_eq!(get(web[2], "slow.test", "/").await.status, 429);
    // Refused sources are not asked about again until Redis's retry time: no round trip.
    let calls = redis.script_calls();
    for _ in 0..20 {
        assert_eq!(get(web[1], "slow.test", "/").await.status, 429);
    }
    assert_eq!(
        redis.script_calls(),
        calls,
        "a refused source is answered without asking Redis"
    );

    // Three times the limit, spread over the three nodes, for 5 s: the cluster lets the limit
    // through (burst + rate x time), not three times it.
    let started = Instant::now();
    let (mut admitted, mut sent, mut per_node) = (0u64, 0u64, [0u64; 3]);
    while started.elapsed() < Duration::from_secs(5) {
        let node = (sent % 3) as usize;
        if get(web[node], "fast.test", "/").await.status == 200 {
            admitted += 1;
            per_node[node] += 1;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(16)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = 5.0 + 20.0 * elapsed;
    assert!(
        (admitted as f64) <= allowed + 2.0,
        "{admitted} of {sent} admitted in {elapsed:.2} s; the cluster-wide limit is {allowed:.0}"
    );
    assert!(
        sent as f64 > allowed * 1.3,
        "the client sent well over the limit ({sent})"
    );
    assert!(
        admitted as f64 >= (allowed * 0.8).min(sent as f64),
        "the limit was honoured, not undercut: {admitted} of {allowed:.0}"
    );
    assert!(
        per_node.iter().all(|n| *n > 0),
        "every node admitted some: {per_node:?}"
    );
    for n in &nodes {
        assert_eq!(
            metric(n, "fjord_rate_limit_backend_errors_total", "").await,
            0.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_holds_the_buckets_by_slot_and_three_replicas_share_them() {
    let cluster = Redis::start_cluster("cluster-pass", 3);
    let app = app().await;
    let m = Manifests::new();
    m.write("app.yaml", &service("app", app.addr));
    m.write("auth.yaml", &auth_secret("cluster-pass"));
    // Two of the three nodes given: the cluster tells fjord of the third.
    m.write(
        "slow.yaml",
        &limited(
            "slow",
            "slow.test",
            &format!(
                "    average: 1\n    period: 1h\n    burst: 2\n    redis: {{endpoints: [\"{}\", \"{}\"], secret: redis-auth, readTimeout: 2s}}",
                cluster[0].endpoint(),
                cluster[1].endpoint()
            ),
        ),
    );
    let nodes = nodes(&m);
    let web: Vec<SocketAddr> = nodes.iter().map(|n| n.web).collect();
    let clients: Vec<std::net::IpAddr> = (1..=9u8)
        .map(|i| std::net::IpAddr::from([127, 0, 1, i]))
        .collect();
    let web = &web;
    for (i, client) in clients.iter().enumerate() {
        let status = |node: usize| async move {
            support::get_from(web[node], "slow.test", "/", *client)
                .await
                .status
                .as_u16()
        };
        // Its burst on one replica, then another replica knows the bucket is empty.
        assert_eq!(status(i % 3).await, 200, "{client}");
        assert_eq!(status((i + 1) % 3).await, 200, "{client}");
        assert_eq!(status((i + 2) % 3).await, 429, "{client}");
    }
    // One key per client, spread over the nodes by slot.
    let keys: Vec<u64> = cluster
        .iter()
        .map(|node| node.cli(&["DBSIZE"]).trim().parse().unwrap())
        .collect();
    assert_eq!(keys.iter().sum::<u64>(), 9, "{keys:?}");
    assert!(
        keys.iter().filter(|k| **k > 0).count() >= 2,
        "the buckets are on several nodes: {keys:?}"
    );
    for n in &nodes {
        assert_eq!(
            metric(n, "fjord_rate_limit_backend_errors_total", "").await,
            0.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_with_the_ca_and_client_certificate_from_secrets() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["127.0.0.1", "localhost"]);
    let redis = Redis::start_tls("tls-pass", &ca.pem, &cert, &key);
    let app = app().await;
    let m = Manifests::new();
    m.write("app.yaml", &service("app", app.addr));
    m.write("auth.yaml", &auth_secret("tls-pass"));
    let indented: String = ca.pem.lines().map(|l| format!("    {l}\n")).collect();
    m.write(
        "ca.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: redis-ca, namespace: default}}\nstringData:\n  ca.crt: |\n{indented}"
        ),
    );
    m.write(
        "client.yaml",
        &ca.secret("redis-client", &["fjord"]).replace(
            "metadata: {name: redis-client}",
            "metadata: {name: redis-client, namespace: default}",
        ),
    );
    let tls_limit = |name: &str, host: &str, tls: &str| {
        limited(
            name,
            host,
            &format!(
                "    average: 1\n    period: 1h\n    burst: 2\n    redis: {{endpoints: [\"{}\"], secret: redis-auth, readTimeout: 2s, onError: deny, tls: {tls}}}",
                redis.endpoint()
            ),
        )
    };
    m.write(
        "limit.yaml",
        &tls_limit(
            "limit",
            "tls.test",
            "{caSecret: redis-ca, certSecret: redis-client}",
        ),
    );
    // Without a client certificate, Redis refuses the connection: onError decides.
    m.write(
        "nocert.yaml",
        &tls_limit("nocert", "nocert.test", "{caSecret: redis-ca}"),
    );
    let nodes = nodes(&m);
    assert_eq!(get(nodes[0].web, "tls.test", "/").await.status, 200);
    assert_eq!(get(nodes[1].web, "tls.test", "/").await.status, 200);
    assert_eq!(get(nodes[2].web, "tls.test", "/").await.status, 429);
    assert!(
        redis.script_calls() >= 3,
        "the verdicts came from Redis, over TLS"
    );
    assert_eq!(
        metric(
            &nodes[0],
            "fjord_rate_limit_backend_errors_total",
            "default/limit"
        )
        .await,
        0.0
    );
    assert_eq!(get(nodes[0].web, "nocert.test", "/").await.status, 429);
    assert!(
        metric(
            &nodes[0],
            "fjord_rate_limit_backend_errors_total",
            "default/nocert"
        )
        .await
            >= 1.0,
        "without its certificate fjord gets no verdict"
    );
}

/// Sends `n` requests for `host` to `web` as `client` (`X-Client`): their statuses, and the
/// slowest answer's time.
async fn burst(web: SocketAddr, host: &str, client: &str, n: usize) -> (Vec<u16>, Duration) {
    let mut statuses = Vec::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..n {
        let started = Instant::now();
        let req = http::Request::get(format!("http://{web}/"))
            .header("host", host)
            .header("x-client", client)
            .body(http_body_util::Full::default())
            .unwrap();
        let reply: Reply = send(&support::client(), req).await;
        slowest = slowest.max(started.elapsed());
        statuses.push(reply.status.as_u16());
    }
    (statuses, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_each_on_error_as_promised_then_exact_again() {
    let mut redis = Redis::start("pw");
    let app = app().await;
    let m = Manifests::new();
    m.write("app.yaml", &service("app", app.addr));
    m.write("auth.yaml", &auth_secret("pw"));
    for on_error in ["allow", "deny", "local"] {
        m.write(
            &format!("{on_error}.yaml"),
            &limited(
                on_error,
                &format!("{on_error}.test"),
                &format!(
                    "    average: 1\n    period: 1h\n    burst: 2\n    sourceCriterion: {{requestHeaderName: X-Client}}\n    redis: {{endpoints: [\"{}\"], secret: redis-auth, readTimeout: 300ms, dialTimeout: 300ms, onError: {on_error}}}",
                    redis.endpoint()
                ),
            ),
        );
    }
    m.write(
        "load.yaml",
        &limited(
            "load",
            "load.test",
            &format!(
                "    average: 100000\n    burst: 100000\n    redis: {{endpoints: [\"{}\"], secret: redis-auth, readTimeout: 300ms, dialTimeout: 300ms, onError: allow}}",
                redis.endpoint()
            ),
        ),
    );
    let fjord = node(&m);
    // Load from four clients throughout, far under its limit: every request answered 200,
    // none slower than readTimeout (plus scheduling), whatever Redis does.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (web, stop) = (fjord.web, std::sync::Arc::clone(&stop));
            tokio::spawn(async move {
                let (mut statuses, mut slowest) = (Vec::new(), Duration::ZERO);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (s, t) = burst(web, "load.test", "load", 1).await;
                    statuses.extend(s);
                    slowest = slowest.max(t);
                }
                (statuses, slowest)
            })
        })
        .collect();
    // Up: each host's bucket holds 2, then Redis refuses.
    for on_error in ["allow", "deny", "local"] {
        let (statuses, _) = burst(fjord.web, &format!("{on_error}.test"), "up", 3).await;
        assert_eq!(statuses, [200, 200, 429], "{on_error}, Redis up");
    }

    redis.kill();
    // Down: no request waits past readTimeout (plus scheduling), and each onError holds.
    let limit = Duration::from_millis(300 + 700);
    let (allow, slow_allow) = burst(fjord.web, "allow.test", "down", 5).await;
    assert_eq!(allow, [200; 5], "onError: allow lets every request through");
    let (deny, slow_deny) = burst(fjord.web, "deny.test", "down", 5).await;
    assert_eq!(deny, [429; 5], "onError: deny refuses every request");
    let (local, slow_local) = burst(fjord.web, "local.test", "down", 4).await;
    assert_eq!(
        local,
        [200, 200, 429, 429],
        "onError: local counts in this replica's own bucket (one replica: the whole limit)"
    );
    for slowest in [slow_allow, slow_deny, slow_local] {
        assert!(
            slowest < limit,
            "a request waited {slowest:?} on a dead Redis"
        );
    }
    let errors = metric(
        &fjord,
        "fjord_rate_limit_backend_errors_total",
        "default/deny",
    )
    .await;
    assert!(
        errors >= 5.0,
        "every request Redis did not answer is counted: {errors}"
    );
    let logged = fjord
        .logs()
        .iter()
        .filter(|l| l.contains("no verdict from Redis") && l.contains("default/deny"))
        .count();
    assert!(
        (1..=2).contains(&logged),
        "one warning per cause, not one per request: {logged}"
    );

    // Back, empty (no persistence): the script is loaded again, exact limiting resumes.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if burst(fjord.web, "deny.test", "back", 1).await.0 == [200] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis came back, fjord did not use it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (statuses, _) = burst(fjord.web, "deny.test", "back", 2).await;
    assert_eq!(
        statuses,
        [200, 429],
        "Redis's bucket again: burst 2, one was taken"
    );
    assert!(
        redis.script_calls() >= 2,
        "the script ran on the restarted Redis"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        let (statuses, slowest) = task.await.unwrap();
        assert!(statuses.len() > 20, "the load ran: {}", statuses.len());
        assert!(
            statuses.iter().all(|s| *s == 200),
            "under load, onError: allow"
        );
        assert!(slowest < limit, "a request under load waited {slowest:?}");
    }
    let after = metric(
        &fjord,
        "fjord_rate_limit_backend_errors_total",
        "default/deny",
    )
    .await;
    let (_, _) = burst(fjord.web, "deny.test", "back", 3).await;
    assert_eq!(
        metric(
            &fjord,
            "fjord_rate_limit_backend_errors_total",
            "default/deny"
        )
        .await,
        after,
        "no more errors once Redis is back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_logged_on_the_middleware_and_on_error_holds() {
    let redis = Redis::start("right");
    let app = app().await;
    let m = Manifests::new();
    m.write("app.yaml", &service("app", app.addr));
    m.write("auth.yaml", &auth_secret("wrong"));
    m.write(
        "limit.yaml",
        &limited(
            "limit",
            "pw.test",
            &format!(
                "    average: 1\n    period: 1h\n    burst: 1\n    redis: {{endpoints: [\"{}\"], secret: redis-auth, readTimeout: 1s, onError: deny}}",
                redis.endpoint()
            ),
        ),
    );
    let fjord = node(&m);
    let (statuses, _) = burst(fjord.web, "pw.test", "a", 3).await;
    assert_eq!(statuses, [429; 3]);
    let line = fjord.wait_for_log("no verdict from Redis");
    assert!(
        line.contains("default/limit") && line.contains("spec.rateLimit.redis"),
        "the log names the Middleware and the field: {line}"
    );
    assert!(
        metric(
            &fjord,
            "fjord_rate_limit_backend_errors_total",
            "default/limit"
        )
        .await
            >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_replica_limits_follow_the_replicas_the_api_server_reports() {
    let api = ApiServer::start().await;
    let app = app().await;
    api.apply_yaml(&service("app", app.addr));
    api.apply_yaml(&limited(
        "shared",
        "pr.test",
        "    average: 6\n    period: 1h\n    burst: 6\n    distribution: perReplica\n    sourceCriterion: {requestHeaderName: X-Client}",
    ));
    let kubeconfig = api.kubeconfig();
    let fjord = Fjord::launch(
        &[
            "--kubernetes".as_ref(),
            "--kubeconfig".as_ref(),
            kubeconfig.as_os_str(),
        ],
        "entryPoints:\n  web: {address: \"127.0.0.1:0\"}\nadmin: {address: \"127.0.0.1:0\"}\n",
        &[("POD_NAME", "fjord-0"), ("POD_NAMESPACE", "fjord-system")],
    );
    fjord.wait_ready();
    let admitted = |client: &'static str| {
        let web = fjord.web;
        async move {
            let mut n = 0;
            for _ in 0..8 {
                let req = http::Request::get(format!("http://{web}/"))
                    .header("host", "pr.test")
                    .header("x-client", client)
                    .body(http_body_util::Full::default())
                    .unwrap();
                if support::send(&support::client(), req).await.status == 200 {
                    n += 1;
                }
            }
            n
        }
    };
    let replicas = |n: f64| {
        let fjord = &fjord;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while metric(fjord, "fjord_replicas", "").await != n {
                assert!(Instant::now() < deadline, "never counted {n} replicas");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    replicas(1.0).await;
    assert_eq!(
        admitted("a").await,
        6,
        "alone, the replica has the whole burst"
    );

    // Two more replicas renew their Leases: each replica's share is a third.
    let now = jiff::Timestamp::now();
    for i in 1..=2 {
        api.apply(serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": format!("fjord-replica.fjord-{i}"), "namespace": "fjord-system",
                         "labels": {"fjord.dev/replica": "true"}},
            "spec": {"holderIdentity": format!("fjord-{i}"), "leaseDurationSeconds": 20,
                     "renewTime": now.to_string()},
        }));
    }
    replicas(3.0).await;
    assert_eq!(admitted("b").await, 2, "three replicas: 6 / 3 each");

    // They go away: the whole limit again.
    for i in 1..=2 {
        api.delete("Lease", "fjord-system", &format!("fjord-replica.fjord-{i}"));
    }
    replicas(1.0).await;
    assert_eq!(admitted("c").await, 6);
    assert!(
        api.get("Lease", "fjord-system", "fjord-replica.fjord-0")
            .is_some(),
        "the replica renews its own membership Lease"
    );
    support::assert_rbac_allows(&api);
}

#[test]
fn bad_redis_settings_are_refused_naming_the_middleware_and_the_field() {
    let m = Manifests::new();
    m.write("app.yaml", &service("app", "127.0.0.1:9".parse().unwrap()));
    let cases = [
        (
            "nosecret",
            "redis: {endpoints: [\"127.0.0.1:6379\"], secret: missing}",
            "spec.rateLimit.redis.secret: Secret default/missing not found",
        ),
        (
            "badendpoint",
            "redis: {endpoints: [\"redis.infra.svc\"]}",
            "spec.rateLimit.redis.endpoints \"redis.infra.svc\" is not host:port",
        ),
        (
            "onerror",
            "redis: {endpoints: [\"a:6379\"], onError: retry}",
            "spec.rateLimit.redis.onError \"retry\" is not local, allow or deny",
        ),
        (
            "both",
            "distribution: perReplica\n    redis: {endpoints: [\"a:6379\"]}",
            "sets both redis and distribution: perReplica",
        ),
        (
            "spread",
            "distribution: evenly",
            "spec.rateLimit.distribution \"evenly\" is not local or perReplica",
        ),
    ];
    for (name, block, _) in &cases {
        m.write(
            &format!("{name}.yaml"),
            &limited(
                name,
                &format!("{name}.test"),
                &format!("    average: 1\n    {block}"),
            ),
        );
    }
    m.write(
        "ok.yaml",
        &limited(
            "ok",
            "ok.test",
            "    average: 1\n    redis: {endpoints: [\"127.0.0.1:1\"], writeTimeout: 1s}",
        ),
    );
    let (code, out) = support::check(m.path(), None);
    assert_ne!(code, 0, "{out}");
    for (name, _, why) in &cases {
        support::assert_diagnostic(&out, &format!("Middleware default/{name}"), why);
    }
    let ok = out
        .lines()
        .find(|l| l.contains("Middleware default/ok"))
        .unwrap_or_else(|| panic!("no warning for writeTimeout: {out}"));
    assert!(ok.contains("writeTimeout is not used on its own"), "{ok}");
}
