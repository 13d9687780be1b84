//! What an operator reads at the default level: no terminal escapes when the log is not a
//! terminal, no line per health probe, one line per tool call with its outcome (no ERROR for a
//! tool's own failure), and a child's stderr only when the child fails.

use std::time::{Duration, Instant};

use serde_json::json;

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
