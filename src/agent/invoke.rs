//! The one way a tool runs, whatever the surface (chat, `/mcp/tools/call`, the MCP facade).
//!
//! [`Invoker::invoke`] takes an [`Authorized`] tool, which only [`ToolAccess::authorize`]
//! makes: a surface that skipped the permission check does not compile. It then does, in this
//! order and nowhere else: the call (argument checks and transport in the hub), scrubbing of
//! every configured secret from the result — *before* anything is stored, so artifacts, their
//! links and `read_artifact` pages never hold a secret — conversion to the text a model reads
//! (artifacts for binary and oversized output), metrics, the one log line per call, and the
//! audit record ([`AuditSink`], the hook the state store fills).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use serde_json::Value;

use super::results::{ToolOutput, to_tool_output};
use crate::access::ToolAccess;
use crate::artifacts::Artifacts;
use crate::config::{Redactor, UserIdentity};
use crate::mcp::{Hub, McpError, ToolEntry};

/// A catalog entry the caller's [`ToolAccess`] allows. The field is private: only
/// [`ToolAccess::authorize`] makes one.
#[derive(Clone, Copy)]
pub struct Authorized<'a> {
    entry: &'a Arc<ToolEntry>,
}

impl<'a> Authorized<'a> {
    /// An entry the chat request was offered: `policy::select` chose the offer through the
    /// request's `ToolAccess`, and the loop runs nothing else.
    pub(super) fn offered(entry: &'a Arc<ToolEntry>) -> Self {
        Self { entry }
    }

    /// The allowed entry.
    pub fn entry(&self) -> &'a Arc<ToolEntry> {
        self.entry
    }
}

impl ToolAccess {
    /// `entry`, if this access allows it.
    pub fn authorize<'a>(&self, entry: &'a Arc<ToolEntry>) -> Option<Authorized<'a>> {
        self.allows(entry).then_some(Authorized { entry })
    }
}

/// One tool call, as an audit trail keeps it: its arguments scrubbed of secrets and cut
/// short (as a log line would show them), no output, who it ran for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// When the call started (Unix milliseconds).
    pub started_ms: u64,
    /// MCP server.
    pub server: String,
    /// Exposed tool name.
    pub tool: String,
    /// The user it ran for, when known.
    pub user: Option<String>,
    /// The account holder it ran for (a digest of key and user): whose activity it is.
    #[serde(default)]
    pub holder: Option<String>,
    /// The fingerprint of a key with a tool policy (`k-…`); none for unrestricted keys.
    #[serde(default)]
    pub key: Option<String>,
    /// The Open WebUI chat it ran in, when forwarded.
    #[serde(default)]
    pub chat: Option<String>,
    /// `ok` or `error`.
    pub outcome: String,
    /// How long it took.
    pub duration_ms: u64,
    /// Bytes of the arguments.
    pub argument_bytes: usize,
    /// The arguments, scrubbed of configured secrets, cut at 1,000 characters.
    #[serde(default)]
    pub arguments: String,
    /// The start of the error, scrubbed, for a failed call.
    #[serde(default)]
    pub error: Option<String>,
}

/// Most characters of a call's arguments an audit record keeps.
pub const AUDIT_ARGUMENTS: usize = 1000;
/// Most characters of a call's error an audit record keeps.
const AUDIT_ERROR: usize = 300;

/// One chat request's tool loop, as the trail keeps it: its rounds and the tools they ran.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChatRecord {
    /// When the loop started (or went on after a person answered), Unix milliseconds.
    pub started_ms: u64,
    /// The model asked for (cut at 200 characters).
    pub model: String,
    /// The user it ran for, when known.
    pub user: Option<String>,
    /// The account holder it ran for (a digest of key and user): whose activity it is.
    #[serde(default)]
    pub holder: Option<String>,
    /// The fingerprint of a key with a tool policy (`k-…`); none for unrestricted keys.
    pub key: Option<String>,
    /// Model rounds.
    pub rounds: u32,
    /// The tools run, in order (exposed names; a tool that failed ends in ` (error)`).
    pub tools: Vec<String>,
    /// How the answer ended (`stop`, `tool_calls`, `length`, …).
    pub finish: String,
    /// How long the loop ran.
    pub duration_ms: u64,
}

/// Where audit records go (the state store, in time); called once per call, after it ended,
/// and once per chat loop.
pub trait AuditSink: Send + Sync {
    /// Keeps one record. Must not block: it runs on the call's task.
    fn record(&self, record: AuditRecord);
    /// Keeps one chat loop's record (by default, nothing). Must not block.
    fn chat(&self, _record: ChatRecord) {}
    /// The writer to wait for at shutdown (it writes what is queued once the hub's token is
    /// cancelled), when there is one.
    fn writer(&self) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
}

/// Runs authorized tools: the hub, the artifact store and the secrets to scrub.
#[derive(Clone)]
pub struct Invoker {
    /// The MCP servers.
    pub hub: Arc<Hub>,
    /// Where binary and oversized outputs go.
    pub artifacts: Artifacts,
    /// Inline budget of one output, in bytes.
    pub budget: usize,
    /// Every configured secret.
    pub redactor: Arc<Redactor>,
    /// Where each call's record goes, if anywhere.
    pub audit: Option<Arc<dyn AuditSink>>,
}

/// What one call gave.
pub struct Invocation {
    /// The MCP result (scrubbed), or why the call failed (its message scrubbed in `output`).
    pub result: Result<CallToolResult, McpError>,
    /// What a model reads of it.
    pub output: ToolOutput,
    /// How long the call took.
    pub took: Duration,
    /// Whether `result` is for the caller as it is, and `output` only its summary (see
    /// [`Invoker::invoke_for_client`]).
    pub kept: bool,
}

/// What a kept result's `output` says: its text blocks (for the log line and the audit), and
/// whether it failed.
fn summary(result: &CallToolResult) -> ToolOutput {
    let is_error = result.is_error.unwrap_or(false);
    let text: String = result
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .take(4)
        .collect::<Vec<_>>()
        .join("\n");
    ToolOutput { text, is_error, artifacts: Vec::new() }
}

impl Invoker {
    /// Runs `tool` with `arguments` for `identity`; `visible` names the tools the caller may see
    /// (asked only by in-process servers). Never fails: a failed call is an error output.
    pub async fn invoke(
        &self,
        tool: Authorized<'_>,
        arguments: Value,
        visible: impl FnOnce() -> Option<Vec<String>>,
        identity: &UserIdentity,
    ) -> Invocation {
        self.run(tool, arguments, visible, identity, None, None, None).await
    }

    /// [`invoke`](Self::invoke) of a model's call (`call_id`, for its trace), answering an
    /// earlier `input_required` result of the call when `retry` is given.
    pub async fn invoke_with(
        &self,
        tool: Authorized<'_>,
        arguments: Value,
        visible: impl FnOnce() -> Option<Vec<String>>,
        identity: &UserIdentity,
        retry: Option<&crate::mcp::InputRetry>,
        call_id: Option<&str>,
    ) -> Invocation {
        self.run(tool, arguments, visible, identity, retry, None, call_id).await
    }

    /// [`invoke`](Self::invoke) for an MCP client, which reads content blocks itself: a result
    /// whose JSON is at most `keep_under` bytes is handed back as it came (scrubbed), its
    /// images and resources inline, and `output` is then only a summary ([`Invocation::kept`]);
    /// a larger one is converted as for a model (binary and long text become artifacts).
    pub async fn invoke_for_client(
        &self,
        tool: Authorized<'_>,
        arguments: Value,
        visible: impl FnOnce() -> Option<Vec<String>>,
        identity: &UserIdentity,
        retry: Option<&crate::mcp::InputRetry>,
        keep_under: usize,
    ) -> Invocation {
        self.run(tool, arguments, visible, identity, retry, Some(keep_under), None).await
    }

    /// Every surface's call: see the module docs. Traced as one `execute_tool` span.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        tool: Authorized<'_>,
        arguments: Value,
        visible: impl FnOnce() -> Option<Vec<String>>,
        identity: &UserIdentity,
        retry: Option<&crate::mcp::InputRetry>,
        keep_under: Option<usize>,
        call_id: Option<&str>,
    ) -> Invocation {
        let entry = tool.entry;
        let started = Instant::now();
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let audited_arguments = self.audit.is_some().then(|| arguments.to_string());
        let traced = crate::telemetry::spans::tool(&entry.name, &entry.server, call_id);
        let span = traced.in_scope(|| tracing::info_span!("mcp.call", server = %entry.server, tool = %entry.name));
        let call = self.hub.call_entry(entry, arguments, visible, identity, retry);
        let result = tracing::Instrument::instrument(tracing::Instrument::instrument(call, span), traced.clone()).await;
        if let Err(e) = &result {
            crate::telemetry::spans::record_error(&traced, e.kind());
        }
        let mut kept = false;
        let (result, output, error) = match result {
            Ok(mut result) => {
                Self::scrub_result(&self.redactor, &mut result);
                // A server a request named by URL: the request's own credentials too.
                if let Some(attached) = &entry.attached {
                    Self::scrub_result(&attached.redactor, &mut result);
                }
                let small = keep_under.filter(|&limit| serde_json::to_vec(&result).is_ok_and(|b| b.len() <= limit));
                let output = if small.is_some() {
                    // Handed on whole: every text in it scrubbed (links, `_meta`, annotations).
                    let mut json = serde_json::to_value(&result).unwrap_or_default();
                    self.redactor.scrub_json_but_binary(&mut json);
                    if let Some(attached) = &entry.attached {
                        attached.redactor.scrub_json_but_binary(&mut json);
                    }
                    if let Ok(clean) = serde_json::from_value(json) {
                        result = clean;
                    }
                    kept = true;
                    summary(&result)
                } else {
                    to_tool_output(&result, &self.artifacts, self.budget, &entry.name).await
                };
                (Ok(result), output, None)
            }
            Err(e) => {
                let message = self.scrub(entry, &e.to_string());
                let output = ToolOutput { text: format!("Error: {message}"), is_error: true, artifacts: Vec::new() };
                // The log's version: a connect link's ticket stays out of it.
                let logged = self.scrub(entry, &e.log_text());
                (Err(e), output, Some(logged))
            }
        };
        let output = ToolOutput { text: self.scrub(entry, &output.text), ..output };
        let took = started.elapsed();
        let outcome = if output.is_error { "error" } else { "ok" };
        if output.is_error && result.is_ok() {
            crate::telemetry::spans::record_error(&traced, "tool_error");
        }
        // The tool's own failure is named in the call's one line too (its start, scrubbed).
        let error = error
            .or_else(|| output.is_error.then(|| output.text.chars().take(200).collect::<String>().replace('\n', " ")));
        let (server, tool) = entry.metric_labels();
        crate::metrics::metrics().tool_call(server, tool, outcome, took);
        let duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        tracing::info!(server = %entry.server, tool = %entry.name, outcome, error = error.as_deref(), duration_ms,
            "mcp.call finished");
        if let (Some(audit), Some(arguments)) = (&self.audit, audited_arguments) {
            let shown: String = self.scrub(entry, &arguments).chars().take(AUDIT_ARGUMENTS).collect();
            let key = identity.files.as_deref().and_then(|f| f.split('/').next()).filter(|k| k.starts_with("k-"));
            audit.record(AuditRecord {
                started_ms,
                server: entry.server.clone(),
                tool: entry.name.clone(),
                user: identity.id.clone(),
                holder: identity.account.clone(),
                key: key.map(str::to_owned),
                chat: identity.chat_id.clone(),
                outcome: outcome.to_owned(),
                duration_ms,
                argument_bytes: arguments.len(),
                arguments: shown,
                error: error.as_ref().map(|e| e.chars().take(AUDIT_ERROR).collect()),
            });
        }
        Invocation { result, output, took, kept }
    }

    /// `text` without configured secrets, nor the request's own credentials of a server it
    /// named by URL.
    fn scrub(&self, entry: &ToolEntry, text: &str) -> String {
        let clean = self.redactor.scrub(text);
        match &entry.attached {
            Some(attached) => attached.redactor.scrub(&clean).into_owned(),
            None => clean.into_owned(),
        }
    }

    /// Removes `redactor`'s secrets from every text a result carries (text blocks, text
    /// resources, structured content); binary content is stored as it came.
    fn scrub_result(redactor: &Redactor, result: &mut CallToolResult) {
        for block in &mut result.content {
            match block {
                ContentBlock::Text(t) => {
                    if let std::borrow::Cow::Owned(clean) = redactor.scrub(&t.text) {
                        t.text = clean;
                    }
                }
                ContentBlock::Resource(r) => {
                    if let ResourceContents::TextResourceContents { text, .. } = &mut r.resource
                        && let std::borrow::Cow::Owned(clean) = redactor.scrub(text)
                    {
                        *text = clean;
                    }
                }
                _ => {}
            }
        }
        if let Some(structured) = &mut result.structured_content {
            redactor.scrub_json(structured);
        }
    }
}
