//! Model completions the gateway makes for itself, not for a client: MCP sampling requests
//! from servers with `sampling: true` (from inside a chat with the chat's model, otherwise with
//! `sampling.model`, always capped by `sampling.max_tokens`), and the structured call that turns
//! a user's words into a form's object (`inputs.rs`). Each is one streamed upstream request
//! whose text is gathered, bounded in bytes and time.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, header};
use serde_json::{Value, json};

use crate::config::SamplingConfig;
use crate::llm::wire::ChatChunk;
use crate::llm::{UpstreamBody, UpstreamClient, UpstreamRequest};
use crate::mcp::{Sampler, SamplingCall};

/// Longest text gathered from one completion.
const MAX_TEXT: usize = 256 * 1024;
/// Longest wait for one completion.
const WAIT: Duration = Duration::from_secs(120);

/// Sends `body` (a chat completion request; streamed) and gathers the answer's text; `auth`
/// is the credential of the request it is made for (its key's own upstream key), if any.
pub async fn complete_text(
    upstream: &UpstreamClient,
    mut body: Value,
    auth: Option<crate::llm::CallerAuth>,
) -> Result<String, String> {
    if let Some(object) = body.as_object_mut() {
        object.insert("stream".into(), Value::Bool(true));
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let request = UpstreamRequest {
        method: Method::POST,
        path_and_query: "/chat/completions".into(),
        headers,
        client_auth: auth,
        body: UpstreamBody::Bytes(serde_json::to_vec(&body).unwrap_or_default().into()),
    };
    let gather = async {
        let response = upstream.send(request).await.map_err(|e| e.to_string())?;
        let mut text = String::new();
        let mut events = std::pin::pin!(response.events());
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| e.to_string())?;
            if event.is_done() {
                break;
            }
            let Ok(chunk) = serde_json::from_str::<ChatChunk>(&event.data) else { continue };
            if let Some(piece) = chunk.first_choice().and_then(|c| c.delta.as_ref()).and_then(|d| d.content.as_deref())
            {
                text.push_str(piece);
            }
            if text.len() > MAX_TEXT {
                return Err("the model's answer was too long".to_owned());
            }
        }
        Ok(text)
    };
    tokio::time::timeout(WAIT, gather).await.map_err(|_| "the model did not answer in time".to_owned())?
}

/// The sampler servers with `sampling: true` get.
pub fn sampler(upstream: UpstreamClient, config: SamplingConfig) -> Sampler {
    Arc::new(move |call: SamplingCall| {
        let (upstream, config) = (upstream.clone(), config.clone());
        Box::pin(async move { sample(&upstream, &config, call).await })
    })
}

/// One sampling request answered: its messages (text; other content is named, not sent) and
/// system prompt to the model, at most `max_tokens`; a `CreateMessageResult`.
pub async fn sample(upstream: &UpstreamClient, config: &SamplingConfig, call: SamplingCall) -> Result<Value, String> {
    let model = call.model.or_else(|| config.model.clone()).ok_or("no model for sampling: set sampling.model")?;
    let params = &call.params;
    let mut messages = Vec::new();
    if let Some(system) = params.get("systemPrompt").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": system}));
    }
    for message in params.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let role = if message.get("role").and_then(Value::as_str) == Some("assistant") { "assistant" } else { "user" };
        let parts: Vec<&Value> = match message.get("content") {
            Some(Value::Array(parts)) => parts.iter().collect(),
            Some(part) => vec![part],
            None => Vec::new(),
        };
        let text: Vec<String> = parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => p.get("text").and_then(Value::as_str).unwrap_or_default().to_owned(),
                Some(other) => format!("[{other} content left out]"),
                None => String::new(),
            })
            .collect();
        messages.push(json!({"role": role, "content": text.join("\n")}));
    }
    if messages.iter().all(|m| m["role"] == "system") {
        return Err("the sampling request has no messages".into());
    }
    let asked = params.get("maxTokens").and_then(Value::as_u64).unwrap_or(u64::from(config.max_tokens));
    let max_tokens = asked.min(u64::from(config.max_tokens));
    let mut body = json!({"model": model, "messages": messages, "max_tokens": max_tokens});
    if let (Some(temperature), Some(body)) = (params.get("temperature").filter(|t| t.is_number()), body.as_object_mut())
    {
        body.insert("temperature".into(), temperature.clone());
    }
    let text = complete_text(upstream, body, None).await?;
    tracing::info!(server = %call.server, model = %model, max_tokens, chars = text.len(), "mcp.sampling answered");
    Ok(json!({"role": "assistant", "content": {"type": "text", "text": text}, "model": model, "stopReason": "endTurn"}))
}
