//! `mcpServers:` — each MCP server in the Claude Desktop shape, checked into a transport
//! (stdio, streamable HTTP, legacy SSE, in process) with its limits and headers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::raw::RawMcpServer;
use super::{Problems, Secret, dur, http_url};

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
    /// The server may ask for model completions (sampling).
    pub sampling: bool,
    /// The server may ask the user questions mid-call (legacy elicitation).
    pub elicitation: bool,
    /// What its tool names are exposed with (`<name>__` unless configured).
    pub prefix: String,
    /// OAuth 2.1 for this (streamable HTTP) server.
    pub oauth: Option<OAuthConfig>,
}

impl McpServerConfig {
    /// Whether each user connects their own account to this server.
    pub fn per_user(&self) -> bool {
        self.oauth.as_ref().is_some_and(|o| o.per_user)
    }

    /// The URL and OAuth settings of a streamable HTTP server with `auth.oauth`.
    pub fn oauth_target(&self) -> Option<(&Url, &OAuthConfig)> {
        match (&self.transport, &self.oauth) {
            (McpTransportConfig::StreamableHttp { url, .. }, Some(oauth)) => Some((url, oauth)),
            _ => None,
        }
    }
}

/// What joins a server's name and a tool's in exposed names and policy patterns (`ts__echo`).
pub const SEPARATOR: &str = "__";

/// Which OAuth grant a server's tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthGrant {
    /// A person consents once (`mcp-middleware login <server>`); tokens are refreshed after.
    AuthorizationCode,
    /// Service to service, with the client's own credentials.
    ClientCredentials,
}

/// An OAuth 2.1 client for one server.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthConfig {
    /// The grant.
    pub grant: OAuthGrant,
    /// A pre-registered client.
    pub client_id: Option<String>,
    /// Its secret.
    pub client_secret: Option<Secret>,
    /// This gateway's Client ID Metadata Document.
    pub client_metadata_url: Option<Url>,
    /// Scopes to ask for (empty: the server's own choice).
    pub scopes: Vec<String>,
    /// Each user connects their own account.
    pub per_user: bool,
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

impl McpServerConfig {
    /// A server one request names by URL (a hosted `mcp` tool's `server_url`): streamable
    /// HTTP with `headers`, connected for that request alone — no pings, no sampling,
    /// questions or OAuth — its tools exposed as `<label>__<tool>`.
    pub fn for_request(label: &str, url: Url, headers: BTreeMap<String, Secret>) -> Self {
        Self {
            name: label.to_owned(),
            transport: McpTransportConfig::StreamableHttp { url, headers },
            enabled: true,
            tool_timeout: Duration::from_secs(60),
            max_call_duration: Duration::from_secs(600),
            ping_interval: Duration::ZERO,
            withdraw_after: Duration::from_secs(60),
            startup_timeout: Duration::from_secs(15),
            include_tools: None,
            exclude_tools: Vec::new(),
            user_headers: BTreeMap::new(),
            pin_descriptions: false,
            sampling: false,
            elicitation: false,
            prefix: format!("{label}{SEPARATOR}"),
            oauth: None,
        }
    }

    /// The headers sent with every request to an HTTP server (none for other transports).
    pub fn http_headers(&self) -> Option<&BTreeMap<String, Secret>> {
        match &self.transport {
            McpTransportConfig::StreamableHttp { headers, .. } | McpTransportConfig::Sse { headers, .. } => {
                Some(headers)
            }
            _ => None,
        }
    }
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

pub(super) fn mcp_server(name: &str, raw: RawMcpServer, p: &mut Problems) -> Option<McpServerConfig> {
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
    let prefix = match raw.prefix {
        Some(prefix) => {
            let allowed = prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !allowed || prefix.len() > 32 {
                p.push(
                    at("prefix"),
                    "letters, digits, `_` and `-` only, at most 32 (\"\" keeps the server's own names)",
                );
            }
            prefix
        }
        None => format!("{name}{SEPARATOR}"),
    };
    let oauth = match raw.auth.oauth {
        Some(oauth) => {
            if !matches!(transport, McpTransportConfig::StreamableHttp { .. }) {
                p.push(at("auth.oauth"), "only streamable HTTP servers (`url`) use OAuth");
            }
            Some(oauth_config(oauth, &at, p)?)
        }
        None => None,
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
        sampling: raw.sampling.unwrap_or(false),
        elicitation: raw.elicitation.unwrap_or(false),
        prefix,
        oauth,
    })
}

fn oauth_config(raw: super::raw::RawOAuth, at: &dyn Fn(&str) -> String, p: &mut Problems) -> Option<OAuthConfig> {
    let grant = match raw.grant.as_deref().unwrap_or("authorization_code") {
        "authorization_code" => OAuthGrant::AuthorizationCode,
        "client_credentials" => OAuthGrant::ClientCredentials,
        other => {
            p.push(
                at("auth.oauth.grant"),
                format!("unknown grant `{other}` (use authorization_code or client_credentials)"),
            );
            return None;
        }
    };
    let client_id = raw.client_id.filter(|c| !c.is_empty());
    let client_secret = raw.client_secret.filter(|c| !c.is_empty()).map(Secret);
    if client_secret.is_some() && client_id.is_none() {
        p.push(at("auth.oauth.client_secret"), "needs the client_id it belongs to");
    }
    if grant == OAuthGrant::ClientCredentials && (client_id.is_none() || client_secret.is_none()) {
        p.push(at("auth.oauth"), "grant client_credentials needs client_id and client_secret");
    }
    let client_metadata_url = match raw.client_metadata_url.filter(|u| !u.is_empty()) {
        Some(url) => Some(p.check(at("auth.oauth.client_metadata_url"), http_url(&url))?),
        None => None,
    };
    let per_user = raw.per_user.unwrap_or(false);
    if per_user && grant == OAuthGrant::ClientCredentials {
        p.push(at("auth.oauth.per_user"), "client_credentials has no users: per_user needs authorization_code");
    }
    Some(OAuthConfig { grant, client_id, client_secret, client_metadata_url, scopes: raw.scopes, per_user })
}
