//! The MCP hub: every configured server as a live, supervised connection, and all their tools
//! as one [`Catalog`] shared by the chat loop, the REST API and the CLI.
//!
//! | file         | what it holds                                                       |
//! |--------------|---------------------------------------------------------------------|
//! | `connect.rs` | opening a session over stdio, streamable HTTP or legacy SSE          |
//! | `child_env.rs` | the allowlisted environment a stdio server starts with             |
//! | `call_headers.rs` | per-call `user_headers` for HTTP servers                        |
//! | `session_expiry.rs` | when a streamable-HTTP server has lost our session            |
//! | `sse.rs`     | our legacy HTTP+SSE client transport (rmcp 3 has none)               |
//! | `hub.rs`     | every server's supervisor, the catalog rebuilds, reload, call routing |
//! | `shared.rs`  | the current catalog, swapped without a lock; a read-only view        |
//! | `server.rs`  | one server's supervisor (backoff, `list_changed`) and its tool calls |
//! | `per_user.rs` | a `per_user` OAuth server's connection per account holder           |
//! | `tasks.rs`   | tools that run only as tasks (2025-11-25 tasks: call, result, cancel) |
//! | `resources.rs` | resources of every server, merged (unique URIs) and read back       |
//! | `progress.rs` | progress notifications routed to their call, early ones kept      |
//! | `prompts.rs` | prompts of every server, named like tools, and got back              |
//! | `complete.rs` | `completion/complete` routed, `logging/setLevel` passed on           |
//! | `oauth.rs`   | OAuth: sealed credentials, sign-ins (CLI, HTTP, connect links)       |
//! | `catalog.rs` | exposed names, sanitised schemas, prepared OpenAI tool JSON          |
//! | `search.rs`  | the catalog's BM25 index (built once per catalog change)            |
//!
//! `mcp/` knows nothing of HTTP serving, of the chat loop, or of any concrete tool server:
//! servers that run in the process are handed in as [`InProcessServer`] values.

mod call_headers;
mod catalog;
mod child_env;
mod complete;
mod connect;
mod hub;
pub mod oauth;
mod per_user;
mod progress;
mod prompts;
mod resources;
pub mod search;
mod server;
mod session_expiry;
mod shared;
mod sse;
mod stderr;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rmcp::model::JsonObject;
use serde_json::Value;

pub use call_headers::CALL_HEADERS_META;
pub use catalog::{Attached, Catalog, SEPARATOR, SourceTool, ToolEntry};
pub use hub::{Attachment, CallCount, Hub};
pub use prompts::ExposedPrompt;
pub use resources::{ExposedResource, ExposedTemplate};
pub use server::{ServerHandle, ServerState, ServerStatus};
pub use shared::{CatalogView, ResourceView, SharedCatalog};

/// Everything that can go wrong with a tool call.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// No tool has this name.
    #[error("unknown tool `{name}`")]
    UnknownTool {
        /// The name asked for.
        name: String,
    },
    /// The arguments do not match the tool's schema (or are not a JSON object).
    #[error("invalid arguments for `{tool}`: {message}")]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// What is wrong.
        message: String,
    },
    /// The server is not connected.
    #[error("MCP server `{server}` is unavailable: {reason}")]
    ServerUnavailable {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
    /// The call took longer than `tool_timeout` without progress.
    #[error("tool `{tool}` on `{server}` timed out after {after:?}")]
    Timeout {
        /// The server.
        server: String,
        /// The tool.
        tool: String,
        /// The timeout.
        after: Duration,
    },
    /// The server answered with a JSON-RPC error or something unexpected.
    #[error("MCP server `{server}` returned an error: {message}")]
    Protocol {
        /// The server.
        server: String,
        /// Its message.
        message: String,
    },
    /// The call was cancelled.
    #[error("the tool call was cancelled")]
    Cancelled,
    /// No prompt has this name (among the servers the caller may use).
    #[error("unknown prompt `{name}`")]
    UnknownPrompt {
        /// The name asked for.
        name: String,
    },
    /// No resource has this URI (among the servers the caller may use).
    #[error("unknown resource `{uri}`")]
    UnknownResource {
        /// The URI asked for.
        uri: String,
    },
    /// The templates of several servers match this URI: the caller must name one
    /// (`mcp-middleware://<server>/<the URI, percent-encoded>`).
    #[error("the resource templates of {} all match `{uri}`: name one as mcp-middleware://<server>/<the URI, percent-encoded>", .servers.join(", "))]
    AmbiguousResource {
        /// The URI asked for.
        uri: String,
        /// The servers whose templates match it.
        servers: Vec<String>,
    },
    /// The server needs input before the call can finish (a 2026-07-28 `input_required`
    /// result): questions for the user, or a sampling request. Retried with the answers.
    #[error("the tool `{}` on `{}` needs the user's input", .0.tool, .0.server)]
    InputRequired(Box<InputRequired>),
    /// A `per_user` server, and the caller has not connected their account to it (or its
    /// sign-in stopped working). The message carries the link that connects it.
    #[error("{}", not_connected_text(server, link.as_deref(), *expired))]
    AccountNotConnected {
        /// The server.
        server: String,
        /// Where the person connects their account (a sealed, expiring ticket in it).
        link: Option<String>,
        /// Whether a sign-in existed and stopped working.
        expired: bool,
    },
}

/// What an `input_required` result asks for, bounded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InputRequired {
    /// The server.
    pub server: String,
    /// The tool (its name on the server).
    pub tool: String,
    /// The requests by the server's keys (`{"method": "elicitation/create", "params": …}` or
    /// `sampling/createMessage`, `roots/list`).
    pub requests: serde_json::Map<String, Value>,
    /// To be sent back untouched.
    pub request_state: Option<String>,
}

/// A retry of a call that needed input: the answers by request key, and the state untouched.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct InputRetry {
    /// The answers (an `ElicitResult`, a `CreateMessageResult`, a `ListRootsResult`).
    pub responses: serde_json::Map<String, Value>,
    /// The server's `requestState`, as it sent it.
    pub request_state: Option<String>,
}

/// Most requests one `input_required` result may carry.
pub const MAX_INPUT_REQUESTS: usize = 16;
/// Largest `input_required` result taken (its requests and state, as JSON).
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

impl McpError {
    /// A short, fixed name of what went wrong (a trace's `error.type`: never the message).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownTool { .. } => "unknown_tool",
            Self::InvalidArguments { .. } => "invalid_arguments",
            Self::ServerUnavailable { .. } => "server_unavailable",
            Self::Timeout { .. } => "timeout",
            Self::Protocol { .. } => "protocol_error",
            Self::Cancelled => "cancelled",
            Self::UnknownPrompt { .. } => "unknown_prompt",
            Self::UnknownResource { .. } => "unknown_resource",
            Self::AmbiguousResource { .. } => "ambiguous_resource",
            Self::InputRequired(_) => "input_required",
            Self::AccountNotConnected { .. } => "account_not_connected",
        }
    }

    /// The error as the log shows it: without a connect link (its ticket is a credential).
    pub fn log_text(&self) -> String {
        match self {
            Self::AccountNotConnected { server, expired, .. } => not_connected_text(server, None, *expired),
            other => other.to_string(),
        }
    }
}

fn not_connected_text(server: &str, link: Option<&str>, expired: bool) -> String {
    let state = if expired { "must be connected again (its sign-in no longer works)" } else { "is not connected" };
    match link {
        Some(link) => format!(
            "the user's account on `{server}` {state}: ask the user to open {link} to connect it, then to ask again"
        ),
        None => format!("the user's account on `{server}` {state}: connect it with POST /oauth/start/{server}"),
    }
}

/// A server that runs inside the process: handed one end of an in-memory pipe, it serves MCP
/// on it until the pipe closes. `app.rs` builds these (the built-in tools); the hub never
/// knows what they are.
pub type InProcessServer = Arc<dyn Fn(tokio::io::DuplexStream) -> BoxFuture<'static, ()> + Send + Sync>;

/// Shows a tool call's progress (a line of text) to whoever waits for the call.
pub type ProgressFn = Arc<dyn Fn(String) + Send + Sync>;

tokio::task_local! {
    /// The progress line of the tool call running in this task: the chat loop sets it around a
    /// call, and the server's progress notifications for that call are shown with it.
    pub static PROGRESS: ProgressFn;
}

/// Something a server said that is not about one call: facade sessions relay it.
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// `notifications/resources/updated` for `uri` (the server's own).
    ResourceUpdated {
        /// The server.
        server: String,
        /// Its URI.
        uri: String,
    },
    /// `notifications/resources/list_changed`.
    ResourcesChanged {
        /// The server.
        server: String,
    },
    /// `notifications/prompts/list_changed`.
    PromptsChanged {
        /// The server.
        server: String,
    },
}

/// Asks the person behind a tool call a server's `elicitation/create` question (its params as
/// JSON) and waits for the answer (an `ElicitResult` as JSON), or why there is none.
pub type Asker = Arc<dyn Fn(Value) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// Takes a server's notification that belongs to a call (its params as JSON: a log message, a
/// progress step) to whoever made the call.
pub type NotifyFn = Arc<dyn Fn(Value) + Send + Sync>;

/// Who stands behind a tool call, for what a server sends back while the call runs: a chat that
/// can park (questions), or an MCP client of the facade (questions, sampling, log messages and
/// progress relayed to it). Set around a call with [`RELAY`]; the server's connection sees it
/// through the calls it has in flight.
#[derive(Default)]
pub struct CallRelay {
    /// Answers `elicitation/create`.
    pub asker: Option<Asker>,
    /// Answers `sampling/createMessage` (a `CreateMessageResult` as JSON), before the
    /// configured sampler.
    pub sampler: Option<Asker>,
    /// Takes `notifications/message` params.
    pub log: Option<NotifyFn>,
    /// Takes `notifications/progress` params (with the server's token; the taker maps it).
    pub progress: Option<NotifyFn>,
    /// Notifications routed to this call so far (a call that heard some may hear more that the
    /// server sent just before its result).
    pub heard: std::sync::atomic::AtomicUsize,
}

impl CallRelay {
    /// Counts one notification routed to the call.
    pub fn hear(&self) {
        self.heard.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

tokio::task_local! {
    /// Who stands behind the tool call running in this task.
    pub static RELAY: Arc<CallRelay>;
}

/// The calls in flight on one server, by call number, with who stands behind them (`None`:
/// nobody a server could reach).
pub(crate) type Callers = Arc<parking_lot::Mutex<Vec<(u64, Option<Arc<CallRelay>>)>>>;

/// The one call in flight on a server, when there is exactly one: only then can a question,
/// sampling request or log message (which name no call) be said to be that call's — anything
/// else could show one person another's.
pub(crate) fn sole_caller(callers: &Callers) -> Option<Arc<CallRelay>> {
    let running = callers.lock();
    match running.as_slice() {
        [(_, relay)] => relay.clone(),
        _ => None,
    }
}

/// A model completion for an MCP server's sampling request: the server, its
/// `CreateMessageRequestParams` as JSON, and the model to use when the request comes from a chat
/// (`None`: the configured one).
#[derive(Debug, Clone)]
pub struct SamplingCall {
    /// The server asking.
    pub server: String,
    /// Its request's params.
    pub params: Value,
    /// The chat's model, inside a chat.
    pub model: Option<String>,
}

/// Answers sampling requests (a `CreateMessageResult` as JSON, or why not). `app.rs` builds it
/// on the upstream model; the hub only hands it to servers with `sampling: true`.
pub type Sampler = Arc<dyn Fn(SamplingCall) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// `_meta` key of a `tools/call` to an in-process server naming the caller's own folder for
/// stored files (absent: the caller sees all of them).
pub const FILES_NAMESPACE_META: &str = "mcp-middleware/files";

/// `_meta` key of a `tools/call` to an in-process server naming the tools its caller may see.
pub const VISIBLE_TOOLS_META: &str = "mcp-middleware/visible_tools";

/// The `_meta` object that limits what an in-process `list_mcp_tools` shows to `names`.
pub fn visible_tools_meta(names: Vec<String>) -> JsonObject {
    let mut meta = JsonObject::new();
    meta.insert(VISIBLE_TOOLS_META.into(), Value::Array(names.into_iter().map(Value::String).collect()));
    meta
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{CallRelay, ServerHandle, sole_caller};

    /// What a round counts before its calls start: a call counted with its relay is not counted
    /// again when it is sent; while two are counted no question reaches either; a count leaves
    /// with its guard.
    #[test]
    fn counted_calls_route_questions_only_when_one_runs() {
        let yaml = "mcpServers:\n  s:\n    command: server\n    elicitation: true\n";
        let config = crate::config::load_str(yaml, &std::collections::HashMap::<String, String>::new()).unwrap();
        let handle = ServerHandle::new(config.mcp_servers[0].clone(), None);
        let (first, second) = (Arc::new(CallRelay::default()), Arc::new(CallRelay::default()));
        let first_count = handle.in_flight(Some(first.clone()));
        assert!(handle.counts(&first) && !handle.counts(&second));
        assert!(Arc::ptr_eq(&sole_caller(&handle.callers).unwrap(), &first));
        let second_count = handle.in_flight(Some(second.clone()));
        assert!(sole_caller(&handle.callers).is_none(), "two counted: the question is nobody's");
        drop(first_count);
        assert!(!handle.counts(&first));
        assert!(Arc::ptr_eq(&sole_caller(&handle.callers).unwrap(), &second));
        drop(second_count);
        assert!(sole_caller(&handle.callers).is_none() && handle.callers.lock().is_empty());
    }
}
