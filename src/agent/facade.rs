//! The MCP facade: the aggregated catalog served as one MCP server (mounted by `http/` at
//! `/mcp`, streamable HTTP, both protocol eras). Same names as chat and REST, the same
//! permission check ([`ToolAccess`]: the caller's key policy, narrowed by `x-mcp-servers`),
//! the same secret scrubbing; results reach the client as the server gave them (images,
//! audio and embedded resources inline) unless they are larger than [`KEEP_UNDER`], which get
//! the artifact handling chat results get. Resources (lists, templates, reads, subscriptions),
//! prompts and completions are merged and routed back (`mcp/resources.rs`, `mcp/prompts.rs`,
//! `mcp/complete.rs`) under the same access (a caller sees those of the servers it has a tool
//! of). While a call runs, the server's log messages and progress reach its client, and the
//! server's questions and sampling requests are put to the client when it declared the
//! capability (`relay.rs`); a client's cancellation cancels the server's call. Sessions hear
//! `list_changed` for tools, resources and prompts, and `resources/updated` for what they
//! subscribed to. The facade is built once: a config reload swaps its [`Invoker`] and keeps
//! its sessions and the calls in flight.

#![allow(deprecated)] // Logging, sampling and `resources/subscribe` are deprecated by SEP-2577; clients use them.

use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult, ContentBlock,
    Implementation, ListResourceTemplatesResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, SetLevelRequestParams, SubscribeRequestParams, Tool, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::relay::{CallRelayTask, Session};
use super::{Invoker, RequestControls, ToolAccess};
use crate::mcp::{Hub, HubEvent, McpError};

/// Largest result (as JSON) a client gets as the server gave it; a larger one becomes links.
pub const KEEP_UNDER: usize = 4 * 1024 * 1024;
/// How long a list change waits for the rest of its burst before it is announced.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(200);
/// Longest wait for one session to take a notification.
const NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Most resources one session subscribes to.
const MAX_SUBSCRIPTIONS: usize = 64;
/// Most rounds of a server's `input_required` put to a handshake-era client for one call.
const MAX_INPUT_ROUNDS: usize = 8;

/// The facade's shared state, and the session a clone serves (rmcp makes one per session).
#[derive(Clone)]
pub struct Facade {
    hub: Arc<Hub>,
    /// Swapped by a config reload.
    invoker: Arc<ArcSwap<Invoker>>,
    /// Open sessions (dropped ones are skipped and pruned).
    sessions: Arc<Mutex<Vec<Weak<Session>>>>,
    /// The session this clone serves.
    session: Arc<Session>,
}

impl Facade {
    /// A facade running tools with `invoker`; relays catalog changes and server notifications
    /// to its sessions until `shutdown`.
    pub fn new(invoker: Invoker, shutdown: CancellationToken) -> Self {
        let hub = invoker.hub.clone();
        let facade = Self {
            hub,
            invoker: Arc::new(ArcSwap::from_pointee(invoker)),
            sessions: Arc::default(),
            session: Arc::default(),
        };
        let announcer = facade.clone();
        let mut changes = facade.hub.shared_catalog().changes();
        let mut events = facade.hub.events();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    changed = changes.changed() => {
                        if changed.is_err() { return }
                        // A burst of changes is announced once.
                        tokio::time::sleep(COALESCE).await;
                        changes.mark_unchanged();
                        announcer.announce(None).await;
                    }
                    event = events.recv() => match event {
                        Ok(HubEvent::ResourceUpdated { server, uri }) => {
                            announcer.announce(Some(HubEvent::ResourceUpdated { server, uri })).await;
                        }
                        // List changes of a burst are announced once per kind.
                        Ok(first) => {
                            tokio::time::sleep(COALESCE).await;
                            let mut kinds = vec![first];
                            while let Ok(next) = events.try_recv() {
                                match next {
                                    HubEvent::ResourceUpdated { server, uri } => {
                                        announcer.announce(Some(HubEvent::ResourceUpdated { server, uri })).await;
                                    }
                                    other if !kinds.iter().any(|k| std::mem::discriminant(k) == std::mem::discriminant(&other)) => kinds.push(other),
                                    _ => {}
                                }
                            }
                            for kind in kinds {
                                announcer.announce(Some(kind)).await;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        facade
    }

    /// A handler for a new session.
    pub fn for_session(&self) -> Self {
        let session = Arc::new(Session::default());
        let _ = session.hub.set(self.hub.clone());
        Self { session, ..self.clone() }
    }

    /// Takes the settings of a reloaded config: new calls run with `invoker`.
    pub fn reconfigure(&self, invoker: Invoker) {
        self.invoker.store(Arc::new(invoker));
    }

    /// The open sessions (closed ones are forgotten).
    fn open_sessions(&self) -> Vec<Arc<Session>> {
        let mut sessions = self.sessions.lock();
        sessions.retain(|s| s.upgrade().and_then(|s| s.peer.get().map(|p| !p.is_transport_closed())) == Some(true));
        sessions.iter().filter_map(Weak::upgrade).collect()
    }

    /// Tells every open session about a catalog change (`None`) or a server's notification,
    /// all at once, each given at most [`NOTIFY_WAIT`] (a client that does not read its stream
    /// holds up no one).
    async fn announce(&self, event: Option<HubEvent>) {
        let sessions = self.open_sessions();
        let sends = sessions.iter().map(|session| async {
            let Some(peer) = session.peer.get() else { return };
            let send = async {
                let _ = match &event {
                    None => peer.notify_tool_list_changed().await,
                    Some(HubEvent::ResourcesChanged { .. }) => peer.notify_resource_list_changed().await,
                    Some(HubEvent::PromptsChanged { .. }) => peer.notify_prompt_list_changed().await,
                    Some(HubEvent::ResourceUpdated { server, uri }) => {
                        session.resource_updated(server, uri).await;
                        Ok(())
                    }
                };
            };
            let _ = tokio::time::timeout(NOTIFY_WAIT, send).await;
        });
        futures_util::future::join_all(sends).await;
    }

    /// `value` with every configured secret in its text replaced (what a server says reaches
    /// the client as tool results do).
    fn scrubbed<T: serde::Serialize + serde::de::DeserializeOwned>(&self, value: T) -> Result<T, ErrorData> {
        let mut json = serde_json::to_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        self.invoker.load().redactor.scrub_json(&mut json);
        serde_json::from_value(json).map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    /// [`scrubbed`](Self::scrubbed), leaving base64 contents (`data`, `blob`) as they are.
    fn scrubbed_but_binary<T: serde::Serialize + serde::de::DeserializeOwned>(&self, value: T) -> Result<T, ErrorData> {
        let mut json = serde_json::to_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        self.invoker.load().redactor.scrub_json_but_binary(&mut json);
        serde_json::from_value(json).map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    /// An error of the hub as the client sees it (scrubbed; a link's ticket left out).
    fn hub_error(&self, e: &McpError) -> ErrorData {
        match e {
            McpError::UnknownPrompt { .. } | McpError::UnknownTool { .. } => {
                ErrorData::invalid_params(e.to_string(), None)
            }
            McpError::UnknownResource { .. } => ErrorData::resource_not_found(e.to_string(), None),
            _ => ErrorData::internal_error(self.invoker.load().redactor.scrub(&e.log_text()).into_owned(), None),
        }
    }
}

/// The caller's access: its key's policy (left by the HTTP layer in the request's extensions)
/// narrowed by its `x-mcp-servers` headers. A header that is not text is refused, as on every
/// other surface: a narrowing the gateway cannot read must not widen to the whole catalog.
fn access(context: &RequestContext<RoleServer>) -> Result<ToolAccess, ErrorData> {
    let parts = context.extensions.get::<http::request::Parts>();
    // No caller (a request that did not pass authentication) gets nothing, not everything.
    let caller = parts
        .and_then(|p| p.extensions.get::<crate::access::Caller>())
        .ok_or_else(|| ErrorData::invalid_request("no authenticated caller", None))?;
    let key = caller.policy.clone().map(|k| k.0);
    let headers: Vec<&str> = parts
        .map(|p| super::narrowing_headers(&p.headers))
        .transpose()
        .map_err(|e| ErrorData::invalid_params(e, None))?
        .unwrap_or_default();
    let controls =
        RequestControls::take(&headers, &mut Default::default()).map_err(|e| ErrorData::invalid_params(e, None))?;
    Ok(ToolAccess::new(key.as_deref(), None, &controls))
}

/// Which servers the caller may use (those it has a tool of), for resources, prompts and
/// completions.
fn server_filter(
    facade: &Facade,
    context: &RequestContext<RoleServer>,
) -> Result<impl Fn(&str) -> bool + Send + Sync + use<>, ErrorData> {
    let access = access(context)?;
    let catalog = facade.hub.catalog();
    Ok(move |server: &str| access.may_use_server(&catalog, server))
}

impl ServerHandler for Facade {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_completions()
            .enable_logging()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("mcp-middleware", env!("CARGO_PKG_VERSION")))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if self.session.peer.set(context.peer).is_ok() {
            let mut sessions = self.sessions.lock();
            sessions.retain(|s| s.strong_count() > 0);
            sessions.push(Arc::downgrade(&self.session));
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        let listed = self.hub.resources(server_filter(self, &context)?).await;
        Ok(rmcp::model::ListResourcesResult::with_all_items(listed.into_iter().map(|r| r.resource).collect()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let listed = self.hub.resource_templates(server_filter(self, &context)?).await;
        Ok(ListResourceTemplatesResult::with_all_items(listed.into_iter().map(|t| t.template).collect()))
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        match self.hub.read_resource(&request.uri, server_filter(self, &context)?).await {
            Ok(result) => Ok(self.scrubbed_but_binary(result)?.into()),
            Err(e) => Err(self.hub_error(&e)),
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // A stateless (2026-07-28) request has no session to send updates to.
        if self.session.peer.get().is_none() {
            return Err(ErrorData::invalid_request(
                "resources/subscribe needs a session (the handshake era); 2026-07-28 clients use subscriptions/listen",
                None,
            ));
        }
        {
            let held = self.session.subscriptions.lock();
            if held.iter().any(|(uri, _, _)| *uri == request.uri) {
                return Ok(());
            }
            if held.len() >= MAX_SUBSCRIPTIONS {
                return Err(ErrorData::invalid_request(
                    format!("a session holds at most {MAX_SUBSCRIPTIONS} subscriptions"),
                    None,
                ));
            }
        }
        // In a task of its own: a client that goes away mid-way cannot leave the server's
        // subscription counted for nobody.
        let (hub, session, may_use) = (self.hub.clone(), self.session.clone(), server_filter(self, &context)?);
        let subscribing = tokio::spawn(async move {
            let (server, original) = hub.subscribe(&request.uri, may_use).await?;
            session.subscriptions.lock().push((request.uri, server, original));
            Ok::<(), McpError>(())
        });
        match subscribing.await {
            Ok(done) => done.map_err(|e| self.hub_error(&e)),
            Err(e) => Err(ErrorData::internal_error(e.to_string(), None)),
        }
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let held = {
            let mut subscriptions = self.session.subscriptions.lock();
            let at = subscriptions.iter().position(|(uri, _, _)| *uri == request.uri);
            at.map(|at| subscriptions.remove(at))
        };
        // Letting go of what it never held is a no-op, as servers answer it.
        if let Some((_, server, original)) = held {
            self.hub.unsubscribe(&server, &original).await;
        }
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        let listed = self.hub.prompts(server_filter(self, &context)?).await;
        Ok(rmcp::model::ListPromptsResult::with_all_items(listed.into_iter().map(|p| p.prompt).collect()))
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, ErrorData> {
        match self.hub.get_prompt(&request.name, request.arguments, server_filter(self, &context)?).await {
            Ok(result) => Ok(self.scrubbed(result)?.into()),
            Err(e) => Err(self.hub_error(&e)),
        }
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let completed =
            self.hub.complete(request, server_filter(self, &context)?).await.map_err(|e| self.hub_error(&e))?;
        self.scrubbed(completed)
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // A stateless request has no session to send log messages to.
        if self.session.peer.get().is_none() {
            return Ok(());
        }
        *self.session.level.lock() = Some(request.level);
        // The servers' connections are shared: they are asked for the most verbose level any
        // open session wants, and each session is sent what it asked for.
        let wanted = self
            .open_sessions()
            .iter()
            .filter_map(|s| *s.level.lock())
            .min_by_key(|level| super::relay::severity(*level))
            .unwrap_or(request.level);
        self.hub.set_log_level(wanted, server_filter(self, &context)?).await;
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let access = access(&context)?;
        let catalog = self.hub.catalog();
        let tools = access
            .visible(&catalog)
            .map(|e| {
                let description = e.description.clone().unwrap_or_default();
                Tool::new(e.name.clone(), description, e.server_schema.clone())
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let access = access(&context)?;
        let catalog = self.hub.catalog();
        // Not allowed looks exactly like not there.
        let Some(tool) = catalog.get(&request.name).and_then(|e| access.authorize(e)) else {
            return Err(ErrorData::invalid_params(format!("unknown tool `{}`", request.name), None));
        };
        let arguments = request.arguments.map(Value::Object).unwrap_or(Value::Null);
        let visible =
            || (!access.is_unrestricted()).then(|| access.visible(&catalog).map(|e| e.name.clone()).collect());
        let identity = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<crate::access::Caller>())
            .map(|c| c.identity.clone())
            .unwrap_or_default();
        // rmcp serves the request in a session worker: its trace comes with the HTTP request.
        let trace = context.extensions.get::<http::request::Parts>().and_then(|p| p.extensions.get());
        let traced = crate::telemetry::spans::facade_call(&request.name, trace);
        let call = async move {
            let invoker = self.invoker.load_full();
            // A 2026-07-28 client gets a server's `input_required` as it is (and retries with its
            // answers); a handshake-era client that can answer is asked here, and the call retried.
            let new_era = context.protocol_version().is_some_and(|v| !v.has_initialize());
            let mut retry = (request.input_responses.is_some() || request.request_state.is_some()).then(|| {
                crate::mcp::InputRetry {
                    responses: request.input_responses.unwrap_or_default().into_iter().collect(),
                    request_state: request.request_state,
                }
            });
            let mut rounds = 0;
            let invocation = loop {
                let token = context.meta.get_progress_token();
                let relay =
                    CallRelayTask::new(&context.peer, self.session.clone(), token, new_era, invoker.redactor.clone());
                let call =
                    invoker.invoke_for_client(tool, arguments.clone(), visible, &identity, retry.as_ref(), KEEP_UNDER);
                // The client's `notifications/cancelled` cancels `ct`: dropping the call cancels it
                // on the server.
                let Some(invocation) = relay.drive(call, &context.ct, &invoker.redactor).await else {
                    return Err(ErrorData::internal_error("the call was cancelled", None));
                };
                let Err(McpError::InputRequired(asked)) = &invocation.result else { break invocation };
                if new_era {
                    let mut requests = Value::Object(asked.requests.clone());
                    invoker.redactor.scrub_json(&mut requests);
                    let requests = serde_json::from_value(requests)
                        .map_err(|e| ErrorData::internal_error(format!("the server's input requests: {e}"), None))?;
                    let passed = rmcp::model::InputRequiredResult::new(Some(requests), asked.request_state.clone());
                    return Ok(CallToolResponse::InputRequired(passed));
                }
                rounds += 1;
                if rounds > MAX_INPUT_ROUNDS {
                    break invocation;
                }
                match super::relay::answer(&context.peer, &asked.requests, &invoker.redactor, &context.ct).await {
                    Ok(responses) => {
                        retry = Some(crate::mcp::InputRetry { responses, request_state: asked.request_state.clone() })
                    }
                    Err(why) => {
                        let text = format!("the tool needs input this client cannot give: {why}");
                        return Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into());
                    }
                }
            };
            match invocation.result {
                Ok(result) if invocation.kept => Ok(result.into()),
                Ok(result) => {
                    let mut converted = CallToolResult::success(vec![ContentBlock::text(invocation.output.text)]);
                    converted.is_error = Some(invocation.output.is_error);
                    converted.structured_content = result.structured_content;
                    Ok(converted.into())
                }
                // A failed call is a tool error the client reads, as in chat.
                Err(_) => Ok(CallToolResult::error(vec![ContentBlock::text(invocation.output.text)]).into()),
            }
        };
        tracing::Instrument::instrument(call, traced).await
    }
}
