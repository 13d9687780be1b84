//! What an operator reads at the default level: no terminal escapes when the log is not a
//! terminal, no line per health probe, one line per tool call with its outcome (no ERROR for a
//! tool's own failure), and a child's stderr only when the child fails.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::peers::TEST_SERVER;
use crate::common::process::GatewayProcess;

#[tokio::test]
async fn default_logs_are_quiet_and_say_what_matters() {
    // A healthy server that chatters on stderr, and one that dies saying why.
    let noisy = format!("for i in $(seq 40); do echo chatter $i >&2; done; exec {TEST_SERVER} stdio");
    let dying = "echo 'fatal: DATABASE_URL is not set' >&2; exit 1";
    let yaml = format!(
        "mcpServers:\n  ts:\n    command: sh\n    args: [-c, {noisy:?}]\n  db:\n    command: sh\n    args: [-c, {dying:?}]\n"
    );
    let gw = GatewayProcess::spawn_default_logs(&yaml).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(gw.logs().contains("MCP server ready") && gw.logs().contains("DATABASE_URL")) {
        assert!(Instant::now() < deadline, "{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.wait_for_tool(None, "ts__throw").await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        for probe in ["/health/liveliness", "/health/readiness"] {
            client.get(gw.url(probe)).send().await.unwrap();
        }
    }
    for (tool, args) in [("ts__fail", json!({"message": "nope"})), ("ts__throw", json!({"message": "kaput"}))] {
        let resp = client
            .post(gw.url("/mcp/tools/call"))
            .json(&json!({"name": tool, "arguments": args}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    gw.wait_for_log(|l| l.contains("ts__throw")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = gw.logs();
    assert!(!logs.contains('\u{1b}'), "terminal escapes in a piped log:\n{logs}");
    assert!(!logs.contains("/health/"), "a line per probe:\n{logs}");
    assert!(!logs.contains("chatter"), "a healthy child's stderr at the default level:\n{logs}");
    assert!(!logs.contains("ERROR"), "an ERROR line for a tool's own failure:\n{logs}");
    for (tool, said) in [("ts__fail", "failure requested: nope"), ("ts__throw", "the tool threw: kaput")] {
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(tool)).collect();
        assert_eq!(lines.len(), 1, "one line per tool call:\n{logs}");
        assert!(lines[0].contains("outcome=\"error\"") && lines[0].contains(said), "{}", lines[0]);
    }
    // The failing child's words are in its failure's warning.
    let failure = logs.lines().find(|l| l.contains("DATABASE_URL")).unwrap();
    assert!(failure.contains("WARN") && failure.contains("server=db"), "{failure}");
    gw.stop().await;
}

/// On a terminal the human format is coloured, and still nothing a model or client sends can
/// repaint it: their control characters are escaped field by field (run under `script`, which
/// gives the binary a pseudo-terminal).
#[tokio::test]
async fn colour_only_on_a_terminal_and_never_from_input() {
    use tokio::io::AsyncBufReadExt;
    let forged = "x\u{1b}[2J\nINFO forged";
    let llm = crate::common::FakeLlm::new().tool_call(forged, json!({})).text("done").start().await;
    let dir = crate::common::peers::TempDir::new("mcpmw-tty");
    let config = dir.0.join("config.yaml");
    let yaml = format!(
        "upstream:\n  base_url: {}\nbuiltin_tools:\n  enabled: false\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n",
        llm.url
    );
    std::fs::write(&config, yaml).unwrap();
    // `script` dies when killed, but the gateway on its terminal takes the hang-up for a reload
    // and lives on: it is found by its config path and stopped, however the test ends.
    let _stop = StopByConfig(config.display().to_string());
    let command = format!(
        "{} --config {} --listen 127.0.0.1:0 --log-format pretty",
        env!("CARGO_BIN_EXE_mcp-middleware"),
        config.display()
    );
    let mut child = tokio::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .env("ARTIFACT_DIR", dir.0.join("artifacts"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("script (util-linux) runs the gateway on a pseudo-terminal");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")) {
            break addr.trim_end_matches(|c: char| !c.is_ascii_digit()).to_owned();
        }
    };
    while !seen.contains("MCP server ready") {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        seen.push_str(&line);
        seen.push('\n');
    }
    // "ready" is logged before the catalog is rebuilt (off the request threads): a chat sent in
    // between would pass through without tools, and nothing would be refused.
    let client = reqwest::Client::new();
    let listed = Instant::now() + Duration::from_secs(20);
    loop {
        let tools: Value =
            client.get(format!("http://{addr}/mcp/tools/list")).send().await.unwrap().json().await.unwrap();
        if tools["tools"].as_array().is_some_and(|t| !t.is_empty()) {
            break;
        }
        assert!(Instant::now() < listed, "the catalog never listed the server's tools");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let resp = client.post(format!("http://{addr}/v1/chat/completions")).json(&chat).send().await;
    assert_eq!(resp.unwrap().status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("mcp.call refused") {
        let next = tokio::time::timeout_at(deadline.into(), lines.next_line()).await;
        let line = next.unwrap_or_else(|_| panic!("no refusal logged:\n{seen}")).unwrap().unwrap();
        seen.push_str(&line);
        seen.push('\n');
    }
    let _ = child.kill().await;
    assert!(seen.contains("\u{1b}["), "no colour on a terminal:\n{seen}");
    assert!(!seen.contains("\u{1b}[2J"), "a model's escape reached the terminal:\n{seen}");
    assert!(seen.contains("\\u{1b}[2J"), "the escape is shown escaped:\n{seen}");
    assert!(!seen.lines().any(|l| l.starts_with("INFO forged")), "a forged line:\n{seen}");
}

/// On drop, sends SIGTERM to every process whose command line names this config file.
struct StopByConfig(String);

impl Drop for StopByConfig {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir("/proc") else { return };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&self.0) && cmdline.contains("mcp-middleware") && !cmdline.starts_with("script") {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
            }
        }
    }
}
