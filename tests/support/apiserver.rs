//! A Kubernetes API server for tests, on loopback, implementing what fjord's kube-rs client
//! uses: LIST (with `resourceVersion`), WATCH as newline-delimited `{type, object}` events with
//! BOOKMARKs and the 410 `Expired` ERROR event, label and field selectors, POST, PUT and
//! (merge) PATCH incl. the `status` subresource, with `resourceVersion` conflicts, and DELETE. It can be
//! stopped and started again on the same port with its objects kept, like an API server
//! restarting.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;

/// `(resource, namespace, name)`; the namespace is empty for cluster-scoped kinds.
type Key = (String, String, String);

/// One change, as watches see it.
#[derive(Clone, Debug)]
enum Change {
    Event {
        rv: u64,
        resource: String,
        kind: &'static str,
        object: Value,
    },
    /// Every open watch gets a 410 `Expired` ERROR event and ends.
    Expire,
}

struct State {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// Events a watch from an older version replays, newest last.
    history: Vec<Change>,
    /// Watches from a version older than this get 410.
    compacted: u64,
    /// Every request, as `METHOD path?query`, for assertions.
    requests: Vec<String>,
    /// Every request as RBAC sees it.
    accesses: Vec<Access>,
    /// Watches open now, by id: `resource?fieldSelector`.
    open_watches: BTreeMap<u64, String>,
    next_watch: u64,
}

/// Forgets an open watch when its stream ends.
struct Open(Arc<Mutex<State>>, u64);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.lock().unwrap().open_watches.remove(&self.1);
    }
}

/// A request in RBAC's terms.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Access {
    pub verb: &'static str,
    /// `""` for the core group.
    pub group: String,
    /// With `/status` for the status subresource.
    pub resource: String,
    pub namespace: Option<String>,
}

/// The test API server. Dropping it stops it.
pub(crate) struct ApiServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changes: broadcast::Sender<Change>,
    running: Mutex<Option<JoinSet<()>>>,
    dir: tempfile::TempDir,
}

/// What a resource path names.
struct Target {
    group: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

impl ApiServer {
    pub(crate) async fn start() -> ApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (changes, _) = broadcast::channel(4096);
        let server = ApiServer {
            addr,
            state: Arc::new(Mutex::new(State {
                rv: 1000,
                objects: BTreeMap::new(),
                history: Vec::new(),
                compacted: 0,
                requests: Vec::new(),
                accesses: Vec::new(),
                open_watches: BTreeMap::new(),
                next_watch: 0,
            })),
            changes,
            running: Mutex::new(None),
            dir: tempfile::tempdir().unwrap(),
        };
        server.serve(listener);
        server
    }

    /// A kubeconfig pointing at this server over plain HTTP.
    pub(crate) fn kubeconfig(&self) -> PathBuf {
        let path = self.dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"http://{}\"}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test, namespace: default}}\ncurrent-context: test\nusers:\n- name: test\n  user: {{token: test}}\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let mut tasks = JoinSet::new();
        let state = Arc::clone(&self.state);
        let changes = self.changes.clone();
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let held = Arc::clone(&conns);
        tasks.spawn(async move {
            // Connections live in this task's set: stopping the server drops them all.
            let _held = held;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&state);
                let changes = changes.clone();
                conns.lock().unwrap().spawn(async move {
                    let service = service_fn(move |req| {
                        let state = Arc::clone(&state);
                        let changes = changes.clone();
                        async move { Ok::<_, Infallible>(handle(req, &state, &changes).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *self.running.lock().unwrap() = Some(tasks);
    }

    /// Stops serving and closes every connection, watches included; the objects stay.
    pub(crate) async fn stop(&self) {
        let tasks = self.running.lock().unwrap().take();
        if let Some(mut tasks) = tasks {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Serves again on the same port, with the same objects and history.
    pub(crate) async fn restart(&self) {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// Creates or replaces an object (JSON or YAML-derived value with apiVersion and kind).
    pub(crate) fn apply(&self, object: Value) {
        self.clone_handle().apply(object);
    }

    /// A handle that changes objects from another task.
    pub(crate) fn clone_handle(&self) -> Handle {
        Handle {
            state: Arc::clone(&self.state),
            changes: self.changes.clone(),
        }
    }

    /// Every document of a multi-document YAML text, applied.
    pub(crate) fn apply_yaml(&self, text: &str) {
        for doc in fjord::provider::manifests::parse_documents(text).unwrap() {
            if doc.is_null() {
                continue;
            }
            if doc["kind"] == "List" {
                for item in doc["items"].as_array().unwrap() {
                    self.apply(item.clone());
                }
            } else {
                self.apply(doc);
            }
        }
    }

    /// Every `*.yaml` file under `dir`, applied.
    pub(crate) fn apply_dir(&self, dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                self.apply_dir(&path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                self.apply_yaml(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }

    pub(crate) fn delete(&self, kind: &str, namespace: &str, name: &str) {
        self.clone_handle().delete(kind, namespace, name);
    }

    /// Changes an object without telling any watch, and compacts the history past it, so only a
    /// client that lists again can see the change; then every open watch gets 410 Expired.
    pub(crate) fn replace_unseen_and_expire(&self, object: Value) {
        let (key, object) = placed(object);
        let mut state = self.state.lock().unwrap();
        state.rv += 1;
        let rv = state.rv;
        state.objects.insert(key, with_rv(object, rv));
        state.history.clear();
        state.compacted = rv + 1;
        let _ = self.changes.send(Change::Expire);
    }

    /// The object stored under `kind namespace/name`.
    pub(crate) fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let (resource, _) = resource_of(kind);
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        self.state.lock().unwrap().objects.get(&key).cloned()
    }

    /// Every object of `kind`.
    pub(crate) fn list(&self, kind: &str) -> Vec<Value> {
        let (resource, _) = resource_of(kind);
        let state = self.state.lock().unwrap();
        state
            .objects
            .iter()
            .filter(|(k, _)| k.0 == resource)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Requests received so far, as `METHOD /path?query`.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The watches open now, each as `resource?fieldSelector`.
    pub(crate) fn open_watches(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .open_watches
            .values()
            .cloned()
            .collect()
    }

    /// Requests received so far, as RBAC sees them, without repeats.
    pub(crate) fn accesses(&self) -> Vec<Access> {
        let mut all = self.state.lock().unwrap().accesses.clone();
        all.sort();
        all.dedup();
        all
    }

    fn put(&self, state: &mut State, key: Key, object: Value, event: &'static str) {
        put(state, &self.changes, key, object, event);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(mut tasks) = self.running.lock().unwrap().take() {
            tasks.abort_all();
        }
    }
}

fn put(
    state: &mut State,
    changes: &broadcast::Sender<Change>,
    key: Key,
    object: Value,
    event: &'static str,
) -> Value {
    state.rv += 1;
    let rv = state.rv;
    let mut object = with_rv(object, rv);
    if object["metadata"]["uid"].is_null() {
        object["metadata"]["uid"] = json!(format!("uid-{rv}"));
    }
    if object["metadata"]["creationTimestamp"].is_null() {
        object["metadata"]["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
    }
    state.objects.insert(key.clone(), object.clone());
    let change = Change::Event {
        rv,
        resource: key.0,
        kind: event,
        object: object.clone(),
    };
    state.history.push(change.clone());
    let _ = changes.send(change);
    object
}

/// Changes the objects of an [`ApiServer`], as its own methods do.
#[derive(Clone)]
pub(crate) struct Handle {
    state: Arc<Mutex<State>>,
    changes: broadcast::Sender<Change>,
}

impl Handle {
    /// Creates or replaces an object.
    pub(crate) fn apply(&self, object: Value) {
        let (key, object) = placed(object);
        let mut state = self.state.lock().unwrap();
        let event = if state.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        put(&mut state, &self.changes, key, object, event);
    }

    /// Deletes an object, which must exist.
    pub(crate) fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let (resource, _) = resource_of(kind);
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        let mut state = self.state.lock().unwrap();
        remove(&mut state, &self.changes, &key).expect("object to delete");
    }
}

/// Removes the object at `key`, telling the watches; `None` when there is none.
fn remove(state: &mut State, changes: &broadcast::Sender<Change>, key: &Key) -> Option<Value> {
    let object = state.objects.remove(key)?;
    state.rv += 1;
    let rv = state.rv;
    let object = with_rv(object, rv);
    let change = Change::Event {
        rv,
        resource: key.0.clone(),
        kind: "DELETED",
        object: object.clone(),
    };
    state.history.push(change.clone());
    let _ = changes.send(change);
    Some(object)
}

/// Where `object` is stored, with the namespace defaulted as the API server does.
fn placed(mut object: Value) -> (Key, Value) {
    let kind = object["kind"].as_str().unwrap().to_owned();
    let (resource, namespaced) = resource_of(&kind);
    if namespaced && object["metadata"]["namespace"].is_null() {
        object["metadata"]["namespace"] = json!("default");
    }
    (key_of(resource, &object), object)
}

fn with_rv(mut object: Value, rv: u64) -> Value {
    object["metadata"]["resourceVersion"] = json!(rv.to_string());
    object
}

fn key_of(resource: &str, object: &Value) -> Key {
    (
        resource.to_owned(),
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        object["metadata"]["name"].as_str().unwrap().to_owned(),
    )
}

/// The resource (plural) for a kind, and whether it is namespaced.
fn resource_of(kind: &str) -> (&'static str, bool) {
    match kind {
        "Ingress" => ("ingresses", true),
        "IngressClass" => ("ingressclasses", false),
        "Service" => ("services", true),
        "EndpointSlice" => ("endpointslices", true),
        "Secret" => ("secrets", true),
        "ConfigMap" => ("configmaps", true),
        "IngressRoute" => ("ingressroutes", true),
        "Middleware" => ("middlewares", true),
        "TraefikService" => ("traefikservices", true),
        "ServersTransport" => ("serverstransports", true),
        "TLSOption" => ("tlsoptions", true),
        "TLSStore" => ("tlsstores", true),
        "Lease" => ("leases", true),
        "Event" => ("events", true),
        other => panic!("the test API server does not know kind {other}"),
    }
}

/// `/api/v1/...` or `/apis/GROUP/VERSION/...`, then `[namespaces/NS/]RESOURCE[/NAME[/status]]`.
fn parse_path(path: &str) -> Option<Target> {
    let mut parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let group = match *parts.first()? {
        "api" => {
            parts.drain(..2.min(parts.len()));
            String::new()
        }
        "apis" => {
            let group = (*parts.get(1)?).to_owned();
            parts.drain(..3.min(parts.len()));
            group
        }
        _ => return None,
    };
    let namespace = if parts.first() == Some(&"namespaces") && parts.len() >= 3 {
        let ns = parts[1].to_owned();
        parts.drain(..2);
        Some(ns)
    } else {
        None
    };
    let resource = (*parts.first()?).to_owned();
    Some(Target {
        group,
        resource,
        namespace,
        name: parts.get(1).map(|n| (*n).to_owned()),
        status: parts.get(2) == Some(&"status"),
    })
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            url_decode_pairs(q)
                .into_iter()
                .collect::<BTreeMap<String, String>>()
        })
        .unwrap_or_default()
}

fn url_decode_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `object` passes `labelSelector` (`k=v` terms) and `fieldSelector` (`type`,
/// `metadata.name`, `metadata.namespace`).
fn selected(object: &Value, q: &BTreeMap<String, String>) -> bool {
    let terms = |key: &str| -> Vec<(String, String)> {
        q.get(key)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.split(',')
                    .map(|t| {
                        let (k, v) = t.split_once('=').expect("k=v selector term");
                        (k.trim_end_matches('=').to_owned(), v.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let labels_ok = terms("labelSelector")
        .iter()
        .all(|(k, v)| object["metadata"]["labels"][k].as_str() == Some(v));
    let fields_ok = terms("fieldSelector").iter().all(|(k, v)| {
        let got = match k.as_str() {
            "type" => &object["type"],
            "metadata.name" => &object["metadata"]["name"],
            "metadata.namespace" => &object["metadata"]["namespace"],
            other => panic!("field selector {other} not supported"),
        };
        got.as_str() == Some(v)
    });
    labels_ok && fields_ok
}

type Body = Either<
    Full<Bytes>,
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>,
>;

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body.to_string()))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    reply(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

async fn handle(
    req: Request<Incoming>,
    state: &Arc<Mutex<State>>,
    changes: &broadcast::Sender<Change>,
) -> Response<Body> {
    let line = format!(
        "{} {}",
        req.method(),
        req.uri()
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
    );
    state.lock().unwrap().requests.push(line);
    let Some(target) = parse_path(req.uri().path()) else {
        return status(StatusCode::NOT_FOUND, "NotFound", "no such path");
    };
    let q = query(&req);
    let method = req.method().clone();
    let watching = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (&method, target.name.is_some(), watching) {
        (&Method::GET, false, true) => "watch",
        (&Method::GET, false, false) => "list",
        (&Method::GET, true, _) => "get",
        (&Method::POST, ..) => "create",
        (&Method::PUT, ..) => "update",
        (&Method::PATCH, ..) => "patch",
        (&Method::DELETE, ..) => "delete",
        _ => "unknown",
    };
    state.lock().unwrap().accesses.push(Access {
        verb,
        group: target.group.clone(),
        resource: if target.status {
            format!("{}/status", target.resource)
        } else {
            target.resource.clone()
        },
        namespace: target.namespace.clone(),
    });
    match (method, &target.name) {
        (Method::GET, None) if watching => watch(target, q, state, changes),
        (Method::GET, None) => list(&target, &q, state),
        (Method::GET, Some(name)) => {
            let key = (
                target.resource.clone(),
                target.namespace.clone().unwrap_or_default(),
                name.clone(),
            );
            match state.lock().unwrap().objects.get(&key) {
                Some(o) => reply(StatusCode::OK, o.clone()),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{name} not found"),
                ),
            }
        }
        (Method::POST, None) => {
            let body = read(req).await;
            let mut object = body;
            if let Some(ns) = &target.namespace {
                object["metadata"]["namespace"] = json!(ns);
            }
            let key = key_of(&target.resource, &object);
            let mut s = state.lock().unwrap();
            if s.objects.contains_key(&key) {
                return status(StatusCode::CONFLICT, "AlreadyExists", "already exists");
            }
            let stored = put(&mut s, changes, key, object, "ADDED");
            reply(StatusCode::CREATED, stored)
        }
        (Method::PUT | Method::PATCH, Some(name)) => {
            let is_patch = req.method() == Method::PATCH;
            let body = read(req).await;
            let key = (
                target.resource.clone(),
                target.namespace.clone().unwrap_or_default(),
                name.clone(),
            );
            let mut s = state.lock().unwrap();
            let Some(current) = s.objects.get(&key).cloned() else {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{name} not found"),
                );
            };
            let mut next = if is_patch {
                let mut merged = current.clone();
                merge_patch(&mut merged, &body);
                merged
            } else {
                let sent_rv = body["metadata"]["resourceVersion"].as_str();
                if sent_rv
                    .is_some_and(|rv| Some(rv) != current["metadata"]["resourceVersion"].as_str())
                {
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified",
                    );
                }
                // As a real API server: the namespace is the path's, the identity the object's.
                let mut body = body;
                body["metadata"]["namespace"] = current["metadata"]["namespace"].clone();
                body["metadata"]["uid"] = current["metadata"]["uid"].clone();
                body["metadata"]["creationTimestamp"] =
                    current["metadata"]["creationTimestamp"].clone();
                body
            };
            if target.status {
                // The status subresource changes only the status.
                let new_status = next["status"].clone();
                next = current.clone();
                next["status"] = new_status;
            }
            let stored = put(&mut s, changes, key, next, "MODIFIED");
            reply(StatusCode::OK, stored)
        }
        (Method::DELETE, Some(name)) => {
            let key = (
                target.resource.clone(),
                target.namespace.clone().unwrap_or_default(),
                name.clone(),
            );
            match remove(&mut state.lock().unwrap(), changes, &key) {
                Some(object) => reply(StatusCode::OK, object),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{name} not found"),
                ),
            }
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not supported",
        ),
    }
}

async fn read(req: Request<Incoming>) -> Value {
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().unwrap();
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn in_scope(target: &Target, key: &Key) -> bool {
    key.0 == target.resource && target.namespace.as_ref().is_none_or(|ns| *ns == key.1)
}

fn list(
    target: &Target,
    q: &BTreeMap<String, String>,
    state: &Arc<Mutex<State>>,
) -> Response<Body> {
    let s = state.lock().unwrap();
    let items: Vec<Value> = s
        .objects
        .iter()
        .filter(|(k, o)| in_scope(target, k) && selected(o, q))
        .map(|(_, o)| o.clone())
        .collect();
    reply(
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
    )
}

fn watch(
    target: Target,
    q: BTreeMap<String, String>,
    state: &Arc<Mutex<State>>,
    changes: &broadcast::Sender<Change>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = Duration::from_secs(
        q.get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(300),
    );
    // Subscribed under the lock, so nothing falls between the replay and the live events.
    let (backlog, mut live, expired, mut last_rv, open) = {
        let mut s = state.lock().unwrap();
        s.next_watch += 1;
        let id = s.next_watch;
        let described = format!(
            "{}?{}",
            target.resource,
            q.get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default()
        );
        s.open_watches.insert(id, described);
        let open = Open(Arc::clone(state), id);
        let expired = from != 0 && from < s.compacted;
        let backlog: Vec<Change> = s
            .history
            .iter()
            .filter(|c| matches!(c, Change::Event { rv, .. } if *rv > from))
            .cloned()
            .collect();
        (backlog, changes.subscribe(), expired, s.rv, open)
    };
    let wanted = move |c: &Change| match c {
        Change::Event {
            resource, object, ..
        } => {
            let key = key_of(resource, object);
            in_scope(&target, &key) && selected(object, &q)
        }
        Change::Expire => true,
    };
    tokio::spawn(async move {
        let _open = open;
        if expired {
            let _ = tx.send(expired_line()).await;
            return;
        }
        for c in backlog.iter().filter(|c| wanted(c)) {
            if let Change::Event { kind, object, .. } = c {
                let _ = tx.send(event_line(kind, object)).await;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                change = live.recv() => match change {
                    Ok(Change::Expire) => {
                        let _ = tx.send(expired_line()).await;
                        return;
                    }
                    Ok(c @ Change::Event { .. }) => {
                        if let Change::Event { rv, kind, object, .. } = &c {
                            last_rv = *rv;
                            if wanted(&c) && tx.send(event_line(kind, object)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(_) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    let line = event_line("BOOKMARK", &json!({"apiVersion": "v1", "kind": "Bookmark", "metadata": {"resourceVersion": last_rv.to_string()}}));
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return,
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
    });
    let mut r = Response::new(Either::Right(StreamBody::new(
        futures_util::StreamExt::boxed(stream),
    )));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
}

/// What the API server sends when a watch asks for history it no longer has.
fn expired_line() -> Bytes {
    event_line(
        "ERROR",
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "too old resource version", "reason": "Expired", "code": 410}),
    )
}
