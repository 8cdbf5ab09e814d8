//! The process clock of the hot path: monotonic nanoseconds since the first reading, one
//! `u64` that fits an atomic, so balancer health, rate-limit buckets and connection timers
//! store times without a lock.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Monotonic nanoseconds since the process first read the clock.
pub(crate) fn now() -> u64 {
    at(Instant::now())
}

/// `instant` on this clock: a request's start, read once, serves every use.
pub(crate) fn at(instant: Instant) -> u64 {
    u64::try_from(instant.saturating_duration_since(*EPOCH).as_nanos()).unwrap_or(u64::MAX)
}

/// Whole seconds, rounded up, at least 1: for `Retry-After` and friends.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}
