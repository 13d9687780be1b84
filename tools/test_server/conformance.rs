//! `--conformance`: everything the server scenarios of the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`) ask of a server, offered besides the test tools: the
//! `test_*` tools (text, image, audio, embedded resources, mixed content, logging, errors,
//! progress, sampling, elicitation with defaults and every enum shape, a JSON Schema 2020-12
//! input schema, a reconnection tool), the `test://` resources and resource template, resource
//! subscriptions, the `test_*` prompts, argument completion and `logging/setLevel`.
//!
//! Written from the scenarios' descriptions and the MCP specification. Subscriptions and the
//! logging level are kept per connection ([`Session`]). `touch_resource` sends
//! `notifications/resources/updated` for a URI the connection subscribed to, so a gateway test
//! can check that the notification is relayed.
//!
//! Sampling and logging are deprecated in rmcp (SEP-2577) but are what the 2025-era scenarios
//! test, hence the module-wide `allow(deprecated)`.
#![allow(deprecated)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use parking_lot::Mutex;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientResult, CompleteRequestParams, CompleteResult, CompletionInfo,
    ContentBlock, CreateMessageRequestParams, ElicitRequest, ElicitRequestParams, ElicitationSchema, GetPromptResult,
    JsonObject, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, LoggingLevel,
    LoggingMessageNotificationParam, ProgressNotificationParam, Prompt, PromptArgument, PromptMessage,
    ReadResourceResult, Reference, Resource, ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam,
    Role, SamplingMessage, SamplingMessageContentBlock, ServerCapabilities, ServerRequest, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Value, json};

use crate::tools::{self, TINY_PNG_BASE64};

/// Name of the tool whose input schema uses JSON Schema 2020-12 keywords (SEP-1613).
const JSON_SCHEMA_TOOL: &str = "json_schema_2020_12_tool";
/// The JSON Schema 2020-12 dialect URI.
const JSON_SCHEMA_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

const STATIC_TEXT_URI: &str = "test://static-text";
const STATIC_BINARY_URI: &str = "test://static-binary";
const WATCHED_URI: &str = "test://watched-resource";
const TEMPLATE_URI: &str = "test://template/{id}/data";
const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";

/// Candidates offered by `completion/complete` for `test_prompt_with_arguments`'s `arg1`.
const ARG1_CANDIDATES: &[&str] = &["paris", "park", "party", "test-value"];
/// … for its `arg2`.
const ARG2_CANDIDATES: &[&str] = &["alpha", "beta", "gamma"];
/// … and for the `id` of the resource template.
const ID_CANDIDATES: &[&str] = &["1", "123", "42"];

/// Pause between the steps of the logging and progress tools.
const STEP: Duration = Duration::from_millis(50);

/// Per-connection state: resource subscriptions and the level set by `logging/setLevel`.
#[derive(Default)]
pub struct Session {
    subscriptions: Mutex<HashSet<String>>,
    /// `None` until the client sets a level: then every message is sent.
    level: Mutex<Option<LoggingLevel>>,
}

/// Severity rank of a level, lowest first (RFC 5424 order, as the specification lists them).
fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl Session {
    /// `logging/setLevel`: messages below `level` are no longer sent on this connection.
    pub fn set_level(&self, level: LoggingLevel) {
        *self.level.lock() = Some(level);
    }

    fn logs(&self, level: LoggingLevel) -> bool {
        self.level.lock().is_none_or(|minimum| rank(level) >= rank(minimum))
    }

    /// `resources/subscribe`: only URIs this server has can be subscribed to.
    pub fn subscribe(&self, uri: &str) -> Result<(), McpError> {
        if !is_known_resource(uri) {
            return Err(not_found(uri));
        }
        self.subscriptions.lock().insert(uri.to_owned());
        Ok(())
    }

    /// `resources/unsubscribe` (a URI that was not subscribed is fine).
    pub fn unsubscribe(&self, uri: &str) {
        self.subscriptions.lock().remove(uri);
    }

    fn is_subscribed(&self, uri: &str) -> bool {
        self.subscriptions.lock().contains(uri)
    }
}

/// The capabilities with `--conformance`: `capabilities` plus resources (subscribe, listChanged),
/// prompts, completions and logging.
pub fn capabilities(mut capabilities: ServerCapabilities) -> ServerCapabilities {
    let extra = ServerCapabilities::builder()
        .enable_logging()
        .enable_completions()
        .enable_prompts()
        .enable_resources()
        .enable_resources_subscribe()
        .enable_resources_list_changed()
        .build();
    capabilities.logging = extra.logging;
    capabilities.completions = extra.completions;
    capabilities.prompts = extra.prompts;
    capabilities.resources = extra.resources;
    capabilities
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

fn no_arguments() -> Arc<JsonObject> {
    schema(json!({"type": "object", "properties": {}}))
}

/// The conformance tools, listed after the test tools.
pub fn tools() -> Vec<Tool> {
    let string_argument = |name: &str, description: &str| {
        schema(json!({
            "type": "object",
            "properties": {name: {"type": "string", "description": description}},
            "required": [name],
        }))
    };
    vec![
        Tool::new("test_simple_text", "Returns one text block.", no_arguments()),
        Tool::new("test_image_content", "Returns a 1x1 PNG image block.", no_arguments()),
        Tool::new("test_audio_content", "Returns a short silent WAV audio block.", no_arguments()),
        Tool::new(
            "test_embedded_resource",
            "Returns an embedded text resource (test://embedded-resource).",
            no_arguments(),
        ),
        Tool::new(
            "test_multiple_content_types",
            "Returns a text, an image and an embedded JSON resource.",
            no_arguments(),
        ),
        Tool::new(
            "test_tool_with_logging",
            "Sends three info log messages ~50 ms apart while it runs.",
            no_arguments(),
        ),
        Tool::new("test_error_handling", "Always returns a tool result with isError set.", no_arguments()),
        Tool::new(
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100, ~50 ms apart, when the call has a progressToken.",
            no_arguments(),
        ),
        Tool::new(
            "test_sampling",
            "Asks the client's LLM (sampling/createMessage) to answer `prompt` and returns the answer.",
            string_argument("prompt", "The prompt to send to the LLM."),
        ),
        Tool::new(
            "test_elicitation",
            "Asks the user (elicitation/create) for a username and an email, showing `message`.",
            string_argument("message", "The message to show the user."),
        ),
        Tool::new(
            "test_elicitation_sep1034_defaults",
            "Asks the user for a form whose string, integer, number, enum and boolean fields have defaults (SEP-1034).",
            no_arguments(),
        ),
        Tool::new(
            "test_elicitation_sep1330_enums",
            "Asks the user for a form with every enum shape: untitled, titled and legacy single-select, \
             untitled and titled multi-select (SEP-1330).",
            no_arguments(),
        ),
        Tool::new(
            JSON_SCHEMA_TOOL,
            "Tool with JSON Schema 2020-12 features",
            schema(json!({
                "$schema": JSON_SCHEMA_2020_12,
                "type": "object",
                "$defs": {
                    "address": {
                        "type": "object",
                        "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                    },
                },
                "properties": {
                    "name": {"type": "string"},
                    "address": {"$ref": "#/$defs/address"},
                },
                "additionalProperties": false,
            })),
        ),
        Tool::new(
            "test_reconnection",
            "Answers after a short pause (the suite's SSE polling scenario calls it).",
            no_arguments(),
        ),
        Tool::new(
            "touch_resource",
            "Sends notifications/resources/updated for `uri` if this connection subscribed to it.",
            string_argument("uri", "URI of the resource to report as updated."),
        ),
    ]
}

/// Whether `name` is one of [`fn@tools`].
pub fn is_tool(name: &str) -> bool {
    tools().iter().any(|tool| tool.name == name)
}

fn text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// A WAV file of 8 samples of silence (8 kHz, mono, unsigned 8-bit PCM), 52 bytes.
fn tiny_wav() -> Vec<u8> {
    const RATE: u32 = 8000;
    const SAMPLES: u32 = 8;
    let mut wav = Vec::with_capacity(44 + SAMPLES as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + SAMPLES).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // size of the fmt chunk
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // one channel
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&RATE.to_le_bytes()); // bytes per second: one byte per sample
    wav.extend_from_slice(&1u16.to_le_bytes()); // block align
    wav.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&SAMPLES.to_le_bytes());
    wav.extend(std::iter::repeat_n(0x80u8, SAMPLES as usize)); // 0x80 is silence at 8 bits
    wav
}

fn embedded(uri: &str, mime_type: &str, content: &str) -> ContentBlock {
    ContentBlock::resource(ResourceContents::text(content, uri).with_mime_type(mime_type))
}

/// Answers a `tools/call` of one of [`fn@tools`].
pub async fn call_tool(
    session: &Session,
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let arguments = &request.arguments;
    Ok(match request.name.as_ref() {
        "test_simple_text" => text("This is a simple text response for testing."),
        "test_image_content" => CallToolResult::success(vec![ContentBlock::image(TINY_PNG_BASE64, "image/png")]),
        "test_audio_content" => {
            let data = base64::engine::general_purpose::STANDARD.encode(tiny_wav());
            CallToolResult::success(vec![ContentBlock::audio(data, "audio/wav")])
        }
        "test_embedded_resource" => CallToolResult::success(vec![embedded(
            "test://embedded-resource",
            "text/plain",
            "This is an embedded resource content.",
        )]),
        "test_multiple_content_types" => CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(TINY_PNG_BASE64, "image/png"),
            embedded("test://mixed-content-resource", "application/json", r#"{"test":"data","value":123}"#),
        ]),
        "test_tool_with_logging" => {
            log(session, context, "Tool execution started").await;
            tokio::time::sleep(STEP).await;
            log(session, context, "Tool processing data").await;
            tokio::time::sleep(STEP).await;
            log(session, context, "Tool execution completed").await;
            text("Tool with logging executed successfully")
        }
        "test_error_handling" => {
            CallToolResult::error(vec![ContentBlock::text("This tool intentionally returns an error for testing")])
        }
        "test_tool_with_progress" => {
            let token = context.meta.get_progress_token();
            for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(STEP).await;
                }
                if let Some(token) = &token {
                    let param = ProgressNotificationParam::new(token.clone(), progress).with_total(100.0);
                    if let Err(error) = context.peer.notify_progress(param).await {
                        tracing::warn!(%error, "cannot send progress");
                    }
                }
            }
            text("Tool with progress executed successfully")
        }
        "test_sampling" => sampling(tools::required_str(arguments, "prompt")?, context).await,
        "test_elicitation" => {
            let message = tools::required_str(arguments, "message")?;
            let form = json!({
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                },
                "required": ["username", "email"],
            });
            elicit(message, form, "User response", context).await?
        }
        "test_elicitation_sep1034_defaults" => {
            let form = json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "Your name", "default": "John Doe"},
                    "age": {"type": "integer", "description": "Your age", "default": 30},
                    "score": {"type": "number", "description": "Your score", "default": 95.5},
                    "status": {"type": "string", "description": "Your status",
                        "enum": ["active", "inactive", "pending"], "default": "active"},
                    "verified": {"type": "boolean", "description": "Verified?", "default": true},
                },
            });
            elicit("Check these details; the defaults are filled in.".into(), form, "Elicitation completed", context)
                .await?
        }
        "test_elicitation_sep1330_enums" => {
            let titled = |pairs: &[(&str, &str)]| -> Vec<Value> {
                pairs.iter().map(|(value, title)| json!({"const": value, "title": title})).collect()
            };
            let form = json!({
                "type": "object",
                "properties": {
                    "untitledSingle": {"type": "string", "title": "Untitled single-select",
                        "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {"type": "string", "title": "Titled single-select",
                        "oneOf": titled(&[("value1", "First Option"), ("value2", "Second Option"),
                            ("value3", "Third Option")])},
                    "legacyEnum": {"type": "string", "title": "Legacy titled enum",
                        "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
                    "untitledMulti": {"type": "array", "title": "Untitled multi-select",
                        "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                    "titledMulti": {"type": "array", "title": "Titled multi-select",
                        "items": {"anyOf": titled(&[("value1", "First Choice"), ("value2", "Second Choice"),
                            ("value3", "Third Choice")])}},
                },
            });
            elicit("Pick from each list.".into(), form, "Elicitation completed", context).await?
        }
        JSON_SCHEMA_TOOL => {
            let received = Value::Object(arguments.clone().unwrap_or_default());
            text(format!("JSON Schema 2020-12 tool received: {received}"))
        }
        "test_reconnection" => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            text("Reconnection test completed")
        }
        "touch_resource" => {
            let uri = tools::required_str(arguments, "uri")?;
            let notified = session.is_subscribed(&uri);
            if notified
                && let Err(error) =
                    context.peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri.clone())).await
            {
                tracing::warn!(%error, "cannot send notifications/resources/updated");
            }
            let mut result =
                text(if notified { format!("notified {uri}") } else { format!("not subscribed to {uri}") });
            result.structured_content = Some(json!({"uri": uri, "notified": notified}));
            result
        }
        other => return Err(McpError::invalid_params(format!("tool not found: {other}"), None)),
    })
}

/// Sends an info `notifications/message`, unless the connection's level is above info.
async fn log(session: &Session, context: &RequestContext<RoleServer>, message: &str) {
    if !session.logs(LoggingLevel::Info) {
        return;
    }
    let param = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(message)).with_logger("mcp-test-server");
    if let Err(error) = context.peer.notify_logging_message(param).await {
        tracing::warn!(%error, "cannot send notifications/message");
    }
}

/// `test_sampling`: one `sampling/createMessage` with the prompt, `maxTokens` 100.
async fn sampling(prompt: String, context: &RequestContext<RoleServer>) -> CallToolResult {
    if context.client_capabilities().is_none_or(|capabilities| capabilities.sampling.is_none()) {
        return CallToolResult::error(vec![ContentBlock::text("the client does not support sampling")]);
    }
    let message = SamplingMessage::new(Role::User, SamplingMessageContentBlock::text(prompt));
    match context.peer.create_message(CreateMessageRequestParams::new(vec![message], 100)).await {
        Ok(result) => {
            let answer: Vec<String> = result
                .message
                .content
                .into_vec()
                .into_iter()
                .filter_map(|block| match block {
                    SamplingMessageContentBlock::Text(text) => Some(text.text),
                    _ => None,
                })
                .collect();
            text(format!("LLM response: {}", answer.join("")))
        }
        Err(error) => CallToolResult::error(vec![ContentBlock::text(format!("sampling failed: {error}"))]),
    }
}

/// One form `elicitation/create`; the result is `"<label>: action=…, content=…"`.
pub async fn elicit(
    message: String,
    form: Value,
    label: &str,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    if context.client_capabilities().is_none_or(|capabilities| capabilities.elicitation.is_none()) {
        return Ok(CallToolResult::error(vec![ContentBlock::text("the client does not support elicitation")]));
    }
    let requested_schema: ElicitationSchema = serde_json::from_value(form)
        .map_err(|error| McpError::internal_error(format!("bad elicitation schema: {error}"), None))?;
    let params = ElicitRequestParams::FormElicitationParams { meta: None, message, requested_schema };
    let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
    Ok(match context.peer.send_request(request).await {
        Ok(ClientResult::ElicitResult(result)) => {
            let action = serde_json::to_value(&result.action).unwrap_or_default();
            let action = action.as_str().unwrap_or_default();
            let content = result.content.unwrap_or(Value::Null);
            text(format!("{label}: action={action}, content={content}"))
        }
        Ok(_) => CallToolResult::error(vec![ContentBlock::text("unexpected answer to elicitation/create")]),
        Err(error) => CallToolResult::error(vec![ContentBlock::text(format!("elicitation failed: {error}"))]),
    })
}

fn not_found(uri: &str) -> McpError {
    McpError::resource_not_found(format!("resource not found: {uri}"), Some(json!({"uri": uri})))
}

/// The `id` of a URI of the resource template, when it is one.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri.strip_prefix(TEMPLATE_PREFIX)?.strip_suffix(TEMPLATE_SUFFIX)?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn is_known_resource(uri: &str) -> bool {
    [STATIC_TEXT_URI, STATIC_BINARY_URI, WATCHED_URI].contains(&uri) || template_id(uri).is_some()
}

/// `resources/list`: the direct resources (not the template).
pub fn list_resources() -> ListResourcesResult {
    ListResourcesResult::with_all_items(vec![
        Resource::new(STATIC_TEXT_URI, "static-text")
            .with_description("A fixed text resource.")
            .with_mime_type("text/plain"),
        Resource::new(STATIC_BINARY_URI, "static-binary")
            .with_description("A fixed binary resource: a 1x1 PNG.")
            .with_mime_type("image/png"),
        Resource::new(WATCHED_URI, "watched-resource")
            .with_description("A text resource to subscribe to; touch_resource reports it updated.")
            .with_mime_type("text/plain"),
    ])
}

/// `resources/templates/list`.
pub fn list_resource_templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new(TEMPLATE_URI, "template-data")
            .with_description("JSON data for any `id`.")
            .with_mime_type("application/json"),
    ])
}

/// `resources/read`.
pub fn read_resource(uri: &str) -> Result<ReadResourceResult, McpError> {
    let contents = match uri {
        STATIC_TEXT_URI => ResourceContents::text("This is the content of the static text resource.", uri),
        STATIC_BINARY_URI => ResourceContents::blob(TINY_PNG_BASE64, uri).with_mime_type("image/png"),
        WATCHED_URI => ResourceContents::text("This is the content of the watched resource.", uri),
        _ => {
            let id = template_id(uri).ok_or_else(|| not_found(uri))?;
            let id_json = Value::String(id.to_owned());
            let data = Value::String(format!("Data for ID: {id}"));
            ResourceContents::text(format!(r#"{{"id":{id_json},"templateTest":true,"data":{data}}}"#), uri)
                .with_mime_type("application/json")
        }
    };
    Ok(ReadResourceResult::new(vec![contents]))
}

/// `prompts/list`.
pub fn list_prompts() -> ListPromptsResult {
    let argument =
        |name: &str, description: &str| PromptArgument::new(name).with_description(description).with_required(true);
    ListPromptsResult::with_all_items(vec![
        Prompt::new("test_simple_prompt", Some("A prompt without arguments."), None),
        Prompt::new(
            "test_prompt_with_arguments",
            Some("A prompt that repeats its two arguments."),
            Some(vec![argument("arg1", "First test argument"), argument("arg2", "Second test argument")]),
        ),
        Prompt::new(
            "test_prompt_with_embedded_resource",
            Some("A prompt that embeds the resource `resourceUri`."),
            Some(vec![argument("resourceUri", "URI of the resource to embed")]),
        ),
        Prompt::new("test_prompt_with_image", Some("A prompt with an image."), None),
    ])
}

fn prompt_argument(arguments: &Option<JsonObject>, key: &str) -> Result<String, McpError> {
    match arguments.as_ref().and_then(|arguments| arguments.get(key)) {
        Some(Value::String(value)) => Ok(value.clone()),
        Some(_) => Err(McpError::invalid_params(format!("argument `{key}` must be a string"), None)),
        None => Err(McpError::invalid_params(format!("missing required argument `{key}`"), None)),
    }
}

/// `prompts/get`.
pub fn get_prompt(name: &str, arguments: &Option<JsonObject>) -> Result<GetPromptResult, McpError> {
    let messages = match name {
        "test_simple_prompt" => vec![PromptMessage::new_text(Role::User, "This is a simple prompt for testing.")],
        "test_prompt_with_arguments" => {
            let arg1 = prompt_argument(arguments, "arg1")?;
            let arg2 = prompt_argument(arguments, "arg2")?;
            vec![PromptMessage::new_text(Role::User, format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]
        }
        "test_prompt_with_embedded_resource" => {
            let uri = prompt_argument(arguments, "resourceUri")?;
            vec![
                PromptMessage::new(Role::User, embedded(&uri, "text/plain", "Embedded resource content for testing.")),
                PromptMessage::new_text(Role::User, "Please process the embedded resource above."),
            ]
        }
        "test_prompt_with_image" => vec![
            PromptMessage::new(Role::User, ContentBlock::image(TINY_PNG_BASE64, "image/png")),
            PromptMessage::new_text(Role::User, "Please analyze the image above."),
        ],
        other => return Err(McpError::invalid_params(format!("prompt not found: {other}"), None)),
    };
    Ok(GetPromptResult::new(messages))
}

/// `completion/complete`: the candidates of the argument that start with the typed value.
pub fn complete(request: &CompleteRequestParams) -> Result<CompleteResult, McpError> {
    let argument = request.argument.name.as_str();
    let candidates: &[&str] = match &request.r#ref {
        Reference::Prompt(prompt) if prompt.name == "test_prompt_with_arguments" => match argument {
            "arg1" => ARG1_CANDIDATES,
            "arg2" => ARG2_CANDIDATES,
            _ => &[],
        },
        Reference::Resource(resource) if resource.uri == TEMPLATE_URI => match argument {
            "id" => ID_CANDIDATES,
            _ => &[],
        },
        Reference::Prompt(prompt) => {
            return Err(McpError::invalid_params(format!("prompt not found: {}", prompt.name), None));
        }
        Reference::Resource(resource) => {
            return Err(McpError::invalid_params(format!("resource template not found: {}", resource.uri), None));
        }
        _ => &[],
    };
    let prefix = request.argument.value.as_str();
    let values: Vec<String> =
        candidates.iter().filter(|candidate| candidate.starts_with(prefix)).map(|c| (*c).to_owned()).collect();
    let completion = CompletionInfo::with_all_values(values).map_err(|error| McpError::internal_error(error, None))?;
    Ok(CompleteResult::new(completion))
}
