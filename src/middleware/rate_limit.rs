//! Rate limiting (GCRA, the token bucket's exact equivalent) and in-flight limits, per source.
//!
//! A GCRA entry holds one timestamp, the "theoretical arrival time"; an entry whose time has
//! passed is indistinguishable from no entry, so the map drops those whenever it is full: memory
//! stays bounded under a flood of distinct sources, and no bucket is ever reset early.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use http::HeaderMap;

use crate::model::middleware::{InFlightSpec, IpStrategy, RateLimitSpec, Source};

/// Most sources one limiter tracks; past it, fully refilled entries are dropped, and if none
/// are, requests from new sources are refused (the backend is under a flood).
const MAX_SOURCES: usize = 100_000;

impl IpStrategy {
    /// The client's address: the peer's, or one from the `X-Forwarded-For` chain fjord would
    /// forward, which holds the client's own entries only when the peer is `trusted`
    /// (`forwardedHeaders.trustedIPs`): an untrusted client cannot choose its address. `None`
    /// when the strategy reaches past the chain, as Traefik's does: no address, not the peer.
    pub fn client_ip(&self, peer: IpAddr, trusted: bool, headers: &HeaderMap) -> Option<IpAddr> {
        if self.depth == 0 && self.excluded.is_empty() {
            return Some(peer);
        }
        if !trusted {
            return None;
        }
        let chain: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        if self.depth > 0 {
            return chain
                .len()
                .checked_sub(self.depth)
                .and_then(|i| chain.get(i))
                .copied();
        }
        chain
            .iter()
            .rev()
            .find(|ip| !self.excluded.iter().any(|n| n.contains(*ip)))
            .copied()
    }
}

/// The client a request counts against. An address is kept as one, so the common case (limit
/// by client IP) allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// An address.
    Ip(IpAddr),
    /// Any other value (a header, a host).
    Text(Box<str>),
    /// No client address (the strategy reached past the trusted chain): such requests share
    /// one bucket.
    NoAddress,
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::Text(s.into())
    }
}

impl Source {
    /// The key of this request's bucket; `trusted` says whether the peer's forwarded headers
    /// are.
    pub fn key(&self, peer: IpAddr, trusted: bool, host: &str, headers: &HeaderMap) -> Key {
        match self {
            Source::ClientIp(strategy) => strategy
                .client_ip(peer, trusted, headers)
                .map_or(Key::NoAddress, |ip| Key::Ip(ip.to_canonical())),
            Source::RequestHeader(name) => Key::Text(
                headers
                    .get(name)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into())
                    .unwrap_or_default(),
            ),
            Source::RequestHost => Key::Text(host.into()),
        }
    }
}

/// A rate limit and its buckets, kept across reloads while the spec is unchanged.
#[derive(Debug)]
pub struct RateLimiter {
    /// Its settings.
    pub spec: RateLimitSpec,
    /// Nanoseconds between requests at the average rate.
    interval: u64,
    /// `interval * burst`: how far ahead of now a bucket's time may run.
    tolerance: u64,
    /// Source → theoretical arrival time ([`crate::clock::now`] nanoseconds).
    tats: DashMap<Key, u64>,
}

/// A refusal: when to retry, for the 429's headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    /// How long until a request would be allowed.
    pub retry_after: Duration,
}

impl RateLimiter {
    /// A limiter for `spec`, with no bucket yet.
    pub fn new(spec: RateLimitSpec) -> Arc<Self> {
        let interval = u64::try_from(spec.period.as_nanos() / u128::from(spec.average.max(1)))
            .unwrap_or(u64::MAX)
            .max(1);
        Arc::new(Self {
            tolerance: interval.saturating_mul(spec.burst.max(1)),
            interval,
            spec,
            tats: DashMap::new(),
        })
    }

    /// Takes a token for `key` at `now`, or says how long until one is available.
    pub fn check(&self, key: Key, now: u64) -> Result<(), Limited> {
        if !self.tats.contains_key(&key) && self.tats.len() >= MAX_SOURCES {
            self.tats.retain(|_, tat| *tat > now);
            if self.tats.len() >= MAX_SOURCES {
                return Err(Limited {
                    retry_after: Duration::from_nanos(self.interval),
                });
            }
        }
        let mut tat = self.tats.entry(key).or_insert(now);
        let next = (*tat).max(now).saturating_add(self.interval);
        if next - now > self.tolerance {
            let wait = next - now - self.tolerance;
            return Err(Limited {
                retry_after: Duration::from_nanos(wait),
            });
        }
        *tat = next;
        Ok(())
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.tats.len()
    }
}

/// Concurrent requests per source.
#[derive(Debug)]
pub struct InFlight {
    /// Its settings.
    pub spec: InFlightSpec,
    counts: DashMap<Key, u64>,
}

/// Releases an in-flight slot when dropped.
#[derive(Debug)]
pub struct InFlightGuard {
    limiter: Arc<InFlight>,
    key: Key,
}

impl InFlight {
    /// A limit for `spec`, with nothing in flight.
    pub fn new(spec: InFlightSpec) -> Arc<Self> {
        Arc::new(Self {
            spec,
            counts: DashMap::new(),
        })
    }

    /// Takes a slot for `key`, released when the guard drops; `None` when all are taken.
    pub fn acquire(self: &Arc<Self>, key: Key) -> Option<InFlightGuard> {
        let mut count = self.counts.entry(key.clone()).or_insert(0);
        if *count >= self.spec.amount {
            return None;
        }
        *count += 1;
        drop(count);
        Some(InFlightGuard {
            limiter: Arc::clone(self),
            key,
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        // Remove the entry at zero, so the map holds only sources with requests in flight.
        self.limiter.counts.remove_if_mut(&self.key, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn limiter(average: u64, period: u64, burst: u64) -> Arc<RateLimiter> {
        RateLimiter::new(RateLimitSpec {
            average,
            period: Duration::from_secs(period),
            burst,
            source: Source::RequestHost,
        })
    }

    #[test]
    fn burst_then_average_rate_with_an_injected_clock() {
        let l = limiter(10, 1, 3); // one token per 100 ms, three at once
        let t0 = 5 * SEC;
        for _ in 0..3 {
            assert!(l.check("a".into(), t0).is_ok());
        }
        let refused = l.check("a".into(), t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert!(l.check("b".into(), t0).is_ok(), "sources are separate");
        assert!(
            l.check("a".into(), t0 + SEC / 10).is_ok(),
            "a token came back after 100 ms"
        );
        assert!(l.check("a".into(), t0 + SEC / 10).is_err());
        assert!(l.check("a".into(), t0 + 10 * SEC).is_ok());
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_sources() {
        let l = limiter(1, 1, 1);
        for i in 0..MAX_SOURCES {
            l.check(i.to_string().as_str().into(), 0).unwrap();
        }
        assert!(
            l.check("new".into(), 0).is_err(),
            "full of active sources: new ones wait"
        );
        assert!(
            l.check("newer".into(), 2 * SEC).is_ok(),
            "refilled entries make room"
        );
        assert!(l.sources() <= MAX_SOURCES);
    }

    #[test]
    fn in_flight_counts_and_releases() {
        let f = InFlight::new(InFlightSpec {
            amount: 2,
            source: Source::RequestHost,
        });
        let a = f.acquire("h".into()).unwrap();
        let _b = f.acquire("h".into()).unwrap();
        assert!(f.acquire("h".into()).is_none());
        drop(a);
        assert!(f.acquire("h".into()).is_some());
    }

    #[test]
    fn ip_strategy_picks_from_forwarded_for_only_when_the_peer_is_trusted() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "1.1.1.1, 2.2.2.2, 10.0.0.5".parse().unwrap(),
        );
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(IpStrategy::default().client_ip(peer, false, &h), Some(peer));
        let depth = |depth| IpStrategy {
            depth,
            excluded: vec![],
        };
        assert_eq!(
            depth(2).client_ip(peer, true, &h),
            Some("2.2.2.2".parse().unwrap())
        );
        assert_eq!(depth(4).client_ip(peer, true, &h), None, "past the chain");
        assert_eq!(
            depth(1).client_ip(peer, false, &h),
            None,
            "an untrusted client's chain is not read"
        );
        let excluded = IpStrategy {
            depth: 0,
            excluded: vec!["10.0.0.0/8".parse().unwrap()],
        };
        assert_eq!(
            excluded.client_ip(peer, true, &h),
            Some("2.2.2.2".parse().unwrap())
        );
        assert_eq!(excluded.client_ip(peer, false, &h), None);
    }
}
