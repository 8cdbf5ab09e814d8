//! Digest access authentication (RFC 7616, MD5 with `qop=auth`, as Traefik's `digestAuth` and
//! nginx speak it): htdigest `user:realm:HA1` lines parsed, challenges made, and an
//! `Authorization: Digest` answer checked in constant time.
//!
//! Nonces carry no state: a time and an HMAC of it under a key derived from the users
//! themselves, so every replica of a DaemonSet makes and accepts the same nonces, and a client
//! may land on any of them. A nonce lives [`NONCE_LIFETIME`]; an older one gets a challenge
//! with `stale=true`, which browsers answer again without asking the user.

use aws_lc_rs::{digest, hmac};
use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq as _;

/// How long a nonce is accepted.
pub const NONCE_LIFETIME: u64 = 300;

/// One htdigest line: `user:realm:HA1`, HA1 being `MD5(user:realm:password)` in hex.
#[derive(Clone, Debug)]
pub struct DigestUser {
    /// The user's name.
    pub name: String,
    /// The realm the hash was made for.
    pub realm: String,
    ha1: String,
}

/// A digest realm's users and the key its nonces are signed with.
#[derive(Clone, Debug)]
pub struct Digest {
    /// Who may log in.
    pub users: Vec<DigestUser>,
    /// Sent in the challenge; only users of this realm can log in.
    pub realm: String,
    key: [u8; 32],
}

/// Why an answer was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No answer, or a wrong one.
    Wrong,
    /// Right but for a nonce too old: asked again with `stale=true`.
    Stale,
}

/// An accepted answer: the user, and the nonce and count it used (for the caller's replay
/// check).
#[derive(Debug, PartialEq, Eq)]
pub struct Accepted<'a> {
    /// The user's name.
    pub user: &'a str,
    /// The nonce the answer is for.
    pub nonce: String,
    /// The client's count of requests with that nonce.
    pub count: u32,
}

/// Parses htdigest lines (blank lines and `#` comments skipped).
pub fn parse_users(text: &str) -> Result<Vec<DigestUser>, String> {
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split(':').collect();
        let [name, realm, ha1] = parts.as_slice() else {
            return Err(format!("users line {} is not user:realm:hash", i + 1));
        };
        if ha1.len() != 32 || !ha1.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "users line {}: the hash of {name:?} is not 32 hex digits (MD5 of user:realm:password)",
                i + 1
            ));
        }
        users.push(DigestUser {
            name: (*name).to_owned(),
            realm: (*realm).to_owned(),
            ha1: ha1.to_ascii_lowercase(),
        });
    }
    if users.is_empty() {
        return Err("users holds no user".into());
    }
    Ok(users)
}

impl Digest {
    /// A realm for `users`; its nonce key is derived from them, the same on every replica.
    pub fn new(users: Vec<DigestUser>, realm: String) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"fjord digest nonce key\0");
        ctx.update(realm.as_bytes());
        for u in &users {
            for part in [&u.name, &u.realm, &u.ha1] {
                ctx.update(b"\0");
                ctx.update(part.as_bytes());
            }
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        Self { users, realm, key }
    }

    /// The `WWW-Authenticate` value asking for credentials at `now` (Unix seconds).
    pub fn challenge(&self, now: u64, stale: bool) -> String {
        let realm = self.realm.replace(['"', '\\'], "");
        let stale = if stale { ", stale=true" } else { "" };
        format!(
            "Digest realm=\"{realm}\", qop=\"auth\", algorithm=MD5, nonce=\"{}\", opaque=\"{}\"{stale}",
            self.nonce(now),
            self.opaque()
        )
    }

    /// Checks an `Authorization` value for a request of `method` to `uri` (its target as
    /// sent) at `now`.
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        method: &str,
        uri: &str,
        now: u64,
    ) -> Result<Accepted<'_>, Refusal> {
        let text = authorization
            .and_then(|a| std::str::from_utf8(a).ok())
            .ok_or(Refusal::Wrong)?;
        let params = text
            .strip_prefix("Digest ")
            .or_else(|| text.strip_prefix("digest "))
            .map(params)
            .ok_or(Refusal::Wrong)?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (Some(name), Some(realm), Some(nonce), Some(their_uri), Some(response)) = (
            get("username"),
            get("realm"),
            get("nonce"),
            get("uri"),
            get("response"),
        ) else {
            return Err(Refusal::Wrong);
        };
        let (Some("auth"), Some(nc), Some(cnonce)) = (get("qop"), get("nc"), get("cnonce")) else {
            return Err(Refusal::Wrong);
        };
        let count = u32::from_str_radix(nc, 16).map_err(|_| Refusal::Wrong)?;
        if realm != self.realm || their_uri != uri {
            return Err(Refusal::Wrong);
        }
        let user = self
            .users
            .iter()
            .find(|u| u.name == name && u.realm == realm)
            .ok_or(Refusal::Wrong)?;
        let issued = self.nonce_time(nonce).ok_or(Refusal::Wrong)?;
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let expected = md5_hex(&format!("{}:{nonce}:{nc}:{cnonce}:auth:{ha2}", user.ha1));
        if !bool::from(
            expected
                .as_bytes()
                .ct_eq(response.to_ascii_lowercase().as_bytes()),
        ) {
            return Err(Refusal::Wrong);
        }
        if now.saturating_sub(issued) > NONCE_LIFETIME || issued > now.saturating_add(60) {
            return Err(Refusal::Stale);
        }
        Ok(Accepted {
            user: &user.name,
            nonce: nonce.to_owned(),
            count,
        })
    }

    /// `TIME-MAC`: the time in hex and an HMAC of it.
    fn nonce(&self, now: u64) -> String {
        let time = format!("{now:x}");
        format!("{time}-{}", self.mac(&time))
    }

    /// When `nonce` was made, if this realm made it.
    fn nonce_time(&self, nonce: &str) -> Option<u64> {
        let (time, mac) = nonce.split_once('-')?;
        bool::from(self.mac(time).as_bytes().ct_eq(mac.as_bytes()))
            .then(|| u64::from_str_radix(time, 16).ok())
            .flatten()
    }

    fn opaque(&self) -> String {
        self.mac("opaque")
    }

    /// HMAC-SHA256 of `text` under the realm's key, the first 16 bytes in hex.
    fn mac(&self, text: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.key);
        let tag = hmac::sign(&key, text.as_bytes());
        tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The `name=value` pairs of a Digest answer (values quoted or not).
fn params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let name = name
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((name, value.trim().to_owned()));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client computes for `nonce`.
    fn answer(
        user: &str,
        password: &str,
        realm: &str,
        nonce: &str,
        method: &str,
        uri: &str,
    ) -> String {
        let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:00000001:abc:auth:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", qop=auth, nc=00000001, cnonce=\"abc\", response=\"{response}\""
        )
    }

    fn realm() -> Digest {
        let ha1 = md5_hex("alice:fjord:secret");
        Digest::new(
            parse_users(&format!("alice:fjord:{ha1}")).unwrap(),
            "fjord".into(),
        )
    }

    fn nonce_of(challenge: &str) -> String {
        challenge
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn the_right_answer_is_accepted_and_any_wrong_one_refused() {
        let d = realm();
        let nonce = nonce_of(&d.challenge(1000, false));
        let ok = answer("alice", "secret", "fjord", &nonce, "GET", "/a?b=1");
        let accepted = d.check(Some(ok.as_bytes()), "GET", "/a?b=1", 1010).unwrap();
        assert_eq!((accepted.user, accepted.count), ("alice", 1));
        let wrong = answer("alice", "guess", "fjord", &nonce, "GET", "/a?b=1");
        assert_eq!(
            d.check(Some(wrong.as_bytes()), "GET", "/a?b=1", 1010),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            d.check(Some(ok.as_bytes()), "GET", "/other", 1010),
            Err(Refusal::Wrong),
            "for another URI"
        );
        assert_eq!(
            d.check(Some(ok.as_bytes()), "POST", "/a?b=1", 1010),
            Err(Refusal::Wrong)
        );
        let forged = answer(
            "alice",
            "secret",
            "fjord",
            "3e8-00000000000000000000000000000000",
            "GET",
            "/",
        );
        assert_eq!(
            d.check(Some(forged.as_bytes()), "GET", "/", 1010),
            Err(Refusal::Wrong),
            "a nonce fjord did not make"
        );
        assert_eq!(
            d.check(
                Some(ok.as_bytes()),
                "GET",
                "/a?b=1",
                1000 + NONCE_LIFETIME + 1
            ),
            Err(Refusal::Stale)
        );
        assert_eq!(d.check(None, "GET", "/", 1000), Err(Refusal::Wrong));
    }

    #[test]
    fn replicas_with_the_same_users_accept_each_others_nonces() {
        let nonce = nonce_of(&realm().challenge(5000, false));
        let ok = answer("alice", "secret", "fjord", &nonce, "GET", "/");
        assert!(realm().check(Some(ok.as_bytes()), "GET", "/", 5001).is_ok());
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(parse_users("alice:fjord").unwrap_err().contains("line 1"));
        assert!(
            parse_users("alice:fjord:xyz")
                .unwrap_err()
                .contains("32 hex digits")
        );
    }
}
