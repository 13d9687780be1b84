//! The performance targets, measured against baselines taken in the same run (never a timed
//! test): `cargo bench --bench overhead`.
//!
//! | measure                         | baseline                                   | target        |
//! |---------------------------------|--------------------------------------------|---------------|
//! | pass-through chat, p50          | the same request sent straight upstream    | +≤ 0.1 ms     |
//! | one tool round, p50             | 2 upstream requests + 1 direct MCP call    | +≤ 0.3 ms     |
//! | idle RSS                        | —                                          | ≤ 20 MB       |
//! | RSS with 1,000 open streams     | idle RSS                                   | ≤ 150 MB      |
//!
//! The gateway runs as its release binary with a config file, the upstream is a minimal
//! OpenAI-compatible server in this process, the MCP server is our `mcp-test-server` over stdio.
// A benchmark: a failed assumption ends the run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, clippy::unreachable)]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

const GATEWAY: &str = env!("CARGO_BIN_EXE_mcp-middleware");
const TEST_SERVER: &str = env!("CARGO_BIN_EXE_mcp-test-server");
const SEQUENTIAL: usize = 2000;
const STREAMS: usize = 1000;

fn completion(message: Value) -> Value {
    json!({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench",
           "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
}

fn sse(frames: Vec<String>, gap: Duration) -> Response {
    let body = futures_util::stream::iter(frames).then(move |f| async move {
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        Ok::<_, Infallible>(Bytes::from(f))
    });
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(body)).unwrap()
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

/// The scripted upstream: calls `ts__echo` once when offered it, answers otherwise; a model
/// named `slow` streams 20 chunks 100 ms apart.
async fn upstream(Json(body): Json<Value>) -> Response {
    let stream = body["stream"] == true;
    let offered = body["tools"].as_array().is_some_and(|t| t.iter().any(|t| t["function"]["name"] == "ts__echo"));
    let after_tool = body["messages"].as_array().and_then(|m| m.last()).is_some_and(|m| m["role"] == "tool");
    let wants_tool = offered && !after_tool;
    if body["model"] == "slow" {
        let frames =
            (0..20).map(|i| chunk(json!({"content": format!("{i} ")}), None)).chain(["data: [DONE]\n\n".into()]);
        return sse(frames.collect(), Duration::from_millis(100));
    }
    if !stream {
        return Json(completion(json!({"role": "assistant", "content": "hello"}))).into_response();
    }
    let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    if wants_tool {
        frames.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
            "function": {"name": "ts__echo", "arguments": "{\"text\":"}}]}),
            None,
        ));
        frames.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"hi\"}"}}]}), None));
        frames.push(chunk(json!({}), Some("tool_calls")));
    } else {
        frames.push(chunk(json!({"content": "hello"}), None));
        frames.push(chunk(json!({}), Some("stop")));
    }
    frames.push(format!(
        "data: {}\n\n",
        json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    ));
    frames.push("data: [DONE]\n\n".into());
    sse(frames, Duration::ZERO)
}

struct Gateway {
    child: std::process::Child,
    url: String,
}

impl Gateway {
    async fn start(upstream: &str, servers: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("mcpmw-bench-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.yaml");
        let yaml = format!(
            "listen: 127.0.0.1:{port}\nupstream:\n  base_url: {upstream}\nlogging:\n  level: warn\nbuiltin_tools:\n  enabled: false\nmcpServers:{servers}\n"
        );
        std::fs::write(&config, yaml).unwrap();
        let child = std::process::Command::new(GATEWAY).arg("--config").arg(&config).spawn().expect("gateway starts");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(format!("{url}/health/liveliness")).send().await.is_err() {
            assert!(Instant::now() < deadline, "gateway never came up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, url }
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        kb / 1024.0
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn time_requests(client: &reqwest::Client, url: &str, body: &Value, n: usize) -> Duration {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let resp = client.post(url).json(body).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.bytes().await.unwrap();
        samples.push(started.elapsed());
    }
    p50(samples)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let _ = rlimit::increase_nofile_limit(16_384);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/v1/chat/completions", post(upstream));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let upstream_url = format!("http://{addr}/v1");
    let client = reqwest::Client::builder().pool_max_idle_per_host(2048).build().unwrap();

    let plain = Gateway::start(&upstream_url, " {}").await;
    let idle_rss = plain.rss_mb();
    let servers = format!("\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]");
    let tooled = Gateway::start(&upstream_url, &servers).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tools: Value =
            client.get(format!("{}/mcp/tools/list", tooled.url)).send().await.unwrap().json().await.unwrap();
        if tools["tools"].as_array().is_some_and(|t| !t.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the test server's tools were never listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let chat = json!({"model": "bench", "messages": [{"role": "user", "content": "hi"}]});
    let direct_url = format!("{upstream_url}/chat/completions");
    // Warm up connections and caches on both paths.
    time_requests(&client, &direct_url, &chat, 200).await;
    time_requests(&client, &format!("{}/v1/chat/completions", plain.url), &chat, 200).await;
    let direct = time_requests(&client, &direct_url, &chat, SEQUENTIAL).await;
    let via = time_requests(&client, &format!("{}/v1/chat/completions", plain.url), &chat, SEQUENTIAL).await;

    // One tool round through the gateway vs its parts done directly.
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let direct_stream = time_requests(&client, &direct_url, &streamed, SEQUENTIAL / 4).await;
    let mut cmd = tokio::process::Command::new(TEST_SERVER);
    cmd.arg("stdio");
    let mcp = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
    let mcp = ().serve(mcp).await.unwrap();
    let mut mcp_samples = Vec::new();
    for _ in 0..SEQUENTIAL / 4 {
        let mut params = CallToolRequestParams::new("echo");
        params.arguments = json!({"text": "hi"}).as_object().cloned();
        let started = Instant::now();
        mcp.call_tool(params).await.unwrap();
        mcp_samples.push(started.elapsed());
    }
    let direct_mcp = p50(mcp_samples);
    let tool_url = format!("{}/v1/chat/completions", tooled.url);
    time_requests(&client, &tool_url, &chat, 50).await;
    let via_tool = time_requests(&client, &tool_url, &chat, SEQUENTIAL / 4).await;
    let tool_baseline = direct_stream * 2 + direct_mcp;

    // 1,000 streams open at once.
    let slow = json!({"model": "slow", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let url = format!("{}/v1/chat/completions", plain.url);
    let started = Instant::now();
    let streams = (0..STREAMS).map(|_| {
        let (client, url, slow) = (client.clone(), url.clone(), slow.clone());
        tokio::spawn(async move {
            let resp = client.post(url).json(&slow).send().await.unwrap();
            let text = resp.text().await.unwrap();
            assert!(text.contains("[DONE]"));
        })
    });
    let handles: Vec<_> = streams.collect();
    let mut peak = 0.0f64;
    while started.elapsed() < Duration::from_millis(1800) {
        peak = peak.max(plain.rss_mb());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let completed = futures_util::future::join_all(handles).await.into_iter().filter(Result::is_ok).count();

    let added_pass = ms(via) - ms(direct);
    let added_tool = ms(via_tool) - ms(tool_baseline);
    println!("\nmcp-middleware overhead (release binary, loopback, p50 of sequential requests)\n");
    println!("{:<34} {:>12} {:>12} {:>9} {:>10} {:>8}", "measure", "baseline", "gateway", "ratio", "added", "target");
    println!(
        "{:<34} {:>9.3} ms {:>9.3} ms {:>8.2}x {:>7.3} ms {:>8}",
        "pass-through chat",
        ms(direct),
        ms(via),
        ms(via) / ms(direct),
        added_pass,
        "0.1 ms"
    );
    println!(
        "{:<34} {:>9.3} ms {:>9.3} ms {:>8.2}x {:>7.3} ms {:>8}",
        "one tool round (2 LLM + 1 MCP)",
        ms(tool_baseline),
        ms(via_tool),
        ms(via_tool) / ms(tool_baseline),
        added_tool,
        "0.3 ms"
    );
    println!("{:<34} {:>12} {:>9.1} MB {:>9} {:>10} {:>8}", "idle RSS", "-", idle_rss, "-", "-", "20 MB");
    println!(
        "{:<34} {:>9.1} MB {:>9.1} MB {:>8.2}x {:>7.1} MB {:>8}",
        format!("RSS, {completed}/{STREAMS} streams open"),
        idle_rss,
        peak,
        peak / idle_rss,
        peak - idle_rss,
        "150 MB"
    );
    println!(
        "\n(direct MCP echo call p50: {:.3} ms; direct streamed chat p50: {:.3} ms)",
        ms(direct_mcp),
        ms(direct_stream)
    );
}
