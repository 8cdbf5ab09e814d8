//! The response body that counts the bytes it carries, so the byte counters report what was
//! streamed, not what a `Content-Length` declared (a chunked or compressed body declares
//! nothing), and sends the request's access log line when it is done.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};

use crate::access_log::{AccessLog, Record};
use crate::metrics::Handles;
use crate::upload::Progress;

/// The length of a data frame just polled.
fn data_len<D: Buf, E>(polled: &Poll<Option<Result<Frame<D>, E>>>) -> Option<u64> {
    match polled {
        Poll::Ready(Some(Ok(frame))) => frame.data_ref().map(|d| d.remaining() as u64),
        _ => None,
    }
}

/// A response body on its way to the client. When it is done (or dropped: the client left), the
/// bytes both ways are added to each of the request's series, and its access log line is sent.
#[derive(Debug)]
pub(crate) struct Sent<B> {
    inner: B,
    sent: u64,
    received: Option<Arc<Progress>>,
    series: [Option<Arc<Handles>>; 3],
    log: Option<(AccessLog, Box<Record>)>,
}

impl<B> Sent<B> {
    pub(crate) fn new(
        inner: B,
        received: Option<Arc<Progress>>,
        series: [Option<Arc<Handles>>; 3],
        log: Option<(AccessLog, Box<Record>)>,
    ) -> Self {
        Self {
            inner,
            sent: 0,
            received,
            series,
            log,
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
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.sent += data_len(&polled).unwrap_or(0);
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
