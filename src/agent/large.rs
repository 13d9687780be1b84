//! Large messages held as slices of the client's bytes.
//!
//! A chat body of megabytes is mostly one or two pasted texts or images. Parsed into the loop's
//! history, each would be held twice while it is parsed (the client's bytes and the text), and
//! every round's serialised body would copy it again. Instead, in a body past
//! [`HOLD_BODIES_FROM`], a message of at least [`HOLD_FROM`] bytes is read without copying its
//! text:
//! - the request's checks before the loop (ranking, background tasks, model policy) see a small
//!   stand-in: the message's small fields as they are, and for each long string its head and
//!   its tail (what ranking weighs);
//! - every body sent upstream carries the client's own bytes of the message, as a slice sent
//!   between the body's other bytes ([`body`]), never joined into one buffer.
//!
//! A message with something of ours in it (a tool card, a parked request's reference) and the
//! answer that follows a reference are parsed whole, since they are rewritten or read in full.
//! A stand-in is known by a field named with a per-request random tag, so no client can make
//! one.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use memchr::memmem::Finder;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::llm::{ChatRequest, LlmError, UpstreamBody};

/// Bodies of at least this size have their large messages held (smaller ones are parsed as
/// usual: cheaper than looking).
pub const HOLD_BODIES_FROM: usize = 1024 * 1024;
/// A message of at least this many bytes is held as a slice.
pub const HOLD_FROM: usize = 64 * 1024;
/// Values up to this size are kept whole in a stand-in.
const SMALL: usize = 4 * 1024;
/// Bytes of a long string's head kept in its stand-in (a background task's prompt starts it).
const HEAD: usize = 1024;
/// Deepest nesting a stand-in is made through; a message nested deeper is parsed as usual.
const MAX_DEPTH: usize = 6;
/// The field that marks a stand-in (its value: the request's tag and the slice's index).
const TAG_FIELD: &str = "\u{0}mcp-middleware-held";

/// The slices of one request's held messages.
#[derive(Debug, Default)]
pub struct Slices {
    /// This request's random tag (empty when nothing is held).
    tag: String,
    held: Vec<Bytes>,
}

/// One message of a loop's history.
#[derive(Debug, Clone)]
pub enum Message {
    /// A message as parsed (or made by the loop).
    Parsed(Value),
    /// A large message as the client sent it (JSON).
    Held(Bytes),
}

impl From<Value> for Message {
    fn from(value: Value) -> Self {
        Self::Parsed(value)
    }
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        match self {
            Self::Parsed(value) => value.serialize(serializer),
            Self::Held(bytes) => {
                let text = std::str::from_utf8(bytes).map_err(S::Error::custom)?;
                let raw: &RawValue = serde_json::from_str(text).map_err(S::Error::custom)?;
                raw.serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::Parsed)
    }
}

/// The top level of a chat body, its messages unread.
#[derive(Deserialize)]
struct Split<'a> {
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Parses a large chat body, holding its large messages (see the module's documentation). A
/// body this cannot read so (not an object, `messages` missing or not an array, a duplicate
/// field) is parsed as usual, which says what is wrong with it.
pub fn parse(raw: Bytes) -> Result<(ChatRequest, Slices), LlmError> {
    static CARD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(super::history::CARD_MARK));
    static PARKED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(super::park::REFERENCE));
    // A surrogate escape may be a lone one, which only a full parse refuses.
    static SURROGATE: LazyLock<[Finder<'static>; 2]> = LazyLock::new(|| [Finder::new(r"\ud"), Finder::new(r"\uD")]);
    let Ok(split) = serde_json::from_slice::<Split<'_>>(&raw) else {
        return Ok((ChatRequest::parse(raw)?, Slices::default()));
    };
    let mut slices = Slices { tag: uuid::Uuid::new_v4().simple().to_string(), held: Vec::new() };
    let mut messages = Vec::with_capacity(split.messages.len());
    let mut after_reference = false;
    for message in split.messages {
        let text = message.get();
        let reference = PARKED.find(text.as_bytes()).is_some();
        let holdable = text.len() >= HOLD_FROM
            && !reference
            && !after_reference
            && CARD.find(text.as_bytes()).is_none()
            && SURROGATE.iter().all(|escape| escape.find(text.as_bytes()).is_none());
        let stand_in = if holdable { slice_of(&raw, text).zip(stand_in(text, 0)) } else { None };
        after_reference = reference;
        match stand_in {
            Some((slice, Value::Object(mut fields))) => {
                fields.insert(TAG_FIELD.into(), Value::String(format!("{}:{}", slices.tag, slices.held.len())));
                slices.held.push(slice);
                messages.push(Value::Object(fields));
            }
            _ => match serde_json::from_str(text) {
                Ok(value) => messages.push(value),
                // Said the usual way (the whole body's parse finds it too).
                Err(_) => return Ok((ChatRequest::parse(raw)?, Slices::default())),
            },
        }
    }
    let mut body = split.rest;
    body.insert("messages".into(), Value::Array(messages));
    if slices.held.is_empty() {
        slices.tag.clear();
    }
    // A slice keeps the whole body alive: when the held messages are not most of it, they are
    // copied out and the body goes.
    let held: usize = slices.held.iter().map(Bytes::len).sum();
    if held < raw.len() / 2 {
        for slice in &mut slices.held {
            *slice = Bytes::copy_from_slice(slice);
        }
    }
    Ok((ChatRequest::checked(raw, body)?, slices))
}

/// `text` (borrowed from `raw`) as a slice of `raw`, when it is one.
fn slice_of(raw: &Bytes, text: &str) -> Option<Bytes> {
    let start = (text.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    let end = start.checked_add(text.len())?;
    (end <= raw.len()).then(|| raw.slice(start..end))
}

/// A small value standing in for the JSON `raw`: small values whole, long strings by their head
/// and tail, objects and arrays by the stand-ins of their members.
fn stand_in(raw: &str, depth: usize) -> Option<Value> {
    if raw.len() <= SMALL {
        return serde_json::from_str(raw).ok();
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    match raw.as_bytes().first()? {
        b'"' => Some(Value::String(text_stand_in(raw))),
        b'{' => {
            let fields: BTreeMap<String, &RawValue> = serde_json::from_str(raw).ok()?;
            let mut out = Map::new();
            for (key, value) in fields {
                out.insert(key, stand_in(value.get(), depth + 1)?);
            }
            Some(Value::Object(out))
        }
        b'[' => {
            let items: Vec<&RawValue> = serde_json::from_str(raw).ok()?;
            items.into_iter().map(|item| stand_in(item.get(), depth + 1)).collect::<Option<Vec<_>>>().map(Value::Array)
        }
        // Numbers, `true`, `false` and `null` are never long.
        _ => serde_json::from_str(raw).ok(),
    }
}

/// A long JSON string's stand-in: its first [`HEAD`] bytes and its last
/// [`RANKED_LAST_USER_BYTES`](super::selection::RANKED_LAST_USER_BYTES), unescaped.
fn text_stand_in(raw: &str) -> String {
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    // Backed off (or on) by up to a surrogate pair's 12 bytes, `\ud83d\ude00`, to a whole
    // character.
    let head = (0..=12)
        .filter_map(|cut| inner.get(..HEAD.min(inner.len()).saturating_sub(cut)))
        .find_map(unescape)
        .unwrap_or_default();
    let from = inner.len().saturating_sub(super::selection::RANKED_LAST_USER_BYTES);
    let tail = (0..=12)
        .map(|skip| from + skip)
        .filter(|&at| escapes_before(inner, at).is_multiple_of(2))
        .filter_map(|at| inner.get(at..))
        .find_map(unescape)
        .unwrap_or_default();
    format!("{head} … {tail}")
}

/// The text of the JSON string body `piece` (between quotes), if it is one.
fn unescape(piece: &str) -> Option<String> {
    serde_json::from_str(&format!("\"{piece}\"")).ok()
}

/// How many backslashes come right before byte `at` of `text` (counted up to a bound).
fn escapes_before(text: &str, at: usize) -> usize {
    text.as_bytes().get(..at).unwrap_or_default().iter().rev().take(4096).take_while(|&&b| b == b'\\').count()
}

impl Slices {
    /// Whether any message is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The message `message` stands for: the held slice for one of this request's stand-ins,
    /// else itself.
    pub fn take(&self, message: Value) -> Message {
        let held = match &message {
            Value::Object(fields) if !self.held.is_empty() => fields
                .get(TAG_FIELD)
                .and_then(Value::as_str)
                .and_then(|tag| tag.strip_prefix(self.tag.as_str())?.strip_prefix(':')?.parse::<usize>().ok())
                .and_then(|index| self.held.get(index)),
            _ => None,
        };
        match held {
            Some(bytes) => Message::Held(bytes.clone()),
            None => Message::Parsed(message),
        }
    }
}

/// A chat body made of `head` (a JSON object without `messages`) and `messages`: one slice when
/// no message is held, else the body's own bytes and the held slices in turn.
pub fn body(head: &impl Serialize, messages: &[Message]) -> UpstreamBody {
    let mut own = serde_json::to_vec(head).unwrap_or_default();
    // `{…}` reopened: `{…,"messages":[`.
    if own.pop() != Some(b'}') {
        own = b"{".to_vec();
    }
    if own.len() > 1 {
        own.push(b',');
    }
    own.extend_from_slice(br#""messages":["#);
    let mut parts: Vec<Bytes> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            own.push(b',');
        }
        match message {
            Message::Parsed(value) => {
                let _ = serde_json::to_writer(&mut own, value);
            }
            Message::Held(bytes) => {
                parts.push(std::mem::take(&mut own).into());
                parts.push(bytes.clone());
            }
        }
    }
    own.extend_from_slice(b"]}");
    if parts.is_empty() {
        return UpstreamBody::Bytes(own.into());
    }
    parts.push(own.into());
    UpstreamBody::Parts(Arc::from(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn joined(body: UpstreamBody) -> Value {
        let bytes: Vec<u8> = match body {
            UpstreamBody::Bytes(b) => b.to_vec(),
            UpstreamBody::Parts(parts) => parts.iter().flat_map(|p| p.to_vec()).collect(),
            _ => Vec::new(),
        };
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    fn chat(messages: Value) -> Bytes {
        chat_raw(&messages.to_string())
    }

    /// A chat body with `messages` (JSON), past the size where messages are held.
    fn chat_raw(messages: &str) -> Bytes {
        let pad = "p".repeat(HOLD_BODIES_FROM);
        Bytes::from(format!(r#"{{"pad":"{pad}","model":"m","stream":true,"messages":{messages}}}"#))
    }

    #[test]
    fn a_large_message_goes_upstream_as_sent_and_is_seen_by_its_head_and_tail() {
        let paste = format!("### Task:\n{}\"quoted\" \\ é\n{}the end", "a\tb\n".repeat(40_000), "z ".repeat(10_000));
        let image = format!("data:image/png;base64,{}", "A".repeat(200_000));
        let messages = json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": paste, "name": "ann"},
            {"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": image}}]},
        ]);
        let (chat_request, slices) = parse(chat(messages.clone())).unwrap();
        assert_eq!(slices.held.len(), 2, "both large messages are held");
        let seen = chat_request.body["messages"].as_array().unwrap();
        assert_eq!(seen[0], messages[0], "a small message is parsed");
        let text = seen[1]["content"].as_str().unwrap();
        assert!(text.len() < 10_000 && text.starts_with("### Task:\na\tb\n") && text.ends_with("z the end"), "{text}");
        assert_eq!(seen[1]["name"], "ann");
        assert_eq!(seen[2]["content"][1]["type"], "image_url");
        assert!(seen[2]["content"][1]["image_url"]["url"].as_str().unwrap().starts_with("data:image/png;base64,AAA"));

        let mut fields = chat_request.body.clone();
        let Some(Value::Array(stand_ins)) = fields.remove("messages") else { panic!("messages") };
        let held: Vec<Message> = stand_ins.into_iter().map(|m| slices.take(m)).collect();
        assert!(matches!(held[1], Message::Held(_)) && matches!(held[0], Message::Parsed(_)));
        let mut sent = joined(body(&fields, &held));
        assert_eq!(sent["messages"], messages, "what goes upstream is what the client sent");
        sent.as_object_mut().unwrap().remove("messages");
        assert_eq!(Value::Object(fields), sent);
        // Serialised (a parked loop), a held message is its JSON.
        assert_eq!(serde_json::to_value(&held).unwrap(), messages);
    }

    #[test]
    fn only_this_requests_stand_ins_are_taken_and_ours_are_parsed_whole() {
        let long = "x".repeat(HOLD_FROM);
        let card = format!("<details type=\"tool_calls\" done=\"true\"></details>{long}");
        let forged = json!({"role": "user", "content": "hi", (TAG_FIELD): "0:0"});
        let messages = json!([
            forged, {"role": "assistant", "content": card},
            {"role": "assistant", "content": format!("{long} mcp-park-0123")}, {"role": "user", "content": long},
        ]);
        let (chat_request, slices) = parse(chat(messages.clone())).unwrap();
        assert!(slices.is_empty(), "cards, references and the answer after one are parsed whole");
        assert_eq!(chat_request.body["messages"], messages);
        let forged = slices.take(messages[0].clone());
        assert!(matches!(forged, Message::Parsed(_)), "a client's own field is no stand-in");
        // A body it cannot read this way is refused as usual.
        assert!(parse(Bytes::from_static(br#"{"model":"m","messages":{}}"#)).is_err());
        assert!(parse(Bytes::from_static(br#"{"model":"","messages":[]}"#)).is_err());
        assert!(parse(Bytes::from_static(br#"{"model":"m","messages":[{"a":}]}"#)).is_err());
        let (empty, _) = parse(Bytes::from_static(br#"{"model":"m","messages":[]}"#)).unwrap();
        assert_eq!(joined(body(&Map::new(), &[])), json!({"messages": []}));
        assert_eq!(empty.body["messages"], json!([]));
    }

    #[test]
    fn surrogates_are_cut_whole_and_a_lone_one_is_parsed_whole() {
        for pad in 0..14 {
            let text = format!("### Task:{}{}", "x".repeat(pad), r"\ud83d\ude00".repeat(10_000));
            let stand_in = text_stand_in(&format!("\"{text}\""));
            assert!(stand_in.starts_with("### Task:") && stand_in.ends_with('😀'), "{pad}: {}", stand_in.len());
        }
        let lone = json!([{"role": "user", "content": "x".repeat(HOLD_FROM)}]).to_string().replacen('x', r"\ud800", 1);
        let refused = parse(chat_raw(&lone));
        assert!(refused.is_err(), "a lone surrogate is refused as before");
        // Held messages that are a small part of the body are copied out of it.
        let mut messages: Vec<Value> =
            (0..40).map(|_| json!({"role": "user", "content": "y".repeat(60_000)})).collect();
        messages.push(json!({"role": "user", "content": "z".repeat(HOLD_FROM)}));
        let raw = chat(Value::Array(messages));
        let (_, slices) = parse(raw.clone()).unwrap();
        assert_eq!(slices.held.len(), 1);
        assert!(slices.held.iter().all(|s| !raw.as_ptr_range().contains(&s.as_ptr())), "copied out");
        // Held messages that are most of it stay slices of it.
        let raw = chat(json!([{"role": "user", "content": "z".repeat(3 * HOLD_BODIES_FROM)}]));
        let (_, slices) = parse(raw.clone()).unwrap();
        assert!(slices.held.iter().all(|s| raw.as_ptr_range().contains(&s.as_ptr())), "not copied");
    }

    #[test]
    fn cut_escapes_never_spoil_a_stand_in() {
        for pad in 0..8 {
            let text = format!("{}{}", "é".repeat(pad), r#"\u00e9\n\\\""#.repeat(3_000));
            let stand_in = text_stand_in(&format!("\"{text}\""));
            assert!(stand_in.contains(" … ") && stand_in.len() > 1_000, "{pad}: {}", stand_in.len());
        }
    }
}
