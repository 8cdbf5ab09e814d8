//! The balancer: a route's strategy over a backend's ready endpoints (weighted round robin by
//! default; the client's address, two random choices or the least time), with passive health
//! (an endpoint that refuses connections is skipped for a backoff period, then tried again).
//!
//! The weighted order is computed once per snapshot; a round-robin pick is one atomic
//! increment plus a health check per candidate, with no lock. Each attempt's outcome is
//! reported back here, where the endpoint's health and its `fjord_service_server_up` series
//! are kept; so are the requests in flight and times to a response head that `p2c` and
//! `leasttime` read, counted only for routes using them.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::uri::Authority;

use crate::client_tls;
use crate::clock;
use crate::error::ProxyError;
use crate::metrics::METRICS;
use crate::model::{BackendTls, Balance, EndpointAddr, EndpointSpec};
use crate::throttle;
use rustls::pki_types::ServerName;

/// First backoff after a failure; doubles per consecutive failure up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest weighted schedule; larger weight sums are scaled down to fit.
const MAX_SCHEDULE: u64 = 4096;
/// How many of an endpoint's latest times to a response head `leasttime` averages.
const HEAD_TIMES: usize = 100;

/// One endpoint, with the authority upstream requests are sent to.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: EndpointAddr,
    pub authority: Authority,
    /// Its connections' key in the upstream pool: the authority, or for TLS the authority
    /// marked with the TLS settings', so a connection is only ever reused as it was made.
    pub pool_key: Authority,
    /// What a sticky-session cookie holds to name it: a hash of its address, the same on
    /// every replica (and no address given away to the client).
    pub sticky: Box<str>,
    /// Its share in a highestRandomWeight ranking.
    weight: u32,
    /// Which of its backend's members (a weighted split's Services) it belongs to.
    pub member: u16,
    health: Arc<Health>,
}

impl Endpoint {
    /// Its weight among its set's endpoints.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Whether it is tried at [`crate::clock::now`] `now`: not backing off after failures.
    pub fn is_up(&self, now: u64) -> bool {
        self.health.is_up(now)
    }

    /// Failed connects in a row.
    pub fn failures(&self) -> u32 {
        self.health.failures.load(Ordering::Relaxed)
    }

    /// Requests in flight to it from routes whose strategy counts them.
    pub fn in_flight(&self) -> u32 {
        self.health.in_flight.load(Ordering::Relaxed)
    }

    /// `leasttime`'s score: the mean time to a response head (0 before any), times one more
    /// than the requests in flight, over the weight. Lowest wins.
    fn least_time_score(&self) -> f64 {
        let mean = self
            .health
            .head_times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .mean_micros();
        mean * f64::from(self.in_flight().saturating_add(1)) / f64::from(self.weight)
    }

    /// Records a failed connect: the endpoint backs off, longer for each failure in a row.
    fn failed(&self, now: u64) {
        let failures = self.health.failures.fetch_add(1, Ordering::Relaxed).min(16);
        let backoff = BASE_BACKOFF.saturating_mul(1 << failures).min(MAX_BACKOFF);
        let until = now.saturating_add(u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX));
        self.health.down_until.store(until, Ordering::Relaxed);
    }

    /// Records a success; true when the endpoint was backing off. Reads before writing, so
    /// healthy endpoints' shared state stays clean in every core's cache.
    fn answered(&self) -> bool {
        if self.health.failures.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.health.failures.store(0, Ordering::Relaxed);
        self.health.down_until.store(0, Ordering::Relaxed);
        true
    }
}

/// Passive health and load, shared by every snapshot in which the endpoint's address appears.
#[derive(Debug, Default)]
struct Health {
    failures: AtomicU32,
    /// [`crate::clock::now`] until which the endpoint is skipped; 0 when healthy.
    down_until: AtomicU64,
    /// Requests in flight from routes whose strategy reads them: from the choice to the end
    /// of the response body.
    in_flight: AtomicU32,
    /// Its latest times to a response head, for `leasttime`.
    head_times: Mutex<HeadTimes>,
}

/// The latest [`HEAD_TIMES`] times to a response head, in microseconds, in a ring.
#[derive(Debug, Default)]
struct HeadTimes {
    samples: Vec<u32>,
    next: usize,
    sum: u64,
}

impl HeadTimes {
    fn add(&mut self, took: Duration) {
        let micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        if self.samples.len() < HEAD_TIMES {
            self.samples.push(micros);
        } else {
            self.sum -= u64::from(self.samples[self.next]);
            self.samples[self.next] = micros;
        }
        self.sum += u64::from(micros);
        self.next = (self.next + 1) % HEAD_TIMES;
    }

    fn mean_micros(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        self.sum as f64 / self.samples.len() as f64
    }
}

/// A request counted in flight to its endpoint while this lives: held by the response body
/// until its end, for the strategies that read the count. One pointer, so that the response
/// body every request carries grows by no more.
#[derive(Debug)]
pub struct InFlight {
    health: Arc<Health>,
}

impl InFlight {
    /// Records the time from `since` (the choice) to the response head, which `leasttime`
    /// averages.
    pub fn answered(&self, since: Instant) {
        self.health
            .head_times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(since.elapsed());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Health {
    fn is_up(&self, now: u64) -> bool {
        self.down_until.load(Ordering::Relaxed) <= now
    }
}

/// How a backend's endpoints are reached over TLS.
pub struct Tls {
    /// What it was made from.
    spec: Arc<BackendTls>,
    /// The client; why there is none when its settings cannot make one.
    pub connector: Result<tokio_rustls::TlsConnector, String>,
    /// The name checked and sent as SNI; the endpoint's address when `None`.
    pub server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .field("connector", &self.connector.as_ref().map(|_| "rustls"))
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// The client for `spec`, offering only HTTP/2 in ALPN with `http2`.
    fn new(spec: &Arc<BackendTls>, http2: bool) -> Self {
        let connector = client_tls::tls_config(Some(&spec.client)).map(|mut config| {
            if http2 {
                config.alpn_protocols = vec![b"h2".to_vec()];
            }
            tokio_rustls::TlsConnector::from(Arc::new(config))
        });
        let server_name = spec
            .server_name
            .as_deref()
            .and_then(|n| ServerName::try_from(n.to_owned()).ok());
        Self {
            spec: Arc::clone(spec),
            connector,
            server_name,
        }
    }

    /// The name to check `endpoint`'s certificate against.
    pub fn name_for(&self, endpoint: &Authority) -> Option<ServerName<'static>> {
        if let Some(name) = &self.server_name {
            return Some(name.clone());
        }
        let host = endpoint
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Some(ServerName::IpAddress(ip.into())),
            Err(_) => ServerName::try_from(host.to_owned()).ok(),
        }
    }
}

/// A backend's endpoints and its round-robin position.
#[derive(Debug)]
pub struct EndpointSet {
    spec: Vec<EndpointSpec>,
    /// TLS to the endpoints, for an HTTPS backend.
    pub tls: Option<Tls>,
    /// Whether the endpoints are spoken to in HTTP/2 (gRPC backends).
    pub http2: bool,
    endpoints: Vec<Endpoint>,
    /// Endpoint indexes in smooth weighted round-robin order.
    schedule: Box<[u32]>,
    cursor: AtomicUsize,
}

/// Every member of a backend, for [`EndpointSet::rendezvous`] over all its endpoints.
pub(crate) const ALL_MEMBERS: Range<u16> = 0..u16::MAX;

impl EndpointSet {
    /// Builds the set for `spec` (over TLS when `tls` says, in HTTP/2 with `http2`), keeping
    /// the health of addresses that were in `previous`.
    pub fn new(
        spec: &[EndpointSpec],
        (tls, http2): (Option<&Arc<BackendTls>>, bool),
        previous: Option<&EndpointSet>,
    ) -> Self {
        static SETS: AtomicU64 = AtomicU64::new(0);
        // A connection is only ever reused as it was made: TLS settings and protocol.
        let marked = (tls.is_some() || http2).then(|| SETS.fetch_add(1, Ordering::Relaxed));
        let mut endpoints = Vec::with_capacity(spec.len());
        let mut weights = Vec::with_capacity(spec.len());
        for s in spec {
            // Translation only lets valid addresses through; one that is not is skipped.
            let Ok(authority) = Authority::try_from(s.addr.to_string()) else {
                continue;
            };
            let health = previous
                .and_then(|p| p.endpoints.iter().find(|e| e.addr == s.addr))
                .map(|e| Arc::clone(&e.health))
                .unwrap_or_default();
            let pool_key = match marked {
                None => authority.clone(),
                Some(id) => match Authority::try_from(format!("t{id:x}@{authority}")) {
                    Ok(key) => key,
                    Err(_) => continue,
                },
            };
            endpoints.push(Endpoint {
                pool_key,
                sticky: sticky_value(authority.as_str()),
                weight: s.weight.max(1),
                member: s.member,
                addr: s.addr.clone(),
                authority,
                health,
            });
            weights.push(u64::from(s.weight.max(1)));
        }
        Self {
            spec: spec.to_vec(),
            tls: tls.map(|t| Tls::new(t, http2)),
            http2,
            schedule: schedule(&weights),
            endpoints,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Whether this set was built from `spec` (and so can be kept across a reload).
    pub fn is_for(
        &self,
        spec: &[EndpointSpec],
        (tls, http2): (Option<&Arc<BackendTls>>, bool),
    ) -> bool {
        self.spec == spec && self.tls.as_ref().map(|t| &t.spec) == tls && self.http2 == http2
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn get(&self, index: usize) -> Option<&Endpoint> {
        self.endpoints.get(index)
    }

    /// The next endpoint in weighted order that is not backing off and is not `avoid`. When
    /// every other endpoint is backing off, one is tried anyway: failing open beats a certain
    /// error.
    pub fn pick(&self, now: u64, avoid: Option<usize>) -> Option<usize> {
        let n = self.schedule.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut fallback = None;
        for k in 0..n {
            let i = self.schedule[(start + k) % n] as usize;
            if Some(i) == avoid {
                continue;
            }
            if self.endpoints[i].health.is_up(now) {
                return Some(i);
            }
            fallback.get_or_insert(i);
        }
        fallback
    }

    /// The endpoint `balance` chooses for a request from `client`, other than `avoid`. Every
    /// strategy fails open as [`EndpointSet::pick`] does when no endpoint is up.
    pub fn choose(
        &self,
        balance: Balance,
        client: IpAddr,
        now: u64,
        avoid: Option<usize>,
    ) -> Option<usize> {
        match balance {
            Balance::RoundRobin => None,
            Balance::ClientIp => self
                .rendezvous(client, now, &ALL_MEMBERS)
                .filter(|i| Some(*i) != avoid),
            Balance::TwoChoices => self.two_choices(now, avoid),
            Balance::LeastTime => self.least_time(now, avoid),
        }
        .or_else(|| self.pick(now, avoid))
    }

    /// Counts a request in flight to endpoint `index` until the returned guard is dropped.
    pub fn in_flight(&self, index: usize) -> Option<InFlight> {
        let health = &self.endpoints.get(index)?.health;
        health.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(InFlight {
            health: Arc::clone(health),
        })
    }

    /// Indexes of the endpoints up at `now`, other than `avoid`.
    fn up(&self, now: u64, avoid: Option<usize>) -> impl Iterator<Item = usize> + '_ {
        (0..self.endpoints.len())
            .filter(move |i| Some(*i) != avoid && self.endpoints[*i].health.is_up(now))
    }

    /// Of two endpoints up drawn at random, the one with fewer requests in flight (the
    /// first drawn on a tie). Weights are not read, as in Traefik's `p2c`. None with fewer
    /// than two up.
    fn two_choices(&self, now: u64, avoid: Option<usize>) -> Option<usize> {
        let count = self.up(now, avoid).count();
        if count < 2 {
            return None;
        }
        let first = fastrand::usize(..count);
        let mut second = fastrand::usize(..count - 1);
        if second >= first {
            second += 1;
        }
        let a = self.up(now, avoid).nth(first)?;
        let b = self.up(now, avoid).nth(second)?;
        let (ea, eb) = (&self.endpoints[a], &self.endpoints[b]);
        Some(if eb.in_flight() < ea.in_flight() {
            b
        } else {
            a
        })
    }

    /// The endpoint up with the lowest `leasttime` score; among equals (all untried ones at
    /// first), the next in weighted round-robin order.
    fn least_time(&self, now: u64, avoid: Option<usize>) -> Option<usize> {
        let mut scores = vec![None; self.endpoints.len()];
        for i in self.up(now, avoid) {
            scores[i] = Some(self.endpoints[i].least_time_score());
        }
        let best = scores.iter().flatten().copied().reduce(f64::min)?;
        let n = self.schedule.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| self.schedule[(start + k) % n] as usize)
            .find(|i| scores[*i] == Some(best))
    }

    /// The endpoint that ranks highest for `client` among those up of `members` (weighted
    /// rendezvous hashing: each endpoint scores `weight / -ln(u)`, `u` a hash of the client
    /// and the endpoint in (0, 1)). The same client gets the same endpoint on every replica,
    /// and when an endpoint goes, only its clients move.
    pub fn rendezvous(&self, client: IpAddr, now: u64, members: &Range<u16>) -> Option<usize> {
        // One form for both families, with no allocation: IPv4 as IPv4-mapped IPv6.
        let client = match client {
            IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
            IpAddr::V6(ip) => ip.octets(),
        };
        let mut best: Option<(usize, f64)> = None;
        for (i, e) in self.endpoints.iter().enumerate() {
            if !e.health.is_up(now) || !members.contains(&e.member) {
                continue;
            }
            let hash = mix(fnv1a(&[&client, b"|", e.authority.as_str().as_bytes()]));
            // The top 53 bits, as a float in (0, 1).
            let u = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = f64::from(e.weight) / -u.ln();
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The endpoint a sticky-session cookie's `value` names, if it is here and not backing
    /// off.
    pub fn stuck(&self, value: &str, now: u64) -> Option<usize> {
        self.endpoints
            .iter()
            .position(|e| &*e.sticky == value)
            .filter(|i| self.endpoints[*i].health.is_up(now))
    }

    /// Records how an attempt on endpoint `index` of `backend` went: a response brings a
    /// backing-off endpoint back, a failed connect makes it back off. Other failures say
    /// nothing of the endpoint: a slow answer may be the request's.
    pub fn report(&self, backend: &str, index: usize, outcome: Result<(), &ProxyError>) {
        let Some(endpoint) = self.endpoints.get(index) else {
            return;
        };
        match outcome {
            Ok(()) => {
                if endpoint.answered() {
                    server_up(backend, endpoint.authority.as_str(), 1);
                }
            }
            Err(e @ ProxyError::Connect { source, .. }) => {
                let cause = format!("backing off {}", endpoint.authority);
                if let Some(held_back) = throttle::admit(&cause) {
                    tracing::warn!(backend, error = %e, held_back, "endpoint is backing off");
                }
                endpoint.failed(clock::now());
                METRICS
                    .service_connect_errors
                    .with_label_values(&[backend, connect_error_kind(source)])
                    .inc();
                server_up(backend, endpoint.authority.as_str(), 0);
            }
            Err(_) => {}
        }
    }
}

fn server_up(backend: &str, url: &str, up: i64) {
    METRICS
        .service_server_up
        .with_label_values(&[backend, url])
        .set(up);
}

/// `refused`, `timeout`, `dns` or `other`, from the I/O error under a connect failure.
fn connect_error_kind(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "refused",
        std::io::ErrorKind::TimedOut => "timeout",
        // The resolver's failures carry no kind of their own.
        _ if e.to_string().contains("lookup") => "dns",
        _ => "other",
    }
}

/// FNV-1a (64 bits) of an endpoint's address, in hex: stable across processes and versions.
fn sticky_value(address: &str) -> Box<str> {
    format!("{:016x}", fnv1a(&[address.as_bytes()])).into()
}

/// SplitMix64's finalizer: FNV-1a leaves its high bits weakly mixed.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over `parts`: a hash every replica computes alike, whatever its build's seeds.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// Smooth weighted round robin (as nginx does it): with weights 5, 1, 1 the order is
/// a a b a c a a, not a a a a a b c.
fn schedule(weights: &[u64]) -> Box<[u32]> {
    let gcd = weights.iter().copied().fold(0, num_integer::gcd);
    if gcd == 0 {
        return Box::new([]);
    }
    let mut weights: Vec<u64> = weights.iter().map(|w| w / gcd).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        for w in &mut weights {
            *w = (*w * MAX_SCHEDULE / total).max(1);
        }
    }
    let total: u64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total as i64;
        out.push(best as u32);
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(weights: &[u32]) -> EndpointSet {
        let spec: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| EndpointSpec {
                addr: EndpointAddr::Ip(([127, 0, 0, 1], 1000 + i as u16).into()),
                weight: *w,
                member: 0,
            })
            .collect();
        EndpointSet::new(&spec, (None, false), None)
    }

    #[test]
    fn smooth_weighted_order() {
        assert_eq!(&*schedule(&[5, 1, 1]), &[0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(&*schedule(&[2, 2]), &[0, 1]);
        let s = set(&[1, 1, 1]);
        let picks: Vec<_> = (0..6).map(|_| s.pick(0, None).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn rendezvous_keeps_each_client_shares_by_weight_and_moves_only_a_gone_endpoints_clients() {
        let s = set(&[1, 3]);
        let clients: Vec<IpAddr> = (0..4000u32)
            .map(|i| IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]))
            .collect();
        let picks: Vec<usize> = clients
            .iter()
            .map(|c| s.rendezvous(*c, 0, &ALL_MEMBERS).unwrap())
            .collect();
        let again: Vec<usize> = clients
            .iter()
            .map(|c| s.rendezvous(*c, 0, &ALL_MEMBERS).unwrap())
            .collect();
        assert_eq!(picks, again, "a client keeps its endpoint");
        let heavy = picks.iter().filter(|p| **p == 1).count();
        assert!(
            (2800..3200).contains(&heavy),
            "weight 3 of 4: {heavy} of 4000"
        );
        // Of three, endpoint 0 backs off: its clients spread over the others, whose own
        // clients stay where they were.
        let s = set(&[1, 1, 1]);
        let picks: Vec<usize> = clients
            .iter()
            .map(|c| s.rendezvous(*c, 0, &ALL_MEMBERS).unwrap())
            .collect();
        s.endpoints[0].failed(0);
        let mut moved = [0; 3];
        for (c, before) in clients.iter().zip(&picks) {
            let now = s.rendezvous(*c, 1, &ALL_MEMBERS).unwrap();
            if *before == 0 {
                moved[now] += 1;
            } else {
                assert_eq!(now, *before, "{c} moved though its endpoint is up");
            }
        }
        assert!(moved[1] > 400 && moved[2] > 400, "{moved:?}");
    }

    #[test]
    fn failed_endpoint_backs_off_then_returns() {
        let s = set(&[1, 1]);
        s.endpoints[0].failed(0);
        let soon = 500_000_000; // 0.5 s later
        assert!((0..4).all(|_| s.pick(soon, None) == Some(1)));
        let later = 2_000_000_000;
        let picks: Vec<_> = (0..4).map(|_| s.pick(later, None).unwrap()).collect();
        assert!(picks.contains(&0), "retried after the backoff: {picks:?}");
        s.endpoints[0].answered();
        assert_eq!(s.endpoints[0].health.down_until.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn all_down_fails_open_and_avoid_is_respected() {
        let s = set(&[1, 1]);
        s.endpoints[0].failed(0);
        s.endpoints[1].failed(0);
        assert!(s.pick(1, None).is_some());
        assert_eq!(s.pick(1, Some(0)), Some(1));
        assert_eq!(set(&[1]).pick(0, Some(0)), None);
    }

    #[test]
    fn head_times_average_the_latest_hundred() {
        let mut times = HeadTimes::default();
        assert_eq!(times.mean_micros(), 0.0, "untried: 0, so it is tried");
        for _ in 0..HEAD_TIMES {
            times.add(Duration::from_millis(300));
        }
        assert_eq!(times.mean_micros(), 300_000.0);
        for _ in 0..HEAD_TIMES {
            times.add(Duration::from_millis(1));
        }
        assert_eq!(
            times.mean_micros(),
            1_000.0,
            "the slow ones have left the window"
        );
    }

    #[test]
    fn two_choices_prefers_fewer_in_flight_and_in_flight_ends_with_its_guard() {
        let s = set(&[1, 1, 1]);
        let busy: Vec<_> = [0, 0, 1].iter().map(|i| s.in_flight(*i).unwrap()).collect();
        for _ in 0..50 {
            let i = s.choose(Balance::TwoChoices, [127, 0, 0, 1].into(), 0, None);
            assert_ne!(
                i,
                Some(0),
                "endpoint 0 has the most in flight, never the fewer of two"
            );
        }
        assert_eq!(s.endpoints[0].in_flight(), 2);
        drop(busy);
        assert!(s.endpoints.iter().all(|e| e.in_flight() == 0));
    }

    #[test]
    fn health_survives_a_rebuild_for_the_same_address() {
        let a = set(&[1, 1]);
        a.endpoints[1].failed(0);
        let b = EndpointSet::new(&a.spec[1..], (None, false), Some(&a));
        assert!(!b.endpoints[0].health.is_up(1));
    }
}
