//! Who a request comes from, as authentication leaves it for every surface: its key's tool
//! policy, the user it acts for (and that user's files folder), and its own upstream key; and
//! the decisions that follow from it alone — which `/v1/*` routes it may use, whether it may
//! read metrics and health details.

use http::HeaderValue;

use super::KeyPolicy;
use crate::config::UserIdentity;

/// The caller of one request. `http/auth.rs` makes it; chat, the REST API, the MCP facade and
/// the proxy read it from the request.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The key's tool policy; `None` for a key without one (or an open gateway).
    pub policy: Option<KeyPolicy>,
    /// The user, from the key's configuration and, where trusted, Open WebUI's headers.
    pub identity: UserIdentity,
    /// `Authorization` for the upstream from the key's `upstream_key`, when it has one.
    pub upstream_key: Option<HeaderValue>,
    /// The key's own approval rule (tools whose calls wait for the user in its chats).
    pub approval: Option<std::sync::Arc<crate::config::ApprovalRule>>,
}

/// Routes whose requests make the upstream run tools itself, where a key's tool policy cannot
/// follow.
const SERVER_SIDE_TOOL_ROUTES: &[&str] = &["responses", "assistants", "threads"];

impl Caller {
    /// Whether nothing narrows what this caller may do.
    pub fn is_unrestricted(&self) -> bool {
        self.policy.is_none()
    }

    /// Whether this caller may use the upstream route whose first segment below `/v1` is
    /// `route`: a key with a tool policy may not reach routes that run tools upstream.
    pub fn may_use_route(&self, route: &str) -> Result<(), String> {
        if self.policy.is_some() && SERVER_SIDE_TOOL_ROUTES.contains(&route) {
            return Err(format!("a key with a tool policy may not use /v1/{route}"));
        }
        Ok(())
    }

    /// Whether this caller may read `/metrics` (every server, tools other keys called) and the
    /// details of `/health`.
    pub fn may_see_operations(&self) -> bool {
        self.is_unrestricted()
    }

    /// The caller's credential for the upstream: its key's `upstream_key`, else the client's
    /// own `Authorization` (used only with `upstream.forward_client_auth`).
    pub fn upstream_auth(&self, client: Option<&HeaderValue>) -> Option<crate::llm::CallerAuth> {
        match &self.upstream_key {
            Some(key) => Some(crate::llm::CallerAuth::Key(key.clone())),
            None => client.cloned().map(crate::llm::CallerAuth::Client),
        }
    }
}
