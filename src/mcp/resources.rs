//! MCP resources across servers. `resources/list` is asked of every server the caller may use,
//! and the lists are merged. A URI only one of those servers lists is kept as it is. A URI that
//! two of them list becomes `mcp-middleware://<server>/<the URI, percent-encoded>`, which a
//! client can send back as it is. `resources/read` is routed back to its server, and binary
//! contents pass through unchanged. Listing is bounded like tools are (pages, count).

use std::collections::HashMap;
use std::time::Duration;

use rmcp::model::{PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResult, Resource};

use super::{Hub, McpError, ServerHandle};

/// Most resources taken from one server.
pub const MAX_RESOURCES_PER_SERVER: usize = 2_000;
/// Most `resources/list` pages read from one server.
const MAX_PAGES: usize = 100;
/// How the URI of a resource two servers share is made unique.
const SCHEME: &str = "mcp-middleware://";

/// A resource as the gateway exposes it: the server it comes from and the URI to read it by.
#[derive(Debug, Clone)]
pub struct ExposedResource {
    /// The server.
    pub server: String,
    /// The resource, its `uri` as exposed.
    pub resource: Resource,
}

impl ServerHandle {
    /// This server's resources (every page, bounded), from its live connection.
    async fn list_resources(&self) -> Result<Vec<Resource>, McpError> {
        let peer = self.live.borrow().peer.clone().ok_or_else(|| McpError::ServerUnavailable {
            server: self.name().to_owned(),
            reason: "it is not connected".into(),
        })?;
        let timeout = self.config.tool_timeout;
        let mut all = Vec::new();
        let mut cursor = None;
        for _ in 0..MAX_PAGES {
            let params = cursor.take().map(|c| PaginatedRequestParams::default().with_cursor(Some(c)));
            let page = match tokio::time::timeout(timeout, peer.list_resources(params)).await {
                Ok(Ok(page)) => page,
                // A server without resources says so with an error: it has none.
                Ok(Err(_)) => return Ok(all),
                Err(_) => {
                    return Err(McpError::Timeout {
                        server: self.name().to_owned(),
                        tool: "resources/list".into(),
                        after: timeout,
                    });
                }
            };
            let room = MAX_RESOURCES_PER_SERVER.saturating_sub(all.len());
            all.extend(page.resources.into_iter().take(room));
            match page.next_cursor {
                Some(next) if !next.is_empty() && all.len() < MAX_RESOURCES_PER_SERVER => cursor = Some(next),
                _ => break,
            }
        }
        Ok(all)
    }

    /// Reads `uri` (the server's own) on this server.
    async fn read_resource(&self, uri: &str) -> Result<ReadResourceResult, McpError> {
        let peer = self.live.borrow().peer.clone().ok_or_else(|| McpError::ServerUnavailable {
            server: self.name().to_owned(),
            reason: "it is not connected".into(),
        })?;
        let timeout = self.config.tool_timeout.max(Duration::from_secs(1));
        match tokio::time::timeout(timeout, peer.read_resource(ReadResourceRequestParams::new(uri.to_owned()))).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(self.call_error("resources/read", e)),
            Err(_) => {
                Err(McpError::Timeout { server: self.name().to_owned(), tool: "resources/read".into(), after: timeout })
            }
        }
    }
}

impl Hub {
    /// The resources of the servers `may_use` admits, merged (see the module's doc). A server
    /// that cannot list them now is left out.
    pub async fn resources(&self, may_use: impl Fn(&str) -> bool) -> Vec<ExposedResource> {
        let handles: Vec<_> = self.handles().into_iter().filter(|h| may_use(h.name())).collect();
        let lists = futures_util::future::join_all(handles.iter().map(|h| h.list_resources())).await;
        let mut listed: Vec<ExposedResource> = Vec::new();
        for (handle, list) in handles.iter().zip(lists) {
            match list {
                Ok(resources) => listed.extend(
                    resources
                        .into_iter()
                        .map(|resource| ExposedResource { server: handle.name().to_owned(), resource }),
                ),
                Err(e) => tracing::debug!(server = %handle.name(), error = %e.log_text(), "resources/list failed"),
            }
        }
        let mut servers_of: HashMap<String, usize> = HashMap::new();
        for item in &listed {
            *servers_of.entry(item.resource.uri.clone()).or_default() += 1;
        }
        for item in &mut listed {
            if servers_of.get(&item.resource.uri).copied().unwrap_or_default() > 1 {
                let encoded: String = url::form_urlencoded::byte_serialize(item.resource.uri.as_bytes()).collect();
                item.resource.uri = format!("{SCHEME}{}/{encoded}", item.server);
            }
        }
        listed
    }

    /// Reads an exposed `uri` on the server it came from (only among the servers `may_use`
    /// admits); any other URI is [`McpError::UnknownResource`].
    pub async fn read_resource(
        &self,
        uri: &str,
        may_use: impl Fn(&str) -> bool,
    ) -> Result<ReadResourceResult, McpError> {
        let not_found = || McpError::UnknownResource { uri: uri.to_owned() };
        if let Some(rest) = uri.strip_prefix(SCHEME) {
            let (server, encoded) = rest.split_once('/').ok_or_else(not_found)?;
            let original: String = url::form_urlencoded::parse(format!("u={encoded}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .ok_or_else(not_found)?;
            let handle =
                self.handles().into_iter().find(|h| h.name() == server && may_use(h.name())).ok_or_else(not_found)?;
            return handle.read_resource(&original).await;
        }
        let listed = self.resources(&may_use).await;
        let item = listed.iter().find(|r| r.resource.uri == uri).ok_or_else(not_found)?;
        let handle = self.handles().into_iter().find(|h| h.name() == item.server).ok_or_else(not_found)?;
        handle.read_resource(uri).await
    }
}
