//! Responses on their way to the client, watched for a client that stops taking them. hyper
//! asks a response body for more only when it can send more: over HTTP/1.1 once the socket has
//! taken what it had, over HTTP/2 once the client's flow-control window opens. A body hyper
//! has not asked for more, while it has more and is not waiting for its backend, is one the
//! client is not taking. Counting the asks costs no clock reading; the connection's timer
//! looks at the count now and then ([`Writes::stalled`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};

use super::Connection;
use crate::clock;

/// A connection's responses being written, shared by them and its timer.
#[derive(Default)]
pub(super) struct Writes {
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
    pub(super) fn any(&self) -> bool {
        self.open.load(Ordering::Relaxed) > 0
    }

    /// Whether the client has taken nothing for `timeout` while something waited on it: a
    /// body with more to send (`draining`: or, once the connection is closing, whatever
    /// hyper still has to flush). Looked at by the connection's timer only.
    pub(super) fn stalled(&self, timeout: Duration, draining: bool) -> bool {
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

/// A response body counted in its connection's [`Writes`] while it lives.
pub(crate) struct Writing<B> {
    inner: B,
    conn: Arc<Connection>,
    /// Whether it last returned `Pending`: waiting for its backend.
    on_backend: bool,
    ended: bool,
}

impl<B> Writing<B> {
    pub(super) fn new(inner: B, conn: Arc<Connection>) -> Self {
        conn.writes.open.fetch_add(1, Ordering::Relaxed);
        Self {
            inner,
            conn,
            on_backend: false,
            ended: false,
        }
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.conn.writes.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn set_on_backend(&mut self, on_backend: bool) {
        if self.on_backend != on_backend {
            self.on_backend = on_backend;
            let count = &self.conn.writes.on_backend;
            if on_backend {
                count.fetch_add(1, Ordering::Relaxed);
            } else {
                count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl<B: Body + Unpin> Body for Writing<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        this.conn.writes.asks.fetch_add(1, Ordering::Relaxed);
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Pending => this.set_on_backend(true),
            Poll::Ready(Some(Ok(_))) if !this.inner.is_end_stream() => this.set_on_backend(false),
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

impl<B> Drop for Writing<B> {
    fn drop(&mut self) {
        self.set_on_backend(false);
        self.end();
    }
}
