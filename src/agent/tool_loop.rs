//! The loop as a state machine: a [`ToolLoop`] holds one request's plain-data [`LoopState`]
//! (its body and messages, the offer by name, the call ledger, what was gathered, a wall-clock
//! deadline) plus what is rebuilt from it (catalog entries, the `tools` JSON). Two steps drive
//! it: [`ToolLoop::next_round`] asks the model once, [`ToolLoop::apply`] runs the calls of that
//! round and says whether to go on. Between steps the state can be serialised and the loop
//! resumed from it ([`ToolLoop::resume`]) — in another process, on another replica — which is
//! how a loop waiting for a person is parked.

use std::collections::HashSet;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::calls::{CallLedger, CallScope, Finder, ToolRun, run_calls};
use super::cards;
use super::large::Message;
use super::park::{Answer, Parking, PendingCall, Wait};
use super::round::{AssembledCall, Round};
use super::run::{Agent, ChatJob};
use super::sink::{Announcement, Gathered, Outcome, ResponseIdentity, Sink};
use crate::config::UserIdentity;
use crate::llm::wire::ChatChunk;
use crate::llm::{CallerAuth, LlmError, UpstreamBody, UpstreamRequest};
use crate::mcp::{Catalog, ToolEntry};

/// Most rounds of `input_required` the gateway answers alone for one call.
const MAX_ALONE_ROUNDS: usize = 4;
/// Time a request may run past `tool_loop.max_duration` for its final answer.
const FINAL_ANSWER_GRACE: Duration = Duration::from_secs(60);
/// Longest wait for a busy model before retrying a round.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// Everything a loop needs to go on, as plain data.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoopState {
    /// The request body without `tools` and `messages` (control fields removed).
    pub body: Map<String, Value>,
    /// The client's own tool definitions, as it sent them.
    pub client_definitions: Vec<Value>,
    /// The conversation so far, as the next round sends it (large messages as the client's
    /// bytes).
    pub messages: Vec<Message>,
    /// Our tools offered, by exposed name, in order.
    pub offered: Vec<String>,
    /// Every tool the request may use, by exposed name (what `find_tools` searches).
    pub pool: Vec<String>,
    /// The discovery tool's name, when offered.
    pub find_tools: Option<String>,
    /// Room for our tools in a request.
    pub room: usize,
    /// Repeats and the call budget.
    pub ledger: CallLedger,
    /// Rounds sent so far.
    pub round_no: u32,
    /// Whether the latest round was sent as the last (`tool_choice: "none"`).
    pub last_sent: bool,
    /// When `tool_loop.max_duration` runs out (Unix milliseconds).
    pub deadline_ms: u64,
    /// Text, extensions, usage and trace so far.
    pub gathered: Gathered,
    /// The response's identity, once known.
    pub response: Option<ResponseIdentity>,
    /// How the tools were chosen (`mcp_tool_selection`).
    pub selection: Value,
    /// The model takes images.
    pub vision: bool,
    /// Who the request acts for.
    pub user: UserIdentity,
}

/// What one round came to.
pub enum RoundResult {
    /// The model's answer, to [`ToolLoop::apply`].
    Answered(Round),
    /// The loop ended early (time, a model that stayed away after tools ran).
    Stopped(Outcome),
}

/// What to do after a round was applied.
pub enum Step {
    /// Ask the model again.
    Continue,
    /// The answer is complete.
    Done(Box<Outcome>),
}

/// A running loop: its state and what is rebuilt from it.
pub struct ToolLoop {
    agent: Agent,
    state: LoopState,
    catalog: Arc<Catalog>,
    tools: Vec<Arc<ToolEntry>>,
    pool: Vec<Arc<ToolEntry>>,
    tools_json: Box<serde_json::value::RawValue>,
    client_tools: HashSet<String>,
    headers: HeaderMap,
    client_auth: Option<CallerAuth>,
    deadline: Instant,
    /// The key's own approval rule (the agent's applies too).
    key_approval: Option<Arc<crate::config::ApprovalRule>>,
    /// What the caller may use, for a loop resumed after a person (tools of a server the
    /// person just connected join the offer).
    access: Option<crate::access::ToolAccess>,
}

/// One round's request, serialised straight from the shared parts: no copy of the history per
/// round, the tool definitions as the JSON they were serialised to once, and held messages as
/// the client's bytes.
#[derive(Serialize)]
struct RoundBody<'a> {
    #[serde(flatten)]
    head: RoundHead<'a>,
    messages: &'a [Message],
}

/// A round's request but its messages.
#[derive(Serialize)]
struct RoundHead<'a> {
    #[serde(flatten)]
    body: &'a Map<String, Value>,
    tools: &'a serde_json::value::RawValue,
}

impl ToolLoop {
    /// A new loop for `job`.
    pub fn start(agent: Agent, job: ChatJob) -> Self {
        let ChatJob { mut body, slices, offer, headers, client_auth, vision, identity, catalog, approval } = job;
        let client_definitions: Vec<Value> = match body.remove("tools") {
            Some(Value::Array(tools)) => tools,
            _ => Vec::new(),
        };
        let selection = json!({"available": offer.pool.len(), "offered": offer.tools.len(), "ranker": offer.ranker,
            "find_tools": offer.find_tools.is_some(), "found": 0});
        body.insert("stream".into(), Value::Bool(true));
        // Usage is needed to sum rounds; the client's other stream options stay.
        match body.get_mut("stream_options") {
            Some(Value::Object(options)) => {
                options.insert("include_usage".into(), Value::Bool(true));
            }
            _ => {
                body.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
        // The loop follows one answer: several choices would each want their own tool rounds.
        body.remove("n");
        let messages = match body.remove("messages") {
            Some(Value::Array(m)) => m.into_iter().map(|m| slices.take(m)).collect(),
            _ => Vec::new(),
        };
        let deadline = Instant::now() + agent.limits.max_duration;
        let state = LoopState {
            body,
            client_definitions,
            messages,
            offered: offer.tools.iter().map(|t| t.name.clone()).collect(),
            pool: offer.pool.iter().map(|t| t.name.clone()).collect(),
            find_tools: offer.find_tools,
            room: offer.room,
            ledger: CallLedger::default(),
            round_no: 0,
            last_sent: false,
            deadline_ms: unix_ms(SystemTime::now() + agent.limits.max_duration),
            gathered: Gathered { usage: json!({}), ..Gathered::default() },
            response: None,
            selection,
            vision,
            user: identity,
        };
        let mut this = Self::build(agent, state, catalog, offer.tools, offer.pool, headers, client_auth, deadline);
        this.key_approval = approval;
        this
    }

    /// A loop going on from `state` (serialised earlier, perhaps by another process): its tools
    /// are found again by name in the current catalog and checked again against the caller's
    /// `access` now (a tool gone since, or no longer allowed — a reload narrowed the key — is
    /// not offered, and a call to it is refused); its deadline stays the wall-clock time it was.
    /// A loop that waited for a person is [`resumed_after_person`](Self::resumed_after_person).
    pub fn resume(
        agent: Agent,
        state: LoopState,
        access: &crate::access::ToolAccess,
        headers: HeaderMap,
        client_auth: Option<CallerAuth>,
    ) -> Self {
        let catalog = agent.catalog();
        let by_name = |names: &[String]| {
            names.iter().filter_map(|n| catalog.get(n).filter(|e| access.allows(e)).cloned()).collect::<Vec<_>>()
        };
        let (tools, pool) = (by_name(&state.offered), by_name(&state.pool));
        let left = Duration::from_millis(state.deadline_ms.saturating_sub(unix_ms(SystemTime::now())));
        let deadline = Instant::now() + left;
        Self::build(agent, state, catalog, tools, pool, headers, client_auth, deadline)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        agent: Agent,
        state: LoopState,
        catalog: Arc<Catalog>,
        tools: Vec<Arc<ToolEntry>>,
        pool: Vec<Arc<ToolEntry>>,
        headers: HeaderMap,
        client_auth: Option<CallerAuth>,
        deadline: Instant,
    ) -> Self {
        let client_tools = crate::access::tool_names(&state.client_definitions).map(str::to_owned).collect();
        let tools_json = tools_field(&state.client_definitions, &tools, state.find_tools.as_deref());
        Self {
            agent,
            state,
            catalog,
            tools,
            pool,
            tools_json,
            client_tools,
            headers,
            client_auth,
            deadline,
            key_approval: None,
            access: None,
        }
    }

    /// A parked loop going on in a new response, once the person answered: what the first
    /// response gathered stays with it, the new one gets its own identity, the time limit starts
    /// again (the wait was the person's), and it acts for `user` (the same account holder) with
    /// the key's approval rule of now.
    pub fn resumed_after_person(
        agent: Agent,
        mut state: LoopState,
        access: &crate::access::ToolAccess,
        request: super::run::ResumeRequest,
    ) -> Self {
        state.gathered = Gathered { usage: json!({}), ..Gathered::default() };
        state.response = None;
        state.deadline_ms = unix_ms(SystemTime::now() + agent.limits.max_duration);
        state.user = request.identity;
        let mut this = Self::resume(agent, state, access, request.headers, request.client_auth);
        this.key_approval = request.approval;
        this.access = Some(access.clone());
        this
    }

    /// Tools of `servers` the caller may use that are not offered yet join the offer (within
    /// its room): a per-user server the person just connected lists its tools only now.
    fn offer_tools_of(&mut self, servers: &[String]) {
        let Some(access) = &self.access else { return };
        let catalog = self.agent.catalog();
        let room = self.state.room.saturating_sub(usize::from(self.state.find_tools.is_some()));
        let mut joined = false;
        for entry in catalog.entries().iter().filter(|e| servers.contains(&e.server) && access.allows(e)) {
            if self.tools.len() >= room {
                break;
            }
            if !self.tools.iter().any(|t| t.name == entry.name) {
                self.tools.push(entry.clone());
                joined = true;
            }
        }
        if joined {
            self.catalog = catalog;
            self.state.offered = self.tools.iter().map(|t| t.name.clone()).collect();
            self.tools_json =
                tools_field(&self.state.client_definitions, &self.tools, self.state.find_tools.as_deref());
        }
    }

    /// The state, to serialise.
    pub fn state(&self) -> &LoopState {
        &self.state
    }

    /// Gives up the state (to park it).
    pub fn into_state(self) -> LoopState {
        self.state
    }

    /// Whether the next round is the last one the limits allow (sent with `tool_choice: none`).
    fn last_round(&self) -> bool {
        let limits = &self.agent.limits;
        self.state.round_no >= limits.max_rounds
            || self.state.ledger.total >= limits.max_tool_calls
            || Instant::now() >= self.deadline
    }

    /// Asks the model once: streams its text to `sink` as it comes, retries a busy model after
    /// tools ran, and stops the loop at its deadline.
    pub async fn next_round(&mut self, sink: &Sink) -> Result<RoundResult, LlmError> {
        self.state.round_no += 1;
        self.state.last_sent = self.last_round();
        if self.state.last_sent {
            self.state.body.insert("tool_choice".into(), Value::String("none".into()));
        }
        let span = tracing::info_span!("llm.round", round = self.state.round_no);
        // A round may run into the deadline by a final answer's grace, no more.
        let hard_stop = tokio::time::Instant::from(self.deadline + FINAL_ANSWER_GRACE);
        let mut attempt = 0;
        loop {
            let sent = tracing::Instrument::instrument(self.round(sink), span.clone());
            match tokio::time::timeout_at(hard_stop, sent).await {
                Ok(Ok(mut round)) => {
                    round.finish();
                    return Ok(RoundResult::Answered(round));
                }
                Ok(Err(e)) => {
                    let tools_ran = !self.state.gathered.trace.is_empty();
                    // Tools already ran: a busy model is waited for (its `Retry-After`, a few
                    // times) rather than failing the request, which a client would retry —
                    // running those tools again.
                    if let Some(wait) = retry_wait(&e, attempt, tools_ran, hard_stop) {
                        attempt += 1;
                        tracing::warn!(round = self.state.round_no, attempt, wait_ms = wait.as_millis() as u64,
                            error = %e, "model busy after tools ran; retrying the round");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    if !tools_ran {
                        return Err(e);
                    }
                    // The tools' trace is never lost: the answer ends with what happened.
                    let note = format!("\n\n(Stopped: the model could not be reached after the tools ran: {e})");
                    return Ok(RoundResult::Stopped(self.stopped(sink, &note, Some(&e)).await));
                }
                Err(_) => {
                    let e = LlmError::Timeout { upstream: self.agent.upstream.display_url().to_owned() };
                    if self.state.gathered.trace.is_empty() {
                        // Nothing ran: a plain timeout the client may retry.
                        return Err(e);
                    }
                    let note = "\n\n(Stopped: this request reached its time limit.)";
                    return Ok(RoundResult::Stopped(self.stopped(sink, note, Some(&e)).await));
                }
            }
        }
    }

    /// Takes in a round's answer: ends the loop when the model answered (or handed calls back
    /// to the client), else runs our calls, adds the results to the conversation and the cards
    /// to the answer, and says to go on.
    pub async fn apply(&mut self, round: Round, sink: &Sink) -> Step {
        let round_no = self.state.round_no;
        let last = self.state.last_sent;
        let done = |round_no: u32| crate::metrics::metrics().rounds.observe(f64::from(round_no));
        self.state.gathered.add_round(&round);
        let client_calls: Vec<Value> = round.client_calls().map(AssembledCall::client_json).collect();
        if round.gateway_calls().next().is_none() {
            done(round_no);
            // `tool_calls` with no call left for the client (all ours were dropped) is a stop.
            let finish = match round.finish_reason.as_deref() {
                Some("tool_calls") | Some("function_call") if client_calls.is_empty() => "stop".to_owned(),
                Some(reason) => reason.to_owned(),
                None => "stop".to_owned(),
            };
            return Step::Done(Box::new(self.outcome(&round, client_calls, finish)));
        }
        if last {
            // The model called tools although this round was sent with `tool_choice: "none"`
            // (some models and gateways ignore it): nothing more runs; the answer ends here.
            tracing::warn!(round = round_no, "the model called tools on the last round; not run");
            done(round_no);
            let note = "\n\n(Stopped: this request reached its limit of tool calls, rounds or time.)";
            self.show(sink, note).await;
            // The client's own calls of that round were already streamed: they stand.
            let finish = if client_calls.is_empty() { "stop" } else { "tool_calls" };
            return Step::Done(Box::new(self.outcome(&round, client_calls, finish.into())));
        }
        self.state.messages.push(serde_json::to_value(&round.message).unwrap_or_default().into());
        // Calls that need the user's approval park the round before anything runs; in a round
        // that also hands calls to the client (or with no store to park in) they are declined.
        let mut declined = std::collections::HashMap::new();
        let mut approvals: Vec<&str> = Vec::new();
        for call in round.gateway_calls().filter(|c| self.needs_approval(c.name())) {
            // What the user approves must be shown whole.
            if call.arguments().chars().count() > super::park::SHOWN_ARGUMENTS {
                let text = "Not run: this tool needs the user's approval, and its arguments are too long to show \
                            them; call it with shorter arguments.";
                declined.insert(call.id().to_owned(), text.to_owned());
            } else {
                approvals.push(call.id());
            }
        }
        if !approvals.is_empty() {
            match self.agent.parking.clone() {
                Some(parking) if client_calls.is_empty() => {
                    let calls = round
                        .gateway_calls()
                        .map(|c| {
                            let wait = if approvals.contains(&c.id()) { Wait::Approval } else { Wait::Nothing };
                            PendingCall {
                                refused: declined.get(c.id()).cloned(),
                                ..PendingCall::new(c.call.clone(), wait)
                            }
                        })
                        .collect();
                    done(round_no);
                    return self.park(&parking, calls, &[], &round, sink).await;
                }
                _ => {
                    for id in approvals {
                        let text = "Not run: this tool needs the user's approval, which can only be asked in a turn \
                                    with no other tool calls; call it again on its own.";
                        declined.insert(id.to_owned(), text.to_owned());
                    }
                }
            }
        }
        // While the calls run (past a moment), the client is told which (Open WebUI shows a
        // status line above the answer); the cards with their results follow when they are done.
        let calls: Vec<&AssembledCall> = round.gateway_calls().collect();
        let none = std::collections::HashMap::new();
        let runs = self.run_and_show(&calls, &declined, &none, client_calls.is_empty(), sink).await;
        // A per-user server whose user has not connected, or a server with questions for the
        // user: the round parks (the other calls' results are kept), and the user's next
        // message runs those calls again (with the answers).
        let (waiting, runs): (Vec<ToolRun>, Vec<ToolRun>) =
            runs.into_iter().partition(|r| waits_for_person(r) && client_calls.is_empty());
        let parking = self.agent.parking.clone().filter(|_| !waiting.is_empty());
        let waiting = if parking.is_some() {
            waiting
        } else {
            self.record_runs(waiting, sink).await;
            Vec::new()
        };
        if !self.agent.limits.tool_cards && !client_calls.is_empty() {
            // A mixed turn ends here and the client sends its history back without our
            // calls; without cards to carry them, a plain line per call keeps their results.
            for run in &runs {
                let line = format!("\n[called {}({}): {}]\n", run.name, run.arguments, run.output);
                self.show(sink, &line).await;
            }
        }
        self.record_runs_with(runs, sink, parking.is_none()).await;
        if let Some(parking) = parking {
            done(round_no);
            let (calls, links) = account_waits(&round, &waiting);
            return self.park(&parking, calls, &links, &round, sink).await;
        }
        if !client_calls.is_empty() {
            done(round_no);
            // A mixed turn: ours ran; the client's calls go back to the client.
            return Step::Done(Box::new(self.outcome(&round, client_calls, "tool_calls".into())));
        }
        relax_tool_choice(&mut self.state.body, &self.tools);
        Step::Continue
    }

    /// Runs the loop to its end (the loop stays, for a stream's closing chunks).
    pub async fn run(&mut self, sink: &Sink) -> Result<Outcome, LlmError> {
        loop {
            let round = match self.next_round(sink).await? {
                RoundResult::Answered(round) => round,
                RoundResult::Stopped(outcome) => return Ok(outcome),
            };
            if let Step::Done(outcome) = self.apply(round, sink).await {
                return Ok(*outcome);
            }
        }
    }

    /// The response's identity, made up (and announced with the role delta) if no chunk set one.
    pub async fn ensure_identity(&mut self, sink: &Sink) -> ResponseIdentity {
        if let Some(identity) = &self.state.response {
            return identity.clone();
        }
        let identity = ResponseIdentity {
            id: format!("chatcmpl-mcp-{}", uuid::Uuid::new_v4().simple()),
            created: now(),
            model: String::new(),
        };
        self.state.response = Some(identity.clone());
        sink.delta(&identity, json!({"role": "assistant", "content": ""}), None, Value::Null).await;
        identity
    }

    /// An Open WebUI status line of finished calls (with the cards: the same presentation
    /// switch); the line while they run is an [`Announcement`].
    async fn done_status(&self, sink: &Sink, description: String) {
        if let (true, Some(identity)) = (self.agent.limits.tool_cards, &self.state.response) {
            let event = json!({"type": "status", "data": {"description": description, "done": true}});
            sink.event(identity, event).await;
        }
    }

    /// Adds `text` to the answer and shows it to a streaming client.
    async fn show(&mut self, sink: &Sink, text: &str) {
        self.state.gathered.content.push_str(text);
        if let Some(identity) = &self.state.response {
            sink.delta(identity, json!({"content": text}), None, Value::Null).await;
        }
    }

    fn outcome(&mut self, round: &Round, client_calls: Vec<Value>, finish_reason: String) -> Outcome {
        if let Some(audit) = &self.agent.invoker.audit {
            audit.chat(self.chat_record(&finish_reason));
        }
        Outcome {
            identity: self.state.response.clone().unwrap_or_default(),
            selection: self.state.selection.clone(),
            reasoning: round.message.reasoning_content.clone(),
            thinking_blocks: round.message.thinking_blocks.clone(),
            client_calls,
            finish_reason,
            gathered: std::mem::take(&mut self.state.gathered),
            error: None,
        }
    }

    /// This loop as the activity trail keeps it.
    fn chat_record(&self, finish: &str) -> crate::agent::ChatRecord {
        let now = unix_ms(SystemTime::now());
        let budget = u64::try_from(self.agent.limits.max_duration.as_millis()).unwrap_or(u64::MAX);
        let started_ms = self.state.deadline_ms.saturating_sub(budget).min(now);
        let user = &self.state.user;
        let key = user.files.as_deref().and_then(|f| f.split('/').next()).filter(|k| k.starts_with("k-"));
        let tools = self
            .state
            .gathered
            .trace
            .iter()
            .map(|run| if run.is_error { format!("{} (error)", run.name) } else { run.name.clone() });
        crate::agent::ChatRecord {
            started_ms,
            model: self.state.body.get("model").and_then(Value::as_str).unwrap_or_default().chars().take(200).collect(),
            user: user.id.clone(),
            holder: user.account.clone(),
            key: key.map(str::to_owned),
            rounds: self.state.round_no,
            tools: tools.take(64).collect(),
            finish: finish.to_owned(),
            duration_ms: now.saturating_sub(started_ms),
        }
    }

    /// Ends the answer early with `note`, keeping the trace of what ran; `error` is reported
    /// beside it (`mcp_error`).
    async fn stopped(&mut self, sink: &Sink, note: &str, error: Option<&LlmError>) -> Outcome {
        self.ensure_identity(sink).await;
        self.show(sink, note).await;
        let mut outcome = self.outcome(&Round::default(), Vec::new(), "stop".into());
        outcome.error = error.map(|e| json!({"message": e.to_string()}));
        outcome
    }

    /// Runs `calls` (those in `declined` are not run: the model reads why), with a status line
    /// while they run (once they take a moment) and one after.
    async fn run_and_show(
        &mut self,
        calls: &[&AssembledCall],
        declined: &std::collections::HashMap<String, String>,
        retries: &std::collections::HashMap<String, crate::mcp::InputRetry>,
        hold: bool,
        sink: &Sink,
    ) -> Vec<ToolRun> {
        let names: Vec<&str> = calls.iter().map(|c| c.name()).collect();
        // "Running …" once the calls take a moment (or report progress); "Ran …" after them.
        let announcement = self
            .state
            .response
            .as_ref()
            .filter(|_| self.agent.limits.tool_cards)
            .and_then(|identity| sink.status_line(identity))
            .map(|line| Announcement::new(line, format!("Running {}…", names.join(", "))));
        let started = std::time::Instant::now();
        let scope = CallScope {
            invoker: &self.agent.invoker,
            offered: &self.tools,
            vision: self.state.vision,
            identity: &self.state.user,
            deadline: self.deadline,
            finder: self.state.find_tools.as_deref().map(|name| Finder {
                name,
                catalog: &self.catalog,
                pool: &self.pool,
                limit: self.state.room.saturating_sub(1),
            }),
            declined,
            retries,
            progress: announcement.as_ref().map(Announcement::progress),
            hold: hold && self.agent.parking.is_some(),
        };
        let first = run_calls(&scope, calls, &mut self.state.ledger, &self.agent.limits);
        let mut runs = match &announcement {
            Some(announcement) => announcement.during(first).await,
            None => first.await,
        };
        // What the gateway answers alone (`roots/list`) is answered at once, a few rounds at
        // most; what it does not answer (sampling) fails the call.
        for _ in 0..MAX_ALONE_ROUNDS {
            let mut alone = std::collections::HashMap::new();
            for run in &mut runs {
                let Some(asked) = run.needs_input.clone() else { continue };
                if !super::inputs::answers_alone(&asked) {
                    continue;
                }
                // A model completion and the call again: shown as running from here.
                if let Some(announcement) = &announcement {
                    announcement.send();
                }
                let mut retry = super::inputs::alone(&asked);
                match self.fill_sampling(&asked, &mut retry).await {
                    Ok(()) => {
                        alone.insert(run.id.clone(), retry);
                    }
                    Err(e) => {
                        run.needs_input = None;
                        run.is_error = true;
                        run.output =
                            format!("Error: the tool asked for a model completion (sampling) that failed: {e}");
                    }
                }
            }
            if alone.is_empty() {
                break;
            }
            let again: Vec<&AssembledCall> = calls.iter().copied().filter(|c| alone.contains_key(c.id())).collect();
            let none = std::collections::HashMap::new();
            let progress = announcement.as_ref().map(Announcement::progress);
            let scope = CallScope { finder: None, declined: &none, retries: &alone, progress, hold: false, ..scope };
            let redone = run_calls(&scope, &again, &mut self.state.ledger, &self.agent.limits).await;
            for run in redone {
                if let Some(slot) = runs.iter_mut().find(|r| r.id == run.id) {
                    *slot = run;
                }
            }
        }
        let took = started.elapsed().as_secs_f64();
        let ran = if runs.len() == 1 { names.join("") } else { format!("{} tools", runs.len()) };
        self.done_status(sink, format!("Ran {ran} ({took:.1} s)")).await;
        runs
    }

    /// Answers the sampling requests of `asked` with the chat's model (only for a server with
    /// `sampling: true`), into `retry`.
    async fn fill_sampling(
        &self,
        asked: &crate::mcp::InputRequired,
        retry: &mut crate::mcp::InputRetry,
    ) -> Result<(), String> {
        let model = self.state.body.get("model").and_then(Value::as_str).map(str::to_owned);
        for (key, params) in super::inputs::sampling_requests(asked) {
            let answer = self.agent.hub.sample(&asked.server, params, model.clone()).await?;
            retry.responses.insert(key, answer);
        }
        Ok(())
    }

    /// Takes in what calls gave: tools `find_tools` found join the offer; each result becomes a
    /// tool message, a card (and images) in the answer, and a line of the trace.
    async fn record_runs(&mut self, runs: Vec<ToolRun>, sink: &Sink) {
        self.record_runs_with(runs, sink, true).await;
    }

    /// [`record_runs`](Self::record_runs); `images` off while other calls of the same assistant
    /// turn still wait (a user message between its tool messages would be refused).
    async fn record_runs_with(&mut self, runs: Vec<ToolRun>, sink: &Sink, images: bool) {
        sink.runs(&runs).await;
        let found = merge_found(&mut self.tools, &runs, &self.pool, self.state.room);
        if found > 0 {
            if let Some(count) = self.state.selection.get_mut("found") {
                *count = json!(count.as_u64().unwrap_or_default() + found as u64);
            }
            self.state.offered = self.tools.iter().map(|t| t.name.clone()).collect();
            self.tools_json =
                tools_field(&self.state.client_definitions, &self.tools, self.state.find_tools.as_deref());
        }
        for run in &runs {
            self.state.messages.push(json!({"role": "tool", "tool_call_id": run.id, "content": run.output}).into());
            let mut shown =
                if self.agent.limits.tool_cards { cards::render(run, &self.agent.cards) } else { String::new() };
            // Images a tool produced reach the user as markdown images in the answer.
            for image in run.artifacts.iter().filter(|a| a.mime_type.starts_with("image/")) {
                let _ = write!(shown, "\n\n![{}]({})\n\n", run.name, image.url);
            }
            if !shown.is_empty() {
                self.show(sink, &shown).await;
            }
        }
        if self.state.vision && images {
            let parts: Vec<Value> = runs
                .iter()
                .flat_map(|r| &r.images)
                .map(|data_url| json!({"type": "image_url", "image_url": {"url": data_url}}))
                .collect();
            if !parts.is_empty() {
                // Tool messages take text only; images follow as a user message, inline as
                // `data:` URLs (a provider cannot fetch the gateway's own links).
                let mut content = vec![json!({"type": "text", "text": "Images returned by the tool calls above:"})];
                content.extend(parts);
                self.state.messages.push(json!({"role": "user", "content": content}).into());
            }
        }
        self.state.gathered.trace.extend(runs);
    }

    /// Whether a call of `name` (one of ours) waits for the user's approval: the agent's rule
    /// or the key's names it (a glob), or says destructive tools and its annotations say so.
    fn needs_approval(&self, name: &str) -> bool {
        let Some(entry) = self.tools.iter().find(|t| t.name == name) else { return false };
        let rules = std::iter::once(&*self.agent.approval).chain(self.key_approval.as_deref());
        rules
            .into_iter()
            .any(|rule| (rule.destructive && entry.destructive) || rule.require.iter().any(|g| super::glob(g, name)))
    }

    /// Parks the loop (its state as of now, `calls` still to run) and ends this answer with the
    /// request to the user; without a store that works, the answer ends saying so and nothing
    /// of the parked round runs.
    async fn park(
        &mut self,
        parking: &Parking,
        calls: Vec<PendingCall>,
        links: &[(String, Option<String>)],
        round: &Round,
        sink: &Sink,
    ) -> Step {
        self.ensure_identity(sink).await;
        let owner = self.state.user.account.clone().unwrap_or_default();
        match parking.park(&owner, &self.state, &calls).await {
            Ok(id) => {
                crate::metrics::metrics().parked.inc();
                tracing::info!(calls = calls.len(), "the loop waits for the user's answer");
                let text = super::park::request_text(&calls, links, &id);
                self.show(sink, &text).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a loop that waits for the user could not be parked");
                let note = "\n\n(Stopped: a tool call needs the user's answer, but the gateway could not keep the \
                            request: its state store failed. Nothing was run; ask again.)";
                self.show(sink, note).await;
            }
        }
        Step::Done(Box::new(self.outcome(round, Vec::new(), "stop".into())))
    }

    /// Goes on from a parked round: the user's `answer` approves or denies the calls that
    /// waited for approval; calls that waited for an account run again (parking once more while
    /// it is still not connected); an answer that is more than a decision reaches the model as
    /// the user's message. Then the loop runs to its end.
    pub async fn run_resumed(
        &mut self,
        calls: Vec<PendingCall>,
        answer: &str,
        sink: &Sink,
    ) -> Result<Outcome, LlmError> {
        self.ensure_identity(sink).await;
        let decision = super::park::answer(answer);
        let model = self.state.body.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut declined = std::collections::HashMap::new();
        let mut retries = std::collections::HashMap::new();
        let mut held_answers = Vec::new();
        let mut ask_again = Vec::new();
        // A per-user sign-in waiting for this holder's confirmation: the code in the answer.
        let holder = self.state.user.account.clone().unwrap_or_default();
        let codes = crate::mcp::oauth::confirmation_codes(answer);
        let mut servers: Vec<&str> = calls.iter().filter_map(|c| c.server.as_deref()).collect();
        servers.dedup();
        for server in servers {
            for code in &codes {
                if self.agent.hub.confirm_sign_in(server, &holder, code).await {
                    break;
                }
            }
        }
        for pending in &calls {
            if let Some(text) = &pending.refused {
                declined.insert(pending.call.id.clone(), text.clone());
                continue;
            }
            let text = match (pending.wait, decision) {
                (Wait::Input | Wait::Held, _) => {
                    let Some(input) = &pending.input else { continue };
                    let again = pending.asked_again.is_some();
                    let by = (model.as_str(), self.client_auth.clone());
                    match super::inputs::answers(&self.agent, input, answer, by, again).await {
                        super::inputs::Reply::Answers(retry) if pending.wait == Wait::Held => {
                            let reply =
                                retry.responses.get(HELD_QUESTION).cloned().unwrap_or(json!({"action": "cancel"}));
                            held_answers.push((pending.clone(), reply));
                        }
                        super::inputs::Reply::Answers(mut retry) => match self.fill_sampling(input, &mut retry).await {
                            Ok(()) => {
                                retries.insert(pending.call.id.clone(), retry);
                            }
                            Err(e) => {
                                let text =
                                    format!("Error: the tool asked for a model completion (sampling) that failed: {e}");
                                declined.insert(pending.call.id.clone(), text);
                            }
                        },
                        super::inputs::Reply::AskAgain(why) => {
                            ask_again.push(PendingCall { asked_again: Some(why), ..pending.clone() });
                        }
                    }
                    continue;
                }
                (Wait::Approval, Answer::Deny) => "The user declined this call; it did not run.",
                (Wait::Approval, Answer::Other) => {
                    "The user did not approve this call (they wrote a new message instead); it did not run."
                }
                (Wait::Account, Answer::Deny) => "The user chose not to connect their account; the call did not run.",
                _ => continue,
            };
            declined.insert(pending.call.id.clone(), text.to_owned());
        }
        // An answer that did not fit the questions: asked again (once), nothing runs yet.
        if !ask_again.is_empty()
            && let Some(parking) = self.agent.parking.clone()
        {
            let again = calls_again(calls, ask_again);
            if let Step::Done(outcome) = self.park(&parking, again, &[], &Round::default(), sink).await {
                return Ok(*outcome);
            }
            return Ok(self.outcome(&Round::default(), Vec::new(), "stop".into()));
        }
        let assembled: Vec<AssembledCall> =
            calls.iter().filter(|p| p.wait != Wait::Held).map(|p| AssembledCall::from_call(p.call.clone())).collect();
        let refs: Vec<&AssembledCall> = assembled.iter().collect();
        let mut runs =
            if refs.is_empty() { Vec::new() } else { self.run_and_show(&refs, &declined, &retries, true, sink).await };
        for (pending, reply) in held_answers {
            runs.push(self.answer_held(&pending, reply).await);
        }
        let (waiting, runs): (Vec<ToolRun>, Vec<ToolRun>) = runs.into_iter().partition(waits_for_person);
        // Accounts connected by now: their servers' tools can be used from the next round.
        let connected: Vec<String> = calls
            .iter()
            .filter(|c| c.wait == Wait::Account && !waiting.iter().any(|w| w.id == c.call.id))
            .filter_map(|c| c.server.clone())
            .collect();
        if !connected.is_empty() {
            // Their tools were listed on connecting: the catalog has them once that rebuild lands.
            let _ = tokio::time::timeout(Duration::from_secs(5), self.agent.hub.rebuilt()).await;
            self.offer_tools_of(&connected);
        }
        let parks = self.agent.parking.is_some() && !waiting.is_empty();
        self.record_runs_with(runs, sink, !parks).await;
        if let Some(parking) = self.agent.parking.clone().filter(|_| !waiting.is_empty()) {
            let links: Vec<(String, Option<String>)> = waiting.iter().filter_map(|r| r.needs_account.clone()).collect();
            let again = calls
                .iter()
                .filter_map(|p| {
                    let run = waiting.iter().find(|w| w.id == p.call.id)?;
                    Some(pending_for(p.call.clone(), Some(run)))
                })
                .collect();
            if let Step::Done(outcome) = self.park(&parking, again, &links, &Round::default(), sink).await {
                return Ok(*outcome);
            }
        }
        self.record_runs(waiting, sink).await;
        let answered_questions = calls.iter().any(|c| matches!(c.wait, Wait::Input | Wait::Held));
        if !answered_questions && (decision == Answer::Other || !super::park::only_decision(answer)) {
            self.state.messages.push(json!({"role": "user", "content": answer}).into());
        }
        relax_tool_choice(&mut self.state.body, &self.tools);
        self.run(sink).await
    }

    /// Gives a held call its answer and follows it: its result, another question (held
    /// again), or an error when it is not held in this process (a restart, another replica).
    async fn answer_held(&mut self, pending: &PendingCall, reply: Value) -> ToolRun {
        let started = std::time::Instant::now();
        let call = &pending.call;
        let arguments: Value = serde_json::from_str(&call.function.arguments).unwrap_or(Value::Null);
        let server = pending.input.as_ref().map(|i| i.server.clone()).unwrap_or_default();
        let followed = match &pending.held {
            Some(id) => super::held::answer(id, reply).await,
            None => None,
        };
        let failed = |text: &str| ToolRun::failed(&call.id, &call.function.name, arguments.clone(), text, started);
        match followed {
            Some(super::held::Holdable::Done(invocation)) => {
                let vision = self.state.vision;
                super::calls::finish_run(&call.id, &call.function.name, arguments, invocation, vision, started)
            }
            Some(super::held::Holdable::Asked { id, question }) => {
                let mut run = failed("");
                run.needs_answer = Some((id, question, server));
                run
            }
            Some(super::held::Holdable::Lost) => failed("Error: the call ended without a result."),
            None => failed(
                "Error: the tool's question was held by another gateway process, or it expired; the call did not \
                 finish. Call the tool again.",
            ),
        }
    }

    /// One upstream request, streamed; text and client tool deltas are passed on as they come.
    /// Traced as one `chat` span with the answer's model, finish reason and usage.
    async fn round(&mut self, sink: &Sink) -> Result<Round, LlmError> {
        use crate::telemetry::spans;
        let model = self.state.body.get("model").and_then(Value::as_str).unwrap_or_default();
        let traced = spans::chat(model, self.agent.upstream.base_url());
        let result = tracing::Instrument::instrument(self.exchange(sink, &traced), traced.clone()).await;
        match &result {
            Ok(round) => {
                // The round's own id and model (the answer's identity is the first round's).
                let own = round.answered_as.as_ref();
                let identity = self.state.response.as_ref();
                spans::record_answer(
                    &traced,
                    own.and_then(|(_, model)| model.as_deref()).or(identity.map(|i| i.model.as_str())),
                    own.map(|(id, _)| id.as_str()).or(identity.map(|i| i.id.as_str())),
                    round.finish_reason.as_slice(),
                    round.usage.as_ref(),
                );
            }
            Err(e) => spans::record_error(&traced, e.kind()),
        }
        result
    }

    /// [`round`](Self::round)'s request and answer; `traced` is its span (its context goes
    /// upstream as `traceparent`).
    async fn exchange(&mut self, sink: &Sink, traced: &tracing::Span) -> Result<Round, LlmError> {
        let head = RoundHead { body: &self.state.body, tools: &self.tools_json };
        let native = super::model_policy(&self.state.body, &self.agent.models).is_some_and(|m| m.responses_api);
        let mut headers = self.headers.clone();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        crate::telemetry::spans::inject_headers(traced, &mut headers);
        let upstream = &self.agent.upstream;
        let send = |path: &'static str, body: UpstreamBody| {
            upstream.send(UpstreamRequest {
                method: Method::POST,
                path_and_query: path.into(),
                headers: headers.clone(),
                client_auth: self.client_auth.clone(),
                body,
            })
        };
        let response = if native {
            // A model behind the upstream's Responses API: the same round, in its words. An
            // option of ours the model (or account) does not take is left out once refused.
            let chat = serde_json::to_value(RoundBody { head, messages: &self.state.messages }).map_err(|e| {
                LlmError::InvalidRequest { message: format!("the conversation cannot be sent: {e}"), param: None }
            })?;
            let mut body = crate::llm::native::to_responses(chat.as_object().unwrap_or(&Map::new()));
            let mut attempts = 0;
            loop {
                match send("/responses", UpstreamBody::Bytes(serde_json::to_vec(&body).unwrap_or_default().into()))
                    .await
                {
                    Err(LlmError::Rejected { status, body: refusal, .. })
                        if status == http::StatusCode::BAD_REQUEST
                            && attempts < 2
                            && let Some(option) = crate::llm::native::refused_option(&refusal) =>
                    {
                        attempts += 1;
                        tracing::info!(
                            option,
                            "the upstream refused an option of the Responses round; sent without it"
                        );
                        crate::llm::native::without_option(&mut body, option);
                    }
                    other => break other?,
                }
            }
        } else {
            send("/chat/completions", super::large::body(&head, &self.state.messages)).await?
        };
        let mut round = Round::default();
        let events = if native {
            let mut chunker = crate::llm::native::Chunker::default();
            let chunks = move |event: Result<crate::llm::SseEvent, LlmError>| {
                let events: Vec<_> = match event {
                    Ok(event) => chunker.chunks(&event).into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures_util::stream::iter(events)
            };
            response.events().flat_map(chunks).left_stream()
        } else {
            response.events().right_stream()
        };
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let event = event?;
            if event.is_done() {
                break;
            }
            if event.event == "error" {
                let detail = serde_json::from_str::<Value>(&event.data)
                    .ok()
                    .and_then(|v| v.pointer("/error/message").or_else(|| v.get("message")).cloned())
                    .and_then(|m| m.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "error event".into());
                // The upstream's words reach the client: no secret of ours in them.
                let detail = self.agent.invoker.redactor.scrub(&detail).into_owned();
                return Err(LlmError::StreamBroken { upstream: upstream.display_url().to_owned(), detail });
            }
            let Ok(chunk) = serde_json::from_str::<ChatChunk>(&event.data) else { continue };
            if let Some(err) = chunk.error() {
                let detail = err.get("message").and_then(Value::as_str).unwrap_or("error event");
                let detail = self.agent.invoker.redactor.scrub(detail).into_owned();
                return Err(LlmError::StreamBroken { upstream: upstream.display_url().to_owned(), detail });
            }
            // The response's identity comes from the first chunk with an id (Azure's first,
            // filter-only chunk has an empty one).
            let id = chunk.id.as_deref().filter(|id| !id.is_empty());
            if self.state.response.is_none() && (id.is_some() || chunk.first_choice().is_some()) {
                let identity = ResponseIdentity {
                    id: id.map_or_else(|| format!("chatcmpl-mcp-{}", uuid::Uuid::new_v4().simple()), str::to_owned),
                    created: chunk.created.unwrap_or_else(now),
                    model: chunk.model.clone().unwrap_or_default(),
                };
                sink.delta(&identity, json!({"role": "assistant", "content": ""}), None, Value::Null).await;
                self.state.response = Some(identity);
            }
            if round.answered_as.is_none()
                && crate::telemetry::spans::enabled()
                && let Some(id) = id
            {
                round.answered_as = Some((id.to_owned(), chunk.model.clone().filter(|m| !m.is_empty())));
            }
            let forward = round.push(chunk, &self.client_tools);
            if let (Some(delta), Some(identity)) = (forward.delta, &self.state.response) {
                sink.delta(identity, Value::Object(delta), None, forward.logprobs.unwrap_or(Value::Null)).await;
            }
        }
        Ok(round)
    }
}

/// The parked calls once more, those in `again` replaced (asked a second time).
fn calls_again(calls: Vec<PendingCall>, again: Vec<PendingCall>) -> Vec<PendingCall> {
    calls.into_iter().map(|c| again.iter().find(|a| a.call.id == c.call.id).cloned().unwrap_or(c)).collect()
}

/// Whether a call's run waits for a person: an account to connect, or questions to answer.
fn waits_for_person(run: &ToolRun) -> bool {
    run.needs_account.is_some() || run.needs_input.is_some() || run.needs_answer.is_some()
}

/// What a call whose `run` waits for a person parks as.
fn pending_for(call: crate::llm::wire::ToolCall, run: Option<&ToolRun>) -> PendingCall {
    if let Some((id, question, server)) = run.and_then(|r| r.needs_answer.clone()) {
        let mut requests = Map::new();
        requests.insert(HELD_QUESTION.into(), json!({"method": "elicitation/create", "params": question}));
        let tool = call.function.name.clone();
        let input = crate::mcp::InputRequired { server, tool, requests, request_state: None };
        return PendingCall { input: Some(Box::new(input)), held: Some(id), ..PendingCall::new(call, Wait::Held) };
    }
    match run.and_then(|r| r.needs_input.clone()) {
        Some(input) => PendingCall { input: Some(input), ..PendingCall::new(call, Wait::Input) },
        None => {
            let server = run.and_then(|r| r.needs_account.as_ref()).map(|(server, _)| server.clone());
            PendingCall { server, ..PendingCall::new(call, Wait::Account) }
        }
    }
}

/// The key a held call's one question goes under (to reuse the `input_required` answers).
const HELD_QUESTION: &str = "question";

/// The calls of `round` that wait for a person (from their runs), and each server's link.
fn account_waits(round: &Round, waiting: &[ToolRun]) -> (Vec<PendingCall>, Vec<(String, Option<String>)>) {
    let calls = round
        .gateway_calls()
        .filter_map(|c| {
            let run = waiting.iter().find(|w| w.id == c.id())?;
            Some(pending_for(c.call.clone(), Some(run)))
        })
        .collect();
    let mut links: Vec<(String, Option<String>)> = Vec::new();
    for (server, link) in waiting.iter().filter_map(|r| r.needs_account.clone()) {
        if !links.iter().any(|(s, _)| *s == server) {
            links.push((server, link));
        }
    }
    (calls, links)
}

/// The `tools` field: the client's definitions, ours from their ready JSON, and `find_tools`.
/// Serialised when the offer changes, not every round, and never parsed back: our tools'
/// JSON was checked when the catalog was built.
fn tools_field(
    client_definitions: &[Value],
    tools: &[Arc<ToolEntry>],
    find_tools: Option<&str>,
) -> Box<serde_json::value::RawValue> {
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Item<'a> {
        Value(&'a Value),
        Ready(&'a serde_json::value::RawValue),
    }
    let find = find_tools.map(super::selection::find_tools_definition);
    let items: Vec<Item<'_>> = client_definitions
        .iter()
        .map(Item::Value)
        .chain(tools.iter().map(|tool| Item::Ready(&tool.openai_tool)))
        .chain(find.iter().map(Item::Value))
        .collect();
    serde_json::value::to_raw_value(&items).unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned())
}

/// After a round that ran our tools, a client's `tool_choice` forcing a tool (`"required"`, or
/// one of ours by name) becomes `"auto"`, or the model could never answer.
fn relax_tool_choice(body: &mut Map<String, Value>, ours: &[Arc<ToolEntry>]) {
    if let Some(Value::Object(choice)) = body.get_mut("tool_choice")
        && choice.get("type").and_then(Value::as_str) == Some("allowed_tools")
    {
        // `{"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [...]}}`:
        // the set stays, the force goes.
        if let Some(Value::Object(allowed)) = choice.get_mut("allowed_tools") {
            allowed.insert("mode".into(), Value::String("auto".into()));
        }
        return;
    }
    let forced = match body.get("tool_choice") {
        Some(Value::String(choice)) => choice == "required",
        Some(Value::Object(choice)) => choice
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .is_some_and(|name| ours.iter().any(|t| t.name == name)),
        _ => false,
    };
    if forced {
        body.insert("tool_choice".into(), Value::String("auto".into()));
    }
}

/// What this round's `find_tools` calls found joins the offer, first (it is what the model asked
/// for), each tool once however many searches found it, and the offer stays within `room`
/// (less `find_tools` itself): providers refuse duplicate tool names, and the budget is the
/// budget. Returns how many tools joined.
fn merge_found(tools: &mut Vec<Arc<ToolEntry>>, runs: &[ToolRun], pool: &[Arc<ToolEntry>], room: usize) -> usize {
    let room = room.saturating_sub(1);
    let mut found: Vec<Arc<ToolEntry>> = Vec::new();
    for name in runs.iter().flat_map(|r| &r.found) {
        let fresh = !tools.iter().any(|t| &t.name == name) && !found.iter().any(|t| &t.name == name);
        if let Some(entry) = pool.iter().find(|e| &e.name == name).filter(|_| fresh) {
            found.push(entry.clone());
        }
    }
    found.truncate(room);
    let joined = found.len();
    if joined > 0 {
        tools.truncate(room.saturating_sub(joined));
        tools.splice(0..0, found);
    }
    joined
}

/// How long to wait before retrying a round that failed with `e`: only when tools already ran
/// (before that the client may retry safely), only for 429 and 503, at most twice, honouring
/// `Retry-After` (capped), and never past `hard_stop`.
fn retry_wait(e: &LlmError, attempt: u32, tools_ran: bool, hard_stop: tokio::time::Instant) -> Option<Duration> {
    if !tools_ran || attempt >= 2 {
        return None;
    }
    let wait = match e {
        LlmError::Rejected { status, retry_after, .. } if status.as_u16() == 429 => retry_after
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite())
            .and_then(|s| Duration::try_from_secs_f64(s.clamp(0.0, 3600.0)).ok())
            .unwrap_or(Duration::from_secs(1)),
        LlmError::ServerError { status, .. } if status.as_u16() == 503 => Duration::from_secs(1),
        _ => return None,
    };
    let wait = wait.min(MAX_RETRY_WAIT);
    (tokio::time::Instant::now() + wait < hard_stop).then_some(wait)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
