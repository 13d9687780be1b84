//! The test harness: boot the gateway from a YAML string on `127.0.0.1:0` next to real peers.

pub mod fake_llm;
pub mod native;
pub mod peers;
pub mod personas;
pub mod process;
mod responses_api;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use mcp_middleware::config;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use fake_llm::{FakeLlm, FakeLlmHandle, Persona, Turn};

/// A gateway running in this process.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// Key the harness helpers send (when the config enables auth).
    pub key: Option<String>,
    /// The state store's URL (by default a SQLite file beside this test's artifact directory).
    pub state_url: String,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), mcp_middleware::app::AppError>>,
}

impl TestApp {
    /// Boots the gateway from `yaml` (env references resolved from `env`, not the process).
    pub async fn spawn_with_env(yaml: &str, env: &[(&str, &str)]) -> Self {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut cfg = config::load_str(yaml, &env).expect("test config is valid");
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        // The built-in tools are on by default; tests opt in by naming `builtin_tools`, so the
        // others see exactly the servers they configure.
        if !yaml.contains("builtin_tools") {
            cfg.mcp_servers.retain(|s| s.name != config::BUILTIN_SERVER);
        }
        // Each test keeps its artifacts in a directory of its own.
        if let config::StoreConfig::Local { dir, .. } = &mut cfg.artifacts.store
            && dir.as_os_str() == "data/artifacts"
        {
            *dir = std::env::temp_dir().join(format!("mcpmw-artifacts-{}", uuid::Uuid::new_v4().simple()));
            // And its state store beside it, as the default would put it.
            if cfg.state.url.expose() == config::default_state_url(std::path::Path::new(config::DEFAULT_ARTIFACT_DIR)) {
                cfg.state.url = config::Secret::new(config::default_state_url(dir));
            }
        }
        let listener = mcp_middleware::app::bind(&cfg).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let state_url = cfg.state.url.expose().to_owned();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(mcp_middleware::app::serve(cfg, listener, shutdown.clone()));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Self { addr, client, key: None, state_url, shutdown, task }
    }

    /// Boots the gateway from `yaml`.
    pub async fn spawn(yaml: &str) -> Self {
        Self::spawn_with_env(yaml, &[]).await
    }

    /// Boots the gateway in front of `llm` with extra YAML appended.
    pub async fn in_front_of(llm: &FakeLlmHandle, extra_yaml: &str) -> Self {
        let yaml = format!("upstream:\n  base_url: ${{UPSTREAM}}\n{extra_yaml}");
        Self::spawn_with_env(&yaml, &[("UPSTREAM", &llm.url)]).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Cancels the server and waits (bounded) for it to drain.
    pub async fn shutdown(self) -> Result<(), mcp_middleware::app::AppError> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("server drained").expect("server task")
    }

    /// Starts shutdown without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// POSTs JSON to `path` (with the harness key, if set).
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.authed(self.client.post(self.url(path))).json(body).send().await.expect("request sent")
    }

    /// GETs `path` (with the harness key, if set).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.authed(self.client.get(self.url(path))).send().await.expect("request sent")
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }
}

/// Reads an SSE response to its end: the `data:` payloads in order.
pub async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    use eventsource_stream::Eventsource;
    let mut events = resp.bytes_stream().eventsource();
    let mut out = Vec::new();
    while let Some(ev) = events.next().await {
        out.push(ev.expect("well-formed SSE").data);
    }
    out
}

/// The JSON chunks of an SSE data list (everything but `[DONE]`).
pub fn chunks(data: &[String]) -> Vec<Value> {
    data.iter().filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).expect("chunk is JSON")).collect()
}

/// Concatenated `delta.content` of a chunk list.
pub fn streamed_text(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect()
}

/// The `data:` payloads of raw SSE text (for tests that read the body byte by byte).
pub fn sse_payloads(raw: &str) -> Vec<String> {
    raw.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_owned).collect()
}

impl TestApp {
    /// Polls `GET /mcp/tools/list` until `pred` holds for the tool names (10 s at most).
    pub async fn wait_for_tools(&self, pred: impl Fn(&[String]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let body: Value = self.get("/mcp/tools/list").await.json().await.unwrap();
            let tools = body["tools"].as_array().cloned().unwrap_or_default();
            let names: Vec<String> = tools.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect();
            if pred(&names) {
                return tools;
            }
            assert!(std::time::Instant::now() < deadline, "tools never matched; last: {names:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /mcp/servers`, as a map from server name to its status object.
    pub async fn servers(&self) -> HashMap<String, Value> {
        let body: Value = self.get("/mcp/servers").await.json().await.unwrap();
        body["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_owned(), s.clone()))
            .collect()
    }

    /// Polls `/mcp/servers` until `server` is in `state` (20 s at most).
    pub async fn wait_for_state(&self, server: &str, state: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.servers().await.remove(server).expect("server is listed");
            if status["state"] == state {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "{server} never became {state}: {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `POST /mcp/tools/call`: status and JSON body.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> (u16, Value) {
        let resp = self.post("/mcp/tools/call", &serde_json::json!({"name": name, "arguments": arguments})).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }
}

/// The text of the first content block of an MCP result.
pub fn first_text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}
