//! Where ACME accounts and certificates are kept, the lock that stops two fjord instances
//! ordering the same certificate, and how an order's challenge answers reach every instance
//! that the CA may ask. Two stores: a directory ([`Files`], for `--manifests` and instances
//! sharing a volume) and the API server ([`super::secrets::Secrets`], for a DaemonSet).

use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::challenge::Challenges;

/// A certificate as stored: its PEM chain and PEM private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub chain: Vec<u8>,
    pub key: Vec<u8>,
}

/// One challenge answer, as every instance the CA may reach must give it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub(crate) enum Answer {
    /// HTTP-01: `/.well-known/acme-challenge/TOKEN` answers the key authorization.
    Http01 {
        token: String,
        key_authorization: String,
    },
    /// TLS-ALPN-01: a handshake for `name` with ALPN `acme-tls/1` gets a certificate carrying
    /// `digest` (base64 of the key authorization's SHA-256).
    TlsAlpn01 { name: String, digest: String },
}

impl Answer {
    /// Makes this instance give the answer.
    pub(crate) fn install(&self, challenges: &Challenges) -> Result<(), String> {
        match self {
            Answer::Http01 {
                token,
                key_authorization,
            } => {
                challenges.set_http01(token, key_authorization);
                Ok(())
            }
            Answer::TlsAlpn01 { name, digest } => {
                use base64::Engine as _;
                let digest = base64::engine::general_purpose::STANDARD
                    .decode(digest)
                    .map_err(|e| format!("TLS-ALPN-01 digest for {name}: {e}"))?;
                challenges.set_tls_alpn01(name, &digest)
            }
        }
    }

    /// Stops giving it.
    pub(crate) fn uninstall(&self, challenges: &Challenges) {
        match self {
            Answer::Http01 { token, .. } => challenges.clear_http01(token),
            Answer::TlsAlpn01 { name, .. } => challenges.clear_tls_alpn01(name),
        }
    }
}

/// ACME state shared by the instances that use one store, with a lock per certificate.
pub(crate) trait Storage: Send + Sync + 'static {
    /// Held while one instance orders a certificate; dropping it releases the lock.
    type Guard: Send;

    /// The account's credentials (JSON), if there is an account yet.
    fn account(&self) -> impl Future<Output = std::io::Result<Option<Vec<u8>>>> + Send;

    /// Stores the account's credentials.
    fn put_account(&self, json: &[u8]) -> impl Future<Output = std::io::Result<()>> + Send;

    /// The certificate named by its first DNS name, `primary`, if one is stored.
    fn certificate(
        &self,
        primary: &str,
    ) -> impl Future<Output = std::io::Result<Option<Stored>>> + Send;

    /// Stores the certificate for `names` (the first is `primary`), valid until `not_after`
    /// (Unix seconds), replacing any before it at once: never a chain without its key.
    fn put_certificate(
        &self,
        names: &[String],
        stored: &Stored,
        not_after: i64,
    ) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Waits for the lock on the certificate `primary`; its holder alone orders it.
    fn lock(&self, primary: &str) -> impl Future<Output = std::io::Result<Self::Guard>> + Send;

    /// Waits for the lock on the account; its holder alone creates it.
    fn lock_account(&self) -> impl Future<Output = std::io::Result<Self::Guard>> + Send;

    /// Makes every instance sharing the store give `answers` for the order of `primary`, and
    /// returns once they all do, so the CA is told to look only then. This instance gives
    /// them already.
    fn present(
        &self,
        primary: &str,
        answers: &[Answer],
    ) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Withdraws what [`Storage::present`] published for `primary`.
    fn withdraw(&self, primary: &str) -> impl Future<Output = ()> + Send;
}

/// A directory of ACME state.
#[derive(Clone, Debug)]
pub(crate) struct Files {
    root: PathBuf,
}

/// What [`Files::prepare`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Prepared {
    Created,
    /// It was someone else's: it and everything in it changed hands.
    Handed,
    AlreadyOwned,
}

impl Files {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the directory if missing (parents `0755`, itself `0700`) and hands it, with
    /// what is in it, to `uid`:`gid`. Run as root before fjord runs as that user, which could
    /// not write a directory a kubelet created for a `hostPath` (root's, `0755`). Needs only
    /// `CAP_CHOWN`: children change hands before their directory, while root can still enter
    /// it, and a directory the user already owns is left alone, so running again is a no-op.
    pub(crate) fn prepare(&self, uid: u32, gid: u32) -> std::io::Result<Prepared> {
        let root = &self.root;
        let created = match std::fs::symlink_metadata(root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = root.parent() {
                    std::fs::create_dir_all(parent).map_err(at(parent))?;
                }
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(root)
                    .map_err(at(root))?;
                true
            }
            Err(e) => return Err(at(root)(e)),
            Ok(m) if !m.is_dir() => {
                return Err(at(root)(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "not a directory",
                )));
            }
            Ok(m) if m.uid() == uid && m.gid() == gid => return Ok(Prepared::AlreadyOwned),
            Ok(_) => false,
        };
        // The mode first: once the directory is the user's, root without CAP_FOWNER may not.
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(at(root))?;
        hand_over(root, uid, gid)?;
        Ok(if created {
            Prepared::Created
        } else {
            Prepared::Handed
        })
    }

    fn path(&self, key: &str) -> std::io::Result<PathBuf> {
        // Keys are fjord's own (`certs/` + a DNS name); refuse anything that could leave root.
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bad storage key {key:?}"),
            ));
        }
        Ok(self.root.join(key))
    }
}

/// Gives `path` and, for a directory, everything below it to `uid`:`gid`, deepest first.
/// Links change hands themselves; what they point to is not followed.
fn hand_over(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path).map_err(at(path))?.is_dir() {
        for entry in std::fs::read_dir(path).map_err(at(path))? {
            hand_over(&entry.map_err(at(path))?.path(), uid, gid)?;
        }
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(at(path))
}

/// Prefixes an I/O error with the path it is about: the operator's first question.
fn at(path: &Path) -> impl Fn(std::io::Error) -> std::io::Error + '_ {
    move |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Files {
    async fn read(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(at(&path)(e)),
        })
        .await?
    }

    async fn write(&self, key: &str, data: &[u8], secret: bool) -> std::io::Result<()> {
        let path = self.path(key)?;
        let data = data.to_vec();
        tokio::task::spawn_blocking(move || {
            let dir = path.parent().unwrap_or(&path);
            std::fs::create_dir_all(dir).map_err(at(dir))?;
            let tmp = path.with_extension("tmp");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(if secret { 0o600 } else { 0o644 })
                .open(&tmp)
                .map_err(at(&tmp))?;
            file.write_all(&data).map_err(at(&tmp))?;
            file.sync_all().map_err(at(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(at(&path))
        })
        .await?
    }
}

/// `account.json`, `certs/PRIMARY.crt`, `certs/PRIMARY.key` (0600), `locks/PRIMARY.lock`.
impl Storage for Files {
    type Guard = std::fs::File;

    async fn account(&self) -> std::io::Result<Option<Vec<u8>>> {
        self.read(ACCOUNT).await
    }

    async fn put_account(&self, json: &[u8]) -> std::io::Result<()> {
        self.write(ACCOUNT, json, true).await
    }

    async fn certificate(&self, primary: &str) -> std::io::Result<Option<Stored>> {
        let Some(chain) = self.read(&format!("certs/{primary}.crt")).await? else {
            return Ok(None);
        };
        let Some(key) = self.read(&format!("certs/{primary}.key")).await? else {
            return Ok(None);
        };
        Ok(Some(Stored { chain, key }))
    }

    async fn put_certificate(
        &self,
        names: &[String],
        stored: &Stored,
        _not_after: i64,
    ) -> std::io::Result<()> {
        let primary = names.first().map(String::as_str).unwrap_or_default();
        // The key first: a reader that finds the new chain finds its key.
        self.write(&format!("certs/{primary}.key"), &stored.key, true)
            .await?;
        self.write(&format!("certs/{primary}.crt"), &stored.chain, false)
            .await
    }

    async fn lock(&self, primary: &str) -> std::io::Result<std::fs::File> {
        self.lock_file(&format!("locks/{primary}.lock")).await
    }

    async fn lock_account(&self) -> std::io::Result<std::fs::File> {
        // No DNS name starts with a dot: no certificate's lock is this one.
        self.lock_file("locks/.account.lock").await
    }

    /// Instances sharing a directory share a node: the CA reaches this one, which answers.
    async fn present(&self, _primary: &str, _answers: &[Answer]) -> std::io::Result<()> {
        Ok(())
    }

    async fn withdraw(&self, _primary: &str) {}
}

impl Files {
    /// Waits for an exclusive lock on the file at `key`.
    async fn lock_file(&self, key: &str) -> std::io::Result<std::fs::File> {
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || {
            let dir = path.parent().unwrap_or(&path);
            std::fs::create_dir_all(dir).map_err(at(dir))?;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(at(&path))?;
            file.lock().map_err(at(&path))?;
            Ok(file)
        })
        .await?
    }
}

/// Where an account's credentials are kept in a directory.
const ACCOUNT: &str = "account.json";

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[tokio::test]
    async fn round_trips_and_keeps_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path());
        assert_eq!(files.read("certs/a.example.com.key").await.unwrap(), None);
        files
            .write("certs/a.example.com.key", b"secret", true)
            .await
            .unwrap();
        assert_eq!(
            files
                .read("certs/a.example.com.key")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"secret"[..])
        );
        let mode = std::fs::metadata(dir.path().join("certs/a.example.com.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(files.read("../etc/passwd").await.is_err());
        let _guard = files.lock("a.example.com").await.unwrap();
    }

    #[tokio::test]
    async fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let files = Files::new(dir.path().join("file"));
        let e = files.write("account.json", b"{}", false).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: File exists (os error 17)",
                dir.path().join("file").display()
            )
        );
    }

    #[test]
    fn prepare_creates_the_directory_for_its_user_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        let (uid, gid) = (meta.uid(), meta.gid());
        let root = dir.path().join("new/acme");
        let files = Files::new(&root);
        assert_eq!(files.prepare(uid, gid).unwrap(), Prepared::Created);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        // A parent the user must pass through stays open to it.
        assert_eq!(mode(&dir.path().join("new")), 0o755 & !umask());
        assert_eq!(files.prepare(uid, gid).unwrap(), Prepared::AlreadyOwned);

        std::fs::write(dir.path().join("file"), "").unwrap();
        let e = Files::new(dir.path().join("file"))
            .prepare(uid, gid)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: not a directory", dir.path().join("file").display())
        );
    }

    /// The process's umask, read back from a directory created with `0777`.
    fn umask() -> u32 {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        std::fs::DirBuilder::new()
            .mode(0o777)
            .create(&probe)
            .unwrap();
        !std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777
    }
}
