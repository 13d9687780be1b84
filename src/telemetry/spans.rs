//! The exported spans and their attributes, in one place: the OpenTelemetry HTTP, GenAI and MCP
//! semantic conventions as this gateway fills them.
//!
//! | span | kind | made in |
//! |---|---|---|
//! | `POST /v1/chat/completions` (`{method} {route}`) | server | `http::front`, every request |
//! | `chat {model}` | client | each model round, and a passed-through chat |
//! | `execute_tool {tool}` | internal | `agent::invoke`, every tool run, whatever the surface |
//! | `tools/call {tool}` | client | `mcp::server`, the MCP request itself |
//! | `tools/call {tool}` | server | `agent::facade`, a call a facade client made (under its `POST /mcp`) |
//!
//! Each returns `Span::none()` when traces are off ([`enabled`]), before any attribute is
//! computed. Only names, ids, counts and outcomes are recorded: no arguments, results, messages
//! or headers, so nothing a log would have to scrub is exported. The W3C `traceparent` (and
//! `tracestate`) of a span is written into the upstream request's headers ([`inject_headers`])
//! and into an MCP request's `_meta` ([`inject_meta`]); an incoming one is continued
//! ([`server`]).

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::Status;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::otel::TARGET;
pub use super::otel::enabled;

/// Longest model name recorded (it is the client's text).
const MAX_MODEL_CHARS: usize = 128;

/// The server span of one HTTP request, continuing the caller's trace when its `traceparent`
/// is valid. `route` is the router's pattern (a bounded set), not the path.
pub fn server(method: &http::Method, route: &str, headers: &http::HeaderMap) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(target: TARGET, "request", otel.name = format!("{method} {route}"),
        otel.kind = "server", http.request.method = %method, http.route = route);
    let parent = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    if opentelemetry::trace::TraceContextExt::span(&parent).span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// An exported request span's context, carried in the request's extensions to the work done
/// for it in other tasks (the MCP facade's session workers).
#[derive(Clone)]
pub struct RequestTrace(opentelemetry::Context);

/// The context of a [`server`] span, to carry in its request (none when traces are off).
pub fn request_trace(span: &Span) -> Option<RequestTrace> {
    (enabled() && !span.is_none()).then(|| RequestTrace(span.context()))
}

/// The span of an MCP request the facade serves (`tools/call {tool}`, server kind), a child of
/// the HTTP request that carried it (its [`RequestTrace`]).
pub fn facade_call(tool: &str, request: Option<&RequestTrace>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(target: TARGET, "mcp_request", otel.name = format!("tools/call {tool}"),
        otel.kind = "server", mcp.method.name = "tools/call", gen_ai.tool.name = tool);
    if let Some(RequestTrace(parent)) = request {
        let _ = span.set_parent(parent.clone());
    }
    span
}

/// Records the response's status on a [`server`] span (a 5xx is an error).
pub fn record_status(span: &Span, status: http::StatusCode) {
    if !enabled() {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_attribute("error.type", status.as_str().to_owned());
        span.set_status(Status::error(""));
    }
}

/// The span of one model round (`gen_ai.operation.name` `chat`), sent to `upstream`
/// (`host:port` of the model gateway).
pub fn chat(model: &str, upstream: &url::Url) -> Span {
    if !enabled() {
        return Span::none();
    }
    let model: String = model.chars().take(MAX_MODEL_CHARS).collect();
    let span = tracing::info_span!(target: TARGET, "chat", otel.name = format!("chat {model}"), otel.kind = "client",
        gen_ai.operation.name = "chat", gen_ai.provider.name = "openai", gen_ai.request.model = model.as_str());
    if let Some(host) = upstream.host_str() {
        span.set_attribute("server.address", host.to_owned());
    }
    if let Some(port) = upstream.port_or_known_default() {
        span.set_attribute("server.port", i64::from(port));
    }
    span
}

/// Records what a model round answered: its model, id, finish reasons and token usage (an
/// OpenAI `usage` object).
pub fn record_answer(
    span: &Span,
    model: Option<&str>,
    id: Option<&str>,
    finish_reasons: &[String],
    usage: Option<&serde_json::Value>,
) {
    if !enabled() {
        return;
    }
    if let Some(model) = model.filter(|m| !m.is_empty()) {
        span.set_attribute("gen_ai.response.model", model.chars().take(MAX_MODEL_CHARS).collect::<String>());
    }
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        span.set_attribute("gen_ai.response.id", id.chars().take(MAX_MODEL_CHARS).collect::<String>());
    }
    if !finish_reasons.is_empty() {
        let reasons: Vec<opentelemetry::StringValue> =
            finish_reasons.iter().take(8).map(|r| r.chars().take(32).collect::<String>().into()).collect();
        span.set_attribute("gen_ai.response.finish_reasons", opentelemetry::Value::Array(reasons.into()));
    }
    let count = |key: &str| usage.and_then(|u| u.get(key)).and_then(serde_json::Value::as_i64);
    if let Some(input) = count("prompt_tokens").or_else(|| count("input_tokens")) {
        span.set_attribute("gen_ai.usage.input_tokens", input);
    }
    if let Some(output) = count("completion_tokens").or_else(|| count("output_tokens")) {
        span.set_attribute("gen_ai.usage.output_tokens", output);
    }
}

/// Marks a span failed with a short, fixed `kind` (never a message: those may quote input).
pub fn record_error(span: &Span, kind: &'static str) {
    if !enabled() {
        return;
    }
    span.set_attribute("error.type", kind);
    span.set_status(Status::error(""));
}

/// The span of one tool run (`execute_tool`), whatever asked for it: `tool` is the exposed
/// name, `call_id` the model's id of the call when a model made it.
pub fn tool(tool: &str, server: &str, call_id: Option<&str>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(target: TARGET, "execute_tool", otel.name = format!("execute_tool {tool}"),
        otel.kind = "internal", gen_ai.operation.name = "execute_tool", gen_ai.tool.name = tool,
        gen_ai.tool.type = "extension", mcp_middleware.server = server);
    if let Some(id) = call_id {
        span.set_attribute("gen_ai.tool.call.id", id.chars().take(MAX_MODEL_CHARS).collect::<String>());
    }
    span
}

/// The span of an MCP `tools/call` request to `server` (`tool` is the server's own name for it)
/// over `transport`.
pub fn mcp_call(tool: &str, server: &str, transport: &crate::config::McpTransportConfig) -> Span {
    use crate::config::McpTransportConfig as T;
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(target: TARGET, "mcp", otel.name = format!("tools/call {tool}"), otel.kind = "client",
        mcp.method.name = "tools/call", gen_ai.operation.name = "execute_tool", gen_ai.tool.name = tool,
        mcp_middleware.server = server);
    match transport {
        T::StreamableHttp { url, .. } | T::Sse { url, .. } => {
            span.set_attribute("network.transport", "tcp");
            span.set_attribute("network.protocol.name", "http");
            if let Some(host) = url.host_str() {
                span.set_attribute("server.address", host.to_owned());
            }
            if let Some(port) = url.port_or_known_default() {
                span.set_attribute("server.port", i64::from(port));
            }
        }
        T::Stdio { .. } => span.set_attribute("network.transport", "pipe"),
        T::InProcess => {}
    }
    span
}

/// Writes `span`'s trace context into the headers of a request it makes (replacing the
/// client's own `traceparent`, whose trace the span continues).
pub fn inject_headers(span: &Span, headers: &mut http::HeaderMap) {
    if !enabled() {
        return;
    }
    let context = span.context();
    TraceContextPropagator::new().inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers));
    if headers.get("tracestate").is_some_and(|v| v.is_empty()) {
        headers.remove("tracestate");
    }
}

/// Writes `span`'s trace context into an MCP request's `_meta` (`traceparent`, `tracestate`).
pub fn inject_meta(span: &Span, meta: &mut Option<serde_json::Map<String, serde_json::Value>>) {
    if !enabled() {
        return;
    }
    let context = span.context();
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    if carrier.is_empty() {
        return;
    }
    let meta = meta.get_or_insert_with(serde_json::Map::new);
    // A caller's `tracestate` belongs to its own `traceparent`, which is replaced.
    meta.remove("tracestate");
    for (key, value) in carrier.into_iter().filter(|(_, v)| !v.is_empty()) {
        meta.insert(key, serde_json::Value::String(value));
    }
}

/// Spawns `task` in the current spans: the log's (its lines keep the request id) and, when
/// traces are on, the exported one (the spans it makes are children of the request's).
pub fn spawn<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = tracing::Instrument::in_current_span(task);
    if enabled() {
        tokio::spawn(opentelemetry::context::FutureExt::with_current_context(task))
    } else {
        tokio::spawn(task)
    }
}
