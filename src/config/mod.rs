//! Configuration: `config.yaml` → environment references resolved → raw structs (unknown keys
//! rejected) → validated [`Config`].
//!
//! Every error names the key path (`upstream.connect_timeout: …`) and all validation problems
//! are reported at once. The environment is injected through [`EnvSource`], so tests never
//! touch the process environment.

mod artifacts;
mod auth;
pub mod env;
pub mod raw;
mod redact;
mod servers;
mod serving;
mod state;
mod tools;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use artifacts::artifacts_config;
pub use artifacts::{ArtifactsConfig, FilesQuota, S3Config, StoreConfig};
use auth::check_tool_patterns;
pub use auth::{ApprovalRule, AuthConfig, KeyConfig, MAX_IDENTITY_VALUE, UserIdentity, check_exposure, header_safe};
pub use env::{EnvSource, ProcessEnv};
use raw::{DurationValue, RawConfig, RawToolPolicy};
pub use redact::{MASK, Redactor, redact_url, secret_name};
use servers::mcp_server;
pub use servers::{BUILTIN_SERVER, McpServerConfig, McpTransportConfig, OAuthConfig, OAuthGrant, SEPARATOR};
pub use serving::{FacadeConfig, HttpConfig, LimitsConfig, LogFormat, LoggingConfig, TelemetryConfig, UpstreamConfig};
pub use state::{MIN_KEY_CHARS, StateConfig, default_state_url};
pub use tools::{ModelPolicy, PROVIDER_TOOL_LIMIT, SelectionConfig, ToolLoopConfig, ToolSelection};

/// Default listen address: loopback, so a gateway without keys is reachable only from this host.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4001";
/// Default upstream: LiteLLM on the same host.
pub const DEFAULT_UPSTREAM: &str = "http://localhost:4000/v1";
/// Default directory of the local artifact store (and, beside it, the state store's file).
pub const DEFAULT_ARTIFACT_DIR: &str = "data/artifacts";
/// Environment variable naming the config file when `--config` is absent.
pub const CONFIG_ENV: &str = "MCP_MIDDLEWARE_CONFIG";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path that was tried.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is not well-formed.
    #[error("config is not valid YAML: {0}")]
    Syntax(String),
    /// One or more keys are missing, unknown or invalid; each line names its key path.
    #[error("invalid config:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// A secret string (API key, token). It has no `Display`, and its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is sent, never where it is logged.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The validated configuration the program runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// The model gateway.
    pub upstream: UpstreamConfig,
    /// Inbound authentication.
    pub auth: AuthConfig,
    /// HTTP server limits.
    pub limits: LimitsConfig,
    /// Log output.
    pub logging: LoggingConfig,
    /// OpenTelemetry traces.
    pub telemetry: TelemetryConfig,
    /// MCP servers in name order.
    pub mcp_servers: Vec<McpServerConfig>,
    /// The chat tool loop.
    pub tool_loop: ToolLoopConfig,
    /// Per-model policies, most specific pattern first.
    pub models: Vec<ModelPolicy>,
    /// The artifact store.
    pub artifacts: ArtifactsConfig,
    /// The MCP facade at `/mcp`.
    pub facade: FacadeConfig,
    /// Tool budgets, ranking and the discovery tool.
    pub selection: SelectionConfig,
    /// Hosts and browser origins.
    pub http: HttpConfig,
    /// What one caller may keep with the built-in storage tools.
    pub files_quota: FilesQuota,
    /// The state store.
    pub state: StateConfig,
    /// Tool calls that wait for the user's approval.
    pub approval: ApprovalConfig,
    /// Model completions for MCP servers that may ask (`sampling: true`).
    pub sampling: SamplingConfig,
    /// The Responses API's stored responses.
    pub responses: ResponsesConfig,
    /// The web console at `/ui`.
    pub console: ConsoleConfig,
}

/// `console:`: the web console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Whether `/ui` is served.
    pub enabled: bool,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// How long tool calls are kept for the Activity page (zero: no audit trail).
    pub activity_ttl: Duration,
}

/// `responses:`: how long and how large stored responses are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesConfig {
    /// How long a stored response is kept (zero: none is).
    pub store_ttl: Duration,
    /// Largest stored response, its conversation included.
    pub max_stored_bytes: usize,
    /// URL prefixes a request's hosted `mcp` tool may name in `server_url` (normalised).
    pub server_urls: Vec<String>,
}

impl ResponsesConfig {
    /// Whether a request may make the gateway connect to `url`: an http(s) URL without
    /// credentials under one of `server_urls`.
    pub fn allows_server_url(&self, url: &url::Url) -> bool {
        matches!(url.scheme(), "http" | "https")
            && url.username().is_empty()
            && url.password().is_none()
            && self
                .server_urls
                .iter()
                .any(|prefix| url.as_str().strip_prefix(prefix.as_str()).is_some_and(|rest| under_prefix(prefix, rest)))
    }
}

/// Whether `rest`, what follows an allowed prefix, stays under it: at a path boundary (`…/mcp`
/// allows `…/mcp` and `…/mcp/x`, never `…/mcp-admin`), and plain — no `..;/`, `%2f`, `\`, `;`
/// or fragment a server behind the prefix could read as a way out of it.
fn under_prefix(prefix: &str, rest: &str) -> bool {
    let boundary = prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?']);
    let plain = rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~' | b'?' | b'=' | b'&'));
    boundary && plain && !rest.split(['/', '?']).any(|segment| segment == "..")
}

/// `responses.server_urls` entry, normalised: an http(s) URL without credentials, query or
/// fragment (a host alone ends with `/`, so `https://a.com` never allows `https://a.com.evil`).
fn server_url_prefix(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http(s) URL".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    Ok(parsed.to_string())
}

/// `sampling:`: which model answers MCP servers' sampling requests outside a chat, and the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingConfig {
    /// The model outside a chat (none: refused there).
    pub model: Option<String>,
    /// Most tokens one completion may produce.
    pub max_tokens: u32,
}

/// `approval:`: the rule every chat follows, and how long an answer may take.
#[derive(Debug, Clone, Default)]
pub struct ApprovalConfig {
    /// Tools that need approval (a key's own rule adds to it).
    pub rule: ApprovalRule,
    /// How long a parked request waits.
    pub ttl: Duration,
}

/// Where the config file is: `--config`, else `$MCP_MIDDLEWARE_CONFIG`, else `./config.yaml`.
pub fn config_path(flag: Option<PathBuf>, env: &dyn EnvSource) -> PathBuf {
    flag.or_else(|| env.var(CONFIG_ENV).filter(|s| !s.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("config.yaml"))
}

/// Reads and validates the file at `path`.
pub fn load_file(path: &Path, env: &dyn EnvSource) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    load_str(&text, env)
}

/// Parses and validates YAML text. An empty document yields the defaults.
pub fn load_str(yaml: &str, env: &dyn EnvSource) -> Result<Config, ConfigError> {
    let mut value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(yaml).map_err(|e| ConfigError::Syntax(e.to_string()))?;
    if value.is_null() {
        value = serde_yaml_ng::Value::Mapping(Default::default());
    }
    let mut problems = Vec::new();
    env::resolve(&mut value, env, "", &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "(root)".to_owned() } else { path };
        ConfigError::Invalid(vec![format!("{path}: {}", e.into_inner())])
    })?;
    validate(raw)
}

/// Default of `tool_selection.max_tool_bytes`: about 4 k tokens of tool definitions, chosen by
/// measuring (`tests/integration/catalogs.rs`, on the official servers' catalog and its
/// labelled queries) what the ranked offer within a budget plus `find_tools` still serves.
pub const DEFAULT_MAX_TOOL_BYTES: usize = 16 * 1024;

/// A byte budget of 0 means none.
fn no_budget_when_zero(bytes: usize) -> usize {
    if bytes == 0 { usize::MAX } else { bytes }
}

/// Checks a raw config and builds the typed one, reporting every problem found.
pub fn validate(mut raw: RawConfig) -> Result<Config, ConfigError> {
    let mut p = Problems::default();
    let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = p.check(
        "listen",
        listen.parse::<SocketAddr>().map_err(|_| format!("`{listen}` is not an address:port such as 0.0.0.0:4001")),
    );

    let up = raw.upstream;
    let base = up.base_url.as_deref().unwrap_or(DEFAULT_UPSTREAM).trim_end_matches('/');
    let base_url = p.check("upstream.base_url", http_url(base));
    let upstream = base_url.map(|base_url| UpstreamConfig {
        base_url,
        api_key: up.api_key.filter(|k| !k.is_empty()).map(Secret),
        forward_client_auth: up.forward_client_auth.unwrap_or(false),
        connect_timeout: dur(up.connect_timeout, 10),
        read_timeout: dur(up.read_timeout, 300),
        max_retries: up.max_retries.unwrap_or(2),
        forward_all_routes: up.forward_all_routes.unwrap_or(false),
    });

    // An empty entry (`- ${MCP_MIDDLEWARE_API_KEY:-}` with the variable unset) is no key; with no
    // key left the gateway is open, which `check_exposure` allows on loopback only.
    let api_keys: Vec<Secret> = raw.auth.api_keys.into_iter().filter(|k| !k.trim().is_empty()).map(Secret).collect();

    let keys = auth::keys(raw.auth.keys, &mut p);
    let approval_ttl = raw.approval.ttl.take();
    let approval = ApprovalConfig {
        rule: auth::approval_rule(std::mem::take(&mut raw.approval), "approval", true, &mut p),
        ttl: dur(approval_ttl, 3600),
    };
    let sampling = SamplingConfig {
        model: raw.sampling.model.take().filter(|m| !m.trim().is_empty()),
        max_tokens: raw.sampling.max_tokens.unwrap_or(1024),
    };
    if sampling.max_tokens == 0 {
        p.push("sampling.max_tokens", "must be greater than 0");
    }
    if approval.ttl.is_zero() {
        p.push("approval.ttl", "must be greater than 0");
    }
    let responses = ResponsesConfig {
        store_ttl: dur(raw.responses.store_ttl.take(), 30 * 24 * 3600),
        max_stored_bytes: usize::try_from(raw.responses.max_stored_bytes.unwrap_or(4 * 1024 * 1024))
            .unwrap_or(usize::MAX),
        server_urls: std::mem::take(&mut raw.responses.server_urls)
            .into_iter()
            .enumerate()
            .filter_map(|(i, url)| p.check(format!("responses.server_urls[{i}]"), server_url_prefix(&url)))
            .collect(),
    };
    let console = ConsoleConfig {
        enabled: raw.console.enabled.unwrap_or(true),
        session_ttl: dur(raw.console.session_ttl.take(), 12 * 3600),
        activity_ttl: dur(raw.console.activity_ttl.take(), 7 * 24 * 3600),
    };
    if console.session_ttl.is_zero() {
        p.push("console.session_ttl", "must be greater than 0");
    }

    let tl = raw.tool_loop;
    let tool_loop = ToolLoopConfig {
        max_rounds: tl.max_rounds.unwrap_or(10),
        max_tool_calls: tl.max_tool_calls.unwrap_or(50),
        max_duration: dur(tl.max_duration, 600),
        parallel_calls: tl.parallel_calls.unwrap_or(8),
        repeat_limit: tl.repeat_limit.unwrap_or(3),
        tool_cards: tl.tool_cards.unwrap_or(true),
    };
    for (key, value) in [
        ("max_rounds", tool_loop.max_rounds as usize),
        ("parallel_calls", tool_loop.parallel_calls),
        ("repeat_limit", tool_loop.repeat_limit as usize),
    ] {
        if value == 0 {
            p.push(format!("tool_loop.{key}"), "must be at least 1");
        }
    }
    let artifacts_dir = raw.artifacts.local.dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_ARTIFACT_DIR));
    let state = state::state_config(raw.state, &artifacts_dir, &mut p);
    // Tokens are secrets: a server that needs them needs the key that seals them.
    if state.encryption_key.is_none() {
        for (name, server) in &raw.mcp_servers {
            if server.auth.oauth.is_some() {
                p.push(
                    format!("mcpServers.{name}.auth.oauth"),
                    "needs state.encryption_key (any string of at least 32 characters, e.g. from \
                     MCP_MIDDLEWARE_STATE_KEY) to keep its tokens",
                );
            }
        }
    }
    let artifacts = artifacts_config(raw.artifacts, &mut p);
    for (pattern, policy) in &raw.models {
        check_tool_patterns(&format!("models.{pattern}.tools"), policy.servers.as_ref(), policy.tools.as_ref(), &mut p);
        if let Some(api) = policy.api.as_deref().filter(|a| !matches!(*a, "chat" | "responses")) {
            p.push(format!("models.{pattern}.api"), format!("must be chat or responses, not `{api}`"));
        }
    }
    let mut models: Vec<ModelPolicy> = raw
        .models
        .into_iter()
        .map(|(pattern, RawToolPolicy { servers, tools, inject, vision, max_tools, max_tool_bytes, api })| {
            ModelPolicy {
                pattern,
                responses_api: api.as_deref() == Some("responses"),
                selection: ToolSelection { servers, tools },
                inject: inject.unwrap_or(true),
                vision: vision.unwrap_or(false),
                max_tools: max_tools.map(|m| m.min(PROVIDER_TOOL_LIMIT)),
                max_tool_bytes: max_tool_bytes.map(no_budget_when_zero),
            }
        })
        .collect();
    // Most specific first: exact names before globs, longer patterns before shorter.
    models.sort_by_key(|m| (m.pattern.contains('*'), std::cmp::Reverse(m.pattern.len())));

    let max_body = raw.limits.max_body_bytes.unwrap_or(32 * 1024 * 1024);
    if max_body == 0 {
        p.push("limits.max_body_bytes", "must be greater than 0");
    }
    let limits = LimitsConfig {
        max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
        shutdown_grace: dur(raw.limits.shutdown_grace, 30),
        sse_keepalive: dur(raw.limits.sse_keepalive, 15),
        max_header_bytes: usize::try_from(raw.limits.max_header_bytes.unwrap_or(64 * 1024)).unwrap_or(usize::MAX),
        header_read_timeout: dur(raw.limits.header_read_timeout, 10),
        max_connections: raw.limits.max_connections.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    if limits.header_read_timeout.is_zero() {
        p.push("limits.header_read_timeout", "must be greater than 0");
    }
    if limits.max_connections == Some(0) {
        p.push("limits.max_connections", "must be greater than 0");
    }
    if limits.sse_keepalive.is_zero() {
        p.push("limits.sse_keepalive", "must be greater than 0");
    }

    let format = raw.logging.format.as_deref().unwrap_or("pretty");
    let format = p.check("logging.format", format.parse::<LogFormat>());
    let logging =
        format.map(|format| LoggingConfig { format, level: raw.logging.level.unwrap_or_else(|| "info".to_owned()) });
    let telemetry = telemetry(raw.telemetry, &mut p);

    let mut mcp_servers = Vec::new();
    if raw.mcp_servers.contains_key(BUILTIN_SERVER) {
        p.push(
            format!("mcpServers.{BUILTIN_SERVER}"),
            "the name is reserved for the built-in tools (see builtin_tools)",
        );
    }
    if raw.builtin_tools.enabled.unwrap_or(true) {
        mcp_servers.push(McpServerConfig {
            name: BUILTIN_SERVER.to_owned(),
            transport: McpTransportConfig::InProcess,
            enabled: true,
            tool_timeout: Duration::from_secs(60),
            max_call_duration: Duration::from_secs(600),
            // In process: nothing to wedge.
            ping_interval: Duration::ZERO,
            withdraw_after: Duration::from_secs(60),
            startup_timeout: Duration::from_secs(10),
            include_tools: raw.builtin_tools.include_tools,
            exclude_tools: raw.builtin_tools.exclude_tools,
            user_headers: BTreeMap::new(),
            pin_descriptions: false,
            sampling: false,
            elicitation: false,
            prefix: format!("{BUILTIN_SERVER}{SEPARATOR}"),
            oauth: None,
        });
    }
    for (name, server) in raw.mcp_servers {
        if let Some(s) = mcp_server(&name, server, &mut p) {
            mcp_servers.push(s);
        }
    }

    let raw_selection = raw.tool_selection;
    let max_tools = raw_selection.max_tools.unwrap_or(PROVIDER_TOOL_LIMIT);
    if max_tools == 0 || max_tools > PROVIDER_TOOL_LIMIT {
        p.push("tool_selection.max_tools", format!("must be between 1 and {PROVIDER_TOOL_LIMIT}"));
    }
    let always_rank = match raw_selection.mode.as_deref().unwrap_or("auto") {
        "auto" => false,
        "ranked" => true,
        other => {
            p.push("tool_selection.mode", format!("unknown mode `{other}` (use auto or ranked)"));
            false
        }
    };
    let find_tools = raw_selection.find_tools.unwrap_or_else(|| "find_tools".to_owned());
    let name_ok =
        find_tools.len() <= 64 && find_tools.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        p.push("tool_selection.find_tools", "a tool name: letters, digits, `_` and `-`, at most 64");
    }
    let selection = SelectionConfig {
        max_tools: max_tools.min(PROVIDER_TOOL_LIMIT),
        max_tool_bytes: no_budget_when_zero(raw_selection.max_tool_bytes.unwrap_or(DEFAULT_MAX_TOOL_BYTES)),
        always_rank,
        always: raw_selection.always,
        find_tools: (!find_tools.is_empty()).then_some(find_tools),
    };
    let auth = AuthConfig {
        api_keys,
        keys,
        trust_user_headers: raw.auth.trust_user_headers.unwrap_or(false),
        open: raw.auth.open.unwrap_or(false),
    };
    let hosts = if raw.http.allowed_hosts.is_empty() { raw.mcp_facade.allowed_hosts } else { raw.http.allowed_hosts };
    let allowed_hosts = hosts.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let mut allowed_origins = Vec::new();
    for (i, origin) in raw.http.cors.allowed_origins.iter().enumerate() {
        match Url::parse(origin) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                allowed_origins.push(url.origin().ascii_serialization());
            }
            _ => p.push(format!("http.cors.allowed_origins[{i}]"), "must be an origin like https://chat.example.com"),
        }
    }
    let count = |v: Option<u64>, default: usize| v.map_or(default, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let facade = FacadeConfig {
        enabled: raw.mcp_facade.enabled.unwrap_or(true),
        max_sessions: count(raw.mcp_facade.max_sessions, 1000),
        max_sessions_per_key: count(raw.mcp_facade.max_sessions_per_key, 32),
        session_idle: dur(raw.mcp_facade.session_idle, 180),
    };
    if facade.max_sessions == 0 || facade.max_sessions_per_key == 0 || facade.session_idle.is_zero() {
        p.push("mcp_facade", "max_sessions, max_sessions_per_key and session_idle must be greater than 0");
    }
    let public_url = match raw.http.public_url.filter(|u| !u.trim().is_empty()) {
        Some(url) => match Url::parse(url.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() && url.query().is_none() => {
                Some(url.as_str().trim_end_matches('/').to_owned())
            }
            _ => {
                p.push("http.public_url", "must be an http(s) URL like https://gw.example (no query)");
                None
            }
        },
        None => None,
    };
    let http = HttpConfig { allowed_hosts, allowed_origins, public_url };
    let files_quota = FilesQuota {
        bytes: raw.builtin_tools.files_quota_bytes.unwrap_or(100 * 1024 * 1024),
        count: raw.builtin_tools.files_quota_count.map_or(1000, |n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    if let Some(listen) = listen
        && let Err(problem) = check_exposure(&auth, listen)
    {
        p.push("auth", problem);
    }
    match (p.0.is_empty(), listen, upstream, logging, artifacts) {
        (true, Some(listen), Some(upstream), Some(logging), Some(artifacts)) => Ok(Config {
            listen,
            upstream,
            auth,
            limits,
            logging,
            telemetry,
            mcp_servers,
            tool_loop,
            models,
            artifacts,
            facade,
            selection,
            http,
            files_quota,
            state,
            approval,
            sampling,
            responses,
            console,
        }),
        _ => Err(ConfigError::Invalid(p.0)),
    }
}

/// `telemetry:`: the endpoint must be an HTTP(S) URL, the ratio a share.
fn telemetry(raw: raw::RawTelemetry, p: &mut Problems) -> TelemetryConfig {
    let otlp_traces_url = raw.otlp.endpoint.as_deref().filter(|e| !e.trim().is_empty()).and_then(|endpoint| {
        let mut url = p.check("telemetry.otlp.endpoint", http_url(endpoint.trim()))?;
        // The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` is: the signal's path goes below it
        // (a query stays a query).
        let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
        url.set_path(&path);
        Some(url)
    });
    let sample_ratio = raw.otlp.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        p.push("telemetry.otlp.sample_ratio", "must be between 0.0 and 1.0");
    }
    let service_name = raw.otlp.service_name.filter(|n| !n.trim().is_empty());
    TelemetryConfig { otlp_traces_url, service_name, sample_ratio }
}

fn dur(value: Option<DurationValue>, default_secs: u64) -> Duration {
    value.map_or(Duration::from_secs(default_secs), |d| d.0)
}

fn http_url(text: &str) -> Result<Url, String> {
    // The text itself is not repeated: a URL may carry a token.
    let url = Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("scheme `{other}` is not supported (use http or https)")),
    }
}

/// Validation problems, each prefixed with its key path.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, path: impl fmt::Display, msg: impl fmt::Display) {
        self.0.push(format!("{path}: {msg}"));
    }
    fn check<T>(&mut self, path: impl fmt::Display, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.push(path, e)).ok()
    }
}
