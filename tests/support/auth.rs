//! An authentication server, as oauth2-proxy or Authelia answer a forward auth: it decides by
//! the `Authorization` header and remembers every question it was asked, body and all. Plain
//! HTTP, or TLS with a certificate from the test's CA.
//!
//! - `Bearer good`: 200 with `X-Auth-User: alice`, `Remote-Email`, `Remote-Groups`, and two
//!   cookies (`_session`, `tracking`).
//! - `Bearer bad`: 403 with a body and `X-Auth-Reason`.
//! - none: 302 to a relative `/oauth2/start?rd=...`, with a body.
//! - anything else: 401 with `WWW-Authenticate`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A question the server was asked.
#[derive(Clone, Debug)]
pub(crate) struct Asked {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub(crate) struct AuthServer {
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<Asked>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthServer {
    /// Plain HTTP on a free loopback port.
    pub(crate) async fn start() -> AuthServer {
        AuthServer::serve(None).await
    }

    /// TLS with `cert` and `key` (PEM).
    pub(crate) async fn start_tls(cert: &str, key: &str) -> AuthServer {
        AuthServer::serve(Some(super::tls::acceptor(cert, key))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (log, tls) = (Arc::clone(&log), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(Arc::clone(&log), req));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        AuthServer { addr, asked, task }
    }

    /// The questions asked so far.
    pub(crate) fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

async fn answer(
    log: Arc<Mutex<Vec<Asked>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    log.lock().unwrap().push(Asked {
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body,
    });
    let req = Request::from_parts(parts, ());
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let response = match auth {
        "Bearer good" => Response::builder()
            .header("x-auth-user", "alice")
            .header("remote-email", "alice@example.com")
            .header("remote-groups", "admins")
            .header(header::SET_COOKIE, "_session=s1; Path=/; HttpOnly")
            .header(header::SET_COOKIE, "tracking=t1; Path=/")
            .body(Full::default()),
        "Bearer bad" => Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header("x-auth-reason", "token revoked")
            .header(header::CONNECTION, "close")
            .body(Full::new(Bytes::from_static(b"denied: token revoked\n"))),
        "" => Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, "/oauth2/start?rd=%2F")
            .body(Full::new(Bytes::from_static(
                b"<a href=\"/oauth2/start\">Found</a>\n",
            ))),
        _ => Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, "Bearer realm=\"test\"")
            .body(Full::new(Bytes::from_static(b"unauthorized\n"))),
    };
    Ok(response.unwrap_or_default())
}
