//! Parking an idle HTTP/1.1 connection: it keeps only its socket, and hyper's connection state
//! with its two 8 KiB buffers is built again when the next request arrives (nginx frees its
//! buffers the same way). A connection parks as soon as it is idle, unless it is in use, and
//! then once it has had no request for [`PARK_AFTER`]. Here is the socket as hyper sees it, the
//! signal that hyper is idle, and the wait for the next request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hyper::rt::{Sleep, Timer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use super::frames::Frames;
use crate::clock;
use crate::tcp::Tcp;

/// How long a connection in use (its last request came less than this after it parked) goes
/// without a request before it parks again. Not at once: rebuilding hyper's state costs about
/// 1 µs per request (2 over TLS), some 7 % of a small request's CPU, which a busy connection
/// would pay on every request. A connection that sends a request now and then parks right
/// after each, so a crowd of idle connections never holds buffers: the allocator keeps memory
/// once it has been used, and a crowd that held buffers for a while would keep its peak.
pub(super) const PARK_AFTER: Duration = Duration::from_secs(1);

/// HTTP/2's connection preface, which a client speaking it with prior knowledge opens with.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client stream that can wait for its next request without holding a read buffer.
pub(super) trait Park: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {
    /// Ready when the client has sent something, or closed.
    fn poll_arrival(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Park for Tcp {
    fn poll_arrival(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_ref().poll_read_ready(cx)
    }
}

impl Park for TlsStream<Tcp> {
    fn poll_arrival(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, tls) = self.get_ref();
        // Decrypted bytes already waiting would never make the socket readable again.
        if !tls.wants_read() {
            return Poll::Ready(Ok(()));
        }
        tcp.get_ref().poll_read_ready(cx)
    }
}

/// What hyper's side of a connection tells the connection's driver, shared by the socket,
/// hyper's timer and the requests.
#[derive(Clone, Default)]
pub(super) struct Signals(Arc<Shared>);

#[derive(Default)]
struct Shared {
    /// Set while hyper waits for a request head with everything before it written: the one
    /// moment its connection can be taken apart without losing a byte.
    idle: AtomicBool,
    /// [`clock::now`] when the current request head began to arrive; 0 when none is.
    head_since: AtomicU64,
    /// Set on an HTTP/2 connection, whose heads are followed frame by frame ([`Frames`]).
    h2: AtomicBool,
}

impl Signals {
    pub(super) fn is_idle(&self) -> bool {
        self.0.idle.load(Ordering::Relaxed)
    }

    /// A request head arrived, or a write is pending: not idle.
    pub(super) fn not_idle(&self) {
        self.0.idle.store(false, Ordering::Relaxed);
    }

    /// A request head begins to arrive now, unless one already is.
    pub(super) fn head_started(&self) {
        let _ = self.0.head_since.compare_exchange(
            0,
            clock::now(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The head arrived, or the connection parked before one began.
    pub(super) fn head_ended(&self) {
        self.0.head_since.store(0, Ordering::Relaxed);
    }

    /// Marks the connection HTTP/2.
    pub(super) fn set_h2(&self) {
        self.0.h2.store(true, Ordering::Relaxed);
    }

    pub(super) fn is_h2(&self) -> bool {
        self.0.h2.load(Ordering::Relaxed)
    }

    /// How long a request head has been arriving, if one is.
    pub(super) fn head_for(&self) -> Option<Duration> {
        let since = self.0.head_since.load(Ordering::Relaxed);
        (since != 0).then(|| Duration::from_nanos(clock::now().saturating_sub(since)))
    }
}

/// hyper's timer, per connection, used only as a signal: hyper starts its header-read timer
/// exactly when it begins waiting for a request head, which after a request is when the
/// connection has gone idle. The connection's own timer enforces the header timeout, from the
/// head's first byte (see [`Socket`]'s reads), so hyper's never ends and costs neither an
/// allocation nor a timer registration per request.
pub(super) struct HeadTimer(pub Signals);

impl Timer for HeadTimer {
    fn sleep(&self, _: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(Never)
    }

    fn sleep_until(&self, _: Instant) -> Pin<Box<dyn Sleep>> {
        self.waiting();
        Box::pin(Never)
    }

    fn reset(&self, _: &mut Pin<Box<dyn Sleep>>, _: Instant) {
        self.waiting();
    }

    /// Not the time: hyper adds the head timeout to it for a deadline this timer ignores, and
    /// a clock reading for that would cost every request.
    fn now(&self) -> Instant {
        static SOME_TIME: LazyLock<Instant> = LazyLock::new(Instant::now);
        *SOME_TIME
    }
}

impl HeadTimer {
    fn waiting(&self) {
        self.0.0.idle.store(true, Ordering::Relaxed);
    }
}

/// A sleep that never ends.
struct Never;

impl Future for Never {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Sleep for Never {}

/// The client stream with the bytes already read from it but not yet given to hyper: the
/// protocol sniff's, or the start of a request head that arrived as the connection was parked.
pub(super) struct Socket<I> {
    io: I,
    unread: Bytes,
    signals: Signals,
    /// HTTP/2's frames, followed for the head timeout. Boxed: a parked HTTP/1.1 connection
    /// pays a pointer for it.
    frames: Option<Box<Frames>>,
}

impl<I: Park> Socket<I> {
    pub(super) fn new(io: I, signals: Signals) -> Self {
        Self {
            io,
            unread: Bytes::new(),
            signals,
            frames: None,
        }
    }

    /// Serving HTTP/2 from now on: its request heads are timed by its frames.
    pub(super) fn follow_frames(&mut self) {
        self.signals.set_h2();
        self.signals.head_ended();
        self.frames = Some(Box::new(Frames::new()));
    }

    /// Puts back what hyper had read past its last request. Copied: a slice of hyper's read
    /// buffer, even an empty one, would keep all 8 KiB of it.
    pub(super) fn unread(&mut self, bytes: &[u8]) {
        self.unread = Bytes::copy_from_slice(bytes);
    }

    /// Ready when there is something for hyper to read.
    pub(super) fn poll_arrival(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.unread.is_empty() {
            self.io.poll_arrival(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    /// Whether the client opens with HTTP/2's preface. What was read is kept for hyper.
    pub(super) async fn sniff_h2(&mut self) -> io::Result<bool> {
        let mut read = BytesMut::with_capacity(1024);
        let h2 = loop {
            if self.io.read_buf(&mut read).await? == 0 {
                break false;
            }
            let n = read.len().min(PREFACE.len());
            if read[..n] != PREFACE[..n] {
                break false;
            }
            if n == PREFACE.len() {
                break true;
            }
        };
        self.unread = read.freeze();
        Ok(h2)
    }
}

impl<I: Park> AsyncRead for Socket<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let filled = buf.filled().len();
        if this.unread.is_empty() {
            let poll = Pin::new(&mut this.io).poll_read(cx, buf);
            // Bytes while hyper waits for a head are that head's first: its time starts.
            if buf.filled().len() > filled && this.signals.is_idle() {
                this.signals.head_started();
            }
            if let Some(frames) = &mut this.frames {
                frames.read(&buf.filled()[filled..], &this.signals);
            }
            return poll;
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread[..n]);
        this.unread.advance(n);
        if let Some(frames) = &mut this.frames {
            frames.read(&buf.filled()[filled..], &this.signals);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: Park> Socket<I> {
    /// A write that has to wait leaves bytes in hyper's buffer: the connection is not idle.
    fn pending<T>(&self, poll: Poll<T>) -> Poll<T> {
        if poll.is_pending() {
            self.signals.not_idle();
        }
        poll
    }
}

impl<I: Park> AsyncWrite for Socket<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.pending(poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.pending(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.pending(poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
