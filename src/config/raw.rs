//! The YAML contract users write against: serde structs that reject unknown keys.
//!
//! Nothing here is trusted yet; [`super::validate`] turns a [`RawConfig`] into a
//! [`super::Config`]. Durations accept a number of seconds or a string with a unit
//! (`250ms`, `10s`, `5m`, `1h`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The whole `config.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address the gateway listens on. Default `0.0.0.0:4001`.
    pub listen: Option<String>,
    /// The OpenAI-compatible model gateway requests are forwarded to.
    #[serde(default)]
    pub upstream: RawUpstream,
    /// Who may call the gateway.
    #[serde(default)]
    pub auth: RawAuth,
    /// Size and time limits of the HTTP server.
    #[serde(default)]
    pub limits: RawLimits,
    /// `http:` — which hosts and browser origins may reach the gateway.
    #[serde(default)]
    pub http: RawHttp,
    /// Log output.
    #[serde(default)]
    pub logging: RawLogging,
    /// `telemetry:` — OpenTelemetry traces.
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// The tool loop run for chat requests.
    #[serde(default)]
    pub tool_loop: RawToolLoop,
    /// The built-in tools (storage, `read_artifact`, `list_mcp_tools`), served as server `builtin`.
    #[serde(default)]
    pub builtin_tools: RawBuiltinTools,
    /// `tool_selection:` — tool budgets, ranking and the discovery tool.
    #[serde(default)]
    pub tool_selection: RawSelection,
    /// `mcp_facade:` — the aggregated catalog served as an MCP server at `/mcp`.
    #[serde(default)]
    pub mcp_facade: RawFacade,
    /// Where binary and oversized tool outputs are kept.
    #[serde(default)]
    pub artifacts: RawArtifacts,
    /// `state:` — the store for what outlives a request (tokens, registrations, waiting loops).
    #[serde(default)]
    pub state: RawState,
    /// Tool calls that wait for the user's yes in the chat before they run.
    #[serde(default)]
    pub approval: RawApproval,
    /// How MCP servers with `sampling: true` get model completions.
    #[serde(default)]
    pub sampling: RawSampling,
    /// `/v1/responses`: how long and how large stored responses are kept.
    #[serde(default)]
    pub responses: RawResponses,
    /// The web console at `/ui`.
    #[serde(default)]
    pub console: RawConsole,
    /// Per-model tool policy, keyed by model name or glob (`gpt-4*`). The most specific
    /// (longest) matching pattern applies.
    #[serde(default)]
    pub models: BTreeMap<String, RawToolPolicy>,
    /// MCP servers, keyed by name, in the Claude Desktop `mcpServers` shape.
    #[serde(default, rename = "mcpServers")]
    pub mcp_servers: BTreeMap<String, RawMcpServer>,
}

/// `upstream:` — the model gateway (LiteLLM or any OpenAI-compatible URL).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Base URL including the `/v1` prefix. Default `http://localhost:4000/v1` (LiteLLM).
    pub base_url: Option<String>,
    /// Key sent upstream as `Authorization: Bearer …`. Empty means none.
    pub api_key: Option<String>,
    /// Forward the client's own `Authorization` header instead of `api_key`. Default false.
    #[serde(default, deserialize_with = "text_or")]
    pub forward_client_auth: Option<bool>,
    /// Time allowed to open a TCP/TLS connection upstream. Default 10 s.
    pub connect_timeout: Option<DurationValue>,
    /// Longest silence allowed while reading an upstream response (not a total deadline, so
    /// long streams survive). Default 300 s.
    pub read_timeout: Option<DurationValue>,
    /// Retries of a request whose connection failed before any byte was sent. Default 2.
    #[serde(default, deserialize_with = "text_or")]
    pub max_retries: Option<u32>,
    /// Forward every `/v1/*` route to the upstream, not only the OpenAI API's routes (models,
    /// embeddings, completions, audio, images, files, batches, responses …). Default false:
    /// the upstream receives `upstream.api_key`, which on LiteLLM is the master key of its
    /// admin API, so other routes stay closed unless you open them.
    #[serde(default, deserialize_with = "text_or")]
    pub forward_all_routes: Option<bool>,
}

/// `auth:` — inbound authentication.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Accepted keys (`Authorization: Bearer <key>` or `x-api-key`). Empty entries are skipped;
    /// none at all means open (allowed on a loopback `listen` only, unless `open` is set).
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Keys with a tool policy of their own: which servers and tools requests made with them may use.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Trust the user Open WebUI forwards (`X-OpenWebUI-User-*` headers) on requests made with
    /// `api_keys` (or without a key, on an open gateway). Default false.
    #[serde(default, deserialize_with = "text_or")]
    pub trust_user_headers: Option<bool>,
    /// Serve without any key on an address other than loopback. Default false: with no key
    /// configured the gateway refuses to start on a non-loopback `listen`, since anyone who
    /// reaches it could run every tool and use the upstream's key.
    #[serde(default, deserialize_with = "text_or")]
    pub open: Option<bool>,
}

/// One entry of `auth.keys`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// The key itself (read it from the environment).
    pub key: String,
    /// Servers this key may use. Absent means all.
    pub servers: Option<Vec<String>>,
    /// Tools this key may use: exposed names (`server__tool`, `*` globs), or original names when
    /// `servers` is set too. Absent means all.
    pub tools: Option<Vec<String>>,
    /// Who requests with this key act for (for `user_headers` templates of MCP servers).
    #[serde(default)]
    pub user: Option<RawUser>,
    /// Trust the user Open WebUI forwards with this key (`X-OpenWebUI-User-Id/-Name/-Email/-Role`,
    /// `X-OpenWebUI-Chat-Id`). Default false: the headers are ignored.
    #[serde(default, deserialize_with = "text_or")]
    pub trust_user_headers: Option<bool>,
    /// The key sent upstream for requests with this key, instead of `upstream.api_key` (e.g. a
    /// LiteLLM virtual key per team, so a tool policy also bounds the model side: budgets,
    /// model access, LiteLLM's own MCP). Absent: `upstream.api_key`.
    pub upstream_key: Option<String>,
    /// More tools that need the user's approval for this key's chats (`require`,
    /// `destructive`; added to the top-level `approval`).
    #[serde(default)]
    pub approval: Option<RawApproval>,
}

/// A user identity, as `user_headers` templates see it (`{{user.email}}` …).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    /// `{{user.id}}`.
    pub id: Option<String>,
    /// `{{user.name}}`.
    pub name: Option<String>,
    /// `{{user.email}}`.
    pub email: Option<String>,
    /// `{{user.role}}`.
    pub role: Option<String>,
}

/// A tool policy (per model).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolPolicy {
    /// Servers whose tools are injected. Absent means all.
    pub servers: Option<Vec<String>>,
    /// Tools injected: exposed names (`server__tool`, `*` globs), or original names when
    /// `servers` is set too. Absent means all.
    pub tools: Option<Vec<String>>,
    /// Inject MCP tools at all for this model. Default true.
    #[serde(default, deserialize_with = "text_or")]
    pub inject: Option<bool>,
    /// The model can see images: images from tools are also given to it as `image_url` parts
    /// (in a user message after the tool results, where the API allows images). Default false.
    #[serde(default, deserialize_with = "text_or")]
    pub vision: Option<bool>,
    /// Most tools (the client's and ours together) sent to this model. Default
    /// `tool_selection.max_tools`; never above 128.
    #[serde(default, deserialize_with = "text_or")]
    pub max_tools: Option<usize>,
    /// Most bytes of our tool definitions sent to this model in one request. Default
    /// `tool_selection.max_tool_bytes`; 0: no byte budget.
    #[serde(default, deserialize_with = "text_or")]
    pub max_tool_bytes: Option<usize>,
    /// The upstream API this model is called with in the tool loop: `chat` (default,
    /// `/chat/completions`, which every model behind LiteLLM speaks) or `responses` (the
    /// upstream's own `/responses`, for models whose reasoning must round-trip as items).
    pub api: Option<String>,
}

/// `tool_selection:` — which of the allowed tools a request is offered when there are many.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelection {
    /// Most tools (the client's and ours together) sent upstream. Default 128, the most OpenAI
    /// accepts; the client's tools are never dropped, ours fill what is left.
    #[serde(default, deserialize_with = "text_or")]
    pub max_tools: Option<usize>,
    /// Most bytes of our tool definitions (their JSON, as sent) in one request: past it the
    /// tools are ranked against the conversation and `find_tools` reaches the rest. Default
    /// 16384 (about 4 k tokens); 0: no byte budget (only `max_tools` applies).
    #[serde(default, deserialize_with = "text_or")]
    pub max_tool_bytes: Option<usize>,
    /// `auto` (default): rank only when the allowed tools do not fit; `ranked`: always rank.
    pub mode: Option<String>,
    /// Tools always offered first (exposed names, `*` globs), e.g. `["builtin__*"]`.
    #[serde(default)]
    pub always: Vec<String>,
    /// Name of the discovery tool offered when tools were left out. Default `find_tools`;
    /// empty turns it off.
    pub find_tools: Option<String>,
}

/// `approval:` (and `auth.keys[].approval:`) — tool calls the model makes in a chat that wait
/// for the user's answer (approve or deny) before they run. A key's rules add to these.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApproval {
    /// Exposed-name globs of tools that need approval (`github__delete_*`, `*__send_*`).
    /// Default none.
    #[serde(default)]
    pub require: Vec<String>,
    /// Also every tool whose MCP annotations say `destructiveHint: true` (and not
    /// `readOnlyHint: true`). Default false.
    #[serde(default, deserialize_with = "text_or")]
    pub destructive: Option<bool>,
    /// How long a request waits for its answer (top level only). Default 1 h.
    pub ttl: Option<DurationValue>,
}

/// `responses:` — the Responses API's stored responses (`store: true`, the default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponses {
    /// How long a stored response is kept (for `previous_response_id`, `GET`, `DELETE`).
    /// Default 30 days; 0 keeps none.
    pub store_ttl: Option<DurationValue>,
    /// Largest stored response, its conversation included, in bytes; a larger one is not kept
    /// (and says `store: false`). Default 4 MiB.
    #[serde(default, deserialize_with = "text_or")]
    pub max_stored_bytes: Option<u64>,
    /// URLs (each a prefix: `https://mcp.example.com/` allows every path under it) that a
    /// hosted `mcp` tool may name in `server_url`; the gateway then connects there for that
    /// request, with the request's `authorization` and `headers`. Only keys without a tool
    /// policy may. Default none: every `server_url` is refused.
    #[serde(default)]
    pub server_urls: Vec<String>,
}

/// `console:` — the web console at `/ui` (servers, tools, activity, connections, what waits).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    /// Whether `/ui` is served. Default true.
    #[serde(default, deserialize_with = "text_or")]
    pub enabled: Option<bool>,
    /// How long a console sign-in lasts. Default 12 h.
    pub session_ttl: Option<DurationValue>,
    /// How long tool calls are kept for the Activity page (the audit trail, in the state
    /// store). Default 7 days; 0 keeps none.
    pub activity_ttl: Option<DurationValue>,
}

/// `sampling:` — model completions for MCP servers that may ask for them (`sampling: true`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSampling {
    /// The model a server's request goes to outside a chat (inside one: the chat's model).
    /// Default none: outside a chat, sampling is refused.
    pub model: Option<String>,
    /// Most tokens one completion may produce (a server asking for more gets this). Default 1024.
    #[serde(default, deserialize_with = "text_or")]
    pub max_tokens: Option<u32>,
}

/// `state:` — the state store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// `sqlite://<path>` (default: a file beside the local artifact store,
    /// `<artifacts.local.dir>.state.db`), or `postgres://…` / `postgresql://…` for several
    /// replicas sharing one database (a Unix socket via `?host=/dir`).
    pub url: Option<String>,
    /// Seals secrets at rest (OAuth tokens, client secrets): any string of at least 32
    /// characters. Without it the gateway stores no secret and says why.
    pub encryption_key: Option<String>,
}

/// `mcpServers.<name>.auth:` — how the gateway authenticates to an HTTP MCP server beyond
/// static headers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerAuth {
    /// OAuth 2.1 per the MCP authorization specification (`oauth:` alone turns it on with
    /// every default).
    #[serde(default, deserialize_with = "present")]
    pub oauth: Option<RawOAuth>,
}

/// A key that is present is `Some`, even when it holds nothing (`oauth:`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(|value| Some(value.unwrap_or_default()))
}

/// `mcpServers.<name>.auth.oauth:` — an OAuth 2.1 client for this server (discovery from its
/// `401`, PKCE, resource indicators, refresh). Tokens live in the state store, sealed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    /// `authorization_code` (default: a person consents once, with `mcp-middleware login`) or
    /// `client_credentials` (service to service; needs `client_id` and `client_secret`).
    pub grant: Option<String>,
    /// A client registered with the authorization server beforehand. Without one, the gateway
    /// uses a Client ID Metadata Document (`client_metadata_url`) when the server supports
    /// them, else dynamic client registration.
    pub client_id: Option<String>,
    /// The pre-registered client's secret (sent as the server advertises: basic or post).
    pub client_secret: Option<String>,
    /// HTTPS URL of this gateway's Client ID Metadata Document.
    pub client_metadata_url: Option<String>,
    /// Scopes to ask for. Default: what the server's `WWW-Authenticate` names, else its
    /// `scopes_supported`, else none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `true`: each user connects their own account (the identity the gateway derives from
    /// the key and trusted Open WebUI headers), and a call for a user who has not gets a link
    /// to do so. Default `false`: one sign-in, by an operator, serves everyone.
    #[serde(default, deserialize_with = "text_or")]
    pub per_user: Option<bool>,
}

/// `tool_loop:` — how chat requests run MCP tools.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolLoop {
    /// Model rounds per request; the last one is sent with `tool_choice: "none"`. Default 10.
    #[serde(default, deserialize_with = "text_or")]
    pub max_rounds: Option<u32>,
    /// Tool calls per request, over all rounds. Default 50.
    #[serde(default, deserialize_with = "text_or")]
    pub max_tool_calls: Option<u32>,
    /// Wall time per request after which the model must answer. Default 10 m.
    pub max_duration: Option<DurationValue>,
    /// Tool calls of one round run at once. Default 8.
    #[serde(default, deserialize_with = "text_or")]
    pub parallel_calls: Option<usize>,
    /// An identical call (same tool, same arguments) this many times in a row is not run again.
    /// Default 3.
    #[serde(default, deserialize_with = "text_or")]
    pub repeat_limit: Option<u32>,
    /// Show tool calls in the streamed content as Open WebUI tool cards
    /// (`<details type="tool_calls">`). Turn off for clients that are not Open WebUI. Default true.
    #[serde(default, deserialize_with = "text_or")]
    pub tool_cards: Option<bool>,
}

/// `builtin_tools:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuiltinTools {
    /// Serve the built-in tools. Default true.
    #[serde(default, deserialize_with = "text_or")]
    pub enabled: Option<bool>,
    /// Only these built-in tools are exposed. Absent means all.
    pub include_tools: Option<Vec<String>>,
    /// These built-in tools are never exposed.
    #[serde(default)]
    pub exclude_tools: Vec<String>,
    /// Most bytes of files one caller (a restricted key, or a user) may keep with the storage
    /// tools; an upload past it is refused. Default 100 MiB.
    #[serde(default, deserialize_with = "text_or")]
    pub files_quota_bytes: Option<u64>,
    /// Most files one caller may keep. Default 1000.
    #[serde(default, deserialize_with = "text_or")]
    pub files_quota_count: Option<u64>,
}

/// `artifacts:` — the artifact store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArtifacts {
    /// `local` (default: files served by the gateway) or `s3` (MinIO or any S3 server).
    pub store: Option<String>,
    /// Lifetime of artifact links. Default 24 h, at most 7 days (the S3 presigning limit).
    pub url_ttl: Option<DurationValue>,
    /// Longest tool output (bytes) put into the model's context; longer text keeps its head
    /// and tail and is stored whole as an artifact. Default 16384.
    #[serde(default, deserialize_with = "text_or")]
    pub max_inline_bytes: Option<usize>,
    /// How long tool-output artifacts are kept (links die after `url_ttl`, objects after
    /// this). Default 7d; at least `url_ttl`; `0` keeps them forever. Files stored with the
    /// built-in storage tools (below `files/`) are never swept.
    pub retention: Option<DurationValue>,
    /// Settings of the `local` store.
    #[serde(default)]
    pub local: RawLocalStore,
    /// Settings of the `s3` store.
    #[serde(default)]
    pub s3: RawS3Store,
}

/// `artifacts.local:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocalStore {
    /// Directory of the files. Default `./data/artifacts`.
    pub dir: Option<PathBuf>,
    /// Base URL users' browsers reach the gateway at, for links. Default from `listen`
    /// (`http://localhost:<port>` when listening on all interfaces).
    pub public_url: Option<String>,
    /// Secret that signs links. Default: generated once and kept beside the directory, in
    /// `<dir>.signing-key` (mode 0600), never inside what is served.
    pub secret: Option<String>,
}

/// `artifacts.s3:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3Store {
    /// S3 endpoint the gateway talks to (e.g. `http://minio:9000`).
    pub endpoint: Option<String>,
    /// Endpoint in links, as users' browsers see it (presigned signatures cover the host).
    /// Default: `endpoint`.
    pub public_endpoint: Option<String>,
    /// Bucket, created when missing. Default `mcp-storage`.
    pub bucket: Option<String>,
    /// Region used for signing. Default `us-east-1`.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), as MinIO needs. Default true.
    #[serde(default, deserialize_with = "text_or")]
    pub path_style: Option<bool>,
    /// Longest time one S3 request may take before the store counts as down (the tool result
    /// then says so, and saves fail at once for a few seconds). Default 10 s.
    pub timeout: Option<DurationValue>,
}

/// `limits:` — HTTP server limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest request body accepted, in bytes. Default 32 MiB (chat bodies carry base64 images).
    #[serde(default, deserialize_with = "text_or")]
    pub max_body_bytes: Option<u64>,
    /// How long in-flight requests may run after SIGINT/SIGTERM before the process exits. Default 30 s.
    pub shutdown_grace: Option<DurationValue>,
    /// Interval of SSE keep-alive comments while a stream is idle. Default 15 s.
    pub sse_keepalive: Option<DurationValue>,
    /// Largest total size of a request's headers (names and values), in bytes; more is a 431.
    /// Default 64 KiB.
    #[serde(default, deserialize_with = "text_or")]
    pub max_header_bytes: Option<u64>,
    /// Longest wait for a request's headers, also how long an idle keep-alive connection stays
    /// open. Slow or silent sockets are closed after it. Default 10 s.
    pub header_read_timeout: Option<DurationValue>,
    /// Most client connections served at once; more wait in the listen backlog. Default: half
    /// the process's open-files limit (each connection may hold an upstream socket too).
    #[serde(default, deserialize_with = "text_or")]
    pub max_connections: Option<u64>,
}

/// `http:` — the gateway's own rules for hosts and browsers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// `Host` values every route accepts (DNS-rebinding protection), e.g. `[mcp-middleware,
    /// localhost]`; a port may be given (`gw:4001`). Default: any host when API keys are
    /// configured (the key is the protection), else loopback names only.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The gateway's address as people's browsers reach it (`https://gw.example`), for the
    /// sign-in links and OAuth redirect URIs it hands out. Default: the scheme and `Host` of
    /// the request that needs one (set it when clients reach the gateway by an internal name).
    pub public_url: Option<String>,
    /// Cross-origin access for browsers.
    #[serde(default)]
    pub cors: RawCors,
}

/// `http.cors:` — which web pages may call the gateway from a browser.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    /// Origins (`https://chat.example.com`) whose pages may call the gateway; their preflights
    /// are answered and responses carry `Access-Control-Allow-Origin`. Default none: a request
    /// from any other page (`Origin` or `Sec-Fetch-Site: cross-site`) is refused with 403.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// `mcp_facade:` — the aggregated catalog as an MCP server (streamable HTTP at `/mcp`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFacade {
    /// Serve `/mcp`. Default true.
    #[serde(default, deserialize_with = "text_or")]
    pub enabled: Option<bool>,
    /// `Host` header values `/mcp` accepts; older name of `http.allowed_hosts`, used when that
    /// is not set (it applies to every route).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Most handshake-era sessions open at once, all keys together. Default 1000.
    #[serde(default, deserialize_with = "text_or")]
    pub max_sessions: Option<u64>,
    /// Most sessions one key (or, on an open gateway, all anonymous callers) may hold. Default 32.
    #[serde(default, deserialize_with = "text_or")]
    pub max_sessions_per_key: Option<u64>,
    /// A session without traffic for this long is closed (clients open a new one). Default 3m.
    pub session_idle: Option<DurationValue>,
}

/// `logging:` — log output.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    /// `pretty` (default) or `json`. The `--log-format` flag and `MCP_MIDDLEWARE_LOG_FORMAT` win.
    pub format: Option<String>,
    /// A tracing filter such as `info` or `mcp_middleware=debug`. `RUST_LOG` wins. Default `info`.
    pub level: Option<String>,
}

/// `telemetry:` — OpenTelemetry traces.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// `otlp:` — traces sent over OTLP (HTTP/protobuf).
    #[serde(default)]
    pub otlp: RawOtlp,
}

/// `telemetry.otlp:` — where and which traces go. Traces are off unless an endpoint is set here
/// or in `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans are sent to
    /// `<endpoint>/v1/traces`. Wins over the `OTEL_EXPORTER_OTLP_*ENDPOINT` variables.
    pub endpoint: Option<String>,
    /// `service.name` of the spans. Default: `OTEL_SERVICE_NAME`, else `mcp-middleware`.
    pub service_name: Option<String>,
    /// Share of new traces recorded, 0.0 to 1.0 (a caller's trace is recorded as the caller
    /// decided). Default 1.0.
    #[serde(default, deserialize_with = "text_or")]
    pub sample_ratio: Option<f64>,
}

/// One entry of `mcpServers:`. Either `command` (stdio) or `url` (HTTP) is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcpServer {
    /// Program started as a stdio MCP server.
    pub command: Option<String>,
    /// Arguments of `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment of `command`. The child starts from an empty environment plus a
    /// small allowlist (`PATH`, `HOME`, `USER`, `LANG`, `TERM`, `TMPDIR`, `NODE_*`, npm and
    /// proxy variables …), then these.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// More variables of the gateway's own environment to pass to `command` (names, or
    /// prefixes ending in `*`, e.g. `[GITHUB_TOKEN, AWS_*]`).
    #[serde(default)]
    pub inherit_env: Vec<String>,
    /// Working directory of `command`.
    pub cwd: Option<PathBuf>,
    /// URL of a remote MCP server.
    pub url: Option<String>,
    /// `stdio`, `streamable-http` or `sse` (legacy HTTP+SSE). Inferred when absent: `command`
    /// means stdio, a URL ending in `/sse` means sse, any other URL streamable-http.
    #[serde(alias = "type")]
    pub transport: Option<String>,
    /// HTTP headers sent to a remote server (e.g. `Authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers filled per tool call from the caller's identity (HTTP servers only), e.g.
    /// `X-User: "{{user.email}}"`. Placeholders: `user.id`, `user.name`, `user.email`,
    /// `user.role`, `chat.id`. A header whose values are unknown is not sent.
    #[serde(default)]
    pub user_headers: BTreeMap<String, String>,
    /// Connect this server. Default true.
    #[serde(default, deserialize_with = "text_or")]
    pub enabled: Option<bool>,
    /// Longest wait for one tool call, reset by progress notifications. Default 60 s.
    pub tool_timeout: Option<DurationValue>,
    /// Longest a tool call may take in all, progress or not (a tool that reports progress
    /// forever still ends). Default 10 min.
    pub max_call_duration: Option<DurationValue>,
    /// Longest wait for the server to start and answer `initialize`. Default 30 s.
    pub startup_timeout: Option<DurationValue>,
    /// How often a connected server that has been quiet is pinged; after three unanswered pings
    /// it is restarted (a wedged server would otherwise cost every call its full timeout).
    /// `0` turns pinging off. Default 30 s.
    pub ping_interval: Option<DurationValue>,
    /// Tools of a server that has been down this long are no longer offered (they come back when
    /// it reconnects). Default 60 s.
    pub withdraw_after: Option<DurationValue>,
    /// Only these tools are exposed (original names). Absent means all.
    pub include_tools: Option<Vec<String>>,
    /// These tools are never exposed (original names).
    #[serde(default)]
    pub exclude_tools: Vec<String>,
    /// Hold back tools whose description or schema changes after the server first listed them
    /// (and tools that appear later): a server cannot swap in new instructions to the model
    /// mid-session ("rug pull"). A change is logged and counted either way; with this set, the
    /// changed tool is withdrawn until the server restarts (a config change or a gateway
    /// restart accepts it). Default false.
    #[serde(default, deserialize_with = "text_or")]
    pub pin_descriptions: Option<bool>,
    /// Let this server ask the gateway for model completions (MCP sampling): the capability
    /// is declared to it, and its requests are answered by the upstream model (the chat's
    /// model inside a chat, else `sampling.model`), capped by `sampling.max_tokens` — or, for
    /// a call made through `/mcp` by a client that declared sampling, by that client. Default
    /// false: a server that asks is refused.
    #[serde(default, deserialize_with = "text_or")]
    pub sampling: Option<bool>,
    /// Let this server ask the user questions during a call (legacy `elicitation/create`, form
    /// and URL): the capability is declared to it, and a question asked while exactly one chat
    /// call is running on its connection parks that chat (the call held open in this process
    /// until the user answers or `approval.ttl` passes); a call made through `/mcp` by a client
    /// that declared elicitation puts it to that client. Any other question is declined.
    /// Default false. (Questions of the 2026-07-28 revision, `input_required`, need no flag.)
    #[serde(default, deserialize_with = "text_or")]
    pub elicitation: Option<bool>,
    /// What this server's tool names are exposed with (in chat, the REST API and `/mcp`).
    /// Default `<name>__`; `""` keeps the server's own names. Letters, digits, `_` and `-`, at
    /// most 32. A name two servers would share is reported and kept by the first server.
    pub prefix: Option<String>,
    /// How the gateway authenticates to this HTTP server beyond `headers` (`auth.oauth`).
    #[serde(default)]
    pub auth: RawServerAuth,
}

/// A duration written as seconds (`30`, `1.5`) or with a unit (`250ms`, `10s`, `5m`, `1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Secs(f64),
            Text(String),
        }
        let parsed = match Repr::deserialize(de)? {
            Repr::Secs(s) => secs(s),
            Repr::Text(t) => parse_duration(&t),
        };
        // No setting needs more than a year; far larger values would overflow clock arithmetic.
        let parsed = parsed.and_then(|d| {
            if d > Duration::from_secs(366 * 24 * 3600) { Err("must be at most a year".to_owned()) } else { Ok(d) }
        });
        parsed.map(DurationValue).map_err(serde::de::Error::custom)
    }
}

/// A number or boolean as written, or the same as text: an environment reference always yields
/// text (`max_retries: ${RETRIES:-2}`), and only the field's type decides what it means.
fn text_or<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr<T> {
        Value(T),
        Text(String),
    }
    match Option::<Repr<T>>::deserialize(de)? {
        None => Ok(None),
        Some(Repr::Value(v)) => Ok(Some(v)),
        Some(Repr::Text(text)) => {
            text.trim().parse().map(Some).map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}")))
        }
    }
}

fn secs(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{s} is not a valid duration"))
}

/// Parses `250ms`, `10s`, `1.5s`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("`{text}` is not a duration (try `10s`, `500ms`, `5m`)"))?;
    let factor = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => return Err(format!("unknown duration unit `{other}` in `{text}` (use ms, s, m, h or d)")),
    };
    secs(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
