//! Rate limiting (GCRA, the token bucket's exact equivalent) and in-flight limits, per source.
//! A rate limit's buckets are in this process, optionally with the limit divided among the
//! live replicas (`perReplica`), or in Redis and shared by all ([`remote`]).
//!
//! A GCRA entry holds one timestamp, the "theoretical arrival time"; an entry whose time has
//! passed is indistinguishable from no entry, so the map drops those whenever it is full: memory
//! stays bounded under a flood of distinct sources, and no bucket is ever reset early.

mod remote;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use http::HeaderMap;

use crate::clock;
use crate::metrics::METRICS;
use crate::model::middleware::{
    Distribution, InFlightSpec, IpStrategy, OnError, RateLimitSpec, Source,
};
use crate::replicas;
use crate::throttle;
use remote::Remote;

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
            return Some(self.subnet(peer));
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
                .map(|ip| self.subnet(*ip));
        }
        chain
            .iter()
            .rev()
            .find(|ip| !self.excluded.iter().any(|n| n.contains(*ip)))
            .copied()
    }

    /// `ip`, or for an IPv6 address with `ipv6Subnet` set, the first address of its subnet.
    fn subnet(&self, ip: IpAddr) -> IpAddr {
        match (self.ipv6_subnet, ip.to_canonical()) {
            (Some(bits), IpAddr::V6(v6)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(bits.min(128)))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
            _ => ip,
        }
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
    /// Source → theoretical arrival time ([`crate::clock::now`] nanoseconds): the buckets of a
    /// local limit, and of a Redis one while Redis cannot answer (`onError: local`).
    tats: DashMap<Key, u64>,
    /// The shared buckets, for a limit on Redis.
    remote: Option<Remote>,
}

/// A refusal: when to retry, for the 429's headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    /// How long until a request would be allowed.
    pub retry_after: Duration,
}

impl RateLimiter {
    /// A limiter for `spec`, with no bucket yet (and, on Redis, no connection until the first
    /// request).
    pub fn new(spec: RateLimitSpec, middleware: &str) -> Arc<Self> {
        let interval = u64::try_from(spec.period.as_nanos() / u128::from(spec.average.max(1)))
            .unwrap_or(u64::MAX)
            .max(1);
        let remote = match &spec.distribution {
            Distribution::Redis(redis) => Some(Remote::new(redis, middleware)),
            Distribution::Local | Distribution::PerReplica => None,
        };
        Arc::new(Self {
            interval,
            spec,
            tats: DashMap::new(),
            remote,
        })
    }

    /// Whether the buckets are in Redis: a decision then waits for it ([`Self::admit`]).
    pub fn is_shared(&self) -> bool {
        self.remote.is_some()
    }

    /// Takes a token for `key` now from this process's buckets (divided among the replicas
    /// for `perReplica`), or says how long until one is available.
    pub fn admit_now(&self, key: Key) -> Result<(), Limited> {
        match self.spec.distribution {
            Distribution::PerReplica => self.check_divided(key, clock::now(), replicas::live()),
            _ => self.check(key, clock::now()),
        }
    }

    /// Takes a token for `key` from wherever the buckets are, or says how long until one is
    /// available. A limit on Redis waits at most its `readTimeout`.
    pub async fn admit(&self, key: Key, middleware: &str) -> Result<(), Limited> {
        match (&self.spec.distribution, &self.remote) {
            (Distribution::Redis(redis), Some(remote)) => {
                let tolerance = self.interval.saturating_mul(self.spec.burst.max(1));
                match remote.admit(&key, self.interval, tolerance).await {
                    Ok(verdict) => verdict,
                    Err(e) => self.on_error(redis.on_error, key, middleware, &e),
                }
            }
            _ => self.admit_now(key),
        }
    }

    /// What a request gets when Redis could not answer: counted, logged (not flooding), then
    /// as `onError` says.
    fn on_error(
        &self,
        on_error: OnError,
        key: Key,
        middleware: &str,
        e: &remote::Error,
    ) -> Result<(), Limited> {
        METRICS
            .rate_limit_backend_errors
            .with_label_values(&[middleware, e.reason()])
            .inc();
        if let Some(held_back) = throttle::admit(&format!("rate limit {middleware}: {e}")) {
            tracing::warn!(
                middleware,
                field = "spec.rateLimit.redis",
                error = %e,
                on_error = ?on_error,
                held_back,
                "rate limit: no verdict from Redis; onError decides"
            );
        }
        match on_error {
            OnError::Allow => Ok(()),
            OnError::Deny => Err(Limited {
                retry_after: Duration::from_secs(1),
            }),
            OnError::Local => self.check_divided(key, clock::now(), replicas::live()),
        }
    }

    /// Takes a token for `key` at `now` from this process's buckets, or says how long until
    /// one is available.
    pub fn check(&self, key: Key, now: u64) -> Result<(), Limited> {
        let tolerance = self.interval.saturating_mul(self.spec.burst.max(1));
        self.gcra(key, now, self.interval, tolerance)
    }

    /// As [`Self::check`], with the limit divided among `replicas`: the rate and the burst
    /// (rounded up, at least one request) are each this replica's share.
    pub fn check_divided(&self, key: Key, now: u64, replicas: u64) -> Result<(), Limited> {
        let replicas = replicas.max(1);
        let interval = self.interval.saturating_mul(replicas);
        let burst = self.spec.burst.max(1).div_ceil(replicas);
        self.gcra(key, now, interval, interval.saturating_mul(burst))
    }

    fn gcra(&self, key: Key, now: u64, interval: u64, tolerance: u64) -> Result<(), Limited> {
        if !self.tats.contains_key(&key) && self.tats.len() >= MAX_SOURCES {
            self.tats.retain(|_, tat| *tat > now);
            if self.tats.len() >= MAX_SOURCES {
                return Err(Limited {
                    retry_after: Duration::from_nanos(interval),
                });
            }
        }
        let mut tat = self.tats.entry(key).or_insert(now);
        let next = (*tat).max(now).saturating_add(interval);
        if next - now > tolerance {
            let wait = next - now - tolerance;
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
        RateLimiter::new(
            RateLimitSpec {
                average,
                period: Duration::from_secs(period),
                burst,
                source: Source::RequestHost,
                distribution: Distribution::Local,
                exempt: Vec::new(),
            },
            "test",
        )
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
            exempt: Vec::new(),
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
            ipv6_subnet: None,
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
            ipv6_subnet: None,
        };
        assert_eq!(
            excluded.client_ip(peer, true, &h),
            Some("2.2.2.2".parse().unwrap())
        );
        assert_eq!(excluded.client_ip(peer, false, &h), None);
    }

    #[test]
    fn ipv6_clients_of_one_subnet_are_one_client_when_asked() {
        let strategy = IpStrategy {
            ipv6_subnet: Some(64),
            ..IpStrategy::default()
        };
        let h = HeaderMap::new();
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            strategy.client_ip(a, false, &h),
            strategy.client_ip(b, false, &h)
        );
        assert_eq!(
            strategy.client_ip(a, false, &h),
            Some("2001:db8:1:2::".parse().unwrap())
        );
        assert_ne!(
            strategy.client_ip(a, false, &h),
            strategy.client_ip(other, false, &h)
        );
        assert_eq!(strategy.client_ip(v4, false, &h), Some(v4), "IPv4 as it is");
    }
}
