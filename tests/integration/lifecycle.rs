//! Health routes and graceful shutdown.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::common::{FakeLlm, TestApp, Turn, chunks, sse_payloads, streamed_text};

#[tokio::test]
async fn health_routes_report_the_upstream() {
    let llm = FakeLlm::new().start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let live = app.client.get(app.url("/health/liveliness")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let ready = app.client.get(app.url("/health/readiness")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let summary: Value = app.client.get(app.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(summary["status"], "healthy");
    assert_eq!(summary["upstream"]["url"], llm.url);
    assert_eq!(summary["upstream"]["reachable"], true);
    assert_eq!(summary["auth"], "open");
}

#[tokio::test]
async fn readiness_fails_while_the_upstream_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = TestApp::spawn(&format!("upstream:\n  base_url: http://127.0.0.1:{port}/v1\n")).await;
    let ready = app.client.get(app.url("/health/readiness")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let live = app.client.get(app.url("/health/liveliness")).send().await.unwrap();
    assert_eq!(live.status(), 200, "liveliness does not depend on the upstream");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_stream_finish() {
    let llm =
        FakeLlm::new().text("a stream still running at shutdown").chunk_delay(Duration::from_millis(60)).start().await;
    let app = TestApp::in_front_of(&llm, "").await;
    let resp = app.post("/v1/chat/completions", &json!({"model": "m", "stream": true, "messages": []})).await;
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let mut raw = String::from_utf8_lossy(&first).into_owned();

    app.begin_shutdown();
    while let Some(chunk) = body.next().await {
        raw.push_str(&String::from_utf8_lossy(&chunk.expect("stream completes during drain")));
    }
    let data = sse_payloads(&raw);
    assert_eq!(streamed_text(&chunks(&data)), "a stream still running at shutdown");
    assert_eq!(data.last().unwrap(), "[DONE]");
    let addr = app.addr;
    app.shutdown().await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let llm = FakeLlm::new().turn(Turn::Hang).start().await;
    let app = TestApp::in_front_of(&llm, "limits:\n  shutdown_grace: 300ms\n").await;
    let client = app.client.clone();
    let url = app.url("/v1/chat/completions");
    let stuck = tokio::spawn(async move { client.post(url).json(&json!({"model": "m", "messages": []})).send().await });
    while llm.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    app.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    stuck.abort();
}

/// A gateway killed outright (SIGKILL, the OOM killer) cannot stop its stdio servers: the kernel
/// does, through the parent-death signal each child is started with.
#[tokio::test]
async fn stdio_servers_die_with_a_killed_gateway() {
    use crate::common::peers::TEST_SERVER;
    use crate::common::process::GatewayProcess;
    let llm = FakeLlm::new().text("ok").start().await;
    // A server that does not stop when its stdin closes: the shell waits, then keeps working.
    let script = format!("{TEST_SERVER} stdio; sleep 59");
    let yaml = format!(
        "upstream:\n  base_url: {}\nbuiltin_tools:\n  enabled: false\nmcpServers:\n  ts:\n    command: sh\n    args: [\"-c\", {script:?}]\n",
        llm.url
    );
    let gw = GatewayProcess::spawn(&yaml, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let children = loop {
        let children = gw.children("sleep 59");
        if !children.is_empty() {
            break children;
        }
        assert!(Instant::now() < deadline, "the stdio server never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(gw.pid() as i32), nix::sys::signal::Signal::SIGKILL);
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).map(str::to_owned))
            .is_some_and(|state| state != "Z" && state != "X")
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while children.iter().any(|pid| alive(*pid)) {
        if Instant::now() > deadline {
            for pid in &children {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
            panic!("stdio servers outlived the killed gateway: {children:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
