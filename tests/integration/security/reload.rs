//! A config file being rewritten in place is an attacker's window: an editor, `echo >` or a
//! ConfigMap swap leaves it empty or truncated for a moment, and such a file often parses —
//! without `auth:`, or without the servers not yet written. On the real binary: an empty file,
//! a file still being written, a file without keys and a file without servers are all refused,
//! and the keyed gateway keeps serving as it was.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::FakeLlm;
use crate::common::peers::TEST_SERVER;
use crate::common::process::GatewayProcess;

const KEY: &str = "sk-reload-guard-0123";

fn full(upstream: &str) -> String {
    format!(
        "upstream:\n  base_url: {upstream}\nbuiltin_tools:\n  enabled: false\n\
         mcpServers:\n  one:\n    command: {TEST_SERVER}\n    args: [stdio]\nauth:\n  api_keys: [{KEY}]\n"
    )
}

/// Anonymous and keyed status of a tool call, and the keyed tool names.
async fn probe(gw: &GatewayProcess) -> (u16, u16, Vec<String>) {
    let client = reqwest::Client::new();
    let call = json!({"name": "one__echo", "arguments": {"text": "x"}});
    let anonymous = client.post(gw.url("/mcp/tools/call")).json(&call).send().await.unwrap().status().as_u16();
    let metrics = client.get(gw.url("/metrics")).send().await.unwrap().status().as_u16();
    assert_eq!(metrics, 401, "anonymous /metrics");
    let keyed = client.post(gw.url("/mcp/tools/call")).bearer_auth(KEY).json(&call).send().await.unwrap();
    let keyed = keyed.status().as_u16();
    let list: Value =
        client.get(gw.url("/mcp/tools/list")).bearer_auth(KEY).send().await.unwrap().json().await.unwrap();
    let names = list["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
    (anonymous, keyed, names)
}

#[tokio::test]
async fn half_written_configs_never_open_the_gateway_or_stop_its_servers() {
    let llm = FakeLlm::new().text("ok").start().await;
    let gw = GatewayProcess::spawn(&full(&llm.url), &[]).await;
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while probe(&gw).await.1 != 200 {
        assert!(std::time::Instant::now() < deadline, "one__echo never ready:\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `echo > config.yaml`: empty for a moment.
    std::fs::write(gw.config_path(), "").unwrap();
    gw.wait_for_log(|l| l.contains("the file is empty")).await;
    let (anonymous, keyed, names) = probe(&gw).await;
    assert_eq!((anonymous, keyed), (401, 200), "{}", gw.logs());
    assert!(names.iter().all(|n| n.starts_with("one__")) && !names.is_empty(), "{names:?}");

    // Written in pieces, each of which parses: the keyless, serverless prefix never applies.
    let text = full(&llm.url);
    let pieces: Vec<&str> = text.split_inclusive('\n').collect();
    for i in 1..=pieces.len() {
        std::fs::write(gw.config_path(), pieces[..i].concat()).unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        let anonymous = client
            .post(gw.url("/mcp/tools/call"))
            .json(&json!({"name": "one__echo", "arguments": {"text": "x"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "after {i} of {} lines:\n{}", pieces.len(), gw.logs());
    }

    // A settled file without keys, and one without servers: both refused, with the reason.
    std::fs::write(
        gw.config_path(),
        format!(
            "upstream:\n  base_url: {}\nmcpServers:\n  one:\n    command: {TEST_SERVER}\n    args: [stdio]\n",
            llm.url
        ),
    )
    .unwrap();
    gw.wait_for_log(|l| l.contains("would open the gateway")).await;
    std::fs::write(gw.config_path(), format!("upstream:\n  base_url: {}\nauth:\n  api_keys: [{KEY}]\n", llm.url))
        .unwrap();
    gw.wait_for_log(|l| l.contains("would stop them all")).await;
    let (anonymous, keyed, names) = probe(&gw).await;
    assert_eq!((anonymous, keyed), (401, 200), "{}", gw.logs());
    assert!(names.iter().any(|n| n == "one__echo"), "the server was never stopped: {names:?}");

    // A restricted key whose policy lines are not written yet would be unrestricted.
    let narrow = format!("{}  keys:\n    - key: sk-narrow-0123\n      tools: [one__echo]\n", full(&llm.url));
    std::fs::write(gw.config_path(), &narrow).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list: Value = client
            .get(gw.url("/mcp/tools/list"))
            .bearer_auth("sk-narrow-0123")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        if list["tools"].as_array().is_some_and(|t| t.len() == 1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the narrow key never applied:\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(gw.config_path(), format!("{}  keys:\n    - key: sk-narrow-0123\n", full(&llm.url))).unwrap();
    gw.wait_for_log(|l| l.contains("lifts a key's tool policy")).await;
    let list: Value =
        client.get(gw.url("/mcp/tools/list")).bearer_auth("sk-narrow-0123").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["tools"].as_array().unwrap().len(), 1, "still narrow: {list}");

    // A real change still applies.
    std::fs::write(gw.config_path(), full(&llm.url).replace("one:", "two:")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !probe(&gw).await.2.iter().all(|n| n.starts_with("two__")) {
        assert!(std::time::Instant::now() < deadline, "the valid change never applied:\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await;
}
