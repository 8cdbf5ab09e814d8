//! An echo backend: answers every request with JSON saying which backend it is and what it
//! received (method, path, host, headers, body size), and echoes WebSocket messages. Shared by
//! the black-box tests and the quickstart example.
//!
//! Paths with a meaning: `/status/N` answers status N; `/delay/MS` waits MS milliseconds first;
//! `/reset-once/KEY` drops the connection without an answer the first time KEY is asked for;
//! `/unavailable-once/KEY` answers 503 the first time;
//! `/bytes/N` answers N bytes; `/cookie/NAME` sets cookie NAME (value `backend`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Message, Role};

/// A running echo backend; it stops when dropped.
pub(crate) struct Echo {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// How an echo backend treats its connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// Whether a connection serves more than one request; without, every answer says
    /// `Connection: close` and the connection closes after it.
    pub keep_alive: bool,
    /// Closes a connection that waits this long for a request head.
    pub close_idle: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            keep_alive: true,
            close_idle: None,
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    /// Starts backend `name` on `addr` (port 0 picks a free one).
    pub(crate) async fn start(name: &str, addr: SocketAddr) -> std::io::Result<Echo> {
        Echo::start_with(name, addr, Options::default()).await
    }

    /// Starts backend `name` on a free loopback port, speaking HTTPS through `acceptor`.
    pub(crate) async fn start_tls(
        name: &str,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> std::io::Result<Echo> {
        let addr = "127.0.0.1:0".parse().unwrap();
        Echo::serve(name, addr, Options::default(), Some(acceptor)).await
    }

    /// Starts backend `name` on `addr`, treating connections as `options` say.
    pub(crate) async fn start_with(
        name: &str,
        addr: SocketAddr,
        options: Options,
    ) -> std::io::Result<Echo> {
        Echo::serve(name, addr, options, None).await
    }

    async fn serve(
        name: &str,
        addr: SocketAddr,
        options: Options,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Echo> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::clone(&connections);
        let open = Arc::new(AtomicUsize::new(0));
        let still_open = Arc::clone(&open);
        let reset: Arc<std::sync::Mutex<std::collections::HashSet<String>>> = Arc::default();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::Relaxed);
                still_open.fetch_add(1, Ordering::SeqCst);
                let open = Arc::clone(&still_open);
                let reset = Arc::clone(&reset);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let path = req.uri().path();
                        let first = |prefix: &str| {
                            path.strip_prefix(prefix).is_some_and(|key| {
                                reset.lock().unwrap().insert(format!("{prefix}{key}"))
                            })
                        };
                        let (reset_once, unavailable_once) =
                            (first("/reset-once/"), first("/unavailable-once/"));
                        async move {
                            if reset_once {
                                return Err(std::io::Error::other("reset once"));
                            }
                            if unavailable_once {
                                let mut busy =
                                    Response::new(Full::new(Bytes::from_static(b"busy")));
                                *busy.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                                return Ok(busy);
                            }
                            answer(name, req).await.map_err(|e| match e {})
                        }
                    });
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder.keep_alive(options.keep_alive);
                    if let Some(idle) = options.close_idle {
                        builder
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(idle);
                    }
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .with_upgrades()
                                    .await;
                            }
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(Echo {
            addr,
            connections,
            open,
            task,
        })
    }

    /// How many of its TCP connections are open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// How many TCP connections the backend has accepted.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

async fn answer(
    name: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) {
        let accept = derive_accept_key(key.as_bytes());
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(io) = upgrade.await else { return };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(text) = msg {
                    let reply = format!("{name}: {}", text.as_str());
                    if ws.send(Message::text(reply)).await.is_err() {
                        return;
                    }
                }
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(Full::default());
        return Ok(response.unwrap_or_default());
    }

    let path = req.uri().path().to_owned();
    // A large body for slow readers: `/bytes/N` is N bytes.
    if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse().ok()) {
        return Ok(Response::new(Full::new(Bytes::from(vec![b'x'; n]))));
    }
    let mut status = StatusCode::OK;
    if let Some(code) = path.strip_prefix("/status/").and_then(|c| c.parse().ok()) {
        status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    }
    if let Some(ms) = path.strip_prefix("/delay/").and_then(|m| m.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let (parts, body) = req.into_parts();
    let body_bytes = body.collect().await.map_or(0, |b| b.to_bytes().len());
    let json = serde_json::json!({
        "backend": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str),
        "host": parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_bytes": body_bytes,
    });
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-backend", name);
    if let Some(cookie) = path.strip_prefix("/cookie/") {
        response = response.header(header::SET_COOKIE, format!("{cookie}=backend; Path=/"));
    }
    let response = response.body(Full::new(Bytes::from(format!("{json:#}\n"))));
    Ok(response.unwrap_or_default())
}
