//! Warnings a client or a failing backend cannot turn into a flood: one line per cause per
//! [`INTERVAL`], the next one saying how many like it were held back. Requests refused by
//! policy are not warnings at all: the access log and the metrics count them.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use crate::clock;

/// How often one cause may write a line.
pub(crate) const INTERVAL: Duration = Duration::from_secs(5);

/// Causes remembered at most; past it the table starts again (a client cannot make fjord keep
/// a line of state per request).
const CAUSES: usize = 1024;

/// Per cause: when it last wrote a line, and how many it held back since.
static SEEN: LazyLock<Mutex<HashMap<String, (u64, u64)>>> = LazyLock::new(Mutex::default);

/// Whether a warning for `cause` is written now: `Some(n)` with the `n` held back since its
/// last line, `None` when it is held back.
pub(crate) fn admit(cause: &str) -> Option<u64> {
    let now = clock::now();
    let interval = u64::try_from(INTERVAL.as_nanos()).unwrap_or(u64::MAX);
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((last, held)) = seen.get_mut(cause) {
        if now.saturating_sub(*last) < interval {
            *held += 1;
            return None;
        }
        let n = *held;
        (*last, *held) = (now, 0);
        return Some(n);
    }
    if seen.len() >= CAUSES {
        seen.clear();
    }
    seen.insert(cause.to_owned(), (now, 0));
    Some(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_writes_once_per_interval_and_then_counts_what_it_held_back() {
        let cause = "test: a cause of its own";
        assert_eq!(super::admit(cause), Some(0));
        for _ in 0..5 {
            assert_eq!(super::admit(cause), None);
        }
        assert_eq!(super::admit("test: another cause"), Some(0));
    }
}
