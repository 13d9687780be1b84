//! A server that fails at start says why: the last lines of its stderr (scrubbed of its
//! secrets) reach `last_error` in `/mcp/servers`, and each attempt starts it once.

use std::time::{Duration, Instant};

use crate::common::TestApp;
use crate::common::peers::TempDir;

#[tokio::test]
async fn a_server_that_dies_at_start_says_why_and_starts_once_per_attempt() {
    let dir = TempDir::new("mcpmw-dying");
    let starts = dir.0.join("starts");
    // Exits at once, as a server missing its configuration does, printing a secret on the way.
    let script = format!(
        "echo start >> '{}'; echo \"connecting with $API_TOKEN\" >&2; \
         echo 'fatal: DATABASE_URL is not set' >&2; exit 1",
        starts.display()
    );
    let yaml = format!(
        "mcpServers:\n  db:\n    command: sh\n    args: [-c, {script:?}]\n    env:\n      API_TOKEN: tok-0123456789abcdef\n"
    );
    let app = TestApp::spawn(&yaml).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let server = loop {
        let server = app.servers().await.remove("db").unwrap();
        if server["restarts"].as_u64().unwrap_or(0) >= 3 {
            break server;
        }
        assert!(Instant::now() < deadline, "never retried: {server}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = server["last_error"].as_str().unwrap();
    assert!(error.contains("stderr: connecting with *** | fatal: DATABASE_URL is not set"), "{error}");
    assert!(!error.contains("tok-0123456789abcdef"), "{error}");
    // One start per attempt: attempts = restarts + 1 (one more may be starting right now).
    let restarts = app.servers().await["db"]["restarts"].as_u64().unwrap();
    let started = std::fs::read_to_string(&starts).unwrap().lines().count() as u64;
    assert!(started == restarts + 1 || started == restarts + 2, "{started} starts in {} restarts", restarts);
}
