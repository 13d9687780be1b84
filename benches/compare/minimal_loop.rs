//! The physical floor of one tool round: a minimal tool loop on hyper, to a tool round what the
//! minimal proxy is to a pass-through request. For each chat it adds the tool definitions the
//! gateway under test sent upstream for the same chat (`MCPMW_BENCH_TOOLS`, a JSON file), sends
//! the chat upstream, reads the streamed answer whole and parses its events for tool calls,
//! calls each tool on the Rust test server (stdio, started once) with rmcp, appends the call and
//! its result to the messages, and relays the second answer's bytes to the client as they come.
//! Nothing else: no ranking, cards, status lines, limits, redaction, trail or metrics. Runs as
//! its own process (this bench binary, role `loop`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

type Upstream = Client<HttpConnector, Full<Bytes>>;

struct Shared {
    client: Upstream,
    /// `http://127.0.0.1:port/v1/chat/completions`.
    url: hyper::Uri,
    mcp: rmcp::Peer<rmcp::RoleClient>,
    /// The tools offered, as the gateway offered them for the same chat.
    tools: Value,
}

/// Serves on a free loopback port in front of `upstream` (`127.0.0.1:port`) and prints `PORT <n>`.
pub async fn serve(upstream: String) {
    let mut cmd = tokio::process::Command::new(crate::TEST_SERVER);
    cmd.arg("stdio");
    let service = ().serve(rmcp::transport::TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let shared = Arc::new(Shared {
        client: Client::builder(TokioExecutor::new()).pool_max_idle_per_host(20_000).build_http(),
        url: format!("http://{upstream}/v1/chat/completions").parse().unwrap(),
        mcp: service.peer().clone(),
        tools: serde_json::from_slice(&std::fs::read(std::env::var("MCPMW_BENCH_TOOLS").unwrap()).unwrap()).unwrap(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("PORT {}", listener.local_addr().unwrap().port());
    loop {
        let Ok((socket, _)) = listener.accept().await else { continue };
        let _ = socket.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| round(shared.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

async fn round(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, hyper::Error>>, Infallible> {
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut chat: Value = serde_json::from_slice(&body).unwrap();
    chat["tools"] = shared.tools.clone();
    let first = post(&shared, &chat).await.collect().await.unwrap().to_bytes();
    let calls = tool_calls(&first);
    if calls.is_empty() {
        return Ok(Response::new(Full::new(first).map_err(|e| match e {}).boxed()));
    }
    let messages = chat["messages"].as_array_mut().unwrap();
    let assistant: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
        .collect();
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": assistant}));
    for (id, name, args) in calls {
        let mut params = CallToolRequestParams::new(name.trim_start_matches("ts__").to_owned());
        params.arguments = serde_json::from_str::<Value>(&args).ok().and_then(|a| a.as_object().cloned());
        let result = shared.mcp.call_tool(params).await.unwrap();
        let text: String = result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.as_str())).collect();
        messages.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
    }
    let second = post(&shared, &chat).await;
    let mut response = Response::new(second.boxed());
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
    Ok(response)
}

async fn post(shared: &Shared, chat: &Value) -> Incoming {
    let req = Request::post(shared.url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(chat).unwrap())))
        .unwrap();
    shared.client.request(req).await.unwrap().into_body()
}

/// The tool calls of a streamed answer: (id, name, arguments), their pieces joined.
fn tool_calls(sse: &[u8]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for line in sse.split(|b| *b == b'\n') {
        let Some(data) = line.strip_prefix(b"data: ") else { continue };
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else { continue };
        let Some(deltas) = chunk.pointer("/choices/0/delta/tool_calls").and_then(Value::as_array) else { continue };
        for delta in deltas {
            let index = delta["index"].as_u64().unwrap_or(0) as usize;
            if calls.len() <= index {
                calls.resize(index + 1, Default::default());
            }
            let call = &mut calls[index];
            if let Some(id) = delta["id"].as_str() {
                call.0.push_str(id);
            }
            if let Some(name) = delta.pointer("/function/name").and_then(Value::as_str) {
                call.1.push_str(name);
            }
            if let Some(args) = delta.pointer("/function/arguments").and_then(Value::as_str) {
                call.2.push_str(args);
            }
        }
    }
    calls
}
