//! The response body on its way to the client: it counts the bytes it carries, so the byte
//! counters report what was streamed, not what a `Content-Length` declared (a chunked or
//! compressed body declares nothing), sends the request's access log line when it is done, and
//! tells its connection's [`Writes`] whether the client is taking it.
//!
//! hyper asks a response body for more only when it can send more: over HTTP/1.1 once the
//! socket has taken what it had, over HTTP/2 once the client's flow-control window opens. A body
//! hyper has not asked for more, while it has more and is not waiting for its backend, is one
//! the client is not taking. Counting the asks costs no clock reading; the connection's timer
//! looks at the count now and then ([`Writes::stalled`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};

use crate::access_log::{AccessLog, Record};
use crate::clock;
use crate::metrics::Handles;
use crate::upload::Progress;

/// A connection's responses being written, shared by them and its timer.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    /// Response bodies not yet written to their end.
    open: AtomicUsize,
    /// Of those, the ones waiting for their backend to send more.
    on_backend: AtomicUsize,
    /// Counts each time hyper asks a body for more.
    asks: AtomicU64,
    /// The timer's last look: the count of asks then, and ([`clock::now`]) since when it
    /// has not changed; 0 when nothing was waiting on the client.
    seen: AtomicU64,
    since: AtomicU64,
}

impl Writes {
    /// Whether a response body is being written.
    pub(crate) fn any(&self) -> bool {
        self.open.load(Ordering::Relaxed) > 0
    }

    /// Whether the client has taken nothing for `timeout` while something waited on it: a
    /// body with more to send (`draining`: or, once the connection is closing, whatever
    /// hyper still has to flush). Looked at by the connection's timer only.
    pub(crate) fn stalled(&self, timeout: Duration, draining: bool) -> bool {
        let on_client = (draining || self.any()) && self.on_backend.load(Ordering::Relaxed) == 0;
        if timeout.is_zero() || !on_client {
            self.since.store(0, Ordering::Relaxed);
            return false;
        }
        let asks = self.asks.load(Ordering::Relaxed);
        let now = clock::now();
        let since = self.since.load(Ordering::Relaxed);
        if since == 0 || asks != self.seen.load(Ordering::Relaxed) {
            self.seen.store(asks, Ordering::Relaxed);
            self.since.store(now, Ordering::Relaxed);
            return false;
        }
        Duration::from_nanos(now.saturating_sub(since)) >= timeout
    }
}

/// A response body on its way to the client. When it is done (or dropped: the client left), the
/// bytes both ways are added to each of the request's series, and its access log line is sent.
/// While it lives, it is counted in its connection's [`Writes`].
#[derive(Debug)]
pub(crate) struct Sent<B> {
    inner: B,
    sent: u64,
    received: Option<Arc<Progress>>,
    series: [Option<Arc<Handles>>; 3],
    log: Option<(AccessLog, Box<Record>)>,
    writes: Arc<Writes>,
    /// Whether it last returned `Pending`: waiting for its backend.
    on_backend: bool,
    ended: bool,
}

impl<B> Sent<B> {
    pub(crate) fn new(
        inner: B,
        received: Option<Arc<Progress>>,
        series: [Option<Arc<Handles>>; 3],
        log: Option<(AccessLog, Box<Record>)>,
        writes: Arc<Writes>,
    ) -> Self {
        writes.open.fetch_add(1, Ordering::Relaxed);
        Self {
            inner,
            sent: 0,
            received,
            series,
            log,
            writes,
            on_backend: false,
            ended: false,
        }
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.writes.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn set_on_backend(&mut self, on_backend: bool) {
        if self.on_backend != on_backend {
            self.on_backend = on_backend;
            let count = &self.writes.on_backend;
            if on_backend {
                count.fetch_add(1, Ordering::Relaxed);
            } else {
                count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl<B: Body + Unpin> Body for Sent<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        this.writes.asks.fetch_add(1, Ordering::Relaxed);
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Pending => this.set_on_backend(true),
            Poll::Ready(Some(Ok(frame))) => {
                this.set_on_backend(false);
                this.sent += frame.data_ref().map_or(0, |d| d.remaining() as u64);
            }
            // Its end, or an error: hyper asks no more. A body hyper knows to be done without
            // asking again ends when dropped.
            Poll::Ready(_) => {
                this.set_on_backend(false);
                this.end();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Sent<B> {
    fn drop(&mut self) {
        self.set_on_backend(false);
        self.end();
        let received = self.received.as_ref().map_or(0, |r| r.bytes());
        for h in self.series.iter().flatten() {
            h.bytes(received, self.sent);
        }
        if let Some((log, mut record)) = self.log.take() {
            record.bytes = self.sent;
            record.ended = jiff::Timestamp::now();
            log.log(record);
        }
    }
}
