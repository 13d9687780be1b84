//! The MCP hub: every configured server as a live, supervised connection, and all their tools
//! as one [`Catalog`] shared by the chat loop, the REST API and the CLI.
//!
//! | file         | what it holds                                                       |
//! |--------------|---------------------------------------------------------------------|
//! | `connect.rs` | opening a session over stdio, streamable HTTP or legacy SSE          |
//! | `child_env.rs` | the allowlisted environment a stdio server starts with             |
//! | `sse.rs`     | our legacy HTTP+SSE client transport (rmcp 3 has none)               |
//! | `server.rs`  | one server's supervisor (backoff, `list_changed`) and its tool calls |
//! | `catalog.rs` | exposed names, sanitised schemas, prepared OpenAI tool JSON          |
//!
//! `mcp/` knows nothing of HTTP serving or of the chat loop.

mod catalog;
mod child_env;
mod connect;
mod server;
mod sse;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rmcp::model::CallToolResult;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use catalog::{Catalog, SourceTool, ToolEntry};
pub use server::{ServerHandle, ServerState, ServerStatus};

use crate::builtin::{BuiltinTools, DirectoryEntry, ToolDirectory};
use crate::config::{McpServerConfig, McpTransportConfig};

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

/// All servers and the catalog of their tools.
pub struct Hub {
    servers: Vec<Arc<ServerHandle>>,
    catalog: RwLock<Arc<Catalog>>,
    version: watch::Sender<u64>,
    shutdown: CancellationToken,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Hub {
    /// Starts a supervisor per enabled server; returns at once (servers connect in the
    /// background, so one slow server never delays the gateway).
    pub fn start(configs: &[McpServerConfig], builtin: Option<BuiltinTools>, shutdown: CancellationToken) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        let hub = Arc::new(Self {
            servers: configs
                .iter()
                .cloned()
                .map(|c| {
                    let inproc =
                        matches!(c.transport, McpTransportConfig::InProcess).then(|| builtin.clone()).flatten();
                    ServerHandle::new(c, inproc)
                })
                .collect(),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            version: watch::channel(0).0,
            shutdown,
            tasks: Default::default(),
        });
        let weak = Arc::downgrade(&hub);
        let on_change: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            if let Some(hub) = weak.upgrade() {
                hub.rebuild();
            }
        });
        let tasks = hub
            .servers
            .iter()
            .map(|s| tokio::spawn(s.clone().supervise(http.clone(), on_change.clone(), hub.shutdown.child_token())))
            .collect();
        *hub.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        hub
    }

    /// The current catalog (a cheap `Arc` clone; never rebuilt per request).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A receiver that changes whenever the catalog is rebuilt.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Status of every configured server.
    pub fn servers(&self) -> Vec<ServerStatus> {
        self.servers.iter().map(|s| s.status()).collect()
    }

    /// Waits (at most `limit`) until no server is still making its first connection.
    pub async fn settled(&self, limit: Duration) {
        let all = futures_util::future::join_all(self.servers.iter().map(|s| s.settled()));
        let _ = tokio::time::timeout(limit, all).await;
    }

    /// Calls a tool by its exposed name (operators' CLI: no permission applies).
    pub async fn call(&self, name: &str, arguments: Value) -> Result<CallToolResult, McpError> {
        let catalog = self.catalog();
        let entry = catalog.get(name).ok_or_else(|| McpError::UnknownTool { name: name.to_owned() })?;
        self.call_entry(entry, arguments, || None).await
    }

    /// Calls the tool of a catalog entry. The caller has already checked its permission;
    /// `visible` names the tools that caller may see (`None`: all of them) and is asked only when
    /// the tool is a built-in one, so `list_mcp_tools` shows no more than the caller may use.
    pub async fn call_entry(
        &self,
        entry: &ToolEntry,
        arguments: Value,
        visible: impl FnOnce() -> Option<Vec<String>>,
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
            .servers
            .iter()
            .find(|s| s.name() == entry.server)
            .ok_or_else(|| McpError::UnknownTool { name: entry.name.clone() })?;
        let meta = match server.config.transport {
            McpTransportConfig::InProcess => visible().map(crate::builtin::visible_tools_meta),
            _ => None,
        };
        let Value::Object(arguments) = arguments else {
            return Err(McpError::InvalidArguments { tool: entry.name.clone(), message: "not an object".into() });
        };
        server.call(&entry.original_name, Some(arguments), meta).await
    }

    /// Rebuilds the catalog from every server's last known tools.
    fn rebuild(&self) {
        let sources = self.servers.iter().flat_map(|s| {
            let server = s.name().to_owned();
            s.tools().into_iter().map(move |t| SourceTool {
                server: server.clone(),
                name: t.name.into_owned(),
                description: t.description.map(|d| d.into_owned()),
                input_schema: t.input_schema,
            })
        });
        let catalog = Arc::new(Catalog::build(sources));
        tracing::debug!(tools = catalog.len(), "tool catalog rebuilt");
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = catalog;
        self.version.send_modify(|v| *v += 1);
    }

    /// Stops every server (children are killed and reaped), bounded in time.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::time::timeout(Duration::from_secs(10), futures_util::future::join_all(tasks)).await;
    }
}

/// The hub's catalog as the built-in `list_mcp_tools` sees it (set once the hub exists).
#[derive(Default)]
pub struct HubDirectory(std::sync::OnceLock<std::sync::Weak<Hub>>);

impl HubDirectory {
    /// Points the directory at `hub`.
    pub fn set(&self, hub: &Arc<Hub>) {
        let _ = self.0.set(Arc::downgrade(hub));
    }
}

impl ToolDirectory for HubDirectory {
    fn tools(&self) -> Vec<DirectoryEntry> {
        let Some(hub) = self.0.get().and_then(std::sync::Weak::upgrade) else { return Vec::new() };
        hub.catalog()
            .entries()
            .iter()
            .map(|e| DirectoryEntry {
                server: e.server.clone(),
                name: e.name.clone(),
                description: e.description.clone().unwrap_or_default(),
            })
            .collect()
    }
}
