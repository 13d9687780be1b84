//! Prometheus metrics, served as OpenMetrics text at `/metrics`: requests by route and status,
//! upstream latency, model rounds per chat request, tool calls by server, tool and outcome with
//! their latency, artifacts stored; MCP server state, restarts, the catalog size, requests waiting
//! for a person and accounts connected to per-user servers are read at scrape time. One registry for the process ([`metrics`]); recording is lock-free.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route (`/v1/chat/completions`, `/mcp/tools/call` …; `unmatched` otherwise):
    /// one of the router's patterns, kept once for the process (see [`route_label`]).
    pub route: &'static str,
    /// The status code.
    pub status: u16,
}

/// `route` as a label that lives for the process: route patterns are a fixed set (the router's),
/// so each is kept once and no request allocates its label.
pub fn route_label(route: &str) -> &'static str {
    static SEEN: std::sync::OnceLock<parking_lot::RwLock<std::collections::HashSet<&'static str>>> =
        std::sync::OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(known) = seen.read().get(route) {
        return known;
    }
    let mut seen = seen.write();
    match seen.get(route) {
        Some(known) => known,
        None => {
            let kept: &'static str = Box::leak(route.into());
            seen.insert(kept);
            kept
        }
    }
}

/// Labels of a tool call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    /// MCP server.
    pub server: String,
    /// Exposed tool name.
    pub tool: String,
    /// `ok`, `error` (the tool or its server failed) or `refused` (not run).
    pub outcome: String,
}

/// Labels of one MCP server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// MCP server.
    pub server: String,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests served.
    pub requests: Family<RequestLabels, Counter>,
    /// Time until the upstream's response head, in seconds.
    pub upstream_latency: Histogram,
    /// Model rounds per chat request that ran the tool loop.
    pub rounds: Histogram,
    /// Tools of ours offered per chat request.
    pub tools_offered: Histogram,
    /// Chat requests whose tools were ranked (more allowed than fit).
    pub ranked_requests: Counter,
    /// Chat loops parked to wait for the user (approval, an account to connect).
    pub parked: Counter,
    /// Tool calls.
    pub tool_calls: Family<ToolLabels, Counter>,
    /// Tool call duration, in seconds.
    pub tool_latency: Family<ToolLabels, Histogram, fn() -> Histogram>,
    /// Artifacts stored.
    pub artifacts_stored: Counter,
    /// 1 while an MCP server is connected.
    pub server_up: Family<ServerLabels, Gauge>,
    /// Reconnections of an MCP server since start.
    pub server_restarts: Family<ServerLabels, Gauge>,
    /// Tools in the catalog.
    pub catalog_tools: Gauge,
    /// Tool definitions (description or schema) a server changed after it first listed them.
    pub tool_definition_changes: Family<ServerLabels, Counter>,
    /// Requests waiting for a person now (approvals, questions, accounts to connect), all
    /// replicas together (read from the state store when scraped).
    pub pending_requests: Gauge,
    /// Accounts connected to each `per_user` OAuth server (read from the state store when
    /// scraped; one label per configured server).
    pub connected_accounts: Family<ServerLabels, Gauge>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("mcp_middleware");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served, by route and status", requests.clone());
        let upstream_latency = latency();
        registry.register(
            "upstream_latency_seconds",
            "Time until the upstream model gateway's response head",
            upstream_latency.clone(),
        );
        let rounds = Histogram::new([1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 20.0]);
        registry.register("chat_rounds", "Model rounds per chat request that ran the tool loop", rounds.clone());
        let tools_offered = Histogram::new([0.0, 8.0, 16.0, 32.0, 64.0, 96.0, 128.0]);
        registry.register("tools_offered", "Tools of ours offered per chat request", tools_offered.clone());
        let ranked_requests = Counter::default();
        registry.register("ranked_requests", "Chat requests whose tools were ranked to fit", ranked_requests.clone());
        let parked = Counter::default();
        registry.register("parked_loops", "Chat loops parked to wait for the user's answer", parked.clone());
        let tool_calls = Family::<ToolLabels, Counter>::default();
        registry.register("tool_calls", "Tool calls, by server, tool and outcome", tool_calls.clone());
        let tool_latency = Family::<ToolLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register("tool_call_duration_seconds", "Tool call duration", tool_latency.clone());
        let artifacts_stored = Counter::default();
        registry.register("artifacts_stored", "Artifacts stored (tool output become links)", artifacts_stored.clone());
        let server_up = Family::<ServerLabels, Gauge>::default();
        registry.register("mcp_server_up", "1 while an MCP server is connected", server_up.clone());
        let server_restarts = Family::<ServerLabels, Gauge>::default();
        registry.register("mcp_server_restarts", "Reconnections of an MCP server since start", server_restarts.clone());
        let catalog_tools = Gauge::default();
        registry.register("catalog_tools", "Tools in the catalog", catalog_tools.clone());
        let tool_definition_changes = Family::<ServerLabels, Counter>::default();
        registry.register(
            "mcp_tool_definition_changes",
            "Tools whose description or schema changed after the server first listed them, or that appeared later",
            tool_definition_changes.clone(),
        );
        let pending_requests = Gauge::default();
        registry.register(
            "pending_requests",
            "Chat requests waiting for a person (approval, question, account), all replicas",
            pending_requests.clone(),
        );
        let connected_accounts = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "connected_accounts",
            "Accounts connected to a per-user OAuth MCP server",
            connected_accounts.clone(),
        );
        Self {
            registry,
            requests,
            upstream_latency,
            rounds,
            tools_offered,
            ranked_requests,
            parked,
            tool_calls,
            tool_latency,
            artifacts_stored,
            server_up,
            server_restarts,
            catalog_tools,
            tool_definition_changes,
            pending_requests,
            connected_accounts,
        }
    }

    /// Counts a finished tool call.
    pub fn tool_call(&self, server: &str, tool: &str, outcome: &str, took: Duration) {
        let labels = ToolLabels { server: server.to_owned(), tool: tool.to_owned(), outcome: outcome.to_owned() };
        self.tool_latency.get_or_create(&labels).observe(took.as_secs_f64());
        self.tool_calls.get_or_create(&labels).inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}
