//! Where ACME accounts and certificates are kept, and the lock that stops two fjord instances
//! ordering the same certificate. They are kept in a directory, which instances on one node,
//! or on nodes sharing a volume, can share. The trait is the seam for a store shared through
//! the cluster (Secrets and a Lease), which is not built yet.

use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

/// A key-value store for ACME state, with a lock per key.
pub trait Storage: Send + Sync + 'static {
    /// Held while one instance orders a certificate; dropping it releases the lock.
    type Guard: Send;

    /// The value at `key`, if any.
    fn read(&self, key: &str) -> impl Future<Output = std::io::Result<Option<Vec<u8>>>> + Send;

    /// Stores `data` at `key`, atomically. `secret` values (private keys) are readable by the
    /// owner only.
    fn write(
        &self,
        key: &str,
        data: &[u8],
        secret: bool,
    ) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Waits for the lock named `key`.
    fn lock(&self, key: &str) -> impl Future<Output = std::io::Result<Self::Guard>> + Send;
}

/// A directory: `account.json`, `certs/NAME.crt`, `certs/NAME.key` (0600), `locks/NAME.lock`.
#[derive(Clone, Debug)]
pub struct Files {
    root: PathBuf,
}

impl Files {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
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

impl Storage for Files {
    type Guard = std::fs::File;

    async fn read(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await?
    }

    async fn write(&self, key: &str, data: &[u8], secret: bool) -> std::io::Result<()> {
        let path = self.path(key)?;
        let data = data.to_vec();
        tokio::task::spawn_blocking(move || {
            let dir = path.parent().unwrap_or(&path);
            std::fs::create_dir_all(dir)?;
            let tmp = path.with_extension("tmp");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(if secret { 0o600 } else { 0o644 })
                .open(&tmp)?;
            file.write_all(&data)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })
        .await?
    }

    async fn lock(&self, key: &str) -> std::io::Result<std::fs::File> {
        let path = self.path(&format!("locks/{key}.lock"))?;
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(path.parent().unwrap_or(&path))?;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            file.lock()?;
            Ok(file)
        })
        .await?
    }
}

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
}
