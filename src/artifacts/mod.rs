//! Artifacts: tool outputs too binary or too large for a model's context, stored once and shared
//! as expiring links.
//!
//! One trait, [`ArtifactStore`], with two implementations chosen by `artifacts.store`: `local`
//! (the default; files in a directory, served by the gateway at `/artifacts/<key>` with an
//! HMAC-signed, expiring URL) and `s3` (MinIO or any S3 server; presigned GET URLs). Keys are
//! content-addressed (`<sha256>.<ext>`), so the same bytes stored twice are one object.

mod local;
mod s3;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

pub use local::{LinkError, LocalStore};
pub use s3::S3Store;

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// No object under this key.
    #[error("no artifact `{0}`")]
    NotFound(String),
    /// The key is not one this store could have produced (e.g. path traversal).
    #[error("invalid artifact key `{0}`")]
    InvalidKey(String),
    /// The store could not be reached or failed.
    #[error("artifact store unavailable: {0}")]
    Unavailable(String),
}

/// Metadata kept with every object.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArtifactMeta {
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// `server/tool` that produced it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A stored object and the link to it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Artifact {
    /// Store key.
    pub key: String,
    /// Expiring link.
    pub url: String,
    /// MIME type.
    pub mime_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// One object in a listing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// A place to keep artifacts. The built-in tools depend on this trait only.
pub trait ArtifactStore: Send + Sync {
    /// Stores `bytes` under `key` (overwriting is harmless: keys are content hashes).
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Bytes,
        meta: &'a ArtifactMeta,
    ) -> BoxFuture<'a, Result<(), ArtifactError>>;
    /// Reads an object and its metadata.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Bytes, ArtifactMeta), ArtifactError>>;
    /// Lists objects whose key starts with `prefix`, at most `limit` of them (the first in key
    /// order on S3; any of them on the local store, which stops walking at `limit`).
    fn list<'a>(&'a self, prefix: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<ObjectInfo>, ArtifactError>>;
    /// Deletes an object (absent is fine).
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ArtifactError>>;
    /// Deletes the tool-output artifacts (content keys at the top level; never the built-in
    /// tools' `files/`) stored longer ago than `older_than`; returns how many went.
    fn sweep(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, ArtifactError>>;
    /// Whether the store works now (readiness asks, every few seconds at most).
    fn check(&self) -> BoxFuture<'_, Result<(), ArtifactError>>;
    /// An expiring link to an object.
    fn url<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<String, ArtifactError>>;
}

/// The store plus the policy for links.
#[derive(Clone)]
pub struct Artifacts {
    /// The backing store.
    pub store: Arc<dyn ArtifactStore>,
    /// Lifetime of links.
    pub url_ttl: Duration,
    /// A key derived from the store's persistent secret (the local signing secret or the S3
    /// secret key), for what the gateway signs besides links: the same on every restart and on
    /// every replica sharing the store. See [`derive_key`].
    pub gateway_key: [u8; 32],
}

/// A 32-byte key for `purpose`, derived from `secret` by HMAC-SHA256 (so one secret serves
/// several purposes without one's key revealing another's).
pub fn derive_key(secret: &[u8], purpose: &str) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret) else { return [0; 32] };
    mac.update(b"mcp-middleware/");
    mac.update(purpose.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

impl Artifacts {
    /// Stores content-addressed bytes and returns its link.
    pub async fn save(&self, bytes: Bytes, mime: &str, source: Option<&str>) -> Result<Artifact, ArtifactError> {
        let key = content_key(&bytes, mime);
        let meta =
            ArtifactMeta { content_type: mime.to_owned(), size: bytes.len() as u64, source: source.map(str::to_owned) };
        self.store.put(&key, bytes, &meta).await?;
        crate::metrics::metrics().artifacts_stored.inc();
        let url = self.store.url(&key, self.url_ttl).await?;
        Ok(Artifact { key, url, mime_type: meta.content_type, size: meta.size })
    }
}

/// `<sha256 hex>.<ext>`: the same bytes and type always give the same key.
pub fn content_key(bytes: &[u8], mime: &str) -> String {
    let digest = Sha256::digest(bytes);
    format!("{}.{}", hex(&digest), extension(mime))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A file extension for common MIME types (`bin` otherwise).
pub fn extension(mime: &str) -> &'static str {
    match mime.split(';').next().unwrap_or("").trim() {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/svg+xml" => "svg",
        "audio/wav" | "audio/x-wav" => "wav",
        "audio/mpeg" => "mp3",
        "application/pdf" => "pdf",
        "application/json" => "json",
        "text/plain" => "txt",
        "text/markdown" => "md",
        "text/html" => "html",
        "text/csv" => "csv",
        _ => "bin",
    }
}

/// The MIME type for a key's extension (used when serving local files).
pub fn mime_of(key: &str) -> &'static str {
    match key.rsplit('.').next().unwrap_or("") {
        "png" => "image/png",
        "jpg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether a browser may render this type inline on the origin serving it: images (not SVG,
/// which runs scripts), audio, video and plain text. Everything else — HTML, SVG, JavaScript,
/// XML, PDF (a document format with scripts and forms of its own), unknown — is served as a
/// download in a CSP sandbox.
pub fn served_inline(mime: &str) -> bool {
    let essence = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let (kind, sub) = essence.split_once('/').unwrap_or(("", ""));
    match kind {
        "image" => !sub.contains("svg"),
        "audio" | "video" => true,
        "text" => sub == "plain",
        _ => false,
    }
}

/// A stored content type fit for a `Content-Type` header: `type/subtype` of token characters
/// with optional parameters, or `application/octet-stream`.
pub fn safe_content_type(stored: &str) -> &str {
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
    let essence = stored.split(';').next().unwrap_or("").trim();
    let fits = essence.split_once('/').is_some_and(|(t, s)| token(t) && token(s))
        && stored.len() <= 200
        && stored.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    if fits { stored } else { "application/octet-stream" }
}

/// A tool output's key: `<sha256 hex>.<ext>` at the top level (never a stored file's).
pub fn is_content_key(key: &str) -> bool {
    let hash = key.split('.').next().unwrap_or("");
    hash.len() == 64
        && hash.chars().all(|c| c.is_ascii_hexdigit())
        && !key.contains('/')
        && !key.ends_with(".meta.json")
}

/// Deletes old tool-output artifacts every little while (a quarter of `retention`, between a
/// second and an hour) until `shutdown`.
pub async fn sweep_forever(store: Arc<dyn ArtifactStore>, retention: Duration, shutdown: CancellationToken) {
    let every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match store.sweep(retention).await {
            Ok(0) => {}
            Ok(swept) => tracing::info!(swept, "expired artifacts deleted"),
            Err(e) => tracing::warn!(error = %e, "artifact sweep failed; trying again later"),
        }
    }
}

/// Keys are `[A-Za-z0-9._-]` segments separated by `/`, never `.`/`..` segments: nothing a
/// path could escape with.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_content_addressed_and_safe() {
        let a = content_key(b"png bytes", "image/png");
        assert_eq!(a, content_key(b"png bytes", "image/png"));
        assert_ne!(a, content_key(b"other bytes", "image/png"));
        assert!(a.ends_with(".png") && a.len() == 64 + 4);
        assert!(valid_key(&a) && valid_key("files/report-1.txt"));
        for bad in ["../etc/passwd", "a/../../b", "/abs", "a//b", "a\\b", "", "%2e%2e"] {
            assert!(!valid_key(bad), "{bad}");
        }
    }
}
