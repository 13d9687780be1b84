//! The MCP hub: every configured server as a live, supervised connection, and all their tools
//! as one [`Catalog`] shared by the chat loop, the REST API and the CLI.
//!
//! | file         | what it holds                                                       |
//! |--------------|---------------------------------------------------------------------|
//! | `connect.rs` | opening a session over stdio, streamable HTTP or legacy SSE          |
//! | `child_env.rs` | the allowlisted environment a stdio server starts with             |
//! | `call_headers.rs` | per-call `user_headers` for HTTP servers                        |
//! | `sse.rs`     | our legacy HTTP+SSE client transport (rmcp 3 has none)               |
//! | `server.rs`  | one server's supervisor (backoff, `list_changed`) and its tool calls |
//! | `catalog.rs` | exposed names, sanitised schemas, prepared OpenAI tool JSON          |
//! | `search.rs`  | the catalog's BM25 index (built once per catalog change)            |
//!
//! `mcp/` knows nothing of HTTP serving, of the chat loop, or of any concrete tool server:
//! servers that run in the process are handed in as [`InProcessServer`] values.

mod call_headers;
mod catalog;
mod child_env;
mod connect;
pub mod search;
mod server;
mod sse;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use rmcp::model::{CallToolResult, JsonObject};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use call_headers::CALL_HEADERS_META;
pub use catalog::{Catalog, SEPARATOR, SourceTool, ToolEntry};
pub use server::{ServerHandle, ServerState, ServerStatus};

use crate::config::{McpServerConfig, McpTransportConfig, UserIdentity};

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
}

/// A server that runs inside the process: handed one end of an in-memory pipe, it serves MCP
/// on it until the pipe closes. `app.rs` builds these (the built-in tools); the hub never
/// knows what they are.
pub type InProcessServer = Arc<dyn Fn(tokio::io::DuplexStream) -> BoxFuture<'static, ()> + Send + Sync>;

/// The current catalog, shared: the hub swaps in a new one on every change, readers take a
/// cheap snapshot. Made before the hub, so what the hub serves can see the catalog without a
/// setter after construction.
#[derive(Clone)]
pub struct SharedCatalog {
    current: Arc<ArcSwap<Catalog>>,
    /// Bumped on every swap, for those who announce changes (the MCP facade).
    version: Arc<watch::Sender<u64>>,
}

impl Default for SharedCatalog {
    fn default() -> Self {
        Self { current: Arc::default(), version: Arc::new(watch::channel(0).0) }
    }
}

impl SharedCatalog {
    /// The current snapshot.
    pub fn load(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// A read-only view of it.
    pub fn view(&self) -> CatalogView {
        CatalogView(self.current.clone())
    }

    /// A receiver that changes whenever a new catalog is swapped in.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn store(&self, catalog: Catalog) {
        self.current.store(Arc::new(catalog));
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// Read-only access to the current catalog (for the built-in tools' `list_mcp_tools`).
#[derive(Clone)]
pub struct CatalogView(Arc<ArcSwap<Catalog>>);

impl CatalogView {
    /// The current snapshot.
    pub fn load(&self) -> Arc<Catalog> {
        self.0.load_full()
    }
}

/// One running server: its handle, its supervisor task and the token that stops it.
struct Running {
    handle: Arc<ServerHandle>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// All servers and the catalog of their tools.
pub struct Hub {
    servers: RwLock<Vec<Running>>,
    catalog: SharedCatalog,
    /// Serialises rebuilds: read every server's tools, build, swap, as one step, so a rebuild
    /// that read older tools can never land after one that read newer tools.
    rebuilding: Mutex<()>,
    shutdown: CancellationToken,
    http: reqwest::Client,
    in_process: HashMap<String, InProcessServer>,
    /// Weak self, for the supervisors' change callback.
    this: std::sync::Weak<Hub>,
}

impl Hub {
    /// Starts a supervisor per enabled server; returns at once (servers connect in the
    /// background, so one slow server never delays the gateway). `in_process` serves the
    /// servers of transport `in-process`, by name; the catalog is published to `catalog`.
    pub fn start(
        configs: &[McpServerConfig],
        in_process: &HashMap<String, InProcessServer>,
        catalog: SharedCatalog,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Never follow a server's redirect: it would carry the JSON-RPC body and the
            // server's configured secret headers to wherever `Location` points (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        let hub = Arc::new_cyclic(|this| Self {
            servers: RwLock::new(Vec::new()),
            catalog,
            rebuilding: Mutex::new(()),
            shutdown,
            http,
            in_process: in_process.clone(),
            this: this.clone(),
        });
        let running: Vec<Running> = configs.iter().cloned().map(|c| hub.launch(c)).collect();
        *hub.servers.write() = running;
        // A server that became ready before the list was in place rebuilt without itself.
        hub.rebuild();
        hub
    }

    /// Starts the supervisor of one server.
    fn launch(&self, config: McpServerConfig) -> Running {
        let served = matches!(config.transport, McpTransportConfig::InProcess)
            .then(|| self.in_process.get(&config.name).cloned())
            .flatten();
        let handle = ServerHandle::new(config, served);
        let this = self.this.clone();
        let on_change: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            if let Some(hub) = this.upgrade() {
                hub.rebuild();
            }
        });
        let stop = self.shutdown.child_token();
        let task = tokio::spawn(handle.clone().supervise(self.http.clone(), on_change, stop.clone()));
        Running { handle, stop, task }
    }

    /// Applies a new server list: servers no longer configured are stopped, new ones started,
    /// changed ones restarted; unchanged ones keep their connection (and calls in flight).
    /// Returns the names of the servers added, removed and restarted.
    pub fn reconfigure(&self, configs: &[McpServerConfig]) -> (Vec<String>, Vec<String>, Vec<String>) {
        let (mut added, mut removed, mut restarted) = (Vec::new(), Vec::new(), Vec::new());
        let stopped: Vec<Running> = {
            let mut servers = self.servers.write();
            let mut kept = Vec::with_capacity(configs.len());
            let mut stopped = Vec::new();
            let mut old: HashMap<String, Running> =
                servers.drain(..).map(|r| (r.handle.name().to_owned(), r)).collect();
            for config in configs {
                match old.remove(&config.name) {
                    Some(running) if running.handle.config == *config => kept.push(running),
                    Some(running) => {
                        restarted.push(config.name.clone());
                        stopped.push(running);
                        kept.push(self.launch(config.clone()));
                    }
                    None => {
                        added.push(config.name.clone());
                        kept.push(self.launch(config.clone()));
                    }
                }
            }
            for (name, running) in old {
                removed.push(name);
                stopped.push(running);
            }
            *servers = kept;
            stopped
        };
        for running in stopped {
            running.stop.cancel();
            // Reaped in the background: the caller does not wait for children to exit.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), running.task).await;
            });
        }
        // Also covers a new server that became ready before the list was in place.
        self.rebuild();
        (added, removed, restarted)
    }

    /// The handles of every server, in configuration order.
    fn handles(&self) -> Vec<Arc<ServerHandle>> {
        self.servers.read().iter().map(|r| r.handle.clone()).collect()
    }

    /// The current catalog (a cheap `Arc` clone; never rebuilt per request).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load()
    }

    /// The shared catalog (to watch for changes).
    pub fn shared_catalog(&self) -> &SharedCatalog {
        &self.catalog
    }

    /// Status of every configured server.
    pub fn servers(&self) -> Vec<ServerStatus> {
        self.handles().iter().map(|s| s.status()).collect()
    }

    /// Waits (at most `limit`) until no server is still making its first connection.
    pub async fn settled(&self, limit: Duration) {
        let handles = self.handles();
        let all = futures_util::future::join_all(handles.iter().map(|s| s.settled()));
        let _ = tokio::time::timeout(limit, all).await;
    }

    /// Calls a tool by its exposed name (operators' CLI: no permission applies).
    pub async fn call(&self, name: &str, arguments: Value) -> Result<CallToolResult, McpError> {
        let catalog = self.catalog();
        let entry = catalog.get(name).ok_or_else(|| McpError::UnknownTool { name: name.to_owned() })?;
        self.call_entry(entry, arguments, || None, &UserIdentity::default()).await
    }

    /// Calls the tool of a catalog entry. The caller has already checked its permission;
    /// `visible` names the tools that caller may see (`None`: all of them) and is asked only when
    /// the tool runs in process, so the built-in `list_mcp_tools` shows no more than the caller
    /// may use. `identity` fills the server's `user_headers`, if it has any.
    pub async fn call_entry(
        &self,
        entry: &ToolEntry,
        arguments: Value,
        visible: impl FnOnce() -> Option<Vec<String>>,
        identity: &UserIdentity,
    ) -> Result<CallToolResult, McpError> {
        let arguments = match arguments {
            Value::Null => serde_json::Map::new(),
            Value::Object(map) => map,
            _ => {
                return Err(McpError::InvalidArguments {
                    tool: entry.name.clone(),
                    message: "arguments must be a JSON object".into(),
                });
            }
        };
        let arguments = Value::Object(arguments);
        entry
            .validate(&arguments)
            .map_err(|message| McpError::InvalidArguments { tool: entry.name.clone(), message })?;
        let server = self
            .handles()
            .into_iter()
            .find(|s| s.name() == entry.server)
            .ok_or_else(|| McpError::UnknownTool { name: entry.name.clone() })?;
        let meta = match server.config.transport {
            McpTransportConfig::InProcess => {
                let mut meta = visible().map(visible_tools_meta);
                if let Some(files) = &identity.files {
                    meta.get_or_insert_with(JsonObject::new).insert(FILES_NAMESPACE_META.into(), files.clone().into());
                }
                meta
            }
            _ if !server.config.user_headers.is_empty() => {
                let headers = call_headers::render(&server.config.user_headers, identity);
                let mut meta = JsonObject::new();
                meta.insert(CALL_HEADERS_META.into(), Value::Object(headers));
                Some(meta)
            }
            _ => None,
        };
        let Value::Object(arguments) = arguments else {
            return Err(McpError::InvalidArguments { tool: entry.name.clone(), message: "not an object".into() });
        };
        server.call(&entry.original_name, Some(arguments), meta).await
    }

    /// Rebuilds the catalog from every server's current tools.
    fn rebuild(&self) {
        let _serialised = self.rebuilding.lock();
        let handles = self.handles();
        let sources = handles.iter().flat_map(|s| {
            let server = s.name().to_owned();
            s.tools().iter().cloned().collect::<Vec<_>>().into_iter().map(move |t| SourceTool {
                server: server.clone(),
                name: t.name.into_owned(),
                description: t.description.map(|d| d.into_owned()),
                input_schema: t.input_schema,
            })
        });
        let catalog = Catalog::build(sources);
        tracing::debug!(tools = catalog.len(), "tool catalog rebuilt");
        self.catalog.store(catalog);
    }

    /// Stops every server (children are killed and reaped), bounded in time.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.servers.write()).into_iter().map(|r| r.task).collect();
        let _ = tokio::time::timeout(Duration::from_secs(10), futures_util::future::join_all(tasks)).await;
    }
}

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
