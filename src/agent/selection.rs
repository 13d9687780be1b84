//! Which of the allowed tools a request is offered, when there are many: never more than the
//! provider takes (128 with the client's own tools, which are never dropped), pinned tools first,
//! tools already called in this chat next, then the rest ranked against the conversation (the
//! last user message weighs most) with the catalog's BM25 index. When tools were left out, the
//! model also gets the discovery tool (`find_tools`), whose finds join the next round's tools.
//! Deterministic: the same conversation and catalog give the same offer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::access::{client_tool_names, glob};
use crate::config::{ModelPolicy, PROVIDER_TOOL_LIMIT, SelectionConfig};
use crate::mcp::search::add_terms;
use crate::mcp::{Catalog, ToolEntry};

/// What a request is offered.
#[derive(Debug, Clone, Default)]
pub struct Offer {
    /// The tools sent upstream (ours), in the order chosen.
    pub tools: Vec<Arc<ToolEntry>>,
    /// Every tool the request may use (what `find_tools` searches).
    pub pool: Vec<Arc<ToolEntry>>,
    /// The discovery tool's name, when it is offered.
    pub find_tools: Option<String>,
    /// Room for our tools (the budget less the client's tools).
    pub room: usize,
    /// `all` (everything fit) or `bm25`.
    pub ranker: &'static str,
}

/// How much of the last user message weighs in ranking (its end: what was asked last).
pub const RANKED_LAST_USER_BYTES: usize = 8 * 1024;
/// How much of each earlier message weighs.
const RANKED_OTHER_BYTES: usize = 2 * 1024;

/// The weighted query a conversation makes: the last user message counts three times, the four
/// messages before it once; of each only its last few KiB (a pasted 30 MB log costs no more to
/// rank than a question).
fn conversation_query(body: &Map<String, Value>) -> HashMap<String, f64> {
    let mut query = HashMap::new();
    let messages = body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let last_user = messages.iter().rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    for (i, message) in messages.iter().enumerate().rev().take(5) {
        let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "assistant" {
            continue;
        }
        let (weight, budget) =
            if Some(i) == last_user { (3.0, RANKED_LAST_USER_BYTES) } else { (1.0, RANKED_OTHER_BYTES) };
        add_terms(&mut query, &text_tail(message, budget), weight);
    }
    query
}

/// The last `budget` bytes (about; whole characters) of a message's text, its parts' texts
/// taken from the end.
fn text_tail(message: &Value, budget: usize) -> String {
    let tail = |text: &str, room: usize| -> String {
        let mut start = text.len().saturating_sub(room);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text.get(start..).unwrap_or_default().to_owned()
    };
    match message.get("content") {
        Some(Value::String(text)) => tail(text, budget),
        Some(Value::Array(parts)) => {
            let mut pieces = Vec::new();
            let mut room = budget;
            for text in parts.iter().rev().filter_map(|p| p.get("text").and_then(Value::as_str)) {
                if room == 0 {
                    break;
                }
                let piece = tail(text, room);
                room = room.saturating_sub(piece.len() + 1);
                pieces.push(piece);
            }
            pieces.reverse();
            pieces.join(" ")
        }
        _ => String::new(),
    }
}

/// Names of the tools already called in this chat.
fn called(body: &Map<String, Value>) -> HashSet<String> {
    body.get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("tool_calls").and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// Tools the client's `tool_choice` names: one forced function, or an `allowed_tools` list.
/// They must be in the offer, or the provider refuses a choice of a tool it was not given.
fn chosen_by_client(body: &Map<String, Value>) -> HashSet<String> {
    let name = |t: &Value| {
        t.get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| t.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match body.get("tool_choice") {
        Some(choice @ Value::Object(c)) if c.get("type").and_then(Value::as_str) == Some("allowed_tools") => choice
            .pointer("/allowed_tools/tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(name)
            .collect(),
        Some(choice @ Value::Object(_)) => name(choice).into_iter().collect(),
        _ => HashSet::new(),
    }
}

/// Orders `pool` by score for `query` (catalog order breaks ties).
pub fn rank(catalog: &Catalog, pool: &[Arc<ToolEntry>], query: &HashMap<String, f64>) -> Vec<Arc<ToolEntry>> {
    let scores = catalog.index().scores(query);
    let mut ranked: Vec<(f64, usize, &Arc<ToolEntry>)> = pool
        .iter()
        .map(|e| {
            let position = catalog.position(&e.name).unwrap_or(usize::MAX);
            (scores.get(position).copied().unwrap_or_default(), position, e)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranked.into_iter().map(|(_, _, e)| e.clone()).collect()
}

/// Chooses the offer from `pool` (the allowed tools, in catalog order).
pub fn choose(
    catalog: &Catalog,
    pool: Vec<Arc<ToolEntry>>,
    body: &Map<String, Value>,
    config: &SelectionConfig,
    model: Option<&ModelPolicy>,
) -> Offer {
    let budget = model.and_then(|m| m.max_tools).unwrap_or(config.max_tools).min(PROVIDER_TOOL_LIMIT);
    let room = budget.saturating_sub(client_tool_names(body).count());
    let byte_budget = model.and_then(|m| m.max_tool_bytes).unwrap_or(config.max_tool_bytes);
    let pool_bytes: usize = pool.iter().map(|e| e.openai_tool.get().len()).sum();
    let fits = pool.len() <= room && pool_bytes <= byte_budget;
    if fits && !config.always_rank {
        return Offer { tools: pool.clone(), pool, find_tools: None, room, ranker: "all" };
    }
    let find = config.find_tools.clone().filter(|_| room > 1 && !fits);
    let slots = if find.is_some() { room - 1 } else { room };
    let mut bytes_left = byte_budget.saturating_sub(if find.is_some() { FIND_TOOLS_BYTES } else { 0 });
    let called = called(body);
    let forced = chosen_by_client(body);
    let mut chosen: Vec<Arc<ToolEntry>> = Vec::with_capacity(slots.min(pool.len()));
    let mut taken: HashSet<&str> = HashSet::new();
    // The client's forced choice is offered whatever it weighs (the provider refuses a choice
    // of a tool it was not given); everything else fits the byte budget, or waits for
    // `find_tools` (a big tool is skipped and smaller ones after it still fill the budget).
    for entry in pool.iter().filter(|e| forced.contains(&e.name)) {
        if chosen.len() < slots && taken.insert(entry.name.as_str()) {
            bytes_left = bytes_left.saturating_sub(entry.openai_tool.get().len());
            chosen.push(entry.clone());
        }
    }
    let pinned = pool.iter().filter(|e| config.always.iter().any(|p| glob(p, &e.name)));
    let used = pool.iter().filter(|e| called.contains(&e.name));
    let ranked = rank(catalog, &pool, &conversation_query(body));
    for entry in pinned.chain(used).chain(ranked.iter()) {
        if chosen.len() >= slots {
            break;
        }
        let size = entry.openai_tool.get().len();
        if size <= bytes_left && taken.insert(entry.name.as_str()) {
            bytes_left -= size;
            chosen.push(entry.clone());
        }
    }
    Offer { tools: chosen, pool, find_tools: find, room, ranker: "bm25" }
}

/// The discovery tool's OpenAI definition.
pub fn find_tools_definition(name: &str) -> Value {
    json!({"type": "function", "function": {
        "name": name,
        "description": "Search all the tools available to you by what you need to do. The tools found are added to your tools for your next step. Use it when none of your tools fits the task.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string", "description": "What you want to do, in a few words"}}, "required": ["query"]},
    }})
}

/// About what the discovery tool's definition weighs, counted against the byte budget.
const FIND_TOOLS_BYTES: usize = 512;

/// How many tools `find_tools` returns.
pub const FIND_LIMIT: usize = 8;

/// `find_tools`' answer: the best matches in `pool` for `query`, a line each.
pub fn find(catalog: &Catalog, pool: &[Arc<ToolEntry>], query: &str, limit: usize) -> (String, Vec<Arc<ToolEntry>>) {
    let mut terms = HashMap::new();
    add_terms(&mut terms, query, 1.0);
    let scores = catalog.index().scores(&terms);
    let found: Vec<Arc<ToolEntry>> = rank(catalog, pool, &terms)
        .into_iter()
        .filter(|e| catalog.position(&e.name).and_then(|p| scores.get(p)).is_some_and(|s| *s > 0.0))
        .take(FIND_LIMIT.min(limit.max(1)))
        .collect();
    if found.is_empty() {
        return (format!("No tool matches `{query}`. Try other words."), found);
    }
    let mut text = String::from("These tools are now available to you:\n");
    for entry in &found {
        let first_line = entry.description.as_deref().unwrap_or_default().lines().next().unwrap_or_default();
        text.push_str(&format!("- {}: {first_line}\n", entry.name));
    }
    (text, found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_end_of_a_long_message_weighs() {
        let paste = format!("{}é{}", "x".repeat(RANKED_LAST_USER_BYTES * 4), " search branches");
        let tail = text_tail(&json!({"content": paste}), RANKED_LAST_USER_BYTES);
        assert!(tail.len() <= RANKED_LAST_USER_BYTES && tail.ends_with("search branches"));
        let parts = json!({"content": [{"type": "text", "text": "first"}, {"type": "text", "text": "y".repeat(100)}]});
        assert_eq!(text_tail(&parts, 50), "y".repeat(50));
        assert_eq!(text_tail(&parts, 200), format!("first {}", "y".repeat(100)));
        let body = json!({"messages": [{"role": "user", "content": paste}]});
        let query = conversation_query(body.as_object().unwrap());
        assert!(query.contains_key("branches") || query.keys().any(|k| k.starts_with("branch")), "{query:?}");
    }
}
