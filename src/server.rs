//! One client connection: HTTP/1.1 or HTTP/2 (prior knowledge) through hyper-util, with an idle
//! timeout, graceful shutdown, and the request handed to the [`Proxy`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo as Io;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::acme::challenge::ACME_TLS_ALPN;
use crate::balance;
use crate::config;
use crate::forwarded;
use crate::metrics::METRICS;
use crate::proxy::{EntryPoint, Proxy, Redirect};

/// An entry point's connection settings, built once at start.
pub struct Server {
    proxy: Arc<Proxy>,
    entry: EntryPoint,
    builder: auto::Builder<TokioExecutor>,
    idle_timeout: Duration,
    trusted_ips: Vec<IpNet>,
    trust_all: bool,
    tls: Option<Tls>,
}

/// TLS on an entry point.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub handshake_timeout: Duration,
}

impl Server {
    pub fn new(
        name: &str,
        config: &config::EntryPoint,
        proxy: Arc<Proxy>,
        tls: Option<Tls>,
        redirect: Option<Redirect>,
    ) -> Self {
        let timeouts = &config.transport.responding_timeouts;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // hyper answers 431 when the request head outgrows the buffer.
            .max_buf_size(config.limits.max_request_header_bytes)
            .header_read_timeout(timeouts.request_header_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(
                u32::try_from(config.limits.max_request_header_bytes).unwrap_or(u32::MAX),
            )
            .max_concurrent_streams(250)
            // Finds dead peers; an idle but live one is closed by the idle timeout.
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        Self {
            proxy,
            entry: EntryPoint {
                name: name.into(),
                series: METRICS.entrypoint(name),
                max_body: config.limits.max_request_body_bytes,
                redirect,
            },
            builder,
            idle_timeout: timeouts.idle_timeout,
            trusted_ips: config.forwarded_headers.trusted_ips.clone(),
            trust_all: config.forwarded_headers.insecure,
            tls,
        }
    }

    /// Serves one connection (after its TLS handshake, on a TLS entry point) until the client
    /// closes it, it idles out, or `shutdown` fires and its in-flight requests are done.
    pub async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        let _ = stream.set_nodelay(true);
        let local_port = stream.local_addr().map(|a| a.port()).unwrap_or_default();
        if self.tls.is_none() {
            return self
                .serve_http(stream, peer, local_port, false, shutdown)
                .await;
        }
        // Boxed: the TLS state is some 4 KB, which would otherwise be part of every plain
        // connection's task as well.
        Box::pin(self.serve_tls(stream, peer, local_port, shutdown)).await;
    }

    async fn serve_tls(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        local_port: u16,
        shutdown: CancellationToken,
    ) {
        let Some(tls) = &self.tls else { return };
        // A client that never finishes the handshake holds nothing past the timeout.
        let stream =
            match tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    self.handshake("unknown", "error");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    self.handshake("unknown", "timeout");
                    return;
                }
            };
        let version = match stream.get_ref().1.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
            _ => "other",
        };
        self.handshake(version, "ok");
        if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
            // A TLS-ALPN-01 validation: the handshake was the answer.
            return;
        }
        self.serve_http(stream, peer, local_port, true, shutdown)
            .await;
    }

    fn handshake(&self, version: &str, result: &str) {
        METRICS
            .tls_handshakes
            .with_label_values(&[&*self.entry.name, version, result])
            .inc();
    }

    async fn serve_http<I>(
        self: Arc<Self>,
        io: I,
        peer: SocketAddr,
        local_port: u16,
        tls: bool,
        shutdown: CancellationToken,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let _open = Open::new(&self.entry.name, tls);
        let conn = Arc::new(Connection {
            client: forwarded::Client::new(
                peer,
                local_port,
                tls,
                &self.trusted_ips,
                self.trust_all,
            ),
            server: Arc::clone(&self),
            in_flight: AtomicUsize::new(0),
            last_request: AtomicU64::new(balance::now()),
        });
        let service = {
            let conn = Arc::clone(&conn);
            service_fn(move |req| {
                let conn = Arc::clone(&conn);
                // Boxed: a request's future is ~5 KB. Unboxed, hyper would keep that much per
                // HTTP/1.1 connection for its whole life, and copy it into each HTTP/2 stream's
                // task when spawning it.
                Box::pin(async move {
                    let _active = Active::new(&conn);
                    let response = conn
                        .server
                        .proxy
                        .handle(req, &conn.client, &conn.server.entry)
                        .await;
                    Ok::<_, Infallible>(response)
                })
            })
        };
        let http = self
            .builder
            .serve_connection_with_upgrades(Io::new(io), service);
        tokio::pin!(http);

        let idle = self.idle_timeout;
        let mut closing = false;
        loop {
            let since = Duration::from_nanos(
                balance::now().saturating_sub(conn.last_request.load(Ordering::Relaxed)),
            );
            let idle_left = idle.saturating_sub(since);
            tokio::select! {
                result = http.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = shutdown.cancelled(), if !closing => {
                    http.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = tokio::time::sleep(idle_left), if !closing => {
                    let since = balance::now().saturating_sub(conn.last_request.load(Ordering::Relaxed));
                    if conn.in_flight.load(Ordering::Relaxed) == 0 && Duration::from_nanos(since) >= idle {
                        http.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// Counts a connection in `fjord_open_connections` while it lives.
struct Open(prometheus::IntGauge);

impl Open {
    fn new(entrypoint: &str, tls: bool) -> Self {
        let g = METRICS
            .open_connections
            .with_label_values(&[entrypoint, if tls { "https" } else { "http" }]);
        g.inc();
        Self(g)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Per-connection state shared with its requests.
struct Connection {
    client: forwarded::Client,
    server: Arc<Server>,
    in_flight: AtomicUsize,
    /// [`balance::now`] when the last request started.
    last_request: AtomicU64,
}

/// Marks a request in flight for as long as it lives, even if the client goes away mid-request.
struct Active<'a>(&'a Connection);

impl<'a> Active<'a> {
    fn new(conn: &'a Connection) -> Self {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        conn.last_request.store(balance::now(), Ordering::Relaxed);
        Self(conn)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.last_request.store(balance::now(), Ordering::Relaxed);
    }
}
