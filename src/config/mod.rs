//! Configuration: `config.yaml` → environment references resolved → raw structs (unknown keys
//! rejected) → validated [`Config`].
//!
//! Every error names the key path (`upstream.connect_timeout: …`) and all validation problems
//! are reported at once. The environment is injected through [`EnvSource`], so tests never
//! touch the process environment.

pub mod env;
pub mod raw;
mod redact;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

pub use env::{EnvSource, ProcessEnv};
use raw::{DurationValue, RawConfig, RawMcpServer, RawToolPolicy};
pub use redact::{MASK, Redactor, redact_url, secret_name};

/// Default listen address: loopback, so a gateway without keys is reachable only from this host.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4001";
/// Default upstream: LiteLLM on the same host.
pub const DEFAULT_UPSTREAM: &str = "http://localhost:4000/v1";
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
}

/// What one caller (its folder below `files/`) may keep with the built-in storage tools.
#[derive(Debug, Clone, Copy)]
pub struct FilesQuota {
    /// Most bytes.
    pub bytes: u64,
    /// Most files.
    pub count: usize,
}

/// Which hosts and browser origins may reach the gateway.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Accepted `Host` values (lower case; with or without a port) as configured; when empty,
    /// an open gateway on loopback accepts loopback names only and a keyed one any host.
    pub allowed_hosts: Vec<String>,
    /// Origins allowed cross-origin (`scheme://host[:port]`, lower case, no trailing slash).
    pub allowed_origins: Vec<String>,
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

/// The chat tool loop's limits and presentation.
#[derive(Debug, Clone)]
pub struct ToolLoopConfig {
    /// Model rounds per request.
    pub max_rounds: u32,
    /// Tool calls per request.
    pub max_tool_calls: u32,
    /// Wall time per request.
    pub max_duration: Duration,
    /// Concurrent calls per round.
    pub parallel_calls: usize,
    /// Identical consecutive calls allowed before one is refused.
    pub repeat_limit: u32,
    /// Emit Open WebUI tool cards.
    pub tool_cards: bool,
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

/// Which tools a policy allows. `None` means no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolSelection {
    /// Allowed servers.
    pub servers: Option<Vec<String>>,
    /// Allowed tools: exposed or original names, `*` globs.
    pub tools: Option<Vec<String>>,
}

/// The policy of models matching `pattern`.
#[derive(Debug, Clone)]
pub struct ModelPolicy {
    /// Model name or `*` glob.
    pub pattern: String,
    /// Tools injected for these models.
    pub selection: ToolSelection,
    /// Whether tools are injected at all.
    pub inject: bool,
    /// Whether the model takes images.
    pub vision: bool,
    /// Most tools sent to this model, when set.
    pub max_tools: Option<usize>,
}

/// The most tools one request may carry (OpenAI's limit, the lowest of the providers').
pub const PROVIDER_TOOL_LIMIT: usize = 128;

/// Tool budgets, ranking and the discovery tool.
#[derive(Debug, Clone)]
pub struct SelectionConfig {
    /// Most tools (client's and ours) per request.
    pub max_tools: usize,
    /// Rank even when everything fits.
    pub always_rank: bool,
    /// Tools offered first (globs over exposed names).
    pub always: Vec<String>,
    /// The discovery tool's name; `None` when off.
    pub find_tools: Option<String>,
}

/// A key with its own tool policy.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// The key.
    pub key: Secret,
    /// What requests with this key may use.
    pub selection: ToolSelection,
    /// Who requests with this key act for.
    pub user: UserIdentity,
    /// Whether the user Open WebUI forwards with this key is trusted.
    pub trust_user_headers: bool,
    /// Sent upstream instead of `upstream.api_key` for this key's requests.
    pub upstream_key: Option<Secret>,
}

/// Who a request acts for, as MCP servers' `user_headers` templates see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserIdentity {
    /// `{{user.id}}`.
    pub id: Option<String>,
    /// `{{user.name}}`.
    pub name: Option<String>,
    /// `{{user.email}}`.
    pub email: Option<String>,
    /// `{{user.role}}`.
    pub role: Option<String>,
    /// `{{chat.id}}`.
    pub chat_id: Option<String>,
    /// The caller's own folder below `files/` for the built-in storage tools (not a template
    /// placeholder): set by authentication from the key (a key with a tool policy) and the
    /// user; `None` for an unrestricted caller without a user, who sees all of `files/`.
    pub files: Option<String>,
}

/// Longest identity value put into a header.
pub const MAX_IDENTITY_VALUE: usize = 256;

/// Whether `value` may go into an HTTP header: printable, no CR/LF, not too long.
pub fn header_safe(value: &str) -> bool {
    value.len() <= MAX_IDENTITY_VALUE && !value.chars().any(char::is_control)
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

/// Inbound authentication.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Accepted keys without a policy of their own.
    pub api_keys: Vec<Secret>,
    /// Accepted keys with a tool policy.
    pub keys: Vec<KeyConfig>,
    /// Whether the user Open WebUI forwards is trusted on `api_keys` (or an open gateway).
    pub trust_user_headers: bool,
    /// Serving without keys on a non-loopback address was chosen deliberately (`auth.open`).
    pub open: bool,
}

impl AuthConfig {
    /// Whether no key is configured (the gateway is open).
    pub fn is_open(&self) -> bool {
        self.api_keys.is_empty() && self.keys.is_empty()
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

/// Log output.
#[derive(Debug, Clone)]
pub struct LoggingConfig {
    /// Output format.
    pub format: LogFormat,
    /// Default tracing filter.
    pub level: String,
}

/// One MCP server.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServerConfig {
    /// Name from the `mcpServers` key.
    pub name: String,
    /// How to reach it.
    pub transport: McpTransportConfig,
    /// Whether to connect it at all.
    pub enabled: bool,
    /// Per-call timeout, reset on progress.
    pub tool_timeout: Duration,
    /// Total cap of one call, progress or not.
    pub max_call_duration: Duration,
    /// Ping interval of a quiet connection (zero: no pings).
    pub ping_interval: Duration,
    /// How long a server may be down before its tools are withdrawn.
    pub withdraw_after: Duration,
    /// Time allowed to start and initialize.
    pub startup_timeout: Duration,
    /// Only these original tool names are exposed, when set.
    pub include_tools: Option<Vec<String>>,
    /// Original tool names never exposed.
    pub exclude_tools: Vec<String>,
    /// Header templates filled per call from the caller's identity (HTTP transports).
    pub user_headers: BTreeMap<String, String>,
    /// Withdraw tools whose definition changes after the first listing.
    pub pin_descriptions: bool,
}

/// How an MCP server is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum McpTransportConfig {
    /// A child process speaking JSON-RPC over stdin/stdout.
    Stdio {
        /// Program to run.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment.
        env: BTreeMap<String, String>,
        /// Working directory.
        cwd: Option<PathBuf>,
        /// Names (or `PREFIX_*`) of the gateway's variables passed on beyond the allowlist.
        inherit_env: Vec<String>,
    },
    /// Streamable HTTP (MCP 2025-03-26 and later).
    StreamableHttp {
        /// Endpoint URL.
        url: Url,
        /// Extra headers (may hold secrets; never logged).
        headers: BTreeMap<String, Secret>,
    },
    /// Our built-in tools, served inside the process.
    InProcess,
    /// Legacy HTTP+SSE (MCP 2024-11-05).
    Sse {
        /// URL of the SSE endpoint.
        url: Url,
        /// Extra headers (may hold secrets; never logged).
        headers: BTreeMap<String, Secret>,
    },
}

impl McpTransportConfig {
    /// `stdio`, `streamable-http` or `sse`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdio { .. } => "stdio",
            Self::StreamableHttp { .. } => "streamable-http",
            Self::Sse { .. } => "sse",
            Self::InProcess => "in-process",
        }
    }
}

/// Name of the built-in tool server.
pub const BUILTIN_SERVER: &str = "builtin";

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

/// Checks a raw config and builds the typed one, reporting every problem found.
pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
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

    let mut keys = Vec::new();
    for (i, k) in raw.auth.keys.into_iter().enumerate() {
        if k.key.trim().is_empty() {
            p.push(format!("auth.keys[{i}].key"), "an API key must not be empty");
        } else {
            let user = k.user.unwrap_or_default();
            let user = UserIdentity {
                id: user.id,
                name: user.name,
                email: user.email,
                role: user.role,
                chat_id: None,
                files: None,
            };
            for (field, value) in [("id", &user.id), ("name", &user.name), ("email", &user.email), ("role", &user.role)]
            {
                if value.as_deref().is_some_and(|v| !header_safe(v)) {
                    p.push(
                        format!("auth.keys[{i}].user.{field}"),
                        format!("must be printable text of at most {MAX_IDENTITY_VALUE} characters (no CR/LF)"),
                    );
                }
            }
            check_tool_patterns(&format!("auth.keys[{i}].tools"), k.servers.as_ref(), k.tools.as_ref(), &mut p);
            keys.push(KeyConfig {
                key: Secret(k.key),
                selection: ToolSelection { servers: k.servers, tools: k.tools },
                user,
                trust_user_headers: k.trust_user_headers.unwrap_or(false),
                upstream_key: k.upstream_key.filter(|u| !u.trim().is_empty()).map(Secret),
            });
        }
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
    let artifacts = artifacts_config(raw.artifacts, &mut p);
    for (pattern, policy) in &raw.models {
        check_tool_patterns(&format!("models.{pattern}.tools"), policy.servers.as_ref(), policy.tools.as_ref(), &mut p);
    }
    let mut models: Vec<ModelPolicy> = raw
        .models
        .into_iter()
        .map(|(pattern, RawToolPolicy { servers, tools, inject, vision, max_tools })| ModelPolicy {
            pattern,
            selection: ToolSelection { servers, tools },
            inject: inject.unwrap_or(true),
            vision: vision.unwrap_or(false),
            max_tools: max_tools.map(|m| m.min(PROVIDER_TOOL_LIMIT)),
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
    let http = HttpConfig { allowed_hosts, allowed_origins };
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
            mcp_servers,
            tool_loop,
            models,
            artifacts,
            facade,
            selection,
            http,
            files_quota,
        }),
        _ => Err(ConfigError::Invalid(p.0)),
    }
}

/// Tool patterns of a policy must say which server they mean: `server__tool` (globs in each
/// part), or a bare tool name when the policy lists its `servers`. A bare `*echo` would
/// otherwise admit any server's look-alike `echo`.
fn check_tool_patterns(path: &str, servers: Option<&Vec<String>>, tools: Option<&Vec<String>>, p: &mut Problems) {
    if servers.is_some() {
        return;
    }
    for pattern in tools.into_iter().flatten() {
        if pattern != "*" && !pattern.contains("__") {
            p.push(
                path,
                format!(
                    "`{pattern}` names no server: write `<server>__{pattern}` (e.g. `*__{pattern}` for every \
                     server, deliberately) or list the policy's `servers`"
                ),
            );
        }
    }
}

/// A gateway without keys on an address other than loopback must be a deliberate choice
/// (`auth.open: true`): it runs tools and spends the upstream's key for anyone who reaches it.
pub fn check_exposure(auth: &AuthConfig, listen: SocketAddr) -> Result<(), String> {
    if auth.is_open() && !auth.open && !listen.ip().is_loopback() {
        return Err(format!(
            "no API key is configured and `listen` is {listen}, which other hosts can reach: anyone there \
             could run every tool. Set auth.api_keys (e.g. - ${{MCP_MIDDLEWARE_API_KEY}}), listen on \
             127.0.0.1, or set auth.open: true to serve without keys deliberately"
        ));
    }
    Ok(())
}

fn artifacts_config(raw: raw::RawArtifacts, p: &mut Problems) -> Option<ArtifactsConfig> {
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
                dir: raw.local.dir.unwrap_or_else(|| PathBuf::from("data/artifacts")),
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
    Some(ArtifactsConfig { store, url_ttl, max_inline_bytes })
}

fn mcp_server(name: &str, raw: RawMcpServer, p: &mut Problems) -> Option<McpServerConfig> {
    let at = |key: &str| format!("mcpServers.{name}.{key}");
    if name.trim().is_empty() {
        p.push("mcpServers", "a server name must not be empty");
        return None;
    }
    // The name is the prefix of every exposed tool name (`<server>__<tool>`): with `_` or other
    // characters, `a__b` + `c` and `a` + `b__c` would be one name, and policies could not tell
    // servers apart.
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        let suggestion: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
            .collect::<String>()
            .split('-')
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        p.push(
            format!("mcpServers.{name}"),
            format!(
                "server names may use letters, digits and `-` only (they prefix tool names as `<server>__<tool>`); \
                 rename it, e.g. to `{suggestion}` (tool names and policies then use `{suggestion}__…`)"
            ),
        );
        return None;
    }
    if !raw.user_headers.is_empty() && raw.url.is_none() {
        p.push(at("user_headers"), "only HTTP servers (`url`) take user headers");
    }
    for (name, template) in &raw.user_headers {
        if http::HeaderName::try_from(name.as_str()).is_err() {
            p.push(at("user_headers"), format!("`{name}` is not a valid header name"));
        }
        for placeholder in template.split("{{").skip(1).filter_map(|rest| rest.split_once("}}")).map(|(p, _)| p.trim())
        {
            if !["user.id", "user.name", "user.email", "user.role", "chat.id"].contains(&placeholder) {
                p.push(
                    at("user_headers"),
                    format!("unknown placeholder `{{{{{placeholder}}}}}` (use user.id, user.name, user.email, user.role, chat.id)"),
                );
            }
        }
    }
    let transport = match (&raw.command, &raw.url) {
        (Some(_), Some(_)) => {
            p.push(at("url"), "set either `command` (stdio) or `url`, not both");
            return None;
        }
        (None, None) => {
            p.push(at("command"), "missing: set `command` (stdio) or `url` (HTTP)");
            return None;
        }
        (Some(command), None) => {
            if let Some(t) = raw.transport.as_deref().filter(|t| *t != "stdio") {
                p.push(at("transport"), format!("`{t}` needs a `url`; `command` runs a stdio server"));
                return None;
            }
            if command.trim().is_empty() {
                p.push(at("command"), "must not be empty");
                return None;
            }
            McpTransportConfig::Stdio {
                command: command.clone(),
                args: raw.args,
                env: raw.env,
                cwd: raw.cwd,
                inherit_env: raw.inherit_env,
            }
        }
        (None, Some(url)) => {
            let url = p.check(at("url"), http_url(url))?;
            let headers = raw.headers.into_iter().map(|(k, v)| (k, Secret(v))).collect();
            let implied_sse = url.path().trim_end_matches('/').ends_with("/sse");
            match raw.transport.as_deref() {
                Some("sse") => McpTransportConfig::Sse { url, headers },
                None if implied_sse => McpTransportConfig::Sse { url, headers },
                Some("streamable-http" | "streamable_http" | "streamableHttp" | "http") | None => {
                    McpTransportConfig::StreamableHttp { url, headers }
                }
                Some(other) => {
                    p.push(at("transport"), format!("unknown transport `{other}` (use stdio, streamable-http or sse)"));
                    return None;
                }
            }
        }
    };
    Some(McpServerConfig {
        name: name.to_owned(),
        transport,
        enabled: raw.enabled.unwrap_or(true),
        tool_timeout: dur(raw.tool_timeout, 60),
        max_call_duration: dur(raw.max_call_duration, 600),
        ping_interval: dur(raw.ping_interval, 30),
        withdraw_after: dur(raw.withdraw_after, 60),
        startup_timeout: dur(raw.startup_timeout, 30),
        include_tools: raw.include_tools,
        exclude_tools: raw.exclude_tools,
        user_headers: raw.user_headers,
        pin_descriptions: raw.pin_descriptions.unwrap_or(false),
    })
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
