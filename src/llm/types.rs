//! OpenAI chat wire types. The request is parsed once into a JSON map so every field we do not
//! know (new OpenAI parameters, provider extensions) passes through untouched.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::LlmError;

/// A validated `POST /chat/completions` body.
#[derive(Debug)]
pub struct ChatRequest {
    /// The body exactly as the client sent it; forwarded as-is while nothing is changed.
    pub raw: Bytes,
    /// The parsed body (all fields, known or not).
    pub body: Map<String, Value>,
}

impl ChatRequest {
    /// Parses and checks a body: JSON object, `model` a non-empty string, `messages` an array.
    pub fn parse(raw: Bytes) -> Result<Self, LlmError> {
        let body: Map<String, Value> = serde_json::from_slice(&raw)
            .map_err(|e| invalid(format!("request body is not a valid JSON object: {e}"), None))?;
        Self::checked(raw, body)
    }

    /// Checks a body parsed (as `body`) from `raw`: `model` a non-empty string, `messages` an
    /// array.
    pub fn checked(raw: Bytes, body: Map<String, Value>) -> Result<Self, LlmError> {
        match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => {}
            Some(_) => return Err(invalid("`model` must be a non-empty string".into(), Some("model"))),
            None => return Err(invalid("missing required parameter: `model`".into(), Some("model"))),
        }
        match body.get("messages") {
            Some(Value::Array(_)) => {}
            Some(_) => return Err(invalid("`messages` must be an array".into(), Some("messages"))),
            None => {
                return Err(invalid("missing required parameter: `messages`".into(), Some("messages")));
            }
        }
        Ok(Self { raw, body })
    }

    /// The requested model.
    pub fn model(&self) -> &str {
        self.body.get("model").and_then(Value::as_str).unwrap_or_default()
    }

    /// Whether the client asked for a stream.
    pub fn stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool).unwrap_or(false)
    }
}

/// The few fields of a chat body that decide whether anything of ours applies to it, read
/// without building the body's tree: the model borrowed, messages and the rest as raw JSON.
/// Only an object whose bytes are UTF-8 is read; fields not named here are skipped: their JSON
/// syntax is checked, their values are not (a lone surrogate escape, a number beyond `f64`,
/// nesting past 128 levels go to the upstream as sent, which judges them). A body it does not
/// read (not an object, duplicate fields, a `stream` that is not a boolean, anything odd) is
/// [`ChatRequest::parse`]d as usual.
#[derive(Debug, Deserialize)]
pub struct ChatPeek<'a> {
    /// The requested model (not empty).
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    /// Whether the client asked for a stream.
    #[serde(default)]
    pub stream: Option<bool>,
    /// The messages, an array, as sent.
    #[serde(borrow)]
    pub messages: &'a RawValue,
    /// The client's own tools, if the field is there (`null` included).
    #[serde(default, borrow, deserialize_with = "present")]
    pub tools: Option<&'a RawValue>,
    /// The request's own tool controls (`mcp`), if the field is there (`null` included).
    #[serde(default, borrow, deserialize_with = "present")]
    pub mcp: Option<&'a RawValue>,
}

/// A field that is there, whatever its value: `null` too (which `Option` would make `None`).
fn present<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(value).map(Some)
}

impl<'a> ChatPeek<'a> {
    /// The body's deciding fields, when it is a valid chat body read this way.
    pub fn of(raw: &'a [u8]) -> Option<Self> {
        // An object only (serde would read a struct from an array too), and UTF-8 throughout
        // (skipped strings are not checked one by one).
        if raw.trim_ascii_start().first() != Some(&b'{') {
            return None;
        }
        let peek: Self = serde_json::from_str(std::str::from_utf8(raw).ok()?).ok()?;
        (!peek.model.is_empty() && peek.messages.get().starts_with('[')).then_some(peek)
    }
}

fn invalid(message: String, param: Option<&'static str>) -> LlmError {
    LlmError::InvalidRequest { message, param }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peek_reads_only_plain_chat_bodies() {
        let peek =
            ChatPeek::of(br#"{"model":"m","x":{"y":[1]},"messages":[{"role":"user","content":"hi"}],"stream":true}"#)
                .unwrap();
        assert_eq!((peek.model.as_ref(), peek.stream), ("m", Some(true)));
        assert_eq!(peek.messages.get(), r#"[{"role":"user","content":"hi"}]"#);
        assert!(peek.tools.is_none() && peek.mcp.is_none());
        let peek =
            ChatPeek::of(br#"{"model":"m\u0041","messages":[],"tools":[],"mcp":false,"tool_choice":"none"}"#).unwrap();
        assert_eq!(peek.model, "mA");
        assert!(peek.tools.is_some() && peek.mcp.is_some());
        // A field that is there as `null` is there: the full read decides what it means.
        let peek = ChatPeek::of(br#" {"model":"m","messages":[],"mcp":null,"tools":null,"stream":null}"#).unwrap();
        assert_eq!(
            (peek.mcp.map(RawValue::get), peek.tools.map(RawValue::get), peek.stream),
            (Some("null"), Some("null"), None)
        );
        for odd in [
            &br#"{"model":"m","messages":[],"model":"n"}"#[..],
            br#"{"model":"","messages":[]}"#,
            br#"{"model":"m","messages":{}}"#,
            br#"{"model":"m","messages":[],"stream":"yes"}"#,
            br#"{"model":"m","messages":[],"x":[}"#,
            br#"{"model":"m"}"#,
            br#"[]"#,
            br#"["m",false,[]]"#,
            b"{\"model\":\"m\",\"messages\":[],\"x\":\"\xff\"}",
        ] {
            assert!(ChatPeek::of(odd).is_none(), "{}", String::from_utf8_lossy(odd));
        }
    }

    #[test]
    fn validates_required_fields() {
        let ok = ChatRequest::parse(Bytes::from_static(br#"{"model":"m","messages":[],"x":1}"#)).unwrap();
        assert_eq!(ok.model(), "m");
        assert!(!ok.stream());
        for (body, want) in [
            (&br#"{"messages":[]}"#[..], "model"),
            (br#"{"model":"m"}"#, "messages"),
            (br#"{"model":"","messages":[]}"#, "model"),
            (br#"{"model":"m","messages":{}}"#, "messages"),
            (br#"[1]"#, "JSON object"),
            (br#"{"model":"#, "JSON object"),
        ] {
            let err = ChatRequest::parse(Bytes::from_static(body)).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
