//! The `s3` store: MinIO, SeaweedFS or AWS through aws-sdk-s3 (path-style addressing, static
//! credentials, checksums only when required so every S3 server accepts the requests). Links
//! are presigned GETs signed for `public_endpoint`, the host users' browsers see (the signature
//! covers the host). The bucket is created when missing, on first use, so a store that is down
//! at startup does not keep the gateway from starting.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{ArtifactError, ArtifactMeta, ArtifactStore, ObjectInfo, valid_key};
use crate::config::S3Config;

/// An S3 bucket.
pub struct S3Store {
    client: Client,
    presigner: Client,
    bucket: String,
    /// Set once the bucket is known to exist.
    bucket_ready: tokio::sync::OnceCell<()>,
    /// When creating the bucket last failed: for a short while after, saves fail at once
    /// instead of queueing behind another attempt at a store that is down.
    last_failure: parking_lot::Mutex<Option<(std::time::Instant, String)>>,
}

/// How long a failed bucket check makes saves fail fast.
const COOL_DOWN: Duration = Duration::from_secs(5);

impl S3Store {
    /// Builds the clients; no request is made yet.
    pub fn new(cfg: &S3Config) -> Self {
        let client = |endpoint: &url::Url| {
            let credentials = Credentials::new(
                cfg.access_key_id.expose(),
                cfg.secret_access_key.expose(),
                None,
                None,
                "mcp-middleware-config",
            );
            let timeouts = TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5).min(cfg.timeout))
                .operation_timeout(cfg.timeout)
                .build();
            let conf = aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(cfg.region.clone()))
                .credentials_provider(credentials)
                .endpoint_url(endpoint.as_str().trim_end_matches('/'))
                .force_path_style(cfg.path_style)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
                .timeout_config(timeouts)
                // Fail fast when the store is down: the tool loop degrades instead of waiting.
                .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(2))
                .build();
            Client::from_conf(conf)
        };
        Self {
            client: client(&cfg.endpoint),
            presigner: client(&cfg.public_endpoint),
            bucket: cfg.bucket.clone(),
            bucket_ready: tokio::sync::OnceCell::new(),
            last_failure: parking_lot::Mutex::new(None),
        }
    }

    /// Creates the bucket if it does not exist (once; retried after a failure, but not within
    /// a few seconds of the last one).
    pub async fn ensure_bucket(&self) -> Result<(), ArtifactError> {
        if self.bucket_ready.initialized() {
            return Ok(());
        }
        if let Some(why) = self.cooling_down() {
            return Err(ArtifactError::Unavailable(why));
        }
        // Saves that queued behind a failed attempt find the cool-down set when their turn comes:
        // they fail at once instead of each trying again in turn.
        let attempt = || async {
            if let Some(why) = self.cooling_down() {
                return Err(ArtifactError::Unavailable(why));
            }
            let created = self.create_bucket().await;
            if let Err(e) = &created {
                self.failed(e);
            }
            created
        };
        self.bucket_ready.get_or_try_init(attempt).await.map(|_| ())
    }

    /// Starts the cool-down: saves in the next few seconds fail at once.
    fn failed(&self, error: &ArtifactError) {
        let why = match error {
            ArtifactError::Unavailable(why) => why.clone(),
            other => other.to_string(),
        };
        *self.last_failure.lock() = Some((std::time::Instant::now(), why));
    }

    /// The last failure's reason, while its cool-down lasts.
    fn cooling_down(&self) -> Option<String> {
        let last = self.last_failure.lock();
        last.as_ref().filter(|(at, _)| at.elapsed() < COOL_DOWN).map(|(_, why)| format!("{why} (a few seconds ago)"))
    }

    async fn create_bucket(&self) -> Result<(), ArtifactError> {
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => {
                tracing::info!(bucket = %self.bucket, "created the artifact bucket");
                Ok(())
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// The SDK's error chain names the internal S3 address and SDK types: all of it goes to the
/// log, and callers (tool messages, REST bodies, readiness) get the store's reason in a few
/// words — its error code (`SignatureDoesNotMatch`, `NoSuchBucket`…), or what kept the request
/// from arriving (connection refused, no answer in time) — never an address or a secret.
fn unavailable<E>(e: SdkError<E, HttpResponse>) -> ArtifactError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    tracing::warn!(error = %DisplayErrorContext(&e), "S3 request failed");
    ArtifactError::Unavailable(reason(&e))
}

/// The reason of a failed S3 request, in plain words.
fn reason<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let cut = |text: &str| text.chars().take(200).collect::<String>();
    match e {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match (service.err().code(), service.err().message()) {
                (Some(code), Some(message)) => format!("S3 refused the request: {code} ({})", cut(message)),
                (Some(code), None) => format!("S3 refused the request: {code}"),
                // A HEAD answer has no body to name the error: the status says enough.
                _ if status == 403 => "S3 refused the request: HTTP 403 (check the access key and secret)".into(),
                _ => format!("S3 refused the request: HTTP {status}"),
            }
        }
        SdkError::TimeoutError(_) => "S3 did not answer in time".into(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => "S3 did not answer in time".into(),
        SdkError::DispatchFailure(_) => {
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                    return format!("S3 could not be reached: {}", io_reason(io.kind()));
                }
                source = cause.source();
            }
            "S3 could not be reached".into()
        }
        SdkError::ResponseError(_) => "S3's answer could not be read".into(),
        _ => "the S3 request could not be made".into(),
    }
}

fn io_reason(kind: std::io::ErrorKind) -> &'static str {
    use std::io::ErrorKind::*;
    match kind {
        ConnectionRefused => "connection refused",
        ConnectionReset | ConnectionAborted => "connection reset",
        TimedOut => "connection timed out",
        NotFound => "host not found",
        _ => "network error",
    }
}

/// Any other failure on the way (a body cut short, a presigning setting).
fn failed_on_the_way<E: std::error::Error>(e: E) -> ArtifactError {
    tracing::warn!(error = %e, "S3 request failed");
    ArtifactError::Unavailable("the S3 request failed on the way".into())
}

fn check(key: &str) -> Result<(), ArtifactError> {
    if valid_key(key) { Ok(()) } else { Err(ArtifactError::InvalidKey(key.to_owned())) }
}

impl ArtifactStore for S3Store {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Bytes,
        meta: &'a ArtifactMeta,
    ) -> BoxFuture<'a, Result<(), ArtifactError>> {
        async move {
            check(key)?;
            self.ensure_bucket().await?;
            // Recently down: fail at once rather than make every tool result wait a timeout.
            if let Some(why) = self.cooling_down() {
                return Err(ArtifactError::Unavailable(why));
            }
            let mut req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(&meta.content_type)
                .body(ByteStream::from(bytes));
            if let Some(source) = &meta.source {
                // User metadata travels as an HTTP header: keep it printable ASCII.
                let safe: String = source.chars().map(|c| if c.is_ascii_graphic() { c } else { '_' }).collect();
                req = req.metadata("source", safe);
            }
            req.send().await.map_err(|e| {
                let e = unavailable(e);
                self.failed(&e);
                e
            })?;
            Ok(())
        }
        .boxed()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Bytes, ArtifactMeta), ArtifactError>> {
        async move {
            check(key)?;
            let out = self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    ArtifactError::NotFound(key.to_owned())
                } else {
                    unavailable(e)
                }
            })?;
            let content_type = out.content_type().unwrap_or("application/octet-stream").to_owned();
            let source = out.metadata().and_then(|m| m.get("source")).cloned();
            let bytes = out.body.collect().await.map_err(failed_on_the_way)?.into_bytes();
            let meta = ArtifactMeta { content_type, size: bytes.len() as u64, source };
            Ok((bytes, meta))
        }
        .boxed()
    }

    fn list<'a>(&'a self, prefix: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<ObjectInfo>, ArtifactError>> {
        async move {
            // Listing before anything was stored (a quota check, say) finds an empty bucket.
            self.ensure_bucket().await?;
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(unavailable)?;
                for object in page.contents() {
                    if let Some(key) = object.key() {
                        let size = object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                        out.push(ObjectInfo { key: key.to_owned(), size });
                    }
                }
                match page.next_continuation_token() {
                    _ if out.len() >= limit => break,
                    Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                    _ => break,
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            out.truncate(limit);
            Ok(out)
        }
        .boxed()
    }

    fn sweep(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, ArtifactError>> {
        async move {
            self.ensure_bucket().await?;
            let cutoff = std::time::SystemTime::now() - older_than;
            let (mut swept, mut token) = (0, None::<String>);
            loop {
                // The top level only (`/` as delimiter): the built-in tools' files/ stay.
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .delimiter("/")
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(unavailable)?;
                for object in page.contents() {
                    let (Some(key), Some(modified)) = (object.key(), object.last_modified()) else { continue };
                    let old = std::time::SystemTime::try_from(*modified).is_ok_and(|t| t < cutoff);
                    if old && super::is_content_key(key) {
                        self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(unavailable)?;
                        swept += 1;
                    }
                }
                match page.next_continuation_token() {
                    Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                    _ => break,
                }
            }
            Ok(swept)
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), ArtifactError>> {
        async move {
            self.ensure_bucket().await?;
            // A GET (not a HEAD): its error body names the reason (`SignatureDoesNotMatch`).
            self.client.list_objects_v2().bucket(&self.bucket).max_keys(1).send().await.map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ArtifactError>> {
        async move {
            check(key)?;
            self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn url<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<String, ArtifactError>> {
        async move {
            check(key)?;
            let presigning = PresigningConfig::expires_in(ttl).map_err(failed_on_the_way)?;
            // The type S3 will serve is the stored one (the extension's when it cannot be read);
            // anything a browser could run (HTML, SVG, unknown) downloads instead of rendering.
            let head = self.client.head_object().bucket(&self.bucket).key(key).send().await;
            let stored = head.ok().and_then(|h| h.content_type().map(str::to_owned));
            let mime = stored.as_deref().map_or(super::mime_of(key), super::safe_content_type).to_owned();
            let mut request = self.presigner.get_object().bucket(&self.bucket).key(key).response_content_type(&mime);
            if !super::served_inline(&mime) {
                let name = key.rsplit('/').next().unwrap_or("artifact");
                request = request.response_content_disposition(format!("attachment; filename=\"{name}\""));
            }
            let request = request.presigned(presigning).await.map_err(failed_on_the_way)?;
            Ok(request.uri().to_string())
        }
        .boxed()
    }
}
