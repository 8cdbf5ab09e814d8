//! `digestAuth` on a request: the answer checked ([`crate::htdigest`]), a nonce count that
//! does not rise refused as a replay, and a refusal answered with a fresh challenge.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dashmap::DashMap;
use http::header::{self, HeaderValue};
use http::{Request, StatusCode};

use super::Stop;
use crate::body;
use crate::htdigest::{Digest, NONCE_LIFETIME, Refusal};

/// Nonces seen at most; past it, those expired are forgotten.
const MAX_NONCES: usize = 100_000;

/// Nonce → the highest count this process accepted with it: an answer seen again (a replay)
/// does not count higher. Per process: a replay to another replica within the nonce's
/// lifetime is not caught (the README says so).
static SEEN: LazyLock<DashMap<String, u32>> = LazyLock::new(DashMap::new);

/// The user `req` authenticates as, or the 401 asking again.
pub(super) fn check<'d, B>(digest: &'d Digest, req: &Request<B>) -> Result<&'d str, Stop> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let refusal = match digest.check(given, req.method().as_str(), uri, now) {
        Ok(accepted) => {
            if fresh(accepted.nonce, accepted.count, now) {
                return Ok(accepted.user);
            }
            Refusal::Wrong
        }
        Err(r) => r,
    };
    let mut reply = body::text(
        StatusCode::UNAUTHORIZED,
        Bytes::from_static(b"401 unauthorized\n"),
    );
    if let Ok(challenge) = HeaderValue::from_str(&digest.challenge(now, refusal == Refusal::Stale))
    {
        reply
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    Err(Stop::Reply(Box::new(reply)))
}

/// Whether `count` is higher than any this process accepted with `nonce`, recording it.
fn fresh(nonce: String, count: u32, now: u64) -> bool {
    if SEEN.len() >= MAX_NONCES {
        SEEN.retain(|nonce, _| {
            let issued = nonce
                .split_once('-')
                .and_then(|(t, _)| u64::from_str_radix(t, 16).ok())
                .unwrap_or(0);
            now.saturating_sub(issued) <= NONCE_LIFETIME
        });
    }
    let mut last = SEEN.entry(nonce).or_insert(0);
    if count <= *last {
        return false;
    }
    *last = count;
    true
}
