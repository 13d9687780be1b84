//! OpenTelemetry traces: the real binary exports to an OTLP/HTTP receiver that decodes what it
//! gets with the official protobuf definitions (`opentelemetry-proto`); the trace context goes to
//! the upstream as `traceparent` and to the MCP server in the request's `_meta`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::common::fake_llm::{COMPLETION_TOKENS, FakeLlm, FakeLlmHandle, PROMPT_TOKENS};
use crate::common::process::GatewayProcess;

const TEST_SERVER: &str = env!("CARGO_BIN_EXE_mcp-test-server");
/// The client's own trace: every span of the request belongs to it.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP receiver on loopback: the spans of every `/v1/traces` request, decoded.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    content_types: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let content_types = Arc::new(Mutex::new(Vec::new()));
        let (sink, types) = (spans.clone(), content_types.clone());
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let (sink, types) = (sink.clone(), types.clone());
                async move {
                    let kind = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    types.lock().unwrap().push(kind.to_owned());
                    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
                    let mut sink = sink.lock().unwrap();
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            // The test's own polling of the catalog is not what it looks at.
                            sink.extend(scope.spans.into_iter().filter(|s| s.name != "GET /mcp/tools/list"));
                        }
                    }
                    ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, spans, content_types }
    }

    /// Waits until `n` spans arrived (the gateway sends a batch every 100 ms in these tests).
    async fn wait_for(&self, n: usize) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if spans.len() >= n || tokio::time::Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn config(llm: &FakeLlmHandle, telemetry: &str) -> String {
    format!(
        "upstream:\n  base_url: {}\n{telemetry}builtin_tools:\n  enabled: false\n\
         mcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n",
        llm.url
    )
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> &'a str {
    match attribute(span, key) {
        Some(AnyValue::StringValue(s)) => s,
        other => panic!("{}: {key} is {other:?}", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attribute(span, key) {
        Some(AnyValue::IntValue(i)) => *i,
        other => panic!("{}: {key} is {other:?}", span.name),
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// `00-<trace>-<span>-<flags>` → (trace, span), lower-case hex.
fn traceparent(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

async fn chat(gateway: &GatewayProcess, parent: Option<&str>) -> Value {
    let mut request = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "what does the server see?"}]}));
    if let Some(parent) = parent {
        request = request.header("traceparent", parent);
    }
    let resp = request.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_two_round_chat_with_one_tool_call_is_one_trace_continuing_the_clients() {
    let receiver = Receiver::start().await;
    let llm = FakeLlm::new()
        .tool_call("ts__headers", json!({"meta": true}))
        .text("It saw a trace.")
        .tool_call("ts__headers", json!({"meta": true}))
        .text("Streamed.")
        .start()
        .await;
    let telemetry =
        format!("telemetry:\n  otlp:\n    endpoint: {}\n    service_name: gateway-under-test\n", receiver.url);
    let gateway = GatewayProcess::spawn(&config(&llm, &telemetry), &[("OTEL_BSP_SCHEDULE_DELAY", "100")]).await;
    gateway.wait_for_tool(None, "ts__headers").await;

    let answer = chat(&gateway, Some(&format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))).await;
    let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.ends_with("It saw a trace."), "{content}");
    let spans = receiver.wait_for(5).await;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(spans.len(), 5, "{names:?}");
    assert!(receiver.content_types.lock().unwrap().iter().all(|t| t == "application/x-protobuf"));

    // One trace, the client's.
    for span in &spans {
        assert_eq!(hex(&span.trace_id), CLIENT_TRACE, "{}", span.name);
    }
    let server = named(&spans, "POST /v1/chat/completions");
    let [server] = server.as_slice() else { panic!("{names:?}") };
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN, "the server span continues the caller's");
    assert_eq!(text(server, "http.route"), "/v1/chat/completions");
    assert_eq!(int(server, "http.response.status_code"), 200);

    // Two model rounds under the request, with the model's usage.
    let rounds = named(&spans, "chat m");
    assert_eq!(rounds.len(), 2, "{names:?}");
    for round in &rounds {
        assert_eq!(round.kind, SpanKind::Client as i32);
        assert_eq!(round.parent_span_id, server.span_id, "a round is a child of the request");
        assert_eq!(text(round, "gen_ai.operation.name"), "chat");
        assert_eq!(text(round, "gen_ai.request.model"), "m");
        assert_eq!(int(round, "gen_ai.usage.input_tokens"), PROMPT_TOKENS as i64);
        assert_eq!(int(round, "gen_ai.usage.output_tokens"), COMPLETION_TOKENS as i64);
    }

    // One tool run under the request, and its MCP request under the run.
    let tool = named(&spans, "execute_tool ts__headers");
    let [tool] = tool.as_slice() else { panic!("{names:?}") };
    assert_eq!(tool.kind, SpanKind::Internal as i32);
    assert_eq!(tool.parent_span_id, server.span_id);
    assert_eq!(text(tool, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(text(tool, "gen_ai.tool.name"), "ts__headers");
    let sent = llm.chat_requests();
    let call_id = sent[1]["messages"][1]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(text(tool, "gen_ai.tool.call.id"), call_id);
    let mcp = named(&spans, "tools/call headers");
    let [mcp] = mcp.as_slice() else { panic!("{names:?}") };
    assert_eq!(mcp.kind, SpanKind::Client as i32);
    assert_eq!(mcp.parent_span_id, tool.span_id);
    assert_eq!(text(mcp, "mcp.method.name"), "tools/call");
    assert_eq!(text(mcp, "network.transport"), "pipe");
    let ordered = rounds_in_order(&rounds);
    assert!(ordered[0].end_time_unix_nano <= tool.start_time_unix_nano, "the tool ran after the first round");
    assert!(tool.end_time_unix_nano <= ordered[1].start_time_unix_nano, "and before the second");

    // The MCP server received the MCP request's context in `_meta` (its answer went to the model).
    let tool_message = sent[1]["messages"][2]["content"].as_str().unwrap();
    let meta: Value = serde_json::from_str(tool_message).unwrap();
    let (trace, parent) = traceparent(meta["traceparent"].as_str().unwrap());
    assert_eq!((trace.as_str(), parent.as_str()), (CLIENT_TRACE, hex(&mcp.span_id).as_str()));

    // Each upstream request carried its round's context.
    let upstream: Vec<String> = llm
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .map(|r| r.headers.get("traceparent").unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(upstream.len(), 2);
    for (sent, round) in upstream.iter().zip(&ordered) {
        assert_eq!(traceparent(sent), (CLIENT_TRACE.to_owned(), hex(&round.span_id)));
    }
    // A streamed chat (the loop runs in a task of its own) without a caller's trace: a new
    // trace, its rounds and tool run still children of its request.
    let resp = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "again, streamed"}]}))
        .send()
        .await
        .unwrap();
    let said = crate::common::streamed_text(&crate::common::chunks(&crate::common::sse_data(resp).await));
    assert!(said.ends_with("Streamed."), "{said}");
    let all = receiver.wait_for(10).await;
    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(all.len(), 10, "{names:?}");
    let streamed: Vec<&Span> = all.iter().filter(|s| hex(&s.trace_id) != CLIENT_TRACE).collect();
    assert_eq!(streamed.len(), 5, "{names:?}");
    let root = streamed.iter().find(|s| s.name == "POST /v1/chat/completions").expect("the request's span");
    assert!(root.parent_span_id.is_empty(), "a new trace starts at the request");
    for span in streamed.iter().filter(|s| s.name == "chat m" || s.name.starts_with("execute_tool")) {
        assert_eq!(span.parent_span_id, root.span_id, "{} belongs to its request", span.name);
    }
    let mcp = streamed.iter().find(|s| s.name == "tools/call headers").unwrap();
    let run = streamed.iter().find(|s| s.name == "execute_tool ts__headers").unwrap();
    assert_eq!(mcp.parent_span_id, run.span_id);

    // A facade client's call (served in rmcp's session worker) joins its HTTP request's trace:
    // `POST /mcp` → `tools/call ts__echo` (server) → `execute_tool ts__echo` → `tools/call echo`.
    let facade_trace = "0af7651916cd43dd8448eb211c80319c";
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("traceparent", format!("00-{facade_trace}-b7ad6b7169203331-01").parse().unwrap());
    let client = reqwest::Client::builder().default_headers(headers).build().unwrap();
    let config = StreamableHttpClientTransportConfig::with_uri(gateway.url("/mcp"));
    let facade = ().serve(StreamableHttpClientTransport::with_client(client, config)).await.unwrap();
    let mut params = CallToolRequestParams::new("ts__echo".to_owned());
    params.arguments = json!({"text": "traced"}).as_object().cloned();
    facade.peer().call_tool(params).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let traced = loop {
        let all = receiver.spans.lock().unwrap().clone();
        let traced: Vec<Span> = all.into_iter().filter(|s| hex(&s.trace_id) == facade_trace).collect();
        if traced.iter().any(|s| s.name == "tools/call echo") || tokio::time::Instant::now() > deadline {
            break traced;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<&str> = traced.iter().map(|s| s.name.as_str()).collect();
    let find = |name: &str, kind: SpanKind| {
        traced.iter().find(|s| s.name == name && s.kind == kind as i32).unwrap_or_else(|| panic!("{name}: {names:?}"))
    };
    let served = find("tools/call ts__echo", SpanKind::Server);
    let post = traced.iter().find(|s| s.span_id == served.parent_span_id).unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!((post.name.as_str(), post.kind), ("POST /mcp", SpanKind::Server as i32));
    assert_eq!(hex(&post.parent_span_id), "b7ad6b7169203331", "the client's span");
    let run = find("execute_tool ts__echo", SpanKind::Internal);
    assert_eq!(run.parent_span_id, served.span_id);
    assert_eq!(find("tools/call echo", SpanKind::Client).parent_span_id, run.span_id);
    facade.cancel().await.unwrap();

    // Each round reports its own response id.
    let ids: Vec<&str> = ordered.iter().map(|r| text(r, "gen_ai.response.id")).collect();
    assert_ne!(ids[0], ids[1], "{ids:?}");

    // Nothing of the conversation is in the spans (no arguments, results or messages).
    for span in &spans {
        for kv in &span.attributes {
            let shown = format!("{:?}", kv.value);
            assert!(!shown.contains("what does the server see") && !shown.contains("traceparent"), "{}", kv.key);
        }
    }
    gateway.stop().await;
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_the_clients_context_passes_unchanged() {
    let receiver = Receiver::start().await;
    let llm = FakeLlm::new().text("Plain.").start().await;
    // The standard switch wins over the configured endpoint.
    let telemetry = format!("telemetry:\n  otlp:\n    endpoint: {}\n", receiver.url);
    let gateway = GatewayProcess::spawn(
        &config(&llm, &telemetry),
        &[("OTEL_SDK_DISABLED", "true"), ("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await;
    let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    chat(&gateway, Some(&parent)).await;
    let sent = llm.requests();
    let forwarded = sent.iter().find(|r| r.path.ends_with("/chat/completions")).unwrap();
    assert_eq!(forwarded.headers.get("traceparent").unwrap(), parent.as_str());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(receiver.spans.lock().unwrap().is_empty());
    gateway.stop().await;
}

/// The rounds by start time.
fn rounds_in_order<'a>(rounds: &[&'a Span]) -> Vec<&'a Span> {
    let mut sorted = rounds.to_vec();
    sorted.sort_by_key(|s| s.start_time_unix_nano);
    sorted
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
