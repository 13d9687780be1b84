//! Tool-name mapping: arbitrary server and tool names become exposed names that are valid for
//! every provider (`[A-Za-z0-9_-]{1,64}`), unique, and map back to their origin.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mcp_middleware::mcp::{Catalog, SourceTool};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let tools: Vec<SourceTool> = text
        .lines()
        .take(64)
        .map(|line| {
            let (server, name) = line.split_once('/').unwrap_or(("s", line));
            SourceTool {
                server: server.to_owned(),
                name: name.to_owned(),
                description: Some(line.to_owned()),
                input_schema: Arc::new(serde_json::Map::new()),
            }
        })
        .collect();
    let catalog = Catalog::build(tools.clone());
    let mut seen = std::collections::HashSet::new();
    for entry in catalog.entries() {
        assert!(!entry.name.is_empty() && entry.name.len() <= 64, "{:?}", entry.name);
        assert!(entry.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{:?}", entry.name);
        assert!(seen.insert(entry.name.clone()), "duplicate {:?}", entry.name);
        let back = catalog.by_origin(&entry.server, &entry.original_name).expect("maps back");
        assert_eq!(back.name, entry.name, "one entry per server and tool");
    }
});
