//! htpasswd credentials for basic authentication: the `users` lines parsed (bcrypt, `{SHA}` and
//! Apache's `$apr1$` MD5), and an `Authorization` header checked against them in constant time.

use base64::Engine as _;
use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq as _;

/// One htpasswd line: `user:hash`.
#[derive(Clone, Debug)]
pub struct User {
    /// The user's name.
    pub name: String,
    hash: Hash,
}

#[derive(Clone, Debug)]
enum Hash {
    Bcrypt(String),
    Sha1(Vec<u8>),
    Apr1 { salt: String, full: String },
}

impl User {
    /// A user whose password is known in clear (a `kubernetes.io/basic-auth` Secret): kept as
    /// its SHA-1 digest, compared in constant time like a `{SHA}` line.
    pub fn plain(name: &str, password: &str) -> Self {
        Self {
            name: name.to_owned(),
            hash: Hash::Sha1(sha1::Sha1::digest(password.as_bytes()).to_vec()),
        }
    }
}

/// Parses htpasswd `users` (one `user:hash` a line; blank lines and `#` comments skipped).
pub fn parse_users(text: &str) -> Result<Vec<User>, String> {
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, hash)) = line.split_once(':') else {
            return Err(format!("users line {} is not user:hash", i + 1));
        };
        let hash = if hash.starts_with("$2") {
            Hash::Bcrypt(hash.to_owned())
        } else if let Some(b64) = hash.strip_prefix("{SHA}") {
            let digest = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| format!("users line {}: {{SHA}} hash is not base64", i + 1))?;
            Hash::Sha1(digest)
        } else if let Some(rest) = hash.strip_prefix("$apr1$") {
            let salt = rest.split('$').next().unwrap_or_default().to_owned();
            Hash::Apr1 {
                salt,
                full: hash.to_owned(),
            }
        } else {
            return Err(format!(
                "users line {}: hash of {name:?} is not bcrypt ($2y$), SHA1 ({{SHA}}) or MD5 ($apr1$)",
                i + 1
            ));
        };
        users.push(User {
            name: name.to_owned(),
            hash,
        });
    }
    if users.is_empty() {
        return Err("users holds no user".into());
    }
    Ok(users)
}

/// Whether an `Authorization: Basic` value names a user with the right password; the user's
/// name when it does.
pub fn check<'u>(users: &'u [User], authorization: &[u8]) -> Option<&'u str> {
    let encoded = authorization
        .strip_prefix(b"Basic ")
        .or_else(|| authorization.strip_prefix(b"basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (name, password) = decoded.split_once(':')?;
    let user = users.iter().find(|u| u.name == name)?;
    let ok = match &user.hash {
        Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        Hash::Sha1(digest) => {
            let computed = sha1::Sha1::digest(password.as_bytes());
            computed.as_slice().ct_eq(digest).into()
        }
        Hash::Apr1 { salt, full } => apr1(password.as_bytes(), salt.as_bytes())
            .as_bytes()
            .ct_eq(full.as_bytes())
            .into(),
    };
    ok.then_some(user.name.as_str())
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Apache's `$apr1$` variant of md5-crypt.
fn apr1(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let salt = &salt[..salt.len().min(8)];
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(MAGIC);
    ctx.update(salt);
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();
    for chunk in password.chunks(16) {
        ctx.update(&alt[..chunk.len()]);
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    let mut out = String::from_utf8_lossy(MAGIC).into_owned();
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut push = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(char::from(ITOA64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        push(
            (u32::from(fin[a]) << 16) | (u32::from(fin[b]) << 8) | u32::from(fin[c]),
            4,
        );
    }
    push(u32::from(fin[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
        .into_bytes()
    }

    #[test]
    fn apr1_matches_openssl() {
        // `openssl passwd -apr1 -salt abcdefgh secret` and `-salt xy 'p@ss wörd'`
        assert_eq!(
            apr1(b"secret", b"abcdefgh"),
            "$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/"
        );
        assert_eq!(
            apr1("p@ss wörd".as_bytes(), b"xy"),
            "$apr1$xy$7UDkHEb6bPRyjb1pKo90E."
        );
    }

    #[test]
    fn every_hash_kind_checks_the_password() {
        let bcrypt = bcrypt::hash("b-pass", 4).unwrap();
        let users = parse_users(&format!(
            "# ops\nalice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\nbob:{bcrypt}\ncarol:{{SHA}}{}\n",
            base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(b"c-pass"))
        ))
        .unwrap();
        assert_eq!(check(&users, &basic("alice", "secret")), Some("alice"));
        assert_eq!(check(&users, &basic("alice", "Secret")), None);
        assert_eq!(check(&users, &basic("bob", "b-pass")), Some("bob"));
        assert_eq!(check(&users, &basic("carol", "c-pass")), Some("carol"));
        assert_eq!(check(&users, &basic("dave", "secret")), None);
        assert_eq!(check(&users, b"Bearer x"), None);
        assert!(
            parse_users("eve:plaintext")
                .unwrap_err()
                .contains("not bcrypt")
        );
    }
}
