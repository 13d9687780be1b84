//! Running one round's tool calls: permission (only tools offered to this request run), parsed
//! and checked arguments, caps, repeat detection, and the calls themselves in parallel
//! (bounded), results in the model's original order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::invoke::{Authorized, Invocation, Invoker};
use super::results::ToolOutput;
use super::round::AssembledCall;
use crate::artifacts::Artifact;
use crate::config::ToolLoopConfig;
use crate::mcp::ToolEntry;

/// One executed (or refused) call, for the tool message, the card and the trace.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ToolRun {
    /// Call id from the model.
    pub id: String,
    /// Exposed tool name.
    pub name: String,
    /// Arguments as the model sent them (parsed when they were JSON).
    pub arguments: Value,
    /// What the model is told.
    #[serde(skip)]
    pub output: String,
    /// Whether it failed (tool error, bad arguments, timeout, refused).
    pub is_error: bool,
    /// Artifacts made from its output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// Its images as `data:` URLs, for a model that takes images (empty otherwise).
    #[serde(skip)]
    pub images: Vec<String>,
    /// For `find_tools`: the tools it found (they join the next round's tools).
    #[serde(skip)]
    pub found: Vec<String>,
    /// A per-user server whose user has not connected: its name and the connect link.
    #[serde(skip)]
    pub needs_account: Option<(String, Option<String>)>,
    /// The server needs input before the call can finish (`input_required`).
    #[serde(skip)]
    pub needs_input: Option<Box<crate::mcp::InputRequired>>,
    /// The call is held open on a question (legacy elicitation): its id, the question
    /// (`ElicitRequestParams` as JSON) and the server.
    #[serde(skip)]
    pub needs_answer: Option<(String, Value, String)>,
    /// Wall time of the call.
    pub duration_ms: u64,
}

/// Tracks identical calls in consecutive rounds and the per-request call budget. Identical
/// calls within one round (a model fanning out) are not repeats.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CallLedger {
    /// Streaks of the previous round, by name and canonical arguments (`name\0arguments`).
    previous: HashMap<String, u32>,
    /// Streaks of this round.
    current: HashMap<String, u32>,
    /// Calls run so far in this request.
    pub total: u32,
}

enum Plan {
    Run(Arc<ToolEntry>, Value),
    Find(String),
    Refuse(String),
    /// Not run: the person said no (or could not be asked).
    Decline(String),
}

/// The discovery tool of a request whose tools did not all fit.
pub struct Finder<'a> {
    /// Its name.
    pub name: &'a str,
    /// The catalog (for its index).
    pub catalog: &'a crate::mcp::Catalog,
    /// Every tool the request may use.
    pub pool: &'a [Arc<ToolEntry>],
    /// Most tools one search may add (the request's room, less `find_tools` itself).
    pub limit: usize,
}

impl CallLedger {
    fn plan(&mut self, call: &AssembledCall, scope: &CallScope<'_>, limits: &ToolLoopConfig) -> Plan {
        let offered = scope.offered;
        if let Some(finder) = &scope.finder
            && call.name() == finder.name
        {
            let query = serde_json::from_str::<Value>(call.arguments())
                .ok()
                .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| call.arguments().to_owned());
            return Plan::Find(query);
        }
        // The permission check: the request's access decided what was offered; nothing else runs.
        let Some(entry) = offered.iter().find(|e| e.name == call.name()) else {
            return Plan::Refuse(format!(
                "Error: unknown tool `{}`: it is not available to you. Use only the tools you were given.",
                call.name()
            ));
        };
        let args = if call.arguments().trim().is_empty() {
            Ok(Value::Object(Default::default()))
        } else {
            serde_json::from_str::<Value>(call.arguments())
        };
        let args = match args {
            Ok(v) => v,
            Err(e) => {
                return Plan::Refuse(format!(
                    "Error: the arguments are not valid JSON ({e}); call the tool again with a JSON object."
                ));
            }
        };
        // The same call going on with its answers (`input_required`) is not a repeat, nor
        // another call of the budget.
        if scope.retries.contains_key(call.id()) {
            return Plan::Run(entry.clone(), args);
        }
        let key = format!("{}\0{}", call.name(), canonical(&args));
        let streak = match self.current.get(&key) {
            Some(s) => *s,
            None => self.previous.get(&key).map_or(1, |s| s + 1),
        };
        self.current.insert(key, streak);
        if streak >= limits.repeat_limit {
            return Plan::Refuse(format!(
                "Not run: this exact call was already made {} times in a row with the same arguments. \
                 Use the earlier results, change the arguments, or answer the user.",
                streak - 1
            ));
        }
        if self.total >= limits.max_tool_calls {
            return Plan::Refuse(format!(
                "Not run: the limit of {} tool calls for this request was reached. Answer with what you have.",
                limits.max_tool_calls
            ));
        }
        self.total += 1;
        Plan::Run(entry.clone(), args)
    }
}

/// Key-order-independent form of arguments, for repeat detection.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys.iter().map(|k| format!("{k:?}:{}", canonical(&m[*k]))).collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// What one round's calls need besides the calls.
pub struct CallScope<'a> {
    /// Runs the calls (the one invoker of every surface).
    pub invoker: &'a Invoker,
    /// The tools offered to this request: the only ones that run.
    pub offered: &'a [Arc<ToolEntry>],
    /// The model takes images: keep them as `data:` URLs too.
    pub vision: bool,
    /// Who the request acts for (fills HTTP servers' `user_headers`).
    pub identity: &'a crate::config::UserIdentity,
    /// The discovery tool, when the request has one.
    pub finder: Option<Finder<'a>>,
    /// When the request's `tool_loop.max_duration` runs out.
    pub deadline: Instant,
    /// Calls not to run, by call id, with what the model is told instead.
    pub declined: &'a HashMap<String, String>,
    /// Calls that answer an earlier `input_required`, by call id.
    pub retries: &'a HashMap<String, crate::mcp::InputRetry>,
    /// Shows the calls' progress notifications (a streaming chat's status line).
    pub progress: Option<crate::mcp::ProgressFn>,
    /// Calls may be held open on a question (the chat can park).
    pub hold: bool,
}

/// Largest image (base64 characters) passed inline to a vision model — under Anthropic's 5 MB
/// per image once decoded; larger ones reach it only as the link in the tool message.
const MAX_INLINE_IMAGE: usize = 6_500_000;

/// Image types every vision provider takes.
const INLINE_IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// A result's images as `data:` URLs.
fn data_urls(result: &rmcp::model::CallToolResult) -> Vec<String> {
    result
        .content
        .iter()
        .filter_map(|block| match block {
            rmcp::model::ContentBlock::Image(image)
                if image.data.len() <= MAX_INLINE_IMAGE && INLINE_IMAGE_TYPES.contains(&image.mime_type.as_str()) =>
            {
                Some(format!("data:{};base64,{}", image.mime_type, image.data))
            }
            _ => None,
        })
        .collect()
}

/// Runs `calls` (at most `limits.parallel_calls` at once); results in the same order.
pub async fn run_calls(
    scope: &CallScope<'_>,
    calls: &[&AssembledCall],
    ledger: &mut CallLedger,
    limits: &ToolLoopConfig,
) -> Vec<ToolRun> {
    let permits = tokio::sync::Semaphore::new(limits.parallel_calls.max(1));
    let at_once = limits.parallel_calls.max(1);
    let runs = calls.iter().enumerate().map(|(index, call)| {
        let plan = match scope.declined.get(call.id()) {
            Some(text) => Plan::Decline(text.clone()),
            None => ledger.plan(call, scope, limits),
        };
        // The calls of the round that may be held and start at once are counted on their
        // server before any starts (later ones count themselves when they start).
        let held = match &plan {
            Plan::Run(entry, _) if holdable(scope, call, entry) => {
                Some(super::held::prepare(&scope.invoker.hub, entry, index < at_once))
            }
            _ => None,
        };
        let permits = &permits;
        // Boxed: the join holds pointers, not the calls' futures themselves.
        Box::pin(async move {
            let started = Instant::now();
            let run = async {
                let _permit = permits.acquire().await;
                run_one(scope, call, plan, held).await
            };
            // The request's deadline holds inside the round too: a call still running then is
            // cancelled (the server hears `notifications/cancelled`) and the model is told.
            match tokio::time::timeout_at(scope.deadline.into(), run).await {
                Ok(run) => run,
                Err(_) => ToolRun::failed(
                    call.id(),
                    call.name(),
                    serde_json::from_str(call.arguments())
                        .unwrap_or_else(|_| Value::String(call.arguments().to_owned())),
                    "Error: this request reached its time limit before the call finished; it was cancelled.",
                    started,
                ),
            }
        })
    });
    let runs: Vec<_> = runs.collect();
    ledger.previous = std::mem::take(&mut ledger.current);
    futures_util::future::join_all(runs).await
}

/// Whether `call` runs in a task of its own that can be held open while the chat parks
/// (legacy elicitation): a chat's call to a server that may ask questions mid-call.
fn holdable(scope: &CallScope<'_>, call: &AssembledCall, entry: &ToolEntry) -> bool {
    scope.hold && !scope.retries.contains_key(call.id()) && scope.invoker.hub.elicits(&entry.server)
}

async fn run_one(
    scope: &CallScope<'_>,
    call: &AssembledCall,
    plan: Plan,
    held: Option<super::held::Prepared>,
) -> ToolRun {
    let started = Instant::now();
    let images = Vec::new();
    let mut found = Vec::new();
    let (arguments, ToolOutput { text, is_error, artifacts }) = match plan {
        Plan::Find(query) => {
            let (text, tools) = match &scope.finder {
                Some(finder) => super::selection::find(finder.catalog, finder.pool, &query, finder.limit),
                None => (String::new(), Vec::new()),
            };
            tracing::info!(query = %query, found = tools.len(), "find_tools");
            crate::metrics::metrics().tool_call("", call.name(), "ok", started.elapsed());
            found = tools.iter().map(|t| t.name.clone()).collect();
            (json!({"query": query}), ToolOutput { text, is_error: false, artifacts: Vec::new() })
        }
        Plan::Refuse(text) => {
            // A name the model made up is counted under one label, never its own (unbounded
            // metric cardinality), and logged escaped (the log writer escapes controls).
            let offered = scope.offered.iter().find(|e| e.name == call.name());
            let (server, tool) = offered.map_or(("", "(not offered)"), |e| e.metric_labels());
            crate::metrics::metrics().tool_call(server, tool, "refused", started.elapsed());
            tracing::info!(server, tool = %call.name(), outcome = "refused", "mcp.call refused");
            let args =
                serde_json::from_str(call.arguments()).unwrap_or_else(|_| Value::String(call.arguments().to_owned()));
            (args, ToolOutput { text, is_error: true, artifacts: Vec::new() })
        }
        Plan::Decline(text) => {
            tracing::info!(tool = %call.name(), outcome = "declined", "mcp.call declined");
            let args =
                serde_json::from_str(call.arguments()).unwrap_or_else(|_| Value::String(call.arguments().to_owned()));
            (args, ToolOutput { text, is_error: true, artifacts: Vec::new() })
        }
        Plan::Run(entry, args) => {
            let retry = scope.retries.get(call.id());
            let invocation = if let Some(prepared) = held {
                let visible = scope.offered.iter().map(|e| e.name.clone()).collect();
                let run = Box::pin(super::held::run(
                    prepared,
                    scope.invoker.clone(),
                    args.clone(),
                    visible,
                    scope.identity.clone(),
                    scope.progress.clone(),
                    call.id().to_owned(),
                ));
                match run.await {
                    super::held::Holdable::Done(invocation) => invocation,
                    super::held::Holdable::Asked { id, question } => {
                        let mut run = held_run(call.id(), call.name(), args, started);
                        run.needs_answer = Some((id, question, entry.server.clone()));
                        return run;
                    }
                    super::held::Holdable::Lost => {
                        let mut run = held_run(call.id(), call.name(), args, started);
                        run.output = "Error: the call ended without a result.".into();
                        return run;
                    }
                }
            } else {
                let visible = || Some(scope.offered.iter().map(|e| e.name.clone()).collect());
                let tool = Authorized::offered(&entry);
                // Boxed where it is made: a call's future is large, and only its pointer moves
                // through the scopes and joins around it.
                let invoked = Box::pin(scope.invoker.invoke_with(
                    tool,
                    args.clone(),
                    visible,
                    scope.identity,
                    retry,
                    Some(call.id()),
                ));
                match &scope.progress {
                    Some(show) => crate::mcp::PROGRESS.scope(show.clone(), invoked).await,
                    None => invoked.await,
                }
            };
            tracing::debug!(server = %entry.server, tool = %call.name(), arguments = %args, "mcp.call arguments");
            return finish_run(call.id(), call.name(), args, invocation, scope.vision, started);
        }
    };
    // Our own texts (refusals, finds) pass the same scrubber as tool outputs did in the invoker.
    let text = scope.invoker.redactor.scrub(&text).into_owned();
    ToolRun {
        id: call.id().to_owned(),
        name: call.name().to_owned(),
        arguments,
        output: text,
        is_error,
        artifacts,
        images,
        found,
        needs_account: None,
        needs_input: None,
        needs_answer: None,
        duration_ms: duration_ms(started.elapsed()),
    }
}

/// A run whose call is held (its output is filled when it finishes).
fn held_run(id: &str, name: &str, arguments: Value, started: Instant) -> ToolRun {
    ToolRun::failed(id, name, arguments, "", started)
}

impl ToolRun {
    /// A call that gave no result: the model reads `text`.
    pub fn failed(id: &str, name: &str, arguments: Value, text: &str, started: Instant) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            arguments,
            output: text.to_owned(),
            is_error: true,
            artifacts: Vec::new(),
            images: Vec::new(),
            found: Vec::new(),
            needs_account: None,
            needs_input: None,
            needs_answer: None,
            duration_ms: duration_ms(started.elapsed()),
        }
    }
}

/// The run of a call that went to its server: what the model reads, its images (for a model
/// that takes them), and what it waits for (an account, answers).
pub fn finish_run(
    id: &str,
    name: &str,
    arguments: Value,
    invocation: Invocation,
    vision: bool,
    started: Instant,
) -> ToolRun {
    let images = match &invocation.result {
        Ok(result) if vision => data_urls(result),
        _ => Vec::new(),
    };
    let (needs_account, needs_input) = match &invocation.result {
        Err(crate::mcp::McpError::AccountNotConnected { server, link, .. }) => {
            (Some((server.clone(), link.clone())), None)
        }
        Err(crate::mcp::McpError::InputRequired(asked)) => (None, Some(asked.clone())),
        _ => (None, None),
    };
    let ToolOutput { text, is_error, artifacts } = invocation.output;
    ToolRun {
        id: id.to_owned(),
        name: name.to_owned(),
        arguments,
        output: text,
        is_error,
        artifacts,
        images,
        found: Vec::new(),
        needs_account,
        needs_input,
        needs_answer: None,
        duration_ms: duration_ms(started.elapsed()),
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
