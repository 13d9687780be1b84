//! The default store: files in a directory, served by the gateway at `/artifacts/<key>` with
//! links signed by HMAC-SHA256 over key and expiry. The secret comes from config or is
//! generated once and kept beside the directory, never inside what is served:
//! `<dir>.signing-key`, mode 0600. A link's expiry may not lie further ahead than the store's
//! longest lifetime (`artifacts.url_ttl`), so even a leaked key cannot mint year-long links
//! without the clock moving with it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{ArtifactError, ArtifactMeta, ArtifactStore, ObjectInfo, hex, valid_key};

/// Files under a directory.
pub struct LocalStore {
    dir: PathBuf,
    secret: Vec<u8>,
    public_url: String,
    max_ttl: Duration,
}

/// Why a signed link was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkError {
    /// Past its expiry.
    Expired,
    /// Signature does not match (tampered key, expiry or signature).
    BadSignature,
}

impl LocalStore {
    /// Opens (creating) `dir`; `secret` signs links (generated and persisted when absent);
    /// links live at most `max_ttl`.
    pub fn open(dir: &Path, secret: Option<&str>, public_url: &str, max_ttl: Duration) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let secret = match secret {
            Some(s) => s.as_bytes().to_vec(),
            None => generated_secret(dir)?,
        };
        Ok(Self { dir: dir.to_owned(), secret, public_url: public_url.trim_end_matches('/').to_owned(), max_ttl })
    }

    /// A key for `purpose` derived from this store's signing secret.
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        super::derive_key(&self.secret, purpose)
    }

    fn path(&self, key: &str) -> Result<PathBuf, ArtifactError> {
        if !valid_key(key) || key.starts_with('.') {
            return Err(ArtifactError::InvalidKey(key.to_owned()));
        }
        Ok(self.dir.join(key))
    }

    /// HMAC-SHA256 over `key`, a newline and `expires`.
    fn mac(&self, key: &str, expires: u64) -> Hmac<Sha256> {
        // HMAC takes keys of any length (longer ones are hashed): this never falls back.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    fn sign(&self, key: &str, expires: u64) -> String {
        hex(&self.mac(key, expires).finalize().into_bytes())
    }

    /// Checks a link's expiry and signature (constant-time).
    pub fn verify(&self, key: &str, expires: u64, signature: &str) -> Result<(), LinkError> {
        let given = decode_hex(signature).ok_or(LinkError::BadSignature)?;
        self.mac(key, expires).verify_slice(&given).map_err(|_| LinkError::BadSignature)?;
        let now = now();
        if now > expires {
            return Err(LinkError::Expired);
        }
        // Links the gateway made expire within `max_ttl` (a minute's slack for clock steps).
        if expires > now.saturating_add(self.max_ttl.as_secs()).saturating_add(60) {
            return Err(LinkError::BadSignature);
        }
        Ok(())
    }

    /// Reads a file for serving.
    pub async fn read(&self, key: &str) -> Result<Bytes, ArtifactError> {
        let path = self.path(key)?;
        tokio::fs::read(&path).await.map(Bytes::from).map_err(|_| ArtifactError::NotFound(key.to_owned()))
    }
}

/// The persisted signing secret of `dir`, generated on first use: a file beside the directory
/// (`<dir>.signing-key`), readable by the gateway's user only. A key left inside the served
/// directory by an older version is removed (it may have been exposed).
fn generated_secret(dir: &Path) -> std::io::Result<Vec<u8>> {
    let _ = std::fs::remove_file(dir.join(".signing-key"));
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".signing-key");
    let path = dir.with_file_name(name);
    if let Ok(existing) = std::fs::read(&path)
        && existing.len() >= 32
    {
        restrict(&path)?;
        return Ok(existing);
    }
    let fresh = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, fresh.as_bytes())?;
    restrict(&path)?;
    Ok(fresh.into_bytes())
}

/// Makes `path` readable and writable by its owner only.
fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn io(e: std::io::Error) -> ArtifactError {
    ArtifactError::Unavailable(e.to_string())
}

impl ArtifactStore for LocalStore {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Bytes,
        meta: &'a ArtifactMeta,
    ) -> BoxFuture<'a, Result<(), ArtifactError>> {
        async move {
            let path = self.path(key)?;
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(io)?;
            }
            // Write then rename, so a reader never sees half a file.
            let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
            tokio::fs::write(&tmp, &bytes).await.map_err(io)?;
            tokio::fs::rename(&tmp, &path).await.map_err(io)?;
            let meta_json = serde_json::to_vec(meta).unwrap_or_default();
            tokio::fs::write(meta_path(&path), meta_json).await.map_err(io)?;
            Ok(())
        }
        .boxed()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Bytes, ArtifactMeta), ArtifactError>> {
        async move {
            let bytes = self.read(key).await?;
            let path = self.path(key)?;
            let meta = tokio::fs::read(meta_path(&path))
                .await
                .ok()
                .and_then(|m| serde_json::from_slice(&m).ok())
                .unwrap_or_else(|| ArtifactMeta {
                    content_type: super::mime_of(key).to_owned(),
                    size: bytes.len() as u64,
                    source: None,
                });
            Ok((bytes, meta))
        }
        .boxed()
    }

    fn list<'a>(&'a self, prefix: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<ObjectInfo>, ArtifactError>> {
        async move {
            let mut out = Vec::new();
            let mut stack = vec![self.dir.clone()];
            while let Some(dir) = stack.pop() {
                if out.len() >= limit {
                    break;
                }
                let Ok(mut entries) = tokio::fs::read_dir(&dir).await else { continue };
                while let Ok(Some(entry)) = entries.next_entry().await {
                    let path = entry.path();
                    let Ok(rel) = path.strip_prefix(&self.dir) else { continue };
                    let key = rel.to_string_lossy().replace('\\', "/");
                    let Ok(ft) = entry.file_type().await else { continue };
                    if ft.is_dir() {
                        stack.push(path);
                    } else if !key.starts_with('.')
                        && !key.ends_with(".meta.json")
                        && !key.contains(".tmp-")
                        && key.starts_with(prefix)
                    {
                        let size = entry.metadata().await.map_or(0, |m| m.len());
                        out.push(ObjectInfo { key, size });
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        }
        .boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ArtifactError>> {
        async move {
            let path = self.path(key)?;
            let _ = tokio::fs::remove_file(meta_path(&path)).await;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io(e)),
            }
        }
        .boxed()
    }

    fn sweep(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, ArtifactError>> {
        async move {
            let mut swept = 0;
            let mut entries = tokio::fs::read_dir(&self.dir).await.map_err(io)?;
            while let Ok(Some(entry)) = entries.next_entry().await {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !super::is_content_key(&name) {
                    continue;
                }
                let age = entry.metadata().await.ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
                if age.is_some_and(|age| age > older_than) {
                    let path = entry.path();
                    let _ = tokio::fs::remove_file(meta_path(&path)).await;
                    if tokio::fs::remove_file(&path).await.is_ok() {
                        swept += 1;
                    }
                }
            }
            Ok(swept)
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), ArtifactError>> {
        async move {
            match tokio::fs::metadata(&self.dir).await {
                Ok(meta) if meta.is_dir() && !meta.permissions().readonly() => Ok(()),
                Ok(_) => Err(ArtifactError::Unavailable("the artifact directory is not a writable directory".into())),
                Err(e) => {
                    Err(ArtifactError::Unavailable(format!("the artifact directory cannot be used: {}", e.kind())))
                }
            }
        }
        .boxed()
    }

    fn url<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<String, ArtifactError>> {
        async move {
            self.path(key)?;
            let expires = now() + ttl.as_secs();
            Ok(format!("{}/artifacts/{key}?expires={expires}&signature={}", self.public_url, self.sign(key, expires)))
        }
        .boxed()
    }
}

fn meta_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".meta.json");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_and_refuse_tampering() {
        let dir = std::env::temp_dir().join(format!("mcpmw-local-{}", uuid::Uuid::new_v4().simple()));
        let store = LocalStore::open(&dir, None, "http://gw", Duration::from_secs(3600)).unwrap();
        let sig = store.sign("a.png", now() + 60);
        assert_eq!(store.verify("a.png", now() + 60, &sig), Ok(()));
        assert_eq!(store.verify("b.png", now() + 60, &sig), Err(LinkError::BadSignature));
        assert_eq!(store.verify("a.png", now() + 61, &sig), Err(LinkError::BadSignature));
        assert_eq!(store.verify("a.png", now() + 60, "zz"), Err(LinkError::BadSignature));
        let old = now() - 10;
        assert_eq!(store.verify("a.png", old, &store.sign("a.png", old)), Err(LinkError::Expired));
        // The generated secret is persisted: a reopened store accepts old links.
        let again = LocalStore::open(&dir, None, "http://gw", Duration::from_secs(3600)).unwrap();
        assert_eq!(again.verify("a.png", now() + 60, &sig), Ok(()));
        // … kept outside the served directory, for its owner only.
        assert!(!dir.join(".signing-key").exists());
        let key_file = dir.with_file_name(format!("{}.signing-key", dir.file_name().unwrap().to_string_lossy()));
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        // A link signed for a year is refused even with the right key.
        let far = now() + 365 * 24 * 3600;
        assert_eq!(store.verify("a.png", far, &store.sign("a.png", far)), Err(LinkError::BadSignature));
    }
}
