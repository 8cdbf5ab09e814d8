//! The threads that serve traffic: one single-threaded tokio runtime per core, each accepting
//! from every entry point and serving what it accepted to the end, with its own upstream pool.
//!
//! A connection, its requests, their upstream connections and HTTP/2 streams all stay on one
//! thread: no work-stealing queues, no waker crossing threads, no lock contended. tokio's
//! multi-threaded runtime cost 9 % more CPU per small HTTP/1.1 request and 26 % more per
//! HTTP/2 request in the load bench (`BENCHMARKS.md`). The control plane (watches, ACME, the
//! admin port) stays on the runtime that called [`Workers::start`].
//!
//! Every worker accepts from the same listening socket rather than from its own
//! `SO_REUSEPORT` one: a port is bound once, so a second fjord on it still fails to start, and
//! a new connection goes to whichever worker is free first instead of to a hash's choice. The
//! price is that every idle worker wakes for a new connection and all but one find nothing.

use std::cell::Cell;
use std::future::Future;
use std::num::NonZeroUsize;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio_util::sync::CancellationToken;

/// How long a stopping worker waits for its blocking tasks (a DNS lookup) before leaving them.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The worker this thread is, from 0; 0 on any other thread.
pub(crate) fn current() -> usize {
    INDEX.with(Cell::get)
}

/// How many workers to run: `TOKIO_WORKER_THREADS` when set (the variable tokio's own runtime
/// reads), else one per CPU this process may use, cgroup quota included.
pub(crate) fn count() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<NonZeroUsize>().ok())
        .or_else(|| thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get)
}

/// The running workers. Dropping them asks them to stop; [`Workers::stop`] also waits.
pub(crate) struct Workers {
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Workers {
    /// Starts `count` worker threads, each running its own runtime until stopped.
    pub(crate) fn start(count: usize) -> std::io::Result<Self> {
        let mut workers = Self {
            handles: Vec::with_capacity(count),
            threads: Vec::with_capacity(count),
            stop: CancellationToken::new(),
        };
        for index in 0..count {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            workers.handles.push(runtime.handle().clone());
            let stop = workers.stop.clone();
            let thread = thread::Builder::new()
                .name(format!("fjord-worker-{index}"))
                .spawn(move || {
                    INDEX.with(|i| i.set(index));
                    runtime.block_on(stop.cancelled());
                    runtime.shutdown_timeout(STOP_TIMEOUT);
                })?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Runs one of `tasks` on each worker, in order.
    pub(crate) fn spawn_each<F>(&self, tasks: impl IntoIterator<Item = F>)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        for (handle, task) in self.handles.iter().zip(tasks) {
            handle.spawn(task);
        }
    }

    /// Stops every worker, closing the connections still open, and waits for their threads.
    pub(crate) fn stop(mut self) {
        self.stop.cancel();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
