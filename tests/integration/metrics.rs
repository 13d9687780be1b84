//! `/metrics`: Prometheus (OpenMetrics) text that counts what happened — requests by route and
//! status, a tool call by server, tool and outcome, rounds, MCP server state, the catalog size.

use serde_json::json;

use crate::common::peers::TEST_SERVER;
use crate::common::{FakeLlm, TestApp};

/// Parses the exposition: `name{labels} value` samples, `#` comments, a final `# EOF`.
fn samples(text: &str) -> Vec<(String, f64)> {
    assert_eq!(text.lines().last(), Some("# EOF"), "OpenMetrics text ends with # EOF");
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unclosed labels: {line}");
        }
        out.push((series.to_owned(), value));
    }
    out
}

/// `/metrics` of `base` (`http://host:port`) as `key`, parsed.
pub async fn scrape(base: &str, key: &str) -> Vec<(String, f64)> {
    let resp = reqwest::Client::new().get(format!("{base}/metrics")).bearer_auth(key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    samples(&resp.text().await.unwrap())
}

pub fn value(samples: &[(String, f64)], series: &str) -> f64 {
    samples.iter().find(|(s, _)| s == series).map_or(0.0, |(_, v)| *v)
}

/// Scrapes until `series` is one `ok` takes (10 s at most), and returns it. Gauges counted from
/// a store at scrape time are set in the one registry that every gateway of this test binary
/// shares, and keep their last figure when the store is slow.
pub async fn value_when(base: &str, key: &str, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    // Taken when two scrapes in a row agree, so one scrape that read another gateway's figure
    // does not pass.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = None;
    loop {
        let now = value(&scrape(base, key).await, series);
        if (ok(now) && last == Some(now)) || std::time::Instant::now() > deadline {
            return now;
        }
        last = Some(now);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_parse_and_count_a_tool_call() {
    let llm = FakeLlm::new().tool_call("metr__echo", json!({"text": "counted"})).text("Done.").start().await;
    let yaml = format!("mcpServers:\n  metr:\n    command: {TEST_SERVER}\n    args: [stdio]\n");
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "metr__echo")).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "echo"}]});
    assert_eq!(app.post("/v1/chat/completions", &chat).await.status(), 200);
    let (status, _) = app.call_tool("metr__nope", json!({})).await;
    assert_eq!(status, 404);

    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let all = samples(&resp.text().await.unwrap());
    let ok = r#"mcp_middleware_tool_calls_total{server="metr",tool="metr__echo",outcome="ok"}"#;
    assert_eq!(value(&all, ok), 1.0, "one tool call counted");
    let timed = r#"mcp_middleware_tool_call_duration_seconds_count{server="metr",tool="metr__echo",outcome="ok"}"#;
    assert_eq!(value(&all, timed), 1.0);
    let chats = r#"mcp_middleware_http_requests_total{route="/v1/chat/completions",status="200"}"#;
    assert!(value(&all, chats) >= 1.0);
    let missing = r#"mcp_middleware_http_requests_total{route="/mcp/tools/call",status="404"}"#;
    assert!(value(&all, missing) >= 1.0);
    assert!(value(&all, "mcp_middleware_chat_rounds_count") >= 1.0);
    assert!(value(&all, "mcp_middleware_upstream_latency_seconds_count") >= 2.0);
    assert_eq!(value(&all, r#"mcp_middleware_mcp_server_up{server="metr"}"#), 1.0);
    assert!(value(&all, "mcp_middleware_catalog_tools") >= 1.0);
}
