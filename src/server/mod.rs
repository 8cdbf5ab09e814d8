//! One client connection: HTTP/1.1 or HTTP/2 (by ALPN, or by the preface of a client with
//! prior knowledge) served by hyper, with an idle timeout, graceful shutdown, and each request
//! handed to the [`Proxy`]. An idle HTTP/1.1 connection is parked ([`park`]).

mod draining;
mod frames;
mod park;

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{Service, service_fn};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo as Io;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ipnet::IpNet;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

pub(crate) use self::draining::Draining;
use self::park::{HeadTimer, PARK_AFTER, Park, Signals, Socket};
use crate::acme::challenge::ACME_TLS_ALPN;
use crate::clock;
use crate::config;
use crate::counted::{Sent, Writes};
use crate::forwarded;
use crate::metrics::METRICS;
use crate::proxy::{EntryPoint, Proxy, Redirect, ResponseBody};
use crate::tcp::Tcp;
use crate::tls;
use crate::upload::Pace;

/// A response as hyper gets it: counted for the metrics and the access log, and watched for a
/// client that stops taking it.
type Answer = Response<Sent<ResponseBody>>;

/// An entry point's connection settings, built once at start.
pub(crate) struct Server {
    proxy: Arc<Proxy>,
    entry: EntryPoint,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    idle_timeout: Duration,
    header_timeout: Duration,
    write_timeout: Duration,
    /// Connections open now (handshaking included), and how many may be.
    open: AtomicUsize,
    max_connections: usize,
    trusted_ips: Vec<IpNet>,
    trust_all: bool,
    tls: Option<Tls>,
}

/// TLS on an entry point.
pub(crate) struct Tls {
    /// fjord's own TLS settings.
    pub config: Arc<rustls::ServerConfig>,
    /// Those of the TLSOptions hosts are served with.
    pub policies: Arc<tls::Policies>,
    pub handshake_timeout: Duration,
}

impl Tls {
    /// The handshake, with the TLS settings of the name the client asks for when some host
    /// has a TLSOption (the client's hello is read first), else with fjord's own; and the
    /// TLSOption's name.
    async fn accept(&self, stream: Tcp) -> anyhow::Result<(TlsStream<Tcp>, Option<Box<str>>)> {
        if !self.policies.any() {
            let stream = TlsAcceptor::from(Arc::clone(&self.config))
                .accept(stream)
                .await?;
            return Ok((stream, None));
        }
        let acceptor = rustls::server::Acceptor::default();
        let start = tokio_rustls::LazyConfigAcceptor::new(acceptor, stream).await?;
        let name = start.client_hello().server_name().map(str::to_owned);
        let (config, policy) = match self.policies.for_name(name.as_deref())? {
            Some((policy, config)) => (config, Some(policy.name.as_str().into())),
            None => (Arc::clone(&self.config), None),
        };
        Ok((start.into_stream(config).await?, policy))
    }
}

/// How a connection's HTTP ended.
enum Served {
    /// The client closed it, it failed, or it was shut down.
    Closed,
    /// hyper is idle between two HTTP/1.1 requests: its state can be dropped.
    Idle,
}

impl Server {
    pub(crate) fn new(
        name: &str,
        config: &config::EntryPoint,
        proxy: Arc<Proxy>,
        tls: Option<Tls>,
        redirect: Option<Redirect>,
    ) -> Self {
        let timeouts = &config.transport.responding_timeouts;
        let mut h1 = http1::Builder::new();
        h1
            // hyper answers 431 when the request head outgrows the buffer.
            .max_buf_size(config.limits.max_request_header_bytes)
            // Only what tells fjord that hyper is idle (see `park`): the connection's own
            // timer enforces the header timeout.
            .header_read_timeout(timeouts.request_header_timeout);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
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
                pace: Pace {
                    read_timeout: timeouts.read_timeout,
                    min_rate: config.limits.min_request_body_rate,
                },
                redirect,
            },
            h1,
            h2,
            idle_timeout: timeouts.idle_timeout,
            header_timeout: timeouts.request_header_timeout,
            write_timeout: timeouts.write_timeout,
            open: AtomicUsize::new(0),
            max_connections: config.limits.max_connections,
            trusted_ips: config.forwarded_headers.trusted_ips.clone(),
            trust_all: config.forwarded_headers.insecure,
            tls,
        }
    }

    /// Serves one connection (after its TLS handshake, on a TLS entry point) until the client
    /// closes it, it idles out, or `shutdown` fires and its in-flight requests are done.
    ///
    /// Not an `async fn` of its own: that would keep a second copy of its arguments in every
    /// connection's task, which a parked connection should keep small.
    pub(crate) fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: Draining,
    ) -> impl Future<Output = ()> + Send + 'static {
        let Some(slot) = Slot::take(&self) else {
            // Closed unread, so a flood costs no more than the accept; those open go on.
            METRICS
                .connections_refused
                .with_label_values(&[&*self.entry.name])
                .inc();
            tracing::debug!(%peer, entrypoint = &*self.entry.name, "maxConnections reached: connection closed");
            return Either::Left(Either::Right(std::future::ready(())));
        };
        let _ = stream.set_nodelay(true);
        let local_port = stream.local_addr().map(|a| a.port()).unwrap_or_default();
        let stream = Tcp::new(stream);
        if self.tls.is_none() {
            let conn = Connection::new(slot, peer, local_port, false, (None, Box::default()));
            Either::Left(Either::Left(Self::serve_http(conn, stream, None, shutdown)))
        } else {
            // Boxed: the TLS state is some 4 KB, which would otherwise be part of every plain
            // connection's task as well.
            Either::Right(Box::pin(Self::serve_tls(
                slot, stream, peer, local_port, shutdown,
            )))
        }
    }

    async fn serve_tls(
        slot: Slot,
        stream: Tcp,
        peer: SocketAddr,
        local_port: u16,
        shutdown: Draining,
    ) {
        let this = &*slot;
        let Some(tls) = &this.tls else { return };
        // A client that never finishes the handshake holds nothing past the timeout.
        let (stream, policy) =
            match tokio::time::timeout(tls.handshake_timeout, tls.accept(stream)).await {
                Ok(Ok(accepted)) => accepted,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    this.handshake("unknown", "error");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    this.handshake("unknown", "timeout");
                    return;
                }
            };
        let version = match stream.get_ref().1.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
            _ => "other",
        };
        this.handshake(version, "ok");
        let h2 = match stream.get_ref().1.alpn_protocol() {
            // A TLS-ALPN-01 validation: the handshake was the answer.
            Some(ACME_TLS_ALPN) => return,
            Some(b"h2") => Some(true),
            Some(b"http/1.1") => Some(false),
            _ => None,
        };
        // Owned only when there are some: most connections present no certificate.
        let certificates = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let conn = Connection::new(slot, peer, local_port, true, (policy, certificates));
        Self::serve_http(conn, stream, h2, shutdown).await;
    }

    fn handshake(&self, version: &str, result: &str) {
        METRICS
            .tls_handshakes
            .with_label_values(&[&*self.entry.name, version, result])
            .inc();
    }

    /// Serves HTTP on `io`: HTTP/2 if `h2` says so (ALPN) or, when it is not known, if the
    /// client opens with HTTP/2's preface.
    ///
    /// An `async` block rather than an `async fn`, which would keep its arguments twice in the
    /// task: as arguments, and as the locals they are moved into.
    fn serve_http<I: Park>(
        conn: Arc<Connection>,
        io: I,
        h2: Option<bool>,
        shutdown: Draining,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut socket = Socket::new(io, conn.signals.clone());
        async move {
            let _open = Open::new(&conn.server.entry.name, conn.client.is_tls());
            // One timer and one shutdown wait for the connection's whole life.
            let timer = tokio::time::sleep(conn.next_check(false));
            let cancelled = shutdown.wait();
            tokio::pin!(timer, cancelled);
            let mut waits = Waits { timer, cancelled };

            let h2 = match h2 {
                Some(h2) => h2,
                // Boxed: once per connection, and kept out of the task's size.
                None => match until_idle(&conn, &mut waits, Box::pin(socket.sniff_h2())).await {
                    Some(Ok(h2)) => h2,
                    _ => return,
                },
            };
            if h2 {
                // Its heads are timed by their frames; hyper's keep-alive pings find dead peers.
                socket.follow_frames();
                let http = conn
                    .server
                    .h2
                    .serve_connection(Io::new(socket), service(&conn, boxed));
                let graceful = http2::Connection::graceful_shutdown;
                let _ = Box::pin(drive(http, graceful, &conn, &mut waits, None)).await;
                return;
            }

            // When the connection last parked (`clock::now`); 0 before it first did.
            let mut parked_at = 0;
            loop {
                // Parked: the socket and this task are all the connection holds.
                let arrived = poll_fn(|cx| socket.poll_arrival(cx));
                if !matches!(until_idle(&conn, &mut waits, arrived).await, Some(Ok(()))) {
                    return;
                }
                // The request head's time starts with its first byte.
                conn.signals.head_started();
                // A connection in use (its request comes soon after it parked) keeps hyper's
                // state between requests until it goes [`PARK_AFTER`] without one; otherwise,
                // like one that only ever sends a request, it parks again right after this one.
                let busy = parked_at != 0
                    && Duration::from_nanos(clock::now().saturating_sub(parked_at)) < PARK_AFTER;
                let parking = Parking {
                    served: conn.requests.load(Ordering::Relaxed),
                    after: if busy { PARK_AFTER } else { Duration::ZERO },
                };
                // The entry point's settings with this connection's timer, made for each
                // request: kept per connection, they would be 100 bytes more to park.
                let mut h1 = conn.server.h1.clone();
                h1.timer(HeadTimer(conn.signals.clone()));
                let http = h1
                    .serve_connection(Io::new(socket), service(&conn, answer))
                    .with_upgrades();
                let graceful = http1::UpgradeableConnection::graceful_shutdown;
                // Boxed with hyper's state, which it owns until the connection parks again.
                let (served, http) =
                    Box::pin(drive(http, graceful, &conn, &mut waits, Some(parking))).await;
                if let Served::Closed = served {
                    return;
                }
                // Idle, so everything written is flushed and no request is in progress: hyper's
                // state goes, and what it had read past the last request (if a head began just
                // now) goes back to the socket.
                let Some(parts) = http.into_parts() else {
                    return;
                };
                socket = parts.io.into_inner();
                socket.unread(&parts.read_buf);
                // Parked: the wait for the next request is idle time, not the head's.
                conn.signals.head_ended();
                parked_at = clock::now();
            }
        }
    }
}

/// `until` unless the connection idles out or shutdown begins first.
async fn until_idle<T>(
    conn: &Connection,
    waits: &mut Waits<'_, '_>,
    until: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(until);
    loop {
        tokio::select! {
            done = &mut until => return Some(done),
            () = waits.cancelled.as_mut() => return None,
            () = waits.timer.as_mut() => {
                if conn.due(false) != Due::Not {
                    return None;
                }
                waits.rearm(conn, false);
            }
        }
    }
}

/// When an HTTP/1.1 connection's hyper state is to be given back to park the connection.
#[derive(Clone, Copy)]
struct Parking {
    /// Requests the connection had served before: it parks only after one more.
    served: u64,
    /// How long it must then go without a request.
    after: Duration,
}

/// Runs hyper's connection until it ends or, with `parking`, until it is to park; then gives
/// it back.
async fn drive<C>(
    mut http: C,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    conn: &Connection,
    waits: &mut Waits<'_, '_>,
    parking: Option<Parking>,
) -> (Served, C)
where
    C: Future<Output = hyper::Result<()>> + Unpin,
{
    let mut closing = false;
    // In how many nanoseconds an idle connection is to park (0: not idle): the timer is moved
    // up to then if it would fire later. Once it is (`armed`), a request going idle needs no
    // clock reading: the timer fires by then and the connection is looked at again.
    let park_in = AtomicU64::new(0);
    let armed = AtomicBool::new(false);
    loop {
        let park = parking.filter(|_| !closing);
        let served = poll_fn(|cx| match Pin::new(&mut http).poll(cx) {
            Poll::Ready(result) => Poll::Ready(Some(result)),
            Poll::Pending => {
                let idle = park.filter(|p| {
                    !armed.load(Ordering::Relaxed)
                        && conn.signals.is_idle()
                        && conn.signals.head_for().is_none()
                        && conn.requests.load(Ordering::Relaxed) > p.served
                });
                if let Some(park) = idle {
                    if park.after.is_zero() {
                        return Poll::Ready(None);
                    }
                    match park.after.checked_sub(conn.idle_for()) {
                        None | Some(Duration::ZERO) => return Poll::Ready(None),
                        Some(wait) => park_in.store(
                            u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX),
                            Ordering::Relaxed,
                        ),
                    }
                }
                Poll::Pending
            }
        });
        let timer = poll_fn(|cx| {
            let wait = park_in.swap(0, Ordering::Relaxed);
            if wait > 0 {
                let at = tokio::time::Instant::now() + Duration::from_nanos(wait);
                if at < waits.timer.deadline() {
                    waits.timer.as_mut().reset(at);
                }
                armed.store(true, Ordering::Relaxed);
            }
            waits.timer.as_mut().poll(cx)
        });
        let served = tokio::select! {
            // The connection first: the timer learns from it when to park.
            biased;
            served = served => served,
            () = waits.cancelled.as_mut(), if !closing => {
                graceful_shutdown(Pin::new(&mut http));
                closing = true;
                // A draining connection's write deadline starts now.
                waits.rearm(conn, closing);
                continue;
            }
            () = timer => {
                armed.store(false, Ordering::Relaxed);
                match conn.due(closing) {
                    // A client too slow with its request head, or too slow to take its
                    // responses (while closing too), gets no more time.
                    Due::Head | Due::Write => return (Served::Closed, http),
                    Due::Idle => {
                        graceful_shutdown(Pin::new(&mut http));
                        closing = true;
                    }
                    Due::Not => {}
                }
                waits.rearm(conn, closing);
                continue;
            }
        };
        return match served {
            None => (Served::Idle, http),
            Some(Ok(())) => (Served::Closed, http),
            Some(Err(e)) => {
                let peer = conn.client.ip();
                tracing::debug!(%peer, error = %e, "connection ended with an error");
                (Served::Closed, http)
            }
        };
    }
}

/// The waits every state of a connection races: its idle deadline and the shutdown signal.
struct Waits<'a, 'b> {
    timer: Pin<&'a mut tokio::time::Sleep>,
    cancelled: Pin<&'a mut draining::Wait<'b>>,
}

impl Waits<'_, '_> {
    /// Sets the timer for `conn`'s next check. Only when it fires: requests move the deadlines
    /// on, and the timer is not reset for each of them.
    fn rearm(&mut self, conn: &Connection, closing: bool) {
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + conn.next_check(closing));
    }
}

/// The hyper service of one connection: each request to the proxy, its future made by `answer`.
fn service<F>(
    conn: &Arc<Connection>,
    answer: impl Fn(Arc<Connection>, Request<Incoming>) -> F + Send + 'static,
) -> impl Service<Request<Incoming>, Response = Answer, Error = Infallible, Future = F> + Send + 'static
where
    F: Future<Output = Result<Answer, Infallible>> + Send + 'static,
{
    let conn = Arc::clone(conn);
    service_fn(move |req| answer(Arc::clone(&conn), req))
}

/// One request's answer. A future of some 3 KB: HTTP/1.1 takes it as it is, since hyper keeps
/// it in a box of its own, made once while the connection is unparked; HTTP/2 boxes it
/// ([`boxed`]), since hyper moves it into each stream's task when spawning it.
///
/// An `async` block rather than an `async fn`, which would keep its arguments twice.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn's future holds its arguments twice"
)]
fn answer(
    conn: Arc<Connection>,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Answer, Infallible>> + Send + 'static {
    async move {
        // The request's one clock reading for its start, shared by everything that needs it.
        let started = Instant::now();
        let _active = Active::new(&conn, started);
        let response = conn
            .server
            .proxy
            .handle(req, started, &conn.client, &conn.server.entry, &conn.writes)
            .await;
        Ok(response)
    }
}

/// [`answer`], boxed.
fn boxed(
    conn: Arc<Connection>,
    req: Request<Incoming>,
) -> Pin<Box<impl Future<Output = Result<Answer, Infallible>>>> {
    Box::pin(answer(conn, req))
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

/// A place among an entry point's open connections, given back when dropped.
struct Slot(Arc<Server>);

impl Slot {
    /// A place, unless `maxConnections` are open.
    fn take(server: &Arc<Server>) -> Option<Self> {
        let open = server.open.fetch_add(1, Ordering::Relaxed);
        if server.max_connections > 0 && open >= server.max_connections {
            server.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Self(Arc::clone(server)))
    }
}

impl std::ops::Deref for Slot {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Per-connection state shared with its requests.
struct Connection {
    client: forwarded::Client,
    /// The entry point's server, by the place the connection holds.
    server: Slot,
    in_flight: AtomicUsize,
    /// Requests started on the connection.
    requests: AtomicU64,
    /// [`clock::now`] when the last request started or ended.
    last_request: AtomicU64,
    signals: Signals,
    /// Its responses being written.
    writes: Arc<Writes>,
}

impl Connection {
    /// A connection from `peer`; `policy` names the TLSOption its handshake was served with,
    /// `certificates` are those the client presented in it.
    fn new(
        slot: Slot,
        peer: SocketAddr,
        local_port: u16,
        tls: bool,
        (policy, certificates): (Option<Box<str>>, Box<[CertificateDer<'static>]>),
    ) -> Arc<Self> {
        let server = &*slot;
        Arc::new(Self {
            client: forwarded::Client::new(
                peer,
                local_port,
                tls,
                &server.trusted_ips,
                server.trust_all,
            )
            .with_handshake(policy, certificates),
            server: slot,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_request: AtomicU64::new(clock::now()),
            signals: {
                // The first request head's time starts with the connection.
                let signals = Signals::default();
                signals.head_started();
                signals
            },
            writes: Arc::default(),
        })
    }

    /// How long since the last request started or ended.
    fn idle_for(&self) -> Duration {
        Duration::from_nanos(clock::now().saturating_sub(self.last_request.load(Ordering::Relaxed)))
    }

    /// Whether a timeout has passed: the write timeout while the client is not taking a
    /// response (or, `closing`, what is left to flush), the head's while one arrives, else the
    /// idle one.
    fn due(&self, closing: bool) -> Due {
        let server = &self.server;
        // Closing, what is left to flush counts as waiting on the client, unless a request is
        // still waiting for its response head (a drain's grace bounds that one).
        let draining = closing && self.in_flight.load(Ordering::Relaxed) == 0;
        if self.writes.stalled(server.write_timeout, draining) {
            return Due::Write;
        }
        match self.signals.head_for() {
            Some(head) if head >= server.header_timeout => Due::Head,
            None if !self.busy() && self.idle_for() >= server.idle_timeout => Due::Idle,
            _ => Due::Not,
        }
    }

    /// Whether a request is in flight or a response is being written: not idle. Looked at by
    /// the timer, which moves the idle time on while it is, since a body ending takes no clock
    /// reading of its own.
    fn busy(&self) -> bool {
        let busy = self.in_flight.load(Ordering::Relaxed) > 0 || self.writes.any();
        if busy {
            self.last_request.store(clock::now(), Ordering::Relaxed);
        }
        busy
    }

    /// When the timer should next look: at the earlier deadline, and no later than one header
    /// timeout from now, so that a head starting before then is still caught on time. While
    /// a response is written or the connection closes, four times per write timeout, as
    /// [`Writes::stalled`] sees a stall only from its first look at it.
    fn next_check(&self, closing: bool) -> Duration {
        let server = &self.server;
        let write = (!server.write_timeout.is_zero()).then(|| server.write_timeout / 4);
        if closing {
            return write.unwrap_or(server.idle_timeout);
        }
        let idle = server.idle_timeout.saturating_sub(self.idle_for());
        let head = self.signals.head_for().map_or(server.header_timeout, |h| {
            server.header_timeout.saturating_sub(h)
        });
        let next = idle.min(head);
        match write {
            Some(write) if self.writes.any() => next.min(write),
            _ => next,
        }
    }
}

/// What a connection's timer finds when it fires.
#[derive(PartialEq)]
enum Due {
    Not,
    /// A request head took longer than `requestHeaderTimeout`.
    Head,
    /// No request for `idleTimeout`.
    Idle,
    /// The client took nothing of a response for `writeTimeout`.
    Write,
}

/// Marks a request in flight for as long as it lives, even if the client goes away mid-request.
struct Active<'a>(&'a Connection);

impl<'a> Active<'a> {
    fn new(conn: &'a Connection, started: Instant) -> Self {
        conn.signals.not_idle();
        // An HTTP/2 head is over when its frames say so: another stream's may be arriving.
        if !conn.signals.is_h2() {
            conn.signals.head_ended();
        }
        conn.requests.fetch_add(1, Ordering::Relaxed);
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        conn.last_request
            .store(clock::at(started), Ordering::Relaxed);
        Self(conn)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.last_request.store(clock::now(), Ordering::Relaxed);
    }
}
