//! A gRPC backend speaking HTTP/2 only, with prior knowledge (h2c) or over TLS (ALPN `h2`):
//! it answers every call with one message, `NAME: ` and the request's message, and the
//! trailers `grpc-status: 0`; headers say what it received (`x-backend`, `x-seen-version`,
//! `x-seen-te`, `x-seen-authority`, `x-seen-content-type`). A client for the calls is here too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// A running gRPC backend; it stops when dropped.
pub(crate) struct Grpc {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Grpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Reply = Response<
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>,
>;

impl Grpc {
    /// Starts backend `name` on a loopback port, over TLS when `tls` is given.
    pub(crate) async fn start(name: &'static str, tls: Option<tokio_rustls::TlsAcceptor>) -> Grpc {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::Relaxed);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(name, req));
                    let h2 = http2::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = h2.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            let _ = h2.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Grpc {
            addr,
            connections,
            task,
        }
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// One message in gRPC's framing: uncompressed, its length, its bytes.
pub(crate) fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap());
    out.put_slice(message);
    out.freeze()
}

/// The message of a gRPC-framed body.
pub(crate) fn unframe(mut body: Bytes) -> Bytes {
    if body.len() < 5 {
        return Bytes::new();
    }
    body.advance(1);
    let len = body.get_u32() as usize;
    body.slice(..len.min(body.len()))
}

async fn answer(name: &'static str, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let version = format!("{:?}", req.version());
    let te = header(req.headers(), "te");
    let content_type = header(req.headers(), "content-type");
    let authority = req
        .uri()
        .authority()
        .map(ToString::to_string)
        .unwrap_or_default();
    let body = req
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let mut reply = name.as_bytes().to_vec();
    reply.extend_from_slice(b": ");
    reply.extend_from_slice(&unframe(body));
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("grpc-message", HeaderValue::from_static("done"));
    let frames = vec![
        Ok(Frame::data(frame(&reply))),
        Ok(Frame::trailers(trailers)),
    ];
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .header("x-backend", name)
        .header("x-seen-version", version)
        .header("x-seen-te", te)
        .header("x-seen-content-type", content_type)
        .header("x-seen-authority", authority)
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap())
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// What a client got for a call: the response's headers, message and trailers.
#[derive(Debug)]
pub(crate) struct Call {
    pub status: http::StatusCode,
    pub headers: HeaderMap,
    pub message: Bytes,
    pub trailers: HeaderMap,
}

/// Calls `path` on `host` through `web` over HTTP/2 with prior knowledge, with `message`.
pub(crate) async fn call(web: SocketAddr, host: &str, path: &str, message: &[u8]) -> Call {
    let stream = TcpStream::connect(web).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::post(format!("http://{host}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(frame(message)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    Call {
        status: parts.status,
        headers: parts.headers,
        message: unframe(collected.to_bytes()),
        trailers,
    }
}
