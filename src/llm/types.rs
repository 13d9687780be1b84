//! OpenAI chat wire types. The request is parsed once into a JSON map so every field we do not
//! know (new OpenAI parameters, provider extensions) passes through untouched.

use bytes::Bytes;
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

fn invalid(message: String, param: Option<&'static str>) -> LlmError {
    LlmError::InvalidRequest { message, param }
}

#[cfg(test)]
mod tests {
    use super::*;

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
