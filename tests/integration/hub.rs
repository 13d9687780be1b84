//! The hub under concurrency: many servers becoming ready at the same moment always end with
//! every server's tools in the catalog (rebuilds are serialised, so a rebuild that read older
//! tools can never replace one that read newer tools).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mcp_middleware::config;
use mcp_middleware::mcp::{Hub, ServerState, SharedCatalog};
use tokio_util::sync::CancellationToken;

use crate::common::peers::TEST_SERVER;

const SERVERS: usize = 8;
const RUNS: usize = 12;

#[tokio::test]
async fn servers_ready_together_all_reach_the_catalog() {
    let mut yaml = String::from("mcpServers:\n");
    for i in 0..SERVERS {
        yaml.push_str(&format!("  s{i}:\n    command: {TEST_SERVER}\n    args: [stdio]\n"));
    }
    let mut cfg = config::load_str(&yaml, &HashMap::<String, String>::new()).unwrap();
    cfg.mcp_servers.retain(|s| s.name != config::BUILTIN_SERVER);
    for run in 0..RUNS {
        let shutdown = CancellationToken::new();
        let catalog = SharedCatalog::default();
        let hub = Hub::start(&cfg.mcp_servers, &HashMap::new(), catalog.clone(), shutdown.clone());
        hub.settled(Duration::from_secs(20)).await;
        assert!(hub.servers().iter().all(|s| s.state == ServerState::Ready), "run {run}: {:?}", hub.servers());
        // Every ready server's tools arrive (the last rebuild follows its readiness closely).
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let snapshot = catalog.load();
            let missing: Vec<String> =
                (0..SERVERS).map(|i| format!("s{i}__echo")).filter(|name| snapshot.get(name).is_none()).collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "run {run}: tools of ready servers never reached the catalog: {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        hub.shutdown().await;
    }
}
