//! How many fjord replicas are live, for limits divided among them: one standalone; in a
//! cluster, as many as renew their membership Lease ([`crate::cluster::members`]).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::METRICS;

static LIVE: AtomicU64 = AtomicU64::new(1);

/// The live replicas, this one included: at least 1.
pub fn live() -> u64 {
    LIVE.load(Ordering::Relaxed).max(1)
}

/// Records that `n` replicas are live (0 counts as 1: this one is).
pub(crate) fn set(n: u64) {
    let n = n.max(1);
    LIVE.store(n, Ordering::Relaxed);
    METRICS.replicas.set(i64::try_from(n).unwrap_or(i64::MAX));
}
