//! What the gateway serves and where it forwards: `upstream:`, `limits:`, `http:`,
//! `mcp_facade:` and `logging:`.

use std::time::Duration;

use url::Url;

use super::Secret;

/// Which hosts and browser origins may reach the gateway.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Accepted `Host` values (lower case; with or without a port) as configured; when empty,
    /// an open gateway on loopback accepts loopback names only and a keyed one any host.
    pub allowed_hosts: Vec<String>,
    /// Origins allowed cross-origin (`scheme://host[:port]`, lower case, no trailing slash).
    pub allowed_origins: Vec<String>,
    /// The gateway as browsers reach it (no trailing slash); `None`: the request's own.
    pub public_url: Option<String>,
}

/// The MCP facade at `/mcp`.
#[derive(Debug, Clone)]
pub struct FacadeConfig {
    /// Serve it.
    pub enabled: bool,
    /// Most sessions at once, all keys together.
    pub max_sessions: usize,
    /// Most sessions of one key.
    pub max_sessions_per_key: usize,
    /// Idle life of a session.
    pub session_idle: Duration,
}

/// The model gateway requests are forwarded to.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Base URL including `/v1`, without a trailing slash.
    pub base_url: Url,
    /// Bearer key sent upstream, if any.
    pub api_key: Option<Secret>,
    /// Forward the client's `Authorization` instead of `api_key`.
    pub forward_client_auth: bool,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
    /// Retries of connection failures before any byte was sent.
    pub max_retries: u32,
    /// Forward every `/v1/*` route, not only the OpenAI API's.
    pub forward_all_routes: bool,
}

impl UpstreamConfig {
    /// The base URL without credentials or query, safe to show in errors and logs.
    pub fn display_url(&self) -> String {
        let mut u = self.base_url.clone();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_query(None);
        u.to_string().trim_end_matches('/').to_owned()
    }
}

/// HTTP server limits.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Drain period after a shutdown signal.
    pub shutdown_grace: Duration,
    /// SSE keep-alive comment interval.
    pub sse_keepalive: Duration,
    /// Largest total size of a request's headers.
    pub max_header_bytes: usize,
    /// Longest wait for a request's headers (and idle life of a keep-alive connection).
    pub header_read_timeout: Duration,
    /// Most client connections at once (`None`: derived from the open-files limit at start).
    pub max_connections: Option<usize>,
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pretty" | "text" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format `{other}` (use pretty or json)")),
        }
    }
}

/// `telemetry:` — OpenTelemetry traces (see `telemetry::otel`).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// `telemetry.otlp.endpoint` + `/v1/traces` (`None`: the standard variables decide).
    pub otlp_traces_url: Option<url::Url>,
    /// `service.name` of the spans (`None`: `OTEL_SERVICE_NAME`, else `mcp-middleware`).
    pub service_name: Option<String>,
    /// Share of new traces recorded (0.0–1.0).
    pub sample_ratio: f64,
}

/// Log output.
#[derive(Debug, Clone)]
pub struct LoggingConfig {
    /// Output format.
    pub format: LogFormat,
    /// Default tracing filter.
    pub level: String,
}
