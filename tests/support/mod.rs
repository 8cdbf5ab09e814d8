//! Shared pieces of the black-box tests: the echo backend, a fjord process started on free
//! loopback ports, and a small HTTP client.
#![allow(dead_code)] // each test binary uses a different part

pub(crate) mod apiserver;
pub(crate) mod auth;
pub(crate) mod echo;
pub(crate) mod grpc;
pub(crate) mod pebble;
pub(crate) mod redis;
pub(crate) mod suite;
pub(crate) mod tls;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub(crate) use echo::Echo;

/// Loopback-only config with ports the OS picks.
pub(crate) const LOOPBACK_CONFIG: &str =
    "entryPoints:\n  web:\n    address: \"127.0.0.1:0\"\nadmin:\n  address: \"127.0.0.1:0\"\n";

/// A `fjord run` child process.
pub(crate) struct Fjord {
    child: Child,
    pub web: SocketAddr,
    pub admin: SocketAddr,
    /// Every entry point's address, by name.
    pub addrs: std::collections::HashMap<String, SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    /// Lines fjord printed on stdout (the access log).
    stdout: Arc<Mutex<Vec<String>>>,
    _config: tempfile::NamedTempFile,
}

impl Fjord {
    /// Starts fjord on `manifests` with `config` (YAML) and waits until it is ready.
    pub(crate) fn start(manifests: &Path, config: &str) -> Fjord {
        let fjord = Fjord::launch(
            &["--manifests".as_ref(), manifests.as_os_str()],
            config,
            &[],
        );
        fjord.wait_ready();
        fjord
    }

    /// Starts fjord on `manifests` with `config` and `workers` worker threads, and waits until
    /// it is ready. One worker makes upstream pooling observable: pools are per worker, and any
    /// worker may accept a new client connection.
    pub(crate) fn start_with_workers(manifests: &Path, config: &str, workers: usize) -> Fjord {
        let workers = workers.to_string();
        let fjord = Fjord::launch(
            &["--manifests".as_ref(), manifests.as_os_str()],
            config,
            &[("TOKIO_WORKER_THREADS", &workers)],
        );
        fjord.wait_ready();
        fjord
    }

    /// Starts `fjord run` with `args` (the source) and `config`, and waits until it listens,
    /// not until it is ready.
    pub(crate) fn launch(args: &[&std::ffi::OsStr], config: &str, env: &[(&str, &str)]) -> Fjord {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, config.as_bytes()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fjord"))
            .args(["run", "--log-format", "json"])
            .args(args)
            .arg("--config")
            .arg(file.path())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fjord");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let out_sink = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                out_sink.lock().unwrap().push(line);
            }
        });
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "listening"
                {
                    let addr: SocketAddr = v["address"].as_str().unwrap().parse().unwrap();
                    let _ = tx.send((v["entrypoint"].as_str().unwrap().to_owned(), addr));
                }
                sink.lock().unwrap().push(line);
            }
        });
        // The admin server is bound last, so once it is listening every entry point is.
        let mut addrs = std::collections::HashMap::new();
        while !addrs.contains_key("admin") {
            let (name, addr) = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("fjord did not start: {:#?}", logs.lock().unwrap()));
            addrs.insert(name, addr);
        }
        Fjord {
            child,
            web: addrs.get("web").copied().unwrap_or(addrs["admin"]),
            admin: addrs["admin"],
            addrs,
            logs,
            stdout,
            _config: file,
        }
    }

    /// Waits (up to 30 s) until `/readyz` answers 200.
    pub(crate) fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if blocking_status(self.admin, "/readyz") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("fjord never became ready: {:#?}", self.logs());
    }

    pub(crate) fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The lines fjord has printed on stdout so far.
    pub(crate) fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until fjord has printed `n` lines on stdout, and returns them.
    pub(crate) fn wait_for_stdout(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.stdout.lock().unwrap().clone();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "stdout has {} lines: {lines:#?}",
                lines.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to 10 s) until a log line contains `needle`.
    pub(crate) fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_log_within(needle, Duration::from_secs(10))
    }

    /// Waits up to `limit` until a log line contains `needle`.
    pub(crate) fn wait_for_log_within(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.logs().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}: {:#?}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn signal_term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The process's resident memory in bytes (`VmRSS`).
    pub(crate) fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap();
        kib * 1024
    }

    /// The names of the process's threads.
    pub(crate) fn threads(&self) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|name| name.trim_end().to_owned())
            .collect()
    }

    /// Waits for the process to exit and returns its exit code.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "fjord did not exit: {:#?}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Fjord {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET over a fresh TCP connection, without an async runtime (readiness checks).
fn blocking_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split(' ').nth(1)?.parse().ok()
}

/// The body of a plain-HTTP GET (the admin server's pages).
pub(crate) async fn tls_free_get(addr: SocketAddr, path: &str) -> String {
    get(addr, "localhost", path).await.body
}

/// A response as a test looks at it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// Reads a whole response.
    pub(crate) async fn read<B: http_body::Body>(
        response: http::Response<B>,
    ) -> Result<Reply, String>
    where
        B::Error: std::fmt::Display,
    {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// The echo backend's JSON report.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Which echo backend answered, if one did.
    pub(crate) fn backend(&self) -> Option<String> {
        self.headers
            .get("x-backend")
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

/// An HTTP/1.1 client with a keep-alive pool.
pub(crate) fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `GET http://{addr}{path}` with `Host: host`, from `ip` (a loopback address standing in
/// for another machine).
pub(crate) async fn get_from(
    addr: SocketAddr,
    host: &str,
    path: &str,
    ip: std::net::IpAddr,
) -> Reply {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(ip));
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let req = Request::get(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::<Bytes>::default())
        .unwrap();
    send(&client, req).await
}

pub(crate) async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Reply {
    let response = client.request(req).await.expect("request failed");
    Reply::read(response).await.expect("body")
}

/// `POST http://{addr}{path}` with `Host: host` and `headers`, its body sent chunked (no
/// declared length), a frame for each of `chunks`.
pub(crate) async fn post_chunked(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    chunks: &[&'static [u8]],
) -> Reply {
    let frames: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = chunks
        .iter()
        .map(|c| Ok(http_body::Frame::data(Bytes::from_static(c))))
        .collect();
    let mut req = Request::post(format!("http://{addr}{path}")).header("host", host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
        .unwrap();
    let response = Client::builder(TokioExecutor::new())
        .build_http()
        .request(req)
        .await
        .expect("request failed");
    Reply::read(response).await.expect("body")
}

/// `GET http://{addr}{path}` with `Host: host`.
pub(crate) async fn get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    let req = Request::get(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::default())
        .unwrap();
    send(&client(), req).await
}

/// Polls until `host` + `/` is answered by `want` (None: a 404), and returns how long it took.
pub(crate) async fn until_served(web: SocketAddr, host: &str, want: Option<&str>) -> Duration {
    let start = Instant::now();
    loop {
        let reply = get(web, host, "/").await;
        let ok = match want {
            Some(b) => reply.backend().as_deref() == Some(b),
            None => reply.status == 404,
        };
        if ok {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{host} never became {want:?}: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A Service with one port and an EndpointSlice pointing at `backend`.
pub(crate) fn service(name: &str, backend: SocketAddr) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abc
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
- addresses: ["{ip}"]
  conditions: {{ready: true}}
"#,
        port = backend.port(),
        ip = backend.ip(),
    )
}

/// Service `name` in `m` reached two ways: its cluster IP is echo backend `cluster-ip`'s
/// address, its one endpoint echo backend `pod`'s. Both backends are returned, to keep.
pub(crate) async fn cluster_ip_service(m: &Manifests, name: &str) -> (Echo, Echo) {
    let cluster = Echo::start("cluster-ip", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let pod = Echo::start("pod", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write(
        &format!("{name}.yaml"),
        &service_with_cluster_ip(name, cluster.addr, pod.addr),
    );
    (cluster, pod)
}

/// Service `name` whose cluster IP and port are `cluster`'s, and whose one endpoint is `pod`.
pub(crate) fn service_with_cluster_ip(
    name: &str,
    cluster: std::net::SocketAddr,
    pod: std::net::SocketAddr,
) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  clusterIP: {}\n  ports: [{{name: http, port: {}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-abc\n  namespace: default\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: http, port: {}, protocol: TCP}}]\nendpoints:\n- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n",
        cluster.ip(),
        cluster.port(),
        pod.port(),
        pod.ip(),
    )
}

/// An Ingress routing `host` to Service `service`, with `nginx.ingress.kubernetes.io/`
/// annotations (name without the prefix, value).
pub(crate) fn nginx_ingress(
    name: &str,
    host: &str,
    service: &str,
    annotations: &[(&str, &str)],
) -> String {
    let pairs: Vec<String> = annotations
        .iter()
        .map(|(k, v)| {
            format!(
                "nginx.ingress.kubernetes.io/{k}: {}",
                serde_json::to_string(v).unwrap()
            )
        })
        .collect();
    ingress(name, &[(host, "Prefix", "/", service)]).replacen(
        "namespace: default}",
        &format!(
            "namespace: default, annotations: {{{}}}}}",
            pairs.join(", ")
        ),
        1,
    )
}

/// A Service whose endpoints are `backends`, one EndpointSlice each (slices may carry
/// different port numbers for the same Service port, as during a rollout).
pub(crate) fn service_over(name: &str, backends: &[SocketAddr]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{name: http, port: 80}}]\n"
    );
    for (i, b) in backends.iter().enumerate() {
        out.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{i}\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints:\n- addresses: [\"{}\"]\n",
            b.port(),
            b.ip()
        ));
    }
    out
}

/// An Ingress of class fjord with one rule per `(host, pathType, path, service)`.
pub(crate) fn ingress(name: &str, rules: &[(&str, &str, &str, &str)]) -> String {
    let mut out = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  ingressClassName: fjord\n  rules:\n"
    );
    for (host, path_type, path, service) in rules {
        if host.is_empty() {
            out.push_str("  - ");
        } else {
            out.push_str(&format!("  - host: \"{host}\"\n"));
        }
        let indent = if host.is_empty() { "" } else { "    " };
        out.push_str(&format!(
            "{indent}http:\n      paths:\n      - path: {path}\n        pathType: {path_type}\n        backend: {{service: {{name: {service}, port: {{name: http}}}}}}\n"
        ));
    }
    out
}

/// A temporary manifests folder.
pub(crate) struct Manifests {
    pub dir: tempfile::TempDir,
}

impl Manifests {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` atomically (write, then rename), as editors and `kubectl`-like tools do.
    pub(crate) fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let tmp = self
            .dir
            .path()
            .join(format!(".{}.tmp", name.replace('/', "_")));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    pub(crate) fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).unwrap();
    }
}

/// Asserts that `deploy/kubernetes/rbac.yaml` allows every request fjord made to `api`: the
/// ClusterRole for cluster-wide rules, the Role only in its own namespace.
pub(crate) fn assert_rbac_allows(api: &apiserver::ApiServer) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/rbac.yaml");
    let docs = fjord::provider::manifests::parse_documents(&std::fs::read_to_string(path).unwrap())
        .unwrap();
    let grants: Vec<(Option<String>, serde_json::Value)> = docs
        .iter()
        .filter_map(|d| match d["kind"].as_str()? {
            "ClusterRole" => Some((None, d["rules"].clone())),
            "Role" => Some((
                Some(d["metadata"]["namespace"].as_str()?.to_owned()),
                d["rules"].clone(),
            )),
            _ => None,
        })
        .collect();
    let has = |list: &serde_json::Value, want: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str() == Some(want))
    };
    let accesses = api.accesses();
    assert!(!accesses.is_empty());
    for a in &accesses {
        let allowed = grants.iter().any(|(ns, rules)| {
            (ns.is_none() || *ns == a.namespace)
                && rules.as_array().unwrap().iter().any(|r| {
                    has(&r["apiGroups"], &a.group)
                        && has(&r["resources"], &a.resource)
                        && has(&r["verbs"], a.verb)
                })
        });
        assert!(allowed, "deploy/kubernetes/rbac.yaml does not allow {a:?}");
    }
}

/// `fjord check DIR` (with `--config`, when given): its exit code and what it printed on stdout.
pub(crate) fn check(dir: &Path, config: Option<&Path>) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fjord"));
    command.arg("check");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let out = command.arg(dir).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// Writes raw bytes on a fresh connection and reads the answer until the peer closes.
pub(crate) fn raw(addr: SocketAddr, request: &[u8]) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A folder routing `app.test` to Service `app` at `backend`.
pub(crate) fn app(backend: SocketAddr) -> Manifests {
    let m = Manifests::new();
    m.write(
        "app.yaml",
        &format!(
            "{}---\n{}",
            service("app", backend),
            ingress("app", &[("app.test", "Prefix", "/", "app")])
        ),
    );
    m
}

/// A Middleware `name` with `spec` (the YAML under `spec:`, indented two spaces), and an
/// Ingress routing `host` to Service `app` through it.
pub(crate) fn through_middleware(name: &str, host: &str, spec: &str) -> String {
    format!(
        r#"apiVersion: fjord.dev/v1alpha1
kind: Middleware
metadata: {{name: {name}, namespace: default}}
spec:
{spec}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default
  annotations: {{fjord.dev/middlewares: {name}}}
spec:
  ingressClassName: fjord
  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{name: http}}}}}}}}
"#
    )
}

/// An echo backend `name` on a free loopback port, with its Service written to `m`.
pub(crate) async fn echo_service(name: &str, m: &Manifests) -> Echo {
    let e = Echo::start(name, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write(&format!("svc-{name}.yaml"), &service(name, e.addr));
    e
}

/// `method` `path` to `web` with `Host: host` and `headers`, no body.
pub(crate) async fn request_with(
    web: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{web}{path}"))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&client(), req.body(Full::default()).unwrap()).await
}

/// Asserts that `fjord check`'s output `out` has a line about `subject` saying `why`.
pub(crate) fn assert_diagnostic(out: &str, subject: &str, why: &str) {
    assert!(
        out.lines()
            .any(|l| l.contains(&format!("{subject}:")) && l.contains(why)),
        "no diagnostic for {subject} saying {why:?}: {out}"
    );
}
