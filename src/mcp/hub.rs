//! The hub: every configured server as a live, supervised connection, the catalog of all
//! their tools rebuilt (serialised) when any server's tools change, reconfiguration on reload,
//! and calls routed by catalog entry. Which transport a server uses is `connect.rs`'s business.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rmcp::model::CallToolResult;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    Attached, Catalog, InProcessServer, McpError, ServerHandle, ServerStatus, SharedCatalog, SourceTool, ToolEntry,
};
use crate::config::{McpServerConfig, UserIdentity};

/// Server notifications held for a facade that has not read them yet.
const EVENTS_BUFFERED: usize = 256;

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
    /// Catalog rebuilds asked for and done ([`Hub::rebuild`]).
    rebuilds: Arc<Rebuilds>,
    shutdown: CancellationToken,
    http: reqwest::Client,
    in_process: HashMap<String, InProcessServer>,
    /// Where OAuth servers' tokens are kept (none: OAuth servers cannot connect).
    secrets: Option<crate::state::Secrets>,
    /// Answers sampling requests of servers with `sampling: true`.
    sampler: Option<super::Sampler>,
    /// Weak self, for the supervisors' change callback.
    this: std::sync::Weak<Hub>,
    /// What servers say that is not about one call (resources updated, lists changed).
    events: tokio::sync::broadcast::Sender<super::HubEvent>,
    /// Room for servers requests name by URL ([`Hub::attach`]).
    attachments: Arc<tokio::sync::Semaphore>,
    /// The runtime the hub started on: a server started later (a restart from the console, a
    /// reload, an attached server) runs there too, not on the serving core whose request
    /// asked for it.
    runtime: Option<tokio::runtime::Handle>,
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
        Self::start_with_secrets(configs, in_process, catalog, shutdown, None)
    }

    /// [`start_with_secrets`](Self::start_with_secrets), with the sampler for servers that may
    /// ask for model completions.
    pub fn start_full(
        configs: &[McpServerConfig],
        in_process: &HashMap<String, InProcessServer>,
        catalog: SharedCatalog,
        shutdown: CancellationToken,
        secrets: Option<crate::state::Secrets>,
        sampler: Option<super::Sampler>,
    ) -> Arc<Self> {
        Self::build(configs, in_process, catalog, shutdown, secrets, sampler)
    }

    /// [`start`](Self::start), with the state store OAuth servers keep their tokens in.
    pub fn start_with_secrets(
        configs: &[McpServerConfig],
        in_process: &HashMap<String, InProcessServer>,
        catalog: SharedCatalog,
        shutdown: CancellationToken,
        secrets: Option<crate::state::Secrets>,
    ) -> Arc<Self> {
        Self::build(configs, in_process, catalog, shutdown, secrets, None)
    }

    fn build(
        configs: &[McpServerConfig],
        in_process: &HashMap<String, InProcessServer>,
        catalog: SharedCatalog,
        shutdown: CancellationToken,
        secrets: Option<crate::state::Secrets>,
        sampler: Option<super::Sampler>,
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
            rebuilds: Arc::new(Rebuilds { wanted: AtomicU64::new(0), done: watch::channel(0).0, wake: Notify::new() }),
            shutdown,
            http,
            in_process: in_process.clone(),
            secrets,
            sampler,
            this: this.clone(),
            events: tokio::sync::broadcast::channel(EVENTS_BUFFERED).0,
            attachments: Arc::new(tokio::sync::Semaphore::new(MAX_ATTACHED)),
            runtime: tokio::runtime::Handle::try_current().ok(),
        });
        hub.spawn_rebuilder();
        let running: Vec<Running> = configs.iter().cloned().map(|c| hub.launch(c)).collect();
        *hub.servers.write() = running;
        // A server that became ready before the list was in place rebuilt without itself.
        hub.rebuild();
        hub
    }

    /// The one task that rebuilds the catalog: every change asks for a rebuild, and however
    /// many were asked for while one ran, one more runs after it, reading every server's tools
    /// then. The build (schemas cleaned, names made unique, the search index) runs on the
    /// blocking pool, never on a runtime thread; requests keep the catalog they loaded.
    fn spawn_rebuilder(&self) {
        let rebuilds = self.rebuilds.clone();
        let this = self.this.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = rebuilds.wake.notified() => {}
                }
                let wanted = rebuilds.wanted.load(Ordering::Acquire);
                let Some(hub) = this.upgrade() else { return };
                let handles = hub.handles();
                let previous = hub.catalog();
                let built = tokio::task::spawn_blocking(move || {
                    Catalog::build_on(handles.iter().flat_map(|s| sources(s)), &[], Some(&previous))
                })
                .await;
                match built {
                    Ok(catalog) => {
                        tracing::debug!(tools = catalog.len(), "tool catalog rebuilt");
                        hub.catalog.store(catalog);
                    }
                    Err(error) => tracing::error!(%error, "the tool catalog could not be rebuilt"),
                }
                rebuilds.done.send_replace(wanted);
            }
        });
    }

    /// Starts the supervisor of one server.
    fn launch(&self, config: McpServerConfig) -> Running {
        // Offered by name; only `connect.rs` decides whether this server's transport uses it.
        let served = self.in_process.get(&config.name).cloned();
        let handle = ServerHandle::new(config, served);
        handle.set_secrets(self.secrets.clone());
        handle.set_sampler(self.sampler.clone());
        handle.set_events(self.events.clone());
        let this = self.this.clone();
        let on_change: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            if let Some(hub) = this.upgrade() {
                hub.rebuild();
            }
        });
        let stop = self.shutdown.child_token();
        let task = self.spawn(handle.clone().supervise(self.http.clone(), on_change, stop.clone()));
        Running { handle, stop, task }
    }

    /// Spawns `task` on the hub's runtime.
    fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => runtime.spawn(task),
            None => tokio::spawn(task),
        }
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
            self.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), running.task).await;
            });
        }
        // Also covers a new server that became ready before the list was in place.
        self.rebuild();
        (added, removed, restarted)
    }

    /// Restarts the server `name` with its configuration (a new connection or child; calls in
    /// flight on the old one end with it). `false` when there is no such server.
    pub fn restart(&self, name: &str) -> bool {
        let stopped = {
            let mut servers = self.servers.write();
            let Some(slot) = servers.iter_mut().find(|r| r.handle.name() == name) else { return false };
            let fresh = self.launch(slot.handle.config.clone());
            std::mem::replace(slot, fresh)
        };
        stopped.stop.cancel();
        self.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), stopped.task).await;
        });
        self.rebuild();
        true
    }

    /// The handles of every server, in configuration order.
    pub(super) fn handles(&self) -> Vec<Arc<ServerHandle>> {
        self.servers.read().iter().map(|r| r.handle.clone()).collect()
    }

    /// What servers say that is not about one call, from now on (a receiver that falls more
    /// than a few hundred behind loses the oldest).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<super::HubEvent> {
        self.events.subscribe()
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

    /// Waits (at most `limit`) until no server is still making its first connection, and the
    /// catalog holds what they listed.
    pub async fn settled(&self, limit: Duration) {
        let handles = self.handles();
        let all = async {
            futures_util::future::join_all(handles.iter().map(|s| s.settled())).await;
            // One build that reads the settled servers (a server is ready a moment before it
            // asks for its rebuild).
            self.rebuild();
            self.rebuilt().await;
        };
        let _ = tokio::time::timeout(limit, all).await;
    }

    /// Waits until every rebuild asked for so far has landed.
    pub async fn rebuilt(&self) {
        let wanted = self.rebuilds.wanted.load(Ordering::Acquire);
        let mut done = self.rebuilds.done.subscribe();
        // After shutdown no rebuild runs: nothing to wait for.
        tokio::select! {
            _ = done.wait_for(|d| *d >= wanted) => {}
            () = self.shutdown.cancelled() => {}
        }
    }

    /// Calls a tool by its exposed name (operators' CLI: no permission applies).
    pub async fn call(&self, name: &str, arguments: Value) -> Result<CallToolResult, McpError> {
        let catalog = self.catalog();
        let entry = catalog.get(name).ok_or_else(|| McpError::UnknownTool { name: name.to_owned() })?;
        self.call_entry(entry, arguments, || None, &UserIdentity::default(), None).await
    }

    /// Calls the tool of a catalog entry. The caller has already checked its permission;
    /// `visible` names the tools that caller may see (`None`: all of them) and is asked only when
    /// the tool runs in process, so the built-in `list_mcp_tools` shows no more than the caller
    /// may use. `identity` fills the server's `user_headers`, if it has any. `retry` answers
    /// an earlier `input_required` result of the same call.
    pub async fn call_entry(
        &self,
        entry: &ToolEntry,
        arguments: Value,
        visible: impl FnOnce() -> Option<Vec<String>>,
        identity: &UserIdentity,
        retry: Option<&super::InputRetry>,
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
        // Never stricter than the server: the call goes out whatever the schema says, and the
        // schema's complaint (if any) is added only to an error the server itself returns.
        let arguments = Value::Object(arguments);
        let advice = entry.validate(&arguments).err();
        let server = match &entry.attached {
            Some(attached) => attached.handle.clone(),
            None => self
                .handles()
                .into_iter()
                .find(|s| s.name() == entry.server)
                .ok_or_else(|| McpError::UnknownTool { name: entry.name.clone() })?,
        };
        let meta = super::connect::call_meta(&server.config, visible, identity);
        let Value::Object(arguments) = arguments else {
            return Err(McpError::InvalidArguments { tool: entry.name.clone(), message: "not an object".into() });
        };
        let outcome = server.call_for(&entry.original_name, Some(arguments), meta, identity, retry).await;
        let Some(advice) = advice else { return outcome };
        let advice = format!("(the tool's input schema says: {advice})");
        match outcome {
            Err(McpError::InvalidArguments { tool, message }) => {
                Err(McpError::InvalidArguments { tool, message: format!("{message} {advice}") })
            }
            Ok(mut result) if result.is_error == Some(true) => {
                result.content.push(rmcp::model::ContentBlock::text(advice));
                Ok(result)
            }
            other => other,
        }
    }

    /// Asks for the catalog to be rebuilt from every server's current tools (coalesced; see
    /// [`spawn_rebuilder`](Self::spawn_rebuilder)); [`rebuilt`](Self::rebuilt) waits for it.
    fn rebuild(&self) {
        self.rebuilds.wanted.fetch_add(1, Ordering::AcqRel);
        self.rebuilds.wake.notify_one();
    }

    /// Connects to a server one request names by URL (`responses.server_urls`), for that
    /// request alone: it is in no shared catalog, server list or metric, it asks nothing of
    /// the gateway (no sampling, questions or OAuth), and dropping the [`Attachment`] closes
    /// it. Fails when it is not ready with its tools within `wait`.
    pub async fn attach(&self, config: McpServerConfig, wait: Duration) -> Result<Attachment, McpError> {
        let name = config.name.clone();
        // Bounded across requests: each is a connection (and a task) of ours.
        let Ok(permit) = self.attachments.clone().try_acquire_owned() else {
            return Err(McpError::ServerUnavailable {
                server: name,
                reason: format!("{MAX_ATTACHED} servers named by URL are connected already; try again shortly"),
            });
        };
        let redactor = Arc::new(crate::config::Redactor::for_server(&config));
        let handle = ServerHandle::new(config, None);
        let stop = self.shutdown.child_token();
        let on_change: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});
        self.spawn(handle.clone().supervise(self.http.clone(), on_change, stop.clone()));
        let attachment = Attachment {
            handle: Attached { handle: handle.clone(), redactor },
            _stop: stop.drop_guard(),
            _permit: permit,
        };
        let settled = tokio::time::timeout(wait, handle.settled()).await.is_ok();
        if !settled || handle.state() != super::ServerState::Ready {
            let reason = match handle.status().last_error {
                Some(error) => error,
                None if settled => "it did not become ready".to_owned(),
                None => format!("it was not ready within {wait:?}"),
            };
            return Err(McpError::ServerUnavailable { server: name, reason });
        }
        Ok(attachment)
    }

    /// The shared catalog with the tools of `attachments` added (their calls go to them).
    pub fn catalog_with(&self, attachments: &[Attachment]) -> Arc<Catalog> {
        if attachments.is_empty() {
            return self.catalog();
        }
        let attached: Vec<Attached> = attachments.iter().map(|a| a.handle.clone()).collect();
        // A configured server of the same name (a reload since the label was checked) is left
        // out: its tools never route to the request's connection, nor the other way.
        let mut handles = self.handles();
        handles.retain(|h| !attached.iter().any(|a| a.handle.name() == h.name()));
        let all = handles.iter().chain(attached.iter().map(|a| &a.handle));
        Arc::new(Catalog::build_on(all.flat_map(|s| sources(s)), &attached, Some(&self.catalog())))
    }

    /// Whether `server` may ask questions mid-call (legacy elicitation).
    pub fn elicits(&self, server: &str) -> bool {
        self.servers.read().iter().any(|r| r.handle.name() == server && r.handle.elicits())
    }

    /// Counts a call on `server` in flight, with `relay` behind it, from before it is sent
    /// until the count drops (`None`: no such server). A round counts its holdable calls before
    /// it starts any: a question asked while a sibling call is still starting matches no single
    /// call, whatever order the calls' tasks run in.
    pub fn count_call(&self, server: &str, relay: Arc<super::CallRelay>) -> Option<CallCount> {
        let servers = self.servers.read();
        let running = servers.iter().find(|r| r.handle.name() == server)?;
        Some(CallCount { _guard: running.handle.in_flight(Some(relay)) })
    }

    /// Answers a sampling request `server` made from inside a chat (`model`: the chat's).
    pub async fn sample(&self, server: &str, params: Value, model: Option<String>) -> Result<Value, String> {
        let handle = self.handles().into_iter().find(|s| s.name() == server).ok_or("no such server")?;
        handle.sample(params, model).await
    }

    /// Someone signed in to `server` (OAuth): it reconnects now instead of after its backoff;
    /// for a `per_user` server, `account`'s connection is opened anew.
    pub fn signed_in(&self, server: &str, account: Option<String>) {
        if let Some(handle) = self.handles().into_iter().find(|s| s.name() == server) {
            match account {
                Some(account) => handle.holder_signed_in(account),
                None => handle.signed_in(),
            }
        }
    }

    /// Confirms a per-user sign-in waiting under `code` for `holder` (see
    /// [`super::oauth::confirm`]); on success the holder's connection opens anew.
    pub async fn confirm_sign_in(&self, server: &str, holder: &str, code: &str) -> bool {
        let Some(secrets) = &self.secrets else { return false };
        match super::oauth::confirm(secrets, server, holder, code).await {
            Ok(true) => {
                self.signed_in(server, Some(holder.to_owned()));
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(server, error = %e, "confirming a sign-in failed");
                false
            }
        }
    }

    /// `account` disconnected from the per-user `server`: its connection closes.
    pub fn signed_out(&self, server: &str, account: &str) {
        if let Some(handle) = self.handles().into_iter().find(|s| s.name() == server) {
            handle.holders.forget(account);
        }
    }

    /// Stops every server (children are killed and reaped), bounded in time.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.servers.write()).into_iter().map(|r| r.task).collect();
        let _ = tokio::time::timeout(Duration::from_secs(10), futures_util::future::join_all(tasks)).await;
    }
}

/// Catalog rebuilds: how many were asked for, the count the last one to land had seen, and
/// the rebuilder's wake-up.
struct Rebuilds {
    wanted: AtomicU64,
    done: watch::Sender<u64>,
    wake: Notify,
}

/// A request's connection to a server it named by URL ([`Hub::attach`]); closed when dropped.
pub struct Attachment {
    handle: Attached,
    _stop: tokio_util::sync::DropGuard,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Most servers named by URL connected at once, across all requests.
const MAX_ATTACHED: usize = 64;

/// The tools `server` offers, as catalog sources.
fn sources(server: &ServerHandle) -> impl Iterator<Item = SourceTool> + use<> {
    let name = server.name().to_owned();
    let prefix = server.config.prefix.clone();
    server.offered_tools().iter().cloned().collect::<Vec<_>>().into_iter().map(move |t| SourceTool {
        server: name.clone(),
        name: t.name.into_owned(),
        description: t.description.map(|d| d.into_owned()),
        destructive: t
            .annotations
            .as_ref()
            .is_some_and(|a| a.destructive_hint == Some(true) && a.read_only_hint != Some(true)),
        input_schema: t.input_schema,
        prefix: Some(prefix.clone()),
    })
}

/// A call counted in flight on its server until dropped ([`Hub::count_call`]).
pub struct CallCount {
    _guard: super::server::CallerGuard,
}
