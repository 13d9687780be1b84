//! A loop that waits for a person, parked. When a round's tool calls need the user, the loop
//! stops: the user may need to approve a risky tool, or to connect an account for a per-user
//! server. The answer ends with a short, readable request and a reference (`mcp-park-<id>`).
//! What the loop needs to go on is kept in the state store under that random id: its state as
//! of the round, and the calls still to run. The entry is sealed when a key is configured, is
//! bound to the account holder who started it, and expires after `approval.ttl`. The user's
//! next message in the same conversation resumes it. The client sends back the last assistant
//! message, and that message carries the reference, so any OpenAI client works, with or without
//! a chat id. The entry is taken in one step: one request gets it, so nothing runs twice. The
//! answer is then applied, and the loop goes on to the final answer in that response. A
//! reference that is forged, expired, already used or another holder's does nothing.

use std::fmt::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::tool_loop::LoopState;
use crate::llm::wire::ToolCall;
use crate::state::{Secrets, StateError};

/// The state store's space for parked loops (by reference id).
const SPACE: &str = "parked-loops";
/// What each holder has waiting, for the console: one space per holder (`parked-of/<holder>`),
/// each entry a short [`Waiting`] under the reference id.
const INDEX: &str = "parked-of/";
/// Answers given in the console, applied when the chat goes on (by reference id).
const ANSWERS: &str = "parked-answers";
/// Most entries the console lists for one holder.
const MAX_LISTED: usize = 100;
/// How a reference starts in the answer; 32 hex digits follow.
pub const REFERENCE: &str = "mcp-park-";
/// Longest arguments an approval request shows (whole); a call with longer ones is not
/// offered for approval.
pub const SHOWN_ARGUMENTS: usize = 4000;

/// What a parked call waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// Nothing of its own: it runs with the others once the round goes on.
    Nothing,
    /// The user's approval.
    Approval,
    /// The user connecting their account on the call's server.
    Account,
    /// The user answering the server's questions (`input_required`).
    Input,
    /// The user answering a question the call is held open on (legacy elicitation).
    Held,
}

/// A call of the parked round still to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingCall {
    /// The call as the model made it (its id answers it).
    pub call: ToolCall,
    /// What it waits for.
    pub wait: Wait,
    /// The questions of an `input_required` result (for [`Wait::Input`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Box<crate::mcp::InputRequired>>,
    /// Why the last answer did not fit (the questions are asked a second time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_again: Option<String>,
    /// The id of the call held open in this process (for [`Wait::Held`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Not to run: what the model is told instead (decided when the round parked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The per-user server whose account it waits for (for [`Wait::Account`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl PendingCall {
    /// A call that waits for `wait`.
    pub fn new(call: ToolCall, wait: Wait) -> Self {
        Self { call, wait, input: None, asked_again: None, held: None, refused: None, server: None }
    }
}

/// What is stored: whose it is, the loop, the calls.
#[derive(Serialize)]
struct Stored<'a> {
    owner: &'a str,
    state: &'a LoopState,
    calls: &'a [PendingCall],
    parked_ms: u64,
}

/// A parked loop, taken back from the store.
#[derive(Deserialize)]
pub struct Parked {
    /// The account holder it belongs to.
    pub owner: String,
    /// The loop as of the round that parked it.
    pub state: LoopState,
    /// The calls still to run.
    pub calls: Vec<PendingCall>,
    /// When it was parked (Unix milliseconds; names its console listing).
    #[serde(default)]
    pub parked_ms: u64,
    /// The answer the holder gave in the console, if any (it stands for a plain `continue`).
    #[serde(skip)]
    pub console_answer: Option<String>,
}

/// A parked request as the console lists it: what waits, nothing of the conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Waiting {
    /// Its reference id.
    #[serde(skip)]
    pub id: String,
    /// Its entry in the holder's listing (what the console answers).
    #[serde(skip)]
    pub entry: String,
    /// When it was parked (Unix milliseconds).
    pub parked_ms: u64,
    /// The calls that wait.
    pub calls: Vec<WaitingCall>,
    /// Whether an answer was given in the console already.
    #[serde(skip)]
    pub answered: bool,
}

/// One call of a [`Waiting`] request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaitingCall {
    /// The tool's exposed name.
    pub tool: String,
    /// What it waits for.
    pub wait: Wait,
    /// Its arguments as the model wrote them (cut at [`SHOWN_ARGUMENTS`]).
    pub arguments: String,
    /// The questions asked, as the chat shows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questions: Option<String>,
    /// The per-user server whose account it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// Where loops are parked, and for how long.
#[derive(Clone)]
pub struct Parking {
    secrets: Secrets,
    ttl: Duration,
}

impl Parking {
    /// Parking in `secrets`' store, for `ttl`.
    pub fn new(secrets: Secrets, ttl: Duration) -> Self {
        Self { secrets, ttl }
    }

    /// Stores a loop for `owner`; returns its reference id.
    pub async fn park(&self, owner: &str, state: &LoopState, calls: &[PendingCall]) -> Result<String, StateError> {
        if owner.is_empty() {
            return Err(StateError::Database("the request names no owner to wait for".into()));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let parked_ms = crate::state::unix_ms(std::time::SystemTime::now()).unsigned_abs();
        let bytes = serde_json::to_vec(&Stored { owner, state, calls, parked_ms })
            .map_err(|e| StateError::Database(format!("the loop could not be serialised: {e}")))?;
        self.secrets.put_private(SPACE, &id, &bytes, Some(self.ttl)).await?;
        // The console's listing: a request that could not be listed still waits in the chat.
        let waiting = Waiting {
            id: String::new(),
            entry: String::new(),
            parked_ms,
            calls: calls.iter().filter(|c| c.wait != Wait::Nothing && c.refused.is_none()).map(waiting_call).collect(),
            answered: false,
        };
        if let Ok(listed) = serde_json::to_vec(&waiting)
            && let Err(e) =
                self.secrets.put_private(&index(owner), &entry(parked_ms, &id), &listed, Some(self.ttl)).await
        {
            tracing::warn!(error = %e, "a parked request could not be listed for the console");
        }
        Ok(id)
    }

    /// What waits for `owner` (newest first, at most 100), for the console.
    pub async fn waiting_for(&self, owner: &str) -> Result<Vec<Waiting>, StateError> {
        if owner.is_empty() {
            return Ok(Vec::new());
        }
        let space = index(owner);
        let mut listed = Vec::new();
        // Newest first in key order (see [`entry`]).
        for (key, stored) in self.secrets.store().list(&space, MAX_LISTED).await? {
            // Entries are 16 hex digits of time and the 32 of the id (see [`entry`]).
            let Some(id) = key.get(16..).filter(|id| id.len() == 32).map(str::to_owned) else { continue };
            let Ok(bytes) = self.secrets.open_private(&space, &key, stored) else { continue };
            let Ok(mut waiting) = serde_json::from_slice::<Waiting>(&bytes) else { continue };
            waiting.answered = matches!(self.secrets.store().get(ANSWERS, &id).await, Ok(Some(_)));
            waiting.id = id;
            waiting.entry = key;
            listed.push(waiting);
        }
        Ok(listed)
    }

    /// Keeps `answer` (a decision such as `approve`, or the answers to questions) for the
    /// request listed for `owner` as `entry`; when the chat goes on with a plain `continue`, it
    /// stands for the chat's reply. `false` when `owner` has no such request waiting.
    pub async fn answer_later(&self, entry: &str, owner: &str, answer: &str) -> Result<bool, StateError> {
        let Some(id) = entry.get(16..).filter(|id| id.len() == 32) else { return Ok(false) };
        if owner.is_empty() || self.secrets.store().get(&index(owner), entry).await?.is_none() {
            return Ok(false);
        }
        self.secrets.put_private(ANSWERS, id, answer.as_bytes(), Some(self.ttl)).await?;
        // The chat may have gone on meanwhile (it takes the answer after the loop): when the
        // loop is gone, the answer is taken back, unless the chat already used it.
        if self.secrets.store().count(SPACE, id).await? == 0 {
            return Ok(self.secrets.store().take(ANSWERS, id).await?.is_none());
        }
        Ok(true)
    }

    /// The calls the loop parked under `id` waits on, without taking it (when `owner` parked
    /// it and it has not expired).
    pub async fn peek(&self, id: &str, owner: &str) -> Option<Vec<PendingCall>> {
        let bytes = self.secrets.get_private(SPACE, id).await.ok()??;
        let parked: Parked = serde_json::from_slice(&bytes).ok()?;
        (!owner.is_empty() && parked.owner == owner).then_some(parked.calls)
    }

    /// The loop parked under `id`, taken for good, when `owner` parked it and it has not
    /// expired; `None` otherwise (and another holder's entry stays where it is).
    pub async fn claim(&self, id: &str, owner: &str) -> Option<Parked> {
        let bytes = match self.secrets.get_private(SPACE, id).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "a parked request could not be read");
                return None;
            }
        };
        let parked: Parked = serde_json::from_slice(&bytes).ok()?;
        if owner.is_empty() || parked.owner != owner {
            tracing::warn!("a parked request was answered by someone other than who it waits for; ignored");
            return None;
        }
        // Of two answers racing for it, one gets it.
        match self.secrets.take_private(SPACE, id).await {
            Ok(Some(_)) => {
                let listed = if parked.parked_ms == 0 { id.to_owned() } else { entry(parked.parked_ms, id) };
                let _ = self.secrets.store().delete(&index(owner), &listed).await;
                let answer = self.secrets.take_private(ANSWERS, id).await.ok().flatten();
                let console_answer = answer.and_then(|a| String::from_utf8(a).ok());
                Some(Parked { console_answer, ..parked })
            }
            _ => None,
        }
    }
}

/// The console's listing space of `owner`.
fn index(owner: &str) -> String {
    format!("{INDEX}{owner}")
}

/// A request's key in its holder's listing: the time it parked counted down (newest first in
/// key order), then its id.
fn entry(parked_ms: u64, id: &str) -> String {
    format!("{:016x}{id}", u64::MAX - parked_ms)
}

/// A call as the console lists it.
fn waiting_call(call: &PendingCall) -> WaitingCall {
    let mut arguments = call.call.function.arguments.trim().to_owned();
    if arguments.chars().count() > SHOWN_ARGUMENTS {
        arguments = arguments.chars().take(SHOWN_ARGUMENTS).collect::<String>() + "…";
    }
    WaitingCall {
        tool: call.call.function.name.clone(),
        wait: call.wait,
        arguments,
        questions: call.input.as_ref().map(|input| super::inputs::question_text(input)),
        server: call.server.clone(),
    }
}

/// How many loops wait for a person now, all replicas together (for the metrics).
pub async fn waiting(secrets: &Secrets) -> Result<u64, crate::state::StateError> {
    secrets.store().count(SPACE, "").await
}

/// The reference in the last assistant message, when the conversation ends with the user's
/// answer to it: `(id, the answer's text)`.
pub fn pending_reference(messages: &[Value]) -> Option<(String, String)> {
    let (last, earlier) = messages.split_last()?;
    let previous = earlier.last()?;
    if last.get("role")?.as_str()? != "user" || previous.get("role")?.as_str()? != "assistant" {
        return None;
    }
    let asked = content_text(previous.get("content")?);
    let at = asked.rfind(REFERENCE)? + REFERENCE.len();
    let id: String = asked.get(at..)?.chars().take_while(char::is_ascii_hexdigit).take(33).collect();
    (id.len() == 32).then(|| (id, content_text(last.get("content").unwrap_or(&Value::Null))))
}

/// The text of a message's content (a string, or the text parts of an array).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// How the user answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Yes.
    Approve,
    /// No.
    Deny,
    /// Something else: a new message.
    Other,
}

/// Words that approve, and words that deny (the first word of a short answer decides).
const YES: &[&str] = &[
    "approve", "approved", "yes", "y", "ok", "okay", "sure", "allow", "go", "proceed", "confirm", "run", "continue",
    "done", "oui", "ja", "si", "sí",
];
const NO: &[&str] = &[
    "deny", "denied", "no", "n", "nope", "decline", "reject", "cancel", "stop", "skip", "don't", "dont", "non", "nein",
];

/// Reads the user's answer: a short message whose first word approves or denies, else another
/// message altogether.
pub fn answer(text: &str) -> Answer {
    let text = text.trim().to_lowercase();
    if text.is_empty() || text.chars().count() > 60 {
        return Answer::Other;
    }
    let first: String = text.chars().take_while(|c| c.is_alphanumeric() || *c == '\'').collect();
    if YES.contains(&first.as_str()) {
        Answer::Approve
    } else if NO.contains(&first.as_str()) {
        Answer::Deny
    } else {
        Answer::Other
    }
}

/// Whether the answer is only the decision (a longer one also goes to the model as a message).
pub fn only_decision(text: &str) -> bool {
    text.split_whitespace().count() <= 2
}

/// The request shown to the user: the calls that wait, what to reply, and the reference.
pub fn request_text(calls: &[PendingCall], links: &[(String, Option<String>)], id: &str) -> String {
    let mut text = String::from("\n\n");
    let approvals: Vec<&PendingCall> = calls.iter().filter(|c| c.wait == Wait::Approval).collect();
    if !approvals.is_empty() {
        text.push_str("**Approval needed.** The assistant wants to run:\n\n");
        for call in &approvals {
            let mut arguments = call.call.function.arguments.trim().to_owned();
            if arguments.chars().count() > SHOWN_ARGUMENTS {
                arguments = arguments.chars().take(SHOWN_ARGUMENTS).collect::<String>() + "…";
            }
            let arguments = arguments.replace("```", "ˋˋˋ");
            let _ = write!(text, "- `{}`\n\n```json\n{arguments}\n```\n\n", call.call.function.name);
        }
        let which = if approvals.len() == 1 { "it" } else { "them" };
        let _ = write!(text, "Reply **approve** to run {which}, or **deny** to skip {which}.\n\n");
    }
    for call in calls.iter().filter(|c| matches!(c.wait, Wait::Input | Wait::Held)) {
        if let Some(why) = &call.asked_again {
            let _ = write!(text, "_That answer did not fit: {}._\n\n", why.replace('\n', " "));
        }
        if let Some(input) = &call.input {
            text.push_str(&super::inputs::question_text(input));
        }
    }
    for (server, link) in links {
        match link {
            Some(link) => {
                let _ = write!(
                    text,
                    "**Connect your account.** `{server}` needs your own account: [connect it]({link}) (the link \
                     works for 15 minutes). The page then shows a code: reply **continue** with that code.\n\n"
                );
            }
            None => {
                let _ = write!(
                    text,
                    "**Connect your account.** `{server}` needs your own account; then reply **continue**.\n\n"
                );
            }
        }
    }
    let _ = write!(text, "_{REFERENCE}{id}_");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_read_from_their_first_word() {
        for yes in ["approve", "Yes.", "ok, go ahead", "  Approved!", "continue"] {
            assert_eq!(answer(yes), Answer::Approve, "{yes}");
        }
        for no in ["deny", "No", "no thanks", "Don't", "cancel."] {
            assert_eq!(answer(no), Answer::Deny, "{no}");
        }
        for other in ["what does it do?", "", "yesterday's numbers please", &"yes ".repeat(30)] {
            assert_eq!(answer(other), Answer::Other, "{other}");
        }
    }

    #[test]
    fn a_reference_counts_only_in_the_assistant_message_just_before_the_answer() {
        let id = "0123456789abcdef0123456789abcdef";
        let asked = json!({"role": "assistant", "content": format!("Approval needed.\n\n_{REFERENCE}{id}_")});
        let reply = json!({"role": "user", "content": [{"type": "text", "text": "approve"}]});
        let found = pending_reference(&[json!({"role": "user", "content": "hi"}), asked.clone(), reply.clone()]);
        assert_eq!(found, Some((id.to_owned(), "approve".to_owned())));
        assert_eq!(pending_reference(std::slice::from_ref(&asked)), None, "no answer yet");
        let in_user = json!({"role": "user", "content": format!("{REFERENCE}{id}")});
        assert_eq!(pending_reference(&[in_user, reply.clone()]), None, "a user cannot make one");
        let short = json!({"role": "assistant", "content": format!("{REFERENCE}0123")});
        assert_eq!(pending_reference(&[short, reply.clone()]), None);
        let long = json!({"role": "assistant", "content": format!("{REFERENCE}{id}0")});
        assert_eq!(pending_reference(&[long, reply]), None);
    }
}
