//! The MCP facade: the aggregated catalog served as one MCP server (mounted by `http/` at
//! `/mcp`, streamable HTTP, both protocol eras). Same names as chat and REST, the same
//! permission check ([`ToolAccess`]: the caller's key policy, narrowed by `x-mcp-servers`),
//! the same artifact handling (binary or oversized output becomes links) and the same secret
//! scrubbing. Connected sessions hear `notifications/tools/list_changed` whenever the catalog
//! changes. Resources and prompts: the servers' lists merged and reads and gets routed back
//! (`mcp/resources.rs`, `mcp/prompts.rs`), under the same access (a caller sees those of the
//! servers it has a tool of).

use std::sync::Arc;

use parking_lot::Mutex;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Invoker, RequestControls, ToolAccess};
use crate::mcp::Hub;

/// The facade's shared state; every session gets a clone.
#[derive(Clone)]
pub struct Facade {
    hub: Arc<Hub>,
    invoker: Invoker,
    /// Sessions to tell about catalog changes (closed ones are dropped on the next change).
    peers: Arc<Mutex<Vec<Peer<RoleServer>>>>,
}

impl Facade {
    /// A facade running tools with `invoker`; announces catalog changes until `shutdown`.
    pub fn new(invoker: Invoker, shutdown: CancellationToken) -> Self {
        let facade = Self { hub: invoker.hub.clone(), invoker, peers: Arc::default() };
        let announcer = facade.clone();
        let mut changes = facade.hub.shared_catalog().changes();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
                announcer.announce().await;
            }
        });
        facade
    }

    async fn announce(&self) {
        let peers: Vec<Peer<RoleServer>> = {
            let mut peers = self.peers.lock();
            peers.retain(|p| !p.is_transport_closed());
            peers.clone()
        };
        for peer in peers {
            let _ = peer.notify_tool_list_changed().await;
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

impl ServerHandler for Facade {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_prompts()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("mcp-middleware", env!("CARGO_PKG_VERSION")))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        let access = access(&context)?;
        let catalog = self.hub.catalog();
        let may_use = |server: &str| access.may_use_server(&catalog, server);
        let listed = self.hub.resources(may_use).await;
        Ok(rmcp::model::ListResourcesResult::with_all_items(listed.into_iter().map(|r| r.resource).collect()))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        let access = access(&context)?;
        let catalog = self.hub.catalog();
        let may_use = |server: &str| access.may_use_server(&catalog, server);
        let listed = self.hub.prompts(may_use).await;
        Ok(rmcp::model::ListPromptsResult::with_all_items(listed.into_iter().map(|p| p.prompt).collect()))
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, ErrorData> {
        let access = access(&context)?;
        let catalog = self.hub.catalog();
        let may_use = |server: &str| access.may_use_server(&catalog, server);
        match self.hub.get_prompt(&request.name, request.arguments, may_use).await {
            Ok(result) => Ok(result.into()),
            Err(e @ crate::mcp::McpError::UnknownPrompt { .. }) => Err(ErrorData::invalid_params(e.to_string(), None)),
            Err(e) => Err(ErrorData::internal_error(self.invoker.redactor.scrub(&e.log_text()).into_owned(), None)),
        }
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        let access = access(&context)?;
        let catalog = self.hub.catalog();
        let may_use = |server: &str| access.may_use_server(&catalog, server);
        match self.hub.read_resource(&request.uri, may_use).await {
            Ok(result) => Ok(result.into()),
            Err(e @ crate::mcp::McpError::UnknownResource { .. }) => {
                Err(ErrorData::resource_not_found(e.to_string(), None))
            }
            Err(e) => Err(ErrorData::internal_error(self.invoker.redactor.scrub(&e.log_text()).into_owned(), None)),
        }
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.peers.lock().push(context.peer);
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
                Tool::new(e.name.clone(), description, e.input_schema.clone())
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
        let invocation = self.invoker.invoke(tool, arguments, visible, &identity).await;
        // A failed call is a tool error the client reads, as in chat.
        let Ok(result) = invocation.result else {
            return Ok(error_result(invocation.output.text).into());
        };
        let mut converted = CallToolResult::success(vec![ContentBlock::text(invocation.output.text)]);
        converted.is_error = Some(invocation.output.is_error);
        converted.structured_content = result.structured_content;
        Ok(converted.into())
    }
}

fn error_result(text: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}
