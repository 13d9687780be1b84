//! One chat request, from the client's bytes to what goes back: which MCP tools it gets (the
//! permission check), its history (tool cards expanded, or flattened when no tools go
//! upstream), and then either a plain pass-through to the upstream (no tools of ours: the
//! client's bytes are forwarded unchanged when nothing changed) or the tool loop.
//!
//! `http/chat.rs` only turns HTTP into a [`ChatInput`] and a [`ChatReply`] into JSON or SSE.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use memchr::memmem::Finder;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::large::{self, HOLD_BODIES_FROM};
use super::run::{Agent, ChatJob, ResumeRequest, Start};
use super::tool_loop::ToolLoop;
use super::{
    RequestControls, cards_to_text, carries_cards, client_tool_names, expand_tool_cards, select, takes_images,
};
use crate::config::{ToolSelection, UserIdentity};
use crate::llm::{ChatPeek, ChatRequest, LlmError, SseEvent, UpstreamBody, UpstreamRequest, UpstreamResponse};

/// A chat request as the HTTP layer hands it over.
pub struct ChatInput {
    /// The body as received.
    pub raw: Bytes,
    /// The tool policy of the key it was made with (`None`: no restriction).
    pub key: Option<Arc<ToolSelection>>,
    /// Every `x-mcp-servers` header value.
    pub mcp_servers: Vec<String>,
    /// The client said this is a background task (`x-openwebui-task`).
    pub background: bool,
    /// Headers to forward upstream (hop-by-hop and credentials already removed).
    pub headers: HeaderMap,
    /// The caller's credential for the upstream (its key's `upstream_key`, or its own
    /// `Authorization` for `upstream.forward_client_auth`).
    pub client_auth: Option<crate::llm::CallerAuth>,
    /// Who the request acts for (fills MCP servers' `user_headers`).
    pub identity: UserIdentity,
    /// Longest wait for a stream's first event before the response starts anyway (a model that
    /// thinks for minutes must not leave a proxy in front of us waiting for headers).
    pub first_event_wait: std::time::Duration,
    /// The key's own approval rule (added to `approval`).
    pub approval: Option<Arc<crate::config::ApprovalRule>>,
}

/// What [`Agent::plan`] made of a chat request.
pub enum Planned {
    /// Nothing of ours to run: the upstream's response.
    Upstream(ChatReply),
    /// A job for the tool loop.
    Loop {
        /// The job.
        job: Box<ChatJob>,
        /// The client asked for a stream.
        stream: bool,
        /// See [`ChatInput::first_event_wait`].
        first_event_wait: std::time::Duration,
    },
    /// A parked loop going on: the user answered what it waited for.
    Resumed {
        /// The loop, as parked.
        tool_loop: Box<ToolLoop>,
        /// The calls still to run and the answer.
        start: Start,
        /// The client asked for a stream.
        stream: bool,
        /// The client asked for usage in the stream.
        include_usage: bool,
        /// See [`ChatInput::first_event_wait`].
        first_event_wait: std::time::Duration,
    },
}

/// What a chat request produced.
pub enum ChatReply {
    /// No tools of ours: the upstream's own response, to relay (as SSE when `stream`).
    Upstream {
        /// The response.
        response: Box<UpstreamResponse>,
        /// The client asked for a stream.
        stream: bool,
    },
    /// The tool loop's answer for a non-streaming client.
    Completion(Value),
    /// The tool loop's events for a streaming client: the first one (already awaited, so an
    /// upstream failure before any output keeps its status) and the rest.
    Events {
        /// The first event.
        first: Option<SseEvent>,
        /// Everything after it.
        rest: mpsc::Receiver<Result<SseEvent, LlmError>>,
    },
}

/// Why a chat request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The request is malformed, or the upstream failed.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// A malformed control (`mcp` body field).
    #[error("{0}")]
    BadControl(String),
    /// The key may not do this.
    #[error("{0}")]
    Forbidden(String),
}

/// Whether `tools` holds anything but `{"type": "function"}` entries.
fn has_server_side_tools(body: &Map<String, Value>) -> bool {
    body.get("tools").and_then(Value::as_array).is_some_and(|tools| {
        // `custom` tools (GPT-5's free-form tools) run at the client, like functions.
        tools
            .iter()
            .any(|t| !matches!(t.get("type").and_then(Value::as_str).unwrap_or("function"), "function" | "custom"))
    })
}

impl Agent {
    /// Decides what one chat request becomes: relayed to the upstream as it is (no tools of
    /// ours: already sent), or a job for the tool loop.
    pub async fn plan(&self, input: ChatInput) -> Result<Planned, ChatError> {
        let ChatInput {
            raw,
            key,
            mcp_servers,
            background,
            mut headers,
            client_auth,
            identity,
            first_event_wait,
            approval,
        } = input;
        // The usual request with nothing of ours to do goes as it came, read only as far as
        // needed to know that.
        if mcp_servers.is_empty()
            && self.offers_nothing(key.as_deref(), background)
            && let Some(peek) = ChatPeek::of(&raw)
            && self.passes_through(&peek)
        {
            let stream = peek.stream.unwrap_or(false);
            tracing::debug!(model = %peek.model, stream, "chat completion passed through");
            let traced = crate::telemetry::spans::chat(&peek.model, self.upstream.base_url());
            drop(peek);
            return self.forward(UpstreamBody::Bytes(raw), headers, client_auth, traced, stream).await;
        }
        // A body of megabytes takes milliseconds to parse: off the serving core, whose other
        // connections would wait for it. Its large messages are held as slices of it.
        let (mut chat, slices) = if raw.len() >= HOLD_BODIES_FROM {
            let shared = raw.clone();
            // (Parsed here after all if the blocking pool is gone: the runtime is stopping.)
            tokio::task::spawn_blocking(move || large::parse(shared)).await.unwrap_or_else(|_| large::parse(raw))?
        } else {
            (ChatRequest::parse(raw)?, large::Slices::default())
        };
        let had_controls = chat.body.contains_key("mcp");
        let header_values: Vec<&str> = mcp_servers.iter().map(String::as_str).collect();
        let mut controls = RequestControls::take(&header_values, &mut chat.body).map_err(ChatError::BadControl)?;
        controls.background = background;
        // A restricted key must not reach tools our policy cannot see: tools other than
        // functions (`{"type": "mcp", …}`) are run by the upstream itself, with its master key.
        if key.is_some() && has_server_side_tools(&chat.body) {
            return Err(ChatError::Forbidden(
                "this key may use function and custom tools only; server-side tools (other types) are refused".into(),
            ));
        }
        // The user's answer to a loop parked for them: it goes on (their message is the answer).
        if !controls.background
            && let Some(parking) = &self.parking
            && let Some(Value::Array(messages)) = chat.body.get("messages")
            && let Some((id, answer)) = super::park::pending_reference(messages)
            && let Some(parked) = parking.claim(&id, identity.account.as_deref().unwrap_or_default()).await
        {
            let model = super::model_policy(&chat.body, &self.models);
            let access = super::ToolAccess::new(key.as_deref(), model, &controls);
            let stream = chat.stream();
            let include_usage =
                chat.body.get("stream_options").and_then(|o| o.get("include_usage")) == Some(&Value::Bool(true));
            headers.remove(super::MCP_SERVERS_HEADER);
            let request = ResumeRequest { headers, client_auth, identity, approval };
            let tool_loop = ToolLoop::resumed_after_person(self.clone(), parked.state, &access, request);
            tracing::info!(calls = parked.calls.len(), "the user answered; the parked loop goes on");
            return Ok(Planned::Resumed {
                tool_loop: Box::new(tool_loop),
                start: Start::Resumed(parked.calls, with_console_answer(answer, parked.console_answer)),
                stream,
                include_usage,
                first_event_wait,
            });
        }
        let catalog = self.catalog();
        let allowed = select(&catalog, &chat.body, &self.models, key.as_deref(), &controls);
        let model = super::model_policy(&chat.body, &self.models);
        let offer = super::selection::choose(&catalog, allowed, &chat.body, &self.selection, model);
        let tools = &offer.tools;
        if !offer.pool.is_empty() {
            crate::metrics::metrics().tools_offered.observe(tools.len() as f64);
            if offer.ranker == "bm25" {
                crate::metrics::metrics().ranked_requests.inc();
                tracing::info!(
                    offered = tools.len(),
                    available = offer.pool.len(),
                    find_tools = offer.find_tools.is_some(),
                    "more tools allowed than fit: ranked"
                );
            }
        }
        // Cards become calls only when tools go upstream: a provider refuses tool-call history
        // in a request without tools (the client's own tools count).
        let has_cards = chat.body.get("messages").and_then(Value::as_array).is_some_and(|m| carries_cards(m));
        let tools_upstream = !tools.is_empty() || client_tool_names(&chat.body).next().is_some();
        if has_cards && let Some(Value::Array(mut messages)) = chat.body.remove("messages") {
            if tools_upstream {
                messages = expand_tool_cards(messages, &self.cards);
            } else {
                cards_to_text(&mut messages, &self.cards);
            }
            chat.body.insert("messages".into(), Value::Array(messages));
        }
        let stream = chat.stream();
        tracing::debug!(
            model = chat.model(),
            stream,
            tools = tools.len(),
            available = offer.pool.len(),
            ranker = offer.ranker,
            find_tools = offer.find_tools.is_some(),
            "chat completion"
        );
        headers.remove(super::MCP_SERVERS_HEADER);

        let ChatRequest { raw, body } = chat;
        // A model the upstream serves through its Responses API goes through the loop, which
        // speaks that API (the plain proxy would send chat completions).
        let native = model.is_some_and(|m| m.responses_api);
        if tools.is_empty() && offer.find_tools.is_none() && !native {
            // Nothing of ours to run: a plain proxy, forwarding the client's bytes when unchanged.
            // One copy of the body is held while it goes upstream: the bytes sent (and a held
            // message's slice of the client's).
            let traced = crate::telemetry::spans::chat(
                body.get("model").and_then(Value::as_str).unwrap_or_default(),
                self.upstream.base_url(),
            );
            let sent = if had_controls || has_cards {
                drop(raw);
                let mut body = body;
                let messages: Vec<large::Message> = match body.remove("messages") {
                    Some(Value::Array(messages)) => messages.into_iter().map(|m| slices.take(m)).collect(),
                    _ => Vec::new(),
                };
                large::body(&body, &messages)
            } else {
                drop(body);
                UpstreamBody::Bytes(raw)
            };
            return self.forward(sent, headers, client_auth, traced, stream).await;
        }

        // The loop works from the parsed body; the client's bytes are kept only as its held
        // messages' slices.
        drop(raw);
        let vision = takes_images(&body, &self.models);
        let job = ChatJob { body, slices, offer, headers, client_auth, vision, identity, catalog, approval };
        Ok(Planned::Loop { job: Box::new(job), stream, first_event_wait })
    }

    /// Whether no tool of ours could be offered to a request with `key`, whatever its model
    /// (a model's policy only narrows): a background task, or none this caller may see. Known
    /// before the body is read, so a request that may get tools is read once, in full.
    fn offers_nothing(&self, key: Option<&ToolSelection>, background: bool) -> bool {
        background
            || super::ToolAccess::new(key, None, &RequestControls::default()).visible(&self.catalog()).next().is_none()
    }

    /// Whether a request that [`offers_nothing`](Self::offers_nothing), with deciding fields
    /// `peek`, has nothing of ours to do: no controls, no client tools, nothing in its messages
    /// that looks like our tool cards or a parked request's reference (a false alarm only costs
    /// the full read), and not a Responses API model.
    fn passes_through(&self, peek: &ChatPeek<'_>) -> bool {
        if peek.mcp.is_some() || peek.tools.is_some() {
            return false;
        }
        // Searchers made once: making one costs more than searching a short chat.
        static CARD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(super::history::CARD_MARK));
        static PARKED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(super::park::REFERENCE));
        let messages = peek.messages.get().as_bytes();
        if CARD.find(messages).is_some() || (self.parking.is_some() && PARKED.find(messages).is_some()) {
            return false;
        }
        !crate::access::model_policy_named(&peek.model, &self.models).is_some_and(|m| m.responses_api)
    }

    /// Sends a request with nothing of ours in it to the upstream, as `body` (its headers hold
    /// no `x-mcp-servers`: the fast path runs only without one, the full read removes it).
    async fn forward(
        &self,
        body: UpstreamBody,
        mut headers: HeaderMap,
        client_auth: Option<crate::llm::CallerAuth>,
        traced: tracing::Span,
        stream: bool,
    ) -> Result<Planned, ChatError> {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        crate::telemetry::spans::inject_headers(&traced, &mut headers);
        let request = UpstreamRequest {
            method: Method::POST,
            path_and_query: "/chat/completions".into(),
            headers,
            client_auth,
            body,
        };
        let send = self.upstream.send(request);
        // Without traces there is no span to enter around each poll.
        let response =
            if traced.is_none() { send.await } else { tracing::Instrument::instrument(send, traced.clone()).await };
        if let Err(e) = &response {
            crate::telemetry::spans::record_error(&traced, e.kind());
        }
        Ok(Planned::Upstream(ChatReply::Upstream { response: Box::new(response?), stream }))
    }

    /// Runs one chat request.
    pub async fn chat(&self, input: ChatInput) -> Result<ChatReply, ChatError> {
        let (mut rest, first_event_wait) = match self.plan(input).await? {
            Planned::Upstream(reply) => return Ok(reply),
            // The loops' futures are large and rare beside a pass-through: boxed, so this one
            // (moved through every layer of a request) stays small.
            Planned::Loop { job, stream: false, .. } => {
                return Ok(ChatReply::Completion(Box::pin(self.complete(*job)).await?));
            }
            Planned::Loop { job, first_event_wait, .. } => (self.stream(*job), first_event_wait),
            Planned::Resumed { tool_loop, start, stream: false, .. } => {
                return Ok(ChatReply::Completion(Box::pin(self.complete_loop(*tool_loop, start)).await?));
            }
            Planned::Resumed { tool_loop, start, include_usage, first_event_wait, .. } => {
                (Agent::stream_loop(*tool_loop, start, include_usage), first_event_wait)
            }
        };
        // A failure before anything was streamed is still an HTTP error; a first event that is
        // slow to come starts the stream without it (keep-alives flow, a later failure arrives
        // as an error event).
        let first = match tokio::time::timeout(first_event_wait, rest.recv()).await {
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(Some(Ok(event))) => Some(event),
            Ok(None) | Err(_) => None,
        };
        Ok(ChatReply::Events { first, rest })
    }
}

/// The answer a parked loop goes on with: the chat's reply, unless it only says to go on
/// (`continue`, `ok`, `go`, `proceed`, `done`) and the user answered in the console, whose
/// answer then stands. Sign-in codes in that reply still count (a decision keeps them beside
/// it). A reply that approves or denies in so many words, or says something else, is the
/// newest word and wins.
fn with_console_answer(reply: String, console: Option<String>) -> String {
    const GO_ON: &[&str] = &["continue", "ok", "okay", "go", "proceed", "done"];
    let Some(console) = console else { return reply };
    let first: String = reply.trim().chars().take_while(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
    let plain = GO_ON.contains(&first.as_str())
        && reply.split_whitespace().count() <= 1 + crate::mcp::oauth::confirmation_codes(&reply).len();
    if !plain {
        return reply;
    }
    let codes = crate::mcp::oauth::confirmation_codes(&reply);
    let decision = super::park::answer(&console) != super::park::Answer::Other;
    match (codes.is_empty(), decision) {
        (true, _) => console,
        (false, true) => format!("{} {}", console.trim(), codes.join(" ")),
        // An answer to questions keeps its own words; the codes are confirmed from the reply.
        (false, false) => reply,
    }
}

#[cfg(test)]
mod console_answer {
    use super::with_console_answer;

    #[test]
    fn the_console_answer_stands_only_for_a_plain_go_on() {
        let console = || Some("deny".to_owned());
        assert_eq!(with_console_answer("continue".into(), console()), "deny");
        assert_eq!(with_console_answer("ok".into(), console()), "deny");
        assert_eq!(with_console_answer("yes".into(), console()), "yes", "an explicit answer in the chat wins");
        assert_eq!(with_console_answer("no".into(), Some("approve".into())), "no", "a denial in the chat wins");
        assert_eq!(with_console_answer("what is this?".into(), console()), "what is this?", "a new message wins");
        assert_eq!(with_console_answer("continue".into(), None), "continue");
        // A sign-in code in the reply is kept beside the console's decision.
        assert_eq!(with_console_answer("continue ABCDEFGHJK".into(), console()), "deny ABCDEFGHJK");
        assert_eq!(with_console_answer("continue ABCDEFGHJK".into(), Some("{\"a\": 1}".into())), "continue ABCDEFGHJK");
    }
}
