//! A circuit breaker, as Traefik's `circuitBreaker` (vulcand/oxy's) behaves: it watches what
//! came back over the last ten seconds and, when its condition holds, answers requests itself
//! for the fallback duration, then lets a rising share through for the recovery duration
//! before it stands by again. Pure: every call is given the time.

mod expression;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub use expression::{Expression, Metric, Op, ParseError};

/// How far back the condition looks, in one-second slices.
const WINDOW_SECONDS: u64 = 10;

/// Latencies are kept in milliseconds up to an hour, to one significant digit (about 3 %
/// apart): a percentile to compare with a threshold needs no more, and each second's
/// histogram stays near a kilobyte.
const LATENCY_MAX_MS: u64 = 3_600_000;

/// A breaker's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// What trips it.
    pub expression: Expression,
    /// How often the condition is checked, at most (default 100 ms).
    pub check_period: Duration,
    /// How long it answers every request itself once tripped (default 10 s).
    pub fallback: Duration,
    /// How long it lets a rising share through after that (default 10 s).
    pub recovery: Duration,
    /// The status it answers with (default 503).
    pub response_code: u16,
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Every request goes through; the condition is watched.
    Standby,
    /// Every request is answered by the breaker until then.
    Tripped { until: Instant },
    /// A share of requests rising from none goes through, until then.
    Recovering {
        start: Instant,
        until: Instant,
        allowed: u64,
        denied: u64,
    },
}

/// One second of responses.
struct Second {
    /// Seconds since the breaker was made.
    at: u64,
    total: u64,
    /// 502s and 504s.
    network_errors: u64,
    /// Responses per status.
    statuses: Vec<(u16, u64)>,
    /// `None` only if hdrhistogram refused the constant bounds, which it does not.
    latency: Option<Histogram<u32>>,
}

/// A breaker's state and window.
pub struct Breaker {
    settings: Settings,
    state: State,
    window: VecDeque<Second>,
    origin: Instant,
    next_check: Instant,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Breaker {
    /// A breaker standing by from `now`.
    pub fn new(settings: Settings, now: Instant) -> Self {
        Self {
            settings,
            state: State::Standby,
            window: VecDeque::new(),
            origin: now,
            next_check: now,
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether a request arriving `now` goes through; if not, the breaker answers it with its
    /// response code.
    pub fn admit(&mut self, now: Instant) -> bool {
        match &mut self.state {
            State::Standby => true,
            State::Tripped { until } if now < *until => false,
            State::Tripped { .. } => {
                self.state = State::Recovering {
                    start: now,
                    until: now + self.settings.recovery,
                    allowed: 0,
                    denied: 0,
                };
                self.admit(now)
            }
            State::Recovering { until, .. } if now > *until => {
                self.state = State::Standby;
                true
            }
            State::Recovering {
                start,
                allowed,
                denied,
                ..
            } => {
                // Half of the requests by the end of the recovery, as oxy ramps it: past that
                // share, letting one more through would overshoot.
                let elapsed = now.saturating_duration_since(*start).as_secs_f64();
                let target = 0.5 * elapsed / self.settings.recovery.as_secs_f64().max(1e-9);
                let would_be = (*allowed + 1) as f64 / (*allowed + 1 + *denied) as f64;
                if would_be < target {
                    *allowed += 1;
                    true
                } else {
                    *denied += 1;
                    false
                }
            }
        }
    }

    /// Records a response to a request that went through, and checks the condition if a
    /// check period has passed: when it holds, the breaker trips and its window starts anew.
    pub fn record(&mut self, now: Instant, status: u16, latency: Duration) {
        self.second(now).add(status, latency);
        if now < self.next_check {
            return;
        }
        self.next_check = now + self.settings.check_period;
        if matches!(self.state, State::Tripped { .. }) {
            return;
        }
        let current = self.seconds(now);
        let window: Vec<&Second> = self
            .window
            .iter()
            .filter(|s| s.at + WINDOW_SECONDS > current)
            .collect();
        if self
            .settings
            .expression
            .holds(&|metric| measure(&window, metric))
        {
            self.state = State::Tripped {
                until: now + self.settings.fallback,
            };
            self.window.clear();
        }
    }

    fn seconds(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// The slice for `now`, the slices too old for the window dropped.
    fn second(&mut self, now: Instant) -> &mut Second {
        let at = self.seconds(now);
        while self
            .window
            .front()
            .is_some_and(|s| s.at + WINDOW_SECONDS <= at)
        {
            self.window.pop_front();
        }
        if self.window.back().is_none_or(|s| s.at != at) {
            self.window.push_back(Second::new(at));
        }
        let last = self.window.len() - 1;
        &mut self.window[last]
    }
}

impl Second {
    fn new(at: u64) -> Self {
        Self {
            at,
            total: 0,
            network_errors: 0,
            statuses: Vec::new(),
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_MS, 1).ok(),
        }
    }

    fn add(&mut self, status: u16, latency: Duration) {
        self.total += 1;
        if status == 502 || status == 504 {
            self.network_errors += 1;
        }
        match self.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.statuses.push((status, 1)),
        }
        let ms = u64::try_from(latency.as_millis()).unwrap_or(LATENCY_MAX_MS);
        if let Some(latency) = &mut self.latency {
            latency.saturating_record(ms.clamp(1, LATENCY_MAX_MS));
        }
    }
}

/// `metric` over `window`; a ratio over no response is 0.
fn measure(window: &[&Second], metric: Metric) -> f64 {
    let ratio = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    match metric {
        Metric::NetworkErrorRatio => ratio(
            window.iter().map(|s| s.network_errors).sum(),
            window.iter().map(|s| s.total).sum(),
        ),
        Metric::ResponseCodeRatio([from, to, whole_from, whole_to]) => {
            let count = |low: u16, high: u16| -> u64 {
                window
                    .iter()
                    .flat_map(|s| &s.statuses)
                    .filter(|(status, _)| (low..high).contains(status))
                    .map(|(_, n)| n)
                    .sum()
            };
            ratio(count(from, to), count(whole_from, whole_to))
        }
        Metric::LatencyAtQuantileMs(quantile) => {
            let mut seconds = window.iter().filter_map(|s| s.latency.as_ref());
            let Some(mut all) = seconds.next().cloned() else {
                return 0.0;
            };
            for latency in seconds {
                // Same bounds throughout: adding cannot fail.
                let _ = all.add(latency);
            }
            all.value_at_quantile(quantile / 100.0) as f64
        }
        // A retry's functions, which a breaker's condition cannot name (it does not parse).
        Metric::Attempts | Metric::ResponseCode | Metric::NetworkError => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(expression: &str, now: Instant) -> Breaker {
        Breaker::new(
            Settings {
                expression: Expression::parse(expression).unwrap(),
                check_period: Duration::from_millis(100),
                fallback: Duration::from_secs(10),
                recovery: Duration::from_secs(10),
                response_code: 503,
            },
            now,
        )
    }

    #[test]
    fn trips_on_its_condition_answers_through_the_fallback_then_recovers_gradually() {
        let t0 = Instant::now();
        let mut b = breaker("ResponseCodeRatio(500, 600, 0, 600) > 0.5", t0);
        assert!(b.admit(t0));
        b.record(t0, 200, Duration::from_millis(5));
        assert!(b.admit(t0));
        // Within the check period: recorded, not yet checked.
        b.record(
            t0 + Duration::from_millis(10),
            500,
            Duration::from_millis(5),
        );
        b.record(
            t0 + Duration::from_millis(20),
            500,
            Duration::from_millis(5),
        );
        assert!(b.admit(t0 + Duration::from_millis(30)));
        let t1 = t0 + Duration::from_millis(150);
        b.record(t1, 500, Duration::from_millis(5));
        assert!(!b.admit(t1));
        assert!(!b.admit(t1 + Duration::from_secs(9)));
        // Recovering: a share rising from none to half over the recovery.
        let start = t1 + Duration::from_secs(10);
        let early = (0..100)
            .filter(|i| b.admit(start + Duration::from_millis(10 * i)))
            .count();
        let late = (0..100)
            .filter(|i| b.admit(start + Duration::from_secs(9) + Duration::from_millis(*i)))
            .count();
        assert!(early < 10 && late > 30, "early {early}, late {late}");
        // Past the recovery: standing by, everything through.
        assert!(b.admit(start + Duration::from_secs(11)));
        assert!(b.admit(start + Duration::from_secs(11)));
    }

    #[test]
    fn the_window_forgets_responses_older_than_ten_seconds() {
        let t0 = Instant::now();
        let mut b = breaker("NetworkErrorRatio() > 0.5", t0);
        b.record(t0, 200, Duration::from_millis(1));
        for i in 1..=3 {
            b.record(t0 + Duration::from_millis(i), 502, Duration::from_millis(1));
        }
        // Checked only at the first record, when the ratio was 0.
        assert!(b.admit(t0 + Duration::from_millis(50)));
        let later = t0 + Duration::from_secs(11);
        b.record(later, 200, Duration::from_millis(1));
        assert!(b.admit(later), "the 502s are out of the window");
    }

    #[test]
    fn latency_percentiles_trip_a_slow_service() {
        let t0 = Instant::now();
        let mut fast = breaker("LatencyAtQuantileMS(50.0) > 100", t0);
        fast.record(t0, 200, Duration::from_millis(20));
        assert!(fast.admit(t0));
        let mut slow = breaker("LatencyAtQuantileMS(50.0) > 100", t0);
        slow.record(t0, 200, Duration::from_millis(300));
        assert!(!slow.admit(t0));
    }
}
