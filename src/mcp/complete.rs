//! The protocol's utilities across servers: `completion/complete` routed by the prompt or the
//! resource template it refers to (named as exposed), and `logging/setLevel` passed on to the
//! servers a caller may use that log.

#![allow(deprecated)] // Logging is deprecated by SEP-2577; servers people run still log.

use rmcp::model::{CompleteRequestParams, CompleteResult, LoggingLevel, Reference, SetLevelRequestParams};

use super::{Hub, McpError};

impl Hub {
    /// Completes an argument of an exposed prompt or resource template (among the servers
    /// `may_use` admits), on the server that has it.
    pub async fn complete(
        &self,
        mut params: CompleteRequestParams,
        may_use: impl Fn(&str) -> bool,
    ) -> Result<CompleteResult, McpError> {
        let server = match &mut params.r#ref {
            Reference::Prompt(prompt) => {
                let listed = self.prompts(&may_use).await;
                let item = listed
                    .into_iter()
                    .find(|p| p.prompt.name == prompt.name)
                    .ok_or_else(|| McpError::UnknownPrompt { name: prompt.name.clone() })?;
                prompt.name = item.original_name;
                item.server
            }
            Reference::Resource(resource) => {
                let templates = self.resource_templates(&may_use).await;
                match templates.into_iter().find(|t| t.template.uri_template == resource.uri) {
                    Some(item) => item.server,
                    None => {
                        let (handle, original) = self.route_resource(&resource.uri, &may_use).await?;
                        resource.uri = original;
                        handle.name().to_owned()
                    }
                }
            }
            _ => return Err(McpError::UnknownPrompt { name: "(a reference of an unknown kind)".into() }),
        };
        let handle = self
            .handles()
            .into_iter()
            .find(|h| h.name() == server)
            .ok_or_else(|| McpError::UnknownPrompt { name: server.clone() })?;
        let peer = handle.live.borrow().peer.clone().ok_or_else(|| handle.unavailable())?;
        let timeout = handle.config.tool_timeout;
        let _busy = handle.in_flight(None);
        match tokio::time::timeout(timeout, peer.complete(params)).await {
            Ok(answer) => answer.map_err(|e| handle.call_error("completion/complete", e)),
            Err(_) => Err(McpError::Timeout { server, tool: "completion/complete".into(), after: timeout }),
        }
    }

    /// Asks every server `may_use` admits that declared logging to send log messages at
    /// `level` and above (a server's connection is shared, so the latest level asked wins;
    /// each facade session filters what it is sent by its own).
    pub async fn set_log_level(&self, level: LoggingLevel, may_use: impl Fn(&str) -> bool) {
        let peers: Vec<_> = self
            .handles()
            .into_iter()
            .filter(|h| may_use(h.name()))
            .filter_map(|h| {
                let peer = h.live.borrow().peer.clone()?;
                let logs = peer.peer_info().is_some_and(|info| info.capabilities.logging.is_some());
                logs.then_some((h, peer))
            })
            .collect();
        let asks = peers.into_iter().map(|(handle, peer)| async move {
            let _busy = handle.in_flight(None);
            let timeout = handle.config.tool_timeout;
            let _ = tokio::time::timeout(timeout, peer.set_level(SetLevelRequestParams::new(level))).await;
        });
        futures_util::future::join_all(asks).await;
    }
}
