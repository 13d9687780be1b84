//! MCP prompts across servers: `prompts/list` asked of every server the caller may use, each
//! prompt exposed as `<prefix><name>` (the server's tool prefix: the same naming as tools; two
//! servers whose names meet keep the first server's), and `prompts/get` routed back with its
//! arguments as given; embedded resources and images in the messages pass through.

use std::collections::HashMap;
use std::time::Duration;

use rmcp::model::{GetPromptRequestParams, GetPromptResult, JsonObject, Prompt};

use super::{Hub, McpError, ServerHandle};

/// Most prompts taken from one server.
const MAX_PROMPTS_PER_SERVER: usize = 1_000;

/// A prompt as exposed: its server, its name there, and the prompt (its `name` as exposed).
#[derive(Debug, Clone)]
pub struct ExposedPrompt {
    /// The server.
    pub server: String,
    /// Its name on the server.
    pub original_name: String,
    /// The prompt, named as exposed.
    pub prompt: Prompt,
}

impl ServerHandle {
    async fn list_prompts(&self) -> Vec<Prompt> {
        let Some(peer) = self.live.borrow().peer.clone() else { return Vec::new() };
        // A server that declared no prompts is not asked (it would only answer with an error).
        if peer.peer_info().is_some_and(|info| info.capabilities.prompts.is_none()) {
            return Vec::new();
        }
        let _busy = self.in_flight(None);
        let (all, _) = super::resources::paged(self.config.tool_timeout, MAX_PROMPTS_PER_SERVER, |params| {
            let peer = peer.clone();
            async move { peer.list_prompts(params).await.map(|p| (p.prompts, p.next_cursor)) }
        })
        .await;
        all
    }

    async fn get_prompt(&self, name: &str, arguments: Option<JsonObject>) -> Result<GetPromptResult, McpError> {
        let peer = self.live.borrow().peer.clone().ok_or_else(|| McpError::ServerUnavailable {
            server: self.name().to_owned(),
            reason: "it is not connected".into(),
        })?;
        let mut params = GetPromptRequestParams::new(name.to_owned());
        params.arguments = arguments;
        let timeout = self.config.tool_timeout.max(Duration::from_secs(1));
        let _busy = self.in_flight(None);
        match tokio::time::timeout(timeout, peer.get_prompt(params)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(self.call_error(name, e)),
            Err(_) => Err(McpError::Timeout { server: self.name().to_owned(), tool: name.to_owned(), after: timeout }),
        }
    }
}

impl Hub {
    /// The prompts of the servers `may_use` admits, named as exposed.
    pub async fn prompts(&self, may_use: impl Fn(&str) -> bool) -> Vec<ExposedPrompt> {
        let handles: Vec<_> = self.handles().into_iter().filter(|h| may_use(h.name())).collect();
        let lists = futures_util::future::join_all(handles.iter().map(|h| h.list_prompts())).await;
        let mut taken: HashMap<String, String> = HashMap::new();
        let mut exposed = Vec::new();
        for (handle, prompts) in handles.iter().zip(lists) {
            for mut prompt in prompts {
                let name = format!("{}{}", handle.config.prefix, prompt.name);
                if let Some(first) = taken.get(&name) {
                    tracing::warn!(server = %handle.name(), other = %first, name = %name, "prompt names collide");
                    continue;
                }
                taken.insert(name.clone(), handle.name().to_owned());
                let original_name = std::mem::replace(&mut prompt.name, name);
                exposed.push(ExposedPrompt { server: handle.name().to_owned(), original_name, prompt });
            }
        }
        exposed
    }

    /// Gets the exposed prompt `name` with `arguments` from its server (among those `may_use`
    /// admits).
    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
        may_use: impl Fn(&str) -> bool,
    ) -> Result<GetPromptResult, McpError> {
        let listed = self.prompts(&may_use).await;
        let item = listed
            .iter()
            .find(|p| p.prompt.name == name)
            .ok_or_else(|| McpError::UnknownPrompt { name: name.to_owned() })?;
        let handle = self
            .handles()
            .into_iter()
            .find(|h| h.name() == item.server)
            .ok_or_else(|| McpError::UnknownPrompt { name: name.to_owned() })?;
        handle.get_prompt(&item.original_name, arguments).await
    }
}
