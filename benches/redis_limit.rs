//! What the exact, Redis-backed rate limit costs against the local one: latency and this
//! process's CPU per decision, one at a time and 64 at once, next to a bare `PING` round trip
//! and Redis's own time per script call. Starts Debian's `redis-server` on a free loopback
//! port. Run `cargo bench --bench redis_limit`; the numbers go to BENCHMARKS.md.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord::middleware::rate_limit::{Key, RateLimiter};
use fjord::model::middleware::{
    Distribution, IpStrategy, OnError, RateLimitSpec, RedisSpec, Source,
};

const DECISIONS: usize = 20_000;

fn main() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut server = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let endpoint = format!("127.0.0.1:{port}");
        wait_for(&endpoint).await;
        let ping = ping_round_trip(&endpoint).await;
        println!("PING round trip, one at a time:         {}", micros(ping));
        let local = limiter(Distribution::Local);
        let redis = limiter(Distribution::Redis(Box::new(RedisSpec {
            endpoints: vec![endpoint.clone()],
            username: None,
            password: None,
            db: 0,
            tls: None,
            dial_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            pool_size: 2,
            on_error: OnError::Deny,
        })));
        for (name, limiter) in [("local", &local), ("redis", &redis)] {
            let (latency, cpu) = sequential(limiter).await;
            println!(
                "{name:5} decision, one at a time:          {} latency, {} CPU",
                micros(latency),
                micros(cpu)
            );
            let (rate, cpu) = concurrent(limiter).await;
            println!(
                "{name:5} decision, 64 at once:             {rate:.0} decisions/s, {} CPU each",
                micros(cpu)
            );
        }
        let stats = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "INFO", "commandstats"])
            .output()
            .expect("redis-cli");
        for line in String::from_utf8_lossy(&stats.stdout).lines() {
            if line.starts_with("cmdstat_evalsha") {
                println!("Redis's own time per script call:       {line}");
            }
        }
    });
    let _ = server.kill();
    let _ = server.wait();
}

/// A limit no decision here reaches: what is measured is the decision, not a refusal.
fn limiter(distribution: Distribution) -> Arc<RateLimiter> {
    RateLimiter::new(
        RateLimitSpec {
            average: 1_000_000_000,
            period: Duration::from_secs(1),
            burst: 1_000_000_000,
            source: Source::ClientIp(IpStrategy::default()),
            distribution,
            exempt: Vec::new(),
        },
        "bench/limit",
    )
}

fn key(i: usize) -> Key {
    Key::Ip(IpAddr::V4(Ipv4Addr::from(
        0x0a00_0000 + (i % 10_000) as u32,
    )))
}

/// Median latency and CPU per decision, one decision at a time.
async fn sequential(limiter: &Arc<RateLimiter>) -> (Duration, Duration) {
    let _ = limiter.admit(key(0), "bench/limit").await;
    let mut took = Vec::with_capacity(DECISIONS);
    let cpu = cpu_time();
    for i in 0..DECISIONS {
        let started = Instant::now();
        assert!(limiter.admit(key(i), "bench/limit").await.is_ok());
        took.push(started.elapsed());
    }
    let cpu = (cpu_time() - cpu) / DECISIONS as u32;
    took.sort();
    (took[took.len() / 2], cpu)
}

/// Decisions per second and CPU per decision, 64 in flight at once.
async fn concurrent(limiter: &Arc<RateLimiter>) -> (f64, Duration) {
    let cpu = cpu_time();
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let limiter = Arc::clone(limiter);
            tokio::spawn(async move {
                for i in 0..DECISIONS / 64 {
                    assert!(
                        limiter
                            .admit(key(t * 1000 + i), "bench/limit")
                            .await
                            .is_ok()
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a task");
    }
    let n = (DECISIONS / 64 * 64) as u32;
    let elapsed = started.elapsed();
    (f64::from(n) / elapsed.as_secs_f64(), (cpu_time() - cpu) / n)
}

async fn ping_round_trip(endpoint: &str) -> Duration {
    let client = redis::Client::open(format!("redis://{endpoint}/")).expect("a client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("a connection");
    let mut took = Vec::with_capacity(DECISIONS);
    for _ in 0..DECISIONS {
        let started = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .expect("PONG");
        took.push(started.elapsed());
    }
    took.sort();
    took[took.len() / 2]
}

async fn wait_for(endpoint: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(endpoint).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("redis-server did not listen on {endpoint}");
}

/// This process's user and system CPU time so far, from `/proc/self/stat` (clock ticks of
/// 10 ms: the runs are long enough for that).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // After the command name: the state, then numbers; utime and stime are the 14th and 15th
    // fields of the whole line.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
