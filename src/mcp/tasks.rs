//! Tools that run only as tasks (the MCP 2025-11-25 tasks utility, as the TypeScript SDK and
//! server-everything's `simulate-research-query` speak it). Such a tool refuses a plain call
//! ("requires task augmentation"), so the call is made again with `task: {ttl}`. The server
//! answers with the task's id. `tasks/result` then waits for the outcome: the tool's result,
//! whose questions along the way reach the caller as in any call. Meanwhile `tasks/get` is
//! polled at the server's interval, and its status message becomes the caller's progress line.
//! A caller that goes away sends `tasks/cancel`. The whole task is bounded by
//! `max_call_duration`.

use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::{CallToolResult, ClientRequest, CustomRequest, ErrorCode, ErrorData, JsonObject, ServerResult};
use rmcp::service::{Peer, PeerRequestOptions};
use serde_json::{Value, json};

use super::{McpError, ServerHandle};

/// Longest task id taken from a server.
const MAX_TASK_ID: usize = 256;
/// Bounds of the polling interval (a server's suggestion is kept within them).
const POLL_MIN: Duration = Duration::from_millis(250);
const POLL_MAX: Duration = Duration::from_secs(10);

/// Whether a server refused a plain call because the tool runs only as a task.
pub fn wants_task(error: &ErrorData) -> bool {
    error.code == ErrorCode::METHOD_NOT_FOUND && error.message.contains("requires task augmentation")
}

/// The same refusal, as a failed tool result (how the TypeScript SDK's servers send it).
pub fn result_wants_task(result: &CallToolResult) -> bool {
    result.is_error == Some(true)
        && result.content.iter().any(|block| {
            block.as_text().is_some_and(|t| t.text.contains("requires task augmentation (taskSupport: 'required')"))
        })
}

impl ServerHandle {
    /// Runs `tool` as a task to its result (see the module's doc).
    pub(super) async fn call_as_task(
        &self,
        peer: Peer<RoleClient>,
        tool: &str,
        arguments: Option<JsonObject>,
        meta: Option<JsonObject>,
    ) -> Result<CallToolResult, McpError> {
        let longest = self.config.max_call_duration.max(self.config.tool_timeout);
        let ttl = u64::try_from(longest.as_millis()).unwrap_or(u64::MAX);
        let mut params = json!({"name": tool, "arguments": arguments.unwrap_or_default(), "task": {"ttl": ttl}});
        if let (Some(meta), Some(object)) = (meta, params.as_object_mut()) {
            object.insert("_meta".into(), Value::Object(meta));
        }
        let created = self.custom(&peer, tool, "tools/call", params, self.config.tool_timeout).await?;
        let task = created.get("task").unwrap_or(&created);
        let id = task.get("taskId").and_then(Value::as_str).filter(|id| !id.is_empty() && id.len() <= MAX_TASK_ID);
        let Some(id) = id.map(str::to_owned) else {
            return Err(self.protocol("the server's answer to a task call names no task"));
        };
        let interval = poll_interval(task);
        let cancel = CancelTask { peer: Some(peer.clone()), id: id.clone() };
        let result = self.custom(&peer, tool, "tasks/result", json!({"taskId": id}), longest);
        tokio::pin!(result);
        let show = super::PROGRESS.try_with(Clone::clone).ok();
        let mut last = String::new();
        let outcome = loop {
            tokio::select! {
                outcome = &mut result => break outcome,
                () = tokio::time::sleep(interval) => {
                    let Some(show) = &show else { continue };
                    let status = self.custom(&peer, tool, "tasks/get", json!({"taskId": id}), self.config.tool_timeout).await;
                    let message = status.ok().and_then(|s| s.get("statusMessage").and_then(Value::as_str).map(str::to_owned));
                    if let Some(message) = message.filter(|m| *m != last) {
                        let line: String = message.chars().take(200).collect();
                        show(format!("{tool}: {line}"));
                        last = message;
                    }
                }
            }
        };
        cancel.disarm();
        let outcome = outcome?;
        serde_json::from_value::<CallToolResult>(outcome)
            .map_err(|_| self.protocol("the task's result is not a tool result"))
    }

    /// One request of the tasks utility, its answer as JSON.
    async fn custom(
        &self,
        peer: &Peer<RoleClient>,
        tool: &str,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, McpError> {
        let request = ClientRequest::CustomRequest(CustomRequest::new(method.to_owned(), Some(params)));
        let options = PeerRequestOptions::with_timeout(timeout);
        let sent = tokio::time::timeout(timeout, peer.send_request_with_option(request, options)).await;
        let handle = match sent {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => return Err(self.call_error(tool, e)),
            Err(_) => {
                return Err(McpError::Timeout {
                    server: self.name().to_owned(),
                    tool: tool.to_owned(),
                    after: timeout,
                });
            }
        };
        match handle.await_response().await {
            Ok(ServerResult::CustomResult(value)) => Ok(value.0),
            Ok(ServerResult::CallToolResult(result)) => {
                serde_json::to_value(result).map_err(|_| self.protocol("an unreadable tool result"))
            }
            Ok(other) => serde_json::to_value(other).map_err(|_| self.protocol("an unreadable answer")),
            Err(e) => Err(self.call_error(tool, e)),
        }
    }

    fn protocol(&self, message: &str) -> McpError {
        McpError::Protocol { server: self.name().to_owned(), message: message.to_owned() }
    }
}

/// The server's suggested polling interval, within bounds.
fn poll_interval(task: &Value) -> Duration {
    let suggested = task.get("pollInterval").and_then(Value::as_u64).map_or(POLL_MIN * 4, Duration::from_millis);
    suggested.clamp(POLL_MIN, POLL_MAX)
}

/// Sends `tasks/cancel` for a task whose caller went away before its result.
struct CancelTask {
    peer: Option<Peer<RoleClient>>,
    id: String,
}

impl CancelTask {
    fn disarm(mut self) {
        self.peer = None;
    }
}

impl Drop for CancelTask {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else { return };
        let request =
            ClientRequest::CustomRequest(CustomRequest::new("tasks/cancel", Some(json!({"taskId": self.id}))));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), peer.send_request(request)).await;
            });
        }
    }
}
