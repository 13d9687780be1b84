//! The scripted model every path in the comparison talks to: an OpenAI-compatible
//! `/v1/chat/completions` whose behaviour is chosen by the request's `model`. It runs as its own
//! process (this bench binary, role `upstream`), so no path shares a process with it.
//!
//! | model      | answer                                                                       |
//! |------------|------------------------------------------------------------------------------|
//! | `bench`    | "hello" (JSON, or five SSE frames when streaming)                            |
//! | `ttft`     | streams "hello" at once, finishes 20 ms later                                |
//! | `hold`     | streams "hello", then holds the stream open for ten minutes                  |
//! | `tool-ts`  | calls `ts__echo` once, then answers (streaming)                              |
//! | `tool-ev`  | calls `ev__echo` (server-everything) once, then answers                      |
//! | `parallel` | calls `ts__slow` (300 ms) four times in one round, then answers              |
//!
//! The last request that carried more than ten tools is kept and served at `GET /last-catalog`,
//! so the direct baseline of the catalog measure sends exactly what the gateway sent (the tool
//! byte budget keeps that well under a hundred tools).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};

#[derive(Default)]
struct Shared {
    last_catalog: parking_lot::Mutex<Bytes>,
}

/// Serves on a free loopback port and prints `PORT <n>` on stdout.
pub async fn serve() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("PORT {}", listener.local_addr().unwrap().port());
    let shared = Arc::new(Shared::default());
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/last-catalog", get(|State(s): State<Arc<Shared>>| async move { s.last_catalog.lock().clone() }))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(shared);
    axum::serve(listener, app).await.unwrap();
}

fn completion(text: &str) -> Value {
    json!({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

/// Frames with an optional pause before the frame at `pause_at`.
fn sse(frames: Vec<String>, pause_at: usize, pause: Duration) -> Response {
    let body = futures_util::stream::iter(frames.into_iter().enumerate()).then(move |(i, f)| async move {
        if i == pause_at && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        Ok::<_, Infallible>(Bytes::from(f))
    });
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(body)).unwrap()
}

fn text_frames(text: &str) -> Vec<String> {
    vec![
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"content": text}), None),
        chunk(json!({}), Some("stop")),
        format!(
            "data: {}\n\n",
            json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        ),
        "data: [DONE]\n\n".into(),
    ]
}

fn call_frames(calls: &[(&str, Value)]) -> Vec<String> {
    let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    for (i, (name, args)) in calls.iter().enumerate() {
        frames.push(chunk(
            json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function",
                   "function": {"name": name, "arguments": args.to_string()}}]}),
            None,
        ));
    }
    frames.push(chunk(json!({}), Some("tool_calls")));
    frames.push("data: [DONE]\n\n".into());
    frames
}

async fn chat(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&raw) else {
        return (axum::http::StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    if body["tools"].as_array().is_some_and(|t| t.len() > 10) {
        *shared.last_catalog.lock() = raw.clone();
    }
    let stream = body["stream"] == true;
    let after_tool = body["messages"].as_array().and_then(|m| m.last()).is_some_and(|m| m["role"] == "tool");
    let model = body["model"].as_str().unwrap_or("bench");
    let calls: Vec<(&str, Value)> = match model {
        _ if after_tool => Vec::new(),
        "tool-ts" => vec![("ts__echo", json!({"text": "hi"}))],
        "tool-ev" => vec![("ev__echo", json!({"message": "hi"}))],
        "parallel" => (0..4).map(|_| ("ts__slow", json!({"ms": 300, "steps": 1}))).collect(),
        _ => Vec::new(),
    };
    if !calls.is_empty() {
        return sse(call_frames(&calls), 0, Duration::ZERO);
    }
    match model {
        "ttft" => sse(text_frames("hello"), 2, Duration::from_millis(20)),
        "hold" => sse(text_frames("hello"), 2, Duration::from_secs(600)),
        _ if stream => sse(text_frames(if after_tool { "done" } else { "hello" }), 0, Duration::ZERO),
        _ => axum::Json(completion("hello")).into_response(),
    }
}
