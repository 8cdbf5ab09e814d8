//! The client's request body on its way upstream: its bytes counted, its pace held to the entry
//! point's deadline, its failures marked as the client's (a 400 or 408, never the backend's
//! 502), and its progress shared with the wait for the response head, which starts when the
//! body has gone. A gRPC-Web `-text` body is decoded from base64 on the way.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::LengthLimitError;
use tokio::time::{Instant, Sleep};

use crate::clock;
use crate::error::ProxyError;

/// How fast a client must send its request body, from the entry point's settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    /// The longest the body may pause, and the grace before `min_rate` applies; zero is none.
    pub read_timeout: Duration,
    /// Bytes per second the body must average once the grace is over; zero is no minimum.
    pub min_rate: u64,
}

/// Why the client's request body did not arrive.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBodyError {
    #[error("the client's request body is malformed or broke off: {0}")]
    Broken(#[source] hyper::Error),
    #[error("the client sent its request body too slowly")]
    TooSlow,
}

/// What the rest of the request reads of its body's way upstream.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    bytes: AtomicU64,
    /// [`clock::now`] when the upstream last took a frame of the body, or its end.
    moved: AtomicU64,
    /// Set while fjord waits for the client to send more, rather than for the upstream to
    /// take what it has.
    waiting: AtomicBool,
    /// Set when the upstream has taken the body's end.
    ended: AtomicBool,
}

impl Progress {
    /// The body bytes sent so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether the upstream has the whole body.
    pub(crate) fn all_taken(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// How long the upstream has had the whole of what the client sent, or `None` while
    /// fjord waits for the client (whose own deadline then applies).
    pub(crate) fn upstream_has_had_it_for(&self) -> Option<Duration> {
        if self.waiting.load(Ordering::Relaxed) {
            return None;
        }
        let moved = self.moved.load(Ordering::Relaxed);
        Some(Duration::from_nanos(clock::now().saturating_sub(moved)))
    }
}

/// A request body on its way upstream (none for a request without one, which then costs no
/// allocation).
#[derive(Debug)]
pub(crate) struct Received<B> {
    inner: B,
    upload: Option<Box<Upload>>,
}

#[derive(Debug)]
struct Upload {
    progress: Arc<Progress>,
    pace: Pace,
    started: Instant,
    /// When the last bytes came from the client.
    last: Instant,
    /// Made the first time the body has to wait for the client.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> Received<B> {
    /// `progress` is `None` for a request without a body.
    pub(crate) fn new(inner: B, progress: Option<Arc<Progress>>, pace: Pace) -> Self {
        let upload = progress.map(|progress| {
            progress.moved.store(clock::now(), Ordering::Relaxed);
            let now = Instant::now();
            Box::new(Upload {
                progress,
                pace,
                started: now,
                last: now,
                timer: None,
            })
        });
        Self { inner, upload }
    }
}

impl Upload {
    /// When the client must have sent more: `read_timeout` after its last bytes, and early
    /// enough to average `min_rate` after a grace of `read_timeout`.
    fn deadline(&self) -> Option<Instant> {
        let pace = self.pace;
        if pace.read_timeout.is_zero() {
            return None;
        }
        let stall = self.last + pace.read_timeout;
        if pace.min_rate == 0 {
            return Some(stall);
        }
        let earned = Duration::from_secs_f64(self.progress.bytes() as f64 / pace.min_rate as f64);
        Some(stall.min(self.started + pace.read_timeout + earned))
    }

    /// The client has nothing more yet: ready with an error once its deadline has passed.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<ClientBodyError> {
        self.progress.waiting.store(true, Ordering::Relaxed);
        let Some(deadline) = self.deadline() else {
            return Poll::Pending;
        };
        let timer = match &mut self.timer {
            Some(timer) => {
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(ClientBodyError::TooSlow)
    }

    /// The upstream took `bytes` more of the body, or (`0`) its end.
    fn moved(&mut self, bytes: u64) {
        let progress = &self.progress;
        progress.waiting.store(false, Ordering::Relaxed);
        progress.moved.store(clock::now(), Ordering::Relaxed);
        if bytes > 0 {
            progress.bytes.fetch_add(bytes, Ordering::Relaxed);
            self.last = Instant::now();
        }
    }
}

impl<B: Body<Data = Bytes, Error = hyper::Error> + Unpin> Body for Received<B> {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let Some(upload) = &mut this.upload else {
            return polled.map_err(ClientBodyError::Broken);
        };
        match polled {
            Poll::Pending => upload.poll_wait(cx).map(|e| Some(Err(e))),
            Poll::Ready(Some(Ok(frame))) => {
                upload.moved(frame.data_ref().map_or(0, |d| d.remaining() as u64));
                // hyper asks no further once the body says it has ended.
                if this.inner.is_end_stream() {
                    upload.progress.ended.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                upload.moved(0);
                upload.progress.ended.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(ClientBodyError::Broken(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Marks a request whose body is base64 (gRPC-Web's `-text`): it is decoded on its way to the
/// backend ([`Base64Decoded`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Base64Body;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A `-text` request body decoded from base64 as it streams: whole groups of four characters
/// at a time, the rest kept for the next chunk.
pub(crate) struct Base64Decoded<B> {
    inner: B,
    pending: BytesMut,
}

impl<B> Base64Decoded<B> {
    /// `inner`, to be decoded.
    pub(crate) fn new(inner: B) -> Self {
        Self {
            inner,
            pending: BytesMut::new(),
        }
    }

    /// The body as it came, for a request that never left.
    pub(crate) fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for Base64Decoded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    this.pending
                        .extend(data.iter().filter(|b| !b.is_ascii_whitespace()));
                    let whole = this.pending.len() / 4 * 4;
                    if whole == 0 {
                        continue;
                    }
                    let chunk = this.pending.split_to(whole);
                    return Poll::Ready(Some(decode(&chunk).map(Frame::data)));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None if this.pending.is_empty() => return Poll::Ready(None),
                None => {
                    let rest = std::mem::take(&mut this.pending);
                    return Poll::Ready(Some(decode(&rest).map(Frame::data)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }
}

/// Groups of four base64 characters; padding may end any of them, as clients that encode
/// each message apart send it.
fn decode(chars: &[u8]) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>> {
    let mut out = Vec::with_capacity(chars.len() / 4 * 3);
    for group in chars.chunks(4) {
        B64.decode_vec(group, &mut out)
            .map_err(|e| format!("the gRPC-Web text body is not base64: {e}"))?;
    }
    Ok(Bytes::from(out))
}

/// The error a failure reading the client's request body (`e` or a cause of it) is answered
/// with: its size past `body_limit`, or the client too slow or breaking its framing. None
/// when the failure is not the client's.
pub(crate) fn client_body_error(
    e: &(dyn std::error::Error + 'static),
    body_limit: u64,
) -> Option<ProxyError> {
    if cause::<LengthLimitError>(e).is_some() {
        return Some(ProxyError::BodyTooLarge { limit: body_limit });
    }
    cause::<ClientBodyError>(e).map(|client| match client {
        ClientBodyError::TooSlow => ProxyError::ClientBodyTimeout,
        ClientBodyError::Broken(_) => ProxyError::MalformedBody,
    })
}

/// The first error of type `E` in `e`'s chain of causes.
fn cause<'a, E: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod base64_tests {
    use super::*;

    #[test]
    fn text_groups_decode_with_padding_anywhere() {
        assert_eq!(&decode(b"AAAAAAJoaQ==").unwrap()[..], b"\0\0\0\0\x02hi");
        assert_eq!(&decode(b"aGk=aGk=").unwrap()[..], b"hihi");
        assert!(decode(b"a$==").is_err());
    }
}
