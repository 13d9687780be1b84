//! Large catalogs: retrieval quality of the ranking on the official MCP servers' real catalogs
//! (their `tools/list`, saved in `tests/fixtures/official-catalog.json`) against a labelled set
//! of what users ask for; the discovery tool in a scripted loop; and a catalog too big for any
//! provider never reaching one whole.

use std::collections::HashMap;
use std::sync::Arc;

use mcp_middleware::agent::selection::rank;
use mcp_middleware::mcp::search::add_terms;
use mcp_middleware::mcp::{Catalog, SourceTool};
use serde_json::{Value, json};

use crate::common::peers::{TEST_SERVER, everything};
use crate::common::{FakeLlm, Persona, TestApp};

fn official_catalog() -> Catalog {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/official-catalog.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let tools = fixture["tools"].as_array().unwrap().iter().map(|t| SourceTool {
        server: t["server"].as_str().unwrap().to_owned(),
        name: t["name"].as_str().unwrap().to_owned(),
        description: t["description"].as_str().map(str::to_owned),
        input_schema: Arc::new(t["inputSchema"].as_object().cloned().unwrap_or_default()),
        destructive: false,
        prefix: None,
    });
    Catalog::build(tools)
}

/// What users ask for, and the tool(s) that serve it.
const LABELLED: &[(&str, &[&str])] = &[
    ("what time is it in Tokyo right now", &["time__get_current_time"]),
    ("convert 3pm New York time to Berlin time", &["time__convert_time"]),
    ("which timezone offset does London have today", &["time__get_current_time", "time__convert_time"]),
    ("download this web page and give me its text", &["fetch__fetch"]),
    ("fetch the contents of https://example.com", &["fetch__fetch"]),
    ("read the markdown file notes.md", &["filesystem__read_text_file", "filesystem__read_file"]),
    ("open several files at once and show them", &["filesystem__read_multiple_files"]),
    ("write a new file called todo.txt with my list", &["filesystem__write_file"]),
    ("replace a line in config.yaml", &["filesystem__edit_file"]),
    ("make a new folder named reports", &["filesystem__create_directory"]),
    ("what is in the current directory", &["filesystem__list_directory", "filesystem__list_directory_with_sizes"]),
    ("show the directory tree of the project as json", &["filesystem__directory_tree"]),
    ("rename report.txt to final.txt", &["filesystem__move_file"]),
    ("find all files matching *.rs", &["filesystem__search_files"]),
    ("how big is this file and when was it modified", &["filesystem__get_file_info"]),
    ("which directories am I allowed to access", &["filesystem__list_allowed_directories"]),
    ("list files with their sizes", &["filesystem__list_directory_with_sizes"]),
    ("view this image file", &["filesystem__read_media_file"]),
    ("show me the git status of the repository", &["git__git_status"]),
    ("what changes have I not staged yet", &["git__git_diff_unstaged"]),
    ("show the staged changes", &["git__git_diff_staged"]),
    ("diff my branch against main", &["git__git_diff"]),
    ("commit these changes with a message", &["git__git_commit"]),
    ("stage the file src/main.rs", &["git__git_add"]),
    ("unstage everything", &["git__git_reset"]),
    ("show the recent commit log", &["git__git_log", "github__list_commits"]),
    ("create a new git branch called feature-x", &["git__git_create_branch", "github__create_branch"]),
    ("switch to the develop branch", &["git__git_checkout"]),
    ("show the contents of commit abc123", &["git__git_show"]),
    ("list all local branches", &["git__git_branch"]),
    ("search github for rust mcp repositories", &["github__search_repositories"]),
    ("create a repository on github named demo", &["github__create_repository"]),
    ("get the README file from the github repo", &["github__get_file_contents"]),
    ("push these three files to github in one commit", &["github__push_files"]),
    ("open an issue about the crash on github", &["github__create_issue"]),
    ("open a pull request from my branch", &["github__create_pull_request"]),
    ("fork the repository to my account", &["github__fork_repository"]),
    ("list open issues in the repo", &["github__list_issues"]),
    ("close issue 42", &["github__update_issue"]),
    ("comment on issue 7 that it is fixed", &["github__add_issue_comment"]),
    ("search code on github for tokio::select", &["github__search_code"]),
    ("find github issues mentioning memory leak", &["github__search_issues"]),
    ("look up github users named octocat", &["github__search_users"]),
    ("show details of issue 12", &["github__get_issue"]),
    ("show pull request 5", &["github__get_pull_request"]),
    ("list the open pull requests", &["github__list_pull_requests"]),
    ("approve pull request 9 with a review", &["github__create_pull_request_review"]),
    ("merge pull request 3", &["github__merge_pull_request"]),
    ("which files changed in pull request 8", &["github__get_pull_request_files"]),
    ("did the checks pass on pull request 4", &["github__get_pull_request_status"]),
    ("update the pull request branch with the latest base", &["github__update_pull_request_branch"]),
    ("show the review comments on pull request 2", &["github__get_pull_request_comments"]),
    ("update the file on github with new content", &["github__create_or_update_file"]),
    (
        "remember that Alice works at Acme",
        &["memory__create_entities", "memory__add_observations", "memory__create_relations"],
    ),
    ("record that Bob is Alice's manager", &["memory__create_relations"]),
    ("add a note that Alice likes tea", &["memory__add_observations"]),
    ("forget everything about Bob", &["memory__delete_entities"]),
    ("what do you remember in the knowledge graph", &["memory__read_graph"]),
    ("search my memory for Acme", &["memory__search_nodes"]),
    ("add 17 and 25", &["everything__get-sum"]),
    ("echo back hello world", &["everything__echo"]),
    ("show me the environment variables", &["everything__get-env"]),
    ("give me a tiny image", &["everything__get-tiny-image"]),
    ("compress a file with gzip", &["everything__gzip-file-as-resource"]),
    ("run a long running operation with progress", &["everything__trigger-long-running-operation"]),
];

#[test]
fn ranking_finds_what_users_ask_for_in_real_catalogs() {
    let catalog = official_catalog();
    assert_eq!(catalog.len(), 77, "the fixture's tools");
    let pool = catalog.entries().to_vec();
    assert!(LABELLED.len() >= 60);
    let mut hits = HashMap::from([(5, 0.0), (10, 0.0), (20, 0.0)]);
    let mut misses = Vec::new();
    for (query, wanted) in LABELLED {
        for name in *wanted {
            assert!(catalog.get(name).is_some(), "{name} is in the fixture");
        }
        let mut terms = HashMap::new();
        add_terms(&mut terms, query, 1.0);
        let ranked: Vec<String> = rank(&catalog, &pool, &terms).into_iter().map(|e| e.name.clone()).collect();
        for (k, total) in hits.iter_mut() {
            // A query is served when one of its tools is in the top k.
            if ranked.iter().take(*k).any(|n| wanted.contains(&n.as_str())) {
                *total += 1.0;
            } else if *k == 20 {
                misses.push(*query);
            }
        }
    }
    let n = LABELLED.len() as f64;
    let recall = |k| hits[&k] / n;
    eprintln!(
        "recall@5 {:.3}  recall@10 {:.3}  recall@20 {:.3}  ({} queries)",
        recall(5),
        recall(10),
        recall(20),
        LABELLED.len()
    );
    assert!(recall(20) >= 0.9, "recall@20 {:.3}; missed: {misses:?}", recall(20));
}

#[test]
fn the_same_conversation_gets_the_same_tools() {
    let catalog = official_catalog();
    let pool = catalog.entries().to_vec();
    let mut terms = HashMap::new();
    add_terms(&mut terms, "create a branch and open a pull request", 1.0);
    let first: Vec<String> = rank(&catalog, &pool, &terms).into_iter().map(|e| e.name.clone()).collect();
    for _ in 0..20 {
        let again: Vec<String> = rank(&catalog, &pool, &terms).into_iter().map(|e| e.name.clone()).collect();
        assert_eq!(again, first);
    }
}

fn offered(request: &Value) -> Vec<String> {
    request["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap().to_owned()).collect()
}

/// The needed tool is not in the first offer: the model asks `find_tools`, gets the tool in the
/// next round, calls it, answers.
#[tokio::test]
async fn the_model_finds_a_tool_it_was_not_offered() {
    let llm = FakeLlm::new()
        .tool_call("find_tools", json!({"query": "sum of two numbers"}))
        .tool_call("ev__get-sum", json!({"a": 2, "b": 3}))
        .text("It is 5.")
        .start()
        .await;
    let yaml = format!(
        "tool_selection:\n  max_tools: 5\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n  ev:\n    command: node\n    args: [\"{}\", stdio]\n",
        everything()
    );
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ev__get-sum") && n.iter().any(|t| t == "ts__echo")).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "echo the word hello"}]});
    let body: Value = app.post("/v1/chat/completions", &chat).await.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"].as_str().unwrap().rsplit('\n').next(), Some("It is 5."));
    let sent = llm.chat_requests();
    let first = offered(&sent[0]);
    assert_eq!(first.len(), 5, "{first:?}");
    assert!(first.contains(&"find_tools".to_owned()) && !first.contains(&"ev__get-sum".to_owned()), "{first:?}");
    assert!(offered(&sent[1]).contains(&"ev__get-sum".to_owned()), "the find joins the next round");
    assert!(offered(&sent[1]).len() <= 5);
    let tool = sent[2]["messages"].as_array().unwrap().iter().rev().find(|m| m["role"] == "tool").unwrap();
    assert!(tool["content"].as_str().unwrap().contains('5'), "{tool}");
    assert_eq!(body["mcp_tool_selection"]["ranker"], "bm25");
    assert!(body["mcp_tool_selection"]["found"].as_u64().unwrap() >= 1, "{}", body["mcp_tool_selection"]);
}

/// A broad search finds more tools than the request has room for: the next round still carries
/// at most `max_tools` tools (it used to carry every find plus `find_tools`: 9 for a budget of 5).
#[tokio::test]
async fn a_broad_search_stays_within_the_budget() {
    let llm =
        FakeLlm::new().tool_call("find_tools", json!({"query": "echo-like bulk tool text"})).text("ok").start().await;
    let yaml = format!(
        "tool_selection:\n  max_tools: 5\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [--extra-tools, \"30\", stdio]\n"
    );
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__bulk_29")).await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "what time is it"}]});
    let body: Value = app.post("/v1/chat/completions", &chat).await.json().await.unwrap();
    assert!(body["mcp_tool_selection"]["found"].as_u64().unwrap() >= 1, "{body}");
    for request in llm.chat_requests() {
        let names = offered(&request);
        assert!(names.len() <= 5, "{} tools: {names:?}", names.len());
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }
}

/// Open WebUI's 36 tools and a 156-tool catalog: the upstream (which refuses more than 128, as
/// OpenAI does) never sees more than 128; the client's tools are all there.
#[tokio::test]
async fn an_oversized_catalog_never_exceeds_the_provider_limit() {
    let llm = FakeLlm::new().persona(Persona::OpenAi).text("ok").start().await;
    // The count limit alone (no byte budget) is what this test is about.
    let mut yaml = String::from("tool_selection:\n  max_tool_bytes: 0\nmcpServers:\n");
    for i in 0..13 {
        yaml.push_str(&format!("  s{i}:\n    command: {TEST_SERVER}\n    args: [stdio]\n"));
    }
    let app = TestApp::in_front_of(&llm, &yaml).await;
    app.wait_for_tools(|n| n.len() >= 13 * 12).await;
    let client_tools: Vec<Value> = (0..36)
        .map(|i| json!({"type": "function", "function": {"name": format!("owui_tool_{i}"), "parameters": {"type": "object"}}}))
        .collect();
    let chat =
        json!({"model": "m", "tools": client_tools, "messages": [{"role": "user", "content": "echo something"}]});
    let resp = app.post("/v1/chat/completions", &chat).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(llm.refusals(), Vec::<Value>::new());
    let sent = llm.chat_requests().pop().unwrap();
    let names = offered(&sent);
    assert_eq!(names.len(), 128, "{}", names.len());
    assert_eq!(
        names.iter().filter(|n| n.starts_with("owui_tool_")).count(),
        36,
        "the client's tools are never dropped"
    );
    assert!(names.contains(&"find_tools".to_owned()));
}

/// The byte budget's default, measured: for each labelled query, the offer within a budget
/// (ranked against the query) serves it directly when one of its tools is offered, and with
/// `find_tools` when a search for the query finds one. The default keeps every query served
/// while sending a fraction of the catalog's bytes.
#[test]
fn the_byte_budget_keeps_recall_with_find_tools() {
    use mcp_middleware::agent::selection::{FIND_LIMIT, choose, find};
    use mcp_middleware::config::{DEFAULT_MAX_TOOL_BYTES, SelectionConfig};
    let catalog = official_catalog();
    let pool = catalog.entries().to_vec();
    let all_bytes: usize = pool.iter().map(|e| e.openai_tool.get().len()).sum();
    let measure = |budget: usize| {
        let config = SelectionConfig {
            max_tools: 128,
            max_tool_bytes: budget,
            always_rank: false,
            always: vec![],
            find_tools: Some("find_tools".into()),
        };
        let (mut direct, mut found, mut bytes) = (0usize, 0usize, 0usize);
        for (i, (query, wanted)) in LABELLED.iter().enumerate() {
            // A chat that was about something else a turn ago (the ranking weighs the last
            // user message most, the turns before it too).
            let before = LABELLED[(i + 7) % LABELLED.len()].0;
            let body = json!({"messages": [
                {"role": "user", "content": before},
                {"role": "assistant", "content": "Done."},
                {"role": "user", "content": query},
            ]});
            let offer = choose(&catalog, pool.clone(), body.as_object().unwrap(), &config, None);
            bytes += offer.tools.iter().map(|e| e.openai_tool.get().len()).sum::<usize>();
            let hit =
                |tools: &[Arc<mcp_middleware::mcp::ToolEntry>]| tools.iter().any(|e| wanted.contains(&e.name.as_str()));
            if hit(&offer.tools) {
                direct += 1;
                found += 1;
            } else if offer.find_tools.is_some() && hit(&find(&catalog, &pool, query, FIND_LIMIT).1) {
                found += 1;
            }
        }
        let n = LABELLED.len();
        (direct as f64 / n as f64, found as f64 / n as f64, bytes / n)
    };
    eprintln!("catalog: {} tools, {all_bytes} bytes", pool.len());
    for budget in [4096, 8192, 12288, 16384, 24576, 32768, usize::MAX] {
        let (direct, with_find, bytes) = measure(budget);
        eprintln!(
            "budget {budget:>6}: {bytes:>6} bytes offered, recall direct {direct:.3}, with find_tools {with_find:.3}"
        );
    }
    let (direct, with_find, bytes) = measure(DEFAULT_MAX_TOOL_BYTES);
    assert!(all_bytes > 2 * DEFAULT_MAX_TOOL_BYTES, "the fixture is big enough to be cut: {all_bytes}");
    assert!(bytes <= DEFAULT_MAX_TOOL_BYTES, "{bytes}");
    assert!(with_find >= 0.98, "with find_tools {with_find:.3}");
    assert!(direct >= 0.9, "direct {direct:.3}");
}
