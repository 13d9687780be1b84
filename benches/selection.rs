//! Tool selection on a large catalog (20 servers × 50 tools), measured against the path without
//! selection in the same run: `cargo bench --bench selection`. Prints p50s and the difference.

// A benchmark: a failed assumption ends the run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, clippy::unreachable)]

use std::sync::Arc;
use std::time::Instant;

use mcp_middleware::agent::selection::choose;
use mcp_middleware::config::SelectionConfig;
use mcp_middleware::mcp::{Catalog, SourceTool};
use serde_json::{Map, Value, json};

const VERBS: &[&str] = &["create", "list", "get", "update", "delete", "search", "read", "write", "merge", "close"];
const NOUNS: &[&str] = &["issue", "file", "branch", "user", "commit", "page", "record", "ticket", "image", "event"];

fn catalog() -> Catalog {
    let tools = (0..20).flat_map(|s| {
        (0..50).map(move |t| {
            let (verb, noun) = (VERBS[t % 10], NOUNS[(t / 10 + s) % 10]);
            let schema = json!({"type": "object", "properties": {"id": {"type": "string", "description": format!("The {noun} id")},
                "query": {"type": "string"}}});
            SourceTool {
                server: format!("server{s}"),
                name: format!("{verb}_{noun}_{t}"),
                description: Some(format!("{verb} a {noun} in system {s}: returns the {noun} with its fields")),
                input_schema: Arc::new(schema.as_object().cloned().unwrap()),
                destructive: false,
                prefix: None,
            }
        })
    });
    Catalog::build(tools)
}

fn p50(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let catalog = catalog();
    let pool = catalog.entries().to_vec();
    let body: Map<String, Value> = serde_json::from_value(json!({"model": "m", "messages": [
        {"role": "user", "content": "please find the open tickets about the failing branch"},
        {"role": "assistant", "content": "Which system?"},
        {"role": "user", "content": "system 7, and list the commits that touched the image files"}]}))
    .unwrap();
    let budgeted = SelectionConfig {
        max_tools: 64,
        max_tool_bytes: usize::MAX,
        always_rank: false,
        always: vec![],
        find_tools: Some("find_tools".into()),
    };
    let roomy = SelectionConfig {
        max_tools: 128,
        max_tool_bytes: usize::MAX,
        always_rank: false,
        always: vec![],
        find_tools: None,
    };
    let run = |config: &SelectionConfig, all: bool| {
        let mut samples = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let started = Instant::now();
            let offer = if all {
                // The path without selection: every allowed tool, injected.
                pool.clone()
            } else {
                choose(&catalog, pool.clone(), &body, config, None).tools
            };
            let injected: Vec<&str> = offer.iter().map(|t| t.openai_tool.get()).collect();
            std::hint::black_box(injected);
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        p50(samples)
    };
    let _ = run(&roomy, true);
    let baseline = run(&roomy, true);
    let selected = run(&budgeted, false);
    println!("catalog: {} tools (20 servers x 50)", catalog.len());
    println!("no selection (inject all 1000):       p50 {baseline:.4} ms");
    println!("selection (rank, budget 64, inject):  p50 {selected:.4} ms");
    let added = selected - baseline;
    println!(
        "selection added: {added:+.4} ms p50 (target <= 0.2 ms): {}",
        if added <= 0.2 { "met" } else { "NOT met" }
    );
}
