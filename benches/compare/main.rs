//! The side-by-side benchmark behind `BENCHMARKS.md`: `cargo bench --bench compare` installs what
//! it needs (the pinned LiteLLM in a venv, the npm MCP servers), measures every path in one run
//! and rewrites `BENCHMARKS.md`, each figure beside its target.
//!
//! Paths, each a separate process in front of the same scripted model (`upstream.rs`, its own
//! process too): (a) direct, (b) a minimal hyper proxy (`proxy.rs`), (c) mcp-middleware's release
//! binary, (d) the LiteLLM proxy; for tool rounds, a minimal tool loop (`minimal_loop.rs`) is the
//! floor beside the gateway. The load generator (`load.rs`) is the same for all four.
//! Latency targets are differences and ratios against baselines measured in the same run, never
//! absolute times: this machine is shared and noisy.

// A benchmark: a failed assumption ends the run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, clippy::unreachable)]

mod load;
mod minimal_loop;
#[allow(dead_code)]
#[path = "../../tests/integration/common/peers.rs"]
mod peers;
mod profile;
mod proxy;
mod report;
mod upstream;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use load::{Conn, Samples, Target};
use report::Report;

pub(crate) const GATEWAY: &str = env!("CARGO_BIN_EXE_mcp-middleware");
const TEST_SERVER: &str = env!("CARGO_BIN_EXE_mcp-test-server");
const LITELLM_KEY: &str = "sk-bench-master";
/// What a tool loop's final answer carries (the model's text after a tool, as a JSON string):
/// quoted, so a tool card's `done="true"` does not count as the answer.
const ANSWER: &[u8] = br#""done""#;
pub(crate) const ROLE: &str = "MCPMW_BENCH_ROLE";

fn main() {
    // 10,000 streams hold 20,000 sockets in the gateway: raise the limit for this process and
    // the children it starts (as root the hard limit can grow; otherwise the soft one does).
    let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, 65_536, 65_536);
    let _ = rlimit::increase_nofile_limit(65_536);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match std::env::var(ROLE).as_deref() {
        Ok("upstream") => runtime.block_on(upstream::serve()),
        Ok("proxy") => runtime.block_on(proxy::serve(std::env::var("MCPMW_BENCH_UPSTREAM").unwrap())),
        Ok("loop") => runtime.block_on(minimal_loop::serve(std::env::var("MCPMW_BENCH_UPSTREAM").unwrap())),
        _ => runtime.block_on(run()),
    }
}

/// A child process of this bench binary in another role; killed when dropped.
struct Role {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Role {
    fn start(role: &str, env: &[(&str, String)]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(ROLE, role)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
        Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway's release binary with a generated config; killed when dropped.
struct Gateway {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: peers::TempDir,
}

impl Gateway {
    async fn start(upstream: SocketAddr, servers: &str) -> Self {
        let port = peers::free_port();
        let dir = peers::TempDir::new("mcpmw-bench");
        let config = dir.0.join("config.yaml");
        // `MCPMW_BENCH_EXTRA`: more top-level config for the gateway under test, `\n` for line
        // ends (e.g. `console:\n  enabled: false\n`, to see what the activity trail costs).
        let yaml = format!(
            "listen: 127.0.0.1:{port}\nupstream:\n  base_url: http://{upstream}/v1\nlogging:\n  level: warn\nbuiltin_tools:\n  enabled: false\nartifacts:\n  local:\n    dir: {}\n{}mcpServers:{servers}\n",
            dir.0.join("artifacts").display(),
            std::env::var("MCPMW_BENCH_EXTRA").unwrap_or_default().replace("\\n", "\n")
        );
        std::fs::write(&config, yaml).unwrap();
        let child = std::process::Command::new(GATEWAY).arg("--config").arg(&config).spawn().expect("gateway starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("http://{addr}/health/liveliness")).send().await.is_err() {
            assert!(Instant::now() < deadline, "gateway never came up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, addr, _dir: dir }
    }

    /// Waits until the catalog lists at least `n` tools; returns how many it lists.
    async fn wait_for_tools(&self, n: usize) -> usize {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let resp = client.get(format!("http://{}/mcp/tools/list", self.addr)).send().await.unwrap();
            let tools: Value = resp.json().await.unwrap();
            let count = tools["tools"].as_array().map_or(0, Vec::len);
            if count >= n {
                return count;
            }
            assert!(Instant::now() < deadline, "only {count} of {n} tools were listed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn target(&self, name: &str) -> Target {
        Target { name: name.into(), addr: self.addr, path: "/v1/chat/completions".into(), key: None }
    }

    fn rss_mb(&self) -> f64 {
        rss_mb(self.child.id())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

/// How long choosing among 1,000 tools takes (p50 of 20, ms): for a short question, and for
/// a conversation whose last message is 30 MB.
fn ranking_times() -> (f64, f64) {
    use mcp_middleware::agent::selection::choose;
    use mcp_middleware::config::SelectionConfig;
    use mcp_middleware::mcp::{Catalog, SourceTool};
    let words = ["create", "list", "get", "update", "delete", "search", "issue", "file", "branch", "commit"];
    let tools = (0..1_000).map(|i| {
        let (verb, noun) = (words[i % 6], words[6 + (i / 6) % 4]);
        let schema = json!({"type": "object", "properties": {"id": {"type": "string"}}});
        SourceTool {
            server: format!("server{}", i / 50),
            name: format!("{verb}_{noun}_{i}"),
            description: Some(format!("{verb} a {noun}: returns the {noun} with its fields")),
            input_schema: std::sync::Arc::new(schema.as_object().cloned().unwrap()),
            destructive: false,
            prefix: None,
        }
    });
    let catalog = Catalog::build(tools);
    let pool = catalog.entries().to_vec();
    let config = SelectionConfig {
        max_tools: 64,
        max_tool_bytes: usize::MAX,
        always_rank: true,
        always: vec![],
        find_tools: Some("find_tools".into()),
    };
    let time = |last: &str| {
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "list the open issues"}, {"role": "assistant", "content": "Which?"},
            {"role": "user", "content": last}]});
        let body = body.as_object().cloned().unwrap();
        let mut samples: Vec<f64> = (0..20)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(choose(&catalog, pool.clone(), &body, &config, None));
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    let paste = "search the commit log for this failure: ".repeat(30 * 1024 * 1024 / 40);
    (time("search the commits on this branch"), time(&paste))
}

fn chat(model: &str, stream: bool) -> Bytes {
    Bytes::from(json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).to_string())
}

fn litellm_config(upstream: SocketAddr) -> String {
    let models = ["bench", "ttft"]
        .iter()
        .map(|m| {
            format!(
                "  - model_name: {m}\n    litellm_params:\n      model: openai/{m}\n      api_base: http://{upstream}/v1\n      api_key: sk-upstream\n"
            )
        })
        .collect::<String>();
    format!(
        "model_list:\n{models}general_settings:\n  master_key: {LITELLM_KEY}\nlitellm_settings:\n  drop_params: true\n  telemetry: false\n"
    )
}

/// p50 of direct MCP `tools/call`s to a server started with `cmd`, and a client to reuse.
async fn direct_mcp(
    cmd: tokio::process::Command,
    tool: &str,
    args: Value,
    n: usize,
) -> (Samples, rmcp::service::RunningService<rmcp::RoleClient, ()>) {
    let mcp = ().serve(rmcp::transport::TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = args.as_object().cloned();
        let started = Instant::now();
        mcp.call_tool(params).await.unwrap();
        if i >= 100 {
            samples.push(started.elapsed());
        }
    }
    (Samples::new(samples), mcp)
}

async fn run() {
    let started = Instant::now();
    let mut report = Report::new();
    eprintln!("installing peers (pinned LiteLLM venv, npm MCP servers) when missing…");
    let everything = tokio::task::spawn_blocking(peers::everything).await.unwrap();
    let litellm_bin = tokio::task::spawn_blocking(peers::litellm).await.unwrap();
    report.litellm_version = litellm_version(litellm_bin);

    let upstream = Role::start("upstream", &[]);
    let proxy = Role::start("proxy", &[("MCPMW_BENCH_UPSTREAM", upstream.addr.to_string())]);
    let gateway = Gateway::start(upstream.addr, " {}").await;
    let only = std::env::var("MCPMW_BENCH_ONLY").ok();
    let run_section = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|s| s == name));
    let client = reqwest::Client::new();
    let direct = Target { name: "direct".into(), addr: upstream.addr, path: "/v1/chat/completions".into(), key: None };
    let plain = chat("bench", false);
    let litellm = if run_section("pass") || run_section("ttft") {
        eprintln!("starting LiteLLM…");
        Some(peers::LiteLlm::start(&litellm_config(upstream.addr), LITELLM_KEY).await)
    } else {
        None
    };
    let litellm_addr: SocketAddr = litellm
        .as_ref()
        .map_or("127.0.0.1:9".into(), |l| l.url.clone())
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .parse()
        .unwrap();
    let paths = [
        direct.clone(),
        Target { name: "minimal hyper proxy".into(), addr: proxy.addr, ..direct.clone() },
        gateway.target("mcp-middleware"),
        Target {
            name: format!("LiteLLM {}", report.litellm_version),
            addr: litellm_addr,
            key: Some(LITELLM_KEY.into()),
            ..direct.clone()
        },
    ];

    // Latencies are taken in rounds that visit every path in turn (ten blocks each), so the
    // machine's drift over the section weighs on every path alike: the "added" figures are
    // differences between paths.
    if run_section("pass") {
        eprintln!("pass-through latency (c=1) and throughput (c=16)…");
        let totals =
            interleaved(&paths, &plain, b"hello", 30, 500, Duration::from_millis(600), |(_, totals)| totals).await;
        // Throughput too: four rounds of 1 s (after each block's own 1 s warm-up) per path.
        let mut rps = vec![0.0; paths.len()];
        for _ in 0..4 {
            for (path, sum) in paths.iter().zip(rps.iter_mut()) {
                *sum += load::throughput(path, &plain, b"hello", 16, Duration::from_secs(1)).await / 4.0;
            }
        }
        for ((path, totals), rps) in paths.iter().zip(totals).zip(rps) {
            report.pass_through.push((path.name.clone(), totals.ms(0.5), totals.ms(0.99), totals.0.len(), rps));
        }
    }
    if run_section("ttft") {
        eprintln!("time to first token (streaming)…");
        let ttft = chat("ttft", true);
        let firsts =
            interleaved(&paths, &ttft, b"hello", 5, 20, Duration::from_millis(800), |(firsts, _)| firsts).await;
        for (path, firsts) in paths.iter().zip(firsts) {
            report.ttft.push((path.name.clone(), firsts.ms(0.5), firsts.ms(0.99)));
        }
    }
    drop(litellm);

    if run_section("tools") {
        eprintln!("tool rounds…");
        let servers = format!(
            "\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n  ev:\n    command: node\n    args: [\"{everything}\", stdio]"
        );
        let tooled = Gateway::start(upstream.addr, &servers).await;
        tooled.wait_for_tools(1).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let tools: Value = client
                .get(format!("http://{}/mcp/tools/list", tooled.addr))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let names: Vec<&str> =
                tools["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
            if names.contains(&"ts__echo") && names.contains(&"ev__echo") {
                break;
            }
            assert!(Instant::now() < deadline, "ts__echo and ev__echo never both listed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let streamed = chat("bench", true);
        let (_, model_call) = load::sequential(&direct, &streamed, b"hello", 300, 3_000, Duration::from_secs(3)).await;
        let mut ts_cmd = tokio::process::Command::new(TEST_SERVER);
        ts_cmd.arg("stdio");
        let (ts_call, ts_client) = direct_mcp(ts_cmd, "echo", json!({"text": "hi"}), 2_000).await;
        let mut ev_cmd = tokio::process::Command::new("node");
        ev_cmd.args([everything, "stdio"]);
        let (ev_call, ev_client) = direct_mcp(ev_cmd, "echo", json!({"message": "hi"}), 1_000).await;
        drop(ev_client);
        // The floor of a round: a minimal tool loop (its own process, its own test server),
        // measured in blocks interleaved with the gateway's. It offers the very definitions the
        // gateway sent upstream for the same chat (both servers' tools), which the model reads.
        let via_gateway = tooled.target("mcp-middleware");
        Conn::open(&via_gateway).await.request(&chat("tool-ts", true), ANSWER).await;
        let sent: Value =
            client.get(format!("http://{}/last-catalog", upstream.addr)).send().await.unwrap().json().await.unwrap();
        let offered = peers::TempDir::new("mcpmw-floor");
        let tools_file = offered.0.join("tools.json");
        let offer = sent["tools"].as_array().map_or(0, Vec::len);
        assert!(offer > 10, "the gateway offered {offer} tools");
        eprintln!(
            "the gateway offers {offer} tools ({} bytes); the floor offers the same",
            sent["tools"].to_string().len()
        );
        std::fs::write(&tools_file, sent["tools"].to_string()).unwrap();
        let floor_loop = Role::start(
            "loop",
            &[
                ("MCPMW_BENCH_UPSTREAM", upstream.addr.to_string()),
                ("MCPMW_BENCH_TOOLS", tools_file.display().to_string()),
            ],
        );
        let floor = Target { name: "minimal tool loop".into(), addr: floor_loop.addr, ..direct.clone() };
        let ts_rounds = interleaved(
            &[floor.clone(), via_gateway.clone()],
            &chat("tool-ts", true),
            ANSWER,
            20,
            200,
            Duration::from_millis(600),
            |(_, totals)| totals,
        )
        .await;
        let (_, ev_round) =
            load::sequential(&via_gateway, &chat("tool-ev", true), ANSWER, 100, 2_000, Duration::from_secs(5)).await;
        for (server, mcp, floor, round) in [
            ("mcp-test-server (Rust, stdio)", &ts_call, ts_rounds.first(), ts_rounds.get(1)),
            ("server-everything (Node, stdio)", &ev_call, None, Some(&ev_round)),
        ] {
            let round = round.unwrap();
            report.tool_rounds.push(report::ToolRound {
                server: server.into(),
                model_p50: model_call.ms(0.5),
                mcp_p50: mcp.ms(0.5),
                floor_p50: floor.map(|f| f.ms(0.5)),
                round_p50: round.ms(0.5),
                round_p99: round.ms(0.99),
            });
        }

        eprintln!("tool rounds at c=16 against the sum-of-parts ceiling…");
        let ts_body = chat("tool-ts", true);
        let (mut via, mut via_floor) = (0.0, 0.0);
        for _ in 0..2 {
            via += load::throughput(&via_gateway, &ts_body, ANSWER, 16, Duration::from_secs(2)).await / 2.0;
            via_floor += load::throughput(&floor, &ts_body, ANSWER, 16, Duration::from_secs(2)).await / 2.0;
        }
        drop(floor_loop);
        let ceiling = parts_throughput(&direct, &streamed, ts_client.peer().clone(), 16, Duration::from_secs(4)).await;
        report.rounds_c16 = (via, ceiling, via_floor);
        drop(ts_client);

        eprintln!("parallel slow calls…");
        let parallel = chat("parallel", true);
        let (_, four) =
            load::sequential(&tooled.target("mcp-middleware"), &parallel, ANSWER, 1, 5, Duration::from_secs(30)).await;
        report.parallel = (four.ms(0.5), 300.0);
        drop(tooled);
    }

    if run_section("catalog") {
        eprintln!("a 1,000-tool catalog…");
        let extra = 1_000usize.saturating_sub(builtin_test_tools().await);
        let servers = format!("\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio, --extra-tools, \"{extra}\"]");
        let big = Gateway::start(upstream.addr, &servers).await;
        let listed = big.wait_for_tools(1_000).await;
        let (_, via_catalog) =
            load::sequential(&big.target("mcp-middleware"), &plain, b"hello", 200, 3_000, Duration::from_secs(5)).await;
        let sent: Bytes =
            client.get(format!("http://{}/last-catalog", upstream.addr)).send().await.unwrap().bytes().await.unwrap();
        let sent_tools =
            serde_json::from_slice::<Value>(&sent).ok().and_then(|v| v["tools"].as_array().map(Vec::len)).unwrap_or(0);
        let (_, direct_catalog) = load::sequential(&direct, &sent, b"hello", 200, 3_000, Duration::from_secs(5)).await;
        drop(big);
        // One gateway, its server's catalog quiet and churning (a changed tool and
        // `list_changed` every 100 ms) in turn: blocks of requests alternate, so the machine's
        // drift weighs on both alike, and each block is as long as the listings' spacing (at
        // most one a second).
        let untooled = Bytes::from(
            json!({"model": "bench", "messages": [{"role": "user", "content": "hi"}], "mcp": {"enabled": false}})
                .to_string(),
        );
        let switch = peers::TempDir::new("mcpmw-churn");
        let churn_file = switch.0.join("churn");
        let churning_servers = format!(
            "\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio, --extra-tools, \"{extra}\", --churn-ms, \"100\", --churn-while, \"{}\"]",
            churn_file.display()
        );
        let churning = Gateway::start(upstream.addr, &churning_servers).await;
        churning.wait_for_tools(1_000).await;
        let (mut quiet, mut churned) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            for (on, samples) in [(false, &mut quiet), (true, &mut churned)] {
                if on {
                    std::fs::write(&churn_file, b"").unwrap();
                } else {
                    let _ = std::fs::remove_file(&churn_file);
                }
                // A listing or rebuild of the other block's state has ended by now.
                tokio::time::sleep(Duration::from_millis(1_100)).await;
                let (_, block) = load::sequential(
                    &churning.target("mcp-middleware"),
                    &untooled,
                    b"hello",
                    50,
                    20_000,
                    Duration::from_secs(1),
                )
                .await;
                samples.extend(block.0);
            }
        }
        let (quiet, churned) = (load::Samples::new(quiet), load::Samples::new(churned));
        drop(churning);
        report.catalog = report::Catalog {
            listed,
            sent_tools,
            sent_bytes: sent.len(),
            via_p50: via_catalog.ms(0.5),
            direct_p50: direct_catalog.ms(0.5),
            quiet: (quiet.ms(0.5), quiet.ms(0.99)),
            churning: (churned.ms(0.5), churned.ms(0.99)),
            ranking: ranking_times(),
        };
    }

    if run_section("instructions") {
        eprintln!("instructions per request (callgrind)…");
        if let Some(valgrind) = profile::valgrind() {
            let dir = peers::TempDir::new("mcpmw-bench-cg");
            let port = peers::free_port();
            let config = dir.0.join("config.yaml");
            let yaml = format!(
                "listen: 127.0.0.1:{port}\nupstream:\n  base_url: http://{}/v1\nlogging:\n  level: warn\nbuiltin_tools:\n  enabled: false\nartifacts:\n  local:\n    dir: {}\nmcpServers: {{}}\n",
                upstream.addr,
                dir.0.join("artifacts").display()
            );
            std::fs::write(&config, yaml).unwrap();
            let path = "/v1/chat/completions";
            let gateway = profile::Subject::Gateway { config: &config, port };
            let proxy = profile::Subject::Proxy { upstream: upstream.addr };
            report.instructions = Some((
                profile::per_request(&valgrind, &gateway, path, &plain).await,
                profile::per_request(&valgrind, &proxy, path, &plain).await,
            ));
        }
    }

    if run_section("bodies") {
        eprintln!("large bodies…");
        let text = "x".repeat(31 * 1024 * 1024);
        let big = Bytes::from(json!({"model": "bench", "messages": [{"role": "user", "content": text}]}).to_string());
        drop(text);
        let servers = format!("\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]");
        for (name, servers) in [("pass-through (no tools)", " {}".to_owned()), ("tools injected (tool loop)", servers)]
        {
            let gw = Gateway::start(upstream.addr, &servers).await;
            if name.starts_with("tools") {
                gw.wait_for_tools(1).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let before = gw.rss_mb();
            let target = gw.target("mcp-middleware");
            let sending = futures_util::future::join_all((0..8).map(|_| {
                let (target, big) = (target.clone(), big.clone());
                tokio::spawn(async move { Conn::open(&target).await.request(&big, b"hello").await })
            }));
            let mut sending = std::pin::pin!(sending);
            let mut peak = before;
            let results = loop {
                tokio::select! {
                    results = &mut sending => break results,
                    () = tokio::time::sleep(Duration::from_millis(10)) => peak = peak.max(gw.rss_mb()),
                }
            };
            assert!(results.iter().all(Result::is_ok), "{name}: a large request failed");
            report.bodies.push((name.into(), big.len(), before, peak));
        }
    }

    if run_section("streams") {
        eprintln!("open streams and memory…");
        let fresh = Gateway::start(upstream.addr, " {}").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        report.rss_idle = fresh.rss_mb();
        let hold = chat("hold", true);
        // Each HTTP/1.1 stream holds two sockets in the gateway; a process here may hold 20,000
        // files and cannot raise that without privileges, so 10,000 streams come in multiplexed over
        // HTTP/2 (100 per connection), as from a fronting proxy; the upstream side stays HTTP/1.1.
        let proxy_target = Target { name: "minimal hyper proxy".into(), addr: proxy.addr, ..direct.clone() };
        report.rss_proxy.push(rss_mb(proxy.child.id()));
        for (n, h2) in [(1_000usize, false), (1_000, true), (10_000, true)] {
            for (target, pid) in
                [(proxy_target.clone(), proxy.child.id()), (fresh.target("mcp-middleware"), fresh.child.id())]
            {
                let streams = if h2 {
                    load::open_streams_h2(&target, &hold, n, 100).await
                } else {
                    load::open_streams(&target, &hold, n).await
                };
                tokio::time::sleep(Duration::from_millis(300)).await;
                if pid == proxy.child.id() {
                    report.rss_proxy.push(rss_mb(pid));
                } else {
                    report.rss_streams.push((n, h2, rss_mb(pid)));
                }
                for s in &streams {
                    s.abort();
                }
                for s in streams {
                    let _ = s.await;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        report.rss_after = fresh.rss_mb();
        drop(fresh);
    }
    drop(proxy);
    drop(upstream);

    report.took = started.elapsed();
    let markdown = report.markdown();
    print!("{markdown}");
    if only.is_none() {
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
        std::fs::write(&out, markdown).unwrap();
        eprintln!("wrote {}", out.display());
    }
}

/// Ten rounds of `load::sequential` over every path in turn (`warmup`, then up to `n` requests
/// or `budget` per block, each answer checked for `needle`); per path, the samples `pick` takes from each block, all together.
async fn interleaved(
    paths: &[Target],
    body: &Bytes,
    needle: &[u8],
    warmup: usize,
    n: usize,
    budget: Duration,
    pick: impl Fn((load::Samples, load::Samples)) -> load::Samples,
) -> Vec<load::Samples> {
    let mut all: Vec<Vec<Duration>> = vec![Vec::new(); paths.len()];
    for _ in 0..10 {
        for (path, samples) in paths.iter().zip(all.iter_mut()) {
            samples.extend(pick(load::sequential(path, body, needle, warmup, n, budget).await).0);
        }
    }
    all.into_iter().map(load::Samples::new).collect()
}

/// How many tools the test server lists on its own.
async fn builtin_test_tools() -> usize {
    let mut cmd = tokio::process::Command::new(TEST_SERVER);
    cmd.arg("stdio");
    let mcp = ().serve(rmcp::transport::TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let n = mcp.list_all_tools().await.unwrap().len();
    let _ = mcp.cancel().await;
    n
}

/// The ceiling for tool rounds: `concurrency` workers each doing a round's parts directly
/// (model call, MCP call, model call) back to back; rounds per second.
async fn parts_throughput(
    direct: &Target,
    streamed: &Bytes,
    mcp: rmcp::Peer<rmcp::RoleClient>,
    concurrency: usize,
    duration: Duration,
) -> f64 {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_secs(1) + duration;
    let count_from = Instant::now() + Duration::from_secs(1);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (direct, streamed, mcp, done) = (direct.clone(), streamed.clone(), mcp.clone(), done.clone());
            tokio::spawn(async move {
                let mut conn = Conn::open(&direct).await;
                while Instant::now() < stop_at {
                    conn.request(&streamed, b"hello").await;
                    let mut params = CallToolRequestParams::new("echo");
                    params.arguments = json!({"text": "hi"}).as_object().cloned();
                    mcp.call_tool(params).await.unwrap();
                    conn.request(&streamed, b"hello").await;
                    if Instant::now() >= count_from && Instant::now() < stop_at {
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    done.load(std::sync::atomic::Ordering::Relaxed) as f64 / duration.as_secs_f64()
}

fn litellm_version(bin: &str) -> String {
    let python = std::path::Path::new(bin).with_file_name("python");
    let out = std::process::Command::new(python)
        .args(["-c", "import importlib.metadata as m; print(m.version('litellm'))"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
