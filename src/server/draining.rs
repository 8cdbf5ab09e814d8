//! The signal to drain: take no new requests, finish those in flight. Waiting on it costs a
//! connection one atomic load per wake-up. A `CancellationToken`'s future takes two locks each
//! time it is polled, shared by every connection of every worker, and a connection's task is
//! woken several times per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

#[derive(Clone, Debug, Default)]
pub(crate) struct Draining(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Set before the token is cancelled, so a wait that sees it unset has nothing to look at.
    begun: AtomicBool,
    token: CancellationToken,
}

impl Draining {
    pub(crate) fn begin(&self) {
        self.0.begun.store(true, Ordering::Release);
        self.0.token.cancel();
    }

    /// The token itself, for waits polled rarely (accept loops, the admin port).
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.0.token
    }

    /// A wait for draining to begin, to be polled by one task only: the waker it is first
    /// polled with is the one woken.
    pub(crate) fn wait(&self) -> Wait<'_> {
        Wait {
            inner: self.0.token.cancelled(),
            begun: &self.0.begun,
            registered: false,
        }
    }
}

pin_project! {
    pub struct Wait<'a> {
        #[pin]
        inner: WaitForCancellationFuture<'a>,
        begun: &'a AtomicBool,
        registered: bool,
    }
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        // Once the token's future holds this task's waker, the task is woken when draining
        // begins, after `begun` is set: until `begun` is, there is no need to poll it (and lock).
        if *this.registered && !this.begun.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        *this.registered = true;
        this.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    use super::*;

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wait_is_woken_when_draining_begins_and_then_ends() {
        let draining = Draining::default();
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut wait = std::pin::pin!(draining.wait());
        // The first poll registers the waker; later ones, before draining, look at nothing.
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        draining.begin();
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "woken when draining began"
        );
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        // A wait made after draining began ends at once.
        assert!(std::pin::pin!(draining.wait()).poll(&mut cx).is_ready());
    }
}
