//! `artifacts:` — where binary and oversized tool outputs go (a local directory or S3), link
//! lifetimes, the inline budget; and the built-in storage tools' quota.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::raw;
use super::{Problems, Secret, dur, http_url};

/// What one caller (its folder below `files/`) may keep with the built-in storage tools.
#[derive(Debug, Clone, Copy)]
pub struct FilesQuota {
    /// Most bytes.
    pub bytes: u64,
    /// Most files.
    pub count: usize,
}

/// The artifact store.
#[derive(Debug, Clone)]
pub struct ArtifactsConfig {
    /// Which store, with its settings.
    pub store: StoreConfig,
    /// Lifetime of links.
    pub url_ttl: Duration,
    /// Inline budget of one tool output, in bytes.
    pub max_inline_bytes: usize,
    /// How long tool-output artifacts are kept (`None`: forever).
    pub retention: Option<Duration>,
}

/// Which artifact store.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// Files served by the gateway.
    Local {
        /// Directory.
        dir: PathBuf,
        /// Base URL for links; derived from the bound address when absent.
        public_url: Option<String>,
        /// Link-signing secret (generated when absent).
        secret: Option<Secret>,
    },
    /// An S3-compatible server.
    S3(Box<S3Config>),
}

/// An S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Endpoint the gateway uses.
    pub endpoint: Url,
    /// Endpoint in presigned links.
    pub public_endpoint: Url,
    /// Bucket.
    pub bucket: String,
    /// Signing region.
    pub region: String,
    /// Access key id.
    pub access_key_id: Secret,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Path-style addressing.
    pub path_style: bool,
    /// Longest time one S3 request may take.
    pub timeout: Duration,
}

pub(super) fn artifacts_config(raw: raw::RawArtifacts, p: &mut Problems) -> Option<ArtifactsConfig> {
    let url_ttl = dur(raw.url_ttl, 24 * 3600);
    if url_ttl.is_zero() || url_ttl > Duration::from_secs(7 * 24 * 3600) {
        p.push("artifacts.url_ttl", "must be between 1 s and 7 days");
    }
    let max_inline_bytes = raw.max_inline_bytes.unwrap_or(16 * 1024);
    if max_inline_bytes < 256 {
        p.push("artifacts.max_inline_bytes", "must be at least 256");
    }
    let store = match raw.store.as_deref().unwrap_or("local") {
        "local" => {
            if let Some(url) = &raw.local.public_url {
                p.check("artifacts.local.public_url", http_url(url))?;
            }
            StoreConfig::Local {
                dir: raw.local.dir.unwrap_or_else(|| PathBuf::from(super::DEFAULT_ARTIFACT_DIR)),
                public_url: raw.local.public_url.map(|u| u.trim_end_matches('/').to_owned()),
                secret: raw.local.secret.filter(|s| !s.is_empty()).map(Secret),
            }
        }
        "s3" => {
            let s3 = raw.s3;
            let required = |p: &mut Problems, key: &str, v: Option<String>| {
                let v = v.filter(|v| !v.is_empty());
                if v.is_none() {
                    p.push(format!("artifacts.s3.{key}"), "missing (required when artifacts.store is s3)");
                }
                v
            };
            if s3.timeout.as_ref().is_some_and(|t| t.0.is_zero()) {
                p.push("artifacts.s3.timeout", "must be more than 0");
            }
            let endpoint = required(p, "endpoint", s3.endpoint);
            let access = required(p, "access_key_id", s3.access_key_id);
            let secret = required(p, "secret_access_key", s3.secret_access_key);
            let endpoint = p.check("artifacts.s3.endpoint", http_url(&endpoint?))?;
            let public_endpoint = match s3.public_endpoint {
                Some(u) => p.check("artifacts.s3.public_endpoint", http_url(&u))?,
                None => endpoint.clone(),
            };
            StoreConfig::S3(Box::new(S3Config {
                endpoint,
                public_endpoint,
                bucket: s3.bucket.unwrap_or_else(|| "mcp-storage".into()),
                region: s3.region.unwrap_or_else(|| "us-east-1".into()),
                access_key_id: Secret(access?),
                secret_access_key: Secret(secret?),
                path_style: s3.path_style.unwrap_or(true),
                timeout: dur(s3.timeout, 10),
            }))
        }
        other => {
            p.push("artifacts.store", format!("unknown store `{other}` (use local or s3)"));
            return None;
        }
    };
    let retention = dur(raw.retention, 7 * 24 * 3600);
    if !retention.is_zero() && retention < url_ttl {
        p.push("artifacts.retention", "must be at least artifacts.url_ttl (a link must not outlive its object), or 0");
    }
    let retention = (!retention.is_zero()).then_some(retention);
    Some(ArtifactsConfig { store, url_ttl, max_inline_bytes, retention })
}
