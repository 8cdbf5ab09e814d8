//! The upstream client: HTTP/1.1 to endpoints over keep-alive connections pooled per worker
//! and endpoint address (HTTP/2, for gRPC backends, over one multiplexed connection per
//! endpoint), so the pool outlives every snapshot and a connection is used only by
//! the worker whose runtime drives it. A connection goes back to its pool once its
//! response has been read to the end, if it is ready for another request then; the most
//! recently used one is taken first.
//!
//! hyper's own `client::conn` drives each connection; the pool is ours rather than hyper-util's
//! legacy client because that one hashes a scheme and authority key per request, wants an
//! absolute URI it then rewrites, and spawns a task per response to find out when the
//! connection is free again. Here the response body itself hands the connection back.
//!
//! Each connection carries the timer that bounds its responses' heads. Moving a registered
//! timer's deadline later is one atomic write, where a timer per request would be registered
//! with the runtime's timer wheel and removed from it again, each under its lock.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::hash::{Hash, Hasher};
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::{BodyExt as _, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::balance::{InFlight, Tls};
use crate::config::ServersTransport;
use crate::error::ProxyError;
use crate::model::Timeouts;
use crate::tcp::Tcp;
use crate::upload::{Base64Body, Base64Decoded, Progress, Received, client_body_error};
use crate::workers;

/// A request body on its way upstream: the client's, under the entry point's size limit, or
/// none (a retry of a bodyless request).
/// A request body on its way upstream: the client's as it comes (counted, paced, limited), or
/// one held whole (none, for a copy of a head).
pub(crate) type RequestBody = Either<Limited<Received<Incoming>>, Full<Bytes>>;

/// A request on its way upstream: what the wait for its response head needs besides.
pub(crate) struct Outgoing<'a> {
    pub endpoint: &'a Authority,
    /// Its connections' key in the pool ([`crate::balance::Endpoint::pool_key`]).
    pub key: &'a Authority,
    /// TLS to it, for an HTTPS backend.
    pub tls: Option<&'a Tls>,
    /// When the request arrived: the response head is due a response header timeout later,
    /// for a request without a body.
    pub started: std::time::Instant,
    /// How its body is going: the head is due a response header timeout after the upstream
    /// has the whole of it.
    pub progress: Option<&'a Progress>,
    /// The limit the body was wrapped with, for the 413.
    pub body_limit: u64,
    /// The route's own limits, where it has them.
    pub timeouts: &'a Timeouts,
    /// Whether the endpoint is spoken to in HTTP/2.
    pub http2: bool,
}

/// A request body on its way to an HTTP/2 endpoint. A type of its own, though it only passes
/// [`RequestBody`] through, so that hyper's request channel is built twice: shared by the
/// HTTP/1.1 and HTTP/2 sends, LLVM stopped inlining its sends and receives into the HTTP/1.1
/// path most requests take, which then copied each request a few more times.
/// A gRPC-Web `-text` call's body is decoded from base64 on the way.
enum Multiplexed {
    Plain(RequestBody),
    Base64(Base64Decoded<RequestBody>),
}

impl Multiplexed {
    /// `request`'s body, decoded if the middleware marked it base64.
    fn of(request: Request<RequestBody>) -> Request<Self> {
        let base64 = request.extensions().get::<Base64Body>().is_some();
        request.map(|body| match base64 {
            false => Multiplexed::Plain(body),
            true => Multiplexed::Base64(Base64Decoded::new(body)),
        })
    }

    /// The body as it came, for a request that never left.
    fn into_inner(self) -> RequestBody {
        match self {
            Multiplexed::Plain(body) => body,
            Multiplexed::Base64(body) => body.into_inner(),
        }
    }
}

impl http_body::Body for Multiplexed {
    type Data = Bytes;
    type Error = <RequestBody as http_body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Multiplexed::Plain(body) => Pin::new(body).poll_frame(cx),
            Multiplexed::Base64(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Multiplexed::Plain(body) => body.is_end_stream(),
            Multiplexed::Base64(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Multiplexed::Plain(body) => body.size_hint(),
            Multiplexed::Base64(_) => SizeHint::default(),
        }
    }
}

/// An exchange that failed, with its request if that never left: when no connection to the
/// endpoint could be made, the request can go to another endpoint as it is, body and all,
/// with no copy made in advance.
#[derive(Debug)]
pub(crate) struct Failed {
    pub error: ProxyError,
    /// Boxed: taken only on this rare path, it would otherwise widen every exchange's result.
    pub unsent: Option<Box<Request<RequestBody>>>,
}

impl From<ProxyError> for Failed {
    fn from(error: ProxyError) -> Self {
        Self {
            error,
            unsent: None,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    pool: Arc<Pool>,
    response_header_timeout: Duration,
}

/// Endpoint → its idle connections, oldest first. Keys are endpoint addresses from the
/// cluster's configuration, not from clients, so a fast hash without flood resistance will do.
type IdleMap = HashMap<Key, VecDeque<Idle>, foldhash::fast::RandomState>;

/// An endpoint's address as the pool knows it: compared and hashed as the string it is, a word
/// at a time. `Authority` hashes itself a lowercased byte at a time, which cost some 400
/// instructions per lookup, and a request looks up its endpoint twice.
#[derive(Debug)]
struct Key(Authority);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

#[derive(Debug)]
struct Pool {
    /// Idle connections per worker ([`workers::current`]). Only that worker takes the lock,
    /// except the reaper now and then, so it is never contended.
    idle: Box<[Mutex<IdleMap>]>,
    dial_timeout: Duration,
    idle_timeout: Duration,
    /// Idle connections kept per endpoint by each worker.
    max_idle: usize,
    /// One HTTP/2 connection per endpoint, shared by every worker: it carries requests at once.
    multiplexed: Mutex<HashMap<Key, http2::SendRequest<Multiplexed>, foldhash::fast::RandomState>>,
    reaper: AtomicBool,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// One upstream connection: the handle requests are sent through, and the timer that bounds
/// the wait for each response's head.
#[derive(Debug)]
struct Conn {
    sender: http1::SendRequest<RequestBody>,
    timer: Pin<Box<Sleep>>,
}

/// Why an exchange with an endpoint failed, before it is tied to the endpoint's name.
enum Failure {
    Connect(io::Error),
    Http(hyper::Error),
    Timeout,
}

impl Upstream {
    /// A client for `workers` worker threads.
    pub(crate) fn new(transport: &ServersTransport, workers: usize) -> Self {
        let timeouts = &transport.forwarding_timeouts;
        let workers = workers.max(1);
        Self {
            pool: Arc::new(Pool {
                idle: (0..workers).map(|_| Mutex::default()).collect(),
                dial_timeout: timeouts.dial_timeout,
                idle_timeout: timeouts.idle_conn_timeout,
                // The limit is the process's, shared evenly: an endpoint should not see more
                // idle connections from a node with more cores.
                max_idle: transport.max_idle_conns_per_host.div_ceil(workers),
                multiplexed: Mutex::default(),
                reaper: AtomicBool::new(false),
            }),
            response_header_timeout: timeouts.response_header_timeout,
        }
    }

    /// Sends `request` (origin-form) to `to.endpoint`, over a pooled or new connection, and
    /// waits for the response head, for up to the response header timeout from when the
    /// request has gone (see [`Outgoing`]). A request that could not be sent because no
    /// connection could be made comes back in the error. `resent` is called when the request
    /// goes out a second time, after its pooled connection closed under it.
    ///
    /// One future down to hyper's: each level of nested future is copied whole into its
    /// parent when first awaited.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would hold the 280-byte request twice"
    )]
    pub(crate) fn send<'a>(
        &'a self,
        mut request: Request<RequestBody>,
        to: Outgoing<'a>,
        resent: &'a (dyn Fn() + Sync),
    ) -> impl Future<Output = Result<Response<Body>, Failed>> + 'a {
        // A block, not an `async fn`: an `async fn` keeps its arguments twice, as they came
        // and as moved into its body, and the request alone is 280 bytes.
        async move {
            let endpoint = to.endpoint;
            // HTTP/1.1 needs a Host; a client that sent none (HTTP/1.0) gets the endpoint's.
            if !request.headers().contains_key(header::HOST)
                && let Ok(host) = HeaderValue::from_str(endpoint.as_str())
            {
                request.headers_mut().insert(header::HOST, host);
            }
            if to.http2 {
                // Boxed: the HTTP/1.1 exchanges that are most requests need no room for it.
                return Box::pin(self.send_http2(request, to)).await;
            }
            let started = Instant::from_std(to.started);
            let head = to.timeouts.read.unwrap_or(self.response_header_timeout);
            let send = to.timeouts.send.unwrap_or(head);
            // The first look at the body's progress comes no later than either can be due.
            let deadline = started + head.min(send);
            let fail = |failure| Self::error(failure, endpoint, to.body_limit, head);
            let pool = &self.pool;
            loop {
                let (mut conn, idled) = match pool.checkout(to.key, started) {
                    Some((conn, idled)) => (conn, Some(idled)),
                    // Boxed: connecting is rare on pooled connections, and its state
                    // (hyper's handshake, a TLS one) would widen every request's future.
                    None => match Box::pin(pool.connect(endpoint, &to, deadline)).await {
                        Ok(conn) => (conn, None),
                        Err(failure) => {
                            return Err(Failed {
                                error: fail(failure),
                                unsent: Some(Box::new(request)),
                            });
                        }
                    },
                };
                // An endpoint may close a connection that idled up to its keep-alive timeout just
                // as a request goes out on it. A request safe to repeat then goes out again, as
                // nginx does; its head is copied for that only where this can happen, since a copy
                // per request would cost every request.
                let again = idled
                    .filter(|idled| *idled >= MAY_BE_CLOSED_AFTER)
                    .and_then(|_| replayable(&request));
                conn.timer.as_mut().reset(deadline);
                let mut sent = pin!(conn.sender.try_send_request(request));
                let timer = &mut conn.timer;
                let sent = poll_fn(|cx| match sent.as_mut().poll(cx) {
                    Poll::Ready(sent) => Poll::Ready(Some(sent)),
                    Poll::Pending => {
                        Self::poll_head_due(timer, to.progress, (head, send), cx).map(|()| None)
                    }
                });
                match sent.await {
                    None => return Err(fail(Failure::Timeout).into()),
                    Some(Ok(response)) => {
                        let reusable = response.status() != StatusCode::SWITCHING_PROTOCOLS;
                        let mut back = reusable.then(|| Back {
                            pool: Arc::clone(pool),
                            endpoint: to.key.clone(),
                            conn,
                        });
                        if response.body().is_end_stream()
                            && let Some(back) = back.take()
                        {
                            back.release();
                        }
                        return Ok(response.map(|inner| Body {
                            inner,
                            back,
                            counted: None,
                            ahead: None,
                        }));
                    }
                    // A pooled connection the endpoint closed while it idled: the request never
                    // left, so it goes out on another connection, whatever its method.
                    Some(Err(mut e)) if idled.is_some() => match (e.take_message(), again) {
                        (Some(unsent), _) => request = unsent,
                        // It left, and the endpoint closed the connection without an answer.
                        (None, Some(again)) if closed_unanswered(e.error()) => {
                            tracing::debug!(%endpoint, error = %e.error(), "pooled connection closed under a request; sending it again");
                            resent();
                            request = *again;
                        }
                        (None, _) => return Err(fail(Failure::Http(e.into_error())).into()),
                    },
                    Some(Err(e)) => return Err(fail(Failure::Http(e.into_error())).into()),
                }
            }
        }
    }

    /// [`Self::send`] to an endpoint spoken to in HTTP/2 (gRPC): over its one multiplexed
    /// connection, made when there is none, its response head bounded as an HTTP/1.1 one's.
    async fn send_http2(
        &self,
        mut request: Request<RequestBody>,
        to: Outgoing<'_>,
    ) -> Result<Response<Body>, Failed> {
        let endpoint = to.endpoint;
        as_http2(&mut request, endpoint, to.tls.is_some());
        let head = to.timeouts.read.unwrap_or(self.response_header_timeout);
        let send = to.timeouts.send.unwrap_or(head);
        let deadline = Instant::from_std(to.started) + head.min(send);
        let fail = |failure| Self::error(failure, endpoint, to.body_limit, head);
        let pool = &self.pool;
        let mut sender = match pool.multiplexed(to.key) {
            Some(sender) => sender,
            None => match pool.connect_http2(endpoint, &to, deadline).await {
                Ok(sender) => sender,
                Err(failure) => {
                    return Err(Failed {
                        error: fail(failure),
                        unsent: Some(Box::new(request)),
                    });
                }
            },
        };
        let mut timer = Box::pin(tokio::time::sleep_until(deadline));
        let mut sent = pin!(sender.try_send_request(Multiplexed::of(request)));
        let sent = poll_fn(|cx| match sent.as_mut().poll(cx) {
            Poll::Ready(sent) => Poll::Ready(Some(sent)),
            Poll::Pending => {
                Self::poll_head_due(&mut timer, to.progress, (head, send), cx).map(|()| None)
            }
        });
        match sent.await {
            None => Err(fail(Failure::Timeout).into()),
            Some(Ok(response)) => Ok(response.map(|inner| Body {
                inner,
                back: None,
                counted: None,
                ahead: None,
            })),
            Some(Err(mut e)) => Err(Failed {
                unsent: e
                    .take_message()
                    .map(|unsent| Box::new(unsent.map(Multiplexed::into_inner))),
                error: fail(Failure::Http(e.into_error())),
            }),
        }
    }

    /// Ready when the response head is overdue: `head` after the upstream had the whole
    /// request. While the client is still sending its body, the head is not due (the body's
    /// own deadline applies); a body the upstream stopped taking is overdue `send` after it
    /// last took some.
    fn poll_head_due(
        timer: &mut Pin<Box<Sleep>>,
        progress: Option<&Progress>,
        (head, send): (Duration, Duration),
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        loop {
            ready!(timer.as_mut().poll(cx));
            let Some(progress) = progress else {
                return Poll::Ready(());
            };
            let limit = if progress.all_taken() { head } else { send };
            let left = match progress.upstream_has_had_it_for() {
                None => limit,
                Some(had) => match limit.checked_sub(had) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Poll::Ready(()),
                },
            };
            timer.as_mut().reset(Instant::now() + left);
        }
    }

    /// The error a failed exchange with `endpoint`, its head due `head` after the request,
    /// is answered with.
    fn error(
        failure: Failure,
        endpoint: &Authority,
        body_limit: u64,
        head: Duration,
    ) -> ProxyError {
        match failure {
            Failure::Connect(source) => ProxyError::Connect {
                endpoint: endpoint.to_string(),
                source,
            },
            Failure::Http(ref e) if let Some(client) = client_body_error(e, body_limit) => client,
            Failure::Http(source) => ProxyError::Upstream {
                endpoint: endpoint.to_string(),
                source,
            },
            Failure::Timeout => ProxyError::Timeout {
                endpoint: endpoint.to_string(),
                timeout: head,
            },
        }
    }
}

impl Pool {
    /// This worker's idle connections.
    fn idle(&self) -> MutexGuard<'_, IdleMap> {
        self.idle[workers::current() % self.idle.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection to `endpoint` that is still open, and how long
    /// it had idled at `now`.
    fn checkout(&self, endpoint: &Authority, now: Instant) -> Option<(Conn, Duration)> {
        let mut idle = self.idle();
        let conns = idle.get_mut(endpoint.as_str())?;
        while let Some(Idle { conn, since }) = conns.pop_back() {
            let idled = now.saturating_duration_since(since);
            if idled >= self.idle_timeout {
                // The newest is too old, so all are.
                conns.clear();
                return None;
            }
            // Not ready is closed: the pool holds only connections that were ready when put.
            if conn.sender.is_ready() {
                return Some((conn, idled));
            }
        }
        None
    }

    /// A new connection to `endpoint` (over TLS when `tls` says), if made before `deadline`.
    async fn connect(
        &self,
        endpoint: &Authority,
        to: &Outgoing<'_>,
        deadline: Instant,
    ) -> Result<Conn, Failure> {
        let stream = self.dial(endpoint, to.timeouts, deadline).await?;
        let sender = match to.tls {
            None => handshake(Tcp::new(stream)).await?,
            // Boxed: a TLS handshake's state is large, and every request's future would
            // otherwise make room for it.
            Some(tls) => {
                let stream = Box::pin(tls_stream(tls, endpoint, stream, deadline, false)).await?;
                handshake(stream).await?
            }
        };
        Ok(Conn {
            sender,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
        })
    }

    /// A TCP connection to `endpoint`, made within the route's connect timeout (else the
    /// transport's) and before `deadline`.
    async fn dial(
        &self,
        endpoint: &Authority,
        timeouts: &Timeouts,
        deadline: Instant,
    ) -> Result<TcpStream, Failure> {
        let dial_timeout = timeouts.connect.unwrap_or(self.dial_timeout);
        let dial = tokio::time::timeout(dial_timeout, TcpStream::connect(endpoint.as_str()));
        let stream = tokio::time::timeout_at(deadline, dial)
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(|_| {
                Failure::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection within {dial_timeout:?}"),
                ))
            })?
            .map_err(Failure::Connect)?;
        // Small requests go out at once; a peer that vanished is found by keepalive probes.
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        Ok(stream)
    }

    /// The HTTP/2 connection to `to.key`, if one is open.
    fn multiplexed(&self, key: &Authority) -> Option<http2::SendRequest<Multiplexed>> {
        let mut conns = self
            .multiplexed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match conns.get(key.as_str()) {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                conns.remove(key.as_str());
                None
            }
            None => None,
        }
    }

    /// A new HTTP/2 connection to `endpoint`, kept for the requests after this one.
    async fn connect_http2(
        &self,
        endpoint: &Authority,
        to: &Outgoing<'_>,
        deadline: Instant,
    ) -> Result<http2::SendRequest<Multiplexed>, Failure> {
        let stream = self.dial(endpoint, to.timeouts, deadline).await?;
        let sender = match to.tls {
            None => handshake_http2(Tcp::new(stream)).await?,
            Some(tls) => {
                handshake_http2(tls_stream(tls, endpoint, stream, deadline, true).await?).await?
            }
        };
        self.multiplexed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(Key(to.key.clone()), sender.clone());
        Ok(sender)
    }

    fn put(self: Arc<Self>, endpoint: Authority, conn: Conn) {
        // A connection not ready for another request now may never be: one still sending a
        // request body the endpoint answered early waits on that client. It is dropped (and
        // closes once done) rather than pooled for a later request to wait on.
        if self.max_idle == 0 || !conn.sender.is_ready() {
            return;
        }
        {
            let mut idle = self.idle();
            let conns = idle.entry(Key(endpoint)).or_default();
            if conns.len() >= self.max_idle {
                conns.pop_front();
            }
            conns.push_back(Idle {
                conn,
                since: Instant::now(),
            });
        }
        // Loaded first: a swap on every release would write the shared line each time.
        if !self.reaper.load(Ordering::Relaxed) && !self.reaper.swap(true, Ordering::Relaxed) {
            tokio::spawn(reap(Arc::downgrade(&self)));
        }
    }
}

/// How long a pooled connection idles before an endpoint may close it under a request: below
/// every common keep-alive timeout (gunicorn's 2 s, Node's and uvicorn's 5 s), above the gaps
/// between requests of a busy connection.
const MAY_BE_CLOSED_AFTER: Duration = Duration::from_secs(1);

/// TLS on `stream` (offering only `h2` in ALPN with `http2`). A handshake that fails (a wrong
/// name, an unknown CA, no HTTP/2 where it was asked for) is a failed connect: the endpoint
/// backs off and the request may go to another.
async fn tls_stream(
    tls: &Tls,
    endpoint: &Authority,
    stream: TcpStream,
    deadline: Instant,
    http2: bool,
) -> Result<tokio_rustls::client::TlsStream<Tcp>, Failure> {
    let refused = |why: String| Failure::Connect(io::Error::other(why));
    let connector = tls.connector.as_ref().map_err(|e| refused(e.clone()))?;
    let name = tls
        .name_for(endpoint)
        .ok_or_else(|| refused(format!("{endpoint} has no name to check")))?;
    let shake = connector.connect(name, Tcp::new(stream));
    let stream = tokio::time::timeout_at(deadline, shake)
        .await
        .map_err(|_| Failure::Timeout)?
        .map_err(|e| refused(format!("TLS handshake: {e}")))?;
    if http2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(refused(format!(
            "{endpoint} did not agree to HTTP/2 in the TLS handshake (ALPN h2)"
        )));
    }
    Ok(stream)
}

/// An HTTP/1.1 connection over `io`, driven by a task of its own.
async fn handshake<I>(io: I) -> Result<http1::SendRequest<RequestBody>, Failure>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(Failure::Http)?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// An HTTP/2 connection over `io`, driven by a task of its own.
async fn handshake_http2<I>(io: I) -> Result<http2::SendRequest<Multiplexed>, Failure>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(io))
        .await
        .map_err(Failure::Http)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

/// `request` as HTTP/2 sends it: its `Host` becomes the URI's authority (`:authority`), with
/// the scheme, and a gRPC request says it takes trailers (its client's `TE` went with the
/// hop-by-hop headers).
fn as_http2(request: &mut Request<RequestBody>, endpoint: &Authority, tls: bool) {
    let authority = request
        .headers_mut()
        .remove(header::HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .unwrap_or_else(|| endpoint.clone());
    let mut parts = request.uri().clone().into_parts();
    parts.scheme = Some(if tls {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    *request.version_mut() = http::Version::HTTP_2;
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        request
            .headers_mut()
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Methods a client expects may be repeated (RFC 9110 §9.2.2).
pub(crate) fn idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// A copy of `request` to send again, if it may be: idempotent, without a body, not an upgrade.
fn replayable(request: &Request<RequestBody>) -> Option<Box<Request<RequestBody>>> {
    if !idempotent(request.method())
        || !request.body().is_end_stream()
        || request.headers().contains_key(header::UPGRADE)
    {
        return None;
    }
    // Boxed: held across the exchange, it would otherwise widen every exchange's future.
    Some(Box::new(head_copy(request)))
}

/// A copy of `request` to send again: its head, and its body when it is held whole
/// ([`hold_body`]); none otherwise.
pub(crate) fn copy(request: &Request<RequestBody>) -> Request<RequestBody> {
    let mut again = head_copy(request);
    if let Either::Right(held) = request.body() {
        *again.body_mut() = Either::Right(held.clone());
    }
    again
}

/// `request` with its body read whole from the client (limits and pace as it would be sent
/// with), so that it can be sent again; the errors are the ones sending it would meet.
pub(crate) async fn hold_body(
    request: Request<RequestBody>,
    body_limit: u64,
) -> Result<Request<RequestBody>, ProxyError> {
    let (parts, body) = request.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Err(client_body_error(&*e, body_limit).unwrap_or(ProxyError::MalformedBody));
        }
    };
    Ok(Request::from_parts(parts, Either::Right(Full::new(bytes))))
}

/// A request with `request`'s head and no body, to send again.
pub(crate) fn head_copy<B>(request: &Request<B>) -> Request<RequestBody> {
    let mut again = Request::new(Either::Right(Full::default()));
    *again.method_mut() = request.method().clone();
    *again.uri_mut() = request.uri().clone();
    *again.version_mut() = request.version();
    *again.headers_mut() = request.headers().clone();
    again
}

/// Whether the endpoint closed (or reset) the connection before its answer's head was complete.
fn closed_unanswered(e: &hyper::Error) -> bool {
    use std::error::Error as _;
    e.is_incomplete_message()
        || e.source()
            .and_then(|s| s.downcast_ref::<io::Error>())
            .is_some_and(|e| {
                matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                )
            })
}

/// Closes connections that idled past the idle timeout, until the pool is gone.
async fn reap(pool: Weak<Pool>) {
    let every = match pool.upgrade() {
        Some(p) => (p.idle_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(30)),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        for worker in &pool.idle {
            let mut idle = worker.lock().unwrap_or_else(PoisonError::into_inner);
            idle.retain(|_, conns| {
                conns.retain(|i| {
                    i.since.elapsed() < pool.idle_timeout && !i.conn.sender.is_closed()
                });
                !conns.is_empty()
            });
        }
    }
}

/// A response body from an endpoint. Its connection goes back to the pool when the body has
/// been read to the end; a body dropped early or failed takes its connection with it.
#[derive(Debug)]
pub(crate) struct Body {
    inner: Incoming,
    back: Option<Back>,
    /// The request, counted in flight to its endpoint until the body's end.
    counted: Option<InFlight>,
    /// Its first frame, read ahead ([`Body::peek`]) and sent before the rest. Boxed: a frame
    /// may be trailers, and every request's body would otherwise carry room for them.
    ahead: Option<Box<Result<Frame<Bytes>, hyper::Error>>>,
}

impl Body {
    /// Keeps `in_flight` counted until the body's end (not at all for an empty body).
    pub(crate) fn hold(&mut self, in_flight: InFlight) {
        if !self.inner.is_end_stream() {
            self.counted = Some(in_flight);
        }
    }

    /// Reads the first frame ahead, to be sent first still; its data, if it is data. Only the
    /// first frame: a stream is not held back waiting for more.
    pub(crate) async fn peek(&mut self) -> Option<&Bytes> {
        if self.ahead.is_none() {
            self.ahead = poll_fn(|cx| Pin::new(&mut *self).poll_frame(cx))
                .await
                .map(Box::new);
        }
        match self.ahead.as_deref() {
            Some(Ok(frame)) => frame.data_ref(),
            _ => None,
        }
    }

    /// The length of the data read ahead.
    fn ahead_len(&self) -> u64 {
        match self.ahead.as_deref() {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        }
    }
}

#[derive(Debug)]
struct Back {
    pool: Arc<Pool>,
    endpoint: Authority,
    conn: Conn,
}

impl Back {
    fn release(self) {
        self.pool.put(self.endpoint, self.conn);
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(ahead) = this.ahead.take() {
            return Poll::Ready(Some(*ahead));
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(_)) if !this.inner.is_end_stream() => {}
            Some(Err(_)) => {
                this.back = None;
                this.counted = None;
            }
            _ => {
                this.counted = None;
                if let Some(back) = this.back.take() {
                    back.release();
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let ahead = self.ahead_len();
        let inner = self.inner.size_hint();
        if ahead == 0 {
            return inner;
        }
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + ahead);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + ahead);
        }
        hint
    }
}
