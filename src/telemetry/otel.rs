//! OpenTelemetry traces over OTLP (HTTP/protobuf), off unless configured.
//!
//! On when `telemetry.otlp.endpoint` is set, or when the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
//! / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables are (and `OTEL_SDK_DISABLED` is not `true`,
//! nor `OTEL_TRACES_EXPORTER` `none`). The exporter itself reads the other `OTEL_EXPORTER_OTLP_*`
//! variables (headers, timeout, compression); the resource reads `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES`.
//!
//! Spans are `tracing` spans of the [`TARGET`] target (made in [`super::spans`]); the
//! `tracing-opentelemetry` layer turns them into OTLP spans and sees nothing else (no log line
//! or event becomes a span event, so nothing the log redactor would have scrubbed is exported).
//! When traces are off the target is disabled in the log filter: those spans are never built,
//! and [`enabled`] keeps their attributes from being computed.
//!
//! Batches leave from the SDK's own thread; their HTTP requests run on the gateway's runtime
//! through our reqwest client (`RuntimeClient`), bounded in time and in the bytes read back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use crate::config::TelemetryConfig;

/// The `tracing` target of the spans that are exported (and of nothing else).
pub const TARGET: &str = "otel";

/// The service name when neither the config nor `OTEL_SERVICE_NAME` gives one.
const DEFAULT_SERVICE_NAME: &str = "mcp-middleware";

/// Longest wait for the collector's answer to one batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of a collector's answer read (a partial-success message is small).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Whether spans are exported: set once at start, read on the hot path.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported. Span attributes are computed only when they are.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The running exporter: flushed and stopped by [`Traces::shutdown`].
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    /// Where spans go, for the log (no credentials, no query).
    shown: String,
}

/// Where the spans go, from the config or the standard variables (`None`: traces are off).
fn destination(config: &TelemetryConfig, env: impl Fn(&str) -> Option<String>) -> Option<Destination> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
    {
        return None;
    }
    match &config.otlp_traces_url {
        Some(url) => Some(Destination::Configured(url.to_string())),
        None if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() => {
            Some(Destination::FromEnvironment)
        }
        None => None,
    }
}

/// Where the exporter sends.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// `telemetry.otlp.endpoint` + `/v1/traces`.
    Configured(String),
    /// The exporter reads `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` itself.
    FromEnvironment,
}

impl Traces {
    /// Starts the exporter when traces are configured; must run inside the runtime (batches are
    /// sent on it). `Err` is a configuration the exporter refused (a bad variable).
    pub fn start(config: &TelemetryConfig) -> Result<Option<Self>, String> {
        let Some(destination) = destination(config, |name| std::env::var(name).ok()) else {
            return Ok(None);
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_http_client(RuntimeClient { client, runtime });
        if let Destination::Configured(url) = &destination {
            builder = builder.with_endpoint(url.clone());
        }
        let exporter = builder.build().map_err(|e| e.to_string())?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        match &config.service_name {
            Some(name) => resource = resource.with_service_name(name.clone()),
            None if std::env::var_os("OTEL_SERVICE_NAME").is_none()
                && !std::env::var("OTEL_RESOURCE_ATTRIBUTES")
                    .is_ok_and(|a| a.split(',').any(|kv| kv.trim_start().starts_with("service.name="))) =>
            {
                resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
            }
            None => {}
        }
        let resource =
            resource.with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))).build();
        // A client's sampled trace is always continued (and an unsampled one is not); new ones
        // are kept at the configured ratio.
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("mcp-middleware");
        ENABLED.store(true, Ordering::Relaxed);
        let shown = match (&destination, &config.otlp_traces_url) {
            (Destination::Configured(_), Some(url)) => {
                let mut url = url.clone();
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.set_query(None);
                url.to_string()
            }
            _ => "the OTEL_EXPORTER_OTLP_* variables' endpoint".to_owned(),
        };
        Ok(Some(Self { provider, tracer, shown }))
    }

    /// Where the spans go (no credentials), for the start-up log line.
    pub fn destination(&self) -> &str {
        &self.shown
    }

    /// The `tracing` layer that exports [`TARGET`] spans and sees nothing else.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        use tracing_subscriber::Layer as _;
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.clone())
            .with_location(false)
            .with_threads(false)
            .with_level(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(
                tracing_subscriber::filter::filter_fn(|meta| meta.target() == TARGET)
                    .with_max_level_hint(tracing::Level::INFO),
            )
    }

    /// Sends what is buffered and stops (at most a few seconds). Call outside the runtime's
    /// worker threads: the last batch is sent on the runtime.
    pub fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "traces: the last spans may not have been sent");
        }
    }
}

/// The exporter's HTTP client: our reqwest client, run on the gateway's runtime (the SDK's
/// batch thread has none).
#[derive(Debug)]
struct RuntimeClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RuntimeClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request.map(reqwest::Body::from))?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let mut response = client.execute(request).await?;
            let status = response.status();
            let mut answer = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                let room = MAX_ANSWER_BYTES.saturating_sub(answer.len());
                answer.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
                if answer.len() >= MAX_ANSWER_BYTES {
                    break;
                }
            }
            Ok::<_, reqwest::Error>((status, answer))
        });
        let (status, answer) = sent.await??;
        let mut response = http::Response::new(Bytes::from(answer));
        *response.status_mut() = status;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: Option<&str>) -> TelemetryConfig {
        TelemetryConfig {
            otlp_traces_url: url.map(|u| url::Url::parse(u).unwrap()),
            service_name: None,
            sample_ratio: 1.0,
        }
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_given() {
        let none = |_: &str| None;
        assert_eq!(destination(&config(None), none), None);
        let configured = config(Some("http://127.0.0.1:4318/v1/traces"));
        assert_eq!(
            destination(&configured, none),
            Some(Destination::Configured("http://127.0.0.1:4318/v1/traces".into()))
        );
        let env = |name: &str| (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://collector:4318".to_owned());
        assert_eq!(destination(&config(None), env), Some(Destination::FromEnvironment));
        let blank = |name: &str| (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| " ".to_owned());
        assert_eq!(destination(&config(None), blank), None, "an empty variable is no endpoint");
    }

    #[test]
    fn the_standard_switches_turn_traces_off() {
        let configured = config(Some("http://127.0.0.1:4318/v1/traces"));
        let disabled = |name: &str| (name == "OTEL_SDK_DISABLED").then(|| "TRUE".to_owned());
        assert_eq!(destination(&configured, disabled), None);
        let no_exporter = |name: &str| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned());
        assert_eq!(destination(&configured, no_exporter), None);
    }
}
