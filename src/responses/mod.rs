//! The Responses API (`/v1/responses`) on the chat loop: a request is converted to a
//! chat-completions body (`input.rs`), run through the same planning and loop as
//! `/v1/chat/completions` (policy, selection, artifacts, approvals, caps), and the answer is
//! converted back to a Response object or its stream of events (`output.rs`). Responses are
//! kept in the state store (`store: true`, the default) for `previous_response_id`, `GET` and
//! `DELETE`, bound to the account holder that made them and bounded in time and size.
//!
//! Approvals: a round that waits for the user's yes (the operator's rules, a key's, or the
//! request's `require_approval`) parks as in chat; the Response then carries an
//! `mcp_approval_request` per call, and an `mcp_approval_response` input (with
//! `previous_response_id`) answers it — the same parked state, the same take-once rules.

mod input;
mod output;
mod stream;
mod url_servers;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

pub use input::{Converted, to_chat};
pub use output::{Answer, as_messages, events, new_id, response};
pub use stream::Translator;
pub use url_servers::{MAX_URL_SERVERS, Refused, url_servers, without_credentials};

use crate::agent::park::{PendingCall, REFERENCE, Wait};
use crate::state::Secrets;

/// Where stored responses live in the state store.
const SPACE: &str = "responses";

/// A stored response: whose it is, the object, and the whole conversation up to and including
/// it (as chat messages, so a follow-up continues it).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Stored {
    /// The account holder that made it.
    pub owner: String,
    /// The Response object.
    pub response: Value,
    /// The conversation, as chat messages.
    pub messages: Vec<Value>,
}

/// Stored responses.
#[derive(Clone)]
pub struct Store {
    secrets: Secrets,
    /// How long one is kept (zero: none is).
    ttl: Duration,
    /// Largest one kept.
    max_bytes: usize,
}

impl Store {
    /// Responses kept in `secrets`' store (sealed when it has a key) for `ttl`, at most
    /// `max_bytes` each.
    pub fn new(secrets: Secrets, ttl: Duration, max_bytes: usize) -> Self {
        Self { secrets, ttl, max_bytes }
    }

    /// Keeps `stored` under its response's id; whether it was kept (a response too large to
    /// keep, or a store that fails, keeps nothing).
    pub async fn put(&self, stored: &Stored) -> bool {
        let Some(id) = stored.response.get("id").and_then(Value::as_str) else { return false };
        if self.ttl.is_zero() {
            return false;
        }
        let Ok(bytes) = serde_json::to_vec(stored) else { return false };
        if bytes.len() > self.max_bytes {
            tracing::info!(id, bytes = bytes.len(), "a response is too large to store");
            return false;
        }
        match self.secrets.put_private(SPACE, id, &bytes, Some(self.ttl)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "a response could not be stored");
                false
            }
        }
    }

    /// The stored response `id`, when `owner` made it (anyone else's is as absent as one that
    /// never was).
    pub async fn get(&self, id: &str, owner: &str) -> Option<Stored> {
        let bytes = self.secrets.get_private(SPACE, id).await.ok()??;
        let stored: Stored = serde_json::from_slice(&bytes).ok()?;
        (!owner.is_empty() && stored.owner == owner).then_some(stored)
    }

    /// Deletes the stored response `id` when `owner` made it; whether it did.
    pub async fn delete(&self, id: &str, owner: &str) -> bool {
        if self.get(id, owner).await.is_none() {
            return false;
        }
        self.secrets.store().delete(SPACE, id).await.unwrap_or(false)
    }
}

/// The park reference in `text` (`mcp-park-<32 hex>`), if any.
pub fn park_reference(text: &str) -> Option<String> {
    let at = text.rfind(REFERENCE)?;
    let id: String = text.get(at + REFERENCE.len()..)?.chars().take_while(char::is_ascii_hexdigit).collect();
    (id.len() == 32).then_some(id)
}

/// The `mcp_approval_request` items for the calls a parked loop waits on (by `reference`).
pub fn approval_requests(reference: &str, calls: &[PendingCall], catalog: &crate::mcp::Catalog) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.wait == Wait::Approval)
        .map(|(i, c)| {
            let (server, name) = match catalog.get(&c.call.function.name) {
                Some(entry) => (entry.server.clone(), entry.original_name.clone()),
                None => (String::new(), c.call.function.name.clone()),
            };
            json!({"type": "mcp_approval_request", "id": format!("mcpr_{reference}_{i}"), "server_label": server,
                "name": name, "arguments": c.call.function.arguments})
        })
        .collect()
}

/// Shared handle for the HTTP layer.
pub type SharedStore = Arc<Store>;
