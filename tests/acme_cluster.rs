//! Automatic HTTPS on every node of a DaemonSet: three `fjord run --kubernetes` processes on
//! 127.0.0.1, 127.0.0.2 and 127.0.0.3 with the same ports stand in for three nodes, against the
//! test API server and Pebble. Each host resolves (in Pebble's DNS) to a different replica, so
//! the CA validates at replicas that did not order. One order per certificate in the cluster,
//! no failed validation, every certificate served by every replica, nothing ordered again on
//! a restart; a holder killed mid-order or an API outage leaves one certificate, and a
//! renewal under load is done once, by one replica, with no failed request.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use support::apiserver::ApiServer;
use support::pebble::{Pebble, free_port_on};
use support::tls::{Seen, client_config, https_get};
use support::{Echo, Fjord, ingress, service};

const HOSTS: [&str; 3] = ["a.test", "b.test", "c.test"];
const REPLICAS: [&str; 3] = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];

struct Cluster {
    api: ApiServer,
    pebble: Pebble,
    root: CertificateDer<'static>,
    ports: (u16, u16),
    challenge: &'static str,
    legacy: tempfile::TempDir,
    app: Echo,
}

impl Cluster {
    async fn start(challenge: &'static str) -> Cluster {
        Cluster::start_with(challenge, None).await
    }

    /// With certificates valid for `validity` seconds.
    async fn start_with(challenge: &'static str, validity: Option<u64>) -> Cluster {
        let ports = (free_port_on(&REPLICAS), free_port_on(&REPLICAS));
        let pebble = Pebble::start(ports.0, ports.1, validity);
        for (host, ip) in HOSTS.iter().zip(REPLICAS) {
            pebble.resolve(host, ip);
        }
        let root = pebble.issuing_root().await;
        let api = ApiServer::start().await;
        let app = Echo::start("app", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        api.apply_yaml(&service("app", app.addr));
        Cluster {
            api,
            pebble,
            root,
            ports,
            challenge,
            legacy: tempfile::tempdir().unwrap(),
            app,
        }
    }

    fn config(&self, ip: &str) -> String {
        format!(
            r#"entryPoints:
  web: {{address: "{ip}:{web}"}}
  websecure: {{address: "{ip}:{websecure}", http: {{tls: {{}}}}}}
admin: {{address: "{ip}:0"}}
certificatesResolvers:
  default:
    acme:
      email: ops@example.com
      caServer: "{ca}"
      caCertificates: ["{ca_cert}"]
      storage: "{storage}"
      {challenge}
"#,
            web = self.ports.0,
            websecure = self.ports.1,
            ca = self.pebble.directory,
            ca_cert = self.pebble.listener_ca.display(),
            storage = self.legacy.path().display(),
            challenge = self.challenge,
        )
    }

    /// Starts the three replicas and waits until each is ready and counted live.
    async fn replicas(&self) -> Vec<Fjord> {
        let kubeconfig = self.api.kubeconfig();
        let replicas: Vec<Fjord> = REPLICAS
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                Fjord::launch(
                    &[
                        "--kubernetes".as_ref(),
                        "--kubeconfig".as_ref(),
                        kubeconfig.as_os_str(),
                    ],
                    &self.config(ip),
                    &[
                        ("POD_NAME", &format!("fjord-{i}")),
                        ("POD_NAMESPACE", "fjord-system"),
                    ],
                )
            })
            .collect();
        for (i, r) in replicas.iter().enumerate() {
            r.wait_ready();
            let lease = format!("fjord-replica.fjord-{i}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.api.get("Lease", "fjord-system", &lease).is_none() {
                assert!(
                    Instant::now() < deadline,
                    "no Lease {lease}: {:#?}",
                    r.logs()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        replicas
    }

    /// The Ingresses, one per host, each asking for a certificate.
    fn ingresses(&self) {
        for host in HOSTS {
            self.ingress(host);
        }
    }

    /// An Ingress for `host` that asks for a certificate.
    fn ingress(&self, host: &str) {
        let name = host.replace('.', "-");
        let yaml = ingress(&name, &[(host, "Prefix", "/", "app")])
            .replace(
                "namespace: default}",
                "namespace: default, annotations: {kubernetes.io/tls-acme: \"true\"}}",
            )
            .replace(
                "  rules:\n",
                &format!("  tls:\n  - hosts: [{host}]\n  rules:\n"),
            );
        self.api.apply_yaml(&yaml);
    }

    /// A replica that is live (its Lease renewed) but never answers a challenge: an orderer
    /// waits for it, which holds an order between publishing and validating until it goes.
    fn ghost(&self) -> Ghost {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, api) = (Arc::clone(&stop), self.api.clone_handle());
        let task = tokio::spawn(async move {
            while !flag.load(Ordering::Relaxed) {
                api.apply(serde_json::json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": "fjord-replica.ghost", "namespace": "fjord-system",
                                 "labels": {"fjord.dev/replica": "true"}},
                    "spec": {"holderIdentity": "ghost", "leaseDurationSeconds": 20,
                             "renewTime": k8s_openapi::jiff::Timestamp::now().to_string()},
                }));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            api.delete("Lease", "fjord-system", "fjord-replica.ghost");
        });
        Ghost { stop, task }
    }

    /// Waits until replica `ip` serves `host` with a certificate Pebble issued.
    async fn served(&self, ip: &str, host: &str, replica: &Fjord, within: Duration) -> Seen {
        let addr: SocketAddr = format!("{ip}:{}", self.ports.1).parse().unwrap();
        let deadline = Instant::now() + within;
        loop {
            let config = client_config(std::slice::from_ref(&self.root), &[b"http/1.1"]);
            match https_get(addr, host, config, "/").await {
                Ok(seen) => return seen,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{ip} never served {host} with a trusted certificate ({e}): {:#?}",
                    replica.logs()
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The replica holding the order Lease of `host` once its challenge is published: it is
    /// between publishing the answers and telling the CA to look.
    async fn orderer_waiting_for_acks(&self) -> usize {
        let host = HOSTS[0];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let holder = self
                .api
                .get(
                    "Lease",
                    "fjord-system",
                    &format!("fjord-acme.default.{host}"),
                )
                .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned));
            let published = self
                .api
                .get(
                    "Secret",
                    "fjord-system",
                    &format!("fjord-acme-challenge.default.{host}"),
                )
                .is_some();
            if let (Some(holder), true) = (holder, published) {
                return holder.trim_start_matches("fjord-").parse().unwrap();
            }
            assert!(Instant::now() < deadline, "no order under way");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Orders Pebble created, and validations it failed.
    fn orders_and_failures(&self) -> (usize, usize) {
        let log = self.pebble.log();
        let orders = log.lines().filter(|l| l.contains("Added order")).count();
        let failed = log
            .lines()
            .filter(|l| l.contains("INVALID") || l.contains("failed validation"))
            .count();
        (orders, failed)
    }
}

async fn every_replica_serves_every_certificate_ordered_once(challenge: &'static str) {
    let cluster = Cluster::start(challenge).await;
    let replicas = cluster.replicas().await;
    cluster.ingresses();

    let mut serials = Vec::new();
    for host in HOSTS {
        let mut seen: Vec<Vec<u8>> = Vec::new();
        for (ip, replica) in REPLICAS.iter().zip(&replicas) {
            let s = cluster
                .served(ip, host, replica, Duration::from_secs(90))
                .await;
            assert_eq!(s.names, [host]);
            assert_eq!(
                (s.reply.status.as_u16(), s.reply.backend().as_deref()),
                (200, Some("app"))
            );
            seen.push(s.serial);
        }
        assert!(
            seen.windows(2).all(|w| w[0] == w[1]),
            "{host}: one certificate on every replica"
        );
        serials.push(seen.remove(0));
    }
    let (orders, failed) = cluster.orders_and_failures();
    assert_eq!(
        (orders, failed),
        (3, 0),
        "one order per certificate, no failed validation:\n{}",
        cluster.pebble.log()
    );
    // Kept where kubectl shows them: one TLS Secret per certificate, labelled and annotated.
    let secrets: Vec<_> = cluster
        .api
        .list("Secret")
        .into_iter()
        .filter(|s| s["metadata"]["labels"]["fjord.dev/acme"] == "certificate")
        .collect();
    assert_eq!(secrets.len(), 3, "{secrets:#?}");
    for s in &secrets {
        assert_eq!(s["metadata"]["namespace"], "fjord-system");
        assert_eq!(s["type"], "kubernetes.io/tls");
        assert!(s["metadata"]["annotations"]["fjord.dev/not-after"].is_string());
    }
    // What an operator sees on any replica: each certificate valid, no order under way.
    let status = support::tls_free_get(replicas[0].admin, "/acme").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let status = status.as_array().unwrap();
    assert_eq!(status.len(), 3, "{status:#?}");
    for cert in status {
        assert_eq!(cert["state"], "valid", "{cert:#}");
        assert!(cert["not_after"].as_i64().unwrap() > 0, "{cert:#}");
    }
    let metrics = support::tls_free_get(replicas[1].admin, "/metrics").await;
    for host in HOSTS {
        assert!(
            metrics.contains(&format!(
                "fjord_acme_certificate_expiry_timestamp_seconds{{certificate=\"{host}\",resolver=\"default\"}}"
            )),
            "{metrics}"
        );
    }
    let accounts: usize = replicas
        .iter()
        .map(|r| {
            r.logs()
                .iter()
                .filter(|l| l.contains("acme: account created"))
                .count()
        })
        .sum();
    assert_eq!(accounts, 1, "one ACME account for the cluster");
    // One Event on each Ingress, from the replica that ordered its certificate.
    let deadline = Instant::now() + Duration::from_secs(10);
    for host in HOSTS {
        let ingress = host.replace('.', "-");
        loop {
            let issued: Vec<_> = cluster
                .api
                .list("Event")
                .into_iter()
                .filter(|e| {
                    e["reason"] == "CertificateIssued" && e["regarding"]["name"] == *ingress
                })
                .collect();
            if issued.len() == 1 {
                let note = issued[0]["note"].as_str().unwrap();
                assert!(
                    note.starts_with(&format!("certificate for {host} issued by https://")),
                    "{note}"
                );
                break;
            }
            assert!(issued.len() < 2 && Instant::now() < deadline, "{issued:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The order Leases were released, and no challenge is left published.
    assert!(
        cluster
            .api
            .list("Secret")
            .iter()
            .all(|s| s["metadata"]["labels"]["fjord.dev/acme"] != "challenge")
    );
    drop(replicas);

    // All three restarted: every certificate is served again, and nothing is ordered.
    let replicas = cluster.replicas().await;
    for (host, serial) in HOSTS.iter().zip(&serials) {
        for (ip, replica) in REPLICAS.iter().zip(&replicas) {
            let s = cluster
                .served(ip, host, replica, Duration::from_secs(20))
                .await;
            assert_eq!(&s.serial, serial, "{ip} {host}: the stored certificate");
        }
    }
    assert_eq!(cluster.orders_and_failures(), (3, 0), "no new order");
    // Every request the three replicas made is one deploy/ allows, and the ClusterRole grants
    // no write on Secrets or Leases: those are the Role's, in fjord's namespace.
    support::assert_rbac_allows(&cluster.api);
    let rbac = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/rbac.yaml"
    ))
    .unwrap();
    let docs = fjord::provider::manifests::parse_documents(&rbac).unwrap();
    let cluster_role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    for rule in cluster_role["rules"].as_array().unwrap() {
        let resources = rule["resources"].to_string();
        if resources.contains("secrets") || resources.contains("leases") {
            assert_eq!(rule["verbs"], serde_json::json!(["get", "list", "watch"]));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http01_on_three_replicas() {
    every_replica_serves_every_certificate_ordered_once("httpChallenge: {entryPoint: web}").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_alpn01_on_three_replicas() {
    every_replica_serves_every_certificate_ordered_once("tlsChallenge: {}").await;
}

/// A live replica that never answers; [`Ghost::vanish`] deletes its Lease.
struct Ghost {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Ghost {
    async fn vanish(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_holder_killed_mid_order_is_taken_over_and_one_certificate_results() {
    let cluster = Cluster::start("httpChallenge: {entryPoint: web}").await;
    let mut replicas: Vec<Option<Fjord>> = cluster.replicas().await.into_iter().map(Some).collect();
    let ghost = cluster.ghost();
    cluster.ingress(HOSTS[0]);
    let holder = cluster.orderer_waiting_for_acks().await;
    // The holder dies between publishing its answers and asking the CA to validate.
    drop(replicas[holder].take());
    // As a load balancer's health check would, the name no longer leads to the dead node.
    cluster
        .pebble
        .resolve(HOSTS[0], REPLICAS[(holder + 1) % REPLICAS.len()]);
    ghost.vanish().await;

    let mut serials = Vec::new();
    for (ip, replica) in REPLICAS.iter().zip(&replicas) {
        let Some(replica) = replica else { continue };
        let s = cluster
            .served(ip, HOSTS[0], replica, Duration::from_secs(90))
            .await;
        serials.push(s.serial);
    }
    assert_eq!(serials.len(), 2);
    assert_eq!(serials[0], serials[1], "one certificate on the survivors");
    let (orders, failed) = cluster.orders_and_failures();
    assert_eq!(failed, 0, "{}", cluster.pebble.log());
    assert!(
        orders <= 2,
        "the dead holder's order, and at most one more: {orders}"
    );
    let issued = cluster
        .pebble
        .log()
        .lines()
        .filter(|l| l.contains("Issued certificate"))
        .count();
    assert_eq!(issued, 1, "one certificate:\n{}", cluster.pebble.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_outage_during_an_order_neither_duplicates_nor_stops_it() {
    let cluster = Cluster::start("httpChallenge: {entryPoint: web}").await;
    let replicas = cluster.replicas().await;
    let ghost = cluster.ghost();
    cluster.ingress(HOSTS[0]);
    cluster.orderer_waiting_for_acks().await;
    cluster.api.stop().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.api.restart().await;
    ghost.vanish().await;

    for (ip, replica) in REPLICAS.iter().zip(&replicas) {
        cluster
            .served(ip, HOSTS[0], replica, Duration::from_secs(60))
            .await;
    }
    assert_eq!(
        cluster.orders_and_failures(),
        (1, 0),
        "{}",
        cluster.pebble.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_lived_certificate_is_renewed_once_by_one_replica_under_load() {
    let cluster = Cluster::start_with("httpChallenge: {entryPoint: web}", Some(30)).await;
    let replicas = cluster.replicas().await;
    cluster.ingress(HOSTS[0]);
    let mut first = Vec::new();
    for (ip, replica) in REPLICAS.iter().zip(&replicas) {
        first.push(
            cluster
                .served(ip, HOSTS[0], replica, Duration::from_secs(60))
                .await
                .serial,
        );
    }

    // HTTPS requests round the three replicas while the certificate is renewed.
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, root, port) = (Arc::clone(&stop), cluster.root.clone(), cluster.ports.1);
    let load = tokio::spawn(async move {
        let mut failures = Vec::new();
        let mut n = 0;
        while !flag.load(Ordering::Relaxed) {
            let addr: SocketAddr = format!("{}:{port}", REPLICAS[n % 3]).parse().unwrap();
            let trust = client_config(std::slice::from_ref(&root), &[b"http/1.1"]);
            match https_get(addr, HOSTS[0], trust, "/").await {
                Ok(seen) if seen.reply.status == 200 => {}
                Ok(seen) => failures.push(format!("{addr}: status {}", seen.reply.status)),
                Err(e) => failures.push(format!("{addr}: {e}")),
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (n, failures)
    });
    for (ip, replica) in REPLICAS.iter().zip(&replicas) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let seen = cluster
                .served(ip, HOSTS[0], replica, Duration::from_secs(10))
                .await;
            if seen.serial != first[0] {
                break;
            }
            assert!(Instant::now() < deadline, "{ip} never served the renewal");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (requests, failures) = load.await.unwrap();
    assert!(
        requests > 50 && failures.is_empty(),
        "{requests} requests: {failures:?}"
    );
    assert_eq!(
        cluster.orders_and_failures(),
        (2, 0),
        "the first order and one renewal:\n{}",
        cluster.pebble.log()
    );
    let ordered: usize = replicas
        .iter()
        .map(|r| {
            r.logs()
                .iter()
                .filter(|l| l.contains("acme: ordering certificate"))
                .count()
        })
        .sum();
    assert_eq!(ordered, 2, "one replica ordered each time");
}

#[tokio::test(flavor = "multi_thread")]
async fn moving_in_imports_what_a_node_stored_and_orders_nothing() {
    let cluster = Cluster::start("httpChallenge: {entryPoint: web}").await;
    // An earlier version, standalone on the first node, obtained the certificate into its
    // storage directory.
    let m = support::Manifests::new();
    m.write("app.yaml", &service("app", cluster.app.addr));
    let yaml = ingress("a-test", &[(HOSTS[0], "Prefix", "/", "app")])
        .replace(
            "namespace: default}",
            "namespace: default, annotations: {kubernetes.io/tls-acme: \"true\"}}",
        )
        .replace(
            "  rules:\n",
            &format!("  tls:\n  - hosts: [{}]\n  rules:\n", HOSTS[0]),
        );
    m.write("a.yaml", &yaml);
    let standalone = Fjord::start(m.path(), &cluster.config(REPLICAS[0]));
    let before = cluster
        .served(REPLICAS[0], HOSTS[0], &standalone, Duration::from_secs(60))
        .await;
    drop(standalone);
    assert_eq!(cluster.orders_and_failures(), (1, 0));

    let replicas = cluster.replicas().await;
    cluster.ingress(HOSTS[0]);
    for (ip, replica) in REPLICAS.iter().zip(&replicas) {
        let s = cluster
            .served(ip, HOSTS[0], replica, Duration::from_secs(30))
            .await;
        assert_eq!(s.serial, before.serial, "{ip}: the imported certificate");
    }
    assert_eq!(
        cluster.orders_and_failures(),
        (1, 0),
        "nothing ordered again"
    );
    let logs: Vec<String> = replicas.iter().flat_map(Fjord::logs).collect();
    assert!(
        logs.iter().any(|l| l.contains("importing the certificate")),
        "{logs:#?}"
    );
    assert!(!logs.iter().any(|l| l.contains("account created")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_order_is_an_event_on_the_ingress_with_the_cas_reason() {
    let cluster = Cluster::start("httpChallenge: {entryPoint: web}").await;
    // The CA reaches no replica for this name.
    cluster.pebble.resolve("lost.test", "127.0.0.9");
    let _replicas = cluster.replicas().await;
    cluster.ingress("lost.test");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failed = cluster.api.list("Event").into_iter().find(|e| {
            e["reason"] == "CertificateOrderFailed" && e["regarding"]["name"] == "lost-test"
        });
        if let Some(event) = failed {
            assert_eq!(event["type"], "Warning");
            let note = event["note"].as_str().unwrap();
            assert!(
                note.starts_with("certificate for lost.test: ACME server https://")
                    && note.contains("urn:ietf:params:acme:error"),
                "{note}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no Event for the failed order");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_never_answers_stops_the_order_before_the_ca_looks_and_is_named() {
    let cluster = Cluster::start("httpChallenge: {entryPoint: web}").await;
    let replicas = cluster.replicas().await;
    let _ghost = cluster.ghost();
    cluster.ingress(HOSTS[0]);
    let holder = cluster.orderer_waiting_for_acks().await;
    // After the bounded wait: the error names the replica, and the CA validated nothing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = support::tls_free_get(replicas[holder].admin, "/acme").await;
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        if let Some(error) = status[0]["last_error"].as_str() {
            assert!(
                error.contains("replica(s) ghost did not acknowledge the challenge for a.test")
                    && error.contains("the CA was not asked to validate"),
                "{error}"
            );
            assert_eq!(status[0]["state"], "failed");
            break;
        }
        assert!(Instant::now() < deadline, "no error: {status:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = cluster.pebble.log();
    assert!(!log.contains("Attempting to validate"), "{log}");
}
