//! Questions from tools, the 2026-07-28 way: a tool answers `input_required`, the chat parks
//! with the questions (message and fields), and the user's next message answers them. A JSON
//! object is taken as it is; other words go through one structured call to the chat's model.
//! The answer is validated against the schema, and one that does not fit is asked again once.
//! "decline" and "cancel" are those actions. The retried call carries the answers and the
//! `requestState` untouched (the test server checks it). The tests cover several questions at
//! once, several rounds, and a URL question. `roots/list` is answered without the user; a
//! sampling request fails the call with a clear message.

use serde_json::{Value, json};

use crate::common::peers::{TEST_SERVER, TempDir};
use crate::common::{FakeLlm, FakeLlmHandle, TestApp};

const KEY: &str = "sk-questions-0123456789";

async fn gateway(llm: &FakeLlmHandle, dir: &TempDir) -> TestApp {
    let yaml = format!(
        "upstream:\n  base_url: {}\nauth:\n  keys:\n    - key: {KEY}\n      user: {{id: ada}}\n\
         state:\n  url: sqlite://{}/state.db\n  encryption_key: a-questions-test-key-0123456789abcdef\n\
         builtin_tools:\n  enabled: false\nmcpServers:\n  ts:\n    command: {TEST_SERVER}\n    args: [stdio]\n",
        llm.url,
        dir.0.display()
    );
    let mut app = TestApp::spawn(&yaml).await;
    app.key = Some(KEY.into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ts__ask")).await;
    app
}

/// Sends the conversation; returns the answer's text.
async fn chat(app: &TestApp, messages: &[Value]) -> String {
    let body: Value =
        app.post("/v1/chat/completions", &json!({"model": "m", "messages": messages})).await.json().await.unwrap();
    body["choices"][0]["message"]["content"].as_str().unwrap_or_else(|| panic!("no answer: {body}")).to_owned()
}

/// What the tool said in the model's latest request.
fn tool_said(llm: &FakeLlmHandle) -> String {
    let sent = llm.chat_requests().pop().unwrap();
    let messages = sent["messages"].as_array().unwrap();
    messages
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asks, then answers each reply in turn (each answer ends with the next question, or the
/// final answer); returns every answer.
async fn conversation(app: &TestApp, replies: &[&str]) -> Vec<String> {
    let mut messages = vec![json!({"role": "user", "content": "go"})];
    let mut answers = vec![chat(app, &messages).await];
    for reply in replies {
        messages.push(json!({"role": "assistant", "content": answers.last().unwrap()}));
        messages.push(json!({"role": "user", "content": reply}));
        answers.push(chat(app, &messages).await);
    }
    answers
}

#[tokio::test]
async fn a_form_question_is_answered_with_json_or_in_words() {
    let dir = TempDir::new("mcpmw-questions-form");
    let llm = FakeLlm::new()
        .tool_call("ts__ask", json!({"kind": "form"}))
        .text("Thanks, Ada.")
        .tool_call("ts__ask", json!({"kind": "form"}))
        .text(r#"{"name": "Grace", "age": 85}"#)
        .text("Thanks, Grace.")
        .start()
        .await;
    let app = gateway(&llm, &dir).await;

    let answers = conversation(&app, &[r#"{"name": "Ada", "age": 36}"#]).await;
    assert!(answers[0].contains("Who is asking?") && answers[0].contains("**Name**"), "{}", answers[0]);
    assert!(answers[0].contains("mcp-park-"), "{}", answers[0]);
    assert!(answers[1].contains("Thanks, Ada."), "{}", answers[1]);
    let said = tool_said(&llm);
    assert!(said.contains(r#""action":"accept""#) && said.contains(r#""name":"Ada""#), "{said}");

    // In words: the chat's model turns the reply into the form's object, once.
    let answers = conversation(&app, &["I'm Grace Hopper and I am 85"]).await;
    assert!(answers[1].contains("Thanks, Grace."), "{}", answers[1]);
    let said = tool_said(&llm);
    assert!(said.contains(r#""name":"Grace""#) && said.contains(r#""age":85"#), "{said}");
    let structured = &llm.chat_requests()[llm.chat_requests().len() - 2];
    assert!(structured["response_format"]["json_schema"]["schema"]["properties"]["name"].is_object(), "{structured}");
}

#[tokio::test]
async fn an_answer_that_does_not_fit_is_asked_again_and_decline_declines() {
    let dir = TempDir::new("mcpmw-questions-again");
    let llm = FakeLlm::new().tool_call("ts__ask", json!({"kind": "form"})).text("Fine, no name then.").start().await;
    let app = gateway(&llm, &dir).await;
    let answers = conversation(&app, &[r#"{"age": -1}"#, "decline"]).await;
    assert!(answers[1].contains("did not fit") && answers[1].contains("Who is asking?"), "{}", answers[1]);
    assert!(answers[2].contains("Fine, no name then."), "{}", answers[2]);
    assert!(tool_said(&llm).contains(r#"{"who":{"action":"decline"}}"#), "{}", tool_said(&llm));
    assert_eq!(llm.chat_requests().len(), 2, "the model was asked for the tool call and the answer only");
}

#[tokio::test]
async fn several_questions_several_rounds_and_a_url_with_the_state_untouched() {
    let dir = TempDir::new("mcpmw-questions-rounds");
    let llm = FakeLlm::new()
        .tool_call("ts__ask", json!({"kind": "two"}))
        .text("Both answered.")
        .tool_call("ts__ask", json!({"kind": "rounds"}))
        .text("Two rounds done.")
        .tool_call("ts__ask", json!({"kind": "url"}))
        .text("Authorised.")
        .start()
        .await;
    let app = gateway(&llm, &dir).await;

    let two = conversation(&app, &[r#"{"who": {"name": "Ada"}, "colour": {"colour": "green"}}"#]).await;
    assert!(two[0].contains("Who is asking?") && two[0].contains("Pick a colour."), "{}", two[0]);
    assert!(two[1].contains("Both answered."), "{}", two[1]);
    let said = tool_said(&llm);
    assert!(said.contains(r#""colour":{"action":"accept","content":{"colour":"green"}}"#), "{said}");

    let rounds = conversation(&app, &[r#"{"name": "Ada"}"#, r#"{"colour": "blue"}"#]).await;
    assert!(rounds[1].contains("favourite colour") && rounds[1].contains("mcp-park-"), "{}", rounds[1]);
    assert!(rounds[2].contains("Two rounds done."), "{}", rounds[2]);
    assert!(tool_said(&llm).contains(r#""colour":"blue""#), "{}", tool_said(&llm));

    let url = conversation(&app, &["done"]).await;
    assert!(url[0].contains("https://example.com/authorise"), "{}", url[0]);
    assert!(url[1].contains("Authorised."), "{}", url[1]);
    assert!(tool_said(&llm).contains(r#"{"login":{"action":"accept"}}"#), "{}", tool_said(&llm));
}

#[tokio::test]
async fn roots_are_answered_alone_and_sampling_fails_the_call() {
    let dir = TempDir::new("mcpmw-questions-alone");
    let llm = FakeLlm::new()
        .tool_call("ts__ask", json!({"kind": "roots"}))
        .text("Roots done.")
        .tool_call("ts__ask", json!({"kind": "sampling"}))
        .text("No sampling.")
        .start()
        .await;
    let app = gateway(&llm, &dir).await;
    assert!(chat(&app, &[json!({"role": "user", "content": "roots"})]).await.contains("Roots done."));
    assert!(tool_said(&llm).contains(r#"{"roots":{"roots":[]}}"#), "{}", tool_said(&llm));
    assert!(chat(&app, &[json!({"role": "user", "content": "sample"})]).await.contains("No sampling."));
    assert!(tool_said(&llm).contains("sampling"), "{}", tool_said(&llm));
}

/// Legacy `elicitation/create`, asked mid-call by server-everything (with `elicitation: true`
/// its `trigger-elicitation-request` is offered, absent otherwise): the chat parks with the
/// question while the call is held open in this process, and the user's answer reaches the
/// server, which reports it; a declined question is declined.
#[tokio::test]
async fn a_question_asked_mid_call_holds_the_call_until_the_user_answers() {
    let llm = FakeLlm::new()
        .tool_call("ev__trigger-elicitation-request", json!({}))
        .text("Thanks, Ada.")
        .tool_call("ev__trigger-elicitation-request", json!({}))
        .text("Understood.")
        .start()
        .await;
    let dir = TempDir::new("mcpmw-questions-legacy");
    let ev = crate::common::peers::everything();
    let yaml = format!(
        "upstream:\n  base_url: {}\nauth:\n  keys:\n    - key: {KEY}\n      user: {{id: ada}}\n\
         state:\n  url: sqlite://{}/state.db\nbuiltin_tools:\n  enabled: false\n\
         mcpServers:\n  ev:\n    command: node\n    args: [\"{ev}\", stdio]\n    elicitation: true\n\
         \x20 plain:\n    command: node\n    args: [\"{ev}\", stdio]\n",
        llm.url,
        dir.0.display()
    );
    let mut app = TestApp::spawn(&yaml).await;
    app.key = Some(KEY.into());
    let tools = app
        .wait_for_tools(|n| {
            n.iter().any(|t| t == "ev__trigger-elicitation-request") && n.iter().any(|t| t == "plain__echo")
        })
        .await;
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(!names.contains(&"plain__trigger-elicitation-request"), "only where elicitation is declared: {names:?}");

    let answers = conversation(&app, &[r#"{"name": "Ada Lovelace", "check": true}"#]).await;
    assert!(answers[0].contains("Please provide inputs") && answers[0].contains("mcp-park-"), "{}", answers[0]);
    assert!(answers[0].contains("Your full, legal name"), "{}", answers[0]);
    assert!(answers[1].contains("Thanks, Ada."), "{}", answers[1]);
    let said = tool_said(&llm);
    assert!(said.contains("User provided the requested information") && said.contains("Ada Lovelace"), "{said}");

    let declined = conversation(&app, &["decline"]).await;
    assert!(declined[1].contains("Understood."), "{}", declined[1]);
    assert!(tool_said(&llm).contains("User declined"), "{}", tool_said(&llm));
}

/// Two calls in flight on one connection, both asking while both run (our test server's
/// `ask_together` waits until they do): a question cannot be told to belong to either call, so
/// each is declined rather than shown to the wrong chat.
#[tokio::test]
async fn a_question_that_matches_no_single_call_is_declined() {
    let llm = FakeLlm::new()
        .tool_calls(&[("t__ask_together", json!({"calls": 2})), ("t__ask_together", json!({"calls": 2}))])
        .text("Both declined.")
        .start()
        .await;
    let dir = TempDir::new("mcpmw-questions-two");
    let yaml = format!(
        "upstream:\n  base_url: {}\nauth:\n  keys:\n    - key: {KEY}\n      user: {{id: ada}}\n\
         state:\n  url: sqlite://{}/state.db\nbuiltin_tools:\n  enabled: false\n\
         mcpServers:\n  t:\n    command: {TEST_SERVER}\n    args: [--era, legacy, stdio]\n    elicitation: true\n",
        llm.url,
        dir.0.display()
    );
    let mut app = TestApp::spawn(&yaml).await;
    app.key = Some(KEY.into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "t__ask_together")).await;
    let answer = chat(&app, &[json!({"role": "user", "content": "two at once"})]).await;
    assert!(answer.contains("Both declined.") && !answer.contains("mcp-park-"), "{answer}");
    let said = tool_said(&llm);
    assert_eq!(said.matches("Asked together: action=decline").count(), 2, "{said}");
}

/// A task that asks mid-way (server-everything's ambiguous `simulate-research-query`: the
/// question comes through `tasks/result`): the chat parks with it while the task is held, and
/// the answer reaches the task, whose report names it.
#[tokio::test]
async fn a_task_that_asks_is_held_until_the_user_answers() {
    let llm = FakeLlm::new()
        .tool_call("ev__simulate-research-query", json!({"topic": "python", "ambiguous": true}))
        .text("Here is your report.")
        .start()
        .await;
    let dir = TempDir::new("mcpmw-questions-task");
    let ev = crate::common::peers::everything();
    let yaml = format!(
        "upstream:\n  base_url: {}\nauth:\n  keys:\n    - key: {KEY}\n      user: {{id: ada}}\n\
         state:\n  url: sqlite://{}/state.db\nbuiltin_tools:\n  enabled: false\n\
         mcpServers:\n  ev:\n    command: node\n    args: [\"{ev}\", stdio]\n    elicitation: true\n",
        llm.url,
        dir.0.display()
    );
    let mut app = TestApp::spawn(&yaml).await;
    app.key = Some(KEY.into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "ev__simulate-research-query")).await;
    let answers = conversation(&app, &[r#"{"interpretation": "programming"}"#]).await;
    assert!(answers[0].contains("multiple interpretations") && answers[0].contains("mcp-park-"), "{}", answers[0]);
    assert!(answers[1].contains("Here is your report."), "{}", answers[1]);
    assert!(tool_said(&llm).contains("python (programming)"), "{}", tool_said(&llm));
}
