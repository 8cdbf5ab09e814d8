//! The rate-limit decision: one client hammering, and requests spread over 10,000 clients.
//! Run `cargo bench --bench rate_limit`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fjord::middleware::rate_limit::{Key, RateLimiter};
use fjord::model::middleware::{Distribution, IpStrategy, RateLimitSpec, Source};

fn decision(c: &mut Criterion) {
    let limiter = RateLimiter::new(
        RateLimitSpec {
            average: 1_000_000,
            period: Duration::from_secs(1),
            burst: 1_000_000,
            source: Source::ClientIp(IpStrategy::default()),
            distribution: Distribution::Local,
            exempt: Vec::new(),
        },
        "bench/limit",
    );
    let headers = http::HeaderMap::new();
    let peer = "10.0.0.1".parse().unwrap();
    let mut now = 0u64;
    c.bench_function("rate limit decision, one client (key + check)", |b| {
        b.iter(|| {
            now += 1_000;
            let key = limiter
                .spec
                .source
                .key(black_box(peer), false, "h", &headers);
            black_box(limiter.check(key, now))
        });
    });
    let keys: Vec<Key> = (0..10_000u32)
        .map(|i| Key::Ip(std::net::Ipv4Addr::from(0x0a00_0000 + i).into()))
        .collect();
    let mut i = 0;
    c.bench_function("rate limit decision, 10k clients", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            now += 1_000;
            black_box(limiter.check(keys[i].clone(), now))
        });
    });
}

criterion_group!(benches, decision);
criterion_main!(benches);
