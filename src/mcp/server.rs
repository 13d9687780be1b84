//! One supervised MCP server: connect with a startup timeout, list its tools, watch for
//! `list_changed`, reconnect with capped exponential backoff when the connection ends, and run
//! tool calls on the live connection (many in flight at once: JSON-RPC ids, no lock).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam, ClientRequest, ErrorCode,
    JsonObject, MetaObject, RequestId, RequestMetaObject, ServerResult, Tool,
};
use rmcp::service::{Peer, PeerRequestOptions, ServiceError};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::connect::{ConnectError, HubClient, connect};
use super::stderr::StderrSlot;
use super::{InProcessServer, McpError};
use crate::config::{McpServerConfig, Redactor};

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that lived this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Where a server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// `enabled: false`.
    Disabled,
    /// First connection under way.
    Connecting,
    /// Initialised; calls go through.
    Ready,
    /// The connection ended; reconnecting.
    Restarting,
    /// The last attempt failed; waiting to retry.
    Failed,
}

/// What `/mcp/servers` shows for one server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    /// Name.
    pub name: String,
    /// `stdio`, `streamable-http` or `sse`.
    pub transport: &'static str,
    /// Current state.
    pub state: ServerState,
    /// Number of exposed tools.
    pub tools: usize,
    /// Last connection or protocol error.
    pub last_error: Option<String>,
    /// Reconnections so far.
    pub restarts: u32,
    /// The MCP protocol version negotiated on the live connection (`2026-07-28` for the
    /// handshake-free revision, an older one after the `initialize` handshake).
    pub protocol_version: Option<String>,
    /// For an OAuth server: `connected`, `needs_login` (nobody signed in, or the server refused
    /// the sign-in and its refresh), `expired` (its token ran out with nothing to renew it) or
    /// `connecting`; `per_user` for a server each user connects to. Never a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<&'static str>,
    /// For a `per_user` server: how many users' connections are open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected_users: Option<usize>,
    /// For an OAuth server: the issuer of its tokens (the authorization server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// Everything that changes about a server, in one place: watchers see each change whole.
#[derive(Clone)]
pub(super) struct Live {
    pub(super) state: ServerState,
    pub(super) peer: Option<Peer<RoleClient>>,
    pub(super) tools: Arc<Vec<Tool>>,
    pub(super) last_error: Option<String>,
    pub(super) restarts: u32,
    pub(super) protocol_version: Option<String>,
    /// The issuer of an OAuth server's tokens, once connected with them.
    pub(super) issuer: Option<String>,
    /// Where the live connection's progress notifications go.
    pub(super) progress: Option<super::progress::ProgressRouter>,
    /// Since when the server has not been ready (`None` while it is).
    pub(super) down_since: Option<Instant>,
}

/// A server and its supervisor's shared state.
pub struct ServerHandle {
    /// The server's configuration.
    pub config: McpServerConfig,
    pub(super) live: watch::Sender<Live>,
    pub(super) tools_changed: Arc<Notify>,
    in_process: Option<InProcessServer>,
    /// Scrubs this server's URL tokens and header values from every message it produces.
    pub(super) redactor: Redactor,
    /// Whether to try the 2026-07-28 revision (`server/discover`) first: until a server has
    /// been reached with the `initialize` handshake instead.
    pub(super) try_discover: std::sync::atomic::AtomicBool,
    /// What the server's listings were checked against, and what the last check kept.
    checked: parking_lot::Mutex<Checked>,
    /// The last stderr lines of the current child (stdio servers).
    stderr: StderrSlot,
    /// Where this server's OAuth tokens are kept.
    pub(super) secrets: parking_lot::Mutex<Option<crate::state::Secrets>>,
    /// Told when an OAuth server refused our token for good: the connection ends.
    auth_lost: Notify,
    /// Told when someone signed in to this server: a waiting reconnection starts at once.
    signed_in: Notify,
    /// A `per_user` server's connections, one per account holder.
    pub(super) holders: super::per_user::Holders,
    /// The raw tool list a `per_user` server last adopted.
    pub(super) adopted: parking_lot::Mutex<Option<Vec<Tool>>>,
    /// The HTTP client and the catalog's change callback, once supervision started.
    pub(super) runtime: std::sync::OnceLock<Runtime>,
    /// Answers this server's sampling requests (only with `sampling: true`).
    pub(super) sampler: parking_lot::Mutex<Option<super::Sampler>>,
    /// The calls in flight, with who stands behind each (questions, sampling and log messages
    /// are routed to the one call in flight).
    pub(super) callers: super::Callers,
    /// Numbers the calls registered in `callers`.
    next_caller: std::sync::atomic::AtomicU64,
    /// Where resource and list-change notifications go (the hub's channel).
    events: parking_lot::Mutex<Option<tokio::sync::broadcast::Sender<super::HubEvent>>>,
    /// Resource subscriptions held with the server, by URI, with how many subscribers each.
    pub(super) subscriptions: parking_lot::Mutex<std::collections::HashMap<String, usize>>,
    /// Serialises subscription changes (count and request together).
    pub(super) subscribing: tokio::sync::Mutex<()>,
}

/// Lets notifications the server sent just before a call's result reach the call's caller:
/// rmcp handles each in a task of its own, which may run after the result is in. A few turns
/// of the scheduler, and, for a call that has heard notifications (so more may be on the
/// way), a few milliseconds.
async fn straggle(relay: Option<&super::CallRelay>) {
    let Some(relay) = relay else { return };
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    if relay.heard.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(STRAGGLERS).await;
    }
}

/// How long a call that heard notifications waits for the last of them after its result.
const STRAGGLERS: std::time::Duration = std::time::Duration::from_millis(10);

/// Takes a call out of the callers when it ends.
pub(super) struct CallerGuard {
    callers: super::Callers,
    id: u64,
}

impl Drop for CallerGuard {
    fn drop(&mut self) {
        self.callers.lock().retain(|(id, _)| *id != self.id);
    }
}

/// What supervision hands a server for connections it opens later (per-user ones).
pub(super) struct Runtime {
    /// The hub's HTTP client.
    pub http: reqwest::Client,
    /// Rebuilds the catalog.
    pub on_change: Arc<dyn Fn() + Send + Sync>,
}

impl ServerHandle {
    /// A handle in its initial state (`connecting`, or `disabled`).
    pub fn new(config: McpServerConfig, in_process: Option<InProcessServer>) -> Arc<Self> {
        let state = if config.enabled { ServerState::Connecting } else { ServerState::Disabled };
        let (live, _) = watch::channel(Live {
            state,
            peer: None,
            tools: Arc::default(),
            last_error: None,
            restarts: 0,
            protocol_version: None,
            issuer: None,
            progress: None,
            down_since: Some(Instant::now()),
        });
        let tools_changed = Arc::new(Notify::new());
        let redactor = Redactor::for_server(&config);
        let try_discover = std::sync::atomic::AtomicBool::new(true);
        let checked = parking_lot::Mutex::new(Checked::default());
        let stderr = StderrSlot::default();
        let secrets = parking_lot::Mutex::new(None);
        let auth_lost = Notify::new();
        let signed_in = Notify::new();
        Arc::new(Self {
            config,
            live,
            tools_changed,
            in_process,
            redactor,
            try_discover,
            checked,
            stderr,
            secrets,
            auth_lost,
            signed_in,
            holders: super::per_user::Holders::default(),
            adopted: parking_lot::Mutex::new(None),
            runtime: std::sync::OnceLock::new(),
            sampler: parking_lot::Mutex::new(None),
            callers: super::Callers::default(),
            next_caller: std::sync::atomic::AtomicU64::new(0),
            events: parking_lot::Mutex::new(None),
            subscriptions: parking_lot::Mutex::default(),
            subscribing: tokio::sync::Mutex::new(()),
        })
    }

    /// Gives a server with `sampling: true` what answers its sampling requests.
    pub fn set_sampler(&self, sampler: Option<super::Sampler>) {
        *self.sampler.lock() = sampler.filter(|_| self.config.sampling);
    }

    /// Registers a request in flight on the server's shared connection, with who stands behind
    /// it (`None`: nobody the server could reach — a listing, a read, a ping of ours), until
    /// the guard drops. Every request we send is registered, so that what the server sends
    /// while several are in flight is routed to none of them.
    pub(super) fn in_flight(&self, relay: Option<Arc<super::CallRelay>>) -> CallerGuard {
        let id = self.next_caller.fetch_add(1, Ordering::Relaxed);
        self.callers.lock().push((id, relay));
        CallerGuard { callers: self.callers.clone(), id }
    }

    /// Whether a call with `relay` behind it is counted in flight here already.
    pub(super) fn counts(&self, relay: &Arc<super::CallRelay>) -> bool {
        self.callers.lock().iter().any(|(_, counted)| counted.as_ref().is_some_and(|c| Arc::ptr_eq(c, relay)))
    }

    /// Sends this server's resource and list-change notifications to `events`.
    pub fn set_events(&self, events: tokio::sync::broadcast::Sender<super::HubEvent>) {
        *self.events.lock() = Some(events);
    }

    /// Our client for a new connection of this server.
    pub(super) fn client(&self, tools_changed: Arc<Notify>) -> HubClient {
        // One registry for all the server's connections (a per-user server has one per user):
        // something a server sends about "the" call goes to a caller only when exactly one
        // call is in flight on the whole server.
        // A per-user server's connections are each one user's: nothing a server sends that
        // names no call is routed there (its registry stays empty).
        let callers = if self.config.per_user() { super::Callers::default() } else { self.callers.clone() };
        let client = HubClient::new(tools_changed)
            .with_sampler(self.name(), self.sampler.lock().clone())
            .with_callers(callers, self.config.elicitation);
        match self.events.lock().clone() {
            Some(events) => client.with_events(self.name(), events),
            None => client,
        }
    }

    /// Whether this server may ask questions mid-call (legacy elicitation, routed to chats).
    pub fn elicits(&self) -> bool {
        self.config.elicitation && !self.config.per_user()
    }

    /// Answers a sampling request of this server from a chat (`model`: the chat's model);
    /// `Err` when the server may not ask.
    pub async fn sample(&self, params: serde_json::Value, model: Option<String>) -> Result<serde_json::Value, String> {
        let Some(sampler) = self.sampler.lock().clone() else {
            return Err("the gateway does not provide sampling to this server (sampling: false)".into());
        };
        sampler(super::SamplingCall { server: self.name().to_owned(), params, model }).await
    }

    /// Someone signed in to this server: a waiting reconnection starts now.
    pub fn signed_in(&self) {
        self.signed_in.notify_one();
    }

    /// Gives the server the state store its OAuth tokens are kept in.
    pub fn set_secrets(&self, secrets: Option<crate::state::Secrets>) {
        *self.secrets.lock() = secrets;
    }

    /// Server name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Current state.
    pub fn state(&self) -> ServerState {
        self.live.borrow().state
    }

    /// The status row.
    pub fn status(&self) -> ServerStatus {
        let live = self.live.borrow();
        ServerStatus {
            name: self.config.name.clone(),
            transport: self.config.transport.kind(),
            state: live.state,
            tools: live.tools.len(),
            last_error: live.last_error.clone(),
            restarts: live.restarts,
            protocol_version: live.protocol_version.clone(),
            auth: self.config.oauth.as_ref().map(|oauth| match (live.state, live.last_error.as_deref()) {
                _ if oauth.per_user => "per_user",
                (ServerState::Ready, _) => "connected",
                (_, Some(error)) if error.starts_with(super::connect::NEEDS_LOGIN) => "needs_login",
                (_, Some(error)) if error.starts_with(super::connect::SIGN_IN_EXPIRED) => "expired",
                _ => "connecting",
            }),
            connected_users: self.config.per_user().then(|| self.holders.open()),
            issuer: live.issuer.clone(),
        }
    }

    /// The last known (filtered) tool list.
    pub fn tools(&self) -> Arc<Vec<Tool>> {
        self.live.borrow().tools.clone()
    }

    /// The tools to offer: none once the server has been down for `withdraw_after` (offering
    /// them would only produce "unavailable" calls), the last known list otherwise.
    pub fn offered_tools(&self) -> Arc<Vec<Tool>> {
        let live = self.live.borrow();
        match live.down_since {
            Some(since) if since.elapsed() >= self.config.withdraw_after => Arc::default(),
            _ => live.tools.clone(),
        }
    }

    /// Waits until the server left `connecting` (ready, failed or disabled).
    pub async fn settled(&self) {
        let mut rx = self.live.subscribe();
        let _ = rx.wait_for(|c| c.state != ServerState::Connecting).await;
    }

    /// Keeps the server connected until `shutdown`; `on_change` runs whenever its tools change.
    pub async fn supervise(
        self: Arc<Self>,
        http: reqwest::Client,
        on_change: Arc<dyn Fn() + Send + Sync>,
        shutdown: CancellationToken,
    ) {
        if !self.config.enabled {
            return;
        }
        let _ = self.runtime.set(Runtime { http: http.clone(), on_change: on_change.clone() });
        if self.config.per_user() {
            return self.supervise_per_user(on_change, shutdown).await;
        }
        let mut failures = 0u32;
        let mut withdrawn = false;
        loop {
            let started = Instant::now();
            let error = match self.connect_once(&http, &on_change, &shutdown).await {
                Ok(()) if shutdown.is_cancelled() => return,
                Ok(()) => "connection closed".to_owned(),
                Err(e) => e,
            };
            // A child that died says why on stderr: its last lines go with the error.
            match self.stderr.last_words().await {
                Some(words) => self.set_error(&format!("{error}; stderr: {words}")),
                None => self.set_error(&error),
            }
            if shutdown.is_cancelled() {
                return;
            }
            // Down past the grace: its tools leave the catalog (once) until it is back.
            let down_long = self.live.borrow().down_since.is_some_and(|t| t.elapsed() >= self.config.withdraw_after);
            if down_long && !withdrawn {
                tracing::warn!(server = %self.name(), "MCP server down too long; its tools are withdrawn until it is back");
                on_change();
            }
            withdrawn = down_long;
            failures = if started.elapsed() >= STABLE_AFTER { 1 } else { failures + 1 };
            let backoff = (Duration::from_millis(250) * 2u32.saturating_pow(failures - 1)).min(MAX_BACKOFF);
            tracing::warn!(server = %self.name(), backoff_ms = backoff.as_millis() as u64, "MCP server unavailable; reconnecting");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
                () = self.signed_in.notified() => {}
            }
            self.live.send_modify(|live| {
                live.restarts += 1;
                live.state = ServerState::Restarting;
                live.peer = None;
            });
        }
    }

    /// One connection's life: connect, list tools, serve until it ends. `Ok` when it ended.
    async fn connect_once(
        &self,
        http: &reqwest::Client,
        on_change: &Arc<dyn Fn() + Send + Sync>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let timeout = self.config.startup_timeout;
        let client = self.client(self.tools_changed.clone());
        let dispatcher = client.progress();
        let discover = self.try_discover.load(Ordering::Relaxed);
        let secrets = self.secrets.lock().clone();
        let running = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(timeout, connect(&self.config, http, client, self.in_process.as_ref(), discover, &self.stderr, secrets.as_ref(), None)) => match r {
                Ok(Ok(connected)) => connected,
                Ok(Err(e)) => {
                    // One start per attempt: after the child closed the connection on
                    // `server/discover`, the next attempt uses the handshake; after the
                    // handshake was refused, the next one tries `server/discover` again.
                    match e {
                        ConnectError::Closed(_) if discover => self.try_discover.store(false, Ordering::Relaxed),
                        ConnectError::Initialize(_) | ConnectError::NoCommonVersion if !discover => {
                            self.try_discover.store(true, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                    return Err(e.to_string());
                }
                Err(_) => return Err(format!("no answer to initialize within {timeout:?}")),
            },
        };
        let (running, _group, new_era) = running;
        self.try_discover.store(new_era, Ordering::Relaxed);
        let peer = running.peer().clone();
        let version = running.peer_info().map(|info| info.protocol_version.as_str().to_owned());
        let issuer = match (&self.config.oauth, &secrets) {
            (Some(_), Some(secrets)) => super::oauth::issuer(&self.config.name, secrets).await,
            _ => None,
        };
        match tokio::time::timeout(timeout, list_capped(&peer)).await {
            Ok(Ok(tools)) => {
                self.store_tools(tools);
            }
            Ok(Err(e)) => return Err(format!("tools/list failed: {e}")),
            Err(_) => return Err(format!("no answer to tools/list within {timeout:?}")),
        }
        self.live.send_modify(|live| {
            live.last_error = None;
            live.state = ServerState::Ready;
            live.peer = Some(peer.clone());
            live.protocol_version = version;
            live.issuer = issuer;
            live.progress = Some(dispatcher.clone());
            live.down_since = None;
            // Asked for while the change is being made (the build reads this state only after
            // it), so whoever sees the server ready and then waits for the rebuilds asked so far
            // (`GET /mcp/servers` does) finds its tools in the catalog.
            on_change();
        });
        tracing::info!(server = %self.name(), tools = self.tools().len(), "MCP server ready");
        if !self.subscriptions.lock().is_empty() {
            self.resubscribe(peer.clone()).await;
        }

        let stop = running.cancellation_token();
        let ended = running.waiting();
        tokio::pin!(ended);
        let interval = self.config.ping_interval;
        let mut unanswered = 0u32;
        let mut listed_at: Option<Instant> = None;
        let mut relist_gap = RELIST_GAP;
        // The next ping is due `interval` after the last one, whatever else happened meanwhile
        // (a server announcing changes all the time is still pinged).
        let mut ping_at = tokio::time::Instant::now() + interval;
        loop {
            let ping_due = async {
                if interval.is_zero() {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep_until(ping_at).await;
            };
            tokio::select! {
                _ = &mut ended => break,
                () = self.auth_lost.notified() => break,
                () = ping_due => {
                    ping_at = tokio::time::Instant::now() + interval;
                    // A wedged server (it accepts, it never answers) is found by its silence.
                    let wait = interval.clamp(Duration::from_secs(1), Duration::from_secs(10));
                    if ping(&peer, wait).await {
                        unanswered = 0;
                        continue;
                    }
                    unanswered += 1;
                    tracing::warn!(server = %self.name(), unanswered, "MCP server did not answer a ping");
                    if unanswered >= MAX_UNANSWERED_PINGS {
                        self.set_error("no answer to three pings; restarting");
                        stop.cancel();
                        let _ = tokio::time::timeout(Duration::from_secs(5), ended).await;
                        return Ok(());
                    }
                }
                () = shutdown.cancelled() => {
                    stop.cancel();
                    let _ = tokio::time::timeout(Duration::from_secs(5), ended).await;
                    self.set_state(ServerState::Disabled, None);
                    return Ok(());
                }
                () = self.tools_changed.notified() => {
                    // A server announcing changes often is listed again at most once a second,
                    // or less often when its listings take long (see `relist_gap`): what it
                    // announced meanwhile is one listing (the last is always listed).
                    let gap = listed_at.map_or(Duration::ZERO, |at| relist_gap.saturating_sub(at.elapsed()));
                    if !gap.is_zero() {
                        tokio::select! {
                            () = tokio::time::sleep(gap) => {}
                            () = shutdown.cancelled() => continue,
                            _ = &mut ended => break,
                            () = self.auth_lost.notified() => break,
                        }
                    }
                    let started = Instant::now();
                    listed_at = Some(started);
                    let _listing = self.in_flight(None);
                    match tokio::time::timeout(timeout, list_capped(&peer)).await {
                        // An announcement that changed nothing rebuilds nothing.
                        Ok(Ok(tools)) => {
                            if self.store_tools(tools) {
                                tracing::info!(server = %self.name(), tools = self.tools().len(),
                                    took_ms = started.elapsed().as_millis(), "tool list changed");
                                on_change();
                            }
                        }
                        Ok(Err(e)) => tracing::warn!(server = %self.name(), error = %e, "tools/list after list_changed failed"),
                        Err(_) => tracing::warn!(server = %self.name(), "tools/list after list_changed timed out"),
                    }
                    // A listing that failed or timed out took its time too.
                    relist_gap = self::relist_gap(started.elapsed());
                }
            }
        }
        self.set_state(ServerState::Restarting, None);
        Ok(())
    }

    /// Keeps the server's tools (filtered, bounded, checked against their first definitions);
    /// whether they differ from what it had.
    pub(super) fn store_tools(&self, tools: Vec<Tool>) -> bool {
        let include = self.config.include_tools.as_ref();
        let exclude = &self.config.exclude_tools;
        let mut checked = self.checked.lock();
        let Checked { first_seen, kept: last } = &mut *checked;
        // A tool listed as the last check kept it was bounded and checked then: it stays that
        // tool (and its schema that allocation, so the catalog's rebuild sees it unchanged at
        // once). Only new and changed tools are bounded and checked. The tools compared with
        // are the ones kept here, never others put on offer (a per-user server's placeholder).
        let before: std::collections::HashMap<&str, &Tool> = last.iter().map(|t| (t.name.as_ref(), t)).collect();
        let listed: Vec<(Tool, bool)> = tools
            .into_iter()
            .filter(|t| include.is_none_or(|inc| inc.iter().any(|n| n == t.name.as_ref())))
            .filter(|t| !exclude.iter().any(|n| n == t.name.as_ref()))
            .filter_map(|t| match before.get(t.name.as_ref()) {
                Some(&old) if first_seen.is_some() && *old == t => Some((old.clone(), true)),
                _ => super::catalog::bounded_tool(self.name(), t).map(|t| (t, false)),
            })
            .collect();
        let mut kept = self.check_definitions(first_seen, listed);
        // A changed tool whose schema is equal to the last listing's keeps that allocation.
        for tool in &mut kept {
            if let Some(&old) = before.get(tool.name.as_ref())
                && !Arc::ptr_eq(&old.input_schema, &tool.input_schema)
                && old.input_schema == tool.input_schema
            {
                tool.input_schema = Arc::clone(&old.input_schema);
            }
        }
        drop(before);
        let kept = Arc::new(kept);
        *last = Arc::clone(&kept);
        drop(checked);
        self.live.send_if_modified(|live| {
            let changed = *live.tools != *kept;
            if changed {
                live.tools = kept;
            }
            changed
        })
    }

    /// Compares each new or changed tool's definition (`false` beside it) with the one first
    /// listed: a change (or a tool that appeared later) is logged and counted, and with
    /// `pin_descriptions` the tool is held back. A tool listed as the last check kept it
    /// (`true`) passed then. The first listing is the one compared with. A change is counted
    /// in each listing that brings it anew: once when it is kept, in every listing while it is
    /// held back (or while its text needs cleaning, as the cleaned tool is what was kept).
    fn check_definitions(
        &self,
        first_seen: &mut Option<std::collections::HashMap<String, u64>>,
        tools: Vec<(Tool, bool)>,
    ) -> Vec<Tool> {
        let fingerprint = |t: &Tool| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            t.description.hash(&mut h);
            // Hashed as it is written: no copy of the schema's text.
            let _ = serde_json::to_writer(HashWriter(&mut h), &*t.input_schema);
            h.finish()
        };
        let Some(first) = first_seen.as_ref() else {
            *first_seen = Some(tools.iter().map(|(t, _)| (t.name.to_string(), fingerprint(t))).collect());
            return tools.into_iter().map(|(t, _)| t).collect();
        };
        let pin = self.config.pin_descriptions;
        tools
            .into_iter()
            .filter(|(t, kept_before)| {
                if *kept_before {
                    return true;
                }
                let unchanged = first.get(t.name.as_ref()) == Some(&fingerprint(t));
                if !unchanged {
                    let labels = crate::metrics::ServerLabels { server: self.name().to_owned() };
                    crate::metrics::metrics().tool_definition_changes.get_or_create(&labels).inc();
                    let what = if first.contains_key(t.name.as_ref()) { "changed its definition" } else { "is new" };
                    tracing::warn!(server = %self.name(), tool = %t.name, held_back = pin,
                        "tool {what} since the server first listed its tools");
                }
                unchanged || !pin
            })
            .map(|(t, _)| t)
            .collect()
    }

    pub(super) fn set_state(&self, state: ServerState, peer: Option<Peer<RoleClient>>) {
        self.live.send_modify(|live| {
            live.state = state;
            live.peer = peer;
        });
    }

    fn set_error(&self, error: &str) {
        let error = self.redactor.scrub(error);
        tracing::warn!(server = %self.name(), error = %error, "MCP server connection problem");
        self.live.send_modify(|live| {
            live.last_error = Some(error.into_owned());
            live.state = ServerState::Failed;
            live.peer = None;
            live.down_since.get_or_insert_with(Instant::now);
        });
    }

    /// Calls `tool` (original name). Fails at once when the server is not connected. Dropping
    /// the future sends `notifications/cancelled`; the timeout is reset by progress.
    /// `meta` goes into the request's `_meta`.
    pub async fn call(
        &self,
        tool: &str,
        arguments: Option<JsonObject>,
        meta: Option<JsonObject>,
    ) -> Result<CallToolResult, McpError> {
        let Some(peer) = self.live.borrow().peer.clone() else {
            return Err(self.unavailable());
        };
        self.call_on(peer, tool, arguments, meta, None).await
    }

    /// Calls `tool` on `peer` (the server's connection, or a user's).
    pub(super) async fn call_on(
        &self,
        peer: Peer<RoleClient>,
        tool: &str,
        arguments: Option<JsonObject>,
        meta: Option<JsonObject>,
        retry: Option<&super::InputRetry>,
    ) -> Result<CallToolResult, McpError> {
        // The request's own span; its trace context goes to the server in `_meta`.
        let traced = crate::telemetry::spans::mcp_call(tool, self.name(), &self.config.transport);
        let mut meta = meta;
        crate::telemetry::spans::inject_meta(&traced, &mut meta);
        let called = self.call_traced(peer, tool, arguments, meta, retry);
        let result = tracing::Instrument::instrument(called, traced.clone()).await;
        if let Err(e) = &result {
            crate::telemetry::spans::record_error(&traced, e.kind());
        } else if result.as_ref().is_ok_and(|r| r.is_error == Some(true)) {
            crate::telemetry::spans::record_error(&traced, "tool_error");
        }
        result
    }

    /// [`call_on`](Self::call_on) within its span.
    async fn call_traced(
        &self,
        peer: Peer<RoleClient>,
        tool: &str,
        arguments: Option<JsonObject>,
        meta: Option<JsonObject>,
        retry: Option<&super::InputRetry>,
    ) -> Result<CallToolResult, McpError> {
        // Kept for a tool that turns out to run only as a task (the call is made again).
        let (peer_again, arguments_again, meta_again) = (peer.clone(), arguments.clone(), meta.clone());
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = arguments;
        if let Some(retry) = retry {
            params.input_responses = Some(retry.responses.clone().into_iter().collect());
            params.request_state = retry.request_state.clone();
        }
        params.meta = meta.map(|m| RequestMetaObject(MetaObject(m)));
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        // Every call in flight on a connection that may ask questions is counted (registered
        // before it is sent): a question belongs to a chat only when that chat's call is the
        // one call running. A call that can be held waits for its person, up to
        // `max_call_duration` rather than `tool_timeout`.
        // Every call in flight is counted (registered before it is sent): what a server sends
        // that names no call belongs to a caller only when its call is the one running. A call
        // that can be held (a chat's, on a server that may ask) waits for its person, up to
        // `max_call_duration` rather than `tool_timeout`.
        let relay = super::RELAY.try_with(Clone::clone).ok();
        let held = self.config.elicitation && relay.as_ref().is_some_and(|r| r.asker.is_some());
        let relay_progress = relay.as_ref().and_then(|r| r.progress.clone());
        let heard = relay.clone();
        // Not twice: a round counts its holdable calls before it starts them.
        let _in_flight = match relay {
            Some(relay) if self.counts(&relay) => None,
            relay => Some(self.in_flight(relay)),
        };
        let longest = self.config.max_call_duration.max(self.config.tool_timeout);
        let options = PeerRequestOptions::with_timeout(if held { longest } else { self.config.tool_timeout })
            .reset_timeout_on_progress()
            .with_max_total_timeout(longest);
        // The timeout covers sending too: a transport that cannot send (a frozen server) must
        // not hold a call past its `tool_timeout`.
        let timeout = self.config.tool_timeout;
        let handle = match tokio::time::timeout(timeout, peer.send_request_with_option(request, options)).await {
            Ok(sent) => sent.map_err(|e| self.call_error(tool, e))?,
            Err(_) => {
                return Err(McpError::Timeout {
                    server: self.name().to_owned(),
                    tool: tool.to_owned(),
                    after: timeout,
                });
            }
        };
        let guard = CancelOnDrop { peer: Some(peer), id: handle.id.clone() };
        // The caller's progress line (a chat's status), fed by this call's notifications.
        let show = super::PROGRESS.try_with(Clone::clone).ok();
        let dispatcher = self.live.borrow().progress.clone();
        let watch = match dispatcher {
            Some(dispatcher) if show.is_some() || relay_progress.is_some() => {
                Some(dispatcher.subscribe(handle.progress_token.clone()))
            }
            _ => None,
        };
        let report = |step: &rmcp::model::ProgressNotificationParam| {
            if let Some(show) = &show {
                show(progress_line(tool, step));
            }
            if let (Some(relay), Ok(step)) = (&relay_progress, serde_json::to_value(step)) {
                if let Some(heard) = &heard {
                    heard.hear();
                }
                relay(step);
            }
        };
        let (result, progress) = match watch {
            None => (handle.await_response().await, None),
            Some(mut progress) => {
                let response = handle.await_response();
                tokio::pin!(response);
                let result = loop {
                    tokio::select! {
                        // Steps first: the server sent them before its result.
                        biased;
                        Some(step) = progress.next() => report(&step),
                        result = &mut response => break result,
                    }
                };
                (result, Some(progress))
            }
        };
        guard.disarm();
        // Progress and log messages the server sent just before its result (the call is still
        // registered, so they still reach its caller).
        straggle(heard.as_deref()).await;
        if let Some(mut progress) = progress {
            while let Some(step) = progress.ready() {
                report(&step);
            }
        }
        // A JSON-RPC error for the call (a tool that threw) is the tool's own failure, as an
        // `isError` result is: the model reads it and the REST API answers 200. Only refused
        // arguments (-32602) stay an error of the call.
        let result = match result {
            // A tool that runs only as a task (MCP 2025-11-25 tasks): called again as one.
            Err(ServiceError::McpError(data)) if super::tasks::wants_task(&data) => {
                return self.call_as_task(peer_again, tool, arguments_again, meta_again).await;
            }
            Err(ServiceError::McpError(data)) if data.code != ErrorCode::INVALID_PARAMS => {
                let message = self.redactor.scrub(&data.message).into_owned();
                return Ok(CallToolResult::error(vec![rmcp::model::ContentBlock::text(message)]));
            }
            other => other,
        };
        match result.map_err(|e| self.call_error(tool, e))? {
            // The TypeScript SDK reports the refusal as a failed result.
            ServerResult::CallToolResult(result) if super::tasks::result_wants_task(&result) => {
                self.call_as_task(peer_again, tool, arguments_again, meta_again).await
            }
            ServerResult::CallToolResult(result) => Ok(result),
            ServerResult::InputRequiredResult(asked) => Err(self.input_required(tool, asked)),
            _ => Err(McpError::Protocol {
                server: self.name().to_owned(),
                message: "unexpected reply to tools/call".into(),
            }),
        }
    }

    /// What an `input_required` result becomes: its requests, bounded in count and size (a
    /// server asking for too much gets its call failed, not a user pestered).
    fn input_required(&self, tool: &str, asked: rmcp::model::InputRequiredResult) -> McpError {
        let server = self.name().to_owned();
        let requests = match serde_json::to_value(asked.input_requests.unwrap_or_default()) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let size = serde_json::to_string(&requests).map_or(usize::MAX, |s| s.len())
            + asked.request_state.as_ref().map_or(0, String::len);
        if requests.len() > super::MAX_INPUT_REQUESTS || size > super::MAX_INPUT_BYTES {
            return McpError::Protocol {
                server,
                message: "the server asked for more input than the gateway passes on".into(),
            };
        }
        let needed =
            super::InputRequired { server, tool: tool.to_owned(), requests, request_state: asked.request_state };
        McpError::InputRequired(Box::new(needed))
    }

    /// The error of a call to a server that is not connected. The reason is its state in plain
    /// words; the connection error itself (library and transport detail) is for operators, in
    /// `/mcp/servers` and the log, not for clients and models.
    pub(super) fn unavailable(&self) -> McpError {
        let reason = match self.state() {
            ServerState::Disabled => "it is disabled",
            ServerState::Connecting => "it is still starting",
            ServerState::Restarting => "it is reconnecting",
            ServerState::Failed => "its connection failed; the gateway keeps retrying",
            ServerState::Ready => "it is not connected",
        };
        McpError::ServerUnavailable { server: self.name().to_owned(), reason: reason.into() }
    }

    /// What a failed call becomes. The server's own error messages are kept (scrubbed of this
    /// server's secrets); transport and library details go to the log only.
    pub(super) fn call_error(&self, tool: &str, e: ServiceError) -> McpError {
        let server = self.name().to_owned();
        let scrub = |text: &str| self.redactor.scrub(text).into_owned();
        // A per-user server refused this user's token and no refresh could replace it: the
        // caller is told to connect again (the caller closes that user's connection).
        if self.config.per_user() && format!("{e:?}").contains("AuthRequired") {
            return McpError::AccountNotConnected { server, link: None, expired: true };
        }
        // An OAuth server refused the token and no refresh could replace it: the connection is
        // ended (its next attempt shows `needs_login`), and the caller is told why.
        if self.config.oauth.is_some() && format!("{e:?}").contains("AuthRequired") {
            tracing::warn!(server = %server, "the server no longer accepts our sign-in; it needs a new login");
            self.auth_lost.notify_one();
            return McpError::ServerUnavailable {
                server: server.clone(),
                reason: format!("its sign-in is no longer valid; run `mcp-middleware login {server}`"),
            };
        }
        match e {
            ServiceError::McpError(data) if data.code == ErrorCode::INVALID_PARAMS => {
                McpError::InvalidArguments { tool: tool.to_owned(), message: scrub(&data.message) }
            }
            ServiceError::McpError(data) => McpError::Protocol { server, message: scrub(&data.message) },
            ServiceError::Timeout { timeout } => McpError::Timeout { server, tool: tool.to_owned(), after: timeout },
            ServiceError::Cancelled { .. } => McpError::Cancelled,
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                tracing::debug!(server = %server, tool, error = %scrub(&e.to_string()), "MCP connection lost during a call");
                McpError::ServerUnavailable { server, reason: "the connection was lost during the call".into() }
            }
            other => {
                tracing::debug!(server = %server, tool, error = %scrub(&other.to_string()), "MCP call failed");
                McpError::Protocol { server, message: "the server's answer could not be used".into() }
            }
        }
    }
}

/// A progress notification as one line: `tool: 40% — message` (or the count without a total).
fn progress_line(tool: &str, step: &rmcp::model::ProgressNotificationParam) -> String {
    let amount = match step.total {
        Some(total) if total > 0.0 => format!("{:.0}%", (step.progress / total * 100.0).clamp(0.0, 100.0)),
        _ => format!("{}", step.progress),
    };
    let message: String = step.message.as_deref().unwrap_or_default().chars().take(200).collect();
    if message.is_empty() { format!("{tool}: {amount}") } else { format!("{tool}: {amount} — {message}") }
}

/// Sends `notifications/cancelled` for a request whose caller went away before the answer.
struct CancelOnDrop {
    peer: Option<Peer<RoleClient>>,
    id: RequestId,
}

impl CancelOnDrop {
    fn disarm(mut self) {
        self.peer = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else { return };
        let params = CancelledNotificationParam::new(Some(self.id.clone()), Some("the client went away".into()));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = peer.notify_cancelled(params).await;
            });
        }
    }
}

/// Unanswered pings after which a connection is restarted.
const MAX_UNANSWERED_PINGS: u32 = 3;
/// What a server's listings are checked against ([`ServerHandle::store_tools`]).
#[derive(Default)]
struct Checked {
    /// A fingerprint of each tool's definition as first listed (kept across reconnections).
    first_seen: Option<std::collections::HashMap<String, u64>>,
    /// The tools the last check kept: a tool listed again as one of these is kept unchecked.
    kept: Arc<Vec<Tool>>,
}

/// Feeds what is written to it to a hasher.
struct HashWriter<'a>(&'a mut std::collections::hash_map::DefaultHasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::hash::Hasher::write(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Least time between two listings of a server's tools after it announced changes.
const RELIST_GAP: Duration = Duration::from_secs(1);
/// Most time between two listings of a server that keeps announcing changes.
const MAX_RELIST_GAP: Duration = Duration::from_secs(10);
/// A listing's time, multiplied by this, is the least time to the next: a server announcing
/// changes all the time keeps the gateway listing it at most 1 % of the time (for listings of up
/// to 100 ms; [`MAX_RELIST_GAP`] caps the wait).
const RELIST_BUDGET: u32 = 100;

/// How long after a listing that took `took` (wall time: the answer and taking in the tools,
/// or the failure) the server
/// is listed again, if it announces changes meanwhile: [`RELIST_BUDGET`] times `took`, within
/// [`RELIST_GAP`] and [`MAX_RELIST_GAP`]. A small catalog is listed again after a second; a
/// listing of 1,000 tools, which takes tens of milliseconds, a few seconds apart.
fn relist_gap(took: Duration) -> Duration {
    took.saturating_mul(RELIST_BUDGET).clamp(RELIST_GAP, MAX_RELIST_GAP)
}

/// Whether `peer` answers a `ping` within `wait`.
async fn ping(peer: &Peer<RoleClient>, wait: Duration) -> bool {
    let request = rmcp::model::ClientRequest::PingRequest(rmcp::model::PingRequest {
        method: Default::default(),
        extensions: Default::default(),
    });
    matches!(tokio::time::timeout(wait, peer.send_request(request)).await, Ok(Ok(_)))
}

/// Most tools taken from one server; the rest are left out with a warning (a server listing
/// 200,000 tools must not cost gigabytes).
pub const MAX_TOOLS_PER_SERVER: usize = 2_000;
/// Most `tools/list` pages read from one server.
const MAX_LIST_PAGES: usize = 100;

/// `tools/list`, every page, but at most [`MAX_TOOLS_PER_SERVER`] tools and
/// [`MAX_LIST_PAGES`] pages (each page is already capped at 16 MiB by rmcp's transports).
pub(super) async fn list_capped(peer: &rmcp::Peer<rmcp::RoleClient>) -> Result<Vec<Tool>, rmcp::ServiceError> {
    let mut tools = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_LIST_PAGES {
        let params = cursor.take().map(|c| rmcp::model::PaginatedRequestParams::default().with_cursor(Some(c)));
        let page = peer.list_tools(params).await?;
        let room = MAX_TOOLS_PER_SERVER.saturating_sub(tools.len());
        let listed = page.tools.len();
        tools.extend(page.tools.into_iter().take(room));
        if listed > room {
            tracing::warn!(
                kept = MAX_TOOLS_PER_SERVER,
                "the server lists more tools than the gateway takes from one server"
            );
            return Ok(tools);
        }
        match page.next_cursor {
            Some(next) if !next.is_empty() => cursor = Some(next),
            _ => return Ok(tools),
        }
    }
    tracing::warn!(pages = MAX_LIST_PAGES, "the server's tool list has too many pages; the rest is left out");
    Ok(tools)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(pin: bool) -> Arc<ServerHandle> {
        let yaml = format!("mcpServers:\n  s:\n    command: server\n    pin_descriptions: {pin}\n");
        let config = crate::config::load_str(&yaml, &std::collections::HashMap::<String, String>::new()).unwrap();
        let server = config.mcp_servers.iter().find(|s| s.name == "s").unwrap();
        ServerHandle::new(server.clone(), None)
    }

    fn tool(name: &str, description: &str) -> Tool {
        let schema =
            serde_json::json!({"type": "object", "properties": {"q": {"type": "string", "description": "Query"}}});
        Tool::new(name.to_owned(), description.to_owned(), Arc::new(schema.as_object().unwrap().clone()))
    }

    /// A listing that repeats what is offered keeps the offered tools (the catalog's rebuild
    /// sees their schemas unchanged by pointer) and changes nothing; a changed tool is bounded
    /// and checked again: cleaned of hidden characters, and held back when pinned.
    #[test]
    fn a_relisted_tool_is_taken_in_again_only_when_it_changed() {
        for pin in [false, true] {
            let handle = handle(pin);
            assert!(handle.store_tools(vec![tool("a", "A."), tool("b", "B.")]));
            let offered = handle.offered_tools();
            assert!(!handle.store_tools(vec![tool("a", "A."), tool("b", "B.")]), "the same listing changes nothing");
            let kept = handle.offered_tools();
            assert!(Arc::ptr_eq(&offered[0].input_schema, &kept[0].input_schema));
            assert!(handle.store_tools(vec![tool("a", "A."), tool("b", "B, now\u{E0041} hidden.")]));
            let changed = handle.offered_tools();
            assert!(Arc::ptr_eq(&offered[0].input_schema, &changed[0].input_schema), "the unchanged tool stays");
            match changed.iter().find(|t| t.name == "b") {
                Some(b) => {
                    assert!(!pin, "a pinned tool that changed is held back");
                    assert_eq!(b.description.as_deref(), Some("B, now hidden."));
                }
                None => assert!(pin, "an unpinned tool that changed is taken"),
            }
            // Listed again as it changed: held back again when pinned, kept cleaned when not.
            let again = handle.store_tools(vec![tool("a", "A."), tool("b", "B, now\u{E0041} hidden.")]);
            assert!(!again);
            assert_eq!(handle.offered_tools().len(), if pin { 1 } else { 2 });
        }
    }

    /// A tool put on offer by other means (a per-user server's `connect_account` placeholder)
    /// is not what a listing is compared with: listed by the server, it is checked as new.
    #[test]
    fn only_what_a_check_kept_is_trusted_again() {
        let handle = handle(true);
        assert!(handle.store_tools(vec![tool("a", "A.")]));
        handle.live.send_modify(|live| live.tools = Arc::new(vec![tool("a", "A."), tool("x", "X.")]));
        handle.store_tools(vec![tool("a", "A."), tool("x", "X.")]);
        let names: Vec<String> = handle.offered_tools().iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names, ["a"], "a tool new since the first listing is held back when pinned");
    }

    #[test]
    fn a_server_whose_listings_take_long_is_listed_less_often() {
        assert_eq!(relist_gap(Duration::ZERO), RELIST_GAP);
        assert_eq!(relist_gap(Duration::from_millis(3)), RELIST_GAP);
        assert_eq!(relist_gap(Duration::from_millis(25)), Duration::from_millis(2_500));
        assert_eq!(relist_gap(Duration::from_secs(5)), MAX_RELIST_GAP);
        assert_eq!(relist_gap(Duration::MAX), MAX_RELIST_GAP);
    }
}
