//! A rate limit's buckets in Redis (or Valkey), shared by every replica: the same GCRA as the
//! local limiter, run atomically by a Lua script on Redis's own clock, so replicas whose clocks
//! disagree still agree on every bucket. One round trip per admitted request at most, over a
//! few multiplexed connections; none for a source Redis has just refused, until the time
//! Redis gave it has passed.
//!
//! Redis trouble never holds a request past `readTimeout`: the caller's `onError` decides, and
//! for a second after a failure requests go to it at once, without waiting on a Redis that is
//! down. Connections come back by themselves, and a script Redis lost (a restart) is loaded
//! again by the first request that finds it missing (`EVALSHA`, then `EVAL`).
//!
//! Several endpoints are a Redis Cluster's nodes: each bucket is one key, so the script runs
//! on the node that holds the key's slot, and the cluster's map is followed as it changes.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Client, ClientTlsConfig, ConnectionInfo, IntoConnectionInfo as _, TlsMode};
use redis::{RedisConnectionInfo, TlsCertificates};
use sha1::{Digest as _, Sha1};

use super::{Key, Limited, MAX_SOURCES};
use crate::clock;
use crate::model::middleware::RedisSpec;

/// GCRA on Redis's clock, in microseconds. `KEYS[1]` is the bucket, `ARGV` the interval and
/// the tolerance (interval × burst). Returns 0 when the request is admitted, else how long
/// until it would be. The key expires once the bucket is full again: nothing to clean up.
static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next = tat + interval
local over = next - now - tolerance
if over > 0 then return over end
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000) + 1)
return 0
",
    )
});

/// How long after a failure requests go straight to `onError`, without asking Redis.
const BACKOFF: Duration = Duration::from_secs(1);

/// One rate limit's Redis: its connections (made on first use) and what it last refused.
pub(super) struct Remote {
    spec: RedisSpec,
    /// `fjord:rl:NAMESPACE/NAME:`: buckets are the middleware's, whichever routes use it.
    prefix: String,
    conns: OnceLock<Result<Box<[Conn]>, String>>,
    next: AtomicUsize,
    /// Source → [`clock::now`] until which Redis refuses it: asked again only after.
    refused: DashMap<Key, u64>,
    /// [`clock::now`] until which Redis is not asked, after a failure.
    resting_until: AtomicU64,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("endpoints", &self.spec.endpoints)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why Redis gave no verdict.
#[derive(Debug)]
pub(super) enum Error {
    /// No answer within `readTimeout`.
    Timeout(Duration),
    /// Not asked: it failed less than [`BACKOFF`] ago.
    Resting,
    /// The connection could not be made or was lost.
    Unavailable(String),
    /// Redis answered with an error (authentication, a wrong database, the script).
    Failed(String),
}

impl Error {
    /// The `reason` label of `fjord_rate_limit_backend_errors_total`.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Error::Timeout(_) => "timeout",
            Error::Resting | Error::Unavailable(_) => "unavailable",
            Error::Failed(_) => "error",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout(t) => write!(f, "Redis did not answer within {t:?} (readTimeout)"),
            Error::Resting => write!(f, "Redis failed less than {BACKOFF:?} ago"),
            Error::Unavailable(e) => write!(f, "Redis is unreachable: {e}"),
            Error::Failed(e) => write!(f, "Redis answered with an error: {e}"),
        }
    }
}

impl Remote {
    pub(super) fn new(spec: &RedisSpec, middleware: &str) -> Self {
        Self {
            spec: spec.clone(),
            prefix: format!("fjord:rl:{middleware}:"),
            conns: OnceLock::new(),
            next: AtomicUsize::new(0),
            refused: DashMap::new(),
            resting_until: AtomicU64::new(0),
        }
    }

    /// Takes a token for `key` from its shared bucket: the verdict, or why there is none.
    /// `interval` and `tolerance` are in nanoseconds.
    pub(super) async fn admit(
        &self,
        key: &Key,
        interval: u64,
        tolerance: u64,
    ) -> Result<Result<(), Limited>, Error> {
        let asked = clock::now();
        if let Some(until) = self.refused.get(key).map(|u| *u)
            && until > asked
        {
            return Ok(Err(Limited {
                retry_after: Duration::from_nanos(until - asked),
            }));
        }
        if self.resting_until.load(Ordering::Relaxed) > asked {
            return Err(Error::Resting);
        }
        let micros = |nanos: u64| (nanos / 1000).max(1);
        let call = self.call(self.bucket(key), micros(interval), micros(tolerance));
        let wait = match tokio::time::timeout(self.spec.read_timeout, call).await {
            Ok(Ok(wait)) => wait,
            Ok(Err(e)) => return Err(self.failed(e)),
            Err(_) => return Err(self.rest(Error::Timeout(self.spec.read_timeout))),
        };
        if wait == 0 {
            return Ok(Ok(()));
        }
        // Redis judged at a moment between `asked` and now: counting from `asked` never
        // refuses a request Redis would admit.
        let wait = Duration::from_micros(wait);
        self.remember(key.clone(), asked, wait);
        Ok(Err(Limited { retry_after: wait }))
    }

    async fn call(&self, bucket: String, interval: u64, tolerance: u64) -> redis::RedisResult<u64> {
        let mut invocation = SCRIPT.prepare_invoke();
        invocation.key(bucket).arg(interval).arg(tolerance);
        match self.connection()? {
            Conn::Server(mut conn) => invocation.invoke_async(&mut conn).await,
            Conn::Cluster(mut conn) => invocation.invoke_async(&mut conn).await,
        }
    }

    /// The next connection of the pool, made at the first request (in the runtime; a
    /// snapshot can be built outside one, by `fjord check`).
    fn connection(&self) -> redis::RedisResult<Conn> {
        let conns = self.conns.get_or_init(|| connect(&self.spec));
        match conns {
            Ok(conns) => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % conns.len();
                Ok(conns[i].clone())
            }
            Err(e) => Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "cannot make a client",
                e.clone(),
            ))),
        }
    }

    /// The Redis key of `key`'s bucket. Text (a header's value, a host) is hashed: a client
    /// cannot make a key of any size.
    fn bucket(&self, key: &Key) -> String {
        match key {
            Key::Ip(ip) => format!("{}ip:{ip}", self.prefix),
            Key::Text(text) => {
                let digest = Sha1::digest(text.as_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                format!("{}t:{hex}", self.prefix)
            }
            Key::NoAddress => format!("{}none", self.prefix),
        }
    }

    /// Remembers that `key` is refused for `wait` from `asked`; memory stays bounded as the
    /// local buckets' does.
    fn remember(&self, key: Key, asked: u64, wait: Duration) {
        if self.refused.len() >= MAX_SOURCES {
            self.refused.retain(|_, until| *until > asked);
            if self.refused.len() >= MAX_SOURCES {
                return;
            }
        }
        let until = asked.saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
        self.refused.insert(key, until);
    }

    fn failed(&self, e: redis::RedisError) -> Error {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
        {
            self.rest(Error::Unavailable(e.to_string()))
        } else {
            Error::Failed(e.to_string())
        }
    }

    /// Stops asking Redis for [`BACKOFF`].
    fn rest(&self, e: Error) -> Error {
        let until = clock::now().saturating_add(u64::try_from(BACKOFF.as_nanos()).unwrap_or(0));
        self.resting_until.store(until, Ordering::Relaxed);
        e
    }
}

/// A multiplexed connection to one server, or to a Redis Cluster (to each node it needs).
#[derive(Clone)]
enum Conn {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The pool's connections: multiplexed, made lazily, remade by themselves when lost.
fn connect(spec: &RedisSpec) -> Result<Box<[Conn]>, String> {
    if spec.endpoints.len() > 1 {
        return connect_cluster(spec);
    }
    let client = client(spec).map_err(|e| e.to_string())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(spec.dial_timeout))
        .set_response_timeout(Some(spec.read_timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    (0..spec.pool_size.max(1))
        .map(|_| {
            ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                .map(Conn::Server)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// A Redis Cluster's connections, its map asked of the endpoints given; each connects to the
/// nodes in the background, and follows the map as slots move.
fn connect_cluster(spec: &RedisSpec) -> Result<Box<[Conn]>, String> {
    let nodes = spec
        .endpoints
        .iter()
        .map(|e| format!("{}://{e}", scheme(spec)));
    let mut builder = ClusterClient::builder(nodes)
        .connection_timeout(spec.dial_timeout)
        .response_timeout(spec.read_timeout)
        .retries(1);
    if let Some(user) = &spec.username {
        builder = builder.username(user);
    }
    if let Some(password) = &spec.password {
        builder = builder.password(&password.0);
    }
    if let Some(tls) = &spec.tls {
        builder = builder
            .tls(if tls.insecure_skip_verify {
                TlsMode::Insecure
            } else {
                TlsMode::Secure
            })
            .certs(certificates(tls));
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    let config = ClusterConfig::new()
        .set_connection_timeout(spec.dial_timeout)
        .set_response_timeout(spec.read_timeout);
    Ok((0..spec.pool_size.max(1))
        .map(|_| Conn::Cluster(client.get_pending_async_connection_with_config(config.clone())))
        .collect())
}

/// The URL scheme: `rediss` over TLS.
fn scheme(spec: &RedisSpec) -> &'static str {
    if spec.tls.is_some() {
        "rediss"
    } else {
        "redis"
    }
}

/// The CA and client certificate TLS to Redis is made with.
fn certificates(tls: &crate::model::middleware::ClientTls) -> TlsCertificates {
    TlsCertificates {
        client_tls: tls.client.as_ref().map(|(cert, key)| ClientTlsConfig {
            client_cert: cert.clone(),
            client_key: key.0.clone().into_bytes(),
        }),
        root_cert: tls.ca.clone(),
    }
}

/// A client for `spec`: address, credentials, database, TLS.
fn client(spec: &RedisSpec) -> redis::RedisResult<Client> {
    let fragment = match &spec.tls {
        Some(tls) if tls.insecure_skip_verify => "#insecure",
        _ => "",
    };
    let endpoint = spec.endpoints.first().map_or("", String::as_str);
    let url = format!("{}://{endpoint}/{fragment}", scheme(spec));
    let info: ConnectionInfo = url.as_str().into_connection_info()?;
    let mut redis = RedisConnectionInfo::default().set_db(spec.db);
    if let Some(user) = &spec.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &spec.password {
        redis = redis.set_password(&password.0);
    }
    let info = info.set_redis_settings(redis);
    match &spec.tls {
        None => Client::open(info),
        Some(tls) => Client::build_with_tls(info, certificates(tls)),
    }
}
